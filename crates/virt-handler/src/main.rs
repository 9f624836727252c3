//! virt-handler: the per-node agent. Talks to the API server through the kubeconfig
//! (`--kubeconfig`, else `KUBECONFIG`, else in-cluster).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "virt-handler", version, about)]
struct Cli {
    /// The kubeconfig to use (default: KUBECONFIG, then in-cluster configuration).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The node this handler runs on (default: NODE_NAME, then the host name).
    #[arg(long = "hostname-override")]
    node: Option<String>,
    /// Seconds between heartbeats on the node.
    #[arg(long, default_value_t = 60)]
    heartbeat_interval_seconds: u64,
    /// The kubelet's root directory; launcher sockets are under `<root>/pods/<pod uid>/`.
    #[arg(long, default_value = "/var/lib/kubelet")]
    kubelet_root: std::path::PathBuf,
    /// Seconds between polls of each active VMI's launcher.
    #[arg(long, default_value_t = 5)]
    poll_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let node = match cli.node.or_else(|| std::env::var("NODE_NAME").ok()) {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name (pass --hostname-override)")?
            .trim()
            .to_string(),
    };
    anyhow::ensure!(!node.is_empty(), "the node name is empty");
    anyhow::ensure!(
        cli.heartbeat_interval_seconds > 0,
        "--heartbeat-interval-seconds must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = match &cli.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .context("loading the kubeconfig")?;
                kube::Client::try_from(cfg).context("building the client")?
            }
            None => kube::Client::try_default()
                .await
                .context("building the client")?,
        };
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        tracing::info!(node = %node, "virt-handler starting");
        let config = virt_handler::controller::Config {
            node: node.clone(),
            kubelet_root: cli.kubelet_root,
            poll: Duration::from_secs(cli.poll_seconds.max(1)),
        };
        tokio::select! {
            _ = virt_handler::heartbeat::run(
                client.clone(),
                node.clone(),
                Duration::from_secs(cli.heartbeat_interval_seconds),
                std::future::pending(),
            ) => {}
            _ = virt_handler::controller::run(client, config, std::future::pending()) => {}
            _ = shutdown => {}
        }
        tracing::info!(node = %node, "virt-handler stopped");
        anyhow::Ok(())
    })
}
