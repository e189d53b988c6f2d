//! Device reinitialisation for the kernel: maps the command line onto the reinit engine's
//! policy, loads the firmware configuration blob the first kernel handed over through the
//! initrd slot (`rkdumpctl load`), and runs quiesce -> reset -> restore before any driver probes.

use alloc::vec::Vec;

use rkdump_boot::cmdline::{DeviceMatch, Options, ResetMethods, ResetPolicy};
use rkdump_boot::info::BootInfo;
use rkdump_devices::blob::{Blob, BlobView};
use rkdump_devices::hw::Mmio;
use rkdump_devices::pci::{Bdf, Scan};
use rkdump_devices::reinit::{
    self, DriverCtx, Match, Methods, Mode, Platform, Policy, SavedConfig, Source,
};

use crate::clock::TscClock;
use crate::pci::{Pci, map_mmio};
use crate::physmem::BootMem;
use crate::{drivers, rkerror, rkline};

/// Largest initrd rkdump reads as a blob (the format's own limit is 32 MiB).
const MAX_BLOB: u64 = 32 << 20;

fn methods(m: ResetMethods) -> Methods {
    let mut out = Methods::empty();
    for (a, b) in [
        (ResetMethods::PREINIT, Methods::PREINIT),
        (ResetMethods::FLR, Methods::FLR),
        (ResetMethods::AFFLR, Methods::AFFLR),
        (ResetMethods::PM, Methods::PM),
        (ResetMethods::SBR, Methods::SBR),
    ] {
        if m.contains(a) {
            out |= b;
        }
    }
    out
}

fn matches(list: &[DeviceMatch]) -> Vec<Match> {
    list.iter()
        .map(|m| match *m {
            DeviceMatch::Id { vendor, device } => Match::Id { vendor, device },
            DeviceMatch::Class { class } => Match::Class { class },
            DeviceMatch::ClassSub { class, subclass } => Match::ClassSub { class, subclass },
        })
        .collect()
}

/// The engine's policy from the command line.
pub fn policy(opts: &Options) -> Policy {
    let mut mode = match opts.effective_reset() {
        ResetPolicy::Auto => Mode::Auto,
        ResetPolicy::None => Mode::None,
        ResetPolicy::Methods(m) => Mode::Methods(methods(m)),
    };
    if opts.nopreinit {
        // Test-only negative control: no driver preinit either (drivers then also skip their own
        // reset at probe), to show the failure a never-reset device causes.
        mode = Mode::Methods(mode.methods() - Methods::PREINIT);
    }
    let mut p = Policy::new(mode, opts.reset_devices);
    p.deny = matches(opts.deny.as_slice());
    p.allow = matches(opts.allow.as_slice());
    p.budget_ms = opts.budget_ms;
    p
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

struct BlobSource<'a>(Option<BlobView<'a>>);

impl SavedConfig for BlobSource<'_> {
    fn header(&self, bdf: Bdf, vendor: u16, device: u16, class: u32) -> Option<([u8; 64], Source)> {
        let r = self.0.as_ref()?.find_matching(bdf, vendor, device, class)?;
        Some((*r.header(), Source::Blob))
    }
}

struct KernelPlatform;

impl Platform for KernelPlatform {
    fn map_mmio(&mut self, phys: u64, len: u64) -> Option<Mmio> {
        map_mmio(phys, len)
    }
}

/// Runs the engine and prints its report, one line per device.
pub fn run(pci: &Pci, scan: &Scan, opts: &Options, blob: Option<&[u8]>) {
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
    let report = reinit::run(&mut ctx, scan, &policy, &mut set, &BlobSource(view));
    rkline!("reinit {}", report.mode_line());
    rkline!("reinit {}", report.quiesce_line());
    for e in &report.entries {
        if e.is_ok() {
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
        rkerror!("reinit {b}: BARs unassigned after reset and no saved configuration to restore");
    }
    rkline!("reinit done in {} ms", report.elapsed_ms);
}
