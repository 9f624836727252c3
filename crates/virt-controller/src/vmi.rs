//! The VirtualMachineInstance controller's decisions: admission of instances no webhook
//! processed ([`admit`]), the launcher pod ([`pod`]) and the instance's phase and conditions
//! from that pod ([`phase`]).

pub mod admit;
pub mod phase;
pub mod pod;
