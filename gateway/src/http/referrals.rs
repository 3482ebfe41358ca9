//! `POST /v1/referrals` (police), `POST /v1/referrals/{id}/outcomes` (the
//! assigned CBO) and `POST /v1/referrals/{id}/assignment` (the assigned CBO
//! declining, or an admin). The batch route is in `referrals_batch`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::AppState;
use super::caller::Caller;
use super::error::{ApiError, Place};
use super::exchange::{IDEMPOTENCY_HEADER, REPLAYED_HEADER, require_content_type};
use super::problem::Problem;
use super::query::RecordPath;
use crate::config::PartnerKind;
use crate::domain::ids::ReferralId;
use crate::exchange::idempotency::IdempotencyKeys;
use crate::exchange::{ReferralReceipt, Submission, SubmitError, Submitted, Tolerance};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/referrals", post(create_referral))
        .route("/v1/referrals/{id}/outcomes", post(create_outcome))
        .route("/v1/referrals/{id}/assignment", post(reassign))
}

const JSON: &[&str] = &["application/json"];

/// Submit one outreach referral (police only).
///
/// Checks, normalizes and seals the referral, links the person, routes it to a CBO
/// and answers with the police partner's own pseudonym for the person. With an
/// `Idempotency-Key`, a retry with the same body returns the first response
/// (with `Idempotent-Replayed: true`) and never makes a second referral; the same
/// key with another body is refused (409).
#[utoipa::path(post, path = "/v1/referrals", tag = "referrals",
    security(("partner_token" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "1-255 visible ASCII characters; scoped to the partner"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    request_body(content = crate::exchange::referral::ReferralRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created (or replayed)", body = ReferralReceipt),
        (status = 400, description = "Invalid fields; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a police partner", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_referral(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if partner.kind != PartnerKind::Police {
        return Err(ApiError::WrongKind {
            detail: "only police partners submit referrals",
        });
    }
    let key = idempotency_key(&headers)?;
    require_content_type(&headers, JSON)?;
    let draft = state
        .exchange
        .check_referral(&body, Tolerance::RefuseRequest)?;
    let claim = key.map(|key| state.exchange.claim(&partner.id, key.as_bytes(), &body));
    let mut results = state
        .exchange
        .submit(vec![Submission {
            submitter: partner.id,
            purpose,
            draft,
            claim,
        }])
        .await?;
    match results.pop() {
        Some(Ok(Submitted::Created(receipt))) => Ok(created(&receipt, false)),
        Some(Ok(Submitted::Replayed(receipt))) => Ok(created(&receipt, true)),
        Some(Err(SubmitError::KeyReused)) => Err(ApiError::conflict(
            "this Idempotency-Key was used with a different body; use a new key for a new referral",
        )),
        Some(Err(SubmitError::Failed)) | None => Err(ApiError::internal(
            "a referral submission",
            "the intake writer gave no result",
        )),
    }
}

/// The `Idempotency-Key` header, checked.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    IdempotencyKeys::check_key(value.as_bytes())
        .ok()
        .and_then(|()| value.to_str().ok())
        .map(|v| Some(v.to_owned()))
        .ok_or_else(|| {
            ApiError::invalid(
                Place::Body,
                "Idempotency-Key",
                "must be 1-255 visible ASCII characters",
            )
        })
}

fn created(receipt: &ReferralReceipt, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, axum::Json(receipt)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/referrals/{}", receipt.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// Report a follow-up outcome (the referral's assigned CBO only).
///
/// The outcome moves the referral's status up the ladder `new`,
/// `contact_attempted`, `contacted`, `engaged`, `service_connected`; `declined`,
/// `unable_to_locate` and `closed` end it.
/// Any partner other than the assigned CBO gets 404.
#[utoipa::path(post, path = "/v1/referrals/{id}/outcomes", tag = "referrals",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The referral id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    request_body(content = crate::exchange::outcome::OutcomeRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded", body = crate::exchange::outcome::RecordedOutcome),
        (status = 400, description = "Invalid fields; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral assigned to the requester", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The referral is closed", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_outcome(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    RecordPath(id): RecordPath<ReferralId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_content_type(&headers, JSON)?;
    let recorded = state
        .exchange
        .record_outcome(&partner.id, &purpose, &id, &body)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(recorded)).into_response())
}

/// Move a referral to another CBO: the assigned CBO declining it, or an admin.
///
/// Without `assign_to` the routing rules choose again, never the CBO the referral
/// leaves. Recorded in the assignment history and the audit log. Any other
/// partner gets 404.
#[utoipa::path(post, path = "/v1/referrals/{id}/assignment", tag = "referrals",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The referral id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT (HOPERAT for an admin)"),
    ),
    request_body(content = crate::exchange::assignment::AssignmentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Reassigned", body = crate::exchange::assignment::Reassigned),
        (status = 400, description = "Invalid fields; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral the requester may move", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The referral is closed, or no other CBO is routed to", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn reassign(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    RecordPath(id): RecordPath<ReferralId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_content_type(&headers, JSON)?;
    let moved = state
        .exchange
        .reassign(&partner, &purpose, &id, &body)
        .await?;
    Ok(axum::Json(moved).into_response())
}
