//! The probabilistic linker on synthetic people (`linkage::synth`): what it
//! links, what it leaves for review, and what a missing date of birth costs.

use std::sync::LazyLock;

use chrono::NaiveDate;

use super::compare::{MISSING, compare};
use super::{Decision, ProfileKeys, link, profile};
use crate::linkage::LinkageKeys;
use crate::linkage::synth::{self, DatasetConfig, LabeledRecord};
use crate::normalize::{IdentityInput, NormalizeOptions, normalize_tolerant};
use crate::secrets::MasterSecret;

static KEYS: LazyLock<ProfileKeys> =
    LazyLock::new(|| ProfileKeys::new(&LinkageKeys::derive(&MasterSecret::from_bytes([7; 32]), 1)));

fn options() -> NormalizeOptions {
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
    NormalizeOptions::new(phonenumber::country::Id::US, today)
}

fn profile_of(input: &IdentityInput) -> super::Profile {
    let tolerant = normalize_tolerant(input, &options());
    profile(&tolerant.identity, &tolerant.remnants, &KEYS)
}

fn person(given: &str, surname: &str, dob: &str, street: &str, city: &str) -> IdentityInput {
    IdentityInput {
        given_name: Some(given.to_owned()),
        surname: Some(surname.to_owned()),
        dob: Some(dob.to_owned()).filter(|d| !d.is_empty()),
        street: Some(street.to_owned()),
        city: Some(city.to_owned()),
        ..IdentityInput::default()
    }
}

#[test]
fn levels_see_swaps_typos_and_impossible_dates() {
    let a = profile_of(&person(
        "Michaela",
        "Neumann",
        "1915-11-11",
        "8 Stanley Street",
        "Winston Hills",
    ));
    // Swapped names, one digit off in an impossible date, another house number.
    let b = profile_of(&person(
        "Neumann",
        "Michaela",
        "1915-13-11",
        "12 Stanley Street",
        "Winston Hills",
    ));
    let levels = compare(&a, &b);
    assert_eq!(levels[0], 1, "given name swapped with the surname");
    assert_eq!(levels[1], 1, "surname swapped with the given name");
    assert_eq!(
        levels[2], 2,
        "the impossible date's digits are nearly the same"
    );
    assert_eq!(levels[3], 1, "same street, another house number");
    assert_eq!(levels[4], 0, "same city");
    assert_eq!(levels[5], MISSING, "no ZIP on either side");
    // Bill is William.
    let c = profile_of(&person(
        "Bill",
        "Neumann",
        "",
        "8 Stanley Street",
        "Winston Hills",
    ));
    let d = profile_of(&person(
        "William",
        "Neumann",
        "1915-11-11",
        "8 Stanley Street",
        "Winston Hills",
    ));
    let levels = compare(&c, &d);
    assert_eq!(levels[0], 0, "a nickname is its canonical name");
    assert_eq!(levels[2], MISSING, "no date of birth to compare");
}

/// `a / b` for counts far below 2^32.
fn ratio(a: usize, b: usize) -> f64 {
    let (a, b) = (
        u32::try_from(a).expect("small"),
        u32::try_from(b).expect("small"),
    );
    f64::from(a) / f64::from(b)
}

/// Links `right` against `left` and counts (links, true links, true pairs)
/// over the pairs `count` selects.
fn link_and_count(
    left: &[LabeledRecord],
    right: &[LabeledRecord],
    count: impl Fn(usize) -> bool,
) -> (usize, usize, usize) {
    let lp: Vec<_> = left.iter().map(|r| profile_of(&r.input)).collect();
    let rp: Vec<_> = right.iter().map(|r| profile_of(&r.input)).collect();
    let outcome = link(&lp, &rp);
    let (mut links, mut true_links) = (0, 0);
    for pair in &outcome.pairs {
        if pair.decision == Decision::Match && count(pair.right) {
            links += 1;
            true_links += usize::from(left[pair.left].person == right[pair.right].person);
        }
    }
    let in_left: std::collections::HashSet<u64> = left.iter().map(|r| r.person).collect();
    let true_pairs = right
        .iter()
        .enumerate()
        .filter(|(i, r)| count(*i) && in_left.contains(&r.person))
        .count();
    (links, true_links, true_pairs)
}

#[test]
fn corrupted_synthetic_people_link_precisely() {
    let (left, right) = synth::dataset(&DatasetConfig {
        seed: 11,
        size: 3_000,
        ..DatasetConfig::default()
    });
    let (links, true_links, true_pairs) = link_and_count(&left, &right, |_| true);
    let precision = ratio(true_links, links);
    let recall = ratio(true_links, true_pairs);
    eprintln!(
        "all pairs: precision {precision:.4} recall {recall:.4} ({links} links, {true_pairs} true pairs)"
    );
    assert!(precision >= 0.99, "precision {precision} ({links} links)");
    assert!(recall >= 0.97, "recall {recall} ({true_pairs} true pairs)");
}

/// Without a date of birth, names and address must agree more (14 bits, not
/// 10): the documented precision for such pairs is ≥ 0.99 on this set, with a
/// quarter of RIGHT's dates removed.
#[test]
fn people_without_a_date_of_birth_still_link_at_the_documented_precision() {
    let (left, mut right) = synth::dataset(&DatasetConfig {
        seed: 12,
        size: 3_000,
        ..DatasetConfig::default()
    });
    let mut without: Vec<bool> = Vec::with_capacity(right.len());
    for (i, record) in right.iter_mut().enumerate() {
        let drop = i % 4 == 0;
        if drop {
            record.input.dob = None;
        }
        without.push(drop);
    }
    let (links, true_links, true_pairs) = link_and_count(&left, &right, |i| without[i]);
    let precision = ratio(true_links, links);
    let recall = ratio(true_links, true_pairs);
    eprintln!(
        "no-DOB pairs: precision {precision:.4} recall {recall:.4} ({links} links, {true_pairs} true pairs)"
    );
    assert!(
        precision >= 0.99,
        "no-DOB precision {precision} ({links} links)"
    );
    assert!(
        recall >= 0.8,
        "no-DOB recall {recall} ({true_pairs} true pairs)"
    );
}

/// Fed in chunks, the linker numbers each chunk's rows after the ones before
/// (a pair names the right left row), estimates its weights on the first
/// chunk only, and links the later chunks as well as the first.
#[test]
fn a_left_side_in_chunks_links_as_well_as_whole() {
    let (left, right) = synth::dataset(&DatasetConfig {
        seed: 13,
        size: 3_000,
        ..DatasetConfig::default()
    });
    let lp: Vec<_> = left.iter().map(|r| profile_of(&r.input)).collect();
    let rp: Vec<_> = right.iter().map(|r| profile_of(&r.input)).collect();
    let whole = link(&lp, &rp);
    let mut linker = super::StreamLinker::new(&rp, super::BlockIndex::build(&rp));
    let (first, rest) = lp.split_at(1_800);
    linker.add(first);
    for chunk in rest.chunks(500) {
        linker.add(chunk);
    }
    let chunked = linker.finish();
    let truth = |pairs: &[super::Scored], from: usize| {
        let matches: Vec<_> = pairs
            .iter()
            .filter(|p| p.decision == Decision::Match && p.left >= from)
            .collect();
        let right_ones = matches
            .iter()
            .filter(|p| left[p.left].person == right[p.right].person)
            .count();
        (matches.len(), right_ones)
    };
    let (links, true_links) = truth(&chunked.pairs, 1_800);
    assert!(links > 900, "the later chunks link: {links}");
    assert!(
        ratio(true_links, links) >= 0.99,
        "and to the right rows: {true_links} of {links}"
    );
    let (whole_links, _) = truth(&whole.pairs, 0);
    let (chunked_links, _) = truth(&chunked.pairs, 0);
    assert!(
        whole_links.abs_diff(chunked_links) * 100 <= whole_links,
        "within 1% of linking it whole: {chunked_links} against {whole_links}"
    );
}

/// The household cap is lifted only when the candidates show no households:
/// enough pairs with the same surname and street, almost none of them two
/// people (another given name and another date of birth).
#[test]
fn the_household_cap_is_lifted_only_without_households() {
    use std::collections::HashMap;
    let same_home = |given: u8, dob: u8| [given, 0, dob, 0, 0, MISSING, MISSING, MISSING];
    let patterns = |people: u32, two: u32| -> HashMap<super::Levels, u32> {
        HashMap::from([(same_home(0, 0), people), (same_home(5, 6), two)])
    };
    assert!(super::weights::shows_no_households(&patterns(1_000, 10)));
    assert!(
        !super::weights::shows_no_households(&patterns(1_000, 100)),
        "siblings at one address"
    );
    assert!(
        !super::weights::shows_no_households(&patterns(150, 0)),
        "too few pairs to tell"
    );
    // A given name garbled but close is not another person.
    let close = HashMap::from([(same_home(0, 0), 900), (same_home(3, 6), 100)]);
    assert!(super::weights::shows_no_households(&close));
}
