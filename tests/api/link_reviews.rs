//! The linkage review queue and unmerge over the real binary
//! (`GET /v1/admin/link-reviews`, `POST /v1/admin/link-reviews/{id}/decision`,
//! `POST /v1/admin/unmerge`): queue → accept → linked; reject → never linked,
//! even by a record that matches both; a decided review is a 409; only an
//! admin may look, and what it sees names no one; an unmerge restores every
//! pseudonym the wrong merge changed and moves the person's records back.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::consents::post_as;
use crate::helpers::{Backend, TestApp, assert_problem, rfc3339_from_now, spawn_app};
use crate::pseudonyms::record_case;
use crate::reads::{ok_json, read_as};

backend_tests!(
    a_review_is_accepted_or_rejected_once,
    an_unmerge_restores_every_pseudonym,
    review_and_unmerge_requests_are_checked,
);

/// One person as three records: `first` has the email only; `second` (a
/// slip in the given name) the phone and address; `both` the slipped name,
/// the email and the phone, which matches the other two. `first` and
/// `second` alone come close but do not link: a review pair.
struct Person {
    given: &'static str,
    surname: &'static str,
    dob: &'static str,
    email: String,
    phone: &'static str,
}

impl Person {
    fn new(n: usize) -> Self {
        const PEOPLE: [(&str, &str, &str, &str); 3] = [
            ("Maria", "Lopez", "1984-03-09", "916-555-0142"),
            ("Daniel", "Okafor", "1979-11-23", "916-555-0187"),
            ("Rosa", "Delgado", "1992-06-14", "916-555-0119"),
        ];
        let (given, surname, dob, phone) = PEOPLE[n];
        Self {
            given,
            surname,
            dob,
            email: format!("{}.{}@example.org", given.to_lowercase(), n),
            phone,
        }
    }

    fn first(&self) -> Value {
        json!({"given_name": self.given, "surname": self.surname, "dob": self.dob,
               "email": self.email})
    }

    fn slipped(&self) -> String {
        format!("{}h", self.given)
    }

    fn second(&self) -> Value {
        json!({"given_name": self.slipped(), "surname": self.surname, "dob": self.dob,
               "phone": self.phone,
               "address": {"street": "1420 Alder Street", "city": "Sacramento", "zip": "95814"}})
    }

    fn both(&self) -> Value {
        json!({"given_name": self.slipped(), "surname": self.surname, "dob": self.dob,
               "email": self.email, "phone": self.phone})
    }

    /// Strings that must never appear in what the admin is shown.
    fn identifiers(&self) -> Vec<String> {
        vec![
            self.given.to_owned(),
            self.surname.to_owned(),
            self.dob.to_owned(),
            self.email.clone(),
            self.phone.replace('-', ""),
            self.phone[4..].to_owned(),
        ]
    }
}

async fn refer(app: &TestApp, subject: &Value) -> Value {
    let body = json!({
        "subject": subject,
        "contact_at": rfc3339_from_now(-3600),
        "district": "north",
        "resources": ["other"],
        "assign_to": "cbo-north",
    });
    let response = post_as(app, "pd", "/v1/referrals", &body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.expect("JSON")
}

fn id(body: &Value) -> String {
    body["id"].as_str().expect("id").to_owned()
}

/// The open reviews, as the admin reads them.
async fn queue(app: &TestApp) -> Vec<Value> {
    let page = ok_json(read_as(app, "admin", "/v1/admin/link-reviews", None).await).await;
    page["reviews"].as_array().expect("reviews").clone()
}

async fn decide(app: &TestApp, review: &str, decision: &str) -> reqwest::Response {
    let path = format!("/v1/admin/link-reviews/{review}/decision");
    post_as(app, "admin", &path, &json!({"decision": decision})).await
}

/// How many health case statuses the admin's operational view links to the
/// referral's person: 0 or 1 here, the link made visible.
async fn linked_cases(app: &TestApp, referral: &str) -> usize {
    let path = format!("/v1/referrals/{referral}/case-status");
    let body = ok_json(read_as(app, "admin", &path, None).await).await;
    body["case_statuses"].as_array().expect("statuses").len()
}

/// The pseudonym `partner` reads for a referral.
async fn pseudonym(app: &TestApp, partner: &str, referral: &str) -> String {
    let path = format!("/v1/referrals/{referral}");
    let body = ok_json(read_as(app, partner, &path, None).await).await;
    body["subject_pseudonym"]
        .as_str()
        .unwrap_or_else(|| panic!("a pseudonym: {body}"))
        .to_owned()
}

async fn a_review_is_accepted_or_rejected_once(backend: Backend) {
    let app = spawn_app(backend).await;
    // Person 0 is accepted, person 1 left undecided, person 2 rejected:
    // health holds the first record of each, police refer the second.
    let mut referrals = Vec::new();
    for n in 0..3 {
        let person = Person::new(n);
        record_case(&app, person.first(), &format!("MRN-{n}")).await;
        referrals.push(id(&refer(&app, &person.second()).await));
    }
    let reviews = queue(&app).await;
    assert_eq!(reviews.len(), 3, "{reviews:?}");
    let text = serde_json::to_string(&reviews).expect("JSON");
    for (n, referral) in referrals.iter().enumerate() {
        for identifier in Person::new(n).identifiers() {
            assert!(!text.contains(&identifier), "{identifier} shown: {text}");
        }
        assert_eq!(linked_cases(&app, referral).await, 0, "person {n}");
    }
    let fields = &reviews[0]["fields"];
    assert_eq!(fields["surname"], "agree", "{fields}");
    assert_eq!(fields["dob"], "agree");
    assert_eq!(fields["given_name"], "close");
    assert_eq!(fields["phone"], "missing");
    assert_eq!(fields["email"], "missing");
    for partner in ["pd", "cbo-north", "county-health", "evaluator"] {
        let refused = read_as(&app, partner, "/v1/admin/link-reviews", None).await;
        assert_problem(refused, 403).await;
    }
    let refused = post_as(
        &app,
        "cbo-north",
        &format!("/v1/admin/link-reviews/{}/decision", id(&reviews[0])),
        &json!({"decision": "accept"}),
    )
    .await;
    assert_problem(refused, 403).await;

    // Queued in order: reviews[n] is person n's.
    let accepted = decide(&app, &id(&reviews[0]), "accept").await;
    let accepted = ok_json(accepted).await;
    assert_eq!(accepted["decision"], "accepted");
    assert_eq!(accepted["merged"], true);
    assert_eq!(
        linked_cases(&app, &referrals[0]).await,
        1,
        "accepted: linked"
    );
    let rejected = ok_json(decide(&app, &id(&reviews[2]), "reject").await).await;
    assert_eq!(rejected["decision"], "rejected");
    assert_eq!(queue(&app).await.len(), 1, "person 1's is still open");
    for (review, decision) in [(0, "reject"), (2, "accept"), (2, "reject")] {
        let again = decide(&app, &id(&reviews[review]), decision).await;
        let problem = assert_problem(again, 409).await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("already decided")),
            "{problem}"
        );
    }

    // A record matching both sides: it links the undecided pair, never the
    // rejected one.
    for n in [1, 2] {
        refer(&app, &Person::new(n).both()).await;
    }
    assert_eq!(
        linked_cases(&app, &referrals[1]).await,
        1,
        "undecided: bridged"
    );
    assert_eq!(
        linked_cases(&app, &referrals[2]).await,
        0,
        "rejected: kept apart"
    );

    // Every decision and every look at the queue is in the audit log.
    let log = ok_json(read_as(&app, "admin", "/v1/audit/entries?limit=1000", None).await).await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "linkage.review.read",
        "linkage.review.accept",
        "linkage.review.reject",
    ] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
}

async fn an_unmerge_restores_every_pseudonym(backend: Backend) {
    let app = spawn_app(backend).await;
    let person = Person::new(0);
    // Police's two records of someone, which do not link; health's case is
    // about the second.
    let a = id(&refer(&app, &person.first()).await);
    let b = id(&refer(&app, &person.second()).await);
    record_case(&app, person.second(), "MRN-7").await;
    let partners = ["pd", "cbo-north", "admin"];
    let mut before = Vec::new();
    for partner in partners {
        for referral in [&a, &b] {
            before.push(pseudonym(&app, partner, referral).await);
        }
    }
    assert_ne!(before[0], before[1], "police: two people");
    assert_eq!(
        (linked_cases(&app, &a).await, linked_cases(&app, &b).await),
        (0, 1)
    );

    // A third record matches both: one person, to police and the CBO too.
    let c = id(&refer(&app, &person.both()).await);
    assert_eq!(
        pseudonym(&app, "pd", &a).await,
        pseudonym(&app, "pd", &b).await
    );
    assert_eq!(linked_cases(&app, &a).await, 1, "merged");

    // They are not: unmerge A and B.
    let body = json!({"records": [{"referral": a}, {"referral": b}]});
    let done = ok_json(post_as(&app, "admin", "/v1/admin/unmerge", &body).await).await;
    assert_eq!(done["people"], 2, "{done}");
    let mut after = Vec::new();
    for partner in partners {
        for referral in [&a, &b] {
            after.push(pseudonym(&app, partner, referral).await);
        }
    }
    assert_eq!(before, after, "every pseudonym as before the merge");
    assert_eq!(
        pseudonym(&app, "pd", &c).await,
        before[0],
        "the bridge stays with the older"
    );
    assert_eq!(
        (linked_cases(&app, &a).await, linked_cases(&app, &b).await),
        (0, 1)
    );

    // Apart for good: the same bridge again does not join them.
    refer(&app, &person.both()).await;
    assert_ne!(
        pseudonym(&app, "pd", &a).await,
        pseudonym(&app, "pd", &b).await
    );
    let again = post_as(&app, "admin", "/v1/admin/unmerge", &body).await;
    assert_problem(again, 409).await;
    let log = ok_json(read_as(&app, "admin", "/v1/audit/entries?limit=1000", None).await).await;
    assert!(
        log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "linkage.unmerge"),
        "audited"
    );
}

async fn review_and_unmerge_requests_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let person = Person::new(0);
    let a = id(&refer(&app, &person.first()).await);
    let reviews = {
        refer(&app, &person.second()).await;
        queue(&app).await
    };
    let review = id(&reviews[0]);
    let cases: [(Value, u16, &str); 4] = [
        (json!({"decision": "maybe"}), 400, "decision"),
        (json!({}), 400, "decision"),
        (json!({"decision": "accept", "why": "x"}), 400, "why"),
        (json!({"decision": 1}), 400, "decision"),
    ];
    for (body, status, field) in cases {
        let path = format!("/v1/admin/link-reviews/{review}/decision");
        let problem = assert_problem(post_as(&app, "admin", &path, &body).await, status).await;
        assert!(problem.to_string().contains(field), "{body}: {problem}");
    }
    assert_eq!(queue(&app).await.len(), 1, "nothing decided");
    let missing = decide(&app, "01900000-0000-7000-8000-000000000000", "accept").await;
    assert_problem(missing, 404).await;
    let malformed = decide(&app, "not-a-review", "accept").await;
    assert_problem(malformed, 404).await;
    // Operations only: an admin asking for another purpose is refused.
    let research = read_as(&app, "admin", "/v1/admin/link-reviews", Some("HRESCH")).await;
    let problem = assert_problem(research, 403).await;
    assert!(problem.to_string().contains("HOPERAT"), "{problem}");
    let cursor = read_as(&app, "admin", "/v1/admin/link-reviews?cursor=7", None).await;
    let problem = assert_problem(cursor, 400).await;
    assert!(problem.to_string().contains("cursor"), "{problem}");

    let unmerges: [(Value, &str); 5] = [
        (json!({"records": [{"referral": a}]}), "records"),
        (
            json!({"records": [{"referral": a}, {"referral": "nope"}]}),
            "records[1].referral",
        ),
        (json!({"records": [{"referral": a}, {}]}), "records[1]"),
        (
            json!({"records": [{"referral": a}, {"case": "01900000-0000-7000-8000-000000000000"}]}),
            "records[1].case",
        ),
        (
            json!({"records": [{"referral": a}, {"referral": a}]}),
            "records",
        ),
    ];
    for (body, field) in unmerges {
        let response = post_as(&app, "admin", "/v1/admin/unmerge", &body).await;
        let problem = assert_problem(response, 400).await;
        assert!(
            problem["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["field"] == field)),
            "{body}: {problem}"
        );
    }
    let refused = post_as(
        &app,
        "pd",
        "/v1/admin/unmerge",
        &json!({"records": [{"referral": a}, {"referral": a}]}),
    )
    .await;
    assert_problem(refused, 403).await;
}
