//! The fingerprint of one identity: its tokens, its Bloom filter, whether it may
//! be linked at all, and its storage bytes.

use std::fmt;

use super::bloom::{self, Bloom, BloomKey, GramSpace, Region, weight};
use super::keys::LinkageKeys;
use super::tokens::{self, Parts, TOKEN_LEN, Token, TokenKind};
use crate::normalize::{Identity, Sex};

/// Everything the linkage engine keeps about one identity: keyed, one-way, and
/// useless without the key it was made under. Holds no raw identifier, and
/// `Debug` prints only which token kinds are present.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub(super) key_version: u32,
    pub(super) linkable: bool,
    /// Whether the identity had a date of birth: the match rule treats "no date
    /// to compare" differently from "dates that differ".
    pub(super) has_dob: bool,
    /// Sorted by kind, at most one per kind. Empty when not linkable.
    pub(super) tokens: Vec<Token>,
    /// All zero when not linkable.
    pub(super) bloom: Bloom,
}

/// Why stored fingerprint bytes could not be read. Names no content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    #[error("fingerprint bytes are truncated or have trailing bytes")]
    Length,
    #[error("unknown fingerprint format {0}")]
    Format(u8),
    #[error("unknown token kind {0}")]
    TokenKind(u8),
    #[error("fingerprint bytes are inconsistent")]
    Inconsistent,
}

/// The first byte of [`Fingerprint::to_bytes`].
const FORMAT_V1: u8 = 1;
const FLAG_LINKABLE: u8 = 1;
const FLAG_HAS_DOB: u8 = 2;

/// Is there enough to link on without guessing? At least one name, at least one
/// field that pins a person rather than a household or a name (date of birth,
/// phone or email), and at least three usable fields in all among given name,
/// surname, date of birth, phone, email, street and ZIP. "Jose" alone, or
/// "Jose Nunez" with only a ZIP, is accepted but never linked.
pub fn is_linkable(identity: &Identity) -> bool {
    let has = |f: &Option<String>| f.as_deref().is_some_and(|v| !v.trim().is_empty());
    let name = has(&identity.given_name) || has(&identity.surname);
    let anchor = identity.dob.is_some() || has(&identity.phone) || has(&identity.email);
    let count = [
        has(&identity.given_name),
        has(&identity.surname),
        identity.dob.is_some(),
        has(&identity.phone),
        has(&identity.email),
        has(&identity.street),
        has(&identity.zip),
    ]
    .into_iter()
    .filter(|present| *present)
    .count();
    name && anchor && count >= 3
}

/// Fingerprints a normalized identity under `keys`. An identity that fails
/// [`is_linkable`] gets an empty, unlinkable fingerprint.
pub fn fingerprint(identity: &Identity, keys: &LinkageKeys) -> Fingerprint {
    if !is_linkable(identity) {
        return Fingerprint {
            key_version: keys.version,
            linkable: false,
            has_dob: false,
            tokens: Vec::new(),
            bloom: Bloom::empty(),
        };
    }
    let parts = Parts::new(identity);
    let tokens = tokens::tokens(identity, &parts, keys);
    let bloom = encode_bloom(identity, &parts, &keys.bloom);
    Fingerprint {
        key_version: keys.version,
        linkable: true,
        has_dob: identity.dob.is_some(),
        tokens,
        bloom,
    }
}

fn encode_bloom(identity: &Identity, parts: &Parts<'_>, keys: &BloomKey) -> Bloom {
    let mut bloom = Bloom::empty();
    if let Some(given) = identity.given_name.as_deref() {
        bloom.add_grams(
            keys,
            Region::Given,
            GramSpace::Name,
            given,
            weight::NAME_GRAM,
        );
        // A nickname also sets its canonical name's bits, so "bill" and
        // "william" share most of theirs.
        if let Some(alias) = parts.alias
            && !given.split(' ').any(|w| w == alias)
        {
            bloom.add_grams(
                keys,
                Region::Given,
                GramSpace::Name,
                alias,
                weight::NAME_GRAM,
            );
        }
    }
    if let Some(surname) = identity.surname.as_deref() {
        bloom.add_grams(
            keys,
            Region::Surname,
            GramSpace::Name,
            surname,
            weight::NAME_GRAM,
        );
    }

    let d = Region::Details;
    if let Some(year) = parts.dob_year {
        bloom.add_element(keys, d, b'y', &year, weight::DOB_YEAR);
    }
    if let Some(dm) = parts.dob_day_month {
        bloom.add_element(keys, d, b'm', &dm, weight::DOB_DAY_MONTH);
    }
    if let Some(exact) = parts.dob_exact {
        bloom.add_element(keys, d, b'd', &exact, weight::DOB_EXACT);
    }
    match identity.sex {
        Some(Sex::Female) => bloom.add_element(keys, d, b's', b"f", weight::SEX),
        Some(Sex::Male) => bloom.add_element(keys, d, b's', b"m", weight::SEX),
        Some(Sex::Other) => bloom.add_element(keys, d, b's', b"o", weight::SEX),
        Some(Sex::Unknown) | None => {}
    }
    if let Some(street) = identity.street.as_deref() {
        bloom.add_grams(keys, d, GramSpace::Street, street, weight::STREET_GRAM);
    }
    if let Some(city) = identity.city.as_deref() {
        bloom.add_grams(keys, d, GramSpace::City, city, weight::CITY_GRAM);
    }
    if let Some(zip) = identity.zip.as_deref() {
        bloom.add_element(keys, d, b'z', zip.as_bytes(), weight::ZIP);
        if let Some(zip3) = zip.get(..3) {
            bloom.add_element(keys, d, b'Z', zip3.as_bytes(), weight::ZIP3);
        }
    }
    if let Some(state) = identity.state.as_deref() {
        bloom.add_element(keys, d, b't', state.as_bytes(), weight::STATE);
    }
    if let Some(phone) = identity.phone.as_deref() {
        bloom.add_element(keys, d, b'p', phone.as_bytes(), weight::PHONE);
    }
    if let Some(email) = identity.email.as_deref() {
        bloom.add_element(keys, d, b'e', email.as_bytes(), weight::EMAIL);
    }
    bloom
}

impl Fingerprint {
    /// False for an identity with too few usable fields (see [`is_linkable`]):
    /// such a fingerprint never matches anything.
    pub fn is_linkable(&self) -> bool {
        self.linkable
    }

    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The values to index for candidate lookup: each token as its kind byte
    /// followed by its 16 bytes. Two identities are candidates for each other
    /// when they share one. Empty when not linkable.
    pub fn lookup_keys(&self) -> Vec<Vec<u8>> {
        self.tokens.iter().map(lookup_key).collect()
    }

    /// The keys the registry stores and looks up for this fingerprint: the
    /// [`lookup_keys`](Self::lookup_keys) of the kinds for which
    /// [`TokenKind::is_indexed`] holds. Two identities that can match share
    /// at least one. Empty when not linkable.
    pub fn index_keys(&self) -> Vec<Vec<u8>> {
        self.tokens
            .iter()
            .filter(|token| token.kind.is_indexed())
            .map(lookup_key)
            .collect()
    }

    /// The storage form:
    ///
    /// ```text
    /// offset  size  field
    /// 0       1     format, 1
    /// 1       4     key version, u32 little-endian
    /// 5       1     flags: bit 0 = linkable, bit 1 = has a date of birth
    /// 6       1     n, the number of tokens
    /// 7       17·n  tokens: kind (u8), then 16 bytes
    /// 7+17n   1     w, Bloom filter words: 16, or 0 when not linkable
    /// 8+17n   8·w   Bloom filter, u64 little-endian words
    /// ```
    ///
    /// A linkable fingerprint with all 14 token kinds is 374 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let words = if self.linkable { bloom::WORDS } else { 0 };
        let mut out = Vec::with_capacity(8 + self.tokens.len() * (1 + TOKEN_LEN) + 8 * words);
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.key_version.to_le_bytes());
        let mut flags = 0;
        if self.linkable {
            flags |= FLAG_LINKABLE;
        }
        if self.has_dob {
            flags |= FLAG_HAS_DOB;
        }
        out.push(flags);
        // At most one token per kind, so the count fits a byte.
        out.push(u8::try_from(self.tokens.len()).unwrap_or(u8::MAX));
        for token in &self.tokens {
            out.extend_from_slice(&lookup_key(token));
        }
        out.push(u8::try_from(words).unwrap_or(u8::MAX));
        for word in &self.bloom.0[..words] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FingerprintError> {
        let mut r = Reader(bytes);
        let format = r.byte()?;
        if format != FORMAT_V1 {
            return Err(FingerprintError::Format(format));
        }
        let key_version = u32::from_le_bytes(r.array()?);
        let flags = r.byte()?;
        if flags & !(FLAG_LINKABLE | FLAG_HAS_DOB) != 0 {
            return Err(FingerprintError::Inconsistent);
        }
        let linkable = flags & FLAG_LINKABLE != 0;
        let has_dob = flags & FLAG_HAS_DOB != 0;
        let n = r.byte()?;
        let mut tokens = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let byte = r.byte()?;
            let kind = TokenKind::from_u8(byte).ok_or(FingerprintError::TokenKind(byte))?;
            tokens.push(Token {
                kind,
                value: r.array()?,
            });
        }
        let sorted_unique = tokens.windows(2).all(|w| w[0].kind < w[1].kind);
        let words = usize::from(r.byte()?);
        let expected = if linkable { bloom::WORDS } else { 0 };
        if words != expected || !sorted_unique || (!linkable && n != 0) {
            return Err(FingerprintError::Inconsistent);
        }
        let mut bloom = Bloom::empty();
        for word in &mut bloom.0[..words] {
            *word = u64::from_le_bytes(r.array()?);
        }
        if !r.0.is_empty() {
            return Err(FingerprintError::Length);
        }
        Ok(Self {
            key_version,
            linkable,
            has_dob,
            tokens,
            bloom,
        })
    }
}

fn lookup_key(token: &Token) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + TOKEN_LEN);
    key.push(token.kind as u8);
    key.extend_from_slice(&token.value);
    key
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, FingerprintError> {
        let (&first, rest) = self.0.split_first().ok_or(FingerprintError::Length)?;
        self.0 = rest;
        Ok(first)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FingerprintError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(FingerprintError::Length)?;
        self.0 = rest;
        Ok(*head)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self.tokens.iter().map(|t| t.kind.name()).collect();
        f.debug_struct("Fingerprint")
            .field("key_version", &self.key_version)
            .field("linkable", &self.linkable)
            .field("tokens", &kinds)
            .finish_non_exhaustive()
    }
}
