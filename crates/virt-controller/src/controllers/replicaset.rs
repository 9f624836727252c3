//! The VirtualMachineInstanceReplicaSet controller: creates and deletes instances to match
//! `spec.replicas` (unless paused) and keeps the status (and so the scale subresource) current.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceReplicaSet};

use super::{Context, Error, Informer};
use crate::names::reasons;
use crate::replicaset as logic;

/// The replica set controller, fed by the shared replica set and VMI watches.
pub fn controller(
    ctx: Arc<Context>,
    replicasets: &Informer<VirtualMachineInstanceReplicaSet>,
    vmis: &Informer<VirtualMachineInstance>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    Controller::for_stream(replicasets.subscribe(), replicasets.store.clone())
        .owns_stream(vmis.subscribe())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            if let Err(error) = res {
                tracing::debug!(%error, "replica set reconcile");
            }
            std::future::ready(())
        })
}

fn error_policy(
    rs: Arc<VirtualMachineInstanceReplicaSet>,
    error: &Error,
    _: Arc<Context>,
) -> Action {
    tracing::warn!(namespace = rs.namespace().unwrap_or_default(), name = rs.name_any(), %error, "reconciling the replica set failed");
    Action::requeue(Duration::from_secs(2))
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Reconciles one replica set.
pub async fn reconcile(
    rs: Arc<VirtualMachineInstanceReplicaSet>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    if let Err(e) = logic::check(&rs) {
        tracing::warn!(namespace = %ns, name = %name, error = %e, "invalid replica set spec; not acting on it");
        return Ok(Action::await_change());
    }
    let all = ctx.vmis.state();
    let owned: Vec<&VirtualMachineInstance> = all
        .iter()
        .map(|v| &**v)
        .filter(|v| v.namespace().as_deref() == Some(ns.as_str()) && logic::owns(&rs, v))
        .collect();
    let d = logic::diff(&rs, &owned);
    let api: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    let mut failure: Option<(&str, String)> = None;
    for _ in 0..d.create {
        match api
            .create(&PostParams::default(), &logic::new_instance(&rs))
            .await
        {
            Ok(v) => {
                ctx.event(&*rs, false, reasons::SUCCESSFUL_CREATE, format!("Started the virtual machine by creating the new virtual machine instance {}", v.name_any()))
                    .await;
            }
            Err(e) => {
                ctx.event(
                    &*rs,
                    true,
                    reasons::FAILED_CREATE,
                    format!("Error creating virtual machine instance: {e}"),
                )
                .await;
                failure = Some((reasons::FAILED_CREATE, e.to_string()));
                break;
            }
        }
    }
    for vmi_name in d.delete.iter().chain(d.clean.iter()) {
        let uid = owned
            .iter()
            .find(|v| v.name_any() == *vmi_name)
            .and_then(|v| v.metadata.uid.clone())
            .unwrap_or_default();
        match api.delete(vmi_name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.event(
                    &*rs,
                    false,
                    reasons::SUCCESSFUL_DELETE,
                    format!(
                        "Stopped the virtual machine by deleting the virtual machine instance {uid}"
                    ),
                )
                .await;
            }
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => {
                ctx.event(
                    &*rs,
                    true,
                    reasons::FAILED_DELETE,
                    format!("Error deleting virtual machine instance {vmi_name}: {e}"),
                )
                .await;
                failure = Some((reasons::FAILED_DELETE, e.to_string()));
            }
        }
    }
    let status = logic::next_status(
        &rs,
        &owned,
        failure.as_ref().map(|(r, m)| (*r, m.as_str())),
        &Time(Timestamp::now()),
    );
    if rs.status.as_ref() != Some(&status) {
        let was_paused = rs
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "ReplicaPaused"));
        let mut updated = (*rs).clone();
        updated.status = Some(status);
        let rs_api: Api<VirtualMachineInstanceReplicaSet> =
            Api::namespaced(ctx.client.clone(), &ns);
        match rs_api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if matches!(code(&e), Some(404 | 409)) => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e.into()),
        }
        let paused = rs.spec.paused == Some(true);
        if paused != was_paused {
            let (reason, note) = if paused {
                ("SuccessfulPaused", "Paused")
            } else {
                ("SuccessfulResumed", "Resumed")
            };
            ctx.event(&*rs, false, reason, note.into()).await;
        }
    }
    if failure.is_some() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(Action::requeue(ctx.config.resync))
}
