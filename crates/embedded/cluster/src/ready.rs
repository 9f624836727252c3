//! When is a cluster ready, and the objects that wire virt-api in. Pure: facts in, verdicts and
//! objects out.

use serde_json::{Value, json};

/// virt-api's webhook configurations (the names virt-api gives them, as upstream's).
pub const MUTATING_CONFIGURATION: &str = "virt-api-mutator";
pub const VALIDATING_CONFIGURATION: &str = "virt-api-validator";

/// What `up` observed of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFact {
    pub name: String,
    pub ready: bool,
    pub schedulable: bool,
}

/// A Node object's readiness: condition Ready=True and virt-handler's
/// `kubevirt.io/schedulable=true` label.
pub fn node_fact(node: &Value) -> NodeFact {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    let schedulable = node
        .pointer("/metadata/labels/kubevirt.io~1schedulable")
        .and_then(Value::as_str)
        == Some("true");
    NodeFact {
        name,
        ready,
        schedulable,
    }
}

/// The nodes as `status` shows them.
pub fn render_nodes(nodes: &[NodeFact]) -> String {
    let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:width$}  {:8}  SCHEDULABLE\n", "NODE", "STATUS");
    for n in nodes {
        let status = if n.ready { "Ready" } else { "NotReady" };
        out.push_str(&format!(
            "{:width$}  {status:8}  {}\n",
            n.name, n.schedulable
        ));
    }
    out
}

/// An APIService's Available condition.
pub fn apiservice_available(obj: &Value) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Available")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Whether the admission webhooks answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhooks {
    /// The configurations are not registered yet.
    Missing,
    /// A dry-run create reached the API server but calling a webhook failed.
    Failing(String),
    Answering,
}

/// Classifies the outcome of the probe (a server-side dry-run create of a VirtualMachine):
/// success or a refusal by a webhook both prove the webhooks answer; only the API server's
/// "failed calling webhook" means they do not.
pub fn classify_probe(result: Result<(), String>) -> Webhooks {
    match result {
        Ok(()) => Webhooks::Answering,
        Err(m) if m.contains("failed calling webhook") => Webhooks::Failing(m),
        Err(m) if m.contains("denied the request") => Webhooks::Answering,
        Err(m) => Webhooks::Failing(m),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The API server answered `/readyz`.
    pub api: bool,
    pub nodes: Vec<NodeFact>,
    pub apiservice: bool,
    pub webhooks: Option<Webhooks>,
}

/// The readiness steps, in the order `up` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    ApiServer,
    Nodes,
    ApiService,
    Webhooks,
}

pub const STEPS: [Step; 4] = [
    Step::ApiServer,
    Step::Nodes,
    Step::ApiService,
    Step::Webhooks,
];

/// Whether `step` holds, and a line saying so (or what is still missing).
pub fn check(step: Step, expected_nodes: &[String], f: &Facts) -> (bool, String) {
    match step {
        Step::ApiServer => (
            f.api,
            if f.api {
                "API server answering".into()
            } else {
                "waiting for the API server".into()
            },
        ),
        Step::Nodes => {
            let ok: Vec<&str> = expected_nodes
                .iter()
                .filter(|n| {
                    f.nodes
                        .iter()
                        .any(|x| &x.name == *n && x.ready && x.schedulable)
                })
                .map(String::as_str)
                .collect();
            let done = ok.len() == expected_nodes.len();
            let line = if done {
                format!(
                    "nodes Ready and schedulable: {} ({})",
                    ok.len(),
                    ok.join(", ")
                )
            } else {
                let missing: Vec<String> = expected_nodes
                    .iter()
                    .filter(|n| !ok.contains(&n.as_str()))
                    .map(|n| match f.nodes.iter().find(|x| &x.name == n) {
                        None => format!("{n} (not registered)"),
                        Some(x) if !x.ready => format!("{n} (not Ready)"),
                        Some(_) => format!("{n} (no virt-handler heartbeat yet)"),
                    })
                    .collect();
                format!(
                    "nodes ready {}/{}; waiting for {}",
                    ok.len(),
                    expected_nodes.len(),
                    missing.join(", ")
                )
            };
            (done, line)
        }
        Step::ApiService => (
            f.apiservice,
            if f.apiservice {
                "virt-api's APIService v1.subresources.kubevirt.io Available".into()
            } else {
                "waiting for APIService v1.subresources.kubevirt.io".into()
            },
        ),
        Step::Webhooks => match &f.webhooks {
            Some(Webhooks::Answering) => (true, "virt-api's admission webhooks answering".into()),
            Some(Webhooks::Failing(m)) => (false, format!("waiting for the webhooks: {m}")),
            Some(Webhooks::Missing) | None => {
                (false, "waiting for the webhook configurations".into())
            }
        },
    }
}

/// Namespaced `kubevirt` objects wiring virt-api in, as a pod's Service would: Service
/// `virt-api` whose Endpoints are virt-api's loopback port, and the APIService of
/// `subresources.kubevirt.io` signed by virt-api's CA.
pub fn virt_api_objects(port: u16, ca_pem: &str) -> Vec<Value> {
    use base64::Engine;
    vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "virt-api", "namespace": "kubevirt",
                            "labels": {"kubevirt.io": "virt-api"}},
               "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": "virt-api", "namespace": "kubevirt",
                            "labels": {"kubevirt.io": "virt-api"}},
               "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                            "ports": [{"name": "https", "port": port}]}]}),
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
               "metadata": {"name": "v1.subresources.kubevirt.io"},
               "spec": {"group": "subresources.kubevirt.io", "version": "v1",
                        "groupPriorityMinimum": 1000, "versionPriority": 15,
                        "service": {"namespace": "kubevirt", "name": "virt-api", "port": 443},
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)}}),
    ]
}

/// RBAC for the local-path provisioner, which runs inside the first node's kubelet with that
/// node's identity: what upstream's local-path-provisioner service account may do.
pub fn provisioner_rbac(node: &str) -> Vec<Value> {
    let name = "kubevirt-rs:local-path-provisioner";
    vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name},
               "rules": [
                   {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["*"]},
                   {"apiGroups": [""], "resources": ["persistentvolumeclaims"],
                    "verbs": ["get", "list", "watch", "update", "patch"]},
                   {"apiGroups": [""], "resources": ["persistentvolumeclaims/status"],
                    "verbs": ["update", "patch"]},
                   {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                   {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
                    "verbs": ["create", "patch", "update"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": format!("system:node:{node}")}]}),
    ]
}

/// The KubeVirt custom resource `kubevirt/kubevirt`, as an operator-installed KubeVirt has it
/// (scripts wait for it: `kubectl wait kv kubevirt -n kubevirt --for condition=Available`).
/// Empty spec: the embedded cluster is configured by flags, not by this object.
pub fn kubevirt_cr() -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
           "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
           "spec": {}})
}

/// Its status once the components run: phase Deployed, Available.
pub fn kubevirt_status(version: &str, now: &str) -> Value {
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastProbeTime": now, "lastTransitionTime": now})
    };
    json!({"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
    "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
    "status": {
        "phase": "Deployed",
        "observedKubeVirtVersion": version,
        "targetKubeVirtVersion": version,
        "conditions": [
            cond("Available", "True", "AllComponentsReady", "All components are ready."),
            cond("Progressing", "False", "AllComponentsReady", "All components are ready."),
            cond("Degraded", "False", "AllComponentsReady", "All components are ready."),
        ]}})
}

/// virt-api keeps its CA and serving certificate in a Secret of its namespace (so a restart
/// keeps the CA the webhook configurations and APIService carry): its identity may read and
/// write Secrets in `kubevirt`, and only there.
pub fn virt_api_rbac() -> Vec<Value> {
    let name = "kubevirt-apiserver-certs";
    vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": "kubevirt"},
               "rules": [{"apiGroups": [""], "resources": ["secrets"],
                          "verbs": ["get", "list", "watch", "create", "update", "patch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": "kubevirt"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": "kubevirt-apiserver",
                             "namespace": "kubevirt"}]}),
    ]
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The API resource an object is applied through: (group, version, plural, namespaced).
pub fn resource_of(obj: &Value) -> Option<(String, String, String, bool)> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.to_string()),
    };
    let (plural, namespaced) = match kind {
        "Namespace" => ("namespaces", false),
        "Service" => ("services", true),
        "Endpoints" => ("endpoints", true),
        "APIService" => ("apiservices", false),
        "KubeVirt" => ("kubevirts", true),
        "ClusterRole" => ("clusterroles", false),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        "MutatingWebhookConfiguration" => ("mutatingwebhookconfigurations", false),
        "ValidatingWebhookConfiguration" => ("validatingwebhookconfigurations", false),
        _ => return None,
    };
    Some((group, version, plural.into(), namespaced))
}

/// The documents of virt-api's `webhooks.yaml` (JSON documents separated by `---` lines).
pub fn parse_docs(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    text.split("\n---\n")
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// The VirtualMachine the webhook probe creates with `dryRun=All`.
pub fn probe_vm() -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
           "metadata": {"name": "virt-cluster-probe", "namespace": "default"},
           "spec": {"runStrategy": "Halted",
                    "template": {"spec": {"domain": {"devices": {},
                                                      "resources": {"requests": {"memory": "64Mi"}}}}}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<String> {
        vec!["n01".into(), "n02".into()]
    }

    #[test]
    fn node_facts_from_objects() {
        let n = json!({"metadata": {"name": "n01", "labels": {"kubevirt.io/schedulable": "true"}},
                       "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                                 {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            node_fact(&n),
            NodeFact {
                name: "n01".into(),
                ready: true,
                schedulable: true
            }
        );
        let n = json!({"metadata": {"name": "n02"},
                       "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        let f = node_fact(&n);
        assert!(!f.ready && !f.schedulable);
    }

    #[test]
    fn node_table() {
        let t = render_nodes(&[
            NodeFact {
                name: "node01".into(),
                ready: true,
                schedulable: true,
            },
            NodeFact {
                name: "node02".into(),
                ready: false,
                schedulable: false,
            },
        ]);
        assert_eq!(
            t,
            "NODE    STATUS    SCHEDULABLE\nnode01  Ready     true\nnode02  NotReady  false\n"
        );
    }

    #[test]
    fn nodes_step_names_what_is_missing() {
        let mut f = Facts {
            api: true,
            ..Default::default()
        };
        f.nodes.push(NodeFact {
            name: "n01".into(),
            ready: true,
            schedulable: false,
        });
        let (ok, line) = check(Step::Nodes, &nodes(), &f);
        assert!(!ok);
        assert_eq!(
            line,
            "nodes ready 0/2; waiting for n01 (no virt-handler heartbeat yet), n02 (not registered)"
        );
        f.nodes[0].schedulable = true;
        f.nodes.push(NodeFact {
            name: "n02".into(),
            ready: true,
            schedulable: true,
        });
        let (ok, line) = check(Step::Nodes, &nodes(), &f);
        assert!(ok);
        assert_eq!(line, "nodes Ready and schedulable: 2 (n01, n02)");
    }

    #[test]
    fn webhook_probe_outcomes() {
        assert_eq!(classify_probe(Ok(())), Webhooks::Answering);
        assert_eq!(
            classify_probe(Err("admission webhook \"x\" denied the request: no".into())),
            Webhooks::Answering
        );
        assert!(matches!(
            classify_probe(Err(
                "Internal error occurred: failed calling webhook \"x\"".into()
            )),
            Webhooks::Failing(_)
        ));
        let (ok, _) = check(Step::Webhooks, &nodes(), &Facts::default());
        assert!(!ok);
    }

    #[test]
    fn apiservice_and_objects() {
        assert!(apiservice_available(
            &json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}})
        ));
        assert!(!apiservice_available(&json!({"status": {}})));
        let objs = virt_api_objects(12345, "PEM");
        assert_eq!(
            objs[1].pointer("/subsets/0/ports/0/port"),
            Some(&json!(12345))
        );
        assert_eq!(objs[2].pointer("/spec/caBundle"), Some(&json!("UEVN")));
        for o in objs
            .iter()
            .chain(&provisioner_rbac("n01"))
            .chain(&virt_api_rbac())
        {
            assert!(resource_of(o).is_some(), "{o}");
        }
        assert_eq!(
            resource_of(&objs[2]),
            Some((
                "apiregistration.k8s.io".into(),
                "v1".into(),
                "apiservices".into(),
                false
            ))
        );
        assert_eq!(
            resource_of(&json!({"apiVersion": "v1", "kind": "Pod"})),
            None
        );
    }

    #[test]
    fn kubevirt_resource() {
        assert_eq!(
            resource_of(&kubevirt_cr()),
            Some(("kubevirt.io".into(), "v1".into(), "kubevirts".into(), true))
        );
        let s = kubevirt_status("v0.1.0", "2026-01-01T00:00:00Z");
        assert_eq!(s.pointer("/status/phase"), Some(&json!("Deployed")));
        assert_eq!(
            s.pointer("/status/conditions/0/type"),
            Some(&json!("Available"))
        );
    }

    #[test]
    fn webhook_file_docs() {
        let docs = parse_docs("{\"a\":1}\n---\n{\"b\":2}\n").expect("parse");
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": 2})]);
    }
}
