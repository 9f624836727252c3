//! The floor VM (`bench-density floor-vm`) for real: a bare libvirtd starts the test guest's
//! domain, reports its timings and pids, keeps it running while its stdin is open, and takes
//! QEMU and libvirtd down when it closes. Needs root and the test guest.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Kills the child and whatever it reported starting, and removes the directory, also on panic.
struct Guard {
    child: Option<Child>,
    pids: Vec<u32>,
    dir: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in &self.pids {
            if comm(*pid).is_some_and(|c| c.starts_with("qemu-system") || c == "libvirtd") {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn floor_vm_runs_the_domain_and_cleans_up() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let image = kubevirt_rs_guest::GuestImage::ensure().expect("guest image");
    // Short: the serial socket path under it must fit in 107 bytes.
    let dir = PathBuf::from(format!("/tmp/bdt{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut guard = Guard {
        child: None,
        pids: vec![],
        dir: dir.clone(),
    };
    // Shared with launcher-bench: warm after the first run on a machine.
    let caps = std::env::temp_dir().join("kubevirt-rs-bench-caps");
    std::fs::create_dir_all(&caps).expect("caps dir");
    let vmi = serde_json::json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "floortest", "namespace": "bench",
                     "uid": "00000000-0000-4000-8000-0000000f1001"},
        "spec": {
            "domain": {
                "devices": {
                    "disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}],
                    "interfaces": [{"name": "default", "masquerade": {}}],
                },
                "resources": {"requests": {"memory": "128Mi"}},
            },
            "networks": [{"name": "default", "pod": {}}],
            "volumes": [{"name": "containerdisk", "containerDisk": {"image": "guest"}}],
        },
    });
    let vmi_file = dir.join("vmi.json");
    std::fs::write(&vmi_file, serde_json::to_vec(&vmi).expect("json")).expect("write vmi");
    let vm_dir = dir.join("f");
    let log = std::fs::File::create(dir.join("floor.log")).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench-density"))
        .arg("floor-vm")
        .arg("--vmi")
        .arg(&vmi_file)
        .arg("--dir")
        .arg(&vm_dir)
        .arg("--caps")
        .arg(&caps)
        .arg("--container-disk")
        .arg(format!("containerdisk={}", image.qcow2.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start floor-vm");
    let stdout = child.stdout.take().expect("stdout");
    let stdin = child.stdin.take().expect("stdin");
    guard.child = Some(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("a report within 120 s");
    let report: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "report {line:?}: {e}; log: {}",
            std::fs::read_to_string(dir.join("floor.log")).unwrap_or_default()
        )
    });
    let pid = |k: &str| {
        report[k]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0)
    };
    let (qemu, libvirtd) = (pid("qemu_pid"), pid("libvirtd_pid"));
    guard.pids = vec![qemu, libvirtd];
    assert!(
        report["total_ms"].as_f64().is_some_and(|t| t > 0.0),
        "{report}"
    );
    let sum =
        report["daemon_ms"].as_f64().unwrap_or(0.0) + report["create_ms"].as_f64().unwrap_or(0.0);
    assert!(
        (sum - report["total_ms"].as_f64().unwrap_or(0.0)).abs() < 0.01,
        "{report}"
    );
    assert!(
        comm(qemu).is_some_and(|c| c.starts_with("qemu-system")),
        "QEMU {qemu} runs"
    );
    assert_eq!(comm(libvirtd).as_deref(), Some("libvirtd"));
    // The domain sits in the floor VM's own network namespace, not the host's.
    let netns = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    assert_ne!(netns(qemu), netns(std::process::id()));

    // Closing stdin stops the domain and the daemon; the child exits 0.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = guard
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "floor-vm did not exit after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "floor-vm exit {status}");
    let gone = |p: u32| comm(p).is_none_or(|c| !(c.starts_with("qemu-system") || c == "libvirtd"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(gone(qemu) && gone(libvirtd)) {
        assert!(Instant::now() < deadline, "QEMU or libvirtd left running");
        std::thread::sleep(Duration::from_millis(50));
    }
}
