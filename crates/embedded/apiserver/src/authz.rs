//! Authorization at the edge: the RBAC policy read from the store (cached until an RBAC object
//! changes), the check every request passes, and the review APIs (`SelfSubjectAccessReview`
//! for `kubectl auth can-i`, `SubjectAccessReview`, `LocalSubjectAccessReview`,
//! `SelfSubjectRulesReview` for `kubectl auth can-i --list`, `TokenReview`, and
//! `SelfSubjectReview` for `kubectl auth whoami`), which are answered, never stored.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::auth::User;
use crate::error::ApiError;
use crate::rbac::{self, Policy, Request};
use crate::server::App;

const ROLES: &str = "roles.rbac.authorization.k8s.io";
const CLUSTER_ROLES: &str = "clusterroles.rbac.authorization.k8s.io";
const ROLE_BINDINGS: &str = "rolebindings.rbac.authorization.k8s.io";
const CLUSTER_ROLE_BINDINGS: &str = "clusterrolebindings.rbac.authorization.k8s.io";
const ALL: [&str; 4] = [ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS];

type Fingerprint = Vec<(u64, usize)>;

/// The policy, rebuilt when an RBAC object changes.
#[derive(Default)]
pub struct PolicyCache(Mutex<Option<(Fingerprint, Arc<Policy>)>>);

impl PolicyCache {
    pub fn get(&self, app: &App) -> Arc<Policy> {
        let cache = app.store.read();
        let print: Fingerprint = ALL
            .iter()
            .map(|gr| {
                cache
                    .objects
                    .get(*gr)
                    .map(|m| (m.values().map(|o| o.rv).max().unwrap_or(0), m.len()))
                    .unwrap_or((0, 0))
            })
            .collect();
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, policy)) = guard.as_ref()
            && *p == print
        {
            return policy.clone();
        }
        let values = |gr: &str| -> Vec<Value> {
            cache
                .objects
                .get(gr)
                .map(|m| m.values().filter_map(|o| o.value().ok()).collect())
                .unwrap_or_default()
        };
        let policy = Arc::new(Policy::from_objects(
            &values(ROLES),
            &values(CLUSTER_ROLES),
            &values(ROLE_BINDINGS),
            &values(CLUSTER_ROLE_BINDINGS),
        ));
        *guard = Some((print, policy.clone()));
        policy
    }
}

/// Whether `user` may do `req`.
pub fn allowed(app: &App, user: &User, req: &Request) -> bool {
    if user.in_group(crate::auth::MASTERS) {
        return true;
    }
    rbac::allowed(&app.rbac.get(app), user, req)
}

/// The node authorizer's restriction for kubelets (see [`rbac::node_allows`]).
fn node_restricted(app: &App, user: &User, req: &Request) -> bool {
    let Some(node) = rbac::node_of(user) else {
        return false;
    };
    let pod_node = match req {
        Request::Resource {
            group,
            resource,
            namespace,
            name,
            ..
        } if group.is_empty() && resource == "pods" && !name.is_empty() => app
            .store
            .read()
            .get("pods", &crate::store::object_key(namespace, name))
            .and_then(|o| o.value().ok())
            .and_then(|p| {
                p.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }),
        _ => None,
    };
    !rbac::node_allows(node, req, pod_node.as_deref())
}

/// Checks a request; a refusal is the 403 the real server gives.
pub fn check(app: &App, user: &User, req: &Request) -> Result<(), ApiError> {
    if allowed(app, user, req) && !node_restricted(app, user, req) {
        Ok(())
    } else {
        tracing::debug!(user = %user.name, request = ?req, "forbidden");
        Err(rbac::forbidden(user, req))
    }
}

fn attributes_request(spec: &Value) -> Result<Request, ApiError> {
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Ok(Request::Resource {
            verb: s("verb"),
            group: s("group"),
            resource: s("resource"),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        let s = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Ok(Request::NonResource {
            verb: s("verb"),
            path: s("path"),
        });
    }
    Err(ApiError::new(
        422,
        "Invalid",
        "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
    ))
}

fn user_of_spec(spec: &Value) -> User {
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    User {
        name: spec
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        uid: spec
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        groups,
        extra: Default::default(),
    }
}

fn decision(app: &App, user: &User, req: &Request) -> Value {
    if allowed(app, user, req) {
        let reason = if user.in_group(crate::auth::MASTERS) {
            "allowed by the system:masters group".to_string()
        } else {
            "RBAC: allowed".to_string()
        };
        json!({"allowed": true, "reason": reason})
    } else {
        json!({"allowed": false})
    }
}

/// Answers a review (`resource` of `group`), created by `user` in `namespace`.
pub fn review(
    app: &App,
    group: &str,
    resource: &str,
    namespace: &str,
    mut body: Value,
    user: &User,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match (group, resource) {
        ("authorization.k8s.io", "selfsubjectaccessreviews") => {
            decision(app, user, &attributes_request(&spec)?)
        }
        ("authorization.k8s.io", "subjectaccessreviews") => {
            decision(app, &user_of_spec(&spec), &attributes_request(&spec)?)
        }
        ("authorization.k8s.io", "localsubjectaccessreviews") => {
            let req = attributes_request(&spec)?;
            if let Request::Resource { namespace: ns, .. } = &req
                && ns != namespace
            {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {namespace}"
                )));
            }
            decision(app, &user_of_spec(&spec), &req)
        }
        ("authorization.k8s.io", "selfsubjectrulesreviews") => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            rules_review(app, user, ns)
        }
        ("authentication.k8s.io", "tokenreviews") => {
            let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
            let mut h = axum::http::HeaderMap::new();
            if let Ok(v) = format!("Bearer {token}").parse() {
                h.insert(axum::http::header::AUTHORIZATION, v);
            }
            match crate::authn::authenticate(app, &h, &[]) {
                Ok(u) => json!({"authenticated": true, "user": u.to_user_info(),
                                "audiences": [crate::tokens::ISSUER]}),
                Err(e) => json!({"authenticated": false, "error": format!("{e:?}")}),
            }
        }
        ("authentication.k8s.io", "selfsubjectreviews") => {
            json!({"userInfo": user.to_user_info()})
        }
        _ => return Err(ApiError::method_not_allowed("this review is not served")),
    };
    body["status"] = status;
    body["metadata"] = json!({"creationTimestamp": null});
    Ok(body)
}

/// `SelfSubjectRulesReview` status: every rule the user has in `namespace`.
fn rules_review(app: &App, user: &User, namespace: &str) -> Value {
    if user.in_group(crate::auth::MASTERS) {
        return json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                      "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                      "incomplete": false});
    }
    let policy = app.rbac.get(app);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in policy.rules_for(user, namespace) {
        if !r.non_resource_urls.is_empty() {
            non_resource_rules
                .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
        if !r.resources.is_empty() {
            let mut e =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                e["resourceNames"] = json!(r.resource_names);
            }
            resource_rules.push(e);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}
