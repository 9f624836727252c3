//! The webhook configurations that register virt-api with the API server, with upstream's
//! names, rules and paths (pure: the caller supplies the CA bundle and where virt-api listens).

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::admission::Endpoint;

pub const MUTATING_CONFIGURATION: &str = "virt-api-mutator";
pub const VALIDATING_CONFIGURATION: &str = "virt-api-validator";

/// Where the API server reaches virt-api.
#[derive(Clone, Debug)]
pub enum Target {
    /// A Service, as on a real cluster (`kubevirt/virt-api`, port 443).
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// A URL, for a virt-api outside the cluster's service network (`https://127.0.0.1:PORT`).
    Url(String),
}

fn client_config(target: &Target, ca_pem: &str, endpoint: Endpoint) -> WebhookClientConfig {
    let ca_bundle = Some(ByteString(ca_pem.as_bytes().to_vec()));
    match target {
        Target::Service {
            namespace,
            name,
            port,
        } => WebhookClientConfig {
            ca_bundle,
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(endpoint.path().to_string()),
                port: Some(*port),
            }),
            url: None,
        },
        Target::Url(base) => WebhookClientConfig {
            ca_bundle,
            service: None,
            url: Some(format!("{}{}", base.trim_end_matches('/'), endpoint.path())),
        },
    }
}

fn rule(resource: &str, operations: &[&str]) -> Vec<RuleWithOperations> {
    vec![RuleWithOperations {
        api_groups: Some(vec!["kubevirt.io".into()]),
        api_versions: Some(vec!["v1".into(), "v1alpha3".into()]),
        operations: Some(operations.iter().map(|s| s.to_string()).collect()),
        resources: Some(vec![resource.into()]),
        scope: None,
    }]
}

fn rules_for(endpoint: Endpoint) -> Vec<RuleWithOperations> {
    match endpoint {
        Endpoint::VmMutate => rule("virtualmachines", &["CREATE", "UPDATE"]),
        Endpoint::VmiMutate => rule("virtualmachineinstances", &["CREATE", "UPDATE"]),
        Endpoint::VmValidate => rule("virtualmachines", &["CREATE", "UPDATE"]),
        Endpoint::VmiValidateCreate => rule("virtualmachineinstances", &["CREATE"]),
        Endpoint::VmiValidateUpdate => rule("virtualmachineinstances", &["UPDATE"]),
    }
}

/// The MutatingWebhookConfiguration `virt-api-mutator`.
pub fn mutating(target: &Target, ca_pem: &str) -> MutatingWebhookConfiguration {
    let webhooks = Endpoint::ALL
        .into_iter()
        .filter(|e| e.mutating())
        .map(|e| MutatingWebhook {
            name: e.webhook_name().into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config(target, ca_pem, e),
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            rules: Some(rules_for(e)),
            ..Default::default()
        })
        .collect();
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(MUTATING_CONFIGURATION.into()),
            ..Default::default()
        },
        webhooks: Some(webhooks),
    }
}

/// The ValidatingWebhookConfiguration `virt-api-validator`.
pub fn validating(target: &Target, ca_pem: &str) -> ValidatingWebhookConfiguration {
    let webhooks = Endpoint::ALL
        .into_iter()
        .filter(|e| !e.mutating())
        .map(|e| ValidatingWebhook {
            name: e.webhook_name().into(),
            admission_review_versions: vec!["v1".into()],
            client_config: client_config(target, ca_pem, e),
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            rules: Some(rules_for(e)),
            ..Default::default()
        })
        .collect();
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(VALIDATING_CONFIGURATION.into()),
            ..Default::default()
        },
        webhooks: Some(webhooks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_carry_upstream_names_paths_and_the_ca() {
        let target = Target::Service {
            namespace: "kubevirt".into(),
            name: "virt-api".into(),
            port: 443,
        };
        let m = mutating(&target, "CA");
        let names: Vec<&str> = m
            .webhooks
            .iter()
            .flatten()
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "virtualmachines-mutator.kubevirt.io",
                "virtualmachineinstances-mutator.kubevirt.io"
            ]
        );
        let v = validating(&Target::Url("https://127.0.0.1:8443/".into()), "CA");
        let hooks = v.webhooks.unwrap_or_default();
        assert_eq!(hooks.len(), 3);
        assert_eq!(
            hooks[0].client_config.url.as_deref(),
            Some("https://127.0.0.1:8443/virtualmachines-validate")
        );
        assert_eq!(
            hooks[0]
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.as_slice()),
            Some(&b"CA"[..])
        );
        let svc = m.webhooks.unwrap_or_default()[1]
            .client_config
            .service
            .clone()
            .unwrap_or_default();
        assert_eq!(svc.path.as_deref(), Some("/virtualmachineinstances-mutate"));
    }
}
