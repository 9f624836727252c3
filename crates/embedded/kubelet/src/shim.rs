//! The container shim: one small process per container, started by the kubelet, that outlives
//! it (so a kubelet restart does not touch running pods). It
//!
//! 1. joins the pod's cgroups and network namespace,
//! 2. enters a private mount (and UTS) namespace and bind-mounts the volumes at their
//!    `mountPath`s,
//! 3. runs the program with stdout and stderr appended to the container's log file, in its own
//!    process group, and waits for it; or, for a data container, becomes the placeholder process
//!    itself, its root directory the image's filesystem,
//! 4. records `started.json` (pids) and `exited.json` (exit code, times) in the attempt directory,
//!    which is how the kubelet, now or after a restart, learns what happened.
//!
//! It must run single-threaded until it has entered its namespaces, so it is a plain synchronous
//! `main` (`virt-cluster kubelet --shim SPEC`, or the `kvrs-shim` binary).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{OFlag, open, openat, renameat};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

/// A bind mount in the container's mount namespace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// What the shim runs (`spec.json` in the attempt directory).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShimSpec {
    /// The program; `None` for a data container (the shim is the placeholder).
    pub program: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    /// `/run/netns/<name>` of the pod.
    pub netns: Option<PathBuf>,
    pub hostname: Option<String>,
    pub mounts: Vec<BindMount>,
    /// Root directory of a data container (the extracted image).
    pub rootfs: Option<PathBuf>,
    /// A unix socket the data container's placeholder listens on (a path inside the container),
    /// as upstream's `container-disk --copy-path P` does at `P.sock`: virt-handler finds the
    /// container's process from its peer credentials.
    #[serde(default)]
    pub listen_socket: Option<PathBuf>,
    /// `cgroup.procs` files to join.
    pub cgroup_procs: Vec<PathBuf>,
    pub log: PathBuf,
}

/// `started.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Started {
    /// The container's main process (the placeholder itself for a data container).
    pub pid: i32,
    pub shim_pid: i32,
    /// Start time of the shim in clock ticks since boot (`/proc/<pid>/stat` field 22), to tell a
    /// live shim from a reused pid.
    pub shim_start_ticks: u64,
    pub started_at: String,
}

/// `exited.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exited {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: String,
    /// Set when the program could not be started.
    pub error: Option<String>,
}

pub const SPEC: &str = "spec.json";
pub const STARTED: &str = "started.json";
pub const EXITED: &str = "exited.json";

/// Start time of a process in clock ticks since boot, from `/proc/<pid>/stat`.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn write_json_at(dir: &File, name: &str, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = format!(".{name}.tmp");
    let fd = openat(
        dir.as_fd(),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let mut f = File::from(fd);
    f.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name)?;
    Ok(())
}

/// Copies a container's stream to its log in the CRI format kubelets write
/// (`<RFC 3339 time> <stream> <F|P> <content>`: F ends a line, P is a part of a long one).
fn relay(mut r: impl std::io::Read, stream: &str, log: &std::sync::Mutex<File>) {
    const MAX_LINE: usize = 16 * 1024;
    let mut buf = vec![0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    let write = |tag: &str, content: &[u8]| {
        let ts = k8s_openapi::jiff::Timestamp::now();
        let mut rec = format!("{ts} {stream} {tag} ").into_bytes();
        rec.extend_from_slice(content);
        rec.push(b'\n');
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(&rec);
        }
    };
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            write("F", &pending[..pos]);
            pending.drain(..=pos);
        }
        if pending.len() >= MAX_LINE {
            write("P", &pending);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        write("P", &pending);
    }
}

/// Mount points of network namespace files (`/run/netns/<name>`), from mountinfo text.
pub fn netns_mounts(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|t| t.starts_with("/run/netns/"))
        .map(str::to_string)
        .collect()
}

/// A data container's private root: an overlay of the extracted image (shared, read-only
/// below) and a writable layer in the attempt directory, so mount points and writes never reach
/// the image cache.
fn private_root(dir: &Path, image: &Path) -> Result<PathBuf, String> {
    let (root, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
    for d in [&root, &upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        image.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("overlay root {}: {e}", root.display()))?;
    Ok(root)
}

fn enter(spec: &ShimSpec, dir: &Path) -> Result<Option<PathBuf>, String> {
    let pid = std::process::id().to_string();
    for procs in &spec.cgroup_procs {
        if let Err(e) = std::fs::write(procs, &pid) {
            eprintln!("shim: joining {} failed: {e}", procs.display());
        }
    }
    if let Some(ns) = &spec.netns {
        let f = File::open(ns).map_err(|e| format!("opening {}: {e}", ns.display()))?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering network namespace {}: {e}", ns.display()))?;
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)
        .map_err(|e| format!("unshare: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| format!("making / a slave: {e}"))?;
    // Slave, not private: unmounts on the node (a deleted pod's network namespace file, a
    // memory emptyDir) reach this namespace, so it does not keep them alive. The copies of other
    // pods' network namespace files are dropped here as well: this container has entered its own.
    for target in netns_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    {
        let _ = nix::mount::umount2(target.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    if let Some(h) = &spec.hostname {
        let _ = nix::unistd::sethostname(h);
    }
    let private = match &spec.rootfs {
        Some(image) => Some(private_root(dir, image)?),
        None => None,
    };
    let root = private.clone().unwrap_or_else(|| PathBuf::from("/"));
    for m in &spec.mounts {
        let rel = m.target.strip_prefix("/").unwrap_or(&m.target);
        let target = root.join(rel);
        let is_dir = std::fs::metadata(&m.source)
            .map(|md| md.is_dir())
            .unwrap_or(true);
        if is_dir {
            std::fs::create_dir_all(&target)
                .map_err(|e| format!("creating mount point {}: {e}", target.display()))?;
        } else {
            if let Some(parent) = target.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if !target.exists() {
                File::create(&target)
                    .map_err(|e| format!("creating mount point {}: {e}", target.display()))?;
            }
        }
        mount(
            Some(&m.source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            format!(
                "mounting {} at {}: {e}",
                m.source.display(),
                target.display()
            )
        })?;
        if m.read_only {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| format!("read-only {}: {e}", target.display()))?;
        }
    }
    Ok(private)
}

/// Runs the shim for the attempt directory `dir` (holding `spec.json`); returns the process exit
/// code. Never panics on bad input: failures are recorded in `exited.json`.
pub fn main(dir: &Path) -> i32 {
    let dirfile = match open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => File::from(fd),
        Err(e) => {
            eprintln!("shim: opening {}: {e}", dir.display());
            return 2;
        }
    };
    let fail = |msg: String| -> i32 {
        eprintln!("shim: {msg}");
        let _ = write_json_at(
            &dirfile,
            EXITED,
            &Exited {
                exit_code: 128,
                signal: None,
                finished_at: now_rfc3339(),
                error: Some(msg),
            },
        );
        1
    };
    let spec: ShimSpec = match std::fs::read(dir.join(SPEC))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return fail(format!("reading the spec: {e}")),
    };
    // Detach from the kubelet's session: its end must not reach us.
    let _ = nix::unistd::setsid();
    // No signal is blocked here: a blocked mask would be inherited by the container. The shim is
    // in its own session, so terminal and process-group signals do not reach it.
    let private_root = match enter(&spec, dir) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let shim_pid = std::process::id() as i32;
    let started = |pid: i32| Started {
        pid,
        shim_pid,
        shim_start_ticks: start_ticks(shim_pid).unwrap_or(0),
        started_at: now_rfc3339(),
    };
    let Some(program) = &spec.program else {
        // Data container: this process is the container; its root is the image's filesystem.
        let listener = match &spec.listen_socket {
            Some(sock) => {
                let root = private_root.clone().unwrap_or_else(|| PathBuf::from("/"));
                let path = root.join(sock.strip_prefix("/").unwrap_or(sock));
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let _ = std::fs::remove_file(&path);
                // Bind by a relative name from its directory: socket paths are limited to 108
                // bytes and the container's root is deep in the kubelet's directory.
                let name = path.file_name().map(PathBuf::from).unwrap_or_default();
                if let Some(parent) = path.parent()
                    && let Err(e) = nix::unistd::chdir(parent)
                {
                    return fail(format!("chdir {}: {e}", parent.display()));
                }
                match std::os::unix::net::UnixListener::bind(&name) {
                    Ok(l) => Some(l),
                    Err(e) => return fail(format!("listening on {}: {e}", path.display())),
                }
            }
            None => None,
        };
        let mut wait = SigSet::empty();
        wait.add(Signal::SIGTERM);
        wait.add(Signal::SIGINT);
        // Blocked before any thread starts, so every thread keeps them for sigwait below.
        let _ = wait.thread_block();
        if let Some(l) = listener {
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    drop(conn);
                }
            });
        }
        if let Err(e) = write_json_at(&dirfile, STARTED, &started(shim_pid)) {
            return fail(format!("writing {STARTED}: {e}"));
        }
        if let Some(root) = &private_root {
            if let Err(e) = nix::unistd::chroot(root) {
                return fail(format!("chroot {}: {e}", root.display()));
            }
            let _ = nix::unistd::chdir("/");
        }
        // As upstream's container-disk: the socket file going away (the launcher removes it
        // when its guest is gone for good, e.g. after a migration) ends the container, so
        // the pod can complete without a signal.
        if let (Some(sock), Ok(dir)) = (spec.listen_socket.clone(), dirfile.try_clone()) {
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    if !sock.exists() {
                        let _ = write_json_at(
                            &dir,
                            EXITED,
                            &Exited {
                                exit_code: 0,
                                signal: None,
                                finished_at: now_rfc3339(),
                                error: None,
                            },
                        );
                        std::process::exit(0);
                    }
                }
            });
        }
        let sig = wait.wait().ok();
        let _ = write_json_at(
            &dirfile,
            EXITED,
            &Exited {
                exit_code: 0,
                signal: sig.map(|s| s as i32),
                finished_at: now_rfc3339(),
                error: None,
            },
        );
        return 0;
    };
    let log = match OpenOptions::new().create(true).append(true).open(&spec.log) {
        Ok(f) => std::sync::Arc::new(std::sync::Mutex::new(f)),
        Err(e) => return fail(format!("opening the log {}: {e}", spec.log.display())),
    };
    let mut cmd = Command::new(program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.working_dir.as_deref().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("starting {}: {e}", program.display())),
    };
    if let Err(e) = write_json_at(&dirfile, STARTED, &started(child.id() as i32)) {
        eprintln!("shim: writing {STARTED}: {e}");
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let readers: Vec<(&'static str, Option<Box<dyn std::io::Read + Send>>)> = vec![
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        ),
    ];
    for (stream, reader) in readers {
        let (log, done) = (log.clone(), done_tx.clone());
        if let Some(r) = reader {
            std::thread::spawn(move || {
                relay(r, stream, &log);
                let _ = done.send(());
            });
        }
    }
    drop(done_tx);
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return fail(format!("waiting for the container: {e}")),
        }
    };
    // The last output, unless a process the container left behind still holds the pipes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let (exit_code, signal) = match (status.code(), status.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (255, None),
    };
    let _ = write_json_at(
        &dirfile,
        EXITED,
        &Exited {
            exit_code,
            signal,
            finished_at: now_rfc3339(),
            error: None,
        },
    );
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn netns_mount_points() {
        let info = "42 27 254:0 /run/netns /run/netns rw shared:1 - ext4 /dev/vda rw\n\
                    50 42 0:4 net:[4026532] /run/netns/kvrs-n1 rw shared:1 - nsfs nsfs rw\n";
        assert_eq!(
            super::netns_mounts(info),
            vec!["/run/netns/kvrs-n1".to_string()]
        );
    }

    #[test]
    fn start_ticks_of_self() {
        assert!(super::start_ticks(std::process::id() as i32).is_some());
        assert!(super::start_ticks(-5).is_none());
    }
}
