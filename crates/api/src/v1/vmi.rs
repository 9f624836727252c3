//! VirtualMachineInstance: a running (or about to run) virtual machine.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, PodDNSConfig, Toleration, TopologySpreadConstraint};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AccessCredential, DomainSpec, Network, Probe, UtilityVolume, VirtualMachineInstanceStatus,
    Volume,
};

/// Seconds an instance gets to shut down before it is killed, when
/// `terminationGracePeriodSeconds` is unset.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;

/// Values of `spec.evictionStrategy` (and of the cluster-wide default in the KubeVirt CR).
pub mod eviction_strategies {
    /// Nothing special: the instance is shut down and its VM's run strategy decides what next.
    pub const NONE: &str = "None";
    /// The instance is live-migrated away instead of shut down; eviction is blocked while it
    /// cannot be migrated.
    pub const LIVE_MIGRATE: &str = "LiveMigrate";
    /// Like LiveMigrate when the instance is live-migratable, otherwise like None.
    pub const LIVE_MIGRATE_IF_POSSIBLE: &str = "LiveMigrateIfPossible";
    /// Eviction is blocked and `status.evacuationNodeName` is set, for an external controller
    /// (e.g. the Cluster API provider) to act on.
    pub const EXTERNAL: &str = "External";
}

/// Values of `spec.startStrategy`.
pub mod start_strategies {
    /// The guest is started paused and waits for an unpause.
    pub const PAUSED: &str = "Paused";
}

/// Values of `spec.dnsPolicy` (Kubernetes' pod DNS policies).
pub mod dns_policies {
    /// Cluster DNS first, falling back to the node's upstream servers (the default).
    pub const CLUSTER_FIRST: &str = "ClusterFirst";
    /// Like ClusterFirst, for pods on the host network.
    pub const CLUSTER_FIRST_WITH_HOST_NET: &str = "ClusterFirstWithHostNet";
    /// The node's own resolver configuration.
    pub const DEFAULT: &str = "Default";
    /// Only what `dnsConfig` says.
    pub const NONE: &str = "None";
}

/// The desired state of a virtual machine instance: its hardware, disks, networks and scheduling.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "VirtualMachineInstance",
    namespaced,
    status = "VirtualMachineInstanceStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "vmi",
    shortname = "vmis",
    category = "all",
    category = "kubevirt",
    doc = "A virtual machine instance: one running virtual machine, backed by a virt-launcher pod.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "IP",
        type_ = "string",
        json_path = ".status.interfaces[0].ipAddress"
    ),
    printcolumn(name = "NodeName", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ),
    printcolumn(
        name = "Live-Migratable",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='LiveMigratable')].status",
        priority = "1"
    ),
    printcolumn(
        name = "Paused",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Paused')].status",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceSpec {
    /// Credentials (SSH keys, passwords) taken from Secrets and put into the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_credentials: Vec<AccessCredential>,
    /// Node and pod affinity rules for the launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// The CPU architecture of the guest, e.g. amd64, arm64 or s390x; the architecture KubeVirt
    /// was built for when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// DNS settings merged into those `dnsPolicy` produces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<PodDNSConfig>,
    /// The launcher pod's DNS policy: ClusterFirst (the default), ClusterFirstWithHostNet,
    /// Default or None (see `dns_policies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    /// The virtual hardware: CPU, memory, firmware, devices.
    pub domain: DomainSpec,
    /// What happens to the instance when its node is drained: None, LiveMigrate,
    /// LiveMigrateIfPossible or External (see `eviction_strategies`); the cluster's default
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_strategy: Option<String>,
    /// The guest's hostname; the instance's name when unset (given DHCP or cloud-init).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// A periodic check that the guest is alive; the instance is stopped when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// The networks the guest's interfaces connect to (at most 256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    /// Labels a node must have for the instance to be scheduled there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The PriorityClass of the launcher pod; the default priority when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// A periodic check that the guest is ready for traffic; it is taken out of Service
    /// endpoints while it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// ResourceClaims (dynamic resource allocation) that must be allocated before the launcher
    /// pod starts; devices refer to them by name (alpha).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_claims: Vec<VirtualMachineInstanceResourceClaim>,
    /// The scheduler that places the launcher pod; the default scheduler when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// The ServiceAccount the launcher pod runs as (its token reaches the guest only through a
    /// serviceAccount volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// How the guest starts: Paused keeps it paused until unpaused (see `start_strategies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_strategy: Option<String>,
    /// With a hostname, gives the guest the FQDN
    /// `<hostname>.<subdomain>.<namespace>.svc.<cluster domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Seconds the guest gets to shut down after being asked to stop, before it is killed; 30
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Taints of nodes the launcher pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How instances are spread across topology domains (zones, nodes, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// PVCs attached to the launcher pod only, without a disk in the guest, for operational data
    /// such as memory dumps and backups (at most 256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utility_volumes: Vec<UtilityVolume>,
    /// The volumes the guest's disks and filesystems use (at most 256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

impl VirtualMachineInstanceSpec {
    /// The volume with the given name, if any.
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// The network with the given name, if any.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// Whether the instance should start with its guest paused.
    pub fn starts_paused(&self) -> bool {
        self.start_strategy.as_deref() == Some(start_strategies::PAUSED)
    }
}

/// A ResourceClaim the instance needs, by a name its devices refer to; exactly one of
/// `resourceClaimName` and `resourceClaimTemplateName` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceResourceClaim {
    /// The name devices use for this claim: a DNS label, unique within the instance.
    pub name: String,
    /// An existing ResourceClaim in the instance's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_claim_name: Option<String>,
    /// A ResourceClaimTemplate in the instance's namespace; a claim made from it lives as long
    /// as the launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_claim_template_name: Option<String>,
}

/// A template for virtual machine instances, as embedded in VMs, replica sets and pools.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInstanceTemplateSpec {
    /// Labels and annotations the created instance gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::template_metadata")]
    pub metadata: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    /// The specification of the instances made from this template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<VirtualMachineInstanceSpec>,
}
