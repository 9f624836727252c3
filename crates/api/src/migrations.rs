//! `migrations.kubevirt.io/v1alpha1` MigrationPolicy: live-migration settings for selected VMIs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::v1::ExperimentalMigrationOptions;

/// The API group of migration policies.
pub const GROUP: &str = "migrations.kubevirt.io";

/// Migration settings and the instances they apply to. Unset settings fall back to the
/// cluster-wide migration configuration of the KubeVirt CR.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "migrations.kubevirt.io",
    version = "v1alpha1",
    kind = "MigrationPolicy",
    status = "MigrationPolicyStatus",
    derive = "Default",
    derive = "PartialEq",
    category = "kubevirt",
    doc = "Live-migration settings applied to the instances its selectors match."
)]
#[serde(rename_all = "camelCase")]
pub struct MigrationPolicySpec {
    /// Whether migrations may auto-converge (throttle the guest CPU) to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_auto_converge: Option<bool>,
    /// Whether a migration that runs too long may switch to post-copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_post_copy: Option<bool>,
    /// Whether a migration that runs too long may disrupt the guest (post-copy or pausing it)
    /// rather than being cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_workload_disruption: Option<bool>,
    /// The network bandwidth one migration may use, per second; 0 means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_per_migration: Option<Quantity>,
    /// Seconds per GiB of guest memory a migration may take before it is given up (or switched
    /// to post-copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "completionTimeoutPerGiB")]
    pub completion_timeout_per_gib: Option<i64>,
    /// Experimental tuning (stall detection, downtime ramping, compression); may change or
    /// go away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experimental: Option<ExperimentalMigrationOptions>,
    /// The longest pause, in milliseconds, the guest may see at switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downtime_ms: Option<i64>,
    /// Which namespaces and instances the policy applies to.
    pub selectors: Selectors,
}

/// Label matches choosing the instances a policy applies to; both must match when both are set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selectors {
    /// Labels the instance's namespace must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_selector: BTreeMap<String, String>,
    /// Labels the instance itself must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub virtual_machine_instance_selector: BTreeMap<String, String>,
}

/// The observed state of a migration policy (empty upstream).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationPolicyStatus {}
