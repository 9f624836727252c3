//! The local-path provisioner: StorageClass `local` (the default class), and for each claim of
//! that class (or of no class) a PersistentVolume `pvc-<claim uid>` backed by
//! `DATA/storage/pvc-<uid>/` (a directory; for `volumeMode: Block`, the sparse file `disk.img`
//! inside it, of the requested size), bound at once. Released volumes (claim gone) are deleted
//! with their data (reclaim policy Delete). Run it once per cluster
//! (`virt-cluster kubelet --local-path-provisioner` on one node).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

pub const CLASS: &str = "local";
pub const PROVISIONER: &str = "kubevirt-rs.io/local-path";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub struct Ctx {
    client: Client,
    storage: PathBuf,
}

/// The PV name and path for a claim.
pub fn plan(storage: &Path, claim_uid: &str, block: bool) -> (String, PathBuf) {
    let name = format!("pvc-{claim_uid}");
    let dir = storage.join(&name);
    let path = if block { dir.join("disk.img") } else { dir };
    (name, path)
}

async fn reconcile(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, ProvisionError> {
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let Some(uid) = pvc.uid() else {
        return Ok(Action::await_change());
    };
    let spec = pvc.spec.clone().unwrap_or_default();
    let class = spec.storage_class_name.clone();
    if class.as_deref().is_some_and(|c| c != CLASS)
        || pvc.metadata.deletion_timestamp.is_some()
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
            && pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    {
        return Ok(Action::await_change());
    }
    let block = spec.volume_mode.as_deref() == Some("Block");
    let (pv_name, path) = plan(&ctx.storage, &uid, block);
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| ProvisionError::Io { path: p, source }
    };
    let dir = ctx.storage.join(&pv_name);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    if block && !path.exists() {
        let bytes = kubevirt_embedded_scheduler::quantity::parse_units(&size).unwrap_or(1 << 30);
        let f = std::fs::File::create(&path).map_err(io(&path))?;
        f.set_len(bytes.max(0) as u64).map_err(io(&path))?;
    }
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if pvs.get_opt(&pv_name).await?.is_none() {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "volumeMode": if block { "Block" } else { "Filesystem" },
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": CLASS,
                "local": {"path": path.display().to_string()},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}},
            }
        }))
        .map_err(kube::Error::SerdeError)?;
        pvs.create(&PostParams::default(), &pv).await?;
    }
    pvs.patch_status(
        &pv_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    pvcs.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
                "volume.kubernetes.io/storage-provisioner": PROVISIONER}},
            "spec": {"volumeName": pv_name, "storageClassName": CLASS}})),
    )
    .await?;
    pvcs.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound", "capacity": {"storage": size},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()])}})),
    )
    .await?;
    tracing::info!(namespace = %ns, name = %name, pv = %pv_name, path = %path.display(), "provisioned");
    Ok(Action::await_change())
}

fn error_policy(_: Arc<PersistentVolumeClaim>, e: &ProvisionError, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %e, "provisioning failed");
    Action::requeue(Duration::from_secs(2))
}

async fn ensure_class(client: &Client) -> Result<(), kube::Error> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    if classes.get_opt(CLASS).await?.is_none() {
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        }))
        .map_err(kube::Error::SerdeError)?;
        classes.create(&PostParams::default(), &sc).await?;
    }
    Ok(())
}

/// Deletes volumes whose claim is gone, with their data.
async fn reclaim(client: &Client, storage: &Path) -> Result<(), kube::Error> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for pv in pvs.list(&ListParams::default()).await?.items {
        let spec = pv.spec.clone().unwrap_or_default();
        if spec.storage_class_name.as_deref() != Some(CLASS) {
            continue;
        }
        let Some(claim) = spec.claim_ref else {
            continue;
        };
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(
            client.clone(),
            claim.namespace.as_deref().unwrap_or("default"),
        );
        let present = pvcs
            .get_opt(claim.name.as_deref().unwrap_or(""))
            .await?
            .is_some_and(|c| c.uid() == claim.uid);
        if !present {
            let name = pv.name_any();
            let _ = std::fs::remove_dir_all(storage.join(&name));
            pvs.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(pv = %name, "released volume deleted");
        }
    }
    Ok(())
}

/// Runs the provisioner until the watch ends.
pub async fn run(client: Client, data_dir: PathBuf) {
    if let Err(e) = ensure_class(&client).await {
        tracing::warn!(error = %e, "creating the local StorageClass failed");
    }
    let storage = data_dir.join("storage");
    let reclaimer = {
        let (client, storage) = (client.clone(), storage.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if let Err(e) = reclaim(&client, &storage).await {
                    tracing::debug!(error = %e, "reclaim");
                }
            }
        })
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::all(client.clone());
    Controller::new(pvcs, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client, storage }))
        .for_each(|_| async {})
        .await;
    reclaimer.abort();
}

#[cfg(test)]
mod tests {
    #[test]
    fn plans() {
        let (n, p) = super::plan(std::path::Path::new("/d/storage"), "u1", true);
        assert_eq!(n, "pvc-u1");
        assert_eq!(p, std::path::PathBuf::from("/d/storage/pvc-u1/disk.img"));
        let (_, p) = super::plan(std::path::Path::new("/d/storage"), "u1", false);
        assert_eq!(p, std::path::PathBuf::from("/d/storage/pvc-u1"));
    }
}
