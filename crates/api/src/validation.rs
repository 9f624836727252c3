//! Validation, as upstream's validating webhooks do it: pure functions that return *all* the
//! causes an object is refused for, each with its field path and a message worded as
//! upstream's (users and scripts match on those). Where upstream builds a garbled path (it
//! appends `domain.devices.disks` twice in places) we report the real path instead.
//!
//! - [`vmi_create`]: a new VirtualMachineInstance (already defaulted by [`crate::defaults::vmi`]).
//! - [`vm`]: a VirtualMachine on create or update; its template is checked after the same
//!   spec defaulting a VMI would get, on a copy, as upstream does.
//! - [`rejection_message`]: the message a refusal carries.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::ClusterConfig;
use crate::defaults::{self, DefaultsError};
use crate::field::{Cause, CauseType, FieldPath};
use crate::quantity::Amount;
use crate::v1::{
    Disk, Interface, Network, Probe, VirtualMachine, VirtualMachineInstance,
    VirtualMachineInstanceSpec, Volume,
};

use CauseType::{
    FieldValueDuplicate as Duplicate, FieldValueInvalid as Invalid,
    FieldValueNotSupported as NotSupported, FieldValueRequired as Required,
};

/// At most this many causes are listed in a refusal; the rest are counted.
const MAX_CAUSES: usize = 10;
/// Inline cloud-init user or network data larger than this must come from a Secret.
const CLOUD_INIT_INLINE_LIMIT: usize = 2048;

/// The message of a refusal: the causes' messages joined, at most ten, then a count.
pub fn rejection_message(causes: &[Cause]) -> String {
    let shown: Vec<&str> = causes
        .iter()
        .take(MAX_CAUSES)
        .map(|c| c.message.as_str())
        .collect();
    let mut msg = shown.join(", ");
    if causes.len() > MAX_CAUSES {
        msg.push_str(&format!(
            ", and {} more validation errors",
            causes.len() - MAX_CAUSES
        ));
    }
    msg
}

/// Validates a new VMI (after defaulting).
pub fn vmi_create(vmi: &VirtualMachineInstance, cfg: &ClusterConfig) -> Vec<Cause> {
    let base = FieldPath::new("spec");
    let mut causes = vmi_spec(&vmi.spec, &base, cfg);
    causes.extend(volumes_have_devices(&vmi.spec, &base));
    causes.extend(memory_is_requested(&vmi.spec, &base));
    causes.extend(architecture(&vmi.spec, &base));
    causes
}

/// Validates a VM. Errors from defaulting its template (a binding the cluster forbids) come
/// back as the outer `Err`, which upstream answers with a plain 400.
pub fn vm(vm: &VirtualMachine, cfg: &ClusterConfig) -> Result<Vec<Cause>, DefaultsError> {
    let mut causes = Vec::new();
    let spec_path = FieldPath::new("spec");
    let template = spec_path.child("template").child("spec");
    match vm.spec.template.spec.as_ref() {
        None => causes.push(Cause::new(
            Required,
            &spec_path.child("template"),
            "missing virtual machine template.",
        )),
        Some(spec) => {
            let mut defaulted = spec.clone();
            defaults::vmi_spec(&mut defaulted, cfg)?;
            causes.extend(vmi_spec(&defaulted, &template, cfg));
        }
    }
    causes.extend(data_volume_templates(vm));
    causes.extend(run_strategy(vm, cfg));
    Ok(causes)
}

/// What a VM gets back as warnings (not refusals).
pub fn vm_warnings(vm: &VirtualMachine) -> Vec<String> {
    let mut out = Vec::new();
    if vm.spec.running.is_some() {
        out.push("spec.running is deprecated, please use spec.runStrategy instead.".to_string());
    }
    out
}

fn run_strategy(vm: &VirtualMachine, cfg: &ClusterConfig) -> Vec<Cause> {
    use crate::v1::run_strategies as rs;
    let running = FieldPath::new("spec").child("running");
    let field = FieldPath::new("spec").child("runStrategy");
    match (vm.spec.running, vm.spec.run_strategy.as_deref()) {
        (Some(_), Some(_)) => vec![Cause::new(
            Invalid,
            &running,
            "Running and RunStrategy are mutually exclusive. Note that Running is deprecated, please use RunStrategy instead",
        )],
        (None, None) => vec![Cause::new(
            Invalid,
            &running,
            "RunStrategy must be specified",
        )],
        (_, Some(rs::WAIT_AS_RECEIVER)) if !cfg.gate("DecentralizedLiveMigration") => {
            vec![Cause::new(
                Invalid,
                &field,
                "Invalid RunStrategy (WaitAsReceiver), DecentralizedLiveMigration feature gate is not enabled in kubevirt resource",
            )]
        }
        (_, Some(s))
            if ![
                rs::HALTED,
                rs::MANUAL,
                rs::ALWAYS,
                rs::RERUN_ON_FAILURE,
                rs::ONCE,
                rs::WAIT_AS_RECEIVER,
            ]
            .contains(&s) =>
        {
            vec![Cause::new(
                Invalid,
                &field,
                format!("Invalid RunStrategy ({s})"),
            )]
        }
        _ => Vec::new(),
    }
}

fn data_volume_templates(vm: &VirtualMachine) -> Vec<Cause> {
    let mut causes = Vec::new();
    let volumes = vm
        .spec
        .template
        .spec
        .as_ref()
        .map(|s| s.volumes.as_slice())
        .unwrap_or_default();
    for (i, dvt) in vm.spec.data_volume_templates.iter().enumerate() {
        let t = FieldPath::new("spec").child("dataVolumeTemplates").index(i);
        let name = dvt
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default();
        let spec = &dvt.spec;
        let external = spec
            .pvc
            .as_ref()
            .is_some_and(|p| p.data_source.is_some() || p.data_source_ref.is_some());
        let source_count = spec.source.as_ref().map_or(0, data_volume_source_count);
        let cause = if name.is_empty() {
            Some(Cause::new(
                Required,
                &t.child("name"),
                format!(
                    "'name' field must not be empty for DataVolumeTemplate entry {}.",
                    t.child("name")
                ),
            ))
        } else if spec.pvc.is_none() && spec.storage.is_none() {
            Some(Cause::new(
                Invalid,
                &t.child("pvc"),
                "Missing Data volume PVC or Storage",
            ))
        } else if spec.pvc.is_some() && spec.storage.is_some() {
            Some(Cause::new(
                Invalid,
                &t.child("pvc"),
                "Duplicate storage definition, both target storage and target pvc defined",
            ))
        } else if external && (spec.source.is_some() || spec.source_ref.is_some()) {
            Some(Cause::new(
                Invalid,
                &t.child("source"),
                "External population is incompatible with Source and SourceRef",
            ))
        } else if !external && spec.source.is_none() && spec.source_ref.is_none() {
            Some(Cause::new(
                Invalid,
                &t.child("source").child("sourceRef"),
                "Data volume should have either Source, SourceRef, or be externally populated",
            ))
        } else if spec.source.is_some() && source_count == 0 {
            Some(Cause::new(
                Invalid,
                &t.child("source"),
                "Missing dataVolume valid source",
            ))
        } else if source_count > 1 {
            Some(Cause::new(
                Invalid,
                &t.child("source"),
                "Multiple dataVolume sources",
            ))
        } else if !volumes.iter().any(|v| {
            let s = &v.volume_source;
            s.data_volume.as_ref().is_some_and(|d| d.name == name)
                || s.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|p| p.claim_name == name)
        }) {
            Some(Cause::new(
                Required,
                &t,
                format!(
                    "DataVolumeTemplate entry {t} must be referenced in the VMI template's 'volumes' list"
                ),
            ))
        } else {
            None
        };
        causes.extend(cause);
    }
    causes
}

fn data_volume_source_count(s: &crate::cdi::DataVolumeSource) -> usize {
    [
        s.blank.is_some(),
        s.gcs.is_some(),
        s.http.is_some(),
        s.imageio.is_some(),
        s.pvc.is_some(),
        s.registry.is_some(),
        s.s3.is_some(),
        s.snapshot.is_some(),
        s.upload.is_some(),
        s.vddk.is_some(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count()
}

/// The checks shared by VMIs (`base` = `spec`) and VM templates (`spec.template.spec`).
pub fn vmi_spec(
    spec: &VirtualMachineInstanceSpec,
    base: &FieldPath,
    cfg: &ClusterConfig,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let domain = base.child("domain");
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        let errs = dns_label(h);
        if !errs.is_empty() {
            let f = base.child("hostname");
            causes.push(Cause::new(
                Invalid,
                &f,
                format!(
                    "{f} does not conform to the kubernetes DNS_LABEL rules : {}",
                    errs.join(", ")
                ),
            ));
        }
    }
    if let Some(s) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        let errs = dns_subdomain(s);
        if !errs.is_empty() {
            let f = base.child("subdomain");
            causes.push(Cause::new(
                Invalid,
                &f,
                format!(
                    "{f} does not conform to the kubernetes DNS_SUBDOMAIN rules : {}",
                    errs.join(", ")
                ),
            ));
        }
    }
    causes.extend(resources(spec, &domain));
    causes.extend(machine_type(spec, &domain, cfg));
    causes.extend(cpu(spec, &domain));
    if let Some(s) = spec.start_strategy.as_deref() {
        let f = base.child("startStrategy");
        if s != crate::v1::start_strategies::PAUSED {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} is set with an unrecognized option: {s}"),
            ));
        } else if spec.liveness_probe.is_some() {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!(
                    "either {f} or {} should be provided.Pausing VMI with LivenessProbe is not supported",
                    base.child("livenessProbe")
                ),
            ));
        }
    }
    causes.extend(networks(spec, base, cfg));
    causes.extend(boot_order_and_disk_volumes(spec, &domain));
    causes.extend(inputs_and_io_threads(spec, &domain));
    for (probe, name) in [
        (&spec.readiness_probe, "readinessProbe"),
        (&spec.liveness_probe, "livenessProbe"),
    ] {
        if let Some(p) = probe {
            causes.extend(self::probe(p, &base.child(name), spec));
        }
    }
    causes.extend(disks(
        &spec.domain.devices.disks,
        &domain.child("devices").child("disks"),
    ));
    causes.extend(firmware(spec, &domain));
    causes.extend(volumes(spec, base, cfg));
    if !spec.utility_volumes.is_empty() {
        causes.push(Cause::new(
            Invalid,
            &base.child("utilityVolumes"),
            "cannot create VMI with utility volumes in spec, utility volumes can only be added via hotplug",
        ));
    }
    causes.extend(access_credentials(spec, base));
    if let Some(p) = spec.dns_policy.as_deref().filter(|p| !p.is_empty())
        && !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&p)
    {
        causes.push(Cause::new(
                NotSupported,
                &base.child("dnsPolicy"),
                format!("DNSPolicy: {p} is not supported, valid values: [ClusterFirstWithHostNet ClusterFirst Default None ]"),
            ));
    }
    let eviction = spec
        .eviction_strategy
        .as_deref()
        .or(cfg.eviction_strategy.as_deref());
    if let Some(e) = eviction
        && !["LiveMigrate", "LiveMigrateIfPossible", "None", "External"].contains(&e)
    {
        let f = base.child("evictionStrategy");
        causes.push(Cause::new(
            Invalid,
            &f,
            format!("{f} is set with an unrecognized option: {e}"),
        ));
    }
    if !spec.domain.devices.host_devices.is_empty() && !cfg.gate("HostDevices") {
        causes.push(Cause::new(
            Invalid,
            &base.child("HostDevices"),
            "Host Devices feature gate is not enabled in kubevirt-config",
        ));
    }
    if let Some(sound) = spec.domain.devices.sound.as_ref() {
        let f = base.child("Sound");
        if !matches!(sound.model.as_deref().unwrap_or(""), "" | "ich9" | "ac97") {
            causes.push(Cause::new(
                Invalid,
                &f,
                "Sound device type is not supported. Options: 'ich9' or 'ac97'",
            ));
        }
        if sound.name.is_empty() {
            causes.push(Cause::new(
                Invalid,
                &f,
                "Sound device requires a name field.",
            ));
        }
    }
    if spec.domain.devices.autoattach_vsock == Some(true) && !cfg.gate("VSOCK") {
        causes.push(Cause::new(
            Invalid,
            &domain.child("devices").child("autoattachVSOCK"),
            "VSOCK feature gate is not enabled in kubevirt-config",
        ));
    }
    if spec.domain.devices.downward_metrics.is_some() && !cfg.gate("DownwardMetrics") {
        causes.push(Cause::new(
            Invalid,
            &domain.child("devices").child("downwardMetrics"),
            "downwardMetrics virtio serial is not allowed: DownwardMetrics feature gate is not enabled",
        ));
    }
    if spec.domain.devices.video.is_some()
        && spec.domain.devices.autoattach_graphics_device == Some(false)
    {
        causes.push(Cause::new(
            Invalid,
            &base.child("video"),
            "Video configuration is not allowed when autoattachGraphicsDevice is set to false",
        ));
    }
    for (i, p) in spec.domain.devices.panic_devices.iter().enumerate() {
        if let Some(m) = p.model.as_deref()
            && !["hyperv", "isa", "pvpanic"].contains(&m)
        {
            causes.push(Cause::new(
                Invalid,
                &domain
                    .child("devices")
                    .child("panicDevices")
                    .index(i)
                    .child("model"),
                format!("invalid PanicDeviceModel({m})"),
            ));
        }
    }
    if spec.domain.reboot_policy.is_some() && !cfg.gate("RebootPolicy") {
        causes.push(Cause::new(
            Invalid,
            &domain.child("rebootPolicy"),
            "RebootPolicy is specified but the RebootPolicy feature gate is not enabled",
        ));
    }
    if spec
        .domain
        .memory
        .as_ref()
        .is_some_and(|m| m.reserved_overhead.is_some())
        && !cfg.gate("ReservedOverheadMemlock")
    {
        causes.push(Cause::new(
            Invalid,
            &domain.child("memory").child("reservedOverhead"),
            "Reserved overhead memlock feature gate is not enabled in kubevirt-config",
        ));
    }
    causes
}

// ---- names --------------------------------------------------------------------------------

const DNS_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Kubernetes' DNS-1123 label checks, one message per broken rule.
pub fn dns_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if s.contains('.') {
        out.push("must not contain dots".to_string());
    }
    if !is_label(s) {
        out.push(DNS_LABEL_MSG.to_string());
    }
    out
}

/// Kubernetes' DNS-1123 subdomain checks.
pub fn dns_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(is_label) {
        out.push(DNS_SUBDOMAIN_MSG.to_string());
    }
    out
}

// ---- resources, machine, cpu ----------------------------------------------------------------

fn quantity(
    map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    key: &str,
) -> Option<(Amount, String)> {
    map.get(key)
        .and_then(|q| Amount::parse(&q.0).ok().map(|a| (a, q.0.clone())))
}

fn resources(spec: &VirtualMachineInstanceSpec, domain: &FieldPath) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(res) = spec.domain.resources.as_ref() else {
        return causes;
    };
    let rpath = domain.child("resources");
    for (map, kind) in [(&res.requests, "requests"), (&res.limits, "limits")] {
        for (name, q) in map {
            if Amount::parse(&q.0).is_err() {
                let f = rpath.child(kind).child(name);
                causes.push(Cause::new(
                    Invalid,
                    &f,
                    format!(
                        "{f} '{}': {}",
                        q.0,
                        crate::quantity::ParseError(q.0.clone())
                    ),
                ));
            }
        }
    }
    let req_mem = quantity(&res.requests, "memory");
    let lim_mem = quantity(&res.limits, "memory");
    let one_meg = Amount::parse("1M").unwrap_or(Amount::ZERO);
    if let Some((a, s)) = &req_mem {
        let f = rpath.child("requests").child("memory");
        if a.is_negative() {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} '{s}': must be greater than or equal to 0."),
            ));
        } else if !a.is_zero() && *a < one_meg {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} '{s}': must be greater than or equal to 1M."),
            ));
        }
    }
    if let Some((a, s)) = &lim_mem {
        let f = rpath.child("limits").child("memory");
        if a.is_negative() {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} '{s}': must be greater than or equal to 0."),
            ));
        }
    }
    if let (Some((req, rs)), Some((lim, ls))) = (&req_mem, &lim_mem)
        && !lim.is_zero()
        && req > lim
    {
        let f = rpath.child("requests").child("memory");
        causes.push(Cause::new(
            Invalid,
            &f,
            format!(
                "{f} '{rs}' is greater than {} '{ls}'",
                rpath.child("limits").child("memory")
            ),
        ));
    }
    if let Some(hp) = spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.hugepages.as_ref())
    {
        let pf = domain.child("memory").child("hugepages").child("pageSize");
        let page = hp.page_size.as_deref().unwrap_or("");
        match Amount::parse(page) {
            Err(e) => causes.push(Cause::new(Invalid, &pf, format!("{pf} '{page}': {e}"))),
            Ok(page_amount) => {
                let guest = spec
                    .domain
                    .memory
                    .as_ref()
                    .and_then(|m| m.guest.as_ref())
                    .and_then(|g| Amount::parse(&g.0).ok());
                let used = req_mem
                    .as_ref()
                    .map(|r| r.0)
                    .or(guest)
                    .or(lim_mem.as_ref().map(|l| l.0));
                let shown = req_mem.as_ref().map(|r| r.1.clone()).unwrap_or_default();
                let f = rpath.child("requests").child("memory");
                if let Some(used) = used.filter(|u| !u.is_zero()) {
                    if used < page_amount {
                        causes.push(Cause::new(
                            Invalid,
                            &f,
                            format!("{f} '{shown}' must be equal to or larger than page size {pf} '{page}'"),
                        ));
                    } else if page_amount.milli() != 0 && used.milli() % page_amount.milli() != 0 {
                        causes.push(Cause::new(
                            Invalid,
                            &f,
                            format!(
                                "{f} '{shown}' is not a multiple of the page size {pf} '{page}'"
                            ),
                        ));
                    }
                }
            }
        }
    }
    for kind in ["requests", "limits"] {
        let map = if kind == "requests" {
            &res.requests
        } else {
            &res.limits
        };
        if let Some((_, s)) = quantity(map, "cpu").filter(|(a, _)| a.is_negative()) {
            let f = rpath.child(kind).child("cpu");
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} '{s}': must be greater than or equal to 0."),
            ));
        }
    }
    if let (Some((req, rs)), Some((lim, ls))) =
        (quantity(&res.requests, "cpu"), quantity(&res.limits, "cpu"))
        && !lim.is_zero()
        && req > lim
    {
        let f = rpath.child("requests").child("cpu");
        causes.push(Cause::new(
            Invalid,
            &f,
            format!(
                "{f} '{rs}' is greater than {} '{ls}'",
                rpath.child("limits").child("cpu")
            ),
        ));
    }
    causes
}

/// Glob matching with `*` only, as machine type patterns use.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.len() >= head.len() && s.starts_with(head) && {
                let rest = &s[head.len()..];
                (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
            }
        }
    }
}

fn machine_type(
    spec: &VirtualMachineInstanceSpec,
    domain: &FieldPath,
    cfg: &ClusterConfig,
) -> Vec<Cause> {
    let Some(m) = spec
        .domain
        .machine
        .as_ref()
        .and_then(|m| m.type_.as_deref())
        .filter(|m| !m.is_empty())
    else {
        return Vec::new();
    };
    let arch = spec
        .architecture
        .as_deref()
        .unwrap_or(&cfg.default_architecture);
    let allowed = cfg.emulated_machines(arch);
    if allowed.iter().any(|p| glob(p, m)) {
        return Vec::new();
    }
    let f = domain.child("machine").child("type");
    vec![Cause::new(
        Invalid,
        &f,
        format!(
            "{f} is not supported: {m} (allowed values: [{}])",
            allowed.join(" ")
        ),
    )]
}

fn cpu(spec: &VirtualMachineInstanceSpec, domain: &FieldPath) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(cpu) = spec.domain.cpu.as_ref() else {
        return causes;
    };
    let cpath = domain.child("cpu");
    let dedicated = cpu.dedicated_cpu_placement == Some(true);
    if dedicated {
        let res = spec.domain.resources.clone().unwrap_or_default();
        let rpath = domain.child("resources");
        let f = cpath.child("dedicatedCpuPlacement");
        let mem = spec.domain.memory.as_ref();
        if quantity(&res.requests, "memory").is_none()
            && quantity(&res.limits, "memory").is_none()
            && mem.and_then(|m| m.hugepages.as_ref()).is_none()
            && mem.and_then(|m| m.guest.as_ref()).is_none()
        {
            causes.push(Cause::new(
                Invalid,
                &rpath.child("limits").child("memory"),
                format!(
                    "{}, {}, {} or {} should be provided",
                    rpath.child("requests").child("memory"),
                    rpath.child("limits").child("memory"),
                    domain.child("memory").child("hugepages"),
                    domain.child("memory").child("guest")
                ),
            ));
        }
        let req = quantity(&res.requests, "cpu");
        let lim = quantity(&res.limits, "cpu");
        if req.as_ref().is_some_and(|(a, _)| !a.is_whole()) {
            causes.push(Cause::new(
                Invalid,
                &rpath.child("requests").child("cpu"),
                "provided resources CPU requests must be an interger",
            ));
        }
        if lim.as_ref().is_some_and(|(a, _)| !a.is_whole()) {
            causes.push(Cause::new(
                Invalid,
                &rpath.child("limits").child("cpu"),
                "provided resources CPU limits must be an interger",
            ));
        }
        let vcpus = i128::from(cpu.sockets.unwrap_or(1).max(1))
            * i128::from(cpu.cores.unwrap_or(1).max(1))
            * i128::from(cpu.threads.unwrap_or(1).max(1));
        let topology = cpu.cores.unwrap_or(0) != 0
            || cpu.sockets.unwrap_or(0) != 0
            || cpu.threads.unwrap_or(0) != 0;
        let (rq, lq) = (
            rpath.child("requests").child("cpu"),
            rpath.child("limits").child("cpu"),
        );
        if req.is_none() && lim.is_none() && !topology {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("either {rq} or {lq} or {} must be provided when DedicatedCPUPlacement is true ", cpath.child("cores")),
            ));
        } else if let (Some((r, _)), Some((l, _))) = (&req, &lim)
            && r != l
        {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{rq} or {lq} must be equal when DedicatedCPUPlacement is true "),
            ));
        }
        let given = req.as_ref().or(lim.as_ref()).map(|(a, _)| a.ceil_units());
        if topology && given.is_some_and(|g| g != vcpus) {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!(
                    "{rq} or {lq} must not be provided at the same time with {} when DedicatedCPUPlacement is true ",
                    cpath.child("cores")
                ),
            ));
        }
        if cpu.threads.unwrap_or(0) > 2 {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!(
                    "Not more than two threads must be provided at {} (got {}) when DedicatedCPUPlacement is true",
                    cpath.child("threads"),
                    cpu.threads.unwrap_or(0)
                ),
            ));
        }
    }
    if cpu.isolate_emulator_thread == Some(true) && !dedicated {
        causes.push(Cause::new(
            Invalid,
            &cpath.child("isolateEmulatorThread"),
            "IsolateEmulatorThread should be only set in combination with DedicatedCPUPlacement",
        ));
    }
    for (i, feat) in cpu.features.iter().enumerate() {
        let policy = feat.policy.as_deref().unwrap_or("");
        if !["", "force", "require", "optional", "disable", "forbid"].contains(&policy) {
            causes.push(Cause::new(
                NotSupported,
                &cpath.child("features").index(i).child("policy"),
                format!(
                    "CPU feature {} uses policy {policy} that is not supported.",
                    feat.name
                ),
            ));
        }
    }
    if let (Some(max), Some(s)) = (cpu.max_sockets.filter(|m| *m != 0), cpu.sockets)
        && s > max
    {
        causes.push(Cause::new(
            Invalid,
            &cpath.child("sockets"),
            "Number of sockets in CPU topology is greater than the maximum sockets allowed",
        ));
    }
    if cpu.realtime.is_some() {
        if !dedicated {
            let f = cpath.child("dedicatedCpuPlacement");
            causes.push(Cause::new(
                Required,
                &f,
                format!(
                    "{f} must be set to true when {} is used",
                    cpath.child("realtime")
                ),
            ));
        }
        if cpu
            .numa
            .as_ref()
            .and_then(|n| n.guest_mapping_passthrough.as_ref())
            .is_none()
        {
            let f = cpath.child("numa").child("guestMappingPassthrough");
            causes.push(Cause::new(
                Required,
                &f,
                format!(
                    "{f} must be defined when {} is used",
                    cpath.child("realtime")
                ),
            ));
        }
    }
    causes
}

// ---- disks ----------------------------------------------------------------------------------

/// The bus of a disk's target (disk, then lun, then cdrom) and the target's JSON name.
fn target_bus(d: &Disk) -> Option<(&'static str, &str)> {
    let dd = &d.disk_device;
    if let Some(t) = dd.disk.as_ref() {
        return Some(("disk", t.bus.as_deref().unwrap_or("")));
    }
    if let Some(t) = dd.lun.as_ref() {
        return Some(("lun", t.bus.as_deref().unwrap_or("")));
    }
    dd.cdrom
        .as_ref()
        .map(|t| ("cdrom", t.bus.as_deref().unwrap_or("")))
}

fn valid_pci_address(s: &str) -> bool {
    // dddd:bb:ss.f (hex domain, bus, slot, function)
    let parts: Vec<&str> = s.split([':', '.']).collect();
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    parts.len() == 4 && hex(parts[0], 4) && hex(parts[1], 2) && hex(parts[2], 2) && hex(parts[3], 1)
}

/// `list[i] and list[j] must not have the same Name.` for every name seen before at index j.
fn duplicate_names<'a>(names: impl Iterator<Item = &'a str>, list: &FieldPath) -> Vec<Cause> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut causes = Vec::new();
    for (i, name) in names.enumerate() {
        match seen.get(name) {
            Some(j) => {
                let at = list.index(i);
                causes.push(Cause::new(
                    Invalid,
                    &at.child("name"),
                    format!("{at} and {} must not have the same Name.", list.index(*j)),
                ));
            }
            None => {
                seen.insert(name, i);
            }
        }
    }
    causes
}

/// Checks each disk on its own and against the earlier ones.
pub fn disks(disks: &[Disk], f: &FieldPath) -> Vec<Cause> {
    let mut causes = duplicate_names(disks.iter().map(|d| d.name.as_str()), f);
    for (i, d) in disks.iter().enumerate() {
        let di = f.index(i);
        let dd = &d.disk_device;
        let targets = [dd.disk.is_some(), dd.lun.is_some(), dd.cdrom.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if targets > 1 {
            causes.push(Cause::new(
                Invalid,
                &di,
                format!("{di} can only have a single target type defined"),
            ));
        }
        if let Some(pci) = dd.disk.as_ref().and_then(|t| t.pci_address.as_deref()) {
            let pf = di.child("disk").child("pciAddress");
            if dd.disk.as_ref().and_then(|t| t.bus.as_deref()) != Some("virtio") {
                causes.push(Cause::new(
                    Invalid,
                    &pf,
                    format!(
                        "disk {} - setting a PCI address is only possible with bus type virtio.",
                        d.name
                    ),
                ));
            } else if !valid_pci_address(pci) {
                causes.push(Cause::new(
                    Invalid,
                    &pf,
                    format!("disk {} has malformed PCI address ({pci}).", d.name),
                ));
            }
        }
        if d.boot_order == Some(0) {
            causes.push(Cause::new(
                Invalid,
                &di.child("bootOrder"),
                format!("{di} must have a boot order > 0, if supplied"),
            ));
        }
        if let Some((target, bus)) = target_bus(d).filter(|(_, b)| !b.is_empty()) {
            let bf = di.child(target).child("bus");
            if bus == "ide" {
                causes.push(Cause::new(Invalid, &bf, "IDE bus is not supported"));
            } else if target == "cdrom" && bus == "virtio" {
                causes.push(Cause::new(
                    Invalid,
                    &bf,
                    "Bus type virtio is invalid for CD-ROM device",
                ));
            } else if target == "disk"
                && bus == "sata"
                && dd.disk.as_ref().and_then(|t| t.readonly) == Some(true)
            {
                causes.push(Cause::new(
                    Invalid,
                    &bf,
                    "sata hard-disks do not support read-only.",
                ));
            } else if !["virtio", "scsi", "sata", "usb"].contains(&bus) {
                causes.push(Cause::new(
                    Invalid,
                    &bf,
                    format!("{di} is set with an unrecognized bus {bus}, must be one of: [virtio scsi sata usb]"),
                ));
            }
            if d.dedicated_io_thread == Some(true) && bus != "virtio" {
                causes.push(Cause::new(
                    NotSupported,
                    &di.child("dedicatedIOThread"),
                    format!("IOThreads are not supported for disks on a {bus} bus"),
                ));
            }
        }
        if let Some(serial) = d.serial.as_deref() {
            let sf = di.child("serial");
            if !serial
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
                || serial.is_empty()
            {
                causes.push(Cause::new(
                    Invalid,
                    &sf,
                    format!("{di} must be made up of the following characters [A-Za-z0-9_.+-], if specified"),
                ));
            }
            if serial.chars().count() > 256 {
                causes.push(Cause::new(
                    Invalid,
                    &sf,
                    format!("{di} must be less than or equal to 256 in length, if specified"),
                ));
            }
        }
        if let Some(cache) = d.cache.as_deref()
            && !["none", "writethrough", "writeback"].contains(&cache)
        {
            causes.push(Cause::new(
                Invalid,
                &di.child("cache"),
                format!("{di}.cache has invalid value {cache}"),
            ));
        }
        if let Some(io) = d.io.as_deref()
            && !["native", "threads"].contains(&io)
        {
            causes.push(Cause::new(
                NotSupported,
                &di.child("io"),
                format!(
                    "Disk IO mode for {f} is not supported. Supported modes are: native, threads."
                ),
            ));
        }
        if let Some(p) = d.error_policy.as_deref()
            && !["stop", "ignore", "report", "enospace"].contains(&p)
        {
            causes.push(Cause::new(
                Invalid,
                &di.child("errorPolicy"),
                format!("{di}.errorPolicy has invalid value \"{p}\""),
            ));
        }
        for msg in dns_label(&d.name) {
            causes.push(Cause::new(Invalid, &di.child("name"), msg));
        }
        if let Some(bs) = d.block_size.as_ref() {
            causes.extend(block_size(
                bs,
                &di,
                target_bus(d).map(|t| t.1).unwrap_or(""),
            ));
        }
    }
    causes
}

fn block_size(bs: &crate::v1::BlockSize, di: &FieldPath, bus: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let matching = bs
        .match_volume
        .as_ref()
        .is_some_and(|m| m.enabled != Some(false));
    let Some(custom) = bs.custom.as_ref() else {
        return causes;
    };
    if matching {
        causes.push(Cause::new(
            Invalid,
            &di.child("blockSize"),
            "Block size matching can't be enabled together with a custom value",
        ));
        return causes;
    }
    let cf = di.child("blockSize").child("custom");
    let (logical, physical) = (custom.logical.unwrap_or(0), custom.physical.unwrap_or(0));
    for (name, v) in [("logical", logical), ("physical", physical)] {
        let f = cf.child(name);
        if v < 512 {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("Provided size of {v} is less than the supported minimum size of 512"),
            ));
        } else if v > 2_097_152 {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!(
                    "Provided size of {v} is greater than the supported maximum size of 2097152"
                ),
            ));
        } else if !v.is_power_of_two() {
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("Provided size of {v} is not a power of 2"),
            ));
        }
    }
    if logical > physical {
        causes.push(Cause::new(
            Invalid,
            &cf.child("logical"),
            format!("Logical size {logical} must be the same or less than the physical size of {physical}"),
        ));
    } else if bus == "sata" && logical != 512 {
        causes.push(Cause::new(
            Invalid,
            &cf.child("logical"),
            format!("Logical size {logical} must be 512 for SATA devices"),
        ));
    }
    if let Some(g) = custom
        .discard_granularity
        .filter(|g| logical != 0 && g % logical != 0)
    {
        causes.push(Cause::new(
            Invalid,
            &cf.child("discardGranularity"),
            format!("Discard granularity {g} must be multiples of logical size {logical}"),
        ));
    }
    causes
}

// ---- disks against volumes, boot order -----------------------------------------------------

fn boot_order_and_disk_volumes(
    spec: &VirtualMachineInstanceSpec,
    domain: &FieldPath,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let f = domain.child("devices").child("disks");
    // Boot orders are shared between disks and interfaces: each number names one device.
    let mut orders: BTreeSet<u32> = BTreeSet::new();
    for (i, d) in spec.domain.devices.disks.iter().enumerate() {
        let di = f.index(i);
        let volume = spec.volumes.iter().find(|v| v.name == d.name);
        if volume.is_none() && d.disk_device.cdrom.is_none() {
            causes.push(Cause::new(
                Invalid,
                &di.child("name"),
                format!("{di}.Name '{}' not found.", d.name),
            ));
        }
        if let (Some(v), Some(_)) = (volume, d.disk_device.lun.as_ref()) {
            let s = &v.volume_source;
            if s.persistent_volume_claim.is_none() && s.data_volume.is_none() {
                let lf = di.child("lun");
                causes.push(Cause::new(
                    Invalid,
                    &lf,
                    format!(
                        "{lf} can only be mapped to a DataVolume or PersistentVolumeClaim volume."
                    ),
                ));
            }
        }
        if let Some(order) = d.boot_order.filter(|o| *o > 0)
            && !orders.insert(order)
        {
            let bf = di.child("bootOrder");
            causes.push(Cause::new(
                Invalid,
                &bf,
                format!("Boot order for {bf} already set for a different device."),
            ));
        }
    }
    let ifaces = domain.child("devices").child("interfaces");
    for (i, iface) in spec.domain.devices.interfaces.iter().enumerate() {
        let Some(order) = iface.boot_order else {
            continue;
        };
        let fi = ifaces.index(i);
        let bf = fi.child("bootOrder");
        if order < 1 {
            causes.push(Cause::new(
                Invalid,
                &bf,
                format!("{fi} must have a boot order > 0, if supplied"),
            ));
        } else if !orders.insert(order) {
            causes.push(Cause::new(
                Invalid,
                &bf,
                format!("Boot order for {bf} already set for a different device."),
            ));
        }
    }
    causes
}

fn inputs_and_io_threads(spec: &VirtualMachineInstanceSpec, domain: &FieldPath) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, input) in spec.domain.devices.inputs.iter().enumerate() {
        let fi = domain.child("devices").child("inputs").index(i);
        if !matches!(input.bus.as_deref().unwrap_or(""), "" | "virtio" | "usb") {
            causes.push(Cause::new(
                Invalid,
                &fi.child("bus"),
                "Input device can have only virtio or usb bus.",
            ));
        }
        if input.type_ != crate::v1::input_type::TABLET {
            causes.push(Cause::new(
                Invalid,
                &fi.child("type"),
                "Input device can have only tablet type.",
            ));
        }
    }
    if let Some(p) = spec.domain.io_threads_policy.as_deref() {
        let count = spec
            .domain
            .io_threads
            .as_ref()
            .and_then(|t| t.supplemental_pool_thread_count);
        if !["shared", "auto", "supplementalPool"].contains(&p) {
            causes.push(Cause::new(
                Invalid,
                &domain.child("ioThreadsPolicy"),
                format!("Invalid IOThreadsPolicy ({p})"),
            ));
        } else if p == "supplementalPool" && count.unwrap_or(0) <= 0 {
            causes.push(Cause::new(
                Invalid,
                &domain.child("ioThreads").child("count"),
                "the number of iothreads needs to be set and positive for the dedicated policy",
            ));
        }
    }
    causes
}

/// VMI only: every volume needs a disk or filesystem that uses it.
fn volumes_have_devices(spec: &VirtualMachineInstanceSpec, base: &FieldPath) -> Vec<Cause> {
    let devices = &spec.domain.devices;
    spec.volumes
        .iter()
        .enumerate()
        .filter(|(_, v)| v.volume_source.memory_dump.is_none())
        .filter(|(_, v)| {
            !devices.disks.iter().any(|d| d.name == v.name)
                && !devices.filesystems.iter().any(|f| f.name == v.name)
        })
        .map(|(i, v)| {
            let f = base.child("volumes").index(i).child("name");
            Cause::new(Invalid, &f, format!("{f} '{}' not found.", v.name))
        })
        .collect()
}

/// VMI only: some memory must be asked for.
fn memory_is_requested(spec: &VirtualMachineInstanceSpec, base: &FieldPath) -> Vec<Cause> {
    let requested = spec
        .domain
        .resources
        .as_ref()
        .and_then(|r| quantity(&r.requests, "memory"))
        .is_some_and(|(a, _)| !a.is_zero());
    let mem = spec.domain.memory.as_ref();
    if requested || mem.is_some_and(|m| m.guest.is_some() || m.hugepages.is_some()) {
        return Vec::new();
    }
    let d = base.child("domain");
    vec![Cause::new(
        Required,
        &FieldPath::new(""),
        format!(
            "no memory requested, at least one of '{}', '{}' or '{}' must be set",
            d.child("memory").child("guest"),
            d.child("memory").child("hugepages").child("pageSize"),
            d.child("resources").child("requests").child("memory")
        ),
    )]
}

/// VMI only: the architecture and what it allows.
fn architecture(spec: &VirtualMachineInstanceSpec, base: &FieldPath) -> Vec<Cause> {
    let mut causes = Vec::new();
    let arch = spec.architecture.as_deref().unwrap_or("amd64");
    if !["amd64", "arm64", "s390x"].contains(&arch) {
        causes.push(Cause::new(
            Invalid,
            &base.child("architecture"),
            format!("unsupported architecture: {arch}"),
        ));
        return causes;
    }
    let devices = &spec.domain.devices;
    let dpath = base.child("domain").child("devices");
    if arch == "amd64" {
        if let Some(w) = devices.watchdog.as_ref()
            && w.watchdog_device.i6300esb.is_none()
        {
            causes.push(Cause::new(
                NotSupported,
                &dpath.child("watchdog"),
                "amd64 only supports I6300ESB watchdog device",
            ));
        }
        if let Some(t) = devices.video.as_ref().and_then(|v| v.type_.as_deref())
            && !["vga", "cirrus", "virtio", "ramfb", "bochs"].contains(&t)
        {
            causes.push(Cause::new(
                NotSupported,
                &dpath.child("video").child("type"),
                format!("video model '{t}' is not supported on amd64 architecture"),
            ));
        }
    }
    causes
}

fn firmware(spec: &VirtualMachineInstanceSpec, domain: &FieldPath) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(fw) = spec.domain.firmware.as_ref() else {
        return causes;
    };
    let fwp = domain.child("firmware");
    if let Some(bl) = fw.bootloader.as_ref() {
        if bl.efi.is_some() && bl.bios.is_some() {
            let f = fwp.child("bootloader");
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} has both EFI and BIOS configured, but they are mutually exclusive."),
            ));
        }
        if let Some(efi) = bl.efi.as_ref() {
            let smm = spec
                .domain
                .features
                .as_ref()
                .and_then(|f| f.smm.as_ref())
                .is_some_and(|s| s.enabled != Some(false));
            if efi.secure_boot != Some(false) && !smm {
                causes.push(Cause::new(
                    Invalid,
                    domain,
                    format!("{domain} has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently disabled."),
                ));
            }
        }
    }
    if let Some(kb) = fw.kernel_boot.as_ref() {
        let kp = fwp.child("kernelBoot");
        match kb.container.as_ref() {
            None if kb.kernel_args.as_deref().is_some_and(|a| !a.is_empty()) => {
                causes.push(Cause::new(
                    Invalid,
                    &kp.child("kernelArgs"),
                    "kernel arguments cannot be provided without an external kernel",
                ))
            }
            None => {}
            Some(c) => {
                let cp = kp.child("container");
                if c.image.is_empty() {
                    causes.push(Cause::new(
                        Required,
                        &cp.child("image"),
                        format!("{cp} must be defined with an image"),
                    ));
                }
                let (k, i) = (
                    c.kernel_path.as_deref().unwrap_or(""),
                    c.initrd_path.as_deref().unwrap_or(""),
                );
                if k.is_empty() && i.is_empty() {
                    causes.push(Cause::new(
                        Required,
                        &cp,
                        format!("{cp} must be defined with at least one of the following: kernelPath, initrdPath"),
                    ));
                }
                for (p, name) in [(k, "kernelPath"), (i, "initrdPath")] {
                    causes.extend(container_path(p, &cp.child(name)));
                }
            }
        }
    }
    causes
}

fn container_path(p: &str, f: &FieldPath) -> Option<Cause> {
    if p.is_empty() {
        None
    } else if p == "/" {
        Some(Cause::new(
            Invalid,
            f,
            format!("{f} must not point to root"),
        ))
    } else if !p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") {
        Some(Cause::new(
            Invalid,
            f,
            format!("{f} must be an absolute path to a file without relative components"),
        ))
    } else {
        None
    }
}

// ---- probes -------------------------------------------------------------------------------

fn probe(p: &Probe, f: &FieldPath, spec: &VirtualMachineInstanceSpec) -> Vec<Cause> {
    let h = &p.handler;
    let n = [
        h.http_get.is_some(),
        h.tcp_socket.is_some(),
        h.exec.is_some(),
        h.guest_agent_ping.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let mut causes = Vec::new();
    if n > 1 {
        causes.push(Cause::new(
            Invalid,
            f,
            format!("{f} must have exactly one probe type set"),
        ));
    } else if n == 0 {
        causes.push(Cause::new(
            Required,
            f,
            format!(
                "either {f}.tcpSocket, {f}.exec or {f}.httpGet must be set if a {f} is specified"
            ),
        ));
    }
    let pod_network = spec.networks.iter().any(|n| n.network_source.pod.is_some());
    if !pod_network {
        for (set, name) in [
            (h.http_get.is_some(), "httpGet"),
            (h.tcp_socket.is_some(), "tcpSocket"),
        ] {
            if set {
                let hf = f.child(name);
                causes.push(Cause::new(
                    Invalid,
                    &hf,
                    format!("{hf} is only allowed if the Pod Network is attached"),
                ));
            }
        }
    }
    causes
}

// ---- networks -----------------------------------------------------------------------------

fn binding_count(i: &Interface) -> usize {
    let b = &i.interface_binding_method;
    [
        b.bridge.is_some(),
        b.masquerade.is_some(),
        b.sriov.is_some(),
        b.passt_binding.is_some(),
        i.binding.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count()
}

fn network_source_count(n: &Network) -> usize {
    let s = &n.network_source;
    [
        s.pod.is_some(),
        s.multus.is_some(),
        s.resource_claim.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count()
}

/// Parses a MAC address as Go's net.ParseMAC does (`:`, `-` or `.` forms); returns its length.
fn mac_len(s: &str) -> Option<usize> {
    let groups: Vec<&str> = if s.contains('.') {
        s.split('.').collect()
    } else {
        s.split([':', '-']).collect()
    };
    let width = if s.contains('.') { 4 } else { 2 };
    let ok = groups
        .iter()
        .all(|g| g.len() == width && g.chars().all(|c| c.is_ascii_hexdigit()));
    (ok && groups.len() > 1).then_some(groups.len() * width / 2)
}

fn is_iana_svc_name(s: &str) -> bool {
    s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn networks(
    spec: &VirtualMachineInstanceSpec,
    base: &FieldPath,
    cfg: &ClusterConfig,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let nets = &spec.networks;
    let ifaces = &spec.domain.devices.interfaces;
    let npath = base.child("networks");
    let ipath = base.child("domain").child("devices").child("interfaces");

    if nets
        .iter()
        .filter(|n| n.network_source.pod.is_some())
        .count()
        > 1
    {
        causes.push(Cause::new(
            Duplicate,
            &base.child("interfaces"),
            format!(
                "more than one interface is connected to a pod network in {}",
                base.child("interfaces")
            ),
        ));
    }
    let multus_default = nets
        .iter()
        .filter(|n| {
            n.network_source
                .multus
                .as_ref()
                .is_some_and(|m| m.default == Some(true))
        })
        .count();
    if multus_default > 1 {
        causes.push(Cause::new(
            Invalid,
            &npath,
            "Multus CNI should only have one default network",
        ));
    }
    if multus_default > 0 && nets.iter().any(|n| n.network_source.pod.is_some()) {
        causes.push(Cause::new(
            Invalid,
            &npath,
            "Pod network cannot be defined when Multus default network is defined",
        ));
    }
    for (i, n) in nets.iter().enumerate() {
        match network_source_count(n) {
            0 => causes.push(Cause::new(
                Required,
                &npath.index(i),
                "should have a network type",
            )),
            1 => {}
            _ => causes.push(Cause::new(
                Required,
                &npath.index(i),
                "should have only one network type",
            )),
        }
    }
    if let Some((i, _)) = nets.iter().enumerate().find(|(_, n)| {
        n.network_source
            .multus
            .as_ref()
            .is_some_and(|m| m.network_name.is_empty())
    }) {
        causes.push(Cause::new(
            Required,
            &npath.index(i),
            "CNI delegating plugin must have a networkName",
        ));
    }
    let by_name: BTreeMap<&str, &Network> = nets.iter().map(|n| (n.name.as_str(), n)).collect();
    for (i, iface) in ifaces.iter().enumerate() {
        let fi = ipath.index(i);
        if let Some(state) = iface.state.as_deref().filter(|s| !s.is_empty())
            && !["absent", "down", "up"].contains(&state)
        {
            causes.push(Cause::new(
                Invalid,
                &fi.child("state"),
                format!(
                    "logical {} interface state value is unsupported: {state}",
                    iface.name
                ),
            ));
        }
        if binding_count(iface) != 1 {
            causes.push(Cause::new(
                Invalid,
                &fi,
                format!(
                    "logical {} interface must have exactly one binding method or binding plugin",
                    iface.name
                ),
            ));
        }
        let net = by_name.get(iface.name.as_str());
        let on_pod = net.is_some_and(|n| n.network_source.pod.is_some());
        let b = &iface.interface_binding_method;
        if b.masquerade.is_some() {
            if !on_pod {
                causes.push(Cause::new(
                    Invalid,
                    &fi.child("name"),
                    "Masquerade interface only implemented with pod network",
                ));
            }
            if iface
                .mac_address
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("02:00:00:00:00:00"))
            {
                causes.push(Cause::new(
                    Invalid,
                    &fi.child("macAddress"),
                    "The requested MAC address is reserved for the in-pod bridge. Please choose another one.",
                ));
            }
        }
        if b.bridge.is_some() && on_pod && !cfg.permit_bridge_interface_on_pod_network {
            causes.push(Cause::new(
                Invalid,
                &fi.child("name"),
                "Bridge on pod network configuration is not enabled under kubevirt-config",
            ));
        }
        if b.passt_binding.is_some() {
            if !cfg.gate("PasstBinding") {
                causes.push(Cause::new(
                    Invalid,
                    &fi.child("name"),
                    "PasstBinding feature gate is not enabled",
                ));
            } else if !on_pod {
                causes.push(Cause::new(
                    Invalid,
                    &fi.child("name"),
                    "PasstBinding interface only implemented with pod network",
                ));
            }
        }
        for (field, name) in [
            (b.slirp.is_some(), "slirp"),
            (b.passt.is_some(), "passt"),
            (b.macvtap.is_some(), "macvtap"),
        ] {
            if field {
                let what = match name {
                    "slirp" => "Slirp interface support has been discontinued since v1.3",
                    "passt" => "Passt network binding has been discontinued since v1.3",
                    _ => "Macvtap network binding has been discontinued since v1.3",
                };
                causes.push(Cause::new(Invalid, &fi.child(name), what));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, n) in nets.iter().enumerate() {
        if !seen.insert(n.name.as_str()) {
            causes.push(Cause::new(
                Duplicate,
                &npath.index(i).child("name"),
                format!(
                    "Network with name {:?} already exists, every network must have a unique name",
                    n.name
                ),
            ));
        }
    }
    let iface_names: BTreeSet<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    for (i, n) in nets.iter().enumerate() {
        if !iface_names.contains(n.name.as_str()) {
            let f = npath.index(i).child("name");
            causes.push(Cause::new(
                Required,
                &f,
                format!("{f} '{}' not found.", n.name),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, iface) in ifaces.iter().enumerate() {
        if !seen.insert(iface.name.as_str()) {
            causes.push(Cause::new(
                Duplicate,
                &ipath.index(i).child("name"),
                "Only one interface can be connected to one specific network",
            ));
        }
    }
    for (i, iface) in ifaces.iter().enumerate() {
        let fi = ipath.index(i);
        if !by_name.contains_key(iface.name.as_str()) {
            let f = fi.child("name");
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} '{}' not found.", iface.name),
            ));
        }
        causes.extend(interface_fields(
            iface,
            &fi,
            by_name
                .get(iface.name.as_str())
                .is_some_and(|n| n.network_source.pod.is_some()),
            base,
            cfg,
        ));
    }
    causes
}

fn interface_fields(
    iface: &Interface,
    fi: &FieldPath,
    on_pod: bool,
    base: &FieldPath,
    cfg: &ClusterConfig,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = fi.child("name");
    if iface.name.is_empty()
        || !iface
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        causes.push(Cause::new(
            Invalid,
            &name,
            "Network interface name can only contain alphabetical characters, numbers, dashes (-) or underscores (_)",
        ));
    }
    if let Some(m) = iface.model.as_deref()
        && ![
            "e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio",
        ]
        .contains(&m)
    {
        causes.push(Cause::new(
            NotSupported,
            &fi.child("model"),
            format!("interface {name} uses model {m} that is not supported."),
        ));
    }
    if let Some(mac) = iface.mac_address.as_deref() {
        match mac_len(mac) {
            None => causes.push(Cause::new(
                Invalid,
                &fi.child("macAddress"),
                format!("interface {name} has malformed MAC address ({mac})."),
            )),
            Some(n) if n > 6 => causes.push(Cause::new(
                Invalid,
                &fi.child("macAddress"),
                format!("interface {name} has too long MAC address ({mac})."),
            )),
            Some(_) => {}
        }
    }
    if let Some(pci) = iface.pci_address.as_deref()
        && !valid_pci_address(pci)
    {
        causes.push(Cause::new(
            Invalid,
            &fi.child("pciAddress"),
            format!("interface {name} has malformed PCI address ({pci})."),
        ));
    }
    if on_pod {
        let mut names = BTreeSet::new();
        for (j, port) in iface.ports.iter().enumerate() {
            let pf = fi.child("ports").index(j);
            if let Some(n) = port.name.as_deref().filter(|n| !n.is_empty()) {
                if !names.insert(n) {
                    causes.push(Cause::new(
                        Duplicate,
                        &pf.child("name"),
                        format!("Duplicate name of the port: {n}"),
                    ));
                }
                if !is_iana_svc_name(n) {
                    causes.push(Cause::new(
                        Invalid,
                        &pf.child("name"),
                        format!("Invalid name of the port: {n}"),
                    ));
                }
            }
            if port.port == 0 {
                causes.push(Cause::new(
                    Required,
                    &pf.child("port"),
                    "Port field is mandatory.",
                ));
            } else if !(1..65536).contains(&port.port) {
                causes.push(Cause::new(
                    Invalid,
                    &pf.child("port"),
                    "Port field must be in range 0 < x < 65536.",
                ));
            }
            if !matches!(port.protocol.as_deref().unwrap_or(""), "" | "TCP" | "UDP") {
                causes.push(Cause::new(
                    Invalid,
                    &pf.child("protocol"),
                    "Unknown protocol, only TCP or UDP allowed",
                ));
            }
        }
    }
    if !iface.port_ranges.is_empty() && !cfg.gate("PortRangesSpec") {
        causes.push(Cause::new(
            Invalid,
            &name,
            "portRanges is specified on interface but the PortRangesSpec feature gate is not enabled",
        ));
    }
    if let Some(dhcp) = iface.dhcp_options.as_ref() {
        let mut opts = BTreeSet::new();
        for o in &dhcp.private_options {
            if !opts.insert(o.option) {
                causes.push(Cause::new(
                    Invalid,
                    base,
                    "Found Duplicates: you have provided duplicate DHCPPrivateOptions",
                ));
            }
            if !(224..=254).contains(&o.option) {
                causes.push(Cause::new(
                    Invalid,
                    base,
                    "provided DHCPPrivateOptions are out of range, must be in range 224 to 254",
                ));
            }
        }
        for (k, ntp) in dhcp.ntp_servers.iter().enumerate() {
            if ntp.parse::<std::net::Ipv4Addr>().is_err() {
                causes.push(Cause::new(
                    Invalid,
                    &fi.child("dhcpOptions").child("ntpServers").index(k),
                    "NTP servers must be a list of valid IPv4 addresses.",
                ));
            }
        }
    }
    causes
}

// ---- volumes ------------------------------------------------------------------------------

/// Whether a string is valid standard base64 (with or without padding).
fn is_base64(s: &str) -> bool {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let body = t.trim_end_matches('=');
    let pad = t.len() - body.len();
    pad <= 2
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        && (t.len().is_multiple_of(4) || pad == 0)
        && body.len() % 4 != 1
}

fn decoded_len(s: &str) -> usize {
    let body = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .count();
    body * 3 / 4
}

/// The user and network data of a NoCloud or ConfigDrive source (the two carry the same fields).
struct CloudInitData<'a> {
    user: &'a Option<String>,
    user_base64: &'a Option<String>,
    user_secret: bool,
    network: &'a Option<String>,
    network_base64: &'a Option<String>,
    network_secret: bool,
}

fn cloud_init(d: &FieldPath, data: CloudInitData<'_>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (value, name) in [
        (data.user_base64, "userDataBase64"),
        (data.network_base64, "networkDataBase64"),
    ] {
        if value.as_deref().is_some_and(|v| !is_base64(v)) {
            let f = d.child(name);
            causes.push(Cause::new(
                Invalid,
                &f,
                format!("{f} is not a valid base64 value."),
            ));
        }
    }
    // (set, size in bytes) of each way to give the data; a Secret's size is not ours to check.
    let sized = |plain: &Option<String>, b64: &Option<String>, secret: bool| {
        [
            (plain.is_some(), plain.as_ref().map_or(0, String::len)),
            (b64.is_some(), b64.as_deref().map_or(0, decoded_len)),
            (secret, 0),
        ]
    };
    for (sources, what, secret_ref) in [
        (
            sized(data.user, data.user_base64, data.user_secret),
            "userdata",
            "UserDataSecretRef",
        ),
        (
            sized(data.network, data.network_base64, data.network_secret),
            "networkdata",
            "NetworkDataSecretRef",
        ),
    ] {
        let set = sources.iter().filter(|(set, _)| *set).count();
        if set > 1 {
            let msg = if what == "userdata" {
                format!("{d} must have only one userdatasource set.")
            } else {
                format!("{d} must have only one networkdata source set.")
            };
            causes.push(Cause::new(Invalid, d, msg));
        }
        if sources
            .iter()
            .any(|(set, len)| *set && *len > CLOUD_INIT_INLINE_LIMIT)
        {
            causes.push(Cause::new(
                Invalid,
                d,
                format!("{d} {what} exceeds {CLOUD_INIT_INLINE_LIMIT} byte limit. Should use {secret_ref} for larger data."),
            ));
        }
    }
    let any_user = data.user.is_some() || data.user_base64.is_some() || data.user_secret;
    let any_network =
        data.network.is_some() || data.network_base64.is_some() || data.network_secret;
    if !any_user && !any_network {
        causes.push(Cause::new(
            Invalid,
            d,
            format!("{d} must have at least one userdatasource or one networkdatasource set."),
        ));
    }
    causes
}

fn volumes(spec: &VirtualMachineInstanceSpec, base: &FieldPath, cfg: &ClusterConfig) -> Vec<Cause> {
    let mut causes = Vec::new();
    let vpath = base.child("volumes");
    causes.extend(duplicate_names(
        spec.volumes.iter().map(|v| v.name.as_str()),
        &vpath,
    ));
    let (mut service_accounts, mut downward_metrics, mut memory_dumps) = (0, 0, 0);
    for (i, v) in spec.volumes.iter().enumerate() {
        let vi = vpath.index(i);
        let s = &v.volume_source;
        if s.data_volume.as_ref().is_some_and(|d| d.name.is_empty()) {
            causes.push(Cause::new(
                Required,
                &vi.child("name"),
                "DataVolume 'name' must be set",
            ));
        }
        let kinds = s.kinds();
        if kinds.len() != 1 {
            causes.push(Cause::new(
                Invalid,
                &vi,
                format!("{vi} must have exactly one source type set"),
            ));
        }
        if let Some(kind) = kinds.first().filter(|_| kinds.len() == 1) {
            causes.extend(supported_source(v, kind, &vi, cfg));
        }
        if let Some(c) = s.cloud_init_no_cloud.as_ref() {
            causes.extend(cloud_init(
                &vi.child("cloudInitNoCloud"),
                CloudInitData {
                    user: &c.user_data,
                    user_base64: &c.user_data_base64,
                    user_secret: c.user_data_secret_ref.is_some(),
                    network: &c.network_data,
                    network_base64: &c.network_data_base64,
                    network_secret: c.network_data_secret_ref.is_some(),
                },
            ));
        }
        if let Some(c) = s.cloud_init_config_drive.as_ref() {
            causes.extend(cloud_init(
                &vi.child("cloudInitConfigDrive"),
                CloudInitData {
                    user: &c.user_data,
                    user_base64: &c.user_data_base64,
                    user_secret: c.user_data_secret_ref.is_some(),
                    network: &c.network_data,
                    network_base64: &c.network_data_base64,
                    network_secret: c.network_data_secret_ref.is_some(),
                },
            ));
        }
        if s.downward_metrics.is_some() {
            downward_metrics += 1;
            if !cfg.gate("DownwardMetrics") {
                causes.push(Cause::new(Invalid, &vi, "downwardMetrics disks are not allowed: DownwardMetrics feature gate is not enabled."));
            }
        }
        if let Some(h) = s.host_disk.as_ref() {
            if !cfg.gate("HostDisk") {
                causes.push(Cause::new(
                    Invalid,
                    &vi,
                    "HostDisk feature gate is not enabled",
                ));
            }
            let hp = vi.child("hostDisk");
            if h.path.is_empty() {
                causes.push(Cause::new(
                    CauseType::FieldValueNotFound,
                    &hp.child("path"),
                    format!("{hp}.path is required for hostDisk volume"),
                ));
            }
            if h.type_ != "Disk" && h.type_ != "DiskOrCreate" {
                causes.push(Cause::new(
                    Invalid,
                    &hp.child("type"),
                    format!(
                        "{hp}.type has invalid value '{}', allowed are 'Disk' or 'DiskOrCreate'",
                        h.type_
                    ),
                ));
            } else if h.type_ == "Disk" && h.capacity.is_some() {
                causes.push(Cause::new(
                    Invalid,
                    &hp.child("capacity"),
                    format!("{hp}.capacity is allowed to pass only with {hp}.type equal to 'DiskOrCreate'"),
                ));
            }
        }
        if let Some(c) = s.config_map.as_ref()
            && c.name.as_deref().unwrap_or("").is_empty()
        {
            let f = vi.child("configMap").child("name");
            causes.push(Cause::new(Invalid, &f, format!("{f} is a required field")));
        }
        if let Some(c) = s.secret.as_ref()
            && c.secret_name.as_deref().unwrap_or("").is_empty()
        {
            let f = vi.child("secret").child("secretName");
            causes.push(Cause::new(Invalid, &f, format!("{f} is a required field")));
        }
        if let Some(c) = s.service_account.as_ref() {
            service_accounts += 1;
            if c.service_account_name.as_deref().unwrap_or("").is_empty() {
                let f = vi.child("serviceAccount").child("serviceAccountName");
                causes.push(Cause::new(Invalid, &f, format!("{f} is a required field")));
            }
        }
        if s.memory_dump.is_some() {
            memory_dumps += 1;
        }
        if let Some(p) = s.container_disk.as_ref().and_then(|c| c.path.as_deref()) {
            causes.extend(container_path(p, &vi.child("containerDisk")));
        }
    }
    for (count, what) in [
        (service_accounts, "serviceAccount"),
        (downward_metrics, "downwardMetric"),
        (memory_dumps, "memory dump"),
    ] {
        if count > 1 {
            causes.push(Cause::new(
                Invalid,
                &vpath,
                format!("{vpath} must have max one {what} volume set"),
            ));
        }
    }
    causes
}

/// Our own addition: a source the cluster cannot provide is refused up front, by name, rather
/// than accepted and failing later in the launcher.
fn supported_source(_v: &Volume, kind: &str, vi: &FieldPath, cfg: &ClusterConfig) -> Option<Cause> {
    let supported = cfg.supported_volume_sources.as_ref()?;
    if supported.contains(kind) {
        return None;
    }
    Some(Cause::new(
        NotSupported,
        &vi.child(kind),
        format!(
            "{kind} volumes are not supported by this cluster (supported: {})",
            supported.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    ))
}

// ---- access credentials ---------------------------------------------------------------------

fn access_credentials(spec: &VirtualMachineInstanceSpec, base: &FieldPath) -> Vec<Cause> {
    let mut causes = Vec::new();
    let a = base.child("accessCredentials");
    let has_no_cloud = spec
        .volumes
        .iter()
        .any(|v| v.volume_source.cloud_init_no_cloud.is_some());
    let has_config_drive = spec
        .volumes
        .iter()
        .any(|v| v.volume_source.cloud_init_config_drive.is_some());
    for (i, cred) in spec.access_credentials.iter().enumerate() {
        let ai = a.index(i);
        let kinds =
            usize::from(cred.ssh_public_key.is_some()) + usize::from(cred.user_password.is_some());
        if kinds != 1 {
            causes.push(Cause::new(
                Invalid,
                &ai,
                format!("{ai} must have exactly one access credential type set"),
            ));
            continue;
        }
        if let Some(k) = cred.ssh_public_key.as_ref() {
            let kp = ai.child("sshPublicKey");
            let m = &k.propagation_method;
            let methods = [
                m.no_cloud.is_some(),
                m.config_drive.is_some(),
                m.qemu_guest_agent.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if k.source.secret.is_none() {
                causes.push(Cause::new(
                    Invalid,
                    &kp.child("source"),
                    format!("{ai} must have exactly one source set"),
                ));
            }
            if methods != 1 {
                causes.push(Cause::new(
                    Invalid,
                    &kp.child("propagationMethod"),
                    format!("{ai} must have exactly one propagationMethod set"),
                ));
            }
            if m.no_cloud.is_some() && !has_no_cloud {
                causes.push(Cause::new(
                    Invalid,
                    &kp.child("propagationMethod"),
                    format!("{ai} requires a noCloud volume to exist when the noCloud propagationMethod is in use."),
                ));
            }
            if m.config_drive.is_some() && !has_config_drive {
                causes.push(Cause::new(
                    Invalid,
                    &kp.child("propagationMethod"),
                    format!("{ai} requires a configDrive volume to exist when the configDrive propagationMethod is in use."),
                ));
            }
            if m.qemu_guest_agent
                .as_ref()
                .is_some_and(|q| q.users.is_empty())
            {
                causes.push(Cause::new(
                    Invalid,
                    &kp.child("propagationMethod")
                        .child("qemuGuestAgent")
                        .child("users"),
                    format!("{ai} requires at least one user to be present in the users list"),
                ));
            }
        }
        if let Some(p) = cred.user_password.as_ref() {
            let pp = ai.child("userPassword");
            if p.source.secret.is_none() {
                causes.push(Cause::new(
                    Invalid,
                    &pp.child("source"),
                    format!("{ai} must have exactly one source set"),
                ));
            }
            if p.propagation_method.qemu_guest_agent.is_none() {
                causes.push(Cause::new(
                    Invalid,
                    &pp.child("propagationMethod"),
                    format!("{ai} must have exactly one propagationMethod set"),
                ));
            }
        }
    }
    causes
}
