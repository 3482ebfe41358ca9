//! Normalization speed on one core: `cargo bench --bench normalize`.
//!
//! Normalizes `NORMALIZE_N` (default 100,000) synthetic identities, messy the
//! way partners type them (case, diacritics, punctuation, suffixes, every DOB
//! format, every phone format), and prints identities/s and ns/identity:
//! - with every field;
//! - without the phone field;
//! - the phone field alone, once through `normalize_phone` (with its NANP fast
//!   path) and once through the `phonenumber` library alone, for comparison.
//!
//! The linkage engine's target is 200,000 identities/s tokenized on one core,
//! normalization included: 5,000 ns per identity for everything.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use crosswalk::normalize::{
    IdentityInput, NormalizeOptions, normalize, normalize_city, normalize_dob, normalize_email,
    normalize_name, normalize_phone, normalize_sex, normalize_state, normalize_street,
    normalize_zip,
};
use phonenumber::country;

const GIVEN: &[&str] = &[
    "José",
    "MARY",
    "william",
    "Øyvind",
    "Anne-Marie",
    "D'Andre",
    "Nguyễn",
    "li",
    "Bill",
    "Katie",
];
const SURNAMES: &[&str] = &[
    "García-López",
    "O'Brien",
    "SMITH JR.",
    "van der Berg",
    "Núñez",
    "Washington III",
    "lee",
    "MacDonald, Sr.",
];
const STREETS: &[&str] = &[
    "N. Main St.",
    "Elm Ave Apt #4",
    "1st street",
    "W Oak Blvd Unit 12",
    "Calle José Martí",
];
const CITIES: &[&str] = &[
    "Sacramento",
    "St. Louis",
    "San José",
    "West Sacramento",
    "Ft Worth",
];
const STATES: &[&str] = &["CA", "ca", "California", "N.Y.", "Texas"];
const SEXES: &[&str] = &["F", "male", "M", "female", "X", "U"];

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let len = u64::try_from(items.len()).expect("small");
        items[usize::try_from(self.below(len)).expect("small")]
    }
}

fn identity(rng: &mut Rng) -> IdentityInput {
    let (year, month, day) = (1930 + rng.below(90), 1 + rng.below(12), 1 + rng.below(28));
    let dob = match rng.below(6) {
        0 => format!("{year}-{month:02}-{day:02}"),
        1 => format!("{month:02}/{day:02}/{year}"),
        2 => format!("{month}/{day}/{:02}", year % 100),
        3 => format!("{year}{month:02}{day:02}"),
        4 => format!("March {day}, {year}"),
        _ => format!("{day} Mar {year}"),
    };
    let area = [916, 415, 212, 303, 617, 530][usize::try_from(rng.below(6)).expect("small")];
    let (exchange, line) = (200 + rng.below(800), rng.below(10_000));
    let phone = match rng.below(5) {
        0 => format!("({area}) {exchange}-{line:04}"),
        1 => format!("{area}-{exchange}-{line:04}"),
        2 => format!("+1 {area} {exchange} {line:04}"),
        3 => format!("{area}{exchange}{line:04}"),
        _ => format!("+1{area}{exchange}{line:04}"),
    };
    IdentityInput {
        given_name: Some(rng.pick(GIVEN).to_owned()),
        surname: Some(rng.pick(SURNAMES).to_owned()),
        dob: Some(dob),
        sex: Some(rng.pick(SEXES).to_owned()),
        street: Some(format!("{} {}", 1 + rng.below(9999), rng.pick(STREETS))),
        city: Some(rng.pick(CITIES).to_owned()),
        state: Some(rng.pick(STATES).to_owned()),
        zip: Some(format!(
            "{:05}-{:04}",
            90_000 + rng.below(6_000),
            rng.below(10_000)
        )),
        phone: Some(phone),
        email: Some(format!(" User{}@Example.ORG", rng.below(100_000))),
    }
}

/// Reads one field of an input.
type FieldValue = fn(&IdentityInput) -> Option<&str>;

/// Normalizes one field's value; `true` when it was valid.
type FieldNormalizer = fn(&str, &NormalizeOptions) -> bool;

fn report(label: &str, count: usize, elapsed: Duration) {
    let count_f = f64::from(u32::try_from(count).expect("fits u32"));
    let seconds = elapsed.as_secs_f64();
    println!(
        "{label:<40} {:>12.0} /s {:>10.0} ns each",
        count_f / seconds,
        seconds * 1e9 / count_f
    );
}

fn main() {
    let n: usize = std::env::var("NORMALIZE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("valid date");
    let options = NormalizeOptions::new(country::Id::US, today);
    let mut rng = Rng(2026);
    let inputs: Vec<IdentityInput> = (0..n).map(|_| identity(&mut rng)).collect();
    let without_phone: Vec<IdentityInput> = inputs
        .iter()
        .map(|input| IdentityInput {
            phone: None,
            ..input.clone()
        })
        .collect();

    // The first phone loads the library's metadata and compiles the NANP
    // patterns: a one-time cost, shown apart.
    let start = Instant::now();
    black_box(normalize_phone("+19165550142", country::Id::US).ok());
    println!(
        "{:<40} {:>12.1?}",
        "first phone number (one-time set-up)",
        start.elapsed()
    );

    // Warm up the rest.
    for input in inputs.iter().take(1_000) {
        black_box(normalize(input, &options).ok());
    }

    let start = Instant::now();
    let ok = inputs
        .iter()
        .filter(|input| black_box(normalize(input, &options)).is_ok())
        .count();
    report("normalize, all fields", n, start.elapsed());
    assert!(
        ok * 10 >= n * 9,
        "only {ok} of {n} synthetic identities normalized"
    );

    let start = Instant::now();
    for input in &without_phone {
        black_box(normalize(input, &options).ok());
    }
    report("normalize, without phone", n, start.elapsed());

    time_fields(&inputs, options);
    time_phones(&inputs);
}

/// Each field alone, to show where the time goes.
fn time_fields(inputs: &[IdentityInput], options: NormalizeOptions) {
    let fields: [(&str, FieldValue, FieldNormalizer); 9] = [
        (
            "given_name",
            |i| i.given_name.as_deref(),
            |v, _| normalize_name(v).is_ok(),
        ),
        (
            "surname",
            |i| i.surname.as_deref(),
            |v, _| normalize_name(v).is_ok(),
        ),
        (
            "dob",
            |i| i.dob.as_deref(),
            |v, o| normalize_dob(v, o.today).is_ok(),
        ),
        ("sex", |i| i.sex.as_deref(), |v, _| normalize_sex(v).is_ok()),
        (
            "street",
            |i| i.street.as_deref(),
            |v, _| normalize_street(v).is_ok(),
        ),
        (
            "city",
            |i| i.city.as_deref(),
            |v, _| normalize_city(v).is_ok(),
        ),
        (
            "state",
            |i| i.state.as_deref(),
            |v, _| normalize_state(v).is_ok(),
        ),
        ("zip", |i| i.zip.as_deref(), |v, _| normalize_zip(v).is_ok()),
        (
            "email",
            |i| i.email.as_deref(),
            |v, _| normalize_email(v).is_ok(),
        ),
    ];
    for (name, value, normalize_field) in fields {
        let values: Vec<&str> = inputs.iter().filter_map(value).collect();
        let start = Instant::now();
        for value in &values {
            black_box(normalize_field(black_box(value), &options));
        }
        report(&format!("  {name}"), values.len(), start.elapsed());
    }
}

/// The phone field through `normalize_phone` and through the library alone.
fn time_phones(inputs: &[IdentityInput]) {
    let phones: Vec<&str> = inputs.iter().filter_map(|i| i.phone.as_deref()).collect();
    let start = Instant::now();
    for phone in &phones {
        black_box(normalize_phone(phone, country::Id::US).ok());
    }
    report("normalize_phone (fast path)", phones.len(), start.elapsed());

    // The library alone, on a sample: it is slow enough that 10k is plenty.
    let sample = &phones[..phones.len().min(10_000)];
    let start = Instant::now();
    for phone in sample {
        let number = phonenumber::parse(Some(country::Id::US), phone).ok();
        black_box(
            number
                .filter(phonenumber::is_valid)
                .map(|n| n.format().mode(phonenumber::Mode::E164).to_string()),
        );
    }
    report(
        "phonenumber parse + is_valid + format",
        sample.len(),
        start.elapsed(),
    );
}
