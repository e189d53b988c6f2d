//! PCI hardware handles: MMIO windows over device registers and ECAM (mapped uncached), and the
//! one owner of configuration ports 0xCF8/0xCFC.

use rkdump_devices::hw::Mmio;
use rkdump_devices::hw::pci::PortConfig;
use rkdump_devices::pci::{Bdf, ConfigSpace};
use spin::{Mutex, Once};

use super::mem::{self, Spans};
use super::phys;
use crate::arch::paging::{self, Cache};

/// Every MMIO window handed out (merged). `phys::view` refuses them: a slice of memory that a
/// register window can write would not be read-only.
static WINDOWS: Mutex<Spans<256>> = Mutex::new(Spans::new());

/// Whether `[start, end)` overlaps an MMIO window handed out so far.
pub fn is_mmio_window(start: u64, end: u64) -> bool {
    WINDOWS.lock().overlaps(start, end)
}

/// Maps `[phys, phys + len)` uncached and hands out the register window. Refuses ranges that
/// wrap or touch rkdump's own memory or old memory lent out by `phys::view` (a BAR or MCFG entry
/// pointing into RAM would otherwise let register writes scribble over memory Rust reads), and,
/// should 256 disjoint windows ever be in use, any further one.
pub fn map_mmio(phys: u64, len: u64) -> Option<Mmio> {
    let end = phys.checked_add(len)?;
    if mem::is_rkdump_memory(phys, end) || phys::is_viewed(phys, end) {
        return None;
    }
    if !WINDOWS.lock().try_insert(phys, end) {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    paging::map(phys, len as u64, Cache::Uncached).ok()?;
    // SAFETY: the range was just identity-mapped uncached and stays mapped (rkdump never unmaps);
    // it is not memory any Rust code in rkdump references, nor old memory currently lent out as a
    // slice (checked above; the window is not created while a view is live). Callers pass ranges
    // from a device's own BARs or the MCFG and hand the window to the one driver that owns it;
    // two windows over one device's registers would only confuse that device, as every access
    // is volatile and no reference to the registers is ever formed.
    Some(unsafe { Mmio::new(phys, len) })
}

static PORTS: Once<PortConfig> = Once::new();

/// Configuration mechanism #1 over 0xCF8/0xCFC. Every handle shares the one [`PortConfig`],
/// whose lock serialises the address/data pair.
#[derive(Clone, Copy, Debug)]
pub struct PciPorts(&'static PortConfig);

/// The handle on ports 0xCF8/0xCFC.
pub fn ports() -> PciPorts {
    PciPorts(PORTS.call_once(|| {
        // SAFETY: ports 0xCF8/0xCFF exist on every x86 PC; this `Once` makes this the only
        // `PortConfig`, and nothing else in rkdump uses those ports.
        unsafe { PortConfig::new() }
    }))
}

impl ConfigSpace for PciPorts {
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        self.0.read8(bdf, off)
    }
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        self.0.read16(bdf, off)
    }
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.0.read32(bdf, off)
    }
    fn write8(&self, bdf: Bdf, off: u16, v: u8) {
        self.0.write8(bdf, off, v);
    }
    fn write16(&self, bdf: Bdf, off: u16, v: u16) {
        self.0.write16(bdf, off, v);
    }
    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        self.0.write32(bdf, off, v);
    }
    fn max_offset(&self) -> u16 {
        self.0.max_offset()
    }
}
