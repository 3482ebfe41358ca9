//! The authentication extractor: a handler that takes an [`AuthenticatedPartner`]
//! argument (or a [`super::caller::Caller`]) only runs for a request with a
//! valid partner token. A refused one answers 401, and the refusal layer
//! ([`super::record_refusals`]) records it in the audit log from the
//! [`AuthRefused`] the response carries.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::problem::{Problem, ProblemType};
use super::{AppState, ConnectionInfo};
use crate::auth::AuthError;
pub use crate::auth::AuthenticatedPartner;

/// A refused token: 401 problem+json with a `WWW-Authenticate` challenge.
#[derive(Debug)]
pub struct Unauthorized {
    pub error: AuthError,
    /// The registered partner whose key verified the signature, when one did
    /// (an expired or replayed token), for the refusal log.
    pub signed_by: Option<crate::domain::PartnerId>,
}

/// What the refusal layer records of a refused token: never the token.
#[derive(Debug, Clone)]
pub(crate) struct AuthRefused {
    pub(crate) signed_by: Option<crate::domain::PartnerId>,
    pub(crate) reason: &'static str,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED)
            .with_type(ProblemType::Unauthorized, "Authentication failed")
            .with_detail(self.error.public_detail())
            .into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="crosswalk", error="invalid_token""#),
        );
        response.extensions_mut().insert(AuthRefused {
            signed_by: self.signed_by,
            reason: self.error.reason(),
        });
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
                Err(Unauthorized {
                    error: e,
                    signed_by,
                })
            }
        }
    }
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
