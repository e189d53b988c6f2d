//! PCI for the kernel: picks the configuration mechanism (ECAM from the ACPI MCFG, mapped
//! uncached, else ports 0xCF8/0xCFC), enumerates, and maps device registers for drivers (the
//! mappings and the port owner are `hw::pci`).

use alloc::boxed::Box;

use rkdump_devices::pci::ecam::EcamConfig;
use rkdump_devices::pci::{self, ConfigSpace, Scan};

use crate::acpi::AcpiInfo;
use crate::rkline;

/// Maps `[phys, phys + len)` uncached and hands out the register window (see `hw::pci`).
pub use crate::hw::pci::map_mmio;

/// Configuration access plus where enumeration starts.
pub struct Pci {
    /// The mechanism.
    pub cfg: Box<dyn ConfigSpace>,
    /// Segment scanned.
    pub segment: u16,
    /// First bus.
    pub root_bus: u8,
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
    Pci {
        cfg: Box::new(crate::hw::pci::ports()),
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
