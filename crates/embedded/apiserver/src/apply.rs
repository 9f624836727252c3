//! Field ownership (`metadata.managedFields`) and server-side apply (pure).
//!
//! Simplifications (see the README): a field set is the set of leaf paths a manager wrote; lists
//! are keyed by the strategic-merge keys of built-ins (and are atomic in custom resources unless
//! the schema says `x-kubernetes-list-type: map`/`set`, which ours do not); an apply merges the
//! applied configuration into the live object (strategic merge for built-ins, merge patch for
//! custom resources), removes the leaves this manager applied before and no longer applies when
//! nobody else owns them, and reports a conflict when a leaf it sets to a different value is
//! owned by another manager. Updates take ownership of the leaves they change.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause};
use crate::ops::{Part, WriteCtx};
use crate::patch::merge_key;

/// A path of fieldsV1 tokens: `f:spec`, `k:{"name":"c"}`, `v:"x"`.
pub type FieldPath = Vec<String>;

const SERVER_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "name",
    "namespace",
    "selfLink",
];

fn key_token(item: &Value, key: &str) -> Option<String> {
    let id = item.get(key)?;
    let mut m = Map::new();
    m.insert(key.to_string(), id.clone());
    Some(format!("k:{}", Value::Object(m)))
}

/// Leaf paths of `v` for `kind` (top-level apiVersion/kind and server-owned metadata skipped).
pub fn leaves(kind: &str, v: &Value, part: Part) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(m) = v.as_object() else { return out };
    for (k, x) in m {
        let keep = match part {
            Part::Status => k == "status",
            Part::Main => !matches!(k.as_str(), "apiVersion" | "kind" | "status"),
        };
        if !keep {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = x.as_object() {
                for (mk, mx) in meta {
                    if SERVER_META.contains(&mk.as_str()) {
                        continue;
                    }
                    let mut path = vec!["f:metadata".to_string(), format!("f:{mk}")];
                    walk(
                        kind,
                        mx,
                        &mut path,
                        &mut vec!["metadata".into(), mk.clone()],
                        &mut out,
                    );
                }
            }
            continue;
        }
        let mut path = vec![format!("f:{k}")];
        walk(kind, x, &mut path, &mut vec![k.clone()], &mut out);
    }
    out
}

fn walk(
    kind: &str,
    v: &Value,
    path: &mut FieldPath,
    names: &mut Vec<String>,
    out: &mut BTreeSet<FieldPath>,
) {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(format!("f:{k}"));
                names.push(k.clone());
                walk(kind, x, path, names, out);
                names.pop();
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match merge_key(kind, &refs) {
            Some("") => {
                for it in items {
                    let mut p = path.clone();
                    p.push(format!("v:{it}"));
                    out.insert(p);
                }
            }
            Some(key) if items.iter().all(|i| i.get(key).is_some()) => {
                for it in items {
                    let Some(tok) = key_token(it, key) else {
                        continue;
                    };
                    path.push(tok);
                    let before = out.len();
                    if let Some(im) = it.as_object() {
                        for (k, x) in im {
                            path.push(format!("f:{k}"));
                            names.push(k.clone());
                            walk(kind, x, path, names, out);
                            names.pop();
                            path.pop();
                        }
                    }
                    if out.len() == before {
                        out.insert(path.clone());
                    }
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at a field path, if present.
pub fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for t in path {
        cur = step(cur, t)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, t: &str) -> Option<&'a Value> {
    if let Some(f) = t.strip_prefix("f:") {
        return cur.get(f);
    }
    let items = cur.as_array()?;
    if let Some(k) = t.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        return items
            .iter()
            .find(|i| want.iter().all(|(wk, wv)| i.get(wk) == Some(wv)));
    }
    if let Some(x) = t.strip_prefix("v:") {
        let want: Value = serde_json::from_str(x).ok()?;
        return items.iter().find(|i| **i == want);
    }
    None
}

/// Removes the value at a field path (and empties nothing else).
pub fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for t in parents {
        let next = if let Some(f) = t.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let Some(items) = cur.as_array_mut() else {
                return;
            };
            let pos = match t
                .strip_prefix("k:")
                .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
            {
                Some(want) => items
                    .iter()
                    .position(|i| want.iter().all(|(wk, wv)| i.get(wk) == Some(wv))),
                None => None,
            };
            pos.and_then(move |p| items.get_mut(p))
        };
        let Some(n) = next else { return };
        cur = n;
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(items) = cur.as_array_mut() {
        if let Some(k) = last
            .strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
        {
            items.retain(|i| !k.iter().all(|(wk, wv)| i.get(wk) == Some(wv)));
        } else if let Some(x) = last
            .strip_prefix("v:")
            .and_then(|x| serde_json::from_str::<Value>(x).ok())
        {
            items.retain(|i| *i != x);
        }
    }
}

/// fieldsV1 JSON of a set of leaf paths.
pub fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut cur = &mut root;
        for (i, t) in p.iter().enumerate() {
            let entry = cur.entry(t.clone()).or_insert_with(|| json!({}));
            let Value::Object(m) = entry else { break };
            if i + 1 < p.len() && !m.contains_key(".") && p[i + 1].starts_with('k') {
                // A keyed list element exists as a whole as well as through its fields.
            }
            cur = m;
        }
    }
    add_dots(&mut root);
    Value::Object(root)
}

fn add_dots(m: &mut Map<String, Value>) {
    for (k, v) in m.iter_mut() {
        if let Value::Object(child) = v
            && !child.is_empty()
        {
            add_dots(child);
            if k.starts_with("k:") || k.starts_with("f:") {
                child.insert(".".into(), json!({}));
            }
        }
    }
}

/// Leaf paths of a fieldsV1 JSON value.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    fn rec(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> =
            m.iter().filter(|(k, _)| k.as_str() != ".").collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, x) in children {
            path.push(k.clone());
            rec(x, path, out);
            path.pop();
        }
    }
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// One managedFields entry, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

pub fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    time: e["time"].as_str().unwrap_or_default().to_string(),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(obj: &mut Value, list: &[Entry]) {
    let arr: Vec<Value> = list
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                               "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(m) = crate::meta::metadata_mut(obj) {
        if arr.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

fn subresource(part: Part) -> Option<String> {
    match part {
        Part::Main => None,
        Part::Status => Some("status".into()),
    }
}

/// Records that `manager` changed `old` into `new` with a non-apply write: it takes ownership of
/// the leaves whose value changed; leaves that disappeared leave every manager's set.
pub fn record_update(ctx: &WriteCtx, old: Option<&Value>, new: &mut Value, part: Part) {
    let kind = &ctx.def.kind;
    let new_leaves = leaves(kind, new, part);
    let changed: BTreeSet<FieldPath> = match old {
        None => new_leaves.clone(),
        Some(o) => new_leaves
            .iter()
            .filter(|p| get(o, p) != get(new, p))
            .cloned()
            .collect(),
    };
    let mut list = old.map(entries).unwrap_or_default();
    let all_new = leaves(kind, new, Part::Main)
        .into_iter()
        .chain(leaves(kind, new, Part::Status))
        .collect::<BTreeSet<_>>();
    for e in list.iter_mut() {
        // Gone leaves are owned by nobody; changed ones move to this manager.
        e.fields
            .retain(|p| all_new.contains(p) && !changed.contains(p));
    }
    let manager = ctx
        .field_manager
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let api_version = ctx.def.api_version(&ctx.version);
    let sub = subresource(part);
    if !changed.is_empty() {
        let now = crate::meta::now_rfc3339();
        match list
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now;
            }
            None => list.push(Entry {
                manager,
                operation: "Update".into(),
                api_version,
                subresource: sub,
                time: now,
                fields: changed,
            }),
        }
    }
    write_entries(new, &list);
}

fn show(path: &[String]) -> String {
    let mut s = String::new();
    for t in path {
        if let Some(f) = t.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = t.strip_prefix("k:") {
            s.push('[');
            s.push_str(&k.trim_matches(|c| c == '{' || c == '}').replace(':', "="));
            s.push(']');
        } else if let Some(v) = t.strip_prefix("v:") {
            s.push('[');
            s.push_str(v);
            s.push(']');
        }
    }
    s
}

/// Server-side apply of `applied` onto `live` by the request's field manager.
pub fn apply(
    ctx: &WriteCtx,
    live: &Value,
    applied: &Value,
    force: bool,
    part: Part,
) -> Result<Value, ApiError> {
    let Some(manager) = ctx.field_manager.clone() else {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    };
    let mut cfg = applied.clone();
    crate::ops::check_type_meta(&ctx.def, &ctx.version, &mut cfg)?;
    let kind = ctx.def.kind.clone();
    let new_set = leaves(&kind, &cfg, part);
    let mut list = entries(live);
    let mut conflicts = Vec::new();
    for e in list.iter().filter(|e| e.manager != manager) {
        for p in new_set.intersection(&e.fields) {
            if get(live, p) != get(&cfg, p) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), show(p)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let n = conflicts.len();
        let causes: Vec<Cause> = conflicts
            .iter()
            .map(|(m, av, p)| Cause {
                reason: "FieldManagerConflict",
                message: format!("conflict with \"{m}\" using {av}"),
                field: p.clone(),
            })
            .collect();
        let detail: Vec<String> = conflicts
            .iter()
            .map(|(m, av, p)| format!("conflict with \"{m}\" using {av}: {p}"))
            .collect();
        let mut err = ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                detail.join("\n")
            ),
        );
        err.details = Some(
            json!({"causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>()}),
        );
        return Err(err);
    }
    // Merge the configuration into the live object.
    let mut merged = live.clone();
    let mut body = cfg.clone();
    if let Some(m) = body.as_object_mut() {
        if part == Part::Status {
            m.retain(|k, _| k == "status");
        } else if ctx.def.status {
            m.remove("status");
        }
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for k in SERVER_META {
                meta.remove(*k);
            }
        }
    }
    if ctx.def.custom {
        crate::patch::merge_patch(&mut merged, &body);
    } else {
        crate::patch::strategic_merge(&kind, &mut merged, &body)
            .map_err(|e| ApiError::new(422, "Invalid", e))?;
    }
    let sub = subresource(part);
    let previous: BTreeSet<FieldPath> = list
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == sub)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&new_set) {
        let owned_elsewhere = list
            .iter()
            .any(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(p));
        if !owned_elsewhere {
            remove(&mut merged, p);
        }
    }
    for e in list.iter_mut() {
        let mine = e.manager == manager;
        if mine && e.operation == "Apply" && e.subresource == sub {
            continue;
        }
        // Leaves set to the same value stay shared; differing ones (forced) move to the applier,
        // and so do this manager's own updated leaves.
        e.fields
            .retain(|p| !new_set.contains(p) || (!mine && get(live, p) == get(&cfg, p)));
    }
    let now = crate::meta::now_rfc3339();
    list.retain(|e| !(e.manager == manager && e.operation == "Apply" && e.subresource == sub));
    list.push(Entry {
        manager,
        operation: "Apply".into(),
        api_version: ctx.def.api_version(&ctx.version),
        subresource: sub,
        time: now,
        fields: new_set,
    });
    write_entries(&mut merged, &list);
    Ok(merged)
}

/// managedFields of an object created by an apply.
pub fn record_apply(ctx: &WriteCtx, obj: &mut Value, applied: &Value, _old: Option<&Value>) {
    let manager = ctx
        .field_manager
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let fields = leaves(&ctx.def.kind, applied, Part::Main);
    let e = Entry {
        manager,
        operation: "Apply".into(),
        api_version: ctx.def.api_version(&ctx.version),
        subresource: None,
        time: crate::meta::now_rfc3339(),
        fields,
    };
    write_entries(obj, &[e]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_and_fields_v1_round_trip() {
        let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]},
                       "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": [{"key": "k"}]}});
        let l = leaves("Pod", &v, Part::Main);
        let shown: Vec<String> = l.iter().map(|p| show(p)).collect();
        assert_eq!(
            shown,
            vec![
                ".metadata.finalizers[\"x\"]",
                ".metadata.labels.a",
                ".spec.containers[\"name\"=\"c\"].image",
                ".spec.containers[\"name\"=\"c\"].name",
                ".spec.tolerations",
            ]
        );
        let f = to_fields_v1(&l);
        assert_eq!(
            f["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&f), l);
        let mut w = v.clone();
        remove(
            &mut w,
            &l.iter()
                .find(|p| show(p).ends_with("image"))
                .cloned()
                .unwrap_or_default(),
        );
        assert_eq!(w["spec"]["containers"][0], json!({"name": "c"}));
    }
}
