//! KubeVirt: the installation and cluster-wide configuration of KubeVirt itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::KubeVirtConfiguration;
use crate::schema::integer;

/// How KubeVirt is installed and configured.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubevirt.io",
    version = "v1",
    kind = "KubeVirt",
    namespaced,
    status = "KubeVirtStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "kv",
    shortname = "kvs",
    category = "all",
    category = "kubevirt",
    doc = "The KubeVirt installation: which components run and the cluster-wide virtualization configuration.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase")
)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtSpec {
    /// How the operator rotates the certificates of KubeVirt's components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_rotate_strategy: Option<KubeVirtCertificateRotateStrategy>,
    /// The cluster-wide virtualization configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<KubeVirtConfiguration>,
    /// Patches and flag overrides applied to the components the operator deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customize_components: Option<CustomizeComponents>,
    /// The pull policy of KubeVirt's own component images (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Secrets used to pull KubeVirt's component images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<ImagePullSecret>,
    /// The registry to pull component images from; the operator's own registry when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_registry: Option<String>,
    /// The image tag of the KubeVirt components to deploy; the operator's own tag when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// Placement and replicas of the control-plane components (virt-api, virt-controller, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<ComponentConfig>,
    /// The Prometheus service account that may read KubeVirt's metrics; prometheus-k8s when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_account: Option<String>,
    /// The namespace Prometheus runs in; the operator looks in the usual monitoring namespaces
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_namespace: Option<String>,
    /// The value of the components' app.kubernetes.io/component label; kubevirt when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_component: Option<String>,
    /// The value of the components' app.kubernetes.io/part-of label; omitted when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// The value of the components' app.kubernetes.io/version label; KubeVirt's version when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// The namespace the ServiceMonitor goes into; monitorNamespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor_namespace: Option<String>,
    /// The port used for instance status synchronization traffic; 9185 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronization_port: Option<String>,
    /// Whether KubeVirt may be removed while workloads still exist (see [`uninstall_strategies`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uninstall_strategy: Option<String>,
    /// How running instances are moved to new component versions after an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_update_strategy: Option<KubeVirtWorkloadUpdateStrategy>,
    /// Placement of the node-level components (virt-handler) and thus of the workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<ComponentConfig>,
}

/// A Secret holding registry credentials (a Kubernetes LocalObjectReference; unlike
/// k8s-openapi's, the name may be absent, as upstream's schema allows).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecret {
    /// The name of a Secret in KubeVirt's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Known values of [`KubeVirtSpec::uninstall_strategy`].
pub mod uninstall_strategies {
    /// Deleting the KubeVirt CR deletes all workloads with it.
    pub const REMOVE_WORKLOADS: &str = "RemoveWorkloads";
    /// Deleting the KubeVirt CR is refused while workloads exist (the default).
    pub const BLOCK_UNINSTALL_IF_WORKLOADS_EXIST: &str = "BlockUninstallIfWorkloadsExist";
}

/// How the operator rotates certificates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtCertificateRotateStrategy {
    /// Certificates signed by a CA the operator manages itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<KubeVirtSelfSignConfiguration>,
}

/// Lifetimes of the operator-managed CA and server certificates. Durations are Go duration
/// strings such as `24h`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtSelfSignConfiguration {
    /// Lifetime and renewal of the CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertConfig>,
    /// Deprecated: how long an old CA stays trusted; use ca.renewBefore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_overlap_interval: Option<String>,
    /// Deprecated: how often the CA is rotated; use ca.duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotate_interval: Option<String>,
    /// Deprecated: how often server certificates are rotated; use server.duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_rotate_interval: Option<String>,
    /// Lifetime and renewal of the server certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<CertConfig>,
}

/// Lifetime and renewal time of one kind of certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertConfig {
    /// How long a certificate is valid (a Go duration such as `168h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// How long before expiry a certificate is renewed (a Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
}

/// How running instances are moved to new component versions after a KubeVirt update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtWorkloadUpdateStrategy {
    /// The pause between eviction batches (a Go duration); one minute when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_eviction_interval: Option<String>,
    /// How many instances are evicted per batch; 10 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub batch_eviction_size: Option<i64>,
    /// The ways instances may be disrupted to update them, least disruptive first wins (see
    /// [`workload_update_methods`]); none means no automatic updates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_update_methods: Vec<String>,
}

/// Known values of [`KubeVirtWorkloadUpdateStrategy::workload_update_methods`].
pub mod workload_update_methods {
    /// Live-migrate instances that can be migrated.
    pub const LIVE_MIGRATE: &str = "LiveMigrate";
    /// Evict the instance's pod (usually a restart for VMs, a shutdown for bare instances).
    pub const EVICT: &str = "Evict";
}

/// Changes to the manifests of the components the operator deploys.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomizeComponents {
    /// Replacement command-line flags for the components' containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Flags>,
    /// Patches applied to the deployed resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<CustomizeComponentsPatch>,
}

/// Command-line flags that replace a component's own (name -> value, without dashes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flags {
    /// Flags of virt-api.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub api: BTreeMap<String, String>,
    /// Flags of virt-controller.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub controller: BTreeMap<String, String>,
    /// Flags of virt-handler.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handler: BTreeMap<String, String>,
}

/// A patch to one deployed resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomizeComponentsPatch {
    /// The patch document.
    pub patch: String,
    /// The name of the resource to patch (`*` for all of the type).
    pub resource_name: String,
    /// The kind of resource to patch (Deployment, DaemonSet, ...).
    pub resource_type: String,
    /// The patch format (see [`patch_types`]).
    #[serde(rename = "type")]
    pub type_: String,
}

/// Known values of [`CustomizeComponentsPatch::type_`].
pub mod patch_types {
    /// A JSON patch (RFC 6902).
    pub const JSON: &str = "json";
    /// A JSON merge patch (RFC 7386).
    pub const MERGE: &str = "merge";
    /// A Kubernetes strategic merge patch.
    pub const STRATEGIC: &str = "strategic";
}

/// Scheduling and scale of a group of KubeVirt components.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentConfig {
    /// Where the components' pods may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_placement: Option<NodePlacement>,
    /// How many replicas each control-plane component runs; 2 when unset (turns off scaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub replicas: Option<i32>,
}

/// Node selection for a group of pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePlacement {
    /// Affinity and anti-affinity rules for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Labels a node must have to run the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate, in addition to the defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// The observed state of the installation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtStatus {
    /// Conditions of the installation (Available, Progressing, Degraded, Created,
    /// Synchronized).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<KubeVirtCondition>,
    /// The architecture instances get when they name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_architecture: Option<String>,
    /// The generations of the resources the operator manages, to spot outside changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generations: Vec<GenerationStatus>,
    /// The configuration the deployed components were made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_deployment_config: Option<String>,
    /// The ID of the deployed configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "observedDeploymentID")]
    pub observed_deployment_id: Option<String>,
    /// The generation of the KubeVirt CR last acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The registry of the deployed components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_kube_virt_registry: Option<String>,
    /// The version of the deployed components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_kube_virt_version: Option<String>,
    /// The version of the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_version: Option<String>,
    /// How many running instances still use an old launcher version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "integer")]
    pub outdated_virtual_machine_instance_workloads: Option<i64>,
    /// Deploying, Deployed, Deleting or Deleted (see [`kubevirt_phases`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The addresses used for instance status synchronization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synchronization_addresses: Vec<String>,
    /// The configuration being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_deployment_config: Option<String>,
    /// The ID of the configuration being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "targetDeploymentID")]
    pub target_deployment_id: Option<String>,
    /// The registry of the components being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kube_virt_registry: Option<String>,
    /// The version of the components being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kube_virt_version: Option<String>,
}

/// Known values of [`KubeVirtStatus::phase`].
pub mod kubevirt_phases {
    /// The components are being deployed or updated.
    pub const DEPLOYING: &str = "Deploying";
    /// The components are deployed and up to date.
    pub const DEPLOYED: &str = "Deployed";
    /// The components are being removed.
    pub const DELETING: &str = "Deleting";
    /// The components are removed.
    pub const DELETED: &str = "Deleted";
}

/// Known values of [`KubeVirtCondition::type_`].
pub mod kubevirt_condition_types {
    /// KubeVirt is working and available.
    pub const AVAILABLE: &str = "Available";
    /// The operator is changing the deployment.
    pub const PROGRESSING: &str = "Progressing";
    /// KubeVirt is not fully working.
    pub const DEGRADED: &str = "Degraded";
    /// All resources have been created and are up to date.
    pub const CREATED: &str = "Created";
    /// Set (to False) when deploying or deleting failed.
    pub const SYNCHRONIZED: &str = "Synchronized";
}

/// One condition of the installation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeVirtCondition {
    /// When the condition was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A machine-readable reason for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// True, False or Unknown.
    pub status: String,
    /// Which condition this is (see [`kubevirt_condition_types`]).
    #[serde(rename = "type")]
    pub type_: String,
}

/// The last seen generation of one resource the operator manages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationStatus {
    /// The resource's API group.
    pub group: String,
    /// A content hash, for resources without a generation (Secrets, ConfigMaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The generation last seen.
    pub last_generation: i64,
    /// The resource's name.
    pub name: String,
    /// The resource's namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The resource type (plural name).
    pub resource: String,
}
