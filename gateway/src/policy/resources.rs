//! The fields the gateway holds, resource by resource, as the code knows them.
//!
//! The policy bundle's catalog (`data.crosswalk.catalog`) must name exactly these
//! fields: start-up fails if the two disagree (see [`super::catalog`]), so a field
//! added here without a catalog entry — and therefore without a class the policy
//! can reason about — can never be released.
//!
//! Each field also says how it is shaped when a decision asks for it to be
//! generalized or pseudonymized; the catalog's class decides whether the
//! generalization applies (see [`super::release`]).
//!
//! # Adding a field
//! 1. Add it to the resource's list below, with its generalization and pseudonym
//!    kind (most fields: `Generalization::Withhold`, `PseudonymKind::Value`).
//! 2. Add it to `policies/crosswalk/catalog/data.json` with its class, and to the
//!    field list in `policies/CONTRACT.md`.
//! 3. Make sure every `allow` rule of the baseline gives it an action (the decision
//!    must name every catalog field) and run `crosswalk policy test`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of record the gateway holds and a policy decides about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Referral,
    Outcome,
    CaseStatus,
    Consent,
    AuditEntry,
}

impl Resource {
    pub const ALL: [Self; 5] = [
        Self::Referral,
        Self::Outcome,
        Self::CaseStatus,
        Self::Consent,
        Self::AuditEntry,
    ];

    /// The name the policy and the catalog use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Referral => "referral",
            Self::Outcome => "outcome",
            Self::CaseStatus => "case_status",
            Self::Consent => "consent",
            Self::AuditEntry => "audit_entry",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The fields the gateway holds for this resource.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            Self::Referral => REFERRAL,
            Self::Outcome => OUTCOME,
            Self::CaseStatus => CASE_STATUS,
            Self::Consent => CONSENT,
            Self::AuditEntry => AUDIT_ENTRY,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field of a resource: its catalog name (dotted for nested fields) and how it
/// is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    /// What `generalize` does to it, when its catalog class allows (a
    /// quasi-identifier); otherwise `generalize` withholds it.
    pub generalization: Generalization,
    /// What `pseudonymize` computes its replacement from.
    pub pseudonym: PseudonymKind,
}

/// The coarsening `generalize` applies to a quasi-identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generalization {
    /// A date or timestamp becomes its year and month (`2026-03`).
    YearMonth,
    /// A date of birth becomes its year (`1987`).
    Year,
    /// A ZIP code becomes its first three digits (`958`).
    Zip3,
    /// No safe coarser form: `generalize` withholds the field.
    Withhold,
}

/// Which key a pseudonymized value is computed under (all of them keyed BLAKE3
/// under the requester's own key, so two requesters cannot join their values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PseudonymKind {
    /// The value is an internal subject id: it becomes the requester's partner
    /// (or study) pseudonym for that subject, the same value the requester sees
    /// elsewhere for the same person.
    Subject,
    /// The value is a partner id: equal partner ids get equal pseudonyms across
    /// fields and resources, so "who submitted" can be compared with "who
    /// recorded" without revealing either.
    Partner,
    /// The id of a record of this resource: equal ids get equal pseudonyms in
    /// every field that refers to that resource, so a pseudonymized
    /// `outcome.referral_id` still joins the pseudonymized `referral.id`.
    Record(Resource),
    /// Any other value: pseudonymized per field.
    Value,
}

const fn field(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        generalization: Generalization::Withhold,
        pseudonym: PseudonymKind::Value,
    }
}

const fn generalized(name: &'static str, generalization: Generalization) -> FieldSpec {
    FieldSpec {
        name,
        generalization,
        pseudonym: PseudonymKind::Value,
    }
}

const fn partner(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        generalization: Generalization::Withhold,
        pseudonym: PseudonymKind::Partner,
    }
}

const fn record(name: &'static str, of: Resource) -> FieldSpec {
    FieldSpec {
        name,
        generalization: Generalization::Withhold,
        pseudonym: PseudonymKind::Record(of),
    }
}

const fn subject(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        generalization: Generalization::Withhold,
        pseudonym: PseudonymKind::Subject,
    }
}

use Generalization::{Year, YearMonth, Zip3};

/// An outreach referral, as the police submitted it and the CBO follows it up.
const REFERRAL: &[FieldSpec] = &[
    record("id", Resource::Referral),
    field("workflow_state"),
    field("status"),
    generalized("created_at", YearMonth),
    partner("submitted_by"),
    partner("assigned_cbo"),
    field("subject_pseudonym"),
    field("cad_number"),
    field("officer_id"),
    field("subject.given_name"),
    field("subject.surname"),
    generalized("subject.dob", Year),
    field("subject.sex"),
    field("subject.address.street"),
    field("subject.address.city"),
    field("subject.address.state"),
    generalized("subject.address.zip", Zip3),
    field("subject.phone"),
    field("subject.email"),
    generalized("contact_at", YearMonth),
    field("district"),
    field("arrested"),
    field("circumstances"),
    field("resources"),
    field("follow_up_by"),
];

/// A CBO's follow-up outcome for a referral.
const OUTCOME: &[FieldSpec] = &[
    record("id", Resource::Outcome),
    record("referral_id", Resource::Referral),
    partner("recorded_by"),
    field("kind"),
    field("resource"),
    generalized("occurred_at", YearMonth),
    field("notes"),
];

/// A health partner's case status, linked to referrals by pseudonym.
const CASE_STATUS: &[FieldSpec] = &[
    record("id", Resource::CaseStatus),
    partner("submitted_by"),
    field("case_ref"),
    field("program"),
    field("status"),
    generalized("effective_at", YearMonth),
];

/// A recorded consent.
const CONSENT: &[FieldSpec] = &[
    record("id", Resource::Consent),
    record("referral_id", Resource::Referral),
    record("case_id", Resource::CaseStatus),
    field("recipients"),
    field("purposes"),
    field("classes"),
    field("method"),
    partner("recorded_by"),
    partner("discloser"),
    generalized("period_start", YearMonth),
    generalized("period_end", YearMonth),
    field("evidence_hash"),
    generalized("revoked_at", YearMonth),
    field("part2"),
];

/// An entry of the audit log (`subject_ref` is the internal subject reference,
/// never an identifier).
const AUDIT_ENTRY: &[FieldSpec] = &[
    field("seq"),
    generalized("at", YearMonth),
    partner("actor"),
    field("action"),
    field("purpose"),
    field("resource"),
    field("record_id"),
    subject("subject_ref"),
    field("fields"),
    field("policy_version"),
    field("reason"),
    record("consent_id", Resource::Consent),
    field("detail"),
    field("hash"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for resource in Resource::ALL {
            assert_eq!(Resource::from_name(resource.as_str()), Some(resource));
            let names: BTreeSet<_> = resource.fields().iter().map(|f| f.name).collect();
            assert_eq!(names.len(), resource.fields().len(), "{resource}");
        }
        assert_eq!(Resource::from_name("referrals"), None);
    }
}
