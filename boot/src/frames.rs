//! Physical frame allocator policy: hands out page-aligned RAM that no reservation touches.
//!
//! Pure bookkeeping over fixed-capacity span lists; the kernel maps and zeroes what it gets.
//! Invariant: a byte is handed out only if the [`MemoryMap`] says RAM, it lies outside every
//! reservation (given at creation or later through [`FrameAllocator::reserve`]) and outside page 0,
//! and it is not currently allocated. When a list runs out of slots, memory is leaked (counted in
//! [`FrameAllocator::lost_bytes`]), never double-handed out.

use core::fmt;

use crate::mem::PhysRange;
use crate::memmap::MemoryMap;

/// Allocation granule.
pub const PAGE_SIZE: u64 = 4096;
/// Exclusive upper bound for 32-bit DMA ([`AllocRequest::below`]).
pub const DMA32_LIMIT: u64 = 1 << 32;
/// Maximum number of disjoint free spans.
pub const FREE_LIST_CAPACITY: usize = 512;
/// Maximum number of disjoint allocated spans that can still be freed.
pub const ALLOCATED_CAPACITY: usize = 256;

/// Sorted, disjoint, non-adjacent `[start, end)` spans with fixed capacity.
#[derive(Clone, Debug)]
struct SpanSet<const N: usize> {
    spans: [(u64, u64); N],
    len: usize,
}

impl<const N: usize> SpanSet<N> {
    const fn new() -> Self {
        Self {
            spans: [(0, 0); N],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[(u64, u64)] {
        &self.spans[..self.len]
    }

    /// Adds `[s, e)`, merging with touching spans. Returns false (unchanged) when a slot is needed
    /// but none is free.
    fn insert(&mut self, s: u64, e: u64) -> bool {
        if s >= e {
            return true;
        }
        let i = self.as_slice().partition_point(|&(_, b)| b < s);
        let j = self.as_slice().partition_point(|&(a, _)| a <= e);
        if i == j {
            if self.len == N {
                return false;
            }
            self.spans.copy_within(i..self.len, i + 1);
            self.spans[i] = (s, e);
            self.len += 1;
        } else {
            self.spans[i] = (s.min(self.spans[i].0), e.max(self.spans[j - 1].1));
            self.spans.copy_within(j..self.len, i + 1);
            self.len -= j - i - 1;
        }
        true
    }

    /// Removes `[s, e)`. A split that finds no free slot keeps the larger piece; returns the bytes
    /// of the piece given up.
    fn remove(&mut self, s: u64, e: u64) -> u64 {
        let mut i = self.as_slice().partition_point(|&(_, b)| b <= s);
        while i < self.len && self.spans[i].0 < e {
            let (a, b) = self.spans[i];
            match (a < s, b > e) {
                (false, false) => {
                    self.spans.copy_within(i + 1..self.len, i);
                    self.len -= 1;
                }
                (true, false) => {
                    self.spans[i].1 = s;
                    i += 1;
                }
                (false, true) => {
                    self.spans[i].0 = e;
                    i += 1;
                }
                (true, true) => {
                    let (left, right) = ((a, s), (e, b));
                    if self.len < N {
                        self.spans[i] = left;
                        self.spans.copy_within(i + 1..self.len, i + 2);
                        self.spans[i + 1] = right;
                        self.len += 1;
                        return 0;
                    }
                    let (keep, lose) = if s - a >= b - e {
                        (left, right)
                    } else {
                        (right, left)
                    };
                    self.spans[i] = keep;
                    return lose.1 - lose.0;
                }
            }
        }
        0
    }

    /// Whether `[s, e)` lies inside one span.
    fn contains(&self, s: u64, e: u64) -> bool {
        let i = self.as_slice().partition_point(|&(_, b)| b <= s);
        self.as_slice()
            .get(i)
            .is_some_and(|&(a, b)| a <= s && e <= b)
    }

    /// Bytes of `[s, e)` covered by spans.
    fn overlap_bytes(&self, s: u64, e: u64) -> u64 {
        self.as_slice()
            .iter()
            .map(|&(a, b)| b.min(e).saturating_sub(a.max(s)))
            .sum()
    }

    fn total(&self) -> u64 {
        self.as_slice().iter().map(|&(a, b)| b - a).sum()
    }
}

/// Search direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Highest fitting address first (default; keeps low memory for DMA-limited users).
    #[default]
    TopDown,
    /// Lowest fitting address first.
    BottomUp,
}

/// What to allocate: size, alignment and placement constraints (builder style).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocRequest {
    /// Bytes wanted; rounded up to [`PAGE_SIZE`].
    pub size: u64,
    /// Power-of-two alignment; values below [`PAGE_SIZE`] mean page alignment.
    pub align: u64,
    /// The allocation must end at or below this address (e.g. [`DMA32_LIMIT`]).
    pub below: Option<u64>,
    /// The allocation must start at or above this address.
    pub above: u64,
    /// Search direction.
    pub order: Order,
}

impl AllocRequest {
    /// `size` bytes, page aligned, anywhere, top-down.
    pub const fn bytes(size: u64) -> Self {
        Self {
            size,
            align: PAGE_SIZE,
            below: None,
            above: 0,
            order: Order::TopDown,
        }
    }

    /// `count` pages (saturating; an absurd count simply fails).
    pub const fn pages(count: u64) -> Self {
        Self::bytes(count.saturating_mul(PAGE_SIZE))
    }

    /// With this alignment.
    pub const fn align(mut self, align: u64) -> Self {
        self.align = align;
        self
    }

    /// Ending at or below `limit`.
    pub const fn below(mut self, limit: u64) -> Self {
        self.below = Some(limit);
        self
    }

    /// Starting at or above `min`.
    pub const fn above(mut self, min: u64) -> Self {
        self.above = min;
        self
    }

    /// Lowest address first.
    pub const fn bottom_up(mut self) -> Self {
        self.order = Order::BottomUp;
        self
    }

    /// Highest address first.
    pub const fn top_down(mut self) -> Self {
        self.order = Order::TopDown;
        self
    }
}

/// Why an allocation or free failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A zero-byte request.
    ZeroSize,
    /// The alignment is not a power of two.
    BadAlign {
        /// Alignment requested.
        align: u64,
    },
    /// Rounding the size up to a page overflows.
    SizeOverflow {
        /// Size requested.
        size: u64,
    },
    /// No free span satisfies the request.
    OutOfMemory {
        /// Bytes requested (page rounded).
        size: u64,
        /// Effective alignment.
        align: u64,
        /// Upper limit, if any.
        below: Option<u64>,
    },
    /// The range is not (entirely) currently allocated, or not page aligned.
    NotAllocated {
        /// Range passed to `free`.
        range: PhysRange,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroSize => f.write_str("zero-size frame allocation"),
            Self::BadAlign { align } => write!(f, "alignment {align:#x} is not a power of two"),
            Self::SizeOverflow { size } => write!(f, "allocation size {size:#x} overflows"),
            Self::OutOfMemory {
                size,
                align,
                below: Some(limit),
            } => write!(
                f,
                "out of memory: {size:#x} bytes aligned {align:#x} below {limit:#x}"
            ),
            Self::OutOfMemory {
                size,
                align,
                below: None,
            } => {
                write!(f, "out of memory: {size:#x} bytes aligned {align:#x}")
            }
            Self::NotAllocated { range } => write!(f, "free of {range}, which is not allocated"),
        }
    }
}

/// The frame allocator (see the module docs).
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    free: SpanSet<FREE_LIST_CAPACITY>,
    allocated: SpanSet<ALLOCATED_CAPACITY>,
    used: u64,
    peak: u64,
    lost: u64,
}

fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    x.checked_next_multiple_of(align)
}

impl FrameAllocator {
    /// Free memory = the RAM of `map` (shrunk to whole pages) minus page 0 minus `reserved`
    /// (each grown to whole pages).
    pub fn new(map: &MemoryMap, reserved: impl IntoIterator<Item = PhysRange>) -> Self {
        let mut this = Self {
            free: SpanSet::new(),
            allocated: SpanSet::new(),
            used: 0,
            peak: 0,
            lost: 0,
        };
        for r in map.ram_regions() {
            let (Some(s), Some(end)) = (align_up(r.start, PAGE_SIZE), r.end()) else {
                continue;
            };
            let e = align_down(end, PAGE_SIZE);
            if s < e && !this.free.insert(s, e) {
                this.lost += e - s;
            }
        }
        this.reserve(PhysRange::new(0, PAGE_SIZE));
        for r in reserved {
            this.reserve(r);
        }
        this
    }

    /// Takes `range` (grown to whole pages) out of circulation for good, including any part that is
    /// currently allocated (that part can no longer be freed). Empty ranges are ignored.
    pub fn reserve(&mut self, range: PhysRange) {
        if range.is_empty() {
            return;
        }
        let s = align_down(range.start, PAGE_SIZE);
        let e = range
            .start
            .checked_add(range.len)
            .and_then(|end| align_up(end, PAGE_SIZE))
            .unwrap_or(u64::MAX);
        self.lost += self.free.remove(s, e);
        let taken = self.allocated.overlap_bytes(s, e);
        self.used -= taken.min(self.used);
        // A tracking piece that does not fit stays allocated and can simply never be freed.
        self.allocated.remove(s, e);
    }

    /// Allocates a range satisfying `req`; its length is `req.size` rounded up to a page.
    pub fn alloc(&mut self, req: AllocRequest) -> Result<PhysRange, FrameError> {
        if req.size == 0 {
            return Err(FrameError::ZeroSize);
        }
        if !req.align.is_power_of_two() {
            return Err(FrameError::BadAlign { align: req.align });
        }
        let align = req.align.max(PAGE_SIZE);
        let size =
            align_up(req.size, PAGE_SIZE).ok_or(FrameError::SizeOverflow { size: req.size })?;
        let limit = req.below.unwrap_or(u64::MAX);
        let fit = |&(a, b): &(u64, u64)| -> Option<u64> {
            let lo = a.max(req.above);
            let hi = b.min(limit);
            let start = match req.order {
                Order::TopDown => align_down(hi.checked_sub(size)?, align),
                Order::BottomUp => align_up(lo, align)?,
            };
            (start >= lo && start.checked_add(size)? <= hi).then_some(start)
        };
        let spans = self.free.as_slice();
        let found = match req.order {
            Order::TopDown => spans.iter().rev().find_map(fit),
            Order::BottomUp => spans.iter().find_map(fit),
        };
        let Some(start) = found else {
            return Err(FrameError::OutOfMemory {
                size,
                align,
                below: req.below,
            });
        };
        let end = start + size;
        self.lost += self.free.remove(start, end);
        // Untracked when full: still handed out, but `free` will refuse it.
        self.allocated.insert(start, end);
        self.used += size;
        self.peak = self.peak.max(self.used);
        Ok(PhysRange::new(start, size))
    }

    /// Returns a page-aligned range that is entirely allocated (whole or part of earlier allocations).
    pub fn free(&mut self, range: PhysRange) -> Result<(), FrameError> {
        let err = FrameError::NotAllocated { range };
        let end = range.end().ok_or(err)?;
        let aligned = range.start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE);
        if range.is_empty() || !aligned || !self.allocated.contains(range.start, end) {
            return Err(err);
        }
        self.allocated.remove(range.start, end);
        self.used -= range.len.min(self.used);
        if !self.free.insert(range.start, end) {
            self.lost += range.len;
        }
        Ok(())
    }

    /// Bytes currently handed out.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Highest value `used_bytes` ever reached.
    pub fn peak_bytes(&self) -> u64 {
        self.peak
    }

    /// Bytes still available.
    pub fn free_bytes(&self) -> u64 {
        self.free.total()
    }

    /// Bytes leaked because a span list was full (0 on a healthy boot).
    pub fn lost_bytes(&self) -> u64 {
        self.lost
    }

    /// The free ranges, ascending.
    pub fn free_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.free
            .as_slice()
            .iter()
            .map(|&(a, b)| PhysRange::new(a, b - a))
    }
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use super::*;
    use crate::memmap::{MemKind, MemRegion};
    use crate::testing::Rng;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn map(entries: &[(u64, u64, u32)]) -> MemoryMap {
        let mut m = MemoryMap::new();
        for &(a, s, t) in entries {
            m.add_raw(a, s, t).unwrap();
        }
        m
    }

    #[test]
    fn span_set_insert_remove() {
        let mut s = SpanSet::<3>::new();
        assert!(s.insert(10, 20));
        assert!(s.insert(30, 40));
        assert!(s.insert(20, 30)); // bridges both
        assert_eq!(s.as_slice(), &[(10, 40)]);
        assert_eq!(s.remove(15, 25), 0);
        assert_eq!(s.as_slice(), &[(10, 15), (25, 40)]);
        assert!(s.insert(50, 60));
        assert!(!s.insert(70, 80));
        // Full: splitting (25, 40) at 30..31 loses the smaller piece.
        assert_eq!(s.remove(30, 31), 5);
        assert_eq!(s.as_slice(), &[(10, 15), (31, 40), (50, 60)]);
        assert_eq!(s.remove(0, 100), 0);
        assert_eq!(s.as_slice(), &[]);
    }

    #[test]
    fn respects_map_reservations_and_limits() {
        let m = map(&[
            (0, 0x9F000, 1),
            (0x9F000, 0x61000, 2),
            (0x100_0000, 255 * MIB, 1),
            (0x1_0000_0000, GIB, 1),
            (0x1_2000_0000, MIB, 2),
        ]);
        let kernel = PhysRange::new(0x100_0000, 2 * MIB + 123);
        let mut fa = FrameAllocator::new(&m, [kernel]);
        assert_eq!(fa.free_bytes(), m.total_ram() - 4096 - (2 * MIB + 4096));

        // Top-down by default: the top page of RAM.
        let r = fa.alloc(AllocRequest::pages(1)).unwrap();
        assert_eq!(r, PhysRange::new(0x1_4000_0000 - 4096, 4096));
        let r = fa.alloc(AllocRequest::bytes(1).below(DMA32_LIMIT)).unwrap();
        assert_eq!(r, PhysRange::new(0x10F0_0000 - 4096, 4096));
        let r = fa.alloc(AllocRequest::pages(2).bottom_up()).unwrap();
        assert_eq!(r, PhysRange::new(0x1000, 0x2000));
        let r = fa
            .alloc(AllocRequest::bytes(MIB).align(2 * MIB).bottom_up())
            .unwrap();
        assert_eq!(
            r.start, 0x140_0000,
            "after the kernel's 2 MiB + 123 bytes, 2 MiB aligned"
        );
        let r = fa
            .alloc(AllocRequest::pages(1).above(0x1_2000_0000).bottom_up())
            .unwrap();
        assert_eq!(r.start, 0x1_2010_0000);
        assert_eq!(fa.used_bytes(), 5 * 4096 + MIB);
        assert_eq!(
            fa.alloc(AllocRequest::bytes(MIB).below(0xA0000)),
            Err(FrameError::OutOfMemory {
                size: MIB,
                align: 4096,
                below: Some(0xA0000)
            })
        );
        assert_eq!(fa.alloc(AllocRequest::bytes(0)), Err(FrameError::ZeroSize));
        assert_eq!(
            fa.alloc(AllocRequest::bytes(1).align(3)),
            Err(FrameError::BadAlign { align: 3 })
        );
        assert_eq!(
            fa.alloc(AllocRequest::bytes(u64::MAX)),
            Err(FrameError::SizeOverflow { size: u64::MAX })
        );
        assert!(fa.alloc(AllocRequest::bytes(u64::MAX - 8191)).is_err());
    }

    #[test]
    fn free_and_reserve_after_creation() {
        let m = map(&[(0x10_0000, 16 * MIB, 1)]);
        let mut fa = FrameAllocator::new(&m, []);
        let a = fa.alloc(AllocRequest::pages(4)).unwrap();
        let b = fa.alloc(AllocRequest::pages(4)).unwrap();
        assert_eq!(fa.peak_bytes(), 8 * 4096);
        fa.free(PhysRange::new(a.start, 4096)).unwrap();
        assert_eq!(
            fa.free(PhysRange::new(a.start, 4096)),
            Err(FrameError::NotAllocated {
                range: PhysRange::new(a.start, 4096)
            })
        );
        assert!(fa.free(PhysRange::new(a.start + 1, 4096)).is_err());
        assert!(fa.free(PhysRange::new(0x10_0000, 4096)).is_err());
        assert_eq!(fa.used_bytes(), 7 * 4096);
        // Reserving part of a live allocation removes it for good.
        fa.reserve(PhysRange::new(b.start, 1));
        assert_eq!(fa.used_bytes(), 6 * 4096);
        assert!(fa.free(b).is_err());
        fa.free(PhysRange::new(b.start + 4096, 3 * 4096)).unwrap();
        // Reserve free memory: allocations avoid it.
        fa.reserve(PhysRange::new(0x10_0000, 15 * MIB));
        let mut got = 0;
        while let Ok(r) = fa.alloc(AllocRequest::pages(1)) {
            assert!(r.start >= 0x10_0000 + 15 * MIB && r.start != b.start);
            got += 1;
        }
        assert_eq!(got, 256 - 4);
        assert_eq!(fa.used_bytes(), (3 + got) * 4096);
        assert_eq!(fa.peak_bytes(), fa.used_bytes());
        assert_eq!(fa.free_bytes(), 0);
        assert_eq!(fa.lost_bytes(), 0);
    }

    /// Random maps, reservations and alloc/free sequences: never a reserved, non-RAM, page-0,
    /// misaligned, out-of-limit or double-handed-out byte.
    #[test]
    fn property_never_hands_out_forbidden_memory() {
        let mut rng = Rng::new(42);
        let (mut allocs, mut frees) = (0, 0);
        for round in 0..150 {
            let mut m = MemoryMap::new();
            for _ in 0..(1 + rng.below(12)) {
                let start = rng.below(1 << 20) * 0x400; // 1 KiB granular, up to 1 GiB
                let len = (1 + rng.below(1 << 14)) * 0x400;
                let kind = if rng.below(3) == 0 { 2 } else { 1 };
                let _ = m.add(MemRegion {
                    start,
                    len,
                    kind: MemKind::from_raw(kind),
                });
            }
            let reserved: Vec<PhysRange> = (0..rng.below(10))
                .map(|_| PhysRange::new(rng.below(1 << 30), 1 + rng.below(1 << 24)))
                .collect();
            let mut fa = FrameAllocator::new(&m, reserved.iter().copied());
            let mut late: Vec<PhysRange> = Vec::new();
            let mut live: Vec<PhysRange> = Vec::new();
            for step in 0..300 {
                match rng.below(10) {
                    0..=5 => {
                        let mut req = AllocRequest::bytes(1 + rng.below(1 << 20))
                            .align(1 << (12 + rng.below(10)));
                        if rng.below(2) == 0 {
                            req = req.bottom_up();
                        }
                        if rng.below(3) == 0 {
                            req = req.below(rng.below(1 << 30));
                        }
                        if rng.below(4) == 0 {
                            req = req.above(rng.below(1 << 30));
                        }
                        let Ok(r) = fa.alloc(req) else { continue };
                        let end = r.end().unwrap();
                        let ctx = (round, step, r);
                        assert!(
                            r.len >= req.size && r.len.is_multiple_of(PAGE_SIZE),
                            "{ctx:?}"
                        );
                        assert_eq!(r.start % req.align.max(PAGE_SIZE), 0, "{ctx:?}");
                        assert!(r.start >= PAGE_SIZE && r.start >= req.above, "{ctx:?}");
                        assert!(req.below.is_none_or(|l| end <= l), "{ctx:?}");
                        assert!(m.contains_ram(r), "not RAM: {ctx:?}");
                        assert!(
                            !reserved.iter().chain(&late).any(|x| x.overlaps(&r)),
                            "{ctx:?}"
                        );
                        assert!(!live.iter().any(|x| x.overlaps(&r)), "double: {ctx:?}");
                        live.push(r);
                        allocs += 1;
                    }
                    6..=7 if !live.is_empty() => {
                        let r = live.swap_remove(rng.below(live.len() as u64) as usize);
                        fa.free(r).unwrap();
                        assert!(fa.free(r).is_err());
                        frees += 1;
                    }
                    8 => {
                        let r = PhysRange::new(rng.below(1 << 30), 1 + rng.below(1 << 22));
                        fa.reserve(r);
                        late.push(r);
                        let s = align_down(r.start, PAGE_SIZE);
                        let e = align_up(r.end().unwrap(), PAGE_SIZE).unwrap();
                        let pages = PhysRange::from_bounds(s, e).unwrap();
                        live.retain(|x| !x.overlaps(&pages));
                    }
                    _ => {}
                }
                let live_bytes: u64 = live.iter().map(|r| r.len).sum();
                assert!(fa.used_bytes() >= live_bytes);
                assert!(fa.peak_bytes() >= fa.used_bytes());
                assert!(fa.free_bytes() + live_bytes <= m.total_ram());
            }
            assert_eq!(fa.lost_bytes(), 0);
        }
        assert!(
            allocs > 10_000 && frees > 5_000,
            "{allocs} allocs, {frees} frees"
        );
    }
}
