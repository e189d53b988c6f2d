//! The one policy for physical addresses that come from outside rkdump (command line, zero page,
//! PVH start info, setup_data, ELF core header, notes, PT_LOADs, ACPI tables, the config blob):
//! which of them rkdump may map and read at all.
//!
//! rkdump reaches physical memory through an identity map, so an address is usable only if it is
//! both a physical address the CPU can put in a page-table entry and a canonical virtual address:
//!
//! 1. **CPU width.** `end <= 2^MAXPHYADDR`, with MAXPHYADDR from CPUID leaf 0x8000_0008 EAX[7:0]
//!    (Intel SDM Vol. 3A 4.1.4; 36 when the leaf is missing, the SDM's default). A PTE naming an
//!    address at or above it has reserved bits set and every access through it is a #PF (RSVD).
//! 2. **Canonical identity address.** `end <= 2^47` with four-level paging, `2^56` with five-level
//!    (CR4.LA57): an identity-mapped address above the lower canonical half is a #GP.
//! 3. **No wrap.** `start + len` must not overflow.
//!
//! [`PhysLimit`] is the minimum of 1 and 2, checked with 3. On top of the limit, [`AddrPolicy`]
//! adds the memory-map rules for the crashed kernel's memory and for the elfcorehdr:
//!
//! - **Known MMIO is never old memory.** A range that overlaps an MMIO window rkdump knows of (the
//!   PCI ECAM window from the MCFG, the local APIC and I/O APIC pages at their architectural
//!   addresses) is refused: reading registers has side effects, and mapping them write-back would
//!   re-type a window a driver uses uncached.
//! - **The elfcorehdr lies inside the span of the memory map the loader gave** (below the end of
//!   its highest entry). Membership in one entry is not required: kexec_file_load carves the header
//!   out of the crash region's RAM entries and leaves a hole for it.
//! - **e820 types do not judge PT_LOADs.** The capture kernel's map describes the crash region, not
//!   the crashed kernel's RAM (kexec does not list it), so "not RAM in this map" says nothing about
//!   a PT_LOAD.
//! - rkdump's own memory (image, heap, DMA, page tables) is refused by the kernel's readers, which
//!   know it; it is not part of this pure policy.

use core::fmt;

use crate::mem::PhysRange;
use crate::memmap::MemoryMap;

/// MAXPHYADDR when CPUID leaf 0x8000_0008 is missing (Intel SDM Vol. 3A 4.1.4).
pub const FALLBACK_PHYS_BITS: u8 = 36;
/// The architectural maximum of MAXPHYADDR; larger CPUID values are clamped to it.
pub const MAX_PHYS_BITS: u8 = 52;
/// Exclusive end of the lower canonical half with four-level paging.
pub const CANONICAL_4LEVEL: u64 = 1 << 47;
/// Exclusive end of the lower canonical half with five-level paging.
pub const CANONICAL_5LEVEL: u64 = 1 << 56;

/// The local APIC's architectural default page (IA32_APIC_BASE reset value).
pub const LAPIC_PAGE: PhysRange = PhysRange::new(0xfee0_0000, 0x1000);
/// The first I/O APIC's conventional page.
pub const IOAPIC_PAGE: PhysRange = PhysRange::new(0xfec0_0000, 0x1000);

/// The paging mode rkdump's identity map runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// Four-level paging (48-bit virtual addresses).
    FourLevel,
    /// Five-level paging, CR4.LA57 set (57-bit virtual addresses).
    FiveLevel,
}

/// Why a physical range was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// `start + len` overflows 64 bits.
    Wraps {
        /// First byte.
        start: u64,
        /// Length.
        len: u64,
    },
    /// The range ends above the physical address limit.
    BeyondLimit {
        /// First byte.
        start: u64,
        /// Length.
        len: u64,
        /// The exclusive limit it crosses.
        limit: u64,
    },
    /// The range overlaps an MMIO window.
    Mmio {
        /// First byte.
        start: u64,
        /// Length.
        len: u64,
        /// The window it overlaps.
        window: PhysRange,
    },
    /// The range lies beyond the end of the memory map the loader gave.
    OutsideMemoryMap {
        /// First byte.
        start: u64,
        /// Length.
        len: u64,
        /// Exclusive end of the map's highest entry.
        map_end: u64,
    },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddrError::Wraps { start, len } => {
                write!(f, "range {start:#x}+{len:#x} wraps around 64 bits")
            }
            AddrError::BeyondLimit { start, len, limit } => write!(
                f,
                "range {start:#x}+{len:#x} is beyond the physical address limit {limit:#x}"
            ),
            AddrError::Mmio { start, len, window } => {
                write!(f, "range {start:#x}+{len:#x} overlaps MMIO {window}")
            }
            AddrError::OutsideMemoryMap {
                start,
                len,
                map_end,
            } => write!(
                f,
                "range {start:#x}+{len:#x} lies beyond the memory map (ends at {map_end:#x})"
            ),
        }
    }
}

/// The exclusive upper bound for any physical address rkdump maps: rules 1 to 3 of the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysLimit {
    end: u64,
}

impl PhysLimit {
    /// The limit for a CPU reporting `phys_bits` (CPUID 0x8000_0008 EAX[7:0]; `None` when the
    /// leaf is missing) running `paging`. A value of 0 is treated as missing, one above 52 is
    /// clamped to 52.
    pub fn new(phys_bits: Option<u8>, paging: Paging) -> Self {
        let bits = match phys_bits {
            None | Some(0) => FALLBACK_PHYS_BITS,
            Some(b) => b.min(MAX_PHYS_BITS),
        };
        let canonical = match paging {
            Paging::FourLevel => CANONICAL_4LEVEL,
            Paging::FiveLevel => CANONICAL_5LEVEL,
        };
        PhysLimit {
            end: (1u64 << bits).min(canonical),
        }
    }

    /// The MAXPHYADDR the CPU reports through CPUID: `max_extended_leaf` is EAX of leaf
    /// 0x8000_0000, `leaf_80000008_eax` EAX of leaf 0x8000_0008 (read only when the first says
    /// it exists).
    pub fn phys_bits_from_cpuid(max_extended_leaf: u32, leaf_80000008_eax: u32) -> Option<u8> {
        (max_extended_leaf >= 0x8000_0008).then_some((leaf_80000008_eax & 0xff) as u8)
    }

    /// The exclusive limit.
    pub fn end(self) -> u64 {
        self.end
    }

    /// Checks `[start, start + len)` against the limit; returns its exclusive end. An empty range
    /// still needs `start` below the limit (an address rkdump could never map is refused even
    /// when nothing would be read).
    pub fn check(self, start: u64, len: u64) -> Result<u64, AddrError> {
        let end = start
            .checked_add(len)
            .ok_or(AddrError::Wraps { start, len })?;
        if end > self.end || start >= self.end {
            return Err(AddrError::BeyondLimit {
                start,
                len,
                limit: self.end,
            });
        }
        Ok(end)
    }
}

/// Most MMIO windows an [`AddrPolicy`] tracks.
pub const MAX_WINDOWS: usize = 8;

/// The limit plus the memory-map rules of the module docs.
#[derive(Clone, Copy, Debug)]
pub struct AddrPolicy {
    limit: PhysLimit,
    windows: [PhysRange; MAX_WINDOWS],
    n_windows: usize,
}

impl AddrPolicy {
    /// A policy over `limit` that knows the local APIC and I/O APIC pages.
    pub fn new(limit: PhysLimit) -> Self {
        let mut p = AddrPolicy {
            limit,
            windows: [PhysRange::new(0, 0); MAX_WINDOWS],
            n_windows: 0,
        };
        p.add_mmio(LAPIC_PAGE);
        p.add_mmio(IOAPIC_PAGE);
        p
    }

    /// The physical address limit.
    pub fn limit(&self) -> PhysLimit {
        self.limit
    }

    /// Records an MMIO window (e.g. the ECAM window from the MCFG); returns false, leaving the
    /// policy unchanged, when [`MAX_WINDOWS`] are already tracked or the window is empty.
    pub fn add_mmio(&mut self, window: PhysRange) -> bool {
        if window.is_empty() || self.n_windows == MAX_WINDOWS {
            return false;
        }
        self.windows[self.n_windows] = window;
        self.n_windows += 1;
        true
    }

    /// The MMIO windows known.
    pub fn mmio(&self) -> &[PhysRange] {
        &self.windows[..self.n_windows]
    }

    /// Whether the crashed kernel's memory `[start, start + len)` may be read: within the limit
    /// and not known MMIO. Returns the exclusive end.
    pub fn check_old_memory(&self, start: u64, len: u64) -> Result<u64, AddrError> {
        let end = self.limit.check(start, len)?;
        let range = PhysRange::new(start, len);
        if let Some(&window) = self.mmio().iter().find(|w| w.overlaps(&range)) {
            return Err(AddrError::Mmio { start, len, window });
        }
        Ok(end)
    }

    /// Whether the elfcorehdr `[addr, addr + len)` may be read: as old memory, and inside the span
    /// of `map` (an empty map does not judge).
    pub fn check_elfcorehdr(&self, map: &MemoryMap, addr: u64, len: u64) -> Result<u64, AddrError> {
        let end = self.check_old_memory(addr, len)?;
        let map_end = map.max_phys();
        if !map.is_empty() && end > map_end {
            return Err(AddrError::OutsideMemoryMap {
                start: addr,
                len,
                map_end,
            });
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::{MemKind, MemRegion};

    fn qemu_tcg() -> PhysLimit {
        PhysLimit::new(Some(40), Paging::FourLevel)
    }

    #[test]
    fn limit_is_the_smaller_of_width_and_canonical_half() {
        assert_eq!(qemu_tcg().end(), 1 << 40);
        assert_eq!(PhysLimit::new(Some(46), Paging::FourLevel).end(), 1 << 46);
        // A 52-bit CPU under four-level paging: the canonical half is the limit.
        assert_eq!(PhysLimit::new(Some(52), Paging::FourLevel).end(), 1 << 47);
        assert_eq!(PhysLimit::new(Some(52), Paging::FiveLevel).end(), 1 << 52);
        assert_eq!(PhysLimit::new(Some(46), Paging::FiveLevel).end(), 1 << 46);
        // Nonsense from CPUID: clamped to 52, or the fallback for 0.
        assert_eq!(PhysLimit::new(Some(255), Paging::FiveLevel).end(), 1 << 52);
        assert_eq!(PhysLimit::new(Some(0), Paging::FourLevel).end(), 1 << 36);
    }

    #[test]
    fn missing_cpuid_leaf_falls_back_to_36_bits() {
        assert_eq!(PhysLimit::phys_bits_from_cpuid(0x8000_0004, 0x3028), None);
        assert_eq!(
            PhysLimit::phys_bits_from_cpuid(0x8000_0008, 0x3028),
            Some(40)
        );
        assert_eq!(
            PhysLimit::phys_bits_from_cpuid(0x8000_001f, 0x3030),
            Some(48)
        );
        let bits = PhysLimit::phys_bits_from_cpuid(0x8000_0001, 0);
        assert_eq!(PhysLimit::new(bits, Paging::FourLevel).end(), 1 << 36);
    }

    #[test]
    fn limit_boundaries() {
        let l = qemu_tcg();
        assert_eq!(l.check(0, 0), Ok(0));
        assert_eq!(l.check((1 << 40) - 4096, 4096), Ok(1 << 40));
        assert!(matches!(
            l.check((1 << 40) - 4096, 4097),
            Err(AddrError::BeyondLimit { .. })
        ));
        assert!(matches!(
            l.check(1 << 40, 0),
            Err(AddrError::BeyondLimit { .. })
        ));
        // The measured command-line values: beyond the width, and non-canonical.
        assert!(l.check(0x7fff_ffff_f000, 64).is_err());
        assert!(l.check(0xffff_ffff_ffff, 64).is_err());
        let wide = PhysLimit::new(Some(52), Paging::FourLevel);
        assert_eq!(wide.check(0x7fff_ffff_f000, 0x1000), Ok(1 << 47));
        assert!(matches!(
            wide.check(0x8000_0000_0000, 1),
            Err(AddrError::BeyondLimit { limit, .. }) if limit == 1 << 47
        ));
    }

    #[test]
    fn overflow_at_u64_max_is_refused_not_wrapped() {
        let l = PhysLimit::new(Some(52), Paging::FiveLevel);
        assert_eq!(
            l.check(u64::MAX, 1),
            Err(AddrError::Wraps {
                start: u64::MAX,
                len: 1
            })
        );
        assert!(matches!(
            l.check(u64::MAX, 0),
            Err(AddrError::BeyondLimit { .. })
        ));
        assert!(matches!(l.check(1, u64::MAX), Err(AddrError::Wraps { .. })));
        assert!(matches!(
            l.check(0, u64::MAX),
            Err(AddrError::BeyondLimit { .. })
        ));
    }

    #[test]
    fn old_memory_must_not_touch_known_mmio() {
        let mut p = AddrPolicy::new(qemu_tcg());
        assert_eq!(p.check_old_memory(0x100_0000, 0x1000), Ok(0x100_1000));
        assert!(matches!(
            p.check_old_memory(0xfee0_0800, 8),
            Err(AddrError::Mmio { window, .. }) if window == LAPIC_PAGE
        ));
        assert!(matches!(
            p.check_old_memory(0xfebf_f000, 0x2000),
            Err(AddrError::Mmio { window, .. }) if window == IOAPIC_PAGE
        ));
        // Touching, not overlapping.
        assert!(p.check_old_memory(0xfedf_f000, 0x1000).is_ok());
        let ecam = PhysRange::new(0xb000_0000, 0x1000_0000);
        assert!(p.add_mmio(ecam));
        assert!(matches!(
            p.check_old_memory(0xaf00_0000, 0x0200_0000),
            Err(AddrError::Mmio { window, .. }) if window == ecam
        ));
        // The limit comes first.
        assert!(matches!(
            p.check_old_memory(1 << 41, 1),
            Err(AddrError::BeyondLimit { .. })
        ));
        assert!(!p.add_mmio(PhysRange::new(0x1000, 0)));
        while p.mmio().len() < MAX_WINDOWS {
            assert!(p.add_mmio(PhysRange::new(0x1000, 1)));
        }
        assert!(!p.add_mmio(PhysRange::new(0x2000, 1)));
    }

    #[test]
    fn elfcorehdr_must_lie_inside_the_memory_map_span() {
        let p = AddrPolicy::new(qemu_tcg());
        let mut map = MemoryMap::new();
        // kexec_file_load's shape: crash-region RAM with a hole where the header sits.
        for (start, len) in [(0x100_0000, 0x0f00_0000), (0x1000_1000, 0x0fff_f000)] {
            map.add(MemRegion {
                start,
                len,
                kind: MemKind::Ram,
            })
            .unwrap();
        }
        assert_eq!(
            p.check_elfcorehdr(&map, 0x1000_0000, 0x1000),
            Ok(0x1000_1000)
        );
        assert!(matches!(
            p.check_elfcorehdr(&map, 0x2000_0000, 64),
            Err(AddrError::OutsideMemoryMap {
                map_end: 0x2000_0000,
                ..
            })
        ));
        assert!(matches!(
            p.check_elfcorehdr(&map, 0x7fff_ffff_f000, 64),
            Err(AddrError::BeyondLimit { .. })
        ));
        assert!(
            p.check_elfcorehdr(&MemoryMap::new(), 0x3000_0000, 64)
                .is_ok()
        );
    }
}
