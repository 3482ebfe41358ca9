//! Start-up and shutdown of the real binary: a broken configuration fails
//! loudly and precisely; SIGTERM stops the gateway cleanly.

use std::process::Command;
use std::time::Duration;

use crate::helpers::{Backend, binary, example_keys, spawn_app};

/// Runs `crosswalk serve` on a configuration and returns (exit success, stderr).
fn serve_with_config(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crosswalk.toml");
    std::fs::write(&path, text).expect("write config");
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .env("CROSSWALK_SERVER__METRICS_LISTEN", "127.0.0.1:0")
        .arg(&path)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("db.sqlite").display()),
        )
        .envs(env.iter().copied())
        .output()
        .expect("run crosswalk serve");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The example configuration with its key paths made absolute, so it can be
/// written anywhere.
fn example_config() -> String {
    let keys = example_keys();
    std::fs::read_to_string(keys.join("crosswalk.toml"))
        .expect("example config")
        .replace("= \"gateway/", &format!("= \"{}/gateway/", keys.display()))
        .replace("= \"tls/", &format!("= \"{}/tls/", keys.display()))
}

#[test]
fn a_broken_configuration_exits_non_zero_naming_the_problem() {
    // (case, configuration text, environment, what the message must name)
    type Case = (
        &'static str,
        String,
        Vec<(&'static str, &'static str)>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown partner kind",
            example_config().replace("kind = \"police\"", "kind = \"polic\""),
            vec![],
            "partners.pd.kind",
        ),
        (
            "missing key file",
            example_config().replace("gateway/master.key", "gateway/absent.key"),
            vec![],
            "keys.master_secret",
        ),
        (
            "not an Ed25519 public key",
            example_config().replacen(
                "-----BEGIN PUBLIC KEY-----\n",
                "-----BEGIN PUBLIC KEY-----\nAAAA",
                1,
            ),
            vec![],
            "public_key",
        ),
        (
            "malformed default purpose",
            example_config(),
            vec![("CROSSWALK_PARTNERS__PD__DEFAULT_PURPOSE", "care")],
            "partners.pd.default_purpose",
        ),
        (
            "misspelt environment override",
            example_config(),
            vec![("CROSSWALK_SERVER__LISTN", "127.0.0.1:1")],
            "listn",
        ),
        (
            "not TOML",
            "[server\nlisten = ".to_owned(),
            vec![],
            "line 1",
        ),
    ];
    for (case, text, env, names) in cases {
        let (ok, stderr) = serve_with_config(&text, &env);

        assert!(!ok, "{case}: serve should fail");
        assert!(
            stderr.contains("crosswalk.toml"),
            "{case}: names the file: {stderr}"
        );
        assert!(stderr.contains(names), "{case}: names {names}: {stderr}");
        assert!(
            !stderr.contains("PRIVATE KEY"),
            "{case}: no key material: {stderr}"
        );
    }
}

#[test]
fn the_example_configuration_itself_is_valid() {
    let (ok, stderr) = serve_with_config(
        &example_config(),
        &[("CROSSWALK_SERVER__LISTEN", "not an address")],
    );
    assert!(!ok);
    assert!(stderr.contains("server.listen"), "{stderr}");
}

#[tokio::test]
async fn sigterm_stops_the_gateway_cleanly() {
    let mut app = spawn_app(Backend::Sqlite).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);

    let killed = Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let status = app
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("still running after SIGTERM:\n{}", app.logs()));
    assert!(status.success(), "exit status {status:?}");
    let logs = app.logs();
    assert!(logs.contains("draining in-flight requests"), "{logs}");
    assert!(logs.contains("crosswalk stopped"), "{logs}");
}
