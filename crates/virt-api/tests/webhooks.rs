//! The webhook endpoints answer AdmissionReviews as upstream's virt-api does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::config::ClusterConfig;
use serde_json::{Value, json};
use virt_api::admission::{Endpoint, Inputs, review};

fn vm() -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "testvm", "namespace": "default"},
        "spec": {"runStrategy": "Halted", "template": {"spec": {
            "domain": {"devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}]},
                       "resources": {"requests": {"memory": "128Mi"}}},
            "volumes": [{"name": "containerdisk", "containerDisk": {"image": "127.0.0.1:5000/kubevirt-rs/guest:latest"}}]
        }}}
    })
}

fn request(
    kind: &str,
    resource: &str,
    operation: &str,
    object: Value,
    old: Value,
    user: &str,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "7d4b5a3c-0000-4000-8000-000000000001",
            "kind": {"group": "kubevirt.io", "version": "v1", "kind": kind},
            "resource": {"group": "kubevirt.io", "version": "v1", "resource": resource},
            "name": "testvm", "namespace": "default", "operation": operation,
            "userInfo": {"username": user},
            "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .expect("serializes")
}

fn call(endpoint: Endpoint, body: &[u8]) -> Value {
    let cfg = ClusterConfig::default();
    let mut n = 0;
    let mut new_uuid = || {
        n += 1;
        format!("00000000-0000-4000-8000-00000000000{n}")
    };
    let mut inputs = Inputs {
        cfg: &cfg,
        new_uuid: &mut new_uuid,
        now: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    };
    review(endpoint, body, &mut inputs)
}

fn patch_of(response: &Value) -> Value {
    use base64::Engine as _;
    let b64 = response["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("JSON patch")
}

#[test]
fn vm_mutator_sets_machine_and_firmware_identity_on_create() {
    let r = call(
        Endpoint::VmMutate,
        &request(
            "VirtualMachine",
            "virtualmachines",
            "CREATE",
            vm(),
            Value::Null,
            "alice",
        ),
    );
    assert_eq!(r["kind"], "AdmissionReview");
    assert_eq!(r["response"]["uid"], "7d4b5a3c-0000-4000-8000-000000000001");
    assert_eq!(r["response"]["allowed"], true);
    assert_eq!(r["response"]["patchType"], "JSONPatch");
    let patch = patch_of(&r);
    let spec = patch
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["path"] == "/spec"))
        .expect("a /spec op");
    let tpl = &spec["value"]["template"]["spec"];
    assert_eq!(tpl["domain"]["machine"]["type"], "q35");
    assert_eq!(tpl["architecture"], "amd64");
    assert_eq!(
        tpl["domain"]["firmware"]["uuid"],
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(
        tpl["domain"]["firmware"]["serial"],
        "00000000-0000-4000-8000-000000000002"
    );
}

#[test]
fn vm_validator_refuses_with_upstream_status() {
    let mut bad = vm();
    bad["spec"]["running"] = json!(true);
    bad["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["name"] = json!("missing");
    let r = call(
        Endpoint::VmValidate,
        &request(
            "VirtualMachine",
            "virtualmachines",
            "CREATE",
            bad,
            Value::Null,
            "alice",
        ),
    );
    let resp = &r["response"];
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 422);
    assert_eq!(resp["status"]["reason"], "Invalid");
    let causes = resp["status"]["details"]["causes"]
        .as_array()
        .expect("causes");
    let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
    assert!(fields.contains(&"spec.running"), "{causes:?}");
    assert!(
        fields.contains(&"spec.template.spec.domain.devices.disks[0].name"),
        "{causes:?}"
    );
    let message = resp["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Running and RunStrategy are mutually exclusive"),
        "{message}"
    );
}

#[test]
fn vm_validator_warns_about_running() {
    let mut v = vm();
    v["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("runStrategy");
    v["spec"]["running"] = json!(false);
    let r = call(
        Endpoint::VmValidate,
        &request(
            "VirtualMachine",
            "virtualmachines",
            "CREATE",
            v,
            Value::Null,
            "alice",
        ),
    );
    assert_eq!(r["response"]["allowed"], true);
    assert_eq!(
        r["response"]["warnings"][0],
        "spec.running is deprecated, please use spec.runStrategy instead."
    );
}

#[test]
fn vmi_mutator_defaults_and_vmi_validators_judge() {
    let vmi = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "testvm", "namespace": "default"},
        "spec": vm()["spec"]["template"]["spec"].clone()
    });
    let r = call(
        Endpoint::VmiMutate,
        &request(
            "VirtualMachineInstance",
            "virtualmachineinstances",
            "CREATE",
            vmi.clone(),
            Value::Null,
            "alice",
        ),
    );
    let patch = patch_of(&r);
    let mut defaulted = vmi.clone();
    for op in patch.as_array().expect("ops") {
        let member = op["path"]
            .as_str()
            .expect("path")
            .trim_start_matches('/')
            .to_string();
        defaulted[member] = op["value"].clone();
    }
    assert_eq!(defaulted["status"]["phase"], "Pending");
    assert_eq!(defaulted["spec"]["networks"][0]["name"], "default");
    let r = call(
        Endpoint::VmiValidateCreate,
        &request(
            "VirtualMachineInstance",
            "virtualmachineinstances",
            "CREATE",
            defaulted.clone(),
            Value::Null,
            "alice",
        ),
    );
    assert_eq!(r["response"]["allowed"], true, "{r}");

    let mut changed = defaulted.clone();
    changed["spec"]["domain"]["resources"]["requests"]["memory"] = json!("256Mi");
    let update = |user: &str| {
        call(
            Endpoint::VmiValidateUpdate,
            &request(
                "VirtualMachineInstance",
                "virtualmachineinstances",
                "UPDATE",
                changed.clone(),
                defaulted.clone(),
                user,
            ),
        )
    };
    let r = update("alice");
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(
        r["response"]["status"]["message"],
        "update of VMI object is restricted"
    );
    let r = update("system:serviceaccount:kubevirt:kubevirt-handler");
    assert_eq!(r["response"]["allowed"], true);
}

#[test]
fn garbage_is_an_invalid_review_not_a_panic() {
    let r = call(Endpoint::VmValidate, b"{not json");
    assert_eq!(r["response"]["allowed"], false);
    let r = call(
        Endpoint::VmMutate,
        &request(
            "VirtualMachine",
            "virtualmachines",
            "CREATE",
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "x"}, "spec": {"template": 5}}),
            Value::Null,
            "alice",
        ),
    );
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(r["response"]["status"]["code"], 400);
}
