//! PCI configuration space: function addresses, width-exact config access, enumeration,
//! capability lists and COMMAND/MSI helpers (PCI Local Bus 3.0 §6, PCIe Base §7).
//!
//! Everything read from config space is untrusted; nothing here panics on device data.

pub mod assign;
pub mod bridge;
pub mod caps;
pub mod ecam;
pub mod scan;
pub mod view;

#[cfg(test)]
pub mod fake;

use bitflags::bitflags;

pub use caps::{Cap, CapError, ExtCap};
pub use ecam::EcamConfig;
/// Function addresses are the command line's type, shared so `rkdump.target=disk:` and
/// `rkdump.fault_dead=` need no conversion.
pub use rkdump_boot::cmdline::{Bdf, ParseBdfError};
pub use scan::{Bar, PciDevice, Scan, ScanIssue, probe_bars, scan, scan_roots};
pub use view::{ConfigView, LiveView, SavedView};

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
    /// Cache line size (u8); the latency timer (u8) follows at 0x0D.
    pub const CACHE_LINE_SIZE: u16 = 0x0C;
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
    /// Type-1: I/O base (u8); low nibble 1 = 32-bit I/O decode.
    pub const IO_BASE: u16 = 0x1C;
    /// Type-1: I/O limit (u8).
    pub const IO_LIMIT: u16 = 0x1D;
    /// Type-1: secondary status (u16, error bits are write-1-to-clear).
    pub const SECONDARY_STATUS: u16 = 0x1E;
    /// Type-1: memory base (u16), address bits 31:20 in bits 15:4.
    pub const MEMORY_BASE: u16 = 0x20;
    /// Type-1: memory limit (u16).
    pub const MEMORY_LIMIT: u16 = 0x22;
    /// Type-1: prefetchable memory base (u16); low nibble 1 = 64-bit.
    pub const PREF_MEMORY_BASE: u16 = 0x24;
    /// Type-1: prefetchable memory limit (u16).
    pub const PREF_MEMORY_LIMIT: u16 = 0x26;
    /// Type-1: prefetchable base, upper 32 bits (u32).
    pub const PREF_BASE_UPPER32: u16 = 0x28;
    /// Type-1: prefetchable limit, upper 32 bits (u32).
    pub const PREF_LIMIT_UPPER32: u16 = 0x2C;
    /// Type-1: I/O base, upper 16 bits (u16).
    pub const IO_BASE_UPPER16: u16 = 0x30;
    /// Type-1: I/O limit, upper 16 bits (u16).
    pub const IO_LIMIT_UPPER16: u16 = 0x32;
    /// Capabilities pointer (u8), valid when Status.CAP_LIST is set (types 0 and 1).
    pub const CAP_PTR: u16 = 0x34;
    /// Type-2 (CardBus): capabilities pointer (u8).
    pub const CB_CAP_PTR: u16 = 0x14;
    /// Interrupt line (u8); interrupt pin (u8) follows at 0x3D.
    pub const INTERRUPT_LINE: u16 = 0x3C;
    /// Type-1: bridge control (u16), bits in [`super::BridgeControl`].
    pub const BRIDGE_CONTROL: u16 = 0x3E;
    /// Bytes of the type-0/1 header every function has.
    pub const HEADER_LEN: usize = 0x40;
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

bitflags! {
    /// The Bridge Control register of a type-1 header (PCI-to-PCI Bridge 1.2 §3.2.5.18).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BridgeControl: u16 {
        /// Parity error response.
        const PARITY_ERROR_RESPONSE = 1 << 0;
        /// SERR# forwarding.
        const SERR = 1 << 1;
        /// ISA enable.
        const ISA = 1 << 2;
        /// VGA enable.
        const VGA = 1 << 3;
        /// VGA 16-bit decode.
        const VGA_16BIT = 1 << 4;
        /// Master abort mode.
        const MASTER_ABORT = 1 << 5;
        /// Secondary bus reset: holds the secondary bus in reset while set.
        const SECONDARY_BUS_RESET = 1 << 6;
        /// Fast back-to-back on the secondary bus.
        const FAST_B2B = 1 << 7;
        /// Primary discard timeout.
        const PRIMARY_DISCARD_TIMEOUT = 1 << 8;
        /// Secondary discard timeout.
        const SECONDARY_DISCARD_TIMEOUT = 1 << 9;
        /// Discard timer status (write-1-to-clear).
        const DISCARD_TIMER_STATUS = 1 << 10;
        /// Discard timer SERR# enable.
        const DISCARD_TIMER_SERR = 1 << 11;
        /// Bits never written back from a saved value: an action (secondary bus reset) and a
        /// write-1-to-clear status.
        const VOLATILE = Self::SECONDARY_BUS_RESET.bits() | Self::DISCARD_TIMER_STATUS.bits();
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
