//! Property tests over all normalizers: idempotence, no panics on arbitrary
//! Unicode, no quoting of rejected values, and one person under many spellings
//! normalizing to one identity.

use chrono::{Datelike, NaiveDate};
use proptest::prelude::*;

use super::*;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).expect("valid date")
}

fn options() -> NormalizeOptions {
    NormalizeOptions::new(phonenumber::country::Id::US, today())
}

/// Arbitrary text, and text shaped like each identifier (so that the success
/// paths are exercised too), with some non-Latin script thrown in.
fn messy_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-zÀ-ÿĀ-ſ' .,#/-]{0,30}",
        "[0-9A-Za-z #./-]{0,24}",
        "[+0-9 ()./x-]{0,20}",
        "[a-zA-Z0-9.+_-]{1,10}@[a-zA-Z0-9-]{1,10}\\.[a-zA-Z]{2,4}",
        "\\PC{0,12}",
        "[\u{0400}-\u{04FF}\u{4E00}-\u{4E80}\u{0600}-\u{06FF}\u{AC00}-\u{AC80} ]{0,10}",
        "\\p{L}{1,8}@\\p{L}{1,8}\\.[a-zA-Z]{2,3}",
    ]
}

fn messy_input() -> impl Strategy<Value = IdentityInput> {
    let field = || prop::option::of(messy_text());
    (
        (field(), field(), field(), field(), field()),
        (field(), field(), field(), field(), field()),
    )
        .prop_map(
            |((given_name, surname, dob, sex, street), (city, state, zip, phone, email))| {
                IdentityInput {
                    given_name,
                    surname,
                    dob,
                    sex,
                    street,
                    city,
                    state,
                    zip,
                    phone,
                    email,
                }
            },
        )
}

fn field_value<'a>(input: &'a IdentityInput, field: &str) -> Option<&'a str> {
    match field {
        "given_name" => input.given_name.as_deref(),
        "surname" => input.surname.as_deref(),
        "dob" => input.dob.as_deref(),
        "sex" => input.sex.as_deref(),
        "street" => input.street.as_deref(),
        "city" => input.city.as_deref(),
        "state" => input.state.as_deref(),
        "zip" => input.zip.as_deref(),
        "phone" => input.phone.as_deref(),
        "email" => input.email.as_deref(),
        _ => None,
    }
}

type TextNormalizer = fn(&str) -> Result<String, String>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn names_are_idempotent(input in messy_text()) {
        if let Ok(first) = normalize_name(&input) {
            let again = normalize_name(&first.words).expect("normalized words normalize");
            prop_assert_eq!(&again.words, &first.words);
            prop_assert_eq!(again.suffix, None);
            // The words with their suffix put back read the same.
            if let Some(suffix) = first.suffix {
                let rejoined = normalize_name(&format!("{} {suffix}", first.words)).expect("valid");
                prop_assert_eq!(rejoined, first);
            }
        }
    }

    #[test]
    fn text_fields_are_idempotent(input in messy_text()) {
        let normalizers: [(&str, TextNormalizer); 5] = [
            ("city", normalize_city),
            ("street", normalize_street),
            ("state", normalize_state),
            ("zip", normalize_zip),
            ("email", normalize_email),
        ];
        for (field, normalize_field) in normalizers {
            if let Ok(first) = normalize_field(&input) {
                prop_assert_eq!(normalize_field(&first), Ok(first.clone()), "{}", field);
            }
        }
        if let Ok(first) = normalize_phone(&input, phonenumber::country::Id::US) {
            prop_assert_eq!(normalize_phone(&first, phonenumber::country::Id::US), Ok(first.clone()));
            prop_assert_eq!(normalize_phone(&first, phonenumber::country::Id::GB), Ok(first));
        }
        if let Ok(sex) = normalize_sex(&input) {
            prop_assert_eq!(normalize_sex(sex.as_str()), Ok(sex));
        }
        if let Ok(date) = normalize_dob(&input, today()) {
            prop_assert_eq!(normalize_dob(&date.to_string(), today()), Ok(date));
        }
        // Nicknames: a canonical name is its own canonical name.
        if let Ok(name) = normalize_name(&input) {
            let canonical = canonical_given_name(&name.words);
            prop_assert_eq!(canonical_given_name(canonical), canonical);
        }
    }

    #[test]
    fn dates_in_range_are_idempotent(days in 0i64..46_000) {
        let date = today() - chrono::Days::new(u64::try_from(days).expect("non-negative"));
        if date.year() >= 1900 {
            prop_assert_eq!(normalize_dob(&date.to_string(), today()), Ok(date));
            let us = date.format("%m/%d/%Y").to_string();
            prop_assert_eq!(normalize_dob(&us, today()), Ok(date));
        }
    }

    #[test]
    fn normalize_never_panics_and_never_quotes(input in messy_input()) {
        let outcome = normalize(&input, &options());
        if let Err(problems) = outcome {
            prop_assert!(!problems.is_empty());
            for problem in &problems {
                let value = field_value(&input, problem.field).expect("a problem names a given field");
                for quoted in [value, value.trim()] {
                    if quoted.chars().count() >= 4 {
                        prop_assert!(
                            !problem.problem.contains(quoted),
                            "{} problem quotes its value", problem.field
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_bad_field_is_reported(given in prop::bool::ANY, phone in prop::bool::ANY, dob in prop::bool::ANY) {
        let input = IdentityInput {
            given_name: Some(if given { "Ann" } else { "12345" }.to_owned()),
            surname: Some("Lee".to_owned()),
            dob: Some(if dob { "1984-03-07" } else { "1984-02-30" }.to_owned()),
            phone: Some(if phone { "(916) 555-0142" } else { "555-0142" }.to_owned()),
            ..IdentityInput::default()
        };
        let expected: Vec<&str> = [(!given, "given_name"), (!dob, "dob"), (!phone, "phone")]
            .into_iter()
            .filter_map(|(bad, field)| bad.then_some(field))
            .collect();
        match normalize(&input, &options()) {
            Ok(_) => prop_assert!(expected.is_empty()),
            Err(problems) => {
                let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
                prop_assert_eq!(fields, expected);
            }
        }
    }

    #[test]
    fn one_person_spelled_two_ways_normalizes_equal(
        person in person(),
        first in any::<u64>(),
        second in any::<u64>(),
    ) {
        let a = normalize(&person.spell(first), &options()).expect("first spelling is valid");
        let b = normalize(&person.spell(second), &options()).expect("second spelling is valid");
        prop_assert_eq!(a, b);
    }
}

/// A person in canonical terms, to be spelled in many messy ways.
#[derive(Debug, Clone)]
struct Person {
    given: Vec<String>,
    surname: Vec<String>,
    suffix: Option<&'static str>,
    dob: NaiveDate,
    sex: Sex,
    house: u16,
    street: Vec<String>,
    city: Vec<String>,
    state: (&'static str, &'static str),
    zip: u32,
    phone: (u16, u16, u16),
    email: String,
}

/// A name word: lower-case, at least three letters, not a title or suffix.
fn word() -> impl Strategy<Value = String> {
    "[a-z]{3,9}".prop_filter("not a title or suffix", |w| {
        !matches!(
            w.as_str(),
            "mrs" | "miss" | "iii" | "jnr" | "snr" | "junior" | "senior"
        )
    })
}

fn person() -> impl Strategy<Value = Person> {
    let words = |max| prop::collection::vec(word(), 1..=max);
    let suffix = prop::option::of(prop::sample::select(
        &["jr", "sr", "ii", "iii", "iv", "v"][..],
    ));
    let sex = prop::sample::select(&[Sex::Female, Sex::Male, Sex::Other, Sex::Unknown][..]);
    let state = prop::sample::select(
        &[
            ("CA", "California"),
            ("NY", "New York"),
            ("DC", "District of Columbia"),
        ][..],
    );
    // Years 1930 to 2025 keep two-digit years unambiguous on 2026-11-23.
    let dob = (1930i32..=2025, 1u32..=12, 1u32..=28)
        .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).expect("valid date"));
    let phone = (
        prop::sample::select(&[916u16, 415, 212, 303, 617, 530][..]),
        200u16..=999,
        0u16..=9999,
    );
    (
        (words(2), words(3), suffix, dob, sex),
        (
            1u16..=9999,
            words(3),
            words(2),
            state,
            10_000u32..=99_999,
            phone,
            "[a-z]{1,8}@[a-z]{2,8}\\.org",
        ),
    )
        .prop_map(
            |(
                (given, surname, suffix, dob, sex),
                (house, street, city, state, zip, phone, email),
            )| Person {
                given,
                surname,
                suffix,
                dob,
                sex,
                house,
                street,
                city,
                state,
                zip,
                phone,
                email,
            },
        )
}

/// A tiny deterministic generator of spelling choices.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        let len = u64::try_from(options.len()).expect("small");
        options[usize::try_from(self.next() % len).expect("small")]
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

impl Person {
    fn spell(&self, seed: u64) -> IdentityInput {
        let mut c = Choices(seed | 1);
        let mut surname = spell_words(&mut c, &self.surname);
        let mut given = spell_words(&mut c, &self.given);
        if let Some(suffix) = self.suffix {
            let written = match suffix {
                "jr" => c.pick(&["Jr", "Jr.", "JR", "junior", "Jnr"]),
                "sr" => c.pick(&["Sr", "Sr.", "SR", "Senior"]),
                "ii" => c.pick(&["II", "ii", "2nd"]),
                "iii" => c.pick(&["III", "iii", "3rd"]),
                "iv" => c.pick(&["IV", "4th"]),
                _ => "V",
            };
            let separator = c.pick(&[" ", ", ", "  "]);
            // Suffix placement: after the surname, or after the given name.
            let target = if c.chance(2) {
                &mut surname
            } else {
                &mut given
            };
            target.push_str(separator);
            target.push_str(written);
        }
        if c.chance(4) {
            given.insert_str(0, c.pick(&["Mr. ", "Ms ", "Dr. ", "MRS "]));
        }
        let d = self.dob;
        let dob = match c.next() % 7 {
            0 => d.format("%Y-%m-%d").to_string(),
            1 => d.format("%m/%d/%Y").to_string(),
            2 => format!("{}/{}/{}", d.month(), d.day(), d.year()),
            3 => format!("{}-{}-{:02}", d.month(), d.day(), d.year() % 100),
            4 => d.format("%Y%m%d").to_string(),
            5 => d.format("%B %-d, %Y").to_string(),
            _ => d.format("%-d %b %Y").to_string(),
        };
        let sex = match self.sex {
            Sex::Female => c.pick(&["F", "f", "Female", "woman"]),
            Sex::Male => c.pick(&["M", "male", "MAN"]),
            Sex::Other => c.pick(&["X", "other", "Nonbinary"]),
            Sex::Unknown => c.pick(&["U", "unknown"]),
        };
        let street_type = c.pick(&["St", "St.", "Street", "STREET", "str"]);
        let street = format!(
            "{}{}{} {street_type}{}",
            self.house,
            c.pick(&[" N ", " N. ", " North ", " north "]),
            spell_words(&mut c, &self.street),
            c.pick(&[" Apt 4", " #4", " Unit 4", ", apt. #4"]),
        );
        let (area, exchange, line) = self.phone;
        let phone = match c.next() % 6 {
            0 => format!("({area}) {exchange}-{line:04}"),
            1 => format!("{area}-{exchange}-{line:04}"),
            2 => format!("{area}.{exchange}.{line:04}"),
            3 => format!("+1 {area} {exchange} {line:04}"),
            4 => format!("1-{area}-{exchange}-{line:04}"),
            _ => format!("{area}{exchange}{line:04}"),
        };
        let zip = if c.chance(2) {
            format!("{:05}", self.zip)
        } else {
            format!("{:05}-{:04}", self.zip, c.next() % 10_000)
        };
        let state = if c.chance(2) {
            self.state.0.to_owned()
        } else {
            recase(&mut c, self.state.1)
        };
        let email = format!(
            "{}{}{}",
            c.pick(&["", " "]),
            recase(&mut c, &self.email),
            c.pick(&["", "  "])
        );
        IdentityInput {
            given_name: Some(given),
            surname: Some(surname),
            dob: Some(dob),
            sex: Some(sex.to_owned()),
            street: Some(street),
            city: Some(spell_words(&mut c, &self.city)),
            state: Some(state),
            zip: Some(zip),
            phone: Some(phone),
            email: Some(email),
        }
    }
}

/// Writes words with random case, diacritics, apostrophes and separators.
fn spell_words(c: &mut Choices, words: &[String]) -> String {
    let mut out = String::new();
    if c.chance(4) {
        out.push(' ');
    }
    for (index, word) in words.iter().enumerate() {
        if index > 0 {
            out.push_str(c.pick(&[" ", "  ", "-", " - ", "\t"]));
        }
        for (position, letter) in word.chars().enumerate() {
            if position > 0 && c.chance(12) {
                out.push(if c.chance(2) { '\'' } else { '\u{2019}' });
            }
            out.push_str(&spell_letter(c, letter));
        }
    }
    out
}

/// One letter, perhaps upper-case, accented, decomposed or full-width.
fn spell_letter(c: &mut Choices, letter: char) -> String {
    let accented = match letter {
        'a' => &["á", "à", "â", "ä", "å", "ã"][..],
        'e' => &["é", "è", "ê", "ë"],
        'i' => &["í", "ì", "î", "ï"],
        'o' => &["ó", "ò", "ô", "ö", "ø", "õ"],
        'u' => &["ú", "ù", "û", "ü"],
        'n' => &["ñ"],
        'c' => &["ç"],
        'y' => &["ý", "ÿ"],
        _ => &[],
    };
    let spelled = match c.next() % 8 {
        0 if !accented.is_empty() => c.pick(accented).to_owned(),
        1 => format!("{letter}\u{301}"),
        2 => char::from_u32(u32::from(letter) - u32::from('a') + 0xFF41)
            .map_or_else(|| letter.to_string(), |full| full.to_string()),
        _ => letter.to_string(),
    };
    if c.chance(3) {
        spelled.to_uppercase()
    } else {
        spelled
    }
}

fn recase(c: &mut Choices, text: &str) -> String {
    text.chars()
        .map(|ch| {
            if c.chance(2) {
                ch.to_ascii_uppercase()
            } else {
                ch
            }
        })
        .collect()
}
