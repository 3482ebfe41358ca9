//! Operational endpoints: readiness, metrics, OpenAPI, problem+json everywhere.

use crate::backend_tests;
use crate::helpers::{Backend, assert_problem, issue_token, spawn_app};

backend_tests!(
    ready_when_the_database_answers,
    metrics_count_requests_without_identifiers,
);

async fn ready_when_the_database_answers(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/readyz", None).await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["keys"], "loaded");
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    if backend == Backend::Sqlite {
        assert_sqlite_is_in_wal_mode(&app.db.url).await;
    }
}

async fn assert_sqlite_is_in_wal_mode(url: &str) {
    use sqlx::{Connection as _, Row as _};
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .expect("open the file");
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("pragma")
        .get(0);
    assert_eq!(mode, "wal");
    let applied: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("migrations table")
        .get(0);
    assert!(applied >= 1, "migrations applied");
}

async fn metrics_count_requests_without_identifiers(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = issue_token("pd");
    assert_eq!(app.get("/v1/whoami", Some(&token)).await.status(), 200);
    assert_eq!(app.get("/v1/whoami", None).await.status(), 401);

    let (status, text) = app.metrics().await;

    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"crosswalk_http_requests_total{method="GET",route="/v1/whoami",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"crosswalk_auth_failures_total{reason="missing_token"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("crosswalk_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains(&token), "no token in metrics");
    assert!(!text.contains("\"pd\""), "no partner ids as labels");
}

#[tokio::test]
async fn openapi_json_is_a_valid_openapi_3_document() {
    let app = spawn_app(Backend::Sqlite).await;

    let response = app.get("/openapi.json", None).await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    let spec = oas3::from_json(&text).expect("parses as OpenAPI 3.1");
    assert!(spec.openapi.starts_with("3."), "version {}", spec.openapi);
    let paths = spec.paths.as_ref().expect("paths");
    for path in ["/v1/whoami", "/healthz", "/readyz", "/openapi.json"] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    // Every schema reference resolves.
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    for reference in collect_refs(&value) {
        let pointer = reference.trim_start_matches('#');
        assert!(
            value.pointer(pointer).is_some(),
            "dangling $ref {reference}"
        );
    }
}

fn collect_refs(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", serde_json::Value::String(r)) => vec![r.clone()],
                _ => collect_refs(v),
            })
            .collect(),
        serde_json::Value::Array(items) => items.iter().flat_map(collect_refs).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn errors_are_problem_json_with_a_request_id() {
    let app = spawn_app(Backend::Sqlite).await;

    let unknown = app.get("/v1/no-such-thing", None).await;
    assert!(unknown.headers().contains_key("x-request-id"));
    assert_problem(unknown, 404).await;

    let wrong_method = app
        .client
        .delete(app.url("/v1/whoami"))
        .send()
        .await
        .expect("send");
    assert_problem(wrong_method, 405).await;
}

/// 300 requests with unique 20 KB methods once grew `/metrics` from 33 KB to
/// 120 MB. Now a method outside the known set is `OTHER`, and `/metrics` is not
/// on the partners' TLS port at all.
#[tokio::test]
async fn a_flood_of_unique_methods_leaves_metrics_bounded() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, before) = app.metrics().await;
    // 2 KB methods: far longer ones are refused before routing by this
    // client's protocol, which would prove nothing.
    for n in 0..100 {
        let method = format!("M{n:03}{}", "X".repeat(2_000));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method token");
        // The server may refuse the request line outright; either way nothing
        // of the method may be kept.
        let _ = app.client.request(method, app.url("/healthz")).send().await;
    }
    let (status, after) = app.metrics().await;
    assert_eq!(status, 200);
    assert!(
        after.len() < before.len() + 8_000,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    assert!(!after.contains("XXXXXXXX"), "a method made it into a label");
    // Partners' port: no /metrics (the same 404 as any unknown path).
    assert_problem(app.get("/metrics", None).await, 404).await;
}
