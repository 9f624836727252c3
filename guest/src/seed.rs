use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use crate::util::run;

/// A NoCloud seed: `meta-data`, `user-data` and optionally `network-config`, on a volume labelled
/// `cidata` (what KubeVirt's `cloudInitNoCloud` volume is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCloud {
    /// YAML (or JSON): `instance-id`, `local-hostname`, `public-keys`.
    pub meta_data: String,
    /// `#cloud-config` YAML or a `#!` script.
    pub user_data: String,
    /// network-config version 1 or 2.
    pub network_config: Option<String>,
}

impl NoCloud {
    /// A seed with this instance id and hostname.
    pub fn new(instance_id: &str, hostname: &str, user_data: impl Into<String>) -> Self {
        NoCloud {
            meta_data: format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n"),
            user_data: user_data.into(),
            network_config: None,
        }
    }

    /// Adds a network-config.
    pub fn with_network_config(mut self, network_config: impl Into<String>) -> Self {
        self.network_config = Some(network_config.into());
        self
    }

    fn files(&self) -> Vec<(&'static str, &str)> {
        let mut files = vec![
            ("meta-data", self.meta_data.as_str()),
            ("user-data", self.user_data.as_str()),
        ];
        if let Some(nc) = &self.network_config {
            files.push(("network-config", nc.as_str()));
        }
        files
    }

    /// Writes the seed as an ISO 9660 image (Rock Ridge and Joliet) labelled `cidata`.
    pub fn write_iso(&self, path: &Path) -> Result<()> {
        let staging = tempfile::tempdir().context("staging dir for the seed")?;
        for (name, content) in self.files() {
            fs::write(staging.path().join(name), content)?;
        }
        make_iso(staging.path(), "cidata", path)
    }

    /// Writes the seed as a FAT image labelled `CIDATA`. Populating it loop-mounts the image, so
    /// this needs root.
    pub fn write_vfat(&self, path: &Path) -> Result<()> {
        let file =
            fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        file.set_len(2 << 20)?;
        drop(file);
        run(Command::new("busybox")
            .args(["mkdosfs", "-n", "CIDATA"])
            .arg(path))
        .context("busybox mkdosfs (package busybox-static)")?;
        let mnt = tempfile::tempdir().context("mount point for the vfat seed")?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(path)
            .arg(mnt.path()))
        .context("loop-mounting the vfat seed (needs root)")?;
        let copied: Result<()> = self
            .files()
            .into_iter()
            .try_for_each(|(name, content)| Ok(fs::write(mnt.path().join(name), content)?));
        let unmounted = run(Command::new("umount").arg(mnt.path()));
        copied?;
        unmounted?;
        Ok(())
    }
}

/// A ConfigDrive seed (OpenStack layout) on a volume labelled `config-2`: what KubeVirt's
/// `cloudInitConfigDrive` volume is.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDrive {
    /// `openstack/latest/meta_data.json`.
    pub meta_data: Value,
    /// `openstack/latest/user_data`.
    pub user_data: Option<String>,
    /// `openstack/latest/network_data.json` (OpenStack's format; network-config v1/v2 YAML is
    /// accepted by the guest too).
    pub network_data: Option<String>,
}

impl ConfigDrive {
    /// Meta data with this uuid (the instance id) and hostname, as KubeVirt writes it.
    pub fn new(uuid: &str, hostname: &str, user_data: impl Into<String>) -> Self {
        ConfigDrive {
            meta_data: json!({
                "uuid": uuid,
                "instance_id": uuid,
                "local_hostname": hostname,
                "hostname": hostname,
            }),
            user_data: Some(user_data.into()),
            network_data: None,
        }
    }

    /// Adds an SSH key to `public_keys`.
    pub fn with_public_key(mut self, name: &str, key: &str) -> Self {
        if let Value::Object(md) = &mut self.meta_data {
            let keys = md
                .entry("public_keys")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(keys) = keys {
                keys.insert(name.to_string(), Value::String(key.to_string()));
            }
        }
        self
    }

    /// Adds `network_data.json`.
    pub fn with_network_data(mut self, network_data: impl Into<String>) -> Self {
        self.network_data = Some(network_data.into());
        self
    }

    /// Writes the seed as an ISO 9660 image labelled `config-2`.
    pub fn write_iso(&self, path: &Path) -> Result<()> {
        let staging = tempfile::tempdir().context("staging dir for the config drive")?;
        let latest = staging.path().join("openstack").join("latest");
        fs::create_dir_all(&latest)?;
        fs::write(
            latest.join("meta_data.json"),
            serde_json::to_vec(&self.meta_data)?,
        )?;
        if let Some(ud) = &self.user_data {
            fs::write(latest.join("user_data"), ud)?;
        }
        if let Some(nd) = &self.network_data {
            fs::write(latest.join("network_data.json"), nd)?;
        }
        make_iso(staging.path(), "config-2", path)
    }
}

fn make_iso(dir: &Path, label: &str, out: &Path) -> Result<()> {
    run(Command::new("genisoimage")
        .args(["-quiet", "-volid", label, "-joliet", "-rock", "-output"])
        .arg(out)
        .arg(dir))
    .context("genisoimage (package genisoimage)")?;
    if !out.exists() {
        bail!("genisoimage wrote no {}", out.display());
    }
    Ok(())
}
