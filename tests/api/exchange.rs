//! The exchange's writes over the real binary: referrals (single and batch),
//! routing, idempotency, outcomes and the status they drive, reassignment, health
//! case statuses, bad input, and the leak test.

use std::time::Duration;

use crosswalk::normalize::IdentityInput;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::backend_tests;
use crate::helpers::{
    Backend, TestApp, assert_problem, claims_for, data_at_rest, rfc3339_from_now, sign_as,
    spawn_app,
};

backend_tests!(
    referrals_with_a_minimal_and_a_full_body_are_created,
    routing_follows_assign_to_then_the_rules_then_the_default,
    an_idempotent_retry_returns_the_first_referral,
    a_reused_idempotency_key_with_another_body_is_refused,
    bad_input_names_the_field_and_stores_nothing,
    only_police_submit_referrals,
    a_batch_answers_every_line_in_order,
    a_batch_line_drops_a_bad_optional_field_and_still_links,
    a_large_batch_streams_both_ways,
    only_the_assigned_cbo_reports_outcomes,
    outcome_dates_fall_between_the_referral_and_now,
    outcomes_drive_the_referral_status,
    a_referral_moves_when_its_cbo_declines_or_an_admin_reassigns,
    cases_come_from_health_and_reveal_no_linkage,
    known_identifiers_leak_nowhere,
);

pub(crate) fn token(partner: &str) -> String {
    sign_as(partner, &claims_for(partner))
}

/// A referral with only the required fields.
pub(crate) fn minimal(given: &str, surname: &str) -> Value {
    json!({
        "subject": {"given_name": given, "surname": surname},
        "contact_at": rfc3339_from_now(-3600),
        "district": "north",
        "resources": ["other"],
    })
}

/// A referral with every field.
pub(crate) fn full(given: &str, surname: &str) -> Value {
    json!({
        "cad_number": "CAD-2026-004411",
        "officer_id": "OFC-7731",
        "subject": {
            "given_name": given,
            "surname": surname,
            "dob": "04/12/1979",
            "sex": "F",
            "address": {"street": "18 Poplar Ave", "city": "Sacramento", "state": "CA", "zip": "95817"},
            "phone": "(916) 555-0108",
            "email": "r.example@example.org",
        },
        "contact_at": rfc3339_from_now(-7200),
        "district": "Central",
        "arrested": false,
        "circumstances": "Asked for help finding a shelter bed tonight.",
        "resources": ["homelessness", "mental_health"],
        "follow_up_by": "cbo",
        "assign_to": "cbo-south",
    })
}

pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    partner: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token(partner))
        .json(body)
        .send()
        .await
        .expect("request reaches the gateway")
}

/// A created referral's response body, checked for its shape.
async fn created(response: reqwest::Response) -> Value {
    assert_eq!(response.status().as_u16(), 201, "status");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("JSON");
    let id = body["id"].as_str().expect("id");
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/referrals/{id}").as_str())
    );
    assert_eq!(body["status"], "new");
    assert!(
        body["subject_pseudonym"]
            .as_str()
            .is_some_and(|p| p.starts_with("cwp-")),
        "{body}"
    );
    body
}

pub(crate) async fn count(pool: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .expect("count")
        .get(0)
}

/// The column `column` of the referral `id`.
async fn referral_column(pool: &sqlx::AnyPool, id: &str, column: &str) -> String {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {column} FROM referrals WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("the referral is stored")
    .get(0)
}

async fn referrals_with_a_minimal_and_a_full_body_are_created(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = created(post(&app, "/v1/referrals", "pd", &minimal("Ada", "Okonkwo")).await).await;
    assert_eq!(first["assigned_cbo"], "cbo-north", "the default CBO");
    let response = app
        .client
        .post(app.url("/v1/referrals"))
        .bearer_auth(token("pd"))
        .header("X-Purpose-Of-Use", "PERFMSR")
        .json(&full("Rosa", "Delgado"))
        .send()
        .await
        .expect("request");
    let full = created(response).await;
    assert_eq!(full["assigned_cbo"], "cbo-south", "assign_to");
    let response = app
        .client
        .post(app.url("/v1/referrals"))
        .bearer_auth(token("pd"))
        .header("X-Purpose-Of-Use", "care management")
        .json(&minimal("Ada", "Okonkwo"))
        .send()
        .await
        .expect("request");
    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["errors"][0]["field"], "X-Purpose-Of-Use");

    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, 2);
    let id = full["id"].as_str().expect("id");
    assert_eq!(referral_column(&pool, id, "district").await, "Central");
    assert_eq!(
        referral_column(&pool, id, "resources").await,
        r#"["homelessness","mental_health"]"#
    );
    assert_eq!(referral_column(&pool, id, "workflow_state").await, "open");
    let sealed: Option<Vec<u8>> = sqlx::query("SELECT sealed FROM referrals WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("row")
        .get(0);
    assert!(
        sealed.is_some_and(|s| s.len() > 57),
        "CAD, officer and circumstances sealed"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM referral_resources WHERE resource = 'mental_health'"
        )
        .await,
        1
    );
    // One audit entry per referral, with the declared (or default) purpose and
    // the internal subject reference.
    let rows = sqlx::query(
        "SELECT actor, purpose, resource, record_id, subject_ref FROM audit_log \
         WHERE action = 'referral.create' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .expect("audit");
    let entries: Vec<(String, String, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].1, "CAREMGT");
    assert_eq!(entries[1].1, "PERFMSR");
    assert_eq!(entries[1].0, "pd");
    assert_eq!(entries[1].2, "referral");
    assert_eq!(entries[1].3, id);
    let subject = referral_column(&pool, id, "subject_id").await;
    assert_eq!(entries[1].4, subject);
}

async fn routing_follows_assign_to_then_the_rules_then_the_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let routed = |body: Value| {
        let app = &app;
        async move {
            let receipt = created(post(app, "/v1/referrals", "pd", &body).await).await;
            receipt["assigned_cbo"].as_str().expect("cbo").to_owned()
        }
    };
    let mut explicit = minimal("Ben", "Arrow");
    explicit["assign_to"] = json!("cbo-south");
    assert_eq!(routed(explicit).await, "cbo-south");
    // Rule 0: domestic violence goes south, whatever the district.
    let mut by_resource = minimal("Cal", "Birch");
    by_resource["resources"] = json!(["nutrition", "domestic_violence"]);
    assert_eq!(routed(by_resource).await, "cbo-south");
    // Rule 1: the south districts, compared without regard to case.
    let mut by_district = minimal("Dee", "Cedar");
    by_district["district"] = json!("D4");
    assert_eq!(routed(by_district).await, "cbo-south");
    assert_eq!(
        routed(minimal("Eve", "Dogwood")).await,
        "cbo-north",
        "the default"
    );

    // An assign_to that is not an active CBO is refused, naming it.
    for not_a_cbo in ["pd", "nobody"] {
        let mut body = minimal("Fay", "Elm");
        body["assign_to"] = json!(not_a_cbo);
        let problem = assert_problem(post(&app, "/v1/referrals", "pd", &body).await, 400).await;
        assert_eq!(problem["errors"][0]["field"], "assign_to", "{problem}");
    }

    let pool = app.db_pool().await;
    let history: Vec<(String, Option<i64>)> =
        sqlx::query("SELECT route, rule_index FROM referral_assignments ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("history")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(
        history,
        [
            ("explicit".to_owned(), None),
            ("rule".to_owned(), Some(0)),
            ("rule".to_owned(), Some(1)),
            ("default".to_owned(), None),
        ]
    );
}

async fn send_keyed(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/referrals"))
        .bearer_auth(token("pd"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("request")
}

async fn an_idempotent_retry_returns_the_first_referral(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = full("Gil", "Foster");
    let first = send_keyed(&app, "retry-0001", &body).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = created(first).await;
    let retry = send_keyed(&app, "retry-0001", &body).await;
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(created(retry).await, first, "the first response again");
    // Retries racing each other still make one referral.
    let racing =
        futures_util::future::join_all((0..4).map(|_| send_keyed(&app, "retry-0002", &body))).await;
    let mut ids = Vec::new();
    for response in racing {
        ids.push(created(response).await["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Another department may use the same key.
    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, 2);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM idempotency_keys").await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'referral.create'"
        )
        .await,
        2
    );
    // The key itself is not stored, only a keyed hash of it.
    let stored: Vec<u8> = sqlx::query("SELECT key_hash FROM idempotency_keys LIMIT 1")
        .fetch_one(&pool)
        .await
        .expect("row")
        .get(0);
    assert_eq!(stored.len(), 32);
}

async fn a_reused_idempotency_key_with_another_body_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    created(send_keyed(&app, "k-77", &minimal("Hal", "Grove")).await).await;
    let problem = assert_problem(
        send_keyed(&app, "k-77", &minimal("Ida", "Hazel")).await,
        409,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Idempotency-Key"))
    );
    let problem = assert_problem(
        send_keyed(&app, "bad key", &minimal("Ida", "Hazel")).await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, 1);
}

/// Referrals each wrong in one way, what is wrong, and the field it names.
fn bad_referrals() -> Vec<(&'static str, Value, &'static str)> {
    let base = full("Jo", "Ivy");
    let with = |path: &[&str], value: Value| {
        let mut body = base.clone();
        let mut target = &mut body;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target[path[path.len() - 1]] = value;
        body
    };
    vec![
        (
            "unknown field",
            with(&["subject", "middle_name"], json!("Q")),
            "subject.middle_name",
        ),
        (
            "nested unknown field",
            with(&["subject", "address", "zipcode"], json!("95817")),
            "subject.address.zipcode",
        ),
        (
            "wrong type",
            with(&["arrested"], json!("Jo Ivy")),
            "arrested",
        ),
        (
            "wrong type in a list",
            with(&["resources"], json!(["other", 7])),
            "resources[1]",
        ),
        (
            "unknown category",
            with(&["resources"], json!(["other", "mental_healht"])),
            "resources[1]",
        ),
        (
            "unknown follow-up",
            with(&["follow_up_by"], json!("social worker")),
            "follow_up_by",
        ),
        (
            "malformed date",
            with(&["contact_at"], json!("14/03/2026 9:30")),
            "contact_at",
        ),
        (
            "future date",
            with(&["contact_at"], json!(rfc3339_from_now(86_400))),
            "contact_at",
        ),
        (
            "bad dob",
            with(&["subject", "dob"], json!("31/31/1990")),
            "subject.dob",
        ),
        (
            "bad zip",
            with(&["subject", "address", "zip"], json!("9581")),
            "subject.address.zip",
        ),
        (
            "oversize text",
            with(&["circumstances"], json!("x".repeat(2001))),
            "circumstances",
        ),
        (
            "oversize reference",
            with(&["cad_number"], json!("9".repeat(65))),
            "cad_number",
        ),
        (
            "empty resources",
            with(&["resources"], json!([])),
            "resources",
        ),
        (
            "district with a street",
            with(&["district"], json!("18 Poplar Ave, #2")),
            "district",
        ),
        (
            "missing surname",
            {
                let mut b = base.clone();
                b["subject"]
                    .as_object_mut()
                    .expect("object")
                    .remove("surname");
                b
            },
            "subject.surname",
        ),
    ]
}

async fn bad_input_names_the_field_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = full("Jo", "Ivy");
    for (what, body, field) in bad_referrals() {
        let problem = assert_problem(post(&app, "/v1/referrals", "pd", &body).await, 400).await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{what}: {problem}");
        let text = problem.to_string();
        assert!(
            !text.contains("Jo Ivy") && !text.contains("Poplar"),
            "{what} quotes: {text}"
        );
    }
    // Every problem at once, not only the first.
    let mut many = base.clone();
    many["contact_at"] = json!("yesterday");
    many["resources"] = json!(["lunch"]);
    let problem = assert_problem(post(&app, "/v1/referrals", "pd", &many).await, 400).await;
    assert_eq!(
        problem["errors"].as_array().map(Vec::len),
        Some(2),
        "{problem}"
    );
    // Not JSON, and not declared as JSON.
    let response = app
        .client
        .post(app.url("/v1/referrals"))
        .bearer_auth(token("pd"))
        .header("content-type", "application/json")
        .body("{\"subject\": ")
        .send()
        .await
        .expect("request");
    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["errors"][0]["field"], "(body)");
    let response = app
        .client
        .post(app.url("/v1/referrals"))
        .bearer_auth(token("pd"))
        .body(base.to_string())
        .send()
        .await
        .expect("request");
    assert_problem(response, 415).await;

    let pool = app.db_pool().await;
    // The audit log holds only what start-up recorded (the partner registry).
    for (what, query) in [
        ("referrals", "SELECT COUNT(*) FROM referrals"),
        ("identities", "SELECT COUNT(*) FROM identities"),
        ("subjects", "SELECT COUNT(*) FROM subjects"),
        (
            "audit entries",
            "SELECT COUNT(*) FROM audit_log WHERE action <> 'partner.change'",
        ),
        ("vault keys", "SELECT COUNT(*) FROM vault_keys"),
    ] {
        assert_eq!(count(&pool, query).await, 0, "no {what} stored");
    }
}

async fn only_police_submit_referrals(backend: Backend) {
    let app = spawn_app(backend).await;
    for partner in ["cbo-north", "county-health", "evaluator", "admin"] {
        let problem = assert_problem(
            post(&app, "/v1/referrals", partner, &minimal("Kay", "Juniper")).await,
            403,
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("police"))
        );
        let response = app
            .client
            .post(app.url("/v1/referrals/batch"))
            .bearer_auth(token(partner))
            .header("content-type", "application/x-ndjson")
            .body(format!("{}\n", minimal("Kay", "Juniper")))
            .send()
            .await
            .expect("request");
        assert_problem(response, 403).await;
    }
    let response = app
        .client
        .post(app.url("/v1/referrals"))
        .json(&minimal("Kay", "Juniper"))
        .send()
        .await
        .expect("request");
    assert_problem(response, 401).await;
    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, 0);
}

/// Sends an NDJSON body and returns the result lines.
pub(crate) async fn batch(app: &TestApp, body: String, key: Option<&str>) -> Vec<Value> {
    let mut request = app
        .client
        .post(app.url("/v1/referrals/batch"))
        .bearer_auth(token("pd"))
        .header("content-type", "application/x-ndjson")
        .body(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    let text = response.text().await.expect("body");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

async fn a_batch_answers_every_line_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut bad_date = minimal("Lou", "Kale");
    bad_date["contact_at"] = json!("last Tuesday");
    let mut unknown = minimal("Max", "Laurel");
    unknown["resources"] = json!(["other", "snacks"]);
    let lines = [
        minimal("Ned", "Maple").to_string(),
        bad_date.to_string(),
        full("Ora", "Nettle").to_string(),
        "{\"subject\": {".to_owned(),
        String::new(),
        unknown.to_string(),
        minimal("Pia", "Oak").to_string(),
    ];
    let body = lines.join("\n") + "\n";
    let results = batch(&app, body.clone(), Some("batch-1")).await;
    assert_eq!(results.len(), lines.len(), "{results:?}");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["line"], i + 1, "in order: {result}");
    }
    let good = [0, 2, 6];
    for &i in &good {
        assert_eq!(results[i]["referral"]["status"], "new", "{}", results[i]);
    }
    let expect_field = [
        (1, "contact_at"),
        (3, "(body)"),
        (4, "(line)"),
        (5, "resources[1]"),
    ];
    for (i, field) in expect_field {
        let problem = &results[i]["problem"];
        assert_eq!(problem["status"], 400, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("line {}", i + 1))),
            "{problem}"
        );
    }
    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, 3);

    // The same batch again under the same key: the good lines answer as before.
    let again = batch(&app, body, Some("batch-1")).await;
    for &i in &good {
        assert_eq!(again[i]["referral"], results[i]["referral"]);
        assert_eq!(again[i]["replayed"], true);
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, 3);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'referral.create'"
        )
        .await,
        3
    );
}

/// In a batch, an optional subject field that does not normalize costs that
/// field, not the line: the referral is stored without it in its linkage,
/// the line names it (never quoting it), and the person still links on the
/// rest. A required name that does not normalize still refuses the line; a
/// single referral still refuses the bad date (the officer can correct it).
async fn a_batch_line_drops_a_bad_optional_field_and_still_links(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = full("Rhea", "Quill");
    let mut impossible = full("Rhea", "Quill");
    impossible["subject"]["dob"] = json!("1979-13-04");
    let mut bad_name = full("Rhea", "Quill");
    bad_name["subject"]["given_name"] = json!("1234");
    let body = [&good, &impossible, &bad_name]
        .iter()
        .map(|v| v.to_string() + "\n")
        .collect::<String>();
    let results = batch(&app, body, None).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[0].get("dropped").is_none(), "{}", results[0]);
    assert_eq!(results[1]["referral"]["status"], "new", "{}", results[1]);
    assert_eq!(
        results[1]["dropped"][0]["field"], "subject.dob",
        "{}",
        results[1]
    );
    assert_eq!(results[1]["dropped"].as_array().map(Vec::len), Some(1));
    assert!(
        !results[1].to_string().contains("1979-13-04"),
        "{}",
        results[1]
    );
    assert_eq!(
        results[1]["referral"]["subject_pseudonym"], results[0]["referral"]["subject_pseudonym"],
        "the same person, linked without the date"
    );
    assert_eq!(results[2]["problem"]["status"], 400, "{}", results[2]);
    assert_eq!(
        results[2]["problem"]["errors"][0]["field"],
        "subject.given_name"
    );

    let single = post(&app, "/v1/referrals", "pd", &impossible).await;
    assert_eq!(single.status(), 400);
    let problem: Value = single.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "subject.dob", "{problem}");
    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, 2);
}

/// A referral for a synthetic person (realistic names, addresses, phones).
pub(crate) fn synthetic_referral(person: &IdentityInput) -> Value {
    json!({
        "subject": {
            "given_name": person.given_name,
            "surname": person.surname,
            "dob": person.dob,
            "sex": person.sex,
            "address": {"street": person.street, "city": person.city, "state": person.state, "zip": person.zip},
            "phone": person.phone,
            "email": person.email,
        },
        "contact_at": rfc3339_from_now(-3600),
        "district": "d4",
        "resources": ["homelessness"],
    })
}

/// 20,000 lines, sent as a stream: the first results must come back before the
/// rest is sent (a gateway that buffered the body would never answer, and the
/// test would time out), and every line is answered and stored.
async fn a_large_batch_streams_both_ways(backend: Backend) {
    const LINES: usize = 20_000;
    const FIRST: usize = 600;
    let app = spawn_app(backend).await;
    let lines: Vec<Vec<u8>> = crosswalk::linkage::synth::people(11, LINES)
        .iter()
        .map(|person| format!("{}\n", synthetic_referral(person)).into_bytes())
        .collect();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let request = crate::helpers::client(None)
        .post(app.url("/v1/referrals/batch"))
        .bearer_auth(token("pd"))
        .header("content-type", "application/x-ndjson")
        .timeout(Duration::from_mins(30))
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let mut rest: Vec<Vec<u8>> = lines;
    let first: Vec<Vec<u8>> = rest.drain(..FIRST).collect();
    let first_part = tokio::spawn({
        let sender = sender.clone();
        async move {
            for line in first {
                sender.send(Ok(line)).await.expect("send");
            }
        }
    });
    let mut response = request
        .await
        .expect("the response starts before the body ends");
    assert_eq!(response.status().as_u16(), 200);
    first_part.await.expect("first part sent");

    let mut results: Vec<Value> = Vec::with_capacity(LINES);
    let mut pending = Vec::new();
    let mut rest = Some(rest);
    while let Some(bytes) = tokio::time::timeout(Duration::from_mins(10), response.chunk())
        .await
        .expect("results keep coming")
        .expect("body")
    {
        pending.extend_from_slice(&bytes);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            results.push(serde_json::from_slice(&line).expect("JSON line"));
        }
        // Only once the first lines are answered, send the rest and end the body.
        if results.len() >= FIRST
            && let Some(rest) = rest.take()
        {
            let sender = sender.clone();
            tokio::spawn(async move {
                for line in rest {
                    sender.send(Ok(line)).await.expect("send");
                }
            });
        }
        if results.len() >= LINES {
            break;
        }
    }
    drop(sender);
    assert_eq!(results.len(), LINES);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["line"], i + 1);
        assert!(result["referral"]["id"].is_string(), "{result}");
    }
    let pool = app.db_pool().await;
    let stored = i64::try_from(LINES).expect("fits");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM referrals").await, stored);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'referral.create'"
        )
        .await,
        stored
    );
}

async fn outcome(app: &TestApp, partner: &str, referral: &str, body: &Value) -> reqwest::Response {
    post(
        app,
        &format!("/v1/referrals/{referral}/outcomes"),
        partner,
        body,
    )
    .await
}

async fn only_the_assigned_cbo_reports_outcomes(backend: Backend) {
    let app = spawn_app(backend).await;
    let referral = created(post(&app, "/v1/referrals", "pd", &minimal("Quin", "Pine")).await).await;
    let id = referral["id"].as_str().expect("id");
    assert_eq!(referral["assigned_cbo"], "cbo-north");
    let contacted = json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0)});
    for partner in ["cbo-south", "pd", "county-health", "admin"] {
        assert_problem(outcome(&app, partner, id, &contacted).await, 404).await;
    }
    // An unknown id and a malformed one look the same.
    assert_problem(
        outcome(
            &app,
            "cbo-north",
            "0190f2c4-0000-7000-8000-000000000000",
            &contacted,
        )
        .await,
        404,
    )
    .await;
    assert_problem(
        outcome(&app, "cbo-north", "not-an-id", &contacted).await,
        404,
    )
    .await;
    let response = outcome(&app, "cbo-north", id, &contacted).await;
    assert_eq!(response.status().as_u16(), 201);
    let recorded: Value = response.json().await.expect("JSON");
    assert_eq!(recorded["referral_id"], id);
    assert_eq!(recorded["status"], "contacted");
    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM outcomes").await, 1);
    let (actor, subject): (String, String) =
        sqlx::query("SELECT actor, subject_ref FROM audit_log WHERE action = 'outcome.create'")
            .fetch_one(&pool)
            .await
            .map(|r| (r.get(0), r.get(1)))
            .expect("audited");
    assert_eq!(actor, "cbo-north");
    assert_eq!(subject, referral_column(&pool, id, "subject_id").await);
}

async fn outcome_dates_fall_between_the_referral_and_now(backend: Backend) {
    let app = spawn_app(backend).await;
    let referral =
        created(post(&app, "/v1/referrals", "pd", &minimal("Rae", "Quince")).await).await;
    let id = referral["id"].as_str().expect("id");
    for (what, occurred_at) in [
        ("before the referral", rfc3339_from_now(-86_400)),
        ("in the future", rfc3339_from_now(86_400)),
        ("not a date", "2026-13-40T00:00:00Z".to_owned()),
    ] {
        let body = json!({"kind": "contact_attempted", "occurred_at": occurred_at});
        let problem = assert_problem(outcome(&app, "cbo-north", id, &body).await, 400).await;
        assert_eq!(
            problem["errors"][0]["field"], "occurred_at",
            "{what}: {problem}"
        );
    }
    let notes =
        json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0), "notes": "n".repeat(2001)});
    let problem = assert_problem(outcome(&app, "cbo-north", id, &notes).await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "notes");
    let unknown = json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0), "mood": "ok"});
    let problem = assert_problem(outcome(&app, "cbo-north", id, &unknown).await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "mood");
    let pool = app.db_pool().await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM outcomes").await, 0);
    assert_eq!(referral_column(&pool, id, "status").await, "new");
}

async fn outcomes_drive_the_referral_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let referral = created(post(&app, "/v1/referrals", "pd", &minimal("Sam", "Rowan")).await).await;
    let id = referral["id"].as_str().expect("id");
    let pool = app.db_pool().await;
    let at = rfc3339_from_now(0);
    let step = |kind: &str, resource: Option<&str>| {
        let mut body = json!({"kind": kind, "occurred_at": at});
        if let Some(resource) = resource {
            body["resource"] = json!(resource);
        }
        body
    };
    for (body, status, state) in [
        (step("contacted", None), "contacted", "open"),
        (step("contact_attempted", None), "contacted", "open"),
        (step("engaged", None), "engaged", "open"),
        (
            step("service_connected", Some("homelessness")),
            "service_connected",
            "open",
        ),
        (step("closed", None), "closed", "closed"),
    ] {
        let response = outcome(&app, "cbo-north", id, &body).await;
        assert_eq!(response.status().as_u16(), 201, "{body}");
        let recorded: Value = response.json().await.expect("JSON");
        assert_eq!(recorded["status"], status, "{body}");
        assert_eq!(recorded["workflow_state"], state);
        assert_eq!(referral_column(&pool, id, "status").await, status);
        assert_eq!(referral_column(&pool, id, "workflow_state").await, state);
    }
    // service_connected needs its resource; a closed referral takes no more.
    let other = created(post(&app, "/v1/referrals", "pd", &minimal("Tia", "Sage")).await).await;
    let other = other["id"].as_str().expect("id");
    let problem = assert_problem(
        outcome(&app, "cbo-north", other, &step("service_connected", None)).await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "resource");
    let problem = assert_problem(
        outcome(&app, "cbo-north", other, &step("engaged", Some("veteran"))).await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "resource");
    assert_problem(
        outcome(&app, "cbo-north", id, &step("contacted", None)).await,
        409,
    )
    .await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM outcomes").await, 5);
}

async fn a_referral_moves_when_its_cbo_declines_or_an_admin_reassigns(backend: Backend) {
    let app = spawn_app(backend).await;
    let referral = created(post(&app, "/v1/referrals", "pd", &minimal("Uma", "Teak")).await).await;
    let id = referral["id"].as_str().expect("id");
    let path = format!("/v1/referrals/{id}/assignment");
    let decline = json!({"reason": "capacity"});
    for partner in ["cbo-south", "pd", "county-health"] {
        assert_problem(post(&app, &path, partner, &decline).await, 404).await;
    }
    // No rule routes this referral anywhere but the default, which is the CBO
    // declining it: it must say where.
    assert_problem(post(&app, &path, "cbo-north", &decline).await, 409).await;
    let problem = assert_problem(
        post(&app, &path, "cbo-north", &json!({"reason": "busy"})).await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "reason");
    let response = post(
        &app,
        &path,
        "cbo-north",
        &json!({"reason": "capacity", "assign_to": "cbo-south"}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let moved: Value = response.json().await.expect("JSON");
    assert_eq!(moved["assigned_cbo"], "cbo-south");
    // The old CBO has lost it; the new one has it.
    let contacted = json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0)});
    assert_problem(outcome(&app, "cbo-north", id, &contacted).await, 404).await;
    // An admin moves it back, by the rules (which now exclude cbo-south: default).
    let response = post(&app, &path, "admin", &json!({"reason": "other"})).await;
    assert_eq!(response.status().as_u16(), 200);
    let moved: Value = response.json().await.expect("JSON");
    assert_eq!(moved["assigned_cbo"], "cbo-north");
    assert_eq!(moved["route"], "default");
    assert_eq!(
        outcome(&app, "cbo-north", id, &contacted)
            .await
            .status()
            .as_u16(),
        201
    );

    let pool = app.db_pool().await;
    let history: Vec<(Option<String>, String, String, String)> = sqlx::query(
        "SELECT from_cbo, to_cbo, cause, assigned_by FROM referral_assignments \
         WHERE referral_id = $1 ORDER BY at, id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .expect("history")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect();
    assert_eq!(
        history,
        [
            (None, "cbo-north".into(), "submitted".into(), "pd".into()),
            (
                Some("cbo-north".into()),
                "cbo-south".into(),
                "declined".into(),
                "cbo-north".into()
            ),
            (
                Some("cbo-south".into()),
                "cbo-north".into(),
                "admin".into(),
                "admin".into()
            ),
        ]
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'referral.reassign'"
        )
        .await,
        2
    );
}

fn case(given: &str, surname: &str, program: &str) -> Value {
    json!({
        "subject": {"given_name": given, "surname": surname, "dob": "1979-04-12", "phone": "+1 916 555 0108"},
        "case_ref": "MRN-000-1",
        "program": program,
        "status": "enrolled",
        "effective_at": rfc3339_from_now(-600),
    })
}

/// The shape of a JSON value: its keys and value types, recursively.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::String(_) => json!("string"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        other => other.clone(),
    }
}

async fn cases_come_from_health_and_reveal_no_linkage(backend: Backend) {
    let app = spawn_app(backend).await;
    // Police know Rosa Delgado (born 1979-04-12, phone 916-555-0108).
    let referral = created(post(&app, "/v1/referrals", "pd", &full("Rosa", "Delgado")).await).await;
    for partner in ["pd", "cbo-north", "admin"] {
        assert_problem(
            post(
                &app,
                "/v1/cases",
                partner,
                &case("Rosa", "Delgado", "housing"),
            )
            .await,
            403,
        )
        .await;
    }
    let known = post(
        &app,
        "/v1/cases",
        "county-health",
        &case("ROSA", "DELGADO", "substance_use"),
    )
    .await;
    let unknown = post(
        &app,
        "/v1/cases",
        "county-health",
        &case("Wanda", "Vetiver", "substance_use"),
    )
    .await;
    assert_eq!(known.status().as_u16(), 201);
    assert_eq!(unknown.status().as_u16(), 201);
    let known: Value = known.json().await.expect("JSON");
    let unknown: Value = unknown.json().await.expect("JSON");
    assert_eq!(shape(&known), shape(&unknown), "{known} / {unknown}");
    for key in ["program", "status", "part2"] {
        assert_eq!(known[key], unknown[key], "{key}");
    }
    assert_eq!(known["part2"], true, "substance use is Part 2");

    // Yet the gateway did link the known person, and flagged Part 2 at rest.
    let pool = app.db_pool().await;
    let subject_of_case = |id: &str| {
        let pool = &pool;
        let id = id.to_owned();
        async move {
            let row = sqlx::query("SELECT subject_id, part2 FROM cases WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .expect("case stored");
            (row.get::<String, _>(0), row.get::<i64, _>(1))
        }
    };
    let referral_subject =
        referral_column(&pool, referral["id"].as_str().expect("id"), "subject_id").await;
    let (known_subject, part2) = subject_of_case(known["id"].as_str().expect("id")).await;
    let (unknown_subject, _) = subject_of_case(unknown["id"].as_str().expect("id")).await;
    assert_eq!(
        known_subject, referral_subject,
        "linked to the police referral"
    );
    assert_ne!(unknown_subject, referral_subject);
    assert_eq!(part2, 1);
    let bad = json!({"subject": {"given_name": "A", "surname": "B"}, "case_ref": "x", "program": "dental", "status": "enrolled", "effective_at": rfc3339_from_now(0)});
    let problem = assert_problem(post(&app, "/v1/cases", "county-health", &bad).await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "program");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM cases").await, 2);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'case.create'"
        )
        .await,
        2
    );
}

/// Identifiers submitted through every write never reach the database at rest,
/// the logs, the metrics or a response — including error responses to input that
/// carries them in the wrong place.
async fn known_identifiers_leak_nowhere(backend: Backend) {
    const NEEDLES: &[&str] = &[
        "Quentavious",
        "Marchetti",
        "Oyelaran",
        "Larkspur",
        "555-0173",
        "5550173",
        "q.marchetti",
        "CAD-2026-118877",
        "2026118877",
        "OFC-55123",
        "Tower Theatre",
        "after 5pm",
        "MRN-8812-4471",
        "1983-07-19",
        "07/19/1983",
    ];
    let mut app = spawn_app(backend).await;
    let responses = submit_known_identifiers(&app).await;
    let metrics = app.metrics().await.1;

    app.stop().await;
    let at_rest = data_at_rest(&app.db).await;
    assert!(at_rest.len() > 10_000, "the search reads real data");
    let logs = app.logs();
    assert!(logs.contains("referral"), "the logs were captured");
    for needle in NEEDLES {
        let needle_lower = needle.to_ascii_lowercase();
        assert!(
            !at_rest
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes())),
            "{needle:?} at rest ({backend:?})"
        );
        assert!(
            !logs.to_ascii_lowercase().contains(&needle_lower),
            "{needle:?} in the logs"
        );
        assert!(
            !metrics.to_ascii_lowercase().contains(&needle_lower),
            "{needle:?} in /metrics"
        );
        assert!(
            !responses.to_ascii_lowercase().contains(&needle_lower),
            "{needle:?} in a response: {responses}"
        );
    }
}

/// Sends the leak test's identifiers through every write, rightly and wrongly
/// placed, and returns every response body.
async fn submit_known_identifiers(app: &TestApp) -> String {
    let subject = json!({
        "given_name": "Quentavious",
        "surname": "Marchetti-Oyelaran",
        "dob": "07/19/1983",
        "sex": "M",
        "address": {"street": "4417 Larkspur Hollow Rd", "city": "Sacramento", "state": "CA", "zip": "95818"},
        "phone": "(916) 555-0173",
        "email": "q.marchetti@example.org",
    });
    let referral = json!({
        "cad_number": "CAD-2026-118877",
        "officer_id": "OFC-55123",
        "subject": subject,
        "contact_at": rfc3339_from_now(-3600),
        "district": "south",
        "arrested": true,
        "circumstances": "Sleeping in the doorway of the Tower Theatre, asked for a blanket.",
        "resources": ["homelessness"],
    });
    let mut responses = String::new();
    let mut keep = |text: String| {
        responses.push_str(&text);
        responses.push('\n');
    };
    let single = post(app, "/v1/referrals", "pd", &referral).await;
    assert_eq!(single.status().as_u16(), 201);
    let single: Value = single.json().await.expect("JSON");
    keep(single.to_string());
    let id = single["id"].as_str().expect("id").to_owned();
    let cbo = single["assigned_cbo"].as_str().expect("cbo").to_owned();
    // The batch route, and identifiers where they do not belong (errors must not
    // quote them).
    let mut misplaced = referral.clone();
    misplaced["arrested"] = json!("Quentavious Marchetti-Oyelaran");
    let mut misplaced_key = referral.clone();
    misplaced_key["subject"]["Quentavious"] = json!("x");
    let mut bad_phone = referral.clone();
    bad_phone["subject"]["phone"] = json!("555-0173 Larkspur");
    for result in batch(
        app,
        format!("{referral}\n{misplaced}\n{misplaced_key}\n{bad_phone}\n"),
        Some("CAD-2026-118877"),
    )
    .await
    {
        keep(result.to_string());
    }
    let response = app
        .client
        .post(app.url("/v1/referrals"))
        .bearer_auth(token("pd"))
        .header("Idempotency-Key", "CAD-2026-118877")
        .json(&misplaced)
        .send()
        .await
        .expect("request");
    keep(response.text().await.expect("body"));
    let notes = json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0), "notes": "Prefers text messages after 5pm; Larkspur address is current."});
    let response = post(app, &format!("/v1/referrals/{id}/outcomes"), &cbo, &notes).await;
    assert_eq!(response.status().as_u16(), 201);
    keep(response.text().await.expect("body"));
    let mut case = json!({
        "subject": subject,
        "case_ref": "MRN-8812-4471",
        "program": "mental_health",
        "status": "active",
        "effective_at": rfc3339_from_now(-60),
    });
    let response = post(app, "/v1/cases", "county-health", &case).await;
    assert_eq!(response.status().as_u16(), 201);
    keep(response.text().await.expect("body"));
    case["effective_at"] = json!("Quentavious");
    keep(
        post(app, "/v1/cases", "county-health", &case)
            .await
            .text()
            .await
            .expect("body"),
    );
    responses
}
