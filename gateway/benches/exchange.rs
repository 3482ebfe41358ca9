//! The exchange end to end: the real `crosswalk` binary (release build) over real
//! TLS with real partner tokens, on SQLite and — when `TEST_DATABASE_URL` names a
//! server — on PostgreSQL.
//!
//! `cargo bench --bench exchange` prints, per backend:
//! - **batch**: referrals/s through `POST /v1/referrals/batch` (validate,
//!   normalize, tokenize, seal, link, assign, store, audit), streaming
//!   [`BATCH_REFERRALS`] synthetic people as NDJSON while reading the results;
//!   and where the writer's time went (linking vs the rest), from the gateway's
//!   own per-group debug lines;
//! - **single**: latency percentiles of `POST /v1/referrals` sent open-loop at
//!   [`SINGLE_RATE`] requests/s for [`SINGLE_SECONDS`] s over one HTTP/2
//!   connection (latency counted from when each request was due, so a stall is
//!   not hidden by the generator waiting for it).
//!
//! Each phase also prints the process CPU time of the gateway and of this load
//! generator per referral, and the load average: on a shared machine the wall
//! rates follow whoever else is busy, CPU per referral much less.
//! `BENCH_GATEWAY_WRAPPER` runs the gateway under a tool; with callgrind
//! (`valgrind --tool=callgrind --collect-atstart=no`) instructions are
//! collected for the batch only ([`Callgrind`]).
//!
//! - **audit share**: [`SEQUENTIAL`] single referrals sent one at a time (each
//!   its own transaction), their end-to-end latency, and how much of it the
//!   audit append took (the writer's `audit_ms`), against the audit log's
//!   target: "auditing adds under 10% to end-to-end write latency". The
//!   append's extra WAL pages are paid in the commit and not counted here;
//!   `cargo bench --bench audit` (overhead) measures a transaction with and
//!   without its entry, commit included.
//!
//! On PostgreSQL the bench runs `ANALYZE` after its warm-up batch (see
//! [`analyze`]). The load generator runs in this process and shares the
//! machine's cores with the gateway. `BATCH_REFERRALS`, `SINGLE_RATE` and
//! `SINGLE_SECONDS` can be set in the environment.
//!
//! # Measured
//! On the shared 2-core development machine at load ~11, 20,000 referrals:
//!
//! | | SQLite batch | gateway CPU | PostgreSQL batch | gateway CPU |
//! |---|---|---|---|---|
//! | before the write-path tuning | 685/s | 514 µs/referral | 1,508/s | 82 µs/referral |
//! | after | 640/s | 189 µs/referral | 1,711/s | 64 µs/referral |
//!
//! Single referrals at 1,000/s overloaded both backends on that machine (p99
//! of seconds; the generator kept the rate). Where the time goes now, from the
//! writer's lines and a `perf` sample of the gateway: on SQLite the gateway
//! uses ~12% of a core and the writer spends 56% of its time in the commit,
//! writing the B-tree pages that the group's random inserts dirtied (token
//! index, identity and subject keys) to the WAL and then to the database file
//! (`pwrite`, WAL checksums, page reads and B-tree moves lead the profile);
//! linking is most of the rest. On PostgreSQL the server's work on the token
//! rows and candidate lookups (65% of the writers' time).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BATCH_REFERRALS: u32 = 40_000;
const SINGLE_RATE: u32 = 1_000;
const SINGLE_SECONDS: u32 = 10;
/// Single referrals sent one after another for the audit-share measurement.
const SEQUENTIAL: usize = 400;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut backends = vec![("SQLite", None)];
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => backends.push(("PostgreSQL", Some(url))),
            Err(_) => println!("(PostgreSQL skipped: set TEST_DATABASE_URL to include it)"),
        }
        for (name, admin_url) in backends {
            println!("\n== {name}");
            bench_backend(admin_url.as_deref()).await;
        }
    });
}

async fn bench_backend(postgres_admin: Option<&str>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match postgres_admin {
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
        Some(admin) => create_postgres_database(admin).await,
    };
    let gateway = Gateway::start(&url);
    let client = client();
    let token = token("pd");

    let people = crosswalk::linkage::synth::people(
        2026,
        env_or("BATCH_REFERRALS", BATCH_REFERRALS) as usize,
    );
    // A warm-up batch so that the first chunk's key creation and page cache are
    // not measured.
    let warm: Vec<Vec<u8>> = crosswalk::linkage::synth::people(7, 1_000)
        .iter()
        .map(|p| ndjson_line(&referral(p)))
        .collect();
    run_batch(&gateway, &client, &token, warm).await;
    gateway.take_logs();
    if postgres_admin.is_some() {
        analyze(&url).await;
    }

    let lines: Vec<Vec<u8>> = people.iter().map(|p| ndjson_line(&referral(p))).collect();
    let count = lines.len();
    let cpu = CpuMeter::start(&gateway);
    let callgrind = Callgrind::start(&gateway);
    let elapsed = run_batch(&gateway, &client, &token, lines).await;
    callgrind.stop("batch");
    println!(
        "batch   {count} referrals in {:.2}s: {:.0} referrals/s",
        elapsed.as_secs_f64(),
        per_second(count, elapsed)
    );
    cpu.report(count);
    report_writer_time(&gateway.take_logs(), elapsed);

    let rate = env_or("SINGLE_RATE", SINGLE_RATE);
    let seconds = env_or("SINGLE_SECONDS", SINGLE_SECONDS);
    let cpu = CpuMeter::start(&gateway);
    let sent = run_singles(&gateway, &client, &token, rate, seconds).await;
    cpu.report(sent);
    report_writer_time(
        &gateway.take_logs(),
        Duration::from_secs(u64::from(seconds)),
    );
    audit_share(&gateway, &client, &token).await;
    drop(gateway);
    if let Some(admin) = postgres_admin {
        drop_postgres_database(admin, &url).await;
    }
}

/// Streams `lines` as one batch while reading the results; returns the time from
/// the first byte sent to the last result line read.
async fn run_batch(
    gateway: &Gateway,
    client: &reqwest::Client,
    token: &str,
    lines: Vec<Vec<u8>>,
) -> Duration {
    let expected = lines.len();
    // Frames of ~64 KiB, as a client streaming from a file would send.
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut frame = Vec::with_capacity(1 << 16);
    for line in lines {
        frame.extend_from_slice(&line);
        if frame.len() >= 1 << 16 {
            frames.push(std::mem::replace(&mut frame, Vec::with_capacity(1 << 16)));
        }
    }
    frames.push(frame);
    let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
    let started = Instant::now();
    let mut response = client
        .post(gateway.url("/v1/referrals/batch"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("batch accepted");
    assert_eq!(response.status().as_u16(), 200);
    let mut results = 0;
    let mut created = 0;
    let mut partial = Vec::new();
    while let Some(bytes) = response.chunk().await.expect("results") {
        partial.extend_from_slice(&bytes);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            results += 1;
            if line.windows(11).any(|w| w == b"\"referral\":") {
                created += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(results, expected, "one result per line");
    assert_eq!(created, expected, "every line created");
    elapsed
}

/// Sends single referrals open-loop at `rate`/s for `seconds` and prints latency
/// percentiles; returns how many were sent.
///
/// Each request is due at `start + i / rate` and its latency is counted from
/// then, not from when it was actually sent: if the generator or the machine
/// stalls, the requests it should have sent meanwhile are counted as waiting
/// (no coordinated omission). The achieved send rate is printed so that a
/// generator that fell behind shows.
async fn run_singles(
    gateway: &Gateway,
    client: &reqwest::Client,
    token: &str,
    rate: u32,
    seconds: u32,
) -> usize {
    let people = crosswalk::linkage::synth::people(99, (rate * seconds) as usize + 50);
    let bodies: Vec<Vec<u8>> = people
        .iter()
        .map(|p| referral(p).to_string().into_bytes())
        .collect();
    // Warm the connection and the token cache.
    for body in bodies.iter().take(50) {
        post_single(client, gateway, token, body.clone()).await;
    }
    let interval = Duration::from_secs(1) / rate;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(bodies.len())));
    let errors = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate().skip(50) {
        let due = started + interval * u32::try_from(i - 50).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        let url = gateway.url("/v1/referrals");
        let token = token.to_owned();
        let latencies = Arc::clone(&latencies);
        let errors = Arc::clone(&errors);
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let ok = matches!(&response, Ok(r) if r.status().as_u16() == 201);
            if let Ok(r) = response {
                let _ = r.bytes().await;
            }
            let latency = due.elapsed();
            if ok {
                latencies.lock().expect("lock").push(latency);
            } else {
                *errors.lock().expect("lock") += 1;
            }
        }));
    }
    let sending = started.elapsed();
    for task in tasks {
        let _ = task.await;
    }
    let mut latencies = latencies.lock().expect("lock").clone();
    let sent = latencies.len() + *errors.lock().expect("lock");
    latencies.sort();
    // p in per mille.
    let pct = |p: usize| {
        latencies
            .get(latencies.len().saturating_sub(1) * p / 1000)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "single  {sent} requests at {rate}/s target ({:.0}/s sent), {} errors: \
         p50 {:.2} ms  p90 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        per_second(sent, sending),
        *errors.lock().expect("lock"),
        pct(500),
        pct(900),
        pct(950),
        pct(990),
        pct(1000),
    );
    sent
}

/// Instruction counts of the gateway over the batch, when it runs under
/// `valgrind --tool=callgrind --collect-atstart=no` (see
/// `BENCH_GATEWAY_WRAPPER`): collection is switched on for the batch only and
/// dumped after it, to `callgrind.out.PID.N` in the working directory
/// (`callgrind_annotate` reads it; divide its total by the batch's referrals).
/// Instruction counts do not depend on what else the machine runs.
struct Callgrind(Option<u32>);

impl Callgrind {
    fn start(gateway: &Gateway) -> Self {
        let on = std::env::var("BENCH_GATEWAY_WRAPPER").is_ok_and(|w| w.contains("callgrind"));
        let this = Self(on.then(|| gateway.child.id()));
        this.control(&["-i", "on"]);
        this
    }

    fn stop(&self, phase: &str) {
        if self.0.is_some() {
            self.control(&["-d", phase]);
            self.control(&["-i", "off"]);
            println!("        callgrind: {phase} dumped (callgrind.out.*)");
        }
    }

    fn control(&self, args: &[&str]) {
        if let Some(pid) = self.0 {
            let _ = Command::new("callgrind_control")
                .args(args)
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Process CPU time (user + system) of the gateway and of this load generator
/// over a phase, and the machine's load average, so that figures from a busy
/// shared machine can be read: wall rates fall when others build, CPU per
/// referral much less.
struct CpuMeter {
    gateway_pid: u32,
    gateway: Duration,
    generator: Duration,
    wall: Instant,
}

impl CpuMeter {
    fn start(gateway: &Gateway) -> Self {
        let gateway_pid = gateway.child.id();
        Self {
            gateway_pid,
            gateway: process_cpu(&gateway_pid.to_string()),
            generator: process_cpu("self"),
            wall: Instant::now(),
        }
    }

    fn report(&self, referrals: usize) {
        let gateway = process_cpu(&self.gateway_pid.to_string()).saturating_sub(self.gateway);
        let generator = process_cpu("self").saturating_sub(self.generator);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / count(referrals.max(1));
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "        CPU: gateway {:.2}s ({:.0} µs per referral, {:.0}% of one core), \
             load generator {:.2}s ({:.0} µs per referral); load average {}",
            gateway.as_secs_f64(),
            per(gateway),
            100.0 * gateway.as_secs_f64() / self.wall.elapsed().as_secs_f64(),
            generator.as_secs_f64(),
            per(generator),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
}

/// User + system CPU time of a process from `/proc/PID/stat` (fields 14 and 15,
/// in clock ticks of 1/100 s, Linux's `USER_HZ` on every common platform); zero
/// where there is no `/proc`.
fn process_cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

async fn post_single(client: &reqwest::Client, gateway: &Gateway, token: &str, body: Vec<u8>) {
    let response = client
        .post(gateway.url("/v1/referrals"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status().as_u16(),
        201,
        "{:?}",
        response.text().await
    );
}

/// Sends [`SEQUENTIAL`] referrals one at a time and prints their end-to-end
/// latency beside the audit append's part of it, from the writer's lines.
async fn audit_share(gateway: &Gateway, client: &reqwest::Client, token: &str) {
    let bodies: Vec<Vec<u8>> = crosswalk::linkage::synth::people(4242, SEQUENTIAL)
        .iter()
        .map(|p| referral(p).to_string().into_bytes())
        .collect();
    gateway.take_logs();
    let mut latencies = Vec::with_capacity(bodies.len());
    for body in bodies {
        let sent = Instant::now();
        post_single(client, gateway, token, body).await;
        latencies.push(sent.elapsed());
    }
    let logs = gateway.take_logs();
    let audit_ms: Vec<f64> = logs
        .lines()
        .filter(|l| l.contains("intake group written"))
        .filter_map(|line| {
            line.split(" audit_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    latencies.sort();
    let mean_ms =
        latencies.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / count(latencies.len());
    let p50_ms = latencies[latencies.len() / 2].as_secs_f64() * 1e3;
    let audit_mean = audit_ms.iter().sum::<f64>() / count(audit_ms.len().max(1));
    println!(
        "audit   {} single referrals one at a time: mean {mean_ms:.2} ms, p50 {p50_ms:.2} ms \
         end to end; audit append {:.3} ms per transaction ({} transactions) = {:.1}% of the \
         mean (target < 10%)",
        latencies.len(),
        audit_mean,
        audit_ms.len(),
        100.0 * audit_mean / mean_ms
    );
}

/// Where the intake writer's time went, from its `intake group written` lines.
fn report_writer_time(logs: &str, wall: Duration) {
    const PHASES: [&str; 7] = [
        "plan_ms",
        "link_ms",
        "seal_ms",
        "insert_ms",
        "audit_ms",
        "commit_ms",
        "total_ms",
    ];
    let (mut groups, mut referrals) = (0usize, 0usize);
    let mut sums = [0f64; PHASES.len()];
    for line in logs.lines().filter(|l| l.contains("intake group written")) {
        let field = |name: &str| -> Option<&str> {
            line.split(&format!(" {name}="))
                .nth(1)?
                .split_whitespace()
                .next()
        };
        groups += 1;
        referrals += field("referrals")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        for (sum, phase) in sums.iter_mut().zip(PHASES) {
            *sum += field(phase)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    if groups == 0 || referrals == 0 {
        return;
    }
    let total = sums[PHASES.len() - 1];
    println!(
        "        writer: {groups} transactions, {:.1} referrals each, busy {:.0}% of the wall \
         time, {:.1} µs per referral:",
        count(referrals) / count(groups),
        100.0 * total / (wall.as_secs_f64() * 1e3),
        1e3 * total / count(referrals),
    );
    let parts: Vec<String> = PHASES[..PHASES.len() - 1]
        .iter()
        .zip(sums)
        .map(|(phase, ms)| {
            format!(
                "{} {:.1} µs ({:.0}%)",
                phase.trim_end_matches("_ms"),
                1e3 * ms / count(referrals),
                100.0 * ms / total
            )
        })
        .collect();
    println!("          {}", parts.join(", "));
}

fn referral(person: &crosswalk::normalize::IdentityInput) -> Value {
    json!({
        "cad_number": "CAD-BENCH-1",
        "officer_id": "OFC-1",
        "subject": {
            "given_name": person.given_name,
            "surname": person.surname,
            "dob": person.dob,
            "sex": person.sex,
            "address": {"street": person.street, "city": person.city, "state": person.state, "zip": person.zip},
            "phone": person.phone,
            "email": person.email,
        },
        "contact_at": "2026-01-15T10:00:00-08:00",
        "district": "d4",
        "arrested": false,
        "circumstances": "Benchmark referral.",
        "resources": ["homelessness", "mental_health"],
        "follow_up_by": "cbo",
    })
}

fn ndjson_line(value: &Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn per_second(n: usize, elapsed: Duration) -> f64 {
    count(n) / elapsed.as_secs_f64()
}

/// Counts here are far below 2^52, where `f64` stops being exact.
fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).expect("a count below 2^32"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn token(partner: &str) -> String {
    let pem = std::fs::read(repo_root().join(format!("keys-example/partners/{partner}.key.pem")))
        .expect("partner key");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("Ed25519 PEM");
    let now =
        i64::try_from(std::time::UNIX_EPOCH.elapsed().expect("clock").as_secs()).expect("fits");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &json!({"sub": partner, "aud": "crosswalk", "iat": now, "exp": now + 3000}),
        &key,
    )
    .expect("sign")
}

fn client() -> reqwest::Client {
    let ca = std::fs::read(repo_root().join("keys-example/tls/ca.pem")).expect("CA");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .http2_prior_knowledge()
        .timeout(Duration::from_mins(30))
        .build()
        .expect("client")
}

async fn create_postgres_database(admin: &str) -> String {
    use sqlx::Connection as _;
    let name = format!(
        "crosswalk_bench_{}",
        crosswalk::randomness::unique_name_suffix(&crosswalk::randomness::OsRandomness)
            .expect("randomness")
    );
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the bench database");
    let mut url = url::Url::parse(admin).expect("a URL");
    url.set_path(&name);
    url.to_string()
}

/// Gives PostgreSQL's planner statistics for the warmed-up tables, as autovacuum
/// would on a running server. Without them (a fresh database, and autovacuum is
/// off on some development servers) the planner takes every table for empty and
/// scans `linkage_tokens` sequentially for each identity linked, which makes
/// linkage quadratic in the number of stored identities.
async fn analyze(url: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("ANALYZE")
        .execute(&mut conn)
        .await
        .expect("ANALYZE");
}

/// Drops the bench's database: a bench should leave nothing behind.
async fn drop_postgres_database(admin: &str, url: &str) {
    use sqlx::Connection as _;
    let name = url::Url::parse(url)
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .unwrap_or_default();
    if !name.starts_with("crosswalk_bench_") {
        return;
    }
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// The gateway process.
struct Gateway {
    addr: SocketAddr,
    child: Child,
    logs: Arc<Mutex<String>>,
}

impl Gateway {
    fn start(database_url: &str) -> Self {
        // `BENCH_GATEWAY_WRAPPER="valgrind --tool=callgrind --collect-atstart=no"`
        // runs the gateway under a tool; see [`Callgrind`].
        let wrapper = std::env::var("BENCH_GATEWAY_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(tool) => {
                let mut command = Command::new(tool);
                command.args(words).arg(env!("CARGO_BIN_EXE_crosswalk"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_crosswalk")),
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .env("CROSSWALK_SERVER__METRICS_LISTEN", "127.0.0.1:0")
            .arg(repo_root().join("keys-example/crosswalk.toml"))
            .env("DATABASE_URL", database_url)
            // Per-group timings from the intake; nothing per request.
            .env(
                "RUST_LOG",
                "warn,crosswalk::server=info,crosswalk::exchange::intake=debug",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crosswalk serve");
        let logs = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let logs = Arc::clone(&logs);
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("listening on https://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = addr_tx.send(addr.parse::<SocketAddr>().ok());
                    }
                    let mut logs = logs.lock().expect("logs");
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let addr = addr_rx
            .recv_timeout(Duration::from_mins(10))
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                panic!("the gateway did not start:\n{}", logs.lock().expect("logs"))
            });
        Self { addr, child, logs }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn take_logs(&self) -> String {
        std::mem::take(&mut *self.logs.lock().expect("logs"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
