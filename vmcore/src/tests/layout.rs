//! Output layout: the worked example of docs/dump-format.md#worked-example computed by hand, KL backup region, PT_NOTE filtering.

use alloc::vec;
use alloc::vec::Vec;

use super::HDR_ADDR;
use crate::elf::{Elf64_Phdr, PT_LOAD, PT_NOTE};
use crate::header::ElfCoreHeader;
use crate::layout::{Chunk, Error, Segment, VmcoreLayout};
use crate::notes::Notes;
use crate::prepare_dump;
use crate::testing::{
    FakeMemory, cpu_note_buffer, header_blob, load_phdr, note, note_phdr, vmcoreinfo_buffer,
};

const DM: u64 = 0xffff_8880_0000_0000;

/// docs/dump-format.md#worked-example: KF, 4 possible CPUs (all saved registers), VMCOREINFO with a 3000-byte text, kernel
/// text at 0x1000000 and three RAM ranges (the third deliberately not page aligned).
#[test]
fn proc_vmcore_worked_example() {
    let mut mem = FakeMemory::new();
    let mut phdrs = Vec::new();
    for cpu in 0..4u64 {
        let addr = 0x7e00_0000 + cpu * 0x1000;
        mem.insert(addr, cpu_note_buffer(Some((cpu as i32, cpu))));
        phdrs.push(note_phdr(addr, 368));
    }
    let text = "X".repeat(2999) + "\n";
    mem.insert(0x7f00_0000, vmcoreinfo_buffer(&text, 4132));
    phdrs.push(note_phdr(0x7f00_0000, 4132));
    phdrs.push(load_phdr(
        0x100_0000,
        0x100_0000,
        0xffff_ffff_8100_0000,
        0x1e0_0000,
    ));
    phdrs.push(load_phdr(0x10_0000, 0x10_0000, DM + 0x10_0000, 0x7fee_0000));
    phdrs.push(load_phdr(
        0x1_0000_0000,
        0x1_0000_0000,
        DM + 0x1_0000_0000,
        0x8000_0000,
    ));
    phdrs.push(load_phdr(
        0x2_0000_0800,
        0x2_0000_0800,
        DM + 0x2_0000_0800,
        0x1000,
    ));
    assert_eq!(phdrs.len(), 9);
    mem.insert(HDR_ADDR, header_blob(&phdrs));

    let plan = prepare_dump(&mut mem, HDR_ADDR, Some(4096)).unwrap();
    let l = &plan.layout;
    // 9 - 5 + 1 = 5 phdrs; 64 + 5 * 56 = 344 -> header area 4096.
    assert_eq!(l.header_bytes.len(), 4096);
    // 4 * 356 + (12 + 12 + 3000) = 4448 -> notes area 8192.
    assert_eq!(plan.notes.bytes().len(), 4448);
    assert_eq!(l.note_bytes.len(), 8192);
    assert_eq!(l.data_offset(), 12288);

    let out = ElfCoreHeader::parse(&l.header_bytes).unwrap();
    assert_eq!(out.ehdr().e_phnum, 5);
    assert!(l.header_bytes[344..].iter().all(|&b| b == 0));
    let p = out.phdrs();
    assert_eq!(
        p[0],
        Elf64_Phdr {
            p_type: PT_NOTE,
            p_flags: 0,
            p_offset: 4096,
            p_vaddr: 0,
            p_paddr: 0,
            p_filesz: 4448,
            p_memsz: 4448,
            p_align: 4
        }
    );
    // Text: chunk 0x1000000..0x2e00000 at 12288.
    assert_eq!(p[1].p_offset, 0x3000);
    // RAM 1: chunk 0x100000..0x7ffe0000 at 0x3000 + 0x1e00000.
    assert_eq!(p[2].p_offset, 0x1e0_3000);
    // RAM 2: at 0x1e03000 + 0x7fee0000.
    assert_eq!(p[3].p_offset, 0x81ce_3000);
    // RAM 3: chunk 0x200000000..0x200002000 at 0x81ce3000 + 0x80000000, data 0x800 into it.
    assert_eq!(p[4].p_offset, 0x1_01ce_3800);
    assert_eq!(l.total_size, 0x1_01ce_3000 + 0x2000);
    // Everything but p_offset is unchanged.
    for (o, i) in p[1..].iter().zip(&phdrs[5..]) {
        assert_eq!(
            Elf64_Phdr {
                p_offset: i.p_offset,
                ..*o
            },
            *i
        );
    }
    assert_eq!(
        l.chunks,
        vec![
            Chunk {
                phys: 0x100_0000,
                len: 0x1e0_0000,
                file_offset: 0x3000
            },
            Chunk {
                phys: 0x10_0000,
                len: 0x7fee_0000,
                file_offset: 0x1e0_3000
            },
            Chunk {
                phys: 0x1_0000_0000,
                len: 0x8000_0000,
                file_offset: 0x81ce_3000
            },
            Chunk {
                phys: 0x2_0000_0000,
                len: 0x2000,
                file_offset: 0x1_01ce_3000
            },
        ]
    );
    let s = l.summary;
    assert_eq!(
        (s.input_phnum, s.output_phnum, s.pt_notes, s.cpus, s.loads),
        (9, 5, 5, 4, 4)
    );
    assert!(s.vmcoreinfo);
    assert_eq!(s.total_size, l.total_size);

    // Segments tile the file.
    let mut at = 0u64;
    for seg in l.segments() {
        if let Segment::OldMem { file_offset, .. } = seg {
            assert_eq!(file_offset, at);
        }
        at += seg.len();
    }
    assert_eq!(at, l.total_size);
}

/// kexec-tools (KL) header: per-CPU buffers of crash_notes_size, and a backup-region load whose
/// `p_paddr` is 0 while the data lives at the copy in `p_offset`.
#[test]
fn kl_backup_region_reads_p_offset() {
    let mut mem = FakeMemory::new();
    let mut phdrs = Vec::new();
    for cpu in 0..2u64 {
        let addr = 0x3f00_0000 + cpu * 0x400;
        let mut b = cpu_note_buffer(Some((1, 2)));
        b.resize(1024, 0);
        mem.insert(addr, b);
        phdrs.push(note_phdr(addr, 1024));
    }
    mem.insert(
        0x3f10_0000,
        vmcoreinfo_buffer("OSRELEASE=5.4\nPAGESIZE=4096\n", 1024),
    );
    phdrs.push(note_phdr(0x3f10_0000, 1024));
    phdrs.push(load_phdr(
        0x20_0000,
        0x20_0000,
        0xffff_ffff_8120_0000,
        0x10_0000,
    ));
    // Backup: describes phys 0..0xa0000, data copied to 0x3d000000.
    phdrs.push(load_phdr(0, 0x3d00_0000, DM, 0xa_0000));
    phdrs.push(load_phdr(0x10_0000, 0x10_0000, DM + 0x10_0000, 0x30_0000));
    mem.add_pattern(0x3d00_0000, 0x3d0a_0000);
    mem.add_pattern(0x10_0000, 0x40_0000);
    // Low memory itself is deliberately unreadable.
    mem.insert(HDR_ADDR, header_blob(&phdrs));

    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    assert_eq!(plan.notes.prstatus_count(), 2);
    let mut file = Vec::new();
    let mut buf = vec![0u8; 8192];
    crate::write_vmcore(&plan.layout, &mut mem, &mut file, &mut buf, &mut |_, _| {}).unwrap();
    assert_eq!(file.len() as u64, plan.layout.total_size);

    let out = ElfCoreHeader::parse(&file).unwrap();
    assert_eq!(out.ehdr().e_phnum, 4);
    let backup = out.phdrs()[2];
    assert_eq!((backup.p_paddr, backup.p_memsz), (0, 0xa_0000));
    for (o, i) in out.loads().map(|x| x.1).zip(&phdrs[3..]) {
        let got = &file[o.p_offset as usize..(o.p_offset + o.p_memsz) as usize];
        let want = mem.expected(i.p_offset, i.p_memsz as usize).unwrap();
        assert!(got == &want[..], "load at {:#x}", i.p_offset);
    }
    let note = out.phdrs()[0];
    let merged = &file[note.p_offset as usize..(note.p_offset + note.p_filesz) as usize];
    assert_eq!(merged, plan.notes.bytes());
}

#[test]
fn notes_anywhere_are_filtered_and_order_kept() {
    let mut mem = FakeMemory::new();
    mem.insert(0x5000, note("CORE", 1, &[1; 8]));
    mem.insert(0x6000, note("VMCOREINFO", 0, b"PAGESIZE=4096\n"));
    let other = Elf64_Phdr {
        p_type: 0x6474_e550,
        ..load_phdr(1, 2, 3, 4)
    };
    let phdrs = [
        load_phdr(0x1_0000, 0x1_0000, DM, 0x1000),
        note_phdr(0x5000, 28),
        other,
        load_phdr(0x3_0000, 0x3_0000, DM + 0x3_0000, 0x1000),
        note_phdr(0x6000, 40),
    ];
    mem.add_pattern(0x1_0000, 0x4_0000);
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let out = ElfCoreHeader::parse(&plan.layout.header_bytes).unwrap();
    let types: Vec<u32> = out.phdrs().iter().map(|p| p.p_type).collect();
    assert_eq!(types, [PT_NOTE, PT_LOAD, 0x6474_e550, PT_LOAD]);
    assert_eq!(out.phdrs()[2], other);
    assert_eq!(out.phdrs()[0].p_filesz, 28 + 40);
    assert_eq!(out.phdrs()[1].p_offset, 8192);
    assert_eq!(out.phdrs()[3].p_offset, 8192 + 4096);
}

#[test]
fn no_notes_gives_empty_note_phdr() {
    let mut mem = FakeMemory::new();
    let phdrs = [load_phdr(0x10_0800, 0x10_0800, DM, 0x100)];
    mem.add_pattern(0x10_0000, 0x10_1000);
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let l = &plan.layout;
    assert!(l.note_bytes.is_empty());
    let out = ElfCoreHeader::parse(&l.header_bytes).unwrap();
    assert_eq!(out.ehdr().e_phnum, 2);
    assert_eq!((out.phdrs()[0].p_offset, out.phdrs()[0].p_memsz), (4096, 0));
    assert_eq!(out.phdrs()[1].p_offset, 4096 + 0x800);
    assert_eq!(l.total_size, 8192);
    assert_eq!(l.segments().count(), 2);
}

#[test]
fn empty_loads_and_phnum_limit() {
    let mut mem = FakeMemory::new();
    let phdrs = [
        note_phdr(0x5000, 0),
        load_phdr(0x1000, 0x1000, DM, 0),
        load_phdr(0x2000, 0x2000, DM, 0x1000),
    ];
    mem.add_pattern(0x1000, 0x3000);
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    assert_eq!(plan.layout.chunks[0].len, 0);
    assert_eq!(plan.layout.total_size, 8192);
    assert_eq!(plan.layout.segments().count(), 2);

    // 65534 phdrs without a PT_NOTE would need e_phnum = PN_XNUM.
    let many: Vec<Elf64_Phdr> = (0..0xfffe_u64)
        .map(|i| load_phdr(i << 12, i << 12, DM, 0x1000))
        .collect();
    let h = ElfCoreHeader::parse(&header_blob(&many)).unwrap();
    assert_eq!(
        VmcoreLayout::build(&h, &Notes::default()),
        Err(Error::TooManyProgramHeaders { phnum: 0xffff })
    );
}

/// A PT_LOAD and a PT_NOTE beyond the limit are left out; the output is exactly the dump of the
/// header without them.
#[test]
fn dropped_phdrs_leave_the_dump_of_the_rest() {
    use crate::header::Below;
    let good = vec![
        note_phdr(0x7e00_0000, 368),
        load_phdr(0x10_0000, 0x10_0000, DM + 0x10_0000, 0x3000),
        load_phdr(0x40_0000, 0x40_0000, DM + 0x40_0000, 0x1000),
    ];
    let mut all = good.clone();
    all.insert(1, note_phdr(0x8000_0000_0000, 368));
    all.insert(3, load_phdr(0x7fff_ffff_0000, 0x7fff_ffff_0000, 0, 0x2000));
    let mut mem = FakeMemory::new();
    mem.insert(0x7e00_0000, cpu_note_buffer(Some((1, 2))));
    mem.add_pattern(0x10_0000, 0x50_0000);
    mem.insert(HDR_ADDR, header_blob(&all));
    let plan = crate::prepare_dump_filtered(&mut mem, HDR_ADDR, None, &Below(1 << 40)).unwrap();
    assert_eq!(plan.header.dropped().len(), 2);
    mem.insert(HDR_ADDR, header_blob(&good));
    let want = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    assert_eq!(plan.layout, want.layout);
    assert_eq!(plan.layout.summary.loads, 2);
}
