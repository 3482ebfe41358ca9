//! Input bounds: every date the API takes has a range — contact, outcome and
//! case times and consent periods from the program start
//! (`exchange.program_start`) to now, dates of birth from 1900 to today,
//! export windows and aggregate months from the program start — and a body
//! over `server.request_body_limit_bytes` is the same `413` problem over
//! HTTP/2 as over HTTP/1.1.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::exchange::post;
use crate::helpers::{
    AppOptions, Backend, TestApp, assert_problem, example_keys, rfc3339_from_now, spawn_app,
    spawn_app_with,
};
use crate::reads::token;

backend_tests!(
    dates_out_of_range_name_the_field_and_store_nothing,
    export_and_aggregate_ranges_start_at_the_program_start,
);

/// The program start the range tests configure: later than the 2000-01-01
/// floor, so that a date between the two shows the setting is what is used.
const PROGRAM_START: &str = "2024-07-01";

async fn spawn_with_program_start(backend: Backend) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            env: vec![(
                "CROSSWALK_EXCHANGE__PROGRAM_START".to_owned(),
                PROGRAM_START.to_owned(),
            )],
        },
    )
    .await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    crate::exchange::count(&app.db_pool().await, sql).await
}

/// The fields a problem names.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str().map(str::to_owned))
        .collect()
}

fn referral(contact_at: &str, dob: Option<&str>) -> Value {
    let mut body = json!({
        "subject": {"given_name": "Ada", "surname": "Birch"},
        "contact_at": contact_at,
        "district": "north",
        "resources": ["other"],
    });
    if let Some(dob) = dob {
        body["subject"]["dob"] = json!(dob);
    }
    body
}

async fn dates_out_of_range_name_the_field_and_store_nothing(backend: Backend) {
    let app = spawn_with_program_start(backend).await;
    let id = referrals_out_of_range_are_refused(&app).await;
    records_out_of_range_are_refused(&app, &id).await;
    for (what, sql) in [
        ("outcomes", "SELECT COUNT(*) FROM outcomes"),
        ("case statuses", "SELECT COUNT(*) FROM cases"),
        ("consents", "SELECT COUNT(*) FROM consents"),
        (
            "audit entries but the referrals'",
            "SELECT COUNT(*) FROM audit_log WHERE action NOT IN ('partner.change', 'referral.create')",
        ),
    ] {
        assert_eq!(count(&app, sql).await, 0, "no {what} stored");
    }
}

/// Posts `body` and asserts a 400 problem naming exactly `field`.
async fn assert_refused(app: &TestApp, path: &str, partner: &str, body: &Value, field: &str) {
    let problem = assert_problem(post(app, path, partner, body).await, 400).await;
    assert_eq!(fields(&problem), [field], "{body}: {problem}");
}

/// Single referrals and batch lines out of range; returns the id of the one
/// batch line at the program start, which is kept.
async fn referrals_out_of_range_are_refused(app: &TestApp) -> String {
    let now = rfc3339_from_now(-60);
    for (body, field) in [
        (referral("0000-01-01T00:00:00Z", None), "contact_at"),
        // The last second before the program start, in UTC and west of it.
        (referral("2024-06-30T23:59:59Z", None), "contact_at"),
        (referral("2024-06-30T16:59:59-07:00", None), "contact_at"),
        (referral("9999-12-31T23:59:59Z", None), "contact_at"),
        (referral(&now, Some("1899-12-31")), "subject.dob"),
        (referral(&now, Some(&days_from_today(2))), "subject.dob"),
    ] {
        assert_refused(app, "/v1/referrals", "pd", &body, field).await;
    }
    let year_zero = referral("0000-01-01T00:00:00Z", None);
    let problem = assert_problem(post(app, "/v1/referrals", "pd", &year_zero).await, 400).await;
    assert!(
        problem["errors"][0]["problem"]
            .as_str()
            .is_some_and(|d| d.contains(PROGRAM_START)),
        "names the earliest date: {problem}"
    );
    assert_eq!(count(app, "SELECT COUNT(*) FROM referrals").await, 0);

    // A batch: a line out of range is refused naming the field; a date of
    // birth out of range costs the line only that date (stored without it,
    // and named); the program start itself is inside the range.
    let body = [
        year_zero,
        referral(&now, Some("1899-12-31")),
        referral("2024-07-01T00:00:00Z", Some("1900-01-01")),
    ]
    .iter()
    .fold(String::new(), |body, line| body + &line.to_string() + "\n");
    let results = crate::exchange::batch(app, body, None).await;
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(
        fields(&results[0]["problem"]),
        ["contact_at"],
        "{results:?}"
    );
    assert_eq!(
        results[1]["dropped"][0]["field"], "subject.dob",
        "{results:?}"
    );
    assert!(results[1]["referral"]["id"].is_string(), "{results:?}");
    assert_eq!(count(app, "SELECT COUNT(*) FROM referrals").await, 2);
    results[2]["referral"]["id"]
        .as_str()
        .expect("the line at the program start is kept")
        .to_owned()
}

/// Outcomes and consents on the referral `id`, and health case statuses.
async fn records_out_of_range_are_refused(app: &TestApp, id: &str) {
    let now = rfc3339_from_now(-60);
    // cbo-north is the referral's CBO (the routing default).
    for occurred_at in ["0000-01-01T00:00:00Z", "2024-06-30T23:59:59Z"] {
        let body = json!({"kind": "contact_attempted", "occurred_at": occurred_at});
        let path = format!("/v1/referrals/{id}/outcomes");
        assert_refused(app, &path, "cbo-north", &body, "occurred_at").await;
    }

    let case = |effective_at: &str, dob: &str| {
        json!({
            "subject": {"given_name": "Ada", "surname": "Birch", "dob": dob},
            "case_ref": "MRN-16-4",
            "program": "mental_health",
            "status": "enrolled",
            "effective_at": effective_at,
        })
    };
    for (body, field) in [
        (case("0000-01-01T00:00:00Z", "1979-04-12"), "effective_at"),
        (case("2024-06-30T23:59:59Z", "1979-04-12"), "effective_at"),
        (case(&now, "1899-12-31"), "subject.dob"),
    ] {
        assert_refused(app, "/v1/cases", "county-health", &body, field).await;
    }

    let in_a_day = rfc3339_from_now(86_400);
    for (start, end, field) in [
        ("0000-01-01T00:00:00Z", in_a_day.as_str(), "period.start"),
        ("2024-06-30T23:59:59Z", in_a_day.as_str(), "period.start"),
        (now.as_str(), "9999-12-31T23:59:59Z", "period.end"),
        (
            &rfc3339_from_now(400 * 86_400),
            &rfc3339_from_now(800 * 86_400),
            "period.start",
        ),
    ] {
        let mut body =
            crate::consents::consent_body(json!({"referral": id}), &["police"], &["operational"]);
        body["period"] = json!({"start": start, "end": end});
        assert_refused(app, "/v1/consents", "cbo-north", &body, field).await;
    }
}

/// The date (UTC) `days` from today.
fn days_from_today(days: i64) -> String {
    rfc3339_from_now(days * 86_400)[..10].to_owned()
}

async fn export_and_aggregate_ranges_start_at_the_program_start(backend: Backend) {
    let app = spawn_with_program_start(backend).await;
    let evaluator = token("evaluator");
    let beyond_a_year = days_from_today(367);
    for (body, expected) in [
        (
            json!({"study": "demo-study", "from": "0000-01-01"}),
            vec!["from"],
        ),
        (
            json!({"study": "demo-study", "from": "-9999-01-01"}),
            vec!["from"],
        ),
        (
            json!({"study": "demo-study", "from": "2024-06-30"}),
            vec!["from"],
        ),
        (
            json!({"study": "demo-study", "to": "99999-12-31"}),
            vec!["to"],
        ),
        (
            json!({"study": "demo-study", "to": beyond_a_year}),
            vec!["to"],
        ),
        (
            json!({"study": "demo-study", "from": "1970-01-01", "to": "9999-12-31"}),
            vec!["from", "to"],
        ),
    ] {
        let problem =
            assert_problem(post(&app, "/v1/exports", "evaluator", &body).await, 400).await;
        assert_eq!(fields(&problem), expected, "{body}: {problem}");
    }
    // The program start and a `to` some months ahead ("this year") are inside
    // the range: with no referral in it, the answer is "no data", not a bad
    // request.
    for body in [
        json!({"study": "demo-study", "from": PROGRAM_START, "to": "2024-07-31"}),
        json!({"study": "demo-study", "from": PROGRAM_START, "to": days_from_today(200)}),
    ] {
        let response = app
            .client
            .post(app.url("/v1/exports"))
            .bearer_auth(&evaluator)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_problem(response, 422).await;
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM exports").await, 0);

    for (query, parameter) in [
        ("from=2024-06&to=2024-07", "from"),
        ("from=2000-01&to=2000-01", "from"),
        ("from=0000-01&to=2024-07", "from"),
    ] {
        let response = app
            .client
            .get(app.url(&format!("/v1/aggregates/outcomes?{query}")))
            .bearer_auth(token("pd"))
            .send()
            .await
            .expect("request");
        let problem = assert_problem(response, 400).await;
        assert_eq!(fields(&problem), [parameter], "{query}: {problem}");
    }
    let response = app
        .client
        .get(app.url("/v1/aggregates/outcomes?from=2024-07&to=2024-07"))
        .bearer_auth(token("pd"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200, "the program start's month");
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'export.%'"
        )
        .await,
        0
    );
}

/// A client like the helpers' one (the example CA, rustls), held to one HTTP
/// version: ALPN offers only `h2`, or only `http/1.1`.
fn client_for(version: reqwest::Version) -> reqwest::Client {
    let ca = std::fs::read(example_keys().join("tls/ca.pem")).expect("example CA");
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .timeout(Duration::from_secs(30));
    let builder = if version == reqwest::Version::HTTP_2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().expect("reqwest client")
}

/// Not per backend: the body limit is applied before any handler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_is_the_same_413_problem_over_http2_as_over_http1() {
    let app = spawn_app(Backend::Sqlite).await;
    // The example limit is 1 MiB; whitespace is valid JSON padding.
    let oversize = vec![b' '; OVERSIZE];
    let mut problems = Vec::new();
    for version in [reqwest::Version::HTTP_11, reqwest::Version::HTTP_2] {
        let client = client_for(version);
        // With a content-length (refused before the body is read) and
        // streamed without one (refused once the limit is crossed).
        for streamed in [false, true] {
            let body = if streamed {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    oversize.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
                reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
            } else {
                reqwest::Body::from(oversize.clone())
            };
            let response = client
                .post(app.url("/v1/referrals"))
                .bearer_auth(token("pd"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{version:?}, streamed {streamed}: {e:?}"));
            assert_eq!(response.version(), version);
            problems.push(assert_problem(response, 413).await);
        }
        // The connection still serves the next request.
        let next = client
            .post(app.url("/v1/referrals"))
            .bearer_auth(token("pd"))
            .json(&referral(&rfc3339_from_now(-60), None))
            .send()
            .await
            .expect("the next request");
        assert_eq!(next.status().as_u16(), 201, "{version:?}");
    }
    // A client that sends its whole body before it reads the answer, as curl
    // does: the stream must not be reset under it.
    let (status, content_type, body) =
        tokio::time::timeout(Duration::from_mins(1), h2_post_whole_body(&app, OVERSIZE))
            .await
            .expect("the upload finishes")
            .unwrap_or_else(|e| panic!("HTTP/2, whole body: {e}"));
    assert_eq!(
        (status, content_type.as_str()),
        (413, "application/problem+json")
    );
    problems.push(serde_json::from_slice(&body).expect("a JSON problem"));
    for problem in &problems {
        assert_eq!(problem, &problems[0], "the same problem every way");
    }
    assert_eq!(problems[0]["title"], "Payload Too Large");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM referrals").await, 2);
}

/// Three times the example's `server.request_body_limit_bytes`.
const OVERSIZE: usize = 3 << 20;

/// Posts `len` bytes of whitespace as a referral over a raw HTTP/2 stream,
/// sending all of it as flow control allows before reading the answer.
/// Returns the answer's status, content type and body, or what stopped the
/// upload.
async fn h2_post_whole_body(app: &TestApp, len: usize) -> Result<(u16, String, Vec<u8>), String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};

    let ca = std::fs::read(example_keys().join("tls/ca.pem")).expect("example CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let (client, connection) = h2::client::handshake(stream)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("HTTP/2 ready");
    let request = hyper::Request::post(app.url("/v1/referrals"))
        .header("authorization", format!("Bearer {}", token("pd")))
        .header("content-type", "application/json")
        .header("content-length", len)
        .body(())
        .expect("request");
    let (response, mut upload) = client
        .send_request(request, false)
        .map_err(|e| format!("request refused: {e}"))?;
    let mut left = len;
    while left > 0 {
        upload.reserve_capacity(left.min(64 << 10));
        let granted = match std::future::poll_fn(|cx| upload.poll_capacity(cx)).await {
            Some(Ok(granted)) => granted.min(left),
            Some(Err(e)) => return Err(format!("reset with {left} bytes unsent: {e}")),
            None => return Err(format!("closed with {left} bytes unsent")),
        };
        left -= granted;
        upload
            .send_data(hyper::body::Bytes::from(vec![b' '; granted]), left == 0)
            .map_err(|e| format!("reset with {left} bytes unsent: {e}"))?;
    }
    let response = response.await.map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut answer = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = answer.data().await {
        let chunk = chunk.map_err(|e| format!("answer cut off: {e}"))?;
        let _ = answer.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    Ok((status, content_type, body))
}
