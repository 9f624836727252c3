//! The small test guest every kubevirt-rs test and the demo boot (see `guest/README.md`): a
//! Debian cloud kernel, a busybox userland and dropbear, built from Debian packages by
//! `scripts/guest-image` into the project's cache dir.
//!
//! This crate gives tests what they need around it:
//! - [`GuestImage`]: find the built image, or build it (the script is a no-op when its inputs are
//!   unchanged), and push its containerDisk to a registry;
//! - [`NoCloud`] and [`ConfigDrive`]: cloud-init seeds as ISO (or vfat) images;
//! - [`VmBuilder`] and [`Vm`]: QEMU (TCG) running the guest, with its serial console captured,
//!   QMP, user-mode networking with SSH forwarded to a free loopback port, and a guard that kills
//!   QEMU when dropped (also when a test panics);
//! - [`Registry`]: a private `docker-registry` on a free loopback port, killed when dropped;
//! - [`SshKey`] and [`ssh`]: an ephemeral key pair and the OpenSSH client.
//!
//! Everything here talks only to loopback addresses.

mod image;
mod qemu;
mod qmp;
mod registry;
mod seed;
mod ssh;
mod util;

pub use image::{GuestImage, IMAGE_REPOSITORY, IMAGE_TAG};
pub use qemu::{Boot, Console, Nic, Vm, VmBuilder};
pub use qmp::Qmp;
pub use registry::{Registry, pull_oci_layout};
pub use seed::{ConfigDrive, NoCloud};
pub use ssh::{SshKey, scp_to, ssh, ssh_until_ok};
pub use util::{ProcessGuard, cache_dir, free_loopback_port, repo_root};
