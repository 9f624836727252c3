//! exec, HTTP and TCP probes. HTTP and TCP probes connect from inside the pod's network
//! namespace (a short-lived thread that enters it), so they reach the pod IP as upstream's
//! kubelet does from the node; exec probes run the command in the container's namespaces with
//! `nsenter`, with the container's environment.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Probe timing and thresholds with Kubernetes' defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: i32,
    pub failure_threshold: i32,
}

pub fn timing(p: &Probe) -> Timing {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.unwrap_or(1).max(1),
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1),
    }
}

/// Running state of one probe of one container.
#[derive(Clone, Debug)]
pub struct State {
    pub next: Instant,
    pub successes: i32,
    pub failures: i32,
}

impl State {
    pub fn new(started: Instant, t: &Timing) -> State {
        State {
            next: started + t.initial_delay,
            successes: 0,
            failures: 0,
        }
    }

    /// Records an outcome; returns `Some(true)` when the success threshold is reached,
    /// `Some(false)` when the failure threshold is, `None` otherwise.
    pub fn record(&mut self, o: &Outcome, t: &Timing, now: Instant) -> Option<bool> {
        self.next = now + t.period;
        match o {
            Outcome::Success => {
                self.failures = 0;
                self.successes += 1;
                (self.successes >= t.success_threshold).then_some(true)
            }
            Outcome::Failure(_) => {
                self.successes = 0;
                self.failures += 1;
                (self.failures >= t.failure_threshold).then_some(false)
            }
        }
    }
}

/// Resolves a probe port (number or the name of a container port).
pub fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(s) => s.parse().ok().or_else(|| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

fn in_netns<T: Send + 'static>(
    netns: PathBuf,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || -> Result<T, String> {
        let file = std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns: {e}"))?;
        Ok(f())
    })
    .join()
    .map_err(|_| "probe thread panicked".to_string())?
}

fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failure(format!("Get \"http://{addr}{path}\": dial tcp {addr}: {e}"));
        }
    };
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(10));
    let _ = s.set_read_timeout(Some(left));
    let _ = s.set_write_timeout(Some(left));
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        return Outcome::Failure(format!("Get \"http://{addr}{path}\": {e}"));
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.contains(&b'\n') && got.len() < 64 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                return Outcome::Failure(format!(
                    "Get \"http://{addr}{path}\": context deadline exceeded ({e})"
                ));
            }
        }
    }
    let line = String::from_utf8_lossy(&got);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..400).contains(&code) {
        Outcome::Success
    } else {
        Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Runs one probe of container `c` (main pid `pid`) in the pod whose network namespace is
/// `netns` and address `pod_ip`.
pub async fn run(probe: &Probe, c: &Container, pid: i32, netns: PathBuf, pod_ip: &str) -> Outcome {
    let t = timing(probe);
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        if cmd.is_empty() {
            return Outcome::Failure("exec probe without a command".into());
        }
        let env: Vec<(String, String)> = std::fs::read(format!("/proc/{pid}/environ"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter_map(|kv| {
                        let s = String::from_utf8_lossy(kv);
                        s.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let child = tokio::process::Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-u", "-n", "-r", "-w", "--"])
            .args(&cmd)
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        return match tokio::time::timeout(t.timeout, child).await {
            Err(_) => Outcome::Failure(format!("command {cmd:?} timed out")),
            Ok(Err(e)) => Outcome::Failure(e.to_string()),
            Ok(Ok(out)) if out.status.success() => Outcome::Success,
            Ok(Ok(out)) => Outcome::Failure(
                String::from_utf8_lossy(&[out.stdout, out.stderr].concat())
                    .trim()
                    .to_string(),
            ),
        };
    }
    let ip: std::net::IpAddr = match pod_ip.parse() {
        Ok(ip) => ip,
        Err(_) => return Outcome::Failure("the pod has no address".into()),
    };
    if let Some(h) = &probe.http_get {
        let Some(port) = resolve_port(&h.port, c) else {
            return Outcome::Failure(format!("unknown port {:?}", h.port));
        };
        let host = h.host.clone().unwrap_or_else(|| ip.to_string());
        let addr = SocketAddr::new(host.parse().unwrap_or(ip), port);
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        let timeout = t.timeout;
        let fut = tokio::task::spawn_blocking(move || {
            in_netns(netns, move || {
                http_get(addr, &host, &path, &headers, timeout)
            })
        });
        return match fut.await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::Failure(e),
            Err(e) => Outcome::Failure(e.to_string()),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, c) else {
            return Outcome::Failure(format!("unknown port {:?}", tcp.port));
        };
        let addr = SocketAddr::new(ip, port);
        let timeout = t.timeout;
        let fut = tokio::task::spawn_blocking(move || {
            in_netns(netns, move || {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(_) => Outcome::Success,
                    Err(e) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
                }
            })
        });
        return match fut.await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::Failure(e),
            Err(e) => Outcome::Failure(e.to_string()),
        };
    }
    Outcome::Failure("probe has no handler (grpc probes are not supported)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds() {
        let p: Probe =
            serde_json::from_value(json!({"periodSeconds": 2, "failureThreshold": 2})).unwrap();
        let t = timing(&p);
        let now = Instant::now();
        let mut s = State::new(now, &t);
        assert_eq!(s.record(&Outcome::Failure("x".into()), &t, now), None);
        assert_eq!(
            s.record(&Outcome::Failure("x".into()), &t, now),
            Some(false)
        );
        assert_eq!(s.record(&Outcome::Success, &t, now), Some(true));
        assert_eq!(s.next, now + Duration::from_secs(2));
    }

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(
            json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap();
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Some(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Some(80));
        assert_eq!(resolve_port(&IntOrString::String("nope".into()), &c), None);
    }
}
