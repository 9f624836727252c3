//! Seed images as the guest (and KubeVirt) expect them, checked with isoinfo; no VM.

use std::process::Command;

use anyhow::Result;
use kubevirt_rs_guest::{ConfigDrive, NoCloud};

fn isoinfo(args: &[&str], iso: &std::path::Path) -> Result<String> {
    let out = Command::new("isoinfo")
        .args(args)
        .arg("-i")
        .arg(iso)
        .output()?;
    assert!(
        out.status.success(),
        "isoinfo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn nocloud_iso_is_labelled_cidata_with_its_files() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let iso = dir.path().join("seed.iso");
    NoCloud::new("iid-1", "host1", "#cloud-config\n{}\n")
        .with_network_config("version: 2\n")
        .write_iso(&iso)?;
    assert!(isoinfo(&["-d"], &iso)?.contains("Volume id: cidata"));
    let files = isoinfo(&["-R", "-f"], &iso)?;
    for f in ["/meta-data", "/user-data", "/network-config"] {
        assert!(files.lines().any(|l| l == f), "{f} missing: {files}");
    }
    let meta = isoinfo(&["-R", "-x", "/meta-data"], &iso)?;
    assert_eq!(meta, "instance-id: iid-1\nlocal-hostname: host1\n");
    Ok(())
}

#[test]
fn config_drive_iso_has_the_openstack_layout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let iso = dir.path().join("cd.iso");
    ConfigDrive::new("uuid-1", "host2", "#!/bin/sh\ntrue\n")
        .with_public_key("k", "ssh-ed25519 AAAA k")
        .write_iso(&iso)?;
    assert!(isoinfo(&["-d"], &iso)?.contains("Volume id: config-2"));
    let meta: serde_json::Value = serde_json::from_str(&isoinfo(
        &["-R", "-x", "/openstack/latest/meta_data.json"],
        &iso,
    )?)?;
    assert_eq!(meta["uuid"], "uuid-1");
    assert_eq!(meta["hostname"], "host2");
    assert_eq!(meta["public_keys"]["k"], "ssh-ed25519 AAAA k");
    assert_eq!(
        isoinfo(&["-R", "-x", "/openstack/latest/user_data"], &iso)?,
        "#!/bin/sh\ntrue\n"
    );
    Ok(())
}

#[test]
fn vfat_seed_is_a_labelled_fat12_image() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let img = dir.path().join("seed.img");
    NoCloud::new("iid-2", "host3", "#cloud-config\n").write_vfat(&img)?;
    let bytes = std::fs::read(&img)?;
    assert_eq!(bytes.len(), 1_474_560);
    assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
    assert_eq!(&bytes[43..54], b"CIDATA     ");
    assert_eq!(&bytes[54..62], b"FAT12   ");
    // The root directory starts with the volume label entry.
    let root = 512 * 19;
    assert_eq!(&bytes[root..root + 11], b"CIDATA     ");
    assert_eq!(bytes[root + 11], 0x08);
    // The guest reading it is covered by tests/cloud_init.rs.
    Ok(())
}
