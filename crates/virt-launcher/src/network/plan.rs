//! What the pod network setup does, as pure functions of the pod interface and the VMI: the
//! `ip -batch` scripts and the nftables ruleset. [`super`] runs them.

use std::fmt::Write;
use std::net::Ipv4Addr;

use kubevirt_api::v1::{Port, port_protocol};

/// The pod interface as found in the pod's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInterface {
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    /// The pod's IPv4 address and prefix length.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The default route's gateway.
    pub gateway: Option<Ipv4Addr>,
}

/// The tap device QEMU uses for the pod network interface.
pub const TAP: &str = "tap0";
/// The nftables table the launcher owns in the pod's namespace.
pub const NFT_TABLE: &str = "kubevirt_rs";
/// A link-local address on the bridge for the bridge binding's DHCP server to send from.
pub const BRIDGE_BINDING_SERVER: Ipv4Addr = Ipv4Addr::new(169, 254, 75, 10);

/// `k6t-<pod interface>`, as upstream names the in-pod bridge.
pub fn bridge_name(pod_interface: &str) -> String {
    format!("k6t-{pod_interface}")
}

/// The masquerade subnet: the bridge (gateway) gets the first address, the guest the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmSubnet {
    pub gateway: Ipv4Addr,
    pub guest: Ipv4Addr,
    pub prefix: u8,
}

impl VmSubnet {
    /// Parses `vmNetworkCIDR` (default `10.0.2.0/24`). The subnet must hold a gateway and a
    /// guest: /30 or larger.
    pub fn parse(cidr: Option<&str>) -> Result<VmSubnet, String> {
        let cidr = cidr.filter(|c| !c.is_empty()).unwrap_or("10.0.2.0/24");
        let (addr, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{cidr:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 30)
            .ok_or_else(|| format!("{cidr:?}: the prefix must be 30 or less"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let net = u32::from(addr) & mask;
        Ok(VmSubnet {
            gateway: Ipv4Addr::from(net + 1),
            guest: Ipv4Addr::from(net + 2),
            prefix,
        })
    }
}

/// Creates the tap (one queue, or `queues` with multiqueue) and puts it on the bridge.
fn tap_lines(out: &mut String, bridge: &str, mtu: u32, queues: u32) {
    let mq = if queues > 1 { " multi_queue" } else { "" };
    let _ = writeln!(out, "tuntap add dev {TAP} mode tap{mq}");
    let _ = writeln!(out, "link set dev {TAP} mtu {mtu} master {bridge} up");
}

/// Masquerade: a bridge with the gateway address and the tap on it; the pod interface keeps its
/// address and routes.
pub fn masquerade_script(pod: &PodInterface, subnet: &VmSubnet, queues: u32) -> String {
    let bridge = bridge_name(&pod.name);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "link add name {bridge} type bridge forward_delay 0 stp_state 0"
    );
    let _ = writeln!(s, "link set dev {bridge} mtu {}", pod.mtu);
    let _ = writeln!(
        s,
        "addr add {}/{} dev {bridge}",
        subnet.gateway, subnet.prefix
    );
    tap_lines(&mut s, &bridge, pod.mtu, queues);
    let _ = writeln!(s, "link set dev {bridge} up");
    s
}

/// The NAT rules: the guest's traffic leaves masqueraded as the pod; traffic to the pod's
/// address on the pod interface goes to the guest, all of it or only the listed ports.
pub fn masquerade_nft(
    pod: &PodInterface,
    subnet: &VmSubnet,
    ports: &[Port],
) -> Result<String, String> {
    let (pod_ip, _) = pod
        .ipv4
        .ok_or_else(|| format!("{} has no IPv4 address", pod.name))?;
    let iface = &pod.name;
    let guest = subnet.guest;
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        if !(1..=65535).contains(&p.port) {
            return Err(format!("ports[{i}].port: {} is not a port number", p.port));
        }
        match p.protocol.as_deref().unwrap_or(port_protocol::TCP) {
            port_protocol::TCP => tcp.push(p.port.to_string()),
            port_protocol::UDP => udp.push(p.port.to_string()),
            other => return Err(format!("ports[{i}].protocol: {other:?} is not TCP or UDP")),
        }
    }
    // The same matches twice: arriving on the pod interface (prerouting), and made inside the
    // pod's network namespace to the pod's address (output: virt-handler's port-forward
    // connects from there, as a process in the pod would).
    let mut inbound = String::new();
    let mut local = String::new();
    let mut both = |matches: String| {
        let _ = writeln!(
            inbound,
            "    iifname \"{iface}\" ip daddr {pod_ip} {matches}dnat to {guest}"
        );
        let _ = writeln!(local, "    ip daddr {pod_ip} {matches}dnat to {guest}");
    };
    if ports.is_empty() {
        both(String::new());
    }
    for (proto, list) in [("tcp", &tcp), ("udp", &udp)] {
        if !list.is_empty() {
            both(format!("{proto} dport {{ {} }} ", list.join(", ")));
        }
    }
    Ok(format!(
        "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{inbound}  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n{local}  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {guest} oifname \"{iface}\" masquerade\n  }}\n}}\n"
    ))
}

/// Bridge binding: the pod interface loses its address (handed to the guest by DHCP) and its
/// MAC (the guest takes it over, so the pod network's neighbours see no change), and joins the
/// bridge with the tap.
pub fn bridge_script(pod: &PodInterface, new_pod_mac: &str, queues: u32) -> String {
    let bridge = bridge_name(&pod.name);
    let iface = &pod.name;
    let mut s = String::new();
    let _ = writeln!(s, "addr flush dev {iface}");
    let _ = writeln!(s, "link set dev {iface} down");
    let _ = writeln!(s, "link set dev {iface} address {new_pod_mac}");
    let _ = writeln!(
        s,
        "link add name {bridge} type bridge forward_delay 0 stp_state 0"
    );
    let _ = writeln!(s, "link set dev {bridge} mtu {}", pod.mtu);
    tap_lines(&mut s, &bridge, pod.mtu, queues);
    let _ = writeln!(s, "link set dev {iface} master {bridge} up");
    let _ = writeln!(s, "addr add {BRIDGE_BINDING_SERVER}/32 dev {bridge}");
    let _ = writeln!(s, "link set dev {bridge} up");
    s
}

/// Undoes [`bridge_script`]: the pod interface gets its MAC, address and default route back.
pub fn bridge_restore_script(pod: &PodInterface) -> String {
    let bridge = bridge_name(&pod.name);
    let iface = &pod.name;
    let mut s = String::new();
    let _ = writeln!(s, "link del dev {TAP}");
    let _ = writeln!(s, "link del dev {bridge}");
    let _ = writeln!(s, "link set dev {iface} down");
    let _ = writeln!(s, "link set dev {iface} address {}", pod.mac);
    let _ = writeln!(s, "link set dev {iface} up");
    if let Some((ip, prefix)) = pod.ipv4 {
        let _ = writeln!(s, "addr add {ip}/{prefix} dev {iface}");
    }
    if let Some(gw) = pod.gateway {
        let _ = writeln!(s, "route add default via {gw} dev {iface}");
    }
    s
}

/// Undoes [`masquerade_script`].
pub fn masquerade_restore_script(pod: &PodInterface) -> String {
    format!(
        "link del dev {TAP}\nlink del dev {}\n",
        bridge_name(&pod.name)
    )
}

/// A stable, locally administered unicast MAC for an interface of a VMI: the same after a
/// launcher restart, different across VMIs (FNV-1a over the uid and the interface name).
pub fn stable_mac(uid: &str, iface: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes().chain([0u8]).chain(iface.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4]
    )
}

/// A MAC for the pod interface after the guest took over its original one.
pub fn derived_pod_mac(mac: &str) -> String {
    stable_mac(mac, "pod")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodInterface {
        PodInterface {
            name: "eth0".into(),
            mac: "aa:bb:cc:00:00:01".into(),
            mtu: 1450,
            ipv4: Some((Ipv4Addr::new(10, 244, 1, 5), 24)),
            gateway: Some(Ipv4Addr::new(10, 244, 1, 1)),
        }
    }

    #[test]
    fn masquerade_script_builds_bridge_and_tap_with_the_pod_mtu() {
        let s = masquerade_script(&pod(), &VmSubnet::parse(None).expect("default"), 1);
        assert_eq!(
            s,
            "link add name k6t-eth0 type bridge forward_delay 0 stp_state 0\n\
             link set dev k6t-eth0 mtu 1450\n\
             addr add 10.0.2.1/24 dev k6t-eth0\n\
             tuntap add dev tap0 mode tap\n\
             link set dev tap0 mtu 1450 master k6t-eth0 up\n\
             link set dev k6t-eth0 up\n"
        );
    }

    #[test]
    fn nat_forwards_everything_or_only_the_listed_ports() {
        let subnet = VmSubnet::parse(None).expect("default");
        let all = masquerade_nft(&pod(), &subnet, &[]).expect("rules");
        assert!(
            all.contains("iifname \"eth0\" ip daddr 10.244.1.5 dnat to 10.0.2.2"),
            "{all}"
        );
        assert!(
            all.contains("ip saddr 10.0.2.2 oifname \"eth0\" masquerade"),
            "{all}"
        );
        // Connections made inside the pod to its own address reach the guest too.
        let output = all.split("chain output").nth(1).expect("an output chain");
        assert!(
            output.contains("    ip daddr 10.244.1.5 dnat to 10.0.2.2"),
            "{all}"
        );
        let ports = [
            Port {
                port: 80,
                ..Default::default()
            },
            Port {
                port: 22,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            Port {
                port: 53,
                protocol: Some("UDP".into()),
                ..Default::default()
            },
        ];
        let some = masquerade_nft(&pod(), &subnet, &ports).expect("rules");
        assert!(
            some.contains("tcp dport { 80, 22 } dnat to 10.0.2.2"),
            "{some}"
        );
        assert!(some.contains("udp dport { 53 } dnat to 10.0.2.2"), "{some}");
        assert!(!some.contains("10.244.1.5 dnat"), "{some}");
        let bad = [Port {
            port: 70000,
            ..Default::default()
        }];
        assert!(masquerade_nft(&pod(), &subnet, &bad).is_err());
    }

    #[test]
    fn vm_subnet_takes_the_first_two_addresses() {
        let s = VmSubnet::parse(Some("10.11.12.0/28")).expect("parses");
        assert_eq!(
            (s.gateway, s.guest, s.prefix),
            (
                Ipv4Addr::new(10, 11, 12, 1),
                Ipv4Addr::new(10, 11, 12, 2),
                28
            )
        );
        assert!(VmSubnet::parse(Some("10.0.0.0/31")).is_err());
        assert!(VmSubnet::parse(Some("fd10::/64")).is_err());
    }

    #[test]
    fn bridge_binding_moves_address_and_mac_to_the_guest_and_restores_them() {
        let s = bridge_script(&pod(), "02:00:00:00:00:09", 1);
        assert!(s.starts_with("addr flush dev eth0\n"), "{s}");
        assert!(
            s.contains("link set dev eth0 address 02:00:00:00:00:09"),
            "{s}"
        );
        assert!(s.contains("link set dev eth0 master k6t-eth0 up"), "{s}");
        let r = bridge_restore_script(&pod());
        assert!(r.contains("addr add 10.244.1.5/24 dev eth0"), "{r}");
        assert!(
            r.contains("route add default via 10.244.1.1 dev eth0"),
            "{r}"
        );
    }

    #[test]
    fn stable_macs_are_local_unicast_and_stable() {
        let a = stable_mac("uid-1", "default");
        assert_eq!(a, stable_mac("uid-1", "default"));
        assert_ne!(a, stable_mac("uid-2", "default"));
        assert!(a.starts_with("02:"), "{a}");
        assert_eq!(a.len(), 17);
    }
}
