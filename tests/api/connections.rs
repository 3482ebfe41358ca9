//! Connection limits (before them: no header-read timeout, no idle or
//! connection limits; 300 TLS connections, half with a partial header, were
//! all open after 70 s). Raw TLS clients against the real server: a slowloris
//! header is cut off, a silent connection is closed, and over the per-client
//! cap a new connection is closed at once and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::helpers::{AppOptions, Backend, TestApp, example_keys, spawn_app_with};

fn connector() -> TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(example_keys().join("tls/ca.pem")).expect("CA") {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to the gateway, handshake done.
async fn open(app: &TestApp) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(app.addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    connector().connect(name, tcp).await
}

/// Reads until the server closes the connection (or `limit` passes); returns
/// how long that took, or `None` if it stayed open.
async fn closed_within(stream: &mut TlsStream<TcpStream>, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0_u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn options(env: &[(&str, &str)]) -> AppOptions {
    AppOptions {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[tokio::test]
async fn a_slowloris_header_is_cut_off_and_a_silent_connection_closed() {
    let app = spawn_app_with(
        Backend::Sqlite,
        options(&[
            ("CROSSWALK_SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
            ("CROSSWALK_SERVER__IDLE_TIMEOUT_SECS", "3"),
        ]),
    )
    .await;

    // A header that never ends, a byte every half second (not silent).
    let mut slow = open(&app).await.expect("TLS");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut cut = None;
    while started.elapsed() < Duration::from_secs(10) {
        if slow.write_all(b"X").await.is_err() || slow.flush().await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        if let Some(after) = closed_within(&mut slow, Duration::from_millis(500)).await {
            cut = Some(after + started.elapsed());
            break;
        }
    }
    let cut = cut.expect("the trickled header was still open after 10 s");
    assert!(cut < Duration::from_secs(8), "cut after {cut:?}");

    // A connection that says nothing at all.
    let mut silent = open(&app).await.expect("TLS");
    let closed = closed_within(&mut silent, Duration::from_secs(10))
        .await
        .expect("the silent connection was still open after 10 s");
    assert!(
        closed >= Duration::from_secs(1),
        "closed too early: {closed:?}"
    );

    // A well-behaved request on a fresh connection still works.
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

#[tokio::test]
async fn over_the_per_client_cap_a_connection_is_closed_at_once_and_counted() {
    let app = spawn_app_with(
        Backend::Sqlite,
        options(&[("CROSSWALK_SERVER__MAX_CONNECTIONS_PER_CLIENT", "3")]),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(open(&app).await.expect("within the cap"));
    }
    let refused = tokio::time::timeout(Duration::from_secs(5), open(&app))
        .await
        .expect("refused promptly, not left hanging");
    assert!(refused.is_err(), "a fourth connection from one client");
    let (_, metrics) = app.metrics().await;
    assert!(
        metrics.contains(r#"crosswalk_connections_refused_total{reason="per_client"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("crosswalk_connections_open 3"),
        "{metrics}"
    );

    // A closed connection frees its slot.
    let mut first = held.remove(0);
    first.shutdown().await.expect("close");
    drop(first);
    let started = Instant::now();
    loop {
        if open(&app).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
