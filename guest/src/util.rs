use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The repository root (this crate lives in `guest/`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The project's cache dir: `$KUBEVIRT_RS_CACHE`, else `$HOME/.cache/kubevirt-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBEVIRT_RS_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("kubevirt-rs")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it). Whoever uses it must
/// cope with losing a race for it; [`crate::VmBuilder::start`] retries with a new one.
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs a command to completion; an error (with its stderr) unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// The last `n` lines of a text.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills a child process (SIGKILL) and reaps it when dropped, also when a test panics: for
/// processes a test starts itself (QEMU with its own arguments, a daemon). [`crate::Vm`] and
/// [`crate::Registry`] do this for theirs.
#[derive(Debug)]
pub struct ProcessGuard {
    child: Option<std::process::Child>,
}

impl ProcessGuard {
    /// Guards `child`.
    pub fn new(child: std::process::Child) -> Self {
        ProcessGuard { child: Some(child) }
    }

    /// Its pid, until it is reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Waits up to `timeout` for it to exit by itself; its status, or `None` if it still runs.
    pub fn wait_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<std::process::ExitStatus>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                bail!("the process was already reaped");
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills it now (what dropping does).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn process_guard_kills_on_drop_and_on_panic() {
        let child = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        drop(ProcessGuard::new(child));
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "sleep {pid} survived the drop"
        );

        let child = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let panicked = std::panic::catch_unwind(move || {
            let _guard = ProcessGuard::new(child);
            panic!("test failure while the process runs");
        });
        assert!(panicked.is_err());
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "sleep {pid} survived the panic"
        );
    }

    #[test]
    fn process_guard_reports_a_normal_exit() {
        let mut guard = ProcessGuard::new(Command::new("true").spawn().expect("spawn true"));
        let status = guard.wait_timeout(Duration::from_secs(10)).expect("wait");
        assert!(status.is_some_and(|s| s.success()));
    }

    #[test]
    fn free_ports_are_loopback_and_bindable() {
        let port = free_loopback_port().expect("port");
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }
}
