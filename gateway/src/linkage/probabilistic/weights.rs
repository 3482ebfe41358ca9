//! Fellegi–Sunter weights: for each field and level, `log2(m / u)`, where `m`
//! is the chance of that level between two records of one person and `u`
//! between two records of different people. `u` is counted on random pairs
//! (nearly all of which are different people); `m` is estimated by
//! expectation–maximisation on the candidate pairs, as Splink does, when the
//! estimate separates people from households; otherwise (and for a small
//! run) `m` is the calibrated one: FEBRL 4's EM estimate for the five fields
//! it has, set by hand for the rest.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::compare::{LEVELS, Levels, MISSING, compare};
use super::encode::{FIELDS, Profile};

/// Most levels a field has.
const MAX_LEVELS: usize = 7;

/// Fewer candidate pairs than this: the default weights, not estimates.
pub const MIN_PAIRS_TO_ESTIMATE: usize = 2_000;

/// Random pairs counted for `u`.
const RANDOM_PAIRS: usize = 50_000;

/// EM rounds at most (it settles in 15–25).
const EM_ROUNDS: usize = 60;

/// Weights in bits per field and level; [`MISSING`] weighs 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub bits: [[f64; MAX_LEVELS]; FIELDS],
    /// The share of candidate pairs EM took for matches, when its estimate was
    /// used.
    pub match_share: Option<f64>,
    /// Where `m` came from.
    pub source: Source,
    /// Whether the household fields are capped together ([`Weights::score`]):
    /// unless the run's own candidates show nobody sharing a home
    /// ([`shows_no_households`]).
    pub household_cap: bool,
}

/// Where a run's `m` came from (`u` is counted on the run's own random
/// pairs whenever the files are big enough, else the defaults').
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// EM on these files' candidate pairs.
    Estimated,
    /// EM did not separate people from households (see [`Weights::estimate`]):
    /// the calibrated `m`.
    Calibrated,
    /// Too few pairs to estimate from: the calibrated `m`.
    #[default]
    TooFewPairs,
}

/// `m` and `u` per level as calibrated: EM on FEBRL 4 for names, date of
/// birth, street and city (`u` from its random pairs); ZIP, phone and email
/// set by hand — agreement on a phone or an email is nearly as strong as a
/// date of birth, on a ZIP much less, and a different phone or email is weak
/// evidence against (people change them).
const CALIBRATED_M: [[f64; MAX_LEVELS]; FIELDS] = [
    [0.6976, 0.0587, 0.0434, 0.0936, 0.0251, 0.0816, 0.0],
    [0.6791, 0.0586, 0.0693, 0.1103, 0.0274, 0.0554, 0.0],
    [0.9388, 0.0002, 0.0166, 0.0002, 0.0013, 0.0081, 0.0348],
    [0.5171, 0.1018, 0.2567, 0.0400, 0.0056, 0.0787, 0.0],
    [0.7675, 0.1092, 0.0703, 0.0071, 0.0459, 0.0, 0.0],
    [0.85, 0.10, 0.05, 0.0, 0.0, 0.0, 0.0],
    [0.60, 0.10, 0.30, 0.0, 0.0, 0.0, 0.0],
    [0.60, 0.10, 0.30, 0.0, 0.0, 0.0, 0.0],
];
const CALIBRATED_U: [[f64; MAX_LEVELS]; FIELDS] = [
    [0.00407, 0.00035, 0.00027, 0.00237, 0.01171, 0.98123, 0.0],
    [0.00366, 0.00036, 0.00036, 0.00160, 0.00708, 0.98694, 0.0],
    [
        0.00020, 0.00003, 0.00156, 0.00054, 0.00886, 0.04231, 0.94650,
    ],
    [0.00011, 0.00025, 0.00015, 0.00228, 0.13388, 0.86333, 0.0],
    [0.00094, 0.00022, 0.00067, 0.00832, 0.98985, 0.0, 0.0],
    [0.03, 0.20, 0.77, 0.0, 0.0, 0.0, 0.0],
    [0.0001, 0.001, 0.9989, 0.0, 0.0, 0.0, 0.0],
    [0.0001, 0.0005, 0.9994, 0.0, 0.0, 0.0, 0.0],
];

/// Random pairs needed before `u` is counted on the run's own files.
const MIN_PAIRS_FOR_U: usize = 10_000;

/// An EM estimate is used only if it separates people: fewer than this share
/// of the candidates taken for matches, and for the given name, the surname
/// and the date of birth at least [`MIN_SEPARATION_BITS`] between exact
/// agreement and disagreement. On data where most candidates are relatives
/// or neighbours, EM can settle on "same household" or "same town" as its
/// match class (on 100,000 synthetic people it took 80% of the candidates
/// and weighed a different date of birth at 0 bits); then the calibrated `m`
/// is the safer guess.
const MAX_MATCH_SHARE: f64 = 0.6;
const MIN_SEPARATION_BITS: f64 = 6.0;

impl Default for Weights {
    fn default() -> Self {
        Self::from_m_u(&CALIBRATED_M, &CALIBRATED_U, None, Source::TooFewPairs)
    }
}

impl Weights {
    fn from_m_u(
        m: &[[f64; MAX_LEVELS]; FIELDS],
        u: &[[f64; MAX_LEVELS]; FIELDS],
        match_share: Option<f64>,
        source: Source,
    ) -> Self {
        let mut bits = [[0.0; MAX_LEVELS]; FIELDS];
        for field in 0..FIELDS {
            for level in 0..LEVELS[field] {
                bits[field][level] = (m[field][level].max(1e-6) / u[field][level].max(1e-9)).log2();
            }
        }
        Self {
            bits,
            match_share,
            source,
            household_cap: true,
        }
    }

    /// The match weight of a pattern, in bits: the sum over its fields,
    /// except that the household fields (street, city, ZIP, phone) together
    /// add at most [`HOUSEHOLD_CAP_BITS`]. Fellegi–Sunter assumes fields
    /// agree independently; an address and a home phone are shared by
    /// everyone in a household, so together they say "same household" once,
    /// not "same person" four times. Without the cap, a sibling at the same
    /// address outweighs a different given name and date of birth (on
    /// 100,000 synthetic people in families, precision fell to 0.991). The
    /// cost: a true pair whose given name and date of birth are both garbled
    /// lands in review instead of linking. So the cap is lifted when the
    /// run's own candidates show no households ([`shows_no_households`]):
    /// FEBRL 4, whose people each live alone, then links 46 more true pairs
    /// (F1 0.9922 → 0.9969) and the synthetic families keep their precision.
    pub fn score(&self, levels: &Levels) -> f64 {
        let mut person = 0.0;
        let mut household = 0.0;
        for (field, level) in levels.iter().enumerate() {
            if *level == MISSING {
                continue;
            }
            let bits = self.bits[field][usize::from(*level)];
            if HOUSEHOLD[field] {
                household += bits;
            } else {
                person += bits;
            }
        }
        if self.household_cap {
            person + household.min(HOUSEHOLD_CAP_BITS)
        } else {
            person + household
        }
    }

    /// The weights for a run: `u` counted on random pairs of `left` ×
    /// `right` (the calibrated `u` for tiny files), and `m` estimated by EM
    /// on the candidate pairs' patterns when there are enough of them and the
    /// estimate separates people (see [`MAX_MATCH_SHARE`]), else the
    /// calibrated `m`.
    pub fn estimate(patterns: &HashMap<Levels, u32>, left: &[Profile], right: &[Profile]) -> Self {
        let mut weights = Self::estimate_m_u(patterns, left, right);
        weights.household_cap = !shows_no_households(patterns);
        weights
    }

    fn estimate_m_u(patterns: &HashMap<Levels, u32>, left: &[Profile], right: &[Profile]) -> Self {
        let pairs: usize = patterns.values().map(|n| *n as usize).sum();
        let enough_for_u = left.len().saturating_mul(right.len()) >= MIN_PAIRS_FOR_U;
        let u = if enough_for_u {
            random_pair_u(left, right)
        } else {
            CALIBRATED_U
        };
        if pairs < MIN_PAIRS_TO_ESTIMATE || !enough_for_u {
            return Self::from_m_u(&CALIBRATED_M, &u, None, Source::TooFewPairs);
        }
        let (m, share) = expectation_maximisation(patterns, &u);
        let estimated = Self::from_m_u(&m, &u, Some(share), Source::Estimated);
        let separates = [0, 1, 2].into_iter().all(|field| {
            let last = LEVELS[field] - 1;
            estimated.bits[field][0] - estimated.bits[field][last] >= MIN_SEPARATION_BITS
        });
        if share < MAX_MATCH_SHARE && separates {
            estimated
        } else {
            Self::from_m_u(&CALIBRATED_M, &u, Some(share), Source::Calibrated)
        }
    }
}

/// Candidate pairs with the same surname and street at least this many
/// before a run may conclude anything about households from them.
const MIN_CO_RESIDENT: u32 = 200;
/// ...and, among them, fewer than this share looking like two people of one
/// household (the given name and the date of birth both different outright)
/// means the files have no households: there, such a pair is one person
/// whose given name and date were both garbled. Measured: FEBRL 4, 11 of
/// 1,624 (0.7%); FEBRL 3, 5 of 372; 100,000 synthetic people in families,
/// 79,516 of 174,784 (45%). FEBRL 1 and 2 have too few such pairs (153,
/// 166) and keep the cap.
const MAX_HOUSEHOLD_SHARE: f64 = 0.03;

/// Whether the candidate pairs show that the files hold no households, so
/// an address may count in full: enough pairs share the exact surname and
/// street, and almost none of those differ outright in both the given name
/// and the date of birth. Data with families sharing a home — what a
/// program's referrals are — keeps the cap; so does a run too small to tell.
pub(super) fn shows_no_households(patterns: &HashMap<Levels, u32>) -> bool {
    let (mut co_resident, mut two_people) = (0u32, 0u32);
    for (levels, n) in patterns {
        if levels[1] == 0 && levels[3] == 0 {
            co_resident += n;
            let given_differs = levels[0] != MISSING && usize::from(levels[0]) + 1 == LEVELS[0];
            let dob_differs = levels[2] != MISSING && usize::from(levels[2]) + 2 >= LEVELS[2];
            if given_differs && dob_differs {
                two_people += n;
            }
        }
    }
    co_resident >= MIN_CO_RESIDENT
        && f64::from(two_people) < MAX_HOUSEHOLD_SHARE * f64::from(co_resident)
}

/// The household fields (street, city, ZIP, phone), whose agreement is
/// capped together: see [`Weights::score`].
const HOUSEHOLD: [bool; FIELDS] = [false, false, false, true, true, true, true, false];
pub const HOUSEHOLD_CAP_BITS: f64 = 10.0;
/// `m` per field and level, and the match share, by EM on the patterns;
/// `u` starts from the random pairs' and is free, as in Splink (the weights
/// use the random pairs' `u` all the same).
fn expectation_maximisation(
    patterns: &HashMap<Levels, u32>,
    u: &[[f64; MAX_LEVELS]; FIELDS],
) -> ([[f64; MAX_LEVELS]; FIELDS], f64) {
    let mut m = CALIBRATED_M;
    let mut u_em = *u;
    let mut share = 0.3;
    let list: Vec<(&Levels, f64)> = patterns.iter().map(|(l, n)| (l, f64::from(*n))).collect();
    for _ in 0..EM_ROUNDS {
        let mut m_next = [[1.0; MAX_LEVELS]; FIELDS];
        let mut u_next = [[1.0; MAX_LEVELS]; FIELDS];
        let mut matched = 0.0;
        let mut total = 0.0;
        for (levels, count) in &list {
            let (mut pm, mut pu) = (share, 1.0 - share);
            for (field, level) in levels.iter().enumerate() {
                if *level != MISSING {
                    pm *= m[field][usize::from(*level)];
                    pu *= u_em[field][usize::from(*level)];
                }
            }
            let gamma = if pm + pu > 0.0 { pm / (pm + pu) } else { 0.0 };
            matched += gamma * count;
            total += count;
            for (field, level) in levels.iter().enumerate() {
                if *level != MISSING {
                    m_next[field][usize::from(*level)] += gamma * count;
                    u_next[field][usize::from(*level)] += (1.0 - gamma) * count;
                }
            }
        }
        for field in 0..FIELDS {
            normalise(&mut m_next[field][..LEVELS[field]]);
            normalise(&mut u_next[field][..LEVELS[field]]);
        }
        let next_share = (matched / total).clamp(1e-6, 1.0 - 1e-6);
        let settled = (next_share - share).abs() < 1e-7;
        (m, u_em, share) = (m_next, u_next, next_share);
        if settled {
            break;
        }
    }
    (m, share)
}

fn normalise(values: &mut [f64]) {
    let sum: f64 = values.iter().sum();
    if sum > 0.0 {
        for v in values {
            *v /= sum;
        }
    }
}

/// `u` per field and level, counted on random pairs with one pseudo-count
/// per level. The pairs are drawn from a fixed seed: this is sampling, not
/// secrecy, and a run's links should not depend on the draw.
fn random_pair_u(left: &[Profile], right: &[Profile]) -> [[f64; MAX_LEVELS]; FIELDS] {
    let mut counts = [[1.0; MAX_LEVELS]; FIELDS];
    let mut rng = StdRng::seed_from_u64(0x6372_6f73_7377_616c);
    for _ in 0..RANDOM_PAIRS {
        let a = &left[rng.random_range(0..left.len())];
        let b = &right[rng.random_range(0..right.len())];
        for (field, level) in compare(a, b).iter().enumerate() {
            if *level != MISSING {
                counts[field][usize::from(*level)] += 1.0;
            }
        }
    }
    for field in 0..FIELDS {
        normalise(&mut counts[field][..LEVELS[field]]);
    }
    counts
}
