//! `kubevirt.io/v1`: the core KubeVirt kinds. Also served as `v1alpha3`, as upstream does.

pub mod access_credentials;
pub mod devices;
pub mod domain;
pub mod features;
pub mod guest_agent;
pub mod kubevirt;
pub mod kubevirt_config;
pub mod migration;
pub mod migration_config;
pub mod migration_state;
pub mod networks;
pub mod preset;
pub mod probes;
pub mod replicaset;
pub mod vm;
pub mod vmi;
pub mod vmi_status;
pub mod volumes;

pub use access_credentials::*;
pub use devices::*;
pub use domain::*;
pub use features::*;
pub use guest_agent::*;
pub use kubevirt::*;
pub use kubevirt_config::*;
pub use migration::*;
pub use migration_config::*;
pub use migration_state::*;
pub use networks::*;
pub use preset::*;
pub use probes::*;
pub use replicaset::*;
pub use vm::*;
pub use vmi::*;
pub use vmi_status::*;
pub use volumes::*;

/// The version this module's types are stored and served as.
pub const VERSION: &str = "v1";
/// The older version upstream still serves (deprecated) with the same schema.
pub const VERSION_V1ALPHA3: &str = "v1alpha3";
