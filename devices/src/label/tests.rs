use alloc::vec;
use alloc::vec::Vec;

use core::cell::RefCell;

use super::*;

const UUID: [u8; 16] = *b"0123456789abcdef";
const MIB: u64 = 1 << 20;

fn label(cap: u64) -> Label {
    Label::new(UUID, cap, 1_700_000_000).unwrap()
}

/// Rewrites a field of serialized bytes and fixes the CRC at `crc_at`.
fn patch(bytes: &mut [u8], at: usize, v: &[u8], crc_at: usize) {
    bytes[at..at + v.len()].copy_from_slice(v);
    let c = CRC32.checksum(&bytes[..crc_at]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn label_round_trip() {
    let l = label(64 * MIB);
    let b = l.to_bytes();
    assert_eq!(b.len(), LABEL_BYTES);
    assert_eq!(&b[..8], b"RKDUMPLB");
    assert!(b[64..].iter().all(|&x| x == 0));
    assert_eq!(Label::parse(&b), Ok(l));
    assert_eq!(Label::parse(&b[..64]), Ok(l));
    assert_eq!(l.data_offset, DEFAULT_DATA_OFFSET);
    assert_eq!(l.check_device(64 * MIB), Ok(()));
    assert_eq!(
        l.check_device(32 * MIB),
        Err(Error::DeviceTooSmall {
            device: 32 * MIB,
            label: 64 * MIB
        })
    );
}

#[test]
fn label_rejects_corruption() {
    let good = label(64 * MIB).to_bytes();
    assert_eq!(Label::parse(&good[..63]), Err(Error::Short));

    let mut b = good.clone();
    b[0x10] ^= 1;
    assert!(matches!(Label::parse(&b), Err(Error::BadCrc { .. })));

    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(Label::parse(&b), Err(Error::BadMagic));
    // An MBR boot sector is not a label.
    let mut mbr = vec![0u8; 512];
    mbr[510..].copy_from_slice(&[0x55, 0xAA]);
    assert_eq!(Label::parse(&mbr), Err(Error::BadMagic));

    let mut b = good.clone();
    patch(&mut b, 0x08, &2u32.to_le_bytes(), 0x3C);
    assert_eq!(Label::parse(&b), Err(Error::WrongVersion(2)));

    let mut b = good.clone();
    patch(&mut b, 0x28, &1000u64.to_le_bytes(), 0x3C);
    assert!(matches!(Label::parse(&b), Err(Error::Inconsistent(_))));

    let mut b = good;
    patch(&mut b, 0x20, &(MIB + 4096).to_le_bytes(), 0x3C);
    assert!(matches!(Label::parse(&b), Err(Error::TooSmall { .. })));
}

#[test]
fn label_new_checks_sizes() {
    assert!(matches!(
        Label::new(UUID, MIB, 0),
        Err(Error::TooSmall { needed, .. }) if needed == MIB + 3 * 4096
    ));
    assert!(Label::new(UUID, MIB + 3 * 4096, 0).is_ok());
    assert!(matches!(
        Label::new(UUID, 64 * MIB + 100, 0),
        Err(Error::Inconsistent(_))
    ));
    assert!(matches!(
        Label::with_data_offset(UUID, 64 * MIB, 2048, 0),
        Err(Error::Inconsistent(_))
    ));
    assert!(matches!(
        Label::with_data_offset(UUID, 64 * MIB, !4095, 0),
        Err(Error::Inconsistent(_))
    ));
    assert!(Label::with_data_offset(UUID, 64 * MIB, 4096, 0).is_ok());
}

#[test]
fn layout_when_the_dump_fits() {
    let l = label(64 * MIB);
    let size = 10 * MIB + 123;
    let r = record_layout(&l, size).unwrap();
    assert!(r.fits);
    assert_eq!(r.writable_bytes, size);
    assert_eq!(r.header_lba, MIB / 512);
    assert_eq!(r.data_lba, (MIB + 4096) / 512);
    assert_eq!(r.n_blocks, 11);
    assert_eq!(r.table_lba, r.data_lba + (10 * MIB + 4096) / 512);
    assert_eq!(r.table_bytes, 4096);
    assert_eq!(r.end_lba, r.table_lba + 8);
    assert!(r.end_lba * 512 <= l.capacity_bytes);
    // Exactly full disk still fits.
    let exact = 64 * MIB - MIB - 4096 - 4096;
    let r = record_layout(&l, exact).unwrap();
    assert!(r.fits);
    assert_eq!(r.end_lba * 512, 64 * MIB);
    assert!(!record_layout(&l, exact + 1).unwrap().fits);
}

#[test]
fn layout_truncates_a_dump_too_big() {
    let l = label(8 * MIB);
    let r = record_layout(&l, 100 * MIB).unwrap();
    assert!(!r.fits);
    assert_eq!(r.writable_bytes % 4096, 0);
    assert_eq!(r.writable_bytes, 8 * MIB - MIB - 4096 - 4096);
    assert_eq!(r.n_blocks, 7);
    assert!(r.end_lba * 512 <= l.capacity_bytes);
    // The smallest disk takes one page.
    let tiny = label(MIB + 3 * 4096);
    let r = record_layout(&tiny, 100 * MIB).unwrap();
    assert_eq!((r.writable_bytes, r.n_blocks, r.fits), (4096, 1, false));
}

/// A disk image plus the writer a dump kernel would run.
fn write_dump(l: &Label, vmcore: &[u8]) -> Vec<u8> {
    write_dump_with(l, vmcore, ChecksumKind::Full)
}

fn write_dump_with(l: &Label, vmcore: &[u8], kind: ChecksumKind) -> Vec<u8> {
    let mut disk = vec![0u8; l.capacity_bytes as usize];
    disk[..LABEL_BYTES].copy_from_slice(&l.to_bytes());
    let r = record_layout(l, vmcore.len() as u64).unwrap();
    let mut h = RecordHeader::new(l, &r, vmcore.len() as u64, 42, [7; 16], b"6.12.0-test");
    h.flags = kind as u32;
    let hdr_at = (r.header_lba * 512) as usize;
    disk[hdr_at..hdr_at + HEADER_BYTES].copy_from_slice(&h.to_bytes());
    let w = r.writable_bytes as usize;
    let data_at = (r.data_lba * 512) as usize;
    let mut sums = BlockXxh64::new(r.block_size, kind);
    // Fed in odd-sized pieces, as a streaming writer would.
    for piece in vmcore[..w].chunks(300_007) {
        sums.update(piece);
    }
    disk[data_at..data_at + w].copy_from_slice(&vmcore[..w]);
    let t = xxh64_table(&sums.finish());
    assert_eq!(t.len() as u64, r.table_bytes);
    let table_at = (r.table_lba * 512) as usize;
    disk[table_at..table_at + t.len()].copy_from_slice(&t);
    h.finish(w as u64);
    disk[hdr_at..hdr_at + HEADER_BYTES].copy_from_slice(&h.to_bytes());
    disk
}

fn reader(disk: &[u8]) -> impl FnMut(u64, &mut [u8]) -> Result<(), ReadFailed> + '_ {
    move |off, buf| {
        let o = usize::try_from(off).map_err(|_| ReadFailed)?;
        let src = disk.get(o..o + buf.len()).ok_or(ReadFailed)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fn header_of(disk: &[u8]) -> (Label, &[u8]) {
    let l = Label::parse(&disk[..LABEL_BYTES]).unwrap();
    let at = l.data_offset as usize;
    (l, &disk[at..at + HEADER_BYTES])
}

fn vmcore(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn record_round_trip_and_flipped_byte() {
    let l = label(16 * MIB);
    let core = vmcore(5 * MIB as usize + 777);
    let mut disk = write_dump(&l, &core);
    let (l2, h) = header_of(&disk);
    let s = verify_record(&l2, h, reader(&disk)).unwrap();
    assert_eq!(s.header.state, State::Complete);
    assert_eq!(s.header.written, core.len() as u64);
    assert_eq!(s.blocks_verified, 6);
    assert_eq!(s.header.timestamp, 42);
    assert_eq!(s.header.osrelease_str(), Some("6.12.0-test"));
    let d = s.header.data_offset() as usize;
    assert_eq!(&disk[d..d + core.len()], &core[..]);

    // One flipped byte in block 3 is caught by its checksum.
    disk[d + 3 * MIB as usize + 10] ^= 0x40;
    let (l2, h) = header_of(&disk);
    assert!(matches!(
        verify_record(&l2, h, reader(&disk)),
        Err(Error::BlockChecksum { block: 3, .. })
    ));
    // And in the short last block.
    disk[d + 3 * MIB as usize + 10] ^= 0x40;
    disk[d + core.len() - 1] ^= 1;
    let (l2, h) = header_of(&disk);
    assert!(matches!(
        verify_record(&l2, h, reader(&disk)),
        Err(Error::BlockChecksum { block: 5, .. })
    ));
    // A failing reader is reported.
    assert!(matches!(
        verify_record(&l2, h, |_, _| Err(ReadFailed)),
        Err(Error::ReadFailed { .. })
    ));
}

#[test]
fn truncated_record_verifies_what_was_written() {
    let l = label(4 * MIB);
    let core = vmcore(10 * MIB as usize);
    let disk = write_dump(&l, &core);
    let (l2, h) = header_of(&disk);
    let s = verify_record(&l2, h, reader(&disk)).unwrap();
    assert_eq!(s.header.state, State::Truncated);
    assert_eq!(s.header.vmcore_size, 10 * MIB);
    assert_eq!(s.header.written, 4 * MIB - MIB - 2 * 4096);
    assert_eq!(s.blocks_verified, 3);
}

#[test]
fn incomplete_record_verifies_up_to_its_last_checkpoint() {
    let l = label(16 * MIB);
    let r = record_layout(&l, 3 * MIB).unwrap();
    let mut h = RecordHeader::new(&l, &r, 3 * MIB, 0, [1; 16], b"");
    // No checkpoint yet: nothing to verify, nothing read.
    let s = verify_record(&l, &h.to_bytes(), |_, _| Err(ReadFailed)).unwrap();
    assert_eq!(s.header.state, State::Incomplete);
    assert_eq!(s.blocks_verified, 0);
    assert_eq!(s.header.osrelease_str(), Some(""));
    // A checkpoint covering two blocks: both are read and checked against the table.
    h.written = 2 * MIB;
    let disk = RefCell::new(vec![0u8; 16 * MIB as usize]);
    let sums = [
        BlockXxh64::of_block(ChecksumKind::Full, &vec![0u8; MIB as usize]),
        BlockXxh64::of_block(ChecksumKind::Full, &vec![0u8; MIB as usize]),
    ];
    let t = h.table_offset as usize;
    disk.borrow_mut()[t..t + 16].copy_from_slice(&xxh64_table(&sums)[..16]);
    let read = |off: u64, buf: &mut [u8]| {
        let off = off as usize;
        buf.copy_from_slice(&disk.borrow()[off..off + buf.len()]);
        Ok(())
    };
    let s = verify_record(&l, &h.to_bytes(), read).unwrap();
    assert_eq!((s.header.state, s.blocks_verified), (State::Incomplete, 2));
    disk.borrow_mut()[h.data_offset() as usize + MIB as usize + 9] = 1;
    assert!(matches!(
        verify_record(&l, &h.to_bytes(), read),
        Err(Error::BlockChecksum { block: 1, .. })
    ));
}

#[test]
fn record_header_rejects_corruption() {
    let l = label(16 * MIB);
    let r = record_layout(&l, 3 * MIB).unwrap();
    let mut h = RecordHeader::new(&l, &r, 3 * MIB, 0, [1; 16], b"x");
    h.finish(3 * MIB);
    let good = h.to_bytes();
    assert_eq!(RecordHeader::parse(&l, &good), Ok(h));
    assert_eq!(RecordHeader::parse(&l, &good[..100]), Err(Error::Short));

    let mut b = good.clone();
    b[0x20] ^= 1;
    assert!(matches!(
        RecordHeader::parse(&l, &b),
        Err(Error::BadCrc { .. })
    ));
    let mut b = good.clone();
    b[7] = b'X';
    assert_eq!(RecordHeader::parse(&l, &b), Err(Error::BadMagic));
    let mut b = good.clone();
    patch(&mut b, 0x08, &9u32.to_le_bytes(), 0xAC);
    assert_eq!(RecordHeader::parse(&l, &b), Err(Error::WrongVersion(9)));
    let mut b = good.clone();
    patch(&mut b, 0x0C, &4u32.to_le_bytes(), 0xAC);
    assert_eq!(RecordHeader::parse(&l, &b), Err(Error::BadState(4)));
    // Another label's record (e.g. the disk was prepared again).
    let other = Label::new([9; 16], 16 * MIB, 0).unwrap();
    assert_eq!(RecordHeader::parse(&other, &good), Err(Error::WrongLabel));
    // Claims more written than planned: the table would overlap the data.
    let mut b = good.clone();
    patch(&mut b, 0x18, &(4 * MIB).to_le_bytes(), 0xAC);
    patch(&mut b, 0x20, &(4 * MIB).to_le_bytes(), 0xAC);
    patch(&mut b, 0x30, &4u64.to_le_bytes(), 0xAC);
    assert!(matches!(
        RecordHeader::parse(&l, &b),
        Err(Error::Inconsistent(_))
    ));
    // Table beyond the disk.
    let mut b = good.clone();
    patch(&mut b, 0x38, &(16 * MIB).to_le_bytes(), 0xAC);
    assert!(matches!(
        RecordHeader::parse(&l, &b),
        Err(Error::Inconsistent(_))
    ));
    // Hostile block size.
    let mut b = good.clone();
    patch(&mut b, 0x28, &(1u32 << 31).to_le_bytes(), 0xAC);
    assert!(matches!(
        RecordHeader::parse(&l, &b),
        Err(Error::Inconsistent(_))
    ));
    // Complete with less than everything.
    let mut b = good;
    patch(&mut b, 0x20, &(2 * MIB).to_le_bytes(), 0xAC);
    patch(&mut b, 0x30, &2u64.to_le_bytes(), 0xAC);
    assert!(matches!(
        RecordHeader::parse(&l, &b),
        Err(Error::Inconsistent(_))
    ));
}

#[test]
fn block_sums_match_one_shot() {
    let data = vmcore(30_000);
    for kind in [ChecksumKind::Full, ChecksumKind::Sampled] {
        let mut c = BlockXxh64::new(8192, kind);
        for piece in data.chunks(7) {
            c.update(piece);
        }
        let sums = c.finish();
        let expect: Vec<u64> = data
            .chunks(8192)
            .map(|b| BlockXxh64::of_block(kind, b))
            .collect();
        assert_eq!(sums, expect, "{kind:?}");
        assert_eq!(xxh64_table(&sums).len(), 4096);
    }
    // Full covers every byte; sampled exactly the two 64-byte ends of each page.
    let full = |d: &[u8]| BlockXxh64::of_block(ChecksumKind::Full, d);
    let sampled = |d: &[u8]| BlockXxh64::of_block(ChecksumKind::Sampled, d);
    let mut d = data[..8192].to_vec();
    let (f0, s0) = (full(&d), sampled(&d));
    d[100] ^= 1; // middle of page 0
    assert_ne!(full(&d), f0);
    assert_eq!(sampled(&d), s0);
    d[4096 + 10] ^= 1; // head of page 1
    assert_ne!(sampled(&d), s0);
    let mut e = data[..8192].to_vec();
    e[4095] ^= 1; // tail of page 0
    assert_ne!(sampled(&e), s0);
    assert_eq!(
        sampled(&data[..8192]),
        xxhash_rust::xxh64::xxh64(
            &[&data[..64], &data[4032..4160], &data[8128..8192]].concat(),
            0
        )
    );
    assert!(xxh64_table(&[]).is_empty());
}

#[test]
fn sampled_records_verify_and_catch_unwritten_pages() {
    let l = Label::new([1; 16], 8 << 20, 0).unwrap();
    let v = vmcore(300_000);
    let mut disk = write_dump_with(&l, &v, ChecksumKind::Sampled);
    let r = record_layout(&l, v.len() as u64).unwrap();
    let hdr_at = (r.header_lba * 512) as usize;
    let read = |disk: &Vec<u8>| {
        verify_record(&l, &disk[hdr_at..hdr_at + HEADER_BYTES], |off, buf| {
            buf.copy_from_slice(&disk[off as usize..off as usize + buf.len()]);
            Ok(())
        })
    };
    assert!(read(&disk).is_ok());
    // A page that was never written (zeros) is caught.
    let data_at = (r.data_lba * 512) as usize;
    disk[data_at + 8192..data_at + 12288].fill(0);
    assert!(matches!(read(&disk), Err(Error::BlockChecksum { .. })));
}

/// A Complete header for `written` bytes in 4 KiB blocks, its table right after the data.
fn header_4k_blocks(l: &Label, written: u64) -> Vec<u8> {
    let r = record_layout(l, 0).unwrap();
    let mut h = RecordHeader::new(l, &r, written, 0, [3; 16], b"t");
    h.block_size = 4096;
    h.n_blocks = written / 4096;
    h.table_offset = h.data_offset() + written;
    h.finish(written);
    h.to_bytes()
}

#[test]
fn table_size_counts_eight_byte_entries() {
    // 16 MiB disk, record at 1 MiB: 15 MiB - 4 KiB for data and table. 3832 blocks of 4 KiB
    // leave room for a table of 4-byte entries (16 KiB padded) but not of the real 8-byte
    // entries (32 KiB): the table would end past the disk.
    let l = label(16 * MIB);
    let too_big = header_4k_blocks(&l, 3832 * 4096);
    assert_eq!(
        RecordHeader::parse(&l, &too_big),
        Err(Error::Inconsistent(
            "table outside the disk or over the data"
        ))
    );
    // Control: four blocks fewer and the 8-byte table fits, so the check is the size, not the
    // hand-made header.
    let fits = header_4k_blocks(&l, 3828 * 4096);
    let h = RecordHeader::parse(&l, &fits).unwrap();
    let table_end = h.table_offset + (h.n_blocks * TABLE_ENTRY_BYTES).div_ceil(4096) * 4096;
    assert!(table_end <= l.capacity_bytes);
}

#[test]
fn mark_saved_sets_one_bit_and_keeps_the_rest() {
    let l = label(16 * MIB);
    let core = vmcore(2 * MIB as usize + 5);
    let disk = write_dump(&l, &core);
    let (l2, hdr) = header_of(&disk);
    let before = RecordHeader::parse(&l2, hdr).unwrap();
    assert!(!before.is_saved(), "a record the writer makes is not saved");
    let saved = mark_saved(&l2, hdr).unwrap();
    let after = RecordHeader::parse(&l2, &saved).unwrap();
    assert!(after.is_saved());
    assert_eq!(after.flags, before.flags | FLAG_SAVED);
    assert_eq!(
        ChecksumKind::from_flags(after.flags),
        ChecksumKind::from_flags(before.flags)
    );
    // Only flags (0x2C..0x30) and the CRC (0xAC..0xB0) differ.
    let changed: Vec<usize> = (0..RECORD_HEADER_SIZE)
        .filter(|&i| saved[i] != hdr[i])
        .collect();
    assert!(
        changed
            .iter()
            .all(|&i| (0x2C..0x30).contains(&i) || i >= 0xAC)
    );
    assert!(changed.contains(&0x2F));
    // The saved record still verifies block by block.
    let mut disk2 = disk.clone();
    let at = l2.data_offset as usize;
    disk2[at..at + RECORD_HEADER_SIZE].copy_from_slice(&saved);
    let (l3, h3) = header_of(&disk2);
    assert_eq!(
        verify_record(&l3, h3, reader(&disk2))
            .unwrap()
            .blocks_verified,
        3
    );
    // Idempotent.
    assert_eq!(mark_saved(&l2, &saved).unwrap(), saved);
    // A damaged or foreign header is not marked (negative controls).
    let mut bad = hdr.to_vec();
    bad[0x20] ^= 1;
    assert!(matches!(mark_saved(&l2, &bad), Err(Error::BadCrc { .. })));
    let other = Label::new([9; 16], 16 * MIB, 0).unwrap();
    assert_eq!(mark_saved(&other, hdr), Err(Error::WrongLabel));
}
