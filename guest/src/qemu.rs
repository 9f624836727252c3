use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::image::GuestImage;
use crate::qmp::Qmp;
use crate::ssh::{SshKey, scp_to, ssh_until_ok};
use crate::util::{free_loopback_port, run, tail};

/// How the guest boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// From a disk: a qcow2 overlay on this base image becomes the first virtio disk (SeaBIOS,
    /// extlinux, then the root overlay persists on it).
    Disk(PathBuf),
    /// Direct kernel boot (KubeVirt's kernelBoot): `-kernel`, `-initrd`, `-append`.
    Kernel {
        /// The kernel image.
        kernel: PathBuf,
        /// The initramfs.
        initrd: PathBuf,
        /// The kernel command line.
        cmdline: String,
    },
}

/// A virtio NIC on QEMU user-mode networking (slirp with `restrict=on`: the guest reaches nothing
/// outside; slirp's DHCP gives it an address, but no router or DNS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nic {
    /// The MAC address (QEMU picks one if unset).
    pub mac: Option<String>,
    /// The slirp network, e.g. `192.168.77.0/24` (default `10.0.2.0/24`).
    pub net: Option<String>,
    /// Forward a free 127.0.0.1 port to the guest's port 22 (see [`Vm::ssh_port`]).
    pub forward_ssh: bool,
}

#[derive(Debug, Clone)]
struct Drive {
    path: PathBuf,
    format: String,
    readonly: bool,
}

/// Configures and starts a [`Vm`]: QEMU with TCG (this machine's KVM is unusable), q35, a
/// `qemu64` CPU, no default devices, the serial console on a unix socket the [`Console`] reads.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    boot: Boot,
    memory_mib: u32,
    cpus: u32,
    drives: Vec<Drive>,
    nics: Vec<Nic>,
    no_reboot: bool,
    extra_args: Vec<String>,
    dir: Option<PathBuf>,
}

impl VmBuilder {
    /// Boots the image's disk (through a fresh overlay), one NIC with SSH forwarded.
    pub fn disk(image: &GuestImage) -> Self {
        Self::new(Boot::Disk(image.qcow2.clone()))
    }

    /// Boots the image's kernel and initramfs directly, one NIC with SSH forwarded.
    pub fn kernel(image: &GuestImage, cmdline: &str) -> Self {
        Self::new(Boot::Kernel {
            kernel: image.kernel.clone(),
            initrd: image.initrd.clone(),
            cmdline: cmdline.to_string(),
        })
    }

    /// Any boot, one NIC with SSH forwarded, 256 MiB, one vCPU.
    pub fn new(boot: Boot) -> Self {
        VmBuilder {
            boot,
            memory_mib: 256,
            cpus: 1,
            drives: Vec::new(),
            nics: vec![Nic {
                forward_ssh: true,
                ..Nic::default()
            }],
            no_reboot: true,
            extra_args: Vec::new(),
            dir: None,
        }
    }

    /// Guest memory.
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// vCPUs.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Adds a read-only raw virtio disk, e.g. a seed from [`crate::NoCloud::write_iso`].
    pub fn seed(self, path: &Path) -> Self {
        self.drive(path, "raw", true)
    }

    /// Adds a virtio disk.
    pub fn drive(mut self, path: &Path, format: &str, readonly: bool) -> Self {
        self.drives.push(Drive {
            path: path.to_path_buf(),
            format: format.to_string(),
            readonly,
        });
        self
    }

    /// Replaces the NICs.
    pub fn nics(mut self, nics: Vec<Nic>) -> Self {
        self.nics = nics;
        self
    }

    /// Adds a NIC.
    pub fn nic(mut self, nic: Nic) -> Self {
        self.nics.push(nic);
        self
    }

    /// Whether a guest reboot ends QEMU (default) or reboots.
    pub fn no_reboot(mut self, no_reboot: bool) -> Self {
        self.no_reboot = no_reboot;
        self
    }

    /// Extra QEMU arguments.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Keeps the VM's files (overlay, sockets, logs) in `dir` instead of a temporary dir removed
    /// on drop; a disk boot reuses `dir/disk.qcow2` if it exists (to boot the same disk again).
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Starts QEMU and connects to its serial console. The guest is running when this returns.
    pub fn start(self) -> Result<Vm> {
        let (dir, tmp) = match &self.dir {
            Some(d) => {
                fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kubevirt-rs-vm-")
                    .tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        if let Boot::Disk(base) = &self.boot {
            let overlay = dir.join("disk.qcow2");
            if !overlay.exists() {
                let base = fs::canonicalize(base)
                    .with_context(|| format!("base image {}", base.display()))?;
                run(Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                    .arg(&base)
                    .arg(&overlay))
                .context("qemu-img (package qemu-utils)")?;
            }
        }
        // A forwarded port may be taken between picking it and QEMU binding it: retry.
        for _ in 0..5 {
            match self.spawn(&dir) {
                Ok((child, ssh_port, started)) => {
                    let console = match Console::connect(
                        &dir.join("serial.sock"),
                        &dir.join("console.log"),
                    ) {
                        Ok(c) => c,
                        Err(e) => {
                            let mut vm_child = child;
                            let _ = vm_child.kill();
                            let _ = vm_child.wait();
                            return Err(e.context(qemu_log(&dir)));
                        }
                    };
                    return Ok(Vm {
                        child: Some(child),
                        dir,
                        _tmp: tmp,
                        console,
                        ssh_port,
                        started,
                    });
                }
                Err(SpawnError::PortTaken) => continue,
                Err(SpawnError::Other(e)) => return Err(e),
            }
        }
        Err(anyhow!("QEMU could not bind a forwarded port in 5 tries"))
    }

    fn spawn(&self, dir: &Path) -> std::result::Result<(Child, Option<u16>, Instant), SpawnError> {
        let serial = dir.join("serial.sock");
        let qmp = dir.join("qmp.sock");
        let _ = fs::remove_file(&serial);
        let _ = fs::remove_file(&qmp);
        let mut args: Vec<String> = vec![
            "-name".into(),
            "kubevirt-rs-guest".into(),
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            "tcg,tb-size=64".into(),
            "-cpu".into(),
            "qemu64".into(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-chardev".into(),
            format!(
                "socket,id=serial0,path={},server=on,wait=on",
                serial.display()
            ),
            "-serial".into(),
            "chardev:serial0".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp.display()),
        ];
        if self.no_reboot {
            args.push("-no-reboot".into());
        }
        let mut n = 0;
        let mut add_drive =
            |args: &mut Vec<String>, path: &Path, format: &str, readonly: bool, boot: bool| {
                args.push("-drive".into());
                args.push(format!(
                    "if=none,id=drive{n},file={},format={format}{}",
                    path.display(),
                    if readonly { ",readonly=on" } else { "" }
                ));
                args.push("-device".into());
                args.push(format!(
                    "virtio-blk-pci,drive=drive{n}{}",
                    if boot { ",bootindex=1" } else { "" }
                ));
                n += 1;
            };
        match &self.boot {
            Boot::Disk(_) => add_drive(&mut args, &dir.join("disk.qcow2"), "qcow2", false, true),
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                args.extend([
                    "-kernel".into(),
                    kernel.display().to_string(),
                    "-initrd".into(),
                    initrd.display().to_string(),
                    "-append".into(),
                    cmdline.clone(),
                ]);
            }
        }
        for d in &self.drives {
            add_drive(&mut args, &d.path, &d.format, d.readonly, false);
        }
        let mut ssh_port = None;
        for (i, nic) in self.nics.iter().enumerate() {
            let mut netdev = format!("user,id=net{i},restrict=on");
            if let Some(net) = &nic.net {
                netdev.push_str(&format!(",net={net}"));
            }
            if nic.forward_ssh && ssh_port.is_none() {
                let port = free_loopback_port().map_err(SpawnError::Other)?;
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-:22"));
                ssh_port = Some(port);
            }
            let mut device = format!("virtio-net-pci,netdev=net{i},romfile=");
            if let Some(mac) = &nic.mac {
                device.push_str(&format!(",mac={mac}"));
            }
            args.extend(["-netdev".into(), netdev, "-device".into(), device]);
        }
        args.extend(self.extra_args.iter().cloned());

        let log =
            fs::File::create(dir.join("qemu.log")).map_err(|e| SpawnError::Other(e.into()))?;
        let started = Instant::now();
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| SpawnError::Other(e.into()))?)
            .stderr(log)
            .spawn()
            .context("starting qemu-system-x86_64 (package qemu-system-x86)")
            .map_err(SpawnError::Other)?;
        // QEMU waits for the console connection before it runs the guest; it may fail first.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !serial.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = qemu_log(dir);
                if log.contains("Could not set up host forwarding rule") {
                    return Err(SpawnError::PortTaken);
                }
                return Err(SpawnError::Other(anyhow!(
                    "QEMU exited at once ({status}): {log}"
                )));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnError::Other(anyhow!(
                    "QEMU made no console socket in 30 s: {}",
                    qemu_log(dir)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((child, ssh_port, started))
    }
}

enum SpawnError {
    PortTaken,
    Other(anyhow::Error),
}

fn qemu_log(dir: &Path) -> String {
    tail(
        &fs::read_to_string(dir.join("qemu.log")).unwrap_or_default(),
        20,
    )
}

/// The guest's serial console: everything it printed (kept in memory and in `console.log`), and a
/// way to type into it.
#[derive(Debug)]
pub struct Console {
    shared: Arc<(Mutex<Vec<u8>>, Condvar)>,
    writer: Mutex<UnixStream>,
    reader: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Console {
    fn connect(socket: &Path, log: &Path) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| {
                        format!("connecting to the console {}", socket.display())
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut reader = stream.try_clone()?;
        let mut log = fs::File::create(log)?;
        let shared = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let for_thread = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("vm-console".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = log.write_all(&buf[..n]);
                            let (data, cond) = &*for_thread;
                            lock(data).extend_from_slice(&buf[..n]);
                            cond.notify_all();
                        }
                    }
                }
                for_thread.1.notify_all();
            })?;
        Ok(Console {
            shared,
            writer: Mutex::new(stream),
            reader: Some(handle),
        })
    }

    /// Everything the console printed so far (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.shared.0)).into_owned()
    }

    /// Waits until the console output (from byte `from` on) contains `needle`; returns the byte
    /// offset just after the match.
    pub fn wait_for_from(&self, from: usize, needle: &str, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let (data, cond) = &*self.shared;
        let mut guard = lock(data);
        loop {
            if let Some(start) = guard.get(from..)
                && let Some(pos) = find(start, needle.as_bytes())
            {
                return Ok(from + pos + needle.len());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "no {needle:?} on the console within {timeout:?}; it shows:\n{}",
                    tail(&String::from_utf8_lossy(&guard), 40)
                );
            }
            guard = cond
                .wait_timeout(guard, deadline - now)
                .map_or_else(|p| p.into_inner().0, |r| r.0);
        }
    }

    /// Waits until the console output contains `needle` anywhere.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<usize> {
        self.wait_for_from(0, needle, timeout)
    }

    /// The length of the output so far (for [`Self::wait_for_from`]).
    pub fn len(&self) -> usize {
        lock(&self.shared.0).len()
    }

    /// Whether the console printed nothing yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Types `text` into the console.
    pub fn send(&self, text: &str) -> Result<()> {
        lock(&self.writer)
            .write_all(text.as_bytes())
            .context("writing to the console")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A running guest. Dropping it kills QEMU (SIGKILL) and waits for it, also when a test panics,
/// then removes its temporary dir. QEMU stays in the test's process group, so a test runner that
/// kills the group on a timeout takes QEMU with it.
#[derive(Debug)]
pub struct Vm {
    child: Option<Child>,
    console: Console,
    dir: PathBuf,
    ssh_port: Option<u16>,
    started: Instant,
    // Last: removed after QEMU is gone and the console closed.
    _tmp: Option<TempDir>,
}

impl Vm {
    /// The serial console.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// The directory with the VM's overlay, sockets, `console.log` and `qemu.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// QEMU's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The 127.0.0.1 port forwarded to the guest's SSH server.
    pub fn ssh_port(&self) -> Option<u16> {
        self.ssh_port
    }

    /// Waits for `needle` on the console; the time from QEMU's start to when it was seen.
    pub fn wait_for_console(&self, needle: &str, timeout: Duration) -> Result<Duration> {
        self.console.wait_for(needle, timeout)?;
        Ok(self.started.elapsed())
    }

    /// CPU time QEMU used so far (user + system, from /proc; 100 ticks a second as on Linux/x86).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// A QMP connection.
    pub fn qmp(&self) -> Result<Qmp> {
        Qmp::connect(&self.dir.join("qmp.sock"), Duration::from_secs(10))
    }

    /// Presses the ACPI power button (QMP `system_powerdown`), what KubeVirt's graceful stop does.
    pub fn powerdown(&self) -> Result<()> {
        self.qmp()?.execute("system_powerdown", None).map(|_| ())
    }

    /// Waits up to `timeout` for QEMU to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("QEMU already reaped"))?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "QEMU still runs after {timeout:?}; console:\n{}",
                    tail(&self.console.text(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a command over SSH as `user` (retrying while the SSH connection or login fails, for at
    /// most `timeout`); its stdout, or an error if it exits non-zero.
    pub fn ssh(
        &self,
        key: &SshKey,
        user: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<String> {
        let port = self
            .ssh_port
            .ok_or_else(|| anyhow!("this VM forwards no SSH port"))?;
        let out = ssh_until_ok(port, key, user, command, timeout)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Copies a local file into the guest with scp (SFTP), as `user`; an error with what scp
    /// printed if it fails. Call it once SSH answers (see [`Vm::ssh`]).
    pub fn scp_to(&self, key: &SshKey, user: &str, local: &Path, remote: &str) -> Result<()> {
        let port = self
            .ssh_port
            .ok_or_else(|| anyhow!("this VM forwards no SSH port"))?;
        let out = scp_to(port, key, user, local, remote)?;
        if !out.status.success() {
            bail!(
                "scp {} to {remote} failed ({}): {}",
                local.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Kills QEMU now (what dropping does).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}
