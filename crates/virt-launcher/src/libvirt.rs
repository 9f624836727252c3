//! The launcher's private libvirt, in one of two ways:
//!
//! - **embed** (the default): libvirt's QEMU driver runs inside the launcher process
//!   (`qemu:///embed?root=DIR`, what `virt-qemu-run` uses). No daemon, no RPC, no mount
//!   namespace: every path libvirt uses sits under `DIR`. The launcher must run libvirt's event
//!   loop, which a small thread does.
//! - **daemon**: a `libvirtd` of its own, as upstream runs `virtqemud` in the pod. libvirt 9.0's
//!   state paths are fixed at build time, so the launcher first moves itself into a private mount
//!   namespace and bind-mounts `DIR/{etc,run,lib,log,cache}` over `/etc/libvirt`, `/run/libvirt`,
//!   `/var/lib/libvirt`, `/var/log/libvirt` and `/var/cache/libvirt`
//!   ([`enter_daemon_mount_namespace`], before any thread exists); libvirtd inherits that view.
//!
//! Both keep QEMU's capability cache in `DIR/cache/qemu/capabilities`. Probing QEMU costs about
//! 8 s; a cache copied from the node (`--libvirt-cache`) makes the start take a fraction of a
//! second, and a launcher that had to probe writes its fresh cache back for the next one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;

/// How libvirt runs for this launcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Embed,
    Daemon,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Embed => "embed",
            Mode::Daemon => "daemon",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embed" => Ok(Mode::Embed),
            "daemon" => Ok(Mode::Daemon),
            other => Err(format!("unknown libvirt mode {other:?} (embed or daemon)")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    /// The private state root (`<scratch>/libvirt`).
    pub root: PathBuf,
    /// The node's capability cache directory, copied in at start and refreshed when stale.
    pub node_cache: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Call {
        op: String,
        #[source]
        source: virt::error::Error,
    },
    #[error("libvirtd did not create its socket {socket} within {seconds} s")]
    DaemonTimeout { socket: PathBuf, seconds: u64 },
    #[error("libvirtd exited during start-up: {0}")]
    DaemonExited(String),
    #[error("private mount namespace for libvirtd: {0}")]
    Namespace(String),
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> LibvirtError {
    let op = op.into();
    move |source| LibvirtError::Io { op, source }
}

fn call(op: impl Into<String>) -> impl FnOnce(virt::error::Error) -> LibvirtError {
    let op = op.into();
    move |source| LibvirtError::Call { op, source }
}

/// QEMU driver settings for a launcher: QEMU runs as root with no sVirt, cgroups or namespaces
/// of its own (the pod provides isolation), and writes its stdio straight to files instead of
/// through virtlogd (one daemon fewer).
const QEMU_CONF: &str = r#"user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
vnc_listen = "127.0.0.1"
"#;

/// The directories under the root that the daemon mode binds over the fixed paths.
const DAEMON_BINDS: [(&str, &str); 5] = [
    ("etc", "/etc/libvirt"),
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("log", "/var/log/libvirt"),
    ("cache", "/var/cache/libvirt"),
];

/// The private libvirtd's socket inside the launcher's mount namespace.
const DAEMON_SOCKET: &str = "/run/libvirt/libvirt-sock";

fn libvirtd_conf(host_uuid: &str) -> String {
    format!(
        "listen_tls = 0\nlisten_tcp = 0\nunix_sock_rw_perms = \"0700\"\nauth_unix_ro = \"none\"\n\
         auth_unix_rw = \"none\"\nlog_outputs = \"3:stderr\"\nhost_uuid = \"{host_uuid}\"\n"
    )
}

/// Would the daemon mode's bind mounts cover `root` (so its own subdirectories)? Paths are
/// compared after resolving symlinks (`/var/run` is `/run`).
pub fn hidden_by_daemon_binds(root: &Path) -> bool {
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let _ = std::fs::create_dir_all(root);
    let root = resolve(root);
    DAEMON_BINDS
        .iter()
        .any(|(_, target)| root.starts_with(resolve(Path::new(target))))
}

/// Moves the calling process into a private mount namespace in which `root`'s subdirectories
/// sit at libvirt's fixed paths. Must run before any thread is started (unshare(2) refuses
/// CLONE_NEWNS in a multi-threaded process).
pub fn enter_daemon_mount_namespace(root: &Path) -> Result<(), LibvirtError> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    let ns = |what: &str, e: nix::Error| LibvirtError::Namespace(format!("{what}: {e}"));
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| ns("unshare", e))?;
    // Keep our binds from propagating back to the node's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| ns("make / private", e))?;
    for (sub, target) in DAEMON_BINDS {
        let src = root.join(sub);
        std::fs::create_dir_all(&src).map_err(io(format!("create {}", src.display())))?;
        std::fs::create_dir_all(target).map_err(io(format!("create {target}")))?;
        mount(
            Some(&src),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| ns(&format!("bind {} on {target}", src.display()), e))?;
    }
    Ok(())
}

/// A connection to the launcher's private libvirt.
pub struct Libvirt {
    conn: Connect,
    mode: Mode,
    root: PathBuf,
    daemon: std::sync::Mutex<Option<Child>>,
}

static EVENT_LOOP: Once = Once::new();

/// libvirt's default event loop, run by one thread for the life of the process. The embedded
/// driver watches QEMU's monitor socket through it; the remote driver its keepalives.
fn start_event_loop() -> Result<(), LibvirtError> {
    let mut result = Ok(());
    EVENT_LOOP.call_once(|| {
        if let Err(e) = virt::event::event_register_default_impl() {
            result = Err(call("register libvirt's event loop")(e));
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| {
                loop {
                    if virt::event::event_run_default_impl().is_err() {
                        // Only fails when no implementation is registered; avoid a hot loop.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        if let Err(e) = spawned {
            result = Err(io("spawn libvirt's event loop thread")(e));
        }
    });
    result
}

impl Libvirt {
    /// Starts (or embeds) libvirt and connects to it.
    pub fn start(cfg: &Config) -> Result<Libvirt, LibvirtError> {
        // libvirt prints every error to stderr by default; we report them ourselves.
        virt::error::clear_error_callback();
        let caps = caps_dir(&cfg.root);
        std::fs::create_dir_all(&caps).map_err(io(format!("create {}", caps.display())))?;
        let etc = cfg.root.join("etc");
        std::fs::create_dir_all(&etc).map_err(io(format!("create {}", etc.display())))?;
        write_if_changed(&etc.join("qemu.conf"), QEMU_CONF)?;
        if let Some(node) = &cfg.node_cache {
            copy_xml_files(node, &caps);
        }
        start_event_loop()?;
        let (conn, daemon) = match cfg.mode {
            Mode::Embed => {
                let uri = format!("qemu:///embed?root={}", cfg.root.display());
                let conn = Connect::open(Some(&uri)).map_err(call(format!("open {uri}")))?;
                (conn, None)
            }
            Mode::Daemon => {
                write_if_changed(&etc.join("libvirtd.conf"), &libvirtd_conf(&random_uuid()?))?;
                let mut child = Command::new("libvirtd")
                    .args([
                        "-f",
                        "/etc/libvirt/libvirtd.conf",
                        "-p",
                        "/run/libvirt/libvirtd.pid",
                    ])
                    .stdin(Stdio::null())
                    .spawn()
                    .map_err(io("start libvirtd"))?;
                let socket = PathBuf::from(DAEMON_SOCKET);
                let deadline = Instant::now() + Duration::from_secs(30);
                while !socket.exists() {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(LibvirtError::DaemonExited(status.to_string()));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(LibvirtError::DaemonTimeout {
                            socket,
                            seconds: 30,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let uri = format!("qemu+unix:///system?socket={}", socket.display());
                // libvirtd creates its socket before it listens on it: under load (many daemons
                // starting at once) the first connect can be refused. Retry until the deadline.
                let conn = loop {
                    match Connect::open(Some(&uri)) {
                        Ok(c) => break c,
                        Err(_)
                            if Instant::now() < deadline
                                && matches!(child.try_wait(), Ok(None)) =>
                        {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(call(format!("open {uri}"))(e));
                        }
                    }
                };
                (conn, Some(child))
            }
        };
        let lv = Libvirt {
            conn,
            mode: cfg.mode,
            root: cfg.root.clone(),
            daemon: std::sync::Mutex::new(daemon),
        };
        if let Some(node) = &cfg.node_cache {
            // The daemon probes QEMU lazily; ask for capabilities so the cache exists now.
            let _ = lv.conn.get_capabilities();
            // The first launcher on a node finds no cache directory yet.
            if let Err(e) = std::fs::create_dir_all(node) {
                tracing::warn!(dir = %node.display(), error = %e, "cannot create the node's capability cache");
            }
            copy_xml_files(&caps, node);
        }
        Ok(lv)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// libvirt's and QEMU's versions as `major.minor.micro`.
    pub fn versions(&self) -> (String, String) {
        let v = |n: u32| format!("{}.{}.{}", n / 1_000_000, (n / 1000) % 1000, n % 1000);
        let lib = self.conn.get_lib_version().map(v).unwrap_or_default();
        let qemu = self.conn.get_hyp_version().map(v).unwrap_or_default();
        (lib, qemu)
    }

    /// Defines the domain and starts it (paused when asked).
    pub fn define_and_start(&self, xml: &str, paused: bool) -> Result<(), LibvirtError> {
        let dom = Domain::define_xml(&self.conn, xml).map_err(call("define the domain"))?;
        let flags = if paused {
            virt::sys::VIR_DOMAIN_START_PAUSED
        } else {
            0
        };
        if let Err(e) = dom.create_with_flags(flags) {
            // Leave nothing half-made: a later Sync defines it afresh.
            let _ = dom.undefine_flags(virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM);
            return Err(call("start the domain")(e));
        }
        Ok(())
    }

    /// The domain's definition as a migration target should receive it: the migratable form
    /// without the disks' `<backingStore>` chains. Those name the source node's image paths;
    /// the target's overlays (made by its own launcher) carry their own backing file, which
    /// libvirt reads from the image there.
    pub fn migratable_xml(&self, name: &str) -> Result<String, LibvirtError> {
        let xml = self
            .domain(name)?
            .get_xml_desc(virt::sys::VIR_DOMAIN_XML_MIGRATABLE | virt::sys::VIR_DOMAIN_XML_SECURE)
            .map_err(call("read the migratable definition"))?;
        Ok(strip_backing_stores(&xml))
    }

    /// Live-migrates the domain peer to peer to the libvirt at `dconnuri` (blocks until the
    /// migration ends).
    pub fn migrate(
        &self,
        name: &str,
        dconnuri: &str,
        params: virt::domain::MigrateParameters,
        flags: u32,
    ) -> Result<(), LibvirtError> {
        self.domain(name)?
            .migrate_to_uri3(Some(dconnuri), params, flags)
            .map(drop)
            .map_err(call("migrate"))
    }

    /// Ends a running migration by destroying the incoming domain at the target's libvirt
    /// (`dconnuri`): the source's job then fails and the guest keeps running here. (The
    /// bindings have no safe virDomainAbortJob; this needs no unsafe code.)
    pub fn abort_migration(&self, name: &str, dconnuri: &str) -> Result<(), LibvirtError> {
        let dconn = Connect::open(Some(dconnuri)).map_err(call(format!("open {dconnuri}")))?;
        let res = match Domain::lookup_by_name(&dconn, name) {
            Ok(d) => d
                .destroy()
                .map(drop)
                .map_err(call("destroy the incoming domain")),
            Err(e) if e.code() == virt::error::ErrorNumber::NoDomain => Ok(()),
            Err(e) => Err(call("look up the incoming domain")(e)),
        };
        let mut dconn = dconn;
        let _ = dconn.close();
        res
    }

    /// The domain, if defined.
    pub fn lookup(&self, name: &str) -> Result<Option<Domain>, LibvirtError> {
        match Domain::lookup_by_name(&self.conn, name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.code() == virt::error::ErrorNumber::NoDomain => Ok(None),
            Err(e) => Err(call(format!("look up domain {name}"))(e)),
        }
    }

    fn domain(&self, name: &str) -> Result<Domain, LibvirtError> {
        Domain::lookup_by_name(&self.conn, name).map_err(call(format!("look up domain {name}")))
    }

    /// libvirt's raw (state, reason) of the domain, or None when it is not defined.
    pub fn state(&self, name: &str) -> Result<Option<(u32, i32)>, LibvirtError> {
        match self.lookup(name)? {
            None => Ok(None),
            Some(d) => d
                .get_state()
                .map(Some)
                .map_err(call("read the domain state")),
        }
    }

    pub fn pause(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?
            .suspend()
            .map(drop)
            .map_err(call("pause"))
    }

    pub fn resume(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?
            .resume()
            .map(drop)
            .map_err(call("unpause"))
    }

    /// Presses the ACPI power button.
    pub fn shutdown(&self, name: &str) -> Result<(), LibvirtError> {
        self.domain(name)?
            .shutdown_flags(virt::sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            .map(drop)
            .map_err(call("shut down (ACPI)"))
    }

    /// Reboots the guest gracefully: by its agent, or by the ACPI power button (libvirt then
    /// resets the guest when it powers off, rather than ending QEMU).
    pub fn reboot(&self, name: &str, guest_agent: bool) -> Result<(), LibvirtError> {
        let flags = if guest_agent {
            virt::sys::VIR_DOMAIN_REBOOT_GUEST_AGENT
        } else {
            virt::sys::VIR_DOMAIN_REBOOT_ACPI_POWER_BTN
        };
        self.domain(name)?
            .reboot(flags)
            .map_err(call("soft reboot"))
    }

    /// Pulls the plug.
    pub fn destroy(&self, name: &str) -> Result<(), LibvirtError> {
        let dom = self.domain(name)?;
        if dom.is_active().unwrap_or(false) {
            dom.destroy().map_err(call("destroy"))?;
        }
        Ok(())
    }

    /// Removes the definition (and the VM's EFI variable store).
    pub fn undefine(&self, name: &str) -> Result<(), LibvirtError> {
        match self.lookup(name)? {
            None => Ok(()),
            Some(d) => d
                .undefine_flags(virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM)
                .map_err(call("undefine")),
        }
    }

    pub fn info(&self, name: &str) -> Result<virt::domain::DomainInfo, LibvirtError> {
        self.domain(name)?
            .get_info()
            .map_err(call("read domain info"))
    }

    /// QEMU's resident set in KiB, as libvirt reads it.
    pub fn rss_kib(&self, name: &str) -> Option<u64> {
        let stats = self.domain(name).ok()?.memory_stats(0).ok()?;
        stats
            .iter()
            .find(|s| s.tag == virt::sys::VIR_DOMAIN_MEMORY_STAT_RSS)
            .map(|s| s.val)
    }

    pub fn block_stats(&self, name: &str, target: &str) -> Option<virt::domain::BlockStats> {
        self.domain(name).ok()?.get_block_stats(target).ok()
    }

    pub fn interface_stats(&self, name: &str, tap: &str) -> Option<virt::domain::InterfaceStats> {
        self.domain(name).ok()?.interface_stats(tap).ok()
    }

    /// Runs a guest agent command (JSON) with a timeout in seconds.
    pub fn agent_command(
        &self,
        name: &str,
        cmd: &str,
        timeout: i32,
    ) -> Result<String, LibvirtError> {
        self.domain(name)?
            .qemu_agent_command(cmd, timeout, 0)
            .map_err(call("guest agent command"))
    }

    /// QEMU's pid, from the pid file libvirt keeps.
    pub fn qemu_pid(&self, name: &str) -> Option<u32> {
        qemu_pid(&self.root, name)
    }

    /// The last non-empty line of QEMU's log (why it died, when it did).
    pub fn qemu_log_tail(&self, name: &str) -> String {
        let path = self.root.join(format!("log/qemu/{name}.log"));
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }

    /// Stops the daemon, if any (the connection closes when dropped).
    pub fn stop(&self) {
        let child = match self.daemon.lock() {
            Ok(mut d) => d.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(mut child) = child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// The private libvirtd's socket as this process sees it (daemon mode only).
    pub fn daemon_socket(&self) -> Option<PathBuf> {
        (self.mode == Mode::Daemon).then(|| PathBuf::from(DAEMON_SOCKET))
    }

    /// The daemon's pid (daemon mode).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.lock().ok()?.as_ref().map(Child::id)
    }
}

/// `xml` without any `<backingStore ...>...</backingStore>` or `<backingStore/>` element.
pub fn strip_backing_stores(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find("<backingStore") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some(open_end) = tail.find('>') else {
            // Malformed: keep the rest as it is.
            out.push_str(tail);
            return out;
        };
        if tail[..open_end].ends_with('/') {
            rest = &tail[open_end + 1..];
            continue;
        }
        // Nested chains close innermost first; count to the matching close tag.
        let mut depth = 0usize;
        let mut i = 0usize;
        let mut end = None;
        while i < tail.len() {
            let t = &tail[i..];
            if t.starts_with("</backingStore>") {
                depth -= 1;
                i += "</backingStore>".len();
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            } else if t.starts_with("<backingStore") {
                let close = t.find('>').map(|p| p + 1).unwrap_or(t.len());
                if !t[..close].ends_with("/>") {
                    depth += 1;
                }
                i += close;
            } else {
                i += t.chars().next().map(char::len_utf8).unwrap_or(1);
            }
        }
        match end {
            Some(e) => rest = &tail[e..],
            None => {
                out.push_str(tail);
                return out;
            }
        }
    }
    out.push_str(rest);
    // Drop the lines the removed elements leave empty.
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// QEMU's pid for domain `name` under a libvirt root (both modes keep the pid file there).
pub fn qemu_pid(root: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(root.join(format!("run/qemu/{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn caps_dir(root: &Path) -> PathBuf {
    root.join("cache/qemu/capabilities")
}

fn write_if_changed(path: &Path, content: &str) -> Result<(), LibvirtError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(io(format!("write {}", path.display())))
}

/// Copies `*.xml` from one cache directory to another, skipping files the destination already
/// has with the same content. Best effort: a read-only or missing node cache only costs time.
fn copy_xml_files(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        let src = entry.path();
        if src.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        let Ok(data) = std::fs::read(&src) else {
            continue;
        };
        let dst = to.join(entry.file_name());
        if std::fs::read(&dst).ok().as_deref() == Some(data.as_slice()) {
            continue;
        }
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = to.join(format!(
            ".{}.{}",
            entry.file_name().to_string_lossy(),
            std::process::id()
        ));
        if std::fs::write(&tmp, &data).is_ok() && std::fs::rename(&tmp, &dst).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// A random (version 4) UUID for libvirtd's `host_uuid`.
fn random_uuid() -> Result<String, LibvirtError> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("read /dev/urandom"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::strip_backing_stores;

    #[test]
    fn backing_chains_are_removed_from_every_disk() {
        let xml = "<domain>\n  <disk type='file'>\n    <source file='/a/ov.qcow2'/>\n    \
<backingStore type='file' index='1'>\n      <format type='qcow2'/>\n      \
<source file='/node/x/disk.img'/>\n      <backingStore type='file' index='2'>\n        \
<source file='/b'/>\n        <backingStore/>\n      </backingStore>\n    </backingStore>\n    \
<target dev='vda'/>\n  </disk>\n  <disk type='file'>\n    <source file='/c.iso'/>\n    \
<backingStore/>\n    <target dev='sda'/>\n  </disk>\n</domain>\n";
        let out = strip_backing_stores(xml);
        assert!(!out.contains("backingStore"), "{out}");
        assert!(!out.contains("/node/x/disk.img"), "{out}");
        assert!(out.contains("<source file='/a/ov.qcow2'/>"));
        assert!(out.contains("<target dev='vda'/>"));
        assert!(out.contains("<target dev='sda'/>"));
        assert_eq!(out.lines().count(), 10, "{out}");
    }

    #[test]
    fn xml_without_backing_stores_is_unchanged() {
        let xml = "<domain>\n  <name>x</name>\n</domain>\n";
        assert_eq!(strip_backing_stores(xml), xml);
    }
}
