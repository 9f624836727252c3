//! Devices of a domain (`spec.domain.devices`): disks, interfaces, inputs, watchdog, GPUs, host
//! devices, filesystems, sound, TPM, video and the autoattach switches.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FeatureState;
use crate::schema::integer;

/// Known values of a disk target's `bus`.
pub mod disk_bus {
    /// Paravirtual virtio-blk (the default for plain disks).
    pub const VIRTIO: &str = "virtio";
    /// An emulated SATA controller (the default for CD-ROMs on x86_64).
    pub const SATA: &str = "sata";
    /// A virtio-scsi controller (the default for LUNs).
    pub const SCSI: &str = "scsi";
    /// An emulated USB storage device.
    pub const USB: &str = "usb";
}

/// Known values of a disk's `cache`.
pub mod driver_cache {
    /// No host page cache; writes go straight to the storage (the default where supported).
    pub const NONE: &str = "none";
    /// Reads are cached on the host; writes are written through to the storage.
    pub const WRITE_THROUGH: &str = "writethrough";
    /// Reads and writes are cached on the host.
    pub const WRITE_BACK: &str = "writeback";
}

/// Known values of a disk's `io` mode.
pub mod driver_io {
    /// IO done by a pool of user-space threads.
    pub const THREADS: &str = "threads";
    /// Linux native asynchronous IO (best for preallocated block storage).
    pub const NATIVE: &str = "native";
}

/// Known values of a disk's `errorPolicy`.
pub mod disk_error_policy {
    /// Pause the guest on an IO error (the default).
    pub const STOP: &str = "stop";
    /// Ignore IO errors.
    pub const IGNORE: &str = "ignore";
    /// Report IO errors to the guest.
    pub const REPORT: &str = "report";
    /// Pause the guest only when the storage runs out of space, report other errors.
    pub const ENOSPACE: &str = "enospace";
}

/// Known values of a CD-ROM's `tray`.
pub mod tray_state {
    /// The tray is open: no medium is inserted.
    pub const OPEN: &str = "open";
    /// The tray is closed (the default).
    pub const CLOSED: &str = "closed";
}

/// Known values of an interface's `model`.
pub mod interface_model {
    /// Paravirtual virtio-net (the default).
    pub const VIRTIO: &str = "virtio";
    /// Intel 82540EM (e1000).
    pub const E1000: &str = "e1000";
    /// Intel 82574L (e1000e).
    pub const E1000E: &str = "e1000e";
    /// Intel 82576 (igb).
    pub const IGB: &str = "igb";
    /// NE2000 on PCI.
    pub const NE2K_PCI: &str = "ne2k_pci";
    /// AMD PCnet.
    pub const PCNET: &str = "pcnet";
    /// Realtek RTL8139.
    pub const RTL8139: &str = "rtl8139";
}

/// Known values of an interface's `state`.
pub mod interface_state {
    /// The interface is to be removed (hot-unplugged).
    pub const ABSENT: &str = "absent";
    /// The link is up (the default).
    pub const UP: &str = "up";
    /// The link is down, as if the cable were pulled.
    pub const DOWN: &str = "down";
}

/// Known values of a port's `protocol`.
pub mod port_protocol {
    /// TCP (the default).
    pub const TCP: &str = "TCP";
    /// UDP.
    pub const UDP: &str = "UDP";
}

/// Known values of an input device's `type`.
pub mod input_type {
    /// A tablet: absolute pointer positions, so the cursor follows the VNC client's exactly.
    pub const TABLET: &str = "tablet";
    /// A keyboard.
    pub const KEYBOARD: &str = "keyboard";
}

/// Known values of an input device's `bus`.
pub mod input_bus {
    /// USB (the default).
    pub const USB: &str = "usb";
    /// Paravirtual virtio-input.
    pub const VIRTIO: &str = "virtio";
}

/// Known values of a watchdog's `action`.
pub mod watchdog_action {
    /// Power the guest off at once.
    pub const POWEROFF: &str = "poweroff";
    /// Reset the guest (the default).
    pub const RESET: &str = "reset";
    /// Ask the guest to shut down gracefully.
    pub const SHUTDOWN: &str = "shutdown";
}

/// Known values of a panic device's `model`.
pub mod panic_device_model {
    /// The Hyper-V crash MSRs.
    pub const HYPERV: &str = "hyperv";
    /// The ISA pvpanic device.
    pub const ISA: &str = "isa";
    /// The PCI pvpanic device.
    pub const PVPANIC: &str = "pvpanic";
}

/// Known values of a sound device's `model`.
pub mod sound_model {
    /// Intel HD Audio on the ICH9 chipset (the default).
    pub const ICH9: &str = "ich9";
    /// Intel AC'97.
    pub const AC97: &str = "ac97";
}

/// Known values of a video device's `type` (which ones are allowed depends on the architecture).
pub mod video_type {
    /// A standard VGA adapter.
    pub const VGA: &str = "vga";
    /// The Cirrus Logic adapter.
    pub const CIRRUS: &str = "cirrus";
    /// A paravirtual virtio-gpu.
    pub const VIRTIO: &str = "virtio";
    /// A plain RAM framebuffer.
    pub const RAMFB: &str = "ramfb";
    /// The Bochs display adapter.
    pub const BOCHS: &str = "bochs";
}

/// The devices attached to a virtual machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    /// Attach a graphics device with a VNC framebuffer (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoattach_graphics_device: Option<bool>,
    /// Attach a virtio tablet when no input device is listed (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoattach_input_device: Option<bool>,
    /// Attach a memory balloon device (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoattach_mem_balloon: Option<bool>,
    /// Attach an interface on the pod network when none is listed (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoattach_pod_interface: Option<bool>,
    /// Attach a serial console (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoattach_serial_console: Option<bool>,
    /// Attach a virtio-vsock device for host-guest communication (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "autoattachVSOCK")]
    pub autoattach_vsock: Option<bool>,
    /// Give each virtio disk as many queues as the guest has vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_multi_queue: Option<bool>,
    /// Let client devices (e.g. USB from a remote viewer) be redirected into the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_passthrough: Option<ClientPassthroughDevices>,
    /// Reserve no PCI ports for hotplugging devices (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_hotplug: Option<bool>,
    /// The disks, CD-ROMs and LUNs, each backed by the volume of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    /// Expose host and guest metrics to the guest through a virtio-serial port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downward_metrics: Option<DownwardMetrics>,
    /// Volumes shared into the guest as filesystems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub filesystems: Vec<Filesystem>,
    /// GPUs (physical or mediated) passed through to the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub gpus: Vec<GPU>,
    /// Other host devices (PCI, mediated, USB) passed through to the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub host_devices: Vec<HostDevice>,
    /// Input devices (tablets, keyboards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Input>,
    /// Network interfaces, each connected to the network of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Write the serial console output to the virt-launcher pod's log (cluster default when
    /// unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_serial_console: Option<bool>,
    /// Give each virtio interface as many queues as the guest has vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_multiqueue: Option<bool>,
    /// Devices through which a crashing guest notifies the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub panic_devices: Vec<PanicDevice>,
    /// A virtio random number generator fed from the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rng: Option<Rng>,
    /// A sound card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sound: Option<SoundDevice>,
    /// An emulated TPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TPMDevice>,
    /// Use virtio-transitional devices so older guests (e.g. RHEL 6) find them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_virtio_transitional: Option<bool>,
    /// The video adapter; chosen per architecture when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoDevice>,
    /// A watchdog that acts when the guest stops responding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<Watchdog>,
}

/// Marker: client device passthrough is wanted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientPassthroughDevices {}

/// Marker: expose metrics to the guest through a virtio-serial port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DownwardMetrics {}

/// Marker: attach a virtio random number generator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rng {}

/// A disk as the guest sees it, backed by the volume of the same name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    /// The kind of device the guest sees: disk (the default), LUN or CD-ROM.
    #[serde(flatten)]
    pub disk_device: DiskDevice,
    /// The logical and physical block sizes reported to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<BlockSize>,
    /// The position of this disk in the boot order (1 boots first; unique across disks and
    /// interfaces). Disks without one are not booted from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub boot_order: Option<u32>,
    /// The host cache mode: none, writethrough or writeback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// Track changed blocks of this disk for incremental backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_block_tracking: Option<bool>,
    /// Give this disk an IO thread of its own (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "dedicatedIOThread")]
    pub dedicated_io_thread: Option<bool>,
    /// What happens on an IO error: stop (the default), ignore, report or enospace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_policy: Option<String>,
    /// The IO mode: native or threads; chosen from the volume when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<String>,
    /// The name of the disk; it must match a volume's name.
    pub name: String,
    /// The serial number the guest sees on the disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Allow several instances to use the disk at the same time (disables caching).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shareable: Option<bool>,
    /// A tag passed to the guest in the device metadata, to find the disk from inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The kind of device a disk appears as; at most one may be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskDevice {
    /// The disk appears as a CD-ROM drive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdrom: Option<CDRomTarget>,
    /// The disk appears as a plain disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskTarget>,
    /// The disk appears as a SCSI LUN that passes commands through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<LunTarget>,
}

/// A disk appearing as a plain disk.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskTarget {
    /// The bus the disk sits on: virtio (the default), sata, scsi or usb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    /// The guest PCI address, e.g. `0000:81:01.10` (virtio only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// Expose the disk read-only (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
}

/// A disk appearing as a SCSI LUN.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LunTarget {
    /// The bus the LUN sits on (scsi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    /// Expose the LUN read-only (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    /// Let the guest use SCSI persistent reservations on the LUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<bool>,
}

/// A disk appearing as a CD-ROM drive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CDRomTarget {
    /// The bus the drive sits on: sata (the default on x86_64), scsi or usb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    /// Expose the medium read-only (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    /// Whether the tray is open or closed (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tray: Option<String>,
}

/// The block sizes a disk reports; at most one of the two may be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockSize {
    /// Fixed sizes given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomBlockSize>,
    /// Take the sizes from the backing volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_volume: Option<FeatureState>,
}

/// Fixed block sizes of a disk, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomBlockSize {
    /// The granularity of discard requests; the logical size when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub discard_granularity: Option<u32>,
    /// The logical block size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub logical: Option<u32>,
    /// The physical block size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub physical: Option<u32>,
}

/// A network interface of the guest, connected to the network of the same name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// The built-in way the interface is connected to its network (at most one).
    #[serde(flatten)]
    pub interface_binding_method: InterfaceBindingMethod,
    /// The ACPI index the guest names the interface by (e.g. `eno1`); unique per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub acpi_index: Option<i64>,
    /// Connect the interface through a network binding plugin registered in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<PluginBinding>,
    /// The position of this interface in the boot order (PXE boot); unique across disks and
    /// interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub boot_order: Option<u32>,
    /// Extra options of the DHCP server KubeVirt runs for the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_options: Option<DHCPOptions>,
    /// The MAC address, e.g. `de:ad:00:00:be:af`; assigned automatically when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// The emulated NIC model: virtio (the default), e1000, e1000e, igb, rtl8139, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The name of the interface; it must match a network's name.
    pub name: String,
    /// The guest PCI address, e.g. `0000:81:01.10`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// Ranges of ports to forward to the guest (passt binding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub port_ranges: Vec<PortRange>,
    /// The ports to forward to the guest (masquerade binding); all of them when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// The wanted link state: up (the default), down, or absent to unplug the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// A tag passed to the guest in the device metadata, to find the interface from inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The built-in binding methods of an interface; at most one may be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceBindingMethod {
    /// Bridge the guest onto the pod's network interface (the guest gets the pod's IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<InterfaceBridge>,
    /// Deprecated macvtap binding; use the binding plugin instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macvtap: Option<DeprecatedInterfaceMacvtap>,
    /// NAT the guest behind the pod's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<InterfaceMasquerade>,
    /// Deprecated passt binding; use `passtBinding` or the binding plugin instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passt: Option<DeprecatedInterfacePasst>,
    /// Connect the guest through passt, a user-space network stack sharing the pod's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passt_binding: Option<InterfacePasstBinding>,
    /// Deprecated and no longer supported user-mode (slirp) networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slirp: Option<DeprecatedInterfaceSlirp>,
    /// Pass an SR-IOV virtual function through to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov: Option<InterfaceSRIOV>,
}

/// Marker: bridge binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterfaceBridge {}

/// Marker: the removed slirp binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeprecatedInterfaceSlirp {}

/// Marker: masquerade (NAT) binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterfaceMasquerade {}

/// Marker: SR-IOV binding.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterfaceSRIOV {}

/// Marker: the deprecated built-in macvtap binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeprecatedInterfaceMacvtap {}

/// Marker: the deprecated built-in passt binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeprecatedInterfacePasst {}

/// Marker: the passt binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterfacePasstBinding {}

/// A reference to a network binding plugin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginBinding {
    /// The plugin's name as registered in the KubeVirt configuration.
    pub name: String,
}

/// A port forwarded to the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// A name for the port (an IANA service name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port number, 1 to 65535.
    pub port: i32,
    /// The protocol: TCP (the default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A range of ports forwarded to the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// The last port of the range (inclusive).
    pub end: i32,
    /// The protocol: TCP or UDP.
    pub protocol: String,
    /// The first port of the range.
    pub start: i32,
}

/// Options of the DHCP server KubeVirt runs for an interface.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DHCPOptions {
    /// The boot file name offered to PXE clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_file_name: Option<String>,
    /// NTP servers offered to the guest, as IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntp_servers: Vec<String>,
    /// Site-specific DHCP options (codes 224 to 254) offered to the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private_options: Vec<DHCPPrivateOptions>,
    /// The TFTP server name offered to PXE clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp_server_name: Option<String>,
}

/// One site-specific DHCP option.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DHCPPrivateOptions {
    /// The option code, 224 to 254.
    #[schemars(schema_with = "integer")]
    pub option: i64,
    /// The option's value.
    pub value: String,
}

/// A watchdog device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Watchdog {
    /// The watchdog model and what it does when it fires.
    #[serde(flatten)]
    pub watchdog_device: WatchdogDevice,
    /// The name of the watchdog.
    pub name: String,
}

/// The watchdog models; exactly one should be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchdogDevice {
    /// The diag288 watchdog (s390x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diag288: Option<Diag288Watchdog>,
    /// The Intel 6300ESB PCI watchdog (x86_64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i6300esb: Option<I6300ESBWatchdog>,
}

/// The Intel 6300ESB watchdog.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct I6300ESBWatchdog {
    /// What happens when it fires: poweroff, reset (the default) or shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The diag288 watchdog.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diag288Watchdog {
    /// What happens when it fires: poweroff, reset (the default) or shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// An input device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// The bus the device sits on: usb (the default) or virtio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    /// The name of the device.
    pub name: String,
    /// The kind of device: tablet or keyboard.
    #[serde(rename = "type")]
    pub type_: String,
}

/// A reference to a request in a Kubernetes ResourceClaim (dynamic resource allocation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRequest {
    /// The name of the claim in the instance's `resourceClaims`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// The name of the request within the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_name: Option<String>,
}

/// A GPU passed through to the guest.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GPU {
    /// Where the GPU comes from when it is allocated through a ResourceClaim.
    #[serde(flatten)]
    pub claim_request: ClaimRequest,
    /// The device plugin resource name of the GPU (e.g. `nvidia.com/TU104GL_Tesla_T4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The name of the GPU within the instance.
    pub name: String,
    /// A tag passed to the guest in the device metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Options of a mediated (virtual) GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "virtualGPUOptions")]
    pub virtual_gpu_options: Option<VGPUOptions>,
}

/// Options of a virtual GPU.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VGPUOptions {
    /// Use the virtual GPU as the guest's display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<VGPUDisplayOptions>,
}

/// Display options of a virtual GPU.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VGPUDisplayOptions {
    /// Whether the vGPU drives the display (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Add a RAM framebuffer so boot output shows before the guest driver loads (default on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "ramFB")]
    pub ram_fb: Option<FeatureState>,
}

/// A host device (PCI, mediated or USB) passed through to the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostDevice {
    /// Where the device comes from when it is allocated through a ResourceClaim.
    #[serde(flatten)]
    pub claim_request: ClaimRequest,
    /// The resource name of the device, as permitted in the KubeVirt configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The name of the device within the instance.
    pub name: String,
    /// A tag passed to the guest in the device metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A volume shared into the guest as a filesystem.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filesystem {
    /// The name of the filesystem; it must match a volume's name and is the guest's mount tag.
    pub name: String,
    /// Share the volume through virtiofs.
    pub virtiofs: FilesystemVirtiofs,
}

/// Marker: share through virtiofs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FilesystemVirtiofs {}

/// A device through which a crashing guest notifies the host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PanicDevice {
    /// The device model: hyperv, isa or pvpanic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A sound card.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoundDevice {
    /// The model: ich9 (the default) or ac97.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The name of the sound card.
    pub name: String,
}

/// An emulated TPM.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TPMDevice {
    /// Whether the guest gets a TPM (default true once `tpm` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Keep the TPM state across restarts of the VM (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
}

/// The video adapter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoDevice {
    /// The adapter type, e.g. virtio, vga, bochs or ramfb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The inlined upstream structs (disk targets, binding methods, watchdog models, claim
    /// requests) sit directly in their parent's JSON object and round-trip unchanged.
    #[test]
    fn inlined_members_round_trip() {
        let input = json!({
            "disks": [{"name": "cd", "cdrom": {"bus": "sata", "tray": "closed"}, "bootOrder": 1}],
            "interfaces": [{"name": "default", "masquerade": {}, "ports": [{"port": 80}]}],
            "watchdog": {"name": "w", "i6300esb": {"action": "poweroff"}},
            "gpus": [{"name": "g", "claimName": "c", "requestName": "r"}],
            "hostDevices": [{"name": "h", "deviceName": "vendor.com/dev"}],
        });
        let devices: Devices = serde_json::from_value(input.clone()).expect("decodes");
        assert_eq!(
            devices.disks[0]
                .disk_device
                .cdrom
                .as_ref()
                .and_then(|c| c.bus.as_deref()),
            Some(disk_bus::SATA)
        );
        assert!(
            devices.interfaces[0]
                .interface_binding_method
                .masquerade
                .is_some()
        );
        assert_eq!(
            devices.gpus[0].claim_request.claim_name.as_deref(),
            Some("c")
        );
        assert_eq!(serde_json::to_value(&devices).expect("encodes"), input);
    }
}
