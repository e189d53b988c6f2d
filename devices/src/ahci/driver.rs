//! AHCI as the reinit engine and the dump-disk search see it: which PCI functions it serves,
//! its preinit proven by read-back, the populated ports, and opening one port as a block device.

use alloc::boxed::Box;
use alloc::format;
use core::fmt;

use super::{Ahci, AhciOptions, GHC, Ghc};
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
    let ghc = regs.read32(GHC);
    let detail = format!(
        "GHC {ghc:#x} (was {:#x}), ports running before {:#x}",
        r.ghc_before, r.ports_running
    );
    // After HR only AE may be set: interrupts off, no reset pending.
    Ok(if ghc & !Ghc::AE.bits() == 0 {
        PreinitReport::proven(detail)
    } else {
        PreinitReport::unproven(detail)
    })
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
