//! Access credentials propagated through the guest agent (pure): which Secrets the VMI's
//! `qemuGuestAgent` credentials name, and the agent commands that put their content into the
//! guest. The launcher reads the Secrets (mounted at `<private>/secret/<secretName>-access-cred`)
//! and runs the commands while the domain runs, again whenever a Secret's content changes, so
//! a rotated key or password reaches a running guest.
//!
//! - `sshPublicKey`: every line of every file of the Secret is a key; each listed user's
//!   `authorized_keys` is set to exactly the keys of the credentials naming that user
//!   (`guest-ssh-add-authorized-keys` with `reset`), so a key removed from the Secret goes too.
//! - `userPassword`: each file of the Secret is one user (the file name) and their password (the
//!   content), set with `guest-set-user-password`.

use std::collections::BTreeMap;

use base64::Engine as _;
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::{Value, json};

use crate::cloudinit;

/// One credential the guest agent propagates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentCredential {
    SshKeys {
        /// The index in `spec.accessCredentials`, for messages.
        index: usize,
        secret: String,
        users: Vec<String>,
    },
    Passwords {
        index: usize,
        secret: String,
    },
}

impl AgentCredential {
    pub fn secret(&self) -> &str {
        match self {
            AgentCredential::SshKeys { secret, .. } | AgentCredential::Passwords { secret, .. } => {
                secret
            }
        }
    }

    /// The field a problem with this credential is reported against.
    pub fn field(&self) -> String {
        match self {
            AgentCredential::SshKeys { index, .. } => {
                format!("spec.accessCredentials[{index}].sshPublicKey")
            }
            AgentCredential::Passwords { index, .. } => {
                format!("spec.accessCredentials[{index}].userPassword")
            }
        }
    }
}

/// The directory name (under `<private>/secret/`) of a credential's mounted Secret.
pub fn secret_dir_name(secret: &str) -> String {
    format!("{secret}-access-cred")
}

/// The credentials of `vmi` that propagate through the guest agent.
pub fn agent_credentials(vmi: &VirtualMachineInstance) -> Vec<AgentCredential> {
    let mut out = Vec::new();
    for (index, c) in vmi.spec.access_credentials.iter().enumerate() {
        if let Some(k) = &c.ssh_public_key
            && let (Some(ga), Some(s)) = (&k.propagation_method.qemu_guest_agent, &k.source.secret)
        {
            out.push(AgentCredential::SshKeys {
                index,
                secret: s.secret_name.clone(),
                users: ga.users.clone(),
            });
        }
        if let Some(p) = &c.user_password
            && p.propagation_method.qemu_guest_agent.is_some()
            && let Some(s) = &p.source.secret
        {
            out.push(AgentCredential::Passwords {
                index,
                secret: s.secret_name.clone(),
            });
        }
    }
    out
}

/// The agent commands for `creds`, given each Secret's files (name, content) by Secret name.
/// A Secret missing from `files` is an error naming its credential.
pub fn agent_commands(
    creds: &[AgentCredential],
    files: &BTreeMap<String, Vec<(String, Vec<u8>)>>,
) -> Result<Vec<Value>, String> {
    let of = |c: &AgentCredential| {
        files
            .get(c.secret())
            .ok_or_else(|| format!("{}: secret {:?} is not mounted", c.field(), c.secret()))
    };
    // Keys per user, over every credential naming the user, in order and without repeats.
    let mut keys: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut passwords = Vec::new();
    for c in creds {
        match c {
            AgentCredential::SshKeys { users, .. } => {
                let found = cloudinit::parse_public_keys(of(c)?.iter().map(|(_, d)| d.as_slice()));
                for u in users {
                    let list = keys.entry(u.as_str()).or_default();
                    for k in &found {
                        if !list.contains(k) {
                            list.push(k.clone());
                        }
                    }
                }
            }
            AgentCredential::Passwords { .. } => {
                for (user, data) in of(c)? {
                    // Trailing newlines come from `kubectl create secret --from-file`.
                    let password = String::from_utf8_lossy(data);
                    let password = password.trim_end_matches(['\n', '\r']);
                    passwords.push(json!({"execute": "guest-set-user-password", "arguments": {
                        "username": user,
                        "password": base64::engine::general_purpose::STANDARD.encode(password),
                        "crypted": false,
                    }}));
                }
            }
        }
    }
    let mut out: Vec<Value> = keys
        .into_iter()
        .map(|(user, keys)| {
            json!({"execute": "guest-ssh-add-authorized-keys", "arguments": {
                "username": user, "keys": keys, "reset": true,
            }})
        })
        .collect();
    out.extend(passwords);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmi(creds: Value) -> VirtualMachineInstance {
        serde_json::from_value(json!({
            "metadata": {"name": "v", "namespace": "n"},
            "spec": {"domain": {"devices": {}}, "accessCredentials": creds},
        }))
        .expect("vmi")
    }

    #[test]
    fn only_guest_agent_credentials_become_commands() {
        let v = vmi(json!([
            {"sshPublicKey": {"source": {"secret": {"secretName": "keys"}},
                "propagationMethod": {"qemuGuestAgent": {"users": ["root", "ops"]}}}},
            {"sshPublicKey": {"source": {"secret": {"secretName": "more"}},
                "propagationMethod": {"qemuGuestAgent": {"users": ["root"]}}}},
            {"sshPublicKey": {"source": {"secret": {"secretName": "boot"}},
                "propagationMethod": {"noCloud": {}}}},
            {"userPassword": {"source": {"secret": {"secretName": "pws"}},
                "propagationMethod": {"qemuGuestAgent": {}}}},
        ]));
        let creds = agent_credentials(&v);
        assert_eq!(creds.len(), 3, "{creds:?}");
        assert_eq!(creds[2].field(), "spec.accessCredentials[3].userPassword");
        let mut files = BTreeMap::new();
        files.insert(
            "keys".to_string(),
            vec![("a".to_string(), b"ssh-ed25519 AAAA one\n".to_vec())],
        );
        files.insert(
            "more".to_string(),
            vec![(
                "b".to_string(),
                b"ssh-ed25519 BBBB two\nssh-ed25519 AAAA one\n".to_vec(),
            )],
        );
        files.insert(
            "pws".to_string(),
            vec![("root".to_string(), b"s3cret\n".to_vec())],
        );
        let cmds = agent_commands(&creds, &files).expect("commands");
        assert_eq!(
            cmds,
            vec![
                json!({"execute": "guest-ssh-add-authorized-keys", "arguments": {
                    "username": "ops", "keys": ["ssh-ed25519 AAAA one"], "reset": true}}),
                json!({"execute": "guest-ssh-add-authorized-keys", "arguments": {
                    "username": "root", "keys": ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"],
                    "reset": true}}),
                json!({"execute": "guest-set-user-password", "arguments": {
                    "username": "root", "password": "czNjcmV0", "crypted": false}}),
            ]
        );
        files.remove("more");
        let e = agent_commands(&creds, &files).expect_err("missing secret");
        assert!(
            e.starts_with("spec.accessCredentials[1].sshPublicKey:"),
            "{e}"
        );
        assert!(agent_credentials(&vmi(json!([]))).is_empty());
    }
}
