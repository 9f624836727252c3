//! API aggregation (I/O): APIServices (`apiregistration.k8s.io/v1`) that name a Service route
//! `/apis/<group>/<version>/...` to that service. Requests are proxied as they come (bodies
//! stream both ways; websocket and SPDY upgrades are spliced through byte for byte), with the
//! caller's identity in `X-Remote-User`/`X-Remote-Group` and our front-proxy client
//! certificate. A checker keeps each APIService's `Available` condition and the backend's
//! discovery document, which `/apis` discovery merges in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::auth::User;
use crate::error::ApiError;
use crate::server::App;
use crate::upstream;

pub const APISERVICES: &str = "apiservices.apiregistration.k8s.io";

/// An APIService served by a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub name: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub service: String,
    pub port: u16,
    pub ca_bundle: Option<Vec<u8>>,
    pub insecure: bool,
    pub group_priority: i64,
    pub version_priority: i64,
}

/// The remote APIServices among stored objects (pure).
pub fn remotes_of(objects: &[Value]) -> Vec<Remote> {
    let mut out: Vec<Remote> = objects
        .iter()
        .filter_map(|o| {
            let spec = o.get("spec")?;
            let svc = spec.get("service").filter(|s| s.is_object())?;
            Some(Remote {
                name: crate::meta::meta_str(o, "name")?.to_string(),
                group: spec.get("group")?.as_str()?.to_string(),
                version: spec.get("version")?.as_str()?.to_string(),
                namespace: svc.get("namespace")?.as_str()?.to_string(),
                service: svc.get("name")?.as_str()?.to_string(),
                port: svc
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
                ca_bundle: spec.get("caBundle").and_then(Value::as_str).and_then(|b| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(b).ok()
                }),
                insecure: spec.get("insecureSkipTLSVerify") == Some(&json!(true)),
                group_priority: spec
                    .get("groupPriorityMinimum")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
                version_priority: spec
                    .get("versionPriority")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (
            std::cmp::Reverse(a.group_priority),
            &a.group,
            std::cmp::Reverse(a.version_priority),
        )
            .cmp(&(
                std::cmp::Reverse(b.group_priority),
                &b.group,
                std::cmp::Reverse(b.version_priority),
            ))
    });
    out
}

/// What the aggregator knows: the remote APIServices and the discovery documents last fetched
/// from them.
#[derive(Default)]
pub struct Aggregator {
    /// Backends' `APIResourceList`s by (group, version), with whether the last check passed.
    discovery: Mutex<HashMap<(String, String), (Value, bool)>>,
}

/// The remote APIServices as stored now.
pub fn remotes(app: &App) -> Vec<Remote> {
    let objects: Vec<Value> = {
        let cache = app.store.read();
        cache
            .objects
            .get(APISERVICES)
            .map(|m| m.values().filter_map(|o| o.value().ok()).collect())
            .unwrap_or_default()
    };
    remotes_of(&objects)
}

/// The remote APIService serving `/apis/<group>/<version>`, unless the server serves it itself.
pub fn remote_for(app: &App, group: &str, version: &str) -> Option<Remote> {
    let cache = app.store.read();
    let m = cache.objects.get(APISERVICES)?;
    if m.is_empty() || app.registry().serves(group, version) {
        return None;
    }
    let o = m
        .get(&crate::store::object_key("", &format!("{version}.{group}")))?
        .value()
        .ok()?;
    remotes_of(&[o]).into_iter().next()
}

/// Groups served by remote APIServices, with their versions (preferred first).
pub fn groups(app: &App) -> Vec<(String, Vec<String>)> {
    let reg = app.registry();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in remotes(app) {
        if reg.serves(&r.group, &r.version) {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) => vs.push(r.version.clone()),
            None => out.push((r.group.clone(), vec![r.version.clone()])),
        }
    }
    out
}

/// Aggregated discovery (v2) entries of remote groups, from the backends' documents.
pub fn aggregated_items(app: &App) -> Vec<Value> {
    let docs = app
        .aggregator
        .discovery
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    groups(app)
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let (doc, fresh) = docs
                        .get(&(g.clone(), v.clone()))
                        .cloned()
                        .unwrap_or((Value::Null, false));
                    json!({"version": v, "resources": v2_resources(&doc),
                           "freshness": if fresh { "Current" } else { "Stale" }})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect()
}

/// An `APIResourceList` as aggregated discovery's resources (subresources under their parent).
pub fn v2_resources(list: &Value) -> Vec<Value> {
    let entries = list
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for r in entries.iter() {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() || name.contains('/') {
            continue;
        }
        let mut e = json!({
            "resource": name,
            "responseKind": {"group": "", "version": "", "kind": r.get("kind").cloned().unwrap_or(json!(""))},
            "scope": if r.get("namespaced") == Some(&json!(true)) { "Namespaced" } else { "Cluster" },
            "singularResource": r.get("singularName").cloned().unwrap_or(json!("")),
            "verbs": r.get("verbs").cloned().unwrap_or(json!([])),
        });
        for k in ["shortNames", "categories"] {
            if let Some(v) = r.get(k) {
                e[k] = v.clone();
            }
        }
        out.push(e);
    }
    for r in entries.iter() {
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let Some((parent, sub)) = name.split_once('/') else {
            continue;
        };
        let s = json!({"subresource": sub,
            "responseKind": {"group": "", "version": "", "kind": r.get("kind").cloned().unwrap_or(json!(""))},
            "verbs": r.get("verbs").cloned().unwrap_or(json!([]))});
        match out.iter_mut().find(|e| e["resource"] == parent) {
            Some(e) => match e.get_mut("subresources").and_then(Value::as_array_mut) {
                Some(a) => a.push(s),
                None => e["subresources"] = json!([s]),
            },
            None => out.push(json!({"resource": parent, "responseKind": {"group": "", "version": "", "kind": ""},
                "scope": if r.get("namespaced") == Some(&json!(true)) { "Namespaced" } else { "Cluster" },
                "verbs": [], "subresources": [s]})),
        }
    }
    out
}

fn target(app: &App, r: &Remote) -> Result<upstream::Target, (String, String)> {
    let addr =
        crate::admit::resolve_service(app, &r.namespace, &r.service, r.port).map_err(|e| {
            let reason = if e.contains("not found") {
                "ServiceNotFound"
            } else {
                "MissingEndpoints"
            };
            (reason.to_string(), e)
        })?;
    Ok(upstream::Target {
        addr,
        server_name: format!("{}.{}.svc", r.service, r.namespace),
        verify: match (&r.ca_bundle, r.insecure) {
            (_, true) => upstream::Verify::Insecure,
            (Some(ca), false) => upstream::Verify::Ca(ca.clone()),
            (None, false) => upstream::Verify::Ca(app.ca_pem.clone().into_bytes()),
        },
        client_cert: app.proxy_client_cert.clone(),
    })
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a request asks to switch protocols (websocket, SPDY).
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && h.contains_key(header::UPGRADE)
}

/// Headers for the backend: hop-by-hop ones dropped (kept for an upgrade), credentials and
/// impersonation removed, the authenticated user added.
fn forward_headers(h: &HeaderMap, user: &User, upgrade: bool, host: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in h {
        let name = k.as_str();
        let hop = HOP_BY_HOP.contains(&name);
        if (hop && !(upgrade && (name == "connection" || name == "upgrade")))
            || name == "authorization"
            || name == "host"
            || name.starts_with("impersonate-")
            || name.starts_with("x-remote-")
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        out.insert(header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&user.name) {
        out.insert(HeaderName::from_static("x-remote-user"), v);
    }
    for g in &user.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            out.append(HeaderName::from_static("x-remote-group"), v);
        }
    }
    out
}

fn unavailable(message: String) -> Response {
    let e = ApiError::new(503, "ServiceUnavailable", message);
    let mut r = Response::new(Body::from(e.to_status().to_string()));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Proxies one request to the APIService's backend, streaming, with upgrades spliced through.
pub async fn proxy(app: &Arc<App>, remote: &Remote, req: Request, user: &User) -> Response {
    let t = match target(app, remote) {
        Ok(t) => t,
        Err((_, e)) => return unavailable(format!("error trying to reach service: {e}")),
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    match forward(&t, req, &path, user).await {
        Ok(r) => r,
        Err(e) => unavailable(format!("error trying to reach service: {e}")),
    }
}

/// Sends `req` to `t` at `path` (streaming both ways; an upgrade is spliced through once the
/// backend switches protocols) and returns the backend's answer.
pub async fn forward(
    t: &upstream::Target,
    mut req: Request,
    path: &str,
    user: &User,
) -> Result<Response, String> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let headers = forward_headers(req.headers(), user, upgrade, &t.server_name);
    let method = req.method().clone();
    let mut out = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .version(axum::http::Version::HTTP_11);
    if let Some(h) = out.headers_mut() {
        *h = headers;
    }
    let body = if upgrade {
        Body::empty()
    } else {
        req.into_body()
    };
    let out = out.body(body).map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(10), upstream::connect(t))
        .await
        .map_err(|_| "context deadline exceeded".to_string())??;
    let mut resp = conn.send(out).await?;
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        let target = t.addr;
        tokio::spawn(async move {
            let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
                (Ok(c), Ok(b)) => (c, b),
                (c, b) => {
                    tracing::debug!(client = c.is_ok(), backend = b.is_ok(), "upgrade failed");
                    return;
                }
            };
            let mut client = hyper_util::rt::TokioIo::new(client);
            let mut backend = hyper_util::rt::TokioIo::new(backend);
            match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                Ok((up, down)) => tracing::debug!(%target, up, down, "proxied stream ended"),
                Err(e) => tracing::debug!(%target, error = %e, "proxied stream broke"),
            }
        });
        let mut r = Response::new(Body::empty());
        *r.status_mut() = status;
        for (k, v) in resp.headers() {
            r.headers_mut().append(k.clone(), v.clone());
        }
        return Ok(r);
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in resp.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            r.headers_mut().append(k.clone(), v.clone());
        }
    }
    *r.body_mut() = Body::new(resp.into_body());
    Ok(r)
}

/// Checks each remote APIService (its backend's discovery document), records the document and
/// writes the `Available` condition when it changes. Runs until the store shuts down.
pub async fn run(app: Arc<App>) {
    let mut changes = app.store.subscribe();
    loop {
        check_all(&app).await;
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn check_all(app: &Arc<App>) {
    let objects: Vec<Value> = {
        let cache = app.store.read();
        cache
            .objects
            .get(APISERVICES)
            .map(|m| m.values().filter_map(|o| o.value().ok()).collect())
            .unwrap_or_default()
    };
    for o in objects {
        let name = crate::meta::meta_str(&o, "name")
            .unwrap_or_default()
            .to_string();
        let remote = remotes_of(std::slice::from_ref(&o)).into_iter().next();
        let (ok, reason, message) = match &remote {
            None => (
                true,
                "Local".to_string(),
                "Local APIServices are always available".to_string(),
            ),
            Some(r) => match check(app, r).await {
                Ok(doc) => {
                    app.aggregator
                        .discovery
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((r.group.clone(), r.version.clone()), (doc, true));
                    (true, "Passed".to_string(), "all checks passed".to_string())
                }
                Err((reason, message)) => {
                    if let Some(e) = app
                        .aggregator
                        .discovery
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(&(r.group.clone(), r.version.clone()))
                    {
                        e.1 = false;
                    }
                    (false, reason, message)
                }
            },
        };
        let cur = o
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Available"))
            .cloned();
        let status = if ok { "True" } else { "False" };
        if cur.as_ref().is_some_and(|c| {
            c["status"] == status
                && c["reason"] == reason.as_str()
                && c["message"] == message.as_str()
        }) {
            continue;
        }
        let since = cur
            .as_ref()
            .filter(|c| c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(crate::meta::now_rfc3339()));
        let mut new = o.clone();
        new["status"] = json!({"conditions": [{"type": "Available", "status": status,
            "lastTransitionTime": since, "reason": reason, "message": message}]});
        let Some(def) = app.registry().by_gr(APISERVICES) else {
            return;
        };
        let ctx = crate::controllers::system_ctx(def, "");
        match app
            .store
            .write(crate::ops::update(
                ctx,
                name.clone(),
                new,
                crate::ops::Part::Status,
            ))
            .await
        {
            Ok(_) => {
                tracing::info!(apiservice = %name, available = ok, %reason, "APIService availability")
            }
            Err(e) => {
                tracing::debug!(apiservice = %name, error = %e, "could not record availability")
            }
        }
    }
}

/// One availability check: the backend answers its group-version's discovery document.
async fn check(app: &App, r: &Remote) -> Result<Value, (String, String)> {
    let t = target(app, r)?;
    let path = format!("/apis/{}/{}", r.group, r.version);
    let url = format!("https://{}:{}{path}", t.server_name, r.port);
    let work = async {
        let conn = upstream::connect(&t).await?;
        let req = axum::http::Request::get(path.as_str())
            .header(header::HOST, t.server_name.clone())
            .header(header::ACCEPT, "application/json")
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let resp = conn.send(req).await?;
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(Body::new(resp.into_body()), 4 * 1024 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        if code != 200 {
            return Err(format!("bad status from {url}: {code}"));
        }
        serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(5), work).await {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err((
            "FailedDiscoveryCheck".into(),
            format!("failing or missing response from {url}: {e}"),
        )),
        Err(_) => Err((
            "FailedDiscoveryCheck".into(),
            format!("failing or missing response from {url}: context deadline exceeded"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_apiservices_and_their_order() {
        let objs = vec![
            json!({"metadata": {"name": "v1.local.io"}, "spec": {"group": "local.io", "version": "v1"}}),
            json!({"metadata": {"name": "v1.b.io"}, "spec": {"group": "b.io", "version": "v1",
                "service": {"namespace": "n", "name": "s"}, "groupPriorityMinimum": 10, "versionPriority": 5}}),
            json!({"metadata": {"name": "v1.a.io"}, "spec": {"group": "a.io", "version": "v1",
                "service": {"namespace": "n", "name": "s", "port": 8443}, "caBundle": "Q0E=",
                "groupPriorityMinimum": 1000, "versionPriority": 15}}),
        ];
        let r = remotes_of(&objs);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].group, "a.io");
        assert_eq!(r[0].port, 8443);
        assert_eq!(r[0].ca_bundle.as_deref(), Some(&b"CA"[..]));
        assert_eq!(r[1].port, 443);
    }

    #[test]
    fn discovery_documents_become_v2_resources() {
        let list = json!({"kind": "APIResourceList", "groupVersion": "subresources.kubevirt.io/v1", "resources": [
            {"name": "virtualmachineinstances/console", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
            {"name": "virtualmachineinstances/vnc", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": ["get"]},
            {"name": "echoes", "singularName": "echo", "namespaced": false, "kind": "Echo", "verbs": ["get", "list"]},
        ]});
        let r = v2_resources(&list);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["resource"], "echoes");
        assert_eq!(r[0]["scope"], "Cluster");
        assert_eq!(r[1]["resource"], "virtualmachineinstances");
        assert_eq!(r[1]["subresources"][1]["subresource"], "vnc");
        assert!(v2_resources(&Value::Null).is_empty());
    }

    #[test]
    fn forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("impersonate-user", HeaderValue::from_static("root"));
        h.insert("x-remote-user", HeaderValue::from_static("root"));
        h.insert("sec-websocket-key", HeaderValue::from_static("k"));
        assert!(is_upgrade(&h));
        let user = User::new("alice", &["dev"]);
        let out = forward_headers(&h, &user, true, "svc.ns.svc");
        assert!(out.get(header::AUTHORIZATION).is_none());
        assert!(out.get("impersonate-user").is_none());
        assert_eq!(
            out.get("x-remote-user").map(|v| v.as_bytes()),
            Some(&b"alice"[..])
        );
        assert_eq!(out.get_all("x-remote-group").iter().count(), 2);
        assert!(out.get(header::UPGRADE).is_some());
        assert!(out.get("sec-websocket-key").is_some());
        let plain = forward_headers(&h, &user, false, "svc.ns.svc");
        assert!(plain.get(header::UPGRADE).is_none());
        assert!(plain.get(header::CONNECTION).is_none());
    }
}
