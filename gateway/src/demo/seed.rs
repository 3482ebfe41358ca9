//! The demo's synthetic history: who was referred when, what the CBOs found,
//! what county health reported — planned from a fixed seed, then written through
//! the [`Exchange`] exactly as the HTTP handlers write it (same checks, same
//! sealing, same linkage, one transaction with its audit entry each).
//!
//! # What is planned
//! - [`PEOPLE`] generated people ([`crate::linkage::synth`]), each referred once by
//!   `pd`, and [`REPEATS`] more referrals of people already in the set — some with
//!   one field mistyped, some without a date of birth — so that linkage shows.
//! - For each referral, a follow-up path by its assigned CBO (routing decides which:
//!   districts `south`, `d4`, `d5` and victim services go to `cbo-south`, the rest
//!   to `cbo-north`), from "nothing yet" to `service_connected` then `closed`.
//!   Referrals received in the last [`QUEUE_DAYS`] days have no outcome yet: they
//!   are what a CBO's queue shows.
//! - For about a third of those people, and [`HEALTH_ONLY`] people police never
//!   met, a `county-health` case with one to four status reports; about a third
//!   in `substance_use` (42 CFR Part 2).
//!
//! Every date lies in the [`DAYS`] days before "now", and everything is drawn from
//! one RNG seeded with [`SEED`], so the demo looks the same each time, shifted
//! to the day it is run.
//!
//! # Obviously fake
//! The generator draws realistic names and addresses (that is its job for the
//! linkage bench), so [`obviously_fake`] marks every person: surnames end in
//! `-Demo`, email addresses are at the reserved `example.*` domains (RFC 2606)
//! and phone numbers are in the fictional `555-01xx` range. Nothing here prints
//! an identity.

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use super::DemoClock;
use crate::domain::PartnerId;
use crate::exchange::vocabulary::{Code as _, ResourceCategory};
use crate::exchange::{Exchange, ReferralReceipt, Submission, Submitted, Tolerance};
use crate::linkage::synth;
use crate::normalize::IdentityInput;
use crate::policy::Purpose;

/// The RNG seed of the whole history.
const SEED: u64 = 20_260_601;
/// How far back the history goes.
pub(super) const DAYS: i64 = 90;
/// People referred by police.
const PEOPLE: usize = 220;
/// Further referrals of people already referred.
pub(super) const REPEATS: usize = 80;
/// People known to county health only.
const HEALTH_ONLY: usize = 20;
/// Referrals received this recently are still waiting for follow-up.
const QUEUE_DAYS: i64 = 3;

/// The partners the history is written as (the example registry's ids).
pub(super) const POLICE: &str = "pd";
pub(super) const HEALTH: &str = "county-health";

const DISTRICTS: &[&str] = &["north", "central", "d1", "d2", "d3", "south", "d4", "d5"];

/// Requested resources, most common first (repeated to weight them).
const RESOURCES: &[ResourceCategory] = &[
    ResourceCategory::MentalHealth,
    ResourceCategory::MentalHealth,
    ResourceCategory::MentalHealth,
    ResourceCategory::Homelessness,
    ResourceCategory::Homelessness,
    ResourceCategory::Homelessness,
    ResourceCategory::AlcoholDrug,
    ResourceCategory::AlcoholDrug,
    ResourceCategory::GeneralCommunity,
    ResourceCategory::GeneralCommunity,
    ResourceCategory::DomesticViolence,
    ResourceCategory::YouthServices,
    ResourceCategory::SeniorCitizen,
    ResourceCategory::Veteran,
    ResourceCategory::Nutrition,
    ResourceCategory::CrimeVictim,
    ResourceCategory::LegalServices,
    ResourceCategory::EducationCareer,
    ResourceCategory::NeighborhoodConcerns,
];

/// Circumstances as an officer might summarize them — generic on purpose: free
/// text is sealed, but a demo has no reason to hold anything specific.
const CIRCUMSTANCES: &[&str] = &[
    "Demo: welfare check requested by a neighbor; person asked for help.",
    "Demo: person sleeping outside a business; accepted information on shelters.",
    "Demo: family dispute, no injuries; follow-up by a CBO requested.",
    "Demo: person in distress at a bus stop; calmed down, agreed to a referral.",
    "Demo: repeat noise complaint; resident asked about support services.",
    "Demo: youth out late, parent contacted; family open to programs.",
];

/// Outcome paths; `Service` stands for `service_connected` with one of the
/// referral's resources.
const PATHS: &[(u32, &[&str])] = &[
    (12, &[]),
    (10, &["contact_attempted", "unable_to_locate"]),
    (
        6,
        &["contact_attempted", "contact_attempted", "unable_to_locate"],
    ),
    (10, &["contacted", "declined"]),
    (14, &["contact_attempted", "contacted", "engaged"]),
    (16, &["contacted", "engaged", "service_connected", "closed"]),
    (16, &["contacted", "engaged", "service_connected"]),
    (10, &["contacted", "service_connected", "closed"]),
    (6, &["contact_attempted", "contacted", "closed"]),
];

/// Case status sequences.
const CASE_PATHS: &[&[&str]] = &[
    &["referred", "enrolled", "active"],
    &["referred", "enrolled", "active", "discharged"],
    &["referred", "declined"],
    &["crisis_episode", "referred", "enrolled"],
    &["enrolled", "active"],
];

/// Programs, weighted: about a third substance use.
const PROGRAMS: &[&str] = &[
    "substance_use",
    "substance_use",
    "substance_use",
    "mental_health",
    "mental_health",
    "mental_health",
    "housing",
    "housing",
    "medical",
];

/// One write of the history, at the time it is recorded.
pub(super) struct Planned {
    at: DateTime<Utc>,
    step: Step,
}

enum Step {
    /// Referral number `index`; `clean` is the body without a deliberate typo,
    /// used when the typo made the identity unreadable (a mistyped date).
    Referral {
        index: usize,
        body: Vec<u8>,
        clean: Vec<u8>,
    },
    /// An outcome on referral number `referral`, by whichever CBO it went to.
    Outcome {
        referral: usize,
        body: Vec<u8>,
    },
    Case {
        body: Vec<u8>,
    },
}

/// What was written, for the summary line.
#[derive(Debug, Default)]
pub(super) struct Seeded {
    pub referrals: usize,
    /// Distinct subjects the referrals were linked to at intake.
    pub people: usize,
    pub outcomes: usize,
    pub cases: usize,
}

/// The whole history, in the order it is to be written.
pub(super) fn plan(now: DateTime<Utc>) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let everyone: Vec<IdentityInput> = synth::people(SEED, PEOPLE + HEALTH_ONLY)
        .into_iter()
        .map(|person| obviously_fake(person, &mut rng))
        .collect();
    let start = now - TimeDelta::days(DAYS);
    let mut events = Vec::new();
    let mut first_contact: Vec<Option<DateTime<Utc>>> = vec![None; PEOPLE];

    let mut who: Vec<usize> = (0..PEOPLE).collect();
    who.extend((0..REPEATS).map(|_| rng.random_range(0..PEOPLE)));
    for (index, &person) in who.iter().enumerate() {
        // At least six hours ago, so that the referral is received in the past.
        let contact = start + minutes(rng.random_range(0..(DAYS * 24 - 6) * 60));
        let received = contact + minutes(rng.random_range(5..=180));
        first_contact[person] = Some(first_contact[person].map_or(contact, |c| c.min(contact)));
        let mut identity = everyone[person].clone();
        let clean = identity.clone();
        if index >= PEOPLE && rng.random_bool(0.4) {
            identity = synth::corrupt_one_field(&identity, rng.random());
        }
        let no_dob = rng.random_bool(0.1);
        let resources = pick_resources(&mut rng);
        let mut body = json!({
            "cad_number": format!("DEMO-CAD-{:05}", index + 1),
            "officer_id": format!("DEMO-OFFICER-{:02}", rng.random_range(1..=24)),
            "subject": Value::Null,
            "contact_at": rfc3339(contact),
            "district": DISTRICTS[rng.random_range(0..DISTRICTS.len())],
            "arrested": rng.random_bool(0.08),
            "circumstances": CIRCUMSTANCES[rng.random_range(0..CIRCUMSTANCES.len())],
            "resources": resources.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "follow_up_by": if rng.random_bool(0.9) { "cbo" } else { "officer" },
        });
        body["subject"] = subject_json(&identity, no_dob);
        let typed = body.to_string().into_bytes();
        body["subject"] = subject_json(&clean, no_dob);
        events.push(Planned {
            at: received,
            step: Step::Referral {
                index,
                body: typed,
                clean: body.to_string().into_bytes(),
            },
        });
        if received < now - TimeDelta::days(QUEUE_DAYS) {
            plan_outcomes(&mut rng, &mut events, index, received, &resources, now);
        }
    }

    let mut case_number = 0;
    for (person, identity) in everyone.iter().enumerate() {
        let base = match first_contact.get(person) {
            Some(Some(contact)) if rng.random_bool(0.35) => {
                *contact + TimeDelta::days(rng.random_range(-20..=20))
            }
            Some(_) => continue,
            None => start + minutes(rng.random_range(0..DAYS * 24 * 60)),
        };
        case_number += 1;
        plan_case(
            &mut rng,
            &mut events,
            identity,
            case_number,
            base.max(start),
            now,
        );
    }

    // Stable: a referral and its first outcome never share an instant anyway.
    events.sort_by_key(|event| event.at);
    events
}

fn plan_outcomes(
    rng: &mut StdRng,
    events: &mut Vec<Planned>,
    referral: usize,
    received: DateTime<Utc>,
    resources: &[ResourceCategory],
    now: DateTime<Utc>,
) {
    let path = weighted(rng, PATHS);
    // Timeliness as a program would measure it: many within the hour.
    let mut occurred = received
        + match rng.random_range(0..10) {
            0..=3 => minutes(rng.random_range(10..=60)),
            4..=7 => minutes(rng.random_range(61..=24 * 60)),
            _ => minutes(rng.random_range(24 * 60..=5 * 24 * 60)),
        };
    for kind in path {
        let recorded = occurred + minutes(rng.random_range(0..=30));
        if recorded > now - minutes(10) {
            break; // not happened yet
        }
        let mut body = json!({ "kind": kind, "occurred_at": rfc3339(occurred) });
        if *kind == "service_connected" {
            body["resource"] = json!(resources[rng.random_range(0..resources.len())].as_str());
        }
        if rng.random_bool(0.3) {
            body["notes"] = json!("Demo note: follow-up recorded by the case worker.");
        }
        events.push(Planned {
            at: recorded,
            step: Step::Outcome {
                referral,
                body: body.to_string().into_bytes(),
            },
        });
        occurred = recorded + minutes(rng.random_range(60..=7 * 24 * 60));
    }
}

fn plan_case(
    rng: &mut StdRng,
    events: &mut Vec<Planned>,
    identity: &IdentityInput,
    number: usize,
    mut effective: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    let program = PROGRAMS[rng.random_range(0..PROGRAMS.len())];
    let path = CASE_PATHS[rng.random_range(0..CASE_PATHS.len())];
    for status in path {
        let recorded = effective + minutes(rng.random_range(0..=60));
        if recorded > now - minutes(10) {
            break;
        }
        let body = json!({
            "subject": subject_json(identity, false),
            "case_ref": format!("DEMO-CASE-{number:04}"),
            "program": program,
            "status": status,
            "effective_at": rfc3339(effective),
        });
        events.push(Planned {
            at: recorded,
            step: Step::Case {
                body: body.to_string().into_bytes(),
            },
        });
        effective = recorded + TimeDelta::days(rng.random_range(1..=14));
    }
}

/// Writes `events` in order, the clock pinned to each one's time.
pub(super) async fn seed(
    exchange: &Exchange,
    clock: &DemoClock,
    events: Vec<Planned>,
) -> anyhow::Result<Seeded> {
    let care: Purpose = "CAREMGT"
        .parse()
        .map_err(|_| anyhow::anyhow!("CAREMGT is a purpose code"))?;
    let mut receipts: Vec<Option<ReferralReceipt>> = Vec::new();
    let mut subjects = std::collections::HashSet::new();
    let mut seeded = Seeded::default();
    for event in events {
        clock.pin(event.at);
        match event.step {
            Step::Referral { index, body, clean } => {
                let draft = exchange
                    .check_referral(&body, Tolerance::RefuseRequest)
                    .or_else(|_| exchange.check_referral(&clean, Tolerance::RefuseRequest))
                    .map_err(|invalid| anyhow::anyhow!("demo referral {index}: {invalid}"))?;
                let submitted = exchange
                    .submit(vec![Submission {
                        submitter: PartnerId::stored(POLICE.to_owned()),
                        purpose: care.clone(),
                        draft,
                        claim: None,
                    }])
                    .await?;
                let Some(Ok(Submitted::Created(receipt))) = submitted.into_iter().next() else {
                    anyhow::bail!("demo referral {index} was not written");
                };
                subjects.insert(receipt.subject_pseudonym.clone());
                if receipts.len() <= index {
                    receipts.resize(index + 1, None);
                }
                receipts[index] = Some(receipt);
                seeded.referrals += 1;
            }
            Step::Outcome { referral, body } => {
                let Some(Some(receipt)) = receipts.get(referral) else {
                    anyhow::bail!("demo outcome planned before its referral {referral}");
                };
                exchange
                    .record_outcome(&receipt.assigned_cbo, &care, &receipt.id, &body)
                    .await
                    .map_err(|e| anyhow::anyhow!("demo outcome on referral {referral}: {e}"))?;
                seeded.outcomes += 1;
            }
            Step::Case { body } => {
                exchange
                    .record_case(&PartnerId::stored(HEALTH.to_owned()), &care, &body)
                    .await
                    .map_err(|e| anyhow::anyhow!("demo case report: {e}"))?;
                seeded.cases += 1;
            }
        }
    }
    seeded.people = subjects.len();
    Ok(seeded)
}

/// Marks a generated person as fake beyond doubt (see the module docs).
fn obviously_fake(mut person: IdentityInput, rng: &mut StdRng) -> IdentityInput {
    person.surname = person.surname.map(|s| format!("{s}-Demo"));
    person.email = person.email.map(|email| {
        let local = email.split('@').next().unwrap_or("person");
        let domain = ["example.org", "example.com", "example.net"][rng.random_range(0..3)];
        format!("{local}@{domain}")
    });
    person.phone = person.phone.map(|phone| {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let area = digits
            .get(digits.len().saturating_sub(10)..digits.len().saturating_sub(7))
            .unwrap_or("916");
        format!("({area}) 555-01{:02}", rng.random_range(0..100))
    });
    person
}

fn subject_json(person: &IdentityInput, without_dob: bool) -> Value {
    let mut subject = json!({
        "given_name": person.given_name,
        "surname": person.surname,
    });
    let mut set = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            subject[key] = json!(value);
        }
    };
    if !without_dob {
        set("dob", &person.dob);
    }
    set("sex", &person.sex);
    set("phone", &person.phone);
    set("email", &person.email);
    let mut address = serde_json::Map::new();
    for (key, value) in [
        ("street", &person.street),
        ("city", &person.city),
        ("state", &person.state),
        ("zip", &person.zip),
    ] {
        if let Some(value) = value {
            address.insert(key.to_owned(), json!(value));
        }
    }
    if !address.is_empty() {
        subject["address"] = Value::Object(address);
    }
    subject
}

fn pick_resources(rng: &mut StdRng) -> Vec<ResourceCategory> {
    let first = RESOURCES[rng.random_range(0..RESOURCES.len())];
    let mut resources = vec![first];
    if rng.random_bool(0.3) {
        let second = RESOURCES[rng.random_range(0..RESOURCES.len())];
        if second != first {
            resources.push(second);
        }
    }
    resources
}

fn weighted<T: Copy>(rng: &mut StdRng, choices: &[(u32, T)]) -> T {
    let total: u32 = choices.iter().map(|(w, _)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(weight, choice) in choices {
        if x < weight {
            return choice;
        }
        x -= weight;
    }
    choices[choices.len() - 1].1
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

pub(super) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_deterministic_and_in_the_past() {
        let now = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).expect("a valid time");
        let a = plan(now);
        let b = plan(now);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.at == y.at));
        assert!(
            a.iter()
                .all(|e| e.at <= now && e.at >= now - TimeDelta::days(DAYS))
        );
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        let referrals = a
            .iter()
            .filter(|e| matches!(e.step, Step::Referral { .. }))
            .count();
        assert_eq!(referrals, PEOPLE + REPEATS);
    }
}
