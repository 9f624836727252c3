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
