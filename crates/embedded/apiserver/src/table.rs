//! `meta.k8s.io/v1` Tables (what `kubectl get` prints) and PartialObjectMetadata (pure).

use serde_json::{Value, json};

use crate::jsonpath::{JsonPath, scalar_text};
use crate::meta::{human_duration, now_seconds, parse_time};
use crate::resources::ResourceDef;

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str =
    "CreationTimestamp is a timestamp representing the server time when this object was created.";

/// One column: name, type, description, priority (1 = only with `-o wide`), and how to fill it.
struct Col {
    name: String,
    ty: String,
    format: String,
    description: String,
    priority: i32,
    cell: Cell,
}

enum Cell {
    Name,
    Age,
    Path(Option<JsonPath>, String),
    Fn(fn(&Value) -> Value),
}

fn col(name: &str, priority: i32, description: &str, f: fn(&Value) -> Value) -> Col {
    Col {
        name: name.into(),
        ty: "string".into(),
        format: String::new(),
        description: description.into(),
        priority,
        cell: Cell::Fn(f),
    }
}

fn name_col() -> Col {
    Col {
        name: "Name".into(),
        ty: "string".into(),
        format: "name".into(),
        description: NAME_DESC.into(),
        priority: 0,
        cell: Cell::Name,
    }
}

fn age_col() -> Col {
    Col {
        name: "Age".into(),
        ty: "string".into(),
        format: String::new(),
        description: AGE_DESC.into(),
        priority: 0,
        cell: Cell::Age,
    }
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::Null => None,
        Value::String(x) => Some(x.clone()),
        other => Some(other.to_string()),
    }
}

fn none_or(v: Option<String>) -> Value {
    Value::String(
        v.filter(|x| !x.is_empty())
            .unwrap_or_else(|| "<none>".into()),
    )
}

fn age_of(obj: &Value) -> String {
    s(obj, &["metadata", "creationTimestamp"])
        .and_then(|t| parse_time(&t))
        .map(|t| human_duration(now_seconds() - t))
        .unwrap_or_else(|| "<unknown>".into())
}

fn pod_ready(p: &Value) -> Value {
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |cs| {
            cs.iter()
                .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                .count()
        });
    json!(format!("{ready}/{total}"))
}

fn pod_status(p: &Value) -> Value {
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let mut reason = s(p, &["status", "reason"])
        .or_else(|| s(p, &["status", "phase"]))
        .unwrap_or_else(|| "Pending".into());
    for c in p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = s(c, &["state", "waiting", "reason"]) {
            reason = r;
        } else if let Some(r) = s(c, &["state", "terminated", "reason"]) {
            reason = r;
        }
    }
    json!(reason)
}

fn pod_restarts(p: &Value) -> Value {
    let n: i64 = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |cs| {
            cs.iter()
                .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                .sum()
        });
    json!(n.to_string())
}

fn node_status(n: &Value) -> Value {
    let ready = n
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
        .and_then(|c| c.get("status").and_then(Value::as_str).map(str::to_string));
    let mut out = match ready.as_deref() {
        Some("True") => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if n.pointer("/spec/unschedulable") == Some(&json!(true)) {
        out.push_str(",SchedulingDisabled");
    }
    json!(out)
}

fn node_roles(n: &Value) -> Value {
    let roles: Vec<String> = n
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    none_or(Some(roles.join(",")))
}

fn node_address(n: &Value, ty: &str) -> Value {
    none_or(
        n.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x.get("type") == Some(&json!(ty))))
            .and_then(|x| s(x, &["address"])),
    )
}

fn count_keys(v: &Value, a: &str, b: &str) -> Value {
    let n = [a, b]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_object))
        .map(|m| m.len())
        .sum::<usize>();
    json!(n)
}

fn service_ports(v: &Value) -> Value {
    let ports: Vec<String> = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let port = s(p, &["port"]).unwrap_or_default();
                    let proto = s(p, &["protocol"]).unwrap_or_else(|| "TCP".into());
                    match s(p, &["nodePort"]) {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    none_or(Some(ports.join(",")))
}

fn builtin_columns(def: &ResourceDef) -> Vec<Col> {
    let mut cols = vec![name_col()];
    match (def.group.as_str(), def.resource.as_str()) {
        ("", "pods") => {
            cols.push(col(
                "Ready",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
                pod_ready,
            ));
            cols.push(col(
                "Status",
                0,
                "The aggregate status of the containers in this pod.",
                pod_status,
            ));
            cols.push(col(
                "Restarts",
                0,
                "The number of times the containers in this pod have been restarted.",
                pod_restarts,
            ));
            cols.push(age_col());
            cols.push(col("IP", 1, "podIP address allocated to the pod.", |p| {
                none_or(s(p, &["status", "podIP"]))
            }));
            cols.push(col("Node", 1, "The node this pod is scheduled on.", |p| {
                none_or(s(p, &["spec", "nodeName"]))
            }));
            cols.push(col(
                "Nominated Node",
                1,
                "The node this pod preempted others for.",
                |p| none_or(s(p, &["status", "nominatedNodeName"])),
            ));
            cols.push(col(
                "Readiness Gates",
                1,
                "Readiness gates of this pod.",
                |_| json!("<none>"),
            ));
        }
        ("", "nodes") => {
            cols.push(col("Status", 0, "The status of the node", node_status));
            cols.push(col("Roles", 0, "The roles of the node", node_roles));
            cols.push(age_col());
            cols.push(col(
                "Version",
                0,
                "Kubelet Version reported by the node.",
                |n| json!(s(n, &["status", "nodeInfo", "kubeletVersion"]).unwrap_or_default()),
            ));
            cols.push(col("Internal-IP", 1, "List of addresses reachable to the node. Queried from cloud provider, if available.", |n| node_address(n, "InternalIP")));
            cols.push(col("External-IP", 1, "List of addresses reachable to the node. Queried from cloud provider, if available.", |n| node_address(n, "ExternalIP")));
            cols.push(col("OS-Image", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", |n| none_or(s(n, &["status", "nodeInfo", "osImage"]))));
            cols.push(col(
                "Kernel-Version",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                |n| none_or(s(n, &["status", "nodeInfo", "kernelVersion"])),
            ));
            cols.push(col("Container-Runtime", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", |n| none_or(s(n, &["status", "nodeInfo", "containerRuntimeVersion"]))));
        }
        ("", "namespaces") => {
            cols.push(col("Status", 0, "The status of the namespace", |n| {
                json!(s(n, &["status", "phase"]).unwrap_or_else(|| "Active".into()))
            }));
            cols.push(age_col());
        }
        ("", "configmaps") => {
            cols.push(col(
                "Data",
                0,
                "Number of data entries in the ConfigMap",
                |c| count_keys(c, "data", "binaryData"),
            ));
            cols.push(age_col());
        }
        ("", "secrets") => {
            cols.push(col("Type", 0, "The type of the secret", |c| {
                json!(s(c, &["type"]).unwrap_or_else(|| "Opaque".into()))
            }));
            cols.push(col(
                "Data",
                0,
                "Number of data entries in the Secret",
                |c| count_keys(c, "data", "stringData"),
            ));
            cols.push(age_col());
        }
        ("", "services") => {
            cols.push(col("Type", 0, "The type of the service", |v| {
                json!(s(v, &["spec", "type"]).unwrap_or_else(|| "ClusterIP".into()))
            }));
            cols.push(col("Cluster-IP", 0, "The cluster IP of the service", |v| {
                none_or(s(v, &["spec", "clusterIP"]))
            }));
            cols.push(col(
                "External-IP",
                0,
                "The external IPs of the service",
                |_| json!("<none>"),
            ));
            cols.push(col("Port(s)", 0, "The ports of the service", service_ports));
            cols.push(age_col());
            cols.push(col("Selector", 1, "The selector of the service", |v| {
                none_or(
                    v.pointer("/spec/selector")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, x)| format!("{k}={}", scalar_text(x)))
                                .collect::<Vec<_>>()
                                .join(",")
                        }),
                )
            }));
        }
        ("", "events") => {
            // As kubectl shows events: most recent sighting first, the name only with -o wide.
            cols.clear();
            cols.push(col(
                "Last Seen",
                0,
                "When the event was last observed",
                |e| {
                    json!(event_age(
                        e,
                        &[
                            &["series", "lastObservedTime"],
                            &["lastTimestamp"],
                            &["eventTime"]
                        ]
                    ))
                },
            ));
            cols.push(col("Type", 0, "The type of the event", |e| {
                none_or(s(e, &["type"]))
            }));
            cols.push(col("Reason", 0, "Why the event happened", |e| {
                none_or(s(e, &["reason"]))
            }));
            cols.push(col("Object", 0, "The object the event is about", |e| {
                json!(format!(
                    "{}/{}",
                    s(e, &["involvedObject", "kind"])
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    s(e, &["involvedObject", "name"]).unwrap_or_default()
                ))
            }));
            cols.push(col(
                "Subobject",
                1,
                "The part of the object the event is about",
                |e| json!(s(e, &["involvedObject", "fieldPath"]).unwrap_or_default()),
            ));
            cols.push(col(
                "Source",
                1,
                "The component that reported the event",
                |e| {
                    json!(
                        s(e, &["source", "component"])
                            .or_else(|| s(e, &["reportingComponent"]))
                            .unwrap_or_default()
                    )
                },
            ));
            cols.push(col("Message", 0, "The event's message", |e| {
                none_or(s(e, &["message"]))
            }));
            cols.push(col(
                "First Seen",
                1,
                "When the event was first observed",
                |e| json!(event_age(e, &[&["firstTimestamp"], &["eventTime"]])),
            ));
            cols.push(col("Count", 1, "How often the event was observed", |e| {
                json!(
                    e.pointer("/series/count")
                        .or_else(|| e.get("count"))
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                        .to_string()
                )
            }));
            let mut name = name_col();
            name.priority = 1;
            cols.push(name);
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            cols.push(col(
                "Created At",
                0,
                "When the definition was created",
                |c| json!(s(c, &["metadata", "creationTimestamp"]).unwrap_or_default()),
            ));
        }
        ("coordination.k8s.io", "leases") => {
            cols.push(col("Holder", 0, "The holder of the lease", |l| {
                none_or(s(l, &["spec", "holderIdentity"]))
            }));
            cols.push(age_col());
        }
        ("apps", "deployments") => {
            cols.push(col("Ready", 0, "Number of the pod with ready state", |d| {
                json!(format!(
                    "{}/{}",
                    num(d, &["status", "readyReplicas"]),
                    replicas(d)
                ))
            }));
            cols.push(col("Up-to-date", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec", |d| json!(num(d, &["status", "updatedReplicas"]))));
            cols.push(col("Available", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment", |d| json!(num(d, &["status", "availableReplicas"]))));
            cols.push(age_col());
            cols.push(col(
                "Containers",
                1,
                "Names of each container in the template",
                |d| containers(d, "name"),
            ));
            cols.push(col(
                "Images",
                1,
                "Images referenced by each container in the template",
                |d| containers(d, "image"),
            ));
            cols.push(col(
                "Selector",
                1,
                "The label selector of the deployment",
                selector,
            ));
        }
        ("apps", "replicasets") => {
            cols.push(col("Desired", 0, "Number of desired pods", |d| {
                json!(replicas(d))
            }));
            cols.push(col("Current", 0, "Number of actual replicas", |d| {
                json!(num(d, &["status", "replicas"]))
            }));
            cols.push(col("Ready", 0, "The number of ready replicas", |d| {
                json!(num(d, &["status", "readyReplicas"]))
            }));
            cols.push(age_col());
            cols.push(col(
                "Containers",
                1,
                "Names of each container in the template",
                |d| containers(d, "name"),
            ));
            cols.push(col(
                "Images",
                1,
                "Images referenced by each container in the template",
                |d| containers(d, "image"),
            ));
            cols.push(col("Selector", 1, "The label selector", selector));
        }
        ("apps", "daemonsets") => {
            for (name, field) in [
                ("Desired", "desiredNumberScheduled"),
                ("Current", "currentNumberScheduled"),
                ("Ready", "numberReady"),
                ("Up-to-date", "updatedNumberScheduled"),
                ("Available", "numberAvailable"),
            ] {
                cols.push(Col {
                    name: name.into(),
                    ty: "integer".into(),
                    format: String::new(),
                    description: format!("status.{field}"),
                    priority: 0,
                    cell: Cell::Path(
                        JsonPath::parse(&format!(".status.{field}")).ok(),
                        "integer".into(),
                    ),
                });
            }
            cols.push(col(
                "Node Selector",
                0,
                "The node selector of the pod template",
                |d| {
                    none_or(
                        d.pointer("/spec/template/spec/nodeSelector")
                            .and_then(Value::as_object)
                            .map(|m| {
                                m.iter()
                                    .map(|(k, x)| format!("{k}={}", scalar_text(x)))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            }),
                    )
                },
            ));
            cols.push(age_col());
        }
        ("", "serviceaccounts") => {
            cols.push(col(
                "Secrets",
                0,
                "Number of secrets of the service account",
                |a| {
                    json!(
                        a.get("secrets")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                    )
                },
            ));
            cols.push(age_col());
        }
        ("", "endpoints") => {
            cols.push(col("Endpoints", 0, "Endpoints of the service", |e| {
                let mut out = Vec::new();
                for sub in e
                    .get("subsets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let ports: Vec<String> = sub
                        .get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| s(p, &["port"]))
                        .collect();
                    for a in sub
                        .get("addresses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let ip = s(a, &["ip"]).unwrap_or_default();
                        if ports.is_empty() {
                            out.push(ip.clone());
                        }
                        for p in &ports {
                            out.push(format!("{ip}:{p}"));
                        }
                    }
                }
                none_or(Some(out.join(",")))
            }));
            cols.push(age_col());
        }
        ("", "persistentvolumeclaims") => {
            cols.push(col("Status", 0, "The phase of the claim", |c| {
                none_or(s(c, &["status", "phase"]))
            }));
            cols.push(col("Volume", 0, "The bound volume", |c| {
                json!(s(c, &["spec", "volumeName"]).unwrap_or_default())
            }));
            cols.push(col(
                "Capacity",
                0,
                "The capacity of the bound volume",
                |c| json!(s(c, &["status", "capacity", "storage"]).unwrap_or_default()),
            ));
            cols.push(col(
                "Access Modes",
                0,
                "The access modes of the bound volume",
                |c| access_modes(c, &["status", "accessModes"]),
            ));
            cols.push(col(
                "StorageClass",
                0,
                "The storage class of the claim",
                |c| none_or(s(c, &["spec", "storageClassName"])),
            ));
            cols.push(col(
                "VolumeAttributesClass",
                0,
                "The volume attributes class",
                |c| none_or(s(c, &["spec", "volumeAttributesClassName"])),
            ));
            cols.push(age_col());
            cols.push(col("VolumeMode", 1, "The volume mode of the claim", |c| {
                json!(s(c, &["spec", "volumeMode"]).unwrap_or_else(|| "Filesystem".into()))
            }));
        }
        ("", "persistentvolumes") => {
            cols.push(col("Capacity", 0, "The capacity of the volume", |v| {
                json!(s(v, &["spec", "capacity", "storage"]).unwrap_or_default())
            }));
            cols.push(col(
                "Access Modes",
                0,
                "The access modes of the volume",
                |v| access_modes(v, &["spec", "accessModes"]),
            ));
            cols.push(col(
                "Reclaim Policy",
                0,
                "What happens to the volume when released",
                |v| {
                    json!(
                        s(v, &["spec", "persistentVolumeReclaimPolicy"])
                            .unwrap_or_else(|| "Retain".into())
                    )
                },
            ));
            cols.push(col("Status", 0, "The phase of the volume", |v| {
                json!(s(v, &["status", "phase"]).unwrap_or_default())
            }));
            cols.push(col(
                "Claim",
                0,
                "The claim bound to the volume",
                |v| match (
                    s(v, &["spec", "claimRef", "namespace"]),
                    s(v, &["spec", "claimRef", "name"]),
                ) {
                    (Some(ns), Some(n)) => json!(format!("{ns}/{n}")),
                    _ => json!(""),
                },
            ));
            cols.push(col(
                "StorageClass",
                0,
                "The storage class of the volume",
                |v| json!(s(v, &["spec", "storageClassName"]).unwrap_or_default()),
            ));
            cols.push(col(
                "VolumeAttributesClass",
                0,
                "The volume attributes class",
                |v| none_or(s(v, &["spec", "volumeAttributesClassName"])),
            ));
            cols.push(col("Reason", 0, "Why the volume is in its phase", |v| {
                json!(s(v, &["status", "reason"]).unwrap_or_default())
            }));
            cols.push(age_col());
        }
        ("storage.k8s.io", "storageclasses") => {
            cols.push(col("Provisioner", 0, "The provisioner of the class", |c| {
                json!(s(c, &["provisioner"]).unwrap_or_default())
            }));
            cols.push(col(
                "ReclaimPolicy",
                0,
                "The reclaim policy of the class",
                |c| json!(s(c, &["reclaimPolicy"]).unwrap_or_else(|| "Delete".into())),
            ));
            cols.push(col("VolumeBindingMode", 0, "When volumes are bound", |c| {
                json!(s(c, &["volumeBindingMode"]).unwrap_or_else(|| "Immediate".into()))
            }));
            cols.push(col(
                "AllowVolumeExpansion",
                0,
                "Whether volumes can grow",
                |c| json!(s(c, &["allowVolumeExpansion"]).unwrap_or_else(|| "false".into())),
            ));
            cols.push(age_col());
        }
        ("apiregistration.k8s.io", "apiservices") => {
            cols.push(col("Service", 0, "The service serving the API", |c| {
                json!(match (
                    s(c, &["spec", "service", "namespace"]),
                    s(c, &["spec", "service", "name"])
                ) {
                    (Some(ns), Some(n)) => format!("{ns}/{n}"),
                    _ => "Local".to_string(),
                })
            }));
            cols.push(col("Available", 0, "Whether the API is available", |c| {
                let cond = c
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| x["type"] == "Available"));
                json!(match cond {
                    None => "Unknown".to_string(),
                    Some(x) if x["status"] == "True" => "True".to_string(),
                    Some(x) => format!(
                        "{} ({})",
                        s(x, &["status"]).unwrap_or_default(),
                        s(x, &["reason"]).unwrap_or_default()
                    ),
                })
            }));
            cols.push(age_col());
        }
        _ => cols.push(age_col()),
    }
    cols
}

/// The age of the first timestamp found among `paths`, falling back to the creation time.
fn event_age(e: &Value, paths: &[&[&str]]) -> String {
    paths
        .iter()
        .find_map(|p| s(e, p))
        .or_else(|| s(e, &["metadata", "creationTimestamp"]))
        .and_then(|t| parse_time(&t))
        .map(|t| human_duration(now_seconds() - t))
        .unwrap_or_else(|| "<unknown>".into())
}

fn num(v: &Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0,
        }
    }
    cur.as_i64().unwrap_or(0)
}

/// `spec.replicas`, which defaults to 1.
fn replicas(v: &Value) -> i64 {
    v.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn containers(v: &Value, field: &str) -> Value {
    none_or(
        v.pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| s(c, &[field]))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
    )
}

fn selector(v: &Value) -> Value {
    none_or(
        v.pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, x)| format!("{k}={}", scalar_text(x)))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
    )
}

fn access_modes(v: &Value, path: &[&str]) -> Value {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return json!(""),
        }
    }
    let short: Vec<&str> = cur
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    json!(short.join(","))
}

fn columns(def: &ResourceDef, version: &str) -> Vec<Col> {
    let Some(v) = def.version(version) else {
        return vec![name_col(), age_col()];
    };
    if !def.custom {
        return builtin_columns(def);
    }
    let mut cols = vec![name_col()];
    if v.columns.is_empty() {
        cols.push(age_col());
        return cols;
    }
    for c in &v.columns {
        cols.push(Col {
            name: c.name.clone(),
            ty: c.type_.clone(),
            format: c.format.clone().unwrap_or_default(),
            description: c.description.clone().unwrap_or_else(|| {
                format!(
                    "Custom resource definition column (in JSONPath format): {}",
                    c.json_path
                )
            }),
            priority: c.priority.unwrap_or(0),
            cell: Cell::Path(JsonPath::parse(&c.json_path).ok(), c.type_.clone()),
        });
    }
    cols
}

fn cell(c: &Col, obj: &Value) -> Value {
    match &c.cell {
        Cell::Name => json!(s(obj, &["metadata", "name"]).unwrap_or_default()),
        Cell::Age => json!(age_of(obj)),
        Cell::Fn(f) => f(obj),
        Cell::Path(None, _) => Value::Null,
        Cell::Path(Some(p), ty) => {
            let found = p.eval(obj);
            let Some(first) = found.first() else {
                return Value::Null;
            };
            if ty == "date" {
                return match first.as_str().and_then(parse_time) {
                    Some(t) => json!(human_duration(now_seconds() - t)),
                    None => Value::Null,
                };
            }
            if found.len() > 1 {
                return json!(
                    found
                        .iter()
                        .map(|v| scalar_text(v))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            match (ty.as_str(), first) {
                ("integer" | "number" | "boolean", v) => (*v).clone(),
                (_, Value::String(x)) => json!(x),
                (_, v) => json!(v.to_string()),
            }
        }
    }
}

/// The metadata-only form of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// How much of each object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// A Table of `objects` (rows in the given order).
pub fn table(
    def: &ResourceDef,
    version: &str,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let cols = columns(def, version);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cols.iter().map(|c| cell(c, o)).collect::<Vec<_>>()});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn vm_table_uses_printer_columns() {
        let r = Registry::new(&kubevirt_api::crd::all());
        let vm = r
            .lookup("kubevirt.io", "v1", "virtualmachines")
            .expect("vm");
        let o = json!({"metadata": {"name": "vm1", "creationTimestamp": crate::meta::now_rfc3339()},
                       "status": {"printableStatus": "Stopped"}});
        let t = table(
            &vm,
            "v1",
            &[o],
            json!({"resourceVersion": "5"}),
            IncludeObject::Metadata,
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .expect("cols")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, vec!["Name", "Age", "Status", "Ready"]);
        assert_eq!(t["rows"][0]["cells"], json!(["vm1", "0s", "Stopped", null]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn deployment_and_pvc_columns() {
        let r = Registry::new(&[]);
        let d = r.lookup("apps", "v1", "deployments").expect("deployments");
        let o = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
                       "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let t = table(&d, "v1", &[o], json!({}), IncludeObject::None);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["web", "2/3", 3, 2, "<unknown>", "c", "nginx", "app=web"])
        );
        let p = r.lookup("", "v1", "persistentvolumeclaims").expect("pvc");
        let o = json!({"metadata": {"name": "disk"}, "spec": {"volumeName": "pv1", "storageClassName": "local"},
                       "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        let t = table(&p, "v1", &[o], json!({}), IncludeObject::None);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "disk",
                "Bound",
                "pv1",
                "1Gi",
                "RWO",
                "local",
                "<none>",
                "<unknown>",
                "Filesystem"
            ])
        );
    }

    #[test]
    fn pod_columns() {
        let r = Registry::new(&[]);
        let pods = r.lookup("", "v1", "pods").expect("pods");
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
                       "status": {"phase": "Running", "podIP": "10.244.1.5",
                                  "containerStatuses": [{"ready": true, "restartCount": 2}]}});
        let t = table(&pods, "v1", &[p], json!({}), IncludeObject::None);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "p",
                "1/1",
                "Running",
                "2",
                "<unknown>",
                "10.244.1.5",
                "n1",
                "<none>",
                "<none>"
            ])
        );
    }
}
