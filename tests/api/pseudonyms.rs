//! Partner pseudonyms over the real binary:
//! a partner's pseudonym of a person groups only what its own records link.
//! Receipts, reads and the FHIR `patient` of consents must not tell police,
//! a CBO or county health whether someone else's record links two of theirs.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, assert_problem, rfc3339_from_now, spawn_app};
use crate::reads::{ok_json, read_as, token};

backend_tests!(
    receipts_do_not_reveal_whether_health_knows_the_person,
    only_a_partners_own_records_link_its_pseudonyms,
    the_fhir_patient_groups_only_the_recorders_own_cases,
);

/// One synthetic person per trial, with what the records below send of them.
struct Person {
    given: String,
    surname: String,
    dob: &'static str,
    email: String,
}

impl Person {
    fn new(trial: usize) -> Self {
        const NAMES: [(&str, &str); 8] = [
            ("Odessa", "Vantongeren"),
            ("Bartholomew", "Quackenbush"),
            ("Philippa", "Oyelaran"),
            ("Leopold", "Strzelecki"),
            ("Marisela", "Thibodeaux"),
            ("Cornelius", "Abernathy"),
            ("Ingrid", "Wojciechowski"),
            ("Tobias", "Fairweather"),
        ];
        const DOBS: [&str; 8] = [
            "1971-03-14",
            "1983-11-02",
            "1990-06-27",
            "1966-09-08",
            "1978-01-30",
            "1995-12-19",
            "1987-04-05",
            "1959-07-22",
        ];
        let (given, surname) = NAMES[trial % NAMES.len()];
        Self {
            given: given.to_owned(),
            surname: surname.to_owned(),
            dob: DOBS[trial % DOBS.len()],
            email: format!("{}.{}@example.org", given.to_lowercase(), trial),
        }
    }

    /// {name, dob}.
    fn with_dob(&self) -> Value {
        json!({"given_name": self.given, "surname": self.surname, "dob": self.dob})
    }

    /// {name, email}.
    fn with_email(&self) -> Value {
        json!({"given_name": self.given, "surname": self.surname, "email": self.email})
    }

    /// {name, dob, email}: links to both of the above.
    fn with_both(&self) -> Value {
        json!({"given_name": self.given, "surname": self.surname, "dob": self.dob,
               "email": self.email})
    }
}

fn referral(subject: &Value, cbo: &str) -> Value {
    json!({
        "subject": subject,
        "contact_at": rfc3339_from_now(-3600),
        "district": "north",
        "resources": ["other"],
        "assign_to": cbo,
    })
}

async fn post_as(app: &TestApp, partner: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token(partner))
        .json(body)
        .send()
        .await
        .expect("request")
}

/// `POST /v1/referrals` as `pd`: the receipt.
async fn refer(app: &TestApp, body: &Value) -> Value {
    let response = post_as(app, "pd", "/v1/referrals", body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.expect("JSON")
}

/// `POST /v1/referrals/batch` as `pd`: the receipt of each line.
async fn refer_batch(app: &TestApp, bodies: &[Value]) -> Vec<Value> {
    let ndjson: String = bodies.iter().map(|b| b.to_string() + "\n").collect();
    let response = app
        .client
        .post(app.url("/v1/referrals/batch"))
        .bearer_auth(token("pd"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    text.lines()
        .map(|line| {
            let result: Value = serde_json::from_str(line).expect("JSON line");
            assert!(result["referral"].is_object(), "{result}");
            result["referral"].clone()
        })
        .collect()
}

/// `POST /v1/cases` as `county-health`: the case's id.
pub async fn record_case(app: &TestApp, subject: Value, case_ref: &str) -> String {
    let body = json!({
        "subject": subject,
        "case_ref": case_ref,
        "program": "mental_health",
        "status": "enrolled",
        "effective_at": rfc3339_from_now(-600),
    });
    let response = post_as(app, "county-health", "/v1/cases", &body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    id(&response.json().await.expect("JSON"))
}

fn id(body: &Value) -> String {
    body["id"].as_str().expect("id").to_owned()
}

fn pseudonym(body: &Value) -> String {
    let pseudonym = body["subject_pseudonym"]
        .as_str()
        .unwrap_or_else(|| panic!("a subject pseudonym: {body}"));
    assert!(pseudonym.starts_with("cwp-"), "{pseudonym}");
    pseudonym.to_owned()
}

/// The pseudonym `partner` reads on `GET /v1/referrals/{id}`.
async fn read_pseudonym(app: &TestApp, partner: &str, referral: &str) -> String {
    let path = format!("/v1/referrals/{referral}");
    pseudonym(&ok_json(read_as(app, partner, &path, None).await).await)
}

/// Finding 3, as reported: county health records a case with {name, dob,
/// email}; police then refer {name, dob} (A) and {name, email} (B). Before,
/// A and B came back under one pseudonym exactly when health knew the person.
/// Now, in every trial, known to health or not, through the single route and
/// the batch route, police get two pseudonyms — in the receipts and in what
/// they read back — and so does the CBO both were referred to.
async fn receipts_do_not_reveal_whether_health_knows_the_person(backend: Backend) {
    let app = spawn_app(backend).await;
    for trial in 0..8 {
        let person = Person::new(trial);
        let health_knows = trial % 2 == 0;
        if health_knows {
            record_case(&app, person.with_both(), &format!("MRN-{trial}")).await;
        }
        let bodies = [
            referral(&person.with_dob(), "cbo-north"),
            referral(&person.with_email(), "cbo-north"),
        ];
        let (a, b) = if trial % 4 < 2 {
            (refer(&app, &bodies[0]).await, refer(&app, &bodies[1]).await)
        } else {
            let mut receipts = refer_batch(&app, &bodies).await;
            let b = receipts.pop().expect("B");
            (receipts.pop().expect("A"), b)
        };
        let what = format!("trial {trial} (health knows the person: {health_knows})");
        assert_ne!(pseudonym(&a), pseudonym(&b), "receipts, {what}");

        for receipt in [&a, &b] {
            assert_eq!(
                read_pseudonym(&app, "pd", &id(receipt)).await,
                pseudonym(receipt),
                "police read back the receipt's pseudonym, {what}"
            );
            assert_eq!(
                pseudonym(&listed(&app, &id(receipt)).await),
                pseudonym(receipt),
                "and list it, {what}"
            );
        }
        assert_ne!(
            read_pseudonym(&app, "cbo-north", &id(&a)).await,
            read_pseudonym(&app, "cbo-north", &id(&b)).await,
            "the CBO both went to, {what}"
        );
    }
}

/// `referral` as police list it.
async fn listed(app: &TestApp, referral: &str) -> Value {
    let page = ok_json(read_as(app, "pd", "/v1/referrals?limit=200", None).await).await;
    page["referrals"]
        .as_array()
        .expect("referrals")
        .iter()
        .find(|r| r["id"] == referral)
        .unwrap_or_else(|| panic!("{referral} listed: {page}"))
        .clone()
}

/// A bridge of police's own joins its pseudonyms; a bridge police sent to
/// another CBO does not join that CBO's — until the bridging referral is
/// moved to the CBO, which then holds all three.
async fn only_a_partners_own_records_link_its_pseudonyms(backend: Backend) {
    let app = spawn_app(backend).await;
    let person = Person::new(3);
    record_case(&app, person.with_both(), "MRN-3").await;
    let a = refer(&app, &referral(&person.with_dob(), "cbo-north")).await;
    let b = refer(&app, &referral(&person.with_email(), "cbo-north")).await;
    assert_ne!(pseudonym(&a), pseudonym(&b), "linked only through health");

    // Police's own record with both: its three referrals are one person to it.
    let c = refer(&app, &referral(&person.with_both(), "cbo-south")).await;
    let joined = pseudonym(&c);
    assert!(
        [pseudonym(&a), pseudonym(&b)].contains(&joined),
        "the bridge joins the older of its clusters"
    );
    let (a, b, c) = (id(&a), id(&b), id(&c));
    for referral in [&a, &b, &c] {
        assert_eq!(read_pseudonym(&app, "pd", referral).await, joined);
    }
    // cbo-north holds A and B only: police's bridge, sent to cbo-south, is
    // not its own.
    assert_ne!(
        read_pseudonym(&app, "cbo-north", &a).await,
        read_pseudonym(&app, "cbo-north", &b).await,
        "another CBO's referral is not the bridge"
    );
    let north_before = [
        read_pseudonym(&app, "cbo-north", &a).await,
        read_pseudonym(&app, "cbo-north", &b).await,
    ];

    // cbo-south declines C to cbo-north, which now holds all three.
    let moved = post_as(
        &app,
        "cbo-south",
        &format!("/v1/referrals/{c}/assignment"),
        &json!({"reason": "capacity", "assign_to": "cbo-north"}),
    )
    .await;
    assert_eq!(moved.status(), 200, "{:?}", moved.text().await);
    let mut north = Vec::new();
    for referral in [&a, &b, &c] {
        north.push(read_pseudonym(&app, "cbo-north", referral).await);
    }
    assert!(north.iter().all(|p| *p == north[0]), "{north:?}");
    assert!(
        north_before.contains(&north[0]),
        "the older of cbo-north's two clusters survives"
    );
    assert_ne!(north[0], joined, "police and the CBO have unrelated values");
    assert_problem(
        read_as(&app, "cbo-south", &format!("/v1/referrals/{c}"), None).await,
        404,
    )
    .await;
    for referral in [&a, &b, &c] {
        assert_eq!(read_pseudonym(&app, "pd", referral).await, joined);
    }
}

/// The FHIR variant: county health records consents on two of its cases that
/// are linked only through a police referral — their `patient` differs (before,
/// the second case joined the subject police had linked to the first, and the
/// two consents named one patient); once a case of its own links them, it is
/// the same.
async fn the_fhir_patient_groups_only_the_recorders_own_cases(backend: Backend) {
    let app = spawn_app(backend).await;
    let person = Person::new(5);
    let by_dob = record_case(&app, person.with_dob(), "MRN-5a").await;
    refer(&app, &referral(&person.with_both(), "cbo-north")).await;
    let by_email = record_case(&app, person.with_email(), "MRN-5b").await;
    let consents = [
        record_consent(&app, &by_dob).await,
        record_consent(&app, &by_email).await,
    ];
    let patients = [
        fhir_patient(&app, &consents[0]).await,
        fhir_patient(&app, &consents[1]).await,
    ];
    assert_ne!(patients[0], patients[1], "linked only through police");

    let by_both = record_case(&app, person.with_both(), "MRN-5c").await;
    let third = record_consent(&app, &by_both).await;
    let joined = fhir_patient(&app, &third).await;
    assert!(patients.contains(&joined), "the older of its two clusters");
    for consent in &consents {
        assert_eq!(
            fhir_patient(&app, consent).await,
            joined,
            "its own case links them"
        );
    }
}

const EVIDENCE: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A consent county health records on its case `case`: its id.
async fn record_consent(app: &TestApp, case: &str) -> String {
    let body = json!({
        "case": case,
        "recipients": ["cbo"],
        "purposes": ["CAREMGT"],
        "classes": ["health"],
        "period": {"start": rfc3339_from_now(-3600), "end": rfc3339_from_now(365 * 86_400)},
        "method": "written",
        "evidence_hash": EVIDENCE,
    });
    let response = post_as(app, "county-health", "/v1/consents", &body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    id(&response.json().await.expect("JSON"))
}

/// The FHIR `patient` county health reads on its consent `consent`.
async fn fhir_patient(app: &TestApp, consent: &str) -> String {
    let response = app
        .client
        .get(app.url(&format!("/v1/consents/{consent}")))
        .bearer_auth(token("county-health"))
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("request");
    let fhir = ok_json(response).await;
    let patient = fhir["patient"]["identifier"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("a patient: {fhir}"));
    assert!(patient.starts_with("cwp-"), "{patient}");
    patient.to_owned()
}
