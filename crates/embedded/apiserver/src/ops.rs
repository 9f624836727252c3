//! Object semantics of each verb, as closures the store runs ([`TxFn`]): create, update, patch,
//! delete, deletecollection, binding and scale. Decoding and checking request bodies is pure and
//! lives here too.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::meta::{self, meta_str, metadata_mut};
use crate::patch;
use crate::resources::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Stored, TxFn, Txn, object_key};

pub const NAMESPACES: &str = "namespaces";
pub const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";
const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// How unknown fields in a request are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn, Strict; got {other}"
            ))),
        }
    }
}

/// Warnings collected while a request runs (sent as `Warning: 299` headers).
pub type Warnings = Arc<Mutex<Vec<String>>>;

fn warn(w: &Warnings, msg: String) {
    if let Ok(mut v) = w.lock()
        && !v.contains(&msg)
    {
        v.push(msg);
    }
}

/// The parts of a request a write needs.
#[derive(Clone)]
pub struct WriteCtx {
    pub def: Arc<ResourceDef>,
    pub version: String,
    pub namespace: String,
    pub validation: FieldValidation,
    pub warnings: Warnings,
    pub field_manager: Option<String>,
    /// Set while a server-side apply runs: it records its own managedFields.
    pub applying: bool,
    /// The view the request came through (patches apply to the viewed form).
    pub view: crate::convert::View,
}

impl WriteCtx {
    fn gr(&self) -> String {
        self.def.gr()
    }
    fn sel(&self) -> Vec<&'static str> {
        self.def.selectable.clone()
    }
}

/// Parses a JSON (or, for apply patches, YAML) body.
pub fn decode(bytes: &[u8], kind: &str, yaml: bool) -> Result<Value, ApiError> {
    let v: Result<Value, String> = if yaml {
        std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_saphyr::from_str::<Value>(s).map_err(|e| e.to_string()))
    } else {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    };
    v.map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; json parse error: {e}"
        ))
    })
}

/// Checks and fills `apiVersion`/`kind` of a body sent to `def` at `version`.
pub fn check_type_meta(def: &ResourceDef, version: &str, obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): the body must be a JSON object",
            def.kind
        )));
    };
    let want = def.api_version(version);
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want && !(def.custom && av.starts_with(&format!("{}/", def.group))) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
        _ => {}
    }
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if k != def.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
        _ => {}
    }
    // Stored under the storage version (our CRDs share one schema across versions).
    m.insert(
        "apiVersion".into(),
        Value::String(def.api_version(def.storage_version())),
    );
    m.insert("kind".into(), Value::String(def.kind.clone()));
    Ok(())
}

/// Unknown-field handling per `fieldValidation`, then pruning, defaulting and schema checks.
pub fn normalize(ctx: &WriteCtx, obj: &mut Value) -> Result<(), ApiError> {
    let def = &ctx.def;
    let schema = def.version(&ctx.version).and_then(|v| v.schema.clone());
    if let Some(schema) = &schema {
        let mut unknown = prune_metadata(obj);
        unknown.extend(kubevirt_api::structural::prune(schema, obj));
        if !unknown.is_empty() {
            match ctx.validation {
                FieldValidation::Strict => {
                    let list: Vec<String> = unknown
                        .iter()
                        .map(|p| format!("unknown field \"{p}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                        list.join(", "),
                        kind = def.kind,
                        v = ctx.version
                    )));
                }
                FieldValidation::Warn => {
                    for p in unknown {
                        warn(&ctx.warnings, format!("unknown field \"{p}\""));
                    }
                }
                FieldValidation::Ignore => {}
            }
        }
        if def.custom {
            crate::schema::apply_defaults(schema, obj);
        }
    }
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let mut causes = meta_causes(def, obj);
    if def.custom
        && let Some(schema) = &schema
    {
        causes.extend(crate::schema::validate(schema, obj));
    }
    if def.gr() == CRDS {
        causes.extend(crd_causes(obj));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(def.subject(), &name, causes))
    }
}

/// Prunes `metadata` against ObjectMeta (keeping `managedFields`, whose `fieldsV1` is opaque)
/// and returns the removed paths.
fn prune_metadata(obj: &mut Value) -> Vec<String> {
    let Some(om) = crate::builtin_schema::object_meta() else {
        return Vec::new();
    };
    let Some(meta) = obj.get_mut("metadata").filter(|m| m.is_object()) else {
        return Vec::new();
    };
    let managed = meta.as_object_mut().and_then(|m| m.remove("managedFields"));
    let unknown = kubevirt_api::structural::prune(om, meta);
    if let (Some(mf), Some(m)) = (managed, meta.as_object_mut()) {
        m.insert("managedFields".into(), mf);
    }
    unknown
        .into_iter()
        .map(|p| format!("metadata.{p}"))
        .collect()
}

fn meta_causes(def: &ResourceDef, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta_str(obj, "name").unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else {
        let err = if def.gr() == NAMESPACES || def.resource == "services" {
            meta::label_error(name)
        } else if def.custom || name.contains(':') {
            // Custom resources and RBAC names allow what the path allows; we check subdomains
            // for custom resources as upstream does, and only path safety elsewhere.
            if def.custom {
                meta::subdomain_error(name)
            } else {
                None
            }
        } else {
            meta::subdomain_error(name)
        };
        if let Some(e) = err {
            causes.push(Cause::invalid(
                "metadata.name",
                format!("Invalid value: \"{name}\": {e}"),
            ));
        }
        if name.contains('/') || name == "." || name == ".." {
            causes.push(Cause::invalid(
                "metadata.name",
                format!("Invalid value: \"{name}\": may not contain '/' or be '.' or '..'"),
            ));
        }
    }
    if let Some(labels) = meta::metadata(obj).and_then(|m| m.get("labels")) {
        match labels.as_object() {
            Some(l) => {
                for (k, v) in l {
                    if let Some(e) = meta::label_key_error(k) {
                        causes.push(Cause::invalid(
                            "metadata.labels",
                            format!("Invalid value: \"{k}\": {e}"),
                        ));
                    }
                    match v.as_str() {
                        Some(s) => {
                            if let Some(e) = meta::label_value_error(s) {
                                causes.push(Cause::invalid(
                                    format!("metadata.labels.{k}"),
                                    format!("Invalid value: \"{s}\": {e}"),
                                ));
                            }
                        }
                        None => causes.push(Cause::type_invalid(
                            format!("metadata.labels.{k}"),
                            "Invalid value: label values must be strings",
                        )),
                    }
                }
            }
            None if labels.is_null() => {}
            None => causes.push(Cause::type_invalid(
                "metadata.labels",
                "must be a map of strings",
            )),
        }
    }
    if let Some(a) = meta::metadata(obj).and_then(|m| m.get("annotations"))
        && !a.is_null()
        && !a
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
    {
        causes.push(Cause::type_invalid(
            "metadata.annotations",
            "must be a map of strings",
        ));
    }
    if let Some(f) = meta::metadata(obj).and_then(|m| m.get("finalizers"))
        && !f.is_null()
        && !f.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        causes.push(Cause::type_invalid(
            "metadata.finalizers",
            "must be a list of strings",
        ));
    }
    causes
}

fn crd_causes(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta_str(obj, "name").unwrap_or_default();
    let plural = obj.pointer("/spec/names/plural").and_then(Value::as_str);
    let group = obj.pointer("/spec/group").and_then(Value::as_str);
    match (plural, group) {
        (Some(p), Some(g)) if name == format!("{p}.{g}") => {}
        (Some(p), Some(g)) => causes.push(Cause::invalid(
            "metadata.name",
            format!(
                "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group ({p}.{g})"
            ),
        )),
        _ => causes.push(Cause::required("spec.names.plural")),
    }
    if serde_json::from_value::<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    >(obj.clone())
    .is_err()
    {
        causes.push(Cause::invalid("spec", "Invalid value: not a valid CustomResourceDefinition"));
    }
    causes
}

/// The object with `metadata` and `status` removed: what `generation` tracks.
fn spec_part(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    c
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn has_generation(def: &ResourceDef, v: &Value) -> bool {
    def.custom || v.get("spec").is_some()
}

/// Server-side defaults and status a new object gets, per kind.
fn on_create(def: &ResourceDef, obj: &mut Value) {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    match def.gr().as_str() {
        NAMESPACES => {
            if let Some(m) = metadata_mut(obj) {
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        "pods" => {
            crate::defaults::pod(obj);
        }
        "persistentvolumeclaims" => crate::defaults::persistent_volume(obj, true),
        "persistentvolumes" => crate::defaults::persistent_volume(obj, false),
        CRDS => {
            let names = obj
                .pointer("/spec/names")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let storage: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage") == Some(&json!(true)))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            let now = meta::now_rfc3339();
            obj["status"] = json!({
                "acceptedNames": names,
                "storedVersions": storage,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": now},
                ],
            });
            if let Some(m) = metadata_mut(obj) {
                let f = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = f.as_array_mut()
                    && !a.iter().any(|x| x == CRD_CLEANUP_FINALIZER)
                {
                    a.push(json!(CRD_CLEANUP_FINALIZER));
                }
            }
        }
        _ => {}
    }
}

fn check_namespace(txn: &Txn<'_>, def: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
    if !def.namespaced {
        return Ok(());
    }
    let Some(n) = txn.get(NAMESPACES, &object_key("", ns)) else {
        return Err(ApiError::not_found(
            crate::error::Subject {
                group: "",
                resource: "namespaces",
                kind: "Namespace",
            },
            ns,
        ));
    };
    let nv = n.value()?;
    if nv.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::forbidden(
            def.subject(),
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

/// Create: the body has been decoded and its type meta checked.
pub fn create(ctx: WriteCtx, mut obj: Value) -> TxFn {
    Box::new(move |txn| {
        let def = ctx.def.clone();
        if let Some(m) = metadata_mut(&mut obj) {
            if def.namespaced {
                match m.get("namespace").and_then(Value::as_str) {
                    Some(ns) if !ns.is_empty() && ns != ctx.namespace => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {
                        m.insert("namespace".into(), json!(ctx.namespace));
                    }
                }
            } else {
                m.remove("namespace");
            }
            for k in [
                "uid",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(k);
            }
            m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
            m.insert("uid".into(), json!(meta::new_uid()));
            let named = m
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !named
                && let Some(prefix) = m
                    .get("generateName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            {
                // Pick a free name; five random characters make a clash rare.
                let mut chosen = None;
                for _ in 0..8 {
                    let candidate = format!("{prefix}{}", meta::name_suffix());
                    if txn
                        .get(&ctx.gr(), &object_key(&ctx.namespace_for(&def), &candidate))
                        .is_none()
                    {
                        chosen = Some(candidate);
                        break;
                    }
                }
                if let Some(c) = chosen {
                    m.insert("name".into(), json!(c));
                }
            }
        }
        if def.custom
            && def.status
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        if has_generation(&def, &obj)
            && let Some(m) = metadata_mut(&mut obj)
        {
            m.insert("generation".into(), json!(1));
        }
        on_create(&def, &mut obj);
        normalize(&ctx, &mut obj)?;
        if !ctx.applying {
            crate::apply::record_update(&ctx, None, &mut obj, Part::Main);
        }
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        check_namespace(txn, &def, &ctx.namespace, &name)?;
        let key = object_key(&ctx.namespace_for(&def), &name);
        if txn.get(&ctx.gr(), &key).is_some() {
            return Err(ApiError::already_exists(def.subject(), &name));
        }
        if def.gr() == "services" {
            crate::defaults::service(&mut obj, || allocated_to_services(txn, None))
                .map_err(|why| ApiError::invalid(def.subject(), &name, vec![why]))?;
        }
        txn.put(&ctx.gr(), obj, &ctx.sel())
    })
}

impl WriteCtx {
    fn namespace_for(&self, def: &ResourceDef) -> String {
        if def.namespaced {
            self.namespace.clone()
        } else {
            String::new()
        }
    }
}

/// A Service update as kube-apiserver treats it: the cluster IP is kept when the new object
/// leaves it out and cannot change; a port that keeps its port and protocol keeps its node port;
/// a service that becomes NodePort or LoadBalancer gets node ports for the rest.
fn service_update(
    txn: &Txn<'_>,
    ns: &str,
    name: &str,
    old: &Value,
    new: &mut Value,
) -> Result<(), crate::error::Cause> {
    let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str);
    let new_ip = new.pointer("/spec/clusterIP").and_then(Value::as_str);
    match (old_ip, new_ip) {
        (Some(o), Some(n)) if !n.is_empty() && o != n => {
            return Err(crate::error::Cause::invalid(
                "spec.clusterIPs[0]",
                format!("Invalid value: []string{{\"{n}\"}}: may not change once set"),
            ));
        }
        (Some(o), None | Some("")) => {
            if !new.get("spec").is_some_and(Value::is_object) {
                new["spec"] = json!({});
            }
            new["spec"]["clusterIP"] = json!(o);
            if let Some(ips) = old.pointer("/spec/clusterIPs") {
                new["spec"]["clusterIPs"] = ips.clone();
            }
        }
        _ => {}
    }
    let key = |p: &Value| {
        (
            p.get("port").and_then(Value::as_i64),
            p.get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string(),
        )
    };
    let exposed = matches!(
        new.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    );
    let old_ports: Vec<Value> = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut() {
            if !exposed {
                // Only NodePort and LoadBalancer services hold node ports.
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            if p.get("nodePort").is_none()
                && let Some(n) = old_ports
                    .iter()
                    .find(|o| key(o) == key(p))
                    .and_then(|o| o.get("nodePort"))
            {
                p["nodePort"] = n.clone();
            }
        }
    }
    // What every other service holds; this one's own addresses and ports are its to keep.
    let own = object_key(ns, name);
    crate::defaults::service(new, || allocated_to_services(txn, Some(&own)))
}

/// The cluster IPs and node ports services hold now, but for the service `except` (a key).
fn allocated_to_services(txn: &Txn<'_>, except: Option<&str>) -> crate::defaults::Allocated {
    let mut out = crate::defaults::Allocated::default();
    for v in txn
        .keys("services", "")
        .iter()
        .filter(|k| Some(k.as_str()) != except)
        .filter_map(|k| txn.get("services", k))
        .filter_map(|o| o.value().ok())
    {
        if let Some(ip) = v.pointer("/spec/clusterIP").and_then(Value::as_str) {
            out.cluster_ips.insert(ip.to_string());
        }
        let ports = v.pointer("/spec/ports").and_then(Value::as_array);
        out.node_ports.extend(
            ports
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64)),
        );
    }
    out
}

/// Which part of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main endpoint: everything but status (when the resource has a status subresource).
    Main,
    /// The status subresource: status only.
    Status,
}

fn stale_check(def: &ResourceDef, name: &str, cur: &Stored, new: &Value) -> Result<(), ApiError> {
    match meta_str(new, "resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != cur.rv.to_string() => {
            Err(ApiError::stale(def.subject(), name))
        }
        _ => Ok(()),
    }
}

/// Merges a candidate object into the current one per `part`, keeps what clients may not change,
/// bumps `generation`, honours finalizers, and stores the result (or nothing if nothing changed).
fn finish_update(
    txn: &mut Txn<'_>,
    ctx: &WriteCtx,
    cur: &Stored,
    mut new: Value,
    part: Part,
) -> Result<Value, ApiError> {
    let def = ctx.def.clone();
    let old = cur.value()?;
    let name = cur.name.clone();
    if let Some(n) = meta_str(&new, "name")
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if def.namespaced
        && let Some(ns) = meta_str(&new, "namespace")
        && !ns.is_empty()
        && ns != cur.namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if part == Part::Status {
        // Only status moves; everything else stays as stored.
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match (merged.as_object_mut(), status) {
            (Some(m), Some(s)) => {
                m.insert("status".into(), s);
            }
            (Some(m), None) => {
                m.remove("status");
            }
            _ => {}
        }
        new = merged;
    } else if def.status
        && let Some(m) = new.as_object_mut()
    {
        match old.get("status") {
            Some(s) => {
                m.insert("status".into(), s.clone());
            }
            None => {
                m.remove("status");
            }
        }
    }
    // Metadata the server owns.
    let old_meta = meta::metadata(&old).cloned().unwrap_or_default();
    if let Some(m) = metadata_mut(&mut new) {
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match old_meta.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
        m.remove("resourceVersion");
    }
    if def.gr() == NAMESPACES {
        // A namespace's phase is the server's.
        if let Some(p) = old.pointer("/status/phase").cloned() {
            new["status"] = json!({"phase": p});
        }
    }
    normalize(ctx, &mut new)?;
    if def.gr() == "services" && part == Part::Main {
        service_update(txn, &cur.namespace, &name, &old, &mut new)
            .map_err(|why| ApiError::invalid(def.subject(), &name, vec![why]))?;
    }
    if !ctx.applying {
        crate::apply::record_update(ctx, Some(&old), &mut new, part);
    }
    if has_generation(&def, &old) && spec_part(&old) != spec_part(&new) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        if let Some(m) = metadata_mut(&mut new) {
            m.insert("generation".into(), json!(g));
        }
    }
    let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
    if deleting
        && finalizers(&new).is_empty()
        && !pod_waits_for_kubelet(&def, &new)
        && def.gr() != NAMESPACES
    {
        let key = object_key(&cur.namespace, &name);
        let gr = ctx.gr();
        // Store the finalizer-free state first so the DELETED event carries it, then remove.
        let stored = txn.put(&gr, new, &ctx.sel())?;
        txn.delete(&gr, &key, &ctx.sel())?;
        return Ok(stored);
    }
    let mut cmp_old = old.clone();
    if let Some(m) = metadata_mut(&mut cmp_old) {
        m.remove("resourceVersion");
    }
    if cmp_old == new {
        return Ok(old);
    }
    txn.put(&ctx.gr(), new, &ctx.sel())
}

fn pod_waits_for_kubelet(def: &ResourceDef, v: &Value) -> bool {
    def.gr() == "pods"
        && v.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        && v.pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0
}

fn current(txn: &Txn<'_>, ctx: &WriteCtx, name: &str) -> Result<Arc<Stored>, ApiError> {
    txn.get(&ctx.gr(), &object_key(&ctx.namespace_for(&ctx.def), name))
        .ok_or_else(|| ApiError::not_found(ctx.def.subject(), name))
}

/// PUT to the main endpoint or the status subresource.
pub fn update(ctx: WriteCtx, name: String, new: Value, part: Part) -> TxFn {
    Box::new(move |txn| {
        let cur = current(txn, &ctx, &name)?;
        stale_check(&ctx.def, &name, &cur, &new)?;
        finish_update(txn, &ctx, &cur, new, part)
    })
}

/// The patch formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply { force: bool },
}

impl PatchType {
    pub fn from_content_type(ct: &str, force: bool) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply { force })
            }
            _ => None,
        }
    }
}

fn patch_failed(e: String) -> ApiError {
    ApiError::new(422, "Invalid", e)
}

/// PATCH of the main endpoint or the status subresource. Apply patches create missing objects.
pub fn patch(ctx: WriteCtx, name: String, ty: PatchType, body: Value, part: Part) -> TxFn {
    Box::new(move |txn| {
        let key = object_key(&ctx.namespace_for(&ctx.def), &name);
        let Some(cur) = txn.get(&ctx.gr(), &key) else {
            if let PatchType::Apply { .. } = ty {
                let mut obj = crate::convert::from_view(ctx.view, body.clone());
                check_type_meta(&ctx.def, &ctx.version, &mut obj)?;
                if let Some(m) = metadata_mut(&mut obj) {
                    m.insert("name".into(), json!(name));
                }
                crate::apply::record_apply(&ctx, &mut obj, &body, None);
                let mut c = ctx.clone();
                c.applying = true;
                return create(c, obj)(txn);
            }
            return Err(ApiError::not_found(ctx.def.subject(), &name));
        };
        let old = cur.value()?;
        let viewed = crate::convert::to_view(ctx.view, old.clone());
        let new = match ty {
            PatchType::Merge => {
                let mut n = viewed;
                patch::merge_patch(&mut n, &body);
                crate::convert::from_view(ctx.view, n)
            }
            PatchType::Json => crate::convert::from_view(
                ctx.view,
                patch::json_patch(&viewed, &body).map_err(patch_failed)?,
            ),
            PatchType::Strategic => {
                let mut n = viewed;
                patch::strategic_merge(&ctx.def.kind, &mut n, &body).map_err(patch_failed)?;
                crate::convert::from_view(ctx.view, n)
            }
            PatchType::Apply { force } => {
                let cfg = crate::convert::from_view(ctx.view, body.clone());
                crate::apply::apply(&ctx, &old, &cfg, force, part)?
            }
        };
        let mut ctx = ctx.clone();
        ctx.applying = matches!(ty, PatchType::Apply { .. });
        if !new.is_object() {
            return Err(patch_failed("the patch result is not an object".into()));
        }
        stale_check(&ctx.def, &name, &cur, &new)?;
        finish_update(txn, &ctx, &cur, new, part)
    })
}

/// `DeleteOptions` fields we act on.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub propagation: Propagation,
}

/// What happens to the dependents (objects listing this one in `ownerReferences`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The object goes now; the garbage collector deletes the dependents afterwards.
    #[default]
    Background,
    /// The object stays (finalizer `foregroundDeletion`) until its dependents are gone.
    Foreground,
    /// The dependents lose their reference to the object and stay.
    Orphan,
}

/// The finalizer that holds an owner during foreground deletion.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

impl DeleteOpts {
    pub fn from_body(body: &[u8], query_grace: Option<i64>) -> Result<DeleteOpts, ApiError> {
        let mut o = DeleteOpts {
            grace_period: query_grace,
            ..Default::default()
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(o);
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_period = Some(g);
        }
        o.uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.propagation = match v.get("propagationPolicy").and_then(Value::as_str) {
            Some("Foreground") => Propagation::Foreground,
            Some("Orphan") => Propagation::Orphan,
            Some("Background") | None => {
                if v.get("orphanDependents") == Some(&Value::Bool(true)) {
                    Propagation::Orphan
                } else {
                    Propagation::Background
                }
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        };
        Ok(o)
    }
}

fn success_status(def: &ResourceDef, name: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "kind": def.resource});
    if !def.group.is_empty() {
        details["group"] = json!(def.group);
    }
    if let Some(u) = uid {
        details["uid"] = json!(u);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// Deletes (or marks for deletion) one object; returns the marked object or a Success Status.
pub fn delete_one(
    txn: &mut Txn<'_>,
    ctx: &WriteCtx,
    name: &str,
    opts: &DeleteOpts,
) -> Result<Value, ApiError> {
    let def = ctx.def.clone();
    let cur = current(txn, ctx, name)?;
    let mut obj = cur.value()?;
    let uid = meta_str(&obj, "uid").map(str::to_string);
    if let Some(want) = &opts.uid
        && uid.as_deref() != Some(want.as_str())
    {
        return Err(ApiError::conflict(
            def.subject(),
            name,
            &format!(
                "Precondition failed: UID in precondition: {want}, UID in object meta: {}",
                uid.clone().unwrap_or_default()
            ),
        ));
    }
    if let Some(want) = &opts.resource_version
        && *want != cur.rv.to_string()
    {
        return Err(ApiError::conflict(
            def.subject(),
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                cur.rv
            ),
        ));
    }
    let key = object_key(&cur.namespace, name);
    let is_pod = def.gr() == "pods";
    let already = obj.pointer("/metadata/deletionTimestamp").is_some();
    let fins = finalizers(&obj);
    let grace = if is_pod {
        let bound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            obj.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !bound || terminal {
            0
        } else {
            opts.grace_period
                .or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30)
                .max(0)
        }
    } else {
        0
    };
    if already {
        // A second delete only shortens a pod's grace period.
        if is_pod && grace == 0 && fins.is_empty() {
            txn.delete(&ctx.gr(), &key, &ctx.sel())?;
            return Ok(success_status(&def, name, uid.as_deref()));
        }
        return Ok(obj);
    }
    let namespace = def.gr() == NAMESPACES;
    let mut fins = fins;
    match opts.propagation {
        Propagation::Orphan => {
            if let Some(u) = &uid {
                orphan_dependents(txn, u)?;
            }
        }
        Propagation::Foreground if !namespace => {
            fins.push(FOREGROUND_FINALIZER.to_string());
            if let Some(m) = metadata_mut(&mut obj) {
                m.insert("finalizers".into(), json!(fins));
            }
        }
        _ => {}
    }
    if !fins.is_empty() || grace > 0 || namespace {
        let when = meta::format_time(meta::now_seconds() + grace);
        if let Some(m) = metadata_mut(&mut obj) {
            m.insert("deletionTimestamp".into(), json!(when));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if let Some(g) = m.get("generation").and_then(Value::as_i64) {
                m.insert("generation".into(), json!(g + 1));
            }
        }
        if namespace {
            obj["status"] = json!({"phase": "Terminating"});
        }
        return txn.put(&ctx.gr(), obj, &ctx.sel());
    }
    txn.delete(&ctx.gr(), &key, &ctx.sel())?;
    Ok(success_status(&def, name, uid.as_deref()))
}

/// Removes references to owner `uid` from every object (Orphan propagation).
fn orphan_dependents(txn: &mut Txn<'_>, uid: &str) -> Result<(), ApiError> {
    for gr in txn.resources() {
        for key in txn.keys(&gr, "") {
            let Some(o) = txn.get(&gr, &key) else {
                continue;
            };
            if !o.owners.iter().any(|x| x == uid) {
                continue;
            }
            let mut v = o.value()?;
            if let Some(m) = metadata_mut(&mut v) {
                let kept: Vec<Value> = m
                    .get("ownerReferences")
                    .and_then(Value::as_array)
                    .map(|refs| {
                        refs.iter()
                            .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                if kept.is_empty() {
                    m.remove("ownerReferences");
                } else {
                    m.insert("ownerReferences".into(), Value::Array(kept));
                }
            }
            txn.put(&gr, v, &crate::resources::selectable_for_gr(&gr))?;
        }
    }
    Ok(())
}

/// Removes one finalizer (the garbage collector ending a foreground deletion); the object goes
/// when it was the last one.
pub fn remove_finalizer(
    txn: &mut Txn<'_>,
    ctx: &WriteCtx,
    name: &str,
    finalizer: &str,
) -> Result<Value, ApiError> {
    let cur = current(txn, ctx, name)?;
    let mut obj = cur.value()?;
    let kept: Vec<String> = finalizers(&obj)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    if let Some(m) = metadata_mut(&mut obj) {
        if kept.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), json!(kept));
        }
    }
    finish_update(txn, ctx, &cur, obj, Part::Main)
}

pub fn delete(ctx: WriteCtx, name: String, opts: DeleteOpts) -> TxFn {
    Box::new(move |txn| delete_one(txn, &ctx, &name, &opts))
}

/// Deletes every object of the collection that matches the selectors; returns them as a list.
pub fn delete_collection(
    ctx: WriteCtx,
    labels: LabelSelector,
    fields: FieldSelector,
    opts: DeleteOpts,
) -> TxFn {
    Box::new(move |txn| {
        let prefix = if ctx.def.namespaced && !ctx.namespace.is_empty() {
            format!("{}/", ctx.namespace)
        } else {
            String::new()
        };
        let mut items = Vec::new();
        for key in txn.keys(&ctx.gr(), &prefix) {
            let Some(o) = txn.get(&ctx.gr(), &key) else {
                continue;
            };
            if !labels.matches(&o.labels) || !fields.matches(|f| o.field(f)) {
                continue;
            }
            let name = o.name.clone();
            let out = delete_one(txn, &ctx, &name, &opts)?;
            if out.get("kind").and_then(Value::as_str) == Some("Status") {
                items.push(o.value()?);
            } else {
                items.push(out);
            }
        }
        Ok(
            json!({"kind": ctx.def.list_kind(), "apiVersion": ctx.def.api_version(&ctx.version),
                  "metadata": {}, "items": items}),
        )
    })
}

/// `pods/<name>/binding`: assigns the pod to a node once.
pub fn bind(ctx: WriteCtx, name: String, binding: Value) -> TxFn {
    Box::new(move |txn| {
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    ctx.def.subject(),
                    &name,
                    vec![Cause::required("target.name")],
                )
            })?
            .to_string();
        let cur = current(txn, &ctx, &name)?;
        let mut pod = cur.value()?;
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                ctx.def.subject(),
                &name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(n) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                ctx.def.subject(),
                &name,
                &format!("pod {name} is already assigned to node \"{n}\""),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let conds = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conds: Vec<Value> = conds
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conds.push(
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                          "lastTransitionTime": meta::now_rfc3339()}),
        );
        pod["status"]["conditions"] = Value::Array(conds);
        txn.put(&ctx.gr(), pod, &ctx.sel())?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    })
}

fn path_tokens(p: &str) -> Vec<String> {
    p.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn get_path<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    let mut cur = v;
    for t in path_tokens(p) {
        cur = cur.get(&t)?;
    }
    Some(cur)
}

fn set_path(v: &mut Value, p: &str, x: Value) {
    let toks = path_tokens(p);
    let mut cur = v;
    for (i, t) in toks.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i + 1 == toks.len() {
            m.insert(t.clone(), x);
            return;
        }
        cur = m.entry(t.clone()).or_insert_with(|| json!({}));
    }
}

/// The `autoscaling/v1` Scale view of an object.
pub fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
    let Some(s) = &def.scale else {
        return json!({});
    };
    let m = meta::metadata(obj).cloned().unwrap_or_default();
    let mut meta_out = Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            meta_out.insert(k.into(), v.clone());
        }
    }
    let mut out = json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta_out,
        "spec": {"replicas": get_path(obj, &s.spec_replicas_path).cloned().unwrap_or(json!(0))},
        "status": {"replicas": get_path(obj, &s.status_replicas_path).cloned().unwrap_or(json!(0))},
    });
    if let Some(sel) = s
        .label_selector_path
        .as_deref()
        .and_then(|p| get_path(obj, p))
    {
        out["status"]["selector"] = sel.clone();
    }
    out
}

/// PUT/PATCH of the scale subresource: only the desired replica count changes.
pub fn update_scale(
    ctx: WriteCtx,
    name: String,
    patch_type: Option<PatchType>,
    body: Value,
) -> TxFn {
    Box::new(move |txn| {
        let def = ctx.def.clone();
        let Some(s) = def.scale.clone() else {
            return Err(ApiError::path_not_found("scale"));
        };
        let cur = current(txn, &ctx, &name)?;
        let obj = cur.value()?;
        let mut scale = scale_of(&def, &obj);
        match patch_type {
            None => scale = body.clone(),
            Some(PatchType::Json) => {
                scale = patch::json_patch(&scale, &body).map_err(patch_failed)?
            }
            Some(_) => patch::merge_patch(&mut scale, &body),
        }
        if let Some(rv) = meta_str(&scale, "resourceVersion")
            && rv != cur.rv.to_string()
        {
            return Err(ApiError::stale(def.subject(), &name));
        }
        let Some(replicas) = scale.pointer("/spec/replicas").and_then(Value::as_i64) else {
            return Err(ApiError::invalid(
                def.subject(),
                &name,
                vec![Cause::required("spec.replicas")],
            ));
        };
        let mut new = obj.clone();
        set_path(&mut new, &s.spec_replicas_path, json!(replicas));
        let stored = finish_update(txn, &ctx, &cur, new, Part::Main)?;
        Ok(scale_of(&def, &stored))
    })
}

/// Whether a stored object matches list/watch selectors.
pub fn matches(o: &Stored, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    labels.matches(&o.labels) && fields.matches(|f| o.field(f))
}

#[cfg(test)]
mod deep_tests {
    #[test]
    fn deeply_nested_yaml_is_refused_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let r = super::decode(deep.as_bytes(), "ConfigMap", true);
        assert!(r.is_err());
        let deep = format!("{}1{}", "{a: ".repeat(100_000), "}".repeat(100_000));
        assert!(super::decode(deep.as_bytes(), "ConfigMap", true).is_err());
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(super::decode(deep.as_bytes(), "ConfigMap", false).is_err());
    }
}
