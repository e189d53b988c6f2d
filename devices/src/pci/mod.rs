//! PCI configuration space: function addresses, width-exact config access, enumeration,
//! capability lists and COMMAND/MSI helpers (PCI Local Bus 3.0 §6, PCIe Base §7).
//!
//! Everything read from config space is untrusted; nothing here panics on device data.

pub mod assign;
pub mod caps;
pub mod ecam;
pub mod scan;

#[cfg(test)]
pub mod fake;

use core::fmt;
use core::str::FromStr;

use bitflags::bitflags;

pub use caps::{Cap, CapError, ExtCap};
pub use ecam::EcamConfig;
pub use scan::{Bar, PciDevice, Scan, ScanIssue, probe_bars, scan, scan_roots};

/// Type-0/1 header register offsets (PCI 3.0 §6.1).
pub mod reg {
    /// Vendor ID (u16).
    pub const VENDOR_ID: u16 = 0x00;
    /// Device ID (u16).
    pub const DEVICE_ID: u16 = 0x02;
    /// Command (u16).
    pub const COMMAND: u16 = 0x04;
    /// Status (u16, error bits are write-1-to-clear).
    pub const STATUS: u16 = 0x06;
    /// Revision ID (u8).
    pub const REVISION: u16 = 0x08;
    /// Programming interface (u8).
    pub const PROG_IF: u16 = 0x09;
    /// Subclass (u8).
    pub const SUBCLASS: u16 = 0x0A;
    /// Base class (u8).
    pub const CLASS: u16 = 0x0B;
    /// Header type (u8); bit 7 = multi-function.
    pub const HEADER_TYPE: u16 = 0x0E;
    /// First BAR (u32); BARs follow at 4-byte steps.
    pub const BAR0: u16 = 0x10;
    /// Type-1: primary bus number (u8).
    pub const PRIMARY_BUS: u16 = 0x18;
    /// Type-1: secondary bus number (u8).
    pub const SECONDARY_BUS: u16 = 0x19;
    /// Type-1: subordinate bus number (u8).
    pub const SUBORDINATE_BUS: u16 = 0x1A;
    /// Capabilities pointer (u8), valid when Status.CAP_LIST is set.
    pub const CAP_PTR: u16 = 0x34;
    /// Type-1: bridge control (u16).
    pub const BRIDGE_CONTROL: u16 = 0x3E;
    /// First extended capability (PCIe, ECAM only).
    pub const EXT_CAP_START: u16 = 0x100;
}

/// Header-type values (low 7 bits of [`reg::HEADER_TYPE`]).
pub mod header_type {
    /// Endpoint: 6 BARs.
    pub const ENDPOINT: u8 = 0;
    /// PCI-to-PCI bridge: 2 BARs, bus numbers.
    pub const BRIDGE: u8 = 1;
    /// CardBus bridge.
    pub const CARDBUS: u8 = 2;
    /// Multi-function flag.
    pub const MULTI_FUNCTION: u8 = 0x80;
}

bitflags! {
    /// The COMMAND register (PCI 3.0 §6.2.2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Command: u16 {
        /// I/O space decode.
        const IO_SPACE = 1 << 0;
        /// Memory space decode.
        const MEMORY_SPACE = 1 << 1;
        /// Bus master (DMA and MSI).
        const BUS_MASTER = 1 << 2;
        /// Special cycles.
        const SPECIAL_CYCLES = 1 << 3;
        /// Memory write and invalidate.
        const MWI = 1 << 4;
        /// VGA palette snoop.
        const VGA_PALETTE_SNOOP = 1 << 5;
        /// Parity error response.
        const PARITY_ERROR_RESPONSE = 1 << 6;
        /// SERR# enable.
        const SERR = 1 << 8;
        /// Fast back-to-back.
        const FAST_B2B = 1 << 9;
        /// INTx emulation disable.
        const INTX_DISABLE = 1 << 10;
    }
}

bitflags! {
    /// The STATUS register (PCI 3.0 §6.2.3). Bits in [`Status::W1C`] clear when written as 1.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Status: u16 {
        /// INTx asserted.
        const INTERRUPT = 1 << 3;
        /// A capability list exists at [`reg::CAP_PTR`].
        const CAP_LIST = 1 << 4;
        /// Master data parity error (W1C).
        const MASTER_DATA_PARITY = 1 << 8;
        /// Signaled target abort (W1C).
        const SIGNALED_TARGET_ABORT = 1 << 11;
        /// Received target abort (W1C).
        const RECEIVED_TARGET_ABORT = 1 << 12;
        /// Received master abort (W1C).
        const RECEIVED_MASTER_ABORT = 1 << 13;
        /// Signaled system error (W1C).
        const SIGNALED_SYSTEM_ERROR = 1 << 14;
        /// Detected parity error (W1C).
        const DETECTED_PARITY = 1 << 15;
        /// All write-1-to-clear bits.
        const W1C = 0xF900;
    }
}

/// A PCI function address. `dev < 32` and `func < 8`; config accessors treat other values as an
/// absent function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (ECAM group); 0 on every machine with a single host bridge.
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub dev: u8,
    /// Function number (0..8).
    pub func: u8,
}

impl Bdf {
    /// A checked address.
    pub const fn new(segment: u16, bus: u8, dev: u8, func: u8) -> Option<Self> {
        if dev < 32 && func < 8 {
            Some(Bdf {
                segment,
                bus,
                dev,
                func,
            })
        } else {
            None
        }
    }

    /// Whether `dev` and `func` are in range.
    pub const fn is_valid(&self) -> bool {
        self.dev < 32 && self.func < 8
    }

    /// Parses `bus:dev.fn` or `segment:bus:dev.fn` (hex), the forms `rkdump.target=disk:` takes.
    pub fn parse(s: &str) -> Result<Self, ParseBdfError> {
        let (rest, func) = s.rsplit_once('.').ok_or(ParseBdfError::Syntax)?;
        let mut parts = rest.split(':');
        let (seg, bus, dev) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(b), Some(d), None, None) => ("0", b, d),
            (Some(s), Some(b), Some(d), None) => (s, b, d),
            _ => return Err(ParseBdfError::Syntax),
        };
        let segment = hex(seg, 4)? as u16;
        let bus = hex(bus, 2)? as u8;
        let dev = hex(dev, 2)? as u8;
        let func = hex(func, 1)? as u8;
        Bdf::new(segment, bus, dev, func).ok_or(ParseBdfError::OutOfRange)
    }

    /// Displays `bus:dev.fn` when the segment is 0, else the full form.
    pub fn short(&self) -> impl fmt::Display + '_ {
        struct Short<'a>(&'a Bdf);
        impl fmt::Display for Short<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let b = self.0;
                if b.segment == 0 {
                    write!(f, "{:02x}:{:02x}.{:x}", b.bus, b.dev, b.func)
                } else {
                    write!(f, "{b}")
                }
            }
        }
        Short(self)
    }
}

fn hex(s: &str, max_digits: usize) -> Result<u32, ParseBdfError> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(ParseBdfError::Syntax);
    }
    u32::from_str_radix(s, 16).map_err(|_| ParseBdfError::Syntax)
}

impl fmt::Display for Bdf {
    /// `ssss:bb:dd.f`, as lspci -D prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.dev, self.func
        )
    }
}

impl FromStr for Bdf {
    type Err = ParseBdfError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bdf::parse(s)
    }
}

/// Why a PCI address did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseBdfError {
    /// Not `[ssss:]bb:dd.f` in hex.
    Syntax,
    /// Device above 0x1f or function above 7.
    OutOfRange,
}

impl fmt::Display for ParseBdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseBdfError::Syntax => f.write_str("expected [ssss:]bb:dd.f in hex"),
            ParseBdfError::OutOfRange => f.write_str("device > 1f or function > 7"),
        }
    }
}

/// Configuration-space access. Each access has exactly the width named: a 16-bit register is
/// written with a 16-bit access so neighbouring registers (Status' write-1-to-clear bits) are
/// never written back. Absent functions, out-of-range or misaligned offsets read all-ones and
/// drop writes.
pub trait ConfigSpace {
    /// Reads a byte.
    fn read8(&self, bdf: Bdf, off: u16) -> u8;
    /// Reads a 16-bit register (`off` 2-aligned).
    fn read16(&self, bdf: Bdf, off: u16) -> u16;
    /// Reads a 32-bit register (`off` 4-aligned).
    fn read32(&self, bdf: Bdf, off: u16) -> u32;
    /// Writes a byte.
    fn write8(&self, bdf: Bdf, off: u16, v: u8);
    /// Writes a 16-bit register (`off` 2-aligned).
    fn write16(&self, bdf: Bdf, off: u16, v: u16);
    /// Writes a 32-bit register (`off` 4-aligned).
    fn write32(&self, bdf: Bdf, off: u16, v: u32);
    /// Size of each function's space: 256 (port mechanism) or 4096 (ECAM).
    fn max_offset(&self) -> u16;
}

/// Whether an access of `width` bytes at `off` fits a space of `max` bytes and is aligned.
pub(crate) fn access_ok(off: u16, width: u16, max: u16) -> bool {
    off.is_multiple_of(width) && u32::from(off) + u32::from(width) <= u32::from(max)
}

/// Reads COMMAND.
pub fn command(cfg: &dyn ConfigSpace, bdf: Bdf) -> Command {
    Command::from_bits_retain(cfg.read16(bdf, reg::COMMAND))
}

/// Enables memory decode and bus mastering and disables INTx (rkdump polls), with one 16-bit
/// write so Status is untouched.
pub fn enable_mem_bus_master(cfg: &dyn ConfigSpace, bdf: Bdf) {
    let old = command(cfg, bdf);
    let new = old | Command::MEMORY_SPACE | Command::BUS_MASTER | Command::INTX_DISABLE;
    if new != old {
        cfg.write16(bdf, reg::COMMAND, new.bits());
    }
}

/// Stops decode, DMA and MSI: COMMAND = INTx-Disable only, as Linux's
/// `pci_dev_save_and_disable` does before a reset.
pub fn disable(cfg: &dyn ConfigSpace, bdf: Bdf) {
    cfg.write16(bdf, reg::COMMAND, Command::INTX_DISABLE.bits());
}

/// MSI Message Control enable bit (offset cap+2).
pub const MSI_CTRL_ENABLE: u16 = 1 << 0;
/// MSI-X Message Control enable bit (offset cap+2).
pub const MSIX_CTRL_ENABLE: u16 = 1 << 15;

/// What [`disable_msi_msix`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiDisabled {
    /// MSI was enabled and is now off.
    pub msi: bool,
    /// MSI-X was enabled and is now off.
    pub msix: bool,
}

/// Clears the MSI and MSI-X enable bits the old kernel left set (Linux does the same at
/// enumeration "to avoid screaming interrupts"); 16-bit writes to Message Control only.
pub fn disable_msi_msix(cfg: &dyn ConfigSpace, bdf: Bdf) -> MsiDisabled {
    let mut out = MsiDisabled::default();
    if let Some(off) = caps::find_cap(cfg, bdf, caps::id::MSI) {
        let ctrl = cfg.read16(bdf, off + 2);
        if ctrl != u16::MAX && ctrl & MSI_CTRL_ENABLE != 0 {
            cfg.write16(bdf, off + 2, ctrl & !MSI_CTRL_ENABLE);
            out.msi = true;
        }
    }
    if let Some(off) = caps::find_cap(cfg, bdf, caps::id::MSIX) {
        let ctrl = cfg.read16(bdf, off + 2);
        if ctrl != u16::MAX && ctrl & MSIX_CTRL_ENABLE != 0 {
            cfg.write16(bdf, off + 2, ctrl & !MSIX_CTRL_ENABLE);
            out.msix = true;
        }
    }
    out
}

#[cfg(test)]
mod tests;
