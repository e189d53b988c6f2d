//! A PCI-to-PCI bridge's forwarding windows (PCI-to-PCI Bridge 1.2 §3.2.5.6-9), decoded in one
//! place for live bridges (BAR assignment) and saved bytes (the config blob's record summary),
//! through a [`ConfigView`].

use super::reg;
use super::view::ConfigView;

/// A bridge's address window (inclusive limit; closed when `base > limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window<T> {
    /// First address.
    pub base: T,
    /// Last address.
    pub limit: T,
}

impl<T: PartialOrd> Window<T> {
    /// Whether the window forwards anything.
    pub fn is_open(&self) -> bool {
        self.base <= self.limit
    }
}

/// The three windows of a type-1 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// I/O window (32-bit when the base register's low nibble is 1).
    pub io: Window<u32>,
    /// Non-prefetchable memory window.
    pub mem: Window<u32>,
    /// Prefetchable memory window (64-bit when the base register's low nibble is 1).
    pub pref: Window<u64>,
}

/// Decodes the windows of the type-1 header read through `v`. A bridge without an I/O or
/// prefetchable window reads zeros there, which decodes as an open window `0 ..= 0xFFF` /
/// `0 ..= 0xF_FFFF`; Linux tells the two apart by probing the registers.
pub fn windows(v: &dyn ConfigView) -> Windows {
    // §3.2.5.6: the low nibble says whether the upper 16 bits count; Linux's
    // `pci_read_bridge_io` takes it from the base register.
    let io_lo = v.read8(reg::IO_BASE);
    let io32 = io_lo & 0x0F == 0x01;
    let io_up = |off| {
        if io32 {
            u32::from(v.read16(off)) << 16
        } else {
            0
        }
    };
    // §3.2.5.8: memory base/limit bits 15:4 are address bits 31:20.
    // §3.2.5.9: prefetchable, low nibble 1 = 64-bit with upper halves at 0x28/0x2C.
    let pref_lo = v.read16(reg::PREF_MEMORY_BASE);
    let pref64 = pref_lo & 0x0F == 0x01;
    let pref_up = |off| {
        if pref64 {
            u64::from(v.read32(off)) << 32
        } else {
            0
        }
    };
    Windows {
        io: Window {
            base: u32::from(io_lo & 0xF0) << 8 | io_up(reg::IO_BASE_UPPER16),
            limit: u32::from(v.read8(reg::IO_LIMIT) & 0xF0) << 8
                | 0xFFF
                | io_up(reg::IO_LIMIT_UPPER16),
        },
        mem: Window {
            base: u32::from(v.read16(reg::MEMORY_BASE) & 0xFFF0) << 16,
            limit: u32::from(v.read16(reg::MEMORY_LIMIT) & 0xFFF0) << 16 | 0xF_FFFF,
        },
        pref: Window {
            base: u64::from(pref_lo & 0xFFF0) << 16 | pref_up(reg::PREF_BASE_UPPER32),
            limit: u64::from(v.read16(reg::PREF_MEMORY_LIMIT) & 0xFFF0) << 16
                | 0xF_FFFF
                | pref_up(reg::PREF_LIMIT_UPPER32),
        },
    }
}
