//! Unit tests of the converter's error reporting and device choices; whole documents are
//! pinned by the golden tests in `tests/golden.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kubevirt_api::v1::VirtualMachineInstance;

use super::*;

fn vmi(spec: serde_json::Value) -> VirtualMachineInstance {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "vm1", "namespace": "ns1", "uid": "u-1"},
        "spec": spec,
    }))
    .expect("a VMI")
}

fn ctx() -> ConverterContext {
    ConverterContext {
        accelerator: Accelerator::Tcg,
        disks: BTreeMap::new(),
        interfaces: BTreeMap::new(),
        serial_socket: "/s/virt-serial0".into(),
        serial_log: "/s/virt-serial0-log".into(),
        vnc_socket: "/s/virt-vnc".into(),
        efi: None,
        nvram: "/x/nvram.fd".into(),
        kernel_boot: None,
        tcg_tb_cache_mib: None,
    }
}

fn file(path: &str, direct_io: bool) -> DiskSource {
    DiskSource {
        path: PathBuf::from(path),
        block: false,
        format: ImageFormat::Qcow2,
        direct_io,
        read_only: false,
        generated: false,
        block_size: None,
    }
}

fn err(v: &VirtualMachineInstance, c: &ConverterContext) -> ConvertError {
    domain_xml(v, c).expect_err("conversion should fail")
}

const MEM: &str = "128Mi";

#[test]
fn names_the_domain_namespace_underscore_name() {
    let xml = domain_xml(
        &vmi(serde_json::json!({"domain": {"devices": {}, "memory": {"guest": MEM}}})),
        &ctx(),
    )
    .expect("converts");
    assert!(xml.contains("<name>ns1_vm1</name>"), "{xml}");
    assert!(xml.contains("<domain type='qemu'>"), "{xml}");
    assert!(xml.contains("<memory unit='KiB'>131072</memory>"), "{xml}");
    assert!(
        xml.contains("<model fallback='forbid'>qemu64</model>"),
        "{xml}"
    );
    assert!(xml.contains("<memballoon model='none'/>"), "{xml}");
}

#[test]
fn memory_is_required_and_positive() {
    let e = err(&vmi(serde_json::json!({"domain": {"devices": {}}})), &ctx());
    assert_eq!(e.field(), "spec.domain.memory.guest");
    let e = err(
        &vmi(
            serde_json::json!({"domain": {"devices": {}, "resources": {"requests": {"memory": "0"}}}}),
        ),
        &ctx(),
    );
    assert_eq!(e.field(), "spec.domain.resources.requests.memory");
}

#[test]
fn disk_errors_name_the_disk_or_volume() {
    let no_volume = vmi(
        serde_json::json!({"domain": {"devices": {"disks": [{"name": "d"}]}, "memory": {"guest": MEM}}}),
    );
    let e = err(&no_volume, &ctx());
    assert_eq!(e.field(), "spec.domain.devices.disks[0]");
    assert!(e.to_string().contains("no volume named \"d\""), "{e}");

    let unprepared = vmi(serde_json::json!({
        "domain": {"devices": {"disks": [{"name": "d"}]}, "memory": {"guest": MEM}},
        "volumes": [{"name": "d", "emptyDisk": {"capacity": "1Gi"}}],
    }));
    let e = err(&unprepared, &ctx());
    assert!(matches!(e, ConvertError::NotPrepared { .. }), "{e:?}");
    assert_eq!(e.field(), "spec.volumes[0]");

    let mut c = ctx();
    c.disks.insert("d".into(), file("/d.qcow2", true));
    let cdrom_on_virtio = vmi(serde_json::json!({
        "domain": {"devices": {"disks": [{"name": "d", "cdrom": {"bus": "virtio"}}]}, "memory": {"guest": MEM}},
        "volumes": [{"name": "d", "emptyDisk": {"capacity": "1Gi"}}],
    }));
    assert_eq!(
        err(&cdrom_on_virtio, &c).field(),
        "spec.domain.devices.disks[0].cdrom.bus"
    );

    let bad_cache = vmi(serde_json::json!({
        "domain": {"devices": {"disks": [{"name": "d", "cache": "unsafe"}]}, "memory": {"guest": MEM}},
        "volumes": [{"name": "d", "emptyDisk": {"capacity": "1Gi"}}],
    }));
    assert_eq!(
        err(&bad_cache, &c).field(),
        "spec.domain.devices.disks[0].cache"
    );
}

#[test]
fn read_only_images_on_sata() {
    // What `virtctl create vm` makes: volumes without disks, so defaulting gives sata disks.
    let on = |bus: &str, readonly: Option<bool>| {
        let mut disk = serde_json::json!({"bus": bus});
        if let Some(r) = readonly {
            disk["readonly"] = r.into();
        }
        vmi(serde_json::json!({
            "domain": {"devices": {"disks": [{"name": "seed", "disk": disk}]},
                       "memory": {"guest": MEM}},
            "volumes": [{"name": "seed", "cloudInitNoCloud": {"userData": "#cloud-config"}}],
        }))
    };
    let iso = DiskSource {
        format: ImageFormat::Raw,
        read_only: true,
        generated: true,
        ..file("/s/cloud-init/seed.iso", true)
    };
    let mut c = ctx();
    c.disks.insert("seed".into(), iso.clone());
    // A generated ISO: writable on sata (libvirt refuses read-only sata disks), read-only on virtio.
    let xml = domain_xml(&on("sata", None), &c).expect("converts");
    assert!(
        xml.contains("bus='sata'") && !xml.contains("<readonly/>"),
        "{xml}"
    );
    let xml = domain_xml(&on("virtio", None), &c).expect("converts");
    assert!(xml.contains("<readonly/>"), "{xml}");
    // Asked read-only on sata: refused by field, not by libvirt.
    let e = err(&on("sata", Some(true)), &c);
    assert_eq!(e.field(), "spec.domain.devices.disks[0].disk.readonly");
    // A read-only image the launcher did not make (a read-only PVC) is never written: refused.
    c.disks.insert(
        "seed".into(),
        DiskSource {
            generated: false,
            ..iso
        },
    );
    let e = err(&on("sata", None), &c);
    assert_eq!(e.field(), "spec.domain.devices.disks[0].disk.bus");
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[test]
fn cache_none_needs_o_direct_and_defaults_follow_it() {
    let v = vmi(serde_json::json!({
        "domain": {"devices": {"disks": [{"name": "d"}]}, "memory": {"guest": MEM}},
        "volumes": [{"name": "d", "emptyDisk": {"capacity": "1Gi"}}],
    }));
    let mut c = ctx();
    c.disks.insert("d".into(), file("/tmpfs/d.qcow2", false));
    let xml = domain_xml(&v, &c).expect("converts");
    assert!(xml.contains("cache='writethrough' io='threads'"), "{xml}");

    let mut forced = v.clone();
    forced.spec.domain.devices.disks[0].cache = Some("none".into());
    let e = err(&forced, &c);
    assert_eq!(e.field(), "spec.domain.devices.disks[0].cache");
    assert!(e.to_string().contains("O_DIRECT"), "{e}");

    c.disks.insert("d".into(), file("/ext4/d.qcow2", true));
    let xml = domain_xml(&v, &c).expect("converts");
    assert!(xml.contains("cache='none' io='threads'"), "{xml}");
}

#[test]
fn interfaces_need_a_pod_network_a_supported_binding_and_a_prepared_tap() {
    let base = serde_json::json!({
        "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]}, "memory": {"guest": MEM}},
        "networks": [{"name": "default", "pod": {}}],
    });
    let e = err(&vmi(base.clone()), &ctx());
    assert!(matches!(e, ConvertError::NotPrepared { .. }), "{e:?}");
    assert_eq!(e.field(), "spec.domain.devices.interfaces[0]");

    let mut sriov = base.clone();
    sriov["domain"]["devices"]["interfaces"][0] =
        serde_json::json!({"name": "default", "sriov": {}});
    let e = err(&vmi(sriov), &ctx());
    assert!(matches!(e, ConvertError::Unsupported { .. }), "{e:?}");
    assert_eq!(e.field(), "spec.domain.devices.interfaces[0]");

    let mut multus = base.clone();
    multus["networks"][0] = serde_json::json!({"name": "default", "multus": {"networkName": "x"}});
    let mut c = ctx();
    c.interfaces.insert(
        "default".into(),
        InterfaceTarget {
            tap: "tap0".into(),
            mac: "02:00:00:00:00:01".into(),
            mtu: None,
            queues: None,
        },
    );
    assert_eq!(err(&vmi(multus), &c).field(), "spec.networks[0]");

    let mut bad_mac = base.clone();
    bad_mac["domain"]["devices"]["interfaces"][0]["macAddress"] = "zz:00".into();
    assert_eq!(
        err(&vmi(bad_mac), &c).field(),
        "spec.domain.devices.interfaces[0].macAddress"
    );

    let xml = domain_xml(&vmi(base), &c).expect("converts");
    assert!(xml.contains("<target dev='tap0' managed='no'/>"), "{xml}");
    assert!(xml.contains("<rom enabled='no'/>"), "{xml}");
}

#[test]
fn efi_needs_ovmf_and_secure_boot_needs_smm() {
    let v = vmi(serde_json::json!({
        "domain": {"devices": {}, "memory": {"guest": MEM}, "firmware": {"bootloader": {"efi": {}}}},
    }));
    let e = err(&v, &ctx());
    assert_eq!(e.field(), "spec.domain.firmware.bootloader.efi");
    let mut c = ctx();
    c.efi = Some(EfiFirmware {
        code: "/c.fd".into(),
        vars_template: "/v.fd".into(),
        secure_code: Some("/sc.fd".into()),
        secure_vars_template: Some("/sv.fd".into()),
    });
    let xml = domain_xml(&v, &c).expect("converts");
    assert!(xml.contains("secure='yes'"), "{xml}");
    assert!(xml.contains("<smm state='on'/>"), "{xml}");
    let mut no_smm = v.clone();
    no_smm.spec.domain.features =
        serde_json::from_value(serde_json::json!({"smm": {"enabled": false}})).ok();
    assert_eq!(err(&no_smm, &c).field(), "spec.domain.features.smm");
}

#[test]
fn kvm_gets_host_model_and_its_own_features_tcg_does_not() {
    let v = vmi(serde_json::json!({
        "domain": {"devices": {}, "memory": {"guest": MEM}, "cpu": {"model": "host-model"},
                   "features": {"pvspinlock": {}, "kvm": {"hidden": true}}},
    }));
    let tcg = domain_xml(&v, &ctx()).expect("converts");
    assert!(
        tcg.contains("qemu64") && !tcg.contains("pvspinlock") && !tcg.contains("<kvm>"),
        "{tcg}"
    );
    let mut c = ctx();
    c.accelerator = Accelerator::Kvm;
    let kvm = domain_xml(&v, &c).expect("converts");
    assert!(kvm.contains("<domain type='kvm'>"), "{kvm}");
    assert!(kvm.contains("<cpu mode='host-model'"), "{kvm}");
    assert!(
        kvm.contains("<pvspinlock state='on'/>") && kvm.contains("<hidden state='on'/>"),
        "{kvm}"
    );
}

#[test]
fn unsupported_devices_are_refused_by_field() {
    let v = vmi(serde_json::json!({
        "domain": {"devices": {"gpus": [{"name": "g", "deviceName": "nvidia.com/x"}]}, "memory": {"guest": MEM}},
    }));
    assert_eq!(err(&v, &ctx()).field(), "spec.domain.devices.gpus");
    let v = vmi(serde_json::json!({
        "domain": {"devices": {"panicDevices": [{"model": "pvpanic"}]}, "memory": {"guest": MEM}},
    }));
    assert_eq!(
        err(&v, &ctx()).field(),
        "spec.domain.devices.panicDevices[0].model"
    );
}

#[test]
fn target_names_follow_the_bus() {
    assert_eq!(disks::target_name("vd", 0), "vda");
    assert_eq!(disks::target_name("sd", 25), "sdz");
    assert_eq!(disks::target_name("sd", 26), "sdaa");
    assert_eq!(
        devices::normalize_mac("DE-AD-00-00-BE-AF").as_deref(),
        Some("de:ad:00:00:be:af")
    );
    assert_eq!(devices::normalize_mac("de:ad"), None);
}
