//! A study's plan: the generalization every export of the study uses, chosen
//! once, and k-anonymity counted over distinct people.
//!
//! # Why one plan per study
//! An evaluator can ask for as many exports of a study as it likes, over any
//! windows, and join them on the study pseudonyms they share (the same
//! referral, the same person). When each export chose its own levels, one
//! window's referrals fit 5-year age bands without sex and another's 10-year
//! bands with sex: joined on the referral pseudonym, a referral showed both a
//! 5-year band and a sex — a combination no export released, in classes
//! smaller than k. So the levels are chosen once per study, by its first
//! export, and stored (`study_plans`, migration 0015) in the transaction that
//! finishes that export, with an `export.plan` audit entry; every later
//! export uses them and suppresses what does not reach k instead of choosing
//! other levels. Then:
//!
//! - every identifying value a referral shows is a function of the referral
//!   and the plan alone: the identity it was recorded with (immutable), its
//!   contact date and district (immutable), and the plan's levels and
//!   reference date. A referral shows the same values in every export that
//!   holds it;
//! - a row an export writes is in a class of at least k people *of that
//!   export*, and so of at least k people in any export whose window holds
//!   it; the union of any set of exports is a subset of the export of the
//!   union of their windows, row for row and value for value, and that export
//!   is k-anonymous. Joining exports reveals nothing one export could not.
//!
//! Two replicas (or two requests) finishing a study's first exports at once
//! both try to store their plan; the table's primary key lets one in, and the
//! other's export is rebuilt with the stored plan before it is published (or
//! published as it is, when both chose the same levels and reference date).
//!
//! The plan is chosen over every referral recorded up to the first export's
//! cutoff, not only that export's window, so that a narrow first export does
//! not force coarse levels on the study for good. A study whose mode,
//! quasi-identifiers or `k` change after its plan is refused (409): its
//! exports could no longer be joined safely with the earlier ones, so a
//! changed de-identification is a new study, with new pseudonyms.
//!
//! # Ages are on a reference date
//! The plan fixes a reference date (the first export's day) and ages are ages
//! on that day, not at each contact: a person's age is then the same in every
//! row of every export, so a person referred on both sides of a birthday does
//! not show two ages that narrow the date of birth down when the rows are
//! joined on the person pseudonym. Sex, ZIP and state come from the identity
//! recorded with the referral, so they are as constant per person as the
//! records are; a person recorded with two different values (a move, a typo)
//! has rows in two classes, each of at least k people, exactly as one export
//! spanning both referrals would show.
//!
//! # Distinct people, not rows
//! A class is the set of referrals with one combination of generalized
//! values; its size is the number of distinct people (current study subject,
//! merges followed) among them, not of rows: five referrals of four people
//! are four. [`Population`] counts that without a set per class: the first
//! pass's referrals are ordered by person (a counting sort over the person
//! numbers), and for each person the generalized keys of their referrals are
//! sorted and each distinct key counted once. Memory: one `u32` per referral
//! and the map of class sizes.
//!
//! # The search (full-domain generalization, Samarati-style)
//! Every combination of levels ("node") is scored on the population: the
//! referrals in classes of fewer than k people would be suppressed. Nodes are
//! tried by total height (sum of levels), lowest first; the first height with
//! a node that suppresses at most `max_suppression_percent` of the referrals
//! wins (fewest suppressed among them, then the first in a fixed order). If
//! none does, the node suppressing fewest is taken.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::hierarchy::{self, Node, QiValues};
use super::study::{QuasiIdentifier, StudyConfig, StudyMode};
use crate::store::study_plans::StudyPlanRow;

/// One referral of an export's first pass.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    /// A check of the referral id, so that the second pass can tell that it
    /// reads the same referrals in the same order.
    pub(crate) check: u64,
    pub(crate) values: QiValues,
    /// The person, numbered in the order first seen (see [`People`]).
    pub(crate) person: u32,
}

/// Sizes only: the values are people's quasi-identifiers.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entry(..)")
    }
}

/// The people of a first pass, numbered: a 16-byte key of the subject id
/// (never the id itself in memory twice) to a dense number.
#[derive(Default)]
pub(crate) struct People {
    numbers: HashMap<[u8; 16], u32>,
}

impl People {
    /// The person's number, assigning the next one to someone new.
    pub(crate) fn number(&mut self, subject_id: &str) -> u32 {
        let next = u32::try_from(self.numbers.len()).unwrap_or(u32::MAX);
        *self.numbers.entry(subject_key(subject_id)).or_insert(next)
    }

    pub(crate) fn get(&self, subject_id: &str) -> Option<u32> {
        self.numbers.get(&subject_key(subject_id)).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.numbers.len()
    }
}

/// A 16-byte key for a subject id in the in-memory maps.
fn subject_key(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(id.as_bytes()).as_bytes()[..16]);
    out
}

/// A class's size: the distinct people in it, and their referrals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClassSize {
    pub(crate) people: u32,
    pub(crate) rows: u32,
}

/// Class sizes under one node, by generalized key.
pub(crate) type Sizes = HashMap<[u32; 7], ClassSize>;

/// Referrals grouped by person, for counting distinct people per class.
pub(crate) struct Population<'a> {
    entries: &'a [Entry],
    /// Entry indices ordered by person.
    by_person: Vec<u32>,
}

impl<'a> Population<'a> {
    /// Orders `entries` by person with a counting sort (people are numbered
    /// densely from 0, `people` of them).
    pub(crate) fn new(entries: &'a [Entry], people: usize) -> Self {
        let mut starts = vec![0u32; people + 1];
        for e in entries {
            if let Some(s) = starts.get_mut(e.person as usize + 1) {
                *s += 1;
            }
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut by_person = vec![0u32; entries.len()];
        for (i, e) in entries.iter().enumerate() {
            if let Some(slot) = starts.get_mut(e.person as usize) {
                // Invariant: the counts above sized every person's range.
                by_person[*slot as usize] = u32::try_from(i).unwrap_or(u32::MAX);
                *slot += 1;
            }
        }
        Self { entries, by_person }
    }

    pub(crate) fn rows(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Class sizes with `declared` generalized to `node`.
    pub(crate) fn sizes(&self, node: Node, declared: &[QuasiIdentifier], mode: StudyMode) -> Sizes {
        let mut sizes = Sizes::new();
        let mut keys: Vec<[u32; 7]> = Vec::new();
        let person_of = |i: &u32| self.entries[*i as usize].person;
        for run in self.by_person.chunk_by(|a, b| person_of(a) == person_of(b)) {
            keys.clear();
            keys.extend(run.iter().map(|i| {
                hierarchy::generalized_key(&self.entries[*i as usize].values, &node, declared, mode)
            }));
            keys.sort_unstable();
            for same in keys.chunk_by(|a, b| a == b) {
                let size = sizes.entry(same[0]).or_default();
                size.people += 1;
                size.rows += u32::try_from(same.len()).unwrap_or(u32::MAX);
            }
        }
        sizes
    }
}

/// Referrals in classes of fewer than `k` people.
pub(crate) fn suppressed_rows(sizes: &Sizes, k: u32) -> u64 {
    sizes
        .values()
        .filter(|s| s.people < k)
        .map(|s| u64::from(s.rows))
        .sum()
}

/// Picks the node (see the module docs); returns it with its class sizes.
pub(crate) fn search(
    population: &Population<'_>,
    declared: &[QuasiIdentifier],
    mode: StudyMode,
    k: u32,
    max_suppression_percent: f64,
) -> (Node, Sizes) {
    let mut nodes: Vec<Node> = vec![[0; 7]];
    for qi in declared {
        let i = qi.index();
        nodes = nodes
            .into_iter()
            .flat_map(|node| {
                (0..=hierarchy::max_level(*qi, mode)).map(move |level| {
                    let mut n = node;
                    n[i] = level;
                    n
                })
            })
            .collect();
    }
    nodes.sort_by_key(|n| (n.iter().map(|l| u32::from(*l)).sum::<u32>(), *n));
    #[expect(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a row budget from a percentage; precision to the row is not needed"
    )]
    let budget = (population.rows() as f64 * max_suppression_percent / 100.0).floor() as u64;
    let mut best: Option<(Node, Sizes, u64)> = None;
    let mut best_height = None;
    for node in nodes {
        let height: u32 = node.iter().map(|l| u32::from(*l)).sum();
        if let (Some(h), Some((_, _, suppressed))) = (best_height, &best)
            && height > h
            && *suppressed <= budget
        {
            break;
        }
        let sizes = population.sizes(node, declared, mode);
        let suppressed = suppressed_rows(&sizes, k);
        let better = match &best {
            None => true,
            Some((_, _, b)) => {
                let fits = suppressed <= budget;
                let b_fits = *b <= budget;
                (fits && !b_fits) || (fits == b_fits && suppressed < *b)
            }
        };
        if better {
            best = Some((node, sizes, suppressed));
            best_height = Some(height);
        }
    }
    best.map_or(([0; 7], Sizes::new()), |(node, sizes, _)| (node, sizes))
}

/// A study's plan, as every export of it uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StudyPlan {
    pub(crate) node: Node,
    /// Ages are ages on this day.
    pub(crate) reference_date: NaiveDate,
    /// The export that made it.
    pub(crate) planned_by: String,
    /// Unix microseconds.
    pub(crate) planned_at: i64,
}

impl StudyPlan {
    /// The same levels and reference date: exports built with either are the
    /// same.
    pub(crate) fn same_generalization(&self, other: &Self) -> bool {
        self.node == other.node && self.reference_date == other.reference_date
    }

    /// The level of `qi` (0 for one the study does not declare).
    pub(crate) fn level(&self, qi: QuasiIdentifier) -> u8 {
        self.node[qi.index()]
    }

    /// The levels of the study's quasi-identifiers, by name.
    pub(crate) fn levels(&self, study: &StudyConfig) -> BTreeMap<String, u8> {
        study
            .quasi_identifiers
            .iter()
            .map(|q| (q.as_str().to_owned(), self.level(*q)))
            .collect()
    }

    pub(crate) fn to_row(&self, study_id: &str, study: &StudyConfig) -> StudyPlanRow {
        StudyPlanRow {
            study_id: study_id.to_owned(),
            mode: study.mode.as_str().to_owned(),
            quasi_identifiers: settings_qis(study),
            k: i64::from(study.k),
            levels: serde_json::to_string(&self.levels(study)).unwrap_or_default(),
            reference_date: self.reference_date.to_string(),
            planned_by: self.planned_by.clone(),
            planned_at: self.planned_at,
        }
    }

    /// The stored plan, if the study is still configured as when it was made;
    /// otherwise why not, in words for the 409.
    pub(crate) fn from_row(row: &StudyPlanRow, study: &StudyConfig) -> Result<Self, String> {
        let planned_on = chrono::DateTime::from_timestamp_micros(row.planned_at)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default();
        if row.mode != study.mode.as_str()
            || row.quasi_identifiers != settings_qis(study)
            || row.k != i64::from(study.k)
        {
            return Err(format!(
                "the study's mode, quasi_identifiers or k changed since its exports were planned \
                 on {planned_on} (mode {}, quasi_identifiers {}, k {}): exports of one study keep \
                 one generalization so that they stay k-anonymous when joined; register the new \
                 settings as a new study",
                row.mode, row.quasi_identifiers, row.k
            ));
        }
        let levels: BTreeMap<String, u8> = serde_json::from_str(&row.levels)
            .map_err(|_| "the study's stored plan is unreadable".to_owned())?;
        let mut node: Node = [0; 7];
        for qi in &study.quasi_identifiers {
            node[qi.index()] = levels.get(qi.as_str()).copied().unwrap_or(0);
        }
        let reference_date = NaiveDate::parse_from_str(&row.reference_date, "%Y-%m-%d")
            .map_err(|_| "the study's stored plan is unreadable".to_owned())?;
        Ok(Self {
            node,
            reference_date,
            planned_by: row.planned_by.clone(),
            planned_at: row.planned_at,
        })
    }
}

fn settings_qis(study: &StudyConfig) -> String {
    study
        .quasi_identifiers
        .iter()
        .map(|q| q.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SH: StudyMode = StudyMode::SafeHarbor;

    fn entry(person: u32, age: u32) -> Entry {
        Entry {
            check: 0,
            values: QiValues {
                age: age + 1,
                ..QiValues::default()
            },
            person,
        }
    }

    #[test]
    fn the_search_generalizes_until_classes_reach_k() {
        let declared = [QuasiIdentifier::Age];
        // Ten people aged 30..39, one each: 30-34 and 35-39 have 5 each.
        let entries: Vec<Entry> = (0..10).map(|p| entry(p, 30 + p)).collect();
        let population = Population::new(&entries, 10);
        let (node, sizes) = search(&population, &declared, SH, 5, 0.0);
        assert_eq!(node[QuasiIdentifier::Age.index()], 1);
        assert_eq!(suppressed_rows(&sizes, 5), 0);
        let (node, _) = search(&population, &declared, SH, 6, 0.0);
        assert_eq!(node[QuasiIdentifier::Age.index()], 2);
    }

    /// Five referrals of four people are a class of four: one person's two
    /// referrals count once.
    #[test]
    fn classes_count_people_not_rows() {
        let declared = [QuasiIdentifier::Age];
        let entries = [
            entry(0, 31),
            entry(1, 32),
            entry(2, 33),
            entry(3, 34),
            entry(3, 34),
        ];
        let population = Population::new(&entries, 4);
        let node: Node = [1, 0, 0, 0, 0, 0, 0];
        let sizes = population.sizes(node, &declared, SH);
        assert_eq!(sizes.len(), 1);
        assert_eq!(
            sizes.values().next(),
            Some(&ClassSize { people: 4, rows: 5 })
        );
        assert_eq!(suppressed_rows(&sizes, 5), 5);
        // The person's two referrals in two classes count once in each.
        let entries = [entry(0, 33), entry(0, 36), entry(1, 33)];
        let sizes = Population::new(&entries, 2).sizes(node, &declared, SH);
        let mut people: Vec<u32> = sizes.values().map(|s| s.people).collect();
        people.sort_unstable();
        assert_eq!(people, [1, 2]);
    }
}
