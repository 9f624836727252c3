//! Expanding an instancetype and a preference into an instance spec, as upstream's VM controller
//! does when it starts a VM: the instancetype's settings are mandatory (a template field it also
//! sets is a conflict), the preference's only fill what the template leaves unset.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kubevirt_api::instancetype::{
    VirtualMachineInstancetypeSpec, VirtualMachinePreferenceSpec, preferred_cpu_topologies,
    spread_across,
};
use kubevirt_api::quantity::Amount;
use kubevirt_api::v1::{
    BIOS, Bootloader, CPU, Clock, DiskTarget, EFI, Features, Firmware, Machine, Memory,
    PanicDevice, VideoDevice, VirtualMachineInstanceSpec,
};

/// Template fields the instancetype also sets, as field paths (`spec.domain.cpu.sockets`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("VMI conflicts with instancetype spec in fields: [{}]", .0.join(", "))]
pub struct Conflicts(pub Vec<String>);

/// Applies `instancetype` (mandatory) then `preference` (fill-in) to an instance spec and its
/// annotations. On conflicts nothing from the preference is applied.
pub fn apply(
    instancetype: Option<&VirtualMachineInstancetypeSpec>,
    preference: Option<&VirtualMachinePreferenceSpec>,
    spec: &mut VirtualMachineInstanceSpec,
    annotations: &mut BTreeMap<String, String>,
) -> Result<(), Conflicts> {
    if let Some(it) = instancetype {
        let mut conflicts = Vec::new();
        apply_node_selector(it, spec, &mut conflicts);
        apply_scheduler(it, spec, &mut conflicts);
        apply_cpu(it, preference, spec, &mut conflicts);
        apply_memory(it, spec, &mut conflicts);
        apply_misc(it, spec, &mut conflicts);
        for (k, v) in &it.annotations {
            match annotations.get(k) {
                Some(existing) if existing != v => conflicts.push(format!("annotations.{k}")),
                Some(_) => {}
                None => {
                    annotations.insert(k.clone(), v.clone());
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(Conflicts(conflicts));
        }
    }
    if let Some(p) = preference {
        apply_preference(p, spec, annotations);
    }
    Ok(())
}

fn apply_node_selector(
    it: &VirtualMachineInstancetypeSpec,
    spec: &mut VirtualMachineInstanceSpec,
    conflicts: &mut Vec<String>,
) {
    if it.node_selector.is_empty() {
        return;
    }
    if !spec.node_selector.is_empty() {
        conflicts.push("spec.nodeSelector".into());
        return;
    }
    spec.node_selector = it.node_selector.clone();
}

fn apply_scheduler(
    it: &VirtualMachineInstancetypeSpec,
    spec: &mut VirtualMachineInstanceSpec,
    conflicts: &mut Vec<String>,
) {
    let Some(name) = it.scheduler_name.as_deref().filter(|s| !s.is_empty()) else {
        return;
    };
    if spec
        .scheduler_name
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        conflicts.push("spec.schedulerName".into());
        return;
    }
    spec.scheduler_name = Some(name.to_string());
}

fn set(v: Option<i32>) -> bool {
    v.unwrap_or(0) != 0
}

fn apply_cpu(
    it: &VirtualMachineInstancetypeSpec,
    preference: Option<&VirtualMachinePreferenceSpec>,
    spec: &mut VirtualMachineInstanceSpec,
    conflicts: &mut Vec<String>,
) {
    let before = conflicts.len();
    if let Some(res) = spec.domain.resources.as_ref() {
        if res.requests.contains_key("cpu") {
            conflicts.push("spec.domain.resources.requests.cpu".into());
        }
        if res.limits.contains_key("cpu") {
            conflicts.push("spec.domain.resources.limits.cpu".into());
        }
    }
    let cpu = spec.domain.cpu.get_or_insert_with(CPU::default);
    let checks: [(bool, &str); 8] = [
        (set(cpu.sockets), "sockets"),
        (set(cpu.cores), "cores"),
        (set(cpu.threads), "threads"),
        (
            cpu.model.as_deref().is_some_and(|m| !m.is_empty()) && it.cpu.model.is_some(),
            "model",
        ),
        (
            cpu.dedicated_cpu_placement == Some(true) && it.cpu.dedicated_cpu_placement.is_some(),
            "dedicatedCPUPlacement",
        ),
        (
            cpu.isolate_emulator_thread == Some(true) && it.cpu.isolate_emulator_thread.is_some(),
            "isolateEmulatorThread",
        ),
        (cpu.numa.is_some() && it.cpu.numa.is_some(), "numa"),
        (
            cpu.realtime.is_some() && it.cpu.realtime.is_some(),
            "realtime",
        ),
    ];
    for (conflict, field) in checks {
        if conflict {
            conflicts.push(format!("spec.domain.cpu.{field}"));
        }
    }
    if conflicts.len() > before {
        return;
    }
    if let Some(m) = &it.cpu.model {
        cpu.model = Some(m.clone());
    }
    if let Some(d) = it.cpu.dedicated_cpu_placement {
        cpu.dedicated_cpu_placement = Some(d);
    }
    if let Some(i) = it.cpu.isolate_emulator_thread {
        cpu.isolate_emulator_thread = Some(i);
    }
    if let Some(n) = &it.cpu.numa {
        cpu.numa = Some(n.clone());
    }
    if let Some(r) = &it.cpu.realtime {
        cpu.realtime = Some(r.clone());
    }
    if let Some(m) = it.cpu.max_sockets {
        cpu.max_sockets = Some(m);
    }
    let (sockets, cores, threads) = topology(it.cpu.guest, preference);
    cpu.sockets = Some(sockets);
    cpu.cores = Some(cores);
    cpu.threads = Some(threads);
}

/// How `vcpus` are laid out as (sockets, cores, threads) under a preference's topology.
pub fn topology(vcpus: i32, preference: Option<&VirtualMachinePreferenceSpec>) -> (i32, i32, i32) {
    if vcpus <= 1 {
        return (1, 1, 1);
    }
    let preferred = preference
        .and_then(|p| p.cpu.as_ref())
        .and_then(|c| c.preferred_cpu_topology.as_deref())
        .unwrap_or(preferred_cpu_topologies::SOCKETS);
    use preferred_cpu_topologies as t;
    match preferred {
        t::CORES | t::PREFER_CORES => (1, vcpus, 1),
        t::THREADS | t::PREFER_THREADS => (1, 1, vcpus),
        t::SPREAD | t::PREFER_SPREAD => {
            let p = preference;
            let mut ratio = p
                .and_then(|p| p.prefer_spread_socket_to_core_ratio)
                .filter(|r| *r != 0)
                .unwrap_or(2);
            let options = p
                .and_then(|p| p.cpu.as_ref())
                .and_then(|c| c.spread_options.as_ref());
            if let Some(r) = options.and_then(|o| o.ratio) {
                ratio = r;
            }
            let ratio = ratio.max(1);
            let across = options
                .and_then(|o| o.across.as_deref())
                .unwrap_or(spread_across::SOCKETS_CORES);
            match across {
                spread_across::CORES_THREADS => (1, vcpus / ratio, ratio),
                spread_across::SOCKETS_CORES_THREADS => (vcpus / 2 / ratio, ratio, 2),
                _ => (vcpus / ratio, ratio, 1),
            }
        }
        _ => (vcpus, 1, 1),
    }
}

fn apply_memory(
    it: &VirtualMachineInstancetypeSpec,
    spec: &mut VirtualMachineInstanceSpec,
    conflicts: &mut Vec<String>,
) {
    let memory = spec.domain.memory.get_or_insert_with(Memory::default);
    let conflict = if memory.guest.is_some() {
        Some("spec.domain.memory.guest")
    } else if memory.hugepages.is_some() && it.memory.hugepages.is_some() {
        Some("spec.domain.memory.hugepages")
    } else if memory.max_guest.is_some() && it.memory.max_guest.is_some() {
        Some("spec.domain.memory.maxGuest")
    } else if let Some(res) = spec.domain.resources.as_ref() {
        if res.requests.contains_key("memory") {
            Some("spec.domain.resources.requests.memory")
        } else if res.limits.contains_key("memory") {
            Some("spec.domain.resources.limits.memory")
        } else {
            None
        }
    } else {
        None
    };
    if let Some(c) = conflict {
        conflicts.push(c.into());
        return;
    }
    memory.guest = Some(it.memory.guest.clone());
    if let Some(h) = &it.memory.hugepages {
        memory.hugepages = Some(h.clone());
    }
    if let Some(m) = &it.memory.max_guest {
        memory.max_guest = Some(m.clone());
    }
    let overcommit = it.memory.overcommit_percent.unwrap_or(0);
    if overcommit > 0
        && let Ok(guest) = Amount::parse(&it.memory.guest.0)
    {
        let bytes = guest.bytes();
        let request = bytes - bytes.saturating_mul(overcommit.clamp(0, 100) as u64) / 100;
        spec.domain
            .resources
            .get_or_insert_with(Default::default)
            .requests
            .insert("memory".into(), Quantity(request.to_string()));
    }
}

fn apply_misc(
    it: &VirtualMachineInstancetypeSpec,
    spec: &mut VirtualMachineInstanceSpec,
    conflicts: &mut Vec<String>,
) {
    let domain = &mut spec.domain;
    if let Some(t) = &it.io_threads {
        if domain.io_threads.is_some() {
            conflicts.push("spec.domain.ioThreads".into());
        } else {
            domain.io_threads = Some(t.clone());
        }
    }
    if let Some(p) = &it.io_threads_policy {
        if domain.io_threads_policy.is_some() {
            conflicts.push("spec.domain.ioThreadsPolicy".into());
        } else {
            domain.io_threads_policy = Some(p.clone());
        }
    }
    if let Some(l) = &it.launch_security {
        if domain.launch_security.is_some() {
            conflicts.push("spec.domain.launchSecurity".into());
        } else {
            domain.launch_security = Some(l.clone());
        }
    }
    if !it.gpus.is_empty() {
        if !domain.devices.gpus.is_empty() {
            conflicts.push("spec.domain.devices.gpus".into());
        } else {
            domain.devices.gpus = it.gpus.clone();
        }
    }
    if !it.host_devices.is_empty() {
        if !domain.devices.host_devices.is_empty() {
            conflicts.push("spec.domain.devices.hostDevices".into());
        } else {
            domain.devices.host_devices = it.host_devices.clone();
        }
    }
}

fn fill<T: Clone>(target: &mut Option<T>, preferred: &Option<T>) {
    if target.is_none() {
        target.clone_from(preferred);
    }
}

fn fill_str(target: &mut Option<String>, preferred: &Option<String>) {
    if target.as_deref().unwrap_or("").is_empty()
        && let Some(p) = preferred.as_ref().filter(|p| !p.is_empty())
    {
        *target = Some(p.clone());
    }
}

/// The preference's settings, where the spec leaves them unset.
pub fn apply_preference(
    p: &VirtualMachinePreferenceSpec,
    spec: &mut VirtualMachineInstanceSpec,
    annotations: &mut BTreeMap<String, String>,
) {
    if let Some(cpu) = p
        .cpu
        .as_ref()
        .filter(|c| !c.preferred_cpu_features.is_empty())
    {
        let vcpu = spec.domain.cpu.get_or_insert_with(CPU::default);
        for f in &cpu.preferred_cpu_features {
            if !vcpu.features.iter().any(|x| x.name == f.name) {
                vcpu.features.push(f.clone());
            }
        }
    }
    if let Some(d) = &p.devices {
        let dev = &mut spec.domain.devices;
        fill(
            &mut dev.use_virtio_transitional,
            &d.preferred_use_virtio_transitional,
        );
        fill(&mut dev.block_multi_queue, &d.preferred_block_multi_queue);
        fill(
            &mut dev.network_interface_multiqueue,
            &d.preferred_network_interface_multi_queue,
        );
        if let Some(h) = d.preferred_disable_hotplug {
            dev.disable_hotplug = Some(h);
        }
        if let Some(sound) = dev.sound.as_mut() {
            fill_str(&mut sound.model, &d.preferred_sound_model);
        }
        fill(&mut dev.rng, &d.preferred_rng);
        fill(&mut dev.tpm, &d.preferred_tpm);
        if let Some(video) = &d.preferred_video_type {
            let v = dev.video.get_or_insert_with(VideoDevice::default);
            fill_str(&mut v.type_, &Some(video.clone()));
        }
        fill(
            &mut dev.autoattach_graphics_device,
            &d.preferred_autoattach_graphics_device,
        );
        fill(
            &mut dev.autoattach_mem_balloon,
            &d.preferred_autoattach_mem_balloon,
        );
        fill(
            &mut dev.autoattach_pod_interface,
            &d.preferred_autoattach_pod_interface,
        );
        fill(
            &mut dev.autoattach_serial_console,
            &d.preferred_autoattach_serial_console,
        );
        fill(
            &mut dev.autoattach_input_device,
            &d.preferred_autoattach_input_device,
        );
        for disk in &mut dev.disks {
            let dd = &mut disk.disk_device;
            if dd.disk.is_none() && dd.cdrom.is_none() && dd.lun.is_none() {
                dd.disk = Some(DiskTarget::default());
            }
            if let Some(t) = dd.disk.as_mut() {
                fill_str(&mut t.bus, &d.preferred_disk_bus);
                fill(&mut disk.block_size, &d.preferred_disk_block_size);
                fill_str(&mut disk.cache, &d.preferred_disk_cache);
                fill_str(&mut disk.io, &d.preferred_disk_io);
                if t.bus.as_deref() == Some("virtio") {
                    fill(
                        &mut disk.dedicated_io_thread,
                        &d.preferred_disk_dedicated_io_thread,
                    );
                }
            } else if let Some(t) = dd.cdrom.as_mut() {
                fill_str(&mut t.bus, &d.preferred_cdrom_bus);
            } else if let Some(t) = dd.lun.as_mut() {
                fill_str(&mut t.bus, &d.preferred_lun_bus);
            }
        }
        let pod_networks: Vec<String> = spec
            .networks
            .iter()
            .filter(|n| n.network_source.pod.is_some())
            .map(|n| n.name.clone())
            .collect();
        for iface in &mut spec.domain.devices.interfaces {
            fill_str(&mut iface.model, &d.preferred_interface_model);
            if d.preferred_interface_masquerade.is_some()
                && iface.interface_binding_method == Default::default()
                && iface.binding.is_none()
                && pod_networks.contains(&iface.name)
            {
                iface.interface_binding_method.masquerade =
                    d.preferred_interface_masquerade.clone();
            }
        }
        let dev = &mut spec.domain.devices;
        for input in &mut dev.inputs {
            fill_str(&mut input.bus, &d.preferred_input_bus);
            if input.type_.is_empty()
                && let Some(t) = &d.preferred_input_type
            {
                input.type_ = t.clone();
            }
        }
        if let Some(model) = &d.preferred_panic_device_model {
            if dev.panic_devices.is_empty() {
                dev.panic_devices.push(PanicDevice {
                    model: Some(model.clone()),
                });
            } else {
                for pd in &mut dev.panic_devices {
                    fill(&mut pd.model, &Some(model.clone()));
                }
            }
        }
    }
    if let Some(f) = &p.features {
        let features = spec.domain.features.get_or_insert_with(Features::default);
        if let Some(acpi) = &f.preferred_acpi {
            features.acpi = Some(acpi.clone());
        }
        fill(&mut features.apic, &f.preferred_apic);
        if let Some(ph) = &f.preferred_hyperv {
            let h = features.hyperv.get_or_insert_with(Default::default);
            fill(&mut h.evmcs, &ph.evmcs);
            fill(&mut h.frequencies, &ph.frequencies);
            fill(&mut h.ipi, &ph.ipi);
            fill(&mut h.reenlightenment, &ph.reenlightenment);
            fill(&mut h.relaxed, &ph.relaxed);
            fill(&mut h.reset, &ph.reset);
            fill(&mut h.runtime, &ph.runtime);
            fill(&mut h.spinlocks, &ph.spinlocks);
            fill(&mut h.synic, &ph.synic);
            fill(&mut h.synictimer, &ph.synictimer);
            fill(&mut h.tlbflush, &ph.tlbflush);
            fill(&mut h.vapic, &ph.vapic);
            fill(&mut h.vpindex, &ph.vpindex);
            fill(&mut h.vendorid, &ph.vendorid);
        }
        fill(&mut features.kvm, &f.preferred_kvm);
        fill(&mut features.pvspinlock, &f.preferred_pvspinlock);
        fill(&mut features.smm, &f.preferred_smm);
    }
    if let Some(f) = &p.firmware {
        let fw = spec.domain.firmware.get_or_insert_with(Firmware::default);
        let bl = fw.bootloader.get_or_insert_with(Bootloader::default);
        if f.preferred_use_bios == Some(true) && bl.bios.is_none() && bl.efi.is_none() {
            bl.bios = Some(BIOS::default());
        }
        if let (Some(serial), Some(bios)) = (f.preferred_use_bios_serial, bl.bios.as_mut()) {
            bios.use_serial.get_or_insert(serial);
        }
        if bl.efi.is_none() && bl.bios.is_none() && f.preferred_efi.is_some() {
            bl.efi = f.preferred_efi.clone();
        } else {
            if f.preferred_use_efi == Some(true) && bl.efi.is_none() && bl.bios.is_none() {
                bl.efi = Some(EFI::default());
            }
            if let (Some(sb), Some(efi)) = (f.preferred_use_secure_boot, bl.efi.as_mut()) {
                efi.secure_boot.get_or_insert(sb);
            }
        }
    }
    if let Some(m) = p
        .machine
        .as_ref()
        .and_then(|m| m.preferred_machine_type.as_ref())
        .filter(|m| !m.is_empty())
    {
        let machine = spec.domain.machine.get_or_insert_with(Machine::default);
        fill_str(&mut machine.type_, &Some(m.clone()));
    }
    if let Some(c) = &p.clock {
        let clock = spec.domain.clock.get_or_insert_with(Clock::default);
        if let Some(offset) = &c.preferred_clock_offset
            && clock.clock_offset.utc.is_none()
            && clock.clock_offset.timezone.is_none()
        {
            clock.clock_offset = offset.clone();
        }
        fill(&mut clock.timer, &c.preferred_timer);
    }
    fill_str(&mut spec.subdomain, &p.preferred_subdomain);
    fill(
        &mut spec.termination_grace_period_seconds,
        &p.preferred_termination_grace_period_seconds,
    );
    fill_str(&mut spec.architecture, &p.preferred_architecture);
    for (k, v) in &p.annotations {
        annotations.entry(k.clone()).or_insert_with(|| v.clone());
    }
    fill(
        &mut spec.domain.launch_security,
        &p.preferred_launch_security,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubevirt_api::instancetype::{
        CPUInstancetype, CPUPreferences, DevicePreferences, MemoryInstancetype, SpreadOptions,
    };
    use kubevirt_api::v1::{Disk, DiskDevice, ResourceRequirements};

    fn small(guest_cpus: i32) -> VirtualMachineInstancetypeSpec {
        VirtualMachineInstancetypeSpec {
            cpu: CPUInstancetype {
                guest: guest_cpus,
                ..Default::default()
            },
            memory: MemoryInstancetype {
                guest: Quantity("128Mi".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pref_topology(t: &str) -> VirtualMachinePreferenceSpec {
        VirtualMachinePreferenceSpec {
            cpu: Some(CPUPreferences {
                preferred_cpu_topology: Some(t.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn instancetype_sets_cpu_and_memory() {
        let mut spec = VirtualMachineInstanceSpec::default();
        let mut ann = BTreeMap::new();
        apply(Some(&small(2)), None, &mut spec, &mut ann).unwrap();
        let cpu = spec.domain.cpu.unwrap();
        assert_eq!(
            (cpu.sockets, cpu.cores, cpu.threads),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(
            spec.domain.memory.unwrap().guest,
            Some(Quantity("128Mi".into()))
        );
    }

    #[test]
    fn topologies_follow_the_preference() {
        assert_eq!(topology(4, Some(&pref_topology("cores"))), (1, 4, 1));
        assert_eq!(
            topology(4, Some(&pref_topology("preferThreads"))),
            (1, 1, 4)
        );
        assert_eq!(topology(4, Some(&pref_topology("any"))), (4, 1, 1));
        assert_eq!(topology(8, Some(&pref_topology("spread"))), (4, 2, 1));
        let mut p = pref_topology("spread");
        p.cpu.as_mut().unwrap().spread_options = Some(SpreadOptions {
            across: Some("SocketsCoresThreads".into()),
            ratio: Some(2),
        });
        assert_eq!(topology(8, Some(&p)), (2, 2, 2));
        assert_eq!(topology(1, Some(&pref_topology("cores"))), (1, 1, 1));
    }

    #[test]
    fn conflicting_template_fields_are_reported_by_path() {
        let mut spec = VirtualMachineInstanceSpec::default();
        spec.domain.cpu = Some(CPU {
            sockets: Some(2),
            ..Default::default()
        });
        spec.domain.resources = Some(ResourceRequirements {
            requests: BTreeMap::from([("memory".into(), Quantity("1Gi".into()))]),
            ..Default::default()
        });
        let err = apply(Some(&small(1)), None, &mut spec, &mut BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VMI conflicts with instancetype spec in fields: [spec.domain.cpu.sockets, spec.domain.resources.requests.memory]"
        );
    }

    #[test]
    fn overcommit_lowers_the_memory_request() {
        let mut it = small(1);
        it.memory.overcommit_percent = Some(50);
        let mut spec = VirtualMachineInstanceSpec::default();
        apply(Some(&it), None, &mut spec, &mut BTreeMap::new()).unwrap();
        let req = &spec.domain.resources.unwrap().requests["memory"];
        assert_eq!(req.0, (64u64 << 20).to_string());
    }

    #[test]
    fn preference_fills_only_unset_fields() {
        let p = VirtualMachinePreferenceSpec {
            devices: Some(DevicePreferences {
                preferred_disk_bus: Some("virtio".into()),
                preferred_interface_model: Some("virtio".into()),
                ..Default::default()
            }),
            preferred_termination_grace_period_seconds: Some(5),
            annotations: BTreeMap::from([("a".into(), "pref".into()), ("b".into(), "pref".into())]),
            ..Default::default()
        };
        let mut spec = VirtualMachineInstanceSpec::default();
        spec.domain.devices.disks = vec![
            Disk {
                name: "a".into(),
                ..Default::default()
            },
            Disk {
                name: "b".into(),
                disk_device: DiskDevice {
                    disk: Some(DiskTarget {
                        bus: Some("sata".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        let mut ann = BTreeMap::from([("a".to_string(), "mine".to_string())]);
        apply(None, Some(&p), &mut spec, &mut ann).unwrap();
        let bus = |i: usize| {
            spec.domain.devices.disks[i]
                .disk_device
                .disk
                .as_ref()
                .unwrap()
                .bus
                .clone()
        };
        assert_eq!(bus(0).as_deref(), Some("virtio"));
        assert_eq!(bus(1).as_deref(), Some("sata"));
        assert_eq!(spec.termination_grace_period_seconds, Some(5));
        assert_eq!(ann["a"], "mine");
        assert_eq!(ann["b"], "pref");
    }

    #[test]
    fn instancetype_annotation_conflicts() {
        let mut it = small(1);
        it.annotations.insert("x".into(), "1".into());
        let mut ann = BTreeMap::from([("x".to_string(), "2".to_string())]);
        let err = apply(
            Some(&it),
            None,
            &mut VirtualMachineInstanceSpec::default(),
            &mut ann,
        )
        .unwrap_err();
        assert_eq!(err.0, vec!["annotations.x".to_string()]);
    }
}
