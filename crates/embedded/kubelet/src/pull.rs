//! containerDisk (and any data container) images: pulled with oci-client, layers cached by
//! digest under `DATA/images/blobs/sha256/<hex>`, extracted once per manifest digest to
//! `DATA/images/rootfs/<hex>/`, references remembered in `DATA/images/refs/`. Registries in the
//! insecure list (e.g. `127.0.0.1:5000`) are spoken to over plain HTTP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::Mutex;

/// A pulled image, ready to be a container's root.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub rootfs: PathBuf,
    /// `<repository>@sha256:<manifest digest>`, reported as the container's `imageID`.
    pub image_id: String,
    pub cached: bool,
    pub took: Duration,
}

pub struct Puller {
    client: Client,
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

/// File name for a reference in `refs/`.
pub fn ref_file_name(reference: &str) -> String {
    reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Puller {
    pub fn new(images_dir: &Path, insecure: Vec<String>) -> Puller {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure),
            ..ClientConfig::default()
        };
        Puller {
            client: Client::new(config),
            dir: images_dir.to_path_buf(),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `image` available locally, pulling it unless `policy` allows a cached copy.
    /// The error is the message reported with `ErrImagePull`.
    pub async fn ensure(&self, image: &str, policy: &str) -> Result<Pulled, String> {
        let start = Instant::now();
        let reference = Reference::from_str(image)
            .map_err(|e| format!("couldn't parse image name \"{image}\": {e}"))?;
        let lock = {
            let mut locks = self.locks.lock().await;
            locks.entry(reference.whole()).or_default().clone()
        };
        let _g = lock.lock().await;
        let refs = self.dir.join("refs");
        let ref_file = refs.join(ref_file_name(&reference.whole()));
        let repo = format!(
            "{}/{}",
            reference.resolve_registry(),
            reference.repository()
        );
        if policy != "Always"
            && let Ok(d) = std::fs::read_to_string(&ref_file)
        {
            let rootfs = self.dir.join("rootfs").join(hex_of(d.trim()));
            if rootfs.is_dir() {
                return Ok(Pulled {
                    rootfs,
                    image_id: format!("{repo}@{}", d.trim()),
                    cached: true,
                    took: start.elapsed(),
                });
            }
        }
        if policy == "Never" {
            return Err(format!(
                "Container image \"{image}\" is not present with pull policy of Never"
            ));
        }
        let fail =
            |e: &dyn std::fmt::Display| format!("failed to pull and unpack image \"{image}\": {e}");
        let (manifest, digest) = self
            .client
            .pull_image_manifest(&reference, &RegistryAuth::Anonymous)
            .await
            .map_err(|e| fail(&e))?;
        let rootfs = self.dir.join("rootfs").join(hex_of(&digest));
        if !rootfs.is_dir() {
            let blobs = self.dir.join("blobs").join("sha256");
            std::fs::create_dir_all(&blobs).map_err(|e| fail(&e))?;
            let mut layer_files = Vec::new();
            for layer in &manifest.layers {
                let path = blobs.join(hex_of(&layer.digest));
                if !path.exists() {
                    let tmp = blobs.join(format!(".{}.partial", hex_of(&layer.digest)));
                    let f = tokio::fs::File::create(&tmp).await.map_err(|e| fail(&e))?;
                    self.client
                        .pull_blob(&reference, layer, f)
                        .await
                        .map_err(|e| fail(&e))?;
                    tokio::fs::rename(&tmp, &path).await.map_err(|e| fail(&e))?;
                }
                layer_files.push((path, layer.media_type.clone()));
            }
            let tmp_root = self
                .dir
                .join("rootfs")
                .join(format!(".{}.partial", hex_of(&digest)));
            let final_root = rootfs.clone();
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                let _ = std::fs::remove_dir_all(&tmp_root);
                std::fs::create_dir_all(&tmp_root).map_err(|e| e.to_string())?;
                for (path, media_type) in &layer_files {
                    extract_layer(path, media_type, &tmp_root)?;
                }
                std::fs::rename(&tmp_root, &final_root).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| fail(&e))?
            .map_err(|e| fail(&e))?;
        }
        std::fs::create_dir_all(&refs).map_err(|e| fail(&e))?;
        std::fs::write(&ref_file, &digest).map_err(|e| fail(&e))?;
        Ok(Pulled {
            rootfs,
            image_id: format!("{repo}@{digest}"),
            cached: false,
            took: start.elapsed(),
        })
    }
}

/// Unpacks one layer (tar, gzip or plain) into `root`, applying whiteouts.
pub fn extract_layer(path: &Path, media_type: &str, root: &Path) -> Result<(), String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = [0u8; 2];
    let gz = {
        let mut f2 = std::fs::File::open(path).map_err(|e| e.to_string())?;
        f2.read_exact(&mut head).is_ok() && head == [0x1f, 0x8b]
    } || media_type.ends_with("gzip");
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let p = entry.path().map_err(|e| e.to_string())?.into_owned();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = root.join(p.parent().unwrap_or(Path::new("")));
            if hidden == ".wh..opq" {
                if let Ok(rd) = std::fs::read_dir(&parent) {
                    for e in rd.flatten() {
                        let _ = std::fs::remove_dir_all(e.path())
                            .or_else(|_| std::fs::remove_file(e.path()));
                    }
                }
            } else {
                let victim = parent.join(hidden);
                let _ = std::fs::remove_dir_all(&victim).or_else(|_| std::fs::remove_file(&victim));
            }
            continue;
        }
        entry
            .unpack_in(root)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_with_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let mk = |name: &str, files: &[(&str, &[u8])]| -> PathBuf {
            let p = d.path().join(name);
            let f = std::fs::File::create(&p).unwrap();
            let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            let mut b = tar::Builder::new(gz);
            for (path, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, path, *data).unwrap();
            }
            b.into_inner().unwrap().finish().unwrap();
            p
        };
        let l1 = mk("l1", &[("disk/a.img", b"A"), ("disk/b.img", b"B")]);
        let l2 = mk("l2", &[("disk/.wh.a.img", b""), ("disk/c.img", b"C")]);
        let root = d.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        extract_layer(&l1, "application/vnd.oci.image.layer.v1.tar+gzip", &root).unwrap();
        extract_layer(&l2, "application/vnd.oci.image.layer.v1.tar+gzip", &root).unwrap();
        assert!(!root.join("disk/a.img").exists());
        assert_eq!(std::fs::read(root.join("disk/b.img")).unwrap(), b"B");
        assert_eq!(std::fs::read(root.join("disk/c.img")).unwrap(), b"C");
        assert_eq!(
            ref_file_name("127.0.0.1:5000/a/b:latest"),
            "127.0.0.1_5000_a_b_latest"
        );
    }
}
