//! The ordered target list, orchestrated: `rkdump.target=` resolved into searches
//! (`TargetStep`s, decided and host-tested in `rkdump_boot::cmdline`), each tried in order.
//! A target that is absent is skipped with its reason; one that fails midway is abandoned and
//! the next one gets a fresh dump, and the console says which.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use rkdump_boot::cmdline::{Options, TargetStep};
use rkdump_devices::pci::Scan;
use rkdump_vmcore::DumpPlan;

use crate::disk::{self, Accept};
use crate::dump;
use crate::pci::Pci;
use crate::physmem::OldMem;
use crate::power::Outcome;
use crate::{rkerror, rkline};

/// Tries each target of `opts.target` in order until one takes the whole dump.
pub fn run(
    opts: &Options,
    pci: &Pci,
    scan: &Scan,
    plan: &DumpPlan,
    mem: &mut OldMem,
    run_id: [u8; 16],
) -> Outcome {
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
                rkline!("target file: skipped: no file map in the config blob; trying {next}");
            }
            TargetStep::Disks { want, whole, part } => {
                let want = want.map(|a| rkdump_devices::pci::Bdf {
                    segment: a.segment,
                    bus: a.bus,
                    dev: a.dev,
                    func: a.func,
                });
                let fault = opts.fault_dead.map(|a| rkdump_devices::pci::Bdf {
                    segment: a.segment,
                    bus: a.bus,
                    dev: a.dev,
                    func: a.func,
                });
                let found = disk::find(
                    pci,
                    scan,
                    want,
                    Accept { whole, part },
                    opts.nopreinit,
                    fault,
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
                let pace = disk::WriteOptions {
                    checksum: dump::checksum_kind(opts.checksum),
                    checkpoints: opts.checkpoints,
                    throttle_mib_s: opts.throttle_mib_s,
                };
                match dump::dump_disk(&mut d, plan, mem, run_id, &pace) {
                    Ok(()) => return Outcome::Success,
                    Err(e) => rkerror!(
                        "target {step}: dump to {} failed midway: {e}; falling back to {next} for a fresh dump",
                        d.target
                    ),
                }
            }
            TargetStep::Serial(port) => {
                if opts.console.map(|c| c.port) == Some(port)
                    || (opts.console.is_none() && port == rkdump_boot::cmdline::SerialPort::Com1)
                {
                    rkerror!("dump serial port {port} is also the console; refusing to mix them");
                    continue;
                }
                match dump::dump_serial(
                    plan,
                    mem,
                    port,
                    opts.serial_baud.unwrap_or(115_200),
                    run_id,
                ) {
                    Ok(()) => return Outcome::Success,
                    Err(e) => rkerror!("serial dump failed: {e}; falling back to {next}"),
                }
            }
        }
    }
    rkerror!("no target took the dump");
    Outcome::Failed
}
