//! The corruptor: the errors that field-entered identities have, at
//! configurable rates.

use rand::Rng;
use rand::rngs::StdRng;

use super::data;
use crate::normalize::{IdentityInput, canonical_given_name, normalize_name};

/// One kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptionKind {
    /// A keyboard slip in a name, the street, the city or the email's local
    /// part: a letter inserted, deleted, substituted, or two swapped.
    Typo,
    /// A character misread from a scanned or handwritten form: `rn`/`m`,
    /// `cl`/`d`, `vv`/`w`, `li`/`h` in names; `0`/`O`, `1`/`l`, `5`/`S` in a
    /// house number or an email; `1`/`7`, `3`/`8` in phone digits.
    Ocr,
    /// The given name recorded as a nickname (`William` → `Bill`).
    Nickname,
    /// Given name and surname the wrong way round.
    SwapNames,
    /// Month and day of birth transposed (only where both are ≤ 12).
    TransposeDob,
    /// One digit of the day or the year of birth wrong.
    DobTypo,
    /// A field left blank: phone, email, street and city, ZIP, sex or (rarely)
    /// the date of birth.
    MissingField,
    /// The person moved: new street, city and ZIP.
    NewAddress,
    NewPhone,
    NewEmail,
    /// A new surname (marriage), for women in the population.
    NewSurname,
}

/// How often each kind of error is chosen (relative weights), and how many a
/// corrupted record gets.
#[derive(Debug, Clone)]
pub struct CorruptionConfig {
    pub weights: Vec<(CorruptionKind, f64)>,
    /// After each error, the chance of one more (at most three per record).
    pub more_errors: f64,
}

impl Default for CorruptionConfig {
    fn default() -> Self {
        use CorruptionKind as K;
        Self {
            weights: vec![
                (K::Typo, 30.0),
                (K::Ocr, 8.0),
                (K::Nickname, 8.0),
                (K::SwapNames, 5.0),
                (K::TransposeDob, 6.0),
                (K::DobTypo, 5.0),
                (K::MissingField, 15.0),
                (K::NewAddress, 12.0),
                (K::NewPhone, 6.0),
                (K::NewEmail, 3.0),
                (K::NewSurname, 2.0),
            ],
            more_errors: 0.25,
        }
    }
}

/// A corrupted copy of `person`: one error, then another with probability
/// `more_errors`, and so on, up to three.
pub fn corrupt(
    rng: &mut StdRng,
    person: &IdentityInput,
    config: &CorruptionConfig,
) -> IdentityInput {
    let mut errors = 1;
    while errors < 3 && rng.random_bool(config.more_errors) {
        errors += 1;
    }
    corrupt_with(rng, person, config, errors)
}

/// A copy of `person` with exactly `errors` errors applied (kinds that do not
/// apply to this record, like a nickname for a name that has none, are
/// redrawn).
pub fn corrupt_with(
    rng: &mut StdRng,
    person: &IdentityInput,
    config: &CorruptionConfig,
    errors: usize,
) -> IdentityInput {
    let mut out = person.clone();
    let total: f64 = config.weights.iter().map(|(_, w)| w).sum();
    let mut applied = 0;
    // Bounded: some kind (a typo in the surname) always applies.
    for _ in 0..errors * 50 {
        if applied == errors || total <= 0.0 {
            break;
        }
        let mut x = rng.random::<f64>() * total;
        let kind = config
            .weights
            .iter()
            .find(|(_, w)| {
                x -= w;
                x < 0.0
            })
            .map_or(CorruptionKind::Typo, |(k, _)| *k);
        let before = out.clone();
        if apply(rng, &mut out, kind) && out != before && names_valid(&out) {
            applied += 1;
        } else {
            out = before;
        }
    }
    out
}

/// Whether the names still normalize: a slip that turns "Mei" into "Mr" leaves
/// a title, which normalization rejects, and a rejected record measures
/// nothing about linkage.
fn names_valid(r: &IdentityInput) -> bool {
    [&r.given_name, &r.surname]
        .into_iter()
        .flatten()
        .all(|name| normalize_name(name).is_ok())
}

/// Applies one error; false if it does not apply to this record.
fn apply(rng: &mut StdRng, r: &mut IdentityInput, kind: CorruptionKind) -> bool {
    use CorruptionKind as K;
    match kind {
        K::Typo => {
            let field = match rng.random_range(0..10) {
                0..=3 => &mut r.surname,
                4..=6 => &mut r.given_name,
                7 => &mut r.street,
                8 => &mut r.city,
                _ => &mut r.email,
            };
            modify(field, |s| typo(rng, s))
        }
        K::Ocr => {
            let field = match rng.random_range(0..6) {
                0 | 1 => &mut r.surname,
                2 | 3 => &mut r.given_name,
                4 => &mut r.street,
                _ => &mut r.phone,
            };
            modify(field, |s| ocr(rng, s))
        }
        K::Nickname => modify(&mut r.given_name, |g| nickname(rng, g)),
        K::SwapNames => {
            if r.given_name.is_none() || r.surname.is_none() {
                return false;
            }
            std::mem::swap(&mut r.given_name, &mut r.surname);
            true
        }
        K::TransposeDob => modify(&mut r.dob, |d| {
            let (y, m, day) = parse_dob(d)?;
            (day <= 12 && day != m).then(|| format!("{y}-{day:02}-{m:02}"))
        }),
        K::DobTypo => modify(&mut r.dob, |d| {
            let (y, m, day) = parse_dob(d)?;
            if rng.random_bool(0.5) {
                let max = super::days_in_month(y, m);
                let new_day = (day % 10 + 10 * rng.random_range(0..=3)).clamp(1, max);
                (new_day != day).then(|| format!("{y}-{m:02}-{new_day:02}"))
            } else {
                let new_year = y - y % 10 + rng.random_range(0..10);
                (new_year != y && new_year <= 2010 && super::days_in_month(new_year, m) >= day)
                    .then(|| format!("{new_year}-{m:02}-{day:02}"))
            }
        }),
        K::MissingField => match rng.random_range(0..20) {
            0..=6 => r.phone.take().is_some(),
            7..=11 => r.email.take().is_some(),
            12..=14 => r.street.take().is_some() | r.city.take().is_some(),
            15..=16 => r.zip.take().is_some(),
            17..=18 => r.sex.take().is_some(),
            _ => r.dob.take().is_some(),
        },
        K::NewAddress => {
            let place = rng.random_range(0..data::PLACES.len());
            let (city, state, zips, _) = data::PLACES[place];
            let street = data::STREET_NAMES[rng.random_range(0..data::STREET_NAMES.len())];
            let suffix = data::STREET_SUFFIXES[rng.random_range(0..data::STREET_SUFFIXES.len())];
            r.street = Some(format!("{} {street} {suffix}", rng.random_range(1..=9999)));
            r.city = Some(city.to_owned());
            r.state = Some(state.to_owned());
            r.zip = Some(zips[rng.random_range(0..zips.len())].to_owned());
            true
        }
        K::NewPhone => {
            if r.phone.is_none() && rng.random_bool(0.5) {
                return false;
            }
            let place = rng.random_range(0..data::PLACES.len());
            r.phone = Some(super::random_phone(rng, place));
            true
        }
        K::NewEmail => {
            let (Some(g), Some(s)) = (r.given_name.clone(), r.surname.clone()) else {
                return false;
            };
            if r.email.is_none() && rng.random_bool(0.5) {
                return false;
            }
            let year = rng.random_range(1940..2008);
            // A new address of this person's, not by chance someone else's:
            // a number makes a clash with another person's address negligible.
            let email = super::random_email(rng, &g, &s, year);
            let n: u32 = rng.random_range(10_000..100_000);
            r.email = Some(email.replacen('@', &format!("{n}@"), 1));
            true
        }
        K::NewSurname => {
            if r.sex.as_deref() == Some("M") {
                return false;
            }
            r.surname = Some(data::SURNAMES[rng.random_range(0..data::SURNAMES.len())].to_owned());
            true
        }
    }
}

/// Replaces a present field's value with `f(value)`, if `f` gives one.
fn modify(field: &mut Option<String>, f: impl FnOnce(&str) -> Option<String>) -> bool {
    match field.as_deref().and_then(f) {
        Some(new) => {
            *field = Some(new);
            true
        }
        None => false,
    }
}

/// Reads the date formats the generator writes: `YYYY-MM-DD`, `M/D/YYYY`.
fn parse_dob(text: &str) -> Option<(i32, u32, u32)> {
    if let Some((y, rest)) = text.split_once('-') {
        let (m, d) = rest.split_once('-')?;
        return Some((y.parse().ok()?, m.parse().ok()?, d.parse().ok()?));
    }
    let mut parts = text.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    Some((y.parse().ok()?, m.parse().ok()?, d.parse().ok()?))
}

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// One keyboard slip. In an email, only the local part is touched.
fn typo(rng: &mut StdRng, text: &str) -> Option<String> {
    let (local, domain) = match text.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (text, None),
    };
    let mut chars: Vec<char> = local.chars().collect();
    // Leave very short values alone: a typo in "Li" is a different name.
    if chars.len() < 3 {
        return None;
    }
    let letter = char::from(LETTERS[rng.random_range(0..LETTERS.len())]);
    let i = rng.random_range(0..chars.len());
    match rng.random_range(0..4) {
        0 => chars.insert(i, letter),
        1 => {
            chars.remove(i);
        }
        2 => chars[i] = letter,
        _ => {
            let i = i.min(chars.len() - 2);
            chars.swap(i, i + 1);
        }
    }
    let mut out: String = chars.into_iter().collect();
    if let Some(domain) = domain {
        out.push('@');
        out.push_str(domain);
    }
    (!out.trim().is_empty() && out != text).then_some(out)
}

/// One OCR-like confusion, in the direction that applies.
fn ocr(rng: &mut StdRng, text: &str) -> Option<String> {
    const PAIRS: &[(&str, &str)] = &[
        ("m", "rn"),
        ("rn", "m"),
        ("d", "cl"),
        ("w", "vv"),
        ("h", "li"),
        ("e", "c"),
        ("a", "o"),
        ("u", "v"),
        ("o", "0"),
        ("l", "1"),
        ("i", "1"),
        ("s", "5"),
        ("b", "8"),
        ("0", "O"),
        ("1", "l"),
        ("5", "S"),
        ("8", "B"),
    ];
    let digits_only = text
        .chars()
        .all(|c| c.is_ascii_digit() || " ()+-".contains(c));
    if digits_only {
        // A phone number: misread one of the last four digits.
        let mut chars: Vec<char> = text.chars().collect();
        let positions: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_ascii_digit())
            .map(|(i, _)| i)
            .rev()
            .take(4)
            .collect();
        let &i = positions.get(rng.random_range(0..positions.len().max(1)))?;
        chars[i] = match chars[i] {
            '1' => '7',
            '7' => '1',
            '3' | '0' => '8',
            '8' => '3',
            '5' => '6',
            '6' => '5',
            _ => return None,
        };
        return Some(chars.into_iter().collect());
    }
    let lower = text.to_lowercase();
    let applicable: Vec<&(&str, &str)> = PAIRS
        .iter()
        .filter(|(from, _)| lower.contains(from))
        .collect();
    if applicable.is_empty() {
        return None;
    }
    let (from, to) = applicable[rng.random_range(0..applicable.len())];
    let starts: Vec<usize> = lower.match_indices(from).map(|(i, _)| i).collect();
    let at = starts[rng.random_range(0..starts.len())];
    let mut out = String::with_capacity(lower.len() + 1);
    out.push_str(&lower[..at]);
    out.push_str(to);
    out.push_str(&lower[at + from.len()..]);
    Some(out)
}

/// A nickname that normalization folds back to the same given name.
fn nickname(rng: &mut StdRng, given: &str) -> Option<String> {
    let lower = given.to_lowercase();
    let canonical = canonical_given_name(&lower);
    let options: Vec<&str> = data::NICKNAMES
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(canonical))
        .flat_map(|(_, nicks)| nicks.iter().copied())
        .filter(|nick| {
            let nick_lower = nick.to_lowercase();
            nick_lower != lower && canonical_given_name(&nick_lower) == canonical
        })
        .collect();
    if options.is_empty() {
        return None;
    }
    Some(options[rng.random_range(0..options.len())].to_owned())
}
