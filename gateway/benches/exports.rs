//! An evaluator export of 1,000,000 referrals with their outcomes: wall time
//! and peak memory, on SQLite and — when `TEST_DATABASE_URL` names a server —
//! on PostgreSQL.
//!
//! `cargo bench --bench exports` bulk-inserts `EXPORT_BENCH_REFERRALS`
//! (1,000,000) referrals of a quarter as many synthetic people (identities
//! sealed by the real vault), one outcome each, with plain SQL; then runs the
//! `demo-study` export (Safe Harbor, k = 5 over age, sex, ZIP, state; CSV) in
//! this process through the export service the server uses, and prints the
//! wall time, the export's size, and the peak resident memory during the
//! export (`VmHWM`, reset through `/proc/self/clear_refs` just before). The
//! database and the export file live in a temporary directory under `/tmp`
//! and are deleted afterwards (the PostgreSQL database is dropped), unless
//! `EXPORT_BENCH_KEEP` is set (their URL is printed, to look at query plans).
//! `EXPORT_BENCH_BACKENDS` (default `sqlite,postgres`) picks the backends.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crosswalk::audit::checkpoint::CheckpointSigner;
use crosswalk::clock::{Clock, SystemClock};
use crosswalk::config::{Config, PartnerKind};
use crosswalk::exports::{ExportError, Exports, Requesting};
use crosswalk::policy::Policy;
use crosswalk::pseudonym::Pseudonymizer;
use crosswalk::secrets::GatewayKeys;
use crosswalk::store::Store;
use crosswalk::vault::{RotationPolicy, ToSeal, Vault};
use serde_json::json;

const REFERRALS: usize = 1_000_000;
const CHUNK: usize = 1_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let chosen =
            std::env::var("EXPORT_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
        let mut backends = Vec::new();
        if chosen.contains("sqlite") {
            backends.push(("SQLite", None));
        }
        if chosen.contains("postgres") {
            match std::env::var("TEST_DATABASE_URL") {
                Ok(url) => backends.push(("PostgreSQL", Some(url))),
                Err(_) => println!("(PostgreSQL skipped: set TEST_DATABASE_URL to include it)"),
            }
        }
        for (name, admin) in backends {
            println!("\n== {name}");
            bench(admin.as_deref()).await;
        }
    });
}

#[expect(clippy::too_many_lines, reason = "one measured run, printed in order")]
async fn bench(postgres_admin: Option<&str>) {
    let referrals = std::env::var("EXPORT_BENCH_REFERRALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(REFERRALS);
    let dir = tempfile::Builder::new()
        .prefix("crosswalk-export-bench")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let (url, pg_name) = match postgres_admin {
        None => (
            format!("sqlite://{}", dir.path().join("bench.db").display()),
            None,
        ),
        Some(admin) => {
            let (url, name) = create_postgres_database(admin).await;
            (url, Some(name))
        }
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = Config::load(
        &root.join("keys-example/crosswalk.toml"),
        [
            ("DATABASE_URL".to_owned(), url.clone()),
            (
                "CROSSWALK_EXPORTS__DIR".to_owned(),
                dir.path().join("exports").display().to_string(),
            ),
        ],
    )
    .expect("config");
    let keys = GatewayKeys::load(&config).expect("keys");
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let vault = Vault::new(
        keys.vault.clone(),
        store.clone(),
        RotationPolicy::default(),
        crosswalk::randomness::os(),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let started = Instant::now();
    load(&store, &vault, clock.as_ref(), referrals).await;
    println!(
        "loaded {referrals} referrals, {} people and {referrals} outcomes in {:.1}s",
        referrals / 4,
        started.elapsed().as_secs_f64()
    );
    if postgres_admin.is_some() {
        let pool = sqlx::AnyPool::connect(&url).await.expect("pool");
        sqlx::query("ANALYZE")
            .execute(&pool)
            .await
            .expect("analyze");
        pool.close().await;
    }

    let exports = Arc::new(Exports {
        config: Arc::new(config.clone()),
        store: store.clone(),
        vault,
        policy: Arc::new(Policy::load(&config.key_path(&config.policy.dir)).expect("policy")),
        pseudonyms: Arc::new(Pseudonymizer::new(&keys.master)),
        signer: Arc::new(CheckpointSigner::load(&config).expect("signer")),
        clock,
        ids: Arc::new(crosswalk::randomness::RecordIds::new(
            crosswalk::randomness::os(),
        )),
    });
    let purpose = "HRESCH".parse().expect("purpose");
    let evaluator = crosswalk::domain::PartnerId::parse("evaluator").expect("a partner id");
    let who = Requesting {
        partner: &evaluator,
        kind: PartnerKind::Evaluator,
        purpose: &purpose,
    };
    let rss_before = status_kib("VmRSS");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let id = exports
        .start(who, br#"{"study": "demo-study"}"#)
        .await
        .expect("export starts")
        .id;
    let jws = loop {
        match exports.manifest(&evaluator, &id).await {
            Ok(jws) => break jws,
            Err(ExportError::NotReady { state }) if state == "running" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the export failed: {e}"),
        }
    };
    let elapsed = started.elapsed();
    let peak = status_kib("VmHWM");
    let file = exports.file(&evaluator, &id).await.expect("file");
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let payload = jws.split('.').nth(1).unwrap_or_default();
    let manifest: serde_json::Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    println!(
        "export: {:.2}s wall for {} referrals + {} outcomes ({:.0} rows/s); {:.1} MiB encrypted",
        elapsed.as_secs_f64(),
        manifest["rows"]["referrals"],
        manifest["rows"]["outcomes"],
        f64::from(u32::try_from(referrals * 2).unwrap_or(u32::MAX)) / elapsed.as_secs_f64(),
        f64::from(u32::try_from(size / 1024).unwrap_or(u32::MAX)) / 1024.0
    );
    println!(
        "k-anonymity: generalization {}, {} referrals generalized, {} suppressed",
        manifest["generalization"], manifest["rows_generalized"], manifest["rows_suppressed"]
    );
    println!(
        "memory: RSS {} MiB before; peak (VmHWM) during the export {} MiB{} (target < 200 MiB)",
        rss_before / 1024,
        peak / 1024,
        if reset {
            ""
        } else {
            " (could not reset VmHWM: includes the load)"
        }
    );
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    store.close().await;
    if std::env::var_os("EXPORT_BENCH_KEEP").is_some() {
        println!("kept for inspection: {url} (drop or delete it when done)");
        let _ = dir.keep();
    } else if let (Some(admin), Some(name)) = (postgres_admin, pg_name) {
        drop_postgres_database(admin, &name).await;
    }
}

/// Subjects, sealed identities, referrals and one outcome each, in chunks.
#[expect(
    clippy::too_many_lines,
    reason = "the rows of four tables, spelled out"
)]
async fn load(store: &Store, vault: &Vault, clock: &dyn Clock, referrals: usize) {
    let people = (referrals / 4).max(1);
    let now = clock.now().timestamp_micros();
    let year = 365 * 86_400_000_000_i64;
    let zips = [
        "95811", "95814", "95822", "95823", "95824", "95826", "95828", "95831", "95670", "95605",
    ];
    for start in (0..people).step_by(CHUNK) {
        let end = (start + CHUNK).min(people);
        let mut tx = store.begin().await.expect("tx");
        let plaintexts: Vec<(String, Vec<u8>)> = (start..end)
            .map(|p| {
                let identity = json!({
                    "given_name": format!("Bench{p}"), "surname": "Export-Demo",
                    "dob": format!("{}-{:02}-{:02}", 1940 + p % 65, 1 + p % 12, 1 + p % 28),
                    "sex": if p % 2 == 0 { "F" } else { "M" },
                    "street": format!("{p} Bench Way"), "city": "Sacramento", "state": "CA",
                    "zip": zips[p % zips.len()], "phone": null, "email": null,
                });
                (
                    format!("identities:i-{p}"),
                    serde_json::to_vec(&identity).expect("json"),
                )
            })
            .collect();
        let values: Vec<ToSeal<'_>> = plaintexts
            .iter()
            .map(|(context, plaintext)| ToSeal {
                context: context.as_bytes(),
                plaintext,
            })
            .collect();
        let sealed = vault
            .seal_many(&mut tx, &values, clock)
            .await
            .expect("seal");
        insert(
            &mut tx,
            "subjects (id, created_at)",
            2,
            (start..end).map(|p| vec![Val::T(format!("s-{p}")), Val::I(now)]),
        )
        .await;
        insert(
            &mut tx,
            "identities (id, subject_id, source_partner, sealed, fingerprint, key_version, linkable, created_at)",
            8,
            (start..end).zip(&sealed).map(|(p, s)| {
                vec![
                    Val::T(format!("i-{p}")),
                    Val::T(format!("s-{p}")),
                    Val::T("pd".into()),
                    Val::B(s.as_bytes().to_vec()),
                    Val::B(Vec::new()),
                    Val::I(1),
                    Val::I(0),
                    Val::I(now),
                ]
            }),
        )
        .await;
        tx.commit().await.expect("commit");
    }
    for start in (0..referrals).step_by(CHUNK) {
        let end = (start + CHUNK).min(referrals);
        let mut tx = store.begin().await.expect("tx");
        let contact = |r: usize| {
            now - 2 * year
                + i64::try_from(r).unwrap_or(0) * (2 * year / i64::try_from(referrals).unwrap_or(1))
        };
        insert(
            &mut tx,
            "referrals (id, submitted_by, subject_id, identity_id, assigned_cbo, status, workflow_state, contact_at, district, arrested, resources, follow_up_by, created_at, updated_at)",
            14,
            (start..end).map(|r| {
                let p = r % people;
                vec![
                    Val::T(format!("r-{r:08}")),
                    Val::T("pd".into()),
                    Val::T(format!("s-{p}")),
                    Val::T(format!("i-{p}")),
                    Val::T(if r % 3 == 0 { "cbo-south" } else { "cbo-north" }.into()),
                    Val::T("contacted".into()),
                    Val::T("open".into()),
                    Val::I(contact(r)),
                    Val::T(format!("d{}", r % 7)),
                    Val::I(0),
                    Val::T(r#"["mental_health","homelessness"]"#.into()),
                    Val::T("cbo".into()),
                    Val::I(contact(r)),
                    Val::I(contact(r)),
                ]
            }),
        )
        .await;
        insert(
            &mut tx,
            "outcomes (id, referral_id, recorded_by, kind, resource, occurred_at, created_at)",
            7,
            (start..end).map(|r| {
                vec![
                    Val::T(format!("o-{r:08}")),
                    Val::T(format!("r-{r:08}")),
                    Val::T("cbo-north".into()),
                    Val::T("service_connected".into()),
                    Val::T("mental_health".into()),
                    Val::I(contact(r) + 86_400_000_000 * i64::try_from(r % 30).unwrap_or(0)),
                    Val::I(contact(r)),
                ]
            }),
        )
        .await;
        tx.commit().await.expect("commit");
    }
}

enum Val {
    T(String),
    I(i64),
    B(Vec<u8>),
}

/// One multi-row INSERT per 500 rows.
async fn insert(
    tx: &mut crosswalk::store::Tx<'_>,
    into: &str,
    columns: usize,
    rows: impl Iterator<Item = Vec<Val>>,
) {
    let rows: Vec<Vec<Val>> = rows.collect();
    for chunk in rows.chunks(500) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let params: Vec<String> = (0..columns)
                    .map(|c| format!("${}", r * columns + c + 1))
                    .collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {into} VALUES {}", values.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            for value in row {
                query = match value {
                    Val::T(t) => query.bind(t.clone()),
                    Val::I(i) => query.bind(*i),
                    Val::B(b) => query.bind(b.clone()),
                };
            }
        }
        query.execute(&mut **tx).await.expect("insert");
    }
}

async fn create_postgres_database(admin: &str) -> (String, String) {
    use sqlx::Connection as _;
    let name = format!(
        "crosswalk_export_bench_{}",
        crosswalk::randomness::unique_name_suffix(&crosswalk::randomness::OsRandomness)
            .expect("randomness")
    );
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    (format!("{base}/{name}"), name)
}

async fn drop_postgres_database(admin: &str, name: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
