//! The record-level reads: `GET /v1/referrals`, `GET /v1/referrals/{id}`,
//! `GET /v1/referrals/{id}/case-status` and the accounting of disclosures,
//! `GET /v1/audit/disclosures?referral=`.
//!
//! Thin: the [`Caller`] (authenticated, with its purpose of use), the query,
//! then [`crate::reads`] decides, shapes and audits; errors are
//! [`ApiError`]s.
//!
//! # 404, not 403, for a record the policy hides
//! A record the requester may not see (`deny` or `aggregate_only`) gets exactly
//! the body a nonexistent id gets, so that existence is not revealed; the
//! refusal layer records the policy's reason in the audit log. A list the policy
//! refuses as a whole is a 403 with the policy's reason: a collection's
//! existence is no secret.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::problem::Problem;
use super::query::RecordPath;
use super::query::{Params, invalid_parameter, limit};
use crate::domain::ids::{CaseId, ReferralId};
use crate::policy::ReleasedView;
use crate::reads::{AccountFor, Cursor, DEFAULT_LIMIT, ListRequest, MAX_LIMIT};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/referrals", get(list_referrals))
        .route("/v1/referrals/{id}", get(read_referral))
        .route("/v1/referrals/{id}/case-status", get(case_status))
        .route("/v1/audit/disclosures", get(disclosures))
        .route("/v1/outcomes", get(police_outcomes))
}

/// A page of referrals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReferralPageBody {
    /// Newest first, each with the `referral` fields the policy releases:
    /// `id`, `workflow_state`, `status`, `created_at`, `submitted_by`,
    /// `assigned_cbo`, `subject_pseudonym`, `cad_number`, `officer_id`,
    /// `subject` {`given_name`, `surname`, `dob`, `sex`, `address`
    /// {`street`, `city`, `state`, `zip`}, `phone`, `email`}, `contact_at`,
    /// `district`, `arrested`, `circumstances`, `resources`, `follow_up_by`.
    #[schema(value_type = Vec<super::openapi_views::ReleasedReferral>)]
    referrals: Vec<ReleasedView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List referrals: a police partner's own submissions, a CBO's assigned queue.
///
/// Each referral carries only the fields the release policy gives this partner
/// for this purpose (police: workflow state, not the follow-up status; CBOs:
/// the contact details, not the CAD number, officer or arrest). Another kind
/// gets what the policy decides for no relationship (the baseline: an admin's
/// view without identities; health and evaluators are refused). Every
/// referral returned is recorded as a disclosure.
#[utoipa::path(get, path = "/v1/referrals", tag = "referrals",
    security(("partner_token" = [])),
    params(
        ("status" = Option<crate::exchange::vocabulary::ReferralStatus>, Query, description = "Only referrals in this status; only for partners the policy releases the status to"),
        ("cursor" = Option<String>, Query, pattern = r"^[A-Za-z0-9_-]{1,128}$", description = "The `next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Referrals per page (default 50)"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT (HOPERAT for an admin, HRESCH for an evaluator)"),
    ),
    responses(
        (status = 200, description = "A page, newest first", body = ReferralPageBody),
        (status = 400, description = "A parameter or the purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The policy gives this partner no record-level view", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_referrals(
    State(state): State<AppState>,
    caller: Caller,
    query: Params,
) -> Result<Json<ReferralPageBody>, ApiError> {
    let mut request = ListRequest {
        limit: DEFAULT_LIMIT,
        ..ListRequest::default()
    };
    for (name, value) in query.known(&["status", "cursor", "limit"])? {
        match name {
            "status" => request.status = Some(value.to_owned()),
            "cursor" => {
                request.cursor = Some(Cursor::decode(value).ok_or_else(|| {
                    invalid_parameter("cursor", "must be the next_cursor of a previous page")
                })?);
            }
            _ => request.limit = limit(value, MAX_LIMIT)?,
        }
    }
    let page = state
        .reads
        .list_referrals(&caller.asker(), &request)
        .await?;
    Ok(Json(ReferralPageBody {
        referrals: page.referrals,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}

/// Read one referral: the fields the release policy gives this partner.
///
/// A referral the partner may not see is a 404 with the same body as an id that
/// does not exist. The read is recorded as a disclosure.
#[utoipa::path(get, path = "/v1/referrals/{id}", tag = "referrals",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The referral id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT (HOPERAT for an admin, HRESCH for an evaluator)"),
    ),
    responses(
        (status = 200, description = "The released fields", body = super::openapi_views::ReleasedReferral),
        (status = 400, description = "The purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral, or none this partner may see", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn read_referral(
    State(state): State<AppState>,
    caller: Caller,
    RecordPath(id): RecordPath<ReferralId>,
) -> Result<Json<ReleasedView>, ApiError> {
    Ok(Json(state.reads.read_referral(&caller.asker(), &id).await?))
}

/// The health case statuses linked to a referral.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseStatusBody {
    #[schema(value_type = String)]
    referral_id: ReferralId,
    /// The latest status of each linked case the policy releases, each with
    /// the `case_status` fields it releases: `id`, `submitted_by`, `case_ref`,
    /// `program`, `status`, `effective_at` (and `_notices` for 42 CFR Part 2).
    #[schema(value_type = Vec<super::openapi_views::ReleasedCaseStatus>)]
    case_statuses: Vec<ReleasedView>,
}

/// Health case statuses linked to a referral's person, as the policy allows.
///
/// For the referral's assigned CBO: the latest status of each health case about
/// the same person, only where the policy allows it (a consent on file covering
/// health → that CBO; Part 2 cases only under a Part 2 consent naming it). The
/// list looks the same whether or not unreleased cases exist. A referral the
/// partner may not read is a 404. Each status returned is recorded as a
/// disclosure.
#[utoipa::path(get, path = "/v1/referrals/{id}/case-status", tag = "referrals",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The referral id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    responses(
        (status = 200, description = "The released case statuses", body = CaseStatusBody),
        (status = 400, description = "The purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral, or none this partner may see", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn case_status(
    State(state): State<AppState>,
    caller: Caller,
    RecordPath(id): RecordPath<ReferralId>,
) -> Result<Json<CaseStatusBody>, ApiError> {
    let case_statuses = state.reads.case_statuses(&caller.asker(), &id).await?;
    Ok(Json(CaseStatusBody {
        referral_id: id,
        case_statuses,
    }))
}

/// A page of the accounting of disclosures.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DisclosurePageBody {
    /// Oldest first: `seq`, `at`, `actor` (the recipient), `action`, `purpose`,
    /// `resource`, `record_id`, `fields` [{`field`, `how`}], `policy_version`,
    /// `consent_id`.
    #[schema(value_type = Vec<super::openapi_views::ReleasedAuditEntry>)]
    disclosures: Vec<ReleasedView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// The accounting of disclosures about the person a referral (or case) is about.
///
/// Every release of a record about that person (all their internal subjects,
/// merges followed): who received which fields, how, when, for what purpose,
/// under which policy version and consent. Administrators read all of it; the
/// CBO or health partner that recorded a consent of the person's reads the
/// disclosures made under the consents it recorded (a health partner names its
/// case with `case`). Anyone else gets 403, as does a recorder asking about a
/// record that does not exist. Reading it is recorded (`audit.read`).
#[utoipa::path(get, path = "/v1/audit/disclosures", tag = "audit",
    security(("partner_token" = [])),
    params(
        ("referral" = Option<String>, Query, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "A referral id: account for its person"),
        ("case" = Option<String>, Query, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "Or a case status id: account for its person"),
        ("cursor" = Option<i64>, Query, minimum = 0, description = "The `next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Disclosures per page (default 50)"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default HOPERAT for an admin"),
    ),
    responses(
        (status = 200, description = "A page of disclosures", body = DisclosurePageBody),
        (status = 400, description = "A parameter or the purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner that may read the accounting", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral or case (administrators)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn disclosures(
    State(state): State<AppState>,
    caller: Caller,
    query: Params,
) -> Result<Json<DisclosurePageBody>, ApiError> {
    let mut about = None;
    let mut cursor = None;
    let mut page_size = DEFAULT_LIMIT;
    for (name, value) in query.known(&["referral", "case", "cursor", "limit"])? {
        match name {
            "referral" | "case" if about.is_some() => {
                return Err(invalid_parameter(
                    name,
                    "give either referral or case, not both",
                ));
            }
            "referral" => {
                about = Some(ReferralId::parse(value).map_or(
                    AccountFor::NoSuchRecord {
                        accounting: "referral",
                    },
                    AccountFor::Referral,
                ));
            }
            "case" => {
                about = Some(CaseId::parse(value).map_or(
                    AccountFor::NoSuchRecord { accounting: "case" },
                    AccountFor::Case,
                ));
            }
            "cursor" => {
                cursor = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c >= 0)
                        .ok_or_else(|| {
                            invalid_parameter(
                                "cursor",
                                "must be the next_cursor of a previous page",
                            )
                        })?,
                );
            }
            _ => page_size = limit(value, MAX_LIMIT)?,
        }
    }
    let about = about.ok_or_else(|| {
        invalid_parameter(
            "referral",
            "is required (or case): the referral or case whose person to account for",
        )
    })?;
    let page = state
        .reads
        .disclosures(&caller.asker(), &about, cursor, page_size)
        .await?;
    Ok(Json(DisclosurePageBody {
        disclosures: page.disclosures,
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// A page of outcomes released to police under consent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutcomePageBody {
    /// Newest first, each with the `outcome` fields the person's consent
    /// covers: `id`, `referral_id`, `recorded_by` (operational), `kind`,
    /// `resource` (health), `occurred_at` (`quasi_identifier`), `notes`
    /// (`free_text`).
    #[schema(value_type = Vec<super::openapi_views::ReleasedOutcome>)]
    outcomes: Vec<ReleasedView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Record-level outcomes of a police partner's own referrals, under consent.
///
/// Only outcomes whose person has an active consent (in its period, not
/// revoked) naming this police partner or `police` and covering the declared
/// purpose, each with only the fields of the classes the consent covers.
/// Referrals without such a consent are not listed at all; a revocation takes
/// effect on the next request. Every outcome returned is recorded as a
/// disclosure with the consent that allowed it. Police only (others: 403).
#[utoipa::path(get, path = "/v1/outcomes", tag = "outcomes",
    security(("partner_token" = [])),
    params(
        ("cursor" = Option<String>, Query, pattern = r"^[A-Za-z0-9_-]{1,128}$", description = "The `next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Outcomes per page (default 50)"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    responses(
        (status = 200, description = "A page, newest first (a page may hold fewer than `limit` when many outcomes are not covered; follow `next_cursor`)", body = OutcomePageBody),
        (status = 400, description = "A parameter or the purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a police partner", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn police_outcomes(
    State(state): State<AppState>,
    caller: Caller,
    query: Params,
) -> Result<Json<OutcomePageBody>, ApiError> {
    let mut cursor = None;
    let mut page_size = DEFAULT_LIMIT;
    for (name, value) in query.known(&["cursor", "limit"])? {
        match name {
            "cursor" => {
                cursor = Some(Cursor::decode(value).ok_or_else(|| {
                    invalid_parameter("cursor", "must be the next_cursor of a previous page")
                })?);
            }
            _ => page_size = limit(value, MAX_LIMIT)?,
        }
    }
    let page = state
        .reads
        .police_outcomes(&caller.asker(), cursor, page_size)
        .await?;
    Ok(Json(OutcomePageBody {
        outcomes: page.outcomes,
        next_cursor: page.next_cursor.map(|c| c.encode()),
    }))
}
