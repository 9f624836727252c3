//! The Node object: registration (capacity, allocatable, labels, addresses, the kubelet's log
//! port), the Lease heartbeat in `kube-node-lease`, status heartbeats, and the NotReady mark
//! with Kubernetes' taints when the kubelet stops.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// What the Node says about this machine.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    pub pod_cidr: String,
    pub kubelet_port: u16,
    pub host_ip: String,
}

/// Taints the node lifecycle controller puts on a node whose kubelet stopped reporting.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The machine's CPU count and memory, as Node capacity quantities.
pub fn machine_capacity() -> (String, String) {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(1024 * 1024);
    (cpus.to_string(), format!("{mem_kib}Ki"))
}

fn ready_conditions(now: &str, ready: bool) -> Value {
    let (status, reason, message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    let c = |t: &str, s: &str, r: &str, m: &str| {
        json!({"type": t, "status": s, "reason": r, "message": m,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let other = if ready { "False" } else { "Unknown" };
    json!([
        c(
            "MemoryPressure",
            other,
            if ready {
                "KubeletHasSufficientMemory"
            } else {
                "NodeStatusUnknown"
            },
            if ready {
                "kubelet has sufficient memory available"
            } else {
                message
            }
        ),
        c(
            "DiskPressure",
            other,
            if ready {
                "KubeletHasNoDiskPressure"
            } else {
                "NodeStatusUnknown"
            },
            if ready {
                "kubelet has no disk pressure"
            } else {
                message
            }
        ),
        c(
            "PIDPressure",
            other,
            if ready {
                "KubeletHasSufficientPID"
            } else {
                "NodeStatusUnknown"
            },
            if ready {
                "kubelet has sufficient PID available"
            } else {
                message
            }
        ),
        c("Ready", status, reason, message),
    ])
}

/// The Node's status as this kubelet reports it.
pub fn node_status(f: &NodeFacts, now: Timestamp, ready: bool) -> Value {
    let now = time(now);
    let resources = json!({"cpu": f.cpu, "memory": f.memory, "pods": f.pods.to_string(),
                           "ephemeral-storage": "10Gi"});
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": ready_conditions(&now, ready),
        "addresses": [{"type": "InternalIP", "address": f.host_ip}, {"type": "Hostname", "address": f.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": f.kubelet_port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
            "kernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "osImage": "kubevirt-rs embedded node", "containerRuntimeVersion": "kvrs://0.1.0",
            "kubeletVersion": "v1.33.0-kubevirt-rs", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    })
}

pub fn default_labels(name: &str) -> BTreeMap<String, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch.to_string()),
    ])
}

/// Creates or updates the Node, Ready, without the taints a stop left.
pub async fn register(client: &Client, f: &NodeFacts) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = default_labels(&f.name);
    labels.extend(f.labels.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": f.name, "labels": labels},
        "spec": {"podCIDR": f.pod_cidr, "podCIDRs": [f.pod_cidr]},
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.get_opt(&f.name).await? {
        None => {
            nodes.create(&PostParams::default(), &node).await?;
        }
        Some(existing) => {
            let taints: Vec<Value> = existing
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.key != UNREACHABLE && t.key != "node.kubernetes.io/not-ready")
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect();
            let patch = json!({"metadata": {"labels": labels},
                "spec": {"podCIDR": f.pod_cidr, "podCIDRs": [f.pod_cidr], "taints": taints}});
            nodes
                .patch(&f.name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    heartbeat_status(client, f).await
}

pub async fn heartbeat_status(client: &Client, f: &NodeFacts) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = node_status(f, Timestamp::now(), true);
    nodes
        .patch_status(
            &f.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    Ok(())
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(client: &Client, name: &str, duration_s: i32) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    match leases.get_opt(name).await? {
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "kube-node-lease",
                    "ownerReferences": []},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": duration_s,
                         "renewTime": now},
            }))
            .map_err(kube::Error::SerdeError)?;
            leases.create(&PostParams::default(), &lease).await?;
        }
        Some(_) => {
            leases
                .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"renewTime": now, "holderIdentity": name, "leaseDurationSeconds": duration_s}})))
                .await?;
        }
    }
    Ok(())
}

/// Marks the node as the node lifecycle controller would once this kubelet stopped: Ready
/// Unknown, and the `unreachable` taints (NoSchedule and NoExecute).
pub async fn mark_stopped(client: &Client, f: &NodeFacts) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let status = json!({"conditions": ready_conditions(&time(now), false)});
    nodes
        .patch_status(
            &f.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    let existing = nodes.get(&f.name).await?;
    let mut taints: Vec<Value> = existing
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != UNREACHABLE)
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    taints.push(json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": time(now)}));
    taints.push(json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": time(now)}));
    nodes
        .patch(
            &f.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": taints}})),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shapes() {
        let f = NodeFacts {
            name: "n1".into(),
            cpu: "2".into(),
            memory: "1Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            pod_cidr: "10.244.1.0/24".into(),
            kubelet_port: 10250,
            host_ip: "127.0.0.1".into(),
        };
        let s = node_status(&f, Timestamp::from_second(0).unwrap(), true);
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(s["addresses"][0]["address"], "127.0.0.1");
        assert_eq!(s["conditions"][3]["type"], "Ready");
        assert_eq!(s["conditions"][3]["status"], "True");
        let down = node_status(&f, Timestamp::from_second(0).unwrap(), false);
        assert_eq!(down["conditions"][3]["status"], "Unknown");
        assert_eq!(down["conditions"][3]["reason"], "NodeStatusUnknown");
        let (cpu, mem) = machine_capacity();
        assert!(cpu.parse::<u32>().unwrap() >= 1 && mem.ends_with("Ki"));
        assert_eq!(default_labels("x")["kubernetes.io/hostname"], "x");
    }
}
