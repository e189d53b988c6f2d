//! The ordered target list, orchestrated: `rkdump.target=` resolved into searches
//! (`TargetStep`s, decided and host-tested in `rkdump_boot::cmdline`), each tried in order.
//! A target that is absent is skipped with its reason; one that fails midway is abandoned and
//! the next one gets a fresh dump, and the console says which.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use alloc::boxed::Box;

use rkdump_boot::cmdline::{DumpFormat, Options, TargetStep};
use rkdump_devices::blob::filemap::{self, FileMap};
use rkdump_devices::disk::{self as devdisk, DiskKind, OpenOptions};
use rkdump_devices::pci::{self, Scan};
use rkdump_devices::target;
use rkdump_vmcore::DumpPlan;

use crate::clock::TscClock;
use crate::disk::{self, Accept, DumpDisk};
use crate::drivers::KernelMmio;
use crate::dump;
use crate::memory::KernelDma;
use crate::pci::Pci;
use crate::physmem::OldMem;
use crate::power::Outcome;
use crate::{rkerror, rkline};

static CLOCK: TscClock = TscClock;

/// What identifies this run in every record it writes: the run id and the crash report text.
pub struct RunStamp<'a> {
    /// Identifies this dump run (record header, serial stream).
    pub run_id: [u8; 16],
    /// The crash report for the record's report area.
    pub report: &'a str,
}

/// Tries each target of `opts.target` in order until one takes the whole dump. `blob` is the
/// initrd (config blob, and the file map after it when `rkdumpctl load --file` put one there).
pub fn run(
    opts: &Options,
    blob: Option<&[u8]>,
    pci: &Pci,
    scan: &Scan,
    plan: &DumpPlan,
    mem: &mut OldMem,
    id: &RunStamp<'_>,
) -> Outcome {
    let run_id = id.run_id;
    let steps: Vec<TargetStep> = opts.target.steps().collect();
    let explicit = opts.target.as_slice() != [rkdump_boot::cmdline::Target::Auto];
    rkline!(
        "targets {}",
        steps
            .iter()
            .map(|s| format!("{s}"))
            .collect::<Vec<String>>()
            .join(",")
    );
    for (i, step) in steps.iter().enumerate() {
        let next = steps
            .get(i + 1)
            .map_or(String::from("nothing"), |n| format!("{n}"));
        match *step {
            TargetStep::File => {
                let map = match blob.map(filemap::find) {
                    None | Some(Ok(None)) => {
                        rkline!(
                            "target file: skipped: no file map in the config blob; trying {next}"
                        );
                        continue;
                    }
                    // The blob itself is judged (and its errors reported) by reinit.
                    Some(Err(filemap::FileMapError::Blob(_))) => {
                        rkline!("target file: skipped: no valid config blob; trying {next}");
                        continue;
                    }
                    Some(Err(e)) => {
                        rkerror!("target file: skipped: {e}; trying {next}");
                        continue;
                    }
                    Some(Ok(Some(m))) => m,
                };
                let Some(mut d) = open_file(opts, pci, scan, &map) else {
                    rkerror!("target file: skipped: the file's disk is not usable; trying {next}");
                    continue;
                };
                if write(opts, *step, &next, &mut d, plan, mem, id) {
                    return Outcome::Success;
                }
            }
            TargetStep::Disks { want, whole, part } => {
                let found = disk::find(
                    pci,
                    scan,
                    want,
                    Accept { whole, part },
                    opts.nopreinit,
                    opts.fault_dead,
                    &crate::reinit::policy(opts),
                );
                let Some(mut d) = found else {
                    if explicit {
                        rkerror!(
                            "no usable labelled dump disk for target {step}; falling back to {next}"
                        );
                    } else {
                        rkline!("target {step}: skipped: no labelled dump disk; trying {next}");
                    }
                    continue;
                };
                if write(opts, *step, &next, &mut d, plan, mem, id) {
                    return Outcome::Success;
                }
            }
            TargetStep::Serial(port) => {
                if opts.console.map(|c| c.port) == Some(port)
                    || (opts.console.is_none() && port == rkdump_boot::cmdline::SerialPort::Com1)
                {
                    rkerror!("dump serial port {port} is also the console; refusing to mix them");
                    continue;
                }
                match dump::dump_serial(plan, mem, port, opts, run_id) {
                    Ok(()) => return Outcome::Success,
                    Err(e) => rkerror!("serial dump failed: {e}; falling back to {next}"),
                }
            }
        }
    }
    rkerror!("no target took the dump");
    Outcome::Failed
}

/// Writes the dump record to an opened labelled range; on a failure midway says so and that
/// `next` gets a fresh dump. Whether the dump is complete (or truncated, which is not a failure).
fn write(
    opts: &Options,
    step: TargetStep,
    next: &str,
    d: &mut DumpDisk,
    plan: &DumpPlan,
    mem: &mut OldMem,
    id: &RunStamp<'_>,
) -> bool {
    let pace = disk::WriteOptions {
        checksum: dump::checksum_kind(opts.checksum),
        checkpoints: opts.checkpoints,
        throttle_mib_s: opts.throttle_mib_s,
        report: id.report.into(),
    };
    let done = if opts.format == DumpFormat::Kdump {
        crate::format::dump_disk(d, plan, mem, id.run_id, &pace, opts)
    } else {
        dump::dump_disk(d, plan, mem, id.run_id, &pace)
    };
    match done {
        Ok(()) => true,
        Err(e) => {
            rkerror!(
                "target {step}: dump to {} failed midway: {e}; falling back to {next} for a fresh dump",
                d.target
            );
            false
        }
    }
}

/// Opens the disk the file map names and the file on it (`rkdump_devices::target::open_file`
/// decides); every refusal is an error line. The controller is left disabled when refused.
fn open_file(opts: &Options, pci: &Pci, scan: &Scan, map: &FileMap) -> Option<DumpDisk> {
    let cfg = &*pci.cfg;
    let bdf = map.bdf;
    rkline!(
        "file map: disk {bdf} blocks={} block_size={} partition_lba={} file_bytes={} runs={}",
        map.disk_blocks,
        map.block_size,
        map.part_start_lba,
        map.file_bytes,
        map.runs.len()
    );
    let Some(d) = scan.devices.iter().find(|d| d.bdf == bdf) else {
        rkerror!("file map: no PCI function at {bdf}");
        return None;
    };
    let Some(kind) = DiskKind::of(d) else {
        rkerror!("file map: {bdf} is not a disk controller rkdump drives");
        return None;
    };
    if !crate::reinit::policy(opts).may_use(d) {
        rkerror!("file map: {bdf} {kind}: not probed (rkdump.deny= / rkdump.allow=)");
        return None;
    }
    let mut platform = KernelMmio;
    let opened = devdisk::candidates(&mut platform, cfg, d, kind);
    for c in opened {
        let oo = OpenOptions {
            skip_reset: opts.nopreinit,
            never_ready: false,
        };
        let mut note = |a: core::fmt::Arguments<'_>| rkline!("{kind} {bdf}: {a}");
        let dev = match devdisk::open(
            &c,
            &mut platform,
            cfg,
            &mut KernelDma,
            &CLOCK,
            oo,
            &mut note,
        ) {
            Ok(dev) => dev,
            Err(e) => {
                rkerror!("file map: {kind} {bdf}: {e}");
                continue;
            }
        };
        let name = format!("file:{bdf}");
        match target::open_file(dev, &mut KernelDma, map, name.clone()) {
            Ok((file, label)) => {
                rkline!(
                    "file {bdf} {kind} label ok capacity={} data_offset={:#x}",
                    label.capacity_bytes,
                    label.data_offset
                );
                return Some(DumpDisk::new(Box::new(file), label, name));
            }
            Err(e) => rkerror!("file map: {kind} {bdf}: {e}; not writing"),
        }
    }
    pci::disable(cfg, bdf);
    None
}
