//! The migration controller: carries out [`crate::migration::plan`] for each
//! VirtualMachineInstanceMigration: creates and deletes target pods, hands the migration to the
//! handlers through the instance, and writes the migration's status through its status
//! subresource.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kubevirt_api::v1::{
    VirtualMachineInstance, VirtualMachineInstanceMigration, migration_abort_statuses,
    migration_transports,
};
use serde_json::json;

use super::{Context, Error, Informer};
use crate::migration::{self, Inputs, JOB_LABEL, Plan, TARGET_NODE_LABEL, VmiChange, reasons};
use crate::vmi::phase;
use crate::vmi::pod;

/// The migration controller, fed by the shared migration, VMI and launcher-pod watches.
pub fn controller(
    ctx: Arc<Context>,
    migrations: &Informer<VirtualMachineInstanceMigration>,
    vmis: &Informer<VirtualMachineInstance>,
    pods: &Informer<Pod>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let by_vmi = migrations.store.clone();
    let by_pod = migrations.store.clone();
    Controller::for_stream(migrations.subscribe(), migrations.store.clone())
        // A change of the instance (its migrationState above all) moves its migrations on.
        .watches_stream(vmis.subscribe(), move |vmi: VirtualMachineInstance| {
            let ns = vmi.namespace();
            let name = vmi.name_any();
            by_vmi
                .state()
                .into_iter()
                .filter(|m| m.namespace() == ns && m.spec.vmi_name.as_deref() == Some(&name))
                .map(|m| ObjectRef::from_obj(&*m))
                .collect::<Vec<_>>()
        })
        // So does a change of a target pod (found by the migration uid it is labelled with).
        .watches_stream(pods.subscribe(), move |p: Pod| {
            let uid = p.labels().get(JOB_LABEL).cloned();
            by_pod
                .state()
                .into_iter()
                .filter(|m| uid.is_some() && m.metadata.uid == uid)
                .map(|m| ObjectRef::from_obj(&*m))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            if let Err(error) = res {
                tracing::debug!(%error, "migration reconcile");
            }
            std::future::ready(())
        })
}

fn error_policy(m: Arc<VirtualMachineInstanceMigration>, error: &Error, _: Arc<Context>) -> Action {
    if let Error::Stale(what) = error {
        tracing::debug!(
            namespace = m.namespace().unwrap_or_default(),
            name = m.name_any(),
            what,
            "read a stale copy; looking again"
        );
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(namespace = m.namespace().unwrap_or_default(), name = m.name_any(), %error, "reconciling the VirtualMachineInstanceMigration failed");
    Action::requeue(Duration::from_secs(2))
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether another migration of the same instance, created earlier, has not finished (the
/// oldest goes first; name breaks a tie).
fn other_in_flight(ctx: &Context, m: &VirtualMachineInstanceMigration) -> bool {
    let key = |x: &VirtualMachineInstanceMigration| {
        (
            x.metadata.creation_timestamp.as_ref().map(|t| t.0),
            x.name_any(),
        )
    };
    ctx.migrations.state().iter().any(|o| {
        o.metadata.uid != m.metadata.uid
            && o.namespace() == m.namespace()
            && o.spec.vmi_name == m.spec.vmi_name
            && !o.status.as_ref().is_some_and(|s| s.is_final())
            && o.metadata.deletion_timestamp.is_none()
            && key(o) < key(m)
    })
}

/// Why `vmi` cannot be live-migrated, if it cannot: its `LiveMigratable` condition when the
/// VMI controller has written it, else worked out here.
async fn not_migratable(
    ctx: &Context,
    vmi: &VirtualMachineInstance,
) -> Result<Option<String>, Error> {
    let pvcs = super::vmi::pvcs_for(ctx, vmi).await?;
    let c = migration::live_migratable_condition(vmi, &pvcs);
    Ok((c.status == "False").then(|| c.message.unwrap_or_default()))
}

/// Reconciles one migration.
pub async fn reconcile(
    m: Arc<VirtualMachineInstanceMigration>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = m.namespace().unwrap_or_default();
    let name = m.name_any();
    if m.spec.is_decentralized() {
        // Cross-cluster migrations need a synchronization controller this cluster lacks.
        return Ok(Action::await_change());
    }
    let Some(uid) = m.metadata.uid.clone() else {
        return Ok(Action::await_change());
    };
    let vmi_name = m.spec.vmi_name.clone().unwrap_or_default();
    let vmi = ctx
        .vmis
        .get(&ObjectRef::new(&vmi_name).within(&ns))
        .map(|v| (*v).clone());
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Listed live, not from the store: a pod created a moment ago must not look vanished.
    let target_pods = pod_api
        .list(&ListParams::default().labels(&format!("{JOB_LABEL}={uid}")))
        .await?
        .items;
    let source_pod = vmi.as_ref().and_then(|v| {
        let owned: Vec<Arc<Pod>> = ctx
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && phase::is_owned_by(p, v))
            .filter(|p| p.labels().get(JOB_LABEL) != Some(&uid))
            .collect();
        let refs: Vec<&Pod> = owned.iter().map(|p| &**p).collect();
        phase::current_pod(v, &refs).map(|p| p.name_any())
    });
    let pending = m
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == kubevirt_api::v1::migration_phases::PENDING);
    let not_migratable = match (&vmi, pending) {
        (Some(v), true) => not_migratable(&ctx, v).await?,
        _ => None,
    };
    let refs: Vec<&Pod> = target_pods.iter().collect();
    let config = migration_config(&ctx).await?;
    let inputs = Inputs {
        migration: &m,
        vmi: vmi.as_ref(),
        target_pods: &refs,
        source_pod: source_pod.as_deref(),
        other_in_flight: other_in_flight(&ctx, &m),
        not_migratable,
        config: config.as_ref(),
        now: Timestamp::now(),
    };
    let mut plan = migration::plan(&inputs);
    // The version the status write is made against: adding the finalizer makes a new one.
    let mut version = m.resource_version();
    if plan.finalizer == Some(true)
        && let Some(v) = set_finalizer(&ctx, &m, true).await?
    {
        version = Some(v);
    }
    tracing::debug!(namespace = %ns, name = %name, phase = ?plan.status.phase, "migration plan");
    carry_out(&ctx, &m, vmi.as_ref(), &mut plan).await?;
    if plan.status != m.status.clone().unwrap_or_default() {
        let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(ctx.client.clone(), &ns);
        // With the resourceVersion a plan made from a stale copy is refused (409) rather than
        // replacing phaseTransitionTimestamps written meanwhile; the next look has the newer one.
        let patch = json!({
            "metadata": {"resourceVersion": version},
            "status": plan.status,
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if code(&e) == Some(404) => return Ok(Action::await_change()),
            Err(e) if code(&e) == Some(409) => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(namespace = %ns, name = %name, vmi = %vmi_name, phase = plan.status.phase.as_deref().unwrap_or(""), "migration phase");
    }
    if plan.finalizer == Some(false) {
        set_finalizer(&ctx, &m, false).await?;
        return Ok(Action::await_change());
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(ctx.config.resync),
    })
}

/// Does what `plan` says, except writing the migration's status. A failed pod creation turns
/// the plan into a failure.
async fn carry_out(
    ctx: &Context,
    m: &VirtualMachineInstanceMigration,
    vmi: Option<&VirtualMachineInstance>,
    plan: &mut Plan,
) -> Result<(), Error> {
    let ns = m.namespace().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if plan.create_target_pod
        && let Some(vmi) = vmi
    {
        match create_target_pod(ctx, m, vmi).await? {
            Ok(p) => {
                ctx.event(
                    m,
                    false,
                    reasons::SUCCESSFUL_CREATE,
                    format!("Created migration target pod {}", p.name_any()),
                )
                .await;
            }
            Err(message) => {
                // The plan's phase (Scheduling) becomes Failed: nothing was created.
                let mut status = m.status.clone().unwrap_or_default();
                status.phase = Some(kubevirt_api::v1::migration_phases::FAILED.into());
                status.phase_transition_timestamps.push(
                    kubevirt_api::v1::VirtualMachineInstanceMigrationPhaseTransitionTimestamp {
                        phase: status.phase.clone(),
                        phase_transition_timestamp: Some(Time(Timestamp::now())),
                    },
                );
                plan.status = status;
                plan.event = Some((true, reasons::FAILED_CREATE, message));
            }
        }
    }
    for pod_name in &plan.delete_pods {
        match pod_api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.event(
                    m,
                    false,
                    reasons::SUCCESSFUL_DELETE,
                    format!("Deleted migration target pod {pod_name}"),
                )
                .await;
            }
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let (Some(change), Some(vmi)) = (&plan.vmi_change, vmi) {
        change_vmi(ctx, vmi, change).await?;
    }
    if let Some((warning, reason, note)) = plan.event.clone() {
        ctx.event(m, warning, reason, note.clone()).await;
        if let Some(vmi) = vmi {
            ctx.event(vmi, warning, reason, note).await;
        }
    }
    Ok(())
}

async fn create_target_pod(
    ctx: &Context,
    m: &VirtualMachineInstanceMigration,
    vmi: &VirtualMachineInstance,
) -> Result<Result<Pod, String>, Error> {
    let pvcs = super::vmi::pvcs_for(ctx, vmi).await?;
    let rendered = match pod::launcher_pod(vmi, &ctx.config.launcher, &pvcs) {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("rendering the target pod: {e}"))),
    };
    let target = match migration::target_pod(vmi, m, rendered) {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("rendering the target pod: {e}"))),
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &vmi.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &target).await {
        Ok(p) => {
            tracing::info!(
                namespace = vmi.namespace().unwrap_or_default(),
                name = vmi.name_any(),
                migration = m.name_any(),
                pod = p.name_any(),
                "created the migration target pod"
            );
            Ok(Ok(p))
        }
        Err(e @ kube::Error::Api(_)) => Ok(Err(format!("creating the target pod: {e}"))),
        Err(e) => Err(e.into()),
    }
}

/// The cluster's migration settings: the KubeVirt CR's `configuration.migrations` (the first
/// KubeVirt object; there is one per cluster), if any.
async fn migration_config(
    ctx: &Context,
) -> Result<Option<kubevirt_api::v1::MigrationConfiguration>, Error> {
    let api: Api<kubevirt_api::v1::KubeVirt> = Api::all(ctx.client.clone());
    let list = api.list(&ListParams::default().limit(1)).await?;
    Ok(list
        .items
        .into_iter()
        .next()
        .and_then(|k| k.spec.configuration)
        .and_then(|c| c.migrations))
}

/// Writes `change` to the instance (which has no status subresource: status and labels go in
/// one patch of the object).
async fn change_vmi(
    ctx: &Context,
    vmi: &VirtualMachineInstance,
    change: &VmiChange,
) -> Result<(), Error> {
    let ns = vmi.namespace().unwrap_or_default();
    let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    // Every change is made against the copy the plan read: written over a newer one it could
    // undo what a handler recorded meanwhile (an abort re-requested after it succeeded, a
    // failure over a migration that has started).
    let version = vmi.resource_version();
    let same_version = json!({"op": "test", "path": "/metadata/resourceVersion", "value": version});
    let (patch, what) = match change {
        VmiChange::HandOver { state, method } => {
            let source = state.source_node.clone().unwrap_or_default();
            let target = state.target_node.clone().unwrap_or_default();
            // A JSON patch replaces any earlier migrationState whole (a merge patch would keep
            // the old attempt's outcome fields), and only while the instance is still on the
            // node the target pod was placed against.
            let label_path = format!("/metadata/labels/{}", TARGET_NODE_LABEL.replace('/', "~1"));
            let mut ops = vec![
                same_version,
                json!({"op": "test", "path": "/status/nodeName", "value": source}),
                json!({"op": "add", "path": "/status/migrationState", "value": state}),
                json!({"op": "add", "path": "/status/migrationMethod", "value": method}),
                json!({"op": "add", "path": "/status/migrationTransport", "value": migration_transports::UNIX}),
            ];
            if vmi.metadata.labels.is_none() {
                ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
            }
            ops.push(json!({"op": "add", "path": label_path, "value": target}));
            (
                Patch::Json::<()>(serde_json::from_value(json!(ops))?),
                "handed the migration over",
            )
        }
        VmiChange::RequestAbort { migration_uid } => {
            // Only on this migration's state (the test op): a newer attempt is not touched.
            let ops = json!([
                same_version,
                {"op": "test", "path": "/status/migrationState/migrationUid", "value": migration_uid},
                {"op": "add", "path": "/status/migrationState/abortRequested", "value": true},
                {"op": "add", "path": "/status/migrationState/abortStatus",
                 "value": migration_abort_statuses::ABORTING},
            ]);
            (
                Patch::Json::<()>(serde_json::from_value(ops)?),
                "asked the handlers to abort the migration",
            )
        }
        VmiChange::Fail { reason } => {
            let patch = json!({
                "metadata": {"labels": {TARGET_NODE_LABEL: null}, "resourceVersion": version},
                "status": {"migrationState": {
                    "failed": true,
                    "failureReason": reason,
                    "endTimestamp": Time(Timestamp::now()),
                }}
            });
            return match api
                .patch(
                    &vmi.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if code(&e) == Some(404) => Ok(()),
                Err(e) if code(&e) == Some(409) => Err(Error::Stale("the instance")),
                Err(e) => Err(e.into()),
            };
        }
    };
    match api
        .patch(&vmi.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %ns, name = vmi.name_any(), "{what}");
            Ok(())
        }
        Err(e) if code(&e) == Some(404) => {
            Err(Error::Invalid(format!("the instance is gone: {e}")))
        }
        // Changed since the plan (a failed test op): the next reconcile sees how.
        Err(e) if matches!(code(&e), Some(409 | 422)) => Err(Error::Stale("the instance")),
        Err(e) => Err(e.into()),
    }
}

/// Adds or removes [`migration::FINALIZER`] (with the object's resourceVersion, so a
/// concurrent change of the list is not lost).
async fn set_finalizer(
    ctx: &Context,
    m: &VirtualMachineInstanceMigration,
    add: bool,
) -> Result<Option<String>, Error> {
    let mut list: Vec<String> = m.finalizers().to_vec();
    list.retain(|f| f != migration::FINALIZER);
    if add {
        list.push(migration::FINALIZER.into());
    }
    let patch = json!({"metadata": {
        "finalizers": list,
        "resourceVersion": m.resource_version(),
    }});
    let api: Api<VirtualMachineInstanceMigration> =
        Api::namespaced(ctx.client.clone(), &m.namespace().unwrap_or_default());
    match api
        .patch(
            &m.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(updated) => Ok(updated.resource_version()),
        Err(e) if code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
