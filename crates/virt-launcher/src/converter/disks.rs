//! Disks, CD-ROMs and LUNs.

use kubevirt_api::v1::{
    Disk, VirtualMachineInstanceSpec, disk_bus, driver_cache, driver_io, tray_state,
};

use super::cpu::Topology;
use super::{ConvertError, ConverterContext, DiskSource, Element};

/// The disks of a domain and what they need from the rest of the document.
#[derive(Debug, Default)]
pub struct DiskPlan {
    pub disks: Vec<Element>,
    /// A virtio-scsi controller is needed (a disk, CD-ROM or LUN on the scsi bus).
    pub scsi: bool,
    /// A USB controller is needed (a disk on the usb bus).
    pub usb: bool,
    /// IO threads the domain declares (`<iothreads>`).
    pub iothreads: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Disk,
    Cdrom,
    Lun,
}

impl Kind {
    fn device(self) -> &'static str {
        match self {
            Kind::Disk => "disk",
            Kind::Cdrom => "cdrom",
            Kind::Lun => "lun",
        }
    }
}

/// Target device names in upstream's scheme: `vd<letter>` on virtio, `sd<letter>` otherwise,
/// lettered per prefix in the order disks are listed.
pub fn target_name(prefix: &str, index: usize) -> String {
    // a..z, then aa..zz (as the Linux kernel names disks).
    let letters = if index < 26 {
        ((b'a' + index as u8) as char).to_string()
    } else {
        let hi = (b'a' + (index / 26 - 1) as u8) as char;
        let lo = (b'a' + (index % 26) as u8) as char;
        format!("{hi}{lo}")
    };
    format!("{prefix}{letters}")
}

/// Target names of the VMI's disks, by disk name, for stats and status reports.
pub fn target_names(spec: &VirtualMachineInstanceSpec) -> Vec<(String, String)> {
    let mut vd = 0;
    let mut sd = 0;
    spec.domain
        .devices
        .disks
        .iter()
        .map(|d| {
            let (_, bus) = kind_and_bus(d);
            let name = if bus == disk_bus::VIRTIO {
                vd += 1;
                target_name("vd", vd - 1)
            } else {
                sd += 1;
                target_name("sd", sd - 1)
            };
            (d.name.clone(), name)
        })
        .collect()
}

fn kind_and_bus(disk: &Disk) -> (Kind, String) {
    let dev = &disk.disk_device;
    let nonempty = |b: &Option<String>| b.as_deref().filter(|b| !b.is_empty()).map(str::to_string);
    if let Some(c) = &dev.cdrom {
        (
            Kind::Cdrom,
            nonempty(&c.bus).unwrap_or_else(|| disk_bus::SATA.into()),
        )
    } else if let Some(l) = &dev.lun {
        (
            Kind::Lun,
            nonempty(&l.bus).unwrap_or_else(|| disk_bus::SCSI.into()),
        )
    } else {
        let bus = dev.disk.as_ref().and_then(|d| nonempty(&d.bus));
        (Kind::Disk, bus.unwrap_or_else(|| disk_bus::VIRTIO.into()))
    }
}

pub fn plan(
    spec: &VirtualMachineInstanceSpec,
    ctx: &ConverterContext,
    topology: &Topology,
) -> Result<DiskPlan, ConvertError> {
    let devices = &spec.domain.devices;
    let mut out = DiskPlan::default();
    let dedicated = devices
        .disks
        .iter()
        .filter(|d| d.dedicated_io_thread == Some(true))
        .count() as u32;
    let policy = spec.domain.io_threads_policy.as_deref();
    // One shared IO thread when a policy asks for IO threads, plus one per dedicated disk.
    let shared_thread = policy.is_some() || dedicated > 0;
    let mut next_dedicated = if shared_thread { 2 } else { 1 };
    out.iothreads = dedicated + u32::from(shared_thread);
    let targets = target_names(spec);
    for (i, disk) in devices.disks.iter().enumerate() {
        let field = format!("spec.domain.devices.disks[{i}]");
        let (kind, bus) = kind_and_bus(disk);
        if !matches!(
            bus.as_str(),
            disk_bus::VIRTIO | disk_bus::SATA | disk_bus::SCSI | disk_bus::USB
        ) {
            return Err(ConvertError::invalid(
                format!("{field}.{}.bus", kind.device()),
                format!("unknown bus {bus:?} (virtio, sata, scsi or usb)"),
            ));
        }
        if kind == Kind::Cdrom && bus == disk_bus::VIRTIO {
            return Err(ConvertError::invalid(
                format!("{field}.cdrom.bus"),
                "a CD-ROM cannot sit on the virtio bus (use sata or scsi)",
            ));
        }
        if kind == Kind::Lun && bus != disk_bus::SCSI {
            return Err(ConvertError::invalid(
                format!("{field}.lun.bus"),
                "a LUN sits on the scsi bus",
            ));
        }
        let target = targets.get(i).map(|(_, t)| t.clone()).unwrap_or_default();
        out.scsi |= bus == disk_bus::SCSI;
        out.usb |= bus == disk_bus::USB;

        let tray_open = disk
            .disk_device
            .cdrom
            .as_ref()
            .and_then(|c| c.tray.as_deref())
            == Some(tray_state::OPEN);
        let volume_index = spec.volumes.iter().position(|v| v.name == disk.name);
        let source = match volume_index {
            Some(j) => Some(ctx.disks.get(&disk.name).ok_or_else(|| {
                ConvertError::not_prepared(
                    format!("spec.volumes[{j}]"),
                    format!("no image was prepared for volume {:?}", disk.name),
                )
            })?),
            None if tray_open => None,
            None => {
                return Err(ConvertError::invalid(
                    &field,
                    format!("no volume named {:?} in spec.volumes", disk.name),
                ));
            }
        };
        if kind == Kind::Lun && source.is_some_and(|s| !s.block) {
            return Err(ConvertError::invalid(
                format!("{field}.lun"),
                format!(
                    "volume {:?} is not a block device; a LUN needs one",
                    disk.name
                ),
            ));
        }
        let spec_readonly = match kind {
            Kind::Disk => disk
                .disk_device
                .disk
                .as_ref()
                .and_then(|d| d.readonly)
                .unwrap_or(false),
            Kind::Lun => disk
                .disk_device
                .lun
                .as_ref()
                .and_then(|d| d.readonly)
                .unwrap_or(false),
            Kind::Cdrom => disk
                .disk_device
                .cdrom
                .as_ref()
                .and_then(|d| d.readonly)
                .unwrap_or(true),
        };
        // libvirt cannot mark a sata disk (as opposed to a cdrom) read-only.
        let bus_can_be_readonly = kind != Kind::Disk || bus != disk_bus::SATA;
        if !bus_can_be_readonly && spec_readonly {
            return Err(ConvertError::invalid(
                format!("{field}.disk.readonly"),
                "a read-only disk needs the virtio, scsi or usb bus; sata disks cannot be read-only",
            ));
        }
        let source_readonly = match source {
            Some(s) if s.read_only && !bus_can_be_readonly && !s.generated => {
                return Err(ConvertError::invalid(
                    format!("{field}.disk.bus"),
                    format!(
                        "volume {:?} is read-only; a read-only disk needs the virtio, scsi or usb bus, not sata",
                        disk.name
                    ),
                ));
            }
            // A generated ISO on sata is attached writable, as upstream does: it is made
            // again for every start, so what a guest writes there goes with the pod.
            Some(s) => s.read_only && bus_can_be_readonly,
            None => false,
        };
        let readonly = spec_readonly || source_readonly;

        let iothread = if bus != disk_bus::VIRTIO || !shared_thread {
            None
        } else if disk.dedicated_io_thread == Some(true) {
            next_dedicated += 1;
            Some(next_dedicated - 1)
        } else {
            Some(1)
        };
        let queues = (bus == disk_bus::VIRTIO
            && devices.block_multi_queue == Some(true)
            && topology.vcpus() > 1)
            .then(|| topology.vcpus());

        let mut e = Element::new("disk")
            .attr(
                "type",
                if source.is_some_and(|s| s.block) {
                    "block"
                } else {
                    "file"
                },
            )
            .attr("device", kind.device());
        if kind == Kind::Lun
            && disk.disk_device.lun.as_ref().and_then(|l| l.reservation) == Some(true)
        {
            // Persistent reservations go through qemu-pr-helper, which the pod does not run.
            return Err(ConvertError::unsupported(
                format!("{field}.lun.reservation"),
                "SCSI persistent reservations",
            ));
        }
        if let Some(src) = source {
            e.push(driver(disk, src, &field, kind, readonly, iothread, queues)?);
            let attr = if src.block { "dev" } else { "file" };
            e.push(Element::new("source").attr(attr, src.path.display()));
        }
        let mut t = Element::new("target").attr("dev", target).attr("bus", &bus);
        if kind == Kind::Cdrom {
            t = t.attr("tray", if tray_open { "open" } else { "closed" });
        }
        e.push(t);
        if readonly {
            e.push(Element::new("readonly"));
        }
        if disk.shareable == Some(true) {
            e.push(Element::new("shareable"));
        }
        if let Some(serial) = disk.serial.as_deref() {
            e.push(Element::with_text("serial", serial));
        }
        if let Some(order) = disk.boot_order {
            if order == 0 {
                return Err(ConvertError::invalid(
                    format!("{field}.bootOrder"),
                    "must be 1 or more",
                ));
            }
            e.push(Element::new("boot").attr("order", order));
        }
        if let Some(bs) = disk.block_size.as_ref() {
            let sizes = if let Some(c) = bs.custom.as_ref() {
                Some((c.logical.unwrap_or(512), c.physical.unwrap_or(512)))
            } else if bs
                .match_volume
                .as_ref()
                .is_some_and(|m| m.enabled != Some(false))
            {
                source.and_then(|s| s.block_size)
            } else {
                None
            };
            if let Some((logical, physical)) = sizes {
                e.push(
                    Element::new("blockio")
                        .attr("logical_block_size", logical)
                        .attr("physical_block_size", physical),
                );
            }
        }
        if let Some(pci) = disk
            .disk_device
            .disk
            .as_ref()
            .and_then(|d| d.pci_address.as_deref())
        {
            if bus != disk_bus::VIRTIO {
                return Err(ConvertError::invalid(
                    format!("{field}.disk.pciAddress"),
                    "only virtio disks have a PCI address",
                ));
            }
            e.push(super::devices::pci_address(
                pci,
                &format!("{field}.disk.pciAddress"),
            )?);
        }
        e.push(Element::new("alias").attr("name", format!("ua-{}", disk.name)));
        out.disks.push(e);
    }
    Ok(out)
}

/// `<driver>`: format, cache and IO modes, error policy, IO thread and queues.
///
/// Defaults follow upstream's documented behaviour: cache `none` where the storage supports
/// O_DIRECT, else `writethrough`; IO `native` for block devices with cache `none`, else
/// `threads`; error policy `stop` (the guest pauses on an IO error instead of seeing it).
fn driver(
    disk: &Disk,
    src: &DiskSource,
    field: &str,
    kind: Kind,
    readonly: bool,
    iothread: Option<u32>,
    queues: Option<u32>,
) -> Result<Element, ConvertError> {
    let cache = match disk.cache.as_deref() {
        Some(c @ (driver_cache::NONE | driver_cache::WRITE_THROUGH | driver_cache::WRITE_BACK)) => {
            c
        }
        Some(other) => {
            return Err(ConvertError::invalid(
                format!("{field}.cache"),
                format!("unknown cache mode {other:?} (none, writethrough or writeback)"),
            ));
        }
        None if disk.shareable == Some(true) || src.direct_io => driver_cache::NONE,
        None => driver_cache::WRITE_THROUGH,
    };
    if cache == driver_cache::NONE && !src.direct_io {
        return Err(ConvertError::invalid(
            format!("{field}.cache"),
            format!(
                "cache mode none needs O_DIRECT, which the storage of {} does not support",
                src.path.display()
            ),
        ));
    }
    let io = match disk.io.as_deref() {
        Some(io @ (driver_io::NATIVE | driver_io::THREADS)) => io,
        Some(other) => {
            return Err(ConvertError::invalid(
                format!("{field}.io"),
                format!("unknown IO mode {other:?} (native or threads)"),
            ));
        }
        None if src.block && cache == driver_cache::NONE => driver_io::NATIVE,
        None => driver_io::THREADS,
    };
    if io == driver_io::NATIVE && cache != driver_cache::NONE {
        return Err(ConvertError::invalid(
            format!("{field}.io"),
            "IO mode native needs cache mode none",
        ));
    }
    let policy = match disk.error_policy.as_deref() {
        None => "stop",
        Some(p @ ("stop" | "ignore" | "report" | "enospace")) => p,
        Some(other) => {
            return Err(ConvertError::invalid(
                format!("{field}.errorPolicy"),
                format!("unknown error policy {other:?} (stop, ignore, report or enospace)"),
            ));
        }
    };
    let mut d = Element::new("driver")
        .attr("name", "qemu")
        .attr("type", src.format.as_str())
        .attr("cache", cache)
        .attr("io", io)
        .attr("error_policy", policy);
    if kind == Kind::Disk && !readonly {
        d = d.attr("discard", "unmap");
    }
    Ok(d.attr_opt("iothread", iothread).attr_opt("queues", queues))
}
