//! Object semantics of the verbs, through the store (no HTTP): generation, status subresource,
//! finalizers, pod grace periods, namespaces, generateName, no-op updates.

use std::sync::{Arc, Mutex};

use kubevirt_embedded_apiserver::ApiError;
use kubevirt_embedded_apiserver::ops::{
    self, DeleteOpts, FieldValidation, Part, PatchType, WriteCtx,
};
use kubevirt_embedded_apiserver::resources::Registry;
use kubevirt_embedded_apiserver::store::{Store, TxFn};
use serde_json::{Value, json};

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    reg: Registry,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 1000, |_| vec![]).expect("store");
    let reg = Registry::new(&kubevirt_api::crd::all());
    Env {
        _dir: dir,
        store,
        reg,
    }
}

impl Env {
    fn ctx(&self, group: &str, resource: &str, ns: &str) -> WriteCtx {
        WriteCtx {
            def: self.reg.lookup(group, "v1", resource).expect("registered"),
            version: "v1".into(),
            namespace: ns.into(),
            validation: FieldValidation::Strict,
            warnings: Arc::new(Mutex::new(Vec::new())),
            field_manager: Some("test".into()),
            applying: false,
            view: Default::default(),
        }
    }

    async fn run(&self, f: TxFn) -> Result<Value, ApiError> {
        self.store.write(f).await
    }

    async fn namespace(&self, name: &str) {
        let c = self.ctx("", "namespaces", "");
        self.run(ops::create(
            c,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        ))
        .await
        .expect("namespace");
    }

    fn get(&self, gr: &str, key: &str) -> Option<Value> {
        self.store.read().get(gr, key).and_then(|o| o.value().ok())
    }
}

fn vm(name: &str) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name},
           "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}})
}

#[tokio::test]
async fn generation_status_and_noop_updates() {
    let e = env();
    e.namespace("ns").await;
    let c = e.ctx("kubevirt.io", "virtualmachines", "ns");
    let created = e
        .run(ops::create(c.clone(), vm("a")))
        .await
        .expect("create");
    assert_eq!(created["metadata"]["generation"], 1);
    let rv1 = created["metadata"]["resourceVersion"].clone();
    // Metadata-only change: no generation bump.
    let v = e
        .run(ops::patch(
            c.clone(),
            "a".into(),
            PatchType::Merge,
            json!({"metadata": {"labels": {"x": "1"}}}),
            Part::Main,
        ))
        .await
        .expect("label");
    assert_eq!(v["metadata"]["generation"], 1);
    // Spec change bumps it; status through the main endpoint is ignored.
    let v = e
        .run(ops::patch(
            c.clone(),
            "a".into(),
            PatchType::Merge,
            json!({"spec": {"runStrategy": "Always"}, "status": {"printableStatus": "x"}}),
            Part::Main,
        ))
        .await
        .expect("spec");
    assert_eq!(v["metadata"]["generation"], 2);
    assert!(v.get("status").is_none());
    // The status subresource changes status only.
    let v = e
        .run(ops::patch(
            c.clone(),
            "a".into(),
            PatchType::Merge,
            json!({"spec": {"runStrategy": "Halted"}, "status": {"printableStatus": "Running"}}),
            Part::Status,
        ))
        .await
        .expect("status");
    assert_eq!(v["status"]["printableStatus"], "Running");
    assert_eq!(v["spec"]["runStrategy"], "Always");
    assert_eq!(v["metadata"]["generation"], 2);
    // A no-op write stores nothing (same resourceVersion).
    let before = e.store.read().rev;
    let same = e
        .run(ops::patch(
            c.clone(),
            "a".into(),
            PatchType::Merge,
            json!({"spec": {"runStrategy": "Always"}}),
            Part::Main,
        ))
        .await
        .expect("noop");
    assert_eq!(e.store.read().rev, before);
    assert_ne!(same["metadata"]["resourceVersion"], rv1);
    // A stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = rv1;
    let err = e
        .run(ops::update(c.clone(), "a".into(), stale, Part::Main))
        .await
        .expect_err("stale");
    assert_eq!((err.code, err.reason), (409, "Conflict"));
}

#[tokio::test]
async fn finalizers_and_generate_name() {
    let e = env();
    e.namespace("ns").await;
    let c = e.ctx("", "configmaps", "ns");
    let made = e
        .run(ops::create(
            c.clone(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "cm-", "finalizers": ["x/hold"]}}),
        ))
        .await
        .expect("create");
    let name = made["metadata"]["name"].as_str().expect("name").to_string();
    assert!(name.starts_with("cm-") && name.len() == 8, "{name}");
    let marked = e
        .run(ops::delete(c.clone(), name.clone(), DeleteOpts::default()))
        .await
        .expect("delete marks");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert!(e.get("configmaps", &format!("ns/{name}")).is_some());
    e.run(ops::patch(
        c.clone(),
        name.clone(),
        PatchType::Json,
        json!([{"op": "remove", "path": "/metadata/finalizers"}]),
        Part::Main,
    ))
    .await
    .expect("release");
    assert!(
        e.get("configmaps", &format!("ns/{name}")).is_none(),
        "removing the last finalizer deletes"
    );
}

#[tokio::test]
async fn pod_grace_and_terminating_namespace() {
    let e = env();
    e.namespace("ns").await;
    let pods = e.ctx("", "pods", "ns");
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"containers": [{"name": "c", "image": "x"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    e.run(ops::create(pods.clone(), pod("unbound", None)))
        .await
        .expect("create");
    e.run(ops::create(pods.clone(), pod("bound", Some("n1"))))
        .await
        .expect("create");
    e.run(ops::delete(
        pods.clone(),
        "unbound".into(),
        DeleteOpts::default(),
    ))
    .await
    .expect("delete");
    assert!(
        e.get("pods", "ns/unbound").is_none(),
        "unbound pods go at once"
    );
    let marked = e
        .run(ops::delete(
            pods.clone(),
            "bound".into(),
            DeleteOpts::default(),
        ))
        .await
        .expect("delete");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(
        e.get("pods", "ns/bound").is_some(),
        "a bound pod waits for its kubelet"
    );
    let kubelet = DeleteOpts {
        grace_period: Some(0),
        ..Default::default()
    };
    e.run(ops::delete(pods.clone(), "bound".into(), kubelet))
        .await
        .expect("kubelet delete");
    assert!(e.get("pods", "ns/bound").is_none());

    // Objects need an existing namespace, and a terminating one takes nothing new.
    let missing = e
        .run(ops::create(
            e.ctx("", "configmaps", "nope"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        ))
        .await
        .expect_err("no namespace");
    assert_eq!(missing.code, 404);
    let nsc = e.ctx("", "namespaces", "");
    let ns = e
        .run(ops::delete(nsc, "ns".into(), DeleteOpts::default()))
        .await
        .expect("delete ns");
    assert_eq!(ns["status"]["phase"], "Terminating");
    let refused = e
        .run(ops::create(
            e.ctx("", "configmaps", "ns"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        ))
        .await
        .expect_err("terminating");
    assert_eq!((refused.code, refused.reason), (403, "Forbidden"));
}

#[tokio::test]
async fn schema_checks_prune_and_defaults() {
    let e = env();
    e.namespace("ns").await;
    let mut c = e.ctx("kubevirt.io", "virtualmachines", "ns");
    let mut bad = vm("bad");
    bad["spec"]["runStrategy"] = json!(7);
    let err = e.run(ops::create(c.clone(), bad)).await.expect_err("type");
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    let mut unknown = vm("unknown");
    unknown["spec"]["bogus"] = json!(1);
    let err = e
        .run(ops::create(c.clone(), unknown.clone()))
        .await
        .expect_err("strict");
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains("unknown field \"spec.bogus\""),
        "{}",
        err.message
    );
    c.validation = FieldValidation::Warn;
    let stored = e.run(ops::create(c.clone(), unknown)).await.expect("warn");
    assert!(stored["spec"].get("bogus").is_none(), "pruned");
    assert_eq!(
        c.warnings.lock().map(|w| w.clone()).unwrap_or_default(),
        vec!["unknown field \"spec.bogus\"".to_string()]
    );
}

#[tokio::test]
async fn services_keep_their_address_and_node_ports_across_updates() {
    let e = env();
    e.namespace("ns").await;
    let c = e.ctx("", "services", "ns");
    let svc = |name: &str, ty: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"type": ty, "ports": [{"name": "ssh", "port": 22}]}})
    };
    let a = e
        .run(ops::create(c.clone(), svc("a", "ClusterIP")))
        .await
        .expect("create a");
    let ip = a["spec"]["clusterIP"].clone();
    assert!(a["spec"]["ports"][0].get("nodePort").is_none());
    // A replace that leaves the address out keeps it (kubectl replace of a hand-written file).
    let a = e
        .run(ops::update(
            c.clone(),
            "a".into(),
            svc("a", "ClusterIP"),
            Part::Main,
        ))
        .await
        .expect("replace");
    assert_eq!(a["spec"]["clusterIP"], ip);
    // Becoming NodePort allocates a node port; another NodePort service gets the next one.
    let a = e
        .run(ops::patch(
            c.clone(),
            "a".into(),
            PatchType::Merge,
            json!({"spec": {"type": "NodePort"}}),
            Part::Main,
        ))
        .await
        .expect("to NodePort");
    assert_eq!(a["spec"]["ports"][0]["nodePort"], 30000);
    let b = e
        .run(ops::create(c.clone(), svc("b", "NodePort")))
        .await
        .expect("create b");
    assert_eq!(b["spec"]["ports"][0]["nodePort"], 30001);
    // A replace without node ports keeps each port's own.
    let a = e
        .run(ops::update(
            c.clone(),
            "a".into(),
            svc("a", "NodePort"),
            Part::Main,
        ))
        .await
        .expect("replace NodePort");
    assert_eq!(a["spec"]["ports"][0]["nodePort"], 30000);
    assert_eq!(a["spec"]["clusterIP"], ip);
    // Another service's node port is refused; so is a new cluster IP.
    let mut taken = svc("a", "NodePort");
    taken["spec"]["ports"][0]["nodePort"] = json!(30001);
    let err = e
        .run(ops::update(c.clone(), "a".into(), taken, Part::Main))
        .await
        .expect_err("taken");
    assert!(
        format!("{err:?}").contains("spec.ports[0].nodePort"),
        "{err:?}"
    );
    let mut moved = svc("a", "NodePort");
    moved["spec"]["clusterIP"] = json!("10.96.9.9");
    let err = e
        .run(ops::update(c.clone(), "a".into(), moved, Part::Main))
        .await
        .expect_err("immutable");
    assert!(format!("{err:?}").contains("spec.clusterIPs[0]"), "{err:?}");
    // Back to ClusterIP: the node port is released and can be taken by another service.
    let a = e
        .run(ops::patch(
            c.clone(),
            "a".into(),
            PatchType::Merge,
            json!({"spec": {"type": "ClusterIP"}}),
            Part::Main,
        ))
        .await
        .expect("to ClusterIP");
    assert!(a["spec"]["ports"][0].get("nodePort").is_none(), "{a}");
    let mut wants = svc("c", "NodePort");
    wants["spec"]["ports"][0]["nodePort"] = json!(30000);
    e.run(ops::create(c.clone(), wants))
        .await
        .expect("30000 is free again");
}
