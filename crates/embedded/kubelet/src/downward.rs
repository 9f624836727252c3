//! Downward API values (`fieldRef`, `resourceFieldRef`) from the pod: for env and for
//! downwardAPI volume files. Pure.

use k8s_openapi::api::core::v1::{Pod, ResourceFieldSelector};
use kubevirt_embedded_scheduler::quantity::parse_milli;

/// What the pod's object does not carry yet when the value is needed.
#[derive(Clone, Debug, Default)]
pub struct Runtime<'a> {
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub node_name: &'a str,
}

fn map_lines(m: Option<&std::collections::BTreeMap<String, String>>) -> String {
    let mut out = String::new();
    for (k, v) in m.into_iter().flatten() {
        out.push_str(&format!("{k}={}\n", serde_json::Value::String(v.clone())));
    }
    out.trim_end_matches('\n').to_string()
}

fn indexed<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    let inner = rest.strip_prefix("['")?.strip_suffix("']")?;
    Some(inner)
}

/// The value of a `fieldRef.fieldPath`.
pub fn field(pod: &Pod, path: &str, rt: &Runtime<'_>) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => m.name.clone()?,
        "metadata.namespace" => m.namespace.clone()?,
        "metadata.uid" => m.uid.clone()?,
        "metadata.labels" => map_lines(m.labels.as_ref()),
        "metadata.annotations" => map_lines(m.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| rt.node_name.to_string()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => rt.pod_ip.unwrap_or("").to_string(),
        "status.hostIP" | "status.hostIPs" => rt.host_ip.to_string(),
        p => {
            if let Some(k) = indexed(p, "metadata.labels") {
                m.labels.as_ref()?.get(k)?.clone()
            } else if let Some(k) = indexed(p, "metadata.annotations") {
                m.annotations.as_ref()?.get(k)?.clone()
            } else {
                return None;
            }
        }
    })
}

/// The value of a `resourceFieldRef` for `container` (default: the one named in the selector),
/// in divisor units rounded up, as Kubernetes renders it.
pub fn resource(pod: &Pod, default_container: &str, sel: &ResourceFieldSelector) -> Option<String> {
    let name = sel.container_name.as_deref().unwrap_or(default_container);
    let c = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == name)?;
    let (kind, res) = sel.resource.split_once('.')?;
    let res_map = c.resources.as_ref().and_then(|r| match kind {
        "limits" => r.limits.as_ref(),
        "requests" => r.requests.as_ref(),
        _ => None,
    });
    let value = res_map
        .and_then(|m| m.get(res))
        .and_then(|q| parse_milli(&q.0));
    // Unset limits default to the node's allocatable upstream; we report 0 for requests and
    // leave unset limits as 0 too (documented simplification).
    let value = value.unwrap_or(0);
    let divisor = sel
        .divisor
        .as_ref()
        .and_then(|d| parse_milli(&d.0))
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    let v = value / divisor + i128::from(value % divisor != 0);
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}}}]}
        }))
        .unwrap();
        let rt = Runtime {
            pod_ip: Some("10.244.1.2"),
            host_ip: "127.0.0.1",
            node_name: "n1",
        };
        assert_eq!(field(&pod, "metadata.name", &rt).as_deref(), Some("p"));
        assert_eq!(
            field(&pod, "metadata.labels", &rt).as_deref(),
            Some("a=\"1\"\nb=\"2\"")
        );
        assert_eq!(
            field(&pod, "metadata.labels['b']", &rt).as_deref(),
            Some("2")
        );
        assert_eq!(field(&pod, "spec.nodeName", &rt).as_deref(), Some("n1"));
        assert_eq!(
            field(&pod, "status.podIP", &rt).as_deref(),
            Some("10.244.1.2")
        );
        assert_eq!(field(&pod, "bogus", &rt), None);
        let sel = |r: &str, d: Option<&str>| ResourceFieldSelector {
            container_name: None,
            resource: r.into(),
            divisor: d.map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
        };
        assert_eq!(
            resource(&pod, "c", &sel("limits.cpu", None)).as_deref(),
            Some("2")
        );
        assert_eq!(
            resource(&pod, "c", &sel("limits.cpu", Some("1m"))).as_deref(),
            Some("1500")
        );
        assert_eq!(
            resource(&pod, "c", &sel("limits.memory", Some("1Mi"))).as_deref(),
            Some("64")
        );
    }
}
