//! What the audit log costs and how fast it verifies.
//!
//! `cargo bench --bench audit` prints, on SQLite (and on PostgreSQL when
//! `TEST_DATABASE_URL` names a server; each run creates and drops its own
//! database):
//! 1. appends/s with 1, 4 and 16 concurrent writer tasks, one entry per
//!    transaction and 100 per transaction, with transaction latency percentiles;
//! 2. the latency of single-entry write transactions alone and while a flood
//!    of refusals (two tasks recording ~64 per millisecond each) goes through
//!    the refusal writer, and how that flood was recorded;
//! 3. the overhead of auditing a representative write: registering an identity
//!    (`SubjectRegistry::register`: normalize, link, seal, insert) in its own
//!    transaction, with and without its audit entry (target: under 10%);
//! 4. `crosswalk audit verify` throughput on a log of `AUDIT_BENCH_ENTRIES`
//!    entries (default 1,000,000; target: at least 500,000 entries/s) and its
//!    peak memory (`VmHWM`, reset through `/proc/self/clear_refs` just before).
//!
//! Plain `Instant` timing on a multi-threaded Tokio runtime.
//! `AUDIT_BENCH_ONLY=concurrency|flood|overhead|verify` runs one part.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crosswalk::audit::checkpoint::CheckpointSigner;
use crosswalk::audit::{Event, Released, append};
use crosswalk::clock::{Clock as _, SystemClock};
use crosswalk::normalize::{NormalizeOptions, normalize};
use crosswalk::store::Store;
use crosswalk::subjects::SubjectRegistry;
use crosswalk::vault::{RotationPolicy, Vault};

/// How long each concurrency configuration runs.
const CONCURRENCY_RUN: Duration = Duration::from_secs(3);
const WRITERS: [usize; 3] = [1, 4, 16];
const BATCH: usize = 100;
/// Registrations per variant in the overhead measurement.
const REGISTRATIONS: usize = 1_500;
/// Entries per transaction when filling the log for the verify measurement.
const FILL_BATCH: usize = 2_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let entries: usize = std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut backends = vec![Backend::sqlite()];
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) => backends.push(Backend::Postgres { admin }),
        Err(_) => println!("(PostgreSQL skipped: set TEST_DATABASE_URL to include it)"),
    }
    // `AUDIT_BENCH_ONLY=verify` (or concurrency, flood, overhead) runs one part.
    let only = std::env::var("AUDIT_BENCH_ONLY").ok();
    let runs = |part: &str| only.as_deref().is_none_or(|only| only == part);
    for backend in &backends {
        println!("\n=== {} ===", backend.name());
        if runs("concurrency") {
            concurrency(backend).await;
        }
        if runs("flood") {
            refusal_flood(backend).await;
        }
        if runs("overhead") {
            overhead(backend).await;
        }
        if runs("verify") {
            verify(backend, entries).await;
        }
    }
}

/// A database to run on: a fresh SQLite file, or a fresh PostgreSQL database.
enum Backend {
    Sqlite { dir: tempfile::TempDir },
    Postgres { admin: String },
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "SQLite",
            Self::Postgres { .. } => "PostgreSQL",
        }
    }

    /// A fresh, migrated database and how to drop it.
    async fn fresh(&self, name: &str) -> Fresh {
        match self {
            Self::Sqlite { dir } => {
                let path = dir.path().join(format!("{name}.db"));
                let store = Store::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .expect("SQLite");
                store.migrate().await.expect("migrate");
                Fresh {
                    store,
                    drop_sql: None,
                    postgres_url: None,
                }
            }
            Self::Postgres { admin } => {
                use sqlx::Connection as _;
                let db = format!("crosswalk_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let mut url = url::Url::parse(admin).expect("URL");
                url.set_path(&db);
                let store = Store::connect(url.as_str()).await.expect("connect");
                store.migrate().await.expect("migrate");
                Fresh {
                    store,
                    drop_sql: Some((admin.clone(), format!("DROP DATABASE {db} WITH (FORCE)"))),
                    postgres_url: Some(url.to_string()),
                }
            }
        }
    }
}

struct Fresh {
    store: Store,
    drop_sql: Option<(String, String)>,
    /// The database's own URL, on PostgreSQL.
    postgres_url: Option<String>,
}

impl Fresh {
    async fn close(self) {
        use sqlx::Connection as _;
        self.store.close().await;
        if let Some((admin, sql)) = self.drop_sql {
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("drop database");
        }
    }
}

/// A disclosure-sized entry: ids, a purpose, five fields, the policy version.
fn event(i: usize) -> Event {
    Event::new("cbo-north", "referral.read")
        .with_purpose("CAREMGT")
        .with_record("referral", format!("0190f3a2-7c1e-7d4b-9a4e-{i:012}"))
        .with_subject(format!("5f0e9c1a-2b3d-4e5f-8a9b-{:012}", i % 50_000))
        .with_fields(vec![
            ("subject.given_name".into(), Released::Released),
            ("subject.phone".into(), Released::Released),
            ("subject.dob".into(), Released::Generalized),
            ("subject_pseudonym".into(), Released::Pseudonymized),
            ("resources".into(), Released::Released),
        ])
        .with_decision(
            "9c1f3e7a5b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e",
            "assigned CBO: minimum contact details to follow up",
        )
}

async fn concurrency(backend: &Backend) {
    println!(
        "\nappends under concurrent writers ({}s each)",
        CONCURRENCY_RUN.as_secs()
    );
    println!(
        "{:<10} {:>8} {:>12} {:>10} {:>10} {:>10}",
        "entries/tx", "writers", "entries/s", "tx/s", "p50 ms", "p99 ms"
    );
    for per_tx in [1, BATCH] {
        for writers in WRITERS {
            let fresh = backend
                .fresh(&format!("concurrency_{per_tx}_{writers}"))
                .await;
            let deadline = Instant::now() + CONCURRENCY_RUN;
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let store = fresh.store.clone();
                    tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        let mut n = w * 1_000_000;
                        while Instant::now() < deadline {
                            let events: Vec<Event> = (n..n + per_tx).map(event).collect();
                            n += per_tx;
                            let start = Instant::now();
                            let mut tx = store.begin().await.expect("begin");
                            append(&mut tx, &events, &SystemClock)
                                .await
                                .expect("append");
                            tx.commit().await.expect("commit");
                            latencies.push(start.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let started = Instant::now();
            let mut latencies = Vec::new();
            for task in tasks {
                latencies.extend(task.await.expect("writer"));
            }
            let elapsed = started.elapsed();
            latencies.sort();
            let txs = latencies.len();
            println!(
                "{:<10} {:>8} {:>12.0} {:>10.0} {:>10.2} {:>10.2}",
                per_tx,
                writers,
                per_sec(txs * per_tx, elapsed),
                per_sec(txs, elapsed),
                ms(percentile(&latencies, 500)),
                ms(percentile(&latencies, 990)),
            );
            fresh.close().await;
        }
    }
}

/// Single-entry write transactions for `CONCURRENCY_RUN`; their latencies.
async fn timed_writes(store: &Store) -> Vec<Duration> {
    let deadline = Instant::now() + CONCURRENCY_RUN;
    let mut latencies = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        let start = Instant::now();
        let mut tx = store.begin().await.expect("begin");
        append(&mut tx, &[event(n)], &SystemClock)
            .await
            .expect("append");
        tx.commit().await.expect("commit");
        latencies.push(start.elapsed());
        n += 1;
    }
    latencies.sort();
    latencies
}

async fn refusal_flood(backend: &Backend) {
    use crosswalk::audit::refusals::{Refusal, Refusals};
    let fresh = backend.fresh("refusal_flood").await;
    let quiet = timed_writes(&fresh.store).await;

    let (refusals, writer) = Refusals::start(fresh.store.clone(), Arc::new(SystemClock), 1024);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let refusals = refusals.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..64 {
                        refusals.record(Refusal::authentication(
                            None,
                            "bad_signature",
                            "GET",
                            "/v1/whoami",
                            None,
                        ));
                    }
                    sent += 64;
                    // ~64 refusals per millisecond per task: far more than a
                    // gateway's TLS and HTTP layers could refuse, while leaving the
                    // CPU to the writes being measured.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                sent
            })
        })
        .collect();
    let flooded = timed_writes(&fresh.store).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for flooder in flooders {
        sent += flooder.await.expect("flooder");
    }
    writer.shutdown().await;
    let (single, summaries, summarized) = tally_refusals(&fresh.store).await;

    println!(
        "\nsingle-entry writes while refusals flood ({}s each)",
        CONCURRENCY_RUN.as_secs()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "", "writes/s", "p50 ms", "p99 ms"
    );
    for (name, latencies) in [("alone", &quiet), ("during the flood", &flooded)] {
        println!(
            "{name:<22} {:>10.0} {:>10.2} {:>10.2}",
            per_sec(latencies.len(), CONCURRENCY_RUN),
            ms(percentile(latencies, 500)),
            ms(percentile(latencies, 990))
        );
    }
    println!(
        "the flood sent {sent} refusals ({:.0}/s): {single} recorded one by one, {summarized} \
         counted in {summaries} refusal.summary entries, {} unrecorded",
        per_sec(usize::try_from(sent).unwrap_or(usize::MAX), CONCURRENCY_RUN),
        refusals.unrecorded()
    );
    fresh.close().await;
}

/// Pages through the log: refusal entries, summary entries, and the refusals
/// the summaries count.
async fn tally_refusals(store: &Store) -> (u64, u64, u64) {
    let (mut single, mut summaries, mut summarized) = (0, 0, 0);
    let mut cursor = None;
    loop {
        let mut tx = store.begin_read().await.expect("read");
        let page = crosswalk::audit::read::list_entries(
            &mut tx,
            &crosswalk::store::audit::EntryFilter::default(),
            cursor,
            1000,
        )
        .await
        .expect("list");
        drop(tx);
        for (entry, _) in &page.entries {
            match entry.action.as_str() {
                "refusal" => single += 1,
                "refusal.summary" => {
                    summaries += 1;
                    let detail: serde_json::Value =
                        serde_json::from_str(entry.detail.as_deref().unwrap_or("{}"))
                            .expect("JSON");
                    summarized += detail["count"].as_u64().unwrap_or(0);
                }
                _ => {}
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (single, summaries, summarized),
        }
    }
}

/// Registering identities, each in its own transaction, alternately on two
/// databases: one without its audit entry, one with it.
async fn overhead(backend: &Backend) {
    let config = crosswalk::config::Config::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml"),
        std::iter::empty(),
    )
    .expect("example config");
    let keys = crosswalk::secrets::GatewayKeys::load(&config).expect("example keys");
    let options =
        NormalizeOptions::new(phonenumber::country::Id::US, SystemClock.now().date_naive());
    let people = crosswalk::linkage::synth::people(7, REGISTRATIONS);
    let identities: Vec<_> = people
        .iter()
        .map(|p| normalize(p, &options).expect("synthetic people normalize"))
        .collect();

    let plain = backend.fresh("overhead_plain").await;
    let audited = backend.fresh("overhead_audited").await;
    let plain_registry = open_registry(&plain.store, &keys).await;
    let audited_registry = open_registry(&audited.store, &keys).await;

    let mut without = Vec::with_capacity(REGISTRATIONS);
    let mut with = Vec::with_capacity(REGISTRATIONS);
    for (i, (input, identity)) in people.iter().zip(&identities).enumerate() {
        // Alternate which goes first, so neither always runs on a warmer cache.
        for audit in if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            let (store, registry, times) = if audit {
                (&audited.store, &audited_registry, &mut with)
            } else {
                (&plain.store, &plain_registry, &mut without)
            };
            let start = Instant::now();
            let mut tx = store.begin().await.expect("begin");
            let linked = registry
                .register(&mut tx, "pd", input, identity, &SystemClock)
                .await
                .expect("register");
            if audit {
                let entry = Event::new("pd", "identity.register")
                    .with_purpose("CAREMGT")
                    .with_record("identity", linked.identity_id.clone())
                    .with_subject(linked.subject_id.clone());
                append(&mut tx, &[entry], &SystemClock)
                    .await
                    .expect("append");
            }
            tx.commit().await.expect("commit");
            times.push(start.elapsed());
            black_box(linked);
        }
    }
    let mean = |t: &[Duration]| t.iter().sum::<Duration>() / u32::try_from(t.len()).unwrap_or(1);
    let (mean_without, mean_with) = (mean(&without), mean(&with));
    without.sort();
    with.sort();
    println!(
        "\nauditing overhead on SubjectRegistry::register, one per transaction ({REGISTRATIONS} each)"
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "", "mean ms", "p50 ms", "p99 ms"
    );
    for (name, times, mean) in [
        ("without audit entry", &without, mean_without),
        ("with audit entry", &with, mean_with),
    ] {
        println!(
            "{name:<22} {:>10.3} {:>10.3} {:>10.3}",
            ms(mean),
            ms(percentile(times, 500)),
            ms(percentile(times, 990))
        );
    }
    let overhead = |a: Duration, b: Duration| (b.as_secs_f64() / a.as_secs_f64() - 1.0) * 100.0;
    println!(
        "overhead: {:+.1}% on the mean, {:+.1}% on the median (target < 10%)",
        overhead(mean_without, mean_with),
        overhead(percentile(&without, 500), percentile(&with, 500))
    );
    plain.close().await;
    audited.close().await;
}

async fn open_registry(store: &Store, keys: &crosswalk::secrets::GatewayKeys) -> SubjectRegistry {
    let vault = Vault::new(keys.vault.clone(), store.clone(), RotationPolicy::default());
    SubjectRegistry::open(store, &keys.master, vault)
        .await
        .expect("registry")
}

/// Lets PostgreSQL finish with the fill before verify is timed: a million
/// fresh rows start an autovacuum and a checkpoint that otherwise run during
/// the verify and take a core from it (the figure swung between ~430,000 and
/// ~620,000 entries/s by that alone). Verification of a real log runs on a
/// settled database. SQLite has nothing running in the background.
async fn settle(fresh: &Fresh) {
    use sqlx::Connection as _;
    if let Some(url) = &fresh.postgres_url {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        for statement in ["VACUUM (ANALYZE) audit_log", "CHECKPOINT"] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }
}

async fn verify(backend: &Backend, entries: usize) {
    let fresh = backend.fresh("verify").await;
    let started = Instant::now();
    let mut written = 0;
    while written < entries {
        let n = FILL_BATCH.min(entries - written);
        let events: Vec<Event> = (written..written + n).map(event).collect();
        let mut tx = fresh.store.begin().await.expect("begin");
        append(&mut tx, &events, &SystemClock)
            .await
            .expect("append");
        tx.commit().await.expect("commit");
        written += n;
    }
    let fill = started.elapsed();
    println!(
        "\nverify: filled {entries} entries in {:.1}s ({:.0} appends/s in {FILL_BATCH}-entry transactions)",
        fill.as_secs_f64(),
        per_sec(entries, fill)
    );
    let key_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keys-example/gateway/signing.key.pem");
    let signer = Arc::new(
        CheckpointSigner::from_pkcs8_pem(&std::fs::read_to_string(key_path).expect("key"))
            .expect("key"),
    );
    let key = signer.public_key().clone();
    let witness = tempfile::tempdir().expect("dir");
    let checkpointer = crosswalk::audit::checkpoint::Checkpointer::new(
        fresh.store.clone(),
        signer,
        Arc::new(SystemClock),
        witness.path().join("witness.jsonl"),
    );
    checkpointer
        .checkpoint(crosswalk::audit::checkpoint::When::Always)
        .await
        .expect("checkpoint");
    settle(&fresh).await;

    let rss_before = status_kib("VmRSS");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let verified = crosswalk::audit::verify::verify(&fresh.store, &key, None)
        .await
        .expect("intact");
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let peak = status_kib("VmHWM");
    assert_eq!(verified.entries, i64::try_from(entries).expect("fits"));
    println!(
        "verify: {} entries in {:.2}s = {:.0} entries/s (target >= 500,000)",
        verified.entries,
        elapsed.as_secs_f64(),
        per_sec(entries, elapsed)
    );
    println!(
        "verify used {cpu:.2} CPU-seconds in this process ({:.0} entries per CPU-second{})",
        f64::from(u32::try_from(entries).unwrap_or(u32::MAX)) / cpu,
        match backend {
            Backend::Sqlite { .. } => ", SQLite's work included",
            Backend::Postgres { .. } => "; the server's work is in its own processes",
        }
    );
    println!(
        "verify memory: RSS {} MiB before; peak (VmHWM) during verify {} MiB{}",
        rss_before / 1024,
        peak / 1024,
        if reset {
            ""
        } else {
            " (could not reset VmHWM: this is the process's lifetime peak)"
        }
    );
    fresh.close().await;
}

/// User and system CPU time of this process so far (`/proc/self/stat`, in
/// clock ticks of 1/100 s), to read figures taken on a busy machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<u32> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    ticks.iter().map(|&t| f64::from(t)).sum::<f64>() / 100.0
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// The value at `per_mille` thousandths of a sorted sample.
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

fn per_sec(count: usize, elapsed: Duration) -> f64 {
    u32::try_from(count).map_or(f64::MAX, f64::from) / elapsed.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
