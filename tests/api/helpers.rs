//! Test harness: the real `crosswalk` binary, serving over real TLS on port 0, on
//! its own SQLite file or its own PostgreSQL database, with the real example keys.
//!
//! PostgreSQL tests run when `TEST_DATABASE_URL` names a server
//! (`postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own
//! database there. Without it they print that they were skipped — except under CI
//! (`CI` set), where a missing PostgreSQL fails the test.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

/// How long a debug build may take to migrate and start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed test function, in
/// modules named after the function: `whoami::sqlite`, `whoami::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_available(concat!(module_path!(), "::postgres")) {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            }
        }
    )*};
}

/// Whether PostgreSQL tests can run; says so loudly when they are skipped, and
/// fails under CI, where they must run.
pub fn postgres_available(test: &str) -> bool {
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test}: CI must run the PostgreSQL tests: set TEST_DATABASE_URL"
    );
    eprintln!("SKIPPED {test}: set TEST_DATABASE_URL=postgres://... to run it on PostgreSQL");
    false
}

/// The repository root (tests run with the crate directory as working directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_owned()
}

pub fn example_keys() -> PathBuf {
    repo_root().join("keys-example")
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_crosswalk")
}

/// A fresh, empty database for one test.
pub struct TestDatabase {
    pub url: String,
    /// Holds the SQLite file's directory for the test's lifetime.
    _dir: tempfile::TempDir,
    /// The gateway's audit witness file, in that directory.
    witness: PathBuf,
}

impl TestDatabase {
    /// Where this test's gateway appends its audit checkpoints (beside the
    /// SQLite file; never the repository's `./data/`).
    pub fn witness_file(&self) -> PathBuf {
        self.witness.clone()
    }

    pub async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("crosswalk.db").display()),
            Backend::Postgres => create_postgres_database().await,
        };
        let witness = dir.path().join("audit-checkpoints.jsonl");
        Self {
            url,
            _dir: dir,
            witness,
        }
    }
}

async fn create_postgres_database() -> String {
    use sqlx::Connection as _;
    let admin_url = std::env::var("TEST_DATABASE_URL").expect("checked by postgres_available");
    let name = format!(
        "crosswalk_test_{}",
        crosswalk::randomness::unique_name_suffix(&crosswalk::randomness::OsRandomness)
            .expect("randomness")
    );
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// Options for one gateway process.
#[derive(Default)]
pub struct AppOptions {
    /// Extra environment, e.g. `CROSSWALK_PARTNERS__PD__ACTIVE=false`.
    pub env: Vec<(String, String)>,
}

/// A running gateway and a client that trusts its CA.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The plain-HTTP `/metrics` listener (`server.metrics_listen`, port 0 here).
    pub metrics_addr: SocketAddr,
    pub client: reqwest::Client,
    child: Child,
    logs: Arc<Mutex<String>>,
    pub db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, AppOptions::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: AppOptions) -> TestApp {
    spawn_app_configured(backend, &example_keys().join("crosswalk.toml"), options).await
}

/// Starts the gateway with the configuration file `config`.
pub async fn spawn_app_configured(backend: Backend, config: &Path, options: AppOptions) -> TestApp {
    let db = TestDatabase::create(backend).await;
    let mut command = Command::new(binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("DATABASE_URL", &db.url)
        .env("CROSSWALK_AUDIT__CHECKPOINT_FILE", db.witness_file())
        // Exports beside the database, never under the repository's `./data/`.
        .env(
            "CROSSWALK_EXPORTS__DIR",
            db.witness_file().with_file_name("exports"),
        )
        .env(
            "RUST_LOG",
            "debug,sqlx=warn,hyper=info,h2=info,rustls=info,tokio=info",
        )
        // Port 0: tests run side by side; 9464 would be taken by the first.
        .env("CROSSWALK_SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .envs(options.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start crosswalk serve");
    let logs = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (metrics_tx, metrics_rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let logs = Arc::clone(&logs);
        let addr_tx = addr_tx.clone();
        let metrics_tx = metrics_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("metrics on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or_default();
                    let _ = metrics_tx.send(addr.parse::<SocketAddr>().ok());
                }
                if let Some(rest) = line.split("listening on https://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = addr_tx.send(addr.parse::<SocketAddr>().ok());
                }
                let mut logs = logs.lock().expect("log buffer");
                logs.push_str(&line);
                logs.push('\n');
            }
        });
    }
    drop(addr_tx);
    drop(metrics_tx);
    let Ok(Some(addr)) = addr_rx.recv_timeout(STARTUP_TIMEOUT) else {
        let _ = child.kill();
        panic!(
            "the gateway did not start:\n{}",
            logs.lock().expect("log buffer")
        );
    };
    // Logged before the API listener, so it has arrived by now.
    let Ok(Some(metrics_addr)) = metrics_rx.recv_timeout(Duration::from_secs(5)) else {
        let _ = child.kill();
        panic!(
            "the gateway did not say where /metrics is:\n{}",
            logs.lock().expect("log buffer")
        );
    };
    TestApp {
        addr,
        metrics_addr,
        client: client(None),
        child,
        logs,
        db,
    }
}

/// A client that trusts the example CA, optionally presenting a partner's client
/// certificate.
pub fn client(partner_cert: Option<&str>) -> reqwest::Client {
    let ca = std::fs::read(example_keys().join("tls/ca.pem")).expect("example CA");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .timeout(Duration::from_secs(30));
    if let Some(partner) = partner_cert {
        let dir = example_keys().join("partners");
        let mut pem = std::fs::read(dir.join(format!("{partner}.cert.pem"))).expect("client cert");
        pem.extend(std::fs::read(dir.join(format!("{partner}.cert.key.pem"))).expect("client key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity PEM"));
    }
    builder.build().expect("reqwest client")
}

impl TestApp {
    /// `GET /metrics` from the metrics listener (plain HTTP): the status and
    /// the text.
    pub async fn metrics(&self) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(format!("http://{}/metrics", self.metrics_addr))
            .send()
            .await
            .expect("metrics request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("metrics text"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Everything the process has printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().expect("log buffer").clone()
    }

    /// Waits until the logs contain `needle` (log lines are written asynchronously).
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        get_with(&self.client, &self.url(path), token).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit and returns its status. Async, so that the
    /// client's connections keep being driven (an HTTP/2 client must answer the
    /// server's shutdown PING for the connection to close gracefully).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

pub async fn get_with(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request reaches the gateway")
}

/// A token from `crosswalk token issue`, exactly as a developer would mint one.
pub fn issue_token(partner: &str) -> String {
    let output = Command::new(binary())
        .args([
            "token",
            "issue",
            "--partner",
            partner,
            "--ttl",
            "10m",
            "--config",
        ])
        .arg(example_keys().join("crosswalk.toml"))
        .output()
        .expect("run crosswalk token issue");
    assert!(
        output.status.success(),
        "token issue failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The current Unix time, for hand-made tokens.
pub fn now() -> i64 {
    i64::try_from(
        std::time::UNIX_EPOCH
            .elapsed()
            .expect("clock after 1970")
            .as_secs(),
    )
    .expect("fits")
}

/// Signs `claims` with a partner's example Ed25519 key, as a partner system would.
pub fn sign_as(partner_key: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(example_keys().join(format!("partners/{partner_key}.key.pem")))
        .expect("partner key");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("Ed25519 PEM");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &key,
    )
    .expect("sign")
}

/// Standard claims for `sub`, valid now for ten minutes.
pub fn claims_for(sub: &str) -> serde_json::Value {
    let now = now();
    json!({ "sub": sub, "aud": "crosswalk", "iat": now, "nbf": now, "exp": now + 600 })
}

/// Asserts a response is a problem+json with `status`, and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string(), "problem has a title: {body}");
    body
}

/// Runs a `crosswalk` command against `db` (its database and its witness file)
/// with the example configuration; returns its exit code, stdout and stderr.
pub fn run_cli(args: &[&str], db: &TestDatabase) -> (Option<i32>, String, String) {
    let output = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(example_keys().join("crosswalk.toml"))
        .env("DATABASE_URL", &db.url)
        .env("CROSSWALK_AUDIT__CHECKPOINT_FILE", db.witness_file())
        .output()
        .expect("run crosswalk");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl TestApp {
    /// Stops the gateway with SIGTERM and waits for it to exit, so that what it
    /// wrote is on disk (SQLite checkpoints its WAL on close).
    pub async fn stop(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        assert!(
            self.wait_exit(Duration::from_secs(30)).await.is_some(),
            "still running after SIGTERM:\n{}",
            self.logs()
        );
    }

    /// Kills the gateway with SIGKILL (`Child::kill` on Unix) and waits until it
    /// is gone: no graceful shutdown, no last checkpoint, no WAL checkpoint —
    /// what a crash, the OOM killer or a pulled container leaves.
    pub async fn kill(&mut self) {
        use std::os::unix::process::ExitStatusExt as _;
        self.child.kill().expect("SIGKILL the gateway");
        let status = self.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(9),
            "killed by SIGKILL:\n{}",
            self.logs()
        );
    }

    /// A connection pool on the gateway's database, to check what it stored.
    pub async fn db_pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.db.url)
            .await
            .expect("connect to the test database")
    }
}

/// Everything the database holds at rest: for SQLite, the raw bytes of the file
/// and its WAL; for PostgreSQL, every row as text plus the raw bytes of every
/// `bytea` value.
pub async fn data_at_rest(db: &TestDatabase) -> Vec<u8> {
    use sqlx::{Connection as _, Row as _};
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let mut bytes = std::fs::read(path).expect("database file");
        for suffix in ["-wal", "-journal"] {
            if let Ok(more) = std::fs::read(format!("{path}{suffix}")) {
                bytes.extend(more);
            }
        }
        return bytes;
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let columns: Vec<(String, String, String)> = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let mut tables: Vec<&String> = columns.iter().map(|(t, _, _)| t).collect();
    tables.sort();
    tables.dedup();
    let mut dump = Vec::new();
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{table}\" t"
        )))
        .fetch_all(&mut conn)
        .await
        .expect("rows");
        for row in rows {
            dump.extend(row.get::<String, _>(0).into_bytes());
            dump.push(b'\n');
        }
    }
    for (table, column, _) in columns.iter().filter(|(_, _, kind)| kind == "bytea") {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT \"{column}\" FROM \"{table}\""
        )))
        .fetch_all(&mut conn)
        .await
        .expect("bytea rows");
        for row in rows {
            dump.extend(row.get::<Option<Vec<u8>>, _>(0).unwrap_or_default());
            dump.push(b'\n');
        }
    }
    dump
}

/// An RFC 3339 time `offset_secs` from now (negative: in the past).
pub fn rfc3339_from_now(offset_secs: i64) -> String {
    chrono::DateTime::from_timestamp(now() + offset_secs, 0)
        .expect("a representable time")
        .to_rfc3339()
}
