//! Walking a JSON value against a structural OpenAPI v3 schema (the schema of a CRD version):
//! which fields the schema does not know, and pruning them as the API server does.
//!
//! Paths are written the way Kubernetes reports them: `spec.domain.devices.disks[0].name`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

/// The field paths in `value` that `schema` does not declare, in document order.
///
/// Objects marked `x-kubernetes-preserve-unknown-fields` (and everything under them that the
/// schema does not describe) accept anything; `metadata` at the top level is ObjectMeta and is
/// checked by the API server separately, so it is not walked.
pub fn unknown_fields(schema: &JSONSchemaProps, value: &Value) -> Vec<String> {
    // One walk serves both questions: prune a copy and report what went.
    prune(schema, &mut value.clone())
}

/// Removes from `value` every field `schema` does not declare (what the API server does to a
/// custom resource before storing it) and returns the removed paths.
pub fn prune(schema: &JSONSchemaProps, value: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_at(schema, value, "", true, &mut out);
    out
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn item_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(s) => Some(s),
        JSONSchemaPropsOrArray::Schemas(list) => list.first(),
    }
}

fn map_value_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(s) => Some(s),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

fn map_allows_any(schema: &JSONSchemaProps) -> bool {
    matches!(
        schema.additional_properties,
        Some(JSONSchemaPropsOrBool::Bool(true))
    )
}

fn prune_at(
    schema: &JSONSchemaProps,
    value: &mut Value,
    path: &str,
    top: bool,
    out: &mut Vec<String>,
) {
    match value {
        Value::Object(fields) => {
            let preserve = schema.x_kubernetes_preserve_unknown_fields == Some(true);
            let mut drop = Vec::new();
            for (key, v) in fields.iter_mut() {
                let p = child(path, key);
                if top && (key == "metadata" || key == "apiVersion" || key == "kind") {
                    continue;
                }
                if let Some(s) = schema.properties.as_ref().and_then(|props| props.get(key)) {
                    prune_at(s, v, &p, false, out);
                } else if let Some(s) = map_value_schema(schema) {
                    prune_at(s, v, &p, false, out);
                } else if !(preserve || map_allows_any(schema)) {
                    drop.push(key.clone());
                    out.push(p);
                }
            }
            for key in drop {
                fields.remove(&key);
            }
        }
        Value::Array(items) => {
            if let Some(s) = item_schema(schema) {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_at(s, v, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}
