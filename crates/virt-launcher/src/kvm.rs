//! Is KVM usable? Opening `/dev/kvm` is not enough: on some hosts (nested PVM, for one) the
//! device opens but guests hang or QEMU aborts setting MSRs. So `auto` boots a 512-byte boot
//! sector under `-accel kvm -cpu host` (what host-model and host-passthrough need) that writes
//! to QEMU's isa-debug-exit port; only a prompt exit with the expected code counts as working.
//! The verdict is cached per kernel and QEMU binary, so only the first launcher on a node pays
//! the probe (about 0.1 s when KVM works; at most the timeout when it hangs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::converter::Accelerator;

/// What `--kvm` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmMode {
    /// Probe, and emulate when KVM does not work.
    Auto,
    /// Use KVM without probing.
    On,
    /// Always emulate.
    Off,
}

impl std::str::FromStr for KvmMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(KvmMode::Auto),
            "on" => Ok(KvmMode::On),
            "off" => Ok(KvmMode::Off),
            other => Err(format!("unknown KVM mode {other:?} (auto, on or off)")),
        }
    }
}

/// The accelerator to use, and why (for the SoftwareEmulation condition and the logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    pub accelerator: Accelerator,
    pub reason: String,
}

const QEMU: &str = "qemu-system-x86_64";
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// `mov al, 0x31; out 0xf4, al; cli; hlt; jmp $`: QEMU exits with (0x31 << 1) | 1.
const BOOT_SECTOR: [u8; 8] = [0xB0, 0x31, 0xE6, 0xF4, 0xFA, 0xF4, 0xEB, 0xFE];
const EXPECTED_EXIT: i32 = 99;

/// Decides the accelerator. `cache_dir` keeps the probe's verdict (the node's cache directory,
/// or the launcher's scratch directory); `work_dir` holds the probe image.
pub fn detect(mode: KvmMode, cache_dir: Option<&Path>, work_dir: &Path) -> Detection {
    let tcg = |reason: String| Detection {
        accelerator: Accelerator::Tcg,
        reason,
    };
    match mode {
        KvmMode::Off => return tcg("KVM disabled (--kvm off)".into()),
        KvmMode::On => {
            return Detection {
                accelerator: Accelerator::Kvm,
                reason: "KVM forced (--kvm on)".into(),
            };
        }
        KvmMode::Auto => {}
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!("/dev/kvm is not usable: {e}"));
    }
    let key = cache_key();
    let cache_file = cache_dir.map(|d| d.join("kvm-probe"));
    if let (Some(file), Some(key)) = (&cache_file, &key)
        && let Ok(text) = std::fs::read_to_string(file)
        && let Some((k, verdict)) = text.split_once('\n')
        && k == key
    {
        return parse_verdict(verdict.trim_end());
    }
    let detection = probe(work_dir);
    if let (Some(file), Some(key)) = (&cache_file, &key) {
        let verdict = match detection.accelerator {
            Accelerator::Kvm => format!("kvm {}", detection.reason),
            Accelerator::Tcg => format!("tcg {}", detection.reason),
        };
        let tmp = file.with_extension(format!("{}", std::process::id()));
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::write(&tmp, format!("{key}\n{verdict}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, file);
        }
    }
    detection
}

fn parse_verdict(v: &str) -> Detection {
    match v.split_once(' ') {
        Some(("kvm", reason)) => Detection {
            accelerator: Accelerator::Kvm,
            reason: reason.to_string(),
        },
        Some((_, reason)) => Detection {
            accelerator: Accelerator::Tcg,
            reason: reason.to_string(),
        },
        None => Detection {
            accelerator: Accelerator::Tcg,
            reason: v.to_string(),
        },
    }
}

/// The kernel release and the QEMU binary's identity: a new kernel or QEMU re-probes.
fn cache_key() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let qemu = find_in_path(QEMU)?;
    let meta = std::fs::metadata(&qemu).ok()?;
    Some(format!(
        "{} {} {} {}",
        release.trim(),
        qemu.display(),
        meta.size(),
        meta.mtime()
    ))
}

fn find_in_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

fn probe(work_dir: &Path) -> Detection {
    let tcg = |reason: String| Detection {
        accelerator: Accelerator::Tcg,
        reason,
    };
    let image = work_dir.join("kvm-probe.img");
    let mut sector = [0u8; 512];
    sector[..BOOT_SECTOR.len()].copy_from_slice(&BOOT_SECTOR);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    let written = std::fs::File::create(&image).and_then(|mut f| f.write_all(&sector));
    if let Err(e) = written {
        return tcg(format!("KVM probe: write {}: {e}", image.display()));
    }
    let drive = format!("file={},format=raw,if=floppy", image.display());
    let child = Command::new(QEMU)
        .args(["-accel", "kvm", "-cpu", "host", "-M", "pc", "-m", "16"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "none",
        ])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-drive",
            &drive,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return tcg(format!("KVM probe: run {QEMU}: {e}")),
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = std::fs::remove_file(&image);
    let stderr = child
        .stderr
        .take()
        .and_then(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s)
                .ok()
                .map(|_| s)
        })
        .unwrap_or_default();
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string();
    match status {
        Some(s) if s.code() == Some(EXPECTED_EXIT) => Detection {
            accelerator: Accelerator::Kvm,
            reason: "KVM probe booted".into(),
        },
        Some(s) => tcg(format!("KVM probe failed ({s}): {last}")),
        None => tcg(format!(
            "KVM probe hung for {} s (guests would hang too)",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_off_needs_no_probe() {
        assert_eq!("auto".parse::<KvmMode>(), Ok(KvmMode::Auto));
        assert!("maybe".parse::<KvmMode>().is_err());
        let d = detect(KvmMode::Off, None, Path::new("/nonexistent"));
        assert_eq!(d.accelerator, Accelerator::Tcg);
    }

    #[test]
    fn verdicts_round_trip() {
        assert_eq!(
            parse_verdict("kvm KVM probe booted").accelerator,
            Accelerator::Kvm
        );
        let d = parse_verdict("tcg KVM probe failed (exit status: 134): assertion");
        assert_eq!(d.accelerator, Accelerator::Tcg);
        assert!(d.reason.starts_with("KVM probe failed"));
    }
}
