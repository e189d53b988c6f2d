//! Test support (feature `testing`): x86_64 page tables built in a [`FakeMemory`], so translation,
//! page-struct scans and crash reports can be tested without a real crashed kernel.

use alloc::vec;

use crate::testing::FakeMemory;

/// VMCOREINFO of Debian's 6.1.0-57-cloud-amd64, captured from a real crash (testdata/README.md).
pub const DEBIAN_6_1: &[u8] = include_bytes!("../../testdata/vmcoreinfo-6.1.0-57-cloud-amd64.txt");

/// Entry bits used by the builder.
pub const PRESENT_RW: u64 = 0x3;
/// The page-size bit of a PDPTE/PDE.
pub const PS: u64 = 1 << 7;

/// Page tables in a [`FakeMemory`]; tables are taken from a bump allocator starting at `next`.
pub struct PageTables {
    /// The memory holding the tables (add data regions or patterns to it as needed).
    pub mem: FakeMemory,
    /// Physical address of the top-level table.
    pub root: u64,
    /// Whether the tables have five levels.
    pub five_level: bool,
    next: u64,
}

impl PageTables {
    /// Empty tables; the root and later tables are allocated from `table_area` upwards.
    pub fn new(five_level: bool, table_area: u64) -> Self {
        let mut t = PageTables {
            mem: FakeMemory::new(),
            root: 0,
            five_level,
            next: table_area,
        };
        t.root = t.alloc();
        t
    }

    fn alloc(&mut self) -> u64 {
        let at = self.next;
        self.mem.insert(at, vec![0u8; 4096]);
        self.next += 4096;
        at
    }

    /// Reads entry `index` of the table at `table`.
    pub fn entry(&mut self, table: u64, index: u64) -> u64 {
        let r = self.mem.region_mut(table).expect("table");
        let i = index as usize * 8;
        u64::from_le_bytes(r[i..i + 8].try_into().unwrap())
    }

    /// Writes entry `index` of the table at `table`.
    pub fn set_entry(&mut self, table: u64, index: u64, entry: u64) {
        let r = self.mem.region_mut(table).expect("table");
        let i = index as usize * 8;
        r[i..i + 8].copy_from_slice(&entry.to_le_bytes());
    }

    /// Physical address of the table holding the entry for `va` at `level` (5..1), creating the
    /// tables above it; also returns the entry's index.
    pub fn slot(&mut self, va: u64, level: u8) -> (u64, u64) {
        let top: u8 = if self.five_level { 5 } else { 4 };
        let mut table = self.root;
        for l in (level + 1..=top).rev() {
            let idx = (va >> (12 + 9 * u32::from(l - 1))) & 0x1ff;
            let e = self.entry(table, idx);
            table = if e & 1 != 0 {
                e & 0x000f_ffff_ffff_f000
            } else {
                let t = self.alloc();
                self.set_entry(table, idx, t | PRESENT_RW);
                t
            };
        }
        (table, (va >> (12 + 9 * u32::from(level - 1))) & 0x1ff)
    }

    /// Maps the 4 KiB page at `va` to `phys`.
    pub fn map_4k(&mut self, va: u64, phys: u64) {
        let (t, i) = self.slot(va, 1);
        self.set_entry(t, i, phys | PRESENT_RW);
    }

    /// Maps the 2 MiB page at `va` to `phys`.
    pub fn map_2m(&mut self, va: u64, phys: u64) {
        let (t, i) = self.slot(va, 2);
        self.set_entry(t, i, phys | PRESENT_RW | PS);
    }

    /// Maps the 1 GiB page at `va` to `phys`.
    pub fn map_1g(&mut self, va: u64, phys: u64) {
        let (t, i) = self.slot(va, 3);
        self.set_entry(t, i, phys | PRESENT_RW | PS);
    }

    /// Maps `len` bytes at `va` to `phys` with 4 KiB pages (both page aligned).
    pub fn map_range_4k(&mut self, va: u64, phys: u64, len: u64) {
        let mut off = 0;
        while off < len {
            self.map_4k(va + off, phys + off);
            off += 4096;
        }
    }
}

/// Where [`FakeKernel`] puts things.
pub mod fake_layout {
    /// vmemmap base: page struct of frame `pfn` at `VMEMMAP + pfn * SIZE(page)`.
    pub const VMEMMAP: u64 = 0xffff_ea00_0000_0000;
    /// Physical home of the page structs: section `s` at `MEMMAP_PHYS + s * 2 MiB`.
    pub const MEMMAP_PHYS: u64 = 0x100_0000_0000;
    /// Physical home of the `mem_section` root array and the section pages.
    pub const SECTIONS_PHYS: u64 = 0x80_0000_0000;
    /// Virtual home of the section pages (a direct-map address).
    pub const SECTIONS_VA: u64 = 0xffff_8880_4000_0000;
}

/// A crashed kernel's memory model in fake old memory: page tables, `mem_section` (SPARSEMEM_EXTREME)
/// and the page structs of the present sections, shaped by a real VMCOREINFO's numbers.
pub struct FakeKernel {
    /// Tables and memory.
    pub tables: PageTables,
    /// The VMCOREINFO the fake follows.
    pub info: super::info::KernelInfo,
    /// `struct page` field offsets.
    pub layout: super::info::PageLayout,
    /// Page flag numbers.
    pub flags: super::info::PageFlags,
    sparse: super::info::SparseMem,
}

impl FakeKernel {
    /// A kernel following Debian 6.1's VMCOREINFO whose sections holding `present` frame ranges
    /// have page structs (all "in use, no flags": `_mapcount = -1`).
    pub fn debian(present: &[(u64, u64)]) -> Self {
        Self::debian_with("", present)
    }

    /// Like [`Self::debian`] with `extra` lines appended to the VMCOREINFO (a later line wins).
    pub fn debian_with(extra: &str, present: &[(u64, u64)]) -> Self {
        let mut text = DEBIAN_6_1.to_vec();
        text.push(b'\n');
        text.extend_from_slice(extra.as_bytes());
        let info = super::info::KernelInfo::parse(&crate::notes::VmcoreInfo::new(&text))
            .expect("captured VMCOREINFO parses");
        Self::new(info, present)
    }

    /// Like [`Self::debian`] with any VMCOREINFO that has the filter's keys.
    pub fn new(info: super::info::KernelInfo, present: &[(u64, u64)]) -> Self {
        use fake_layout::*;
        let sparse = info.sparsemem().expect("sparsemem keys");
        let layout = info.page_layout().expect("page keys");
        let flags = info.page_flags().expect("flag keys");
        assert_eq!(
            layout.size, 64,
            "the fake packs one section's structs in 2 MiB"
        );
        // The top-level table sits where the VMCOREINFO says (`init_top_pgt` through phys_base),
        // so `Translator::new(&info)` finds it like the filter in the kernel does.
        let root = super::vtop::Translator::new(&info).root();
        let mut tables = PageTables::new(false, root);
        // Root array: LENGTH(mem_section) pointers at SYMBOL(mem_section).
        let root_bytes = ((sparse.mem_section & 0xfff) + sparse.roots * 8).next_multiple_of(4096);
        tables
            .mem
            .insert(SECTIONS_PHYS, vec![0u8; root_bytes as usize]);
        let mut off = 0;
        while off < root_bytes {
            tables.map_4k((sparse.mem_section & !0xfff) + off, SECTIONS_PHYS + off);
            off += 4096;
        }
        let shift = sparse.pfn_section_shift();
        let mut sections: alloc::vec::Vec<u64> = present
            .iter()
            .flat_map(|&(s, n)| (s >> shift)..=((s + n - 1) >> shift))
            .collect();
        sections.sort_unstable();
        sections.dedup();
        let root_off = sparse.mem_section & 0xfff;
        for &sec in &sections {
            let root = sec / sparse.sections_per_root;
            let page_phys = SECTIONS_PHYS + root_bytes + root * 4096;
            let page_va = SECTIONS_VA + root * 4096;
            if tables.mem.region_mut(page_phys).is_none() {
                tables.mem.insert(page_phys, vec![0u8; 4096]);
                tables.map_4k(page_va, page_phys);
                let slot = (root_off + root * 8) as usize;
                tables.mem.region_mut(SECTIONS_PHYS).unwrap()[slot..slot + 8]
                    .copy_from_slice(&page_va.to_le_bytes());
            }
            // section_mem_map: the encoded map (vmemmap base) | SECTION_MARKED_PRESENT | HAS_MEM_MAP.
            let at = ((sec % sparse.sections_per_root) * sparse.section_size
                + sparse.section_mem_map) as usize;
            tables.mem.region_mut(page_phys).unwrap()[at..at + 8]
                .copy_from_slice(&(VMEMMAP | 0b11).to_le_bytes());
            let structs = MEMMAP_PHYS + sec * (2 << 20);
            let mut bytes = vec![0u8; 2 << 20];
            if let Some(m) = layout.mapcount {
                for page in bytes.chunks_exact_mut(64) {
                    page[m as usize..m as usize + 4].copy_from_slice(&(-1i32).to_le_bytes());
                }
            }
            tables.mem.insert(structs, bytes);
            tables.map_2m(VMEMMAP + sec * (2 << 20), structs);
        }
        FakeKernel {
            tables,
            info,
            layout,
            flags,
            sparse,
        }
    }

    /// The translator over the fake tables (the one the VMCOREINFO implies).
    pub fn translator(&self) -> super::vtop::Translator {
        super::vtop::Translator::new(&self.info)
    }

    /// The bytes of frame `pfn`'s page struct (its section must be present).
    pub fn page(&mut self, pfn: u64) -> &mut [u8] {
        let shift = self.sparse.pfn_section_shift();
        let sec = pfn >> shift;
        let region = self
            .tables
            .mem
            .region_mut(fake_layout::MEMMAP_PHYS + sec * (2 << 20))
            .expect("present section");
        let at = ((pfn & ((1 << shift) - 1)) * 64) as usize;
        &mut region[at..at + 64]
    }

    fn put(&mut self, pfn: u64, off: u64, bytes: &[u8]) {
        let o = off as usize;
        self.page(pfn)[o..o + bytes.len()].copy_from_slice(bytes);
    }

    /// Sets `page.flags`.
    pub fn set_flags(&mut self, pfn: u64, flags: u64) {
        self.put(pfn, self.layout.flags, &flags.to_le_bytes());
    }

    /// Sets `page.mapping`.
    pub fn set_mapping(&mut self, pfn: u64, mapping: u64) {
        self.put(pfn, self.layout.mapping, &mapping.to_le_bytes());
    }

    /// Sets `page._mapcount` (also `page_type`).
    pub fn set_mapcount(&mut self, pfn: u64, v: i32) {
        let o = self.layout.mapcount.expect("_mapcount");
        self.put(pfn, o, &v.to_le_bytes());
    }

    /// Sets `page.private`.
    pub fn set_private(&mut self, pfn: u64, v: u64) {
        let o = self.layout.private.expect("private");
        self.put(pfn, o, &v.to_le_bytes());
    }

    /// Makes `pfn .. pfn + (1 << order)` a compound page (head flag, tails pointing at the head,
    /// order in the first tail) with `dtor` as its destructor id.
    pub fn set_compound(&mut self, pfn: u64, order: u32, dtor: u8) {
        let head_va = fake_layout::VMEMMAP + pfn * 64;
        let f = self.page_flags_word(pfn) | self.flags.head_mask;
        self.set_flags(pfn, f);
        for t in 1..(1u64 << order) {
            let o = self.layout.compound_head.expect("compound_head");
            self.put(pfn + t, o, &(head_va | 1).to_le_bytes());
        }
        if let Some(o) = self.layout.compound_order {
            self.put(pfn + 1, o, &[order as u8]);
        }
        if let Some(o) = self.layout.compound_dtor {
            self.put(pfn + 1, o, &[dtor]);
        }
    }

    /// The current `page.flags`.
    pub fn page_flags_word(&mut self, pfn: u64) -> u64 {
        let o = self.layout.flags as usize;
        u64::from_le_bytes(self.page(pfn)[o..o + 8].try_into().unwrap())
    }
}
