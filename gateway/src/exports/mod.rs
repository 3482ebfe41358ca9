//! De-identified exports for evaluator studies (issue 8).
//!
//! `POST /v1/exports` (the study's evaluator, purpose as the study says) is
//! checked in the request — study, data-use agreement, purpose, policy,
//! tables, format, date range with data — and recorded (`exports` row and an
//! `export.request` audit entry, one transaction); then a job builds the file
//! and answers `202` with its id at once. The job:
//!
//! 1. reads, in one read snapshot on a connection of its own
//!    ([`crate::store::export_rows`], which reads ahead on the other core), the
//!    referrals whose contact falls in the range, unsealing each identity only
//!    to compute its quasi-identifiers ([`hierarchy::QiValues`], kept as small
//!    codes in one `Vec`);
//! 2. picks the generalization that makes every equivalence class over the
//!    study's quasi-identifiers at least `k` rows ([`hierarchy::plan`]);
//! 3. streams referrals, their outcomes and the case statuses of the people
//!    kept, row by row, through the columns the policy admits
//!    ([`tables`]), into a ZIP stream, through age encryption to the
//!    evaluator's recipient, into `exports.dir/ID.zip.age`
//!    ([`container`]); memory holds the codes and class counts, never the
//!    export;
//! 4. signs a manifest (JWS, the gateway's audit-checkpoint key) and, in one
//!    transaction, marks the export ready, lists its subjects in
//!    `export_subjects` and appends one `disclosure` audit entry (resource
//!    `export`, record id the export id, the columns released and how), which
//!    the accounting of disclosures finds for every person in it.
//!
//! A failed job leaves no file, marks the export `failed` and records
//! `export.failed`.
//!
//! # Adding a column
//! Add it to [`tables::candidate_columns`] with the catalog field whose
//! decision admits it, and fill it in the table's writer below; the
//! dictionary and the audit entry follow.

pub mod container;
pub mod hierarchy;
pub mod study;
pub mod tables;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde::{Deserialize, Serialize};

use self::container::{Hashing, ZipStream};
use self::hierarchy::{ClassCounts, Interner, QiValues};
use self::study::{QuasiIdentifier, StudyConfig, StudyMode};
use self::tables::{Cell, Column, Derivation, Format, Sink, Table};
use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::{self, Event, Released};
use crate::clock::Clock;
use crate::config::{Config, PartnerKind};
use crate::normalize::{
    Sex, normalize_city, normalize_dob, normalize_sex, normalize_state, normalize_zip,
};
use crate::policy::{
    Action, Decision, DecisionInput, Policy, Purpose, RecordFacts, Relationship, Requester,
};
use crate::pseudonym::Pseudonymizer;
use crate::store::export_rows::{
    ExportCase, ExportOutcome, ExportReader, ExportReferral, ReferralIdentity,
};
use crate::store::exports::{self as repo, ExportRow, Window};
use crate::store::{Store, StoreError};
use crate::vault::Vault;

/// Audit actions.
pub const REQUEST_ACTION: &str = "export.request";
pub const FAILED_ACTION: &str = "export.failed";
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
    pub study: String,
    /// First contact date included (YYYY-MM-DD, UTC); default: everything.
    #[serde(default)]
    pub from: Option<String>,
    /// Last contact date included (YYYY-MM-DD, UTC); default: today.
    #[serde(default)]
    pub to: Option<String>,
    /// Any of `referrals`, `outcomes`, `case_status`; default all three.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// `csv` (default) or `ndjson`.
    #[serde(default)]
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
    pub k: u32,
    pub quasi_identifiers: Vec<String>,
    /// The generalization level chosen per quasi-identifier.
    pub generalization: BTreeMap<String, u8>,
    pub from: String,
    pub to: String,
    pub format: String,
    /// Files in the archive.
    pub files: Vec<String>,
    /// Rows written per table.
    pub rows: BTreeMap<String, u64>,
    /// Referrals whose quasi-identifiers were coarsened beyond the mode's baseline.
    pub rows_generalized: u64,
    /// Referrals (with their outcomes) left out to reach k.
    pub rows_suppressed: u64,
    pub outcomes_suppressed: u64,
    pub subjects: u64,
    pub policy_version: String,
    /// BLAKE3 (hex) of the decrypted archive and of the `.age` file.
    pub plaintext_blake3: String,
    pub ciphertext_blake3: String,
    pub created_at: String,
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
    fn decide(&self, who: &Requesting<'_>, table: Table, part2: bool) -> Arc<Decision> {
        self.policy.decide(&DecisionInput {
            requester: Requester {
                id: who.partner.to_owned(),
                kind: who.kind,
            },
            purpose: who.purpose.clone(),
            action: Action::Export,
            resource: table.resource(),
            relationship: Relationship::None,
            record: RecordFacts { part2 },
            consent: None,
            study: None,
        })
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
            serde_path_to_error::deserialize(de).map_err(|e| {
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
        let from = request
            .from
            .as_deref()
            .map_or(NaiveDate::from_ymd_opt(1970, 1, 1), |t| {
                parse_date("from", t, &mut problems)
            });
        let to = request
            .to
            .as_deref()
            .map_or(Some(today), |t| parse_date("to", t, &mut problems));
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            problems.push(("to".to_owned(), "must not be before from".to_owned()));
        }
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
        if who.purpose.as_str() != study.purpose {
            return Err(ExportError::Forbidden {
                field: "X-Purpose-Of-Use",
                detail: format!("the study's exports are for purpose {}", study.purpose),
            });
        }
        for table in &tables {
            let decision = self.decide(&who, *table, false);
            if !decision.allows_records() {
                return Err(ExportError::Refused {
                    reason: decision.reason.clone(),
                });
            }
        }
        let now = self.clock.now();
        let job = Job {
            id: uuid::Uuid::now_v7().to_string(),
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
        if !repo::any_referrals(&mut tx, job.window()).await? {
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
        let outcome = self.build(&job, &partial).await;
        let finished = match outcome {
            Ok(built) => self.record_ready(&job, built).await,
            Err(e) => Err(e),
        };
        if let Err(e) = finished {
            tracing::error!(export = %job.id, error = %e, "export failed");
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(dir.join(format!("{}.zip.age", job.id)));
            if let Err(e) = self.record_failed(&job).await {
                tracing::error!(export = %job.id, error = %e, "recording the failed export failed");
            }
        }
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

    async fn record_ready(&self, job: &Job, built: Built) -> Result<(), ExportError> {
        let file_name = format!("{}.zip.age", job.id);
        let final_path = self.dir().join(&file_name);
        std::fs::rename(&built.path, &final_path).map_err(|e| ExportError::Build(e.to_string()))?;
        let jws = self
            .signer
            .sign_claims(&built.manifest)
            .map_err(|e| ExportError::Build(e.to_string()))?;
        let mut subjects = built.subjects;
        subjects.sort_unstable();
        let mut tx = self.store.begin().await?;
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
        let event = Event::new(&job.evaluator, DISCLOSURE_ACTION)
            .with_purpose(&job.purpose)
            .with_record(RESOURCE, &job.id)
            .with_fields(built.fields)
            .with_decision(&built.manifest.policy_version, &built.reason)
            .with_detail(serde_json::json!({
                "study": job.study_id,
                "subjects": subjects.len(),
                "rows": built.manifest.rows,
                "ciphertext_blake3": built.manifest.ciphertext_blake3,
            }));
        audit::append(&mut tx, &[event], self.clock.as_ref()).await?;
        tx.commit().await?;
        tracing::info!(export = %job.id, subjects = subjects.len(), "export ready");
        Ok(())
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

/// What a finished build hands to [`Exports::record_ready`].
struct Built {
    path: PathBuf,
    manifest: Manifest,
    subjects: Vec<String>,
    fields: Vec<(String, Released)>,
    reason: String,
}

fn io_err(e: impl std::fmt::Display) -> ExportError {
    ExportError::Build(e.to_string())
}

/// First-pass state: the referrals' quasi-identifiers.
struct FirstPass {
    qis: Vec<(u64, QiValues)>,
    counts: ClassCounts,
    states: Interner,
    cities: Interner,
    districts: Interner,
}

fn id_check(id: &str) -> u64 {
    let h = blake3::hash(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// A 16-byte key for a subject id in the in-memory maps.
fn subject_key(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(id.as_bytes()).as_bytes()[..16]);
    out
}

type Plain = Hashing<age::stream::StreamWriter<Hashing<BufWriter<std::fs::File>>>>;

impl Exports {
    async fn first_pass(
        &self,
        reader: &ExportReader,
        study: &StudyConfig,
    ) -> Result<FirstPass, ExportError> {
        let mut pass = FirstPass {
            qis: Vec::new(),
            counts: ClassCounts::default(),
            states: Interner::default(),
            cities: Interner::default(),
            districts: Interner::default(),
        };
        let today = self.clock.now().date_naive();
        let mut rows = reader.rows::<ReferralIdentity>();
        while let Some(row) = rows.next().await? {
            let identity =
                crate::subjects::unseal_identity(&self.vault, &row.identity_id, &row.sealed)
                    .await
                    .map_err(io_err)?;
            let contact = DateTime::from_timestamp_micros(row.contact_at)
                .unwrap_or_default()
                .date_naive();
            let dob = identity
                .dob
                .as_deref()
                .and_then(|d| normalize_dob(d, today).ok());
            let zip = identity
                .zip
                .as_deref()
                .and_then(|z| normalize_zip(z).ok())
                .and_then(|z| z.get(..5).and_then(|z| z.parse::<u32>().ok()));
            let state = identity
                .state
                .as_deref()
                .and_then(|s| normalize_state(s).ok());
            let city = identity
                .city
                .as_deref()
                .and_then(|c| normalize_city(c).ok());
            let values = QiValues {
                age: dob
                    .and_then(|d| hierarchy::age_on(d, contact))
                    .map_or(0, |a| a.min(120) + 1),
                sex: match identity.sex.as_deref().and_then(|s| normalize_sex(s).ok()) {
                    Some(Sex::Female) => 1,
                    Some(Sex::Male) => 2,
                    Some(Sex::Other) => 3,
                    Some(Sex::Unknown) => 4,
                    None => 0,
                },
                zip: zip.map_or(0, |z| z + 1),
                state: pass
                    .states
                    .code(state.as_deref().map(str::to_uppercase).as_deref()),
                city: pass.cities.code(city.as_deref()),
                district: pass.districts.code(Some(&row.district)),
                contact_day: hierarchy::day_code(contact),
            };
            pass.counts.add(values.project(&study.quasi_identifiers));
            pass.qis.push((id_check(&row.referral_id), values));
        }
        Ok(pass)
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one streaming pipeline read top to bottom; each table's writer is a block"
    )]
    async fn build(&self, job: &Job, path: &std::path::Path) -> Result<Built, ExportError> {
        let study = self
            .study(&job.study_id)
            .ok_or_else(|| ExportError::Build("the study is no longer configured".into()))?
            .clone();
        let recipient: age::x25519::Recipient = self
            .config
            .partners
            .get(&study.evaluator)
            .and_then(|p| p.age_recipient.as_deref())
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| ExportError::Build("the evaluator has no age recipient".into()))?;
        let who_purpose: Purpose = job.purpose.parse().map_err(|_| io_err("bad purpose"))?;
        let who = Requesting {
            partner: &job.evaluator,
            kind: PartnerKind::Evaluator,
            purpose: &who_purpose,
        };
        let mode = study.mode;
        let pseudonyms = self.pseudonyms.study(&job.study_id);
        let declared = study.quasi_identifiers.clone();

        let rows_in = ExportReader::open(&self.store, job.window()).await?;
        let pass = self.first_pass(&rows_in, &study).await?;
        let plan = hierarchy::plan(
            &pass.counts,
            &declared,
            mode,
            study.k,
            study.max_suppression_percent,
        );
        tracing::info!(
            export = %job.id,
            referrals = pass.counts.rows,
            classes = pass.counts.distinct(),
            suppressed = plan.suppressed_rows,
            "export plan"
        );
        let level = |qi: QuasiIdentifier| {
            if declared.contains(&qi) {
                plan.node[qi.index()]
            } else {
                0
            }
        };

        // The chain to disk.
        std::fs::create_dir_all(self.dir()).map_err(io_err)?;
        let file = std::fs::File::create(path).map_err(io_err)?;
        let cipher = Hashing::new(BufWriter::with_capacity(256 * 1024, file));
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(io_err)?;
        let stream = encryptor.wrap_output(cipher).map_err(io_err)?;
        let mut zip: ZipStream<Plain> = ZipStream::new(Hashing::new(stream));

        let mut decisions = HashMap::new();
        let mut dictionary = Vec::new();
        let mut released: BTreeMap<String, Released> = BTreeMap::new();
        let mut reason = String::new();
        let mut policy_version = String::new();
        for table in Table::ALL {
            let released_view = self.decide(&who, table, false);
            let part2 = self.decide(&who, table, true);
            reason.clone_from(&released_view.reason);
            policy_version = released_view.policy_version.to_string();
            let mut columns: Vec<Column> = tables::candidate_columns(table, mode)
                .into_iter()
                .filter(|c| tables::admits(&released_view, c.field))
                .collect();
            for c in &mut columns {
                c.generalization = describe_generalization(c, mode, &level);
            }
            if job.tables.contains(&table) {
                for c in &columns {
                    released.insert(
                        format!("{}.{}", table.resource().as_str(), c.field),
                        match c.derivation {
                            Derivation::Released => Released::Released,
                            Derivation::Pseudonymized => Released::Pseudonymized,
                            Derivation::Generalized => Released::Generalized,
                        },
                    );
                }
            }
            decisions.insert(table, (released_view, part2, columns));
        }

        let mut rows_written: BTreeMap<String, u64> = BTreeMap::new();
        let mut first_contact: HashMap<[u8; 16], (i64, String)> = HashMap::new();
        let mut suppressed_referrals: HashSet<String> = HashSet::new();
        let mut rows_generalized = 0u64;
        let mut files = Vec::new();

        // Referrals (always read: they decide who is in the export).
        {
            let (_, _, columns) = &decisions[&Table::Referrals];
            let write = job.tables.contains(&Table::Referrals);
            let name = format!("referrals.{}", job.format.extension());
            let mut sink = if write {
                files.push(name.clone());
                dictionary.push((name.clone(), columns.clone()));
                Some(Sink::open(&mut zip, &name, job.format, columns).map_err(io_err)?)
            } else {
                None
            };
            let mut written = 0u64;
            let mut rows = rows_in.rows::<ExportReferral>();
            let mut index = 0usize;
            while let Some(row) = rows.next().await? {
                let Some((check, values)) = pass.qis.get(index) else {
                    return Err(io_err("the referrals changed between the two passes"));
                };
                index += 1;
                if *check != id_check(&row.id) {
                    return Err(io_err("the referrals changed between the two passes"));
                }
                let key = hierarchy::generalized_key(
                    &values.project(&declared),
                    &plan.node,
                    &declared,
                    mode,
                );
                if plan.sizes.get(&key).copied().unwrap_or(0) < study.k {
                    suppressed_referrals.insert(row.id);
                    continue;
                }
                if declared.iter().any(|qi| {
                    let v = qi_value(values, *qi);
                    hierarchy::generalize(*qi, mode, v, level(*qi))
                        != hierarchy::generalize(*qi, mode, v, 0)
                }) {
                    rows_generalized += 1;
                }
                let entry = first_contact
                    .entry(subject_key(&row.subject_id))
                    .or_insert_with(|| (row.contact_at, row.subject_id.clone()));
                entry.0 = entry.0.min(row.contact_at);
                let Some(sink) = sink.as_mut() else { continue };
                let render = |qi: QuasiIdentifier| {
                    let interner = match qi {
                        QuasiIdentifier::City => &pass.cities,
                        QuasiIdentifier::District => &pass.districts,
                        _ => &pass.states,
                    };
                    let l = level(qi);
                    hierarchy::render(
                        qi,
                        mode,
                        hierarchy::generalize(qi, mode, qi_value(values, qi), l),
                        l,
                        interner,
                    )
                };
                let resources: Vec<String> =
                    serde_json::from_str(&row.resources).unwrap_or_default();
                let cells: Vec<Cell<'_>> = columns
                    .iter()
                    .map(|c| match c.name {
                        "referral" => Cell::Owned(
                            pseudonyms.record("referral", row.id.as_bytes()).to_string(),
                        ),
                        "subject" => Cell::Owned(pseudonyms.subject(&row.subject_id).to_string()),
                        "contact_year" | "contact_date" => {
                            let text = render(QuasiIdentifier::ContactDate);
                            match text.parse::<i64>() {
                                Ok(n) if mode == StudyMode::SafeHarbor => Cell::Int(n),
                                _ => Cell::Owned(text),
                            }
                        }
                        "age" => Cell::Owned(render(QuasiIdentifier::Age)),
                        "sex" => Cell::Owned(render(QuasiIdentifier::Sex)),
                        "zip" => Cell::Owned(render(QuasiIdentifier::Zip)),
                        "state" => Cell::Owned(render(QuasiIdentifier::State)),
                        "city" => Cell::Owned(render(QuasiIdentifier::City)),
                        "district" => Cell::Owned(render(QuasiIdentifier::District)),
                        "status" => Cell::Text(&row.status),
                        "workflow_state" => Cell::Text(&row.workflow_state),
                        "resources" => Cell::Owned(resources.join(";")),
                        "follow_up_by" => {
                            row.follow_up_by.as_deref().map_or(Cell::Null, Cell::Text)
                        }
                        "assigned_cbo" => Cell::Text(&row.assigned_cbo),
                        "submitted_by" => {
                            Cell::Owned(pseudonyms.organization(&row.submitted_by).to_string())
                        }
                        _ => Cell::Null,
                    })
                    .collect();
                sink.row(&cells).map_err(io_err)?;
                written += 1;
            }
            drop(rows);
            if index != pass.qis.len() {
                return Err(io_err("the referrals changed between the two passes"));
            }
            if let Some(sink) = sink {
                sink.finish().map_err(io_err)?;
                rows_written.insert(Table::Referrals.as_str().to_owned(), written);
            }
        }

        // Outcomes of the referrals kept.
        let mut outcomes_suppressed = 0u64;
        if job.tables.contains(&Table::Outcomes) {
            let (_, _, columns) = &decisions[&Table::Outcomes];
            let name = format!("outcomes.{}", job.format.extension());
            files.push(name.clone());
            dictionary.push((name.clone(), columns.clone()));
            let mut sink = Sink::open(&mut zip, &name, job.format, columns).map_err(io_err)?;
            let date_level = level(QuasiIdentifier::ContactDate);
            let mut written = 0u64;
            let mut rows = rows_in.rows::<ExportOutcome>();
            while let Some(row) = rows.next().await? {
                if suppressed_referrals.contains(&row.referral_id) {
                    outcomes_suppressed += 1;
                    continue;
                }
                let cells: Vec<Cell<'_>> = columns
                    .iter()
                    .map(|c| match c.name {
                        "outcome" => {
                            Cell::Owned(pseudonyms.record("outcome", row.id.as_bytes()).to_string())
                        }
                        "referral" => Cell::Owned(
                            pseudonyms
                                .record("referral", row.referral_id.as_bytes())
                                .to_string(),
                        ),
                        "subject" => Cell::Owned(pseudonyms.subject(&row.subject_id).to_string()),
                        "kind" => Cell::Text(&row.kind),
                        "resource" => row.resource.as_deref().map_or(Cell::Null, Cell::Text),
                        "occurred_year" | "occurred_date" => {
                            date_cell(row.occurred_at, mode, date_level)
                        }
                        "days_from_contact" => {
                            Cell::Int((row.occurred_at - row.contact_at).div_euclid(DAY_MICROS))
                        }
                        "recorded_by" => {
                            Cell::Owned(pseudonyms.organization(&row.recorded_by).to_string())
                        }
                        _ => Cell::Null,
                    })
                    .collect();
                sink.row(&cells).map_err(io_err)?;
                written += 1;
            }
            drop(rows);
            sink.finish().map_err(io_err)?;
            rows_written.insert(Table::Outcomes.as_str().to_owned(), written);
        }

        // Case statuses of the people kept.
        if job.tables.contains(&Table::CaseStatus) {
            let (_, part2_decision, columns) = &decisions[&Table::CaseStatus];
            let name = format!("case_status.{}", job.format.extension());
            files.push(name.clone());
            dictionary.push((name.clone(), columns.clone()));
            let mut sink = Sink::open(&mut zip, &name, job.format, columns).map_err(io_err)?;
            let date_level = level(QuasiIdentifier::ContactDate);
            let mut written = 0u64;
            let mut rows = rows_in.rows::<ExportCase>();
            while let Some(row) = rows.next().await? {
                let Some((first, _)) = first_contact.get(&subject_key(&row.subject_id)) else {
                    continue;
                };
                let withheld = |field: &str| row.part2 && !tables::admits(part2_decision, field);
                let cells: Vec<Cell<'_>> = columns
                    .iter()
                    .map(|c| match c.name {
                        "case_report" => {
                            Cell::Owned(pseudonyms.record("case", row.id.as_bytes()).to_string())
                        }
                        "subject" => Cell::Owned(pseudonyms.subject(&row.subject_id).to_string()),
                        "submitted_by" => {
                            Cell::Owned(pseudonyms.organization(&row.submitted_by).to_string())
                        }
                        "program" if !withheld("program") => Cell::Text(&row.program),
                        "status" if !withheld("status") => Cell::Text(&row.status),
                        "effective_year" | "effective_date" => {
                            date_cell(row.effective_at, mode, date_level)
                        }
                        "days_from_first_referral" => {
                            Cell::Int((row.effective_at - first).div_euclid(DAY_MICROS))
                        }
                        _ => Cell::Null,
                    })
                    .collect();
                sink.row(&cells).map_err(io_err)?;
                written += 1;
            }
            drop(rows);
            sink.finish().map_err(io_err)?;
            rows_written.insert(Table::CaseStatus.as_str().to_owned(), written);
        }
        drop(rows_in);

        files.push("dictionary.csv".to_owned());
        tables::write_dictionary(&mut zip, &dictionary).map_err(io_err)?;
        let hashed = zip.finish().map_err(io_err)?;
        let (stream, plaintext_hash) = hashed.into_parts();
        let cipher = stream.finish().map_err(io_err)?;
        let (mut file, ciphertext_hash) = cipher.into_parts();
        file.flush().map_err(io_err)?;
        let file = file.into_inner().map_err(|e| io_err(e.error()))?;
        file.sync_all().map_err(io_err)?;

        let subjects: Vec<String> = first_contact.into_values().map(|(_, id)| id).collect();
        let manifest = Manifest {
            export: job.id.clone(),
            study: job.study_id.clone(),
            evaluator: job.evaluator.clone(),
            mode: mode.as_str().to_owned(),
            purpose: job.purpose.clone(),
            dua_reference: study.dua_reference.clone(),
            dua_expires: study.dua_expires.to_string(),
            k: study.k,
            quasi_identifiers: declared.iter().map(|q| q.as_str().to_owned()).collect(),
            generalization: declared
                .iter()
                .map(|q| (q.as_str().to_owned(), level(*q)))
                .collect(),
            from: job.from.to_string(),
            to: job.to.to_string(),
            format: job.format.extension().to_owned(),
            files,
            rows: rows_written,
            rows_generalized,
            rows_suppressed: plan.suppressed_rows,
            outcomes_suppressed,
            subjects: subjects.len() as u64,
            policy_version,
            plaintext_blake3: plaintext_hash.to_hex().to_string(),
            ciphertext_blake3: ciphertext_hash.to_hex().to_string(),
            created_at: self.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        Ok(Built {
            path: path.to_owned(),
            manifest,
            subjects,
            fields: released.into_iter().collect(),
            reason,
        })
    }
}

fn qi_value(values: &QiValues, qi: QuasiIdentifier) -> u32 {
    values.get(qi)
}

/// A timestamp as the mode and the contact date's level allow.
fn date_cell(micros: i64, mode: StudyMode, level: u8) -> Cell<'static> {
    let date = DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .date_naive();
    let code = hierarchy::generalize(
        QuasiIdentifier::ContactDate,
        mode,
        hierarchy::day_code(date),
        level,
    );
    let text = hierarchy::render(
        QuasiIdentifier::ContactDate,
        mode,
        code,
        level,
        &Interner::default(),
    );
    match (mode, text.parse::<i64>()) {
        (StudyMode::SafeHarbor, Ok(year)) => Cell::Int(year),
        _ if text.is_empty() => Cell::Null,
        _ => Cell::Owned(text),
    }
}

/// The dictionary's words for what was done to a column.
fn describe_generalization(
    c: &Column,
    mode: StudyMode,
    level: &dyn Fn(QuasiIdentifier) -> u8,
) -> String {
    let qi = match c.name {
        "age" => QuasiIdentifier::Age,
        "sex" => QuasiIdentifier::Sex,
        "zip" => QuasiIdentifier::Zip,
        "state" => QuasiIdentifier::State,
        "city" => QuasiIdentifier::City,
        "district" => QuasiIdentifier::District,
        "contact_year" | "contact_date" | "occurred_year" | "occurred_date" | "effective_year"
        | "effective_date" => QuasiIdentifier::ContactDate,
        _ => {
            return match c.derivation {
                Derivation::Pseudonymized => "study pseudonym (keyed BLAKE3 of the gateway's internal id, not of any identifier)".to_owned(),
                Derivation::Generalized => "derived from dates; exact interval in days".to_owned(),
                Derivation::Released => "none".to_owned(),
            };
        }
    };
    let l = level(qi);
    let lds = mode == StudyMode::LimitedDataSet;
    let words = match (qi, l) {
        (_, l) if l >= hierarchy::max_level(qi, mode) => "suppressed (*) to reach k",
        (QuasiIdentifier::Age, 0) => "whole years; over 89 as 90+",
        (QuasiIdentifier::Age, 1) => "5-year bands; 90+",
        (QuasiIdentifier::Age, _) => "10-year bands; 90+",
        (QuasiIdentifier::Zip, 0) if lds => "five-digit ZIP",
        (QuasiIdentifier::Zip, _) => "first three digits; 000 for areas of 20,000 people or fewer",
        (QuasiIdentifier::ContactDate, 0) if lds => "date",
        (QuasiIdentifier::ContactDate, 1) if lds => "month (YYYY-MM)",
        (QuasiIdentifier::ContactDate, _) => "year",
        _ => "as recorded",
    };
    format!("{words} (level {l})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_safe_harbor_date_is_its_year() {
        let micros = NaiveDate::from_ymd_opt(2026, 3, 14)
            .map(micros_of)
            .unwrap_or_default();
        assert!(matches!(
            date_cell(micros, StudyMode::SafeHarbor, 0),
            Cell::Int(2026)
        ));
        assert!(
            matches!(date_cell(micros, StudyMode::LimitedDataSet, 0), Cell::Owned(ref s) if s == "2026-03-14")
        );
    }
}
