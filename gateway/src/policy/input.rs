//! What a decision is about: the policy's `input` document, typed.
//!
//! [`DecisionInput`] serializes to exactly the JSON `policies/README.md`
//! describes, and is the decision cache's key: two requests with equal inputs get
//! the same decision, which is what lets a list of a thousand records of one shape
//! cost one evaluation. So it holds only what the policy may look at — never a
//! record's identifiers, only facts about the record (`record.part2`, the partner
//! that holds it), and of the
//! consent on file only its scope (the consent's id rides along for the caller's
//! audit entry but is neither shown to the policy nor part of the key).

use serde::{Deserialize, Serialize};

use super::catalog::FieldClass;
use super::resources::Resource;
use crate::domain::PartnerKind;
pub use crate::domain::purpose::{InvalidPurpose, Purpose};

/// The policy's input document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    pub requester: Requester,
    pub purpose: Purpose,
    pub action: Action,
    pub resource: Resource,
    /// Absent means `none`, as in the policy.
    #[serde(default)]
    pub relationship: Relationship,
    pub record: RecordFacts,
    /// The active consent on file for the subject (in period, not revoked), if
    /// any: revoked and expired consents are never passed.
    #[serde(default)]
    pub consent: Option<ConsentScope>,
    /// For an export: what the study it is made for allows beyond the
    /// ordinary (absent everywhere else, and from the input document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study: Option<StudyFacts>,
}

/// What an export's study allows that the policy has to know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyFacts {
    /// The study is configured for 42 CFR Part 2 research under an agreement
    /// of its own, in force (42 CFR 2.52): its evaluator may receive
    /// substance-use records.
    pub part2_research: bool,
}

/// Who asks: from the registry, never from a token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requester {
    pub id: String,
    pub kind: PartnerKind,
}

/// What the requester wants to do with the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    List,
    Aggregate,
    Export,
}

impl Action {
    pub const ALL: [Self; 4] = [Self::Read, Self::List, Self::Aggregate, Self::Export];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Aggregate => "aggregate",
            Self::Export => "export",
        }
    }
}

/// The requester's relationship to the record.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    /// It submitted (or recorded) the record.
    Submitter,
    /// It is the CBO the referral is assigned to.
    AssignedCbo,
    /// It is the health partner linked to the record's subject.
    LinkedHealth,
    #[default]
    None,
}

impl Relationship {
    pub const ALL: [Self; 4] = [
        Self::Submitter,
        Self::AssignedCbo,
        Self::LinkedHealth,
        Self::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitter => "submitter",
            Self::AssignedCbo => "assigned_cbo",
            Self::LinkedHealth => "linked_health",
            Self::None => "none",
        }
    }
}

/// Facts about the record that change the decision, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFacts {
    /// The record carries 42 CFR Part 2 (substance-use program) information.
    pub part2: bool,
    /// The partner that holds the record: the police partner that submitted a
    /// referral, the CBO that recorded an outcome, the health partner that
    /// submitted a case status, the recorder of a consent. A consent opens only
    /// records whose holder is its discloser; `None` (an audit entry, a
    /// question about a whole table) is held by no partner, so no consent opens
    /// it.
    #[serde(default)]
    pub holder: Option<String>,
}

impl RecordFacts {
    /// A record held by `holder`.
    pub fn held_by(holder: &str, part2: bool) -> Self {
        Self {
            part2,
            holder: Some(holder.to_owned()),
        }
    }
}

/// An active consent on file: its id, for the caller's audit entry, and what it
/// covers, for the policy.
///
/// The policy sees only the scope: `id` is not serialized into the input
/// document, and equality and hashing ignore it. So the decision cannot depend
/// on which consent it is, only on what it covers, and the decision cache
/// shares one decision between every consent with the same scope (a police list
/// of a thousand outcomes under a thousand consents costs one evaluation per
/// distinct scope, not a thousand). A caller that gets a decision with
/// [`Decision::consent_used`](super::Decision::consent_used) records this `id`
/// with the disclosure itself ([`Decision::consent_to_record`](super::Decision::consent_to_record)).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentScope {
    /// The consent's id. Never shown to the policy; accepted (and ignored) in
    /// an input document, so that `crosswalk policy eval` reads one that has it.
    #[serde(default, skip_serializing)]
    pub id: String,
    /// Partner ids and/or partner kinds.
    pub recipients: Vec<String>,
    pub purposes: Vec<Purpose>,
    pub classes: Vec<FieldClass>,
    /// Partner ids named under 42 CFR Part 2 (empty if none).
    #[serde(default)]
    pub part2_recipients: Vec<String>,
    /// The partner whose records the consent opens (its recorder). The
    /// policy uses the consent only on a record whose `holder` this is.
    pub discloser: String,
}

impl ConsentScope {
    /// Everything the policy sees, which is everything but the id. Destructured
    /// field by field, so that a field added to the struct is a compile error
    /// here until someone decides whether the policy sees it (and so whether
    /// the cache key must include it).
    fn scope(&self) -> (&[String], &[Purpose], &[FieldClass], &[String], &str) {
        let Self {
            id: _,
            recipients,
            purposes,
            classes,
            part2_recipients,
            discloser,
        } = self;
        (recipients, purposes, classes, part2_recipients, discloser)
    }
}

impl PartialEq for ConsentScope {
    fn eq(&self, other: &Self) -> bool {
        self.scope() == other.scope()
    }
}

impl Eq for ConsentScope {}

impl std::hash::Hash for ConsentScope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.scope().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn serializes_to_the_contract_document() {
        let input = DecisionInput {
            requester: Requester {
                id: "cbo-north".into(),
                kind: PartnerKind::Cbo,
            },
            purpose: "CAREMGT".parse().expect("purpose"),
            action: Action::Read,
            resource: Resource::CaseStatus,
            relationship: Relationship::AssignedCbo,
            record: RecordFacts::held_by("county-health", true),
            consent: Some(ConsentScope {
                id: "c-1".into(),
                recipients: vec!["cbo".into()],
                purposes: vec!["CAREMGT".parse().expect("purpose")],
                classes: vec![FieldClass::SubstanceUse],
                part2_recipients: vec!["cbo-north".into()],
                discloser: "county-health".into(),
            }),
            study: None,
        };
        let expected = json!({
            "requester": {"id": "cbo-north", "kind": "cbo"},
            "purpose": "CAREMGT",
            "action": "read",
            "resource": "case_status",
            "relationship": "assigned_cbo",
            "record": {"part2": true, "holder": "county-health"},
            "consent": {"recipients": ["cbo"], "purposes": ["CAREMGT"],
                        "classes": ["substance_use"], "part2_recipients": ["cbo-north"],
                        "discloser": "county-health"},
        });

        assert_eq!(
            serde_json::to_value(&input).expect("serializes"),
            expected,
            "the consent's id never reaches the policy"
        );
        let back: DecisionInput = serde_json::from_value(expected).expect("parses");
        assert_eq!(back, input);
        assert_eq!(back.consent.expect("consent").id, "", "no id given");
        let mut with_id = serde_json::to_value(&input).expect("serializes");
        with_id["consent"]["id"] = json!("c-9");
        let back: DecisionInput = serde_json::from_value(with_id).expect("an id is accepted");
        assert_eq!(back.consent.expect("consent").id, "c-9");
    }

    #[test]
    fn consents_compare_and_hash_by_scope_not_by_id() {
        use std::hash::BuildHasher as _;
        let scope = |id: &str, classes: Vec<FieldClass>| ConsentScope {
            id: id.into(),
            recipients: vec!["police".into()],
            purposes: vec!["CAREMGT".parse().expect("purpose")],
            classes,
            part2_recipients: Vec::new(),
            discloser: "cbo-north".into(),
        };
        let a = scope("c-1", vec![FieldClass::Health]);
        let b = scope("c-2", vec![FieldClass::Health]);
        let wider = scope("c-1", vec![FieldClass::Health, FieldClass::Operational]);
        let elsewhere = ConsentScope {
            discloser: "county-health".into(),
            ..a.clone()
        };

        assert_eq!(a, b);
        let state = std::hash::RandomState::new();
        assert_eq!(state.hash_one(&a), state.hash_one(&b));
        assert_ne!(a, wider);
        assert_ne!(a, elsewhere, "whose records it opens is part of the scope");
    }

    #[test]
    fn parsing_is_strict() {
        let base = json!({
            "requester": {"id": "pd", "kind": "police"}, "purpose": "CAREMGT",
            "action": "read", "resource": "referral", "relationship": "submitter",
            "record": {"part2": false, "holder": "pd"}, "consent": null,
        });
        assert!(serde_json::from_value::<DecisionInput>(base.clone()).is_ok());
        let mut no_relationship = base.clone();
        no_relationship
            .as_object_mut()
            .expect("object")
            .remove("relationship");
        let parsed: DecisionInput = serde_json::from_value(no_relationship).expect("parses");
        assert_eq!(parsed.relationship, Relationship::None, "absent means none");
        for (key, bad) in [
            ("purpose", json!("caremgt")),
            ("action", json!("delete")),
            ("resource", json!("referrals")),
            ("relationship", json!("friend")),
            ("requester", json!({"id": "pd", "kind": "sheriff"})),
            ("extra", json!(1)),
        ] {
            let mut input = base.clone();
            input[key] = bad;
            assert!(
                serde_json::from_value::<DecisionInput>(input).is_err(),
                "{key}"
            );
        }
    }
}
