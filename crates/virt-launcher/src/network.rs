//! The pod network (placeholder until the masquerade and bridge bindings land).

use std::collections::BTreeMap;

use kubevirt_api::v1::VirtualMachineInstance;
use launcher_proto::v1::InterfaceStatus;

use crate::converter::InterfaceTarget;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{field}: {message}")]
    Unsupported { field: String, message: String },
}

/// What the network setup made, kept until teardown.
#[derive(Debug, Default)]
pub struct Network {
    targets: BTreeMap<String, InterfaceTarget>,
    statuses: Vec<InterfaceStatus>,
}

impl Network {
    pub fn targets(&self) -> BTreeMap<String, InterfaceTarget> {
        self.targets.clone()
    }

    pub fn statuses(&self) -> Vec<InterfaceStatus> {
        self.statuses.clone()
    }

    pub async fn teardown(self) {}
}

pub async fn setup(vmi: &VirtualMachineInstance, _uid: &str) -> Result<Network, NetworkError> {
    if !vmi.spec.domain.devices.interfaces.is_empty() {
        return Err(NetworkError::Unsupported {
            field: "spec.domain.devices.interfaces[0]".into(),
            message: "pod networking is not implemented yet".into(),
        });
    }
    Ok(Network::default())
}
