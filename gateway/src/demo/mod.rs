//! `crosswalk demo`: the whole exchange in a minute, on synthetic data.
//!
//! Builds the gateway exactly as `serve` does (same configuration, keys-example
//! by default), seeds it with a few hundred generated referrals, outcomes and
//! health cases ([`seed`]), then serves and prints a guide ([`guide`]): the URL,
//! partner tokens and `curl` commands to paste.
//!
//! # Decisions
//! - **Its own database.** `sqlite://data/demo.db` and
//!   `./data/demo-audit-checkpoints.jsonl`, unless `DATABASE_URL` (or
//!   `CROSSWALK_SERVER__DATABASE_URL`) and `CROSSWALK_AUDIT__CHECKPOINT_FILE` say
//!   otherwise, so the demo never writes into `data/crosswalk.db` or its witness
//!   file.
//! - **Seeds once.** A database whose audit log holds a `referral.create` entry is
//!   served as it is, and the guide says so. There is no `--reseed`: the audit log
//!   is append-only by design, so starting over means deleting the demo database.
//! - **Same path as real data.** Every record goes through
//!   [`crate::exchange::Exchange`] — checked, sealed, linked, and written in one
//!   transaction with its audit entry — so `crosswalk audit verify` covers it.
//! - **A simulated history.** Outcomes cannot predate the gateway receiving the
//!   referral, so a history cannot be written "now" with past dates. Instead the
//!   gateway is built on a [`DemoClock`] pinned to 90 days ago; seeding moves it
//!   forward to each write's time, and then it is released to the wall clock
//!   before the listener opens. The audit log therefore reads as 90 days of
//!   operation, in order. A demo database is not evidence of anything.
//! - **No identity printed.** The seeded people are generated and marked fake
//!   (see [`seed`]); the guide prints ids, codes, tokens and one made-up example
//!   person in the `curl` body, never a seeded identity.

mod guide;
mod seed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};

use crate::audit::checkpoint::When;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::server::{Gateway, serve_gateway};
use crate::store::Store;
use crate::store::audit::EntryFilter;

/// The demo's database when the environment names none.
pub const DEMO_DATABASE_URL: &str = "sqlite://data/demo.db";
/// The demo's witness file when the environment names none.
pub const DEMO_CHECKPOINT_FILE: &str = "./data/demo-audit-checkpoints.jsonl";

/// How `crosswalk demo` was invoked, for the commands the guide prints.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `--config`, when it is not the default (the printed commands repeat it).
    pub config: Option<PathBuf>,
    /// Whether the database URL came from the environment: then the guide does
    /// not print it (a PostgreSQL URL may hold a password).
    pub database_from_env: bool,
}

/// Points `config` at the demo's own database and witness file unless the
/// environment chose them; returns whether the database URL came from there.
pub fn use_demo_storage(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> bool {
    let database_from_env =
        env("DATABASE_URL").is_some() || env("CROSSWALK_SERVER__DATABASE_URL").is_some();
    if !database_from_env {
        DEMO_DATABASE_URL.clone_into(&mut config.server.database_url);
    }
    if env("CROSSWALK_AUDIT__CHECKPOINT_FILE").is_none() {
        config.audit.checkpoint_file = PathBuf::from(DEMO_CHECKPOINT_FILE);
    }
    database_from_env
}

/// `crosswalk demo`: seed if the database is fresh, then serve with the guide.
pub async fn run(config: Config, invocation: Invocation) -> anyhow::Result<()> {
    for (partner, kind) in [
        (seed::POLICE, "police"),
        (seed::HEALTH, "health"),
        ("cbo-north", "cbo"),
        ("admin", "admin"),
    ] {
        anyhow::ensure!(
            config.partners.contains_key(partner),
            "the demo writes as the example partners; {partner} ({kind}) is not in {}",
            config.source.display()
        );
    }
    let database_url = config.server.database_url.clone();
    let already_seeded = {
        let store = Store::connect(&database_url)
            .await
            .context("opening the demo database (DATABASE_URL)")?;
        store.migrate().await.context("applying migrations")?;
        let state = inspect(&store).await;
        store.close().await;
        state?.seeded
    };

    let now = SystemClock.now();
    let clock = Arc::new(DemoClock::default());
    if !already_seeded {
        // The registry's first audit entries come before the history they frame.
        clock.pin(now - TimeDelta::days(seed::DAYS) - TimeDelta::hours(1));
    }
    let gateway = Gateway::build(
        config,
        Arc::clone(&clock) as Arc<dyn Clock>,
        crate::randomness::os(),
    )
    .await?;
    let seeded = if already_seeded {
        None
    } else {
        println!("seeding the demo database with synthetic data (once; this takes a moment)...");
        let seeded = seed::seed(&gateway.exchange, &clock, seed::plan(now))
            .await
            .context(
                "seeding the demo database; delete it (and its -wal/-shm files) and start again",
            )?;
        clock.release();
        // Signed at once, so that `audit verify` has a checkpoint to check against.
        gateway.checkpointer.checkpoint(When::IfMoved).await?;
        Some(seeded)
    };
    clock.release();
    let state = inspect(&gateway.store).await?;
    let guide = guide::Guide {
        config: Arc::clone(&gateway.config),
        invocation,
        database_url,
        seeded,
        state,
    };
    serve_gateway(gateway, move |addr: SocketAddr| {
        if let Err(e) = guide.print(addr, &SystemClock) {
            eprintln!("crosswalk demo: cannot print the guide: {e:#}");
        }
    })
    .await
}

/// What the database already holds, read from the audit log (ids and codes
/// only; this is the gateway reading its own log, as `audit verify` does).
#[derive(Debug, Default)]
pub(crate) struct DemoState {
    /// Whether any referral was ever written.
    seeded: bool,
    /// The newest referral routed to `cbo-north`: the guide's example for reading
    /// a referral and posting an outcome. Newest, because the history leaves the
    /// last days' referrals without outcomes, so it is still open.
    sample_referral: Option<String>,
}

async fn inspect(store: &Store) -> anyhow::Result<DemoState> {
    const PAGE: i64 = 500;
    let filter = EntryFilter {
        actor: Some(seed::POLICE.to_owned()),
        action: Some("referral.create".to_owned()),
        ..EntryFilter::default()
    };
    let mut state = DemoState::default();
    let mut tx = store.begin_read().await?;
    let mut after = 0;
    loop {
        let page = crate::store::audit::list(&mut tx, &filter, after, PAGE).await?;
        for (entry, _hash) in &page {
            state.seeded = true;
            after = entry.seq;
            let to_north = entry
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .is_some_and(|d| d["assigned_cbo"] == "cbo-north");
            if to_north {
                state.sample_referral.clone_from(&entry.record_id);
            }
        }
        if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
            break;
        }
    }
    tx.rollback().await?;
    Ok(state)
}

/// The demo's clock: pinned to a chosen instant while the history is written,
/// the wall clock once released. Pins only move forward, so record ids (UUID v7)
/// and audit times stay in order.
#[derive(Debug)]
pub struct DemoClock {
    /// Unix microseconds, or [`RELEASED`].
    pinned: AtomicI64,
}

const RELEASED: i64 = i64::MIN;

impl Default for DemoClock {
    fn default() -> Self {
        Self {
            pinned: AtomicI64::new(RELEASED),
        }
    }
}

impl DemoClock {
    /// Stands the clock at `at`, or leaves it where it is if that is later.
    pub fn pin(&self, at: DateTime<Utc>) {
        let micros = at.timestamp_micros();
        let _ = self
            .pinned
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                (current == RELEASED || current < micros).then_some(micros)
            });
    }

    /// Follows the wall clock from now on.
    pub fn release(&self) {
        self.pinned.store(RELEASED, Ordering::SeqCst);
    }
}

impl Clock for DemoClock {
    fn now(&self) -> DateTime<Utc> {
        match self.pinned.load(Ordering::SeqCst) {
            RELEASED => SystemClock.now(),
            micros => DateTime::from_timestamp_micros(micros).unwrap_or_else(|| SystemClock.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_clock_moves_forward_only_then_follows_the_wall_clock() {
        let clock = DemoClock::default();
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a valid time");
        clock.pin(t);
        clock.pin(t - TimeDelta::hours(1));
        assert_eq!(clock.now(), t);
        clock.pin(t + TimeDelta::hours(1));
        assert_eq!(clock.now(), t + TimeDelta::hours(1));
        clock.release();
        assert!(clock.now() > t + TimeDelta::days(365));
    }
}
