//! Probabilistic linkage (Fellegi–Sunter), as `crosswalk link` runs it: two
//! lists of identities, each reduced to a keyed [`Profile`], linked one to one
//! with a match weight per pair.
//!
//! # The steps
//! 1. **Profiles** ([`encode`]): per field, a keyed hash of the normalized value
//!    (exact agreement) and a 256-bit keyed bigram filter (how alike, by
//!    Dice); a few derived hashes (the canonical given name, the date with
//!    month and day swapped, its year and year-month, the street without its
//!    house number, the ZIP's first three digits); and the blocking keys. A
//!    value that did not normalize (an impossible date) has no hash, but its
//!    digits or words join the field's filter, so it still counts as "nearly
//!    the same date".
//! 2. **Blocking**: two identities are compared only when they share a
//!    blocking key. Each key pairs a fuzzy part with a second field — Soundex
//!    of street and of city; Soundex of each name with the street, with the
//!    city and with the ZIP; the first three letters of each name with the
//!    city; the unordered pair of the names' phonetic codes; the two initials
//!    (unordered) with the birth year; Soundex of the surname with the house
//!    number; the house number with the city; the street; the date of birth;
//!    the phone; the email — so that one typo rarely breaks every key. A key
//!    shared by more than [`MAX_BUCKET`] identities is a placeholder, not
//!    evidence, and is skipped. On FEBRL 4 these keys keep 99.96% of the true
//!    pairs among 0.04% of all pairs (a Python study of the same keys; the
//!    bench prints the figure for this code).
//! 3. **Levels** ([`compare`]): each field of a candidate pair gets one level:
//!
//!    | field | levels, strongest first |
//!    |---|---|
//!    | given name | exact (or the same canonical name) · swapped with the surname · Dice ≥ 0.8 · ≥ 0.6 · ≥ 0.4 · else |
//!    | surname | exact · swapped with the given name · Dice ≥ 0.8 · ≥ 0.6 · ≥ 0.4 · else |
//!    | date of birth | exact · month and day swapped · digit Dice ≥ 0.75 (about one digit off) · same year and month · same year · Dice ≥ 0.5 · else |
//!    | street | exact · the same street, another house number · Dice ≥ 0.8 · ≥ 0.6 · ≥ 0.4 · else |
//!    | city | exact · Dice ≥ 0.8 · ≥ 0.6 · ≥ 0.4 · else |
//!    | ZIP | exact · same first three digits · else |
//!    | phone | exact · digit Dice ≥ 0.75 · else |
//!    | email | exact · Dice ≥ 0.8 · else |
//!
//!    A name's Dice is the better of straight and crosswise (given name
//!    against surname), the crosswise one less 0.1. A field missing on
//!    either side weighs nothing either way.
//! 4. **Weights** ([`weights`]): `log2(m/u)` per level, `u` counted on 50,000
//!    random pairs, `m` estimated by EM on the candidate pairs when the
//!    estimate separates people from households (else, and for small runs,
//!    the calibrated `m`). A pair's weight is the sum over its fields, except
//!    that the household fields (street, city, ZIP, phone) add at most
//!    [`HOUSEHOLD_CAP_BITS`](weights::HOUSEHOLD_CAP_BITS) together: an
//!    address says "same household", not "same person".
//! 5. **Decision**: pairs are taken one to one, greedily by weight. A pair of
//!    weight ≥ [`MATCH_BITS`] (≥ [`NO_DOB_MATCH_BITS`] when either side has no
//!    date of birth: nothing pins the person, so more must agree) is a
//!    **match**; one of weight ≥ [`REVIEW_BITS`] is for **review** (a person
//!    decides); anything lower is not linked.
//!
//! Nothing here sees a raw identifier: profiles are keyed hashes and keyed
//! filters, made by the same `normalize` as a live submission.

pub mod compare;
pub mod encode;
pub mod weights;

use std::collections::HashMap;

use rayon::prelude::*;

pub use self::compare::{Levels, MISSING};
use self::encode::Hash16;
pub use self::encode::{CField, Profile, ProfileKeys, profile};
pub use self::weights::Weights;

/// A pair at or above this weight (bits) is a match.
pub const MATCH_BITS: f64 = 10.0;
/// When either side has no date of birth, a match needs this much.
pub const NO_DOB_MATCH_BITS: f64 = 14.0;
/// Below a match and at or above this, the pair is for review.
pub const REVIEW_BITS: f64 = 4.0;
/// Identities sharing one blocking key beyond which the key is ignored.
pub const MAX_BUCKET: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Match,
    Review,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::Review => "review",
        }
    }
}

/// One linked (or reviewable) pair: indices into the two lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub left: usize,
    pub right: usize,
    /// The match weight, in bits.
    pub weight: f64,
    pub levels: Levels,
    pub decision: Decision,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Matches and pairs for review, one to one, strongest first.
    pub pairs: Vec<Scored>,
    /// Candidate pairs compared.
    pub candidates: usize,
    pub weights: Weights,
}

/// The threshold a pair must reach to be a match.
pub fn match_threshold(a: &Profile, b: &Profile) -> f64 {
    if a.has_dob() && b.has_dob() {
        MATCH_BITS
    } else {
        NO_DOB_MATCH_BITS
    }
}

/// Every candidate pair (sharing a blocking key) with its levels.
pub fn candidates(left: &[Profile], right: &[Profile]) -> Vec<(u32, u32, Levels)> {
    let mut index: HashMap<Hash16, Vec<u32>> = HashMap::with_capacity(right.len() * 12);
    for (i, p) in right.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        for key in &p.blocks {
            index.entry(*key).or_default().push(i);
        }
    }
    left.par_iter()
        .enumerate()
        .flat_map_iter(|(l, a)| {
            let mut found: Vec<u32> = Vec::new();
            for key in &a.blocks {
                if let Some(bucket) = index.get(key)
                    && bucket.len() <= MAX_BUCKET
                {
                    found.extend_from_slice(bucket);
                }
            }
            found.sort_unstable();
            found.dedup();
            let l = u32::try_from(l).unwrap_or(u32::MAX);
            found
                .into_iter()
                .map(move |r| (l, r, compare::compare(a, &right[r as usize])))
        })
        .collect()
}

/// Links two lists one to one (see the module docs).
pub fn link(left: &[Profile], right: &[Profile]) -> Outcome {
    let compared = candidates(left, right);
    let mut patterns: HashMap<Levels, u32> = HashMap::new();
    for (_, _, levels) in &compared {
        *patterns.entry(*levels).or_default() += 1;
    }
    let weights = Weights::estimate(&patterns, left, right);
    let mut scored: Vec<Scored> = compared
        .iter()
        .filter_map(|&(l, r, levels)| {
            let weight = weights.score(&levels);
            (weight >= REVIEW_BITS).then(|| {
                let (l, r) = (l as usize, r as usize);
                let decision = if weight >= match_threshold(&left[l], &right[r]) {
                    Decision::Match
                } else {
                    Decision::Review
                };
                Scored {
                    left: l,
                    right: r,
                    weight,
                    levels,
                    decision,
                }
            })
        })
        .collect();
    super::batch::one_to_one(&mut scored, (left.len(), right.len()), |p| {
        (p.left, p.right, p.weight)
    });
    Outcome {
        pairs: scored,
        candidates: compared.len(),
        weights,
    }
}

#[cfg(test)]
mod tests;
