//! Running admission webhooks for a request (I/O): which configured webhooks apply, calling
//! them over HTTPS, applying mutating webhooks' patches in order and then asking every
//! validating webhook (concurrently), with each webhook's failure policy, timeout and dry-run
//! rules. Writes that webhooks see are computed first as a dry run, admitted, and committed
//! only if the object did not change meanwhile (else the whole write is retried, as the real
//! server's optimistic update loop does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::admission::{self, Attributes, Kind, Operation, Webhook};
use crate::auth::User;
use crate::error::ApiError;
use crate::ops::{Part, WriteCtx};
use crate::resources::ResourceDef;
use crate::server::App;
use crate::store::{TxFn, object_key};
use crate::upstream;

pub const MUTATING: &str = "mutatingwebhookconfigurations.admissionregistration.k8s.io";
pub const VALIDATING: &str = "validatingwebhookconfigurations.admissionregistration.k8s.io";

/// Largest webhook answer read.
const MAX_ANSWER: usize = 3 * 1024 * 1024;

/// The parsed webhooks of every configuration, in the order the real server calls them
/// (configurations by name, webhooks in their order).
#[derive(Default)]
pub struct HookSet {
    pub mutating: Vec<Webhook>,
    pub validating: Vec<Webhook>,
}

/// A cache of the parsed webhooks, refreshed when a configuration changes.
#[derive(Default)]
pub struct HookCache(std::sync::Mutex<Option<(Fingerprint, Arc<HookSet>)>>);

/// (highest resourceVersion, count) of each configuration resource: changes with any write.
type Fingerprint = Vec<(u64, usize)>;

impl HookCache {
    pub fn get(&self, app: &App) -> Arc<HookSet> {
        let cache = app.store.read();
        let print: Fingerprint = [MUTATING, VALIDATING]
            .iter()
            .map(|gr| {
                cache
                    .objects
                    .get(*gr)
                    .map(|m| (m.values().map(|o| o.rv).max().unwrap_or(0), m.len()))
                    .unwrap_or((0, 0))
            })
            .collect();
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, set)) = guard.as_ref()
            && *p == print
        {
            return set.clone();
        }
        let mut set = HookSet::default();
        for (gr, kind) in [(MUTATING, Kind::Mutating), (VALIDATING, Kind::Validating)] {
            if let Some(m) = cache.objects.get(gr) {
                for o in m.values() {
                    if let Ok(v) = o.value() {
                        let hooks = admission::parse_configuration(kind, &v);
                        match kind {
                            Kind::Mutating => set.mutating.extend(hooks),
                            Kind::Validating => set.validating.extend(hooks),
                        }
                    }
                }
            }
        }
        let set = Arc::new(set);
        *guard = Some((print, set.clone()));
        set
    }
}

/// The webhooks whose rules match, with the version each sees the request at.
pub fn matching(app: &App, a: &Attributes) -> Vec<(Webhook, String)> {
    let set = app.hooks.get(app);
    set.mutating
        .iter()
        .chain(set.validating.iter())
        .filter_map(|h| h.matching_version(a).map(|v| (h.clone(), v)))
        .collect()
}

/// Whether any webhook could apply to `a` (a cheap check before doing any admission work).
pub fn any_for(app: &App, a: &Attributes) -> bool {
    let set = app.hooks.get(app);
    if set.mutating.is_empty() && set.validating.is_empty() {
        return false;
    }
    [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
    ]
    .iter()
    .any(|op| {
        let mut b = a.clone();
        b.operation = *op;
        set.mutating
            .iter()
            .chain(set.validating.iter())
            .any(|h| h.matching_version(&b).is_some())
    })
}

/// Resolves a Service port to the address a component registered for it: the Service's port
/// maps to a target port, and the Service's Endpoints (or EndpointSlices labelled with its name)
/// give the address.
pub fn resolve_service(app: &App, ns: &str, name: &str, port: u16) -> Result<SocketAddr, String> {
    let cache = app.store.read();
    let svc = cache
        .get("services", &object_key(ns, name))
        .and_then(|o| o.value().ok())
        .ok_or_else(|| format!("service \"{name}\" not found"))?;
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let sp = ports
        .iter()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(port)))
        .ok_or_else(|| format!("service \"{name}\" has no port {port}"))?;
    let port_name = sp.get("name").and_then(Value::as_str).unwrap_or("");
    let target = sp.get("targetPort").cloned().unwrap_or(json!(port));
    let port_matches = |p: &Value| -> Option<u16> {
        let n = p.get("name").and_then(Value::as_str).unwrap_or("");
        let num = p
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|x| u16::try_from(x).ok())?;
        let by_name = !port_name.is_empty() && n == port_name;
        let by_target = match &target {
            Value::String(t) => n == t,
            other => other.as_u64() == Some(u64::from(num)),
        };
        (by_name || by_target || ports.len() == 1).then_some(num)
    };
    if let Some(ep) = cache
        .get("endpoints", &object_key(ns, name))
        .and_then(|o| o.value().ok())
    {
        for subset in ep
            .get("subsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = subset
                .pointer("/addresses/0/ip")
                .and_then(Value::as_str)
                .and_then(|i| i.parse::<std::net::IpAddr>().ok());
            let p = subset
                .get("ports")
                .and_then(Value::as_array)
                .and_then(|ps| ps.iter().find_map(port_matches));
            if let (Some(ip), Some(p)) = (ip, p) {
                return Ok(SocketAddr::new(ip, p));
            }
        }
    }
    if let Some(slices) = cache.objects.get("endpointslices.discovery.k8s.io") {
        for o in slices.values().filter(|o| {
            o.namespace == ns
                && o.labels
                    .get("kubernetes.io/service-name")
                    .map(String::as_str)
                    == Some(name)
        }) {
            let Ok(v) = o.value() else { continue };
            let p = v
                .get("ports")
                .and_then(Value::as_array)
                .and_then(|ps| ps.iter().find_map(port_matches));
            let ip = v
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| e.pointer("/conditions/ready") != Some(&json!(false)))
                .find_map(|e| e.pointer("/addresses/0").and_then(Value::as_str))
                .and_then(|i| i.parse::<std::net::IpAddr>().ok());
            if let (Some(ip), Some(p)) = (ip, p) {
                return Ok(SocketAddr::new(ip, p));
            }
        }
    }
    Err(format!("no endpoints available for service \"{name}\""))
}

/// Calls one webhook with a review; any failure to get a usable answer is an error string
/// (what the failure policy decides on).
async fn call(app: &App, hook: &Webhook, review: &Value) -> Result<admission::Answer, String> {
    let uid = review
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let secs = hook.timeout.as_secs();
    let (target, path, shown) = match &hook.client {
        admission::ClientConfig::Url(u) => {
            let (host, port, path) = upstream::parse_https_url(u)?;
            let sep = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{sep}timeout={secs}s");
            let shown = format!("{}{sep}timeout={secs}s", u);
            let addr = upstream::resolve(&host, port)
                .await
                .map_err(|e| format!("failed to call webhook: Post \"{shown}\": {e}"))?;
            (
                upstream::Target {
                    addr,
                    server_name: host,
                    verify: upstream::Verify::Ca(hook.ca_bundle.clone().unwrap_or_default()),
                    client_cert: None,
                },
                path,
                shown,
            )
        }
        admission::ClientConfig::Service {
            namespace,
            name,
            path,
            port,
        } => {
            let host = format!("{name}.{namespace}.svc");
            let sep = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{sep}timeout={secs}s");
            let shown = format!("https://{host}:{port}{path}");
            let addr = resolve_service(app, namespace, name, *port)
                .map_err(|e| format!("failed to call webhook: Post \"{shown}\": {e}"))?;
            (
                upstream::Target {
                    addr,
                    server_name: host,
                    verify: upstream::Verify::Ca(hook.ca_bundle.clone().unwrap_or_default()),
                    client_cert: None,
                },
                path,
                shown,
            )
        }
    };
    let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
    let (code, bytes) = upstream::post_json(&target, &path, body, hook.timeout, MAX_ANSWER)
        .await
        .map_err(|e| format!("failed to call webhook: Post \"{shown}\": {e}"))?;
    if code != 200 {
        return Err(format!(
            "failed to call webhook: the server responded with status code {code}"
        ));
    }
    admission::parse_answer(&bytes, &uid, hook.kind)
        .map_err(|e| format!("received invalid webhook response: {e}"))
}

/// The labels of a request's namespace (None for cluster-scoped requests; the object's own for
/// namespaces).
fn namespace_labels(
    app: &App,
    a: &Attributes,
    objects: &[Option<&Value>],
) -> Option<BTreeMap<String, String>> {
    if a.gvr.group.is_empty() && a.gvr.resource == "namespaces" {
        return objects
            .iter()
            .flatten()
            .next()
            .map(|o| crate::meta::string_map(o, "labels"));
    }
    if !a.namespaced {
        return None;
    }
    Some(
        app.store
            .read()
            .get(crate::ops::NAMESPACES, &object_key("", &a.namespace))
            .map(|o| o.labels.clone())
            .unwrap_or_default(),
    )
}

/// The object as a webhook matched at `version` sees it (our versions share one schema: only
/// `apiVersion` differs).
fn at_version(def: &ResourceDef, obj: &Value, version: &str) -> Value {
    let mut o = obj.clone();
    if o.get("kind").and_then(Value::as_str) == Some(def.kind.as_str())
        && let Some(m) = o.as_object_mut()
    {
        m.insert("apiVersion".into(), json!(def.api_version(version)));
    }
    o
}

/// One admission pass: mutating webhooks in order (each sees the previous one's result), then
/// validating webhooks concurrently. Returns the (possibly mutated) object.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    app: &App,
    def: &ResourceDef,
    a: &Attributes,
    user: &User,
    object: Option<Value>,
    old: Option<&Value>,
    options: Value,
    warnings: &mut Vec<String>,
) -> Result<Option<Value>, ApiError> {
    let hooks = matching(app, a);
    if hooks.is_empty() {
        return Ok(object);
    }
    let ns_labels = namespace_labels(app, a, &[object.as_ref(), old]);
    let selected = |h: &Webhook, obj: Option<&Value>| -> Result<bool, String> {
        let labels: Vec<BTreeMap<String, String>> = [obj, old]
            .iter()
            .flatten()
            .map(|o| crate::meta::string_map(o, "labels"))
            .collect();
        let refs: Vec<&BTreeMap<String, String>> = labels.iter().collect();
        h.selectors_match(ns_labels.as_ref(), &refs)
    };
    let mut object = object;
    for (h, version) in hooks.iter().filter(|(h, _)| h.kind == Kind::Mutating) {
        match selected(h, object.as_ref()) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                if h.fail_closed {
                    return Err(admission::call_failed(&h.name, &e));
                }
                continue;
            }
        }
        if a.dry_run && !h.dry_run_safe() {
            return Err(admission::dry_run_unsupported(&h.name));
        }
        let seen = object.as_ref().map(|o| at_version(def, o, version));
        let old_seen = old.map(|o| at_version(def, o, version));
        let uid = crate::meta::new_uid();
        let review = admission::review_request(
            &uid,
            a,
            version,
            version,
            user,
            seen.as_ref(),
            old_seen.as_ref(),
            options.clone(),
        );
        match call(app, h, &review).await {
            Ok(answer) => {
                warnings.extend(answer.warnings.iter().cloned());
                if !answer.allowed {
                    tracing::info!(webhook = %h.name, name = %a.name, namespace = %a.namespace, "admission webhook denied the request");
                    return Err(admission::denied(&h.name, answer.status.as_ref()));
                }
                if let (Some(ops), Some(seen)) = (answer.patch.as_ref(), seen.as_ref()) {
                    let patched = admission::apply_patch(&h.name, seen, ops)?;
                    object = Some(at_version(def, &patched, &a.gvr.version));
                }
            }
            Err(e) if h.fail_closed => {
                tracing::warn!(webhook = %h.name, error = %e, "calling a webhook failed; failurePolicy Fail rejects the request");
                return Err(admission::call_failed(&h.name, &e));
            }
            Err(e) => {
                tracing::warn!(webhook = %h.name, error = %e, "calling a webhook failed; failurePolicy Ignore lets the request through");
            }
        }
    }
    let mut calls = Vec::new();
    for (h, version) in hooks.iter().filter(|(h, _)| h.kind == Kind::Validating) {
        match selected(h, object.as_ref()) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                if h.fail_closed {
                    return Err(admission::call_failed(&h.name, &e));
                }
                continue;
            }
        }
        if a.dry_run && !h.dry_run_safe() {
            return Err(admission::dry_run_unsupported(&h.name));
        }
        let seen = object.as_ref().map(|o| at_version(def, o, version));
        let old_seen = old.map(|o| at_version(def, o, version));
        let uid = crate::meta::new_uid();
        let review = admission::review_request(
            &uid,
            a,
            version,
            version,
            user,
            seen.as_ref(),
            old_seen.as_ref(),
            options.clone(),
        );
        calls.push(async move { (h, call(app, h, &review).await) });
    }
    let answers = futures_util::future::join_all(calls).await;
    let mut refusal = None;
    for (h, r) in answers {
        match r {
            Ok(answer) => {
                warnings.extend(answer.warnings.iter().cloned());
                if !answer.allowed && refusal.is_none() {
                    tracing::info!(webhook = %h.name, name = %a.name, namespace = %a.namespace, "admission webhook denied the request");
                    refusal = Some(admission::denied(&h.name, answer.status.as_ref()));
                }
            }
            Err(e) if h.fail_closed => {
                tracing::warn!(webhook = %h.name, error = %e, "calling a webhook failed; failurePolicy Fail rejects the request");
                if refusal.is_none() {
                    refusal = Some(admission::call_failed(&h.name, &e));
                }
            }
            Err(e) => {
                tracing::warn!(webhook = %h.name, error = %e, "calling a webhook failed; failurePolicy Ignore lets the request through");
            }
        }
    }
    match refusal {
        Some(e) => Err(e),
        None => Ok(object),
    }
}

/// How a write that webhooks see is committed.
pub enum Write {
    /// POST of a new object.
    Create,
    /// PUT or PATCH of `name` (`retry`: re-run when the object changed meanwhile, as for
    /// patches and for updates that carried no resourceVersion).
    Update {
        name: String,
        part: Part,
        retry: bool,
    },
}

/// Runs a create, update or patch through admission: the result is computed as a dry run
/// (`make` builds the write), shown to the webhooks at the request's version, and the admitted
/// object is committed if the stored object is still the one the webhooks saw.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    app: &Arc<App>,
    ctx: &WriteCtx,
    req_def: &ResourceDef,
    base: &Attributes,
    user: &User,
    how: Write,
    make: &(dyn Fn() -> TxFn + Send + Sync),
    dry: bool,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let def = ctx.def.clone();
    let gr = def.gr();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let old = match &how {
            Write::Create => None,
            Write::Update { name, .. } => app
                .store
                .read()
                .get(&gr, &object_key(&ns_of(&def, &ctx.namespace), name))
                .cloned(),
        };
        let candidate = app.store.dry_run(make())?;
        let old_value = old.as_ref().map(|o| o.value()).transpose()?;
        if let Some(o) = &old
            && crate::meta::meta_str(&candidate, "resourceVersion")
                != Some(o.rv.to_string().as_str())
        {
            // The object changed between our read and the dry run.
            if attempts < 5 {
                continue;
            }
            return Err(ApiError::new(
                409,
                "Conflict",
                "the object kept changing while admission ran",
            ));
        }
        let mut a = base.clone();
        a.operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        a.name = crate::meta::meta_str(&candidate, "name")
            .unwrap_or_default()
            .to_string();
        let shown = crate::server::present_json(req_def, &a.gvr.version, candidate.clone());
        let mut shown = shown;
        if a.operation == Operation::Create
            && let Some(m) = crate::meta::metadata_mut(&mut shown)
        {
            // What the real server has not assigned yet when admission runs.
            for k in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
                m.remove(k);
            }
        }
        let old_shown = old_value
            .clone()
            .map(|o| crate::server::present_json(req_def, &a.gvr.version, o));
        let options = json!({});
        let admitted = run(
            app,
            req_def,
            &a,
            user,
            Some(shown.clone()),
            old_shown.as_ref(),
            options,
            warnings,
        )
        .await?
        .unwrap_or(shown);
        // Back to the stored form.
        let mut obj = crate::convert::from_view(req_def.view, admitted);
        if let Some(m) = obj.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                json!(def.api_version(def.storage_version())),
            );
            m.insert("kind".into(), json!(def.kind));
        }
        let mut c = ctx.clone();
        // managedFields were computed by the dry run.
        c.applying = true;
        let commit: TxFn = match (&how, &old) {
            (Write::Create, _) | (Write::Update { .. }, None) => {
                if let Some(m) = crate::meta::metadata_mut(&mut obj) {
                    m.remove("resourceVersion");
                }
                crate::ops::create(c, obj)
            }
            (Write::Update { name, part, .. }, Some(o)) => {
                if let Some(m) = crate::meta::metadata_mut(&mut obj) {
                    m.insert("resourceVersion".into(), json!(o.rv.to_string()));
                }
                crate::ops::update(c, name.clone(), obj, *part)
            }
        };
        let result = if dry {
            app.store.dry_run(commit)
        } else {
            app.store.write(commit).await
        };
        match (result, &how) {
            (Err(e), Write::Update { retry: true, .. })
                if e.reason == "Conflict" && attempts < 5 =>
            {
                continue;
            }
            (r, _) => return r,
        }
    }
}

fn ns_of(def: &ResourceDef, ns: &str) -> String {
    if def.namespaced {
        ns.to_string()
    } else {
        String::new()
    }
}
