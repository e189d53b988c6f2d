//! Typed, validated VMCOREINFO: the crashed kernel's own description of itself (kernel/vmcore_info.c,
//! `crash_core.c` before 6.9, and `arch_crash_save_vmcoreinfo` in arch/x86/kernel/crash.c), parsed once
//! into the numbers the page filter, the page-table walk and the crash report need.
//!
//! Value formats, as the kernel prints them: `SYMBOL(name)=%lx` and `KERNELOFFSET=%lx` (hex, no
//! prefix), `SIZE(type)=%lu`, `OFFSET(type.field)=%lu`, `LENGTH(name)=%lu` (decimal), `NUMBER(name)=%ld`
//! (signed decimal), `PAGESIZE=%ld`, `CRASHTIME=%lld`. Every value comes from the crashed kernel and is
//! checked for range before use; a missing or malformed key is an [`InfoError`] that names it.
//!
//! [`KernelInfo::parse`] needs only what every consumer needs (release, page size, `phys_base`,
//! `init_top_pgt`, paging depth); the filter's groups ([`SparseMem`], [`PageLayout`], [`PageFlags`])
//! are parsed on demand so a kernel lacking them still gets a page-table walk and a crash report.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::notes::VmcoreInfo;

/// Why a VMCOREINFO key could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoError {
    /// The key is absent.
    Missing {
        /// The full key, e.g. `"OFFSET(page.flags)"`.
        key: String,
    },
    /// The key is present but its value does not parse.
    Malformed {
        /// The full key.
        key: String,
        /// The value as found (cut to 64 bytes).
        value: String,
    },
    /// The value parses but is outside what this kernel family can have.
    OutOfRange {
        /// The full key.
        key: String,
        /// The parsed value.
        value: i128,
    },
}

impl InfoError {
    /// The key the error is about.
    pub fn key(&self) -> &str {
        match self {
            InfoError::Missing { key }
            | InfoError::Malformed { key, .. }
            | InfoError::OutOfRange { key, .. } => key,
        }
    }
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoError::Missing { key } => write!(f, "VMCOREINFO has no {key}"),
            InfoError::Malformed { key, value } => {
                write!(f, "VMCOREINFO {key}={value:?} does not parse")
            }
            InfoError::OutOfRange { key, value } => {
                write!(f, "VMCOREINFO {key}={value} is out of range")
            }
        }
    }
}

/// Largest VMCOREINFO text kept (the kernel's buffer is one page; 6.x kernels use ~3 KiB).
pub const MAX_VMCOREINFO: usize = 64 << 10;

/// The crashed kernel's VMCOREINFO, with the keys every consumer needs already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    text: Vec<u8>,
    /// `OSRELEASE`, e.g. `6.1.0-57-cloud-amd64`.
    pub osrelease: String,
    /// `PAGESIZE`; only 4096 is accepted (x86_64).
    pub page_size: u64,
    /// `CRASHTIME` (seconds since the epoch), absent on kernels that never set it.
    pub crash_time: Option<i64>,
    /// `KERNELOFFSET`: the KASLR slide of the kernel image (0 when absent, as without KASLR).
    pub kernel_offset: u64,
    /// `NUMBER(phys_base)`: physical address minus link address of the kernel image.
    pub phys_base: u64,
    /// `SYMBOL(init_top_pgt)`: virtual address of the kernel's top-level page table.
    pub init_top_pgt: u64,
    /// `NUMBER(pgtable_l5_enabled)`: 5-level paging (false when absent: kernels before 4.17 had no
    /// 5-level paging and did not print the key).
    pub pgtable_l5: bool,
}

impl KernelInfo {
    /// Parses and checks the keys every consumer needs; the text is kept for [`Self::symbol`] and
    /// friends.
    pub fn parse(vmcoreinfo: &VmcoreInfo<'_>) -> Result<Self, InfoError> {
        let raw = vmcoreinfo.text();
        let text = raw[..raw.len().min(MAX_VMCOREINFO)].to_vec();
        let mut info = KernelInfo {
            text,
            osrelease: String::new(),
            page_size: 0,
            crash_time: None,
            kernel_offset: 0,
            phys_base: 0,
            init_top_pgt: 0,
            pgtable_l5: false,
        };
        info.osrelease = info.required("OSRELEASE")?.trim().to_string();
        if info.osrelease.is_empty() {
            return Err(malformed("OSRELEASE", ""));
        }
        info.page_size = info.decimal_u64("PAGESIZE")?;
        if info.page_size != 4096 {
            return Err(out_of_range("PAGESIZE", info.page_size.into()));
        }
        info.crash_time = match info.get("CRASHTIME") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| malformed("CRASHTIME", v))?,
            ),
        };
        info.kernel_offset = match info.get("KERNELOFFSET") {
            None => 0,
            Some(v) => parse_hex(v).ok_or_else(|| malformed("KERNELOFFSET", v))?,
        };
        // phys_base is signed in the kernel (`unsigned long` holding a two's complement delta on
        // some configurations); the walk adds it modulo 2^64.
        info.phys_base = info.number("phys_base")? as u64;
        info.init_top_pgt = info.symbol("init_top_pgt")?;
        if info.init_top_pgt < super::vtop::START_KERNEL_MAP
            || !info.init_top_pgt.is_multiple_of(4096)
        {
            return Err(out_of_range(
                "SYMBOL(init_top_pgt)",
                info.init_top_pgt.into(),
            ));
        }
        info.pgtable_l5 = match info.get("NUMBER(pgtable_l5_enabled)") {
            None => false,
            Some(v) => match v.trim() {
                "0" => false,
                "1" => true,
                _ => return Err(malformed("NUMBER(pgtable_l5_enabled)", v)),
            },
        };
        Ok(info)
    }

    /// The raw VMCOREINFO text (at most [`MAX_VMCOREINFO`] bytes).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The value of any key (exact match; the last occurrence wins, as in makedumpfile).
    pub fn get(&self, key: &str) -> Option<&str> {
        VmcoreInfo::new(&self.text).get(key)
    }

    fn required(&self, key: &str) -> Result<&str, InfoError> {
        self.get(key).ok_or_else(|| missing(key))
    }

    fn decimal_u64(&self, key: &str) -> Result<u64, InfoError> {
        let v = self.required(key)?;
        v.trim().parse::<u64>().map_err(|_| malformed(key, v))
    }

    /// `SYMBOL(name)`: a kernel virtual address (hex in the text).
    pub fn symbol(&self, name: &str) -> Result<u64, InfoError> {
        let key = keyed("SYMBOL", name);
        let v = self.required(&key)?;
        parse_hex(v).ok_or_else(|| malformed(&key, v))
    }

    /// `OFFSET(type.field)`, e.g. `offset("page", "flags")`.
    pub fn offset(&self, ty: &str, field: &str) -> Result<u64, InfoError> {
        let mut name = String::with_capacity(ty.len() + field.len() + 1);
        name.push_str(ty);
        name.push('.');
        name.push_str(field);
        self.decimal_u64(&keyed("OFFSET", &name))
    }

    /// `SIZE(type)`.
    pub fn size(&self, ty: &str) -> Result<u64, InfoError> {
        self.decimal_u64(&keyed("SIZE", ty))
    }

    /// `LENGTH(name)` (array lengths; `name` may be `type.field` as in `zone.free_area`).
    pub fn length(&self, name: &str) -> Result<u64, InfoError> {
        self.decimal_u64(&keyed("LENGTH", name))
    }

    /// `NUMBER(name)` (signed).
    pub fn number(&self, name: &str) -> Result<i64, InfoError> {
        let key = keyed("NUMBER", name);
        let v = self.required(&key)?;
        v.trim().parse::<i64>().map_err(|_| malformed(&key, v))
    }

    /// Like [`Self::number`], `Ok(None)` when absent (a key some kernel versions lack), an error
    /// when present but malformed.
    pub fn number_opt(&self, name: &str) -> Result<Option<i64>, InfoError> {
        match self.number(name) {
            Ok(v) => Ok(Some(v)),
            Err(InfoError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`Self::offset`], `Ok(None)` when absent.
    pub fn offset_opt(&self, ty: &str, field: &str) -> Result<Option<u64>, InfoError> {
        match self.offset(ty, field) {
            Ok(v) => Ok(Some(v)),
            Err(InfoError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The sparse memory model's description (`mem_section` and friends).
    pub fn sparsemem(&self) -> Result<SparseMem, InfoError> {
        let mem_section = self.symbol("mem_section")?;
        if mem_section < KERNEL_HALF {
            return Err(out_of_range("SYMBOL(mem_section)", mem_section.into()));
        }
        let roots = self.length("mem_section")?;
        let section_size = self.size("mem_section")?;
        let section_mem_map = self.offset("mem_section", "section_mem_map")?;
        let section_size_bits = self.number("SECTION_SIZE_BITS")?;
        let max_physmem_bits = self.number("MAX_PHYSMEM_BITS")?;
        // x86_64: 46 (4-level) or 52 (5-level); sections of 128 MiB (27); other architectures use
        // 16 MiB..2 GiB. Sections below 2 MiB (512 pages, the filter's chunk) are refused. Anything else is not a kernel this parser was written for.
        if !(36..=52).contains(&max_physmem_bits) {
            return Err(out_of_range(
                "NUMBER(MAX_PHYSMEM_BITS)",
                max_physmem_bits.into(),
            ));
        }
        if !(21..=max_physmem_bits).contains(&section_size_bits) {
            return Err(out_of_range(
                "NUMBER(SECTION_SIZE_BITS)",
                section_size_bits.into(),
            ));
        }
        if !(8..=64).contains(&section_size) || !section_size.is_multiple_of(8) {
            return Err(out_of_range("SIZE(mem_section)", section_size.into()));
        }
        if section_mem_map.saturating_add(8) > section_size {
            return Err(out_of_range(
                "OFFSET(mem_section.section_mem_map)",
                section_mem_map.into(),
            ));
        }
        let sections = 1u64 << (max_physmem_bits - section_size_bits);
        let per_root = self.page_size / section_size;
        // SPARSEMEM_EXTREME: LENGTH is the number of root pointers (NR_SECTION_ROOTS); plain
        // SPARSEMEM: the sections themselves (one per root). makedumpfile tells them apart the same way.
        let extreme = roots == sections.div_ceil(per_root);
        if !extreme && roots != sections {
            return Err(out_of_range("LENGTH(mem_section)", roots.into()));
        }
        Ok(SparseMem {
            mem_section,
            roots,
            sections_per_root: if extreme { per_root } else { 1 },
            extreme,
            section_size,
            section_mem_map,
            section_size_bits: section_size_bits as u32,
            max_physmem_bits: max_physmem_bits as u32,
        })
    }

    /// Where the fields of `struct page` the filter reads are.
    pub fn page_layout(&self) -> Result<PageLayout, InfoError> {
        let size = self.size("page")?;
        if !(32..=256).contains(&size) || !size.is_multiple_of(8) {
            return Err(out_of_range("SIZE(page)", size.into()));
        }
        let field = |name: &str, width: u64| -> Result<u64, InfoError> {
            let off = self.offset("page", name)?;
            check_field(off, width, size, name)
        };
        let opt_field = |name: &str, width: u64| -> Result<Option<u64>, InfoError> {
            match self.offset_opt("page", name)? {
                Some(off) => check_field(off, width, size, name).map(Some),
                None => Ok(None),
            }
        };
        Ok(PageLayout {
            size,
            flags: field("flags", 8)?,
            refcount: field("_refcount", 4)?,
            mapping: field("mapping", 8)?,
            lru: opt_field("lru", 16)?,
            mapcount: opt_field("_mapcount", 4)?,
            private: opt_field("private", 8)?,
            compound_head: opt_field("compound_head", 8)?,
            compound_order: opt_field("compound_order", 1)?,
            compound_dtor: opt_field("compound_dtor", 1)?,
        })
    }

    /// The page-flag bit numbers and `page_type` values the filter judges pages by.
    pub fn page_flags(&self) -> Result<PageFlags, InfoError> {
        let bit = |name: &str| -> Result<u32, InfoError> {
            let v = self.number(name)?;
            flag_bit(name, v)
        };
        let opt_bit = |name: &str| -> Result<Option<u32>, InfoError> {
            match self.number_opt(name)? {
                Some(v) => flag_bit(name, v).map(Some),
                None => Ok(None),
            }
        };
        let mapcount = |name: &str| -> Result<Option<i32>, InfoError> {
            match self.number_opt(name)? {
                Some(v) => i32::try_from(v)
                    .map(Some)
                    .map_err(|_| out_of_range(&keyed("NUMBER", name), v.into())),
                None => Ok(None),
            }
        };
        let lru = bit("PG_lru")?;
        let head_mask = match self.number_opt("PG_head_mask")? {
            Some(m) if m > 0 && (m as u64).is_power_of_two() => m as u64,
            Some(m) => return Err(out_of_range("NUMBER(PG_head_mask)", m.into())),
            None => return Err(missing("NUMBER(PG_head_mask)")),
        };
        let free_area_len = match self.length("zone.free_area") {
            Ok(v) if (1..=64).contains(&v) => Some(v as u32),
            Ok(v) => return Err(out_of_range("LENGTH(zone.free_area)", v.into())),
            Err(InfoError::Missing { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(PageFlags {
            lru,
            private: bit("PG_private")?,
            swapcache: bit("PG_swapcache")?,
            swapbacked: opt_bit("PG_swapbacked")?,
            slab: opt_bit("PG_slab")?,
            hwpoison: opt_bit("PG_hwpoison")?,
            hugetlb: opt_bit("PG_hugetlb")?,
            head_mask,
            buddy_mapcount: mapcount("PAGE_BUDDY_MAPCOUNT_VALUE")?,
            offline_mapcount: mapcount("PAGE_OFFLINE_MAPCOUNT_VALUE")?,
            slab_mapcount: mapcount("PAGE_SLAB_MAPCOUNT_VALUE")?,
            hugetlb_mapcount: mapcount("PAGE_HUGETLB_MAPCOUNT_VALUE")?,
            unaccepted_mapcount: mapcount("PAGE_UNACCEPTED_MAPCOUNT_VALUE")?,
            hugetlb_dtor: match self.number_opt("HUGETLB_PAGE_DTOR")? {
                Some(v) => Some(
                    u8::try_from(v)
                        .map_err(|_| out_of_range("NUMBER(HUGETLB_PAGE_DTOR)", v.into()))?,
                ),
                None => None,
            },
            free_area_len,
        })
    }
}

/// Kernel virtual addresses are in the upper half on x86_64.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

fn check_field(off: u64, width: u64, size: u64, name: &str) -> Result<u64, InfoError> {
    if off.saturating_add(width) > size {
        let mut key = String::from("OFFSET(page.");
        key.push_str(name);
        key.push(')');
        return Err(out_of_range(&key, off.into()));
    }
    Ok(off)
}

fn flag_bit(name: &str, v: i64) -> Result<u32, InfoError> {
    if (0..64).contains(&v) {
        Ok(v as u32)
    } else {
        Err(out_of_range(&keyed("NUMBER", name), v.into()))
    }
}

/// The sparse memory model: how to find the `struct mem_section` of a page frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseMem {
    /// `SYMBOL(mem_section)`: with SPARSEMEM_EXTREME the address of the root array of pointers,
    /// otherwise the address of the section array itself.
    pub mem_section: u64,
    /// `LENGTH(mem_section)`: root pointers (EXTREME) or sections.
    pub roots: u64,
    /// Sections per root (page size / `SIZE(mem_section)` with EXTREME, 1 otherwise).
    pub sections_per_root: u64,
    /// Whether `mem_section` is two-level (SPARSEMEM_EXTREME, every distribution kernel).
    pub extreme: bool,
    /// `SIZE(mem_section)`.
    pub section_size: u64,
    /// `OFFSET(mem_section.section_mem_map)`.
    pub section_mem_map: u64,
    /// `NUMBER(SECTION_SIZE_BITS)`: log2 of the bytes of RAM one section describes.
    pub section_size_bits: u32,
    /// `NUMBER(MAX_PHYSMEM_BITS)`.
    pub max_physmem_bits: u32,
}

impl SparseMem {
    /// log2 of page frames per section.
    pub fn pfn_section_shift(&self) -> u32 {
        self.section_size_bits - 12
    }

    /// Number of sections the kernel can have (`NR_MEM_SECTIONS`).
    pub fn nr_sections(&self) -> u64 {
        1u64 << (self.max_physmem_bits - self.section_size_bits)
    }
}

/// Byte offsets of the `struct page` fields the filter reads (all checked to lie inside the struct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    /// `SIZE(page)`.
    pub size: u64,
    /// `OFFSET(page.flags)`.
    pub flags: u64,
    /// `OFFSET(page._refcount)`.
    pub refcount: u64,
    /// `OFFSET(page.mapping)`.
    pub mapping: u64,
    /// `OFFSET(page.lru)`.
    pub lru: Option<u64>,
    /// `OFFSET(page._mapcount)` (also `page_type` before 6.12, the same word).
    pub mapcount: Option<u64>,
    /// `OFFSET(page.private)` (the buddy order of a free page).
    pub private: Option<u64>,
    /// `OFFSET(page.compound_head)` (bit 0 set on tail pages).
    pub compound_head: Option<u64>,
    /// `OFFSET(page.compound_order)` (a byte in the first tail page; kernels 4.16..6.5).
    pub compound_order: Option<u64>,
    /// `OFFSET(page.compound_dtor)` (a byte in the first tail page; kernels 4.16..6.5).
    pub compound_dtor: Option<u64>,
}

/// Page-flag bit numbers (`NUMBER(PG_*)`) and `page_type` values (`NUMBER(PAGE_*_MAPCOUNT_VALUE)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFlags {
    /// `PG_lru`.
    pub lru: u32,
    /// `PG_private`.
    pub private: u32,
    /// `PG_swapcache`.
    pub swapcache: u32,
    /// `PG_swapbacked` (4.10 and later).
    pub swapbacked: Option<u32>,
    /// `PG_slab` (until 6.9; later kernels mark slab pages with `PAGE_SLAB_MAPCOUNT_VALUE`).
    pub slab: Option<u32>,
    /// `PG_hwpoison` (CONFIG_MEMORY_FAILURE).
    pub hwpoison: Option<u32>,
    /// `PG_hugetlb` (6.6..6.8, in the first tail page's flags).
    pub hugetlb: Option<u32>,
    /// `PG_head_mask`: the flag of a compound head page.
    pub head_mask: u64,
    /// `PAGE_BUDDY_MAPCOUNT_VALUE`: `_mapcount` of a free buddy block's first page.
    pub buddy_mapcount: Option<i32>,
    /// `PAGE_OFFLINE_MAPCOUNT_VALUE`.
    pub offline_mapcount: Option<i32>,
    /// `PAGE_SLAB_MAPCOUNT_VALUE` (6.10 and later).
    pub slab_mapcount: Option<i32>,
    /// `PAGE_HUGETLB_MAPCOUNT_VALUE` (6.9 and later).
    pub hugetlb_mapcount: Option<i32>,
    /// `PAGE_UNACCEPTED_MAPCOUNT_VALUE` (6.12 and later).
    pub unaccepted_mapcount: Option<i32>,
    /// `HUGETLB_PAGE_DTOR` (4.16..6.5): the `compound_dtor` of a hugetlbfs page.
    pub hugetlb_dtor: Option<u8>,
    /// `LENGTH(zone.free_area)` (`MAX_ORDER` or `NR_PAGE_ORDERS`): a free order must be below it.
    pub free_area_len: Option<u32>,
}

fn keyed(kind: &str, name: &str) -> String {
    let mut k = String::with_capacity(kind.len() + name.len() + 2);
    k.push_str(kind);
    k.push('(');
    k.push_str(name);
    k.push(')');
    k
}

fn missing(key: &str) -> InfoError {
    InfoError::Missing {
        key: key.to_string(),
    }
}

fn malformed(key: &str, value: &str) -> InfoError {
    let cut = value.char_indices().nth(64).map_or(value.len(), |(i, _)| i);
    InfoError::Malformed {
        key: key.to_string(),
        value: value[..cut].to_string(),
    }
}

fn out_of_range(key: &str, value: i128) -> InfoError {
    InfoError::OutOfRange {
        key: key.to_string(),
        value,
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}
