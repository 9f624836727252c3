//! Each volume type, seen from inside the pod at its mountPath: emptyDir (also memory-backed),
//! configMap, secret, downwardAPI, hostPath, a projected service account token, and PVCs of the
//! default StorageClass `local` (a directory, and a file for `volumeMode: Block`).

mod common;

use std::time::Duration;

use common::{Cluster, TESTPROG, container_status, phase};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;

async fn create<K>(api: &Api<K>, v: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(v).expect("object");
    api.create(&PostParams::default(), &o)
        .await
        .expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_volume_type_at_its_mount_path() {
    let mut c = Cluster::start().await;
    c.add_node(&[]).await;
    let host_dir = c.dir.path().join("host-data");
    std::fs::create_dir_all(&host_dir).expect("host dir");
    std::fs::write(host_dir.join("greeting"), "from the host").expect("host file");
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    create(
        &secrets,
        json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
    )
    .await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "default");
    create(
        &pvcs,
        json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "64Mi"}}}}),
    )
    .await;
    create(&pvcs, json!({"metadata": {"name": "blk"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "volumeMode": "Block", "storageClassName": "local", "resources": {"requests": {"storage": "8Mi"}}}}))
    .await;
    let script = json!([
        "cat",
        "/etc/cfg/app.conf",
        "cat",
        "/etc/one/renamed",
        "cat",
        "/etc/secret/password",
        "cat",
        "/etc/pod/name",
        "cat",
        "/etc/pod/labels",
        "cat",
        "/host/greeting",
        "cat",
        "/shared/from-init",
        "cat",
        "/proc/mounts",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
        "write",
        "/data/written",
        "persisted",
        "ls",
        "/dev",
        "write",
        "/etc/cfg/nope",
        "x",
        "exit",
        "0"
    ]);
    c.create(json!({
        "metadata": {"name": "vols", "labels": {"app": "vols"}},
        "spec": {"restartPolicy": "Never",
            "initContainers": [{"name": "init", "image": TESTPROG, "args": ["write", "/shared/from-init", "init was here"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/shared"}]}],
            "containers": [{"name": "main", "image": TESTPROG, "args": script,
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "cfg", "mountPath": "/etc/one/renamed", "subPath": "app.conf"},
                    {"name": "sec", "mountPath": "/etc/secret"},
                    {"name": "pod", "mountPath": "/etc/pod"},
                    {"name": "host", "mountPath": "/host"},
                    {"name": "scratch", "mountPath": "/shared"},
                    {"name": "mem", "mountPath": "/mem"},
                    {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                    {"name": "data", "mountPath": "/data"}],
                "volumeDevices": [{"name": "blk", "devicePath": "/dev/xvda"}]}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "s"}},
                {"name": "pod", "downwardAPI": {"items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "host", "hostPath": {"path": host_dir.display().to_string(), "type": "Directory"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "blk", "persistentVolumeClaim": {"claimName": "blk"}}]
        }
    }))
    .await;
    // The configMap does not exist yet: the pod waits in ContainerCreating.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let p = c.pods().get("vols").await.expect("get");
    assert_eq!(phase(&p), "Pending");
    let waiting = container_status(&p, "main")
        .and_then(|s| s.state)
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason);
    assert!(
        matches!(waiting.as_deref(), Some("ContainerCreating") | None),
        "{waiting:?}"
    );
    create(
        &cms,
        json!({"metadata": {"name": "cfg"}, "data": {"app.conf": "key=value"}}),
    )
    .await;
    let p = c
        .wait("vols", 30, |p| matches!(phase(p), "Succeeded" | "Failed"))
        .await;
    let logs = c.logs(0, "vols", "main", "");
    assert_eq!(phase(&p), "Succeeded", "{logs}");
    for want in [
        "key=value",
        "hunter2",
        "vols",
        "app=\"vols\"",
        "from the host",
        "init was here",
        "tmpfs /mem tmpfs",
        "default",
        "xvda",
        "Read-only file system",
    ] {
        assert!(logs.contains(want), "{want:?} missing from:\n{logs}");
    }
    assert!(
        logs.lines()
            .any(|l| l.starts_with("ey") && l.split('.').count() == 3),
        "{logs}"
    );
    assert_eq!(logs.matches("key=value").count(), 2, "{logs}");
    // The PVC's data is on the node under DATA/storage.
    let pvc = pvcs.get("data").await.expect("pvc");
    let pv = pvc.spec.and_then(|s| s.volume_name).expect("bound");
    let written = std::fs::read_to_string(c.dir.path().join("storage").join(&pv).join("written"));
    assert_eq!(written.ok().as_deref(), Some("persisted"));
    let blk = pvcs.get("blk").await.expect("pvc");
    let pv = blk.spec.and_then(|s| s.volume_name).expect("bound");
    let img = c.dir.path().join("storage").join(&pv).join("disk.img");
    assert_eq!(std::fs::metadata(&img).map(|m| m.len()).ok(), Some(8 << 20));
}
