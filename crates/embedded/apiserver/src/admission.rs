//! Admission webhooks (pure): the webhooks of Mutating- and ValidatingWebhookConfigurations,
//! which requests they match (rules with groups, versions, resources and subresources,
//! operations and scope; `matchPolicy`; namespace and object selectors), the AdmissionReview v1
//! request sent to them, reading their answers (patches as base64 or as a list of byte values,
//! warnings, refusals) and the errors a client sees. Calling them is `admit`'s job.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::auth::User;
use crate::error::ApiError;
use crate::selector::LabelSelector;

/// The two kinds of webhook, run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mutating,
    Validating,
}

/// The admission operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    /// The `options` kind the review carries for this operation.
    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
            Operation::Connect => "",
        }
    }
}

/// One rule of a webhook (`RuleWithOperations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub operations: Vec<String>,
    pub groups: Vec<String>,
    pub versions: Vec<String>,
    pub resources: Vec<String>,
    /// `*` (the default), `Cluster` or `Namespaced`.
    pub scope: String,
}

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientConfig {
    Url(String),
    Service {
        namespace: String,
        name: String,
        path: String,
        port: u16,
    },
}

/// `sideEffects` of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideEffects {
    None,
    NoneOnDryRun,
    Some,
    Unknown,
}

/// One webhook of a configuration, ready to match and call.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The configuration it comes from.
    pub configuration: String,
    pub name: String,
    pub kind: Kind,
    pub client: ClientConfig,
    /// PEM of the CA that signed the webhook's serving certificate.
    pub ca_bundle: Option<Vec<u8>>,
    pub rules: Vec<Rule>,
    /// `failurePolicy: Fail` (the default) rejects the request when the call fails.
    pub fail_closed: bool,
    /// `matchPolicy: Equivalent` (the default) also matches other versions of the resource.
    pub equivalent: bool,
    pub namespace_selector: Result<LabelSelector, String>,
    pub object_selector: Result<LabelSelector, String>,
    pub side_effects: SideEffects,
    pub timeout: Duration,
}

/// What a webhook configuration says, or why it cannot be used.
pub fn parse_configuration(kind: Kind, cfg: &Value) -> Vec<Webhook> {
    let configuration = crate::meta::meta_str(cfg, "name")
        .unwrap_or_default()
        .to_string();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    cfg.get("webhooks")
        .and_then(Value::as_array)
        .map(|hooks| {
            hooks
                .iter()
                .map(|h| {
                    let cc = h.get("clientConfig").cloned().unwrap_or(Value::Null);
                    let client = match cc.get("url").and_then(Value::as_str) {
                        Some(u) => ClientConfig::Url(u.to_string()),
                        None => ClientConfig::Service {
                            namespace: cc
                                .pointer("/service/namespace")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            name: cc
                                .pointer("/service/name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            path: cc
                                .pointer("/service/path")
                                .and_then(Value::as_str)
                                .unwrap_or("/")
                                .to_string(),
                            port: cc
                                .pointer("/service/port")
                                .and_then(Value::as_u64)
                                .and_then(|p| u16::try_from(p).ok())
                                .unwrap_or(443),
                        },
                    };
                    let ca_bundle = cc.get("caBundle").and_then(Value::as_str).and_then(|b| {
                        use base64::Engine;
                        base64::engine::general_purpose::STANDARD.decode(b).ok()
                    });
                    let rules = h
                        .get("rules")
                        .and_then(Value::as_array)
                        .map(|rs| {
                            rs.iter()
                                .map(|r| Rule {
                                    operations: strings(r.get("operations")),
                                    groups: strings(r.get("apiGroups")),
                                    versions: strings(r.get("apiVersions")),
                                    resources: strings(r.get("resources")),
                                    scope: r
                                        .get("scope")
                                        .and_then(Value::as_str)
                                        .unwrap_or("*")
                                        .to_string(),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let timeout = h
                        .get("timeoutSeconds")
                        .and_then(Value::as_u64)
                        .unwrap_or(10)
                        .clamp(1, 30);
                    Webhook {
                        configuration: configuration.clone(),
                        name: h
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        kind,
                        client,
                        ca_bundle,
                        rules,
                        fail_closed: h.get("failurePolicy").and_then(Value::as_str)
                            != Some("Ignore"),
                        equivalent: h.get("matchPolicy").and_then(Value::as_str) != Some("Exact"),
                        namespace_selector: LabelSelector::from_object(h.get("namespaceSelector")),
                        object_selector: LabelSelector::from_object(h.get("objectSelector")),
                        side_effects: match h.get("sideEffects").and_then(Value::as_str) {
                            Some("None") => SideEffects::None,
                            Some("NoneOnDryRun") => SideEffects::NoneOnDryRun,
                            Some("Some") => SideEffects::Some,
                            _ => SideEffects::Unknown,
                        },
                        timeout: Duration::from_secs(timeout),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The resource a request is about, as webhooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
}

/// What matching needs to know about a request.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub gvr: Gvr,
    /// The kind of the object sent (group, version, kind).
    pub kind: (String, String, String),
    pub operation: Operation,
    pub namespace: String,
    pub namespaced: bool,
    pub name: String,
    pub dry_run: bool,
    /// Other served versions of the same resource, for `matchPolicy: Equivalent`.
    pub equivalent_versions: Vec<String>,
}

fn listed(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == "*" || x == item)
}

/// Whether `entry` of a rule's `resources` covers `resource`/`subresource`: `*` is every
/// resource but no subresource, `*/*` everything, `pods/*` pods and all their subresources,
/// `*/status` the status of everything.
pub fn resource_matches(entry: &str, resource: &str, subresource: &str) -> bool {
    let (res, sub) = match entry.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (entry, None),
    };
    if res != "*" && res != resource {
        return false;
    }
    match sub {
        None => subresource.is_empty(),
        Some("*") => true,
        Some(s) => s == subresource,
    }
}

/// Whether one rule covers a request for `gvr` (at `version`).
pub fn rule_matches(rule: &Rule, gvr: &Gvr, op: Operation, namespaced: bool) -> bool {
    let op_ok = rule.operations.iter().any(|o| o == "*" || o == op.as_str());
    let scope_ok = match rule.scope.as_str() {
        "Cluster" => !namespaced,
        "Namespaced" => namespaced,
        _ => true,
    };
    op_ok
        && scope_ok
        && listed(&rule.groups, &gvr.group)
        && listed(&rule.versions, &gvr.version)
        && rule
            .resources
            .iter()
            .any(|r| resource_matches(r, &gvr.resource, &gvr.subresource))
}

impl Webhook {
    /// The version under which the webhook sees the request, if its rules match: the request's
    /// own, or (with `matchPolicy: Equivalent`) another served version of the same resource.
    pub fn matching_version(&self, a: &Attributes) -> Option<String> {
        let hit = |v: &str| {
            let gvr = Gvr {
                version: v.to_string(),
                ..a.gvr.clone()
            };
            self.rules
                .iter()
                .any(|r| rule_matches(r, &gvr, a.operation, a.namespaced))
        };
        if hit(&a.gvr.version) {
            return Some(a.gvr.version.clone());
        }
        if self.equivalent {
            return a
                .equivalent_versions
                .iter()
                .find(|v| **v != a.gvr.version && hit(v))
                .cloned();
        }
        None
    }

    /// The selector checks, given the labels of the request's namespace (None when the request
    /// is not namespaced) and of the new and old objects. A selector that cannot be parsed is
    /// an error (decided by the failure policy).
    pub fn selectors_match(
        &self,
        namespace_labels: Option<&BTreeMap<String, String>>,
        object_labels: &[&BTreeMap<String, String>],
    ) -> Result<bool, String> {
        let ns = self.namespace_selector.as_ref().map_err(Clone::clone)?;
        let obj = self.object_selector.as_ref().map_err(Clone::clone)?;
        if let Some(l) = namespace_labels
            && !ns.matches(l)
        {
            return Ok(false);
        }
        if obj.is_empty() {
            return Ok(true);
        }
        Ok(object_labels.iter().any(|l| obj.matches(l)))
    }

    /// Whether this webhook may be called for a dry-run request.
    pub fn dry_run_safe(&self) -> bool {
        matches!(
            self.side_effects,
            SideEffects::None | SideEffects::NoneOnDryRun
        )
    }
}

/// The AdmissionReview v1 request sent to a webhook.
#[allow(clippy::too_many_arguments)]
pub fn review_request(
    uid: &str,
    a: &Attributes,
    version: &str,
    kind_version: &str,
    user: &User,
    object: Option<&Value>,
    old_object: Option<&Value>,
    options: Value,
) -> Value {
    let gvr = |v: &str| json!({"group": a.gvr.group, "version": v, "resource": a.gvr.resource});
    let gvk = |v: &str| json!({"group": a.kind.0, "version": v, "kind": a.kind.2});
    let mut req = json!({
        "uid": uid,
        "kind": gvk(kind_version),
        "resource": gvr(version),
        "requestKind": gvk(&a.kind.1),
        "requestResource": gvr(&a.gvr.version),
        "name": a.name,
        "operation": a.operation.as_str(),
        "userInfo": user.to_user_info(),
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": old_object.cloned().unwrap_or(Value::Null),
        "dryRun": a.dry_run,
    });
    if !a.gvr.subresource.is_empty() {
        req["subResource"] = json!(a.gvr.subresource);
        req["requestSubResource"] = json!(a.gvr.subresource);
    }
    if a.namespaced || !a.namespace.is_empty() {
        req["namespace"] = json!(a.namespace);
    }
    let ok = a.operation.options_kind();
    if !ok.is_empty() {
        let mut o = if options.is_object() {
            options
        } else {
            json!({})
        };
        o["kind"] = json!(ok);
        o["apiVersion"] = json!("meta.k8s.io/v1");
        req["options"] = o;
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// A webhook's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub allowed: bool,
    /// JSON patch operations (mutating webhooks only).
    pub patch: Option<Value>,
    pub warnings: Vec<String>,
    /// `response.status` (the refusal's code, reason, message, details).
    pub status: Option<Value>,
}

/// Decodes a byte string as Go's JSON decoder does: base64 text, or (as some encoders write
/// `[]byte`) a list of byte values.
pub fn byte_string(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::String(s) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| format!("the patch is not valid base64: {e}"))
        }
        Value::Array(a) => a
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .ok_or_else(|| "the patch is not a list of byte values".to_string())
            })
            .collect(),
        other => Err(format!("the patch is neither base64 nor bytes: {other}")),
    }
}

/// Reads the AdmissionReview a webhook answered with, checking it answers our request.
pub fn parse_answer(body: &[u8], uid: &str, kind: Kind) -> Result<Answer, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("failed to decode the webhook's AdmissionReview: {e}"))?;
    if v.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || v.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            v.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            v.get("kind").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let Some(r) = v.get("response").filter(|r| r.is_object()) else {
        return Err("webhook response was absent".to_string());
    };
    let got = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid=\"{uid}\", got \"{got}\""));
    }
    let allowed = r.get("allowed").and_then(Value::as_bool).unwrap_or(false);
    let patch = match r.get("patch").filter(|p| !p.is_null()) {
        None => None,
        Some(p) => {
            let bytes = byte_string(p)?;
            if bytes.is_empty() {
                None
            } else {
                if kind == Kind::Validating {
                    return Err("validating webhooks may not return patches".to_string());
                }
                match r.get("patchType").and_then(Value::as_str) {
                    Some("JSONPatch") => {}
                    Some(other) => {
                        return Err(format!(
                            "webhook returned invalid response.patchType of \"{other}\""
                        ));
                    }
                    None => {
                        return Err("webhook returned response.patch but not response.patchType"
                            .to_string());
                    }
                }
                let ops: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the patch is not JSON: {e}"))?;
                if !ops.is_array() {
                    return Err("the patch is not a list of JSON patch operations".to_string());
                }
                Some(ops)
            }
        }
    };
    let warnings = r
        .get("warnings")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Answer {
        allowed,
        patch,
        warnings,
        status: r.get("status").filter(|s| s.is_object()).cloned(),
    })
}

/// The reasons a Status may carry, as static strings (others read as empty).
fn known_reason(r: &str) -> &'static str {
    const REASONS: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "StoreReadError",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    REASONS.iter().find(|x| **x == r).copied().unwrap_or("")
}

/// The error a refusal becomes, as the real server words it: the webhook's status with the
/// message `admission webhook "<name>" denied the request: <message>` (or `... without
/// explanation`), never a code below 400.
pub fn denied(webhook: &str, status: Option<&Value>) -> ApiError {
    let empty = json!({});
    let s = status.unwrap_or(&empty);
    let code = s
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    let reason = s.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = s.get("message").and_then(Value::as_str).unwrap_or("");
    let by = format!("admission webhook \"{webhook}\" denied the request");
    let message = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    ApiError {
        code,
        reason: known_reason(reason),
        message,
        details: s.get("details").filter(|d| d.is_object()).cloned(),
    }
}

/// The error when a fail-closed webhook could not be called or answered nonsense.
pub fn call_failed(webhook: &str, why: &str) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!("Internal error occurred: failed calling webhook \"{webhook}\": {why}"),
    )
}

/// The refusal of a dry run by a webhook with side effects.
pub fn dry_run_unsupported(webhook: &str) -> ApiError {
    ApiError::bad_request(format!(
        "admission webhook \"{webhook}\" does not support dry run"
    ))
}

/// Applies a mutating webhook's patch to the object it saw.
pub fn apply_patch(webhook: &str, object: &Value, ops: &Value) -> Result<Value, ApiError> {
    let out = crate::patch::json_patch(object, ops).map_err(|e| {
        call_failed(
            webhook,
            &format!("JSON patch returned by the webhook could not be applied: {e}"),
        )
    })?;
    if !out.is_object() {
        return Err(call_failed(
            webhook,
            "the patched object is not a JSON object",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(ops: &[&str], groups: &[&str], versions: &[&str], resources: &[&str]) -> Rule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Rule {
            operations: v(ops),
            groups: v(groups),
            versions: v(versions),
            resources: v(resources),
            scope: "*".into(),
        }
    }

    fn gvr(g: &str, v: &str, r: &str, s: &str) -> Gvr {
        Gvr {
            group: g.into(),
            version: v.into(),
            resource: r.into(),
            subresource: s.into(),
        }
    }

    #[test]
    fn resources_and_subresources() {
        assert!(resource_matches("pods", "pods", ""));
        assert!(!resource_matches("pods", "pods", "status"));
        assert!(resource_matches("*", "pods", ""));
        assert!(!resource_matches("*", "pods", "status"));
        assert!(resource_matches("*/*", "pods", "status"));
        assert!(resource_matches("*/*", "pods", ""));
        assert!(resource_matches("pods/*", "pods", "eviction"));
        assert!(resource_matches("pods/*", "pods", ""));
        assert!(!resource_matches("pods/*", "services", ""));
        assert!(resource_matches("*/status", "deployments", "status"));
        assert!(!resource_matches("*/status", "deployments", "scale"));
        assert!(resource_matches("pods/eviction", "pods", "eviction"));
    }

    #[test]
    fn rules_operations_and_scope() {
        let r = rule(&["CREATE"], &["kubevirt.io"], &["v1"], &["virtualmachines"]);
        let g = gvr("kubevirt.io", "v1", "virtualmachines", "");
        assert!(rule_matches(&r, &g, Operation::Create, true));
        assert!(!rule_matches(&r, &g, Operation::Update, true));
        assert!(!rule_matches(
            &r,
            &gvr("kubevirt.io", "v1alpha3", "virtualmachines", ""),
            Operation::Create,
            true
        ));
        let mut cluster = rule(&["*"], &["*"], &["*"], &["*"]);
        cluster.scope = "Cluster".into();
        assert!(rule_matches(&cluster, &g, Operation::Delete, false));
        assert!(!rule_matches(&cluster, &g, Operation::Delete, true));
    }

    fn hook(cfg: Value) -> Webhook {
        let mut list = parse_configuration(
            Kind::Mutating,
            &json!({"metadata": {"name": "c"}, "webhooks": [cfg]}),
        );
        list.remove(0)
    }

    #[test]
    fn configuration_defaults_and_match_policy() {
        let h = hook(
            json!({"name": "h", "clientConfig": {"service": {"namespace": "n", "name": "s"}, "caBundle": "Q0E="},
            "rules": [{"operations": ["CREATE"], "apiGroups": ["kubevirt.io"], "apiVersions": ["v1"], "resources": ["virtualmachines"]}],
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}),
        );
        assert!(h.fail_closed && h.equivalent);
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert_eq!(h.ca_bundle.as_deref(), Some(&b"CA"[..]));
        assert_eq!(
            h.client,
            ClientConfig::Service {
                namespace: "n".into(),
                name: "s".into(),
                path: "/".into(),
                port: 443
            }
        );
        let a = Attributes {
            gvr: gvr("kubevirt.io", "v1alpha3", "virtualmachines", ""),
            kind: (
                "kubevirt.io".into(),
                "v1alpha3".into(),
                "VirtualMachine".into(),
            ),
            operation: Operation::Create,
            namespace: "default".into(),
            namespaced: true,
            name: "vm".into(),
            dry_run: false,
            equivalent_versions: vec!["v1".into(), "v1alpha3".into()],
        };
        assert_eq!(h.matching_version(&a).as_deref(), Some("v1"));
        let exact = hook(
            json!({"name": "h", "matchPolicy": "Exact", "failurePolicy": "Ignore", "timeoutSeconds": 99,
            "rules": [{"operations": ["CREATE"], "apiGroups": ["kubevirt.io"], "apiVersions": ["v1"], "resources": ["virtualmachines"]}]}),
        );
        assert_eq!(exact.matching_version(&a), None);
        assert!(!exact.fail_closed);
        assert_eq!(exact.timeout, Duration::from_secs(30));
        assert_eq!(exact.side_effects, SideEffects::Unknown);
        assert!(!exact.dry_run_safe());
    }

    #[test]
    fn selectors() {
        let h = hook(json!({"name": "h",
            "namespaceSelector": {"matchLabels": {"env": "test"}},
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}));
        let l = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let test_ns = l(&[("env", "test")]);
        let plain = l(&[]);
        let skip = l(&[("skip", "1")]);
        assert_eq!(h.selectors_match(Some(&test_ns), &[&plain]), Ok(true));
        assert_eq!(h.selectors_match(Some(&plain), &[&plain]), Ok(false));
        assert_eq!(h.selectors_match(Some(&test_ns), &[&skip]), Ok(false));
        // Either the new or the old object may match.
        assert_eq!(
            h.selectors_match(Some(&test_ns), &[&skip, &plain]),
            Ok(true)
        );
        // Cluster-scoped requests ignore the namespace selector.
        assert_eq!(h.selectors_match(None, &[&plain]), Ok(true));
        let bad = hook(
            json!({"name": "h", "objectSelector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}),
        );
        assert!(bad.selectors_match(None, &[&plain]).is_err());
    }

    #[test]
    fn answers() {
        use base64::Engine;
        let ops = json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(ops.to_string());
        let bytes: Vec<Value> = ops.to_string().bytes().map(|b| json!(b)).collect();
        for patch in [json!(b64), Value::Array(bytes)] {
            let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch", "warnings": ["w"]}});
            let a = parse_answer(body.to_string().as_bytes(), "u", Kind::Mutating).expect("ok");
            assert_eq!(a.patch, Some(ops.clone()));
            assert_eq!(a.warnings, vec!["w".to_string()]);
            assert!(
                parse_answer(body.to_string().as_bytes(), "u", Kind::Validating).is_err(),
                "validating webhooks may not patch"
            );
        }
        let wrong_uid = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "x", "allowed": true}});
        assert!(parse_answer(wrong_uid.to_string().as_bytes(), "u", Kind::Mutating).is_err());
        let no_type = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u", "allowed": true, "patch": b64}});
        assert!(parse_answer(no_type.to_string().as_bytes(), "u", Kind::Mutating).is_err());
        assert!(parse_answer(b"not json", "u", Kind::Mutating).is_err());
    }

    #[test]
    fn refusals_read_as_upstream_words_them() {
        let e = denied(
            "deny.example.com",
            Some(&json!({"code": 422, "reason": "Invalid", "message": "no way"})),
        );
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                422,
                "Invalid",
                "admission webhook \"deny.example.com\" denied the request: no way"
            )
        );
        let e = denied("d", None);
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"d\" denied the request without explanation"
        );
        let e = denied("d", Some(&json!({"code": 200, "reason": "Custom"})));
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "admission webhook \"d\" denied the request: Custom")
        );
    }

    #[test]
    fn review_carries_both_versions() {
        let a = Attributes {
            gvr: gvr("kubevirt.io", "v1alpha3", "virtualmachines", "status"),
            kind: (
                "kubevirt.io".into(),
                "v1alpha3".into(),
                "VirtualMachine".into(),
            ),
            operation: Operation::Update,
            namespace: "ns".into(),
            namespaced: true,
            name: "vm".into(),
            dry_run: true,
            equivalent_versions: vec![],
        };
        let user = User::new("alice", &["g"]);
        let r = review_request(
            "u",
            &a,
            "v1",
            "v1",
            &user,
            Some(&json!({})),
            None,
            Value::Null,
        );
        assert_eq!(r["request"]["resource"]["version"], "v1");
        assert_eq!(r["request"]["requestResource"]["version"], "v1alpha3");
        assert_eq!(r["request"]["subResource"], "status");
        assert_eq!(r["request"]["options"]["kind"], "UpdateOptions");
        assert_eq!(r["request"]["userInfo"]["username"], "alice");
        assert_eq!(r["request"]["dryRun"], true);
    }

    proptest! {
        // Arbitrary answers never panic the reader, and a byte list decodes to its bytes.
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..200), bytes in proptest::collection::vec(any::<u8>(), 0..50)) {
            let _ = parse_answer(&body, "u", Kind::Mutating);
            let list = Value::Array(bytes.iter().map(|b| json!(b)).collect());
            prop_assert_eq!(byte_string(&list), Ok(bytes.clone()));
            use base64::Engine;
            let text = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
            prop_assert_eq!(byte_string(&text), Ok(bytes));
        }
    }
}
