//! `virt-cluster`: the embedded single-machine KubeVirt cluster. `virt-cluster up` runs the
//! whole cluster (API server, scheduler, kubelets, virt-api, virt-controller, virt-handlers) as
//! separate processes under a detached supervisor; `down` and `status` go with it. The
//! components' own subcommands (`apiserver`, `kubelet`, `scheduler`) run one piece alone.

mod commands;
mod kubeio;
mod plan;
mod ready;
mod state;
mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "virt-cluster", version, about = "KubeVirt without a cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster (API server, scheduler, a kubelet and a virt-handler per node,
    /// virt-api, virt-controller) in the background; returns once it is ready. Exits 1 if a
    /// cluster already runs on the data directory.
    Up(commands::UpArgs),
    /// Stop the VMs gracefully, then the cluster; its state stays in the data directory.
    Down(commands::DownArgs),
    /// The cluster's processes (pid, up/down, restarts), nodes and VMs. Exits 3 when it is
    /// not running.
    Status(commands::DataDirArg),
    /// The background supervisor `up` starts (internal).
    #[command(hide = true)]
    Supervise(commands::SuperviseArgs),
    /// Run the embedded Kubernetes API server alone (writes DATA/kubeconfig).
    Apiserver {
        /// The data directory (store, PKI, kubeconfig).
        #[arg(long, default_value = "/var/lib/kubevirt-rs")]
        data_dir: PathBuf,
        /// Address to listen on; port 0 picks a free one (see the kubeconfig for it).
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: SocketAddr,
        /// Events kept in memory for watches to resume from.
        #[arg(long, default_value_t = 50_000)]
        watch_window: usize,
        /// Bearer tokens accepted besides certificates and service account tokens: CSV lines
        /// `token,user,uid,"group1,group2"`.
        #[arg(long)]
        token_auth_file: Option<PathBuf>,
    },
    /// Write a kubeconfig with a client certificate (signed by the cluster CA in
    /// DATA/pki) for a user: a kubelet's `system:node:<node>`, or any user and groups.
    Kubeconfig {
        #[arg(long, default_value = "/var/lib/kubevirt-rs")]
        data_dir: PathBuf,
        /// The API server's URL (default: the one in DATA/kubeconfig).
        #[arg(long)]
        server: Option<String>,
        /// A node name: user `system:node:<node>` in group `system:nodes`.
        #[arg(long, conflicts_with_all = ["user", "group"])]
        node: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        group: Vec<String>,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run an embedded node's kubelet: pods as processes in their own namespaces and cgroup.
    Kubelet(Box<kubevirt_embedded_kubelet::Args>),
    /// Run the embedded scheduler.
    Scheduler(kubevirt_embedded_scheduler::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The user-facing commands print their own progress; the client's connection errors while
    // the API server starts are noise there.
    let default_filter = match cli.command {
        Command::Up(_) | Command::Down(_) | Command::Status(_) => "warn,kube_client=off",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Plain text in log files (the supervisor sends each process's output to one).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The kubelet builds its own runtime: its shim mode must not start threads before it has
    // entered the pod's namespaces.
    let command = match cli.command {
        Command::Kubelet(args) => {
            return kubevirt_embedded_kubelet::main(*args).context("running the kubelet");
        }
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let code = match command {
            Command::Up(args) => Some(commands::up(args).await?),
            Command::Down(args) => Some(commands::down(args).await?),
            Command::Status(args) => Some(commands::status(args).await?),
            Command::Supervise(args) => {
                // Its log is the reader's: the reason, not a backtrace.
                if let Err(e) = commands::supervise(args).await {
                    tracing::error!(error = %format!("{e:#}"), "supervisor exiting");
                    std::process::exit(1);
                }
                None
            }
            command => {
                run_component(command).await?;
                None
            }
        };
        if let Some(code) = code
            && code != 0
        {
            std::process::exit(code);
        }
        Ok(())
    })
}

async fn run_component(command: Command) -> anyhow::Result<()> {
    {
        match command {
            Command::Apiserver {
                data_dir,
                listen,
                watch_window,
                token_auth_file,
            } => {
                let mut config = kubevirt_embedded_apiserver::Config::new(&data_dir, listen);
                config.watch_window = watch_window;
                config.token_auth_file = token_auth_file;
                let running = kubevirt_embedded_apiserver::start(config)
                    .await
                    .with_context(|| format!("starting the API server on {listen}"))?;
                // One line on stdout that scripts and tests wait for.
                println!(
                    "apiserver listening on https://{} kubeconfig={}",
                    running.addr,
                    running.kubeconfig.display()
                );
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("installing the SIGTERM handler")?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = running.task => {}
                }
                tracing::info!("apiserver stopping");
                Ok(())
            }
            Command::Scheduler(args) => kubevirt_embedded_scheduler::main(args)
                .await
                .context("running the scheduler"),
            Command::Kubelet(_) => Ok(()),
            Command::Kubeconfig {
                data_dir,
                server,
                node,
                user,
                group,
                out,
            } => write_kubeconfig(&data_dir, server, node, user, group, &out),
            Command::Up(_) | Command::Down(_) | Command::Status(_) | Command::Supervise(_) => {
                Ok(())
            }
        }
    }
}

/// `virt-cluster kubeconfig`: a client-certificate kubeconfig for a node or a user.
fn write_kubeconfig(
    data_dir: &std::path::Path,
    server: Option<String>,
    node: Option<String>,
    user: Option<String>,
    groups: Vec<String>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let (user, groups) = match (node, user) {
        (Some(n), _) => (format!("system:node:{n}"), vec!["system:nodes".to_string()]),
        (None, Some(u)) => (u, groups),
        (None, None) => anyhow::bail!("give --node or --user"),
    };
    let server = match server {
        Some(s) => s,
        None => {
            let kc = std::fs::read_to_string(data_dir.join("kubeconfig"))
                .context("reading DATA/kubeconfig for the server URL (or pass --server)")?;
            kc.lines()
                .find_map(|l| l.trim().strip_prefix("server: "))
                .map(str::to_string)
                .context("no server in DATA/kubeconfig")?
        }
    };
    let pki = kubevirt_embedded_apiserver::tls::Pki::new(data_dir);
    pki.ensure()?;
    let file: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let kc = pki.client_kubeconfig(&server, &format!("user-{file}"), &user, &refs)?;
    kubevirt_embedded_apiserver::tls::write_private(out, kc.as_bytes())?;
    println!("wrote {} for {user}", out.display());
    Ok(())
}
