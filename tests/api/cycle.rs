//! The full exchange cycle, over the real binary: police refer → the CBO sees
//! its queue with contact details and without CAD/officer/arrest → the CBO
//! reports outcomes → police see the workflow state, not the outcome → health
//! posts a case → the records link to one internal subject, which neither
//! health nor police can tell → another CBO can neither see nor post to the
//! referral. And the leak check, extended to reads: known identifiers appear in
//! no response to a partner the policy does not give them, in no log line and
//! not in `/metrics`.

use serde_json::{Value, json};
use sqlx::Row as _;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, assert_problem, rfc3339_from_now, spawn_app};
use crate::reads::{CBO_REFERRAL, field_names, ok_json, read_as, refer, token};

backend_tests!(a_referral_goes_round_the_whole_cycle);

const GIVEN: &str = "Philippa";
const SURNAME: &str = "Vasquez-Oyelaran";
const PHONE: &str = "(916) 555-0177";
const EMAIL: &str = "p.vo@example.com";
const STREET: &str = "4410 Juniper Hollow Rd";
const CAD: &str = "CAD-2026-770341";
const OFFICER: &str = "OFC-99107";
const CIRCUMSTANCES: &str = "Found wandering near the levee, disoriented";
const NOTES: &str = "Met her at the library; wants detox intake";
const CASE_REF: &str = "MRN-55120987";

async fn post_as(app: &TestApp, partner: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token(partner))
        .json(body)
        .send()
        .await
        .expect("request")
}

#[expect(clippy::too_many_lines, reason = "one story, told in order")]
async fn a_referral_goes_round_the_whole_cycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut responses: Vec<(&str, String)> = Vec::new();

    // Police refer.
    let id = refer(
        &app,
        &json!({
            "cad_number": CAD,
            "officer_id": OFFICER,
            "subject": {
                "given_name": GIVEN, "surname": SURNAME, "dob": "1990-07-14", "sex": "F",
                "address": {"street": STREET, "city": "Sacramento", "state": "CA", "zip": "95811"},
                "phone": PHONE, "email": EMAIL,
            },
            "contact_at": rfc3339_from_now(-3600),
            "district": "d1",
            "arrested": false,
            "circumstances": CIRCUMSTANCES,
            "resources": ["mental_health", "alcohol_drug"],
            "follow_up_by": "cbo",
        }),
    )
    .await;
    let referral = format!("/v1/referrals/{id}");

    // The CBO the routing chose (default: cbo-north) sees it in its queue with
    // the contact details and without CAD number, officer or arrest.
    let queue = ok_json(read_as(&app, "cbo-north", "/v1/referrals?status=new", None).await).await;
    let mine = queue["referrals"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == id.as_str()))
        .expect("in the CBO's queue")
        .clone();
    assert_eq!(
        field_names(&mine),
        CBO_REFERRAL.iter().map(|s| (*s).to_owned()).collect()
    );
    assert_eq!(mine["subject"]["phone"], PHONE);
    assert_eq!(mine["subject"]["address"]["street"], STREET);
    for withheld in ["cad_number", "officer_id", "arrested", "circumstances"] {
        assert!(mine.get(withheld).is_none(), "{withheld}: {mine}");
    }

    // The CBO reports outcomes.
    for (kind, notes) in [("contacted", None), ("engaged", Some(NOTES))] {
        let mut body = json!({"kind": kind, "occurred_at": rfc3339_from_now(0)});
        if let Some(notes) = notes {
            body["notes"] = json!(notes);
        }
        let response = post_as(&app, "cbo-north", &format!("{referral}/outcomes"), &body).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
    }
    let cbo = ok_json(read_as(&app, "cbo-north", &referral, None).await).await;
    assert_eq!(cbo["status"], "engaged");

    // Police see the workflow state, not what happened.
    let police = ok_json(read_as(&app, "pd", &referral, None).await).await;
    assert_eq!(police["workflow_state"], "open");
    assert!(police.get("status").is_none(), "{police}");
    let police_text = police.to_string();
    assert!(!police_text.contains("engaged") && !police_text.contains(NOTES));
    let police_list = ok_json(read_as(&app, "pd", "/v1/referrals", None).await).await;
    assert!(police_list["referrals"][0].get("status").is_none());
    responses.push(("pd", police_text));
    responses.push(("pd", police_list.to_string()));

    // Health posts a case for the same person, with its own identifiers.
    let case = post_as(
        &app,
        "county-health",
        "/v1/cases",
        &json!({
            "subject": {"given_name": GIVEN, "surname": SURNAME, "dob": "07/14/1990",
                        "phone": "916-555-0177"},
            "case_ref": CASE_REF,
            "program": "mental_health",
            "status": "enrolled",
            "effective_at": rfc3339_from_now(-60),
        }),
    )
    .await;
    assert_eq!(case.status(), 201, "{:?}", case.text().await);
    let case: Value = case.json().await.expect("JSON");
    responses.push(("county-health", case.to_string()));

    // The link happened: one internal subject (merges followed).
    let pool = app.db_pool().await;
    let root = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COALESCE(s.merged_into, s.id) FROM {table} t \
                 JOIN subjects s ON s.id = t.subject_id"
            )))
            .fetch_one(&pool)
            .await
            .expect("subject");
            row.get::<String, _>(0)
        }
    };
    assert_eq!(root("referrals").await, root("cases").await, "linked");

    // ... and neither health nor police can tell.
    for path in [referral.clone(), format!("{referral}/case-status")] {
        let body = assert_problem(read_as(&app, "county-health", &path, None).await, 404).await;
        responses.push(("county-health", body.to_string()));
    }
    let refused = assert_problem(
        read_as(&app, "county-health", "/v1/referrals", None).await,
        403,
    )
    .await;
    responses.push(("county-health", refused.to_string()));
    let police_cases =
        ok_json(read_as(&app, "pd", &format!("{referral}/case-status"), None).await).await;
    assert_eq!(
        police_cases["case_statuses"],
        json!([]),
        "no consent: nothing"
    );
    responses.push(("pd", police_cases.to_string()));
    // Without a consent on file the CBO sees no case status either; an admin's
    // operational view shows the link, without identities.
    let cbo_cases =
        ok_json(read_as(&app, "cbo-north", &format!("{referral}/case-status"), None).await).await;
    assert_eq!(cbo_cases["case_statuses"], json!([]));
    let admin_cases =
        ok_json(read_as(&app, "admin", &format!("{referral}/case-status"), None).await).await;
    let statuses = admin_cases["case_statuses"].as_array().expect("statuses");
    assert_eq!(statuses.len(), 1, "{admin_cases}");
    assert_eq!(statuses[0]["status"], "enrolled");
    assert!(statuses[0].get("case_ref").is_none());
    assert_eq!(statuses[0]["program"], "mental_health");
    responses.push(("admin", admin_cases.to_string()));

    // Another CBO can neither see nor post to it: the same 404 as no referral.
    for path in [referral.clone(), format!("{referral}/case-status")] {
        let body = assert_problem(read_as(&app, "cbo-south", &path, None).await, 404).await;
        responses.push(("cbo-south", body.to_string()));
    }
    let post = post_as(
        &app,
        "cbo-south",
        &format!("{referral}/outcomes"),
        &json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0)}),
    )
    .await;
    responses.push(("cbo-south", assert_problem(post, 404).await.to_string()));
    let south = ok_json(read_as(&app, "cbo-south", "/v1/referrals", None).await).await;
    responses.push(("cbo-south", south.to_string()));
    let evaluator = assert_problem(read_as(&app, "evaluator", &referral, None).await, 404).await;
    responses.push(("evaluator", evaluator.to_string()));
    let admin = ok_json(read_as(&app, "admin", &referral, None).await).await;
    responses.push(("admin", admin.to_string()));
    let admin_list = ok_json(read_as(&app, "admin", "/v1/referrals", None).await).await;
    responses.push(("admin", admin_list.to_string()));

    // The leak check. Identifiers each partner may not have (police submitted
    // the referral's; the admin's view keeps the officer id, a justice field).
    let all = [
        GIVEN,
        SURNAME,
        "555-0177",
        "5550177",
        EMAIL,
        STREET,
        "Juniper",
        CAD,
        OFFICER,
        CIRCUMSTANCES,
        NOTES,
        CASE_REF,
    ];
    for (partner, text) in &responses {
        for identifier in all {
            let allowed = match *partner {
                "pd" => ![NOTES, CASE_REF].contains(&identifier),
                "admin" => identifier == OFFICER,
                _ => false,
            };
            assert!(
                allowed || !text.contains(identifier),
                "{partner} received {identifier}: {text}"
            );
        }
    }
    let metrics = app.metrics().await.1;
    let logs = app.logs();
    for identifier in all {
        assert!(!metrics.contains(identifier), "/metrics has {identifier}");
        assert!(!logs.contains(identifier), "the logs have {identifier}");
    }
}
