//! `virt-controller`: runs KubeVirt's cluster-wide controllers against the API server named by
//! the kubeconfig (`--kubeconfig`, else `KUBECONFIG`, else in-cluster).

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use virt_controller::controllers::{self, Config};
use virt_controller::leader::{self, LeaseConfig};

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
    /// The namespace of the leader-election Lease (`virt-controller`).
    #[arg(long, default_value = "kubevirt")]
    lease_namespace: String,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name and pid).
    #[arg(long)]
    identity: Option<String>,
    /// Run without leader election (a single replica).
    #[arg(long)]
    no_leader_election: bool,
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
        let mut shutdown = Box::pin(shutdown);
        tracing::info!("virt-controller starting");
        if cli.no_leader_election {
            controllers::run(client, config, shutdown)
                .await
                .context("running the controllers")?;
        } else {
            let identity = cli
                .identity
                .or_else(|| std::env::var("POD_NAME").ok())
                .unwrap_or_else(|| {
                    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .map(|h| h.trim().to_string())
                        .unwrap_or_else(|_| "virt-controller".into());
                    format!("{host}-{}", std::process::id())
                });
            let lease = LeaseConfig::new(&cli.lease_namespace, &identity);
            let api: Api<Lease> = Api::namespaced(client.clone(), &lease.namespace);
            tokio::select! {
                _ = leader::acquire(&api, &lease) => {}
                _ = &mut shutdown => return Ok(()),
            }
            tokio::select! {
                res = controllers::run(client, config, std::future::pending()) => {
                    res.context("running the controllers")?;
                }
                _ = leader::keep(&api, &lease) => {
                    anyhow::bail!("lost leadership of lease {}/{}", lease.namespace, lease.name);
                }
                _ = &mut shutdown => {}
            }
        }
        tracing::info!("virt-controller stopping");
        Ok(())
    })
}
