//! Containers on disk: attempt directories, spawning the shim, reading what it recorded,
//! signalling. `<pod dir>/containers/<name>/<attempt>/{spec,started,exited}.json`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::shim::{self, Exited, ShimSpec, Started};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the shim for {0} did not report within 30 s")]
    Timeout(String),
    #[error("no shim program configured")]
    NoShim,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn container_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("containers").join(name)
}

pub fn attempt_dir(pod_dir: &Path, name: &str, attempt: u32) -> PathBuf {
    container_dir(pod_dir, name).join(attempt.to_string())
}

/// Attempt numbers recorded for a container, ascending.
pub fn attempts(pod_dir: &Path, name: &str) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(container_dir(pod_dir, name))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

pub fn read_started(dir: &Path) -> Option<Started> {
    read_json(&dir.join(shim::STARTED))
}

pub fn read_exited(dir: &Path) -> Option<Exited> {
    read_json(&dir.join(shim::EXITED))
}

/// Is the shim that wrote `s` still alive (same pid, same start time)?
pub fn alive(s: &Started) -> bool {
    shim::start_ticks(s.shim_pid).is_some_and(|t| t == s.shim_start_ticks)
}

/// Writes the spec and starts the shim; returns the child (to reap) once the shim reported that
/// the container started or failed to.
pub async fn spawn(
    shim_cmd: &[OsString],
    dir: &Path,
    spec: &ShimSpec,
) -> Result<tokio::process::Child, RuntimeError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let spec_path = dir.join(shim::SPEC);
    let body = serde_json::to_vec_pretty(spec).map_err(|e| RuntimeError::Io {
        path: spec_path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&spec_path, body).map_err(io(&spec_path))?;
    let (prog, rest) = shim_cmd.split_first().ok_or(RuntimeError::NoShim)?;
    let log = dir.join("shim.log");
    let out = std::fs::File::create(&log).map_err(io(&log))?;
    let err = out.try_clone().map_err(io(&log))?;
    let child = tokio::process::Command::new(prog)
        .args(rest)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(Path::new(prog)))?;
    for _ in 0..6000 {
        if dir.join(shim::STARTED).exists() || dir.join(shim::EXITED).exists() {
            return Ok(child);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Err(RuntimeError::Timeout(dir.display().to_string()))
}

/// Sends `sig` to the container's process group (and the process itself).
pub fn signal(pid: i32, sig: Signal) {
    if pid <= 1 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid), sig);
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Is the process `pid` alive (and not a zombie)?
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Kills everything recorded under a pod directory (SIGKILL): for cleanup of orphans and tests.
pub fn kill_all(pod_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(pod_dir.join("containers")) else {
        return;
    };
    for c in rd.flatten() {
        let Some(name) = c.file_name().to_str().map(str::to_string) else {
            continue;
        };
        for a in attempts(pod_dir, &name) {
            let dir = attempt_dir(pod_dir, &name, a);
            if let Some(s) = read_started(&dir)
                && alive(&s)
            {
                signal(s.pid, Signal::SIGKILL);
                let _ = kill(Pid::from_raw(s.shim_pid), Signal::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_sorted() {
        let d = tempfile::tempdir().unwrap();
        for a in [3, 1, 10] {
            std::fs::create_dir_all(attempt_dir(d.path(), "c", a)).unwrap();
        }
        assert_eq!(attempts(d.path(), "c"), vec![1, 3, 10]);
        assert!(attempts(d.path(), "none").is_empty());
        assert!(pid_alive(std::process::id() as i32));
    }
}
