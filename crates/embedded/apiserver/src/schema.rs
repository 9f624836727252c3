//! Checking and defaulting a custom resource against its version's structural schema (pure).
//! Pruning and unknown-field detection are `kubevirt_api::structural`'s; this module adds what
//! the API server also does: types, `required`, `enum`, `nullable`, and `default` values.
//!
//! Not checked (written down in the README): formats, patterns, lengths, numeric bounds, CEL.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use crate::error::Cause;

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn items(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match s.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(x) => Some(x),
        JSONSchemaPropsOrArray::Schemas(v) => v.first(),
    }
}

fn additional(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match s.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(x) => Some(x),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

/// Every schema violation in `obj` (the whole object; top-level `metadata`, `apiVersion` and
/// `kind` are the server's business and skipped).
pub fn validate(schema: &JSONSchemaProps, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    walk(schema, obj, "", true, &mut out);
    out
}

fn walk(s: &JSONSchemaProps, v: &Value, path: &str, top: bool, out: &mut Vec<Cause>) {
    if v.is_null() {
        if s.nullable != Some(true) && !top && s.type_.is_some() {
            out.push(Cause::type_invalid(
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    s.type_.as_deref().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let actual = json_type(v);
    if s.x_kubernetes_int_or_string == Some(true) {
        if !matches!(actual, "integer" | "string") {
            out.push(Cause::type_invalid(
                path,
                format!("Invalid value: \"{actual}\": {path} in body must be of type integer or string: \"{actual}\""),
            ));
        }
        return;
    }
    if let Some(want) = s.type_.as_deref() {
        let ok = want == actual || (want == "number" && actual == "integer");
        if !ok {
            out.push(Cause::type_invalid(
                path,
                format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {want}: \"{actual}\""
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = &s.enum_
        && !allowed.iter().any(|a| a.0 == *v)
    {
        let list: Vec<String> = allowed.iter().map(|a| a.0.to_string()).collect();
        out.push(Cause::not_supported(
            path,
            format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::Object(m) => {
            for r in s.required.iter().flatten() {
                if !m.contains_key(r) {
                    out.push(Cause::required(child(path, r)));
                }
            }
            for (k, x) in m {
                if top && matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                    continue;
                }
                let p = child(path, k);
                if let Some(ps) = s.properties.as_ref().and_then(|p| p.get(k)) {
                    walk(ps, x, &p, false, out);
                } else if let Some(a) = additional(s) {
                    walk(a, x, &p, false, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = items(s) {
                for (i, x) in a.iter().enumerate() {
                    walk(is, x, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Fills `default`s for absent properties, recursively (as the server does on read and write).
pub fn apply_defaults(s: &JSONSchemaProps, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = &s.properties {
                for (k, ps) in props {
                    if !m.contains_key(k)
                        && let Some(d) = &ps.default
                    {
                        m.insert(k.clone(), d.0.clone());
                    }
                }
                for (k, x) in m.iter_mut() {
                    if let Some(ps) = props.get(k) {
                        apply_defaults(ps, x);
                    }
                }
            } else if let Some(a) = additional(s) {
                for x in m.values_mut() {
                    apply_defaults(a, x);
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = items(s) {
                for x in a.iter_mut() {
                    apply_defaults(is, x);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> JSONSchemaProps {
        serde_json::from_value(v).expect("schema")
    }

    #[test]
    fn type_errors_are_worded_like_the_server() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "required": ["template"],
            "properties": {"runStrategy": {"type": "string"}, "template": {"type": "object"}}}}}),
        );
        let causes = validate(&s, &json!({"spec": {"runStrategy": 7}}));
        assert_eq!(causes.len(), 2);
        assert_eq!(causes[0].field, "spec.template");
        assert_eq!(causes[1].field, "spec.runStrategy");
        assert_eq!(
            causes[1].message,
            "Invalid value: \"integer\": spec.runStrategy in body must be of type string: \"integer\""
        );
    }

    #[test]
    fn enums_nullable_int_or_string() {
        let s = schema(json!({"type": "object", "properties": {
            "a": {"type": "string", "enum": ["x", "y"]},
            "b": {"type": "string", "nullable": true},
            "c": {"x-kubernetes-int-or-string": true},
            "d": {"type": "number"}
        }}));
        assert!(validate(&s, &json!({"a": "x", "b": null, "c": 3, "d": 1})).is_empty());
        let bad = validate(&s, &json!({"a": "z", "c": true}));
        assert_eq!(bad.len(), 2);
    }

    #[test]
    fn defaults_fill_absent_fields() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"replicas": {"type": "integer", "default": 1},
                           "list": {"type": "array", "items": {"type": "object",
                               "properties": {"p": {"type": "string", "default": "TCP"}}}}}}}}),
        );
        let mut v = json!({"spec": {"list": [{}, {"p": "UDP"}]}});
        apply_defaults(&s, &mut v);
        assert_eq!(
            v,
            json!({"spec": {"replicas": 1, "list": [{"p": "TCP"}, {"p": "UDP"}]}})
        );
    }
}
