//! The `subresources.kubevirt.io/v1` API that the API server aggregates to virt-api: VM
//! `start`, `stop` and `restart` (planned by [`crate::lifecycle`] and applied here), discovery,
//! `migrate`, the VMI subresources of [`crate::vmi`] (through virt-handler), discovery,
//! `version` and `healthz`. Paths, verbs and bodies are upstream's, so virtctl works unchanged.
//!
//! Each call is authorized as the calling user named by the aggregator (a SubjectAccessReview,
//! [`crate::authz`]); the change itself is made with virt-api's own identity, as upstream.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use kube::api::{Api, Patch, PatchParams};
use kubevirt_api::v1::{VirtualMachine, VirtualMachineInstance};
use serde_json::json;

use crate::lifecycle::{self, Plan, Refusal, Target};

pub const GROUP_VERSION: &str = "subresources.kubevirt.io/v1";

/// What the handlers share.
pub struct Subresources {
    pub client: kube::Client,
    /// The TLS client side towards virt-handlers (see [`crate::handler::client_tls`]); without
    /// it the VMI subresources that need a handler answer 503.
    pub handler_tls: Option<Arc<rustls::ClientConfig>>,
    /// Trust `X-Remote-*` only from a client that presented a certificate the server verified
    /// (the API server's front-proxy client certificate; the server must then verify client
    /// certificates against the request-header CA, see [`crate::certs::Swappable::server_config`]).
    pub require_proxy_cert: bool,
}

impl Subresources {
    /// The request's headers, without the `X-Remote-*` identity when it cannot be trusted.
    pub fn trusted_headers(&self, req: &axum::extract::Request) -> axum::http::HeaderMap {
        let mut h = req.headers().clone();
        let proxied = req
            .extensions()
            .get::<kubevirt_https::Peer>()
            .is_some_and(|p| !p.certificates.is_empty());
        if self.require_proxy_cert && !proxied {
            let names: Vec<_> = h
                .keys()
                .filter(|k| k.as_str().starts_with("x-remote-"))
                .cloned()
                .collect();
            for n in names {
                h.remove(n);
            }
        }
        h
    }

    /// Authorizes the request as its calling user; the response to send when refused (401
    /// with the reason as plain text, as upstream's virt-api).
    pub async fn authorize(
        &self,
        headers: &axum::http::HeaderMap,
        method: &axum::http::Method,
        namespace: &str,
        resource: &str,
        name: &str,
        subresource: &str,
    ) -> Result<(), Response> {
        let target = crate::authz::Target {
            namespace: namespace.into(),
            resource: resource.into(),
            name: name.into(),
            subresource: subresource.into(),
        };
        match crate::authz::authorize(&self.client, headers, method, &target).await {
            Ok(()) => Ok(()),
            Err(crate::authz::Denied::Failed(m)) => {
                Err((StatusCode::INTERNAL_SERVER_ERROR, m).into_response())
            }
            Err(d) => Err((StatusCode::UNAUTHORIZED, d.to_string()).into_response()),
        }
    }
}

/// The routes under `/apis/subresources.kubevirt.io/v1`.
pub fn router(shared: Arc<Subresources>) -> Router {
    Router::new()
        .route("/apis/subresources.kubevirt.io/v1", get(discovery))
        .route("/apis/subresources.kubevirt.io/v1/version", get(version))
        .route("/apis/subresources.kubevirt.io/v1/healthz", get(|| async { "ok" }))
        .route("/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/{action}", put(vm_action))
        .route(
            "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/{action}",
            get(crate::vmi::vmi_action).put(crate::vmi::vmi_action),
        )
        .route(
            "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/vnc/screenshot",
            get(crate::vmi::screenshot),
        )
        .route(
            "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/portforward/{port}",
            get(crate::vmi::portforward),
        )
        .route(
            "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/portforward/{port}/{protocol}",
            get(crate::vmi::portforward),
        )
        .route(
            "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/portforward/{port}",
            get(crate::vmi::vm_portforward),
        )
        .route(
            "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/portforward/{port}/{protocol}",
            get(crate::vmi::vm_portforward),
        )
        .with_state(shared)
}

async fn discovery() -> Response {
    let sub = |name: &str, kind: &str| json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": ["put"]});
    let vmi_sub = |name: &str, verbs: &[&str]| json!({"name": name, "singularName": "", "namespaced": true, "kind": "VirtualMachineInstance", "verbs": verbs});
    let body = json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            sub("virtualmachines/start", "VirtualMachine"),
            sub("virtualmachines/stop", "VirtualMachine"),
            sub("virtualmachines/restart", "VirtualMachine"),
            sub("virtualmachines/migrate", "VirtualMachine"),
            json!({"name": "virtualmachines/portforward", "singularName": "", "namespaced": true, "kind": "VirtualMachine", "verbs": ["get"]}),
            vmi_sub("virtualmachineinstances/console", &["get"]),
            vmi_sub("virtualmachineinstances/vnc", &["get"]),
            vmi_sub("virtualmachineinstances/vnc/screenshot", &["get"]),
            vmi_sub("virtualmachineinstances/portforward", &["get"]),
            vmi_sub("virtualmachineinstances/pause", &["put"]),
            vmi_sub("virtualmachineinstances/unpause", &["put"]),
            vmi_sub("virtualmachineinstances/softreboot", &["put"]),
            vmi_sub("virtualmachineinstances/guestosinfo", &["get"]),
            vmi_sub("virtualmachineinstances/userlist", &["get"]),
            vmi_sub("virtualmachineinstances/filesystemlist", &["get"]),
        ]
    });
    json_response(StatusCode::OK, body)
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        json!({"gitVersion": concat!("v", env!("CARGO_PKG_VERSION")), "platform": "linux/amd64", "compiler": "rustc"}),
    )
}

fn json_response(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A metav1 Status, as every Kubernetes API failure is reported.
fn status(code: u16, reason: &str, message: &str, name: &str) -> Response {
    status_of(code, reason, message, name, "virtualmachines")
}

/// A metav1 Status about `name` of `kind` (the resource's plural).
pub fn status_of(code: u16, reason: &str, message: &str, name: &str, kind: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason,
        "details": {"name": name, "group": "kubevirt.io", "kind": kind},
        "code": code,
    });
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

fn refusal(r: &Refusal, name: &str) -> Response {
    match r {
        Refusal::Conflict(m) => status(
            409,
            "Conflict",
            &format!("Operation cannot be fulfilled on virtualmachine.kubevirt.io \"{name}\": {m}"),
            name,
        ),
        Refusal::BadRequest(m) => status(400, "BadRequest", m, name),
    }
}

fn kube_error(e: &kube::Error, name: &str) -> Response {
    match e {
        kube::Error::Api(s) if s.code == 404 => status(404, "NotFound", &s.message, name),
        // A failed `test` operation means someone changed the VM since we read it.
        kube::Error::Api(s) if s.code == 422 || s.code == 409 => {
            status(409, "Conflict", &s.message, name)
        }
        other => status(500, "InternalError", &other.to_string(), name),
    }
}

fn body_or_default<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("cannot read the request body: {e}"))
}

async fn vm_action(
    State(s): State<Arc<Subresources>>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    req: axum::extract::Request,
) -> Response {
    if let Err(r) = s
        .authorize(
            &s.trusted_headers(&req),
            &req.method().clone(),
            &namespace,
            "virtualmachines",
            &name,
            &action,
        )
        .await
    {
        return r;
    }
    let body = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(e) => return status(400, "BadRequest", &e.to_string(), &name),
    };
    if action == "migrate" {
        return crate::vmi::migrate(&s, &namespace, &name, &body).await;
    }
    let vms: Api<VirtualMachine> = Api::namespaced(s.client.clone(), &namespace);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(s.client.clone(), &namespace);
    let vm = match vms.get(&name).await {
        Ok(vm) => vm,
        Err(e) => return kube_error(&e, &name),
    };
    let vmi = match vmis.get_opt(&name).await {
        Ok(v) => v,
        Err(e) => return kube_error(&e, &name),
    };
    let planned = match action.as_str() {
        "start" => body_or_default(&body).map(|o: lifecycle::StartOptions| {
            (
                lifecycle::start(&vm, vmi.as_ref(), &o),
                !o.dry_run.is_empty(),
            )
        }),
        "stop" => body_or_default(&body).map(|o: lifecycle::StopOptions| {
            (
                lifecycle::stop(&vm, vmi.as_ref(), &o),
                !o.dry_run.is_empty(),
            )
        }),
        "restart" => body_or_default(&body).map(|o: lifecycle::RestartOptions| {
            (
                lifecycle::restart(&vm, vmi.as_ref(), &o),
                !o.dry_run.is_empty(),
            )
        }),
        other => {
            return status(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({other})"),
                &name,
            );
        }
    };
    let (plan, dry_run) = match planned {
        Ok((Ok(plan), dry)) => (plan, dry),
        Ok((Err(r), _)) => return refusal(&r, &name),
        Err(m) => return status(400, "BadRequest", &m, &name),
    };
    tracing::info!(%namespace, %name, %action, "vm lifecycle request");
    match apply(&vms, &vmis, &name, &plan, dry_run).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => kube_error(&e, &name),
    }
}

async fn apply(
    vms: &Api<VirtualMachine>,
    vmis: &Api<VirtualMachineInstance>,
    name: &str,
    plan: &Plan,
    dry_run: bool,
) -> Result<(), kube::Error> {
    let params = PatchParams {
        dry_run,
        ..Default::default()
    };
    if let Some(grace) = plan.vmi_grace_period {
        let merge = json!({"spec": {"terminationGracePeriodSeconds": grace}});
        vmis.patch(name, &params, &Patch::Merge(&merge)).await?;
    }
    let ops: json_patch::Patch =
        serde_json::from_value(plan.patch.clone()).map_err(kube::Error::SerdeError)?;
    match plan.target {
        Target::Vm => vms
            .patch(name, &params, &Patch::Json::<()>(ops))
            .await
            .map(|_| ()),
        Target::VmStatus => vms
            .patch_status(name, &params, &Patch::Json::<()>(ops))
            .await
            .map(|_| ()),
    }
}
