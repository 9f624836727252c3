//! What the server serves: the built-in resources and the ones CRDs add, each described by a
//! [`ResourceDef`] (names, scope, verbs, subresources, schema, printer columns).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
};

/// How the main endpoint and the subresources split an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleDef {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VersionDef {
    pub name: String,
    /// The structural schema (CRDs, and built-ins from their Rust types).
    pub schema: Option<Arc<JSONSchemaProps>>,
    pub columns: Vec<CustomResourceColumnDefinition>,
    pub deprecation_warning: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions, the preferred (storage) one first.
    pub versions: Vec<VersionDef>,
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Verbs of the main resource, as discovery lists them.
    pub verbs: Vec<&'static str>,
    pub status: bool,
    pub scale: Option<ScaleDef>,
    /// Extra subresources with their own handling (`binding`, `finalize`).
    pub extra: Vec<&'static str>,
    /// Fields usable in field selectors besides metadata.name/namespace.
    pub selectable: Vec<&'static str>,
    /// True for resources a CRD defines.
    pub custom: bool,
    /// The storage name when this resource is a view of another one's objects.
    pub storage: Option<String>,
    /// How objects convert between this resource and its storage.
    pub view: crate::convert::View,
}

pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceDef {
    /// The storage name: `pods`, `virtualmachines.kubevirt.io`.
    pub fn gr(&self) -> String {
        match &self.storage {
            Some(s) => s.clone(),
            None => gr(&self.group, &self.resource),
        }
    }

    pub fn version(&self, v: &str) -> Option<&VersionDef> {
        self.versions.iter().find(|x| x.name == v)
    }

    pub fn storage_version(&self) -> &str {
        self.versions
            .first()
            .map(|v| v.name.as_str())
            .unwrap_or("v1")
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn subject(&self) -> crate::error::Subject<'_> {
        crate::error::Subject {
            group: &self.group,
            resource: &self.resource,
            kind: &self.kind,
        }
    }

    pub fn selectable_fields(&self) -> Vec<&str> {
        let mut v = vec!["metadata.name", "metadata.namespace"];
        v.extend(self.selectable.iter().copied());
        v
    }
}

pub fn gr(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

struct B {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    cats: &'static [&'static str],
    status: bool,
    scale: bool,
    extra: &'static [&'static str],
    verbs: &'static [&'static str],
    selectable: &'static [&'static str],
    storage: Option<&'static str>,
    view: crate::convert::View,
}

const fn b(
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> B {
    B {
        group,
        version,
        resource,
        kind,
        namespaced,
        short: &[],
        cats: &[],
        status: false,
        scale: false,
        extra: &[],
        verbs: ALL_VERBS,
        selectable: &[],
        storage: None,
        view: crate::convert::View::Native,
    }
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn builtin_table() -> Vec<B> {
    let no_dc: &'static [&'static str] = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    vec![
        B {
            short: &["ns"],
            status: true,
            extra: &["finalize"],
            verbs: no_dc,
            selectable: &["status.phase"],
            ..b("", "v1", "namespaces", "Namespace", false)
        },
        B {
            short: &["po"],
            cats: &["all"],
            status: true,
            extra: &["binding", "eviction", "log"],
            selectable: &[
                "spec.nodeName",
                "status.phase",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            ..b("", "v1", "pods", "Pod", true)
        },
        B {
            verbs: &["create"],
            ..b("", "v1", "bindings", "Binding", true)
        },
        B {
            short: &["no"],
            status: true,
            selectable: &["spec.unschedulable"],
            ..b("", "v1", "nodes", "Node", false)
        },
        B {
            short: &["cm"],
            ..b("", "v1", "configmaps", "ConfigMap", true)
        },
        B {
            selectable: &["type"],
            ..b("", "v1", "secrets", "Secret", true)
        },
        B {
            short: &["svc"],
            cats: &["all"],
            status: true,
            ..b("", "v1", "services", "Service", true)
        },
        B {
            short: &["ep"],
            ..b("", "v1", "endpoints", "Endpoints", true)
        },
        B {
            short: &["ev"],
            selectable: EVENT_FIELDS,
            ..b("", "v1", "events", "Event", true)
        },
        B {
            short: &["sa"],
            extra: &["token"],
            ..b("", "v1", "serviceaccounts", "ServiceAccount", true)
        },
        B {
            short: &["pvc"],
            status: true,
            ..b(
                "",
                "v1",
                "persistentvolumeclaims",
                "PersistentVolumeClaim",
                true,
            )
        },
        B {
            short: &["pv"],
            status: true,
            ..b("", "v1", "persistentvolumes", "PersistentVolume", false)
        },
        B {
            short: &["sc"],
            ..b(
                "storage.k8s.io",
                "v1",
                "storageclasses",
                "StorageClass",
                false,
            )
        },
        b("coordination.k8s.io", "v1", "leases", "Lease", true),
        b(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        ),
        B {
            short: &["deploy"],
            cats: &["all"],
            status: true,
            scale: true,
            ..b("apps", "v1", "deployments", "Deployment", true)
        },
        B {
            short: &["ds"],
            cats: &["all"],
            status: true,
            ..b("apps", "v1", "daemonsets", "DaemonSet", true)
        },
        B {
            short: &["rs"],
            cats: &["all"],
            status: true,
            scale: true,
            ..b("apps", "v1", "replicasets", "ReplicaSet", true)
        },
        B {
            short: &["ev"],
            // Stored with the core Events, indexed by their field names.
            selectable: EVENT_FIELDS,
            storage: Some("events"),
            view: crate::convert::View::EventsV1,
            ..b("events.k8s.io", "v1", "events", "Event", true)
        },
        b("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        B {
            verbs: &["create"],
            ..b(
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews",
                "SelfSubjectAccessReview",
                false,
            )
        },
        B {
            verbs: &["create"],
            ..b(
                "authorization.k8s.io",
                "v1",
                "selfsubjectrulesreviews",
                "SelfSubjectRulesReview",
                false,
            )
        },
        B {
            verbs: &["create"],
            ..b(
                "authorization.k8s.io",
                "v1",
                "subjectaccessreviews",
                "SubjectAccessReview",
                false,
            )
        },
        B {
            verbs: &["create"],
            ..b(
                "authorization.k8s.io",
                "v1",
                "localsubjectaccessreviews",
                "LocalSubjectAccessReview",
                true,
            )
        },
        B {
            verbs: &["create"],
            ..b(
                "authentication.k8s.io",
                "v1",
                "tokenreviews",
                "TokenReview",
                false,
            )
        },
        B {
            verbs: &["create"],
            ..b(
                "authentication.k8s.io",
                "v1",
                "selfsubjectreviews",
                "SelfSubjectReview",
                false,
            )
        },
        B {
            cats: &["api-extensions"],
            ..b(
                "admissionregistration.k8s.io",
                "v1",
                "mutatingwebhookconfigurations",
                "MutatingWebhookConfiguration",
                false,
            )
        },
        B {
            cats: &["api-extensions"],
            ..b(
                "admissionregistration.k8s.io",
                "v1",
                "validatingwebhookconfigurations",
                "ValidatingWebhookConfiguration",
                false,
            )
        },
        B {
            cats: &["api-extensions"],
            status: true,
            ..b(
                "apiregistration.k8s.io",
                "v1",
                "apiservices",
                "APIService",
                false,
            )
        },
        B {
            short: &["crd", "crds"],
            cats: &["api-extensions"],
            status: true,
            ..b(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
            )
        },
    ]
}

/// Every built-in resource.
pub fn builtins() -> Vec<ResourceDef> {
    builtin_table()
        .into_iter()
        .map(|x| ResourceDef {
            group: x.group.to_string(),
            versions: vec![VersionDef {
                name: x.version.to_string(),
                schema: crate::builtin_schema::schema_for(x.group, x.kind),
                columns: Vec::new(),
                deprecation_warning: None,
            }],
            resource: x.resource.to_string(),
            singular: x.kind.to_ascii_lowercase(),
            kind: x.kind.to_string(),
            namespaced: x.namespaced,
            short_names: x.short.iter().map(|s| s.to_string()).collect(),
            categories: x.cats.iter().map(|s| s.to_string()).collect(),
            verbs: x.verbs.to_vec(),
            status: x.status,
            scale: x.scale.then(|| ScaleDef {
                spec_replicas_path: ".spec.replicas".into(),
                status_replicas_path: ".status.replicas".into(),
                label_selector_path: None,
            }),
            extra: x.extra.to_vec(),
            selectable: x.selectable.to_vec(),
            custom: false,
            storage: x.storage.map(str::to_string),
            view: x.view,
        })
        .collect()
}

/// The selectable fields of a storage name (for loading the store before CRDs are known).
pub fn selectable_for_gr(gr_name: &str) -> Vec<&'static str> {
    builtin_table()
        .into_iter()
        .find(|x| gr(x.group, x.resource) == gr_name)
        .map(|x| x.selectable.to_vec())
        .unwrap_or_default()
}

/// Orders versions as Kubernetes does: GA before beta before alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, i64, i64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<i64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2u8), ("alpha", 1u8)] {
        if let Some(n) = tail.strip_prefix(prefix)
            && let Ok(minor) = n.parse::<i64>()
        {
            return (rank, major, minor);
        }
    }
    (0, 0, 0)
}

/// The resource a CRD defines (served versions only), or None when it serves none.
pub fn from_crd(crd: &CustomResourceDefinition) -> Option<ResourceDef> {
    let spec = &crd.spec;
    let mut versions: Vec<_> = spec.versions.iter().filter(|v| v.served).collect();
    if versions.is_empty() {
        return None;
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(&v.name)));
    // Status and scale come from the preferred version (ours are the same in every version).
    let sub = versions[0].subresources.as_ref();
    let status = sub.is_some_and(|s| s.status.is_some());
    let scale = sub.and_then(|s| s.scale.as_ref()).map(|s| ScaleDef {
        spec_replicas_path: s.spec_replicas_path.clone(),
        status_replicas_path: s.status_replicas_path.clone(),
        label_selector_path: s.label_selector_path.clone(),
    });
    Some(ResourceDef {
        group: spec.group.clone(),
        versions: versions
            .iter()
            .map(|v| VersionDef {
                name: v.name.clone(),
                schema: v
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.clone())
                    .map(Arc::new),
                columns: v.additional_printer_columns.clone().unwrap_or_default(),
                deprecation_warning: if v.deprecated == Some(true) {
                    Some(v.deprecation_warning.clone().unwrap_or_else(|| {
                        format!(
                            "{}/{} {} is deprecated",
                            spec.group, v.name, spec.names.kind
                        )
                    }))
                } else {
                    None
                },
            })
            .collect(),
        resource: spec.names.plural.clone(),
        singular: spec
            .names
            .singular
            .clone()
            .unwrap_or_else(|| spec.names.kind.to_ascii_lowercase()),
        kind: spec.names.kind.clone(),
        namespaced: spec.scope == "Namespaced",
        short_names: spec.names.short_names.clone().unwrap_or_default(),
        categories: spec.names.categories.clone().unwrap_or_default(),
        verbs: ALL_VERBS.to_vec(),
        status,
        scale,
        extra: Vec::new(),
        selectable: Vec::new(),
        custom: true,
        storage: None,
        view: crate::convert::View::Native,
    })
}

/// Every served resource, indexed for request routing.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// (group, version, plural) -> definition
    by_path: BTreeMap<(String, String, String), Arc<ResourceDef>>,
    /// storage name -> definition
    by_gr: BTreeMap<String, Arc<ResourceDef>>,
    /// Group order for discovery: built-in groups first, then CRD groups by name.
    pub defs: Vec<Arc<ResourceDef>>,
}

impl Registry {
    pub fn new(crds: &[CustomResourceDefinition]) -> Registry {
        let mut defs: Vec<Arc<ResourceDef>> = builtins().into_iter().map(Arc::new).collect();
        let mut custom: Vec<ResourceDef> = crds
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(from_crd)
            .collect();
        custom.sort_by(|a, b| (&a.group, &a.resource).cmp(&(&b.group, &b.resource)));
        defs.extend(custom.into_iter().map(Arc::new));
        let mut r = Registry {
            defs,
            ..Default::default()
        };
        for d in &r.defs {
            for v in &d.versions {
                r.by_path.insert(
                    (d.group.clone(), v.name.clone(), d.resource.clone()),
                    d.clone(),
                );
            }
            if d.storage.is_none() {
                r.by_gr.insert(d.gr(), d.clone());
            }
        }
        r
    }

    pub fn lookup(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceDef>> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
            .cloned()
    }

    pub fn by_gr(&self, gr_name: &str) -> Option<Arc<ResourceDef>> {
        self.by_gr.get(gr_name).cloned()
    }

    /// Whether any resource is served under `group/version`.
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.by_path
            .keys()
            .any(|(g, v, _)| g == group && v == version)
    }

    /// Groups in discovery order, each with its versions in preference order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in &self.defs {
            let entry = match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some(e) => e,
                None => {
                    out.push((d.group.clone(), Vec::new()));
                    let last = out.len() - 1;
                    &mut out[last]
                }
            };
            for v in &d.versions {
                if !entry.1.contains(&v.name) {
                    entry.1.push(v.name.clone());
                }
            }
            entry
                .1
                .sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    /// Resources served in `group/version`.
    pub fn resources_in(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.defs
            .iter()
            .filter(|d| d.group == group && d.version(version).is_some())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha3", "v1", "v2beta1", "v1beta1", "v2", "foo"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v2beta1", "v1beta1", "v1alpha3", "foo"]);
    }

    #[test]
    fn kubevirt_crds_register() {
        let crds = kubevirt_api::crd::all();
        let r = Registry::new(&crds);
        let vm = r
            .lookup("kubevirt.io", "v1", "virtualmachines")
            .expect("vm served");
        assert!(vm.status && vm.custom && vm.namespaced);
        assert_eq!(vm.storage_version(), "v1");
        assert!(
            r.lookup("kubevirt.io", "v1alpha3", "virtualmachines")
                .is_some()
        );
        assert!(vm.short_names.contains(&"vm".to_string()));
        let rs = r
            .lookup("kubevirt.io", "v1", "virtualmachineinstancereplicasets")
            .expect("vmirs");
        assert!(rs.scale.is_some());
        assert_eq!(
            r.groups()
                .iter()
                .find(|(g, _)| g == "kubevirt.io")
                .map(|g| g.1.clone()),
            Some(vec!["v1".to_string(), "v1alpha3".to_string()])
        );
    }
}
