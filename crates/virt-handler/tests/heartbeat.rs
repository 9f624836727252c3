//! The heartbeat against the embedded API server: the node gets `kubevirt.io/schedulable=true`
//! and a fresh `kubevirt.io/heartbeat` stamp, again after virt-controller marked it
//! unschedulable, and the stamp advances with each beat.

mod common;

use std::time::Duration;

use common::{Cluster, eventually};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use virt_handler::heartbeat::{self, HEARTBEAT_ANNOTATION, SCHEDULABLE_LABEL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_stamps_the_node() {
    let c = Cluster::start().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": "node-hb"}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Timestamp::now();
    let task = tokio::spawn(heartbeat::run(
        c.client.clone(),
        "node-hb".into(),
        Duration::from_secs(1),
        async {
            let _ = stop_rx.await;
        },
    ));

    let first = eventually("the first heartbeat", || async {
        let n = nodes.get("node-hb").await.ok()?;
        let stamp = n.annotations().get(HEARTBEAT_ANNOTATION)?.clone();
        (n.labels().get(SCHEDULABLE_LABEL).map(String::as_str) == Some("true")).then_some(stamp)
    })
    .await;
    let first_t: Timestamp = first.parse().expect("RFC3339 heartbeat");
    assert!(
        first_t.as_second() >= started.as_second() - 1,
        "stamp {first} is older than the start {started}"
    );

    // virt-controller marks a silent node unschedulable; the next beat undoes it.
    nodes
        .patch(
            "node-hb",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {SCHEDULABLE_LABEL: "false"}}})),
        )
        .await
        .expect("mark unschedulable");
    let later = eventually("a later heartbeat marking the node schedulable", || async {
        let n = nodes.get("node-hb").await.ok()?;
        let stamp: Timestamp = n.annotations().get(HEARTBEAT_ANNOTATION)?.parse().ok()?;
        (stamp > first_t && n.labels().get(SCHEDULABLE_LABEL).map(String::as_str) == Some("true"))
            .then_some(stamp)
    })
    .await;
    assert!(later > first_t);

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("heartbeat stops on shutdown")
        .expect("heartbeat task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_node_is_an_error() {
    let c = Cluster::start().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let err = heartbeat::beat(&nodes, "no-such-node")
        .await
        .expect_err("no node to patch");
    assert!(err.to_string().contains("no-such-node"), "{err}");
}
