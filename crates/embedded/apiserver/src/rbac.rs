//! RBAC (pure): Roles, ClusterRoles, RoleBindings and ClusterRoleBindings as values, whether a
//! request is allowed (verbs, API groups, resources with subresources, resourceNames,
//! nonResourceURLs; bindings to users, groups and service accounts), the rules a user has in a
//! namespace (SelfSubjectRulesReview), aggregated ClusterRoles composed from the roles their
//! label selectors pick, and the 403 message the real server gives.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::auth::User;
use crate::error::ApiError;
use crate::selector::LabelSelector;

/// One PolicyRule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    pub fn from_value(v: &Value) -> Rule {
        Rule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut r = json!({"verbs": self.verbs});
        if !self.api_groups.is_empty() || !self.resources.is_empty() {
            r["apiGroups"] = json!(self.api_groups);
            r["resources"] = json!(self.resources);
        }
        if !self.resource_names.is_empty() {
            r["resourceNames"] = json!(self.resource_names);
        }
        if !self.non_resource_urls.is_empty() {
            r["nonResourceURLs"] = json!(self.non_resource_urls);
        }
        r
    }
}

fn rules_of(obj: &Value) -> Vec<Rule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Rule::from_value).collect())
        .unwrap_or_default()
}

/// Who a binding names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

impl Subject {
    fn applies(&self, u: &User) -> bool {
        match self {
            Subject::User(n) => *n == u.name,
            Subject::Group(g) => u.in_group(g),
            Subject::ServiceAccount { namespace, name } => {
                u.name == format!("system:serviceaccount:{namespace}:{name}")
            }
        }
    }
}

/// A RoleBinding (`namespace` set) or ClusterRoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub namespace: Option<String>,
    /// Whether `roleRef` is a ClusterRole (else a Role in the binding's namespace).
    pub cluster_role: bool,
    pub role: String,
    pub subjects: Vec<Subject>,
}

impl Binding {
    pub fn from_value(v: &Value, namespaced: bool) -> Binding {
        let ns = crate::meta::meta_str(v, "namespace").unwrap_or_default();
        let subjects = v
            .get("subjects")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        let name = s.get("name")?.as_str()?.to_string();
                        Some(match s.get("kind").and_then(Value::as_str)? {
                            "User" => Subject::User(name),
                            "Group" => Subject::Group(name),
                            "ServiceAccount" => Subject::ServiceAccount {
                                namespace: s
                                    .get("namespace")
                                    .and_then(Value::as_str)
                                    .filter(|n| !n.is_empty())
                                    .unwrap_or(ns)
                                    .to_string(),
                                name,
                            },
                            _ => return None,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Binding {
            name: crate::meta::meta_str(v, "name")
                .unwrap_or_default()
                .to_string(),
            namespace: namespaced.then(|| ns.to_string()),
            cluster_role: v.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole"),
            role: v
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            subjects,
        }
    }
}

/// Every role and binding.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub roles: HashMap<(String, String), Vec<Rule>>,
    pub cluster_roles: HashMap<String, Vec<Rule>>,
    pub bindings: Vec<Binding>,
}

impl Policy {
    pub fn from_objects(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Policy {
        let name = |v: &Value| {
            crate::meta::meta_str(v, "name")
                .unwrap_or_default()
                .to_string()
        };
        Policy {
            roles: roles
                .iter()
                .map(|r| {
                    (
                        (
                            crate::meta::meta_str(r, "namespace")
                                .unwrap_or_default()
                                .to_string(),
                            name(r),
                        ),
                        rules_of(r),
                    )
                })
                .collect(),
            cluster_roles: cluster_roles
                .iter()
                .map(|r| (name(r), rules_of(r)))
                .collect(),
            bindings: role_bindings
                .iter()
                .map(|b| Binding::from_value(b, true))
                .chain(
                    cluster_role_bindings
                        .iter()
                        .map(|b| Binding::from_value(b, false)),
                )
                .collect(),
        }
    }

    /// The rules granted to `u` that apply in `namespace` (cluster-wide ones included; for a
    /// cluster-scoped request `namespace` is empty and only ClusterRoleBindings count).
    pub fn rules_for(&self, u: &User, namespace: &str) -> Vec<&Rule> {
        let mut out = Vec::new();
        for b in &self.bindings {
            if let Some(ns) = &b.namespace
                && (namespace.is_empty() || ns != namespace)
            {
                continue;
            }
            if !b.subjects.iter().any(|s| s.applies(u)) {
                continue;
            }
            let rules = if b.cluster_role {
                self.cluster_roles.get(&b.role)
            } else {
                b.namespace
                    .as_ref()
                    .and_then(|ns| self.roles.get(&(ns.clone(), b.role.clone())))
            };
            out.extend(rules.into_iter().flatten());
        }
        out
    }
}

/// What is being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

impl Request {
    pub fn verb(&self) -> &str {
        match self {
            Request::Resource { verb, .. } | Request::NonResource { verb, .. } => verb,
        }
    }
}

fn has(list: &[String], x: &str) -> bool {
    list.iter().any(|v| v == "*" || v == x)
}

/// Whether a rule's resource entry covers `resource`/`subresource`: `*` is everything,
/// `pods/log` a subresource, `*/scale` that subresource of everything.
pub fn resource_matches(entry: &str, resource: &str, subresource: &str) -> bool {
    if entry == "*" {
        return true;
    }
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    if entry == combined {
        return true;
    }
    !subresource.is_empty() && entry.strip_prefix("*/") == Some(subresource)
}

fn url_matches(entry: &str, path: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => entry == path,
    }
}

/// Whether `rule` allows `req`.
pub fn rule_allows(rule: &Rule, req: &Request) -> bool {
    match req {
        Request::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            has(&rule.verbs, verb)
                && has(&rule.api_groups, group)
                && rule
                    .resources
                    .iter()
                    .any(|r| resource_matches(r, resource, subresource))
                && (rule.resource_names.is_empty()
                    || (!name.is_empty() && rule.resource_names.iter().any(|n| n == name)))
        }
        Request::NonResource { verb, path } => {
            has(&rule.verbs, verb) && rule.non_resource_urls.iter().any(|u| url_matches(u, path))
        }
    }
}

/// Whether `u` may do `req` under `policy` (members of `system:masters` may do anything).
pub fn allowed(policy: &Policy, u: &User, req: &Request) -> bool {
    if u.in_group(crate::auth::MASTERS) {
        return true;
    }
    let namespace = match req {
        Request::Resource { namespace, .. } => namespace.as_str(),
        Request::NonResource { .. } => "",
    };
    policy
        .rules_for(u, namespace)
        .into_iter()
        .any(|r| rule_allows(r, req))
}

/// The node a kubelet's identity names (`system:node:<node>` in `system:nodes`).
pub fn node_of(u: &User) -> Option<&str> {
    u.name
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty() && u.in_group("system:nodes"))
}

/// What the node authorizer adds to RBAC for a kubelet (pure): a node may change only its own
/// Node object and Lease, and only the pods bound to it (`pod_node`: the `spec.nodeName` of the
/// pod a request names). Reads and creations are left to RBAC.
pub fn node_allows(node: &str, req: &Request, pod_node: Option<&str>) -> bool {
    let Request::Resource {
        verb,
        group,
        resource,
        name,
        namespace,
        ..
    } = req
    else {
        return true;
    };
    if !matches!(verb.as_str(), "update" | "patch" | "delete") {
        return true;
    }
    match (group.as_str(), resource.as_str()) {
        ("", "nodes") => name == node,
        ("coordination.k8s.io", "leases") if namespace == "kube-node-lease" => name == node,
        ("", "pods") => pod_node == Some(node),
        _ => true,
    }
}

/// The 403 the real server answers when `u` may not do `req`.
pub fn forbidden(u: &User, req: &Request) -> ApiError {
    match req {
        Request::NonResource { verb, path } => ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                u.name
            ),
        ),
        Request::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let shown = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let why = if namespace.is_empty() {
                format!(
                    "User \"{}\" cannot {verb} resource \"{shown}\" in API group \"{group}\" at the cluster scope",
                    u.name
                )
            } else {
                format!(
                    "User \"{}\" cannot {verb} resource \"{shown}\" in API group \"{group}\" in the namespace \"{namespace}\"",
                    u.name
                )
            };
            let gr = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let message = if name.is_empty() {
                format!("{gr} is forbidden: {why}")
            } else {
                format!("{gr} \"{name}\" is forbidden: {why}")
            };
            let mut details = json!({"kind": resource});
            if !name.is_empty() {
                details["name"] = json!(name);
            }
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            ApiError {
                code: 403,
                reason: "Forbidden",
                message,
                details: Some(details),
            }
        }
    }
}

/// The rules of aggregated ClusterRoles: for each ClusterRole with an `aggregationRule`, the
/// union (in name order, without repeats) of the rules of the ClusterRoles its selectors pick.
/// Returns only the roles whose stored rules differ.
pub fn aggregate(cluster_roles: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut by_name: Vec<&Value> = cluster_roles.iter().collect();
    by_name.sort_by_key(|r| {
        crate::meta::meta_str(r, "name")
            .unwrap_or_default()
            .to_string()
    });
    let mut out = Vec::new();
    for r in &by_name {
        let Some(selectors) = r
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
        else {
            continue;
        };
        let name = crate::meta::meta_str(r, "name").unwrap_or_default();
        let sels: Vec<LabelSelector> = selectors
            .iter()
            .filter_map(|s| LabelSelector::from_object(Some(s)).ok())
            .filter(|s| !s.is_empty())
            .collect();
        let mut rules: Vec<Value> = Vec::new();
        for other in &by_name {
            if crate::meta::meta_str(other, "name") == Some(name) {
                continue;
            }
            let labels: BTreeMap<String, String> = crate::meta::string_map(other, "labels");
            if !sels.iter().any(|s| s.matches(&labels)) {
                continue;
            }
            for rule in other
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let canonical = Rule::from_value(rule).to_value();
                if !rules.contains(&canonical) {
                    rules.push(canonical);
                }
            }
        }
        let current: Vec<Value> = r
            .get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| Rule::from_value(x).to_value()).collect())
            .unwrap_or_default();
        if current != rules {
            out.push((name.to_string(), rules));
        }
    }
    out
}

/// The verb of an HTTP request on a resource path.
pub fn verb_of(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}

/// The attributes of a request path: `/api/v1/...` and `/apis/<g>/<v>/...` are resource
/// requests (namespace, resource, name, subresource), anything else is a non-resource URL.
pub fn request_of(method: &str, path: &str, watch: bool) -> Request {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, rest): (&str, &[&str]) = match segs.as_slice() {
        ["api", _v, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", g, _v, rest @ ..] if !rest.is_empty() => (g, rest),
        _ => {
            return Request::NonResource {
                verb: match method {
                    "GET" | "HEAD" => "get",
                    "POST" => "post",
                    "PUT" => "put",
                    "PATCH" => "patch",
                    "DELETE" => "delete",
                    _ => "",
                }
                .to_string(),
                path: path.to_string(),
            };
        }
    };
    // `/namespaces/<ns>/<resource>...`, except a namespace's own `status` and `finalize`.
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..]
            if !tail.is_empty() && !matches!(tail, ["status" | "finalize"]) =>
        {
            (*ns, tail)
        }
        _ => ("", rest),
    };
    let resource = rest.first().copied().unwrap_or("");
    let name = rest.get(1).copied().unwrap_or("");
    let sub = rest.get(2).copied().unwrap_or("");
    // Connecting to a pod (exec, attach, port-forward) is `create`, whatever the method (a
    // websocket upgrade is a GET), as upstream authorizes it.
    let verb = if resource == "pods" && matches!(sub, "exec" | "attach" | "portforward") {
        "create"
    } else {
        verb_of(method, !name.is_empty(), watch)
    };
    Request::Resource {
        verb: verb.to_string(),
        group: group.to_string(),
        resource: resource.to_string(),
        subresource: sub.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Request {
        Request::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn policy() -> Policy {
        Policy::from_objects(
            &[json!({"metadata": {"name": "pod-reader", "namespace": "a"},
                     "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}]})],
            &[
                json!({"metadata": {"name": "vm-editor"},
                       "rules": [{"verbs": ["*"], "apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"]},
                                 {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"]},
                                 {"verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"]}]}),
                json!({"metadata": {"name": "scaler"},
                       "rules": [{"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/scale"]}]}),
            ],
            &[
                json!({"metadata": {"name": "b1", "namespace": "a"},
                       "roleRef": {"kind": "Role", "name": "pod-reader"},
                       "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa"}]}),
                json!({"metadata": {"name": "b2", "namespace": "a"},
                       "roleRef": {"kind": "ClusterRole", "name": "vm-editor"},
                       "subjects": [{"kind": "Group", "name": "devs"}]}),
            ],
            &[
                json!({"metadata": {"name": "c1"}, "roleRef": {"kind": "ClusterRole", "name": "scaler"},
                     "subjects": [{"kind": "User", "name": "bob"}]}),
            ],
        )
    }

    #[test]
    fn bindings_roles_and_scopes() {
        let p = policy();
        let alice = User::new("alice", &[]);
        let dev = User::new("carol", &["devs"]);
        let sa = User::new("system:serviceaccount:a:sa", &[]);
        let bob = User::new("bob", &[]);
        assert!(allowed(&p, &alice, &res("list", "", "pods", "", "a", "")));
        assert!(allowed(
            &p,
            &alice,
            &res("get", "", "pods", "log", "a", "p")
        ));
        assert!(!allowed(
            &p,
            &alice,
            &res("get", "", "pods", "exec", "a", "p")
        ));
        assert!(!allowed(&p, &alice, &res("list", "", "pods", "", "b", "")));
        assert!(!allowed(&p, &alice, &res("list", "", "pods", "", "", "")));
        assert!(!allowed(
            &p,
            &alice,
            &res("delete", "", "pods", "", "a", "p")
        ));
        assert!(allowed(&p, &sa, &res("list", "", "pods", "", "a", "")));
        assert!(allowed(
            &p,
            &dev,
            &res("create", "kubevirt.io", "virtualmachines", "", "a", "")
        ));
        assert!(!allowed(
            &p,
            &dev,
            &res("create", "kubevirt.io", "virtualmachines", "", "b", "")
        ));
        assert!(!allowed(
            &p,
            &dev,
            &res(
                "create",
                "kubevirt.io",
                "virtualmachines",
                "status",
                "a",
                "x"
            )
        ));
        // resourceNames: only named requests for those names.
        assert!(allowed(
            &p,
            &dev,
            &res("get", "", "configmaps", "", "a", "cfg")
        ));
        assert!(!allowed(
            &p,
            &dev,
            &res("get", "", "configmaps", "", "a", "other")
        ));
        assert!(!allowed(
            &p,
            &dev,
            &res("list", "", "configmaps", "", "a", "")
        ));
        // A ClusterRole through a RoleBinding grants no non-resource URLs (cluster-scoped).
        let url = Request::NonResource {
            verb: "get".into(),
            path: "/metrics".into(),
        };
        assert!(!allowed(&p, &dev, &url));
        // `*/scale`, cluster-wide.
        assert!(allowed(
            &p,
            &bob,
            &res("update", "apps", "deployments", "scale", "x", "d")
        ));
        assert!(!allowed(
            &p,
            &bob,
            &res("update", "apps", "deployments", "", "x", "d")
        ));
        // Masters may do anything.
        assert!(allowed(
            &Policy::default(),
            &User::new("root", &["system:masters"]),
            &url
        ));
    }

    #[test]
    fn nodes_touch_only_their_own() {
        let n = User::new("system:node:n1", &["system:nodes"]);
        assert_eq!(node_of(&n), Some("n1"));
        assert_eq!(node_of(&User::new("system:node:n1", &[])), None);
        assert!(node_allows(
            "n1",
            &res("patch", "", "nodes", "status", "", "n1"),
            None
        ));
        assert!(!node_allows(
            "n1",
            &res("patch", "", "nodes", "status", "", "n2"),
            None
        ));
        assert!(node_allows(
            "n1",
            &res("create", "", "nodes", "", "", ""),
            None
        ));
        assert!(node_allows(
            "n1",
            &res("update", "", "pods", "status", "a", "p"),
            Some("n1")
        ));
        assert!(!node_allows(
            "n1",
            &res("update", "", "pods", "status", "a", "p"),
            Some("n2")
        ));
        assert!(!node_allows(
            "n1",
            &res("delete", "", "pods", "", "a", "p"),
            None
        ));
        assert!(!node_allows(
            "n1",
            &res(
                "update",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-node-lease",
                "n2"
            ),
            None
        ));
        assert!(node_allows(
            "n1",
            &res("get", "", "pods", "", "a", "p"),
            Some("n2")
        ));
    }

    #[test]
    fn non_resource_urls() {
        let r = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/apis/*".into()],
            ..Default::default()
        };
        let nr = |p: &str| Request::NonResource {
            verb: "get".into(),
            path: p.into(),
        };
        assert!(rule_allows(&r, &nr("/healthz")));
        assert!(!rule_allows(&r, &nr("/healthz/etcd")));
        assert!(rule_allows(&r, &nr("/apis/kubevirt.io")));
        assert!(!rule_allows(&r, &nr("/api")));
    }

    #[test]
    fn forbidden_messages_read_as_upstream() {
        let u = User::new("alice", &[]);
        let e = forbidden(
            &u,
            &res("create", "kubevirt.io", "virtualmachines", "", "b", ""),
        );
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "virtualmachines.kubevirt.io is forbidden: User \"alice\" cannot create resource \"virtualmachines\" in API group \"kubevirt.io\" in the namespace \"b\""
        );
        let e = forbidden(&u, &res("get", "", "pods", "log", "a", "p"));
        assert_eq!(
            e.message,
            "pods \"p\" is forbidden: User \"alice\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"a\""
        );
        let e = forbidden(&u, &res("list", "", "nodes", "", "", ""));
        assert!(e.message.ends_with("at the cluster scope"));
        let e = forbidden(
            &u,
            &Request::NonResource {
                verb: "get".into(),
                path: "/metrics".into(),
            },
        );
        assert_eq!(
            e.message,
            "forbidden: User \"alice\" cannot get path \"/metrics\""
        );
    }

    #[test]
    fn request_attributes() {
        assert_eq!(
            request_of("GET", "/api/v1/namespaces/a/pods", false),
            res("list", "", "pods", "", "a", "")
        );
        assert_eq!(
            request_of("GET", "/api/v1/namespaces/a/pods", true),
            res("watch", "", "pods", "", "a", "")
        );
        assert_eq!(
            request_of("GET", "/api/v1/namespaces/a/pods/p/log", false),
            res("get", "", "pods", "log", "a", "p")
        );
        assert_eq!(
            request_of(
                "POST",
                "/apis/kubevirt.io/v1/namespaces/a/virtualmachines",
                false
            ),
            res("create", "kubevirt.io", "virtualmachines", "", "a", "")
        );
        assert_eq!(
            request_of("DELETE", "/api/v1/namespaces/a", false),
            res("delete", "", "namespaces", "", "", "a")
        );
        assert_eq!(
            request_of("PUT", "/api/v1/namespaces/a/finalize", false),
            res("update", "", "namespaces", "finalize", "", "a")
        );
        assert_eq!(
            request_of("GET", "/api/v1/namespaces", false),
            res("list", "", "namespaces", "", "", "")
        );
        assert_eq!(
            request_of("DELETE", "/api/v1/namespaces/a/pods", false),
            res("deletecollection", "", "pods", "", "a", "")
        );
        assert_eq!(
            request_of("GET", "/apis/apps/v1/deployments", false),
            res("list", "apps", "deployments", "", "", "")
        );
        assert_eq!(
            request_of("GET", "/api/v1/nodes/n1/status", false),
            res("get", "", "nodes", "status", "", "n1")
        );
        assert_eq!(
            request_of("GET", "/apis", false),
            Request::NonResource {
                verb: "get".into(),
                path: "/apis".into()
            }
        );
        assert_eq!(
            request_of("GET", "/apis/kubevirt.io/v1", false),
            Request::NonResource {
                verb: "get".into(),
                path: "/apis/kubevirt.io/v1".into()
            }
        );
    }

    #[test]
    fn aggregation_composes_selected_roles() {
        let roles = vec![
            json!({"metadata": {"name": "edit"}, "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]}}),
            json!({"metadata": {"name": "kubevirt.io:edit", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
                   "rules": [{"verbs": ["get"], "apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"]}]}),
            json!({"metadata": {"name": "system:aggregate-to-edit", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
                   "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                             {"verbs": ["get"], "apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"]}]}),
            json!({"metadata": {"name": "other"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
        ];
        let out = aggregate(&roles);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "edit");
        assert_eq!(out[0].1.len(), 2, "{:?}", out[0].1);
        // Once stored, nothing changes.
        let mut stored = roles.clone();
        stored[0]["rules"] = json!(out[0].1);
        assert!(aggregate(&stored).is_empty());
    }

    proptest! {
        // A rule allows a request exactly when each of its lists covers the request.
        #[test]
        fn rule_semantics(
            verb in "(get|list|create|delete)", rv in "(get|list|create|delete|\\*)",
            group in "(|apps|kubevirt.io)", rg in "(|apps|kubevirt.io|\\*)",
            resource in "(pods|deployments)", rr in "(pods|deployments|\\*)",
            name in "(|a|b)", names in proptest::collection::vec("(a|b)", 0..2),
        ) {
            let rule = Rule { verbs: vec![rv.clone()], api_groups: vec![rg.clone()], resources: vec![rr.clone()],
                              resource_names: names.clone(), non_resource_urls: vec![] };
            let req = res(&verb, &group, &resource, "", "ns", &name);
            let expect = (rv == "*" || rv == verb) && (rg == "*" || rg == group) && (rr == "*" || rr == resource)
                && (names.is_empty() || (!name.is_empty() && names.contains(&name)));
            prop_assert_eq!(rule_allows(&rule, &req), expect);
        }

        // Paths never panic the attribute parser.
        #[test]
        fn paths_never_panic(p in "(/[a-z0-9.]{0,6}){0,8}", m in "(GET|POST|PUT|PATCH|DELETE|OPTIONS)") {
            let _ = request_of(&m, &p, false);
        }
    }
}
