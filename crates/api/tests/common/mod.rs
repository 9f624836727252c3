//! Generators of objects from our own CRD schemas, shared by the property tests.
#![allow(dead_code)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The version our Rust types speak (the derive's own, listed first) and its schema.
pub fn own_schema(crd: &CustomResourceDefinition) -> (String, JSONSchemaProps) {
    let v = crd.spec.versions.first().expect("a version");
    let schema = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.clone())
        .expect("a schema");
    (format!("{}/{}", crd.spec.group, v.name), schema)
}

fn items(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match s.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(i) => Some(i),
        JSONSchemaPropsOrArray::Schemas(l) => l.first(),
    }
}

fn map_values(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match s.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(v) => Some(v),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

/// A value for a leaf; `n` varies it. Shapes are ones our types must keep byte-for-byte.
fn leaf(s: &JSONSchemaProps, n: u32) -> Value {
    if let Some(values) = s.enum_.as_ref().filter(|e| !e.is_empty()) {
        return values[n as usize % values.len()].0.clone();
    }
    if s.x_kubernetes_int_or_string == Some(true) {
        return json!(format!("{}Mi", n + 1));
    }
    match s.type_.as_deref() {
        Some("string") if s.format.as_deref() == Some("date-time") => {
            json!(format!("2026-01-{:02}T10:20:30Z", n % 28 + 1))
        }
        Some("string") => json!(format!("v{n}")),
        Some("integer") => json!(n + 1),
        Some("number") => json!(n + 1),
        Some("boolean") => json!(n.is_multiple_of(2)),
        _ => json!({}),
    }
}

/// Builds the fullest object the schema allows: every property, one item per list, one entry
/// per map. Covers every node of the schema in one value.
/// The top level's `metadata`, `apiVersion` and `kind` are left out (the caller sets them).
pub fn fullest(s: &JSONSchemaProps, n: u32) -> Value {
    fullest_at(s, n, "", true)
}

/// Whether a property is one of the object header fields the caller sets at the top level.
fn is_header(top: bool, key: &str) -> bool {
    top && matches!(key, "metadata" | "apiVersion" | "kind")
}

/// What to put in a free-form object: embedded `metadata` is decoded as ObjectMeta, so it gets
/// a field ObjectMeta has; anything else gets arbitrary content that must be kept as is.
fn free_form(key: &str) -> Value {
    if key == "metadata" {
        json!({ "labels": { "kept": "as-is" } })
    } else {
        json!({ "kept": ["as", "is"] })
    }
}

fn fullest_at(s: &JSONSchemaProps, n: u32, key: &str, top: bool) -> Value {
    if let Some(props) = s.properties.as_ref().filter(|p| !p.is_empty()) {
        let mut obj = Map::new();
        for (i, (k, v)) in props.iter().enumerate() {
            if !is_header(top, k) {
                obj.insert(k.clone(), fullest_at(v, n + i as u32, k, false));
            }
        }
        return Value::Object(obj);
    }
    match s.type_.as_deref() {
        Some("array") => json!([items(s)
            .map(|i| fullest_at(i, n, key, false))
            .unwrap_or(json!("x"))]),
        Some("object") => match map_values(s) {
            Some(v) => json!({ format!("key{n}"): fullest_at(v, n, key, false) }),
            None if s.x_kubernetes_preserve_unknown_fields == Some(true) => free_form(key),
            None => json!({}),
        },
        _ => leaf(s, n),
    }
}

/// A strategy for random sparse objects of this schema (required fields always present).
pub fn sparse(s: &JSONSchemaProps) -> BoxedStrategy<Value> {
    sparse_at(s, "", true)
}

fn sparse_at(s: &JSONSchemaProps, key: &str, top: bool) -> BoxedStrategy<Value> {
    if let Some(props) = s.properties.as_ref().filter(|p| !p.is_empty()) {
        let required = s.required.clone().unwrap_or_default();
        let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = props
            .iter()
            .filter(|(k, _)| !is_header(top, k))
            .map(|(k, v)| {
                let key = k.clone();
                let inner = sparse_at(v, k, false).prop_map(move |val| (key.clone(), val));
                // `spec` is always sent: our kinds decode it as a required field even where
                // upstream's schema (presets) leaves it optional.
                if required.contains(k) || (top && k == "spec") {
                    inner.prop_map(Some).boxed()
                } else {
                    proptest::option::weighted(0.25, inner).boxed()
                }
            })
            .collect();
        return fields
            .prop_map(|fs| Value::Object(fs.into_iter().flatten().collect()))
            .boxed();
    }
    let s = s.clone();
    match s.type_.as_deref() {
        Some("array") => {
            let item = items(&s)
                .map(|i| sparse_at(i, key, false))
                .unwrap_or_else(|| Just(json!("x")).boxed());
            proptest::collection::vec(item, 1..3)
                .prop_map(Value::Array)
                .boxed()
        }
        Some("object") => match map_values(&s) {
            Some(v) => {
                proptest::collection::btree_map("[a-z]{1,6}", sparse_at(v, key, false), 1..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect()))
                    .boxed()
            }
            None => Just(fullest_at(&s, 0, key, false)).boxed(),
        },
        _ => (0u32..1000).prop_map(move |n| leaf(&s, n)).boxed(),
    }
}

pub fn with_header(api_version: &str, kind: &str, mut body: Value) -> Value {
    if let Some(o) = body.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
        o.insert(
            "metadata".into(),
            json!({"name": "x", "namespace": "default"}),
        );
    }
    body
}
