//! Scheduling decisions as pure functions: which nodes a pod fits, why the others do not, the
//! `0/N nodes are available: ...` message, and which feasible node to pick.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};

use crate::quantity::parse_milli;

/// Resource amounts by resource name, in thousandths of the unit (millicores, milli-bytes).
pub type Resources = BTreeMap<String, i128>;

/// Why a pod does not fit a node, worded as kube-scheduler words it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unfit {
    /// `spec.unschedulable` (cordoned) and not tolerated.
    NodeUnschedulable,
    /// A `NoSchedule`/`NoExecute` taint the pod does not tolerate.
    Taint { key: String, value: String },
    /// `nodeSelector` or required node affinity.
    Affinity,
    /// Requests exceed what is left of the node's allocatable.
    Insufficient(String),
    /// The node's `pods` allocatable is used up.
    TooManyPods,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NodeUnschedulable => f.write_str("node(s) were unschedulable"),
            Unfit::Taint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Unfit::Affinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Unfit::Insufficient(r) => write!(f, "Insufficient {r}"),
            Unfit::TooManyPods => f.write_str("Too many pods"),
        }
    }
}

/// What is already placed on a node: the summed requests of its non-terminal pods and their
/// number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub requested: Resources,
    pub pods: i128,
}

impl NodeUsage {
    pub fn add(&mut self, pod_requests: &Resources) {
        for (k, v) in pod_requests {
            *self.requested.entry(k.clone()).or_default() += v;
        }
        self.pods += 1;
    }
}

fn container_requests(c: &Container) -> Resources {
    let mut out = Resources::new();
    let Some(res) = &c.resources else {
        return out;
    };
    // A limit without a request is also the request (the API server defaults it so upstream).
    if let Some(limits) = &res.limits {
        for (k, q) in limits {
            if let Some(v) = parse_milli(&q.0) {
                out.insert(k.clone(), v);
            }
        }
    }
    if let Some(requests) = &res.requests {
        for (k, q) in requests {
            if let Some(v) = parse_milli(&q.0) {
                out.insert(k.clone(), v);
            }
        }
    }
    out
}

/// The pod's effective requests: the larger of the sum over its containers and the largest init
/// container, plus its overhead.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut sum = Resources::new();
    for c in &spec.containers {
        for (k, v) in container_requests(c) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in container_requests(c) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    for (k, q) in spec.overhead.iter().flatten() {
        if let Some(v) = parse_milli(&q.0) {
            *sum.entry(k.clone()).or_default() += v;
        }
    }
    sum
}

/// Does `toleration` tolerate `taint`?
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" | "" => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn first_untolerated<'a>(pod: &PodSpec, taints: &'a [Taint]) -> Option<&'a Taint> {
    let tolerations = pod.tolerations.as_deref().unwrap_or(&[]);
    taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !tolerations.iter().any(|tol| tolerates(tol, t))
    })
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        // An empty term matches no objects.
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            let v = (r.key == "metadata.name")
                .then_some(node.metadata.name.as_deref())
                .flatten();
            requirement_matches(r, v)
        })
}

/// `nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution` node affinity.
pub fn matches_node_selector(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node)),
        None => true,
    }
}

fn allocatable(node: &Node) -> Resources {
    let mut out = Resources::new();
    let status = node.status.as_ref();
    let alloc = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    for (k, q) in alloc.into_iter().flatten() {
        if let Some(v) = parse_milli(&q.0) {
            out.insert(k.clone(), v);
        }
    }
    out
}

/// The reasons `pod` does not fit `node` (empty when it fits). Filters run in kube-scheduler's
/// order (unschedulable, taints, affinity, resources) and the first failing one gives the
/// reasons, as there.
pub fn check(pod: &PodSpec, requests: &Resources, node: &Node, usage: &NodeUsage) -> Vec<Unfit> {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if first_untolerated(pod, std::slice::from_ref(&cordon)).is_some() {
            return vec![Unfit::NodeUnschedulable];
        }
    }
    if let Some(t) = first_untolerated(pod, &taints) {
        return vec![Unfit::Taint {
            key: t.key.clone(),
            value: t.value.clone().unwrap_or_default(),
        }];
    }
    if !matches_node_selector(pod, node) {
        return vec![Unfit::Affinity];
    }
    let alloc = allocatable(node);
    let mut out = Vec::new();
    if let Some(max_pods) = alloc.get("pods")
        && (usage.pods + 1) * 1000 > *max_pods
    {
        out.push(Unfit::TooManyPods);
    }
    for (name, want) in requests {
        if *want <= 0 || name == "pods" {
            continue;
        }
        let have = alloc.get(name).copied().unwrap_or(0);
        let used = usage.requested.get(name).copied().unwrap_or(0);
        if used + want > have {
            out.push(Unfit::Insufficient(name.clone()));
        }
    }
    out
}

/// kube-scheduler's `FitError` text: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s)
/// didn't match Pod's node affinity/selector.`
pub fn unschedulable_message(total_nodes: usize, reasons: &[Vec<Unfit>]) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut histogram: BTreeMap<String, usize> = BTreeMap::new();
    for per_node in reasons {
        for r in per_node {
            *histogram.entry(r.to_string()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = histogram
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    parts.sort();
    format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
}

/// Score of a feasible node, higher is better: the mean share of CPU and memory left free after
/// placing the pod (kube-scheduler's LeastAllocated), in thousandths.
pub fn score(requests: &Resources, node: &Node, usage: &NodeUsage) -> i128 {
    let alloc = allocatable(node);
    let mut total = 0;
    for r in ["cpu", "memory"] {
        let have = alloc.get(r).copied().unwrap_or(0);
        if have <= 0 {
            continue;
        }
        let used =
            usage.requested.get(r).copied().unwrap_or(0) + requests.get(r).copied().unwrap_or(0);
        total += (have - used).max(0) * 1000 / have;
    }
    total / 2
}

/// The outcome of one scheduling attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Bind(String),
    Unschedulable(String),
}

/// Picks the node for `pod` among `nodes`, given each node's usage (by node name): the best
/// score, ties broken by name; or the Unschedulable message.
pub fn schedule(pod: &Pod, nodes: &[Node], usage: &BTreeMap<String, NodeUsage>) -> Decision {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let requests = pod_requests(spec);
    let none = NodeUsage::default();
    let mut best: Option<(i128, &str)> = None;
    let mut reasons = Vec::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let u = usage.get(name).unwrap_or(&none);
        let unfit = check(spec, &requests, node, u);
        if unfit.is_empty() {
            let s = score(&requests, node, u);
            let better = match best {
                None => true,
                Some((bs, bn)) => s > bs || (s == bs && name < bn),
            };
            if better {
                best = Some((s, name));
            }
        } else {
            reasons.push(unfit);
        }
    }
    match best {
        Some((_, name)) => Decision::Bind(name.to_string()),
        None => Decision::Unschedulable(unschedulable_message(nodes.len(), &reasons)),
    }
}

/// Sums the requests of the non-terminal pods bound to each node.
pub fn usage_by_node<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeMap<String, NodeUsage> {
    let mut out: BTreeMap<String, NodeUsage> = BTreeMap::new();
    for p in pods {
        let Some(spec) = &p.spec else { continue };
        let Some(node) = &spec.node_name else {
            continue;
        };
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        out.entry(node.clone())
            .or_default()
            .add(&pod_requests(spec));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, cpu: &str, mem: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}
        }))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn c(requests: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "image": "x", "resources": {"requests": requests}})
    }

    #[test]
    fn picks_least_allocated_then_name() {
        let nodes = vec![
            node("b", json!({}), "2", "4Gi"),
            node("a", json!({}), "2", "4Gi"),
        ];
        let p = pod(json!({"containers": [c(json!({"cpu": "500m"}))]}));
        assert_eq!(
            schedule(&p, &nodes, &BTreeMap::new()),
            Decision::Bind("a".into())
        );
        let mut usage = BTreeMap::new();
        usage
            .entry("a".to_string())
            .or_insert_with(NodeUsage::default)
            .add(&Resources::from([("cpu".to_string(), 1000)]));
        assert_eq!(schedule(&p, &nodes, &usage), Decision::Bind("b".into()));
    }

    #[test]
    fn node_selector_and_message() {
        let nodes = vec![
            node("n1", json!({"disk": "ssd"}), "2", "4Gi"),
            node("n2", json!({"disk": "hdd"}), "2", "4Gi"),
        ];
        let p = pod(json!({"nodeSelector": {"disk": "hdd"}, "containers": [c(json!({}))]}));
        assert_eq!(
            schedule(&p, &nodes, &BTreeMap::new()),
            Decision::Bind("n2".into())
        );
        let p = pod(json!({"nodeSelector": {"disk": "nvme"}, "containers": [c(json!({}))]}));
        assert_eq!(
            schedule(&p, &nodes, &BTreeMap::new()),
            Decision::Unschedulable(
                "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
                    .into()
            )
        );
    }

    #[test]
    fn mixed_reasons_sorted_like_kube_scheduler() {
        let mut tainted = node("n3", json!({}), "8", "8Gi");
        tainted.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}))
                .unwrap(),
        );
        let nodes = vec![
            node("n1", json!({"zone": "a"}), "1", "4Gi"),
            node("n2", json!({"zone": "b"}), "8", "8Gi"),
            tainted,
        ];
        let p = pod(json!({
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "containers": [c(json!({"cpu": "2", "memory": "5Gi"}))]
        }));
        assert_eq!(
            schedule(&p, &nodes, &BTreeMap::new()),
            Decision::Unschedulable(
                "0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, \
                 1 node(s) didn't match Pod's node affinity/selector, \
                 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
                    .into()
            )
        );
    }

    #[test]
    fn tolerations() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &taint
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &taint));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        // PreferNoSchedule taints do not filter.
        let mut n = node("n", json!({}), "1", "1Gi");
        n.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}))
                .unwrap(),
        );
        let p = pod(json!({"containers": [c(json!({}))]}));
        assert_eq!(
            schedule(&p, &[n], &BTreeMap::new()),
            Decision::Bind("n".into())
        );
    }

    #[test]
    fn affinity_operators() {
        let n = node("n", json!({"gen": "5", "zone": "a"}), "1", "1Gi");
        let spec = |exprs: serde_json::Value| -> PodSpec {
            serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}))
            .unwrap()
        };
        assert!(matches_node_selector(
            &spec(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])),
            &n
        ));
        assert!(!matches_node_selector(
            &spec(json!([{"key": "gen", "operator": "Lt", "values": ["4"]}])),
            &n
        ));
        assert!(matches_node_selector(
            &spec(json!([{"key": "zone", "operator": "Exists"}])),
            &n
        ));
        assert!(matches_node_selector(
            &spec(json!([{"key": "x", "operator": "DoesNotExist"}])),
            &n
        ));
        assert!(matches_node_selector(
            &spec(json!([{"key": "zone", "operator": "NotIn", "values": ["b"]}])),
            &n
        ));
        assert!(!matches_node_selector(&spec(json!([])), &n));
    }

    #[test]
    fn requests_limits_init_and_cordon() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [
                {"name": "a", "resources": {"limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "1Mi"}}}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "overhead": {"memory": "1Mi"}
        }))
        .unwrap();
        let r = pod_requests(&spec);
        assert_eq!(r["cpu"], 2000);
        assert_eq!(r["memory"], 2 * 1024 * 1024 * 1000);
        let mut n = node("n", json!({}), "4", "1Gi");
        n.spec = Some(serde_json::from_value(json!({"unschedulable": true})).unwrap());
        assert_eq!(
            check(&spec, &r, &n, &NodeUsage::default()),
            vec![Unfit::NodeUnschedulable]
        );
        assert_eq!(
            unschedulable_message(0, &[]),
            "no nodes available to schedule pods"
        );
    }
}
