use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::kernel::testing::{FakeKernel, fake_layout};
use crate::pages::{PageSelector, PfnBitmap};

/// One synthetic page of each kind the rules tell apart, in one section.
struct Zoo {
    k: FakeKernel,
}

const NORMAL: u64 = 5;
const CACHE: u64 = 10;
const CACHE_PRIV: u64 = 11;
const SWAPCACHE: u64 = 12;
const ANON: u64 = 13;
const ANON_SLAB: u64 = 14;
const FREE: u64 = 32; // order 4: 32..48
const THP: u64 = 1024; // anonymous order 9: 1024..1536
const HUGETLB: u64 = 2048; // hugetlbfs order 9: 2048..2560
const FILE_COMPOUND: u64 = 4096; // page-cache order 2 head: only the head goes (bits 2/4)
const HWPOISON: u64 = 20;
const OFFLINE: u64 = 21;
const BAD_ORDER_FREE: u64 = 64; // buddy with order >= MAX_ORDER: kept, as makedumpfile does
const RAM_PAGES: u64 = 8192;

impl Zoo {
    fn new() -> Self {
        // Debian's cloud kernel has no CONFIG_MEMORY_FAILURE; the bit number is the one 6.1 gives
        // it with that option on.
        let mut k = FakeKernel::debian_with("NUMBER(PG_hwpoison)=23\n", &[(0, RAM_PAGES)]);
        let f = k.flags;
        let bit = |b: u32| 1u64 << b;
        let kaddr = 0xffff_8880_0123_4000u64;
        k.set_flags(CACHE, bit(f.lru));
        k.set_mapping(CACHE, kaddr);
        k.set_flags(CACHE_PRIV, bit(f.lru) | bit(f.private));
        k.set_mapping(CACHE_PRIV, kaddr);
        k.set_flags(SWAPCACHE, bit(f.swapcache) | bit(f.swapbacked.unwrap()));
        k.set_flags(ANON, bit(f.lru) | bit(f.swapbacked.unwrap()));
        k.set_mapping(ANON, kaddr | 1);
        k.set_flags(ANON_SLAB, bit(f.slab.unwrap()));
        k.set_mapping(ANON_SLAB, kaddr | 1);
        k.set_mapcount(FREE, f.buddy_mapcount.unwrap());
        k.set_private(FREE, 4);
        k.set_mapcount(BAD_ORDER_FREE, f.buddy_mapcount.unwrap());
        k.set_private(BAD_ORDER_FREE, 11);
        k.set_flags(THP, bit(f.lru));
        k.set_mapping(THP, kaddr | 1);
        k.set_compound(THP, 9, 3); // TRANSHUGE_PAGE_DTOR
        k.set_compound(HUGETLB, 9, f.hugetlb_dtor.unwrap());
        k.set_flags(FILE_COMPOUND, bit(f.lru));
        k.set_mapping(FILE_COMPOUND, kaddr);
        k.set_compound(FILE_COMPOUND, 2, 1);
        k.set_flags(HWPOISON, bit(f.hwpoison.unwrap()));
        k.set_mapcount(OFFLINE, f.offline_mapcount.unwrap());
        Zoo { k }
    }

    /// Frames excluded at `level`, in order.
    fn excluded(&mut self, level: Level) -> (Vec<u64>, FilterStats) {
        let mut f = PageFilter::new(&self.k.info, level)
            .unwrap()
            .with_translator(self.k.translator());
        let mut keep = PfnBitmap::new(0, RAM_PAGES).unwrap();
        keep.set_range(0, RAM_PAGES, true);
        let s = f.select(&mut self.k.tables.mem, &mut keep).unwrap();
        let gone: Vec<u64> = (0..RAM_PAGES).filter(|&p| !keep.get(p)).collect();
        assert_eq!(s.examined, RAM_PAGES);
        assert_eq!(s.excluded, gone.len() as u64);
        assert_eq!(f.stats().excluded(), gone.len() as u64);
        (gone, f.stats())
    }
}

fn range(start: u64, n: u64) -> impl Iterator<Item = u64> {
    start..start + n
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Always gone when any page-flag bit is set.
fn always() -> Vec<u64> {
    vec![HWPOISON, OFFLINE]
}

#[test]
fn bit_2_drops_non_private_cache_only() {
    let (gone, s) = Zoo::new().excluded(Level::CACHE);
    assert_eq!(
        gone,
        sorted([vec![CACHE, SWAPCACHE, FILE_COMPOUND], always()].concat())
    );
    assert_eq!((s.cache, s.cache_private, s.user, s.free), (3, 0, 0, 0));
}

#[test]
fn bit_4_drops_private_cache_too() {
    let (gone, s) = Zoo::new().excluded(Level::CACHE_PRIVATE);
    assert_eq!(
        gone,
        sorted([vec![CACHE, CACHE_PRIV, SWAPCACHE, FILE_COMPOUND], always()].concat())
    );
    assert_eq!((s.cache, s.cache_private), (3, 1));
}

#[test]
fn bit_8_drops_anonymous_thp_and_hugetlb_whole() {
    let (gone, s) = Zoo::new().excluded(Level::USER);
    let want: Vec<u64> = [ANON]
        .into_iter()
        .chain(range(THP, 512))
        .chain(range(HUGETLB, 512))
        .chain(always())
        .collect();
    assert_eq!(gone, sorted(want));
    assert_eq!(s.user, 1 + 512 + 512);
    // The slab page with an odd mapping word is not user data.
    assert!(!gone.contains(&ANON_SLAB));
}

#[test]
fn bit_16_drops_whole_buddy_blocks_with_sane_orders() {
    let (gone, s) = Zoo::new().excluded(Level::FREE);
    let want: Vec<u64> = range(FREE, 16).chain(always()).collect();
    assert_eq!(gone, sorted(want));
    assert_eq!((s.free, s.hwpoison, s.offline), (16, 1, 1));
    assert!(!gone.contains(&BAD_ORDER_FREE));
}

#[test]
fn level_31_is_the_union_and_keeps_kernel_pages() {
    let mut zoo = Zoo::new();
    let (all, s) = zoo.excluded(Level::all());
    let mut union = Vec::new();
    for l in [Level::CACHE, Level::CACHE_PRIVATE, Level::USER, Level::FREE] {
        union.extend(zoo.excluded(l).0);
    }
    union.sort_unstable();
    union.dedup();
    assert_eq!(all, union);
    for keep in [NORMAL, ANON_SLAB, BAD_ORDER_FREE, HUGETLB - 1] {
        assert!(!all.contains(&keep), "{keep} kept");
    }
    assert_eq!(s.excluded(), all.len() as u64);
    // Combination 2|8: anonymous cache-looking pages count as user, not cache.
    let (gone, s) = zoo.excluded(Level::CACHE | Level::USER);
    assert!(gone.contains(&ANON) && gone.contains(&CACHE) && !gone.contains(&CACHE_PRIV));
    assert_eq!(s.user, 1025);
}

#[test]
fn levels_without_page_flag_bits_have_nothing_to_do() {
    let zoo = Zoo::new();
    for l in [Level::empty(), Level::ZERO] {
        assert_eq!(
            PageFilter::new(&zoo.k.info, l).err(),
            Some(FilterError::NothingToDo)
        );
    }
}

#[test]
fn a_compound_page_across_windows_is_finished_in_the_next_window() {
    let mut zoo = Zoo::new();
    let mut f = PageFilter::new(&zoo.k.info, Level::USER)
        .unwrap()
        .with_translator(zoo.k.translator());
    // Window ends in the middle of the THP.
    let mid = THP + 100;
    let mut a = PfnBitmap::new(0, mid).unwrap();
    a.set_range(0, mid, true);
    f.select(&mut zoo.k.tables.mem, &mut a).unwrap();
    let mut b = PfnBitmap::new(mid, RAM_PAGES - mid).unwrap();
    b.set_range(mid, RAM_PAGES - mid, true);
    f.select(&mut zoo.k.tables.mem, &mut b).unwrap();
    assert!((THP..mid).all(|p| !a.get(p)));
    assert!((mid..THP + 512).all(|p| !b.get(p)), "tail half excluded");
    assert!(b.get(THP + 512));
    assert_eq!(f.stats().user, 1 + 512 + 512);
}

#[test]
fn frames_the_header_does_not_offer_are_neither_read_nor_counted() {
    let mut zoo = Zoo::new();
    let mut f = PageFilter::new(&zoo.k.info, Level::all())
        .unwrap()
        .with_translator(zoo.k.translator());
    let mut keep = PfnBitmap::new(0, RAM_PAGES).unwrap();
    keep.set_range(THP, 512, true); // only the THP's frames offered
    let s = f.select(&mut zoo.k.tables.mem, &mut keep).unwrap();
    assert_eq!((s.examined, s.excluded), (512, 512));
    assert_eq!(keep.count(), 0);
}

#[test]
fn broken_page_data_is_a_select_error() {
    // section_mem_map of section 0 points at an unmapped vmemmap.
    let mut zoo = Zoo::new();
    let sm = zoo.k.info.sparsemem().unwrap();
    let root_va = {
        let mut b = [0u8; 8];
        let tr = zoo.k.translator();
        crate::kernel::OldVirt::new(&mut zoo.k.tables.mem, &tr)
            .read_virt(sm.mem_section, &mut b)
            .unwrap();
        u64::from_le_bytes(b)
    };
    let tr = zoo.k.translator();
    let phys = tr
        .translate(&mut zoo.k.tables.mem, root_va)
        .unwrap()
        .phys_of(root_va + sm.section_mem_map);
    let bad = (fake_layout::VMEMMAP + (1 << 40)) | 1;
    zoo.k.tables.mem.region_mut(phys & !0xfff).unwrap()[(phys & 0xfff) as usize..][..8]
        .copy_from_slice(&bad.to_le_bytes());
    let mut f = PageFilter::new(&zoo.k.info, Level::all())
        .unwrap()
        .with_translator(tr);
    let mut keep = PfnBitmap::new(0, RAM_PAGES).unwrap();
    keep.set_range(0, RAM_PAGES, true);
    assert_eq!(
        f.select(&mut zoo.k.tables.mem, &mut keep),
        Err(SelectError::Inconsistent("page struct not mapped"))
    );
    // A user-space root pointer.
    let mut zoo = Zoo::new();
    let tr = zoo.k.translator();
    let phys = tr
        .translate(&mut zoo.k.tables.mem, sm.mem_section)
        .unwrap()
        .phys_of(sm.mem_section);
    zoo.k.tables.mem.region_mut(phys & !0xfff).unwrap()[(phys & 0xfff) as usize..][..8]
        .copy_from_slice(&0x7fff_0000u64.to_le_bytes());
    let mut f = PageFilter::new(&zoo.k.info, Level::all())
        .unwrap()
        .with_translator(tr);
    assert_eq!(
        f.select(&mut zoo.k.tables.mem, &mut keep),
        Err(SelectError::Inconsistent("mem_section root pointer"))
    );
}

#[test]
fn a_level_missing_its_keys_names_them() {
    let text = core::str::from_utf8(crate::kernel::testing::DEBIAN_6_1).unwrap();
    let cut: alloc::string::String = text
        .lines()
        .filter(|l| !l.starts_with("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"))
        .flat_map(|l| [l, "\n"])
        .collect();
    let info = KernelInfo::parse(&crate::notes::VmcoreInfo::new(cut.as_bytes())).unwrap();
    let e = PageFilter::new(&info, Level::FREE).err().unwrap();
    assert!(
        alloc::format!("{e}").contains("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"),
        "{e}"
    );
    // Levels that do not judge free pages do not need it.
    assert!(PageFilter::new(&info, Level::USER | Level::CACHE_PRIVATE).is_ok());
}

#[test]
fn zero_page_test() {
    assert!(is_zero_page(&[0u8; 4096]));
    let mut p = [0u8; 4096];
    p[4095] = 1;
    assert!(!is_zero_page(&p));
    p[4095] = 0;
    p[0] = 0x80;
    assert!(!is_zero_page(&p));
    assert!(is_zero_page(&[0u8; 13]));
    assert!(!is_zero_page(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]));
    assert_eq!(Level::from_bits(31), Some(Level::all()));
    assert_eq!(Level::from_bits(32), None);
}

// ---- filtered ELF output ----

mod elf_output {
    use super::*;
    use crate::elf::{Elf64_Phdr, PT_LOAD};
    use crate::testing::{header_blob, load_phdr, note_phdr, pattern_byte, vmcoreinfo_buffer};
    use crate::{DumpPlan, prepare_dump, write_vmcore};
    use zerocopy::FromBytes;

    const HDR_PHYS: u64 = 0x50_0000_0000;
    const NOTE_PHYS: u64 = 0x50_0001_0000;
    const DIRECT: u64 = 0xffff_891a_8000_0000;
    /// The second PT_LOAD starts mid-page, as a reserved E820 tail can make it.
    const SECOND: u64 = (RAM_PAGES / 2) * 4096 + 0x800;

    fn crash(zoo: &mut Zoo, vmcoreinfo: &str) -> DumpPlan {
        let mem = &mut zoo.k.tables.mem;
        mem.add_pattern(0, RAM_PAGES * 4096);
        let half = RAM_PAGES / 2 * 4096;
        let notes = vmcoreinfo_buffer(vmcoreinfo, 4096);
        let phdrs = [
            note_phdr(NOTE_PHYS, notes.len() as u64),
            load_phdr(0, 0, DIRECT, half),
            load_phdr(SECOND, SECOND, DIRECT + SECOND, RAM_PAGES * 4096 - SECOND),
        ];
        mem.insert(HDR_PHYS, header_blob(&phdrs));
        mem.insert(NOTE_PHYS, notes);
        prepare_dump(mem, HDR_PHYS, None).unwrap()
    }

    fn debian_text() -> alloc::string::String {
        let mut t =
            alloc::string::String::from_utf8(crate::kernel::testing::DEBIAN_6_1.to_vec()).unwrap();
        t.push_str("\nNUMBER(PG_hwpoison)=23\n");
        t
    }

    fn write(zoo: &mut Zoo, layout: &crate::layout::VmcoreLayout) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        write_vmcore(
            layout,
            &mut zoo.k.tables.mem,
            &mut out,
            &mut buf,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(out.len() as u64, layout.total_size);
        out
    }

    fn loads(file: &[u8]) -> Vec<Elf64_Phdr> {
        let n = u16::from_le_bytes([file[56], file[57]]) as usize;
        (0..n)
            .map(|i| Elf64_Phdr::read_from_bytes(&file[64 + 56 * i..120 + 56 * i]).unwrap())
            .filter(|p| p.p_type == PT_LOAD)
            .collect()
    }

    /// Frames whose bytes are in the file, each checked against old memory.
    fn frames_in_file(file: &[u8]) -> Vec<u64> {
        let mut frames = Vec::new();
        for p in loads(file) {
            assert!(p.p_filesz <= p.p_memsz);
            assert_eq!(p.p_vaddr - DIRECT, p.p_paddr, "vaddr follows paddr");
            for i in 0..p.p_filesz {
                let phys = p.p_paddr + i;
                assert_eq!(
                    file[(p.p_offset + i) as usize],
                    pattern_byte(phys),
                    "byte at {phys:#x}"
                );
            }
            if p.p_filesz > 0 {
                let first = p.p_paddr / 4096;
                let last = (p.p_paddr + p.p_filesz).div_ceil(4096);
                frames.extend(first..last);
            }
        }
        frames.sort_unstable();
        frames.dedup();
        frames
    }

    #[test]
    fn level_31_leaves_every_excluded_frame_out() {
        let mut zoo = Zoo::new();
        let plan = crash(&mut zoo, &debian_text());
        let out = apply_elf(&plan, &mut zoo.k.tables.mem, Level::all(), &mut |_, _| {});
        assert_eq!(out.fallback, None);
        assert_eq!(out.level, Level::all());
        assert_eq!(out.written_excluded_pages, 0);
        let file = write(&mut zoo, &out.layout);
        let kept = frames_in_file(&file);
        let (gone, _) = zoo.excluded(Level::all());
        for p in &gone {
            assert!(kept.binary_search(p).is_err(), "frame {p} absent");
        }
        assert_eq!(kept.len() as u64 + gone.len() as u64, RAM_PAGES);
        // Every PT_LOAD still spans its input range: the excluded runs are p_memsz beyond
        // p_filesz, which readers see as zeros.
        let l = loads(&file);
        let span: u64 = l.iter().map(|p| p.p_memsz).sum();
        assert_eq!(span, RAM_PAGES * 4096 - 0x800);
        assert_eq!(out.pieces, l.len());
        assert_eq!(
            file.len() as u64,
            write(&mut zoo, &plan.layout).len() as u64 - gone.len() as u64 * 4096
        );
    }

    #[test]
    fn makedumpfiles_rule_keeps_short_runs_and_splits_at_256() {
        let mut zoo = Zoo::new();
        let plan = crash(&mut zoo, &debian_text());
        let out = apply_elf_split(
            &plan,
            &mut zoo.k.tables.mem,
            Level::all(),
            elf::PFN_EXCLUDED,
            &mut |_, _| {},
        );
        assert_eq!(out.fallback, None);
        let file = write(&mut zoo, &out.layout);
        let kept = frames_in_file(&file);
        // The 512-frame THP and hugetlb pages are long runs: absent.
        for p in range(THP, 512).chain(range(HUGETLB, 512)) {
            assert!(kept.binary_search(&p).is_err(), "frame {p} absent");
        }
        // Short excluded runs (one anonymous page, a 16-frame buddy block) stay.
        for p in [ANON, CACHE, FREE, FREE + 15, NORMAL, THP - 1, THP + 512] {
            assert!(kept.binary_search(&p).is_ok(), "frame {p} kept");
        }
        let l = loads(&file);
        assert_eq!(l.len(), 4, "{l:?}"); // 1st load split after THP and hugetlb, 2nd whole
        assert_eq!(l[0].p_paddr, 0);
        assert_eq!(l[1].p_paddr, (THP + 512) * 4096);
        assert_eq!(l[2].p_paddr, (HUGETLB + 512) * 4096);
        assert_eq!(l[0].p_memsz, (THP + 512) * 4096);
        assert_eq!(l[0].p_filesz, THP * 4096);
        assert_eq!(l[3].p_paddr, SECOND);
        let span: u64 = l.iter().map(|p| p.p_memsz).sum();
        assert_eq!(span, RAM_PAGES * 4096 - 0x800);
        assert_eq!(
            file.len() as u64,
            write(&mut zoo, &plan.layout).len() as u64 - 1024 * 4096
        );
        assert_eq!(out.written_excluded_pages, out.stats.excluded() - 1024);
    }

    #[test]
    fn level_0_and_1_are_the_unfiltered_file_byte_for_byte() {
        let mut zoo = Zoo::new();
        let plan = crash(&mut zoo, &debian_text());
        let full = write(&mut zoo, &plan.layout);
        for level in [Level::empty(), Level::ZERO] {
            let out = apply_elf(&plan, &mut zoo.k.tables.mem, level, &mut |_, _| {});
            assert_eq!(out.fallback, None);
            assert!(write(&mut zoo, &out.layout) == full, "level {level:?}");
        }
        // Negative control: level 8 changes the file.
        let out = apply_elf(&plan, &mut zoo.k.tables.mem, Level::USER, &mut |_, _| {});
        assert!(write(&mut zoo, &out.layout) != full);
    }

    #[test]
    fn missing_or_broken_kernel_data_falls_back_to_level_1() {
        let mut zoo = Zoo::new();
        // VMCOREINFO without mem_section.
        let text: alloc::string::String = debian_text()
            .lines()
            .filter(|l| !l.starts_with("SYMBOL(mem_section)"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let plan = crash(&mut zoo, &text);
        let full = write(&mut zoo, &plan.layout);
        let out = apply_elf(&plan, &mut zoo.k.tables.mem, Level::all(), &mut |_, _| {});
        assert_eq!(out.level, Level::ZERO);
        let why = alloc::format!("{}", out.fallback.clone().unwrap());
        assert!(why.contains("SYMBOL(mem_section)"), "{why}");
        assert!(write(&mut zoo, &out.layout) == full);

        // Page tables that do not map the page structs: the plan fails mid-way, nothing half-done.
        let mut zoo = Zoo::new();
        let plan = crash(&mut zoo, &debian_text());
        let full = write(&mut zoo, &plan.layout);
        let (pd, i) = zoo.k.tables.slot(fake_layout::VMEMMAP, 2);
        zoo.k.tables.set_entry(pd, i, 0);
        let out = apply_elf(&plan, &mut zoo.k.tables.mem, Level::all(), &mut |_, _| {});
        assert_eq!(
            out.fallback,
            Some(Fallback::Plan(elf::PlanError::Select(
                SelectError::Inconsistent("page struct not mapped")
            )))
        );
        assert!(write(&mut zoo, &out.layout) == full);

        // No VMCOREINFO at all.
        let mut zoo = Zoo::new();
        let plan = crash(&mut zoo, "");
        let mut plan2 = plan.clone();
        plan2.notes = crate::notes::Notes::default();
        let out = apply_elf(&plan2, &mut zoo.k.tables.mem, Level::all(), &mut |_, _| {});
        assert_eq!(out.fallback, Some(Fallback::NoVmcoreinfo));
    }

    #[test]
    fn pieces_stay_bounded_on_alternating_runs() {
        // 128 kept frames, then a 256-frame free block, over and over: every excluded run is long.
        let pages = 1u64 << 21; // 8 GiB
        let mut k = FakeKernel::debian(&[(0, pages)]);
        let buddy = k.flags.buddy_mapcount.unwrap();
        let mut p = 0;
        let mut runs = 0u64;
        while p + 384 <= pages {
            k.set_mapcount(p + 128, buddy);
            k.set_private(p + 128, 8);
            p += 384;
            runs += 1;
        }
        assert!(runs > elf::MAX_PIECES as u64);
        let mem = &mut k.tables.mem;
        mem.insert(
            HDR_PHYS,
            header_blob(&[
                note_phdr(NOTE_PHYS, 4096),
                load_phdr(0, 0, DIRECT, pages * 4096),
            ]),
        );
        mem.insert(
            NOTE_PHYS,
            vmcoreinfo_buffer(
                core::str::from_utf8(crate::kernel::testing::DEBIAN_6_1).unwrap(),
                4096,
            ),
        );
        let plan = prepare_dump(mem, HDR_PHYS, None).unwrap();
        let out = apply_elf(&plan, mem, Level::FREE, &mut |_, _| {});
        assert_eq!(out.fallback, None);
        assert!(out.pieces <= elf::MAX_PIECES, "{}", out.pieces);
        assert!(out.split_threshold > elf::SPLIT_RUN);
        assert_eq!(out.stats.free, runs * 256);
        // Merged gaps are written, so file frames + left-out frames = all frames.
        let file_pages = out.layout.summary.chunk_bytes / 4096;
        assert_eq!(
            file_pages + (out.stats.free - out.written_excluded_pages),
            pages
        );
    }
}

// ---- memory bound on a sparse 1 TiB machine ----

mod bound {
    use super::*;
    use crate::mem::{OldMemError, OldMemory};
    use crate::testing::{header_blob, load_phdr, note_phdr, vmcoreinfo_buffer};

    /// Old memory that counts what the filter reads.
    struct Counted<'a> {
        inner: &'a mut crate::testing::FakeMemory,
        bytes: u64,
        largest: usize,
    }

    impl OldMemory for Counted<'_> {
        fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
            self.bytes += buf.len() as u64;
            self.largest = self.largest.max(buf.len());
            self.inner.read(phys, buf)
        }
    }

    const HDR_PHYS: u64 = 0x50_0000_0000;
    const NOTE_PHYS: u64 = 0x50_0001_0000;
    const GIB_PAGES: u64 = 1 << 18;

    struct Run {
        read: u64,
        largest: usize,
        stats: FilterStats,
        pieces: usize,
        header_bytes: usize,
    }

    /// `apply_elf` at level 31 on a machine whose RAM is `ram` (frame ranges, one PT_LOAD each),
    /// all of it order-9 free blocks every 1024 frames plus one anonymous page per 1024. The fake
    /// memory holds page structs only for the sections that have RAM: a read anywhere else fails.
    fn run(ram: &[(u64, u64)]) -> Run {
        let mut k = FakeKernel::debian(ram);
        let buddy = k.flags.buddy_mapcount.unwrap();
        let mut phdrs = vec![note_phdr(NOTE_PHYS, 4096)];
        for &(start, n) in ram {
            let mut p = start;
            while p + 1024 <= start + n {
                k.set_mapcount(p, buddy);
                k.set_private(p, 9);
                k.set_mapping(p + 600, 0xffff_8880_0000_0001);
                p += 1024;
            }
            phdrs.push(load_phdr(
                start * 4096,
                start * 4096,
                0xffff_8880_0000_0000 + start * 4096,
                n * 4096,
            ));
        }
        let text = core::str::from_utf8(crate::kernel::testing::DEBIAN_6_1).unwrap();
        k.tables.mem.insert(HDR_PHYS, header_blob(&phdrs));
        k.tables
            .mem
            .insert(NOTE_PHYS, vmcoreinfo_buffer(text, 4096));
        let plan = crate::prepare_dump(&mut k.tables.mem, HDR_PHYS, None).unwrap();
        let mut mem = Counted {
            inner: &mut k.tables.mem,
            bytes: 0,
            largest: 0,
        };
        let out = apply_elf(&plan, &mut mem, Level::all(), &mut |_, _| {});
        assert_eq!(out.fallback, None);
        Run {
            read: mem.bytes,
            largest: mem.largest,
            stats: out.stats,
            pieces: out.pieces,
            header_bytes: out.layout.header_bytes.len(),
        }
    }

    #[test]
    fn a_sparse_1_tib_machine_costs_what_4_gib_cost() {
        // 1 TiB of physical address space: 2 GiB at the bottom, 1 GiB at 512 GiB, 1 GiB at the top.
        let tib = run(&[
            (0, 2 * GIB_PAGES),
            (512 * GIB_PAGES, GIB_PAGES),
            (1023 * GIB_PAGES, GIB_PAGES),
        ]);
        let ram_pages = 4 * GIB_PAGES;
        assert_eq!(tib.stats.examined, ram_pages);
        assert_eq!(tib.stats.free, ram_pages / 2);
        assert_eq!(tib.stats.user, ram_pages / 1024);
        // Page structs are read once each (64 bytes per frame) plus the section and table
        // look-ups, in chunks of at most CHUNK_PAGES structs: nothing follows the 1 TiB span.
        assert!(tib.read < ram_pages * 64 + (1 << 20), "read {}", tib.read);
        assert!(
            tib.largest <= (CHUNK_PAGES * 64) as usize,
            "{}",
            tib.largest
        );
        // What the filter and the plan hold, whatever the RAM: one chunk of page structs, one
        // window bitmap, at most MAX_PIECES pieces and their program headers.
        let info = FakeKernel::debian(&[(0, 1)]).info;
        let chunk = PageFilter::new(&info, Level::all()).unwrap().buffer_bytes();
        assert_eq!(chunk, 32 << 10);
        assert_eq!(elf::WINDOW_PAGES / 8, 32 << 10);
        assert!(tib.pieces <= elf::MAX_PIECES);
        assert!(tib.header_bytes <= 64 + 56 * (elf::MAX_PIECES + 1) + 4096);
        // The same RAM packed at the bottom of a 4 GiB machine reads the same and plans alike.
        let low = run(&[(0, ram_pages)]);
        assert_eq!(
            low.stats,
            FilterStats {
                sections_without_map: 0,
                ..tib.stats
            }
        );
        assert!(
            tib.read.abs_diff(low.read) < 1 << 20,
            "{} vs {}",
            tib.read,
            low.read
        );
    }
}
