//! The policy's answer, typed and checked.
//!
//! `data.crosswalk.decision` is parsed strictly: an unknown effect or field action,
//! a missing or extra key, a field the catalog does not name (or a catalog field
//! an `allow` forgets), a consent used when none is on file, notices or a consent
//! on a decision that releases nothing, or substance-use information released
//! without a notice — each is an error, and an error is a
//! deny (see [`super::Policy::decide`]). A policy bug therefore withholds; it never
//! releases.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::catalog::{FieldClass, ResourcePlan};
use super::input::DecisionInput;

/// What may be released at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Record-level release, field by field.
    Allow,
    /// Only counts (with suppression) computed by the gateway.
    AggregateOnly,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::AggregateOnly => "aggregate_only",
            Self::Deny => "deny",
        }
    }
}

/// What happens to one field of a released record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAction {
    Release,
    Pseudonymize,
    Generalize,
    Withhold,
}

impl FieldAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Pseudonymize => "pseudonymize",
            Self::Generalize => "generalize",
            Self::Withhold => "withhold",
        }
    }
}

/// A checked decision. Only the policy engine makes one (the catalog plan is
/// private), so a `Decision` in hand always came from a loaded, checked bundle:
///
/// ```compile_fail
/// use crosswalk::policy::{Decision, Effect};
/// let forged = Decision {
///     effect: Effect::Allow,
///     fields: Default::default(),
///     reason: String::new(),
///     notices: Vec::new(),
///     consent_used: false,
///     policy_version: "forged".into(),
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    /// For `allow`, every catalog field of the resource; empty otherwise.
    pub fields: BTreeMap<String, FieldAction>,
    pub reason: String,
    /// Notices every release under this decision carries (e.g. the 42 CFR Part 2
    /// redisclosure notice).
    pub notices: Vec<String>,
    /// The consent on file opened record-level data (a consent route released
    /// something, or a substance-use field was released under a Part 2 consent):
    /// the caller records that consent's id with the disclosure
    /// ([`Decision::consent_to_record`]). A flag, not the id, so that one decision
    /// serves every consent with the same scope.
    pub consent_used: bool,
    /// The bundle that decided: recorded with every disclosure.
    pub policy_version: Arc<str>,
    /// The resource's catalog entries, for shaping: how `generalize` and
    /// `pseudonymize` treat each field.
    #[serde(skip)]
    pub(super) plan: Arc<ResourcePlan>,
}

/// The raw document, exactly as the contract describes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    effect: Effect,
    fields: BTreeMap<String, FieldAction>,
    reason: String,
    notices: Vec<String>,
    consent_used: bool,
}

impl Decision {
    /// Parses and checks the policy's output for `input`.
    pub(super) fn parse(
        output: serde_json::Value,
        input: &DecisionInput,
        plan: &Arc<ResourcePlan>,
        policy_version: &Arc<str>,
    ) -> Result<Self, String> {
        let raw: RawDecision = serde_json::from_value(output)
            .map_err(|e| format!("data.crosswalk.decision is malformed: {e}"))?;
        if raw.reason.trim().is_empty() {
            return Err("data.crosswalk.decision has an empty reason".to_owned());
        }
        match raw.effect {
            Effect::Allow => check_fields(&raw, plan, input)?,
            // Nothing is released, so there is nothing for a notice to travel
            // with and no consent was used.
            Effect::AggregateOnly | Effect::Deny
                if !raw.fields.is_empty() || !raw.notices.is_empty() || raw.consent_used =>
            {
                return Err(format!(
                    "data.crosswalk.decision: {} must not list fields or notices, or use a consent",
                    raw.effect.as_str()
                ));
            }
            Effect::AggregateOnly | Effect::Deny => {}
        }
        if raw.consent_used && input.consent.is_none() {
            return Err(
                "data.crosswalk.decision: consent_used without a consent on file".to_owned(),
            );
        }
        Ok(Self {
            effect: raw.effect,
            fields: raw.fields,
            reason: raw.reason,
            notices: raw.notices,
            consent_used: raw.consent_used,
            policy_version: Arc::clone(policy_version),
            plan: Arc::clone(plan),
        })
    }

    /// The deny that stands in for a decision that could not be made.
    pub(super) fn fail_closed(
        reason: &str,
        plan: &Arc<ResourcePlan>,
        policy_version: &Arc<str>,
    ) -> Self {
        Self {
            effect: Effect::Deny,
            fields: BTreeMap::new(),
            reason: reason.to_owned(),
            notices: Vec::new(),
            consent_used: false,
            policy_version: Arc::clone(policy_version),
            plan: Arc::clone(plan),
        }
    }

    /// Whether a record-level view may be produced.
    pub fn allows_records(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The id of the consent to record with a disclosure under this decision:
    /// the consent on file in `input` (the question this decision answered),
    /// when the decision says it opened record-level data.
    pub fn consent_to_record<'a>(&self, input: &'a DecisionInput) -> Option<&'a str> {
        self.consent_used
            .then_some(input.consent.as_ref())
            .flatten()
            .map(|consent| consent.id.as_str())
    }

    /// The fields released in some form (not withheld), for the audit entry.
    pub fn disclosed_fields(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(|(_, action)| **action != FieldAction::Withhold)
            .map(|(name, _)| name.as_str())
    }
}

/// An `allow` names every catalog field of the resource and nothing else, and
/// releases substance-use information only with a notice.
fn check_fields(
    raw: &RawDecision,
    plan: &ResourcePlan,
    input: &DecisionInput,
) -> Result<(), String> {
    if let Some(extra) = raw
        .fields
        .keys()
        .find(|name| !plan.fields.contains_key(name.as_str()))
    {
        return Err(format!(
            "data.crosswalk.decision names {}.{extra}, which the catalog does not",
            plan.resource
        ));
    }
    if let Some(missing) = plan
        .fields
        .keys()
        .find(|name| !raw.fields.contains_key(**name))
    {
        return Err(format!(
            "data.crosswalk.decision allows {} but gives {missing} no action",
            plan.resource
        ));
    }
    // On a record flagged Part 2, every health field counts as substance-use
    // information (the contract states it for case status; the baseline applies
    // it to every resource, and so does this check).
    let part2_record = input.record.part2;
    let releases_part2 = raw.fields.iter().any(|(name, action)| {
        *action == FieldAction::Release
            && plan.fields.get(name.as_str()).is_some_and(|entry| {
                entry.class == FieldClass::SubstanceUse
                    || (part2_record && entry.class == FieldClass::Health)
            })
    });
    if releases_part2 && raw.notices.is_empty() {
        return Err(
            "data.crosswalk.decision releases substance-use information without a notice"
                .to_owned(),
        );
    }
    Ok(())
}
