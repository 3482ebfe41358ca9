//! `POST /v1/referrals/{id}/assignment`: a referral moves to another CBO.
//!
//! Two partners may move it:
//! - the **assigned CBO**, declining the assignment (it cannot take the person:
//!   capacity, service area, ...). This is not an outcome — the person has not
//!   declined anything — so the status stays as it is;
//! - an **admin**, re-routing it.
//!
//! Anyone else gets 404, as for outcomes. The body names a `reason` code and
//! optionally `assign_to`; without it the routing rules choose again, never
//! picking the CBO the referral is leaving. A closed referral is not moved (409).
//! The move is recorded in `referral_assignments` (from, to, cause, route,
//! reason, who, when) and audited as `referral.reassign`, in one transaction.
//! With it the person's identity moves to the new CBO, in that CBO's own
//! cluster ([`crate::subjects::SubjectRegistry::hand_to_cbo`]): its pseudonym
//! of the person groups only the referrals assigned to it.

use serde::{Deserialize, Serialize};

use super::input::{self, Invalid};
use super::routing::{self, RoutingError};
use super::vocabulary::{
    Code as _, ReassignReason, ReferralStatus, ResourceCategory, WorkflowState,
};
use super::{ExchangeError, Shared};
use crate::audit::{self, Event};
use crate::auth::AuthenticatedPartner;
use crate::config::PartnerKind;
use crate::domain::ids::ReferralId;
use crate::policy::Purpose;
use crate::store::StoreError;
use crate::store::referrals::{NewAssignment, insert_assignments, lock_referral, set_assigned_cbo};

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRequest {
    #[schema(value_type = ReassignReason)]
    pub reason: String,
    /// The CBO to move it to; without it the routing rules choose.
    #[serde(default)]
    #[schema(pattern = r"^[a-z0-9-]{1,64}$")]
    pub assign_to: Option<String>,
}

/// Where the referral went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reassigned {
    pub id: String,
    pub assigned_cbo: String,
    /// `explicit`, `rule` or `default`: how the new CBO was chosen.
    pub route: String,
}

pub(super) async fn reassign(
    shared: &Shared,
    partner: &AuthenticatedPartner,
    purpose: &Purpose,
    referral_id: &ReferralId,
    body: &[u8],
) -> Result<Reassigned, ExchangeError> {
    let cause = match partner.kind {
        PartnerKind::Cbo => "declined",
        PartnerKind::Admin => "admin",
        _ => return Err(ExchangeError::NotFound),
    };
    let request: AssignmentRequest = input::parse_json(body)?;
    let mut invalid = Invalid::default();
    let reason = input::code::<ReassignReason>(&mut invalid, "reason", &request.reason);
    let Some(reason) = reason.filter(|_| invalid.is_empty()) else {
        return Err(invalid.into());
    };
    let clock = &*shared.clock;
    let now = clock.now();
    let mut tx = shared.store.begin().await?;
    let referral = lock_referral(&mut tx, referral_id)
        .await?
        .filter(|r| partner.kind == PartnerKind::Admin || r.assigned_cbo == *partner.id)
        .ok_or(ExchangeError::NotFound)?;
    let status = ReferralStatus::parse(&referral.status).ok_or(StoreError::Corrupt {
        what: "referrals.status is not a known status",
    })?;
    if status.workflow_state() == WorkflowState::Closed {
        return Err(ExchangeError::Conflict(format!(
            "the referral is closed ({status}); a closed referral is not reassigned"
        )));
    }
    if request.assign_to.as_deref() == Some(referral.assigned_cbo.as_str()) {
        return Err(Invalid::field("assign_to", "is the CBO the referral is assigned to").into());
    }
    let resources: Vec<ResourceCategory> =
        serde_json::from_str(&referral.resources).map_err(|_| StoreError::Corrupt {
            what: "referrals.resources is not a list of categories",
        })?;
    let assignment = routing::route(
        &shared.config,
        request.assign_to.as_deref(),
        &resources,
        &referral.district,
        Some(&referral.assigned_cbo),
    )
    .map_err(|e| match e {
        RoutingError::NotAnActiveCbo => Invalid::field("assign_to", e.problem()).into(),
        RoutingError::NoRoute => ExchangeError::Conflict(
            "no other active CBO is routed to for this referral: name one in assign_to".to_owned(),
        ),
    })?;

    let at = now.timestamp_micros();
    set_assigned_cbo(&mut tx, &referral.id, &assignment.cbo, at).await?;
    shared
        .registry
        .hand_to_cbo(&mut tx, &referral.identity_id, &assignment.cbo, clock)
        .await?;
    insert_assignments(
        &mut tx,
        &[NewAssignment {
            id: shared.ids.next(now),
            referral_id: referral.id.clone(),
            from_cbo: Some(referral.assigned_cbo.clone()),
            to_cbo: assignment.cbo.clone(),
            cause,
            route: assignment.route.as_str(),
            rule_index: assignment
                .route
                .rule_index()
                .and_then(|r| i64::try_from(r).ok()),
            reason: Some(reason.as_str()),
            assigned_by: partner.id.to_string(),
            at,
        }],
    )
    .await?;
    let event = Event::new(&partner.id, "referral.reassign")
        .with_purpose(purpose.as_str())
        .with_record("referral", &referral.id)
        .with_subject(&referral.subject_id)
        .with_detail(serde_json::json!({
            "from": referral.assigned_cbo,
            "to": assignment.cbo,
            "cause": cause,
            "reason": reason.as_str(),
        }));
    audit::append(&mut tx, &[event], clock).await?;
    tx.commit().await?;
    Ok(Reassigned {
        id: referral.id,
        assigned_cbo: assignment.cbo,
        route: assignment.route.as_str().to_owned(),
    })
}
