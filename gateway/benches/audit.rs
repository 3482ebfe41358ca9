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
//!    peak memory (`VmHWM`, reset through `/proc/self/clear_refs` just before),
//!    with and without the cross-check of the audited tables' rows against the
//!    create entries (alternately, best of `AUDIT_BENCH_VERIFY_RUNS`, default
//!    2, each), the cross-check's share of the time, and the time to read the
//!    rows' ids alone.
//!
//! The verify log is filled consistently (`AUDIT_BENCH_FILL=mixed`, the
//! default): in every 20 entries, 3 `referral.create` (each with its referral
//! and first assignment rows), 3 `outcome.create`, a `referral.reassign`, a
//! `case.create` and a `consent.create`, each with its row, and 11
//! disclosures; every 10,000th entry is an `export.request` with its export.
//! That is 45% create entries and 12 rows per 20 entries, more writes than a
//! real log (whose reads outnumber them), so the cross-check's share is
//! pessimistic. `AUDIT_BENCH_FILL=reads` fills with disclosures only, as the
//! bench did before the cross-check (nothing to compare: the walk's own
//! figure, comparable with earlier runs).
//!
//! Plain `Instant` timing on a multi-threaded Tokio runtime.
//! `AUDIT_BENCH_ONLY=concurrency|flood|overhead|verify` runs one part.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crosswalk::audit::checkpoint::CheckpointSigner;
use crosswalk::audit::verify::{VerifyOptions, verify_with};
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
/// The mixed fill's cycle: which entry of every 20 is which.
const CYCLE: usize = 20;
/// One `export.request` (with its export) every this many entries.
const EXPORT_EVERY: usize = 10_000;

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
                let db = format!(
                    "crosswalk_bench_{}",
                    crosswalk::randomness::unique_name_suffix(&crosswalk::randomness::OsRandomness)
                        .expect("randomness")
                );
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
    let vault = Vault::new(
        keys.vault.clone(),
        store.clone(),
        RotationPolicy::default(),
        crosswalk::randomness::os(),
    );
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
        for statement in ["VACUUM (ANALYZE)", "CHECKPOINT"] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }
}

/// How the verify log is filled (`AUDIT_BENCH_FILL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Creates with their rows, and disclosures: a consistent database.
    Mixed,
    /// Disclosures only, no rows.
    Reads,
}

/// Rows for one transaction of the mixed fill, as SQL value lists per table.
#[derive(Default)]
struct FillRows {
    referrals: Vec<String>,
    assignments: Vec<String>,
    outcomes: Vec<String>,
    cases: Vec<String>,
    consents: Vec<String>,
    exports: Vec<String>,
}

/// A time-ordered id like the gateway's.
fn new_id() -> String {
    use crosswalk::clock::Clock as _;
    static IDS: std::sync::LazyLock<crosswalk::randomness::RecordIds> =
        std::sync::LazyLock::new(|| {
            crosswalk::randomness::RecordIds::new(crosswalk::randomness::os())
        });
    IDS.next(crosswalk::clock::SystemClock.now())
}

/// Entry `i` of the mixed fill, and the rows it creates. `cycle_referrals`
/// holds the referrals created earlier in the entry's cycle.
fn mixed_entry(
    i: usize,
    sqlite: bool,
    cycle_referrals: &mut Vec<String>,
    rows: &mut FillRows,
) -> Event {
    let at = 1_795_000_000_000_000_i64 + i64::try_from(i).unwrap_or(0);
    let subject = format!("5f0e9c1a-2b3d-4e5f-8a9b-{:012}", i % 50_000);
    let blob = if sqlite { "X'00'" } else { "'\\x00'::bytea" };
    let referral = |n: usize| cycle_referrals[n % cycle_referrals.len()].clone();
    if i % EXPORT_EVERY == EXPORT_EVERY - 1 {
        let id = new_id();
        rows.exports.push(format!(
            "('{id}', 'demo-study', 'evaluator', 'HRESCH', '{{}}', 'ready', {at}, NULL, NULL, NULL)"
        ));
        return Event::new("evaluator", "export.request")
            .with_purpose("HRESCH")
            .with_record("export", id)
            .with_detail(serde_json::json!({"study": "demo-study"}));
    }
    match i % CYCLE {
        0 | 5 | 10 => {
            let id = new_id();
            rows.referrals.push(format!(
                "('{id}', 'pd', 's', 'i', 'cbo-north', 'new', 'open', {at}, 'd1', NULL, '[]', \
                 NULL, {at}, {at}, NULL)"
            ));
            rows.assignments.push(format!(
                "('{}', '{id}', NULL, 'cbo-north', 'submitted', 'default', NULL, NULL, 'pd', {at})",
                new_id()
            ));
            cycle_referrals.push(id.clone());
            Event::new("pd", "referral.create")
                .with_purpose("CAREMGT")
                .with_record("referral", id)
                .with_subject(subject)
                .with_detail(serde_json::json!({"assigned_cbo": "cbo-north", "route": "default"}))
        }
        1 | 6 | 11 => {
            let (id, of) = (new_id(), referral((i % CYCLE) / 5));
            rows.outcomes.push(format!(
                "('{id}', '{of}', 'cbo-north', 'contacted', NULL, {at}, {at}, NULL)"
            ));
            Event::new("cbo-north", "outcome.create")
                .with_purpose("CAREMGT")
                .with_record("outcome", id)
                .with_subject(subject)
                .with_detail(serde_json::json!({"referral_id": of}))
        }
        15 => {
            let of = referral(2);
            rows.assignments.push(format!(
                "('{}', '{of}', 'cbo-north', 'cbo-south', 'declined', 'explicit', NULL, \
                 'capacity', 'cbo-north', {at})",
                new_id()
            ));
            Event::new("cbo-north", "referral.reassign")
                .with_purpose("CAREMGT")
                .with_record("referral", of)
                .with_subject(subject)
                .with_detail(serde_json::json!({"from": "cbo-north", "to": "cbo-south",
                    "cause": "declined", "reason": "capacity"}))
        }
        16 => {
            let id = new_id();
            rows.cases.push(format!(
                "('{id}', 'county-health', 's', 'i', {blob}, 'mental_health', 'active', 0, \
                 {at}, {at}, {blob})"
            ));
            Event::new("county-health", "case.create")
                .with_purpose("CAREMGT")
                .with_record("case_status", id)
                .with_subject(subject)
                .with_detail(serde_json::json!({"part2": false}))
        }
        17 => {
            let (id, on) = (new_id(), referral(0));
            rows.consents.push(format!(
                "('{id}', 's', '{on}', NULL, 'cbo-north', 'written', '[\"police\"]', \
                 '[\"CAREMGT\"]', '[\"operational\"]', '[]', 0, {at}, {}, 'sha256:{}', {at}, \
                 NULL, NULL)",
                at + 1,
                "0".repeat(64)
            ));
            Event::new("cbo-north", "consent.create")
                .with_purpose("CAREMGT")
                .with_record("consent", id.clone())
                .with_subject(subject)
                .with_consent(id)
                .with_detail(
                    serde_json::json!({"method": "written", "part2": false, "on": "referral"}),
                )
        }
        _ => event(i),
    }
}

/// Inserts one transaction's rows, a statement per table.
async fn insert_rows(tx: &mut crosswalk::store::Tx<'_>, rows: FillRows) {
    let tables = [
        (
            "referrals",
            "id, submitted_by, subject_id, identity_id, assigned_cbo, status, \
          workflow_state, contact_at, district, arrested, resources, follow_up_by, created_at, \
          updated_at, sealed",
            rows.referrals,
        ),
        (
            "referral_assignments",
            "id, referral_id, from_cbo, to_cbo, cause, route, rule_index, \
          reason, assigned_by, at",
            rows.assignments,
        ),
        (
            "outcomes",
            "id, referral_id, recorded_by, kind, resource, occurred_at, created_at, \
          sealed",
            rows.outcomes,
        ),
        (
            "cases",
            "id, submitted_by, subject_id, identity_id, case_key, program, status, part2, \
          effective_at, created_at, sealed",
            rows.cases,
        ),
        (
            "consents",
            "id, subject_id, referral_id, case_id, recorded_by, method, recipients, \
          purposes, classes, part2_recipients, part2, period_start, period_end, evidence_hash, \
          created_at, revoked_at, revoked_by",
            rows.consents,
        ),
        (
            "exports",
            "id, study_id, requested_by, purpose, request, state, requested_at, \
          finished_at, file_name, manifest_jws",
            rows.exports,
        ),
    ];
    for (table, columns, values) in tables {
        if values.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO {table} ({columns}) VALUES {}",
            values.join(", ")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut **tx)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
    }
}

/// Fills `entries` entries (and, mixed, their rows); returns how many rows.
async fn fill_log(fresh: &Fresh, entries: usize, fill: Fill) -> usize {
    let sqlite = fresh.postgres_url.is_none();
    let mut tx = fresh.store.begin().await.expect("begin");
    // The one person every row points at.
    for statement in [
        "INSERT INTO subjects (id, created_at) VALUES ('s', 0)".to_owned(),
        format!(
            "INSERT INTO identities (id, subject_id, source_partner, sealed, fingerprint, \
             key_version, linkable, created_at) VALUES ('i', 's', 'pd', {0}, {0}, 1, 0, 0)",
            if sqlite { "X'00'" } else { "'\\x00'::bytea" }
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .expect("the bench's person");
    }
    tx.commit().await.expect("commit");
    let mut written = 0;
    let mut rows_written = 0;
    let mut cycle_referrals = Vec::new();
    while written < entries {
        let n = FILL_BATCH.min(entries - written);
        let mut rows = FillRows::default();
        let events: Vec<Event> = (written..written + n)
            .map(|i| match fill {
                Fill::Reads => event(i),
                Fill::Mixed => {
                    if i % CYCLE == 0 {
                        cycle_referrals.clear();
                    }
                    mixed_entry(i, sqlite, &mut cycle_referrals, &mut rows)
                }
            })
            .collect();
        rows_written += rows.referrals.len() * 2
            + rows.assignments.len().saturating_sub(rows.referrals.len())
            + rows.outcomes.len()
            + rows.cases.len()
            + rows.consents.len()
            + rows.exports.len();
        let mut tx = fresh.store.begin().await.expect("begin");
        insert_rows(&mut tx, rows).await;
        append(&mut tx, &events, &SystemClock)
            .await
            .expect("append");
        tx.commit().await.expect("commit");
        written += n;
    }
    rows_written
}

async fn verify(backend: &Backend, entries: usize) {
    let fill_kind = match std::env::var("AUDIT_BENCH_FILL").as_deref() {
        Ok("reads") => Fill::Reads,
        Ok("mixed") | Err(_) => Fill::Mixed,
        Ok(other) => panic!("AUDIT_BENCH_FILL={other}: mixed or reads"),
    };
    let fresh = backend.fresh("verify").await;
    let started = Instant::now();
    let rows = fill_log(&fresh, entries, fill_kind).await;
    let filled = started.elapsed();
    println!(
        "\nverify: filled {entries} entries ({fill_kind:?}: {rows} audited rows) in {:.1}s \
         ({:.0} appends/s in {FILL_BATCH}-entry transactions)",
        filled.as_secs_f64(),
        per_sec(entries, filled)
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

    // The chain walk alone and the real thing (the cross-check on),
    // alternately, best of `AUDIT_BENCH_VERIFY_RUNS` (2) each: the difference
    // is the cross-check's cost, with neither run always the colder one.
    let runs: usize = std::env::var("AUDIT_BENCH_VERIFY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let mut best: [Option<VerifyRun>; 2] = [None, None];
    for _ in 0..runs {
        for (slot, cross_check) in [false, true].into_iter().enumerate() {
            let run = verify_run(&fresh.store, &key, cross_check, entries, rows).await;
            if best[slot].as_ref().is_none_or(|b| run.elapsed < b.elapsed) {
                best[slot] = Some(run);
            }
        }
    }
    let [Some(walk), Some(full)] = best else {
        unreachable!("at least one run each");
    };
    print_run("verify, chain walk alone", &walk, runs, entries, backend);
    print_run(
        &format!("verify with the cross-check of {rows} rows"),
        &full,
        runs,
        entries,
        backend,
    );
    println!(
        "cross-check share: {:.1}% of verify's time ({:+.0} ms), {:.1}% of its CPU in this process",
        (1.0 - walk.elapsed.as_secs_f64() / full.elapsed.as_secs_f64()) * 100.0,
        (full.elapsed.as_secs_f64() - walk.elapsed.as_secs_f64()) * 1000.0,
        (1.0 - walk.cpu / full.cpu) * 100.0
    );
    // What the cross-check does beside the walk: read and sort the rows' ids.
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let ids = crosswalk::store::record_ids::start(&fresh.store)
        .await
        .expect("rows")
        .finish()
        .await
        .expect("rows");
    let read: usize = ids.iter().map(Vec::len).sum();
    println!(
        "  reading and sorting the {read} rows' ids alone: {:.0} ms, {:.2} CPU-seconds in this process",
        started.elapsed().as_secs_f64() * 1000.0,
        cpu_seconds() - cpu_before
    );
    fresh.close().await;
}

fn print_run(what: &str, run: &VerifyRun, runs: usize, entries: usize, backend: &Backend) {
    println!(
        "{what} (best of {runs}): {entries} entries in {:.2}s = {:.0} entries/s \
         (target >= 500,000)",
        run.elapsed.as_secs_f64(),
        per_sec(entries, run.elapsed)
    );
    println!(
        "  used {:.2} CPU-seconds in this process ({:.0} entries per CPU-second{})",
        run.cpu,
        f64::from(u32::try_from(entries).unwrap_or(u32::MAX)) / run.cpu,
        match backend {
            Backend::Sqlite { .. } => ", SQLite's work included",
            Backend::Postgres { .. } => "; the server's work is in its own processes",
        }
    );
    println!(
        "  memory: RSS {} MiB before; peak (VmHWM) during verify {} MiB{}",
        run.rss_before / 1024,
        run.peak / 1024,
        if run.peak_reset {
            ""
        } else {
            " (could not reset VmHWM: this is the process's lifetime peak)"
        }
    );
}

/// One timed verification.
struct VerifyRun {
    elapsed: Duration,
    cpu: f64,
    rss_before: u64,
    peak: u64,
    peak_reset: bool,
}

async fn verify_run(
    store: &Store,
    key: &crosswalk::audit::checkpoint::GatewayPublicKey,
    cross_check: bool,
    entries: usize,
    rows: usize,
) -> VerifyRun {
    let options = VerifyOptions {
        cross_check,
        ..VerifyOptions::default()
    };
    let rss_before = status_kib("VmRSS");
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let verified = verify_with(store, key, None, options)
        .await
        .expect("intact");
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let peak = status_kib("VmHWM");
    assert_eq!(verified.entries, i64::try_from(entries).expect("fits"));
    let checked: usize = verified.rows.iter().flatten().map(|(_, n)| n).sum();
    assert_eq!(
        checked,
        if cross_check { rows } else { 0 },
        "every row accounted for"
    );
    VerifyRun {
        elapsed,
        cpu,
        rss_before,
        peak,
        peak_reset,
    }
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
