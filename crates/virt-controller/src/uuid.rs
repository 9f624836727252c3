//! RFC 4122 UUIDs: name-based (version 5, for upstream's stable firmware UUID of a VM) and random
//! (version 4, for instances created without a VM).

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

/// The namespace upstream derives a VM's firmware UUID from (its name hashed in it), so a VM
/// keeps the same UUID across restarts and across KubeVirt implementations.
pub const FIRMWARE_NAMESPACE: [u8; 16] = [
    0x6a, 0x1a, 0x24, 0xa1, 0x40, 0x61, 0x46, 0x07, 0x8b, 0xf4, 0xa3, 0x96, 0x3d, 0x0c, 0x58, 0x95,
];

fn format(b: [u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A version-5 (SHA-1) UUID of `name` in `namespace`.
pub fn v5(namespace: &[u8; 16], name: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(namespace);
    ctx.update(name.as_bytes());
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    format(b)
}

/// The firmware UUID upstream gives a VM's instances when the VM names none.
pub fn legacy_firmware_uuid(vm_name: &str) -> String {
    v5(&FIRMWARE_NAMESPACE, vm_name)
}

/// A random version-4 UUID, or `None` when the system has no randomness to give.
pub fn v4() -> Option<String> {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).ok()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Some(format(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_matches_the_rfc_example() {
        // RFC 4122 appendix: the DNS namespace and "www.example.com" (errata-corrected value).
        let dns = [
            0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
            0x30, 0xc8,
        ];
        assert_eq!(
            v5(&dns, "www.example.com"),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2"
        );
    }

    #[test]
    fn v4_is_random_and_versioned() {
        let a = v4().unwrap();
        let b = v4().unwrap();
        assert_ne!(a, b);
        assert_eq!(&a[14..15], "4");
        assert_eq!(
            legacy_firmware_uuid("testvm"),
            legacy_firmware_uuid("testvm")
        );
        assert_eq!(&legacy_firmware_uuid("testvm")[14..15], "5");
    }
}
