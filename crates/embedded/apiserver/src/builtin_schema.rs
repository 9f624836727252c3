//! Structural schemas for the built-in kinds, made from the `k8s-openapi` types' JSON schemas
//! (their `schemars` implementations) with every `$ref` inlined. They serve OpenAPI (so
//! `kubectl explain` and `kubectl apply` work on built-ins) and unknown-field detection.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use schemars::JsonSchema;
use serde_json::{Map, Value};

fn gen_schema<T: JsonSchema>() -> Option<JSONSchemaProps> {
    let settings = schemars::generate::SchemaSettings::openapi3();
    let generator = schemars::SchemaGenerator::new(settings);
    let root = generator.into_root_schema_for::<T>();
    let root = serde_json::to_value(root).ok()?;
    let defs = root
        .get("components")
        .and_then(|c| c.get("schemas"))
        .or_else(|| root.get("$defs"))
        .or_else(|| root.get("definitions"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut seen = HashSet::new();
    let inlined = inline(&root, &defs, &mut seen, 0);
    serde_json::from_value(inlined).ok()
}

/// Recursion (e.g. JSONSchemaProps inside a CRD) stops at a free-form object.
fn free_form() -> Value {
    serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

fn inline(v: &Value, defs: &Map<String, Value>, seen: &mut HashSet<String>, depth: usize) -> Value {
    if depth > 64 {
        return free_form();
    }
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let name = r.rsplit('/').next().unwrap_or(r).to_string();
                if seen.contains(&name) {
                    return free_form();
                }
                let Some(target) = defs.get(&name) else {
                    return free_form();
                };
                seen.insert(name.clone());
                let mut out = inline(target, defs, seen, depth + 1);
                seen.remove(&name);
                // A description next to the $ref describes the field better than the type's.
                if let (Some(d), Some(o)) = (m.get("description"), out.as_object_mut()) {
                    o.insert("description".into(), d.clone());
                }
                return out;
            }
            let mut out = Map::new();
            for (k, x) in m {
                match k.as_str() {
                    "$schema" | "$defs" | "definitions" | "components" | "title" => {}
                    "type" => {
                        // `["string", "null"]` becomes `string` + nullable.
                        if let Value::Array(ts) = x {
                            let non_null: Vec<&Value> =
                                ts.iter().filter(|t| t.as_str() != Some("null")).collect();
                            if let Some(t) = non_null.first() {
                                out.insert("type".into(), (*t).clone());
                            }
                            if non_null.len() < ts.len() {
                                out.insert("nullable".into(), Value::Bool(true));
                            }
                        } else {
                            out.insert(k.clone(), x.clone());
                        }
                    }
                    "properties" => {
                        let props = x
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(pk, pv)| (pk.clone(), inline(pv, defs, seen, depth + 1)))
                                    .collect::<Map<_, _>>()
                            })
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" => {
                        out.insert(k.clone(), inline(x, defs, seen, depth + 1));
                    }
                    "allOf" | "anyOf" | "oneOf" => {
                        // Structural schemas do not use these for built-ins; a single entry is
                        // a wrapped reference, so unwrap it.
                        if let Some([one]) = x.as_array().map(Vec::as_slice)
                            && let Value::Object(o) = inline(one, defs, seen, depth + 1)
                        {
                            for (ok, ov) in o {
                                out.entry(ok).or_insert(ov);
                            }
                        }
                    }
                    _ => {
                        out.insert(k.clone(), x.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

type Schemas = BTreeMap<(&'static str, &'static str), Arc<JSONSchemaProps>>;

fn all() -> &'static Schemas {
    static CELL: OnceLock<Schemas> = OnceLock::new();
    CELL.get_or_init(|| {
        use k8s_openapi::api::{
            admissionregistration::v1 as adm, apps::v1 as apps, coordination::v1 as coord,
            core::v1 as core, discovery::v1 as disc, events::v1 as events, rbac::v1 as rbac,
            storage::v1 as storage,
        };
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
        use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as reg;
        let mut m = BTreeMap::new();
        let mut add = |g: &'static str, k: &'static str, s: Option<JSONSchemaProps>| {
            if let Some(s) = s {
                m.insert((g, k), Arc::new(s));
            }
        };
        add("", "Namespace", gen_schema::<core::Namespace>());
        add("", "Pod", gen_schema::<core::Pod>());
        add("", "Binding", gen_schema::<core::Binding>());
        add("", "Node", gen_schema::<core::Node>());
        add("", "ConfigMap", gen_schema::<core::ConfigMap>());
        add("", "Secret", gen_schema::<core::Secret>());
        add("", "Service", gen_schema::<core::Service>());
        add("", "Endpoints", gen_schema::<core::Endpoints>());
        add("", "Event", gen_schema::<core::Event>());
        add("", "ServiceAccount", gen_schema::<core::ServiceAccount>());
        add(
            "",
            "PersistentVolumeClaim",
            gen_schema::<core::PersistentVolumeClaim>(),
        );
        add(
            "",
            "PersistentVolume",
            gen_schema::<core::PersistentVolume>(),
        );
        add(
            "storage.k8s.io",
            "StorageClass",
            gen_schema::<storage::StorageClass>(),
        );
        add("coordination.k8s.io", "Lease", gen_schema::<coord::Lease>());
        add(
            "discovery.k8s.io",
            "EndpointSlice",
            gen_schema::<disc::EndpointSlice>(),
        );
        add("apps", "Deployment", gen_schema::<apps::Deployment>());
        add("apps", "DaemonSet", gen_schema::<apps::DaemonSet>());
        add("apps", "ReplicaSet", gen_schema::<apps::ReplicaSet>());
        add("events.k8s.io", "Event", gen_schema::<events::Event>());
        add(
            "rbac.authorization.k8s.io",
            "Role",
            gen_schema::<rbac::Role>(),
        );
        add(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            gen_schema::<rbac::RoleBinding>(),
        );
        add(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            gen_schema::<rbac::ClusterRole>(),
        );
        add(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            gen_schema::<rbac::ClusterRoleBinding>(),
        );
        add(
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
            gen_schema::<adm::MutatingWebhookConfiguration>(),
        );
        add(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            gen_schema::<adm::ValidatingWebhookConfiguration>(),
        );
        add(
            "apiregistration.k8s.io",
            "APIService",
            gen_schema::<reg::APIService>(),
        );
        add(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            gen_schema::<ext::CustomResourceDefinition>(),
        );
        m
    })
}

/// The ObjectMeta schema (OpenAPI documents put it under every kind's `metadata`, as upstream
/// does for custom resources too, so clients can compute patches of metadata).
pub fn object_meta() -> Option<&'static JSONSchemaProps> {
    static CELL: OnceLock<Option<JSONSchemaProps>> = OnceLock::new();
    CELL.get_or_init(gen_schema::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>)
        .as_ref()
}

/// The schema of a built-in kind, if we have its type (shared: made once per process).
pub fn schema_for(group: &str, kind: &str) -> Option<Arc<JSONSchemaProps>> {
    all()
        .iter()
        .find(|((g, k), _)| *g == group && *k == kind)
        .map(|(_, s)| s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_schema_is_inlined() {
        let s = schema_for("", "Pod").expect("pod schema");
        let props = s.properties.as_ref().expect("properties");
        let spec = props.get("spec").expect("spec");
        let containers = spec
            .properties
            .as_ref()
            .and_then(|p| p.get("containers"))
            .expect("containers");
        assert_eq!(containers.type_.as_deref(), Some("array"));
        let unknown = kubevirt_api::structural::unknown_fields(
            &s,
            &serde_json::json!({"spec": {"containers": [{"name": "c", "image": "x", "bogus": 1}]}}),
        );
        assert_eq!(unknown, vec!["spec.containers[0].bogus".to_string()]);
    }

    #[test]
    fn crd_schema_stops_recursing() {
        assert!(schema_for("apiextensions.k8s.io", "CustomResourceDefinition").is_some());
    }
}
