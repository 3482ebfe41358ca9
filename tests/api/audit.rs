//! The audit log end to end: `crosswalk audit verify` (the real binary) finds
//! each kind of tampering on a real SQLite file and a real PostgreSQL database,
//! naming the first bad entry; concurrent writers — and on PostgreSQL two
//! gateway processes — leave one chain without gaps; a failed write leaves
//! neither its change nor its entry; reading the log, refusals, reloads,
//! registry changes and shutdown checkpoints are recorded by the running gateway.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone as _, Utc};
use crosswalk::audit::{Event, append};
use crosswalk::clock::{Clock as _, FixedClock};
use crosswalk::store::Store;
use serde_json::json;
use sqlx::{Connection as _, Row as _};

use crate::backend_tests;
use crate::helpers::{
    AppOptions, Backend, TestApp, TestDatabase, assert_problem, claims_for, example_keys,
    issue_token, now, run_cli, sign_as, spawn_app, spawn_app_with,
};

backend_tests!(
    audit_verify_finds_an_edited_entry,
    audit_verify_finds_a_deleted_entry,
    audit_verify_finds_swapped_entries,
    audit_verify_finds_a_truncated_tail_by_its_checkpoints,
    concurrent_writers_leave_one_chain_without_gaps,
    a_failed_write_leaves_neither_the_change_nor_its_entry,
    admins_page_through_the_log_and_reading_it_is_audited,
    refused_requests_are_audited_without_their_tokens,
    shutdown_signs_the_head_and_a_restart_records_registry_changes,
);

/// Entries the tampering tests start from.
const ENTRIES: i64 = 30;

fn clock() -> FixedClock {
    FixedClock(
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .expect("time"),
    )
}

async fn open_store(db: &TestDatabase) -> Store {
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// A raw connection, as a database administrator would have.
async fn admin_connection(db: &TestDatabase) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("connect")
}

pub(crate) async fn execute(db: &TestDatabase, statements: &[&str]) {
    let mut conn = admin_connection(db).await;
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

pub(crate) async fn count(db: &TestDatabase, query: &str) -> i64 {
    let mut conn = admin_connection(db).await;
    sqlx::query(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .try_get::<i64, _>(0)
        .expect("a count")
}

/// Drops the triggers that keep the audit tables append-only: what someone with
/// the database owner's rights can do, and what the hash chain is for.
pub(crate) async fn disable_append_only(db: &TestDatabase, backend: Backend) {
    match backend {
        Backend::Sqlite => {
            execute(
                db,
                &[
                    "DROP TRIGGER audit_log_no_update",
                    "DROP TRIGGER audit_log_no_delete",
                    "DROP TRIGGER audit_checkpoints_no_delete",
                ],
            )
            .await;
        }
        Backend::Postgres => {
            execute(
                db,
                &[
                    "DROP TRIGGER audit_log_append_only ON audit_log",
                    "DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints",
                ],
            )
            .await;
        }
    }
}

/// A database holding [`ENTRIES`] entries written through the store in
/// transactions of varied sizes, with a checkpoint signed by `crosswalk audit
/// checkpoint`, which `crosswalk audit verify` finds intact. The entries are
/// reads: they create no rows, so none are missing.
async fn logged_database(backend: Backend) -> TestDatabase {
    let db = TestDatabase::create(backend).await;
    let store = open_store(&db).await;
    let mut seq = 0;
    for size in [1, 4, 2, 7, 1, 5, 3, 6, 1] {
        let events: Vec<Event> = (seq..seq + size)
            .map(|i| {
                Event::new("pd", "referral.read")
                    .with_purpose("CAREMGT")
                    .with_record("referral", format!("r-{i}"))
                    .with_subject(format!("s-{}", i % 4))
            })
            .collect();
        let mut tx = store.begin().await.expect("begin");
        append(&mut tx, &events, &clock()).await.expect("append");
        tx.commit().await.expect("commit");
        seq += size;
    }
    assert_eq!(seq, ENTRIES);
    store.close().await;

    let (code, stdout, stderr) = run_cli(&["audit", "checkpoint"], &db);
    assert_eq!(code, Some(0), "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON line");
    assert_eq!(line["seq"], ENTRIES);
    assert!(
        line["jws"]
            .as_str()
            .is_some_and(|j| j.split('.').count() == 3)
    );
    let (code, stdout, stderr) = run_cli(&["audit", "verify"], &db);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("audit log intact: {ENTRIES} entries, head hash ")),
        "{stdout}"
    );
    db
}

/// Runs `crosswalk audit verify` and asserts it reports tampering at `seq`.
fn assert_verify_fails_at(db: &TestDatabase, extra: &[&str], seq: i64, what: &str) -> String {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_cli(&args, db);
    assert_eq!(
        code,
        Some(2),
        "exit status 2 on tampering: {stdout}{stderr}"
    );
    assert!(
        stderr.contains(&format!("the audit log is not intact: entry {seq} {what}")),
        "names entry {seq} ({what}): {stderr}"
    );
    stderr
}

async fn audit_verify_finds_an_edited_entry(backend: Backend) {
    let db = logged_database(backend).await;
    disable_append_only(&db, backend).await;

    execute(
        &db,
        &["UPDATE audit_log SET purpose = 'HRESCH' WHERE seq = 13"],
    )
    .await;

    assert_verify_fails_at(&db, &[], 13, "was altered");
}

async fn audit_verify_finds_a_deleted_entry(backend: Backend) {
    let db = logged_database(backend).await;
    disable_append_only(&db, backend).await;

    execute(&db, &["DELETE FROM audit_log WHERE seq = 21"]).await;

    assert_verify_fails_at(&db, &[], 21, "is missing");
}

async fn audit_verify_finds_swapped_entries(backend: Backend) {
    let db = logged_database(backend).await;
    disable_append_only(&db, backend).await;

    execute(
        &db,
        &[
            "UPDATE audit_log SET seq = -1 WHERE seq = 9",
            "UPDATE audit_log SET seq = 9 WHERE seq = 10",
            "UPDATE audit_log SET seq = 10 WHERE seq = -1",
        ],
    )
    .await;

    assert_verify_fails_at(&db, &[], 9, "is out of order");
}

/// The tail is cut and the head row moved back to match, so the chain alone
/// looks whole: the signed checkpoint in the database catches it, and when the
/// checkpoints are deleted too, the witness file outside the database does.
async fn audit_verify_finds_a_truncated_tail_by_its_checkpoints(backend: Backend) {
    let db = logged_database(backend).await;
    disable_append_only(&db, backend).await;
    let kept = 26;

    execute(
        &db,
        &[
            &format!("DELETE FROM audit_log WHERE seq > {kept}"),
            &format!(
                "UPDATE audit_head SET seq = {kept}, \
                 hash = (SELECT hash FROM audit_log WHERE seq = {kept}) WHERE id = 1"
            ),
        ],
    )
    .await;

    let stderr = assert_verify_fails_at(&db, &[], kept + 1, "is missing");
    assert!(
        stderr.contains(&format!(
            "truncated before the checkpoint for entry {ENTRIES}"
        )),
        "{stderr}"
    );

    execute(&db, &["DELETE FROM audit_checkpoints"]).await;
    let (code, _, stderr) = run_cli(&["audit", "verify"], &db);
    assert_eq!(
        code,
        Some(0),
        "with no checkpoint left the chain alone looks whole"
    );
    assert!(stderr.contains("holds no signed checkpoint"), "{stderr}");
    let witness = db.witness_file();
    let witness = witness.to_str().expect("UTF-8 path");
    let stderr = assert_verify_fails_at(&db, &["--checkpoint", witness], kept + 1, "is missing");
    assert!(
        stderr.contains("audit-checkpoints.jsonl line 1"),
        "{stderr}"
    );
}

/// Eight tasks append concurrently, each entry in the transaction of the change
/// it records; the chain verifies, with exactly as many entries as were written.
async fn concurrent_writers_leave_one_chain_without_gaps(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let store = open_store(&db).await;
    let writers = 8;
    let transactions = 20;

    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = 0;
                for t in 0..transactions {
                    let size = 1 + (writer + t) % 3;
                    let mut tx = store.begin().await.expect("begin");
                    Store::meta_set(&mut tx, &format!("test_writer_{writer}"), &t.to_string())
                        .await
                        .expect("the change");
                    let events: Vec<Event> = (0..size)
                        .map(|_| {
                            Event::new("pd", "test.write").with_record("meta", writer.to_string())
                        })
                        .collect();
                    append(&mut tx, &events, &crosswalk::clock::SystemClock)
                        .await
                        .expect("append");
                    tx.commit().await.expect("commit");
                    written += size;
                }
                written
            })
        })
        .collect();
    let mut expected = 0;
    for task in tasks {
        expected += task.await.expect("writer");
    }
    store.close().await;

    let (code, stdout, stderr) = run_cli(&["audit", "verify"], &db);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("audit log intact: {expected} entries")),
        "{stdout}"
    );
    assert_eq!(count(&db, "SELECT MAX(seq) FROM audit_log").await, expected);
}

/// A write rolled back after its append, and one that fails after its append,
/// leave neither the change nor the entry; the next write continues the chain
/// without a gap.
async fn a_failed_write_leaves_neither_the_change_nor_its_entry(backend: Backend) {
    use crosswalk::normalize::{IdentityInput, NormalizeOptions, normalize};
    use crosswalk::secrets::GatewayKeys;
    use crosswalk::subjects::SubjectRegistry;
    use crosswalk::vault::{RotationPolicy, Vault};

    let db = TestDatabase::create(backend).await;
    let store = open_store(&db).await;
    let config =
        crosswalk::config::Config::load(&example_keys().join("crosswalk.toml"), std::iter::empty())
            .expect("example config");
    let keys = GatewayKeys::load(&config).expect("keys");
    let vault = Vault::new(
        keys.vault.clone(),
        store.clone(),
        RotationPolicy::default(),
        crosswalk::randomness::os(),
    );
    let registry = SubjectRegistry::open(&store, &keys.master, vault)
        .await
        .expect("registry");
    let input = IdentityInput {
        given_name: Some("Jane".into()),
        surname: Some("Roe".into()),
        dob: Some("1990-04-02".into()),
        phone: Some("916-555-0142".into()),
        ..IdentityInput::default()
    };
    let options = NormalizeOptions::new(phonenumber::country::Id::US, clock().now().date_naive());
    let identity = normalize(&input, &options).expect("identity");
    let write = |linked: &crosswalk::subjects::Linked| {
        Event::new("pd", "identity.register")
            .with_record("identity", linked.identity_id.clone())
            .with_subject(linked.subject_id.clone())
    };

    // Rolled back after the append.
    let mut tx = store.begin().await.expect("begin");
    let linked = registry
        .register(&mut tx, "pd", &input, &identity, &clock())
        .await
        .expect("register");
    append(&mut tx, &[write(&linked)], &clock())
        .await
        .expect("append");
    tx.rollback().await.expect("rollback");

    // Failing after the append: a statement that violates a constraint.
    let mut tx = store.begin().await.expect("begin");
    let linked = registry
        .register(&mut tx, "pd", &input, &identity, &clock())
        .await
        .expect("register");
    append(&mut tx, &[write(&linked)], &clock())
        .await
        .expect("append");
    let failed = sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1)")
        .bind(vec![0u8; 32])
        .execute(&mut *tx)
        .await;
    assert!(failed.is_err(), "the second head row is refused");
    drop(tx);

    for table in ["identities", "subjects", "audit_log"] {
        assert_eq!(
            count(&db, &format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table} after the failed writes"
        );
    }
    assert_eq!(count(&db, "SELECT seq FROM audit_head").await, 0);

    let mut tx = store.begin().await.expect("begin");
    let linked = registry
        .register(&mut tx, "pd", &input, &identity, &clock())
        .await
        .expect("register");
    let appended = append(&mut tx, &[write(&linked)], &clock())
        .await
        .expect("append")
        .expect("one entry");
    tx.commit().await.expect("commit");
    store.close().await;
    assert_eq!((appended.first, appended.last), (1, 1), "no gap");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM identities").await, 1);
    let (code, stdout, stderr) = run_cli(&["audit", "verify"], &db);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("audit log intact: 1 entries"), "{stdout}");
}

async fn get_entries(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/audit/entries{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn entries_json(app: &TestApp, token: &str, query: &str) -> serde_json::Value {
    let response = get_entries(app, token, query).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.expect("JSON")
}

/// Polls until at least `n` entries with `action` are in the database (the
/// refusal writer appends in the background).
async fn wait_for_entries(db: &TestDatabase, action: &str, n: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = count(
            db,
            &format!("SELECT COUNT(*) FROM audit_log WHERE action = '{action}'"),
        )
        .await;
        if found >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admins_page_through_the_log_and_reading_it_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = issue_token("admin");

    // The gateway's first start recorded every partner of the registry.
    let page = entries_json(&app, &admin, "?action=partner.change&limit=4").await;
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["seq"], 1);
    assert_eq!(entries[0]["actor"], "gateway");
    assert_eq!(entries[0]["reason"], "added");
    assert_eq!(entries[0]["hash"].as_str().map(str::len), Some(64));
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let rest = entries_json(
        &app,
        &admin,
        &format!("?action=partner.change&limit=4&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest["entries"].as_array().map(Vec::len), Some(2));
    assert!(rest.get("next_cursor").is_none(), "the last page: {rest}");

    // Each read was itself recorded, with what it released.
    let reads = entries_json(&app, &admin, "?action=audit.read&actor=admin").await;
    let reads = reads["entries"].as_array().expect("entries");
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[0]["purpose"], "HOPERAT");
    assert_eq!(reads[0]["resource"], "audit_entry");
    assert!(
        reads[0]["fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["field"] == "hash")),
        "{reads:?}"
    );

    // Bad filters are named.
    let bad = get_entries(&app, &admin, "?from=yesterday&limit=0&subject=x").await;
    let problem = assert_problem(bad, 400).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["from", "limit", "subject"]);
    let bad_purpose = app
        .client
        .get(app.url("/v1/audit/entries"))
        .bearer_auth(&admin)
        .header("X-Purpose-Of-Use", "reading it")
        .send()
        .await
        .expect("request");
    let problem = assert_problem(bad_purpose, 400).await;
    assert_eq!(problem["errors"][0]["field"], "X-Purpose-Of-Use");

    // The police may not read the log: refused by the policy, and recorded.
    let refused = get_entries(&app, &issue_token("pd"), "").await;
    assert_problem(refused, 403).await;
    assert_eq!(wait_for_entries(&app.db, "refusal", 1).await, 1);
    let refusals = entries_json(&app, &admin, "?action=refusal").await;
    let refusal = &refusals["entries"][0];
    assert_eq!(refusal["actor"], "pd");
    assert_eq!(refusal["resource"], "/v1/audit/entries");
    assert_eq!(refusal["purpose"], "HOPERAT");
    assert!(refusal["reason"].as_str().is_some_and(|r| !r.is_empty()));
    // Admins see how it was refused (the stage and method codes), not just that.
    assert_eq!(refusal["detail"]["method"], "GET", "{refusal}");
    assert!(refusal["detail"]["stage"].is_string(), "{refusal}");

    // The published key is the one that verifies checkpoints.
    let key = app.get("/.well-known/crosswalk-signing-key", None).await;
    assert_eq!(key.status(), 200);
    let pem = key.text().await.expect("PEM");
    let published = std::fs::read_to_string(example_keys().join("gateway/signing.pub.pem"))
        .expect("example public key");
    assert_eq!(pem.trim(), published.trim());
}

async fn refused_requests_are_audited_without_their_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let expired = {
        let mut claims = claims_for("pd");
        claims["iat"] = json!(now() - 3600);
        claims["exp"] = json!(now() - 600);
        sign_as("pd", &claims)
    };
    let forged = sign_as("cbo-north", &claims_for("pd"));
    let tokens: [(Option<&str>, &str); 4] = [
        (None, "missing_token"),
        (Some("not.a.token"), "malformed"),
        (Some(&forged), "bad_signature"),
        (Some(&expired), "expired"),
    ];
    for (token, _) in &tokens {
        let mut request = app
            .client
            .get(app.url("/v1/whoami"))
            .header("X-Purpose-Of-Use", "CAREMGT");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_problem(request.send().await.expect("request"), 401).await;
    }

    assert_eq!(wait_for_entries(&app.db, "refusal", 4).await, 4);
    let page = entries_json(&app, &issue_token("admin"), "?action=refusal").await;
    let recorded: BTreeMap<String, String> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            assert_eq!(e["resource"], "/v1/whoami");
            assert_eq!(e["purpose"], "CAREMGT");
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("missing_token", "unauthenticated"),
        ("malformed", "unauthenticated"),
        // Signed with another partner's key: `sub` says pd, nothing proves it.
        ("bad_signature", "unauthenticated"),
        // pd's own signature verified: it was pd, too late.
        ("expired", "pd"),
    ]
    .into_iter()
    .map(|(r, a)| (r.to_owned(), a.to_owned()))
    .collect();
    assert_eq!(recorded, expected);

    let mut conn = admin_connection(&app.db).await;
    let rows = sqlx::query(
        "SELECT actor, action, COALESCE(reason, '') AS reason, COALESCE(resource, '') AS resource, \
         COALESCE(detail, '') AS detail FROM audit_log",
    )
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    let text: String = rows
        .iter()
        .map(|r| {
            ["actor", "action", "reason", "resource", "detail"]
                .map(|c| r.get::<String, _>(c))
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");
    for token in [&forged, &expired] {
        let signature = token.rsplit('.').next().expect("signature");
        assert!(!text.contains(signature), "a token is in the log");
    }
    assert!(!text.contains("not.a.token"));
}

async fn shutdown_signs_the_head_and_a_restart_records_registry_changes(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![(
                "CROSSWALK_AUDIT__CHECKPOINT_INTERVAL_SECS".into(),
                "1".into(),
            )],
        },
    )
    .await;
    let witness = app.db.witness_file();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Until the timer's first line is complete (the file appears just before).
    while !std::fs::read_to_string(&witness).is_ok_and(|text| text.ends_with('\n'))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let timed = std::fs::read_to_string(&witness).expect("the timer signed a checkpoint");
    assert_eq!(timed.lines().count(), 1, "one per change of head: {timed}");
    assert_problem(app.get("/v1/whoami", None).await, 401).await;

    signal(&app, "-TERM");
    let status = app
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("still running:\n{}", app.logs()));
    assert!(status.success(), "{status:?}");

    let head = count(&app.db, "SELECT seq FROM audit_head").await;
    assert_eq!(
        head, 7,
        "six registry entries and the refusal, flushed at shutdown"
    );
    let lines = std::fs::read_to_string(&witness).expect("witness");
    let last: serde_json::Value =
        serde_json::from_str(lines.lines().last().expect("a line")).expect("JSON");
    assert_eq!(
        last["seq"], head,
        "the shutdown checkpoint signs the final head"
    );
    let (code, stdout, stderr) = run_cli(
        &[
            "audit",
            "verify",
            "--checkpoint",
            witness.to_str().expect("path"),
        ],
        &app.db,
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("matches all 2 checkpoints"), "{stdout}");

    let restarted = spawn_app_with(
        backend,
        AppOptions {
            env: vec![
                ("DATABASE_URL".into(), app.db.url.clone()),
                (
                    "CROSSWALK_AUDIT__CHECKPOINT_FILE".into(),
                    witness.display().to_string(),
                ),
                (
                    "CROSSWALK_PARTNERS__CBO_SOUTH__ACTIVE".into(),
                    "false".into(),
                ),
            ],
        },
    )
    .await;
    let changes = entries_json(
        &restarted,
        &issue_token("admin"),
        &format!("?action=partner.change&cursor={head}"),
    )
    .await;
    let changes = changes["entries"].as_array().expect("entries");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["record_id"], "cbo-south");
    assert_eq!(changes[0]["reason"], "changed");
}

fn signal(app: &TestApp, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &app.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// Two gateway processes on one PostgreSQL database, each taking refusals,
/// audit reads and policy reloads at the same time: one chain, no fork, no gap,
/// and every refusal accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_postgres_keep_one_chain() {
    if !crate::helpers::postgres_available("audit::two_gateways_on_one_postgres_keep_one_chain") {
        return;
    }
    let mut first = spawn_app(Backend::Postgres).await;
    let mut second = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            env: vec![("DATABASE_URL".into(), first.db.url.clone())],
        },
    )
    .await;
    let admin = issue_token("admin");
    let refused_each = 40;
    let reads_each = 10;

    let traffic = |app: &TestApp| {
        let client = app.client.clone();
        let url = app.url("/v1/whoami");
        let entries = app.url("/v1/audit/entries?limit=5");
        let admin = admin.clone();
        async move {
            for i in 0..refused_each {
                let response = client
                    .get(&url)
                    .bearer_auth("not.a.token")
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 401);
                if i % 4 == 0 {
                    let read = client
                        .get(&entries)
                        .bearer_auth(&admin)
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(read.status(), 200);
                }
            }
        }
    };
    signal(&first, "-HUP");
    signal(&second, "-HUP");
    tokio::join!(traffic(&first), traffic(&second));
    signal(&first, "-HUP");
    signal(&second, "-HUP");
    assert_eq!(wait_for_entries(&first.db, "policy.reload", 4).await, 4);

    for app in [&mut first, &mut second] {
        signal(app, "-TERM");
        let status = app.wait_exit(Duration::from_secs(30)).await;
        assert!(status.is_some_and(|s| s.success()), "{}", app.logs());
    }

    let (code, stdout, stderr) = run_cli(&["audit", "verify"], &first.db);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let head = count(&first.db, "SELECT seq FROM audit_head").await;
    assert!(
        stdout.contains(&format!("audit log intact: {head} entries")),
        "{stdout}"
    );
    assert_eq!(
        count(&first.db, "SELECT COUNT(*) FROM audit_log").await,
        head
    );
    assert_eq!(
        refusals_recorded(&first.db).await,
        2 * refused_each,
        "every refusal recorded"
    );
    assert_eq!(
        count(
            &first.db,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'audit.read'"
        )
        .await,
        2 * reads_each
    );
    assert_eq!(
        count(
            &first.db,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'partner.change'"
        )
        .await,
        6,
        "the second gateway found the registry already recorded"
    );
}

/// Refusals in the log: one per `refusal` entry plus the count of each
/// `refusal.summary`.
async fn refusals_recorded(db: &TestDatabase) -> i64 {
    let single = count(
        db,
        "SELECT COUNT(*) FROM audit_log WHERE action = 'refusal'",
    )
    .await;
    let mut conn = admin_connection(db).await;
    let summaries = sqlx::query("SELECT detail FROM audit_log WHERE action = 'refusal.summary'")
        .fetch_all(&mut conn)
        .await
        .expect("summaries");
    let summarized: i64 = summaries
        .iter()
        .map(|row| {
            let detail: serde_json::Value =
                serde_json::from_str(&row.get::<String, _>("detail")).expect("JSON");
            detail["count"].as_i64().expect("count")
        })
        .sum();
    single + summarized
}
