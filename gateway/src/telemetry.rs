//! Logging set-up: one line per event on stdout, filtered by `RUST_LOG`
//! (default `info`). JSON lines when `CROSSWALK_LOG_FORMAT=json`.
//!
//! What may be logged is decided where the event is written, not here: request
//! spans carry the request id, method and *route template* (never the raw path or
//! query), and no identifier, token or secret is ever a field. Types that hold
//! such values print a redaction in `Debug`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,rustls=warn"));
    let json = std::env::var("CROSSWALK_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout);
    // Another subscriber (a test harness) may already be installed; keep it.
    let _already_installed = if json {
        builder.json().try_init().is_err()
    } else {
        builder.try_init().is_err()
    };
}
