//! Phone numbers, to E.164, through the `phonenumber` crate (a port of Google's
//! libphonenumber and its metadata): we write no phone-number patterns of our
//! own.
//!
//! # Why there is a fast path
//! `phonenumber::is_valid` reads its metadata patterns through one process-wide
//! regex LRU cache of 100 entries behind a mutex. Validating a NANP number
//! walks up to 25 regions of about a dozen patterns each, so the cache thrashes
//! and recompiles regexes: measured, parse ≈ 1.6 µs and parse + `is_valid` ≈
//! 10–14 µs per number on one core, and the mutex serializes every thread that
//! validates phones. That alone would cap the linkage engine below its 200,000
//! identities/s. With the shortcuts below, `normalize_phone` measures ≈ 0.18 µs
//! per number (`cargo bench --bench normalize`).
//!
//! So for country calling code 1 (NANP, which is nearly all of our data):
//! - validity is decided by [`NanpValidator`], which compiles the *library's own
//!   metadata patterns* for code 1 once and applies exactly the library's rule
//!   (`source_for` to pick the region, then "the number has a known type");
//! - input already in one of the shapes `+1 NXX NXX XXXX`, `1 NXX NXX XXXX` or
//!   `NXX NXX XXXX` (digits with spaces, `-`, `.` or parentheses) under a US or
//!   CA default region skips the library's parser, whose result for those
//!   shapes is known: calling code 1 and those ten digits.
//!
//! Property tests in this module compare both shortcuts with the library on
//! generated numbers and formattings, so a metadata update that changes the
//! library's answer shows up as a failing test, not as a silent divergence.

use std::sync::LazyLock;

use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use phonenumber::{Mode, PhoneNumber, Type, country};
use regex::{Regex, RegexBuilder};

/// Normalizes a phone number to E.164 (`+19165550142`). A number without a
/// country code is read in `default_region`. An extension is dropped (E.164 has
/// none). Invalid numbers (wrong length, unassigned area code, ...) are errors.
pub fn normalize_phone(input: &str, default_region: country::Id) -> Result<String, String> {
    let input = input.trim();
    if input.is_empty() {
        return Err("is empty".to_owned());
    }
    if let (Some(digits), Some(validator)) = (nanp_shape(input, default_region), NANP.as_ref()) {
        // Only ASCII digits were copied, so the conversion cannot fail.
        let national = std::str::from_utf8(&digits).unwrap_or_default();
        return if validator.is_valid(national) {
            let mut e164 = String::with_capacity(12);
            e164.push_str("+1");
            e164.push_str(national);
            Ok(e164)
        } else {
            Err(invalid())
        };
    }
    let number = phonenumber::parse(Some(default_region), input).map_err(|_| {
        "is not a phone number (expected digits, optionally with +country code)".to_owned()
    })?;
    if is_valid(&number) {
        Ok(number.format().mode(Mode::E164).to_string())
    } else {
        Err(invalid())
    }
}

fn invalid() -> String {
    "is not a valid phone number (wrong length or an unassigned area code)".to_owned()
}

/// `phonenumber::is_valid`, answered by [`NanpValidator`] for calling code 1.
fn is_valid(number: &PhoneNumber) -> bool {
    match NANP.as_ref() {
        Some(validator) if number.code().value() == 1 => {
            validator.is_valid(&number.national().to_string())
        }
        _ => phonenumber::is_valid(number),
    }
}

/// The ten-digit national number of input in a shape whose parse is known (see
/// the module docs), as ASCII digits; `None` sends the input to the library.
fn nanp_shape(input: &str, default_region: country::Id) -> Option<[u8; 10]> {
    let (plus, rest) = match input.strip_prefix('+') {
        Some(rest) => {
            // The library reads the country code from the first group of digits
            // after `+`: `+1 916…` and `+19165550142` are code 1, but
            // `+1916-555…` is an invalid code 1916. Only the first two shapes
            // take the fast path.
            let after_code = rest.trim_start_matches(' ').strip_prefix('1')?;
            let contiguous =
                after_code.len() == 10 && after_code.bytes().all(|b| b.is_ascii_digit());
            let separated = after_code.starts_with([' ', '-', '.', '(', ')']);
            if !(contiguous || separated) {
                return None;
            }
            (true, rest)
        }
        None => (false, input),
    };
    let mut digits = [0u8; 11];
    let mut count = 0;
    for byte in rest.bytes() {
        match byte {
            b'0'..=b'9' => {
                *digits.get_mut(count)? = byte;
                count += 1;
            }
            b' ' | b'-' | b'.' | b'(' | b')' => {}
            _ => return None,
        }
    }
    let national = match (plus, count) {
        (true, 11) if digits[0] == b'1' => &digits[1..],
        (false, 11) if digits[0] == b'1' && is_nanp_region(default_region) => &digits[1..],
        (false, 10) if is_nanp_region(default_region) => &digits[..10],
        _ => return None,
    };
    // An area code starting 0 or 1 meets the library's national-prefix
    // handling; leave it to the library.
    if !(b'2'..=b'9').contains(&national[0]) {
        return None;
    }
    national.try_into().ok()
}

/// Default regions for which a bare ten-digit number is known to parse as
/// calling code 1 plus those digits. Other NANP regions have national-prefix
/// transform rules (seven-digit local dialling), so they go to the library.
fn is_nanp_region(region: country::Id) -> bool {
    matches!(region, country::Id::US | country::Id::CA)
}

/// Validity of calling-code-1 numbers, decided as `phonenumber::is_valid` does,
/// from the same metadata, with the patterns compiled once.
struct NanpValidator {
    /// In the library's order, which decides between regions.
    regions: Vec<NanpRegion>,
}

struct NanpRegion {
    leading_digits: Option<Regex>,
    general: Pattern,
    /// The descriptors `number_type` tries; any match is a known type.
    types: Vec<Pattern>,
}

/// A metadata descriptor: a possible-length list and a national-number pattern.
struct Pattern {
    possible_length: Vec<u16>,
    regex: Regex,
}

/// `None` only if the library's metadata stopped compiling with `regex`, in
/// which case every number goes through the library.
static NANP: LazyLock<Option<NanpValidator>> = LazyLock::new(NanpValidator::from_library);

/// The number types `phonenumber`'s `number_type` checks before answering
/// `Unknown`. Only "any of them matches" matters, so the common ones come first.
const KNOWN_TYPES: [Type; 10] = [
    Type::FixedLine,
    Type::Mobile,
    Type::PremiumRate,
    Type::TollFree,
    Type::SharedCost,
    Type::Voip,
    Type::PersonalNumber,
    Type::Pager,
    Type::Uan,
    Type::Voicemail,
];

impl NanpValidator {
    fn from_library() -> Option<Self> {
        let regions = DATABASE
            .region(&1u16)?
            .into_iter()
            .map(|id| NanpRegion::from_metadata(DATABASE.by_id(id)?))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { regions })
    }

    /// The library's `is_valid_with` for calling code 1: `source_for` picks the
    /// first region whose leading-digits pattern matches at the start, or
    /// (for a region without one) for which the number has a known type; the
    /// number is valid if it has a known type there.
    fn is_valid(&self, national: &str) -> bool {
        for region in &self.regions {
            let chosen = match &region.leading_digits {
                Some(leading) => matches_at_start(leading, national),
                None => region.has_known_type(national),
            };
            if chosen {
                return region.has_known_type(national);
            }
        }
        false
    }
}

impl NanpRegion {
    fn from_metadata(meta: &Metadata) -> Option<Self> {
        let descriptors = meta.descriptors();
        let leading_digits = match meta.leading_digits() {
            Some(pattern) => Some(compile(pattern.as_str())?),
            None => None,
        };
        let types = KNOWN_TYPES
            .iter()
            .filter_map(|kind| descriptors.get(*kind))
            .map(Pattern::from_descriptor)
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            leading_digits,
            general: Pattern::from_descriptor(descriptors.general())?,
            types,
        })
    }

    /// `number_type(meta, national) != Type::Unknown`.
    fn has_known_type(&self, national: &str) -> bool {
        self.general.is_match(national) && self.types.iter().any(|t| t.is_match(national))
    }
}

impl Pattern {
    fn from_descriptor(descriptor: &Descriptor) -> Option<Self> {
        Some(Self {
            possible_length: descriptor.possible_length().to_vec(),
            regex: compile(descriptor.national_number().as_str())?,
        })
    }

    /// The library's `Descriptor::is_match`: a listed length, and a pattern
    /// match that starts at the first digit.
    fn is_match(&self, national: &str) -> bool {
        let length_ok = u16::try_from(national.len()).is_ok_and(|len| {
            self.possible_length.is_empty() || self.possible_length.contains(&len)
        });
        length_ok && matches_at_start(&self.regex, national)
    }
}

/// Compiles a metadata pattern, anchored at the start, with `ignore_whitespace`
/// as the library compiles it.
///
/// The library tests "the leftmost match starts at offset 0"; a match starting
/// at 0 exists exactly when the leftmost one starts there, so an anchored
/// `is_match` gives the same answer without scanning from every offset (with
/// unanchored `find`, the fast path measured 3.2 µs per number; anchored, 0.18
/// µs). The newline keeps the closing parenthesis out of any trailing `#`
/// comment in whitespace-insensitive mode.
fn compile(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(&format!("^(?:{pattern}\n)"))
        .ignore_whitespace(true)
        .build()
        .ok()
}

/// The library's test, on a pattern from [`compile`].
fn matches_at_start(regex: &Regex, text: &str) -> bool {
    regex.is_match(text)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What `normalize_phone` would answer using the library alone.
    fn library_only(input: &str, region: country::Id) -> Result<String, ()> {
        let number = phonenumber::parse(Some(region), input.trim()).map_err(|_| ())?;
        if phonenumber::is_valid(&number) {
            Ok(number.format().mode(Mode::E164).to_string())
        } else {
            Err(())
        }
    }

    fn phone(input: &str) -> Result<String, String> {
        normalize_phone(input, country::Id::US)
    }

    #[test]
    fn formats_people_type_give_e164() {
        for input in [
            "(916) 555-0142",
            "916-555-0142",
            "916.555.0142",
            "916 555 0142",
            "9165550142",
            "1-916-555-0142",
            "1 (916) 555-0142",
            "+1 916 555 0142",
            "+1 (916) 555-0142",
            "+19165550142",
            "  916-555-0142 ",
            "916-555-0142 ext. 23",
            "916-555-0142 x23",
            "tel:+1-916-555-0142",
            "(916)555-0142",
        ] {
            assert_eq!(phone(input).as_deref(), Ok("+19165550142"), "{input}");
        }
    }

    #[test]
    fn international_numbers_keep_their_country() {
        assert_eq!(phone("+44 20 7946 0958").as_deref(), Ok("+442079460958"));
        assert_eq!(phone("011 44 20 7946 0958").as_deref(), Ok("+442079460958"));
        assert_eq!(
            normalize_phone("020 7946 0958", country::Id::GB).as_deref(),
            Ok("+442079460958")
        );
        assert_eq!(
            normalize_phone("(416) 555-0199", country::Id::CA).as_deref(),
            Ok("+14165550199")
        );
    }

    #[test]
    fn invalid_numbers_are_rejected() {
        for input in [
            "",
            "   ",
            "555-0142",
            "12345",
            "(123) 456-7890",
            "916-555-014",
            "916-555-01422",
            "call me",
            "+1 916 555 0142 0142",
            "000-000-0000",
        ] {
            assert!(phone(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn e164_output_is_a_fixed_point() {
        for input in ["(916) 555-0142", "+44 20 7946 0958", "(800) 555-0199"] {
            let first = phone(input).expect("valid");
            assert_eq!(phone(&first), Ok(first.clone()));
        }
    }

    #[test]
    fn library_quirks_are_not_shortcut() {
        // The library reads `+1916-…` as country code 1916 (an error) but
        // `+1916 …` and `+19165550142` as code 1; the fast path must agree.
        for input in [
            "+12-1-0-2-00-0-0-0-0",
            "+1916-5550142",
            "+1916 555 0142",
            "+19165550142",
            "1234567890",
            "12345678901",
        ] {
            assert_eq!(
                phone(input).map_err(|_| ()),
                library_only(input, country::Id::US),
                "{input}"
            );
        }
    }

    #[test]
    fn validator_compiles_from_the_library() {
        let validator = NANP.as_ref().expect("the NANP metadata compiles");
        assert!(
            validator.regions.len() > 20,
            "{} NANP regions",
            validator.regions.len()
        );
    }

    /// Ten digits: mostly plausible NANP (area and exchange 2–9), sometimes not.
    fn national() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[2-9][0-9]{2}[2-9][0-9]{6}",
            1 => "[0-9]{10}",
        ]
    }

    /// A formatting of ten digits as people type them, with or without a
    /// prefix, and sometimes with stray separators.
    fn formatted() -> impl Strategy<Value = String> {
        let prefix = prop_oneof![
            Just(""),
            Just("+1"),
            Just("+1 "),
            Just("+1-"),
            Just("+1("),
            Just("+ 1 "),
            Just("1"),
            Just("1-"),
            Just("1 "),
            Just("+"),
        ];
        let separators = prop::collection::vec(
            prop_oneof![
                Just(""),
                Just(" "),
                Just("-"),
                Just("."),
                Just("("),
                Just(")"),
                Just(") ")
            ],
            10,
        );
        (prefix, national(), separators).prop_map(|(prefix, digits, separators)| {
            let mut out = prefix.to_owned();
            for (digit, separator) in digits.chars().zip(separators) {
                out.push(digit);
                out.push_str(separator);
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn nanp_validator_agrees_with_the_library(digits in national()) {
            let number = phonenumber::parse(None, format!("+1{digits}")).expect("parses");
            let validator = NANP.as_ref().expect("compiles");
            prop_assert_eq!(validator.is_valid(&digits), phonenumber::is_valid(&number));
        }

        #[test]
        fn fast_path_agrees_with_the_library(input in formatted()) {
            for region in [country::Id::US, country::Id::CA, country::Id::GB] {
                prop_assert_eq!(
                    normalize_phone(&input, region).map_err(|_| ()),
                    library_only(&input, region),
                    "{} in {:?}", input, region
                );
            }
        }

        #[test]
        fn agrees_with_the_library_on_anything(input in "[+]?[0-9 ()./x-]{0,20}") {
            prop_assert_eq!(
                normalize_phone(&input, country::Id::US).map_err(|_| ()),
                library_only(&input, country::Id::US)
            );
        }
    }
}
