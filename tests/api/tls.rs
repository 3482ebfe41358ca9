//! Transport: TLS 1.2 and 1.3 only.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{Backend, example_keys, spawn_app};

fn client_config(version: &'static rustls::SupportedProtocolVersion) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(example_keys().join("tls/ca.pem")).expect("CA"))
        .expect("add CA");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[version])
        .expect("version")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_connect() {
    let app = spawn_app(Backend::Sqlite).await;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(version)));
        let tcp = TcpStream::connect(app.addr).await.expect("connect");
        let mut tls = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake succeeds");
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expected));

        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        tls.read_to_string(&mut response).await.ok();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{expected:?}: {response}"
        );
    }
}

/// A TLS 1.1 `ClientHello`, written out by hand because no maintained Rust TLS
/// library will still speak 1.1: `client_version` 3.2, no `supported_versions`
/// extension, and TLS 1.0/1.1-era cipher suites.
fn tls_1_1_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend([0x42; 32]); // random
    body.push(0); // no session id
    // TLS 1.1 suites, and the TLS 1.2 ECDHE-ECDSA-AES-GCM suites the server does
    // support: the only thing wrong with this hello is its version.
    let suites: [u16; 6] = [0xc02b, 0xc02f, 0xc009, 0xc013, 0x002f, 0x0035];
    body.extend(
        u16::try_from(suites.len() * 2)
            .expect("small")
            .to_be_bytes(),
    );
    for suite in suites {
        body.extend(suite.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null
    // Extensions: supported_groups (secp256r1), ec_point_formats (uncompressed)
    // and signature_algorithms (ecdsa_secp256r1_sha256), so that the server could
    // pick its certificate and has no reason to refuse but the version.
    let extensions: Vec<u8> = [
        &[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17][..],
        &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00][..],
        &[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03][..],
    ]
    .concat();
    body.extend(
        u16::try_from(extensions.len())
            .expect("small")
            .to_be_bytes(),
    );
    body.extend(extensions);

    let mut handshake = vec![0x01]; // ClientHello
    handshake.extend(&u32::try_from(body.len()).expect("small").to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 record version
    record.extend(u16::try_from(handshake.len()).expect("small").to_be_bytes());
    record.extend(handshake);
    record
}

#[tokio::test]
async fn a_tls_1_1_client_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");

    tcp.write_all(&tls_1_1_client_hello())
        .await
        .expect("send hello");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut reply),
    )
    .await;

    // The server answers with a fatal alert (record type 21), protocol_version
    // (70), and never with a ServerHello (a handshake record, type 22).
    assert!(!reply.is_empty(), "the server should answer with an alert");
    assert_eq!(reply[0], 21, "an alert record, not a handshake: {reply:?}");
    assert_eq!(
        reply.get(5..7),
        Some(&[2u8, 70][..]),
        "fatal protocol_version: {reply:?}"
    );
}
