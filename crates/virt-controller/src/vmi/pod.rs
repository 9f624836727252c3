//! The virt-launcher pod of an instance, rendered as upstream's template service renders it
//! (same labels, annotations, volumes, mount paths and container layout), with our own memory
//! overhead and launcher command.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodReadinessGate, PodSpec,
    ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeDevice, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kubevirt_api::quantity::Amount;
use kubevirt_api::v1::{DEFAULT_GRACE_PERIOD_SECONDS, VirtualMachineInstance, Volume as VmiVolume};
use ring::digest;

use crate::names;

/// Where upstream mounts things inside the launcher pod.
pub mod paths {
    pub const PRIVATE: &str = "/var/run/kubevirt-private";
    pub const PUBLIC: &str = "/var/run/kubevirt";
    pub const SOCKETS: &str = "/var/run/kubevirt/sockets";
    pub const EPHEMERAL_DISKS: &str = "/var/run/kubevirt-ephemeral-disks";
    pub const CONTAINER_DISKS: &str = "/var/run/kubevirt/container-disks";
    pub const HOTPLUG_DISKS: &str = "/var/run/kubevirt/hotplug-disks";
    pub const LIBVIRT_RUNTIME: &str = "/var/run/libvirt";
    pub const VMI_DISKS: &str = "/var/run/kubevirt-private/vmi-disks";
    pub const CONFIG_MAP: &str = "/var/run/kubevirt-private/config-map";
    pub const SECRET: &str = "/var/run/kubevirt-private/secret";
    pub const DOWNWARD_API: &str = "/var/run/kubevirt-private/downwardapi";
    pub const SYSPREP: &str = "/var/run/kubevirt-private/sysprep";
}

/// The name of the emptyDir holding the launcher socket (virt-handler finds it on the node at
/// `<kubelet root>/pods/<pod uid>/volumes/kubernetes.io~empty-dir/sockets/launcher-sock`).
pub const SOCKETS_VOLUME: &str = "sockets";
/// The container that runs virt-launcher.
pub const COMPUTE_CONTAINER: &str = "compute";
/// Extra grace the pod gets over the guest's, twice (upstream pads twice by 15 s).
const GRACE_PADDING_SECONDS: i64 = 15;

/// Settings of the launcher pod that come from virt-controller's own configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LauncherConfig {
    /// `<registry>/virt-launcher:<tag>`.
    pub image: String,
    pub image_pull_policy: Option<String>,
    /// The CPU request of instances that set none (upstream's default is 100m).
    pub default_cpu_request: String,
    /// Whether guests run under software emulation (TCG), whose translation cache adds
    /// [`Overhead::tcg_cache`] to the pod.
    pub emulation: bool,
    pub overhead: Overhead,
}

impl Default for LauncherConfig {
    fn default() -> Self {
        LauncherConfig {
            image: "quay.io/kubevirt/virt-launcher:latest".into(),
            image_pull_policy: None,
            default_cpu_request: "100m".into(),
            emulation: true,
            overhead: Overhead::default(),
        }
    }
}

/// Our memory overhead per launcher pod, in MiB except where said. Upstream reserves about
/// 240 MiB plus more per device; our launcher is one process with a private libvirtd and no
/// monitor/virtlogd, so the estimate is much smaller. Initial figures from the platform notes
/// (libvirtd 30-34 MB, QEMU's own heap, TCG's translation cache); to be measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overhead {
    /// virt-launcher, its libvirtd and QEMU's baseline.
    pub base_mib: u64,
    /// QEMU's TCG translation cache (the launcher sets `tb-cache` to this).
    pub tcg_cache_mib: u64,
    /// Per vCPU (thread stack and per-vCPU emulator state).
    pub per_vcpu_mib: u64,
    /// A VNC graphics device and its framebuffer.
    pub graphics_mib: u64,
}

impl Default for Overhead {
    fn default() -> Self {
        Overhead {
            base_mib: 80,
            tcg_cache_mib: 32,
            per_vcpu_mib: 2,
            graphics_mib: 8,
        }
    }
}

/// Why the pod could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Upstream's wording, which users see in the Synchronized condition.
    #[error("failed to render launch manifest: didn't find PVC {0}")]
    PvcNotFound(String),
    #[error("failed to render launch manifest: the instance has no {0}")]
    Missing(&'static str),
}

const MIB: u64 = 1 << 20;

fn quantity_bytes(q: Option<&Quantity>) -> Option<u64> {
    q.and_then(|q| Amount::parse(&q.0).ok()).map(Amount::bytes)
}

/// The guest's memory: `memory.guest`, else the memory request, else the limit.
pub fn guest_memory_bytes(vmi: &VirtualMachineInstance) -> u64 {
    let d = &vmi.spec.domain;
    let res = d.resources.as_ref();
    quantity_bytes(d.memory.as_ref().and_then(|m| m.guest.as_ref()))
        .or_else(|| quantity_bytes(res.and_then(|r| r.requests.get("memory"))))
        .or_else(|| quantity_bytes(res.and_then(|r| r.limits.get("memory"))))
        .unwrap_or(0)
}

/// The number of vCPUs: sockets x cores x threads, at least 1.
pub fn vcpus(vmi: &VirtualMachineInstance) -> u64 {
    let cpu = vmi.spec.domain.cpu.as_ref();
    let f = |v: Option<i32>| u64::try_from(v.unwrap_or(1).max(1)).unwrap_or(1);
    cpu.map(|c| f(c.sockets) * f(c.cores) * f(c.threads))
        .unwrap_or(1)
}

/// Our overhead for an instance, in bytes: base + TCG cache (when emulating) + guest/512
/// (page tables) + per vCPU + graphics (unless `autoattachGraphicsDevice: false`).
pub fn memory_overhead_bytes(vmi: &VirtualMachineInstance, cfg: &LauncherConfig) -> u64 {
    let o = &cfg.overhead;
    let mut mib = o.base_mib + o.per_vcpu_mib * vcpus(vmi);
    if cfg.emulation {
        mib += o.tcg_cache_mib;
    }
    if vmi.spec.domain.devices.autoattach_graphics_device != Some(false) {
        mib += o.graphics_mib;
    }
    mib * MIB + guest_memory_bytes(vmi).div_ceil(512)
}

/// The pod's resources: memory request = (memory request, else guest memory) + overhead;
/// CPU request from the instance (its limit, or the configured default); limits carried over
/// (memory limit plus overhead).
pub fn resources(vmi: &VirtualMachineInstance, cfg: &LauncherConfig) -> ResourceRequirements {
    let overhead = memory_overhead_bytes(vmi, cfg);
    let res = vmi.spec.domain.resources.clone().unwrap_or_default();
    let mut requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<String, Quantity> = BTreeMap::new();
    for (k, v) in &res.requests {
        if k != "memory" && k != "cpu" {
            requests.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &res.limits {
        if k != "memory" {
            limits.insert(k.clone(), v.clone());
        }
    }
    let memory =
        quantity_bytes(res.requests.get("memory")).unwrap_or_else(|| guest_memory_bytes(vmi));
    requests.insert(
        "memory".into(),
        Quantity(Amount::bytes_to_string(memory + overhead)),
    );
    if let Some(limit) = quantity_bytes(res.limits.get("memory")) {
        limits.insert(
            "memory".into(),
            Quantity(Amount::bytes_to_string(limit + overhead)),
        );
    }
    let dedicated = vmi
        .spec
        .domain
        .cpu
        .as_ref()
        .and_then(|c| c.dedicated_cpu_placement)
        == Some(true);
    let cpu = if dedicated {
        let n = vcpus(vmi).to_string();
        limits.insert("cpu".into(), Quantity(n.clone()));
        if let Some(m) = limits
            .get("memory")
            .cloned()
            .or_else(|| requests.get("memory").cloned())
        {
            limits.insert("memory".into(), m.clone());
            requests.insert("memory".into(), m);
        }
        Quantity(n)
    } else {
        res.requests
            .get("cpu")
            .or(res.limits.get("cpu"))
            .cloned()
            .unwrap_or_else(|| Quantity(cfg.default_cpu_request.clone()))
    };
    requests.insert("cpu".into(), cpu);
    ResourceRequirements {
        requests: Some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..Default::default()
    }
}

/// Upstream's `vmi.kubevirt.io/id`: the name, or for names over 63 characters its first 54
/// characters, a dash and 8 hex digits of its SHA-1.
pub fn vmi_id(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, name.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = name.chars().take(54).collect();
    format!("{prefix}-{}", &hex[..8])
}

/// The guest's hostname: `spec.hostname`, else the instance's name (dots become dashes, at
/// most 63 characters), as upstream sanitizes it.
pub fn hostname(vmi: &VirtualMachineInstance) -> String {
    let raw = vmi
        .spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| vmi.name_any());
    raw.replace('.', "-").chars().take(63).collect()
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn read_only(mut m: VolumeMount) -> VolumeMount {
    m.read_only = Some(true);
    m
}

fn secret_volume(name: String, secret: &str) -> Volume {
    Volume {
        name,
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn sub_path_mount(name: &str, path: String, sub: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path,
        sub_path: Some(sub.into()),
        read_only: Some(true),
        ..Default::default()
    }
}

struct Rendered {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
    devices: Vec<VolumeDevice>,
    service_account: Option<String>,
}

fn pvc_volume(
    r: &mut Rendered,
    v: &VmiVolume,
    claim: &str,
    read_only: Option<bool>,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
) -> Result<(), RenderError> {
    let pvc = pvcs
        .get(claim)
        .ok_or_else(|| RenderError::PvcNotFound(claim.to_string()))?;
    let block = pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block");
    if block {
        r.devices.push(VolumeDevice {
            name: v.name.clone(),
            device_path: format!("/dev/{}", v.name),
        });
    } else {
        r.mounts
            .push(mount(&v.name, &format!("{}/{}", paths::VMI_DISKS, v.name)));
    }
    r.volumes.push(Volume {
        name: v.name.clone(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only,
        }),
        ..Default::default()
    });
    Ok(())
}

fn render_volumes(
    vmi: &VirtualMachineInstance,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
) -> Result<Rendered, RenderError> {
    let mut r = Rendered {
        volumes: [
            "private",
            "public",
            SOCKETS_VOLUME,
            "libvirt-runtime",
            "ephemeral-disks",
            "container-disks",
            "hotplug-disks",
        ]
        .into_iter()
        .map(empty_dir)
        .collect(),
        mounts: vec![
            mount("private", paths::PRIVATE),
            mount("public", paths::PUBLIC),
            mount("ephemeral-disks", paths::EPHEMERAL_DISKS),
            mount("libvirt-runtime", paths::LIBVIRT_RUNTIME),
            mount(SOCKETS_VOLUME, paths::SOCKETS),
            VolumeMount {
                mount_propagation: Some("HostToContainer".into()),
                ..mount("container-disks", paths::CONTAINER_DISKS)
            },
            VolumeMount {
                mount_propagation: Some("HostToContainer".into()),
                ..mount("hotplug-disks", paths::HOTPLUG_DISKS)
            },
        ],
        devices: Vec::new(),
        service_account: None,
    };
    let disks = &vmi.spec.domain.devices.disks;
    let has_disk = |name: &str| disks.iter().any(|d| d.name == name);
    for v in &vmi.spec.volumes {
        let s = &v.volume_source;
        if let Some(p) = &s.persistent_volume_claim {
            if p.hotpluggable == Some(true) {
                continue;
            }
            pvc_volume(&mut r, v, &p.claim_name, p.read_only, pvcs)?;
        }
        if let Some(dv) = &s.data_volume {
            if dv.hotpluggable == Some(true) {
                continue;
            }
            pvc_volume(&mut r, v, &dv.name, None, pvcs)?;
        }
        if let Some(e) = s
            .ephemeral
            .as_ref()
            .and_then(|e| e.persistent_volume_claim.as_ref())
        {
            pvc_volume(&mut r, v, &e.claim_name, e.read_only, pvcs)?;
        }
        if let Some(h) = &s.host_disk {
            let dir = std::path::Path::new(&h.path)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into());
            let type_ = if h.type_ == "DiskOrCreate" {
                "DirectoryOrCreate"
            } else {
                "Directory"
            };
            r.mounts
                .push(mount(&v.name, &format!("{}/{}", paths::VMI_DISKS, v.name)));
            r.volumes.push(Volume {
                name: v.name.clone(),
                host_path: Some(HostPathVolumeSource {
                    path: dir,
                    type_: Some(type_.into()),
                }),
                ..Default::default()
            });
        }
        if let Some(cm) = &s.config_map {
            r.volumes.push(Volume {
                name: v.name.clone(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cm.name.clone().unwrap_or_default(),
                    optional: cm.optional,
                    ..Default::default()
                }),
                ..Default::default()
            });
            if has_disk(&v.name) {
                r.mounts.push(read_only(mount(
                    &v.name,
                    &format!("{}/{}", paths::CONFIG_MAP, v.name),
                )));
            }
        }
        if let Some(sec) = &s.secret {
            r.volumes.push(Volume {
                name: v.name.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: sec.secret_name.clone(),
                    optional: sec.optional,
                    ..Default::default()
                }),
                ..Default::default()
            });
            if has_disk(&v.name) {
                r.mounts.push(read_only(mount(
                    &v.name,
                    &format!("{}/{}", paths::SECRET, v.name),
                )));
            }
        }
        if let Some(d) = &s.downward_api {
            r.volumes.push(Volume {
                name: v.name.clone(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: (!d.fields.is_empty()).then(|| d.fields.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            if has_disk(&v.name) {
                r.mounts.push(read_only(mount(
                    &v.name,
                    &format!("{}/{}", paths::DOWNWARD_API, v.name),
                )));
            }
        }
        if let Some(sa) = &s.service_account {
            r.service_account = sa.service_account_name.clone();
        }
        if let Some(sp) = &s.sysprep {
            let vol = if let Some(cm) = sp.config_map.as_ref().and_then(|c| c.name.clone()) {
                Volume {
                    name: v.name.clone(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: cm,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            } else if let Some(sec) = sp.secret.as_ref().and_then(|c| c.name.clone()) {
                secret_volume(v.name.clone(), &sec)
            } else {
                continue;
            };
            r.volumes.push(vol);
            r.mounts.push(read_only(mount(
                &v.name,
                &format!("{}/{}", paths::SYSPREP, v.name),
            )));
        }
        let cloud_init = s
            .cloud_init_no_cloud
            .as_ref()
            .map(|c| {
                (
                    c.user_data_secret_ref.as_ref(),
                    c.network_data_secret_ref.as_ref(),
                )
            })
            .or_else(|| {
                s.cloud_init_config_drive.as_ref().map(|c| {
                    (
                        c.user_data_secret_ref.as_ref(),
                        c.network_data_secret_ref.as_ref(),
                    )
                })
            });
        if let Some((user, network)) = cloud_init {
            for (secret, suffix, key) in [
                (user, "udata", "userdata"),
                (network, "ndata", "networkdata"),
            ] {
                let Some(name) = secret.and_then(|s| s.name.as_deref()) else {
                    continue;
                };
                let vol = format!("{}-{suffix}", v.name);
                r.volumes.push(secret_volume(vol.clone(), name));
                let camel = if key == "userdata" {
                    "userData"
                } else {
                    "networkData"
                };
                for sub in [key, camel] {
                    r.mounts.push(sub_path_mount(
                        &vol,
                        format!("{}/{}/{sub}", paths::SECRET, v.name),
                        sub,
                    ));
                }
            }
        }
    }
    for cred in &vmi.spec.access_credentials {
        let secret = cred
            .ssh_public_key
            .as_ref()
            .and_then(|k| k.source.secret.as_ref())
            .map(|s| s.secret_name.clone())
            .or_else(|| {
                cred.user_password
                    .as_ref()
                    .and_then(|p| p.source.secret.as_ref())
                    .map(|s| s.secret_name.clone())
            });
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            let vol = format!("{secret}-access-cred");
            r.volumes.push(secret_volume(vol.clone(), &secret));
            r.mounts
                .push(read_only(mount(&vol, &format!("{}/{vol}", paths::SECRET))));
        }
    }
    Ok(r)
}

/// One container per containerDisk volume, named `volume<volume name>`, with the disk image,
/// as upstream lays them out (its `--copy-path` is where the disk is expected in the pod).
fn container_disk_containers(vmi: &VirtualMachineInstance) -> Vec<Container> {
    let uid = vmi.metadata.uid.clone().unwrap_or_default();
    let dir = format!("{}/{uid}", paths::CONTAINER_DISKS);
    vmi.spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let cd = v.volume_source.container_disk.as_ref()?;
            Some(Container {
                name: format!("volume{}", v.name),
                image: Some(cd.image.clone()),
                image_pull_policy: cd.image_pull_policy.clone(),
                command: Some(vec!["/usr/bin/container-disk".into()]),
                args: Some(vec!["--copy-path".into(), format!("{dir}/disk_{i}")]),
                volume_mounts: Some(vec![mount("container-disks", &dir)]),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".into(), Quantity("1m".into())),
                        ("memory".into(), Quantity("1M".into())),
                        ("ephemeral-storage".into(), Quantity("50M".into())),
                    ])),
                    limits: Some(BTreeMap::from([
                        ("cpu".into(), Quantity("10m".into())),
                        ("memory".into(), Quantity("40M".into())),
                    ])),
                    ..Default::default()
                }),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect()
}

fn pod_annotations(vmi: &VirtualMachineInstance) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = vmi
        .annotations()
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("kubectl.kubernetes.io")
                && !k.starts_with("kubevirt.io/storage-observed-api-version")
                && !k.starts_with("kubevirt.io/latest-observed-api-version")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    a.insert(names::DOMAIN_ANNOTATION.into(), vmi.name_any());
    a.insert(
        names::DEFAULT_CONTAINER_ANNOTATION.into(),
        COMPUTE_CONTAINER.into(),
    );
    a.insert(
        names::MIGRATION_TRANSPORT_UNIX_ANNOTATION.into(),
        "true".into(),
    );
    a.insert(
        "descheduler.alpha.kubernetes.io/request-evict-only".into(),
        String::new(),
    );
    a
}

fn pod_labels(vmi: &VirtualMachineInstance) -> BTreeMap<String, String> {
    let mut l = vmi.labels().clone();
    l.insert(names::APP_LABEL.into(), "virt-launcher".into());
    l.insert(
        names::CREATED_BY_LABEL.into(),
        vmi.metadata.uid.clone().unwrap_or_default(),
    );
    l.insert(names::VM_NAME_LABEL.into(), hostname(vmi));
    l.insert(names::VMI_ID_LABEL.into(), vmi_id(&vmi.name_any()));
    l
}

/// The owner reference a launcher pod carries to its instance.
pub fn owner_reference(vmi: &VirtualMachineInstance) -> OwnerReference {
    OwnerReference {
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachineInstance".into(),
        name: vmi.name_any(),
        uid: vmi.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The launcher pod for `vmi`. `pvcs` are the PVCs of its namespace by name (a missing claim is
/// [`RenderError::PvcNotFound`], which the instance shows as upstream does).
pub fn launcher_pod(
    vmi: &VirtualMachineInstance,
    cfg: &LauncherConfig,
    pvcs: &BTreeMap<String, PersistentVolumeClaim>,
) -> Result<Pod, RenderError> {
    let name = vmi
        .metadata
        .name
        .clone()
        .ok_or(RenderError::Missing("name"))?;
    let namespace = vmi.namespace().ok_or(RenderError::Missing("namespace"))?;
    let uid = vmi
        .metadata
        .uid
        .clone()
        .ok_or(RenderError::Missing("uid"))?;
    let rendered = render_volumes(vmi, pvcs)?;
    let grace = vmi
        .spec
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS);
    let compute = Container {
        name: COMPUTE_CONTAINER.into(),
        image: Some(cfg.image.clone()),
        image_pull_policy: cfg.image_pull_policy.clone(),
        command: Some(vec!["virt-launcher".into()]),
        args: Some(vec![
            "--namespace".into(),
            namespace.clone(),
            "--name".into(),
            name.clone(),
            "--uid".into(),
            uid,
            // libvirt's sockets live under its directory; the scratch directory's path is too
            // long for them on some nodes.
            "--libvirt-dir".into(),
            paths::LIBVIRT_RUNTIME.into(),
        ]),
        env: Some(vec![
            EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // One malloc arena: the launcher (and the libvirt in it) is a low-traffic
            // process whose threads would each get an arena of their own otherwise; measured
            // 0.7 MiB less resident per VMI (launcher-bench).
            EnvVar {
                name: "MALLOC_ARENA_MAX".into(),
                value: Some("1".into()),
                ..Default::default()
            },
        ]),
        resources: Some(resources(vmi, cfg)),
        volume_mounts: Some(rendered.mounts),
        volume_devices: (!rendered.devices.is_empty()).then_some(rendered.devices),
        ..Default::default()
    };
    let mut containers = vec![compute];
    containers.extend(container_disk_containers(vmi));
    let mut node_selector = vmi.spec.node_selector.clone();
    node_selector.insert(names::NODE_SCHEDULABLE_LABEL.into(), "true".into());
    if let Some(arch) = vmi.spec.architecture.as_deref().filter(|a| !a.is_empty()) {
        node_selector.insert("kubernetes.io/arch".into(), arch.to_lowercase());
    }
    let service_account = vmi
        .spec
        .service_account_name
        .clone()
        .or(rendered.service_account.clone());
    let affinity: Option<Affinity> = vmi.spec.affinity.clone();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("virt-launcher-{name}-")),
            namespace: Some(namespace),
            labels: Some(pod_labels(vmi)),
            annotations: Some(pod_annotations(vmi)),
            owner_references: Some(vec![owner_reference(vmi)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            hostname: Some(hostname(vmi)),
            subdomain: vmi.spec.subdomain.clone(),
            termination_grace_period_seconds: Some(grace + 2 * GRACE_PADDING_SECONDS),
            restart_policy: Some("Never".into()),
            containers,
            node_selector: Some(node_selector),
            volumes: Some(rendered.volumes),
            dns_config: vmi.spec.dns_config.clone(),
            dns_policy: vmi.spec.dns_policy.clone(),
            readiness_gates: Some(vec![PodReadinessGate {
                condition_type: names::UNPAUSED_POD_CONDITION.into(),
            }]),
            enable_service_links: Some(false),
            scheduler_name: vmi.spec.scheduler_name.clone(),
            tolerations: (!vmi.spec.tolerations.is_empty()).then(|| vmi.spec.tolerations.clone()),
            topology_spread_constraints: (!vmi.spec.topology_spread_constraints.is_empty())
                .then(|| vmi.spec.topology_spread_constraints.clone()),
            priority_class_name: vmi.spec.priority_class_name.clone(),
            affinity,
            automount_service_account_token: Some(rendered.service_account.is_some()),
            service_account_name: service_account,
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;
    use kubevirt_api::v1::{
        CPU, CloudInitNoCloudSource, ConfigMapVolumeSource as VmiCm, ContainerDiskSource, Disk,
        LocalObjectRef, Memory, PersistentVolumeClaimVolumeSource as VmiPvc,
        VirtualMachineInstanceSpec, VolumeSource,
    };

    fn vol(name: &str, source: VolumeSource) -> VmiVolume {
        VmiVolume {
            name: name.into(),
            volume_source: source,
        }
    }

    fn vmi() -> VirtualMachineInstance {
        let mut spec = VirtualMachineInstanceSpec::default();
        spec.domain.memory = Some(Memory {
            guest: Some(Quantity("128Mi".into())),
            ..Default::default()
        });
        spec.architecture = Some("amd64".into());
        spec.volumes = vec![
            vol(
                "containerdisk",
                VolumeSource {
                    container_disk: Some(ContainerDiskSource {
                        image: "reg/guest:1".into(),
                        image_pull_policy: Some("IfNotPresent".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            vol(
                "data",
                VolumeSource {
                    persistent_volume_claim: Some(VmiPvc {
                        claim_name: "data-pvc".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            vol(
                "cfg",
                VolumeSource {
                    config_map: Some(VmiCm {
                        name: Some("my-cm".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
            vol(
                "cloudinit",
                VolumeSource {
                    cloud_init_no_cloud: Some(CloudInitNoCloudSource {
                        user_data_secret_ref: Some(LocalObjectRef {
                            name: Some("ud".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ),
        ];
        spec.domain.devices.disks = ["containerdisk", "data", "cfg", "cloudinit"]
            .iter()
            .map(|n| Disk {
                name: (*n).into(),
                ..Default::default()
            })
            .collect();
        spec.node_selector = BTreeMap::from([("disk".into(), "ssd".into())]);
        VirtualMachineInstance {
            metadata: ObjectMeta {
                name: Some("testvmi".into()),
                namespace: Some("ns1".into()),
                uid: Some("1234-uid".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                annotations: Some(BTreeMap::from([
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".into(),
                        "{}".into(),
                    ),
                    ("custom".into(), "x".into()),
                ])),
                ..Default::default()
            },
            spec,
            status: None,
        }
    }

    fn pvcs() -> BTreeMap<String, PersistentVolumeClaim> {
        BTreeMap::from([(
            "data-pvc".to_string(),
            PersistentVolumeClaim {
                spec: Some(PersistentVolumeClaimSpec::default()),
                ..Default::default()
            },
        )])
    }

    #[test]
    fn pod_carries_upstream_labels_annotations_and_owner() {
        let pod = launcher_pod(&vmi(), &LauncherConfig::default(), &pvcs()).unwrap();
        let m = &pod.metadata;
        assert_eq!(m.generate_name.as_deref(), Some("virt-launcher-testvmi-"));
        let l = m.labels.as_ref().unwrap();
        assert_eq!(l["kubevirt.io"], "virt-launcher");
        assert_eq!(l["kubevirt.io/created-by"], "1234-uid");
        assert_eq!(l["vm.kubevirt.io/name"], "testvmi");
        assert_eq!(l["vmi.kubevirt.io/id"], "testvmi");
        assert_eq!(l["app"], "web");
        let a = m.annotations.as_ref().unwrap();
        assert_eq!(a["kubevirt.io/domain"], "testvmi");
        assert_eq!(a["kubectl.kubernetes.io/default-container"], "compute");
        assert_eq!(a["custom"], "x");
        assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        let o = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.controller),
            ("VirtualMachineInstance", "1234-uid", Some(true))
        );
    }

    #[test]
    fn compute_runs_the_launcher_with_memory_and_overhead() {
        let cfg = LauncherConfig {
            image: "127.0.0.1:5000/kubevirt/virt-launcher:dev".into(),
            ..Default::default()
        };
        let pod = launcher_pod(&vmi(), &cfg, &pvcs()).unwrap();
        let spec = pod.spec.unwrap();
        let c = &spec.containers[0];
        assert_eq!(c.name, "compute");
        assert_eq!(
            c.image.as_deref(),
            Some("127.0.0.1:5000/kubevirt/virt-launcher:dev")
        );
        assert_eq!(
            c.command.as_deref(),
            Some(&["virt-launcher".to_string()][..])
        );
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "--namespace ns1 --name testvmi --uid 1234-uid --libvirt-dir /var/run/libvirt"
        );
        let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        // 128Mi guest + 80 base + 32 TCG + 2 per vCPU + 8 graphics + 128Mi/512.
        let expected = (128 + 80 + 32 + 2 + 8) * MIB + (128 * MIB) / 512;
        assert_eq!(req["memory"].0, Amount::bytes_to_string(expected));
        assert_eq!(req["cpu"].0, "100m");
        let sockets = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "sockets")
            .unwrap();
        assert_eq!(sockets.mount_path, "/var/run/kubevirt/sockets");
        assert!(
            spec.volumes
                .as_ref()
                .unwrap()
                .iter()
                .any(|v| v.name == "sockets" && v.empty_dir.is_some())
        );
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(60));
        let ns = spec.node_selector.unwrap();
        assert_eq!(ns["disk"], "ssd");
        assert_eq!(ns["kubevirt.io/schedulable"], "true");
        assert_eq!(ns["kubernetes.io/arch"], "amd64");
    }

    #[test]
    fn container_disks_get_their_own_containers() {
        let pod = launcher_pod(&vmi(), &LauncherConfig::default(), &pvcs()).unwrap();
        let spec = pod.spec.unwrap();
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["compute", "volumecontainerdisk"]);
        let cd = &spec.containers[1];
        assert_eq!(cd.image.as_deref(), Some("reg/guest:1"));
        assert_eq!(cd.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            cd.args.as_ref().unwrap()[1],
            "/var/run/kubevirt/container-disks/1234-uid/disk_0"
        );
    }

    #[test]
    fn pvc_configmap_and_secret_volumes_are_mounted_where_upstream_mounts_them() {
        let pod = launcher_pod(&vmi(), &LauncherConfig::default(), &pvcs()).unwrap();
        let spec = pod.spec.unwrap();
        let vols = spec.volumes.unwrap();
        let find = |n: &str| vols.iter().find(|v| v.name == n).unwrap();
        assert_eq!(
            find("data")
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-pvc"
        );
        assert_eq!(find("cfg").config_map.as_ref().unwrap().name, "my-cm");
        assert_eq!(
            find("cloudinit-udata")
                .secret
                .as_ref()
                .unwrap()
                .secret_name
                .as_deref(),
            Some("ud")
        );
        let mounts = spec.containers[0].volume_mounts.clone().unwrap();
        let path = |n: &str| -> Vec<String> {
            mounts
                .iter()
                .filter(|m| m.name == n)
                .map(|m| m.mount_path.clone())
                .collect()
        };
        assert_eq!(path("data"), ["/var/run/kubevirt-private/vmi-disks/data"]);
        assert_eq!(path("cfg"), ["/var/run/kubevirt-private/config-map/cfg"]);
        assert_eq!(
            path("cloudinit-udata"),
            [
                "/var/run/kubevirt-private/secret/cloudinit/userdata",
                "/var/run/kubevirt-private/secret/cloudinit/userData"
            ]
        );
    }

    #[test]
    fn missing_pvc_is_reported_with_upstreams_words() {
        let err = launcher_pod(&vmi(), &LauncherConfig::default(), &BTreeMap::new()).unwrap_err();
        assert_eq!(err, RenderError::PvcNotFound("data-pvc".into()));
        assert_eq!(
            err.to_string(),
            "failed to render launch manifest: didn't find PVC data-pvc"
        );
    }

    #[test]
    fn block_pvcs_become_devices() {
        let mut p = pvcs();
        p.get_mut("data-pvc")
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .volume_mode = Some("Block".into());
        let pod = launcher_pod(&vmi(), &LauncherConfig::default(), &p).unwrap();
        let c = &pod.spec.unwrap().containers[0];
        assert_eq!(
            c.volume_devices.as_ref().unwrap()[0].device_path,
            "/dev/data"
        );
    }

    #[test]
    fn cpu_and_limits_follow_the_instance() {
        let mut v = vmi();
        v.spec.domain.resources = Some(kubevirt_api::v1::ResourceRequirements {
            requests: BTreeMap::from([("cpu".into(), Quantity("500m".into()))]),
            limits: BTreeMap::from([("memory".into(), Quantity("256Mi".into()))]),
            ..Default::default()
        });
        v.spec.domain.cpu = Some(CPU {
            sockets: Some(2),
            ..Default::default()
        });
        let r = resources(&v, &LauncherConfig::default());
        assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "500m");
        let overhead = memory_overhead_bytes(&v, &LauncherConfig::default());
        assert_eq!(overhead, (80 + 32 + 4 + 8) * MIB + (128 * MIB) / 512);
        assert_eq!(
            r.limits.as_ref().unwrap()["memory"].0,
            Amount::bytes_to_string(256 * MIB + overhead)
        );
    }

    #[test]
    fn long_names_get_a_hashed_id() {
        let long = "a".repeat(70);
        let id = vmi_id(&long);
        assert_eq!(id.len(), 63);
        assert!(id.starts_with(&"a".repeat(54)));
    }
}
