//! ECAM (PCIe enhanced configuration access, MCFG-described): 4 KiB per function in a
//! memory window the kernel maps uncached.

use core::fmt;

use super::{Bdf, ConfigSpace, access_ok};
use crate::hw::Mmio;

/// Config access through one MCFG entry's window.
#[derive(Debug)]
pub struct EcamConfig {
    mmio: Mmio,
    segment: u16,
    start_bus: u8,
    end_bus: u8,
}

/// Why an ECAM window was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcamError {
    /// `end_bus < start_bus`.
    BusRange,
    /// The mapped window is shorter than the bus range needs.
    WindowTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes mapped.
        mapped: usize,
    },
}

impl fmt::Display for EcamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EcamError::BusRange => f.write_str("MCFG end bus below start bus"),
            EcamError::WindowTooSmall { needed, mapped } => {
                write!(f, "ECAM window maps {mapped:#x} bytes, needs {needed:#x}")
            }
        }
    }
}

impl EcamConfig {
    /// Wraps the window for buses `start_bus..=end_bus` of `segment`. `mmio` must start at the
    /// MCFG base address plus `start_bus << 20` (the first bus the entry decodes).
    pub fn new(mmio: Mmio, segment: u16, start_bus: u8, end_bus: u8) -> Result<Self, EcamError> {
        if end_bus < start_bus {
            return Err(EcamError::BusRange);
        }
        let needed = (usize::from(end_bus - start_bus) + 1) << 20;
        if mmio.len() < needed {
            return Err(EcamError::WindowTooSmall {
                needed,
                mapped: mmio.len(),
            });
        }
        Ok(EcamConfig {
            mmio,
            segment,
            start_bus,
            end_bus,
        })
    }

    /// Segment served.
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// First bus decoded (where enumeration starts).
    pub fn start_bus(&self) -> u8 {
        self.start_bus
    }

    /// Last bus decoded.
    pub fn end_bus(&self) -> u8 {
        self.end_bus
    }

    fn offset(&self, bdf: Bdf, off: u16, width: u16) -> Option<usize> {
        if bdf.segment != self.segment
            || !bdf.is_valid()
            || !(self.start_bus..=self.end_bus).contains(&bdf.bus)
            || !access_ok(off, width, 4096)
        {
            return None;
        }
        Some(
            (usize::from(bdf.bus - self.start_bus) << 20)
                | (usize::from(bdf.dev) << 15)
                | (usize::from(bdf.func) << 12)
                | usize::from(off),
        )
    }
}

impl ConfigSpace for EcamConfig {
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        self.offset(bdf, off, 1)
            .map_or(u8::MAX, |o| self.mmio.read8(o))
    }
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        self.offset(bdf, off, 2)
            .map_or(u16::MAX, |o| self.mmio.read16(o))
    }
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.offset(bdf, off, 4)
            .map_or(u32::MAX, |o| self.mmio.read32(o))
    }
    fn write8(&self, bdf: Bdf, off: u16, v: u8) {
        if let Some(o) = self.offset(bdf, off, 1) {
            self.mmio.write8(o, v);
        }
    }
    fn write16(&self, bdf: Bdf, off: u16, v: u16) {
        if let Some(o) = self.offset(bdf, off, 2) {
            self.mmio.write16(o, v);
        }
    }
    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        if let Some(o) = self.offset(bdf, off, 4) {
            self.mmio.write32(o, v);
        }
    }
    fn max_offset(&self) -> u16 {
        4096
    }
}
