//! Defaulting and validation behave as upstream's webhooks: the seeds' manifests pass, bad
//! specs are refused with every cause named, defaulting is idempotent and never panics.

mod common;

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::config::ClusterConfig;
use kubevirt_api::field::Cause;
use kubevirt_api::manifest::{self, Object, Strictness};
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use kubevirt_api::{defaults, validation};
use proptest::prelude::*;

const UUID: &str = "5f0c8a6e-0c5a-4a8e-9a47-3f1d2b7c9e11";

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("a valid time"))
}

fn seed_vm(name: &str) -> VirtualMachine {
    let path = format!("{}/tests/data/seeds/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("seed readable");
    match manifest::parse(&text, Strictness::Strict)
        .expect("seed parses")
        .pop()
    {
        Some(Object::VirtualMachine(vm)) => *vm,
        other => panic!("not a VM: {other:?}"),
    }
}

fn vmi_from_yaml(yaml: &str) -> VirtualMachineInstance {
    match manifest::parse(yaml, Strictness::Strict)
        .expect("test VMI parses")
        .pop()
    {
        Some(Object::VirtualMachineInstance(vmi)) => *vmi,
        other => panic!("not a VMI: {other:?}"),
    }
}

/// The VMI the VM controller would create from a VM's template.
fn vmi_of(vm: &VirtualMachine) -> VirtualMachineInstance {
    let mut vmi = VirtualMachineInstance::new(
        vm.metadata.name.as_deref().unwrap_or("vm"),
        vm.spec.template.spec.clone().expect("template spec"),
    );
    vmi.metadata.namespace = Some("default".into());
    vmi
}

fn fields(causes: &[Cause]) -> BTreeSet<String> {
    causes.iter().map(|c| c.field.clone()).collect()
}

#[test]
fn the_seed_vms_are_valid_and_their_vmis_default_and_validate() {
    let cfg = ClusterConfig::default();
    for seed in ["v1-testvm.yaml", "v1alpha3-testvm.yaml"] {
        let vm = seed_vm(seed);
        let causes = validation::vm(&vm, &cfg).expect("template defaults");
        assert!(causes.is_empty(), "{seed}: {causes:?}");
        let mut vmi = vmi_of(&vm);
        defaults::vmi(&mut vmi, &cfg, UUID, &now()).expect("defaults");
        let causes = validation::vmi_create(&vmi, &cfg);
        assert!(causes.is_empty(), "{seed}: {causes:?}");
    }
}

#[test]
fn defaulting_fills_what_upstream_fills() {
    let mut vmi = vmi_from_yaml(
        "apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: small, namespace: default}
spec:
  domain:
    devices: {}
    resources:
      requests: {memory: 128Mi}
  volumes:
  - name: root
    containerDisk: {image: 127.0.0.1:5000/kubevirt-rs/guest:latest}
  - name: seed
    cloudInitNoCloud: {userData: \"#cloud-config\"}
",
    );
    defaults::vmi(&mut vmi, &ClusterConfig::default(), UUID, &now()).expect("defaults");
    let v = serde_json::to_value(&vmi).expect("serializes");
    let spec = &v["spec"];
    assert_eq!(spec["architecture"], "amd64");
    assert_eq!(spec["domain"]["machine"]["type"], "q35");
    assert_eq!(spec["domain"]["memory"]["guest"], "128Mi");
    assert_eq!(spec["domain"]["cpu"]["sockets"], 1);
    assert_eq!(spec["domain"]["cpu"]["cores"], 1);
    assert_eq!(spec["domain"]["cpu"]["threads"], 1);
    assert_eq!(spec["domain"]["cpu"]["maxSockets"], 4);
    assert_eq!(spec["domain"]["cpu"]["model"], "host-model");
    assert_eq!(spec["domain"]["firmware"]["uuid"], UUID);
    assert_eq!(spec["domain"]["features"]["acpi"]["enabled"], true);
    let disks = spec["domain"]["devices"]["disks"]
        .as_array()
        .expect("disks added");
    assert_eq!(disks.len(), 2, "one disk per volume: {disks:?}");
    assert_eq!(disks[0]["name"], "root");
    assert_eq!(
        disks[0]["disk"]["bus"], "sata",
        "upstream's amd64 default bus"
    );
    assert_eq!(
        spec["domain"]["devices"]["interfaces"][0]["name"],
        "default"
    );
    assert_eq!(
        spec["domain"]["devices"]["interfaces"][0]["masquerade"],
        serde_json::json!({})
    );
    assert_eq!(spec["networks"][0]["pod"], serde_json::json!({}));
    assert_eq!(
        spec["volumes"][0]["containerDisk"]["imagePullPolicy"],
        "Always"
    );
    assert_eq!(v["status"]["phase"], "Pending");
    assert_eq!(v["status"]["memory"]["guestAtBoot"], "128Mi");
    assert_eq!(v["metadata"]["finalizers"][0], defaults::VMI_FINALIZER);
    assert!(
        spec["domain"]["memory"].get("maxGuest").is_none(),
        "128Mi is too small for memory hotplug"
    );
    assert!(validation::vmi_create(&vmi, &ClusterConfig::default()).is_empty());
}

#[test]
fn no_default_interface_when_autoattach_is_off_and_bridge_can_be_forbidden() {
    let yaml = "apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: x}
spec:
  domain:
    devices: {autoattachPodInterface: false}
    memory: {guest: 64Mi}
";
    let mut vmi = vmi_from_yaml(yaml);
    defaults::vmi(&mut vmi, &ClusterConfig::default(), UUID, &now()).expect("defaults");
    assert!(vmi.spec.networks.is_empty() && vmi.spec.domain.devices.interfaces.is_empty());

    let cfg = ClusterConfig {
        default_network_interface: "bridge".into(),
        permit_bridge_interface_on_pod_network: false,
        ..ClusterConfig::default()
    };
    let mut vmi = vmi_from_yaml(&yaml.replace("autoattachPodInterface: false", ""));
    let err = defaults::vmi(&mut vmi, &cfg, UUID, &now()).expect_err("bridge is forbidden");
    assert_eq!(
        err.to_string(),
        "bridge interface is not enabled in kubevirt-config"
    );
}

#[test]
fn a_bad_vmi_gets_every_cause_with_its_field() {
    let vmi = vmi_from_yaml(
        "apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: bad}
spec:
  domain:
    devices:
      disks:
      - {name: root, disk: {bus: ide}, bootOrder: 1}
      - {name: root, cdrom: {bus: virtio}}
      - {name: orphan, bootOrder: 1, disk: {}}
      - {name: two-targets, disk: {}, lun: {}}
      interfaces:
      - {name: nic1, masquerade: {}, macAddress: 'zz:zz'}
  networks:
  - {name: default, pod: {}}
  volumes:
  - {name: root, containerDisk: {image: a}}
  - {name: two-targets, emptyDisk: {capacity: 1Gi}}
  - {name: unused, emptyDisk: {capacity: 1Gi}}
",
    );
    let causes = validation::vmi_create(&vmi, &ClusterConfig::default());
    let f = fields(&causes);
    for expected in [
        "spec.domain.devices.disks[0].disk.bus",
        "spec.domain.devices.disks[1].name",
        "spec.domain.devices.disks[1].cdrom.bus",
        "spec.domain.devices.disks[2].name",
        "spec.domain.devices.disks[2].bootOrder",
        "spec.domain.devices.disks[3]",
        "spec.domain.devices.disks[3].lun",
        "spec.domain.devices.interfaces[0].name",
        "spec.domain.devices.interfaces[0].macAddress",
        "spec.networks[0].name",
        "spec.volumes[2].name",
        "",
    ] {
        assert!(
            f.contains(expected),
            "no cause for {expected:?} in {causes:#?}"
        );
    }
    let msg = |field: &str| {
        causes
            .iter()
            .filter(|c| c.field == field)
            .map(|c| c.message.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    assert_eq!(
        msg("spec.domain.devices.disks[0].disk.bus"),
        "IDE bus is not supported"
    );
    assert!(msg("spec.domain.devices.disks[1].name").contains(
        "spec.domain.devices.disks[1] and spec.domain.devices.disks[0] must not have the same Name."
    ));
    assert_eq!(
        msg("spec.domain.devices.disks[1].cdrom.bus"),
        "Bus type virtio is invalid for CD-ROM device"
    );
    assert!(
        msg("spec.domain.devices.disks[2].name")
            .contains("spec.domain.devices.disks[2].Name 'orphan' not found.")
    );
    assert_eq!(
        msg("spec.domain.devices.disks[2].bootOrder"),
        "Boot order for spec.domain.devices.disks[2].bootOrder already set for a different device."
    );
    assert!(
        msg("spec.domain.devices.interfaces[0].name")
            .contains("spec.domain.devices.interfaces[0].name 'nic1' not found.")
    );
    assert!(msg("").starts_with("no memory requested"));
    let text = validation::rejection_message(&causes);
    assert!(
        causes.len() > 10
            && text.ends_with(&format!(
                ", and {} more validation errors",
                causes.len() - 10
            )),
        "{text}"
    );
}

#[test]
fn run_strategy_rules_match_upstream() {
    let mut vm = seed_vm("v1-testvm.yaml");
    let cfg = ClusterConfig::default();
    vm.spec.run_strategy = Some("Always".into());
    let causes = validation::vm(&vm, &cfg).expect("defaults");
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "spec.running");
    assert_eq!(
        causes[0].message,
        "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead"
    );
    vm.spec.running = None;
    vm.spec.run_strategy = Some("Sometimes".into());
    let causes = validation::vm(&vm, &cfg).expect("defaults");
    assert_eq!(
        (causes[0].field.as_str(), causes[0].message.as_str()),
        ("spec.runStrategy", "Invalid RunStrategy (Sometimes)")
    );
    vm.spec.run_strategy = None;
    let causes = validation::vm(&vm, &cfg).expect("defaults");
    assert_eq!(causes[0].message, "RunStrategy must be specified");
    vm.spec.run_strategy = Some("Halted".into());
    assert!(validation::vm(&vm, &cfg).expect("defaults").is_empty());
}

#[test]
fn a_vm_template_is_checked_under_its_own_path_and_memory_is_not_required() {
    let mut vm = seed_vm("v1-testvm.yaml");
    let spec = vm.spec.template.spec.as_mut().expect("template");
    spec.domain.resources = None;
    spec.domain.devices.disks[0].name = "elsewhere".into();
    let causes = validation::vm(&vm, &ClusterConfig::default()).expect("defaults");
    assert_eq!(
        fields(&causes),
        BTreeSet::from(["spec.template.spec.domain.devices.disks[0].name".to_string()]),
        "{causes:#?}"
    );
}

#[test]
fn volume_sources_this_cluster_lacks_are_refused_by_name() {
    let cfg = ClusterConfig {
        supported_volume_sources: Some(
            ["containerDisk", "cloudInitNoCloud"]
                .map(String::from)
                .into(),
        ),
        ..ClusterConfig::default()
    };
    let mut vm = seed_vm("v1-testvm.yaml");
    assert!(validation::vm(&vm, &cfg).expect("defaults").is_empty());
    let spec = vm.spec.template.spec.as_mut().expect("template");
    spec.volumes[1] = serde_json::from_value(
        serde_json::json!({"name": "cloudinitdisk", "hostDisk": {"path": "/x", "type": "Disk"}}),
    )
    .expect("a volume");
    let causes = validation::vm(&vm, &cfg).expect("defaults");
    let c = causes
        .iter()
        .find(|c| c.field == "spec.template.spec.volumes[1].hostDisk")
        .expect("named");
    assert_eq!(
        c.message,
        "hostDisk volumes are not supported by this cluster (supported: cloudInitNoCloud, containerDisk)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Defaulting twice gives what defaulting once gave; validation of anything never panics.
    #[test]
    fn defaulting_is_idempotent(body in {
        let crd = kubevirt_api::crd::all().into_iter().find(|c| c.spec.names.kind == "VirtualMachineInstance").expect("VMI CRD");
        common::sparse(&common::own_schema(&crd).1)
    }) {
        let value = common::with_header("kubevirt.io/v1", "VirtualMachineInstance", body);
        let Ok(Object::VirtualMachineInstance(vmi)) = manifest::from_value(value, 0, Strictness::Strict) else {
            return Err(TestCaseError::fail("generated VMI must decode"));
        };
        let cfg = ClusterConfig::default();
        let mut once = (*vmi).clone();
        if defaults::vmi(&mut once, &cfg, UUID, &now()).is_ok() {
            let mut twice = once.clone();
            prop_assert!(defaults::vmi(&mut twice, &cfg, UUID, &now()).is_ok());
            prop_assert_eq!(&once, &twice);
            let _ = validation::vmi_create(&once, &cfg);
        }
    }
}

#[test]
fn cloud_init_data_is_checked() {
    let mut vm = seed_vm("v1-testvm.yaml");
    let spec = vm.spec.template.spec.as_mut().expect("template");
    spec.volumes[1] = serde_json::from_value(serde_json::json!({
        "name": "cloudinitdisk",
        "cloudInitNoCloud": {"userData": "#cloud-config", "userDataBase64": "not base64!"}
    }))
    .expect("a volume");
    let causes = validation::vm(&vm, &ClusterConfig::default()).expect("defaults");
    let messages: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "spec.template.spec.volumes[1].cloudInitNoCloud.userDataBase64 is not a valid base64 value.",
            "spec.template.spec.volumes[1].cloudInitNoCloud must have only one userdatasource set."
        ]
    );
}
