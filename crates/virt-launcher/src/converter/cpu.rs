//! CPU, memory, machine, firmware, features and clock.

use kubevirt_api::quantity::Amount;
use kubevirt_api::v1::{FeatureState, VirtualMachineInstanceSpec, cpu_model};

use super::{Accelerator, ConvertError, ConverterContext, Element};

/// The vCPU layout: what the guest has now, and the socket count it may grow to by hotplug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    /// Sockets including hotplug headroom (`cpu.maxSockets`), at least `sockets`.
    pub max_sockets: u32,
}

impl Topology {
    pub fn of(spec: &VirtualMachineInstanceSpec) -> Result<Self, ConvertError> {
        let cpu = spec.domain.cpu.as_ref();
        let count = |field: &str, v: Option<i32>| -> Result<u32, ConvertError> {
            match v {
                None | Some(0) => Ok(1),
                Some(n) if n > 0 => Ok(n as u32),
                Some(n) => Err(ConvertError::invalid(
                    format!("spec.domain.cpu.{field}"),
                    format!("must be positive, got {n}"),
                )),
            }
        };
        let sockets = count("sockets", cpu.and_then(|c| c.sockets))?;
        let cores = count("cores", cpu.and_then(|c| c.cores))?;
        let threads = count("threads", cpu.and_then(|c| c.threads))?;
        let max_sockets = count("maxSockets", cpu.and_then(|c| c.max_sockets))?.max(sockets);
        let t = Topology {
            sockets,
            cores,
            threads,
            max_sockets,
        };
        if t.max_vcpus() > 4096 {
            return Err(ConvertError::invalid(
                "spec.domain.cpu",
                format!("{} vCPUs is more than QEMU supports", t.max_vcpus()),
            ));
        }
        Ok(t)
    }

    pub fn vcpus(&self) -> u32 {
        self.sockets * self.cores * self.threads
    }

    pub fn max_vcpus(&self) -> u32 {
        self.max_sockets * self.cores * self.threads
    }

    /// `<vcpu>`: the maximum, with the current count when hotplug headroom exists.
    pub fn vcpu_element(&self) -> Element {
        let mut e =
            Element::with_text("vcpu", self.max_vcpus().to_string()).attr("placement", "static");
        if self.max_vcpus() != self.vcpus() {
            e = e.attr("current", self.vcpus());
        }
        e
    }
}

/// Guest memory in bytes: `memory.guest`, else the memory request, else the limit.
pub fn guest_memory_bytes(spec: &VirtualMachineInstanceSpec) -> Result<u64, ConvertError> {
    let d = &spec.domain;
    let (field, quantity) = if let Some(q) = d.memory.as_ref().and_then(|m| m.guest.as_ref()) {
        ("spec.domain.memory.guest", q)
    } else if let Some(q) = d.resources.as_ref().and_then(|r| r.requests.get("memory")) {
        ("spec.domain.resources.requests.memory", q)
    } else if let Some(q) = d.resources.as_ref().and_then(|r| r.limits.get("memory")) {
        ("spec.domain.resources.limits.memory", q)
    } else {
        return Err(ConvertError::invalid(
            "spec.domain.memory.guest",
            "no guest memory given (set memory.guest or resources.requests.memory)",
        ));
    };
    let amount =
        Amount::parse(&quantity.0).map_err(|e| ConvertError::invalid(field, e.to_string()))?;
    if amount.is_negative() || amount.is_zero() {
        return Err(ConvertError::invalid(field, "must be positive"));
    }
    Ok(amount.bytes())
}

pub fn memory(spec: &VirtualMachineInstanceSpec) -> Result<Element, ConvertError> {
    let bytes = guest_memory_bytes(spec)?;
    // libvirt counts in KiB; round up so the guest never gets less than asked.
    let kib = bytes.div_ceil(1024);
    Ok(Element::with_text("memory", kib.to_string()).attr("unit", "KiB"))
}

pub fn memory_backing(spec: &VirtualMachineInstanceSpec) -> Option<Element> {
    let page = spec
        .domain
        .memory
        .as_ref()
        .and_then(|m| m.hugepages.as_ref())
        .and_then(|h| h.page_size.as_deref())?;
    let kib = Amount::parse(page).ok()?.bytes() / 1024;
    Some(Element::new("memoryBacking").child(
        Element::new("hugepages").child(Element::new("page").attr("size", kib).attr("unit", "KiB")),
    ))
}

/// libvirt's architecture name for a Kubernetes one.
pub fn libvirt_arch(spec: &VirtualMachineInstanceSpec) -> Result<&'static str, ConvertError> {
    match spec.architecture.as_deref().unwrap_or("") {
        "" | "amd64" => Ok("x86_64"),
        "arm64" => Ok("aarch64"),
        "s390x" => Ok("s390x"),
        other => Err(ConvertError::invalid(
            "spec.architecture",
            format!("unknown architecture {other:?}"),
        )),
    }
}

/// `<os>`: machine type, firmware (BIOS, EFI or a kernel to boot) and SMBIOS.
pub fn os(
    spec: &VirtualMachineInstanceSpec,
    ctx: &ConverterContext,
) -> Result<Element, ConvertError> {
    let arch = libvirt_arch(spec)?;
    let machine = spec
        .domain
        .machine
        .as_ref()
        .and_then(|m| m.type_.as_deref())
        .filter(|m| !m.is_empty())
        .unwrap_or("q35");
    let mut os = Element::new("os").child(
        Element::with_text("type", "hvm")
            .attr("arch", arch)
            .attr("machine", machine),
    );
    let firmware = spec.domain.firmware.as_ref();
    let bootloader = firmware.and_then(|f| f.bootloader.as_ref());
    if let Some(efi) = bootloader.and_then(|b| b.efi.as_ref()) {
        let field = "spec.domain.firmware.bootloader.efi";
        let files = ctx.efi.as_ref().ok_or_else(|| {
            ConvertError::unsupported(field, "EFI (no OVMF firmware installed on this node)")
        })?;
        let secure = efi.secure_boot.unwrap_or(true);
        let (code, vars) = if secure {
            match (&files.secure_code, &files.secure_vars_template) {
                (Some(c), Some(v)) => (c, v),
                _ => {
                    return Err(ConvertError::unsupported(
                        format!("{field}.secureBoot"),
                        "Secure Boot (no Secure Boot OVMF build installed)",
                    ));
                }
            }
        } else {
            (&files.code, &files.vars_template)
        };
        os.push(
            Element::with_text("loader", code.display().to_string())
                .attr("readonly", "yes")
                .attr("secure", if secure { "yes" } else { "no" })
                .attr("type", "pflash"),
        );
        os.push(
            Element::with_text("nvram", ctx.nvram.display().to_string())
                .attr("template", vars.display()),
        );
    }
    if let Some(kb) = firmware.and_then(|f| f.kernel_boot.as_ref()) {
        let field = "spec.domain.firmware.kernelBoot";
        if kb.container.is_some() {
            let files = ctx.kernel_boot.as_ref().ok_or_else(|| {
                ConvertError::not_prepared(
                    format!("{field}.container"),
                    "the kernel boot container's files were not handed to the launcher",
                )
            })?;
            if let Some(k) = &files.kernel {
                os.push(Element::with_text("kernel", k.display().to_string()));
            }
            if let Some(i) = &files.initrd {
                os.push(Element::with_text("initrd", i.display().to_string()));
            }
        }
        if let Some(args) = kb.kernel_args.as_deref().filter(|a| !a.is_empty()) {
            os.push(Element::with_text("cmdline", args));
        }
    }
    if bootloader
        .and_then(|b| b.bios.as_ref())
        .and_then(|b| b.use_serial)
        == Some(true)
    {
        os.push(Element::new("bios").attr("useserial", "yes"));
    }
    os.push(Element::new("smbios").attr("mode", "sysinfo"));
    Ok(os)
}

fn state(s: &Option<FeatureState>) -> Option<bool> {
    s.as_ref().map(|f| f.enabled.unwrap_or(true))
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// `<features>`. Under TCG the KVM-only ones (kvm, pvspinlock, Hyper-V enlightenments) are left
/// out: QEMU would refuse them without KVM.
pub fn features(
    spec: &VirtualMachineInstanceSpec,
    ctx: &ConverterContext,
) -> Result<Element, ConvertError> {
    let mut out = Element::new("features");
    let f = spec.domain.features.as_ref();
    // ACPI is on unless switched off: without it there is no graceful (power button) shutdown.
    if f.and_then(|f| state(&f.acpi)).unwrap_or(true) {
        out.push(Element::new("acpi"));
    }
    if let Some(apic) = f.and_then(|f| f.apic.as_ref())
        && apic.enabled.unwrap_or(true)
    {
        out.push(Element::new("apic").attr_opt("eoi", apic.end_of_interrupt.map(on_off)));
    }
    let secure_boot = spec
        .domain
        .firmware
        .as_ref()
        .and_then(|f| f.bootloader.as_ref())
        .and_then(|b| b.efi.as_ref())
        .is_some_and(|e| e.secure_boot.unwrap_or(true));
    let smm = f.and_then(|f| state(&f.smm));
    if secure_boot && smm == Some(false) {
        return Err(ConvertError::invalid(
            "spec.domain.features.smm",
            "EFI Secure Boot needs SMM enabled",
        ));
    }
    if smm == Some(true) || secure_boot {
        out.push(Element::new("smm").attr("state", "on"));
    }
    if ctx.accelerator == Accelerator::Kvm {
        if let Some(pv) = f.and_then(|f| state(&f.pvspinlock)) {
            out.push(Element::new("pvspinlock").attr("state", on_off(pv)));
        }
        if let Some(h) = f.and_then(|f| f.hyperv.as_ref()) {
            out.push(hyperv(h));
        }
        if f.and_then(|f| f.kvm.as_ref()).and_then(|k| k.hidden) == Some(true) {
            out.push(Element::new("kvm").child(Element::new("hidden").attr("state", "on")));
        }
    }
    if ctx.accelerator == Accelerator::Tcg
        && let Some(mib) = ctx.tcg_tb_cache_mib
    {
        out.push(
            Element::new("tcg")
                .child(Element::with_text("tb-cache", mib.to_string()).attr("unit", "MiB")),
        );
    }
    Ok(out)
}

fn hyperv(h: &kubevirt_api::v1::FeatureHyperv) -> Element {
    let mut e = Element::new("hyperv").attr("mode", "custom");
    let simple = [
        ("relaxed", &h.relaxed),
        ("vapic", &h.vapic),
        ("vpindex", &h.vpindex),
        ("runtime", &h.runtime),
        ("synic", &h.synic),
        ("reset", &h.reset),
        ("frequencies", &h.frequencies),
        ("reenlightenment", &h.reenlightenment),
        ("ipi", &h.ipi),
        ("evmcs", &h.evmcs),
    ];
    for (name, s) in simple {
        if let Some(on) = state(s) {
            e.push(Element::new(name).attr("state", on_off(on)));
        }
    }
    if let Some(s) = &h.spinlocks {
        let on = s.enabled.unwrap_or(true);
        let mut el = Element::new("spinlocks").attr("state", on_off(on));
        if on {
            el = el.attr("retries", s.spinlocks.unwrap_or(4096));
        }
        e.push(el);
    }
    if let Some(v) = &h.vendorid {
        let on = v.enabled.unwrap_or(true);
        let mut el = Element::new("vendor_id").attr("state", on_off(on));
        if on && let Some(id) = &v.vendorid {
            el = el.attr("value", id);
        }
        e.push(el);
    }
    if let Some(t) = &h.synictimer {
        let mut el = Element::new("stimer").attr("state", on_off(t.enabled.unwrap_or(true)));
        if let Some(d) = state(&t.direct) {
            el = el.child(Element::new("direct").attr("state", on_off(d)));
        }
        e.push(el);
    }
    if let Some(t) = &h.tlbflush {
        e.push(Element::new("tlbflush").attr("state", on_off(t.enabled.unwrap_or(true))));
    }
    e
}

/// `<cpu>`: the model and topology. Under TCG, host-model and host-passthrough cannot work (there
/// is no host CPU to copy), so the guest gets `qemu64`; a named model is kept, unchecked.
pub fn cpu(
    spec: &VirtualMachineInstanceSpec,
    ctx: &ConverterContext,
    topology: &Topology,
) -> Result<Element, ConvertError> {
    let c = spec.domain.cpu.as_ref();
    let model = c
        .and_then(|c| c.model.as_deref())
        .filter(|m| !m.is_empty())
        .unwrap_or(cpu_model::DEFAULT);
    let mut e = match (ctx.accelerator, model) {
        (Accelerator::Tcg, cpu_model::HOST_MODEL | cpu_model::HOST_PASSTHROUGH) => {
            Element::new("cpu")
                .attr("mode", "custom")
                .attr("match", "exact")
                .attr("check", "none")
                .child(Element::with_text("model", "qemu64").attr("fallback", "forbid"))
        }
        (Accelerator::Kvm, cpu_model::HOST_MODEL) => Element::new("cpu")
            .attr("mode", "host-model")
            .attr("check", "partial"),
        (Accelerator::Kvm, cpu_model::HOST_PASSTHROUGH) => Element::new("cpu")
            .attr("mode", "host-passthrough")
            .attr("check", "none"),
        (Accelerator::Tcg, named) => Element::new("cpu")
            .attr("mode", "custom")
            .attr("match", "exact")
            .attr("check", "none")
            .child(Element::with_text("model", named).attr("fallback", "allow")),
        (Accelerator::Kvm, named) => Element::new("cpu")
            .attr("mode", "custom")
            .attr("match", "exact")
            .attr("check", "partial")
            .child(Element::with_text("model", named).attr("fallback", "allow")),
    };
    e.push(
        Element::new("topology")
            .attr("sockets", topology.max_sockets)
            .attr("dies", 1)
            .attr("cores", topology.cores)
            .attr("threads", topology.threads),
    );
    for (i, f) in c
        .map(|c| c.features.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let policy = f.policy.as_deref().unwrap_or("require");
        if !matches!(
            policy,
            "force" | "require" | "optional" | "disable" | "forbid"
        ) {
            return Err(ConvertError::invalid(
                format!("spec.domain.cpu.features[{i}].policy"),
                format!("unknown policy {policy:?} (force, require, optional, disable or forbid)"),
            ));
        }
        e.push(
            Element::new("feature")
                .attr("policy", policy)
                .attr("name", &f.name),
        );
    }
    Ok(e)
}

/// `<clock>`: UTC (optionally shifted) or a time zone, and the timers. The KVM and Hyper-V
/// clocks exist only under KVM.
pub fn clock(spec: &VirtualMachineInstanceSpec, ctx: &ConverterContext) -> Element {
    let clock = spec.domain.clock.as_ref();
    let offset = clock.map(|c| &c.clock_offset);
    let mut e = if let Some(tz) = offset.and_then(|o| o.timezone.as_deref()) {
        Element::new("clock")
            .attr("offset", "timezone")
            .attr("timezone", tz)
    } else {
        let adjustment = offset
            .and_then(|o| o.utc.as_ref())
            .and_then(|u| u.offset_seconds)
            .filter(|s| *s != 0);
        Element::new("clock")
            .attr("offset", "utc")
            .attr_opt("adjustment", adjustment)
    };
    let yes_no = |b: Option<bool>| b.map(|b| if b { "yes" } else { "no" });
    if let Some(t) = clock.and_then(|c| c.timer.as_ref()) {
        if let Some(rtc) = &t.rtc {
            e.push(
                Element::new("timer")
                    .attr("name", "rtc")
                    .attr_opt("tickpolicy", rtc.tick_policy.as_deref())
                    .attr_opt("track", rtc.track.as_deref())
                    .attr_opt("present", yes_no(rtc.present)),
            );
        }
        if let Some(pit) = &t.pit {
            e.push(
                Element::new("timer")
                    .attr("name", "pit")
                    .attr_opt("tickpolicy", pit.tick_policy.as_deref())
                    .attr_opt("present", yes_no(pit.present)),
            );
        }
        if let Some(hpet) = &t.hpet {
            e.push(
                Element::new("timer")
                    .attr("name", "hpet")
                    .attr_opt("tickpolicy", hpet.tick_policy.as_deref())
                    .attr_opt("present", yes_no(hpet.present)),
            );
        }
        if ctx.accelerator == Accelerator::Kvm {
            if let Some(kvm) = &t.kvm {
                e.push(
                    Element::new("timer")
                        .attr("name", "kvmclock")
                        .attr_opt("present", yes_no(kvm.present)),
                );
            }
            if let Some(hv) = &t.hyperv {
                e.push(
                    Element::new("timer")
                        .attr("name", "hypervclock")
                        .attr_opt("present", yes_no(hv.present)),
                );
            }
        }
    }
    e
}
