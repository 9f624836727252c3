//! Our real virt-api behind the embedded API server: its webhook configurations (URL form) are
//! registered, the CRDs applied, and kubectl sees its validation and defaulting as on a real
//! cluster.

mod common;

use std::sync::Arc;

use common::{KUBECTL_133, Server, repo_root};
use serde_json::{Value, json};

struct VirtApi {
    base: String,
    ca: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for VirtApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_virt_api() -> VirtApi {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let pki = kubevirt_https::SelfSigned::generate("virt-api-ca", &["127.0.0.1"]).expect("pki");
    let router = virt_api::server::router(Arc::new(virt_api::server::Shared::default()));
    let task = kubevirt_https::serve(listener, pki.server_config().expect("tls"), router);
    VirtApi {
        base: format!("https://{addr}"),
        ca: pki.ca_pem,
        task,
    }
}

fn write_json(s: &Server, name: &str, v: &Value) -> String {
    let path = s.dir.join(name);
    std::fs::write(&path, v.to_string()).expect("write");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn virt_api_webhooks_validate_and_default() {
    let api = start_virt_api().await;
    let s = Server::start();
    let k = KUBECTL_133;
    let crds = repo_root().join("deploy/crds");
    s.ok(k, &["apply", "-f", crds.to_str().expect("path")]);
    let target = virt_api::webhooks::Target::Url(api.base.clone());
    let mut m = serde_json::to_value(virt_api::webhooks::mutating(&target, &api.ca)).expect("json");
    m["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    m["kind"] = json!("MutatingWebhookConfiguration");
    let mut v =
        serde_json::to_value(virt_api::webhooks::validating(&target, &api.ca)).expect("json");
    v["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    v["kind"] = json!("ValidatingWebhookConfiguration");
    s.ok(k, &["apply", "-f", &write_json(&s, "mutating.json", &m)]);
    s.ok(k, &["apply", "-f", &write_json(&s, "validating.json", &v)]);

    // Running and RunStrategy together: refused by virtualmachine-validator, as upstream.
    let vm = include_str!("data/testvm.yaml").replace(
        "  running: false\n",
        "  running: false\n  runStrategy: Always\n",
    );
    let path = s.dir.join("both.yaml");
    std::fs::write(&path, vm).expect("write");
    let out = s.kubectl(
        k,
        &["apply", "-n", "default", "-f", path.to_str().expect("path")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // The Status is the webhook's (422 Invalid with causes), so kubectl prints it as it prints
    // any Invalid error: the causes after "The request is invalid".
    assert!(
        stderr.contains(
            "The request is invalid: spec.running: Running and RunStrategy are mutually exclusive"
        ),
        "{stderr}"
    );
    // Its message is upstream's: the webhook's name, then its message.
    let client = s.client().await;
    let vms: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
        client,
        "default",
        &kube::discovery::ApiResource {
            group: "kubevirt.io".into(),
            version: "v1".into(),
            api_version: "kubevirt.io/v1".into(),
            kind: "VirtualMachine".into(),
            plural: "virtualmachines".into(),
        },
    );
    let doc: Value = serde_json::from_str(&s.ok(
        k,
        &[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-n",
            "default",
            "-f",
            path.to_str().expect("path"),
        ],
    ))
    .expect("json");
    let obj: kube::core::DynamicObject = serde_json::from_value(doc).expect("object");
    match vms.create(&Default::default(), &obj).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.reason, "Invalid");
            assert!(
                s.message.starts_with("admission webhook \"virtualmachine-validator.kubevirt.io\" denied the request: Running and RunStrategy are mutually exclusive"),
                "{}", s.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    s.fails(k, &["get", "vm", "testvm", "-n", "default"]);

    // A valid VM is created and defaulted by the mutator.
    let ok = s.dir.join("vm.yaml");
    std::fs::write(&ok, include_str!("data/testvm.yaml")).expect("write");
    s.ok(
        k,
        &["apply", "-n", "default", "-f", ok.to_str().expect("path")],
    );
    let vm: Value =
        serde_json::from_str(&s.ok(k, &["get", "vm", "testvm", "-n", "default", "-o", "json"]))
            .expect("json");
    assert!(
        vm.pointer("/spec/template/spec/domain/firmware/uuid")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty()),
        "{vm}"
    );

    // A VMI gets defaulted: Pending, with a firmware UUID.
    let vmi = json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "testvmi", "namespace": "default"},
        "spec": {"domain": {"devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}]},
                            "resources": {"requests": {"memory": "64M"}}},
                 "volumes": [{"name": "containerdisk", "containerDisk": {"image": "quay.io/kubevirt/cirros-container-disk-demo"}}]}
    });
    s.ok(k, &["create", "-f", &write_json(&s, "vmi.json", &vmi)]);
    let got: Value =
        serde_json::from_str(&s.ok(k, &["get", "vmi", "testvmi", "-n", "default", "-o", "json"]))
            .expect("json");
    assert_eq!(
        got.pointer("/status/phase"),
        Some(&json!("Pending")),
        "{got}"
    );
    assert!(
        got.pointer("/spec/domain/firmware/uuid")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty()),
        "{got}"
    );
    // A user may not change a VMI's spec (virtualmachineinstances-update-validator).
    let err = s.fails(
        k,
        &[
            "patch",
            "vmi",
            "testvmi",
            "-n",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"domain":{"resources":{"requests":{"memory":"128M"}}}}}"#,
        ],
    );
    assert!(err.contains("update of VMI object is restricted"), "{err}");
}
