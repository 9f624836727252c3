//! `virt-api`: serves KubeVirt's admission webhooks over HTTPS with a self-signed CA.
//!
//! `virt-api --listen 127.0.0.1:0 --webhooks-out DIR` prints `virt-api listening on
//! https://ADDR` once it serves, and writes `DIR/webhooks.yaml` (both webhook configurations,
//! pointing at that address, carrying the CA) ready for `kubectl apply -f`.
//!
//! With a kubeconfig it also serves `subresources.kubevirt.io/v1` (for the API server's
//! aggregation) and keeps its CA and serving certificate in the Secret `--cert-secret` in
//! `--namespace` (in memory when it may not read it). `--ca-file`/`--ca-key-file` (the cluster
//! CA, DATA/pki/ca.{crt,key}) enable the VMI subresources that go through virt-handler (mutual
//! TLS) and make the caller's identity count only from the aggregator's front-proxy certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use virt_api::{certs, server, subresources, webhooks};

#[derive(Parser, Debug)]
#[command(name = "virt-api", about = "KubeVirt's admission webhooks")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Extra DNS names for the serving certificate (the Service's names on a real cluster).
    #[arg(long = "name")]
    names: Vec<String>,
    /// Write the webhook configurations (YAML, pointing at the listen address) here.
    #[arg(long)]
    webhooks_out: Option<PathBuf>,
    /// Register through this Service instead of the listen address (namespace/name:port).
    #[arg(long)]
    service: Option<String>,
    /// Serve the subresource API (start, stop, restart) with this kubeconfig; without it, the
    /// in-cluster configuration is tried, and without that only the webhooks are served.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// virt-api's namespace (where its certificate Secret lives).
    #[arg(long, default_value = "kubevirt")]
    namespace: String,
    /// The Secret holding virt-api's CA and serving certificate (reused across restarts,
    /// regenerated before expiry; needs a cluster).
    #[arg(long, default_value = certs::DEFAULT_SECRET)]
    cert_secret: String,
    /// The cluster CA (PEM) that virt-handlers' console servers chain to (DATA/pki/ca.crt). It
    /// is also taken as the API server's request-header CA: with it, the caller named in
    /// X-Remote-User is trusted only from a client presenting a certificate from this CA (the
    /// aggregator's front-proxy certificate).
    /// With --ca-key-file, virt-api mints its client certificate for them from it; without
    /// both, console, vnc, pause and the guest agent subresources answer 503.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The cluster CA's private key (PEM).
    #[arg(long)]
    ca_key_file: Option<PathBuf>,
}

/// A client for the subresource API, when one can be configured.
async fn client(args: &Args) -> anyhow::Result<Option<kube::Client>> {
    let config = match args.kubeconfig.as_ref() {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => return Ok(None),
        },
    };
    Ok(Some(kube::Client::try_from(config)?))
}

fn target(args: &Args, addr: SocketAddr) -> anyhow::Result<webhooks::Target> {
    let Some(svc) = args.service.as_deref() else {
        return Ok(webhooks::Target::Url(format!("https://{addr}")));
    };
    let (ns_name, port) = svc.rsplit_once(':').unwrap_or((svc, "443"));
    let (namespace, name) = ns_name
        .split_once('/')
        .context("--service must be namespace/name[:port]")?;
    Ok(webhooks::Target::Service {
        namespace: namespace.into(),
        name: name.into(),
        port: port.parse().context("--service port")?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let ip = addr.ip().to_string();
    let mut names = vec![
        "virt-api.kubevirt.svc",
        "virt-api.kubevirt.svc.cluster.local",
        "localhost",
        ip.as_str(),
    ];
    names.extend(args.names.iter().map(String::as_str));
    let names: Vec<String> = names.into_iter().map(str::to_string).collect();
    let client = client(&args).await?;
    // The CA and serving certificate: from the Secret when there is a cluster (reused across
    // restarts, rotated before expiry), else in memory.
    let store = client.as_ref().map(|c| certs::Store {
        api: kube::Api::namespaced(c.clone(), &args.namespace),
        name: args.cert_secret.clone(),
    });
    let stored = match store.as_ref() {
        Some(s) => match s.load_or_rotate(&names, jiff::Timestamp::now()).await {
            Ok(x) => Some(x),
            // Without access to the Secret we still serve, with certificates of this run only.
            Err(e) => {
                tracing::warn!(secret = %s.name, error = %e, "the certificate Secret is not usable; using in-memory certificates");
                None
            }
        },
        None => None,
    };
    let store = store.filter(|_| stored.is_some());
    let (pki, previous_ca) = match stored {
        Some(x) => x,
        None => (
            certs::generate(&names, jiff::Timestamp::now()).context("generate the certificates")?,
            None,
        ),
    };
    let serving = certs::Swappable::new(&pki).context("the serving certificate")?;
    if let (Some(c), Some(prev)) = (client.as_ref(), previous_ca.as_deref())
        && let Err(e) =
            certs::update_ca_bundles(c, &certs::ca_bundle(&pki.ca_pem, Some(prev))).await
    {
        tracing::warn!(error = %e, "updating the CA bundles failed");
    }
    if let Some(dir) = args.webhooks_out.as_ref() {
        let target = target(&args, addr)?;
        let m = serde_json::to_value(webhooks::mutating(&target, &pki.ca_pem))?;
        let v = serde_json::to_value(webhooks::validating(&target, &pki.ca_pem))?;
        let with_kind = |mut o: serde_json::Value, kind: &str| {
            o["apiVersion"] = "admissionregistration.k8s.io/v1".into();
            o["kind"] = kind.into();
            o
        };
        let docs = [
            with_kind(m, "MutatingWebhookConfiguration"),
            with_kind(v, "ValidatingWebhookConfiguration"),
        ];
        std::fs::create_dir_all(dir)?;
        let yaml = docs
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?
            .join("\n---\n");
        std::fs::write(dir.join("webhooks.yaml"), yaml + "\n")?;
        std::fs::write(dir.join("ca.crt"), &pki.ca_pem)?;
    }
    let mut router = server::router(Arc::new(server::Shared::default()));
    let cluster_ca = match &args.ca_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?)
        }
        None => None,
    };
    let handler_tls = match (&cluster_ca, &args.ca_key_file) {
        (Some(ca), Some(key)) => {
            let key =
                std::fs::read_to_string(key).with_context(|| format!("read {}", key.display()))?;
            Some(virt_api::handler::client_tls(ca, &key).context("virt-handler client TLS")?)
        }
        _ => None,
    };

    if let (Some(c), Some(store)) = (client.clone(), store) {
        tokio::spawn(rotate(
            c,
            store,
            names.clone(),
            serving.clone(),
            pki.ca_pem.clone(),
        ));
    }
    if let Some(client) = client {
        router = router.merge(subresources::router(Arc::new(subresources::Subresources {
            client,
            handler_tls,
            require_proxy_cert: cluster_ca.is_some(),
        })));
    } else {
        tracing::warn!("no kubeconfig and not in a cluster: serving the webhooks only");
    }
    let task = kubevirt_https::serve(
        listener,
        serving.server_config(cluster_ca.as_deref())?,
        router,
    );
    println!("virt-api listening on https://{addr}");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        r = task => { r.context("server task")?; }
    }
    Ok(())
}

/// Checks the certificates every hour; when rotated, serves the new certificate and points the
/// CA bundles at the new CA (with the previous one, for clients that still hold it).
async fn rotate(
    client: kube::Client,
    store: certs::Store,
    names: Vec<String>,
    serving: Arc<certs::Swappable>,
    mut ca: String,
) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        match store.load_or_rotate(&names, jiff::Timestamp::now()).await {
            // Also picks up a rotation another replica wrote to the Secret.
            Ok((b, _)) if b.ca_pem != ca => {
                if let Err(e) = serving.replace(&b) {
                    tracing::warn!(error = %e, "serving the new certificate failed");
                    continue;
                }
                let bundle = certs::ca_bundle(&b.ca_pem, Some(&ca));
                if let Err(e) = certs::update_ca_bundles(&client, &bundle).await {
                    tracing::warn!(error = %e, "updating the CA bundles failed");
                }
                tracing::info!("virt-api certificates rotated");
                ca = b.ca_pem;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checking the certificates failed"),
        }
    }
}
