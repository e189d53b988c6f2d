//! NVMe as the reinit engine and the dump-disk search see it: which PCI functions it serves,
//! its preinit proven by read-back, and opening a controller as a block device.

use alloc::boxed::Box;
use alloc::format;
use core::fmt;

use super::{CC, CSTS, Cc, Csts, Nvme, NvmeError, NvmeReset, ResetReport};
use crate::block::{BlockDevice, Regs};
use crate::hw::DmaAllocator;
use crate::pci::PciDevice;
use crate::reinit::{DriverCtx, DriverError, FnDriver, Platform, PreinitReport};
use crate::time::Clock;

/// The BAR holding the controller registers (MLBAR/MUBAR, NVMe 1.4 §2.1.10).
pub const REGS_BAR: u8 = 0;

/// Whether `dev` is an NVMe controller: class 01h (mass storage), subclass 08h (non-volatile
/// memory), programming interface 02h (NVM Express).
pub fn matches(dev: &PciDevice) -> bool {
    dev.class == 0x01 && dev.subclass == 0x08 && dev.prog_if == 0x02
}

/// The reinit engine's NVMe driver.
pub const DRIVER: FnDriver = FnDriver {
    name: "nvme",
    matches,
    preinit,
};

/// The driver-specific soft reset before anything probes the device, proven by read-back.
pub fn preinit(ctx: &mut DriverCtx<'_>, dev: &PciDevice) -> Result<PreinitReport, DriverError> {
    let regs = ctx.platform.map_bar(dev, REGS_BAR)?;
    let r = Nvme::preinit(&regs, ctx.clock).map_err(|e| match e {
        NvmeError::Gone => DriverError::Gone,
        e => DriverError::Failed(format!("{e}")),
    })?;
    Ok(proof(&r, regs.read32(CC), regs.read32(CSTS)))
}

/// Judges a controller reset (NVM Express 1.4 §3.1.5, §3.1.6, §7.6.1) by what it changed:
/// proven when the controller was enabled (CC.EN or CSTS.RDY set) before, and CC.EN and
/// CSTS.RDY read 0 after (`cc`, `csts`). A controller found disabled proves nothing.
pub fn proof(r: &ResetReport, cc: u32, csts: u32) -> PreinitReport {
    let en = |v: u32| u32::from(v & Cc::EN.bits() != 0);
    let rdy = |v: u32| u32::from(v & Csts::RDY.bits() != 0);
    let regs = format!(
        "(CC {:#x} -> {cc:#x}, CSTS {:#x} -> {csts:#x})",
        r.cc_before, r.csts_before
    );
    let detail = format!(
        "CC.EN {} -> {}, CSTS.RDY {} -> {}",
        en(r.cc_before),
        en(cc),
        rdy(r.csts_before),
        rdy(csts)
    );
    let enabled_before = en(r.cc_before) == 1 || rdy(r.csts_before) == 1;
    match r.disable_us {
        _ if !enabled_before => PreinitReport::unproven(format!(
            "{detail} {regs}: already disabled, nothing for the reset to change"
        )),
        Some(us) if en(cc) == 0 && rdy(csts) == 0 => {
            PreinitReport::proven(format!("{detail} after {us} us {regs}"))
        }
        _ => PreinitReport::unproven(format!("{detail} {regs}: still enabled after the reset")),
    }
}

/// Test-only fault (`rkdump.fault=dead:<bdf>`): a controller whose CSTS.RDY never sets, i.e.
/// a device that never becomes ready. Everything else is the real device.
pub struct NeverReady<R>(pub R);

impl<R: Regs> Regs for NeverReady<R> {
    fn read32(&self, off: usize) -> u32 {
        let v = self.0.read32(off);
        if off == CSTS {
            v & !Csts::RDY.bits()
        } else {
            v
        }
    }
    fn write32(&self, off: usize, v: u32) {
        self.0.write32(off, v)
    }
}

/// Maps, resets as `reset` says and brings up the controller `dev`; `never_ready` injects
/// [`NeverReady`]. `note` gets what is worth a console line (reset report, model).
pub fn open<'c>(
    platform: &mut dyn Platform,
    dev: &PciDevice,
    dma: &mut dyn DmaAllocator,
    clock: &'c dyn Clock,
    reset: NvmeReset,
    never_ready: bool,
    note: &mut dyn FnMut(fmt::Arguments<'_>),
) -> Result<Box<dyn BlockDevice + 'c>, crate::disk::OpenError> {
    let regs = platform.map_bar(dev, REGS_BAR)?;
    if never_ready {
        note(format_args!("test fault: CSTS.RDY forced to 0"));
        let n = Nvme::new_with(NeverReady(regs), dma, clock, reset)?;
        return Ok(Box::new(n));
    }
    let n = Nvme::new_with(regs, dma, clock, reset)?;
    if let Some(r) = n.reset_report() {
        note(format_args!("{r}"));
    }
    note(format_args!("model \"{}\"", n.model()));
    Ok(Box::new(n))
}
