//! The authorization matrix: every resource × action × partner kind × purpose ×
//! relationship × consent on file × Part 2 flag, decided by the real bundle in
//! `policies/`, checked against the baseline rules as `policies/README.md`
//! states them, and rendered as `policies/MATRIX.md` — documentation and
//! regression test at once.
//!
//! `UPDATE_MATRIX=1 cargo test -p crosswalk matrix` rewrites the file; without it
//! the test fails when the file is stale. The file shows decisions, not the
//! bundle's version, so it goes stale exactly when a decision changes.
//!
//! Purposes a kind may not declare are checked for every resource, action and
//! relationship with nothing on file (they are denied at the first gate, before
//! consent or Part 2 can matter); permitted purposes are checked in every
//! combination.
//!
//! Each case is decided by both engines (regorus's VM, which the gateway uses,
//! and its interpreter, which the Rego tests run on), which must agree exactly;
//! then the decision is checked against the baseline: the effect, the fields
//! each route must withhold, the §2.32 notices word for word, and
//! `consent_used` exactly when the consent changed what is released. This is
//! the exhaustive check: the Rego tests, which run at every gateway start, keep
//! to one request per rule.

mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;

use super::catalog::{FieldClass, ResourcePlan};
use super::engine::DecisionEngine;
use super::resources::PseudonymKind;
use super::snapshot::Snapshot;
use super::*;
use crate::config::PartnerKind;

const KINDS: [PartnerKind; 5] = [
    PartnerKind::Police,
    PartnerKind::Cbo,
    PartnerKind::Health,
    PartnerKind::Evaluator,
    PartnerKind::Admin,
];

const PURPOSES: [&str; 8] = [
    "TREAT", "ETREAT", "CAREMGT", "PERFMSR", "HOPERAT", "HRESCH", "PUBHLTH", "PATRQT",
];

/// The example partner of each kind.
fn partner_id(kind: PartnerKind) -> &'static str {
    match kind {
        PartnerKind::Police => "pd",
        PartnerKind::Cbo => "cbo-north",
        PartnerKind::Health => "county-health",
        PartnerKind::Evaluator => "evaluator",
        PartnerKind::Admin => "admin",
    }
}

/// The baseline's `vocabulary.purposes_by_kind`.
fn permitted_purposes(kind: PartnerKind) -> &'static [&'static str] {
    match kind {
        PartnerKind::Police => &["CAREMGT", "PERFMSR"],
        PartnerKind::Cbo => &["TREAT", "CAREMGT", "PERFMSR"],
        PartnerKind::Health => &["TREAT", "CAREMGT", "PUBHLTH", "PERFMSR"],
        PartnerKind::Evaluator => &["HRESCH", "PERFMSR"],
        PartnerKind::Admin => &["HOPERAT", "PERFMSR"],
    }
}

/// The consent on file, as far as the decision is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum OnFile {
    Nothing,
    /// A consent naming another kind of partner only.
    AnotherKinds,
    /// A consent naming the requester's kind for every purpose, but covering
    /// only direct identifiers, which never cross between partners: it applies
    /// and opens nothing (the kind's fallback decides).
    IdentifiersOnly,
    /// A consent naming the requester's kind, for every purpose and class.
    Covering,
    /// The same, also naming the requester under 42 CFR Part 2.
    CoveringPart2,
    /// Covering and naming the requester under Part 2 too, but recorded by a
    /// partner other than the record's holder: it opens nothing of this
    /// record (a consent opens only its discloser's records).
    CoveringElsewhere,
}

/// The partner that holds every record of the matrix; its consents are the
/// ones that can open them.
const HOLDER: &str = "holder";

impl OnFile {
    const ALL: [Self; 6] = [
        Self::Nothing,
        Self::AnotherKinds,
        Self::IdentifiersOnly,
        Self::Covering,
        Self::CoveringPart2,
        Self::CoveringElsewhere,
    ];

    fn scope(self, kind: PartnerKind) -> Option<ConsentScope> {
        let recipient = match self {
            Self::Nothing => return None,
            Self::AnotherKinds if kind == PartnerKind::Police => "cbo",
            Self::AnotherKinds => "police",
            Self::IdentifiersOnly
            | Self::Covering
            | Self::CoveringPart2
            | Self::CoveringElsewhere => kind.as_str(),
        };
        Some(ConsentScope {
            id: "c-1".to_owned(),
            recipients: vec![recipient.to_owned()],
            purposes: PURPOSES.iter().map(|p| purpose(p)).collect(),
            classes: if self == Self::IdentifiersOnly {
                vec![FieldClass::DirectIdentifier]
            } else {
                FieldClass::ALL.to_vec()
            },
            part2_recipients: if matches!(self, Self::CoveringPart2 | Self::CoveringElsewhere) {
                vec![partner_id(kind).to_owned()]
            } else {
                Vec::new()
            },
            discloser: if self == Self::CoveringElsewhere {
                "elsewhere".to_owned()
            } else {
                HOLDER.to_owned()
            },
        })
    }

    /// The consent opens record-level data on the consent routes.
    fn applies(self) -> bool {
        matches!(self, Self::Covering | Self::CoveringPart2)
    }
}

fn purpose(code: &str) -> Purpose {
    code.parse().expect("a valid purpose code")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Case {
    resource: Resource,
    kind: PartnerKind,
    relationship: Relationship,
    action: Action,
    purpose: &'static str,
    on_file: OnFile,
    part2: bool,
}

/// Cases sort by resource, then kind in [`KINDS`] order, then the rest.
fn kind_rank(kind: PartnerKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len())
}

impl Ord for Case {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |c: &Self| {
            (
                c.resource,
                kind_rank(c.kind),
                c.relationship,
                c.action,
                c.purpose,
                c.on_file,
                c.part2,
            )
        };
        key(self).cmp(&key(other))
    }
}

impl PartialOrd for Case {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Case {
    fn input(&self) -> DecisionInput {
        DecisionInput {
            requester: Requester {
                id: partner_id(self.kind).to_owned(),
                kind: self.kind,
            },
            purpose: purpose(self.purpose),
            action: self.action,
            resource: self.resource,
            relationship: self.relationship,
            record: RecordFacts::held_by(HOLDER, self.part2),
            consent: self.on_file.scope(self.kind),
            study: None,
        }
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for resource in Resource::ALL {
        for kind in KINDS {
            for relationship in Relationship::ALL {
                for action in Action::ALL {
                    for purpose in PURPOSES {
                        let permitted = permitted_purposes(kind).contains(&purpose);
                        for on_file in OnFile::ALL {
                            for part2 in [false, true] {
                                if permitted || (on_file == OnFile::Nothing && !part2) {
                                    cases.push(Case {
                                        resource,
                                        kind,
                                        relationship,
                                        action,
                                        purpose,
                                        on_file,
                                        part2,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    cases
}

/// The effect the baseline rules (policies/README.md) give `case`.
fn expected_effect(case: &Case) -> Effect {
    use Effect::{AggregateOnly, Allow, Deny};
    use PartnerKind::{Admin, Cbo, Evaluator, Health, Police};
    use Relationship::{AssignedCbo, LinkedHealth, Submitter};
    use Resource::{AuditEntry, CaseStatus, Consent, Outcome, Referral};

    let record_resource = matches!(case.resource, Referral | Outcome | CaseStatus);
    if !permitted_purposes(case.kind).contains(&case.purpose) {
        return Deny;
    }
    if case.action == Action::Aggregate {
        return if record_resource { AggregateOnly } else { Deny };
    }
    if case.action == Action::Export && case.kind != Evaluator {
        return Deny;
    }
    // Every consent here covers every purpose and class, so one that names the
    // requester always opens some field.
    let consent = case.on_file.applies();
    let effect = match (case.kind, case.resource, case.relationship) {
        (Police, Referral, Submitter)
        | (Cbo, Referral, AssignedCbo)
        | (Cbo, Outcome, AssignedCbo | Submitter)
        | (Cbo | Health, Consent | AuditEntry, Submitter)
        | (Health, CaseStatus, LinkedHealth | Submitter)
        | (Admin, _, _) => Allow,
        (Police, Outcome | CaseStatus, _) => {
            if consent {
                Allow
            } else {
                AggregateOnly
            }
        }
        (Cbo, CaseStatus, _) | (Health, Referral | Outcome | CaseStatus, _) if consent => Allow,
        (Evaluator, _, _) if case.action == Action::Export && record_resource => Allow,
        (_, AuditEntry | Consent | Referral | Outcome | CaseStatus, _) => Deny,
    };
    // A Part 2 record is released whole or is absent: the kind's fallback
    // answers unless a Part 2 consent names the (non-police) requester and the
    // route releases every substance-use field (an export withholds them), or
    // it is the program's own record.
    let whole_part2 = own_program_record(case)
        || (case.on_file == OnFile::CoveringPart2
            && case.kind != Police
            && !(case.kind == Evaluator && case.action == Action::Export));
    if effect == Allow && case.part2 && record_resource && !whole_part2 {
        if case.kind == Police && matches!(case.resource, Outcome | CaseStatus) {
            AggregateOnly
        } else {
            Deny
        }
    } else {
        effect
    }
}

/// A field's class for this record: health is substance use on a Part 2 record.
fn effective_class(plan: &ResourcePlan, field: &str, part2: bool) -> FieldClass {
    let class = plan.fields[field].class;
    if part2 && class == FieldClass::Health {
        FieldClass::SubstanceUse
    } else {
        class
    }
}

/// Whether `case` is one of the routes where only a consent opens the record.
fn consent_route(case: &Case) -> bool {
    use PartnerKind::{Cbo, Health, Police};
    use Relationship::{LinkedHealth, Submitter};
    match (case.kind, case.resource) {
        (Police, Resource::Outcome | Resource::CaseStatus)
        | (Cbo, Resource::CaseStatus)
        | (Health, Resource::Referral | Resource::Outcome) => true,
        (Health, Resource::CaseStatus) => !matches!(case.relationship, LinkedHealth | Submitter),
        _ => false,
    }
}

/// The §2.32 texts, from the bundle's vocabulary.
struct Notices {
    redisclosure: String,
    /// With `%s` for the recipient and the consent's purposes.
    scope: String,
}

impl Notices {
    fn read() -> Self {
        let path = bundle_dir().join("crosswalk/vocabulary/data.json");
        let text = std::fs::read_to_string(path).expect("the vocabulary");
        let vocabulary: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let notice = |key: &str| {
            vocabulary["notices"][key]
                .as_str()
                .expect("a notice text")
                .to_owned()
        };
        Self {
            redisclosure: notice("part2_redisclosure"),
            scope: notice("part2_consent_scope"),
        }
    }

    /// Both texts, as a disclosure under the matrix's consent carries them.
    fn under_consent(&self, case: &Case) -> Vec<String> {
        let mut purposes = PURPOSES.to_vec();
        purposes.sort_unstable();
        let scope = self
            .scope
            .replacen("%s", partner_id(case.kind), 1)
            .replacen("%s", &purposes.join(", "), 1);
        vec![self.redisclosure.clone(), scope]
    }
}

/// Whether `case` is a Part 2 program's own record coming back to it (not a
/// disclosure under 42 CFR Part 2): a health partner's case status it
/// submitted.
fn own_program_record(case: &Case) -> bool {
    (case.kind, case.resource, case.relationship)
        == (
            PartnerKind::Health,
            Resource::CaseStatus,
            Relationship::Submitter,
        )
}

/// The field-level rules of the baseline an `allow` must respect.
fn check_fields(
    case: &Case,
    decision: &Decision,
    plan: &ResourcePlan,
    notices: &Notices,
) -> Vec<String> {
    let mut problems = Vec::new();
    let withheld = |field: &str| decision.fields.get(field) == Some(&FieldAction::Withhold);
    let discloses_part2 = decision.fields.iter().any(|(field, action)| {
        *action != FieldAction::Withhold
            && effective_class(plan, field, case.part2) == FieldClass::SubstanceUse
    });
    if discloses_part2 {
        if own_program_record(case) {
            if decision.notices != [notices.redisclosure.clone()] {
                problems.push(
                    "its own Part 2 record must come back with the redisclosure statement only"
                        .to_owned(),
                );
            }
        } else {
            if case.kind == PartnerKind::Police || case.on_file != OnFile::CoveringPart2 {
                problems.push(
                    "substance use disclosed without a Part 2 consent naming a non-police requester"
                        .to_owned(),
                );
            }
            if decision.notices != notices.under_consent(case) {
                problems.push(format!(
                    "substance use disclosed without both §2.32 notices: {:?}",
                    decision.notices
                ));
            }
        }
    } else if !decision.notices.is_empty() {
        problems.push("notices without substance-use information".to_owned());
    }
    for (field, action) in &decision.fields {
        // An internal subject id never leaves the gateway as it is.
        if plan.fields[field.as_str()].spec.pseudonym == PseudonymKind::Subject
            && *action == FieldAction::Release
        {
            problems.push(format!(
                "{field}: the internal subject id released as it is"
            ));
        }
    }
    for field in decision.fields.keys() {
        let class = effective_class(plan, field, case.part2);
        let never = match (case.kind, case.resource, case.action) {
            (
                PartnerKind::Admin,
                Resource::Referral | Resource::Outcome | Resource::CaseStatus,
                _,
            ) => [FieldClass::DirectIdentifier, FieldClass::FreeText].contains(&class),
            (PartnerKind::Evaluator, _, Action::Export) => [
                FieldClass::DirectIdentifier,
                FieldClass::FreeText,
                FieldClass::Justice,
            ]
            .contains(&class),
            _ => consent_route(case) && class == FieldClass::DirectIdentifier,
        };
        if never && !withheld(field) {
            problems.push(format!(
                "{field} must be withheld: no identities on this route"
            ));
        }
    }
    match (case.kind, case.resource) {
        (PartnerKind::Cbo, Resource::Referral) => {
            for field in ["cad_number", "officer_id", "arrested", "circumstances"] {
                if !withheld(field) {
                    problems.push(format!("{field} must be withheld from CBOs"));
                }
            }
        }
        (PartnerKind::Police, Resource::Referral) if !withheld("status") => {
            problems.push("status must be withheld from police".to_owned());
        }
        _ => {}
    }
    problems
}

fn bundle_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A decision, or why none could be made.
type Decided = Result<Decision, String>;

/// Whether the consent on file opened record-level data in `case`: the same
/// question with nothing on file got other fields (or no record-level view).
fn consent_opened(case: &Case, decision: &Decision, decided: &BTreeMap<Case, Decision>) -> bool {
    let without = Case {
        on_file: OnFile::Nothing,
        ..*case
    };
    case.on_file != OnFile::Nothing
        && decision.effect == Effect::Allow
        && decided
            .get(&without)
            .is_none_or(|other| other.fields != decision.fields)
}

#[test]
fn the_authorization_matrix_matches_the_baseline_and_matrix_md() {
    let snapshot = Snapshot::load_without_rego_tests(&bundle_dir()).expect("the bundle loads");
    assert_eq!(
        snapshot.engine(),
        DecisionEngine::Vm,
        "the baseline must be decided by the VM (the cold-decision target depends on it)"
    );
    let notices = Notices::read();
    let cases = cases();

    // Every case on both engines: they must agree exactly.
    let decisions: Vec<(Case, Decided, Decided)> = cases
        .par_iter()
        .map(|case| {
            let input = case.input();
            (
                *case,
                snapshot.evaluate_with(DecisionEngine::Vm, &input),
                snapshot.evaluate_with(DecisionEngine::Interpreter, &input),
            )
        })
        .collect();

    let mut problems = Vec::new();
    let mut decided = BTreeMap::new();
    for (case, by_vm, by_interpreter) in decisions {
        if by_vm != by_interpreter {
            problems.push(format!(
                "{case:?}: the engines disagree: vm {by_vm:?}, interpreter {by_interpreter:?}"
            ));
        }
        let decision = match by_interpreter {
            Ok(decision) => decision,
            Err(e) => {
                problems.push(format!("{case:?}: {e}"));
                continue;
            }
        };
        let expected = expected_effect(&case);
        if decision.effect != expected {
            problems.push(format!(
                "{case:?}: {} where the baseline says {} ({})",
                decision.effect.as_str(),
                expected.as_str(),
                decision.reason
            ));
        } else if decision.effect == Effect::Allow {
            let plan = snapshot.catalog_plan(case.resource);
            for problem in check_fields(&case, &decision, plan, &notices) {
                problems.push(format!("{case:?}: {problem}"));
            }
        }
        decided.insert(case, decision);
    }
    // The decision names the consent as used exactly when it opened something.
    for (case, decision) in &decided {
        if decision.consent_used != consent_opened(case, decision, &decided) {
            problems.push(format!(
                "{case:?}: consent_used is {} but the consent {} record-level data",
                decision.consent_used,
                if decision.consent_used {
                    "opened no"
                } else {
                    "opened"
                }
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} disagreements, first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    // The checks above are not vacuous: the matrix reaches every effect, and
    // allows with and without notices and a consent, in each combination.
    let seen: std::collections::BTreeSet<(Effect, bool, bool)> = decided
        .values()
        .map(|d| (d.effect, !d.notices.is_empty(), d.consent_used))
        .collect();
    for reached in [
        (Effect::Deny, false, false),
        (Effect::AggregateOnly, false, false),
        (Effect::Allow, false, false),
        (Effect::Allow, false, true),
        (Effect::Allow, true, false),
        (Effect::Allow, true, true),
    ] {
        assert!(
            seen.contains(&reached),
            "the matrix never reaches {reached:?}"
        );
    }

    let markdown = render::render(&decided, &snapshot);
    let path = bundle_dir().join("MATRIX.md");
    if std::env::var_os("UPDATE_MATRIX").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &markdown).expect("write MATRIX.md");
    } else {
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == markdown,
            "policies/MATRIX.md is stale: run `UPDATE_MATRIX=1 cargo test -p crosswalk matrix` and review the diff"
        );
    }
}
