//! The firmware-configuration step (the NTT kdump design): after the reset engine has run,
//! every function whose live addresses (BARs, bridge windows, bus numbers) differ from what
//! the first kernel's blob saved gets the saved values back, so the dump path decodes where
//! firmware put it. This module owns the policy: which registers count as addresses, the
//! record check, and compare -> write -> read back -> retry through the one planner
//! ([`super::restore`]). The kernel only prints the outcomes.

use alloc::vec::Vec;
use core::fmt;

use super::restore::{PlanError, ReadBack, RestoreWrite, Stuck, apply_restore, plan_restore};
use super::saved::dword;
use crate::blob::BlobView;
use crate::pci::{Bdf, ConfigSpace, ConfigView, LiveView, SavedView, Scan, header_type, reg};
use crate::time::Clock;

/// Whether the register written at `off` holds a firmware-assigned address: type 0 BARs
/// 0x10..0x28; type 1 BARs 0x10..0x18, bus numbers 0x18, I/O base/limit 0x1C (16-bit),
/// memory and prefetchable windows 0x20..0x30, I/O upper halves 0x30. COMMAND, Status,
/// Secondary Status, Bridge Control and the rest are not: quiescing owns COMMAND, and the
/// others carry no firmware-assigned address.
pub fn is_address_register(header_type: u8, off: u16) -> bool {
    match header_type & !header_type::MULTI_FUNCTION {
        header_type::ENDPOINT => (reg::BAR0..0x28).contains(&off),
        header_type::BRIDGE => {
            (reg::BAR0..reg::CAP_PTR).contains(&off) && off != reg::SECONDARY_STATUS
        }
        _ => false,
    }
}

/// One address register the blob put back that read differently before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressChange {
    /// Offset written.
    pub off: u16,
    /// The register's value before (the write's width).
    pub old: u32,
    /// The value written.
    pub new: u32,
}

/// What the firmware-address step did with one function that has a blob record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressOutcome {
    /// The record's IDs or class code differ from the function's: nothing written.
    Mismatch,
    /// The planner refused the record (the header type differs from the function's).
    Refused(PlanError),
    /// Every address write read back as written. `changes` lists those whose value moved
    /// (empty when only the forced prefetchable-window writes of a bridge were made).
    Restored {
        /// Registers whose value changed.
        changes: Vec<AddressChange>,
    },
    /// Some writes never read back as written, even after their retries.
    NotRestored {
        /// Registers whose value was to change.
        changes: Vec<AddressChange>,
        /// The registers that did not take.
        stuck: Vec<Stuck>,
    },
}

/// The firmware-address step's result for one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRestore {
    /// The function.
    pub bdf: Bdf,
    /// What happened.
    pub outcome: AddressOutcome,
}

impl AddressRestore {
    /// Whether this is a failure worth an error line (a mismatched record is only skipped).
    pub fn is_error(&self) -> bool {
        matches!(
            self.outcome,
            AddressOutcome::Refused(_) | AddressOutcome::NotRestored { .. }
        )
    }
}

fn write_changes(f: &mut fmt::Formatter<'_>, changes: &[AddressChange]) -> fmt::Result {
    for c in changes {
        write!(f, " {:#04x}:{:#x}->{:#x}", c.off, c.old, c.new)?;
    }
    Ok(())
}

impl fmt::Display for AddressRestore {
    /// The console line after `reinit `; e2e tests grep
    /// `restored from blob: 0x20:0xfd70fd60->0xfe70fe60`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bdf = self.bdf;
        match &self.outcome {
            AddressOutcome::Mismatch => write!(
                f,
                "{bdf}: blob record does not match the function (IDs or class differ); skipped"
            ),
            AddressOutcome::Refused(e) => write!(f, "{bdf}: blob record not restored: {e}"),
            AddressOutcome::Restored { changes } => {
                write!(f, "{bdf} restored from blob:")?;
                write_changes(f, changes)
            }
            AddressOutcome::NotRestored { changes, stuck } => {
                write!(f, "{bdf} not restored from blob:")?;
                write_changes(f, changes)?;
                for s in stuck {
                    write!(f, ", {:#04x} reads {:#x} not {:#x}", s.off, s.got, s.want)?;
                }
                Ok(())
            }
        }
    }
}

/// Puts the blob's address registers back on every function of `scan` that has a record, in
/// Linux's restore order, width-exact; every write is read back and re-tried as the plan says
/// (10 times, 1 ms apart, for type-0 BARs). Functions without a record, or whose addresses
/// already match, get no entry.
pub fn restore_addresses(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    scan: &Scan,
    blob: &BlobView<'_>,
) -> Vec<AddressRestore> {
    let mut out = Vec::new();
    for d in &scan.devices {
        let Some(rec) = blob.find(d.bdf) else {
            continue;
        };
        let outcome = if !rec.matches(d.vendor, d.device, d.class_code()) {
            Some(AddressOutcome::Mismatch)
        } else {
            restore_one(cfg, clock, d.bdf, d.header_type, &rec.view())
        };
        if let Some(outcome) = outcome {
            out.push(AddressRestore {
                bdf: d.bdf,
                outcome,
            });
        }
    }
    out
}

/// The address writes for one function from `saved`; `None` when there is nothing to write.
fn restore_one(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    bdf: Bdf,
    header_type: u8,
    saved: &SavedView<'_>,
) -> Option<AddressOutcome> {
    let live = LiveView::new(cfg, bdf).header();
    let writes: Vec<RestoreWrite> = match plan_restore(saved, &SavedView::new(&live), None) {
        Ok(plan) => plan
            .into_iter()
            .filter(|w| is_address_register(header_type, w.off))
            .collect(),
        // A function that no longer answers (all-ones IDs) and header types without address
        // registers to restore (CardBus) have nothing to put back: skipped quietly.
        Err(PlanError::IdMismatch | PlanError::Unsupported(_)) => return None,
        Err(e) => return Some(AddressOutcome::Refused(e)),
    };
    if writes.is_empty() {
        return None;
    }
    let changes = writes
        .iter()
        .filter_map(|w| {
            let old =
                (dword(&live, usize::from(w.off / 4)) >> (8 * u32::from(w.off & 3))) & w.mask();
            let new = w.value & w.mask();
            (old != new).then_some(AddressChange {
                off: w.off,
                old,
                new,
            })
        })
        .collect();
    let stuck = apply_restore(cfg, clock, bdf, &writes, ReadBack::Every);
    Some(if stuck.is_empty() {
        AddressOutcome::Restored { changes }
    } else {
        AddressOutcome::NotRestored { changes, stuck }
    })
}

#[cfg(test)]
mod tests;
