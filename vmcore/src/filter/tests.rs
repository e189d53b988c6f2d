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
