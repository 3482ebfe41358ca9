//! `POST /v1/exports`, `GET /v1/exports/{id}` and `GET /v1/exports/{id}/manifest`:
//! an evaluator's de-identified study exports (see [`crate::exports`]).
//!
//! Thin: authenticate, purpose of use, then the export service checks, records
//! and starts the job. An export the partner did not request is a 404 like a
//! missing one; one still being built is a 409 naming its state.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::exchange::require_content_type;
use super::problem::Problem;
use super::query::RecordPath;
use crate::domain::ids::ExportId;
use crate::exports::{Manifest, Requesting, Started};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/exports", post(create_export))
        .route("/v1/exports/{id}", get(export_file))
        .route("/v1/exports/{id}/manifest", get(export_manifest))
}

/// Start a de-identified export of a study (the study's evaluator only).
///
/// Checks the study (its evaluator, its data-use agreement, its purpose), the
/// release policy (`export`), the tables, the format and that the range holds
/// referrals, records the request, and builds the file in the background:
/// poll `GET /v1/exports/{id}/manifest` until it answers 200.
#[utoipa::path(post, path = "/v1/exports", tag = "exports",
    security(("partner_token" = [])),
    params(
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default HRESCH; must be the study's purpose"),
    ),
    request_body(content = crate::exports::ExportRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Recorded; the file is being built", body = Started),
        (status = 400, description = "Invalid fields (study, from, to, tables[i], format); nothing made", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another evaluator's study, an expired data-use agreement (or Part 2 research agreement), another purpose, or refused by the policy", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The study's mode, quasi-identifiers or k changed since its exports were planned; nothing made", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No referral in the date range; nothing made", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_export(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_content_type(&headers, &["application/json"])?;
    let who = Requesting {
        partner: &caller.partner.id,
        kind: caller.partner.kind,
        purpose: &caller.purpose,
    };
    let started = state.exports.start(who, &body).await?;
    let mut response = (StatusCode::ACCEPTED, axum::Json(&started)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/exports/{}", started.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Download the age-encrypted export (`age -d -i KEY`; a ZIP inside).
#[utoipa::path(get, path = "/v1/exports/{id}", tag = "exports",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The export id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; checked for form only"),
    ),
    responses(
        (status = 200, description = "The age-encrypted ZIP (application/octet-stream)", content_type = "application/octet-stream"),
        (status = 404, description = "No such export for this partner", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still being built, or failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn export_file(
    State(state): State<AppState>,
    // Its purpose is checked like every read's, though the export's purpose
    // was fixed when it was requested.
    caller: Caller,
    RecordPath(id): RecordPath<ExportId>,
) -> Result<Response, ApiError> {
    let path = state.exports.file(&caller.partner.id, &id).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal("opening an export file", e))?;
    let length = file.metadata().await.map(|m| m.len()).ok();
    // Streamed from disk: the response never holds the file in memory.
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"{id}.zip.age\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(response)
}

/// The signed manifest and its claims.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ManifestBody {
    /// Compact JWS (`EdDSA`) over the manifest, signed with the gateway's key
    /// (`GET /.well-known/crosswalk-signing-key`); verify it with any JWT library.
    pub jws: String,
    /// The signed claims, decoded for convenience: trust them only from `jws`.
    pub manifest: Manifest,
}

/// The export's manifest, signed by the gateway.
#[utoipa::path(get, path = "/v1/exports/{id}/manifest", tag = "exports",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The export id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; checked for form only"),
    ),
    responses(
        (status = 200, description = "The signed manifest", body = ManifestBody),
        (status = 404, description = "No such export for this partner", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still being built, or failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn export_manifest(
    State(state): State<AppState>,
    caller: Caller,
    RecordPath(id): RecordPath<ExportId>,
) -> Result<axum::Json<ManifestBody>, ApiError> {
    let jws = state.exports.manifest(&caller.partner.id, &id).await?;
    let manifest = jws
        .split('.')
        .nth(1)
        .and_then(|payload| {
            data_encoding::BASE64URL_NOPAD
                .decode(payload.as_bytes())
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok())
        .ok_or_else(|| {
            ApiError::internal("reading a stored manifest", "its payload does not decode")
        })?;
    Ok(axum::Json(ManifestBody { jws, manifest }))
}
