//! The pod network, set up in the launcher's (the pod's) network namespace before the domain
//! starts, with upstream's layout:
//!
//! - **masquerade**: bridge `k6t-eth0` with the VM gateway address (10.0.2.1/24 unless
//!   `vmNetworkCIDR` says otherwise), `tap0` on it, IP forwarding, nftables NAT (the guest's
//!   traffic leaves as the pod; traffic to the pod IP goes to the guest: all of it, or the
//!   interface's `ports`), and a DHCP server handing the guest 10.0.2.2.
//! - **bridge**: the pod interface gives its address and MAC to the guest (by DHCP) and joins
//!   `k6t-eth0` with `tap0`; the DHCP server sends from a link-local address on the bridge.
//!
//! Commands go through `ip -batch -` and `nft -f -` (iproute2 and nftables are in the pod image;
//! one process each instead of a netlink library). Teardown undoes it all.

pub mod dhcp;
pub mod plan;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kubevirt_api::v1::{Interface, VirtualMachineInstance, interface_state};
use launcher_proto::v1::InterfaceStatus;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, warn};

use crate::converter::InterfaceTarget;
use crate::converter::interface_binding as binding;
use plan::{PodInterface, VmSubnet};

/// Where the pod network comes from.
#[derive(Clone, Debug)]
pub struct Options {
    /// The pod's interface (`eth0`).
    pub pod_interface: String,
    /// The pod's resolver configuration, for the DNS the guest gets.
    pub resolv_conf: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pod_interface: "eth0".into(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{field}: {message}")]
    Spec { field: String, message: String },
    #[error("pod interface {iface}: {message}")]
    Pod { iface: String, message: String },
    #[error("{tool} failed ({status}): {stderr}\n{script}")]
    Command {
        tool: &'static str,
        status: String,
        stderr: String,
        script: String,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Masquerade,
    Bridge,
}

/// What the setup made, kept until teardown.
#[derive(Debug, Default)]
pub struct Network {
    targets: BTreeMap<String, InterfaceTarget>,
    statuses: Vec<InterfaceStatus>,
    dhcp: Option<JoinHandle<()>>,
    undo: Option<(Kind, PodInterface)>,
}

impl Network {
    pub fn targets(&self) -> BTreeMap<String, InterfaceTarget> {
        self.targets.clone()
    }

    pub fn statuses(&self) -> Vec<InterfaceStatus> {
        self.statuses.clone()
    }

    /// Stops DHCP and removes what the setup added (best effort: the pod is going away).
    pub async fn teardown(mut self) {
        if let Some(h) = self.dhcp.take() {
            h.abort();
        }
        let Some((kind, pod)) = self.undo.take() else {
            return;
        };
        let result = tokio::task::spawn_blocking(move || match kind {
            Kind::Masquerade => {
                let _ = run(
                    "nft",
                    &["-f", "-"],
                    &format!("delete table ip {}\n", plan::NFT_TABLE),
                );
                run(
                    "ip",
                    &["-batch", "-"],
                    &plan::masquerade_restore_script(&pod),
                )
            }
            Kind::Bridge => run(
                "ip",
                &["-force", "-batch", "-"],
                &plan::bridge_restore_script(&pod),
            ),
        })
        .await;
        if let Ok(Err(e)) = result {
            warn!(error = %e, "network teardown incomplete");
        }
    }
}

/// The interfaces that need the pod network: everything but `state: absent`.
fn active_interfaces(vmi: &VirtualMachineInstance) -> Vec<(usize, &Interface)> {
    vmi.spec
        .domain
        .devices
        .interfaces
        .iter()
        .enumerate()
        .filter(|(_, i)| i.state.as_deref() != Some(interface_state::ABSENT))
        .collect()
}

pub async fn setup(
    vmi: &VirtualMachineInstance,
    uid: &str,
    opts: &Options,
) -> Result<Network, NetworkError> {
    let ifaces = active_interfaces(vmi);
    let Some(&(index, iface)) = ifaces.first() else {
        return Ok(Network::default());
    };
    let field = format!("spec.domain.devices.interfaces[{index}]");
    let spec_err = |field: String, message: String| NetworkError::Spec { field, message };
    if let Some(&(j, _)) = ifaces.get(1) {
        return Err(spec_err(
            format!("spec.domain.devices.interfaces[{j}]"),
            "only one interface (on the pod network) is supported".into(),
        ));
    }
    let kind = match binding(iface) {
        Ok("masquerade") => Kind::Masquerade,
        Ok(_) => Kind::Bridge,
        Err(what) => return Err(spec_err(field, format!("{what} is not supported"))),
    };
    let network = vmi
        .spec
        .network(&iface.name)
        .ok_or_else(|| spec_err(field.clone(), format!("no network named {:?}", iface.name)))?;
    let Some(pod_net) = network.network_source.pod.as_ref() else {
        return Err(spec_err(field, "only the pod network is supported".into()));
    };
    let vcpus = crate::converter::vcpus(&vmi.spec);
    let queues = if vmi.spec.domain.devices.network_interface_multiqueue == Some(true) {
        vcpus.max(1)
    } else {
        1
    };

    let pod_name = opts.pod_interface.clone();
    let pod = tokio::task::spawn_blocking(move || read_pod_interface(&pod_name))
        .await
        .map_err(|e| NetworkError::Io {
            op: "read the pod interface".into(),
            source: std::io::Error::other(e),
        })??;
    let (pod_ip, pod_prefix) = pod.ipv4.ok_or_else(|| NetworkError::Pod {
        iface: pod.name.clone(),
        message: "no IPv4 address".into(),
    })?;
    let mac = match iface.mac_address.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => m.to_ascii_lowercase().replace('-', ":"),
        None => match kind {
            Kind::Masquerade => plan::stable_mac(uid, &iface.name),
            // The guest takes over the pod's MAC, so the network's neighbour tables hold.
            Kind::Bridge => pod.mac.clone(),
        },
    };
    let mac_bytes = dhcp::parse_mac(&mac).ok_or_else(|| {
        spec_err(
            format!("{field}.macAddress"),
            format!("not a MAC address: {mac:?}"),
        )
    })?;
    let (dns, search) = read_resolv_conf(&opts.resolv_conf);
    let bridge = plan::bridge_name(&pod.name);

    let (lease_ip, lease_prefix, router, server, routes) = match kind {
        Kind::Masquerade => {
            let subnet = VmSubnet::parse(pod_net.vm_network_cidr.as_deref()).map_err(|m| {
                spec_err(
                    format!(
                        "spec.networks[{}].pod.vmNetworkCIDR",
                        net_index(vmi, &iface.name)
                    ),
                    m,
                )
            })?;
            let nft = plan::masquerade_nft(&pod, &subnet, &iface.ports)
                .map_err(|m| spec_err(format!("{field}.{m}"), String::new()))?;
            let script = plan::masquerade_script(&pod, &subnet, queues);
            let p = pod.clone();
            tokio::task::spawn_blocking(move || -> Result<(), NetworkError> {
                run("ip", &["-batch", "-"], &script)?;
                enable_forwarding()?;
                if let Err(e) = run("nft", &["-f", "-"], &nft) {
                    let _ = run("ip", &["-batch", "-"], &plan::masquerade_restore_script(&p));
                    return Err(e);
                }
                Ok(())
            })
            .await
            .map_err(|e| NetworkError::Io {
                op: "network setup".into(),
                source: std::io::Error::other(e),
            })??;
            (
                subnet.guest,
                subnet.prefix,
                Some(subnet.gateway),
                subnet.gateway,
                Vec::new(),
            )
        }
        Kind::Bridge => {
            let script = plan::bridge_script(&pod, &plan::derived_pod_mac(&pod.mac), queues);
            let p = pod.clone();
            tokio::task::spawn_blocking(move || {
                let res = run("ip", &["-batch", "-"], &script);
                if res.is_err() {
                    let _ = run(
                        "ip",
                        &["-force", "-batch", "-"],
                        &plan::bridge_restore_script(&p),
                    );
                }
                res
            })
            .await
            .map_err(|e| NetworkError::Io {
                op: "network setup".into(),
                source: std::io::Error::other(e),
            })??;
            // A gateway outside the pod's subnet (e.g. a /32 pod address) needs a host route.
            let routes = match pod.gateway {
                Some(gw) if !same_subnet(gw, pod_ip, pod_prefix) => {
                    vec![
                        (gw, 32, Ipv4Addr::UNSPECIFIED),
                        (Ipv4Addr::UNSPECIFIED, 0, gw),
                    ]
                }
                _ => Vec::new(),
            };
            (
                pod_ip,
                pod_prefix,
                pod.gateway,
                plan::BRIDGE_BINDING_SERVER,
                routes,
            )
        }
    };
    let mut net = Network {
        undo: Some((kind, pod.clone())),
        ..Default::default()
    };

    let dhcp_opts = iface.dhcp_options.as_ref();
    let lease = dhcp::Lease {
        mac: mac_bytes,
        ip: lease_ip,
        prefix: lease_prefix,
        router,
        server,
        dns,
        search,
        hostname: crate::cloudinit::hostname(vmi),
        mtu: u16::try_from(pod.mtu).ok(),
        ntp: dhcp_opts
            .map(|o| {
                o.ntp_servers
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        routes,
        private: dhcp_opts
            .map(|o| {
                o.private_options
                    .iter()
                    .filter(|p| (224..=254).contains(&p.option))
                    .map(|p| (p.option as u8, p.value.clone().into_bytes()))
                    .collect()
            })
            .unwrap_or_default(),
        tftp_server: dhcp_opts.and_then(|o| o.tftp_server_name.clone()),
        boot_file: dhcp_opts.and_then(|o| o.boot_file_name.clone()),
    };
    let socket = match dhcp::bind(&bridge) {
        Ok(s) => s,
        Err(e) => {
            net.teardown().await;
            return Err(NetworkError::Io {
                op: format!("DHCP socket on {bridge}"),
                source: e,
            });
        }
    };
    net.dhcp = Some(tokio::spawn(
        dhcp::serve(socket, bridge.clone(), lease).in_current_span(),
    ));
    let binding_name = match kind {
        Kind::Masquerade => "masquerade",
        Kind::Bridge => "bridge",
    };
    info!(
        interface = %iface.name,
        binding = binding_name,
        pod_ip = %pod_ip,
        guest_ip = %lease_ip,
        mac = %mac,
        "pod network ready"
    );
    net.targets.insert(
        iface.name.clone(),
        InterfaceTarget {
            tap: plan::TAP.into(),
            mac: mac.clone(),
            mtu: Some(pod.mtu),
            queues: (queues > 1).then_some(queues),
        },
    );
    net.statuses.push(InterfaceStatus {
        name: iface.name.clone(),
        mac,
        ips: vec![pod_ip.to_string()],
        binding: binding_name.into(),
        pod_interface: pod.name.clone(),
        tap: plan::TAP.into(),
        guest_ip: lease_ip.to_string(),
    });
    Ok(net)
}

fn net_index(vmi: &VirtualMachineInstance, name: &str) -> usize {
    vmi.spec
        .networks
        .iter()
        .position(|n| n.name == name)
        .unwrap_or(0)
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    u32::from(a) & mask == u32::from(b) & mask
}

/// Runs `tool args` with `input` on stdin; an error with its stderr unless it exits 0.
fn run(tool: &'static str, args: &[&str], input: &str) -> Result<(), NetworkError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetworkError::Io {
            op: format!("run {tool}"),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| NetworkError::Io {
                op: format!("write to {tool}"),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NetworkError::Io {
            op: format!("wait for {tool}"),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::Command {
        tool,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        script: input.to_string(),
    })
}

fn enable_forwarding() -> Result<(), NetworkError> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| NetworkError::Io {
        op: "enable IPv4 forwarding in the pod".into(),
        source,
    })
}

/// Reads the pod interface with `ip -json`.
fn read_pod_interface(name: &str) -> Result<PodInterface, NetworkError> {
    let pod_err = |message: String| NetworkError::Pod {
        iface: name.to_string(),
        message,
    };
    let json = |args: &[&str]| -> Result<serde_json::Value, NetworkError> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|source| NetworkError::Io {
                op: "run ip".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(pod_err(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| pod_err(format!("ip -json output: {e}")))
    };
    let addr = json(&["-json", "addr", "show", "dev", name])?;
    let routes = json(&["-json", "-4", "route", "show", "default"])?;
    parse_pod_interface(name, &addr, &routes).map_err(pod_err)
}

/// Pure part of [`read_pod_interface`].
pub fn parse_pod_interface(
    name: &str,
    addr: &serde_json::Value,
    routes: &serde_json::Value,
) -> Result<PodInterface, String> {
    let link = addr
        .as_array()
        .and_then(|a| a.first())
        .ok_or("no such interface")?;
    let mac = link
        .get("address")
        .and_then(|v| v.as_str())
        .ok_or("no MAC address")?
        .to_string();
    let mtu = link.get("mtu").and_then(|v| v.as_u64()).unwrap_or(1500) as u32;
    let ipv4 = link
        .get("addr_info")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter(|a| a.get("family").and_then(|f| f.as_str()) == Some("inet"))
        .filter(|a| a.get("scope").and_then(|s| s.as_str()) != Some("host"))
        .find_map(|a| {
            let ip: Ipv4Addr = a.get("local")?.as_str()?.parse().ok()?;
            let prefix = a.get("prefixlen")?.as_u64()? as u8;
            Some((ip, prefix))
        });
    let gateway = routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("dev").and_then(|d| d.as_str()) == Some(name))
        .find_map(|r| r.get("gateway")?.as_str()?.parse().ok());
    Ok(PodInterface {
        name: name.to_string(),
        mac,
        mtu,
        ipv4,
        gateway,
    })
}

/// IPv4 name servers and search domains from a resolv.conf (missing file: none).
pub fn read_resolv_conf(path: &Path) -> (Vec<Ipv4Addr>, Vec<String>) {
    parse_resolv_conf(&std::fs::read_to_string(path).unwrap_or_default())
}

pub fn parse_resolv_conf(text: &str) -> (Vec<Ipv4Addr>, Vec<String>) {
    let mut dns = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                    dns.push(ip);
                }
            }
            // The last search (or domain) line wins, as in the resolver.
            Some("search") | Some("domain") => {
                search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
            }
            _ => {}
        }
    }
    (dns, search)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_pod_interface_from_ip_json() {
        let addr = json!([{"ifname": "eth0", "mtu": 1450, "address": "aa:bb:cc:00:00:01", "addr_info": [
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
            {"family": "inet", "local": "10.244.1.5", "prefixlen": 24, "scope": "global"},
        ]}]);
        let routes = json!([{"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"}]);
        let pod = parse_pod_interface("eth0", &addr, &routes).expect("parses");
        assert_eq!(pod.ipv4, Some((Ipv4Addr::new(10, 244, 1, 5), 24)));
        assert_eq!(pod.gateway, Some(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(pod.mtu, 1450);
        assert!(parse_pod_interface("eth0", &json!([]), &routes).is_err());
    }

    #[test]
    fn resolv_conf_gives_ipv4_servers_and_the_last_search_line() {
        let (dns, search) = parse_resolv_conf(
            "# comment\nsearch a.local\nnameserver 10.96.0.10\nnameserver fd00::10\nsearch ns.svc.cluster.local svc.cluster.local.\noptions ndots:5\n",
        );
        assert_eq!(dns, vec![Ipv4Addr::new(10, 96, 0, 10)]);
        assert_eq!(search, vec!["ns.svc.cluster.local", "svc.cluster.local"]);
    }
}
