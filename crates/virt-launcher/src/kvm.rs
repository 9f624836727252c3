//! Is KVM usable? Opening `/dev/kvm` is not enough: on some hosts (nested PVM, for one) the
//! device opens but guests hang, stop with "KVM internal error", or QEMU aborts setting MSRs.
//! So `auto` boots a 512-byte boot sector under `-accel kvm -cpu host` (what host-model and
//! host-passthrough need). It enters 32-bit protected mode, takes an interrupt and returns from
//! it with iret, then writes to QEMU's isa-debug-exit port. Only a prompt exit with the expected
//! code counts as working. A real-mode-only probe is not enough: nested PVM runs real mode but
//! stops at SeaBIOS's first iret in protected mode, so every real guest would hang in its BIOS.
//! The verdict is cached per kernel, QEMU binary and probe version, so only the first launcher
//! on a node pays the probe (about 0.1 s when KVM works; less than the timeout when it fails).

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
/// Bumped whenever the probe changes, so verdicts cached by an older probe are not trusted.
const PROBE_VERSION: u32 = 2;
/// `kvm/probe.S` assembled at 0x7c00 (without the 0x55AA signature, added at run time): load a
/// flat GDT, set CR0.PE, far-jump to 32-bit code, load an IDT whose vector 0x20 is an `iret`,
/// `int 0x20`, then `out 0xf4, 0x31`: QEMU exits with (0x31 << 1) | 1.
const BOOT_SECTOR: [u8; 110] = [
    0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0x66, 0x0F, 0x01, 0x16, 0x58, 0x7C, 0x0F, 0x20, 0xC0, 0x0C, 0x01,
    0x0F, 0x22, 0xC0, 0x66, 0xEA, 0x1B, 0x7C, 0x00, 0x00, 0x08, 0x00, 0x66, 0xB8, 0x10, 0x00, 0x8E,
    0xD8, 0x8E, 0xD0, 0xBC, 0x00, 0x70, 0x00, 0x00, 0x0F, 0x01, 0x1D, 0x66, 0x7C, 0x00, 0x00, 0xCD,
    0x20, 0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD, 0xCF, 0x8D, 0xB4, 0x26, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x9A, 0xCF, 0x00,
    0xFF, 0xFF, 0x00, 0x00, 0x00, 0x92, 0xCF, 0x00, 0x17, 0x00, 0x40, 0x7C, 0x00, 0x00, 0x38, 0x7C,
    0x08, 0x00, 0x00, 0x8E, 0x00, 0x00, 0x07, 0x01, 0x5E, 0x7B, 0x00, 0x00, 0x00, 0x00,
];
const EXPECTED_EXIT: i32 = 99;
/// What QEMU prints when KVM cannot run the guest's instruction; the guest is then stopped for
/// good, so the probe ends there instead of waiting out its timeout.
const KVM_STOPPED: &str = "KVM internal error";

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
        "probe-v{PROBE_VERSION} {} {} {} {}",
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

/// How one run of the probe image ended.
#[derive(Debug)]
enum ProbeRun {
    Exited(std::process::ExitStatus, String),
    /// Still running at the deadline, or stopped by KVM (then QEMU waits forever).
    Stuck(String),
}

/// Boots the probe image with `accel` (QEMU arguments) and waits for it.
fn run_probe(work_dir: &Path, accel: &[&str]) -> Result<ProbeRun, String> {
    let image = work_dir.join("kvm-probe.img");
    let mut sector = [0u8; 512];
    sector[..BOOT_SECTOR.len()].copy_from_slice(&BOOT_SECTOR);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    std::fs::File::create(&image)
        .and_then(|mut f| f.write_all(&sector))
        .map_err(|e| format!("write {}: {e}", image.display()))?;
    let drive = format!("file={},format=raw,if=floppy", image.display());
    let child = Command::new(QEMU)
        .args(accel)
        .args(["-M", "pc", "-m", "16"])
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
        Err(e) => {
            let _ = std::fs::remove_file(&image);
            return Err(format!("run {QEMU}: {e}"));
        }
    };
    // stderr is read on a thread so that "KVM internal error" ends the wait at once.
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = child.stderr.take().map(|pipe| {
        let stderr = stderr.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = stderr
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.push_str(&line);
                s.push('\n');
            }
        })
    });
    let stopped = || {
        stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(KVM_STOPPED)
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline && !stopped() => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    if let Some(r) = reader {
        // The pipe closes with QEMU, so this returns.
        let _ = r.join();
    }
    let _ = std::fs::remove_file(&image);
    let stderr = stderr
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(match status {
        Some(s) => ProbeRun::Exited(s, stderr),
        None => ProbeRun::Stuck(stderr),
    })
}

fn probe(work_dir: &Path) -> Detection {
    let tcg = |reason: String| Detection {
        accelerator: Accelerator::Tcg,
        reason,
    };
    let last = |stderr: &str| {
        stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string()
    };
    match run_probe(work_dir, &["-accel", "kvm", "-cpu", "host"]) {
        Err(e) => tcg(format!("KVM probe: {e}")),
        Ok(ProbeRun::Exited(s, _)) if s.code() == Some(EXPECTED_EXIT) => Detection {
            accelerator: Accelerator::Kvm,
            reason: "KVM probe booted".into(),
        },
        Ok(ProbeRun::Exited(s, stderr)) => {
            tcg(format!("KVM probe failed ({s}): {}", last(&stderr)))
        }
        Ok(ProbeRun::Stuck(stderr)) if stderr.contains(KVM_STOPPED) => tcg(format!(
            "KVM probe stopped: {} (protected-mode interrupts do not run under this KVM)",
            stderr
                .lines()
                .find(|l| l.contains(KVM_STOPPED))
                .unwrap_or(KVM_STOPPED)
        )),
        Ok(ProbeRun::Stuck(_)) => tcg(format!(
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

    #[test]
    fn probe_image_reaches_the_exit_port_under_emulation() {
        // The image itself is right: under TCG it enters protected mode, takes the interrupt,
        // returns with iret and exits with the expected code. So a failure under KVM is KVM's.
        let dir = tempfile::tempdir().expect("tmp");
        match run_probe(dir.path(), &["-accel", "tcg"]).expect("qemu runs") {
            ProbeRun::Exited(s, _) => assert_eq!(s.code(), Some(EXPECTED_EXIT), "{s}"),
            ProbeRun::Stuck(e) => panic!("the probe image did not exit under TCG: {e}"),
        }
        assert!(!dir.path().join("kvm-probe.img").exists());
    }

    #[test]
    fn boot_sector_is_probe_s_assembled() {
        // The bytes are what kvm/probe.S assembles to (binutils is there wherever Rust links).
        let dir = tempfile::tempdir().expect("tmp");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kvm/probe.S");
        let obj = dir.path().join("probe.o");
        let bin = dir.path().join("probe.bin");
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        assert!(ok(Command::new("as")
            .arg("--32")
            .arg("-o")
            .arg(&obj)
            .arg(&src)));
        assert!(ok(Command::new("ld")
            .args([
                "-m",
                "elf_i386",
                "-Ttext",
                "0x7c00",
                "--oformat",
                "binary",
                "-o"
            ])
            .arg(&bin)
            .arg(&obj)));
        let bytes = std::fs::read(&bin).expect("probe.bin");
        assert_eq!(bytes.len(), 512);
        assert_eq!(&bytes[..BOOT_SECTOR.len()], &BOOT_SECTOR[..]);
        assert!(bytes[BOOT_SECTOR.len()..510].iter().all(|b| *b == 0));
        assert_eq!(&bytes[510..], &[0x55, 0xAA]);
    }
}
