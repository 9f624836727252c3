//! Node heartbeat: every interval, label the node `kubevirt.io/schedulable=true` and stamp
//! `kubevirt.io/heartbeat=<RFC3339 UTC, seconds>` on it. virt-controller reads the stamp: when it
//! is older than its timeout, it marks the node unschedulable and fails the instances stranded
//! there; our next beat marks it schedulable again.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// The label virt-controller's launcher pods select nodes by.
pub const SCHEDULABLE_LABEL: &str = "kubevirt.io/schedulable";
/// The annotation holding the time of the latest heartbeat.
pub const HEARTBEAT_ANNOTATION: &str = "kubevirt.io/heartbeat";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("patching node {node}: {source}")]
    Patch {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// The heartbeat as an RFC3339 UTC timestamp with whole seconds, e.g. `2026-11-22T08:59:00Z`.
pub fn stamp(now: Timestamp) -> String {
    // Whole seconds, as upstream writes it; in range for any clock reading.
    match Timestamp::from_second(now.as_second()) {
        Ok(t) => t.to_string(),
        Err(_) => now.to_string(),
    }
}

/// The merge patch one beat applies to the node.
pub fn patch(now: Timestamp) -> Value {
    json!({
        "metadata": {
            "labels": { SCHEDULABLE_LABEL: "true" },
            "annotations": { HEARTBEAT_ANNOTATION: stamp(now) },
        }
    })
}

/// One beat: patch the node now.
pub async fn beat(nodes: &Api<Node>, node: &str) -> Result<(), Error> {
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(&patch(Timestamp::now())),
        )
        .await
        .map_err(|source| Error::Patch {
            node: node.to_string(),
            source,
        })?;
    Ok(())
}

/// Beats every `interval` until `shutdown` completes. A failed beat is logged and retried on the
/// next tick (the node may not be registered yet).
pub async fn run(
    client: kube::Client,
    node: String,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                match beat(&nodes, &node).await {
                    Ok(()) => tracing::debug!(node = %node, "heartbeat"),
                    Err(e) => tracing::warn!(node = %node, error = %e, "heartbeat failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_rfc3339_seconds() {
        let t: Timestamp = "2026-11-22T08:59:00.123456Z".parse().unwrap();
        assert_eq!(stamp(t), "2026-11-22T08:59:00Z");
    }

    #[test]
    fn patch_labels_and_stamps() {
        let t: Timestamp = "2026-11-22T08:59:00Z".parse().unwrap();
        assert_eq!(
            patch(t),
            json!({"metadata": {
                "labels": {"kubevirt.io/schedulable": "true"},
                "annotations": {"kubevirt.io/heartbeat": "2026-11-22T08:59:00Z"},
            }})
        );
    }
}
