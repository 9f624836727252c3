//! The in-server controllers a real control plane runs next to the API server: the initial
//! namespaces, namespace termination (delete the contents, then the namespace), CRD cleanup
//! (delete the custom resources, then the definition) and each namespace's `default`
//! ServiceAccount.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{ApiError, Error};
use crate::ops::{self, DeleteOpts, FieldValidation, WriteCtx};
use crate::resources::ResourceDef;
use crate::server::App;
use crate::store::object_key;

/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// The ClusterIP of the `kubernetes` Service (the first address of the service range).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// Namespaces that exist from the start.
pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The write context of the server's own controllers.
pub fn system_ctx(def: Arc<ResourceDef>, namespace: &str) -> WriteCtx {
    ctx(def, namespace)
}

fn ctx(def: Arc<ResourceDef>, namespace: &str) -> WriteCtx {
    WriteCtx {
        version: def.storage_version().to_string(),
        def,
        namespace: namespace.to_string(),
        validation: FieldValidation::Ignore,
        warnings: Arc::new(Mutex::new(Vec::new())),
        field_manager: Some("kube-controller-manager".into()),
        applying: false,
        view: crate::convert::View::Native,
    }
}

fn def(app: &App, group: &str, resource: &str) -> Result<Arc<ResourceDef>, ApiError> {
    app.registry()
        .lookup(group, "v1", resource)
        .ok_or_else(|| ApiError::internal(format!("{resource} not registered")))
}

/// Creates the initial namespaces when missing.
pub async fn bootstrap(app: &Arc<App>) -> Result<(), Error> {
    let nsdef = def(app, "", "namespaces")?;
    for ns in INITIAL_NAMESPACES {
        if app
            .store
            .read()
            .get(ops::NAMESPACES, &object_key("", ns))
            .is_some()
        {
            continue;
        }
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match app
            .store
            .write(ops::create(ctx(nsdef.clone(), ""), obj))
            .await
        {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e.into()),
        }
    }
    bootstrap_rbac(app).await?;
    // The `kubernetes` Service and its Endpoints (the port may change between starts).
    let port: u16 = app
        .address()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(6443);
    let host = app
        .address()
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let svcdef = def(app, "", "services")?;
    let epdef = def(app, "", "endpoints")?;
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP,
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}});
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    for (d, obj) in [(svcdef, svc), (epdef, ep)] {
        let exists = app
            .store
            .read()
            .get(&d.gr(), &object_key("default", "kubernetes"))
            .is_some();
        let c = ctx(d, "default");
        let f = if exists {
            ops::update(c, "kubernetes".into(), obj, ops::Part::Main)
        } else {
            ops::create(c, obj)
        };
        app.store.write(f).await?;
    }
    Ok(())
}

/// Creates the bootstrap RBAC objects, and puts back those marked for auto-update.
async fn bootstrap_rbac(app: &Arc<App>) -> Result<(), Error> {
    for obj in crate::bootstrap::objects() {
        let kind = obj["kind"].as_str().unwrap_or_default();
        let resource = if kind == "ClusterRole" {
            "clusterroles"
        } else {
            "clusterrolebindings"
        };
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let d = def(app, "rbac.authorization.k8s.io", resource)?;
        let existing = app
            .store
            .read()
            .get(&d.gr(), &object_key("", &name))
            .and_then(|o| o.value().ok());
        let f = match existing {
            None => ops::create(ctx(d, ""), obj),
            Some(cur) => {
                let auto = cur
                    .pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate")
                    .and_then(Value::as_str)
                    != Some("false");
                // Aggregated roles keep the rules the aggregation wrote.
                let mut want = obj.clone();
                if want.get("aggregationRule").is_some() {
                    want["rules"] = cur.get("rules").cloned().unwrap_or_else(|| json!([]));
                }
                let same = ["rules", "roleRef", "subjects", "aggregationRule"]
                    .iter()
                    .all(|k| cur.get(*k) == want.get(*k));
                if !auto || same {
                    continue;
                }
                ops::update(ctx(d, ""), name, want, ops::Part::Main)
            }
        };
        app.store.write(f).await?;
    }
    aggregate_cluster_roles(app).await?;
    Ok(())
}

/// Writes the composed rules of aggregated ClusterRoles that changed.
async fn aggregate_cluster_roles(app: &Arc<App>) -> Result<(), ApiError> {
    let gr = "clusterroles.rbac.authorization.k8s.io";
    let roles: Vec<Value> = app
        .store
        .read()
        .objects
        .get(gr)
        .map(|m| m.values().filter_map(|o| o.value().ok()).collect())
        .unwrap_or_default();
    let changes = crate::rbac::aggregate(&roles);
    if changes.is_empty() {
        return Ok(());
    }
    let Some(d) = app.registry().by_gr(gr) else {
        return Ok(());
    };
    for (name, rules) in changes {
        let Some(mut cur) = roles
            .iter()
            .find(|r| crate::meta::meta_str(r, "name") == Some(name.as_str()))
            .cloned()
        else {
            continue;
        };
        cur["rules"] = json!(rules);
        if let Some(m) = crate::meta::metadata_mut(&mut cur) {
            m.remove("resourceVersion");
        }
        match app
            .store
            .write(ops::update(
                ctx(d.clone(), ""),
                name.clone(),
                cur,
                ops::Part::Main,
            ))
            .await
        {
            Ok(_) => tracing::info!(clusterrole = %name, "aggregated ClusterRole rules updated"),
            Err(e) if matches!(e.reason, "NotFound" | "Conflict") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs the controllers until the store shuts down.
pub async fn run(app: Arc<App>) {
    let mut changes = app.store.subscribe();
    let mut seen: Option<u64> = None;
    loop {
        // Garbage collection scans every object, so it runs only when something it cares about
        // happened since the last pass: a deletion, or an object with owners written.
        let gc = {
            let cache = app.store.read();
            let needed = match seen.map(|rev| cache.events_after(rev)) {
                Some(Ok(events)) => events.iter().any(|e| {
                    e.kind == crate::store::EventType::Deleted
                        || !e.obj.owners.is_empty()
                        || e.obj.deleting
                }),
                _ => true,
            };
            seen = Some(cache.rev);
            needed
        };
        if let Err(e) = reconcile(&app, gc).await {
            tracing::warn!(error = %e, "controller pass failed");
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // Let a burst of writes settle into one pass.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An object to garbage-collect.
struct Orphan {
    gr: String,
    namespace: String,
    name: String,
    uid: String,
    /// Deleted in the foreground too: an owner of it is being deleted in the foreground and it
    /// has dependents of its own (as upstream's collector cascades foreground deletions).
    foreground: bool,
}

struct Snapshot {
    terminating: Vec<String>,
    crds_deleting: Vec<Value>,
    missing_sa: Vec<String>,
    missing_ca: Vec<String>,
    /// Objects whose every owner is gone (or being deleted in the foreground).
    orphans: Vec<Orphan>,
    /// (storage name, namespace, name) of foreground deletions whose dependents are gone.
    foreground_done: Vec<(String, String, String)>,
}

fn snapshot(app: &App, gc: bool) -> Snapshot {
    let cache = app.store.read();
    let mut s = Snapshot {
        terminating: Vec::new(),
        crds_deleting: Vec::new(),
        missing_sa: Vec::new(),
        missing_ca: Vec::new(),
        orphans: Vec::new(),
        foreground_done: Vec::new(),
    };
    if let Some(nss) = cache.objects.get(ops::NAMESPACES) {
        for o in nss.values() {
            if o.deleting {
                s.terminating.push(o.name.clone());
            } else {
                if cache
                    .get("serviceaccounts", &object_key(&o.name, "default"))
                    .is_none()
                {
                    s.missing_sa.push(o.name.clone());
                }
                if cache
                    .get("configmaps", &object_key(&o.name, ROOT_CA))
                    .is_none()
                {
                    s.missing_ca.push(o.name.clone());
                }
            }
        }
    }
    if let Some(crds) = cache.objects.get(ops::CRDS) {
        for o in crds.values().filter(|o| o.deleting) {
            if let Ok(v) = o.value() {
                s.crds_deleting.push(v);
            }
        }
    }
    if gc {
        // Garbage collection: an object all of whose owners are gone is deleted (background
        // propagation), as upstream's garbage collector does.
        // An owner in foreground deletion counts as gone for its dependents.
        let uids: std::collections::HashSet<&str> = cache
            .objects
            .values()
            .flat_map(|m| m.values().filter(|o| !o.foreground).map(|o| o.uid.as_str()))
            .collect();
        // Only references with blockOwnerDeletion hold an owner in foreground deletion.
        let owners_in_use: std::collections::HashSet<&str> = cache
            .objects
            .values()
            .flat_map(|m| {
                m.values()
                    .flat_map(|o| o.blocking.iter().map(String::as_str))
            })
            .collect();
        let owners_any: std::collections::HashSet<&str> = cache
            .objects
            .values()
            .flat_map(|m| m.values().flat_map(|o| o.owners.iter().map(String::as_str)))
            .collect();
        let foreground: std::collections::HashSet<&str> = cache
            .objects
            .values()
            .flat_map(|m| m.values().filter(|o| o.foreground).map(|o| o.uid.as_str()))
            .collect();
        for (gr, m) in &cache.objects {
            for o in m.values().filter(|o| o.foreground) {
                if !owners_in_use.contains(o.uid.as_str()) {
                    s.foreground_done
                        .push((gr.clone(), o.namespace.clone(), o.name.clone()));
                }
            }
        }
        for (gr, m) in &cache.objects {
            for o in m.values() {
                if !o.owners.is_empty()
                    && !o.deleting
                    && o.owners.iter().all(|u| !uids.contains(u.as_str()))
                {
                    s.orphans.push(Orphan {
                        gr: gr.clone(),
                        namespace: o.namespace.clone(),
                        name: o.name.clone(),
                        uid: o.uid.clone(),
                        foreground: owners_any.contains(o.uid.as_str())
                            && o.owners.iter().any(|u| foreground.contains(u.as_str())),
                    });
                }
            }
        }
    }
    s
}

async fn reconcile(app: &Arc<App>, gc: bool) -> Result<(), ApiError> {
    aggregate_cluster_roles(app).await?;
    let snap = snapshot(app, gc);
    for ns in snap.terminating {
        let defs: Vec<WriteCtx> = app
            .registry()
            .defs
            .iter()
            .filter(|d| d.namespaced && d.verbs.contains(&"delete"))
            .map(|d| ctx(d.clone(), &ns))
            .collect();
        let gone = app
            .store
            .write(Box::new(move |txn| {
                let prefix = format!("{ns}/");
                let mut left = 0usize;
                for c in &defs {
                    for key in txn.keys(&c.def.gr(), &prefix) {
                        let Some(o) = txn.get(&c.def.gr(), &key) else {
                            continue;
                        };
                        ops::delete_one(txn, c, &o.name.clone(), &DeleteOpts::default())?;
                        if txn.get(&c.def.gr(), &key).is_some() {
                            left += 1;
                        }
                    }
                }
                if left == 0 {
                    txn.delete(ops::NAMESPACES, &object_key("", &ns), &["status.phase"])?;
                }
                Ok(json!(left == 0))
            }))
            .await?;
        if gone == json!(true) {
            tracing::info!("namespace deleted after its contents");
        }
    }
    if !snap.orphans.is_empty() {
        let reg = app.registry();
        let work: Vec<(WriteCtx, Orphan)> = snap
            .orphans
            .into_iter()
            .filter_map(|o| reg.by_gr(&o.gr).map(|d| (ctx(d, &o.namespace), o)))
            .collect();
        let n = work.len();
        app.store
            .write(Box::new(move |txn| {
                for (c, o) in &work {
                    let (name, uid) = (&o.name, &o.uid);
                    let opts = DeleteOpts {
                        uid: Some(uid.clone()),
                        propagation: if o.foreground {
                            ops::Propagation::Foreground
                        } else {
                            ops::Propagation::Background
                        },
                        ..Default::default()
                    };
                    // Already gone or replaced by a new object of the same name: skip it.
                    match ops::delete_one(txn, c, name, &opts) {
                        Ok(_) => {}
                        Err(e) if matches!(e.reason, "NotFound" | "Conflict") => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Value::Null)
            }))
            .await?;
        tracing::info!(count = n, "garbage-collected objects whose owners are gone");
    }
    if !snap.foreground_done.is_empty() {
        let reg = app.registry();
        let work: Vec<(WriteCtx, String)> = snap
            .foreground_done
            .into_iter()
            .filter_map(|(gr, ns, name)| reg.by_gr(&gr).map(|d| (ctx(d, &ns), name)))
            .collect();
        app.store
            .write(Box::new(move |txn| {
                for (c, name) in &work {
                    match ops::remove_finalizer(txn, c, name, ops::FOREGROUND_FINALIZER) {
                        Ok(_) => {}
                        Err(e) if e.reason == "NotFound" => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Value::Null)
            }))
            .await?;
    }
    let mut registry_changed = false;
    for crd in snap.crds_deleting {
        let parsed = serde_json::from_value::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(crd.clone());
        let Ok(parsed) = parsed else { continue };
        let Some(rdef) = crate::resources::from_crd(&parsed) else {
            continue;
        };
        let rdef = Arc::new(rdef);
        let name = parsed.metadata.name.clone().unwrap_or_default();
        let removed = app
            .store
            .write(Box::new(move |txn| {
                let gr = rdef.gr();
                let mut left = 0usize;
                for key in txn.keys(&gr, "") {
                    let Some(o) = txn.get(&gr, &key) else {
                        continue;
                    };
                    let c = ctx(rdef.clone(), &o.namespace.clone());
                    ops::delete_one(txn, &c, &o.name.clone(), &DeleteOpts::default())?;
                    if txn.get(&gr, &key).is_some() {
                        left += 1;
                    }
                }
                if left == 0 {
                    txn.delete(ops::CRDS, &object_key("", &name), &[])?;
                }
                Ok(json!(left == 0))
            }))
            .await?;
        registry_changed |= removed == json!(true);
    }
    if registry_changed {
        app.refresh_registry();
    }
    if !snap.missing_ca.is_empty() {
        let cmdef = def(app, "", "configmaps")?;
        for ns in snap.missing_ca {
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": ROOT_CA}, "data": {"ca.crt": app.ca_pem}});
            match app
                .store
                .write(ops::create(ctx(cmdef.clone(), &ns), obj))
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(e.reason, "AlreadyExists" | "Forbidden" | "NotFound") => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !snap.missing_sa.is_empty() {
        let sadef = def(app, "", "serviceaccounts")?;
        for ns in snap.missing_sa {
            let obj = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            match app
                .store
                .write(ops::create(ctx(sadef.clone(), &ns), obj))
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(e.reason, "AlreadyExists" | "Forbidden" | "NotFound") => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
