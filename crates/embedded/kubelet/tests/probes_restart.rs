//! Probes (HTTP readiness and liveness, exec, TCP, startup), and kubelet restarts: a stopped
//! kubelet leaves its pods running, marks its Node NotReady with the unreachable taints, and
//! the next kubelet re-adopts the pods.

mod common;

use std::time::Duration;

use common::{Cluster, TESTPROG, condition, container_status, phase};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_liveness_exec_tcp_and_startup_probes() {
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    let flag_dir = c.dir.path().join("flags");
    std::fs::create_dir_all(&flag_dir).expect("dir");
    let flag = flag_dir.join("unhealthy");
    c.create(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{
            "name": "web", "image": TESTPROG,
            "args": ["health-file", "/flags/unhealthy", "serve", "8080"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "volumeMounts": [{"name": "flags", "mountPath": "/flags"}],
            "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 10},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
        }, {
            "name": "exec", "image": TESTPROG, "args": ["hang"],
            "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "test -e /flags/unhealthy"]}, "periodSeconds": 1},
            "volumeMounts": [{"name": "flags", "mountPath": "/flags"}]
        }],
        "volumes": [{"name": "flags", "hostPath": {"path": flag_dir.display().to_string()}}]}
    }))
    .await;
    // web becomes ready; exec is not ready (its file is missing) so the pod is not Ready.
    let p = c
        .wait("web", 30, |p| {
            container_status(p, "web").is_some_and(|s| s.ready)
        })
        .await;
    assert_eq!(phase(&p), "Running");
    let ready = condition(&p, "Ready").expect("Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [exec]")
    );
    assert_eq!(
        container_status(&p, "web").and_then(|s| s.started),
        Some(true)
    );
    // The file makes exec ready and web unhealthy: web is restarted by its liveness probe.
    std::fs::write(&flag, "").expect("flag");
    let p = c
        .wait("web", 30, |p| {
            container_status(p, "web").is_some_and(|s| s.restart_count >= 1)
        })
        .await;
    assert!(
        container_status(&p, "exec").is_some_and(|s| s.ready) || {
            let p = c
                .wait("web", 10, |p| {
                    container_status(p, "exec").is_some_and(|s| s.ready)
                })
                .await;
            container_status(&p, "exec").is_some_and(|s| s.ready)
        }
    );
    // Healthy again: the restarted container becomes ready and stays up.
    std::fs::remove_file(&flag).expect("unflag");
    c.wait("web", 30, |p| {
        container_status(p, "web").is_some_and(|s| s.ready)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_leaves_pods_running_and_readopts_them() {
    let mut c = Cluster::start().await;
    let node = c.add_node(&[]).await;
    c.create(json!({"metadata": {"name": "long"}, "spec": {"terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["term-grace", "0.2", "echo", "started", "serve", "8080"],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}))
    .await;
    let p = c
        .wait("long", 30, |p| {
            condition(p, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    let id = container_status(&p, "main")
        .and_then(|s| s.container_id)
        .expect("container id");
    let pid: i32 = id.trim_start_matches("kvrs://").parse().expect("pid");
    let ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("ip");

    // A graceful stop: the pod keeps running; the node goes NotReady with the taints.
    let k = c.nodes[0].kubelet.take().expect("kubelet");
    k.stop().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let n = nodes.get(&node).await.expect("node");
    let taints: Vec<String> = n
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    assert!(
        taints.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string()),
        "{taints:?}"
    );
    assert!(
        taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string()),
        "{taints:?}"
    );
    let ready = n
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status).as_deref(), Some("Unknown"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container died with the kubelet"
    );

    // The next kubelet adopts it: same container, no restart, still ready; the node is Ready.
    c.start_kubelet(0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = c.pods().get("long").await.expect("pod");
    let cs = container_status(&p, "main").expect("status");
    assert_eq!(cs.container_id.as_deref(), Some(id.as_str()));
    assert_eq!(cs.restart_count, 0);
    assert!(cs.ready);
    assert_eq!(
        p.status.and_then(|s| s.pod_ip).as_deref(),
        Some(ip.as_str())
    );
    let n = nodes.get(&node).await.expect("node");
    assert!(n.spec.and_then(|s| s.taints).unwrap_or_default().is_empty());
    // A crash (no goodbye) also leaves it running; the adopted pod still terminates gracefully.
    let k = c.nodes[0].kubelet.take().expect("kubelet");
    k.abort();
    c.start_kubelet(0).await;
    c.pods()
        .delete("long", &DeleteParams::default())
        .await
        .expect("delete");
    c.wait_gone("long", 15).await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            tokio::time::sleep(Duration::from_millis(300)).await;
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_the_kubelet_was_down_is_cleaned_up() {
    let mut c = Cluster::start().await;
    let node = c.add_node(&[]).await;
    c.create(json!({"metadata": {"name": "orphan"}, "spec": {
        "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"]}]}}))
        .await;
    let p = c.wait("orphan", 30, |p| phase(p) == "Running").await;
    let uid = p.metadata.uid.clone().expect("uid");
    let pid: i32 = container_status(&p, "main")
        .and_then(|s| s.container_id)
        .and_then(|id| id.trim_start_matches("kvrs://").parse().ok())
        .expect("pid");
    c.nodes[0].kubelet.take().expect("kubelet").abort();
    // Force-deleted while no kubelet watches (as `kubectl delete --force --grace-period=0`).
    c.pods()
        .delete(
            "orphan",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .expect("delete");
    c.wait_gone("orphan", 10).await;
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    c.start_kubelet(0).await;
    let pod_dir = c
        .dir
        .path()
        .join("nodes")
        .join(&node)
        .join("kubelet/pods")
        .join(&uid);
    let netns = std::path::Path::new("/run/netns").join(format!(
        "kvrs-{node}-{}",
        uid.replace('-', "").chars().take(8).collect::<String>()
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pod_dir.exists()
        || netns.exists()
        || std::path::Path::new(&format!("/proc/{pid}")).exists()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan was not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
