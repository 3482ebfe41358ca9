//! One loaded, checked bundle: the regorus engines, the compiled decision, the
//! catalog and the decision cache — everything a reload replaces at once.
//!
//! Loading never fails open. A snapshot exists only once the bundle parsed, its
//! data placed, its manifest roots respected, its catalog agreed with the code,
//! `data.crosswalk.decision` gave a well-formed decision for probes of every
//! resource by every partner kind, and every Rego test in every package passed.
//! Which engine then decides (the VM, or the interpreter it must agree with) is
//! [`super::engine`]'s business.
//!
//! Decisions are evaluated on an engine holding only the policy modules: the
//! `*_test.rego` files (OPA's naming) are left out, because regorus's
//! interpreter walks every module on each reference to `data`, so test modules
//! slow every decision (by about a fifth on the baseline) without being able to
//! change one. A policy module that needs a rule from a test file therefore
//! fails to compile, at load.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use rayon::prelude::*;
use regorus::Engine;

use super::PolicyError;
use super::bundle::{Bundle, FileKind, check_data_roots, root_contains};
use super::cache::{CAPACITY, DecisionCache};
use super::catalog::Catalog;
use super::decision::Decision;
use super::engine::{DecisionEngine, DecisionEngines, agreement_inputs};
use super::input::{Action, DecisionInput, RecordFacts, Relationship, Requester};
use super::resources::Resource;
use crate::config::PartnerKind;

/// The document every decision is read from.
pub(super) const DECISION_RULE: &str = "data.crosswalk.decision";
/// A Rego test: a rule whose name starts with `test_`, as OPA's runner defines it.
static TEST_NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    // Invariant: a constant, valid regular expression.
    regex::Regex::new(r"\btest_[A-Za-z0-9_]*").expect("a valid regular expression")
});
/// Where the catalog sits under `data`.
const CATALOG_PATH: [&str; 2] = ["crosswalk", "catalog"];

/// The bundle parsed into engines, before any check: what `crosswalk policy
/// test` needs.
pub(super) struct LoadedBundle {
    pub dir: PathBuf,
    pub version: Arc<str>,
    /// Every module and the data: the Rego tests run here.
    pub engine: Engine,
    /// The policy modules (not `*_test.rego`) and the data: decisions run here.
    pub policy_engine: Engine,
    modules: Vec<Module>,
}

/// A test module, by OPA's naming convention.
fn is_test_module(relative: &str) -> bool {
    relative.ends_with("_test.rego")
}

/// A module of the bundle, as the test runner needs it.
struct Module {
    /// Its source name, as given to the engine.
    source: String,
    /// `data.<package>`.
    package: String,
    contents: String,
}

impl LoadedBundle {
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        let bundle = Bundle::read(dir)?;
        let roots = bundle.roots()?;
        let mut policy_engine = Engine::new();
        let mut tests = Vec::new();
        for file in &bundle.files {
            match &file.kind {
                FileKind::Rego if is_test_module(&file.relative) => tests.push(file),
                FileKind::Rego => add_policy(&mut policy_engine, file)?,
                FileKind::Data { at, yaml } => {
                    add_data(
                        &mut policy_engine,
                        file.path.as_path(),
                        &file.contents,
                        at,
                        *yaml,
                        &roots,
                    )?;
                }
                FileKind::Manifest => {}
            }
        }
        let mut engine = policy_engine.clone();
        for file in tests {
            add_policy(&mut engine, file)?;
        }
        let sources: HashMap<String, &str> = bundle
            .files
            .iter()
            .filter(|f| f.kind == FileKind::Rego)
            .map(|f| (f.path.display().to_string(), f.contents.as_str()))
            .collect();
        let packages = engine
            .get_policy_package_components()
            .map_err(|e| PolicyError::Bundle {
                dir: dir.to_owned(),
                problem: e.to_string(),
            })?;
        let mut modules = Vec::with_capacity(packages.len());
        for package in packages {
            let path = package.components.join("/");
            if !roots.iter().any(|root| root_contains(root, &path)) {
                return Err(PolicyError::File {
                    problem: format!(
                        "the manifest roots {roots:?} do not permit package {}",
                        package.components.join(".")
                    ),
                    path: PathBuf::from(package.source_file),
                });
            }
            modules.push(Module {
                package: rule_path(&package.components),
                contents: sources
                    .get(&package.source_file)
                    .map_or_else(String::new, |c| (*c).to_owned()),
                source: package.source_file,
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            version: Arc::from(bundle.version()),
            engine,
            policy_engine,
            modules,
        })
    }

    /// Every `test_*` rule of every package, as `data.<package>.test_<name>`.
    pub fn test_names(&self) -> BTreeSet<String> {
        let mut tests = BTreeSet::new();
        for module in &self.modules {
            for candidate in TEST_NAME.find_iter(&module.contents) {
                // The scan finds every identifier that looks like a test; the
                // parsed module says which of them are rules it declares.
                if self
                    .engine
                    .has_declared_rule_rooted_at(&module.source, candidate.as_str())
                    .unwrap_or(false)
                {
                    tests.insert(format!("{}.{}", module.package, candidate.as_str()));
                }
            }
        }
        tests
    }

    /// Runs every `test_*` rule of every package; a test passes when it is `true`.
    pub fn run_tests(&self) -> TestReport {
        let tests = self.test_names();
        // Tests are independent: each worker evaluates on its own engine clone
        // (evaluation needs `&mut`), and the report is put back in name order.
        let outcomes: Vec<(String, Result<(), String>)> = tests
            .into_par_iter()
            .map_init(
                || self.engine.clone(),
                |engine, test| {
                    let outcome = match engine.eval_rule(test.clone()) {
                        Ok(regorus::Value::Bool(true)) => Ok(()),
                        Ok(regorus::Value::Undefined) => {
                            Err("undefined (a condition did not hold)".to_owned())
                        }
                        Ok(other) => Err(format!("{other} (expected true)")),
                        Err(e) => Err(format!("error: {e}")),
                    };
                    (test, outcome)
                },
            )
            .collect();
        let mut report = TestReport::default();
        for (name, outcome) in outcomes {
            match outcome {
                Ok(()) => report.passed.push(name),
                Err(problem) => report.failed.push(TestFailure { name, problem }),
            }
        }
        report
    }
}

fn add_policy(engine: &mut Engine, file: &super::bundle::BundleFile) -> Result<(), PolicyError> {
    engine
        .add_policy(file.path.display().to_string(), file.contents.clone())
        .map(drop)
        .map_err(|e| PolicyError::File {
            path: file.path.clone(),
            problem: e.to_string(),
        })
}

/// Places one data file under `data` at its folder's path.
fn add_data(
    engine: &mut Engine,
    path: &Path,
    contents: &str,
    at: &[String],
    yaml: bool,
    roots: &[String],
) -> Result<(), PolicyError> {
    let file_error = |problem: String| PolicyError::File {
        path: path.to_owned(),
        problem,
    };
    let value: serde_json::Value = if yaml {
        let value = regorus::Value::from_yaml_str(contents)
            .map_err(|e| file_error(format!("not YAML: {e}")))?;
        serde_json::to_value(&value).map_err(|e| file_error(e.to_string()))?
    } else {
        serde_json::from_str(contents).map_err(|e| file_error(format!("not JSON: {e}")))?
    };
    if at.is_empty() && !value.is_object() {
        return Err(file_error(
            "data at the bundle's root must be a JSON object".to_owned(),
        ));
    }
    let wrapped = at.iter().rev().fold(value, |inner, key| {
        serde_json::Value::Object(serde_json::Map::from_iter([(key.clone(), inner)]))
    });
    check_data_roots(&wrapped, &mut Vec::new(), roots).map_err(file_error)?;
    engine
        .add_data(regorus::Value::from(wrapped))
        .map_err(|e| file_error(format!("conflicts with other data in the bundle: {e}")))
}

/// `data.a.b` for a package's components, bracketing any that is not an identifier.
fn rule_path(components: &[String]) -> String {
    let mut path = String::from("data");
    for component in components {
        let identifier = component
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && component
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if identifier {
            path.push('.');
            path.push_str(component);
        } else {
            path.push('[');
            path.push_str(&serde_json::Value::String(component.clone()).to_string());
            path.push(']');
        }
    }
    path
}

/// The outcome of a bundle's Rego tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    pub passed: Vec<String>,
    pub failed: Vec<TestFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// `data.<package>.test_<name>`.
    pub name: String,
    pub problem: String,
}

/// A loaded bundle that passed every check, with its decision cache.
pub(super) struct Snapshot {
    pub version: Arc<str>,
    /// The decision rule, compiled once for the interpreter and the VM; the VM
    /// decides only if it agreed with the interpreter at load.
    engines: DecisionEngines,
    catalog: Catalog,
    pub cache: DecisionCache,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("engine", &self.engines.in_use())
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Loads `dir` and runs every start-up check.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Self::load_with(dir, true)
    }

    /// Loads `dir` and runs every start-up check but the Rego tests: for tests
    /// of the Rust side that enumerate decisions of the real bundle, whose Rego
    /// tests `crosswalk policy test` and the server's start-up already run.
    #[cfg(test)]
    pub fn load_without_rego_tests(dir: &Path) -> Result<Self, PolicyError> {
        Self::load_with(dir, false)
    }

    fn load_with(dir: &Path, run_rego_tests: bool) -> Result<Self, PolicyError> {
        let mut loaded = LoadedBundle::load(dir)?;
        let catalog = Self::check_catalog(&loaded)?;
        let mut engines = DecisionEngines::compile(&mut loaded.policy_engine, DECISION_RULE)
            .map_err(|e| PolicyError::Decision {
                dir: dir.to_owned(),
                problem: format!("does not compile: {e}"),
            })?;
        let checks: Vec<regorus::Value> = agreement_inputs()
            .map(|input| input_document(&input))
            .collect::<Result<_, _>>()
            .map_err(|problem| PolicyError::Decision {
                dir: dir.to_owned(),
                problem,
            })?;
        if let Err(why) = engines.check_agreement(&checks) {
            tracing::warn!(
                policy_version = %loaded.version,
                %why,
                "the policy VM is not used for this bundle; deciding with the interpreter (slower, same decisions)"
            );
        }
        let snapshot = Self {
            version: Arc::clone(&loaded.version),
            engines,
            catalog,
            cache: DecisionCache::new(CAPACITY),
        };
        for input in probe_inputs() {
            snapshot
                .evaluate(&input)
                .map_err(|problem| PolicyError::Decision {
                    dir: dir.to_owned(),
                    problem: format!("for a probe of {}: {problem}", input.resource),
                })?;
        }
        let report = if run_rego_tests {
            loaded.run_tests()
        } else {
            TestReport::default()
        };
        if !report.failed.is_empty() {
            return Err(PolicyError::TestsFailed {
                dir: dir.to_owned(),
                passed: report.passed.len(),
                failures: report.failed,
            });
        }
        Ok(snapshot)
    }

    fn check_catalog(loaded: &LoadedBundle) -> Result<Catalog, PolicyError> {
        let data =
            serde_json::to_value(loaded.engine.get_data()).map_err(|e| PolicyError::Catalog {
                dir: loaded.dir.clone(),
                problems: vec![e.to_string()],
            })?;
        let document = CATALOG_PATH
            .iter()
            .try_fold(&data, |node, key| node.get(key))
            .ok_or_else(|| PolicyError::Catalog {
                dir: loaded.dir.clone(),
                problems: vec![
                    "no data.crosswalk.catalog (crosswalk/catalog/data.json)".to_owned(),
                ],
            })?;
        Catalog::check(document).map_err(|problems| PolicyError::Catalog {
            dir: loaded.dir.clone(),
            problems,
        })
    }

    #[cfg(test)]
    pub fn catalog_plan(&self, resource: Resource) -> &Arc<super::catalog::ResourcePlan> {
        self.catalog.plan(resource)
    }

    /// The engine that decides.
    pub fn engine(&self) -> DecisionEngine {
        self.engines.in_use()
    }

    #[cfg(test)]
    pub fn engines(&self) -> &DecisionEngines {
        &self.engines
    }

    /// Evaluates the decision for `input`, bypassing the cache.
    pub fn evaluate(&self, input: &DecisionInput) -> Result<Decision, String> {
        self.evaluate_with(self.engines.in_use(), input)
    }

    /// Evaluates the decision for `input` on `engine`, bypassing the cache.
    pub fn evaluate_with(
        &self,
        engine: DecisionEngine,
        input: &DecisionInput,
    ) -> Result<Decision, String> {
        let output = self
            .engines
            .evaluate_with(engine, input_document(input)?)
            .map_err(|e| format!("evaluation failed: {e}"))?;
        if output == regorus::Value::Undefined {
            return Err(format!("{DECISION_RULE} is undefined"));
        }
        let output = serde_json::to_value(&output).map_err(|e| e.to_string())?;
        Decision::parse(
            output,
            input,
            self.catalog.plan(input.resource),
            &self.version,
        )
    }

    /// The decision for `input`: from the cache, or evaluated and remembered. A
    /// decision that cannot be made is a deny, logged, and not remembered.
    pub fn decide(&self, input: &DecisionInput) -> Arc<Decision> {
        if let Some(decision) = self.cache.get(input) {
            return decision;
        }
        match self.evaluate(input) {
            Ok(decision) => {
                let decision = Arc::new(decision);
                self.cache.insert(input.clone(), Arc::clone(&decision));
                decision
            }
            Err(problem) => {
                tracing::error!(
                    policy_version = %self.version,
                    resource = %input.resource,
                    action = input.action.as_str(),
                    requester_kind = %input.requester.kind,
                    %problem,
                    "the policy could not decide; denying"
                );
                Arc::new(Decision::fail_closed(
                    "the policy could not decide; denied",
                    self.catalog.plan(input.resource),
                    &self.version,
                ))
            }
        }
    }
}

/// A read of every resource by every partner kind, in its natural relationship
/// to the record, with nothing on file: questions every bundle must answer with
/// a well-formed decision.
fn probe_inputs() -> impl Iterator<Item = DecisionInput> {
    let kinds = [
        (PartnerKind::Police, Relationship::Submitter),
        (PartnerKind::Health, Relationship::LinkedHealth),
        (PartnerKind::Cbo, Relationship::AssignedCbo),
        (PartnerKind::Evaluator, Relationship::None),
        (PartnerKind::Admin, Relationship::None),
    ];
    Resource::ALL.into_iter().flat_map(move |resource| {
        kinds.into_iter().flat_map(move |(kind, relationship)| {
            ["CAREMGT", "PERFMSR"].map(|purpose| DecisionInput {
                requester: Requester {
                    id: format!("crosswalk-probe-{kind}"),
                    kind,
                },
                // Invariant: constant, valid purpose codes.
                purpose: purpose.parse().expect("a valid purpose"),
                action: Action::Read,
                resource,
                relationship,
                record: RecordFacts::default(),
                consent: None,
                study: None,
            })
        })
    })
}

/// The input document the policy sees.
fn input_document(input: &DecisionInput) -> Result<regorus::Value, String> {
    serde_json::to_value(input)
        .map(regorus::Value::from)
        .map_err(|e| e.to_string())
}
