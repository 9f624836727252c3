//! The replica set controller against the embedded API server: scaling 0 -> 3 -> 1 through the
//! scale subresource, status (replicas, labelSelector), and pausing.

mod common;

use common::{Cluster, eventually, yaml};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceReplicaSet};
use serde_json::json;

const RS: &str = r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstanceReplicaSet
metadata:
  name: small
  namespace: default
spec:
  replicas: 0
  selector:
    matchLabels:
      app: small
  template:
    metadata:
      labels:
        app: small
    spec:
      domain:
        devices:
          disks:
          - name: containerdisk
            disk:
              bus: virtio
        resources:
          requests:
            memory: 128Mi
      volumes:
      - name: containerdisk
        containerDisk:
          image: 127.0.0.1:5000/kubevirt-rs/guest:latest
"#;

async fn active(vmis: &Api<VirtualMachineInstance>, rs_uid: &str) -> Vec<VirtualMachineInstance> {
    vmis.list(&ListParams::default().labels("app=small"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|v| {
            v.owner_references()
                .iter()
                .any(|o| o.uid == rs_uid && o.controller == Some(true))
        })
        .filter(|v| v.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn status_replicas(rss: &Api<VirtualMachineInstanceReplicaSet>) -> Option<i32> {
    rss.get("small").await.ok()?.status?.replicas
}

async fn scale(rss: &Api<VirtualMachineInstanceReplicaSet>, n: i32) {
    rss.patch_scale(
        "small",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": n}})),
    )
    .await
    .expect("scale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_scales_zero_three_one() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let rss: Api<VirtualMachineInstanceReplicaSet> = Api::namespaced(c.clone(), "default");
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &yaml(RS))
        .await
        .expect("create rs");
    let uid = rs.metadata.uid.clone().unwrap();
    eventually("status for 0 replicas", || async {
        let s = rss.get("small").await.ok()?.status?;
        (s.replicas == Some(0) && s.label_selector.as_deref() == Some("app=small")).then_some(())
    })
    .await;
    assert!(active(&vmis, &uid).await.is_empty());

    scale(&rss, 3).await;
    let three = eventually("3 instances", || async {
        let v = active(&vmis, &uid).await;
        (v.len() == 3).then_some(v)
    })
    .await;
    assert!(three.iter().all(|v| v.name_any().starts_with("small")));
    eventually("status replicas 3", || async {
        (status_replicas(&rss).await == Some(3)).then_some(())
    })
    .await;
    let scale_now = rss.get_scale("small").await.expect("scale subresource");
    assert_eq!(
        scale_now.status.and_then(|s| s.selector).as_deref(),
        Some("app=small")
    );

    scale(&rss, 1).await;
    eventually("1 instance", || async {
        (active(&vmis, &uid).await.len() == 1).then_some(())
    })
    .await;
    eventually("status replicas 1", || async {
        (status_replicas(&rss).await == Some(1)).then_some(())
    })
    .await;
    // The deleted ones go completely (their pods are deleted, their finalizers released).
    eventually("only one instance left at all", || async {
        let all = vmis
            .list(&ListParams::default().labels("app=small"))
            .await
            .ok()?;
        (all.items.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replica_set_does_not_scale() {
    let cluster = Cluster::start().await;
    let c = cluster.client.clone();
    let rss: Api<VirtualMachineInstanceReplicaSet> = Api::namespaced(c.clone(), "default");
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(c.clone(), "default");
    let mut rs: VirtualMachineInstanceReplicaSet = yaml(RS);
    rs.spec.paused = Some(true);
    rs.spec.replicas = Some(2);
    let rs = rss
        .create(&PostParams::default(), &rs)
        .await
        .expect("create rs");
    let uid = rs.metadata.uid.clone().unwrap();
    eventually("the ReplicaPaused condition", || async {
        let s = rss.get("small").await.ok()?.status?;
        s.conditions
            .iter()
            .any(|c| c.type_ == "ReplicaPaused" && c.status == "True")
            .then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(active(&vmis, &uid).await.is_empty());
    rss.patch(
        "small",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"paused": false}})),
    )
    .await
    .expect("resume");
    eventually("2 instances after resuming", || async {
        (active(&vmis, &uid).await.len() == 2).then_some(())
    })
    .await;
    eventually("the condition to go", || async {
        let s = rss.get("small").await.ok()?.status?;
        s.conditions.is_empty().then_some(())
    })
    .await;
}
