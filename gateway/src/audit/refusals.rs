//! Refused requests in the audit log, without letting a flood of them slow the
//! writes that matter.
//!
//! A refusal (authentication failed, or the policy said no) is recorded so that
//! probing is visible: who asked (the partner id only when the token's signature
//! verified under that partner's key, otherwise `unauthenticated`), the route
//! template, the purpose of use, the stage and the reason code. Never the token,
//! the raw path or anything else the caller sent.
//!
//! # Design
//! Appending serializes on the chain head, so one transaction per refusal would
//! let anyone with a network connection take the head lock as fast as they can
//! send requests, and every legitimate write would queue behind them. Instead:
//! - [`Refusals::record`] never waits: it puts the refusal on a bounded channel
//!   (`audit.refusal_queue_capacity`) to one background writer.
//! - The writer appends what is queued in batches, one transaction per batch (up
//!   to [`MAX_BATCH`] entries), and pauses [`BATCH_INTERVAL`] between batches, so
//!   refusals hold the head at most ~20 times a second however many arrive.
//! - When the channel is full, a refusal is not dropped: it is counted into a
//!   summary per (actor, stage, reason, method, route) — all from bounded sets —
//!   that the writer appends as a `refusal.summary` entry with the count and the
//!   first and last time. Memory stays bounded; nothing is lost.
//! - If the database is unavailable, the writer retries the same batch with
//!   back-off while new refusals coalesce.
//! - At graceful shutdown ([`RefusalWriter::shutdown`]) the writer stops taking
//!   refusals, writes everything queued and summarized, and exits. A refusal
//!   recorded after that (a request outliving the shutdown grace) cannot be
//!   written: it is logged as an error and counted, never silently dropped.
//!
//! Entries are stamped when written, normally within [`BATCH_INTERVAL`] of the
//! refusal; summaries carry their own first and last times.
//!
//! # Recording a refusal
//! A handler never records one itself: it returns an
//! `http::error::ApiError` that is a refusal (`Refused`, `NotFoundOrRefused`
//! with a reason, `NotYours`, `BudgetExhausted`), and the HTTP layer's refusal
//! layer (`http::record_refusals`) records it with the caller, method, route
//! template and purpose; refused tokens likewise. Code outside a request
//! records directly:
//! ```ignore
//! state.refusals.record(
//!     Refusal::policy(&partner_id, "GET", route, &purpose, &decision.reason)
//!         .with_record(referral_id),
//! );
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::{Notify, mpsc, watch};

use super::{Event, append};
use crate::clock::Clock;
use crate::policy::Purpose;
use crate::store::{Store, StoreError};

/// The actor recorded for a refusal whose token did not verify.
pub const UNAUTHENTICATED_ACTOR: &str = "unauthenticated";
/// The action of one refusal.
pub const REFUSAL_ACTION: &str = "refusal";
/// The action of a counted summary of refusals that arrived while the queue was
/// full.
pub const SUMMARY_ACTION: &str = "refusal.summary";

/// Entries per batch transaction.
pub const MAX_BATCH: usize = 512;
/// The pause between two batch transactions.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(50);
/// A policy reason longer than this is cut (reasons are the bundle's short
/// sentences; this only bounds a pathological bundle).
const MAX_REASON_LEN: usize = 200;
/// Write attempts for the final batches at shutdown before giving up loudly.
const SHUTDOWN_ATTEMPTS: u32 = 5;

/// Which check refused the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Authentication,
    Policy,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::Policy => "policy",
        }
    }
}

/// One refused request, as it will be recorded.
#[derive(Clone, PartialEq, Eq)]
pub struct Refusal {
    actor: String,
    stage: Stage,
    reason: String,
    method: String,
    route: String,
    purpose: Option<String>,
    record_id: Option<String>,
}

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusal")
            .field("actor", &self.actor)
            .field("stage", &self.stage)
            .field("reason", &self.reason)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Refusal {
    /// A request refused by authentication. `verified_partner` is the partner
    /// whose registered key verified the token's signature (a token expired, not
    /// yet valid, too long-lived, or on the wrong certificate); `None` when the
    /// signature did not verify or was never checked, since an unverified `sub`
    /// proves nothing. `reason` is [`crate::auth::AuthError::reason`].
    pub fn authentication(
        verified_partner: Option<&str>,
        reason: &'static str,
        method: &str,
        route: &str,
        purpose: Option<&Purpose>,
    ) -> Self {
        Self {
            actor: verified_partner.unwrap_or(UNAUTHENTICATED_ACTOR).to_owned(),
            stage: Stage::Authentication,
            reason: reason.to_owned(),
            method: method.to_owned(),
            route: route.to_owned(),
            purpose: purpose.map(|p| p.as_str().to_owned()),
            record_id: None,
        }
    }

    /// A request by an authenticated partner that the policy refused; `reason`
    /// is the decision's reason (a sentence from the bundle, never request data).
    pub fn policy(
        partner_id: &str,
        method: &str,
        route: &str,
        purpose: &Purpose,
        reason: &str,
    ) -> Self {
        let mut reason = reason.to_owned();
        if reason.len() > MAX_REASON_LEN {
            let mut cut = MAX_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Self {
            actor: partner_id.to_owned(),
            stage: Stage::Policy,
            reason,
            method: method.to_owned(),
            route: route.to_owned(),
            purpose: Some(purpose.as_str().to_owned()),
            record_id: None,
        }
    }

    /// The gateway id of the record that was asked for, when the route names one.
    #[must_use]
    pub fn with_record(mut self, record_id: impl Into<String>) -> Self {
        self.record_id = Some(record_id.into());
        self
    }

    fn to_event(&self) -> Event {
        let mut event = Event::new(&self.actor, REFUSAL_ACTION)
            .with_resource(&self.route)
            .with_reason(&self.reason)
            .with_detail(json!({"stage": self.stage.as_str(), "method": self.method}));
        event.purpose.clone_from(&self.purpose);
        event.record_id.clone_from(&self.record_id);
        event
    }

    fn summary_key(&self) -> SummaryKey {
        SummaryKey {
            actor: self.actor.clone(),
            stage: self.stage,
            reason: self.reason.clone(),
            method: self.method.clone(),
            route: self.route.clone(),
        }
    }
}

/// What refusals that overflowed the queue are counted by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SummaryKey {
    actor: String,
    stage: Stage,
    reason: String,
    method: String,
    route: String,
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

impl SummaryKey {
    fn to_event(&self, summary: Summary) -> Event {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        Event::new(&self.actor, SUMMARY_ACTION)
            .with_resource(&self.route)
            .with_reason(&self.reason)
            .with_detail(json!({
                "stage": self.stage.as_str(),
                "method": self.method,
                "count": summary.count,
                "first": time(summary.first),
                "last": time(summary.last),
            }))
    }
}

struct Shared {
    sender: mpsc::Sender<Refusal>,
    /// Counts of refusals that found the queue full. A std Mutex: held for a map
    /// update, never across an await.
    overflow: Mutex<BTreeMap<SummaryKey, Summary>>,
    /// Wakes the writer when only the overflow has something for it.
    wake: Notify,
    clock: Arc<dyn Clock>,
    /// Refusals recorded after the writer stopped, or that could not be written
    /// at shutdown: never silent, always logged, counted here.
    unrecorded: AtomicU64,
}

/// The handle handlers record refusals through. Cheap to clone.
#[derive(Clone)]
pub struct Refusals {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals").finish_non_exhaustive()
    }
}

impl Refusals {
    /// A recorder with a queue of `capacity` and its writer appending to `store`.
    pub fn start(store: Store, clock: Arc<dyn Clock>, capacity: usize) -> (Self, RefusalWriter) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared {
            sender,
            overflow: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            clock,
            unrecorded: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let writer = Writer {
            store,
            receiver,
            shared: Arc::clone(&shared),
            stopped,
        };
        let handle = tokio::spawn(writer.run());
        (Self { shared }, RefusalWriter { stop, handle })
    }

    /// Records a refusal without waiting: queued for the writer, or counted into
    /// a summary when the queue is full.
    pub fn record(&self, refusal: Refusal) {
        match self.shared.sender.try_send(refusal) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(refusal)) => {
                let now = self.shared.clock.now();
                let mut overflow = self
                    .shared
                    .overflow
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                overflow
                    .entry(refusal.summary_key())
                    .and_modify(|s| {
                        s.count += 1;
                        s.last = now;
                    })
                    .or_insert(Summary {
                        count: 1,
                        first: now,
                        last: now,
                    });
                drop(overflow);
                self.shared.wake.notify_one();
            }
            Err(mpsc::error::TrySendError::Closed(refusal)) => {
                self.shared.unrecorded.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    actor = %refusal.actor,
                    reason = %refusal.reason,
                    route = %refusal.route,
                    "refusal after the audit writer stopped: not recorded in the audit log"
                );
            }
        }
    }

    /// Refusals that could not be recorded (each was logged when it happened).
    pub fn unrecorded(&self) -> u64 {
        self.shared.unrecorded.load(Ordering::Relaxed)
    }
}

/// The running writer: stop it with [`RefusalWriter::shutdown`] to flush.
pub struct RefusalWriter {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RefusalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalWriter").finish_non_exhaustive()
    }
}

impl RefusalWriter {
    /// Stops taking refusals, writes everything queued or summarized, and waits
    /// for the writer to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "the refusal writer did not finish");
        }
    }
}

struct Writer {
    store: Store,
    receiver: mpsc::Receiver<Refusal>,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
}

impl Writer {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                biased;
                () = stop_requested(&mut self.stopped) => break,
                received = self.receiver.recv() => match received {
                    Some(refusal) => batch.push(refusal),
                    None => break,
                },
                () = self.shared.wake.notified() => {}
            }
            while batch.len() < MAX_BATCH {
                match self.receiver.try_recv() {
                    Ok(refusal) => batch.push(refusal),
                    Err(_) => break,
                }
            }
            let events = self.events(&mut batch);
            self.write(&events, None).await;
            tokio::select! {
                () = stop_requested(&mut self.stopped) => break,
                () = tokio::time::sleep(BATCH_INTERVAL) => {}
            }
        }
        self.flush(batch).await;
    }

    /// The final flush: no more refusals are taken; everything queued and
    /// summarized is written.
    async fn flush(mut self, mut batch: Vec<Refusal>) {
        self.receiver.close();
        loop {
            while batch.len() < MAX_BATCH {
                match self.receiver.recv().await {
                    Some(refusal) => batch.push(refusal),
                    None => break,
                }
            }
            let events = self.events(&mut batch);
            if events.is_empty() {
                break;
            }
            self.write(&events, Some(SHUTDOWN_ATTEMPTS)).await;
        }
    }

    /// The entries for `batch` (emptied) and for every summary so far.
    fn events(&self, batch: &mut Vec<Refusal>) -> Vec<Event> {
        let summaries = std::mem::take(
            &mut *self
                .shared
                .overflow
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut events: Vec<Event> = batch.drain(..).map(|r| r.to_event()).collect();
        events.extend(
            summaries
                .into_iter()
                .map(|(key, summary)| key.to_event(summary)),
        );
        events
    }

    /// Appends `events` in one transaction, retrying with back-off until it
    /// commits (or, with `attempts`, until they run out — then says so loudly).
    async fn write(&self, events: &[Event], attempts: Option<u32>) {
        if events.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        let mut tried = 0;
        loop {
            tried += 1;
            // A shutdown while the database is away must not hang on retries.
            let attempts = attempts.or_else(|| {
                let stopping = *self.stopped.borrow() || self.stopped.has_changed().is_err();
                stopping.then_some(SHUTDOWN_ATTEMPTS)
            });
            match append_batch(&self.store, events, self.shared.clock.as_ref()).await {
                Ok(()) => return,
                Err(e) if attempts.is_some_and(|max| tried >= max) => {
                    let lost = u64::try_from(events.len()).unwrap_or(u64::MAX);
                    self.shared.unrecorded.fetch_add(lost, Ordering::Relaxed);
                    tracing::error!(error = %e, entries = events.len(),
                        "refusals could not be written to the audit log at shutdown");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, entries = events.len(),
                        "refusals could not be written to the audit log; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Resolves once shutdown was asked for (or the handle that would ask is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn append_batch(
    store: &Store,
    events: &[Event],
    clock: &dyn Clock,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    append(&mut tx, events, clock).await?;
    tx.commit().await?;
    Ok(())
}
