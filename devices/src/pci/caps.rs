//! Capability lists: the standard list from 0x34 (0x14 on CardBus) and the PCIe extended list
//! from 0x100, walked with loop and bounds protection because a broken or hostile device can
//! link them anywhere. The one walk for live functions and saved bytes alike: it reads through
//! a [`ConfigView`].

use alloc::vec::Vec;
use core::fmt;

use super::view::{ConfigView, LiveView};
use super::{Bdf, ConfigSpace, Status, header_type, reg};

/// Standard capability IDs (PCI Code and ID Assignment §2).
pub mod id {
    /// Power management.
    pub const PM: u8 = 0x01;
    /// MSI.
    pub const MSI: u8 = 0x05;
    /// Vendor-specific (virtio uses these).
    pub const VENDOR: u8 = 0x09;
    /// PCI Express.
    pub const PCIE: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
    /// Advanced features (AF FLR).
    pub const AF: u8 = 0x13;
}

/// At most this many standard capabilities are followed (Linux's `PCI_FIND_CAP_TTL`).
pub const MAX_CAP_HOPS: usize = 48;

/// One standard capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// Capability ID.
    pub id: u8,
    /// Config offset of the ID byte.
    pub offset: u16,
}

/// One extended capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCap {
    /// Extended capability ID.
    pub id: u16,
    /// Capability version.
    pub version: u8,
    /// Config offset of the header.
    pub offset: u16,
}

/// Why a capability walk stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// A pointer revisits an earlier capability.
    Loop {
        /// Offset pointed to twice.
        offset: u16,
    },
    /// A pointer leaves the capability area (below 0x40, or out of the space).
    BadPointer {
        /// The pointer.
        offset: u16,
    },
    /// More than [`MAX_CAP_HOPS`] entries.
    TooLong,
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::Loop { offset } => write!(f, "capability list loops at {offset:#x}"),
            CapError::BadPointer { offset } => write!(f, "capability pointer {offset:#x} invalid"),
            CapError::TooLong => write!(f, "capability list longer than {MAX_CAP_HOPS}"),
        }
    }
}

/// Iterator over the standard capability list; yields one `Err` and stops on a malformed list.
pub struct CapIter<V> {
    view: V,
    next: u16,
    seen: u64,
    hops: usize,
    done: bool,
}

impl<V: ConfigView> Iterator for CapIter<V> {
    type Item = Result<Cap, CapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next == 0 {
            return None;
        }
        let off = self.next;
        let fail = |s: &mut Self, e| {
            s.done = true;
            Some(Err(e))
        };
        if !(0x40..=0xFC).contains(&off) {
            return fail(self, CapError::BadPointer { offset: off });
        }
        // One bit per dword of the 256-byte header space: the first revisit is a loop.
        let bit = 1u64 << (off / 4);
        if self.seen & bit != 0 {
            return fail(self, CapError::Loop { offset: off });
        }
        if self.hops == MAX_CAP_HOPS {
            return fail(self, CapError::TooLong);
        }
        self.seen |= bit;
        self.hops += 1;
        let id = self.view.read8(off);
        if id == 0xFF {
            // All-ones: the function vanished mid-walk (or the saved bytes end here).
            return fail(self, CapError::BadPointer { offset: off });
        }
        self.next = u16::from(self.view.read8(off + 1) & 0xFC);
        Some(Ok(Cap { id, offset: off }))
    }
}

/// Walks the standard capability list of a live function (empty unless Status.CAP_LIST is set).
pub fn capabilities(cfg: &dyn ConfigSpace, bdf: Bdf) -> CapIter<LiveView<'_>> {
    walk(LiveView::new(cfg, bdf))
}

/// Walks the standard capability list of any view (empty unless Status.CAP_LIST is set). The
/// list starts at [`reg::CAP_PTR`], or [`reg::CB_CAP_PTR`] on a CardBus bridge (Linux
/// `pci_bus_find_capability_start`).
pub fn walk<V: ConfigView>(view: V) -> CapIter<V> {
    let status = view.read16(reg::STATUS);
    let has = status != u16::MAX && status & Status::CAP_LIST.bits() != 0;
    let next = if has {
        let ptr = match view.read8(reg::HEADER_TYPE) & !header_type::MULTI_FUNCTION {
            header_type::CARDBUS => reg::CB_CAP_PTR,
            _ => reg::CAP_PTR,
        };
        u16::from(view.read8(ptr) & 0xFC)
    } else {
        0
    };
    CapIter {
        view,
        next,
        seen: 0,
        hops: 0,
        done: false,
    }
}

/// Offset of the first capability with `id`. A malformed list is logged and searched only up
/// to the fault.
pub fn find_cap(cfg: &dyn ConfigSpace, bdf: Bdf, id: u8) -> Option<u16> {
    find_all(cfg, bdf, id).into_iter().next()
}

/// Offsets of every capability with `id` (virtio has several vendor-specific ones).
pub fn find_all(cfg: &dyn ConfigSpace, bdf: Bdf, id: u8) -> Vec<u16> {
    let mut out = Vec::new();
    for c in capabilities(cfg, bdf) {
        match c {
            Ok(c) if c.id == id => out.push(c.offset),
            Ok(_) => {}
            Err(e) => log::warn!("pci {bdf}: {e}"),
        }
    }
    out
}

/// The PCI Express capability.
pub fn find_pcie(cfg: &dyn ConfigSpace, bdf: Bdf) -> Option<u16> {
    find_cap(cfg, bdf, id::PCIE)
}

/// The MSI capability.
pub fn find_msi(cfg: &dyn ConfigSpace, bdf: Bdf) -> Option<u16> {
    find_cap(cfg, bdf, id::MSI)
}

/// The MSI-X capability.
pub fn find_msix(cfg: &dyn ConfigSpace, bdf: Bdf) -> Option<u16> {
    find_cap(cfg, bdf, id::MSIX)
}

/// The power-management capability.
pub fn find_pm(cfg: &dyn ConfigSpace, bdf: Bdf) -> Option<u16> {
    find_cap(cfg, bdf, id::PM)
}

/// Every vendor-specific capability, in list order.
pub fn vendor_caps(cfg: &dyn ConfigSpace, bdf: Bdf) -> Vec<u16> {
    find_all(cfg, bdf, id::VENDOR)
}

/// Iterator over the extended capability list.
pub struct ExtCapIter<V> {
    view: V,
    next: u16,
    // One bit per dword of 0x100..0x1000.
    seen: [u64; 15],
    done: bool,
}

impl<V: ConfigView> Iterator for ExtCapIter<V> {
    type Item = Result<ExtCap, CapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next == 0 {
            return None;
        }
        let off = self.next;
        self.done = true;
        if !(reg::EXT_CAP_START..=0xFFC).contains(&off)
            || u32::from(off) + 4 > u32::from(self.view.max_offset())
        {
            return Some(Err(CapError::BadPointer { offset: off }));
        }
        let idx = usize::from((off - reg::EXT_CAP_START) / 4);
        let (word, bit) = (idx / 64, 1u64 << (idx % 64));
        if self.seen[word] & bit != 0 {
            return Some(Err(CapError::Loop { offset: off }));
        }
        self.seen[word] |= bit;
        let hdr = self.view.read32(off);
        // 0 = no extended capabilities; all-ones = no device or no extended space.
        if hdr == 0 || hdr == u32::MAX {
            return None;
        }
        self.done = false;
        self.next = ((hdr >> 20) & 0xFFC) as u16;
        Some(Ok(ExtCap {
            id: hdr as u16,
            version: ((hdr >> 16) & 0xF) as u8,
            offset: off,
        }))
    }
}

/// Walks a live function's extended capability list; empty when the access method stops at
/// 256 bytes.
pub fn ext_capabilities(cfg: &dyn ConfigSpace, bdf: Bdf) -> ExtCapIter<LiveView<'_>> {
    walk_ext(LiveView::new(cfg, bdf))
}

/// Walks the extended capability list of any view; empty when the view stops at 256 bytes.
pub fn walk_ext<V: ConfigView>(view: V) -> ExtCapIter<V> {
    let next = if view.max_offset() > reg::EXT_CAP_START {
        reg::EXT_CAP_START
    } else {
        0
    };
    ExtCapIter {
        view,
        next,
        seen: [0; 15],
        done: false,
    }
}

/// Offset of the first extended capability with `id`.
pub fn find_ext_cap(cfg: &dyn ConfigSpace, bdf: Bdf, id: u16) -> Option<u16> {
    for c in ext_capabilities(cfg, bdf) {
        match c {
            Ok(c) if c.id == id => return Some(c.offset),
            Ok(_) => {}
            Err(e) => {
                log::warn!("pci {bdf}: extended {e}");
                return None;
            }
        }
    }
    None
}
