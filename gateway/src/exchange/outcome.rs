//! `POST /v1/referrals/{id}/outcomes`: the assigned CBO reports what its
//! follow-up found, and the referral's status moves (see [`super::status`]).
//!
//! Checks, in this order so that nothing is revealed to the wrong partner:
//! 1. the body (kind, `occurred_at` from the program start to now with the
//!    clock leeway, `resource` only and always with `service_connected`, notes
//!    length) — 400, whoever asks;
//! 2. the referral exists and is assigned to the requester — else 404;
//! 3. `occurred_at` is not before the referral was received by the gateway
//!    (with the clock leeway) — 400 naming `occurred_at`;
//! 4. the referral is not closed — 409.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::input::{self, EventWindow, Invalid};
use super::status::TransitionError;
use super::vocabulary::{Code, OutcomeKind, ReferralStatus, ResourceCategory, WorkflowState};
use super::{ExchangeError, Shared, rfc3339};
use crate::audit::{self, Event};
use crate::domain::PartnerId;
use crate::domain::ids::ReferralId;
use crate::policy::Purpose;
use crate::store::StoreError;
use crate::store::outcomes::{NewOutcome, insert_outcome};
use crate::store::referrals::{lock_referral, set_status};

/// The request body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    #[schema(value_type = OutcomeKind)]
    pub kind: String,
    /// When the follow-up happened (RFC 3339 with an offset): not before
    /// the referral was received, not in the future.
    #[schema(example = "2026-03-15T14:00:00-07:00")]
    pub occurred_at: String,
    /// Required with `service_connected`, refused otherwise.
    #[serde(default)]
    #[schema(value_type = Option<ResourceCategory>)]
    pub resource: Option<String>,
    /// The case worker's notes (sealed; at most 2,000 characters; line
    /// breaks and tabs, no other control characters).
    #[serde(default)]
    #[schema(
        pattern = r"^\s*[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f](?:[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]{0,1998}[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f])?\s*$"
    )]
    pub notes: Option<String>,
}

impl std::fmt::Debug for OutcomeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeRequest")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// An outcome's sealed fields (`outcomes.sealed`, context `outcomes:<id>`).
#[derive(Clone, Serialize, Deserialize)]
pub struct OutcomeSealed {
    pub notes: String,
}

impl std::fmt::Debug for OutcomeSealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutcomeSealed([redacted])")
    }
}

/// The vault context of an outcome's sealed fields.
pub fn sealed_context(outcome_id: &str) -> Vec<u8> {
    format!("outcomes:{outcome_id}").into_bytes()
}

/// What the CBO is told: the outcome and where the referral now stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordedOutcome {
    pub id: String,
    pub referral_id: String,
    pub kind: OutcomeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceCategory>,
    pub occurred_at: String,
    /// The referral's status after this outcome.
    pub status: ReferralStatus,
    pub workflow_state: WorkflowState,
}

struct CheckedOutcome {
    kind: OutcomeKind,
    resource: Option<ResourceCategory>,
    occurred_at: DateTime<Utc>,
    notes: Option<String>,
}

fn check(body: &[u8], window: EventWindow) -> Result<CheckedOutcome, Invalid> {
    let request: OutcomeRequest = input::parse_json(body)?;
    let mut invalid = Invalid::default();
    let kind = input::code::<OutcomeKind>(&mut invalid, "kind", &request.kind);
    let occurred_at = input::event_time(&mut invalid, "occurred_at", &request.occurred_at, window);
    let resource = request
        .resource
        .as_deref()
        .and_then(|r| input::code::<ResourceCategory>(&mut invalid, "resource", r));
    match (kind, &request.resource) {
        (Some(OutcomeKind::ServiceConnected), None) => {
            invalid.push("resource", "is required when kind is service_connected");
        }
        (Some(kind), Some(_)) if kind != OutcomeKind::ServiceConnected => {
            invalid.push("resource", "is only given when kind is service_connected");
        }
        _ => {}
    }
    let notes = request
        .notes
        .as_deref()
        .and_then(|n| input::free_text(&mut invalid, "notes", n));
    match (kind, occurred_at) {
        (Some(kind), Some(occurred_at)) if invalid.is_empty() => Ok(CheckedOutcome {
            kind,
            resource,
            occurred_at,
            notes,
        }),
        _ => Err(invalid),
    }
}

pub(super) async fn record(
    shared: &Shared,
    partner: &PartnerId,
    purpose: &Purpose,
    referral_id: &ReferralId,
    body: &[u8],
) -> Result<RecordedOutcome, ExchangeError> {
    let clock = &*shared.clock;
    let now = clock.now();
    let leeway = shared.leeway();
    let checked = check(body, shared.event_window(now))?;
    let mut tx = shared.store.begin().await?;
    // Dropping `tx` on any early return rolls the lock back.
    let referral = lock_referral(&mut tx, referral_id)
        .await?
        .filter(|r| r.assigned_cbo == partner)
        .ok_or(ExchangeError::NotFound)?;
    if checked.occurred_at.timestamp_micros()
        < referral.created_at - leeway.num_microseconds().unwrap_or(0)
    {
        return Err(Invalid::field("occurred_at", "is before the referral was made").into());
    }
    let status = ReferralStatus::parse(&referral.status).ok_or(StoreError::Corrupt {
        what: "referrals.status is not a known status",
    })?;
    let next = status
        .after(checked.kind)
        .map_err(|TransitionError::Closed(closed)| {
            ExchangeError::Conflict(format!(
                "the referral is closed ({closed}); a closed referral takes no more outcomes"
            ))
        })?;

    let id = shared.ids.next(now);
    let sealed = match &checked.notes {
        None => None,
        Some(notes) => {
            let plain = Zeroizing::new(
                serde_json::to_vec(&OutcomeSealed {
                    notes: notes.clone(),
                })
                .unwrap_or_default(),
            );
            Some(
                shared
                    .vault
                    .seal(&mut tx, &sealed_context(&id), &plain, clock)
                    .await?
                    .into_bytes(),
            )
        }
    };
    let at = now.timestamp_micros();
    insert_outcome(
        &mut tx,
        &NewOutcome {
            id: id.clone(),
            referral_id: referral.id.clone(),
            recorded_by: partner.as_str().to_owned(),
            kind: checked.kind.as_str(),
            resource: checked.resource.map(Code::as_str),
            occurred_at: checked.occurred_at.timestamp_micros(),
            created_at: at,
            sealed,
        },
    )
    .await?;
    set_status(
        &mut tx,
        &referral.id,
        next.as_str(),
        next.workflow_state().as_str(),
        at,
    )
    .await?;
    let event = Event::new(partner, "outcome.create")
        .with_purpose(purpose.as_str())
        .with_record("outcome", &id)
        .with_subject(&referral.subject_id)
        .with_detail(serde_json::json!({ "referral_id": referral.id }));
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    Ok(RecordedOutcome {
        id,
        referral_id: referral.id,
        kind: checked.kind,
        resource: checked.resource,
        occurred_at: rfc3339(checked.occurred_at.timestamp_micros()),
        status: next,
        workflow_state: next.workflow_state(),
    })
}
