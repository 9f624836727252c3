//! The embedded cluster's scheduler. It binds pending pods whose `schedulerName` is
//! `default-scheduler` to a node through `pods/<name>/binding`, honouring `nodeSelector`,
//! required node affinity, taints and tolerations, cordons and resource requests against each
//! node's allocatable; a pod that fits nowhere gets `PodScheduled=False`, reason `Unschedulable`,
//! with kube-scheduler's `0/N nodes are available: ...` message and a `FailedScheduling` event.
//!
//! The decisions are pure ([`predicates`]); this module is the controller around them.

pub mod nodelifecycle;
pub mod predicates;
pub mod quantity;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Mutex;

use predicates::{Decision, Resources};

/// The scheduler name this scheduler serves (the API server's default).
pub const SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("pod {0} has no namespace")]
    NoNamespace(String),
}

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    recorder: Recorder,
    pods: Store<Pod>,
    /// Pods bound by us that the pod cache does not show bound yet: uid → (node, requests).
    /// Guarded together with the decision so two pods never take the same room.
    assumed: Mutex<HashMap<String, (String, Resources)>>,
    /// How long an unschedulable pod waits before it is tried again without any change.
    pub retry: Duration,
}

fn is_ours_and_pending(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let name = spec.scheduler_name.as_deref().unwrap_or(SCHEDULER_NAME);
    name == SCHEDULER_NAME
        && spec.node_name.as_deref().unwrap_or("").is_empty()
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// One pod: bind it or say why not.
pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !is_ours_and_pending(&pod) {
        return Ok(Action::await_change());
    }
    let name = pod.name_any();
    let ns = pod
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let uid = pod.uid().unwrap_or_default();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    let mut assumed = ctx.assumed.lock().await;
    let node_list = nodes.list(&ListParams::default()).await?.items;
    let cached = ctx.pods.state();
    // Drop assumptions the cache has caught up with (or whose pod is gone).
    assumed.retain(|uid, _| {
        cached.iter().any(|p| {
            p.uid().as_deref() == Some(uid.as_str())
                && p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none()
        })
    });
    let mut usage = predicates::usage_by_node(cached.iter().map(|p| p.as_ref()));
    for (node, requests) in assumed.values() {
        usage.entry(node.clone()).or_default().add(requests);
    }
    match predicates::schedule(&pod, &node_list, &usage) {
        Decision::Bind(node) => {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..ObjectReference::default()
                },
            };
            match pods
                .create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
            {
                Ok(_) => {}
                // Already bound or being deleted: the next event settles it.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                    return Ok(Action::await_change());
                }
                Err(e) => return Err(e.into()),
            }
            if let Some(spec) = &pod.spec {
                assumed.insert(uid.clone(), (node.clone(), predicates::pod_requests(spec)));
            }
            drop(assumed);
            tracing::info!(namespace = %ns, name = %name, uid = %uid, node = %node, "bound pod");
            publish(
                &ctx,
                &pod,
                EventType::Normal,
                "Scheduled",
                format!("Successfully assigned {ns}/{name} to {node}"),
            )
            .await;
            Ok(Action::await_change())
        }
        Decision::Unschedulable(message) => {
            drop(assumed);
            let current = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
            let unchanged = current.is_some_and(|c| {
                c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref() == Some(message.as_str())
            });
            if !unchanged {
                let now = k8s_openapi::jiff::Timestamp::now();
                let patch = serde_json::json!({"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": message, "lastProbeTime": null,
                    "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                }]}});
                pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await?;
                tracing::info!(namespace = %ns, name = %name, uid = %uid, %message, "pod unschedulable");
                publish(&ctx, &pod, EventType::Warning, "FailedScheduling", message).await;
            }
            Ok(Action::requeue(ctx.retry))
        }
    }
}

async fn publish(ctx: &Context, pod: &Pod, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Binding".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &pod.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

fn error_policy(_pod: Arc<Pod>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "scheduling attempt failed");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the scheduler until the watches end (they normally never do).
pub async fn run(client: Client, retry: Duration) {
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(pods, watcher::Config::default());
    let store = controller.store();
    let store_for_nodes = store.clone();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: SCHEDULER_NAME.into(),
                instance: None,
            },
        ),
        client,
        pods: store,
        assumed: Mutex::new(HashMap::new()),
        retry,
    });
    controller
        // A node that appears or changes may make pending pods fit.
        .watches(nodes, watcher::Config::default(), move |_node: Node| {
            store_for_nodes
                .state()
                .into_iter()
                .filter(|p| is_ours_and_pending(p))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile");
            }
        })
        .await;
}

/// `virt-cluster scheduler` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig of the API server.
    #[arg(long)]
    pub kubeconfig: std::path::PathBuf,
    /// Seconds before an unschedulable pod is tried again without any change.
    #[arg(long, default_value_t = 10)]
    pub retry_seconds: u64,
    /// Seconds without a Lease renewal before a node is marked NotReady and unreachable.
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_seconds: u64,
}

/// Builds a client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<Client, kube::Error> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(kube::Error::InferKubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(kube::Error::InferKubeconfig)?;
    Client::try_from(cfg)
}

/// Entry point of `virt-cluster scheduler`: runs until SIGTERM or Ctrl-C.
pub async fn main(args: Args) -> Result<(), kube::Error> {
    let client = client_from_kubeconfig(&args.kubeconfig).await?;
    println!("scheduler running");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| kube::Error::Service(Box::new(e)))?;
    let lifecycle = tokio::spawn(nodelifecycle::run(
        client.clone(),
        Duration::from_secs(args.node_monitor_grace_seconds),
        Duration::from_secs(5),
    ));
    tokio::select! {
        _ = run(client, Duration::from_secs(args.retry_seconds)) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    lifecycle.abort();
    Ok(())
}
