//! The record writer against the simulated NVMe, AHCI and virtio-blk devices, read back with the code
//! `rkdumpctl save` runs ([`super::read`]) and compared byte for byte with the vmcore
//! rkdump-vmcore's own writer produces.

use alloc::vec;
use alloc::vec::Vec;

use rkdump_vmcore::elf::Elf64_Phdr;
use rkdump_vmcore::testing::{
    FakeMemory, VMCOREINFO_TEXT, cpu_note_buffer, crash_notes, header_blob, load_phdr, note_phdr,
    plan_and_vmcore, vmcoreinfo_buffer,
};
use rkdump_vmcore::{DumpPlan, OldMemError, prepare_dump};

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
use core::cell::RefCell;

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
    let cpus = [100, 101].map(|pid| Some((pid, 0xffff_ffff_8100_0000)));
    let mut phdrs = crash_notes(&mut mem, &cpus);
    let va = DM + (ram & 0xFFFF_FFFF);
    phdrs.push(load_phdr(ram, ram, va, 32 << 10));
    let hi = ram + (40 << 10);
    phdrs.push(load_phdr(hi, hi, va + (40 << 10), 56 << 10));
    reference(mem, &phdrs)
}

/// The plan and reference vmcore of the crash in `mem` described by `phdrs`.
fn reference(mut mem: FakeMemory, phdrs: &[Elf64_Phdr]) -> (DumpPlan, Vec<u8>) {
    plan_and_vmcore(&mut mem, HDR, phdrs)
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
    // `lazy`: completions trail submissions, so batches overlap in the ring.
    for lazy in [false, true] {
        let (mut arena, _, plan, vmcore) = setup();
        let rig = Rig::on_bus(&arena, 8192);
        rig.d.borrow_mut().lazy = lazy;
        let label = labelled(&mut rig.d.borrow_mut().disk);
        let mut dev = rig.open_on(&mut arena).unwrap();
        let w = RecordWriter::new(&label, &plan, [9; 16], ChecksumKind::Sampled).unwrap();
        let written = write(w, &mut dev, &mut arena).unwrap();
        assert_eq!(written, vmcore.len() as u64);
        let disk = rig.d.borrow().disk.clone();
        let (summary, out) = save(&disk).unwrap();
        assert_eq!(summary.header.state, State::Complete, "lazy {lazy}");
        assert!(out == vmcore, "vmcore read back differs (lazy {lazy})");
    }
}

/// A device that logs which calls the writer makes, in order.
struct Logged<'a, D> {
    inner: D,
    log: &'a RefCell<Vec<&'static str>>,
}

impl<D: BlockDevice> BlockDevice for Logged<'_, D> {
    fn info(&self) -> BlockInfo {
        self.inner.info()
    }
    fn name(&self) -> &str {
        "logged"
    }
    fn write_overlapped(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        self.log.borrow_mut().push("write");
        self.inner.write_overlapped(reqs, idle)
    }
    fn submit(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        self.log.borrow_mut().push("submit");
        self.inner.submit(reqs, idle)
    }
    fn complete(&mut self, idle: &mut dyn FnMut() -> bool) -> Result<(), BlockError> {
        self.log.borrow_mut().push("complete");
        self.inner.complete(idle)
    }
    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        self.inner.read(lba, phys, len)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.log.borrow_mut().push("flush");
        self.inner.flush()
    }
}

#[test]
fn batches_are_submitted_back_to_back_and_completed_before_each_flush() {
    let mut arena = Arena::new(BIG_RAM + (4 << 20));
    let (plan, vmcore) = big_crash(&mut arena, BIG_RAM);
    let clock = ManualClock(Cell::new(0));
    let mut disk = MemDisk::new(&arena, BIG_DISK, &clock, 1_000);
    let label = labelled(&mut disk.disk);
    let log = RefCell::new(Vec::new());
    let mut dev = Logged {
        inner: disk,
        log: &log,
    };
    let pacing = Pacing {
        clock: &clock,
        checkpoints: Some(Checkpoints {
            interval_us: u64::MAX,
            interval_bytes: 8 << 20,
        }),
        throttle_mib_s: 0,
    };
    let w = RecordWriter::new(&label, &plan, [4; 16], ChecksumKind::Full)
        .unwrap()
        .with_pacing(pacing);
    let old = ArenaOld(arena.window());
    let n = w.write(&mut dev, &old, &mut arena, &mut |_, _| {}).unwrap();
    assert_eq!(n, vmcore.len() as u64);
    let log = log.borrow().clone();
    // No wait between batches: the writer never waits for one before submitting the next.
    assert!(
        log.windows(2).any(|w| w == ["submit", "submit"]),
        "batches back to back: {log:?}"
    );
    // A flush (checkpoint or end) comes only after everything submitted completed.
    let mut submitted = false;
    for call in &log {
        match *call {
            "submit" => submitted = true,
            "complete" => submitted = false,
            "flush" => assert!(!submitted, "flush with writes in flight: {log:?}"),
            _ => {}
        }
    }
    assert!(
        log.iter().filter(|c| **c == "flush").count() >= 4,
        "{log:?}"
    );
    let (summary, out) = save(&dev.inner.disk).unwrap();
    assert_eq!(summary.header.state, State::Complete);
    assert!(out == vmcore);
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

// ---- Checkpoints -------------------------------------------------------------------------

use core::cell::Cell;

use crate::block::BlockInfo;
use crate::time::Clock;

/// Time the tests control: only [`MemDisk`] (at the rate it models) and throttling advance it.
struct ManualClock(Cell<u64>);

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.0.get()
    }
    fn delay_us(&self, us: u64) {
        self.0.set(self.0.get() + us);
    }
}

/// A disk in memory with a volatile write cache: `disk` is what was written, `durable` what the
/// last flush made safe. Writing takes `us_per_mib` of [`ManualClock`] time per MiB; after
/// `power_after` writes the power goes: it accepts nothing more, and only `durable` survives.
struct MemDisk<'c> {
    mem: BusWindow,
    disk: Vec<u8>,
    durable: Vec<u8>,
    clock: &'c ManualClock,
    us_per_mib: u64,
    power_after: Option<u64>,
    writes: u64,
    flushes: u64,
}

impl<'c> MemDisk<'c> {
    fn new(arena: &Arena, bytes: usize, clock: &'c ManualClock, us_per_mib: u64) -> Self {
        MemDisk {
            mem: arena.window(),
            disk: vec![0; bytes],
            durable: vec![0; bytes],
            clock,
            us_per_mib,
            power_after: None,
            writes: 0,
            flushes: 0,
        }
    }
    fn powered(&self) -> bool {
        self.power_after.is_none_or(|n| self.writes < n)
    }
}

impl BlockDevice for MemDisk<'_> {
    fn info(&self) -> BlockInfo {
        BlockInfo {
            block_size: 512,
            blocks: (self.disk.len() / 512) as u64,
            max_transfer: 1 << 20,
            queue_depth: 1,
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
        if !self.powered() {
            return Err(BlockError::Timeout { what: "power" });
        }
        self.writes += 1;
        for r in reqs {
            let at = (r.lba * 512) as usize;
            let dst = &mut self.disk[at..at + r.len as usize];
            assert!(self.mem.read(r.phys, dst), "DMA outside the arena");
            self.clock.delay_us(r.len * self.us_per_mib / (1 << 20));
        }
        Ok(())
    }
    fn read(&mut self, _: u64, _: u64, _: u64) -> Result<(), BlockError> {
        unreachable!("the writer never reads")
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        if !self.powered() {
            return Err(BlockError::Timeout { what: "power" });
        }
        self.flushes += 1;
        self.durable.copy_from_slice(&self.disk);
        Ok(())
    }
}

/// A crash whose one RAM range is `ram` bytes of pattern: a vmcore of many 1 MiB blocks.
fn big_crash(arena: &mut Arena, ram_bytes: usize) -> (DumpPlan, Vec<u8>) {
    let ram = arena.buf(ram_bytes);
    let data = pattern(ram_bytes, 5);
    arena.put(ram, &data);
    let mut mem = FakeMemory::new();
    mem.insert(ram, data);
    mem.insert(0x7f00_0000, vmcoreinfo_buffer(VMCOREINFO_TEXT, 4132));
    let phdrs = vec![
        note_phdr(0x7f00_0000, 4132),
        load_phdr(ram, ram, DM + (ram & 0xFFFF_FFFF), ram_bytes as u64),
    ];
    reference(mem, &phdrs)
}

const BIG_RAM: usize = 20 << 20;
const BIG_DISK: usize = 24 << 20;

/// What one checkpointed write did.
struct Run {
    result: Result<u64, RecordError>,
    checkpoints: Vec<(u64, Checkpoint)>,
    progress_at: Vec<u64>,
    durable: Vec<u8>,
    writes: u64,
    flushes: u64,
}

/// Writes the [`big_crash`] record to a [`MemDisk`] at `us_per_mib`, power lost after
/// `power_after` writes, with `checkpoints` (or none).
fn run(
    us_per_mib: u64,
    power_after: Option<u64>,
    checkpoints: Option<Checkpoints>,
    throttle_mib_s: u32,
) -> (Run, Vec<u8>) {
    let mut arena = Arena::new(BIG_RAM + (4 << 20));
    let (plan, vmcore) = big_crash(&mut arena, BIG_RAM);
    let clock = ManualClock(Cell::new(0));
    let mut dev = MemDisk::new(&arena, BIG_DISK, &clock, us_per_mib);
    let label = labelled(&mut dev.disk);
    dev.durable.copy_from_slice(&dev.disk);
    dev.power_after = power_after;
    let pacing = Pacing {
        clock: &clock,
        checkpoints,
        throttle_mib_s,
    };
    let w = RecordWriter::new(&label, &plan, [4; 16], ChecksumKind::Full)
        .unwrap()
        .with_pacing(pacing);
    let old = ArenaOld(arena.window());
    let mut cps = Vec::new();
    let mut progress_at = Vec::new();
    let result = w.write_checkpointed(
        &mut dev,
        &old,
        &mut arena,
        &mut |_, _| progress_at.push(clock.now_us()),
        &mut |c| cps.push((clock.now_us(), c)),
    );
    let r = Run {
        result,
        checkpoints: cps,
        progress_at,
        durable: dev.durable.clone(),
        writes: dev.writes,
        flushes: dev.flushes,
    };
    (r, vmcore)
}

#[test]
fn a_power_cut_anywhere_leaves_the_last_checkpoint_verified_byte_exact() {
    // 2 MiB/s: batches of 1 MiB, a checkpoint about every 2 s (4 MiB).
    let (full, vmcore) = run(500_000, None, Some(Checkpoints::DEFAULT), 0);
    assert_eq!(full.result, Ok(vmcore.len() as u64));
    let mut recovered = Vec::new();
    assert!(full.checkpoints.len() >= 3, "{}", full.checkpoints.len());
    for cut in 1..full.writes {
        // Each run has its own arena, so its own addresses in the ELF headers.
        let (r, vmcore) = run(500_000, Some(cut), Some(Checkpoints::DEFAULT), 0);
        assert!(r.result.is_err(), "cut after {cut} writes");
        if cut == 1 {
            // The first header was written but never flushed: no record at all.
            let err = save(&r.durable).unwrap_err();
            assert_eq!(err, ReadError::Rejected(label::Error::BadMagic));
            continue;
        }
        let expect = r.checkpoints.last().map_or(0, |c| c.1.bytes);
        let (summary, out) = save(&r.durable).unwrap();
        assert_eq!(summary.header.state, State::Incomplete);
        assert_eq!(summary.header.written, expect, "cut after {cut} writes");
        assert_eq!(summary.blocks_verified, expect >> 20);
        assert!(
            out[..] == vmcore[..out.len()],
            "cut after {cut}: prefix differs"
        );
        recovered.push(out.len() as u64);
    }
    // Every checkpoint was the last one before some cut, and recovery only grows.
    for (_, c) in &full.checkpoints {
        assert!(recovered.contains(&c.bytes), "{} never recovered", c.bytes);
    }
    assert!(recovered.is_sorted());
}

#[test]
fn without_checkpoints_a_power_cut_recovers_nothing() {
    let (r, _) = run(500_000, Some(10), None, 0);
    assert!(r.result.is_err());
    assert!(r.checkpoints.is_empty());
    let (summary, out) = save(&r.durable).unwrap();
    assert_eq!((summary.header.written, out.len()), (0, 0));
}

#[test]
fn a_corrupt_block_inside_the_checkpoint_is_an_error() {
    let (r, _) = run(500_000, Some(12), Some(Checkpoints::DEFAULT), 0);
    let (summary, _) = save(&r.durable).unwrap();
    assert!(summary.header.written >= 2 << 20);
    let mut disk = r.durable.clone();
    let at = summary.header.data_offset() as usize + (1 << 20) + 77;
    disk[at] ^= 1;
    assert!(matches!(
        save(&disk),
        Err(ReadError::Rejected(label::Error::BlockChecksum {
            block: 1,
            ..
        }))
    ));
}

#[test]
fn checkpoints_come_every_2_s_on_a_slow_disk() {
    // 4 MiB/s: 20 MiB take 5 s.
    let (r, vmcore) = run(250_000, None, Some(Checkpoints::DEFAULT), 0);
    assert_eq!(r.result, Ok(vmcore.len() as u64));
    let mut last = 0;
    for (at, c) in &r.checkpoints {
        assert!(at - last <= 2_000_000 + 100_000, "gap {} us", at - last);
        assert!(at - last >= 1_000_000, "too often: gap {} us", at - last);
        assert!(c.bytes.is_multiple_of(1 << 20), "whole blocks only");
        last = *at;
    }
    assert!(r.checkpoints.len() >= 2);
}

#[test]
fn checkpoints_come_every_interval_bytes_on_a_fast_disk() {
    // 1 GiB/s, 4 MiB between checkpoints (1 GiB scaled down); time never triggers.
    let every = Checkpoints {
        interval_us: u64::MAX,
        interval_bytes: 4 << 20,
    };
    let (r, vmcore) = run(1000, None, Some(every), 0);
    assert_eq!(r.result, Ok(vmcore.len() as u64));
    let mut last = 0;
    for (_, c) in &r.checkpoints {
        assert!(
            c.bytes - last <= 4 << 20,
            "{} bytes between",
            c.bytes - last
        );
        last = c.bytes;
    }
    assert!(r.checkpoints.len() >= 4, "{}", r.checkpoints.len());
    // None with the defaults: 20 MiB in 20 ms is under both intervals.
    let (r, _) = run(1000, None, Some(Checkpoints::DEFAULT), 0);
    assert!(r.checkpoints.is_empty());
}

#[test]
fn the_cost_of_checkpoints_is_two_flushes_a_header_and_the_changed_table_pages() {
    let (plain, _) = run(250_000, None, None, 0);
    let (cp, vmcore) = run(250_000, None, Some(Checkpoints::DEFAULT), 0);
    let n = cp.checkpoints.len() as u64;
    let pages: u64 = cp.checkpoints.iter().map(|c| c.1.table_pages).sum();
    assert!(n >= 2);
    // 20 MiB: the table is one page, rewritten at each checkpoint.
    assert_eq!(pages, n);
    assert_eq!(cp.flushes, plain.flushes + 2 * n);
    // Batch sizes depend only on the disk's rate and the checkpoint time is not counted as
    // disk time, so the data writes are the same.
    assert_eq!(cp.writes, plain.writes + n * (1 + 1));
    let (summary, out) = save(&cp.durable).unwrap();
    assert_eq!(summary.header.state, State::Complete);
    assert!(out == vmcore, "the finished record reads back");
}

#[test]
fn batches_are_bounded_by_time_so_progress_comes_every_second() {
    // 2 MiB/s: one 32 MiB batch would take 16 s.
    let (r, _) = run(500_000, None, Some(Checkpoints::DEFAULT), 0);
    assert!(r.progress_at.len() >= 10, "{}", r.progress_at.len());
    let mut last = 0;
    for &at in &r.progress_at {
        assert!(at - last <= 1_000_000, "progress gap {} us", at - last);
        last = at;
    }
}

#[test]
fn the_throttle_slows_a_fast_disk_to_its_rate() {
    let (r, vmcore) = run(1000, None, Some(Checkpoints::DEFAULT), 4);
    assert_eq!(r.result, Ok(vmcore.len() as u64));
    let end = *r.progress_at.last().unwrap();
    // 20 MiB at 4 MiB/s: 5 s (the first batches are sized before the rate is known).
    assert!((4_500_000..=5_600_000).contains(&end), "{end} us");
    assert!(r.checkpoints.len() >= 2);
}

#[test]
fn table_memory_stays_bounded_by_the_entries_between_checkpoints() {
    // 4 KiB checksum blocks so that a few MiB make many table pages.
    let mut arena = Arena::new(1 << 20);
    let clock = ManualClock(Cell::new(0));
    let mut dev = MemDisk::new(&arena, 4 << 20, &clock, 0);
    let header_buf = alloc_dma_mem(&mut arena, 4096, 4096, false).unwrap();
    let buf = alloc_dma_mem(&mut arena, TABLE_BOUNCE, 4096, false).unwrap();
    let mut table = Table {
        buf,
        header_buf,
        header_lba: 8,
        table_lba: 16,
        lbas_per_page: 8,
        block_size: 4096,
        on_disk: 0,
        pending: Vec::new(),
    };
    let mut out = Out {
        dev: &mut dev,
        dma: &mut arena,
    };
    let mut header = RecordHeader::new(
        &Label::new([1; 16], 4 << 20, 0).unwrap(),
        &label::record_layout(&Label::new([1; 16], 4 << 20, 0).unwrap(), 1 << 20).unwrap(),
        u64::MAX,
        0,
        [0; 16],
        b"",
    );
    let mut sums = BlockXxh64::new(4096, ChecksumKind::Full);
    let mut all = Vec::new();
    let step = 700; // entries between checkpoints
    for i in 0..10u32 {
        let data = pattern(step * 4096, i as u8);
        sums.update(&data);
        for b in data.chunks(4096) {
            all.push(BlockXxh64::of_block(ChecksumKind::Full, b));
        }
        table
            .checkpoint(&mut out, &mut header, &mut sums)
            .unwrap()
            .unwrap();
        // What stays is under one page: everything else is on disk.
        assert!(table.pending.len() < ENTRIES_PER_PAGE as usize);
        assert_eq!(header.written, all.len() as u64 * 4096);
    }
    // The end of the dump, as `write_checkpointed` does it: a last partial block, then the
    // pages not yet on disk.
    let tail = pattern(1000, 99);
    sums.update(&tail);
    all.push(BlockXxh64::of_block(ChecksumKind::Full, &tail));
    table.pending.extend(sums.finish());
    table.write_pending(&mut out).unwrap();
    let want = label::xxh64_table(&all);
    assert!(dev.disk[16 * 512..16 * 512 + want.len()] == want[..]);
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

#[test]
fn the_crash_report_rides_in_the_header_page_and_survives_mark_saved() {
    let (mut arena, clock, plan, vmcore) = setup();
    let fake = FakeNvme::new(&arena);
    let label = labelled(&mut fake.0.borrow_mut().disk);
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    let text = "crashed kernel: 6.1.0-56-cloud-amd64\npanic: sysrq triggered crash\n";
    let w = RecordWriter::new(&label, &plan, *b"run-id-of-a-test", ChecksumKind::Full)
        .unwrap()
        .with_report(text);
    assert_eq!(write(w, &mut dev, &mut arena), Ok(vmcore.len() as u64));
    let mut disk = fake.0.borrow().disk.clone();
    let at = label.data_offset as usize;
    let page = &disk[at..at + label::HEADER_BYTES];
    assert_eq!(crate::report_area::parse(page).as_deref(), Ok(text));
    // The final header rewrite kept it, and the record still reads back.
    let (summary, out) = save(&disk).unwrap();
    assert_eq!(summary.header.state, State::Complete);
    assert!(out == vmcore);
    // `save` marks the record saved by rewriting the header's 176 bytes only.
    let saved = label::mark_saved(&label, &disk[at..at + label::HEADER_BYTES]).unwrap();
    disk[at..at + saved.len()].copy_from_slice(&saved);
    let page = &disk[at..at + label::HEADER_BYTES];
    assert_eq!(crate::report_area::parse(page).as_deref(), Ok(text));

    // Without a report the area is absent.
    let (mut arena, clock, plan, _) = setup();
    let fake = FakeNvme::new(&arena);
    let label = labelled(&mut fake.0.borrow_mut().disk);
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    let w = RecordWriter::new(&label, &plan, [1; 16], ChecksumKind::Full).unwrap();
    write(w, &mut dev, &mut arena).unwrap();
    let disk = fake.0.borrow().disk.clone();
    let at = label.data_offset as usize;
    assert_eq!(
        crate::report_area::parse(&disk[at..at + label::HEADER_BYTES]),
        Err(crate::report_area::Error::Absent)
    );
}

// ---- a produced vmcore (rkdump.format=kdump) ----

mod produced {
    use super::*;
    use crate::record::produced::ProducedRecord;
    use rkdump_vmcore::kdump::{self, Codec, KdumpFile};
    use rkdump_vmcore::pages::KeepAll;

    /// 12 MiB of RAM, half pattern (compresses), a quarter zeros and a quarter noise.
    fn kdump_crash() -> (FakeMemory, DumpPlan) {
        let mut mem = FakeMemory::new();
        mem.insert(0x7f00_0000, vmcoreinfo_buffer(VMCOREINFO_TEXT, 4132));
        mem.insert(
            0x7e00_0000,
            cpu_note_buffer(Some((1, 0xffff_ffff_8100_0000))),
        );
        let ram = 0x0100_0000u64;
        let phdrs = vec![
            note_phdr(0x7e00_0000, 368),
            note_phdr(0x7f00_0000, 4132),
            load_phdr(ram, ram, DM + ram, 12 << 20),
        ];
        mem.add_pattern(ram, ram + (6 << 20));
        mem.insert(ram + (6 << 20), vec![0; 3 << 20]);
        mem.insert(ram + (9 << 20), pattern(3 << 20, 11));
        mem.insert(HDR, header_blob(&phdrs));
        let plan = prepare_dump(&mut mem, HDR, None).unwrap();
        (mem, plan)
    }

    struct Out {
        result: Result<u64, RecordError>,
        durable: Vec<u8>,
        checkpoints: Vec<Checkpoint>,
        file: Vec<u8>,
    }

    fn write_kdump_record(power_after: Option<u64>, disk: usize) -> Out {
        let (mut mem, plan) = kdump_crash();
        let mut arena = Arena::new(4 << 20);
        let clock = ManualClock(Cell::new(0));
        let mut dev = MemDisk::new(&arena, disk, &clock, 200_000);
        let label = labelled(&mut dev.disk);
        dev.durable.copy_from_slice(&dev.disk);
        dev.power_after = power_after;
        let opts = kdump::Options {
            codec: Codec::Zlib,
            data_align: 1 << 20,
            window_pages: 512,
            ..kdump::Options::default()
        };
        // The same file written to memory: what the record must hold.
        let mut file = Vec::new();
        kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut file, &opts, &mut |_| {}).unwrap();
        let max = kdump::max_file_size(&plan, &opts).unwrap();
        let mut cps = Vec::new();
        let mut on_cp = |c| cps.push(c);
        let pacing = Pacing {
            clock: &clock,
            checkpoints: Some(Checkpoints {
                interval_us: 1_000_000,
                interval_bytes: 1 << 20,
            }),
            throttle_mib_s: 0,
        };
        let result = ProducedRecord::start(
            &mut dev,
            &mut arena,
            &label,
            max,
            [7; 16],
            ChecksumKind::Full,
            b"6.1.0-test",
            0,
            Some(pacing),
            &mut on_cp,
        )
        .and_then(|mut rec| {
            rec.set_report(KDUMP_REPORT);
            let r = kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut rec, &opts, &mut |_| {});
            rec.finish(r.ok().map(|s| s.size))
        });
        Out {
            result,
            durable: dev.durable.clone(),
            checkpoints: cps,
            file,
        }
    }

    const KDUMP_REPORT: &str = "crashed kernel: 6.1.0-test\npanic: sysrq triggered crash\n";

    #[test]
    fn a_kdump_file_goes_through_the_record_byte_exact() {
        let out = write_kdump_record(None, 24 << 20);
        assert_eq!(out.result, Ok(out.file.len() as u64));
        // The crash report rides in the final header page.
        let at =
            label::Label::parse(&out.durable[..label::LABEL_BYTES]).map(|l| l.data_offset as usize);
        let at = at.unwrap();
        assert_eq!(
            crate::report_area::parse(&out.durable[at..at + label::HEADER_BYTES]).as_deref(),
            Ok(KDUMP_REPORT)
        );
        let (summary, saved) = save(&out.durable).unwrap();
        assert_eq!(summary.header.state, State::Complete);
        assert_eq!(
            summary.blocks_verified,
            out.file.len().div_ceil(1 << 20) as u64
        );
        assert!(saved == out.file, "save returns the writer's file");
        let f = KdumpFile::parse(&saved).unwrap();
        assert_eq!(kdump::read::all_pages(&f).unwrap().len(), 3072);
        // The metadata (under 1 MiB here) trails the data: no block of it completes before
        // the end, so no checkpoint had anything new to cover.
        assert!(out.checkpoints.iter().all(|c| c.bytes % (1 << 20) == 0));
    }

    #[test]
    fn a_power_cut_leaves_a_verified_metadata_prefix() {
        let out = write_kdump_record(Some(12), 24 << 20);
        assert!(out.result.is_err());
        let (summary, saved) = save(&out.durable).unwrap();
        assert_eq!(summary.header.state, State::Incomplete);
        assert!(saved.len() as u64 == summary.header.written);
        assert!(
            saved[..] == out.file[..saved.len()],
            "the prefix is the file's"
        );
    }

    #[test]
    fn a_disk_too_small_gets_a_truncated_record() {
        let out = write_kdump_record(None, 3 << 20);
        let n = out.result.unwrap();
        assert!(n < out.file.len() as u64);
        let (summary, saved) = save(&out.durable).unwrap();
        assert_eq!(summary.header.state, State::Truncated);
        assert!(saved[..] == out.file[..saved.len()]);
    }

    #[test]
    fn a_disk_smaller_than_the_bound_still_holds_a_file_that_fits() {
        // The raw bound is over 12 MiB; the compressed file is not.
        let out = write_kdump_record(None, 9 << 20);
        assert_eq!(out.result, Ok(out.file.len() as u64));
        let (summary, saved) = save(&out.durable).unwrap();
        assert_eq!(summary.header.state, State::Complete);
        assert!(saved == out.file);
    }

    #[test]
    fn a_flipped_byte_on_disk_is_refused() {
        let mut out = write_kdump_record(None, 24 << 20);
        assert!(out.result.is_ok());
        let at = disk_offset(out.file.len() - 100);
        out.durable[at] ^= 1;
        assert!(save(&out.durable).is_err());
    }
}
