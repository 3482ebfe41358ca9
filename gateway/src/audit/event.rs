//! What an audit entry says: the [`Event`] every write and disclosure builds,
//! how a field left the gateway ([`Released`]), and the entries the gateway
//! makes on its own (policy reloads, key rotations). Appending one to the
//! chain is [`super::chain`]'s.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The actor recorded for what the gateway does on its own (checkpoints, reloads
/// on SIGHUP).
pub const GATEWAY_ACTOR: &str = "gateway";
/// The actor recorded for operator commands run from the CLI (key rotation).
pub const OPERATOR_ACTOR: &str = "operator";

/// How a field left the gateway, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Released {
    Released,
    Pseudonymized,
    Generalized,
}

impl Released {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::Pseudonymized => "pseudonymized",
            Self::Generalized => "generalized",
        }
    }
}

/// One thing that happened, to be appended. Build it with [`Event::new`] and the
/// `with_*` methods.
#[derive(Clone, Default, PartialEq)]
pub struct Event {
    pub actor: String,
    pub action: String,
    pub purpose: Option<String>,
    pub resource: Option<String>,
    pub record_id: Option<String>,
    /// The subject's internal reference (never an identifier).
    pub subject_ref: Option<String>,
    /// The fields released and how (empty for writes and refusals).
    pub fields: Vec<(String, Released)>,
    pub policy_version: Option<String>,
    pub reason: Option<String>,
    pub consent_id: Option<String>,
    /// Codes and counts only (e.g. `{"status": 404}`, `{"rows": 1200}`).
    pub detail: Option<serde_json::Value>,
}

impl fmt::Debug for Event {
    // Only the shape: even internal references stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("actor", &self.actor)
            .field("action", &self.action)
            .field("resource", &self.resource)
            .field("fields", &self.fields.len())
            .finish_non_exhaustive()
    }
}

impl Event {
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }

    #[must_use]
    pub fn with_record(
        mut self,
        resource: impl Into<String>,
        record_id: impl Into<String>,
    ) -> Self {
        self.resource = Some(resource.into());
        self.record_id = Some(record_id.into());
        self
    }

    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    #[must_use]
    pub fn with_subject(mut self, subject_ref: impl Into<String>) -> Self {
        self.subject_ref = Some(subject_ref.into());
        self
    }

    #[must_use]
    pub fn with_fields(mut self, fields: Vec<(String, Released)>) -> Self {
        self.fields = fields;
        self
    }

    #[must_use]
    pub fn with_decision(
        mut self,
        policy_version: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        self.policy_version = Some(policy_version.into());
        self.reason = Some(reason.into());
        self
    }

    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    #[must_use]
    pub fn with_consent(mut self, consent_id: impl Into<String>) -> Self {
        self.consent_id = Some(consent_id.into());
        self
    }

    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// The fields a decision releases and how, for a disclosure's entry (withheld
/// fields are not disclosed and not listed).
pub fn released_fields(decision: &crate::policy::Decision) -> Vec<(String, Released)> {
    use crate::policy::FieldAction;
    decision
        .fields
        .iter()
        .filter_map(|(name, action)| {
            let how = match action {
                FieldAction::Release => Released::Released,
                FieldAction::Pseudonymize => Released::Pseudonymized,
                FieldAction::Generalize => Released::Generalized,
                FieldAction::Withhold => return None,
            };
            Some((name.clone(), how))
        })
        .collect()
}

/// The action recorded for a policy reload on SIGHUP.
pub const POLICY_RELOAD_ACTION: &str = "policy.reload";
/// The action recorded for a finished master-key rotation.
pub const KEY_ROTATION_ACTION: &str = "keys.rotate";

/// The entry for a policy reload: `accepted` (a new version is in force),
/// `unchanged`, or `refused` (the previous version stays) with the kind of
/// failure — a code, since the error text names files.
pub fn policy_reload_event(
    outcome: &Result<crate::policy::Reloaded, crate::policy::PolicyError>,
    in_force: &str,
) -> Event {
    use crate::policy::PolicyError;
    let event = Event::new(GATEWAY_ACTOR, POLICY_RELOAD_ACTION).with_resource("policy");
    match outcome {
        Ok(reloaded) if reloaded.previous == reloaded.current => event
            .with_decision(in_force, "unchanged")
            .with_detail(serde_json::json!({"previous_version": &*reloaded.previous})),
        Ok(reloaded) => event
            .with_decision(in_force, "accepted")
            .with_detail(serde_json::json!({"previous_version": &*reloaded.previous})),
        Err(error) => {
            let failure = match error {
                PolicyError::Bundle { .. } => "bundle",
                PolicyError::File { .. } => "file",
                PolicyError::Catalog { .. } => "catalog",
                PolicyError::Decision { .. } => "decision",
                PolicyError::TestsFailed { .. } => "tests_failed",
                _ => "other",
            };
            event
                .with_decision(in_force, "refused")
                .with_detail(serde_json::json!({"failure": failure}))
        }
    }
}

/// The entry for a finished master-key rotation, appended in its final
/// transaction by [`crate::subjects::rotate_keys`].
pub fn key_rotation_event(key_version: i64) -> Event {
    Event::new(OPERATOR_ACTOR, KEY_ROTATION_ACTION)
        .with_resource("master_secret")
        .with_detail(serde_json::json!({"key_version": key_version}))
}
