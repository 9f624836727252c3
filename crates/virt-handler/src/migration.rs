//! Live migration on a node: what each side does next (pure) and the proxies that carry the
//! migration between the pods (I/O).
//!
//! The target handler (the VMI carries `kubevirt.io/migrationTargetNodeName=<this node>`) asks
//! the target pod's launcher to prepare, then listens on TCP ports of this node, each joined to
//! one of the launcher's migration sockets (libvirtd's connection, QEMU's incoming stream,
//! libvirt's NBD server), and publishes them in `status.migrationState`
//! (`targetNodeAddress`, `targetDirectMigrationNodePorts`: node port -> purpose). The source
//! handler binds sockets of the same names in the source pod, each joined to the target node's
//! port of the same purpose, and asks its launcher to migrate through them. Nothing but TCP
//! between the nodes, as on a real cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceMigrationState};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The label naming the node a VMI migrates to, watched by that node's handler.
pub const TARGET_NODE_LABEL: &str = "kubevirt.io/migrationTargetNodeName";

/// Purposes in `targetDirectMigrationNodePorts` (upstream keys the map by node port and gives
/// the pod-side port as the value; our pod side is unix sockets, so the value names the stream).
pub mod purpose {
    pub const LIBVIRT: i64 = 0;
    pub const MEMORY: i64 = 49152;
    pub const DISKS: i64 = 49153;
}

/// The node ports of one migration target, by purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPorts {
    pub libvirt: u16,
    pub memory: u16,
    pub disks: u16,
}

impl TargetPorts {
    /// As `targetDirectMigrationNodePorts`.
    pub fn to_map(self) -> BTreeMap<String, i64> {
        BTreeMap::from([
            (self.libvirt.to_string(), purpose::LIBVIRT),
            (self.memory.to_string(), purpose::MEMORY),
            (self.disks.to_string(), purpose::DISKS),
        ])
    }

    /// From `targetDirectMigrationNodePorts`; None unless every purpose has a valid port.
    pub fn from_map(map: &BTreeMap<String, i64>) -> Option<TargetPorts> {
        let port = |want: i64| {
            map.iter()
                .find(|(_, p)| **p == want)
                .and_then(|(k, _)| k.parse::<u16>().ok())
                .filter(|p| *p != 0)
        };
        Some(TargetPorts {
            libvirt: port(purpose::LIBVIRT)?,
            memory: port(purpose::MEMORY)?,
            disks: port(purpose::DISKS)?,
        })
    }
}

pub fn state(vmi: &VirtualMachineInstance) -> Option<&VirtualMachineInstanceMigrationState> {
    vmi.status.as_ref()?.migration_state.as_ref()
}

/// Has this migration ended, one way or the other?
pub fn ended(m: &VirtualMachineInstanceMigrationState) -> bool {
    m.completed == Some(true) || m.failed == Some(true) || m.end_timestamp.is_some()
}

/// What the source node's handler does about a VMI's migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceStep {
    /// No migration for this node to drive.
    Nothing,
    /// The target is ready: start the migration to `address` through `ports`.
    Start {
        migration_uid: String,
        target_node: String,
        address: IpAddr,
        ports: TargetPorts,
    },
    /// Started but no outcome recorded: the handler lost track (it restarted); ask the
    /// launcher how it ended.
    Recover {
        migration_uid: String,
        target_node: String,
    },
}

/// The source side's next step for `vmi` on `node`.
pub fn source_step(vmi: &VirtualMachineInstance, node: &str) -> SourceStep {
    let Some(m) = state(vmi) else {
        return SourceStep::Nothing;
    };
    let on_this_node = vmi.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
    if !on_this_node || m.source_node.as_deref() != Some(node) || ended(m) {
        return SourceStep::Nothing;
    }
    let (Some(uid), Some(target)) = (m.migration_uid.clone(), m.target_node.clone()) else {
        return SourceStep::Nothing;
    };
    if m.start_timestamp.is_some() {
        return SourceStep::Recover {
            migration_uid: uid,
            target_node: target,
        };
    }
    let address = m
        .target_node_address
        .as_deref()
        .and_then(|a| a.parse::<IpAddr>().ok());
    let ports = TargetPorts::from_map(&m.target_direct_migration_node_ports);
    match (address, ports) {
        (Some(address), Some(ports)) => SourceStep::Start {
            migration_uid: uid,
            target_node: target,
            address,
            ports,
        },
        _ => SourceStep::Nothing,
    }
}

/// What the target node's handler does about a VMI's migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetStep {
    /// Not (or no longer) a migration to this node.
    Nothing,
    /// Prepare the launcher in `pod` and open the proxies (again, when `republish`: the
    /// published ports are this handler's and may be stale after a restart).
    Prepare { migration_uid: String, pod: String },
    /// Prepared and published: keep the proxies open.
    Wait { migration_uid: String },
    /// Ended: close the proxies.
    Ended { migration_uid: String },
    /// The migration was cancelled (`abortRequested`) and has not ended: stop the incoming
    /// guest in `pod`'s launcher, which breaks the source's streams so the source records the
    /// aborted attempt; close the proxies.
    Abort { migration_uid: String, pod: String },
}

/// The target side's next step for `vmi` on `node`; `open` tells whether this handler holds
/// proxies for the VMI's migration.
pub fn target_step(vmi: &VirtualMachineInstance, node: &str, open: bool) -> TargetStep {
    let Some(m) = state(vmi) else {
        return TargetStep::Nothing;
    };
    let Some(uid) = m.migration_uid.clone() else {
        return TargetStep::Nothing;
    };
    if m.target_node.as_deref() != Some(node) {
        return TargetStep::Nothing;
    }
    if ended(m) {
        return TargetStep::Ended { migration_uid: uid };
    }
    let Some(pod) = m.target_pod.clone() else {
        return TargetStep::Nothing;
    };
    if m.abort_requested == Some(true) {
        return TargetStep::Abort {
            migration_uid: uid,
            pod,
        };
    }
    if open && m.target_node_address.is_some() {
        return TargetStep::Wait { migration_uid: uid };
    }
    if m.start_timestamp.is_some() {
        // Already under way through proxies this handler no longer has: the source sees the
        // streams break and records the failure.
        return TargetStep::Wait { migration_uid: uid };
    }
    TargetStep::Prepare {
        migration_uid: uid,
        pod,
    }
}

/// The proxies of one migration; dropping them closes the listeners (open connections end
/// with their tasks).
#[derive(Default)]
pub struct Proxies {
    tasks: Vec<JoinHandle<()>>,
}

impl Proxies {
    pub fn push(&mut self, t: JoinHandle<()>) {
        self.tasks.push(t);
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Listens on `ip`:<free port> and joins each connection to the unix socket `target` (a path
/// on this node, possibly longer than a socket address holds). Returns the port.
pub async fn tcp_to_unix(ip: IpAddr, target: PathBuf) -> std::io::Result<(u16, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(
        async move {
            loop {
                let Ok((mut inbound, peer)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let target = target.clone();
                tokio::spawn(
                    async move {
                        match connect_unix(&target).await {
                            Ok(mut outbound) => {
                                let _ = inbound.set_nodelay(true);
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                            Err(e) => tracing::warn!(
                                %peer,
                                socket = %target.display(),
                                error = %e,
                                "migration proxy: connecting to the launcher's socket failed"
                            ),
                        }
                    }
                    .in_current_span(),
                );
            }
        }
        .in_current_span(),
    );
    Ok((port, task))
}

async fn connect_unix(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let (addr, _dir) = crate::controller::addressable(path)?;
    tokio::net::UnixStream::connect(&addr).await
}

/// Binds the unix socket `path` (replacing a stale one) and joins each connection to `target`.
pub fn unix_to_tcp(path: &Path, target: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let (addr, _dir) = crate::controller::addressable(path)?;
    let _ = std::fs::remove_file(&addr);
    let listener = tokio::net::UnixListener::bind(&addr)?;
    Ok(tokio::spawn(
        async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(
                    async move {
                        match tokio::net::TcpStream::connect(target).await {
                            Ok(mut outbound) => {
                                let _ = outbound.set_nodelay(true);
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                            Err(e) => tracing::warn!(
                                %target,
                                error = %e,
                                "migration proxy: connecting to the target node failed"
                            ),
                        }
                    }
                    .in_current_span(),
                );
            }
        }
        .in_current_span(),
    ))
}

/// The settings virt-controller handed over with the attempt (`migrationConfiguration`).
fn config(vmi: &VirtualMachineInstance) -> Option<&kubevirt_api::v1::VMIMConfigurationOptions> {
    state(vmi)?.migration_configuration.as_ref()
}

/// The migration's completion limit: `completionTimeoutPerGiB` (upstream's default 150 s) per
/// GiB of guest memory, at least one GiB's worth.
pub fn completion_timeout_seconds(vmi: &VirtualMachineInstance) -> u64 {
    const DEFAULT_PER_GIB: u64 = 150;
    let per_gib = config(vmi)
        .and_then(|c| c.completion_timeout_per_gib)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_PER_GIB);
    let bytes = vmi
        .spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.guest.as_ref())
        .or_else(|| {
            vmi.spec
                .domain
                .resources
                .as_ref()
                .and_then(|r| r.requests.get("memory"))
        })
        .and_then(|q| kubevirt_api::quantity::Amount::parse(&q.0).ok())
        .map(kubevirt_api::quantity::Amount::bytes)
        .unwrap_or(0);
    let gib = bytes.div_ceil(1 << 30).max(1);
    per_gib.saturating_mul(gib)
}

/// The bandwidth limit in MiB/s from `bandwidthPerMigration` (a quantity of bytes per second;
/// libvirt takes whole MiB/s, so anything below 1 MiB/s is 1); 0 = unlimited.
pub fn bandwidth_mib(vmi: &VirtualMachineInstance) -> u64 {
    config(vmi)
        .and_then(|c| c.bandwidth_per_migration.as_ref())
        .and_then(|q| kubevirt_api::quantity::Amount::parse(&q.0).ok())
        .map(|a| a.bytes())
        .filter(|b| *b > 0)
        .map(|b| b.div_ceil(1 << 20))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vmi(status: serde_json::Value) -> VirtualMachineInstance {
        serde_json::from_value(json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": "v", "namespace": "d", "uid": "u"},
            "spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "3Gi"}}}},
            "status": status,
        }))
        .expect("vmi")
    }

    fn base() -> serde_json::Value {
        json!({
            "phase": "Running",
            "nodeName": "n1",
            "migrationState": {
                "migrationUid": "m1",
                "sourceNode": "n1",
                "targetNode": "n2",
                "sourcePod": "p1",
                "targetPod": "p2",
            }
        })
    }

    #[test]
    fn ports_round_trip_and_need_every_purpose() {
        let p = TargetPorts {
            libvirt: 4000,
            memory: 4001,
            disks: 4002,
        };
        assert_eq!(TargetPorts::from_map(&p.to_map()), Some(p));
        let mut partial = p.to_map();
        partial.remove("4002");
        assert_eq!(TargetPorts::from_map(&partial), None);
    }

    #[test]
    fn target_prepares_then_waits_then_closes() {
        let v = vmi(base());
        assert_eq!(
            target_step(&v, "n2", false),
            TargetStep::Prepare {
                migration_uid: "m1".into(),
                pod: "p2".into()
            }
        );
        assert_eq!(target_step(&v, "n1", false), TargetStep::Nothing);
        let mut s = base();
        s["migrationState"]["targetNodeAddress"] = json!("10.0.0.2");
        let v = vmi(s.clone());
        assert_eq!(
            target_step(&v, "n2", true),
            TargetStep::Wait {
                migration_uid: "m1".into()
            }
        );
        // A restarted handler has no proxies: it prepares and publishes again.
        assert!(matches!(
            target_step(&v, "n2", false),
            TargetStep::Prepare { .. }
        ));
        // Cancelled while under way: the incoming guest is stopped, until the outcome is in.
        let mut aborting = s.clone();
        aborting["migrationState"]["startTimestamp"] = json!("2026-11-23T00:00:00Z");
        aborting["migrationState"]["abortRequested"] = json!(true);
        assert_eq!(
            target_step(&vmi(aborting.clone()), "n2", true),
            TargetStep::Abort {
                migration_uid: "m1".into(),
                pod: "p2".into()
            }
        );
        aborting["migrationState"]["failed"] = json!(true);
        assert!(matches!(
            target_step(&vmi(aborting), "n2", true),
            TargetStep::Ended { .. }
        ));
        s["migrationState"]["completed"] = json!(true);
        assert_eq!(
            target_step(&vmi(s), "n2", true),
            TargetStep::Ended {
                migration_uid: "m1".into()
            }
        );
    }

    #[test]
    fn source_starts_once_the_target_published_its_ports() {
        assert_eq!(source_step(&vmi(base()), "n1"), SourceStep::Nothing);
        let mut s = base();
        s["migrationState"]["targetNodeAddress"] = json!("10.0.0.2");
        s["migrationState"]["targetDirectMigrationNodePorts"] =
            json!({"4000": 0, "4001": 49152, "4002": 49153});
        let v = vmi(s.clone());
        assert_eq!(
            source_step(&v, "n1"),
            SourceStep::Start {
                migration_uid: "m1".into(),
                target_node: "n2".into(),
                address: "10.0.0.2".parse().unwrap(),
                ports: TargetPorts {
                    libvirt: 4000,
                    memory: 4001,
                    disks: 4002
                },
            }
        );
        assert_eq!(source_step(&v, "n2"), SourceStep::Nothing);
        s["migrationState"]["startTimestamp"] = json!("2026-11-22T10:00:00Z");
        assert!(matches!(
            source_step(&vmi(s.clone()), "n1"),
            SourceStep::Recover { .. }
        ));
        s["migrationState"]["failed"] = json!(true);
        assert_eq!(source_step(&vmi(s), "n1"), SourceStep::Nothing);
    }

    #[test]
    fn completion_timeout_scales_with_guest_memory() {
        assert_eq!(completion_timeout_seconds(&vmi(base())), 450);
        let mut s = base();
        s["migrationState"]["migrationConfiguration"] = json!({"completionTimeoutPerGiB": 10});
        assert_eq!(completion_timeout_seconds(&vmi(s)), 30);
    }

    #[test]
    fn bandwidth_comes_from_the_handed_over_configuration() {
        assert_eq!(bandwidth_mib(&vmi(base())), 0);
        let with = |q: &str| {
            let mut s = base();
            s["migrationState"]["migrationConfiguration"] = json!({"bandwidthPerMigration": q});
            bandwidth_mib(&vmi(s))
        };
        assert_eq!(with("64Mi"), 64);
        assert_eq!(with("1M"), 1);
        assert_eq!(with("0"), 0);
    }
}
