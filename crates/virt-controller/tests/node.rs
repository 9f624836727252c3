//! The node controller against the embedded API server: an instance on a node whose
//! virt-handler stopped heartbeating, with a dead launcher pod, goes Failed (NodeUnresponsive)
//! and the node is marked unschedulable; one on a heartbeating node is left alone.

mod common;

use std::time::Duration;

use common::{Cluster, eventually, yaml};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::json;
use virt_controller::controllers::Config;

/// An active instance on `node` with its launcher pod (dead on the node "dead"). Its phase is
/// Unknown (not final, which the VMI controller leaves alone), so only the node controller acts.
async fn stranded_vmi(c: &kube::Client, name: &str, node: &str) {
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    let vmi: VirtualMachineInstance = yaml(&format!(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
spec:
  domain:
    devices: {{}}
status:
  phase: Unknown
  nodeName: {node}
"#
    ));
    let vmi = vmis
        .create(&PostParams::default(), &vmi)
        .await
        .expect("create VMI");
    let uid = vmi.metadata.uid.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("virt-launcher-{name}"), "labels": {"kubevirt.io": "virt-launcher"},
            "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "name": name, "uid": uid, "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "compute", "image": "x"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let phase = if node == "dead" { "Failed" } else { "Running" };
    pods.patch_status(
        &format!("virt-launcher-{name}"),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": phase}})),
    )
    .await
    .expect("pod status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_a_silent_node_fail() {
    let config = Config {
        heartbeat_timeout: Duration::from_secs(60),
        node_recheck: Duration::from_secs(1),
        ..Default::default()
    };
    let cluster = Cluster::start_with(config).await;
    let c = cluster.client.clone();
    let nodes: Api<Node> = Api::all(c.clone());
    let old = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(600)).to_string();
    let fresh = jiff::Timestamp::now().to_string();
    for (name, stamp) in [("dead", old), ("alive", fresh)] {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"kubevirt.io/schedulable": "true"},
            "annotations": {"kubevirt.io/heartbeat": stamp}}}))
        .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
    }
    stranded_vmi(&c, "stranded", "dead").await;
    stranded_vmi(&c, "fine", "alive").await;
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    eventually("the stranded VMI to fail", || async {
        let v = vmis.get("stranded").await.ok()?;
        let s = v.status?;
        (s.phase() == "Failed" && s.reason.as_deref() == Some("NodeUnresponsive")).then_some(())
    })
    .await;
    eventually("the node to be unschedulable", || async {
        let n = nodes.get("dead").await.ok()?;
        (n.metadata
            .labels?
            .get("kubevirt.io/schedulable")
            .map(String::as_str)
            == Some("false"))
        .then_some(())
    })
    .await;
    let fine = vmis.get("fine").await.expect("vmi");
    assert_eq!(fine.status.unwrap().phase(), "Unknown");
    let alive = nodes.get("alive").await.expect("node");
    assert_eq!(
        alive.metadata.labels.unwrap()["kubevirt.io/schedulable"],
        "true"
    );
}
