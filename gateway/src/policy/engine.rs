//! The two ways regorus can evaluate `data.crosswalk.decision`, and which one a
//! loaded bundle uses.
//!
//! - The **interpreter** evaluates the Rego as written. It is the reference:
//!   the Rego tests run on it (they need `with`, which the VM cannot compile).
//! - The **VM** (regorus's register VM) runs the same rules compiled to
//!   bytecode, about three times faster on the baseline bundle (see
//!   `cargo bench --bench policy`). It is what brings a cold decision under the
//!   100 µs target.
//!
//! The VM is used only as an accelerator of the interpreter, never as an
//! authority of its own:
//! - regorus 0.14.1's VM gets one class of Rego wrong: in an `else` chain, a
//!   branch whose body fails inside an iteration (`some x in xs` that finds
//!   nothing) or by assigning an undefined function value (`v := f(x)`) makes
//!   the whole rule undefined instead of falling through to the next `else`.
//!   The baseline is written so that no chain relies on that (see
//!   `policies/crosswalk/fields.rego`, `consent_decision`), and the tests show
//!   both engines give identical decisions over the whole authorization matrix
//!   and on every decision the Rego tests ask their `t_decide` helper for.
//! - An operator's bundle might not be written that way. So at every load the
//!   VM must compile the bundle and give exactly the interpreter's decision for
//!   a spread of check inputs; otherwise the snapshot decides with the
//!   interpreter and the log says why (correct, only slower).
//! - A VM evaluation that fails (an error, not a decision) is retried on the
//!   interpreter, logged: an error there is then the policy's own, and a deny.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::{CompiledPolicy, Engine, Value};

use super::catalog::FieldClass;
use super::input::{
    Action, ConsentScope, DecisionInput, Purpose, RecordFacts, Relationship, Requester,
};
use super::resources::Resource;
use crate::config::PartnerKind;

/// Which engine decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionEngine {
    /// regorus's interpreter: the reference.
    Interpreter,
    /// regorus's register VM, used when it agrees with the interpreter.
    Vm,
}

impl DecisionEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interpreter => "interpreter",
            Self::Vm => "vm",
        }
    }
}

impl fmt::Display for DecisionEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bound on VM instructions per decision, against a runaway policy. regorus's
/// default (25,000) is only about six times the baseline's heaviest decision
/// (~4,000), so a larger catalog could turn into spurious errors; this leaves
/// room for a catalog a hundred times larger.
const VM_MAX_INSTRUCTIONS: usize = 1_000_000;

/// VMs kept for reuse: one per thread that evaluates at the same time is
/// enough, and a few spare cost nothing.
const VM_POOL_SIZE: usize = 16;

/// The decision rule of one bundle, compiled for both engines.
pub(super) struct DecisionEngines {
    interpreter: CompiledPolicy,
    vm: Option<VmDecision>,
    /// Why the VM is not in use, when it is not.
    vm_refused: Option<String>,
}

impl fmt::Debug for DecisionEngines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionEngines")
            .field("in_use", &self.in_use())
            .field("vm_refused", &self.vm_refused)
            .finish_non_exhaustive()
    }
}

impl DecisionEngines {
    /// Compiles `rule` of `engine` (policy modules and data) for the
    /// interpreter, and for the VM if it can. Only an interpreter failure is an
    /// error; the VM is not used until [`DecisionEngines::check_agreement`]
    /// passes.
    pub fn compile(engine: &mut Engine, rule: &str) -> Result<Self, String> {
        let interpreter = engine
            .compile_with_entrypoint(&rule.into())
            .map_err(|e| e.to_string())?;
        let (vm, vm_refused) = match Compiler::compile_from_policy(&interpreter, &[rule]) {
            Ok(program) => (
                Some(VmDecision {
                    program,
                    data: engine.get_data(),
                    policy: interpreter.clone(),
                    pool: Mutex::new(Vec::new()),
                }),
                Some("its agreement with the interpreter was not checked".to_owned()),
            ),
            Err(e) => (None, Some(format!("the VM cannot compile the bundle: {e}"))),
        };
        Ok(Self {
            interpreter,
            vm,
            vm_refused,
        })
    }

    /// Evaluates every check input on both engines and puts the VM in use only
    /// if it gave exactly the interpreter's answer (the same value, or both an
    /// error) for each. Returns why not, otherwise. The inputs are spread over
    /// rayon's threads (both engines evaluate through `&self`); the first
    /// disagreement in input order is the one reported.
    pub fn check_agreement(&mut self, inputs: &[Value]) -> Result<(), String> {
        let Some(vm) = &self.vm else {
            return Err(self.vm_refused.clone().unwrap_or_default());
        };
        let interpreter = &self.interpreter;
        let disagreement = inputs.par_iter().find_map_first(|input| {
            let by_vm = vm.evaluate(input.clone());
            let by_interpreter = interpreter
                .eval_with_input(input.clone())
                .map_err(|e| e.to_string());
            let agree = match (&by_vm, &by_interpreter) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            let show = |r: &Result<Value, String>| match r {
                Ok(v) => v.to_string(),
                Err(e) => format!("error: {e}"),
            };
            (!agree).then(|| {
                format!(
                    "the VM and the interpreter disagree for the check input {input}: vm {}, interpreter {}",
                    show(&by_vm),
                    show(&by_interpreter)
                )
            })
        });
        self.vm_refused.clone_from(&disagreement);
        disagreement.map_or(Ok(()), Err)
    }

    pub fn in_use(&self) -> DecisionEngine {
        if self.vm.is_some() && self.vm_refused.is_none() {
            DecisionEngine::Vm
        } else {
            DecisionEngine::Interpreter
        }
    }

    /// Evaluates with `engine` (the VM only if it compiled; a VM error is
    /// retried on the interpreter).
    pub fn evaluate_with(&self, engine: DecisionEngine, input: Value) -> Result<Value, String> {
        if engine == DecisionEngine::Vm
            && let Some(vm) = &self.vm
        {
            match vm.evaluate(input.clone()) {
                Ok(value) => return Ok(value),
                Err(problem) => {
                    tracing::warn!(%problem, "the policy VM failed; deciding with the interpreter");
                }
            }
        }
        self.interpreter
            .eval_with_input(input)
            .map_err(|e| e.to_string())
    }

    /// The compiled VM program, for tests that run it against other data.
    #[cfg(test)]
    pub fn vm(&self) -> Option<&VmDecision> {
        self.vm.as_ref()
    }
}

/// The decision rule compiled for the VM, with the bundle's data and a pool of
/// ready VMs (a VM is reused across evaluations: `execute` resets its registers
/// and rule cache; creating one costs about a tenth of an evaluation).
pub(super) struct VmDecision {
    program: Arc<Program>,
    data: Value,
    /// Default rules are looked up in the compiled policy.
    policy: CompiledPolicy,
    pool: Mutex<Vec<RegoVM>>,
}

impl VmDecision {
    fn fresh(&self, data: Value) -> Result<RegoVM, String> {
        let mut vm = RegoVM::new_with_policy(self.policy.clone());
        vm.load_program(Arc::clone(&self.program));
        vm.set_max_instructions(VM_MAX_INSTRUCTIONS);
        vm.set_data(data).map_err(|e| e.to_string())?;
        Ok(vm)
    }

    pub fn evaluate(&self, input: Value) -> Result<Value, String> {
        // A poisoned pool only means a panic elsewhere while pushing or popping;
        // the Vec is whole.
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut vm = match pooled {
            Some(vm) => vm,
            None => self.fresh(self.data.clone())?,
        };
        vm.set_input(input);
        let value = vm.execute().map_err(|e| e.to_string())?;
        // Only a VM that finished cleanly goes back to the pool.
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < VM_POOL_SIZE {
            pool.push(vm);
        }
        Ok(value)
    }

    /// Evaluates against other data (a test that changes the catalog with
    /// `with data.crosswalk.catalog as ...`).
    #[cfg(test)]
    pub fn evaluate_with_data(&self, data: Value, input: Value) -> Result<Value, String> {
        let mut vm = self.fresh(data)?;
        vm.set_input(input);
        vm.execute().map_err(|e| e.to_string())
    }
}

/// What the VM must decide exactly as the interpreter does before it is used:
/// every partner kind in every relationship to every resource, for a
/// record-level read, an aggregate and an export; with nothing on file, with a
/// consent of the record's holder naming it for every class (under Part 2
/// too), the same recorded by another partner (which opens nothing of this
/// record), and with one naming it that opens nothing (direct identifiers
/// only: the fallback line of a consent route); on a Part 2 record and not —
/// 2,400 questions, about a third of a second on one core in a release build. `PERFMSR` is a purpose every kind may
/// declare in the baseline, so the questions reach the per-kind rules; a bundle
/// that refuses it is still checked on its gates.
pub(super) fn agreement_inputs() -> impl Iterator<Item = DecisionInput> {
    const KINDS: [PartnerKind; 5] = [
        PartnerKind::Police,
        PartnerKind::Cbo,
        PartnerKind::Health,
        PartnerKind::Evaluator,
        PartnerKind::Admin,
    ];
    const HOLDER: &str = "crosswalk-check-holder";
    let purpose = || -> Purpose {
        // Invariant: a constant, valid purpose code.
        "PERFMSR".parse().expect("a valid purpose")
    };
    let consent = move |kind: PartnerKind, classes: &[FieldClass], discloser: &str| ConsentScope {
        id: String::new(),
        recipients: vec![kind.as_str().to_owned()],
        purposes: vec![purpose()],
        classes: classes.to_vec(),
        part2_recipients: vec![format!("crosswalk-check-{kind}")],
        discloser: discloser.to_owned(),
    };
    let mut inputs = Vec::new();
    for resource in Resource::ALL {
        for kind in KINDS {
            for relationship in Relationship::ALL {
                for action in [Action::Read, Action::Aggregate, Action::Export] {
                    for on_file in [
                        None,
                        Some(consent(kind, &FieldClass::ALL, HOLDER)),
                        Some(consent(kind, &FieldClass::ALL, "crosswalk-check-elsewhere")),
                        Some(consent(kind, &[FieldClass::DirectIdentifier], HOLDER)),
                    ] {
                        for part2 in [false, true] {
                            inputs.push(DecisionInput {
                                requester: Requester {
                                    id: format!("crosswalk-check-{kind}"),
                                    kind,
                                },
                                purpose: purpose(),
                                action,
                                resource,
                                relationship,
                                record: RecordFacts::held_by(HOLDER, part2),
                                consent: on_file.clone(),
                                study: None,
                            });
                        }
                    }
                }
            }
        }
    }
    inputs.into_iter()
}
