//! Dumping to disk, orchestrated: find a block device carrying an rkdump label (candidates,
//! opening and the label check live in `rkdump_devices::disk`), or a disk whose partition table
//! names a labelled partition (`rkdump_devices::target`, written through a window that refuses
//! anything outside the partition), then have `rkdump_devices::record` write the dump record,
//! logging each step on the console.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use rkdump_devices::block::BlockDevice;
use rkdump_devices::disk::{self as devdisk, DiskKind, NotDumpDisk, OpenOptions};
use rkdump_devices::label::{ChecksumKind, Label};
use rkdump_devices::pci::{self, Scan};
use rkdump_devices::record::{
    Checkpoint, Checkpoints, OldMemSlices, Pacing, RecordError, RecordWriter,
};
use rkdump_devices::target::mapped::Mapped;
use rkdump_devices::target::partition::{GptSource, TableError};
use rkdump_devices::target::{self as devtarget, PartitionSearch};
use rkdump_vmcore::{DumpPlan, OldMemError};

use crate::clock::TscClock;
use crate::drivers::KernelMmio;
use crate::memory::KernelDma;
use crate::pci::Pci;
use crate::physmem;
use crate::{rkerror, rkline};

static CLOCK: TscClock = TscClock;

/// An opened, labelled dump disk.
pub struct DumpDisk {
    dev: Box<dyn BlockDevice>,
    label: Label,
    /// `disk:<bdf>` or `part:<bdf>/<n>` for console lines.
    pub target: String,
}

impl DumpDisk {
    /// A labelled range opened elsewhere (the file target).
    pub fn new(dev: Box<dyn BlockDevice>, label: Label, target: String) -> Self {
        DumpDisk { dev, label, target }
    }
}

/// Which labelled ranges a search accepts (`rkdump.target=` entries `disk` and `part`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept {
    /// A whole disk labelled at LBA 0.
    pub whole: bool,
    /// A labelled partition of a GPT or MBR disk.
    pub part: bool,
}

/// Finds the dump disk: the device named by `want` (a `disk:<bdf>` target) or the first one
/// carrying a valid label (on the whole disk or, when `accept.part`, on a partition). Devices
/// without a label are left disabled and never written.
pub fn find(
    pci: &Pci,
    scan: &Scan,
    want: Option<pci::Bdf>,
    accept: Accept,
    skip_reset: bool,
    fault: Option<pci::Bdf>,
    policy: &rkdump_devices::reinit::Policy,
) -> Option<DumpDisk> {
    let cfg = &*pci.cfg;
    let mut platform = KernelMmio;
    let mut candidates = Vec::new();
    for d in &scan.devices {
        let Some(kind) = DiskKind::of(d) else {
            continue;
        };
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
        candidates.extend(devdisk::candidates(&mut platform, cfg, d, kind));
    }
    for c in candidates {
        let (bdf, kind) = (c.dev.bdf, c.kind);
        let start = crate::clock::now_us();
        let opts = OpenOptions {
            skip_reset,
            never_ready: fault == Some(bdf),
        };
        let mut note = |a: core::fmt::Arguments<'_>| rkline!("{kind} {bdf}: {a}");
        let opened = devdisk::open(
            &c,
            &mut platform,
            cfg,
            &mut KernelDma,
            &CLOCK,
            opts,
            &mut note,
        );
        let mut dev = match opened {
            Ok(dev) => dev,
            Err(e) if e.is_not_disk() => {
                rkline!("{kind} {bdf}: {e}");
                continue;
            }
            Err(e) => {
                let ms = (crate::clock::now_us() - start) / 1000;
                rkerror!("{kind} {bdf}: {e}; skipped after {ms} ms");
                pci::disable(cfg, bdf);
                continue;
            }
        };
        let info = dev.info();
        match devdisk::read_label(&mut *dev, &mut KernelDma) {
            Ok(label) if accept.whole => {
                rkline!(
                    "disk {bdf} {kind} blocks={} block_size={} label ok capacity={} data_offset={:#x}",
                    info.blocks,
                    info.block_size,
                    label.capacity_bytes,
                    label.data_offset
                );
                return Some(DumpDisk {
                    dev,
                    label,
                    target: format!("disk:{bdf}"),
                });
            }
            Ok(_) => {
                rkline!("disk {bdf} {kind}: whole-disk label, not a target in this pass");
                pci::disable(cfg, bdf);
            }
            Err(e @ (NotDumpDisk::Io(_) | NotDumpDisk::NoMemory)) => {
                rkerror!("disk {bdf} {kind}: {e}; skipped");
                pci::disable(cfg, bdf);
            }
            Err(NotDumpDisk::NoLabel(e)) => {
                if accept.part
                    && let Some(found) = labelled_partition(dev, bdf, kind)
                {
                    return Some(found);
                }
                if want.is_some() {
                    rkerror!("disk {bdf} {kind}: no usable rkdump label ({e}); not writing");
                } else {
                    rkline!("disk {bdf} {kind}: no rkdump label ({e}); not used");
                }
                pci::disable(cfg, bdf);
            }
        }
    }
    None
}

/// The first labelled partition of `dev`, opened through a window onto it; `None` (with the
/// reasons on the console) if the disk has no table or no partition carries a label.
fn labelled_partition(
    mut dev: Box<dyn BlockDevice>,
    bdf: pci::Bdf,
    kind: DiskKind,
) -> Option<DumpDisk> {
    let info = dev.info();
    let search = match devtarget::find_labelled_partition(&mut *dev, &mut KernelDma) {
        Ok(s) => s,
        // A disk with neither label nor table: the caller's "no rkdump label" line says it.
        Err(devtarget::SearchError::Table(TableError::NoTable)) => return None,
        Err(e) => {
            rkline!("disk {bdf} {kind}: partition table unusable ({e}); no partition used");
            return None;
        }
    };
    let PartitionSearch {
        table,
        found,
        rejected,
    } = search;
    let source = match table.gpt_source {
        Some(GptSource::Primary { backup_ok: true }) | None => String::new(),
        Some(GptSource::Primary { backup_ok: false }) => String::from(", backup GPT damaged"),
        Some(GptSource::Backup(e)) => format!(", primary GPT damaged ({e}): using the backup"),
    };
    rkline!(
        "disk {bdf} {kind}: {} partition table, {} partition(s){source}",
        table.scheme,
        table.partitions.len()
    );
    for (n, e) in &rejected {
        rkline!("disk {bdf} {kind} partition {n}: no rkdump label ({e}); not used");
    }
    let (p, label) = found?;
    let target = format!("part:{bdf}/{}", p.number);
    match Mapped::window(dev, p.first_lba, p.blocks, target.clone()) {
        Ok(window) => {
            rkline!(
                "part {bdf}/{} {kind} first_lba={} blocks={} block_size={} label ok capacity={} data_offset={:#x}",
                p.number,
                p.first_lba,
                p.blocks,
                info.block_size,
                label.capacity_bytes,
                label.data_offset
            );
            Some(DumpDisk {
                dev: Box::new(window),
                label,
                target,
            })
        }
        Err(e) => {
            rkerror!("part {bdf}/{} {kind}: {e}; not used", p.number);
            None
        }
    }
}

impl DumpDisk {
    /// The device and its label, for a writer other than [`dump`] (`crate::format`).
    pub fn parts(&mut self) -> (&mut dyn BlockDevice, &Label) {
        (&mut *self.dev, &self.label)
    }
}

/// Old memory through the kernel's identity map: devices DMA from the same addresses.
impl OldMemSlices for physmem::OldMem {
    fn with_slice(&self, phys: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<(), OldMemError> {
        physmem::OldMem::with_slice(self, phys, len, f)
    }
}

/// How the disk writer writes: checksum kind, checkpoints, and the test-only throttle.
pub struct WriteOptions {
    /// Checksum coverage (`rkdump.checksum=`, resolved).
    pub checksum: ChecksumKind,
    /// `rkdump.checkpoint=` (test only): `false` writes no checkpoints.
    pub checkpoints: bool,
    /// `rkdump.throttle_mib_s=` (test only): 0 for no limit.
    pub throttle_mib_s: u32,
    /// The crash report text for the record's report area.
    pub report: String,
}

/// Writes the dump record. `progress` gets (done, total) after every batch, `on_checkpoint`
/// each checkpoint taken.
pub fn dump(
    disk: &mut DumpDisk,
    plan: &DumpPlan,
    mem: &physmem::OldMem,
    run_id: [u8; 16],
    pace: &WriteOptions,
    progress: &mut dyn FnMut(u64, u64),
    on_checkpoint: &mut dyn FnMut(Checkpoint),
) -> Result<u64, RecordError> {
    let pacing = Pacing {
        clock: &CLOCK,
        checkpoints: pace.checkpoints.then_some(Checkpoints::DEFAULT),
        throttle_mib_s: pace.throttle_mib_s,
    };
    let writer = RecordWriter::new(&disk.label, plan, run_id, pace.checksum)?
        .with_pacing(pacing)
        .with_report(&pace.report);
    let layout = writer.layout();
    if !layout.fits {
        rkerror!(
            "dump of {} bytes does not fit; writing the first {} bytes (truncated)",
            plan.layout.total_size,
            layout.writable_bytes
        );
    }
    writer.write_checkpointed(&mut *disk.dev, mem, &mut KernelDma, progress, on_checkpoint)
}
