//! AHCI as the reinit engine and the dump-disk search see it: which PCI functions it serves,
//! its preinit proven by read-back, the populated ports, and opening one port as a block device.

use alloc::boxed::Box;
use alloc::format;
use core::fmt;

use super::{Ahci, AhciOptions, GHC, Ghc, ResetReport};
use crate::block::BlockDevice;
use crate::hw::DmaAllocator;
use crate::pci::PciDevice;
use crate::reinit::{DriverCtx, DriverError, FnDriver, Platform, PreinitReport};
use crate::time::Clock;

/// The BAR holding the HBA registers (ABAR, AHCI 1.3.1 §2.1.11).
pub const REGS_BAR: u8 = 5;

/// Whether `dev` is an AHCI HBA: class 01h (mass storage), subclass 06h (SATA), programming
/// interface 01h (AHCI 1.0).
pub fn matches(dev: &PciDevice) -> bool {
    dev.class == 0x01 && dev.subclass == 0x06 && dev.prog_if == 0x01
}

/// The reinit engine's AHCI driver.
pub const DRIVER: FnDriver = FnDriver {
    name: "ahci",
    matches,
    preinit,
};

/// The driver-specific soft reset before anything probes the device, proven by read-back.
pub fn preinit(ctx: &mut DriverCtx<'_>, dev: &PciDevice) -> Result<PreinitReport, DriverError> {
    let regs = ctx.platform.map_bar(dev, REGS_BAR)?;
    let r = Ahci::preinit(&regs, ctx.clock).map_err(|e| DriverError::Failed(format!("{e}")))?;
    Ok(proof(&r, regs.read32(GHC)))
}

/// Judges an HBA reset by what it changed (AHCI 1.3.1 §10.4.3): GHC.HR cleared by itself, a
/// port's PxIE set to [`PROBE_IE`](super::PROBE_IE) before it reads its reset value 0 after,
/// and GHC (`ghc`, read after the reset) holds nothing but AE. A HBA that ignores HR (HR stays
/// set, or clears without resetting the ports) is not proven.
pub fn proof(r: &ResetReport, ghc: u32) -> PreinitReport {
    let Some(us) = r.hba_reset_us else {
        return PreinitReport::unproven("no HBA reset done");
    };
    let Some(p) = r.hr_probe else {
        return PreinitReport::unproven(format!(
            "GHC.HR cleared after {us} us, but no implemented port to read back (PI {:#x})",
            r.pi
        ));
    };
    let detail = format!(
        "GHC.HR cleared after {us} us, port {} PxIE {:#x} -> {:#x}, GHC {ghc:#x} (was {:#x}), \
         ports running before {:#x}",
        p.port, p.set, p.after, r.ghc_before, r.ports_running
    );
    if !p.proves_reset() {
        let why = if p.set == 0 {
            "PxIE did not take the probe value"
        } else {
            "PxIE kept its value: the HBA did not reset its ports"
        };
        PreinitReport::unproven(format!("{detail}; {why}"))
    } else if ghc & !Ghc::AE.bits() != 0 {
        // After HR only AE may be set: interrupts off, no reset pending.
        PreinitReport::unproven(format!("{detail}; GHC not at its reset value"))
    } else {
        PreinitReport::proven(detail)
    }
}

/// Bit mask of the ports of HBA `dev` with a device attached (0 if its registers cannot be
/// mapped). Memory decode must be on.
pub fn present_ports(platform: &mut dyn Platform, dev: &PciDevice) -> u32 {
    platform
        .map_bar(dev, REGS_BAR)
        .map_or(0, |m| Ahci::present_ports(&m))
}

/// Maps HBA `dev` and opens the port `opts` names (the first ATA disk when `None`) with its
/// reset. `note` gets what is worth a console line (port, model, NCQ).
pub fn open<'c>(
    platform: &mut dyn Platform,
    dev: &PciDevice,
    dma: &mut dyn DmaAllocator,
    clock: &'c dyn Clock,
    opts: AhciOptions,
    note: &mut dyn FnMut(fmt::Arguments<'_>),
) -> Result<Box<dyn BlockDevice + 'c>, crate::disk::OpenError> {
    let regs = platform.map_bar(dev, REGS_BAR)?;
    let a = Ahci::new_with(regs, dma, clock, opts)?;
    note(format_args!(
        "port {} model \"{}\" ncq={}",
        a.port(),
        a.model(),
        a.ncq()
    ));
    Ok(Box::new(a))
}
