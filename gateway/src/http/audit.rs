//! The audit log over HTTP: `GET /v1/audit/entries` pages through the log for
//! those the policy lets read it (administrators, in the baseline), and
//! `GET /.well-known/crosswalk-signing-key` publishes the key that verifies the
//! gateway's signed checkpoints.
//!
//! Reading the log is itself audited: the page is read and its `audit.read`
//! entry appended in one transaction, so no page leaves without its record. The
//! entries are shaped by [`release_view`] under the policy's `audit_entry`
//! decision like any other record.
//!
//! The accounting of disclosures (`GET /v1/audit/disclosures`) is built on
//! [`crate::audit::read::disclosures`] and is wired where referrals live, since
//! it needs a referral's subjects.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use super::problem::{FieldError, Problem, ProblemType};
use super::purpose::declared_purpose;
use super::{AppState, AuthenticatedPartner};
use crate::audit::checkpoint::GatewayPublicKey;
use crate::audit::read::{READ_ACTION, entry_record, list_entries};
use crate::audit::refusals::Refusal;
use crate::audit::{Event, append, released_fields};
use crate::clock::Clock;
use crate::policy::{
    Action, DecisionInput, Effect, FieldShaper, RecordFacts, Relationship, ReleasedView, Requester,
    Resource, release_view,
};
use crate::store::StoreError;
use crate::store::audit::EntryFilter;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/entries", get(entries))
        .route("/.well-known/crosswalk-signing-key", get(signing_key))
}

/// What the audit endpoints need besides the store and the policy.
#[derive(Clone)]
pub struct AuditContext {
    pub clock: Arc<dyn Clock>,
    /// Published for checkpoint verification.
    pub gateway_key: GatewayPublicKey,
}

impl std::fmt::Debug for AuditContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditContext")
            .field("gateway_key", &self.gateway_key)
            .finish_non_exhaustive()
    }
}

/// The purpose assumed when the request declares none, whoever asks: operating
/// the gateway (HL7 `HOPERAT`), which is what reading its log is for.
const DEFAULT_PURPOSE: &str = "HOPERAT";

/// Entries per page when `limit` is not given, and the most a page may hold.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// A page of the log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntryPageBody {
    /// Entries in sequence order, each with the fields of the policy's
    /// `audit_entry` resource it releases: `seq`, `at`, `actor`, `action`,
    /// `purpose`, `resource`, `record_id`, `subject_ref`, `fields`,
    /// `policy_version`, `reason`, `consent_id`, `hash`.
    #[schema(value_type = Vec<super::openapi_views::ReleasedAuditEntry>)]
    entries: Vec<ReleasedView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// Why `GET /v1/audit/entries` did not answer with a page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntriesError {
    #[error("invalid query")]
    BadRequest(Vec<FieldError>),
    #[error("refused by the policy")]
    Forbidden { reason: String },
    #[error(transparent)]
    Internal(#[from] StoreError),
}

impl From<sqlx::Error> for EntriesError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(StoreError::from(e))
    }
}

impl IntoResponse for EntriesError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(errors) => {
                let mut problem = Problem::new(StatusCode::BAD_REQUEST)
                    .with_type(ProblemType::InvalidQuery, "Invalid query")
                    .with_detail("a query parameter or header is not valid");
                problem.errors = errors;
                problem.into_response()
            }
            Self::Forbidden { reason } => Problem::new(StatusCode::FORBIDDEN)
                .with_type(ProblemType::Forbidden, "Refused by the release policy")
                .with_detail(reason)
                .into_response(),
            Self::Internal(e) => {
                tracing::error!(error = %e, "audit entries: internal error");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR).into_response()
            }
        }
    }
}

/// The parsed query.
#[derive(Debug, Default)]
struct EntriesQuery {
    filter: EntryFilter,
    cursor: Option<i64>,
    limit: u32,
    /// Which filters were given, for the `audit.read` entry (names, not values).
    given: Vec<&'static str>,
}

/// Pages through the audit log, oldest first.
#[utoipa::path(get, path = "/v1/audit/entries", tag = "audit",
    security(("partner_token" = [])),
    params(
        ("from" = Option<String>, Query, description = "Entries at or after this RFC 3339 time, from 2000-01-01 to 2099-12-31"),
        ("to" = Option<String>, Query, description = "Entries before this RFC 3339 time, from 2000-01-01 to 2099-12-31; later than `from`"),
        ("actor" = Option<String>, Query, pattern = r"^[a-z0-9-]{1,64}$", description = "Only this actor (a partner id, `gateway`, `operator` or `unauthenticated`)"),
        ("action" = Option<String>, Query, pattern = r"^[a-z0-9._-]{1,64}$", description = "Only this action, e.g. `refusal`, `audit.read`, `partner.change`"),
        ("cursor" = Option<i64>, Query, minimum = 0, description = "The `next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Entries per page (default 100)"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code (default HOPERAT)"),
    ),
    responses(
        (status = 200, description = "A page of entries", body = EntryPageBody),
        (status = 400, description = "A parameter is not valid", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "No valid partner token", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "The policy does not let this partner read the log", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn entries(
    State(state): State<AppState>,
    partner: AuthenticatedPartner,
    route: MatchedPath,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<EntryPageBody>, EntriesError> {
    let Query(pairs) = query.map_err(|_| {
        EntriesError::BadRequest(vec![field_error(
            "query",
            "is not a valid URL query string",
        )])
    })?;
    let purpose = declared_purpose(&headers, DEFAULT_PURPOSE)
        .map_err(|problem| EntriesError::BadRequest(problem.errors))?;
    let query = parse_query(&pairs)?;

    let decision = state.policy.decide(&DecisionInput {
        requester: Requester {
            id: partner.id.clone(),
            kind: partner.kind,
        },
        purpose: purpose.clone(),
        action: Action::List,
        resource: Resource::AuditEntry,
        relationship: Relationship::None,
        record: RecordFacts::default(),
        consent: None,
        study: None,
    });
    if decision.effect != Effect::Allow {
        state.refusals.record(Refusal::policy(
            &partner.id,
            "GET",
            route.as_str(),
            &purpose,
            &decision.reason,
        ));
        return Err(EntriesError::Forbidden {
            reason: decision.reason.clone(),
        });
    }

    let mut tx = state.store.begin().await?;
    let page = list_entries(&mut tx, &query.filter, query.cursor, query.limit).await?;
    let shaper = FieldShaper::for_partner(&state.pseudonyms, &partner.id);
    let views: Vec<ReleasedView> = page
        .entries
        .iter()
        .filter_map(|(entry, hash)| {
            release_view(&decision, &entry_record(entry, hash), &shaper).ok()
        })
        .collect();
    let read = Event::new(&partner.id, READ_ACTION)
        .with_purpose(purpose.as_str())
        .with_resource(Resource::AuditEntry.as_str())
        .with_fields(released_fields(&decision))
        .with_decision(&*decision.policy_version, &decision.reason)
        .with_detail(json!({"returned": views.len(), "filters": query.given}));
    append(&mut tx, &[read], state.audit.clock.as_ref()).await?;
    tx.commit().await?;

    Ok(Json(EntryPageBody {
        entries: views,
        next_cursor: page.next_cursor.map(|seq| seq.to_string()),
    }))
}

fn field_error(field: &str, problem: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        problem: problem.to_owned(),
    }
}

/// Parses every parameter, collecting every problem rather than the first.
/// Messages name the parameter and never quote its value.
fn parse_query(pairs: &[(String, String)]) -> Result<EntriesQuery, EntriesError> {
    let mut query = EntriesQuery {
        limit: DEFAULT_LIMIT,
        ..EntriesQuery::default()
    };
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        let Some(known) = ["from", "to", "actor", "action", "cursor", "limit"]
            .into_iter()
            .find(|k| k == name)
        else {
            let field = if name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                name.as_str()
            } else {
                "query"
            };
            errors.push(field_error(
                field,
                "is not a parameter of this endpoint (from, to, actor, action, cursor, limit)",
            ));
            continue;
        };
        if seen.contains(&known) {
            errors.push(field_error(known, "is given more than once"));
            continue;
        }
        seen.push(known);
        match known {
            "from" | "to" => match parse_time(value) {
                Some(micros) if known == "from" => query.filter.from = Some(micros),
                Some(micros) => query.filter.to = Some(micros),
                None => errors.push(field_error(
                    known,
                    "must be an RFC 3339 time from 2000-01-01 to 2099-12-31, e.g. \
                     2026-11-23T00:00:00Z",
                )),
            },
            "actor" => {
                if crate::config::is_valid_partner_id(value) {
                    query.filter.actor = Some(value.clone());
                } else {
                    errors.push(field_error(
                        "actor",
                        "must be a partner id, gateway, operator or unauthenticated",
                    ));
                }
            }
            "action" => {
                if is_valid_action(value) {
                    query.filter.action = Some(value.clone());
                } else {
                    errors.push(field_error(
                        "action",
                        "must be an action name: 1-64 of a-z, 0-9, '.', '_' and '-'",
                    ));
                }
            }
            "cursor" => match value.parse::<i64>() {
                Ok(cursor) if cursor >= 0 => query.cursor = Some(cursor),
                _ => errors.push(field_error(
                    "cursor",
                    "must be the next_cursor of a previous page",
                )),
            },
            _ => match value.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => query.limit = limit,
                _ => errors.push(field_error(
                    "limit",
                    "must be a whole number from 1 to 1000",
                )),
            },
        }
    }
    if let (Some(from), Some(to)) = (query.filter.from, query.filter.to)
        && from >= to
    {
        errors.push(field_error("to", "must be later than from"));
    }
    if !errors.is_empty() {
        return Err(EntriesError::BadRequest(errors));
    }
    query.given = seen
        .into_iter()
        .filter(|name| !matches!(*name, "cursor" | "limit"))
        .map(|name| match name {
            "from" => "from",
            "to" => "to",
            "actor" => "actor",
            _ => "action",
        })
        .collect();
    Ok(query)
}

/// The range `from` and `to` may take (issue 16, point 4): no entry predates
/// the earliest program start, and a bound past this century is a typing
/// error, not a question.
pub(crate) const AUDIT_TIME_RANGE: std::ops::Range<i64> =
    946_684_800_000_000..4_102_444_800_000_000; // 2000-01-01 .. 2100-01-01 (UTC)

fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
        .filter(|micros| AUDIT_TIME_RANGE.contains(micros))
}

fn is_valid_action(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// The gateway's Ed25519 public key (SPKI PEM): what verifies the audit log's
/// signed checkpoints (`crosswalk audit verify --public-key FILE`).
#[utoipa::path(get, path = "/.well-known/crosswalk-signing-key", tag = "audit",
    responses((status = 200, description = "The gateway's public key, SPKI PEM",
        content_type = "application/x-pem-file")))]
pub(crate) async fn signing_key(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.audit.gateway_key.to_pem(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn fields_of(result: Result<EntriesQuery, EntriesError>) -> Vec<String> {
        match result {
            Err(EntriesError::BadRequest(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let bad = parse_query(&pairs(&[
            ("from", "yesterday"),
            ("actor", "Robert Smith"),
            ("action", ""),
            ("cursor", "-1"),
            ("limit", "5000"),
            ("subject", "x"),
        ]));
        assert_eq!(
            fields_of(bad),
            ["from", "actor", "action", "cursor", "limit", "subject"]
        );
        let inverted = parse_query(&pairs(&[
            ("from", "2026-11-24T00:00:00Z"),
            ("to", "2026-11-23T00:00:00Z"),
        ]));
        assert_eq!(fields_of(inverted), ["to"]);
        let out_of_range = parse_query(&pairs(&[
            ("from", "1999-12-31T23:59:59Z"),
            ("to", "2100-01-01T00:00:00Z"),
        ]));
        assert_eq!(fields_of(out_of_range), ["from", "to"]);
        let edges = parse_query(&pairs(&[
            ("from", "2000-01-01T00:00:00Z"),
            ("to", "2099-12-31T23:59:59Z"),
        ]));
        assert!(edges.is_ok(), "the first and last instants are in range");
        assert_eq!(
            fields_of(parse_query(&pairs(&[("limit", "1"), ("limit", "2")]))),
            ["limit"]
        );
    }

    #[test]
    fn a_good_query_becomes_a_filter() {
        let query = parse_query(&pairs(&[
            ("from", "2026-11-23T00:00:00+01:00"),
            ("actor", "unauthenticated"),
            ("action", "refusal.summary"),
            ("cursor", "42"),
            ("limit", "10"),
        ]))
        .expect("valid");
        assert_eq!(query.filter.from, Some(1_795_388_400_000_000));
        assert_eq!(query.filter.actor.as_deref(), Some("unauthenticated"));
        assert_eq!(query.cursor, Some(42));
        assert_eq!(query.limit, 10);
        assert_eq!(query.given, ["from", "actor", "action"]);
    }
}
