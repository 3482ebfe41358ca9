//! `crosswalk demo`: it seeds a fresh database once, serves, and the commands it
//! prints work as printed.
//!
//! SQLite only: the demo's seeding goes through the same exchange functions as
//! every other write, which the rest of the suite runs on both backends, and one
//! seeding takes a while in a debug build.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{Backend, TestDatabase, binary, client, example_keys};

/// Seeding a few hundred records in a debug build on a shared machine.
const DEMO_STARTUP_TIMEOUT: Duration = Duration::from_mins(4);

/// A running `crosswalk demo` and everything it printed up to its guide's end.
struct Demo {
    child: Child,
    output: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(db: &TestDatabase) -> Self {
        let mut child = Command::new(binary())
            .args(["demo", "--listen", "127.0.0.1:0", "--config"])
            .env("CROSSWALK_SERVER__METRICS_LISTEN", "127.0.0.1:0")
            .arg(example_keys().join("crosswalk.toml"))
            .env("DATABASE_URL", &db.url)
            .env("CROSSWALK_AUDIT__CHECKPOINT_FILE", db.witness_file())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crosswalk demo");
        let (lines_tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines_tx = lines_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = lines_tx.send(line);
                }
            });
        }
        drop(lines_tx);
        let deadline = Instant::now() + DEMO_STARTUP_TIMEOUT;
        let mut output = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let _ = child.kill();
                panic!("crosswalk demo did not print its guide:\n{output}");
            };
            output.push_str(&line);
            output.push('\n');
            if line.starts_with("Serving until Ctrl-C") {
                break;
            }
        }
        Self { child, output }
    }

    /// The token exported as `var`.
    fn token(&self, var: &str) -> String {
        let prefix = format!("export {var}=");
        self.output
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {var} in:\n{}", self.output))
            .to_owned()
    }

    /// The printed `curl` line that POSTs to a URL ending in `path`: (URL, body).
    fn printed_post(&self, path: &str) -> (String, String) {
        let line = self
            .output
            .lines()
            .find(|line| {
                line.starts_with("curl ") && line.contains(" -d '") && line.ends_with(path)
            })
            .unwrap_or_else(|| panic!("no curl POST to {path} in:\n{}", self.output));
        let body = line
            .split(" -d '")
            .nth(1)
            .and_then(|rest| rest.split("' ").next())
            .expect("a quoted body");
        let url = line.split_whitespace().last().expect("a URL");
        (url.to_owned(), body.to_owned())
    }

    /// The gateway's base URL, as printed.
    fn base_url(&self) -> String {
        self.output
            .lines()
            .find_map(|line| line.strip_prefix("Gateway: "))
            .unwrap_or_else(|| panic!("no URL in:\n{}", self.output))
            .trim()
            .to_owned()
    }

    async fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().expect("wait").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("crosswalk demo still running after SIGTERM");
    }
}

/// How many `referral.create` entries the admin sees in the audit log.
async fn referrals_in_audit_log(demo: &Demo) -> usize {
    let response = client(None)
        .get(format!(
            "{}/v1/audit/entries?action=referral.create&limit=1000",
            demo.base_url()
        ))
        .bearer_auth(demo.token("ADMIN_TOKEN"))
        .send()
        .await
        .expect("GET /v1/audit/entries");
    assert_eq!(response.status(), 200);
    let page: serde_json::Value = response.json().await.expect("a JSON page");
    assert!(page.get("next_cursor").is_none(), "one page holds them all");
    page["entries"].as_array().expect("entries").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_seeds_once_and_its_printed_commands_work() {
    let db = TestDatabase::create(Backend::Sqlite).await;

    // Arrange: a first start on a fresh database seeds it.
    let demo = Demo::start(&db);
    assert!(
        demo.output.contains("Seeded 300 referrals from pd"),
        "{}",
        demo.output
    );
    let seeded = referrals_in_audit_log(&demo).await;
    assert_eq!(seeded, 300, "every seeded referral has its audit entry");

    // Act: the printed referral creation, as printed.
    let (url, body) = demo.printed_post("/v1/referrals");
    let created = client(None)
        .post(&url)
        .bearer_auth(demo.token("PD_TOKEN"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST the printed referral");

    // Assert
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    assert_eq!(referrals_in_audit_log(&demo).await, seeded + 1);
    demo.stop().await;

    // A second start on the same database serves it without seeding again.
    let again = Demo::start(&db);
    assert!(
        again.output.contains("already holds the seeded data"),
        "{}",
        again.output
    );
    assert_eq!(referrals_in_audit_log(&again).await, seeded + 1);
    again.stop().await;
}
