//! The RBAC objects a fresh cluster has (pure): Kubernetes' bootstrap ClusterRoles and
//! bindings (cluster-admin for `system:masters`; the aggregated admin/edit/view user roles;
//! discovery, health and self-review for everyone authenticated; the kubelet's `system:node`
//! and the scheduler's), KubeVirt's user-facing `kubevirt.io:admin`/`edit`/`view` (aggregated
//! into admin/edit/view as upstream labels them) and `kubevirt.io:default`, and least-privilege
//! roles for our components (virt-api, virt-controller, virt-handler as upstream's service
//! accounts). Objects carry `rbac.authorization.kubernetes.io/autoupdate: "true"`: the server
//! puts them back as written here at every start, unless that annotation is set to false.

use serde_json::{Value, json};

const RBAC: &str = "rbac.authorization.k8s.io/v1";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "delete",
    "deletecollection",
    "patch",
    "update",
];

fn r(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
    for (k, v) in labels {
        l.insert(k.to_string(), json!(v));
    }
    json!({"apiVersion": RBAC, "kind": "ClusterRole",
           "metadata": {"name": name, "labels": l,
                        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
           "rules": rules})
}

fn aggregated(name: &str, labels: &[(&str, &str)], selector: &str) -> Value {
    let mut role = cluster_role(name, labels, Vec::new());
    role["aggregationRule"] =
        json!({"clusterRoleSelectors": [{"matchLabels": {selector: "true"}}]});
    role
}

fn binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRoleBinding",
           "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn service_account(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "namespace": ns, "name": name})
}

const TO_ADMIN: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
const TO_EDIT: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
const TO_VIEW: (&str, &str) = ("rbac.authorization.k8s.io/aggregate-to-view", "true");

/// KubeVirt's API groups of namespaced user objects.
const KUBEVIRT_RESOURCES: &[(&str, &[&str])] = &[
    (
        "kubevirt.io",
        &[
            "virtualmachines",
            "virtualmachineinstances",
            "virtualmachineinstancepresets",
            "virtualmachineinstancereplicasets",
            "virtualmachineinstancemigrations",
        ],
    ),
    (
        "instancetype.kubevirt.io",
        &["virtualmachineinstancetypes", "virtualmachinepreferences"],
    ),
    ("pool.kubevirt.io", &["virtualmachinepools"]),
    ("cdi.kubevirt.io", &["datavolumes"]),
];

fn kubevirt_rules(verbs: &[&str]) -> Vec<Value> {
    KUBEVIRT_RESOURCES
        .iter()
        .map(|(g, res)| r(&[g], res, verbs))
        .collect()
}

const SUB: &str = "subresources.kubevirt.io";

fn kubevirt_view() -> Vec<Value> {
    let mut rules = vec![r(
        &[SUB],
        &[
            "virtualmachineinstances/guestosinfo",
            "virtualmachineinstances/filesystemlist",
            "virtualmachineinstances/userlist",
            "virtualmachineinstances/sev/fetchcertchain",
            "virtualmachineinstances/sev/querylaunchmeasurement",
        ],
        &["get"],
    )];
    rules.extend(kubevirt_rules(READ));
    rules.push(r(
        &["instancetype.kubevirt.io"],
        &[
            "virtualmachineclusterinstancetypes",
            "virtualmachineclusterpreferences",
        ],
        READ,
    ));
    rules.push(r(&["migrations.kubevirt.io"], &["migrationpolicies"], READ));
    rules
}

fn kubevirt_edit() -> Vec<Value> {
    let mut rules = vec![
        r(
            &[SUB],
            &[
                "virtualmachineinstances/console",
                "virtualmachineinstances/vnc",
                "virtualmachineinstances/vnc/screenshot",
                "virtualmachineinstances/portforward",
                "virtualmachineinstances/guestosinfo",
                "virtualmachineinstances/filesystemlist",
                "virtualmachineinstances/userlist",
                "virtualmachineinstances/sev/fetchcertchain",
                "virtualmachineinstances/sev/querylaunchmeasurement",
            ],
            &["get"],
        ),
        r(
            &[SUB],
            &[
                "virtualmachineinstances/pause",
                "virtualmachineinstances/unpause",
                "virtualmachineinstances/addvolume",
                "virtualmachineinstances/removevolume",
                "virtualmachineinstances/freeze",
                "virtualmachineinstances/unfreeze",
                "virtualmachineinstances/softreboot",
                "virtualmachineinstances/reset",
                "virtualmachineinstances/sev/setupsession",
                "virtualmachineinstances/sev/injectlaunchsecret",
            ],
            &["update"],
        ),
        r(
            &[SUB],
            &["virtualmachines/expand-spec", "virtualmachines/portforward"],
            &["get"],
        ),
        r(
            &[SUB],
            &[
                "virtualmachines/start",
                "virtualmachines/stop",
                "virtualmachines/restart",
                "virtualmachines/addvolume",
                "virtualmachines/removevolume",
                "virtualmachines/migrate",
                "virtualmachines/memorydump",
            ],
            &["update"],
        ),
    ];
    rules.extend(kubevirt_rules(ALL));
    rules.push(r(
        &["instancetype.kubevirt.io"],
        &[
            "virtualmachineclusterinstancetypes",
            "virtualmachineclusterpreferences",
        ],
        READ,
    ));
    rules.push(r(&["migrations.kubevirt.io"], &["migrationpolicies"], READ));
    rules.push(r(&["kubevirt.io"], &["kubevirts"], &["get", "list"]));
    rules
}

/// Every bootstrap ClusterRole and ClusterRoleBinding.
pub fn objects() -> Vec<Value> {
    let all_read = vec![
        r(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            READ,
        ),
        r(
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
            READ,
        ),
        r(&[""], &["namespaces"], READ),
        r(&["discovery.k8s.io"], &["endpointslices"], READ),
        r(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        r(&["events.k8s.io"], &["events"], READ),
        r(&["coordination.k8s.io"], &["leases"], READ),
    ];
    let edit_rules = vec![
        r(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            READ,
        ),
        r(&[""], &["serviceaccounts"], &["impersonate"]),
        r(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            WRITE,
        ),
        r(&[""], &["pods/eviction"], &["create"]),
        r(
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        r(&[""], &["serviceaccounts/token"], &["create"]),
        r(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        r(&["discovery.k8s.io"], &["endpointslices"], WRITE),
    ];
    let admin_rules = vec![
        r(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        r(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            ALL,
        ),
    ];
    let authenticated = || vec![group("system:authenticated")];
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![r(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        binding(
            "cluster-admin",
            "cluster-admin",
            vec![group("system:masters")],
        ),
        aggregated("admin", &[], TO_ADMIN.0),
        aggregated("edit", &[TO_ADMIN], TO_EDIT.0),
        aggregated("view", &[TO_EDIT], TO_VIEW.0),
        cluster_role("system:aggregate-to-admin", &[TO_ADMIN], admin_rules),
        cluster_role("system:aggregate-to-edit", &[TO_ADMIN, TO_EDIT], edit_rules),
        cluster_role(
            "system:aggregate-to-view",
            &[TO_ADMIN, TO_EDIT, TO_VIEW],
            all_read,
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                r(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                r(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        binding("system:basic-user", "system:basic-user", authenticated()),
        cluster_role(
            "system:discovery",
            &[],
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        binding("system:discovery", "system:discovery", authenticated()),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![urls(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
        // The kubelet: its Node and Lease, the pods it runs and their status, what pods mount,
        // tokens for pods, events, and the local-path provisioner's volumes.
        cluster_role(
            "system:node",
            &[],
            vec![
                r(
                    &[""],
                    &["nodes"],
                    &[
                        "create", "get", "list", "watch", "patch", "update", "delete",
                    ],
                ),
                r(&[""], &["nodes/status"], &["patch", "update"]),
                r(
                    &[""],
                    &["pods"],
                    &["get", "list", "watch", "create", "delete"],
                ),
                r(&[""], &["pods/status"], &["patch", "update"]),
                r(&[""], &["pods/eviction"], &["create"]),
                r(
                    &[""],
                    &["configmaps", "secrets", "services", "endpoints"],
                    READ,
                ),
                r(
                    &[""],
                    &["persistentvolumeclaims"],
                    &["get", "list", "watch", "update", "patch"],
                ),
                r(
                    &[""],
                    &["persistentvolumeclaims/status"],
                    &["get", "update", "patch"],
                ),
                r(
                    &[""],
                    &["persistentvolumes"],
                    &[
                        "get", "list", "watch", "create", "delete", "update", "patch",
                    ],
                ),
                r(&[""], &["serviceaccounts/token"], &["create"]),
                r(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                r(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                ),
                r(&["storage.k8s.io"], &["storageclasses"], READ),
                r(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                r(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
        ),
        binding("system:node", "system:node", vec![group("system:nodes")]),
        cluster_role(
            "system:kube-scheduler",
            &[],
            vec![
                r(&[""], &["pods"], &["get", "list", "watch", "delete"]),
                r(&[""], &["pods/binding", "bindings"], &["create"]),
                r(&[""], &["pods/status"], &["patch", "update"]),
                r(
                    &[""],
                    &["nodes"],
                    &["get", "list", "watch", "patch", "update"],
                ),
                r(&[""], &["nodes/status"], &["patch", "update"]),
                r(
                    &[""],
                    &[
                        "namespaces",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "services",
                        "replicationcontrollers",
                    ],
                    READ,
                ),
                r(&["apps"], &["replicasets", "statefulsets"], READ),
                r(
                    &["storage.k8s.io"],
                    &[
                        "storageclasses",
                        "csinodes",
                        "csidrivers",
                        "csistoragecapacities",
                    ],
                    READ,
                ),
                r(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                r(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "list", "watch", "create", "update", "patch"],
                ),
            ],
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            vec![user("system:kube-scheduler")],
        ),
        // KubeVirt's user roles.
        cluster_role("kubevirt.io:view", &[TO_VIEW], kubevirt_view()),
        cluster_role("kubevirt.io:edit", &[TO_EDIT], kubevirt_edit()),
        cluster_role("kubevirt.io:admin", &[TO_ADMIN], kubevirt_edit()),
        cluster_role(
            "kubevirt.io:default",
            &[],
            vec![r(&[SUB], &["version", "guestfs"], &["get", "list"])],
        ),
        binding(
            "kubevirt.io:default",
            "kubevirt.io:default",
            authenticated(),
        ),
        // Our components, as upstream's service accounts.
        cluster_role(
            "kubevirt-apiserver",
            &[],
            vec![
                r(
                    &["kubevirt.io"],
                    &["virtualmachines"],
                    &["get", "list", "watch", "patch", "update"],
                ),
                r(
                    &["kubevirt.io"],
                    &["virtualmachines/status"],
                    &["patch", "update"],
                ),
                r(
                    &["kubevirt.io"],
                    &["virtualmachineinstances"],
                    &["get", "list", "watch", "delete", "patch"],
                ),
                r(&["kubevirt.io"], &["kubevirts"], READ),
                // `migrate` creates the migration.
                r(
                    &["kubevirt.io"],
                    &["virtualmachineinstancemigrations"],
                    &["get", "list", "watch", "create"],
                ),
                r(&["instancetype.kubevirt.io"], &["*"], READ),
                // Nodes: where each node's virt-handler serves (its console address annotation).
                r(
                    &[""],
                    &["pods", "configmaps", "persistentvolumeclaims", "nodes"],
                    READ,
                ),
                r(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                r(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                r(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
        ),
        binding(
            "kubevirt-apiserver",
            "kubevirt-apiserver",
            vec![service_account("kubevirt", "kubevirt-apiserver")],
        ),
        cluster_role(
            "kubevirt-controller",
            &[],
            vec![
                r(&["kubevirt.io"], &["*"], ALL),
                r(
                    &[
                        "instancetype.kubevirt.io",
                        "pool.kubevirt.io",
                        "migrations.kubevirt.io",
                        "cdi.kubevirt.io",
                    ],
                    &["*"],
                    READ,
                ),
                r(
                    &[""],
                    &["pods"],
                    &[
                        "get", "list", "watch", "create", "delete", "patch", "update",
                    ],
                ),
                r(
                    &[""],
                    &["pods/status", "pods/finalizers"],
                    &["patch", "update"],
                ),
                r(&[""], &["pods/eviction"], &["create"]),
                r(&[""], &["nodes"], &["get", "list", "watch", "patch"]),
                r(
                    &[""],
                    &["persistentvolumeclaims"],
                    &[
                        "get", "list", "watch", "create", "delete", "patch", "update",
                    ],
                ),
                r(&[""], &["configmaps", "secrets", "namespaces"], READ),
                r(
                    &["apps"],
                    &["controllerrevisions"],
                    &["get", "list", "watch", "create", "delete", "patch"],
                ),
                r(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                r(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "list", "watch", "create", "update", "patch"],
                ),
            ],
        ),
        binding(
            "kubevirt-controller",
            "kubevirt-controller",
            vec![service_account("kubevirt", "kubevirt-controller")],
        ),
        cluster_role(
            "kubevirt-handler",
            &[],
            vec![
                r(
                    &["kubevirt.io"],
                    &["virtualmachineinstances"],
                    &["get", "list", "watch", "update", "patch"],
                ),
                r(
                    &["kubevirt.io"],
                    &["virtualmachineinstancemigrations"],
                    &["get", "list", "watch", "update", "patch"],
                ),
                r(&["kubevirt.io"], &["kubevirts"], READ),
                r(
                    &[""],
                    &["nodes"],
                    &["get", "list", "watch", "update", "patch"],
                ),
                r(&[""], &["pods"], READ),
                r(
                    &[""],
                    &["configmaps", "secrets", "persistentvolumeclaims"],
                    READ,
                ),
                r(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
            ],
        ),
        binding(
            "kubevirt-handler",
            "kubevirt-handler",
            vec![service_account("kubevirt", "kubevirt-handler")],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;
    use crate::rbac::{Policy, Request, aggregate, allowed};

    /// The bootstrap policy with aggregated roles composed.
    pub fn policy() -> Policy {
        let objs = objects();
        let mut roles: Vec<Value> = objs
            .iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .cloned()
            .collect();
        for (name, rules) in aggregate(&roles) {
            if let Some(r) = roles
                .iter_mut()
                .find(|r| r["metadata"]["name"] == name.as_str())
            {
                r["rules"] = json!(rules);
            }
        }
        let bindings: Vec<Value> = objs
            .iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding")
            .cloned()
            .collect();
        Policy::from_objects(&[], &roles, &[], &bindings)
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str) -> Request {
        Request::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: "x".into(),
        }
    }

    #[test]
    fn user_roles_aggregate_kubevirt_rules() {
        let p = policy();
        let edit = &p.cluster_roles["edit"];
        let admin = &p.cluster_roles["admin"];
        let view = &p.cluster_roles["view"];
        let r = res("create", "kubevirt.io", "virtualmachines", "", "a");
        assert!(edit.iter().any(|x| crate::rbac::rule_allows(x, &r)));
        assert!(admin.iter().any(|x| crate::rbac::rule_allows(x, &r)));
        assert!(!view.iter().any(|x| crate::rbac::rule_allows(x, &r)));
        let console = res("get", SUB, "virtualmachineinstances", "console", "a");
        assert!(edit.iter().any(|x| crate::rbac::rule_allows(x, &console)));
        assert!(!view.iter().any(|x| crate::rbac::rule_allows(x, &console)));
        let roles = res(
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            "",
            "a",
        );
        assert!(admin.iter().any(|x| crate::rbac::rule_allows(x, &roles)));
        assert!(!edit.iter().any(|x| crate::rbac::rule_allows(x, &roles)));
    }

    #[test]
    fn components_have_what_they_need_and_no_more() {
        let p = policy();
        let node = User::new("system:node:n1", &["system:nodes"]);
        let sched = User::new("system:kube-scheduler", &[]);
        let ctrl = User::new(
            "system:serviceaccount:kubevirt:kubevirt-controller",
            &["system:serviceaccounts"],
        );
        let handler = User::new("system:serviceaccount:kubevirt:kubevirt-handler", &[]);
        let api = User::new("system:serviceaccount:kubevirt:kubevirt-apiserver", &[]);
        let anyone = User::new("someone", &[]);
        let can = |u: &User, r: Request| allowed(&p, u, &r);
        assert!(can(&node, res("patch", "", "pods", "status", "a")));
        assert!(can(
            &node,
            res(
                "update",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-node-lease"
            )
        ));
        assert!(can(
            &node,
            res("create", "", "serviceaccounts", "token", "a")
        ));
        assert!(!can(
            &node,
            res("delete", "kubevirt.io", "virtualmachines", "", "a")
        ));
        assert!(!can(
            &node,
            res("get", "rbac.authorization.k8s.io", "clusterroles", "", "")
        ));
        assert!(can(&sched, res("create", "", "pods", "binding", "a")));
        assert!(!can(&sched, res("create", "", "pods", "", "a")));
        assert!(!can(&sched, res("get", "", "secrets", "", "a")));
        assert!(can(&ctrl, res("create", "", "pods", "", "a")));
        assert!(can(
            &ctrl,
            res(
                "update",
                "kubevirt.io",
                "virtualmachineinstances",
                "status",
                "a"
            )
        ));
        assert!(!can(&ctrl, res("create", "", "secrets", "", "a")));
        assert!(!can(
            &ctrl,
            res(
                "create",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                "",
                ""
            )
        ));
        assert!(can(
            &handler,
            res("patch", "kubevirt.io", "virtualmachineinstances", "", "a")
        ));
        assert!(can(&handler, res("patch", "", "nodes", "", "")));
        assert!(!can(&handler, res("create", "", "pods", "", "a")));
        assert!(!can(
            &handler,
            res("delete", "kubevirt.io", "virtualmachines", "", "a")
        ));
        assert!(can(
            &api,
            res("patch", "kubevirt.io", "virtualmachines", "", "a")
        ));
        assert!(!can(&api, res("create", "", "pods", "", "a")));
        // Everyone authenticated: discovery, self reviews, nothing else.
        assert!(can(
            &anyone,
            Request::NonResource {
                verb: "get".into(),
                path: "/apis/kubevirt.io".into()
            }
        ));
        assert!(can(
            &anyone,
            res(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                ""
            )
        ));
        assert!(!can(&anyone, res("list", "", "pods", "", "a")));
    }
}
