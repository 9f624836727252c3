//! Processes' memory and pod membership, read from `/proc`.
//!
//! Two measures of memory: **RSS** (`VmRSS` in `/proc/<pid>/status`: every resident page the
//! process maps, shared library pages counted in full for each process) and **PSS**
//! (`Pss` in `/proc/<pid>/smaps_rollup`: each shared page divided by the number of processes
//! mapping it, so summing PSS over processes never counts a page twice).

use std::path::Path;

/// Memory of one process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl std::ops::Add for Mem {
    type Output = Mem;
    fn add(self, o: Mem) -> Mem {
        Mem {
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
        }
    }
}

impl std::iter::Sum for Mem {
    fn sum<I: Iterator<Item = Mem>>(iter: I) -> Mem {
        iter.fold(Mem::default(), |a, b| a + b)
    }
}

/// The value of a `Key:   123 kB` line.
pub fn parse_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split(':').next() == Some(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// RSS and PSS of `pid`; `None` when it is gone (or is a zombie or kernel thread, which map
/// nothing).
pub fn memory(pid: u32) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = parse_kib(&status, "VmRSS")?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Some(Mem {
        rss_kib,
        pss_kib: parse_kib(&rollup, "Pss").unwrap_or(0),
    })
}

/// The command name (`/proc/<pid>/comm`, at most 15 bytes).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Whether a `/proc/<pid>/cgroup` text puts the process in the embedded kubelet's group of the
/// pod `uid` (`.../pod<uid>` in any hierarchy, v1 or v2).
pub fn cgroup_in_pod(proc_cgroup: &str, uid: &str) -> bool {
    let want = format!("pod{uid}");
    proc_cgroup.lines().any(|l| {
        l.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path.split('/').any(|c| c == want))
    })
}

/// Every live pid on the machine.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// The processes in the pod `uid`'s cgroup: what the pod runs, QEMU included (libvirt leaves
/// QEMU in the cgroup it was started from: the launchers' `qemu.conf` gives it none of its own).
pub fn pod_processes(uid: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|text| cgroup_in_pod(&text, uid))
        })
        .collect()
}

/// QEMU's command names (`qemu-system-x86_64` truncated to 15 bytes, or another target).
pub fn is_qemu(comm: &str) -> bool {
    comm.starts_with("qemu-system-") || comm.starts_with("qemu-kvm")
}

/// The pid in a virt-cluster pid file (`<pid> <start time>`), if that process still runs.
pub fn pid_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_lines() {
        let status = "Name:\tvirt-launcher\nVmHWM:\t   40000 kB\nVmRSS:\t   33076 kB\n";
        assert_eq!(parse_kib(status, "VmRSS"), Some(33076));
        assert_eq!(parse_kib(status, "VmSwap"), None);
        let rollup = "55d0-7ffd [rollup]\nRss:  33076 kB\nPss:  28264 kB\nPss_Anon: 9000 kB\n";
        assert_eq!(parse_kib(rollup, "Pss"), Some(28264));
    }

    #[test]
    fn pod_cgroup_v1_and_v2() {
        let uid = "0b6c5c2e-1111-4222-8333-444455556666";
        let v1 = format!(
            "12:pids:/\n5:cpu,cpuacct:/kubevirt-rs/node01/pod{uid}\n4:memory:/process_api/7/kubevirt-rs/node01/pod{uid}\n"
        );
        assert!(cgroup_in_pod(&v1, uid));
        let v2 = format!("0::/kubevirt-rs/node01/pod{uid}\n");
        assert!(cgroup_in_pod(&v2, uid));
        // Another pod whose uid starts the same is not this one.
        assert!(!cgroup_in_pod(
            &format!("0::/kubevirt-rs/node01/pod{uid}x\n"),
            uid
        ));
        assert!(!cgroup_in_pod("0::/\n", uid));
    }

    #[test]
    fn qemu_names_and_own_memory() {
        assert!(is_qemu("qemu-system-x86"));
        assert!(!is_qemu("virt-launcher"));
        let me = memory(std::process::id()).expect("own memory");
        assert!(me.rss_kib > 0);
        assert!(me.pss_kib > 0 && me.pss_kib <= me.rss_kib);
    }
}
