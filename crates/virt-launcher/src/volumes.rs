//! Volume preparation: turns each VMI volume into an image QEMU can open, and records where it
//! is for the converter.
//!
//! | volume | what the launcher does |
//! | --- | --- |
//! | containerDisk | a qcow2 overlay in the scratch dir over the extracted image (read-only backing file); discarded at stop |
//! | ephemeral | the same over the PVC's image |
//! | emptyDisk | a sparse qcow2 of the capacity in the scratch dir; discarded at stop |
//! | hostDisk | the file at `path`; `DiskOrCreate` makes a sparse raw file of `capacity` when missing |
//! | persistentVolumeClaim, dataVolume | filesystem mode: `<mount>/disk.img` (made sparse when missing: the claim's capacity less the file system overhead); block mode: the device |
//! | cloudInitNoCloud | an ISO labelled `cidata` (meta-data, user-data, network-config) |
//! | cloudInitConfigDrive | an ISO labelled `config-2` (openstack/latest/...) |
//! | configMap, secret, downwardAPI, serviceAccount | an ISO of the mounted files, labelled with `volumeLabel` when given |
//!
//! Where the pod's files are: `--container-disk VOL=PATH` and `--pvc VOL=PATH` name them
//! explicitly; otherwise upstream's in-pod layout under the private dir
//! (`/var/run/kubevirt-private`): `vmi-disks/<vol>/` for PVCs, `secret/<vol>/`,
//! `config-map/<vol>/`, `downwardapi/<vol>/`; service account files in
//! `/var/run/secrets/kubernetes.io/serviceaccount`.
//!
//! Access credentials (`spec.accessCredentials`): the Secret of an `sshPublicKey` is mounted at
//! `secret/<secretName>-access-cred/` (virt-controller's pod). Its keys go into the meta-data of
//! the NoCloud or ConfigDrive seed its `propagationMethod` names, as `public-keys` /
//! `public_keys`; cloud-init, and the test guest, authorize them for the default user.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kubevirt_api::quantity::Amount;
use kubevirt_api::v1::{VirtualMachineInstance, Volume, host_disk_types};

use crate::cloudinit::{self, CloudInitData};
use crate::converter::{DiskSource, ImageFormat, KernelBootFiles};

/// Where the pod's volume files live on the host.
#[derive(Clone, Debug, Default)]
pub struct HostPaths {
    /// containerDisk volume -> the extracted image file (or the container's root directory).
    pub container_disks: BTreeMap<String, PathBuf>,
    /// PVC/DataVolume volume -> mount directory, image file or block device.
    pub pvcs: BTreeMap<String, PathBuf>,
    /// The kernelBoot container's root directory.
    pub kernel_boot: Option<PathBuf>,
    /// upstream's `/var/run/kubevirt-private`.
    pub private_dir: PathBuf,
    /// The service account token directory.
    pub service_account_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{field}: {message}")]
    Volume { field: String, message: String },
    #[error("{field}: {op}: {source}")]
    Io {
        field: String,
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: {tool} failed: {output}")]
    Tool {
        field: String,
        tool: &'static str,
        output: String,
    },
}

/// What the preparation produced.
#[derive(Clone, Debug, Default)]
pub struct Prepared {
    pub disks: BTreeMap<String, DiskSource>,
    pub kernel_boot: Option<KernelBootFiles>,
}

/// The scratch subdirectories the launcher owns (removed at stop).
pub const SCRATCH_DIRS: [&str; 4] = ["disks", "cloud-init", "config", "nvram"];

/// The cloud-init datasource a seed volume is (where access-credential keys may propagate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeySeed {
    NoCloud,
    ConfigDrive,
}

struct Ctx<'a> {
    vmi: &'a VirtualMachineInstance,
    host: &'a HostPaths,
    scratch: &'a Path,
}

pub fn prepare(
    vmi: &VirtualMachineInstance,
    host: &HostPaths,
    scratch: &Path,
) -> Result<Prepared, VolumeError> {
    let ctx = Ctx { vmi, host, scratch };
    for dir in SCRATCH_DIRS {
        let d = scratch.join(dir);
        std::fs::create_dir_all(&d).map_err(|source| VolumeError::Io {
            field: "scratch".into(),
            op: format!("create {}", d.display()),
            source,
        })?;
    }
    let mut out = Prepared::default();
    // Only volumes a disk uses need an image (filesystems are refused by the converter).
    let used: Vec<&str> = vmi
        .spec
        .domain
        .devices
        .disks
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    for (i, volume) in vmi.spec.volumes.iter().enumerate() {
        if !used.contains(&volume.name.as_str()) {
            continue;
        }
        let field = format!("spec.volumes[{i}]");
        let source = ctx.volume(&field, volume)?;
        out.disks.insert(volume.name.clone(), source);
    }
    if let Some(kb) = vmi
        .spec
        .domain
        .firmware
        .as_ref()
        .and_then(|f| f.kernel_boot.as_ref())
        .and_then(|k| k.container.as_ref())
    {
        let field = "spec.domain.firmware.kernelBoot.container";
        let root = host
            .kernel_boot
            .as_ref()
            .ok_or_else(|| VolumeError::Volume {
                field: field.into(),
                message: "no --kernel-boot directory was given to the launcher".into(),
            })?;
        let file = |p: &Option<String>, what: &str| -> Result<Option<PathBuf>, VolumeError> {
            let Some(p) = p.as_deref() else {
                return Ok(None);
            };
            let path = root.join(p.trim_start_matches('/'));
            if !path.is_file() {
                return Err(VolumeError::Volume {
                    field: format!("{field}.{what}"),
                    message: format!("{} does not exist", path.display()),
                });
            }
            Ok(Some(path))
        };
        out.kernel_boot = Some(KernelBootFiles {
            kernel: file(&kb.kernel_path, "kernelPath")?,
            initrd: file(&kb.initrd_path, "initrdPath")?,
        });
    }
    Ok(out)
}

/// Removes everything [`prepare`] made.
pub fn cleanup(scratch: &Path) {
    for dir in SCRATCH_DIRS {
        let _ = std::fs::remove_dir_all(scratch.join(dir));
    }
}

fn err(field: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::Volume {
        field: field.to_string(),
        message: message.into(),
    }
}

fn io_err(field: &str, op: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let field = field.to_string();
    let op = op.into();
    move |source| VolumeError::Io { field, op, source }
}

impl Ctx<'_> {
    fn volume(&self, field: &str, v: &Volume) -> Result<DiskSource, VolumeError> {
        let s = &v.volume_source;
        if let Some(cd) = &s.container_disk {
            let given = self.host.container_disks.get(&v.name).ok_or_else(|| {
                err(
                    &format!("{field}.containerDisk"),
                    format!(
                        "no --container-disk {}=PATH was given to the launcher",
                        v.name
                    ),
                )
            })?;
            let base = container_disk_image(given, cd.path.as_deref())
                .map_err(|m| err(&format!("{field}.containerDisk"), m))?;
            return self.overlay(field, &v.name, &base);
        }
        if let Some(e) = &s.ephemeral {
            let claim = e
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str())
                .unwrap_or_default();
            let src =
                self.pvc_source(&format!("{field}.ephemeral"), &v.name, claim, true, false)?;
            return self.overlay(field, &v.name, &src.path);
        }
        if let Some(pvc) = &s.persistent_volume_claim {
            let f = format!("{field}.persistentVolumeClaim");
            let ro = pvc.read_only == Some(true);
            return self.pvc_source(&f, &v.name, &pvc.claim_name, ro, true);
        }
        if let Some(dv) = &s.data_volume {
            return self.pvc_source(
                &format!("{field}.dataVolume"),
                &v.name,
                &dv.name,
                false,
                true,
            );
        }
        if let Some(empty) = &s.empty_disk {
            let f = format!("{field}.emptyDisk.capacity");
            let bytes = Amount::parse(&empty.capacity.0)
                .map_err(|e| err(&f, e.to_string()))?
                .bytes();
            if bytes == 0 {
                return Err(err(&f, "must be positive"));
            }
            let path = self.scratch.join(format!("disks/{}.qcow2", v.name));
            let _ = std::fs::remove_file(&path);
            run_tool(
                field,
                "qemu-img",
                Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2"])
                    .arg(&path)
                    .arg(bytes.to_string()),
            )?;
            return Ok(file_source(path, ImageFormat::Qcow2, false));
        }
        if let Some(h) = &s.host_disk {
            let f = format!("{field}.hostDisk");
            let path = PathBuf::from(&h.path);
            if !path.exists() {
                if h.type_ != host_disk_types::DISK_OR_CREATE {
                    return Err(err(
                        &format!("{f}.path"),
                        format!("{} does not exist", path.display()),
                    ));
                }
                let cap = h
                    .capacity
                    .as_ref()
                    .ok_or_else(|| err(&format!("{f}.capacity"), "required to create the disk"))?;
                let bytes = Amount::parse(&cap.0)
                    .map_err(|e| err(&format!("{f}.capacity"), e.to_string()))?
                    .bytes();
                create_sparse(&f, &path, bytes)?;
            }
            let format =
                detect_format(&path).map_err(io_err(&f, format!("read {}", path.display())))?;
            return Ok(file_source(path, format, false));
        }
        if let Some(c) = &s.cloud_init_no_cloud {
            let f = format!("{field}.cloudInitNoCloud");
            let data = self.cloud_init_data(
                &f,
                &v.name,
                [
                    &c.user_data,
                    &c.user_data_base64,
                    &c.network_data,
                    &c.network_data_base64,
                ],
                c.user_data_secret_ref.is_some() || c.network_data_secret_ref.is_some(),
            )?;
            let data = CloudInitData {
                public_keys: self.access_keys(KeySeed::NoCloud)?,
                ..data
            };
            let files = cloudinit::nocloud_files(self.vmi, &data);
            return self.iso(
                &f,
                "cloud-init",
                &v.name,
                Some(cloudinit::NOCLOUD_LABEL),
                files,
            );
        }
        if let Some(c) = &s.cloud_init_config_drive {
            let f = format!("{field}.cloudInitConfigDrive");
            let data = self.cloud_init_data(
                &f,
                &v.name,
                [
                    &c.user_data,
                    &c.user_data_base64,
                    &c.network_data,
                    &c.network_data_base64,
                ],
                c.user_data_secret_ref.is_some() || c.network_data_secret_ref.is_some(),
            )?;
            let data = CloudInitData {
                public_keys: self.access_keys(KeySeed::ConfigDrive)?,
                ..data
            };
            let files = cloudinit::config_drive_files(self.vmi, &data);
            return self.iso(
                &f,
                "cloud-init",
                &v.name,
                Some(cloudinit::CONFIG_DRIVE_LABEL),
                files,
            );
        }
        if let Some(cm) = &s.config_map {
            let f = format!("{field}.configMap");
            let dir = self.host.private_dir.join("config-map").join(&v.name);
            let files = read_tree(&f, &dir, cm.optional == Some(true))?;
            return self.iso(&f, "config", &v.name, cm.volume_label.as_deref(), files);
        }
        if let Some(sec) = &s.secret {
            let f = format!("{field}.secret");
            let dir = self.host.private_dir.join("secret").join(&v.name);
            let files = read_tree(&f, &dir, sec.optional == Some(true))?;
            return self.iso(&f, "config", &v.name, sec.volume_label.as_deref(), files);
        }
        if let Some(d) = &s.downward_api {
            let f = format!("{field}.downwardAPI");
            let dir = self.host.private_dir.join("downwardapi").join(&v.name);
            let files = read_tree(&f, &dir, false)?;
            return self.iso(&f, "config", &v.name, d.volume_label.as_deref(), files);
        }
        if s.service_account.is_some() {
            let f = format!("{field}.serviceAccount");
            let files = read_tree(&f, &self.host.service_account_dir, false)?;
            return self.iso(&f, "config", &v.name, None, files);
        }
        let kind = v.source_kind().unwrap_or("a volume without a source");
        Err(err(
            field,
            format!("{kind} volumes are not supported by this launcher"),
        ))
    }

    /// A qcow2 overlay in the scratch dir with `base` as its read-only backing file.
    fn overlay(&self, field: &str, name: &str, base: &Path) -> Result<DiskSource, VolumeError> {
        let format =
            detect_format(base).map_err(io_err(field, format!("read {}", base.display())))?;
        let path = self.scratch.join(format!("disks/{name}.qcow2"));
        let _ = std::fs::remove_file(&path);
        run_tool(
            field,
            "qemu-img",
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", format.as_str(), "-b"])
                .arg(base)
                .arg(&path),
        )?;
        let mut src = file_source(path, ImageFormat::Qcow2, false);
        // QEMU opens the backing file with the overlay's cache mode.
        src.direct_io &= supports_direct_io(base, false);
        Ok(src)
    }

    /// A PVC's image: the block device, the image file, or `disk.img` in its mount directory.
    fn pvc_source(
        &self,
        field: &str,
        volume: &str,
        claim: &str,
        read_only: bool,
        create_missing: bool,
    ) -> Result<DiskSource, VolumeError> {
        let given = self
            .host
            .pvcs
            .get(volume)
            .cloned()
            .unwrap_or_else(|| self.host.private_dir.join("vmi-disks").join(volume));
        let meta = std::fs::metadata(&given).map_err(|e| {
            err(
                field,
                format!("claim {claim:?}: {} is not there ({e})", given.display()),
            )
        })?;
        if meta.file_type().is_block_device() {
            return Ok(DiskSource {
                direct_io: supports_direct_io(&given, read_only),
                path: given,
                block: true,
                format: ImageFormat::Raw,
                read_only,
                generated: false,
                block_size: None,
            });
        }
        let image = if meta.is_dir() {
            given.join("disk.img")
        } else {
            given.clone()
        };
        if !image.exists() {
            if !create_missing || read_only {
                return Err(err(field, format!("{} does not exist", image.display())));
            }
            let dir = image.parent().unwrap_or(Path::new("/"));
            let stat = nix::sys::statvfs::statvfs(dir)
                .map_err(|e| err(field, format!("statvfs {}: {e}", dir.display())))?;
            let fs_size = stat.blocks() as u64 * stat.fragment_size() as u64;
            // The claim's capacity (virt-controller reports it in the VMI status), else the
            // file system's size; less the file system overhead (upstream's default 5.5 %),
            // in whole MiB.
            let (capacity, overhead_permille) = self.claim_capacity(volume);
            let total = capacity.map_or(fs_size, |c| c.min(fs_size));
            let bytes = (total - total * overhead_permille / 1000) & !((1 << 20) - 1);
            create_sparse(field, &image, bytes)?;
        }
        let format =
            detect_format(&image).map_err(io_err(field, format!("read {}", image.display())))?;
        Ok(DiskSource {
            direct_io: supports_direct_io(&image, read_only),
            path: image,
            block: false,
            format,
            read_only,
            generated: false,
            block_size: None,
        })
    }

    /// The claim's capacity in bytes and the file system overhead in permille, from the VMI
    /// status virt-controller keeps.
    fn claim_capacity(&self, volume: &str) -> (Option<u64>, u64) {
        let info = self
            .vmi
            .status
            .as_ref()
            .and_then(|s| s.volume_status(volume))
            .and_then(|v| v.persistent_volume_claim_info.as_ref());
        let capacity = info
            .and_then(|i| i.capacity.get("storage"))
            .and_then(|q| Amount::parse(&q.0).ok())
            .map(Amount::bytes)
            .filter(|b| *b > 0);
        let overhead = info
            .and_then(|i| i.filesystem_overhead.as_deref())
            .and_then(|o| o.parse::<f64>().ok())
            .filter(|o| (0.0..1.0).contains(o))
            .map_or(55, |o| (o * 1000.0).round() as u64);
        (capacity, overhead)
    }

    /// Resolves user and network data: inline, base64, or from the mounted Secret
    /// (`<private>/secret/<volume>/{userdata,userData,networkdata,networkData}`).
    fn cloud_init_data(
        &self,
        field: &str,
        volume: &str,
        [user, user64, net, net64]: [&Option<String>; 4],
        from_secret: bool,
    ) -> Result<CloudInitData, VolumeError> {
        let secret_dir = self.host.private_dir.join("secret").join(volume);
        let read_secret = |names: [&str; 2]| {
            names
                .iter()
                .map(|n| secret_dir.join(n))
                .find_map(|p| std::fs::read(p).ok())
        };
        let decode = |what: &str, s: &str| {
            cloudinit::decode_base64(s)
                .ok_or_else(|| err(&format!("{field}.{what}"), "not valid base64"))
        };
        let user_data = match (user, user64) {
            (Some(u), _) => Some(u.clone().into_bytes()),
            (None, Some(b)) => Some(decode("userDataBase64", b)?),
            (None, None) if from_secret => read_secret(["userdata", "userData"]),
            (None, None) => None,
        };
        let network_data = match (net, net64) {
            (Some(n), _) => Some(n.clone().into_bytes()),
            (None, Some(b)) => Some(decode("networkDataBase64", b)?),
            (None, None) if from_secret => read_secret(["networkdata", "networkData"]),
            (None, None) => None,
        };
        if from_secret && user_data.is_none() && network_data.is_none() {
            return Err(err(
                &format!("{field}.secretRef"),
                format!("no userdata or networkdata in {}", secret_dir.display()),
            ));
        }
        Ok(CloudInitData {
            user_data,
            network_data,
            public_keys: Vec::new(),
        })
    }

    /// The SSH keys of the access credentials that propagate through `seed`, read from their
    /// mounted Secrets. A Secret the pod does not have is an error naming the credential: the
    /// guest would otherwise boot without the access its owner asked for.
    fn access_keys(&self, seed: KeySeed) -> Result<Vec<String>, VolumeError> {
        let mut files = Vec::new();
        for (i, cred) in self.vmi.spec.access_credentials.iter().enumerate() {
            let Some(key) = &cred.ssh_public_key else {
                continue;
            };
            let m = &key.propagation_method;
            let through_seed = match seed {
                KeySeed::NoCloud => m.no_cloud.is_some(),
                KeySeed::ConfigDrive => m.config_drive.is_some(),
            };
            // Validation refuses a credential without a Secret; nothing to read for it here.
            let Some(secret) = key.source.secret.as_ref().filter(|_| through_seed) else {
                continue;
            };
            let field = format!("spec.accessCredentials[{i}].sshPublicKey.source.secret");
            let dir = self
                .host
                .private_dir
                .join("secret")
                .join(crate::access::secret_dir_name(&secret.secret_name));
            files.extend(read_tree(&field, &dir, false)?.into_iter().map(|(_, d)| d));
        }
        Ok(cloudinit::parse_public_keys(
            files.iter().map(Vec::as_slice),
        ))
    }

    /// Writes `files` into a directory and makes an ISO 9660 image (Joliet and Rock Ridge) of it.
    fn iso(
        &self,
        field: &str,
        sub: &str,
        name: &str,
        label: Option<&str>,
        files: Vec<(String, Vec<u8>)>,
    ) -> Result<DiskSource, VolumeError> {
        let tree = self.scratch.join(sub).join(name);
        let _ = std::fs::remove_dir_all(&tree);
        for (rel, data) in &files {
            let path = tree.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io_err(field, format!("create {}", parent.display())))?;
            }
            std::fs::write(&path, data)
                .map_err(io_err(field, format!("write {}", path.display())))?;
        }
        std::fs::create_dir_all(&tree)
            .map_err(io_err(field, format!("create {}", tree.display())))?;
        let iso = self.scratch.join(sub).join(format!("{name}.iso"));
        let mut cmd = Command::new("genisoimage");
        cmd.arg("-output").arg(&iso);
        if let Some(l) = label.filter(|l| !l.is_empty()) {
            cmd.args(["-volid", l]);
        }
        cmd.args(["-joliet", "-rock", "-input-charset", "utf-8", "-quiet"])
            .arg(&tree);
        run_tool(field, "genisoimage", &mut cmd)?;
        let _ = std::fs::remove_dir_all(&tree);
        Ok(DiskSource {
            generated: true,
            ..file_source(iso, ImageFormat::Raw, true)
        })
    }
}

/// The image inside what the kubelet handed over: the file itself, or in a container root the
/// volume's `path`, else the one file under `disk/` (upstream's containerDisk convention).
fn container_disk_image(given: &Path, path: Option<&str>) -> Result<PathBuf, String> {
    if given.is_file() {
        return Ok(given.to_path_buf());
    }
    if !given.is_dir() {
        return Err(format!("{} does not exist", given.display()));
    }
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        let file = given.join(p.trim_start_matches('/'));
        return if file.is_file() {
            Ok(file)
        } else {
            Err(format!("{} does not exist", file.display()))
        };
    }
    let disk_dir = given.join("disk");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&disk_dir)
        .map_err(|e| format!("{}: {e}", disk_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    match files.len() {
        1 => Ok(files.remove(0)),
        0 => Err(format!("no image in {}", disk_dir.display())),
        _ => Err(format!(
            "{} holds several files; set containerDisk.path",
            disk_dir.display()
        )),
    }
}

fn file_source(path: PathBuf, format: ImageFormat, read_only: bool) -> DiskSource {
    DiskSource {
        direct_io: supports_direct_io(&path, true),
        path,
        block: false,
        format,
        read_only,
        generated: false,
        block_size: None,
    }
}

/// qcow2 by its magic (`QFI\xfb`), raw otherwise.
fn detect_format(path: &Path) -> std::io::Result<ImageFormat> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut magic)?;
    Ok(if n == 4 && magic == *b"QFI\xfb" {
        ImageFormat::Qcow2
    } else {
        ImageFormat::Raw
    })
}

/// Whether the file (its file system) accepts O_DIRECT, which cache mode `none` needs (tmpfs,
/// for one, does not).
fn supports_direct_io(path: &Path, read_only: bool) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(path)
        .is_ok()
}

fn create_sparse(field: &str, path: &Path, bytes: u64) -> Result<(), VolumeError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(field, format!("create {}", parent.display())))?;
    }
    let f = std::fs::File::create_new(path)
        .map_err(io_err(field, format!("create {}", path.display())))?;
    f.set_len(bytes).map_err(io_err(
        field,
        format!("size {} to {bytes} bytes", path.display()),
    ))
}

fn run_tool(field: &str, tool: &'static str, cmd: &mut Command) -> Result<(), VolumeError> {
    let out = cmd.output().map_err(io_err(field, format!("run {tool}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(VolumeError::Tool {
        field: field.to_string(),
        tool,
        output: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// The regular files under `dir` (following the `..data` symlinks kubelet uses for atomic
/// updates), as (relative path, contents), skipping dot entries.
pub(crate) fn read_tree(
    field: &str,
    dir: &Path,
    optional: bool,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    if !dir.exists() {
        if optional {
            return Ok(Vec::new());
        }
        return Err(err(field, format!("{} is not there", dir.display())));
    }
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(io_err(field, format!("read {}", d.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = format!("{prefix}{name}");
            if path.is_dir() {
                stack.push((path, format!("{rel}/")));
            } else if path.is_file() {
                let data = std::fs::read(&path)
                    .map_err(io_err(field, format!("read {}", path.display())))?;
                out.push((rel, data));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_disk_image_is_found_in_a_root_or_given_directly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = dir.path().join("disk");
        std::fs::create_dir(&disk).expect("mkdir");
        std::fs::write(disk.join("guest.qcow2"), b"QFI\xfb").expect("write");
        assert_eq!(
            container_disk_image(dir.path(), None),
            Ok(disk.join("guest.qcow2"))
        );
        assert_eq!(
            container_disk_image(&disk.join("guest.qcow2"), None),
            Ok(disk.join("guest.qcow2"))
        );
        assert!(container_disk_image(dir.path(), Some("/disk/other.img")).is_err());
        assert_eq!(
            detect_format(&disk.join("guest.qcow2")).ok(),
            Some(ImageFormat::Qcow2)
        );
    }

    #[test]
    fn read_tree_skips_kubelet_dot_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join("..data/key"), b"v").expect("write");
        std::os::unix::fs::symlink("..data/key", dir.path().join("key")).expect("symlink");
        let files = read_tree("f", dir.path(), false).expect("reads");
        assert_eq!(files, vec![("key".to_string(), b"v".to_vec())]);
        assert!(
            read_tree("f", &dir.path().join("missing"), true)
                .expect("optional")
                .is_empty()
        );
        assert!(read_tree("f", &dir.path().join("missing"), false).is_err());
    }

    fn vmi(volumes: serde_json::Value) -> VirtualMachineInstance {
        let names: Vec<serde_json::Value> = volumes
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| serde_json::json!({"name": v["name"]}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "vm1", "namespace": "ns1", "uid": "u-1"},
            "spec": {"domain": {"devices": {"disks": names}}, "volumes": volumes},
        }))
        .expect("a VMI")
    }

    /// Needs qemu-img and genisoimage (scripts/setup installs them), not root.
    #[test]
    fn prepares_empty_disks_host_disks_and_labelled_seeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scratch = dir.path().join("scratch");
        let host_disk = dir.path().join("host/disk.img");
        let v = vmi(serde_json::json!([
            {"name": "empty", "emptyDisk": {"capacity": "16Mi"}},
            {"name": "host", "hostDisk": {"path": host_disk, "type": "DiskOrCreate", "capacity": "8Mi"}},
            {"name": "seed", "cloudInitNoCloud": {"userDataBase64": "I2Nsb3VkLWNvbmZpZwo="}},
        ]));
        let host = HostPaths {
            private_dir: dir.path().join("private"),
            ..Default::default()
        };
        let p = prepare(&v, &host, &scratch).expect("prepares");
        assert_eq!(p.disks["empty"].format, ImageFormat::Qcow2);
        assert_eq!(
            std::fs::metadata(&host_disk).expect("created").len(),
            8 << 20
        );
        assert_eq!(p.disks["host"].format, ImageFormat::Raw);
        let seed = &p.disks["seed"];
        assert!(seed.read_only && seed.generated && seed.path.ends_with("cloud-init/seed.iso"));
        let info = std::process::Command::new("isoinfo")
            .args(["-d", "-i"])
            .arg(&seed.path)
            .output()
            .expect("isoinfo");
        assert!(String::from_utf8_lossy(&info.stdout).contains("Volume id: cidata"));
        cleanup(&scratch);
        assert!(!scratch.join("disks").exists());

        let missing = vmi(serde_json::json!([{"name": "root", "containerDisk": {"image": "x"}}]));
        let e = prepare(&missing, &host, &scratch).expect_err("no --container-disk");
        assert!(
            e.to_string().starts_with("spec.volumes[0].containerDisk:"),
            "{e}"
        );
        let bad =
            vmi(serde_json::json!([{"name": "s", "cloudInitNoCloud": {"userDataBase64": "*"}}]));
        let e = prepare(&bad, &host, &scratch).expect_err("bad base64");
        assert!(e.to_string().contains("userDataBase64"), "{e}");
        let unsupported = vmi(serde_json::json!([{"name": "m", "memoryDump": {"claimName": "c"}}]));
        let e = prepare(&unsupported, &host, &scratch).expect_err("unsupported");
        assert!(
            e.to_string()
                .contains("memoryDump volumes are not supported"),
            "{e}"
        );
    }

    /// Filesystem PVCs get a sparse `disk.img` when empty; an ephemeral volume is an overlay over
    /// the PVC's image; cloud-init data can come from the mounted Secret.
    #[test]
    fn pvc_images_ephemeral_overlays_and_secret_user_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scratch = dir.path().join("scratch");
        let private = dir.path().join("private");
        let pvc = private.join("vmi-disks/data");
        std::fs::create_dir_all(&pvc).expect("mkdir");
        let golden = dir.path().join("golden.img");
        std::fs::write(&golden, vec![0u8; 1 << 20]).expect("write");
        std::fs::create_dir_all(private.join("secret/seed")).expect("mkdir");
        std::fs::write(private.join("secret/seed/userdata"), "#cloud-config\n").expect("write");
        let v = vmi(serde_json::json!([
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "root", "ephemeral": {"persistentVolumeClaim": {"claimName": "golden"}}},
            {"name": "seed", "cloudInitNoCloud": {"secretRef": {"name": "s"}}},
        ]));
        let host = HostPaths {
            pvcs: [("root".to_string(), golden.clone())].into(),
            private_dir: private.clone(),
            ..Default::default()
        };
        let p = prepare(&v, &host, &scratch).expect("prepares");
        let data = &p.disks["data"];
        assert_eq!(data.path, pvc.join("disk.img"));
        assert!(std::fs::metadata(&data.path).expect("made").len() > 0);
        // With the claim's capacity in the status: that, less the overhead, in whole MiB.
        std::fs::remove_file(&data.path).expect("rm");
        let mut sized = v.clone();
        sized.status = serde_json::from_value(serde_json::json!({"volumeStatus": [{
            "name": "data", "target": "",
            "persistentVolumeClaimInfo": {"capacity": {"storage": "100Mi"}, "filesystemOverhead": "0.1"},
        }]}))
        .ok();
        prepare(&sized, &host, &scratch).expect("prepares");
        assert_eq!(
            std::fs::metadata(pvc.join("disk.img")).expect("made").len(),
            90 << 20
        );
        let root = &p.disks["root"];
        assert!(root.path.starts_with(&scratch) && root.format == ImageFormat::Qcow2);
        assert!(!root.read_only);
        assert!(p.disks["seed"].path.is_file());

        let no_secret = vmi(serde_json::json!([
            {"name": "other", "cloudInitNoCloud": {"secretRef": {"name": "s"}}},
        ]));
        let e = prepare(&no_secret, &host, &scratch).expect_err("no mounted secret");
        assert!(e.to_string().contains("secretRef"), "{e}");
    }

    /// Needs genisoimage and isoinfo (scripts/setup installs them), not root.
    #[test]
    fn access_credential_keys_reach_only_the_seed_they_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scratch = dir.path().join("scratch");
        let private = dir.path().join("private");
        let secret = private.join("secret/my-keys-access-cred");
        std::fs::create_dir_all(&secret).expect("mkdir");
        std::fs::write(secret.join("key1"), "ssh-ed25519 AAAA-kvrs one@a\n").expect("write");
        // The kubelet's atomic-update entries are not keys.
        std::fs::write(secret.join("..data"), "not-a-key").expect("write");
        let mut v = vmi(serde_json::json!([
            {"name": "seed", "cloudInitNoCloud": {"userData": "#cloud-config\n"}},
            {"name": "drive", "cloudInitConfigDrive": {"userData": "#cloud-config\n"}},
        ]));
        v.spec.access_credentials = serde_json::from_value(serde_json::json!([{"sshPublicKey": {
            "source": {"secret": {"secretName": "my-keys"}},
            "propagationMethod": {"noCloud": {}},
        }}]))
        .expect("credentials");
        let host = HostPaths {
            private_dir: private.clone(),
            ..Default::default()
        };
        let p = prepare(&v, &host, &scratch).expect("prepares");
        let extract = |iso: &Path, file: &str| {
            let out = std::process::Command::new("isoinfo")
                .args(["-R", "-x", file, "-i"])
                .arg(iso)
                .output()
                .expect("isoinfo");
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let meta = extract(&p.disks["seed"].path, "/meta-data");
        assert!(
            meta.contains("public-keys:\n  \"0\": \"ssh-ed25519 AAAA-kvrs one@a\"\n"),
            "{meta}"
        );
        let drive = extract(&p.disks["drive"].path, "/openstack/latest/meta_data.json");
        assert!(
            drive.contains("\"uuid\"") && !drive.contains("public_keys"),
            "{drive}"
        );

        // A credential whose Secret the pod lacks is refused with the credential named.
        v.spec.access_credentials[0]
            .ssh_public_key
            .as_mut()
            .and_then(|k| k.source.secret.as_mut())
            .expect("secret")
            .secret_name = "absent".into();
        let e = prepare(&v, &host, &scratch).expect_err("no mounted secret");
        assert!(
            e.to_string()
                .starts_with("spec.accessCredentials[0].sshPublicKey.source.secret:"),
            "{e}"
        );
    }
}
