//! The cloud-init subset beyond the basics: a vfat NoCloud seed with users, write_files, bootcmd
//! and network-config v2; a ConfigDrive seed with meta-data keys, a `#!` user-data script and
//! OpenStack network_data.json.

mod common;

use anyhow::Result;
use common::{BOOT_TIMEOUT, SSH_TIMEOUT, image};
use kubevirt_rs_guest::{ConfigDrive, Nic, NoCloud, SshKey, VmBuilder, ssh};

#[test]
fn nocloud_vfat_users_write_files_bootcmd_network_v2() -> Result<()> {
    let image = image();
    let work = tempfile::tempdir()?;
    let alice = SshKey::generate(&work.path().join("alice").tap_mkdir()?)?;
    let user_data = format!(
        "#cloud-config\n\
         hostname: vfatvm\n\
         users:\n\
         \x20 - default\n\
         \x20 - name: alice\n\
         \x20   ssh_authorized_keys:\n\
         \x20     - {}\n\
         write_files:\n\
         \x20 - path: /etc/kvrs-test/hello.txt\n\
         \x20   content: |\n\
         \x20     hello from write_files\n\
         \x20     second line\n\
         \x20   permissions: '0640'\n\
         \x20 - path: /etc/kvrs-test/b64\n\
         \x20   encoding: b64\n\
         \x20   content: aGVsbG8gYjY0Cg==\n\
         bootcmd:\n\
         \x20 - echo bootcmd-ran > /run/bootcmd-ran\n",
        alice.public
    );
    let network_config = "network:\n\
        \x20 version: 2\n\
        \x20 ethernets:\n\
        \x20   data:\n\
        \x20     match:\n\
        \x20       macaddress: '52:54:00:00:78:10'\n\
        \x20     set-name: data0\n\
        \x20     addresses: [192.168.78.10/24]\n\
        \x20     nameservers:\n\
        \x20       addresses: [192.168.78.53]\n\
        \x20     routes:\n\
        \x20       - to: 10.78.0.0/16\n\
        \x20         via: 192.168.78.1\n";
    let seed = work.path().join("seed.img");
    NoCloud::new("iid-vfat", "ignored-by-user-data", user_data)
        .with_network_config(network_config)
        .write_vfat(&seed)?;

    let vm = VmBuilder::disk(&image)
        .seed(&seed)
        .nic(Nic {
            mac: Some("52:54:00:00:78:10".into()),
            net: Some("192.168.78.0/24".into()),
            forward_ssh: false,
        })
        .start()?;
    vm.wait_for_console("vfatvm login: ", BOOT_TIMEOUT)?;
    let out = vm.ssh(
        &alice,
        "alice",
        "id -un; hostname; cat /etc/kvrs-test/b64; stat -c '%a %U' /etc/kvrs-test/hello.txt; \
         cat /run/bootcmd-ran; ip -o -4 addr show dev data0 | awk '{ print $4 }'; ip route show 10.78.0.0/16; \
         grep -c '^nameserver 192.168.78.53$' /etc/resolv.conf",
        SSH_TIMEOUT,
    )?;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "alice",
            "vfatvm",
            "hello b64",
            "640 root",
            "bootcmd-ran",
            "192.168.78.10/24",
            "10.78.0.0/16 via 192.168.78.1 dev data0",
            "1"
        ],
        "output: {out}"
    );
    let port = vm.ssh_port().unwrap_or_default();
    // alice's key is alice's alone.
    let as_root = ssh(port, &alice, "root", "true")?;
    assert!(!as_root.status.success(), "alice's key logged in as root");
    let console = vm.console().text();
    assert!(
        console.contains("cloud-init: datasource NoCloud"),
        "{console}"
    );
    assert!(console.contains("created user alice"), "{console}");
    Ok(())
}

#[test]
fn config_drive_keys_script_and_openstack_network_data() -> Result<()> {
    let image = image();
    let work = tempfile::tempdir()?;
    let key = SshKey::generate(work.path())?;
    let network_data = r#"{
        "links": [{"id": "tap1", "type": "phy", "ethernet_mac_address": "52:54:00:00:79:10"}],
        "networks": [{"id": "net1", "link": "tap1", "type": "ipv4",
                      "ip_address": "192.168.79.10", "netmask": "255.255.255.0"}],
        "services": []
    }"#;
    let seed = work.path().join("config-drive.iso");
    ConfigDrive::new(
        "3f7c7a4e-0d3b-4c1e-9d57-6a1f0c2b9e10",
        "cdvm",
        "#!/bin/sh\necho config-drive-script on $(hostname) as $(id -u)\n",
    )
    .with_public_key("test", &key.public)
    .with_network_data(network_data)
    .write_iso(&seed)?;

    let vm = VmBuilder::kernel(&image, "console=ttyS0 quiet")
        .seed(&seed)
        .nic(Nic {
            mac: Some("52:54:00:00:79:10".into()),
            net: Some("192.168.79.0/24".into()),
            forward_ssh: false,
        })
        .start()?;
    vm.wait_for_console("config-drive-script on cdvm as 0", BOOT_TIMEOUT)?;
    vm.wait_for_console("cloud-init: datasource ConfigDrive", BOOT_TIMEOUT)?;
    let out = vm.ssh(
        &key,
        "root",
        "hostname; ip -o -4 addr show dev eth1 | awk '{ print $4 }'; cat /var/lib/cloud/data/instance-id",
        SSH_TIMEOUT,
    )?;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "cdvm",
            "192.168.79.10/24",
            "3f7c7a4e-0d3b-4c1e-9d57-6a1f0c2b9e10"
        ],
        "output: {out}"
    );
    Ok(())
}

trait TapMkdir {
    fn tap_mkdir(self) -> std::io::Result<std::path::PathBuf>;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(&self)?;
        Ok(self)
    }
}
