//! The VMI controller: for each VMI on this node (label `kubevirt.io/nodeName=<node>`), find its
//! launcher through the pod (`kubevirt.io/created-by=<vmi uid>` on this node; socket
//! `<kubelet root>/pods/<pod uid>/volumes/kubernetes.io~empty-dir/sockets/launcher-sock`), carry
//! out `action::decide`, and write `status::next` back. The launcher is polled every
//! `Config::poll` while the VMI is active (the event stream is not used yet). A restart of
//! virt-handler only re-reads the domains: a running domain is never synced again or stopped.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::v1::{DomainRequest, DomainState, DomainStatus, InfoRequest, SyncRequest};
use launcher_proto::{LauncherClient, SOCKET_NAME};
use tonic::Code;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::action::{self, LauncherAction};
use crate::status::{self, Observed};

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
}

pub struct Context {
    pub client: kube::Client,
    pub config: Config,
    /// When this handler asked each VMI's (by uid) guest to shut down. Lost on restart: the grace
    /// period then starts again from the first reconcile that sees the pending shutdown.
    shutdowns: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
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
    let ctx = Arc::new(Context {
        client,
        config,
        shutdowns: Default::default(),
    });
    let controller = Controller::new(vmis, watcher::Config::default().labels(&selector))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile failed");
            }
        });
    tokio::select! {
        _ = controller => {}
        _ = shutdown => {}
    }
}

fn error_policy(vmi: Arc<VirtualMachineInstance>, err: &Error, ctx: Arc<Context>) -> Action {
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
struct Connection {
    client: LauncherClient<Channel>,
    _dir: Option<std::fs::File>,
}

async fn connect(socket: &Path) -> Result<Connection, Error> {
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
    // A running guest whose launcher exited (QEMU killed, launcher crashed) has failed: no
    // launcher is left to ask, so say it here rather than retrying a dead socket forever.
    if !stopping
        && vmi.status.as_ref().is_some_and(|s| s.phase() == "Running")
        && pod.is_some_and(launcher_exited)
    {
        tracing::info!("the launcher exited under a running guest");
        let current = vmi.status.clone().unwrap_or_default();
        let next = status::next(&current, &Observed::default(), node, Timestamp::now());
        patch_status(ctx, &ns, &name, &current, &next).await?;
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

    let req = DomainRequest { uid: uid.clone() };
    let since_shutdown = {
        let mut shutdowns = ctx
            .shutdowns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match domain.as_ref().filter(|d| d.shutdown_requested) {
            Some(_) => Some(
                shutdowns
                    .entry(uid.clone())
                    .or_insert_with(std::time::Instant::now)
                    .elapsed(),
            ),
            None => {
                shutdowns.remove(&uid);
                None
            }
        }
    };
    match action::decide(vmi, domain.as_ref(), since_shutdown) {
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
            tracing::info!("shutting the domain down");
            let d = client
                .shutdown(req.clone())
                .await
                .map_err(rpc("Shutdown"))?;
            ctx.shutdowns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(uid.clone(), std::time::Instant::now());
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
            domain = None;
        }
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
        domain: domain.as_ref(),
        info: Some(&info),
        guest: guest.as_ref(),
    };
    let mut next = status::next(&current, &observed, node, Timestamp::now());
    if stopping && domain.is_none() {
        next.phase = current.phase.clone();
    }
    patch_status(ctx, &ns, &name, &current, &next).await?;
    Ok(Action::requeue(ctx.config.poll))
}

/// Writes `next` when it differs from `current`.
async fn patch_status(
    ctx: &Context,
    ns: &str,
    name: &str,
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
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(ctx.client.clone(), ns);
    vmis.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": value })),
    )
    .await
    .map_err(Error::UpdateStatus)?;
    if next.phase != current.phase {
        tracing::info!(from = current.phase(), to = next.phase(), "VMI phase");
    }
    Ok(())
}

/// Has the launcher's container ended (or its pod finished)? Its domain is gone with it.
fn launcher_exited(pod: &Pod) -> bool {
    let phase_done = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let compute_done = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.name == "compute")
        .any(|c| c.state.as_ref().is_some_and(|st| st.terminated.is_some()));
    phase_done || compute_done
}
