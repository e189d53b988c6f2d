//! Dumping to disk, orchestrated: find a block device carrying an rkdump label (candidates,
//! opening and the label check live in `rkdump_devices::disk`), then have
//! `rkdump_devices::record` write the dump record, logging each step on the console.

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
    /// `disk:<bdf>` for console lines.
    pub target: String,
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
            Ok(label) => {
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
            Err(e @ (NotDumpDisk::Io(_) | NotDumpDisk::NoMemory)) => {
                rkerror!("disk {bdf} {kind}: {e}; skipped");
                pci::disable(cfg, bdf);
            }
            Err(NotDumpDisk::NoLabel(e)) => {
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
    let writer = RecordWriter::new(&disk.label, plan, run_id, pace.checksum)?.with_pacing(pacing);
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
