//! What the guest agent reports, as the `guestosinfo`, `userlist` and `filesystemlist`
//! subresources of an instance return it (not stored objects: response bodies).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::VirtualMachineInstanceGuestOSInfo;

/// The body of `virtualmachineinstances/{name}/guestosinfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceGuestAgentInfo {
    /// The guest agent's version.
    #[serde(
        default,
        rename = "guestAgentVersion",
        skip_serializing_if = "String::is_empty"
    )]
    pub ga_version: String,
    /// The commands the agent offers, and whether each is enabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_commands: Vec<GuestAgentCommandInfo>,
    /// The guest's host name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// The guest operating system.
    #[serde(default)]
    pub os: VirtualMachineInstanceGuestOSInfo,
    /// The guest's time zone, e.g. `UTC, 0`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timezone: String,
    /// Users logged in to the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_list: Vec<VirtualMachineInstanceGuestOSUser>,
    /// The guest's file systems.
    #[serde(default)]
    pub fs_info: VirtualMachineInstanceFileSystemInfo,
    /// Whether the guest's file systems are frozen (`frozen`) or not (empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fs_freeze_status: String,
}

/// One guest agent command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GuestAgentCommandInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
}

/// A user logged in to the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceGuestOSUser {
    pub user_name: String,
    /// The user's domain (Windows guests).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Seconds since the epoch of the user's first login session.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub login_time: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The guest's file systems, inside [`VirtualMachineInstanceGuestAgentInfo`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualMachineInstanceFileSystemInfo {
    #[serde(default, rename = "disks")]
    pub filesystems: Vec<VirtualMachineInstanceFileSystem>,
}

/// One mounted file system of the guest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceFileSystem {
    /// The guest's device name, e.g. `vda1`.
    pub disk_name: String,
    pub mount_point: String,
    pub file_system_type: String,
    pub used_bytes: i64,
    pub total_bytes: i64,
    /// The disks under the file system.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk: Vec<VirtualMachineInstanceFileSystemDisk>,
}

/// A disk under a guest file system.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceFileSystemDisk {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    pub bus_type: String,
}

/// An empty list's metadata, as list bodies carry it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListMeta {}

/// The body of `virtualmachineinstances/{name}/userlist`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualMachineInstanceGuestOSUserList {
    #[serde(default)]
    pub metadata: ListMeta,
    pub items: Vec<VirtualMachineInstanceGuestOSUser>,
}

/// The body of `virtualmachineinstances/{name}/filesystemlist`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualMachineInstanceFileSystemList {
    #[serde(default)]
    pub metadata: ListMeta,
    pub items: Vec<VirtualMachineInstanceFileSystem>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_names() {
        let info = VirtualMachineInstanceGuestAgentInfo {
            ga_version: "7.2".into(),
            supported_commands: vec![GuestAgentCommandInfo {
                name: "guest-ping".into(),
                enabled: true,
            }],
            hostname: "h".into(),
            os: VirtualMachineInstanceGuestOSInfo {
                id: Some("debian".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&info).expect("json"),
            json!({"guestAgentVersion": "7.2", "hostname": "h", "os": {"id": "debian"},
                   "supportedCommands": [{"name": "guest-ping", "enabled": true}],
                   "fsInfo": {"disks": []}})
        );
        let fs = VirtualMachineInstanceFileSystemList {
            items: vec![VirtualMachineInstanceFileSystem {
                disk_name: "vda1".into(),
                mount_point: "/".into(),
                file_system_type: "ext4".into(),
                used_bytes: 1,
                total_bytes: 2,
                disk: vec![VirtualMachineInstanceFileSystemDisk {
                    serial: String::new(),
                    bus_type: "virtio".into(),
                }],
            }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&fs).expect("json"),
            json!({"metadata": {}, "items": [{"diskName": "vda1", "mountPoint": "/",
                "fileSystemType": "ext4", "usedBytes": 1, "totalBytes": 2,
                "disk": [{"busType": "virtio"}]}]})
        );
        let users = VirtualMachineInstanceGuestOSUserList {
            items: vec![VirtualMachineInstanceGuestOSUser {
                user_name: "root".into(),
                login_time: 1.5,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&users).expect("json"),
            json!({"metadata": {}, "items": [{"userName": "root", "loginTime": 1.5}]})
        );
    }
}
