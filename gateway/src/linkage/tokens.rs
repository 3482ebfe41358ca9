//! Linkage tokens: keyed BLAKE3 hashes over combinations of normalized fields.
//!
//! Each [`TokenKind`] (see [`super::token_kind`]) has its own key and hashes its own combination of fields,
//! so that one wrong field breaks some tokens and leaves the others. A token is
//! made only when every field it needs is present.
//!
//! # Framing
//! A token is `BLAKE3-keyed(kind key, c₁ ‖ c₂ ‖ …)` truncated to 16 bytes, where
//! each component `cᵢ` is its length as a little-endian `u32` followed by its
//! bytes. The number of components is fixed per kind, so no two different
//! inputs frame alike. 128 bits make an accidental collision between two
//! different inputs practically impossible (about 2⁻⁶⁴ even across 2³² stored
//! tokens) at half the storage of the full 32 bytes.
//!
//! # The parts tokens are built from
//! - *alias*: the first word of the given name, mapped to its canonical form when
//!   it is a nickname (`bill` → `william`), so nicknames agree;
//! - *surname key*: the surname without spaces (`de la cruz` = `delacruz`);
//! - *names*: alias and surname key as an **unordered** pair, so a given name and
//!   surname recorded the wrong way round agree;
//! - *dob key*: the year and the **unordered** pair {month, day}, so a date
//!   typed day-first agrees with the same date typed month-first;
//! - *phonetic*: Double Metaphone (primary code) of a squashed name, so many
//!   typos in a name agree.

use rphonetic::{DoubleMetaphone, Encoder as _};

use super::bloom::year_digits;
use super::keys::LinkageKeys;
pub use super::token_kind::{Strength, TokenKind};
use crate::normalize::{Identity, Sex, canonical_given_name};

/// Bytes kept of each token.
pub const TOKEN_LEN: usize = 16;

/// One token: its kind and its truncated keyed hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token {
    pub kind: TokenKind,
    pub value: [u8; TOKEN_LEN],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, [redacted])", self.kind.name())
    }
}

/// The normalized parts tokens are built from, computed once per identity.
pub(super) struct Parts<'a> {
    pub alias: Option<&'a str>,
    pub surname: Option<String>,
    pub dob_year: Option<[u8; 4]>,
    /// The unordered {month, day}: smaller first.
    pub dob_day_month: Option<[u8; 2]>,
    /// The exact date as YYYYMMDD digits.
    pub dob_exact: Option<[u8; 8]>,
    pub phonetic_given: Option<String>,
    pub phonetic_surname: Option<String>,
}

impl<'a> Parts<'a> {
    pub(super) fn new(identity: &'a Identity) -> Self {
        use chrono::Datelike as _;
        let alias = identity
            .given_name
            .as_deref()
            .and_then(|g| g.split(' ').find(|w| !w.is_empty()))
            .map(canonical_given_name);
        let surname = identity
            .surname
            .as_deref()
            .map(|s| s.replace(' ', ""))
            .filter(|s| !s.is_empty());
        let (dob_year, dob_day_month, dob_exact) = match identity.dob {
            Some(dob) => {
                let year = year_digits(dob.year());
                // month and day are 1..=31: they fit a byte.
                let month = u8::try_from(dob.month()).unwrap_or(0);
                let day = u8::try_from(dob.day()).unwrap_or(0);
                let mut exact = [0u8; 8];
                exact[..4].copy_from_slice(&year);
                exact[4..6].copy_from_slice(&two_digits(month));
                exact[6..].copy_from_slice(&two_digits(day));
                (
                    Some(year),
                    Some([month.min(day), month.max(day)]),
                    Some(exact),
                )
            }
            None => (None, None, None),
        };
        let phonetic_given = alias.and_then(phonetic);
        let phonetic_surname = surname.as_deref().and_then(phonetic);
        Self {
            alias,
            surname,
            dob_year,
            dob_day_month,
            dob_exact,
            phonetic_given,
            phonetic_surname,
        }
    }

    /// Alias and surname key as an unordered pair (smaller first).
    fn names(&self) -> Option<[&str; 2]> {
        let (a, b) = (self.alias?, self.surname.as_deref()?);
        Some(if a <= b { [a, b] } else { [b, a] })
    }

    fn phonetic_names(&self) -> Option<[&str; 2]> {
        let (a, b) = (
            self.phonetic_given.as_deref()?,
            self.phonetic_surname.as_deref()?,
        );
        Some(if a <= b { [a, b] } else { [b, a] })
    }

    fn dob_key(&self) -> Option<([u8; 4], [u8; 2])> {
        Some((self.dob_year?, self.dob_day_month?))
    }
}

fn two_digits(n: u8) -> [u8; 2] {
    [b'0' + n / 10 % 10, b'0' + n % 10]
}

/// The primary Double Metaphone code of a name, or `None` for a name with no
/// letters it can encode.
///
/// Encoding costs about half a microsecond (the encoder allocates freely), a
/// fifth of a whole fingerprint, and names repeat heavily, so each thread keeps
/// the codes it has computed, up to [`PHONETIC_CACHE_MAX`] names; then it
/// starts over. The cache holds normalized names in memory only, as the
/// identity being fingerprinted does.
pub(super) fn phonetic(name: &str) -> Option<String> {
    PHONETIC_CACHE.with_borrow_mut(|cache| {
        if let Some(code) = cache.get(name) {
            return code.clone();
        }
        if cache.len() >= PHONETIC_CACHE_MAX {
            cache.clear();
        }
        let squashed: String = name.chars().filter(char::is_ascii_alphabetic).collect();
        let code = (!squashed.is_empty())
            .then(|| DoubleMetaphone::default().encode(&squashed))
            .filter(|code| !code.is_empty());
        cache.insert(name.to_owned(), code.clone());
        code
    })
}

const PHONETIC_CACHE_MAX: usize = 50_000;

thread_local! {
    static PHONETIC_CACHE: std::cell::RefCell<std::collections::HashMap<String, Option<String>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Hashes the components of one token.
fn token(keys: &LinkageKeys, kind: TokenKind, components: &[&[u8]]) -> Token {
    let hash = framed_hash(keys.token_key(kind), components);
    let mut value = [0u8; TOKEN_LEN];
    value.copy_from_slice(&hash.as_bytes()[..TOKEN_LEN]);
    Token { kind, value }
}

/// Keyed BLAKE3 of the length-prefixed components. The input is framed in a
/// stack buffer and hashed in one call, which is more than twice as fast as
/// feeding a `Hasher` piece by piece (the hasher's set-up dominates inputs
/// this small); inputs too long for the buffer take the slower path.
pub(super) fn framed_hash(key: &[u8; 32], components: &[&[u8]]) -> blake3::Hash {
    let mut buf = [0u8; 512];
    let mut len = 0;
    for c in components {
        // Normalized fields are far shorter than 4 GiB; saturate rather than wrap.
        let prefix = u32::try_from(c.len()).unwrap_or(u32::MAX).to_le_bytes();
        let end = len + prefix.len() + c.len();
        if end > buf.len() {
            let mut hasher = blake3::Hasher::new_keyed(key);
            for c in components {
                hasher.update(&u32::try_from(c.len()).unwrap_or(u32::MAX).to_le_bytes());
                hasher.update(c);
            }
            return hasher.finalize();
        }
        buf[len..len + prefix.len()].copy_from_slice(&prefix);
        buf[len + prefix.len()..end].copy_from_slice(c);
        len = end;
    }
    blake3::keyed_hash(key, &buf[..len])
}

/// Every token the identity has the fields for, sorted by kind.
pub(super) fn tokens(identity: &Identity, parts: &Parts<'_>, keys: &LinkageKeys) -> Vec<Token> {
    let mut out = Vec::with_capacity(TokenKind::COUNT);
    let phone = identity.phone.as_deref().map(str::as_bytes);
    let email = identity.email.as_deref().map(str::as_bytes);
    let zip = identity.zip.as_deref().map(str::as_bytes);
    let names = parts.names();
    let dob = parts.dob_key();
    let alias = parts.alias.map(str::as_bytes);
    let sex: Option<&[u8]> = match identity.sex {
        Some(Sex::Female) => Some(b"f"),
        Some(Sex::Male) => Some(b"m"),
        Some(Sex::Other) => Some(b"o"),
        Some(Sex::Unknown) | None => None,
    };

    if let (Some([a, b]), Some((y, dm))) = (names, dob) {
        out.push(token(
            keys,
            TokenKind::NamesDob,
            &[a.as_bytes(), b.as_bytes(), &y, &dm],
        ));
    }
    if let (Some(g), Some((y, dm)), Some(p)) = (alias, dob, phone) {
        out.push(token(keys, TokenKind::GivenDobPhone, &[g, &y, &dm, p]));
    }
    if let (Some(g), Some(e)) = (alias, email) {
        out.push(token(keys, TokenKind::GivenEmail, &[g, e]));
    }
    if let (Some([a, b]), Some((y, dm)), Some(sex)) = (parts.phonetic_names(), dob, sex) {
        out.push(token(
            keys,
            TokenKind::PhoneticNamesDobSex,
            &[a.as_bytes(), b.as_bytes(), &y, &dm, sex],
        ));
    }
    if let (Some(g), Some((y, dm))) = (alias, dob) {
        out.push(token(keys, TokenKind::GivenDob, &[g, &y, &dm]));
    }
    if let (Some(s), Some((y, dm))) = (parts.surname.as_deref(), dob) {
        out.push(token(keys, TokenKind::SurnameDob, &[s.as_bytes(), &y, &dm]));
    }
    if let (Some((y, dm)), Some(z)) = (dob, zip) {
        out.push(token(keys, TokenKind::DobZip, &[&y, &dm, z]));
    }
    if let (Some((y, dm)), Some(p)) = (dob, phone) {
        out.push(token(keys, TokenKind::PhoneDob, &[&y, &dm, p]));
    }
    if let Some(e) = email {
        out.push(token(keys, TokenKind::Email, &[e]));
    }
    if let (Some([a, b]), Some(p)) = (names, phone) {
        out.push(token(
            keys,
            TokenKind::NamesPhone,
            &[a.as_bytes(), b.as_bytes(), p],
        ));
    }
    if let (Some([a, b]), Some(z)) = (names, zip) {
        out.push(token(
            keys,
            TokenKind::NamesZip,
            &[a.as_bytes(), b.as_bytes(), z],
        ));
    }
    if let (Some([a, b]), Some(y)) = (names, parts.dob_year) {
        out.push(token(
            keys,
            TokenKind::NamesYear,
            &[a.as_bytes(), b.as_bytes(), &y],
        ));
    }
    if let (Some(s), Some(y)) = (parts.phonetic_surname.as_deref(), parts.dob_year) {
        out.push(token(
            keys,
            TokenKind::PhoneticSurnameYear,
            &[s.as_bytes(), &y],
        ));
    }
    if let (Some([a, b]), Some(dm)) = (names, parts.dob_day_month) {
        out.push(token(
            keys,
            TokenKind::NamesDayMonth,
            &[a.as_bytes(), b.as_bytes(), &dm],
        ));
    }
    out
}
