use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

use crate::util::{cache_dir, repo_root, run};

/// The containerDisk's repository in a registry.
pub const IMAGE_REPOSITORY: &str = "kubevirt-rs/guest";
/// The containerDisk's tag.
pub const IMAGE_TAG: &str = "latest";

/// One build of the guest image, as `scripts/guest-image` left it in the cache dir. The paths are
/// those of the build's own directory (`guest/builds/<id>/`), which a later rebuild leaves alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// The build's directory.
    pub dir: PathBuf,
    /// The bootable disk (MBR, extlinux, ext4 with /boot and the persistent overlay).
    pub qcow2: PathBuf,
    /// The kernel, for kernelBoot (`-kernel`).
    pub kernel: PathBuf,
    /// The initramfs, the whole userland, for kernelBoot (`-initrd`).
    pub initrd: PathBuf,
    /// The containerDisk as an OCI image layout (tag [`IMAGE_TAG`]).
    pub oci_layout: PathBuf,
    /// The content hash of the build's inputs.
    pub build_id: String,
    /// The Debian kernel's version (`uname -r` in the guest).
    pub kernel_version: String,
    /// The console and SSH login that works before cloud-init changes it.
    pub default_user: String,
    /// Its password.
    pub default_password: String,
    /// `sha256:...` of the containerDisk's manifest.
    pub manifest_digest: String,
    /// `sha256:...` of its one (gzip) layer.
    pub layer_digest: String,
    /// The hex sha256 of `guest.qcow2`.
    pub qcow2_sha256: String,
}

static ENSURED: OnceLock<std::result::Result<GuestImage, String>> = OnceLock::new();

impl GuestImage {
    /// `scripts/guest-image`.
    pub fn script() -> PathBuf {
        repo_root().join("scripts").join("guest-image")
    }

    /// Where the script puts its outputs: `<cache>/guest`.
    pub fn output_dir() -> PathBuf {
        cache_dir().join("guest")
    }

    /// The newest build in the cache, without building. Fails if there is none.
    pub fn locate() -> Result<Self> {
        let env = Self::output_dir().join("build.env");
        let real = std::fs::canonicalize(&env).with_context(|| {
            format!(
                "no guest image in {} (run scripts/guest-image)",
                Self::output_dir().display()
            )
        })?;
        Self::from_build_env(&real)
    }

    /// The guest image for the current sources: runs `scripts/guest-image`, which builds only
    /// when the content hash of its inputs changed (else it takes a fraction of a second), then
    /// reads the build. Done once per process. With `KUBEVIRT_RS_GUEST_NO_BUILD=1` it only
    /// [locates](Self::locate) the newest build.
    pub fn ensure() -> Result<Self> {
        let got = ENSURED.get_or_init(|| {
            let no_build = std::env::var("KUBEVIRT_RS_GUEST_NO_BUILD").is_ok_and(|v| v == "1");
            let result = if no_build {
                Self::locate()
            } else {
                Self::build()
            };
            result.map_err(|e| format!("{e:#}"))
        });
        got.clone().map_err(|e| anyhow!(e))
    }

    fn build() -> Result<Self> {
        let out = run(Command::new(Self::script()).env("KUBEVIRT_RS_CACHE", cache_dir()))
            .context("building the guest image")?;
        let id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("id=").map(str::to_string))
            .ok_or_else(|| anyhow!("scripts/guest-image printed no id= line"))?;
        Self::from_build_env(&Self::output_dir().join("builds").join(id).join("build.env"))
    }

    fn from_build_env(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| {
            vars.get(k)
                .map(|v| v.to_string())
                .ok_or_else(|| anyhow!("{} has no {k}", path.display()))
        };
        let dir = path
            .parent()
            .ok_or_else(|| anyhow!("{} has no parent", path.display()))?
            .to_path_buf();
        let image = GuestImage {
            qcow2: dir.join("guest.qcow2"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            oci_layout: dir.join("oci"),
            build_id: get("BUILD_ID")?,
            kernel_version: get("KERNEL_VERSION")?,
            default_user: get("DEFAULT_USER")?,
            default_password: get("DEFAULT_PASSWORD")?,
            manifest_digest: get("MANIFEST_DIGEST")?,
            layer_digest: get("LAYER_DIGEST")?,
            qcow2_sha256: get("QCOW2_SHA256")?,
            dir,
        };
        for p in [
            &image.qcow2,
            &image.kernel,
            &image.initrd,
            &image.oci_layout,
        ] {
            if !p.exists() {
                bail!("guest build {} lacks {}", image.build_id, p.display());
            }
        }
        Ok(image)
    }

    /// `REGISTRY/kubevirt-rs/guest:latest`, the reference a VMI's containerDisk names.
    pub fn image_ref(registry: &str) -> String {
        format!("{registry}/{IMAGE_REPOSITORY}:{IMAGE_TAG}")
    }

    /// Pushes the containerDisk to `registry` (`host:port`, loopback, plain HTTP) with
    /// `scripts/guest-image --push` (a no-op if the tag already has this digest). Returns the
    /// manifest digest.
    pub fn push(registry: &str) -> Result<String> {
        let out = run(Command::new(Self::script())
            .arg("--push")
            .env("KUBEVIRT_RS_CACHE", cache_dir())
            .env("KUBEVIRT_RS_REGISTRY", registry))
        .with_context(|| format!("pushing the guest containerDisk to {registry}"))?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("digest=").map(str::to_string))
            .ok_or_else(|| anyhow!("scripts/guest-image --push printed no digest= line"))
    }
}
