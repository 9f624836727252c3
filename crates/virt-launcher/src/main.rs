//! `virt-launcher`: runs one VMI in its pod. See the crate README for the command line, the
//! sockets it serves and its exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{Instrument, error, info, info_span, warn};
use virt_launcher::kvm::{self, KvmMode};
use virt_launcher::launcher::{self, Launcher, socket_names};
use virt_launcher::libvirt::{self, Libvirt, Mode};
use virt_launcher::server::Service;
use virt_launcher::status::exit_code;
use virt_launcher::volumes::HostPaths;

/// The longest path a unix socket address holds (sun_path less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Parser, Debug)]
#[command(
    name = "virt-launcher",
    version,
    about = "Runs one VirtualMachineInstance in its pod: a private libvirt, the pod network, \
             the launcher gRPC service on <sockets-dir>/launcher-sock"
)]
struct Args {
    /// The VMI's namespace.
    #[arg(long, env = "VMI_NAMESPACE", required_unless_present = "warm_cache")]
    namespace: Option<String>,
    /// The VMI's name.
    #[arg(long, env = "VMI_NAME", required_unless_present = "warm_cache")]
    name: Option<String>,
    /// The VMI's uid: a Sync for another uid is refused.
    #[arg(long, env = "VMI_UID", default_value = "")]
    uid: String,
    /// The pod's sockets directory (upstream mounts it at /var/run/kubevirt/sockets).
    #[arg(long, default_value = "/var/run/kubevirt/sockets")]
    sockets_dir: PathBuf,
    /// A writable directory for the VM's overlays, ISOs, EFI variables and libvirt's state;
    /// emptied when the VM stops.
    #[arg(long, default_value = "/var/run/kubevirt-ephemeral-disks")]
    scratch_dir: PathBuf,
    /// upstream's private directory: vmi-disks/<vol>, secret/<vol>, config-map/<vol>,
    /// downwardapi/<vol>.
    #[arg(long, default_value = "/var/run/kubevirt-private")]
    private_dir: PathBuf,
    /// The service account token directory (for serviceAccount volumes).
    #[arg(long, default_value = "/var/run/secrets/kubernetes.io/serviceaccount")]
    service_account_dir: PathBuf,
    /// The node's QEMU capability cache (and KVM verdict): copied in at start, written back
    /// when this launcher had to probe.
    #[arg(long, env = "KUBEVIRT_RS_LIBVIRT_CACHE")]
    libvirt_cache: Option<PathBuf>,
    /// libvirt's own directory (state, QEMU's monitor and channel sockets); default
    /// `<scratch dir>/libvirt`. Sockets live under it, so it must be short: the launcher pod
    /// mounts an emptyDir at /var/run/libvirt for it, as upstream's does.
    #[arg(long)]
    libvirt_dir: Option<PathBuf>,
    /// How libvirt runs: embed (its QEMU driver inside this process) or daemon (a private
    /// libvirtd).
    #[arg(long, default_value = "embed")]
    libvirt_mode: Mode,
    /// KVM: auto (probe, emulate when it does not work), on, or off (always emulate).
    #[arg(long, env = "KUBEVIRT_RS_KVM", default_value = "auto")]
    kvm: KvmMode,
    /// A containerDisk volume's image: VOL=PATH, PATH the image file or the container's root.
    #[arg(long = "container-disk", value_parser = volume_path)]
    container_disks: Vec<(String, PathBuf)>,
    /// A PVC or DataVolume volume: VOL=PATH, PATH its mount directory, image file or block
    /// device.
    #[arg(long = "pvc", value_parser = volume_path)]
    pvcs: Vec<(String, PathBuf)>,
    /// The kernelBoot container's root directory.
    #[arg(long)]
    kernel_boot: Option<PathBuf>,
    /// Seconds to wait after an ACPI shutdown before destroying, when the VMI sets no
    /// terminationGracePeriodSeconds.
    #[arg(long, default_value_t = 30)]
    grace_period: u64,
    /// Size of QEMU's TCG translation cache in MiB when emulating (0: QEMU's default).
    #[arg(long, default_value_t = 32)]
    tcg_tb_cache_mib: u32,
    /// Where Debian's ovmf package puts the UEFI firmware.
    #[arg(long, default_value = "/usr/share/OVMF")]
    ovmf_dir: PathBuf,
    /// The pod's network interface (the masquerade and bridge bindings use it).
    #[arg(long, default_value = "eth0")]
    pod_interface: String,
    /// The pod's resolver configuration: the DNS servers and search domains the guest gets.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Fill --libvirt-cache (QEMU capabilities, KVM verdict) and exit; no VMI needed.
    #[arg(long)]
    warm_cache: bool,
}

fn volume_path(s: &str) -> Result<(String, PathBuf), String> {
    let (vol, path) = s.split_once('=').ok_or("expected VOLUME=PATH")?;
    if vol.is_empty() || path.is_empty() {
        return Err("expected VOLUME=PATH".into());
    }
    Ok((vol.to_string(), PathBuf::from(path)))
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Plain text when stderr is a file or pipe (the pod log), colours only on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .init();
    let args = Args::parse();
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => {
            error!(error = format!("{e:#}"), "virt-launcher failed");
            exit_code::LAUNCHER_FAILURE
        }
    };
    std::process::exit(code);
}

fn check_socket_path(path: &Path) -> anyhow::Result<()> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        bail!(
            "{} is {len} bytes, longer than a unix socket path may be ({MAX_SOCKET_PATH}); \
             mount the directory at a shorter path",
            path.display()
        );
    }
    Ok(())
}

fn run(args: Args) -> anyhow::Result<i32> {
    let mut libvirt_root = args
        .libvirt_dir
        .clone()
        .unwrap_or_else(|| args.scratch_dir.join("libvirt"));
    if args.libvirt_mode == Mode::Daemon && libvirt::hidden_by_daemon_binds(&libvirt_root) {
        // The daemon's binds would cover its own state directory (the pod's /var/run/libvirt
        // is /run/libvirt); its sockets sit at the bound short paths anyway, so the state can
        // live in the scratch directory.
        libvirt_root = args.scratch_dir.join("libvirt");
    }
    std::fs::create_dir_all(&args.scratch_dir)
        .with_context(|| format!("create {}", args.scratch_dir.display()))?;
    if args.warm_cache {
        return warm_cache(&args, &libvirt_root);
    }
    std::fs::create_dir_all(&args.sockets_dir)
        .with_context(|| format!("create {}", args.sockets_dir.display()))?;
    for name in [
        socket_names::LAUNCHER,
        socket_names::SERIAL,
        socket_names::VNC,
    ] {
        check_socket_path(&args.sockets_dir.join(name))?;
    }
    if args.libvirt_mode == Mode::Embed {
        // libvirt puts QEMU's monitor socket at <root>/lib/qemu/domain-<id>-<name, 20 chars>/
        // and the guest agent's channel at <root>/lib/qemu/channel/target/domain-.../.
        for socket in [
            "lib/qemu/domain-9999-xxxxxxxxxxxxxxxxxxxx/monitor.sock",
            "lib/qemu/channel/target/domain-9999-xxxxxxxxxxxxxxxxxxxx/org.qemu.guest_agent.0",
        ] {
            check_socket_path(&libvirt_root.join(socket))
                .context("libvirt's directory is too deep for its sockets (see --libvirt-dir)")?;
        }
    } else {
        // Before any thread exists: unshare(CLONE_NEWNS) refuses multi-threaded callers.
        libvirt::enter_daemon_mount_namespace(&libvirt_root)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let span = info_span!(
        "launcher",
        namespace = args.namespace.as_deref().unwrap_or_default(),
        name = args.name.as_deref().unwrap_or_default(),
        uid = %args.uid
    );
    runtime.block_on(serve(args, libvirt_root).instrument(span))
}

/// Probes QEMU (capabilities) and KVM once so later launchers on the node start warm.
fn warm_cache(args: &Args, root: &Path) -> anyhow::Result<i32> {
    let cache = args
        .libvirt_cache
        .as_ref()
        .context("--warm-cache needs --libvirt-cache")?;
    std::fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
    let started = Instant::now();
    let detection = kvm::detect(args.kvm, Some(cache), &args.scratch_dir);
    let lv = Libvirt::start(&libvirt::Config {
        mode: Mode::Embed,
        root: root.to_path_buf(),
        node_cache: Some(cache.clone()),
    })?;
    lv.stop();
    info!(
        cache = %cache.display(),
        accelerator = ?detection.accelerator,
        reason = %detection.reason,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "capability cache ready"
    );
    Ok(0)
}

async fn serve(args: Args, libvirt_root: PathBuf) -> anyhow::Result<i32> {
    let started = Instant::now();
    let cfg = launcher::Config {
        namespace: args.namespace.clone().unwrap_or_default(),
        name: args.name.clone().unwrap_or_default(),
        uid: args.uid.clone(),
        sockets_dir: args.sockets_dir.clone(),
        scratch_dir: args.scratch_dir.clone(),
        host: HostPaths {
            container_disks: args
                .container_disks
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
            pvcs: args.pvcs.iter().cloned().collect(),
            kernel_boot: args.kernel_boot.clone(),
            private_dir: args.private_dir.clone(),
            service_account_dir: args.service_account_dir.clone(),
        },
        default_grace: Duration::from_secs(args.grace_period),
        tcg_tb_cache_mib: (args.tcg_tb_cache_mib > 0).then_some(args.tcg_tb_cache_mib),
        ovmf_dir: args.ovmf_dir.clone(),
        network: virt_launcher::network::Options {
            pod_interface: args.pod_interface.clone(),
            resolv_conf: args.resolv_conf.clone(),
        },
    };

    // The KVM verdict and libvirt's start are independent: run them side by side.
    let kvm_mode = args.kvm;
    let verdict_dir = args
        .libvirt_cache
        .clone()
        .unwrap_or_else(|| args.scratch_dir.clone());
    let work = args.scratch_dir.clone();
    let detect =
        tokio::task::spawn_blocking(move || kvm::detect(kvm_mode, Some(&verdict_dir), &work));
    let lv_cfg = libvirt::Config {
        mode: args.libvirt_mode,
        root: libvirt_root,
        node_cache: args.libvirt_cache.clone(),
    };
    let lv = tokio::task::spawn_blocking(move || Libvirt::start(&lv_cfg));
    let detection = detect.await.context("KVM detection")?;
    let libvirt = lv.await.context("libvirt start")??;
    let (lib_version, qemu_version) = libvirt.versions();
    info!(
        libvirt_mode = args.libvirt_mode.as_str(),
        libvirt = %lib_version,
        qemu = %qemu_version,
        accelerator = ?detection.accelerator,
        reason = %detection.reason,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "libvirt ready"
    );

    let launcher = Launcher::new(cfg, libvirt, detection);
    let sock = launcher.socket_path(socket_names::LAUNCHER);
    let _ = std::fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("listen on {}", sock.display()))?;
    info!(socket = %sock.display(), elapsed_ms = started.elapsed().as_millis() as u64, "serving");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(launcher_proto::LauncherServer::new(Service::new(
            launcher.clone(),
        )))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    let mut server = Box::pin(tokio::spawn(server.in_current_span()));

    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut exit = launcher.exit_receiver();
    let code = loop {
        tokio::select! {
            _ = sigterm.recv() => {
                info!("SIGTERM");
                launcher.terminate().await;
            }
            _ = sigint.recv() => {
                info!("SIGINT");
                launcher.terminate().await;
            }
            changed = exit.changed() => {
                if changed.is_err() {
                    break exit_code::LAUNCHER_FAILURE;
                }
                if let Some(code) = *exit.borrow() {
                    break code;
                }
            }
            res = &mut server => {
                warn!(result = ?res, "the gRPC server stopped");
                break exit_code::LAUNCHER_FAILURE;
            }
        }
    };
    // Let event streams deliver the final event before the server goes away.
    let deadline = Instant::now() + Duration::from_secs(2);
    while launcher.watcher_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let _ = std::fs::remove_file(&sock);
    launcher.libvirt().stop();
    if std::env::var_os("POD_NAME").is_some() {
        release_container_disks(Path::new(CONTAINER_DISKS_DIR));
    }
    info!(exit_code = code, "exiting");
    Ok(code)
}

/// Where a launcher pod's containerDisk containers put their sockets (the `container-disks`
/// emptyDir, as upstream lays it out).
const CONTAINER_DISKS_DIR: &str = "/var/run/kubevirt/container-disks";

/// Removes the containerDisk containers' `disk_N.sock` files: each container ends when its
/// socket is gone (as upstream's container-disk does), so the pod completes once this guest
/// is gone for good (stopped, failed or migrated away).
fn release_container_disks(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("disk_") && name.ends_with(".sock") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    info!(socket = %e.path().display(), "released the containerDisk container")
                }
                Err(error) => {
                    warn!(socket = %e.path().display(), %error, "removing a containerDisk socket failed")
                }
            }
        }
    }
}
