//! IOMMUs the crashed kernel left on: after every PCI function was quiesced and before any dump
//! DMA, each VT-d unit the DMAR table lists gets its faults logged and cleared and its
//! translation, interrupt remapping and queued invalidation turned off (the policy and the
//! register work are `rkdump_devices::iommu`; why off and not pass-through: its module doc).
//! AMD-Vi (IVRS) is reported and left alone. Console lines: `rkdump: iommu ...`.

use alloc::vec;

use rkdump_boot::Options;
use rkdump_boot::cmdline::IommuMode;
use rkdump_devices::iommu::{dmar, ivrs, vtd};

use crate::acpi::AcpiInfo;
use crate::clock::TscClock;
use crate::{rkerror, rkline};

/// Longest ACPI table copied for parsing.
const MAX_TABLE_LEN: u32 = 64 << 10;
/// Most register space mapped per unit (fault records and IOTLB registers sit in the first
/// pages on every unit seen; the DRHD size field may ask for more).
const MAX_UNIT_WINDOW: u64 = 4 << 12;

fn copy_table(addr: u64, len: u32) -> Option<alloc::vec::Vec<u8>> {
    if len > MAX_TABLE_LEN {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    crate::hw::phys::copy_from(addr, &mut buf).ok()?;
    Some(buf)
}

/// Makes the dump's DMA reach physical memory: see the module doc.
pub fn take_over(acpi: Option<&AcpiInfo>, opts: &Options) {
    if opts.iommu == IommuMode::Skip {
        rkline!("iommu skipped (rkdump.iommu=skip)");
        return;
    }
    let Some(acpi) = acpi else {
        return;
    };
    if let Some((addr, len)) = acpi.ivrs {
        match copy_table(addr, len).as_deref().and_then(ivrs::units) {
            Some(units) => {
                for u in &units {
                    rkline!(
                        "iommu amd-vi ivhd type={:#x} base={:#x}: not handled (untested); DMA \
                         through it may fault",
                        u.kind,
                        u.base
                    );
                }
                if units.is_empty() {
                    rkline!("iommu amd-vi IVRS without IOMMU blocks");
                }
            }
            None => rkerror!("iommu: IVRS table at {addr:#x} unreadable"),
        }
    }
    let Some((addr, len)) = acpi.dmar else {
        if acpi.ivrs.is_none() {
            rkline!("iommu none");
        }
        return;
    };
    let Some(table) = copy_table(addr, len) else {
        rkerror!("iommu: DMAR table at {addr:#x} ({len} bytes) unreadable");
        return;
    };
    let d = match dmar::parse(&table) {
        Ok(d) => d,
        Err(e) => {
            rkerror!("iommu: DMAR table: {e}");
            return;
        }
    };
    rkline!(
        "iommu vt-d units={} haw={} flags={:#x}",
        d.units.len(),
        d.host_address_width,
        d.flags
    );
    for u in &d.units {
        let Some(regs) = crate::hw::pci::map_mmio(u.base, u.size.min(MAX_UNIT_WINDOW)) else {
            rkerror!("iommu unit {:#x}: registers not mappable", u.base);
            continue;
        };
        let (report, err) = match vtd::disable(&regs, &TscClock) {
            Ok(r) => (Some(r), None),
            Err(vtd::VtdError::Stuck { what, gsts, report }) => (Some(report), Some((what, gsts))),
            Err(e) => {
                rkerror!("iommu unit {:#x}: {e}", u.base);
                (None, None)
            }
        };
        let Some(r) = report else {
            continue;
        };
        for f in &r.faults {
            rkline!("iommu unit {:#x} {f} (cleared)", u.base);
        }
        let steps = if r.steps.is_empty() {
            alloc::string::String::from("none")
        } else {
            r.steps.join(",")
        };
        rkline!(
            "iommu unit {:#x} ver={}.{} segment={} gsts={:#010x}->{:#010x} fsts={:#x} faults={} \
             records={} done={}",
            u.base,
            (r.version >> 4) & 0xF,
            r.version & 0xF,
            u.segment,
            r.gsts_before,
            r.gsts_after,
            r.fsts,
            r.faults.len(),
            r.fault_records,
            steps
        );
        if let Some((what, gsts)) = err {
            rkerror!(
                "iommu unit {:#x}: {what} still on (GSTS={gsts:#010x}); DMA through it may fault",
                u.base
            );
        }
    }
}
