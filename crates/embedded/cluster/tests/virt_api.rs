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

/// A user's kubeconfig from `virt-cluster kubeconfig`.
fn user_kubeconfig(s: &Server, user: &str) -> std::path::PathBuf {
    let out = s.dir.join(format!("{user}.kubeconfig"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_virt-cluster"))
        .args(["kubeconfig", "--data-dir"])
        .arg(&s.dir)
        .args(["--user", user, "--out"])
        .arg(&out)
        .output()
        .expect("virt-cluster kubeconfig");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

async fn client_from(path: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// PUT of a VM subresource as `client`; the answer's status code and body.
async fn vm_action(client: &kube::Client, ns: &str, vm: &str, action: &str) -> (u16, String) {
    let req = axum::http::Request::put(format!(
        "/apis/subresources.kubevirt.io/v1/namespaces/{ns}/virtualmachines/{vm}/{action}"
    ))
    .header("content-type", "application/json")
    .body(b"{}".to_vec())
    .expect("request");
    match client.request_text(req).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Err(e) => panic!("{action}: {e}"),
    }
}

/// virt-api's `subresources.kubevirt.io` behind the API server: registered as an APIService
/// backed by the Service `kubevirt/virt-api` (Endpoints on loopback), acting with virt-api's
/// own least-privilege identity, while the API server authorizes each caller.
#[tokio::test(flavor = "multi_thread")]
async fn virt_api_subresources_through_aggregation() {
    let s = Server::start();
    let k = KUBECTL_133;
    let crds = repo_root().join("deploy/crds");
    s.ok(k, &["apply", "-f", crds.to_str().expect("path")]);
    for ns in ["kubevirt", "a"] {
        s.ok(k, &["create", "namespace", ns]);
    }
    // virt-api with its component identity (DATA/kubeconfigs/virt-api.kubeconfig).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let pki = kubevirt_https::SelfSigned::generate(
        "virt-api-ca",
        &["virt-api.kubevirt.svc", "127.0.0.1"],
    )
    .expect("pki");
    let own = client_from(&s.dir.join("kubeconfigs/virt-api.kubeconfig")).await;
    let router = virt_api::server::router(Arc::new(virt_api::server::Shared::default())).merge(
        virt_api::subresources::router(Arc::new(virt_api::subresources::Subresources {
            client: own,
            handler_tls: None,
            require_proxy_cert: false,
        })),
    );
    let task = kubevirt_https::serve(listener, pki.server_config().expect("tls"), router);
    use base64::Engine;
    let docs = [
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "virt-api", "namespace": "kubevirt"},
               "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "virt-api", "namespace": "kubevirt"},
               "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}),
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
               "metadata": {"name": "v1.subresources.kubevirt.io"},
               "spec": {"group": "subresources.kubevirt.io", "version": "v1",
                        "groupPriorityMinimum": 1000, "versionPriority": 15,
                        "service": {"namespace": "kubevirt", "name": "virt-api"},
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem)}}),
    ];
    for (i, d) in docs.iter().enumerate() {
        s.ok(
            k,
            &["apply", "-f", &write_json(&s, &format!("agg{i}.json"), d)],
        );
    }
    s.ok(
        k,
        &[
            "wait",
            "--for=condition=Available",
            "--timeout=30s",
            "apiservice/v1.subresources.kubevirt.io",
        ],
    );
    assert!(
        s.ok(k, &["api-versions"])
            .contains("subresources.kubevirt.io/v1")
    );
    let vm =
        include_str!("data/testvm.yaml").replace("  running: false\n", "  runStrategy: Halted\n");
    let path = s.dir.join("halted.yaml");
    std::fs::write(&path, vm).expect("write");
    s.ok(k, &["apply", "-n", "a", "-f", path.to_str().expect("path")]);
    s.ok(
        k,
        &[
            "create",
            "rolebinding",
            "dave",
            "-n",
            "a",
            "--clusterrole=kubevirt.io:edit",
            "--user=dave",
        ],
    );
    s.ok(
        k,
        &[
            "create",
            "rolebinding",
            "eve",
            "-n",
            "a",
            "--clusterrole=kubevirt.io:view",
            "--user=eve",
        ],
    );
    let dave = client_from(&user_kubeconfig(&s, "dave")).await;
    let eve = client_from(&user_kubeconfig(&s, "eve")).await;

    // A viewer may not start it: refused by the API server before virt-api is asked.
    let (code, msg) = vm_action(&eve, "a", "testvm", "start").await;
    assert_eq!(code, 403, "{msg}");
    assert_eq!(
        msg,
        "virtualmachines.subresources.kubevirt.io \"testvm\" is forbidden: User \"eve\" cannot update resource \"virtualmachines/start\" in API group \"subresources.kubevirt.io\" in the namespace \"a\""
    );
    // An editor may: virt-api changes the VM with its own identity.
    let (code, msg) = vm_action(&dave, "a", "testvm", "start").await;
    assert_eq!(code, 200, "{msg}");
    let rs = s.ok(
        k,
        &[
            "get",
            "vm",
            "testvm",
            "-n",
            "a",
            "-o",
            "jsonpath={.spec.runStrategy}",
        ],
    );
    assert_eq!(rs, "Always");
    task.abort();
}
