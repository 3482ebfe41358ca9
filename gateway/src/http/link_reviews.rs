//! The linkage review queue and unmerge, for administrators:
//! `GET /v1/admin/link-reviews`, `POST /v1/admin/link-reviews/{id}/decision`,
//! `POST /v1/admin/unmerge` (`exchange/review.rs` does the work).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::exchange::require_content_type;
use super::problem::Problem;
use super::query::{Params, RecordPath, invalid_parameter, limit};
use crate::domain::ids::ReviewId;
use crate::exchange::review::{
    DEFAULT_LIMIT, DecisionBody, DecisionRequest, MAX_LIMIT, ReviewPage, UnmergeBody,
    UnmergeRequest,
};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/link-reviews", get(list_reviews))
        .route("/v1/admin/link-reviews/{id}/decision", post(decide_review))
        .route("/v1/admin/unmerge", post(unmerge))
}

/// The linkage review queue: pairs the match rule would not link on its own
/// but that came close, oldest first, each with how its two identities
/// compare field by field (`agree`, `close`, `differ`, `missing`) — never the
/// identities. Administrators only; reading it is audited.
#[utoipa::path(get, path = "/v1/admin/link-reviews", tag = "linkage",
    security(("partner_token" = [])),
    params(
        ("cursor" = Option<String>, Query, format = "uuid", description = "The `next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Reviews per page (default 50)"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default HOPERAT, the only one allowed here"),
    ),
    responses(
        (status = 200, description = "A page of open reviews", body = ReviewPage),
        (status = 400, description = "A parameter or the purpose header is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a purpose other than HOPERAT", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn list_reviews(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    query: Params,
) -> Result<Json<ReviewPage>, ApiError> {
    let mut cursor = None;
    let mut page_size = DEFAULT_LIMIT;
    for (name, value) in query.known(&["cursor", "limit"])? {
        match name {
            "cursor" => {
                cursor = Some(ReviewId::parse(value).map_err(|_| {
                    invalid_parameter("cursor", "must be the next_cursor of a previous page")
                })?);
            }
            _ => page_size = limit(value, MAX_LIMIT)?,
        }
    }
    let page = state
        .exchange
        .link_reviews(&partner, &purpose, cursor.as_ref(), page_size)
        .await?;
    Ok(Json(page))
}

/// Decide a review: `accept` links the two (one person), `reject` keeps them
/// apart for good. A decided review is a 409, as is accepting a pair an
/// earlier decision keeps apart. Audited with the decision.
#[utoipa::path(post, path = "/v1/admin/link-reviews/{id}/decision", tag = "linkage",
    security(("partner_token" = [])),
    params(
        ("id" = String, Path, pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The review id"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default HOPERAT, the only one allowed here"),
    ),
    request_body(content = DecisionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Decided", body = DecisionBody),
        (status = 400, description = "Invalid fields; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a purpose other than HOPERAT", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already decided, or kept apart by an earlier decision", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn decide_review(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    RecordPath(id): RecordPath<ReviewId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DecisionBody>, ApiError> {
    require_content_type(&headers, &["application/json"])?;
    let decided = state
        .exchange
        .decide_link_review(&partner, &purpose, &id, &body)
        .await?;
    Ok(Json(decided))
}

/// Unmerge: two records (referrals or case statuses) were linked to one
/// person but are not the same person. They are kept apart for good, and
/// the person is re-derived from its identities without that link: records,
/// consents, study pseudonyms and each partner's grouping follow. 409 when
/// the two are not linked. Audited.
#[utoipa::path(post, path = "/v1/admin/unmerge", tag = "linkage",
    security(("partner_token" = [])),
    params(
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default HOPERAT, the only one allowed here"),
    ),
    request_body(content = UnmergeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Split", body = UnmergeBody),
        (status = 400, description = "Invalid fields, or a record that does not exist; nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator, or a purpose other than HOPERAT", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The two records are not linked", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn unmerge(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UnmergeBody>, ApiError> {
    require_content_type(&headers, &["application/json"])?;
    let done = state.exchange.unmerge(&partner, &purpose, &body).await?;
    Ok(Json(done))
}
