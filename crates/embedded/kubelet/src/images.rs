//! Which program an image runs. An image maps to a local program by the last path element of its
//! repository (`quay.io/kubevirt/virt-launcher:v1.5.0` → `virt-launcher`); an image the table
//! does not know is a *data container*: it is pulled and its filesystem becomes the root of a
//! placeholder process (see the README's architecture contracts).
//!
//! | repository's last element | program |
//! | --- | --- |
//! | `virt-launcher` | `virt-launcher` from the bin dir |
//! | `testprog` | `kvrs-testprog` from the bin dir |
//! | anything given with `--image-program NAME=PATH` | `PATH` |

use std::path::{Path, PathBuf};

/// What an image reference runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// A local program.
    Program(PathBuf),
    /// Not a program: pulled and exposed as a filesystem.
    Data,
}

/// The repository's last path element of an image reference, without tag or digest.
pub fn repository_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The image → program table.
#[derive(Clone, Debug, Default)]
pub struct ImageTable {
    entries: Vec<(String, PathBuf)>,
}

impl ImageTable {
    /// The built-in entries, with programs found in `bin_dir`.
    pub fn with_defaults(bin_dir: &Path) -> ImageTable {
        ImageTable {
            entries: vec![
                ("virt-launcher".into(), bin_dir.join("virt-launcher")),
                ("testprog".into(), bin_dir.join("kvrs-testprog")),
            ],
        }
    }

    /// Adds (or replaces) an entry.
    pub fn insert(&mut self, name: &str, program: PathBuf) {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_string(), program));
    }

    /// Parses `NAME=PATH`.
    pub fn insert_spec(&mut self, spec: &str) -> Option<()> {
        let (name, path) = spec.split_once('=')?;
        if name.is_empty() || path.is_empty() {
            return None;
        }
        self.insert(name, PathBuf::from(path));
        Some(())
    }

    pub fn lookup(&self, image: &str) -> ImageKind {
        let name = repository_name(image);
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| ImageKind::Program(p.clone()))
            .unwrap_or(ImageKind::Data)
    }
}

/// The program's arguments for a container: `command[0]` names the entrypoint inside the image
/// and is replaced by the mapped program; the rest of `command`, then `args`, follow.
pub fn program_args(command: Option<&[String]>, args: Option<&[String]>) -> Vec<String> {
    let mut out: Vec<String> = command
        .map(|c| c.iter().skip(1).cloned().collect())
        .unwrap_or_default();
    out.extend(args.unwrap_or(&[]).iter().cloned());
    out
}

/// Expands `$(VAR)` references in an argument from the container's environment, as Kubernetes
/// does for command, args and env values; `$$` escapes a `$`; unknown references stay as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_last_path_element() {
        let t = ImageTable::with_defaults(Path::new("/bin"));
        assert_eq!(
            t.lookup("quay.io/kubevirt/virt-launcher:v1.5.0"),
            ImageKind::Program("/bin/virt-launcher".into())
        );
        assert_eq!(
            t.lookup("kubevirt-rs/testprog:latest"),
            ImageKind::Program("/bin/kvrs-testprog".into())
        );
        assert_eq!(
            t.lookup("127.0.0.1:5000/kubevirt-rs/guest:latest"),
            ImageKind::Data
        );
        assert_eq!(repository_name("127.0.0.1:5000/a/b@sha256:00"), "b");
        assert_eq!(repository_name("busybox"), "busybox");
        let mut t = t;
        assert!(t.insert_spec("guest=/usr/bin/true").is_some());
        assert!(t.insert_spec("nope").is_none());
        assert_eq!(
            t.lookup("x/guest"),
            ImageKind::Program("/usr/bin/true".into())
        );
    }

    #[test]
    fn args_and_expansion() {
        let cmd = vec!["/usr/bin/virt-launcher".to_string(), "--a".to_string()];
        let args = vec!["b".to_string()];
        assert_eq!(program_args(Some(&cmd), Some(&args)), vec!["--a", "b"]);
        assert_eq!(program_args(None, Some(&args)), vec!["b"]);
        let env = vec![("POD".to_string(), "p1".to_string())];
        assert_eq!(
            expand("x=$(POD) $(NONE) $$(POD) $", &env),
            "x=p1 $(NONE) $(POD) $"
        );
    }
}
