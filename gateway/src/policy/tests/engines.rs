//! The two regorus engines: which one decides, that the VM is used only where
//! it agrees with the interpreter, and that the real bundle's Rego tests pass —
//! and cover every line of its policy — whichever engine makes the decisions.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{DECISION_REGO, TestBundle, input};
use crate::config::PartnerKind;
use crate::policy::bundle::{Bundle, FileKind};
use crate::policy::snapshot::{LoadedBundle, Snapshot};
use crate::policy::{Action, DecisionEngine, Effect, Resource};

#[test]
fn a_bundle_the_vm_agrees_on_is_decided_by_the_vm() {
    let policy = TestBundle::new().load().expect("loads");

    assert_eq!(policy.engine(), DecisionEngine::Vm);
    let question = input(PartnerKind::Cbo, Action::Read, Resource::Referral);
    assert_eq!(
        policy
            .evaluate_with(DecisionEngine::Vm, &question)
            .expect("evaluates"),
        policy
            .evaluate_with(DecisionEngine::Interpreter, &question)
            .expect("evaluates")
    );
}

#[test]
fn a_bundle_the_vm_gets_wrong_is_decided_by_the_interpreter() {
    // An iteration that finds nothing, directly in an `else` branch: regorus
    // 0.14.1's VM makes the whole rule undefined instead of taking the `else`.
    // On a Part 2 outcome (no health field in this catalog) the interpreter
    // gives [], the VM nothing at all.
    let bundle = TestBundle::new();
    bundle.write(
        "crosswalk/decision.rego",
        &DECISION_REGO.replace(
            "\treleases_health(fields)\n} else := []",
            "\tsome name, action in fields\n\tdata.crosswalk.catalog[input.resource][name].class == \"health\"\n\taction == \"release\"\n} else := []",
        ),
    );
    let policy = bundle.load().expect("loads");
    let mut question = input(PartnerKind::Admin, Action::Read, Resource::Outcome);
    question.record.part2 = true;

    assert_eq!(policy.engine(), DecisionEngine::Interpreter);
    let decision = policy.decide(&question);
    assert_eq!(decision.effect, Effect::Allow);
    assert!(decision.notices.is_empty());
    let by_vm = policy.evaluate_with(DecisionEngine::Vm, &question);
    assert_ne!(
        by_vm.ok(),
        Some((*decision).clone()),
        "the VM's answer, had it been used, would have been another"
    );
}

fn bundle_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The helper every Rego test asks for a decision through, and what it becomes
/// when the VM is to decide: a call into Rust with the request and the data the
/// test sees (a test may change the catalog or vocabulary with `with`).
const T_DECIDE: &str = "t_decide(request) := d if {\n\td := decision with input as request\n}";
const T_DECIDE_ON_THE_VM: &str = "t_decide(request) := crosswalk_vm_decide(request, data.crosswalk.catalog, data.crosswalk.vocabulary)";

/// The Rego tests of the real bundle, run a second time with every decision
/// they ask `t_decide` for made by the VM instead of the interpreter: every
/// test must pass again, and wherever a test uses the bundle's own data the
/// VM's decision must be exactly the interpreter's. (The VM cannot run the tests
/// themselves: it does not compile `with`.)
#[test]
fn the_rego_tests_pass_with_decisions_made_by_the_vm() {
    let snapshot = Arc::new(Snapshot::load_without_rego_tests(&bundle_dir()).expect("loads"));
    let copy = tempfile::tempdir().expect("tempdir");
    let bundle = Bundle::read(&bundle_dir()).expect("reads");
    let mut rebound = false;
    for file in &bundle.files {
        let mut contents = file.contents.clone();
        if file.kind == FileKind::Rego && contents.contains(T_DECIDE) {
            contents = contents.replace(T_DECIDE, T_DECIDE_ON_THE_VM);
            rebound = true;
        }
        let path = copy.path().join(&file.relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }
    assert!(rebound, "no Rego test helper reads {T_DECIDE:?}");
    let mut loaded = LoadedBundle::load(copy.path()).expect("the copy loads");
    let data = loaded.engine.get_data();
    let calls = Arc::new(AtomicUsize::new(0));
    let disagreements = Arc::new(Mutex::new(Vec::new()));
    let (counter, record, decider) = (
        Arc::clone(&calls),
        Arc::clone(&disagreements),
        Arc::clone(&snapshot),
    );
    loaded
        .engine
        .add_extension(
            "crosswalk_vm_decide".to_owned(),
            3,
            Box::new(move |args: Vec<regorus::Value>| {
                counter.fetch_add(1, Ordering::Relaxed);
                let [request, catalog, vocabulary] = <[regorus::Value; 3]>::try_from(args)
                    .map_err(|_| anyhow::anyhow!("three arguments"))?;
                let seen = regorus::Value::from(json!({
                    "crosswalk": {
                        "catalog": serde_json::to_value(&catalog)?,
                        "vocabulary": serde_json::to_value(&vocabulary)?,
                    }
                }));
                let engines = decider.engines();
                let vm = engines.vm().ok_or_else(|| anyhow::anyhow!("no VM"))?;
                let by_vm = vm
                    .evaluate_with_data(seen.clone(), request.clone())
                    .map_err(|e| anyhow::anyhow!(e))?;
                if seen == data {
                    let by_interpreter = engines
                        .evaluate_with(DecisionEngine::Interpreter, request.clone())
                        .map_err(|e| anyhow::anyhow!(e))?;
                    if by_interpreter != by_vm {
                        record.lock().expect("not poisoned").push(format!(
                            "{request}: vm {by_vm}, interpreter {by_interpreter}"
                        ));
                    }
                }
                Ok(by_vm)
            }),
        )
        .expect("the extension registers");

    let report = loaded.run_tests();

    assert!(
        report.failed.is_empty(),
        "Rego tests that fail with the VM deciding: {:?}",
        report.failed
    );
    assert_eq!(
        report.passed.len(),
        crate::policy::run_tests(&bundle_dir())
            .expect("runs")
            .passed
            .len(),
        "the same tests ran"
    );
    let disagreements = disagreements.lock().expect("not poisoned");
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(
        calls.load(Ordering::Relaxed) > 500,
        "the VM made the tests' decisions ({} calls)",
        calls.load(Ordering::Relaxed)
    );
}

/// Every line of every policy module of the real bundle is reached by its Rego
/// tests: they cover every rule of the baseline, not only the decisions the
/// matrix enumerates.
#[test]
fn the_rego_tests_cover_every_line_of_the_policy() {
    let mut loaded = LoadedBundle::load(&bundle_dir()).expect("loads");
    loaded.engine.set_enable_coverage(true);
    for test in loaded.test_names() {
        let passed = loaded.engine.eval_rule(test.clone()).expect("evaluates");
        assert_eq!(passed, regorus::Value::from(true), "{test}");
    }
    let report = loaded.engine.get_coverage_report().expect("a report");

    let mut uncovered = BTreeSet::new();
    let mut policy_files = 0;
    for file in &report.files {
        if file.path.ends_with("_test.rego") {
            continue;
        }
        policy_files += 1;
        let source = std::fs::read_to_string(&file.path).expect("the policy file");
        let lines: Vec<&str> = source.lines().collect();
        for line in &file.not_covered {
            let text = usize::try_from(*line)
                .ok()
                .and_then(|n| lines.get(n.checked_sub(1)?))
                .copied()
                .unwrap_or_default();
            uncovered.insert(format!("{}:{line}: {}", file.path, text.trim()));
        }
    }
    assert_eq!(policy_files, 7, "every policy module is in the report");
    assert!(
        uncovered.is_empty(),
        "lines no Rego test reaches: {uncovered:#?}"
    );
}
