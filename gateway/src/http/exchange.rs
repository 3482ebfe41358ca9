//! What the exchange's handlers share: idempotency headers and content types.
//! (Exchange errors become problems in [`super::error`].)
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

use axum::http::{HeaderMap, header};

use super::error::ApiError;

pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Set on a response that repeats the first answer to an idempotency key.
pub(crate) const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Refuses a body that is not declared as one of `accepted` (415).
pub(crate) fn require_content_type(
    headers: &HeaderMap,
    accepted: &'static [&'static str],
) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if declared.is_some_and(|d| accepted.contains(&d.as_str())) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType { accepted })
    }
}
