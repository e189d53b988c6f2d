//! rkdump's PCI drivers as the kernel hands them out: the set the reinit engine runs preinit
//! with, and the MMIO mapping drivers get (which functions each driver serves, how it resets
//! and opens, lives with the driver in `rkdump_devices`).

use rkdump_devices::hw::Mmio;
use rkdump_devices::reinit::{DriverSet, Platform};

use crate::pci::map_mmio;

/// Every driver rkdump has, registered for the reinit engine: the block drivers, then the
/// controllers rkdump only resets and leaves quiesced so they stop DMA-ing (xHCI, e1000e).
pub fn all() -> DriverSet {
    let mut set = rkdump_devices::disk::reinit_drivers();
    set.register(alloc::boxed::Box::new(rkdump_devices::xhci::driver::DRIVER));
    set.register(alloc::boxed::Box::new(
        rkdump_devices::e1000e::driver::DRIVER,
    ));
    set
}

/// Device registers mapped uncached through the kernel's page tables.
pub struct KernelMmio;

impl Platform for KernelMmio {
    fn map_mmio(&mut self, phys: u64, len: u64) -> Option<Mmio> {
        map_mmio(phys, len)
    }
}
