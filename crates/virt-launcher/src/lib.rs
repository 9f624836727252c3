//! virt-launcher: the process that runs one VMI inside its pod.
//!
//! - [`converter`]: the VMI becomes libvirt domain XML (pure).
pub mod converter;
