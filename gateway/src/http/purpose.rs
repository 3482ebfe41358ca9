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

use axum::http::{HeaderMap, StatusCode};

use super::AuthenticatedPartner;
use super::auth::PURPOSE_OF_USE;
use super::problem::{Problem, ProblemType};
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
pub(crate) fn declared_purpose(headers: &HeaderMap, default: &str) -> Result<Purpose, Problem> {
    let Some(value) = headers.get(PURPOSE_OF_USE) else {
        return default
            .parse()
            .map_err(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST)
                .with_type(ProblemType::InvalidRequest, "The request is invalid")
                .with_detail("nothing was stored; see errors")
                .with_field(
                    "X-Purpose-Of-Use",
                    "must be an HL7 PurposeOfUse code: 2-16 upper-case letters, e.g. CAREMGT",
                )
        })
}

/// The declared purpose, or the partner's default from the registry, or its
/// kind's.
pub(crate) fn purpose_of(
    headers: &HeaderMap,
    partner: &AuthenticatedPartner,
) -> Result<Purpose, Problem> {
    let default = partner
        .default_purpose
        .as_deref()
        .unwrap_or_else(|| default_for(partner.kind));
    declared_purpose(headers, default)
}
