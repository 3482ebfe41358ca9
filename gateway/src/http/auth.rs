//! The authentication extractor: a handler that takes an [`AuthenticatedPartner`]
//! argument only runs for a request with a valid partner token. A refused one is
//! recorded in the audit log (through [`crate::audit::refusals`], never
//! blocking the request).

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::problem::{Problem, ProblemType};
use super::{AppState, ConnectionInfo};
use crate::audit::refusals::Refusal;
use crate::auth::AuthError;
pub use crate::auth::AuthenticatedPartner;
use crate::policy::Purpose;

/// A refused token: 401 problem+json with a `WWW-Authenticate` challenge.
#[derive(Debug)]
pub struct Unauthorized(pub AuthError);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED)
            .with_type(ProblemType::Unauthorized, "Authentication failed")
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
            .ok_or((AuthError::MissingToken, None))
            .and_then(|token| {
                state
                    .verifier
                    .verify_naming_signer(token, client_cert.as_ref())
            });
        match result {
            Ok(partner) => {
                tracing::Span::current().record("partner", partner.id.as_str());
                Ok(partner)
            }
            Err((e, signed_by)) => {
                // The reason is logged; the token never is.
                tracing::warn!(reason = e.reason(), "authentication refused: {e}");
                state.metrics.observe_auth_failure(e.reason());
                state.refusals.record(Refusal::authentication(
                    signed_by.as_deref(),
                    e.reason(),
                    parts.method.as_str(),
                    route_template(parts),
                    purpose_header(parts).as_ref(),
                ));
                Err(Unauthorized(e))
            }
        }
    }
}

/// The route template (`/v1/referrals/{id}`), never the path itself.
pub(crate) fn route_template(parts: &Parts) -> &str {
    parts
        .extensions
        .get::<MatchedPath>()
        .map_or("(unmatched)", MatchedPath::as_str)
}

/// The `X-Purpose-Of-Use` code when it is a well-formed one; anything else the
/// caller put there is not recorded.
fn purpose_header(parts: &Parts) -> Option<Purpose> {
    parts
        .headers
        .get(PURPOSE_OF_USE)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The header a request declares its purpose of use in (design.md §4).
pub const PURPOSE_OF_USE: &str = "x-purpose-of-use";

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, Request, header::AUTHORIZATION};
    use proptest::prelude::*;

    use super::bearer_token;

    proptest! {
        /// Any bytes a client may put in `Authorization` (the `http` crate
        /// takes visible ASCII, tabs, spaces and obs-text): a token or none,
        /// never a panic, and only after a `Bearer` scheme.
        #[test]
        fn any_authorization_header_gives_a_token_or_none(
            bytes in prop::collection::vec(prop_oneof![Just(b'\t'), 0x20_u8..0x7f, 0x80_u8..=0xff], 0..120),
        ) {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                return Ok(());
            };
            let (parts, ()) = Request::builder()
                .header(AUTHORIZATION, value)
                .body(())
                .expect("a request")
                .into_parts();
            if let Some(token) = bearer_token(&parts) {
                let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
                prop_assert!(text.starts_with("bearer "));
                prop_assert!(!token.is_empty());
            }
        }
    }
}
