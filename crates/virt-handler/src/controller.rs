//! The VMI controller: for each VMI on this node (label `kubevirt.io/nodeName=<node>`), find its
//! launcher through the pod (`kubevirt.io/created-by=<vmi uid>` on this node; socket
//! `<kubelet root>/pods/<pod uid>/volumes/kubernetes.io~empty-dir/sockets/launcher-sock`), carry
//! out `action::decide`, and write `status::next` back. Each active VMI's launcher event stream
//! (`watch`) wakes its reconcile when the domain changes; the launcher is also polled every
//! `Config::poll` as a resync. A restart of virt-handler only re-reads the domains: a running
//! domain is never synced again or stopped.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use kubevirt_api::v1::{VirtualMachineInstance, vmi_condition_types};
use launcher_proto::v1::{DomainRequest, DomainState, DomainStatus, InfoRequest, SyncRequest};
use launcher_proto::{LauncherClient, SOCKET_NAME};
use tonic::Code;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::action::{self, LauncherAction};
use crate::events::{self, VmiEvent};
use crate::migration::{self, SourceStep, TargetStep};
use crate::status::{self, Observed};
use crate::watch::Watches;

/// The label virt-controller puts on VMIs handed to a node.
pub const NODE_NAME_LABEL: &str = "kubevirt.io/nodeName";
/// The label on launcher pods naming their VMI's uid.
pub const CREATED_BY_LABEL: &str = "kubevirt.io/created-by";

/// How soon a VMI whose pod is still starting is looked at again.
const STARTING_RETRY: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name.
    pub node: String,
    /// The kubelet's root directory (`/var/lib/kubelet` on a real node).
    pub kubelet_root: PathBuf,
    /// How often an active VMI's launcher is polled.
    pub poll: Duration,
    /// Where migration proxies listen (unspecified: every address, the Node's InternalIP is
    /// published).
    pub listen_address: std::net::IpAddr,
}

pub struct Context {
    pub client: kube::Client,
    pub config: Config,
    /// When this handler asked each VMI's (by uid) guest to shut down. Lost on restart: the grace
    /// period then starts again from the first reconcile that sees the pending shutdown.
    /// Values: the first and the latest press of the power button.
    shutdowns: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, std::time::Instant)>,
    >,
    /// Open migration-target proxies by migration uid, with the VMI's namespace and name.
    migrations: std::sync::Mutex<std::collections::HashMap<String, OpenTarget>>,
    /// Records the VMI events (reporting component `virt-handler`, instance: the node).
    recorder: Recorder,
    /// The launchers' event streams, which wake the reconcile of their VMI.
    watches: Arc<Watches>,
}

impl Context {
    /// Records `event` on `vmi`. A failure to record is logged, never fatal: events are
    /// informational.
    async fn record(&self, vmi: &VirtualMachineInstance, event: VmiEvent) {
        let ev = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(event.message.into_owned()),
            action: event.reason.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&ev, &vmi.object_ref(&())).await {
            tracing::warn!(%error, reason = event.reason, "recording an event failed");
        }
    }
}

/// A migration this node is the target of, with its proxies.
struct OpenTarget {
    namespace: String,
    name: String,
    _proxies: migration::Proxies,
}

impl Context {
    fn target_open(&self, migration_uid: &str) -> bool {
        self.migrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(migration_uid)
    }

    fn close_target(&self, migration_uid: &str) {
        let closed = self
            .migrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(migration_uid);
        if closed.is_some() {
            tracing::info!(migration = %migration_uid, "closed the migration proxies");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("VMI has no {0}")]
    MissingField(&'static str),
    #[error("listing launcher pods: {0}")]
    ListPods(#[source] kube::Error),
    #[error("updating VMI status: {0}")]
    UpdateStatus(#[source] kube::Error),
    #[error("encoding the VMI: {0}")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Connect(#[from] launcher_proto::ConnectError),
    #[error("opening the directory of launcher socket {0}: {1}")]
    OpenSocketDir(PathBuf, #[source] std::io::Error),
    #[error("connecting to launcher socket {0}: timed out")]
    ConnectTimeout(PathBuf),
    #[error("migration proxy: {0}")]
    Proxy(#[source] std::io::Error),
    #[error("reading pod {0}: {1}")]
    GetPod(String, #[source] kube::Error),
    #[error("launcher {call}: {status}")]
    Launcher {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
}

/// The launcher socket of the pod with `pod_uid` under the kubelet root.
pub fn launcher_socket(kubelet_root: &Path, pod_uid: &str) -> PathBuf {
    kubelet_root
        .join("pods")
        .join(pod_uid)
        .join("volumes/kubernetes.io~empty-dir/sockets")
        .join(SOCKET_NAME)
}

/// The launcher pod of the VMI on `node`: the newest one there.
pub fn pick_pod<'a>(pods: &'a [Pod], node: &str) -> Option<&'a Pod> {
    pods.iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|p| p.metadata.uid.is_some())
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Has this VMI not reached Running yet (so Sync would define its domain)?
fn vmi_not_started(vmi: &VirtualMachineInstance) -> bool {
    matches!(
        vmi.status.as_ref().and_then(|s| s.phase.as_deref()),
        None | Some("") | Some("Pending") | Some("Scheduling") | Some("Scheduled")
    )
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |status| Error::Launcher { call, status }
}

/// Runs the controller until `shutdown` completes.
pub async fn run(client: kube::Client, config: Config, shutdown: impl Future<Output = ()>) {
    let vmis: Api<VirtualMachineInstance> = Api::all(client.clone());
    let selector = format!("{NODE_NAME_LABEL}={}", config.node);
    let target_selector = format!("{}={}", migration::TARGET_NODE_LABEL, config.node);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "virt-handler".into(),
            instance: Some(config.node.clone()),
        },
    );
    let (watches, wakes) = Watches::new();
    let ctx = Arc::new(Context {
        client,
        config,
        shutdowns: Default::default(),
        migrations: Default::default(),
        recorder,
        watches: Arc::new(watches),
    });
    let controller = Controller::new(vmis.clone(), watcher::Config::default().labels(&selector))
        .reconcile_on(wakes)
        .run(reconcile, error_policy, Arc::clone(&ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile failed");
            }
        });
    // Incoming migrations: VMIs still owned by another node that move here.
    let targets = Controller::new(vmis, watcher::Config::default().labels(&target_selector))
        .run(reconcile_target, error_policy, Arc::clone(&ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "migration target reconcile failed");
            }
        });
    tokio::select! {
        _ = controller => {}
        _ = targets => {}
        _ = sweep_targets(Arc::clone(&ctx)) => {}
        _ = shutdown => {}
    }
}

/// Closes the proxies of migrations that ended while this node was not told (the label that
/// shows the VMI to this node's target watch goes with the end of the migration).
async fn sweep_targets(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let open: Vec<(String, String, String)> = ctx
            .migrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(uid, t)| (uid.clone(), t.namespace.clone(), t.name.clone()))
            .collect();
        for (uid, ns, name) in open {
            let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
            let done = match vmis.get_opt(&name).await {
                Ok(None) => true,
                Ok(Some(vmi)) => vmi
                    .status
                    .as_ref()
                    .and_then(|s| s.migration_state.as_ref())
                    .is_none_or(|m| {
                        m.migration_uid.as_deref() != Some(&uid) || migration::ended(m)
                    }),
                Err(_) => false,
            };
            if done {
                ctx.close_target(&uid);
            }
        }
    }
}

fn error_policy(vmi: Arc<VirtualMachineInstance>, err: &Error, ctx: Arc<Context>) -> Action {
    if let Error::UpdateStatus(kube::Error::Api(s)) = err
        && s.code == 409
    {
        // Our copy was stale: look again as soon as the store has the newer one.
        tracing::debug!(
            namespace = vmi.namespace().unwrap_or_default(),
            name = vmi.name_any(),
            "status write conflicted; retrying"
        );
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(
        namespace = vmi.namespace().unwrap_or_default(),
        name = vmi.name_any(),
        uid = vmi.uid().unwrap_or_default(),
        node = %ctx.config.node,
        error = %err,
        "reconcile failed"
    );
    Action::requeue(Duration::from_secs(2))
}

/// The longest path a unix socket address holds (`sun_path` is 108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// A path to `socket` short enough for a unix socket address. Paths under a kubelet root are
/// often longer (`/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/sockets/
/// launcher-sock` is 113 bytes), so a longer one goes through the socket's directory opened as
/// a file: `/proc/self/fd/<fd>/<name>`. The returned file must stay open while the path is used.
pub fn addressable(socket: &Path) -> std::io::Result<(PathBuf, Option<std::fs::File>)> {
    if socket.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((socket.to_path_buf(), None));
    }
    let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else {
        return Ok((socket.to_path_buf(), None));
    };
    let file = std::fs::File::open(dir)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    Ok((
        Path::new("/proc/self/fd").join(fd.to_string()).join(name),
        Some(file),
    ))
}

/// A connected launcher client and the directory handle its socket path may need.
pub(crate) struct Connection {
    pub(crate) client: LauncherClient<Channel>,
    _dir: Option<std::fs::File>,
}

pub(crate) async fn connect(socket: &Path) -> Result<Connection, Error> {
    let (path, dir) =
        addressable(socket).map_err(|e| Error::OpenSocketDir(socket.to_path_buf(), e))?;
    match tokio::time::timeout(Duration::from_secs(5), launcher_proto::connect(&path)).await {
        Ok(r) => Ok(Connection {
            client: r?,
            _dir: dir,
        }),
        Err(_) => Err(Error::ConnectTimeout(socket.to_path_buf())),
    }
}

/// The domain, or `None` when the launcher has none (nothing synced, or deleted).
async fn get_domain(
    client: &mut LauncherClient<Channel>,
    uid: &str,
) -> Result<Option<DomainStatus>, Error> {
    let req = DomainRequest { uid: uid.into() };
    match client.get_domain(req).await {
        Ok(r) => {
            let d = r.into_inner();
            Ok((d.state() != DomainState::None).then_some(d))
        }
        // Nothing synced yet.
        Err(s) if s.code() == Code::FailedPrecondition => Ok(None),
        Err(s) => Err(rpc("GetDomain")(s)),
    }
}

pub async fn reconcile(
    vmi: Arc<VirtualMachineInstance>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = vmi.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = vmi.name_any();
    let uid = vmi.uid().ok_or(Error::MissingField("uid"))?;
    let node = &ctx.config.node;
    let span = tracing::info_span!("vmi", namespace = %ns, name = %name, uid = %uid, node = %node);
    reconcile_vmi(&vmi, &ctx, ns, name, uid)
        .instrument(span)
        .await
}

async fn reconcile_vmi(
    vmi: &VirtualMachineInstance,
    ctx: &Context,
    ns: String,
    name: String,
    uid: String,
) -> Result<Action, Error> {
    let node = &ctx.config.node;
    let stopping = action::stopping(vmi);
    let phase = vmi
        .status
        .as_ref()
        .map(|s| s.phase())
        .unwrap_or("")
        .to_string();
    let active_phase = matches!(
        phase.as_str(),
        kubevirt_api::v1::vmi_phases::SCHEDULED | kubevirt_api::v1::vmi_phases::RUNNING
    );
    if !stopping && !active_phase {
        ctx.watches.stop(&uid);
        return Ok(Action::await_change());
    }

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{CREATED_BY_LABEL}={uid}")))
        .await
        .map_err(Error::ListPods)?;
    let pod = pick_pod(&list.items, node);
    let container_disks = pod
        .map(|p| crate::containerdisk::data_container_pids(vmi, p))
        .unwrap_or_default();
    let Some(pod_uid) = pod.and_then(|p| p.metadata.uid.clone()) else {
        tracing::debug!("no launcher pod on this node");
        return Ok(if stopping {
            Action::await_change()
        } else {
            Action::requeue(ctx.config.poll)
        });
    };
    // A Running VMI whose launcher exited: the launcher leaves once its guest stopped (shut
    // down, killed, crashed) or when it failed itself, and no one is left to ask, so its exit
    // code tells the outcome (rather than retrying a dead socket forever).
    if vmi.status.as_ref().is_some_and(|s| s.phase() == "Running")
        && let Some(code) = pod.and_then(launcher_exit)
    {
        tracing::info!(exit_code = ?code, "the launcher exited");
        ctx.watches.stop(&uid);
        let current = vmi.status.clone().unwrap_or_default();
        let last = status::domain_after_exit(code);
        let observed = Observed {
            domain: Some(&last),
            ..Default::default()
        };
        let next = status::next(&current, &observed, node, Timestamp::now());
        patch_status(ctx, vmi, &current, &next).await?;
        return Ok(Action::await_change());
    }
    let socket = launcher_socket(&ctx.config.kubelet_root, &pod_uid);
    // A starting pod is looked at again soon rather than at the next poll: its launcher is
    // ready about 100 ms after it starts, and the guest's start waits for this handler.
    if !socket.exists() {
        tracing::debug!(socket = %socket.display(), "launcher socket not there (yet)");
        return Ok(if stopping {
            Action::await_change()
        } else {
            Action::requeue(STARTING_RETRY)
        });
    }
    let wanted_disks = vmi
        .spec
        .volumes
        .iter()
        .filter(|v| v.volume_source.container_disk.is_some())
        .count();
    if !stopping && vmi_not_started(vmi) && container_disks.len() < wanted_disks {
        tracing::debug!("containerDisk containers not running (yet)");
        return Ok(Action::requeue(STARTING_RETRY));
    }
    let mut conn = match connect(&socket).await {
        Ok(c) => c,
        // A launcher that already exited after Delete leaves its socket behind.
        Err(e) if stopping => {
            tracing::debug!(error = %e, "launcher gone");
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    let client = &mut conn.client;
    let info = client
        .info(InfoRequest {})
        .await
        .map_err(rpc("Info"))?
        .into_inner();
    let mut domain = get_domain(client, &uid).await?;
    // From here on a change of the domain wakes this reconcile without waiting for the poll.
    ctx.watches.ensure(ObjectRef::from_obj(vmi), &uid, &socket);

    if !stopping {
        match migration::source_step(vmi, node) {
            SourceStep::Nothing => {}
            SourceStep::Start {
                migration_uid,
                target_node,
                address,
                ports,
            } => {
                let out = Outgoing {
                    ns: &ns,
                    name: &name,
                    uid: &uid,
                    migration_uid: &migration_uid,
                    target_node: &target_node,
                };
                return migrate_out(ctx, vmi, client, &pod_uid, &out, address, ports).await;
            }
            SourceStep::Recover {
                migration_uid,
                target_node,
            } => {
                let out = Outgoing {
                    ns: &ns,
                    name: &name,
                    uid: &uid,
                    migration_uid: &migration_uid,
                    target_node: &target_node,
                };
                let moved = domain.as_ref().is_some_and(|d| {
                    d.state() == DomainState::Shutoff
                        && d.reason() == launcher_proto::v1::StateReason::Migration
                });
                let outcome = if moved {
                    Ok(())
                } else {
                    Err("the migration was interrupted: virt-handler restarted".to_string())
                };
                record_outcome(ctx, client, &out, outcome).await?;
                return Ok(Action::requeue(ctx.config.poll));
            }
        }
    }

    let req = DomainRequest { uid: uid.clone() };
    let since_shutdown = {
        let mut shutdowns = ctx
            .shutdowns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match domain.as_ref().filter(|d| d.shutdown_requested) {
            Some(_) => {
                let now = std::time::Instant::now();
                let (first, last) = *shutdowns.entry(uid.clone()).or_insert((now, now));
                Some(action::ShutdownTimes {
                    since_first: first.elapsed(),
                    since_last: last.elapsed(),
                })
            }
            None => {
                shutdowns.remove(&uid);
                None
            }
        }
    };
    let launcher_action = action::decide(vmi, domain.as_ref(), since_shutdown);
    // The stopped domain this handler just deleted: its last state (shut down, or crashed) is
    // the VMI's outcome, so a deleted VMI ends Succeeded or Failed as upstream's does.
    let mut deleted: Option<DomainStatus> = None;
    match launcher_action {
        LauncherAction::Nothing => {}
        LauncherAction::Sync => {
            let vmi_json = serde_json::to_vec(vmi).map_err(Error::Encode)?;
            let container_disks = crate::containerdisk::resolve(&container_disks);
            tracing::info!(?container_disks, "syncing the VMI to its launcher");
            let d = client
                .sync(SyncRequest {
                    vmi_json,
                    container_disks,
                })
                .await
                .map_err(rpc("Sync"))?
                .into_inner();
            domain = Some(d);
        }
        LauncherAction::Shutdown => {
            tracing::info!(again = since_shutdown.is_some(), "shutting the domain down");
            let d = client
                .shutdown(req.clone())
                .await
                .map_err(rpc("Shutdown"))?;
            let now = std::time::Instant::now();
            ctx.shutdowns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(uid.clone())
                .and_modify(|(_, last)| *last = now)
                .or_insert((now, now));
            domain = Some(d.into_inner());
        }
        LauncherAction::Kill => {
            tracing::info!("grace period over: killing the domain");
            let d = client.kill(req.clone()).await.map_err(rpc("Kill"))?;
            domain = Some(d.into_inner());
        }
        LauncherAction::Delete => {
            tracing::info!("deleting the domain");
            client.delete(req.clone()).await.map_err(rpc("Delete"))?;
            ctx.shutdowns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&uid);
            deleted = domain.take();
        }
    }
    // Recorded once the call went through (an error returned above records nothing).
    let repeated = launcher_action == LauncherAction::Shutdown && since_shutdown.is_some();
    if let Some(ev) = events::for_action(launcher_action).filter(|_| !repeated) {
        ctx.record(vmi, ev).await;
    }

    let guest = match domain.as_ref().filter(|d| d.is_active()) {
        Some(_) => client
            .get_guest_info(req.clone())
            .await
            .ok()
            .map(|r| r.into_inner()),
        None => None,
    };
    let current = vmi.status.clone().unwrap_or_default();
    // A stopping VMI's phase is not ours to move past a domain we deleted ourselves.
    let observed = Observed {
        domain: domain.as_ref().or(deleted.as_ref()),
        info: Some(&info),
        guest: guest.as_ref(),
    };
    let mut next = status::next(&current, &observed, node, Timestamp::now());
    // A stopping VMI whose domain is already gone (deleted by an earlier reconcile, or never
    // there): its phase is not ours to move on to Failed.
    if stopping && observed.domain.is_none() {
        next.phase = current.phase.clone();
    }
    patch_status(ctx, vmi, &current, &next).await?;
    Ok(Action::requeue(ctx.config.poll))
}

/// Writes `next` when it differs from `current`.
async fn patch_status(
    ctx: &Context,
    vmi: &VirtualMachineInstance,
    current: &kubevirt_api::v1::VirtualMachineInstanceStatus,
    next: &kubevirt_api::v1::VirtualMachineInstanceStatus,
) -> Result<(), Error> {
    if next == current {
        return Ok(());
    }
    let mut value = serde_json::to_value(next).map_err(Error::Encode)?;
    if let Some(obj) = value.as_object_mut() {
        // A merge patch leaves out what serialization skips: clear emptied lists.
        obj.entry("conditions")
            .or_insert_with(|| serde_json::json!([]));
        obj.entry("interfaces")
            .or_insert_with(|| serde_json::json!([]));
    }
    let ns = vmi.namespace().ok_or(Error::MissingField("namespace"))?;
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), &ns);
    // The resourceVersion makes a write computed from a stale copy fail (409) instead of
    // replacing lists (conditions) that virt-controller changed meanwhile.
    let body = serde_json::json!({
        "metadata": {"resourceVersion": vmi.resource_version()},
        "status": value,
    });
    vmis.patch(
        &vmi.name_any(),
        &PatchParams::default(),
        &Patch::Merge(body),
    )
    .await
    .map_err(Error::UpdateStatus)?;
    if next.phase != current.phase {
        tracing::info!(from = current.phase(), to = next.phase(), "VMI phase");
        if let Some(ev) = events::for_phase_change(current.phase(), next.phase()) {
            ctx.record(vmi, ev).await;
        }
    }
    let access = vmi_condition_types::ACCESS_CREDENTIALS_SYNCHRONIZED;
    if let Some(ev) =
        events::for_access_credentials(current.condition(access), next.condition(access))
    {
        ctx.record(vmi, ev).await;
    }
    Ok(())
}

/// Has the launcher's container ended (or its pod finished)? Its domain is gone with it.
/// `Some(exit code)` when it has (the code when the container's status gives one).
fn launcher_exit(pod: &Pod) -> Option<Option<i32>> {
    let status = pod.status.as_ref()?;
    let compute = status
        .container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == "compute")
        .and_then(|c| c.state.as_ref()?.terminated.as_ref());
    if let Some(t) = compute {
        return Some(Some(t.exit_code));
    }
    match status.phase.as_deref() {
        Some("Succeeded") => Some(Some(launcher_proto::exit_code::GUEST_SHUTDOWN)),
        Some("Failed") => Some(None),
        _ => None,
    }
}

/// The migration a source handler drives.
struct Outgoing<'a> {
    ns: &'a str,
    name: &'a str,
    uid: &'a str,
    migration_uid: &'a str,
    target_node: &'a str,
}

fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())
}

/// A merge patch of the VMI for the migration `migration_uid` (no status subresource on VMIs,
/// as upstream: status and labels change together, in one write). It is written only while the
/// VMI's `migrationState` still belongs to that migration, and against the resourceVersion that
/// was checked, so a handler that is late (a restart, a slow Migrate call) cannot stamp its
/// outcome onto a newer migration; a concurrent change gives 409, which is retried.
async fn patch_vmi(
    ctx: &Context,
    ns: &str,
    name: &str,
    migration_uid: &str,
    mut body: serde_json::Value,
) -> Result<(), Error> {
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), ns);
    let Some(current) = vmis.get_opt(name).await.map_err(Error::UpdateStatus)? else {
        return Ok(());
    };
    let owner = migration::state(&current).and_then(|m| m.migration_uid.as_deref());
    if owner != Some(migration_uid) {
        tracing::warn!(
            namespace = ns,
            name,
            migration = migration_uid,
            current = owner.unwrap_or_default(),
            "the VMI's migration state belongs to another migration; not writing it"
        );
        return Ok(());
    }
    body["metadata"]["resourceVersion"] = current.metadata.resource_version.clone().into();
    vmis.patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map(drop)
        .map_err(Error::UpdateStatus)
}

/// Source side: proxies in the source pod to the target node, the launcher's Migrate, and the
/// outcome on the VMI.
async fn migrate_out(
    ctx: &Context,
    vmi: &VirtualMachineInstance,
    client: &mut LauncherClient<Channel>,
    pod_uid: &str,
    out: &Outgoing<'_>,
    address: std::net::IpAddr,
    ports: migration::TargetPorts,
) -> Result<Action, Error> {
    use launcher_proto::migration_sockets as names;
    let dir = launcher_socket(&ctx.config.kubelet_root, pod_uid)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut proxies = migration::Proxies::default();
    for (name, port) in [
        (names::LIBVIRT, ports.libvirt),
        (names::MEMORY, ports.memory),
        (names::DISKS, ports.disks),
    ] {
        let task =
            migration::unix_to_tcp(&dir.join(name), std::net::SocketAddr::new(address, port))
                .map_err(Error::Proxy)?;
        proxies.push(task);
    }
    patch_vmi(
        ctx,
        out.ns,
        out.name,
        out.migration_uid,
        serde_json::json!({"status": {"migrationState": {"startTimestamp": now_time()}}}),
    )
    .await?;
    tracing::info!(
        migration = %out.migration_uid,
        target_node = %out.target_node,
        target = %address,
        "migrating the domain"
    );
    let started = std::time::Instant::now();
    let res = client
        .migrate(launcher_proto::v1::MigrateRequest {
            uid: out.uid.to_string(),
            libvirt_socket: names::LIBVIRT.into(),
            migration_socket: names::MEMORY.into(),
            disks_socket: names::DISKS.into(),
            bandwidth_mib: migration::bandwidth_mib(vmi),
            completion_timeout_seconds: migration::completion_timeout_seconds(vmi),
        })
        .await;
    drop(proxies);
    let outcome = match res {
        Ok(_) => {
            tracing::info!(
                migration = %out.migration_uid,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "migration completed"
            );
            Ok(())
        }
        Err(s) => {
            tracing::warn!(migration = %out.migration_uid, error = %s.message(), "migration failed");
            Err(s.message().to_string())
        }
    };
    record_outcome(ctx, client, out, outcome).await?;
    Ok(Action::requeue(ctx.config.poll))
}

/// Writes how the migration ended. On success the VMI moves to the target node (status, then
/// the label that hands it to the target's handler) and the source launcher is let go.
async fn record_outcome(
    ctx: &Context,
    client: &mut LauncherClient<Channel>,
    out: &Outgoing<'_>,
    outcome: Result<(), String>,
) -> Result<(), Error> {
    let now = now_time();
    match outcome {
        Ok(()) => {
            patch_vmi(
                ctx,
                out.ns,
                out.name,
                out.migration_uid,
                serde_json::json!({
                    "metadata": {"labels": {
                        NODE_NAME_LABEL: out.target_node,
                        migration::TARGET_NODE_LABEL: null,
                    }},
                    "status": {
                        "nodeName": out.target_node,
                        "migrationState": {"completed": true, "endTimestamp": now},
                    },
                }),
            )
            .await?;
            let _ = client
                .delete(DomainRequest {
                    uid: out.uid.to_string(),
                })
                .await;
        }
        Err(reason) => {
            // A cancelled migration (the abort was asked for while this handler waited on
            // the launcher) ended as asked: say so.
            let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), out.ns);
            let aborted = vmis
                .get_opt(out.name)
                .await
                .ok()
                .flatten()
                .is_some_and(|v| {
                    migration::state(&v).is_some_and(|m| {
                        m.abort_requested == Some(true)
                            && m.migration_uid.as_deref() == Some(out.migration_uid)
                    })
                });
            let mut state = serde_json::json!({
                "failed": true,
                "failureReason": reason,
                "endTimestamp": now,
            });
            if aborted {
                state["failureReason"] = format!("Migration aborted: {reason}").into();
                state["abortStatus"] = kubevirt_api::v1::migration_abort_statuses::SUCCEEDED.into();
            }
            patch_vmi(
                ctx,
                out.ns,
                out.name,
                out.migration_uid,
                serde_json::json!({
                    "metadata": {"labels": {migration::TARGET_NODE_LABEL: null}},
                    "status": {"migrationState": state},
                }),
            )
            .await?;
        }
    }
    Ok(())
}

/// Target side of a migration: prepare the target launcher and open the proxies.
pub async fn reconcile_target(
    vmi: Arc<VirtualMachineInstance>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = vmi.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = vmi.name_any();
    let uid = vmi.uid().ok_or(Error::MissingField("uid"))?;
    let node = ctx.config.node.clone();
    let span = tracing::info_span!("migration-target", namespace = %ns, name = %name, uid = %uid, node = %node);
    async {
        let open = vmi
            .status
            .as_ref()
            .and_then(|s| s.migration_state.as_ref())
            .and_then(|m| m.migration_uid.as_deref())
            .is_some_and(|m| ctx.target_open(m));
        match migration::target_step(&vmi, &node, open) {
            TargetStep::Nothing => Ok(Action::await_change()),
            TargetStep::Ended { migration_uid } => {
                ctx.close_target(&migration_uid);
                Ok(Action::await_change())
            }
            TargetStep::Wait { .. } => Ok(Action::requeue(ctx.config.poll)),
            TargetStep::Prepare { migration_uid, pod } => {
                prepare_target(&ctx, &vmi, &ns, &name, &migration_uid, &pod).await
            }
            TargetStep::Abort { migration_uid, pod } => {
                ctx.close_target(&migration_uid);
                abort_target(&ctx, &ns, &uid, &pod).await;
                Ok(Action::requeue(ctx.config.poll))
            }
        }
    }
    .instrument(span)
    .await
}

/// Stops the incoming guest in the target pod's launcher (a cancelled migration). Best effort
/// and repeated until the source records the outcome: before the guest arrives, and after its
/// launcher exited, there is nothing to stop.
async fn abort_target(ctx: &Context, ns: &str, vmi_uid: &str, pod_name: &str) {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod_uid = match pods.get_opt(pod_name).await {
        Ok(Some(p)) => p.metadata.uid,
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(pod = pod_name, error = %e, "reading the target pod");
            None
        }
    };
    let Some(pod_uid) = pod_uid else {
        return;
    };
    let socket = launcher_socket(&ctx.config.kubelet_root, &pod_uid);
    let Ok(mut conn) = connect(&socket).await else {
        return;
    };
    match conn
        .client
        .kill(DomainRequest {
            uid: vmi_uid.to_string(),
        })
        .await
    {
        Ok(_) => tracing::info!(
            pod = pod_name,
            "migration cancelled: stopped the incoming guest"
        ),
        Err(e) => {
            tracing::debug!(pod = pod_name, error = %e.message(), "no incoming guest to stop")
        }
    }
}

async fn prepare_target(
    ctx: &Context,
    vmi: &VirtualMachineInstance,
    ns: &str,
    name: &str,
    migration_uid: &str,
    pod_name: &str,
) -> Result<Action, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let Some(pod) = pods
        .get_opt(pod_name)
        .await
        .map_err(|e| Error::GetPod(pod_name.to_string(), e))?
    else {
        return Ok(Action::requeue(STARTING_RETRY));
    };
    let Some(pod_uid) = pod.metadata.uid.clone() else {
        return Ok(Action::requeue(STARTING_RETRY));
    };
    let socket = launcher_socket(&ctx.config.kubelet_root, &pod_uid);
    let pids = crate::containerdisk::data_container_pids(vmi, &pod);
    let wanted = vmi
        .spec
        .volumes
        .iter()
        .filter(|v| v.volume_source.container_disk.is_some())
        .count();
    if !socket.exists() || pids.len() < wanted {
        tracing::debug!("target launcher or its containerDisks not ready (yet)");
        return Ok(Action::requeue(STARTING_RETRY));
    }
    let mut conn = connect(&socket).await?;
    let vmi_json = serde_json::to_vec(vmi).map_err(Error::Encode)?;
    let target = conn
        .client
        .prepare_migration_target(SyncRequest {
            vmi_json,
            container_disks: crate::containerdisk::resolve(&pids),
        })
        .await
        .map_err(rpc("PrepareMigrationTarget"))?
        .into_inner();
    let dir = socket.parent().map(Path::to_path_buf).unwrap_or_default();
    let ip = ctx.config.listen_address;
    let mut proxies = migration::Proxies::default();
    let mut port = |task: (u16, tokio::task::JoinHandle<()>)| {
        proxies.push(task.1);
        task.0
    };
    let ports = migration::TargetPorts {
        libvirt: port(
            migration::tcp_to_unix(ip, dir.join(&target.libvirt_socket))
                .await
                .map_err(Error::Proxy)?,
        ),
        memory: port(
            migration::tcp_to_unix(ip, dir.join(&target.migration_socket))
                .await
                .map_err(Error::Proxy)?,
        ),
        disks: port(
            migration::tcp_to_unix(ip, dir.join(&target.disks_socket))
                .await
                .map_err(Error::Proxy)?,
        ),
    };
    let address = if ip.is_unspecified() {
        crate::server::node_ip(&ctx.client, &ctx.config.node)
            .await
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        ip
    };
    ctx.migrations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(
            migration_uid.to_string(),
            OpenTarget {
                namespace: ns.to_string(),
                name: name.to_string(),
                _proxies: proxies,
            },
        );
    patch_vmi(
        ctx,
        ns,
        name,
        migration_uid,
        serde_json::json!({"status": {"migrationState": {
            "targetNodeAddress": address.to_string(),
            "targetDirectMigrationNodePorts": ports.to_map(),
        }}}),
    )
    .await?;
    tracing::info!(migration = %migration_uid, %address, ?ports, "migration target ready");
    Ok(Action::requeue(ctx.config.poll))
}
