//! The guest's YAML/JSON reader (guest/rootfs/usr/lib/guest-init/yaml2tree.awk), run on the host
//! with busybox awk, the same awk the guest has.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use kubevirt_rs_guest::repo_root;

/// Parses `doc` and returns the tree as "path" -> "value" (directories as "path/").
fn parse(doc: &str) -> Result<BTreeMap<String, String>> {
    let work = tempfile::tempdir()?;
    let input = work.path().join("doc.yaml");
    std::fs::write(&input, doc)?;
    let out = work.path().join("tree");
    let awk = repo_root().join("guest/rootfs/usr/lib/guest-init/yaml2tree.awk");
    let status = Command::new("busybox")
        .arg("awk")
        .arg("-v")
        .arg(format!("out={}", out.display()))
        .arg("-f")
        .arg(&awk)
        .arg(&input)
        .status()?;
    if !status.success() {
        bail!("yaml2tree failed: {status}");
    }
    let mut tree = BTreeMap::new();
    walk(&out, &out, &mut tree)?;
    Ok(tree)
}

fn walk(root: &Path, dir: &Path, tree: &mut BTreeMap<String, String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = path.strip_prefix(root)?.display().to_string();
        if path.is_dir() {
            tree.insert(format!("{rel}/"), String::new());
            walk(root, &path, tree)?;
        } else {
            tree.insert(rel, std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

fn leaves(tree: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    tree.iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn cloud_config_subset() -> Result<()> {
    let tree = parse(
        r#"#cloud-config
# a comment
hostname: myhost  # trailing comment
password: "s3cr#et"
chpasswd: { expire: False }
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3Nza key1@host
  - "ssh-rsa AAAAB3 key2"
users:
  - default
  - name: alice
    ssh_authorized_keys: [ 'ssh-ed25519 AAA alice', "ssh-rsa BBB alice2" ]
    plain_text_passwd: 'it''s'
  -
    name: bob
runcmd:
- echo hello
- [ sh, -c, "echo a: b" ]
- |
  echo multi
  echo line
url: http://example.com:80/x
empty:
"quoted key": v
"#,
    )?;
    assert_eq!(
        leaves(&tree),
        [
            ("chpasswd/expire", "False"),
            ("empty", ""),
            ("hostname", "myhost"),
            ("password", "s3cr#et"),
            ("quoted_key", "v"),
            ("runcmd/0", "echo hello"),
            ("runcmd/1/0", "sh"),
            ("runcmd/1/1", "-c"),
            ("runcmd/1/2", "echo a: b"),
            ("runcmd/2", "echo multi\necho line\n"),
            ("ssh_authorized_keys/0", "ssh-ed25519 AAAAC3Nza key1@host"),
            ("ssh_authorized_keys/1", "ssh-rsa AAAAB3 key2"),
            ("url", "http://example.com:80/x"),
            ("users/0", "default"),
            ("users/1/name", "alice"),
            ("users/1/plain_text_passwd", "it's"),
            ("users/1/ssh_authorized_keys/0", "ssh-ed25519 AAA alice"),
            ("users/1/ssh_authorized_keys/1", "ssh-rsa BBB alice2"),
            ("users/2/name", "bob"),
        ]
    );
    Ok(())
}

#[test]
fn block_scalars_and_chomping() -> Result<()> {
    let tree = parse(
        "a: |\n  one\n    two\n\n  three\nb: |-\n  stripped\nc: >\n  folded\n  text\n\n  para\nd: |+\n  kept\n\ne: x\n",
    )?;
    assert_eq!(tree["a"], "one\n  two\n\nthree\n");
    assert_eq!(tree["b"], "stripped");
    assert_eq!(tree["c"], "folded text\npara\n");
    assert_eq!(tree["d"], "kept\n\n");
    assert_eq!(tree["e"], "x");
    Ok(())
}

#[test]
fn json_documents_and_escapes() -> Result<()> {
    let tree = parse(
        r#"{"uuid": "1234", "public_keys": {"k.1": "ssh-ed25519 A"},
            "list": [1, {"x": "y\"z\n"}], "n": null, "u": "\u00e9"}"#,
    )?;
    assert_eq!(tree["uuid"], "1234");
    assert_eq!(tree["public_keys/k.1"], "ssh-ed25519 A");
    assert_eq!(tree["list/0"], "1");
    assert_eq!(tree["list/1/x"], "y\"z\n");
    assert_eq!(tree["n"], "null");
    assert_eq!(tree["u"], "é");
    Ok(())
}

#[test]
fn network_config_v2_and_v1() -> Result<()> {
    let v2 = parse(
        "network:\n  version: 2\n  ethernets:\n    id0:\n      match:\n        macaddress: \"52:54:00:12:34:56\"\n      set-name: eth1\n      addresses:\n        - 10.10.10.12/24\n      nameservers:\n        addresses: [8.8.8.8, 1.1.1.1]\n",
    )?;
    assert_eq!(v2["network/version"], "2");
    assert_eq!(
        v2["network/ethernets/id0/match/macaddress"],
        "52:54:00:12:34:56"
    );
    assert_eq!(v2["network/ethernets/id0/set-name"], "eth1");
    assert_eq!(v2["network/ethernets/id0/addresses/0"], "10.10.10.12/24");
    assert_eq!(
        v2["network/ethernets/id0/nameservers/addresses/1"],
        "1.1.1.1"
    );
    let v1 = parse(
        "version: 1\nconfig:\n    - type: physical\n      name: eth1\n      subnets:\n          - type: static\n            address: 192.168.1.10/24\n    - type: nameserver\n      address: [10.0.0.1]\n",
    )?;
    assert_eq!(v1["config/0/subnets/0/address"], "192.168.1.10/24");
    assert_eq!(v1["config/1/type"], "nameserver");
    assert_eq!(v1["config/1/address/0"], "10.0.0.1");
    Ok(())
}
