//! Device reinitialisation for the kernel: maps the command line onto the reinit engine's
//! policy, loads the firmware configuration blob the first kernel handed over through the
//! initrd slot (`rkdumpctl load`), and runs quiesce -> reset -> restore before any driver probes.

use alloc::vec::Vec;

use rkdump_boot::cmdline::Options;
use rkdump_boot::info::BootInfo;
use rkdump_devices::blob::{Blob, BlobView};
use rkdump_devices::hw::Mmio;
use rkdump_devices::pci::{Bdf, Scan};
use rkdump_devices::reinit::{self, DriverCtx, Platform, Policy, SavedConfig, Source};

use crate::clock::TscClock;
use crate::pci::{Pci, map_mmio};
use crate::physmem::BootMem;
use crate::{drivers, rkerror, rkline};

/// Largest initrd rkdump reads as a blob (the format's own limit is 32 MiB).
const MAX_BLOB: u64 = 32 << 20;

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

/// Address registers a firmware restore may put back: type 0 BARs 0x10..0x28; type 1 BARs
/// 0x10..0x18, bus numbers 0x18, I/O base/limit 0x1C (16-bit), memory and prefetchable windows
/// 0x20..0x30, I/O upper halves 0x30. COMMAND, Status, Bridge Control and the rest are not
/// touched: quiescing owns COMMAND, and the others carry no firmware-assigned address.
fn is_address_register(header_type: u8, off: u16) -> bool {
    match header_type & 0x7F {
        0 => (0x10..0x28).contains(&off),
        1 => (0x10..0x34).contains(&off) && off != 0x1E,
        _ => false,
    }
}

/// The NTT design's firmware-configuration step: every function whose live addresses (BARs,
/// bridge windows, bus numbers) differ from what the first kernel's snapshot saved gets the
/// saved values back, width-exact and in Linux's restore order, so the dump path decodes
/// where firmware put it. Functions whose IDs or class no longer match are skipped.
fn restore_addresses(pci: &Pci, scan: &Scan, view: &BlobView<'_>) -> usize {
    let mut restored = 0;
    for d in &scan.devices {
        let class =
            (u32::from(d.class) << 16) | (u32::from(d.subclass) << 8) | u32::from(d.prog_if);
        let Some(rec) = view.find(d.bdf) else {
            continue;
        };
        if !rec.matches(d.vendor, d.device, class) {
            rkline!(
                "reinit {}: blob record does not match the function (IDs or class differ); skipped",
                d.bdf
            );
            continue;
        }
        let mut live = [0u8; 64];
        for (i, chunk) in live.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&pci.cfg.read32(d.bdf, (i * 4) as u16).to_le_bytes());
        }
        let writes: Vec<_> = rec
            .restore_plan(&live)
            .into_iter()
            .filter(|w| is_address_register(d.header_type, w.off))
            .collect();
        if writes.is_empty() {
            continue;
        }
        let mut what = alloc::string::String::new();
        for w in &writes {
            match w.width {
                1 => pci.cfg.write8(d.bdf, w.off, w.value as u8),
                2 => pci.cfg.write16(d.bdf, w.off, w.value as u16),
                _ => pci.cfg.write32(d.bdf, w.off, w.value),
            }
            let old = u32::from_le_bytes([
                live[usize::from(w.off & !3)],
                live[usize::from(w.off & !3) + 1],
                live[usize::from(w.off & !3) + 2],
                live[usize::from(w.off & !3) + 3],
            ]);
            let shift = 8 * u32::from(w.off & 3);
            let mask = if w.width >= 4 {
                u32::MAX
            } else {
                (1u32 << (8 * u32::from(w.width))) - 1
            };
            let old = (old >> shift) & mask;
            if old != w.value & mask {
                what.push_str(&alloc::format!(
                    " {:#04x}:{:#x}->{:#x}",
                    w.off,
                    old,
                    w.value & mask
                ));
            }
        }
        rkline!("reinit {} restored from blob:{what}", d.bdf);
        restored += 1;
    }
    restored
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
    let report = reinit::run(&mut ctx, scan, &policy, &mut set, &BlobSource(view.clone()));
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
/// nor the snapshot can restore). BAR dwords are written whole, low half first.
pub fn assign_bars(pci: &Pci, scan: &Scan, bdfs: &[Bdf]) {
    for &b in bdfs {
        let Some(dev) = scan.find(b) else { continue };
        let parent = scan
            .devices
            .iter()
            .find(|p| p.is_bridge && p.secondary_bus == b.bus && p.bdf.segment == b.segment)
            .map(|p| p.bdf);
        match rkdump_devices::pci::assign::plan(&*pci.cfg, dev, parent, &scan.devices) {
            Ok(plan) if plan.is_empty() => {
                rkerror!("reinit {b}: nothing assignable (no sized memory BARs)")
            }
            Ok(plan) => {
                let mut what = alloc::string::String::new();
                for a in &plan {
                    let off = 0x10 + 4 * u16::from(a.index);
                    pci.cfg.write32(b, off, a.addr as u32);
                    if a.is64 {
                        pci.cfg.write32(b, off + 4, (a.addr >> 32) as u32);
                    }
                    what.push_str(&alloc::format!(
                        " BAR{}={:#x}+{:#x}",
                        a.index,
                        a.addr,
                        a.size
                    ));
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
