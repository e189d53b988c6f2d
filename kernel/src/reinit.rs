//! Device reinitialisation for the kernel, orchestration only: loads the firmware
//! configuration blob the first kernel handed over through the initrd slot (`rkdumpctl load`),
//! runs the reinit engine (quiesce -> reset -> restore) before any driver probes, puts firmware
//! addresses back from the blob, and prints the outcomes. Every decision (policy from the
//! command line, restore planning, which registers, retries) lives in `rkdump_devices::reinit`,
//! where it is host-tested.

use alloc::vec::Vec;

use rkdump_boot::cmdline::Options;
use rkdump_boot::info::BootInfo;
use rkdump_devices::blob::{Blob, BlobView, MAX_BLOB_LEN};
use rkdump_devices::hw::Mmio;
use rkdump_devices::pci::{Bdf, Scan, assign};
use rkdump_devices::reinit::{self, DriverCtx, NoSavedConfig, Platform, Policy, SavedConfig};

use crate::clock::TscClock;
use crate::pci::{Pci, map_mmio};
use crate::physmem::BootMem;
use crate::{drivers, rkerror, rkline};

/// Largest initrd rkdump reads as a blob: the format's own limit.
const MAX_BLOB: u64 = MAX_BLOB_LEN as u64;

/// The engine's policy from the command line (the device layer uses the command line's types).
pub fn policy(opts: &Options) -> Policy {
    Policy::from_options(opts)
}

/// Reads the initrd into the heap (the blob must outlive the loader's memory, which rkdump may
/// hand out).
pub fn load_blob(boot: &BootInfo) -> Option<Vec<u8>> {
    let initrd = boot.initrd()?;
    if initrd.len > MAX_BLOB {
        rkerror!(
            "config blob: initrd of {} bytes is larger than any blob; ignored",
            initrd.len
        );
        return None;
    }
    let mut bytes = alloc::vec![0u8; initrd.len as usize];
    if let Err(e) = rkdump_boot::mem::PhysMem::read(&BootMem, initrd.start, &mut bytes) {
        rkerror!("config blob: initrd unreadable: {e}; ignored");
        return None;
    }
    Some(bytes)
}

struct KernelPlatform;

impl Platform for KernelPlatform {
    fn map_mmio(&mut self, phys: u64, len: u64) -> Option<Mmio> {
        map_mmio(phys, len)
    }
}

/// The NTT design's firmware-configuration step (policy and host tests in
/// `rkdump_devices::reinit::firmware`): prints one line per function whose addresses the blob
/// put back, an error line for those that did not take.
fn restore_addresses(pci: &Pci, scan: &Scan, view: &BlobView<'_>) {
    for r in reinit::restore_addresses(&*pci.cfg, &TscClock, scan, view) {
        if r.is_error() {
            rkerror!("reinit {r}");
        } else {
            rkline!("reinit {r}");
        }
    }
}

/// Runs the engine and prints its report, one line per device; then puts firmware addresses back
/// from the blob. Returns the functions left without BARs (for [`assign_bars`] after a rescan).
pub fn run(pci: &Pci, scan: &Scan, opts: &Options, blob: Option<&[u8]>) -> Vec<Bdf> {
    let view = match blob.map(Blob::parse) {
        Some(Ok(v)) => {
            rkline!(
                "config blob: {} functions saved by {} ",
                v.len(),
                v.release()
            );
            Some(v)
        }
        Some(Err(e)) => {
            rkerror!("config blob rejected: {e}; using the pre-reset snapshot");
            None
        }
        None => {
            rkline!("config blob: none (restores use the pre-reset snapshot)");
            None
        }
    };
    let policy = policy(opts);
    let clock = TscClock;
    let mut platform = KernelPlatform;
    let mut ctx = DriverCtx::new(&*pci.cfg, &clock, &mut platform);
    let mut set = drivers::all();
    let saved: &dyn SavedConfig = match &view {
        Some(v) => v,
        None => &NoSavedConfig,
    };
    let report = reinit::run(&mut ctx, scan, &policy, &mut set, saved);
    rkline!("reinit {}", report.mode_line());
    rkline!("reinit {}", report.quiesce_line());
    for e in &report.entries {
        // Cleared BARs without saved addresses are not a failure yet: `assign_bars` follows.
        if e.is_ok() || report.needs_bar_assignment.contains(&e.bdf) {
            rkline!("reinit {e}");
        } else {
            rkerror!("reinit {e}");
        }
    }
    if report.budget_skipped > 0 {
        rkerror!(
            "reinit budget of {} ms exhausted: {} functions only quiesced",
            report.budget_ms,
            report.budget_skipped
        );
    }
    for b in &report.needs_bar_assignment {
        rkline!("reinit {b}: BARs unassigned after reset and no saved configuration; assigning");
    }
    rkline!("reinit done in {} ms", report.elapsed_ms);
    if let Some(v) = view.as_ref() {
        restore_addresses(pci, scan, v);
    }
    report.needs_bar_assignment
}

/// Going beyond firmware: gives each function in `bdfs` addresses from its parent bridge's
/// window, as firmware would have (the case where a reset cleared BARs that neither the blob
/// nor the snapshot can restore). Planning and writing live in `rkdump_devices::pci::assign`.
pub fn assign_bars(pci: &Pci, scan: &Scan, bdfs: &[Bdf]) {
    for &b in bdfs {
        let Some(dev) = scan.find(b) else { continue };
        let parent = scan.parent_bridge(b).map(|p| p.bdf);
        match assign::plan(&*pci.cfg, dev, parent, &scan.devices) {
            Ok(plan) if plan.is_empty() => {
                rkerror!("reinit {b}: nothing assignable (no sized memory BARs)")
            }
            Ok(plan) => {
                assign::apply(&*pci.cfg, b, &plan);
                let mut what = alloc::string::String::new();
                for a in &plan {
                    what.push_str(&alloc::format!(" {a}"));
                }
                rkline!(
                    "reinit {b} BARs assigned from bridge {} window:{what}",
                    parent.map_or(alloc::string::String::from("?"), |p| alloc::format!("{p}"))
                );
            }
            Err(e) => rkerror!("reinit {b}: BAR assignment failed: {e:?}"),
        }
    }
}
