//! The authentication extractor: a handler that takes an [`AuthenticatedPartner`]
//! argument only runs for a request with a valid partner token.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::{AppState, ConnectionInfo};
use crate::auth::AuthError;
pub use crate::auth::AuthenticatedPartner;

/// A refused token: 401 problem+json with a `WWW-Authenticate` challenge.
#[derive(Debug)]
pub struct Unauthorized(pub AuthError);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED)
            .with_type("unauthorized", "Authentication failed")
            .with_detail(self.0.public_detail())
            .into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="crosswalk", error="invalid_token""#),
        );
        response
    }
}

impl FromRequestParts<AppState> for AuthenticatedPartner {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Unauthorized> {
        let client_cert = parts
            .extensions
            .get::<ConnectionInfo>()
            .and_then(|c| c.client_cert);
        let result = bearer_token(parts)
            .ok_or(AuthError::MissingToken)
            .and_then(|token| state.verifier.verify(token, client_cert.as_ref()));
        match result {
            Ok(partner) => {
                tracing::Span::current().record("partner", partner.id.as_str());
                Ok(partner)
            }
            Err(e) => {
                // The reason is logged; the token never is.
                tracing::warn!(reason = e.reason(), "authentication refused: {e}");
                state.metrics.observe_auth_failure(e.reason());
                Err(Unauthorized(e))
            }
        }
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
