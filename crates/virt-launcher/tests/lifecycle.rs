//! The launcher end to end, without a network: the test guest's disk as a containerDisk plus a
//! cloudInitNoCloud seed; Sync brings the domain to Running, the serial log shows the user-data
//! output, Pause and Unpause change the state, events stream every change, and SIGTERM stops
//! the guest gracefully (ACPI) within the grace period with exit code 0.

mod common;

use std::time::{Duration, Instant};

use common::{Launcher, Options};
use launcher_proto::v1::{
    DomainRequest, DomainState, EventType, SoftRebootRequest, StateReason, SyncRequest,
    WatchRequest,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_pauses_and_stops_gracefully_on_sigterm() {
    if !common::root() {
        eprintln!("skipped: needs root");
        return;
    }
    let image = kubevirt_rs_guest::GuestImage::ensure().expect("guest image");
    let name = common::unique("vm");
    let uid = "6f1c2d3e-0000-4000-8000-00000000a001";
    let mut l = Launcher::start(Options {
        namespace: "lifecycle",
        name: &name,
        uid,
        netns: None,
        extra_args: vec![
            "--container-disk".into(),
            format!("containerdisk={}", image.qcow2.display()),
        ],
    });
    let started = Instant::now();
    let mut client = l.client(Duration::from_secs(60)).await;

    let info = client
        .info(launcher_proto::v1::InfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.domain_name, format!("lifecycle_{name}"));
    assert!(info.serial_socket.ends_with("/virt-serial0"), "{info:?}");

    let marker = "launcher-test-runcmd-marker";
    let vmi = common::vmi(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "lifecycle", "uid": uid},
        "spec": {
            "terminationGracePeriodSeconds": 60,
            "domain": {
                "devices": {
                    "autoattachPodInterface": false,
                    "logSerialConsole": true,
                    "disks": [
                        {"name": "containerdisk", "disk": {"bus": "virtio"}},
                        {"name": "cloudinitdisk", "disk": {"bus": "virtio"}},
                    ],
                },
                "resources": {"requests": {"memory": "128Mi"}},
            },
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": "guest:latest"}},
                {"name": "cloudinitdisk", "cloudInitNoCloud": {
                    "userData": format!("#cloud-config\nhostname: lifecycle-vm\nruncmd:\n  - echo {marker}\n"),
                }},
            ],
        },
    }));

    // Watch from the start: the stream must show every change up to the final event.
    let mut events = client
        .watch_events(WatchRequest { uid: uid.into() })
        .await
        .expect("watch")
        .into_inner();
    let first = events
        .message()
        .await
        .expect("stream")
        .expect("first event");
    assert_eq!(first.r#type(), EventType::Current);
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(ev)) = events.message().await {
            let last = ev.r#final;
            all.push(ev);
            if last {
                break;
            }
        }
        all
    });

    let status = client
        .sync(SyncRequest {
            vmi_json: serde_json::to_vec(&vmi).expect("json"),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sync: {e}\n{}", l.log()))
        .into_inner();
    assert_eq!(status.state(), DomainState::Running, "{status:?}");
    eprintln!("launcher start to running: {:?}", started.elapsed());

    // A second Sync is a no-op that reports the same domain.
    let again = client
        .sync(SyncRequest {
            vmi_json: serde_json::to_vec(&vmi).expect("json"),
            ..Default::default()
        })
        .await
        .expect("second sync")
        .into_inner();
    assert_eq!(again.state(), DomainState::Running);

    // The overlay sits in the scratch dir; the image itself is never written.
    let overlay = l.scratch.join("disks/containerdisk.qcow2");
    assert!(overlay.exists(), "no overlay at {}", overlay.display());

    l.wait_serial("lifecycle-vm login:", Duration::from_secs(180))
        .await;
    l.wait_serial(marker, Duration::from_secs(60)).await;
    let console = l.serial_log();
    assert!(
        console.contains("datasource NoCloud"),
        "{}",
        common::tail(&console, 30)
    );
    // logSerialConsole: the console also reaches the launcher's log (the pod log).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        l.log()
            .lines()
            .any(|line| line.contains("guest_console") && line.contains(marker)),
        "the console did not reach the launcher log"
    );

    let paused = client
        .pause(DomainRequest { uid: uid.into() })
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(paused.state(), DomainState::Paused);
    assert_eq!(paused.reason(), StateReason::User);
    let got = client
        .get_domain(DomainRequest::default())
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.state(), DomainState::Paused);
    let resumed = client
        .unpause(DomainRequest::default())
        .await
        .expect("unpause")
        .into_inner();
    assert_eq!(resumed.state(), DomainState::Running);
    assert_eq!(resumed.reason(), StateReason::Unpaused);

    let wrong = client
        .pause(DomainRequest {
            uid: "someone-else".into(),
        })
        .await;
    assert_eq!(
        wrong.expect_err("wrong uid").code(),
        tonic::Code::FailedPrecondition
    );

    let stats = client
        .get_domain_stats(DomainRequest::default())
        .await
        .expect("stats")
        .into_inner();
    assert!(stats.cpu_time_ns > 0 && stats.vcpus == 1, "{stats:?}");
    assert!(
        stats
            .blocks
            .iter()
            .any(|b| b.name == "containerdisk" && b.rd_bytes > 0),
        "{stats:?}"
    );

    // The test guest's qemu-ga on the domain's agent channel: UNAVAILABLE until it answers,
    // then the guest's OS, its file systems and its users.
    let t = Instant::now();
    let info = loop {
        match client.get_guest_info(DomainRequest::default()).await {
            Ok(info) => break info.into_inner(),
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "the guest agent never answered: {e}\n{}",
                    common::tail(&l.serial_log(), 30)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(info.os_id, "kubevirt-rs-guest", "{info:?}");
    assert_eq!(info.hostname, "lifecycle-vm", "{info:?}");
    assert!(!info.agent_version.is_empty(), "{info:?}");
    let fs = client
        .get_guest_filesystems(DomainRequest::default())
        .await
        .expect("file systems")
        .into_inner();
    assert!(
        fs.filesystems
            .iter()
            .any(|f| f.mount_point == "/run/disk" && f.r#type == "ext4" && f.total_bytes > 0),
        "{fs:?}"
    );
    client
        .get_guest_users(DomainRequest::default())
        .await
        .expect("users");

    // Soft reboot without an agent: the ACPI power button, and libvirt resets the guest in the
    // same QEMU when it powers off; the guest boots again to its login prompt.
    let qemu = l.qemu_pids();
    let count = |needle: &str| l.serial_log().matches(needle).count();
    let logins = count("lifecycle-vm login:");
    let rebooting = client
        .soft_reboot(SoftRebootRequest {
            uid: uid.into(),
            guest_agent: false,
        })
        .await
        .expect("soft reboot")
        .into_inner();
    assert!(rebooting.is_active(), "{rebooting:?}");
    let t = Instant::now();
    while count("lifecycle-vm login:") <= logins {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no second login prompt after the soft reboot:\n{}\nlauncher:\n{}",
            common::tail(&l.serial_log(), 30),
            l.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("soft reboot to login prompt: {:?}", t.elapsed());
    assert_eq!(l.qemu_pids(), qemu, "the same QEMU");
    let after = client
        .get_domain(DomainRequest::default())
        .await
        .expect("get")
        .into_inner();
    assert_eq!(after.state(), DomainState::Running);
    let presses = count("ACPI power button pressed");

    // SIGTERM: ACPI power button, the guest powers off, the launcher exits 0.
    let t = Instant::now();
    l.signal(nix::sys::signal::Signal::SIGTERM);
    let status = l
        .wait_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("launcher still running after SIGTERM:\n{}", l.log()));
    eprintln!("SIGTERM to exit: {:?}", t.elapsed());
    assert_eq!(status.code(), Some(0), "launcher log:\n{}", l.log());
    assert!(t.elapsed() < Duration::from_secs(60));
    let console = l.serial_log();
    assert!(
        console.matches("ACPI power button pressed").count() > presses,
        "{}",
        common::tail(&console, 20)
    );

    let events = collector.await.expect("collector");
    let last = events.last().expect("a final event");
    assert!(last.r#final, "{events:?}");
    assert_eq!(last.exit_code, 0);
    let st = last.status.clone().unwrap_or_default();
    assert_eq!(
        (st.state(), st.reason()),
        (DomainState::Shutoff, StateReason::Shutdown)
    );
    let states: Vec<DomainState> = events
        .iter()
        .filter_map(|e| e.status.as_ref().map(|s| s.state()))
        .collect();
    assert!(states.contains(&DomainState::Paused), "{states:?}");
    assert!(
        events.iter().any(|e| e.r#type() == EventType::Added),
        "{events:?}"
    );

    // Cleaned up: no QEMU left, no overlay.
    assert!(l.qemu_pids().is_empty(), "QEMU still running");
    assert!(!overlay.exists(), "overlay left behind");
}

fn small_vmi(
    name: &str,
    uid: &str,
    grace: i64,
    runcmd: &str,
) -> kubevirt_api::v1::VirtualMachineInstance {
    common::vmi(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "lifecycle", "uid": uid},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "domain": {
                "devices": {
                    "autoattachPodInterface": false,
                    "disks": [
                        {"name": "containerdisk", "disk": {"bus": "virtio"}},
                        {"name": "cloudinitdisk", "disk": {"bus": "virtio"}},
                    ],
                },
                "resources": {"requests": {"memory": "128Mi"}},
            },
            "volumes": [
                {"name": "containerdisk", "containerDisk": {"image": "guest:latest"}},
                {"name": "cloudinitdisk", "cloudInitNoCloud": {
                    "userData": format!("#cloud-config\nruncmd:\n  - {runcmd}\n"),
                }},
            ],
        },
    }))
}

async fn started(
    name: &str,
    uid: &str,
    vmi: &kubevirt_api::v1::VirtualMachineInstance,
) -> (
    Launcher,
    launcher_proto::LauncherClient<tonic::transport::Channel>,
) {
    let image = kubevirt_rs_guest::GuestImage::ensure().expect("guest image");
    let mut l = Launcher::start(Options {
        namespace: "lifecycle",
        name,
        uid,
        netns: None,
        extra_args: vec![
            "--container-disk".into(),
            format!("containerdisk={}", image.qcow2.display()),
        ],
    });
    let mut client = l.client(Duration::from_secs(60)).await;
    let st = client
        .sync(SyncRequest {
            vmi_json: serde_json::to_vec(vmi).expect("json"),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sync: {e}\n{}", l.log()))
        .into_inner();
    assert_eq!(st.state(), DomainState::Running);
    (l, client)
}

/// A guest that powers itself off ends the launcher with 0; a QEMU killed from outside is
/// reported as crashed with QEMU's last words and ends it with 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_poweroff_exits_0_and_a_killed_qemu_exits_2() {
    if !common::root() {
        eprintln!("skipped: needs root");
        return;
    }
    let name = common::unique("off");
    let uid = "6f1c2d3e-0000-4000-8000-00000000a002";
    let (mut l, _client) = started(&name, uid, &small_vmi(&name, uid, 30, "poweroff")).await;
    let exit = l
        .wait_exit(Duration::from_secs(180))
        .await
        .unwrap_or_else(|| panic!("no poweroff:\n{}", l.log()));
    assert_eq!(exit.code(), Some(0), "{}", l.log());

    let name = common::unique("crash");
    let uid = "6f1c2d3e-0000-4000-8000-00000000a003";
    let (mut l, mut client) = started(&name, uid, &small_vmi(&name, uid, 30, "true")).await;
    let mut events = client
        .watch_events(WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let pids = l.qemu_pids();
    assert_eq!(pids.len(), 1, "expected one QEMU: {pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill QEMU");
    let exit = l
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("launcher did not notice:\n{}", l.log()));
    assert_eq!(exit.code(), Some(2), "{}", l.log());
    let mut last = None;
    while let Ok(Some(ev)) = events.message().await {
        last = Some(ev);
    }
    let last = last.expect("events");
    assert!(last.r#final && last.exit_code == 2, "{last:?}");
    let st = last.status.unwrap_or_default();
    assert_eq!(
        (st.state(), st.reason()),
        (DomainState::Shutoff, StateReason::Crashed),
        "{st:?}"
    );
    assert!(
        !st.message.is_empty(),
        "no reason given for the crash: {st:?}"
    );
}

/// A guest that ignores the ACPI request (its acpid is gone) is destroyed when the grace
/// period runs out: exit code 3, reason Destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_destroys_after_the_grace_period() {
    if !common::root() {
        eprintln!("skipped: needs root");
        return;
    }
    let name = common::unique("grace");
    let uid = "6f1c2d3e-0000-4000-8000-00000000a004";
    let vmi = small_vmi(&name, uid, 3, "killall acpid && echo acpid-stopped");
    let (mut l, mut client) = started(&name, uid, &vmi).await;
    l.wait_serial("acpid-stopped", Duration::from_secs(180))
        .await;
    let mut events = client
        .watch_events(WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let t = Instant::now();
    l.signal(nix::sys::signal::Signal::SIGTERM);
    let exit = l
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("not destroyed:\n{}", l.log()));
    let took = t.elapsed();
    assert_eq!(exit.code(), Some(3), "{}", l.log());
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    let mut last = None;
    while let Ok(Some(ev)) = events.message().await {
        last = Some(ev);
    }
    let st = last.and_then(|e| e.status).unwrap_or_default();
    assert_eq!(
        (st.state(), st.reason()),
        (DomainState::Shutoff, StateReason::Destroyed)
    );
    assert!(st.shutdown_requested, "{st:?}");
}

/// The daemon way of running libvirt (a private libvirtd in a private mount namespace) runs
/// the same domain; Kill ends the launcher with 3 and takes the daemon along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_mode_runs_the_domain_and_stops_its_libvirtd() {
    if !common::root() {
        eprintln!("skipped: needs root");
        return;
    }
    let image = kubevirt_rs_guest::GuestImage::ensure().expect("guest image");
    let name = common::unique("daemon");
    let uid = "6f1c2d3e-0000-4000-8000-00000000a005";
    let mut l = Launcher::start(Options {
        namespace: "lifecycle",
        name: &name,
        uid,
        netns: None,
        extra_args: vec![
            "--libvirt-mode".into(),
            "daemon".into(),
            "--container-disk".into(),
            format!("containerdisk={}", image.qcow2.display()),
        ],
    });
    let mut client = l.client(Duration::from_secs(60)).await;
    let info = client
        .info(launcher_proto::v1::InfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.libvirt_mode, "daemon");
    let vmi = small_vmi(&name, uid, 30, "true");
    let st = client
        .sync(SyncRequest {
            vmi_json: serde_json::to_vec(&vmi).expect("json"),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("sync: {e}\n{}", l.log()))
        .into_inner();
    assert_eq!(st.state(), DomainState::Running);
    let launcher_pid = l.pid().expect("pid");
    let daemons = common::children_named(launcher_pid, "libvirtd");
    assert_eq!(daemons.len(), 1, "expected the launcher's own libvirtd");
    client.kill(DomainRequest::default()).await.expect("kill");
    let exit = l
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("launcher did not exit:\n{}", l.log()));
    assert_eq!(exit.code(), Some(3), "{}", l.log());
    assert!(
        !std::path::Path::new(&format!("/proc/{}", daemons[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", daemons[0]))
                .is_ok_and(|s| s.contains(") Z ")),
        "libvirtd outlived its launcher"
    );
    assert!(l.qemu_pids().is_empty());
}
