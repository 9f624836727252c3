//! The scheduler against the embedded API server: binds pods honouring nodeSelector, and marks
//! a pod that fits nowhere Unschedulable with kube-scheduler's message.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

struct Cluster {
    client: Client,
    _running: kubevirt_embedded_apiserver::Running,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let running = kubevirt_embedded_apiserver::start(kubevirt_embedded_apiserver::Config::new(
        dir.path(),
        addr,
    ))
    .await
    .expect("start apiserver");
    let client = kubevirt_embedded_scheduler::client_from_kubeconfig(&running.kubeconfig)
        .await
        .expect("client");
    Cluster {
        client,
        _running: running,
        _dir: dir,
    }
}

async fn node(client: &Client, name: &str, labels: serde_json::Value, cpu: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &n)
        .await
        .expect("create node");
    let status = json!({"status": {"capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}});
    nodes
        .patch_status(name, &Default::default(), &kube::api::Patch::Merge(status))
        .await
        .expect("node status");
}

async fn wait_for(pods: &Api<Pod>, name: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    for _ in 0..200 {
        if let Ok(p) = pods.get(name).await
            && f(&p)
        {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for pod {name}: {:?}",
        pods.get(name).await
    );
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

#[tokio::test]
async fn binds_by_selector_and_reports_unschedulable() {
    let c = cluster().await;
    node(
        &c.client,
        "n1",
        json!({"kubernetes.io/hostname": "n1", "disk": "ssd"}),
        "2",
    )
    .await;
    node(
        &c.client,
        "n2",
        json!({"kubernetes.io/hostname": "n2", "disk": "hdd"}),
        "2",
    )
    .await;
    let sched = tokio::spawn(kubevirt_embedded_scheduler::run(
        c.client.clone(),
        Duration::from_millis(300),
    ));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let container = json!([{"name": "c", "image": "kubevirt-rs/testprog:latest",
        "resources": {"requests": {"cpu": "1500m"}}}]);
    pods.create(
        &PostParams::default(),
        &pod(
            "on-hdd",
            json!({"nodeSelector": {"disk": "hdd"}, "containers": container}),
        ),
    )
    .await
    .expect("create");
    let p = wait_for(&pods, "on-hdd", |p| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some()
    })
    .await;
    assert_eq!(p.spec.and_then(|s| s.node_name).as_deref(), Some("n2"));

    // n2's CPU is taken, n1 does not match: nowhere to go.
    pods.create(
        &PostParams::default(),
        &pod(
            "second",
            json!({"nodeSelector": {"disk": "hdd"}, "containers": container}),
        ),
    )
    .await
    .expect("create");
    let p = wait_for(&pods, "second", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.reason.as_deref() == Some("Unschedulable"))
            })
    })
    .await;
    let cond = p
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"))
        .expect("condition");
    assert_eq!(cond.status, "False");
    assert_eq!(
        cond.message.as_deref(),
        Some(
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector."
        )
    );

    // Not ours: another scheduler's pod stays pending.
    pods.create(
        &PostParams::default(),
        &pod(
            "other",
            json!({"schedulerName": "someone-else", "containers": container}),
        ),
    )
    .await
    .expect("create");

    // Room appears once the first pod is gone; a new node with room also works.
    node(&c.client, "n3", json!({"disk": "hdd"}), "4").await;
    let p = wait_for(&pods, "second", |p| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some()
    })
    .await;
    assert_eq!(p.spec.and_then(|s| s.node_name).as_deref(), Some("n3"));
    let other = pods.get("other").await.expect("get");
    assert!(other.spec.and_then(|s| s.node_name).is_none());
    sched.abort();
}

#[tokio::test]
async fn many_pods_never_overcommit() {
    let c = cluster().await;
    node(&c.client, "a", json!({}), "2").await;
    node(&c.client, "b", json!({}), "2").await;
    let sched = tokio::spawn(kubevirt_embedded_scheduler::run(
        c.client.clone(),
        Duration::from_millis(300),
    ));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for i in 0..6 {
        pods.create(
            &PostParams::default(),
            &pod(
                &format!("p{i}"),
                json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}),
            ),
        )
        .await
        .expect("create");
    }
    let mut bound = std::collections::BTreeMap::<String, usize>::new();
    let mut unschedulable = 0;
    for i in 0..6 {
        let p = wait_for(&pods, &format!("p{i}"), |p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some()
                || p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.reason.as_deref() == Some("Unschedulable"))
                    })
        })
        .await;
        match p.spec.and_then(|s| s.node_name) {
            Some(n) => *bound.entry(n).or_default() += 1,
            None => unschedulable += 1,
        }
    }
    assert_eq!(bound.get("a"), Some(&2));
    assert_eq!(bound.get("b"), Some(&2));
    assert_eq!(unschedulable, 2);
    sched.abort();
}

#[tokio::test]
async fn a_node_whose_lease_expired_goes_not_ready_and_unreachable() {
    use k8s_openapi::api::coordination::v1::Lease;
    let c = cluster().await;
    node(&c.client, "gone", json!({}), "2").await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .patch_status(
            "gone",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})),
        )
        .await
        .expect("ready");
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "gone"},
        "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 40, "renewTime": "2020-01-01T00:00:00.000000Z"}}))
    .expect("lease");
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("lease");
    kubevirt_embedded_scheduler::nodelifecycle::check(&c.client, Duration::from_secs(40))
        .await
        .expect("check");
    let n = nodes.get("gone").await.expect("node");
    let ready = n
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("Unknown", Some("NodeStatusUnknown"))
    );
    let taints: Vec<String> = n
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    assert_eq!(
        taints,
        vec![
            "node.kubernetes.io/unreachable:NoSchedule",
            "node.kubernetes.io/unreachable:NoExecute"
        ]
    );
}
