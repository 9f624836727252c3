//! Shared by the guest's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use kubevirt_rs_guest::GuestImage;

/// Boot to the login prompt; generous, as tests boot guests side by side on two cores.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// An SSH command, including waiting for dropbear.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound for a clean power off after the ACPI power button.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(10);

pub fn image() -> GuestImage {
    match GuestImage::ensure() {
        Ok(image) => image,
        Err(e) => panic!("guest image: {e:#}"),
    }
}
