//! Leader election against the embedded API server: one holder at a time; a standby takes
//! over once the holder stops renewing.

mod common;

use std::time::Duration;

use common::Cluster;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use virt_controller::leader::{LeaseConfig, try_hold};

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(2),
        renew: Duration::from_millis(200),
        ..LeaseConfig::new("default", identity)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_until_it_stops_renewing() {
    let cluster = Cluster::start().await;
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), "default");
    let (a, b) = (cfg("a"), cfg("b"));
    assert!(try_hold(&api, &a).await.expect("a takes"));
    assert!(!try_hold(&api, &b).await.expect("b waits"));
    assert!(try_hold(&api, &a).await.expect("a renews"));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(try_hold(&api, &b).await.expect("b takes over"));
    assert!(!try_hold(&api, &a).await.expect("a has lost it"));
    let lease = api.get("virt-controller").await.expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}
