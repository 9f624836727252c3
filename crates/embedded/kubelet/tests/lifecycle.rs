//! Pod lifecycle on one embedded node: Pending → Running → Succeeded/Failed, environment with
//! downward-API fields, logs from the kubelet's endpoint, restarts with back-off, graceful
//! termination, the Node and its Lease.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, TESTPROG, condition, container_status, phase};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_to_completion_with_env_logs_and_ip() {
    let mut c = Cluster::start().await;
    let node = c.add_node(&[]).await;
    let t0 = Instant::now();
    c.create(json!({
        "metadata": {"name": "hello", "labels": {"app": "x"}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": TESTPROG,
            "args": ["echo", "hello $(GREETING)", "env", "stderr", "to stderr", "sleep", "0.2", "echo", "the end", "exit", "0"],
            "env": [
                {"name": "GREETING", "value": "world"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
            ],
            "workingDir": "/tmp"
        }]}
    }))
    .await;
    let p = c.wait("hello", 30, |p| phase(p) == "Succeeded").await;
    eprintln!("create → Succeeded: {:?}", t0.elapsed());
    let s = p.status.clone().expect("status");
    let ip = s.pod_ip.clone().expect("podIP");
    assert!(ip.starts_with("10.244.1."), "{ip}");
    assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
    let cs = container_status(&p, "main").expect("container status");
    let t = cs.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("kvrs://"))
    );
    assert_eq!(
        condition(&p, "Ready").and_then(|c| c.reason).as_deref(),
        Some("PodCompleted")
    );
    let logs = c.logs(0, "hello", "main", "");
    // Without a client certificate of the cluster CA the kubelet does not answer.
    let anonymous = std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            &format!(
                "https://{}/containerLogs/default/hello/main",
                c.kubelet_addr(0)
            ),
        ])
        .output()
        .expect("curl");
    assert!(
        !anonymous.status.success() && anonymous.stdout.is_empty(),
        "{anonymous:?}"
    );
    assert!(logs.contains("hello world"), "{logs}");
    assert!(logs.contains("POD_NAME=hello"), "{logs}");
    assert!(logs.contains("POD_NS=default"), "{logs}");
    assert!(logs.contains(&format!("NODE={node}")), "{logs}");
    assert!(logs.contains(&format!("POD_IP={ip}")), "{logs}");
    assert!(logs.contains(&format!(
        "POD_UID={}",
        p.metadata.uid.clone().unwrap_or_default()
    )));
    assert!(logs.contains("to stderr"), "{logs}");
    assert_eq!(c.logs(0, "hello", "main", "tailLines=1").trim(), "the end");
    let stamped = c.logs(0, "hello", "main", "timestamps=true&tailLines=1");
    let (ts, line) = stamped.trim().split_once(' ').expect("timestamped line");
    assert_eq!(line, "the end");
    assert!(
        ts.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "{stamped}"
    );
    assert!(
        c.logs(0, "hello", "main", "sinceSeconds=3600")
            .contains("hello world")
    );
    assert_eq!(
        c.logs(0, "hello", "main", "sinceTime=2999-01-01T00:00:00Z"),
        ""
    );
    assert_eq!(c.logs(0, "hello", "main", "limitBytes=5").len(), 5);
    // The file on the node is in the CRI format.
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let file = c
        .dir
        .path()
        .join("nodes")
        .join(&node)
        .join("kubelet/pods")
        .join(&uid)
        .join("logs/main.log");
    let raw = std::fs::read_to_string(&file).expect("log file");
    assert!(
        raw.lines().any(|l| l.ends_with(" stdout F hello world")),
        "{raw}"
    );
    assert!(
        raw.lines().any(|l| l.ends_with(" stderr F to stderr")),
        "{raw}"
    );

    let nodes: Api<Node> = Api::all(c.client.clone());
    let n = nodes.get(&node).await.expect("node");
    let st = n.status.expect("node status");
    let ready = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True");
    assert_eq!(
        st.daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port),
        Some(c.kubelet_addr(0).port() as i32)
    );
    assert_eq!(
        n.metadata
            .labels
            .unwrap_or_default()
            .get("kubernetes.io/hostname"),
        Some(&node)
    );
    // Events for `kubectl describe`: the scheduler's and the kubelet's.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let mut reasons: Vec<String> = Vec::new();
    for _ in 0..50 {
        reasons = events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("hello"))
            .filter_map(|e| e.reason)
            .collect();
        if ["Scheduled", "Created", "Started"]
            .iter()
            .all(|r| reasons.iter().any(|x| x == r))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in ["Scheduled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "{r} missing from {reasons:?}"
        );
    }
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    assert!(
        leases
            .get(&node)
            .await
            .expect("lease")
            .spec
            .and_then(|s| s.renew_time)
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_restarts_and_back_off() {
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    c.create(
        json!({"metadata": {"name": "fails"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": TESTPROG, "args": ["exit", "3"]}]}}),
    )
    .await;
    c.create(json!({"metadata": {"name": "crashes"}, "spec": {"restartPolicy": "Always",
        "containers": [{"name": "main", "image": TESTPROG, "args": ["echo", "run", "exit", "1"]}]}}))
    .await;
    c.create(
        json!({"metadata": {"name": "badprog"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": TESTPROG, "args": ["no-such-step"]}]}}),
    )
    .await;
    let p = c.wait("fails", 30, |p| phase(p) == "Failed").await;
    let t = container_status(&p, "main")
        .and_then(|s| s.state)
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    // Always: restarted, then CrashLoopBackOff with the last termination kept.
    let p = c
        .wait("crashes", 40, |p| {
            container_status(p, "main").is_some_and(|s| {
                s.restart_count >= 2
                    && s.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
        })
        .await;
    assert_eq!(phase(&p), "Running");
    let cs = container_status(&p, "main").expect("status");
    assert_eq!(
        cs.last_state
            .and_then(|l| l.terminated)
            .map(|t| t.exit_code),
        Some(1)
    );
    let msg = cs
        .state
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
        .unwrap_or_default();
    assert!(
        msg.starts_with("back-off ")
            && msg.contains("restarting failed container=main pod=crashes_default"),
        "{msg}"
    );
    assert!(
        c.logs(0, "crashes", "main", "previous=true")
            .contains("run")
    );
    c.wait("badprog", 30, |p| phase(p) == "Failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_termination() {
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    c.create(json!({"metadata": {"name": "polite"}, "spec": {"terminationGracePeriodSeconds": 10,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["term-grace", "1", "echo", "up", "hang"]}]}}))
    .await;
    c.create(json!({"metadata": {"name": "stubborn"}, "spec": {"terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["ignore-term", "echo", "up", "hang"]}]}}))
    .await;
    c.create(
        json!({"metadata": {"name": "plain"}, "spec": {"terminationGracePeriodSeconds": 20,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"]}]}}),
    )
    .await;
    for name in ["polite", "stubborn", "plain"] {
        c.wait(name, 30, |p| phase(p) == "Running").await;
    }
    // Logs must be visible before the pod goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    c.pods()
        .delete("polite", &DeleteParams::default())
        .await
        .expect("delete");
    c.pods()
        .delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete");
    c.wait_gone("polite", 15).await;
    let polite = t0.elapsed();
    c.wait_gone("stubborn", 15).await;
    let stubborn = t0.elapsed();
    eprintln!("polite gone after {polite:?}, stubborn after {stubborn:?}");
    assert!(
        polite >= Duration::from_millis(900) && polite < Duration::from_secs(5),
        "{polite:?}"
    );
    assert!(
        stubborn >= Duration::from_secs(2) && stubborn < Duration::from_secs(6),
        "{stubborn:?}"
    );
}

/// Processes whose command line is exactly `sleep <secs>`.
fn sleepers(secs: &str) -> Vec<u32> {
    let want = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_that_left_the_container_die_with_the_pod() {
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    // A unique duration names the escapee among this machine's processes.
    let secs = format!("3600.{}", std::process::id());
    c.create(json!({"metadata": {"name": "forker"}, "spec": {"terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["detach", secs, "echo", "up", "hang"]}]}}))
    .await;
    c.wait("forker", 30, |p| phase(p) == "Running").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleepers(&secs).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the detached process never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.pods()
        .delete("forker", &DeleteParams::default())
        .await
        .expect("delete");
    c.wait_gone("forker", 15).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = sleepers(&secs);
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for pid in &left {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
            panic!("processes {left:?} outlived their pod");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pods_network_is_released_while_others_run() {
    let mut c = Cluster::start().await;
    let node = c.add_node(&[]).await;
    for name in ["first", "second"] {
        c.create(json!({"metadata": {"name": name}, "spec": {
            "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"]}]}}))
            .await;
        c.wait(name, 30, |p| phase(p) == "Running").await;
    }
    let first = c.pods().get("first").await.expect("pod");
    let uid = first.metadata.uid.clone().expect("uid");
    let veth = format!(
        "v{}",
        uid.replace('-', "").chars().take(8).collect::<String>()
    );
    let node_ns = format!("kvrs-{node}");
    let has_veth = || {
        std::process::Command::new("ip")
            .args(["-n", &node_ns, "link", "show", "dev", &veth])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(has_veth());
    c.pods()
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    c.wait_gone("first", 15).await;
    // "second" started while "first" existed; its mount namespace must not keep first's
    // network namespace (and so its veth and address) alive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while has_veth() {
        assert!(
            Instant::now() < deadline,
            "the deleted pod's veth {veth} is still on the bridge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its address is free again and the next pod gets it.
    let ip = first.status.and_then(|s| s.pod_ip).expect("ip");
    c.create(json!({"metadata": {"name": "third"}, "spec": {
        "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"]}]}}))
        .await;
    let third = c.wait("third", 30, |p| phase(p) == "Running").await;
    assert_eq!(third.status.and_then(|s| s.pod_ip), Some(ip));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_is_enforced_and_reported_as_oom_killed() {
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    let cgroups = kubevirt_embedded_kubelet::cgroup::Cgroups::detect_system("probe");
    let has_memory = match &cgroups {
        kubevirt_embedded_kubelet::cgroup::Cgroups::V2 { .. } => true,
        kubevirt_embedded_kubelet::cgroup::Cgroups::V1 { memory, .. } => memory.is_some(),
        kubevirt_embedded_kubelet::cgroup::Cgroups::Unavailable => false,
    };
    if !has_memory {
        eprintln!("no memory cgroup on this machine: limits are not enforced, nothing to test");
        return;
    }
    c.create(json!({"metadata": {"name": "hungry"}, "spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": TESTPROG, "args": ["alloc", "8", "echo", "small ok", "alloc", "256", "hang"],
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}]}}))
    .await;
    let p = c
        .wait("hungry", 30, |p| matches!(phase(p), "Failed" | "Succeeded"))
        .await;
    let t = container_status(&p, "main")
        .and_then(|s| s.state)
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
    assert!(c.logs(0, "hungry", "main", "").contains("small ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_memory_limits_land_in_the_pod_cgroup() {
    use kubevirt_embedded_kubelet::cgroup::Cgroups;
    let mut c = Cluster::start().await;
    let node = c.add_node(&[]).await;
    c.create(json!({"metadata": {"name": "limited"}, "spec": {"containers": [
        {"name": "a", "image": TESTPROG, "args": ["hang"], "resources": {"limits": {"cpu": "250m", "memory": "48Mi"}}},
        {"name": "b", "image": TESTPROG, "args": ["hang"], "resources": {"limits": {"cpu": "250m", "memory": "16Mi"}}}]}}))
    .await;
    let p = c.wait("limited", 30, |p| phase(p) == "Running").await;
    let uid = p.metadata.uid.expect("uid");
    let pid: u32 = container_status(&c.pods().get("limited").await.expect("pod"), "a")
        .and_then(|s| s.container_id)
        .and_then(|id| id.trim_start_matches("kvrs://").parse().ok())
        .expect("pid");
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    match Cgroups::detect_system(&node) {
        Cgroups::V2 { base } => {
            let dir = base.join(format!("pod{uid}"));
            assert_eq!(
                std::fs::read_to_string(dir.join("memory.max"))
                    .expect("memory.max")
                    .trim(),
                (64u64 << 20).to_string()
            );
            assert_eq!(
                std::fs::read_to_string(dir.join("cpu.max"))
                    .expect("cpu.max")
                    .trim(),
                "50000 100000"
            );
        }
        Cgroups::V1 { memory, cpu } => {
            if let Some(m) = memory {
                let dir = m.join(format!("pod{uid}"));
                let limit =
                    std::fs::read_to_string(dir.join("memory.limit_in_bytes")).expect("limit");
                assert_eq!(limit.trim(), (64u64 << 20).to_string());
                assert!(own.contains(&format!("pod{uid}")), "{own}");
            }
            if let Some(cpu) = cpu {
                let dir = cpu.join(format!("pod{uid}"));
                let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).expect("quota");
                assert_eq!(quota.trim(), "50000");
            }
        }
        Cgroups::Unavailable => eprintln!("no usable cgroups here: limits are not enforced"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_rejects_pods_past_allocatable_and_deadlines_end_pods() {
    let mut c = Cluster::start().await;
    let node = c.add_node(&[]).await;
    // Bound directly (no scheduler): the kubelet's admission is the only check.
    c.create(json!({"metadata": {"name": "big"}, "spec": {"nodeName": node,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"], "resources": {"requests": {"cpu": "3"}}}]}}))
    .await;
    c.wait("big", 30, |p| phase(p) == "Running").await;
    c.create(json!({"metadata": {"name": "too-big"}, "spec": {"nodeName": node,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"], "resources": {"requests": {"cpu": "2"}}}]}}))
    .await;
    let p = c.wait("too-big", 30, |p| phase(p) == "Failed").await;
    let s = p.status.expect("status");
    assert_eq!(s.reason.as_deref(), Some("OutOfcpu"));
    assert_eq!(
        s.message.as_deref(),
        Some(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 3000, capacity: 4000"
        )
    );
    let t0 = Instant::now();
    c.create(
        json!({"metadata": {"name": "short-lived"}, "spec": {"activeDeadlineSeconds": 1,
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"]}]}}),
    )
    .await;
    let p = c.wait("short-lived", 30, |p| phase(p) == "Failed").await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let s = p.status.expect("status");
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
}
