//! The VirtualMachineInstance controller: admits instances no webhook processed, creates and
//! deletes launcher pods, and writes the phase and conditions derived from the pod back to the
//! instance (which has no status subresource upstream: the object itself is updated).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstancePreset};
use serde_json::json;

use super::{Context, Error, Informer};
use crate::names::reasons;
use crate::vm::SyncError;
use crate::vmi::admit;
use crate::vmi::phase::{self, PodAction};
use crate::vmi::pod::{self, RenderError};

/// The VMI controller, fed by the shared VMI and launcher-pod watches.
pub fn controller(
    ctx: Arc<Context>,
    vmis: &Informer<VirtualMachineInstance>,
    pods: &Informer<Pod>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    Controller::for_stream(vmis.subscribe(), vmis.store.clone())
        .owns_stream(pods.subscribe())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            if let Err(error) = res {
                tracing::debug!(%error, "vmi reconcile");
            }
            std::future::ready(())
        })
}

fn error_policy(vmi: Arc<VirtualMachineInstance>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(namespace = vmi.namespace().unwrap_or_default(), name = vmi.name_any(), %error, "reconciling the VirtualMachineInstance failed");
    Action::requeue(Duration::from_secs(2))
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

async fn admit_vmi(ctx: &Context, vmi: &VirtualMachineInstance) -> Result<Action, Error> {
    let ns = vmi.namespace().unwrap_or_default();
    let presets: Vec<VirtualMachineInstancePreset> =
        match Api::<VirtualMachineInstancePreset>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l.items,
            // Presets not served: nothing to apply.
            Err(e) if code(&e) == Some(404) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
    let refs: Vec<&VirtualMachineInstancePreset> = presets.iter().collect();
    let uuid = crate::uuid::v4()
        .ok_or_else(|| Error::Invalid("no randomness for a firmware UUID".into()))?;
    let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    match admit::admit(vmi, &refs, &ctx.config.cluster, &uuid, Timestamp::now()) {
        Ok((admitted, applied)) => {
            for p in applied {
                tracing::debug!(namespace = %ns, name = vmi.name_any(), preset = %p, "preset applied");
            }
            match api
                .replace(&vmi.name_any(), &PostParams::default(), &admitted)
                .await
            {
                Ok(_) => Ok(Action::await_change()),
                Err(e) if matches!(code(&e), Some(404 | 409)) => {
                    Ok(Action::requeue(Duration::from_millis(200)))
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => {
            ctx.event(vmi, true, reasons::PRESET_FAILED, e.to_string())
                .await;
            let mut failed = vmi.clone();
            let s = failed.status.get_or_insert_with(Default::default);
            s.phase = Some(kubevirt_api::v1::vmi_phases::FAILED.into());
            s.reason = Some(reasons::FAILED_CREATE.into());
            s.conditions
                .push(kubevirt_api::v1::VirtualMachineInstanceCondition {
                    type_: kubevirt_api::v1::vmi_condition_types::SYNCHRONIZED.into(),
                    status: "False".into(),
                    reason: Some(reasons::FAILED_CREATE.into()),
                    message: Some(e.to_string()),
                    ..Default::default()
                });
            api.replace(&vmi.name_any(), &PostParams::default(), &failed)
                .await?;
            Ok(Action::await_change())
        }
    }
}

pub(crate) async fn pvcs_for(
    ctx: &Context,
    vmi: &VirtualMachineInstance,
) -> Result<BTreeMap<String, PersistentVolumeClaim>, Error> {
    let uses_pvc = vmi.spec.volumes.iter().any(|v| {
        let s = &v.volume_source;
        s.persistent_volume_claim.is_some() || s.data_volume.is_some() || s.ephemeral.is_some()
    });
    if !uses_pvc {
        return Ok(BTreeMap::new());
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &vmi.namespace().unwrap_or_default());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect())
}

async fn create_pod(
    ctx: &Context,
    vmi: &VirtualMachineInstance,
) -> Result<Result<Pod, SyncError>, Error> {
    let pvcs = pvcs_for(ctx, vmi).await?;
    let rendered = match pod::launcher_pod(vmi, &ctx.config.launcher, &pvcs) {
        Ok(p) => p,
        Err(e @ RenderError::PvcNotFound(_)) => {
            ctx.event(vmi, true, reasons::FAILED_PVC_NOT_FOUND, e.to_string())
                .await;
            return Ok(Err(SyncError::new(
                reasons::FAILED_PVC_NOT_FOUND,
                e.to_string(),
            )));
        }
        Err(e) => return Ok(Err(SyncError::new(reasons::FAILED_CREATE, e.to_string()))),
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &vmi.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &rendered).await {
        Ok(p) => {
            tracing::info!(
                namespace = vmi.namespace().unwrap_or_default(),
                name = vmi.name_any(),
                pod = p.name_any(),
                "created the launcher pod"
            );
            ctx.event(
                vmi,
                false,
                reasons::SUCCESSFUL_CREATE,
                format!("Created virtual machine pod {}", p.name_any()),
            )
            .await;
            Ok(Ok(p))
        }
        Err(e) => {
            ctx.event(
                vmi,
                true,
                reasons::FAILED_CREATE,
                format!("Error creating pod: {e}"),
            )
            .await;
            Ok(Err(SyncError::new(
                reasons::FAILED_CREATE,
                format!("failed to create virtual machine pod: {e}"),
            )))
        }
    }
}

fn owner_vm_exists(ctx: &Context, vmi: &VirtualMachineInstance) -> bool {
    let Some(owner) = vmi
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "VirtualMachine")
    else {
        return false;
    };
    let ns = vmi.namespace().unwrap_or_default();
    ctx.vms
        .get(&ObjectRef::new(&owner.name).within(&ns))
        .is_some_and(|vm| vm.metadata.uid.as_deref() == Some(owner.uid.as_str()))
}

/// Reconciles one VirtualMachineInstance.
pub async fn reconcile(
    vmi: Arc<VirtualMachineInstance>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if admit::needs_admission(&vmi) {
        return admit_vmi(&ctx, &vmi).await;
    }
    let ns = vmi.namespace().unwrap_or_default();
    let name = vmi.name_any();
    let all_pods = ctx.pods.state();
    let mut owned: Vec<Pod> = all_pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && phase::is_owned_by(p, &vmi))
        .map(|p| (**p).clone())
        .collect();
    let mut sync_error = None;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let refs: Vec<&Pod> = owned.iter().collect();
    match phase::pod_action(&vmi, &refs) {
        PodAction::Nothing => {}
        PodAction::Create => match create_pod(&ctx, &vmi).await? {
            Ok(p) => owned.push(p),
            Err(e) => sync_error = Some(e),
        },
        PodAction::Delete(names) => {
            for pod_name in names {
                match pod_api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        ctx.event(
                            &*vmi,
                            false,
                            reasons::SUCCESSFUL_DELETE,
                            format!("Deleted virtual machine pod {pod_name}"),
                        )
                        .await;
                    }
                    Err(e) if code(&e) == Some(404) => {}
                    Err(e) => {
                        ctx.event(
                            &*vmi,
                            true,
                            reasons::FAILED_DELETE,
                            format!("Failed to delete virtual machine pod {pod_name}"),
                        )
                        .await;
                        sync_error = Some(SyncError::new(
                            reasons::FAILED_DELETE,
                            format!("failed to delete pod: {e}"),
                        ));
                    }
                }
            }
        }
    }
    let refs: Vec<&Pod> = owned.iter().collect();
    let now = Timestamp::now();
    if let Some(current) = phase::current_pod(&vmi, &refs)
        && !phase::pod_down_or_going_down(current)
        && current.metadata.uid.is_some()
        && let Some(cond) = phase::unpaused_condition(&vmi, current, now)
    {
        let patch = json!({"status": {"conditions": [cond]}});
        if let Err(e) = pod_api
            .patch_status(
                &current.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            && code(&e) != Some(404)
        {
            tracing::warn!(namespace = %ns, name = %name, error = %e, "patching the pod's unpaused condition failed");
        }
    }
    let context = phase::Context {
        sync_error: sync_error.as_ref(),
        launcher_image: &ctx.config.launcher.image,
        owner_vm_exists: owner_vm_exists(&ctx, &vmi),
    };
    let mut next = phase::next(&vmi, &refs, &context, now);
    if let Some(status) = next.status.as_mut()
        && matches!(
            status.phase(),
            kubevirt_api::v1::vmi_phases::SCHEDULED | kubevirt_api::v1::vmi_phases::RUNNING
        )
        && vmi.metadata.deletion_timestamp.is_none()
    {
        let pvcs = pvcs_for(&ctx, &vmi).await?;
        let mut cond = crate::migration::live_migratable_condition(&vmi, &pvcs);
        cond.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        crate::conditions::update(&mut status.conditions, cond);
    }
    if next.status != vmi.status
        || next.metadata.finalizers != vmi.metadata.finalizers
        || next.metadata.labels != vmi.metadata.labels
    {
        let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(_) => {}
            Err(e) if matches!(code(&e), Some(404 | 409)) => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if sync_error.is_some() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(Action::requeue(ctx.config.resync))
}
