//! The VM lifecycle subresources (`start`, `stop`, `restart`) as upstream's virt-api implements
//! them, planned purely: given the VM, its VMI (if any) and the request body, which JSON patch
//! goes to the VM (or its status), or why the request is refused. The HTTP handler applies the
//! plan with the caller's identity.
//!
//! Upstream's rules, by run strategy:
//! - start: Halted → `runStrategy: Always` (or a Start request when starting paused); Manual and
//!   RerunOnFailure → a Start state-change request (Stop+Start when the old VMI finished);
//!   Always and Once → refused.
//! - stop: Always and Once → `runStrategy: Halted`; Manual and RerunOnFailure → a Stop request
//!   for the running VMI; Halted → only to shorten the grace period of a VMI still stopping.
//! - restart: a Stop (for the current VMI uid) and a Start request; Halted and Once refuse it.

use kubevirt_api::v1::{
    VirtualMachine, VirtualMachineInstance, VirtualMachineStateChangeRequest, run_strategies as rs,
    state_change_actions, vmi_phases,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The request body of `start` (`subresources.kubevirt.io/v1` StartOptions).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartOptions {
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub dry_run: Vec<String>,
}

/// The request body of `stop`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopOptions {
    #[serde(default)]
    pub grace_period: Option<i64>,
    #[serde(default)]
    pub dry_run: Vec<String>,
}

/// The request body of `restart`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartOptions {
    #[serde(default)]
    pub grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub dry_run: Vec<String>,
}

/// Why a lifecycle request is refused, with the HTTP status upstream answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 409: the VM is not in a state where this makes sense.
    #[error("{0}")]
    Conflict(String),
    /// 400: the request itself is wrong.
    #[error("{0}")]
    BadRequest(String),
}

impl Refusal {
    pub fn code(&self) -> u16 {
        match self {
            Refusal::Conflict(_) => 409,
            Refusal::BadRequest(_) => 400,
        }
    }
}

/// Which endpoint a planned JSON patch is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The VM itself (`spec.runStrategy`).
    Vm,
    /// The VM's status subresource (`status.stateChangeRequests`).
    VmStatus,
}

/// What to do for an accepted request.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// A new `terminationGracePeriodSeconds` for the running VMI, applied first.
    pub vmi_grace_period: Option<i64>,
    pub target: Target,
    /// An RFC 6902 patch; its `test` operations make a concurrent change fail with a conflict.
    pub patch: Value,
}

const VM_NOT_RUNNING: &str = "VM is not running";

fn is_final(vmi: &VirtualMachineInstance) -> bool {
    matches!(
        vmi.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some(vmi_phases::SUCCEEDED | vmi_phases::FAILED)
    )
}

fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn run_strategy(vm: &VirtualMachine) -> String {
    vm.spec.effective_run_strategy().to_string()
}

/// The patch that switches the VM between running and halted, on whichever field it uses.
fn running_patch(vm: &VirtualMachine, running: bool) -> Value {
    match (&vm.spec.run_strategy, vm.spec.running) {
        (Some(current), _) => json!([
            {"op": "test", "path": "/spec/runStrategy", "value": current},
            {"op": "replace", "path": "/spec/runStrategy", "value": if running { rs::ALWAYS } else { rs::HALTED }},
        ]),
        (None, current) => json!([
            {"op": "test", "path": "/spec/running", "value": current},
            {"op": "replace", "path": "/spec/running", "value": running},
        ]),
    }
}

fn request(action: &str, uid: Option<String>, paused: bool) -> VirtualMachineStateChangeRequest {
    let mut r = VirtualMachineStateChangeRequest {
        action: action.into(),
        uid,
        ..Default::default()
    };
    if paused {
        r.data.insert("paused".into(), "true".into());
    }
    r
}

/// The status patch that queues state-change requests, refusing to stack a start on a start.
pub fn change_requests_patch(
    vm: &VirtualMachine,
    changes: Vec<VirtualMachineStateChangeRequest>,
) -> Result<Value, Refusal> {
    let status = vm.status.clone().unwrap_or_default();
    let mut ops = Vec::new();
    if status == Default::default() {
        ops.push(
            json!({"op": "add", "path": "/status", "value": {"stateChangeRequests": changes}}),
        );
        return Ok(Value::Array(ops));
    }
    // Only a present list can be tested: an empty one is not stored (serialization omits it).
    if !status.state_change_requests.is_empty() {
        ops.push(json!({"op": "test", "path": "/status/stateChangeRequests", "value": status.state_change_requests}));
    }
    let only_stop = changes.len() == 1 && changes[0].action == state_change_actions::STOP;
    if status.state_change_requests.is_empty() {
        ops.push(json!({"op": "add", "path": "/status/stateChangeRequests", "value": changes}));
    } else if only_stop {
        // A stop overrides whatever was queued.
        ops.push(json!({"op": "replace", "path": "/status/stateChangeRequests", "value": changes}));
    } else {
        return Err(Refusal::Conflict(
            "unable to complete request: stop/start already underway".into(),
        ));
    }
    if status.start_failure.is_some() {
        ops.push(json!({"op": "remove", "path": "/status/startFailure"}));
    }
    Ok(Value::Array(ops))
}

/// Plans `start`.
pub fn start(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    opts: &StartOptions,
) -> Result<Plan, Refusal> {
    if vmi.is_some_and(|v| !is_final(v) && !matches!(phase(v), "" | vmi_phases::UNKNOWN)) {
        return Err(Refusal::Conflict("VM is already running".into()));
    }
    let strategy = run_strategy(vm);
    match strategy.as_str() {
        rs::HALTED => {
            let template_paused = vm
                .spec
                .template
                .spec
                .as_ref()
                .is_some_and(|s| s.starts_paused());
            if opts.paused && !template_paused {
                let patch = change_requests_patch(
                    vm,
                    vec![request(state_change_actions::START, None, true)],
                )?;
                Ok(Plan {
                    vmi_grace_period: None,
                    target: Target::VmStatus,
                    patch,
                })
            } else {
                Ok(Plan {
                    vmi_grace_period: None,
                    target: Target::Vm,
                    patch: running_patch(vm, true),
                })
            }
        }
        rs::RERUN_ON_FAILURE | rs::MANUAL => {
            let old = vmi.filter(|v| {
                (strategy == rs::RERUN_ON_FAILURE && phase(v) == vmi_phases::SUCCEEDED)
                    || (strategy == rs::MANUAL && is_final(v))
            });
            if strategy == rs::RERUN_ON_FAILURE
                && vmi.is_some_and(|v| phase(v) == vmi_phases::FAILED)
            {
                return Err(Refusal::Conflict(format!(
                    "{strategy} does not support starting VM from failed state"
                )));
            }
            let mut changes = Vec::new();
            if let Some(old) = old {
                changes.push(request(
                    state_change_actions::STOP,
                    old.metadata.uid.clone(),
                    false,
                ));
            }
            changes.push(request(state_change_actions::START, None, opts.paused));
            Ok(Plan {
                vmi_grace_period: None,
                target: Target::VmStatus,
                patch: change_requests_patch(vm, changes)?,
            })
        }
        other => Err(Refusal::Conflict(format!(
            "{other} does not support manual start requests"
        ))),
    }
}

/// Plans `stop`.
pub fn stop(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    opts: &StopOptions,
) -> Result<Plan, Refusal> {
    let strategy = run_strategy(vm);
    let running = vmi.filter(|v| !is_final(v));
    let grace = opts.grace_period.filter(|_| running.is_some());
    let stop_request = |v: &VirtualMachineInstance| {
        change_requests_patch(
            vm,
            vec![request(
                state_change_actions::STOP,
                v.metadata.uid.clone(),
                false,
            )],
        )
    };
    match strategy.as_str() {
        rs::HALTED => {
            let Some(v) = running else {
                return Err(Refusal::Conflict(VM_NOT_RUNNING.into()));
            };
            let old = v.spec.termination_grace_period_seconds;
            let shorter = match (opts.grace_period, old) {
                (Some(new), Some(old)) => new < old,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !shorter {
                return Err(Refusal::Conflict(format!(
                    "{} only supports manual stop requests with a shorter graceperiod",
                    rs::HALTED
                )));
            }
            Ok(Plan {
                vmi_grace_period: grace,
                target: Target::VmStatus,
                patch: stop_request(v)?,
            })
        }
        rs::RERUN_ON_FAILURE | rs::MANUAL => {
            let Some(v) = running else {
                return Err(Refusal::Conflict(VM_NOT_RUNNING.into()));
            };
            Ok(Plan {
                vmi_grace_period: grace,
                target: Target::VmStatus,
                patch: stop_request(v)?,
            })
        }
        _ => Ok(Plan {
            vmi_grace_period: grace,
            target: Target::Vm,
            patch: running_patch(vm, false),
        }),
    }
}

/// Plans `restart`.
pub fn restart(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    opts: &RestartOptions,
) -> Result<Plan, Refusal> {
    match opts.grace_period_seconds {
        Some(g) if g > 0 => {
            return Err(Refusal::BadRequest(
                "For force restart, only gracePeriod=0 is supported for now".into(),
            ));
        }
        Some(g) if g < 0 => {
            return Err(Refusal::BadRequest(
                "gracePeriod has to be greater or equal to 0".into(),
            ));
        }
        _ => {}
    }
    let strategy = run_strategy(vm);
    if strategy == rs::HALTED || strategy == rs::ONCE {
        return Err(Refusal::Conflict(format!(
            "RunStategy {strategy} does not support manual restart requests"
        )));
    }
    let Some(v) = vmi else {
        return Err(Refusal::Conflict(format!(
            "VM is not running: {}",
            rs::HALTED
        )));
    };
    let changes = vec![
        request(state_change_actions::STOP, v.metadata.uid.clone(), false),
        request(state_change_actions::START, None, false),
    ];
    Ok(Plan {
        // A forced restart shortens the guest's grace period to the shortest safe one first.
        vmi_grace_period: opts.grace_period_seconds.map(|_| 1),
        target: Target::VmStatus,
        patch: change_requests_patch(vm, changes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(strategy: Option<&str>, running: Option<bool>) -> VirtualMachine {
        let mut vm = VirtualMachine::new("vm", Default::default());
        vm.spec.run_strategy = strategy.map(str::to_string);
        vm.spec.running = running;
        vm.spec.template.spec = Some(Default::default());
        vm
    }

    fn vmi(phase: &str) -> VirtualMachineInstance {
        let mut v = VirtualMachineInstance::new("vm", Default::default());
        v.metadata.uid = Some("uid-1".into());
        v.spec.termination_grace_period_seconds = Some(180);
        v.status = Some(kubevirt_api::v1::VirtualMachineInstanceStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        v
    }

    #[test]
    fn start_halted_sets_always_and_refuses_when_running() {
        let plan =
            start(&vm(Some("Halted"), None), None, &StartOptions::default()).expect("starts");
        assert_eq!(plan.target, Target::Vm);
        assert_eq!(
            plan.patch[1],
            json!({"op": "replace", "path": "/spec/runStrategy", "value": "Always"})
        );
        let plan = start(&vm(None, Some(false)), None, &StartOptions::default()).expect("starts");
        assert_eq!(
            plan.patch[1],
            json!({"op": "replace", "path": "/spec/running", "value": true})
        );
        let err = start(
            &vm(Some("Halted"), None),
            Some(&vmi("Running")),
            &StartOptions::default(),
        )
        .expect_err("running");
        assert_eq!(err, Refusal::Conflict("VM is already running".into()));
        let err =
            start(&vm(Some("Always"), None), None, &StartOptions::default()).expect_err("always");
        assert_eq!(
            err.to_string(),
            "Always does not support manual start requests"
        );
    }

    #[test]
    fn start_manual_queues_requests_restarting_a_finished_vmi() {
        let plan = start(
            &vm(Some("Manual"), None),
            None,
            &StartOptions {
                paused: true,
                ..Default::default()
            },
        )
        .expect("ok");
        assert_eq!(plan.target, Target::VmStatus);
        assert_eq!(plan.patch[0]["op"], "add");
        assert_eq!(
            plan.patch[0]["value"]["stateChangeRequests"][0],
            json!({"action": "Start", "data": {"paused": "true"}})
        );
        let plan = start(
            &vm(Some("Manual"), None),
            Some(&vmi("Succeeded")),
            &StartOptions::default(),
        )
        .expect("ok");
        let reqs = &plan.patch[0]["value"]["stateChangeRequests"];
        assert_eq!(reqs[0], json!({"action": "Stop", "uid": "uid-1"}));
        assert_eq!(reqs[1], json!({"action": "Start"}));
        let err = start(
            &vm(Some("RerunOnFailure"), None),
            Some(&vmi("Failed")),
            &StartOptions::default(),
        )
        .expect_err("failed");
        assert_eq!(
            err.to_string(),
            "RerunOnFailure does not support starting VM from failed state"
        );
    }

    #[test]
    fn stop_follows_the_run_strategy() {
        let plan = stop(
            &vm(Some("Always"), None),
            Some(&vmi("Running")),
            &StopOptions {
                grace_period: Some(0),
                ..Default::default()
            },
        )
        .expect("stops");
        assert_eq!((plan.target, plan.vmi_grace_period), (Target::Vm, Some(0)));
        assert_eq!(plan.patch[1]["value"], "Halted");
        let err = stop(&vm(Some("Manual"), None), None, &StopOptions::default())
            .expect_err("not running");
        assert_eq!(err.to_string(), "VM is not running");
        let plan = stop(
            &vm(Some("Manual"), None),
            Some(&vmi("Running")),
            &StopOptions::default(),
        )
        .expect("stops");
        assert_eq!(
            plan.patch[0]["value"]["stateChangeRequests"][0],
            json!({"action": "Stop", "uid": "uid-1"})
        );
        let err = stop(
            &vm(Some("Halted"), None),
            Some(&vmi("Running")),
            &StopOptions {
                grace_period: Some(300),
                ..Default::default()
            },
        )
        .expect_err("not shorter");
        assert_eq!(
            err.to_string(),
            "Halted only supports manual stop requests with a shorter graceperiod"
        );
        assert!(
            stop(
                &vm(Some("Halted"), None),
                Some(&vmi("Running")),
                &StopOptions {
                    grace_period: Some(0),
                    ..Default::default()
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn restart_queues_stop_and_start_and_checks_the_grace_period() {
        let plan = restart(
            &vm(Some("Always"), None),
            Some(&vmi("Running")),
            &RestartOptions::default(),
        )
        .expect("restarts");
        let reqs = &plan.patch[0]["value"]["stateChangeRequests"];
        assert_eq!(reqs.as_array().map(Vec::len), Some(2));
        let err = restart(
            &vm(Some("Always"), None),
            Some(&vmi("Running")),
            &RestartOptions {
                grace_period_seconds: Some(5),
                ..Default::default()
            },
        )
        .expect_err("only 0");
        assert_eq!(err.code(), 400);
        let forced = restart(
            &vm(Some("Always"), None),
            Some(&vmi("Running")),
            &RestartOptions {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .expect("forced");
        assert_eq!(forced.vmi_grace_period, Some(1));
        let err = restart(&vm(Some("Halted"), None), None, &RestartOptions::default())
            .expect_err("halted");
        assert_eq!(
            err.to_string(),
            "RunStategy Halted does not support manual restart requests"
        );
    }

    #[test]
    fn queued_requests_are_not_stacked_but_a_stop_overrides() {
        let mut v = vm(Some("Manual"), None);
        v.status = Some(kubevirt_api::v1::VirtualMachineStatus {
            state_change_requests: vec![request(state_change_actions::START, None, false)],
            ..Default::default()
        });
        let err =
            change_requests_patch(&v, vec![request(state_change_actions::START, None, false)])
                .expect_err("stacked");
        assert_eq!(
            err.to_string(),
            "unable to complete request: stop/start already underway"
        );
        let ok = change_requests_patch(
            &v,
            vec![request(state_change_actions::STOP, Some("u".into()), false)],
        )
        .expect("stop wins");
        assert_eq!(ok[1]["op"], "replace");
        assert_eq!(ok[0]["op"], "test");
    }
}
