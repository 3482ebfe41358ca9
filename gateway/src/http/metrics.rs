//! Prometheus metrics: request counts and latency by route template,
//! authentication refusals by reason, and deliveries to outside audit
//! witnesses ([`crate::audit::witness`]). Labels are route templates, methods
//! (a fixed set and `OTHER`), statuses and fixed reason names — never a path,
//! a raw method, a partner secret, a URL or an identifier — so every label set
//! is bounded whatever clients send (when the raw method was a label, requests
//! with unique 20 KB methods grew `/metrics` to 120 MB).
//!
//! Served by [`serve_metrics`] on its own plain-HTTP listener
//! (`server.metrics_listen`, loopback by default), not on the API's TLS port.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// The methods counted by name; any other (a client may send any token as a
/// method, of any length) is `OTHER`, so the label set stays bounded.
const KNOWN_METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// The label for a request's method: one of [`KNOWN_METHODS`] or `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("OTHER")
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

pub struct Metrics {
    /// Encoding walks the registry; a std Mutex because no await happens while it
    /// is held and scrapes are rare.
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    auth_failures: Family<ReasonLabels, Counter>,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_open: Gauge,
    witness: crate::audit::witness::WitnessMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("crosswalk");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms to ~16 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused by authentication, by reason",
            auth_failures.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed on accept because a cap was reached (total or per_client)",
            connections_refused.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "TLS connections open now",
            connections_open.clone(),
        );
        let witness = crate::audit::witness::WitnessMetrics::default();
        witness.register(&mut registry);
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            auth_failures,
            connections_refused,
            connections_open,
            witness,
        }
    }
}

impl Metrics {
    /// Counts a request. `route` must be a route template (or a fixed name
    /// such as `(unmatched)`), never the path; the method is reduced to
    /// [`method_label`]; statuses are at most a few dozen values.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A connection closed on accept: `reason` is `total` or `per_client`.
    pub fn observe_connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// How many connections are open now.
    pub fn set_connections_open(&self, open: usize) {
        self.connections_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// The outside witnesses' delivery metrics, for their delivery tasks.
    pub fn witness(&self) -> crate::audit::witness::WitnessMetrics {
        self.witness.clone()
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Serves `GET /metrics` (and nothing else) on `listener`, plain HTTP, until
/// the task is aborted.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
) -> std::io::Result<()> {
    use axum::routing::get;
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = std::sync::Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn methods_outside_the_known_set_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("OPTIONS"), "OPTIONS");
        assert_eq!(method_label("get"), "OTHER");
        assert_eq!(method_label(&"X".repeat(20_000)), "OTHER");
    }
}
