//! Street addresses, states and ZIP codes.
//!
//! Streets are folded like names (lower-case ASCII words) and their common USPS
//! abbreviations are spelled out one way, so that `123 N. Main St., Apt #4` and
//! `123 north main street unit 4` agree. The expansion is consistent rather than
//! clever: `St. Paul St` becomes `street paul street` on every side, which is
//! all that matching needs.

use super::text::{self, Hash};

/// Normalizes a street address line: lower-case words, punctuation removed,
/// abbreviations expanded (`st`/`str` → `street`, `ave` → `avenue`, `n` →
/// `north`, `apt`/`unit`/`#`/`ste` → `unit`, ...), `P.O. Box` → `po box`.
pub fn normalize_street(input: &str) -> Result<String, String> {
    let folded = text::fold_words(input, Hash::Word);
    let mut street = String::with_capacity(folded.len() + 16);
    let mut previous = "";
    let mut words = text::words(&folded).peekable();
    while let Some(word) = words.next() {
        let word = if word == "p" && words.peek() == Some(&"o") {
            // `P.O. Box`, folded to `p o box`.
            words.next();
            "po"
        } else {
            expand_street_word(word)
        };
        // `Apt #4` is one unit designator, not two.
        if word == "unit" && previous == "unit" {
            continue;
        }
        if !street.is_empty() {
            street.push(' ');
        }
        street.push_str(word);
        previous = word;
    }
    if !street.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return Err("has no letters or digits".to_owned());
    }
    Ok(street)
}

/// The canonical spelling of one street word. Canonical spellings map to
/// themselves, which keeps the expansion idempotent (a test checks it).
fn expand_street_word(word: &str) -> &str {
    match word {
        "st" | "str" | "street" => "street",
        "ave" | "av" | "aven" | "avn" | "avenue" => "avenue",
        "rd" => "road",
        "blvd" | "boul" | "blv" => "boulevard",
        "dr" | "drv" => "drive",
        "ln" => "lane",
        "ct" | "crt" => "court",
        "pl" => "place",
        "cir" | "circ" => "circle",
        "pkwy" | "pky" | "parkway" => "parkway",
        "hwy" => "highway",
        "fwy" => "freeway",
        "expy" => "expressway",
        "ter" | "terr" => "terrace",
        "trl" => "trail",
        "sq" => "square",
        "cres" => "crescent",
        "n" => "north",
        "s" => "south",
        "e" => "east",
        "w" => "west",
        "ne" => "northeast",
        "nw" => "northwest",
        "se" => "southeast",
        "sw" => "southwest",
        "apt" | "apartment" | "unit" | "#" | "ste" | "suite" => "unit",
        "bldg" => "building",
        "fl" => "floor",
        "rm" => "room",
        _ => word,
    }
}

/// Normalizes a US state, district or territory to its USPS code: `CA`, `ca`,
/// `Calif.` and `California` are all `CA`.
pub fn normalize_state(input: &str) -> Result<String, String> {
    let folded = text::fold_words(input, Hash::Punctuation);
    // `D.C.` folds to `d c`: two one-letter words are a code.
    let code = if folded.len() == 3 && folded.as_bytes()[1] == b' ' {
        let bytes = folded.as_bytes();
        [bytes[0], bytes[2]]
    } else if folded.len() == 2 {
        let bytes = folded.as_bytes();
        [bytes[0], bytes[1]]
    } else {
        [0, 0]
    };
    let found = STATE_CODES
        .iter()
        .find(|code_text| code_text.as_bytes().eq_ignore_ascii_case(&code))
        .copied()
        .or_else(|| {
            STATE_NAMES
                .binary_search_by(|(name, _)| (*name).cmp(folded.as_str()))
                .ok()
                .map(|index| STATE_NAMES[index].1)
        });
    found.map(str::to_owned).ok_or_else(|| {
        "is not a US state, district or territory (use its two-letter USPS code)".to_owned()
    })
}

/// USPS codes of the states, DC, the territories and the armed-forces
/// "states".
pub(crate) static STATE_CODES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP", "AA", "AE", "AP",
];

/// Folded full names and common (AP-style) abbreviations, sorted by name (a
/// test checks the order and that every code is in [`STATE_CODES`]).
static STATE_NAMES: &[(&str, &str)] = &[
    ("alabama", "AL"),
    ("alaska", "AK"),
    ("american samoa", "AS"),
    ("ariz", "AZ"),
    ("arizona", "AZ"),
    ("ark", "AR"),
    ("arkansas", "AR"),
    ("armed forces americas", "AA"),
    ("armed forces europe", "AE"),
    ("armed forces pacific", "AP"),
    ("calif", "CA"),
    ("california", "CA"),
    ("colo", "CO"),
    ("colorado", "CO"),
    ("conn", "CT"),
    ("connecticut", "CT"),
    ("del", "DE"),
    ("delaware", "DE"),
    ("district of columbia", "DC"),
    ("fla", "FL"),
    ("florida", "FL"),
    ("georgia", "GA"),
    ("guam", "GU"),
    ("hawaii", "HI"),
    ("idaho", "ID"),
    ("ill", "IL"),
    ("illinois", "IL"),
    ("ind", "IN"),
    ("indiana", "IN"),
    ("iowa", "IA"),
    ("kan", "KS"),
    ("kans", "KS"),
    ("kansas", "KS"),
    ("kentucky", "KY"),
    ("louisiana", "LA"),
    ("maine", "ME"),
    ("maryland", "MD"),
    ("mass", "MA"),
    ("massachusetts", "MA"),
    ("mich", "MI"),
    ("michigan", "MI"),
    ("minn", "MN"),
    ("minnesota", "MN"),
    ("miss", "MS"),
    ("mississippi", "MS"),
    ("missouri", "MO"),
    ("mont", "MT"),
    ("montana", "MT"),
    ("neb", "NE"),
    ("nebr", "NE"),
    ("nebraska", "NE"),
    ("nev", "NV"),
    ("nevada", "NV"),
    ("new hampshire", "NH"),
    ("new jersey", "NJ"),
    ("new mexico", "NM"),
    ("new york", "NY"),
    ("north carolina", "NC"),
    ("north dakota", "ND"),
    ("northern mariana islands", "MP"),
    ("ohio", "OH"),
    ("okla", "OK"),
    ("oklahoma", "OK"),
    ("ore", "OR"),
    ("oreg", "OR"),
    ("oregon", "OR"),
    ("penn", "PA"),
    ("penna", "PA"),
    ("pennsylvania", "PA"),
    ("puerto rico", "PR"),
    ("rhode island", "RI"),
    ("south carolina", "SC"),
    ("south dakota", "SD"),
    ("tenn", "TN"),
    ("tennessee", "TN"),
    ("tex", "TX"),
    ("texas", "TX"),
    ("us virgin islands", "VI"),
    ("utah", "UT"),
    ("vermont", "VT"),
    ("virgin islands", "VI"),
    ("virginia", "VA"),
    ("wash", "WA"),
    ("washington", "WA"),
    ("washington dc", "DC"),
    ("west virginia", "WV"),
    ("wis", "WI"),
    ("wisc", "WI"),
    ("wisconsin", "WI"),
    ("wyo", "WY"),
    ("wyoming", "WY"),
];

/// Normalizes a US ZIP code to its five digits: `95814`, `95814-1234`,
/// `95814 1234` and `958141234` are all `95814`.
pub fn normalize_zip(input: &str) -> Result<String, String> {
    let input = input.trim();
    let bytes = input.as_bytes();
    let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    let five = match bytes.len() {
        5 | 9 if all_digits(bytes) => &input[..5],
        10 if matches!(bytes[5], b'-' | b' ')
            && all_digits(&bytes[..5])
            && all_digits(&bytes[6..]) =>
        {
            &input[..5]
        }
        _ => return Err("is not a ZIP code (five digits, or ZIP+4)".to_owned()),
    };
    if five == "00000" {
        return Err("is a placeholder ZIP code, not a real one".to_owned());
    }
    Ok(five.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn street(input: &str) -> String {
        normalize_street(input).expect("a valid street")
    }

    #[test]
    fn streets_expand_abbreviations_consistently() {
        assert_eq!(
            street("123 N. Main St., Apt #4B"),
            "123 north main street unit 4b"
        );
        assert_eq!(
            street("123 NORTH MAIN STREET UNIT 4B"),
            "123 north main street unit 4b"
        );
        assert_eq!(
            street("123 n main str #4b"),
            "123 north main street unit 4b"
        );
        assert_eq!(street("55 Elm Ave."), "55 elm avenue");
        assert_eq!(street("9 Oak Rd"), "9 oak road");
        assert_eq!(street("1 Sunset Blvd"), "1 sunset boulevard");
        assert_eq!(street("77 Pine Dr"), "77 pine drive");
        assert_eq!(street("8 Birch Ln"), "8 birch lane");
        assert_eq!(street("3 Maple Ct"), "3 maple court");
        assert_eq!(
            street("400 S. 5th St. Suite 200"),
            "400 south 5th street unit 200"
        );
        assert_eq!(street("12 E Elm St Unit 3"), "12 east elm street unit 3");
        assert_eq!(street("12 W Elm St # 3"), "12 west elm street unit 3");
        assert_eq!(street("P.O. Box 1234"), "po box 1234");
        assert_eq!(street("1200 Calle José Martí"), "1200 calle jose marti");
    }

    #[test]
    fn expansions_are_fixed_points() {
        for word in [
            "st", "str", "ave", "rd", "blvd", "dr", "ln", "ct", "n", "s", "e", "w", "ne", "apt",
            "#", "ste", "hwy", "pkwy",
        ] {
            let canonical = expand_street_word(word);
            assert_eq!(expand_street_word(canonical), canonical, "{word}");
        }
    }

    #[test]
    fn streets_without_content_are_errors() {
        assert!(normalize_street("").is_err());
        assert!(normalize_street(" ,.- ").is_err());
        assert_eq!(street("#"), "unit");
    }

    #[test]
    fn states_map_names_and_codes() {
        for (input, code) in [
            ("CA", "CA"),
            ("ca", "CA"),
            (" Ca. ", "CA"),
            ("California", "CA"),
            ("CALIFORNIA", "CA"),
            ("Calif.", "CA"),
            ("New York", "NY"),
            ("new-york", "NY"),
            ("D.C.", "DC"),
            ("District of Columbia", "DC"),
            ("Puerto Rico", "PR"),
            ("West  Virginia", "WV"),
        ] {
            assert_eq!(normalize_state(input).as_deref(), Ok(code), "{input}");
        }
        for input in ["", "XX", "Cali", "New", "C", "CAL"] {
            assert!(normalize_state(input).is_err(), "{input}");
        }
    }

    #[test]
    fn state_tables_are_consistent() {
        for pair in STATE_NAMES.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{} must sort before {}",
                pair[0].0,
                pair[1].0
            );
        }
        for (name, code) in STATE_NAMES {
            assert!(STATE_CODES.contains(code), "{name}: {code}");
            assert_eq!(text::fold_words(name, Hash::Punctuation), *name);
        }
        assert_eq!(STATE_CODES.len(), 50 + 1 + 5 + 3);
    }

    #[test]
    fn zips_keep_five_digits() {
        for input in ["95814", "95814-1234", "95814 1234", "958141234", " 95814 "] {
            assert_eq!(normalize_zip(input).as_deref(), Ok("95814"), "{input}");
        }
        for input in [
            "",
            "9581",
            "958145",
            "95814-12",
            "9581A",
            "95814_1234",
            "００１２３",
            "00000",
            "95814-",
        ] {
            assert!(normalize_zip(input).is_err(), "{input}");
        }
        assert_eq!(normalize_zip("02134").as_deref(), Ok("02134"));
    }
}
