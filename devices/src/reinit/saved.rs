//! Saved configuration: the pre-reset snapshot (header plus PCIe control registers), the
//! [`SavedConfig`] source a firmware blob is layered through, and header accessors. Putting a
//! saved header back is [`super::restore`]'s job.

use alloc::vec::Vec;
use core::fmt;

use crate::blob::BlobView;
use crate::pci::{Bdf, ConfigSpace, ConfigView, LiveView, caps, header_type, reg};

/// Where a saved header came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The configuration blob `rkdumpctl snapshot` saved from the running system.
    Blob,
    /// The snapshot [`super::run`] takes of the live function before touching it.
    Snapshot,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Blob => "blob",
            Source::Snapshot => "snapshot",
        })
    }
}

/// A source of saved config headers (the first 64 bytes): the firmware blob ([`BlobView`]
/// implements it) when the kernel loaded one; [`super::run`] consults it first and
/// falls back to its own pre-reset snapshot when it returns `None` or a header without
/// usable BARs.
pub trait SavedConfig {
    /// The saved header for the function at `bdf` whose IDs are `vendor`/`device` and whose
    /// 24-bit class code is `class` (base << 16 | sub << 8 | prog-if), if this source has one.
    fn header(&self, bdf: Bdf, vendor: u16, device: u16, class: u32) -> Option<([u8; 64], Source)>;
}

/// The firmware blob `rkdumpctl snapshot` saved: a record counts only when it describes a
/// function with the same IDs and class code ([`BlobView::find_matching`]).
impl SavedConfig for BlobView<'_> {
    fn header(&self, bdf: Bdf, vendor: u16, device: u16, class: u32) -> Option<([u8; 64], Source)> {
        let r = self.find_matching(bdf, vendor, device, class)?;
        Some((*r.header(), Source::Blob))
    }
}

/// No saved configuration: only the pre-reset snapshot is used.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSavedConfig;

impl SavedConfig for NoSavedConfig {
    fn header(&self, _: Bdf, _: u16, _: u16, _: u32) -> Option<([u8; 64], Source)> {
        None
    }
}

/// PCIe capability register offsets (relative to the capability, PCIe Base §7.5.3).
pub mod pcie_reg {
    /// PCI Express Capabilities register (u16): version, device/port type, slot implemented.
    pub const FLAGS: u16 = 0x02;
    /// Device Capabilities (u32).
    pub const DEVCAP: u16 = 0x04;
    /// Device Control (u16).
    pub const DEVCTL: u16 = 0x08;
    /// Device Status (u16).
    pub const DEVSTA: u16 = 0x0A;
    /// Link Control (u16).
    pub const LNKCTL: u16 = 0x10;
    /// Slot Control (u16).
    pub const SLTCTL: u16 = 0x18;
    /// Root Control (u16).
    pub const RTCTL: u16 = 0x1C;
    /// Device Control 2 (u16).
    pub const DEVCTL2: u16 = 0x28;
    /// Link Control 2 (u16).
    pub const LNKCTL2: u16 = 0x30;
    /// Slot Control 2 (u16).
    pub const SLTCTL2: u16 = 0x38;
    /// DevCap: Function Level Reset capable.
    pub const DEVCAP_FLR: u32 = 1 << 28;
    /// DevCtl: Initiate Function Level Reset (reads 0).
    pub const DEVCTL_BCR_FLR: u16 = 1 << 15;
    /// DevSta: Transactions Pending.
    pub const DEVSTA_TRPND: u16 = 1 << 5;
    /// LnkCtl: Retrain Link (reads 0, must not be replayed).
    pub const LNKCTL_RL: u16 = 1 << 5;
}

/// PCIe device/port types (Capabilities register bits 7:4).
mod port_type {
    pub const ENDPOINT: u8 = 0x0;
    pub const LEG_END: u8 = 0x1;
    pub const ROOT_PORT: u8 = 0x4;
    pub const UPSTREAM: u8 = 0x5;
    pub const DOWNSTREAM: u8 = 0x6;
    pub const PCI_BRIDGE: u8 = 0x7;
    pub const PCIE_BRIDGE: u8 = 0x8;
    pub const RC_EC: u8 = 0xA;
}

/// The PCIe control registers Linux's `pci_save_pcie_state` keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcieState {
    /// Offset of the PCIe capability.
    pub cap: u16,
    /// `(absolute offset, value)` of each implemented control register, in restore order.
    pub regs: Vec<(u16, u16)>,
}

impl PcieState {
    /// Reads the implemented control registers (Linux `pcie_capability_reg_implemented`).
    pub fn save(cfg: &dyn ConfigSpace, bdf: Bdf, cap: u16) -> Self {
        let flags = cfg.read16(bdf, cap + pcie_reg::FLAGS);
        let version = flags & 0xF;
        let ty = ((flags >> 4) & 0xF) as u8;
        let slot = flags & 0x100 != 0;
        let has_lnk = matches!(
            ty,
            port_type::ENDPOINT
                | port_type::LEG_END
                | port_type::ROOT_PORT
                | port_type::UPSTREAM
                | port_type::DOWNSTREAM
                | port_type::PCI_BRIDGE
                | port_type::PCIE_BRIDGE
        );
        let has_slt = ty == port_type::ROOT_PORT || (ty == port_type::DOWNSTREAM && slot);
        let has_rt = ty == port_type::ROOT_PORT || ty == port_type::RC_EC;
        let v2 = version > 1;
        let mut regs = Vec::new();
        for (rel, present) in [
            (pcie_reg::DEVCTL, true),
            (pcie_reg::LNKCTL, has_lnk),
            (pcie_reg::SLTCTL, has_slt),
            (pcie_reg::RTCTL, has_rt),
            (pcie_reg::DEVCTL2, v2),
            (pcie_reg::LNKCTL2, v2),
            (pcie_reg::SLTCTL2, v2),
        ] {
            if present {
                regs.push((cap + rel, cfg.read16(bdf, cap + rel)));
            }
        }
        PcieState { cap, regs }
    }

    /// Writes back (16-bit) every register that differs, minus the self-clearing command
    /// bits (Initiate FLR, Retrain Link). Linux restores these before the header.
    pub fn restore(&self, cfg: &dyn ConfigSpace, bdf: Bdf) -> usize {
        let mut n = 0;
        for &(off, saved) in &self.regs {
            let want = match off - self.cap {
                pcie_reg::DEVCTL => saved & !pcie_reg::DEVCTL_BCR_FLR,
                pcie_reg::LNKCTL => saved & !pcie_reg::LNKCTL_RL,
                _ => saved,
            };
            if cfg.read16(bdf, off) != want {
                cfg.write16(bdf, off, want);
                n += 1;
            }
        }
        n
    }
}

/// Everything saved about one function before it was touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Dwords 0..=15 as read.
    pub header: [u8; 64],
    /// PCIe control registers, when the function has a PCIe capability.
    pub pcie: Option<PcieState>,
}

impl Snapshot {
    /// Reads the header (16 dword reads) and the PCIe control registers.
    pub fn take(cfg: &dyn ConfigSpace, bdf: Bdf) -> Self {
        Snapshot {
            header: read_header(cfg, bdf),
            pcie: caps::find_pcie(cfg, bdf).map(|cap| PcieState::save(cfg, bdf, cap)),
        }
    }
}

/// Reads the 64-byte header with dword reads.
pub fn read_header(cfg: &dyn ConfigSpace, bdf: Bdf) -> [u8; 64] {
    LiveView::new(cfg, bdf).header()
}

/// Dword `i` of a header.
pub fn dword(h: &[u8; 64], i: usize) -> u32 {
    u32::from_le_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]])
}

/// Vendor and device ID of a header.
pub fn ids(h: &[u8; 64]) -> (u16, u16) {
    let d = dword(h, 0);
    (d as u16, (d >> 16) as u16)
}

/// Header type (without the multi-function bit).
pub fn kind(h: &[u8; 64]) -> u8 {
    h[usize::from(reg::HEADER_TYPE)] & !header_type::MULTI_FUNCTION
}

/// Address bits of each BAR dword (type 0: six, type 1: two; the upper half of a 64-bit BAR
/// counts whole). Zero = unassigned or reset.
pub fn bar_addresses(h: &[u8; 64]) -> ([u32; 6], usize) {
    let n = match kind(h) {
        header_type::ENDPOINT => 6,
        header_type::BRIDGE => 2,
        _ => 0,
    };
    let mut out = [0u32; 6];
    let mut i = 0;
    while i < n {
        let v = dword(h, 4 + i);
        if v & 1 == 1 {
            out[i] = v & !0x3;
        } else {
            out[i] = v & !0xF;
            if (v >> 1) & 0x3 == 2 && i + 1 < n {
                out[i + 1] = dword(h, 5 + i);
                i += 1;
            }
        }
        i += 1;
    }
    (out, n)
}

/// Whether a header can be restored usefully: a type-0 header needs at least one assigned
/// BAR; a bridge needs its bus numbers (secondary bus non-zero).
pub fn usable(h: &[u8; 64]) -> bool {
    match kind(h) {
        header_type::ENDPOINT => bar_addresses(h).0.iter().any(|&a| a != 0),
        header_type::BRIDGE => h[usize::from(reg::SECONDARY_BUS)] != 0,
        _ => false,
    }
}
