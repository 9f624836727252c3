//! The manifests from the project's seed documents parse, default and validate as upstream
//! KubeVirt would treat them; the ones upstream would refuse are refused with a clear error.

use kubevirt_api::manifest::{self, ManifestError, Object, Strictness};

fn seed(name: &str) -> String {
    let path = format!("{}/tests/data/seeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn one_vm(name: &str) -> kubevirt_api::v1::VirtualMachine {
    let objects = manifest::parse(&seed(name), Strictness::Strict)
        .unwrap_or_else(|e| panic!("{name} must parse strictly: {e}"));
    assert_eq!(objects.len(), 1);
    match objects.into_iter().next() {
        Some(Object::VirtualMachine(vm)) => *vm,
        other => panic!("{name}: expected a VirtualMachine, got {other:?}"),
    }
}

#[test]
fn v1_testvm_parses_strictly_and_keeps_its_fields() {
    let vm = one_vm("v1-testvm.yaml");
    assert_eq!(vm.metadata.name.as_deref(), Some("testvm"));
    assert_eq!(vm.spec.running, Some(false));
    let value = serde_json::to_value(&vm).expect("serializes");
    let spec = &value["spec"]["template"]["spec"];
    assert_eq!(
        spec["domain"]["devices"]["disks"][0]["name"],
        "containerdisk"
    );
    assert_eq!(
        spec["domain"]["devices"]["disks"][0]["disk"]["bus"],
        "virtio"
    );
    assert_eq!(
        spec["domain"]["devices"]["interfaces"][0]["masquerade"],
        serde_json::json!({})
    );
    assert_eq!(spec["domain"]["machine"]["type"], "q35");
    assert_eq!(spec["domain"]["resources"]["requests"]["memory"], "64M");
    assert_eq!(spec["networks"][0]["pod"], serde_json::json!({}));
    assert_eq!(
        spec["volumes"][0]["containerDisk"]["image"],
        "quay.io/kubevirt/cirros-container-disk-demo"
    );
    assert_eq!(
        spec["volumes"][1]["cloudInitNoCloud"]["userDataBase64"],
        "SGkuXG4="
    );
    assert_eq!(spec["architecture"], "amd64");
}

#[test]
fn v1alpha3_testvm_is_served_and_decodes_like_v1() {
    let vm = one_vm("v1alpha3-testvm.yaml");
    let value = serde_json::to_value(&vm).expect("serializes");
    let spec = &value["spec"]["template"]["spec"];
    assert_eq!(
        spec["domain"]["devices"]["interfaces"][0]["bridge"],
        serde_json::json!({})
    );
    assert_eq!(
        spec["volumes"][0]["containerDisk"]["image"],
        "kubevirt/cirros-registry-disk-demo"
    );
}

#[test]
fn v1alpha1_vm_from_2018_is_refused_naming_version_and_fields() {
    let err = manifest::parse(&seed("v1alpha1-myvm-2018.yaml"), Strictness::Strict)
        .expect_err("kubevirt.io/v1alpha1 is long gone");
    let ManifestError::UnservedVersion(unserved) = &err else {
        panic!("expected UnservedVersion, got {err:?}");
    };
    let (api_version, fields) = (&unserved.api_version, &unserved.fields);
    assert_eq!(api_version, "kubevirt.io/v1alpha1");
    for f in [
        "spec.domain",
        "spec.volumes",
        "spec.terminationGracePeriodSeconds",
    ] {
        assert!(
            fields.iter().any(|x| x == f),
            "{f} should be named in {fields:?}"
        );
    }
    let text = err.to_string();
    assert!(
        text.contains("kubevirt.io/v1alpha1 is not served"),
        "{text}"
    );
    assert!(text.contains("kubevirt.io/v1"), "{text}");
    assert!(text.contains("spec.domain"), "{text}");
}

#[test]
fn the_malformed_vmi_sketch_is_a_syntax_error_not_a_panic() {
    let err = manifest::parse(&seed("vmi-containerdisk-sketch.yaml"), Strictness::Strict)
        .expect_err("the sketch is not valid YAML for a VMI");
    assert!(
        matches!(
            err,
            ManifestError::Syntax(_) | ManifestError::NotAnObject { .. }
        ),
        "{err:?}"
    );
}
