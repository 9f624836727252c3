//! The contents of cloud-init data sources (pure): NoCloud (`cidata`) and ConfigDrive
//! (`config-2`) file trees, from the VMI and the user and network data already resolved (inline,
//! base64 or from a mounted Secret).

use kubevirt_api::v1::VirtualMachineInstance;

/// The ISO volume label of a NoCloud seed.
pub const NOCLOUD_LABEL: &str = "cidata";
/// The ISO volume label of an OpenStack config drive.
pub const CONFIG_DRIVE_LABEL: &str = "config-2";

/// User and network data of one cloud-init volume, and the SSH keys of the VMI's access
/// credentials that propagate through this datasource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CloudInitData {
    pub user_data: Option<Vec<u8>>,
    pub network_data: Option<Vec<u8>>,
    pub public_keys: Vec<String>,
}

/// The keys as the datasources' `public-keys` / `public_keys` mapping: "0", "1", ... in order
/// (the shape cloud-init reads, and the one upstream writes).
fn public_keys_map(keys: &[String]) -> serde_json::Map<String, serde_json::Value> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| (i.to_string(), serde_json::Value::String(k.clone())))
        .collect()
}

/// SSH public keys in the files of an access-credential Secret: one or more per file, one a
/// line; blank lines and `#` comments skipped; duplicates kept once.
pub fn parse_public_keys<'a>(files: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for data in files {
        for line in String::from_utf8_lossy(data).lines() {
            let key = line.trim();
            if !key.is_empty() && !key.starts_with('#') && !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

/// The instance id: stable for the VMI's name and namespace, so per-instance modules (runcmd,
/// users) run once for a VM, not on every start.
pub fn instance_id(vmi: &VirtualMachineInstance) -> String {
    let name = vmi.metadata.name.as_deref().unwrap_or_default();
    let ns = vmi.metadata.namespace.as_deref().unwrap_or("default");
    format!("{name}.{ns}")
}

/// The guest's hostname: `spec.hostname`, else the VMI's name.
pub fn hostname(vmi: &VirtualMachineInstance) -> String {
    vmi.spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| vmi.metadata.name.clone())
        .unwrap_or_default()
}

/// Files of a NoCloud seed: `meta-data`, `user-data` and, when given, `network-config`.
pub fn nocloud_files(vmi: &VirtualMachineInstance, data: &CloudInitData) -> Vec<(String, Vec<u8>)> {
    let mut meta = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        instance_id(vmi),
        hostname(vmi)
    );
    if !data.public_keys.is_empty() {
        // JSON is YAML: each key and value quoted and escaped by serde_json.
        meta.push_str("public-keys:\n");
        for (i, k) in data.public_keys.iter().enumerate() {
            let k = serde_json::Value::String(k.clone());
            meta.push_str(&format!("  \"{i}\": {k}\n"));
        }
    }
    let mut files = vec![
        ("meta-data".to_string(), meta.into_bytes()),
        (
            "user-data".to_string(),
            data.user_data.clone().unwrap_or_default(),
        ),
    ];
    if let Some(n) = &data.network_data {
        files.push(("network-config".to_string(), n.clone()));
    }
    files
}

/// Files of a config drive: `openstack/latest/meta_data.json`, `user_data` and, when given,
/// `network_data.json`.
pub fn config_drive_files(
    vmi: &VirtualMachineInstance,
    data: &CloudInitData,
) -> Vec<(String, Vec<u8>)> {
    let uuid = vmi.metadata.uid.clone().unwrap_or_else(|| instance_id(vmi));
    let mut meta = serde_json::json!({
        "uuid": uuid,
        "instance_id": instance_id(vmi),
        "hostname": hostname(vmi),
        "name": vmi.metadata.name.clone().unwrap_or_default(),
    });
    if !data.public_keys.is_empty() {
        meta["public_keys"] = public_keys_map(&data.public_keys).into();
    }
    let mut files = vec![(
        "openstack/latest/meta_data.json".to_string(),
        meta.to_string().into_bytes(),
    )];
    if let Some(u) = &data.user_data {
        files.push(("openstack/latest/user_data".to_string(), u.clone()));
    }
    if let Some(n) = &data.network_data {
        files.push(("openstack/latest/network_data.json".to_string(), n.clone()));
    }
    files
}

/// Decodes standard base64 (padding optional, whitespace ignored), for `userDataBase64` and
/// `networkDataBase64`. Small enough to keep a second base64 crate version out of the graph.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmi() -> VirtualMachineInstance {
        let mut v = VirtualMachineInstance::new("vm1", Default::default());
        v.metadata.namespace = Some("ns1".into());
        v.metadata.uid = Some("u-1".into());
        v
    }

    #[test]
    fn nocloud_has_meta_user_and_network_files() {
        let data = CloudInitData {
            user_data: Some(b"#cloud-config\n".to_vec()),
            network_data: Some(b"version: 2\n".to_vec()),
            public_keys: Vec::new(),
        };
        let files = nocloud_files(&vmi(), &data);
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["meta-data", "user-data", "network-config"]);
        assert_eq!(
            String::from_utf8_lossy(&files[0].1),
            "instance-id: vm1.ns1\nlocal-hostname: vm1\n"
        );
    }

    #[test]
    fn config_drive_meta_data_is_json_with_uuid_and_hostname() {
        let mut v = vmi();
        v.spec.hostname = Some("h1".into());
        let files = config_drive_files(&v, &CloudInitData::default());
        assert_eq!(files.len(), 1);
        let meta: serde_json::Value = serde_json::from_slice(&files[0].1).expect("json");
        assert_eq!(meta["uuid"], "u-1");
        assert_eq!(meta["hostname"], "h1");
    }

    #[test]
    fn access_credential_keys_go_into_both_meta_data_files() {
        let keys = parse_public_keys([
            &b"ssh-ed25519 AAAA one@a\n\n# a comment\nssh-rsa BBBB \"two\"\n"[..],
            &b"ssh-ed25519 AAAA one@a"[..],
        ]);
        assert_eq!(keys, ["ssh-ed25519 AAAA one@a", "ssh-rsa BBBB \"two\""]);
        let data = CloudInitData {
            public_keys: keys,
            ..Default::default()
        };
        let nocloud = nocloud_files(&vmi(), &data);
        assert_eq!(
            String::from_utf8_lossy(&nocloud[0].1),
            "instance-id: vm1.ns1\nlocal-hostname: vm1\npublic-keys:\n  \"0\": \"ssh-ed25519 AAAA one@a\"\n  \"1\": \"ssh-rsa BBBB \\\"two\\\"\"\n"
        );
        let drive = config_drive_files(&vmi(), &data);
        let meta: serde_json::Value = serde_json::from_slice(&drive[0].1).expect("json");
        assert_eq!(meta["public_keys"]["0"], "ssh-ed25519 AAAA one@a");
        assert_eq!(meta["public_keys"]["1"], "ssh-rsa BBBB \"two\"");
        // Without keys the member is left out, as before.
        let plain = config_drive_files(&vmi(), &CloudInitData::default());
        let meta: serde_json::Value = serde_json::from_slice(&plain[0].1).expect("json");
        assert!(meta.get("public_keys").is_none());
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVs\nbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(decode_base64("a*b"), None);
    }
}
