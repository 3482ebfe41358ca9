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
//!    shared by more than [`MAX_BUCKET`] (40) identities is a placeholder, not
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
//!    address says "same household", not "same person" — unless the run's
//!    candidates show no households at all
//!    ([`weights::shows_no_households`]: among pairs with the same surname
//!    and street, under 3% differ outright in both given name and date of
//!    birth).
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
use self::encode::Hash;
pub use self::encode::{CField, Profile, ProfileKeys, profile};
pub use self::weights::Weights;

/// A pair at or above this weight (bits) is a match.
pub const MATCH_BITS: f64 = 10.0;
/// When either side has no date of birth, a match needs this much.
pub const NO_DOB_MATCH_BITS: f64 = 14.0;
/// Below a match and at or above this, the pair is for review.
pub const REVIEW_BITS: f64 = 4.0;
/// Pairs at review weight or above kept per left row, strongest first: the
/// one-to-one assignment takes at most one of them, and a row's fourth-best
/// is taken only if three stronger rows each took one of its better ones.
pub const PAIRS_PER_ROW: usize = 4;
/// Identities sharing one blocking key beyond which the key is ignored: a
/// key that many rows share ("the first three letters of a name and the
/// city" in a big city) is a placeholder, not evidence, and comparing its
/// rows is most of the cost. Measured on 1,000,000 × 1,000,000 synthetic
/// rows: at 1,000, 224 million pairs compared, 82 s, F1 0.9941; at 100, 83
/// s → 18 s for 200,000; at 40, 68 million pairs, 46 s, F1 0.9967 (fewer
/// weak candidates competing for the one-to-one assignment). FEBRL 1–4 and
/// the 100,000-row synthetic set link exactly as at 1,000: their true
/// pairs share smaller keys.
pub const MAX_BUCKET: usize = 40;

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

/// The right side's blocking keys, for the left side's to look up: every
/// key once, sorted, with the right-side profiles that have it (a compressed
/// sparse row layout: 4 bytes per key of every profile, 12 per distinct key,
/// where a map of vectors would take several times that at a million rows).
#[derive(Debug, Default)]
pub struct BlockIndex {
    keys: Vec<u64>,
    /// `members[starts[i]..starts[i + 1]]` have `keys[i]`.
    starts: Vec<u32>,
    members: Vec<u32>,
}

impl BlockIndex {
    /// Indexes the blocking keys of `right`.
    pub fn build(right: &[Profile]) -> Self {
        let mut entries: Vec<(u64, u32)> = right
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                p.blocks.iter().map(move |key| (key.get(), i))
            })
            .collect();
        entries.par_sort_unstable();
        let mut index = Self {
            keys: Vec::new(),
            starts: Vec::new(),
            members: Vec::with_capacity(entries.len()),
        };
        for (key, member) in entries {
            if index.keys.last() != Some(&key) {
                index.keys.push(key);
                index
                    .starts
                    .push(u32::try_from(index.members.len()).unwrap_or(u32::MAX));
            }
            index.members.push(member);
        }
        index
            .starts
            .push(u32::try_from(index.members.len()).unwrap_or(u32::MAX));
        index.keys.shrink_to_fit();
        index.starts.shrink_to_fit();
        index
    }

    /// The right-side profiles sharing `key`.
    fn bucket(&self, key: Hash) -> &[u32] {
        match self.keys.binary_search(&key.get()) {
            Ok(i) => &self.members[self.starts[i] as usize..self.starts[i + 1] as usize],
            Err(_) => &[],
        }
    }

    /// The right-side profiles sharing a blocking key with `profile`, each
    /// once, skipping keys shared by more than [`MAX_BUCKET`].
    fn candidates_of(&self, profile: &Profile, found: &mut Vec<u32>) {
        found.clear();
        for key in &profile.blocks {
            let bucket = self.bucket(*key);
            if bucket.len() <= MAX_BUCKET {
                found.extend_from_slice(bucket);
            }
        }
        found.sort_unstable();
        found.dedup();
    }
}

/// Every candidate pair (sharing a blocking key) with its levels.
pub fn candidates(left: &[Profile], right: &[Profile]) -> Vec<(u32, u32, Levels)> {
    let index = BlockIndex::build(right);
    left.par_iter()
        .enumerate()
        .flat_map_iter(|(l, a)| {
            let mut found = Vec::new();
            index.candidates_of(a, &mut found);
            let l = u32::try_from(l).unwrap_or(u32::MAX);
            found
                .into_iter()
                .map(move |r| (l, r, compare::compare(a, &right[r as usize])))
        })
        .collect()
}

/// The agreement patterns of `left`'s candidate pairs, counted: what the
/// weights are estimated from. Nothing per pair is kept.
pub fn patterns(index: &BlockIndex, left: &[Profile], right: &[Profile]) -> HashMap<Levels, u32> {
    left.par_iter()
        .fold(
            || (HashMap::new(), Vec::new()),
            |(mut counts, mut found): (HashMap<Levels, u32>, Vec<u32>), a| {
                index.candidates_of(a, &mut found);
                for &r in &found {
                    *counts
                        .entry(compare::compare(a, &right[r as usize]))
                        .or_default() += 1;
                }
                (counts, found)
            },
        )
        .map(|(counts, _)| counts)
        .reduce(HashMap::new, |mut a, b| {
            for (levels, n) in b {
                *a.entry(levels).or_default() += n;
            }
            a
        })
}

/// The pairs of `left` (numbered from `offset`) at or above review weight,
/// and how many candidate pairs were compared. Only those pairs are kept.
pub fn score(
    index: &BlockIndex,
    (left, offset): (&[Profile], usize),
    right: &[Profile],
    weights: &Weights,
) -> (Vec<Scored>, usize) {
    left.par_iter()
        .enumerate()
        .fold(
            || (Vec::new(), 0, Vec::new()),
            |(mut kept, mut compared, mut found): (Vec<Scored>, usize, Vec<u32>), (l, a)| {
                index.candidates_of(a, &mut found);
                compared += found.len();
                let first = kept.len();
                for &r in &found {
                    let b = &right[r as usize];
                    let levels = compare::compare(a, b);
                    let weight = weights.score(&levels);
                    if weight >= REVIEW_BITS {
                        let decision = if weight >= match_threshold(a, b) {
                            Decision::Match
                        } else {
                            Decision::Review
                        };
                        kept.push(Scored {
                            left: offset + l,
                            right: r as usize,
                            weight,
                            levels,
                            decision,
                        });
                    }
                }
                // Only this row's strongest few can survive the one-to-one
                // assignment; the rest would fill memory at a million rows.
                if kept.len() - first > PAIRS_PER_ROW {
                    kept[first..].sort_unstable_by(|x, y| {
                        y.weight.total_cmp(&x.weight).then(x.right.cmp(&y.right))
                    });
                    kept.truncate(first + PAIRS_PER_ROW);
                }
                (kept, compared, found)
            },
        )
        .map(|(kept, compared, _)| (kept, compared))
        .reduce(
            || (Vec::new(), 0),
            |(mut a, n), (b, m)| {
                a.extend(b);
                (a, n + m)
            },
        )
}

/// Links a left side that arrives in chunks against a right side held in
/// memory: the first chunk (the sample: all of the left side when it is no
/// longer than [`SAMPLE_ROWS`]) decides the weights, every chunk is scored
/// as it comes and dropped, and [`StreamLinker::finish`] takes the pairs
/// one to one. Memory is the right side, its index and one chunk.
#[derive(Debug)]
pub struct StreamLinker<'r> {
    right: &'r [Profile],
    index: BlockIndex,
    weights: Option<Weights>,
    pairs: Vec<Scored>,
    candidates: usize,
    left_rows: usize,
}

/// Left rows the weights are estimated on (the first chunk). The estimate
/// needs thousands of candidate pairs, not millions: on 100,000 rows it is
/// as good as on all of them, at a fraction of the second pass it costs.
pub const SAMPLE_ROWS: usize = 100_000;

impl<'r> StreamLinker<'r> {
    pub fn new(right: &'r [Profile], index: BlockIndex) -> Self {
        Self {
            right,
            index,
            weights: None,
            pairs: Vec::new(),
            candidates: 0,
            left_rows: 0,
        }
    }

    /// Scores the next chunk of left profiles (the first one also sets the
    /// weights).
    pub fn add(&mut self, left: &[Profile]) {
        let weights = self.weights.get_or_insert_with(|| {
            let counts = patterns(&self.index, left, self.right);
            Weights::estimate(&counts, left, self.right)
        });
        let (kept, compared) = score(&self.index, (left, self.left_rows), self.right, weights);
        self.pairs.extend(kept);
        self.candidates += compared;
        self.left_rows += left.len();
    }

    /// The matches and pairs for review, one to one, strongest first.
    pub fn finish(mut self) -> Outcome {
        let weights = self
            .weights
            .unwrap_or_else(|| Weights::estimate(&HashMap::new(), &[], self.right));
        super::batch::one_to_one(&mut self.pairs, (self.left_rows, self.right.len()), |p| {
            (p.left, p.right, p.weight)
        });
        Outcome {
            pairs: self.pairs,
            candidates: self.candidates,
            weights,
        }
    }
}

/// Links two lists one to one (see the module docs).
pub fn link(left: &[Profile], right: &[Profile]) -> Outcome {
    let mut linker = StreamLinker::new(right, BlockIndex::build(right));
    linker.add(left);
    linker.finish()
}

#[cfg(test)]
mod tests;
