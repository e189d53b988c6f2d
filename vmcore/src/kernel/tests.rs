use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::info::{InfoError, KernelInfo};
use super::testing::{PRESENT_RW, PS, PageTables};
use super::virt::{MAX_VIRT_READ, OldVirt, VirtError, VirtMemory};
use super::vtop::{START_KERNEL_MAP, Translator};
use crate::notes::VmcoreInfo;
use crate::testing::pattern_byte;

use super::testing::DEBIAN_6_1;

fn parse(text: &str) -> Result<KernelInfo, InfoError> {
    KernelInfo::parse(&VmcoreInfo::new(text.as_bytes()))
}

const MINIMAL: &str = "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nCRASHTIME=1764680000\n\
KERNELOFFSET=1a000000\nNUMBER(phys_base)=-16777216\nSYMBOL(init_top_pgt)=ffffffff9c80a000\n\
NUMBER(pgtable_l5_enabled)=0\n";

#[test]
fn debian_vmcoreinfo_parses_with_every_group() {
    let info = KernelInfo::parse(&VmcoreInfo::new(DEBIAN_6_1)).unwrap();
    assert_eq!(info.osrelease, "6.1.0-57-cloud-amd64");
    assert_eq!(info.page_size, 4096);
    assert!(!info.pgtable_l5);
    assert!(info.init_top_pgt >= START_KERNEL_MAP);
    assert!(info.crash_time.is_some());
    let sm = info.sparsemem().unwrap();
    assert!(sm.extreme);
    assert_eq!(sm.section_size_bits, 27);
    assert_eq!(sm.max_physmem_bits, 46);
    assert_eq!(sm.sections_per_root * sm.section_size, 4096);
    let pl = info.page_layout().unwrap();
    assert_eq!(pl.size, 64);
    assert!(pl.mapcount.is_some() && pl.private.is_some() && pl.compound_head.is_some());
    let pf = info.page_flags().unwrap();
    assert!(pf.buddy_mapcount.is_some());
    assert!(pf.slab.is_some());
    // The crash report's keys are reachable through the generic accessors.
    assert!(info.symbol("prb").unwrap() >= START_KERNEL_MAP);
    assert!(info.size("printk_ringbuffer").unwrap() > 0);
    assert!(info.offset("prb_desc", "state_var").is_ok());
    assert!(info.offset("printk_info", "seq").is_ok());
}

#[test]
fn minimal_core_keys_parse_and_signed_phys_base_wraps() {
    let info = parse(MINIMAL).unwrap();
    assert_eq!(info.phys_base, (-16_777_216i64) as u64);
    assert_eq!(info.kernel_offset, 0x1a00_0000);
    assert_eq!(info.crash_time, Some(1_764_680_000));
    // The filter's groups are absent: typed errors naming the first key needed.
    assert_eq!(
        info.sparsemem().unwrap_err(),
        InfoError::Missing {
            key: "SYMBOL(mem_section)".into()
        }
    );
    assert_eq!(info.page_layout().unwrap_err().key(), "SIZE(page)");
    assert_eq!(info.page_flags().unwrap_err().key(), "NUMBER(PG_lru)");
}

#[test]
fn missing_and_malformed_core_keys_name_the_key() {
    for key in [
        "OSRELEASE",
        "PAGESIZE",
        "NUMBER(phys_base)",
        "SYMBOL(init_top_pgt)",
    ] {
        let text: String = MINIMAL
            .lines()
            .filter(|l| !l.starts_with(key))
            .flat_map(|l| [l, "\n"])
            .collect();
        let err = parse(&text).unwrap_err();
        assert_eq!(err, InfoError::Missing { key: key.into() }, "without {key}");
        assert!(alloc::format!("{err}").contains(key));
    }
    let bad = MINIMAL.replace("PAGESIZE=4096", "PAGESIZE=4k");
    assert!(matches!(parse(&bad), Err(InfoError::Malformed { ref key, .. }) if key == "PAGESIZE"));
    let bad = MINIMAL.replace("PAGESIZE=4096", "PAGESIZE=65536");
    assert!(
        matches!(parse(&bad), Err(InfoError::OutOfRange { ref key, value: 65536 }) if key == "PAGESIZE")
    );
    let bad = MINIMAL.replace("=ffffffff9c80a000", "=ffffffff9c80a00g");
    assert_eq!(parse(&bad).unwrap_err().key(), "SYMBOL(init_top_pgt)");
    // A page-table root in user space or unaligned is refused.
    let bad = MINIMAL.replace("=ffffffff9c80a000", "=7fff0000");
    assert!(matches!(parse(&bad), Err(InfoError::OutOfRange { .. })));
    let bad = MINIMAL.replace("pgtable_l5_enabled)=0", "pgtable_l5_enabled)=2");
    assert_eq!(parse(&bad).unwrap_err().key(), "NUMBER(pgtable_l5_enabled)");
    let bad = MINIMAL.replace("CRASHTIME=1764680000", "CRASHTIME=x");
    assert_eq!(parse(&bad).unwrap_err().key(), "CRASHTIME");
}

#[test]
fn filter_groups_reject_impossible_values() {
    let debian = core::str::from_utf8(DEBIAN_6_1).unwrap();
    let with = |from: &str, to: &str| -> KernelInfo {
        let text = debian.replace(from, to);
        assert_ne!(text, debian, "{from} is in the capture");
        parse(&text).unwrap()
    };
    let e = with("SIZE(page)=64", "SIZE(page)=4")
        .page_layout()
        .unwrap_err();
    assert_eq!(e.key(), "SIZE(page)");
    let e = with("OFFSET(page.flags)=0", "OFFSET(page.flags)=60")
        .page_layout()
        .unwrap_err();
    assert_eq!(e.key(), "OFFSET(page.flags)");
    let e = with(
        "NUMBER(SECTION_SIZE_BITS)=27",
        "NUMBER(SECTION_SIZE_BITS)=99",
    )
    .sparsemem()
    .unwrap_err();
    assert_eq!(e.key(), "NUMBER(SECTION_SIZE_BITS)");
    let e = with("NUMBER(PG_lru)=", "NUMBER(PG_lru)=7") // "7<n>": two digits, >= 64
        .page_flags()
        .unwrap_err();
    assert_eq!(e.key(), "NUMBER(PG_lru)");
    let e = with("LENGTH(mem_section)=2048", "LENGTH(mem_section)=2047")
        .sparsemem()
        .unwrap_err();
    assert_eq!(e.key(), "LENGTH(mem_section)");
}

#[test]
fn generic_accessors_parse_each_kind() {
    let text = alloc::format!(
        "{MINIMAL}SYMBOL(prb)=ffffffff9d0a1b20\nSIZE(printk_ringbuffer)=80\n\
OFFSET(prb_desc.state_var)=0\nLENGTH(printk_info.text_len)=1\nNUMBER(neg)=-3\n"
    );
    let info = parse(&text).unwrap();
    assert_eq!(info.symbol("prb"), Ok(0xffff_ffff_9d0a_1b20));
    assert_eq!(info.size("printk_ringbuffer"), Ok(80));
    assert_eq!(info.offset("prb_desc", "state_var"), Ok(0));
    assert_eq!(info.length("printk_info.text_len"), Ok(1));
    assert_eq!(info.number("neg"), Ok(-3));
    assert_eq!(info.number_opt("absent"), Ok(None));
    assert_eq!(
        info.offset("prb", "nope").unwrap_err().key(),
        "OFFSET(prb.nope)"
    );
}

// ---- page-table walk ----

const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
const VMEMMAP: u64 = 0xffff_ea00_0000_0000;
const VMALLOC: u64 = 0xffff_c900_0000_0000;
/// 5-level direct map base (page_offset_base without KASLR).
const DIRECT_MAP_L5: u64 = 0xff11_0000_0000_0000;

/// Tables with a 1 GiB direct map of RAM 0..1 GiB, a 2 MiB vmemmap page and two 4 KiB vmalloc pages
/// whose frames are not adjacent.
fn sample(five_level: bool) -> PageTables {
    let mut t = PageTables::new(five_level, 0x10_0000);
    t.mem.add_pattern(0, 1 << 30);
    let dm = if five_level {
        DIRECT_MAP_L5
    } else {
        DIRECT_MAP
    };
    t.map_1g(dm, 0);
    t.map_2m(VMEMMAP, 0x20_0000 * 3);
    t.map_4k(VMALLOC, 0x5000);
    t.map_4k(VMALLOC + 0x1000, 0x9000);
    t
}

fn read(t: &mut PageTables, tr: &Translator, va: u64, len: usize) -> Result<Vec<u8>, VirtError> {
    let mut buf = vec![0u8; len];
    OldVirt::new(&mut t.mem, tr).read_virt(va, &mut buf)?;
    Ok(buf)
}

fn pattern(phys: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(phys + i)).collect()
}

#[test]
fn four_and_five_level_walks_resolve_every_page_size() {
    for five in [false, true] {
        let mut t = sample(five);
        let tr = Translator::from_parts(t.root, five, 0);
        let dm = if five { DIRECT_MAP_L5 } else { DIRECT_MAP };
        let m = tr.translate(&mut t.mem, dm + 0x1234_5678).unwrap();
        assert_eq!(
            (m.size, m.phys_of(dm + 0x1234_5678)),
            (1 << 30, 0x1234_5678)
        );
        let m = tr.translate(&mut t.mem, VMEMMAP + 0x10_0040).unwrap();
        assert_eq!(
            (m.size, m.phys_of(VMEMMAP + 0x10_0040)),
            (2 << 20, 0x70_0040)
        );
        let m = tr.translate(&mut t.mem, VMALLOC + 0x1008).unwrap();
        assert_eq!((m.size, m.phys_of(VMALLOC + 0x1008)), (4096, 0x9008));
        // Data read back is the physical memory's.
        assert_eq!(
            read(&mut t, &tr, dm + 0x3000_0000, 64).unwrap(),
            pattern(0x3000_0000, 64)
        );
        // A read across two 4 KiB pages whose frames are apart.
        let got = read(&mut t, &tr, VMALLOC + 0xff0, 0x20).unwrap();
        let mut want = pattern(0x5ff0, 0x10);
        want.extend(pattern(0x9000, 0x10));
        assert_eq!(got, want, "five_level={five}");
    }
}

#[test]
fn a_four_level_walk_of_five_level_tables_goes_elsewhere() {
    // Negative control for the level count: the same va through the wrong depth does not reach
    // the 4 KiB page.
    let mut t = sample(true);
    let wrong = Translator::from_parts(t.root, false, 0);
    assert_ne!(
        wrong
            .translate(&mut t.mem, VMALLOC + 0x1008)
            .map(|m| m.phys_of(VMALLOC + 0x1008)),
        Ok(0x9008)
    );
}

#[test]
fn kernel_image_addresses_use_phys_base_without_tables() {
    let mut t = PageTables::new(false, 0x10_0000);
    t.mem.add_pattern(0, 1 << 30);
    let tr = Translator::from_parts(t.root, false, 0x1e00_0000);
    let va = START_KERNEL_MAP + 0x0100_2345;
    assert_eq!(
        tr.translate(&mut t.mem, va).unwrap().phys_of(va),
        0x1f00_2345
    );
    assert_eq!(read(&mut t, &tr, va, 16).unwrap(), pattern(0x1f00_2345, 16));
    // Modules (just above the image map) go through the (empty) tables.
    assert_eq!(
        tr.translate(&mut t.mem, START_KERNEL_MAP + (1 << 30)),
        Err(VirtError::NotMapped {
            va: START_KERNEL_MAP + (1 << 30)
        })
    );
}

#[test]
fn root_from_vmcoreinfo_is_the_image_address_translated() {
    let info = parse(MINIMAL).unwrap();
    let tr = Translator::new(&info);
    assert_eq!(
        tr.root(),
        0xffff_ffff_9c80_a000u64 - START_KERNEL_MAP - 16_777_216
    );
    assert!(!tr.five_level());
}

#[test]
fn bad_entries_are_typed_errors() {
    let mut t = sample(false);
    let tr = Translator::from_parts(t.root, false, 0);
    // Not present at every level.
    assert_eq!(
        tr.translate(&mut t.mem, VMALLOC + 0x2000),
        Err(VirtError::NotMapped {
            va: VMALLOC + 0x2000
        })
    );
    assert_eq!(
        tr.translate(&mut t.mem, 0xffff_f000_0000_0000),
        Err(VirtError::NotMapped {
            va: 0xffff_f000_0000_0000
        })
    );
    // Non-canonical.
    assert_eq!(
        tr.translate(&mut t.mem, 0x0000_9000_0000_0000),
        Err(VirtError::NotMapped {
            va: 0x0000_9000_0000_0000
        })
    );
    // PS set in a PML4E is reserved.
    let (pml4, i) = t.slot(DIRECT_MAP, 4);
    let good = t.entry(pml4, i);
    t.set_entry(pml4, i, good | PS);
    assert!(matches!(
        tr.translate(&mut t.mem, DIRECT_MAP),
        Err(VirtError::BadEntry { level: 4, .. })
    ));
    t.set_entry(pml4, i, good);
    // A 2 MiB entry with must-be-zero bit 13 set.
    let (pd, i) = t.slot(VMEMMAP, 2);
    t.set_entry(pd, i, 0x60_0000 | 0x2000 | PRESENT_RW | PS);
    assert!(matches!(
        tr.translate(&mut t.mem, VMEMMAP),
        Err(VirtError::BadEntry { level: 2, .. })
    ));
    // A 1 GiB entry with bit 20 set.
    let (pdpt, i) = t.slot(DIRECT_MAP, 3);
    t.set_entry(pdpt, i, (1 << 20) | PRESENT_RW | PS);
    assert!(matches!(
        tr.translate(&mut t.mem, DIRECT_MAP),
        Err(VirtError::BadEntry { level: 3, .. })
    ));
    // An address beyond a 46-bit physical width.
    t.set_entry(pdpt, i, (1 << 50) | PRESENT_RW | PS);
    assert!(tr.translate(&mut t.mem, DIRECT_MAP).is_ok());
    let narrow = tr.with_phys_bits(46);
    assert!(matches!(
        narrow.translate(&mut t.mem, DIRECT_MAP),
        Err(VirtError::BadEntry { level: 3, .. })
    ));
    // A table pointing at unreadable memory.
    let (pt, i) = t.slot(VMALLOC, 1);
    let _ = pt;
    let (pd, j) = t.slot(VMALLOC, 2);
    t.set_entry(pd, j, 0x7_0000_0000 | PRESENT_RW);
    assert!(matches!(
        tr.translate(&mut t.mem, VMALLOC),
        Err(VirtError::OldMem { .. })
    ));
    let _ = i;
}

#[test]
fn self_referencing_and_garbage_tables_end_in_bounded_reads() {
    // The root's every entry points at the root itself: a "loop" costs exactly one read per level.
    let mut t = PageTables::new(false, 0x10_0000);
    let root = t.root;
    for i in 0..512 {
        t.set_entry(root, i, root | PRESENT_RW);
    }
    let tr = Translator::from_parts(root, false, 0);
    let before = t.mem.reads;
    let m = tr.translate(&mut t.mem, DIRECT_MAP).unwrap();
    assert_eq!(t.mem.reads - before, 4);
    assert_eq!(m.phys_start, root); // the recursive map's leaf is the root frame
    // Garbage tables: random entries, random addresses; every outcome is a value, never a panic,
    // and never more than 5 reads per translation.
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for five in [false, true] {
        let mut t = PageTables::new(five, 0x10_0000);
        let mut tables = vec![t.root];
        for _ in 0..3 {
            tables.push(t.slot(rnd() | 0xffff_8000_0000_0000, 2).0);
        }
        for &tb in &tables {
            for i in 0..512 {
                // Mostly pointers into the table area, some anywhere.
                let e = if rnd() % 4 == 0 {
                    rnd()
                } else {
                    tables[(rnd() % tables.len() as u64) as usize] | (rnd() & 0x8000_0000_0000_0fff)
                };
                t.set_entry(tb, i, e);
            }
        }
        let tr = Translator::from_parts(t.root, five, 0);
        for _ in 0..5000 {
            let va = rnd();
            let before = t.mem.reads;
            let _ = tr.translate(&mut t.mem, va);
            assert!(t.mem.reads - before <= 5);
            let mut buf = [0u8; 3];
            let _ = OldVirt::new(&mut t.mem, &tr).read_virt(va, &mut buf);
        }
    }
}

#[test]
fn overlong_reads_are_refused_before_any_access() {
    let mut t = sample(false);
    let tr = Translator::from_parts(t.root, false, 0);
    let mut buf = vec![0u8; MAX_VIRT_READ + 1];
    let before = t.mem.reads;
    assert_eq!(
        OldVirt::new(&mut t.mem, &tr).read_virt(DIRECT_MAP, &mut buf),
        Err(VirtError::TooLong {
            len: MAX_VIRT_READ + 1
        })
    );
    assert_eq!(t.mem.reads, before);
}

#[test]
fn the_adapter_walks_once_per_large_page() {
    let mut t = sample(false);
    let tr = Translator::from_parts(t.root, false, 0);
    let before = t.mem.reads;
    {
        let mut v = OldVirt::new(&mut t.mem, &tr);
        let mut buf = [0u8; 64];
        for k in 0..100u64 {
            v.read_virt(VMEMMAP + k * 64, &mut buf).unwrap();
        }
    }
    // 3 table reads (PML4E, PDPTE, PDE) for the one walk + 100 data reads.
    assert_eq!(t.mem.reads - before, 103);
}
