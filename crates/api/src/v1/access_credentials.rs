//! Access credentials of an instance (`spec.accessCredentials`): SSH keys and passwords taken
//! from Secrets and put into the guest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One credential put into the guest; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessCredential {
    /// SSH public keys authorized for guest users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<SSHPublicKeyAccessCredential>,
    /// Passwords of guest users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_password: Option<UserPasswordAccessCredential>,
}

/// SSH public keys: where they come from and how they reach the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SSHPublicKeyAccessCredential {
    /// How the keys are put into the guest.
    pub propagation_method: SSHPublicKeyAccessCredentialPropagationMethod,
    /// Where the keys come from.
    pub source: SSHPublicKeyAccessCredentialSource,
}

/// Where SSH public keys come from; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SSHPublicKeyAccessCredentialSource {
    /// A Secret whose values are public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<AccessCredentialSecretSource>,
}

/// How SSH public keys reach the guest; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SSHPublicKeyAccessCredentialPropagationMethod {
    /// Through the cloud-init config drive's metadata, once at boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_drive: Option<ConfigDriveSSHPublicKeyAccessCredentialPropagation>,
    /// Through the cloud-init NoCloud metadata, once at boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cloud: Option<NoCloudSSHPublicKeyAccessCredentialPropagation>,
    /// Through the guest agent, kept in sync while the instance runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_guest_agent: Option<QemuGuestAgentSSHPublicKeyAccessCredentialPropagation>,
}

/// Marker: put SSH keys into the config drive's metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigDriveSSHPublicKeyAccessCredentialPropagation {}

/// Marker: put SSH keys into the NoCloud metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NoCloudSSHPublicKeyAccessCredentialPropagation {}

/// Put SSH keys into the `authorized_keys` of guest users through the guest agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QemuGuestAgentSSHPublicKeyAccessCredentialPropagation {
    /// The guest users whose `authorized_keys` receive the keys.
    pub users: Vec<String>,
}

/// User passwords: where they come from and how they reach the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPasswordAccessCredential {
    /// How the passwords are put into the guest.
    pub propagation_method: UserPasswordAccessCredentialPropagationMethod,
    /// Where the passwords come from.
    pub source: UserPasswordAccessCredentialSource,
}

/// Where user passwords come from; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPasswordAccessCredentialSource {
    /// A Secret mapping user names to passwords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<AccessCredentialSecretSource>,
}

/// How user passwords reach the guest; exactly one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPasswordAccessCredentialPropagationMethod {
    /// Through the guest agent, kept in sync while the instance runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_guest_agent: Option<QemuGuestAgentUserPasswordAccessCredentialPropagation>,
}

/// Marker: set user passwords through the guest agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QemuGuestAgentUserPasswordAccessCredentialPropagation {}

/// A Secret in the instance's namespace holding credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessCredentialSecretSource {
    /// The Secret's name.
    pub secret_name: String,
}

impl AccessCredential {
    /// The name of the Secret this credential comes from, if any.
    pub fn secret_name(&self) -> Option<&str> {
        let secret = match (&self.ssh_public_key, &self.user_password) {
            (Some(k), _) => k.source.secret.as_ref(),
            (None, Some(p)) => p.source.secret.as_ref(),
            (None, None) => None,
        };
        secret.map(|s| s.secret_name.as_str())
    }
}
