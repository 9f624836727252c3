//! Pod subresources served by the pod's kubelet: `pods/log` is proxied (streaming, so
//! `kubectl logs -f` follows) to the node's `/containerLogs/<ns>/<pod>/<container>` at its
//! InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`. The kubelet's certificate is
//! not verified (as upstream without `--kubelet-certificate-authority`); the server presents its
//! front-proxy client certificate. Choosing the container and the query are pure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::Value;

use crate::error::{ApiError, Subject};
use crate::server::App;
use crate::store::object_key;
use crate::upstream;

const PODS: Subject<'static> = Subject {
    group: "",
    resource: "pods",
    kind: "Pod",
};

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The container whose logs are asked for, or the 400 upstream answers.
pub fn container_of(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let containers = names(pod, "containers");
    let init = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|x| x == c)
            {
                Ok(c.to_string())
            } else {
                let mut msg = format!("container {c} is not valid for pod {name}");
                if !containers.is_empty() {
                    msg = format!(
                        "container {c} is not valid for pod {name}, choose one of: [{}]",
                        containers.join(" ")
                    );
                }
                Err(ApiError::bad_request(msg))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// The kubelet's query for the log options a client gave.
pub fn log_query(q: &HashMap<String, String>) -> Result<String, ApiError> {
    let mut out = Vec::new();
    for flag in [
        "follow",
        "previous",
        "timestamps",
        "insecureSkipTLSVerifyBackend",
    ] {
        match q.get(flag).map(String::as_str) {
            Some("true" | "1") if flag != "insecureSkipTLSVerifyBackend" => {
                out.push(format!("{flag}=true"))
            }
            None | Some("" | "false" | "0" | "true" | "1") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid value for {flag}: {other}"
                )));
            }
        }
    }
    for num in ["tailLines", "limitBytes", "sinceSeconds"] {
        if let Some(v) = q.get(num).filter(|v| !v.is_empty()) {
            let n: i64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid value for {num}: {v}")))?;
            if n < 0 || (n == 0 && num != "tailLines") {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "PodLogOptions \"\" is invalid: {num}: Invalid value: {n}: must be greater than 0"
                    ),
                ));
            }
            out.push(format!("{num}={n}"));
        }
    }
    if let Some(t) = q.get("sinceTime").filter(|v| !v.is_empty()) {
        out.push(format!(
            "sinceTime={}",
            t.replace(':', "%3A").replace('+', "%2B")
        ));
    }
    Ok(out.join("&"))
}

/// Where a node's kubelet listens: its InternalIP (else any address) and daemon endpoint port.
pub fn kubelet_address(node: &Value) -> Option<SocketAddr> {
    let addrs = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let ip = addrs
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .or_else(|| addrs.first())
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)?;
    Some(SocketAddr::new(ip, port))
}

/// `GET /api/v1/namespaces/<ns>/pods/<name>/log`.
pub async fn pod_log(
    app: &App,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (pod, node) = {
        let cache = app.store.read();
        let pod = cache
            .get("pods", &object_key(ns, name))
            .ok_or_else(|| ApiError::not_found(PODS, name))?
            .value()?;
        let node_name = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let node = node_name
            .as_ref()
            .and_then(|n| cache.get("nodes", &object_key("", n)))
            .and_then(|o| o.value().ok());
        (pod, node_name.map(|n| (n, node)))
    };
    let container = container_of(&pod, name, q.get("container").map(String::as_str))?;
    let query = log_query(q)?;
    let Some((node_name, node)) = node else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let addr = node.as_ref().and_then(kubelet_address).ok_or_else(|| {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: node \"{node_name}\" has no kubelet endpoint"),
        )
    })?;
    let target = upstream::Target {
        addr,
        server_name: addr.ip().to_string(),
        verify: upstream::Verify::Insecure,
        client_cert: app.proxy_client_cert.clone(),
    };
    let path = format!(
        "/containerLogs/{ns}/{name}/{container}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    let unreachable = |e: String| {
        ApiError::new(
            500,
            "InternalError",
            format!("Get \"https://{addr}{path}\": {e}"),
        )
    };
    let conn = tokio::time::timeout(Duration::from_secs(10), upstream::connect(&target))
        .await
        .map_err(|_| unreachable("context deadline exceeded".into()))?
        .map_err(unreachable)?;
    let req = axum::http::Request::get(path.as_str())
        .header(header::HOST, addr.to_string())
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = conn.send(req).await.map_err(unreachable)?;
    let code = resp.status().as_u16();
    if code != 200 {
        // The kubelet's text is the message, with the kubelet's code.
        let text = axum::body::to_bytes(Body::new(resp.into_body()), 64 * 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        let reason = match code {
            404 => "NotFound",
            400 => "BadRequest",
            403 => "Forbidden",
            _ => "InternalError",
        };
        return Err(ApiError::new(code.max(400), reason, text));
    }
    tracing::debug!(namespace = %ns, pod = %name, %container, node = %node_name, "proxying logs");
    let mut r = Response::new(Body::new(resp.into_body()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(r)
}

/// The kubelet query of an exec: the client's, without `container` (part of the path).
pub fn exec_query(raw: &str) -> String {
    raw.split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("container="))
        .collect::<Vec<_>>()
        .join("&")
}

/// `/api/v1/namespaces/<ns>/pods/<pod>/exec` (websocket, as `kubectl exec` asks for it) spliced
/// through to the kubelet's `/exec/<ns>/<pod>/<container>`.
pub async fn pod_exec(
    app: &App,
    ns: &str,
    name: &str,
    req: axum::extract::Request,
    user: &crate::auth::User,
) -> Result<Response, ApiError> {
    let raw = req.uri().query().unwrap_or("").to_string();
    let asked = raw
        .split('&')
        .find_map(|p| p.strip_prefix("container="))
        .map(str::to_string);
    let (pod, node) = {
        let cache = app.store.read();
        let pod = cache
            .get("pods", &object_key(ns, name))
            .ok_or_else(|| ApiError::not_found(PODS, name))?
            .value()?;
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .and_then(|n| cache.get("nodes", &object_key("", n)))
            .and_then(|o| o.value().ok());
        (pod, node)
    };
    let container = container_of(&pod, name, asked.as_deref())?;
    if let Some(phase @ ("Succeeded" | "Failed")) =
        pod.pointer("/status/phase").and_then(Value::as_str)
    {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let addr = node.as_ref().and_then(kubelet_address).ok_or_else(|| {
        ApiError::bad_request(format!("pod {name} does not have a host assigned"))
    })?;
    let target = upstream::Target {
        addr,
        server_name: addr.ip().to_string(),
        verify: upstream::Verify::Insecure,
        client_cert: app.proxy_client_cert.clone(),
    };
    let q = exec_query(&raw);
    let path = format!(
        "/exec/{ns}/{name}/{container}{}{q}",
        if q.is_empty() { "" } else { "?" }
    );
    crate::aggregator::forward(&target, req, &path, user)
        .await
        .map_err(|e| ApiError::new(500, "InternalError", format!("error dialing backend: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers() {
        let one = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(container_of(&one, "p", None).expect("only"), "c");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = container_of(&two, "p", None).expect_err("ambiguous");
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(container_of(&two, "p", Some("i")).expect("init"), "i");
        assert!(container_of(&two, "p", Some("x")).is_err());
    }

    #[test]
    fn queries() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            log_query(&q(&[
                ("follow", "true"),
                ("tailLines", "5"),
                ("timestamps", "true")
            ]))
            .expect("ok"),
            "follow=true&timestamps=true&tailLines=5"
        );
        assert_eq!(log_query(&q(&[("previous", "false")])).expect("ok"), "");
        assert!(log_query(&q(&[("tailLines", "x")])).is_err());
        assert!(log_query(&q(&[("limitBytes", "0")])).is_err());
        assert!(log_query(&q(&[("follow", "maybe")])).is_err());
    }

    #[test]
    fn exec_queries() {
        assert_eq!(
            exec_query("command=ls&command=-l&container=c&stdout=true"),
            "command=ls&command=-l&stdout=true"
        );
        assert_eq!(exec_query(""), "");
    }

    #[test]
    fn kubelet_addresses() {
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(kubelet_address(&n), "127.0.0.1:10250".parse().ok());
        assert_eq!(kubelet_address(&json!({})), None);
    }
}
