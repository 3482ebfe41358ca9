//! The OpenAPI document against the server it describes: what the document
//! lists, the server reads, and what the document rules out that a client could
//! still send is refused naming the field. The outside fuzzer (`.ci/fuzz-api`)
//! checks the same at scale; these tests pin the findings it made. Also the
//! NDJSON batch fed generated lines, which the fuzzer cannot judge: the batch
//! answers a bad line in a 200 stream.

use chrono::Datelike as _;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::exchange::{batch, count, full, minimal, post, token};
use crate::helpers::{Backend, TestApp, assert_problem, get_with, spawn_app};

backend_tests!(
    every_documented_code_is_read_by_the_server,
    documented_event_times_are_accepted_and_the_0000_date_is_not,
    an_array_where_an_object_belongs_is_refused,
    every_line_of_a_generated_batch_gets_one_answer,
    released_records_carry_only_documented_fields,
);

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// The `enum` of a component schema.
fn codes(doc: &Value, component: &str) -> Vec<String> {
    doc["components"]["schemas"][component]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{component} has an enum"))
        .iter()
        .map(|v| v.as_str().expect("a string code").to_owned())
        .collect()
}

/// The `pattern` of a component's property.
fn pattern(doc: &Value, component: &str, field: &str) -> regex::Regex {
    let text = doc["components"]["schemas"][component]["properties"][field]["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{component}.{field} has a pattern"));
    regex::Regex::new(text).expect("a valid pattern")
}

/// The document once listed the Rust variant names (`Cbo`, `MentalHealth`)
/// where the wire has codes (`cbo`, `mental_health`): every generated client
/// sent values the server refused.
async fn every_documented_code_is_read_by_the_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let follow_up = codes(&doc, "FollowUpBy");
    assert_eq!(follow_up, ["cbo", "officer"]);
    let resources = codes(&doc, "ResourceCategory");
    assert!(resources.len() >= 20, "{resources:?}");
    for (i, resource) in resources.iter().enumerate() {
        let mut referral = minimal("Ada", &format!("Contract-Demo{}", "a".repeat(i % 5)));
        referral["resources"] = json!([resource]);
        referral["follow_up_by"] = json!(follow_up[i % 2]);
        let response = post(&app, "/v1/referrals", "pd", &referral).await;
        assert_eq!(response.status(), 201, "resource {resource}");
    }
    let outcome_kinds = codes(&doc, "OutcomeKind");
    assert!(outcome_kinds.contains(&"service_connected".to_owned()));
}

/// `contact_at` once had no bounds in the document and `0000-01-01` was
/// accepted. The document's pattern admits whole months from the program
/// start to last month; a time it admits is accepted, the 0000 date and next
/// month are neither admitted nor accepted.
async fn documented_event_times_are_accepted_and_the_0000_date_is_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let contact_at = pattern(&doc, "ReferralRequest", "contact_at");
    // The server's real clock: the test gateway runs on the wall clock.
    let now = chrono::DateTime::from_timestamp(crate::helpers::now(), 0).expect("now");
    let last_month = now.date_naive().with_day(1).expect("day 1") - chrono::Days::new(1);
    let admitted = format!("{}-28T09:30:00-07:00", last_month.format("%Y-%m"));
    assert!(contact_at.is_match(&admitted), "{admitted}");
    let next_month = (now.date_naive().with_day(1).expect("day 1") + chrono::Days::new(40))
        .format("%Y-%m-01T00:00:00Z")
        .to_string();
    for refused in [
        "0000-01-01T00:00:00Z",
        "1999-12-31T00:00:00Z",
        next_month.as_str(),
    ] {
        assert!(!contact_at.is_match(refused), "{refused} is admitted");
        let mut referral = minimal("Bea", "Contract-Demo");
        referral["contact_at"] = json!(refused);
        let problem = assert_problem(post(&app, "/v1/referrals", "pd", &referral).await, 400).await;
        assert_eq!(problem["errors"][0]["field"], "contact_at", "{refused}");
    }
    let mut referral = minimal("Bea", "Contract-Demo");
    referral["contact_at"] = json!(admitted);
    assert_eq!(
        post(&app, "/v1/referrals", "pd", &referral).await.status(),
        201
    );
}

/// serde reads a struct from a JSON array of its fields in order, so
/// `"address": [null, null]` was stored as an empty address (the fuzzer's
/// "schema-violating request accepted").
async fn an_array_where_an_object_belongs_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut referral = minimal("Cy", "Contract-Demo");
    referral["subject"]["address"] = json!([null, null]);
    let problem = assert_problem(post(&app, "/v1/referrals", "pd", &referral).await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "subject.address");

    let mut referral = minimal("Cy", "Contract-Demo");
    referral["subject"] = json!(["Cy", "Contract-Demo"]);
    let problem = assert_problem(post(&app, "/v1/referrals", "pd", &referral).await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "subject");

    let body = json!([minimal("Cy", "Contract-Demo")]);
    let problem = assert_problem(post(&app, "/v1/referrals", "pd", &body).await, 400).await;
    assert_eq!(problem["errors"][0]["field"], "(body)");

    let stored = count(&app.db_pool().await, "SELECT COUNT(*) FROM referrals").await;
    assert_eq!(stored, 0, "nothing half-written");
}

/// One generated line: a referral, a referral with one field replaced by
/// something generated, any JSON, or text that is not JSON.
fn line() -> impl Strategy<Value = String> {
    let json_leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    let any_json = json_leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let field = prop::sample::select(vec![
        "subject",
        "contact_at",
        "district",
        "resources",
        "follow_up_by",
        "assign_to",
        "arrested",
        "circumstances",
        "cad_number",
        "unknown_field",
    ]);
    prop_oneof![
        2 => "[A-Z][a-z]{1,10}".prop_map(|surname| minimal("Dee", &format!("{surname}-Demo")).to_string()),
        4 => (field, any_json.clone()).prop_map(|(field, value)| {
            let mut referral = minimal("Eve", "Batch-Demo");
            referral[field] = value;
            referral.to_string()
        }),
        2 => any_json.prop_map(|value| value.to_string()),
        1 => "[^\n\r]{0,80}",
    ]
}

/// Every line of a batch of generated lines gets exactly one answer, in
/// order: the stored referral or a problem naming a field; the server never
/// fails and never answers for a line it was not sent.
async fn every_line_of_a_generated_batch_gets_one_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    // Deterministic, so a failure reproduces; PROPTEST_CASES has no say here.
    let mut runner = TestRunner::deterministic();
    let lines: Vec<String> = (0..150)
        .map(|_| line().new_tree(&mut runner).expect("a line").current())
        .filter(|line| !line.trim().is_empty())
        .collect();
    let results = batch(&app, lines.join("\n") + "\n", None).await;
    assert_eq!(results.len(), lines.len(), "one answer per line");
    let mut stored = 0;
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["line"], json!(i + 1), "answers in order");
        match (&result["referral"], &result["problem"]) {
            (Value::Object(referral), Value::Null) => {
                assert!(referral["id"].is_string());
                stored += 1;
            }
            (Value::Null, Value::Object(problem)) => {
                assert_eq!(problem["status"], 400, "line {}: {problem:?}", i + 1);
                let field = problem["errors"][0]["field"].as_str().unwrap_or_default();
                assert!(
                    !field.is_empty(),
                    "line {} names a field: {problem:?}",
                    i + 1
                );
            }
            other => panic!(
                "line {}: neither a referral nor a problem: {other:?}",
                i + 1
            ),
        }
    }
    assert!(
        stored > 10,
        "the generated valid lines are stored ({stored})"
    );
    assert_eq!(
        count(&app.db_pool().await, "SELECT COUNT(*) FROM referrals").await,
        stored,
        "exactly the acknowledged lines are stored"
    );
}

/// The members of `value` that the document's `schema` does not admit, by
/// path: objects the document closes (`additionalProperties: false`) list
/// every member they may carry.
fn undocumented(doc: &Value, schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    };
    if let (Some(array), Some(items)) = (value.as_array(), schema.get("items")) {
        for (i, item) in array.iter().enumerate() {
            undocumented(doc, items, item, &format!("{path}[{i}]"), found);
        }
    }
    let Some(object) = value.as_object() else {
        return;
    };
    for (name, member) in object {
        match schema["properties"].get(name) {
            Some(property) => undocumented(doc, property, member, &format!("{path}.{name}"), found),
            None if schema["additionalProperties"] == json!(false) => {
                found.push(format!("{path}.{name}"));
            }
            None => {}
        }
    }
}

/// The document lists, for every released record, the fields it may carry
/// (from the same field lists the policy catalog is checked against), and
/// every problem `type`: what each partner kind reads keeps to it.
async fn released_records_carry_only_documented_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = document(&app).await;
    let created = post(
        &app,
        "/v1/referrals",
        "pd",
        &full("Contract", "Reader-Demo"),
    )
    .await;
    assert_eq!(created.status(), 201);

    let page_schema = &doc["components"]["schemas"]["ReferralPageBody"];
    for partner in ["pd", "cbo-south", "admin"] {
        let response = get_with(
            &app.client,
            &app.url("/v1/referrals"),
            Some(&token(partner)),
        )
        .await;
        assert_eq!(response.status(), 200, "{partner}");
        let page: Value = response.json().await.expect("JSON");
        let referrals = page["referrals"].as_array().expect("a list");
        assert!(!referrals.is_empty(), "{partner} sees the referral");
        let mut found = Vec::new();
        undocumented(&doc, page_schema, &page, "", &mut found);
        assert!(
            found.is_empty(),
            "{partner} read undocumented fields: {found:?}"
        );
    }
    // The closed schema does catch a field it does not list.
    let mut found = Vec::new();
    let forged = json!({"referrals": [{"id": "x", "subject": {"ssn": "x"}}]});
    undocumented(&doc, page_schema, &forged, "", &mut found);
    assert_eq!(found, [".referrals[0].subject.ssn"]);

    let response = get_with(
        &app.client,
        &app.url("/v1/audit/entries"),
        Some(&token("admin")),
    )
    .await;
    assert_eq!(response.status(), 200);
    let entries: Value = response.json().await.expect("JSON");
    assert!(!entries["entries"].as_array().expect("a list").is_empty());
    let mut found = Vec::new();
    undocumented(
        &doc,
        &doc["components"]["schemas"]["EntryPageBody"],
        &entries,
        "",
        &mut found,
    );
    assert!(
        found.is_empty(),
        "audit entries carry undocumented fields: {found:?}"
    );

    // A refusal's `type` is one the document lists.
    let refused = get_with(
        &app.client,
        &app.url("/v1/referrals"),
        Some(&token("evaluator")),
    )
    .await;
    let problem = assert_problem(refused, 403).await;
    let types = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        .as_array()
        .expect("the problem types are listed");
    assert!(types.contains(&problem["type"]), "{problem}");
    assert!(types.contains(&json!("about:blank")));
}
