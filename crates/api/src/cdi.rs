//! `cdi.kubevirt.io/v1beta1` DataVolume: a PVC populated from a source (http, registry, pvc, upload, blank).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the Containerized Data Importer.
pub const GROUP: &str = "cdi.kubevirt.io";

/// Where a DataVolume's data comes from and the volume to hold it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cdi.kubevirt.io",
    version = "v1beta1",
    kind = "DataVolume",
    namespaced,
    status = "DataVolumeStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "dv",
    shortname = "dvs",
    category = "all",
    doc = "A DataVolume: a persistent volume claim that is created and filled from a source.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(
        name = "Restarts",
        type_ = "integer",
        json_path = ".status.restartCount"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeSpec {}

/// The observed state of a DataVolume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataVolumeStatus {
    /// Pending, ImportScheduled, ImportInProgress, Succeeded, Failed, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}
