//! Devices of a domain (`spec.domain.devices`): disks, interfaces, inputs, rng, watchdog, ...

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The devices attached to a virtual machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Devices {}
