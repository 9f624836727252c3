//! The controllers, with kube-rs: one watch per kind feeds a reflector store and fans out to
//! every controller interested in that kind (shared watches), and each controller's reconcile
//! carries out what the pure modules decide.

pub mod migration;
pub mod node;
pub mod replicaset;
pub mod vm;
pub mod vmi;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use kubevirt_api::config::ClusterConfig;
use kubevirt_api::v1::{
    VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration,
    VirtualMachineInstanceReplicaSet,
};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::vmi::pod::LauncherConfig;

/// Errors of a reconcile; the controller retries after a back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("encoding failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    /// An object changed after it was read (a write made against it was refused); the next
    /// look, soon, reads the newer one.
    #[error("{0} changed since it was read")]
    Stale(&'static str),
}

/// virt-controller's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub launcher: LauncherConfig,
    pub cluster: ClusterConfig,
    /// How long a node may go without a virt-handler heartbeat before its instances fail.
    pub heartbeat_timeout: Duration,
    /// How often the node controller looks again.
    pub node_recheck: Duration,
    /// How often every object is looked at again even without a change.
    pub resync: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            launcher: LauncherConfig::default(),
            cluster: ClusterConfig::default(),
            heartbeat_timeout: Duration::from_secs(300),
            node_recheck: Duration::from_secs(60),
            resync: Duration::from_secs(300),
        }
    }
}

/// What every reconcile gets: the client, the configuration, the shared stores and the event
/// recorder.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    pub vms: Store<VirtualMachine>,
    pub vmis: Store<VirtualMachineInstance>,
    pub pods: Store<Pod>,
    pub replicasets: Store<VirtualMachineInstanceReplicaSet>,
    pub migrations: Store<VirtualMachineInstanceMigration>,
}

impl Context {
    /// Records an event on `obj` (failures to record are logged, never fatal).
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let reference: ObjectReference = obj.object_ref(&());
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&ev, &reference).await {
            tracing::warn!(%error, reason, "recording an event failed");
        }
    }
}

/// One watch of a kind: its store, and a fan-out of every object it touches (including
/// deleted ones) to the controllers subscribed.
pub struct Informer<K: Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub store: Store<K>,
    writer: Option<reflector::store::Writer<K>>,
    tx: broadcast::Sender<K>,
    api: Api<K>,
    config: watcher::Config,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let (store, writer) = reflector::store();
        let (tx, _) = broadcast::channel(4096);
        Informer {
            store,
            writer: Some(writer),
            tx,
            api,
            config,
        }
    }

    /// A stream of the objects this watch touches, for one controller. Subscribe before
    /// [`Informer::run`] so the initial list is seen.
    pub fn subscribe(&self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let rx = self.tx.subscribe();
        futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(obj) => return Some((Ok(obj), rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a controller fell behind its watch");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Runs the watch until it ends (it retries with back-off on errors).
    pub fn run(mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let writer = self.writer.take();
        let tx = self.tx.clone();
        let api = self.api.clone();
        let config = self.config.clone();
        async move {
            let Some(writer) = writer else {
                return;
            };
            watcher(api, config)
                .default_backoff()
                .reflect(writer)
                .touched_objects()
                .for_each(|res| {
                    match res {
                        Ok(obj) => {
                            let _ = tx.send(obj);
                        }
                        Err(error) => tracing::warn!(%error, "watch error"),
                    }
                    std::future::ready(())
                })
                .await;
        }
    }
}

/// The label every launcher pod carries (the pod watch is limited to it).
pub const LAUNCHER_SELECTOR: &str = "kubevirt.io=virt-launcher";

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let vms = Informer::new(
        Api::<VirtualMachine>::all(client.clone()),
        watcher::Config::default(),
    );
    let vmis = Informer::new(
        Api::<VirtualMachineInstance>::all(client.clone()),
        watcher::Config::default(),
    );
    let pods = Informer::new(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(LAUNCHER_SELECTOR),
    );
    let replicasets = Informer::new(
        Api::<VirtualMachineInstanceReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let migrations = Informer::new(
        Api::<VirtualMachineInstanceMigration>::all(client.clone()),
        watcher::Config::default(),
    );
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "virtualmachine-controller".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        config,
        recorder,
        vms: vms.store.clone(),
        vmis: vmis.store.clone(),
        pods: pods.store.clone(),
        replicasets: replicasets.store.clone(),
        migrations: migrations.store.clone(),
    });
    let vm_controller = vm::controller(ctx.clone(), &vms, &vmis);
    let vmi_controller = vmi::controller(ctx.clone(), &vmis, &pods);
    let rs_controller = replicaset::controller(ctx.clone(), &replicasets, &vmis);
    let migration_controller = migration::controller(ctx.clone(), &migrations, &vmis, &pods);
    let informers = futures_util::future::join5(
        vms.run(),
        vmis.run(),
        pods.run(),
        replicasets.run(),
        migrations.run(),
    );
    let node_controller = node::controller(ctx.clone());
    let controllers = futures_util::future::join5(
        vm_controller,
        vmi_controller,
        rs_controller,
        node_controller,
        migration_controller,
    );
    tokio::select! {
        _ = informers => {}
        _ = controllers => {}
        _ = shutdown => {}
    }
    Ok(())
}

/// Whether the API serves a kind yet (CRDs may be installed after we start).
pub async fn served<K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug>(
    api: &Api<K>,
) -> bool {
    api.list(&ListParams::default().limit(1)).await.is_ok()
}
