//! `virtctl`: KubeVirt's command-line client, with upstream's verbs, flags and messages, so
//! scripts written for upstream's virtctl keep working. It reads the kubeconfig as kubectl does
//! (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`) and also works as a kubectl plugin
//! (`kubectl virt ...`, when installed as `kubectl-virt`).
//!
//! Implemented so far: `start`, `stop`, `restart` (through the `subresources.kubevirt.io/v1`
//! API) and `version`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "virtctl",
    about = "virtctl controls virtual machine related operations on your kubernetes cluster."
)]
struct Cli {
    /// Path to the kubeconfig file to use.
    #[arg(long, global = true)]
    kubeconfig: Option<std::path::PathBuf>,
    /// The namespace to use (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a virtual machine.
    Start {
        name: String,
        /// Start the VM in a paused state.
        #[arg(long)]
        paused: bool,
        /// Only submit the request, without persisting it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop a virtual machine.
    Stop {
        name: String,
        /// With --grace-period=0: stop immediately.
        #[arg(long)]
        force: bool,
        /// Seconds the guest gets to shut down (only 0, with --force).
        #[arg(long, allow_negative_numbers = true)]
        grace_period: Option<i64>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Restart a virtual machine.
    Restart {
        name: String,
        #[arg(long)]
        force: bool,
        #[arg(long, allow_negative_numbers = true)]
        grace_period: Option<i64>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the client version.
    Version,
}

fn dry_run(on: bool) -> serde_json::Value {
    if on { json!(["All"]) } else { json!([]) }
}

/// The verb, its request body and the wording of its failure, or a usage error.
fn plan(cmd: &Command) -> Result<(&'static str, &str, serde_json::Value, &'static str), String> {
    let force_pair = |force: bool, grace: Option<i64>| {
        if force != grace.is_some() {
            Err("Must both use --force=true and set --grace-period.".to_string())
        } else {
            Ok(())
        }
    };
    Ok(match cmd {
        Command::Start {
            name,
            paused,
            dry_run: d,
        } => (
            "start",
            name.as_str(),
            json!({"paused": paused, "dryRun": dry_run(*d)}),
            "Error starting VirtualMachine",
        ),
        Command::Stop {
            name,
            force,
            grace_period,
            dry_run: d,
        } => {
            force_pair(*force, *grace_period)?;
            let mut body = json!({"dryRun": dry_run(*d)});
            if let Some(g) = grace_period {
                body["gracePeriod"] = json!(g);
            }
            let what = if *force {
                "error force stopping VirtualMachine:"
            } else {
                "error stopping VirtualMachine"
            };
            ("stop", name.as_str(), body, what)
        }
        Command::Restart {
            name,
            force,
            grace_period,
            dry_run: d,
        } => {
            force_pair(*force, *grace_period)?;
            let mut body = json!({"dryRun": dry_run(*d)});
            if let Some(g) = grace_period {
                body["gracePeriodSeconds"] = json!(g);
            }
            let what = if *force {
                "error force restarting VirtualMachine:"
            } else {
                "error restarting VirtualMachine"
            };
            ("restart", name.as_str(), body, what)
        }
        Command::Version => return Err(String::new()),
    })
}

async fn client(cli: &Cli) -> anyhow::Result<(kube::Client, String)> {
    let config = match cli.kubeconfig.as_ref() {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("read {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((kube::Client::try_from(config)?, namespace))
}

/// The message of a Kubernetes Status body, or the body itself.
fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Version = cli.command {
        println!(
            "Client Version: {}",
            concat!("v", env!("CARGO_PKG_VERSION"))
        );
        return Ok(());
    }
    let (verb, name, body, failure) = plan(&cli.command).map_err(|e| anyhow::anyhow!(e))?;
    let (client, namespace) = client(&cli).await?;
    let uri = format!(
        "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}/{verb}"
    );
    let request = http::Request::put(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body)?)?;
    let response = client
        .send(request.map(Into::into))
        .await
        .map_err(|e| anyhow::anyhow!("{failure} {e}"))?;
    let status = response.status();
    let bytes = read_body(response).await?;
    if !status.is_success() {
        anyhow::bail!("{failure} {}", status_message(&bytes));
    }
    println!("VM {name} was scheduled to {verb}");
    Ok(())
}

async fn read_body(response: http::Response<kube::client::Body>) -> anyhow::Result<Vec<u8>> {
    use kube::client::Body;
    let body: Body = response.into_body();
    Ok(body.collect_bytes().await?.to_vec())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
