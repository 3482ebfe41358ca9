//! Crosswalk: a privacy-preserving data exchange gateway for community-responder
//! and co-responder programs. See `../shared/design.md` for the map and README.md
//! for running it.
//!
//! # Layout
//! - [`cli`]: the `crosswalk` commands; thin, each loads what it needs and calls in.
//! - [`config`]: the one TOML file and its `CROSSWALK_*` overrides.
//! - [`secrets`]: the gateway's own keys (master secret, vault identity, signing key).
//! - [`keys`]: `crosswalk keys generate`, a fresh development key set.
//! - [`audit`]: the hash-chained audit log every write and disclosure appends to,
//!   its signed checkpoints and their outside witnesses, `crosswalk audit verify`
//!   (the chain, and the audited tables' rows against it) and the refusal writer.
//! - [`auth`]: partner tokens (Ed25519 JWTs) checked against the registry.
//! - [`policy`]: the Rego release policy, its decisions and [`policy::release_view`].
//! - [`exchange`]: referrals, their routing, outcomes, reassignments and case
//!   statuses — the writes partners make every day.
//! - [`exports`]: de-identified, k-anonymous, age-encrypted study exports for
//!   evaluators, with signed manifests.
//! - [`reads`]: every record-level read: decide, unseal only what is released,
//!   [`policy::release_view`], and the disclosure's audit entry.
//! - [`aggregates`]: counts safe to publish — small-cell and complementary
//!   suppression, the differential-privacy option and its budget.
//! - [`store`]: the database (SQLite or PostgreSQL through one sqlx code path).
//! - [`http`]: routers, handlers, problem+json errors, metrics, OpenAPI.
//! - [`server`]: TLS, the accept loop and graceful shutdown.
//! - [`demo`]: `crosswalk demo`, the gateway seeded with synthetic data.
//! - [`clock`]: the one place that reads the time.
//! - [`telemetry`]: logging set-up.
//!
//! A request flows one way: authenticate → parse and validate → decide (policy) →
//! act (domain + store, one transaction with its audit entry) → shape the response.

pub mod aggregates;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod exchange;
pub mod exports;
pub mod http;
pub mod keys;
pub mod linkage;
pub mod normalize;
pub mod policy;
pub mod pseudonym;
pub mod reads;
pub mod secrets;
pub mod server;
pub mod store;
pub mod subjects;
pub mod telemetry;
pub mod vault;

#[cfg(test)]
mod edge_proptests;
