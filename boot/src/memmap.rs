//! The normalised physical memory map: e820-typed regions, sorted, disjoint, fixed capacity.
//!
//! Firmware and loaders hand over overlapping, unsorted e820 entries. [`MemoryMap::add`] keeps the map
//! canonical as entries arrive: sorted by address, no overlaps (any non-RAM type beats RAM, otherwise
//! the higher raw type wins, as in Linux's `e820__update_table`), adjacent regions of one kind merged.
//! When the capacity runs out, pieces are dropped and counted: a dropped piece becomes a hole, never
//! RAM, so the map can only under-report RAM.

use core::fmt;

use crate::mem::PhysRange;

/// Maximum number of disjoint regions in a [`MemoryMap`].
pub const MEMORY_MAP_CAPACITY: usize = 512;

/// E820 type: usable RAM.
pub const E820_TYPE_RAM: u32 = 1;
/// E820 type: reserved.
pub const E820_TYPE_RESERVED: u32 = 2;
/// E820 type: ACPI tables, reclaimable after parsing.
pub const E820_TYPE_ACPI: u32 = 3;
/// E820 type: ACPI non-volatile storage.
pub const E820_TYPE_NVS: u32 = 4;
/// E820 type: unusable (bad) memory.
pub const E820_TYPE_UNUSABLE: u32 = 5;
/// E820 type: persistent memory.
pub const E820_TYPE_PMEM: u32 = 7;
/// E820 type: legacy persistent memory (PRAM).
pub const E820_TYPE_PRAM: u32 = 12;

/// Kind of a memory region, from the raw E820 type. Only [`MemKind::Ram`] may be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemKind {
    /// Type 1: usable RAM.
    Ram,
    /// Type 2: reserved.
    Reserved,
    /// Type 3: ACPI tables.
    AcpiReclaimable,
    /// Type 4: ACPI NVS.
    AcpiNvs,
    /// Type 5: unusable.
    Unusable,
    /// Type 7: persistent memory.
    Pmem,
    /// Type 12: legacy persistent memory.
    Pram,
    /// Any other raw type, kept as is.
    Unknown(u32),
}

impl MemKind {
    /// Maps a raw E820 type.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            E820_TYPE_RAM => Self::Ram,
            E820_TYPE_RESERVED => Self::Reserved,
            E820_TYPE_ACPI => Self::AcpiReclaimable,
            E820_TYPE_NVS => Self::AcpiNvs,
            E820_TYPE_UNUSABLE => Self::Unusable,
            E820_TYPE_PMEM => Self::Pmem,
            E820_TYPE_PRAM => Self::Pram,
            other => Self::Unknown(other),
        }
    }

    /// The raw E820 type.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Ram => E820_TYPE_RAM,
            Self::Reserved => E820_TYPE_RESERVED,
            Self::AcpiReclaimable => E820_TYPE_ACPI,
            Self::AcpiNvs => E820_TYPE_NVS,
            Self::Unusable => E820_TYPE_UNUSABLE,
            Self::Pmem => E820_TYPE_PMEM,
            Self::Pram => E820_TYPE_PRAM,
            Self::Unknown(raw) => raw,
        }
    }

    /// Overlap resolution: RAM loses to everything, otherwise the larger raw type wins.
    fn precedence(self) -> u64 {
        match self {
            Self::Ram => 0,
            other => u64::from(other.raw()) + 1,
        }
    }
}

impl fmt::Display for MemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ram => f.write_str("RAM"),
            Self::Reserved => f.write_str("reserved"),
            Self::AcpiReclaimable => f.write_str("ACPI"),
            Self::AcpiNvs => f.write_str("ACPI NVS"),
            Self::Unusable => f.write_str("unusable"),
            Self::Pmem => f.write_str("PMEM"),
            Self::Pram => f.write_str("PRAM"),
            Self::Unknown(raw) => write!(f, "type {raw}"),
        }
    }
}

/// One region of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the region is.
    pub kind: MemKind,
}

impl MemRegion {
    const EMPTY: Self = Self {
        start: 0,
        len: 0,
        kind: MemKind::Reserved,
    };

    /// The region as a plain range.
    pub fn range(&self) -> PhysRange {
        PhysRange::new(self.start, self.len)
    }

    /// Exclusive end (always `Some` for regions stored in a [`MemoryMap`]).
    pub fn end(&self) -> Option<u64> {
        self.start.checked_add(self.len)
    }

    /// End of a region known not to overflow (map invariant).
    fn end_unchecked(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

impl fmt::Display for MemRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.range(), self.kind)
    }
}

/// Why [`MemoryMap::add`] did not record an entry (completely).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryMapError {
    /// `addr + size` overflows: the entry was ignored.
    Overflow {
        /// Start of the entry.
        addr: u64,
        /// Size of the entry.
        size: u64,
    },
    /// The map is full: some pieces of the entry (or of a region it split) were dropped.
    Full {
        /// Start of the entry.
        addr: u64,
        /// Size of the entry.
        size: u64,
    },
}

impl fmt::Display for MemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Overflow { addr, size } => {
                write!(f, "memory map entry {addr:#x}+{size:#x} overflows 64 bits")
            }
            Self::Full { addr, size } => write!(
                f,
                "memory map full ({MEMORY_MAP_CAPACITY} regions): parts of {addr:#x}+{size:#x} dropped"
            ),
        }
    }
}

/// A canonical physical memory map with fixed capacity (see the module docs).
#[derive(Clone, Debug)]
pub struct MemoryMap {
    regions: [MemRegion; MEMORY_MAP_CAPACITY],
    len: usize,
    dropped: u32,
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMap {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            regions: [MemRegion::EMPTY; MEMORY_MAP_CAPACITY],
            len: 0,
            dropped: 0,
        }
    }

    /// Removes all regions and resets the drop counter.
    pub fn clear(&mut self) {
        self.len = 0;
        self.dropped = 0;
    }

    /// Adds a raw e820 entry (`addr`, `size`, `type`).
    pub fn add_raw(&mut self, addr: u64, size: u64, type_: u32) -> Result<(), MemoryMapError> {
        self.add(MemRegion {
            start: addr,
            len: size,
            kind: MemKind::from_raw(type_),
        })
    }

    /// Adds a region, resolving overlaps by precedence; empty regions are ignored.
    pub fn add(&mut self, region: MemRegion) -> Result<(), MemoryMapError> {
        let (addr, size) = (region.start, region.len);
        let Some(end) = region.end() else {
            return Err(MemoryMapError::Overflow { addr, size });
        };
        if size == 0 {
            return Ok(());
        }
        let dropped_before = self.dropped;
        self.cut_losers(addr, end, region.kind);
        self.fill_gaps(addr, end, region.kind);
        self.coalesce();
        if self.dropped == dropped_before {
            Ok(())
        } else {
            Err(MemoryMapError::Full { addr, size })
        }
    }

    /// Removes the parts of existing regions inside `[s, e)` that lose to `kind`.
    fn cut_losers(&mut self, s: u64, e: u64, kind: MemKind) {
        let mut i = self.first_ending_after(s);
        while i < self.len && self.regions[i].start < e {
            let r = self.regions[i];
            if r.kind.precedence() >= kind.precedence() {
                i += 1;
                continue;
            }
            let r_end = r.end_unchecked();
            let left = (r.start < s).then(|| MemRegion {
                start: r.start,
                len: s - r.start,
                kind: r.kind,
            });
            let right = (r_end > e).then(|| MemRegion {
                start: e,
                len: r_end - e,
                kind: r.kind,
            });
            match (left, right) {
                (None, None) => self.remove_at(i),
                (Some(piece), None) | (None, Some(piece)) => {
                    self.regions[i] = piece;
                    i += 1;
                }
                (Some(l), Some(rt)) => {
                    self.regions[i] = l;
                    i += 1 + self.insert_at(i + 1, rt);
                }
            }
        }
    }

    /// Inserts `kind` into the parts of `[s, e)` no remaining region covers.
    fn fill_gaps(&mut self, s: u64, e: u64, kind: MemKind) {
        let mut cur = s;
        let mut i = self.first_ending_after(s);
        while cur < e {
            if i < self.len && self.regions[i].start < e {
                let r = self.regions[i];
                if r.start > cur {
                    i += self.insert_at(
                        i,
                        MemRegion {
                            start: cur,
                            len: r.start - cur,
                            kind,
                        },
                    );
                }
                cur = cur.max(r.end_unchecked());
                i += 1;
            } else {
                self.insert_at(
                    i,
                    MemRegion {
                        start: cur,
                        len: e - cur,
                        kind,
                    },
                );
                break;
            }
        }
    }

    /// Index of the first region that ends after `addr`.
    fn first_ending_after(&self, addr: u64) -> usize {
        self.regions[..self.len].partition_point(|r| r.end_unchecked() <= addr)
    }

    /// Inserts at `i`, merging into an adjacent region of the same kind when possible, and returns
    /// how many regions were added (0 or 1). Counts a drop when the map is full.
    fn insert_at(&mut self, i: usize, region: MemRegion) -> usize {
        if let Some(prev) = i
            .checked_sub(1)
            .and_then(|p| self.regions[..self.len].get_mut(p))
            && prev.kind == region.kind
            && prev.end_unchecked() == region.start
        {
            prev.len += region.len;
            return 0;
        }
        if let Some(next) = self.regions[..self.len].get_mut(i)
            && next.kind == region.kind
            && region.end_unchecked() == next.start
        {
            next.start = region.start;
            next.len += region.len;
            return 0;
        }
        if self.len == MEMORY_MAP_CAPACITY {
            self.dropped = self.dropped.saturating_add(1);
            return 0;
        }
        self.regions.copy_within(i..self.len, i + 1);
        self.regions[i] = region;
        self.len += 1;
        1
    }

    fn remove_at(&mut self, i: usize) {
        self.regions.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    /// Merges adjacent regions of the same kind.
    fn coalesce(&mut self) {
        let mut out = 0;
        for i in 0..self.len {
            let r = self.regions[i];
            if out > 0 {
                let prev = &mut self.regions[out - 1];
                if prev.kind == r.kind && prev.end_unchecked() == r.start {
                    prev.len += r.len;
                    continue;
                }
            }
            self.regions[out] = r;
            out += 1;
        }
        self.len = out;
    }

    /// The regions, sorted and disjoint.
    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..self.len]
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no regions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pieces dropped because the map was full (0 on a healthy boot).
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// The usable RAM regions, ascending.
    pub fn ram_regions(&self) -> impl Iterator<Item = &MemRegion> + '_ {
        self.regions().iter().filter(|r| r.kind == MemKind::Ram)
    }

    /// Total bytes of usable RAM.
    pub fn total_ram(&self) -> u64 {
        self.ram_regions()
            .fold(0, |sum, r| sum.saturating_add(r.len))
    }

    /// Exclusive end of the highest region of any kind (0 for an empty map).
    pub fn max_phys(&self) -> u64 {
        self.regions().last().map_or(0, MemRegion::end_unchecked)
    }

    /// Exclusive end of the highest RAM region (0 without RAM).
    pub fn max_ram(&self) -> u64 {
        self.ram_regions()
            .last()
            .map_or(0, MemRegion::end_unchecked)
    }

    /// The kind of memory at `addr`, if the map covers it.
    pub fn kind_at(&self, addr: u64) -> Option<MemKind> {
        let r = self.regions().get(self.first_ending_after(addr))?;
        (r.start <= addr).then_some(r.kind)
    }

    /// Whether all of the non-empty `range` is usable RAM.
    pub fn contains_ram(&self, range: PhysRange) -> bool {
        if range.is_empty() {
            return false;
        }
        self.regions()
            .get(self.first_ending_after(range.start))
            .is_some_and(|r| r.kind == MemKind::Ram && r.range().contains(&range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(start: u64, len: u64, kind: MemKind) -> MemRegion {
        MemRegion { start, len, kind }
    }

    fn check_canonical(map: &MemoryMap) {
        for w in map.regions().windows(2) {
            assert!(
                w[0].end().unwrap() <= w[1].start,
                "overlap/unsorted: {:?}",
                w
            );
            assert!(
                !(w[0].kind == w[1].kind && w[0].end().unwrap() == w[1].start),
                "unmerged: {:?}",
                w
            );
        }
        assert!(map.regions().iter().all(|r| r.len > 0));
    }

    #[test]
    fn kinds_round_trip() {
        for raw in 0..20 {
            assert_eq!(MemKind::from_raw(raw).raw(), raw);
        }
        assert_eq!(MemKind::from_raw(12), MemKind::Pram);
        assert_eq!(MemKind::from_raw(6), MemKind::Unknown(6));
        assert_eq!(
            MemKind::from_raw(0xF000_0000),
            MemKind::Unknown(0xF000_0000)
        );
    }

    #[test]
    fn sorts_merges_and_resolves_overlaps() {
        let mut m = MemoryMap::new();
        m.add_raw(0x10_0000, 0x100_0000, 1).unwrap();
        m.add_raw(0, 0x9F000, 1).unwrap();
        m.add_raw(0x9F000, 0x1000, 2).unwrap();
        m.add_raw(0xF0000, 0x10000, 2).unwrap();
        // Adjacent RAM merges; reserved inside RAM splits it; RAM over reserved does not win.
        m.add_raw(0x110_0000, 0x100_0000, 1).unwrap();
        m.add_raw(0x80_0000, 0x1000, 4).unwrap();
        m.add_raw(0x9F800, 0x60000, 1).unwrap();
        check_canonical(&m);
        assert_eq!(
            m.regions(),
            &[
                reg(0, 0x9F000, MemKind::Ram),
                reg(0x9F000, 0x1000, MemKind::Reserved),
                reg(0xA0000, 0x50000, MemKind::Ram),
                reg(0xF0000, 0x10000, MemKind::Reserved),
                reg(0x10_0000, 0x70_0000, MemKind::Ram),
                reg(0x80_0000, 0x1000, MemKind::AcpiNvs),
                reg(0x80_1000, 0x18F_F000, MemKind::Ram),
            ]
        );
        assert_eq!(m.total_ram(), 0x9F000 + 0x50000 + 0x70_0000 + 0x18F_F000);
        assert_eq!(m.max_phys(), 0x210_0000);
        assert_eq!(m.max_ram(), 0x210_0000);
        assert!(m.contains_ram(PhysRange::new(0x10_0000, 0x70_0000)));
        assert!(!m.contains_ram(PhysRange::new(0x10_0000, 0x70_0001)));
        assert!(!m.contains_ram(PhysRange::new(0x9F000, 1)));
        assert!(!m.contains_ram(PhysRange::new(0x5000_0000, 1)));
        assert!(!m.contains_ram(PhysRange::new(0x1000, 0)));
        assert_eq!(m.kind_at(0x80_0FFF), Some(MemKind::AcpiNvs));
        assert_eq!(m.kind_at(0x300_0000), None);
        assert_eq!(m.ram_regions().count(), 4);
    }

    #[test]
    fn higher_type_wins_and_unknown_is_kept() {
        let mut m = MemoryMap::new();
        m.add_raw(0x1000, 0x3000, 2).unwrap();
        m.add_raw(0x2000, 0x3000, 3).unwrap();
        m.add_raw(0x0, 0x8000, 1).unwrap();
        m.add_raw(0x8000, 0x1000, 0xABCD).unwrap();
        check_canonical(&m);
        assert_eq!(
            m.regions(),
            &[
                reg(0, 0x1000, MemKind::Ram),
                reg(0x1000, 0x1000, MemKind::Reserved),
                reg(0x2000, 0x3000, MemKind::AcpiReclaimable),
                reg(0x5000, 0x3000, MemKind::Ram),
                reg(0x8000, 0x1000, MemKind::Unknown(0xABCD)),
            ]
        );
    }

    #[test]
    fn bad_entries() {
        let mut m = MemoryMap::new();
        assert_eq!(
            m.add_raw(u64::MAX, 2, 1),
            Err(MemoryMapError::Overflow {
                addr: u64::MAX,
                size: 2
            })
        );
        m.add_raw(0x1000, 0, 1).unwrap();
        assert!(m.is_empty());
        m.add_raw(u64::MAX - 0x1000, 0x1000, 1).unwrap();
        assert_eq!(m.max_phys(), u64::MAX);
    }

    #[test]
    fn overflow_drops_and_counts() {
        let mut m = MemoryMap::new();
        for i in 0..MEMORY_MAP_CAPACITY as u64 {
            m.add_raw(i * 0x2000, 0x1000, 1).unwrap();
        }
        assert_eq!(m.len(), MEMORY_MAP_CAPACITY);
        let top = MEMORY_MAP_CAPACITY as u64 * 0x2000;
        assert_eq!(
            m.add_raw(top, 0x1000, 2),
            Err(MemoryMapError::Full {
                addr: top,
                size: 0x1000
            })
        );
        assert_eq!(m.dropped(), 1);
        // Adjacent to an existing region of the same kind: merges, needs no slot.
        m.add_raw(0x1000, 0x1000, 1).unwrap();
        assert_eq!(m.len(), MEMORY_MAP_CAPACITY - 1);
        // A reserved hole in the middle of a RAM region needs two more slots but only one is free:
        // the pieces that do not fit are dropped and become holes, never RAM.
        assert!(m.add_raw(0x4800, 0x100, 2).is_err());
        assert_eq!(m.len(), MEMORY_MAP_CAPACITY);
        assert_eq!(m.kind_at(0x4000), Some(MemKind::Ram));
        assert_eq!(m.kind_at(0x4800), None);
        assert_eq!(m.kind_at(0x4900), Some(MemKind::Ram));
        assert!(m.add_raw(0x6800, 0x100, 2).is_err());
        assert_eq!(m.kind_at(0x6000), Some(MemKind::Ram));
        assert_eq!(m.kind_at(0x6800), None);
        assert_eq!(m.kind_at(0x6900), None);
        assert_eq!(m.dropped(), 4);
        check_canonical(&m);
    }

    #[test]
    fn random_overlaps_stay_canonical() {
        let mut rng = crate::testing::Rng::new(0x1234_5678);
        for _ in 0..200 {
            let mut m = MemoryMap::new();
            let mut entries = [(0u64, 0u64, 0u32); 24];
            for e in entries.iter_mut() {
                let start = rng.below(64) * 0x1000;
                let len = (rng.below(16) + 1) * 0x1000;
                let ty = [1, 1, 1, 2, 3, 4, 9][rng.below(7) as usize];
                *e = (start, len, ty);
                m.add_raw(start, len, ty).unwrap();
            }
            check_canonical(&m);
            // Every page's kind is the winner among the entries covering it.
            for page in 0..80u64 {
                let addr = page * 0x1000;
                let want = entries
                    .iter()
                    .filter(|(s, l, _)| *s <= addr && addr < s + l)
                    .map(|&(_, _, t)| MemKind::from_raw(t))
                    .max_by_key(|k| k.precedence());
                assert_eq!(m.kind_at(addr), want, "page {page:#x}");
            }
        }
    }
}
