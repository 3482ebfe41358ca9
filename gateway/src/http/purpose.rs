//! The purpose of use of a request, for every handler: the `X-Purpose-Of-Use`
//! header (an HL7 `PurposeOfUse` code), or the default when it is absent.
//!
//! Where the header is absent, the partner's default from the registry
//! (`default_purpose` in its `[partners.ID]` entry) applies, and where the
//! registry names none, its kind's ([`default_for`]): `CAREMGT` (care
//! coordination, why referrals, outcomes and case statuses are exchanged at
//! all) for police, CBOs and health, `HRESCH` for an evaluator, `HOPERAT` for
//! an admin. An endpoint whose
//! purpose is the same for everyone (reading the audit log is operating the
//! gateway) passes its own default. Only the code's form is checked here; which
//! purposes allow what is the policy's decision. A malformed code is a 400
//! naming the header.

use axum::http::HeaderMap;

use super::auth::PURPOSE_OF_USE;
use super::error::{ApiError, Place};
use crate::config::PartnerKind;
use crate::policy::Purpose;

/// The purpose a partner of `kind` acts for when it declares none.
pub(crate) fn default_for(kind: PartnerKind) -> &'static str {
    match kind {
        PartnerKind::Admin => "HOPERAT",
        PartnerKind::Evaluator => "HRESCH",
        PartnerKind::Police | PartnerKind::Cbo | PartnerKind::Health => "CAREMGT",
    }
}

/// The declared purpose, or `default` (a well-formed code).
pub(crate) fn declared_purpose(headers: &HeaderMap, default: &str) -> Result<Purpose, ApiError> {
    let Some(value) = headers.get(PURPOSE_OF_USE) else {
        return default
            .parse()
            .map_err(|e| ApiError::internal("the endpoint's default purpose", e));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                Place::Body,
                "X-Purpose-Of-Use",
                "must be an HL7 PurposeOfUse code: 2-16 upper-case letters, e.g. CAREMGT",
            )
        })
}
