use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::run;

/// An ed25519 key pair without a passphrase, made with `ssh-keygen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// The private key file (mode 0600).
    pub private: PathBuf,
    /// The public key, one line (`ssh-ed25519 AAAA... comment`), for `ssh_authorized_keys`.
    pub public: String,
}

impl SshKey {
    /// Makes `dir/id_ed25519` and `dir/id_ed25519.pub`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let private = dir.join("id_ed25519");
        run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "kubevirt-rs-test",
                "-f",
            ])
            .arg(&private))
        .context("ssh-keygen (package openssh-client)")?;
        let public = fs::read_to_string(private.with_extension("pub"))?
            .trim()
            .to_string();
        Ok(SshKey { private, public })
    }
}

/// What ssh and scp are run with: no user config, batch mode, no host key checks (every guest
/// is new), only the given key.
const CLIENT_OPTIONS: [&str; 14] = [
    "-F",
    "/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "IdentitiesOnly=yes",
];

/// Runs `command` as `user` on 127.0.0.1:`port` with OpenSSH's client and this key (batch mode,
/// no host key checks: every guest is new). The output, whatever the exit status.
pub fn ssh(port: u16, key: &SshKey, user: &str, command: &str) -> Result<Output> {
    Command::new("ssh")
        .args(CLIENT_OPTIONS)
        .arg("-i")
        .arg(&key.private)
        .args([
            "-p",
            &port.to_string(),
            &format!("{user}@127.0.0.1"),
            command,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running ssh (package openssh-client)")
}

/// Copies `local` to `remote` on 127.0.0.1:`port` with OpenSSH's scp (which speaks SFTP, so the
/// guest's sftp server is what is exercised), with the same options as [`ssh`].
pub fn scp_to(port: u16, key: &SshKey, user: &str, local: &Path, remote: &str) -> Result<Output> {
    Command::new("scp")
        .args(CLIENT_OPTIONS)
        .arg("-i")
        .arg(&key.private)
        .args(["-P", &port.to_string()])
        .arg(local)
        .arg(format!("{user}@127.0.0.1:{remote}"))
        .stdin(std::process::Stdio::null())
        .output()
        .context("running scp (package openssh-client)")
}

/// [`ssh`], retried while ssh itself fails (exit status 255: the guest's SSH server not listening
/// yet, or the key not installed yet) for at most `timeout`. The output if the command exits 0,
/// else an error with what it printed.
pub fn ssh_until_ok(
    port: u16,
    key: &SshKey,
    user: &str,
    command: &str,
    timeout: Duration,
) -> Result<Output> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = ssh(port, key, user, command)?;
        if out.status.success() {
            return Ok(out);
        }
        if out.status.code() != Some(255) || Instant::now() >= deadline {
            bail!(
                "ssh {user}@127.0.0.1:{port} {command:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
