//! `crosswalk policy test` and `crosswalk policy eval`: the same loader, engine
//! and data the server uses, so what passes here is what the gateway enforces.

use std::path::Path;

use anyhow::Context as _;

use super::{DecisionInput, Policy, run_tests};

/// Runs the bundle's Rego tests; prints each failure, then `N passed, M failed`.
/// Fails on a load error or any failed test.
pub fn test(dir: &Path, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let report = run_tests(dir)?;
    for failure in &report.failed {
        writeln!(out, "FAIL {}: {}", failure.name, failure.problem)?;
    }
    writeln!(
        out,
        "{} passed, {} failed",
        report.passed.len(),
        report.failed.len()
    )?;
    out.flush()?;
    if report.failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} Rego tests failed in {}",
            report.failed.len(),
            report.failed.len() + report.passed.len(),
            dir.display()
        )
    }
}

/// Loads the bundle with every start-up check, evaluates the input document in
/// `input` (bypassing the cache) and prints the decision as JSON, with the
/// bundle's version.
pub fn eval(dir: &Path, input: &Path, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let policy = Policy::load(dir)?;
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("reading the input document {}", input.display()))?;
    let mut json = serde_json::Deserializer::from_str(&text);
    let question: DecisionInput = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}: {} (see policies/README.md for the input document)",
            input.display(),
            e.path(),
            e.inner()
        )
    })?;
    let decision = policy.evaluate(&question)?;
    serde_json::to_writer_pretty(&mut *out, &decision)?;
    writeln!(out)?;
    Ok(())
}
