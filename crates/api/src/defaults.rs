//! Defaulting, as upstream's mutating webhooks do it: pure functions over the objects and the
//! cluster configuration. Anything not derivable from the inputs (a fresh UUID, the time) is
//! passed in, so the same inputs always give the same object and defaulting is idempotent.
//!
//! - [`vmi_spec`]: the spec defaults shared by the VMI mutator and the VM validator's dry run
//!   (architecture, machine type, CPU request, guest memory, topology, pull policy, eviction
//!   strategy, the default pod network and a disk for every volume).
//! - [`vmi`]: everything the VMI mutator does at creation on top of that (device and feature
//!   defaults, per-architecture buses, CPU model, hotplug headroom, status seeds, finalizer).
//! - [`vm`]: what the VM mutator does (architecture, machine type, firmware identity).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::config::{BINDING_BRIDGE, BINDING_MASQUERADE, BINDING_SLIRP, ClusterConfig};
use crate::quantity::Amount;
use crate::v1::{
    CPU, CPUTopology, DiskDevice, DiskTarget, FeatureState, Features, Firmware, Interface,
    InterfaceBindingMethod, InterfaceBridge, InterfaceMasquerade, Machine, Memory, MemoryStatus,
    Network, NetworkSource, PodNetwork, Probe, VirtualMachine, VirtualMachineInstance,
    VirtualMachineInstancePhaseTransitionTimestamp, VirtualMachineInstanceSpec,
    VirtualMachineInstanceStatus,
};

/// The finalizer virt-controller holds on every VMI until its pod is gone.
pub const VMI_FINALIZER: &str = "kubevirt.io/foregroundDeleteVirtualMachine";
/// The name of the interface and network added when a VMI names none.
pub const DEFAULT_NETWORK_NAME: &str = "default";
/// The unprivileged user QEMU runs as unless the Root feature gate is on.
pub const NON_ROOT_UID: i64 = 107;
/// Hotplug is capped at this many vCPUs.
const MAX_HOTPLUG_VCPUS: i64 = 512;

/// Defaulting that refuses the object (upstream answers these with a plain 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DefaultsError {
    #[error("bridge interface is not enabled in kubevirt-config")]
    BridgeNotPermitted,
    #[error("slirp interface is deprecated as of v1.3")]
    SlirpDeprecated,
    #[error("unknown default network interface binding {0:?} in kubevirt-config")]
    UnknownBinding(String),
}

/// Spec defaults shared by VMI creation and VM validation.
pub fn vmi_spec(
    spec: &mut VirtualMachineInstanceSpec,
    cfg: &ClusterConfig,
) -> Result<(), DefaultsError> {
    if spec.architecture.as_deref().unwrap_or("").is_empty() {
        spec.architecture = Some(cfg.default_architecture.clone());
    }
    let arch = spec.architecture.clone().unwrap_or_default();
    let machine = spec.domain.machine.get_or_insert_with(Machine::default);
    if machine.type_.as_deref().unwrap_or("").is_empty() {
        machine.type_ = Some(cfg.default_machine_type(&arch));
    }
    default_cpu_request(spec, cfg);
    default_guest_memory(spec);
    default_topology(spec);
    for volume in &mut spec.volumes {
        if let Some(cd) = volume.volume_source.container_disk.as_mut()
            && cd.image_pull_policy.as_deref().unwrap_or("").is_empty()
        {
            cd.image_pull_policy = Some(default_pull_policy(&cd.image).to_string());
        }
    }
    if spec.eviction_strategy.is_none() {
        spec.eviction_strategy = cfg.eviction_strategy.clone();
    }
    default_network(spec, cfg)?;
    default_volume_disks(spec);
    Ok(())
}

fn resources_get(spec: &VirtualMachineInstanceSpec, requests: bool, name: &str) -> Option<Amount> {
    let res = spec.domain.resources.as_ref()?;
    let map = if requests { &res.requests } else { &res.limits };
    map.get(name).and_then(|q| Amount::parse(&q.0).ok())
}

fn default_cpu_request(spec: &mut VirtualMachineInstanceSpec, cfg: &ClusterConfig) {
    let dedicated = spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.dedicated_cpu_placement)
        == Some(true);
    let res = spec.domain.resources.get_or_insert_with(Default::default);
    if !res.requests.contains_key("cpu")
        && let Some(limit) = res.limits.get("cpu").cloned()
    {
        res.requests.insert("cpu".into(), limit);
    }
    // Upstream treats a configured request of 100m as "leave the request alone".
    let configured = cfg
        .cpu_request
        .as_deref()
        .filter(|r| Amount::parse(r).ok() != Amount::parse("100m").ok());
    if let Some(req) = configured
        && !res.requests.contains_key("cpu")
        && !dedicated
    {
        res.requests.insert("cpu".into(), Quantity(req.to_string()));
    }
    if res == &Default::default() {
        spec.domain.resources = None;
    }
}

fn default_guest_memory(spec: &mut VirtualMachineInstanceSpec) {
    let existing = spec.domain.memory.as_ref().and_then(|m| m.guest.clone());
    if existing.is_some() {
        return;
    }
    let from_resources = |requests: bool| {
        let res = spec.domain.resources.as_ref()?;
        let map = if requests { &res.requests } else { &res.limits };
        map.get("memory")
            .filter(|q| Amount::parse(&q.0).is_ok_and(|a| !a.is_zero()))
            .cloned()
    };
    let page_size = spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.hugepages.as_ref())
        .and_then(|h| h.page_size.clone())
        .filter(|p| Amount::parse(p).is_ok())
        .map(Quantity);
    let guest = from_resources(true)
        .or_else(|| from_resources(false))
        .or(page_size);
    spec.domain.memory.get_or_insert_with(Memory::default).guest = guest;
}

fn default_topology(spec: &mut VirtualMachineInstanceSpec) {
    let unset = |v: Option<i32>| v.unwrap_or(0) == 0;
    if let Some(cpu) = spec.domain.cpu.as_ref()
        && !(unset(cpu.cores) && unset(cpu.sockets) && unset(cpu.threads))
    {
        return;
    }
    let vcpus = resources_get(spec, false, "cpu")
        .or_else(|| resources_get(spec, true, "cpu"))
        .map(|a| a.ceil_units().clamp(1, i128::from(i32::MAX)) as i32)
        .unwrap_or(1);
    let cpu = spec.domain.cpu.get_or_insert_with(CPU::default);
    cpu.sockets = Some(vcpus);
    cpu.cores = Some(1);
    cpu.threads = Some(1);
}

/// `Always` for a floating tag (`:latest` or none), `IfNotPresent` for a pinned one.
pub fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.ends_with(":latest") || !(last.contains(':') || image.contains('@')) {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn default_network(
    spec: &mut VirtualMachineInstanceSpec,
    cfg: &ClusterConfig,
) -> Result<(), DefaultsError> {
    if spec.domain.devices.autoattach_pod_interface == Some(false)
        || !spec.networks.is_empty()
        || !spec.domain.devices.interfaces.is_empty()
    {
        return Ok(());
    }
    let binding = match cfg.default_network_interface.as_str() {
        BINDING_BRIDGE if !cfg.permit_bridge_interface_on_pod_network => {
            return Err(DefaultsError::BridgeNotPermitted);
        }
        BINDING_BRIDGE => InterfaceBindingMethod {
            bridge: Some(InterfaceBridge {}),
            ..Default::default()
        },
        BINDING_MASQUERADE => InterfaceBindingMethod {
            masquerade: Some(InterfaceMasquerade {}),
            ..Default::default()
        },
        BINDING_SLIRP => return Err(DefaultsError::SlirpDeprecated),
        other => return Err(DefaultsError::UnknownBinding(other.to_string())),
    };
    spec.domain.devices.interfaces = vec![Interface {
        name: DEFAULT_NETWORK_NAME.into(),
        interface_binding_method: binding,
        ..Default::default()
    }];
    spec.networks = vec![Network {
        name: DEFAULT_NETWORK_NAME.into(),
        network_source: NetworkSource {
            pod: Some(PodNetwork::default()),
            ..Default::default()
        },
    }];
    Ok(())
}

fn default_volume_disks(spec: &mut VirtualMachineInstanceSpec) {
    let devices = &mut spec.domain.devices;
    for volume in &spec.volumes {
        let named = |n: &str| n == volume.name;
        if !devices.disks.iter().any(|d| named(&d.name))
            && !devices.filesystems.iter().any(|f| named(&f.name))
        {
            devices.disks.push(crate::v1::Disk {
                name: volume.name.clone(),
                ..Default::default()
            });
        }
    }
}

/// Everything the VMI mutator does at creation. `firmware_uuid` is used when the VMI has none
/// (upstream picks a random one; the caller does, so this stays deterministic); `now` stamps
/// the Pending phase.
pub fn vmi(
    vmi: &mut VirtualMachineInstance,
    cfg: &ClusterConfig,
    firmware_uuid: &str,
    now: &Time,
) -> Result<(), DefaultsError> {
    let spec = &mut vmi.spec;
    vmi_spec(spec, cfg)?;
    let arch = spec.architecture.clone().unwrap_or_default();
    device_and_feature_defaults(spec, &arch, firmware_uuid);
    if spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.model.as_deref())
        .unwrap_or("")
        .is_empty()
    {
        let model = match (&cfg.cpu_model, arch.as_str()) {
            (Some(m), _) => m.clone(),
            (None, "arm64") => "host-passthrough".into(),
            (None, _) => "host-model".into(),
        };
        spec.domain.cpu.get_or_insert_with(CPU::default).model = Some(model);
    }
    if cfg.live_update && arch != "arm64" {
        hotplug_headroom(spec, cfg);
    }

    let status = vmi
        .status
        .get_or_insert_with(VirtualMachineInstanceStatus::default);
    if let Some(guest) = vmi
        .spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.guest.clone())
        && status.memory.is_none()
    {
        status.memory = Some(MemoryStatus {
            guest_at_boot: Some(guest.clone()),
            guest_current: Some(guest.clone()),
            guest_requested: Some(guest),
            ..Default::default()
        });
    }
    if let (Some(cpu), None) = (
        vmi.spec.domain.cpu.as_ref(),
        status.current_cpu_topology.as_ref(),
    ) {
        status.current_cpu_topology = Some(CPUTopology {
            sockets: cpu.sockets,
            cores: cpu.cores,
            threads: cpu.threads,
        });
    }
    if !cfg.gate("Root") && status.runtime_user.is_none() {
        status.runtime_user = Some(NON_ROOT_UID);
    }
    if status.phase.as_deref().unwrap_or("").is_empty() {
        status.phase = Some(crate::v1::vmi_phases::PENDING.into());
        status
            .phase_transition_timestamps
            .push(VirtualMachineInstancePhaseTransitionTimestamp {
                phase: Some(crate::v1::vmi_phases::PENDING.into()),
                phase_transition_timestamp: Some(now.clone()),
            });
    }
    let finalizers = vmi.metadata.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == VMI_FINALIZER) {
        finalizers.push(VMI_FINALIZER.into());
    }
    Ok(())
}

fn enable(state: &mut Option<FeatureState>) {
    if let Some(s) = state.as_mut() {
        s.enabled.get_or_insert(true);
    }
}

fn device_and_feature_defaults(
    spec: &mut VirtualMachineInstanceSpec,
    arch: &str,
    firmware_uuid: &str,
) {
    let domain = &mut spec.domain;
    let firmware = domain.firmware.get_or_insert_with(Firmware::default);
    if firmware.uuid.as_deref().unwrap_or("").is_empty() {
        firmware.uuid = Some(firmware_uuid.to_string());
    }
    let features = domain.features.get_or_insert_with(Features::default);
    if arch == "s390x" {
        features
            .acpi
            .get_or_insert_with(FeatureState::default)
            .enabled
            .get_or_insert(false);
    }
    features
        .acpi
        .get_or_insert_with(FeatureState::default)
        .enabled
        .get_or_insert(true);
    if let Some(apic) = features.apic.as_mut() {
        apic.enabled.get_or_insert(true);
    }
    enable(&mut features.smm);
    enable(&mut features.pvspinlock);
    if let Some(h) = features.hyperv.as_mut() {
        for s in [
            &mut h.relaxed,
            &mut h.vapic,
            &mut h.vpindex,
            &mut h.runtime,
            &mut h.synic,
            &mut h.reset,
            &mut h.frequencies,
            &mut h.reenlightenment,
            &mut h.ipi,
            &mut h.evmcs,
        ] {
            enable(s);
        }
        if let Some(t) = h.tlbflush.as_mut() {
            t.enabled.get_or_insert(true);
        }
        if let Some(t) = h.synictimer.as_mut() {
            t.enabled.get_or_insert(true);
        }
        if let Some(v) = h.vendorid.as_mut() {
            v.enabled.get_or_insert(true);
        }
        if let Some(s) = h.spinlocks.as_mut()
            && s.enabled.get_or_insert(true) == &true
        {
            s.spinlocks.get_or_insert(4096);
        }
    }
    if let Some(clock) = domain.clock.as_mut()
        && let Some(t) = clock.timer.as_mut()
    {
        for present in [
            t.hpet.as_mut().map(|x| &mut x.present),
            t.kvm.as_mut().map(|x| &mut x.present),
            t.pit.as_mut().map(|x| &mut x.present),
            t.rtc.as_mut().map(|x| &mut x.present),
            t.hyperv.as_mut().map(|x| &mut x.present),
        ]
        .into_iter()
        .flatten()
        {
            present.get_or_insert(true);
        }
    }
    let bus = if arch == "amd64" || arch.is_empty() {
        "sata"
    } else {
        "virtio"
    };
    for disk in &mut domain.devices.disks {
        let d = &mut disk.disk_device;
        if d.disk.is_none() && d.cdrom.is_none() && d.lun.is_none() {
            d.disk = Some(DiskTarget::default());
        }
        default_bus(d, bus);
        if let Some(cd) = d.cdrom.as_mut() {
            cd.readonly.get_or_insert(true);
            cd.tray
                .get_or_insert_with(|| crate::v1::tray_state::CLOSED.into());
        }
        if let Some(m) = disk
            .block_size
            .as_mut()
            .and_then(|b| b.match_volume.as_mut())
        {
            m.enabled.get_or_insert(true);
        }
    }
    for input in &mut domain.devices.inputs {
        if input.bus.as_deref().unwrap_or("").is_empty() {
            input.bus = Some(crate::v1::input_bus::USB.into());
        }
        if input.type_.is_empty() {
            input.type_ = crate::v1::input_type::TABLET.into();
        }
    }
    if let Some(w) = domain.devices.watchdog.as_mut() {
        let dev = &mut w.watchdog_device;
        if dev.i6300esb.is_none() && dev.diag288.is_none() {
            if arch == "s390x" {
                dev.diag288 = Some(Default::default());
            } else if arch == "amd64" {
                dev.i6300esb = Some(Default::default());
            }
        }
        for action in [
            dev.i6300esb.as_mut().map(|x| &mut x.action),
            dev.diag288.as_mut().map(|x| &mut x.action),
        ]
        .into_iter()
        .flatten()
        {
            if action.as_deref().unwrap_or("").is_empty() {
                *action = Some(crate::v1::watchdog_action::RESET.into());
            }
        }
    }
    if arch == "arm64" {
        let cpu = domain.cpu.get_or_insert_with(CPU::default);
        if cpu.model.as_deref().unwrap_or("").is_empty() {
            cpu.model = Some("host-passthrough".into());
        }
    }
    for probe in [spec.readiness_probe.as_mut(), spec.liveness_probe.as_mut()]
        .into_iter()
        .flatten()
    {
        default_probe(probe);
    }
}

fn default_bus(d: &mut DiskDevice, bus: &str) {
    let slot = if let Some(t) = d.disk.as_mut() {
        &mut t.bus
    } else if let Some(t) = d.cdrom.as_mut() {
        &mut t.bus
    } else if let Some(t) = d.lun.as_mut() {
        &mut t.bus
    } else {
        return;
    };
    if slot.as_deref().unwrap_or("").is_empty() {
        *slot = Some(bus.to_string());
    }
}

fn default_probe(p: &mut Probe) {
    let at_least = |v: &mut Option<i32>, min: i32, default: i32| {
        if v.unwrap_or(0) < min {
            *v = Some(default);
        }
    };
    at_least(&mut p.timeout_seconds, 1, 1);
    at_least(&mut p.period_seconds, 1, 10);
    at_least(&mut p.success_threshold, 1, 1);
    at_least(&mut p.failure_threshold, 1, 3);
}

/// Room to hotplug CPUs and memory later: maxSockets and maxGuest, as upstream sizes them.
fn hotplug_headroom(spec: &mut VirtualMachineInstanceSpec, cfg: &ClusterConfig) {
    let ratio = i64::from(cfg.max_hotplug_ratio);
    if let Some(cpu) = spec.domain.cpu.as_mut()
        && cpu.max_sockets.unwrap_or(0) == 0
    {
        let sockets = i64::from(cpu.sockets.unwrap_or(1).max(1));
        let per_socket =
            i64::from(cpu.cores.unwrap_or(1).max(1)) * i64::from(cpu.threads.unwrap_or(1).max(1));
        let max = match cfg.max_cpu_sockets {
            Some(m) => i64::from(m).max(sockets),
            None if sockets * ratio * per_socket > MAX_HOTPLUG_VCPUS => {
                (MAX_HOTPLUG_VCPUS / per_socket).max(sockets)
            }
            None => sockets * ratio,
        };
        cpu.max_sockets = i32::try_from(max).ok();
    }
    let memory_ok = memory_hotplug_allowed(spec);
    let Some(memory) = spec.domain.memory.as_mut() else {
        return;
    };
    if memory.max_guest.is_some() {
        return;
    }
    let Some(guest) = memory.guest.as_ref().and_then(|g| Amount::parse(&g.0).ok()) else {
        return;
    };
    let candidate = match cfg.max_guest.as_deref().and_then(|m| Amount::parse(m).ok()) {
        Some(m) => m.bytes(),
        None => guest
            .bytes()
            .saturating_mul(u64::from(cfg.max_hotplug_ratio)),
    };
    if memory_ok && candidate >= guest.bytes() && candidate % (2 << 20) == 0 {
        memory.max_guest = Some(Quantity(Amount::bytes_to_string(candidate)));
    }
}

/// Memory hotplug needs amd64, at least 1Gi of 2Mi-aligned guest memory, and none of realtime,
/// NUMA passthrough or launch security.
pub fn memory_hotplug_allowed(spec: &VirtualMachineInstanceSpec) -> bool {
    let cpu = spec.domain.cpu.as_ref();
    let guest = spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.guest.as_ref())
        .and_then(|g| Amount::parse(&g.0).ok());
    let align: u64 = if spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.hugepages.as_ref())
        .and_then(|h| h.page_size.as_deref())
        == Some("1Gi")
    {
        1 << 30
    } else {
        2 << 20
    };
    spec.architecture.as_deref().unwrap_or("amd64") == "amd64"
        && cpu.and_then(|c| c.realtime.as_ref()).is_none()
        && cpu
            .and_then(|c| c.numa.as_ref())
            .and_then(|n| n.guest_mapping_passthrough.as_ref())
            .is_none()
        && spec.domain.launch_security.is_none()
        && guest.is_some_and(|g| g.bytes() >= 1 << 30 && g.bytes() % align == 0)
}

/// What the VM mutator does: architecture and machine type always; at creation also the
/// firmware identity (a UUID and a serial number the caller generated).
pub fn vm(vm: &mut VirtualMachine, cfg: &ClusterConfig, creating: bool, uuid: &str, serial: &str) {
    let Some(spec) = vm.spec.template.spec.as_mut() else {
        return;
    };
    if spec.architecture.as_deref().unwrap_or("").is_empty() {
        spec.architecture = Some(cfg.default_architecture.clone());
    }
    let arch = spec.architecture.clone().unwrap_or_default();
    let machine = spec.domain.machine.get_or_insert_with(Machine::default);
    if machine.type_.as_deref().unwrap_or("").is_empty() {
        machine.type_ = Some(cfg.default_machine_type(&arch));
    }
    if creating {
        let firmware = spec.domain.firmware.get_or_insert_with(Firmware::default);
        if firmware.uuid.as_deref().unwrap_or("").is_empty() {
            firmware.uuid = Some(uuid.to_string());
        }
        if firmware.serial.as_deref().unwrap_or("").is_empty() {
            firmware.serial = Some(serial.to_string());
        }
    }
}
