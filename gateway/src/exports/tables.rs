//! The export's tables: their columns (each tied to the catalog field whose
//! policy decision admits it), how rows are written as CSV or NDJSON, and the
//! data dictionary.
//!
//! # Which columns
//! Every column that could single a person out in combination with others is
//! either one of the study's declared quasi-identifiers, generalized by the
//! study's plan inside the k classes, or not written at all:
//! - `age`, `sex`, `zip`, `state`, `city`, `district` and the contact date
//!   (`contact_year` or `contact_date`) are written only when the study
//!   declares them; an undeclared one is left out, not written at full detail;
//! - other dates (an outcome's `occurred_at`, a case status's `effective_at`)
//!   are not written: they would be identifying values outside the classes,
//!   and beside an interval they give back the exact contact date across a
//!   year boundary. What an evaluator needs of them is an interval in whole
//!   days from a fixed anchor: `days_from_contact` from the outcome's own
//!   referral, `days_from_first_referral` from the person's first recorded
//!   referral. Both anchors are the same in every export, so joining exports
//!   yields no new differences between dates; the anchored date is released
//!   only as the contact date's generalization releases it;
//! - organizations are not written: which police department submitted a
//!   referral, which CBO it is assigned to or recorded an outcome, which
//!   health partner reported a case. The policy already says they are not
//!   study data; a CBO stands for the districts routed to it (a geographic
//!   unit outside the classes), the assignment changes on reassignment (a
//!   referral would show two), and a pseudonymized `recorded_by` next to a
//!   clear `assigned_cbo` mapped the `cwo-` pseudonyms back to CBO ids.
//!   Per-organization measures are the aggregates' job.
//!
//! The rest are the study's analysis variables — what the program did, not
//! who the person is: a referral's `status`, `workflow_state`, `resources`
//! and `follow_up_by`, an outcome's `kind` and `resource`, a case's `program`
//! and `status` — and the study pseudonyms that join them.

use std::io::{self, BufWriter, Write};

use super::container::{EntryWriter, ZipStream};
use super::study::{QuasiIdentifier, StudyMode};
use crate::policy::{Decision, FieldAction};

/// The tables an export can contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Referrals,
    Outcomes,
    CaseStatus,
}

impl Table {
    pub const ALL: [Self; 3] = [Self::Referrals, Self::Outcomes, Self::CaseStatus];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referrals => "referrals",
            Self::Outcomes => "outcomes",
            Self::CaseStatus => "case_status",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    pub fn resource(self) -> crate::policy::Resource {
        match self {
            Self::Referrals => crate::policy::Resource::Referral,
            Self::Outcomes => crate::policy::Resource::Outcome,
            Self::CaseStatus => crate::policy::Resource::CaseStatus,
        }
    }
}

/// The file format of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "csv" => Some(Self::Csv),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }
}

/// How a column's values are derived, for the dictionary and for the audit
/// entry's `fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derivation {
    Released,
    Pseudonymized,
    Generalized,
}

/// One column of a table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    /// The catalog field of the table's resource it comes from.
    pub field: &'static str,
    pub kind: &'static str,
    pub meaning: &'static str,
    pub derivation: Derivation,
    /// The generalization applied, in words (filled for the export at hand).
    pub generalization: String,
}

fn col(
    name: &'static str,
    field: &'static str,
    kind: &'static str,
    meaning: &'static str,
    derivation: Derivation,
) -> Column {
    Column {
        name,
        field,
        kind,
        meaning,
        derivation,
        generalization: String::new(),
    }
}

/// Whether the decision lets `field` out at all (absent means withheld).
pub fn admits(decision: &Decision, field: &str) -> bool {
    decision
        .fields
        .get(field)
        .is_some_and(|action| *action != FieldAction::Withhold)
}

/// The columns every table may have, before the policy chooses: those the
/// mode allows, and of the quasi-identifier columns those the study declares.
#[expect(
    clippy::too_many_lines,
    reason = "one declarative list of every column; splitting it would scatter the dictionary"
)]
pub fn candidate_columns(
    table: Table,
    mode: StudyMode,
    declared: &[QuasiIdentifier],
) -> Vec<Column> {
    use Derivation::{Generalized as G, Pseudonymized as P, Released as R};
    let lds = mode == StudyMode::LimitedDataSet;
    match table {
        Table::Referrals => {
            let mut c = vec![
                col(
                    "referral",
                    "id",
                    "string",
                    "Study pseudonym of the referral; joins outcomes.referral",
                    P,
                ),
                col(
                    "subject",
                    "subject_pseudonym",
                    "string",
                    "Study pseudonym of the person (cws-...): the same person has the same value in every table and every export of this study, and a different one in every other study",
                    P,
                ),
            ];
            let quasi_identifiers = [
                (
                    QuasiIdentifier::ContactDate,
                    col(
                        if lds { "contact_date" } else { "contact_year" },
                        "contact_at",
                        if lds { "date" } else { "integer" },
                        "When the officer made contact",
                        G,
                    ),
                ),
                (
                    QuasiIdentifier::Age,
                    col(
                        "age",
                        "subject.dob",
                        "string",
                        "Age in years on the study's reference date (the manifest's plan.reference_date), not at contact: the same for a person in every row of every export of the study",
                        G,
                    ),
                ),
                (
                    QuasiIdentifier::Sex,
                    col(
                        "sex",
                        "subject.sex",
                        "string",
                        "Administrative sex as recorded: F, M, X (other), U (unknown); empty if not given",
                        G,
                    ),
                ),
                (
                    QuasiIdentifier::Zip,
                    col(
                        "zip",
                        "subject.address.zip",
                        "string",
                        "ZIP code of the home address",
                        G,
                    ),
                ),
                (
                    QuasiIdentifier::State,
                    col(
                        "state",
                        "subject.address.state",
                        "string",
                        "State of the home address",
                        G,
                    ),
                ),
                (
                    QuasiIdentifier::City,
                    col(
                        "city",
                        "subject.address.city",
                        "string",
                        "City of the home address",
                        G,
                    ),
                ),
                (
                    QuasiIdentifier::District,
                    col(
                        "district",
                        "district",
                        "string",
                        "Police district or beat of the contact",
                        G,
                    ),
                ),
            ];
            c.extend(
                quasi_identifiers
                    .into_iter()
                    .filter(|(qi, _)| declared.contains(qi))
                    .map(|(_, column)| column),
            );
            c.extend([
                col("status", "status", "string", "Follow-up status: new, contact_attempted, contacted, engaged, service_connected, declined, unable_to_locate, closed", R),
                col("workflow_state", "workflow_state", "string", "open or closed", R),
                col("resources", "resources", "string", "Resource categories requested, separated by ';'", R),
                col("follow_up_by", "follow_up_by", "string", "Who was to follow up: cbo or officer; empty if not given", R),
            ]);
            c
        }
        Table::Outcomes => vec![
            col(
                "outcome",
                "id",
                "string",
                "Study pseudonym of the outcome",
                P,
            ),
            col(
                "referral",
                "referral_id",
                "string",
                "Study pseudonym of its referral (referrals.referral)",
                P,
            ),
            col(
                "subject",
                "id",
                "string",
                "Study pseudonym of the person (as in referrals.subject)",
                P,
            ),
            col(
                "kind",
                "kind",
                "string",
                "contact_attempted, contacted, engaged, service_connected, declined, unable_to_locate, closed",
                R,
            ),
            col(
                "resource",
                "resource",
                "string",
                "For service_connected: the resource category",
                R,
            ),
            col(
                "days_from_contact",
                "occurred_at",
                "integer",
                "Whole days from its referral's contact to the outcome (derived interval; the outcome's date itself is not released)",
                G,
            ),
        ],
        Table::CaseStatus => vec![
            col(
                "case_report",
                "id",
                "string",
                "Study pseudonym of the case status report",
                P,
            ),
            col(
                "subject",
                "id",
                "string",
                "Study pseudonym of the person (as in referrals.subject)",
                P,
            ),
            col(
                "program",
                "program",
                "string",
                "Health program (substance_use only in a study configured for 42 CFR Part 2 research; elsewhere such records are not exported at all)",
                R,
            ),
            col("status", "status", "string", "Case status", R),
            col(
                "days_from_first_referral",
                "effective_at",
                "integer",
                "Whole days from the contact of the person's first recorded referral (the first the gateway received for the person the case was linked to, in this export or not; the same in every export) to the status; negative if before; empty if there is none (derived interval; the status's date itself is not released)",
                G,
            ),
        ],
    }
}

/// A value of a row.
#[derive(Debug)]
pub enum Cell<'a> {
    Text(&'a str),
    Owned(String),
    Int(i64),
    Null,
}

/// One table's file inside the archive.
pub enum Sink<'z, W: Write> {
    Csv(Box<csv::Writer<EntryWriter<'z, W>>>),
    Ndjson {
        out: BufWriter<EntryWriter<'z, W>>,
        names: Vec<&'static str>,
    },
}

impl<'z, W: Write> Sink<'z, W> {
    pub fn open(
        zip: &'z mut ZipStream<W>,
        name: &str,
        format: Format,
        columns: &[Column],
    ) -> io::Result<Self> {
        let entry = zip.entry(name)?;
        Ok(match format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .buffer_capacity(64 * 1024)
                    .from_writer(entry);
                w.write_record(columns.iter().map(|c| c.name))?;
                Self::Csv(Box::new(w))
            }
            Format::Ndjson => Self::Ndjson {
                out: BufWriter::with_capacity(64 * 1024, entry),
                names: columns.iter().map(|c| c.name).collect(),
            },
        })
    }

    pub fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
        match self {
            Self::Csv(w) => {
                for cell in cells {
                    match cell {
                        Cell::Text(t) => w.write_field(t)?,
                        Cell::Owned(t) => w.write_field(t)?,
                        Cell::Int(i) => w.write_field(i.to_string())?,
                        Cell::Null => w.write_field("")?,
                    }
                }
                w.write_record(None::<&[u8]>)?;
            }
            Self::Ndjson { out, names } => {
                out.write_all(b"{")?;
                for (i, (name, cell)) in names.iter().zip(cells).enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    serde_json::to_writer(&mut *out, name)?;
                    out.write_all(b":")?;
                    match cell {
                        Cell::Text(t) => serde_json::to_writer(&mut *out, t)?,
                        Cell::Owned(t) => serde_json::to_writer(&mut *out, t)?,
                        Cell::Int(n) => write!(out, "{n}")?,
                        Cell::Null => out.write_all(b"null")?,
                    }
                }
                out.write_all(b"}\n")?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> io::Result<()> {
        match self {
            Self::Csv(w) => (*w)
                .into_inner()
                .map_err(|e| io::Error::other(e.to_string()))?
                .finish(),
            Self::Ndjson { out, .. } => out
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?
                .finish(),
        }
    }
}

/// `dictionary.csv`: one row per column of every table in the archive.
pub fn write_dictionary<W: Write>(
    zip: &mut ZipStream<W>,
    tables: &[(String, Vec<Column>)],
) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(zip.entry("dictionary.csv")?);
    w.write_record(["file", "column", "type", "meaning", "generalization"])?;
    for (file, columns) in tables {
        for c in columns {
            w.write_record([file.as_str(), c.name, c.kind, c.meaning, &c.generalization])?;
        }
    }
    w.into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?
        .finish()
}
