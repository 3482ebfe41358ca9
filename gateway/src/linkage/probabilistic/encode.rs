//! A profile: what the probabilistic linker keeps of one identity — keyed
//! hashes of each field (for "agree exactly"), a keyed bigram filter of each
//! field (for "how alike", by Dice), and keyed blocking keys (for "worth
//! comparing at all"). Nothing in it can be read back without the key.

use std::fmt;

use super::super::keys::LinkageKeys;
use super::super::tokens::{framed_hash, phonetic};
use crate::normalize::{Identity, Remnant, canonical_given_name};

/// A keyed hash, truncated to 128 bits.
/// A keyed hash, 64 bits: collisions between different values are about one
/// in 2^64 per pair, and a profile of 16 of them takes 128 bytes, not 272,
/// which is what lets a million profiles fit beside their block index.
pub(crate) type Hash = std::num::NonZeroU64;

/// The fields a profile compares, in the order of [`Levels`](super::compare::Levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CField {
    Given = 0,
    Surname = 1,
    Dob = 2,
    Street = 3,
    City = 4,
    Zip = 5,
    Phone = 6,
    Email = 7,
}

pub const FIELDS: usize = 8;

impl CField {
    pub const ALL: [Self; FIELDS] = [
        Self::Given,
        Self::Surname,
        Self::Dob,
        Self::Street,
        Self::City,
        Self::Zip,
        Self::Phone,
        Self::Email,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Given => "given_name",
            Self::Surname => "surname",
            Self::Dob => "dob",
            Self::Street => "street",
            Self::City => "city",
            Self::Zip => "zip",
            Self::Phone => "phone",
            Self::Email => "email",
        }
    }

    /// Bits each bigram sets in this field's filter: enough that one bigram
    /// leaves a mark, few enough that a field's filter stays about a quarter
    /// to a third full.
    fn bits_per_gram(self) -> u32 {
        match self {
            Self::Given | Self::Surname | Self::Dob | Self::Zip => 8,
            Self::City | Self::Phone => 6,
            Self::Street => 5,
            Self::Email => 4,
        }
    }
}

/// 256 bits per field.
pub(crate) type Bits = [u64; 4];
const FILTER_BITS: u32 = 256;

/// The symbols bigrams are made of: the pad/space, `a`–`z`, `0`–`9`, `@`, `.`,
/// and one for anything else (email's `_`, `-`, `+`).
const SYMBOLS: usize = 40;

fn symbol(byte: u8) -> usize {
    match byte {
        b' ' => 0,
        b'a'..=b'z' => 1 + usize::from(byte - b'a'),
        b'0'..=b'9' => 27 + usize::from(byte - b'0'),
        b'@' => 37,
        b'.' => 38,
        _ => 39,
    }
}

/// The keys of the probabilistic linker, derived from the linkage keys of one
/// key version, and the bigram positions precomputed from them.
pub struct ProfileKeys {
    hash_key: [u8; 32],
    /// `(h1, h2)` of every bigram of every field: `FIELDS × SYMBOLS × SYMBOLS`.
    grams: Vec<(u16, u16)>,
}

impl fmt::Debug for ProfileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProfileKeys([redacted])")
    }
}

impl ProfileKeys {
    pub fn new(keys: &LinkageKeys) -> Self {
        let (hash_key, gram_key) = keys.profile_keys();
        let mut grams = Vec::with_capacity(FIELDS * SYMBOLS * SYMBOLS);
        // Eight fields and forty symbols: each fits a byte.
        let (fields, symbols) = (
            u8::try_from(FIELDS).unwrap_or(u8::MAX),
            u8::try_from(SYMBOLS).unwrap_or(u8::MAX),
        );
        for field in 0..fields {
            for a in 0..symbols {
                for b in 0..symbols {
                    // Field, then the two symbols: one byte each.
                    let component = [field, a, b];
                    let hash = framed_hash(&gram_key, &[&component]);
                    let bytes = hash.as_bytes();
                    let h1 = u16::from_le_bytes([bytes[0], bytes[1]]);
                    // Odd, so that the k positions are distinct.
                    let h2 = u16::from_le_bytes([bytes[2], bytes[3]]) | 1;
                    grams.push((h1, h2));
                }
            }
        }
        Self { hash_key, grams }
    }

    fn hash(&self, label: &[u8], components: &[&[u8]]) -> Hash {
        let mut framed: Vec<&[u8]> = Vec::with_capacity(components.len() + 1);
        framed.push(label);
        framed.extend_from_slice(components);
        let hash = framed_hash(&self.hash_key, &framed);
        let mut out = [0u8; 8];
        out.copy_from_slice(&hash.as_bytes()[..8]);
        Hash::new(u64::from_le_bytes(out)).unwrap_or(Hash::MIN)
    }

    fn add_bigrams(&self, field: CField, text: &str, bits: &mut Bits) {
        let bytes = text.as_bytes();
        let k = field.bits_per_gram();
        let mut previous = 0; // the pad
        for &byte in bytes.iter().chain(std::iter::once(&b' ')) {
            let current = symbol(byte);
            let (h1, h2) = self.grams[(field as usize * SYMBOLS + previous) * SYMBOLS + current];
            for i in 0..k {
                let position = (u32::from(h1) + i * u32::from(h2)) % FILTER_BITS;
                bits[(position / 64) as usize] |= 1 << (position % 64);
            }
            previous = current;
        }
    }
}

/// What the probabilistic linker keeps of one identity. `Debug` prints only
/// which fields are present.
#[derive(Clone, Default)]
pub struct Profile {
    pub(super) exact: [Option<Hash>; FIELDS],
    /// The given name's canonical form (a nickname folded), when it differs.
    pub(super) given_alias: Option<Hash>,
    /// The date with month and day swapped.
    pub(super) dob_swapped: Option<Hash>,
    pub(super) dob_year: Option<Hash>,
    pub(super) dob_year_month: Option<Hash>,
    /// The street without its leading house number.
    pub(super) street_rest: Option<Hash>,
    pub(super) zip3: Option<Hash>,
    /// Name hashes in the other name's namespace, for swapped names: given
    /// name hashed as a surname, surname as a given name.
    pub(super) given_as_surname: Option<Hash>,
    pub(super) surname_as_given: Option<Hash>,
    pub(super) bits: [Bits; FIELDS],
    pub(super) ones: [u16; FIELDS],
    pub(super) blocks: Vec<Hash>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present: Vec<&str> = CField::ALL
            .iter()
            .filter(|field| self.has(**field))
            .map(|field| field.name())
            .collect();
        write!(f, "Profile({})", present.join(", "))
    }
}

impl Profile {
    /// Whether the field is there to compare (exactly or only fuzzily).
    pub fn has(&self, field: CField) -> bool {
        self.ones[field as usize] > 0
    }

    /// Fields present.
    pub fn present(&self) -> usize {
        CField::ALL.iter().filter(|f| self.has(**f)).count()
    }

    pub fn has_dob(&self) -> bool {
        self.has(CField::Dob)
    }

    /// Frees the blocking keys, once a [`super::BlockIndex`] holds them.
    pub fn drop_blocks(&mut self) {
        self.blocks = Vec::new();
    }

    pub(super) fn dice(&self, other: &Self, a: CField, b: CField) -> f64 {
        let (x, y) = (&self.bits[a as usize], &other.bits[b as usize]);
        let total = u32::from(self.ones[a as usize]) + u32::from(other.ones[b as usize]);
        if total == 0 {
            return 0.0;
        }
        let common: u32 = x.iter().zip(y).map(|(p, q)| (p & q).count_ones()).sum();
        f64::from(2 * common) / f64::from(total)
    }
}

/// American Soundex of the letters of `text` (all words run together), or
/// `None` without a letter.
pub(crate) fn soundex(text: &str) -> Option<[u8; 4]> {
    let code = |c: u8| match c {
        b'b' | b'f' | b'p' | b'v' => b'1',
        b'c' | b'g' | b'j' | b'k' | b'q' | b's' | b'x' | b'z' => b'2',
        b'd' | b't' => b'3',
        b'l' => b'4',
        b'm' | b'n' => b'5',
        b'r' => b'6',
        _ => b'0',
    };
    let mut letters = text.bytes().filter(u8::is_ascii_lowercase);
    let first = letters.next()?;
    let mut out = [first, b'0', b'0', b'0'];
    let mut last = code(first);
    let mut n = 1;
    for c in letters {
        let digit = code(c);
        // h and w do not separate two letters of one code; vowels do.
        if c == b'h' || c == b'w' {
            continue;
        }
        if digit != b'0' && digit != last {
            out[n] = digit;
            n += 1;
            if n == 4 {
                break;
            }
        }
        last = digit;
    }
    Some(out)
}

/// The leading house number of a normalized street, and the rest.
fn split_street(street: &str) -> (Option<&str>, &str) {
    match street.split_once(' ') {
        Some((number, rest)) if number.bytes().all(|b| b.is_ascii_digit()) => (Some(number), rest),
        _ => (None, street),
    }
}

/// Builds the profile of a normalized identity and the remnants of the fields
/// that did not normalize (their digits or words join the field's filter, so a
/// mistyped date still counts as "nearly the same date").
pub fn profile(identity: &Identity, remnants: &[Remnant], keys: &ProfileKeys) -> Profile {
    use chrono::Datelike as _;
    let mut p = Profile::default();
    let set = |p: &mut Profile, field: CField, text: &str| {
        keys.add_bigrams(field, text, &mut p.bits[field as usize]);
    };
    let given = identity.given_name.as_deref().filter(|v| !v.is_empty());
    let surname = identity.surname.as_deref().filter(|v| !v.is_empty());
    if let Some(given) = given {
        p.exact[CField::Given as usize] = Some(keys.hash(b"given", &[given.as_bytes()]));
        p.given_as_surname = Some(keys.hash(b"surname", &[given.as_bytes()]));
        let first = given.split(' ').next().unwrap_or(given);
        let alias = canonical_given_name(first);
        if alias != first {
            p.given_alias = Some(keys.hash(b"given", &[alias.as_bytes()]));
        }
        set(&mut p, CField::Given, given);
    }
    if let Some(surname) = surname {
        p.exact[CField::Surname as usize] = Some(keys.hash(b"surname", &[surname.as_bytes()]));
        p.surname_as_given = Some(keys.hash(b"given", &[surname.as_bytes()]));
        set(&mut p, CField::Surname, surname);
    }
    let mut year = None;
    if let Some(dob) = identity.dob {
        let (y, m, d) = (dob.year(), dob.month(), dob.day());
        let digits = format!("{y:04}{m:02}{d:02}");
        p.exact[CField::Dob as usize] = Some(keys.hash(b"dob", &[digits.as_bytes()]));
        let swapped = format!("{y:04}{d:02}{m:02}");
        p.dob_swapped = Some(keys.hash(b"dob", &[swapped.as_bytes()]));
        p.dob_year = Some(keys.hash(b"dob year", &[&digits.as_bytes()[..4]]));
        p.dob_year_month = Some(keys.hash(b"dob year month", &[&digits.as_bytes()[..6]]));
        year = Some(digits[..4].to_owned());
        set(&mut p, CField::Dob, &digits);
    }
    let street = identity.street.as_deref().filter(|v| !v.is_empty());
    let (number, rest) = street.map_or((None, ""), split_street);
    if let Some(street) = street {
        p.exact[CField::Street as usize] = Some(keys.hash(b"street", &[street.as_bytes()]));
        if !rest.is_empty() {
            p.street_rest = Some(keys.hash(b"street rest", &[rest.as_bytes()]));
        }
        set(&mut p, CField::Street, street);
    }
    let city = identity.city.as_deref().filter(|v| !v.is_empty());
    if let Some(city) = city {
        p.exact[CField::City as usize] = Some(keys.hash(b"city", &[city.as_bytes()]));
        set(&mut p, CField::City, city);
    }
    if let Some(zip) = identity.zip.as_deref() {
        p.exact[CField::Zip as usize] = Some(keys.hash(b"zip", &[zip.as_bytes()]));
        p.zip3 = zip.get(..3).map(|z3| keys.hash(b"zip3", &[z3.as_bytes()]));
        set(&mut p, CField::Zip, zip);
    }
    if let Some(phone) = identity.phone.as_deref() {
        p.exact[CField::Phone as usize] = Some(keys.hash(b"phone", &[phone.as_bytes()]));
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        set(&mut p, CField::Phone, &digits);
    }
    if let Some(email) = identity.email.as_deref() {
        p.exact[CField::Email as usize] = Some(keys.hash(b"email", &[email.as_bytes()]));
        set(&mut p, CField::Email, email);
    }
    for remnant in remnants {
        if let Some(field) = CField::ALL.into_iter().find(|f| f.name() == remnant.field) {
            set(&mut p, field, &remnant.text);
        }
    }
    for field in CField::ALL {
        let ones: u32 = p.bits[field as usize].iter().map(|w| w.count_ones()).sum();
        p.ones[field as usize] = u16::try_from(ones).unwrap_or(u16::MAX);
    }
    p.blocks = blocks(
        &BlockParts {
            given,
            surname,
            dob: p.exact[CField::Dob as usize],
            year: year.as_deref(),
            street,
            number,
            rest,
            city,
            zip: identity.zip.as_deref(),
            phone: p.exact[CField::Phone as usize],
            email: p.exact[CField::Email as usize],
        },
        keys,
    );
    p
}

struct BlockParts<'a> {
    given: Option<&'a str>,
    surname: Option<&'a str>,
    dob: Option<Hash>,
    year: Option<&'a str>,
    street: Option<&'a str>,
    number: Option<&'a str>,
    rest: &'a str,
    city: Option<&'a str>,
    zip: Option<&'a str>,
    phone: Option<Hash>,
    email: Option<Hash>,
}

/// The blocking keys: two identities are compared only if they share one.
/// Each pairs a fuzzy part (a phonetic code, a prefix, an initial) with a
/// second field, so that one typo rarely breaks every key; the name keys are
/// made for each name in the same namespace, so swapped names still share.
/// See the module docs for the list and its measured recall.
fn blocks(parts: &BlockParts<'_>, keys: &ProfileKeys) -> Vec<Hash> {
    let mut out = Vec::with_capacity(20);
    let names: Vec<&str> = [parts.given, parts.surname].into_iter().flatten().collect();
    let sx = |text: &str| soundex(text);
    let sx_rest = (!parts.rest.is_empty()).then(|| sx(parts.rest)).flatten();
    let sx_city = parts.city.and_then(sx);
    if let (Some(rest), Some(city)) = (sx_rest, sx_city) {
        out.push(keys.hash(b"b sx street sx city", &[&rest, &city]));
    }
    for name in &names {
        let Some(code) = sx(name) else { continue };
        if let Some(rest) = sx_rest {
            out.push(keys.hash(b"b sx name sx street", &[&code, &rest]));
        }
        if let Some(city) = sx_city {
            out.push(keys.hash(b"b sx name sx city", &[&code, &city]));
        }
        if let Some(city) = parts.city {
            let prefix = name.get(..3).unwrap_or(name);
            out.push(keys.hash(b"b name3 city", &[prefix.as_bytes(), city.as_bytes()]));
        }
        if let Some(zip) = parts.zip {
            out.push(keys.hash(b"b sx name zip", &[&code, zip.as_bytes()]));
        }
    }
    if let Some(dob) = parts.dob {
        out.push(keys.hash(b"b dob", &[&dob.get().to_le_bytes()]));
    }
    if let (Some(given), Some(surname)) = (parts.given, parts.surname) {
        let (a, b) = (phonetic(given), phonetic(surname));
        if let (Some(a), Some(b)) = (a, b) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            out.push(keys.hash(b"b phonetic pair", &[lo.as_bytes(), hi.as_bytes()]));
        }
        if let Some(year) = parts.year {
            let (x, y) = (&given.as_bytes()[..1], &surname.as_bytes()[..1]);
            let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
            out.push(keys.hash(b"b initials year", &[lo, hi, year.as_bytes()]));
        }
        if let (Some(code), Some(number)) = (sx(surname), parts.number) {
            out.push(keys.hash(b"b sx surname number", &[&code, number.as_bytes()]));
        }
    }
    if let (Some(number), Some(city)) = (parts.number, parts.city) {
        out.push(keys.hash(b"b number city", &[number.as_bytes(), city.as_bytes()]));
    }
    if let Some(street) = parts.street {
        out.push(keys.hash(b"b street", &[street.as_bytes()]));
    }
    if let Some(phone) = parts.phone {
        out.push(keys.hash(b"b phone", &[&phone.get().to_le_bytes()]));
    }
    if let Some(email) = parts.email {
        out.push(keys.hash(b"b email", &[&email.get().to_le_bytes()]));
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soundex_is_the_american_one() {
        for (name, code) in [
            ("robert", b"r163"),
            ("rupert", b"r163"),
            ("rubin", b"r150"),
            ("ashcraft", b"a261"),
            ("tymczak", b"t522"),
            ("pfister", b"p236"),
            ("lee", b"l000"),
        ] {
            assert_eq!(soundex(name), Some(*code), "{name}");
        }
        assert_eq!(soundex("123"), None);
    }
}
