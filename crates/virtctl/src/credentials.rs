//! `virtctl credentials add-ssh-key | remove-ssh-key | set-password` (pure parts): which of a
//! VM's access-credential Secrets a change goes to, and the Secret and patches it makes. The
//! guest agent then carries the change into the running guest (virt-launcher's `access`).
//!
//! A Secret created here is owned by the VM (a controller owner reference), so it goes with the
//! VM; changing a Secret the VM does not own needs `--force`, as upstream.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

use crate::Error;

fn credentials(vm: &Value) -> &[Value] {
    vm["spec"]["template"]["spec"]["accessCredentials"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn secret_name(source: &Value) -> Option<String> {
    source["secret"]["secretName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The Secrets of the VM's ssh-key credentials that the guest agent propagates to `user`.
pub fn ssh_secrets_for_user(vm: &Value, user: &str) -> Vec<String> {
    credentials(vm)
        .iter()
        .filter_map(|c| {
            let k = &c["sshPublicKey"];
            let users = k["propagationMethod"]["qemuGuestAgent"]["users"].as_array()?;
            users
                .iter()
                .any(|u| u.as_str() == Some(user))
                .then(|| secret_name(&k["source"]))?
        })
        .collect()
}

/// The Secrets of the VM's password credentials that the guest agent propagates.
pub fn password_secrets(vm: &Value) -> Vec<String> {
    credentials(vm)
        .iter()
        .filter_map(|c| {
            let p = &c["userPassword"];
            p["propagationMethod"]["qemuGuestAgent"]
                .is_object()
                .then(|| secret_name(&p["source"]))?
        })
        .collect()
}

/// The Secret to change: `--secret` when given (it must be one of `secrets`), else the only one.
pub fn pick_secret(given: Option<&str>, secrets: &[String]) -> Result<String, Error> {
    match given.filter(|g| !g.is_empty()) {
        Some(g) if secrets.iter().any(|s| s == g) => Ok(g.to_string()),
        Some(g) => Err(Error::Other(format!("secret {g} was not assigned"))),
        None => match secrets {
            [only] => Ok(only.clone()),
            [] => Err(Error::Other("no secrets assigned".into())),
            _ => Err(Error::Other(
                "multiple secrets specified, use option --secret to specify which secret to modify"
                    .into(),
            )),
        },
    }
}

/// Does `secret` have an owner reference to this VM (kind, name and uid)?
pub fn owned_by_vm(secret: &Secret, vm: &Value) -> bool {
    let (name, uid) = (
        vm["metadata"]["name"].as_str(),
        vm["metadata"]["uid"].as_str(),
    );
    secret.metadata.owner_references.iter().flatten().any(|o| {
        o.kind == "VirtualMachine" && Some(o.name.as_str()) == name && Some(o.uid.as_str()) == uid
    })
}

/// The refusal for a Secret the VM does not own, without `--force`.
pub fn not_owned(secret: &str, vm: &Value) -> Error {
    Error::Other(format!(
        "secret {secret} does not have an owner reference pointing to VM {}",
        vm["metadata"]["name"].as_str().unwrap_or_default()
    ))
}

/// An SSH public key as given (a file's content or `--value`): its first non-empty line.
pub fn normalize_key(raw: &str) -> Result<String, Error> {
    raw.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::Usage("the SSH public key is empty".into()))
}

fn line_has_key(line: &str, key: &str) -> bool {
    line.trim().starts_with(key)
}

/// Is `key` on a line of any of the Secret's values?
pub fn has_key(secret: &Secret, key: &str) -> bool {
    secret.data.iter().flatten().any(|(_, v)| {
        String::from_utf8_lossy(&v.0)
            .lines()
            .any(|l| line_has_key(l, key))
    })
}

/// The Secret's data without the lines holding `key` (and without blank lines); a value left
/// empty is dropped.
pub fn data_without_key(secret: &Secret, key: &str) -> BTreeMap<String, ByteString> {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(name, v)| {
            let kept: Vec<&str> = std::str::from_utf8(&v.0)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty() && !line_has_key(l, key))
                .collect();
            (!kept.is_empty()).then(|| (name.clone(), ByteString(kept.join("\n").into_bytes())))
        })
        .collect()
}

/// A new Secret holding `key`, owned by the VM, named by the API server from the VM's name.
pub fn new_key_secret(vm: &Value, key: &str, suffix: &str) -> Secret {
    let meta = &vm["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-ssh-key-")),
            namespace: meta["namespace"].as_str().map(str::to_string),
            owner_references: Some(vec![OwnerReference {
                api_version: "kubevirt.io/v1".into(),
                kind: "VirtualMachine".into(),
                name: name.to_string(),
                uid: meta["uid"].as_str().unwrap_or_default().to_string(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            format!("ssh-key-{suffix}"),
            ByteString(key.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// The JSON patch that gives the VM an ssh-key credential for `user` from `secret`, through
/// the guest agent.
pub fn add_credential_patch(vm: &Value, secret: &str, user: &str) -> Value {
    let cred = json!({"sshPublicKey": {
        "source": {"secret": {"secretName": secret}},
        "propagationMethod": {"qemuGuestAgent": {"users": [user]}},
    }});
    let path = "/spec/template/spec/accessCredentials";
    if vm["spec"]["template"]["spec"]["accessCredentials"].is_array() {
        json!([{"op": "add", "path": format!("{path}/-"), "value": cred}])
    } else {
        json!([{"op": "add", "path": path, "value": [cred]}])
    }
}

/// The JSON patch that sets data item `item` of `secret` to `value` (making `data` if the
/// Secret has none).
pub fn set_item_patch(secret: &Secret, item: &str, value: &str) -> Value {
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    // A JSON pointer escapes `~` and `/`; Secret keys may hold neither `/` but may hold `~`.
    let pointer = item.replace('~', "~0").replace('/', "~1");
    if secret.data.is_some() {
        json!([{"op": "add", "path": format!("/data/{pointer}"), "value": encoded}])
    } else {
        json!([{"op": "add", "path": "/data", "value": {item: encoded}}])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(creds: Value) -> Value {
        json!({"metadata": {"name": "vm1", "namespace": "ns", "uid": "u-1"},
               "spec": {"template": {"spec": {"accessCredentials": creds}}}})
    }

    fn secret(data: &[(&str, &str)], owner_uid: Option<&str>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                owner_references: owner_uid.map(|uid| {
                    vec![OwnerReference {
                        kind: "VirtualMachine".into(),
                        name: "vm1".into(),
                        uid: uid.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn secrets_by_user_and_kind() {
        let v = vm(json!([
            {"sshPublicKey": {"source": {"secret": {"secretName": "a"}},
                "propagationMethod": {"qemuGuestAgent": {"users": ["root", "ops"]}}}},
            {"sshPublicKey": {"source": {"secret": {"secretName": "b"}},
                "propagationMethod": {"noCloud": {}}}},
            {"userPassword": {"source": {"secret": {"secretName": "p"}},
                "propagationMethod": {"qemuGuestAgent": {}}}},
        ]));
        assert_eq!(ssh_secrets_for_user(&v, "ops"), ["a"]);
        assert!(ssh_secrets_for_user(&v, "nobody").is_empty());
        assert_eq!(password_secrets(&v), ["p"]);
        let two = ["a".to_string(), "c".to_string()];
        assert_eq!(pick_secret(None, &two[..1]).expect("one"), "a");
        assert_eq!(pick_secret(Some("c"), &two).expect("given"), "c");
        assert!(
            pick_secret(None, &two)
                .expect_err("two")
                .to_string()
                .contains("use option --secret")
        );
        assert_eq!(
            pick_secret(Some("x"), &two).expect_err("x").to_string(),
            "secret x was not assigned"
        );
    }

    #[test]
    fn keys_in_secrets_and_patches() {
        let v = vm(json!([]));
        let s = secret(
            &[
                ("k1", "ssh-ed25519 AAAA one\n\nssh-ed25519 BBBB two\n"),
                ("k2", "ssh-ed25519 AAAA one"),
            ],
            Some("u-1"),
        );
        assert!(owned_by_vm(&s, &v));
        assert!(!owned_by_vm(&secret(&[], Some("other")), &v));
        assert!(has_key(&s, "ssh-ed25519 BBBB"));
        assert!(!has_key(&s, "ssh-ed25519 CCCC"));
        let left = data_without_key(&s, "ssh-ed25519 AAAA one");
        assert_eq!(left.len(), 1, "k2 held only the removed key: {left:?}");
        assert_eq!(left["k1"].0, b"ssh-ed25519 BBBB two");
        assert_eq!(
            normalize_key("\n  ssh-ed25519 AAAA me@host \n").expect("key"),
            "ssh-ed25519 AAAA me@host"
        );
        assert!(normalize_key(" \n").is_err());

        let new = new_key_secret(&v, "ssh-ed25519 AAAA", "x1y2z3");
        assert_eq!(new.metadata.generate_name.as_deref(), Some("vm1-ssh-key-"));
        assert!(owned_by_vm(&new, &v));
        assert_eq!(
            new.data.as_ref().expect("data")["ssh-key-x1y2z3"].0,
            b"ssh-ed25519 AAAA"
        );

        // The credential goes at the end of an existing list, or makes the list.
        assert_eq!(
            add_credential_patch(&v, "s", "root")[0]["path"],
            "/spec/template/spec/accessCredentials/-"
        );
        let bare = json!({"metadata": {"name": "vm1"}, "spec": {"template": {"spec": {}}}});
        let p = add_credential_patch(&bare, "s", "root");
        assert_eq!(p[0]["path"], "/spec/template/spec/accessCredentials");
        assert_eq!(
            p[0]["value"][0]["sshPublicKey"]["propagationMethod"]["qemuGuestAgent"]["users"],
            json!(["root"])
        );
        assert_eq!(
            set_item_patch(&s, "root", "pw"),
            json!([{"op": "add", "path": "/data/root", "value": "cHc="}])
        );
        let empty = Secret::default();
        assert_eq!(
            set_item_patch(&empty, "root", "pw"),
            json!([{"op": "add", "path": "/data", "value": {"root": "cHc="}}])
        );
    }
}
