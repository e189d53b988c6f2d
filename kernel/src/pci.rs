//! PCI for the kernel: picks the configuration mechanism (ECAM from the ACPI MCFG, mapped
//! uncached, else ports 0xCF8/0xCFC), enumerates, and maps device registers for drivers.

use alloc::boxed::Box;

use rkdump_devices::hw::Mmio;
use rkdump_devices::hw::pci::PortConfig;
use rkdump_devices::pci::ecam::EcamConfig;
use rkdump_devices::pci::{self, ConfigSpace, Scan};

use crate::acpi::AcpiInfo;
use crate::arch::paging::{self, Cache};
use crate::rkline;

/// Configuration access plus where enumeration starts.
pub struct Pci {
    /// The mechanism.
    pub cfg: Box<dyn ConfigSpace>,
    /// Segment scanned.
    pub segment: u16,
    /// First bus.
    pub root_bus: u8,
}

/// Maps `[phys, phys + len)` uncached and hands out the register window.
pub fn map_mmio(phys: u64, len: u64) -> Option<Mmio> {
    paging::map(phys, len, Cache::Uncached).ok()?;
    // SAFETY: the range was just identity-mapped uncached; callers pass ranges taken from a
    // device's own BARs or the MCFG, and hand the window to the one driver that owns it.
    Some(unsafe { Mmio::new(phys, usize::try_from(len).ok()?) })
}

/// Chooses ECAM when ACPI describes it, else the legacy port mechanism.
pub fn open(acpi: Option<&AcpiInfo>) -> Pci {
    if let Some((base, segment, start, end)) = acpi.and_then(|a| a.ecam) {
        let buses = u64::from(end.saturating_sub(start)) + 1;
        let window = base + (u64::from(start) << 20);
        if let Some(mmio) = map_mmio(window, buses << 20) {
            match EcamConfig::new(mmio, segment, start, end) {
                Ok(ecam) => {
                    rkline!("pci ecam={window:#x} segment={segment} buses={start}-{end}");
                    return Pci {
                        cfg: Box::new(ecam),
                        segment,
                        root_bus: start,
                    };
                }
                Err(e) => crate::rkerror!("pci: ECAM unusable ({e:?}); using ports 0xCF8/0xCFC"),
            }
        }
    }
    rkline!("pci config=ports 0xcf8/0xcfc");
    // SAFETY: ports 0xCF8/0xCFC are owned by this single PortConfig for the kernel's life;
    // nothing else in rkdump uses them.
    let ports = unsafe { PortConfig::new() };
    Pci {
        cfg: Box::new(ports),
        segment: 0,
        root_bus: 0,
    }
}

impl Pci {
    /// Enumerates; with `report`, prints one line per function.
    pub fn scan(&self, report: bool) -> Scan {
        let scan = pci::scan(&*self.cfg, self.segment, self.root_bus);
        for d in scan.devices.iter().filter(|_| report) {
            rkline!(
                "pci {} {:04x}:{:04x} class {:02x}{:02x}{:02x}{}",
                d.bdf,
                d.vendor,
                d.device,
                d.class,
                d.subclass,
                d.prog_if,
                if d.is_bridge { " bridge" } else { "" }
            );
        }
        for i in &scan.issues {
            crate::rkerror!("pci: {i:?}");
        }
        scan
    }
}
