//! The floor: the same domain started by a bare libvirtd with a warm capability cache, no
//! Kubernetes, no launcher. Each floor VM is a child process of the benchmark (`bench-density
//! floor-vm`) so that it can own a private mount namespace (libvirtd's fixed paths, as
//! virt-launcher's daemon mode does: [`libvirt::enter_daemon_mount_namespace`]) and a private
//! network namespace holding the tap devices the domain's interfaces use.
//!
//! The child prepares everything that is not libvirt's work (the disk overlay, the taps, the
//! domain XML from virt-launcher's own converter), then times `libvirtd` start (warm cache) to
//! its socket, and define + start of the domain. It prints one JSON line, keeps the domain
//! running until its stdin closes, then destroys it and stops the daemon.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::{Value, json};
use virt_launcher::converter::{self, ConverterContext, InterfaceTarget};
use virt_launcher::kvm::{self, KvmMode};
use virt_launcher::libvirt::{self, Libvirt, Mode};
use virt_launcher::volumes::{self, HostPaths};

/// `bench-density floor-vm` arguments (internal).
#[derive(clap::Args, Debug)]
pub struct FloorArgs {
    /// The VMI (JSON, defaulted as the API server stores it).
    #[arg(long)]
    pub vmi: PathBuf,
    /// The VM's private directory (short: socket paths must fit in 107 bytes).
    #[arg(long)]
    pub dir: PathBuf,
    /// The warm QEMU capability cache (and KVM verdict).
    #[arg(long)]
    pub caps: PathBuf,
    /// containerDisk volume -> disk image.
    #[arg(long = "container-disk", value_name = "VOL=PATH")]
    pub container_disks: Vec<String>,
}

/// What one floor VM reports (its JSON line).
#[derive(Clone, Copy, Debug, Default)]
pub struct FloorReport {
    /// libvirtd start to its socket answering (capability cache copied in).
    pub daemon_ms: f64,
    /// define + start of the domain until libvirt says it runs.
    pub create_ms: f64,
    /// daemon_ms + create_ms: the floor's start to running.
    pub total_ms: f64,
    pub libvirtd_pid: u32,
    pub qemu_pid: u32,
}

impl FloorReport {
    pub fn from_json(v: &Value) -> Option<FloorReport> {
        Some(FloorReport {
            daemon_ms: v.get("daemon_ms")?.as_f64()?,
            create_ms: v.get("create_ms")?.as_f64()?,
            total_ms: v.get("total_ms")?.as_f64()?,
            libvirtd_pid: u32::try_from(v.get("libvirtd_pid")?.as_u64()?).ok()?,
            qemu_pid: u32::try_from(v.get("qemu_pid")?.as_u64()?).ok()?,
        })
    }
}

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The child: must be called before any thread exists (unshare(2) of the mount namespace is
/// refused in a multi-threaded process).
pub fn child(args: &FloorArgs) -> anyhow::Result<()> {
    let vmi: VirtualMachineInstance = serde_json::from_slice(
        &std::fs::read(&args.vmi).with_context(|| format!("read {}", args.vmi.display()))?,
    )
    .context("parse the VMI")?;
    let (ns, name) = converter::vmi_identity(&vmi).map_err(|e| anyhow::anyhow!("{e}"))?;
    let domain = converter::domain_name(ns, name);
    let dir = &args.dir;
    let root = dir.join("libvirt");
    let sockets = dir.join("s");
    let scratch = dir.join("x");
    std::fs::create_dir_all(&sockets)?;
    std::fs::create_dir_all(&scratch)?;

    // The pod's part (not timed): a network namespace with one tap per interface, the disks.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare the network")?;
    run("ip", &["link", "set", "lo", "up"])?;
    let mut interfaces: BTreeMap<String, InterfaceTarget> = BTreeMap::new();
    for (i, iface) in vmi.spec.domain.devices.interfaces.iter().enumerate() {
        let tap = format!("tap{i}");
        run("ip", &["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        run("ip", &["link", "set", &tap, "up"])?;
        let mac = iface
            .mac_address
            .clone()
            .unwrap_or_else(|| format!("02:6b:76:72:73:{i:02x}"));
        interfaces.insert(
            iface.name.clone(),
            InterfaceTarget {
                tap,
                mac,
                mtu: None,
                queues: None,
            },
        );
    }
    libvirt::enter_daemon_mount_namespace(&root).context("libvirtd's mount namespace")?;
    let mut container_disks = BTreeMap::new();
    for cd in &args.container_disks {
        let (vol, path) = cd
            .split_once('=')
            .with_context(|| format!("--container-disk {cd}: want VOL=PATH"))?;
        container_disks.insert(vol.to_string(), PathBuf::from(path));
    }
    let host = HostPaths {
        container_disks,
        pvcs: BTreeMap::new(),
        kernel_boot: None,
        private_dir: dir.join("private"),
        service_account_dir: dir.join("sa"),
    };
    let prepared = volumes::prepare(&vmi, &host, &scratch).context("prepare the volumes")?;
    let detection = kvm::detect(KvmMode::Auto, Some(&args.caps), &scratch);
    let ctx = ConverterContext {
        accelerator: detection.accelerator,
        disks: prepared.disks,
        interfaces,
        serial_socket: sockets.join("virt-serial0"),
        serial_log: sockets.join("virt-serial0-log"),
        vnc_socket: sockets.join("virt-vnc"),
        efi: None,
        nvram: scratch.join(format!("nvram/{domain}_VARS.fd")),
        kernel_boot: prepared.kernel_boot,
        // virt-launcher's default, so that QEMU is the same.
        tcg_tb_cache_mib: Some(32),
    };
    let xml = converter::domain_xml(&vmi, &ctx).map_err(|e| anyhow::anyhow!("{e}"))?;

    // libvirt's part (timed).
    let t0 = Instant::now();
    let lv = Libvirt::start(&libvirt::Config {
        mode: Mode::Daemon,
        root: root.clone(),
        node_cache: Some(args.caps.clone()),
    })
    .context("start libvirtd")?;
    let daemon = t0.elapsed();
    let started = lv.define_and_start(&xml, false);
    let total = t0.elapsed();
    if let Err(e) = started {
        lv.stop();
        return Err(e).context("define and start the domain");
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let line = json!({
        "daemon_ms": ms(daemon),
        "create_ms": ms(total - daemon),
        "total_ms": ms(total),
        "libvirtd_pid": lv.daemon_pid().unwrap_or(0),
        "qemu_pid": lv.qemu_pid(&domain).unwrap_or(0),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);

    // Run until the parent closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let _ = lv.destroy(&domain);
    let _ = lv.undefine(&domain);
    lv.stop();
    volumes::cleanup(&scratch);
    Ok(())
}

/// One running floor VM, seen from the parent. Dropping it closes the child's stdin (the
/// child then stops the domain) and, if the child cannot, kills what it started.
pub struct FloorVm {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    pub report: FloorReport,
}

impl FloorVm {
    /// Asks the child to stop its domain and daemon, and waits (at most `limit`).
    pub async fn stop(mut self, limit: Duration) {
        self.stdin.take();
        let _ = tokio::time::timeout(limit, self.child.wait()).await;
        // Drop kills whatever is left.
    }
}

impl Drop for FloorVm {
    fn drop(&mut self) {
        self.stdin.take();
        let alive = |pid: u32, name: &str| {
            pid != 0 && kubevirt_rs_bench::procs::comm(pid).is_some_and(|c| c.starts_with(name))
        };
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
        }
        // A killed child leaves QEMU and libvirtd behind (both outlive their parent).
        for (pid, name) in [
            (self.report.qemu_pid, "qemu-system"),
            (self.report.libvirtd_pid, "libvirtd"),
        ] {
            if alive(pid, name) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Starts one floor VM and waits for its report (at most `limit`).
pub async fn start(
    exe: &Path,
    vmi_file: &Path,
    dir: &Path,
    caps: &Path,
    container_disks: &[(String, PathBuf)],
    limit: Duration,
) -> anyhow::Result<FloorVm> {
    use tokio::io::AsyncBufReadExt as _;
    std::fs::create_dir_all(dir)?;
    let log = std::fs::File::create(dir.join("floor.log"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("floor-vm")
        .arg("--vmi")
        .arg(vmi_file)
        .arg("--dir")
        .arg(dir)
        .arg("--caps")
        .arg(caps);
    for (vol, path) in container_disks {
        cmd.arg("--container-disk")
            .arg(format!("{vol}={}", path.display()));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("start the floor VM")?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("floor VM stdout")?;
    let mut vm = FloorVm {
        child,
        stdin,
        report: FloorReport::default(),
    };
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(limit, lines.next_line()).await {
        Ok(Ok(Some(l))) => l,
        Ok(_) => bail!(
            "the floor VM in {} failed: {}",
            dir.display(),
            std::fs::read_to_string(dir.join("floor.log")).unwrap_or_default()
        ),
        Err(_) => bail!(
            "the floor VM in {} gave no report in {limit:?}",
            dir.display()
        ),
    };
    let v: Value = serde_json::from_str(&line).context("floor VM report")?;
    vm.report = FloorReport::from_json(&v).context("floor VM report fields")?;
    Ok(vm)
}
