//! The virtual hardware of an instance (`spec.domain`): CPU, memory, machine, firmware, clock,
//! resources, chassis, IO threads and launch security. Hypervisor features live in
//! [`super::features`], devices in [`super::devices`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Devices, Features};
use crate::schema::{integer, quantity_map};

/// Known values of `spec.domain.ioThreadsPolicy`.
pub mod io_threads_policy {
    /// All disks that do not ask for a dedicated IO thread share one thread.
    pub const SHARED: &str = "shared";
    /// A small pool of IO threads, sized from the vCPU count, is spread over the disks.
    pub const AUTO: &str = "auto";
    /// A pool of `ioThreads.supplementalPoolThreadCount` threads serves all disks.
    pub const SUPPLEMENTAL_POOL: &str = "supplementalPool";
}

/// Known values of `spec.domain.cpu.model` besides named CPU models (e.g. `Skylake-Server`).
pub mod cpu_model {
    /// Expose the host CPU to the guest as it is (not migratable between different hosts).
    pub const HOST_PASSTHROUGH: &str = "host-passthrough";
    /// A named model close to the host CPU, with its extra features (the default).
    pub const HOST_MODEL: &str = "host-model";
    /// The model used when none is given.
    pub const DEFAULT: &str = HOST_MODEL;
}

/// Known values of a CPU feature's `policy`.
pub mod cpu_feature_policy {
    /// The feature is enabled even if the host does not support it.
    pub const FORCE: &str = "force";
    /// The feature is enabled; the instance fails to start where the host lacks it (the default).
    pub const REQUIRE: &str = "require";
    /// The feature is enabled where the host supports it.
    pub const OPTIONAL: &str = "optional";
    /// The feature is hidden from the guest.
    pub const DISABLE: &str = "disable";
    /// The instance must not run on a host that has the feature.
    pub const FORBID: &str = "forbid";
}

/// Known values of `spec.domain.machine.type` (versioned names like `pc-q35-rhel9.4.0` also
/// exist).
pub mod machine_type {
    /// The Q35 chipset, the default on x86_64.
    pub const Q35: &str = "q35";
    /// The generic ARM machine, the default on aarch64.
    pub const VIRT: &str = "virt";
    /// The s390x machine, the default on s390x.
    pub const S390_CCW_VIRTIO: &str = "s390-ccw-virtio";
}

/// Known values of `spec.domain.memory.hugepages.pageSize`.
pub mod hugepage_size {
    /// Two-mebibyte pages.
    pub const SIZE_2MI: &str = "2Mi";
    /// One-gibibyte pages.
    pub const SIZE_1GI: &str = "1Gi";
}

/// Known values of the timers' `tickPolicy`.
pub mod tick_policy {
    /// Missed ticks are delivered late, at the normal rate.
    pub const DELAY: &str = "delay";
    /// Missed ticks are delivered faster until the guest has caught up.
    pub const CATCHUP: &str = "catchup";
    /// Missed ticks are merged into one (HPET only).
    pub const MERGE: &str = "merge";
    /// Missed ticks are dropped (HPET and PIT only).
    pub const DISCARD: &str = "discard";
}

/// Known values of the RTC timer's `track`.
pub mod rtc_track {
    /// The RTC follows the guest's own time.
    pub const GUEST: &str = "guest";
    /// The RTC follows the host's wall clock.
    pub const WALL: &str = "wall";
}

/// The virtual hardware of a virtual machine instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainSpec {
    /// Chassis details the guest sees in its SMBIOS tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis: Option<Chassis>,
    /// The guest's clock: its offset from UTC and its timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Clock>,
    /// The guest CPUs: topology, model, features and placement on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CPU>,
    /// The devices attached to the machine: disks, interfaces, inputs and more.
    pub devices: Devices,
    /// Hypervisor features the guest may use (ACPI, APIC, Hyper-V enlightenments, SMM, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    /// Firmware and boot settings: BIOS or EFI, direct kernel boot, UUID, serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    /// Options of the IO threads disks run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_threads: Option<DiskIOThreads>,
    /// How disks share IO threads: shared, auto or supplementalPool (see `io_threads_policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_threads_policy: Option<String>,
    /// Confidential-computing settings (AMD SEV, SEV-SNP, Intel TDX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_security: Option<LaunchSecurity>,
    /// The machine type the guest is emulated as; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
    /// The guest memory: its size, hugepages and the overhead reserved for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// What happens when the guest reboots itself: reboot in place (the default) or terminate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_policy: Option<RebootPolicy>,
    /// Compute resources requested for and limiting the instance's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// What happens when the guest reboots itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RebootPolicy {
    /// The guest restarts inside the same instance (the default).
    #[default]
    Reboot,
    /// The instance stops; a VM with a suitable run strategy then starts a new one.
    Terminate,
}

/// Chassis details exposed to the guest through SMBIOS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chassis {
    /// The chassis asset tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// The chassis manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// The chassis serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The chassis SKU number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// The chassis version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Compute resources of an instance, as requests and limits on its pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// The most of each resource (cpu, memory, ...) the instance may use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "quantity_map")]
    pub limits: BTreeMap<String, Quantity>,
    /// Do not add the virtualization overhead to the pod's memory limit when it is computed
    /// from the guest memory (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overcommit_guest_overhead: Option<bool>,
    /// The amount of each resource (cpu, memory, ...) the instance is scheduled with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "quantity_map")]
    pub requests: BTreeMap<String, Quantity>,
}

/// The guest CPUs.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CPU {
    /// Cores per socket (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<i32>,
    /// Pin every vCPU to a host CPU of its own (requires a CPU manager on the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_cpu_placement: Option<bool>,
    /// CPU features to add to or remove from the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<CPUFeature>,
    /// Give the emulator thread a dedicated host CPU too (with dedicated CPU placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate_emulator_thread: Option<bool>,
    /// The most sockets the guest may grow to by CPU hotplug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sockets: Option<i32>,
    /// The CPU model: host-model (the default), host-passthrough or a named model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How the guest's NUMA topology is derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa: Option<NUMA>,
    /// Tune the vCPUs for real-time workloads (with dedicated CPU placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime: Option<Realtime>,
    /// Sockets (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<i32>,
    /// Threads per core (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<i32>,
}

/// One CPU feature switched on or off for the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CPUFeature {
    /// The feature's name as libvirt knows it, e.g. `vmx` or `pcid`.
    pub name: String,
    /// How the feature is treated: force, require (the default), optional, disable or forbid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// Real-time tuning of the vCPUs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Realtime {
    /// Which vCPUs get real-time scheduling, in libvirt's range syntax (e.g. `0-3,^1`); all of
    /// them when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
}

/// The guest's NUMA topology.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NUMA {
    /// Mirror the NUMA layout of the host CPUs and memory the instance was given (needs
    /// dedicated CPUs and hugepages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_mapping_passthrough: Option<NUMAGuestMappingPassthrough>,
}

/// Marker: derive the guest NUMA nodes from the host placement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NUMAGuestMappingPassthrough {}

/// The guest memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// The memory the guest sees; by default the memory request of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Quantity>,
    /// Back the guest memory with hugepages of this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugepages: Option<Hugepages>,
    /// The most memory the guest may grow to by memory hotplug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_guest: Option<Quantity>,
    /// Extra memory the pod reserves beyond what KubeVirt computes for itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_overhead: Option<ReservedOverhead>,
}

/// Hugepages backing the guest memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hugepages {
    /// The hugepage size, e.g. `2Mi` or `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<String>,
}

/// Memory reserved on top of the computed overhead of an instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservedOverhead {
    /// An amount added to the computed memory overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_overhead: Option<Quantity>,
    /// Whether the guest memory must be locked into host RAM (e.g. for VFIO devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_lock: Option<MemLockRequirement>,
}

/// Whether the guest memory must be locked in host RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MemLockRequirement {
    /// Memory locking is not needed (the default).
    #[default]
    NotRequired,
    /// The guest memory is locked, and the pod's memlock limit raised to match.
    Required,
}

/// The emulated machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// The machine type, e.g. `q35`; the cluster's default for the architecture when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

/// Firmware and boot settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Firmware {
    /// ACPI tables handed to the guest from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acpi: Option<ACPI>,
    /// The boot firmware: BIOS (the default) or EFI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootloader: Option<Bootloader>,
    /// Boot a kernel and initrd taken from a container image instead of a disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_boot: Option<KernelBoot>,
    /// The system serial number the guest sees in SMBIOS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The system UUID the guest sees; derived from the VM's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// ACPI tables given to the guest, each read from a volume holding a Secret.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ACPI {
    /// The volume whose Secret holds the MSDM table (a Windows product key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msdm_name_ref: Option<String>,
    /// The volume whose Secret holds the SLIC table (OEM activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slic_name_ref: Option<String>,
}

/// The boot firmware; at most one of the two may be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bootloader {
    /// Boot with legacy BIOS (SeaBIOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bios: Option<BIOS>,
    /// Boot with UEFI (OVMF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi: Option<EFI>,
}

/// Legacy BIOS options.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BIOS {
    /// Show the BIOS output on the serial console (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_serial: Option<bool>,
}

/// UEFI options.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EFI {
    /// Keep the EFI variable store across restarts of the VM (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    /// Enforce Secure Boot (default true; needs the SMM feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
}

/// Direct kernel boot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelBoot {
    /// The container image holding the kernel and initrd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<KernelBootContainer>,
    /// The kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_args: Option<String>,
}

/// A container image carrying a kernel and an initrd to boot from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelBootContainer {
    /// The image reference.
    pub image: String,
    /// When the image is pulled: Always, Never or IfNotPresent (the default depends on the tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The name of a Secret with credentials for the image's registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// The path of the initrd inside the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
    /// The path of the kernel inside the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_path: Option<String>,
}

/// The guest's clock. Upstream keeps unknown fields here; we decode only the known ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct Clock {
    /// Where the guest clock starts: UTC with an offset, or a time zone.
    #[serde(flatten)]
    pub clock_offset: ClockOffset,
    /// The timers the guest gets and how they catch up after missed ticks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<Timer>,
}

/// The starting point of the guest clock; at most one of the two may be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockOffset {
    /// The guest clock follows this time zone, e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The guest clock follows UTC, optionally shifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc: Option<ClockOffsetUTC>,
}

/// A guest clock running on UTC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClockOffsetUTC {
    /// Seconds added to UTC at boot (may be negative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub offset_seconds: Option<i64>,
}

/// The timers of the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    /// The High Precision Event Timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpet: Option<HPETTimer>,
    /// The Hyper-V reference time counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperv: Option<HypervTimer>,
    /// The KVM paravirtual clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm: Option<KVMTimer>,
    /// The Programmable Interval Timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pit: Option<PITTimer>,
    /// The Real Time Clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtc: Option<RTCTimer>,
}

/// The HPET timer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HPETTimer {
    /// Whether the guest has this timer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// What happens to missed ticks: delay, catchup, merge or discard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_policy: Option<String>,
}

/// The Hyper-V timer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HypervTimer {
    /// Whether the guest has this timer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// The KVM clock.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KVMTimer {
    /// Whether the guest has this timer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// The PIT timer.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PITTimer {
    /// Whether the guest has this timer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// What happens to missed ticks: delay, catchup or discard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_policy: Option<String>,
}

/// The RTC timer.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RTCTimer {
    /// Whether the guest has this timer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// What happens to missed ticks: delay or catchup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_policy: Option<String>,
    /// Which time the RTC follows: guest or wall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
}

/// Options of the IO threads that serve disks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskIOThreads {
    /// How many IO threads the supplementalPool policy creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplemental_pool_thread_count: Option<i32>,
}

/// Confidential-computing technology the guest runs under; at most one may be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaunchSecurity {
    /// AMD Secure Encrypted Virtualization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sev: Option<SEV>,
    /// AMD SEV with Secure Nested Paging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SEVSNP>,
    /// Intel Trust Domain Extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TDX>,
}

/// AMD SEV settings.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SEV {
    /// Pause the guest at start so its launch measurement can be attested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<SEVAttestation>,
    /// The guest owner's base64-encoded Diffie-Hellman certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh_cert: Option<String>,
    /// The SEV guest policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<SEVPolicy>,
    /// The base64-encoded launch session blob from the guest owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The SEV guest policy bits KubeVirt exposes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SEVPolicy {
    /// Also encrypt the CPU register state (SEV-ES); default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_state: Option<bool>,
}

/// Marker: SEV launch attestation is wanted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SEVAttestation {}

/// Marker: run the guest under AMD SEV-SNP.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SEVSNP {}

/// Marker: run the guest as an Intel TDX trust domain.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TDX {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A typical domain decodes and encodes back unchanged, including the inlined clock offset.
    #[test]
    fn domain_round_trips() {
        let input = json!({
            "clock": {"utc": {"offsetSeconds": -3600}, "timer": {"rtc": {"tickPolicy": "catchup"}}},
            "cpu": {"cores": 2, "model": "host-passthrough", "features": [{"name": "vmx"}]},
            "devices": {},
            "firmware": {"bootloader": {"efi": {"secureBoot": false}}},
            "memory": {"guest": "1Gi", "reservedOverhead": {"memLock": "Required"}},
            "rebootPolicy": "Terminate",
            "resources": {"requests": {"memory": "1Gi", "cpu": "500m"}},
        });
        let domain: DomainSpec = serde_json::from_value(input.clone()).expect("decodes");
        assert_eq!(domain.reboot_policy, Some(RebootPolicy::Terminate));
        let utc = domain
            .clock
            .as_ref()
            .and_then(|c| c.clock_offset.utc.as_ref());
        assert_eq!(utc.and_then(|u| u.offset_seconds), Some(-3600));
        assert_eq!(serde_json::to_value(&domain).expect("encodes"), input);
    }
}
