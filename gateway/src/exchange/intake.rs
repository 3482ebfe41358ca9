//! The referral intake: one writer task per gateway process that writes
//! referrals in groups, one transaction per group.
//!
//! # Why a writer task
//! A referral costs the database far more in round trips and commits than in
//! work: on SQLite each statement is a hop to sqlx's worker thread and each
//! commit a WAL sync; on PostgreSQL each commit is a disk flush, and every write
//! transaction holds the audit head's row lock from its append to its commit, so
//! writers queue on it anyway. So instead of a transaction per request, every
//! submission — one referral from `POST /v1/referrals`, or a chunk of a batch —
//! is queued here, and a writer takes whatever is waiting (up to
//! [`WRITE_GROUP_LIMIT`] referrals) and writes it as one transaction of
//! multi-row statements with one audit append. Under load, concurrent single submissions share a commit (group
//! commit); alone, a submission is written at once. One writer on SQLite (it has
//! one writer anyway), [`POSTGRES_WRITERS`] on PostgreSQL.
//!
//! # Failure
//! A group's transaction commits all of it or nothing. When it fails, each
//! submission of the group is retried on its own (twice: the second attempt also
//! covers an idempotency key recorded meanwhile by another replica, which fails
//! the insert and is then found as a replay), so one bad submission cannot fail
//! its neighbours. What still fails is answered as failed — nothing of it stored.
//!
//! # Idempotency
//! Keys are looked up in the group's own transaction. On SQLite the writer holds
//! the database's write lock, so a key cannot be claimed twice. On PostgreSQL two
//! concurrent groups (of this replica's writers or another replica's) can both
//! miss a key; the primary key on `idempotency_keys` then fails the second
//! group's insert, and its retry finds the key (see "Failure"). Two submissions
//! with the same key in one group are handled as a first submission and its retry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use zeroize::Zeroizing;

use super::idempotency::Claim;
use super::linking::{LinkItem, link_identities};
use super::referral::{ReferralDraft, sealed_context};
use super::vocabulary::{Code, ReferralStatus, WorkflowState};
use super::{ExchangeError, Shared};
use crate::audit::{self, Event};
use crate::domain::PartnerId;
use crate::domain::ids::ReferralId;
use crate::policy::Purpose;
use crate::store::Backend;
use crate::store::idempotency::{self as keys_repo, NewKey};
use crate::store::referrals::{self as repo, NewAssignment, NewReferral};

/// The most referrals in one submission to the intake: the chunk size of
/// batches, which bounds what a batch holds in memory. The writer may write
/// several waiting submissions in one transaction ([`WRITE_GROUP_LIMIT`]).
pub const GROUP_LIMIT: usize = 500;

/// The most referrals a writer puts in one transaction: several queued
/// submissions (batch chunks of up to [`GROUP_LIMIT`], single referrals) that
/// are waiting together. Larger transactions are cheaper per referral because
/// most of a referral's database work is inserting rows at random places in
/// the linkage-token and identity indexes: the commit writes each B-tree page
/// it dirtied once, however many of the transaction's rows landed on it, so
/// the more rows per commit, the fewer page writes per row. Every statement
/// splits itself under the backends' parameter limits, so only memory and a
/// transaction's duration (tens of milliseconds) bound it.
const WRITE_GROUP_LIMIT: usize = 4 * GROUP_LIMIT;

/// Submissions waiting for the writer. Bounded, so that a flood waits in the
/// handlers (and their clients) rather than in memory.
const QUEUE_DEPTH: usize = 1024;

/// Groups written at the same time on PostgreSQL. Its transactions run
/// concurrently and serialize only on the audit head, from their append to their
/// commit (the last few statements), so a few writers keep the round trips of
/// linking and inserting in flight together. SQLite has one writer at a time
/// whatever we do: there the intake writes one group at a time.
const POSTGRES_WRITERS: usize = 4;

/// One referral to write.
pub struct Submission {
    pub submitter: PartnerId,
    pub purpose: Purpose,
    pub draft: ReferralDraft,
    pub claim: Option<Claim>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("submitter", &self.submitter)
            .field("draft", &self.draft)
            .finish_non_exhaustive()
    }
}

/// What a created referral's submitter is told: ids and codes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReferralReceipt {
    /// The referral's id (UUID v7).
    #[schema(value_type = String)]
    pub id: ReferralId,
    pub status: ReferralStatus,
    /// The CBO the referral was routed to.
    #[schema(value_type = String)]
    pub assigned_cbo: PartnerId,
    /// The submitting partner's own pseudonym for the person: two of its
    /// referrals share it only when its own submissions link them.
    pub subject_pseudonym: String,
}

/// How a submission ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Created(ReferralReceipt),
    /// The idempotency key was seen with the same body: the first receipt.
    Replayed(ReferralReceipt),
}

/// Why a submission was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The idempotency key was used before with a different body.
    KeyReused,
    /// The write failed (logged); nothing of it was stored.
    Failed,
}

pub type SubmitResult = Result<Submitted, SubmitError>;

struct Job {
    items: Vec<Submission>,
    reply: oneshot::Sender<Vec<SubmitResult>>,
}

/// The handle that queues submissions for the writer.
#[derive(Debug, Clone)]
pub struct Intake {
    jobs: mpsc::Sender<Job>,
}

impl Intake {
    /// Starts the writer task; it ends when every handle is dropped.
    pub(super) fn start(shared: Arc<Shared>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let writers = match shared.store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_WRITERS,
        };
        tokio::spawn(run_writer(shared, queue, writers));
        Self { jobs }
    }

    /// Queues `items` (at most [`GROUP_LIMIT`]), waiting only for room in the
    /// queue; the returned [`Pending`] resolves once they are written. A batch
    /// queues its next chunk while the previous one is being written.
    pub async fn enqueue(&self, items: Vec<Submission>) -> Result<Pending, ExchangeError> {
        debug_assert!(items.len() <= GROUP_LIMIT);
        let (reply, answer) = oneshot::channel();
        if items.is_empty() {
            let _ = reply.send(Vec::new());
        } else {
            self.jobs
                .send(Job { items, reply })
                .await
                .map_err(|_| ExchangeError::Unavailable)?;
        }
        Ok(Pending(answer))
    }
}

/// Submissions queued and not yet answered.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Vec<SubmitResult>>);

impl Pending {
    /// Waits for the results, in the order the items were queued.
    pub async fn results(self) -> Result<Vec<SubmitResult>, ExchangeError> {
        self.0.await.map_err(|_| ExchangeError::Unavailable)
    }
}

/// Forms groups from the queue and writes them, at most `writers` at a time.
/// A group is formed only when a writer is free, so under load groups grow
/// (up to [`WRITE_GROUP_LIMIT`]) instead of queueing as many small transactions.
async fn run_writer(shared: Arc<Shared>, mut queue: mpsc::Receiver<Job>, writers: usize) {
    let free = Arc::new(Semaphore::new(writers));
    let mut carried: Option<Job> = None;
    loop {
        let Ok(permit) = Arc::clone(&free).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut count = first.items.len();
        let mut group = vec![first];
        while count < WRITE_GROUP_LIMIT {
            match queue.try_recv() {
                Ok(job) if count + job.items.len() <= WRITE_GROUP_LIMIT => {
                    count += job.items.len();
                    group.push(job);
                }
                Ok(job) => {
                    carried = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        // A client that went away before its turn is not written for.
        group.retain(|job| !job.reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            write_jobs(&shared, group).await;
            drop(permit);
        });
    }
}

/// Writes a group, isolating failures to the submission that caused them.
async fn write_jobs(shared: &Shared, group: Vec<Job>) {
    let all: Vec<&Submission> = group.iter().flat_map(|job| &job.items).collect();
    match write_group(shared, &all).await {
        Ok(mut results) => {
            for job in group {
                let rest = results.split_off(job.items.len());
                let _ = job.reply.send(results);
                results = rest;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = group.len(), "intake group failed; retrying each submission alone");
            for job in group {
                let items: Vec<&Submission> = job.items.iter().collect();
                let mut outcome = write_group(shared, &items).await;
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, "intake submission failed; retrying once");
                    outcome = write_group(shared, &items).await;
                }
                let results = outcome.unwrap_or_else(|e| {
                    tracing::error!(error = %e, referrals = items.len(), "intake submission failed; nothing stored");
                    vec![Err(SubmitError::Failed); items.len()]
                });
                let _ = job.reply.send(results);
            }
        }
    }
}

/// What happens to one item of a group.
enum Plan {
    Done(SubmitResult),
    Create,
    /// The same key and body as an earlier item of this group.
    RepeatOf(usize),
}

/// Writes `items` in one transaction: idempotency, linkage, sealing, rows, audit.
async fn write_group(
    shared: &Shared,
    items: &[&Submission],
) -> Result<Vec<SubmitResult>, ExchangeError> {
    let mut timer = PhaseTimer::start();
    let clock = &*shared.clock;
    let now = clock.now();
    let mut tx = shared.store.begin().await?;

    let plans = plan_idempotency(&mut tx, items).await?;
    let plan_ms = timer.lap();
    let create: Vec<usize> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| matches!(p, Plan::Create).then_some(i))
        .collect();
    if create.is_empty() {
        // Only replays and refusals: nothing to write.
        drop(tx);
        return Ok(resolve(plans, &HashMap::new()));
    }

    let link_items: Vec<LinkItem<'_>> = create
        .iter()
        .map(|&i| LinkItem {
            source_partner: &items[i].submitter,
            // The CBO it is routed to holds the person's identity too.
            assigned_cbo: Some(items[i].draft.assignment.cbo.as_str()),
            input: &items[i].draft.subject.input,
            identity: &items[i].draft.subject.identity,
        })
        .collect();
    let linked = link_identities(&shared.registry, &mut tx, &link_items, clock).await?;
    let link_ms = timer.lap();
    let rows = build_rows(shared, &mut tx, items, &create, &linked, now).await?;
    let seal_ms = timer.lap();
    repo::insert_referrals(&mut tx, &rows.referrals).await?;
    repo::insert_assignments(&mut tx, &rows.assignments).await?;
    if !rows.keys.is_empty() {
        keys_repo::insert(&mut tx, &rows.keys).await?;
    }
    let insert_ms = timer.lap();
    audit::append(&mut tx, &rows.events, clock).await?;
    let audit_ms = timer.lap();
    tx.commit().await.map_err(crate::store::StoreError::from)?;
    let commit_ms = timer.lap();
    // Where a group's time goes, for `cargo bench --bench exchange`.
    tracing::debug!(
        referrals = create.len(),
        plan_ms,
        link_ms,
        seal_ms,
        insert_ms,
        audit_ms,
        commit_ms,
        total_ms = timer.total(),
        "intake group written"
    );
    Ok(resolve(plans, &rows.receipts))
}

/// Milliseconds per phase of a group's write.
struct PhaseTimer {
    started: Instant,
    lap: Instant,
}

impl PhaseTimer {
    fn start() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            lap: now,
        }
    }

    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let ms = now.duration_since(self.lap).as_secs_f64() * 1e3;
        self.lap = now;
        ms
    }

    fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }
}

/// The rows and audit entries of a group's new referrals.
struct Rows {
    referrals: Vec<NewReferral>,
    assignments: Vec<NewAssignment>,
    keys: Vec<NewKey>,
    events: Vec<Event>,
    receipts: HashMap<usize, ReferralReceipt>,
}

/// Seals each new referral's sensitive fields and builds its rows: the referral,
/// its first assignment, its idempotency key, its audit entry and its receipt.
async fn build_rows(
    shared: &Shared,
    tx: &mut crate::store::Tx<'_>,
    items: &[&Submission],
    create: &[usize],
    linked: &[crate::subjects::Linked],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Rows, ExchangeError> {
    let clock = &*shared.clock;
    let at = now.timestamp_micros();
    let mut referrals = Vec::with_capacity(create.len());
    let mut assignments = Vec::with_capacity(create.len());
    let mut keys = Vec::new();
    let mut events = Vec::with_capacity(create.len());
    let mut receipts = HashMap::with_capacity(create.len());
    for (&i, link) in create.iter().zip(linked) {
        let item = items[i];
        let draft = &item.draft;
        let id = shared.ids.next(now);
        let sealed = if draft.sealed.is_empty() {
            None
        } else {
            let plain = Zeroizing::new(serde_json::to_vec(&draft.sealed).unwrap_or_default());
            let sealed = shared
                .vault
                .seal(tx, &sealed_context(&id), &plain, clock)
                .await?;
            Some(sealed.into_bytes())
        };
        let status = ReferralStatus::New;
        let receipt = ReferralReceipt {
            id: ReferralId::stored(id.clone()),
            status,
            assigned_cbo: PartnerId::stored(draft.assignment.cbo.clone()),
            // The submitter's own cluster of the person: only its own
            // submissions group it, never another partner's (whose links it
            // must not learn).
            subject_pseudonym: shared
                .pseudonyms
                .for_partner_cluster(&item.submitter, &link.cluster_id)
                .to_string(),
        };
        if let Some(claim) = item.claim {
            keys.push(NewKey {
                key_hash: claim.key_hash,
                partner: item.submitter.as_str().to_owned(),
                body_hash: claim.body_hash,
                referral_id: id.clone(),
                response: serde_json::to_string(&receipt).unwrap_or_default(),
                created_at: at,
            });
        }
        assignments.push(NewAssignment {
            id: shared.ids.next(now),
            referral_id: id.clone(),
            from_cbo: None,
            to_cbo: draft.assignment.cbo.clone(),
            cause: "submitted",
            route: draft.assignment.route.as_str(),
            rule_index: draft
                .assignment
                .route
                .rule_index()
                .and_then(|r| i64::try_from(r).ok()),
            reason: None,
            assigned_by: item.submitter.as_str().to_owned(),
            at,
        });
        events.push(
            Event::new(&item.submitter, "referral.create")
                .with_purpose(item.purpose.as_str())
                .with_record("referral", &id)
                .with_subject(&link.subject_id)
                .with_detail(serde_json::json!({
                    "assigned_cbo": draft.assignment.cbo,
                    "route": draft.assignment.route.as_str(),
                })),
        );
        referrals.push(NewReferral {
            id,
            submitted_by: item.submitter.as_str().to_owned(),
            subject_id: link.subject_id.clone(),
            identity_id: link.identity_id.clone(),
            assigned_cbo: draft.assignment.cbo.clone(),
            status: status.as_str(),
            workflow_state: WorkflowState::Open.as_str(),
            contact_at: draft.contact_at.timestamp_micros(),
            district: draft.district.clone(),
            arrested: draft.arrested,
            resources: draft.resources.iter().map(|r| r.as_str()).collect(),
            follow_up_by: draft.follow_up_by.map(Code::as_str),
            created_at: at,
            sealed,
        });
        receipts.insert(i, receipt);
    }

    Ok(Rows {
        referrals,
        assignments,
        keys,
        events,
        receipts,
    })
}

/// Decides, for each item, whether it is created, replayed or refused, from the
/// keys already recorded and the earlier items of the group.
async fn plan_idempotency(
    tx: &mut crate::store::Tx<'_>,
    items: &[&Submission],
) -> Result<Vec<Plan>, ExchangeError> {
    let hashes: Vec<[u8; 32]> = items
        .iter()
        .filter_map(|i| i.claim.map(|c| c.key_hash))
        .collect();
    let stored: HashMap<Vec<u8>, (Vec<u8>, String)> = if hashes.is_empty() {
        HashMap::new()
    } else {
        keys_repo::find(tx, &hashes)
            .await?
            .into_iter()
            .map(|k| (k.key_hash, (k.body_hash, k.response)))
            .collect()
    };
    let mut first_in_group: HashMap<[u8; 32], (usize, [u8; 32])> = HashMap::new();
    let mut plans = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(claim) = item.claim else {
            plans.push(Plan::Create);
            continue;
        };
        let plan = if let Some((body_hash, response)) = stored.get(claim.key_hash.as_slice()) {
            if body_hash.as_slice() == claim.body_hash {
                let receipt = serde_json::from_str::<ReferralReceipt>(response).map_err(|_| {
                    ExchangeError::Store(crate::store::StoreError::Corrupt {
                        what: "idempotency_keys.response is not a receipt",
                    })
                })?;
                Plan::Done(Ok(Submitted::Replayed(receipt)))
            } else {
                Plan::Done(Err(SubmitError::KeyReused))
            }
        } else if let Some(&(first, body_hash)) = first_in_group.get(&claim.key_hash) {
            if body_hash == claim.body_hash {
                Plan::RepeatOf(first)
            } else {
                Plan::Done(Err(SubmitError::KeyReused))
            }
        } else {
            first_in_group.insert(claim.key_hash, (i, claim.body_hash));
            Plan::Create
        };
        plans.push(plan);
    }
    Ok(plans)
}

fn resolve(plans: Vec<Plan>, receipts: &HashMap<usize, ReferralReceipt>) -> Vec<SubmitResult> {
    plans
        .into_iter()
        .enumerate()
        .map(|(i, plan)| match plan {
            Plan::Done(result) => result,
            Plan::Create => receipts
                .get(&i)
                .cloned()
                .map(Submitted::Created)
                .ok_or(SubmitError::Failed),
            Plan::RepeatOf(first) => receipts
                .get(&first)
                .cloned()
                .map(Submitted::Replayed)
                .ok_or(SubmitError::Failed),
        })
        .collect()
}
