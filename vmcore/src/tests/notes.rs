//! Note walking and merging: empty and partial buffers, overflowing sizes, VMCOREINFO and prstatus.

use alloc::vec::Vec;

use super::{HDR_ADDR, kf_memory};
use crate::header::ElfCoreHeader;
use crate::notes::{Error, MAX_NOTE_BUFFER, NoteWarning, Notes, PrStatus};
use crate::testing::{
    FakeMemory, VMCOREINFO_TEXT, header_blob, load_phdr, note, note_phdr, prstatus_desc,
};

fn collect(buffers: &[Vec<u8>]) -> Result<Notes, Error> {
    let mut mem = FakeMemory::new();
    let mut phdrs = Vec::new();
    for (i, b) in buffers.iter().enumerate() {
        let addr = 0x10_0000 + i as u64 * 0x10_0000;
        phdrs.push(note_phdr(addr, b.len() as u64));
        mem.insert(addr, b.clone());
    }
    phdrs.push(load_phdr(0x100_0000, 0x100_0000, 0, 0x1000));
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let h = ElfCoreHeader::read(&mut mem, HDR_ADDR, None).unwrap();
    Notes::collect(&mut mem, &h)
}

#[test]
fn kf_buffers_merge_and_skip_empty_cpus() {
    let (mut mem, _) = kf_memory(4, &[0, 3], &[]);
    let h = ElfCoreHeader::read(&mut mem, HDR_ADDR, None).unwrap();
    let n = Notes::collect(&mut mem, &h).unwrap();
    let vmci = note("VMCOREINFO", 0, VMCOREINFO_TEXT.as_bytes());
    assert_eq!(n.bytes().len(), 2 * 356 + vmci.len());
    assert_eq!(&n.bytes()[2 * 356..], &vmci[..]);
    assert_eq!(n.len(), 3);
    assert_eq!(n.prstatus_count(), 2);
    assert!(n.warnings().is_empty());
    let sizes: Vec<u64> = n.buffers().iter().map(|b| b.real_size).collect();
    assert_eq!(sizes, [356, 0, 0, 356, vmci.len() as u64]);
    let pids: Vec<(i32, u64)> = n
        .iter()
        .filter_map(|x| x.prstatus())
        .map(|p| (p.pr_pid, p.rip()))
        .collect();
    assert_eq!(
        pids,
        [(100, 0xffff_ffff_8100_0000), (103, 0xffff_ffff_8100_0003)]
    );

    let info = n.vmcoreinfo().unwrap();
    assert_eq!(info.osrelease(), Some("6.1.0-56-cloud-amd64"));
    assert_eq!(info.page_size(), Some(4096));
    assert_eq!(info.crash_time(), Some(1_735_689_600));
    assert_eq!(info.kernel_offset(), Some(0x1c00_0000));
    assert_eq!(info.phys_base(), Some((-1_056_964_608i64) as u64));
    assert_eq!(info.get("SYMBOL(init_uts_ns)"), Some("ffffffff82a14760"));
    assert_eq!(info.get("NOPE"), None);

    // Re-indexing the merged bytes finds the same notes.
    let again = Notes::parse_merged(n.bytes());
    assert_eq!(again.bytes(), n.bytes());
    assert!(again.iter().eq(n.iter()));
}

#[test]
fn partial_buffers() {
    let cpu = note("CORE", 1, &prstatus_desc(7, 0x1234));
    // Exactly full, no terminator: accepted silently.
    let exact = cpu.clone();
    // Terminated, then junk after the terminator: ignored.
    let mut terminated = cpu.clone();
    terminated.extend_from_slice(&[0u8; 12]);
    terminated.extend_from_slice(&[0xaa; 20]);
    // 5 bytes left after a note: too short for a header.
    let mut tail = cpu.clone();
    tail.extend_from_slice(&[1, 2, 3, 4, 5]);
    let n = collect(&[exact, terminated, tail]).unwrap();
    assert_eq!(n.prstatus_count(), 3);
    assert_eq!(n.bytes().len(), 3 * 356);
    assert_eq!(
        n.warnings(),
        &[NoteWarning::TrailingBytes {
            phdr_index: Some(2),
            offset: 356,
            len: 5
        }]
    );
}

#[test]
fn oversize_notes_are_dropped_with_a_warning() {
    let cpu = note("CORE", 1, &prstatus_desc(1, 1));
    let mut buf = cpu.clone();
    // A second note claiming 4 GiB of descriptor.
    let mut bad = note("CORE", 1, &[0u8; 16]);
    bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    buf.extend_from_slice(&bad);
    buf.resize(1024, 0);
    // A buffer whose only note is 4 bytes too long.
    let mut short = note("VMCOREINFO", 0, b"OSRELEASE=x\n");
    short.truncate(short.len() - 4);
    let n = collect(&[buf, short]).unwrap();
    assert_eq!(n.bytes(), &cpu[..]);
    assert_eq!(
        n.warnings(),
        &[
            NoteWarning::Overflow {
                phdr_index: Some(0),
                offset: 356,
                n_namesz: u32::MAX,
                n_descsz: u32::MAX
            },
            NoteWarning::Overflow {
                phdr_index: Some(1),
                offset: 0,
                n_namesz: 11,
                n_descsz: 12
            }
        ]
    );
    assert!(n.vmcoreinfo().is_none());
}

#[test]
fn buffer_limits_and_read_errors() {
    let mut mem = FakeMemory::new();
    let phdrs = [note_phdr(0x10_0000, MAX_NOTE_BUFFER + 1)];
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let h = ElfCoreHeader::read(&mut mem, HDR_ADDR, None).unwrap();
    assert_eq!(
        Notes::collect(&mut mem, &h),
        Err(Error::BufferTooLarge {
            index: 0,
            p_memsz: MAX_NOTE_BUFFER + 1
        })
    );
    let phdrs = [note_phdr(0x10_0000, 368)];
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let h = ElfCoreHeader::read(&mut mem, HDR_ADDR, None).unwrap();
    assert!(matches!(
        Notes::collect(&mut mem, &h),
        Err(Error::OldMem { index: 0, .. })
    ));
}

#[test]
fn prstatus_and_vmcoreinfo_edge_cases() {
    assert!(PrStatus::parse(&[0u8; 100]).is_none());
    let p = PrStatus::parse(&prstatus_desc(-5, 0xdead)).unwrap();
    assert_eq!((p.pr_pid, p.rip(), p.rsp()), (-5, 0xdead, 0xdeae));
    let text = b"A=1\nbroken line\nA=2\nKERNELOFFSET=0x10\n\0\0\0";
    let info = crate::notes::VmcoreInfo::new(text);
    assert_eq!(info.get("A"), Some("2"));
    assert_eq!(info.kernel_offset(), Some(0x10));
    assert_eq!(info.entries().count(), 3);
    assert_eq!(info.page_size(), None);
    let empty = Notes::parse_merged(&[0u8; 64]);
    assert!(empty.is_empty());
}
