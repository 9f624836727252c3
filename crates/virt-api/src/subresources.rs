//! The `subresources.kubevirt.io/v1` API that the API server aggregates to virt-api: VM
//! `start`, `stop` and `restart` (planned by [`crate::lifecycle`] and applied here), discovery,
//! `version` and `healthz`. Paths, verbs and bodies are upstream's, so virtctl works unchanged.
//!
//! Not yet: authorizing each call as the calling user (a SubjectAccessReview, as upstream does)
//! needs the API server's authentication, which comes with API aggregation; until then calls
//! act with virt-api's own identity. VMI pause/unpause/console/vnc need virt-handler.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
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
}

/// The routes under `/apis/subresources.kubevirt.io/v1`.
pub fn router(shared: Arc<Subresources>) -> Router {
    Router::new()
        .route("/apis/subresources.kubevirt.io/v1", get(discovery))
        .route("/apis/subresources.kubevirt.io/v1/version", get(version))
        .route("/apis/subresources.kubevirt.io/v1/healthz", get(|| async { "ok" }))
        .route("/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/{action}", put(vm_action))
        .with_state(shared)
}

async fn discovery() -> Response {
    let sub = |name: &str, kind: &str| json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": ["put"]});
    let body = json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            sub("virtualmachines/start", "VirtualMachine"),
            sub("virtualmachines/stop", "VirtualMachine"),
            sub("virtualmachines/restart", "VirtualMachine"),
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
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason,
        "details": {"name": name, "group": "kubevirt.io", "kind": "virtualmachines"},
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
    body: Bytes,
) -> Response {
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
