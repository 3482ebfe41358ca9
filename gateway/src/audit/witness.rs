//! Outside witnesses: every signed checkpoint's witness line, sent to
//! somewhere the database's administrators cannot write, until it is accepted.
//!
//! The witness file (`audit.checkpoint_file`) is on the gateway's own disk;
//! whoever can cut the log's tail may well reach it too. So each checkpoint can
//! also go to
//! - a **command** (`audit.witness_command`, an argv list, no shell): the line
//!   on its stdin, one run per line; exit status 0 means accepted. It runs with
//!   the gateway's environment minus `DATABASE_URL` and every `CROSSWALK_*`
//!   variable (a witness has no business with the database's credentials),
//!   its stdout and stderr discarded (they could hold anything), and is killed
//!   after [`send::COMMAND_TIMEOUT`];
//! - an **HTTPS endpoint** (`audit.witness_url`): the line sent in a POST
//!   request as `application/json` over TLS 1.2+ (rustls), the server's certificate checked
//!   against `audit.witness_ca_file` or else the system's CA bundle; any 2xx
//!   means accepted; [`send::HTTPS_TIMEOUT`] per attempt.
//!
//! # Delivery
//! Lines go out in checkpoint order, each retried until accepted, by one task
//! per witness that is woken when this process makes a checkpoint (and polls
//! every [`IDLE_POLL`] for those of other replicas and the CLI). Writes never
//! wait for it: checkpoints are made and stored as before, and delivery reads
//! them from `audit_checkpoints`. A failure is logged (the witness kind, the
//! checkpoint's sequence number and the kind of failure; never the URL, which
//! may carry a credential, nor the command's output) and counted in
//! `crosswalk_audit_witness_deliveries_total{witness, outcome}`; the next
//! attempt waits 1 s, then twice as long each time up to
//! `audit.witness_retry_max_secs` (60 s), and the pending lines are in
//! `crosswalk_audit_witness_pending{witness}`. Both metrics have fixed labels:
//! `witness` is `command` or `https`, `outcome` one of [`Outcome`].
//!
//! # Durable
//! What each witness accepted is a cursor in the database
//! (`audit_witness_cursors`, migration 0018: the last checkpoint id), moved
//! after each accepted line. A restart resumes after it, so a line not yet
//! accepted when the gateway stopped is sent by the next start. Delivery is at
//! least once: a line accepted just before a crash, or sent by two replicas,
//! may arrive twice; it is the same signed line each time. A witness
//! configured on a deployment that already has checkpoints starts at the
//! latest of them, not at the beginning of history.

mod send;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::checkpoint::Checkpoint;
use crate::clock::Clock;
pub use crate::config::witness::WitnessUrl;
use crate::config::{Config, ConfigError};
use crate::store::Store;
use crate::store::witness::{self as repo, QueuedCheckpoint};

pub use send::{COMMAND_TIMEOUT, HTTPS_TIMEOUT};

/// How often an idle delivery task looks for checkpoints it was not woken for
/// (made by another replica or by `crosswalk audit checkpoint`).
pub const IDLE_POLL: Duration = Duration::from_secs(30);

/// The first wait after a failed attempt; it doubles up to the configured cap.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Checkpoints read per round.
const BATCH: i64 = 100;

/// Which witness, as the cursor and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WitnessKind {
    Command,
    Https,
}

impl WitnessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Https => "https",
        }
    }
}

/// How one attempt ended, as the metric counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Delivered,
    /// The command could not be started.
    Spawn,
    /// The command exited with another status than 0.
    Exit,
    /// No TCP connection to the URL's host.
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The HTTP exchange failed before a status came back.
    Http,
    /// The server answered with a status other than 2xx.
    Status,
    /// No answer (or no exit) in time.
    Timeout,
}

impl Outcome {
    pub const ALL: [Self; 8] = [
        Self::Delivered,
        Self::Spawn,
        Self::Exit,
        Self::Connect,
        Self::Tls,
        Self::Http,
        Self::Status,
        Self::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Spawn => "spawn",
            Self::Exit => "exit",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Http => "http",
            Self::Status => "status",
            Self::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    witness: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabels {
    witness: &'static str,
}

/// The delivery metrics; cheap to clone (they share their values).
#[derive(Debug, Clone, Default)]
pub struct WitnessMetrics {
    deliveries: Family<DeliveryLabels, Counter>,
    pending: Family<WitnessLabels, Gauge>,
}

impl WitnessMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "audit_witness_deliveries",
            "Attempts to deliver a checkpoint line to an outside witness, by outcome",
            self.deliveries.clone(),
        );
        registry.register(
            "audit_witness_pending",
            "Checkpoint lines an outside witness has not accepted yet",
            self.pending.clone(),
        );
    }

    fn attempt(&self, witness: WitnessKind, outcome: Outcome) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                witness: witness.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    fn set_pending(&self, witness: WitnessKind, pending: i64) {
        self.pending
            .get_or_create(&WitnessLabels {
                witness: witness.as_str(),
            })
            .set(pending);
    }

    /// Every label combination of `witness` at zero, so that dashboards and
    /// alerts see the series before the first failure.
    fn zero(&self, witness: WitnessKind) {
        for outcome in Outcome::ALL {
            let _ = self.deliveries.get_or_create(&DeliveryLabels {
                witness: witness.as_str(),
                outcome: outcome.as_str(),
            });
        }
        self.set_pending(witness, 0);
    }
}

/// The configured witnesses, ready to send: built at start-up, so that a bad
/// CA file or an empty command stops the gateway instead of failing later.
pub struct Witnesses {
    targets: Vec<send::Target>,
    retry_max: Duration,
}

impl std::fmt::Debug for Witnesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = self.targets.iter().map(send::Target::kind).collect();
        f.debug_struct("Witnesses")
            .field("targets", &kinds)
            .finish_non_exhaustive()
    }
}

impl Witnesses {
    /// The witnesses `config.audit` names, or `None` when it names none.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let audit = &config.audit;
        let mut targets = Vec::new();
        if !audit.witness_command.is_empty() {
            targets.push(send::Target::command(audit.witness_command.clone()));
        }
        if let Some(url) = &audit.witness_url {
            let ca = audit.witness_ca_file.as_ref().map(|f| config.key_path(f));
            let tls = send::tls_config(ca.as_deref()).map_err(|problem| {
                ConfigError::new(&config.source, "audit.witness_ca_file", problem)
            })?;
            targets.push(send::Target::https(url.clone(), tls));
        }
        Ok((!targets.is_empty()).then(|| Self {
            targets,
            retry_max: Duration::from_secs(audit.witness_retry_max_secs),
        }))
    }

    /// Starts one delivery task per witness. `made` changes whenever this
    /// process stores a checkpoint.
    pub fn spawn(
        self,
        store: &Store,
        clock: &Arc<dyn Clock>,
        metrics: &WitnessMetrics,
        made: &tokio::sync::watch::Receiver<()>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.targets
            .into_iter()
            .map(|target| {
                metrics.zero(target.kind());
                let delivery = Delivery {
                    store: store.clone(),
                    clock: Arc::clone(clock),
                    metrics: metrics.clone(),
                    target,
                    retry_max: self.retry_max,
                };
                tokio::spawn(delivery.run(made.clone()))
            })
            .collect()
    }
}

/// One witness's delivery task.
struct Delivery {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: WitnessMetrics,
    target: send::Target,
    retry_max: Duration,
}

impl Delivery {
    async fn run(self, mut made: tokio::sync::watch::Receiver<()>) {
        let kind = self.target.kind();
        let mut retry = FIRST_RETRY;
        let mut cursor = loop {
            match repo::start_cursor(&self.store, kind.as_str(), self.now()).await {
                Ok(cursor) => break cursor,
                Err(e) => {
                    tracing::warn!(witness = kind.as_str(), error = %e, "cannot read the witness's delivery cursor; retrying");
                    tokio::time::sleep(self.retry_max.min(Duration::from_secs(5))).await;
                }
            }
        };
        loop {
            match self.round(&mut cursor).await {
                Ok(Round::CaughtUp) => {
                    retry = FIRST_RETRY;
                    // Woken by a new checkpoint of this process, or after a
                    // while for those of others.
                    let _ = tokio::time::timeout(IDLE_POLL, made.changed()).await;
                }
                Ok(Round::Delivered) => retry = FIRST_RETRY,
                Ok(Round::Failed) | Err(()) => {
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(self.retry_max.max(FIRST_RETRY));
                }
            }
        }
    }

    /// Sends what is pending after `cursor` (or after a replica's further
    /// cursor), in order, until one fails.
    async fn round(&self, cursor: &mut i64) -> Result<Round, ()> {
        let kind = self.target.kind();
        let stored = repo::cursor(&self.store, kind.as_str())
            .await
            .map_err(|e| {
                tracing::warn!(witness = kind.as_str(), error = %e, "cannot read the witness's delivery cursor");
            })?;
        *cursor = (*cursor).max(stored.unwrap_or(0));
        let (queued, pending) = repo::checkpoints_after(&self.store, *cursor, BATCH)
            .await
            .map_err(|e| {
                tracing::warn!(witness = kind.as_str(), error = %e, "cannot read the checkpoints to deliver");
            })?;
        self.metrics.set_pending(kind, pending);
        if queued.is_empty() {
            return Ok(Round::CaughtUp);
        }
        for (sent, QueuedCheckpoint { id, checkpoint }) in (1..).zip(queued) {
            let seq = checkpoint.seq;
            let line = Checkpoint::from_stored(checkpoint).witness_line();
            match self.target.send(&line).await {
                Ok(()) => {
                    self.metrics.attempt(kind, Outcome::Delivered);
                    self.metrics.set_pending(kind, pending - sent);
                    tracing::debug!(
                        witness = kind.as_str(),
                        seq,
                        "audit checkpoint delivered to the witness"
                    );
                    *cursor = id;
                    if let Err(e) =
                        repo::advance_cursor(&self.store, kind.as_str(), id, self.now()).await
                    {
                        // Sent again after a restart: at least once.
                        tracing::warn!(witness = kind.as_str(), error = %e, "cannot record a witness delivery");
                    }
                }
                Err(failure) => {
                    self.metrics.attempt(kind, failure.outcome());
                    tracing::warn!(
                        witness = kind.as_str(),
                        seq,
                        outcome = failure.outcome().as_str(),
                        detail = %failure,
                        "audit checkpoint not accepted by the witness; retrying"
                    );
                    return Ok(Round::Failed);
                }
            }
        }
        Ok(Round::Delivered)
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp_micros()
    }
}

/// How a delivery round ended.
enum Round {
    /// Nothing was pending.
    CaughtUp,
    /// A batch was sent; there may be more.
    Delivered,
    /// An attempt failed: wait before the next.
    Failed,
}

/// The CA bundle at one of the places Linux distributions keep it, for a
/// witness URL without `audit.witness_ca_file`.
pub(crate) fn system_ca_bundle() -> Option<PathBuf> {
    [
        "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
        "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
        "/etc/ssl/ca-bundle.pem",             // openSUSE
        "/etc/ssl/cert.pem",                  // macOS, Alpine
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
}
