//! Crash safety: a gateway killed with SIGKILL in the middle of a large NDJSON
//! batch, and restarted on the same database, has kept every referral whose
//! result line the client saw, holds nothing without its audit entry, and its
//! audit chain verifies.
//!
//! # How the kill lands mid-stream
//! The body is fed through a channel by a task that stays at most [`WINDOW`]
//! lines ahead of the result lines the test has read. The test kills the
//! gateway a random moment (under [`MAX_KILL_DELAY`]) after it has read
//! [`KILL_AFTER`] acknowledgements, reading on meanwhile: at that moment the
//! gateway holds up to a window of lines it has read or is writing (chunks of
//! 500, written by the intake while the next is read), and the sender still has
//! lines it has not sent — by construction, not by timing, so a slow machine
//! makes the test slower, not flaky. The random delay spreads the kill over
//! every phase of a chunk's write across runs; whatever the phase, every check
//! must hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;
use sqlx::Row as _;

use crate::backend_tests;
use crate::helpers::{AppOptions, Backend, TestApp, run_cli, spawn_app_with};

backend_tests!(a_batch_killed_mid_stream_keeps_what_it_acknowledged);

/// Lines in the batch; far more than are sent before the kill.
const LINES: usize = 6_000;
/// Acknowledged lines the client reads before it kills the gateway.
const KILL_AFTER: usize = 1_000;
/// How far the sender runs ahead of the acknowledgements: two chunks of 500 and
/// more, so the gateway has a chunk being written and one being read.
const WINDOW: usize = 1_200;
/// The longest wait between the [`KILL_AFTER`]th acknowledgement and the kill
/// (a debug build writes a chunk of 500 in a few hundred milliseconds).
const MAX_KILL_DELAY: Duration = Duration::from_millis(600);
/// The batch's Idempotency-Key, so that it can be resent after the restart.
const KEY: &str = "crash-batch-1";

fn token() -> String {
    crate::reads::token("pd")
}

fn referral_line(person: &crosswalk::normalize::IdentityInput) -> Vec<u8> {
    format!("{}\n", crate::exchange::synthetic_referral(person)).into_bytes()
}

async fn count(pool: &sqlx::AnyPool, sql: &str) -> usize {
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .expect("count")
        .get(0);
    usize::try_from(n).expect("a count")
}

/// How long after the [`KILL_AFTER`]th acknowledgement the kill comes: random
/// below [`MAX_KILL_DELAY`], so that over runs it lands in every phase of a
/// chunk's write (linking, inserting, the audit append, the commit, between
/// the commit and the result lines going out), or `CRASH_KILL_DELAY_MS` to
/// repeat a run. Any delay must pass; the one used is printed.
fn kill_delay() -> Duration {
    let ms = std::env::var("CRASH_KILL_DELAY_MS").map_or_else(
        |_| rand::random_range(0..MAX_KILL_DELAY.as_millis()),
        |ms| {
            ms.parse()
                .expect("CRASH_KILL_DELAY_MS is a number of milliseconds")
        },
    );
    eprintln!("kill {ms} ms after the {KILL_AFTER}th acknowledgement (CRASH_KILL_DELAY_MS={ms})");
    Duration::from_millis(u64::try_from(ms).expect("fits"))
}

/// What the client saw before the kill.
struct Cut {
    /// The ids of the acknowledged lines, in line order (lines 1..=len).
    acknowledged: Vec<String>,
    /// Lines handed (or being handed) to the request body before the gateway
    /// died: nothing beyond them can have reached it.
    sent: usize,
}

/// Streams the batch and SIGKILLs the gateway `kill_delay` after the
/// [`KILL_AFTER`]th acknowledgement (reading results meanwhile), while the
/// sender still has lines to send.
async fn stream_and_kill(app: &mut TestApp, lines: Vec<Vec<u8>>, kill_delay: Duration) -> Cut {
    let total = lines.len();
    let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0_usize);
    let sent = Arc::new(AtomicUsize::new(0));
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let sender = tokio::spawn({
        let sent = Arc::clone(&sent);
        async move {
            for (i, line) in lines.into_iter().enumerate() {
                // Line i (0-based) goes once fewer than WINDOW lines are
                // unacknowledged.
                if acked_rx
                    .wait_for(|&acked| i < acked + WINDOW)
                    .await
                    .is_err()
                {
                    return;
                }
                // Counted before it is handed over, so that `sent` is never
                // behind what the gateway can have read.
                sent.store(i + 1, Ordering::SeqCst);
                if body_tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
        }
    });
    let body = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = crate::helpers::client(None)
        .post(app.url("/v1/referrals/batch"))
        .bearer_auth(token())
        .header("content-type", "application/x-ndjson")
        .header("Idempotency-Key", KEY)
        .timeout(Duration::from_mins(5))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("the response starts while the body streams");
    assert_eq!(response.status().as_u16(), 200);

    let mut acknowledged = Vec::new();
    let mut pending = Vec::new();
    let mut kill_at = None;
    loop {
        if kill_at.is_none() && acknowledged.len() >= KILL_AFTER {
            kill_at = Some(tokio::time::Instant::now() + kill_delay);
        }
        let deadline =
            kill_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_mins(2));
        let Ok(bytes) = tokio::time::timeout_at(deadline, response.chunk()).await else {
            assert!(kill_at.is_some(), "results keep coming");
            break;
        };
        let bytes = bytes
            .expect("the result stream")
            .expect("the batch is not over before the kill");
        pending.extend_from_slice(&bytes);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let result: Value = serde_json::from_slice(&line).expect("a JSON result line");
            assert_eq!(result["line"], acknowledged.len() + 1, "in order: {result}");
            let id = result["referral"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("every line is a good referral: {result}"));
            acknowledged.push(id.to_owned());
        }
        acked_tx.send_replace(acknowledged.len());
    }
    let sent_before = sent.load(Ordering::SeqCst);
    app.kill().await;
    // Lines handed over while the kill was under way count as sent too.
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent_before < total,
        "the kill must land while the sender still has lines ({sent_before} of {total} sent)"
    );
    assert!(
        sent > acknowledged.len(),
        "the gateway had unacknowledged lines when it died ({sent} sent, {} acknowledged)",
        acknowledged.len()
    );
    drop(response);
    drop(acked_tx);
    sender.abort();
    Cut { acknowledged, sent }
}

/// Sends `body` (the lines sent before the kill) again under the same key and
/// returns the result lines.
async fn resend(app: &TestApp, body: Vec<u8>) -> Vec<Value> {
    let response = app
        .client
        .post(app.url("/v1/referrals/batch"))
        .bearer_auth(token())
        .header("content-type", "application/x-ndjson")
        .header("Idempotency-Key", KEY)
        .timeout(Duration::from_mins(5))
        .body(body)
        .send()
        .await
        .expect("the resent batch reaches the gateway");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("the result lines");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON result line"))
        .collect()
}

/// A gateway that signs a checkpoint every second, so that the witness file of
/// the one to be killed has some, possibly signed while the batch was being
/// written; returns once the first is there (of the start-up entries).
async fn gateway_to_kill(backend: Backend) -> TestApp {
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![(
                "CROSSWALK_AUDIT__CHECKPOINT_INTERVAL_SECS".to_owned(),
                "1".to_owned(),
            )],
        },
    )
    .await;
    let witness = app.db.witness_file();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !witness.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a first checkpoint");
    app
}

/// The referrals of `ids` that `GET /v1/referrals/{id}` does not answer `200`
/// for their submitter, with the status it gave.
async fn unreadable(app: &TestApp, ids: &[String]) -> Vec<(String, u16)> {
    let token = token();
    futures_util::stream::iter(ids)
        .map(|id| {
            let request = app
                .client
                .get(app.url(&format!("/v1/referrals/{id}")))
                .bearer_auth(&token);
            async move {
                let response = request.send().await.expect("the gateway answers");
                (id.clone(), response.status().as_u16())
            }
        })
        .buffer_unordered(8)
        .filter(|(_, status)| std::future::ready(*status != 200))
        .collect()
        .await
}

/// Every acknowledged referral survives a SIGKILL mid-batch; nothing is stored
/// without its audit entry; the chain verifies; and resending the batch under
/// its key after the restart stores each line exactly once.
async fn a_batch_killed_mid_stream_keeps_what_it_acknowledged(backend: Backend) {
    let mut app = gateway_to_kill(backend).await;
    let lines: Vec<Vec<u8>> = crosswalk::linkage::synth::people(16, LINES)
        .iter()
        .map(referral_line)
        .collect();
    let cut = stream_and_kill(&mut app, lines.clone(), kill_delay()).await;
    let acked = cut.acknowledged.len();

    let mut restarted = spawn_app_with(
        backend,
        AppOptions {
            env: vec![("DATABASE_URL".to_owned(), app.db.url.clone())],
        },
    )
    .await;

    // Every acknowledged referral is there, and readable by its submitter.
    let unreadable = unreadable(&restarted, &cut.acknowledged).await;
    assert!(
        unreadable.is_empty(),
        "{} of {acked} acknowledged referrals are not readable after the crash, e.g. {:?}",
        unreadable.len(),
        unreadable.first()
    );

    // What was stored lies between what was acknowledged and what was sent,
    // and every referral has its create entry (and only one).
    // (`restarted` runs on `app`'s database.)
    let pool = app.db_pool().await;
    let stored = count(&pool, "SELECT COUNT(*) FROM referrals").await;
    assert!(
        (acked..=cut.sent).contains(&stored),
        "{stored} referrals stored; {acked} acknowledged, {} sent",
        cut.sent
    );
    eprintln!(
        "killed after {acked} acknowledged of {} sent: {stored} stored",
        cut.sent
    );
    let created = "SELECT COUNT(*) FROM audit_log WHERE action = 'referral.create'";
    assert_eq!(
        count(&pool, created).await,
        stored,
        "a create entry per referral"
    );

    // Resent under the same key, the lines stored before the crash answer as
    // replays (the acknowledged ones with the ids the client saw), the others
    // are stored now: each line exactly once.
    let results = resend(&restarted, lines[..cut.sent].concat()).await;
    assert_eq!(results.len(), cut.sent, "a result per resent line");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["line"], i + 1, "in order: {result}");
        assert!(result["referral"]["id"].is_string(), "{result}");
        if let Some(id) = cut.acknowledged.get(i) {
            assert_eq!(result["referral"]["id"], id.as_str(), "the same referral");
        }
        if i < acked {
            assert_eq!(
                result["replayed"], true,
                "stored before the crash: {result}"
            );
        }
    }
    // (On PostgreSQL the intake's writers may commit a later chunk before an
    // earlier one, so the lines stored need not be the first ones.)
    let replayed = results.iter().filter(|r| r["replayed"] == true).count();
    assert_eq!(
        replayed, stored,
        "a replay for every line stored before the crash"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM referrals").await,
        cut.sent
    );
    assert_eq!(count(&pool, created).await, cut.sent);
    pool.close().await;

    // The chain verifies, against the crashed gateway's witness file too, and
    // its rows and create entries account for each other.
    restarted.stop().await;
    let witness = app.db.witness_file();
    let witness = witness.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) = run_cli(&["audit", "verify", "--checkpoint", witness], &app.db);
    assert_eq!(
        code,
        Some(0),
        "audit verify after the crash: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("every audited row has its create entry and every create entry its row"),
        "{stdout}"
    );
}
