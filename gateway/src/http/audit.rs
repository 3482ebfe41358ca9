//! The audit log over HTTP: `GET /v1/audit/entries` pages through the log for
//! those the policy lets read it (administrators, in the baseline), and
//! `GET /.well-known/crosswalk-signing-key` publishes the key that verifies the
//! gateway's signed checkpoints.
//!
//! Reading the log is a read like any other ([`crate::reads`]): decided under
//! the policy's `audit_entry` resource, shaped by `release_view`, and audited
//! in the transaction that reads the page. This file parses the query.
//!
//! The accounting of disclosures (`GET /v1/audit/disclosures`) is built on
//! [`crate::audit::read::disclosures`] and is wired where referrals live, since
//! it needs a referral's subjects.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use super::caller::{Caller, Operating};
use super::error::ApiError;
use super::problem::Problem;
use super::query::{Params, field, invalid};
use crate::audit::checkpoint::GatewayPublicKey;
use crate::clock::Clock;
use crate::policy::ReleasedView;
use crate::reads::EntriesRequest;

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

/// The parameters `GET /v1/audit/entries` takes.
const PARAMETERS: [&str; 6] = ["from", "to", "actor", "action", "cursor", "limit"];

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
        (status = 403, description = "The policy does not let this partner read the log", body = Problem,
            content_type = "application/problem+json")))]
pub(crate) async fn entries(
    State(state): State<AppState>,
    caller: Caller<Operating>,
    query: Params,
) -> Result<Json<EntryPageBody>, ApiError> {
    let request = parse_query(&query)?;
    let page = state.reads.audit_entries(&caller.asker(), &request).await?;
    Ok(Json(EntryPageBody {
        entries: page.entries,
        next_cursor: page.next_cursor.map(|seq| seq.to_string()),
    }))
}

/// Parses every parameter, collecting every problem rather than the first.
/// Messages name the parameter and never quote its value.
fn parse_query(params: &Params) -> Result<EntriesRequest, ApiError> {
    let mut query = EntriesRequest {
        limit: DEFAULT_LIMIT,
        ..EntriesRequest::default()
    };
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (known, value) in params.known_collecting(&PARAMETERS, &mut errors)? {
        seen.push(known);
        match known {
            "from" | "to" => match parse_time(value) {
                Some(micros) if known == "from" => query.filter.from = Some(micros),
                Some(micros) => query.filter.to = Some(micros),
                None => errors.push(field(
                    known,
                    "must be an RFC 3339 time from 2000-01-01 to 2099-12-31, e.g. \
                     2026-11-23T00:00:00Z",
                )),
            },
            "actor" => {
                if crate::config::is_valid_partner_id(value) {
                    query.filter.actor = Some(value.to_owned());
                } else {
                    errors.push(field(
                        "actor",
                        "must be a partner id, gateway, operator or unauthenticated",
                    ));
                }
            }
            "action" => {
                if is_valid_action(value) {
                    query.filter.action = Some(value.to_owned());
                } else {
                    errors.push(field(
                        "action",
                        "must be an action name: 1-64 of a-z, 0-9, '.', '_' and '-'",
                    ));
                }
            }
            "cursor" => match value.parse::<i64>() {
                Ok(cursor) if cursor >= 0 => query.cursor = Some(cursor),
                _ => errors.push(field(
                    "cursor",
                    "must be the next_cursor of a previous page",
                )),
            },
            _ => match value.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => query.limit = limit,
                _ => errors.push(field("limit", "must be a whole number from 1 to 1000")),
            },
        }
    }
    if let (Some(from), Some(to)) = (query.filter.from, query.filter.to)
        && from >= to
    {
        errors.push(field("to", "must be later than from"));
    }
    if !errors.is_empty() {
        // In the order the caller wrote the parameters (a stable sort keeps
        // a parameter's own problems in the order found).
        errors.sort_by_key(|e| params.position(&e.field));
        return Err(invalid(errors));
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

/// The range `from` and `to` may take: no entry predates
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

    fn pairs(query: &[(&str, &str)]) -> Params {
        Params::from_pairs(query)
    }

    /// The fields a refused query names.
    fn fields_of(result: Result<EntriesRequest, ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Invalid { errors, .. }) => errors.into_iter().map(|e| e.field).collect(),
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
