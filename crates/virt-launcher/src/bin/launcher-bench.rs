//! `launcher-bench`: how fast a launcher gets a domain running and how much memory the launcher
//! and its libvirt take, for both ways of running libvirt.
//!
//! ```sh
//! cargo run --release -p virt-launcher --bin launcher-bench -- [--runs 5] [--disk guest.qcow2]
//! ```
//!
//! Each run starts the `virt-launcher` next to this binary with a warm capability cache (one
//! warm-up run fills it), Syncs a 128 MiB VMI booting the test guest's disk (no network), and
//! times process start to the Sync reply saying Running. One second later it reads the resident
//! set (RSS) and proportional set (PSS) of the launcher and, in daemon mode, its libvirtd; QEMU's
//! is shown for reference. Then Kill, and the launcher exits. Needs root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use launcher_proto::v1::{DomainRequest, DomainState, SyncRequest};

#[derive(Parser)]
#[command(about = "Launcher start-to-running time and memory, embed vs daemon libvirt")]
struct Args {
    /// Measured runs per mode.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The guest disk (default: the test guest's, from scripts/guest-image).
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Modes to measure.
    #[arg(long, value_delimiter = ',', default_value = "embed,daemon")]
    modes: Vec<String>,
}

struct Sample {
    socket: Duration,
    running: Duration,
    launcher_rss: u64,
    launcher_pss: u64,
    libvirtd_rss: u64,
    libvirtd_pss: u64,
    qemu_rss: u64,
}

fn default_disk() -> PathBuf {
    let cache = std::env::var_os("KUBEVIRT_RS_CACHE")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/kubevirt-rs")
        });
    cache.join("guest/guest.qcow2")
}

/// (VmRSS, Pss) of a process in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}

/// Children of `pid` whose command name is `comm`.
fn children_named(pid: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = stat
            .get(stat.find('(').map_or(0, |i| i + 1)..close)
            .unwrap_or("");
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok());
        if name == comm && ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn qemu_pid(scratch: &Path, domain: &str) -> Option<u32> {
    std::fs::read_to_string(scratch.join(format!("libvirt/run/qemu/{domain}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn run_once(
    launcher: &Path,
    disk: &Path,
    mode: &str,
    caps: &Path,
    n: usize,
) -> anyhow::Result<Sample> {
    let dir = TempDir(PathBuf::from(format!("/tmp/lb{}x{n}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let sockets = dir.path().join("s");
    let scratch = dir.path().join("x");
    std::fs::create_dir_all(&sockets)?;
    let name = format!("bench{}x{n}", std::process::id());
    let uid = format!("00000000-0000-4000-8000-{:012}", n);
    let log = std::fs::File::create(dir.path().join("launcher.log"))?;
    let t0 = Instant::now();
    let mut child = Command::new(launcher)
        .args([
            "--namespace",
            "bench",
            "--name",
            &name,
            "--uid",
            &uid,
            "--libvirt-mode",
            mode,
        ])
        .arg("--sockets-dir")
        .arg(&sockets)
        .arg("--scratch-dir")
        .arg(&scratch)
        .arg("--libvirt-cache")
        .arg(caps)
        .arg("--container-disk")
        .arg(format!("root={}", disk.display()))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start virt-launcher")?;
    let pid = child.id();
    let result = async {
        let sock = sockets.join(launcher_proto::SOCKET_NAME);
        let mut client = loop {
            if sock.exists()
                && let Ok(c) = launcher_proto::connect(&sock).await
            {
                break c;
            }
            if let Some(status) = child.try_wait()? {
                bail!("launcher exited early ({status})");
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("no launcher socket after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let socket = t0.elapsed();
        let vmi = serde_json::json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "bench", "uid": uid},
            "spec": {
                "domain": {
                    "devices": {
                        "autoattachPodInterface": false,
                        "disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                    },
                    "memory": {"guest": "128Mi"},
                },
                "volumes": [{"name": "root", "containerDisk": {"image": "guest"}}],
            },
        });
        let st = client
            .sync(SyncRequest {
                vmi_json: serde_json::to_vec(&vmi)?,
                ..Default::default()
            })
            .await?
            .into_inner();
        let running = t0.elapsed();
        if st.state() != DomainState::Running {
            bail!("domain is {:?}, not running", st.state());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (launcher_rss, launcher_pss) = memory_kib(pid);
        let (libvirtd_rss, libvirtd_pss) = children_named(pid, "libvirtd")
            .first()
            .map(|p| memory_kib(*p))
            .unwrap_or((0, 0));
        let qemu_rss = qemu_pid(&scratch, &format!("bench_{name}"))
            .map(|p| memory_kib(p).0)
            .unwrap_or(0);
        client.kill(DomainRequest::default()).await?;
        Ok(Sample {
            socket,
            running,
            launcher_rss,
            launcher_pss,
            libvirtd_rss,
            libvirtd_pss,
            qemu_rss,
        })
    }
    .await;
    // The launcher exits by itself after Kill; make sure of it either way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(q) = qemu_pid(&scratch, &format!("bench_{name}")) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(q as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if result.is_err() {
        eprintln!(
            "{}",
            std::fs::read_to_string(dir.path().join("launcher.log")).unwrap_or_default()
        );
    }
    result
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let disk = args.disk.unwrap_or_else(default_disk);
    if !disk.is_file() {
        bail!(
            "no guest disk at {} (run scripts/guest-image)",
            disk.display()
        );
    }
    let launcher = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("virt-launcher");
    let caps = std::env::temp_dir().join("kubevirt-rs-bench-caps");
    std::fs::create_dir_all(&caps)?;
    println!(
        "launcher: {}\ndisk: {}\n",
        launcher.display(),
        disk.display()
    );
    for mode in &args.modes {
        // Warm-up: fills the capability cache and the page cache.
        run_once(&launcher, &disk, mode, &caps, 0)
            .await
            .with_context(|| format!("{mode} warm-up"))?;
        let mut samples = Vec::new();
        for n in 1..=args.runs {
            samples.push(
                run_once(&launcher, &disk, mode, &caps, n)
                    .await
                    .with_context(|| format!("{mode} run {n}"))?,
            );
        }
        let ms = |f: &dyn Fn(&Sample) -> Duration| {
            let mut v: Vec<f64> = samples
                .iter()
                .map(|s| f(s).as_secs_f64() * 1000.0)
                .collect();
            stats(&mut v)
        };
        let mib = |f: &dyn Fn(&Sample) -> u64| {
            let mut v: Vec<f64> = samples.iter().map(|s| f(s) as f64 / 1024.0).collect();
            stats(&mut v)
        };
        let (sock, _, _) = ms(&|s| s.socket);
        let (run, run_min, run_max) = ms(&|s| s.running);
        let (lr, _, _) = mib(&|s| s.launcher_rss);
        let (lp, _, _) = mib(&|s| s.launcher_pss);
        let (dr, _, _) = mib(&|s| s.libvirtd_rss);
        let (dp, _, _) = mib(&|s| s.libvirtd_pss);
        let (tr, tr_min, tr_max) = mib(&|s| s.launcher_rss + s.libvirtd_rss);
        let (tp, _, _) = mib(&|s| s.launcher_pss + s.libvirtd_pss);
        let (q, _, _) = mib(&|s| s.qemu_rss);
        println!("libvirt mode: {mode} ({} runs, medians)", samples.len());
        println!("  start -> socket ready      {sock:7.1} ms");
        println!(
            "  start -> domain running    {run:7.1} ms   (min {run_min:.1}, max {run_max:.1})"
        );
        println!("  launcher RSS / PSS         {lr:7.1} / {lp:.1} MiB");
        if mode == "daemon" {
            println!("  libvirtd RSS / PSS         {dr:7.1} / {dp:.1} MiB");
        }
        println!(
            "  launcher+libvirt RSS       {tr:7.1} MiB   (min {tr_min:.1}, max {tr_max:.1}); PSS {tp:.1} MiB"
        );
        println!("  QEMU RSS (reference)       {q:7.1} MiB\n");
    }
    Ok(())
}
