//! `<devices>`: disks (from [`super::disks`]), controllers, interfaces, consoles, graphics,
//! inputs, watchdog, rng, balloon and the rest.

use kubevirt_api::v1::{
    Interface, VirtualMachineInstance, input_bus, input_type, interface_model, interface_state,
};

use super::cpu::Topology;
use super::disks::DiskPlan;
use super::{ConvertError, ConverterContext, Element};

/// The guest agent's virtio-serial channel name (what qemu-guest-agent looks for).
pub const GUEST_AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

pub fn devices(
    vmi: &VirtualMachineInstance,
    ctx: &ConverterContext,
    topology: &Topology,
    disks: DiskPlan,
) -> Result<Element, ConvertError> {
    let spec = &vmi.spec;
    let d = &spec.domain.devices;
    let transitional = d.use_virtio_transitional == Some(true);
    let virtio_model = if transitional {
        "virtio-transitional"
    } else {
        "virtio"
    };
    let mut out = Element::new("devices");

    let mut usb = disks.usb;
    let scsi = disks.scsi;
    out = out.children(disks.disks);

    let inputs = inputs(vmi)?;
    usb |= inputs.iter().any(|(bus, _)| bus == input_bus::USB);

    // Controllers: USB only when something sits on it (q35 would otherwise add one), a
    // virtio-scsi controller when a disk asks for the scsi bus.
    out.push(
        Element::new("controller")
            .attr("type", "usb")
            .attr("index", 0)
            .attr("model", if usb { "qemu-xhci" } else { "none" }),
    );
    if scsi {
        out.push(
            Element::new("controller")
                .attr("type", "scsi")
                .attr("index", 0)
                .attr(
                    "model",
                    if transitional {
                        "virtio-transitional"
                    } else {
                        "virtio-scsi"
                    },
                ),
        );
    }

    for (i, iface) in d.interfaces.iter().enumerate() {
        if let Some(e) = interface(vmi, ctx, topology, i, iface, virtio_model)? {
            out.push(e);
        }
    }

    if d.autoattach_serial_console != Some(false) {
        let socket = ctx.serial_socket.display().to_string();
        out.push(
            Element::new("serial")
                .attr("type", "unix")
                .child(
                    Element::new("source")
                        .attr("mode", "bind")
                        .attr("path", &socket),
                )
                .child(
                    Element::new("log")
                        .attr("file", ctx.serial_log.display())
                        .attr("append", "on"),
                )
                .child(Element::new("target").attr("port", 0))
                .child(Element::new("alias").attr("name", "serial0")),
        );
        out.push(
            Element::new("console")
                .attr("type", "unix")
                .child(
                    Element::new("source")
                        .attr("mode", "bind")
                        .attr("path", &socket),
                )
                .child(
                    Element::new("target")
                        .attr("type", "serial")
                        .attr("port", 0),
                ),
        );
    }

    // The guest agent channel: libvirt picks the host socket path and talks to the agent itself.
    out.push(
        Element::new("channel").attr("type", "unix").child(
            Element::new("target")
                .attr("type", "virtio")
                .attr("name", GUEST_AGENT_CHANNEL),
        ),
    );

    out = out.children(inputs.into_iter().map(|(_, e)| e));

    if d.autoattach_graphics_device != Some(false) {
        out.push(
            Element::new("graphics").attr("type", "vnc").child(
                Element::new("listen")
                    .attr("type", "socket")
                    .attr("socket", ctx.vnc_socket.display()),
            ),
        );
        let video = d
            .video
            .as_ref()
            .and_then(|v| v.type_.as_deref())
            .filter(|t| !t.is_empty())
            .unwrap_or("vga");
        let mut model = Element::new("model").attr("type", video);
        if video == "vga" {
            model = model.attr("vram", 16384).attr("heads", 1);
        }
        out.push(Element::new("video").child(model));
    } else {
        // No graphics: no video card either (q35 would add one).
        out.push(Element::new("video").child(Element::new("model").attr("type", "none")));
    }

    if let Some(w) = d.watchdog.as_ref() {
        let (model, action) = if let Some(x) = &w.watchdog_device.i6300esb {
            ("i6300esb", x.action.as_deref())
        } else if let Some(x) = &w.watchdog_device.diag288 {
            ("diag288", x.action.as_deref())
        } else {
            return Err(ConvertError::invalid(
                "spec.domain.devices.watchdog",
                "no watchdog model (i6300esb or diag288)",
            ));
        };
        let action = action.unwrap_or("reset");
        if !matches!(action, "poweroff" | "reset" | "shutdown") {
            return Err(ConvertError::invalid(
                format!("spec.domain.devices.watchdog.{model}.action"),
                format!("unknown action {action:?} (poweroff, reset or shutdown)"),
            ));
        }
        out.push(
            Element::new("watchdog")
                .attr("model", model)
                .attr("action", action)
                .child(Element::new("alias").attr("name", format!("ua-{}", w.name))),
        );
    }

    if d.rng.is_some() {
        out.push(
            Element::new("rng")
                .attr("model", virtio_model)
                .child(Element::with_text("backend", "/dev/urandom").attr("model", "random")),
        );
    }

    for (i, p) in d.panic_devices.iter().enumerate() {
        let model = p.model.as_deref().unwrap_or("isa");
        if model == "pvpanic" {
            // libvirt learned the PCI pvpanic model in 9.1; this node has 9.0.
            return Err(ConvertError::unsupported(
                format!("spec.domain.devices.panicDevices[{i}].model"),
                "the pvpanic PCI model (use isa)",
            ));
        }
        if !matches!(model, "isa" | "hyperv") {
            return Err(ConvertError::invalid(
                format!("spec.domain.devices.panicDevices[{i}].model"),
                format!("unknown model {model:?} (isa, pvpanic or hyperv)"),
            ));
        }
        out.push(Element::new("panic").attr("model", model));
    }

    if let Some(s) = d.sound.as_ref() {
        let model = s.model.as_deref().unwrap_or("ich9");
        if !matches!(model, "ich9" | "ac97") {
            return Err(ConvertError::invalid(
                "spec.domain.devices.sound.model",
                format!("unknown model {model:?} (ich9 or ac97)"),
            ));
        }
        out.push(
            Element::new("sound")
                .attr("model", model)
                .child(Element::new("alias").attr("name", format!("ua-{}", s.name))),
        );
    }

    if d.autoattach_vsock == Some(true) {
        let cid = vmi.status.as_ref().and_then(|s| s.vsock_cid);
        let cid = match cid {
            Some(c) => Element::new("cid").attr("auto", "no").attr("address", c),
            None => Element::new("cid").attr("auto", "yes"),
        };
        out.push(Element::new("vsock").attr("model", virtio_model).child(cid));
    }

    // The balloon only when asked for explicitly: it costs a device and a stats poller, and
    // nothing here inflates it.
    if d.autoattach_mem_balloon == Some(true) {
        out.push(
            Element::new("memballoon")
                .attr("model", virtio_model)
                .child(Element::new("stats").attr("period", 10)),
        );
    } else {
        out.push(Element::new("memballoon").attr("model", "none"));
    }
    Ok(out)
}

/// Input devices with the bus each sits on: the listed ones, or a virtio tablet when
/// `autoattachInputDevice` asks for one.
fn inputs(vmi: &VirtualMachineInstance) -> Result<Vec<(String, Element)>, ConvertError> {
    let d = &vmi.spec.domain.devices;
    let mut out = Vec::new();
    for (i, input) in d.inputs.iter().enumerate() {
        let field = format!("spec.domain.devices.inputs[{i}]");
        let bus = input
            .bus
            .as_deref()
            .filter(|b| !b.is_empty())
            .unwrap_or(input_bus::USB);
        if !matches!(bus, input_bus::USB | input_bus::VIRTIO) {
            return Err(ConvertError::invalid(
                format!("{field}.bus"),
                format!("unknown bus {bus:?} (usb or virtio)"),
            ));
        }
        let kind = if input.type_.is_empty() {
            input_type::TABLET
        } else {
            input.type_.as_str()
        };
        if !matches!(kind, input_type::TABLET | input_type::KEYBOARD) {
            return Err(ConvertError::invalid(
                format!("{field}.type"),
                format!("unknown type {kind:?} (tablet or keyboard)"),
            ));
        }
        out.push((
            bus.to_string(),
            Element::new("input")
                .attr("type", kind)
                .attr("bus", bus)
                .child(Element::new("alias").attr("name", format!("ua-{}", input.name))),
        ));
    }
    if d.inputs.is_empty() && d.autoattach_input_device == Some(true) {
        out.push((
            input_bus::VIRTIO.to_string(),
            Element::new("input")
                .attr("type", "tablet")
                .attr("bus", "virtio"),
        ));
    }
    Ok(out)
}

/// The binding an interface uses, when it is one the launcher provides.
pub fn binding(iface: &Interface) -> Result<&'static str, &'static str> {
    let b = &iface.interface_binding_method;
    if b.masquerade.is_some() {
        Ok("masquerade")
    } else if b.bridge.is_some() {
        Ok("bridge")
    } else if b.sriov.is_some() {
        Err("the SR-IOV binding")
    } else if b.slirp.is_some() {
        Err("the slirp binding (removed upstream)")
    } else if b.macvtap.is_some() {
        Err("the macvtap binding")
    } else if b.passt.is_some() || b.passt_binding.is_some() {
        Err("the passt binding")
    } else if iface.binding.is_some() {
        Err("network binding plugins")
    } else {
        Err("an interface without a binding")
    }
}

fn interface(
    vmi: &VirtualMachineInstance,
    ctx: &ConverterContext,
    topology: &Topology,
    i: usize,
    iface: &Interface,
    virtio_model: &str,
) -> Result<Option<Element>, ConvertError> {
    let field = format!("spec.domain.devices.interfaces[{i}]");
    if iface.state.as_deref() == Some(interface_state::ABSENT) {
        return Ok(None);
    }
    binding(iface).map_err(|what| ConvertError::unsupported(&field, what))?;
    let network = vmi.spec.network(&iface.name).ok_or_else(|| {
        ConvertError::invalid(
            &field,
            format!("no network named {:?} in spec.networks", iface.name),
        )
    })?;
    if network.network_source.pod.is_none() {
        let j = vmi
            .spec
            .networks
            .iter()
            .position(|n| n.name == iface.name)
            .unwrap_or(0);
        return Err(ConvertError::unsupported(
            format!("spec.networks[{j}]"),
            "networks other than the pod network (multus, resource claims)",
        ));
    }
    let target = ctx.interfaces.get(&iface.name).ok_or_else(|| {
        ConvertError::not_prepared(&field, "the pod network was not set up for this interface")
    })?;
    let model = match iface.model.as_deref().filter(|m| !m.is_empty()) {
        None | Some(interface_model::VIRTIO) => virtio_model,
        Some(
            m @ (interface_model::E1000
            | interface_model::E1000E
            | interface_model::IGB
            | interface_model::NE2K_PCI
            | interface_model::PCNET
            | interface_model::RTL8139),
        ) => m,
        Some(other) => {
            return Err(ConvertError::invalid(
                format!("{field}.model"),
                format!("unknown model {other:?}"),
            ));
        }
    };
    let mac = match iface.mac_address.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => normalize_mac(m).ok_or_else(|| {
            ConvertError::invalid(
                format!("{field}.macAddress"),
                format!("not a MAC address: {m:?}"),
            )
        })?,
        None => target.mac.clone(),
    };
    let mut e = Element::new("interface")
        .attr("type", "ethernet")
        .child(Element::new("mac").attr("address", mac))
        .child(
            Element::new("target")
                .attr("dev", &target.tap)
                .attr("managed", "no"),
        )
        .child(Element::new("model").attr("type", model));
    let multiqueue = vmi.spec.domain.devices.network_interface_multiqueue == Some(true)
        && model.starts_with("virtio")
        && topology.vcpus() > 1;
    if multiqueue {
        let queues = target.queues.unwrap_or(1).min(topology.vcpus());
        if queues > 1 {
            e.push(
                Element::new("driver")
                    .attr("name", "vhost")
                    .attr("queues", queues),
            );
        }
    }
    if let Some(mtu) = target.mtu {
        e.push(Element::new("mtu").attr("size", mtu));
    }
    if iface.state.as_deref() == Some(interface_state::DOWN) {
        e.push(Element::new("link").attr("state", "down"));
    }
    match iface.boot_order {
        Some(0) => {
            return Err(ConvertError::invalid(
                format!("{field}.bootOrder"),
                "must be 1 or more",
            ));
        }
        Some(order) => e.push(Element::new("boot").attr("order", order)),
        // No PXE boot from this interface: skip loading its option ROM (memory and start time).
        None => e.push(Element::new("rom").attr("enabled", "no")),
    }
    if let Some(pci) = iface.pci_address.as_deref() {
        e.push(pci_address(pci, &format!("{field}.pciAddress"))?);
    }
    if let Some(index) = iface.acpi_index {
        e.push(Element::new("acpi").attr("index", index));
    }
    e.push(Element::new("alias").attr("name", format!("ua-{}", iface.name)));
    Ok(Some(e))
}

/// `aa:bb:cc:dd:ee:ff` in lower case from the forms upstream accepts (`:` or `-` separated).
pub fn normalize_mac(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// `<address type='pci' .../>` from `dddd:bb:ss.f`.
pub fn pci_address(addr: &str, field: &str) -> Result<Element, ConvertError> {
    let bad =
        || ConvertError::invalid(field, format!("not a PCI address (dddd:bb:ss.f): {addr:?}"));
    let (domain, rest) = addr.split_once(':').ok_or_else(bad)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (slot, function) = rest.split_once('.').ok_or_else(bad)?;
    let hex = |s: &str, max: u32| u32::from_str_radix(s, 16).ok().filter(|v| *v <= max);
    let domain = hex(domain, 0xffff).ok_or_else(bad)?;
    let bus = hex(bus, 0xff).ok_or_else(bad)?;
    let slot = hex(slot, 0x1f).ok_or_else(bad)?;
    let function = hex(function, 0x7).ok_or_else(bad)?;
    Ok(Element::new("address")
        .attr("type", "pci")
        .attr("domain", format!("{domain:#06x}"))
        .attr("bus", format!("{bus:#04x}"))
        .attr("slot", format!("{slot:#04x}"))
        .attr("function", format!("{function:#x}")))
}
