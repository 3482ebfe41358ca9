//! Outside audit witnesses (copies a database owner cannot rewrite): the
//! signed checkpoint lines reach a real HTTPS server started here (TLS with
//! the example server certificate), a witness that is down at first gets them
//! once it is up, a gateway restarted before its witness came up sends what
//! was not accepted, and a witness command gets them on stdin, without the
//! gateway's database credentials or settings in its environment.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crosswalk::audit::checkpoint::{Checkpoint, GatewayPublicKey};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::backend_tests;
use crate::helpers::{AppOptions, Backend, TestApp, example_keys, spawn_app_with};
use crate::reads::{refer, referral_body};

backend_tests!(
    checkpoints_reach_an_https_witness_that_was_down_at_first,
    a_restart_sends_what_the_witness_had_not_accepted,
    a_witness_command_gets_the_lines_on_stdin_once_it_accepts_them,
);

/// The secret part of the witness URL: it must never reach a log or a metric.
const URL_TOKEN: &str = "tok-5e3d1a";

/// One POST the witness received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    body: String,
}

/// A real HTTPS server on `addr`, answering 200 to every POST and keeping what
/// it received.
struct Witness {
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Witness {
    async fn start(addr: SocketAddr) -> Self {
        let tls = {
            let dir = example_keys().join("tls");
            let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
                .expect("certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate");
            let key = PrivateKeyDer::from_pem_file(dir.join("server.key.pem")).expect("key");
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config")
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("the witness's port is free again");
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let kept = Arc::clone(&kept);
                            async move {
                                let path = request.uri().path().to_owned();
                                let content_type = request
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned();
                                let body = axum::body::to_bytes(
                                    axum::body::Body::new(request.into_body()),
                                    1 << 16,
                                )
                                .await
                                .unwrap_or_default();
                                kept.lock().expect("received").push(Received {
                                    path,
                                    content_type,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                });
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    axum::body::Body::empty(),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { received, task }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }
}

/// A free local port, not listened on: a witness that is down.
async fn a_port_nobody_listens_on() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("address")
}

fn https_witness_env(addr: SocketAddr) -> Vec<(String, String)> {
    vec![
        (
            "CROSSWALK_AUDIT__CHECKPOINT_INTERVAL_SECS".into(),
            "1".into(),
        ),
        ("CROSSWALK_AUDIT__WITNESS_RETRY_MAX_SECS".into(), "1".into()),
        (
            "CROSSWALK_AUDIT__WITNESS_URL".into(),
            format!("https://localhost:{}/checkpoints/{URL_TOKEN}", addr.port()),
        ),
        // Relative to the example configuration's directory.
        (
            "CROSSWALK_AUDIT__WITNESS_CA_FILE".into(),
            "tls/ca.pem".into(),
        ),
    ]
}

fn gateway_key() -> GatewayPublicKey {
    let pem = std::fs::read_to_string(example_keys().join("gateway/signing.pub.pem"))
        .expect("public key");
    GatewayPublicKey::from_pem(&pem).expect("Ed25519 SPKI")
}

/// The lines of the gateway's witness file (complete lines only).
fn witness_file_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_owned).collect()
}

/// Waits until `lines()` holds every line of the witness file, the file
/// holding at least `at_least`; returns both.
async fn wait_until_delivered(
    app: &TestApp,
    at_least: usize,
    lines: impl Fn() -> Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let file = witness_file_lines(&app.db.witness_file());
        let got = lines();
        if file.len() >= at_least && file.iter().all(|line| got.contains(line)) {
            return (file, got);
        }
        assert!(
            Instant::now() < deadline,
            "the witness did not get every line: file {file:#?}\nreceived {got:#?}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the witness file has `n` complete lines.
async fn wait_for_checkpoints(app: &TestApp, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while witness_file_lines(&app.db.witness_file()).len() < n {
        assert!(
            Instant::now() < deadline,
            "no checkpoint signed:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one series in `/metrics`.
async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app.metrics().await.1;
    assert!(!text.contains(URL_TOKEN), "the URL is in the metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Every line a witness received verifies under the gateway's public key and
/// is one of the witness file's lines.
fn assert_signed_lines(received: &[Received], file: &[String]) {
    let key = gateway_key();
    for post in received {
        assert_eq!(post.path, format!("/checkpoints/{URL_TOKEN}"));
        assert_eq!(post.content_type, "application/json");
        let jws = Checkpoint::jws_of_witness_line(&post.body)
            .expect("a witness line")
            .expect("not blank");
        Checkpoint::verify(&jws, &key).expect("signed by the gateway");
        assert!(
            file.contains(&post.body),
            "{} is not in the witness file",
            post.body
        );
    }
}

async fn checkpoints_reach_an_https_witness_that_was_down_at_first(backend: Backend) {
    let addr = a_port_nobody_listens_on().await;
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: https_witness_env(addr),
        },
    )
    .await;
    refer(&app, &referral_body("Indigo", "Vale", "cbo-north")).await;
    wait_for_checkpoints(&app, 1).await;
    let logs = app
        .wait_for_log("audit checkpoint not accepted by the witness")
        .await;
    assert!(logs.contains("outcome=\"connect\""), "{logs}");
    let failures = r#"crosswalk_audit_witness_deliveries_total{witness="https",outcome="connect"}"#;
    assert!(metric(&app, failures).await.is_some_and(|n| n >= 1.0));

    let witness = Witness::start(addr).await;
    refer(&app, &referral_body("Juniper", "Vale", "cbo-south")).await;
    wait_for_checkpoints(&app, 2).await;
    let (file, _) = wait_until_delivered(&app, 2, || {
        witness.received().into_iter().map(|r| r.body).collect()
    })
    .await;

    let received = witness.received();
    let bodies: Vec<&String> = received.iter().map(|r| &r.body).collect();
    assert_eq!(
        bodies[..file.len()],
        file.iter().collect::<Vec<_>>()[..],
        "in the witness file's order"
    );
    assert_signed_lines(&received, &file);
    let delivered =
        r#"crosswalk_audit_witness_deliveries_total{witness="https",outcome="delivered"}"#;
    assert!(metric(&app, delivered).await.is_some_and(|n| n >= 2.0));
    assert!(!app.logs().contains(URL_TOKEN), "the URL is in the logs");
}

async fn a_restart_sends_what_the_witness_had_not_accepted(backend: Backend) {
    let addr = a_port_nobody_listens_on().await;
    let mut first = spawn_app_with(
        backend,
        AppOptions {
            env: https_witness_env(addr),
        },
    )
    .await;
    refer(&first, &referral_body("Kestrel", "Moor", "cbo-north")).await;
    wait_for_checkpoints(&first, 1).await;
    first
        .wait_for_log("audit checkpoint not accepted by the witness")
        .await;
    first.stop().await;
    let undelivered = witness_file_lines(&first.db.witness_file());
    assert!(!undelivered.is_empty());

    let witness = Witness::start(addr).await;
    let mut env = https_witness_env(addr);
    env.push(("DATABASE_URL".into(), first.db.url.clone()));
    env.push((
        "CROSSWALK_AUDIT__CHECKPOINT_FILE".into(),
        first.db.witness_file().display().to_string(),
    ));
    let restarted = spawn_app_with(backend, AppOptions { env }).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let bodies = || -> Vec<String> { witness.received().into_iter().map(|r| r.body).collect() };
    while !undelivered.iter().all(|line| bodies().contains(line)) {
        assert!(
            Instant::now() < deadline,
            "the restarted gateway did not send {undelivered:#?}; got {:#?}\n{}",
            bodies(),
            restarted.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_signed_lines(
        &witness.received(),
        &witness_file_lines(&first.db.witness_file()),
    );
}

async fn a_witness_command_gets_the_lines_on_stdin_once_it_accepts_them(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let accepting = dir.path().join("accepting");
    let received = dir.path().join("received.jsonl");
    let environment = dir.path().join("environment");
    // Refuses (exit 1) until `accepting` exists, then appends the line.
    let script = format!(
        "test -e '{}' || exit 1; env > '{}'; cat >> '{}'",
        accepting.display(),
        environment.display(),
        received.display()
    );
    let command = serde_json::to_string(&["sh", "-c", &script]).expect("JSON is TOML here");
    let app = spawn_app_with(
        backend,
        AppOptions {
            env: vec![
                (
                    "CROSSWALK_AUDIT__CHECKPOINT_INTERVAL_SECS".into(),
                    "1".into(),
                ),
                ("CROSSWALK_AUDIT__WITNESS_RETRY_MAX_SECS".into(), "1".into()),
                ("CROSSWALK_AUDIT__WITNESS_COMMAND".into(), command),
            ],
        },
    )
    .await;
    refer(&app, &referral_body("Linnet", "Shaw", "cbo-north")).await;
    wait_for_checkpoints(&app, 1).await;
    let logs = app
        .wait_for_log("audit checkpoint not accepted by the witness")
        .await;
    assert!(logs.contains("outcome=\"exit\""), "{logs}");
    assert!(!received.exists(), "nothing accepted yet");

    std::fs::write(&accepting, b"").expect("accept from now on");
    refer(&app, &referral_body("Merlin", "Shaw", "cbo-south")).await;
    wait_for_checkpoints(&app, 2).await;
    let (file, got) = wait_until_delivered(&app, 2, || witness_file_lines(&received)).await;
    assert_eq!(got[..file.len()], file[..], "each line once, in order");

    let environment = std::fs::read_to_string(&environment).expect("the command's environment");
    let names: Vec<&str> = environment
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(
        !names
            .iter()
            .any(|name| *name == "DATABASE_URL" || name.starts_with("CROSSWALK_")),
        "{names:?}"
    );
    assert!(names.contains(&"PATH"), "the rest of the environment stays");
}
