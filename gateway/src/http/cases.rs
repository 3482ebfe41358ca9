//! `POST /v1/cases`: a health partner's case status (health only).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::exchange::require_content_type;
use super::problem::Problem;
use crate::config::PartnerKind;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/cases", post(create_case))
}

/// Record a case status for a person the health partner serves (health only).
///
/// The person is linked to referrals by the same keyed tokens; the response is the
/// same whether or not anyone else knows the person. `case_ref` is sealed;
/// `substance_use` cases are flagged 42 CFR Part 2.
#[utoipa::path(post, path = "/v1/cases", tag = "cases",
    security(("partner_token" = [])),
    params(
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    request_body(content = crate::exchange::case::CaseRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded", body = crate::exchange::case::RecordedCase),
        (status = 400, description = "Invalid fields; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a health partner", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_case(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if partner.kind != PartnerKind::Health {
        return Err(ApiError::WrongKind {
            detail: "only health partners record case statuses",
        });
    }
    require_content_type(&headers, &["application/json"])?;
    let recorded = state
        .exchange
        .record_case(&partner.id, &purpose, &body)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(recorded)).into_response())
}
