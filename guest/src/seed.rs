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

    /// Writes the seed as a FAT12 image labelled `CIDATA` (made here, with long file names; no
    /// mount or root needed).
    pub fn write_vfat(&self, path: &Path) -> Result<()> {
        let image = fat12_image("CIDATA", &self.files())?;
        fs::write(path, image).with_context(|| format!("writing {}", path.display()))
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

/// A 1.44 MB FAT12 file system with a volume label and the files in its root directory (each
/// with a VFAT long name).
fn fat12_image(label: &str, files: &[(&str, &str)]) -> Result<Vec<u8>> {
    const SECTOR: usize = 512;
    const TOTAL_SECTORS: usize = 2880;
    const FAT_SECTORS: usize = 9;
    const ROOT_ENTRIES: usize = 224;
    const ROOT_START: usize = SECTOR * (1 + 2 * FAT_SECTORS);
    const DATA_START: usize = ROOT_START + ROOT_ENTRIES * 32;
    let mut img = vec![0u8; SECTOR * TOTAL_SECTORS];
    let mut label11 = [b' '; 11];
    for (d, s) in label11.iter_mut().zip(label.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    // Boot sector and BIOS parameter block.
    img[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
    img[3..11].copy_from_slice(b"KVRSSEED");
    img[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    img[13] = 1; // sectors per cluster
    img[14..16].copy_from_slice(&1u16.to_le_bytes()); // reserved sectors
    img[16] = 2; // FATs
    img[17..19].copy_from_slice(&(ROOT_ENTRIES as u16).to_le_bytes());
    img[19..21].copy_from_slice(&(TOTAL_SECTORS as u16).to_le_bytes());
    img[21] = 0xF0; // media
    img[22..24].copy_from_slice(&(FAT_SECTORS as u16).to_le_bytes());
    img[24..26].copy_from_slice(&18u16.to_le_bytes()); // sectors per track
    img[26..28].copy_from_slice(&2u16.to_le_bytes()); // heads
    img[38] = 0x29; // extended boot signature
    img[39..43].copy_from_slice(&0x4b56_5253u32.to_le_bytes()); // volume id
    img[43..54].copy_from_slice(&label11);
    img[54..62].copy_from_slice(b"FAT12   ");
    img[510] = 0x55;
    img[511] = 0xAA;

    let mut fat = vec![0u8; SECTOR * FAT_SECTORS];
    let mut set_fat = |n: usize, v: u16| {
        let off = n * 3 / 2;
        if n.is_multiple_of(2) {
            fat[off] = (v & 0xFF) as u8;
            fat[off + 1] = (fat[off + 1] & 0xF0) | ((v >> 8) & 0x0F) as u8;
        } else {
            fat[off] = (fat[off] & 0x0F) | ((v & 0x0F) << 4) as u8;
            fat[off + 1] = (v >> 4) as u8;
        }
    };
    set_fat(0, 0xFF0);
    set_fat(1, 0xFFF);

    let mut root: Vec<[u8; 32]> = Vec::new();
    let mut vol = [0u8; 32];
    vol[..11].copy_from_slice(&label11);
    vol[11] = 0x08;
    root.push(vol);
    let mut next_cluster = 2usize;
    for (i, (name, content)) in files.iter().enumerate() {
        let short: [u8; 11] = {
            let mut s = [b' '; 11];
            s[..8].copy_from_slice(format!("KVRS{i:04}").as_bytes());
            s
        };
        let sum = short.iter().fold(0u8, |sum, b| {
            ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(*b)
        });
        let mut units: Vec<u16> = name.encode_utf16().collect();
        units.push(0);
        while !units.len().is_multiple_of(13) {
            units.push(0xFFFF);
        }
        let parts = units.len() / 13;
        for part in (0..parts).rev() {
            let mut e = [0u8; 32];
            e[0] = (part + 1) as u8 | if part + 1 == parts { 0x40 } else { 0 };
            e[11] = 0x0F;
            e[13] = sum;
            let chunk = &units[part * 13..part * 13 + 13];
            let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
            for (u, off) in chunk.iter().zip(offsets) {
                e[off..off + 2].copy_from_slice(&u.to_le_bytes());
            }
            root.push(e);
        }
        let data = content.as_bytes();
        let clusters = data.len().div_ceil(SECTOR);
        let first = if clusters == 0 { 0 } else { next_cluster };
        if next_cluster + clusters > (TOTAL_SECTORS - DATA_START / SECTOR) + 2 {
            bail!("the seed's files do not fit in a 1.44 MB FAT image");
        }
        for c in 0..clusters {
            let n = next_cluster + c;
            set_fat(
                n,
                if c + 1 == clusters {
                    0xFFF
                } else {
                    (n + 1) as u16
                },
            );
        }
        let at = DATA_START + (next_cluster - 2) * SECTOR;
        img[at..at + data.len()].copy_from_slice(data);
        next_cluster += clusters;
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(&short);
        e[11] = 0x20; // archive
        e[16..18].copy_from_slice(&0x21u16.to_le_bytes()); // 1980-01-01
        e[24..26].copy_from_slice(&0x21u16.to_le_bytes());
        e[26..28].copy_from_slice(&(first as u16).to_le_bytes());
        e[28..32].copy_from_slice(&u32::try_from(data.len())?.to_le_bytes());
        root.push(e);
    }
    if root.len() > ROOT_ENTRIES {
        bail!("too many files for the FAT root directory");
    }
    for (i, e) in root.iter().enumerate() {
        img[ROOT_START + i * 32..ROOT_START + i * 32 + 32].copy_from_slice(e);
    }
    for copy in 0..2 {
        let at = SECTOR * (1 + copy * FAT_SECTORS);
        img[at..at + fat.len()].copy_from_slice(&fat);
    }
    Ok(img)
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
