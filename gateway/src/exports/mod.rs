//! De-identified exports for evaluator studies.
//!
//! `POST /v1/exports` (the study's evaluator, purpose as the study says) is
//! checked in the request — study, data-use agreements, the study's plan,
//! purpose, policy, tables, format, date range with data — and recorded
//! (`exports` row and an `export.request` audit entry, one transaction); then
//! a job builds the file and answers `202` with its id at once. The job
//! ([`build`]):
//!
//! 1. reads, in one read snapshot on a connection of its own
//!    ([`crate::store::export_rows`], which reads ahead on the other core), the
//!    referrals, unsealing each identity only to compute its
//!    quasi-identifiers ([`hierarchy::QiValues`], kept as small codes in one
//!    `Vec` with the person's number);
//! 2. takes the study's plan — the levels every export of the study is
//!    generalized to, fixed by its first export ([`plan`]; a study's first
//!    export makes it from every referral recorded so far) — and counts, under
//!    it, the distinct people of each class of the export's own referrals;
//! 3. streams referrals in classes of at least `k` people, their outcomes and
//!    the case statuses of the people kept, row by row, through the columns
//!    the policy admits and the study declares ([`tables`]), into a ZIP
//!    stream, through age encryption to the evaluator's recipient, into
//!    `exports.dir/ID.zip.age` ([`container`]); memory holds the codes and
//!    class sizes, never the export;
//! 4. signs a manifest (JWS, the gateway's audit-checkpoint key) and, in one
//!    transaction, stores the study's plan if this export made it (with an
//!    `export.plan` audit entry; see [`plan`] for two exports racing), marks
//!    the export ready, lists its subjects in `export_subjects` and appends
//!    one `disclosure` audit entry (resource `export`, record id the export
//!    id, the columns released and how), which the accounting of disclosures
//!    finds for every person in it.
//!
//! A failed job leaves no file, marks the export `failed` and records
//! `export.failed`.
//!
//! # What an evaluator can rely on across exports
//! Exports of one study share its pseudonyms (a person, a referral, an
//! outcome, a case report has one value in every export of the study), so
//! they can be joined — that is what longitudinal evaluation needs — and stay
//! k-anonymous when joined: every referral shows the same generalized values
//! in every export that holds it, so the union of any exports is no more
//! specific than one export over the union of their windows ([`plan`]).
//! Consequences: the levels never change for a study; a later export whose
//! window has fewer people in a class suppresses those referrals rather than
//! coarsening (the manifest's `rows_suppressed`); ages are on the plan's
//! reference date; columns that would identify outside the classes are not
//! written ([`tables`]). Two studies never share a pseudonym.
//!
//! 42 CFR Part 2 case statuses are exported whole in a study configured for
//! Part 2 research, and not at all (uncounted) elsewhere ([`study`]).
//!
//! # Adding a column
//! Add it to [`tables::candidate_columns`] with the catalog field whose
//! decision admits it, and fill it in the table's writer in [`build`]; the
//! dictionary and the audit entry follow. A column that could identify in
//! combination must be a declared quasi-identifier with a hierarchy
//! ([`hierarchy`]), or must not be added.

mod build;
pub mod container;
pub mod hierarchy;
mod job;
pub(crate) mod plan;
#[cfg(test)]
mod race_tests;
mod request;
pub use crate::config::study;
pub mod tables;

pub use self::request::ExportRequest;
use self::request::micros_of;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use self::plan::StudyPlan;
use self::request::{Job, WindowSer};
use self::study::StudyConfig;
use self::tables::{Format, Table};
use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::{self, Event};
use crate::clock::Clock;
use crate::config::{Config, PartnerKind};
use crate::domain::PartnerId;
use crate::domain::ids::ExportId;
use crate::policy::{
    Action, Decision, DecisionInput, Policy, Purpose, RecordFacts, Relationship, Requester,
    StudyFacts,
};
use crate::pseudonym::Pseudonymizer;
use crate::store::export_rows::any_referrals;
use crate::store::exports::{self as repo, ExportRow};
use crate::store::study_plans;
use crate::store::{Store, StoreError};
use crate::vault::Vault;

/// Audit actions.
pub const REQUEST_ACTION: &str = "export.request";
pub const FAILED_ACTION: &str = "export.failed";
/// A study's plan was fixed (once per study; see [`plan`]).
pub const PLAN_ACTION: &str = "export.plan";
/// The export's disclosure entry (the same action record-level reads use).
pub const DISCLOSURE_ACTION: &str = crate::reads::DISCLOSURE_ACTION;
/// The audit `resource` of export entries.
pub const RESOURCE: &str = "export";

const DAY_MICROS: i64 = 86_400_000_000;
/// Why an export was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Bad input: each field and what is wrong with it.
    #[error("invalid request")]
    Invalid(Vec<(String, String)>),
    /// Not this partner's to ask (another evaluator's study, an expired
    /// agreement, another purpose), naming the field.
    #[error("forbidden: {detail}")]
    Forbidden { field: &'static str, detail: String },
    /// The policy refuses the export.
    #[error("refused by the policy")]
    Refused { reason: String },
    /// The study's de-identification settings changed since its plan.
    #[error("the study's plan no longer fits it: {detail}")]
    PlanChanged { detail: String },
    /// The date range holds no referral.
    #[error("no data in the range")]
    NoData,
    /// No such export for this partner.
    #[error("not found")]
    NotFound,
    /// Still being built, or failed.
    #[error("export is {state}")]
    NotReady { state: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("export build failed: {0}")]
    Build(String),
}

impl From<sqlx::Error> for ExportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

/// What `POST` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Started {
    #[schema(value_type = String)]
    pub id: ExportId,
    /// `running` until the file and manifest are ready.
    pub state: String,
    pub study: String,
}

/// The signed manifest's claims.
#[derive(Debug, Serialize, Deserialize, Clone, utoipa::ToSchema)]
pub struct Manifest {
    pub export: String,
    pub study: String,
    pub evaluator: String,
    pub mode: String,
    pub purpose: String,
    pub dua_reference: String,
    pub dua_expires: String,
    /// Present (true) only for a study configured for 42 CFR Part 2 research,
    /// with its Part 2 agreement.
    #[serde(default, skip_serializing_if = "is_false")]
    pub part2_research: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part2_dua_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part2_dua_expires: Option<String>,
    pub k: u32,
    pub quasi_identifiers: Vec<String>,
    /// The generalization level per quasi-identifier: the study's plan, the
    /// same in every export of the study.
    pub generalization: BTreeMap<String, u8>,
    /// Which export fixed the plan, when, and the day ages are computed on.
    pub plan: PlanInfo,
    pub from: String,
    pub to: String,
    pub format: String,
    /// Files in the archive.
    pub files: Vec<String>,
    /// Rows written per table.
    pub rows: BTreeMap<String, u64>,
    /// Referrals whose quasi-identifiers were coarsened beyond the mode's baseline.
    pub rows_generalized: u64,
    /// Referrals (with their outcomes) left out because their class holds
    /// fewer than k people in this export.
    pub rows_suppressed: u64,
    pub outcomes_suppressed: u64,
    pub subjects: u64,
    /// Texts that must go with the data: the 42 CFR 2.32 redisclosure
    /// statement in a Part 2 research study's exports of case statuses.
    pub notices: Vec<String>,
    pub policy_version: String,
    /// BLAKE3 (hex) of the decrypted archive and of the `.age` file.
    pub plaintext_blake3: String,
    pub ciphertext_blake3: String,
    pub created_at: String,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// The manifest's account of the study's plan.
#[derive(Debug, Serialize, Deserialize, Clone, utoipa::ToSchema)]
pub struct PlanInfo {
    /// The export that fixed the plan (the study's first to finish).
    pub planned_by: String,
    pub planned_at: String,
    /// Ages are ages on this day (YYYY-MM-DD).
    pub reference_date: String,
}

impl PlanInfo {
    fn of(plan: &StudyPlan) -> Self {
        Self {
            planned_by: plan.planned_by.clone(),
            planned_at: chrono::DateTime::from_timestamp_micros(plan.planned_at)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            reference_date: plan.reference_date.to_string(),
        }
    }
}

/// The export service, shared by all requests.
pub struct Exports {
    pub config: Arc<Config>,
    pub store: Store,
    pub vault: Vault,
    pub policy: Arc<Policy>,
    pub pseudonyms: Arc<Pseudonymizer>,
    pub signer: Arc<CheckpointSigner>,
    pub clock: Arc<dyn Clock>,
    /// Names export jobs.
    pub ids: Arc<crate::randomness::RecordIds>,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports").finish_non_exhaustive()
    }
}

/// What an export needs to know about who asks.
#[derive(Debug, Clone, Copy)]
pub struct Requesting<'a> {
    pub partner: &'a PartnerId,
    pub kind: PartnerKind,
    pub purpose: &'a Purpose,
}

impl Exports {
    fn study(&self, id: &str) -> Option<&StudyConfig> {
        self.config.studies.get(id)
    }

    fn dir(&self) -> PathBuf {
        self.config.exports.dir.clone()
    }

    /// The decision for exporting `table`'s records.
    fn decide(
        &self,
        who: &Requesting<'_>,
        table: Table,
        part2: bool,
        study: Option<StudyFacts>,
    ) -> Arc<Decision> {
        self.policy.decide(&DecisionInput {
            requester: Requester {
                id: who.partner.to_string(),
                kind: who.kind,
            },
            purpose: who.purpose.clone(),
            action: Action::Export,
            resource: table.resource(),
            relationship: Relationship::None,
            record: RecordFacts {
                part2,
                holder: None,
            },
            consent: None,
            study,
        })
    }

    /// The study's stored plan, if it has one and still fits its settings.
    async fn stored_plan(
        &self,
        study_id: &str,
        study: &StudyConfig,
    ) -> Result<Option<StudyPlan>, ExportError> {
        let mut tx = self.store.begin_read().await?;
        let row = study_plans::get(&mut tx, study_id).await?;
        tx.commit().await?;
        row.map(|row| StudyPlan::from_row(&row, study))
            .transpose()
            .map_err(|detail| ExportError::PlanChanged { detail })
    }

    /// Checks and records the request, then starts the job.
    #[expect(
        clippy::too_many_lines,
        reason = "the checks of one request in the order a caller reads the errors"
    )]
    pub async fn start(
        self: &Arc<Self>,
        who: Requesting<'_>,
        body: &[u8],
    ) -> Result<Started, ExportError> {
        let request: ExportRequest = {
            let de = &mut serde_json::Deserializer::from_slice(body);
            // An object only, like every request body (`input::Object`).
            serde_path_to_error::deserialize(de)
                .map(|crate::exchange::input::Object(request)| request)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let field = if path == "." { "body".to_owned() } else { path };
                    let inner = e.into_inner();
                    let problem = if inner.is_syntax() || inner.is_eof() {
                        "is not valid JSON".to_owned()
                    } else {
                        inner.to_string()
                    };
                    ExportError::Invalid(vec![(field, problem)])
                })?
        };
        let mut problems = Vec::new();
        let today = self.clock.now().date_naive();
        let (from, to) = self.window(&request, today, &mut problems);
        let mut tables = Vec::new();
        for (i, name) in request
            .tables
            .clone()
            .unwrap_or_else(|| Table::ALL.iter().map(|t| t.as_str().to_owned()).collect())
            .iter()
            .enumerate()
        {
            match Table::parse(name) {
                Some(t) if tables.contains(&t) => {
                    problems.push((format!("tables[{i}]"), "is listed twice".to_owned()));
                }
                Some(t) => tables.push(t),
                None => problems.push((
                    format!("tables[{i}]"),
                    "is not a table: referrals, outcomes or case_status".to_owned(),
                )),
            }
        }
        if request.tables.as_ref().is_some_and(Vec::is_empty) {
            problems.push((
                "tables".to_owned(),
                "must name at least one table".to_owned(),
            ));
        }
        let format = match request.format.as_deref() {
            None => Some(Format::Csv),
            Some(f) => Format::parse(f).or_else(|| {
                problems.push(("format".to_owned(), "must be csv or ndjson".to_owned()));
                None
            }),
        };
        let Some(study) = self.study(&request.study) else {
            problems.insert(
                0,
                ("study".to_owned(), "names no registered study".to_owned()),
            );
            return Err(ExportError::Invalid(problems));
        };
        if !problems.is_empty() {
            return Err(ExportError::Invalid(problems));
        }
        let (Some(from), Some(to), Some(format)) = (from, to, format) else {
            return Err(ExportError::Invalid(problems));
        };
        if who.kind != PartnerKind::Evaluator || study.evaluator != who.partner {
            return Err(ExportError::Forbidden {
                field: "study",
                detail: "the study belongs to another evaluator".to_owned(),
            });
        }
        if study.dua_expires < today {
            return Err(ExportError::Forbidden {
                field: "study",
                detail: format!(
                    "the study's data-use agreement {} expired on {}",
                    study.dua_reference, study.dua_expires
                ),
            });
        }
        if let (true, Some(reference), Some(expires)) = (
            study.part2_research,
            &study.part2_dua_reference,
            study.part2_dua_expires,
        ) && expires < today
        {
            return Err(ExportError::Forbidden {
                field: "study",
                detail: format!(
                    "the study's 42 CFR Part 2 research agreement {reference} expired on {expires}"
                ),
            });
        }
        if who.purpose.as_str() != study.purpose {
            return Err(ExportError::Forbidden {
                field: "X-Purpose-Of-Use",
                detail: format!("the study's exports are for purpose {}", study.purpose),
            });
        }
        self.stored_plan(&request.study, study).await?;
        let facts = build::study_facts(study, today);
        for table in &tables {
            let decision = self.decide(&who, *table, false, Some(facts));
            if !decision.allows_records() {
                return Err(ExportError::Refused {
                    reason: decision.reason.clone(),
                });
            }
        }
        let now = self.clock.now();
        let job = Job {
            id: self.ids.next(now),
            study_id: request.study.clone(),
            evaluator: who.partner.clone(),
            purpose: who.purpose.as_str().to_owned(),
            from,
            to,
            tables,
            format,
            window: WindowSer {
                from: micros_of(from),
                to: micros_of(to) + DAY_MICROS,
                cutoff: now.timestamp_micros(),
            },
        };
        let request_json = serde_json::json!({
            "from": from.to_string(), "to": to.to_string(),
            "tables": job.tables, "format": job.format,
        });
        let mut tx = self.store.begin().await?;
        if !any_referrals(&mut tx, job.window()).await? {
            return Err(ExportError::NoData);
        }
        repo::insert(
            &mut tx,
            &ExportRow {
                id: job.id.clone(),
                study_id: job.study_id.clone(),
                requested_by: job.evaluator.to_string(),
                purpose: job.purpose.clone(),
                request: request_json.to_string(),
                state: "running".to_owned(),
                requested_at: now.timestamp_micros(),
                finished_at: None,
                file_name: None,
                manifest_jws: None,
            },
        )
        .await?;
        let event = Event::new(who.partner, REQUEST_ACTION)
            .with_purpose(who.purpose.as_str())
            .with_record(RESOURCE, &job.id)
            .with_detail(serde_json::json!({"study": job.study_id, "request": request_json}));
        audit::append(&mut tx, &[event], self.clock.as_ref()).await?;
        tx.commit().await?;

        let started = Started {
            id: ExportId::stored(job.id.clone()),
            state: "running".to_owned(),
            study: job.study_id.clone(),
        };
        let this = Arc::clone(self);
        let handle = tokio::runtime::Handle::current();
        // The build reads a database stream and writes files: it runs on a
        // blocking thread driving its own futures, so a long export never
        // occupies a runtime worker.
        tokio::task::spawn_blocking(move || handle.block_on(this.run(job)));
        Ok(started)
    }

    /// The export row, if `partner` asked for it.
    pub async fn get(&self, partner: &PartnerId, id: &ExportId) -> Result<ExportRow, ExportError> {
        let mut tx = self.store.begin_read().await?;
        let row = repo::get(&mut tx, id).await?;
        tx.commit().await?;
        match row {
            Some(row) if row.requested_by == partner => Ok(row),
            _ => Err(ExportError::NotFound),
        }
    }

    /// The ready export's file.
    pub async fn file(&self, partner: &PartnerId, id: &ExportId) -> Result<PathBuf, ExportError> {
        let row = self.get(partner, id).await?;
        match (row.state.as_str(), row.file_name) {
            ("ready", Some(name)) => Ok(self.dir().join(name)),
            (state, _) => Err(ExportError::NotReady {
                state: state.to_owned(),
            }),
        }
    }

    /// The ready export's manifest JWS.
    pub async fn manifest(
        &self,
        partner: &PartnerId,
        id: &ExportId,
    ) -> Result<String, ExportError> {
        let row = self.get(partner, id).await?;
        match (row.state.as_str(), row.manifest_jws) {
            ("ready", Some(jws)) => Ok(jws),
            (state, _) => Err(ExportError::NotReady {
                state: state.to_owned(),
            }),
        }
    }
}
