//! VMI `portforward/{port}[/{protocol}]` (what `virtctl port-forward` and `ssh` use): a TCP
//! connection to the launcher pod's address and the port, made inside the pod's network
//! namespace (the address may only exist there), relayed as the websocket's binary messages.
//!
//! The namespace is entered through a pod process (`/proc/<pid>/ns/net`; the embedded kubelet
//! reports `containerID: kvrs://<pid>`) on a dedicated thread that ends right after the
//! connect, so no runtime thread ever changes namespace. Without such a process (a container
//! runtime whose ids are not pids) the address is dialled from the node's namespace, which
//! works wherever pod addresses are routed to the node.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

use crate::containerdisk::kvrs_pid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("entering the network namespace {0}: {1}")]
    Setns(PathBuf, String),
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, #[source] std::io::Error),
    #[error("only tcp can be forwarded, not {0}")]
    Protocol(String),
    #[error("the launcher pod has no address")]
    NoAddress,
}

/// Where to connect and through which namespace (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub addr: SocketAddr,
    pub netns: Option<PathBuf>,
}

/// The connection plan for `port` of the VMI behind `pod` (pure).
pub fn plan(pod: &Pod, port: u16, protocol: &str) -> Result<Plan, Error> {
    if !protocol.eq_ignore_ascii_case("tcp") {
        return Err(Error::Protocol(protocol.into()));
    }
    let status = pod.status.as_ref().ok_or(Error::NoAddress)?;
    let ip: IpAddr = status
        .pod_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .ok_or(Error::NoAddress)?;
    let pid = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.container_id.as_deref().and_then(kvrs_pid))
        .next();
    Ok(Plan {
        addr: SocketAddr::new(ip, port),
        netns: pid.map(|p| PathBuf::from(format!("/proc/{p}/ns/net"))),
    })
}

/// Connects as planned.
pub async fn connect(p: &Plan) -> Result<tokio::net::TcpStream, Error> {
    let Some(ns) = p.netns.clone() else {
        return tokio::net::TcpStream::connect(p.addr)
            .await
            .map_err(|e| Error::Connect(p.addr, e));
    };
    let addr = p.addr;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| {
            let f =
                std::fs::File::open(&ns).map_err(|e| Error::Setns(ns.clone(), e.to_string()))?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::Setns(ns.clone(), e.to_string()))?;
            let s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
                .map_err(|e| Error::Connect(addr, e))?;
            s.set_nonblocking(true)
                .map_err(|e| Error::Connect(addr, e))?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    let s = rx
        .await
        .map_err(|_| Error::Setns(PathBuf::new(), "the connecting thread died".into()))??;
    tokio::net::TcpStream::from_std(s).map_err(|e| Error::Connect(addr, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plans_through_the_pod_process() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "status": {"podIP": "10.1.0.7", "containerStatuses": [
                {"name": "compute", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                 "containerID": "kvrs://4242"}]}}))
        .expect("pod");
        let p = plan(&pod, 22, "tcp").expect("plan");
        assert_eq!(p.addr.to_string(), "10.1.0.7:22");
        assert_eq!(p.netns, Some(PathBuf::from("/proc/4242/ns/net")));
        assert!(matches!(plan(&pod, 22, "udp"), Err(Error::Protocol(_))));
        let bare: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "status": {"podIP": "127.0.0.1"}}),
        )
        .expect("pod");
        assert_eq!(plan(&bare, 80, "TCP").expect("plan").netns, None);
    }
}
