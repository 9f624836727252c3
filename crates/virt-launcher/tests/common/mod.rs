//! Test harness: runs the `virt-launcher` binary for a VMI in a private temp directory (and
//! optionally in a network namespace of its own), and cleans up on drop, also on panic: the
//! launcher, any QEMU started from our directory, and the namespaces.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::config::ClusterConfig;
use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::LauncherClient;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_virt-launcher");

/// Whether the tests can run here (they need root, as CI has).
pub fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A VMI from JSON, defaulted as the API server would.
pub fn vmi(json: serde_json::Value) -> VirtualMachineInstance {
    let mut vmi: VirtualMachineInstance = serde_json::from_value(json).expect("a VMI");
    let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    kubevirt_api::defaults::vmi(
        &mut vmi,
        &ClusterConfig::default(),
        "3b9f5e3a-8d0c-4b7e-9a61-0c1d2e3f4a5b",
        &now,
    )
    .expect("defaults");
    vmi
}

/// A unique short name (netns names, VMI names) for this process and call.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct Launcher {
    pub dir: tempfile::TempDir,
    pub sockets: PathBuf,
    pub scratch: PathBuf,
    pub domain: String,
    pub child: Option<Child>,
    /// Network namespaces to delete on drop.
    pub netns: Vec<String>,
    pub stderr_log: PathBuf,
}

pub struct Options<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub netns: Option<&'a str>,
    pub extra_args: Vec<String>,
}

impl Launcher {
    /// Starts the launcher (not yet synced).
    pub fn start(opts: Options<'_>) -> Launcher {
        let dir = tempfile::Builder::new()
            .prefix("vl")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let sockets = dir.path().join("sockets");
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&sockets).expect("sockets dir");
        let stderr_log = dir.path().join("launcher.log");
        let stderr = std::fs::File::create(&stderr_log).expect("log file");
        let mut cmd = match opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args([
            "--namespace",
            opts.namespace,
            "--name",
            opts.name,
            "--uid",
            opts.uid,
        ])
        .arg("--sockets-dir")
        .arg(&sockets)
        .arg("--scratch-dir")
        .arg(&scratch)
        // libvirt's sockets live under it: keep it short, as the pod's /var/run/libvirt is.
        .arg("--libvirt-dir")
        .arg(dir.path().join("lv"))
        .arg("--private-dir")
        .arg(dir.path().join("private"))
        .arg("--libvirt-cache")
        .arg(node_cache())
        .args(&opts.extra_args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
        let child = cmd.spawn().expect("spawn virt-launcher");
        Launcher {
            sockets,
            scratch,
            domain: format!("{}_{}", opts.namespace, opts.name),
            child: Some(child),
            netns: Vec::new(),
            stderr_log,
            dir,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.sockets.join("launcher-sock")
    }

    /// Connects once the socket exists.
    pub async fn client(&mut self, timeout: Duration) -> LauncherClient<Channel> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.socket().exists()
                && let Ok(c) = launcher_proto::connect(self.socket()).await
            {
                return c;
            }
            if let Some(status) = self.try_wait() {
                panic!("launcher exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no launcher socket within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn serial_log(&self) -> String {
        let raw = std::fs::read(self.sockets.join("virt-serial0-log")).unwrap_or_default();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// Waits for `needle` in the serial log.
    pub async fn wait_serial(&self, needle: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.serial_log().contains(needle) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "{needle:?} not on the serial console within {timeout:?}; console:\n{}\nlauncher:\n{}",
                tail(&self.serial_log(), 40),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            // With `ip netns exec`, the launcher is exec'd in place: same pid.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// QEMU processes started for this launcher (their command lines name our directory).
    pub fn qemu_pids(&self) -> Vec<u32> {
        pids_mentioning(self.dir.path())
    }
}

/// Processes whose command line mentions `path` (other than ourselves).
pub fn pids_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("qemu-system") && text.contains(&needle) {
            out.push(pid);
        }
    }
    out
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A daemon-mode launcher's libvirtd would outlive it.
            for pid in children_named(c.id(), "libvirtd") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // The launcher's QEMU is daemonized; kill it by what its command line names.
        for pid in self.qemu_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// A shared capability cache for the tests, so only the first launcher probes QEMU.
pub fn node_cache() -> PathBuf {
    let dir = std::env::temp_dir().join("kubevirt-rs-launcher-test-caps");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pod network made of two namespaces the test owns: `node` (the node's side of the veth,
/// 10.244.99.1/24) and `pod` (eth0 with the pod address 10.244.99.5/24 and a default route via
/// the node side). Deleted on drop.
pub struct PodNet {
    pub node: String,
    pub pod: String,
}

pub const NODE_IP: &str = "10.244.99.1";
pub const POD_IP: &str = "10.244.99.5";

impl PodNet {
    pub fn new(mtu: u32) -> PodNet {
        let node = unique("vln");
        let pod = unique("vlp");
        let net = PodNet {
            node: node.clone(),
            pod: pod.clone(),
        };
        sh(&["ip", "netns", "add", &node]);
        sh(&["ip", "netns", "add", &pod]);
        let veth = unique("vv");
        sh(&[
            "ip",
            "-n",
            &node,
            "link",
            "add",
            &veth,
            "mtu",
            &mtu.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pod,
        ]);
        sh(&[
            "ip",
            "-n",
            &node,
            "addr",
            "add",
            &format!("{NODE_IP}/24"),
            "dev",
            &veth,
        ]);
        sh(&["ip", "-n", &node, "link", "set", &veth, "up"]);
        sh(&["ip", "-n", &node, "link", "set", "lo", "up"]);
        sh(&[
            "ip",
            "-n",
            &pod,
            "addr",
            "add",
            &format!("{POD_IP}/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &pod, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &pod, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &pod, "route", "add", "default", "via", NODE_IP]);
        net
    }

    /// Runs a command in the node namespace; its output and whether it succeeded.
    pub fn in_node(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node])
            .args(args)
            .output()
            .expect("ip netns exec");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Connects from the node namespace to `addr` and reads what the server says first.
    pub fn tcp_banner(&self, addr: &str, timeout: Duration) -> std::io::Result<String> {
        let path = format!("/var/run/netns/{}", self.node);
        let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        std::thread::spawn(move || {
            use std::io::Read;
            let ns = std::fs::File::open(&path)?;
            // Only this thread moves into the node's namespace.
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::other)?;
            let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .join()
        .map_err(|_| std::io::Error::other("connect thread panicked"))?
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        for ns in [&self.pod, &self.node] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// Children of `pid` whose command name is `comm`.
pub fn children_named(pid: u32, comm: &str) -> Vec<u32> {
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
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
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
