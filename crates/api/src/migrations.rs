//! `migrations.kubevirt.io/v1alpha1` MigrationPolicy: live-migration settings for selected VMIs.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of migration policies.
pub const GROUP: &str = "migrations.kubevirt.io";

/// Migration settings and the instances they apply to.
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
}

/// The observed state of a migration policy (empty upstream).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationPolicyStatus {}
