//! What the exchange's handlers share: the purpose of use, content types, and how
//! exchange errors become problem+json.
//!
//! # Purpose of use on writes
//! Every exchange write records a purpose in its audit entry: the
//! `X-Purpose-Of-Use` header (an HL7 `PurposeOfUse` code; a malformed one is a 400
//! naming the header), or else the default for the partner's kind —
//! `CAREMGT` (care coordination: why referrals, outcomes and case statuses are
//! exchanged at all) for police, CBOs and health, `HOPERAT` for an admin's
//! reassignment. Writes are not decided by the release policy, so any well-formed
//! code is recorded as declared; which purposes allow what is the policy's
//! business on the reads.

use axum::http::{HeaderMap, StatusCode, header};

use super::problem::{Problem, ProblemType};
use crate::exchange::{ExchangeError, Invalid};

/// The purpose a write is made for (the one helper every handler uses).
pub(crate) use super::purpose::purpose_of;

pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Set on a response that repeats the first answer to an idempotency key.
pub(crate) const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Refuses a body that is not declared as one of `accepted` (415).
pub(crate) fn require_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), Problem> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if declared.is_some_and(|d| accepted.contains(&d.as_str())) {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .with_detail(format!("send the body as {}", accepted.join(" or "))))
    }
}

/// 403 for a partner whose kind may not make this write.
pub(crate) fn forbidden(detail: &str) -> Problem {
    Problem::new(StatusCode::FORBIDDEN)
        .with_type(ProblemType::Forbidden, "Not allowed for this partner")
        .with_detail(detail)
}

/// 400 naming every invalid field.
pub(crate) fn invalid_problem(invalid: &Invalid) -> Problem {
    invalid.errors.iter().fold(
        Problem::new(StatusCode::BAD_REQUEST)
            .with_type(ProblemType::InvalidRequest, "The request is invalid")
            .with_detail("nothing was stored; see errors"),
        |problem, e| problem.with_field(&e.field, &e.problem),
    )
}

/// 409 for a request that conflicts with what is stored.
pub(crate) fn conflict(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::CONFLICT)
        .with_type(
            ProblemType::Conflict,
            "The request conflicts with the record's state",
        )
        .with_detail(detail)
}

impl From<ExchangeError> for Problem {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Invalid(invalid) => invalid_problem(&invalid),
            ExchangeError::NotFound => Problem::new(StatusCode::NOT_FOUND),
            ExchangeError::Conflict(detail) => conflict(detail),
            ExchangeError::Unavailable => Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("the gateway is stopping; retry shortly"),
            internal => {
                // The cause is logged (it never holds request values); the partner
                // gets a bare 500.
                tracing::error!(error = %internal, "exchange write failed");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}
