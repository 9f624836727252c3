//! The node controller: fails instances stranded on nodes whose virt-handler stopped
//! heartbeating (see [`crate::node`]), and marks such nodes unschedulable for VMs.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kubevirt_api::v1::{VirtualMachineInstance, vmi_phases};
use serde_json::json;

use super::{Context, Error};
use crate::names::{self, reasons};
use crate::node as logic;

/// The node controller (its own watch of Nodes; instances and pods come from the shared
/// stores).
pub fn controller(ctx: Arc<Context>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    Controller::new(nodes, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| {
            if let Err(error) = res {
                tracing::debug!(%error, "node reconcile");
            }
            std::future::ready(())
        })
}

fn error_policy(node: Arc<Node>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(node = node.name_any(), %error, "checking the node failed");
    Action::requeue(Duration::from_secs(5))
}

/// Checks one node's heartbeat and fails its stranded instances.
pub async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = node.name_any();
    let recheck = Action::requeue(ctx.config.node_recheck);
    if !logic::unresponsive(Some(&node), Timestamp::now(), ctx.config.heartbeat_timeout) {
        return Ok(recheck);
    }
    if logic::schedulable(&node) {
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let patch = json!({"metadata": {"labels": {names::NODE_SCHEDULABLE_LABEL: "false"}}});
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        ctx.event(
            &*node,
            false,
            reasons::NODE_UNRESPONSIVE,
            "virt-handler is not responsive, marking node as unresponsive".into(),
        )
        .await;
    }
    let vmis = ctx.vmis.state();
    let vmi_refs: Vec<&VirtualMachineInstance> = vmis.iter().map(|v| &**v).collect();
    let pods = ctx.pods.state();
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
    for vmi in logic::stuck_instances(&name, Some(&node), &vmi_refs, &pod_refs) {
        ctx.event(
            vmi,
            false,
            reasons::NODE_UNRESPONSIVE,
            format!("virt-handler on node {name} is not responsive, marking VMI as failed"),
        )
        .await;
        tracing::info!(namespace = vmi.namespace().unwrap_or_default(), name = vmi.name_any(), node = %name, "failing an instance on an unresponsive node");
        let api: Api<VirtualMachineInstance> =
            Api::namespaced(ctx.client.clone(), &vmi.namespace().unwrap_or_default());
        let patch =
            json!({"status": {"phase": vmi_phases::FAILED, "reason": reasons::NODE_UNRESPONSIVE}});
        api.patch(
            &vmi.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(recheck)
}
