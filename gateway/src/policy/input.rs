//! What a decision is about: the policy's `input` document, typed.
//!
//! [`DecisionInput`] serializes to exactly the JSON `policies/CONTRACT.md`
//! describes, and is the decision cache's key: two requests with equal inputs get
//! the same decision, which is what lets a list of a thousand records of one shape
//! cost one evaluation. So it holds only what the policy may look at — never a
//! record's identifiers, only facts about the record (`record.part2`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::catalog::FieldClass;
use super::resources::Resource;
use crate::config::PartnerKind;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFacts {
    /// The record carries 42 CFR Part 2 (substance-use program) information.
    pub part2: bool,
}

/// What an active consent covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentScope {
    pub id: String,
    /// Partner ids and/or partner kinds.
    pub recipients: Vec<String>,
    pub purposes: Vec<Purpose>,
    pub classes: Vec<FieldClass>,
    /// Partner ids named under 42 CFR Part 2 (empty if none).
    #[serde(default)]
    pub part2_recipients: Vec<String>,
}

/// An HL7 `PurposeOfUse` code (`CAREMGT`, `PERFMSR`, ...), from the
/// `X-Purpose-Of-Use` header or the partner's default. Only its form is checked
/// here (2-16 upper-case letters); which codes a requester may use is the policy's
/// decision (`vocabulary.purposes_by_kind`), so adding a purpose needs no code.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Purpose(String);

impl Purpose {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A purpose of use that is not 2-16 upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a purpose of use is an HL7 PurposeOfUse code: 2-16 upper-case letters, e.g. CAREMGT")]
pub struct InvalidPurpose;

impl FromStr for Purpose {
    type Err = InvalidPurpose;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if (2..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidPurpose)
        }
    }
}

impl TryFrom<String> for Purpose {
    type Error = InvalidPurpose;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Purpose> for String {
    fn from(purpose: Purpose) -> Self {
        purpose.0
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Purpose({})", self.0)
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
            record: RecordFacts { part2: true },
            consent: Some(ConsentScope {
                id: "c-1".into(),
                recipients: vec!["cbo".into()],
                purposes: vec!["CAREMGT".parse().expect("purpose")],
                classes: vec![FieldClass::SubstanceUse],
                part2_recipients: vec!["cbo-north".into()],
            }),
        };
        let expected = json!({
            "requester": {"id": "cbo-north", "kind": "cbo"},
            "purpose": "CAREMGT",
            "action": "read",
            "resource": "case_status",
            "relationship": "assigned_cbo",
            "record": {"part2": true},
            "consent": {"id": "c-1", "recipients": ["cbo"], "purposes": ["CAREMGT"],
                        "classes": ["substance_use"], "part2_recipients": ["cbo-north"]},
        });

        assert_eq!(serde_json::to_value(&input).expect("serializes"), expected);
        let back: DecisionInput = serde_json::from_value(expected).expect("parses");
        assert_eq!(back, input);
    }

    #[test]
    fn parsing_is_strict() {
        let base = json!({
            "requester": {"id": "pd", "kind": "police"}, "purpose": "CAREMGT",
            "action": "read", "resource": "referral", "relationship": "submitter",
            "record": {"part2": false}, "consent": null,
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
