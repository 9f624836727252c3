//! SIGKILL the server during a loop of writes, restart it: every acknowledged write is there and
//! resourceVersions keep rising.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(tmp.path(), "127.0.0.1:0");
    let addr = s.addr.clone();
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    // name -> (resourceVersion, data value) of every acknowledged write
    let acked: Arc<Mutex<BTreeMap<String, (u64, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let cms = cms.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100_000u32 {
                let name = format!("w{w}-{}", i % 50);
                let value = format!("{i}");
                let result = if i < 50 {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            ..Default::default()
                        },
                        data: Some(BTreeMap::from([("v".to_string(), value.clone())])),
                        ..Default::default()
                    };
                    cms.create(&PostParams::default(), &cm).await
                } else {
                    cms.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"data": {"v": value}})),
                    )
                    .await
                };
                match result {
                    Ok(cm) => {
                        let rv = cm
                            .metadata
                            .resource_version
                            .as_deref()
                            .and_then(|r| r.parse().ok())
                            .expect("numeric resourceVersion");
                        if let Ok(mut a) = acked.lock() {
                            a.insert(name, (rv, value));
                        }
                    }
                    // The server went away: this write was never acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    // Let the writers run for at least 2.5 s and until at least 50 objects are acknowledged
    // (however slow the machine), then kill the server mid-flight.
    let started = Instant::now();
    let progress_deadline = started + Duration::from_secs(60);
    loop {
        let n = acked.lock().map(|a| a.len()).unwrap_or(0);
        if n >= 50 && started.elapsed() >= Duration::from_millis(2500) {
            break;
        }
        // (The Server guard kills the process when the panic unwinds.)
        if Instant::now() >= progress_deadline {
            panic!(
                "the write loop made too little progress: {n} < 50 objects acknowledged in 60 s"
            );
        }
        if writers.iter().all(|w| w.is_finished()) {
            // Every write failed before the kill: nothing left to wait for.
            assert!(
                n >= 50,
                "every writer stopped (a write failed) with only {n} < 50 objects acknowledged"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.kill();
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(60), w).await;
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(acked.len() >= 50, "the loop made progress: {}", acked.len());
    let max_rv = acked.values().map(|(rv, _)| *rv).max().unwrap_or(0);

    let s2 = Server::start_in(tmp.path(), &addr);
    let cms2: Api<ConfigMap> = Api::default_namespaced(s2.client().await);
    let list = cms2.list(&ListParams::default()).await.expect("list");
    let stored: BTreeMap<String, (u64, String)> = list
        .items
        .iter()
        .map(|c| {
            let rv = c
                .metadata
                .resource_version
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let v = c
                .data
                .as_ref()
                .and_then(|d| d.get("v").cloned())
                .unwrap_or_default();
            (c.metadata.name.clone().unwrap_or_default(), (rv, v))
        })
        .collect();
    for (name, (rv, value)) in &acked {
        let Some((srv, sval)) = stored.get(name) else {
            panic!("acknowledged {name} (rv {rv}) is missing after the restart");
        };
        // The stored state is at least as new as what was acknowledged (a write that reached
        // the disk may have lost its answer when the server died).
        assert!(srv >= rv, "{name}: stored rv {srv} < acknowledged {rv}");
        if srv == rv {
            assert_eq!(sval, value, "{name} at rv {rv}");
        }
    }
    let list_rv: u64 = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("list rv");
    assert!(list_rv >= max_rv);
    let fresh = cms2
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("after-restart".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("write after restart");
    let fresh_rv: u64 = fresh
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("rv");
    assert!(
        fresh_rv > list_rv,
        "resourceVersions keep rising: {fresh_rv} > {list_rv}"
    );
    println!(
        "acknowledged {} objects up to rv {max_rv}; all present after SIGKILL",
        acked.len()
    );
}
