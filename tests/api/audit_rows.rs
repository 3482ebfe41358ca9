//! The audit log's tail cut between two checkpoints.
//!
//! Records are made through the real server (referrals, their assignments and
//! a reassignment, outcomes, case statuses, consents and a revocation, an
//! export, reads). Then, as the database's owner could, the append-only
//! triggers are dropped, the entries after the last checkpoint deleted and
//! `audit_head` rewound to the last kept entry: the chain that remains is
//! whole and every checkpoint, in the database and in the witness file, still
//! matches it. `crosswalk audit verify` (the real binary) must still exit 2,
//! naming each table and how many of its rows have no create entry, and no
//! identifier. And the reverse: a row deleted while its create entry stays.

use serde_json::{Value, json};

use crate::audit::{count, disable_append_only, execute};
use crate::backend_tests;
use crate::helpers::{AppOptions, Backend, TestApp, rfc3339_from_now, run_cli, spawn_app_with};
use crate::reads::{ok_json, read_as, refer, referral_body, token};

backend_tests!(
    a_tail_cut_between_checkpoints_is_found_by_the_rows_it_left,
    a_row_deleted_while_its_create_entry_stays_is_found,
);

/// The sets `audit verify` accounts for: how it names each, and how to count
/// its rows.
const SETS: [(&str, &str, &str); 7] = [
    (
        "referrals",
        "referral.create",
        "SELECT COUNT(*) FROM referrals",
    ),
    (
        "referral_assignments",
        "referral.create",
        "SELECT COUNT(*) FROM referral_assignments WHERE from_cbo IS NULL",
    ),
    (
        "referral_assignments",
        "referral.reassign",
        "SELECT COUNT(*) FROM referral_assignments WHERE from_cbo IS NOT NULL",
    ),
    (
        "outcomes",
        "outcome.create",
        "SELECT COUNT(*) FROM outcomes",
    ),
    ("cases", "case.create", "SELECT COUNT(*) FROM cases"),
    (
        "consents",
        "consent.create",
        "SELECT COUNT(*) FROM consents",
    ),
    ("exports", "export.request", "SELECT COUNT(*) FROM exports"),
];

/// A gateway whose own timer will not sign a checkpoint during the test: the
/// checkpoints are the ones the test makes.
async fn quiet_gateway(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            env: vec![(
                "CROSSWALK_AUDIT__CHECKPOINT_INTERVAL_SECS".into(),
                "3600".into(),
            )],
        },
    )
    .await
}

async fn post(app: &TestApp, partner: &str, path: &str, body: &Value) -> Value {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(token(partner))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Everything a day at the gateway writes, for the person `surname`; returns
/// the ids the responses carried.
async fn a_day_of_records(app: &TestApp, surname: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, cbo) in ["cbo-north", "cbo-south", "cbo-north"]
        .into_iter()
        .enumerate()
    {
        let given = ["Avery", "Blair", "Casey"][i];
        let referral = refer(app, &referral_body(given, surname, cbo)).await;
        // A read: a disclosure entry, which creates no row.
        ok_json(read_as(app, "pd", &format!("/v1/referrals/{referral}"), None).await).await;
        ids.push(referral);
    }
    let north = ids[0].clone();
    for kind in ["contact_attempted", "contacted"] {
        let outcome = post(
            app,
            "cbo-north",
            &format!("/v1/referrals/{north}/outcomes"),
            &json!({"kind": kind, "occurred_at": rfc3339_from_now(0)}),
        )
        .await;
        ids.push(outcome["id"].as_str().expect("id").to_owned());
    }
    let moved = ids[2].clone();
    post(
        app,
        "cbo-north",
        &format!("/v1/referrals/{moved}/assignment"),
        &json!({"reason": "capacity", "assign_to": "cbo-south"}),
    )
    .await;
    let case = post(
        app,
        "county-health",
        "/v1/cases",
        &json!({
            "subject": {"given_name": "Avery", "surname": surname, "dob": "1981-02-03"},
            "case_ref": format!("MRN-{surname}"),
            "program": "mental_health",
            "status": "active",
            "effective_at": rfc3339_from_now(-600),
        }),
    )
    .await;
    ids.push(case["id"].as_str().expect("id").to_owned());
    let consent = post(
        app,
        "cbo-north",
        "/v1/consents",
        &json!({
            "referral": north,
            "recipients": ["police"],
            "purposes": ["CAREMGT"],
            "classes": ["operational", "health"],
            "period": {"start": rfc3339_from_now(-3600), "end": rfc3339_from_now(86_400)},
            "method": "written",
            "evidence_hash": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        }),
    )
    .await;
    ids.push(consent["id"].as_str().expect("id").to_owned());
    ids
}

/// Requests an export and waits until it is built (its last entry written).
async fn an_export(app: &TestApp) -> String {
    let started = post(
        app,
        "evaluator",
        "/v1/exports",
        &json!({"study": "demo-study"}),
    )
    .await;
    let id = started["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    while count(
        &app.db,
        &format!("SELECT COUNT(*) FROM exports WHERE id = '{id}' AND state = 'running'"),
    )
    .await
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the export did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    id
}

async fn row_counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for (_, _, sql) in SETS {
        counts.push(count(&app.db, sql).await);
    }
    counts
}

/// Everything that identifies a record or a person in this test's database:
/// none of it may appear in what `audit verify` prints.
async fn identifiers(app: &TestApp, mut ids: Vec<String>) -> Vec<String> {
    use sqlx::Row as _;
    let pool = app.db_pool().await;
    for table in ["subjects", "identities"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT id FROM {table}")))
            .fetch_all(&pool)
            .await
            .expect("ids");
        ids.extend(rows.iter().map(|row| row.get::<String, _>(0)));
    }
    ids.extend(["Avery", "Blair", "Casey", "Larkspur", "555-0144"].map(str::to_owned));
    ids
}

async fn a_tail_cut_between_checkpoints_is_found_by_the_rows_it_left(backend: Backend) {
    let app = quiet_gateway(backend).await;
    let mut ids = a_day_of_records(&app, "Quillon").await;
    let (code, stdout, stderr) = run_cli(&["audit", "checkpoint"], &app.db);
    assert_eq!(code, Some(0), "{stderr}");
    let signed: Value = serde_json::from_str(stdout.trim()).expect("the witness line");
    let kept = signed["seq"].as_i64().expect("seq");
    let witness = app.db.witness_file();
    let witness = witness.to_str().expect("UTF-8 path");
    let (code, stdout, stderr) = run_cli(&["audit", "verify", "--checkpoint", witness], &app.db);
    assert_eq!(code, Some(0), "intact before the cut: {stdout}{stderr}");
    assert!(
        stdout.contains(
            "every audited row has its create entry and every create entry its row: \
             3 referrals, 3 first assignments, 1 reassignments, 2 outcomes, 1 cases, \
             1 consents, 0 exports"
        ),
        "{stdout}"
    );

    // The tail the checkpoint does not cover yet, ~90 entries: more of
    // everything, a revocation (an update), an export, and many reads.
    let before = row_counts(&app).await;
    ids.extend(a_day_of_records(&app, "Rennick").await);
    ids.extend(a_day_of_records(&app, "Tamsin").await);
    let revoke = format!("/v1/consents/{}/revoke", ids[6]);
    post(&app, "cbo-north", &revoke, &json!({})).await;
    ids.push(an_export(&app).await);
    for referral in ids.iter().take(3).cycle().take(60) {
        ok_json(read_as(&app, "pd", &format!("/v1/referrals/{referral}"), None).await).await;
    }
    let after = row_counts(&app).await;
    let head = count(&app.db, "SELECT seq FROM audit_head").await;
    assert!(head - kept >= 80, "a tail of {} entries", head - kept);

    disable_append_only(&app.db, backend).await;
    execute(
        &app.db,
        &[
            &format!("DELETE FROM audit_log WHERE seq > {kept}"),
            &format!(
                "UPDATE audit_head SET seq = {kept}, \
                 hash = (SELECT hash FROM audit_log WHERE seq = {kept}) WHERE id = 1"
            ),
        ],
    )
    .await;

    let expected: Vec<String> = SETS
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (before, after))| after > before)
        .map(|((table, action, _), (before, after))| {
            format!("{} in {table} ({action})", after - before)
        })
        .collect();
    assert_eq!(
        expected.len(),
        7,
        "every set has rows in the tail: {expected:?}"
    );
    let secrets = identifiers(&app, ids).await;
    for args in [
        vec!["audit", "verify"],
        vec!["audit", "verify", "--checkpoint", witness],
    ] {
        let (code, stdout, stderr) = run_cli(&args, &app.db);
        assert_eq!(
            code,
            Some(2),
            "{args:?} exits 2 on tampering: {stdout}{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "the audit log is not intact: rows without their create entry in the chain: {}",
                expected.join(", ")
            )),
            "{args:?} names each table and how many rows: {stderr}"
        );
        for secret in &secrets {
            assert!(
                !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
                "{args:?} printed an identifier: {stdout}{stderr}"
            );
        }
    }
}

async fn a_row_deleted_while_its_create_entry_stays_is_found(backend: Backend) {
    let app = quiet_gateway(backend).await;
    let ids = a_day_of_records(&app, "Sorrell").await;
    let (code, stdout, stderr) = run_cli(&["audit", "verify"], &app.db);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // No trigger guards these tables: deleting is all it takes.
    execute(
        &app.db,
        &[
            &format!("DELETE FROM outcomes WHERE id = '{}'", ids[4]),
            &format!("DELETE FROM consents WHERE id = '{}'", ids[6]),
        ],
    )
    .await;

    let (code, stdout, stderr) = run_cli(&["audit", "verify"], &app.db);
    assert_eq!(code, Some(2), "exits 2: {stdout}{stderr}");
    assert!(
        stderr.contains(
            "the audit log is not intact: create entries whose row is gone: \
             1 in outcomes (outcome.create), 1 in consents (consent.create)"
        ),
        "{stderr}"
    );
    for id in identifiers(&app, ids).await {
        assert!(!stderr.contains(id.as_str()), "an identifier: {stderr}");
    }
}
