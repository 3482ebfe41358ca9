//! Aggregate query latency: `GET /v1/aggregates/outcomes`'s work (policy
//! decision, the SQL GROUP BYs one month at a time, medians, suppression and the
//! audit append), called through `crosswalk::aggregates::Aggregates` on a
//! database of `AGG_BENCH_REFERRALS` referrals (default 1,000,000) received over
//! 2024-2025 and three outcomes each (3,000,000), on a SQLite file under the
//! system temp dir and — when `TEST_DATABASE_URL` names a server — on
//! PostgreSQL (in a fresh database, dropped afterwards).
//!
//! The rows are made with bulk `INSERT ... SELECT` over a generated series (the
//! data's shape matters here, not linkage): 40 districts, 5 CBOs, the eight
//! statuses with a skew, one or two resource categories per referral. It prints
//! the time it takes to settle the 24 months once (the first request after
//! their cut-offs does it), then the latency percentiles of `AGG_BENCH_RUNS`
//! (default 10) runs of each table, counted from the settled copy, and the
//! load average (`uptime`) around them: the machine is shared.
//! `AGG_BENCH_BACKENDS` (default `sqlite,postgres`) picks the backends;
//! `AGG_BENCH_KEEP=1` keeps both databases (their URLs are printed) to
//! look at query plans afterwards.

use std::time::{Duration, Instant};

use crosswalk::aggregates::{AggregateRequest, Aggregates};
use crosswalk::clock::SystemClock;
use crosswalk::config::{AggregatesConfig, PartnerKind};
use crosswalk::policy::{Policy, Purpose};
use crosswalk::reads::Asker;
use crosswalk::store::{Backend, Store};

/// 2024-01-01T00:00:00Z, unix microseconds.
const BASE: i64 = 1_704_067_200_000_000;
/// 2024 and 2025: 731 days.
const SPAN: i64 = 731 * 86_400 * 1_000_000;

const CATEGORIES: [&str; 20] = [
    "alcohol_drug",
    "domestic_violence",
    "education_career",
    "gang_intervention",
    "general_community",
    "gun_violence",
    "human_trafficking",
    "crime_victim",
    "identity_theft_victim",
    "legal_services",
    "lgbtq",
    "mental_health",
    "neighborhood_concerns",
    "nutrition",
    "missing_persons",
    "senior_citizen",
    "veteran",
    "youth_services",
    "homelessness",
    "other",
];

/// The tables measured: (label, `from`, `to`, `group_by`, DP on).
const TABLES: [(&str, &str, &str, &str, bool); 6] = [
    (
        "month x district x outcome, 12 months",
        "2025-01",
        "2025-12",
        "district,outcome",
        false,
    ),
    (
        "month x district x outcome, 24 months",
        "2024-01",
        "2025-12",
        "district,outcome",
        false,
    ),
    (
        "month x district x outcome, 12 months, DP (no medians)",
        "2025-01",
        "2025-12",
        "district,outcome",
        true,
    ),
    (
        "month x outcome, 12 months",
        "2025-01",
        "2025-12",
        "outcome",
        false,
    ),
    (
        "month x resource x outcome, 12 months",
        "2025-01",
        "2025-12",
        "resource,outcome",
        false,
    ),
    (
        "month x assigned_cbo, 12 months",
        "2025-01",
        "2025-12",
        "assigned_cbo",
        false,
    ),
];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let referrals = env("AGG_BENCH_REFERRALS", 1_000_000);
    let runs = env("AGG_BENCH_RUNS", 10);
    let backends = std::env::var("AGG_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let policy = std::sync::Arc::new(
        Policy::load(&std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies"))
            .expect("the policy bundle loads"),
    );
    println!(
        "referrals: {referrals}; outcomes: {}; runs per table: {runs}",
        referrals * 3
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let keep = std::env::var_os("AGG_BENCH_KEEP").is_some();
    if backends.contains("sqlite") {
        let url = format!("sqlite://{}", dir.path().join("aggregates.db").display());
        bench_backend("SQLite", &url, referrals, runs, &policy).await;
        if keep {
            println!("kept for inspection: {url} (delete it when done)");
        }
    }
    if backends.contains("postgres") {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin) => {
                let (url, name) = create_postgres_database(&admin).await;
                bench_backend("PostgreSQL", &url, referrals, runs, &policy).await;
                if keep {
                    println!("kept for inspection: {url} (drop it when done)");
                } else {
                    drop_postgres_database(&admin, &name).await;
                }
            }
            Err(_) => println!("\nPostgreSQL skipped: set TEST_DATABASE_URL=postgres://..."),
        }
    }
    if keep {
        let _ = dir.keep();
    }
}

async fn bench_backend(
    label: &str,
    url: &str,
    referrals: usize,
    runs: usize,
    policy: &std::sync::Arc<Policy>,
) {
    println!("\n== {label} ==");
    let store = Store::connect(url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let started = Instant::now();
    fill(&store, url, referrals).await;
    println!(
        "filled in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        load()
    );
    settle_all(&store, policy).await;
    for (name, from, to, group_by, dp) in TABLES {
        let mut config = AggregatesConfig::default();
        config.dp.enabled = dp;
        config.dp.epsilon_per_month = 1000.0;
        config.dp.default_epsilon = 0.001;
        let params = [("from", from), ("to", to), ("group_by", group_by)];
        let mut times = Vec::with_capacity(runs);
        let mut cells = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let table = ask_as_pd(&store, policy, &config, &params).await;
            times.push(started.elapsed());
            cells = table.rows.len();
        }
        times.sort();
        println!(
            "{name}: {cells} cells; p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms ({})",
            ms(percentile(&times, 50)),
            ms(percentile(&times, 90)),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
            load()
        );
    }
    store.close().await;
}

/// Settles the 24 months once, as the first request after their cut-offs
/// would, and prints what that took: every table measured afterwards is
/// counted from the settled copy.
async fn settle_all(store: &Store, policy: &std::sync::Arc<Policy>) {
    let started = Instant::now();
    ask_as_pd(
        store,
        policy,
        &AggregatesConfig::default(),
        &[("from", "2024-01"), ("to", "2025-12")],
    )
    .await;
    println!(
        "settled 24 months (and counted them by month): {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        load()
    );
}

/// `GET /v1/aggregates/outcomes?params` as `pd` (purpose PERFMSR), at an
/// instant by which every month of the data has settled.
async fn ask_as_pd(
    store: &Store,
    policy: &std::sync::Arc<Policy>,
    config: &AggregatesConfig,
    params: &[(&str, &str)],
) -> crosswalk::aggregates::AggregateTable {
    let purpose: Purpose = "PERFMSR".parse().expect("a purpose");
    let pd = crosswalk::domain::PartnerId::parse("pd").expect("a partner id");
    let asker = Asker {
        partner: &pd,
        kind: PartnerKind::Police,
        purpose: &purpose,
    };
    let request = AggregateRequest::parse(
        params,
        config,
        crosswalk::config::EARLIEST_PROGRAM_START,
        chrono::DateTime::from(std::time::UNIX_EPOCH + Duration::from_hours(500_000)),
    )
    .expect("a valid request");
    Aggregates {
        store: store.clone(),
        policy: std::sync::Arc::clone(policy),
        config: config.clone(),
        clock: std::sync::Arc::new(SystemClock),
        randomness: crosswalk::randomness::os(),
        ids: std::sync::Arc::new(crosswalk::randomness::RecordIds::new(
            crosswalk::randomness::os(),
        )),
    }
    .outcomes(&asker, &request)
    .await
    .expect("a table")
}

/// Bulk rows: one subject and identity that every referral points at (the
/// foreign keys need them), then referrals, their resources and outcomes.
async fn fill(store: &Store, url: &str, referrals: usize) {
    let last = referrals - 1;
    let step = SPAN / i64::try_from(referrals).expect("fits");
    let series = match store.backend() {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})"
        ),
        Backend::Postgres => {
            format!("WITH n(i) AS (SELECT generate_series(0::bigint, {last}::bigint))")
        }
    };
    let categories: Vec<String> = CATEGORIES
        .iter()
        .enumerate()
        .map(|(k, c)| format!("({k}, '{c}')"))
        .collect();
    let categories = format!("cats(k, name) AS (VALUES {})", categories.join(", "));
    let status = "CASE WHEN h % 100 < 30 THEN 'new' WHEN h % 100 < 45 THEN 'contact_attempted' \
                  WHEN h % 100 < 60 THEN 'contacted' WHEN h % 100 < 72 THEN 'engaged' \
                  WHEN h % 100 < 85 THEN 'service_connected' WHEN h % 100 < 90 THEN 'declined' \
                  WHEN h % 100 < 96 THEN 'unable_to_locate' ELSE 'closed' END";
    let rows =
        format!("SELECT i, (i * 2654435761) % 4294967296 AS h, {BASE} + i * {step} AS at FROM n");
    let statements = [
        "INSERT INTO subjects (id, created_at) VALUES ('bench-subject', 0)".to_owned(),
        format!(
            "{series} INSERT INTO referrals (id, submitted_by, subject_id, identity_id, \
             assigned_cbo, status, workflow_state, contact_at, district, arrested, resources, \
             follow_up_by, created_at, updated_at, sealed) \
             SELECT 'r' || i, 'pd', 'bench-subject', 'bench-identity', \
             'cbo-' || ((i * 40503) % 65536 % 5), {status}, 'open', at, 'd' || (h / 7 % 40), \
             NULL, '[]', NULL, at, at, NULL FROM ({rows}) AS x"
        ),
        format!(
            "{series}, {categories} INSERT INTO referral_resources (referral_id, resource) \
             SELECT 'r' || x.i, c.name FROM ({rows}) AS x JOIN cats c ON c.k = x.h % 20"
        ),
        format!(
            "{series}, {categories} INSERT INTO referral_resources (referral_id, resource) \
             SELECT 'r' || x.i, c.name FROM ({rows}) AS x JOIN cats c ON c.k = (x.h % 20 + 1 + (x.h / 20) % 19) % 20 \
             WHERE x.i % 3 = 0"
        ),
        format!(
            "{series}, ks(k, kind) AS (VALUES (0, 'contact_attempted'), (1, 'contacted'), (2, 'engaged')) \
             INSERT INTO outcomes (id, referral_id, recorded_by, kind, resource, occurred_at, created_at, sealed) \
             SELECT 'o' || x.i || '-' || ks.k, 'r' || x.i, 'cbo-north', ks.kind, NULL, \
             x.at + (x.h % 7200 + 1 + ks.k * 3600) * 1000000, x.at + (x.h % 7200 + 1 + ks.k * 3600) * 1000000, NULL \
             FROM ({rows}) AS x CROSS JOIN ks"
        ),
    ];
    let mut tx = store.begin().await.expect("begin");
    for (i, sql) in statements.iter().enumerate() {
        // After the subject (statement 0), the identity every referral names.
        if i == 1 {
            sqlx::query(
                "INSERT INTO identities (id, subject_id, source_partner, sealed, fingerprint, \
                 key_version, linkable, created_at) VALUES ('bench-identity', 'bench-subject', 'pd', $1, $1, 1, 0, 0)",
            )
            .bind(vec![0_u8])
            .execute(&mut *tx)
            .await
            .expect("the bench identity");
        }
        let started = Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("statement {i}: {e}"));
        println!("  statement {i}: {:.1}s", started.elapsed().as_secs_f64());
    }
    tx.commit().await.expect("commit");
    // A database of this size in service has planner statistics, and on
    // PostgreSQL autovacuum has long since cleared the dead row versions that
    // the first-contact triggers left when the fill's outcomes updated every
    // referral at once (and set the visibility map that index-only scans
    // need); one filled in a minute has neither yet. VACUUM cannot run in a
    // transaction.
    let mut tx = store.begin().await.expect("begin");
    sqlx::query("ANALYZE")
        .execute(&mut *tx)
        .await
        .expect("ANALYZE");
    tx.commit().await.expect("commit");
    if store.backend() == Backend::Postgres {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query("VACUUM (ANALYZE)")
            .execute(&mut conn)
            .await
            .expect("VACUUM");
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn load() -> String {
    std::process::Command::new("uptime")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split("load average:")
                .nth(1)
                .map(|l| format!("load{}", l.trim_end()))
        })
        .unwrap_or_else(|| "load unknown".to_owned())
}

async fn create_postgres_database(admin_url: &str) -> (String, String) {
    use sqlx::Connection as _;
    let name = format!(
        "crosswalk_bench_{}",
        crosswalk::randomness::unique_name_suffix(&crosswalk::randomness::OsRandomness)
            .expect("randomness")
    );
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the bench database");
    let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    (url.to_string(), name)
}

async fn drop_postgres_database(admin_url: &str, name: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop the bench database");
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
