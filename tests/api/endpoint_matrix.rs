//! The endpoint matrix: every `/v1` route × every example partner × a set of
//! purposes of use, asked of the real binary, rendered as
//! `policies/ENDPOINTS.md` — documentation and regression test at once, like
//! `policies/MATRIX.md` one level down (the policy's decisions alone).
//!
//! `UPDATE_MATRIX=1 cargo test --test api endpoint_matrix` rewrites the file;
//! without it the test fails when the file differs from what the gateway
//! answers. Only statuses and field names go into the table, never ids,
//! pseudonyms or times, so both backends render the same file (the SQLite run
//! writes it; both compare against it).
//!
//! A regenerated table must not be able to bless a leak by accident, so the
//! invariants that matter are asserted on the answers as well (see
//! [`broken_invariants`]; the file is
//! still written first, so that a failure can be read in it).
//!
//! One server per backend. The reads run first, all at once, against one seeded
//! referral (with an outcome, a linked health case and a consent that opens
//! nothing another cell asks for); then the writes, each on its own fresh
//! referral (or consent) where it addresses one, so that no cell depends on
//! another.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, repo_root, rfc3339_from_now, spawn_app};
use crate::reads::{field_names, refer, referral_body, token};

backend_tests!(endpoint_matrix);

/// The example partners, with their role towards the seeded referral.
const PARTNERS: [(&str, &str); 6] = [
    ("pd", "police, submitter"),
    ("cbo-north", "cbo, assigned"),
    ("cbo-south", "cbo, not assigned"),
    ("county-health", "health"),
    ("evaluator", "evaluator"),
    ("admin", "admin"),
];

/// Declared purposes: `None` is no header (the partner kind's default), `bogus`
/// is malformed (not upper-case letters).
const PURPOSES: [Option<&str>; 6] = [
    Some("CAREMGT"),
    Some("PERFMSR"),
    Some("HRESCH"),
    Some("HOPERAT"),
    None,
    Some("bogus"),
];

/// The seeded person's identifiers as `pd` submits them (the phone also as
/// E.164), none of which may reach anyone but `pd` and the assigned CBO.
const SEEDED_IDENTIFIERS: [&str; 7] = [
    "Linden",
    "Marsh",
    "1981-02-03",
    "95822",
    "Larkspur",
    "9165550144",
    "l.example@example.net",
];

const MISSING_ID: &str = "00000000-0000-0000-0000-000000000000";

/// The routes of `gateway/src/http/` under `/v1`, in the order of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    WhoAmI,
    ListReferrals,
    ReadReferral,
    ReadMissingReferral,
    CaseStatus,
    Disclosures,
    AuditEntries,
    Aggregates,
    CreateReferral,
    Batch,
    Outcome,
    Assignment,
    CreateCase,
    ListOutcomes,
    ReadConsent,
    CreateConsent,
    RevokeConsent,
    CreateExport,
    ExportFile,
    ExportManifest,
    LinkReviews,
    LinkReviewDecision,
    Unmerge,
}

const ENDPOINTS: [Endpoint; 23] = [
    Endpoint::WhoAmI,
    Endpoint::ListReferrals,
    Endpoint::ReadReferral,
    Endpoint::ReadMissingReferral,
    Endpoint::CaseStatus,
    Endpoint::Disclosures,
    Endpoint::AuditEntries,
    Endpoint::Aggregates,
    Endpoint::CreateReferral,
    Endpoint::Batch,
    Endpoint::Outcome,
    Endpoint::Assignment,
    Endpoint::CreateCase,
    Endpoint::ListOutcomes,
    Endpoint::ReadConsent,
    Endpoint::CreateConsent,
    Endpoint::RevokeConsent,
    Endpoint::CreateExport,
    Endpoint::ExportFile,
    Endpoint::ExportManifest,
    Endpoint::LinkReviews,
    Endpoint::LinkReviewDecision,
    Endpoint::Unmerge,
];

impl Endpoint {
    fn title(self) -> &'static str {
        match self {
            Self::WhoAmI => "GET /v1/whoami",
            Self::ListReferrals => "GET /v1/referrals",
            Self::ReadReferral => "GET /v1/referrals/{id}",
            Self::ReadMissingReferral => "GET /v1/referrals/{id} (no such referral)",
            Self::CaseStatus => "GET /v1/referrals/{id}/case-status",
            Self::Disclosures => "GET /v1/audit/disclosures?referral={id}",
            Self::AuditEntries => "GET /v1/audit/entries",
            Self::Aggregates => "GET /v1/aggregates/outcomes",
            Self::CreateReferral => "POST /v1/referrals",
            Self::Batch => "POST /v1/referrals/batch",
            Self::Outcome => "POST /v1/referrals/{id}/outcomes",
            Self::Assignment => "POST /v1/referrals/{id}/assignment",
            Self::CreateCase => "POST /v1/cases",
            Self::ListOutcomes => "GET /v1/outcomes",
            Self::ReadConsent => "GET /v1/consents/{id}",
            Self::CreateConsent => "POST /v1/consents",
            Self::RevokeConsent => "POST /v1/consents/{id}/revoke",
            Self::CreateExport => "POST /v1/exports",
            Self::ExportFile => "GET /v1/exports/{id}",
            Self::ExportManifest => "GET /v1/exports/{id}/manifest",
            Self::LinkReviews => "GET /v1/admin/link-reviews",
            Self::LinkReviewDecision => "POST /v1/admin/link-reviews/{id}/decision",
            Self::Unmerge => "POST /v1/admin/unmerge",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::WhoAmI => "Who the token says the caller is. Reads no purpose.",
            Self::ListReferrals => {
                "The caller's referrals (police: its submissions; CBOs: its queue). Fields: the union over the listed referrals."
            }
            Self::ReadReferral => {
                "`pd`'s referral, assigned to `cbo-north` explicitly, with an outcome (with notes) from `cbo-north` and a linked `county-health` case."
            }
            Self::ReadMissingReferral => {
                "An id that does not exist: the answer every hidden record must be indistinguishable from."
            }
            Self::CaseStatus => "The case statuses linked to the seeded referral's person.",
            Self::Disclosures => {
                "The accounting of disclosures about the seeded referral's person (admins; `cbo-north` recorded the seeded consent). Status only."
            }
            Self::AuditEntries => {
                "The audit log. Status only (its content grows as the test runs)."
            }
            Self::Aggregates => {
                "Month x district x outcome counts for January 2025 (no referrals then: zeros). Status only; the default purpose is `PERFMSR` for everyone."
            }
            Self::CreateReferral => "A valid referral with the required fields. Status only.",
            Self::Batch => {
                "One valid referral as NDJSON. The HTTP status; for a 200, the line's result (`created`, or the problem's status)."
            }
            Self::Outcome => {
                "A valid `contacted` outcome, each cell on its own fresh referral from `pd` assigned to `cbo-north`. Status only."
            }
            Self::Assignment => {
                "Moving the referral to `cbo-south` (`reason` and `assign_to`), each cell on its own fresh referral from `pd` assigned to `cbo-north`. Status only."
            }
            Self::CreateCase => "A valid case status for a person nobody else knows. Status only.",
            Self::ListOutcomes => {
                "Police's record-level outcomes under consent. The seeded person's only consent names `cbo-south`, not police: nothing is listed."
            }
            Self::ReadConsent => {
                "The seeded consent, recorded by `cbo-north` on the seeded referral (recipient `cbo-south`, `CAREMGT`, `operational`)."
            }
            Self::CreateConsent => {
                "A valid consent naming `police`: on the seeded referral (`referral`), and for `county-health` on its seeded case (`case`). Status only."
            }
            Self::RevokeConsent => {
                "Revoking a consent `cbo-north` recorded, each cell on its own fresh consent. Status only."
            }
            Self::CreateExport => {
                "A `demo-study` export of the referrals (the study's evaluator is `evaluator`, purpose HRESCH). Status only."
            }
            Self::ExportFile => "An export id that does not exist. Status only.",
            Self::ExportManifest => {
                "The manifest of an export id that does not exist. Status only."
            }
            Self::LinkReviews => {
                "The linkage review queue (administrators; a per-field agreement pattern, no identities). Status only."
            }
            Self::LinkReviewDecision => "Accepting a review id that does not exist. Status only.",
            Self::Unmerge => {
                "Unmerging two referral ids that do not exist (a 400 naming them). Status only."
            }
        }
    }

    /// Whether the handler reads `X-Purpose-Of-Use` for `kind` (a kind check
    /// answers first on the kind-restricted writes).
    fn reads_purpose(self, partner: &str) -> bool {
        match self {
            Self::WhoAmI => false,
            Self::CreateReferral | Self::Batch => partner == "pd",
            Self::CreateCase => partner == "county-health",
            Self::CreateConsent => matches!(partner, "cbo-north" | "cbo-south" | "county-health"),
            _ => true,
        }
    }

    /// Whether the route addresses one record by id (hidden means 404).
    fn addresses_a_record(self) -> bool {
        matches!(
            self,
            Self::ReadReferral
                | Self::ReadMissingReferral
                | Self::CaseStatus
                | Self::Outcome
                | Self::Assignment
                | Self::ReadConsent
                | Self::RevokeConsent
                | Self::ExportFile
                | Self::ExportManifest
        )
    }

    /// Whether the table shows the released fields of a 200.
    fn shows_fields(self) -> bool {
        matches!(
            self,
            Self::ListReferrals
                | Self::ReadReferral
                | Self::CaseStatus
                | Self::ListOutcomes
                | Self::ReadConsent
        )
    }
}

/// One request of the matrix.
struct Ask {
    endpoint: Endpoint,
    partner: &'static str,
    purpose: Option<&'static str>,
    path: String,
    /// `(content type, body)` for a POST.
    body: Option<(&'static str, String)>,
}

/// What came back: the status, and the released field names where shown.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// For a batch: the one line's result, `created` or the problem's status.
    line_status: Option<String>,
    fields: Option<BTreeSet<String>>,
    /// Whether the body holds one of the seeded person's identifiers as
    /// submitted: the check that does not trust field names.
    identifies: bool,
    /// A 404's body, which must be that of a referral that does not exist.
    not_found: Option<String>,
}

type Answers = BTreeMap<(Endpoint, &'static str, Option<&'static str>), Answer>;

async fn endpoint_matrix(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_every_route_is_asked(&app).await;
    let seeded = seed(&app).await;
    let (reads, mut writes) = asks(&seeded);
    on_fresh_referrals(&app, &mut writes).await;
    on_fresh_consents(&app, &seeded, &mut writes).await;

    let mut answers = run(&app, reads).await;
    answers.extend(run(&app, writes).await);

    let broken = broken_invariants(&answers);
    check_file(backend, &render(&answers));
    assert!(
        broken.is_empty(),
        "the gateway breaks the endpoint invariants ({backend:?}):\n{}",
        broken.join("\n")
    );
}

/// The hand-written [`ENDPOINTS`] cover every `/v1` operation the gateway
/// documents in `/openapi.json`, so that a new route cannot miss the matrix.
async fn assert_every_route_is_asked(app: &TestApp) {
    let document: Value = app
        .get("/openapi.json", None)
        .await
        .json()
        .await
        .expect("JSON");
    let documented: BTreeSet<String> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| path.starts_with("/v1/"))
        .flat_map(|(path, operations)| {
            let operations = operations.as_object().expect("operations");
            operations
                .keys()
                .map(|method| format!("{} {path}", method.to_uppercase()))
                .collect::<Vec<_>>()
        })
        .collect();
    let asked: BTreeSet<String> = ENDPOINTS
        .iter()
        .map(|e| {
            // "GET /v1/referrals/{id} (no such referral)" -> "GET /v1/referrals/{id}"
            let mut words = e.title().split([' ', '?']);
            let method = words.next().unwrap_or_default();
            format!("{method} {}", words.next().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        documented, asked,
        "every documented /v1 operation must be in the endpoint matrix"
    );
}

/// Every cell's request: the reads, then the writes (an outcome or assignment
/// has no path yet: see [`on_fresh_referrals`]).
fn asks(seeded: &Seeded) -> (Vec<Ask>, Vec<Ask>) {
    let Seeded {
        referral: seeded,
        case,
        consent,
    } = seeded;
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for endpoint in ENDPOINTS {
        for (partner, _) in PARTNERS {
            for purpose in PURPOSES {
                let ask = |path: String, body: Option<(&'static str, String)>| Ask {
                    endpoint,
                    partner,
                    purpose,
                    path,
                    body,
                };
                match endpoint {
                    Endpoint::WhoAmI
                    | Endpoint::ListReferrals
                    | Endpoint::ListOutcomes
                    | Endpoint::LinkReviews
                    | Endpoint::ExportFile
                    | Endpoint::ExportManifest => reads.push(ask(fixed_path(endpoint), None)),
                    Endpoint::ReadReferral => {
                        reads.push(ask(format!("/v1/referrals/{seeded}"), None));
                    }
                    Endpoint::ReadMissingReferral => {
                        reads.push(ask(format!("/v1/referrals/{MISSING_ID}"), None));
                    }
                    Endpoint::CaseStatus => {
                        reads.push(ask(format!("/v1/referrals/{seeded}/case-status"), None));
                    }
                    Endpoint::Disclosures => {
                        reads.push(ask(
                            format!("/v1/audit/disclosures?referral={seeded}"),
                            None,
                        ));
                    }
                    Endpoint::AuditEntries => {
                        reads.push(ask("/v1/audit/entries?limit=5".into(), None));
                    }
                    Endpoint::Aggregates => reads.push(ask(
                        "/v1/aggregates/outcomes?from=2025-01&to=2025-01&group_by=district,outcome"
                            .into(),
                        None,
                    )),
                    Endpoint::CreateReferral => writes.push(ask(
                        "/v1/referrals".into(),
                        Some(("application/json", minimal_referral().to_string())),
                    )),
                    Endpoint::Batch => writes.push(ask(
                        "/v1/referrals/batch".into(),
                        Some(("application/x-ndjson", format!("{}\n", minimal_referral()))),
                    )),
                    Endpoint::Outcome => writes.push(ask(String::new(), None)),
                    Endpoint::Assignment => writes.push(ask(
                        String::new(),
                        Some((
                            "application/json",
                            json!({"reason": "capacity", "assign_to": "cbo-south"}).to_string(),
                        )),
                    )),
                    Endpoint::CreateExport | Endpoint::LinkReviewDecision | Endpoint::Unmerge => {
                        let (path, body) = fixed_write(endpoint);
                        writes.push(ask(path, Some(("application/json", body))));
                    }
                    Endpoint::CreateCase => writes.push(ask(
                        "/v1/cases".into(),
                        Some(("application/json", unknown_case(writes.len()).to_string())),
                    )),
                    Endpoint::ReadConsent => {
                        reads.push(ask(format!("/v1/consents/{consent}"), None));
                    }
                    Endpoint::CreateConsent => {
                        let on = if partner == "county-health" {
                            json!({"case": case})
                        } else {
                            json!({"referral": seeded})
                        };
                        writes.push(ask(
                            "/v1/consents".into(),
                            Some(("application/json", consent_body(&on, "police").to_string())),
                        ));
                    }
                    // The path is filled in by on_fresh_consents.
                    Endpoint::RevokeConsent => writes.push(ask(
                        "revoke".into(),
                        Some(("application/json", "{}".to_owned())),
                    )),
                }
            }
        }
    }
    (reads, writes)
}

/// The path of a read that addresses no seeded record.
fn fixed_path(endpoint: Endpoint) -> String {
    match endpoint {
        Endpoint::WhoAmI => "/v1/whoami".into(),
        Endpoint::ListReferrals => "/v1/referrals".into(),
        Endpoint::ListOutcomes => "/v1/outcomes".into(),
        Endpoint::LinkReviews => "/v1/admin/link-reviews".into(),
        Endpoint::ExportFile => format!("/v1/exports/{MISSING_ID}"),
        _ => format!("/v1/exports/{MISSING_ID}/manifest"),
    }
}

/// The path and body of a write that addresses no seeded record: an export,
/// a decision on a review that does not exist, an unmerge of two referrals
/// that do not exist.
fn fixed_write(endpoint: Endpoint) -> (String, String) {
    if endpoint == Endpoint::CreateExport {
        let body = json!({"study": "demo-study", "tables": ["referrals"]});
        ("/v1/exports".into(), body.to_string())
    } else if endpoint == Endpoint::Unmerge {
        let records = json!({"records": [{"referral": MISSING_ID},
                                         {"referral": "01900000-0000-7000-8000-000000000000"}]});
        ("/v1/admin/unmerge".into(), records.to_string())
    } else {
        (
            format!("/v1/admin/link-reviews/{MISSING_ID}/decision"),
            json!({"decision": "accept"}).to_string(),
        )
    }
}

/// Points each outcome and assignment at a fresh referral of its own (from `pd`,
/// to `cbo-north`), so that no cell depends on another.
async fn on_fresh_referrals(app: &TestApp, writes: &mut [Ask]) {
    let needing: Vec<usize> = (0..writes.len())
        .filter(|i| writes[*i].path.is_empty())
        .collect();
    let fresh: Vec<String> = futures_util::stream::iter(needing.iter().map(|_| {
        let mut body = referral_body("Fresh", "Unlinkable", "cbo-north");
        // No DOB, phone or email: unlinkable, so never the seeded person.
        for field in ["dob", "phone", "email"] {
            body["subject"]
                .as_object_mut()
                .expect("subject")
                .remove(field);
        }
        async move { refer(app, &body).await }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    for (i, id) in needing.into_iter().zip(fresh) {
        if writes[i].endpoint == Endpoint::Outcome {
            writes[i].path = format!("/v1/referrals/{id}/outcomes");
            // Not before the referral was made.
            let body = json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0)});
            writes[i].body = Some(("application/json", body.to_string()));
        } else {
            writes[i].path = format!("/v1/referrals/{id}/assignment");
        }
    }
}

/// Points each revocation at a fresh consent of its own, recorded by
/// `cbo-north` on the seeded referral.
async fn on_fresh_consents(app: &TestApp, seeded: &Seeded, writes: &mut [Ask]) {
    let needing: Vec<usize> = (0..writes.len())
        .filter(|i| writes[*i].path == "revoke")
        .collect();
    let on = json!({"referral": seeded.referral});
    let fresh: Vec<String> = futures_util::stream::iter(
        needing
            .iter()
            // Naming `cbo-south` like the seeded consent: these exist while the
            // reads run, and must not open anything another cell asks for.
            .map(|_| async { record_consent(app, &consent_body(&on, "cbo-south")).await }),
    )
    .buffer_unordered(8)
    .collect()
    .await;
    for (i, id) in needing.into_iter().zip(fresh) {
        writes[i].path = format!("/v1/consents/{id}/revoke");
    }
}

/// A valid consent on `on` naming `recipient`, for care coordination.
fn consent_body(on: &Value, recipient: &str) -> Value {
    let mut body = json!({
        "recipients": [recipient],
        "purposes": ["CAREMGT"],
        "classes": ["operational"],
        "period": {"start": rfc3339_from_now(-3600), "end": rfc3339_from_now(86_400)},
        "method": "verbal",
        "evidence_hash": "blake3:0000000000000000000000000000000000000000000000000000000000000000",
    });
    for (key, value) in on.as_object().expect("an object") {
        body[key] = value.clone();
    }
    body
}

/// Records a consent as `cbo-north` and returns its id.
async fn record_consent(app: &TestApp, body: &Value) -> String {
    let response = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(token("cbo-north"))
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let body: Value = response.json().await.expect("JSON");
    body["id"].as_str().expect("id").to_owned()
}

/// Writes `policies/ENDPOINTS.md` under `UPDATE_MATRIX=1` (the SQLite run),
/// else fails when it differs from `markdown`.
fn check_file(backend: Backend, markdown: &str) {
    let path = repo_root().join("policies/ENDPOINTS.md");
    let update = std::env::var_os("UPDATE_MATRIX").is_some_and(|v| !v.is_empty() && v != "0");
    if update {
        if backend == Backend::Sqlite {
            std::fs::write(&path, markdown).expect("write policies/ENDPOINTS.md");
        }
    } else {
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != markdown {
            let first = on_disk
                .lines()
                .zip(markdown.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| on_disk.lines().count().min(markdown.lines().count()));
            panic!(
                "policies/ENDPOINTS.md differs from what the gateway answers ({backend:?}), first at line {}:\n  file: {}\n  now:  {}\n\
                 run `UPDATE_MATRIX=1 cargo test --test api endpoint_matrix` and review the diff \
                 (`git diff policies/ENDPOINTS.md`). The gateway now answers:\n{markdown}",
                first + 1,
                on_disk.lines().nth(first).unwrap_or("<end of file>"),
                markdown.lines().nth(first).unwrap_or("<end of file>"),
            );
        }
    }
}

/// What the reads are asked about.
struct Seeded {
    referral: String,
    case: String,
    consent: String,
}

/// The seeded referral (from `pd`, explicitly to `cbo-north`), an outcome with
/// notes from `cbo-north`, a case from `county-health` for the same person, and
/// a consent `cbo-north` recorded naming `cbo-south` only (which opens nothing
/// any other cell asks for).
async fn seed(app: &TestApp) -> Seeded {
    let mut body = referral_body("Linden", "Marsh", "cbo-north");
    body["subject"]["address"]["street"] = json!("77 Larkspur Way");
    let id = refer(app, &body).await;
    let outcome = app
        .client
        .post(app.url(&format!("/v1/referrals/{id}/outcomes")))
        .bearer_auth(token("cbo-north"))
        .json(
            &json!({"kind": "contacted", "occurred_at": rfc3339_from_now(0),
                      "notes": "Met at the shelter; wants a follow-up."}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(outcome.status(), 201, "{:?}", outcome.text().await);
    let case = app
        .client
        .post(app.url("/v1/cases"))
        .bearer_auth(token("county-health"))
        .json(&json!({
            "subject": {"given_name": "Linden", "surname": "Marsh", "dob": "1981-02-03",
                        "phone": "(916) 555-0144"},
            "case_ref": "MRN-SEEDED-1",
            "program": "mental_health",
            "status": "enrolled",
            "effective_at": rfc3339_from_now(-120),
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(case.status(), 201, "{:?}", case.text().await);
    let case: Value = case.json().await.expect("JSON");
    let consent = record_consent(app, &consent_body(&json!({"referral": id}), "cbo-south")).await;
    Seeded {
        referral: id,
        case: case["id"].as_str().expect("id").to_owned(),
        consent,
    }
}

/// A valid referral with the required fields only.
fn minimal_referral() -> Value {
    json!({
        "subject": {"given_name": "Wren", "surname": "Holloway"},
        "contact_at": rfc3339_from_now(-3600),
        "district": "north",
        "resources": ["other"],
    })
}

/// A valid case for a person no referral names.
fn unknown_case(n: usize) -> Value {
    json!({
        "subject": {"given_name": "Odile", "surname": "Farrant", "dob": "1966-09-30"},
        "case_ref": format!("MRN-MATRIX-{n}"),
        "program": "mental_health",
        "status": "enrolled",
        "effective_at": rfc3339_from_now(-60),
    })
}

/// Sends every ask, sixteen at a time.
async fn run(app: &TestApp, asks: Vec<Ask>) -> Answers {
    let tokens: BTreeMap<&str, String> = PARTNERS.iter().map(|(p, _)| (*p, token(p))).collect();
    let tokens = &tokens;
    futures_util::stream::iter(asks.into_iter().map(|ask| async move {
        let url = app.url(&ask.path);
        let mut request = match &ask.body {
            Some((content_type, body)) => app
                .client
                .post(url)
                .header("content-type", *content_type)
                .body(body.clone()),
            None => app.client.get(url),
        };
        request = request.bearer_auth(&tokens[ask.partner]);
        if let Some(purpose) = ask.purpose {
            request = request.header("X-Purpose-Of-Use", purpose);
        }
        let response = request.send().await.expect("request reaches the gateway");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let mut answer = Answer {
            status,
            line_status: None,
            fields: None,
            identifies: SEEDED_IDENTIFIERS.iter().any(|v| text.contains(v)),
            not_found: (status == 404).then(|| text.clone()),
        };
        if status == 200 && ask.endpoint == Endpoint::Batch {
            let line: Value = serde_json::from_str(text.lines().next().unwrap_or_default())
                .expect("a JSON result line");
            answer.line_status = Some(if line.get("referral").is_some() {
                "created".to_owned()
            } else {
                format!("problem {}", line["problem"]["status"])
            });
        } else if status == 200 && ask.endpoint.shows_fields() {
            let body: Value = serde_json::from_str(&text).expect("JSON");
            answer.fields = Some(released_fields(ask.endpoint, &body));
        }
        ((ask.endpoint, ask.partner, ask.purpose), answer)
    }))
    .buffer_unordered(16)
    .collect()
    .await
}

/// The released field names: dotted for the subject; for a list, the union over
/// its referrals; an array of objects as `name[].field` over its items.
fn released_fields(endpoint: Endpoint, body: &Value) -> BTreeSet<String> {
    if endpoint == Endpoint::ListOutcomes {
        return body["outcomes"]
            .as_array()
            .expect("outcomes")
            .iter()
            .flat_map(field_names)
            .collect();
    }
    if endpoint == Endpoint::ListReferrals {
        return body["referrals"]
            .as_array()
            .expect("referrals")
            .iter()
            .flat_map(field_names)
            .collect();
    }
    let mut out = BTreeSet::new();
    for (key, value) in body.as_object().expect("an object") {
        match value.as_array() {
            Some(items) if items.iter().any(Value::is_object) => {
                for item in items {
                    for name in field_names(item) {
                        out.insert(format!("{key}[].{name}"));
                    }
                }
            }
            _ => {
                out.extend(field_names(&json!({ key: value })));
            }
        }
    }
    out
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Who may see the seeded person's identity, and that police never see what
/// the CBO wrote nor health's case: the cells of one answer that break it.
fn identity_invariants(cell: &str, partner: &str, answer: &Answer) -> Vec<String> {
    let mut broken = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            broken.push(what);
        }
    };
    let fields = answer.fields.clone().unwrap_or_default();
    // The person's identity goes to the assigned CBO, and back to the police
    // partner that submitted it; an admin sees only generalized
    // quasi-identifiers; nobody else sees any.
    let subject: Vec<&String> = fields
        .iter()
        .filter(|f| *f == "subject" || f.starts_with("subject."))
        .collect();
    match partner {
        "cbo-north" | "pd" => {}
        "admin" => check(
            subject
                .iter()
                .all(|f| *f == "subject.dob" || *f == "subject.address.zip"),
            format!("{cell}: subject fields released: {subject:?}"),
        ),
        _ => check(
            subject.is_empty(),
            format!("{cell}: subject fields released: {subject:?}"),
        ),
    }
    check(
        !answer.identifies || matches!(partner, "cbo-north" | "pd"),
        format!("{cell}: the seeded person's identifiers in the body"),
    );
    // Police see their referral and its workflow state, never what the CBO
    // wrote nor health's case.
    if partner == "pd" {
        for field in &fields {
            check(
                !(field.contains("notes")
                    || field.contains("outcome")
                    || field.starts_with("case_statuses[].")
                    || field == "status"
                    || field.starts_with("status.")),
                format!("{cell}: police got {field}"),
            );
        }
    }
    broken
}

/// What must hold whatever the table says: the cells that break it.
fn broken_invariants(answers: &Answers) -> Vec<String> {
    let mut broken = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            broken.push(what);
        }
    };
    for (&(endpoint, partner, purpose), answer) in answers {
        let cell = format!(
            "{} as {partner} with purpose {}",
            endpoint.title(),
            purpose.unwrap_or("(default)")
        );
        for what in identity_invariants(&cell, partner, answer) {
            check(false, what);
        }
        // Another CBO cannot tell the referral exists.
        if partner == "cbo-south"
            && purpose != Some("bogus")
            && matches!(
                endpoint,
                Endpoint::ReadReferral
                    | Endpoint::CaseStatus
                    | Endpoint::Outcome
                    | Endpoint::Assignment
            )
        {
            check(
                answer.status == 404,
                format!("{cell}: {} not 404", answer.status),
            );
        }
        // Only police refer.
        if partner != "pd" && matches!(endpoint, Endpoint::CreateReferral | Endpoint::Batch) {
            check(
                !is_success(answer.status),
                format!("{cell}: {}", answer.status),
            );
        }
        // A malformed purpose is a 400 wherever a purpose is read.
        if purpose == Some("bogus") && endpoint.reads_purpose(partner) {
            check(
                answer.status == 400,
                format!("{cell}: {} not 400", answer.status),
            );
        }
        // An evaluator gets nothing record-level over the API: counts are not,
        // and its de-identified export is the way records reach it.
        if partner == "evaluator"
            && !matches!(
                endpoint,
                Endpoint::WhoAmI | Endpoint::Aggregates | Endpoint::CreateExport
            )
        {
            check(
                !is_success(answer.status),
                format!("{cell}: {}", answer.status),
            );
        }
        // A hidden record is a 404, never a 403.
        if endpoint.addresses_a_record() {
            check(answer.status != 403, format!("{cell}: 403"));
        }
        // ... and exactly the 404 of a referral that does not exist.
        if let Some(body) = &answer.not_found {
            let missing = answers[&(Endpoint::ReadMissingReferral, partner, purpose)]
                .not_found
                .as_ref();
            check(
                missing == Some(body),
                format!("{cell}: a 404 unlike a missing referral's: {body}"),
            );
        }
        // Nobody finds a referral that does not exist.
        if endpoint == Endpoint::ReadMissingReferral && purpose != Some("bogus") {
            check(
                answer.status == 404,
                format!("{cell}: {} not 404", answer.status),
            );
        }
    }
    broken
}

/// The Markdown: one section per endpoint, a row per partner, a column per
/// purpose; field sets named by letter under each table.
fn render(answers: &Answers) -> String {
    let mut out = String::new();
    out.push_str(
        "# Endpoint matrix\n\n\
         Generated by the integration test `tests/api/endpoint_matrix.rs`, which asks the real \
         gateway every `/v1` route as every example partner under each purpose of use below, on \
         SQLite and on PostgreSQL, and fails when this file differs from the answers. Refresh it \
         with `UPDATE_MATRIX=1 cargo test --test api endpoint_matrix` and review the diff. Do not \
         edit it by hand. `MATRIX.md` is the same question one level down: the policy's decisions \
         alone.\n\n\
         Columns are the `X-Purpose-Of-Use` header; *(default)* sends none (the partner kind's \
         default: `CAREMGT`, `HRESCH` for the evaluator, `HOPERAT` for the admin; `HOPERAT` for \
         the audit log), `bogus` is malformed. A cell is the HTTP status and, for a 200 on a record \
         read, a letter naming the set of released fields (listed under the table; dotted for the \
         subject, `x[].y` for the items of an array). The test also asserts, whatever this file \
         says: the person's identifiers (by field name and by value) reach only the assigned CBO \
         and the police partner that submitted them, an admin gets only the generalized \
         `subject.dob` and `subject.address.zip`; police get no `status`, notes, outcome or case fields; `cbo-south` gets 404 for `pd`'s referral; only police refer; a \
         malformed purpose is a 400 wherever a purpose is read; the evaluator gets no 2xx but \
         `whoami` and aggregates; a record the requester may not see is a 404 (never a 403) with the very body of a \
         referral that does not exist.\n",
    );
    for endpoint in ENDPOINTS {
        let _ = write!(
            out,
            "\n## `{}`\n\n{}\n\n",
            endpoint.title(),
            endpoint.what()
        );
        out.push_str("| partner |");
        for purpose in PURPOSES {
            let _ = write!(out, " {} |", purpose.unwrap_or("*(default)*"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(PURPOSES.len()));
        out.push('\n');
        let mut sets: Vec<BTreeSet<String>> = Vec::new();
        for (partner, role) in PARTNERS {
            let _ = write!(out, "| `{partner}` ({role}) |");
            for purpose in PURPOSES {
                let answer = &answers[&(endpoint, partner, purpose)];
                let mut cell = answer.status.to_string();
                if let Some(line) = &answer.line_status {
                    let _ = write!(cell, " (line: {line})");
                }
                if let Some(fields) = &answer.fields {
                    let index = sets.iter().position(|s| s == fields).unwrap_or_else(|| {
                        sets.push(fields.clone());
                        sets.len() - 1
                    });
                    let _ = write!(cell, " {}", letter(index));
                }
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        if !sets.is_empty() {
            out.push('\n');
            for (index, set) in sets.iter().enumerate() {
                let names: Vec<String> = set.iter().map(|f| format!("`{f}`")).collect();
                let names = if names.is_empty() {
                    "*(nothing)*".to_owned()
                } else {
                    names.join(", ")
                };
                let _ = writeln!(out, "- **{}**: {names}", letter(index));
            }
        }
    }
    out
}

fn letter(index: usize) -> char {
    char::from(b'A' + u8::try_from(index).expect("fewer than 26 field sets"))
}
