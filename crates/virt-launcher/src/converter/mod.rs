//! The converter: a defaulted VirtualMachineInstance becomes a libvirt domain XML document.
//!
//! Pure: no I/O. Everything that depends on the host (where each volume's image ended up, the
//! tap device and MAC of each interface, whether KVM is usable, which firmware files exist, the
//! console socket paths) comes in through [`ConverterContext`], which the launcher fills in after
//! preparing disks and the network. So the same VMI and context always give the same document,
//! which is what the golden tests under `tests/golden/` pin down.
//!
//! Errors name the offending field the way the API server would
//! (`spec.domain.devices.disks[0]: ...`).

mod cpu;
mod devices;
mod disks;
pub mod xml;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kubevirt_api::v1::{RebootPolicy, VirtualMachineInstance};

pub use xml::Element;

/// The accelerator QEMU runs the guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware virtualization (`<domain type='kvm'>`).
    Kvm,
    /// TCG, QEMU's software emulation (`<domain type='qemu'>`): KVM-only features are left
    /// out and the CPU model is `qemu64`.
    Tcg,
}

/// The on-disk format of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

/// Where a volume's data sits on the host, as prepared by the launcher's disk module.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskSource {
    pub path: PathBuf,
    /// A block device (`<disk type='block'>`) rather than a file.
    pub block: bool,
    pub format: ImageFormat,
    /// Whether the file system (or device) supports O_DIRECT, which cache mode `none` needs.
    pub direct_io: bool,
    /// The image must not be written (an ISO, a read-only PVC): the disk is exposed read-only
    /// whatever the disk says, where its bus allows (see `generated`).
    pub read_only: bool,
    /// The launcher made the image for this start (a cloud-init or config ISO), so whatever a
    /// guest writes is discarded with the pod. On a bus that cannot mark a disk read-only (sata,
    /// upstream's default bus on amd64) such an image is attached writable, as upstream attaches
    /// it; a read-only image that is not generated is refused there instead.
    pub generated: bool,
    /// Logical and physical block sizes of the backing device, for `blockSize.matchVolume`.
    pub block_size: Option<(u32, u32)>,
}

/// The host side of a guest interface, as the network setup made it.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceTarget {
    /// The tap device in the pod's network namespace (e.g. `tap0`).
    pub tap: String,
    /// The guest's MAC address (from the spec, or generated).
    pub mac: String,
    /// The MTU the guest should use (the pod interface's).
    pub mtu: Option<u32>,
    /// Queues the tap was created with (multiqueue), when more than one.
    pub queues: Option<u32>,
}

/// UEFI firmware files found on the host (Debian's `ovmf` package).
#[derive(Clone, Debug, PartialEq)]
pub struct EfiFirmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
    /// The Secure Boot build of the code and its variable store with Microsoft's keys enrolled.
    pub secure_code: Option<PathBuf>,
    pub secure_vars_template: Option<PathBuf>,
}

/// The kernel and initrd of a kernelBoot container, as extracted on the host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelBootFiles {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
}

/// Everything host-specific the converter needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ConverterContext {
    pub accelerator: Accelerator,
    /// Prepared volume sources, by volume name.
    pub disks: BTreeMap<String, DiskSource>,
    /// Prepared interfaces, by interface name.
    pub interfaces: BTreeMap<String, InterfaceTarget>,
    /// The serial console's unix socket and its log file.
    pub serial_socket: PathBuf,
    pub serial_log: PathBuf,
    /// The VNC server's unix socket.
    pub vnc_socket: PathBuf,
    /// UEFI firmware, when installed.
    pub efi: Option<EfiFirmware>,
    /// Where the VM's own copy of the EFI variable store lives.
    pub nvram: PathBuf,
    /// Kernel and initrd for `firmware.kernelBoot`.
    pub kernel_boot: Option<KernelBootFiles>,
    /// Size of QEMU's TCG translation cache; QEMU's default (about 1 GiB of address space, much
    /// of it touched) costs tens of MiB of RSS per VM.
    pub tcg_tb_cache_mib: Option<u32>,
}

/// Why a VMI could not be converted. The message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The spec asks for something that cannot be expressed (a bad value, a missing reference).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The spec asks for something this launcher does not provide.
    #[error("{field}: {what} is not supported by this launcher")]
    Unsupported { field: String, what: String },
    /// The launcher did not prepare what the field needs (a volume image, an interface).
    #[error("{field}: {message}")]
    NotPrepared { field: String, message: String },
}

impl ConvertError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConvertError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, what: impl Into<String>) -> Self {
        ConvertError::Unsupported {
            field: field.into(),
            what: what.into(),
        }
    }

    pub(crate) fn not_prepared(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConvertError::NotPrepared {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field the error is about.
    pub fn field(&self) -> &str {
        match self {
            ConvertError::Invalid { field, .. }
            | ConvertError::Unsupported { field, .. }
            | ConvertError::NotPrepared { field, .. } => field,
        }
    }
}

/// The libvirt domain name of a VMI: `<namespace>_<name>`, as upstream.
pub fn domain_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

pub use devices::binding as interface_binding;

/// The guest's current vCPU count (1 when the topology is invalid; conversion reports that).
pub fn vcpus(spec: &kubevirt_api::v1::VirtualMachineInstanceSpec) -> u32 {
    cpu::Topology::of(spec).map(|t| t.vcpus()).unwrap_or(1)
}

/// `(disk name, guest target)` of each disk, e.g. `("rootdisk", "vda")`.
pub fn disk_targets(spec: &kubevirt_api::v1::VirtualMachineInstanceSpec) -> Vec<(String, String)> {
    disks::target_names(spec)
}

/// The VMI's namespace and name, which every VMI the launcher runs must have.
pub fn vmi_identity(vmi: &VirtualMachineInstance) -> Result<(&str, &str), ConvertError> {
    let name = vmi
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConvertError::invalid("metadata.name", "required"))?;
    let namespace = vmi
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    Ok((namespace, name))
}

/// Converts a (defaulted) VMI into libvirt domain XML.
pub fn domain_xml(
    vmi: &VirtualMachineInstance,
    ctx: &ConverterContext,
) -> Result<String, ConvertError> {
    Ok(domain(vmi, ctx)?.render())
}

/// The domain document as an element tree.
pub fn domain(
    vmi: &VirtualMachineInstance,
    ctx: &ConverterContext,
) -> Result<Element, ConvertError> {
    let spec = &vmi.spec;
    let domain_spec = &spec.domain;
    let (namespace, name) = vmi_identity(vmi)?;
    unsupported_fields(vmi)?;

    let domain_type = match ctx.accelerator {
        Accelerator::Kvm => "kvm",
        Accelerator::Tcg => "qemu",
    };
    let mut doc = Element::new("domain").attr("type", domain_type);
    doc.push(Element::with_text("name", domain_name(namespace, name)));
    let uuid = domain_spec
        .firmware
        .as_ref()
        .and_then(|f| f.uuid.as_deref())
        .filter(|u| !u.is_empty());
    if let Some(uuid) = uuid {
        doc.push(Element::with_text("uuid", uuid));
    }
    doc.push(metadata(vmi));

    let topology = cpu::Topology::of(spec)?;
    doc.push(cpu::memory(spec)?);
    if let Some(backing) = cpu::memory_backing(spec) {
        doc.push(backing);
    }
    doc.push(topology.vcpu_element());
    let disk_plan = disks::plan(spec, ctx, &topology)?;
    if disk_plan.iothreads > 0 {
        doc.push(Element::with_text(
            "iothreads",
            disk_plan.iothreads.to_string(),
        ));
    }
    doc.push(sysinfo(vmi, uuid));
    doc.push(cpu::os(spec, ctx)?);
    doc.push(cpu::features(spec, ctx)?);
    doc.push(cpu::cpu(spec, ctx, &topology)?);
    doc.push(cpu::clock(spec, ctx));
    doc.push(Element::with_text("on_poweroff", "destroy"));
    let on_reboot = match domain_spec.reboot_policy {
        Some(RebootPolicy::Terminate) => "destroy",
        _ => "restart",
    };
    doc.push(Element::with_text("on_reboot", on_reboot));
    doc.push(Element::with_text("on_crash", "destroy"));
    doc.push(devices::devices(vmi, ctx, &topology, disk_plan)?);
    Ok(doc)
}

/// What the launcher needs to find again in a running domain: who it belongs to and its
/// grace period (upstream keeps the same under a `kubevirt` namespace).
fn metadata(vmi: &VirtualMachineInstance) -> Element {
    let grace = vmi
        .spec
        .termination_grace_period_seconds
        .unwrap_or(kubevirt_api::v1::DEFAULT_GRACE_PERIOD_SECONDS);
    let mut kv = Element::new("kubevirt").attr("xmlns", "http://kubevirt.io");
    if let Some(uid) = vmi.metadata.uid.as_deref() {
        kv.push(Element::with_text("uid", uid));
    }
    kv.push(Element::new("graceperiod").child(Element::with_text(
        "deletionGracePeriodSeconds",
        grace.to_string(),
    )));
    Element::new("metadata").child(kv)
}

/// SMBIOS system (and chassis) information, as upstream presents it.
fn sysinfo(vmi: &VirtualMachineInstance, uuid: Option<&str>) -> Element {
    let entry =
        |name: &'static str, value: &str| Element::with_text("entry", value).attr("name", name);
    let firmware = vmi.spec.domain.firmware.as_ref();
    let mut system = Element::new("system")
        .child(entry("manufacturer", "KubeVirt"))
        .child(entry("product", "None"));
    if let Some(serial) = firmware.and_then(|f| f.serial.as_deref()) {
        system.push(entry("serial", serial));
    }
    if let Some(uuid) = uuid {
        system.push(entry("uuid", uuid));
    }
    system.push(entry("family", "KubeVirt"));
    let mut info = Element::new("sysinfo").attr("type", "smbios").child(system);
    if let Some(ch) = vmi.spec.domain.chassis.as_ref() {
        let mut chassis = Element::new("chassis");
        for (key, value) in [
            ("manufacturer", &ch.manufacturer),
            ("version", &ch.version),
            ("serial", &ch.serial),
            ("asset", &ch.asset),
            ("sku", &ch.sku),
        ] {
            if let Some(v) = value {
                chassis.push(entry(key, v));
            }
        }
        if !chassis.is_empty() {
            info.push(chassis);
        }
    }
    info
}

/// Rejects what the launcher cannot run, naming the field, instead of silently dropping it.
fn unsupported_fields(vmi: &VirtualMachineInstance) -> Result<(), ConvertError> {
    let d = &vmi.spec.domain;
    let devices = &d.devices;
    if d.launch_security.is_some() {
        return Err(ConvertError::unsupported(
            "spec.domain.launchSecurity",
            "confidential computing (SEV, SNP, TDX)",
        ));
    }
    if !devices.gpus.is_empty() {
        return Err(ConvertError::unsupported(
            "spec.domain.devices.gpus",
            "GPU passthrough",
        ));
    }
    if !devices.host_devices.is_empty() {
        return Err(ConvertError::unsupported(
            "spec.domain.devices.hostDevices",
            "host device passthrough",
        ));
    }
    if !devices.filesystems.is_empty() {
        return Err(ConvertError::unsupported(
            "spec.domain.devices.filesystems",
            "virtiofs (no virtiofsd in the pod)",
        ));
    }
    if devices
        .tpm
        .as_ref()
        .is_some_and(|t| t.enabled != Some(false))
    {
        return Err(ConvertError::unsupported(
            "spec.domain.devices.tpm",
            "an emulated TPM (no swtpm in the pod)",
        ));
    }
    if devices.downward_metrics.is_some() {
        return Err(ConvertError::unsupported(
            "spec.domain.devices.downwardMetrics",
            "downward metrics",
        ));
    }
    if devices.client_passthrough.is_some() {
        return Err(ConvertError::unsupported(
            "spec.domain.devices.clientPassthrough",
            "USB redirection",
        ));
    }
    if let Some(cpu) = d.cpu.as_ref() {
        if cpu.dedicated_cpu_placement == Some(true) {
            return Err(ConvertError::unsupported(
                "spec.domain.cpu.dedicatedCpuPlacement",
                "dedicated CPU placement (the node runs no CPU manager)",
            ));
        }
        if cpu.realtime.is_some() {
            return Err(ConvertError::unsupported(
                "spec.domain.cpu.realtime",
                "realtime vCPUs",
            ));
        }
        if cpu
            .numa
            .as_ref()
            .is_some_and(|n| n.guest_mapping_passthrough.is_some())
        {
            return Err(ConvertError::unsupported(
                "spec.domain.cpu.numa.guestMappingPassthrough",
                "NUMA passthrough",
            ));
        }
    }
    if d.firmware
        .as_ref()
        .and_then(|f| f.acpi.as_ref())
        .is_some_and(|a| a.slic_name_ref.is_some() || a.msdm_name_ref.is_some())
    {
        return Err(ConvertError::unsupported(
            "spec.domain.firmware.acpi",
            "ACPI SLIC/MSDM tables",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
