//! Boots the disk image with a NoCloud seed: cloud-init runs the runcmd and installs the SSH key,
//! the console shows the login prompt, SSH works, the ACPI power button powers the guest off, and
//! a second boot of the same disk keeps what the first one wrote.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{BOOT_TIMEOUT, POWEROFF_TIMEOUT, SSH_TIMEOUT, image};
use kubevirt_rs_guest::{NoCloud, SshKey, VmBuilder};

/// The boot budget (QEMU start to the login prompt, TCG). Contention from other tests on
/// two cores stretches wall time, so by default the test allows the budget times
/// KUBEVIRT_RS_BOOT_SLACK (default 4) of wall time and twice the budget of QEMU CPU time;
/// KUBEVIRT_RS_BOOT_SLACK=1 on an idle machine checks the budget itself.
const BOOT_BUDGET: Duration = Duration::from_secs(5);

fn slack() -> u32 {
    std::env::var("KUBEVIRT_RS_BOOT_SLACK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}

#[test]
fn disk_boot_cloud_init_ssh_power_button_and_persistence() -> Result<()> {
    let image = image();
    let size = std::fs::metadata(&image.qcow2)?.len();
    assert!(
        size <= 20_000_000,
        "guest.qcow2 is {size} bytes, over the 20 MB budget"
    );
    let work = tempfile::tempdir()?;
    let key = SshKey::generate(work.path())?;
    let marker = format!("runcmd-marker-{}", std::process::id());
    let user_data = format!(
        "#cloud-config\n\
         ssh_authorized_keys:\n  - {}\n\
         runcmd:\n  - echo {marker} on $(hostname)\n  - [ sh, -c, 'echo uid=$(id -u) > /root/runcmd-ran' ]\n",
        key.public
    );
    let seed = work.path().join("seed.iso");
    NoCloud::new("iid-disk-boot", "diskvm", user_data).write_iso(&seed)?;
    let vm_dir = work.path().join("vm");

    let mut vm = VmBuilder::disk(&image).seed(&seed).dir(&vm_dir).start()?;
    let to_login = vm.wait_for_console(" login: ", BOOT_TIMEOUT)?;
    let cpu = vm.cpu_time().unwrap_or_default();
    eprintln!("boot to the login prompt: {to_login:.2?} wall, {cpu:.2?} QEMU CPU");
    vm.console()
        .wait_for(&format!("{marker} on diskvm"), BOOT_TIMEOUT)?;
    vm.console()
        .wait_for("cloud-init: datasource NoCloud", Duration::ZERO)?;
    assert!(
        to_login <= BOOT_BUDGET * slack(),
        "login prompt after {to_login:?}, budget {BOOT_BUDGET:?} x {}",
        slack()
    );
    assert!(
        cpu <= BOOT_BUDGET * 2,
        "QEMU used {cpu:?} of CPU to the login prompt"
    );

    let out = vm.ssh(
        &key,
        "root",
        "hostname; cat /root/runcmd-ran; . /etc/os-release; echo build=$BUILD_ID; \
         awk '$2 == \"/\" { print \"root=\" $3 }' /proc/mounts; echo kept > /root/persisted; sync",
        SSH_TIMEOUT,
    )?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "diskvm",
            "uid=0",
            &format!("build={}", image.build_id),
            "root=overlay"
        ],
        "ssh output: {out}"
    );

    // scp (OpenSSH's speaks SFTP): dropbear hands the subsystem to the guest's sftp-server.
    let local = work.path().join("copied.txt");
    std::fs::write(&local, "copied over sftp\n")?;
    vm.scp_to(&key, "root", &local, "/root/copied.txt")?;
    let out = vm.ssh(&key, "root", "cat /root/copied.txt", SSH_TIMEOUT)?;
    assert_eq!(out, "copied over sftp\n");

    let pressed = Instant::now();
    vm.powerdown()?;
    let status = vm.wait_exit(POWEROFF_TIMEOUT)?;
    eprintln!("ACPI power button to QEMU exit: {:.2?}", pressed.elapsed());
    assert!(status.success(), "QEMU exited with {status}");
    let console = vm.console().text();
    assert!(
        console.contains("ACPI power button pressed"),
        "console:\n{console}"
    );
    assert!(
        console.contains("reboot: Power down"),
        "console:\n{console}"
    );
    drop(vm);

    // The same disk again: the file written over SSH is still there, and runcmd (once per
    // instance) does not run again.
    let mut vm = VmBuilder::disk(&image).seed(&seed).dir(&vm_dir).start()?;
    vm.wait_for_console(
        "runcmd and scripts already ran for instance iid-disk-boot",
        BOOT_TIMEOUT,
    )?;
    let out = vm.ssh(&key, "root", "cat /root/persisted", SSH_TIMEOUT)?;
    assert_eq!(out.trim(), "kept");
    assert!(!vm.console().text().contains(&marker), "runcmd ran twice");
    vm.kill();
    Ok(())
}
