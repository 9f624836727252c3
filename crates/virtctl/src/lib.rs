//! `virtctl`: KubeVirt's command-line client. The pure parts (targets and ports, lifecycle
//! request bodies, ssh/scp argument vectors, `create vm` manifests, `expose` Services) are
//! separate from the I/O (API calls through kube, websocket streams, the terminal).

pub mod console;
pub mod createtype;
pub mod createvm;
pub mod credentials;
pub mod expose;
pub mod lifecycle;
pub mod portforward;
pub mod ssh;
pub mod stream;
pub mod target;
pub mod term;
pub mod vnc;

/// The name under which kubectl finds us as a plugin (`kubectl virt ...`).
pub const PLUGIN_NAME: &str = "kubectl-virt";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wrong arguments: printed as they are.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Makes `kubectl virt` work: a `kubectl-virt` symlink to `exe` in `dir` (kubectl finds
/// plugins by that name on PATH). An existing link to the same binary is fine.
pub fn install_plugin(
    exe: &std::path::Path,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf, Error> {
    let link = dir.join(PLUGIN_NAME);
    match std::fs::read_link(&link) {
        Ok(existing) if existing == exe => return Ok(link),
        Ok(_) => std::fs::remove_file(&link)?,
        Err(_) if link.exists() => {
            return Err(Error::Other(format!(
                "{} exists and is not a symlink; not replacing it",
                link.display()
            )));
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(exe, &link)?;
    Ok(link)
}

/// How the binary was invoked: `kubectl virt` when run under the plugin name.
pub fn program_name(argv0: &str) -> &'static str {
    let base = std::path::Path::new(argv0)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("virtctl");
    if base == PLUGIN_NAME {
        "kubectl virt"
    } else {
        "virtctl"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_links() {
        assert_eq!(program_name("/usr/local/bin/kubectl-virt"), "kubectl virt");
        assert_eq!(program_name("virtctl"), "virtctl");
        let dir = tempfile_dir();
        let exe = dir.join("virtctl");
        std::fs::write(&exe, b"").expect("write");
        let link = install_plugin(&exe, &dir).expect("link");
        assert_eq!(std::fs::read_link(&link).expect("is a link"), exe);
        install_plugin(&exe, &dir).expect("idempotent");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("virtctl-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
