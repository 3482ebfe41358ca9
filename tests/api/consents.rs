//! Consents over the real binary: police see nothing record-level before a
//! consent, the covered fields under one, and nothing again after it is
//! revoked; a consent recorded on a health case follows the person to the
//! linked referral and opens that partner's case there (and nothing of anyone
//! else's); bad consents are refused naming the field with nothing written;
//! every change and release is audited with the consent's id.

use serde_json::{Value, json};
use sqlx::Row as _;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, assert_problem, rfc3339_from_now, spawn_app};
use crate::reads::{ok_json, read_as, refer, referral_body, token};

backend_tests!(
    police_see_outcomes_only_while_a_consent_covers_them,
    a_consent_on_a_health_case_opens_that_case_to_the_referrals_police,
    bad_consents_are_refused_naming_the_field_and_nothing_is_written,
);

const EVIDENCE: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A consent body naming `on` (`{"referral": id}` or `{"case": id}`).
pub fn consent_body(on: Value, recipients: &[&str], classes: &[&str]) -> Value {
    let mut body = json!({
        "recipients": recipients,
        "purposes": ["CAREMGT"],
        "classes": classes,
        "period": {"start": rfc3339_from_now(-3600), "end": rfc3339_from_now(365 * 86_400)},
        "method": "written",
        "evidence_hash": EVIDENCE,
    });
    let Value::Object(on) = on else {
        panic!("an object")
    };
    for (key, value) in on {
        body[key] = value;
    }
    body
}

pub async fn post_as(app: &TestApp, partner: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token(partner))
        .json(body)
        .send()
        .await
        .expect("request")
}

pub async fn record_consent(app: &TestApp, partner: &str, body: &Value) -> Value {
    let response = post_as(app, partner, "/v1/consents", body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.expect("JSON")
}

pub async fn report_outcome(app: &TestApp, referral: &str) {
    let response = post_as(
        app,
        "cbo-north",
        &format!("/v1/referrals/{referral}/outcomes"),
        &json!({"kind": "engaged", "occurred_at": rfc3339_from_now(0),
                "notes": "Talked at the shelter about a bed for next week."}),
    )
    .await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
}

/// What `pd` gets from `GET /v1/outcomes` (CAREMGT unless `purpose`).
async fn police_outcomes(app: &TestApp, purpose: Option<&str>) -> Vec<Value> {
    let page = ok_json(read_as(app, "pd", "/v1/outcomes", purpose).await).await;
    page["outcomes"].as_array().expect("outcomes").clone()
}

fn keys(view: &Value) -> Vec<String> {
    let mut keys: Vec<String> = view.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

async fn police_see_outcomes_only_while_a_consent_covers_them(backend: Backend) {
    let app = spawn_app(backend).await;
    let referral = refer(&app, &referral_body("Linden", "Marsh", "cbo-north")).await;
    report_outcome(&app, &referral).await;

    assert!(
        police_outcomes(&app, None).await.is_empty(),
        "no consent: police see no outcome"
    );

    let consent = record_consent(
        &app,
        "cbo-north",
        &consent_body(
            json!({"referral": referral}),
            &["police"],
            &["operational", "health"],
        ),
    )
    .await;
    let consent_id = consent["id"].as_str().expect("id").to_owned();
    assert_eq!(consent["referral_id"], referral.as_str());
    assert_eq!(consent["revoked_at"], Value::Null);

    let outcomes = police_outcomes(&app, None).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let outcome = &outcomes[0];
    assert_eq!(outcome["referral_id"], referral.as_str());
    assert_eq!(outcome["kind"], "engaged");
    assert_eq!(outcome["recorded_by"], "cbo-north");
    for withheld in ["notes", "occurred_at"] {
        assert!(
            outcome.get(withheld).is_none(),
            "{withheld} is not covered: {outcome}"
        );
    }
    assert!(
        police_outcomes(&app, Some("PERFMSR")).await.is_empty(),
        "the consent covers care coordination only"
    );

    // The release is accounted for with the consent that allowed it, to the
    // admin (naming pd) and to the CBO that recorded the consent (naming the
    // recipient's kind); not to another CBO.
    let path = format!("/v1/audit/disclosures?referral={referral}");
    for (reader, recipient) in [("admin", "pd"), ("cbo-north", "police")] {
        let page = ok_json(read_as(&app, reader, &path, None).await).await;
        let police_release = page["disclosures"]
            .as_array()
            .expect("disclosures")
            .iter()
            .find(|d| d["actor"] == recipient && d["resource"] == "outcome")
            .unwrap_or_else(|| panic!("{reader} sees pd's release: {page}"))
            .clone();
        assert_eq!(police_release["consent_id"], consent_id.as_str());
    }
    assert_problem(read_as(&app, "cbo-south", &path, None).await, 403).await;

    let revoke = format!("/v1/consents/{consent_id}/revoke");
    assert_problem(post_as(&app, "cbo-south", &revoke, &json!({})).await, 404).await;
    let revoked = ok_json(post_as(&app, "cbo-north", &revoke, &json!({})).await).await;
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert!(
        police_outcomes(&app, None).await.is_empty(),
        "revoked: nothing on the very next request"
    );
    assert_problem(post_as(&app, "cbo-north", &revoke, &json!({})).await, 409).await;

    // Both changes are in the audit log with the consent's id.
    let pool = app.db_pool().await;
    let actions: Vec<String> = sqlx::query(
        "SELECT action FROM audit_log WHERE consent_id = $1 AND action LIKE 'consent.%' ORDER BY seq",
    )
    .bind(consent_id.as_str())
    .fetch_all(&pool)
    .await
    .expect("audit")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    assert_eq!(actions, ["consent.create", "consent.revoke"]);
}

async fn a_consent_on_a_health_case_opens_that_case_to_the_referrals_police(backend: Backend) {
    let app = spawn_app(backend).await;
    let referral = refer(&app, &referral_body("Linden", "Marsh", "cbo-north")).await;
    report_outcome(&app, &referral).await;
    let case_id = post_case(&app, "mental_health").await;
    let case_statuses = |reader: &'static str| {
        let app = &app;
        let path = format!("/v1/referrals/{referral}/case-status");
        async move {
            let page = ok_json(read_as(app, reader, &path, None).await).await;
            page["case_statuses"].as_array().expect("statuses").clone()
        }
    };
    assert!(case_statuses("pd").await.is_empty());

    // The health partner names its own case; it is told nothing about police.
    let consent = record_consent(
        &app,
        "county-health",
        &consent_body(json!({"case": case_id}), &["pd"], &["health"]),
    )
    .await;
    assert_eq!(consent["case_id"], case_id.as_str());
    assert_eq!(consent["referral_id"], Value::Null);
    assert_eq!(consent["discloser"], "county-health");
    let consent_id = consent["id"].as_str().expect("id").to_owned();

    // It follows the person to the referral police made, and opens county
    // health's own record there, the covered class only ...
    let statuses = case_statuses("pd").await;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(keys(&statuses[0]), ["program", "status"], "{}", statuses[0]);
    assert_eq!(statuses[0]["program"], "mental_health");
    // ... never cbo-north's outcome: that is cbo-north's to open.
    assert!(police_outcomes(&app, None).await.is_empty());

    // The recorder reads it back as FHIR, and accounts for the person by case.
    let fhir = app
        .client
        .get(app.url(&format!("/v1/consents/{consent_id}")))
        .bearer_auth(token("county-health"))
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("request");
    assert_eq!(
        fhir.headers()["content-type"].to_str().expect("text"),
        "application/fhir+json"
    );
    let fhir: Value = fhir.json().await.expect("JSON");
    assert_eq!(fhir["resourceType"], "Consent");
    assert_eq!(fhir["status"], "active");
    assert_eq!(fhir["provision"]["purpose"][0]["code"], "CAREMGT");
    let actors = &fhir["provision"]["actor"];
    assert_eq!(actors[0]["role"]["coding"][0]["code"], "CST", "{fhir}");
    assert_eq!(
        actors[0]["reference"]["identifier"]["value"],
        "county-health"
    );
    assert_eq!(actors[1]["role"]["coding"][0]["code"], "IRCP", "{fhir}");
    assert_eq!(actors[1]["reference"]["identifier"]["value"], "pd");
    assert!(
        fhir["patient"]["identifier"]["value"]
            .as_str()
            .is_some_and(|p| p.starts_with("cwp-")),
        "{fhir}"
    );
    assert_problem(
        read_as(&app, "pd", &format!("/v1/consents/{consent_id}"), None).await,
        404,
    )
    .await;
    let page = ok_json(
        read_as(
            &app,
            "county-health",
            &format!("/v1/audit/disclosures?case={case_id}"),
            None,
        )
        .await,
    )
    .await;
    let entries = page["disclosures"].as_array().expect("disclosures");
    assert!(
        entries
            .iter()
            .any(|d| d["actor"] == "police" && d["consent_id"] == consent_id.as_str()),
        "{page}"
    );
    assert!(
        entries
            .iter()
            .all(|d| d["consent_id"] == consent_id.as_str()),
        "only what its consent allowed: {page}"
    );
}

/// A case status by county health about the person `referral_body("Linden",
/// "Marsh", ..)` describes; its id.
async fn post_case(app: &TestApp, program: &str) -> String {
    let case = post_as(
        app,
        "county-health",
        "/v1/cases",
        &json!({
            "subject": {"given_name": "Linden", "surname": "Marsh", "dob": "1981-02-03",
                        "phone": "(916) 555-0144"},
            "case_ref": "MRN-77120",
            "program": program,
            "status": "enrolled",
            "effective_at": rfc3339_from_now(-600),
        }),
    )
    .await;
    assert_eq!(case.status(), 201, "{:?}", case.text().await);
    case.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn bad_consents_are_refused_naming_the_field_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let referral = refer(&app, &referral_body("Linden", "Marsh", "cbo-north")).await;
    let on = json!({"referral": referral});
    let valid = consent_body(on.clone(), &["police"], &["health"]);

    let mut end_first = valid.clone();
    end_first["period"] = json!({"start": rfc3339_from_now(3600), "end": rfc3339_from_now(60)});
    let mut unknown = consent_body(on.clone(), &["sheriff"], &["health", "gossip"]);
    unknown["purposes"] = json!(["CAREMGT", "SNOOP"]);
    let part2_case = json!({"case": post_case(&app, "substance_use").await});
    let no_part2 = consent_body(part2_case.clone(), &["cbo"], &["substance_use"]);
    let mut part2_to_police = no_part2.clone();
    part2_to_police["part2"] = json!({"recipients": ["pd"], "right_to_revoke": false});
    let mut part2_from_cbo = consent_body(on.clone(), &["cbo"], &["health", "substance_use"]);
    part2_from_cbo["part2"] = json!({"recipients": ["cbo-north"], "right_to_revoke": true});
    let mut other_discloser = valid.clone();
    other_discloser["discloser"] = json!("county-health");
    let mut bad_hash = valid.clone();
    bad_hash["evidence_hash"] = json!("md5:abc");
    let mut identifiers = valid.clone();
    identifiers["classes"] = json!(["direct_identifier"]);
    let cases: [(&str, &Value, &[&str]); 9] = [
        ("cbo-north", &end_first, &["period.end"]),
        (
            "cbo-north",
            &unknown,
            &["recipients[0]", "purposes[1]", "classes[1]"],
        ),
        ("county-health", &no_part2, &["part2"]),
        (
            "county-health",
            &part2_to_police,
            &["part2.right_to_revoke", "part2.recipients[0]"],
        ),
        ("cbo-north", &part2_from_cbo, &["classes[1]"]),
        ("cbo-north", &other_discloser, &["discloser"]),
        ("cbo-north", &bad_hash, &["evidence_hash"]),
        ("cbo-north", &identifiers, &["classes[0]"]),
        ("cbo-south", &valid, &["referral"]),
    ];
    for (partner, body, fields) in cases {
        let problem = assert_problem(post_as(&app, partner, "/v1/consents", body).await, 400).await;
        let named: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(named, fields, "{problem}");
    }
    // A health partner names its case, never a referral; police record none.
    let problem = assert_problem(
        post_as(&app, "county-health", "/v1/consents", &valid).await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "referral");
    assert_problem(post_as(&app, "pd", "/v1/consents", &valid).await, 403).await;

    let pool = app.db_pool().await;
    let stored: i64 = sqlx::query("SELECT COUNT(*) FROM consents")
        .fetch_one(&pool)
        .await
        .expect("count")
        .get(0);
    let audited: i64 = sqlx::query("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'consent.%'")
        .fetch_one(&pool)
        .await
        .expect("count")
        .get(0);
    assert_eq!((stored, audited), (0, 0), "nothing half-written");
}
