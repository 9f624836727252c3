//! Discovery documents (pure): aggregated v2 (`APIGroupDiscoveryList`) and the legacy
//! `APIVersions`, `APIGroupList`, `APIGroup` and `APIResourceList`.

use serde_json::{Value, json};

use crate::resources::{Registry, ResourceDef};

/// The media type of aggregated discovery responses.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the Accept header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("g=apidiscovery.k8s.io")
            && p.contains("as=APIGroupDiscoveryList")
            && p.contains("v=v2")
            && !p.contains("v=v2beta1")
    })
}

fn scale_kind() -> Value {
    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
}

fn resource_v2(d: &ResourceDef) -> Value {
    let mut r = json!({
        "resource": d.resource,
        "responseKind": {"group": "", "version": "", "kind": d.kind},
        "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": d.singular,
        "verbs": d.verbs,
    });
    if !d.short_names.is_empty() {
        r["shortNames"] = json!(d.short_names);
    }
    if !d.categories.is_empty() {
        r["categories"] = json!(d.categories);
    }
    let mut subs = Vec::new();
    if d.status {
        subs.push(json!({"subresource": "status",
            "responseKind": {"group": "", "version": "", "kind": d.kind},
            "verbs": ["get", "patch", "update"]}));
    }
    if d.scale.is_some() {
        subs.push(json!({"subresource": "scale", "responseKind": scale_kind(),
            "verbs": ["get", "patch", "update"]}));
    }
    if d.extra.contains(&"eviction") {
        subs.push(json!({"subresource": "eviction",
            "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"}, "verbs": ["create"]}));
    }
    if d.extra.contains(&"binding") {
        subs.push(json!({"subresource": "binding",
            "responseKind": {"group": "", "version": "", "kind": "Binding"}, "verbs": ["create"]}));
    }
    if d.extra.contains(&"log") {
        subs.push(json!({"subresource": "log",
            "responseKind": {"group": "", "version": "", "kind": "Pod"}, "verbs": ["get"]}));
    }
    if d.extra.contains(&"token") {
        subs.push(json!({"subresource": "token",
            "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}, "verbs": ["create"]}));
    }
    if d.extra.contains(&"finalize") {
        subs.push(json!({"subresource": "finalize",
            "responseKind": {"group": "", "version": "", "kind": d.kind}, "verbs": ["update"]}));
    }
    if !subs.is_empty() {
        r["subresources"] = Value::Array(subs);
    }
    r
}

fn group_v2(reg: &Registry, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = reg
                .resources_in(group, v)
                .iter()
                .map(|d| resource_v2(d))
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({})
    } else {
        json!({"name": group})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery of the core group (`/api`) or of every named group (`/apis`).
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| group_v2(reg, g, vs))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
           "metadata": {}, "items": items})
}

pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

pub fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or_else(|| json!({}));
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    reg.groups()
        .iter()
        .find(|(g, _)| g == name && !g.is_empty())
        .map(|(g, vs)| {
            let mut e = group_entry(g, vs);
            e["kind"] = json!("APIGroup");
            e["apiVersion"] = json!("v1");
            e
        })
}

/// `APIResourceList` of one group-version (`/api/v1`, `/apis/G/V`).
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    if !reg.serves(group, version) {
        return None;
    }
    let mut out = Vec::new();
    for d in reg.resources_in(group, version) {
        let mut r = json!({"name": d.resource, "singularName": d.singular,
            "namespaced": d.namespaced, "kind": d.kind, "verbs": d.verbs});
        if !d.short_names.is_empty() {
            r["shortNames"] = json!(d.short_names);
        }
        if !d.categories.is_empty() {
            r["categories"] = json!(d.categories);
        }
        out.push(r);
        let sub = |name: &str, kind: &str, verbs: Value| {
            json!({"name": format!("{}/{name}", d.resource), "singularName": "",
                   "namespaced": d.namespaced, "kind": kind, "verbs": verbs})
        };
        if d.status {
            out.push(sub("status", &d.kind, json!(["get", "patch", "update"])));
        }
        if let Some(_scale) = &d.scale {
            let mut s = sub("scale", "Scale", json!(["get", "patch", "update"]));
            s["group"] = json!("autoscaling");
            s["version"] = json!("v1");
            out.push(s);
        }
        if d.extra.contains(&"eviction") {
            let mut e = sub("eviction", "Eviction", json!(["create"]));
            e["group"] = json!("policy");
            e["version"] = json!("v1");
            out.push(e);
        }
        if d.extra.contains(&"binding") {
            out.push(sub("binding", "Binding", json!(["create"])));
        }
        if d.extra.contains(&"finalize") {
            out.push(sub("finalize", &d.kind, json!(["update"])));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
    }

    #[test]
    fn documents() {
        let reg = Registry::new(&kubevirt_api::crd::all());
        let core = aggregated(&reg, true);
        assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
        let apis = aggregated(&reg, false);
        assert!(
            apis["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|g| g["metadata"]["name"] == "kubevirt.io"))
        );
        let l = resource_list(&reg, "kubevirt.io", "v1").expect("served");
        assert!(
            l["resources"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["name"] == "virtualmachines/status"))
        );
        assert!(resource_list(&reg, "nope", "v1").is_none());
        assert_eq!(
            group(&reg, "kubevirt.io").expect("group")["preferredVersion"]["version"],
            "v1"
        );
    }
}
