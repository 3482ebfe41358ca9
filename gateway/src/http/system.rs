//! Operational endpoints: liveness and readiness (the API description is
//! `http::openapi`'s, metrics have their own listener: `http::metrics`).
//! None of them needs a token, and none reveals a record or a secret.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use super::problem::Problem;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    status: &'static str,
    database: &'static str,
    keys: &'static str,
    /// The version (BLAKE3 of the bundle) of the release policy in force.
    policy_version: String,
}

/// Ready to serve: the database answers and the keys are loaded (they are loaded
/// before the listener opens, so a running gateway always has them).
#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "The database does not answer", body = Problem,
        content_type = "application/problem+json")))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(Readiness {
            status: "ready",
            database: "ok",
            keys: "loaded",
            policy_version: state.policy.version().to_string(),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("the database does not answer")
                .into_response()
        }
    }
}
