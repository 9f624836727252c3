//! The VMI subresources that go through the VMI's virt-handler: `console` and `vnc`
//! (websockets, subprotocol `plain.kubevirt.io`, spliced byte for byte to the handler, which
//! speaks the websocket and relays to the launcher's sockets), `vnc/screenshot` (a PNG the
//! handler reads over RFB; `moveCursor=true` moves the pointer first), `pause` and `unpause`, and the
//! guest agent's `guestosinfo`, `userlist`, `filesystemlist` (409 "VMI does not have guest agent
//! connected" without the AgentConnected condition, as upstream), `softreboot` (PUT; through the
//! agent, else ACPI: refused for a paused VMI and when neither is there), `portforward/{port}[/{protocol}]`
//! (websocket, spliced like the console; also as the VM's `portforward`). Also VM `migrate`, which
//! creates a VirtualMachineInstanceMigration.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kube::api::{Api, PostParams};
use kubevirt_api::v1::{
    VirtualMachine, VirtualMachineInstance, VirtualMachineInstanceMigration,
    VirtualMachineInstanceMigrationSpec, vmi_phases,
};
use serde::Deserialize;

use crate::subresources::{Subresources, status_of};

const VMI_NOT_RUNNING: &str = "VMI is not running";
const NO_AGENT: &str = "VMI does not have guest agent connected";

/// Whether the VMI may be reached for `action` (pure); the refusal as (code, message).
pub fn validate(vmi: &VirtualMachineInstance, action: &str) -> Result<(), (u16, String)> {
    let status = vmi.status.clone().unwrap_or_default();
    let running = status.phase.as_deref() == Some(vmi_phases::RUNNING);
    let has = |t: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let paused = has("Paused");
    match action {
        "console" | "vnc" | "vnc/screenshot" | "portforward" if !running => Err((
            400,
            "Unable to connect to VM because phase is not Running".into(),
        )),
        "pause" | "softreboot" if !running => Err((409, VMI_NOT_RUNNING.into())),
        "softreboot" if paused => Err((409, "VMI is paused".into())),
        "softreboot" if !has("AgentConnected") && acpi_disabled(vmi) => Err((
            409,
            "VMI neither have the agent connected nor the ACPI feature enabled".into(),
        )),
        "pause" if paused => Err((409, "VMI is already paused".into())),
        "unpause" if !paused => Err((409, "VMI is not paused".into())),
        "guestosinfo" | "userlist" | "filesystemlist" if !running => {
            Err((409, VMI_NOT_RUNNING.into()))
        }
        "guestosinfo" | "userlist" | "filesystemlist" if !has("AgentConnected") => {
            Err((409, NO_AGENT.into()))
        }
        _ => Ok(()),
    }
}

/// ACPI switched off in the domain's features (it is on unless `acpi.enabled: false`).
fn acpi_disabled(vmi: &VirtualMachineInstance) -> bool {
    vmi.spec
        .domain
        .features
        .as_ref()
        .and_then(|f| f.acpi.as_ref())
        .and_then(|a| a.enabled)
        == Some(false)
}

fn vmi_status(code: u16, reason: &str, message: &str, name: &str) -> Response {
    status_of(code, reason, message, name, "virtualmachineinstances")
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        404 => "NotFound",
        409 => "Conflict",
        _ => "InternalError",
    }
}

/// `/namespaces/{ns}/virtualmachineinstances/{name}/{action}` (GET and PUT).
pub async fn vmi_action(
    State(s): State<Arc<Subresources>>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let tail = action.clone();
    let target = Target {
        namespace,
        name,
        resource: "virtualmachineinstances",
    };
    act(&s, target, action, tail, req).await
}

/// `.../virtualmachineinstances/{name}/vnc/screenshot[?moveCursor=true]` (GET): a PNG of the
/// screen, authorized as the `vnc/screenshot` subresource (upstream's RBAC name).
pub async fn screenshot(
    State(s): State<Arc<Subresources>>,
    Path((namespace, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    // Only the one parameter goes on to the handler.
    let move_cursor = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "moveCursor=true");
    let tail = format!("vnc/screenshot?moveCursor={move_cursor}");
    let target = Target {
        namespace,
        name,
        resource: "virtualmachineinstances",
    };
    act(&s, target, "vnc/screenshot".into(), tail, req).await
}

/// `.../virtualmachineinstances/{name}/portforward/{port}[/{protocol}]` (GET, websocket).
pub async fn portforward(
    State(s): State<Arc<Subresources>>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    portforward_to(&s, "virtualmachineinstances", params, req).await
}

/// `.../virtualmachines/{name}/portforward/{port}[/{protocol}]` (GET, websocket): to the VM's
/// instance (the VMI of the same name), authorized as the VM's `portforward` subresource, as
/// upstream (`virtctl port-forward vm/NAME` and `virtctl ssh vm/NAME` use it).
pub async fn vm_portforward(
    State(s): State<Arc<Subresources>>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    portforward_to(&s, "virtualmachines", params, req).await
}

/// A port-forward to the VMI named in `params`, authorized on `resource` (VM or VMI).
async fn portforward_to(
    s: &Subresources,
    resource: &str,
    params: Vec<(String, String)>,
    req: Request,
) -> Response {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut tail = format!("portforward/{}", get("port"));
    let protocol = get("protocol");
    if !protocol.is_empty() {
        tail = format!("{tail}/{protocol}");
    }
    let target = Target {
        namespace: get("namespace"),
        name: get("name"),
        resource,
    };
    act(s, target, "portforward".into(), tail, req).await
}

/// Whom a subresource request is for: the VMI `namespace/name`, authorized as `resource`
/// (`virtualmachineinstances`, or `virtualmachines` for a VM's subresource served by its VMI).
struct Target<'a> {
    namespace: String,
    name: String,
    resource: &'a str,
}

async fn act(
    s: &Subresources,
    target: Target<'_>,
    action: String,
    tail: String,
    req: Request,
) -> Response {
    let Target {
        namespace,
        name,
        resource,
    } = target;
    let method = req.method().clone();
    let allowed = match action.as_str() {
        "console" | "vnc" | "vnc/screenshot" | "portforward" | "guestosinfo" | "userlist"
        | "filesystemlist" => method == Method::GET,
        "pause" | "unpause" | "softreboot" => method == Method::PUT,
        _ => false,
    };
    if !allowed {
        return vmi_status(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({action})"),
            &name,
        );
    }
    if let Err(r) = s
        .authorize(
            &s.trusted_headers(&req),
            &method,
            &namespace,
            resource,
            &name,
            &action,
        )
        .await
    {
        return r;
    }
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(s.client.clone(), &namespace);
    let vmi = match vmis.get_opt(&name).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return vmi_status(
                404,
                "NotFound",
                &format!("virtualmachineinstance.kubevirt.io \"{name}\" not found"),
                &name,
            );
        }
        Err(e) => return vmi_status(500, "InternalError", &e.to_string(), &name),
    };
    if let Err((code, m)) = validate(&vmi, &action) {
        let m = if code == 409 {
            format!(
                "Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io \"{name}\": {m}"
            )
        } else {
            m
        };
        return vmi_status(code, reason_of(code), &m, &name);
    }
    let Some(tls) = s.handler_tls.clone() else {
        return vmi_status(
            503,
            "ServiceUnavailable",
            "virt-api has no certificate for virt-handler (start it with --ca-file and --ca-key-file)",
            &name,
        );
    };
    let node = vmi
        .status
        .as_ref()
        .and_then(|st| st.node_name.clone())
        .unwrap_or_default();
    let addr = match crate::handler::locate(&s.client, &node).await {
        Ok(a) => a,
        Err(e) => return vmi_status(500, "InternalError", &e.to_string(), &name),
    };
    let mut sender = match crate::handler::connect(&tls, addr).await {
        Ok(c) => c,
        Err(e) => return vmi_status(500, "InternalError", &e.to_string(), &name),
    };
    let path = format!("/v1/namespaces/{namespace}/virtualmachineinstances/{name}/{tail}");
    tracing::info!(%namespace, %name, %action, %node, handler = %addr, "vmi subresource request");
    forward(&mut sender, req, &path, addr.to_string()).await
}

/// Sends the request to the handler; an upgrade is spliced through once it switches protocols.
async fn forward(
    sender: &mut hyper::client::conn::http1::SendRequest<Body>,
    mut req: Request,
    path: &str,
    host: String,
) -> Response {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let mut out = axum::http::Request::builder()
        .method(req.method().clone())
        .uri(path)
        .version(axum::http::Version::HTTP_11);
    if let Some(h) = out.headers_mut() {
        for (k, v) in req.headers() {
            let n = k.as_str();
            if n.starts_with("sec-websocket-")
                || n == "upgrade"
                || n == "connection"
                || n == "content-type"
            {
                h.append(k.clone(), v.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&host) {
            h.insert(header::HOST, v);
        }
    }
    let body = if upgrade {
        Body::empty()
    } else {
        req.into_body()
    };
    let out = match out.body(body) {
        Ok(o) => o,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("virt-handler: {e}"),
            )
                .into_response();
        }
    };
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
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
                Ok((up, down)) => tracing::debug!(up, down, "stream ended"),
                Err(e) => tracing::debug!(error = %e, "stream broke"),
            }
        });
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in resp.headers() {
        let n = k.as_str();
        if status == StatusCode::SWITCHING_PROTOCOLS
            || !matches!(n, "connection" | "transfer-encoding" | "upgrade")
        {
            r.headers_mut().append(k.clone(), v.clone());
        }
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        *r.body_mut() = Body::new(resp.into_body());
    }
    r
}

/// The request body of `migrate`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrateOptions {
    #[serde(default)]
    pub dry_run: Vec<String>,
    #[serde(default)]
    pub added_node_selector: std::collections::BTreeMap<String, String>,
}

/// The migration `migrate` creates for a running VM (pure).
pub fn migration(
    vm: &VirtualMachine,
    vmi: Option<&VirtualMachineInstance>,
    opts: &MigrateOptions,
) -> Result<VirtualMachineInstanceMigration, (u16, String)> {
    let running = vmi.is_some_and(|v| {
        v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(vmi_phases::RUNNING)
    });
    let name = vm.metadata.name.clone().unwrap_or_default();
    if !running {
        return Err((
            409,
            format!(
                "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"{name}\": VM is not running"
            ),
        ));
    }
    let mut m = VirtualMachineInstanceMigration::new(
        "",
        VirtualMachineInstanceMigrationSpec {
            vmi_name: Some(name),
            added_node_selector: opts.added_node_selector.clone(),
            ..Default::default()
        },
    );
    m.metadata.name = None;
    m.metadata.generate_name = Some("kubevirt-migrate-vm-".into());
    m.metadata.namespace = vm.metadata.namespace.clone();
    Ok(m)
}

/// VM `migrate`: creates the migration (with virt-api's identity, after the caller's review).
pub async fn migrate(s: &Subresources, namespace: &str, name: &str, body: &Bytes) -> Response {
    let status = |code: u16, m: &str| status_of(code, reason_of(code), m, name, "virtualmachines");
    let opts: MigrateOptions = if body.iter().all(u8::is_ascii_whitespace) {
        MigrateOptions::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(o) => o,
            Err(e) => return status(400, &format!("cannot read the request body: {e}")),
        }
    };
    let vms: Api<VirtualMachine> = Api::namespaced(s.client.clone(), namespace);
    let vmis: Api<VirtualMachineInstance> = Api::namespaced(s.client.clone(), namespace);
    let vm = match vms.get_opt(name).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return status(
                404,
                &format!("virtualmachine.kubevirt.io \"{name}\" not found"),
            );
        }
        Err(e) => return status(500, &e.to_string()),
    };
    let vmi = match vmis.get_opt(name).await {
        Ok(v) => v,
        Err(e) => return status(500, &e.to_string()),
    };
    let m = match migration(&vm, vmi.as_ref(), &opts) {
        Ok(m) => m,
        Err((code, msg)) => return status(code, &msg),
    };
    let api: Api<VirtualMachineInstanceMigration> = Api::namespaced(s.client.clone(), namespace);
    let pp = PostParams {
        dry_run: !opts.dry_run.is_empty(),
        ..Default::default()
    };
    match api.create(&pp, &m).await {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => status(500, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vmi(phase: &str, conditions: serde_json::Value) -> VirtualMachineInstance {
        serde_json::from_value(
            json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": "v", "namespace": "a"}, "spec": {"domain": {"devices": {}}},
            "status": {"phase": phase, "conditions": conditions}}),
        )
        .expect("vmi")
    }

    #[test]
    fn validation_as_upstream() {
        let running = vmi("Running", json!([]));
        assert!(validate(&running, "console").is_ok());
        assert!(validate(&running, "pause").is_ok());
        assert_eq!(validate(&running, "unpause").map_err(|e| e.0), Err(409));
        assert_eq!(
            validate(&running, "guestosinfo"),
            Err((409, NO_AGENT.to_string()))
        );
        let paused = vmi("Running", json!([{"type": "Paused", "status": "True"}]));
        assert!(validate(&paused, "unpause").is_ok());
        assert_eq!(validate(&paused, "pause").map_err(|e| e.0), Err(409));
        let agent = vmi(
            "Running",
            json!([{"type": "AgentConnected", "status": "True"}]),
        );
        assert!(validate(&agent, "userlist").is_ok());
        let pending = vmi("Scheduling", json!([]));
        assert_eq!(validate(&pending, "console").map_err(|e| e.0), Err(400));
        assert_eq!(
            validate(&pending, "vnc/screenshot").map_err(|e| e.0),
            Err(400)
        );
        assert!(validate(&running, "vnc/screenshot").is_ok());
        assert!(validate(&running, "softreboot").is_ok());
        assert_eq!(
            validate(&pending, "softreboot"),
            Err((409, VMI_NOT_RUNNING.to_string()))
        );
        assert_eq!(
            validate(&paused, "softreboot"),
            Err((409, "VMI is paused".to_string()))
        );
        let mut no_acpi = running.clone();
        no_acpi.spec.domain.features =
            serde_json::from_value(json!({"acpi": {"enabled": false}})).unwrap();
        assert_eq!(validate(&no_acpi, "softreboot").map_err(|e| e.0), Err(409));
        let mut agent_no_acpi = agent.clone();
        agent_no_acpi.spec.domain.features = no_acpi.spec.domain.features.clone();
        assert!(validate(&agent_no_acpi, "softreboot").is_ok());
        assert_eq!(
            validate(&pending, "guestosinfo"),
            Err((409, VMI_NOT_RUNNING.to_string()))
        );
    }
}
