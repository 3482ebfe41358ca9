//! Consents: `POST /v1/consents`, `GET /v1/consents/{id}` (JSON, or HL7 FHIR
//! R4 `Consent` with `Accept: application/fhir+json`) and
//! `POST /v1/consents/{id}/revoke`. Thin: the checks and the write are in
//! [`crate::exchange::consent`], the read in [`crate::reads`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::exchange::require_content_type;
use super::problem::Problem;
use super::query::RecordPath;
use crate::config::PartnerKind;
use crate::domain::ids::ConsentId;
use crate::exchange::consent::ConsentRecord;

/// The media type of a FHIR resource in JSON.
pub const FHIR_JSON: &str = "application/fhir+json";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/consents", post(create_consent))
        .route("/v1/consents/{id}", get(read_consent))
        .route("/v1/consents/{id}/revoke", post(revoke_consent))
}

/// Record a person's consent (a CBO on its assigned referral, a health
/// partner on its own case).
///
/// The consent attaches to the person, so it follows them to every linked
/// record. Recipients are partner kinds (`police`, `cbo`, `health`) or partner
/// ids; classes are the catalog's field classes; a consent covering
/// `substance_use` needs the 42 CFR Part 2 elements (`part2`). The answer is
/// the same whether or not anyone else knows the person.
#[utoipa::path(post, path = "/v1/consents", tag = "consents",
    security(("partner_token" = [])),
    params(
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    request_body(content = crate::exchange::consent::ConsentRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded: the consent's fields (id, referral_id or case_id, recipients, purposes, classes, method, recorded_by, discloser, period_start, period_end, evidence_hash, revoked_at, part2)", body = ConsentRecord),
        (status = 400, description = "Invalid fields (including a referral or case this partner may not use); nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a CBO or health partner", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_consent(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let partner = &caller.partner;
    if !matches!(partner.kind, PartnerKind::Cbo | PartnerKind::Health) {
        return Err(ApiError::WrongKind {
            detail: "only CBOs and health partners record consents",
        });
    }
    require_content_type(&headers, &["application/json"])?;
    let row = state
        .exchange
        .record_consent(&partner.id, partner.kind, &caller.purpose, &body)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(ConsentRecord::of(&row))).into_response())
}

/// Revoke a consent (the partner that recorded it). Takes effect on the next
/// request; a second revocation is 409.
#[utoipa::path(post, path = "/v1/consents/{id}/revoke", tag = "consents",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    responses(
        (status = 200, description = "Revoked: the consent with `revoked_at`", body = ConsentRecord),
        (status = 400, description = "The purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent, or not one this partner recorded", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn revoke_consent(
    State(state): State<AppState>,
    caller: Caller,
    RecordPath(id): RecordPath<ConsentId>,
) -> Result<Response, ApiError> {
    let row = state
        .exchange
        .revoke_consent(&caller.partner.id, &caller.purpose, &id)
        .await?;
    Ok(axum::Json(ConsentRecord::of(&row)).into_response())
}

/// Whether the client asked for FHIR (`Accept: application/fhir+json`).
fn wants_fhir(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(FHIR_JSON))
        })
}

/// Read a consent: its recorder and administrators (as the policy decides).
///
/// JSON with the catalog's field names, or an HL7 FHIR R4 `Consent` resource
/// with `Accept: application/fhir+json` (see docs/api.md, "Consents", for the mapping). A
/// consent the partner may not see is a 404 like an unknown id. The read is
/// recorded as a disclosure.
#[utoipa::path(get, path = "/v1/consents/{id}", tag = "consents",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id"),
        ("Accept" = Option<String>, Header, description = "application/fhir+json for a FHIR R4 Consent"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT (HOPERAT for an admin)"),
    ),
    responses(
        (status = 200, description = "The released fields, or a FHIR Consent", content(
            (super::openapi_views::ReleasedConsent = "application/json"),
            (super::openapi_views::FhirConsent = "application/fhir+json"),
        )),
        (status = 400, description = "The purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such consent, or none this partner may see", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn read_consent(
    State(state): State<AppState>,
    caller: Caller,
    RecordPath(id): RecordPath<ConsentId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let consent = state.reads.read_consent(&caller.asker(), &id).await?;
    if wants_fhir(&headers) {
        let mut response = axum::Json(consent.fhir).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        Ok(response)
    } else {
        Ok(axum::Json(consent.view).into_response())
    }
}
