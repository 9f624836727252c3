//! virt-launcher: the process that runs one VMI inside its pod (see README.md).
//!
//! - [`converter`]: the VMI becomes libvirt domain XML (pure).
//! - [`volumes`]: volume images (overlays, empty disks, cloud-init and config ISOs).
//! - [`network`]: the pod network (masquerade, bridge) and its DHCP server.
//! - [`libvirt`]: the private libvirt (embedded driver or a private daemon).
//! - [`kvm`]: whether KVM works, or QEMU emulates.
//! - [`agent`]: the guest agent's replies as gRPC messages (pure).
//! - [`access`]: access credentials the guest agent propagates (pure).
//! - [`launcher`], [`server`]: the VMI's lifecycle and the gRPC service.

pub mod access;
pub mod agent;
pub mod cloudinit;
pub mod converter;
pub mod kvm;
pub mod launcher;
pub mod libvirt;
pub mod network;
pub mod server;
pub mod status;
pub mod volumes;
