//! The virtual hardware of an instance (`spec.domain`): CPU, memory, machine, firmware, clock,
//! features, resources, and its devices (see [`super::devices`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The virtual hardware of a virtual machine instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainSpec {
    /// The devices attached to the machine: disks, interfaces, inputs and more.
    pub devices: super::Devices,
}
