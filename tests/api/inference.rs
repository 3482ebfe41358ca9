//! Privacy against inference, as a curious partner would try it over the real
//! binary: a consent opens only the records of the partner that recorded it
//! (its discloser); a Part 2 record a requester may not see is absent, never a
//! hollow row whose blanks mark the person as a patient; and the accounting a
//! recorder reads names what received its records only by kind.

use serde_json::{Value, json};
use sqlx::Row as _;

use crate::backend_tests;
use crate::consents::{consent_body, post_as, record_consent, report_outcome};
use crate::helpers::{Backend, TestApp, assert_problem, rfc3339_from_now, spawn_app};
use crate::reads::{ok_json, read_as, refer, referral_body};

backend_tests!(
    a_cbo_cannot_open_health_records_with_a_consent_it_records,
    a_part2_record_is_absent_not_hollow,
    a_recorder_learns_only_the_kind_that_received_its_records,
);

/// A case status for the person `referral_body("Linden", "Marsh", ..)`
/// describes (same name, date of birth and phone, so it links).
fn linden_case(program: &str, status: &str, case_ref: &str) -> Value {
    json!({
        "subject": {"given_name": "Linden", "surname": "Marsh", "dob": "1981-02-03",
                    "phone": "(916) 555-0144"},
        "case_ref": case_ref,
        "program": program,
        "status": status,
        "effective_at": rfc3339_from_now(-600),
    })
}

async fn post_case(app: &TestApp, body: &Value) -> String {
    let response = post_as(app, "county-health", "/v1/cases", body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let case: Value = response.json().await.expect("JSON");
    case["id"].as_str().expect("id").to_owned()
}

/// `GET /v1/referrals/{referral}/case-status` as `partner`: the statuses.
async fn case_statuses(app: &TestApp, partner: &str, referral: &str) -> Vec<Value> {
    let path = format!("/v1/referrals/{referral}/case-status");
    let page = ok_json(read_as(app, partner, &path, None).await).await;
    page["case_statuses"]
        .as_array()
        .expect("case_statuses")
        .clone()
}

/// The (program, status) pairs of `statuses`, sorted.
fn programs(statuses: &[Value]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = statuses
        .iter()
        .map(|s| {
            (
                s["program"].as_str().unwrap_or("<withheld>").to_owned(),
                s["status"].as_str().unwrap_or("<withheld>").to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    let pool = app.db_pool().await;
    sqlx::query(sql)
        .fetch_one(&pool)
        .await
        .expect("count")
        .get(0)
}

/// The referral, its person's two health cases (one substance use, so Part
/// 2), and an outcome by cbo-north.
async fn seed(app: &TestApp) -> (String, String, String) {
    let referral = refer(app, &referral_body("Linden", "Marsh", "cbo-north")).await;
    report_outcome(app, &referral).await;
    let part2_case = post_case(app, &linden_case("substance_use", "enrolled", "MRN-SUD-1")).await;
    let mental_case = post_case(app, &linden_case("mental_health", "active", "MRN-MH-1")).await;
    (referral, part2_case, mental_case)
}

/// Finding 1: cbo-north records a consent on its own referral naming itself and
/// police for health and substance-use classes, hoping to read county-health's
/// cases (and to let police read them). A consent names the program that
/// discloses (42 CFR §2.31): a CBO's consent opens the CBO's own records only.
async fn a_cbo_cannot_open_health_records_with_a_consent_it_records(backend: Backend) {
    let app = spawn_app(backend).await;
    let (referral, part2_case, mental_case) = seed(&app).await;
    for reader in ["cbo-north", "pd"] {
        assert!(case_statuses(&app, reader, &referral).await.is_empty());
    }

    // The request as found: Part 2 classes from a partner that holds no Part 2
    // record are refused, naming the class; nothing is stored.
    let mut grab = consent_body(
        json!({"referral": referral}),
        &["cbo-north", "police"],
        &["health", "substance_use", "operational", "quasi_identifier"],
    );
    grab["part2"] = json!({"recipients": ["cbo-north"], "right_to_revoke": true});
    let problem =
        assert_problem(post_as(&app, "cbo-north", "/v1/consents", &grab).await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "classes[1]", "{problem}");
    // Naming another partner as the one that discloses: refused too.
    let mut other_discloser = consent_body(
        json!({"referral": referral}),
        &["police"],
        &["health", "operational"],
    );
    other_discloser["discloser"] = json!("county-health");
    let problem = assert_problem(
        post_as(&app, "cbo-north", "/v1/consents", &other_discloser).await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "discloser", "{problem}");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM consents").await,
        0,
        "nothing stored"
    );

    // Without the Part 2 class the consent is recorded, as the CBO's own.
    let consent = record_consent(
        &app,
        "cbo-north",
        &consent_body(
            json!({"referral": referral}),
            &["cbo-north", "police"],
            &["health", "operational", "quasi_identifier"],
        ),
    )
    .await;
    assert_eq!(consent["discloser"], "cbo-north", "{consent}");

    // It opens what cbo-north holds (its outcome, to police) ...
    let outcomes = ok_json(read_as(&app, "pd", "/v1/outcomes", None).await).await;
    assert_eq!(
        outcomes["outcomes"].as_array().map(Vec::len),
        Some(1),
        "{outcomes}"
    );
    // ... and never county-health's cases, to anyone.
    for reader in ["cbo-north", "pd"] {
        let statuses = case_statuses(&app, reader, &referral).await;
        assert!(statuses.is_empty(), "{reader} read {statuses:?}");
    }

    // County health's own consent does open its records: the non-Part 2 case
    // to police, and under its Part 2 consent naming cbo-north, the Part 2
    // case to cbo-north only, with the §2.32 notices.
    let cases_of = |case: &str| json!({"case": case});
    record_consent(
        &app,
        "county-health",
        &consent_body(cases_of(&mental_case), &["pd"], &["health", "operational"]),
    )
    .await;
    let mut part2 = consent_body(
        cases_of(&part2_case),
        &["cbo-north"],
        &["health", "substance_use", "operational"],
    );
    part2["part2"] = json!({"recipients": ["cbo-north"], "right_to_revoke": true});
    let recorded = record_consent(&app, "county-health", &part2).await;
    assert_eq!(recorded["discloser"], "county-health");

    let police = case_statuses(&app, "pd", &referral).await;
    assert_eq!(
        programs(&police),
        [("mental_health".to_owned(), "active".to_owned())],
        "{police:?}"
    );
    let cbo = case_statuses(&app, "cbo-north", &referral).await;
    assert_eq!(
        programs(&cbo),
        [
            ("mental_health".to_owned(), "active".to_owned()),
            ("substance_use".to_owned(), "enrolled".to_owned())
        ],
        "{cbo:?}"
    );
    let notices = cbo
        .iter()
        .find(|s| s["program"] == "substance_use")
        .map(|s| s["_notices"].clone())
        .unwrap_or_default();
    assert_eq!(notices.as_array().map(Vec::len), Some(2), "{cbo:?}");
}

/// Finding 2: under a consent covering police for health and operational
/// classes, police received the Part 2 case with `program` and `status`
/// withheld — a row whose blanks say "substance use". A record whose withheld
/// fields would themselves reveal a protected fact is absent: left out of the
/// list, with nothing that counts it.
async fn a_part2_record_is_absent_not_hollow(backend: Backend) {
    let app = spawn_app(backend).await;
    let (referral, part2_case, mental_case) = seed(&app).await;
    // County health's consents: police (no Part 2: never police), and every
    // CBO by kind for its non-Part 2 records.
    for case in [&part2_case, &mental_case] {
        record_consent(
            &app,
            "county-health",
            &consent_body(
                json!({"case": case}),
                &["police", "cbo"],
                &["health", "operational", "quasi_identifier"],
            ),
        )
        .await;
    }

    for reader in ["pd", "cbo-north", "admin"] {
        let statuses = case_statuses(&app, reader, &referral).await;
        assert_eq!(
            programs(&statuses),
            [("mental_health".to_owned(), "active".to_owned())],
            "{reader}: only the non-Part 2 case, whole: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| s["id"] == mental_case.as_str()),
            "{reader}: {statuses:?}"
        );
    }
    // Only released records are accounted for: no disclosure names the Part 2
    // case, so not even the audit trail counts what was left out.
    let pool = app.db_pool().await;
    let part2_disclosures: i64 = sqlx::query(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'disclosure' AND record_id = $1",
    )
    .bind(part2_case.as_str())
    .fetch_one(&pool)
    .await
    .expect("count")
    .get(0);
    assert_eq!(part2_disclosures, 0);
}

/// Finding 7: county-health's consent names CBOs by kind; cbo-north reads the
/// case through its police referral. County health's accounting showed
/// `actor: cbo-north` — which only a CBO assigned a police referral about the
/// person could be. A recorder reads who received its records by kind, on
/// which day; the administrator's accounting names the partner.
async fn a_recorder_learns_only_the_kind_that_received_its_records(backend: Backend) {
    let app = spawn_app(backend).await;
    let (referral, _, mental_case) = seed(&app).await;
    let consent = record_consent(
        &app,
        "county-health",
        &consent_body(json!({"case": mental_case}), &["cbo"], &["health"]),
    )
    .await;
    let consent_id = consent["id"].as_str().expect("id").to_owned();
    assert_eq!(case_statuses(&app, "cbo-north", &referral).await.len(), 1);

    let path = format!("/v1/audit/disclosures?case={mental_case}");
    let health = ok_json(read_as(&app, "county-health", &path, None).await).await;
    let entries = health["disclosures"].as_array().expect("disclosures");
    let to_cbo: Vec<&Value> = entries
        .iter()
        .filter(|d| d["consent_id"] == consent_id.as_str())
        .collect();
    assert_eq!(to_cbo.len(), 1, "{health}");
    assert_eq!(to_cbo[0]["actor"], "cbo", "{health}");
    let day = to_cbo[0]["at"].as_str().expect("at");
    assert_eq!(day.len(), 10, "a date, not a time: {day}");
    assert!(
        !health.to_string().contains("cbo-north"),
        "the recorder learns no partner id: {health}"
    );

    let admin = ok_json(read_as(&app, "admin", &path, None).await).await;
    assert!(
        admin["disclosures"]
            .as_array()
            .expect("disclosures")
            .iter()
            .any(|d| d["actor"] == "cbo-north" && d["consent_id"] == consent_id.as_str()),
        "{admin}"
    );
}
