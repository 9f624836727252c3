//! Live migration, the controller's part (docs/migration.md is the whole contract): for each
//! VirtualMachineInstanceMigration, the next phase, the target launcher pod, the hand-over to
//! the handlers through the instance's `status.migrationState`, and the clean-up of a failed
//! attempt. Pure: the inputs are values, the controller carries out the [`Plan`].

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kubevirt_api::v1::{
    MigrationConfiguration, VirtualMachineInstance, VirtualMachineInstanceCondition,
    VirtualMachineInstanceMigration, VirtualMachineInstanceMigrationPhaseTransitionTimestamp,
    VirtualMachineInstanceMigrationState, VirtualMachineInstanceMigrationStatus, migration_methods,
    migration_modes, migration_phases, vmi_condition_reasons, vmi_condition_types, vmi_phases,
};

use crate::vmi::phase::{pod_down_or_going_down, pod_ready};
use crate::vmi::pod::COMPUTE_CONTAINER;

/// The label a migration's target pod carries: the migration's uid.
pub const JOB_LABEL: &str = "kubevirt.io/migrationJobUID";
/// The annotation a migration's target pod carries: the migration's name.
pub const JOB_NAME_ANNOTATION: &str = "kubevirt.io/migrationJobName";
/// The instance label the target node's handler watches.
pub const TARGET_NODE_LABEL: &str = "kubevirt.io/migrationTargetNodeName";
/// The node label the target pod's anti-affinity names.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// An annotation on the instance that allows migrating a bridge binding on the pod network
/// (the guest keeps its address; the user vouches that the network copes).
pub const ALLOW_POD_BRIDGE_ANNOTATION: &str = "kubevirt.io/allow-pod-bridge-network-live-migration";
/// The finalizer that keeps a deleted migration until its target is cleaned up.
pub const FINALIZER: &str = "kubevirt.io/migrationJobFinalize";
/// How long a target pod may stay unschedulable before the migration gives up.
pub const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Event reasons of the migration controller.
pub mod reasons {
    pub const SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
    pub const FAILED_CREATE: &str = "FailedCreate";
    pub const SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
    pub const PREPARING_TARGET: &str = "PreparingTarget";
    pub const MIGRATED: &str = "Migrated";
    pub const MIGRATION_FAILED: &str = "FailedMigration";
    pub const ABORT_REQUESTED: &str = "MigrationAbortRequested";
}

/// Whether `vmi` can be live-migrated, as its `LiveMigratable` condition (`pvcs`: the claims of
/// its namespace by name, for the access modes of PVC volumes).
pub fn live_migratable_condition(
    vmi: &VirtualMachineInstance,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
) -> VirtualMachineInstanceCondition {
    let blocker = disk_blocker(vmi, pvcs)
        .map(|m| (vmi_condition_reasons::DISKS_NOT_MIGRATABLE, m))
        .or_else(|| {
            interface_blocker(vmi).map(|m| (vmi_condition_reasons::INTERFACE_NOT_MIGRATABLE, m))
        });
    match blocker {
        Some((reason, message)) => VirtualMachineInstanceCondition {
            type_: vmi_condition_types::LIVE_MIGRATABLE.into(),
            status: "False".into(),
            reason: Some(reason.into()),
            message: Some(message),
            ..Default::default()
        },
        None => VirtualMachineInstanceCondition {
            type_: vmi_condition_types::LIVE_MIGRATABLE.into(),
            status: "True".into(),
            ..Default::default()
        },
    }
}

fn read_write_many(pvcs: &BTreeMap<String, PersistentVolumeClaim>, claim: &str) -> bool {
    pvcs.get(claim)
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.access_modes.as_ref())
        .is_some_and(|m| m.iter().any(|m| m == "ReadWriteMany"))
}

/// The first volume whose data cannot follow the guest, as a message.
fn disk_blocker(
    vmi: &VirtualMachineInstance,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
) -> Option<String> {
    for v in &vmi.spec.volumes {
        let s = &v.volume_source;
        // Copied by the migration (containerDisk overlays, empty disks) or rebuilt by the
        // target launcher from the API (cloud-init, config and identity disks).
        let portable = s.container_disk.is_some()
            || s.empty_disk.is_some()
            || s.cloud_init_no_cloud.is_some()
            || s.cloud_init_config_drive.is_some()
            || s.config_map.is_some()
            || s.secret.is_some()
            || s.service_account.is_some()
            || s.downward_api.is_some();
        if portable {
            continue;
        }
        let claim = s
            .persistent_volume_claim
            .as_ref()
            .map(|p| p.claim_name.as_str())
            .or(s.data_volume.as_ref().map(|d| d.name.as_str()));
        match claim {
            Some(c) if read_write_many(pvcs, c) => continue,
            Some(c) => {
                return Some(format!(
                    "cannot migrate: volume {} uses PVC {c}, which is not ReadWriteMany",
                    v.name
                ));
            }
            None => {
                let kind = s.kinds().first().copied().unwrap_or("unknown");
                return Some(format!(
                    "cannot migrate: volume {} is a {kind} volume, whose data stays on the node",
                    v.name
                ));
            }
        }
    }
    None
}

/// An interface on the pod network whose binding cannot move with the guest.
fn interface_blocker(vmi: &VirtualMachineInstance) -> Option<String> {
    let allow_bridge = vmi.annotations().contains_key(ALLOW_POD_BRIDGE_ANNOTATION);
    let pod_networks: Vec<&str> = vmi
        .spec
        .networks
        .iter()
        .filter(|n| n.network_source.pod.is_some())
        .map(|n| n.name.as_str())
        .collect();
    for iface in &vmi.spec.domain.devices.interfaces {
        if !pod_networks.contains(&iface.name.as_str()) {
            continue;
        }
        let b = &iface.interface_binding_method;
        if b.masquerade.is_some() || b.passt_binding.is_some() || iface.binding.is_some() {
            continue;
        }
        if b.bridge.is_some() && allow_bridge {
            continue;
        }
        return Some(format!(
            "cannot migrate: interface {} is connected to the pod network without masquerade (a bridge binding needs the {ALLOW_POD_BRIDGE_ANNOTATION} annotation)",
            iface.name
        ));
    }
    None
}

/// Errors rendering the target pod.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetPodError {
    #[error("the instance has no node to migrate from")]
    NoSourceNode,
    #[error("the migration has no uid")]
    NoUid,
    #[error("the launcher pod has no compute container")]
    NoCompute,
}

/// The target pod for `migration` of `vmi`, from the instance's own launcher pod `rendered`:
/// a new generated name, the migration's label and annotation, kept off the source node, the
/// migration's extra node selector, and the launcher's libvirt as a daemon (only a daemon
/// accepts libvirt's peer-to-peer connection from the source).
pub fn target_pod(
    vmi: &VirtualMachineInstance,
    migration: &VirtualMachineInstanceMigration,
    mut rendered: Pod,
) -> Result<Pod, TargetPodError> {
    let source = source_node(vmi).ok_or(TargetPodError::NoSourceNode)?;
    let uid = migration
        .metadata
        .uid
        .clone()
        .ok_or(TargetPodError::NoUid)?;
    rendered.labels_mut().insert(JOB_LABEL.into(), uid);
    rendered
        .annotations_mut()
        .insert(JOB_NAME_ANNOTATION.into(), migration.name_any());
    let spec = rendered.spec.get_or_insert_with(Default::default);
    let compute = spec
        .containers
        .iter_mut()
        .find(|c| c.name == COMPUTE_CONTAINER)
        .ok_or(TargetPodError::NoCompute)?;
    let args = compute.args.get_or_insert_with(Vec::new);
    args.push("--libvirt-mode".into());
    args.push("daemon".into());
    let selector = spec.node_selector.get_or_insert_with(BTreeMap::new);
    for (k, v) in &migration.spec.added_node_selector {
        // The instance's own selector wins on a conflicting key.
        selector.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let not_source = NodeSelectorRequirement {
        key: HOSTNAME_LABEL.into(),
        operator: "NotIn".into(),
        values: Some(vec![source.to_string()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    // Terms are alternatives: the source must be excluded from each of them.
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_expressions
            .get_or_insert_with(Vec::new)
            .push(not_source.clone());
    }
    Ok(rendered)
}

fn source_node(vmi: &VirtualMachineInstance) -> Option<&str> {
    vmi.status
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// What the controller knows when it decides about one migration.
pub struct Inputs<'a> {
    pub migration: &'a VirtualMachineInstanceMigration,
    /// The instance `spec.vmiName` names, if it exists.
    pub vmi: Option<&'a VirtualMachineInstance>,
    /// The pods labelled with this migration's uid.
    pub target_pods: &'a [&'a Pod],
    /// The instance's pod on its current node (the source).
    pub source_pod: Option<&'a str>,
    /// Another migration of the same instance that is older and not finished.
    pub other_in_flight: bool,
    /// Why the instance cannot be live-migrated, if it cannot.
    pub not_migratable: Option<String>,
    /// The cluster's migration settings (the KubeVirt CR's `configuration.migrations`),
    /// handed to the handlers as the attempt's `migrationConfiguration`.
    pub config: Option<&'a MigrationConfiguration>,
    pub now: Timestamp,
}

/// A change to the instance.
#[derive(Clone, Debug, PartialEq)]
pub enum VmiChange {
    /// Hand the migration to the handlers: this `migrationState` (replacing any earlier one),
    /// the migration method, and the target node label.
    HandOver {
        state: Box<VirtualMachineInstanceMigrationState>,
        method: &'static str,
    },
    /// The target went away before the source started: mark the attempt failed on the
    /// instance and drop the target label.
    Fail { reason: String },
    /// The migration was cancelled while it runs: ask the handlers to abort it
    /// (`migrationState.abortRequested`, `abortStatus: Aborting`); the target's handler ends
    /// the incoming guest, and the source records the failed outcome. Only while the
    /// instance's state is this migration's (`migration_uid`).
    RequestAbort { migration_uid: String },
}

/// What to do about one migration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The migration's status as it should be written (unchanged when equal to the current).
    pub status: VirtualMachineInstanceMigrationStatus,
    pub create_target_pod: bool,
    /// Target pods to delete.
    pub delete_pods: Vec<String>,
    pub vmi_change: Option<VmiChange>,
    /// An event on the migration: (warning, reason, message).
    pub event: Option<(bool, &'static str, String)>,
    /// Look again after this long even without a change.
    pub requeue: Option<Duration>,
    /// Add (true) or remove (false) [`FINALIZER`].
    pub finalizer: Option<bool>,
}

fn ended(m: &VirtualMachineInstanceMigrationState) -> bool {
    m.completed == Some(true) || m.failed == Some(true)
}

/// The newest of `pods`.
fn newest<'a>(pods: &[&'a Pod]) -> Option<&'a Pod> {
    pods.iter()
        .copied()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn unschedulable_since(pod: &Pod) -> Option<Timestamp> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    if cond.reason.as_deref() != Some("Unschedulable") {
        return None;
    }
    cond.last_transition_time.as_ref().map(|t| t.0).or(pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0))
}

/// The migration method: disks the target cannot reach are copied.
fn method(vmi: &VirtualMachineInstance) -> &'static str {
    let copies =
        vmi.spec.volumes.iter().any(|v| {
            v.volume_source.container_disk.is_some() || v.volume_source.empty_disk.is_some()
        });
    if copies {
        migration_methods::BLOCK_MIGRATION
    } else {
        migration_methods::LIVE_MIGRATION
    }
}

/// Target pods that may be deleted: never one on the instance's current node (after a
/// completed migration that is the instance's pod).
fn deletable(pods: &[&Pod], vmi: Option<&VirtualMachineInstance>) -> Vec<String> {
    let current = vmi.and_then(source_node);
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| current.is_none() || pod_node(p) != current)
        .map(|p| p.name_any())
        .collect()
}

/// The next step of one migration.
pub fn plan(i: &Inputs<'_>) -> Plan {
    let mut p = step(i);
    let has = i
        .migration
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    let deleting = i.migration.metadata.deletion_timestamp.is_some();
    let final_ = p.status.is_final();
    if deleting && has && final_ {
        p.finalizer = Some(false);
    } else if !deleting && !has && !final_ {
        p.finalizer = Some(true);
    }
    p
}

/// [`plan`] without the finalizer.
fn step(i: &Inputs<'_>) -> Plan {
    let current = i.migration.status.clone().unwrap_or_default();
    let phase = current
        .phase
        .clone()
        .unwrap_or_else(|| migration_phases::PENDING.into());
    let mut plan = Plan {
        status: current.clone(),
        ..Default::default()
    };
    let uid = i.migration.metadata.uid.as_deref().unwrap_or_default();
    if current.is_final() {
        if phase == migration_phases::FAILED {
            plan.delete_pods = deletable(i.target_pods, i.vmi);
        }
        return plan;
    }
    let fail = |plan: &mut Plan, message: String| {
        plan.delete_pods = deletable(i.target_pods, i.vmi);
        plan.event = Some((true, reasons::MIGRATION_FAILED, message));
        set_phase(&mut plan.status, migration_phases::FAILED, i.now);
    };
    let Some(vmi) = i.vmi else {
        fail(
            &mut plan,
            format!(
                "the VirtualMachineInstance {} does not exist",
                i.migration.spec.vmi_name.as_deref().unwrap_or_default()
            ),
        );
        return plan;
    };
    let vmi_phase = vmi.status.as_ref().map(|s| s.phase()).unwrap_or("");
    let state = vmi.status.as_ref().and_then(|s| s.migration_state.as_ref());
    let handed_over = state.is_some_and(|m| m.migration_uid.as_deref() == Some(uid));
    if let (true, Some(m)) = (handed_over, state) {
        plan.status.migration_state = Some(m.clone());
        if m.completed == Some(true) {
            set_phase(&mut plan.status, migration_phases::SUCCEEDED, i.now);
            plan.event = Some((
                false,
                reasons::MIGRATED,
                format!(
                    "The VirtualMachineInstance migrated to node {}",
                    m.target_node.as_deref().unwrap_or_default()
                ),
            ));
            return plan;
        }
        if m.failed == Some(true) {
            let why = m.failure_reason.clone().unwrap_or_else(|| "unknown".into());
            if m.abort_requested == Some(true) {
                fail(&mut plan, format!("The migration was aborted: {why}"));
            } else {
                fail(&mut plan, format!("The migration failed: {why}"));
            }
            return plan;
        }
        let target = newest(i.target_pods);
        let target_lost = target.is_none_or(pod_down_or_going_down);
        let cancelled = i.migration.metadata.deletion_timestamp.is_some();
        if (target_lost || cancelled) && m.start_timestamp.is_none() {
            // The source has not started: nothing can arrive any more, so this side ends it.
            let reason = if cancelled {
                "the migration was cancelled".to_string()
            } else {
                "the target pod exited before the migration started".to_string()
            };
            plan.vmi_change = Some(VmiChange::Fail {
                reason: reason.clone(),
            });
            fail(&mut plan, format!("The migration failed: {reason}"));
            return plan;
        }
        if cancelled && m.abort_requested != Some(true) {
            plan.vmi_change = Some(VmiChange::RequestAbort {
                migration_uid: uid.to_string(),
            });
            plan.event = Some((
                false,
                reasons::ABORT_REQUESTED,
                "The migration was cancelled while running: aborting it".into(),
            ));
        }
        // Once started, the source handler records the outcome (a lost target breaks its
        // streams; an abort ends it as failed).
        let next = if m.start_timestamp.is_some() {
            migration_phases::RUNNING
        } else if m.target_node_address.is_some() {
            migration_phases::TARGET_READY
        } else {
            migration_phases::PREPARING_TARGET
        };
        set_phase(&mut plan.status, next, i.now);
        return plan;
    }
    if i.migration.metadata.deletion_timestamp.is_some() {
        // Cancelled before the hand-over: take the target down.
        fail(&mut plan, "the migration was cancelled".into());
        return plan;
    }
    if vmi.metadata.deletion_timestamp.is_some() || vmi_phases::is_final(vmi_phase) {
        fail(
            &mut plan,
            format!(
                "the VirtualMachineInstance {} is {}",
                vmi.name_any(),
                if vmi.metadata.deletion_timestamp.is_some() {
                    "being deleted"
                } else {
                    "no longer running"
                }
            ),
        );
        return plan;
    }
    let target = newest(i.target_pods);
    if target.is_none() && phase != migration_phases::PENDING {
        fail(
            &mut plan,
            "the target pod disappeared before it was ready".into(),
        );
        return plan;
    }
    let Some(target) = target else {
        // Still Pending: start when the instance runs and nothing else moves it.
        if let Some(why) = &i.not_migratable {
            fail(&mut plan, why.clone());
            return plan;
        }
        let busy = i.other_in_flight || state.is_some_and(|m| !ended(m));
        if vmi_phase != vmi_phases::RUNNING || busy || source_node(vmi).is_none() {
            set_phase(&mut plan.status, migration_phases::PENDING, i.now);
            plan.requeue = Some(Duration::from_secs(5));
            return plan;
        }
        plan.create_target_pod = true;
        set_phase(&mut plan.status, migration_phases::SCHEDULING, i.now);
        return plan;
    };
    if pod_down_or_going_down(target) {
        fail(
            &mut plan,
            format!(
                "the target pod {} exited before it was ready",
                target.name_any()
            ),
        );
        return plan;
    }
    if pod_ready(target)
        && let Some(node) = pod_node(target)
    {
        plan.vmi_change = Some(VmiChange::HandOver {
            state: Box::new(VirtualMachineInstanceMigrationState {
                migration_uid: Some(uid.to_string()),
                source_node: source_node(vmi).map(str::to_string),
                source_pod: i.source_pod.map(str::to_string),
                target_node: Some(node.to_string()),
                target_pod: Some(target.name_any()),
                mode: Some(migration_modes::PRE_COPY.into()),
                migration_configuration: i.config.cloned().map(Into::into),
                ..Default::default()
            }),
            method: method(vmi),
        });
        plan.event = Some((
            false,
            reasons::PREPARING_TARGET,
            format!(
                "Handing the migration to the handlers of {} and {node}",
                source_node(vmi).unwrap_or_default()
            ),
        ));
        set_phase(&mut plan.status, migration_phases::PREPARING_TARGET, i.now);
        return plan;
    }
    if pod_node(target).is_some() {
        set_phase(&mut plan.status, migration_phases::SCHEDULED, i.now);
        return plan;
    }
    if let Some(since) = unschedulable_since(target) {
        let waited = i.now.duration_since(since).unsigned_abs();
        if waited >= UNSCHEDULABLE_TIMEOUT {
            fail(
                &mut plan,
                format!(
                    "the target pod {} found no node in {} s",
                    target.name_any(),
                    UNSCHEDULABLE_TIMEOUT.as_secs()
                ),
            );
            return plan;
        }
        plan.requeue = Some(UNSCHEDULABLE_TIMEOUT.saturating_sub(waited));
    }
    set_phase(&mut plan.status, migration_phases::SCHEDULING, i.now);
    plan
}

/// Sets the phase, recording when it was first reached.
/// The phases of a successful migration, in order.
const FORWARD: [&str; 7] = [
    migration_phases::PENDING,
    migration_phases::SCHEDULING,
    migration_phases::SCHEDULED,
    migration_phases::PREPARING_TARGET,
    migration_phases::TARGET_READY,
    migration_phases::RUNNING,
    migration_phases::SUCCEEDED,
];

/// Moves to `phase` and records when. A step forward past phases this controller did not see
/// (the target pod was scheduled, or the guest moved, between two looks) records those too, at
/// the same time: the migration went through each, and clients read the list as its history.
fn set_phase(status: &mut VirtualMachineInstanceMigrationStatus, phase: &str, now: Timestamp) {
    if status.phase.as_deref() == Some(phase) {
        return;
    }
    let from = match status.phase.as_deref() {
        None => Some(0),
        Some(p) => FORWARD.iter().position(|f| *f == p).map(|i| i + 1),
    };
    let passed: &[&str] = match (from, FORWARD.iter().position(|f| *f == phase)) {
        (Some(from), Some(to)) if from <= to => &FORWARD[from..=to],
        _ => std::slice::from_ref(&phase),
    };
    for p in passed {
        if !status
            .phase_transition_timestamps
            .iter()
            .any(|t| t.phase.as_deref() == Some(*p))
        {
            status.phase_transition_timestamps.push(
                VirtualMachineInstanceMigrationPhaseTransitionTimestamp {
                    phase: Some((*p).into()),
                    phase_transition_timestamp: Some(Time(now)),
                },
            );
        }
    }
    status.phase = Some(phase.into());
}

#[cfg(test)]
mod tests;
