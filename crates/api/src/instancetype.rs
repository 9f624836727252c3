//! `instancetype.kubevirt.io/v1beta1`: instancetypes (resource sizes) and preferences (preferred
//! device settings), namespaced and cluster-wide.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::integer;
use crate::v1::{
    BlockSize, CPUFeature, ClockOffset, DiskIOThreads, EFI, FeatureAPIC, FeatureHyperv, FeatureKVM,
    FeatureState, GPU, HostDevice, Hugepages, InterfaceMasquerade, LaunchSecurity, NUMA, Realtime,
    Rng, TPMDevice, Timer, VGPUOptions,
};

/// The API group of instancetypes and preferences.
pub const GROUP: &str = "instancetype.kubevirt.io";

/// The kind names a VM's `instancetype.kind` / `preference.kind` may carry.
pub mod kinds {
    /// A namespaced instancetype.
    pub const INSTANCETYPE: &str = "VirtualMachineInstancetype";
    /// A cluster-wide instancetype (the default kind of a VM's instancetype reference).
    pub const CLUSTER_INSTANCETYPE: &str = "VirtualMachineClusterInstancetype";
    /// A namespaced preference.
    pub const PREFERENCE: &str = "VirtualMachinePreference";
    /// A cluster-wide preference (the default kind of a VM's preference reference).
    pub const CLUSTER_PREFERENCE: &str = "VirtualMachineClusterPreference";
}

/// The resources an instancetype gives a virtual machine.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineInstancetype",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    shortname = "vminstancetype",
    shortname = "vminstancetypes",
    shortname = "vmf",
    shortname = "vmfs",
    category = "all",
    category = "kubevirt",
    doc = "An instancetype: a named size (CPU, memory, ...) that virtual machines refer to instead of spelling out resources."
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstancetypeSpec {
    /// Annotations copied onto the virtual machine instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The guest CPUs and how they are placed.
    pub cpu: CPUInstancetype,
    /// The supplemental IO thread pool, when the policy is supplementalPool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_threads: Option<DiskIOThreads>,
    /// The IO thread policy of the instance (shared, auto, supplementalPool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_threads_policy: Option<String>,
    /// Memory encryption or confidential-computing technology for the guest (SEV, SNP, TDX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_security: Option<LaunchSecurity>,
    /// GPUs passed through to the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GPU>,
    /// Host devices passed through to the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_devices: Vec<HostDevice>,
    /// The guest memory.
    pub memory: MemoryInstancetype,
    /// Labels a node must have to run the instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The scheduler that places the instance's pod; the default scheduler when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
}

/// The CPUs an instancetype gives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CPUInstancetype {
    /// Pin each vCPU to a dedicated host CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "dedicatedCPUPlacement")]
    pub dedicated_cpu_placement: Option<bool>,
    /// The number of vCPUs the guest gets (laid out by the preference's topology).
    pub guest: i32,
    /// Give the emulator thread a host CPU of its own (with dedicated placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate_emulator_thread: Option<bool>,
    /// The most sockets the guest can grow to by CPU hotplug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sockets: Option<i32>,
    /// The CPU model the guest sees (e.g. host-passthrough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Guest NUMA topology (needs dedicated placement and hugepages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa: Option<NUMA>,
    /// Real-time tuning of the vCPUs (needs dedicated placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime: Option<Realtime>,
}

/// The memory an instancetype gives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryInstancetype {
    /// The memory the guest sees.
    pub guest: Quantity,
    /// Back the guest memory with hugepages of this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugepages: Option<Hugepages>,
    /// The most memory the guest can grow to by memory hotplug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_guest: Option<Quantity>,
    /// How much less memory, in percent of the guest memory, the pod requests than the guest
    /// sees (overcommit); 0 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub overcommit_percent: Option<i64>,
}

/// A preference: preferred device and feature settings a VM picks up unless it sets them itself.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachinePreference",
    namespaced,
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmpref",
    shortname = "vmprefs",
    shortname = "vmp",
    shortname = "vmps",
    category = "all",
    category = "kubevirt",
    doc = "A preference: preferred devices and features that virtual machines referring to it pick up."
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachinePreferenceSpec {
    /// Annotations copied onto the virtual machine instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Preferred guest clock settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockPreferences>,
    /// Preferred CPU topology and features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CPUPreferences>,
    /// Preferred device models, buses and attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DevicePreferences>,
    /// Preferred hypervisor features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<FeaturePreferences>,
    /// Preferred firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwarePreferences>,
    /// Preferred machine type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachinePreferences>,
    /// Deprecated: the ratio used when spreading vCPUs over sockets and cores (2 when unset); use
    /// cpu.spreadOptions.ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_spread_socket_to_core_ratio: Option<i32>,
    /// The architecture the VM runs as when it names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_architecture: Option<String>,
    /// Memory encryption or confidential-computing technology, when the VM sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_launch_security: Option<LaunchSecurity>,
    /// The DNS subdomain of the instance when it names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_subdomain: Option<String>,
    /// The shutdown grace period, in seconds, when the VM sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_termination_grace_period_seconds: Option<i64>,
    /// The least CPU, memory or the architecture a VM must have to use this preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<PreferenceRequirements>,
    /// Preferred storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<VolumePreferences>,
}

/// Known values of [`CPUPreferences::preferred_cpu_topology`]: how the instancetype's vCPUs
/// are laid out as sockets, cores and threads.
pub mod preferred_cpu_topologies {
    /// All vCPUs as sockets (the default).
    pub const SOCKETS: &str = "sockets";
    /// All vCPUs as cores of one socket.
    pub const CORES: &str = "cores";
    /// All vCPUs as threads of one core.
    pub const THREADS: &str = "threads";
    /// vCPUs spread over sockets, cores and threads following spreadOptions.
    pub const SPREAD: &str = "spread";
    /// Whatever layout the VM spells out itself (the instancetype leaves it alone).
    pub const ANY: &str = "any";
    /// Deprecated spelling of [`SOCKETS`].
    pub const PREFER_SOCKETS: &str = "preferSockets";
    /// Deprecated spelling of [`CORES`].
    pub const PREFER_CORES: &str = "preferCores";
    /// Deprecated spelling of [`THREADS`].
    pub const PREFER_THREADS: &str = "preferThreads";
    /// Deprecated spelling of [`SPREAD`].
    pub const PREFER_SPREAD: &str = "preferSpread";
    /// Deprecated spelling of [`ANY`].
    pub const PREFER_ANY: &str = "preferAny";
}

/// Known values of [`SpreadOptions::across`].
pub mod spread_across {
    /// Spread over sockets, cores and threads.
    pub const SOCKETS_CORES_THREADS: &str = "SocketsCoresThreads";
    /// Spread over sockets and cores (the default).
    pub const SOCKETS_CORES: &str = "SocketsCores";
    /// Spread over cores and threads of one socket.
    pub const CORES_THREADS: &str = "CoresThreads";
}

/// Preferred CPU layout and features.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CPUPreferences {
    /// CPU features to require or forbid, when the VM does not mention them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "preferredCPUFeatures")]
    pub preferred_cpu_features: Vec<CPUFeature>,
    /// How vCPUs are laid out (see [`preferred_cpu_topologies`]); sockets when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "preferredCPUTopology")]
    pub preferred_cpu_topology: Option<String>,
    /// How vCPUs are spread when the topology is spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_options: Option<SpreadOptions>,
}

/// How vCPUs are spread over sockets, cores and threads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpreadOptions {
    /// The levels to spread over (see [`spread_across`]); SocketsCores when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub across: Option<String>,
    /// The ratio between the first two levels spread over; 2 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<i32>,
}

/// Preferred device settings, used where the VM leaves them unset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevicePreferences {
    /// Whether a graphics device is attached automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_autoattach_graphics_device: Option<bool>,
    /// Whether an input device is attached automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_autoattach_input_device: Option<bool>,
    /// Whether a memory balloon is attached automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_autoattach_mem_balloon: Option<bool>,
    /// Whether the pod network interface is attached automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_autoattach_pod_interface: Option<bool>,
    /// Whether a serial console is attached automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_autoattach_serial_console: Option<bool>,
    /// Whether disks get one queue per vCPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_block_multi_queue: Option<bool>,
    /// The bus of CD-ROM disks (sata, scsi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_cdrom_bus: Option<String>,
    /// Whether hotplugging devices is turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_disable_hotplug: Option<bool>,
    /// The block sizes disks report to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_disk_block_size: Option<BlockSize>,
    /// The bus of disks (virtio, sata, scsi, usb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_disk_bus: Option<String>,
    /// The cache mode of disks (none, writethrough, writeback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_disk_cache: Option<String>,
    /// Whether each disk gets an IO thread of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_disk_dedicated_io_thread: Option<bool>,
    /// The IO mode of disks (native, threads, default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "preferredDiskIO")]
    pub preferred_disk_io: Option<String>,
    /// The bus of input devices (usb, virtio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_input_bus: Option<String>,
    /// The type of input devices (tablet, keyboard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_input_type: Option<String>,
    /// When present, the pod network interface uses masquerade binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_interface_masquerade: Option<InterfaceMasquerade>,
    /// The model of network interfaces (virtio, e1000e, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_interface_model: Option<String>,
    /// The bus of LUN disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_lun_bus: Option<String>,
    /// Whether network interfaces get one queue per vCPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_network_interface_multi_queue: Option<bool>,
    /// The model of the panic device (hyperv, isa, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_panic_device_model: Option<String>,
    /// When present, a virtio random number generator is attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_rng: Option<Rng>,
    /// The model of the sound device (ich9, ac97).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_sound_model: Option<String>,
    /// The TPM device the guest gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "preferredTPM")]
    pub preferred_tpm: Option<TPMDevice>,
    /// Whether virtio devices use the transitional model (for old guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_use_virtio_transitional: Option<bool>,
    /// The type of the video device (vga, bochs, virtio, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_video_type: Option<String>,
    /// Display options of virtual GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "preferredVirtualGPUOptions")]
    pub preferred_virtual_gpu_options: Option<VGPUOptions>,
}

/// Preferred firmware.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirmwarePreferences {
    /// Boot with EFI, with these settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_efi: Option<EFI>,
    /// Boot with BIOS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_use_bios: Option<bool>,
    /// Send BIOS output to the serial console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_use_bios_serial: Option<bool>,
    /// Deprecated: boot with EFI; use preferredEfi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_use_efi: Option<bool>,
    /// Deprecated: boot with EFI secure boot; use preferredEfi.secureBoot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_use_secure_boot: Option<bool>,
}

/// Preferred machine type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachinePreferences {
    /// The machine type (e.g. q35) when the VM names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_machine_type: Option<String>,
}

/// Preferred storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumePreferences {
    /// The storage class of volumes the VM creates (data volume templates) without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_storage_class_name: Option<String>,
}

/// The least resources, or the architecture, a VM must have to use a preference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreferenceRequirements {
    /// The architecture the VM must run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// The fewest vCPUs the VM must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CPUPreferenceRequirement>,
    /// The least memory the VM must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryPreferenceRequirement>,
}

/// The fewest vCPUs a preference needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CPUPreferenceRequirement {
    /// The number of vCPUs.
    pub guest: i32,
}

/// The least memory a preference needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemoryPreferenceRequirement {
    /// The amount of guest memory.
    pub guest: Quantity,
}

/// The spec of a cluster-wide instancetype: the same fields as a namespaced one.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineClusterInstancetype",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmclusterinstancetype",
    shortname = "vmclusterinstancetypes",
    shortname = "vmcf",
    shortname = "vmcfs",
    category = "kubevirt",
    doc = "A cluster-wide instancetype, usable by virtual machines in every namespace."
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct VirtualMachineClusterInstancetypeSpec(pub VirtualMachineInstancetypeSpec);

impl std::ops::Deref for VirtualMachineClusterInstancetypeSpec {
    type Target = VirtualMachineInstancetypeSpec;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The spec of a cluster-wide preference: the same fields as a namespaced one.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "instancetype.kubevirt.io",
    version = "v1beta1",
    kind = "VirtualMachineClusterPreference",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmcp",
    shortname = "vmcps",
    category = "kubevirt",
    doc = "A cluster-wide preference, usable by virtual machines in every namespace."
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct VirtualMachineClusterPreferenceSpec(pub VirtualMachinePreferenceSpec);

impl std::ops::Deref for VirtualMachineClusterPreferenceSpec {
    type Target = VirtualMachinePreferenceSpec;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Preferred guest clock settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockPreferences {
    /// Where the guest clock starts (UTC with an offset, or a time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_clock_offset: Option<ClockOffset>,
    /// The guest timers and their tick policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_timer: Option<Timer>,
}

/// Preferred hypervisor features, used where the VM leaves them unset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeaturePreferences {
    /// ACPI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_acpi: Option<FeatureState>,
    /// The APIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_apic: Option<FeatureAPIC>,
    /// Hyper-V enlightenments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_hyperv: Option<FeatureHyperv>,
    /// KVM-specific features (hiding KVM from the guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_kvm: Option<FeatureKVM>,
    /// Paravirtual spinlocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_pvspinlock: Option<FeatureState>,
    /// System management mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_smm: Option<FeatureState>,
}
