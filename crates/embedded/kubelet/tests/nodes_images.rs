//! Two nodes (nodeSelector, an unschedulable pod, pods on different nodes reaching each other),
//! and containerDisks: the test guest's image pulled from a local registry and exposed as a data
//! container's root, and a missing image's ErrImagePull / ImagePullBackOff.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, TESTPROG, condition, container_status, phase};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_selectors_unschedulable_and_cross_node_traffic() {
    let mut c = Cluster::start().await;
    let a = c.add_node(&[("zone", "a")]).await;
    let b = c.add_node(&[("zone", "b")]).await;
    c.create(
        json!({"metadata": {"name": "server"}, "spec": {"nodeSelector": {"zone": "a"},
        "containers": [{"name": "main", "image": TESTPROG, "args": ["serve", "8080"],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}),
    )
    .await;
    let server = c
        .wait("server", 30, |p| {
            condition(p, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(
        server.spec.as_ref().and_then(|s| s.node_name.clone()),
        Some(a.clone())
    );
    let ip = server.status.and_then(|s| s.pod_ip).expect("server ip");
    assert!(ip.starts_with("10.244.1."), "{ip}");
    c.create(json!({"metadata": {"name": "client"}, "spec": {"restartPolicy": "Never",
        "nodeSelector": {"zone": "b"},
        "containers": [{"name": "main", "image": TESTPROG, "args": ["get", format!("{ip}:8080")]}]}}))
    .await;
    let client = c
        .wait("client", 30, |p| matches!(phase(p), "Succeeded" | "Failed"))
        .await;
    assert_eq!(
        client.spec.as_ref().and_then(|s| s.node_name.clone()),
        Some(b.clone())
    );
    assert!(
        client
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .is_some_and(|ip| ip.starts_with("10.244.2."))
    );
    let logs = c.logs(1, "client", "main", "");
    assert_eq!(logs.trim(), "hello from server", "{logs}");

    c.create(
        json!({"metadata": {"name": "nowhere"}, "spec": {"nodeSelector": {"zone": "c"},
        "containers": [{"name": "main", "image": TESTPROG, "args": ["hang"]}]}}),
    )
    .await;
    let p = c
        .wait("nowhere", 30, |p| {
            condition(p, "PodScheduled").is_some_and(|c| c.status == "False")
        })
        .await;
    let cond = condition(&p, "PodScheduled").expect("condition");
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        cond.message.as_deref(),
        Some("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.")
    );
    assert_eq!(phase(&p), "Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_disk_pull_and_image_pull_back_off() {
    let registry = tokio::task::spawn_blocking(|| {
        kubevirt_rs_guest::GuestImage::ensure().expect("guest image");
        let r = kubevirt_rs_guest::Registry::start().expect("registry");
        let digest = kubevirt_rs_guest::GuestImage::push(r.addr()).expect("push");
        (r, digest)
    })
    .await
    .expect("registry task");
    let (reg, digest) = registry;
    let addr = reg.addr().to_string();
    let mut c = Cluster::start().await;
    c.insecure.push(addr.clone());
    c.add_node(&[]).await;
    let image = format!("{addr}/kubevirt-rs/guest:latest");
    let t0 = Instant::now();
    c.create(
        json!({"metadata": {"name": "vmi-like"}, "spec": {"containers": [
            {"name": "compute", "image": TESTPROG, "args": ["hang"]},
            {"name": "volumecontainerdisk", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/bin/container-disk"],
                "args": ["--copy-path", "/var/run/kubevirt-ephemeral-disks/container-disk-data/u1/disk_0"],
                "volumeMounts": [{"name": "container-disks",
                    "mountPath": "/var/run/kubevirt-ephemeral-disks/container-disk-data/u1"}]}
        ], "volumes": [{"name": "container-disks", "emptyDir": {}}]}}),
    )
    .await;
    let p = c.wait("vmi-like", 120, |p| phase(p) == "Running").await;
    eprintln!("containerDisk pod Running after {:?}", t0.elapsed());
    let cs = container_status(&p, "volumecontainerdisk").expect("status");
    assert!(
        cs.image_id.ends_with(&digest),
        "{} vs {digest}",
        cs.image_id
    );
    let pid: u32 = cs
        .container_id
        .as_deref()
        .and_then(|id| id.strip_prefix("kvrs://"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no kvrs:// container id: {cs:?}"));
    let disk = format!("/proc/{pid}/root/disk/guest.qcow2");
    let size = std::fs::metadata(&disk).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1 << 20, "{disk}: {size} bytes");
    assert!(std::path::Path::new(&format!("/proc/{pid}/root/boot/vmlinuz")).exists());
    // As upstream's container-disk, the placeholder listens on `<copy-path>.sock`, in the
    // emptyDir shared with the node; its peer is the container's process.
    let uid = p.metadata.uid.clone().expect("uid");
    let sock = c
        .dir
        .path()
        .join("nodes")
        .join(c.node_name(0))
        .join("kubelet/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/container-disks/disk_0.sock");
    // (relative to its directory: the full path is longer than a socket address allows)
    std::env::set_current_dir(sock.parent().expect("dir")).expect("chdir");
    let conn =
        std::os::unix::net::UnixStream::connect("disk_0.sock").expect("container-disk socket");
    std::env::set_current_dir("/").expect("chdir /");
    drop(conn);
    // Layers are cached by digest and the image extracted once.
    let blobs = c.dir.path().join("images/blobs/sha256");
    assert!(std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0) >= 1);

    let missing = format!("{addr}/kubevirt-rs/missing:latest");
    c.create(
        json!({"metadata": {"name": "missing"}, "spec": {"containers": [
        {"name": "volumedisk", "image": missing}]}}),
    )
    .await;
    let p = c
        .wait("missing", 30, |p| {
            container_status(p, "volumedisk")
                .and_then(|s| s.state)
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason)
                .as_deref()
                == Some("ImagePullBackOff")
        })
        .await;
    let w = container_status(&p, "volumedisk")
        .and_then(|s| s.state)
        .and_then(|s| s.waiting)
        .expect("waiting");
    let msg = w.message.unwrap_or_default();
    assert!(
        msg.starts_with(&format!("Back-off pulling image \"{missing}\"")),
        "{msg}"
    );
    assert!(
        msg.to_lowercase().contains("manifest unknown") || msg.contains("not found"),
        "{msg}"
    );
    assert_eq!(phase(&p), "Pending");
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(reg);
}
