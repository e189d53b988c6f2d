//! Partition tables built here byte by byte (and damaged on purpose), the mapped device's
//! bounds, and the record writer through a partition window: nothing outside it changes.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use rkdump_vmcore::testing::{
    FakeMemory, VMCOREINFO_TEXT, load_phdr, note_phdr, plan_and_vmcore, vmcoreinfo_buffer,
};
use rkdump_vmcore::{DumpPlan, OldMemError};
use zerocopy::IntoBytes;
use zerocopy::little_endian::{U32, U64};

use super::mapped::{MapError, Mapped, Run, check_runs};
use super::partition::*;
use super::*;
use crate::block::testkit::{Arena, pattern};
use crate::block::{BlockError, BlockInfo, WriteReq};
use crate::hw::dma::BusWindow;
use crate::label::{self, ChecksumKind, ReadFailed, State};
use crate::record::{OldMemSlices, RecordWriter, read};

const ENTRIES: u32 = 128;

/// A GPT disk image of `blocks` blocks of `bs` bytes with partitions `(first, last)` (inclusive),
/// entries at LBA 2 and in front of the backup header, as sfdisk and sgdisk lay them out.
fn gpt_disk(bs: usize, blocks: u64, parts: &[(u64, u64)]) -> Vec<u8> {
    let mut d = vec![0u8; bs * blocks as usize];
    // Protective MBR: one record of type 0xEE from LBA 1 over the disk.
    let pmbr = MbrEntryRaw {
        boot_indicator: 0,
        starting_chs: [0, 2, 0],
        os_type: MBR_TYPE_PROTECTIVE,
        ending_chs: [0xff; 3],
        starting_lba: U32::new(1),
        size_in_lba: U32::new((blocks - 1).min(u64::from(u32::MAX)) as u32),
    };
    d[446..462].copy_from_slice(pmbr.as_bytes());
    d[510] = 0x55;
    d[511] = 0xAA;
    let array_bytes = ENTRIES as usize * GPT_ENTRY_SIZE;
    let array_blocks = array_bytes.div_ceil(bs) as u64;
    let mut array = vec![0u8; array_bytes];
    for (i, &(first, last)) in parts.iter().enumerate() {
        let e = GptEntryRaw {
            partition_type_guid: [0xAF; 16],
            unique_partition_guid: [i as u8 + 1; 16],
            starting_lba: U64::new(first),
            ending_lba: U64::new(last),
            attributes: U64::new(0),
            partition_name: [0; 72],
        };
        array[i * GPT_ENTRY_SIZE..(i + 1) * GPT_ENTRY_SIZE].copy_from_slice(e.as_bytes());
    }
    let last_lba = blocks - 1;
    let first_usable = 2 + array_blocks;
    let last_usable = last_lba - 1 - array_blocks;
    for (my, alt, elba) in [(1, last_lba, 2), (last_lba, 1, last_lba - array_blocks)] {
        put_array(&mut d, bs, elba, &array);
        let mut h = GptHeaderRaw {
            signature: GPT_SIGNATURE,
            revision: U32::new(0x0001_0000),
            header_size: U32::new(GPT_HEADER_SIZE as u32),
            header_crc32: U32::new(0),
            reserved: U32::new(0),
            my_lba: U64::new(my),
            alternate_lba: U64::new(alt),
            first_usable_lba: U64::new(first_usable),
            last_usable_lba: U64::new(last_usable),
            disk_guid: [7; 16],
            partition_entry_lba: U64::new(elba),
            number_of_partition_entries: U32::new(ENTRIES),
            size_of_partition_entry: U32::new(GPT_ENTRY_SIZE as u32),
            partition_entry_array_crc32: U32::new(label::CRC32.checksum(&array)),
        };
        h.header_crc32 = U32::new(label::CRC32.checksum(h.as_bytes()));
        let at = my as usize * bs;
        d[at..at + GPT_HEADER_SIZE].copy_from_slice(h.as_bytes());
    }
    d
}

fn put_array(d: &mut [u8], bs: usize, lba: u64, array: &[u8]) {
    let at = lba as usize * bs;
    d[at..at + array.len()].copy_from_slice(array);
}

/// Rewrites the header at `lba` through `f` and fixes its CRC (a table that is consistent by
/// its checksums but wrong in content).
fn edit_header(d: &mut [u8], bs: usize, lba: u64, f: impl FnOnce(&mut GptHeaderRaw)) {
    use zerocopy::FromBytes;
    let at = lba as usize * bs;
    let mut h = GptHeaderRaw::read_from_bytes(&d[at..at + GPT_HEADER_SIZE]).unwrap();
    f(&mut h);
    h.header_crc32 = U32::new(0);
    h.header_crc32 = U32::new(label::CRC32.checksum(h.as_bytes()));
    d[at..at + GPT_HEADER_SIZE].copy_from_slice(h.as_bytes());
}

/// Rewrites entry `i` of the array at `elba` and fixes the array CRC in the header at `hlba`.
fn edit_entry(d: &mut [u8], bs: usize, hlba: u64, elba: u64, i: usize, first: u64, last: u64) {
    let at = elba as usize * bs + i * GPT_ENTRY_SIZE;
    d[at..at + 16].copy_from_slice(&[0xAF; 16]);
    d[at + 32..at + 40].copy_from_slice(&first.to_le_bytes());
    d[at + 40..at + 48].copy_from_slice(&last.to_le_bytes());
    let a = elba as usize * bs;
    let crc = label::CRC32.checksum(&d[a..a + ENTRIES as usize * GPT_ENTRY_SIZE]);
    edit_header(d, bs, hlba, |h| {
        h.partition_entry_array_crc32 = U32::new(crc)
    });
}

fn parse(d: &[u8], bs: usize) -> Result<Table, TableError> {
    let blocks = (d.len() / bs) as u64;
    let mut read = |lba: u64, buf: &mut [u8]| -> bool {
        let at = lba as usize * bs;
        match d.get(at..at + buf.len()) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    };
    read_table(&mut read, bs as u32, blocks)
}

fn spans(t: &Table) -> Vec<(u32, u64, u64)> {
    t.partitions
        .iter()
        .map(|p| (p.number, p.first_lba, p.blocks))
        .collect()
}

const THREE: [(u64, u64); 3] = [(2048, 4095), (4096, 8191), (8192, 10239)];

#[test]
fn gpt_three_partitions_both_headers_valid() {
    let d = gpt_disk(512, 12288, &THREE);
    let t = parse(&d, 512).unwrap();
    assert_eq!(t.scheme, Scheme::Gpt);
    assert_eq!(t.gpt_source, Some(GptSource::Primary { backup_ok: true }));
    assert_eq!(
        spans(&t),
        vec![(1, 2048, 2048), (2, 4096, 4096), (3, 8192, 2048)]
    );
}

#[test]
fn gpt_on_4k_blocks() {
    let d = gpt_disk(4096, 1024, &[(256, 511), (512, 1000)]);
    let t = parse(&d, 4096).unwrap();
    assert_eq!(spans(&t), vec![(1, 256, 256), (2, 512, 489)]);
}

#[test]
fn damaged_primary_falls_back_to_backup() {
    // Header CRC: one byte of the disk GUID flipped.
    let mut d = gpt_disk(512, 12288, &THREE);
    d[512 + 60] ^= 1;
    let t = parse(&d, 512).unwrap();
    assert!(
        matches!(
            t.gpt_source,
            Some(GptSource::Backup(GptError::HeaderCrc { .. }))
        ),
        "{:?}",
        t.gpt_source
    );
    assert_eq!(spans(&t).len(), 3);
    // Entry array CRC: one byte of entry 0 flipped.
    let mut d = gpt_disk(512, 12288, &THREE);
    d[2 * 512 + 40] ^= 1;
    let t = parse(&d, 512).unwrap();
    assert!(matches!(
        t.gpt_source,
        Some(GptSource::Backup(GptError::ArrayCrc { .. }))
    ));
    assert_eq!(spans(&t)[0], (1, 2048, 2048), "the backup's (intact) entry");
    // Signature wiped.
    let mut d = gpt_disk(512, 12288, &THREE);
    d[512..520].fill(0);
    let t = parse(&d, 512).unwrap();
    assert_eq!(t.gpt_source, Some(GptSource::Backup(GptError::NoSignature)));
}

#[test]
fn damaged_backup_is_noticed() {
    let mut d = gpt_disk(512, 12288, &THREE);
    let last = d.len() - 512;
    d[last + 60] ^= 1;
    let t = parse(&d, 512).unwrap();
    assert_eq!(t.gpt_source, Some(GptSource::Primary { backup_ok: false }));
}

#[test]
fn both_headers_damaged_is_refused() {
    let mut d = gpt_disk(512, 12288, &THREE);
    d[512 + 60] ^= 1;
    let last = d.len() - 512;
    d[last..last + 8].fill(0);
    assert_eq!(
        parse(&d, 512),
        Err(TableError::Gpt {
            primary: GptError::HeaderCrc {
                stored: {
                    let mut h = [0u8; 4];
                    h.copy_from_slice(&d[512 + 16..512 + 20]);
                    u32::from_le_bytes(h)
                },
                computed: {
                    let mut c = d[512..512 + GPT_HEADER_SIZE].to_vec();
                    c[16..20].fill(0);
                    label::CRC32.checksum(&c)
                },
            },
            backup: GptError::NoSignature,
        })
    );
}

/// Tables whose CRCs are right but whose contents are not: each is refused with its reason.
#[test]
fn consistent_but_wrong_headers_are_refused() {
    let bad = |f: &dyn Fn(&mut GptHeaderRaw)| {
        let mut d = gpt_disk(512, 12288, &THREE);
        edit_header(&mut d, 512, 1, f);
        // Take the backup out too, so the primary's error is what the parse returns.
        let last = d.len() - 512;
        d[last..last + 8].fill(0);
        match parse(&d, 512) {
            Err(TableError::Gpt { primary, .. }) => primary,
            other => panic!("accepted: {other:?}"),
        }
    };
    assert_eq!(bad(&|h| h.my_lba = U64::new(5)), GptError::MyLba(5));
    assert_eq!(
        bad(&|h| h.header_size = U32::new(600)),
        GptError::HeaderSize(600)
    );
    assert!(matches!(
        bad(&|h| h.last_usable_lba = U64::new(12287)),
        GptError::Geometry(_)
    ));
    assert!(matches!(
        bad(&|h| h.first_usable_lba = U64::new(1)),
        GptError::Geometry(_)
    ));
    assert!(matches!(
        bad(&|h| h.number_of_partition_entries = U32::new(1 << 20)),
        GptError::EntryArray(_)
    ));
    assert!(matches!(
        bad(&|h| h.size_of_partition_entry = U32::new(100)),
        GptError::EntryArray(_)
    ));
    // The entry array pointed into the usable range.
    assert!(matches!(
        bad(&|h| h.partition_entry_lba = U64::new(4096)),
        GptError::Geometry(_)
    ));
    // Negative control: the same edit path with no change is accepted.
    let mut d = gpt_disk(512, 12288, &THREE);
    edit_header(&mut d, 512, 1, |_| {});
    assert!(parse(&d, 512).is_ok());
}

#[test]
fn bad_entries_are_refused() {
    let last = 12287u64;
    let bad = |first: u64, end: u64| {
        let mut d = gpt_disk(512, 12288, &THREE);
        edit_entry(&mut d, 512, 1, 2, 3, first, end);
        edit_entry(&mut d, 512, last, last - 32, 3, first, end);
        parse(&d, 512)
    };
    let gpt = |e| {
        Err(TableError::Gpt {
            primary: e,
            backup: e,
        })
    };
    // Past the last usable LBA (the backup array is there).
    assert_eq!(bad(10240, 12280), gpt(GptError::BadEntry(3)));
    // Ends before it starts.
    assert_eq!(bad(11000, 10500), gpt(GptError::BadEntry(3)));
    // Overlaps partition 3.
    assert_eq!(bad(10000, 10300), gpt(GptError::Overlap(2, 3)));
    // Negative control: a fourth partition in free space is accepted.
    assert_eq!(spans(&bad(10240, 12000).unwrap())[3], (4, 10240, 1761));
}

fn mbr_disk(blocks: u64, entries: &[(u8, u32, u32)]) -> Vec<u8> {
    let mut d = vec![0u8; 512 * blocks as usize];
    for (i, &(t, first, len)) in entries.iter().enumerate() {
        let e = MbrEntryRaw {
            boot_indicator: 0,
            starting_chs: [0; 3],
            os_type: t,
            ending_chs: [0; 3],
            starting_lba: U32::new(first),
            size_in_lba: U32::new(len),
        };
        d[446 + 16 * i..462 + 16 * i].copy_from_slice(e.as_bytes());
    }
    d[510] = 0x55;
    d[511] = 0xAA;
    d
}

#[test]
fn mbr_primaries_without_the_extended_container() {
    let d = mbr_disk(
        8192,
        &[
            (0x83, 2048, 2048),
            (0, 0, 0),
            (0x05, 4096, 2048),
            (0x82, 6144, 2048),
        ],
    );
    let t = parse(&d, 512).unwrap();
    assert_eq!(t.scheme, Scheme::Mbr);
    assert_eq!(spans(&t), vec![(1, 2048, 2048), (4, 6144, 2048)]);
}

#[test]
fn bad_mbrs_are_refused() {
    assert_eq!(
        parse(&mbr_disk(8192, &[(0x83, 2048, 8192)]), 512),
        Err(TableError::MbrEntry(0))
    );
    assert_eq!(
        parse(&mbr_disk(8192, &[(0x83, 0, 10)]), 512),
        Err(TableError::MbrEntry(0))
    );
    assert_eq!(
        parse(
            &mbr_disk(8192, &[(0x83, 2048, 2048), (0x83, 4000, 100)]),
            512
        ),
        Err(TableError::MbrOverlap(0, 1))
    );
    let mut none = mbr_disk(64, &[(0x83, 1, 10)]);
    none[510] = 0;
    assert_eq!(parse(&none, 512), Err(TableError::NoTable));
    // A protective MBR with no GPT behind it.
    assert!(matches!(
        parse(&mbr_disk(64, &[(0xEE, 1, 63)]), 512),
        Err(TableError::Gpt { .. })
    ));
    assert_eq!(parse(&[0u8; 1024], 512), Err(TableError::Geometry));
}

#[test]
fn read_failure_is_an_error_not_a_table() {
    let mut fail = |_: u64, _: &mut [u8]| false;
    assert_eq!(read_table(&mut fail, 512, 100), Err(TableError::Read));
    // LBA 0 readable, the rest not: both GPT headers unreadable.
    let d = gpt_disk(512, 12288, &THREE);
    let mut only0 = |lba: u64, buf: &mut [u8]| {
        if lba != 0 {
            return false;
        }
        buf.copy_from_slice(&d[..buf.len()]);
        true
    };
    assert_eq!(
        read_table(&mut only0, 512, 12288),
        Err(TableError::Gpt {
            primary: GptError::Read(1),
            backup: GptError::Read(12287),
        })
    );
}

/// Every truncation and every single-byte corruption of the first blocks: never a panic, and
/// any table returned keeps its partitions inside the disk.
#[test]
fn arbitrary_damage_never_panics() {
    let base = gpt_disk(512, 256, &[(40, 100), (101, 200)]);
    for at in (0..34 * 512).step_by(7) {
        let mut d = base.clone();
        d[at] = d[at].wrapping_add(0x5b);
        if let Ok(t) = parse(&d, 512) {
            assert!(t.partitions.iter().all(|p| p.end_lba() <= 256));
        }
    }
}

/// Memory disk for the mapped device: data in a `Vec`, DMA through the arena's bus window;
/// records every block written.
struct MemDisk {
    mem: BusWindow,
    disk: Vec<u8>,
    bs: u32,
    written: Vec<(u64, u64)>,
}

impl BlockDevice for MemDisk {
    fn info(&self) -> BlockInfo {
        BlockInfo {
            block_size: self.bs,
            blocks: self.disk.len() as u64 / u64::from(self.bs),
            max_transfer: 1 << 20,
            queue_depth: 4,
        }
    }
    fn name(&self) -> &str {
        "memdisk"
    }
    fn write_overlapped(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        // A device that completes at once: the caller's work runs after.
        let _ = idle;
        let bs = u64::from(self.bs);
        for r in reqs {
            let at = (r.lba * bs) as usize;
            let dst = self
                .disk
                .get_mut(at..at + r.len as usize)
                .ok_or(BlockError::BadRequest)?;
            assert!(self.mem.read(r.phys, dst), "DMA outside the arena");
            self.written.push((r.lba, r.len / bs));
        }
        Ok(())
    }
    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        let at = (lba * u64::from(self.bs)) as usize;
        let src = self
            .disk
            .get(at..at + len as usize)
            .ok_or(BlockError::BadRequest)?;
        assert!(self.mem.write(phys, src));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

fn mem_disk(arena: &Arena, disk: Vec<u8>, bs: u32) -> MemDisk {
    MemDisk {
        mem: arena.window(),
        disk,
        bs,
        written: Vec::new(),
    }
}

#[test]
fn runs_are_checked() {
    let r = |lba, blocks| Run { lba, blocks };
    assert_eq!(check_runs(&[r(10, 5), r(0, 10)], 100), Ok(15));
    assert_eq!(check_runs(&[], 100), Err(MapError::Count));
    assert_eq!(check_runs(&[r(10, 0)], 100), Err(MapError::Count));
    assert_eq!(check_runs(&[r(95, 6)], 100), Err(MapError::PastEnd(0)));
    assert_eq!(
        check_runs(&[r(u64::MAX, 2)], 100),
        Err(MapError::PastEnd(0))
    );
    assert_eq!(
        check_runs(&[r(20, 5), r(0, 10), r(9, 3)], 100),
        Err(MapError::Overlap(1, 2))
    );
}

#[test]
fn mapped_writes_split_across_runs_and_never_leave_them() {
    let mut arena = Arena::new(1 << 20);
    let src = arena.buf(8192);
    let data = pattern(8192, 9);
    arena.put(src, &data);
    let disk = mem_disk(&arena, vec![0xEE; 64 * 512], 512);
    // Mapped blocks 0-3 are device 40-43, 4-11 are device 10-17.
    let runs = vec![Run { lba: 40, blocks: 4 }, Run { lba: 10, blocks: 8 }];
    let mut m = Mapped::new(disk, runs, String::from("file")).unwrap();
    assert_eq!(m.info().blocks, 12);
    // 16 blocks from mapped 2: crosses into the second run, and 6 blocks past the end.
    let past = WriteReq {
        lba: 2,
        phys: src,
        len: 16 * 512,
    };
    assert_eq!(m.write(&[past]), Err(BlockError::BadRequest));
    assert!(
        m.inner().written.is_empty(),
        "nothing of a refused batch is sent"
    );
    let ok = WriteReq {
        lba: 2,
        phys: src,
        len: 8 * 512,
    };
    m.write(&[ok]).unwrap();
    assert_eq!(m.inner().written, vec![(42, 2), (10, 6)]);
    let d = &m.inner().disk;
    assert_eq!(&d[42 * 512..44 * 512], &data[..1024]);
    assert_eq!(&d[10 * 512..16 * 512], &data[1024..4096]);
    // Everything else is as it was.
    let touched = |b: usize| (42..44).contains(&b) || (10..16).contains(&b);
    for b in (0..64).filter(|&b| !touched(b)) {
        assert!(
            d[b * 512..(b + 1) * 512].iter().all(|&x| x == 0xEE),
            "block {b}"
        );
    }
    // Reads map the same way.
    let dst = arena.buf(8192);
    m.read(2, dst, 8 * 512).unwrap();
    assert_eq!(arena.get(dst, 4096), data[..4096]);
    assert_eq!(m.read(11, dst, 1024), Err(BlockError::BadRequest));
    // Misaligned length.
    assert_eq!(
        m.write(&[WriteReq {
            lba: 0,
            phys: src,
            len: 100
        }]),
        Err(BlockError::BadRequest)
    );
}

/// Old memory in the arena.
struct ArenaOld(BusWindow);

impl OldMemSlices for ArenaOld {
    fn with_slice(&self, phys: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<(), OldMemError> {
        let mut buf = vec![0u8; len as usize];
        if !self.0.read(phys, &mut buf) {
            return Err(OldMemError::OutOfRange { phys, len });
        }
        f(&buf);
        Ok(())
    }
}

fn crash(arena: &mut Arena, ram_bytes: usize) -> (DumpPlan, Vec<u8>) {
    const HDR: u64 = 0x2f00_0000;
    let ram = arena.buf(ram_bytes);
    let data = pattern(ram_bytes, 5);
    arena.put(ram, &data);
    let mut mem = FakeMemory::new();
    mem.insert(ram, data);
    mem.insert(0x7f00_0000, vmcoreinfo_buffer(VMCOREINFO_TEXT, 4132));
    let phdrs = vec![
        note_phdr(0x7f00_0000, 4132),
        load_phdr(
            ram,
            ram,
            0xffff_8880_0000_0000 + (ram & 0xFFFF_FFFF),
            ram_bytes as u64,
        ),
    ];
    plan_and_vmcore(&mut mem, HDR, &phdrs)
}

/// The acceptance shape of the partition target on a model disk: three GPT partitions, the
/// middle one labelled; the label is found by reading the medium, the record goes through the
/// window, and every byte outside the middle partition is unchanged.
#[test]
fn record_through_a_partition_window_touches_nothing_else() {
    for bs in [512usize, 4096] {
        let mut arena = Arena::new(16 << 20);
        let (plan, vmcore) = crash(&mut arena, 2 << 20);
        let blocks = (12 << 20) / bs as u64;
        let per_mib = (1 << 20) / bs as u64;
        let parts = [
            (per_mib, 2 * per_mib - 1),
            (2 * per_mib, 10 * per_mib - 1),
            (10 * per_mib, 11 * per_mib - 1),
        ];
        let mut image = gpt_disk(bs, blocks, &parts);
        // Data in the neighbours, a label in the middle (capacity = its size, as prepare writes).
        image[bs * per_mib as usize..2 * bs * per_mib as usize].fill(0x11);
        image[10 * bs * per_mib as usize..11 * bs * per_mib as usize].fill(0x33);
        let mid = 2 * (1 << 20);
        let lab = Label::new(*b"partition-label!", 8 << 20, 1).unwrap();
        image[mid..mid + label::LABEL_BYTES].copy_from_slice(&lab.to_bytes());
        let before = image.clone();
        let mut dev = mem_disk(&arena, image, bs as u32);
        let s = find_labelled_partition(&mut dev, &mut arena).unwrap();
        let (p, found) = s.found.expect("the labelled partition");
        assert_eq!((p.number, found), (2, lab));
        // Partition 1 has data, no label: rejected with the reason.
        assert!(matches!(
            s.rejected[..],
            [(1, NotDumpDisk::NoLabel(label::Error::BadMagic))]
        ));
        assert!(dev.written.is_empty(), "the search only reads");
        let mut win = Mapped::window(dev, p.first_lba, p.blocks, String::from("part")).unwrap();
        let w = RecordWriter::new(&found, &plan, [1; 16], ChecksumKind::Full).unwrap();
        let old = ArenaOld(arena.window());
        let n = w.write(&mut win, &old, &mut arena, &mut |_, _| {}).unwrap();
        assert_eq!(n, vmcore.len() as u64);
        let after = &win.inner().disk;
        assert_eq!(after[..mid], before[..mid], "{bs}: table and partition 1");
        assert_eq!(
            after[10 << 20..],
            before[10 << 20..],
            "{bs}: partition 3 and the backup GPT"
        );
        // The partition alone reads back as a dump disk.
        let part = &after[mid..10 << 20];
        let mut at = |off: u64, buf: &mut [u8]| -> Result<(), ReadFailed> {
            let off = off as usize;
            buf.copy_from_slice(part.get(off..off + buf.len()).ok_or(ReadFailed)?);
            Ok(())
        };
        let (_, summary) = read::verify(&mut at).unwrap();
        assert_eq!(summary.header.state, State::Complete);
        let mut out = Vec::new();
        read::copy_vmcore(&summary.header, &mut at, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, vmcore);
    }
}

/// A label claiming more than its partition (copied from a bigger one) is refused.
#[test]
fn label_bigger_than_its_partition_is_refused() {
    let mut arena = Arena::new(1 << 20);
    let mut image = gpt_disk(512, 12288, &THREE);
    let lab = Label::new([3; 16], 4096 * 512 + 4096, 1).unwrap();
    image[4096 * 512..4096 * 512 + 4096].copy_from_slice(&lab.to_bytes());
    let mut dev = mem_disk(&arena, image, 512);
    let s = find_labelled_partition(&mut dev, &mut arena).unwrap();
    assert_eq!(s.found, None);
    assert!(
        s.rejected.iter().any(|(n, e)| *n == 2
            && matches!(e, NotDumpDisk::NoLabel(label::Error::DeviceTooSmall { .. })))
    );
}

fn file_map(runs: Vec<Run>, disk_blocks: u64, uuid: [u8; 16]) -> crate::blob::filemap::FileMap {
    let blocks: u64 = runs.iter().map(|r| r.blocks).sum();
    crate::blob::filemap::FileMap {
        bdf: crate::pci::Bdf::new(0, 2, 0, 0).unwrap(),
        block_size: 512,
        disk_blocks,
        part_start_lba: 2048,
        file_bytes: blocks * 512,
        label_uuid: uuid,
        runs,
    }
}

/// A file in three extents out of order on the disk: the label is checked at the first
/// extent, the record goes only into the extents, and reads back through them.
#[test]
fn record_into_a_fragmented_file_touches_only_its_extents() {
    let mut arena = Arena::new(16 << 20);
    let (plan, vmcore) = crash(&mut arena, 2 << 20);
    let disk_blocks = (16 << 20) / 512;
    let runs = vec![
        Run {
            lba: 20_000,
            blocks: 4096,
        },
        Run {
            lba: 4096,
            blocks: 6144,
        },
        Run {
            lba: 12_000,
            blocks: 2048,
        },
    ];
    let file_bytes = 12288 * 512;
    let mut image = pattern(16 << 20, 77);
    let lab = Label::new(*b"file-target-uuid", file_bytes, 1).unwrap();
    image[20_000 * 512..20_000 * 512 + 4096].copy_from_slice(&lab.to_bytes());
    let before = image.clone();
    let map = file_map(runs.clone(), disk_blocks, lab.uuid);
    let dev = mem_disk(&arena, image, 512);
    let (mut file, found) = open_file(dev, &mut arena, &map, String::from("file")).unwrap();
    assert_eq!(found, lab);
    assert!(file.inner().written.is_empty(), "opening only reads");
    let w = RecordWriter::new(&found, &plan, [2; 16], ChecksumKind::Full).unwrap();
    let old = ArenaOld(arena.window());
    w.write(&mut file, &old, &mut arena, &mut |_, _| {})
        .unwrap();
    let after = &file.inner().disk;
    let inside = |b: usize| {
        runs.iter()
            .any(|r| (r.lba..r.lba + r.blocks).contains(&(b as u64)))
    };
    for b in (0..disk_blocks as usize).filter(|&b| !inside(b)) {
        assert_eq!(
            after[b * 512..(b + 1) * 512],
            before[b * 512..(b + 1) * 512],
            "block {b}"
        );
    }
    // The file's bytes, in file order, read back as a dump disk.
    let mut content = Vec::new();
    for r in &runs {
        content.extend_from_slice(&after[r.lba as usize * 512..(r.lba + r.blocks) as usize * 512]);
    }
    let mut at = |off: u64, buf: &mut [u8]| -> Result<(), ReadFailed> {
        let off = off as usize;
        buf.copy_from_slice(content.get(off..off + buf.len()).ok_or(ReadFailed)?);
        Ok(())
    };
    let (_, summary) = read::verify(&mut at).unwrap();
    let mut out = Vec::new();
    read::copy_vmcore(&summary.header, &mut at, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(out, vmcore);
}

#[test]
fn file_map_on_the_wrong_disk_or_label_is_refused() {
    let mut arena = Arena::new(1 << 20);
    let runs = vec![Run {
        lba: 100,
        blocks: 4096,
    }];
    let lab = Label::new([5; 16], 4096 * 512, 1).unwrap();
    let mut image = vec![0u8; 8192 * 512];
    image[100 * 512..100 * 512 + 4096].copy_from_slice(&lab.to_bytes());
    let open = |map: &crate::blob::filemap::FileMap, image: &Vec<u8>, arena: &mut Arena| {
        let dev = mem_disk(arena, image.clone(), 512);
        open_file(dev, arena, map, String::from("f")).map(|(_, l)| l)
    };
    assert_eq!(
        open(&file_map(runs.clone(), 8192, [5; 16]), &image, &mut arena),
        Ok(lab)
    );
    assert_eq!(
        open(&file_map(runs.clone(), 8193, [5; 16]), &image, &mut arena),
        Err(FileTargetError::OtherDisk {
            blocks: 8192,
            block_size: 512
        })
    );
    assert_eq!(
        open(&file_map(runs.clone(), 8192, [6; 16]), &image, &mut arena),
        Err(FileTargetError::WrongLabel)
    );
    // The label claims more than the runs hold.
    let short = vec![Run {
        lba: 100,
        blocks: 2048,
    }];
    assert!(matches!(
        open(&file_map(short, 8192, [5; 16]), &image, &mut arena),
        Err(FileTargetError::Label(NotDumpDisk::NoLabel(
            label::Error::DeviceTooSmall { .. }
        )))
    ));
    // No label at the first run (the file was moved or overwritten).
    image[100 * 512] ^= 1;
    assert!(matches!(
        open(&file_map(runs, 8192, [5; 16]), &image, &mut arena),
        Err(FileTargetError::Label(NotDumpDisk::NoLabel(_)))
    ));
}

/// Tables written by util-linux sfdisk (the fuzz seeds): read as sfdisk laid them out.
#[test]
fn sfdisk_tables_parse_as_sfdisk_wrote_them() {
    let gpt = include_bytes!("../../../fuzz/corpus/partition_table/seed-sfdisk-gpt");
    let t = parse(gpt, 512).unwrap();
    assert_eq!(t.gpt_source, Some(GptSource::Primary { backup_ok: true }));
    assert_eq!(spans(&t), vec![(1, 34, 60), (2, 94, 60)]);
    // `start=1, size=4, type=83` and an extended `start=5, size=8`.
    let mbr = include_bytes!("../../../fuzz/corpus/partition_table/seed-sfdisk-mbr");
    let t = parse(mbr, 512).unwrap();
    assert_eq!((t.scheme, spans(&t)), (Scheme::Mbr, vec![(1, 1, 4)]));
}
