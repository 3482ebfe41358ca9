//! Sending one witness line: to a command's stdin, or as an HTTPS POST.
//!
//! The HTTPS client is built from what the gateway already has (rustls,
//! tokio-rustls and hyper's HTTP/1.1 client connection) rather than a client
//! library: one POST every few seconds needs no pool, no redirects and no
//! proxy support, and it adds no dependency. A fresh connection per line; a
//! witness that redirects is a failure (`status`), as is any non-2xx answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt as _;

use super::{Outcome, WitnessKind, WitnessUrl};

/// How long a witness command may take to accept a line.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one HTTPS delivery may take, connection and TLS included.
pub const HTTPS_TIMEOUT: Duration = Duration::from_secs(10);

/// A witness, ready to send to.
pub(super) enum Target {
    Command(Vec<String>),
    Https {
        url: WitnessUrl,
        tls: Arc<rustls::ClientConfig>,
    },
}

/// Why a line was not accepted: the outcome and, for the log, a detail that
/// names no URL and quotes no output.
#[derive(Debug)]
pub(super) struct Failure {
    outcome: Outcome,
    detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl Failure {
    fn new(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            detail: detail.into(),
        }
    }

    pub(super) fn outcome(&self) -> Outcome {
        self.outcome
    }
}

impl Target {
    pub(super) fn command(argv: Vec<String>) -> Self {
        Self::Command(argv)
    }

    pub(super) fn https(url: WitnessUrl, tls: Arc<rustls::ClientConfig>) -> Self {
        Self::Https { url, tls }
    }

    pub(super) fn kind(&self) -> WitnessKind {
        match self {
            Self::Command(_) => WitnessKind::Command,
            Self::Https { .. } => WitnessKind::Https,
        }
    }

    /// Sends `line`; `Ok` once the witness accepted it.
    pub(super) async fn send(&self, line: &str) -> Result<(), Failure> {
        match self {
            Self::Command(argv) => tokio::time::timeout(COMMAND_TIMEOUT, run_command(argv, line))
                .await
                .map_err(|_| Failure::new(Outcome::Timeout, "the command did not exit in time"))?,
            Self::Https { url, tls } => tokio::time::timeout(HTTPS_TIMEOUT, post(url, tls, line))
                .await
                .map_err(|_| Failure::new(Outcome::Timeout, "no answer in time"))?,
        }
    }
}

/// Runs the command with `line` (and a newline) on its stdin.
async fn run_command(words: &[String], line: &str) -> Result<(), Failure> {
    let Some((program, args)) = words.split_first() else {
        return Err(Failure::new(Outcome::Spawn, "the command is empty"));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Dropped on timeout: the child is killed, not left behind.
        .kill_on_drop(true);
    // The database's credentials and the gateway's settings stay here.
    command.env_remove("DATABASE_URL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CROSSWALK_") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().map_err(|e| {
        Failure::new(
            Outcome::Spawn,
            format!("cannot start the command: {}", e.kind()),
        )
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        // A command that exits without reading is judged by its status.
        let _ = stdin.write_all(&bytes).await;
        drop(stdin);
    }
    let status = child.wait().await.map_err(|e| {
        Failure::new(
            Outcome::Exit,
            format!("waiting for the command: {}", e.kind()),
        )
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::new(
            Outcome::Exit,
            format!("the command exited with {status}"),
        ))
    }
}

/// POSTs `line` to `url` on a connection of its own.
async fn post(
    url: &WitnessUrl,
    tls: &Arc<rustls::ClientConfig>,
    line: &str,
) -> Result<(), Failure> {
    let tcp = tokio::net::TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|e| Failure::new(Outcome::Connect, format!("cannot connect: {}", e.kind())))?;
    let name = ServerName::try_from(url.host().to_owned())
        .map_err(|_| Failure::new(Outcome::Tls, "the host is not a valid TLS server name"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| Failure::new(Outcome::Tls, format!("TLS handshake: {e}")))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| Failure::new(Outcome::Http, format!("HTTP: {e}")))?;
    // Drives the connection until the request is answered and the sender dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let authority = url
        .uri
        .authority()
        .map_or_else(|| url.host().to_owned(), |a| a.as_str().to_owned());
    let request = hyper::Request::post(
        url.uri
            .path_and_query()
            .map_or("/", hyper::http::uri::PathAndQuery::as_str),
    )
    .header(hyper::header::HOST, authority)
    .header(hyper::header::CONTENT_TYPE, "application/json")
    .header(
        hyper::header::USER_AGENT,
        concat!("crosswalk/", env!("CARGO_PKG_VERSION")),
    )
    .body(axum::body::Body::from(line.to_owned()))
    .map_err(|_| Failure::new(Outcome::Http, "the request could not be built"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::new(Outcome::Http, format!("HTTP: {e}")))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::new(
            Outcome::Status,
            format!("the witness answered {}", status.as_u16()),
        ))
    }
}

/// A TLS 1.2+ client trusting the certificates in `ca_file`, or the system's
/// CA bundle when there is none. The error names the problem, not the key.
pub(super) fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let path = match ca_file {
        Some(path) => path.to_owned(),
        None => super::system_ca_bundle().ok_or_else(|| {
            "audit.witness_url is set but no system CA bundle was found: name the witness \
             server's CA (PEM) here"
                .to_owned()
        })?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(&path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!("{}: no CA certificate", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
