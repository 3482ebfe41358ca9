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
pub(crate) mod plan;
#[cfg(test)]
mod race_tests;
pub use crate::config::study;
pub mod tables;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{NaiveDate, SecondsFormat};
use serde::{Deserialize, Serialize};

use self::build::Built;
use self::plan::StudyPlan;
use self::study::StudyConfig;
use self::tables::{Format, Table};
use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::{self, Event};
use crate::clock::Clock;
use crate::config::{Config, PartnerKind};
use crate::policy::{
    Action, Decision, DecisionInput, Policy, Purpose, RecordFacts, Relationship, Requester,
    StudyFacts,
};
use crate::pseudonym::Pseudonymizer;
use crate::store::export_rows::{Window, any_referrals};
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
/// How far ahead of today an export's `to` may be (see [`Exports::window`]).
const MAX_TO_AHEAD_DAYS: u64 = 366;

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

/// The body of `POST /v1/exports`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The study id (`[studies.ID]` in the configuration).
    #[schema(pattern = r"^[a-z0-9-]{1,64}$", example = "demo-study")]
    pub study: String,
    /// First contact date included (YYYY-MM-DD, UTC), not before the program
    /// start (`exchange.program_start`); default: the program start.
    #[serde(default)]
    pub from: Option<String>,
    /// Last contact date included (YYYY-MM-DD, UTC), at most a year from
    /// today; default: today.
    #[serde(default)]
    pub to: Option<String>,
    /// Any of `referrals`, `outcomes`, `case_status`, each once; default all
    /// three.
    #[serde(default)]
    #[schema(value_type = Option<Vec<tables::Table>>, min_items = 1, max_items = 3)]
    pub tables: Option<Vec<String>>,
    /// `csv` (default) or `ndjson`.
    #[serde(default)]
    #[schema(value_type = Option<tables::Format>)]
    pub format: Option<String>,
}

/// A validated request.
#[derive(Debug, Clone, Serialize)]
struct Job {
    id: String,
    study_id: String,
    evaluator: String,
    purpose: String,
    from: NaiveDate,
    to: NaiveDate,
    tables: Vec<Table>,
    format: Format,
    #[serde(skip)]
    window: WindowSer,
}

#[derive(Debug, Clone, Copy, Default)]
struct WindowSer {
    from: i64,
    to: i64,
    cutoff: i64,
}

impl Job {
    fn window(&self) -> Window {
        Window {
            from: self.window.from,
            to: self.window.to,
            cutoff: self.window.cutoff,
        }
    }
}

/// What `POST` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Started {
    pub id: String,
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
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports").finish_non_exhaustive()
    }
}

/// What an export needs to know about who asks.
#[derive(Debug, Clone, Copy)]
pub struct Requesting<'a> {
    pub partner: &'a str,
    pub kind: PartnerKind,
    pub purpose: &'a Purpose,
}

fn parse_date(field: &str, text: &str, problems: &mut Vec<(String, String)>) -> Option<NaiveDate> {
    let parsed = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
    if parsed.is_none() {
        problems.push((field.to_owned(), "must be a date, YYYY-MM-DD".to_owned()));
    }
    parsed
}

fn micros_of(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map_or(0, |d| d.and_utc().timestamp_micros())
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
                id: who.partner.to_owned(),
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

    /// The request's contact dates, from..=to: from the program start
    /// (`exchange.program_start`, also the default `from`) to a year from
    /// today (UTC; the default `to` is today). Nothing is recorded before the
    /// program start, and a window reaching further either way is a typing
    /// error (`0202` for `2026`, `20266`). A `to` ahead of today is allowed
    /// because "this year" and "this fiscal year" are natural windows; the
    /// export holds what was recorded when it was asked for, whatever `to` says.
    fn window(
        &self,
        request: &ExportRequest,
        today: NaiveDate,
        problems: &mut Vec<(String, String)>,
    ) -> (Option<NaiveDate>, Option<NaiveDate>) {
        let earliest = self.config.exchange.program_start;
        let latest = today
            .checked_add_days(chrono::Days::new(MAX_TO_AHEAD_DAYS))
            .unwrap_or(today);
        let mut date = |field: &str, text: Option<&str>, default: NaiveDate| {
            let Some(text) = text else {
                return Some(default);
            };
            let date = parse_date(field, text, problems)?;
            if date < earliest {
                problems.push((
                    field.to_owned(),
                    format!(
                        "is before the program began: the earliest date is {earliest} \
                         (exchange.program_start)"
                    ),
                ));
                return None;
            }
            if date > latest {
                problems.push((
                    field.to_owned(),
                    format!("is more than a year ahead: the latest date is {latest}"),
                ));
                return None;
            }
            Some(date)
        };
        let from = date("from", request.from.as_deref(), earliest);
        let to = date("to", request.to.as_deref(), today);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            problems.push(("to".to_owned(), "must not be before from".to_owned()));
        }
        (from, to)
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
            id: crate::domain::ids::stamped_id(now),
            study_id: request.study.clone(),
            evaluator: who.partner.to_owned(),
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
                requested_by: job.evaluator.clone(),
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
            id: job.id.clone(),
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

    /// Runs the job to its end, recording either outcome.
    async fn run(self: Arc<Self>, job: Job) {
        let dir = self.dir();
        let partial = dir.join(format!("{}.zip.age.partial", job.id));
        // Twice at most: a build that made the study's plan but lost the race
        // to store it is built again with the plan that won.
        let mut outcome = self.attempt(&job, &partial).await;
        if matches!(outcome, Ok(Recorded::PlanSuperseded)) {
            let _ = std::fs::remove_file(&partial);
            outcome = self.attempt(&job, &partial).await;
        }
        let failure = match outcome {
            Ok(Recorded::Ready) => return,
            Ok(Recorded::PlanSuperseded) => {
                ExportError::Build("the study's plan changed twice during one export".into())
            }
            Err(e) => e,
        };
        tracing::error!(export = %job.id, error = %failure, "export failed");
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(dir.join(format!("{}.zip.age", job.id)));
        if let Err(e) = self.record_failed(&job).await {
            tracing::error!(export = %job.id, error = %e, "recording the failed export failed");
        }
    }

    /// One build with the study's plan as stored now (or a new one), and its
    /// recording.
    async fn attempt(&self, job: &Job, partial: &std::path::Path) -> Result<Recorded, ExportError> {
        let study = self
            .study(&job.study_id)
            .ok_or_else(|| ExportError::Build("the study is no longer configured".into()))?;
        let stored = self.stored_plan(&job.study_id, study).await?;
        let built = self.build(job, partial, stored).await?;
        self.record_ready(job, built).await
    }

    async fn record_failed(&self, job: &Job) -> Result<(), ExportError> {
        let mut tx = self.store.begin().await?;
        repo::finish(
            &mut tx,
            &job.id,
            "failed",
            self.clock.now().timestamp_micros(),
            None,
            None,
        )
        .await?;
        let event = Event::new(audit::GATEWAY_ACTOR, FAILED_ACTION).with_record(RESOURCE, &job.id);
        audit::append(&mut tx, &[event], self.clock.as_ref()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Publishes a built export: in one transaction, the study's plan if this
    /// build made it (and no other export stored one first), the export's
    /// state and signed manifest, its subjects and its audit entries.
    async fn record_ready(&self, job: &Job, mut built: Built) -> Result<Recorded, ExportError> {
        let study = self
            .study(&job.study_id)
            .ok_or_else(|| ExportError::Build("the study is no longer configured".into()))?;
        let mut tx = self.store.begin().await?;
        let mut events = Vec::new();
        if built.plan.planned_by == job.id {
            let row = built.plan.to_row(&job.study_id, study);
            if study_plans::insert_if_absent(&mut tx, &row).await? {
                events.push(
                    Event::new(audit::GATEWAY_ACTOR, PLAN_ACTION)
                        .with_purpose(&job.purpose)
                        .with_record("study", &job.study_id)
                        .with_detail(serde_json::json!({
                            "export": job.id,
                            "mode": row.mode,
                            "quasi_identifiers": row.quasi_identifiers,
                            "k": row.k,
                            "levels": built.plan.levels(study),
                            "reference_date": row.reference_date,
                        })),
                );
            } else {
                // Another export stored the study's plan first. Publishing
                // this one with other levels would break the guarantee; with
                // the same levels and reference date it is the same file.
                let stored = study_plans::get(&mut tx, &job.study_id)
                    .await?
                    .map(|row| StudyPlan::from_row(&row, study))
                    .transpose()
                    .map_err(|detail| ExportError::PlanChanged { detail })?;
                match stored {
                    Some(stored) if stored.same_generalization(&built.plan) => {
                        built.manifest.plan = PlanInfo::of(&stored);
                    }
                    _ => return Ok(Recorded::PlanSuperseded),
                }
            }
        }
        let file_name = format!("{}.zip.age", job.id);
        let final_path = self.dir().join(&file_name);
        let jws = self
            .signer
            .sign_claims(&built.manifest)
            .map_err(|e| ExportError::Build(e.to_string()))?;
        std::fs::rename(&built.path, &final_path).map_err(|e| ExportError::Build(e.to_string()))?;
        let mut subjects = built.subjects;
        subjects.sort_unstable();
        repo::finish(
            &mut tx,
            &job.id,
            "ready",
            self.clock.now().timestamp_micros(),
            Some(&file_name),
            Some(&jws),
        )
        .await?;
        repo::insert_subjects(&mut tx, &job.id, &subjects).await?;
        events.push(
            Event::new(&job.evaluator, DISCLOSURE_ACTION)
                .with_purpose(&job.purpose)
                .with_record(RESOURCE, &job.id)
                .with_fields(built.fields)
                .with_decision(&built.manifest.policy_version, &built.reason)
                .with_detail(serde_json::json!({
                    "study": job.study_id,
                    "subjects": subjects.len(),
                    "rows": built.manifest.rows,
                    "ciphertext_blake3": built.manifest.ciphertext_blake3,
                })),
        );
        audit::append(&mut tx, &events, self.clock.as_ref()).await?;
        tx.commit().await?;
        tracing::info!(export = %job.id, subjects = subjects.len(), "export ready");
        Ok(Recorded::Ready)
    }

    /// The export row, if `partner` asked for it.
    pub async fn get(&self, partner: &str, id: &str) -> Result<ExportRow, ExportError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(ExportError::NotFound);
        }
        let mut tx = self.store.begin_read().await?;
        let row = repo::get(&mut tx, id).await?;
        tx.commit().await?;
        match row {
            Some(row) if row.requested_by == partner => Ok(row),
            _ => Err(ExportError::NotFound),
        }
    }

    /// The ready export's file.
    pub async fn file(&self, partner: &str, id: &str) -> Result<PathBuf, ExportError> {
        let row = self.get(partner, id).await?;
        match (row.state.as_str(), row.file_name) {
            ("ready", Some(name)) => Ok(self.dir().join(name)),
            (state, _) => Err(ExportError::NotReady {
                state: state.to_owned(),
            }),
        }
    }

    /// The ready export's manifest JWS.
    pub async fn manifest(&self, partner: &str, id: &str) -> Result<String, ExportError> {
        let row = self.get(partner, id).await?;
        match (row.state.as_str(), row.manifest_jws) {
            ("ready", Some(jws)) => Ok(jws),
            (state, _) => Err(ExportError::NotReady {
                state: state.to_owned(),
            }),
        }
    }
}

/// How [`Exports::record_ready`] ended.
enum Recorded {
    Ready,
    /// The build made a plan for the study, but another export's was stored
    /// first, with other levels: build again with that one.
    PlanSuperseded,
}
