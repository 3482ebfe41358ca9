//! Labeled synthetic identities for measuring linkage: a population generator and
//! a corruptor that makes the errors field data has.
//!
//! Everything is driven by a seeded RNG (no network, no clock), so a figure in
//! the bench can be reproduced exactly. Values are entered as a partner would
//! type them (mixed case, several date and phone formats, abbreviated street
//! types) so that normalization is exercised too.
//!
//! The population is realistic in the ways that make linkage hard: names are
//! drawn with Zipf-like weights (many Smiths, many Marias), a quarter of people
//! share a household (surname, address and often the home phone) with someone
//! generated before them, and about one in a hundred is that person's twin
//! (same date of birth as well) and one in a hundred their namesake parent or
//! child (same given name, born decades apart).

mod corrupt;
mod data;

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng, SeedableRng as _};

pub use corrupt::{CorruptionConfig, CorruptionKind, corrupt, corrupt_with};

use crate::normalize::IdentityInput;

/// How the population is drawn.
#[derive(Debug, Clone)]
pub struct PopulationConfig {
    /// Share of people who have a phone on record.
    pub phone_rate: f64,
    /// Share of people who have an email on record.
    pub email_rate: f64,
    /// Share of people whose sex is recorded.
    pub sex_rate: f64,
    /// Share of people who join the household of someone generated before them.
    pub household_rate: f64,
    /// Share of household joiners who are the earlier person's twin.
    pub twin_rate: f64,
    /// Share of household joiners who are the earlier person's namesake parent
    /// or child (a "Jr"): same given name, born decades apart.
    pub namesake_rate: f64,
}

impl Default for PopulationConfig {
    fn default() -> Self {
        Self {
            phone_rate: 0.75,
            email_rate: 0.5,
            sex_rate: 0.9,
            household_rate: 0.25,
            twin_rate: 0.04,
            namesake_rate: 0.04,
        }
    }
}

/// `n` synthetic people from `seed` with the default population settings. Each
/// has a given name, surname, date of birth and address; most have a phone,
/// about half an email.
pub fn people(seed: u64, n: usize) -> Vec<IdentityInput> {
    population(
        &mut StdRng::seed_from_u64(seed),
        n,
        &PopulationConfig::default(),
    )
}

/// One field of `person` corrupted in one of the ways field data goes wrong
/// (chosen by `seed`, with the default weights). Always differs from `person`.
pub fn corrupt_one_field(person: &IdentityInput, seed: u64) -> IdentityInput {
    corrupt_with(
        &mut StdRng::seed_from_u64(seed),
        person,
        &CorruptionConfig::default(),
        1,
    )
}

/// The structured person a record is rendered from.
#[derive(Clone)]
struct Person {
    female: bool,
    given: &'static str,
    surname: &'static str,
    year: i32,
    month: u32,
    day: u32,
    address: Address,
    phone: Option<String>,
    email: Option<String>,
    sex_recorded: bool,
}

#[derive(Clone)]
struct Address {
    number: u32,
    street: &'static str,
    suffix: &'static str,
    place: usize,
    zip: &'static str,
}

/// Draws `n` people.
pub fn population(rng: &mut StdRng, n: usize, config: &PopulationConfig) -> Vec<IdentityInput> {
    let pickers = Pickers::new();
    let mut people: Vec<Person> = Vec::with_capacity(n);
    for _ in 0..n {
        let person = if !people.is_empty() && rng.random_bool(config.household_rate) {
            let i = rng.random_range(0..people.len());
            let housemate = people[i].clone();
            household_member(rng, &pickers, &housemate, config)
        } else {
            new_person(rng, &pickers, config)
        };
        people.push(person);
    }
    // An email address belongs to one person: two strangers drawing the same
    // pattern (j.smith@...) get different numbers.
    let mut emails = std::collections::HashSet::new();
    for person in &mut people {
        if let Some(email) = &mut person.email {
            while !emails.insert(email.clone()) {
                let n: u32 = rng.random_range(1..=9999);
                *email = email.replacen('@', &format!("{n}@"), 1);
            }
        }
    }
    people.iter().map(|p| render(rng, p)).collect()
}

/// Weighted pickers over the lists, built once per population.
struct Pickers {
    female: Zipf,
    male: Zipf,
    surname: Zipf,
    street: Zipf,
    place: Zipf,
}

impl Pickers {
    fn new() -> Self {
        Self {
            female: Zipf::new(data::FEMALE_GIVEN.len()),
            male: Zipf::new(data::MALE_GIVEN.len()),
            surname: Zipf::new(data::SURNAMES.len()),
            street: Zipf::new(data::STREET_NAMES.len()),
            place: Zipf::new(data::PLACES.len()),
        }
    }

    fn given(&self, rng: &mut StdRng, female: bool) -> &'static str {
        if female {
            data::FEMALE_GIVEN[self.female.pick(rng)]
        } else {
            data::MALE_GIVEN[self.male.pick(rng)]
        }
    }
}

/// Picks index `i` of `n` with weight 1/(i + 8): a long tail, a heavy head.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                total += 1.0 / (f64::from(u32::try_from(i).unwrap_or(u32::MAX)) + 8.0);
                total
            })
            .collect();
        Self { cumulative }
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|c| *c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

fn new_person(rng: &mut StdRng, pickers: &Pickers, config: &PopulationConfig) -> Person {
    let female = rng.random_bool(0.5);
    let given = pickers.given(rng, female);
    let surname = data::SURNAMES[pickers.surname.pick(rng)];
    let (year, month, day) = random_dob(rng);
    let address = random_address(rng, pickers);
    let phone = rng
        .random_bool(config.phone_rate)
        .then(|| random_phone(rng, address.place));
    let email = rng
        .random_bool(config.email_rate)
        .then(|| random_email(rng, given, surname, year));
    Person {
        female,
        given,
        surname,
        year,
        month,
        day,
        address,
        phone,
        email,
        sex_recorded: rng.random_bool(config.sex_rate),
    }
}

/// Someone who lives with `housemate`: same surname and address, often the same
/// (home) phone, a different given name and date of birth — or the same date
/// of birth, for a twin.
fn household_member(
    rng: &mut StdRng,
    pickers: &Pickers,
    housemate: &Person,
    config: &PopulationConfig,
) -> Person {
    let mut person = new_person(rng, pickers, config);
    person.surname = housemate.surname;
    person.address = housemate.address.clone();
    if housemate.phone.is_some() && rng.random_bool(0.5) {
        person.phone.clone_from(&housemate.phone);
    }
    let roll: f64 = rng.random();
    if roll < config.twin_rate {
        (person.year, person.month, person.day) = (housemate.year, housemate.month, housemate.day);
    }
    if roll >= config.twin_rate && roll < config.twin_rate + config.namesake_rate {
        person.given = housemate.given;
        person.female = housemate.female;
        let gap = rng.random_range(18..=40);
        person.year = if housemate.year - gap >= 1920 {
            housemate.year - gap
        } else {
            housemate.year + gap
        };
        person.day = person.day.min(days_in_month(person.year, person.month));
    } else {
        // Otherwise never the housemate's given name: that would be one person.
        while person.given == housemate.given {
            person.given = pickers.given(rng, person.female);
        }
    }
    if let Some(email) = &mut person.email {
        *email = random_email(rng, person.given, person.surname, person.year);
    }
    person
}

fn random_dob(rng: &mut StdRng) -> (i32, u32, u32) {
    let year = rng.random_range(1940..=2008);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=days_in_month(year, month));
    (year, month, day)
}

pub(super) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn random_address(rng: &mut StdRng, pickers: &Pickers) -> Address {
    let place = pickers.place.pick(rng);
    let zips = data::PLACES[place].2;
    Address {
        number: rng.random_range(1..=9999),
        street: data::STREET_NAMES[pickers.street.pick(rng)],
        suffix: data::STREET_SUFFIXES[rng.random_range(0..data::STREET_SUFFIXES.len())],
        place,
        zip: zips[rng.random_range(0..zips.len())],
    }
}

/// A ten-digit North American number in the place's area code, with a valid
/// exchange (2–9 first, not N11).
fn random_phone(rng: &mut StdRng, place: usize) -> String {
    let codes = data::PLACES[place].3;
    let area = codes[rng.random_range(0..codes.len())];
    let exchange = loop {
        let e: u32 = rng.random_range(200..=999);
        if e % 100 != 11 && e != 555 {
            break e;
        }
    };
    let line: u32 = rng.random_range(0..=9999);
    format!("{area}{exchange}{line:04}")
}

fn random_email(rng: &mut StdRng, given: &str, surname: &str, year: i32) -> String {
    let (g, s) = (given.to_lowercase(), surname.to_lowercase());
    let domain = data::EMAIL_DOMAINS[rng.random_range(0..data::EMAIL_DOMAINS.len())];
    let n: u32 = rng.random_range(1..=999);
    let local = match rng.random_range(0..5) {
        0 => format!("{g}.{s}"),
        1 => format!("{g}{s}{n}"),
        2 => format!("{}{s}", &g[..1]),
        3 => format!("{g}_{}", year % 100),
        _ => format!("{s}.{g}{n}"),
    };
    format!("{local}@{domain}")
}

/// Renders a person as a partner would type them, in one of several styles.
fn render(rng: &mut StdRng, p: &Person) -> IdentityInput {
    let (city, state, _, _) = data::PLACES[p.address.place];
    let upper = rng.random_bool(0.2);
    let case = |s: &str| {
        if upper {
            s.to_uppercase()
        } else {
            s.to_owned()
        }
    };
    let dob = match rng.random_range(0..3) {
        0 => format!("{}-{:02}-{:02}", p.year, p.month, p.day),
        1 => format!("{:02}/{:02}/{}", p.month, p.day, p.year),
        _ => format!("{}/{}/{}", p.month, p.day, p.year),
    };
    let phone = p.phone.as_ref().map(|d| match rng.random_range(0..4) {
        0 => format!("({}) {}-{}", &d[..3], &d[3..6], &d[6..]),
        1 => format!("{}-{}-{}", &d[..3], &d[3..6], &d[6..]),
        2 => format!("+1 {} {} {}", &d[..3], &d[3..6], &d[6..]),
        _ => d.clone(),
    });
    IdentityInput {
        given_name: Some(case(p.given)),
        surname: Some(case(p.surname)),
        dob: Some(dob),
        sex: p
            .sex_recorded
            .then(|| if p.female { "F" } else { "M" }.to_owned()),
        street: Some(case(&format!(
            "{} {} {}",
            p.address.number, p.address.street, p.address.suffix
        ))),
        city: Some(case(city)),
        state: Some(state.to_owned()),
        zip: Some(p.address.zip.to_owned()),
        phone,
        email: p.email.clone(),
    }
}

/// One record of a labeled data set: the person it is about, and the record.
#[derive(Debug, Clone)]
pub struct LabeledRecord {
    pub person: u64,
    pub input: IdentityInput,
}

/// How to build a LEFT/RIGHT pair of files with known true matches.
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    pub seed: u64,
    /// Records on each side.
    pub size: usize,
    /// Share of RIGHT records that are people from LEFT; the rest are people
    /// not in LEFT (drawn from the same population, so some are their family).
    pub overlap: f64,
    /// Share of RIGHT records that are corrupted.
    pub corrupted: f64,
    pub population: PopulationConfig,
    pub corruption: CorruptionConfig,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            seed: 2026,
            size: 10_000,
            overlap: 0.9,
            corrupted: 0.1,
            population: PopulationConfig::default(),
            corruption: CorruptionConfig::default(),
        }
    }
}

/// LEFT: `size` clean records of distinct people. RIGHT: `overlap·size` of the
/// same people and the rest new people, a `corrupted` share of all of them
/// corrupted, in shuffled order.
pub fn dataset(config: &DatasetConfig) -> (Vec<LabeledRecord>, Vec<LabeledRecord>) {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let size = config.size;
    // Rounding a share of a count; the counts are far below 2^52.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a share of a count, rounded"
    )]
    let shared = ((size as f64) * config.overlap).round() as usize;
    let shared = shared.min(size);
    let everyone = population(&mut rng, size + (size - shared), &config.population);
    let person_id = |i: usize| u64::try_from(i).unwrap_or(u64::MAX);

    let left: Vec<LabeledRecord> = everyone[..size]
        .iter()
        .enumerate()
        .map(|(i, input)| LabeledRecord {
            person: person_id(i),
            input: input.clone(),
        })
        .collect();

    let mut in_both: Vec<usize> = (0..size).collect();
    in_both.shuffle(&mut rng);
    in_both.truncate(shared);
    in_both.extend(size..everyone.len());
    let mut right: Vec<LabeledRecord> = in_both
        .into_iter()
        .map(|i| {
            let input = if rng.random_bool(config.corrupted) {
                corrupt(&mut rng, &everyone[i], &config.corruption)
            } else {
                everyone[i].clone()
            };
            LabeledRecord {
                person: person_id(i),
                input,
            }
        })
        .collect();
    right.shuffle(&mut rng);
    (left, right)
}
