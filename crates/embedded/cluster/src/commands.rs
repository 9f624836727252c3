//! `virt-cluster up`, `down` and `status`: the user's side. `up` leaves a detached supervisor
//! (`virt-cluster supervise`) running and reports progress until the cluster is ready; `down`
//! asks the supervisor to stop (SIGTERM) and cleans up after it by pid file if it is gone;
//! `status` reads the supervisor's state and asks the API server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::plan::{self, ClusterConfig};
use crate::ready::{self, STEPS};
use crate::state;
use crate::{kubeio, supervisor};

/// Exit status of `up` when a cluster already runs on the data directory, and of `status`
/// when none runs.
pub const EXIT_ALREADY_RUNNING: i32 = 1;
pub const EXIT_NOT_RUNNING: i32 = 3;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The data directory (store, PKI, kubeconfig, nodes, pid files, logs).
    #[arg(long, default_value = "/var/lib/kubevirt-rs")]
    pub data_dir: PathBuf,
    /// Number of nodes (default: as the last `up` on this data directory, else 1).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// The API server's address; port 0 picks a free one, kept for later `up`s (default: as
    /// the last `up`, else 127.0.0.1:6443).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Node names are PREFIX01, PREFIX02...; the nodes' network namespaces (`kvrs-<node>`) and
    /// the fabric namespace follow, so clusters with different prefixes can run side by side
    /// (default: as the last `up`, else `node`).
    #[arg(long)]
    pub node_prefix: Option<String>,
    /// Where virt-api, virt-controller, virt-handler and virt-launcher are (default: next to
    /// this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Seconds to wait for the cluster to be ready.
    #[arg(long, default_value_t = plan::READY_TIMEOUT.as_secs())]
    pub timeout: u64,
    /// Seconds `down` (or a stop of the supervisor) gives VMs to shut down.
    #[arg(long, default_value_t = 60)]
    pub vm_timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    #[arg(long, default_value = "/var/lib/kubevirt-rs")]
    pub data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[arg(long, default_value = "/var/lib/kubevirt-rs")]
    pub data_dir: PathBuf,
    /// Seconds to wait for the supervisor to stop everything before killing what is left.
    #[arg(long, default_value_t = 240)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub vm_timeout: u64,
}

fn self_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding this executable")
}

fn load_config(data_dir: &Path) -> Option<ClusterConfig> {
    let text = std::fs::read_to_string(ClusterConfig::config_path(data_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn port_free(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

fn supervisor_pid(cfg_run: &Path) -> Option<u32> {
    state::live_pid(&cfg_run.join("supervisor.pid"))
}

/// The configuration for this `up`: flags over what the last `up` stored, over defaults.
fn resolve(args: &UpArgs, stored: Option<ClusterConfig>) -> anyhow::Result<ClusterConfig> {
    let exe_dir = self_exe()?
        .parent()
        .map(Path::to_path_buf)
        .context("the executable's directory")?;
    let data_dir = std::path::absolute(&args.data_dir).context("the data directory")?;
    let mut listen = args
        .listen
        .or(stored.as_ref().map(|s| s.listen))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6443)));
    if listen.port() == 0 {
        listen.set_port(free_port()?);
    }
    let node_prefix = args
        .node_prefix
        .clone()
        .or(stored.as_ref().map(|s| s.node_prefix.clone()))
        .unwrap_or_else(|| "node".into());
    anyhow::ensure!(
        plan::valid_prefix(&node_prefix),
        "--node-prefix {node_prefix:?}: lower-case letters, digits and '-', starting with a letter, at most 20"
    );
    let nodes = args.nodes.or(stored.as_ref().map(|s| s.nodes)).unwrap_or(1);
    anyhow::ensure!((1..=254).contains(&nodes), "--nodes must be 1..=254");
    let bin_dir = args
        .bin_dir
        .clone()
        .map(|b| std::path::absolute(&b))
        .transpose()
        .context("--bin-dir")?
        .or(stored.as_ref().map(|s| s.bin_dir.clone()))
        .unwrap_or(exe_dir);
    // virt-api keeps its port across `up`s unless something else took it.
    let virt_api_port = match stored.as_ref().map(|s| s.virt_api_port) {
        Some(p) if port_free(SocketAddr::from(([127, 0, 0, 1], p))) => p,
        _ => free_port()?,
    };
    Ok(ClusterConfig {
        data_dir,
        listen,
        nodes,
        node_prefix,
        bin_dir,
        virt_api_port,
    })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills what pid files name and still runs (SIGTERM, then SIGKILL), in reverse start order.
async fn kill_by_pid_files(cfg: &ClusterConfig) -> usize {
    let run = cfg.run_dir();
    let mut killed = 0;
    let mut names: Vec<String> = plan::plan(cfg).into_iter().map(|c| c.name).collect();
    names.reverse();
    names.insert(0, "supervisor".into());
    for name in names {
        let file = state::pid_path(&run, &name);
        if let Some(pid) = state::live_pid(&file) {
            let p = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while state::live_pid(&file).is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if state::live_pid(&file).is_some() {
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            }
            killed += 1;
        }
        let _ = std::fs::remove_file(&file);
    }
    killed
}

pub async fn up(args: UpArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "virt-cluster up needs root (network namespaces, mounts, cgroups)"
    );
    let stored = load_config(&args.data_dir);
    let run_dir = args.data_dir.join("run");
    std::fs::create_dir_all(&run_dir).context("creating DATA/run")?;
    // One cluster per data directory: the lock is taken here and handed to the supervisor as
    // its stdin (same open file, so the lock stays while it runs), which closes the window
    // between two `up`s started at once.
    let lock_path = run_dir.join("supervisor.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let locked = match lock.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", lock_path.display()));
        }
    };
    if !locked || supervisor_pid(&run_dir).is_some() {
        let who = supervisor_pid(&run_dir)
            .map(|p| format!("supervisor pid {p}"))
            .unwrap_or_else(|| "starting".into());
        println!(
            "a cluster is already running on {} ({who}); `virt-cluster status --data-dir {0}` shows it, `virt-cluster down --data-dir {0}` stops it",
            args.data_dir.display()
        );
        return Ok(EXIT_ALREADY_RUNNING);
    }
    if let Some(old) = &stored {
        // A supervisor that died without stopping its components leaves them behind.
        let n = kill_by_pid_files(old).await;
        if n > 0 {
            println!("stopped {n} processes left over from an earlier run");
            supervisor::teardown_nodes(old, &self_exe()?).await;
        }
    }
    let cfg = resolve(&args, stored)?;
    for s in plan::SIBLINGS {
        let p = cfg.bin_dir.join(s);
        anyhow::ensure!(
            p.exists(),
            "{} not found (build the workspace: cargo build --bins, or pass --bin-dir)",
            p.display()
        );
    }
    anyhow::ensure!(
        port_free(cfg.listen),
        "{} is in use (pass --listen ADDR, port 0 for a free one)",
        cfg.listen
    );
    std::fs::create_dir_all(cfg.run_dir()).context("creating DATA/run")?;
    std::fs::create_dir_all(cfg.log_dir()).context("creating DATA/logs")?;
    state::write_atomic(
        &ClusterConfig::config_path(&cfg.data_dir),
        &serde_json::to_vec_pretty(&cfg)?,
    )
    .context("writing DATA/cluster.json")?;
    let _ = std::fs::remove_file(state::state_path(&cfg.run_dir()));
    let log_path = cfg.log_dir().join("supervisor.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let started = Instant::now();
    println!(
        "starting a {}-node cluster in {} (API server https://{})",
        cfg.nodes,
        cfg.data_dir.display(),
        cfg.listen
    );
    let mut child = std::process::Command::new(self_exe()?)
        .arg("supervise")
        .arg("--data-dir")
        .arg(&cfg.data_dir)
        .arg("--vm-timeout")
        .arg(args.vm_timeout.to_string())
        .stdin(Stdio::from(lock))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the supervisor")?;
    println!(
        "  supervisor pid {} (log {})",
        child.id(),
        log_path.display()
    );
    let names = cfg.node_names();
    let deadline = started + Duration::from_secs(args.timeout);
    let mut reported: Vec<(String, u32)> = Vec::new();
    let mut done = [false; 4];
    let mut last_wait = String::new();
    let mut last_wait_at = Instant::now();
    let mut client: Option<kube::Client> = None;
    loop {
        if let Some(st) = state::read_state(&cfg.run_dir()) {
            for p in &st.processes {
                if let Some(pid) = p.pid
                    && !reported.iter().any(|(n, x)| n == &p.name && *x == pid)
                {
                    reported.push((p.name.clone(), pid));
                    let again = if p.restarts > 0 {
                        "restarted"
                    } else {
                        "started"
                    };
                    println!("  {again} {} (pid {pid})", p.name);
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let phase = state::read_state(&cfg.run_dir())
                .map(|s| s.phase)
                .unwrap_or_default();
            eprintln!("the cluster did not start ({status}): {phase}");
            eprintln!("{}", tail(&log_path, 20));
            eprintln!("component logs: {}", cfg.log_dir().display());
            return Ok(1);
        }
        if client.is_none() && cfg.admin_kubeconfig().exists() {
            client = kubeio::client(&cfg.admin_kubeconfig()).await.ok();
        }
        if let Some(c) = &client {
            let facts = kubeio::facts(c).await;
            if !facts.api {
                // Read the kubeconfig again next time: the API server rewrites it when it
                // starts (a kubeconfig left by an earlier run may name another address).
                client = None;
            }
            let mut waiting = None;
            for (i, step) in STEPS.iter().enumerate() {
                let (ok, line) = ready::check(*step, &names, &facts);
                if ok && !done[i] {
                    done[i] = true;
                    println!("  {line}");
                } else if !ok && waiting.is_none() {
                    waiting = Some(line);
                }
            }
            if done.iter().all(|d| *d) {
                break;
            }
            if let Some(w) = waiting
                && (w != last_wait && last_wait_at.elapsed() > Duration::from_secs(3))
            {
                println!("  {w}");
                last_wait = w;
                last_wait_at = Instant::now();
            }
        }
        if Instant::now() > deadline {
            eprintln!(
                "the cluster is not ready after {} s ({}); it keeps starting in the background: `virt-cluster status --data-dir {}`, logs in {}",
                args.timeout,
                last_wait,
                cfg.data_dir.display(),
                cfg.log_dir().display()
            );
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let kc = cfg.admin_kubeconfig();
    println!(
        "cluster ready in {:.1} s: {} node(s), API server https://{}\n\nUse it with:\n  export KUBECONFIG={}\n  kubectl get nodes\n  {} start <vm>    # or: virtctl console <vm>\n\nvirt-cluster status --data-dir {d}\nvirt-cluster down --data-dir {d}     # stops the VMs, then the cluster",
        started.elapsed().as_secs_f64(),
        cfg.nodes,
        cfg.listen,
        kc.display(),
        cfg.bin_dir.join("virtctl").display(),
        d = cfg.data_dir.display(),
    );
    Ok(0)
}

pub async fn down(args: DownArgs) -> anyhow::Result<i32> {
    let Some(cfg) = load_config(&args.data_dir) else {
        println!("no cluster in {}", args.data_dir.display());
        return Ok(0);
    };
    let run = cfg.run_dir();
    let mut clean = false;
    if let Some(pid) = supervisor_pid(&run) {
        println!(
            "stopping the cluster in {} (supervisor pid {pid})",
            cfg.data_dir.display()
        );
        let p = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM)
            .context("signalling the supervisor")?;
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let mut last = String::new();
        while supervisor_pid(&run).is_some() && Instant::now() < deadline {
            if let Some(st) = state::read_state(&run)
                && st.phase != last
            {
                println!("  {}", st.phase);
                last = st.phase;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if supervisor_pid(&run).is_some() {
            eprintln!(
                "the supervisor did not finish in {} s; killing what is left",
                args.timeout
            );
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        } else {
            clean = state::read_state(&run).is_some_and(|s| s.phase == "stopped");
        }
    }
    let killed = kill_by_pid_files(&cfg).await;
    if !clean || killed > 0 {
        if killed > 0 {
            println!("  killed {killed} processes left behind");
        }
        println!("  removing the nodes' namespaces and mounts");
        supervisor::teardown_nodes(&cfg, &self_exe()?).await;
    }
    println!("cluster stopped (state kept in {})", cfg.data_dir.display());
    Ok(0)
}

/// Writes to stdout, ignoring a closed pipe (`virt-cluster status | head`).
fn out(text: &str) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

pub async fn status(args: DataDirArg) -> anyhow::Result<i32> {
    let Some(cfg) = load_config(&args.data_dir) else {
        out(&format!("no cluster in {}\n", args.data_dir.display()));
        return Ok(EXIT_NOT_RUNNING);
    };
    let run = cfg.run_dir();
    let st = state::read_state(&run).unwrap_or_default();
    let sup = supervisor_pid(&run);
    let mut text = match sup {
        Some(pid) => format!(
            "cluster {}: running (supervisor pid {pid}, {}), API server https://{}\n",
            cfg.data_dir.display(),
            st.phase,
            cfg.listen
        ),
        None if st.phase.starts_with("failed") => format!(
            "cluster {}: not running ({}; logs in {})\n",
            cfg.data_dir.display(),
            st.phase,
            cfg.log_dir().display()
        ),
        None => format!("cluster {}: not running\n", cfg.data_dir.display()),
    };
    let rows: Vec<(state::ProcessState, bool)> = plan::plan(&cfg)
        .iter()
        .map(|c| {
            let mut p = st
                .processes
                .iter()
                .find(|p| p.name == c.name)
                .cloned()
                .unwrap_or_else(|| state::ProcessState {
                    name: c.name.clone(),
                    ..Default::default()
                });
            let live = state::live_pid(&state::pid_path(&run, &c.name));
            if live.is_some() {
                p.pid = live;
            }
            (p, live.is_some())
        })
        .collect();
    text.push('\n');
    text.push_str(&state::render_processes(&rows));
    if sup.is_none() {
        out(&text);
        return Ok(EXIT_NOT_RUNNING);
    }
    let client = kubeio::client(&cfg.admin_kubeconfig()).await?;
    match kubeio::node_facts(&client).await {
        Ok(nodes) => text.push_str(&format!("\n{}", ready::render_nodes(&nodes))),
        Err(e) => text.push_str(&format!("\nnodes: the API server does not answer: {e:#}\n")),
    }
    let vms = kubeio::count(&client, &kubeio::vm_resource()).await;
    let vmis = kubeio::count(&client, &kubeio::vmi_resource()).await;
    if let (Ok(vms), Ok(vmis)) = (vms, vmis) {
        text.push_str(&format!("\nVMs: {vms}, instances (VMIs): {vmis}\n"));
    }
    text.push_str(&format!(
        "\nexport KUBECONFIG={}\n",
        cfg.admin_kubeconfig().display()
    ));
    out(&text);
    Ok(0)
}

pub async fn supervise(args: SuperviseArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.data_dir).context("no DATA/cluster.json: run `virt-cluster up`")?;
    supervisor::run(cfg, self_exe()?, Duration::from_secs(args.vm_timeout)).await
}
