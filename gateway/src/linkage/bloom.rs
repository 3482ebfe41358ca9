//! The keyed Bloom-filter encoding of an identity (a cryptographic long-term key,
//! CLK, after Schnell, Bachteler and Reiher 2011), compared by Dice similarity.
//!
//! The filter has 1024 bits in three regions:
//! - **given name** (256 bits): the bigrams of the given name, and of its
//!   canonical form when it is a nickname;
//! - **surname** (256 bits): the bigrams of the surname;
//! - **details** (512 bits): the date of birth (year, the unordered pair of
//!   month and day, and the exact date), sex, street and city bigrams, ZIP and its
//!   three-digit prefix, state, phone and email.
//!
//! Both name regions hash bigrams the same way, so a given name recorded in the
//! surname's place can be compared crosswise (see the match rule). An empty
//! region means the field was absent, which is what lets the rule tell a
//! missing given name from a different one.
//!
//! Each element sets `k` bits by double hashing (`h1 + i·h2 mod size`, `h2`
//! odd) from one keyed BLAKE3 hash of the element. How many bits an element sets
//! is its weight: names and the date of birth count more than a city. Keeping the
//! regions apart lets the match rule ask "are the names alike?" separately from
//! "are the rest alike?", which is what separates a typo from a twin.
//!
//! Bigrams are hashed once per key set, not once per identity: [`GramTable`]
//! holds the hash of every bigram over the normalized alphabet (space, `a`–`z`,
//! `0`–`9`) for each namespace. Anything outside that alphabet is hashed directly.

/// The filter's key and the tables precomputed from it, once per key set
/// (part of [`super::keys::LinkageKeys`]).
pub(super) struct BloomKey {
    /// Hashes the elements and q-grams the tables do not hold.
    key: [u8; 32],
    grams: GramTable,
    elements: ElementTable,
}

impl BloomKey {
    /// Builds the tables (about a millisecond).
    pub(super) fn new(key: [u8; 32]) -> Self {
        Self {
            grams: GramTable::new(&key),
            elements: ElementTable::new(&key),
            key,
        }
    }
}

/// 64-bit words in the whole filter.
pub(super) const WORDS: usize = 16;

/// Symbols of the normalized alphabet: the word boundary, `a`–`z`, `0`–`9`.
const SYMBOLS: usize = 37;

/// Which bigrams share hash functions. Names share one namespace on purpose
/// (see the module docs); street and city are kept apart from each other so
/// that "main st" in a city name does not look like a street.
#[derive(Debug, Clone, Copy)]
pub(super) enum GramSpace {
    Name = 0,
    Street = 1,
    City = 2,
}
const SPACES: usize = 3;

/// Bits set per element. Chosen so that, for a typical record, each region is
/// about a quarter to a third full: full enough that each element leaves a
/// mark, sparse enough that unrelated records share few bits.
pub(super) mod weight {
    pub const NAME_GRAM: u32 = 8;
    pub const DOB_YEAR: u32 = 10;
    pub const DOB_DAY_MONTH: u32 = 10;
    pub const DOB_EXACT: u32 = 6;
    pub const SEX: u32 = 3;
    pub const STREET_GRAM: u32 = 2;
    pub const CITY_GRAM: u32 = 2;
    pub const ZIP: u32 = 10;
    pub const ZIP3: u32 = 4;
    pub const STATE: u32 = 3;
    pub const PHONE: u32 = 14;
    pub const EMAIL: u32 = 14;
}

/// The two hash values of every bigram in every namespace.
pub(super) struct GramTable {
    hashes: Vec<(u16, u16)>,
}

impl GramTable {
    pub(super) fn new(bloom_key: &[u8; 32]) -> Self {
        let mut hashes = Vec::with_capacity(SPACES * SYMBOLS * SYMBOLS);
        for space in 0..SPACES {
            for a in 0..SYMBOLS {
                for b in 0..SYMBOLS {
                    let (x, y) = (symbol_byte(a), symbol_byte(b));
                    hashes.push(gram_hash(bloom_key, space, x, y));
                }
            }
        }
        Self { hashes }
    }

    fn get(&self, space: GramSpace, a: usize, b: usize) -> (u16, u16) {
        self.hashes[(space as usize * SYMBOLS + a) * SYMBOLS + b]
    }
}

/// The hash values of the small-domain elements (birth year, {month, day},
/// ZIP prefix, state, sex), computed once per key set for the same reason as
/// [`GramTable`]: they are the same few thousand values over and over.
pub(super) struct ElementTable {
    /// Years `FIRST_YEAR..FIRST_YEAR + 200`.
    years: Vec<(u16, u16)>,
    /// Indexed by `lo * 32 + hi`, lo and hi in 0..32.
    day_month: Vec<(u16, u16)>,
    /// "000" to "999".
    zip3: Vec<(u16, u16)>,
    /// Two lower-case letters, indexed by `a * 26 + b`.
    states: Vec<(u16, u16)>,
    /// One lower-case letter (sex: f, m, o).
    letters: Vec<(u16, u16)>,
}

const FIRST_YEAR: i32 = 1900;

impl ElementTable {
    pub(super) fn new(bloom_key: &[u8; 32]) -> Self {
        let hash = |tag: u8, value: &[u8]| element_hash(bloom_key, tag, value);
        let years = (0..200)
            .map(|i| hash(b'y', &year_digits(FIRST_YEAR + i)))
            .collect();
        let day_month = (0..32u8)
            .flat_map(|lo| (0..32u8).map(move |hi| [lo, hi]))
            .map(|pair| hash(b'm', &pair))
            .collect();
        let zip3 = (0..1000u32)
            .map(|n| hash(b'Z', format!("{n:03}").as_bytes()))
            .collect();
        let states = (b'a'..=b'z')
            .flat_map(|a| (b'a'..=b'z').map(move |b| [a, b]))
            .map(|code| hash(b't', &code))
            .collect();
        let letters = (b'a'..=b'z').map(|c| hash(b's', &[c])).collect();
        Self {
            years,
            day_month,
            zip3,
            states,
            letters,
        }
    }

    /// The hashes of element `tag` = `value`, from the table when it is there.
    pub(super) fn get(&self, tag: u8, value: &[u8]) -> Option<(u16, u16)> {
        let digits = |v: &[u8]| {
            v.iter().try_fold(0usize, |n, b| {
                b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
            })
        };
        match (tag, value) {
            (b'y', [_, _, _, _]) => {
                let year = i32::try_from(digits(value)?).ok()?;
                let i = usize::try_from(year - FIRST_YEAR).ok()?;
                self.years.get(i).copied()
            }
            (b'm', &[lo, hi]) if lo < 32 && hi < 32 => self
                .day_month
                .get(usize::from(lo) * 32 + usize::from(hi))
                .copied(),
            (b'Z', [_, _, _]) => self.zip3.get(digits(value)?).copied(),
            (b't', &[a, b]) if a.is_ascii_lowercase() && b.is_ascii_lowercase() => self
                .states
                .get(usize::from(a - b'a') * 26 + usize::from(b - b'a'))
                .copied(),
            (b's', &[c]) if c.is_ascii_lowercase() => {
                self.letters.get(usize::from(c - b'a')).copied()
            }
            _ => None,
        }
    }
}

/// The four ASCII digits of a year in 0..=9999.
pub(super) fn year_digits(year: i32) -> [u8; 4] {
    let y = year.clamp(0, 9999).unsigned_abs();
    // Each digit is < 10, so the conversions cannot fail.
    [y / 1000, y / 100 % 10, y / 10 % 10, y % 10].map(|d| b'0' + u8::try_from(d).unwrap_or(0))
}

fn element_hash(bloom_key: &[u8; 32], tag: u8, value: &[u8]) -> (u16, u16) {
    // "e", the tag, then the value: the tag is one byte and the value runs to
    // the end, so the framing is unambiguous. One call on a stack buffer when
    // it fits (see `tokens::framed_hash` for why).
    let mut buf = [0u8; 256];
    if let Some(slot) = buf.get_mut(2..2 + value.len()) {
        slot.copy_from_slice(value);
        buf[0] = b'e';
        buf[1] = tag;
        return split(blake3::keyed_hash(bloom_key, &buf[..2 + value.len()]).as_bytes());
    }
    let mut hasher = blake3::Hasher::new_keyed(bloom_key);
    hasher.update(&[b'e', tag]);
    hasher.update(value);
    split(hasher.finalize().as_bytes())
}

/// The symbol index of a byte of normalized text, if it is in the alphabet.
fn symbol(byte: u8) -> Option<usize> {
    match byte {
        b' ' => Some(0),
        b'a'..=b'z' => Some(usize::from(byte - b'a') + 1),
        b'0'..=b'9' => Some(usize::from(byte - b'0') + 27),
        _ => None,
    }
}

fn symbol_byte(index: usize) -> u8 {
    match index {
        0 => b' ',
        // The casts cannot truncate: index < SYMBOLS = 37.
        1..=26 => b'a' + u8::try_from(index - 1).unwrap_or(0),
        _ => b'0' + u8::try_from(index - 27).unwrap_or(0),
    }
}

fn gram_hash(bloom_key: &[u8; 32], space: usize, a: u8, b: u8) -> (u16, u16) {
    // "g", the namespace, the two bytes: fixed length, so unambiguous.
    let space = u8::try_from(space).unwrap_or(u8::MAX);
    split(blake3::keyed_hash(bloom_key, &[b'g', space, a, b]).as_bytes())
}

fn split(hash: &[u8; 32]) -> (u16, u16) {
    let h1 = u16::from_le_bytes([hash[0], hash[1]]);
    // Odd, so that the k positions h1 + i·h2 (mod 2^n) are distinct.
    let h2 = u16::from_le_bytes([hash[2], hash[3]]) | 1;
    (h1, h2)
}

/// A 1024-bit keyed Bloom filter.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Bloom(pub(super) [u64; WORDS]);

/// Which region an element goes into.
#[derive(Clone, Copy)]
pub(super) enum Region {
    Given,
    Surname,
    Details,
}

impl Region {
    /// The region's words within the filter.
    fn words(self) -> std::ops::Range<usize> {
        match self {
            Self::Given => 0..4,
            Self::Surname => 4..8,
            Self::Details => 8..16,
        }
    }
}

impl Bloom {
    pub(super) fn empty() -> Self {
        Self([0; WORDS])
    }

    fn set(&mut self, region: Region, (h1, h2): (u16, u16), k: u32) {
        let words = region.words();
        // A region has 256 or 512 bits: a power of two, so `& (bits - 1)` is
        // `mod bits`, and with `h2` odd the k positions are distinct.
        let bits = u32::try_from(words.len() * 64).unwrap_or(64);
        let (h1, h2) = (u32::from(h1), u32::from(h2));
        for i in 0..k {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & (bits - 1);
            self.0[words.start + (bit / 64) as usize] |= 1u64 << (bit % 64);
        }
    }

    fn region(&self, region: Region) -> &[u64] {
        &self.0[region.words()]
    }

    /// Whether anything was added to the region.
    pub(super) fn has(&self, region: Region) -> bool {
        self.region(region).iter().any(|w| *w != 0)
    }

    /// Dice similarity of region `a` of this filter and region `b` of `other`.
    pub(super) fn dice_regions(&self, a: Region, other: &Self, b: Region) -> f64 {
        dice(self.region(a), other.region(b))
    }

    /// Adds the bigrams of `text` (normalized words separated by single spaces),
    /// each word padded with a boundary on both sides: "ann" → " a", "an", "nn", "n ".
    pub(super) fn add_grams(
        &mut self,
        keys: &BloomKey,
        region: Region,
        space: GramSpace,
        text: &str,
        k: u32,
    ) {
        let bytes = text.as_bytes();
        let mut previous = b' ';
        for &byte in bytes.iter().chain(std::iter::once(&b' ')) {
            if !(previous == b' ' && byte == b' ') {
                let hash = match (symbol(previous), symbol(byte)) {
                    (Some(a), Some(b)) => keys.grams.get(space, a, b),
                    _ => gram_hash(&keys.key, space as usize, previous, byte),
                };
                self.set(region, hash, k);
            }
            previous = byte;
        }
    }

    /// Adds one whole element (a date part, a ZIP, a phone number, ...), labelled
    /// by `tag` so that equal values of different fields land apart.
    pub(super) fn add_element(
        &mut self,
        keys: &BloomKey,
        region: Region,
        tag: u8,
        value: &[u8],
        k: u32,
    ) {
        let hash = keys
            .elements
            .get(tag, value)
            .unwrap_or_else(|| element_hash(&keys.key, tag, value));
        self.set(region, hash, k);
    }

    pub(super) fn dice(&self, other: &Self) -> f64 {
        dice(&self.0, &other.0)
    }
}

/// Dice coefficient 2|A∩B| / (|A|+|B|); 0 when both are empty.
fn dice(a: &[u64], b: &[u64]) -> f64 {
    let (mut both, mut total) = (0u32, 0u32);
    for (x, y) in a.iter().zip(b) {
        both += (x & y).count_ones();
        total += x.count_ones() + y.count_ones();
    }
    if total == 0 {
        0.0
    } else {
        f64::from(2 * both) / f64::from(total)
    }
}
