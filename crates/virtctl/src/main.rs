//! `virtctl`: KubeVirt's command-line client, with upstream's verbs, flags and messages, so
//! scripts written for upstream's virtctl keep working. It reads the kubeconfig as kubectl does
//! (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`, `--context`, the context's namespace) and
//! is also a kubectl plugin: under the name `kubectl-virt` (see `virtctl install-plugin`)
//! `kubectl virt ...` behaves the same.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use virtctl::stream::{Cluster, KubeOptions, status_message};
use virtctl::target::{ForwardedPort, Kind, Target};
use virtctl::{Error, createtype, createvm, credentials, expose, lifecycle, ssh};

#[derive(Parser, Debug)]
#[command(
    name = "virtctl",
    about = "virtctl controls virtual machine related operations on your kubernetes cluster."
)]
struct Cli {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// A boolean flag that also takes `--flag=true|false`, as Go's pflag does.
#[derive(Args, Debug, Clone)]
struct DryRun {
    /// If true, only submit the request without persisting it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value = "false")]
    dry_run: bool,
}

#[derive(Args, Debug, Clone)]
struct ForceGrace {
    /// Force the operation (together with --grace-period).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value = "false")]
    force: bool,
    /// Seconds the guest gets to shut down; with --force only 0 is supported.
    #[arg(long, allow_negative_numbers = true)]
    grace_period: Option<i64>,
}

#[derive(Args, Debug, Clone)]
struct SshFlags {
    /// The user to log in as (default: the local user, as ssh does).
    #[arg(short = 'l', long)]
    username: Option<String>,
    /// Path to a private key used for authenticating to the server.
    #[arg(short = 'i', long)]
    identity_file: Option<String>,
    /// Path to the known_hosts file.
    #[arg(long)]
    known_hosts: Option<String>,
    /// The port on the VM to send SSH traffic to.
    #[arg(short = 'p', long, default_value_t = 22)]
    port: u16,
    /// Additional options for the local ssh client (repeatable), e.g. -t "-o StrictHostKeyChecking=no".
    #[arg(short = 't', long = "local-ssh-opts", allow_hyphen_values = true)]
    local_ssh_opts: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a virtual machine.
    Start {
        name: String,
        /// Start the VM in a paused state.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value = "false")]
        paused: bool,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Stop a virtual machine.
    Stop {
        name: String,
        #[command(flatten)]
        force: ForceGrace,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Restart a virtual machine.
    Restart {
        name: String,
        #[command(flatten)]
        force: ForceGrace,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Migrate a running virtual machine to another node.
    Migrate {
        name: String,
        /// Node labels the target node must have (key=value, repeatable), on top of the
        /// instance's own node selector.
        #[arg(long = "addedNodeSelector", value_delimiter = ',')]
        added_node_selector: Vec<String>,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Cancel the migration of a virtual machine that has not finished yet.
    #[command(name = "migrate-cancel")]
    MigrateCancel {
        name: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Pause a virtual machine: its state stays in memory. Type: vm or vmi.
    Pause {
        #[arg(value_name = "vm|vmi")]
        kind: String,
        name: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Unpause a virtual machine. Type: vm or vmi.
    Unpause {
        #[arg(value_name = "vm|vmi")]
        kind: String,
        name: String,
        #[command(flatten)]
        dry: DryRun,
    },
    /// Connect to the serial console of a virtual machine instance (Ctrl+] leaves).
    Console {
        #[arg(value_name = "VMI")]
        name: String,
        /// The number of minutes to wait for the virtual machine instance to be ready.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Open a VNC connection to a virtual machine instance.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Vnc {
        #[command(subcommand)]
        sub: Option<VncWhat>,
        #[arg(value_name = "VMI", required = true)]
        name: Option<String>,
        /// The address the local proxy listens on (only with --proxy-only; else 127.0.0.1).
        #[arg(long, default_value = "127.0.0.1")]
        address: String,
        /// The local port (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Only run the proxy and print the port VNC viewers can connect to, as JSON.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value = "false")]
        proxy_only: bool,
        /// Keep an existing VNC session instead of taking it over.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value = "false")]
        preserve_session: bool,
        /// The viewer to use: tiger or remote-viewer (looked up in PATH unless --vnc-path).
        #[arg(long)]
        vnc_type: Option<String>,
        /// Path to the viewer executable.
        #[arg(long)]
        vnc_path: Option<PathBuf>,
    },
    /// Forward local ports to a virtualmachine or virtualmachineinstance:
    /// type/name[/namespace] [protocol/]localPort[:targetPort]...
    #[command(name = "port-forward")]
    PortForward {
        #[arg(value_name = "type/name[/namespace]")]
        target: String,
        #[arg(value_name = "[protocol/]localPort[:targetPort]", required = true)]
        ports: Vec<String>,
        /// Forward the tunnel to stdout/stdin; only works with a single port.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value = "false")]
        stdio: bool,
        /// The address the local ports are opened on.
        #[arg(long, default_value = "127.0.0.1")]
        address: String,
    },
    /// Open an SSH connection to a virtual machine instance: [user@]type/name[/namespace].
    Ssh {
        #[arg(value_name = "[user@]type/name[/namespace]")]
        destination: String,
        #[command(flatten)]
        flags: SshFlags,
        /// A command to execute in the VM.
        #[arg(short = 'c', long)]
        command: Option<String>,
    },
    /// Copy files to or from a virtual machine: [user@]type/name[/namespace]:path on one side.
    Scp {
        source: String,
        destination: String,
        #[command(flatten)]
        flags: SshFlags,
        /// Copy directories recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Preserve access and modification times.
        #[arg(long)]
        preserve: bool,
    },
    /// Expose a virtual machine (vm), instance (vmi) or instance replica set (vmirs) as a Service.
    Expose {
        #[arg(value_name = "TYPE")]
        kind: String,
        name: String,
        /// Name of the service created for the exposure of the VM.
        #[arg(long = "name")]
        service_name: String,
        /// The port that the service should serve on.
        #[arg(long)]
        port: Option<i32>,
        /// Name or number of the port on the VM that the service directs traffic to.
        #[arg(long)]
        target_port: Option<String>,
        /// The network protocol for the service.
        #[arg(long, default_value = "TCP")]
        protocol: String,
        /// Type of the service: ClusterIP, NodePort or LoadBalancer.
        #[arg(long = "type", default_value = "ClusterIP")]
        service_type: String,
        /// Name of the port.
        #[arg(long)]
        port_name: Option<String>,
        /// ClusterIP to assign ('None' for a headless service).
        #[arg(long)]
        cluster_ip: Option<String>,
        /// An additional external IP address the service accepts.
        #[arg(long)]
        external_ip: Option<String>,
    },
    /// Create a manifest for the specified kind.
    Create {
        #[command(subcommand)]
        what: CreateWhat,
    },
    /// Manipulate credentials on a virtual machine.
    Credentials {
        #[command(subcommand)]
        what: CredentialsWhat,
    },
    /// Soft reboot a virtual machine instance.
    #[command(name = "soft-reboot")]
    SoftReboot {
        #[arg(value_name = "VMI")]
        name: String,
    },
    /// Return guest agent info about the OS of a virtual machine instance.
    Guestosinfo {
        #[arg(value_name = "VMI")]
        name: String,
    },
    /// Return the list of filesystems the guest agent reports.
    Fslist {
        #[arg(value_name = "VMI")]
        name: String,
    },
    /// Return the list of users logged in to the guest, as its agent reports them.
    Userlist {
        #[arg(value_name = "VMI")]
        name: String,
    },
    /// Print the client and server version information.
    Version {
        /// Only the client version.
        #[arg(long)]
        client: bool,
    },
    /// Make `kubectl virt` work: link kubectl-virt to this binary in a directory on PATH.
    #[command(name = "install-plugin")]
    InstallPlugin {
        /// Where to put the link (default: this binary's directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum VncWhat {
    /// Create a VNC screenshot of a virtual machine instance.
    Screenshot {
        #[arg(value_name = "VMI")]
        name: String,
        /// Where to store the VNC screenshot in PNG format ('-' for stdout).
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Move the cursor first, to wake up the screen in case of screensavers.
        #[arg(short = 'm', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value = "false")]
        move_cursor: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CredentialsWhat {
    /// Add credentials to a virtual machine.
    #[command(name = "add-ssh-key")]
    AddSshKey {
        #[command(flatten)]
        key: SshKeyArgs,
        /// Create a new secret for the SSH key. The new key will not be added to a running VM.
        /// Use --force to add a new secret even if the VM is running.
        #[arg(long, conflicts_with = "update_secret")]
        create_secret: bool,
        /// Add the SSH key to an existing secret. Use --force option, if the secret does not
        /// have owner reference pointing to the VM.
        #[arg(long)]
        update_secret: bool,
        /// Force update of secret, even if it's not owned by the VM.
        #[arg(long)]
        force: bool,
    },
    /// Remove credentials from a virtual machine.
    #[command(name = "remove-ssh-key")]
    RemoveSshKey {
        #[command(flatten)]
        key: SshKeyArgs,
        /// Force update of secret, even if it's not owned by the VM.
        #[arg(long)]
        force: bool,
    },
    /// Set password for a user.
    #[command(name = "set-password")]
    SetPassword {
        #[command(flatten)]
        target: CredentialTarget,
        /// Password for the user.
        #[arg(long, short = 'p')]
        password: String,
        /// Force update of secret, even if it's not owned by the VM.
        #[arg(long)]
        force: bool,
    },
}

/// The VM, the guest user and (when the VM has several) the Secret a credentials verb changes.
#[derive(Args, Debug)]
struct CredentialTarget {
    #[arg(value_name = "VM")]
    name: String,
    /// Name of the user.
    #[arg(long, short = 'u')]
    user: String,
    /// Name of the secret to change.
    #[arg(long)]
    secret: Option<String>,
}

#[derive(Args, Debug)]
struct SshKeyArgs {
    #[command(flatten)]
    target: CredentialTarget,
    /// Path to the SSH public key file.
    #[arg(long, short = 'f', conflicts_with = "value")]
    file: Option<std::path::PathBuf>,
    /// Literal value of the SSH public key.
    #[arg(long)]
    value: Option<String>,
}

impl SshKeyArgs {
    fn key(&self) -> anyhow::Result<String> {
        let raw = match (&self.value, &self.file) {
            (Some(v), _) => v.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("error getting ssh key: {}: {e}", f.display()))?,
            (None, None) => {
                anyhow::bail!("error getting ssh key: one of --file, or --value must be specified")
            }
        };
        Ok(credentials::normalize_key(&raw)?)
    }
}

#[derive(Subcommand, Debug)]
enum CreateWhat {
    /// Create a VirtualMachine manifest (printed as YAML).
    Vm(CreateVm),
    /// Create a VirtualMachineInstancetype or VirtualMachineClusterInstancetype manifest.
    Instancetype(CreateInstancetype),
    /// Create a VirtualMachinePreference or VirtualMachineClusterPreference manifest.
    Preference(CreatePreference),
}

#[derive(Args, Debug)]
struct CreateInstancetype {
    /// Name of the instancetype (default: [cluster]instancetype-<random>).
    #[arg(long)]
    name: Option<String>,
    /// The number of guest CPUs.
    #[arg(long, required = true)]
    cpu: u32,
    /// The guest memory, e.g. 256Mi.
    #[arg(long, required = true)]
    memory: String,
    /// A vGPU to pass through (repeatable): name:NAME,devicename:DEVICE.
    #[arg(long)]
    gpu: Vec<String>,
    /// A host device to pass through (repeatable): name:NAME,devicename:DEVICE.
    #[arg(long)]
    hostdevice: Vec<String>,
    /// The IOThreadsPolicy: auto or shared.
    #[arg(long)]
    iothreadspolicy: Option<String>,
    /// Create a namespaced VirtualMachineInstancetype (default: cluster-wide).
    #[arg(long)]
    namespaced: bool,
}

#[derive(Args, Debug)]
struct CreatePreference {
    /// Name of the preference (default: [cluster]preference-<random>).
    #[arg(long)]
    name: Option<String>,
    /// Create a namespaced VirtualMachinePreference (default: cluster-wide).
    #[arg(long)]
    namespaced: bool,
    /// The preferred guest CPU topology: sockets, cores, threads or spread.
    #[arg(long)]
    cpu_topology: Option<String>,
    /// The preferred machine type.
    #[arg(long)]
    machine_type: Option<String>,
    /// The preferred storage class of volumes.
    #[arg(long)]
    volume_storage_class: Option<String>,
}

#[derive(Args, Debug)]
struct CreateVm {
    /// Name of the VM (default: vm-<random>).
    #[arg(long)]
    name: Option<String>,
    /// The RunStrategy of the VM.
    #[arg(long, default_value = "Always")]
    run_strategy: String,
    /// The termination grace period of the VM.
    #[arg(long, default_value_t = 180)]
    termination_grace_period: i64,
    /// The memory of the VM (default 512Mi without an instancetype).
    #[arg(long)]
    memory: Option<String>,
    /// The instancetype of the VM: [kind/]name.
    #[arg(long)]
    instancetype: Option<String>,
    /// Infer the instancetype from the first boot disk.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    infer_instancetype: Option<bool>,
    /// The preference of the VM: [kind/]name.
    #[arg(long)]
    preference: Option<String>,
    /// Infer the preference from the first boot disk.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    infer_preference: Option<bool>,
    /// A containerdisk (repeatable): src:IMAGE[,name:NAME][,bootorder:N].
    #[arg(long)]
    volume_containerdisk: Vec<String>,
    /// A PVC (repeatable): src:CLAIM[,name:NAME][,bootorder:N].
    #[arg(long)]
    volume_pvc: Vec<String>,
    /// The cloud-init data source type: nocloud, configdrive or none.
    #[arg(long)]
    cloud_init: Option<String>,
    /// Base64-encoded cloud-init user data.
    #[arg(long)]
    cloud_init_user_data: Option<String>,
    /// Base64-encoded cloud-init network data.
    #[arg(long)]
    cloud_init_network_data: Option<String>,
    /// The user in the generated cloud-init user data.
    #[arg(long)]
    user: Option<String>,
    /// SSH authorized keys in the generated cloud-init user data (repeatable, comma-separated).
    #[arg(long, value_delimiter = ',')]
    ssh_key: Vec<String>,
    /// An access credential (repeatable):
    /// type:ssh|password,src:SECRET[,method:ga|nocloud|configdrive][,user:USER].
    #[arg(long)]
    access_cred: Vec<String>,
}

impl Cli {
    fn kube(&self) -> KubeOptions {
        KubeOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

async fn put(cluster: &Cluster, req: &lifecycle::Request) -> anyhow::Result<()> {
    let request = http::Request::put(req.path.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&req.body)?)?;
    let response = cluster
        .client
        .send(request.map(Into::into))
        .await
        .map_err(|e| anyhow::anyhow!("{} {e}", req.failure))?;
    let status = response.status();
    let bytes = response.into_body().collect_bytes().await?;
    if !status.is_success() {
        anyhow::bail!("{} {}", req.failure, status_message(&bytes));
    }
    println!("{}", req.success);
    Ok(())
}

fn vm_resource() -> ApiResource {
    ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachine".into(),
        plural: "virtualmachines".into(),
    }
}

fn kubevirt_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        kind: kind.into(),
        plural: plural.into(),
        ..vm_resource()
    }
}

async fn pause(
    cluster: &Cluster,
    kind: &str,
    name: &str,
    on: bool,
    dry: bool,
) -> anyhow::Result<()> {
    let kind = lifecycle::pause_kind(kind)?;
    if dry {
        println!("Dry Run execution");
    }
    let req = lifecycle::pause(&cluster.namespace, name, on, dry);
    if kind == Kind::Vm {
        // The instance of a VM has its name; the VM is read first for upstream's messages.
        let vms: Api<DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &vm_resource());
        let vm = vms
            .get(name)
            .await
            .map_err(|e| anyhow::anyhow!("Error getting VirtualMachine {name}: {e}"))?;
        if on {
            let request = http::Request::put(req.path.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&req.body)?)?;
            let response = cluster.client.send(request.map(Into::into)).await?;
            let status = response.status();
            let bytes = response.into_body().collect_bytes().await?;
            if status == http::StatusCode::NOT_FOUND {
                let halted = vm.data["spec"]["runStrategy"].as_str() == Some("Halted")
                    || vm.data["spec"]["running"].as_bool() == Some(false);
                if halted {
                    anyhow::bail!(
                        "Error pausing VirtualMachineInstance {name}. VirtualMachine {name} is not set to run"
                    );
                }
                anyhow::bail!("Error pausing VirtualMachineInstance {name}, it was not found");
            }
            if !status.is_success() {
                anyhow::bail!("{} {}", req.failure, status_message(&bytes));
            }
            println!("{}", req.success);
            return Ok(());
        }
    }
    put(cluster, &req).await
}

/// The PUT of start/stop/restart, or None for other verbs.
fn lifecycle_request(cmd: &Command, ns: &str) -> Result<Option<lifecycle::Request>, Error> {
    Ok(match cmd {
        Command::Start { name, paused, dry } => {
            Some(lifecycle::start(ns, name, *paused, dry.dry_run))
        }
        Command::Stop { name, force, dry } => Some(lifecycle::stop(
            ns,
            name,
            force.force,
            force.grace_period,
            dry.dry_run,
        )?),
        Command::Restart { name, force, dry } => Some(lifecycle::restart(
            ns,
            name,
            force.force,
            force.grace_period,
            dry.dry_run,
        )?),
        Command::Migrate {
            name,
            added_node_selector,
            dry,
        } => Some(lifecycle::migrate(
            ns,
            name,
            added_node_selector,
            dry.dry_run,
        )?),
        Command::SoftReboot { name } => Some(lifecycle::soft_reboot(ns, name)),
        _ => None,
    })
}

/// `credentials add-ssh-key | remove-ssh-key | set-password VM`: changes the Secrets the VM's
/// guest-agent access credentials name (see `virtctl::credentials`).
async fn credentials_command(cluster: &Cluster, what: &CredentialsWhat) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let ns = &cluster.namespace;
    let vms: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), ns, &vm_resource());
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let target = match what {
        CredentialsWhat::AddSshKey { key, .. } | CredentialsWhat::RemoveSshKey { key, .. } => {
            &key.target
        }
        CredentialsWhat::SetPassword { target, .. } => target,
    };
    let (vm_name, user) = (&target.name, &target.user);
    let vm = vms
        .get(vm_name)
        .await
        .map_err(|e| anyhow::anyhow!("error getting virtual machine: {e}"))?;
    let vm = serde_json::to_value(&vm)?;
    let json_patch = |v: serde_json::Value| -> anyhow::Result<Patch<()>> {
        Ok(Patch::Json(serde_json::from_value(v)?))
    };
    let get_secret = |name: String| {
        let secrets = secrets.clone();
        async move {
            secrets
                .get(&name)
                .await
                .map_err(|e| anyhow::anyhow!("error getting secret \"{name}\": {e}"))
        }
    };
    match what {
        CredentialsWhat::AddSshKey {
            key: args,
            create_secret,
            update_secret,
            force,
        } => {
            let key = args.key()?;
            let assigned = credentials::ssh_secrets_for_user(&vm, user);
            let create = *create_secret || (!*update_secret && assigned.is_empty());
            if create {
                if !*force {
                    let vmis: Api<DynamicObject> = Api::namespaced_with(
                        cluster.client.clone(),
                        ns,
                        &kubevirt_resource("VirtualMachineInstance", "virtualmachineinstances"),
                    );
                    if vmis.get_opt(vm_name).await?.is_some() {
                        anyhow::bail!(
                            "virtual machine {vm_name} is running. Use --force flag to update a running VM, it will take effect after restart"
                        );
                    }
                }
                let secret = credentials::new_key_secret(&vm, &key, &random_suffix());
                let made = secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map_err(|e| anyhow::anyhow!("error creating secret: {e}"))?;
                let made_name = made.metadata.name.unwrap_or_default();
                let patch = credentials::add_credential_patch(&vm, &made_name, user);
                vms.patch(vm_name, &PatchParams::default(), &json_patch(patch)?)
                    .await
                    .map_err(|e| anyhow::anyhow!("error patching virtual machine: {e}"))?;
                return Ok(());
            }
            if assigned.is_empty() {
                anyhow::bail!("no secrets specified for user: {user}");
            }
            let name = credentials::pick_secret(target.secret.as_deref(), &assigned)?;
            let secret = get_secret(name.clone()).await?;
            if credentials::has_key(&secret, &key) {
                println!("Secret \"{name}\" already contains this SSH key.");
                return Ok(());
            }
            if !*force && !credentials::owned_by_vm(&secret, &vm) {
                return Err(credentials::not_owned(&name, &vm).into());
            }
            let item = format!("ssh-key-{}", random_suffix());
            let patch = credentials::set_item_patch(&secret, &item, &key);
            secrets
                .patch(&name, &PatchParams::default(), &json_patch(patch)?)
                .await
                .map_err(|e| anyhow::anyhow!("error patching secret \"{name}\": {e}"))?;
            println!("Successfully added the key to secret \"{name}\"");
        }
        CredentialsWhat::RemoveSshKey { key: args, force } => {
            let key = args.key()?;
            let assigned = credentials::ssh_secrets_for_user(&vm, user);
            if assigned.is_empty() {
                println!("No secrets associated with user {user}");
                return Ok(());
            }
            let targets = match target.secret.as_deref() {
                None => assigned,
                Some(s) if assigned.iter().any(|a| a == s) => vec![s.to_string()],
                Some(s) => anyhow::bail!("secret {s} is not associated with user {user}"),
            };
            for name in targets {
                // Read, edit, replace with the read resourceVersion; again on a conflict.
                let mut tries = 0;
                loop {
                    let Some(mut secret) = secrets.get_opt(&name).await? else {
                        break;
                    };
                    if !*force && !credentials::owned_by_vm(&secret, &vm) {
                        return Err(credentials::not_owned(&name, &vm).into());
                    }
                    secret.data = Some(credentials::data_without_key(&secret, &key));
                    match secrets
                        .replace(&name, &PostParams::default(), &secret)
                        .await
                    {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 && tries < 5 => tries += 1,
                        Err(kube::Error::Api(e)) if e.code == 404 => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        CredentialsWhat::SetPassword {
            target: _,
            password,
            force,
        } => {
            let assigned = credentials::password_secrets(&vm);
            if assigned.is_empty() {
                anyhow::bail!("no secrets assigned to UserPassword AccessCredentials");
            }
            let name = credentials::pick_secret(target.secret.as_deref(), &assigned)?;
            let current = get_secret(name.clone()).await?;
            if !*force && !credentials::owned_by_vm(&current, &vm) {
                return Err(credentials::not_owned(&name, &vm).into());
            }
            let patch = credentials::set_item_patch(&current, user, password);
            secrets
                .patch(&name, &PatchParams::default(), &json_patch(patch)?)
                .await
                .map_err(|e| anyhow::anyhow!("error patching secret \"{name}\": {e}"))?;
            println!("Successfully set password in secret \"{name}\"");
        }
    }
    Ok(())
}

/// `migrate-cancel VM`: deletes the VM's migration that has not finished (the controller
/// then takes the target down).
async fn migrate_cancel(cluster: &Cluster, name: &str, dry: bool) -> anyhow::Result<()> {
    let ar = kubevirt_resource(
        "VirtualMachineInstanceMigration",
        "virtualmachineinstancemigrations",
    );
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &ar);
    let all = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("Error listing migrations: {e}"))?;
    let in_flight: Vec<String> = all
        .items
        .iter()
        .filter(|m| m.data["spec"]["vmiName"].as_str() == Some(name))
        .filter(|m| {
            !matches!(
                m.data["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|m| m.metadata.name.clone())
        .collect();
    if in_flight.is_empty() {
        anyhow::bail!("Found no migration to cancel for {name}");
    }
    let dp = kube::api::DeleteParams {
        dry_run: dry,
        ..Default::default()
    };
    for m in in_flight {
        api.delete(&m, &dp)
            .await
            .map_err(|e| anyhow::anyhow!("Error canceling migration {m} of {name}: {e}"))?;
    }
    println!("VM {name} was scheduled to migrate-cancel");
    Ok(())
}

fn proxy_context(cli: &Cli) -> anyhow::Result<ssh::ProxyContext> {
    let exe = std::env::current_exe().context("locating this binary for the ssh ProxyCommand")?;
    let abs = |p: &PathBuf| -> String {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.clone())
            .to_string_lossy()
            .into_owned()
    };
    Ok(ssh::ProxyContext {
        program: exe.to_string_lossy().into_owned(),
        kubeconfig: cli.kubeconfig.as_ref().map(abs),
        context: cli.context.clone(),
    })
}

fn ssh_options(f: &SshFlags) -> ssh::Options {
    ssh::Options {
        username: f.username.clone(),
        identity_file: f.identity_file.clone(),
        known_hosts: f.known_hosts.clone(),
        port: f.port,
        local_ssh_opts: f
            .local_ssh_opts
            .iter()
            .flat_map(|o| o.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect(),
    }
}

/// The namespace for verbs that do not need a connection (ssh/scp build a command line).
fn namespace_without_connecting(cli: &Cli) -> String {
    if let Some(ns) = &cli.namespace {
        return ns.clone();
    }
    let kc = match &cli.kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p).ok(),
        None => kube::config::Kubeconfig::read().ok(),
    };
    kc.and_then(|kc| {
        let ctx = cli.context.clone().or(kc.current_context.clone())?;
        kc.contexts
            .iter()
            .find(|c| c.name == ctx)
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.namespace.clone())
    })
    .unwrap_or_else(|| "default".into())
}

fn random_suffix() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 5];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect()
}

fn run_status(status: std::process::ExitStatus) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        anyhow::bail!("{status}")
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Version { client } => {
            println!(
                "Client Version: {}",
                concat!("v", env!("CARGO_PKG_VERSION"))
            );
            if !client {
                let cluster = virtctl::stream::cluster(&cli.kube()).await?;
                let request = http::Request::get("/apis/subresources.kubevirt.io/v1/version")
                    .body(Vec::new())?;
                let v: serde_json::Value = cluster
                    .client
                    .request(request)
                    .await
                    .map_err(|e| anyhow::anyhow!("could not get the server version: {e}"))?;
                println!(
                    "Server Version: {}",
                    v["gitVersion"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                );
            }
            return Ok(());
        }
        Command::InstallPlugin { dir } => {
            let exe = std::env::current_exe()?;
            let dir = match dir {
                Some(d) => d.clone(),
                None => exe
                    .parent()
                    .map(PathBuf::from)
                    .context("this binary has no directory")?,
            };
            let link = virtctl::install_plugin(&exe, &dir)?;
            println!("{} -> {}", link.display(), exe.display());
            println!(
                "kubectl finds it when {} is on PATH: kubectl virt --help",
                dir.display()
            );
            return Ok(());
        }
        Command::Ssh {
            destination,
            flags,
            command,
        } => {
            let args = ssh::ssh_args(
                &proxy_context(&cli)?,
                destination,
                &namespace_without_connecting(&cli),
                &ssh_options(flags),
                command.as_deref(),
            )?;
            tracing::debug!(?args, "running ssh");
            return run_status(std::process::Command::new("ssh").args(&args).status()?);
        }
        Command::Scp {
            source,
            destination,
            flags,
            recursive,
            preserve,
        } => {
            let args = ssh::scp_args(
                &proxy_context(&cli)?,
                source,
                destination,
                &namespace_without_connecting(&cli),
                &ssh_options(flags),
                *recursive,
                *preserve,
            )?;
            tracing::debug!(?args, "running scp");
            return run_status(std::process::Command::new("scp").args(&args).status()?);
        }
        Command::Create {
            what: CreateWhat::Vm(c),
        } => {
            let o = createvm::Options {
                name: c
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("vm-{}", random_suffix())),
                namespace: cli.namespace.clone(),
                run_strategy: c.run_strategy.clone(),
                termination_grace_period: c.termination_grace_period,
                memory: c.memory.clone(),
                instancetype: c.instancetype.clone(),
                preference: c.preference.clone(),
                infer_instancetype: c.infer_instancetype,
                infer_preference: c.infer_preference,
                containerdisks: c.volume_containerdisk.clone(),
                pvcs: c.volume_pvc.clone(),
                cloud_init: c.cloud_init.clone(),
                cloud_init_user_data: c.cloud_init_user_data.clone(),
                cloud_init_network_data: c.cloud_init_network_data.clone(),
                user: c.user.clone(),
                ssh_keys: c.ssh_key.clone(),
                access_creds: c.access_cred.clone(),
            };
            print!("{}", createvm::yaml(&o)?);
            return Ok(());
        }
        Command::Create {
            what: CreateWhat::Instancetype(c),
        } => {
            let namespaced = c.namespaced || cli.namespace.is_some();
            let o = createtype::InstancetypeOptions {
                name: c.name.clone().unwrap_or_else(|| {
                    let prefix = createtype::default_name_prefix(true, namespaced);
                    format!("{prefix}-{}", random_suffix())
                }),
                namespace: cli.namespace.clone(),
                namespaced,
                cpu: c.cpu,
                memory: c.memory.clone(),
                gpus: c.gpu.clone(),
                host_devices: c.hostdevice.clone(),
                io_threads_policy: c.iothreadspolicy.clone(),
            };
            print!("{}", createvm::to_yaml(&createtype::instancetype(&o)?)?);
            return Ok(());
        }
        Command::Create {
            what: CreateWhat::Preference(c),
        } => {
            let namespaced = c.namespaced || cli.namespace.is_some();
            let o = createtype::PreferenceOptions {
                name: c.name.clone().unwrap_or_else(|| {
                    let prefix = createtype::default_name_prefix(false, namespaced);
                    format!("{prefix}-{}", random_suffix())
                }),
                namespace: cli.namespace.clone(),
                namespaced,
                cpu_topology: c.cpu_topology.clone(),
                machine_type: c.machine_type.clone(),
                volume_storage_class: c.volume_storage_class.clone(),
            };
            print!("{}", createvm::to_yaml(&createtype::preference(&o)?)?);
            return Ok(());
        }
        _ => {}
    }
    // Validate arguments before connecting, so usage errors do not wait on the network.
    lifecycle_request(&cli.command, "")?;
    let port_forward = match &cli.command {
        Command::PortForward {
            target,
            ports,
            stdio,
            ..
        } => {
            let target = Target::parse(target)?;
            let ports = ports
                .iter()
                .map(|p| ForwardedPort::parse(p))
                .collect::<Result<Vec<_>, Error>>()?;
            if *stdio && ports.len() != 1 {
                anyhow::bail!("only one port supported when forwarding to stdout");
            }
            Some((target, ports))
        }
        _ => None,
    };
    let cluster = virtctl::stream::cluster(&cli.kube())
        .await
        .map_err(|e| anyhow::anyhow!("cannot obtain KubeVirt client: {e}"))?;
    let ns = cluster.namespace.clone();
    match &cli.command {
        Command::MigrateCancel { name, dry } => migrate_cancel(&cluster, name, dry.dry_run).await,
        Command::Start { .. }
        | Command::Stop { .. }
        | Command::Restart { .. }
        | Command::Migrate { .. }
        | Command::SoftReboot { .. } => match lifecycle_request(&cli.command, &ns)? {
            Some(req) => put(&cluster, &req).await,
            None => Ok(()),
        },
        Command::Pause { kind, name, dry } => pause(&cluster, kind, name, true, dry.dry_run).await,
        Command::Unpause { kind, name, dry } => {
            pause(&cluster, kind, name, false, dry.dry_run).await
        }
        Command::Console { name, timeout } => {
            virtctl::console::console(&cluster, name, Duration::from_secs(timeout * 60)).await?;
            Ok(())
        }
        Command::Vnc {
            sub:
                Some(VncWhat::Screenshot {
                    name,
                    file,
                    move_cursor,
                }),
            ..
        } => {
            let png = virtctl::vnc::screenshot(&cluster, name, *move_cursor).await?;
            if file.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout().write_all(&png)?;
            } else {
                std::fs::write(file, &png)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            Ok(())
        }
        Command::Vnc {
            sub: None,
            name: None,
            ..
        } => anyhow::bail!("vnc: the VMI's name is missing"),
        Command::Vnc {
            sub: None,
            name: Some(name),
            address,
            port,
            proxy_only,
            preserve_session,
            vnc_type,
            vnc_path,
        } => {
            let o = virtctl::vnc::Options {
                address: address.clone(),
                port: *port,
                proxy_only: *proxy_only,
                preserve_session: *preserve_session,
                vnc_type: vnc_type.clone(),
                vnc_path: vnc_path.clone(),
            };
            virtctl::vnc::vnc(&cluster, name, &o).await?;
            Ok(())
        }
        Command::PortForward { stdio, address, .. } => {
            let Some((target, ports)) = port_forward else {
                anyhow::bail!("port-forward: no target");
            };
            if *stdio {
                virtctl::portforward::stdio(&cluster, &target, &ports[0]).await?;
            } else {
                virtctl::portforward::listen(&cluster, &target, &ports, address).await?;
            }
            Ok(())
        }
        Command::Expose {
            kind,
            name,
            service_name,
            port,
            target_port,
            protocol,
            service_type,
            port_name,
            cluster_ip,
            external_ip,
        } => {
            let k = expose::Kind::parse(kind)?;
            let o = expose::Options {
                name: service_name.clone(),
                port: *port,
                target_port: target_port.clone(),
                protocol: protocol.clone(),
                service_type: service_type.clone(),
                port_name: port_name.clone(),
                cluster_ip: cluster_ip.clone(),
                external_ip: external_ip.clone(),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(
                cluster.client.clone(),
                &ns,
                &kubevirt_resource(k.kind(), k.resource()),
            );
            let obj = api
                .get(name)
                .await
                .map_err(|e| anyhow::anyhow!("error fetching {}: {e}", k.kind()))?;
            let svc = expose::service(&o, k, &serde_json::to_value(&obj)?, &ns)?;
            let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(svc)?;
            let services: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(cluster.client.clone(), &ns);
            services
                .create(&PostParams::default(), &svc)
                .await
                .map_err(|e| anyhow::anyhow!("service creation failed: {e}"))?;
            println!("Service {service_name} successfully created for {kind} {name}");
            Ok(())
        }
        Command::Guestosinfo { name } | Command::Fslist { name } | Command::Userlist { name } => {
            // Each verb reads one guest-agent subresource and prints it as indented JSON.
            let sub = match &cli.command {
                Command::Fslist { .. } => "filesystemlist",
                Command::Userlist { .. } => "userlist",
                _ => "guestosinfo",
            };
            let path = virtctl::target::subresource_path(Kind::Vmi, &ns, name, sub);
            let bytes = virtctl::stream::get_bytes(&cluster, &path).await?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Command::Credentials { what } => credentials_command(&cluster, what).await,
        Command::Version { .. }
        | Command::InstallPlugin { .. }
        | Command::Ssh { .. }
        | Command::Scp { .. }
        | Command::Create { .. } => Ok(()),
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIRTCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = virtctl::program_name(&argv0);
    let matches = Cli::command().name(name).bin_name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Stdin readers sit in blocking threads the runtime would wait for; the work is done.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Boolean flags behave as Go's pflag: bare means true, a value only after '='.
    #[test]
    fn pflag_booleans() {
        let c = parse(&["virtctl", "port-forward", "--stdio", "vm/x", "22"]);
        let Command::PortForward {
            target,
            ports,
            stdio,
            ..
        } = c.command
        else {
            panic!("port-forward");
        };
        assert!(stdio);
        assert_eq!(target, "vm/x");
        assert_eq!(ports, vec!["22"]);
        let c = parse(&["virtctl", "stop", "v", "--force=true", "--grace-period=0"]);
        let Command::Stop { force, .. } = c.command else {
            panic!("stop");
        };
        assert!(force.force);
        assert_eq!(force.grace_period, Some(0));
        let c = parse(&["virtctl", "-n", "ns", "vnc", "--proxy-only=false", "v"]);
        assert_eq!(c.namespace.as_deref(), Some("ns"));
        assert!(matches!(
            c.command,
            Command::Vnc {
                proxy_only: false,
                ..
            }
        ));
        let c = parse(&[
            "virtctl",
            "vnc",
            "screenshot",
            "v",
            "-f",
            "-",
            "--move-cursor",
        ]);
        let Command::Vnc {
            sub:
                Some(VncWhat::Screenshot {
                    name,
                    file,
                    move_cursor,
                }),
            ..
        } = c.command
        else {
            panic!("vnc screenshot");
        };
        assert_eq!(
            (name.as_str(), file.to_str(), move_cursor),
            ("v", Some("-"), true)
        );
        assert!(
            Cli::try_parse_from(["virtctl", "vnc", "screenshot", "v"]).is_err(),
            "--file is required"
        );
        assert!(
            Cli::try_parse_from(["virtctl", "vnc"]).is_err(),
            "a VMI is required"
        );
        let c = parse(&["virtctl", "ssh", "-t", "-o A=b", "-t", "-v", "root@vm/x"]);
        let Command::Ssh { flags, .. } = c.command else {
            panic!("ssh");
        };
        assert_eq!(flags.local_ssh_opts, vec!["-o A=b", "-v"]);
        assert!(Cli::try_parse_from(["virtctl", "pause", "vm"]).is_err());
    }
}
