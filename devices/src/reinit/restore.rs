//! The one config-header restore planner and its write loop, for every restore rkdump makes:
//! the reinit engine's after a reset (from the blob or the pre-reset snapshot) and the
//! firmware-address step ([`super::firmware`]). Both sides of a plan are read through a
//! [`ConfigView`], so a live function, a blob record and a snapshot are planned alike. The
//! order is Linux's (`pci_restore_config_space`, drivers/pci/pci.c); the widths are exact, so
//! no write-1-to-clear status bit and no action bit is ever written back as 1.

use alloc::vec::Vec;
use core::fmt;

use super::saved::{dword, ids, kind};
use crate::pci::{Bdf, BridgeControl, ConfigSpace, ConfigView, header_type, reg};
use crate::time::Clock;

/// Retries Linux allows a type-0 BAR restore (`pci_restore_config_space`), 1 ms apart.
pub const BAR_RESTORE_RETRIES: u8 = 10;
/// Delay between a write that did not read back and its retry (Linux `pci_restore_config_dword`).
pub const RETRY_DELAY_US: u64 = 1_000;

/// One planned config write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreWrite {
    /// Offset, aligned to `width`.
    pub off: u16,
    /// Width in bytes (2 or 4).
    pub width: u8,
    /// Value (the low `width` bytes count).
    pub value: u32,
    /// Re-writes while the read-back differs, [`RETRY_DELAY_US`] apart (Linux: 10 for type-0
    /// BARs, else 0).
    pub retries: u8,
}

impl RestoreWrite {
    /// The bits a `width`-byte access carries.
    pub fn mask(&self) -> u32 {
        match self.width {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => u32::MAX,
        }
    }
}

/// Why a header was not restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The saved header names other IDs than the live function (or the function reads
    /// all-ones).
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

/// The writes that bring the function read through `current` back to `saved`, in Linux's
/// order (`pci_restore_config_space`; each range walked from its highest dword down):
/// - type 0: dwords 15..=10, then BARs 9..=4 (each with [`BAR_RESTORE_RETRIES`]), then 3..=0;
/// - type 1: 15..=12, then 11..=9 written even when equal (prefetchable window), then 8..=0.
///
/// Only registers that differ are written. Deviations from Linux, all for width exactness
/// (docs/architecture.md#coding-rules, rule 6):
/// - dwords 0 and 2 (IDs, revision, class) are read-only and never written;
/// - dword 1: a 16-bit COMMAND write of `command` (or the saved COMMAND); Status (W1C) never;
/// - dword 3: a 16-bit write of cache-line size and latency timer at 0x0C (header type is
///   read-only; BIST bit 6 would start a self-test);
/// - type 1 dword 7: a 16-bit I/O base/limit write (Secondary Status is W1C);
/// - type 1 dword 15: Bridge Control without [`BridgeControl::VOLATILE`] (secondary bus reset,
///   W1C discard timer status).
///
/// COMMAND is therefore the last write in both orders. CardBus (type 2) and unknown header
/// types are refused, as are headers of another device or another type.
pub fn plan_restore(
    saved: &dyn ConfigView,
    current: &dyn ConfigView,
    command: Option<u16>,
) -> Result<Vec<RestoreWrite>, PlanError> {
    let (saved, current) = (saved.header(), current.header());
    if ids(&saved) != ids(&current) {
        return Err(PlanError::IdMismatch);
    }
    let ty = kind(&current);
    if kind(&saved) != ty {
        return Err(PlanError::TypeMismatch);
    }
    // (dwords, retries, written even when equal)
    let order: &[(core::ops::RangeInclusive<usize>, u8, bool)] = match ty {
        header_type::ENDPOINT => &[
            (10..=15, 0, false),
            (4..=9, BAR_RESTORE_RETRIES, false),
            (0..=3, 0, false),
        ],
        header_type::BRIDGE => &[(12..=15, 0, false), (9..=11, 0, true), (0..=8, 0, false)],
        t => return Err(PlanError::Unsupported(t)),
    };
    let bridge = ty == header_type::BRIDGE;
    let mut out = Vec::new();
    for (range, retries, force) in order {
        for i in range.clone().rev() {
            let (s, c) = (dword(&saved, i), dword(&current, i));
            let off = 4 * i as u16;
            // (offset, width, bits of the dword that are restored)
            let (off, width, mask) = match i {
                0 | 2 => continue,
                1 => {
                    let want = command.unwrap_or(s as u16);
                    if c as u16 != want {
                        out.push(w(reg::COMMAND, 2, u32::from(want), 0));
                    }
                    continue;
                }
                3 => (reg::CACHE_LINE_SIZE, 2, 0xFFFF),
                // I/O base/limit; the upper half is Secondary Status (W1C).
                7 if bridge => (reg::IO_BASE, 2, 0xFFFF),
                15 if bridge => (off, 4, !(u32::from(BridgeControl::VOLATILE.bits()) << 16)),
                _ => (off, 4, u32::MAX),
            };
            let want = s & mask;
            if *force || c & mask != want {
                out.push(w(off, width, want, *retries));
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

/// Which writes [`apply_restore`] reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBack {
    /// Only writes with retries, as Linux does after a reset (the engine's restore).
    Retried,
    /// Every write: a write that does not read back is reported even without retries (the
    /// firmware-address step, whose whole point is that the addresses take).
    Every,
}

/// Performs `plan` on `bdf`, each write width-exact. A write that is read back (see
/// [`ReadBack`]) and differs is re-written up to its `retries` times, [`RETRY_DELAY_US`] apart
/// (Linux `pci_restore_config_dword`). Returns the registers that never read back as written.
pub fn apply_restore(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    bdf: Bdf,
    plan: &[RestoreWrite],
    read_back: ReadBack,
) -> Vec<Stuck> {
    let mut stuck = Vec::new();
    for step in plan {
        let verify = step.retries > 0 || read_back == ReadBack::Every;
        let mut left = step.retries;
        loop {
            match step.width {
                1 => cfg.write8(bdf, step.off, step.value as u8),
                2 => cfg.write16(bdf, step.off, step.value as u16),
                _ => cfg.write32(bdf, step.off, step.value),
            }
            if !verify {
                break;
            }
            let got = match step.width {
                1 => u32::from(cfg.read8(bdf, step.off)),
                2 => u32::from(cfg.read16(bdf, step.off)),
                _ => cfg.read32(bdf, step.off),
            };
            let want = step.value & step.mask();
            if got == want {
                break;
            }
            if left == 0 {
                stuck.push(Stuck {
                    off: step.off,
                    want,
                    got,
                });
                break;
            }
            left -= 1;
            clock.delay_us(RETRY_DELAY_US);
        }
    }
    stuck
}
