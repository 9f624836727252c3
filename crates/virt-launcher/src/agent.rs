//! The guest agent's replies (pure): the `return` values of qemu-guest-agent commands, as
//! libvirt's `qemuAgentCommand` hands them back, turned into the launcher's gRPC messages.
//! Missing members become empty values: agents differ by version and guest OS, and a partial
//! answer is still worth reporting.

use launcher_proto::v1::{
    GuestAgentCommand, GuestFilesystem, GuestFilesystemDisk, GuestInfo, GuestInterface, GuestUser,
};
use serde_json::Value;

/// The guest-agent commands [`guest_info`] reads, in order.
pub const INFO_COMMANDS: [&str; 5] = [
    "guest-info",
    "guest-get-host-name",
    "guest-get-osinfo",
    "guest-get-timezone",
    "guest-network-get-interfaces",
];

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The replies of [`INFO_COMMANDS`] (same order; `Value::Null` for one that failed).
pub fn guest_info(replies: &[Value; 5]) -> GuestInfo {
    let [info, host, os, tz, ifaces] = replies;
    GuestInfo {
        agent_version: s(info, "version"),
        supported_commands: list(info.get("supported_commands").unwrap_or(&Value::Null))
            .iter()
            .map(|c| GuestAgentCommand {
                name: s(c, "name"),
                enabled: c.get("enabled").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect(),
        hostname: s(host, "host-name"),
        os_id: s(os, "id"),
        os_name: s(os, "name"),
        os_version: s(os, "version"),
        os_pretty_name: s(os, "pretty-name"),
        os_version_id: s(os, "version-id"),
        kernel_release: s(os, "kernel-release"),
        kernel_version: s(os, "kernel-version"),
        machine: s(os, "machine"),
        timezone: s(tz, "zone"),
        interfaces: list(ifaces)
            .iter()
            .map(|i| GuestInterface {
                name: s(i, "name"),
                mac: s(i, "hardware-address"),
                ips: list(i.get("ip-addresses").unwrap_or(&Value::Null))
                    .iter()
                    .map(|x| s(x, "ip-address"))
                    .collect(),
            })
            .collect(),
    }
}

/// `guest-get-users`: one entry per user, with the earliest login time.
pub fn users(reply: &Value) -> Vec<GuestUser> {
    list(reply)
        .iter()
        .map(|u| GuestUser {
            name: s(u, "user"),
            domain: s(u, "domain"),
            login_time: u.get("login-time").and_then(Value::as_f64).unwrap_or(0.0),
        })
        .collect()
}

/// `guest-get-fsinfo`: one entry per mounted file system, with the disks under it.
pub fn filesystems(reply: &Value) -> Vec<GuestFilesystem> {
    let bytes = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    list(reply)
        .iter()
        .map(|f| GuestFilesystem {
            disk_name: s(f, "name"),
            mount_point: s(f, "mountpoint"),
            r#type: s(f, "type"),
            used_bytes: bytes(f, "used-bytes"),
            total_bytes: bytes(f, "total-bytes"),
            disks: list(f.get("disk").unwrap_or(&Value::Null))
                .iter()
                .map(|d| GuestFilesystemDisk {
                    serial: s(d, "serial"),
                    bus_type: s(d, "bus-type"),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Replies as qemu-guest-agent 7.2 gives them in the test guest.
    #[test]
    fn agent_replies_become_messages() {
        let info = json!({"version": "7.2.22", "supported_commands": [
            {"enabled": true, "name": "guest-ping", "success-response": true},
            {"enabled": false, "name": "guest-exec", "success-response": true}]});
        let os = json!({"name": "kubevirt-rs test guest", "kernel-release": "6.1.0-cloud-amd64",
            "version": "x", "pretty-name": "kubevirt-rs test guest (abc)", "version-id": "abc",
            "kernel-version": "#1 SMP", "machine": "x86_64", "id": "kubevirt-rs-guest"});
        let ifaces = json!([{"name": "eth0", "hardware-address": "02:00:00:00:00:01",
            "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.2.2", "prefix": 24}]}]);
        let g = guest_info(&[
            info.clone(),
            json!({"host-name": "testvm"}),
            os,
            json!({"zone": "UTC", "offset": 0}),
            ifaces,
        ]);
        assert_eq!(g.agent_version, "7.2.22");
        assert_eq!(g.supported_commands.len(), 2);
        assert!(g.supported_commands[0].enabled && !g.supported_commands[1].enabled);
        assert_eq!(
            (g.hostname.as_str(), g.os_id.as_str(), g.machine.as_str()),
            ("testvm", "kubevirt-rs-guest", "x86_64")
        );
        assert_eq!(g.os_version_id, "abc");
        assert_eq!(g.interfaces[0].ips, ["10.0.2.2"]);
        // A failed command (Null) leaves its fields empty.
        let empty = guest_info(&[info, Value::Null, Value::Null, Value::Null, Value::Null]);
        assert!(empty.hostname.is_empty() && empty.interfaces.is_empty());

        let u = users(&json!([{"user": "root", "login-time": 1700000000.25}]));
        assert_eq!(u[0].name, "root");
        assert!((u[0].login_time - 1700000000.25).abs() < 1e-6);
        let f = filesystems(&json!([{"name": "vda1", "mountpoint": "/run/guest/disk",
            "type": "ext4", "used-bytes": 1024, "total-bytes": 4096,
            "disk": [{"serial": "abc", "bus-type": "virtio", "bus": 0, "unit": 0, "target": 0,
                      "dev": "/dev/vda1"}]}]));
        assert_eq!(
            (
                f[0].disk_name.as_str(),
                f[0].mount_point.as_str(),
                f[0].r#type.as_str()
            ),
            ("vda1", "/run/guest/disk", "ext4")
        );
        assert_eq!((f[0].used_bytes, f[0].total_bytes), (1024, 4096));
        assert_eq!(f[0].disks[0].bus_type, "virtio");
        assert!(users(&Value::Null).is_empty() && filesystems(&json!({})).is_empty());
    }
}
