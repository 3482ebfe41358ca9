//! The read side over the real binary: what each partner sees of a referral,
//! 404 for what the policy hides, lists and their pages, the disclosures they
//! cause and their accounting, and a policy change taking effect on the next
//! read.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{
    AppOptions, Backend, TestApp, assert_problem, claims_for, repo_root, rfc3339_from_now, sign_as,
    spawn_app, spawn_app_with,
};

backend_tests!(
    each_partner_reads_what_the_policy_releases,
    a_hidden_referral_is_a_404_like_a_missing_one,
    lists_are_the_requesters_own_newest_first_in_pages,
    bad_list_parameters_and_purposes_are_named,
    every_read_is_a_disclosure_and_the_person_can_be_accounted_for,
    a_policy_change_applies_to_the_next_read,
    a_partners_default_purpose_comes_from_the_registry,
);

pub fn token(partner: &str) -> String {
    sign_as(partner, &claims_for(partner))
}

/// A referral with every field, for `assign_to`.
pub fn referral_body(given: &str, surname: &str, assign_to: &str) -> Value {
    json!({
        "cad_number": "CAD-2026-118822",
        "officer_id": "OFC-5120",
        "subject": {
            "given_name": given,
            "surname": surname,
            "dob": "1981-02-03",
            "sex": "M",
            "address": {"street": "77 Larkspur Way", "city": "Sacramento", "state": "CA", "zip": "95822"},
            "phone": "(916) 555-0144",
            "email": "l.example@example.net",
        },
        "contact_at": rfc3339_from_now(-5400),
        "district": "d2",
        "arrested": true,
        "circumstances": "Sleeping in a doorway in the rain, asked about shelters.",
        "resources": ["homelessness"],
        "follow_up_by": "cbo",
        "assign_to": assign_to,
    })
}

/// Posts a referral as `pd` and returns its id.
pub async fn refer(app: &TestApp, body: &Value) -> String {
    let response = app
        .client
        .post(app.url("/v1/referrals"))
        .bearer_auth(token("pd"))
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let body: Value = response.json().await.expect("JSON");
    body["id"].as_str().expect("id").to_owned()
}

/// GET `path` as `partner`, optionally declaring a purpose.
pub async fn read_as(
    app: &TestApp,
    partner: &str,
    path: &str,
    purpose: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.get(app.url(path)).bearer_auth(token(partner));
    if let Some(purpose) = purpose {
        request = request.header("X-Purpose-Of-Use", purpose);
    }
    request.send().await.expect("request")
}

pub async fn ok_json(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.json().await.expect("JSON")
}

/// The dotted names of the leaves of a released view (`subject.address.zip`).
pub fn field_names(view: &Value) -> BTreeSet<String> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
        match value.as_object() {
            Some(object)
                if prefix.is_empty() || prefix == "subject" || prefix == "subject.address" =>
            {
                for (key, inner) in object {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&name, inner, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", view, &mut out);
    out
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// What the baseline releases to the submitting police partner.
pub const POLICE_REFERRAL: &[&str] = &[
    "id",
    "workflow_state",
    "created_at",
    "submitted_by",
    "assigned_cbo",
    "subject_pseudonym",
    "cad_number",
    "officer_id",
    "arrested",
    "circumstances",
    "contact_at",
    "district",
    "subject.given_name",
    "subject.surname",
    "subject.dob",
    "subject.sex",
    "subject.address.street",
    "subject.address.city",
    "subject.address.state",
    "subject.address.zip",
    "subject.phone",
    "subject.email",
    "resources",
    "follow_up_by",
];

/// What the baseline releases to the assigned CBO.
pub const CBO_REFERRAL: &[&str] = &[
    "id",
    "workflow_state",
    "status",
    "created_at",
    "submitted_by",
    "assigned_cbo",
    "subject_pseudonym",
    "subject.given_name",
    "subject.surname",
    "subject.dob",
    "subject.sex",
    "subject.address.street",
    "subject.address.city",
    "subject.address.state",
    "subject.address.zip",
    "subject.phone",
    "subject.email",
    "contact_at",
    "district",
    "resources",
    "follow_up_by",
];

/// What the baseline releases to an admin: no direct identifier, no free text.
pub const ADMIN_REFERRAL: &[&str] = &[
    "id",
    "workflow_state",
    "status",
    "created_at",
    "submitted_by",
    "assigned_cbo",
    "subject_pseudonym",
    "subject.dob",
    "subject.address.zip",
    "contact_at",
    "officer_id",
    "arrested",
    "resources",
    "follow_up_by",
];

async fn each_partner_reads_what_the_policy_releases(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = refer(&app, &referral_body("Lionel", "Okonkwo-Reyes", "cbo-north")).await;
    let path = format!("/v1/referrals/{id}");

    let police = ok_json(read_as(&app, "pd", &path, None).await).await;
    assert_eq!(field_names(&police), names(POLICE_REFERRAL), "{police}");
    assert_eq!(police["workflow_state"], "open");
    assert_eq!(police["cad_number"], "CAD-2026-118822");
    assert_eq!(police["subject"]["given_name"], "Lionel");

    let cbo = ok_json(read_as(&app, "cbo-north", &path, None).await).await;
    assert_eq!(field_names(&cbo), names(CBO_REFERRAL), "{cbo}");
    assert_eq!(cbo["subject"]["phone"], "(916) 555-0144");
    assert_eq!(cbo["subject"]["address"]["street"], "77 Larkspur Way");
    assert_eq!(cbo["status"], "new");
    assert_eq!(cbo["resources"], json!(["homelessness"]));
    // Each partner gets its own pseudonym for the person.
    let (p, c) = (&police["subject_pseudonym"], &cbo["subject_pseudonym"]);
    assert!(p.as_str().is_some_and(|p| p.starts_with("cwp-")), "{p}");
    assert_ne!(p, c);

    let admin = ok_json(read_as(&app, "admin", &path, None).await).await;
    assert_eq!(field_names(&admin), names(ADMIN_REFERRAL), "{admin}");
    assert_eq!(admin["subject"]["dob"], "1981", "generalized: {admin}");
    assert_eq!(admin["subject"]["address"]["zip"], "958");

    let text = admin.to_string();
    for identifier in [
        "Lionel",
        "Okonkwo",
        "555-0144",
        "Larkspur",
        "CAD-2026",
        "example.net",
    ] {
        assert!(
            !text.contains(identifier),
            "admin sees {identifier}: {text}"
        );
    }
}

async fn a_hidden_referral_is_a_404_like_a_missing_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = refer(&app, &referral_body("Marisol", "Quintero", "cbo-north")).await;
    let missing = "0190c0de-7a1b-7c2d-8e3f-0123456789ab";

    let reference = assert_problem(
        read_as(&app, "cbo-south", &format!("/v1/referrals/{missing}"), None).await,
        404,
    )
    .await;
    for (partner, purpose) in [
        ("cbo-south", None),
        ("county-health", None),
        ("evaluator", None),
        // A purpose the policy does not allow police: denied, so not found.
        ("pd", Some("HRESCH")),
    ] {
        for suffix in ["", "/case-status"] {
            let response = read_as(
                &app,
                partner,
                &format!("/v1/referrals/{id}{suffix}"),
                purpose,
            )
            .await;
            let body = assert_problem(response, 404).await;
            assert_eq!(
                body, reference,
                "{partner} {suffix}: the same body as a missing id"
            );
        }
    }
    // The policy refusals are in the log (not the missing id's).
    let logs = app.wait_for_log("refusal").await;
    assert!(!logs.contains("Marisol"), "{logs}");
}

async fn lists_are_the_requesters_own_newest_first_in_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut north = Vec::new();
    for (i, given) in ["Ana", "Bea", "Cruz", "Dov", "Eli"].iter().enumerate() {
        let cbo = if i == 2 { "cbo-south" } else { "cbo-north" };
        let id = refer(&app, &referral_body(given, "Listtest", cbo)).await;
        if cbo == "cbo-north" {
            north.push(id);
        }
    }
    north.reverse();

    // The CBO's queue, newest first, two per page.
    let mut seen = Vec::new();
    let mut path = "/v1/referrals?limit=2".to_owned();
    loop {
        let page = ok_json(read_as(&app, "cbo-north", &path, None).await).await;
        for referral in page["referrals"].as_array().expect("referrals") {
            assert_eq!(field_names(referral), names(CBO_REFERRAL));
            seen.push(referral["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/referrals?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, north, "the queue, newest first, across pages");

    // Filter by status.
    let outcome = app
        .client
        .post(app.url(&format!("/v1/referrals/{}/outcomes", north[1])))
        .bearer_auth(token("cbo-north"))
        .json(&json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0)}))
        .send()
        .await
        .expect("request");
    assert_eq!(outcome.status(), 201);
    let contacted =
        ok_json(read_as(&app, "cbo-north", "/v1/referrals?status=contacted", None).await).await;
    let ids: Vec<&str> = contacted["referrals"]
        .as_array()
        .expect("referrals")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [north[1].as_str()]);

    // The other CBO sees only its one; police see all five, without status.
    let south = ok_json(read_as(&app, "cbo-south", "/v1/referrals", None).await).await;
    assert_eq!(south["referrals"].as_array().map(Vec::len), Some(1));
    let police = ok_json(read_as(&app, "pd", "/v1/referrals", None).await).await;
    let police = police["referrals"].as_array().expect("referrals");
    assert_eq!(police.len(), 5);
    assert!(
        police
            .iter()
            .all(|r| field_names(r) == names(POLICE_REFERRAL))
    );
    assert_eq!(police[3]["workflow_state"], "open");

    // Health and evaluators get no list; admins the view without identities.
    for partner in ["county-health", "evaluator"] {
        assert_problem(read_as(&app, partner, "/v1/referrals", None).await, 403).await;
    }
    let admin = ok_json(read_as(&app, "admin", "/v1/referrals", None).await).await;
    assert_eq!(admin["referrals"].as_array().map(Vec::len), Some(5));
}

async fn bad_list_parameters_and_purposes_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    for (partner, query, field) in [
        ("cbo-north", "limit=0", "limit"),
        ("cbo-north", "limit=201", "limit"),
        ("cbo-north", "limit=ten", "limit"),
        ("cbo-north", "cursor=not-a-cursor", "cursor"),
        ("cbo-north", "status=lost", "status"),
        ("cbo-north", "subject=Smith", "subject"),
        ("cbo-north", "limit=1&limit=2", "limit"),
        // Police do not see the follow-up status, so cannot filter on it.
        ("pd", "status=contacted", "status"),
    ] {
        let response = read_as(&app, partner, &format!("/v1/referrals?{query}"), None).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
        assert!(
            !problem.to_string().contains("Smith"),
            "never echoes values"
        );
    }
    for path in [
        "/v1/referrals",
        "/v1/referrals/0190c0de-7a1b-7c2d-8e3f-0123456789ab",
        "/v1/referrals/0190c0de-7a1b-7c2d-8e3f-0123456789ab/case-status",
        "/v1/audit/disclosures?referral=x",
    ] {
        let response = read_as(&app, "cbo-north", path, Some("care coordination")).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], "X-Purpose-Of-Use", "{path}");
    }
    let missing = read_as(&app, "admin", "/v1/audit/disclosures", None).await;
    let problem = assert_problem(missing, 400).await;
    assert_eq!(problem["errors"][0]["field"], "referral");
}

async fn every_read_is_a_disclosure_and_the_person_can_be_accounted_for(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = refer(&app, &referral_body("Odalys", "Ferreira", "cbo-north")).await;
    ok_json(
        read_as(
            &app,
            "cbo-north",
            &format!("/v1/referrals/{id}"),
            Some("TREAT"),
        )
        .await,
    )
    .await;
    ok_json(read_as(&app, "pd", "/v1/referrals", None).await).await;
    // A refused read discloses nothing.
    assert_problem(
        read_as(&app, "cbo-south", &format!("/v1/referrals/{id}"), None).await,
        404,
    )
    .await;

    let accounting = ok_json(
        read_as(
            &app,
            "admin",
            &format!("/v1/audit/disclosures?referral={id}"),
            None,
        )
        .await,
    )
    .await;
    let disclosures = accounting["disclosures"].as_array().expect("disclosures");
    assert_eq!(disclosures.len(), 2, "{accounting}");
    let cbo = &disclosures[0];
    assert_eq!(cbo["actor"], "cbo-north");
    assert_eq!(cbo["action"], "disclosure");
    assert_eq!(cbo["purpose"], "TREAT");
    assert_eq!(cbo["resource"], "referral");
    assert_eq!(cbo["record_id"], id.as_str());
    assert!(
        cbo["policy_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    let fields: BTreeSet<String> = cbo["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["field"].as_str().expect("field").to_owned())
        .collect();
    assert_eq!(
        fields,
        names(CBO_REFERRAL),
        "released fields only, never withheld ones"
    );
    assert_eq!(disclosures[1]["actor"], "pd");
    assert_eq!(disclosures[1]["purpose"], "CAREMGT", "the police default");

    // Only administrators (for now); an unknown referral is a 404.
    assert_problem(
        read_as(
            &app,
            "cbo-north",
            &format!("/v1/audit/disclosures?referral={id}"),
            None,
        )
        .await,
        403,
    )
    .await;
    assert_problem(
        read_as(&app, "admin", "/v1/audit/disclosures?referral=nope", None).await,
        404,
    )
    .await;
    // The accounting read is itself recorded.
    let entries =
        ok_json(read_as(&app, "admin", "/v1/audit/entries?action=audit.read", None).await).await;
    assert!(
        entries["entries"].as_array().is_some_and(|e| !e.is_empty()),
        "{entries}"
    );
}

/// A copy of `policies/`, SIGHUP, and the next read follows it.
async fn a_policy_change_applies_to_the_next_read(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle = dir.path().join("policies");
    copy_dir(&repo_root().join("policies"), &bundle);
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![(
                "CROSSWALK_POLICY__DIR".to_owned(),
                bundle.display().to_string(),
            )],
        },
    )
    .await;
    let id = refer(&app, &referral_body("Tobias", "Wendt", "cbo-north")).await;
    let path = format!("/v1/referrals/{id}");
    let before = ok_json(read_as(&app, "cbo-north", &path, None).await).await;
    assert_eq!(before["district"], "d2");

    edit(
        &bundle.join("crosswalk/cbo.rego"),
        "\"contact_at\", \"district\", \"resources\"",
        "\"contact_at\", \"resources\"",
    );
    edit(
        &bundle.join("crosswalk/cbo_test.rego"),
        "\t\"circumstances\": \"withhold\",\n})",
        "\t\"circumstances\": \"withhold\",\n\t\"district\": \"withhold\",\n})",
    );
    let version = readyz_version(&app).await;
    let sent = Command::new("kill")
        .args(["-HUP", &app.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_mins(2);
    while readyz_version(&app).await == version {
        assert!(Instant::now() < deadline, "no reload: {}", app.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let after = ok_json(read_as(&app, "cbo-north", &path, None).await).await;
    assert!(after.get("district").is_none(), "{after}");
    assert_eq!(
        after["subject"]["phone"], "(916) 555-0144",
        "the rest unchanged"
    );
}

/// Without `X-Purpose-Of-Use`, a partner acts for the `default_purpose` its
/// registry entry names: here police default to research, which the policy does
/// not allow them, so their own referral is hidden until they declare care
/// coordination.
async fn a_partners_default_purpose_comes_from_the_registry(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![(
                "CROSSWALK_PARTNERS__PD__DEFAULT_PURPOSE".to_owned(),
                "HRESCH".to_owned(),
            )],
        },
    )
    .await;
    let id = refer(&app, &referral_body("Odalys", "Brennan", "cbo-north")).await;
    let path = format!("/v1/referrals/{id}");

    assert_problem(read_as(&app, "pd", &path, None).await, 404).await;
    let declared = ok_json(read_as(&app, "pd", &path, Some("CAREMGT")).await).await;
    assert_eq!(declared["id"], id.as_str());
    // Other partners keep their kind's default (CAREMGT for a CBO).
    ok_json(read_as(&app, "cbo-north", &path, None).await).await;
}

async fn readyz_version(app: &TestApp) -> String {
    let body = ok_json(app.get("/readyz", None).await).await;
    body["policy_version"].as_str().expect("version").to_owned()
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read a policy file");
    assert!(text.contains(from), "{} holds {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write a policy file");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}
