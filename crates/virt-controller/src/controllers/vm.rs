//! The VirtualMachine controller: carries out [`crate::vm::decide`], writes
//! [`crate::vm::next_status`] through the status subresource and records upstream's events.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kubevirt_api::instancetype::{
    VirtualMachineClusterInstancetype, VirtualMachineClusterPreference, VirtualMachineInstancetype,
    VirtualMachineInstancetypeSpec, VirtualMachinePreference, VirtualMachinePreferenceSpec,
};
use kubevirt_api::v1::{
    VirtualMachine, VirtualMachineInstance, VirtualMachineStateChangeRequest, run_strategies,
    state_change_actions, vmi_phases,
};
use serde_json::json;

use super::{Context, Error, Informer};
use crate::names::{self, reasons};
use crate::vm::{self as logic, Action as Step, Effects, SyncError};

/// The VM controller, fed by the shared VM and VMI watches.
pub fn controller(
    ctx: Arc<Context>,
    vms: &Informer<VirtualMachine>,
    vmis: &Informer<VirtualMachineInstance>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    Controller::for_stream(vms.subscribe(), vms.store.clone())
        .owns_stream(vmis.subscribe())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            if let Err(error) = res {
                tracing::debug!(%error, "vm reconcile");
            }
            std::future::ready(())
        })
}

fn error_policy(vm: Arc<VirtualMachine>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(namespace = vm.namespace().unwrap_or_default(), name = vm.name_any(), %error, "reconciling the VirtualMachine failed");
    Action::requeue(Duration::from_secs(2))
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The instance of this VM, if the store has one it controls.
fn owned_vmi(ctx: &Context, vm: &VirtualMachine) -> Option<Arc<VirtualMachineInstance>> {
    let ns = vm.namespace()?;
    let vmi = ctx.vmis.get(&ObjectRef::new(&vm.name_any()).within(&ns))?;
    let uid = vm.metadata.uid.as_deref();
    vmi.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        .then_some(vmi)
}

async fn fetch_spec<K, S>(
    api: Api<K>,
    name: &str,
    spec: impl Fn(K) -> S,
) -> Result<Option<S>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.map(spec))
}

/// The instancetype and preference a VM refers to, fetched (errors name what is missing).
async fn instancetype_and_preference(
    ctx: &Context,
    vm: &VirtualMachine,
) -> Result<
    (
        Option<VirtualMachineInstancetypeSpec>,
        Option<VirtualMachinePreferenceSpec>,
    ),
    SyncError,
> {
    let ns = vm.namespace().unwrap_or_default();
    let (it, pref) = logic::references(vm);
    let c = ctx.client.clone();
    let it_spec = match it {
        None => None,
        Some((namespaced, name)) => {
            let got = if namespaced {
                fetch_spec(
                    Api::<VirtualMachineInstancetype>::namespaced(c.clone(), &ns),
                    &name,
                    |o| o.spec,
                )
                .await
            } else {
                fetch_spec(
                    Api::<VirtualMachineClusterInstancetype>::all(c.clone()),
                    &name,
                    |o| o.spec.0,
                )
                .await
            };
            let kind = if namespaced {
                "virtualmachineinstancetype"
            } else {
                "virtualmachineclusterinstancetype"
            };
            match got {
                Ok(Some(s)) => Some(s),
                Ok(None) => {
                    return Err(SyncError::new(
                        reasons::FAILED_FIND_INSTANCETYPE,
                        format!("{kind}.instancetype.kubevirt.io \"{name}\" not found"),
                    ));
                }
                Err(e) => {
                    return Err(SyncError::new(
                        reasons::FAILED_FIND_INSTANCETYPE,
                        e.to_string(),
                    ));
                }
            }
        }
    };
    let pref_spec = match pref {
        None => None,
        Some((namespaced, name)) => {
            let got = if namespaced {
                fetch_spec(
                    Api::<VirtualMachinePreference>::namespaced(c.clone(), &ns),
                    &name,
                    |o| o.spec,
                )
                .await
            } else {
                fetch_spec(
                    Api::<VirtualMachineClusterPreference>::all(c.clone()),
                    &name,
                    |o| o.spec.0,
                )
                .await
            };
            let kind = if namespaced {
                "virtualmachinepreference"
            } else {
                "virtualmachineclusterpreference"
            };
            match got {
                Ok(Some(s)) => Some(s),
                Ok(None) => {
                    return Err(SyncError::new(
                        reasons::FAILED_FIND_PREFERENCE,
                        format!("{kind}.instancetype.kubevirt.io \"{name}\" not found"),
                    ));
                }
                Err(e) => {
                    return Err(SyncError::new(
                        reasons::FAILED_FIND_PREFERENCE,
                        e.to_string(),
                    ));
                }
            }
        }
    };
    Ok((it_spec, pref_spec))
}

async fn set_finalizers(
    api: &Api<VirtualMachine>,
    vm: &VirtualMachine,
    finalizers: Vec<String>,
) -> Result<VirtualMachine, kube::Error> {
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": vm.resource_version()}});
    api.patch(
        &vm.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

async fn create_vmi(ctx: &Context, vm: &VirtualMachine) -> Result<bool, SyncError> {
    let (it, pref) = instancetype_and_preference(ctx, vm).await?;
    let vmi =
        logic::vmi_from_vm(vm, it.as_ref(), pref.as_ref(), &ctx.config.cluster).map_err(|e| {
            SyncError::new(
                reasons::FAILED_CREATE,
                format!("Failure while starting VMI: {e}"),
            )
        })?;
    let ns = vm.namespace().unwrap_or_default();
    let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &vmi).await {
        Ok(created) => {
            tracing::info!(namespace = %ns, name = vm.name_any(), uid = created.metadata.uid.as_deref().unwrap_or(""), "started the VM by creating its instance");
            ctx.event(
                vm,
                false,
                reasons::SUCCESSFUL_CREATE,
                format!(
                    "Started the virtual machine by creating the new virtual machine instance {}",
                    created.name_any()
                ),
            )
            .await;
            Ok(true)
        }
        // The previous instance is still there (our cache was behind): look again shortly.
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => {
            ctx.event(
                vm,
                true,
                reasons::FAILED_CREATE,
                format!("Error creating virtual machine instance: {e}"),
            )
            .await;
            Err(SyncError::new(
                reasons::FAILED_CREATE,
                format!("Failure while starting VMI: {e}"),
            ))
        }
    }
}

async fn delete_vmi(ctx: &Context, vm: &VirtualMachine, uid: &str) -> Result<(), SyncError> {
    let ns = vm.namespace().unwrap_or_default();
    let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&vm.name_any(), &dp).await {
        Ok(_) => {
            ctx.event(
                vm,
                false,
                reasons::SUCCESSFUL_DELETE,
                format!(
                    "Stopped the virtual machine by deleting the virtual machine instance {uid}"
                ),
            )
            .await;
            Ok(())
        }
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => {
            ctx.event(
                vm,
                true,
                reasons::FAILED_DELETE,
                format!(
                    "Error deleting virtual machine instance {}: {e}",
                    vm.name_any()
                ),
            )
            .await;
            Err(SyncError::new(
                reasons::FAILED_DELETE,
                format!("Failure attempting to delete VMI: {e}"),
            ))
        }
    }
}

/// Removes our finalizer from an instance that is final (its status is recorded on the VM).
async fn release_vmi(ctx: &Context, vmi: &VirtualMachineInstance) -> Result<(), Error> {
    let phase = vmi.status.as_ref().map(|s| s.phase()).unwrap_or("");
    if !vmi_phases::is_final(phase)
        || !vmi
            .finalizers()
            .iter()
            .any(|f| f == names::VM_CONTROLLER_FINALIZER)
    {
        return Ok(());
    }
    let rest: Vec<&String> = vmi
        .finalizers()
        .iter()
        .filter(|f| *f != names::VM_CONTROLLER_FINALIZER)
        .collect();
    let api: Api<VirtualMachineInstance> =
        Api::namespaced(ctx.client.clone(), &vmi.namespace().unwrap_or_default());
    let patch =
        json!({"metadata": {"finalizers": rest, "resourceVersion": vmi.resource_version()}});
    match api
        .patch(
            &vmi.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// Reconciles one VirtualMachine.
pub async fn reconcile(vm: Arc<VirtualMachine>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = vm.namespace().unwrap_or_default();
    let name = vm.name_any();
    let api: Api<VirtualMachine> = Api::namespaced(ctx.client.clone(), &ns);
    let vmi = owned_vmi(&ctx, &vm);
    let now = Timestamp::now();
    let decision = logic::decide(&vm, vmi.as_deref(), now);
    let mut current: VirtualMachine = (*vm).clone();
    let mut effects = Effects::default();
    let mut sync_error = decision.sync_error.clone();
    let mut requeue = decision.requeue_after;
    for step in &decision.actions {
        match step {
            Step::AddFinalizer => {
                let mut f = current.finalizers().to_vec();
                f.push(names::VM_CONTROLLER_FINALIZER.into());
                current = set_finalizers(&api, &current, f).await?;
            }
            Step::RemoveFinalizer => {
                let f: Vec<String> = current
                    .finalizers()
                    .iter()
                    .filter(|f| *f != names::VM_CONTROLLER_FINALIZER)
                    .cloned()
                    .collect();
                match set_finalizers(&api, &current, f).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Action::await_change());
            }
            Step::CreateVmi => match create_vmi(&ctx, &current).await {
                Ok(true) => effects.started = true,
                Ok(false) => requeue = Some(Duration::from_secs(1)),
                Err(e) => sync_error = Some(e),
            },
            Step::DeleteVmi { uid } => match delete_vmi(&ctx, &current, uid).await {
                Ok(()) => effects.stopped = true,
                Err(e) => sync_error = Some(e),
            },
            Step::SetRunStrategyAlways => {
                let patch = if current.spec.run_strategy.is_some() {
                    json!({"spec": {"runStrategy": run_strategies::ALWAYS}})
                } else {
                    json!({"spec": {"running": true}})
                };
                current = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Step::AddStartRequest => {
                current
                    .status
                    .get_or_insert_with(Default::default)
                    .state_change_requests
                    .push(VirtualMachineStateChangeRequest {
                        action: state_change_actions::START.into(),
                        ..Default::default()
                    });
            }
        }
    }
    if current.metadata.deletion_timestamp.is_some() && vmi.is_none() {
        return Ok(Action::await_change());
    }
    let status = logic::next_status(
        &current,
        vmi.as_deref(),
        effects,
        sync_error.as_ref(),
        now,
        jitter(),
    );
    if current.status.as_ref() != Some(&status) {
        let mut updated = current.clone();
        updated.status = Some(status);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => return Ok(Action::requeue(Duration::from_millis(200))),
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(v) = vmi.as_deref() {
        release_vmi(&ctx, v).await?;
    }
    if let Some(e) = &sync_error {
        tracing::warn!(namespace = %ns, name = %name, reason = %e.reason, message = %e.message, "reconciling the VirtualMachine failed");
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::requeue(ctx.config.resync),
    })
}
