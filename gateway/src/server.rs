//! Serving: TLS (rustls, 1.2 and 1.3 only), optional client certificates, and a
//! graceful shutdown that drains in-flight requests.
//!
//! [`run`] takes its listener and its shutdown future as arguments, so the same
//! code serves `crosswalk serve` on 127.0.0.1:8443 and a test on port 0.
//! The accept loop is our own (tokio-rustls + hyper-util) rather than a wrapper
//! crate's, because handlers need to know which client certificate the connection
//! presented, and that is only visible at the TLS layer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::audit;
use crate::audit::checkpoint::{CheckpointSigner, Checkpointer, When};
use crate::audit::refusals::{RefusalWriter, Refusals};
use crate::auth::{Registry, Verifier};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::exchange::{Exchange, ExchangeParts};
use crate::http::{self, AppState, AuditContext, ConnectionInfo};
use crate::policy::Policy;
use crate::pseudonym::Pseudonymizer;
use crate::randomness::{Randomness, RecordIds};
use crate::secrets::GatewayKeys;
use crate::store::Store;
use crate::subjects::SubjectRegistry;
use crate::vault::{RotationPolicy, Vault};

mod connections;

use connections::{ConnectionGate, IdleTimeout};

/// How the accept loop treats connections: the timeouts and caps of
/// `[server]` (see [`connections`]).
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_keep_alive_interval: Duration,
    pub http2_max_concurrent_streams: u32,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl ConnectionSettings {
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(server.tls_handshake_timeout_secs),
            header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            http2_keep_alive_interval: Duration::from_secs(server.http2_keep_alive_interval_secs),
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
            max_connections: server.max_connections,
            max_connections_per_client: server.max_connections_per_client,
        }
    }
}

/// Everything loaded and checked before the listener opens: a gateway that starts
/// has its keys, its registry and a migrated database.
pub struct Gateway {
    pub router: Router,
    pub tls: Arc<rustls::ServerConfig>,
    pub store: Store,
    pub config: Arc<Config>,
    pub policy: Arc<Policy>,
    pub clock: Arc<dyn Clock>,
    /// Signs the audit chain's head: on a timer, and once more at shutdown.
    pub checkpointer: Arc<Checkpointer>,
    /// Sends checkpoints to the outside witnesses, if any are configured.
    pub witnesses: Option<audit::witness::Witnesses>,
    /// Changes whenever `checkpointer` stores a checkpoint: wakes the witnesses.
    pub checkpoint_made: tokio::sync::watch::Receiver<()>,
    /// The metrics `/metrics` serves (the witnesses' deliveries among them).
    pub metrics: Arc<http::metrics::Metrics>,
    /// Writes refusals to the audit log; flushed at shutdown.
    pub refusal_writer: RefusalWriter,
    /// The same exchange the handlers write through: `crosswalk demo` seeds
    /// with it, so seeded data is checked, sealed and audited like real data.
    pub exchange: Arc<Exchange>,
}

impl Gateway {
    /// Builds the gateway from `config`, reading the time from `clock` and
    /// drawing random bytes from `randomness` (both [`SystemClock`] and
    /// [`crate::randomness::OsRandomness`] outside tests).
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        randomness: Arc<dyn Randomness>,
    ) -> anyhow::Result<Self> {
        let keys = GatewayKeys::load(&config)?;
        let registry = Arc::new(Registry::from_config(&config)?);
        let tls = Arc::new(tls_config(&config)?);
        let policy_dir = config.key_path(&config.policy.dir);
        let policy = Arc::new(
            Policy::load(&policy_dir)
                .context("loading the release policy (policy.dir, CROSSWALK_POLICY__DIR)")?,
        );
        tracing::info!(policy_version = %policy.version(), "policy loaded");
        let store = Store::connect(&config.server.database_url)
            .await
            .context("opening the database (server.database_url / DATABASE_URL)")?;
        store.migrate().await.context("applying migrations")?;
        store.check_master_key(&keys.master.key_check()).await?;
        let vault = Vault::new(
            keys.vault.clone(),
            store.clone(),
            RotationPolicy::default(),
            Arc::clone(&randomness),
        );
        let ids = Arc::new(RecordIds::new(Arc::clone(&randomness)));
        let subjects = SubjectRegistry::open(&store, &keys.master, vault.clone()).await?;
        // Partner clusters for rows from before migration 0017, before serving.
        crate::subjects::backfill_clusters(&store, &subjects, clock.as_ref())
            .await
            .context("computing partner clusters for identities stored before them")?;
        audit::partners::record_registry_changes(&store, &config, clock.as_ref())
            .await
            .context("recording partner registry changes in the audit log")?;
        let signer = Arc::new(CheckpointSigner::load(&config)?);
        let gateway_key = signer.public_key().clone();
        let witnesses = audit::witness::Witnesses::from_config(&config)?;
        let (checkpointer, checkpoint_made) = checkpointer(&config, &store, &signer, &clock);
        let metrics = Arc::new(http::metrics::Metrics::default());
        let (refusals, refusal_writer) = Refusals::start(
            store.clone(),
            Arc::clone(&clock),
            config.audit.refusal_queue_capacity,
        );
        let config = Arc::new(config);
        let subjects = Arc::new(subjects);
        let pseudonyms = Arc::new(Pseudonymizer::new(&keys.master));
        let exchange = Arc::new(Exchange::start(
            ExchangeParts {
                config: Arc::clone(&config),
                store: store.clone(),
                registry: Arc::clone(&subjects),
                vault: vault.clone(),
                pseudonyms: Arc::clone(&pseudonyms),
                clock: Arc::clone(&clock),
                ids: Arc::clone(&ids),
            },
            &keys.master,
        ));
        let shared = Shared {
            config: Arc::clone(&config),
            store: store.clone(),
            vault: vault.clone(),
            policy: Arc::clone(&policy),
            pseudonyms: Arc::clone(&pseudonyms),
            clock: Arc::clone(&clock),
            randomness,
            ids,
        };
        let state = AppState {
            exports: shared.exports(signer),
            reads: shared.reads(),
            aggregates: shared.aggregates(),
            registry: subjects,
            pseudonyms,
            vault,
            exchange: Arc::clone(&exchange),
            verifier: Arc::new(Verifier::new(registry, &config, Arc::clone(&clock))),
            config: Arc::clone(&config),
            store: store.clone(),
            metrics: Arc::clone(&metrics),
            policy: Arc::clone(&policy),
            refusals,
            audit: AuditContext {
                clock: Arc::clone(&clock),
                gateway_key,
            },
        };
        Ok(Self {
            router: http::router(state),
            tls,
            store,
            config,
            policy,
            clock,
            checkpointer,
            witnesses,
            checkpoint_made,
            metrics,
            refusal_writer,
            exchange,
        })
    }
}

/// The audit log's checkpointer, and the channel it signals each checkpoint on.
fn checkpointer(
    config: &Config,
    store: &Store,
    signer: &Arc<CheckpointSigner>,
    clock: &Arc<dyn Clock>,
) -> (Arc<Checkpointer>, tokio::sync::watch::Receiver<()>) {
    let (made, checkpoint_made) = tokio::sync::watch::channel(());
    let checkpointer = Checkpointer::new(
        store.clone(),
        Arc::clone(signer),
        Arc::clone(clock),
        config.audit.checkpoint_file.clone(),
    )
    .notifying(made);
    (Arc::new(checkpointer), checkpoint_made)
}

/// The handles the request-serving services share (cheap to clone), so that
/// each service is built once here and lives in [`AppState`].
struct Shared {
    config: Arc<Config>,
    store: Store,
    vault: Vault,
    policy: Arc<Policy>,
    pseudonyms: Arc<Pseudonymizer>,
    clock: Arc<dyn Clock>,
    randomness: Arc<dyn Randomness>,
    ids: Arc<RecordIds>,
}

impl Shared {
    fn exports(&self, signer: Arc<CheckpointSigner>) -> Arc<crate::exports::Exports> {
        Arc::new(crate::exports::Exports {
            config: Arc::clone(&self.config),
            store: self.store.clone(),
            vault: self.vault.clone(),
            policy: Arc::clone(&self.policy),
            pseudonyms: Arc::clone(&self.pseudonyms),
            signer,
            clock: Arc::clone(&self.clock),
            ids: Arc::clone(&self.ids),
        })
    }

    fn reads(&self) -> Arc<crate::reads::Reads> {
        Arc::new(crate::reads::Reads {
            store: self.store.clone(),
            vault: self.vault.clone(),
            policy: Arc::clone(&self.policy),
            pseudonyms: Arc::clone(&self.pseudonyms),
            clock: Arc::clone(&self.clock),
            config: Arc::clone(&self.config),
        })
    }

    fn aggregates(&self) -> Arc<crate::aggregates::Aggregates> {
        Arc::new(crate::aggregates::Aggregates {
            store: self.store.clone(),
            policy: Arc::clone(&self.policy),
            config: self.config.aggregates.clone(),
            clock: Arc::clone(&self.clock),
            randomness: Arc::clone(&self.randomness),
            ids: Arc::clone(&self.ids),
        })
    }
}

/// How often `serve` checkpoints a SQLite WAL in the background: often enough
/// that the WAL stays a few MB under a steady write load.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// `crosswalk serve`: load, listen, serve until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let gateway = Gateway::build(config, Arc::new(SystemClock), crate::randomness::os()).await?;
    serve_gateway(gateway, |_| {}).await
}

/// Serves a built gateway until SIGTERM or Ctrl-C; `on_listening` is called with
/// the bound address once the listener is open (`crosswalk demo` prints its
/// guide there, port 0 included).
pub async fn serve_gateway(
    gateway: Gateway,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    reload_policy_on_sighup(
        Arc::clone(&gateway.policy),
        gateway.store.clone(),
        Arc::clone(&gateway.clock),
    );
    let checkpoints = Arc::clone(&gateway.checkpointer).spawn_timer(Duration::from_secs(
        gateway.config.audit.checkpoint_interval_secs,
    ));
    // Lines not yet accepted when the gateway stops stay pending in the
    // database and go out at the next start.
    let deliveries = gateway.witnesses.map(|witnesses| {
        witnesses.spawn(
            &gateway.store,
            &gateway.clock,
            &gateway.metrics.witness(),
            &gateway.checkpoint_made,
        )
    });
    let wal_checkpoints = gateway.store.spawn_wal_checkpoints(WAL_CHECKPOINT_EVERY);
    let metrics_addr = gateway.config.server.metrics_listen;
    let metrics_listener = TcpListener::bind(metrics_addr).await.with_context(|| {
        format!("listening for /metrics on {metrics_addr} (server.metrics_listen)")
    })?;
    tracing::info!(
        "crosswalk metrics on http://{}/metrics",
        metrics_listener.local_addr()?
    );
    let metrics_server = tokio::spawn(http::metrics::serve_metrics(
        metrics_listener,
        Arc::clone(&gateway.metrics),
    ));
    let addr = gateway.config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        backend = %gateway.store.backend(),
        "crosswalk listening on https://{local}"
    );
    on_listening(local);
    let grace = Duration::from_secs(gateway.config.server.shutdown_grace_secs);
    run(
        listener,
        Serving {
            tls: gateway.tls,
            router: gateway.router,
            settings: ConnectionSettings::from_config(&gateway.config.server),
            metrics: Arc::clone(&gateway.metrics),
        },
        shutdown_signal(),
        grace,
    )
    .await;
    metrics_server.abort();
    // Refusals first, so that the last checkpoint covers them.
    checkpoints.abort();
    if let Some(task) = wal_checkpoints {
        task.abort();
    }
    gateway.refusal_writer.shutdown().await;
    if let Err(e) = gateway.checkpointer.checkpoint(When::IfMoved).await {
        tracing::error!(error = %e, "the shutdown audit checkpoint failed");
    }
    for delivery in deliveries.into_iter().flatten() {
        delivery.abort();
    }
    gateway.store.close().await;
    tracing::info!("crosswalk stopped");
    Ok(())
}

/// What [`run`] serves, and how.
pub struct Serving {
    pub tls: Arc<rustls::ServerConfig>,
    pub router: Router,
    pub settings: ConnectionSettings,
    /// Where refused and open connections are counted.
    pub metrics: Arc<http::metrics::Metrics>,
}

/// Serves `serving.router` over TLS on `listener` until `shutdown` resolves,
/// then stops accepting and waits up to `grace` for in-flight requests to
/// finish.
pub async fn run(
    listener: TcpListener,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let Serving {
        tls,
        router,
        settings,
        metrics,
    } = serving;
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keep_alive_interval)
        .keep_alive_timeout(settings.http2_keep_alive_interval)
        .max_concurrent_streams(settings.http2_max_concurrent_streams);
    let gate = ConnectionGate::new(
        settings.max_connections,
        settings.max_connections_per_client,
        metrics,
    );
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, remote) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over a cap: closed before any TLS work (dropping the socket).
                let Ok(slot) = gate.admit(remote.ip()) else {
                    continue;
                };
                let tcp = IdleTimeout::new(tcp, settings.idle_timeout);
                let acceptor = acceptor.clone();
                let router = router.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = settings.tls_handshake_timeout;
                tokio::spawn(async move {
                    // Held until the connection ends.
                    let _slot = slot;
                    let tls_stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        };
                    let info = ConnectionInfo {
                        client_cert: tls_stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(<[_]>::first)
                            .map(|cert| sha256(cert.as_ref())),
                    };
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(info);
                        router.clone().oneshot(request)
                    });
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                    if let Err(e) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("in-flight requests still running after {}s; stopping", grace.as_secs());
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// TLS 1.2 and 1.3 only, with client certificates from the configured CA
/// requested but optional: partners bound to a certificate are checked per token.
pub fn tls_config(config: &Config) -> Result<rustls::ServerConfig, ConfigError> {
    let err = |key: &str, problem: String| ConfigError::new(&config.source, key, problem);
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let cert_path = config.key_path(&config.keys.tls_cert);
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| err("keys.tls_cert", format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(err(
            "keys.tls_cert",
            format!("{}: no certificate", cert_path.display()),
        ));
    }
    let key_path = config.key_path(&config.keys.tls_key);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| err("keys.tls_key", format!("{}: {e}", key_path.display())))?;

    let ca_path = config.key_path(&config.keys.client_ca);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca_path)
        .map_err(|e| err("keys.client_ca", format!("{}: {e}", ca_path.display())))?
    {
        let cert =
            cert.map_err(|e| err("keys.client_ca", format!("{}: {e}", ca_path.display())))?;
        roots
            .add(cert)
            .map_err(|e| err("keys.client_ca", format!("{}: {e}", ca_path.display())))?;
    }
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|e| err("keys.client_ca", e.to_string()))?;

    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err("keys.tls_cert", e.to_string()))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs, key)
        .map_err(|e| err("keys.tls_key", format!("does not match keys.tls_cert: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// Reloads the policy bundle on every SIGHUP (`kill -HUP`), off the async
/// workers. Installed before the listener opens: SIGHUP's default action would
/// otherwise stop the process. The reload logs its outcome itself; the audit log
/// records it, accepted or refused.
fn reload_policy_on_sighup(policy: Arc<Policy>, store: Store, clock: Arc<dyn Clock>) {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the policy");
                    let reloading = Arc::clone(&policy);
                    // A refused reload is logged by `reload`; the old policy stays.
                    let Ok(outcome) = tokio::task::spawn_blocking(move || reloading.reload()).await
                    else {
                        continue;
                    };
                    let in_force = policy.version();
                    if let Err(e) =
                        audit::record_policy_reload(&store, &outcome, &in_force, clock.as_ref())
                            .await
                    {
                        tracing::error!(error = %e, "the policy reload could not be recorded in the audit log");
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: policy reloads need a restart");
        }
    }
    #[cfg(not(unix))]
    drop((policy, store, clock));
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod seeded_tests;
