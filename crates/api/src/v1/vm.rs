//! VirtualMachine: the user-facing, stateful VM whose template becomes a VirtualMachineInstance.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ChangedBlockTrackingStatus, Disk, HotplugVolumeSource, StorageMigratedVolumeInfo,
    VirtualMachineInstanceTemplateSpec,
};
use crate::cdi::DataVolumeSpec;
use crate::schema::integer;

/// The desired state of a virtual machine: whether it should run, and the instance to run.
// Printer columns repeat `type_`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachine",
    namespaced,
    status = "VirtualMachineStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vm",
    shortname = "vms",
    category = "all",
    category = "kubevirt",
    doc = "A virtual machine: a stateful VM whose template is started as a VirtualMachineInstance according to its run strategy.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.printableStatus"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    /// DataVolumes created for, and deleted with, this virtual machine; its volumes may refer
    /// to them by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_volume_templates: Vec<DataVolumeTemplateSpec>,
    /// The instancetype that supplies CPU, memory and other sizing to the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instancetype: Option<InstancetypeMatcher>,
    /// The preference that supplies default device and firmware choices to the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference: Option<PreferenceMatcher>,
    /// When the instance should run: Always, RerunOnFailure, Manual, Halted, Once or
    /// WaitAsReceiver. Not together with `running`; Halted when neither is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// Deprecated: use runStrategy. True starts the instance, false stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    /// The instance this virtual machine runs.
    pub template: VirtualMachineInstanceTemplateSpec,
    /// How a change to the volumes reaches a running instance: Replacement (on restart) or
    /// Migration (storage live migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_volumes_strategy: Option<String>,
}

impl VirtualMachineSpec {
    /// The run strategy in effect: `runStrategy` when set, else Always or Halted from the
    /// deprecated `running`, else Halted. (Setting both is rejected by validation; here
    /// `runStrategy` wins.)
    pub fn effective_run_strategy(&self) -> &str {
        match (&self.run_strategy, self.running) {
            (Some(strategy), _) => strategy,
            (None, Some(true)) => run_strategies::ALWAYS,
            (None, Some(false) | None) => run_strategies::HALTED,
        }
    }
}

/// Known values of [`VirtualMachineSpec::run_strategy`] and [`VirtualMachineStatus::run_strategy`].
pub mod run_strategies {
    /// Keep an instance running at all times, restarting it whenever it stops.
    pub const ALWAYS: &str = "Always";
    /// Restart the instance when it fails, but not when the guest shuts down cleanly.
    pub const RERUN_ON_FAILURE: &str = "RerunOnFailure";
    /// Start and stop only on explicit start/stop requests.
    pub const MANUAL: &str = "Manual";
    /// Never run an instance.
    pub const HALTED: &str = "Halted";
    /// Run the instance once and do not restart it, however it ends.
    pub const ONCE: &str = "Once";
    /// Create a target instance that waits for an incoming (cross-cluster) migration.
    pub const WAIT_AS_RECEIVER: &str = "WaitAsReceiver";
}

/// Known values of [`VirtualMachineSpec::update_volumes_strategy`].
pub mod update_volumes_strategies {
    /// Apply new volumes the next time the instance starts.
    pub const REPLACEMENT: &str = "Replacement";
    /// Move a running instance's data to the new volumes with a storage live migration.
    pub const MIGRATION: &str = "Migration";
}

/// A DataVolume to create together with the virtual machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeTemplateSpec {
    /// Ignored; accepted for compatibility with older clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Ignored; accepted for compatibility with older clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name, labels and annotations of the DataVolume to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// The source and storage of the DataVolume.
    pub spec: DataVolumeSpec,
    /// Unused; kept for compatibility with an older API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DataVolumeTemplateDummyStatus>,
}

/// An always-empty status, kept only so older objects still decode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataVolumeTemplateDummyStatus {}

/// Refers to the instancetype whose settings fill in the VM's template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancetypeMatcher {
    /// The volume whose annotations name the instancetype to use; cleared once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infer_from_volume: Option<String>,
    /// What happens when inferring fails: Reject (the default) or Ignore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infer_from_volume_failure_policy: Option<String>,
    /// VirtualMachineClusterInstancetype (the default) or VirtualMachineInstancetype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name of the instancetype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The ControllerRevision holding the copy of the instancetype in use; recorded on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
}

/// Refers to the preference whose settings fill in the VM's template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferenceMatcher {
    /// The volume whose annotations name the preference to use; cleared once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infer_from_volume: Option<String>,
    /// What happens when inferring fails: Reject (the default) or Ignore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infer_from_volume_failure_policy: Option<String>,
    /// VirtualMachineClusterPreference (the default) or VirtualMachinePreference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name of the preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The ControllerRevision holding the copy of the preference in use; recorded on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
}

/// Known values of `inferFromVolumeFailurePolicy`.
pub mod infer_from_volume_failure_policies {
    /// Reject the virtual machine when nothing can be inferred (the default).
    pub const REJECT: &str = "Reject";
    /// Go on without an instancetype or preference when nothing can be inferred.
    pub const IGNORE: &str = "Ignore";
}

/// The observed state of a virtual machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStatus {
    /// The state of changed block tracking (incremental backup) for the VM's volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_block_tracking: Option<ChangedBlockTrackingStatus>,
    /// The conditions of the virtual machine (Ready, Paused, Failure, RestartRequired, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VirtualMachineCondition>,
    /// Whether an instance of this virtual machine exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    /// The generation of the VM the instance should reflect; compared with observedGeneration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_generation: Option<i64>,
    /// The instancetype in use and the revision that holds its captured copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instancetype_ref: Option<InstancetypeStatusRef>,
    /// The state of a requested memory dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_dump_request: Option<VirtualMachineMemoryDumpRequest>,
    /// The generation of the VM the running instance was started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The preference in use and the revision that holds its captured copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference_ref: Option<InstancetypeStatusRef>,
    /// A short human-readable state (Stopped, Starting, Running, ...), shown by `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printable_status: Option<String>,
    /// Whether an instance is running and ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// The name of the VirtualMachineRestore currently restoring this virtual machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_in_progress: Option<String>,
    /// The run strategy last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_strategy: Option<String>,
    /// The name of the VirtualMachineSnapshot currently being taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_in_progress: Option<String>,
    /// Consecutive failures to start, which drive the crash-loop back-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_failure: Option<VirtualMachineStartFailure>,
    /// Pending start/stop requests, handled in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_change_requests: Vec<VirtualMachineStateChangeRequest>,
    /// Pending volume hotplug and unplug requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_requests: Vec<VirtualMachineVolumeRequest>,
    /// For each volume, whether it can be snapshotted and why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_snapshot_statuses: Vec<VolumeSnapshotStatus>,
    /// The progress of a change to the volumes made under updateVolumesStrategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_update_state: Option<VolumeUpdateState>,
}

/// Known values of [`VirtualMachineStatus::printable_status`].
pub mod printable_statuses {
    /// Not running, and not expected to start.
    pub const STOPPED: &str = "Stopped";
    /// Resources the VM needs (e.g. DataVolumes) are being prepared.
    pub const PROVISIONING: &str = "Provisioning";
    /// The instance is being prepared to run.
    pub const STARTING: &str = "Starting";
    /// The instance is running.
    pub const RUNNING: &str = "Running";
    /// The instance is paused.
    pub const PAUSED: &str = "Paused";
    /// The instance is shutting down.
    pub const STOPPING: &str = "Stopping";
    /// The VM and its resources are being deleted.
    pub const TERMINATING: &str = "Terminating";
    /// The instance keeps failing; the next start waits for a back-off.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// The instance is being live-migrated to another node.
    pub const MIGRATING: &str = "Migrating";
    /// The state could not be determined, e.g. because the node is unreachable.
    pub const UNKNOWN: &str = "Unknown";
    /// The instance cannot be scheduled onto any node.
    pub const ERROR_UNSCHEDULABLE: &str = "ErrorUnschedulable";
    /// A container disk image could not be pulled.
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    /// A container disk image could not be pulled, and pulling is backing off.
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// A PVC the VM uses does not exist.
    pub const ERROR_PVC_NOT_FOUND: &str = "ErrorPvcNotFound";
    /// A DataVolume the VM uses reports an error.
    pub const DATA_VOLUME_ERROR: &str = "DataVolumeError";
    /// Some PVCs the VM uses are not bound yet.
    pub const WAITING_FOR_VOLUME_BINDING: &str = "WaitingForVolumeBinding";
    /// The VM is the target of a cross-cluster migration that has not begun.
    pub const WAITING_FOR_RECEIVER: &str = "WaitingForReceiver";
}

/// One observed condition of an object: its type, status and the time and reason of its last
/// change. Virtual machines, replica sets, migrations and pools report conditions of this shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineCondition {
    /// When the condition was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A machine-readable reason for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True, False or Unknown.
    pub status: String,
    /// Which condition this is.
    #[serde(rename = "type")]
    pub type_: String,
}

/// Known values of the `type` of a virtual machine's [`VirtualMachineCondition`]s.
pub mod vm_condition_types {
    /// Creating or running the instance failed.
    pub const FAILURE: &str = "Failure";
    /// The instance is ready (copied from the instance).
    pub const READY: &str = "Ready";
    /// The instance is paused.
    pub const PAUSED: &str = "Paused";
    /// A change to the VM takes effect only after a restart.
    pub const RESTART_REQUIRED: &str = "RestartRequired";
    /// The VM's spec needs fixing by hand before it can go on.
    pub const MANUAL_RECOVERY_REQUIRED: &str = "ManualRecoveryRequired";
}

/// A request to start or stop the virtual machine's instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStateChangeRequest {
    /// Start or Stop.
    pub action: String,
    /// Extra parameters of the action.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// The UID of the instance the request is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Known values of [`VirtualMachineStateChangeRequest::action`].
pub mod state_change_actions {
    /// Start an instance.
    pub const START: &str = "Start";
    /// Stop the instance.
    pub const STOP: &str = "Stop";
}

/// Repeated failures to start the instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineStartFailure {
    /// How many starts in a row have failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub consecutive_fail_count: Option<i64>,
    /// The UID of the instance that failed last.
    #[serde(
        default,
        rename = "lastFailedVMIUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_failed_vmi_uid: Option<String>,
    /// The earliest time of the next start attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_timestamp: Option<Time>,
}

/// A request to dump the guest's memory into a PVC, and how far it has got.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineMemoryDumpRequest {
    /// The PVC that receives the dump.
    pub claim_name: String,
    /// When the dump finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<Time>,
    /// The name of the dump file in the PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Why the dump failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How far the dump has got: Associating, InProgress, Unmounting, Completed, Dissociating
    /// or Failed.
    pub phase: String,
    /// Whether the PVC should be detached from the virtual machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<bool>,
    /// When the dump started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
}

/// Known values of [`VirtualMachineMemoryDumpRequest::phase`].
pub mod memory_dump_phases {
    /// The PVC is being attached.
    pub const ASSOCIATING: &str = "Associating";
    /// The memory is being written.
    pub const IN_PROGRESS: &str = "InProgress";
    /// The PVC is being unmounted.
    pub const UNMOUNTING: &str = "Unmounting";
    /// The dump is complete.
    pub const COMPLETED: &str = "Completed";
    /// The PVC is being detached.
    pub const DISSOCIATING: &str = "Dissociating";
    /// The dump failed.
    pub const FAILED: &str = "Failed";
}

/// Whether one volume can be included in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// Whether the volume can be snapshotted.
    pub enabled: bool,
    /// The name of the volume.
    pub name: String,
    /// Why the volume cannot be snapshotted; empty when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A request to hotplug or unplug one volume; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineVolumeRequest {
    /// Add a volume and its disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_volume_options: Option<AddVolumeOptions>,
    /// Remove a volume and its disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_volume_options: Option<RemoveVolumeOptions>,
}

/// A volume to hotplug, and the disk that exposes it to the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddVolumeOptions {
    /// The disk the volume appears as; its name is replaced by `name`.
    pub disk: Disk,
    /// `All` to check the request without applying it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<String>,
    /// The name of the new volume and disk.
    pub name: String,
    /// Where the volume's data is.
    pub volume_source: HotplugVolumeSource,
}

/// Which volume to unplug.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveVolumeOptions {
    /// `All` to check the request without applying it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<String>,
    /// The name of the volume (and its disk) to remove.
    pub name: String,
}

/// The progress of a change to the volumes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeUpdateState {
    /// The volumes being moved by a storage live migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_migration_state: Option<VolumeMigrationState>,
}

/// The volumes a storage live migration moves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMigrationState {
    /// Each volume being moved, with its source and destination PVCs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrated_volumes: Vec<StorageMigratedVolumeInfo>,
}

/// The instancetype or preference a virtual machine uses, as recorded in its status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancetypeStatusRef {
    /// The ControllerRevision that holds the copy captured on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_revision_ref: Option<ControllerRevisionRef>,
    /// The volume the resource was inferred from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infer_from_volume: Option<String>,
    /// What happens when inferring fails: Reject or Ignore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infer_from_volume_failure_policy: Option<String>,
    /// The kind of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Names a ControllerRevision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerRevisionRef {
    /// The name of the ControllerRevision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(run_strategy: Option<&str>, running: Option<bool>) -> VirtualMachineSpec {
        VirtualMachineSpec {
            run_strategy: run_strategy.map(str::to_string),
            running,
            ..Default::default()
        }
    }

    #[test]
    fn effective_run_strategy_maps_running_and_defaults_to_halted() {
        assert_eq!(
            spec(None, None).effective_run_strategy(),
            run_strategies::HALTED
        );
        assert_eq!(
            spec(None, Some(true)).effective_run_strategy(),
            run_strategies::ALWAYS
        );
        assert_eq!(
            spec(None, Some(false)).effective_run_strategy(),
            run_strategies::HALTED
        );
        assert_eq!(
            spec(Some(run_strategies::MANUAL), None).effective_run_strategy(),
            run_strategies::MANUAL
        );
        assert_eq!(
            spec(Some(run_strategies::ONCE), Some(true)).effective_run_strategy(),
            run_strategies::ONCE
        );
    }
}
