//! Golden tests of the converter: every VM, VMI and replica-set template in the seeds'
//! `examples/` and every upstream-style manifest under `tests/golden/*.yaml` is defaulted as the
//! API server would, converted with a fixed context, and compared with `tests/golden/<case>.xml`.
//! A manifest named `*-kvm.yaml` is converted for KVM, the others for TCG (this machine).
//!
//! `UPDATE_GOLDEN=1 cargo nextest run -p virt-launcher --test golden` rewrites the files; without
//! it any drift fails. When libvirt's `virt-xml-validate` is installed, each document is also
//! checked against libvirt's domain schema.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubevirt_api::config::ClusterConfig;
use kubevirt_api::manifest::{self, Object, Strictness};
use kubevirt_api::v1::{VirtualMachineInstance, VirtualMachineInstanceTemplateSpec};
use virt_launcher::converter::{
    Accelerator, ConverterContext, DiskSource, EfiFirmware, ImageFormat, InterfaceTarget,
    KernelBootFiles, domain_xml,
};

const UUID: &str = "5a8b4b1c-7c5e-4d1c-9d34-6f1b0d8c2a10";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A VMI from a template, as virt-controller would make it for a VM or replica set.
fn from_template(
    name: &str,
    namespace: Option<String>,
    t: &VirtualMachineInstanceTemplateSpec,
) -> Option<VirtualMachineInstance> {
    let mut vmi = VirtualMachineInstance::new(name, t.spec.clone()?);
    vmi.metadata.namespace = namespace;
    if let Some(m) = &t.metadata {
        vmi.metadata.labels = m.labels.clone();
        vmi.metadata.annotations = m.annotations.clone();
    }
    Some(vmi)
}

/// The cases: (case name, VMI, accelerator).
fn cases() -> Vec<(String, VirtualMachineInstance, Accelerator)> {
    let mut out = Vec::new();
    let mut inputs: Vec<(String, PathBuf)> = Vec::new();
    for (prefix, dir) in [
        ("example-", crate_dir().join("../../examples")),
        ("", crate_dir().join("tests/golden")),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("readable").path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
            .collect();
        files.sort();
        inputs.extend(files.into_iter().map(|p| (prefix.to_string(), p)));
    }
    for (prefix, path) in inputs {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let accel = if stem.ends_with("-kvm") {
            Accelerator::Kvm
        } else {
            Accelerator::Tcg
        };
        let text = std::fs::read_to_string(&path).expect("readable");
        let objects = manifest::parse(&text, Strictness::Strict)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for object in objects {
            let vmi = match object {
                Object::VirtualMachineInstance(vmi) => Some(*vmi),
                Object::VirtualMachine(vm) if vm.spec.instancetype.is_none() => {
                    let name = vm.metadata.name.clone().unwrap_or_default();
                    from_template(&name, vm.metadata.namespace.clone(), &vm.spec.template)
                }
                Object::VirtualMachineInstanceReplicaSet(rs) => {
                    let name = format!("{}-abcde", rs.metadata.name.clone().unwrap_or_default());
                    from_template(&name, rs.metadata.namespace.clone(), &rs.spec.template)
                }
                _ => None,
            };
            let Some(mut vmi) = vmi else { continue };
            let name = vmi.metadata.name.clone().unwrap_or_default();
            vmi.metadata
                .namespace
                .get_or_insert_with(|| "default".into());
            vmi.metadata.uid = Some("0f2b9a3e-1d2c-4b5a-8e7f-112233445566".into());
            let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
            kubevirt_api::defaults::vmi(&mut vmi, &ClusterConfig::default(), UUID, &now)
                .unwrap_or_else(|e| panic!("{}: defaulting {name}: {e}", path.display()));
            let case = if prefix.is_empty() {
                stem.clone()
            } else {
                format!("{prefix}{name}")
            };
            out.push((case, vmi, accel));
        }
    }
    out
}

/// A fixed context: every volume prepared where the launcher would put it in a pod, the pod
/// interface on tap0, OVMF present, the TCG cache trimmed.
fn context(vmi: &VirtualMachineInstance, accelerator: Accelerator) -> ConverterContext {
    let scratch = Path::new("/var/run/kubevirt-private/launcher");
    let sockets = Path::new("/var/run/kubevirt/sockets");
    let mut disks = BTreeMap::new();
    for v in &vmi.spec.volumes {
        let s = &v.volume_source;
        // The ISOs the launcher generates are read-only and generated; nothing else is.
        let file = |path: PathBuf, format, read_only| DiskSource {
            path,
            block: false,
            format,
            direct_io: true,
            read_only,
            generated: read_only,
            block_size: None,
        };
        let source =
            if s.container_disk.is_some() || s.ephemeral.is_some() || s.empty_disk.is_some() {
                file(
                    scratch.join(format!("disks/{}.qcow2", v.name)),
                    ImageFormat::Qcow2,
                    false,
                )
            } else if s.cloud_init_no_cloud.is_some() || s.cloud_init_config_drive.is_some() {
                file(
                    scratch.join(format!("cloud-init/{}.iso", v.name)),
                    ImageFormat::Raw,
                    true,
                )
            } else if s.config_map.is_some()
                || s.secret.is_some()
                || s.service_account.is_some()
                || s.downward_api.is_some()
            {
                file(
                    scratch.join(format!("config/{}.iso", v.name)),
                    ImageFormat::Raw,
                    true,
                )
            } else if let Some(h) = &s.host_disk {
                file(PathBuf::from(&h.path), ImageFormat::Raw, false)
            } else if v.name.starts_with("block") {
                DiskSource {
                    path: PathBuf::from(format!("/dev/{}", v.name)),
                    block: true,
                    format: ImageFormat::Raw,
                    direct_io: true,
                    read_only: false,
                    generated: false,
                    block_size: Some((512, 4096)),
                }
            } else {
                file(
                    PathBuf::from(format!(
                        "/var/run/kubevirt-private/vmi-disks/{}/disk.img",
                        v.name
                    )),
                    ImageFormat::Raw,
                    false,
                )
            };
        disks.insert(v.name.clone(), source);
    }
    let interfaces = vmi
        .spec
        .domain
        .devices
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, iface)| {
            (
                iface.name.clone(),
                InterfaceTarget {
                    tap: format!("tap{i}"),
                    mac: format!("02:00:00:7a:3c:{:02x}", i + 1),
                    mtu: Some(1500),
                    queues: None,
                },
            )
        })
        .collect();
    ConverterContext {
        accelerator,
        disks,
        interfaces,
        serial_socket: sockets.join("virt-serial0"),
        serial_log: sockets.join("virt-serial0-log"),
        vnc_socket: sockets.join("virt-vnc"),
        efi: Some(EfiFirmware {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars_template: "/usr/share/OVMF/OVMF_VARS_4M.fd".into(),
            secure_code: Some("/usr/share/OVMF/OVMF_CODE_4M.ms.fd".into()),
            secure_vars_template: Some("/usr/share/OVMF/OVMF_VARS_4M.ms.fd".into()),
        }),
        nvram: scratch.join("nvram/VARS.fd"),
        kernel_boot: Some(KernelBootFiles {
            kernel: Some(scratch.join("kernel-boot/vmlinuz")),
            initrd: Some(scratch.join("kernel-boot/initrd.img")),
        }),
        tcg_tb_cache_mib: (accelerator == Accelerator::Tcg).then_some(32),
    }
}

fn validate(xml_path: &Path) -> Option<String> {
    let out = std::process::Command::new("virt-xml-validate")
        .arg(xml_path)
        .arg("domain")
        .output()
        .ok()?;
    (!out.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn golden_domains() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let cases = cases();
    assert!(
        cases.len() >= 8,
        "expected at least 8 golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut expected_files = Vec::new();
    for (case, vmi, accel) in cases {
        let ctx = context(&vmi, accel);
        let xml = domain_xml(&vmi, &ctx).unwrap_or_else(|e| panic!("{case}: {e}"));
        let path = crate_dir().join(format!("tests/golden/{case}.xml"));
        expected_files.push(path.clone());
        if update {
            std::fs::write(&path, &xml).expect("writable");
        } else {
            match std::fs::read_to_string(&path) {
                Ok(want) if want == xml => {}
                Ok(want) => failures.push(format!(
                    "{case}: drift from {} (UPDATE_GOLDEN=1 rewrites it)\n{}",
                    path.display(),
                    first_difference(&want, &xml)
                )),
                Err(e) => failures.push(format!("{case}: {}: {e}", path.display())),
            }
        }
        if let Some(problem) = validate(&path) {
            failures.push(format!("{case}: libvirt's schema rejects it:\n{problem}"));
        }
    }
    // No stale outputs: every .xml belongs to a case.
    for entry in std::fs::read_dir(crate_dir().join("tests/golden")).expect("dir") {
        let p = entry.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) == Some("xml") && !expected_files.contains(&p) {
            failures.push(format!("{}: no case produces this file", p.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn first_difference(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}:\n  want: {w}\n  got:  {g}", i + 1);
        }
    }
    format!(
        "lengths differ: want {} lines, got {}",
        want.lines().count(),
        got.lines().count()
    )
}
