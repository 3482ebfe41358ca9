//! A police referral: the request body, its checks, and the draft the intake
//! writes.
//!
//! Required: `subject.given_name`, `subject.surname`, `contact_at`, `district`
//! and `resources` (at least one category). Everything else is optional. The CAD
//! number, the officer id and the circumstances are sealed together into the
//! referral row ([`ReferralSealed`]); the person's identifiers go to the subject
//! registry, which seals them into the identity row.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input::{self, EventWindow, Invalid, MAX_DISTRICT_CHARS, MAX_RESOURCES};
use super::routing::{self, Assignment};
use super::subject::{CheckedSubject, SubjectRequest, Tolerance};
use super::vocabulary::{FollowUpBy, ResourceCategory};
use crate::config::Config;
use crate::normalize::NormalizeOptions;

/// `POST /v1/referrals` (and each line of `POST /v1/referrals/batch`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferralRequest {
    /// CAD call or report number (sealed; at most 64 characters, no control
    /// characters).
    #[serde(default)]
    #[schema(
        pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?\s*$"
    )]
    pub cad_number: Option<String>,
    /// The referring officer's identifier (sealed; like `cad_number`).
    #[serde(default)]
    #[schema(
        pattern = r"^\s*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?\s*$"
    )]
    pub officer_id: Option<String>,
    #[serde(deserialize_with = "input::object")]
    pub subject: SubjectRequest,
    /// When the police contact happened (RFC 3339 with an offset): not
    /// before `exchange.program_start`, not in the future. The pattern admits
    /// whole months in that range (see `/openapi.json`'s note on dates).
    #[schema(example = "2026-03-14T09:30:00-07:00")]
    pub contact_at: String,
    /// Police district or beat code: 1-32 letters, digits, ` `, `-`, `_`, `.`.
    #[schema(
        example = "south",
        pattern = r"^\s*[A-Za-z0-9._-](?:[A-Za-z0-9 ._-]{0,30}[A-Za-z0-9._-])?\s*$"
    )]
    pub district: String,
    #[serde(default)]
    pub arrested: Option<bool>,
    /// Brief description of the circumstances (sealed; at most 2,000
    /// characters; line breaks and tabs, no other control characters).
    #[serde(default)]
    #[schema(
        pattern = r"^\s*[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f](?:[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]{0,1998}[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f])?\s*$"
    )]
    pub circumstances: Option<String>,
    /// One to 20 resource categories, each once.
    #[schema(value_type = Vec<ResourceCategory>, min_items = 1, max_items = 20)]
    pub resources: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Option<FollowUpBy>)]
    pub follow_up_by: Option<String>,
    /// A CBO partner id; without it the routing rules choose.
    #[serde(default)]
    #[schema(pattern = r"^[a-z0-9-]{1,64}$", example = "cbo-north")]
    pub assign_to: Option<String>,
}

impl std::fmt::Debug for ReferralRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReferralRequest([redacted])")
    }
}

/// The referral's own sensitive fields, sealed as one JSON object into
/// `referrals.sealed` under the context `referrals:<id>`. Read it back with
/// `serde_json::from_slice` after unsealing.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralSealed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cad_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub officer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circumstances: Option<String>,
}

impl std::fmt::Debug for ReferralSealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReferralSealed([redacted])")
    }
}

impl ReferralSealed {
    pub fn is_empty(&self) -> bool {
        self.cad_number.is_none() && self.officer_id.is_none() && self.circumstances.is_none()
    }
}

/// The vault context of a referral's sealed fields.
pub fn sealed_context(referral_id: &str) -> Vec<u8> {
    format!("referrals:{referral_id}").into_bytes()
}

/// A checked referral, ready to be written. Holds identifiers: its `Debug` does not
/// print them.
#[derive(Clone)]
pub struct ReferralDraft {
    pub subject: CheckedSubject,
    pub contact_at: DateTime<Utc>,
    pub district: String,
    pub arrested: Option<bool>,
    pub resources: Vec<ResourceCategory>,
    pub follow_up_by: Option<FollowUpBy>,
    pub sealed: ReferralSealed,
    pub assignment: Assignment,
}

impl std::fmt::Debug for ReferralDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferralDraft")
            .field("resources", &self.resources)
            .field("assignment", &self.assignment)
            .finish_non_exhaustive()
    }
}

/// What checking a referral needs from the gateway.
pub struct CheckContext<'a> {
    pub config: &'a Config,
    pub normalize: NormalizeOptions,
    /// What a subject field that does not normalize costs.
    pub tolerance: Tolerance,
    /// Where `contact_at` may fall: from the program start to now.
    pub window: EventWindow,
}

/// Reads and checks a referral body; every problem found is reported.
pub fn check(body: &[u8], cx: &CheckContext<'_>) -> Result<ReferralDraft, Invalid> {
    let request: ReferralRequest = input::parse_json(body)?;
    let mut invalid = Invalid::default();

    let subject = request
        .subject
        .check(&mut invalid, &cx.normalize, cx.tolerance);
    let contact_at = input::event_time(&mut invalid, "contact_at", &request.contact_at, cx.window);
    let district = check_district(&mut invalid, &request.district);
    let resources = check_resources(&mut invalid, &request.resources);
    let follow_up_by = request
        .follow_up_by
        .as_deref()
        .and_then(|v| input::code::<FollowUpBy>(&mut invalid, "follow_up_by", v));
    let sealed = ReferralSealed {
        cad_number: request
            .cad_number
            .as_deref()
            .and_then(|v| input::reference(&mut invalid, "cad_number", v)),
        officer_id: request
            .officer_id
            .as_deref()
            .and_then(|v| input::reference(&mut invalid, "officer_id", v)),
        circumstances: request
            .circumstances
            .as_deref()
            .and_then(|v| input::free_text(&mut invalid, "circumstances", v)),
    };
    // Routing needs valid resources and district; an explicit CBO is checked
    // whatever else is wrong, so that every problem is reported at once.
    let assignment = if let (Some(resources), Some(district)) = (&resources, &district) {
        routing::route(
            cx.config,
            request.assign_to.as_deref(),
            resources,
            district,
            None,
        )
        .map_err(|e| invalid.push("assign_to", e.problem()))
        .ok()
    } else {
        if let Some(cbo) = request.assign_to.as_deref()
            && !routing::is_active_cbo(cx.config, cbo)
        {
            invalid.push("assign_to", routing::RoutingError::NotAnActiveCbo.problem());
        }
        None
    };
    match (subject, contact_at, district, resources, assignment) {
        (Some(subject), Some(contact_at), Some(district), Some(resources), Some(assignment))
            if invalid.is_empty() =>
        {
            Ok(ReferralDraft {
                subject,
                contact_at,
                district,
                arrested: request.arrested,
                resources,
                follow_up_by,
                sealed,
                assignment,
            })
        }
        _ => Err(invalid),
    }
}

/// A district is a code, not free text: a restricted alphabet keeps names and
/// addresses out of a column that is stored in the clear.
fn check_district(invalid: &mut Invalid, value: &str) -> Option<String> {
    let district = value.trim();
    let ok = !district.is_empty()
        && district.chars().count() <= MAX_DISTRICT_CHARS
        && district
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if ok {
        Some(district.to_owned())
    } else {
        invalid.push(
            "district",
            format!(
                "must be a district code: 1-{MAX_DISTRICT_CHARS} letters, digits, spaces, '-', '_' or '.'"
            ),
        );
        None
    }
}

fn check_resources(invalid: &mut Invalid, values: &[String]) -> Option<Vec<ResourceCategory>> {
    if values.is_empty() {
        invalid.push("resources", "must list at least one resource category");
        return None;
    }
    if values.len() > MAX_RESOURCES {
        invalid.push(
            "resources",
            format!("lists more than {MAX_RESOURCES} categories"),
        );
        return None;
    }
    let before = invalid.errors.len();
    let mut resources = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let field = format!("resources[{i}]");
        if let Some(category) = input::code::<ResourceCategory>(invalid, &field, value) {
            if resources.contains(&category) {
                invalid.push(field, "is listed twice");
            } else {
                resources.push(category);
            }
        }
    }
    (invalid.errors.len() == before).then_some(resources)
}
