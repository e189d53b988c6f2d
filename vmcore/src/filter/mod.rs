//! The page filter: makedumpfile's dump levels (`-d`, rkdump's `rkdump.level=`) judged from the
//! crashed kernel's `struct page` array, as a [`PageSelector`] the writers call window by window.
//!
//! Bits ([`Level`]): 1 zero pages (a content test: the writers call [`is_zero_page`] on the bytes
//! they are about to write), 2 non-private page cache, 4 all page cache, 8 user data (anonymous
//! pages, hugetlbfs pages), 16 free pages (buddy blocks). Whenever any of 2/4/8/16 is set, hardware
//! poisoned and logically offline pages are left out too, as makedumpfile does.
//!
//! Rules, taken from makedumpfile 1.7.x `__exclude_unnecessary_pages` (makedumpfile.c) and the
//! kernel's page-flag definitions, in makedumpfile's order (the first rule that matches wins):
//! - a compound *tail* (`compound_head & 1`) is judged with its head: kept unless the head's rule
//!   excluded the whole compound page (`1 << order` frames, order read from the first tail);
//! - free (16): `_mapcount == PAGE_BUDDY_MAPCOUNT_VALUE` and not slab; the block's order is
//!   `page.private` and must be below `LENGTH(zone.free_area)`; the whole block goes. Unaccepted
//!   pages (`PAGE_UNACCEPTED_MAPCOUNT_VALUE`, 6.12+) likewise, a `MAX_ORDER` block;
//! - cache (2): on the LRU, or swap cache (`PG_swapcache` with `PG_swapbacked`), not `PG_private`,
//!   not anonymous;
//! - cache (4): the same with `PG_private` allowed;
//! - user (8): anonymous (`mapping & PAGE_MAPPING_ANON` and not slab), or a hugetlbfs head
//!   (`compound_dtor == HUGETLB_PAGE_DTOR` 4.16..6.5, `PG_hugetlb` in the first tail 6.6..6.8,
//!   `_mapcount == PAGE_HUGETLB_MAPCOUNT_VALUE` 6.9+), the whole compound page;
//! - always (with any of 2/4/8/16): `PG_hwpoison`, and `_mapcount == PAGE_OFFLINE_MAPCOUNT_VALUE`.
//!
//! Slab is `PG_slab` (until 6.9) or `_mapcount == PAGE_SLAB_MAPCOUNT_VALUE` (6.10+). The compound
//! order is `compound_order` (a byte, 4.16..6.5) or the low byte of the first tail's flags (6.6+).
//! Checked against Debian's 6.1 VMCOREINFO (testdata/). Not handled: kernels before 4.16 (16-bit
//! `compound_order`, `PG_buddy`), the free-list walk makedumpfile falls back to without
//! `PAGE_BUDDY_MAPCOUNT_VALUE`, FLATMEM/DISCONTIGMEM kernels (only SPARSEMEM, with or without
//! EXTREME), Xen, makedumpfile's eppic extensions and `--exclude-unused-vm`.
//!
//! Page structs are found through `mem_section` (a root pointer, then the section's
//! `section_mem_map`, decoded as `map + pfn * SIZE(page)`) and read through the crashed kernel's page
//! tables ([`crate::kernel::OldVirt`]). Memory is bounded: besides the caller's window bitmap the
//! filter holds one chunk of [`CHUNK_PAGES`] page structs ([`PageFilter::buffer_bytes`], 32 KiB for a
//! 64-byte `struct page`, at most 128 KiB), whatever the machine's RAM.

use alloc::vec::Vec;
use core::fmt;

pub mod elf;

use bitflags::bitflags;

use crate::kernel::info::{InfoError, KernelInfo, PageFlags, PageLayout, SparseMem};
use crate::kernel::virt::{OldVirt, VirtError, VirtMemory};
use crate::kernel::vtop::Translator;
use crate::mem::OldMemory;
use crate::pages::{PageSelector, PfnBitmap, SelectError, SelectStats};

bitflags! {
    /// makedumpfile's dump level bits (`-d`), `rkdump.level=<0..31>`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
    pub struct Level: u8 {
        /// 1: pages full of zeros (judged by the writer from the content).
        const ZERO = 1;
        /// 2: page cache pages without private data.
        const CACHE = 2;
        /// 4: all page cache pages.
        const CACHE_PRIVATE = 4;
        /// 8: user process data (anonymous and hugetlbfs pages).
        const USER = 8;
        /// 16: free pages.
        const FREE = 16;
    }
}

impl Level {
    /// The bits judged from page structs (everything but [`Level::ZERO`]).
    pub const PAGE_FLAGS: Level = Level::CACHE
        .union(Level::CACHE_PRIVATE)
        .union(Level::USER)
        .union(Level::FREE);

    /// Whether the page-struct filter has anything to do.
    pub fn needs_page_structs(self) -> bool {
        self.intersects(Self::PAGE_FLAGS)
    }
}

/// Whether a page's bytes are all zero (dump level bit 1).
pub fn is_zero_page(page: &[u8]) -> bool {
    let mut words = page.chunks_exact(8);
    words
        .by_ref()
        .all(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

/// Page structs read per chunk.
pub const CHUNK_PAGES: u64 = 512;

/// Low bits of `section_mem_map` that carry flags, not address (`SECTION_MAP_LAST_BIT` is 5 or 6
/// in 4.13+ kernels; the encoded pointer is at least 64-byte aligned).
const SECTION_FLAG_BITS: u64 = 6;
const SECTION_MARKED_PRESENT: u64 = 1;
const PAGE_MAPPING_ANON: u64 = 1;
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// Why a filter could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// A VMCOREINFO key the requested level needs is missing or wrong.
    Info(InfoError),
    /// The level asks for nothing the page structs decide (0 or 1).
    NothingToDo,
    /// The chunk buffer could not be allocated.
    NoMemory,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Info(e) => write!(f, "{e}"),
            FilterError::NothingToDo => f.write_str("level has no page-flag bits"),
            FilterError::NoMemory => f.write_str("no memory for the page-struct buffer"),
        }
    }
}

impl From<InfoError> for FilterError {
    fn from(e: InfoError) -> Self {
        FilterError::Info(e)
    }
}

/// Frames excluded so far, by reason (the console line and the bench read these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Frames the filter was offered (kept bits on entry, summed over windows).
    pub examined: u64,
    /// Non-private page cache (bit 2, or bit 4 when not private).
    pub cache: u64,
    /// Private page cache (bit 4).
    pub cache_private: u64,
    /// User data (bit 8).
    pub user: u64,
    /// Free pages (bit 16).
    pub free: u64,
    /// Hardware-poisoned pages.
    pub hwpoison: u64,
    /// Logically offline pages.
    pub offline: u64,
    /// Sections with no page structs (holes, hot-removed memory): their frames were kept.
    pub sections_without_map: u64,
}

impl FilterStats {
    /// All frames excluded.
    pub fn excluded(&self) -> u64 {
        self.cache + self.cache_private + self.user + self.free + self.hwpoison + self.offline
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Cache,
    CachePrivate,
    User,
    Free,
    HwPoison,
    Offline,
}

/// A multi-frame exclusion that ran past the end of a window, finished in the next one.
#[derive(Debug, Clone, Copy)]
struct Pending {
    next: u64,
    end: u64,
    reason: Reason,
}

/// What the filter reads of one `struct page`.
#[derive(Debug, Clone, Copy, Default)]
struct PageStruct {
    flags: u64,
    mapping: u64,
    mapcount: Option<i32>,
    private: u64,
    compound_head: u64,
}

/// The dump-level page filter over one crashed kernel (see the module docs for the rules).
pub struct PageFilter {
    level: Level,
    translator: Translator,
    sparse: SparseMem,
    layout: PageLayout,
    flags: PageFlags,
    chunk: Vec<u8>,
    /// Frame of the chunk's first page struct, and how many are loaded.
    chunk_pfn: u64,
    chunk_len: u64,
    section_cache: Option<(u64, Option<u64>)>,
    pending: Option<Pending>,
    stats: FilterStats,
}

impl PageFilter {
    /// A filter for `level` over the kernel `info` describes; fails (naming the key) when the
    /// VMCOREINFO lacks something the level needs.
    pub fn new(info: &KernelInfo, level: Level) -> Result<Self, FilterError> {
        if !level.needs_page_structs() {
            return Err(FilterError::NothingToDo);
        }
        let sparse = info.sparsemem()?;
        let layout = info.page_layout()?;
        let flags = info.page_flags()?;
        if level.contains(Level::FREE) {
            // The buddy test needs the page type and the order.
            if flags.buddy_mapcount.is_none() {
                return Err(InfoError::Missing {
                    key: "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)".into(),
                }
                .into());
            }
            if layout.mapcount.is_none() {
                return Err(InfoError::Missing {
                    key: "OFFSET(page._mapcount)".into(),
                }
                .into());
            }
            if layout.private.is_none() {
                return Err(InfoError::Missing {
                    key: "OFFSET(page.private)".into(),
                }
                .into());
            }
        }
        if layout.compound_head.is_none() {
            return Err(InfoError::Missing {
                key: "OFFSET(page.compound_head)".into(),
            }
            .into());
        }
        let bytes = (CHUNK_PAGES * layout.size) as usize;
        let mut chunk = Vec::new();
        chunk
            .try_reserve_exact(bytes)
            .map_err(|_| FilterError::NoMemory)?;
        chunk.resize(bytes, 0);
        Ok(PageFilter {
            level,
            translator: Translator::new(info),
            sparse,
            layout,
            flags,
            chunk,
            chunk_pfn: 0,
            chunk_len: 0,
            section_cache: None,
            pending: None,
            stats: FilterStats::default(),
        })
    }

    /// Replaces the translator (tests, or a kernel whose tables the caller found another way).
    pub fn with_translator(mut self, translator: Translator) -> Self {
        self.translator = translator;
        self
    }

    /// The level being applied.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Bytes the filter itself holds (the page-struct chunk), the whole of its memory use.
    pub fn buffer_bytes(&self) -> usize {
        self.chunk.capacity()
    }

    /// Totals over every window so far.
    pub fn stats(&self) -> FilterStats {
        self.stats
    }

    fn count(&mut self, reason: Reason, n: u64) {
        let s = &mut self.stats;
        match reason {
            Reason::Cache => s.cache += n,
            Reason::CachePrivate => s.cache_private += n,
            Reason::User => s.user += n,
            Reason::Free => s.free += n,
            Reason::HwPoison => s.hwpoison += n,
            Reason::Offline => s.offline += n,
        }
    }

    /// Clears `pfn .. end` within the window, counting the frames that were kept.
    fn exclude(&mut self, keep: &mut PfnBitmap, pfn: u64, end: u64, reason: Reason) -> u64 {
        let hi = end.min(keep.end_pfn());
        let mut n = 0;
        for p in pfn.max(keep.start_pfn())..hi {
            if keep.get(p) {
                n += 1;
            }
        }
        keep.set_range(pfn, hi.saturating_sub(pfn), false);
        self.count(reason, n);
        if end > keep.end_pfn() {
            self.pending = Some(Pending {
                next: keep.end_pfn(),
                end,
                reason,
            });
        }
        n
    }

    /// The decoded `mem_map` base of `section` (page struct of frame `pfn` is at
    /// `base + pfn * SIZE(page)`), `None` for a section without page structs.
    fn section_map(
        &mut self,
        virt: &mut OldVirt<'_>,
        section: u64,
    ) -> Result<Option<u64>, SelectError> {
        if let Some((nr, map)) = self.section_cache
            && nr == section
        {
            return Ok(map);
        }
        let map = self.lookup_section(virt, section)?;
        self.section_cache = Some((section, map));
        if map.is_none() {
            self.stats.sections_without_map += 1;
        }
        Ok(map)
    }

    fn lookup_section(
        &self,
        virt: &mut OldVirt<'_>,
        section: u64,
    ) -> Result<Option<u64>, SelectError> {
        let sm = &self.sparse;
        if section >= sm.nr_sections() {
            return Ok(None);
        }
        let root_index = section / sm.sections_per_root;
        if root_index >= sm.roots {
            return Ok(None);
        }
        let section_addr = if sm.extreme {
            let root = read_u64(virt, sm.mem_section + root_index * 8)?;
            if root == 0 {
                return Ok(None);
            }
            if root < KERNEL_HALF {
                return Err(SelectError::Inconsistent("mem_section root pointer"));
            }
            root.checked_add((section % sm.sections_per_root) * sm.section_size)
                .ok_or(SelectError::Inconsistent("mem_section root pointer"))?
        } else {
            sm.mem_section + section * sm.section_size
        };
        let coded = read_u64(virt, section_addr + sm.section_mem_map)?;
        if coded & SECTION_MARKED_PRESENT == 0 {
            return Ok(None);
        }
        let base = coded & !((1 << SECTION_FLAG_BITS) - 1);
        // The page structs of this section must be kernel addresses.
        let first = section << sm.pfn_section_shift();
        let last = first + (1 << sm.pfn_section_shift()) - 1;
        let ok = |pfn: u64| {
            pfn.checked_mul(self.layout.size)
                .and_then(|o| base.checked_add(o))
                .is_some_and(|va| va >= KERNEL_HALF)
        };
        if base == 0 || !ok(first) || !ok(last) {
            return Err(SelectError::Inconsistent("section_mem_map"));
        }
        Ok(Some(base))
    }

    /// Makes sure the chunk holds the page struct of `pfn`; chunks are aligned to [`CHUNK_PAGES`]
    /// and never cross a section.
    fn load(&mut self, virt: &mut OldVirt<'_>, base: u64, pfn: u64) -> Result<(), SelectError> {
        if pfn >= self.chunk_pfn && pfn < self.chunk_pfn + self.chunk_len {
            return Ok(());
        }
        let start = pfn & !(CHUNK_PAGES - 1);
        let size = self.layout.size;
        let va = base + start * size;
        virt.read_virt(va, &mut self.chunk).map_err(virt_error)?;
        self.chunk_pfn = start;
        self.chunk_len = CHUNK_PAGES;
        Ok(())
    }

    fn page_at(&self, pfn: u64) -> PageStruct {
        let l = &self.layout;
        let off = ((pfn - self.chunk_pfn) * l.size) as usize;
        let s = &self.chunk[off..off + l.size as usize];
        PageStruct {
            flags: u64_at(s, l.flags),
            mapping: u64_at(s, l.mapping),
            mapcount: l.mapcount.map(|o| u32_at(s, o) as i32),
            private: l.private.map_or(0, |o| u64_at(s, o)),
            compound_head: l.compound_head.map_or(0, |o| u64_at(s, o)),
        }
    }

    fn is_slab(&self, p: &PageStruct) -> bool {
        if let (Some(v), Some(m)) = (self.flags.slab_mapcount, p.mapcount)
            && v == m
        {
            return true;
        }
        self.flags.slab.is_some_and(|b| p.flags & (1 << b) != 0)
    }

    fn is_anon(&self, p: &PageStruct) -> bool {
        p.mapping & PAGE_MAPPING_ANON != 0 && !self.is_slab(p)
    }

    fn is_cache(&self, p: &PageStruct) -> bool {
        let f = &self.flags;
        if p.flags & (1 << f.lru) != 0 {
            return true;
        }
        let swapbacked = f.swapbacked.is_none_or(|b| p.flags & (1 << b) != 0);
        swapbacked && p.flags & (1 << f.swapcache) != 0
    }

    fn mapcount_is(&self, p: &PageStruct, v: Option<i32>) -> bool {
        matches!((p.mapcount, v), (Some(m), Some(v)) if m == v)
    }

    /// Order and hugetlb-ness of a compound head at `pfn`, read from its first tail.
    fn compound(
        &mut self,
        virt: &mut OldVirt<'_>,
        base: u64,
        pfn: u64,
        head: &PageStruct,
    ) -> Result<(u32, bool), SelectError> {
        if head.flags & self.flags.head_mask == 0 {
            return Ok((0, false));
        }
        let l = self.layout;
        let mut tail = [0u8; 256];
        let tail = &mut tail[..l.size as usize];
        let t = pfn + 1;
        if t < self.chunk_pfn + self.chunk_len {
            let off = ((t - self.chunk_pfn) * l.size) as usize;
            tail.copy_from_slice(&self.chunk[off..off + l.size as usize]);
        } else {
            virt.read_virt(base + t * l.size, tail)
                .map_err(virt_error)?;
        }
        let f = &self.flags;
        let (order, hugetlb) = if f.hugetlb_mapcount.is_some() {
            (
                (u64_at(tail, l.flags) & 0xff) as u32,
                self.mapcount_is(head, f.hugetlb_mapcount),
            )
        } else if let Some(bit) = f.hugetlb {
            let f1 = u64_at(tail, l.flags);
            ((f1 & 0xff) as u32, f1 & (1 << bit) != 0)
        } else {
            let order = l.compound_order.map_or(0, |o| u32::from(tail[o as usize]));
            let dtor = l.compound_dtor.map(|o| tail[o as usize]);
            (order, dtor.is_some() && dtor == f.hugetlb_dtor)
        };
        // A nonsensical order (garbage, or a head not aligned to it) counts as a single page.
        let order = if order >= 64 || pfn & ((1u64 << order) - 1) != 0 {
            0
        } else {
            order
        };
        Ok((order, hugetlb))
    }

    /// Judges one page; returns the frames to exclude from `pfn` and why.
    fn judge(
        &mut self,
        virt: &mut OldVirt<'_>,
        base: u64,
        pfn: u64,
    ) -> Result<Option<(u64, Reason)>, SelectError> {
        let p = self.page_at(pfn);
        if p.compound_head & 1 != 0 {
            return Ok(None);
        }
        let lv = self.level;
        let f = self.flags;
        if lv.contains(Level::FREE) && !self.is_slab(&p) && self.mapcount_is(&p, f.buddy_mapcount) {
            let max = u64::from(f.free_area_len.unwrap_or(64));
            if p.private >= max || p.private >= 64 {
                // makedumpfile warns and keeps the page.
                return Ok(None);
            }
            return Ok(Some((1u64 << p.private, Reason::Free)));
        }
        if lv.contains(Level::FREE) && self.mapcount_is(&p, f.unaccepted_mapcount) {
            let order = f.free_area_len.map_or(0, |n| n.saturating_sub(1));
            return Ok(Some((1u64 << order.min(63), Reason::Free)));
        }
        let private = p.flags & (1 << f.private) != 0;
        if lv.contains(Level::CACHE) && self.is_cache(&p) && !private && !self.is_anon(&p) {
            return Ok(Some((1, Reason::Cache)));
        }
        if lv.contains(Level::CACHE_PRIVATE) && self.is_cache(&p) && !self.is_anon(&p) {
            let r = if private {
                Reason::CachePrivate
            } else {
                Reason::Cache
            };
            return Ok(Some((1, r)));
        }
        let (order, hugetlb) = self.compound(virt, base, pfn, &p)?;
        if lv.contains(Level::USER) && (self.is_anon(&p) || hugetlb) {
            return Ok(Some((1u64 << order, Reason::User)));
        }
        if f.hwpoison.is_some_and(|b| p.flags & (1 << b) != 0) {
            return Ok(Some((1u64 << order, Reason::HwPoison)));
        }
        if !self.is_slab(&p) && self.mapcount_is(&p, f.offline_mapcount) {
            return Ok(Some((1u64 << order, Reason::Offline)));
        }
        Ok(None)
    }
}

fn virt_error(e: VirtError) -> SelectError {
    match e {
        VirtError::OldMem { source, .. } => SelectError::OldMem(source),
        VirtError::NotMapped { .. } => SelectError::Inconsistent("page struct not mapped"),
        VirtError::BadEntry { .. } => SelectError::Inconsistent("bad page-table entry"),
        VirtError::TooLong { .. } => SelectError::Inconsistent("page struct read too long"),
    }
}

fn read_u64(virt: &mut OldVirt<'_>, va: u64) -> Result<u64, SelectError> {
    let mut b = [0u8; 8];
    virt.read_virt(va, &mut b).map_err(virt_error)?;
    Ok(u64::from_le_bytes(b))
}

fn u64_at(s: &[u8], off: u64) -> u64 {
    let o = off as usize;
    u64::from_le_bytes(s[o..o + 8].try_into().unwrap_or([0; 8]))
}

fn u32_at(s: &[u8], off: u64) -> u32 {
    let o = off as usize;
    u32::from_le_bytes(s[o..o + 4].try_into().unwrap_or([0; 4]))
}

impl PageSelector for PageFilter {
    fn select(
        &mut self,
        mem: &mut dyn OldMemory,
        keep: &mut PfnBitmap,
    ) -> Result<SelectStats, SelectError> {
        let examined = keep.count();
        let before = self.stats.excluded();
        self.stats.examined += examined;
        // The chunk and section caches describe old memory, which does not change; the chunk's
        // frames are only trusted within one select call for simplicity.
        self.chunk_len = 0;
        let translator = self.translator;
        let mut virt = OldVirt::new(mem, &translator);
        let (start, end) = (keep.start_pfn(), keep.end_pfn());
        let mut pfn = start;
        if let Some(p) = self.pending.take()
            && p.next == start
        {
            self.exclude(keep, start, p.end, p.reason);
            pfn = p.end.min(end);
        }
        let shift = self.sparse.pfn_section_shift();
        while pfn < end {
            let section = pfn >> shift;
            let section_end = ((section + 1) << shift).min(end);
            let Some(base) = self.section_map(&mut virt, section)? else {
                pfn = section_end;
                continue;
            };
            while pfn < section_end {
                // Skip frames the header does not offer, a word at a time where possible.
                if !keep.get(pfn) {
                    pfn += 1;
                    continue;
                }
                self.load(&mut virt, base, pfn)?;
                match self.judge(&mut virt, base, pfn)? {
                    Some((n, reason)) => {
                        let stop = pfn.saturating_add(n);
                        self.exclude(keep, pfn, stop, reason);
                        pfn = stop;
                    }
                    None => pfn += 1,
                }
            }
            pfn = pfn.max(section_end);
        }
        Ok(SelectStats {
            examined,
            excluded: self.stats.excluded() - before,
        })
    }
}

/// Why a filtered dump fell back to level 1 (every page kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The notes carry no VMCOREINFO.
    NoVmcoreinfo,
    /// VMCOREINFO lacks or garbles something the level needs.
    Setup(FilterError),
    /// The page structs or tables could not be read or contradict themselves.
    Plan(elf::PlanError),
    /// The filtered layout could not be built.
    Layout(crate::layout::Error),
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::NoVmcoreinfo => f.write_str("no VMCOREINFO note"),
            Fallback::Setup(e) => write!(f, "{e}"),
            Fallback::Plan(e) => write!(f, "{e}"),
            Fallback::Layout(e) => write!(f, "{e}"),
        }
    }
}

/// The result of [`apply_elf`]: the layout to write and what happened.
#[derive(Debug, Clone)]
pub struct ElfFiltered {
    /// The layout to write (the unfiltered one on fallback).
    pub layout: crate::layout::VmcoreLayout,
    /// The level in effect (`ZERO` after a fallback).
    pub level: Level,
    /// Set when the requested level could not be applied.
    pub fallback: Option<Fallback>,
    /// Frames examined and excluded, by reason.
    pub stats: FilterStats,
    /// Pieces written, the split threshold, and excluded frames still written (short runs).
    pub pieces: usize,
    /// See [`elf::ElfPlan::split_threshold`].
    pub split_threshold: u64,
    /// See [`elf::ElfPlan::written_excluded_pages`].
    pub written_excluded_pages: u64,
}

/// Plans a filtered ELF dump of `plan` at `level`: with no page-flag bits (levels 0 and 1) the
/// layout is the unfiltered `/proc/vmcore` one, byte for byte. Bit 1 (zero pages) is not applied
/// to ELF output: it would need a second read of every kept page before the header can be
/// written, doubling the dump's reads; the kdump-compressed writer applies it while writing.
/// Anything missing or inconsistent falls back to level 1 (every page kept) with the reason.
pub fn apply_elf(
    plan: &crate::DumpPlan,
    mem: &mut dyn OldMemory,
    level: Level,
    progress: &mut dyn FnMut(u64, u64),
) -> ElfFiltered {
    apply_elf_split(plan, mem, level, elf::SPLIT_RUN, progress)
}

/// [`apply_elf`] with the excluded-run length that splits a PT_LOAD chosen
/// ([`elf::PFN_EXCLUDED`] gives makedumpfile's ELF layout).
pub fn apply_elf_split(
    plan: &crate::DumpPlan,
    mem: &mut dyn OldMemory,
    level: Level,
    split_run: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> ElfFiltered {
    let unfiltered = |fallback: Option<Fallback>, level: Level| ElfFiltered {
        layout: plan.layout.clone(),
        level,
        fallback,
        stats: FilterStats::default(),
        pieces: plan.layout.chunks.len(),
        split_threshold: 0,
        written_excluded_pages: 0,
    };
    if !level.needs_page_structs() {
        return unfiltered(None, level);
    }
    let fail = |f: Fallback| unfiltered(Some(f), Level::ZERO);
    let Some(vi) = plan.notes.vmcoreinfo() else {
        return fail(Fallback::NoVmcoreinfo);
    };
    let info = match KernelInfo::parse(&vi) {
        Ok(i) => i,
        Err(e) => return fail(Fallback::Setup(FilterError::Info(e))),
    };
    let mut filter = match PageFilter::new(&info, level) {
        Ok(f) => f,
        Err(e) => return fail(Fallback::Setup(e)),
    };
    let elf_plan = match elf::plan(&plan.header, mem, &mut filter, split_run, progress) {
        Ok(p) => p,
        Err(e) => return fail(Fallback::Plan(e)),
    };
    match crate::layout::VmcoreLayout::build_selected(&plan.header, &plan.notes, &elf_plan) {
        Ok(layout) => ElfFiltered {
            layout,
            level,
            fallback: None,
            stats: filter.stats(),
            pieces: elf_plan.pieces.len(),
            split_threshold: elf_plan.split_threshold,
            written_excluded_pages: elf_plan.written_excluded_pages,
        },
        Err(e) => fail(Fallback::Layout(e)),
    }
}

#[cfg(test)]
mod tests;
