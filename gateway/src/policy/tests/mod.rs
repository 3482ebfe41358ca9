//! The engine against small bundles written to a temporary directory: loading and
//! its checks, strict decisions, the cache and reload; the two regorus engines
//! and the Rego tests in `engines`; enforcement in `release`. (The real
//! baseline bundle's decisions are exercised by the authorization matrix.)

mod engines;
mod release;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::config::PartnerKind;
use crate::secrets::MasterSecret;

/// A catalog that agrees with the code: every field operational, except a few
/// the tests look at.
pub(super) fn matching_catalog() -> Value {
    let mut catalog = serde_json::Map::new();
    for resource in Resource::ALL {
        let fields: serde_json::Map<_, _> = resource
            .fields()
            .iter()
            .map(|f| {
                let entry = match f.name {
                    "subject.dob" | "contact_at" => {
                        json!({"class": "quasi_identifier", "safe_harbor": "dates"})
                    }
                    "subject.address.zip" => {
                        json!({"class": "quasi_identifier", "safe_harbor": "geographic_subdivision"})
                    }
                    "subject.given_name" | "cad_number" => {
                        json!({"class": "direct_identifier", "safe_harbor": "names"})
                    }
                    "status" => json!({"class": "health", "safe_harbor": null}),
                    _ => json!({"class": "operational", "safe_harbor": null}),
                };
                (f.name.to_owned(), entry)
            })
            .collect();
        catalog.insert(resource.as_str().to_owned(), fields.into());
    }
    catalog.into()
}

/// A small policy in the baseline's shape: admins get identities withheld and
/// quasi-identifiers generalized; an assigned CBO gets everything but the fields
/// in `data.crosswalk.rules.withheld_from_cbo`; a Part 2 record's health fields
/// carry a notice; `aggregate` is aggregate-only; the rest is denied.
pub(super) const DECISION_REGO: &str = r#"package crosswalk

import rego.v1

default decision := {"effect": "deny", "fields": {}, "reason": "no rule allows this request", "notices": [], "consent_used": false}

decision := allow(admin_fields, "admin view") if {
	input.requester.kind == "admin"
	input.action in {"read", "list"}
} else := allow(cbo_fields, "assigned CBO") if {
	input.requester.kind == "cbo"
	input.relationship == "assigned_cbo"
} else := {"effect": "aggregate_only", "fields": {}, "reason": "counts only", "notices": [], "consent_used": false} if {
	input.action == "aggregate"
}

allow(fields, reason) := {"effect": "allow", "fields": fields, "reason": reason, "notices": notices(fields), "consent_used": consent_used}

default consent_used := false

consent_used if input.consent != null

notices(fields) := ["Part 2 notice"] if {
	input.record.part2
	releases_health(fields)
} else := []

releases_health(fields) if {
	some name, action in fields
	data.crosswalk.catalog[input.resource][name].class == "health"
	action == "release"
}

admin_fields := {name: admin_action(spec.class) | some name, spec in data.crosswalk.catalog[input.resource]}

admin_action(class) := "withhold" if class == "direct_identifier"
else := "generalize" if class == "quasi_identifier"
else := "release"

cbo_fields := {name: cbo_action(name) | some name, _ in data.crosswalk.catalog[input.resource]}

cbo_action(name) := "withhold" if name in data.crosswalk.rules.withheld_from_cbo
else := "pseudonymize" if name == "submitted_by"
else := "release"
"#;

const TEST_REGO: &str = r#"package crosswalk.decision_test

import data.crosswalk
import rego.v1

test_admin_reads if {
	crosswalk.decision.effect == "allow" with input as {"requester": {"id": "a", "kind": "admin"}, "action": "read", "resource": "outcome", "relationship": "none", "record": {"part2": false}}
}

test_default_deny if {
	crosswalk.decision.effect == "deny" with input as {"requester": {"id": "p", "kind": "police"}, "action": "read", "resource": "outcome", "relationship": "none", "record": {"part2": false}}
}
"#;

/// A bundle in a temporary directory.
pub(super) struct TestBundle {
    pub dir: tempfile::TempDir,
}

impl TestBundle {
    pub fn new() -> Self {
        let bundle = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        bundle.write("crosswalk/decision.rego", DECISION_REGO);
        bundle.write("crosswalk/decision_test.rego", TEST_REGO);
        bundle.write(
            "crosswalk/catalog/data.json",
            &serde_json::to_string_pretty(&matching_catalog()).expect("json"),
        );
        bundle.write(
            "crosswalk/rules/data.json",
            r#"{"withheld_from_cbo": ["cad_number"]}"#,
        );
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub fn load(&self) -> Result<Policy, PolicyError> {
        Policy::load(self.path())
    }
}

pub(super) fn input(kind: PartnerKind, action: Action, resource: Resource) -> DecisionInput {
    DecisionInput {
        requester: Requester {
            id: format!("{kind}-1"),
            kind,
        },
        purpose: "CAREMGT".parse().expect("purpose"),
        action,
        resource,
        relationship: if kind == PartnerKind::Cbo {
            Relationship::AssignedCbo
        } else {
            Relationship::None
        },
        record: RecordFacts::default(),
        consent: None,
        study: None,
    }
}

fn referral_record() -> Value {
    json!({
        "id": "r-1",
        "status": "engaged",
        "submitted_by": "pd",
        "cad_number": "CAD-2026-0001",
        "subject": {
            "given_name": "Quinn",
            "dob": "1987-03-14",
            "address": {"zip": "95814-1234", "city": "Sacramento"},
        },
        "contact_at": "2026-03-31T22:15:00Z",
        "not_in_the_catalog": "must never leave",
    })
}

fn pseudonymizer() -> crate::pseudonym::Pseudonymizer {
    crate::pseudonym::Pseudonymizer::new(&MasterSecret::from_bytes([9; 32]))
}

#[test]
fn a_valid_bundle_loads_with_a_content_version() {
    let bundle = TestBundle::new();

    let policy = bundle.load().expect("loads");

    let version = policy.version();
    assert_eq!(version.len(), 64);
    assert!(version.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(bundle.load().expect("loads again").version(), version);
    let report = run_tests(bundle.path()).expect("tests run");
    assert_eq!(
        report.passed,
        [
            "data.crosswalk.decision_test.test_admin_reads",
            "data.crosswalk.decision_test.test_default_deny"
        ]
    );
    assert!(report.failed.is_empty());
}

#[test]
fn decisions_are_typed_and_carry_the_version() {
    let policy = TestBundle::new().load().expect("loads");

    let admin = policy.decide(&input(PartnerKind::Admin, Action::Read, Resource::Referral));
    assert_eq!(admin.effect, Effect::Allow);
    assert_eq!(admin.fields["subject.given_name"], FieldAction::Withhold);
    assert_eq!(admin.fields["subject.dob"], FieldAction::Generalize);
    assert_eq!(admin.fields["id"], FieldAction::Release);
    assert_eq!(admin.fields.len(), Resource::Referral.fields().len());
    assert_eq!(admin.policy_version, policy.version());

    let refused = policy.decide(&input(
        PartnerKind::Police,
        Action::Read,
        Resource::Referral,
    ));
    assert_eq!(refused.effect, Effect::Deny);
    assert!(refused.fields.is_empty());

    let counts = policy.decide(&input(
        PartnerKind::Police,
        Action::Aggregate,
        Resource::Outcome,
    ));
    assert_eq!(counts.effect, Effect::AggregateOnly);
}

#[test]
fn equal_inputs_share_one_cached_decision() {
    let policy = TestBundle::new().load().expect("loads");
    let question = input(PartnerKind::Cbo, Action::List, Resource::Referral);

    let first = policy.decide(&question);
    let second = policy.decide(&question.clone());

    assert!(Arc::ptr_eq(&first, &second));
    let other = policy.decide(&input(PartnerKind::Cbo, Action::Read, Resource::Referral));
    assert!(!Arc::ptr_eq(&first, &other));
    assert_eq!(policy.evaluate(&question).expect("evaluates"), *first);
}

#[test]
fn consents_with_the_same_scope_share_one_cached_decision() {
    let policy = TestBundle::new().load().expect("loads");
    let question = |id: &str, classes: Vec<FieldClass>| DecisionInput {
        consent: Some(ConsentScope {
            id: id.into(),
            recipients: vec!["admin".into()],
            purposes: vec!["CAREMGT".parse().expect("purpose")],
            classes,
            part2_recipients: Vec::new(),
            discloser: "cbo-north".into(),
        }),
        ..input(PartnerKind::Admin, Action::List, Resource::Outcome)
    };
    let first_question = question("c-1", vec![FieldClass::Health]);
    let second_question = question("c-2", vec![FieldClass::Health]);

    let first = policy.decide(&first_question);
    let second = policy.decide(&second_question);

    assert!(
        Arc::ptr_eq(&first, &second),
        "one evaluation for two consents that differ only in their id"
    );
    assert_eq!(policy.current.load().cache.len(), 1);
    // Each caller still records its own consent with the disclosure.
    assert!(first.consent_used);
    assert_eq!(first.consent_to_record(&first_question), Some("c-1"));
    assert_eq!(second.consent_to_record(&second_question), Some("c-2"));

    let wider = policy.decide(&question(
        "c-1",
        vec![FieldClass::Health, FieldClass::Operational],
    ));
    assert!(
        !Arc::ptr_eq(&first, &wider),
        "another scope is another question"
    );
    assert_eq!(policy.current.load().cache.len(), 2);
}

#[test]
fn the_cache_is_bounded() {
    let cache = cache::DecisionCache::new(2);
    let policy = TestBundle::new().load().expect("loads");
    let decision = policy.decide(&input(PartnerKind::Admin, Action::Read, Resource::Outcome));
    for kind in [PartnerKind::Admin, PartnerKind::Cbo, PartnerKind::Health] {
        cache.insert(
            input(kind, Action::Read, Resource::Outcome),
            Arc::clone(&decision),
        );
        assert!(cache.len() <= 2);
    }
    assert!(
        cache
            .get(&input(PartnerKind::Health, Action::Read, Resource::Outcome))
            .is_some()
    );
}

#[test]
fn a_broken_bundle_is_refused_naming_the_problem() {
    // (case, file, contents, what the message must name)
    let cases = [
        (
            "parse error",
            "crosswalk/decision.rego",
            "package crosswalk\n\ndecision := {\n",
            "decision.rego",
        ),
        (
            "failing Rego test",
            "crosswalk/extra_test.rego",
            "package crosswalk.extra_test\nimport rego.v1\ntest_police_reads if {\n\tdata.crosswalk.decision.effect == \"allow\" with input as {\"requester\": {\"kind\": \"police\"}}\n}\n",
            "data.crosswalk.extra_test.test_police_reads",
        ),
        (
            "catalog/code mismatch",
            "crosswalk/catalog/data.json",
            &{
                let mut catalog = matching_catalog();
                catalog["outcome"]
                    .as_object_mut()
                    .expect("object")
                    .remove("notes");
                catalog.to_string()
            },
            "outcome.notes, which the catalog does not name",
        ),
        (
            "data that is not JSON",
            "crosswalk/rules/data.json",
            "{withheld_from_cbo: []}",
            "rules/data.json: not JSON",
        ),
        (
            "package outside the manifest roots",
            ".manifest",
            r#"{"roots": ["crosswalk/catalog", "crosswalk/rules"]}"#,
            "do not permit package crosswalk",
        ),
    ];
    for (case, file, contents, names) in cases {
        let bundle = TestBundle::new();
        bundle.write(file, contents);

        let e = bundle.load().expect_err(case);

        let text = e.to_string();
        assert!(text.contains(names), "{case}: names {names}: {text}");
    }
}

#[test]
fn a_malformed_decision_is_refused_at_load() {
    let bundle = TestBundle::new();
    bundle.write(
        "crosswalk/decision.rego",
        &DECISION_REGO.replace(
            "else := \"generalize\" if class == \"quasi_identifier\"",
            "else := \"redact\" if class == \"quasi_identifier\"",
        ),
    );

    let e = bundle.load().expect_err("unknown action");

    let text = e.to_string();
    assert!(text.contains("data.crosswalk.decision"), "{text}");
    assert!(text.contains("redact"), "{text}");
}

#[test]
fn a_malformed_decision_at_run_time_is_a_deny_and_is_not_cached() {
    // Only CBO lists are malformed: the probes (reads) pass.
    let bundle = TestBundle::new();
    bundle.write(
        "crosswalk/decision.rego",
        &DECISION_REGO.replace(
            "cbo_action(name) := \"withhold\"",
            "cbo_action(name) := \"show\" if {\n\tname == \"id\"\n\tinput.action == \"list\"\n} else := \"withhold\"",
        ),
    );
    let policy = bundle.load().expect("the probes pass");
    let question = input(PartnerKind::Cbo, Action::List, Resource::Referral);

    let decision = policy.decide(&question);

    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.fields.is_empty());
    assert_eq!(
        policy.current.load().cache.len(),
        0,
        "errors are not cached"
    );
    let e = policy.evaluate(&question).expect_err("malformed");
    assert!(e.to_string().contains("show"), "{e}");
}

/// A named change to a decision document.
type Edit<'a> = (&'a str, &'a dyn Fn(&mut Value));

#[test]
fn parsing_is_strict() {
    let policy = TestBundle::new().load().expect("loads");
    let snapshot = policy.current.load();
    let plan = snapshot.catalog_plan(Resource::Outcome);
    let question = input(PartnerKind::Admin, Action::Read, Resource::Outcome);
    let all_released: serde_json::Map<String, Value> = Resource::Outcome
        .fields()
        .iter()
        .map(|f| (f.name.to_owned(), json!("release")))
        .collect();
    let good = json!({"effect": "allow", "fields": all_released, "reason": "r",
                      "notices": [], "consent_used": false});
    let deny = json!({"effect": "deny", "fields": {}, "reason": "r",
                      "notices": [], "consent_used": false});
    assert!(Decision::parse(good.clone(), &question, plan, &policy.version()).is_ok());

    let mut with_consent = question.clone();
    with_consent.consent = Some(ConsentScope {
        id: "c-1".into(),
        recipients: vec![],
        purposes: vec![],
        classes: vec![],
        part2_recipients: vec![],
        discloser: String::new(),
    });
    let mut part2 = question.clone();
    part2.record.part2 = true;
    let mut health = matching_catalog();
    health["outcome"]["kind"]["class"] = json!("health");
    let health_plan = catalog::Catalog::check(&health).expect("catalog");

    let edit = |f: &dyn Fn(&mut Value)| {
        let mut output = good.clone();
        f(&mut output);
        output
    };
    let refused = |case: &str, output: Value, question: &DecisionInput, plan| {
        let parsed = Decision::parse(output, question, plan, &policy.version());
        assert!(parsed.is_err(), "{case} must be refused");
    };
    let edits: [Edit; 9] = [
        ("unknown effect", &|o| o["effect"] = json!("permit")),
        ("unknown action", &|o| o["fields"]["notes"] = json!("mask")),
        ("extra key", &|o| o["obligations"] = json!([])),
        ("missing key", &|o| o["notices"] = Value::Null),
        ("field not in the catalog", &|o| {
            o["fields"]["ssn"] = json!("release");
        }),
        ("catalog field without an action", &|o| {
            o["fields"].as_object_mut().expect("object").remove("notes");
        }),
        ("deny with fields", &|o| o["effect"] = json!("deny")),
        ("empty reason", &|o| o["reason"] = json!(" ")),
        ("a consent used with none on file", &|o| {
            o["consent_used"] = json!(true);
        }),
    ];
    for (case, f) in edits {
        refused(case, edit(f), &question, plan);
    }
    refused("not an object", json!("allow"), &question, plan);
    let deny_with = |case: &str, key: &str, value: Value| {
        let mut output = deny.clone();
        output[key] = value;
        refused(case, output, &with_consent, plan);
    };
    deny_with("a deny with notices", "notices", json!(["Part 2 notice"]));
    deny_with("a deny that used the consent", "consent_used", json!(true));
    assert!(Decision::parse(deny.clone(), &with_consent, plan, &policy.version()).is_ok());
    refused(
        "Part 2 health released without a notice",
        good.clone(),
        &part2,
        health_plan.plan(Resource::Outcome),
    );
    let used = edit(&|o| o["consent_used"] = json!(true));
    let parsed = Decision::parse(used, &with_consent, plan, &policy.version()).expect("parses");
    assert_eq!(parsed.consent_to_record(&with_consent), Some("c-1"));
    let unused = Decision::parse(good.clone(), &with_consent, plan, &policy.version());
    assert_eq!(
        unused.expect("parses").consent_to_record(&with_consent),
        None
    );
}

#[test]
fn reload_swaps_the_bundle_and_drops_the_cache() {
    let bundle = TestBundle::new();
    let policy = bundle.load().expect("loads");
    let question = input(PartnerKind::Cbo, Action::Read, Resource::Referral);
    let before = policy.decide(&question);
    assert_eq!(before.fields["subject.given_name"], FieldAction::Release);
    let old_version = policy.version();

    bundle.write(
        "crosswalk/rules/data.json",
        r#"{"withheld_from_cbo": ["cad_number", "subject.given_name"]}"#,
    );
    let reloaded = policy.reload().expect("reloads");

    assert_eq!(reloaded.previous, old_version);
    assert_eq!(reloaded.current, policy.version());
    assert_ne!(reloaded.current, old_version);
    let after = policy.decide(&question);
    assert_eq!(after.fields["subject.given_name"], FieldAction::Withhold);
    assert_eq!(after.policy_version, reloaded.current);
}

#[test]
fn reloading_an_unchanged_bundle_keeps_it_and_its_cache() {
    let bundle = TestBundle::new();
    let policy = bundle.load().expect("loads");
    let question = input(PartnerKind::Cbo, Action::Read, Resource::Referral);
    let before = policy.decide(&question);

    let reloaded = policy.reload().expect("reloads");

    assert_eq!(reloaded.previous, reloaded.current);
    assert!(Arc::ptr_eq(&before, &policy.decide(&question)));
}

#[test]
fn a_broken_reload_keeps_the_previous_bundle() {
    let bundle = TestBundle::new();
    let policy = bundle.load().expect("loads");
    let question = input(PartnerKind::Cbo, Action::Read, Resource::Referral);
    let before = policy.decide(&question);
    let version = policy.version();

    bundle.write(
        "crosswalk/decision.rego",
        "package crosswalk\ndecision := {",
    );
    let e = policy.reload().expect_err("refused");

    assert!(e.to_string().contains("decision.rego"), "{e}");
    assert_eq!(policy.version(), version);
    let after = policy.decide(&question);
    assert!(
        Arc::ptr_eq(&before, &after),
        "still the same bundle and cache"
    );
}

#[test]
fn policy_and_engine_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<regorus::Engine>();
    assert_send_sync::<Decision>();
}
