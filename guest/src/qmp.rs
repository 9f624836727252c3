use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// A QEMU Machine Protocol client on a unix socket (synchronous, one command at a time).
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events received while waiting for command replies, oldest first.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (retrying until `timeout` while QEMU creates the socket), reads the greeting and
    /// negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP at {}", path.display()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("unexpected QMP greeting: {greeting}");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        if n == 0 {
            bail!("QMP connection closed");
        }
        serde_json::from_str(&line).with_context(|| format!("QMP sent invalid JSON: {line}"))
    }

    /// Runs a command; its `return` value, or an error with QEMU's `error.desc`.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut bytes = serde_json::to_vec(&msg)?;
        bytes.push(b'\n');
        self.writer.write_all(&bytes).context("writing to QMP")?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(anyhow!(
                    "QMP {command}: {}",
                    err.get("desc").and_then(Value::as_str).unwrap_or("error")
                ));
            }
            bail!("unexpected QMP reply to {command}: {reply}");
        }
    }
}
