//! Dumping to disk: finds a block device carrying an rkdump label (virtio-blk, NVMe, AHCI),
//! resets and opens it, and writes the dump record of `devices::label`: header (Incomplete),
//! vmcore, per-block CRC table, flush, header (Complete or Truncated), flush. Page data goes
//! straight from old memory to the device by DMA; only headers and notes pass through buffers.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use rkdump_devices::ahci::{Ahci, AhciError, AhciOptions, AhciReset};
use rkdump_devices::block::{BlockDevice, BlockError, WriteReq};
use rkdump_devices::hw::alloc_dma_mem;
use rkdump_devices::label::{self, BlockSums, ChecksumKind, Label, RecordHeader};
use rkdump_devices::nvme::{Nvme, NvmeReset};
use rkdump_devices::pci::{self, PciDevice, Scan};
use rkdump_devices::virtio_blk::{self, InitOptions, VirtioBlk, VirtioPciRegions};
use rkdump_vmcore::{DumpPlan, Segment};

use crate::clock::TscClock;
use crate::memory::KernelDma;
use crate::pci::{Pci, map_mmio};
use crate::physmem;
use crate::{rkerror, rkline};

static CLOCK: TscClock = TscClock;

/// Bytes handed to the driver per `write` call: large enough to keep queues full, small
/// enough for regular progress lines.
const BATCH_BYTES: u64 = 32 << 20;

/// An opened, labelled dump disk.
pub struct DumpDisk {
    dev: Box<dyn BlockDevice>,
    label: Label,
    /// `disk:<bdf>` for console lines.
    pub target: String,
}

/// Which block-device kind a PCI function is, if rkdump has a driver for it.
fn kind(d: &PciDevice) -> Option<&'static str> {
    if virtio_blk::is_virtio_blk(d) {
        Some("virtio-blk")
    } else if d.class == 0x01 && d.subclass == 0x08 && d.prog_if == 0x02 {
        Some("nvme")
    } else if d.class == 0x01 && d.subclass == 0x06 && d.prog_if == 0x01 {
        Some("ahci")
    } else {
        None
    }
}

fn open_virtio(pci: &Pci, d: &PciDevice, skip_reset: bool) -> Result<Box<dyn BlockDevice>, String> {
    let info = virtio_blk::locate_virtio_regions(&*pci.cfg, d).map_err(|e| format!("{e:?}"))?;
    let map =
        |r: virtio_blk::VirtioRegion| map_mmio(r.phys, u64::from(r.len)).ok_or("cannot map BAR");
    let regions = VirtioPciRegions {
        common: map(info.common)?,
        notify: map(info.notify)?,
        notify_off_multiplier: info.notify_off_multiplier,
        device: map(info.device)?,
    };
    let opts = InitOptions {
        skip_reset,
        ..InitOptions::default()
    };
    let dev =
        VirtioBlk::new(regions, &mut KernelDma, &CLOCK, opts).map_err(|e| format!("{e:?}"))?;
    Ok(Box::new(dev.named(d.bdf)))
}

/// Maps memory BAR `i` of `d` uncached.
fn map_bar(d: &PciDevice, i: usize) -> Result<rkdump_devices::hw::Mmio, String> {
    let (addr, size) = d
        .bars
        .get(i)
        .and_then(|b| b.mem())
        .ok_or(format!("BAR{i} is not a memory BAR"))?;
    if addr == 0 {
        return Err(format!("BAR{i} unassigned"));
    }
    map_mmio(addr, size).ok_or_else(|| format!("cannot map BAR{i} at {addr:#x}"))
}

/// Test-only fault (`rkdump.fault=dead:<bdf>`): an NVMe controller whose CSTS.RDY never sets,
/// i.e. a device that never becomes ready. Everything else is the real device.
struct NeverReady(rkdump_devices::hw::Mmio);

impl rkdump_devices::nvme::Regs for NeverReady {
    fn read32(&self, off: usize) -> u32 {
        const CSTS: usize = 0x1C;
        let v = self.0.read32(off);
        if off == CSTS { v & !1 } else { v }
    }
    fn write32(&self, off: usize, v: u32) {
        self.0.write32(off, v)
    }
}

fn open(
    pci: &Pci,
    d: &PciDevice,
    kind: &str,
    port: Option<u8>,
    skip_reset: bool,
    fault: bool,
    first_port: u8,
) -> Result<Box<dyn BlockDevice>, String> {
    pci::disable_msi_msix(&*pci.cfg, d.bdf);
    pci::enable_mem_bus_master(&*pci.cfg, d.bdf);
    match kind {
        "virtio-blk" => open_virtio(pci, d, skip_reset),
        "nvme" if fault => {
            rkline!("nvme {}: test fault: CSTS.RDY forced to 0", d.bdf);
            let reset = if skip_reset {
                NvmeReset::Skip
            } else {
                NvmeReset::Disable
            };
            let n = Nvme::new_with(NeverReady(map_bar(d, 0)?), &mut KernelDma, &CLOCK, reset)
                .map_err(|e| format!("{e}"))?;
            Ok(Box::new(n))
        }
        "nvme" => {
            let reset = if skip_reset {
                NvmeReset::Skip
            } else {
                NvmeReset::Disable
            };
            let n = Nvme::new_with(map_bar(d, 0)?, &mut KernelDma, &CLOCK, reset)
                .map_err(|e| format!("{e}"))?;
            if let Some(r) = n.reset_report() {
                rkline!("nvme {}: {}", d.bdf, r);
            }
            rkline!("nvme {}: model \"{}\"", d.bdf, n.model());
            Ok(Box::new(n))
        }
        "ahci" => {
            // The HBA reset runs once, for the first port tried; later ports only need their own
            // engines stopped (the driver does that per port).
            let reset = match (skip_reset, port) {
                (true, _) => AhciReset::Skip,
                (false, Some(p)) if p != first_port => AhciReset::Ports,
                (false, _) => AhciReset::Hba,
            };
            let opts = AhciOptions { reset, port };
            let a = match Ahci::new_with(map_bar(d, 5)?, &mut KernelDma, &CLOCK, opts) {
                Ok(a) => a,
                // A CD-ROM or an empty port is not a failure, just not a dump disk.
                Err(e @ AhciError::NotDisk { .. }) => return Err(format!("note: {e}")),
                Err(e) => return Err(format!("{e}")),
            };
            rkline!(
                "ahci {}: port {} model \"{}\" ncq={}",
                d.bdf,
                a.port(),
                a.model(),
                a.ncq()
            );
            Ok(Box::new(a))
        }
        other => Err(format!("{other}: no driver")),
    }
}

/// The first populated port of an AHCI controller: the one whose open does the HBA reset.
fn candidates_first_port(ports: &[(pci::Bdf, u32)], bdf: pci::Bdf) -> u8 {
    ports
        .iter()
        .find(|(b, _)| *b == bdf)
        .map_or(0, |(_, p)| p.trailing_zeros() as u8)
}

/// Why a device is not the dump disk.
enum NotDumpDisk {
    /// The device failed the read: a driver or device problem.
    Io(String),
    /// It works but carries no valid rkdump label.
    NoLabel(String),
}

/// Reads the label at LBA 0.
fn read_label(dev: &mut dyn BlockDevice) -> Result<Label, NotDumpDisk> {
    let info = dev.info();
    let buf = alloc_dma_mem(&mut KernelDma, label::LABEL_BYTES, 4096, false)
        .ok_or(NotDumpDisk::Io("no DMA memory".into()))?;
    dev.read(0, buf.phys(0), label::LABEL_BYTES as u64)
        .map_err(|e| {
            let needs_reset = matches!(e, BlockError::DeviceError { status }
            if status & virtio_blk::DEVICE_STATUS_ERROR != 0 && status & 0x40 != 0);
            let why = if needs_reset {
                " (the device set NEEDS_RESET)"
            } else {
                ""
            };
            NotDumpDisk::Io(format!("reading LBA 0: {e}{why}"))
        })?;
    let mut bytes = vec![0; label::LABEL_BYTES];
    buf.copy_out(0, &mut bytes);
    let label = Label::parse(&bytes).map_err(|e| NotDumpDisk::NoLabel(format!("{e}")))?;
    label
        .check_device(info.blocks.saturating_mul(u64::from(info.block_size)))
        .map_err(|e| NotDumpDisk::NoLabel(format!("{e}")))?;
    Ok(label)
}

/// Finds the dump disk: the device named by `want` (a `disk:<bdf>` target) or the first one
/// carrying a valid label. Devices without a label are left disabled and never written.
pub fn find(
    pci: &Pci,
    scan: &Scan,
    want: Option<pci::Bdf>,
    skip_reset: bool,
    fault: Option<pci::Bdf>,
    policy: &rkdump_devices::reinit::Policy,
) -> Option<DumpDisk> {
    // Candidates: one per block function, one per populated port of an AHCI controller.
    let mut candidates: Vec<(&PciDevice, &'static str, Option<u8>)> = Vec::new();
    let mut ahci_ports: Vec<(pci::Bdf, u32)> = Vec::new();
    for d in &scan.devices {
        let Some(kind) = kind(d) else { continue };
        if want.is_some_and(|w| w != d.bdf) {
            continue;
        }
        if !policy.may_use(d) {
            rkline!(
                "disk {} {kind}: not probed (rkdump.deny= / rkdump.allow=)",
                d.bdf
            );
            continue;
        }
        if kind == "ahci" {
            pci::enable_mem_bus_master(&*pci.cfg, d.bdf);
            let ports = map_bar(d, 5).map(|m| Ahci::present_ports(&m)).unwrap_or(0);
            ahci_ports.push((d.bdf, ports));
            candidates.extend(
                (0..32u8)
                    .filter(|p| ports & (1 << p) != 0)
                    .map(|p| (d, kind, Some(p))),
            );
        } else {
            candidates.push((d, kind, None));
        }
    }
    for (d, kind, port) in candidates {
        let start = crate::clock::now_us();
        let first_port = candidates_first_port(&ahci_ports, d.bdf);
        let mut dev = match open(
            pci,
            d,
            kind,
            port,
            skip_reset,
            fault == Some(d.bdf),
            first_port,
        ) {
            Ok(dev) => dev,
            Err(e) if e.starts_with("note: ") => {
                rkline!("{kind} {}: {}", d.bdf, &e[6..]);
                continue;
            }
            Err(e) => {
                let ms = (crate::clock::now_us() - start) / 1000;
                rkerror!("{kind} {}: {e}; skipped after {ms} ms", d.bdf);
                pci::disable(&*pci.cfg, d.bdf);
                continue;
            }
        };
        let info = dev.info();
        match read_label(&mut *dev) {
            Ok(label) => {
                rkline!(
                    "disk {} {kind} blocks={} block_size={} label ok capacity={} data_offset={:#x}",
                    d.bdf,
                    info.blocks,
                    info.block_size,
                    label.capacity_bytes,
                    label.data_offset
                );
                return Some(DumpDisk {
                    dev,
                    label,
                    target: format!("disk:{}", d.bdf),
                });
            }
            Err(NotDumpDisk::Io(e)) => {
                rkerror!("disk {} {kind}: {e}; skipped", d.bdf);
                pci::disable(&*pci.cfg, d.bdf);
            }
            Err(NotDumpDisk::NoLabel(e)) => {
                if want.is_some() {
                    rkerror!(
                        "disk {} {kind}: no usable rkdump label ({e}); not writing",
                        d.bdf
                    );
                } else {
                    rkline!("disk {} {kind}: no rkdump label ({e}); not used", d.bdf);
                }
                pci::disable(&*pci.cfg, d.bdf);
            }
        }
    }
    None
}

/// Writes bytes from rkdump memory: copied into a DMA buffer first.
fn write_bytes(dev: &mut dyn BlockDevice, lba: u64, bytes: &[u8]) -> Result<(), String> {
    let len = bytes.len().div_ceil(4096) * 4096;
    // Freshly allocated DMA memory is zeroed, so the tail of the last block is too.
    let mut buf = alloc_dma_mem(&mut KernelDma, len, 4096, false).ok_or("no DMA memory")?;
    buf.copy_in(0, bytes);
    dev.write(&[WriteReq {
        lba,
        phys: buf.phys(0),
        len: len as u64,
    }])
    .map_err(|e| format!("{e}"))
}

/// Writes the dump record. `progress` gets (done, total) after every batch.
pub fn dump(
    disk: &mut DumpDisk,
    plan: &DumpPlan,
    mem: &physmem::OldMem,
    run_id: [u8; 16],
    kind: ChecksumKind,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, String> {
    let total = plan.layout.total_size;
    let layout = label::record_layout(&disk.label, total).map_err(|e| format!("{e}"))?;
    let bs = u64::from(disk.dev.info().block_size);
    let to_lba = |lba512: u64| lba512 * label::LBA_BYTES / bs;
    if !layout.fits {
        rkerror!(
            "dump of {total} bytes does not fit; writing the first {} bytes (truncated)",
            layout.writable_bytes
        );
    }
    let info = plan.notes.vmcoreinfo();
    let osrelease = info.and_then(|i| i.osrelease()).unwrap_or("").as_bytes();
    let timestamp = info.and_then(|i| i.crash_time()).unwrap_or(0);
    let mut header = RecordHeader::new(&disk.label, &layout, total, timestamp, run_id, osrelease);
    header.flags = kind as u32;
    let dev = &mut *disk.dev;
    write_bytes(dev, to_lba(layout.header_lba), &header.to_bytes())?;

    let data_start = layout.data_lba * label::LBA_BYTES;
    let limit = layout.writable_bytes;
    let mut crcs = BlockSums::new(layout.block_size, kind);
    let mut written = 0u64;
    let mut batch: Vec<WriteReq> = Vec::new();
    let mut batch_bytes = 0u64;
    for seg in plan.layout.segments() {
        if written >= limit {
            break;
        }
        match seg {
            Segment::Bytes(b) => {
                let n = (b.len() as u64).min(limit - written);
                flush_batch(dev, &mut batch, &mut batch_bytes)?;
                let lba = to_lba((data_start + written) / label::LBA_BYTES);
                write_bytes(dev, lba, &b[..n as usize])?;
                crcs.update(&b[..n as usize]);
                written += n;
            }
            Segment::OldMem { phys, len, .. } => {
                let mut off = 0;
                let len = len.min(limit - written);
                while off < len {
                    let n = (len - off).min(BATCH_BYTES);
                    let lba = to_lba((data_start + written) / label::LBA_BYTES);
                    batch.push(WriteReq {
                        lba,
                        phys: phys + off,
                        len: n,
                    });
                    mem.with_slice(phys + off, n, |s| crcs.update(s))
                        .map_err(|e| format!("{e}"))?;
                    batch_bytes += n;
                    written += n;
                    off += n;
                    if batch_bytes >= BATCH_BYTES {
                        flush_batch(dev, &mut batch, &mut batch_bytes)?;
                        progress(written, total);
                    }
                }
            }
        }
    }
    flush_batch(dev, &mut batch, &mut batch_bytes)?;
    progress(written, total);
    let table = label::table_bytes(&crcs.finish());
    write_bytes(dev, to_lba(layout.table_lba), &table)?;
    dev.flush().map_err(|e| format!("flush: {e}"))?;
    header.finish(written);
    write_bytes(dev, to_lba(layout.header_lba), &header.to_bytes())?;
    dev.flush().map_err(|e| format!("flush: {e}"))?;
    Ok(written)
}

fn flush_batch(
    dev: &mut dyn BlockDevice,
    batch: &mut Vec<WriteReq>,
    bytes: &mut u64,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    dev.write(batch).map_err(|e| format!("{e}"))?;
    batch.clear();
    *bytes = 0;
    Ok(())
}
