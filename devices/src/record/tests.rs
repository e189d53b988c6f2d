//! The record writer against the simulated NVMe, AHCI and virtio-blk devices, read back with the code
//! `rkdumpctl save` runs ([`super::read`]) and compared byte for byte with the vmcore
//! rkdump-vmcore's own writer produces.

use alloc::vec;
use alloc::vec::Vec;

use rkdump_vmcore::testing::{
    FakeMemory, VMCOREINFO_TEXT, cpu_note_buffer, header_blob, load_phdr, note_phdr,
    vmcoreinfo_buffer,
};
use rkdump_vmcore::{DumpPlan, OldMemError, prepare_dump, write_vmcore};

use super::read::{self, ReadError};
use super::*;
use crate::ahci::model::FakeAhci;
use crate::ahci::{Ahci, SIG_ATA};
use crate::block::testkit::{Arena, FakeClock, pattern};
use crate::hw::dma::BusWindow;
use crate::label::{ReadFailed, RecordSummary, State};
use crate::nvme::Nvme;
use crate::nvme::model::FakeNvme;
use crate::virtio_blk::model::Rig;

const HDR: u64 = 0x2f00_0000;
const DM: u64 = 0xffff_8880_0000_0000;
const RAM: u64 = 96 << 10;

/// Old memory living in the arena, where the simulated devices' DMA reads it.
struct ArenaOld(BusWindow);

impl OldMemSlices for ArenaOld {
    fn with_slice(&self, phys: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<(), OldMemError> {
        let mut buf = vec![0u8; len as usize];
        if !self.0.read(phys, &mut buf) {
            return Err(OldMemError::OutOfRange { phys, len });
        }
        // Hand it over in uneven pieces, as the kernel's 1 MiB mapping steps would.
        for piece in buf.chunks(5000) {
            f(piece);
        }
        Ok(())
    }
}

/// A crash with two CPUs, VMCOREINFO and two RAM ranges in the arena; returns the plan and
/// the vmcore it describes.
fn crash(arena: &mut Arena) -> (DumpPlan, Vec<u8>) {
    let ram = arena.buf(RAM as usize);
    let data = pattern(RAM as usize, 3);
    arena.put(ram, &data);
    let mut mem = FakeMemory::new();
    mem.insert(ram, data);
    let mut phdrs = Vec::new();
    for cpu in 0..2u64 {
        let addr = 0x7e00_0000 + cpu * 0x1000;
        mem.insert(
            addr,
            cpu_note_buffer(Some((100 + cpu as i32, 0xffff_ffff_8100_0000))),
        );
        phdrs.push(note_phdr(addr, 368));
    }
    mem.insert(0x7f00_0000, vmcoreinfo_buffer(VMCOREINFO_TEXT, 4132));
    phdrs.push(note_phdr(0x7f00_0000, 4132));
    let va = DM + (ram & 0xFFFF_FFFF);
    phdrs.push(load_phdr(ram, ram, va, 32 << 10));
    let hi = ram + (40 << 10);
    phdrs.push(load_phdr(hi, hi, va + (40 << 10), 56 << 10));
    mem.insert(HDR, header_blob(&phdrs));
    let plan = prepare_dump(&mut mem, HDR, None).unwrap();
    let mut vmcore = Vec::new();
    let mut buf = vec![0u8; 16384];
    write_vmcore(
        &plan.layout,
        &mut mem,
        &mut vmcore,
        &mut buf,
        &mut |_, _| {},
    )
    .unwrap();
    (plan, vmcore)
}

/// Reads a disk image back as `rkdumpctl save` does: the record and its vmcore bytes.
fn save(disk: &[u8]) -> Result<(RecordSummary, Vec<u8>), ReadError> {
    let mut at = |off: u64, buf: &mut [u8]| -> Result<(), ReadFailed> {
        let off = usize::try_from(off).map_err(|_| ReadFailed)?;
        let src = disk.get(off..off + buf.len()).ok_or(ReadFailed)?;
        buf.copy_from_slice(src);
        Ok(())
    };
    let (_, summary) = read::verify(&mut at)?;
    let mut out = Vec::new();
    read::copy_vmcore(&summary.header, &mut at, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok((summary, out))
}

/// A DMA arena holding the crash of [`crash`], and a clock for the device models.
fn setup() -> (Arena, FakeClock, DumpPlan, Vec<u8>) {
    let mut arena = Arena::new(8 << 20);
    let (plan, vmcore) = crash(&mut arena);
    (arena, FakeClock::new(100), plan, vmcore)
}

/// Writes the record with old memory read from the arena.
fn write(
    w: RecordWriter<'_>,
    dev: &mut dyn BlockDevice,
    arena: &mut Arena,
) -> Result<u64, RecordError> {
    let old = ArenaOld(arena.window());
    w.write(dev, &old, arena, &mut |_, _| {})
}

fn labelled(disk: &mut [u8]) -> Label {
    let label = Label::new(*b"record-test-uuid", disk.len() as u64, 1_700_000_000).unwrap();
    disk[..label::LABEL_BYTES].copy_from_slice(&label.to_bytes());
    label
}

#[test]
fn nvme_record_reads_back_byte_identical() {
    for kind in [ChecksumKind::Full, ChecksumKind::Sampled] {
        let (mut arena, clock, plan, vmcore) = setup();
        let fake = FakeNvme::new(&arena);
        let label = labelled(&mut fake.0.borrow_mut().disk);
        let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
        let w = RecordWriter::new(&label, &plan, *b"run-id-of-a-test", kind).unwrap();
        assert!(w.layout().fits);
        let old = ArenaOld(arena.window());
        let mut reports = Vec::new();
        let written = w
            .write(&mut dev, &old, &mut arena, &mut |d, t| reports.push((d, t)))
            .unwrap();
        assert_eq!(written, vmcore.len() as u64);
        assert_eq!(reports.last(), Some(&(written, written)));
        let disk = fake.0.borrow().disk.clone();
        let (summary, out) = save(&disk).unwrap();
        assert_eq!(summary.header.state, State::Complete);
        assert_eq!(summary.header.flags, kind as u32);
        assert_eq!(summary.header.run_id, *b"run-id-of-a-test");
        assert_eq!(summary.header.osrelease_str(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(summary.blocks_verified, 1);
        assert!(out == vmcore, "vmcore read back differs");
    }
}

#[test]
fn ahci_record_reads_back_byte_identical() {
    let (mut arena, clock, plan, vmcore) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA]);
    let label = labelled(&mut fake.0.borrow_mut().disk);
    let mut dev = Ahci::new(&fake, &mut arena, &clock).unwrap();
    let w = RecordWriter::new(&label, &plan, [7; 16], ChecksumKind::Full).unwrap();
    let written = write(w, &mut dev, &mut arena).unwrap();
    assert_eq!(written, vmcore.len() as u64);
    let disk = fake.0.borrow().disk.clone();
    let (summary, out) = save(&disk).unwrap();
    assert_eq!(summary.header.state, State::Complete);
    assert!(out == vmcore, "vmcore read back differs");
}

#[test]
fn virtio_record_reads_back_byte_identical() {
    let (mut arena, _, plan, vmcore) = setup();
    let rig = Rig::on_bus(&arena, 8192);
    let label = labelled(&mut rig.d.borrow_mut().disk);
    let mut dev = rig.open_on(&mut arena).unwrap();
    let w = RecordWriter::new(&label, &plan, [9; 16], ChecksumKind::Sampled).unwrap();
    let written = write(w, &mut dev, &mut arena).unwrap();
    assert_eq!(written, vmcore.len() as u64);
    let disk = rig.d.borrow().disk.clone();
    let (summary, out) = save(&disk).unwrap();
    assert_eq!(summary.header.state, State::Complete);
    assert!(out == vmcore, "vmcore read back differs");
}

#[test]
fn a_disk_too_small_gets_a_truncated_record() {
    let (mut arena, clock, plan, vmcore) = setup();
    let fake = FakeNvme::new(&arena);
    // Room for the header, 64 KiB of data and the table page: less than the vmcore.
    let cap = label::DEFAULT_DATA_OFFSET + 4096 + (64 << 10) + 4096;
    let label = Label::new(*b"record-test-uuid", cap, 0).unwrap();
    fake.0.borrow_mut().disk[..4096].copy_from_slice(&label.to_bytes());
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    let w = RecordWriter::new(&label, &plan, [1; 16], ChecksumKind::Full).unwrap();
    assert!(!w.layout().fits);
    let written = write(w, &mut dev, &mut arena).unwrap();
    assert_eq!(written, 64 << 10);
    let disk = fake.0.borrow().disk.clone();
    let (summary, out) = save(&disk).unwrap();
    assert_eq!(summary.header.state, State::Truncated);
    assert!(out[..] == vmcore[..out.len()], "the prefix is intact");
}

#[test]
fn a_write_failing_mid_record_leaves_it_incomplete() {
    let (mut arena, clock, plan, _) = setup();
    let fake = FakeNvme::new(&arena);
    let label = labelled(&mut fake.0.borrow_mut().disk);
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    let w = RecordWriter::new(&label, &plan, [2; 16], ChecksumKind::Full).unwrap();
    // A media error 40 KiB into the vmcore data: inside the first RAM range.
    let bad = w.layout().data_lba + 80;
    fake.0.borrow_mut().fail_lba = Some(bad);
    let err = write(w, &mut dev, &mut arena).unwrap_err();
    match err {
        RecordError::Write {
            area: Area::Vmcore,
            error: BlockError::DeviceError { .. },
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(alloc::format!("{err}").starts_with("writing the vmcore at block "));
    let disk = fake.0.borrow().disk.clone();
    let (summary, out) = save(&disk).unwrap();
    assert_eq!(summary.header.state, State::Incomplete);
    assert_eq!((summary.blocks_verified, out.len()), (0, 0));
}

#[test]
fn unreadable_old_memory_is_a_typed_error() {
    let (mut arena, clock, plan, _) = setup();
    let fake = FakeNvme::new(&arena);
    let label = labelled(&mut fake.0.borrow_mut().disk);
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    struct Refusing;
    impl OldMemSlices for Refusing {
        fn with_slice(
            &self,
            phys: u64,
            len: u64,
            _: &mut dyn FnMut(&[u8]),
        ) -> Result<(), OldMemError> {
            Err(OldMemError::Forbidden { phys, len })
        }
    }
    let w = RecordWriter::new(&label, &plan, [3; 16], ChecksumKind::Full).unwrap();
    let err = w
        .write(&mut dev, &Refusing, &mut arena, &mut |_, _| {})
        .unwrap_err();
    assert!(matches!(
        err,
        RecordError::OldMem(OldMemError::Forbidden { .. })
    ));
    let disk = fake.0.borrow().disk.clone();
    assert_eq!(save(&disk).unwrap().0.header.state, State::Incomplete);
}

#[test]
fn no_label_and_bad_records_are_refused_on_read_back() {
    assert_eq!(
        save(&[0u8; 8192]).unwrap_err(),
        ReadError::Label(label::Error::BadMagic)
    );
    assert_eq!(save(&[0u8; 100]).unwrap_err(), ReadError::LabelUnreadable);
    let mut disk = vec![0u8; 2 << 20];
    labelled(&mut disk);
    assert!(matches!(save(&disk), Err(ReadError::Rejected(_))));
}

/// Disk offset of vmcore byte `at` in a record on [`labelled`]'s disk.
fn disk_offset(at: usize) -> usize {
    label::DEFAULT_DATA_OFFSET as usize + 4096 + at
}

/// What [`save`] returns.
type Saved = Result<(RecordSummary, Vec<u8>), ReadError>;

/// Writes the crash of [`setup`] through the simulated NVMe with `kind`, damages the disk copy
/// with `damage(disk, first byte of the last page of vmcore data)`, and reads it back.
fn damaged(kind: ChecksumKind, damage: &dyn Fn(&mut [u8], usize)) -> (Vec<u8>, Saved) {
    let (mut arena, clock, plan, vmcore) = setup();
    let fake = FakeNvme::new(&arena);
    let label = labelled(&mut fake.0.borrow_mut().disk);
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    let w = RecordWriter::new(&label, &plan, [5; 16], kind).unwrap();
    write(w, &mut dev, &mut arena).unwrap();
    let mut disk = fake.0.borrow().disk.clone();
    assert!(
        save(&disk).unwrap().1 == vmcore,
        "undamaged record reads back"
    );
    // The last page of the vmcore: old memory (pattern data, no zero runs).
    let page = disk_offset(vmcore.len() - 4096);
    damage(&mut disk, page);
    (vmcore, save(&disk))
}

/// One byte flipped in the middle of a page.
fn flip_mid_page(disk: &mut [u8], page: usize) {
    disk[page + 2048] ^= 0x10;
}

/// 3 KiB zeroed inside a page, clear of both sampled 64-byte ends.
fn zero_3k_inside_page(disk: &mut [u8], page: usize) {
    let r = page + 512..page + 512 + 3072;
    assert!(
        disk[r.clone()].iter().any(|&b| b != 0),
        "zeroing changes bytes"
    );
    disk[r].fill(0);
}

/// The first 64 bytes of a page zeroed, as a torn or never-written page leaves them.
fn zero_page_head(disk: &mut [u8], page: usize) {
    assert!(disk[page..page + 64].iter().any(|&b| b != 0));
    disk[page..page + 64].fill(0);
}

fn coverage(summary: &RecordSummary) -> alloc::string::String {
    alloc::format!(
        "{}",
        ChecksumKind::from_flags(summary.header.flags)
            .unwrap()
            .coverage()
    )
}

#[test]
fn the_default_checksum_refuses_any_changed_byte() {
    assert_eq!(ChecksumKind::default(), ChecksumKind::Full);
    for damage in [flip_mid_page, zero_3k_inside_page, zero_page_head] {
        let (_, read) = damaged(ChecksumKind::default(), &damage);
        match read {
            Err(ReadError::Rejected(label::Error::BlockChecksum { block: 0, .. })) => {}
            other => panic!("damaged default record accepted: {other:?}"),
        }
    }
}

#[test]
fn sampled_misses_changes_inside_a_page_and_says_what_it_covered() {
    for damage in [flip_mid_page, zero_3k_inside_page] {
        let (vmcore, read) = damaged(ChecksumKind::Sampled, &damage);
        let (summary, out) = read.expect("sampled does not look inside the page");
        assert!(out != vmcore, "the corrupt vmcore comes out");
        assert_eq!(summary.blocks_verified, 1);
        assert_eq!(coverage(&summary), "128 of 4096 bytes per page");
    }
    // What it does catch: a page whose first bytes are wrong.
    let (_, read) = damaged(ChecksumKind::Sampled, &zero_page_head);
    assert!(matches!(
        read,
        Err(ReadError::Rejected(label::Error::BlockChecksum { .. }))
    ));
}

#[test]
fn checksum_none_verifies_nothing_and_says_so() {
    let (vmcore, read) = damaged(ChecksumKind::None, &flip_mid_page);
    let (summary, out) = read.unwrap();
    assert!(out != vmcore);
    assert_eq!(summary.blocks_verified, 0);
    assert_eq!(coverage(&summary), "none");
    assert_eq!(
        alloc::format!("{}", ChecksumKind::Full.coverage()),
        "every byte"
    );
}

#[test]
fn hashing_overlaps_the_transfer_and_stops_when_done() {
    use core::cell::Cell;
    let (mut arena, clock, _, _) = setup();
    let fake = FakeNvme::new(&arena);
    labelled(&mut fake.0.borrow_mut().disk);
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    let buf = arena.buf(64 << 10);
    // 16 commands of 4 KiB: the simulated controller completes one per poll, lazily.
    let reqs: Vec<WriteReq> = (0..16u64)
        .map(|i| WriteReq {
            lba: 4096 + i * 8,
            phys: buf + i * 4096,
            len: 4096,
        })
        .collect();
    // Work that never ends: the driver calls it while it waits, and still returns.
    let calls = Cell::new(0u32);
    dev.write_overlapped(&reqs, &mut || {
        calls.set(calls.get() + 1);
        true
    })
    .unwrap();
    assert!(calls.get() > 0, "no work ran while the device was busy");
    // Work of three pieces is run at most three times.
    let pieces = Cell::new(0u32);
    dev.write_overlapped(&reqs, &mut || {
        pieces.set(pieces.get() + 1);
        pieces.get() < 3
    })
    .unwrap();
    assert!(pieces.get() <= 3, "called {} times", pieces.get());
}
