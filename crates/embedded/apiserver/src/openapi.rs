//! OpenAPI v3 (pure): one document per group-version with the resources' operations (tagged
//! `x-kubernetes-group-version-kind`, with the `fieldValidation` parameter `kubectl apply` looks
//! for) and their schemas, plus the index of documents with content hashes.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};

use crate::resources::{Registry, ResourceDef};

/// The schema name of a kind: `io.k8s.api.core.v1.Pod`, `io.kubevirt.v1.VirtualMachine`.
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let g = match group {
        "" => "io.k8s.api.core".to_string(),
        "apiextensions.k8s.io" => "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".into(),
        "apiregistration.k8s.io" => "io.k8s.kube-aggregator.pkg.apis.apiregistration".into(),
        g if g.ends_with(".k8s.io") => {
            format!(
                "io.k8s.api.{}",
                g.trim_end_matches(".k8s.io").split('.').next().unwrap_or(g)
            )
        }
        "apps" | "batch" | "autoscaling" | "policy" => format!("io.k8s.api.{group}"),
        g => g.split('.').rev().collect::<Vec<_>>().join("."),
    };
    format!("{g}.{version}.{kind}")
}

/// The document path of a group-version: `api/v1`, `apis/kubevirt.io/v1`.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn op(
    action: &str,
    gvk: &Value,
    schema_ref: &str,
    extra: Vec<Value>,
    id: &str,
    custom: bool,
) -> Value {
    let mut params = vec![
        param(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted.",
        ),
        param(
            "fieldManager",
            "query",
            "A name associated with the actor or entity that is making these changes.",
        ),
    ];
    params.extend(extra);
    let ok = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}});
    let mut o = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "responses": {"200": ok},
    });
    if matches!(
        action,
        "post" | "put" | "patch" | "delete" | "deletecollection"
    ) {
        o["parameters"] = Value::Array(params);
    }
    if matches!(action, "post" | "put") {
        o["requestBody"] = json!({"content": {"*/*": {"schema": {"$ref": schema_ref}}}});
    }
    if action == "patch" {
        // kubectl apply computes a strategic merge patch only when the operation lists that
        // media type, which custom resources must not (they answer it with 415).
        let mut content = json!({
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        });
        if !custom {
            content["application/strategic-merge-patch+json"] =
                json!({"schema": {"type": "object"}});
        }
        o["requestBody"] = json!({"content": content});
    }
    o
}

fn with_gvk(schema: &Value, gvk: &Value) -> Value {
    let mut s = schema.clone();
    if let Value::Object(m) = &mut s {
        m.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
    }
    s
}

fn paths_for(
    d: &ResourceDef,
    version: &str,
    paths: &mut BTreeMap<String, Value>,
    schema_ref: &str,
) {
    let gvk = json!({"group": d.group, "version": version, "kind": d.kind});
    let base = format!("/{}", gv_path(&d.group, version));
    let coll = if d.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", d.resource)
    } else {
        format!("{base}/{}", d.resource)
    };
    let fv = param(
        "fieldValidation",
        "query",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
    );
    let mut path_params = vec![];
    if d.namespaced {
        path_params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}));
    }
    let kind = &d.kind;
    let mut collection = json!({
        "get": op("list", &gvk, schema_ref, vec![], &format!("list{kind}"), d.custom),
        "post": op("post", &gvk, schema_ref, vec![fv.clone()], &format!("create{kind}"), d.custom),
        "delete": op("deletecollection", &gvk, schema_ref, vec![], &format!("deletecollection{kind}"), d.custom),
    });
    collection["parameters"] = json!(path_params);
    paths.insert(coll.clone(), collection);
    let mut item_params = path_params.clone();
    item_params.push(
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}),
    );
    let mut item = json!({
        "get": op("get", &gvk, schema_ref, vec![], &format!("read{kind}"), d.custom),
        "put": op("put", &gvk, schema_ref, vec![fv.clone()], &format!("replace{kind}"), d.custom),
        "patch": op("patch", &gvk, schema_ref, vec![fv.clone(), param("force", "query", "Force is going to \"force\" Apply requests.")], &format!("patch{kind}"), d.custom),
        "delete": op("delete", &gvk, schema_ref, vec![], &format!("delete{kind}"), d.custom),
    });
    item["parameters"] = json!(item_params.clone());
    paths.insert(format!("{coll}/{{name}}"), item);
    if d.status {
        let mut st = json!({
            "get": op("get", &gvk, schema_ref, vec![], &format!("read{kind}Status"), d.custom),
            "put": op("put", &gvk, schema_ref, vec![fv.clone()], &format!("replace{kind}Status"), d.custom),
            "patch": op("patch", &gvk, schema_ref, vec![fv], &format!("patch{kind}Status"), d.custom),
        });
        st["parameters"] = json!(item_params);
        paths.insert(format!("{coll}/{{name}}/status"), st);
    }
}

/// The OpenAPI v3 document of one group-version, or None when nothing is served there.
pub fn document(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = reg.resources_in(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut paths = BTreeMap::new();
    let mut schemas = serde_json::Map::new();
    for d in defs {
        let Some(v) = d.version(version) else {
            continue;
        };
        let name = schema_name(&d.group, version, &d.kind);
        let schema_ref = format!("#/components/schemas/{name}");
        paths_for(&d, version, &mut paths, &schema_ref);
        let gvk = json!({"group": d.group, "version": version, "kind": d.kind});
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| serde_json::to_value(s.as_ref()).ok())
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        let mut schema = with_gvk(&schema, &gvk);
        if let (Some(props), Some(om)) = (
            schema.get_mut("properties").and_then(Value::as_object_mut),
            crate::builtin_schema::object_meta().and_then(|m| serde_json::to_value(m).ok()),
        ) {
            let mut om = om;
            om["description"] = json!("Standard object's metadata.");
            props.insert("metadata".into(), om);
        }
        schemas.insert(name, schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::version::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// A stable content hash (upper-case hex) for cache-busting URLs and ETags.
pub fn content_hash(bytes: &[u8]) -> String {
    // Two differently seeded SipHash runs give 128 bits; collisions only cost a stale cache.
    let mut out = String::new();
    for seed in [0u64, 0x9e37_79b9_7f4a_7c15] {
        let mut h = std::hash::DefaultHasher::new();
        seed.hash(&mut h);
        bytes.hash(&mut h);
        out.push_str(&format!("{:016X}", h.finish()));
    }
    out
}

/// Every group-version document, rendered, with its hash.
pub struct Documents {
    pub docs: BTreeMap<String, (String, Vec<u8>)>,
}

impl Documents {
    pub fn build(reg: &Registry) -> Documents {
        let mut docs = BTreeMap::new();
        for (group, versions) in reg.groups() {
            for v in versions {
                if let Some(doc) = document(reg, &group, &v) {
                    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                    docs.insert(gv_path(&group, &v), (content_hash(&bytes), bytes));
                }
            }
        }
        Documents { docs }
    }

    pub fn index(&self) -> Value {
        let paths: serde_json::Map<String, Value> = self
            .docs
            .iter()
            .map(|(p, (h, _))| {
                (
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
                )
            })
            .collect();
        json!({"paths": paths})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(schema_name("", "v1", "Pod"), "io.k8s.api.core.v1.Pod");
        assert_eq!(
            schema_name("kubevirt.io", "v1", "VirtualMachine"),
            "io.kubevirt.v1.VirtualMachine"
        );
        assert_eq!(
            schema_name("coordination.k8s.io", "v1", "Lease"),
            "io.k8s.api.coordination.v1.Lease"
        );
    }

    #[test]
    fn vm_document_has_gvk_and_field_validation() {
        let reg = Registry::new(&kubevirt_api::crd::all());
        let doc = document(&reg, "kubevirt.io", "v1").expect("doc");
        let p = &doc["paths"]["/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}"]
            ["patch"];
        assert_eq!(
            p["x-kubernetes-group-version-kind"]["kind"],
            "VirtualMachine"
        );
        assert!(
            p["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|x| x["name"] == "fieldValidation"))
        );
        let s = &doc["components"]["schemas"]["io.kubevirt.v1.VirtualMachine"];
        assert!(s["properties"]["spec"].is_object());
        let docs = Documents::build(&reg);
        assert!(
            docs.index()["paths"]["apis/kubevirt.io/v1"]["serverRelativeURL"]
                .as_str()
                .is_some_and(|u| u.contains("?hash="))
        );
    }
}
