//! The record-level reads: `GET /v1/referrals`, `GET /v1/referrals/{id}`,
//! `GET /v1/referrals/{id}/case-status` and the accounting of disclosures,
//! `GET /v1/audit/disclosures?referral=`.
//!
//! Thin: authenticate, parse (the purpose of use through the one shared helper,
//! [`super::purpose`]: the `X-Purpose-Of-Use` header or the partner kind's
//! default; a malformed code is a 400 naming the header), then
//! [`crate::reads`] decides, shapes and audits.
//!
//! # 404, not 403, for a record the policy hides
//! A record the requester may not see (`deny` or `aggregate_only`) gets exactly
//! the body a nonexistent id gets, so that existence is not revealed; the
//! refusal goes to the audit log through `state.refusals`. A list the policy
//! refuses as a whole is a 403 with the policy's reason: a collection's
//! existence is no secret.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::Serialize;

use super::problem::{Problem, ProblemType};
use super::purpose::purpose_of;
use super::{AppState, AuthenticatedPartner};
use crate::audit::refusals::Refusal;
use crate::policy::{Purpose, ReleasedView};
use crate::reads::{
    AccountFor, Asker, Cursor, DEFAULT_LIMIT, ListRequest, MAX_LIMIT, ReadError, Reads,
};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/referrals", get(list_referrals))
        .route("/v1/referrals/{id}", get(read_referral))
        .route("/v1/referrals/{id}/case-status", get(case_status))
        .route("/v1/audit/disclosures", get(disclosures))
        .route("/v1/outcomes", get(police_outcomes))
}

pub(super) fn reads(state: &AppState) -> Reads<'_> {
    Reads {
        store: &state.store,
        vault: &state.vault,
        policy: &state.policy,
        pseudonyms: &state.pseudonyms,
        clock: state.audit.clock.as_ref(),
        partners: &state.config.partners,
    }
}

/// A failed read, with what the refusal log needs.
pub(super) struct ReadFailure<'a> {
    pub(super) error: ReadError,
    pub(super) partner: &'a str,
    pub(super) route: &'a str,
    pub(super) purpose: &'a Purpose,
    pub(super) state: &'a AppState,
}

impl ReadFailure<'_> {
    pub(super) fn into_problem(self) -> Problem {
        match self.error {
            ReadError::NotFound { refused } => {
                if let Some(reason) = refused {
                    self.state.refusals.record(Refusal::policy(
                        self.partner,
                        "GET",
                        self.route,
                        self.purpose,
                        &reason,
                    ));
                }
                // The very body the fallback gives an unknown path or id.
                Problem::new(StatusCode::NOT_FOUND)
            }
            ReadError::Refused { reason } => {
                self.state.refusals.record(Refusal::policy(
                    self.partner,
                    "GET",
                    self.route,
                    self.purpose,
                    &reason,
                ));
                Problem::new(StatusCode::FORBIDDEN)
                    .with_type(ProblemType::Forbidden, "Refused by the release policy")
                    .with_detail(reason)
            }
            ReadError::Invalid { parameter, problem } => invalid_query(parameter, &problem),
            internal => {
                tracing::error!(error = %internal, "read failed");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

pub(super) fn invalid_query(parameter: &str, problem: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST)
        .with_type(ProblemType::InvalidQuery, "Invalid query")
        .with_detail("a query parameter or header is not valid")
        .with_field(parameter, problem)
}

/// The query's parameters, each at most once and each one this endpoint knows.
pub(super) fn query_pairs<'p>(
    query: &'p Result<Query<Vec<(String, String)>>, QueryRejection>,
    known: &[&'static str],
) -> Result<Vec<(&'static str, &'p str)>, Problem> {
    let Ok(Query(pairs)) = query else {
        return Err(invalid_query("query", "is not a valid URL query string"));
    };
    let mut out: Vec<(&'static str, &str)> = Vec::new();
    let mut problem = Problem::new(StatusCode::BAD_REQUEST)
        .with_type(ProblemType::InvalidQuery, "Invalid query")
        .with_detail("a query parameter or header is not valid");
    for (name, value) in pairs {
        match known.iter().find(|k| **k == name) {
            Some(k) if out.iter().any(|(seen, _)| seen == k) => {
                problem = problem.with_field(*k, "is given more than once");
            }
            Some(k) => out.push((k, value.as_str())),
            None => {
                // Name the parameter when it looks like one; never echo junk.
                let shown = if name.len() <= 32
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    name.as_str()
                } else {
                    "query"
                };
                problem = problem.with_field(
                    shown,
                    format!("is not a parameter of this endpoint ({})", known.join(", ")),
                );
            }
        }
    }
    if problem.errors.is_empty() {
        Ok(out)
    } else {
        Err(problem)
    }
}

pub(super) fn parse_limit(value: &str) -> Result<u32, Problem> {
    match value.parse::<u32>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(invalid_query(
            "limit",
            &format!("must be a whole number from 1 to {MAX_LIMIT}"),
        )),
    }
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
        (status = 401, description = "No valid partner token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The policy gives this partner no record-level view", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_referrals(
    State(state): State<AppState>,
    partner: AuthenticatedPartner,
    route: MatchedPath,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<ReferralPageBody>, Problem> {
    let purpose = purpose_of(&headers, &partner)?;
    let mut request = ListRequest {
        limit: DEFAULT_LIMIT,
        ..ListRequest::default()
    };
    for (name, value) in query_pairs(&query, &["status", "cursor", "limit"])? {
        match name {
            "status" => request.status = Some(value.to_owned()),
            "cursor" => {
                request.cursor = Some(Cursor::decode(value).ok_or_else(|| {
                    invalid_query("cursor", "must be the next_cursor of a previous page")
                })?);
            }
            _ => request.limit = parse_limit(value)?,
        }
    }
    let asker = Asker {
        partner: &partner.id,
        kind: partner.kind,
        purpose: &purpose,
    };
    match reads(&state).list_referrals(&asker, &request).await {
        Ok(page) => Ok(Json(ReferralPageBody {
            referrals: page.referrals,
            next_cursor: page.next_cursor.map(|c| c.encode()),
        })),
        Err(error) => Err(ReadFailure {
            error,
            partner: &partner.id,
            route: route.as_str(),
            purpose: &purpose,
            state: &state,
        }
        .into_problem()),
    }
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
        (status = 401, description = "No valid partner token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral, or none this partner may see", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn read_referral(
    State(state): State<AppState>,
    partner: AuthenticatedPartner,
    route: MatchedPath,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ReleasedView>, Problem> {
    let purpose = purpose_of(&headers, &partner)?;
    let asker = Asker {
        partner: &partner.id,
        kind: partner.kind,
        purpose: &purpose,
    };
    reads(&state)
        .read_referral(&asker, &id)
        .await
        .map(Json)
        .map_err(|error| {
            ReadFailure {
                error,
                partner: &partner.id,
                route: route.as_str(),
                purpose: &purpose,
                state: &state,
            }
            .into_problem()
        })
}

/// The health case statuses linked to a referral.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseStatusBody {
    referral_id: String,
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
        (status = 401, description = "No valid partner token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral, or none this partner may see", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn case_status(
    State(state): State<AppState>,
    partner: AuthenticatedPartner,
    route: MatchedPath,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CaseStatusBody>, Problem> {
    let purpose = purpose_of(&headers, &partner)?;
    let asker = Asker {
        partner: &partner.id,
        kind: partner.kind,
        purpose: &purpose,
    };
    match reads(&state).case_statuses(&asker, &id).await {
        Ok(case_statuses) => Ok(Json(CaseStatusBody {
            referral_id: id,
            case_statuses,
        })),
        Err(error) => Err(ReadFailure {
            error,
            partner: &partner.id,
            route: route.as_str(),
            purpose: &purpose,
            state: &state,
        }
        .into_problem()),
    }
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
        (status = 401, description = "No valid partner token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner that may read the accounting", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral or case (administrators)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn disclosures(
    State(state): State<AppState>,
    partner: AuthenticatedPartner,
    route: MatchedPath,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<DisclosurePageBody>, Problem> {
    let purpose = purpose_of(&headers, &partner)?;
    let mut about = None;
    let mut cursor = None;
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in query_pairs(&query, &["referral", "case", "cursor", "limit"])? {
        match name {
            "referral" | "case" if about.is_some() => {
                return Err(invalid_query(
                    name,
                    "give either referral or case, not both",
                ));
            }
            "referral" => about = Some(AccountFor::Referral(value.to_owned())),
            "case" => about = Some(AccountFor::Case(value.to_owned())),
            "cursor" => {
                cursor = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c >= 0)
                        .ok_or_else(|| {
                            invalid_query("cursor", "must be the next_cursor of a previous page")
                        })?,
                );
            }
            _ => limit = parse_limit(value)?,
        }
    }
    let about = about.ok_or_else(|| {
        invalid_query(
            "referral",
            "is required (or case): the referral or case whose person to account for",
        )
    })?;
    let asker = Asker {
        partner: &partner.id,
        kind: partner.kind,
        purpose: &purpose,
    };
    match reads(&state)
        .disclosures(&asker, &about, cursor, limit)
        .await
    {
        Ok(page) => Ok(Json(DisclosurePageBody {
            disclosures: page.disclosures,
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        })),
        Err(error) => Err(ReadFailure {
            error,
            partner: &partner.id,
            route: route.as_str(),
            purpose: &purpose,
            state: &state,
        }
        .into_problem()),
    }
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
        (status = 401, description = "No valid partner token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a police partner", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn police_outcomes(
    State(state): State<AppState>,
    partner: AuthenticatedPartner,
    route: MatchedPath,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<OutcomePageBody>, Problem> {
    let purpose = purpose_of(&headers, &partner)?;
    let mut cursor = None;
    let mut limit = DEFAULT_LIMIT;
    for (name, value) in query_pairs(&query, &["cursor", "limit"])? {
        match name {
            "cursor" => {
                cursor = Some(Cursor::decode(value).ok_or_else(|| {
                    invalid_query("cursor", "must be the next_cursor of a previous page")
                })?);
            }
            _ => limit = parse_limit(value)?,
        }
    }
    let asker = Asker {
        partner: &partner.id,
        kind: partner.kind,
        purpose: &purpose,
    };
    match reads(&state).police_outcomes(&asker, cursor, limit).await {
        Ok(page) => Ok(Json(OutcomePageBody {
            outcomes: page.outcomes,
            next_cursor: page.next_cursor.map(|c| c.encode()),
        })),
        Err(error) => Err(ReadFailure {
            error,
            partner: &partner.id,
            route: route.as_str(),
            purpose: &purpose,
            state: &state,
        }
        .into_problem()),
    }
}
