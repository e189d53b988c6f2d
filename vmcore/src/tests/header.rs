//! elfcorehdr validation: accepted shapes and typed rejections.

use alloc::vec;
use alloc::vec::Vec;

use super::{HDR_ADDR, kf_memory};
use crate::elf::{Elf64_Phdr, PN_XNUM, PT_LOAD};
use crate::header::{ElfCoreHeader, Error, MAX_PHYS_ADDR};
use crate::mem::OldMemError;
use crate::testing::{FakeMemory, core_ehdr, header_blob, load_phdr, note_phdr};

fn read_blob(blob: Vec<u8>, hint: Option<u64>) -> Result<ElfCoreHeader, Error> {
    let mut mem = FakeMemory::new();
    mem.insert(HDR_ADDR, blob);
    ElfCoreHeader::read(&mut mem, HDR_ADDR, hint)
}

fn with_loads(loads: &[Elf64_Phdr]) -> Result<ElfCoreHeader, Error> {
    let mut phdrs = vec![note_phdr(0x7f00_0000, 368)];
    phdrs.extend_from_slice(loads);
    read_blob(header_blob(&phdrs), None)
}

#[test]
fn kf_header_parses() {
    let (mut mem, phdrs) = kf_memory(4, &[0, 2], &[(0x10_0000, 0x1000_0000)]);
    let h = ElfCoreHeader::read(&mut mem, HDR_ADDR, Some(4096)).unwrap();
    assert_eq!(h.phdrs(), &phdrs[..]);
    assert_eq!(h.notes().count(), 5);
    assert_eq!(h.loads().count(), 2);
    assert_eq!(ElfCoreHeader::parse(&header_blob(&phdrs)).unwrap(), h);
}

#[test]
fn ident_and_field_errors() {
    let blob = header_blob(&[note_phdr(0x1000, 368)]);
    let cases: [(usize, u8, Error); 7] = [
        (0, 0x7e, Error::BadMagic { found: *b"~ELF" }),
        (4, 1, Error::BadClass(1)),
        (5, 2, Error::BadDataEncoding(2)),
        (6, 0, Error::BadIdentVersion(0)),
        (0x10, 2, Error::BadType(2)),
        (0x12, 3, Error::BadMachine(3)),
        (0x34, 52, Error::BadEhsize(52)),
    ];
    for (off, val, want) in cases {
        let mut b = blob.clone();
        b[off] = val;
        assert_eq!(read_blob(b, None), Err(want), "byte {off:#x}");
    }
    let mut b = blob.clone();
    b[0x14] = 2;
    assert_eq!(read_blob(b, None), Err(Error::BadVersion(2)));
    let mut b = blob.clone();
    b[0x36] = 32;
    assert_eq!(read_blob(b, None), Err(Error::BadPhentsize(32)));
    let mut b = blob;
    b[0x20] = 0x80;
    assert_eq!(read_blob(b, None), Err(Error::BadPhoff(0x80)));
}

#[test]
fn phnum_zero_rejected() {
    let blob = header_blob(&[]);
    assert_eq!(read_blob(blob, None), Err(Error::NoProgramHeaders));
}

#[test]
fn extended_numbering_rejected() {
    // 100k program headers can only be expressed with PN_XNUM (count in section header 0's sh_info).
    let mut e = core_ehdr(PN_XNUM);
    e.e_shoff = 64;
    e.e_shnum = 1;
    let mut blob = zerocopy::IntoBytes::as_bytes(&e).to_vec();
    let mut shdr0 = [0u8; 64];
    shdr0[44..48].copy_from_slice(&100_000u32.to_le_bytes());
    blob.extend_from_slice(&shdr0);
    assert_eq!(read_blob(blob, None), Err(Error::ExtendedNumbering));
}

#[test]
fn truncated_headers() {
    let blob = header_blob(&[note_phdr(0x1000, 368), note_phdr(0x2000, 368)]);
    // Size hint smaller than the ELF header, then smaller than the phdr table.
    assert_eq!(
        read_blob(blob.clone(), Some(40)),
        Err(Error::Truncated {
            needed: 64,
            available: 40
        })
    );
    assert_eq!(
        read_blob(blob.clone(), Some(64 + 56)),
        Err(Error::Truncated {
            needed: 64 + 112,
            available: 120
        })
    );
    // No hint, and memory ends after the first phdr.
    let short = blob[..64 + 56].to_vec();
    assert!(matches!(
        read_blob(short.clone(), None),
        Err(Error::OldMem {
            what: "program headers",
            source: OldMemError::OutOfRange { .. }
        })
    ));
    assert_eq!(
        ElfCoreHeader::parse(&short),
        Err(Error::Truncated {
            needed: 176,
            available: 120
        })
    );
    assert_eq!(
        ElfCoreHeader::parse(&blob[..10]),
        Err(Error::Truncated {
            needed: 64,
            available: 10
        })
    );
    // Header claims 65534 phdrs: the table runs off the mapped memory.
    let mut many = blob;
    many[0x38..0x3a].copy_from_slice(&0xfffeu16.to_le_bytes());
    assert!(matches!(read_blob(many, None), Err(Error::OldMem { .. })));
}

#[test]
fn header_address_overflow() {
    let mut mem = FakeMemory::new();
    assert_eq!(
        ElfCoreHeader::read(&mut mem, u64::MAX - 10, None),
        Err(Error::AddressOverflow {
            addr: u64::MAX - 10
        })
    );
}

#[test]
fn load_range_checks() {
    let mut big = load_phdr(0, 0x1000, 0, 0x1000);
    big.p_filesz = 0x2000;
    assert_eq!(
        with_loads(&[big]),
        Err(Error::FileszExceedsMemsz {
            index: 1,
            p_filesz: 0x2000,
            p_memsz: 0x1000
        })
    );
    // p_offset + p_memsz overflows u64.
    let wrap = load_phdr(0, u64::MAX - 0xfff, 0, 0x2000);
    assert!(matches!(
        with_loads(&[wrap]),
        Err(Error::RangeBeyondMaxPhys { index: 1, .. })
    ));
    // p_memsz alone beyond 2^52.
    let huge = load_phdr(0, 0, 0, MAX_PHYS_ADDR + 1);
    assert!(matches!(
        with_loads(&[huge]),
        Err(Error::RangeBeyondMaxPhys { index: 1, .. })
    ));
    // Ending exactly at 2^52 is fine.
    let top = load_phdr(0, MAX_PHYS_ADDR - 0x1000, 0, 0x1000);
    assert!(with_loads(&[top]).is_ok());
    // The same rules apply to PT_NOTE ranges.
    let bad_note = note_phdr(u64::MAX - 100, 368);
    assert!(matches!(
        read_blob(header_blob(&[bad_note]), None),
        Err(Error::RangeBeyondMaxPhys { index: 0, .. })
    ));
}

#[test]
fn overlapping_loads() {
    let dm = 0xffff_8880_0000_0000;
    let a = load_phdr(0x10_0000, 0x10_0000, dm + 0x10_0000, 0x10_0000);
    let b = load_phdr(0x1f_f000, 0x1f_f000, dm + 0x1f_f000, 0x1000);
    assert_eq!(
        with_loads(&[b, a]),
        Err(Error::OverlappingLoads {
            first: 1,
            second: 2
        })
    );
    // Identical duplicates overlap too.
    assert!(matches!(
        with_loads(&[a, a]),
        Err(Error::OverlappingLoads { .. })
    ));
    // Adjacent is fine; kernel text inside RAM is fine.
    let c = load_phdr(0x20_0000, 0x20_0000, dm + 0x20_0000, 0x1000);
    let text = load_phdr(0x10_0000, 0x10_0000, 0xffff_ffff_8100_0000, 0x8000);
    let h = with_loads(&[text, a, c]).unwrap();
    assert_eq!(h.loads().count(), 3);
    assert!(h.loads().all(|(_, p)| p.p_type == PT_LOAD));
}

/// A filter like the kernel's on QEMU's TCG CPU: 40 address bits, plus one MMIO page.
struct Qemu40;

impl crate::header::PhysFilter for Qemu40 {
    fn check(&self, start: u64, len: u64) -> Result<(), crate::header::DropReason> {
        use crate::header::{Below, DropReason};
        Below(1 << 40).check(start, len)?;
        let end = start + len;
        if start < 0xfee0_1000 && 0xfee0_0000 < end {
            return Err(DropReason::Refused {
                start: 0xfee0_0000,
                end: 0xfee0_1000,
            });
        }
        Ok(())
    }
}

#[test]
fn filtered_read_sets_aside_refused_ranges_and_keeps_the_rest() {
    use crate::header::DropReason;
    let phdrs = vec![
        note_phdr(0x7f00_0000, 368),
        note_phdr(0xffff_ffff_f000, 368),
        load_phdr(0x100_0000, 0x100_0000, 0xffff_ffff_8100_0000, 0x1000),
        load_phdr(0x7fff_ffff_0000, 0x7fff_ffff_0000, 0, 0x1000),
        load_phdr(0x200_0000, 0x200_0000, 0, 0x1000),
        load_phdr(u64::MAX - 0xfff, u64::MAX - 0xfff, 0, 0x2000),
        load_phdr(0xfee0_0000, 0xfee0_0000, 0, 0x1000),
        // Would overlap the load at 0x200_0000, but it is out of range first: set aside, so the
        // overlap check never sees it.
        load_phdr(0x200_0000, 0x1_0000_0000_0000, 0, 0x1000),
    ];
    let mut mem = FakeMemory::new();
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let h = ElfCoreHeader::read_filtered(&mut mem, HDR_ADDR, None, &Qemu40).unwrap();
    assert_eq!(h.phdrs(), &[phdrs[0], phdrs[2], phdrs[4]][..]);
    let dropped: Vec<(usize, DropReason)> =
        h.dropped().iter().map(|d| (d.index, d.reason)).collect();
    let beyond = DropReason::BeyondLimit { limit: 1 << 40 };
    assert_eq!(
        dropped,
        vec![
            (1, beyond),
            (3, beyond),
            (5, DropReason::Wraps),
            (
                6,
                DropReason::Refused {
                    start: 0xfee0_0000,
                    end: 0xfee0_1000
                }
            ),
            (7, beyond),
        ]
    );
    assert_eq!(h.dropped()[1].phdr, phdrs[3]);
    // The unfiltered read still rejects the wrapping range outright.
    assert!(matches!(
        ElfCoreHeader::read(&mut mem, HDR_ADDR, None),
        Err(Error::RangeBeyondMaxPhys { index: 5, .. })
    ));
    // Everything else is still checked on the kept headers.
    let mut bad = phdrs.clone();
    bad[2].p_filesz = 0x2000;
    mem.insert(HDR_ADDR, header_blob(&bad));
    assert!(matches!(
        ElfCoreHeader::read_filtered(&mut mem, HDR_ADDR, None, &Qemu40),
        Err(Error::FileszExceedsMemsz { index: 1, .. })
    ));
}

#[test]
fn below_filter_boundaries() {
    use crate::header::{Below, DropReason, PhysFilter};
    let f = Below(1 << 40);
    assert_eq!(f.check((1 << 40) - 0x1000, 0x1000), Ok(()));
    assert_eq!(
        f.check((1 << 40) - 0x1000, 0x1001),
        Err(DropReason::BeyondLimit { limit: 1 << 40 })
    );
    assert_eq!(
        f.check(1 << 40, 0),
        Err(DropReason::BeyondLimit { limit: 1 << 40 })
    );
    assert_eq!(f.check(u64::MAX, 1), Err(DropReason::Wraps));
}

/// A filtered vmcore file: PT_LOADs whose memory is longer than their bytes in the file, so
/// `p_offset + p_memsz` runs into the next load's file offset. The elfcorehdr validator refuses
/// it (file offsets are not physical ranges); the file parser reads it.
#[test]
fn a_filtered_vmcore_file_parses_as_a_file() {
    let mut a = load_phdr(0x10_0000, 0x2000, 0xffff_8880_0010_0000, 0xf0_0000);
    a.p_filesz = 0x2_0000;
    let b = load_phdr(0x100_0000, 0x2_2000, 0xffff_8880_0100_0000, 0x1_0000);
    let bytes = header_blob(&[a, b]);
    assert!(matches!(
        ElfCoreHeader::parse(&bytes),
        Err(Error::OverlappingLoads { .. })
    ));
    let h = ElfCoreHeader::parse_file(&bytes).unwrap();
    assert_eq!(h.loads().count(), 2);
    // The ELF header is still checked.
    let mut bad = bytes.clone();
    bad[4] = 1; // ELFCLASS32
    assert!(ElfCoreHeader::parse_file(&bad).is_err());
}
