//! The API calls `up`, `down`, `status` and the supervisor make: applying objects, gathering
//! readiness facts, listing and deleting VMIs.

use std::path::Path;

use anyhow::Context as _;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::ready::{self, Facts, Webhooks};

pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("loading the kubeconfig")?;
    // Readiness polls must not hang on a server that is starting or gone.
    cfg.connect_timeout = Some(std::time::Duration::from_secs(3));
    cfg.read_timeout = Some(std::time::Duration::from_secs(15));
    kube::Client::try_from(cfg).context("building the client")
}

fn api_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn vmi_resource() -> ApiResource {
    api_resource(
        "kubevirt.io",
        "v1",
        "VirtualMachineInstance",
        "virtualmachineinstances",
    )
}

pub fn vm_resource() -> ApiResource {
    api_resource("kubevirt.io", "v1", "VirtualMachine", "virtualmachines")
}

/// Server-side apply of one object (kinds known to [`ready::resource_of`]).
pub async fn apply(client: &kube::Client, obj: &Value) -> anyhow::Result<()> {
    let (group, version, plural, namespaced) =
        ready::resource_of(obj).with_context(|| format!("no resource for {obj}"))?;
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let ar = api_resource(&group, &version, kind, &plural);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .context("object without a name")?;
    let api: Api<DynamicObject> = if namespaced {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let pp = PatchParams::apply("virt-cluster").force();
    api.patch(name, &pp, &Patch::Apply(obj))
        .await
        .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// The objects every cluster has before its components start: the `kubevirt` namespace,
/// the provisioner's RBAC (for `provisioner_node`), KubeVirt's CRDs and the KubeVirt resource.
pub async fn apply_base(client: &kube::Client, provisioner_node: &str) -> anyhow::Result<()> {
    apply(client, &ready::namespace("kubevirt")).await?;
    for o in ready::provisioner_rbac(provisioner_node)
        .into_iter()
        .chain(ready::virt_api_rbac())
    {
        apply(client, &o).await?;
    }
    for crd in kubevirt_api::crd::all() {
        let v = serde_json::to_value(&crd).context("CRD as JSON")?;
        apply(client, &v).await?;
    }
    apply(client, &ready::kubevirt_cr()).await?;
    Ok(())
}

/// Marks the KubeVirt resource Deployed and Available (status subresource).
pub async fn kubevirt_deployed(client: &kube::Client) -> anyhow::Result<()> {
    let ar = api_resource("kubevirt.io", "v1", "KubeVirt", "kubevirts");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "kubevirt", &ar);
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let status = ready::kubevirt_status(concat!("v", env!("CARGO_PKG_VERSION")), &now);
    api.patch_status(
        "kubevirt",
        &PatchParams::apply("virt-cluster").force(),
        &Patch::Apply(&status),
    )
    .await
    .context("setting the KubeVirt status")?;
    Ok(())
}

/// virt-api's webhook configurations (from its `--webhooks-out` directory), Service,
/// Endpoints and APIService.
pub async fn apply_virt_api(client: &kube::Client, dir: &Path, port: u16) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(dir.join("ca.crt")).context("reading virt-api's CA")?;
    for o in ready::virt_api_objects(port, &ca) {
        apply(client, &o).await?;
    }
    let hooks = std::fs::read_to_string(dir.join("webhooks.yaml"))
        .context("reading virt-api's webhooks")?;
    for o in ready::parse_docs(&hooks).context("parsing virt-api's webhooks")? {
        apply(client, &o).await?;
    }
    Ok(())
}

pub async fn api_ready(client: &kube::Client) -> bool {
    let req = match http::Request::get("/readyz").body(Vec::new()) {
        Ok(r) => r,
        Err(_) => return false,
    };
    client.request_text(req).await.is_ok()
}

/// Everything [`ready::check`] judges.
pub async fn facts(client: &kube::Client) -> Facts {
    let mut f = Facts {
        api: api_ready(client).await,
        ..Default::default()
    };
    if !f.api {
        return f;
    }
    let nodes: Api<DynamicObject> =
        Api::all_with(client.clone(), &api_resource("", "v1", "Node", "nodes"));
    if let Ok(list) = nodes.list(&ListParams::default()).await {
        for n in list.items {
            if let Ok(v) = serde_json::to_value(&n) {
                f.nodes.push(ready::node_fact(&v));
            }
        }
    }
    let svc: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &api_resource("apiregistration.k8s.io", "v1", "APIService", "apiservices"),
    );
    if let Ok(Some(o)) = svc.get_opt("v1.subresources.kubevirt.io").await
        && let Ok(v) = serde_json::to_value(&o)
    {
        f.apiservice = ready::apiservice_available(&v);
    }
    f.webhooks = Some(webhooks(client).await);
    f
}

async fn webhooks(client: &kube::Client) -> Webhooks {
    let m: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &api_resource(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
    );
    let v: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &api_resource(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    );
    let present = matches!(m.get_opt(ready::MUTATING_CONFIGURATION).await, Ok(Some(_)))
        && matches!(
            v.get_opt(ready::VALIDATING_CONFIGURATION).await,
            Ok(Some(_))
        );
    if !present {
        return Webhooks::Missing;
    }
    let vms: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &vm_resource());
    let obj: DynamicObject = match serde_json::from_value(ready::probe_vm()) {
        Ok(o) => o,
        Err(e) => return Webhooks::Failing(e.to_string()),
    };
    let pp = PostParams {
        dry_run: true,
        field_manager: Some("virt-cluster".into()),
    };
    ready::classify_probe(match vms.create(&pp, &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(s.message),
        Err(e) => Err(e.to_string()),
    })
}

/// The VMIs in the cluster: namespace, name, phase.
pub async fn vmis(client: &kube::Client) -> anyhow::Result<Vec<(String, String, String)>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &vmi_resource());
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .map(|o| {
            let phase = o
                .data
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (
                o.metadata.namespace.unwrap_or_default(),
                o.metadata.name.unwrap_or_default(),
                phase,
            )
        })
        .collect())
}

pub async fn count(client: &kube::Client, ar: &ApiResource) -> anyhow::Result<usize> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    Ok(api.list(&ListParams::default()).await?.items.len())
}

/// Pods of virt-launcher (label `kubevirt.io=virt-launcher`) not yet terminal, namespace/name.
pub async fn launcher_pods(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &api_resource("", "v1", "Pod", "pods"));
    let list = api
        .list(&ListParams::default().labels("kubevirt.io=virt-launcher"))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|o| {
            // Terminal pods have nothing left to stop.
            !matches!(
                o.data.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        })
        .map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.unwrap_or_default(),
                o.metadata.name.unwrap_or_default()
            )
        })
        .collect())
}

/// Removes a VMI's finalizers: used by `down` once its launcher is gone (virt-controller,
/// which would remove them, is already stopped).
pub async fn release_vmi(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vmi_resource());
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_vmi(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vmi_resource());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Nodes as `status` shows them.
pub async fn node_facts(client: &kube::Client) -> anyhow::Result<Vec<ready::NodeFact>> {
    let nodes: Api<DynamicObject> =
        Api::all_with(client.clone(), &api_resource("", "v1", "Node", "nodes"));
    let list = nodes.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|n| serde_json::to_value(n).ok())
        .map(|v| ready::node_fact(&v))
        .collect())
}
