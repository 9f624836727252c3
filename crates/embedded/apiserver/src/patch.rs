//! Patch application (pure): JSON merge patch (RFC 7386), JSON patch (RFC 6902), and strategic
//! merge patch for the built-in kinds.
//!
//! Strategic merge supports: merge keys for the list fields listed in [`merge_key`], union of
//! primitive lists with the merge strategy (`finalizers`), and the directives `$patch`
//! (`replace`, `delete`, `merge`), `$retainKeys` and `$deleteFromPrimitiveList/<field>`.
//! `$setElementOrder/<field>` is accepted and ignored (lists keep the live order, new items go
//! last).

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(ptr: &str) -> Result<Vec<String>, String> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = ptr.strip_prefix('/') else {
        return Err(format!("JSON pointer must start with '/': {ptr}"));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let i: usize = token
        .parse()
        .map_err(|_| format!("invalid array index {token}"))?;
    let limit = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > limit || (!allow_end && len == 0) {
        return Err(format!("array index {i} out of bounds"));
    }
    Ok(i)
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("doc is missing key: {t}"))?,
            Value::Array(a) => {
                let i = array_index(t, a.len(), false)?;
                &mut a[i]
            }
            _ => return Err(format!("cannot descend into a scalar at {t}")),
        };
    }
    Ok(cur)
}

/// A JSON pointer from its (unescaped) tokens.
fn join_pointer(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn get_ptr<'a>(doc: &'a Value, ptr: &str) -> Result<&'a Value, String> {
    let mut cur = doc;
    for t in split_pointer(ptr)? {
        cur = match cur {
            Value::Object(m) => m
                .get(&t)
                .ok_or_else(|| format!("doc is missing path: {ptr}"))?,
            Value::Array(a) => {
                let i = array_index(&t, a.len(), false)?;
                &a[i]
            }
            _ => return Err(format!("doc is missing path: {ptr}")),
        };
    }
    Ok(cur)
}

fn add_at(doc: &mut Value, ptr: &str, value: Value) -> Result<(), String> {
    let tokens = split_pointer(ptr)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("cannot add to a scalar at {ptr}")),
    }
}

fn remove_at(doc: &mut Value, ptr: &str) -> Result<Value, String> {
    let tokens = split_pointer(ptr)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err("cannot remove the whole document".to_string());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("doc is missing key: {ptr}")),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("doc is missing path: {ptr}")),
    }
}

/// RFC 6902 applied to a copy: the document is only replaced when every operation succeeds.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let Value::Array(ops) = ops else {
        return Err("a JSON patch must be an array of operations".to_string());
    };
    let mut out = doc.clone();
    for (n, op) in ops.iter().enumerate() {
        let field = |k: &str| -> Result<&str, String> {
            op.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {n} is missing \"{k}\""))
        };
        let kind = field("op")?;
        let path = field("path")?;
        let value = || -> Result<Value, String> {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {n} ({kind}) is missing \"value\""))
        };
        match kind {
            "add" => add_at(&mut out, path, value()?)?,
            "remove" => {
                remove_at(&mut out, path)
                    .map_err(|e| format!("remove operation does not apply: {e}"))?;
            }
            "replace" => {
                // Replace requires the target to exist.
                get_ptr(&out, path)
                    .map_err(|e| format!("replace operation does not apply: {e}"))?;
                if path.is_empty() {
                    out = value()?;
                } else {
                    remove_at(&mut out, path)?;
                    add_at(&mut out, path, value()?)?;
                }
            }
            "move" => {
                let from = field("from")?;
                let v = remove_at(&mut out, from)
                    .map_err(|e| format!("move operation does not apply: {e}"))?;
                add_at(&mut out, path, v)?;
            }
            "copy" => {
                let from = field("from")?;
                let v = get_ptr(&out, from)?.clone();
                add_at(&mut out, path, v)?;
            }
            "test" => {
                let want = value()?;
                // As Kubernetes' JSON patch does: a missing member of an existing object tests
                // equal to null (clients such as virtctl test `/status/stateChangeRequests`
                // for null before adding it). A missing parent is still an error.
                let missing_member_is_null = want.is_null()
                    && split_pointer(path)?
                        .split_last()
                        .is_some_and(|(last, parents)| {
                            matches!(
                                get_ptr(&out, &join_pointer(parents)),
                                Ok(Value::Object(m)) if !m.contains_key(last)
                            )
                        });
                if !missing_member_is_null {
                    let have = get_ptr(&out, path)
                        .map_err(|e| format!("test operation does not apply: {e}"))?;
                    if *have != want {
                        return Err(format!("testing value {path} failed"));
                    }
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(out)
}

/// The merge key of a list field at `path` (field names from the object root, no indices) in a
/// built-in kind; `Some("")` marks a primitive list merged as a set.
pub fn merge_key(kind: &str, path: &[&str]) -> Option<&'static str> {
    let last = *path.last()?;
    let in_container = path
        .iter()
        .any(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
    Some(match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "webhooks" => "name",
        "ports" if in_container => "containerPort",
        "ports" if kind == "Service" => "port",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "volumesAttached" => "name",
        "finalizers" if path.len() == 2 && path[0] == "metadata" => "",
        _ => return None,
    })
}

const DIRECTIVE: &str = "$patch";
const RETAIN: &str = "$retainKeys";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const ELEMENT_ORDER: &str = "$setElementOrder/";

/// Strategic merge patch of a built-in object of kind `kind`.
pub fn strategic_merge(kind: &str, target: &mut Value, patch: &Value) -> Result<(), String> {
    let mut path = Vec::new();
    smp_map(kind, target, patch, &mut path)
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, x)| (k.clone(), strip_directives(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn smp_map(
    kind: &str,
    target: &mut Value,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get(DIRECTIVE).and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            if let (Some(Value::Array(have)), Value::Array(gone)) = (t.get_mut(field), v) {
                have.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with(ELEMENT_ORDER) || k == DIRECTIVE || k == RETAIN {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let key = merge_key(kind, &refs);
        let slot = t.entry(k.clone()).or_insert(Value::Null);
        match (key, v) {
            (Some(""), Value::Array(items)) => {
                let mut have = slot.as_array().cloned().unwrap_or_default();
                for x in items {
                    if !have.contains(x) {
                        have.push(x.clone());
                    }
                }
                *slot = Value::Array(have);
            }
            (Some(mk), Value::Array(items)) => smp_list(kind, slot, items, mk, path)?,
            (_, Value::Object(_)) => {
                smp_map(kind, slot, v, path)?;
                if slot.is_null() {
                    t.remove(k);
                }
            }
            _ => *slot = strip_directives(v),
        }
        path.pop();
    }
    if let Some(Value::Array(keep)) = p.get(RETAIN) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn smp_list(
    kind: &str,
    slot: &mut Value,
    items: &[Value],
    key: &str,
    path: &mut Vec<String>,
) -> Result<(), String> {
    if items
        .iter()
        .any(|i| i.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"))
    {
        *slot = Value::Array(
            items
                .iter()
                .filter(|i| i.get(DIRECTIVE).is_none())
                .map(strip_directives)
                .collect(),
        );
        return Ok(());
    }
    let mut have = slot.as_array().cloned().unwrap_or_default();
    for item in items {
        let Some(id) = item.get(key) else {
            return Err(format!(
                "map: {item} does not contain declared merge key: {key}"
            ));
        };
        let pos = have.iter().position(|h| h.get(key) == Some(id));
        if item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                have.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => smp_map(kind, &mut have[i], item, path)?,
            None => {
                let mut fresh = Value::Object(Map::new());
                smp_map(kind, &mut fresh, item, path)?;
                have.push(fresh);
            }
        }
    }
    *slot = Value::Array(have);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc_examples() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1]});
        merge_patch(&mut t, &json!({"a": [2, 3]}));
        assert_eq!(t, json!({"a": [2, 3]}));
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"spec": {"runStrategy": "Halted", "l": [1, 2]}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "replace", "path": "/spec/runStrategy", "value": "Manual"},
                {"op": "add", "path": "/spec/l/-", "value": 3},
                {"op": "remove", "path": "/spec/l/0"},
                {"op": "copy", "from": "/spec/runStrategy", "path": "/spec/x"},
                {"op": "move", "from": "/spec/x", "path": "/spec/y"},
                {"op": "test", "path": "/spec/y", "value": "Manual"},
                {"op": "test", "path": "/spec/absent", "value": null},
                {"op": "add", "path": "/metadata", "value": {"labels": {"a~b/c": "1"}}},
                {"op": "remove", "path": "/metadata/labels/a~0b~1c"}
            ]),
        )
        .expect("applies");
        assert_eq!(
            out,
            json!({"spec": {"runStrategy": "Manual", "l": [2, 3], "y": "Manual"}, "metadata": {"labels": {}}})
        );
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "replace", "path": "/spec/nope", "value": 1}])
            )
            .is_err()
        );
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/spec/runStrategy", "value": "x"}])
            )
            .is_err()
        );
        assert!(json_patch(&doc, &json!({"op": "add"})).is_err());
        // Null matches only a missing member of an existing object.
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/nothing/here", "value": null}])
            )
            .is_err()
        );
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/spec/runStrategy", "value": null}])
            )
            .is_err()
        );
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [
            {"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]},
            {"name": "b", "image": "y"}
        ]}});
        strategic_merge(
            "Pod",
            &mut pod,
            &json!({
                "metadata": {"finalizers": ["b"]},
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "spec": {"containers": [
                    {"name": "a", "env": [{"name": "F", "value": "2"}]},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "z"}
                ]}
            }),
        )
        .expect("applies");
        assert_eq!(
            pod,
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [
                {"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]},
                {"name": "c", "image": "z"}
            ]}})
        );
    }

    #[test]
    fn strategic_directives() {
        let mut o = json!({"spec": {"selector": {"a": "1", "b": "2"}, "tolerations": [{"key": "x"}]},
                           "metadata": {"finalizers": ["a", "b"]}});
        strategic_merge(
            "Pod",
            &mut o,
            &json!({"spec": {"selector": {"$patch": "replace", "c": "3"}, "tolerations": [{"key": "y"}]},
                    "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .expect("applies");
        assert_eq!(
            o,
            json!({"spec": {"selector": {"c": "3"}, "tolerations": [{"key": "y"}]},
                   "metadata": {"finalizers": ["b"]}})
        );
        let mut o = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        strategic_merge(
            "Deployment",
            &mut o,
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        )
        .expect("applies");
        assert_eq!(o, json!({"spec": {"strategy": {"type": "Recreate"}}}));
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ]
    }

    fn doc() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            proptest::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest! {
        // Merging a patch twice equals merging it once.
        #[test]
        fn merge_patch_idempotent(mut t in doc(), p in doc()) {
            merge_patch(&mut t, &p);
            let once = t.clone();
            merge_patch(&mut t, &p);
            prop_assert_eq!(t, once);
        }

        // With no lists and no directives, strategic merge is a merge patch.
        #[test]
        fn strategic_equals_merge_without_lists(t in doc(), p in doc()) {
            let mut a = t.clone();
            let mut b = t.clone();
            merge_patch(&mut a, &p);
            strategic_merge("ConfigMap", &mut b, &p).map_err(TestCaseError::fail)?;
            prop_assert_eq!(a, b);
        }

        // An add followed by a remove of the same new key restores the document.
        #[test]
        fn json_patch_add_remove_inverse(t in doc(), v in leaf()) {
            prop_assume!(t.is_object() && t.get("zz").is_none());
            let ops = json!([{"op": "add", "path": "/zz", "value": v}, {"op": "remove", "path": "/zz"}]);
            prop_assert_eq!(json_patch(&t, &ops).map_err(TestCaseError::fail)?, t);
        }

        // A failing operation leaves the input untouched (json_patch works on a copy).
        #[test]
        fn json_patch_failure_is_atomic(t in doc()) {
            let ops = json!([{"op": "add", "path": "/zz", "value": 1}, {"op": "remove", "path": "/nope/deeper"}]);
            prop_assert!(json_patch(&t, &ops).is_err());
        }
    }
}
