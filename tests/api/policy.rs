//! The release policy in the running gateway: the version in force is in
//! `/readyz`; SIGHUP reloads the bundle without a restart, and a broken bundle is
//! refused while the previous one keeps serving; `serve` refuses to start on a
//! broken bundle; `crosswalk policy test` and `policy eval` use the same loader.
//!
//! Every test works on a copy of `policies/` in a temporary directory, pointed at
//! with `CROSSWALK_POLICY__DIR`. Loading the baseline runs its Rego tests, which
//! is slow in a debug build, so the scenarios share processes where they can.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::backend_tests;
use crate::helpers::{
    AppOptions, Backend, TestApp, binary, example_keys, repo_root, spawn_app_with,
};

/// How long a debug build may take to load and check the baseline bundle.
const LOAD_TIMEOUT: Duration = Duration::from_mins(4);

backend_tests!(readyz_reports_the_policy_version_in_force);

async fn readyz_reports_the_policy_version_in_force(backend: Backend) {
    let bundle = BundleCopy::new();
    let app = spawn_app_with(backend, bundle.options()).await;

    let version = policy_version(&app).await;

    assert_eq!(version.len(), 64, "a BLAKE3 hex digest: {version}");
    assert!(version.bytes().all(|b| b.is_ascii_hexdigit()), "{version}");
    let logs = app.wait_for_log("policy loaded").await;
    assert!(
        logs.contains(&format!("policy_version={version}")),
        "the start-up log names the version: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_policy_change_and_refuses_a_broken_one() {
    let bundle = BundleCopy::new();
    let app = spawn_app_with(Backend::Sqlite, bundle.options()).await;
    let first = policy_version(&app).await;

    // An operator withholds `district` from CBOs, updates the Rego test that
    // pins the CBO's fields, checks the bundle, and sends SIGHUP.
    bundle.edit(
        "crosswalk/cbo.rego",
        "\"contact_at\", \"district\", \"resources\"",
        "\"contact_at\", \"resources\"",
    );
    bundle.edit(
        "crosswalk/cbo_test.rego",
        "\t\"circumstances\": \"withhold\",\n})",
        "\t\"circumstances\": \"withhold\",\n\t\"district\": \"withhold\",\n})",
    );
    let (ok, stdout, stderr) = bundle.cli(&["policy", "test"]);
    assert!(ok, "the edited bundle passes its tests: {stdout}{stderr}");
    assert!(
        stdout.trim_end().ends_with(" passed, 0 failed"),
        "closing line: {stdout}"
    );
    sighup(&app);

    let second = wait_for_new_version(&app, &first).await;
    assert!(app.logs().contains("policy reloaded"), "{}", app.logs());
    // The decision the gateway now makes, from the same engine and data.
    let decision = bundle.eval(&json!({
        "requester": {"id": "cbo-north", "kind": "cbo"}, "purpose": "CAREMGT",
        "action": "read", "resource": "referral", "relationship": "assigned_cbo",
        "record": {"part2": false}, "consent": null,
    }));
    assert_eq!(decision["policy_version"], second.as_str());
    assert_eq!(decision["fields"]["district"], "withhold");
    assert_eq!(decision["fields"]["subject.phone"], "release");

    // A broken file: refused, logged, and the previous bundle keeps serving.
    bundle.write("crosswalk/typo.rego", "package crosswalk\n\nbroken := {\n");
    sighup(&app);

    let logs = app.wait_for_log("policy reload refused").await;
    assert!(logs.contains("policy reload refused"), "{logs}");
    assert!(logs.contains("typo.rego"), "the log names the file: {logs}");
    assert_eq!(
        policy_version(&app).await,
        second,
        "still the previous policy"
    );
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

#[test]
fn serve_refuses_a_broken_bundle_naming_the_problem() {
    // (case, file, text replaced, replacement, what stderr must name)
    let cases = [
        (
            "parse error",
            "crosswalk/police.rego",
            "package crosswalk",
            "package crosswalk\n\npolice_typo := {",
            "police.rego",
        ),
        (
            "failing Rego test",
            "crosswalk/cbo.rego",
            "\"contact_at\", \"district\", \"resources\"",
            "\"contact_at\", \"resources\"",
            "test_cbo_assigned_referral_minimum_contact_details",
        ),
        (
            "catalog and code disagree",
            "crosswalk/catalog/data.json",
            "\"notes\":",
            "\"remarks\":",
            "outcome.notes",
        ),
    ];
    for (case, file, from, to, names) in cases {
        let bundle = BundleCopy::new();
        bundle.edit(file, from, to);

        let (status, stderr) = bundle.serve_until_exit();

        let status = status.unwrap_or_else(|| panic!("{case}: still serving"));
        assert!(!status.success(), "{case}: serve must fail");
        assert!(stderr.contains(names), "{case}: names {names}: {stderr}");
        assert!(
            stderr.contains("policy"),
            "{case}: says it is the policy: {stderr}"
        );
    }
}

#[test]
fn policy_test_reports_failures_and_exits_non_zero() {
    let bundle = BundleCopy::new();
    bundle.edit(
        "crosswalk/cbo.rego",
        "\"contact_at\", \"district\", \"resources\"",
        "\"contact_at\", \"resources\"",
    );

    let (ok, stdout, stderr) = bundle.cli(&["policy", "test"]);

    assert!(!ok, "a failed test fails the command: {stdout}");
    assert!(
        stdout.contains("FAIL data.crosswalk.test_cbo_assigned_referral_minimum_contact_details"),
        "{stdout}"
    );
    let closing = stdout.lines().last().unwrap_or_default();
    let (passed, failed) = closing
        .split_once(" passed, ")
        .unwrap_or_else(|| panic!("closing line: {closing}"));
    assert!(passed.parse::<usize>().is_ok(), "{closing}");
    assert_ne!(failed, "0 failed", "{closing}");
    assert!(stderr.contains("Rego tests failed"), "{stderr}");
}

#[test]
fn policy_commands_refuse_a_bundle_that_does_not_parse() {
    let bundle = BundleCopy::new();
    bundle.write("crosswalk/typo.rego", "package crosswalk\n\nbroken := {\n");
    let input = bundle.dir.path().join("input.json");
    std::fs::write(&input, "{}").expect("write the input");

    for args in [
        vec!["policy", "test"],
        vec![
            "policy",
            "eval",
            "--input",
            input.to_str().expect("UTF-8 path"),
        ],
    ] {
        let (ok, _, stderr) = bundle.cli(&args);

        assert!(!ok, "{args:?}");
        assert!(stderr.contains("typo.rego"), "{args:?}: {stderr}");
    }
}

/// A copy of `policies/` in a temporary directory.
struct BundleCopy {
    dir: tempfile::TempDir,
}

impl BundleCopy {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&repo_root().join("policies"), &dir.path().join("policies"));
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    fn env(&self) -> (String, String) {
        (
            "CROSSWALK_POLICY__DIR".to_owned(),
            self.path().display().to_string(),
        )
    }

    fn options(&self) -> AppOptions {
        AppOptions {
            env: vec![self.env()],
        }
    }

    fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.path().join(relative), text).expect("write a policy file");
    }

    /// Replaces `from` (which must be there) with `to` in a file of the copy.
    fn edit(&self, relative: &str, from: &str, to: &str) {
        let path = self.path().join(relative);
        let text = std::fs::read_to_string(&path).expect("read a policy file");
        assert!(text.contains(from), "{relative} holds {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write a policy file");
    }

    /// Runs a `crosswalk` command against the copy: (success, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let (key, value) = self.env();
        let output = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(example_keys().join("crosswalk.toml"))
            .env(key, value)
            .output()
            .expect("run crosswalk");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `crosswalk policy eval` of `input` against the copy.
    fn eval(&self, input: &serde_json::Value) -> serde_json::Value {
        let path = self.dir.path().join("input.json");
        std::fs::write(&path, input.to_string()).expect("write the input");
        let (ok, stdout, stderr) =
            self.cli(&["policy", "eval", "--input", path.to_str().expect("UTF-8")]);
        assert!(ok, "policy eval: {stderr}");
        serde_json::from_str(&stdout).expect("the decision is JSON")
    }

    /// Runs `crosswalk serve` on the copy until it exits (or is killed after
    /// [`LOAD_TIMEOUT`], returning `None`), and returns its stderr.
    fn serve_until_exit(&self) -> (Option<std::process::ExitStatus>, String) {
        let (key, value) = self.env();
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .env("CROSSWALK_SERVER__METRICS_LISTEN", "127.0.0.1:0")
            .arg(example_keys().join("crosswalk.toml"))
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", self.dir.path().join("db.sqlite").display()),
            )
            .env(key, value)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start crosswalk serve");
        let deadline = Instant::now() + LOAD_TIMEOUT;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        (status, stderr)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

async fn policy_version(app: &TestApp) -> String {
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    body["policy_version"]
        .as_str()
        .unwrap_or_else(|| panic!("/readyz has policy_version: {body}"))
        .to_owned()
}

fn sighup(app: &TestApp) {
    let sent = Command::new("kill")
        .args(["-HUP", &app.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// Polls `/readyz` until the version differs from `old` (a reload re-runs the
/// bundle's Rego tests, which takes a while in a debug build).
async fn wait_for_new_version(app: &TestApp, old: &str) -> String {
    let deadline = Instant::now() + LOAD_TIMEOUT;
    loop {
        let version = policy_version(app).await;
        if version != old {
            return version;
        }
        assert!(
            Instant::now() < deadline,
            "no new policy version after SIGHUP:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
