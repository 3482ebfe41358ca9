//! What a release decision costs: a cold evaluation of the real baseline bundle
//! (`policies/`, cache bypassed) on the engine the gateway uses and, for
//! comparison, on regorus's interpreter; a cached one; a police list under a
//! thousand consents that share one scope; and shaping 1,000 records under one
//! decision with `release_view`.
//!
//! `cargo bench --bench policy` prints decisions/s, µs per decision and latency
//! percentiles. Plain `Instant` timing, one thread. On Linux it also prints the
//! CPU time the thread spent per cold decision (from
//! `/proc/thread-self/schedstat`), which a busy shared machine inflates far
//! less than wall-clock time. `POLICY_DIR` points it at another bundle.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crosswalk::config::PartnerKind;
use crosswalk::policy::{
    Action, ConsentScope, DecisionEngine, DecisionInput, FieldShaper, Policy, RecordFacts,
    Relationship, Requester, Resource, release_view,
};
use crosswalk::pseudonym::Pseudonymizer;
use crosswalk::secrets::MasterSecret;
use serde_json::json;

const COLD_DECISIONS: usize = 3_000;
const CACHED_DECISIONS: usize = 2_000_000;
const RECORDS: usize = 1_000;
const CONSENTS: usize = 1_000;
const SHAPING_ROUNDS: usize = 50;

fn main() {
    let dir = std::env::var_os("POLICY_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        PathBuf::from,
    );
    let started = Instant::now();
    let policy = Policy::load(&dir).expect("the policy bundle loads");
    println!(
        "policy {} loaded and checked (Rego tests and engine agreement included) in {:.2}s; deciding with the {}",
        &policy.version()[..12],
        started.elapsed().as_secs_f64(),
        policy.engine()
    );

    let inputs = questions();
    cold(&policy, &inputs);
    // Before `cached` fills the cache: its first decision is a cold one.
    consents_of_one_scope(&policy);
    cached(&policy, &inputs);
    shaping(&policy);
}

/// Every evaluation goes to the engine: the one in use, then the interpreter.
fn cold(policy: &Policy, inputs: &[DecisionInput]) {
    for (label, engine) in [
        ("cold decision (cache bypassed)", policy.engine()),
        ("  same, on the interpreter", DecisionEngine::Interpreter),
    ] {
        let mut latencies = Vec::with_capacity(COLD_DECISIONS);
        let cpu = cpu_time();
        for i in 0..COLD_DECISIONS {
            let input = &inputs[i % inputs.len()];
            let started = Instant::now();
            black_box(policy.evaluate_with(engine, input).expect("decides"));
            latencies.push(started.elapsed());
        }
        let cpu = cpu_time()
            .zip(cpu)
            .and_then(|(end, start)| end.checked_sub(start));
        report(label, &mut latencies, cpu);
    }
}

/// The same questions again, answered from the snapshot's cache.
fn cached(policy: &Policy, inputs: &[DecisionInput]) {
    for input in inputs {
        policy.decide(input);
    }
    let started = Instant::now();
    for i in 0..CACHED_DECISIONS {
        black_box(policy.decide(&inputs[i % inputs.len()]));
    }
    let elapsed = started.elapsed();
    println!(
        "{:<34} {:>12.0} decisions/s  {:>8.3} µs/decision (mean of {CACHED_DECISIONS})",
        "cached decision",
        per_second(CACHED_DECISIONS, elapsed),
        micros(elapsed) / count(CACHED_DECISIONS),
    );
}

/// A police list of outcomes, each under its own consent, all with one scope:
/// the consent's id is not part of the question, so the first decision serves
/// the rest.
fn consents_of_one_scope(policy: &Policy) {
    let before = Instant::now();
    let mut distinct = Vec::new();
    for i in 0..CONSENTS {
        let mut input = question(
            PartnerKind::Police,
            Relationship::Submitter,
            Action::List,
            Resource::Outcome,
            Some(PartnerKind::Police),
        );
        if let Some(consent) = &mut input.consent {
            consent.id = format!("consent-{i}");
        }
        let decision = policy.decide(&input);
        if !distinct
            .iter()
            .any(|d| std::sync::Arc::ptr_eq(d, &decision))
        {
            distinct.push(decision);
        }
    }
    println!(
        "{CONSENTS} outcomes under {CONSENTS} consents of one scope: {} decision(s) evaluated, {:.3} ms in all",
        distinct.len(),
        micros(before.elapsed()) / 1000.0
    );
}

/// 1,000 referrals shaped under one decision, for three kinds of route.
fn shaping(policy: &Policy) {
    let pseudonyms = Pseudonymizer::new(&MasterSecret::from_bytes([7; 32]));
    let records: Vec<serde_json::Value> = (0..RECORDS).map(referral).collect();
    for (label, kind, relationship, action, audience) in [
        (
            "cbo (release/withhold)",
            PartnerKind::Cbo,
            Relationship::AssignedCbo,
            Action::List,
            "cbo-north",
        ),
        (
            "admin (generalize)",
            PartnerKind::Admin,
            Relationship::None,
            Action::List,
            "admin",
        ),
        (
            "evaluator export (pseudonymize)",
            PartnerKind::Evaluator,
            Relationship::None,
            Action::Export,
            "demo-study",
        ),
    ] {
        let input = question(kind, relationship, action, Resource::Referral, None);
        let decision = policy.decide(&input);
        let partner = crosswalk::domain::PartnerId::parse(audience).expect("a partner id");
        let shaper = if kind == PartnerKind::Evaluator {
            FieldShaper::for_study(&pseudonyms, audience)
        } else {
            FieldShaper::for_partner(&pseudonyms, &partner)
        };
        let started = Instant::now();
        for _ in 0..SHAPING_ROUNDS {
            for record in &records {
                black_box(release_view(&decision, record, &shaper).expect("allowed"));
            }
        }
        let per_thousand = started.elapsed() / u32::try_from(SHAPING_ROUNDS).expect("small");
        println!(
            "shape {RECORDS} records, {label:<32} {:>8.3} ms  ({:.0} records/s)",
            micros(per_thousand) / 1000.0,
            per_second(RECORDS, per_thousand)
        );
    }
}

/// A spread of questions: every kind on its usual routes, with and without
/// consent, on a Part 2 record and not.
fn questions() -> Vec<DecisionInput> {
    let mut inputs = Vec::new();
    for (kind, relationship) in [
        (PartnerKind::Police, Relationship::Submitter),
        (PartnerKind::Cbo, Relationship::AssignedCbo),
        (PartnerKind::Health, Relationship::LinkedHealth),
        (PartnerKind::Evaluator, Relationship::None),
        (PartnerKind::Admin, Relationship::None),
    ] {
        for resource in [Resource::Referral, Resource::Outcome, Resource::CaseStatus] {
            for action in [Action::Read, Action::List, Action::Export] {
                for consent in [None, Some(kind)] {
                    inputs.push(question(kind, relationship, action, resource, consent));
                }
            }
        }
    }
    inputs
}

fn question(
    kind: PartnerKind,
    relationship: Relationship,
    action: Action,
    resource: Resource,
    consent_for: Option<PartnerKind>,
) -> DecisionInput {
    let purpose = match kind {
        PartnerKind::Evaluator => "HRESCH",
        PartnerKind::Admin => "HOPERAT",
        _ => "CAREMGT",
    };
    DecisionInput {
        requester: Requester {
            id: format!("{kind}-1"),
            kind,
        },
        purpose: purpose.parse().expect("purpose"),
        action,
        resource,
        relationship,
        record: RecordFacts {
            part2: consent_for.is_some(),
            holder: Some("holder-1".to_owned()),
        },
        consent: consent_for.map(|kind| ConsentScope {
            id: "c-1".into(),
            recipients: vec![kind.as_str().to_owned()],
            purposes: vec![purpose.parse().expect("purpose")],
            classes: crosswalk::policy::FieldClass::ALL.to_vec(),
            part2_recipients: vec![format!("{kind}-1")],
            discloser: "holder-1".to_owned(),
        }),
        study: None,
    }
}

/// A synthetic referral with every catalog field.
fn referral(i: usize) -> serde_json::Value {
    json!({
        "id": format!("r-{i}"),
        "workflow_state": "open",
        "status": "contacted",
        "created_at": "2026-03-14T09:30:00Z",
        "submitted_by": "pd",
        "assigned_cbo": "cbo-north",
        "subject_pseudonym": format!("cwp-subject{i:08}"),
        "cad_number": format!("CAD-2026-{i:06}"),
        "officer_id": "4471",
        "subject": {
            "given_name": "Jane",
            "surname": "Doe",
            "dob": "1987-03-14",
            "sex": "F",
            "address": {"street": "1428 Elm Street", "city": "Sacramento", "state": "CA", "zip": "95814"},
            "phone": "+19165550142",
            "email": "jane@example.org",
        },
        "contact_at": "2026-03-14T08:55:00Z",
        "district": "3",
        "arrested": false,
        "circumstances": "seen at the bus shelter; asked for a callback after 4pm",
        "resources": ["homelessness", "mental_health"],
        "follow_up_by": "cbo",
    })
}

fn report(label: &str, latencies: &mut [Duration], cpu: Option<Duration>) {
    latencies.sort_unstable();
    let total: Duration = latencies.iter().sum();
    let percentile = |p: usize| micros(latencies[(latencies.len() - 1) * p / 100]);
    let cpu = cpu.map_or_else(String::new, |cpu| {
        format!("  (cpu {:.1} µs)", micros(cpu) / count(latencies.len()))
    });
    println!(
        "{label:<34} {:>12.0} decisions/s  {:>8.1} µs/decision  p50 {:.1} µs  p99 {:.1} µs{cpu}",
        per_second(latencies.len(), total),
        micros(total) / count(latencies.len()),
        percentile(50),
        percentile(99),
    );
}

/// The CPU time this thread has run, where the kernel says (Linux).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn per_second(n: usize, elapsed: Duration) -> f64 {
    count(n) / elapsed.as_secs_f64()
}

/// Counts here are far below 2^52, where `f64` stops being exact.
fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).expect("a count below 2^32"))
}
