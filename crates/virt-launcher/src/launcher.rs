//! The launcher proper: one VMI, its domain, and the state the gRPC calls act on.
//!
//! Lifecycle: Sync prepares volumes and the network, converts the VMI and starts the domain; a
//! monitor polls libvirt's state (every 200 ms, in-process in embed mode) and publishes each
//! change as an event; when the domain stops for good the launcher cleans up (undefines the
//! domain, removes overlays and ISOs, stops DHCP), sends a final event with its exit code and
//! asks `main` to exit. SIGTERM asks the guest to shut down (ACPI) and destroys it when the
//! grace period runs out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::migration_sockets;
use launcher_proto::v1::{
    AccessCredentialStatus, BlockStats, DomainEvent, DomainState, DomainStats, DomainStatus,
    EventType, GuestFilesystems, GuestInfo, GuestUsers, InfoResponse, InterfaceStatus,
    MigrateRequest, MigrationTarget, NetStats, StateReason,
};
use tokio::sync::{Mutex, broadcast, watch};
use tracing::{Instrument, info, warn};

use crate::access;
use crate::agent;
use crate::converter::{self, ConverterContext, EfiFirmware, InterfaceTarget};
use crate::kvm::Detection;
use crate::libvirt::Libvirt;
use crate::network::{self, Network};
use crate::status::{self, exit_code};
use crate::volumes::{self, HostPaths};

/// File names inside the pod's sockets directory.
pub mod socket_names {
    pub const LAUNCHER: &str = launcher_proto::SOCKET_NAME;
    /// The serial console: a unix stream socket carrying the guest's ttyS0.
    pub const SERIAL: &str = "virt-serial0";
    /// Everything the serial console printed.
    pub const SERIAL_LOG: &str = "virt-serial0-log";
    /// The VNC server (RFB over a unix socket).
    pub const VNC: &str = "virt-vnc";
}

/// How often the monitor reads the domain state.
const POLL: Duration = Duration::from_millis(200);
/// How often the guest-agent access credentials are checked against their Secrets.
const ACCESS_POLL: Duration = Duration::from_secs(2);
/// Consecutive failed state reads after which the launcher gives up on libvirt.
const MAX_POLL_FAILURES: u32 = 25;

#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    /// The VMI's uid; Sync refuses a VMI with another uid when set.
    pub uid: String,
    pub sockets_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub host: HostPaths,
    /// Grace period when the VMI gives none (or before any Sync).
    pub default_grace: Duration,
    pub tcg_tb_cache_mib: Option<u32>,
    /// Where to look for OVMF (`/usr/share/OVMF`).
    pub ovmf_dir: PathBuf,
    pub network: network::Options,
}

/// Errors of launcher operations, mapped to gRPC codes by the server.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    DeadlineExceeded(String),
}

#[derive(Default)]
struct Inner {
    vmi: Option<VirtualMachineInstance>,
    /// The domain was defined and started by a Sync.
    defined: bool,
    interfaces: Vec<InterfaceStatus>,
    /// Tap devices by interface name (for stats).
    taps: BTreeMap<String, String>,
    shutdown_requested: bool,
    network: Option<Network>,
    /// Copies the serial console into the launcher's log (`logSerialConsole: true`).
    console_tail: Option<tokio::task::JoinHandle<()>>,
    /// Set once the domain stopped for good; holds the final event.
    finished: Option<DomainEvent>,
    /// A migration target: everything is prepared and the domain arrives from the source.
    incoming: bool,
    /// An outgoing migration runs.
    migrating: bool,
    /// The domain moved to a migration target; the launcher waits for Delete, then exits.
    migrated: bool,
    /// Forwards the migration's libvirt connection to the private libvirtd (target side).
    forwarder: Option<tokio::task::JoinHandle<()>>,
    /// How the guest-agent access credentials stand (None: the VMI has none, or no try yet).
    access: Option<AccessCredentialStatus>,
}

/// What Sync and PrepareMigrationTarget make before a domain can run here.
struct Prepared {
    xml: String,
    network: Network,
    targets: BTreeMap<String, InterfaceTarget>,
}

/// How long a migrated-away launcher waits for Delete before it exits on its own.
const MIGRATED_HOLD: Duration = Duration::from_secs(120);

pub struct Launcher {
    cfg: Config,
    libvirt: Arc<Libvirt>,
    detection: Detection,
    domain_name: String,
    inner: Mutex<Inner>,
    /// The last status published, to publish only changes.
    last: std::sync::Mutex<DomainStatus>,
    events: broadcast::Sender<DomainEvent>,
    watchers: Arc<AtomicUsize>,
    exit: watch::Sender<Option<i32>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Launcher {
    pub fn new(cfg: Config, libvirt: Libvirt, detection: Detection) -> Arc<Launcher> {
        let domain_name = converter::domain_name(&cfg.namespace, &cfg.name);
        let (events, _) = broadcast::channel(64);
        let (exit, _) = watch::channel(None);
        Arc::new(Launcher {
            cfg,
            libvirt: Arc::new(libvirt),
            detection,
            domain_name,
            inner: Mutex::new(Inner::default()),
            last: std::sync::Mutex::new(DomainStatus::default()),
            events,
            watchers: Arc::new(AtomicUsize::new(0)),
            exit,
        })
    }

    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.cfg.sockets_dir.join(name)
    }

    /// Resolves to the exit code once the launcher should exit.
    pub fn exit_receiver(&self) -> watch::Receiver<Option<i32>> {
        self.exit.subscribe()
    }

    /// How many event streams are open (main waits for them to drain before exiting).
    pub fn watcher_count(&self) -> usize {
        self.watchers.load(Ordering::SeqCst)
    }

    pub fn libvirt(&self) -> &Arc<Libvirt> {
        &self.libvirt
    }

    pub fn check_uid(&self, uid: &str) -> Result<(), LauncherError> {
        if !uid.is_empty() && !self.cfg.uid.is_empty() && uid != self.cfg.uid {
            return Err(LauncherError::FailedPrecondition(format!(
                "this launcher runs VMI uid {}, not {uid}",
                self.cfg.uid
            )));
        }
        Ok(())
    }

    pub fn info(&self) -> InfoResponse {
        let (libvirt_version, qemu_version) = self.libvirt.versions();
        InfoResponse {
            launcher_version: env!("CARGO_PKG_VERSION").into(),
            libvirt_version,
            qemu_version,
            libvirt_mode: self.libvirt.mode().as_str().into(),
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
            uid: self.cfg.uid.clone(),
            domain_name: self.domain_name.clone(),
            emulation: self.detection.accelerator == converter::Accelerator::Tcg,
            emulation_reason: self.detection.reason.clone(),
            serial_socket: self.socket_path(socket_names::SERIAL).display().to_string(),
            serial_log: self
                .socket_path(socket_names::SERIAL_LOG)
                .display()
                .to_string(),
            vnc_socket: self.socket_path(socket_names::VNC).display().to_string(),
            pid: std::process::id(),
        }
    }

    /// Runs a blocking libvirt call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Libvirt) -> T + Send + 'static,
    ) -> Result<T, LauncherError> {
        let lv = Arc::clone(&self.libvirt);
        tokio::task::spawn_blocking(move || f(&lv))
            .await
            .map_err(|e| LauncherError::Internal(format!("libvirt call panicked: {e}")))
    }

    /// The live status of the domain.
    pub async fn status(&self) -> DomainStatus {
        let inner = self.inner.lock().await;
        self.status_locked(&inner).await
    }

    async fn status_locked(&self, inner: &Inner) -> DomainStatus {
        if let Some(f) = &inner.finished {
            return f.status.clone().unwrap_or_default();
        }
        if !inner.defined {
            return DomainStatus {
                uid: self.cfg.uid.clone(),
                ..Default::default()
            };
        }
        let name = self.domain_name.clone();
        let raw = self.blocking(move |lv| lv.state(&name)).await;
        let (state, reason, message) = match raw {
            Ok(Ok(Some((s, r)))) => {
                let (s, r) = status::from_libvirt(s, r);
                (s, r, String::new())
            }
            Ok(Ok(None)) => (DomainState::None, StateReason::Unknown, String::new()),
            Ok(Err(e)) => (DomainState::NoState, StateReason::Unknown, e.to_string()),
            Err(e) => (DomainState::NoState, StateReason::Unknown, e.to_string()),
        };
        // libvirt does not always say why a migrated domain stopped; this launcher knows.
        let (state, reason) = if inner.migrated && state == DomainState::Shutoff {
            (state, StateReason::Migration)
        } else {
            (state, reason)
        };
        let mut st = DomainStatus {
            name: self.domain_name.clone(),
            uid: self.cfg.uid.clone(),
            state: state as i32,
            reason: reason as i32,
            message,
            interfaces: inner.interfaces.clone(),
            shutdown_requested: inner.shutdown_requested,
            access_credentials: inner.access.clone(),
        };
        if matches!(reason, StateReason::Crashed | StateReason::Failed) {
            let name = self.domain_name.clone();
            st.message = self
                .blocking(move |lv| lv.qemu_log_tail(&name))
                .await
                .unwrap_or_default();
        }
        st
    }

    /// Publishes `st` when it differs from the last published status.
    fn observe(&self, st: &DomainStatus) {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *last == *st {
            return;
        }
        *last = st.clone();
        info!(
            state = ?st.state(),
            reason = ?st.reason(),
            message = %st.message,
            "domain status changed"
        );
        let _ = self.events.send(DomainEvent {
            r#type: EventType::Modified as i32,
            status: Some(st.clone()),
            timestamp_ms: now_ms(),
            r#final: false,
            exit_code: 0,
        });
    }

    /// Define and start the domain for `vmi_json`, or report the running one.
    /// `container_disks` (volume -> image root or file) adds to and overrides the paths given
    /// at start: the node agent knows them only once the pod's data containers run.
    pub async fn sync(
        self: &Arc<Self>,
        vmi_json: &[u8],
        container_disks: &std::collections::HashMap<String, String>,
    ) -> Result<DomainStatus, LauncherError> {
        let vmi = self.parse_vmi(vmi_json)?;
        let mut inner = self.inner.lock().await;
        if inner.finished.is_some() {
            return Err(LauncherError::FailedPrecondition(
                "the domain has stopped; the launcher is exiting".into(),
            ));
        }
        if inner.defined {
            // Reconcile: nothing in a running domain follows spec changes yet, but later
            // calls (SIGTERM's grace period) use the newest VMI.
            inner.vmi = Some(vmi);
            return Ok(self.status_locked(&inner).await);
        }
        let started = std::time::Instant::now();
        let Prepared {
            xml,
            network: net,
            targets,
        } = self.prepare(&vmi, container_disks).await?;
        let paused = vmi.spec.starts_paused();
        let x = xml.clone();
        let res = self
            .blocking(move |lv| lv.define_and_start(&x, paused))
            .await?;
        if let Err(e) = res {
            net.teardown().await;
            volumes::cleanup(&self.cfg.scratch_dir);
            warn!(error = %e, "domain failed to start");
            return Err(LauncherError::Internal(e.to_string()));
        }
        info!(
            domain = %self.domain_name,
            accelerator = ?self.detection.accelerator,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "domain started"
        );
        self.adopt(&mut inner, vmi, net, &targets);
        let st = self.status_locked(&inner).await;
        drop(inner);
        self.announce(&st);
        Ok(st)
    }

    /// The VMI in a Sync-like request, checked to be the one this launcher runs.
    fn parse_vmi(&self, vmi_json: &[u8]) -> Result<VirtualMachineInstance, LauncherError> {
        let vmi: VirtualMachineInstance = serde_json::from_slice(vmi_json)
            .map_err(|e| LauncherError::InvalidArgument(format!("vmi_json: {e}")))?;
        let (namespace, name) = converter::vmi_identity(&vmi)
            .map_err(|e| LauncherError::InvalidArgument(e.to_string()))?;
        if namespace != self.cfg.namespace || name != self.cfg.name {
            return Err(LauncherError::FailedPrecondition(format!(
                "this launcher runs {}/{}, not {namespace}/{name}",
                self.cfg.namespace, self.cfg.name
            )));
        }
        self.check_uid(vmi.metadata.uid.as_deref().unwrap_or_default())?;
        Ok(vmi)
    }

    /// Records a domain that now runs (or arrives) here and starts watching it.
    fn adopt(
        self: &Arc<Self>,
        inner: &mut Inner,
        vmi: VirtualMachineInstance,
        net: Network,
        targets: &BTreeMap<String, InterfaceTarget>,
    ) {
        if vmi.spec.domain.devices.log_serial_console == Some(true) {
            let log = self.socket_path(socket_names::SERIAL_LOG);
            inner.console_tail = Some(tokio::spawn(tail_console(log).in_current_span()));
        }
        inner.taps = targets
            .iter()
            .map(|(k, t)| (k.clone(), t.tap.clone()))
            .collect();
        inner.interfaces = net.statuses();
        inner.network = Some(net);
        inner.vmi = Some(vmi);
        inner.defined = true;
        let me = Arc::clone(self);
        tokio::spawn(async move { me.monitor().await }.in_current_span());
        if !inner
            .vmi
            .as_ref()
            .map(access::agent_credentials)
            .unwrap_or_default()
            .is_empty()
        {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.propagate_access_credentials().await }.in_current_span());
        }
    }

    /// Keeps the guest-agent access credentials in the guest while the domain lives: applies
    /// them once the agent answers, and again whenever a Secret's content changes (the kubelet
    /// refreshes the mounted files) or the last try failed. Each outcome is published in the
    /// status (virt-handler's AccessCredentialsSynchronized condition).
    async fn propagate_access_credentials(self: Arc<Self>) {
        let mut applied: Option<Vec<serde_json::Value>> = None;
        loop {
            tokio::time::sleep(ACCESS_POLL).await;
            let (vmi, running) = {
                let inner = self.inner.lock().await;
                if inner.finished.is_some() || inner.migrated {
                    return;
                }
                (inner.vmi.clone(), inner.defined && !inner.incoming)
            };
            let Some(vmi) = vmi.filter(|_| running) else {
                continue;
            };
            let creds = access::agent_credentials(&vmi);
            let secrets = self.cfg.host.private_dir.join("secret");
            let files: BTreeMap<String, Vec<(String, Vec<u8>)>> = creds
                .iter()
                .filter_map(|c| {
                    let dir = secrets.join(access::secret_dir_name(c.secret()));
                    let read = volumes::read_tree(&c.field(), &dir, false).ok()?;
                    Some((c.secret().to_string(), read))
                })
                .collect();
            let outcome = match access::agent_commands(&creds, &files) {
                Ok(cmds) if applied.as_ref() == Some(&cmds) => continue,
                Ok(cmds) => {
                    let name = self.domain_name.clone();
                    let run = cmds.clone();
                    let res = self
                        .blocking(move |lv| {
                            // No agent yet (the guest still boots): nothing to report.
                            if lv
                                .agent_command(&name, r#"{"execute":"guest-ping"}"#, 5)
                                .is_err()
                            {
                                return Ok(false);
                            }
                            for c in &run {
                                lv.agent_command(&name, &c.to_string(), 10)
                                    .map_err(|e| format!("{}: {e}", c["execute"]))?;
                            }
                            Ok::<bool, String>(true)
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                    match res {
                        Ok(false) => continue,
                        Ok(true) => {
                            info!(commands = cmds.len(), "access credentials propagated");
                            applied = Some(cmds);
                            AccessCredentialStatus {
                                synchronized: true,
                                message: String::new(),
                            }
                        }
                        Err(e) => {
                            applied = None;
                            AccessCredentialStatus {
                                synchronized: false,
                                message: format!("guest agent: {e}"),
                            }
                        }
                    }
                }
                Err(e) => AccessCredentialStatus {
                    synchronized: false,
                    message: e,
                },
            };
            let st = {
                let mut inner = self.inner.lock().await;
                if inner.finished.is_some() {
                    return;
                }
                inner.access = Some(outcome);
                self.status_locked(&inner).await
            };
            self.observe(&st);
        }
    }

    /// Publishes the first status of a domain (the ADDED event).
    fn announce(&self, st: &DomainStatus) {
        if let Ok(mut last) = self.last.lock() {
            *last = st.clone();
        }
        let _ = self.events.send(DomainEvent {
            r#type: EventType::Added as i32,
            status: Some(st.clone()),
            timestamp_ms: now_ms(),
            r#final: false,
            exit_code: 0,
        });
    }

    /// Volumes, the pod network and the domain definition for `vmi`; undone on failure.
    async fn prepare(
        &self,
        vmi: &VirtualMachineInstance,
        container_disks: &std::collections::HashMap<String, String>,
    ) -> Result<Prepared, LauncherError> {
        // Volumes.
        let scratch = self.cfg.scratch_dir.clone();
        let mut host = self.cfg.host.clone();
        for (volume, path) in container_disks {
            host.container_disks
                .insert(volume.clone(), std::path::PathBuf::from(path));
        }
        let v = vmi.clone();
        let prepared = tokio::task::spawn_blocking(move || volumes::prepare(&v, &host, &scratch))
            .await
            .map_err(|e| LauncherError::Internal(e.to_string()))?
            .map_err(|e| LauncherError::InvalidArgument(e.to_string()));
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                volumes::cleanup(&self.cfg.scratch_dir);
                return Err(e);
            }
        };

        // Network.
        let net = match network::setup(vmi, &self.cfg.uid, &self.cfg.network).await {
            Ok(n) => n,
            Err(e) => {
                volumes::cleanup(&self.cfg.scratch_dir);
                return Err(LauncherError::InvalidArgument(e.to_string()));
            }
        };
        let targets: BTreeMap<String, InterfaceTarget> = net.targets();
        let ctx = ConverterContext {
            accelerator: self.detection.accelerator,
            disks: prepared.disks,
            interfaces: targets.clone(),
            serial_socket: self.socket_path(socket_names::SERIAL),
            serial_log: self.socket_path(socket_names::SERIAL_LOG),
            vnc_socket: self.socket_path(socket_names::VNC),
            efi: find_ovmf(&self.cfg.ovmf_dir),
            nvram: self
                .cfg
                .scratch_dir
                .join(format!("nvram/{}_VARS.fd", self.domain_name)),
            kernel_boot: prepared.kernel_boot,
            tcg_tb_cache_mib: self.cfg.tcg_tb_cache_mib,
        };
        let xml = match converter::domain_xml(vmi, &ctx) {
            Ok(x) => x,
            Err(e) => {
                net.teardown().await;
                volumes::cleanup(&self.cfg.scratch_dir);
                return Err(LauncherError::InvalidArgument(e.to_string()));
            }
        };
        Ok(Prepared {
            xml,
            network: net,
            targets,
        })
    }

    /// Polls the domain until it stops for good, publishing changes.
    async fn monitor(self: Arc<Self>) {
        let mut failures = 0;
        loop {
            tokio::time::sleep(POLL).await;
            let (st, incoming, migrating, migrated) = {
                let mut inner = self.inner.lock().await;
                if inner.finished.is_some() {
                    return;
                }
                let st = self.status_locked(&inner).await;
                // An incoming domain has arrived once it runs here; until then (also while
                // libvirt holds it paused for the migration) there is nothing to watch.
                if inner.incoming && st.state() == DomainState::Running {
                    info!("the migrated domain runs here");
                    inner.incoming = false;
                    if let Some(f) = inner.forwarder.take() {
                        f.abort();
                    }
                }
                (st, inner.incoming, inner.migrating, inner.migrated)
            };
            if incoming {
                continue;
            }
            if migrated {
                // Hold on until the node agent recorded the move (it calls Delete then): a
                // launcher exiting first would end the pod under a VMI that still names it.
                self.observe(&st);
                info!("the domain moved to the migration target; waiting for Delete");
                tokio::time::sleep(MIGRATED_HOLD).await;
                self.finish(st, exit_code::MIGRATED).await;
                return;
            }
            if migrating && (status::is_final(st.state()) || st.state() == DomainState::None) {
                // The source domain stops as the migration completes, before the migration
                // call returns with the verdict.
                continue;
            }
            if st.state() == DomainState::NoState && !st.message.is_empty() {
                failures += 1;
                if failures >= MAX_POLL_FAILURES {
                    warn!(error = %st.message, "libvirt does not answer; giving up");
                    self.finish(st, exit_code::LAUNCHER_FAILURE).await;
                    return;
                }
                continue;
            }
            failures = 0;
            if st.state() == DomainState::None {
                let mut st = st;
                st.message = "the domain disappeared".into();
                self.finish(st, exit_code::CRASHED).await;
                return;
            }
            self.observe(&st);
            if status::is_final(st.state()) {
                let code = status::exit_code_for(st.state(), st.reason());
                self.finish(st, code).await;
                return;
            }
        }
    }

    /// Cleans up after the domain stopped, publishes the final event and asks main to exit.
    async fn finish(&self, st: DomainStatus, code: i32) {
        let mut inner = self.inner.lock().await;
        if inner.finished.is_some() {
            return;
        }
        info!(
            state = ?st.state(),
            reason = ?st.reason(),
            message = %st.message,
            exit_code = code,
            "domain stopped; cleaning up"
        );
        if inner.defined {
            let name = self.domain_name.clone();
            if let Ok(Err(e)) = self
                .blocking(move |lv| {
                    lv.destroy(&name)?;
                    lv.undefine(&name)
                })
                .await
            {
                warn!(error = %e, "could not undefine the domain");
            }
        }
        if let Some(net) = inner.network.take() {
            net.teardown().await;
        }
        if let Some(f) = inner.forwarder.take() {
            f.abort();
        }
        if let Some(tail) = inner.console_tail.take() {
            tail.abort();
        }
        volumes::cleanup(&self.cfg.scratch_dir);
        let event = DomainEvent {
            r#type: EventType::Modified as i32,
            status: Some(st),
            timestamp_ms: now_ms(),
            r#final: true,
            exit_code: code,
        };
        inner.finished = Some(event.clone());
        drop(inner);
        let _ = self.events.send(event);
        let _ = self.exit.send(Some(code));
    }

    async fn require_defined(&self) -> Result<tokio::sync::MutexGuard<'_, Inner>, LauncherError> {
        let inner = self.inner.lock().await;
        if inner.finished.is_some() {
            return Err(LauncherError::FailedPrecondition(
                "the domain has stopped; the launcher is exiting".into(),
            ));
        }
        if !inner.defined {
            return Err(LauncherError::FailedPrecondition(
                "no domain: Sync a VMI first".into(),
            ));
        }
        Ok(inner)
    }

    async fn act(
        &self,
        what: &'static str,
        f: impl FnOnce(&Libvirt, &str) -> Result<(), crate::libvirt::LibvirtError> + Send + 'static,
    ) -> Result<DomainStatus, LauncherError> {
        let inner = self.require_defined().await?;
        let name = self.domain_name.clone();
        self.blocking(move |lv| f(lv, &name))
            .await?
            .map_err(|e| LauncherError::FailedPrecondition(format!("{what}: {e}")))?;
        let st = self.status_locked(&inner).await;
        self.observe(&st);
        Ok(st)
    }

    /// Live migration, target side: volumes, network and a checked definition made, the
    /// migration's libvirt connection forwarded to the private libvirtd; the domain itself
    /// arrives from the source.
    pub async fn prepare_migration_target(
        self: &Arc<Self>,
        vmi_json: &[u8],
        container_disks: &std::collections::HashMap<String, String>,
    ) -> Result<MigrationTarget, LauncherError> {
        let vmi = self.parse_vmi(vmi_json)?;
        let Some(daemon_socket) = self.libvirt.daemon_socket() else {
            return Err(LauncherError::FailedPrecondition(
                "a migration target needs --libvirt-mode daemon: the source's libvirt connects \
                 to this launcher's libvirtd"
                    .into(),
            ));
        };
        let names = MigrationTarget {
            libvirt_socket: migration_sockets::LIBVIRT.into(),
            migration_socket: migration_sockets::MEMORY.into(),
            disks_socket: migration_sockets::DISKS.into(),
        };
        let mut inner = self.inner.lock().await;
        if inner.finished.is_some() {
            return Err(LauncherError::FailedPrecondition(
                "the domain has stopped; the launcher is exiting".into(),
            ));
        }
        if inner.incoming {
            return Ok(names);
        }
        if inner.defined {
            return Err(LauncherError::FailedPrecondition(
                "a domain already runs here; this launcher cannot be a migration target".into(),
            ));
        }
        let Prepared {
            xml: _,
            network: net,
            targets,
        } = self.prepare(&vmi, container_disks).await?;
        let listen = self.socket_path(migration_sockets::LIBVIRT);
        let forwarder = match forward_unix(&listen, daemon_socket) {
            Ok(f) => f,
            Err(e) => {
                net.teardown().await;
                volumes::cleanup(&self.cfg.scratch_dir);
                return Err(LauncherError::Internal(format!(
                    "listening on {}: {e}",
                    listen.display()
                )));
            }
        };
        inner.forwarder = Some(forwarder);
        inner.incoming = true;
        self.adopt(&mut inner, vmi, net, &targets);
        info!("prepared as a migration target");
        Ok(names)
    }

    /// Live migration, source side: moves the running domain peer to peer through the sockets
    /// named in `req`; returns when it has ended.
    pub async fn migrate(&self, req: &MigrateRequest) -> Result<DomainStatus, LauncherError> {
        {
            let mut inner = self.require_defined().await?;
            if inner.incoming || inner.migrated {
                return Err(LauncherError::FailedPrecondition(
                    "the domain is not running here".into(),
                ));
            }
            if inner.migrating {
                return Err(LauncherError::FailedPrecondition(
                    "a migration is already running".into(),
                ));
            }
            inner.migrating = true;
        }
        let res = self.run_migration(req).await;
        {
            let mut inner = self.inner.lock().await;
            inner.migrated = res.is_ok();
            inner.migrating = false;
        }
        res?;
        let st = self.status().await;
        self.observe(&st);
        Ok(st)
    }

    async fn run_migration(&self, req: &MigrateRequest) -> Result<(), LauncherError> {
        let sock = |name: &str| -> Result<PathBuf, LauncherError> {
            // Only plain names: the sockets live in this pod's sockets directory.
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(LauncherError::InvalidArgument(format!(
                    "socket name {name:?}: must be a file name in the sockets directory"
                )));
            }
            Ok(self.socket_path(name))
        };
        let dconnuri = format!(
            "qemu+unix:///system?socket={}",
            sock(&req.libvirt_socket)?.display()
        );
        let params = virt::domain::MigrateParameters {
            uri: Some(format!("unix://{}", sock(&req.migration_socket)?.display())),
            disks_uri: Some(format!("unix://{}", sock(&req.disks_socket)?.display())),
            bandwidth: (req.bandwidth_mib > 0).then_some(req.bandwidth_mib),
            ..Default::default()
        };
        let name = self.domain_name.clone();
        let started = std::time::Instant::now();
        info!(%dconnuri, "starting the live migration");
        let abort_uri = dconnuri.clone();
        let lv = Arc::clone(&self.libvirt);
        let mut job = tokio::task::spawn_blocking(move || {
            let mut params = params;
            params.dest_xml = Some(lv.migratable_xml(&name)?);
            // Disks are copied (containerDisk overlays, ephemeral disks): nothing is shared
            // between the pods.
            let flags = virt::sys::VIR_MIGRATE_LIVE
                | virt::sys::VIR_MIGRATE_PEER2PEER
                | virt::sys::VIR_MIGRATE_NON_SHARED_INC;
            lv.migrate(&name, &dconnuri, params, flags)
        });
        let limit = match req.completion_timeout_seconds {
            0 => Duration::MAX,
            s => Duration::from_secs(s),
        };
        let outcome = tokio::select! {
            r = &mut job => Some(r),
            _ = tokio::time::sleep(limit) => None,
        };
        let res = match outcome {
            Some(r) => r,
            None => {
                warn!(
                    seconds = req.completion_timeout_seconds,
                    "migration timed out; aborting it"
                );
                let name = self.domain_name.clone();
                let uri = abort_uri;
                if let Ok(Err(e)) = self
                    .blocking(move |lv| lv.abort_migration(&name, &uri))
                    .await
                {
                    warn!(error = %e, "aborting the migration failed");
                }
                let _ = job.await;
                return Err(LauncherError::DeadlineExceeded(format!(
                    "the migration did not complete within {} s and was aborted",
                    req.completion_timeout_seconds
                )));
            }
        };
        match res {
            Ok(Ok(())) => {
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "live migration completed"
                );
                Ok(())
            }
            Ok(Err(e)) => {
                warn!(error = %e, "live migration failed");
                Err(LauncherError::Internal(e.to_string()))
            }
            Err(e) => Err(LauncherError::Internal(format!("migration task: {e}"))),
        }
    }

    pub async fn pause(&self) -> Result<DomainStatus, LauncherError> {
        self.act("pause", |lv, n| lv.pause(n)).await
    }

    pub async fn unpause(&self) -> Result<DomainStatus, LauncherError> {
        self.act("unpause", |lv, n| lv.resume(n)).await
    }

    pub async fn shutdown(&self) -> Result<DomainStatus, LauncherError> {
        {
            let mut inner = self.require_defined().await?;
            inner.shutdown_requested = true;
        }
        self.act("shutdown", |lv, n| lv.shutdown(n)).await
    }

    pub async fn soft_reboot(&self, guest_agent: bool) -> Result<DomainStatus, LauncherError> {
        self.act("soft reboot", move |lv, n| lv.reboot(n, guest_agent))
            .await
    }

    pub async fn kill(&self) -> Result<DomainStatus, LauncherError> {
        self.act("kill", |lv, n| lv.destroy(n)).await
    }

    /// Stops the domain if needed, removes it, and lets the launcher exit.
    pub async fn delete(&self) -> Result<DomainStatus, LauncherError> {
        let st = {
            let inner = self.inner.lock().await;
            if let Some(f) = &inner.finished {
                return Ok(f.status.clone().unwrap_or_default());
            }
            if !inner.defined {
                drop(inner);
                self.finish(DomainStatus::default(), exit_code::GUEST_SHUTDOWN)
                    .await;
                return Ok(DomainStatus::default());
            }
            let name = self.domain_name.clone();
            self.blocking(move |lv| lv.destroy(&name))
                .await?
                .map_err(|e| LauncherError::Internal(format!("delete: {e}")))?;
            self.status_locked(&inner).await
        };
        self.observe(&st);
        let code = status::exit_code_for(st.state(), st.reason());
        self.finish(st.clone(), code).await;
        Ok(st)
    }

    /// SIGTERM: ACPI shutdown, then destroy after the grace period.
    pub async fn terminate(self: &Arc<Self>) {
        let grace = {
            let inner = self.inner.lock().await;
            if inner.finished.is_some() {
                return;
            }
            if !inner.defined {
                drop(inner);
                info!("terminated before any domain was started");
                self.finish(DomainStatus::default(), exit_code::GUEST_SHUTDOWN)
                    .await;
                return;
            }
            // A migration target whose domain never arrived, or a source whose domain left:
            // no guest here to shut down.
            if inner.incoming || inner.migrated {
                let code = if inner.migrated {
                    exit_code::MIGRATED
                } else {
                    exit_code::GUEST_SHUTDOWN
                };
                drop(inner);
                info!("terminated with no guest running here");
                let st = self.status().await;
                self.finish(st, code).await;
                return;
            }
            inner
                .vmi
                .as_ref()
                .and_then(|v| v.spec.termination_grace_period_seconds)
                .map(|s| Duration::from_secs(s.max(0) as u64))
                .unwrap_or(self.cfg.default_grace)
        };
        info!(
            grace_seconds = grace.as_secs(),
            "terminating: asking the guest to shut down"
        );
        if grace.is_zero() {
            let _ = self.kill().await;
            return;
        }
        if let Err(e) = self.shutdown().await {
            warn!(error = %e, "ACPI shutdown failed; destroying");
            let _ = self.kill().await;
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(
            async move {
                tokio::time::sleep(grace).await;
                let active = me.status().await.state();
                if !status::is_final(active) && me.inner.lock().await.finished.is_none() {
                    warn!(
                        grace_seconds = grace.as_secs(),
                        "grace period over; destroying the domain"
                    );
                    let _ = me.kill().await;
                }
            }
            .in_current_span(),
        );
    }

    pub async fn stats(&self) -> Result<DomainStats, LauncherError> {
        let inner = self.require_defined().await?;
        let name = self.domain_name.clone();
        let disks: Vec<(String, String)> = inner
            .vmi
            .as_ref()
            .map(|v| converter::disk_targets(&v.spec))
            .unwrap_or_default();
        let taps = inner.taps.clone();
        drop(inner);
        self.blocking(move |lv| {
            let info = lv
                .info(&name)
                .map_err(|e| LauncherError::FailedPrecondition(e.to_string()))?;
            let blocks = disks
                .iter()
                .filter_map(|(disk, target)| {
                    lv.block_stats(&name, target).map(|s| BlockStats {
                        name: disk.clone(),
                        target: target.clone(),
                        rd_req: s.rd_req,
                        rd_bytes: s.rd_bytes,
                        wr_req: s.wr_req,
                        wr_bytes: s.wr_bytes,
                    })
                })
                .collect();
            let nets = taps
                .iter()
                .filter_map(|(iface, tap)| {
                    lv.interface_stats(&name, tap).map(|s| NetStats {
                        name: iface.clone(),
                        tap: tap.clone(),
                        rx_bytes: s.rx_bytes,
                        rx_packets: s.rx_packets,
                        tx_bytes: s.tx_bytes,
                        tx_packets: s.tx_packets,
                    })
                })
                .collect();
            Ok(DomainStats {
                cpu_time_ns: info.cpu_time,
                vcpus: info.nr_virt_cpu,
                memory_kib: info.memory,
                rss_kib: lv.rss_kib(&name).unwrap_or_default(),
                blocks,
                nets,
                timestamp_ms: now_ms(),
            })
        })
        .await?
    }

    /// One guest-agent command's `return` value (UNAVAILABLE when no agent answers).
    fn agent_call(
        lv: &Libvirt,
        domain: &str,
        cmd: &str,
    ) -> Result<serde_json::Value, LauncherError> {
        let out = lv
            .agent_command(domain, &format!("{{\"execute\":\"{cmd}\"}}"), 5)
            .map_err(|e| LauncherError::Unavailable(format!("guest agent: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| LauncherError::Internal(format!("guest agent reply: {e}")))?;
        Ok(v.get("return").cloned().unwrap_or_default())
    }

    pub async fn guest_info(&self) -> Result<GuestInfo, LauncherError> {
        drop(self.require_defined().await?);
        let name = self.domain_name.clone();
        self.blocking(move |lv| {
            // `guest-info` must answer (it tells whether there is an agent at all); the others
            // are best effort, as agents differ in what they implement.
            let mut replies: [serde_json::Value; 5] = Default::default();
            for (i, cmd) in agent::INFO_COMMANDS.iter().enumerate() {
                let r = Self::agent_call(lv, &name, cmd);
                replies[i] = if i == 0 { r? } else { r.unwrap_or_default() };
            }
            Ok(agent::guest_info(&replies))
        })
        .await?
    }

    /// One guest-agent command on the defined domain, its `return` value made into `T`.
    async fn agent_query<T: Send + 'static>(
        &self,
        cmd: &'static str,
        into: fn(&serde_json::Value) -> T,
    ) -> Result<T, LauncherError> {
        drop(self.require_defined().await?);
        let name = self.domain_name.clone();
        self.blocking(move |lv| Self::agent_call(lv, &name, cmd).map(|r| into(&r)))
            .await?
    }

    pub async fn guest_users(&self) -> Result<GuestUsers, LauncherError> {
        self.agent_query("guest-get-users", |r| GuestUsers {
            users: agent::users(r),
        })
        .await
    }

    pub async fn guest_filesystems(&self) -> Result<GuestFilesystems, LauncherError> {
        self.agent_query("guest-get-fsinfo", |r| GuestFilesystems {
            filesystems: agent::filesystems(r),
        })
        .await
    }

    /// A stream of events: the current status first, then every change; ends after the final
    /// event.
    pub async fn watch(&self) -> tokio::sync::mpsc::Receiver<DomainEvent> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut sub = self.events.subscribe();
        let (current, finished) = {
            let inner = self.inner.lock().await;
            (self.status_locked(&inner).await, inner.finished.clone())
        };
        let guard = WatcherGuard::new(Arc::clone(&self.watchers));
        tokio::spawn(async move {
            let _guard = guard;
            if let Some(f) = finished {
                let _ = tx.send(f).await;
                return;
            }
            let first = DomainEvent {
                r#type: EventType::Current as i32,
                status: Some(current),
                timestamp_ms: now_ms(),
                r#final: false,
                exit_code: 0,
            };
            if tx.send(first).await.is_err() {
                return;
            }
            loop {
                match sub.recv().await {
                    Ok(ev) => {
                        let last = ev.r#final;
                        if tx.send(ev).await.is_err() || last {
                            return;
                        }
                    }
                    // A slow reader missed events; the next change brings it up to date.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }
}

/// Copies what the guest prints on its serial console into the launcher's log (the pod log),
/// line by line, as upstream's guest-console-log container does. A partial line that stays
/// unfinished for a whole tick (a prompt such as `testvm login: `) is logged as it is.
async fn tail_console(path: PathBuf) {
    use std::io::{Read, Seek, SeekFrom};
    let mut offset = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        if f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut chunk = Vec::new();
        let Ok(n) = f.read_to_end(&mut chunk) else {
            continue;
        };
        offset += n as u64;
        let idle = n == 0;
        pending.extend_from_slice(&chunk);
        for text in console_lines(&mut pending, idle) {
            info!(target: "guest_console", "{text}");
        }
    }
}

/// Takes the complete lines out of `pending` (without their line ends, empty ones dropped);
/// when the console was `idle` for a tick, the unfinished rest too.
fn console_lines(pending: &mut Vec<u8>, idle: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut take = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.trim().is_empty() {
            out.push(text.to_string());
        }
    };
    while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = pending.drain(..=pos).collect();
        take(&line);
    }
    if idle && !pending.is_empty() {
        take(pending);
        pending.clear();
    }
    out
}

/// Counts an open event stream for as long as it lives.
struct WatcherGuard(Arc<AtomicUsize>);

impl WatcherGuard {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        WatcherGuard(count)
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Debian's `ovmf` files, when installed.
pub fn find_ovmf(dir: &std::path::Path) -> Option<EfiFirmware> {
    let f = |n: &str| Some(dir.join(n)).filter(|p| p.is_file());
    let code = f("OVMF_CODE_4M.fd").or_else(|| f("OVMF_CODE.fd"))?;
    let vars = f("OVMF_VARS_4M.fd").or_else(|| f("OVMF_VARS.fd"))?;
    Some(EfiFirmware {
        code,
        vars_template: vars,
        secure_code: f("OVMF_CODE_4M.secboot.fd").or_else(|| f("OVMF_CODE.secboot.fd")),
        secure_vars_template: f("OVMF_VARS_4M.ms.fd").or_else(|| f("OVMF_VARS.ms.fd")),
    })
}

/// Accepts connections on the unix socket `listen` and joins each to a new connection to
/// `target`, until the returned task is aborted.
fn forward_unix(
    listen: &std::path::Path,
    target: PathBuf,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(listen);
    let listener = tokio::net::UnixListener::bind(listen)?;
    Ok(tokio::spawn(
        async move {
            loop {
                let (mut inbound, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "accepting on the migration socket failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let target = target.clone();
                tokio::spawn(async move {
                    match tokio::net::UnixStream::connect(&target).await {
                        Ok(mut outbound) => {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        Err(e) => {
                            warn!(target = %target.display(), error = %e, "connecting to libvirtd failed")
                        }
                    }
                });
            }
        }
        .in_current_span(),
    ))
}

#[cfg(test)]
mod tests {
    use super::console_lines;

    #[test]
    fn console_lines_wait_for_line_ends_unless_the_console_is_idle() {
        let mut pending = b"boot line one\r\nboot line two\n\ntestvm login: ".to_vec();
        assert_eq!(
            console_lines(&mut pending, false),
            ["boot line one", "boot line two"]
        );
        // The prompt waits while more may come in the same line ...
        assert_eq!(pending, b"testvm login: ");
        // ... and is logged once the console has been quiet for a tick.
        assert_eq!(console_lines(&mut pending, true), ["testvm login: "]);
        assert!(pending.is_empty());
        assert!(console_lines(&mut pending, true).is_empty());
    }
}
