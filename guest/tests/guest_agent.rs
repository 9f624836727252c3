//! The guest agent: with the virtio-serial port KubeVirt adds (org.qemu.guest_agent.0), qemu-ga
//! starts at boot and answers over the port: the OS from /etc/os-release, the disk's file
//! system on its virtio bus, the users list; ssh keys and a password as KubeVirt's
//! qemuGuestAgent access credentials set them; and its guest-shutdown powers the guest off
//! through the /sbin/shutdown script.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use common::{BOOT_TIMEOUT, image};
use kubevirt_rs_guest::VmBuilder;
use serde_json::{Value, json};

/// A QGA client on the chardev socket: one JSON command a line, one reply a line.
struct Agent {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Agent {
    fn connect(path: &std::path::Path) -> Result<Agent> {
        let stream = UnixStream::connect(path).with_context(|| format!("{}", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Agent { stream, reader })
    }

    fn send(&mut self, cmd: &Value) -> Result<()> {
        self.stream.write_all(format!("{cmd}\n").as_bytes())?;
        Ok(())
    }

    fn reply(&mut self) -> Result<Value> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        serde_json::from_str(line.trim_start_matches('\u{ff}'))
            .with_context(|| format!("agent reply {line:?}"))
    }

    /// Waits until the agent answers a guest-sync with `id` (stale replies skipped): the
    /// agent may start after the port exists, and QEMU keeps what was written before.
    fn sync(&mut self, id: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.send(&json!({"execute": "guest-sync", "arguments": {"id": id}}))?;
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                match self.reply() {
                    Ok(v) if v["return"] == json!(id) => return Ok(()),
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            if Instant::now() > deadline {
                return Err(anyhow!("the guest agent did not answer guest-sync"));
            }
        }
    }

    fn call(&mut self, cmd: &str) -> Result<Value> {
        self.call_with(cmd, json!({}))
    }

    fn call_with(&mut self, cmd: &str, arguments: Value) -> Result<Value> {
        self.send(&json!({"execute": cmd, "arguments": arguments}))?;
        let v = self.reply()?;
        v.get("return")
            .cloned()
            .ok_or_else(|| anyhow!("{cmd}: {v}"))
    }
}

#[test]
fn guest_agent_answers_on_its_port_and_shuts_the_guest_down() -> Result<()> {
    let image = image();
    let work = tempfile::tempdir()?;
    let vm_dir = work.path().join("vm");
    std::fs::create_dir_all(&vm_dir)?;
    let qga = vm_dir.join("qga.sock");
    let mut vm = VmBuilder::disk(&image)
        .dir(&vm_dir)
        .arg("-chardev")
        .arg(&format!(
            "socket,id=qga0,path={},server=on,wait=off",
            qga.display()
        ))
        .arg("-device")
        .arg("virtio-serial-pci,id=virtio-serial0")
        .arg("-device")
        .arg("virtserialport,chardev=qga0,name=org.qemu.guest_agent.0")
        .start()?;
    vm.wait_for_console("qemu-ga listening on /dev/vport", BOOT_TIMEOUT)?;
    let mut agent = Agent::connect(&qga)?;
    agent.sync(4242, Duration::from_secs(60))?;

    let info = agent.call("guest-info")?;
    assert!(
        info["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{info}"
    );
    let os = agent.call("guest-get-osinfo")?;
    assert_eq!(os["id"], "kubevirt-rs-guest", "{os}");
    assert_eq!(os["machine"], "x86_64", "{os}");
    // The boot disk's ext4 partition, mounted for the persistent overlay, on its virtio bus.
    let fs = agent.call("guest-get-fsinfo")?;
    let disk = fs
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["type"] == "ext4")
        .ok_or_else(|| anyhow!("no ext4 file system in {fs}"))?;
    assert_eq!(disk["mountpoint"], "/run/disk", "{fs}");
    assert_eq!(disk["disk"][0]["bus-type"], "virtio", "{fs}");
    assert!(disk["total-bytes"].as_u64().unwrap_or(0) > 0, "{fs}");
    assert!(agent.call("guest-get-users")?.is_array());

    // KubeVirt's qemuGuestAgent access credentials: keys into a user's authorized_keys, and a
    // password through the guest's chpasswd that then logs in on the console.
    let key = "ssh-ed25519 AAAA-agent-key test@kvrs";
    agent.call_with(
        "guest-ssh-add-authorized-keys",
        json!({"username": "root", "keys": [key], "reset": true}),
    )?;
    let keys = agent.call_with("guest-ssh-get-authorized-keys", json!({"username": "root"}))?;
    assert_eq!(keys["keys"], json!([key]), "{keys}");
    // "agent-pw-42", base64 as the protocol wants it.
    agent.call_with(
        "guest-set-user-password",
        json!({"username": "root", "password": "YWdlbnQtcHctNDI=", "crypted": false}),
    )?;
    let unknown = agent.call_with(
        "guest-set-user-password",
        json!({"username": "nosuchuser", "password": "eA==", "crypted": false}),
    );
    assert!(unknown.is_err(), "an unknown user is refused: {unknown:?}");
    vm.wait_for_console(" login: ", BOOT_TIMEOUT)?;
    let console = vm.console();
    let mark = console.len();
    console.send("root\n")?;
    console.wait_for_from(mark, "Password: ", Duration::from_secs(30))?;
    console.send("agent-pw-42\n")?;
    console.wait_for_from(mark, ":~# ", Duration::from_secs(30))?;

    // guest-shutdown runs /sbin/shutdown -P; it answers nothing on success.
    agent.send(&json!({"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}}))?;
    vm.console()
        .wait_for("shutdown: poweroff", Duration::from_secs(60))?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    assert!(status.success(), "QEMU exited with {status}");
    Ok(())
}
