//! The HTTP layer: one router per resource, thin handlers that call the domain.
//!
//! A request flows one way: authenticate (the [`AuthenticatedPartner`] extractor)
//! → parse and validate → decide (policy) → act (domain + store, one transaction
//! with its audit entry) → shape the response from the decision. Handlers never
//! hold SQL; errors leave as `application/problem+json` ([`problem`]).
//!
//! # Adding a resource
//! 1. Add `http/<resource>.rs` with its handlers, each annotated with
//!    `#[utoipa::path(...)]`, and a `pub(crate) fn router() -> Router<AppState>`.
//! 2. Each handler takes a [`caller::Caller`] (or [`AuthenticatedPartner`] where
//!    no purpose applies), calls one domain service and shapes its answer;
//!    errors are [`error::ApiError`] (the domain's errors convert with `?`),
//!    and refusals are recorded by the refusal layer, not by the handler.
//! 3. Merge its router in [`router`] and list its paths in [`openapi::ApiDoc`].

mod aggregates;
mod audit;
pub mod auth;
mod caller;
mod cases;
mod consents;
mod error;
mod exchange;
mod exports;
mod link_reviews;
pub mod metrics;
mod ndjson;
pub mod openapi;
mod openapi_ranges;
mod openapi_views;
pub mod problem;
mod purpose;
mod query;
mod reads;
mod referrals;
mod referrals_batch;
mod system;
mod unread_body;
mod whoami;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use self::audit::AuditContext;
pub use self::auth::AuthenticatedPartner;
use crate::audit::refusals::{Refusal, Refusals};
use crate::auth::Verifier;
use crate::config::Config;
use crate::policy::Policy;
use crate::pseudonym::Pseudonymizer;
use crate::store::Store;
use crate::subjects::SubjectRegistry;
use crate::vault::Vault;

/// Everything a handler may need, shared by all requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub verifier: Arc<Verifier>,
    pub metrics: Arc<metrics::Metrics>,
    /// Resolves identities to subjects (seals, fingerprints, links).
    pub registry: Arc<SubjectRegistry>,
    /// Unseals identities when a release decision allows it.
    pub vault: Vault,
    /// Partner-facing subject pseudonyms.
    pub pseudonyms: Arc<Pseudonymizer>,
    /// The release policy in force: every read asks it, and shapes its response
    /// with [`crate::policy::release_view`]. Swapped on SIGHUP.
    pub policy: Arc<Policy>,
    /// Records refused requests in the audit log without making them wait;
    /// only the refusal layer ([`record_refusals`]) writes to it.
    pub refusals: Refusals,
    /// What the audit endpoints need: the clock and the gateway's public key.
    pub audit: AuditContext,
    /// Referrals, outcomes, reassignments and case statuses (the writes).
    pub exchange: Arc<crate::exchange::Exchange>,
    /// Evaluators' de-identified study exports.
    pub exports: Arc<crate::exports::Exports>,
    /// Every record-level read: decide, unseal, release, audit.
    pub reads: Arc<crate::reads::Reads>,
    /// Counts safe to publish.
    pub aggregates: Arc<crate::aggregates::Aggregates>,
}

/// What the TLS layer learned about the connection a request came on.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionInfo {
    /// SHA-256 of the client certificate's DER, when one was presented.
    pub client_cert: Option<[u8; 32]>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API with its middleware.
///
/// Every route gets the global body-size limit and request timeout
/// (`server.request_body_limit_bytes`, `server.request_timeout_secs`) except
/// `POST /v1/referrals/batch`, which streams without bound and applies its own
/// per-line and idle limits (see `referrals_batch`). A body answered before it
/// was read is read to its end and discarded ([`unread_body`]), so that a
/// `413` reaches HTTP/2 clients as it reaches HTTP/1.1 ones.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.server;
    let metrics = middleware::from_fn_with_state(state.clone(), record_metrics);
    let refusals = middleware::from_fn_with_state(state.clone(), record_refusals);
    let api = Router::new()
        .merge(system::router())
        .merge(openapi::router())
        .merge(whoami::router())
        .merge(audit::router())
        .merge(referrals::router())
        .merge(reads::router())
        .merge(cases::router())
        .merge(consents::router())
        .merge(aggregates::router())
        .merge(exports::router())
        .merge(link_reviews::router())
        .layer(refusals.clone())
        .layer(metrics.clone());
    let streaming = referrals_batch::router().layer(refusals).layer(metrics);
    // Each `layer` wraps everything added before it: the last one is outermost.
    api.fallback(not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.request_body_limit_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .merge(streaming)
        .layer(middleware::map_response(problem::problem_for_bare_errors))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost, so that it wraps the body as it came off the connection.
        .layer(middleware::map_request(unread_body::read_unread_bodies))
        .with_state(state)
}

/// The span every log line of a request carries: request id, method and route
/// template. Never the raw path or query, which may hold record ids or worse.
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unmatched)", MatchedPath::as_str);
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        route,
        partner = tracing::field::Empty
    )
}

async fn not_found() -> problem::Problem {
    problem::Problem::new(axum::http::StatusCode::NOT_FOUND)
}

/// Records every refused request in the audit log, in one place: a token the
/// extractor refused ([`auth::AuthRefused`]), and a refusal a handler returned
/// ([`error::RefusedBecause`], from [`error::ApiError`]) with the caller and
/// purpose its [`caller::Caller`] saw. The record is queued
/// ([`crate::audit::refusals`]): the response never waits for it.
async fn record_refusals(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    // Cheap handles, read only when something was refused (most requests
    // are not): the route template and the declared purpose header.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let declared = request.headers().get(auth::PURPOSE_OF_USE).cloned();
    let seen = caller::CallerSeen::default();
    request.extensions_mut().insert(seen.clone());
    let response = next.run(request).await;
    let route = || matched.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    if let Some(refused) = response.extensions().get::<auth::AuthRefused>() {
        // A well-formed declared purpose; anything else the caller put there
        // is not recorded.
        let purpose: Option<crate::policy::Purpose> = declared
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        state.refusals.record(Refusal::authentication(
            refused.signed_by.as_deref(),
            refused.reason,
            method.as_str(),
            route(),
            purpose.as_ref(),
        ));
    }
    if let (Some(error::RefusedBecause(reason)), Some((partner, purpose))) = (
        response.extensions().get::<error::RefusedBecause>(),
        seen.get(),
    ) {
        state.refusals.record(Refusal::policy(
            partner,
            method.as_str(),
            route(),
            purpose,
            reason,
        ));
    }
    response
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
