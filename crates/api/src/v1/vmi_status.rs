//! The observed state of an instance (`VirtualMachineInstance.status`): phase, conditions,
//! interfaces, guest OS, volumes, memory, CPU topology and backups. The live-migration state
//! lives in [`super::migration_state`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Machine, VirtualMachineInstanceMigrationState};

/// The phases of an instance's lifecycle (`status.phase`). An empty phase means the instance
/// has not been processed yet.
pub mod vmi_phases {
    /// Accepted by the system; no pod exists yet.
    pub const PENDING: &str = "Pending";
    /// The launcher pod exists but is not scheduled and running yet.
    pub const SCHEDULING: &str = "Scheduling";
    /// The launcher pod is running on a node; virt-handler takes over from here.
    pub const SCHEDULED: &str = "Scheduled";
    /// The guest is running.
    pub const RUNNING: &str = "Running";
    /// The guest stopped on its own or was shut down (final).
    pub const SUCCEEDED: &str = "Succeeded";
    /// The guest crashed, vanished, or was deleted before it ever started (final).
    pub const FAILED: &str = "Failed";
    /// The instance waits to be synchronized from another instance (a decentralized
    /// migration target).
    pub const WAITING_FOR_SYNC: &str = "WaitingForSync";
    /// The state could not be obtained, usually because the node cannot be reached.
    pub const UNKNOWN: &str = "Unknown";

    /// Whether `phase` is one an instance never leaves (Succeeded or Failed).
    pub fn is_final(phase: &str) -> bool {
        phase == SUCCEEDED || phase == FAILED
    }
}

/// The condition types of an instance (`status.conditions[].type`).
pub mod vmi_condition_types {
    /// DataVolumes of the instance are still being provisioned.
    pub const PROVISIONING: &str = "Provisioning";
    /// The instance can serve requests (its pod and guest are up, readiness probes pass).
    pub const READY: &str = "Ready";
    /// False when the instance could not be synchronized with its libvirt domain.
    pub const SYNCHRONIZED: &str = "Synchronized";
    /// The user paused the instance.
    pub const PAUSED: &str = "Paused";
    /// The guest agent is connected.
    pub const AGENT_CONNECTED: &str = "AgentConnected";
    /// The guest agent applied the access credentials.
    pub const ACCESS_CREDENTIALS_SYNCHRONIZED: &str = "AccessCredentialsSynchronized";
    /// The guest agent's version is not supported.
    pub const UNSUPPORTED_AGENT: &str = "AgentVersionNotSupported";
    /// The instance can be live-migrated.
    pub const LIVE_MIGRATABLE: &str = "LiveMigratable";
    /// The instance's storage can be live-migrated.
    pub const STORAGE_LIVE_MIGRATABLE: &str = "StorageLiveMigratable";
    /// vCPUs are being hotplugged or unplugged.
    pub const HOT_VCPU_CHANGE: &str = "HotVCPUChange";
    /// Memory is being hotplugged or unplugged.
    pub const HOT_MEMORY_CHANGE: &str = "HotMemoryChange";
    /// The instance's set of volumes is being updated.
    pub const VOLUMES_CHANGE: &str = "VolumesChange";
    /// Whether all DataVolumes of the instance are ready.
    pub const DATA_VOLUMES_READY: &str = "DataVolumesReady";
    /// A decentralized live migration of the instance failed.
    pub const DECENTRALIZED_LIVE_MIGRATION_FAILURE: &str = "DecentralizedLiveMigrationFailure";
    /// A change to the running instance needs a live migration to take effect.
    pub const MIGRATION_REQUIRED: &str = "MigrationRequired";
    /// An eviction of the instance was requested.
    pub const EVICTION_REQUESTED: &str = "EvictionRequested";
    /// The instance runs with software emulation instead of hardware virtualization.
    pub const SOFTWARE_EMULATION: &str = "SoftwareEmulation";
}

/// Reasons the instance's conditions carry (`status.conditions[].reason`).
pub mod vmi_condition_reasons {
    /// Not live-migratable because of its disks.
    pub const DISKS_NOT_MIGRATABLE: &str = "DisksNotLiveMigratable";
    /// Not live-migratable because of its network interfaces.
    pub const INTERFACE_NOT_MIGRATABLE: &str = "InterfaceNotLiveMigratable";
    /// Not live-migratable because it uses hotplugged volumes.
    pub const HOTPLUG_NOT_MIGRATABLE: &str = "HotplugNotLiveMigratable";
    /// Not live-migratable because of its CPU mode (upstream's spelling kept).
    pub const CPU_MODE_NOT_MIGRATABLE: &str = "CPUModeLiveMigratable";
    /// Not live-migratable because it uses virtiofs.
    pub const VIRTIOFS_NOT_MIGRATABLE: &str = "VirtIOFSNotLiveMigratable";
    /// Not live-migratable because it uses host devices.
    pub const HOST_DEVICE_NOT_MIGRATABLE: &str = "HostDeviceNotLiveMigratable";
    /// Not live-migratable because it uses AMD SEV.
    pub const SEV_NOT_MIGRATABLE: &str = "SEVNotLiveMigratable";
    /// Not live-migratable because it uses IBM Secure Execution.
    pub const SECURE_EXECUTION_NOT_MIGRATABLE: &str = "SecureExecutionNotLiveMigratable";
    /// Not live-migratable because it uses Intel TDX.
    pub const TDX_NOT_MIGRATABLE: &str = "TDXNotLiveMigratable";
    /// Not live-migratable because Hyper-V reenlightenment needs a TSC frequency that is not
    /// known.
    pub const NO_TSC_FREQUENCY_NOT_MIGRATABLE: &str = "NoTSCFrequencyNotLiveMigratable";
    /// Not live-migratable because it uses Hyper-V passthrough.
    pub const HYPERV_PASSTHROUGH_NOT_MIGRATABLE: &str = "HypervPassthroughNotLiveMigratable";
    /// Not live-migratable because it uses SCSI persistent reservations.
    pub const PERSISTENT_RESERVATION_NOT_MIGRATABLE: &str =
        "PersistentReservationNotLiveMigratable";
    /// Not migratable between clusters; the message says why.
    pub const DECENTRALIZED_NOT_MIGRATABLE: &str = "DecentralizedNotLiveMigratable";
    /// Not migratable; the message says why.
    pub const NOT_MIGRATABLE: &str = "NotMigratable";
    /// Some DataVolumes of the instance are not ready.
    pub const NOT_ALL_DVS_READY: &str = "NotAllDVsReady";
    /// All DataVolumes of the instance are bound and ready.
    pub const ALL_DVS_READY: &str = "AllDVsReady";
    /// A volume update was cancelled.
    pub const VOLUMES_CHANGE_CANCELLATION: &str = "VolumesChangeCancellation";
    /// A change to the running VM needs an automatic migration.
    pub const AUTO_MIGRATION_DUE_TO_LIVE_UPDATE: &str = "AutoMigrationDueToLiveUpdate";
    /// An automatic migration is waiting to start.
    pub const AUTO_MIGRATION_PENDING: &str = "AutoMigrationPending";
    /// An eviction of the instance was requested.
    pub const EVICTION_REQUESTED: &str = "EvictionRequested";
    /// Not ready: the launcher pod is terminating.
    pub const POD_TERMINATING: &str = "PodTerminating";
    /// Not ready: the launcher pod does not exist.
    pub const POD_NOT_EXISTS: &str = "PodNotExists";
    /// Not ready: the launcher pod reports no Ready condition.
    pub const POD_CONDITION_MISSING: &str = "PodConditionMissing";
    /// Not ready: the guest is not running.
    pub const GUEST_NOT_RUNNING: &str = "GuestNotRunning";
    /// The instance has containerPath volumes but their feature gate is off.
    pub const CONTAINER_PATH_VOLUMES_DISABLED: &str = "ContainerPathVolumesDisabled";
    /// The virtiofs containers expected for containerPath volumes are missing from the pod.
    pub const MISSING_VIRTIOFS_CONTAINERS: &str = "MissingVirtiofsContainers";
}

/// The phases of a volume of a running instance (`status.volumeStatus[].phase`).
pub mod volume_phases {
    /// The volume cannot be attached to the node yet.
    pub const PENDING: &str = "Pending";
    /// The volume is bound and can be attached to the node.
    pub const BOUND: &str = "Bound";
    /// A hotplugged volume is attached to the node.
    pub const ATTACHED_TO_NODE: &str = "AttachedToNode";
    /// A hotplugged volume is mounted into the launcher pod.
    pub const MOUNTED_TO_POD: &str = "MountedToPod";
    /// The volume is ready for the guest.
    pub const READY: &str = "Ready";
    /// A hotplugged volume is being detached and its attachment pod removed.
    pub const DETACHING: &str = "Detaching";
    /// A hotplugged volume was unmounted from the launcher pod.
    pub const UNMOUNTED_FROM_POD: &str = "UnMountedFromPod";
    /// A memory dump into the volume is in progress.
    pub const MEMORY_DUMP_IN_PROGRESS: &str = "MemoryDumpInProgress";
    /// A memory dump into the volume completed.
    pub const MEMORY_DUMP_COMPLETED: &str = "MemoryDumpCompleted";
    /// A memory dump into the volume failed.
    pub const MEMORY_DUMP_FAILED: &str = "MemoryDumpFailed";
}

/// Where the data of an interface status comes from (`status.interfaces[].infoSource`, a
/// comma-separated list of these).
pub mod interface_info_sources {
    /// The libvirt domain.
    pub const DOMAIN: &str = "domain";
    /// The guest agent.
    pub const GUEST_AGENT: &str = "guest-agent";
    /// Multus' network status annotation on the pod.
    pub const MULTUS_STATUS: &str = "multus-status";
}

/// Link states reported in `status.interfaces[].linkState`.
pub mod link_states {
    /// The link is up.
    pub const UP: &str = "up";
    /// The link is down.
    pub const DOWN: &str = "down";
}

/// Values of `status.fsFreezeStatus`.
pub mod fs_freeze_statuses {
    /// A freeze of the guest filesystems was requested (unset otherwise).
    pub const FROZEN: &str = "frozen";
}

/// Quality-of-service classes of the launcher pod (`status.qosClass`).
pub mod qos_classes {
    /// Requests equal limits for every resource.
    pub const GUARANTEED: &str = "Guaranteed";
    /// Some requests are set, but not all equal to limits.
    pub const BURSTABLE: &str = "Burstable";
    /// No requests or limits at all.
    pub const BEST_EFFORT: &str = "BestEffort";
}

/// States of changed block tracking (`status.changedBlockTracking.state`).
pub mod changed_block_tracking_states {
    /// The VM must restart before tracking takes effect.
    pub const PENDING_RESTART: &str = "PendingRestart";
    /// Tracking is being set up after a restart.
    pub const INITIALIZING: &str = "Initializing";
    /// The VM's supported volumes are tracked through a qcow2 overlay.
    pub const ENABLED: &str = "Enabled";
    /// The VM no longer matches the tracking selector.
    pub const DISABLED: &str = "Disabled";
    /// The VM matches the tracking selector but the IncrementalBackup feature gate is off.
    pub const FEATURE_GATE_DISABLED: &str = "IncrementalBackupFeatureGateDisabled";
}

/// The observed state of a virtual machine instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceStatus {
    /// The VSOCK context ID allocated to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "VSOCKCID")]
    pub vsock_cid: Option<i64>,
    /// The launcher pods of the instance (pod UID to node name); two during a migration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub active_pods: BTreeMap<String, String>,
    /// The state of changed block tracking and of the latest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_block_tracking: Option<ChangedBlockTrackingStatus>,
    /// The instance's conditions (see `vmi_condition_types`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<VirtualMachineInstanceCondition>,
    /// The CPU topology the guest has now (it differs from the spec while vCPUs are
    /// hotplugged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "currentCPUTopology")]
    pub current_cpu_topology: Option<CPUTopology>,
    /// The node the instance is being evacuated from; set by KubeVirt when an eviction is
    /// intercepted, never by users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evacuation_node_name: Option<String>,
    /// "frozen" while a freeze of the guest filesystems is requested; unset otherwise (it does
    /// not reflect the guest's actual state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_freeze_status: Option<String>,
    /// The guest operating system, as the guest agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "guestOSInfo")]
    pub guest_os_info: Option<VirtualMachineInstanceGuestOSInfo>,
    /// The guest's network interfaces and their addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<VirtualMachineInstanceNetworkInterface>,
    /// Checksums of the kernel and initrd of a kernel-boot container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_boot_status: Option<KernelBootStatus>,
    /// The virt-launcher image the instance currently runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launcher_container_image_version: Option<String>,
    /// The machine type the guest actually got (aliases like `q35` resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
    /// The guest's memory: at boot, now, requested, and the pod's overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStatus>,
    /// The source and destination PVCs of volumes being migrated to other storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrated_volumes: Vec<StorageMigratedVolumeInfo>,
    /// How the instance migrates: LiveMigration (shared storage) or BlockMigration (disks are
    /// copied); see `migration_methods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_method: Option<String>,
    /// The state of the current or latest live migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_state: Option<VirtualMachineInstanceMigrationState>,
    /// How migration traffic is carried (Unix); see `migration_transports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_transport: Option<String>,
    /// The node the instance runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The lifecycle phase (see `vmi_phases`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the instance entered each phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_transition_timestamps: Vec<VirtualMachineInstancePhaseTransitionTimestamp>,
    /// The quality-of-service class of the launcher pod (see `qos_classes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    /// A short CamelCase reason for the current state, e.g. NodeUnresponsive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The user ID the launcher runs the guest as (107 for non-root, 0 for root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_user: Option<i64>,
    /// The SELinux context the launcher pod actually got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux_context: Option<String>,
    /// Node properties the instance depends on for scheduling, e.g. its TSC frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_hints: Option<TopologyHints>,
    /// The VM controller revision the instance was created from (used by online snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_revision_name: Option<String>,
    /// The state of each volume of the instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_status: Vec<VolumeStatus>,
}

impl VirtualMachineInstanceStatus {
    /// The condition of the given type (see `vmi_condition_types`), if present.
    pub fn condition(&self, type_: &str) -> Option<&VirtualMachineInstanceCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is present with status "True".
    pub fn condition_is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }

    /// The phase, or "" when none is set yet.
    pub fn phase(&self) -> &str {
        self.phase.as_deref().unwrap_or("")
    }

    /// Whether the instance is in a phase it never leaves (Succeeded or Failed).
    pub fn is_final(&self) -> bool {
        vmi_phases::is_final(self.phase())
    }

    /// The status of the volume with the given name, if present.
    pub fn volume_status(&self, name: &str) -> Option<&VolumeStatus> {
        self.volume_status.iter().find(|v| v.name == name)
    }
}

/// One condition of an instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceCondition {
    /// When the condition was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// When the condition last changed status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// A human-readable explanation of the condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A short CamelCase reason for the condition (see `vmi_condition_reasons`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// The condition's type (see `vmi_condition_types`).
    #[serde(rename = "type")]
    pub type_: String,
}

/// When an instance entered a phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstancePhaseTransitionTimestamp {
    /// The phase entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the phase was entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_transition_timestamp: Option<Time>,
}

/// A network interface of the guest as observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceNetworkInterface {
    /// Where this information comes from: domain, guest-agent, multus-status (comma-separated;
    /// see `interface_info_sources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_source: Option<String>,
    /// The interface's name inside the guest (e.g. `eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// The interface's primary IP address (the first of `ipAddresses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// All IP addresses of the interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// The current link state: up or down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<String>,
    /// The interface's MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The name of the interface (and of its network) in the instance's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The name of the matching interface of the launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_interface_name: Option<String>,
    /// How many queues the interface got with multiqueue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_count: Option<i32>,
}

/// The guest operating system, as the guest agent reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceGuestOSInfo {
    /// The OS identifier, e.g. `fedora`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The kernel release, e.g. `6.8.5-301.fc40.x86_64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// The kernel version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    /// The guest's machine architecture, e.g. `x86_64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The OS name, e.g. `Fedora Linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The OS name with its version, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// The OS version, e.g. `40 (Server Edition)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The OS version identifier, e.g. `40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// The state of one volume of an instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// Details of a container disk volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_disk_volume: Option<ContainerDiskInfo>,
    /// The attachment of a hotplugged volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotplug_volume: Option<HotplugVolumeStatus>,
    /// The progress of a memory dump into this volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_dump_volume: Option<DomainMemoryDumpInfo>,
    /// A human-readable description of the volume's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The volume's name.
    pub name: String,
    /// The PVC behind the volume, as the node needs to know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_info: Option<PersistentVolumeClaimInfo>,
    /// The volume's phase (see `volume_phases`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// A short reason for the volume's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The volume's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// The device name the volume got in the guest, e.g. `vda`.
    pub target: String,
}

/// What KubeVirt knows about a PVC behind a volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimInfo {
    /// The PVC's access modes (ReadWriteOnce, ReadWriteMany, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// The PVC's actual capacity, from its status.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    /// The PVC's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// The share of a filesystem volume kept free for filesystem overhead, a decimal in [0, 1)
    /// written as a string, e.g. "0.055".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_overhead: Option<String>,
    /// Whether the PVC's storage is preallocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preallocated: Option<bool>,
    /// The resources the PVC requests, from its spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    /// Filesystem or Block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
}

/// The source and destination PVCs of a volume being migrated to other storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageMigratedVolumeInfo {
    /// The PVC the volume is copied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "destinationPVCInfo")]
    pub destination_pvc_info: Option<PersistentVolumeClaimInfo>,
    /// The PVC the volume is copied from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "sourcePVCInfo")]
    pub source_pvc_info: Option<PersistentVolumeClaimInfo>,
    /// The name of the volume being migrated.
    pub volume_name: String,
}

/// The attachment of a hotplugged volume to the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HotplugVolumeStatus {
    /// The name of the pod that attaches the volume to the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_pod_name: Option<String>,
    /// The UID of the pod that attaches the volume to the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "attachPodUID")]
    pub attach_pod_uid: Option<String>,
}

/// The progress of a memory dump.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainMemoryDumpInfo {
    /// The PVC the memory is dumped to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// When the dump finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<Time>,
    /// When the dump started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// The name of the dump file in the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_file_name: Option<String>,
}

/// Details of a container disk volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDiskInfo {
    /// Deprecated: a checksum of the disk image (or kernel artifacts) in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<i64>,
}

/// Checksums of the artifacts of a kernel-boot container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelBootStatus {
    /// The initrd image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_info: Option<InitrdInfo>,
    /// The kernel image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_info: Option<KernelInfo>,
}

/// Details of the kernel image of a kernel-boot container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelInfo {
    /// Deprecated: a checksum of the kernel image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<i64>,
}

/// Details of the initrd of a kernel-boot container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitrdInfo {
    /// Deprecated: a checksum of the initrd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<i64>,
}

/// The guest's memory as observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStatus {
    /// The memory the guest booted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_at_boot: Option<Quantity>,
    /// The memory the guest has now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_current: Option<Quantity>,
    /// The memory requested for the guest (through hotplug).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_requested: Option<Quantity>,
    /// The memory the virtualization stack adds to the launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overhead: Option<Quantity>,
}

/// A CPU topology: sockets, cores per socket and threads per core.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CPUTopology {
    /// Cores per socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<i32>,
    /// Sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<i32>,
    /// Threads per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<i32>,
}

/// Node properties an instance depends on for scheduling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyHints {
    /// The TSC frequency (Hz) of the node the guest started on; migration targets must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsc_frequency: Option<i64>,
}

/// The state of changed block tracking of an instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangedBlockTrackingStatus {
    /// The latest backup of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_status: Option<VirtualMachineInstanceBackupStatus>,
    /// The tracking state (see `changed_block_tracking_states`).
    pub state: String,
}

/// The state of a backup of an instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceBackupStatus {
    /// Details, e.g. why the backup failed or that unfreezing the guest failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_msg: Option<String>,
    /// The backup's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// The checkpoint the backup created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_name: Option<String>,
    /// Whether the backup completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    /// When the backup ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<Time>,
    /// Whether the backup failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<bool>,
    /// Whether freezing the guest filesystems succeeded, failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiesce_status: Option<String>,
    /// When the backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<Time>,
    /// The volumes the backup includes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VirtualMachineInstanceBackupVolumeInfo>,
}

/// A volume included in a backup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceBackupVolumeInfo {
    /// The volume's name in the instance's spec.
    pub volume_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_finds_conditions() {
        let json = serde_json::json!({
            "phase": "Running",
            "nodeName": "node01",
            "conditions": [
                {"type": "Ready", "status": "True", "lastProbeTime": null},
                {"type": "LiveMigratable", "status": "False", "reason": "DisksNotLiveMigratable"}
            ],
            "interfaces": [{"name": "default", "ipAddress": "10.244.0.7", "ipAddresses": ["10.244.0.7"]}],
            "migrationState": {
                "sourceNode": "node01",
                "targetState": {"node": "node02", "migrationUID": "u1", "cpuSet": [2, 3], "directMigrationNodePorts": {"49152": 0}},
                "migrationConfiguration": {"allowPostCopy": true, "experimental": {"compression": "zstd"}}
            },
            "VSOCKCID": 3,
            "runtimeUser": 107
        });
        let status: VirtualMachineInstanceStatus = serde_json::from_value(json.clone()).unwrap();
        let mut expected = json;
        // An explicit null is read as absent and not written back.
        expected["conditions"][0]
            .as_object_mut()
            .unwrap()
            .remove("lastProbeTime");
        assert_eq!(serde_json::to_value(&status).unwrap(), expected);
        assert!(status.condition_is_true(vmi_condition_types::READY));
        assert!(!status.condition_is_true(vmi_condition_types::LIVE_MIGRATABLE));
        assert!(status.condition(vmi_condition_types::PAUSED).is_none());
        assert!(!status.is_final());
        let target = status
            .migration_state
            .as_ref()
            .unwrap()
            .target_state
            .as_ref()
            .unwrap();
        assert_eq!(target.common.node.as_deref(), Some("node02"));
        assert_eq!(target.cpu_set, [2, 3]);
    }
}
