//! kernelBoot (upstream's vmi-kernel-boot example): the kernel and initramfs alone, no disk. The
//! seed sets the password, runs a command and gives a second NIC a static address (network-config
//! v1); a person logs in on the serial console with that password.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{BOOT_TIMEOUT, POWEROFF_TIMEOUT, image};
use kubevirt_rs_guest::{Nic, NoCloud, VmBuilder};

#[test]
fn kernel_boot_console_login_with_cloud_init_password_and_static_nic() -> Result<()> {
    let image = image();
    let work = tempfile::tempdir()?;
    let user_data = "#cloud-config\n\
        password: console-pw-42\n\
        chpasswd: { expire: False }\n\
        runcmd:\n  - echo kernel-boot-runcmd-$((40 + 2))\n";
    let network_config = "version: 1\n\
        config:\n\
        \x20 - type: physical\n\
        \x20   name: eth1\n\
        \x20   mac_address: '52:54:00:00:77:10'\n\
        \x20   subnets:\n\
        \x20     - type: static\n\
        \x20       address: 192.168.77.10\n\
        \x20       netmask: 255.255.255.0\n";
    let seed = work.path().join("seed.iso");
    NoCloud::new("iid-kernel-boot", "kernelvm", user_data)
        .with_network_config(network_config)
        .write_iso(&seed)?;

    let mut vm = VmBuilder::kernel(&image, "console=ttyS0")
        .seed(&seed)
        .nic(Nic {
            mac: Some("52:54:00:00:77:10".into()),
            net: Some("192.168.77.0/24".into()),
            forward_ssh: false,
        })
        .start()?;
    vm.wait_for_console("kernel-boot-runcmd-42", BOOT_TIMEOUT)?;
    vm.wait_for_console("kernelvm login: ", BOOT_TIMEOUT)?;
    vm.wait_for_console("cloud-init: v. kubevirt-rs finished", BOOT_TIMEOUT)?;
    let console = vm.console();
    assert!(console.text().contains("guest-init: kubevirt-rs guest"));
    // No disk: the guest runs from its initramfs.
    assert!(!console.text().contains("root overlay"));

    // The default password was replaced by the seed's.
    let mark = console.len();
    console.send(&format!("{}\n", image.default_user))?;
    console.wait_for_from(mark, "Password: ", Duration::from_secs(30))?;
    console.send("console-pw-42\n")?;
    let mark = console.wait_for_from(mark, "root@kernelvm:~# ", Duration::from_secs(30))?;
    console.send("ip -o -4 addr show dev eth1; awk '$2 == \"/\" { print \"root=\" $3 }' /proc/mounts; echo done-$((6 * 7))\n")?;
    let end = console.wait_for_from(mark, "done-42", Duration::from_secs(30))?;
    let shown = console.text()[mark..end].to_string();
    assert!(shown.contains("inet 192.168.77.10/24"), "eth1: {shown}");
    assert!(shown.contains("root=rootfs"), "root: {shown}");

    vm.powerdown()?;
    let status = vm.wait_exit(POWEROFF_TIMEOUT)?;
    assert!(status.success(), "QEMU exited with {status}");
    Ok(())
}
