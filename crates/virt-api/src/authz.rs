//! Authorizing a subresource request as the calling user, as upstream's virt-api does: the API
//! server's aggregator names the user in `X-Remote-User`/`X-Remote-Group`/`X-Remote-Extra-*`,
//! and a SubjectAccessReview asks whether that user may `get` (GET) or `update` (PUT) the
//! subresource. Upstream answers a refusal with 401 and the review's reason as plain text.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// The subresource a request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    /// `virtualmachines` or `virtualmachineinstances`.
    pub resource: String,
    pub name: String,
    pub subresource: String,
}

/// Why a request is not authorized.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    #[error("request is missing the X-Remote-User header")]
    NoUser,
    #[error("{0}")]
    Refused(String),
    #[error("authorization failed: {0}")]
    Failed(String),
}

/// The SubjectAccessReview for a request (pure); `None` without a user header.
pub fn review(headers: &HeaderMap, method: &Method, t: &Target) -> Option<SubjectAccessReview> {
    let user = headers.get("x-remote-user")?.to_str().ok()?.to_string();
    let groups: Vec<String> = headers
        .get_all("x-remote-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix("x-remote-extra-")
            && let Ok(v) = v.to_str()
        {
            extra
                .entry(key.to_string())
                .or_default()
                .push(v.to_string());
        }
    }
    let verb = match *method {
        Method::GET => "get",
        Method::PUT => "update",
        Method::POST => "create",
        Method::DELETE => "delete",
        _ => "get",
    };
    Some(SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user),
            groups: Some(groups),
            extra: (!extra.is_empty()).then_some(extra),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(t.namespace.clone()),
                verb: Some(verb.into()),
                group: Some("subresources.kubevirt.io".into()),
                version: Some("v1".into()),
                resource: Some(t.resource.clone()),
                subresource: Some(t.subresource.clone()),
                name: Some(t.name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Asks the API server whether the calling user may make this request.
pub async fn authorize(
    client: &kube::Client,
    headers: &HeaderMap,
    method: &Method,
    t: &Target,
) -> Result<(), Denied> {
    let sar = review(headers, method, t).ok_or(Denied::NoUser)?;
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &sar)
        .await
        .map_err(|e| Denied::Failed(e.to_string()))?;
    let status = answer.status.unwrap_or_default();
    if status.allowed {
        return Ok(());
    }
    let user = sar.spec.user.unwrap_or_default();
    let reason = status.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| {
        format!(
            "User '{user}' is not allowed to {} {}/{} in namespace {}",
            method.as_str().to_lowercase(),
            t.resource,
            t.subresource,
            t.namespace
        )
    });
    tracing::info!(user = %user, namespace = %t.namespace, name = %t.name, subresource = %t.subresource, "subresource request refused");
    Err(Denied::Refused(reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn review_carries_user_groups_and_verb() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("dave"));
        h.append("x-remote-group", HeaderValue::from_static("devs"));
        h.append(
            "x-remote-group",
            HeaderValue::from_static("system:authenticated"),
        );
        h.append("x-remote-extra-scopes", HeaderValue::from_static("a"));
        let t = Target {
            namespace: "a".into(),
            resource: "virtualmachineinstances".into(),
            name: "vm1".into(),
            subresource: "console".into(),
        };
        let sar = review(&h, &Method::GET, &t).expect("review");
        assert_eq!(sar.spec.user.as_deref(), Some("dave"));
        assert_eq!(sar.spec.groups.as_ref().map(Vec::len), Some(2));
        let ra = sar.spec.resource_attributes.expect("attrs");
        assert_eq!(ra.verb.as_deref(), Some("get"));
        assert_eq!(ra.subresource.as_deref(), Some("console"));
        assert_eq!(ra.group.as_deref(), Some("subresources.kubevirt.io"));
        assert_eq!(
            sar.spec.extra.expect("extra")["scopes"],
            vec!["a".to_string()]
        );
        let put = review(&h, &Method::PUT, &t).expect("review");
        assert_eq!(
            put.spec.resource_attributes.and_then(|r| r.verb).as_deref(),
            Some("update")
        );
        assert!(review(&HeaderMap::new(), &Method::GET, &t).is_none());
    }
}
