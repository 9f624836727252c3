//! `virt-cluster supervise`: the background process `up` leaves behind. It starts the plan's
//! components in order (waiting at their gates), restarts crashed ones with back-off, records
//! pids in `DATA/run/`, and on SIGTERM stops the cluster: VMs first, then the components in
//! reverse order, then each node's namespaces and mounts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::kubeio;
use crate::plan::{self, ClusterConfig, Component, Gate, Program};
use crate::state::{self, State};

struct Running {
    child: Child,
    started: Instant,
}

struct Supervisor {
    cfg: ClusterConfig,
    self_exe: PathBuf,
    comps: Vec<Component>,
    children: HashMap<String, Running>,
    /// Crashes in a row per component (reset after a long enough run), for the back-off.
    crashes: HashMap<String, u32>,
    /// When a crashed component is due to start again.
    due: HashMap<String, Instant>,
    state: State,
}

impl Supervisor {
    fn save(&self) {
        let run = self.cfg.run_dir();
        match serde_json::to_vec_pretty(&self.state) {
            Ok(body) => {
                if let Err(e) = state::write_atomic(&state::state_path(&run), &body) {
                    tracing::warn!(error = %e, "writing state.json");
                }
            }
            Err(e) => tracing::warn!(error = %e, "encoding state.json"),
        }
    }

    fn phase(&mut self, phase: impl Into<String>) {
        self.state.phase = phase.into();
        tracing::info!(phase = %self.state.phase, "cluster");
        self.save();
    }

    fn program(&self, c: &Component) -> PathBuf {
        match c.program {
            Program::SelfExe => self.self_exe.clone(),
            Program::Sibling(name) => self.cfg.bin_dir.join(name),
        }
    }

    fn spawn(&mut self, c: &Component) -> anyhow::Result<()> {
        let log_path = self.cfg.log_dir().join(format!("{}.log", c.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let err = log.try_clone().context("log file handle")?;
        if c.gate == Gate::VirtApi {
            // Its CA is written anew by each start: wait for this start's.
            let _ = std::fs::remove_file(self.cfg.virt_api_dir().join("ca.crt"));
        }
        let program = self.program(c);
        let mut cmd = Command::new(&program);
        cmd.args(&c.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(false);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", c.name, program.display()))?;
        let pid = child.id().unwrap_or(0);
        let run = self.cfg.run_dir();
        if let Err(e) = state::write_pid_file(&state::pid_path(&run, &c.name), pid) {
            tracing::warn!(component = %c.name, error = %e, "writing the pid file");
        }
        tracing::info!(component = %c.name, pid, "started");
        let p = self.state.process_mut(&c.name);
        p.pid = Some(pid);
        p.running = true;
        self.children.insert(
            c.name.clone(),
            Running {
                child,
                started: Instant::now(),
            },
        );
        self.save();
        Ok(())
    }

    /// What must hold after `c` started before the cluster goes on.
    async fn gate(&mut self, c: &Component) -> anyhow::Result<()> {
        match c.gate {
            Gate::None => Ok(()),
            Gate::ApiServer => {
                let kubeconfig = self.cfg.admin_kubeconfig();
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    if kubeconfig.exists()
                        && let Ok(client) = kubeio::client(&kubeconfig).await
                        && kubeio::api_ready(&client).await
                    {
                        self.node_kubeconfigs()?;
                        let first = self.cfg.node_names().into_iter().next().unwrap_or_default();
                        let mut tries = 0;
                        loop {
                            match kubeio::apply_base(&client, &first).await {
                                Ok(()) => return Ok(()),
                                Err(e) if tries < 10 => {
                                    tries += 1;
                                    tracing::warn!(error = %format!("{e:#}"), "applying CRDs, retrying");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    if !self.alive(&c.name) {
                        anyhow::bail!("the API server exited; see {}", self.log(&c.name));
                    }
                    if Instant::now() > deadline {
                        anyhow::bail!("the API server did not answer within 120 s");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Gate::VirtApi => {
                let dir = self.cfg.virt_api_dir();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !dir.join("ca.crt").exists() {
                    if !self.alive(&c.name) || Instant::now() > deadline {
                        anyhow::bail!("virt-api did not start; see {}", self.log(&c.name));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let client = kubeio::client(&self.cfg.admin_kubeconfig()).await?;
                let mut tries = 0;
                loop {
                    match kubeio::apply_virt_api(&client, &dir, self.cfg.virt_api_port).await {
                        Ok(()) => return Ok(()),
                        Err(e) if tries < 20 => {
                            tries += 1;
                            tracing::warn!(error = %format!("{e:#}"), "registering virt-api, retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    fn log(&self, name: &str) -> String {
        self.cfg
            .log_dir()
            .join(format!("{name}.log"))
            .display()
            .to_string()
    }

    fn alive(&mut self, name: &str) -> bool {
        self.children
            .get_mut(name)
            .is_some_and(|r| matches!(r.child.try_wait(), Ok(None)))
    }

    /// Each kubelet's `system:node:<node>` identity, signed by the cluster CA the API server
    /// made.
    fn node_kubeconfigs(&self) -> anyhow::Result<()> {
        let pki = kubevirt_embedded_apiserver::tls::Pki::new(&self.cfg.data_dir);
        for node in self.cfg.node_names() {
            let user = format!("system:node:{node}");
            let kc = pki.client_kubeconfig(
                &self.cfg.server_url(),
                &format!("node-{node}"),
                &user,
                &["system:nodes"],
            )?;
            kubevirt_embedded_apiserver::tls::write_private(
                &self.cfg.node_kubeconfig(&node),
                kc.as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Notices exits and restarts what is due.
    async fn tick(&mut self) {
        let now = Instant::now();
        let mut exited = Vec::new();
        for (name, r) in self.children.iter_mut() {
            if let Ok(Some(status)) = r.child.try_wait() {
                exited.push((name.clone(), status, r.started.elapsed()));
            }
        }
        for (name, status, ran) in exited {
            self.children.remove(&name);
            let crashes = self.crashes.entry(name.clone()).or_insert(0);
            *crashes = if ran >= plan::RESET_AFTER {
                1
            } else {
                *crashes + 1
            };
            let delay = plan::backoff(*crashes);
            tracing::warn!(component = %name, %status, restart_in = ?delay, "exited");
            let p = self.state.process_mut(&name);
            p.running = false;
            p.last_exit = Some(status.to_string());
            self.due.insert(name, now + delay);
            self.save();
        }
        let due: Vec<String> = self
            .due
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.due.remove(&name);
            let Some(c) = self.comps.iter().find(|c| c.name == name).cloned() else {
                continue;
            };
            self.state.process_mut(&name).restarts += 1;
            if let Err(e) = self.spawn(&c) {
                tracing::error!(component = %name, error = %format!("{e:#}"), "restart failed");
                let n = *self.crashes.entry(name.clone()).or_insert(1) + 1;
                self.crashes.insert(name.clone(), n);
                self.due.insert(name, Instant::now() + plan::backoff(n));
                continue;
            }
            if let Err(e) = self.gate(&c).await {
                // Not wired in (e.g. virt-api's new CA not registered): start it over, with
                // back-off, rather than leave it running unreachable.
                tracing::error!(component = %name, error = %format!("{e:#}"), "after restart, killing it to try again");
                if let Some(r) = self.children.get_mut(&name) {
                    let _ = r.child.start_kill();
                }
            }
        }
    }

    async fn stop(&mut self, name: &str, grace: u64) {
        let Some(mut r) = self.children.remove(name) else {
            return;
        };
        if let Some(pid) = r.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let status = match tokio::time::timeout(Duration::from_secs(grace), r.child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                tracing::warn!(component = %name, "did not stop in time, killing");
                let _ = r.child.kill().await;
                r.child.wait().await.ok()
            }
        };
        let p = self.state.process_mut(name);
        p.running = false;
        p.last_exit = status.map(|s| s.to_string());
        let _ = std::fs::remove_file(state::pid_path(&self.cfg.run_dir(), name));
        tracing::info!(component = %name, "stopped");
        self.save();
    }

    /// Stops VMs gracefully: virt-controller first (so nothing is recreated), then every VMI is
    /// deleted (virt-handler shuts its guest down); VMIs whose launcher is gone are released.
    async fn stop_vms(&mut self, timeout: Duration) {
        if let Some(c) = self
            .comps
            .iter()
            .find(|c| c.name == "virt-controller")
            .cloned()
        {
            self.phase("stopping: virt-controller");
            self.stop(&c.name, c.stop_grace).await;
        }
        let Ok(client) = kubeio::client(&self.cfg.admin_kubeconfig()).await else {
            return;
        };
        if !kubeio::api_ready(&client).await {
            return;
        }
        let Ok(vmis) = kubeio::vmis(&client).await else {
            return;
        };
        if vmis.is_empty() {
            return;
        }
        self.phase(format!("stopping: {} VMs", vmis.len()));
        for (ns, name, _) in &vmis {
            if let Err(e) = kubeio::delete_vmi(&client, ns, name).await {
                tracing::warn!(namespace = %ns, name = %name, error = %format!("{e:#}"), "deleting the VMI");
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = kubeio::vmis(&client).await.unwrap_or_default();
            if left.is_empty() {
                break;
            }
            let late = Instant::now() > deadline;
            for (ns, name, phase) in &left {
                // Nothing removes the finalizers without virt-controller: release the VMIs
                // with no guest left to shut down (or all of them once out of time).
                if late || !plan::guest_may_run(phase) {
                    if late && plan::guest_may_run(phase) {
                        tracing::warn!(namespace = %ns, name = %name, "VMI still running when the VM timeout ran out; released");
                    }
                    let _ = kubeio::release_vmi(&client, ns, name).await;
                }
            }
            if Instant::now() > deadline + Duration::from_secs(10) {
                break;
            }
            self.phase(format!("stopping: {} VMs left", left.len()));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Let the kubelets finish the launcher pods the garbage collector deletes.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && !kubeio::launcher_pods(&client)
                .await
                .unwrap_or_default()
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn shutdown(&mut self, vm_timeout: Duration) {
        self.due.clear();
        self.stop_vms(vm_timeout).await;
        let comps: Vec<Component> = self.comps.iter().rev().cloned().collect();
        for c in &comps {
            self.phase(format!("stopping: {}", c.name));
            self.stop(&c.name, c.stop_grace).await;
        }
        self.phase("stopping: node namespaces");
        teardown_nodes(&self.cfg, &self.self_exe).await;
        self.phase("stopped");
    }
}

/// Runs `virt-cluster kubelet --teardown` for every node: kills pods left over, removes the
/// node's network namespaces (the fabric with the last one), cgroups and mounts.
pub async fn teardown_nodes(cfg: &ClusterConfig, self_exe: &Path) {
    for (i, node) in cfg.node_names().iter().enumerate() {
        let out = Command::new(self_exe)
            .args(plan::teardown_args(cfg, node, i))
            .stdin(Stdio::null())
            .output();
        match tokio::time::timeout(Duration::from_secs(60), out).await {
            Ok(Ok(o)) if o.status.success() => {}
            Ok(Ok(o)) => tracing::warn!(
                node = %node,
                stderr = %String::from_utf8_lossy(&o.stderr),
                "node teardown failed"
            ),
            Ok(Err(e)) => tracing::warn!(node = %node, error = %e, "node teardown"),
            Err(_) => tracing::warn!(node = %node, "node teardown timed out"),
        }
    }
}

/// Entry point of `virt-cluster supervise` (started by `up`, detached).
pub async fn run(
    cfg: ClusterConfig,
    self_exe: PathBuf,
    vm_timeout: Duration,
) -> anyhow::Result<()> {
    // Our own session: a terminal closing behind `up` must not reach us.
    let _ = nix::unistd::setsid();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("SIGHUP handler")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("SIGINT handler")?;
    let run = cfg.run_dir();
    std::fs::create_dir_all(&run).context("creating DATA/run")?;
    std::fs::create_dir_all(cfg.log_dir()).context("creating DATA/logs")?;
    state::write_pid_file(&run.join("supervisor.pid"), std::process::id())
        .context("writing supervisor.pid")?;
    let comps = plan::plan(&cfg);
    let mut sup = Supervisor {
        state: State {
            supervisor_pid: std::process::id(),
            phase: "starting".into(),
            processes: comps
                .iter()
                .map(|c| state::ProcessState {
                    name: c.name.clone(),
                    ..Default::default()
                })
                .collect(),
        },
        cfg,
        self_exe,
        comps,
        children: HashMap::new(),
        crashes: HashMap::new(),
        due: HashMap::new(),
    };
    sup.save();
    let mut failed = None;
    let comps = sup.comps.clone();
    for c in &comps {
        sup.phase(format!("starting: {}", c.name));
        let started = sup.spawn(c);
        let gated = match started {
            Ok(()) => {
                tokio::select! {
                    r = sup.gate(c) => r,
                    _ = term.recv() => Err(anyhow::anyhow!("stopped while starting")),
                    _ = int.recv() => Err(anyhow::anyhow!("stopped while starting")),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = gated {
            failed = Some(format!("{e:#}"));
            break;
        }
    }
    if let Some(why) = failed {
        tracing::error!(error = %why, "cluster start failed, stopping");
        sup.shutdown(vm_timeout).await;
        sup.phase(format!("failed: {why}"));
        let _ = std::fs::remove_file(run.join("supervisor.pid"));
        anyhow::bail!(why);
    }
    if let Ok(client) = kubeio::client(&sup.cfg.admin_kubeconfig()).await
        && let Err(e) = kubeio::kubevirt_deployed(&client).await
    {
        tracing::warn!(error = %format!("{e:#}"), "the KubeVirt resource");
    }
    sup.phase("running");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => sup.tick().await,
            _ = hup.recv() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    sup.shutdown(vm_timeout).await;
    let _ = std::fs::remove_file(run.join("supervisor.pid"));
    Ok(())
}
