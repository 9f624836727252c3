//! The containerDisk: pushed to a private registry, pulled back, digests and content checked; and
//! `scripts/registry` start/status/stop on a free port (idempotent).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, anyhow};
use common::image;
use kubevirt_rs_guest::{
    GuestImage, IMAGE_REPOSITORY, IMAGE_TAG, Registry, free_loopback_port, pull_oci_layout,
    repo_root,
};
use serde_json::Value;

fn sha256_file(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("sha256sum {} printed nothing", path.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs")
        .join("sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn container_disk_push_and_pull_back_with_the_same_digest() -> Result<()> {
    let image = image();
    let registry = Registry::start()?;
    let pushed = GuestImage::push(registry.addr())?;
    assert_eq!(pushed, image.manifest_digest);
    assert_eq!(
        registry.manifest_digest(IMAGE_REPOSITORY, IMAGE_TAG)?,
        image.manifest_digest
    );
    // Pushing again is a no-op with the same answer.
    assert_eq!(GuestImage::push(registry.addr())?, image.manifest_digest);

    let work = tempfile::tempdir()?;
    let pulled = work.path().join("pulled");
    pull_oci_layout(registry.addr(), IMAGE_REPOSITORY, IMAGE_TAG, &pulled)?;
    let index = read_json(&pulled.join("index.json"))?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(manifest_digest, image.manifest_digest);
    let manifest_blob = blob(&pulled, &manifest_digest);
    assert_eq!(
        format!("sha256:{}", sha256_file(&manifest_blob)?),
        manifest_digest
    );

    let manifest = read_json(&manifest_blob)?;
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer_digest = layers[0]["digest"].as_str().unwrap_or_default();
    assert_eq!(layer_digest, image.layer_digest);
    let layer = blob(&pulled, layer_digest);
    assert_eq!(format!("sha256:{}", sha256_file(&layer)?), layer_digest);
    let config = read_json(&blob(
        &pulled,
        manifest["config"]["digest"].as_str().unwrap_or_default(),
    ))?;
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");

    // The layer holds /disk/guest.qcow2 (and /boot/vmlinuz, /boot/initrd.img for kernelBoot),
    // owned by 107 (KubeVirt's qemu user), byte for byte.
    let listing = Command::new("tar").arg("-tvzf").arg(&layer).output()?;
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for file in ["disk/guest.qcow2", "boot/vmlinuz", "boot/initrd.img"] {
        assert!(
            listing
                .lines()
                .any(|l| l.contains("107/107") && l.ends_with(file)),
            "{file}: {listing}"
        );
    }
    let extracted = work.path().join("layer");
    std::fs::create_dir_all(&extracted)?;
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&extracted)
        .status()?;
    assert!(status.success());
    assert_eq!(
        sha256_file(&extracted.join("disk/guest.qcow2"))?,
        image.qcow2_sha256
    );
    assert_eq!(sha256_file(&image.qcow2)?, image.qcow2_sha256);
    assert_eq!(
        sha256_file(&extracted.join("boot/vmlinuz"))?,
        sha256_file(&image.kernel)?
    );
    assert_eq!(
        sha256_file(&extracted.join("boot/initrd.img"))?,
        sha256_file(&image.initrd)?
    );
    Ok(())
}

/// `scripts/registry` with its address and state dir overridden; stopped on drop.
struct ScriptRegistry {
    addr: String,
    dir: tempfile::TempDir,
}

impl ScriptRegistry {
    fn run(&self, action: &str) -> Result<Output> {
        Ok(Command::new(repo_root().join("scripts/registry"))
            .arg(action)
            .env("KUBEVIRT_RS_REGISTRY", &self.addr)
            .env("KUBEVIRT_RS_REGISTRY_DIR", self.dir.path())
            .output()?)
    }
}

impl Drop for ScriptRegistry {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

fn get_v2(addr: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.lines().next().unwrap_or_default().to_string())
}

#[test]
fn registry_script_start_status_stop_are_idempotent() -> Result<()> {
    let reg = ScriptRegistry {
        addr: format!("127.0.0.1:{}", free_loopback_port()?),
        dir: tempfile::tempdir()?,
    };
    assert_eq!(reg.run("status")?.status.code(), Some(3));
    let first = reg.run("start")?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = reg.run("start")?;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already running"));
    assert_eq!(reg.run("status")?.status.code(), Some(0));
    assert!(get_v2(&reg.addr)?.contains(" 200 "));
    assert!(reg.dir.path().join("storage").is_dir());
    assert!(reg.run("stop")?.status.success());
    assert!(reg.run("stop")?.status.success());
    assert_eq!(reg.run("status")?.status.code(), Some(3));
    assert!(
        TcpStream::connect(&reg.addr).is_err(),
        "still listening after stop"
    );
    Ok(())
}

#[test]
fn registry_script_refuses_non_loopback_addresses() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(repo_root().join("scripts/registry"))
        .arg("start")
        .env("KUBEVIRT_RS_REGISTRY", "10.1.2.3:5000")
        .env("KUBEVIRT_RS_REGISTRY_DIR", dir.path())
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only loopback"));
    Ok(())
}
