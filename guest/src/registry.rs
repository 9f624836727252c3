use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::util::{free_loopback_port, run, tail};

/// A private `docker-registry` (Debian's CNCF distribution) on a free 127.0.0.1 port with its
/// storage in a temporary dir. Dropping it kills the registry and removes the storage.
/// (`scripts/registry` runs the long-lived one on 127.0.0.1:5000 for the demo.)
#[derive(Debug)]
pub struct Registry {
    child: Option<Child>,
    addr: String,
    dir: TempDir,
}

impl Registry {
    /// Starts it and waits until `GET /v2/` answers.
    pub fn start() -> Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start()? {
                Ok(r) => return Ok(r),
                Err(log) => last = Some(log),
            }
        }
        bail!(
            "docker-registry did not come up in 5 tries: {}",
            last.unwrap_or_default()
        )
    }

    /// Ok(Err(log)) when the port was lost to someone else (try again).
    fn try_start() -> Result<std::result::Result<Self, String>> {
        let dir = tempfile::Builder::new()
            .prefix("kubevirt-rs-registry-")
            .tempdir()?;
        let port = free_loopback_port()?;
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("storage").display()
            ),
        )?;
        let log = fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (package docker-registry)")?;
        let mut reg = Registry {
            child: Some(child),
            addr,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = reg.http("GET", "/v2/", &[]) {
                return Ok(Ok(reg));
            }
            let exited = reg
                .child
                .as_mut()
                .map(|c| c.try_wait())
                .transpose()?
                .flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let log = tail(
                    &fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default(),
                    10,
                );
                reg.kill();
                if log.contains("address already in use") {
                    return Ok(Err(log));
                }
                bail!("docker-registry on {} did not answer: {log}", reg.addr);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A plain HTTP/1.0 request to the registry: (status, headers and body as text).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr)
            .with_context(|| format!("connecting to {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad HTTP response from {}: {}", self.addr, tail(&text, 5)))?;
        Ok((status, text))
    }

    /// The digest the registry reports (`Docker-Content-Digest`) for `repository:tag`'s OCI
    /// manifest.
    pub fn manifest_digest(&self, repository: &str, tag: &str) -> Result<String> {
        let (status, text) = self.http(
            "HEAD",
            &format!("/v2/{repository}/manifests/{tag}"),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        )?;
        if status != 200 {
            bail!("HEAD {repository}:{tag} on {}: HTTP {status}", self.addr);
        }
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_string())
            })
            .ok_or_else(|| anyhow!("no Docker-Content-Digest for {repository}:{tag}"))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `registry/repository:tag` (plain HTTP) into an OCI image layout at `dest` with skopeo,
/// keeping the digests.
pub fn pull_oci_layout(registry: &str, repository: &str, tag: &str, dest: &Path) -> Result<()> {
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--preserve-digests",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{registry}/{repository}:{tag}"))
        .arg(format!("oci:{}:{tag}", dest.display())))
    .context("skopeo copy (package skopeo)")?;
    Ok(())
}
