//! Node and pod network namespaces, with iproute2 (`ip`). Everything lives in namespaces the
//! kubelet creates; nothing is configured in the root namespace.
//!
//! - node `i` (1..=254): netns `kvrs-<node>`, bridge `kvrs0` with `10.244.i.1/24`, and `fab0`
//!   (`10.244.255.i/24`) plugged into the fabric;
//! - fabric: netns `kvrs-fabric` (configurable, so parallel tests have their own) with bridge
//!   `fab` (`10.244.255.254/24`) that routes `10.244.i.0/24` to node `i`;
//! - pod: netns `kvrs-<node>-<first 8 of uid>`, `eth0` with `10.244.i.N/24`, default route via
//!   `10.244.i.1`; its veth peer `v<first 8 of uid>` is on the node's bridge.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("ip {args}: {message}")]
    Ip { args: String, message: String },
    #[error("node index {0} is outside 1..=254")]
    BadIndex(u32),
    #[error("no free pod address left on the node")]
    Exhausted,
}

/// Name of a node's network namespace.
pub fn node_netns(node: &str) -> String {
    format!("kvrs-{node}")
}

/// Name of a pod's network namespace.
pub fn pod_netns(node: &str, uid: &str) -> String {
    format!("kvrs-{node}-{}", uid_prefix(uid))
}

fn uid_prefix(uid: &str) -> String {
    uid.chars().filter(|c| *c != '-').take(8).collect()
}

/// The node side of a pod's veth.
pub fn pod_veth(uid: &str) -> String {
    format!("v{}", uid_prefix(uid))
}

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Addresses of node `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddrs {
    pub index: u8,
    pub gateway: Ipv4Addr,
    pub cidr: String,
    pub transit: Ipv4Addr,
}

pub fn node_addrs(index: u32) -> Result<NodeAddrs, NetError> {
    if !(1..=254).contains(&index) {
        return Err(NetError::BadIndex(index));
    }
    let i = index as u8;
    Ok(NodeAddrs {
        index: i,
        gateway: Ipv4Addr::new(10, 244, i, 1),
        cidr: format!("10.244.{i}.0/24"),
        transit: Ipv4Addr::new(10, 244, 255, i),
    })
}

/// The lowest free pod address of node `index` (from .2), given those in use.
pub fn allocate(index: u8, used: &[Ipv4Addr]) -> Result<Ipv4Addr, NetError> {
    (2..=254u8)
        .map(|n| Ipv4Addr::new(10, 244, index, n))
        .find(|a| !used.contains(a))
        .ok_or(NetError::Exhausted)
}

async fn ip(args: &[&str]) -> Result<String, NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| NetError::Ip {
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `ip` that tolerates "already exists".
async fn ip_idem(args: &[&str]) -> Result<(), NetError> {
    match ip(args).await {
        Ok(_) => Ok(()),
        Err(NetError::Ip { message, .. })
            if message.contains("File exists") || message.contains("already assigned") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn has_link(ns: &str, link: &str) -> bool {
    ip(&["-n", ns, "link", "show", "dev", link]).await.is_ok()
}

async fn ensure_netns(name: &str) -> Result<(), NetError> {
    if !netns_path(name).exists() {
        ip_idem(&["netns", "add", name]).await?;
    }
    ip(&["-n", name, "link", "set", "lo", "up"]).await?;
    Ok(())
}

async fn forward(ns: &str) -> Result<(), NetError> {
    ip(&[
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ])
    .await
    .map(|_| ())
}

/// Creates (or completes) the node's namespace, bridge and fabric link. Idempotent.
pub async fn ensure_node(node: &str, index: u32, fabric: &str) -> Result<NodeAddrs, NetError> {
    let a = node_addrs(index)?;
    let ns = node_netns(node);
    ensure_netns(&ns).await?;
    if !has_link(&ns, "kvrs0").await {
        ip_idem(&["-n", &ns, "link", "add", "kvrs0", "type", "bridge"]).await?;
    }
    ip_idem(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{}/24", a.gateway),
        "dev",
        "kvrs0",
    ])
    .await?;
    ip(&["-n", &ns, "link", "set", "kvrs0", "up"]).await?;
    forward(&ns).await?;
    // The fabric, shared by the cluster's nodes.
    ensure_netns(fabric).await?;
    if !has_link(fabric, "fab").await {
        ip_idem(&["-n", fabric, "link", "add", "fab", "type", "bridge"]).await?;
    }
    ip_idem(&[
        "-n",
        fabric,
        "addr",
        "add",
        "10.244.255.254/24",
        "dev",
        "fab",
    ])
    .await?;
    ip(&["-n", fabric, "link", "set", "fab", "up"]).await?;
    forward(fabric).await?;
    let peer = format!("n{}", a.index);
    if !has_link(&ns, "fab0").await {
        // A stale peer from an earlier run of this node would block the name.
        let _ = ip(&["-n", fabric, "link", "del", &peer]).await;
        ip(&[
            "-n", &ns, "link", "add", "fab0", "type", "veth", "peer", "name", &peer, "netns",
            fabric,
        ])
        .await?;
    }
    ip(&["-n", fabric, "link", "set", &peer, "master", "fab", "up"]).await?;
    ip_idem(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{}/24", a.transit),
        "dev",
        "fab0",
    ])
    .await?;
    ip(&["-n", &ns, "link", "set", "fab0", "up"]).await?;
    ip(&[
        "-n",
        &ns,
        "route",
        "replace",
        "10.244.0.0/16",
        "via",
        "10.244.255.254",
    ])
    .await?;
    ip(&[
        "-n",
        fabric,
        "route",
        "replace",
        &a.cidr,
        "via",
        &a.transit.to_string(),
    ])
    .await?;
    Ok(a)
}

/// Gives the pod its namespace, `eth0` with `addr`, and a default route. Idempotent.
pub async fn setup_pod(
    node: &str,
    uid: &str,
    addrs: &NodeAddrs,
    addr: Ipv4Addr,
) -> Result<String, NetError> {
    let ns = pod_netns(node, uid);
    let node_ns = node_netns(node);
    let veth = pod_veth(uid);
    if !netns_path(&ns).exists() {
        ip_idem(&["netns", "add", &ns]).await?;
    }
    let mut script = String::new();
    if !has_link(&ns, "eth0").await {
        // A stale node side of an earlier attempt would block the name.
        let _ = ip(&["-n", &node_ns, "link", "del", &veth]).await;
        script.push_str(&format!(
            "link add eth0 type veth peer name {veth} netns {node_ns}\n"
        ));
    }
    script.push_str(&pod_script(addr, addrs.gateway));
    ip_batch(&ns, &script).await?;
    ip(&[
        "-n", &node_ns, "link", "set", &veth, "master", "kvrs0", "up",
    ])
    .await?;
    Ok(ns)
}

/// The `ip -batch` lines that configure a pod's namespace once `eth0` exists (idempotent).
pub fn pod_script(addr: Ipv4Addr, gateway: Ipv4Addr) -> String {
    format!(
        "link set lo up\naddr replace {addr}/24 dev eth0\nlink set eth0 up\n\
         route replace default via {gateway}\n"
    )
}

/// Runs `ip -n <ns> -batch -` with `script` on stdin.
async fn ip_batch(ns: &str, script: &str) -> Result<(), NetError> {
    use tokio::io::AsyncWriteExt;
    let err = |message: String| NetError::Ip {
        args: format!("-n {ns} -batch: {}", script.trim().replace('\n', "; ")),
        message,
    };
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// Removes a pod's namespace (its veth goes with it once its processes are gone).
pub async fn teardown_pod(node: &str, uid: &str) {
    let ns = pod_netns(node, uid);
    if netns_path(&ns).exists()
        && let Err(e) = ip(&["netns", "del", &ns]).await
    {
        tracing::warn!(netns = %ns, error = %e, "deleting the pod network namespace failed");
    }
}

/// Removes the node's namespace and its route in the fabric; the fabric itself goes when no
/// node is left on it.
pub async fn teardown_node(node: &str, index: u32, fabric: &str) {
    let ns = node_netns(node);
    if netns_path(&ns).exists() {
        let _ = ip(&["netns", "del", &ns]).await;
    }
    if let Ok(a) = node_addrs(index) {
        let _ = ip(&["-n", fabric, "route", "del", &a.cidr]).await;
        let _ = ip(&["-n", fabric, "link", "del", &format!("n{}", a.index)]).await;
    }
    let links = ip(&["-n", fabric, "-o", "link", "show"])
        .await
        .unwrap_or_default();
    let nodes_left = links.lines().any(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|n| n.trim().starts_with('n') && n.contains('@'))
    });
    if !nodes_left && netns_path(fabric).exists() {
        let _ = ip(&["netns", "del", fabric]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(pod_netns("n1", "0f1e2d3c-aaaa-bbbb"), "kvrs-n1-0f1e2d3c");
        assert_eq!(pod_veth("0f1e-2d3c-aaaa"), "v0f1e2d3c");
        let a = node_addrs(3).unwrap();
        assert_eq!(a.gateway, Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(a.cidr, "10.244.3.0/24");
        assert!(node_addrs(0).is_err());
        assert!(node_addrs(255).is_err());
        let used = [Ipv4Addr::new(10, 244, 3, 2), Ipv4Addr::new(10, 244, 3, 4)];
        assert_eq!(allocate(3, &used).unwrap(), Ipv4Addr::new(10, 244, 3, 3));
        assert_eq!(
            pod_script(Ipv4Addr::new(10, 244, 3, 3), a.gateway),
            "link set lo up\naddr replace 10.244.3.3/24 dev eth0\nlink set eth0 up\n\
             route replace default via 10.244.3.1\n"
        );
    }
}
