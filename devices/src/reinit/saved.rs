//! Saved configuration and its restoration: the pre-reset snapshot (header plus PCIe control
//! registers), the [`SavedConfig`] source the kernel layers a firmware blob through, and the
//! restore plan in Linux's order (`pci_restore_state` / `pci_restore_config_space`,
//! drivers/pci/pci.c), made width-exact so no write-1-to-clear status bit is ever written as 1.

use alloc::vec::Vec;
use core::fmt;

use crate::pci::{Bdf, ConfigSpace, caps, header_type, reg};
use crate::time::Clock;

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

/// A source of saved config headers (the first 64 bytes). The kernel implements it over the
/// firmware blob (`devices::blob`) when one was loaded; [`super::run`] consults it first and
/// falls back to its own pre-reset snapshot when it returns `None` or a header without
/// usable BARs.
pub trait SavedConfig {
    /// The saved header for the function at `bdf` whose IDs are `vendor`/`device` and whose
    /// 24-bit class code is `class` (base << 16 | sub << 8 | prog-if), if this source has one.
    fn header(&self, bdf: Bdf, vendor: u16, device: u16, class: u32) -> Option<([u8; 64], Source)>;
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
    let mut h = [0u8; 64];
    for (i, chunk) in h.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&cfg.read32(bdf, 4 * i as u16).to_le_bytes());
    }
    h
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

/// Bridge Control bits never replayed: Secondary Bus Reset (bit 6) and the write-1-to-clear
/// Discard Timer Status (bit 10).
pub const BRIDGE_CONTROL_VOLATILE: u16 = (1 << 6) | (1 << 10);
/// BIST byte bit 6 (Start BIST), never replayed.
const DW3_START_BIST: u32 = 1 << 30;

/// One planned config write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreWrite {
    /// Offset.
    pub off: u16,
    /// Width in bytes (2 or 4).
    pub width: u8,
    /// Value.
    pub value: u32,
    /// Re-writes while the read-back differs, 1 ms apart (Linux: 10 for type-0 BARs).
    pub retries: u8,
}

/// Why a header was not restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The saved header names other IDs than the live function.
    IdMismatch,
    /// The saved header has another header type than the live function.
    TypeMismatch,
    /// Header types other than 0 and 1 are not restored.
    Unsupported(u8),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::IdMismatch => f.write_str("saved header is another device's"),
            PlanError::TypeMismatch => f.write_str("saved header type differs"),
            PlanError::Unsupported(t) => write!(f, "header type {t} not restored"),
        }
    }
}

/// The writes that bring `current` back to `saved`, in Linux's order (`pci_restore_config_space`;
/// each range walked from its highest dword down):
/// - type 0: dwords 15..=10, then BARs 9..=4 (with 10 retries), then 3..=0;
/// - type 1: 15..=12, then 11..=9 written even when equal (prefetch window), then 8..=0.
///
/// Only dwords that differ are written. Deviations from Linux, all for width exactness:
/// dword 0 (IDs, read-only) is never written; COMMAND is a 16-bit write of `command` (or the
/// saved COMMAND) and Status is never written; a bridge's I/O base/limit is a 16-bit write so
/// Secondary Status is not; Bridge Control is written without its SBR and W1C bits; the BIST
/// start bit is never replayed. COMMAND is therefore the last write in both orders.
pub fn plan_restore(
    saved: &[u8; 64],
    current: &[u8; 64],
    command: Option<u16>,
) -> Result<Vec<RestoreWrite>, PlanError> {
    if ids(saved) != ids(current) {
        return Err(PlanError::IdMismatch);
    }
    let ty = kind(current);
    if kind(saved) != ty {
        return Err(PlanError::TypeMismatch);
    }
    let order: &[(core::ops::RangeInclusive<usize>, u8, bool)] = match ty {
        header_type::ENDPOINT => &[(10..=15, 0, false), (4..=9, 10, false), (0..=3, 0, false)],
        header_type::BRIDGE => &[(12..=15, 0, false), (9..=11, 0, true), (0..=8, 0, false)],
        t => return Err(PlanError::Unsupported(t)),
    };
    let bridge = ty == header_type::BRIDGE;
    let mut out = Vec::new();
    for (range, retries, force) in order {
        for i in range.clone().rev() {
            let (s, c) = (dword(saved, i), dword(current, i));
            let off = 4 * i as u16;
            match i {
                0 => {}
                1 => {
                    let want = command.unwrap_or(s as u16);
                    if c as u16 != want {
                        out.push(w(reg::COMMAND, 2, u32::from(want), 0));
                    }
                }
                3 => {
                    let want = s & !DW3_START_BIST;
                    if *force || c & !DW3_START_BIST != want {
                        out.push(w(off, 4, want, *retries));
                    }
                }
                7 if bridge => {
                    // I/O base/limit; the upper half is Secondary Status (W1C).
                    if *force || c as u16 != s as u16 {
                        out.push(w(off, 2, s & 0xFFFF, 0));
                    }
                }
                15 if bridge => {
                    let vol = u32::from(BRIDGE_CONTROL_VOLATILE) << 16;
                    let want = s & !vol;
                    if *force || c & !vol != want {
                        out.push(w(off, 4, want, 0));
                    }
                }
                _ => {
                    if *force || c != s {
                        out.push(w(off, 4, s, *retries));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn w(off: u16, width: u8, value: u32, retries: u8) -> RestoreWrite {
    RestoreWrite {
        off,
        width,
        value,
        retries,
    }
}

/// A register that still differs after its retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// Offset.
    pub off: u16,
    /// Value written.
    pub want: u32,
    /// Value read back.
    pub got: u32,
}

/// Performs `plan` on `bdf`; writes with retries are read back and re-written up to
/// `retries` times, 1 ms apart (Linux `pci_restore_config_dword`). Returns the registers that
/// never read back as written.
pub fn apply_restore(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    bdf: Bdf,
    plan: &[RestoreWrite],
) -> Vec<Stuck> {
    let mut stuck = Vec::new();
    for step in plan {
        let mut left = step.retries;
        loop {
            match step.width {
                2 => cfg.write16(bdf, step.off, step.value as u16),
                _ => cfg.write32(bdf, step.off, step.value),
            }
            if step.retries == 0 {
                break;
            }
            let got = cfg.read32(bdf, step.off);
            if got == step.value {
                break;
            }
            if left == 0 {
                stuck.push(Stuck {
                    off: step.off,
                    want: step.value,
                    got,
                });
                break;
            }
            left -= 1;
            clock.delay_us(1_000);
        }
    }
    stuck
}
