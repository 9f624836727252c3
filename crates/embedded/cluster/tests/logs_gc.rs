//! `kubectl logs` through the API server to the embedded kubelet's log endpoint (container
//! choice, tail, previous, follow), and garbage collection across resources (a VM owns its VMI,
//! the VMI its pod) with each propagation policy and `blockOwnerDeletion`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use common::{KUBECTL_133, Server, repo_root};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::{Value, json};

fn apply(s: &Server, name: &str, doc: &Value) {
    let path = s.dir.join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).expect("write manifest");
    s.ok(KUBECTL_133, &["apply", "-f", path.to_str().expect("path")]);
}

/// Lines as the kubelet writes container logs (CRI format).
fn cri(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("2026-01-01T00:00:00.000000000Z stdout F {l}\n"))
        .collect()
}

/// The output has exactly these lines (each possibly behind the kubelet's record prefix).
fn lines_are(out: &str, want: &[&str]) {
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), want.len(), "{out:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.ends_with(w), "{out:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_logs_through_the_kubelet() {
    let s = Server::start();
    let k = KUBECTL_133;
    // A kubelet log endpoint over a kubelet root we fill by hand.
    let root = s.dir.join("kubelet-root");
    let index: kubevirt_embedded_kubelet::logs::PodIndex = Arc::new(RwLock::new(HashMap::new()));
    let (addr, task) = kubevirt_embedded_kubelet::logs::serve(
        "127.0.0.1:0".parse().expect("addr"),
        kubevirt_embedded_kubelet::logs::router(root.clone(), index.clone()),
    )
    .await
    .expect("kubelet endpoint");
    apply(
        &s,
        "node",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}}}}),
    );
    apply(
        &s,
        "pod",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                "spec": {"nodeName": "node1", "containers": [{"name": "main", "image": "busybox"},
                                                            {"name": "side", "image": "busybox"}]}}),
    );
    let uid = s.ok(k, &["get", "pod", "web", "-o", "jsonpath={.metadata.uid}"]);
    index
        .write()
        .expect("index")
        .insert(("default".into(), "web".into()), uid.clone());
    let pod_dir = root.join("pods").join(&uid);
    let logs = pod_dir.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    std::fs::write(logs.join("main.log"), cri(&["one", "two", "three"])).expect("log");
    std::fs::write(logs.join("main.previous.log"), cri(&["before the restart"])).expect("log");
    std::fs::write(logs.join("side.log"), cri(&["side car"])).expect("log");

    // kubectl picks the first container itself; the API asks for one.
    lines_are(&s.ok(k, &["logs", "web"]), &["one", "two", "three"]);
    let err = s.fails(
        k,
        &["get", "--raw", "/api/v1/namespaces/default/pods/web/log"],
    );
    assert!(
        err.contains("a container name must be specified for pod web, choose one of: [main side]"),
        "{err}"
    );
    lines_are(
        &s.ok(k, &["logs", "web", "-c", "main"]),
        &["one", "two", "three"],
    );
    lines_are(&s.ok(k, &["logs", "web", "-c", "side"]), &["side car"]);
    lines_are(
        &s.ok(k, &["logs", "web", "-c", "main", "--tail=2"]),
        &["two", "three"],
    );
    lines_are(
        &s.ok(k, &["logs", "web", "-c", "main", "--previous"]),
        &["before the restart"],
    );
    let err = s.fails(k, &["logs", "web", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );

    // Follow: the container is running (an attempt without an exit record); appended lines
    // stream through as they come.
    std::fs::create_dir_all(pod_dir.join("containers/main/1")).expect("attempt");
    let mut child = s
        .kubectl_cmd(k, &["logs", "-f", "web", "-c", "main", "--tail=1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let recv = |what: &str| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {what} line"))
    };
    assert!(recv("tail").ends_with("three"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("main.log"))
        .expect("open log");
    f.write_all(cri(&["four"]).as_bytes()).expect("append");
    assert!(recv("followed").ends_with("four"));
    let _ = child.kill();
    let _ = child.wait();
    task.abort();

    // An unbound pod has no logs yet.
    apply(
        &s,
        "pending",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pending", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    );
    let err = s.fails(k, &["logs", "pending"]);
    assert!(
        err.contains("pod pending does not have a host assigned"),
        "{err}"
    );
}

/// A kubelet stand-in for `/exec`: answers the websocket with what an exec of `echo` prints
/// (channel protocol v5: stdout on stream 1, then a Success status on stream 3), recording the
/// request it got.
async fn fake_exec(
    State(seen): State<Arc<std::sync::Mutex<Vec<String>>>>,
    mut req: axum::extract::Request,
) -> axum::response::Response {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    seen.lock().expect("lock").push(req.uri().to_string());
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let proto = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|p| p.starts_with("v5.channel"))
        })
        .unwrap_or("v5.channel.k8s.io")
        .to_string();
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(up),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let mut out = vec![1u8];
        out.extend_from_slice(b"hello from the kubelet\n");
        let _ = ws.send(Message::binary(out)).await;
        let mut status = vec![3u8];
        status.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
        let _ = ws.send(Message::binary(status)).await;
        let _ = ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    });
    axum::response::Response::builder()
        .status(101)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-protocol", proto)
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
        )
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_through_the_kubelet() {
    let s = Server::start();
    let k = KUBECTL_133;
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let router = axum::Router::new()
        .route(
            "/exec/{ns}/{pod}/{container}",
            axum::routing::get(fake_exec),
        )
        .with_state(seen.clone());
    let (addr, task) =
        kubevirt_embedded_kubelet::logs::serve("127.0.0.1:0".parse().expect("addr"), router)
            .await
            .expect("kubelet endpoint");
    apply(
        &s,
        "node",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}}}}),
    );
    apply(
        &s,
        "pod",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                "spec": {"nodeName": "node1", "containers": [{"name": "main", "image": "busybox"}]}}),
    );
    let out = s.ok(k, &["exec", "web", "--", "echo", "hello"]);
    assert_eq!(out, "hello from the kubelet\n");
    let uri = seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    assert!(
        uri.starts_with("/exec/default/web/main?") && uri.contains("command=echo&command=hello"),
        "{uri}"
    );
    task.abort();
}

fn vm_api(client: kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client,
        "default",
        &ApiResource {
            group: "kubevirt.io".into(),
            version: "v1".into(),
            api_version: "kubevirt.io/v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        },
    )
}

fn owner_ref(o: &DynamicObject, kind: &str, block: bool) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": kind, "name": o.metadata.name,
           "uid": o.metadata.uid, "controller": true, "blockOwnerDeletion": block})
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A VM, its VMI (owned by the VM) and the VMI's pod (owned by the VMI), plus a ConfigMap the
/// VM owns without blocking its deletion and held by a finalizer.
async fn family(c: &kube::Client, name: &str) -> (DynamicObject, DynamicObject) {
    let vms = vm_api(c.clone(), "VirtualMachine", "virtualmachines");
    let vmis = vm_api(
        c.clone(),
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    let vm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name},
        "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}}}}}}))
    .expect("vm");
    let vm = vms.create(&PostParams::default(), &vm).await.expect("vm");
    let vmi: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "ownerReferences": [owner_ref(&vm, "VirtualMachine", true)]},
        "spec": {"domain": {"devices": {}}}}))
    .expect("vmi");
    let vmi = vmis
        .create(&PostParams::default(), &vmi)
        .await
        .expect("vmi");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("virt-launcher-{name}"),
                     "ownerReferences": [owner_ref(&vmi, "VirtualMachineInstance", true)],
                     "finalizers": ["test.kubevirt-rs.io/hold"]},
        "spec": {"containers": [{"name": "compute", "image": "virt-launcher"}]}}))
    .expect("pod");
    Api::<Pod>::default_namespaced(c.clone())
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-extra"),
                     "ownerReferences": [owner_ref(&vm, "VirtualMachine", false)],
                     "finalizers": ["test.kubevirt-rs.io/hold"]}}))
    .expect("cm");
    Api::<ConfigMap>::default_namespaced(c.clone())
        .create(&PostParams::default(), &cm)
        .await
        .expect("cm");
    (vm, vmi)
}

async fn release<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let _ = api
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_collection_across_resources() {
    let s = Server::start();
    let k = KUBECTL_133;
    let crds = repo_root().join("deploy/crds");
    s.ok(k, &["apply", "-f", crds.to_str().expect("path")]);
    let c = s.client().await;
    let vms = vm_api(c.clone(), "VirtualMachine", "virtualmachines");
    let vmis = vm_api(
        c.clone(),
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());

    // Foreground: the VM stays (foregroundDeletion) until its blocking dependents are gone,
    // down the chain; the non-blocking ConfigMap is deleted but does not hold the VM.
    family(&c, "fg").await;
    vms.delete("fg", &DeleteParams::foreground())
        .await
        .expect("delete");
    eventually("the pod to be marked for deletion", || async {
        pods.get("virt-launcher-fg")
            .await
            .is_ok_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    let vm = vms.get("fg").await.expect("the VM waits");
    assert!(vm.metadata.deletion_timestamp.is_some());
    assert!(
        vm.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    let vmi = vmis.get("fg").await.expect("the VMI waits for its pod");
    assert!(
        vmi.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    eventually("the extra ConfigMap to be marked", || async {
        cms.get("fg-extra")
            .await
            .is_ok_and(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    release(&pods, "virt-launcher-fg").await;
    eventually("the VM to go after its VMI and pod", || async {
        vms.get_opt("fg").await.ok().flatten().is_none()
    })
    .await;
    assert!(vmis.get_opt("fg").await.expect("get").is_none());
    assert!(
        pods.get_opt("virt-launcher-fg")
            .await
            .expect("get")
            .is_none()
    );
    // The non-blocking dependent did not hold the VM: it is still there, held by its finalizer.
    assert!(cms.get_opt("fg-extra").await.expect("get").is_some());
    release(&cms, "fg-extra").await;

    // Background: the VM goes at once, then its dependents.
    family(&c, "bg").await;
    vms.delete("bg", &DeleteParams::background())
        .await
        .expect("delete");
    assert!(vms.get_opt("bg").await.expect("get").is_none());
    eventually("the VMI to be collected", || async {
        vmis.get_opt("bg").await.ok().flatten().is_none()
    })
    .await;
    eventually("the pod to be marked", || async {
        pods.get("virt-launcher-bg")
            .await
            .is_ok_and(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    release(&pods, "virt-launcher-bg").await;
    release(&cms, "bg-extra").await;
    eventually("the pod and ConfigMap to go", || async {
        pods.get_opt("virt-launcher-bg")
            .await
            .ok()
            .flatten()
            .is_none()
            && cms.get_opt("bg-extra").await.ok().flatten().is_none()
    })
    .await;

    // Orphan: the VM goes, its dependents stay without the reference to it.
    let (_, vmi) = family(&c, "or").await;
    vms.delete("or", &DeleteParams::orphan())
        .await
        .expect("delete");
    assert!(vms.get_opt("or").await.expect("get").is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = vmis.get("or").await.expect("VMI kept");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    assert!(kept.metadata.deletion_timestamp.is_none());
    let pod = pods.get("virt-launcher-or").await.expect("pod kept");
    // The pod's owner (the VMI) still exists: its reference stays.
    assert_eq!(
        pod.metadata.owner_references.unwrap_or_default()[0].uid,
        vmi.metadata.uid.clone().unwrap_or_default()
    );
    let cm = cms.get("or-extra").await.expect("ConfigMap kept");
    assert!(cm.metadata.owner_references.unwrap_or_default().is_empty());
    // kubectl's --cascade flags map onto the same policies.
    s.ok(k, &["delete", "vmi", "or", "--cascade=orphan"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pods.get_opt("virt-launcher-or")
            .await
            .expect("get")
            .is_some()
    );
}
