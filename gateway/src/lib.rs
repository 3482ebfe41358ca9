//! Crosswalk: a privacy-preserving data exchange gateway for community-responder
//! and co-responder programs. See `../shared/design.md` for the map, README.md
//! for running it and `docs/` for the guides.
//!
//! # Layout
//! From the ground up: a module imports only from the lines above it in this
//! list (or from its own folder), never from below, and no two modules import
//! each other.
//! - [`domain`]: the domain's words — what a partner is, the purpose of use,
//!   the codes of the referral form and the follow-up. Imports nothing of ours.
//! - [`clock`]: the one place that reads the time; [`randomness`]: the one
//!   place that draws random bytes. [`telemetry`]: logging set-up.
//! - [`config`]: the one TOML file and its `CROSSWALK_*` overrides; each section
//!   that needs its own checks has a submodule (`routing`, `study`, `witness`).
//! - [`normalize`]: identifiers in one form (names, dates, phones, addresses).
//! - [`store`]: the database (SQLite or PostgreSQL through one sqlx code path):
//!   rows in, rows out, no rules of the domain above it.
//! - [`secrets`]: the gateway's own keys (master secret, vault identity, signing
//!   key). [`keys`]: `crosswalk keys generate`, a fresh development key set.
//!   [`auth`]: partner tokens (Ed25519 JWTs) checked against the registry.
//! - [`vault`]: raw identifiers sealed with age before they touch the database.
//! - [`pseudonym`]: per-partner and per-study keyed pseudonyms. [`linkage`]:
//!   keyed tokens and Bloom fingerprints that decide whether two identities are
//!   one person.
//! - [`policy`]: the Rego release policy, its decisions and [`policy::release_view`].
//! - [`audit`]: the hash-chained audit log every write and disclosure appends to,
//!   its signed checkpoints and their outside witnesses, `crosswalk audit verify`
//!   (the chain, and the audited tables' rows against it) and the refusal writer.
//! - [`subjects`]: the registry of pseudonymous people each identity resolves to.
//! - [`exchange`]: referrals, their routing, outcomes, reassignments, consents
//!   and case statuses — the writes partners make every day.
//! - [`reads`]: every record-level read: decide, unseal only what is released,
//!   [`policy::release_view`], and the disclosure's audit entry.
//! - [`exports`]: de-identified, k-anonymous, age-encrypted study exports for
//!   evaluators, with signed manifests. [`aggregates`]: counts safe to publish —
//!   small-cell and complementary suppression, the differential-privacy option
//!   and its budget.
//! - [`http`]: routers, handlers, problem+json errors, metrics, OpenAPI.
//! - [`server`]: TLS, the accept loop and graceful shutdown.
//! - [`demo`]: `crosswalk demo`, the gateway seeded with synthetic data.
//! - [`cli`]: the `crosswalk` commands; thin, each loads what it needs and calls in.
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
pub mod domain;
pub mod exchange;
pub mod exports;
pub mod http;
pub mod keys;
pub mod linkage;
pub mod normalize;
pub mod policy;
pub mod pseudonym;
pub mod randomness;
pub mod reads;
pub mod secrets;
pub mod server;
pub mod store;
pub mod subjects;
pub mod telemetry;
pub mod vault;

#[cfg(test)]
mod edge_proptests;
