//! Per-field release policy: the Rego bundle in `policies/`, evaluated in-process
//! with regorus, and the one function that enforces its decisions.
//!
//! A read flows: build a [`DecisionInput`] (who asks, for what purpose, which
//! action on which resource, the relationship to the record, the record's Part 2
//! flag, the active consent) → [`Policy::decide`] → [`release_view`] for each
//! record with that [`Decision`] → the audit entry, with
//! [`Decision::consent_to_record`] as its consent. The decision is the Rego
//! document `data.crosswalk.decision`; `policies/README.md` is the binding
//! description of its input and output.
//!
//! # Engines
//! regorus evaluates the bundle two ways ([`engine`]): its interpreter, the
//! reference the Rego tests run on, and its bytecode VM, about three times
//! faster, which decides whenever it gave exactly the interpreter's decisions
//! on the load-time check questions (otherwise the interpreter decides, and the
//! log says why). [`Policy::engine`] says which.
//!
//! # Never failing open
//! - Start-up ([`Policy::load`]) and reload ([`Policy::reload`]) accept a bundle
//!   only after every check passed: it parses, its data sits where OPA would put
//!   it, the catalog names exactly the fields the code holds ([`resources`]), the
//!   decision is well-formed for a probe of every resource, and every Rego test
//!   passes. Otherwise start-up fails and a reload keeps the bundle in force.
//! - A decision that does not parse strictly (unknown effect or action, a field
//!   the catalog does not name, ...) or fails to evaluate is a deny, logged.
//! - A field the decision does not name never reaches a view.
//! - A decision depends on the consent's scope, never on which consent it is:
//!   the id is not in the policy's input nor in the cache key, and the decision
//!   says only whether the consent was used ([`Decision::consent_used`]).
//!
//! # Versions and reload
//! A bundle's version is BLAKE3 over its files ([`bundle`]); every decision
//! carries it, for the audit log. [`Policy::reload`] re-reads the directory and
//! swaps the new snapshot in atomically (`ArcSwap`): a request in flight finishes
//! with the snapshot it started with, the next one sees the new bundle, and the
//! decision cache — which lives in the snapshot — starts empty.
//!
//! # Adding a policy decision (a new resource)
//! 1. Add the resource and its fields to [`resources`] (the code's side).
//! 2. Add its fields to `policies/crosswalk/catalog/data.json` with their classes,
//!    and the resource to `vocabulary.resources`; describe it in CONTRACT.md.
//! 3. Give every partner kind's rule an answer for it (default deny covers the
//!    rest), with Rego tests beside the rule, and run `crosswalk policy test`.
//! 4. In the read path: build the `DecisionInput`, call [`Policy::decide`], and
//!    return only [`release_view`]s — 404 when the effect allows no record-level
//!    view, so that existence is not revealed.
//! 5. Refresh the authorization matrix (`policies/MATRIX.md`):
//!    `UPDATE_MATRIX=1 cargo test -p crosswalk matrix`, and review the diff. The
//!    matrix test also decides every case on both engines; if the VM disagrees,
//!    rewrite the rule as `policies/README.md` says (an `else` branch must not
//!    fail inside an iteration).

mod bundle;
mod cache;
mod catalog;
pub mod commands;
mod decision;
mod engine;
mod input;
mod release;
pub mod resources;
mod snapshot;

#[cfg(test)]
mod matrix;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

pub use self::catalog::FieldClass;
pub use self::decision::{Decision, Effect, FieldAction};
pub use self::engine::DecisionEngine;
pub use self::input::{
    Action, ConsentScope, DecisionInput, InvalidPurpose, Purpose, RecordFacts, Relationship,
    Requester, StudyFacts,
};
pub use self::release::{FieldShaper, NOTICES_KEY, NotReleasable, ReleasedView, release_view};
pub use self::resources::Resource;
use self::snapshot::{LoadedBundle, Snapshot};
pub use self::snapshot::{TestFailure, TestReport};

/// A bundle that could not be loaded, or a decision that could not be made.
/// Messages name files, rules and fields — never a record's contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("policy bundle {}: {problem}", dir.display())]
    Bundle { dir: PathBuf, problem: String },
    #[error("policy bundle file {}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error(
        "policy bundle {}: the catalog (data.crosswalk.catalog) and the gateway's resources disagree: {}",
        dir.display(),
        problems.join("; ")
    )]
    Catalog { dir: PathBuf, problems: Vec<String> },
    #[error("policy bundle {}: {} {problem}", dir.display(), snapshot::DECISION_RULE)]
    Decision { dir: PathBuf, problem: String },
    #[error(
        "policy bundle {}: {} of {} Rego tests failed: {}",
        dir.display(),
        failures.len(),
        failures.len() + passed,
        failures.iter().map(|f| format!("{} ({})", f.name, f.problem)).collect::<Vec<_>>().join("; ")
    )]
    TestsFailed {
        dir: PathBuf,
        passed: usize,
        failures: Vec<TestFailure>,
    },
    #[error("policy decision: {problem}")]
    Evaluation { problem: String },
}

impl PolicyError {
    fn io(path: &Path, error: &std::io::Error) -> Self {
        Self::File {
            path: path.to_owned(),
            problem: error.to_string(),
        }
    }
}

/// The versions either side of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub previous: Arc<str>,
    pub current: Arc<str>,
}

/// The loaded policy: the bundle in force, swapped atomically on reload. Shared
/// by every request.
pub struct Policy {
    dir: PathBuf,
    current: ArcSwap<Snapshot>,
    /// Serializes reloads, so that two SIGHUPs in a row cannot swap an older
    /// reading of the directory over a newer one.
    reloading: Mutex<()>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("dir", &self.dir)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads the bundle in `dir` and runs every start-up check.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let snapshot = Snapshot::load(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            current: ArcSwap::from_pointee(snapshot),
            reloading: Mutex::new(()),
        })
    }

    /// Re-reads the directory, runs the same checks as start-up, and only then
    /// swaps the new bundle in. On failure the bundle in force stays, and the
    /// log says why; either way the outcome is logged. A bundle whose files have
    /// not changed (same version) is kept as it is.
    pub fn reload(&self) -> Result<Reloaded, PolicyError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.version();
        // An unchanged bundle decides exactly as before: keep it, and its cache.
        if let Ok(bundle) = bundle::Bundle::read(&self.dir)
            && *bundle.version() == *previous
        {
            tracing::info!(policy_version = %previous, "policy unchanged");
            return Ok(Reloaded {
                current: Arc::clone(&previous),
                previous,
            });
        }
        match Snapshot::load(&self.dir) {
            Ok(snapshot) => {
                let current = Arc::clone(&snapshot.version);
                self.current.store(Arc::new(snapshot));
                tracing::info!(
                    policy_version = %current,
                    previous_version = %previous,
                    "policy reloaded"
                );
                Ok(Reloaded { previous, current })
            }
            Err(e) => {
                tracing::error!(
                    policy_version = %previous,
                    error = %e,
                    "policy reload refused; the previous policy stays in force"
                );
                Err(e)
            }
        }
    }

    /// The version of the bundle in force.
    pub fn version(&self) -> Arc<str> {
        Arc::clone(&self.current.load().version)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The decision for `input`, from the cache when this bundle has made it
    /// before. Never fails: a decision that cannot be made is a deny (logged).
    pub fn decide(&self, input: &DecisionInput) -> Arc<Decision> {
        self.current.load().decide(input)
    }

    /// Evaluates `input` afresh, bypassing the cache (`crosswalk policy eval`,
    /// benchmarks). An error here is what [`Policy::decide`] turns into a deny.
    pub fn evaluate(&self, input: &DecisionInput) -> Result<Decision, PolicyError> {
        self.current
            .load()
            .evaluate(input)
            .map_err(|problem| PolicyError::Evaluation { problem })
    }

    /// The engine that decides for the bundle in force: the VM, unless it could
    /// not compile the bundle or disagreed with the interpreter at load.
    pub fn engine(&self) -> DecisionEngine {
        self.current.load().engine()
    }

    /// Evaluates `input` on a given engine, bypassing the cache: for the
    /// benchmark's comparison of the two (the VM falls back to the interpreter
    /// when the bundle does not compile for it).
    pub fn evaluate_with(
        &self,
        engine: DecisionEngine,
        input: &DecisionInput,
    ) -> Result<Decision, PolicyError> {
        self.current
            .load()
            .evaluate_with(engine, input)
            .map_err(|problem| PolicyError::Evaluation { problem })
    }
}

/// Loads the bundle in `dir` (parse and data only) and runs its Rego tests with
/// the engine the server uses: `crosswalk policy test`.
pub fn run_tests(dir: &Path) -> Result<TestReport, PolicyError> {
    Ok(LoadedBundle::load(dir)?.run_tests())
}
