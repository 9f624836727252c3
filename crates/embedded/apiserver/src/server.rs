//! The HTTP(S) front: routing, content negotiation, query options, and the server's lifecycle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::convert::View;
use crate::error::{ApiError, Error};
use crate::ops::{self, DeleteOpts, FieldValidation, Part, PatchType, WriteCtx};
use crate::resources::{Registry, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Store, TxFn, object_key};
use crate::table::{IncludeObject, partial_metadata, table};
use crate::watch::{self, Form, WatchRequest};
use crate::{discovery, openapi};

/// Largest request body accepted (what Kubernetes accepts, 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// How the server is run.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Events kept in memory for watches to resume from.
    pub watch_window: usize,
    /// A static token file (`token,user,uid,"group1,group2"` lines).
    pub token_auth_file: Option<PathBuf>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen,
            watch_window: 50_000,
            token_auth_file: None,
        }
    }
}

/// Shared state of a running server.
pub struct App {
    pub store: Store,
    registry: RwLock<Arc<Registry>>,
    openapi: Mutex<Option<(usize, Arc<openapi::Documents>)>>,
    address: String,
    /// The cluster CA (PEM), published in every namespace as `kube-root-ca.crt`.
    pub ca_pem: String,
    /// Parsed admission webhook configurations.
    pub hooks: crate::admit::HookCache,
    /// Aggregated APIServices' discovery documents.
    pub aggregator: crate::aggregator::Aggregator,
    /// The client certificate presented to aggregated API servers and kubelets.
    pub proxy_client_cert: Option<crate::upstream::ClientCert>,
    /// Static tokens and the service account token key.
    pub authn: crate::authn::Authn,
    /// The RBAC policy.
    pub rbac: crate::authz::PolicyCache,
}

impl App {
    /// The address the server listens on.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl App {
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Rebuilds the registry from the stored CRDs (after any CRD change).
    pub fn refresh_registry(&self) {
        let crds: Vec<_> = {
            let cache = self.store.read();
            cache
                .objects
                .get(ops::CRDS)
                .map(|m| {
                    m.values()
                        .filter_map(|o| serde_json::from_slice(&o.json).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let reg = Arc::new(Registry::new(&crds));
        match self.registry.write() {
            Ok(mut r) => *r = reg,
            Err(p) => *p.into_inner() = reg,
        }
    }

    fn openapi_docs(&self) -> Arc<openapi::Documents> {
        let reg = self.registry();
        let id = Arc::as_ptr(&reg) as usize;
        let mut guard = self.openapi.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, docs)) = guard.as_ref()
            && *cached == id
        {
            return docs.clone();
        }
        let docs = Arc::new(openapi::Documents::build(&reg));
        *guard = Some((id, docs.clone()));
        docs
    }
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub app: Arc<App>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Opens the store, prepares TLS and the kubeconfig, binds, and serves in the background.
pub async fn start(config: Config) -> Result<Running, Error> {
    let pki = crate::tls::Pki::new(&config.data_dir);
    pki.ensure()?;
    let tls = pki.server_config()?;
    let (proxy_cert, proxy_key) =
        pki.client_cert("front-proxy-client", "front-proxy-client", &[])?;
    let static_tokens = match &config.token_auth_file {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| Error::io(p.display().to_string(), e))?;
            crate::authn::parse_token_file(&text)
                .map_err(|e| Error::Tls(format!("{}: {e}", p.display())))?
        }
        None => Default::default(),
    };
    let store = Store::open(
        &config.data_dir.join("apiserver"),
        config.watch_window,
        crate::resources::selectable_for_gr,
    )?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(config.listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(config.listen.to_string(), e))?;
    let app = Arc::new(App {
        store,
        registry: RwLock::new(Arc::new(Registry::new(&[]))),
        openapi: Mutex::new(None),
        address: addr.to_string(),
        ca_pem: std::fs::read_to_string(pki.path("ca.crt"))
            .map_err(|e| Error::io(pki.path("ca.crt").display().to_string(), e))?,
        hooks: Default::default(),
        aggregator: Default::default(),
        proxy_client_cert: Some(crate::upstream::ClientCert {
            cert_pem: proxy_cert,
            key_pem: proxy_key,
        }),
        authn: crate::authn::Authn {
            static_tokens,
            signer: pki.service_account_signer()?,
        },
        rbac: Default::default(),
    });
    app.refresh_registry();
    crate::controllers::bootstrap(&app).await?;
    tokio::spawn(crate::controllers::run(app.clone()));
    tokio::spawn(crate::aggregator::run(app.clone()));
    let kubeconfig = config.data_dir.join("kubeconfig");
    crate::tls::write_private(
        &kubeconfig,
        pki.kubeconfig(&format!("https://{addr}"))?.as_bytes(),
    )?;
    pki.component_kubeconfigs(&config.data_dir, &format!("https://{addr}"))?;
    let router = Router::new().fallback(handle).with_state(app.clone());
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "apiserver listening");
    let task = kubevirt_https::serve(listener, tls, router);
    Ok(Running {
        addr,
        kubeconfig,
        app,
        task,
    })
}

// ---------------------------------------------------------------------------------------------
// Responses

fn respond(code: u16, body: Vec<u8>, content_type: &str, warnings: &[String]) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            h.append(header::WARNING, v);
        }
    }
    r
}

fn json_response(code: u16, v: &Value, warnings: &[String]) -> Response {
    respond(
        code,
        serde_json::to_vec(v).unwrap_or_default(),
        "application/json",
        warnings,
    )
}

fn error_response(e: &ApiError) -> Response {
    if e.code >= 500 {
        tracing::error!(code = e.code, reason = e.reason, message = %e.message, "request failed");
    }
    json_response(e.code, &e.to_status(), &[])
}

// ---------------------------------------------------------------------------------------------
// Requests

struct Query(HashMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let mut m = HashMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(decode(k), decode(v));
        }
        Query(m)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {s}"))),
        }
    }
}

/// Percent-decoding (and `+` as space, for query strings).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the client accepts for object responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    Json,
    Table,
    Metadata,
}

fn accept_of(h: &HeaderMap) -> Result<Accept, ApiError> {
    let a = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .replace(' ', "");
    if a.is_empty() {
        return Ok(Accept::Json);
    }
    for part in a.split(',') {
        if part.contains("as=Table") && part.starts_with("application/json") {
            return Ok(Accept::Table);
        }
        if (part.contains("as=PartialObjectMetadataList")
            || part.contains("as=PartialObjectMetadata;")
            || part.ends_with("as=PartialObjectMetadata"))
            && part.starts_with("application/json")
        {
            return Ok(Accept::Metadata);
        }
        let base = part.split(';').next().unwrap_or("");
        if matches!(
            base,
            "application/json" | "*/*" | "application/*" | "application/yaml"
        ) && !part.contains("as=")
        {
            return Ok(Accept::Json);
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
    ))
}

/// A parsed resource path.
#[derive(Debug, Clone)]
struct ResPath {
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_res_path(group: &str, version: &str, segs: &[String]) -> Option<ResPath> {
    let mk = |ns: Option<&String>, rest: &[String]| -> Option<ResPath> {
        if rest.is_empty() || rest.len() > 3 {
            return None;
        }
        Some(ResPath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: ns.cloned(),
            resource: rest[0].clone(),
            name: rest.get(1).cloned(),
            sub: rest.get(2).cloned(),
        })
    };
    if segs.first().map(String::as_str) == Some("namespaces")
        && segs.len() >= 3
        && !(segs.len() == 3 && matches!(segs[2].as_str(), "status" | "finalize"))
    {
        return mk(segs.get(1), &segs[2..]);
    }
    mk(None, segs)
}

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let certs: Vec<Vec<u8>> = req
        .extensions()
        .get::<kubevirt_https::Peer>()
        .map(|p| p.certificates.iter().map(|c| c.as_ref().to_vec()).collect())
        .unwrap_or_default();
    let user = match crate::authn::authenticate(&app, req.headers(), &certs) {
        Ok(u) => u,
        Err(crate::authn::Refusal::Anonymous) if is_health(&path) => {
            crate::auth::User::new("system:anonymous", &["system:unauthenticated"])
        }
        Err(why) => {
            tracing::debug!(%method, %path, reason = ?why, "unauthorized");
            return error_response(&ApiError::new(401, "Unauthorized", "Unauthorized"));
        }
    };
    let watch = matches!(
        Query::parse(req.uri().query()).get("watch"),
        Some("true" | "1")
    );
    let attrs = crate::rbac::request_of(method.as_str(), &path, watch);
    if let Err(e) = crate::authz::check(&app, &user, &attrs) {
        return error_response(&e);
    }
    // `kubectl exec`: spliced through to the pod's kubelet.
    if let ["api", "v1", "namespaces", ns, "pods", pod, "exec"] = path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        let (ns, pod) = (decode(ns), decode(pod));
        return match crate::kubelet::pod_exec(&app, &ns, &pod, req, &user).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
    }
    // Aggregated APIs: proxied as they come, bodies and upgrades streaming.
    if let Some(rest) = path.strip_prefix("/apis/") {
        let mut parts = rest.split('/');
        if let (Some(g), Some(v)) = (parts.next(), parts.next())
            && !g.is_empty()
            && !v.is_empty()
            && let Some(remote) = crate::aggregator::remote_for(&app, g, v)
        {
            let started = std::time::Instant::now();
            let resp = crate::aggregator::proxy(&app, &remote, req, &user).await;
            tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "proxied request");
            return resp;
        }
    }
    let query = Query::parse(req.uri().query());
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            ));
        }
    };
    let started = std::time::Instant::now();
    let resp = match route(&app, &method, &path, &query, &headers, body, &user).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

/// Health checks, which anonymous clients may call.
fn is_health(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

async fn route(
    app: &Arc<App>,
    method: &Method,
    path: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
    user: &crate::auth::User,
) -> Result<Response, ApiError> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let accept_hdr = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match s.as_slice() {
        ["version"] => return Ok(json_response(200, &crate::version::info(), &[])),
        ["healthz" | "livez" | "readyz", ..] => {
            return Ok(respond(
                200,
                b"ok".to_vec(),
                "text/plain; charset=utf-8",
                &[],
            ));
        }
        ["api"] | ["apis"] => {
            let reg = app.registry();
            let core = s[0] == "api";
            if discovery::wants_aggregated(accept_hdr) {
                let mut doc = discovery::aggregated(&reg, core);
                if !core && let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
                    items.extend(crate::aggregator::aggregated_items(app));
                }
                let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                let etag = format!("\"{}\"", openapi::content_hash(&bytes));
                let mut r = respond(200, bytes, discovery::AGGREGATED_V2, &[]);
                let h = r.headers_mut();
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
                h.insert(header::VARY, HeaderValue::from_static("Accept"));
                if let Ok(v) = HeaderValue::from_str(&etag) {
                    h.insert(header::ETAG, v);
                }
                return Ok(r);
            }
            let doc = if core {
                discovery::api_versions(&app.address)
            } else {
                let mut d = discovery::group_list(&reg);
                if let Some(groups) = d.get_mut("groups").and_then(Value::as_array_mut) {
                    for (g, vs) in crate::aggregator::groups(app) {
                        groups.push(discovery::group_entry(&g, &vs));
                    }
                }
                d
            };
            return Ok(json_response(200, &doc, &[]));
        }
        ["api", v] => {
            return discovery::resource_list(&app.registry(), "", v)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        ["apis", g] => {
            let remote = || {
                crate::aggregator::groups(app)
                    .into_iter()
                    .find(|(x, _)| x == g)
                    .map(|(x, vs)| {
                        let mut e = discovery::group_entry(&x, &vs);
                        e["kind"] = json!("APIGroup");
                        e["apiVersion"] = json!("v1");
                        e
                    })
            };
            return discovery::group(&app.registry(), g)
                .or_else(remote)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        ["apis", g, v] => {
            return discovery::resource_list(&app.registry(), g, v)
                .map(|d| json_response(200, &d, &[]))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        ["openapi", "v3"] => {
            let docs = app.openapi_docs();
            return Ok(json_response(200, &docs.index(), &[]));
        }
        ["openapi", "v3", rest @ ..] => {
            let key = rest.join("/");
            let docs = app.openapi_docs();
            let Some((hash, bytes)) = docs.docs.get(&key) else {
                return Err(ApiError::path_not_found(path));
            };
            let etag = format!("\"{hash}\"");
            // A client holding this version (kubectl's OpenAPI cache) revalidates with
            // If-None-Match and gets 304 without the document, as from kube-openapi.
            let cached = headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim() == etag || t.trim() == "*");
            let mut r = if cached {
                respond(304, Vec::new(), "application/json", &[])
            } else {
                respond(200, bytes.clone(), "application/json", &[])
            };
            if cached {
                r.headers_mut().remove(header::CONTENT_TYPE);
            }
            let h = r.headers_mut();
            let immutable = q.get("hash") == Some(hash.as_str());
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(if immutable {
                    "public, immutable"
                } else {
                    "no-cache, private"
                }),
            );
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            return Ok(r);
        }
        _ => {}
    }
    let rp = match s.as_slice() {
        ["api", v, rest @ ..] => parse_res_path("", v, &segs[2..]).filter(|_| !rest.is_empty()),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => parse_res_path(g, v, &segs[3..]),
        _ => None,
    }
    .ok_or_else(|| ApiError::path_not_found(path))?;
    resource(app, method, path, rp, q, headers, body, user).await
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid value: \"{other}\": supported values: \"All\""
        ))),
    }
}

/// The field manager: the query's, else derived from the user agent as upstream does.
fn field_manager(q: &Query, headers: &HeaderMap) -> Option<String> {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return Some(m.to_string());
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())?;
    let name = ua.split('/').next().unwrap_or(ua).trim();
    (!name.is_empty()).then(|| name.chars().take(128).collect())
}

async fn run_write(app: &App, f: TxFn, dry: bool) -> Result<Value, ApiError> {
    if dry {
        app.store.dry_run(f)
    } else {
        app.store.write(f).await
    }
}

/// The stored object as a client of `version` sees it (JSON).
pub(crate) fn present_json(def: &ResourceDef, version: &str, v: Value) -> Value {
    present(def, version, v, Accept::Json)
}

/// Rewrites the stored apiVersion to the one requested and renders per Accept.
fn present(def: &ResourceDef, version: &str, v: Value, accept: Accept) -> Value {
    let mut v = crate::convert::to_view(def.view, v);
    if v.get("kind").and_then(Value::as_str) == Some(def.kind.as_str())
        && version != def.storage_version()
        && let Some(m) = v.as_object_mut()
    {
        m.insert("apiVersion".into(), json!(def.api_version(version)));
    }
    match accept {
        Accept::Json => v,
        Accept::Metadata => partial_metadata(&v),
        Accept::Table => {
            if v.get("kind").and_then(Value::as_str) == Some("Status") {
                v
            } else {
                let rv = v
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(json!(""));
                table(
                    def,
                    version,
                    &[v],
                    json!({"resourceVersion": rv}),
                    IncludeObject::Metadata,
                )
            }
        }
    }
}

fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// A request body as JSON: protobuf bodies (kubectl's typed clients) are transcoded.
fn decode_body(headers: &HeaderMap, body: &[u8], kind: &str) -> Result<Value, ApiError> {
    if body_content_type(headers).starts_with(crate::protobuf::CONTENT_TYPE) {
        return crate::protobuf::to_json(body, |api_version, kind| {
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            crate::builtin_schema::schema_for(group, kind)
        })
        .map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {kind}): {e}"
            ))
        });
    }
    ops::decode(body, kind, false)
}

/// The body of a DELETE as JSON bytes (protobuf DeleteOptions are transcoded).
fn delete_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let v = decode_body(headers, body, "DeleteOptions")?;
    serde_json::to_vec(&v).map_err(|e| ApiError::internal(e.to_string()))
}

fn body_content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string()
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    app: &Arc<App>,
    method: &Method,
    path: &str,
    rp: ResPath,
    q: &Query,
    headers: &HeaderMap,
    body: Bytes,
    user: &crate::auth::User,
) -> Result<Response, ApiError> {
    let reg = app.registry();
    let def = reg
        .lookup(&rp.group, &rp.version, &rp.resource)
        .ok_or_else(|| ApiError::path_not_found(path))?;
    if rp.namespace.is_some() && !def.namespaced {
        return Err(ApiError::path_not_found(path));
    }
    if def.namespaced && rp.namespace.is_none() && rp.name.is_some() {
        return Err(ApiError::path_not_found(path));
    }
    // A view (events.k8s.io Events) writes through the resource that owns its storage.
    let store_def = if def.view == View::Native {
        def.clone()
    } else {
        reg.by_gr(&def.gr())
            .ok_or_else(|| ApiError::internal(format!("no storage for {}", def.gr())))?
    };
    let version = rp.version.clone();
    let mut warnings: Vec<String> = def
        .version(&version)
        .and_then(|v| v.deprecation_warning.clone())
        .into_iter()
        .collect();
    let accept = accept_of(headers)?;
    let dry = dry_run(q)?;
    let ns = rp.namespace.clone().unwrap_or_default();
    let warn_sink: ops::Warnings = Arc::new(Mutex::new(Vec::new()));
    let ctx = WriteCtx {
        version: if def.view == View::Native {
            version.clone()
        } else {
            store_def.storage_version().to_string()
        },
        def: store_def.clone(),
        namespace: ns.clone(),
        validation: FieldValidation::parse(q.get("fieldValidation"))?,
        warnings: warn_sink.clone(),
        field_manager: field_manager(q, headers),
        applying: false,
        view: def.view,
    };
    let sub = rp.sub.as_deref();
    let part = match sub {
        None => Part::Main,
        Some("status") if def.status => Part::Status,
        Some("scale") if def.scale.is_some() => Part::Main,
        Some("binding") if def.extra.contains(&"binding") => Part::Main,
        Some("eviction") if def.extra.contains(&"eviction") => Part::Main,
        Some("finalize") if def.extra.contains(&"finalize") => Part::Main,
        Some("token") if def.extra.contains(&"token") => Part::Main,
        Some("log") if def.extra.contains(&"log") => Part::Main,
        Some(_) => return Err(ApiError::path_not_found(path)),
    };
    let is_crd = def.gr() == ops::CRDS;
    if matches!(
        def.group.as_str(),
        "authorization.k8s.io" | "authentication.k8s.io"
    ) {
        if *method != Method::POST || rp.name.is_some() {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            )));
        }
        let body = decode_body(headers, &body, &def.kind)?;
        let v = crate::authz::review(app, &def.group, &def.resource, &ns, body, user)?;
        return Ok(json_response(201, &v, &warnings));
    }
    // Admission webhooks see writes; `hooked` says whether any configured webhook could match.
    let attrs = crate::admission::Attributes {
        gvr: crate::admission::Gvr {
            group: def.group.clone(),
            version: version.clone(),
            resource: def.resource.clone(),
            subresource: sub.unwrap_or("").to_string(),
        },
        kind: (def.group.clone(), version.clone(), def.kind.clone()),
        operation: crate::admission::Operation::Create,
        namespace: ns.clone(),
        namespaced: def.namespaced,
        name: rp.name.clone().unwrap_or_default(),
        dry_run: dry,
        equivalent_versions: def.versions.iter().map(|v| v.name.clone()).collect(),
    };
    let hooked = *method != Method::GET && crate::admit::any_for(app, &attrs);
    let (code, value) = match (method.clone(), rp.name.clone(), sub) {
        (Method::GET, None, None) => {
            if q.flag("watch") {
                return start_watch(app, def, version, rp.namespace, q, accept);
            }
            let out = list(app, &def, &version, rp.namespace.as_deref(), q, accept)?;
            return Ok(respond(200, out, "application/json", &warnings));
        }
        (Method::GET, Some(name), Some("log")) => {
            return crate::kubelet::pod_log(app, &ns, &name, &q.0).await;
        }
        (Method::GET, Some(name), None | Some("status") | Some("scale")) => {
            let key = object_key(&ns, &name);
            let stored = app.store.read().get(&def.gr(), &key).cloned();
            let obj = stored
                .ok_or_else(|| ApiError::not_found(def.subject(), &name))?
                .value()?;
            if sub == Some("scale") {
                (200, ops::scale_of(&def, &obj))
            } else {
                (200, present(&def, &version, obj, accept))
            }
        }
        (Method::POST, None, None) => {
            let mut obj = decode_body(headers, &body, &def.kind)?;
            if def.resource == "bindings" {
                let name = crate::meta::meta_str(&obj, "name")
                    .unwrap_or_default()
                    .to_string();
                let pods = reg
                    .lookup("", "v1", "pods")
                    .ok_or_else(|| ApiError::internal("pods are not registered"))?;
                let pctx = WriteCtx {
                    def: pods,
                    ..ctx.clone()
                };
                let v = run_write(app, ops::bind(pctx, name, obj), dry).await?;
                (201, v)
            } else {
                ops::check_type_meta(&def, &version, &mut obj)?;
                let obj = crate::convert::from_view(def.view, obj);
                let v = if hooked {
                    let c = ctx.clone();
                    crate::admit::write(
                        app,
                        &ctx,
                        &def,
                        &attrs,
                        user,
                        crate::admit::Write::Create,
                        &move || ops::create(c.clone(), obj.clone()),
                        dry,
                        &mut warnings,
                    )
                    .await?
                } else {
                    run_write(app, ops::create(ctx.clone(), obj), dry).await?
                };
                (201, present(&def, &version, v, accept))
            }
        }
        (Method::POST, Some(name), Some("eviction")) => {
            // An eviction is a delete with the Eviction's options (no disruption budgets yet).
            let mut eviction = decode_body(headers, &body, "Eviction")?;
            if hooked {
                let mut a = attrs.clone();
                a.kind = ("policy".into(), "v1".into(), "Eviction".into());
                eviction = crate::admit::run(
                    app,
                    &def,
                    &a,
                    user,
                    Some(eviction),
                    None,
                    json!({}),
                    &mut warnings,
                )
                .await?
                .unwrap_or_default();
            }
            if let Some(n) = crate::meta::meta_str(&eviction, "name")
                && n != name
            {
                return Err(ApiError::bad_request(format!(
                    "name in URL does not match name in Eviction object ({n} != {name})"
                )));
            }
            let options = eviction
                .get("deleteOptions")
                .map(|o| serde_json::to_vec(o).unwrap_or_default())
                .unwrap_or_default();
            let opts = DeleteOpts::from_body(&options, None)?;
            run_write(app, ops::delete(ctx.clone(), name, opts), dry).await?;
            (
                201,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            )
        }
        (Method::POST, Some(name), Some("token")) => {
            let req = decode_body(headers, &body, "TokenRequest")?;
            (201, token_request(app, &ns, &name, req, dry)?)
        }
        (Method::POST, Some(name), Some("binding")) => {
            let mut obj = decode_body(headers, &body, "Binding")?;
            if hooked {
                let mut a = attrs.clone();
                a.kind = (String::new(), "v1".into(), "Binding".into());
                obj = crate::admit::run(
                    app,
                    &def,
                    &a,
                    user,
                    Some(obj),
                    None,
                    json!({}),
                    &mut warnings,
                )
                .await?
                .unwrap_or_default();
            }
            (
                201,
                run_write(app, ops::bind(ctx.clone(), name, obj), dry).await?,
            )
        }
        (Method::PUT, Some(name), Some("scale")) => {
            let obj = decode_body(headers, &body, "Scale")?;
            (
                200,
                run_write(app, ops::update_scale(ctx.clone(), name, None, obj), dry).await?,
            )
        }
        (Method::PUT, Some(name), None | Some("status") | Some("finalize")) => {
            let mut obj = decode_body(headers, &body, &def.kind)?;
            ops::check_type_meta(&def, &version, &mut obj)?;
            let obj = crate::convert::from_view(def.view, obj);
            let v = if hooked {
                let retry =
                    crate::meta::meta_str(&obj, "resourceVersion").is_none_or(str::is_empty);
                let c = ctx.clone();
                let n = name.clone();
                crate::admit::write(
                    app,
                    &ctx,
                    &def,
                    &attrs,
                    user,
                    crate::admit::Write::Update {
                        name: name.clone(),
                        part,
                        retry,
                    },
                    &move || ops::update(c.clone(), n.clone(), obj.clone(), part),
                    dry,
                    &mut warnings,
                )
                .await?
            } else {
                run_write(app, ops::update(ctx.clone(), name, obj, part), dry).await?
            };
            (200, present(&def, &version, v, accept))
        }
        (Method::PATCH, Some(name), None | Some("status") | Some("scale")) => {
            let ct = body_content_type(headers);
            let ty = PatchType::from_content_type(&ct, q.flag("force")).ok_or_else(|| {
                ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                    if def.custom { "" } else { ", application/strategic-merge-patch+json" }
                ))
            })?;
            if ty == PatchType::Strategic && def.custom {
                return Err(ApiError::unsupported_media_type(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            let patch_body = ops::decode(&body, &def.kind, matches!(ty, PatchType::Apply { .. }))?;
            // A JSON patch that does not decode as a list of operations is a malformed request
            // (400), as upstream; operations that do not apply stay 422.
            if ty == PatchType::Json
                && !patch_body
                    .as_array()
                    .is_some_and(|ops| ops.iter().all(Value::is_object))
            {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal the patch into a list of JSON patch operations",
                ));
            }
            if sub == Some("scale") {
                (
                    200,
                    run_write(
                        app,
                        ops::update_scale(ctx.clone(), name, Some(ty), patch_body),
                        dry,
                    )
                    .await?,
                )
            } else {
                let created = matches!(ty, PatchType::Apply { .. })
                    && app
                        .store
                        .read()
                        .get(&def.gr(), &object_key(&ns, &name))
                        .is_none();
                let v = if hooked {
                    let c = ctx.clone();
                    let n = name.clone();
                    crate::admit::write(
                        app,
                        &ctx,
                        &def,
                        &attrs,
                        user,
                        crate::admit::Write::Update {
                            name: name.clone(),
                            part,
                            retry: true,
                        },
                        &move || ops::patch(c.clone(), n.clone(), ty, patch_body.clone(), part),
                        dry,
                        &mut warnings,
                    )
                    .await?
                } else {
                    run_write(
                        app,
                        ops::patch(ctx.clone(), name, ty, patch_body, part),
                        dry,
                    )
                    .await?
                };
                (
                    if created { 201 } else { 200 },
                    present(&def, &version, v, accept),
                )
            }
        }
        (Method::DELETE, Some(name), None) => {
            let raw_opts = delete_body(headers, &body)?;
            let opts = DeleteOpts::from_body(&raw_opts, q.int("gracePeriodSeconds")?)?;
            if hooked {
                let cur = app
                    .store
                    .read()
                    .get(&def.gr(), &object_key(&ns, &name))
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(def.subject(), &name))?
                    .value()?;
                let old = present(&def, &version, cur, Accept::Json);
                let mut a = attrs.clone();
                a.operation = crate::admission::Operation::Delete;
                let options = serde_json::from_slice(&raw_opts).unwrap_or_else(|_| json!({}));
                crate::admit::run(
                    app,
                    &def,
                    &a,
                    user,
                    None,
                    Some(&old),
                    options,
                    &mut warnings,
                )
                .await?;
            }
            let v = run_write(app, ops::delete(ctx.clone(), name, opts), dry).await?;
            (200, present(&def, &version, v, accept))
        }
        (Method::DELETE, None, None) => {
            let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
            let fields = field_selector(&def, q)?;
            let raw_opts = delete_body(headers, &body)?;
            let opts = DeleteOpts::from_body(&raw_opts, q.int("gracePeriodSeconds")?)?;
            if hooked {
                // Every object is admitted (DELETE, as upstream does per item) before any goes.
                let prefix = if def.namespaced && !ns.is_empty() {
                    format!("{ns}/")
                } else {
                    String::new()
                };
                let items: Vec<Value> = {
                    let cache = app.store.read();
                    cache
                        .objects
                        .get(&def.gr())
                        .map(|m| {
                            m.range(prefix.clone()..)
                                .take_while(|(k, _)| k.starts_with(&prefix))
                                .filter(|(_, o)| ops::matches(o, &labels, &fields))
                                .filter_map(|(_, o)| o.value().ok())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let options = serde_json::from_slice(&raw_opts).unwrap_or_else(|_| json!({}));
                for item in items {
                    let mut a = attrs.clone();
                    a.operation = crate::admission::Operation::Delete;
                    a.name = crate::meta::meta_str(&item, "name")
                        .unwrap_or_default()
                        .to_string();
                    a.namespace = crate::meta::meta_str(&item, "namespace")
                        .unwrap_or_default()
                        .to_string();
                    let old = present(&def, &version, item, Accept::Json);
                    crate::admit::run(
                        app,
                        &def,
                        &a,
                        user,
                        None,
                        Some(&old),
                        options.clone(),
                        &mut warnings,
                    )
                    .await?;
                }
            }
            let v = run_write(
                app,
                ops::delete_collection(ctx.clone(), labels, fields, opts),
                dry,
            )
            .await?;
            (200, v)
        }
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            )));
        }
    };
    if is_crd && !dry && *method != Method::GET {
        app.refresh_registry();
    }
    if let Ok(w) = warn_sink.lock() {
        warnings.extend(w.iter().cloned());
    }
    Ok(json_response(code, &value, &warnings))
}

/// `serviceaccounts/<name>/token`: a signed token for the service account, optionally bound to
/// a Pod, Secret or Node that must exist (and the token dies with it).
fn token_request(
    app: &App,
    ns: &str,
    name: &str,
    mut req: Value,
    dry: bool,
) -> Result<Value, ApiError> {
    let subject = crate::error::Subject {
        group: "",
        resource: "serviceaccounts",
        kind: "ServiceAccount",
    };
    let tr_subject = crate::error::Subject {
        group: "authentication.k8s.io",
        resource: "tokenrequests",
        kind: "TokenRequest",
    };
    let sa = app
        .store
        .read()
        .get("serviceaccounts", &object_key(ns, name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(subject, name))?;
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![crate::tokens::ISSUER.to_string()]);
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid(
            tr_subject,
            name,
            vec![crate::error::Cause::invalid(
                "spec.expirationSeconds",
                format!(
                    "Invalid value: {expiration}: may not specify a duration less than 10 minutes"
                ),
            )],
        ));
    }
    let expiration = expiration.min(48 * 3600);
    let bound = match spec.get("boundObjectRef").filter(|b| b.is_object()) {
        None => None,
        Some(b) => {
            let kind = b.get("kind").and_then(Value::as_str).unwrap_or("");
            let bname = b.get("name").and_then(Value::as_str).unwrap_or("");
            let (gr, key) = match kind {
                "Pod" => ("pods", object_key(ns, bname)),
                "Secret" => ("secrets", object_key(ns, bname)),
                "Node" => ("nodes", object_key("", bname)),
                other => {
                    return Err(ApiError::invalid(
                        tr_subject,
                        name,
                        vec![crate::error::Cause::not_supported(
                            "spec.boundObjectRef.kind",
                            format!(
                                "Unsupported value: \"{other}\": supported values: \"Pod\", \"Secret\", \"Node\""
                            ),
                        )],
                    ));
                }
            };
            let obj = app.store.read().get(gr, &key).cloned().ok_or_else(|| {
                ApiError::not_found(
                    crate::error::Subject {
                        group: "",
                        resource: gr,
                        kind,
                    },
                    bname,
                )
            })?;
            if let Some(u) = b.get("uid").and_then(Value::as_str)
                && !u.is_empty()
                && u != obj.uid
            {
                return Err(ApiError::conflict(
                    tr_subject,
                    name,
                    &format!(
                        "the UID in the bound object reference ({u}) does not match the UID in record"
                    ),
                ));
            }
            Some(crate::tokens::Bound {
                kind: kind.to_string(),
                name: bname.to_string(),
                uid: obj.uid.clone(),
            })
        }
    };
    let now = crate::meta::now_seconds();
    let claims = crate::tokens::claims(
        ns,
        name,
        &sa.uid,
        &audiences,
        now,
        expiration,
        bound.as_ref(),
        &crate::meta::new_uid(),
    );
    let token = if dry {
        String::new()
    } else {
        app.authn.signer.sign(&claims).map_err(ApiError::internal)?
    };
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] =
        json!({"name": name, "namespace": ns, "creationTimestamp": crate::meta::now_rfc3339()});
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(expiration);
    if let Some(b) = &bound {
        req["spec"]["boundObjectRef"]["uid"] = json!(b.uid);
    }
    req["status"] =
        json!({"token": token, "expirationTimestamp": crate::meta::format_time(now + expiration)});
    tracing::info!(namespace = %ns, serviceaccount = %name, expiration, "issued a service account token");
    Ok(req)
}

fn field_selector(def: &ResourceDef, q: &Query) -> Result<FieldSelector, ApiError> {
    let mut fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    for r in fields.0.iter_mut() {
        r.field = crate::convert::field_from_view(def.view, &r.field);
    }
    let supported = def.selectable_fields();
    if let Some(bad) = fields.unsupported(&supported) {
        return Err(ApiError::bad_request(format!(
            "field label not supported: {bad}"
        )));
    }
    Ok(fields)
}

/// The continue token: where the next page starts and the list's revision.
fn encode_continue(rv: u64, start: &str) -> String {
    use base64::Engine;
    let t = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.to_string())
}

fn decode_continue(tok: &str) -> Result<(u64, String), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

/// A list, rendered straight from stored bytes when no conversion is needed.
fn list(
    app: &App,
    def: &Arc<ResourceDef>,
    version: &str,
    namespace: Option<&str>,
    q: &Query,
    accept: Accept,
) -> Result<Vec<u8>, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = field_selector(def, q)?;
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let (token_rv, start) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (rv, s) = decode_continue(c)?;
            (Some(rv), s)
        }
        None => (None, String::new()),
    };
    let prefix = namespace.map(|n| format!("{n}/")).unwrap_or_default();
    let pinned_name = fields.pinned("metadata.name").map(str::to_string);
    let (items, rv, next, remaining) = {
        let cache = app.store.read();
        let rv = token_rv.unwrap_or(cache.rev);
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0usize;
        if let Some(m) = cache.objects.get(&def.gr()) {
            let from = if start.as_str() > prefix.as_str() {
                start.clone()
            } else {
                prefix.clone()
            };
            let iter = m.range(from..).take_while(|(k, _)| k.starts_with(&prefix));
            let mut counting = false;
            let mut last_key = String::new();
            for (k, o) in iter {
                if counting {
                    remaining += 1;
                    continue;
                }
                if let Some(n) = &pinned_name
                    && o.name != *n
                {
                    continue;
                }
                if !ops::matches(o, &labels, &fields) {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    next = Some(format!("{last_key}\u{0}"));
                    if labels.is_empty() && fields.is_empty() {
                        counting = true;
                        remaining = 1;
                        continue;
                    }
                    break;
                }
                last_key = k.clone();
                items.push(o.clone());
            }
        }
        (items, rv, next, remaining)
    };
    let mut list_meta = json!({"resourceVersion": rv.to_string()});
    if let Some(n) = &next {
        list_meta["continue"] = json!(encode_continue(rv, n));
        if remaining > 0 {
            list_meta["remainingItemCount"] = json!(remaining);
        }
    }
    let convert = version != def.storage_version() || def.view != View::Native;
    match accept {
        Accept::Json if !convert => {
            let mut out =
                Vec::with_capacity(items.iter().map(|o| o.json.len() + 1).sum::<usize>() + 256);
            out.extend_from_slice(
                format!(
                    "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{},\"items\":[",
                    json!(def.api_version(version)),
                    json!(def.list_kind()),
                    list_meta
                )
                .as_bytes(),
            );
            for (i, o) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&o.json);
            }
            out.extend_from_slice(b"]}");
            Ok(out)
        }
        _ => {
            let values: Vec<Value> = items
                .iter()
                .map(|o| o.value().map(|v| present(def, version, v, Accept::Json)))
                .collect::<Result<_, _>>()?;
            let doc = match accept {
                Accept::Table => table(def, version, &values, list_meta, include_object(q)),
                Accept::Metadata => json!({
                    "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta,
                    "items": values.iter().map(partial_metadata).collect::<Vec<_>>(),
                }),
                Accept::Json => {
                    json!({"apiVersion": def.api_version(version), "kind": def.list_kind(),
                                        "metadata": list_meta, "items": values})
                }
            };
            serde_json::to_vec(&doc).map_err(|e| ApiError::internal(e.to_string()))
        }
    }
}

fn start_watch(
    app: &App,
    def: Arc<ResourceDef>,
    version: String,
    namespace: Option<String>,
    q: &Query,
    accept: Accept,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = field_selector(&def, q)?;
    // Upstream picks a random timeout in [min, 2*min) with min 30 minutes when none is given.
    let timeout = q.int("timeoutSeconds")?.filter(|t| *t > 0).unwrap_or(1800) as u64;
    let form = match accept {
        Accept::Json => Form::Full,
        Accept::Metadata => Form::Metadata,
        Accept::Table => Form::Table(include_object(q)),
    };
    let req = WatchRequest {
        def,
        version,
        namespace,
        labels,
        fields,
        resource_version: q.get("resourceVersion").map(str::to_string),
        bookmarks: q.flag("allowWatchBookmarks"),
        send_initial_events: q.flag("sendInitialEvents"),
        timeout: Duration::from_secs(timeout),
        form,
    };
    let body = watch::serve(app.store.clone(), req)?;
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let s = |p: &str| -> Vec<String> { p.split('/').map(str::to_string).collect() };
        let r = parse_res_path("", "v1", &s("namespaces/default/pods/p/status")).expect("path");
        assert_eq!(
            (
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref(),
                r.sub.as_deref()
            ),
            (Some("default"), "pods", Some("p"), Some("status"))
        );
        let r = parse_res_path("", "v1", &s("namespaces/x/status")).expect("path");
        assert_eq!(
            (
                r.namespace,
                r.resource.as_str(),
                r.name.as_deref(),
                r.sub.as_deref()
            ),
            (None, "namespaces", Some("x"), Some("status"))
        );
        let r = parse_res_path("", "v1", &s("namespaces/x")).expect("path");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("namespaces", Some("x"))
        );
        assert!(parse_res_path("", "v1", &s("a/b/c/d")).is_none());
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(474, "ns/p1\u{0}");
        assert_eq!(
            decode_continue(&t).expect("decodes"),
            (474, "ns/p1\u{0}".to_string())
        );
        assert!(decode_continue("!!").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("app%20in%20%28a%2Cb%29%2C%21m"), "app in (a,b),!m");
        assert_eq!(decode("system%3Anode"), "system:node");
        assert_eq!(decode("bad%zz%"), "bad%zz%");
    }
}
