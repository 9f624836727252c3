//! A cgroup per pod, with memory and CPU limits from the pod's resources.
//!
//! - **cgroup v2** (a unified hierarchy with the `memory` and `cpu` controllers at
//!   `/sys/fs/cgroup`): `/sys/fs/cgroup/kubevirt-rs/<node>/pod<uid>` with `memory.max` and
//!   `cpu.max`.
//! - **cgroup v1** (this project's machines: v1 hierarchies, and a v2 mount holding only
//!   `hugetlb`): `memory/<kubelet's own memory group>/kubevirt-rs/<node>/pod<uid>` with
//!   `memory.limit_in_bytes` (the memory hierarchy only lets us create groups below our own), and
//!   `cpu/kubevirt-rs/<node>/pod<uid>` with `cpu.cfs_quota_us`/`cpu.cfs_period_us`.
//! - Neither usable: pods run without a cgroup of their own and limits are not enforced (a
//!   warning says so once).

use std::path::{Path, PathBuf};

const PERIOD_US: i128 = 100_000;

/// The hierarchy found on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cgroups {
    V2 {
        base: PathBuf,
    },
    V1 {
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
    Unavailable,
}

/// Limits of one pod, from its containers' `resources.limits`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i128>,
    pub cpu_millis: Option<i128>,
}

/// The v1 path of `controller` for this process, from `/proc/self/cgroup` text.
pub fn v1_own_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let ctrls = parts.next()?;
        let path = parts.next()?;
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

fn rel(p: &str) -> &str {
    p.trim_start_matches('/')
}

impl Cgroups {
    /// Detects v2 or v1 under `root` (normally `/sys/fs/cgroup`), for node `node`.
    pub fn detect(root: &Path, proc_cgroup: &str, node: &str) -> Cgroups {
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Cgroups::V2 {
                base: root.join("kubevirt-rs").join(node),
            };
        }
        let memory = root.join("memory");
        let cpu = root.join("cpu");
        let memory = (memory.join("cgroup.procs").exists()).then(|| {
            let own = v1_own_path(proc_cgroup, "memory").unwrap_or_default();
            memory.join(rel(&own)).join("kubevirt-rs").join(node)
        });
        let cpu = (cpu.join("cgroup.procs").exists()).then(|| cpu.join("kubevirt-rs").join(node));
        if memory.is_none() && cpu.is_none() {
            Cgroups::Unavailable
        } else {
            Cgroups::V1 { memory, cpu }
        }
    }

    /// Detects the machine's hierarchy.
    pub fn detect_system(node: &str) -> Cgroups {
        let proc = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Cgroups::detect(Path::new("/sys/fs/cgroup"), &proc, node)
    }

    fn pod_dirs(&self, uid: &str) -> Vec<PathBuf> {
        let name = format!("pod{uid}");
        match self {
            Cgroups::V2 { base } => vec![base.join(name)],
            Cgroups::V1 { memory, cpu } => memory
                .iter()
                .chain(cpu.iter())
                .map(|b| b.join(&name))
                .collect(),
            Cgroups::Unavailable => vec![],
        }
    }

    /// Creates the pod's groups and writes its limits; returns the `cgroup.procs` files its
    /// processes join. A controller that cannot be used is skipped with a warning.
    pub fn create_pod(&self, uid: &str, limits: Limits) -> Vec<PathBuf> {
        let mut procs = Vec::new();
        match self {
            Cgroups::V2 { base } => {
                let root = base.parent().and_then(Path::parent);
                // Enable the controllers down to the node's group.
                let mut dirs = vec![];
                if let Some(r) = root {
                    dirs.push(r.to_path_buf());
                }
                if let Some(p) = base.parent() {
                    dirs.push(p.to_path_buf());
                }
                dirs.push(base.clone());
                for d in &dirs {
                    let _ = std::fs::create_dir_all(d);
                    let _ = std::fs::write(d.join("cgroup.subtree_control"), "+memory +cpu");
                }
                let dir = base.join(format!("pod{uid}"));
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    tracing::warn!(uid, error = %e, "creating the pod cgroup failed");
                    return procs;
                }
                if let Some(m) = limits.memory_bytes {
                    write_or_warn(&dir.join("memory.max"), &m.to_string());
                }
                if let Some(c) = limits.cpu_millis {
                    write_or_warn(
                        &dir.join("cpu.max"),
                        &format!("{} {PERIOD_US}", (c * PERIOD_US / 1000).max(1000)),
                    );
                }
                procs.push(dir.join("cgroup.procs"));
            }
            Cgroups::V1 { memory, cpu } => {
                if let Some(base) = memory {
                    let dir = base.join(format!("pod{uid}"));
                    match std::fs::create_dir_all(&dir) {
                        Ok(()) => {
                            if let Some(m) = limits.memory_bytes {
                                write_or_warn(&dir.join("memory.limit_in_bytes"), &m.to_string());
                            }
                            procs.push(dir.join("cgroup.procs"));
                        }
                        Err(e) => {
                            tracing::warn!(uid, error = %e, "creating the memory cgroup failed")
                        }
                    }
                }
                if let Some(base) = cpu {
                    let dir = base.join(format!("pod{uid}"));
                    match std::fs::create_dir_all(&dir) {
                        Ok(()) => {
                            if let Some(c) = limits.cpu_millis {
                                write_or_warn(
                                    &dir.join("cpu.cfs_period_us"),
                                    &PERIOD_US.to_string(),
                                );
                                write_or_warn(
                                    &dir.join("cpu.cfs_quota_us"),
                                    &(c * PERIOD_US / 1000).max(1000).to_string(),
                                );
                            }
                            procs.push(dir.join("cgroup.procs"));
                        }
                        Err(e) => tracing::warn!(uid, error = %e, "creating the cpu cgroup failed"),
                    }
                }
            }
            Cgroups::Unavailable => {}
        }
        procs
    }

    /// Are the pod's groups free of processes?
    pub fn pod_empty(&self, uid: &str) -> bool {
        self.pod_dirs(uid).iter().all(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).map_or(true, |p| p.trim().is_empty())
        })
    }

    /// Kills whatever is still in the pod's groups, then removes them. Called once the pod's
    /// containers are gone: what is left escaped their process groups (QEMU started by a
    /// container's libvirtd, or the capability probe QEMU that daemonizes), and would otherwise
    /// outlive the pod and keep a core busy. Gives up after `timeout`.
    pub async fn kill_remaining_and_remove(&self, uid: &str, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let pids = self.pod_pids(uid);
            if pids.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                tracing::debug!(uid, pid, "killing a process left in the pod's cgroup");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.remove_pod(uid);
    }

    /// The processes in the pod's groups (all controllers, deduplicated).
    pub fn pod_pids(&self, uid: &str) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .pod_dirs(uid)
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|text| parse_pids(&text))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Removes the pod's groups (once its processes are gone).
    pub fn remove_pod(&self, uid: &str) {
        for d in self.pod_dirs(uid) {
            if d.exists()
                && let Err(e) = std::fs::remove_dir(&d)
            {
                tracing::debug!(uid, dir = %d.display(), error = %e, "removing the pod cgroup");
            }
        }
    }

    /// How many processes the kernel's OOM killer ended in the pod's memory group.
    pub fn oom_kills(&self, uid: &str) -> u64 {
        let name = format!("pod{uid}");
        let file = match self {
            Cgroups::V2 { base } => base.join(&name).join("memory.events"),
            Cgroups::V1 {
                memory: Some(m), ..
            } => m.join(&name).join("memory.oom_control"),
            _ => return 0,
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| parse_oom_kill(&t))
            .unwrap_or(0)
    }

    /// Removes the node's groups (tests and node teardown).
    pub fn remove_node(&self) {
        let bases: Vec<&PathBuf> = match self {
            Cgroups::V2 { base } => vec![base],
            Cgroups::V1 { memory, cpu } => memory.iter().chain(cpu.iter()).collect(),
            Cgroups::Unavailable => vec![],
        };
        for b in bases {
            if let Ok(rd) = std::fs::read_dir(b) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(b);
            // `kubevirt-rs/` itself, once no node is left in it.
            if let Some(parent) = b.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// The pids of a `cgroup.procs` file (one per line; anything else is skipped).
pub fn parse_pids(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The `oom_kill N` counter of `memory.oom_control` (v1) or `memory.events` (v2).
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
}

fn write_or_warn(path: &Path, value: &str) {
    if let Err(e) = std::fs::write(path, value) {
        tracing::warn!(file = %path.display(), value, error = %e, "writing a cgroup limit failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_paths_from_proc() {
        let proc = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(
            v1_own_path(proc, "memory").as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(v1_own_path(proc, "cpu").as_deref(), Some("/"));
        assert_eq!(v1_own_path(proc, "pids"), None);
    }

    #[test]
    fn pids_of_cgroup_procs() {
        assert_eq!(parse_pids("12\n345\n\n"), vec![12, 345]);
        assert!(parse_pids("").is_empty());
    }

    #[test]
    fn oom_counters() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill(""), None);
    }

    #[test]
    fn detect_in_a_fake_tree() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Cgroups::detect(d.path(), "", "n"), Cgroups::Unavailable);
        std::fs::create_dir_all(d.path().join("memory")).unwrap();
        std::fs::write(d.path().join("memory/cgroup.procs"), "").unwrap();
        let proc = "4:memory:/own\n";
        assert_eq!(
            Cgroups::detect(d.path(), proc, "n"),
            Cgroups::V1 {
                memory: Some(d.path().join("memory/own/kubevirt-rs/n")),
                cpu: None
            }
        );
        std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        assert_eq!(
            Cgroups::detect(d.path(), proc, "n"),
            Cgroups::V2 {
                base: d.path().join("kubevirt-rs/n")
            }
        );
    }
}
