//! `virt-controller`: runs KubeVirt's cluster-wide controllers against the API server named by
//! the kubeconfig (`--kubeconfig`, else `KUBECONFIG`, else in-cluster).

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use virt_controller::controllers::{self, Config};

#[derive(Parser)]
#[command(
    name = "virt-controller",
    version,
    about = "KubeVirt's cluster-wide controllers"
)]
struct Cli {
    /// The kubeconfig to use (default: KUBECONFIG, then in-cluster configuration).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The launcher image: `<registry>/virt-launcher:<tag>`.
    #[arg(long, default_value = "quay.io/kubevirt/virt-launcher:latest")]
    launcher_image: String,
    /// The launcher image's pull policy (Always, IfNotPresent, Never).
    #[arg(long)]
    launcher_pull_policy: Option<String>,
    /// Guests run with hardware virtualization (no TCG translation cache in the overhead).
    #[arg(long)]
    no_emulation: bool,
    /// Seconds without a virt-handler heartbeat before a node's instances fail.
    #[arg(long, default_value_t = 300)]
    heartbeat_timeout_seconds: u64,
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
        let mut config = Config::default();
        config.launcher.image = cli.launcher_image;
        config.launcher.image_pull_policy = cli.launcher_pull_policy;
        config.launcher.emulation = !cli.no_emulation;
        config.heartbeat_timeout = Duration::from_secs(cli.heartbeat_timeout_seconds);
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
        tracing::info!("virt-controller starting");
        controllers::run(client, config, shutdown)
            .await
            .context("running the controllers")?;
        tracing::info!("virt-controller stopping");
        Ok(())
    })
}
