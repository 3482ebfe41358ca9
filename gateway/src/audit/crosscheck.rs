//! The rows of the audited tables against the chain: every row has its create
//! entry, and every create entry its row.
//!
//! # Why
//! The chain catches any edit of the entries it holds, and the signed
//! checkpoints catch a tail cut off after they were signed. A tail cut off
//! *before* the next checkpoint (entries deleted, the head row rewound to the
//! last kept entry) leaves a shorter chain that verifies. But every write
//! commits with its entry, so the rows those deleted entries recorded are still
//! in their tables with no entry to account for them: that is what this check
//! finds, with no checkpoint needed. (A cut that also deletes the rows it
//! wrote leaves nothing to compare; only a checkpoint catches that, which is
//! why they are made every 10 s and can go to an outside witness.)
//!
//! # Which entry creates which row
//! | table | created by | entry's `record_id` |
//! |---|---|---|
//! | `referrals` | `referral.create` | the referral id |
//! | `referral_assignments`, first (`from_cbo` NULL) | the same `referral.create` | the referral id |
//! | `referral_assignments`, later | `referral.reassign` | the referral id |
//! | `outcomes` | `outcome.create` | the outcome id |
//! | `cases` | `case.create` | the case status id |
//! | `consents` | `consent.create` | the consent id |
//! | `exports` | `export.request` | the export id |
//!
//! Updates (`consent.revoke`, an export's `ready`/`export.failed`, a referral's
//! status) change rows but create none, so they are not counted. Assignments
//! are matched by their referral: a referral has exactly one first assignment,
//! written with its `referral.create`, and one later assignment per
//! `referral.reassign` naming it, so the two sides are compared as multisets
//! of referral ids. The entries carry no assignment id and need none: which of
//! a referral's reassignment rows is which adds nothing an attacker who can
//! edit rows could not fake, and leaving the entries as they are keeps every
//! existing chain verifying unchanged.
//!
//! # Cost
//! The walk notes each create entry's record id as 128 bits while it hashes
//! the page (a string match on the action and a UUID parse: a few nanoseconds
//! next to the hash), and the rows are read through the native drivers in
//! their own snapshot while the walk runs ([`crate::store::record_ids`]).
//! Each side is a sorted `Vec<u128>`, compared in one merge pass: 16 bytes per
//! create entry and 16 per row, ~32 MB per million audited rows (a referral
//! counts twice on the rows side, for its first assignment; up to twice that
//! while the vectors grow), freed when the verification ends.
//!
//! # Adding an audited table
//! Add its [`RecordSet`] and query in [`crate::store::record_ids`], the action
//! that creates its rows to [`CreateKind`] and [`create_kind`], and a line to
//! the table above and to the "Audit log" section of docs/operations.md.

use std::fmt;

use crate::store::record_ids::{RECORD_SETS, RecordSet, RowIds, record_key};

/// The actions that create rows of an audited table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateKind {
    Referral,
    Reassign,
    Outcome,
    Case,
    Consent,
    Export,
}

const CREATE_KINDS: usize = 6;

impl CreateKind {
    fn action(self) -> &'static str {
        match self {
            Self::Referral => "referral.create",
            Self::Reassign => "referral.reassign",
            Self::Outcome => "outcome.create",
            Self::Case => "case.create",
            Self::Consent => "consent.create",
            Self::Export => "export.request",
        }
    }

    /// The create entries that account for a set's rows.
    fn of(set: RecordSet) -> Self {
        match set {
            RecordSet::Referrals | RecordSet::FirstAssignments => Self::Referral,
            RecordSet::LaterAssignments => Self::Reassign,
            RecordSet::Outcomes => Self::Outcome,
            RecordSet::Cases => Self::Case,
            RecordSet::Consents => Self::Consent,
            RecordSet::Exports => Self::Export,
        }
    }
}

/// Which create action `action` is, if any.
fn create_kind(action: &str) -> Option<CreateKind> {
    Some(match action {
        "referral.create" => CreateKind::Referral,
        "referral.reassign" => CreateKind::Reassign,
        "outcome.create" => CreateKind::Outcome,
        "case.create" => CreateKind::Case,
        "consent.create" => CreateKind::Consent,
        "export.request" => CreateKind::Export,
        _ => return None,
    })
}

/// The record ids of the create entries seen so far, by kind.
#[derive(Debug, Default)]
pub(crate) struct CreateLedger {
    ids: [Vec<u128>; CREATE_KINDS],
}

impl CreateLedger {
    /// Notes an entry: kept if its action creates rows.
    pub(crate) fn note(&mut self, action: Option<&str>, record_id: Option<&str>) {
        if let Some(kind) = action.and_then(create_kind) {
            self.ids[kind as usize].push(record_key(record_id.unwrap_or_default().as_bytes()));
        }
    }

    /// Takes over `other`'s ids (a later page's).
    pub(crate) fn append(&mut self, other: Self) {
        for (mine, theirs) in self.ids.iter_mut().zip(other.ids) {
            if mine.is_empty() {
                *mine = theirs;
            } else {
                mine.extend(theirs);
            }
        }
    }
}

/// Rows and entries that do not account for each other. Counts and table
/// names only: never an id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unaccounted {
    /// Rows whose create entry is not in the chain, per set.
    pub rows_without_entry: Vec<(RecordSet, u64)>,
    /// Create entries in the chain whose row is gone, per set.
    pub entries_without_row: Vec<(RecordSet, u64)>,
}

impl fmt::Display for Unaccounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, sets: &[(RecordSet, u64)]| -> fmt::Result {
            for (i, (set, count)) in sets.iter().enumerate() {
                let separator = if i == 0 { "" } else { ", " };
                let action = CreateKind::of(*set).action();
                write!(f, "{separator}{count} in {} ({action})", set.table())?;
            }
            Ok(())
        };
        if !self.rows_without_entry.is_empty() {
            f.write_str("rows without their create entry in the chain: ")?;
            list(f, &self.rows_without_entry)?;
            f.write_str(
                " (the log's tail was cut and the head rewound, or rows were written around \
                 the gateway)",
            )?;
        }
        if !self.entries_without_row.is_empty() {
            if !self.rows_without_entry.is_empty() {
                f.write_str("; ")?;
            }
            f.write_str("create entries whose row is gone: ")?;
            list(f, &self.entries_without_row)?;
            f.write_str(" (rows were deleted)")?;
        }
        Ok(())
    }
}

/// Rows per set that the check found accounted for.
pub type Accounted = Vec<(RecordSet, usize)>;

/// Compares the rows (each set sorted) with the create entries of the chain.
pub(crate) fn compare(ledger: CreateLedger, rows: &RowIds) -> Result<Accounted, Unaccounted> {
    let mut entries = ledger.ids;
    for ids in &mut entries {
        ids.sort_unstable();
    }
    let mut unaccounted = Unaccounted::default();
    let mut accounted = Vec::with_capacity(RECORD_SETS);
    for set in RecordSet::ALL {
        let rows = &rows[set.index()];
        let (rows_only, entries_only) = differences(rows, &entries[CreateKind::of(set) as usize]);
        if rows_only > 0 {
            unaccounted.rows_without_entry.push((set, rows_only));
        }
        if entries_only > 0 {
            unaccounted.entries_without_row.push((set, entries_only));
        }
        accounted.push((set, rows.len()));
    }
    if unaccounted == Unaccounted::default() {
        Ok(accounted)
    } else {
        Err(unaccounted)
    }
}

/// How many of `rows` have no match in `entries`, and how many of `entries`
/// none in `rows`, both sorted, counted as multisets.
fn differences(rows: &[u128], entries: &[u128]) -> (u64, u64) {
    let (mut r, mut e) = (0, 0);
    let (mut rows_only, mut entries_only) = (0u64, 0u64);
    while r < rows.len() && e < entries.len() {
        match rows[r].cmp(&entries[e]) {
            std::cmp::Ordering::Equal => {
                r += 1;
                e += 1;
            }
            std::cmp::Ordering::Less => {
                rows_only += 1;
                r += 1;
            }
            std::cmp::Ordering::Greater => {
                entries_only += 1;
                e += 1;
            }
        }
    }
    let left = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    (
        rows_only + left(rows.len() - r),
        entries_only + left(entries.len() - e),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0190f3a2-7c1e-7d4b-9a4e-00000000000a";
    const B: &str = "0190f3a2-7c1e-7d4b-9a4e-00000000000b";
    const C: &str = "0190f3a2-7c1e-7d4b-9a4e-00000000000c";

    fn sorted(ids: &[&str]) -> Vec<u128> {
        let mut keys: Vec<u128> = ids.iter().map(|id| record_key(id.as_bytes())).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn multisets_differ_by_what_each_side_lacks() {
        assert_eq!(differences(&sorted(&[A, B]), &sorted(&[B, A])), (0, 0));
        assert_eq!(differences(&sorted(&[A, B, C]), &sorted(&[A])), (2, 0));
        assert_eq!(differences(&sorted(&[A]), &sorted(&[A, C])), (0, 1));
        // Two reassignments of one referral need two entries naming it.
        assert_eq!(differences(&sorted(&[A, A]), &sorted(&[A])), (1, 0));
        assert_eq!(differences(&sorted(&[]), &sorted(&[B, B])), (0, 2));
    }

    #[test]
    fn a_referral_create_accounts_for_the_referral_and_its_first_assignment() {
        let mut ledger = CreateLedger::default();
        for (action, id) in [
            ("referral.create", A),
            ("referral.read", B),
            ("referral.reassign", A),
            ("outcome.create", C),
            ("consent.revoke", B),
        ] {
            ledger.note(Some(action), Some(id));
        }
        let mut rows = RowIds::default();
        rows[RecordSet::Referrals.index()] = sorted(&[A]);
        rows[RecordSet::FirstAssignments.index()] = sorted(&[A]);
        rows[RecordSet::LaterAssignments.index()] = sorted(&[A]);
        rows[RecordSet::Outcomes.index()] = sorted(&[C]);

        let accounted = compare(ledger, &rows).expect("every row has its entry");

        assert!(accounted.contains(&(RecordSet::FirstAssignments, 1)));
    }

    #[test]
    fn the_report_names_tables_and_counts_never_ids() {
        let mut ledger = CreateLedger::default();
        ledger.note(Some("outcome.create"), Some(C));
        let mut rows = RowIds::default();
        rows[RecordSet::Referrals.index()] = sorted(&[A, B]);
        rows[RecordSet::FirstAssignments.index()] = sorted(&[A, B]);

        let report = compare(ledger, &rows).expect_err("unaccounted").to_string();

        assert!(
            report.starts_with(
                "rows without their create entry in the chain: 2 in referrals (referral.create), \
                 2 in referral_assignments (referral.create)"
            ),
            "{report}"
        );
        assert!(
            report.contains("create entries whose row is gone: 1 in outcomes (outcome.create)"),
            "{report}"
        );
        for id in [A, B, C] {
            assert!(
                !report.contains(id) && !report.contains(&id[24..]),
                "{report}"
            );
        }
    }
}
