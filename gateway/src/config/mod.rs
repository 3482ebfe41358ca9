//! Configuration: one TOML file, every setting overridable from the environment.
//!
//! The file holds the partner registry, the key file paths and the limits. It is
//! read once at start-up into [`Config`]; nothing else in the gateway reads files or
//! environment variables for settings.
//!
//! # Precedence
//! file  <  `CROSSWALK_*` variables  <  `DATABASE_URL`  <  command-line flags.
//!
//! An environment variable names a setting by its path in the file, upper-cased,
//! with `__` between levels and `_` standing for `-` inside a key:
//! `CROSSWALK_SERVER__LISTEN=0.0.0.0:8443`,
//! `CROSSWALK_PARTNERS__CBO_NORTH__ACTIVE=false`. Values are read as TOML
//! (`false`, `30`, `"text"`); anything that does not parse as TOML is taken as a
//! string. A variable that names no known setting fails start-up, so a typo cannot
//! silently leave a default in force. `CROSSWALK_CONFIG` (the file's path) is the
//! one `CROSSWALK_*` variable that is not a setting.
//!
//! # Errors
//! Every failure names the file and the key: `keys-example/crosswalk.toml:
//! partners.pd.kind: unknown variant ...`. Key *contents* never appear in a message.
//!
//! # Adding a setting
//! Add the field to the struct below with a `#[serde(default = ...)]` if it has one,
//! document why it exists, check it in [`Config::validate`] if it has a range, and
//! add it to `keys::example_config` so `crosswalk keys generate` writes it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;

pub use crate::domain::PartnerKind;

pub mod routing;
pub mod study;
pub mod witness;

/// The default place `serve` looks for its configuration: the example set, so that
/// a fresh clone runs with no setup.
pub const DEFAULT_CONFIG_PATH: &str = "keys-example/crosswalk.toml";

/// The variable that names the configuration file instead of `--config`.
pub const CONFIG_PATH_VAR: &str = "CROSSWALK_CONFIG";

const ENV_PREFIX: &str = "CROSSWALK_";

/// Everything the gateway needs to start, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub keys: KeyPaths,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub linkage: LinkageConfig,
    /// The range of dates the exchange accepts (see [`ExchangeConfig`]).
    #[serde(default)]
    pub exchange: ExchangeConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// Which CBO a referral goes to when it names none (see [`crate::exchange::routing`]).
    #[serde(default)]
    pub routing: routing::RoutingConfig,
    /// Small-cell suppression and the differential-privacy option of
    /// `GET /v1/aggregates/outcomes` (see [`crate::aggregates`]).
    #[serde(default)]
    pub aggregates: AggregatesConfig,
    /// The partner registry, keyed by partner id. Keyed rather than a list so that
    /// one partner's setting can be overridden from the environment by name.
    #[serde(default)]
    pub partners: BTreeMap<String, PartnerConfig>,
    /// Evaluator studies, keyed by study id (see [`crate::exports::study`]).
    #[serde(default)]
    pub studies: BTreeMap<String, study::StudyConfig>,
    /// Where exports are written (see [`crate::exports`]).
    #[serde(default)]
    pub exports: ExportsConfig,
    /// The directory of the configuration file: relative key paths resolve here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where the configuration came from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Loopback by default: exposing the gateway is a deliberate operator choice.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite://PATH` (the embedded default) or `postgres://...`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Bounds the memory one request can make the gateway hold.
    #[serde(default = "default_body_limit")]
    pub request_body_limit_bytes: usize,
    /// A request still running after this long is answered 408 and dropped, so a
    /// slow client cannot hold a worker forever.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// How long a graceful shutdown waits for in-flight requests before giving up.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Where `/metrics` is served: plain HTTP, on its own listener, loopback
    /// by default (Prometheus's conventional exporter port). Not on the
    /// partners' TLS port: metrics are for the operator's scraper, and an
    /// unauthenticated endpoint beside the API is one more thing to attack.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// A client still in the TLS handshake after this long is dropped.
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout_secs: u64,
    /// HTTP/1: a request's headers must arrive whole within this long of their
    /// first byte being awaited, or the connection is closed (slowloris).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// A connection on which nothing at all is read or written for this long
    /// is closed (an idle keep-alive connection holds a slot of the caps).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// HTTP/2: a ping after this long without frames; a peer that does not
    /// answer within as long again is dropped (dead peers hold no slot).
    #[serde(default = "default_http2_keep_alive_interval")]
    pub http2_keep_alive_interval_secs: u64,
    /// HTTP/2: the most streams (requests) one connection may have open.
    #[serde(default = "default_http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// The most connections open at once; beyond it new ones are closed at
    /// once, before the TLS handshake, and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The most connections open at once from one client address (one
    /// client cannot take every slot; a partner behind a NAT needs several).
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            database_url: default_database_url(),
            request_body_limit_bytes: default_body_limit(),
            request_timeout_secs: default_request_timeout(),
            shutdown_grace_secs: default_shutdown_grace(),
            metrics_listen: default_metrics_listen(),
            tls_handshake_timeout_secs: default_tls_handshake_timeout(),
            header_read_timeout_secs: default_header_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            http2_keep_alive_interval_secs: default_http2_keep_alive_interval(),
            http2_max_concurrent_streams: default_http2_max_concurrent_streams(),
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_connections_per_client(),
        }
    }
}

impl ServerConfig {
    /// The connection settings' problems: the key and what is wrong. Every
    /// one must be positive: a zero would mean "never" or "none", which is
    /// never what an operator meant.
    fn check_connections(&self) -> Result<(), (&'static str, &'static str)> {
        for (key, value) in [
            (
                "server.tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
            ),
            (
                "server.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", self.idle_timeout_secs),
            (
                "server.http2_keep_alive_interval_secs",
                self.http2_keep_alive_interval_secs,
            ),
            (
                "server.http2_max_concurrent_streams",
                u64::from(self.http2_max_concurrent_streams),
            ),
            ("server.max_connections", self.max_connections as u64),
            (
                "server.max_connections_per_client",
                self.max_connections_per_client as u64,
            ),
        ] {
            if value == 0 {
                return Err((key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Paths to key material, relative to the configuration file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPaths {
    /// 32 random bytes, hex: the root of every pseudonym and linkage key.
    pub master_secret: PathBuf,
    /// The vault's age identity: what unseals identifiers at rest.
    pub vault_identity: PathBuf,
    /// The gateway's Ed25519 key (PKCS#8 PEM) for what the gateway asserts.
    pub signing_key: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The CA whose client certificates are accepted for mutual TLS.
    pub client_ca: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Partner tokens must be short-lived: `exp - iat` above this is refused.
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    /// Tolerated clock skew between a partner's clock and ours.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Off by default. On: a partner not bound to a client certificate must
    /// give each token a `jti` and use it once (a stolen token cannot be
    /// replayed); the spent `jti`s are kept per process until their tokens
    /// expire (see [`crate::auth`]).
    #[serde(default)]
    pub replay_protection: bool,
    /// With `replay_protection`: how many unexpired tokens one partner may
    /// have spent at once; beyond it its new tokens are refused until some
    /// expire. Bounds the cache's memory (~100 bytes a token).
    #[serde(default = "default_replay_cache_per_partner")]
    pub replay_cache_per_partner: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            max_token_lifetime_secs: default_max_token_lifetime(),
            leeway_secs: default_leeway(),
            replay_protection: false,
            replay_cache_per_partner: default_replay_cache_per_partner(),
        }
    }
}

fn default_replay_cache_per_partner() -> usize {
    100_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkageConfig {
    /// ISO 3166 region assumed for phone numbers typed without a country code,
    /// so that `(916) 555-0142` and `+1 916 555 0142` normalize alike.
    #[serde(default = "default_phone_region")]
    pub default_phone_region: String,
}

impl LinkageConfig {
    /// The validated region (checked at load, so the fallback is never used).
    pub fn phone_region(&self) -> phonenumber::country::Id {
        parse_region(&self.default_phone_region).unwrap_or(phonenumber::country::Id::US)
    }
}

fn parse_region(code: &str) -> Option<phonenumber::country::Id> {
    code.to_ascii_uppercase().parse().ok()
}

impl Default for LinkageConfig {
    fn default() -> Self {
        Self {
            default_phone_region: default_phone_region(),
        }
    }
}

/// The earliest program start a configuration may name, and the default: no
/// record in this exchange can describe an earlier contact.
pub const EARLIEST_PROGRAM_START: NaiveDate =
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("2000-01-01 is a date");

/// The dates the exchange accepts.
///
/// Every time a partner sends about something that happened in the program —
/// a referral's `contact_at`, an outcome's `occurred_at`, a case's
/// `effective_at`, a consent's `period` — must fall on or after
/// `program_start`, and export windows and aggregate months start no earlier:
/// a date before the program began is a typing error (`0000-01-01`, `1926`
/// for `2026`), and a store that accepts one carries it into every count and
/// export for good. Upper bounds are per field (docs/configuration.md, "Input bounds").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The first day (UTC) of the program; not before
    /// [`EARLIEST_PROGRAM_START`], which is the default.
    #[serde(default = "default_program_start", deserialize_with = "study::date")]
    pub program_start: NaiveDate,
}

impl ExchangeConfig {
    /// The first instant a contact, outcome, case or consent time may name.
    pub fn earliest_event(&self) -> DateTime<Utc> {
        self.program_start.and_time(NaiveTime::MIN).and_utc()
    }
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            program_start: default_program_start(),
        }
    }
}

fn default_program_start() -> NaiveDate {
    EARLIEST_PROGRAM_START
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The Rego policy bundle (an OPA bundle directory), relative to the
    /// configuration file's directory like the key paths. Read at start-up and on
    /// SIGHUP; the gateway does not start without a bundle that passes its checks.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
        }
    }
}

/// The audit log's signed checkpoints and refusal recording (see [`crate::audit`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The witness file every signed checkpoint is appended to, one JSON line
    /// each: a copy outside the database, to be shipped where a database
    /// administrator cannot reach it. Relative to the working directory, like the
    /// SQLite file of `server.database_url`.
    #[serde(default = "default_checkpoint_file")]
    pub checkpoint_file: PathBuf,
    /// How often a serving gateway signs the chain head (when it moved), bounding
    /// how much of the log's tail could be cut without a checkpoint noticing.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_secs: u64,
    /// Refusals waiting for the audit writer; beyond this a flood is counted into
    /// `refusal.summary` entries instead of queued, so it cannot exhaust memory.
    #[serde(default = "default_refusal_queue")]
    pub refusal_queue_capacity: usize,
    /// An outside witness as a command (argv, no shell) that receives each
    /// checkpoint's line on stdin; exit 0 accepts it. Empty: none. The witness
    /// file is on the gateway's own disk; this puts the lines out of reach of
    /// whoever administers it (see [`crate::audit::witness`]).
    #[serde(default)]
    pub witness_command: Vec<String>,
    /// An outside witness as an HTTPS endpoint: each checkpoint's line is sent
    /// to it in a POST request.
    #[serde(default)]
    pub witness_url: Option<witness::WitnessUrl>,
    /// The CA certificates (PEM, relative to this file) the witness server's
    /// certificate must chain to; by default the system's CA bundle.
    #[serde(default)]
    pub witness_ca_file: Option<PathBuf>,
    /// The longest wait between two attempts to deliver to a failing witness:
    /// retries start at 1 s and double up to this.
    #[serde(default = "witness::default_retry_max_secs")]
    pub witness_retry_max_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_file: default_checkpoint_file(),
            checkpoint_interval_secs: default_checkpoint_interval(),
            refusal_queue_capacity: default_refusal_queue(),
            witness_command: Vec::new(),
            witness_url: None,
            witness_ca_file: None,
            witness_retry_max_secs: witness::default_retry_max_secs(),
        }
    }
}

impl AuditConfig {
    /// The outside witnesses' settings: the setting and the problem, if any.
    fn check_witnesses(&self) -> Result<(), (&'static str, &'static str)> {
        if self.witness_command.first().is_some_and(String::is_empty) {
            return Err(("audit.witness_command", "the program (first item) is empty"));
        }
        if self.witness_ca_file.is_some() && self.witness_url.is_none() {
            return Err((
                "audit.witness_ca_file",
                "is only used with audit.witness_url",
            ));
        }
        if self.witness_retry_max_secs == 0 {
            return Err(("audit.witness_retry_max_secs", "must be at least 1"));
        }
        Ok(())
    }
}

/// What aggregate releases may show (see [`crate::aggregates`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatesConfig {
    /// Counts from 1 to this minus one are withheld (with complementary
    /// suppression): a small cell could single a person out.
    #[serde(default = "default_suppression_threshold")]
    pub suppression_threshold: u32,
    /// The longest range one request may cover, in calendar months: bounds the
    /// work one request can cause.
    #[serde(default = "default_max_months")]
    pub max_months: u32,
    /// How many days after a month ends its tables are settled (computed
    /// once from the data as it stood then, kept and served unchanged):
    /// outcomes of the month's referrals arrive for a while after it ends, and
    /// a published month must never move (two differing releases would tell
    /// what changed). Before then the month is refused like the current one.
    #[serde(default = "default_settle_days")]
    pub settle_days: u32,
    #[serde(default)]
    pub dp: DpConfig,
}

impl Default for AggregatesConfig {
    fn default() -> Self {
        Self {
            suppression_threshold: default_suppression_threshold(),
            max_months: default_max_months(),
            settle_days: default_settle_days(),
            dp: DpConfig::default(),
        }
    }
}

impl AggregatesConfig {
    /// The aggregate settings' problems: the key and what is wrong.
    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.suppression_threshold < 2 {
            return Err(("aggregates.suppression_threshold", "must be at least 2"));
        }
        if !(1..=120).contains(&self.max_months) {
            return Err(("aggregates.max_months", "must be from 1 to 120"));
        }
        if self.settle_days > 366 {
            return Err(("aggregates.settle_days", "must be from 0 to 366"));
        }
        let dp = &self.dp;
        // Budgets are kept in millionths of epsilon: anything finer is lost.
        if !(dp.epsilon_per_month.is_finite() && (1e-6..=1e3).contains(&dp.epsilon_per_month)) {
            return Err((
                "aggregates.dp.epsilon_per_month",
                "must be a number from 0.000001 to 1000",
            ));
        }
        if !(dp.default_epsilon.is_finite()
            && (1e-6..=dp.epsilon_per_month).contains(&dp.default_epsilon))
        {
            return Err((
                "aggregates.dp.default_epsilon",
                "must be a number from 0.000001 to aggregates.dp.epsilon_per_month",
            ));
        }
        Ok(())
    }
}

/// Where evaluator exports are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportsConfig {
    /// The directory the age-encrypted export files are written to (created when
    /// missing). Relative to the working directory, like the SQLite file. Files
    /// are encrypted before they touch it, so it holds nothing readable.
    #[serde(default = "default_exports_dir")]
    pub dir: PathBuf,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        Self {
            dir: default_exports_dir(),
        }
    }
}

/// The differential-privacy option: noisy counts against a per-partner budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpConfig {
    /// Off by default: exact counts with suppression are what programs publish;
    /// an operator turns noise on when partners may ask many overlapping questions.
    #[serde(default)]
    pub enabled: bool,
    /// The cap on what may be spent on each calendar month of data (UTC),
    /// across all partners together: the bound on what every answer about the
    /// month, to anyone, reveals about one of its referrals. A month's noisy
    /// tables are made once and kept, so asking again spends nothing.
    #[serde(default = "default_epsilon_per_month")]
    pub epsilon_per_month: f64,
    /// What a request costs when it does not say (`epsilon` parameter).
    #[serde(default = "default_epsilon_per_request")]
    pub default_epsilon: f64,
}

impl Default for DpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            epsilon_per_month: default_epsilon_per_month(),
            default_epsilon: default_epsilon_per_request(),
        }
    }
}

fn default_exports_dir() -> PathBuf {
    PathBuf::from("./data/exports")
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    pub kind: PartnerKind,
    pub name: String,
    /// An inactive partner's tokens are refused; the entry stays for the audit trail.
    #[serde(default = "default_true")]
    pub active: bool,
    /// Ed25519 public key (SPKI PEM) that verifies the partner's tokens.
    pub public_key: String,
    /// `sha256:` and the hex SHA-256 of a client certificate's DER. When set, the
    /// partner's tokens are accepted only over a connection presenting that
    /// certificate, so a stolen token alone is not enough.
    #[serde(default)]
    pub cert_fingerprint: Option<String>,
    /// The partner's age recipient (`age1...`), for what is encrypted to it.
    #[serde(default)]
    pub age_recipient: Option<String>,
    /// The purpose of use (an HL7 `PurposeOfUse` code) the partner acts for
    /// when a request declares none in `X-Purpose-Of-Use`. Absent: its kind's
    /// default (`CAREMGT`; `HRESCH` for evaluators, `HOPERAT` for admins).
    /// Whether the purpose allows anything is still the policy's decision.
    #[serde(default)]
    pub default_purpose: Option<String>,
}

impl fmt::Debug for PartnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerConfig")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("active", &self.active)
            .field("cert_bound", &self.cert_fingerprint.is_some())
            .finish_non_exhaustive()
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_tls_handshake_timeout() -> u64 {
    10
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_http2_keep_alive_interval() -> u64 {
    30
}
fn default_http2_max_concurrent_streams() -> u32 {
    64
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_client() -> usize {
    256
}
fn default_database_url() -> String {
    "sqlite://data/crosswalk.db".to_owned()
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_request_timeout() -> u64 {
    30
}
fn default_shutdown_grace() -> u64 {
    30
}
fn default_max_token_lifetime() -> u64 {
    3600
}
fn default_leeway() -> u64 {
    30
}
fn default_phone_region() -> String {
    "US".to_owned()
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("../policies")
}
fn default_checkpoint_file() -> PathBuf {
    PathBuf::from("./data/audit-checkpoints.jsonl")
}
fn default_checkpoint_interval() -> u64 {
    10
}
fn default_refusal_queue() -> usize {
    1024
}
fn default_suppression_threshold() -> u32 {
    11
}
fn default_max_months() -> u32 {
    36
}
fn default_settle_days() -> u32 {
    14
}
fn default_epsilon_per_month() -> f64 {
    1.0
}
fn default_epsilon_per_request() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}

/// A configuration that could not be loaded. The message names the file and the
/// key; it never quotes key material.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {problem}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, key: impl Into<String>, problem: impl fmt::Display) -> Self {
        Self {
            file: file.to_owned(),
            key: key.into(),
            problem: problem.to_string(),
        }
    }
}

impl Config {
    /// Reads `path`, applies `CROSSWALK_*` overrides and `DATABASE_URL` from `env`,
    /// and validates the result.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                path,
                "(file)",
                format!("cannot read the configuration: {e}"),
            )
        })?;
        Self::from_toml(&text, path, env)
    }

    /// Parses configuration text; `path` is used for messages and relative paths.
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map_or_else(|| "(syntax)".to_owned(), |s| line_of(text, s.start));
            ConfigError::new(path, key, e.message())
        })?;
        let mut database_url = None;
        for (name, value) in env {
            if name == "DATABASE_URL" {
                database_url = Some(value);
            } else if let Some(setting) = name.strip_prefix(ENV_PREFIX)
                && name != CONFIG_PATH_VAR
            {
                apply_override(&mut table, setting, &value)
                    .map_err(|problem| ConfigError::new(path, name.clone(), problem))?;
            }
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                ConfigError::new(path, key, e.into_inner().message())
            })?;
        if let Some(url) = database_url {
            config.server.database_url = url;
        }
        path.clone_into(&mut config.source);
        config.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges, formats, and that partner ids are usable.
    fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, problem: &str| Err(ConfigError::new(&self.source, key, problem));
        if self.auth.max_token_lifetime_secs == 0 {
            return err("auth.max_token_lifetime_secs", "must be at least 1");
        }
        if !(1..=10_000_000).contains(&self.auth.replay_cache_per_partner) {
            return err(
                "auth.replay_cache_per_partner",
                "must be from 1 to 10000000",
            );
        }
        if self.server.request_body_limit_bytes == 0 {
            return err("server.request_body_limit_bytes", "must be at least 1");
        }
        if self.server.request_timeout_secs == 0 {
            return err("server.request_timeout_secs", "must be at least 1");
        }
        if let Err((key, problem)) = self.server.check_connections() {
            return err(key, problem);
        }
        if !(self.server.database_url.starts_with("sqlite:")
            || self.server.database_url.starts_with("postgres://")
            || self.server.database_url.starts_with("postgresql://"))
        {
            return err(
                "server.database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if self.audit.checkpoint_interval_secs == 0 {
            return err("audit.checkpoint_interval_secs", "must be at least 1");
        }
        if self.audit.refusal_queue_capacity == 0 {
            return err("audit.refusal_queue_capacity", "must be at least 1");
        }
        if let Err((key, problem)) = self.audit.check_witnesses() {
            return err(key, problem);
        }
        if let Err((key, problem)) = self.aggregates.check() {
            return err(key, problem);
        }
        if self.exchange.program_start < EARLIEST_PROGRAM_START {
            return err(
                "exchange.program_start",
                "must not be before 2000-01-01: no earlier date is accepted anywhere",
            );
        }
        if parse_region(&self.linkage.default_phone_region).is_none() {
            return err(
                "linkage.default_phone_region",
                "must be an ISO 3166 region code such as US",
            );
        }
        for (id, partner) in &self.partners {
            let key = |field: &str| format!("partners.{id}.{field}");
            if !is_valid_partner_id(id) {
                return err(
                    &format!("partners.{id}"),
                    "a partner id is 1-64 characters of a-z, 0-9 and '-'",
                );
            }
            if partner.name.trim().is_empty() {
                return err(&key("name"), "must not be empty");
            }
            if let Some(fp) = &partner.cert_fingerprint
                && parse_fingerprint(fp).is_none()
            {
                return err(
                    &key("cert_fingerprint"),
                    "must be \"sha256:\" followed by 64 hex digits",
                );
            }
            if let Some(recipient) = &partner.age_recipient
                && recipient.parse::<age::x25519::Recipient>().is_err()
            {
                return err(&key("age_recipient"), "is not an age X25519 recipient");
            }
            if let Some(purpose) = &partner.default_purpose
                && purpose.parse::<crate::domain::Purpose>().is_err()
            {
                return err(
                    &key("default_purpose"),
                    "must be an HL7 PurposeOfUse code: 2-16 upper-case letters, e.g. CAREMGT",
                );
            }
        }
        self.routing.validate(self)?;
        for (id, study) in &self.studies {
            study.validate(id, self).map_err(|(field, problem)| {
                let key = if field.is_empty() {
                    format!("studies.{id}")
                } else {
                    format!("studies.{id}.{field}")
                };
                ConfigError::new(&self.source, key, problem)
            })?;
        }
        Ok(())
    }

    /// Resolves a key path against the configuration file's directory.
    pub fn key_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// Partner ids appear in URLs, logs and file names, so they are kept plain.
pub fn is_valid_partner_id(id: &str) -> bool {
    crate::domain::is_partner_id(id)
}

/// `sha256:<64 hex>` to the 32 fingerprint bytes.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part.to_ascii_lowercase(), &mut out).ok()?;
    Some(out)
}

/// Formats a certificate fingerprint the way the configuration holds it.
pub fn format_fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(der)))
}

fn line_of(text: &str, offset: usize) -> String {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    format!("line {line}")
}

/// Sets the setting `CROSSWALK_<SETTING>` names. Path segments are matched to the
/// keys already present case-insensitively, with `_` also matching `-`, so that
/// `PARTNERS__CBO_NORTH__ACTIVE` reaches `[partners.cbo-north] active`.
fn apply_override(table: &mut toml::Table, setting: &str, raw: &str) -> Result<(), String> {
    let segments: Vec<&str> = setting.split("__").collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("names no setting (use __ between levels)".to_owned());
    }
    let mut current = table;
    for (i, segment) in segments.iter().enumerate() {
        let key = current
            .keys()
            .find(|k| k.replace('-', "_").eq_ignore_ascii_case(segment))
            .cloned()
            .unwrap_or_else(|| segment.to_ascii_lowercase());
        if i + 1 == segments.len() {
            current.insert(key, parse_env_value(raw));
            return Ok(());
        }
        let entry = current
            .entry(key)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("{segment} is a value, not a section"))?;
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    #[derive(Deserialize)]
    struct Probe {
        v: toml::Value,
    }
    toml::from_str::<Probe>(&format!("v = {raw}"))
        .map_or_else(|_| toml::Value::String(raw.to_owned()), |p| p.v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [keys]
        master_secret = "gateway/master.key"
        vault_identity = "gateway/vault.age"
        signing_key = "gateway/signing.key.pem"
        tls_cert = "tls/server.pem"
        tls_key = "tls/server.key.pem"
        client_ca = "tls/ca.pem"

        [partners.cbo-north]
        kind = "cbo"
        name = "North CBO"
        public_key = "unused here"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml(
            text,
            Path::new("conf/crosswalk.toml"),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn defaults_apply_and_paths_resolve_against_the_file() {
        let config = load(MINIMAL, &[]).expect("valid");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(config.server.database_url, "sqlite://data/crosswalk.db");
        assert_eq!(
            config.key_path(&config.keys.tls_cert),
            PathBuf::from("conf/tls/server.pem")
        );
        assert!(config.partners["cbo-north"].active);
    }

    #[test]
    fn environment_overrides_reach_nested_and_hyphenated_keys() {
        let config = load(
            MINIMAL,
            &[
                ("CROSSWALK_PARTNERS__CBO_NORTH__ACTIVE", "false"),
                ("CROSSWALK_SERVER__LISTEN", "0.0.0.0:9000"),
                ("CROSSWALK_AUTH__MAX_TOKEN_LIFETIME_SECS", "60"),
                ("DATABASE_URL", "postgres://db/x"),
                ("CROSSWALK_CONFIG", "ignored.toml"),
            ],
        )
        .expect("valid");
        assert!(!config.partners["cbo-north"].active);
        assert_eq!(config.server.listen.port(), 9000);
        assert_eq!(config.auth.max_token_lifetime_secs, 60);
        assert_eq!(config.server.database_url, "postgres://db/x");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let bad_kind = MINIMAL.replace("kind = \"cbo\"", "kind = \"cob\"");
        let e = load(&bad_kind, &[]).expect_err("bad kind");
        let text = e.to_string();
        assert!(
            text.starts_with("conf/crosswalk.toml: partners.cbo-north.kind:"),
            "{text}"
        );

        let e = load(MINIMAL, &[("CROSSWALK_SERVER__LISTN", "x")]).expect_err("typo");
        assert!(e.to_string().contains("listn"), "{e}");

        let e =
            load(MINIMAL, &[("CROSSWALK_AUTH__MAX_TOKEN_LIFETIME_SECS", "0")]).expect_err("zero");
        assert_eq!(e.key, "auth.max_token_lifetime_secs");

        let e = load("[keys\n", &[]).expect_err("syntax");
        assert_eq!(e.key, "line 1");
    }

    #[test]
    fn the_program_start_defaults_to_2000_and_is_never_earlier() {
        let config = load(MINIMAL, &[]).expect("valid");
        assert_eq!(config.exchange.program_start, EARLIEST_PROGRAM_START);
        // From the environment, as a TOML date or a string.
        for value in ["2024-07-01", "\"2024-07-01\""] {
            let config =
                load(MINIMAL, &[("CROSSWALK_EXCHANGE__PROGRAM_START", value)]).expect("valid");
            assert_eq!(
                config.exchange.earliest_event().to_rfc3339(),
                "2024-07-01T00:00:00+00:00"
            );
        }
        let e = load(
            MINIMAL,
            &[("CROSSWALK_EXCHANGE__PROGRAM_START", "1999-12-31")],
        )
        .expect_err("before 2000");
        assert_eq!(e.key, "exchange.program_start");
        let e = load(
            MINIMAL,
            &[("CROSSWALK_EXCHANGE__PROGRAM_START", "2024-13-01")],
        )
        .expect_err("not a date");
        assert_eq!(e.key, "exchange.program_start");
    }

    /// Checkpoints every 10 s while the head moves, by default and in the
    /// example configuration: a tail cut after the last checkpoint goes
    /// unnoticed, so that window stays short.
    #[test]
    fn checkpoints_default_to_every_ten_seconds() {
        assert_eq!(AuditConfig::default().checkpoint_interval_secs, 10);
        assert_eq!(
            load(MINIMAL, &[])
                .expect("valid")
                .audit
                .checkpoint_interval_secs,
            10
        );
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml");
        let example = Config::load(&example, std::iter::empty()).expect("the example loads");
        assert_eq!(example.audit.checkpoint_interval_secs, 10);
        assert!(example.audit.witness_command.is_empty() && example.audit.witness_url.is_none());
    }

    #[test]
    fn outside_witnesses_are_checked_when_read() {
        let config = load(
            MINIMAL,
            &[
                (
                    "CROSSWALK_AUDIT__WITNESS_COMMAND",
                    r#"["ship-line", "--to", "vault"]"#,
                ),
                (
                    "CROSSWALK_AUDIT__WITNESS_URL",
                    "https://witness.example.org/in",
                ),
                ("CROSSWALK_AUDIT__WITNESS_CA_FILE", "tls/ca.pem"),
            ],
        )
        .expect("valid");
        assert_eq!(config.audit.witness_command, ["ship-line", "--to", "vault"]);
        assert!(config.audit.witness_url.is_some());
        assert_eq!(config.audit.witness_retry_max_secs, 60);

        for (name, value, key) in [
            (
                "CROSSWALK_AUDIT__WITNESS_URL",
                "http://witness.example.org/",
                "audit.witness_url",
            ),
            (
                "CROSSWALK_AUDIT__WITNESS_CA_FILE",
                "tls/ca.pem",
                "audit.witness_ca_file",
            ),
            (
                "CROSSWALK_AUDIT__WITNESS_COMMAND",
                r#"["", "x"]"#,
                "audit.witness_command",
            ),
            (
                "CROSSWALK_AUDIT__WITNESS_RETRY_MAX_SECS",
                "0",
                "audit.witness_retry_max_secs",
            ),
        ] {
            let e = load(MINIMAL, &[(name, value)]).expect_err(name);
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn fingerprints_round_trip() {
        let fp = format_fingerprint(b"certificate bytes");
        assert!(parse_fingerprint(&fp).is_some());
        assert!(parse_fingerprint("sha1:abcd").is_none());
    }
}
