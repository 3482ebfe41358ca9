//! `GET /v1/aggregates/outcomes`: counts with small-cell suppression (and,
//! when configured, differential privacy). Thin: the caller (purpose
//! default `PERFMSR`) and the query, then [`crate::aggregates`] decides,
//! counts, protects and audits.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::AppState;
use super::caller::{Caller, Measuring};
use super::error::ApiError;
use super::problem::Problem;
use super::query::Params;
use crate::aggregates::{AggregateRequest, AggregateTable};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/aggregates/outcomes", get(outcomes))
}

const PARAMETERS: [&str; 4] = ["from", "to", "group_by", "epsilon"];

/// Counts of referrals by month and outcome, safe to publish.
///
/// Referrals received in each calendar month of `from..=to` (whole months that
/// have ended), counted by any of `district`, `resource`, `outcome` (the
/// referral's furthest outcome) and `assigned_cbo`, with every margin. Counts
/// from 1 to the suppression threshold minus one are withheld (`count: null,
/// suppressed: true`), and as many others as it takes that none can be worked
/// out from the published cells and totals. A month is published once, when it
/// settles (`aggregates.settle_days` after it ends), and never changes. With
/// differential privacy on, each month's noisy table is made once, spending
/// `epsilon` from that month's budget (shared by all partners), and served as
/// made to every later asker. Every answer is recorded in the audit log.
#[utoipa::path(get, path = "/v1/aggregates/outcomes", tag = "aggregates",
    security(("partner_token" = [])),
    params(
        ("from" = String, Query, pattern = r"^[0-9]{4}-(?:0[1-9]|1[0-2])$", description = "First month, YYYY-MM: not before the month of `exchange.program_start`"),
        ("to" = String, Query, pattern = r"^[0-9]{4}-(?:0[1-9]|1[0-2])$", description = "Last month, YYYY-MM: not before `from`, and settled (`aggregates.settle_days` after it ended)"),
        ("group_by" = Option<String>, Query, pattern = r"^(?:month|district|resource|outcome|assigned_cbo)(?:,(?:month|district|resource|outcome|assigned_cbo))*$", description = "Comma-separated: district, resource, outcome, assigned_cbo (month is always a grouping)"),
        ("epsilon" = Option<f64>, Query, description = "With differential privacy on: the epsilon each month's table is noised at (default from the configuration); spent only for tables not made before"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default PERFMSR"),
    ),
    responses(
        (status = 200, description = "The table", body = AggregateTable),
        (status = 400, description = "A parameter or the purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The policy refuses aggregates to this partner for this purpose, or a month's privacy budget cannot pay for a new table (`epsilon_remaining`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn outcomes(
    State(state): State<AppState>,
    caller: Caller<Measuring>,
    query: Params,
) -> Result<Json<AggregateTable>, ApiError> {
    let pairs = query.known(&PARAMETERS)?;
    let request = AggregateRequest::parse(
        &pairs,
        &state.config.aggregates,
        state.config.exchange.program_start,
        state.audit.clock.now(),
    )?;
    Ok(Json(
        state.aggregates.outcomes(&caller.asker(), &request).await?,
    ))
}
