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
    /// The console server's port (console/VNC streams, pause, guest info for virt-api; mutual
    /// TLS). 0 picks a free port; the actual address is published on the Node.
    #[arg(long, default_value_t = virt_handler::server::DEFAULT_PORT)]
    console_server_port: u16,
    /// The console server's listen address (0.0.0.0 publishes the Node's InternalIP).
    #[arg(long, default_value = "0.0.0.0")]
    listen_address: std::net::IpAddr,
    /// The CA (PEM) that signs the console server's certificate and that clients' certificates
    /// must chain to (the cluster CA, DATA/pki/ca.crt). Without it the console server is off.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// The CA's private key (PEM), to mint the console server's certificate at start.
    #[arg(long)]
    ca_key_file: Option<std::path::PathBuf>,
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
        let console_server = match (&cli.ca_file, &cli.ca_key_file) {
            (Some(ca), Some(key)) => Some(
                start_console_server(
                    &client,
                    &node,
                    &cli.kubelet_root,
                    std::net::SocketAddr::new(cli.listen_address, cli.console_server_port),
                    ca,
                    key,
                )
                .await?,
            ),
            _ => {
                tracing::warn!("no --ca-file/--ca-key-file: the console server is off");
                None
            }
        };
        let config = virt_handler::controller::Config {
            node: node.clone(),
            kubelet_root: cli.kubelet_root.clone(),
            poll: Duration::from_secs(cli.poll_seconds.max(1)),
            listen_address: cli.listen_address,
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
        if let Some(t) = console_server {
            t.abort();
        }
        tracing::info!(node = %node, "virt-handler stopped");
        anyhow::Ok(())
    })
}

/// Starts the console server and publishes its address on the Node.
async fn start_console_server(
    client: &kube::Client,
    node: &str,
    kubelet_root: &std::path::Path,
    listen: std::net::SocketAddr,
    ca_file: &std::path::Path,
    ca_key_file: &std::path::Path,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use virt_handler::server;
    let ca = std::fs::read_to_string(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?;
    let ca_key = std::fs::read_to_string(ca_key_file)
        .with_context(|| format!("reading {}", ca_key_file.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    let advertise = if bound.ip().is_unspecified() {
        server::node_ip(client, node)
            .await
            .or(Some(std::net::IpAddr::from([127, 0, 0, 1])))
    } else {
        None
    };
    let published = server::published_address(bound, advertise);
    let names = vec![
        published.ip().to_string(),
        "virt-handler".to_string(),
        node.to_string(),
        "localhost".to_string(),
    ];
    let leaf = server::mint(&ca, &ca_key, "virt-handler", &names)?;
    let tls = server::server_tls(&ca, leaf)?;
    let shared = std::sync::Arc::new(server::Shared {
        client: client.clone(),
        node: node.to_string(),
        kubelet_root: kubelet_root.to_path_buf(),
    });
    let task = server::serve(listener, tls, shared);
    // Retried in the background: the Node may not be registered yet when the handler starts.
    let (client, node_name) = (client.clone(), node.to_string());
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        while let Err(e) = server::publish(&client, &node_name, published).await {
            tracing::warn!(node = %node_name, error = %e, "publishing the console address failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
    tracing::info!(node = %node, address = %published, "console server listening");
    Ok(task)
}
