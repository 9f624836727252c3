//! Networks of an instance (`spec.networks`): what each of its interfaces is connected to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ClaimRequest;

/// Defaults of the pod network as the guest sees it.
pub mod pod_network_defaults {
    /// The IPv4 subnet of the guest behind masquerade when `vmNetworkCIDR` is unset.
    pub const VM_NETWORK_CIDR: &str = "10.0.2.0/24";
    /// The IPv6 subnet of the guest behind masquerade when `vmIPv6NetworkCIDR` is unset.
    pub const VM_IPV6_NETWORK_CIDR: &str = "fd10:0:2::/120";
}

/// A named network; the interface of the same name is connected to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// The network's name: a DNS label, unique among the instance's networks.
    pub name: String,
    /// What the network is (at most one; the pod network when none is set).
    #[serde(flatten)]
    pub network_source: NetworkSource,
}

impl Network {
    /// The JSON name of the network's source (`pod`, `multus` or `resourceClaim`), or `None`
    /// when none is set.
    pub fn source_kind(&self) -> Option<&'static str> {
        let s = &self.network_source;
        if s.pod.is_some() {
            Some("pod")
        } else if s.multus.is_some() {
            Some("multus")
        } else if s.resource_claim.is_some() {
            Some("resourceClaim")
        } else {
            None
        }
    }
}

/// What a network is; at most one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSource {
    /// A secondary network (or the default one) provided through Multus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multus: Option<MultusNetwork>,
    /// The pod's own network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodNetwork>,
    /// A network device allocated through one of the instance's `resourceClaims` (dynamic
    /// resource allocation; alpha).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_claim: Option<ClaimRequest>,
}

/// The pod's own network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodNetwork {
    /// The guest's IPv6 subnet behind masquerade; `fd10:0:2::/120` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "vmIPv6NetworkCIDR")]
    pub vm_ipv6_network_cidr: Option<String>,
    /// The guest's IPv4 subnet behind masquerade; `10.0.2.0/24` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "vmNetworkCIDR")]
    pub vm_network_cidr: Option<String>,
}

/// A network provided through Multus.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultusNetwork {
    /// Whether this network replaces the pod network as the pod's default network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// The NetworkAttachmentDefinition, as `name` (in the instance's namespace) or
    /// `namespace/name`.
    pub network_name: String,
}
