//! `virtctl expose`: a Service for a VM, VMI or VMI replica set (pure: the object in, the
//! Service out).

use ring::digest;
use serde_json::{Value, json};

use crate::Error;

/// What can be exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Vm,
    Vmi,
    Vmirs,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, Error> {
        match s.to_ascii_lowercase().as_str() {
            "vm" | "vms" | "virtualmachine" | "virtualmachines" => Ok(Kind::Vm),
            "vmi" | "vmis" | "virtualmachineinstance" | "virtualmachineinstances" => Ok(Kind::Vmi),
            "vmirs"
            | "vmirss"
            | "virtualmachineinstancereplicaset"
            | "virtualmachineinstancereplicasets" => Ok(Kind::Vmirs),
            _ => Err(Error::Usage(format!("unsupported resource type: {s}"))),
        }
    }

    pub fn resource(self) -> &'static str {
        match self {
            Kind::Vm => "virtualmachines",
            Kind::Vmi => "virtualmachineinstances",
            Kind::Vmirs => "virtualmachineinstancereplicasets",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Vm => "VirtualMachine",
            Kind::Vmi => "VirtualMachineInstance",
            Kind::Vmirs => "VirtualMachineInstanceReplicaSet",
        }
    }
}

/// The flags of `expose`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub name: String,
    pub port: Option<i32>,
    pub target_port: Option<String>,
    pub protocol: String,
    pub service_type: String,
    pub port_name: Option<String>,
    pub cluster_ip: Option<String>,
    pub external_ip: Option<String>,
}

/// Upstream's `vmi.kubevirt.io/id` label value: the name, or for names over 63 characters its
/// first 54, a dash and 8 hex digits of its SHA-1 (the launcher pod carries it).
pub fn vmi_id(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, name.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = name.chars().take(54).collect();
    format!("{prefix}-{}", &hex[..8])
}

fn protocol(s: &str) -> Result<&'static str, Error> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok("TCP"),
        "udp" => Ok("UDP"),
        _ => Err(Error::Usage(format!("unknown protocol: {s}"))),
    }
}

fn service_type(s: &str) -> Result<&'static str, Error> {
    match s.to_ascii_lowercase().as_str() {
        "clusterip" => Ok("ClusterIP"),
        "nodeport" => Ok("NodePort"),
        "loadbalancer" => Ok("LoadBalancer"),
        "externalname" => Err(Error::Usage(format!("type: {s} not supported"))),
        _ => Err(Error::Usage(format!("unknown service type: {s}"))),
    }
}

/// The ports the pod network interface declares (`port-1`, `port-2`, ...).
fn pod_network_ports(vmi_spec: &Value) -> Vec<Value> {
    let Some(pod_net) = vmi_spec["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n.get("pod").is_some())
        .and_then(|n| n["name"].as_str())
    else {
        return Vec::new();
    };
    vmi_spec["domain"]["devices"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"].as_str() == Some(pod_net))
        .and_then(|i| i["ports"].as_array())
        .map(|ports| {
            ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    json!({"name": format!("port-{}", i + 1),
                        "protocol": p["protocol"].as_str().unwrap_or("TCP"),
                        "port": p["port"]})
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The Service exposing `object` (a VM, VMI or VMI replica set as JSON).
pub fn service(o: &Options, kind: Kind, object: &Value, namespace: &str) -> Result<Value, Error> {
    if o.name.is_empty() {
        return Err(Error::Usage("service name cannot be empty".into()));
    }
    let proto = protocol(&o.protocol)?;
    let stype = service_type(&o.service_type)?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let (selector, mut ports) = match kind {
        Kind::Vmi => (
            json!({"vmi.kubevirt.io/id": vmi_id(name)}),
            pod_network_ports(&object["spec"]),
        ),
        Kind::Vm => (
            json!({"vmi.kubevirt.io/id": vmi_id(name)}),
            pod_network_ports(&object["spec"]["template"]["spec"]),
        ),
        Kind::Vmirs => {
            let sel = &object["spec"]["selector"];
            if sel["matchExpressions"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
            {
                return Err(Error::Usage(
                    "cannot expose VirtualMachineInstanceReplicaSet with match expressions".into(),
                ));
            }
            let labels = sel["matchLabels"].clone();
            if labels.as_object().is_none_or(|l| l.is_empty()) {
                return Err(Error::Usage(
                    "cannot expose VirtualMachineInstanceReplicaSet without any selector labels"
                        .into(),
                ));
            }
            (
                labels,
                pod_network_ports(&object["spec"]["template"]["spec"]),
            )
        }
    };
    if let Some(port) = o.port.filter(|p| *p != 0) {
        let mut p = json!({"protocol": proto, "port": port});
        if let Some(n) = o.port_name.as_ref().filter(|n| !n.is_empty()) {
            p["name"] = json!(n);
        }
        if let Some(t) = o.target_port.as_ref().filter(|t| !t.is_empty()) {
            p["targetPort"] = match t.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(t),
            };
        }
        ports = vec![p];
    }
    if ports.is_empty() {
        return Err(Error::Usage(
            "couldn't find port via --port flag or introspection".into(),
        ));
    }
    let mut spec = json!({"ports": ports, "selector": selector, "type": stype});
    if let Some(ip) = o.cluster_ip.as_ref().filter(|s| !s.is_empty()) {
        spec["clusterIP"] = json!(ip);
    }
    if let Some(ip) = o.external_ip.as_ref().filter(|s| !s.is_empty()) {
        spec["externalIPs"] = json!([ip]);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": o.name,
            "namespace": namespace,
            "ownerReferences": [{
                "apiVersion": "kubevirt.io/v1",
                "kind": kind.kind(),
                "name": name,
                "uid": object["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": false,
            }],
        },
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            name: "svc".into(),
            protocol: "TCP".into(),
            service_type: "ClusterIP".into(),
            ..Default::default()
        }
    }

    #[test]
    fn vm_with_port() {
        let vm = json!({"metadata": {"name": "testvm", "uid": "u1"}, "spec": {"template": {"spec": {}}}});
        assert!(service(&opts(), Kind::Vm, &vm, "ns").is_err());
        let o = Options {
            port: Some(27017),
            target_port: Some("22".into()),
            service_type: "nodeport".into(),
            ..opts()
        };
        let s = service(&o, Kind::Vm, &vm, "ns").expect("ok");
        assert_eq!(
            s["spec"]["selector"],
            json!({"vmi.kubevirt.io/id": "testvm"})
        );
        assert_eq!(
            s["spec"]["ports"],
            json!([{"protocol": "TCP", "port": 27017, "targetPort": 22}])
        );
        assert_eq!(s["spec"]["type"], "NodePort");
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert!(
            service(
                &Options {
                    protocol: "sctp".into(),
                    ..o.clone()
                },
                Kind::Vm,
                &vm,
                "ns"
            )
            .is_err()
        );
    }

    #[test]
    fn introspected_ports_and_replicasets() {
        let vmi = json!({"metadata": {"name": "v"}, "spec": {
            "networks": [{"name": "default", "pod": {}}],
            "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {},
                "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}]}}}});
        let s = service(&opts(), Kind::Vmi, &vmi, "ns").expect("ok");
        assert_eq!(
            s["spec"]["ports"],
            json!([{"name": "port-1", "protocol": "TCP", "port": 80}, {"name": "port-2", "protocol": "UDP", "port": 53}])
        );
        let rs = json!({"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"spec": {}}}});
        let o = Options {
            port: Some(1),
            ..opts()
        };
        assert_eq!(
            service(&o, Kind::Vmirs, &rs, "ns").expect("ok")["spec"]["selector"],
            json!({"app": "x"})
        );
        let long = "a".repeat(70);
        let id = vmi_id(&long);
        assert_eq!(id.len(), 63);
        assert!(id.starts_with(&"a".repeat(54)));
    }
}
