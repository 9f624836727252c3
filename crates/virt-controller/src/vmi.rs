//! The VirtualMachineInstance controller's decisions: the launcher pod ([`pod`]) and the
//! instance's phase and conditions from that pod ([`phase`]).

pub mod phase;
pub mod pod;
