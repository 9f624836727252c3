//! The node lifecycle part of the control plane: a node whose kubelet stopped renewing its Lease
//! in `kube-node-lease` for longer than the grace period gets Ready `Unknown` (reason
//! `NodeStatusUnknown`) and the `node.kubernetes.io/unreachable` taints (NoSchedule and
//! NoExecute), as kube-controller-manager's node lifecycle controller does. A kubelet that comes
//! back removes them when it registers again. Pods are not evicted (no taint manager yet).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Is a lease last renewed at `renew` stale at `now`, given the grace period?
pub fn stale(renew: Option<Timestamp>, now: Timestamp, grace: Duration) -> bool {
    match renew {
        None => true,
        Some(r) => {
            now.duration_since(r)
                > k8s_openapi::jiff::SignedDuration::try_from(grace).unwrap_or_default()
        }
    }
}

fn ready_status(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// One pass over the nodes.
pub async fn check(client: &Client, grace: Duration) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease_list = leases.list(&ListParams::default()).await?.items;
    let now = Timestamp::now();
    for n in nodes.list(&ListParams::default()).await?.items {
        let name = n.name_any();
        let renew = lease_list
            .iter()
            .find(|l| l.name_any() == name)
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        if ready_status(&n).as_deref() != Some("True") || !stale(renew, now, grace) {
            continue;
        }
        // Nodes never registered through a Lease (made by hand) are left alone.
        if renew.is_none() {
            continue;
        }
        let stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let msg = "Kubelet stopped posting node status.";
        let conds: Vec<serde_json::Value> = [
            "MemoryPressure",
            "DiskPressure",
            "PIDPressure",
            "Ready",
        ]
        .iter()
        .map(|t| {
            json!({"type": t, "status": "Unknown", "reason": "NodeStatusUnknown", "message": msg,
                             "lastTransitionTime": stamp})
        })
        .collect();
        nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": {"conditions": conds}})),
            )
            .await?;
        let mut taints: Vec<serde_json::Value> = n
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != UNREACHABLE)
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect();
        taints.push(json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": stamp}));
        taints.push(json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": stamp}));
        nodes
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": taints}})),
            )
            .await?;
        tracing::info!(node = %name, "node lease expired: NotReady, unreachable");
    }
    Ok(())
}

/// Checks every `period` until dropped.
pub async fn run(client: Client, grace: Duration, period: Duration) {
    loop {
        if let Err(e) = check(&client, grace).await {
            tracing::warn!(error = %e, "node lifecycle check failed");
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness() {
        let now = Timestamp::from_second(1000).unwrap();
        let g = Duration::from_secs(40);
        assert!(!stale(Some(Timestamp::from_second(990).unwrap()), now, g));
        assert!(stale(Some(Timestamp::from_second(959).unwrap()), now, g));
        assert!(stale(None, now, g));
    }
}
