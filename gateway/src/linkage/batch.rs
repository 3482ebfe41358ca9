//! Linking two whole lists of fingerprints one-to-one with the live match rule
//! (the linkage bench measures it beside the probabilistic linker, which
//! `crosswalk link` runs), and the greedy one-to-one assignment both use.
//!
//! 1. **Blocking.** The right-hand list is indexed by every token (all kinds are
//!    lookup keys, the same ones the subject registry indexes). A left identity's
//!    candidates are the right identities sharing at least one token with it, so
//!    the work grows with the number of plausible pairs, not with |L|·|R|.
//!    Buckets larger than [`MAX_BUCKET`] are skipped: a token shared by that many
//!    identities is a placeholder value (a dummy email, a default date), not
//!    evidence, and would make the run quadratic.
//! 2. **Scoring.** Every candidate pair goes through [`compare`], exactly as a
//!    live submission's candidates do, in parallel over the left list (rayon).
//! 3. **One-to-one assignment.** Matching pairs are taken greedily by descending
//!    score (ties by left, then right index, so the result is deterministic); a
//!    pair is kept when neither side has been taken. Greedy is not an optimal
//!    assignment, but with the score bands of the match rule it picks a
//!    strong-token match over a merely corroborated one, and the two differ only
//!    when one record is a plausible match for several — which the subject
//!    registry would have merged anyway.

use std::collections::HashMap;

use rayon::prelude::*;

use super::fingerprint::Fingerprint;
use super::rule::compare;
use super::tokens::Token;

/// Identities sharing one token beyond which the token is ignored for blocking.
pub const MAX_BUCKET: usize = 1000;

/// One linked pair: indices into the two lists and the pair's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub left: usize,
    pub right: usize,
    pub score: f64,
}

/// Every matching pair (not yet one-to-one), in no particular order.
pub fn matching_pairs(left: &[Fingerprint], right: &[Fingerprint]) -> Vec<Link> {
    let index = index_tokens(right);
    left.par_iter()
        .enumerate()
        .flat_map_iter(|(l, fp)| {
            let mut candidates: Vec<u32> = Vec::new();
            for token in &fp.tokens {
                if let Some(bucket) = index.get(token)
                    && bucket.len() <= MAX_BUCKET
                {
                    candidates.extend_from_slice(bucket);
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            candidates.into_iter().filter_map(move |r| {
                let r = r as usize;
                let score = compare(fp, &right[r]);
                score.is_match().then_some(Link {
                    left: l,
                    right: r,
                    score: score.score(),
                })
            })
        })
        .collect()
}

/// Links two lists one-to-one (see the module docs). Unlinkable fingerprints
/// never appear in the result.
pub fn link_one_to_one(left: &[Fingerprint], right: &[Fingerprint]) -> Vec<Link> {
    let mut pairs = matching_pairs(left, right);
    one_to_one(&mut pairs, (left.len(), right.len()), |p| {
        (p.left, p.right, p.score)
    });
    pairs
}

/// Keeps the pairs taken greedily by descending score (ties by left, then
/// right index, so the result is deterministic): a pair stays when neither
/// of its sides was taken by a stronger one. `sides` are the two lists'
/// lengths; `key` gives a pair's (left, right, score).
pub fn one_to_one<T: Send>(
    pairs: &mut Vec<T>,
    sides: (usize, usize),
    key: impl Fn(&T) -> (usize, usize, f64) + Sync,
) {
    pairs.par_sort_unstable_by(|a, b| {
        let ((al, ar, a), (bl, br, b)) = (key(a), key(b));
        b.total_cmp(&a).then(al.cmp(&bl)).then(ar.cmp(&br))
    });
    let mut left_taken = vec![false; sides.0];
    let mut right_taken = vec![false; sides.1];
    pairs.retain(|p| {
        let (l, r, _) = key(p);
        if left_taken[l] || right_taken[r] {
            return false;
        }
        left_taken[l] = true;
        right_taken[r] = true;
        true
    });
}

fn index_tokens(fingerprints: &[Fingerprint]) -> HashMap<Token, Vec<u32>> {
    let mut index: HashMap<Token, Vec<u32>> = HashMap::with_capacity(fingerprints.len() * 8);
    for (i, fp) in fingerprints.iter().enumerate() {
        // More than 4 billion identities in one file is out of scope.
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        for token in &fp.tokens {
            index.entry(*token).or_default().push(i);
        }
    }
    index
}
