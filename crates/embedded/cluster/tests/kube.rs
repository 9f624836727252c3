//! kube-rs against `virt-cluster apiserver`: a Controller with `.owns()`, a watcher that resumes
//! across a server restart, and the API semantics controllers rely on.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Server;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.kubevirt-rs.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd"
)]
pub struct WidgetSpec {
    pub size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    pub seen: i64,
}

async fn install_widget_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("create CRD");
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    for _ in 0..100 {
        if widgets.list(&ListParams::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the Widget CRD was not served");
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Ctx {
    client: kube::Client,
    reconciles: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = w.namespace().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = w.controller_owner_ref(&()).expect("owner ref");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("{}-cm", w.name_any())),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "size".to_string(),
            w.spec.size.to_string(),
        )])),
        ..Default::default()
    };
    cms.patch(
        &format!("{}-cm", w.name_any()),
        &PatchParams::apply("widget-controller").force(),
        &Patch::Apply(&cm),
    )
    .await?;
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    widgets
        .patch_status(
            &w.name_any(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"seen": w.spec.size}})),
        )
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &ReconcileError, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn cm_size(cms: &Api<ConfigMap>, name: &str) -> Option<String> {
    cms.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data)
        .and_then(|d| d.get("size").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_with_owns_reconciles() {
    let s = Server::start();
    let client = s.client().await;
    install_widget_crd(&client).await;
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
    });
    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    widgets
        .create(
            &PostParams::default(),
            &Widget::new("w1", WidgetSpec { size: 1 }),
        )
        .await
        .expect("create widget");
    eventually("the owned ConfigMap", || async {
        cm_size(&cms, "w1-cm").await.as_deref() == Some("1")
    })
    .await;
    let status = widgets.get_status("w1").await.expect("status");
    assert_eq!(status.status.map(|s| s.seen), Some(1));

    widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"size": 2}})),
        )
        .await
        .expect("patch widget");
    eventually("the ConfigMap to follow the spec", || async {
        cm_size(&cms, "w1-cm").await.as_deref() == Some("2")
    })
    .await;

    // Tampering with the owned object triggers the owner's reconcile through `.owns()`.
    let before = ctx.reconciles.load(Ordering::SeqCst);
    cms.patch(
        "w1-cm",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"size": "tampered"}})),
    )
    .await
    .expect("tamper");
    eventually("the owner to repair its ConfigMap", || async {
        cm_size(&cms, "w1-cm").await.as_deref() == Some("2")
    })
    .await;
    assert!(ctx.reconciles.load(Ordering::SeqCst) > before);
    let gen_w = widgets.get("w1").await.expect("get");
    assert_eq!(gen_w.metadata.generation, Some(2));
    task.abort();

    // Deleting the owner garbage-collects what it owns.
    widgets
        .delete("w1", &DeleteParams::background())
        .await
        .expect("delete widget");
    eventually("the owned ConfigMap to be collected", || async {
        cms.get_opt("w1-cm").await.ok().flatten().is_none()
    })
    .await;
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    name: &str,
) -> Result<(), tokio::time::error::Elapsed> {
    let fut = async {
        while let Some(n) = rx.recv().await {
            if n == name {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), fut).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_resumes_after_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(tmp.path(), "127.0.0.1:0");
    let addr = s.addr.clone();
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mk = |name: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &mk("before"))
        .await
        .expect("create");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(cm) = ev {
                let _ = tx.send(cm.name_any());
            }
        }
    });
    wait_for(&mut rx, "before").await.expect("saw 'before'");
    s.kill();
    let s2 = Server::start_in(tmp.path(), &addr);
    assert_eq!(s2.addr, addr);
    let client2 = s2.client().await;
    let cms2: Api<ConfigMap> = Api::default_namespaced(client2);
    assert!(
        cms2.get("before").await.is_ok(),
        "data survived the restart"
    );
    cms2.create(&PostParams::default(), &mk("after"))
        .await
        .expect("create after restart");
    wait_for(&mut rx, "after")
        .await
        .expect("the watcher saw an object created after the restart");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_semantics() {
    let s = Server::start();
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mk = |name: &str, app: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            ..Default::default()
        },
        ..Default::default()
    };
    for (i, app) in ["a", "a", "b", "c", "a"].iter().enumerate() {
        cms.create(&PostParams::default(), &mk(&format!("p{i}"), app))
            .await
            .expect("create");
    }
    // Errors carry the reason kube-rs and controllers branch on.
    let err = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("unexpected error {other}"),
    };
    assert_eq!(
        err(cms.get("nope").await.expect_err("missing")),
        (404, "NotFound".into())
    );
    assert_eq!(
        err(cms
            .create(&PostParams::default(), &mk("p0", "a"))
            .await
            .expect_err("dup")),
        (409, "AlreadyExists".into())
    );
    let mut stale = cms.get("p0").await.expect("get");
    cms.patch(
        "p0",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"x": "1"}})),
    )
    .await
    .expect("patch");
    stale.data = Some(BTreeMap::from([("y".into(), "2".into())]));
    assert_eq!(
        err(cms
            .replace("p0", &PostParams::default(), &stale)
            .await
            .expect_err("stale")),
        (409, "Conflict".into())
    );
    assert_eq!(
        err(cms
            .create(&PostParams::default(), &mk("Bad_Name", "a"))
            .await
            .expect_err("invalid")),
        (422, "Invalid".into())
    );

    // The namespace's CA ConfigMap (made by the server) is there too.
    eventually("kube-root-ca.crt", || async {
        cms.get_opt("kube-root-ca.crt")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    // Paging: limit and continue cover every item once.
    let page1 = cms
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 2);
    let token = page1.metadata.continue_.clone().expect("continue token");
    assert_eq!(page1.metadata.remaining_item_count, Some(4));
    let page2 = cms
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("page 2");
    let page3 = cms
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(page2.metadata.continue_.as_deref().expect("token 2")),
        )
        .await
        .expect("page 3");
    assert!(page3.metadata.continue_.is_none());
    let names: Vec<String> = [page1.items, page2.items, page3.items]
        .concat()
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(
        names,
        vec!["kube-root-ca.crt", "p0", "p1", "p2", "p3", "p4"]
    );

    // Selectors.
    let sel = cms
        .list(&ListParams::default().labels("app in (a,b),app!=b"))
        .await
        .expect("labels");
    assert_eq!(sel.items.len(), 3);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=p3"))
        .await
        .expect("fields");
    assert_eq!(by_name.items.len(), 1);
    let meta = cms
        .list_metadata(&ListParams::default())
        .await
        .expect("metadata list");
    assert_eq!(meta.items.len(), 6);

    // Server-side apply through kube-rs.
    let applied = cms
        .patch(
            "applied",
            &PatchParams::apply("tester"),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"}, "data": {"k": "v"}
            })),
        )
        .await
        .expect("apply creates");
    assert_eq!(
        applied.managed_fields()[0].manager.as_deref(),
        Some("tester")
    );
    let conflict = cms
        .patch(
            "applied",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"}, "data": {"k": "other"}
            })),
        )
        .await
        .expect_err("conflict");
    assert_eq!(err(conflict), (409, "Conflict".into()));
    // Dropping a field from the applied configuration removes it.
    cms.patch(
        "applied",
        &PatchParams::apply("tester"),
        &Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "applied", "labels": {"l": "1"}}
        })),
    )
    .await
    .expect("reapply");
    let now = cms.get("applied").await.expect("get");
    assert!(now.data.is_none_or(|d| d.is_empty()), "k was removed");

    // Dry run stores nothing.
    cms.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &mk("dry", "a"),
    )
    .await
    .expect("dry create");
    assert!(cms.get_opt("dry").await.expect("get").is_none());

    // Watch from a list's revision sees changes; deletecollection deletes by selector.
    let rv = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut w = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch")
        .boxed();
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=c"),
    )
    .await
    .expect("deletecollection");
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(WatchEvent::Deleted(cm)))) => assert_eq!(cm.name_any(), "p3"),
        other => panic!("expected DELETED p3, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_is_410() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = Server::start_with(tmp.path(), "127.0.0.1:0", &["--watch-window", "5"]);
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..20 {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("c{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    let mut w = cms
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .expect("watch")
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(WatchEvent::Error(e)))) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_events_show_in_kubectl_describe() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let s = Server::start();
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("noted".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-controller".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Tested".into(),
        note: Some("hello from kube-rs".into()),
        action: "Test".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder.publish(&ev, &reference).await.expect("publish");
    recorder
        .publish(&ev, &reference)
        .await
        .expect("publish again (series patch)");
    let events_v1: Api<k8s_openapi::api::events::v1::Event> =
        Api::default_namespaced(client.clone());
    let listed = events_v1
        .list(&ListParams::default().fields("regarding.name=noted"))
        .await
        .expect("events.k8s.io list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].series.as_ref().map(|s| s.count), Some(2));
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(client);
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=noted"))
        .await
        .expect("core list");
    assert_eq!(
        listed.items[0].message.as_deref(),
        Some("hello from kube-rs")
    );
    let table = s.ok(common::KUBECTL_133, &["get", "events"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        vec!["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    assert!(table.contains("configmap/noted"), "{table}");
    let d = s.ok(common::KUBECTL_133, &["describe", "configmap", "noted"]);
    assert!(
        d.contains("Tested") && d.contains("hello from kube-rs"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher() {
    let s = Server::start();
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for name in ["s1", "s2"] {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }
    // sendInitialEvents=true: the current objects as ADDED, then a BOOKMARK ending them.
    let stream = watcher(cms.clone(), watcher::Config::default().streaming_lists());
    let mut stream = std::pin::pin!(stream);
    let mut init = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = stream.next().await {
            match ev.expect("event") {
                watcher::Event::InitApply(cm) => init.push(cm.name_any()),
                watcher::Event::InitDone => return true,
                _ => {}
            }
        }
        false
    })
    .await
    .expect("initial events ended");
    assert!(done);
    assert!(
        init.contains(&"s1".to_string()) && init.contains(&"s2".to_string()),
        "{init:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_and_orphan_propagation() {
    let s = Server::start();
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client().await);
    let mk = |name: &str, owner: Option<&ConfigMap>| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            // A controller reference that blocks its owner's foreground deletion, as
            // controllers write them (kube-rs leaves blockOwnerDeletion unset).
            owner_references: owner.map(|o| {
                let mut r = o.controller_owner_ref(&()).expect("ref");
                r.block_owner_deletion = Some(true);
                vec![r]
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let o1 = cms
        .create(&PostParams::default(), &mk("o1", None))
        .await
        .expect("o1");
    let mut held = mk("d1", Some(&o1));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.expect("d1");
    cms.delete("o1", &DeleteParams::foreground())
        .await
        .expect("delete o1");
    // The owner waits (foregroundDeletion) while its dependent is held by a finalizer.
    eventually("the dependent to be marked", || async {
        cms.get("d1")
            .await
            .is_ok_and(|d| d.metadata.deletion_timestamp.is_some())
    })
    .await;
    let o1_now = cms.get("o1").await.expect("owner still there");
    assert!(o1_now.metadata.deletion_timestamp.is_some());
    assert!(
        o1_now
            .finalizers()
            .iter()
            .any(|f| f == "foregroundDeletion")
    );
    cms.patch(
        "d1",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release d1");
    eventually("the owner to go after its dependent", || async {
        cms.get_opt("o1").await.ok().flatten().is_none()
    })
    .await;

    let o2 = cms
        .create(&PostParams::default(), &mk("o2", None))
        .await
        .expect("o2");
    cms.create(&PostParams::default(), &mk("d2", Some(&o2)))
        .await
        .expect("d2");
    cms.delete("o2", &DeleteParams::orphan())
        .await
        .expect("delete o2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d2 = cms.get("d2").await.expect("orphan kept");
    assert!(d2.metadata.owner_references.is_none_or(|r| r.is_empty()));
    assert!(cms.get_opt("o2").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_eviction() {
    use k8s_openapi::api::core::v1::Pod;
    let s = Server::start();
    let pods: Api<Pod> = Api::default_namespaced(s.client().await);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "evictee"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    pods.evict("evictee", &kube::api::EvictParams::default())
        .await
        .expect("evict");
    assert!(pods.get_opt("evictee").await.expect("get").is_none());
    let missing = pods
        .evict("evictee", &kube::api::EvictParams::default())
        .await
        .expect_err("gone");
    assert!(matches!(missing, kube::Error::Api(s) if s.code == 404));
}
