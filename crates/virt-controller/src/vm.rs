//! The VirtualMachine controller's decisions, as pure functions: what to do about a VM and its
//! instance ([`decide`]), the instance to create from the VM's template ([`vmi_from_vm`]), and
//! the VM's next status ([`next_status`], [`printable_status`]). Upstream's behaviour (run
//! strategies, state change requests, start-failure back-off, condition syncing) is reproduced;
//! the controller in `controllers::vm` only carries the decisions out.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::ResourceExt;
use kubevirt_api::config::{BINDING_BRIDGE, ClusterConfig};
use kubevirt_api::instancetype::{
    VirtualMachineInstancetypeSpec, VirtualMachinePreferenceSpec, kinds,
};
use kubevirt_api::v1::{
    Disk, Input, Interface, InterfaceBindingMethod, InterfaceBridge, InterfaceMasquerade, Network,
    NetworkSource, PodNetwork, VirtualMachine, VirtualMachineCondition, VirtualMachineInstance,
    VirtualMachineInstanceSpec, VirtualMachineStartFailure, VirtualMachineStatus,
    printable_statuses as ps, run_strategies as rs, start_strategies, state_change_actions,
    vm_condition_types, vmi_condition_types, vmi_phases,
};

use crate::conditions;
use crate::instancetype::{self, Conflicts};
use crate::names::{self, reasons};

/// Upstream's ceiling for the start-failure back-off.
pub const MAX_CRASH_LOOP_BACKOFF_SECONDS: i64 = 300;

/// A failure to reconcile, recorded in the VM's Failure condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncError {
    pub reason: String,
    pub message: String,
}

impl SyncError {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        SyncError {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// One step the controller takes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add our finalizer to the VM.
    AddFinalizer,
    /// Remove our finalizer from the VM (it is being deleted and its instance is gone).
    RemoveFinalizer,
    /// Create the instance from the template.
    CreateVmi,
    /// Delete the instance (its UID, as a precondition).
    DeleteVmi { uid: String },
    /// A start request on a Halted VM: switch it to Always (or `running: true`).
    SetRunStrategyAlways,
    /// Append a Start request (RerunOnFailure restarting a failed instance).
    AddStartRequest,
}

/// What [`decide`] concluded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// Look again after this long (a start-failure back-off is running).
    pub requeue_after: Option<Duration>,
    pub sync_error: Option<SyncError>,
}

fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

fn phase(vmi: &VirtualMachineInstance) -> &str {
    vmi.status.as_ref().map(|s| s.phase()).unwrap_or("")
}

fn vmi_is_final(vmi: &VirtualMachineInstance) -> bool {
    vmi_phases::is_final(phase(vmi))
}

fn vmi_uid(vmi: &VirtualMachineInstance) -> String {
    vmi.metadata.uid.clone().unwrap_or_default()
}

/// Whether the first state change request is a Start.
pub fn has_start_request(vm: &VirtualMachine) -> bool {
    first_request(vm).is_some_and(|r| r.action == state_change_actions::START)
}

/// Whether the first state change request is a Start with `paused: true`.
pub fn has_start_paused_request(vm: &VirtualMachine) -> bool {
    first_request(vm).is_some_and(|r| {
        r.action == state_change_actions::START
            && r.data.get("paused").map(String::as_str) == Some("true")
    })
}

/// Whether the first state change request is a Stop aimed at this instance.
pub fn has_stop_request_for(vm: &VirtualMachine, vmi: &VirtualMachineInstance) -> bool {
    first_request(vm).is_some_and(|r| {
        r.action == state_change_actions::STOP
            && r.uid.is_some()
            && r.uid.as_deref() == vmi.metadata.uid.as_deref()
    })
}

fn first_request(
    vm: &VirtualMachine,
) -> Option<&kubevirt_api::v1::VirtualMachineStateChangeRequest> {
    vm.status.as_ref()?.state_change_requests.first()
}

fn status_run_strategy(vm: &VirtualMachine) -> &str {
    vm.status
        .as_ref()
        .and_then(|s| s.run_strategy.as_deref())
        .unwrap_or("")
}

/// Seconds left in the start-failure back-off, if any.
pub fn backoff_left(vm: &VirtualMachine, now: Timestamp) -> Option<Duration> {
    let retry = vm
        .status
        .as_ref()?
        .start_failure
        .as_ref()?
        .retry_after_timestamp
        .as_ref()?
        .0;
    let left = retry.as_second() - now.as_second();
    (left > 0).then(|| Duration::from_secs(left as u64))
}

/// Upstream's start-failure back-off: 10 s times the square of the failure count (the interval
/// grows with the maximum), plus up to half again as random jitter, capped at `max`.
/// `jitter` is a number in [0, 1) the caller draws.
pub fn backoff_seconds(fail_count: i64, max: i64, jitter: f64) -> i64 {
    let count = fail_count.max(1);
    let interval = (max / 30).max(10);
    let delay = interval.saturating_mul(count.saturating_mul(count));
    let range = delay / 2 + 1;
    let extra = ((range as f64) * jitter.clamp(0.0, 0.999_999)) as i64;
    (delay + extra).min(max)
}

/// What to do about `vm`, given its instance as last seen.
pub fn decide(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    now: Timestamp,
) -> Decision {
    let mut d = Decision::default();
    let has_finalizer = vm
        .finalizers()
        .iter()
        .any(|f| f == names::VM_CONTROLLER_FINALIZER);
    if is_deleting(&vm.metadata) {
        let orphan = vm.finalizers().iter().any(|f| f == "orphan");
        match vmi {
            Some(vmi) if !orphan => delete(&mut d, vmi),
            _ if has_finalizer => d.actions.push(Action::RemoveFinalizer),
            _ => {}
        }
        return d;
    }
    if !has_finalizer {
        d.actions.push(Action::AddFinalizer);
    }
    let strategy = vm.spec.effective_run_strategy();
    match strategy {
        rs::ALWAYS => match vmi {
            Some(vmi) => {
                if has_stop_request_for(vm, vmi) || vmi_is_final(vmi) {
                    delete(&mut d, vmi);
                }
            }
            None => start_unless_backing_off(&mut d, vm, now),
        },
        rs::RERUN_ON_FAILURE => match vmi {
            Some(vmi) => {
                let failed = phase(vmi) == vmi_phases::FAILED;
                let succeeded = phase(vmi) == vmi_phases::SUCCEEDED;
                if !is_deleting(&vmi.metadata)
                    && (has_stop_request_for(vm, vmi) || failed || succeeded)
                {
                    delete(&mut d, vmi);
                    if failed {
                        d.actions.push(Action::AddStartRequest);
                    }
                }
            }
            None => {
                if has_start_request(vm) || status_run_strategy(vm) != strategy {
                    start_unless_backing_off(&mut d, vm, now);
                }
            }
        },
        rs::MANUAL => match vmi {
            Some(vmi) => {
                if has_stop_request_for(vm, vmi) {
                    delete(&mut d, vmi);
                }
            }
            None => {
                if has_start_request(vm) {
                    d.actions.push(Action::CreateVmi);
                }
            }
        },
        rs::HALTED => match vmi {
            Some(vmi) => delete(&mut d, vmi),
            None => {
                if has_start_request(vm) {
                    d.actions.push(Action::SetRunStrategyAlways);
                }
            }
        },
        rs::ONCE => {
            if vmi.is_none() {
                d.actions.push(Action::CreateVmi);
            }
        }
        rs::WAIT_AS_RECEIVER => {
            d.sync_error = Some(SyncError::new(
                reasons::FAILED_CREATE,
                "Failure while starting VMI: runStrategy WaitAsReceiver (cross-cluster migration) is not supported",
            ));
        }
        other => {
            d.sync_error = Some(SyncError::new(
                reasons::FAILED_CREATE,
                format!("unknown runstrategy: {other}"),
            ));
        }
    }
    d
}

fn delete(d: &mut Decision, vmi: &VirtualMachineInstance) {
    if !is_deleting(&vmi.metadata) {
        d.actions.push(Action::DeleteVmi { uid: vmi_uid(vmi) });
    }
}

fn start_unless_backing_off(d: &mut Decision, vm: &VirtualMachine, now: Timestamp) {
    match backoff_left(vm, now) {
        Some(left) => d.requeue_after = Some(left),
        None => d.actions.push(Action::CreateVmi),
    }
}

/// What this reconcile did, which the status reflects (upstream's expectations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// An instance was created (and may not be visible yet).
    pub started: bool,
    /// The instance was asked to stop.
    pub stopped: bool,
}

/// Whether the VM wants an instance running (upstream's `isSetToStart`).
pub fn is_set_to_start(vm: &VirtualMachine, vmi: Option<&VirtualMachineInstance>) -> bool {
    let strategy = vm.spec.effective_run_strategy();
    match strategy {
        rs::ALWAYS => true,
        rs::MANUAL => match vmi {
            Some(vmi) => !has_stop_request_for(vm, vmi),
            None => has_start_request(vm),
        },
        rs::RERUN_ON_FAILURE => match vmi {
            Some(vmi) => phase(vmi) != vmi_phases::SUCCEEDED,
            None => has_start_request(vm) || status_run_strategy(vm) != strategy,
        },
        rs::ONCE => vmi.is_none(),
        _ => false,
    }
}

fn vmi_conditions(
    vmi: Option<&VirtualMachineInstance>,
) -> &[kubevirt_api::v1::VirtualMachineInstanceCondition] {
    vmi.and_then(|v| v.status.as_ref())
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[])
}

fn is_migrating(vmi: &VirtualMachineInstance, now: Timestamp) -> bool {
    let Some(m) = vmi.status.as_ref().and_then(|s| s.migration_state.as_ref()) else {
        return false;
    };
    let started = m.start_timestamp.as_ref().is_some_and(|t| t.0 <= now);
    let ended = m.end_timestamp.as_ref().is_some_and(|t| t.0 <= now);
    started && !ended
}

/// `status.printableStatus`: the first that applies, in upstream's order.
pub fn printable_status(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    effects: Effects,
    now: Timestamp,
) -> &'static str {
    let conds = vmi_conditions(vmi);
    let running = vmi.is_some_and(|v| phase(v) == vmi_phases::RUNNING);
    let paused = conditions::has(conds, vmi_condition_types::PAUSED, "True", None);
    let synchronized_false = |reason: &str| {
        conditions::has(
            conds,
            vmi_condition_types::SYNCHRONIZED,
            "False",
            Some(reason),
        )
    };
    let strategy = vm.spec.effective_run_strategy();
    let final_or_none = vmi.is_none_or(vmi_is_final);
    if is_deleting(&vm.metadata) {
        return ps::TERMINATING;
    }
    if let Some(v) = vmi
        && !vmi_is_final(v)
        && (is_deleting(&v.metadata) || effects.stopped)
    {
        return ps::STOPPING;
    }
    if vmi.is_some_and(|v| is_migrating(v, now)) {
        return ps::MIGRATING;
    }
    if running && paused {
        return ps::PAUSED;
    }
    if running {
        return ps::RUNNING;
    }
    if synchronized_false(reasons::FAILED_PVC_NOT_FOUND) {
        return ps::ERROR_PVC_NOT_FOUND;
    }
    if conditions::has(conds, "PodScheduled", "False", Some(reasons::UNSCHEDULABLE)) {
        return ps::ERROR_UNSCHEDULABLE;
    }
    if synchronized_false(reasons::ERR_IMAGE_PULL) {
        return ps::ERR_IMAGE_PULL;
    }
    if synchronized_false(reasons::IMAGE_PULL_BACK_OFF) {
        return ps::IMAGE_PULL_BACK_OFF;
    }
    let starting = match vmi {
        None => effects.started,
        Some(v) => matches!(
            phase(v),
            "" | vmi_phases::PENDING | vmi_phases::SCHEDULING | vmi_phases::SCHEDULED
        ),
    };
    if starting {
        return ps::STARTING;
    }
    let fail_count = vm
        .status
        .as_ref()
        .and_then(|s| s.start_failure.as_ref())
        .and_then(|f| f.consecutive_fail_count)
        .unwrap_or(0);
    if final_or_none
        && !effects.started
        && fail_count > 0
        && matches!(strategy, rs::ALWAYS | rs::RERUN_ON_FAILURE | rs::ONCE)
    {
        return ps::CRASH_LOOP_BACK_OFF;
    }
    let stopped = match vmi {
        Some(v) => vmi_is_final(v),
        None => !effects.started,
    };
    if stopped {
        return ps::STOPPED;
    }
    if strategy == rs::WAIT_AS_RECEIVER
        && vmi.is_none_or(|v| phase(v) == vmi_phases::WAITING_FOR_SYNC)
    {
        return ps::WAITING_FOR_RECEIVER;
    }
    ps::UNKNOWN
}

fn was_running(vmi: &VirtualMachineInstance) -> bool {
    vmi.status.as_ref().is_some_and(|s| {
        s.phase_transition_timestamps
            .iter()
            .any(|t| t.phase.as_deref() == Some(vmi_phases::RUNNING))
    })
}

fn sync_start_failure(
    status: &mut VirtualMachineStatus,
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    now: Timestamp,
    jitter: f64,
) {
    let strategy = vm.spec.effective_run_strategy();
    let restarts = matches!(strategy, rs::ALWAYS | rs::RERUN_ON_FAILURE | rs::ONCE);
    if vmi.is_some_and(was_running) || !restarts {
        status.start_failure = None;
        return;
    }
    let Some(vmi) = vmi.filter(|v| vmi_is_final(v)) else {
        return;
    };
    let uid = vmi_uid(vmi);
    if status
        .start_failure
        .as_ref()
        .is_some_and(|f| f.last_failed_vmi_uid.as_deref() == Some(uid.as_str()))
    {
        return;
    }
    let count = status
        .start_failure
        .as_ref()
        .and_then(|f| f.consecutive_fail_count)
        .unwrap_or(0)
        + 1;
    let delay = backoff_seconds(count, MAX_CRASH_LOOP_BACKOFF_SECONDS, jitter);
    let retry = now
        .checked_add(jiff::SignedDuration::from_secs(delay))
        .unwrap_or(now);
    status.start_failure = Some(VirtualMachineStartFailure {
        consecutive_fail_count: Some(count),
        last_failed_vmi_uid: Some(uid),
        retry_after_timestamp: Some(Time(retry)),
    });
}

/// Whether the first state change request has been carried out and can go.
pub fn first_request_done(vm: &VirtualMachine, vmi: Option<&VirtualMachineInstance>) -> bool {
    let Some(r) = first_request(vm) else {
        return false;
    };
    match r.action.as_str() {
        state_change_actions::STOP => match vmi {
            None => true,
            Some(vmi) => r.uid.is_none() || r.uid.as_deref() != vmi.metadata.uid.as_deref(),
        },
        state_change_actions::START => {
            vmi.is_some_and(|v| !is_deleting(&v.metadata) && !vmi_is_final(v))
        }
        _ => false,
    }
}

fn ready_condition(vmi: Option<&VirtualMachineInstance>, now: &Time) -> VirtualMachineCondition {
    let not_ready = |reason: &str, message: &str| VirtualMachineCondition {
        type_: vm_condition_types::READY.into(),
        status: "False".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    match vmi {
        None => not_ready("VMINotExists", "VMI does not exist"),
        Some(v) => match conditions::get(vmi_conditions(Some(v)), vmi_condition_types::READY) {
            None => not_ready("VMIConditionMissing", "VMI is missing the Ready condition"),
            Some(c) => vm_condition_from(c),
        },
    }
}

fn vm_condition_from(
    c: &kubevirt_api::v1::VirtualMachineInstanceCondition,
) -> VirtualMachineCondition {
    VirtualMachineCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_probe_time: c.last_probe_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
    }
}

fn sync_conditions(
    status: &mut VirtualMachineStatus,
    vmi: Option<&VirtualMachineInstance>,
    sync_error: Option<&SyncError>,
    now: &Time,
) {
    conditions::update(&mut status.conditions, ready_condition(vmi, now));
    match sync_error {
        None => conditions::remove(&mut status.conditions, vm_condition_types::FAILURE),
        Some(e) => conditions::update(
            &mut status.conditions,
            VirtualMachineCondition {
                type_: vm_condition_types::FAILURE.into(),
                status: "True".into(),
                reason: Some(e.reason.clone()),
                message: Some(e.message.clone()),
                last_transition_time: Some(now.clone()),
                last_probe_time: None,
            },
        ),
    }
    let Some(vmi) = vmi else {
        return;
    };
    let ignored = [
        vm_condition_types::READY,
        vm_condition_types::FAILURE,
        vm_condition_types::RESTART_REQUIRED,
    ];
    let vmi_conds = vmi_conditions(Some(vmi));
    for c in vmi_conds {
        if !ignored.contains(&c.type_.as_str()) {
            conditions::update(&mut status.conditions, vm_condition_from(c));
        }
    }
    status.conditions.retain(|c| {
        ignored.contains(&c.type_.as_str()) || vmi_conds.iter().any(|v| v.type_ == c.type_)
    });
}

/// The VM's next status, given its instance as last seen and what this reconcile did.
/// `jitter` in [0, 1) randomizes a new start-failure back-off.
pub fn next_status(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    effects: Effects,
    sync_error: Option<&SyncError>,
    now: Timestamp,
    jitter: f64,
) -> VirtualMachineStatus {
    let mut status = vm.status.clone().unwrap_or_default();
    let created = vmi.is_some();
    status.created = Some(created);
    status.ready = Some(vmi.is_some_and(|v| {
        conditions::has(
            vmi_conditions(Some(v)),
            vmi_condition_types::READY,
            "True",
            None,
        )
    }));
    if let Some(v) = vmi
        && let Some(g) = v
            .annotations()
            .get(names::VM_GENERATION_ANNOTATION)
            .and_then(|g| g.parse::<i64>().ok())
    {
        status.observed_generation = Some(g);
        status.desired_generation = vm.metadata.generation;
    }
    if status
        .run_strategy
        .as_deref()
        .is_some_and(|s| !s.is_empty())
        || created
    {
        status.run_strategy = Some(vm.spec.effective_run_strategy().to_string());
    }
    if first_request_done(vm, vmi) {
        status.state_change_requests.remove(0);
    }
    sync_start_failure(&mut status, vm, vmi, now, jitter);
    sync_conditions(&mut status, vmi, sync_error, &Time(now));
    let mut with_status = vm.clone();
    with_status.status = Some(status);
    let printable = printable_status(&with_status, vmi, effects, now);
    let mut status = with_status.status.unwrap_or_default();
    status.printable_status = Some(printable.to_string());
    status
}

/// Why an instance could not be built from a VM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the VirtualMachine has no spec.template.spec")]
    NoSpec,
    #[error(transparent)]
    Conflicts(#[from] Conflicts),
    #[error("bridge interface is not enabled in kubevirt-config")]
    BridgeNotPermitted,
}

fn owner_reference(vm: &VirtualMachine) -> OwnerReference {
    OwnerReference {
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        name: vm.name_any(),
        uid: vm.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The instance a VM starts: its template with the VM's name and namespace, an owner
/// reference, the generation annotation and our finalizer; a stable firmware UUID; the default
/// pod network and a disk for every volume; then the instancetype and preference (already
/// fetched by the caller) applied, as upstream's VM controller does.
pub fn vmi_from_vm(
    vm: &VirtualMachine,
    instancetype: Option<&VirtualMachineInstancetypeSpec>,
    preference: Option<&VirtualMachinePreferenceSpec>,
    cfg: &ClusterConfig,
) -> Result<VirtualMachineInstance, TemplateError> {
    let template = &vm.spec.template;
    let mut spec = template.spec.clone().ok_or(TemplateError::NoSpec)?;
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut annotations = tmeta.annotations.clone().unwrap_or_default();
    annotations.insert(
        names::VM_GENERATION_ANNOTATION.into(),
        vm.metadata.generation.unwrap_or(0).to_string(),
    );
    if has_start_paused_request(vm) {
        spec.start_strategy = Some(start_strategies::PAUSED.into());
    }
    let firmware = spec.domain.firmware.get_or_insert_with(Default::default);
    if firmware.uuid.as_deref().unwrap_or("").is_empty() {
        firmware.uuid = Some(crate::uuid::legacy_firmware_uuid(&vm.name_any()));
    }
    default_volume_disks(&mut spec);
    if let Some(p) = preference
        && let Some(d) = &p.devices
    {
        let dev = &mut spec.domain.devices;
        for (pref, slot) in [
            (
                d.preferred_autoattach_graphics_device,
                &mut dev.autoattach_graphics_device,
            ),
            (
                d.preferred_autoattach_mem_balloon,
                &mut dev.autoattach_mem_balloon,
            ),
            (
                d.preferred_autoattach_pod_interface,
                &mut dev.autoattach_pod_interface,
            ),
            (
                d.preferred_autoattach_serial_console,
                &mut dev.autoattach_serial_console,
            ),
            (
                d.preferred_autoattach_input_device,
                &mut dev.autoattach_input_device,
            ),
        ] {
            if slot.is_none() {
                *slot = pref;
            }
        }
    }
    if spec.domain.devices.autoattach_input_device == Some(true)
        && spec.domain.devices.inputs.is_empty()
    {
        spec.domain.devices.inputs.push(Input {
            name: "default-0".into(),
            ..Default::default()
        });
    }
    default_network(&mut spec, cfg)?;
    if instancetype.is_some() || preference.is_some() {
        if let Some(m) = &vm.spec.instancetype {
            let key = match m.kind.as_deref().unwrap_or("").to_lowercase().as_str() {
                "virtualmachineinstancetype" | "virtualmachineinstancetypes" => {
                    Some(names::INSTANCETYPE_ANNOTATION)
                }
                "" | "virtualmachineclusterinstancetype" | "virtualmachineclusterinstancetypes" => {
                    Some(names::CLUSTER_INSTANCETYPE_ANNOTATION)
                }
                _ => None,
            };
            if let (Some(k), Some(n)) = (key, &m.name) {
                annotations.insert(k.into(), n.clone());
            }
        }
        if let Some(m) = &vm.spec.preference {
            let key = match m.kind.as_deref().unwrap_or("").to_lowercase().as_str() {
                "virtualmachinepreference" | "virtualmachinepreferences" => {
                    Some(names::PREFERENCE_ANNOTATION)
                }
                "" | "virtualmachineclusterpreference" | "virtualmachineclusterpreferences" => {
                    Some(names::CLUSTER_PREFERENCE_ANNOTATION)
                }
                _ => None,
            };
            if let (Some(k), Some(n)) = (key, &m.name) {
                annotations.insert(k.into(), n.clone());
            }
        }
        instancetype::apply(instancetype, preference, &mut spec, &mut annotations)?;
    }
    let mut finalizers = tmeta.finalizers.clone().unwrap_or_default();
    if !finalizers
        .iter()
        .any(|f| f == names::VM_CONTROLLER_FINALIZER)
    {
        finalizers.push(names::VM_CONTROLLER_FINALIZER.into());
    }
    Ok(VirtualMachineInstance {
        metadata: ObjectMeta {
            name: Some(vm.name_any()),
            namespace: vm.namespace(),
            labels: tmeta.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(vm)]),
            finalizers: Some(finalizers),
            ..Default::default()
        },
        spec,
        status: None,
    })
}

/// A reference to an instancetype or preference: whether it is the namespaced kind, and its name.
pub type Reference = Option<(bool, String)>;

/// Which instancetype and preference objects a VM refers to.
pub fn references(vm: &VirtualMachine) -> (Reference, Reference) {
    let it = vm.spec.instancetype.as_ref().and_then(|m| {
        let namespaced = m.kind.as_deref() == Some(kinds::INSTANCETYPE)
            || m.kind.as_deref().map(str::to_lowercase).as_deref()
                == Some("virtualmachineinstancetypes");
        m.name.clone().map(|n| (namespaced, n))
    });
    let pref = vm.spec.preference.as_ref().and_then(|m| {
        let namespaced = m.kind.as_deref() == Some(kinds::PREFERENCE)
            || m.kind.as_deref().map(str::to_lowercase).as_deref()
                == Some("virtualmachinepreferences");
        m.name.clone().map(|n| (namespaced, n))
    });
    (it, pref)
}

fn default_volume_disks(spec: &mut VirtualMachineInstanceSpec) {
    for volume in &spec.volumes {
        let devices = &spec.domain.devices;
        if !devices.disks.iter().any(|d| d.name == volume.name)
            && !devices.filesystems.iter().any(|f| f.name == volume.name)
        {
            spec.domain.devices.disks.push(Disk {
                name: volume.name.clone(),
                ..Default::default()
            });
        }
    }
}

fn default_network(
    spec: &mut VirtualMachineInstanceSpec,
    cfg: &ClusterConfig,
) -> Result<(), TemplateError> {
    if spec.domain.devices.autoattach_pod_interface == Some(false)
        || !spec.networks.is_empty()
        || !spec.domain.devices.interfaces.is_empty()
    {
        return Ok(());
    }
    let binding = if cfg.default_network_interface == BINDING_BRIDGE {
        if !cfg.permit_bridge_interface_on_pod_network {
            return Err(TemplateError::BridgeNotPermitted);
        }
        InterfaceBindingMethod {
            bridge: Some(InterfaceBridge {}),
            ..Default::default()
        }
    } else {
        InterfaceBindingMethod {
            masquerade: Some(InterfaceMasquerade {}),
            ..Default::default()
        }
    };
    let name = kubevirt_api::defaults::DEFAULT_NETWORK_NAME;
    spec.domain.devices.interfaces = vec![Interface {
        name: name.into(),
        interface_binding_method: binding,
        ..Default::default()
    }];
    spec.networks = vec![Network {
        name: name.into(),
        network_source: NetworkSource {
            pod: Some(PodNetwork::default()),
            ..Default::default()
        },
    }];
    Ok(())
}

#[cfg(test)]
mod tests;
