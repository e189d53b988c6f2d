//! The writer read back by the reader: every codec, zero, raw-stored and excluded pages,
//! several windows, the two-stream write order and selector failures (the memory bound:
//! `vmcore/tests/kdump_bound.rs`).

extern crate std;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::batch::Stored;
use super::read::{KdumpFile, ReadError, all_pages};
use super::*;
use crate::mem::{OldMemory, SinkError};
use crate::pages::{KeepAll, PageSelector, PfnBitmap, SelectError, SelectStats};
use crate::testing::{FakeMemory, VMCOREINFO_TEXT};
use crate::tests::{HDR_ADDR, kf_memory};
use crate::{DumpPlan, prepare_dump};

const ZERO_AT: u64 = 0x0032_0000;
const RANDOM_AT: u64 = 0x0035_0000;

/// Keeps frames that are not multiples of `every` (a stand-in for the page filter).
struct DropEvery(u64);

impl PageSelector for DropEvery {
    fn select(
        &mut self,
        _mem: &mut dyn OldMemory,
        keep: &mut PfnBitmap,
    ) -> Result<SelectStats, SelectError> {
        let mut excluded = 0;
        for pfn in keep.start_pfn()..keep.end_pfn() {
            if pfn % self.0 == 0 && keep.get(pfn) {
                keep.set(pfn, false);
                excluded += 1;
            }
        }
        Ok(SelectStats {
            examined: keep.npages(),
            excluded,
        })
    }
}

fn random_page(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn machine() -> (FakeMemory, DumpPlan) {
    let (mut mem, _) = kf_memory(
        2,
        &[0, 1],
        &[(0x0010_0000, 0x40_0000), (0x0200_0000, 0x10_0800)],
    );
    mem.insert(ZERO_AT, vec![0; 3 * 4096]);
    let mut r = random_page(1);
    r.extend(random_page(2));
    mem.insert(RANDOM_AT, r);
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    (mem, plan)
}

fn opts(codec: Codec) -> Options {
    Options {
        codec,
        dump_level: 31,
        window_pages: 64,
        data_align: 1,
        ..Options::default()
    }
}

fn loads(plan: &DumpPlan) -> Vec<(u64, u64)> {
    plan.header
        .loads()
        .map(|(_, p)| (p.p_offset >> 12, (p.p_offset + p.p_memsz).div_ceil(4096)))
        .collect()
}

/// Writes with `codec` and checks every frame of the file against old memory.
fn roundtrip(codec: Codec) -> Stats {
    let (mut mem, plan) = machine();
    let mut file = Vec::new();
    let mut windows = 0;
    let stats = write_kdump(
        &plan,
        &mut mem,
        &mut DropEvery(7),
        &mut file,
        &opts(codec),
        &mut |e| windows += u32::from(matches!(e, Event::Progress { .. })),
    )
    .unwrap();
    assert_eq!(stats.size, file.len() as u64);
    let f = KdumpFile::parse(&file).unwrap();
    assert_eq!(f.header.status, codec.flag());
    assert_eq!(f.header.nr_cpus, 2);
    assert_eq!(f.sub.dump_level, 31);
    assert_eq!(&f.header.utsname.release[..22], b"6.1.0-56-cloud-amd64\0\0");
    assert_eq!(f.notes().unwrap(), plan.notes.bytes());
    assert_eq!(
        f.vmcoreinfo().unwrap(),
        VMCOREINFO_TEXT.as_bytes(),
        "offset_vmcoreinfo names the note's descriptor"
    );
    assert_eq!(f.sub.phys_base, (-1_056_964_608i64) as u64);
    let ranges = loads(&plan);
    let present = |pfn: u64| ranges.iter().any(|&(s, e)| s <= pfn && pfn < e);
    assert_eq!(f.max_mapnr(), 0x2101);
    let pages = all_pages(&f).unwrap();
    let mut expect = Vec::new();
    for pfn in 0..f.max_mapnr() {
        assert_eq!(f.present(pfn), present(pfn), "bitmap 1 at {pfn:#x}");
        let kept = present(pfn) && pfn % 7 != 0;
        assert_eq!(f.dumped(pfn), kept, "bitmap 2 at {pfn:#x}");
        if kept {
            expect.push((pfn, mem.expected(pfn << 12, 4096).unwrap()));
        }
    }
    assert_eq!(pages.len(), expect.len());
    assert!(pages == expect, "every dumped page reads back byte-exact");
    assert_eq!(stats.pages, expect.len() as u64);
    assert!(windows > 100, "many windows: {windows}");
    // Zero pages share one descriptor: the first page of the data region.
    let mut zero_offsets = Vec::new();
    f.for_each_page(&mut |pfn, d, _| {
        if (ZERO_AT >> 12..(ZERO_AT >> 12) + 3).contains(&pfn) {
            zero_offsets.push(d.offset as u64);
        }
        if (RANDOM_AT >> 12..(RANDOM_AT >> 12) + 2).contains(&pfn) {
            assert_eq!(
                (d.flags, d.size),
                (0, 4096),
                "incompressible page stored raw"
            );
        }
    })
    .unwrap();
    assert_eq!(zero_offsets, [stats.data_offset; 3]);
    assert_eq!(stats.zero_pages, 3);
    stats
}

#[test]
fn zlib_reads_back() {
    let s = roundtrip(Codec::Zlib);
    assert!(s.compressed_pages > 1000 && s.raw_pages == 2, "{s:?}");
}

#[test]
fn lzo_reads_back() {
    let s = roundtrip(Codec::Lzo);
    assert!(s.compressed_pages > 1000 && s.raw_pages == 2, "{s:?}");
}

#[test]
fn none_reads_back() {
    let s = roundtrip(Codec::None);
    assert_eq!(s.compressed_pages, 0);
    assert_eq!(s.raw_pages + s.zero_pages, s.pages);
}

#[test]
fn damaged_page_data_is_caught() {
    let (mut mem, plan) = machine();
    let mut file = Vec::new();
    let s = write_kdump(
        &plan,
        &mut mem,
        &mut KeepAll,
        &mut file,
        &opts(Codec::Zlib),
        &mut |_| {},
    )
    .unwrap();
    // A byte inside the first compressed page (after the shared zero page).
    file[s.data_offset as usize + 4096 + 10] ^= 0xff;
    let f = KdumpFile::parse(&file).unwrap();
    match all_pages(&f) {
        Err(ReadError::Page { .. }) => {}
        Ok(pages) => {
            let differs = pages
                .iter()
                .any(|(pfn, p)| *p != mem.expected(pfn << 12, 4096).unwrap());
            assert!(differs, "a flipped byte must show");
        }
        Err(e) => panic!("unexpected {e}"),
    }
    file[0] = b'X';
    assert!(matches!(KdumpFile::parse(&file), Err(ReadError::Signature)));
}

/// Checks the two-stream order of [`KdumpSink`] and keeps the bytes.
#[derive(Default)]
struct Ordered {
    file: Vec<u8>,
    meta: u64,
    data: Option<u64>,
}

impl KdumpSink for Ordered {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), SinkError> {
        let end = offset + bytes.len() as u64;
        if offset == self.meta && self.data.is_none_or(|_| true) && Some(offset) != self.data {
            self.meta = end;
        } else if self.data.is_none() || self.data == Some(offset) {
            assert!(
                self.data.is_some() || offset > self.meta,
                "data starts after the metadata"
            );
            self.data = Some(end);
        } else {
            panic!("write at {offset:#x} continues neither stream");
        }
        self.file.write_at(offset, bytes)
    }
}

#[test]
fn two_streams_and_aligned_data() {
    let (mut mem, plan) = machine();
    let mut sink = Ordered::default();
    let o = Options {
        data_align: 1 << 20,
        ..opts(Codec::Lzo)
    };
    let s = write_kdump(&plan, &mut mem, &mut KeepAll, &mut sink, &o, &mut |_| {}).unwrap();
    assert_eq!(s.data_offset % (1 << 20), 0);
    assert_eq!(sink.meta, s.data_offset, "metadata padded up to the data");
    assert_eq!(sink.data, Some(s.size));
    let f = KdumpFile::parse(&sink.file).unwrap();
    assert_eq!(all_pages(&f).unwrap().len() as u64, s.pages);
}

/// Fails on one window, or decides differently the second time it sees a window.
struct Flaky {
    calls: u64,
    fail_at: Option<u64>,
    flip_at: Option<u64>,
}

impl PageSelector for Flaky {
    fn select(
        &mut self,
        _mem: &mut dyn OldMemory,
        keep: &mut PfnBitmap,
    ) -> Result<SelectStats, SelectError> {
        self.calls += 1;
        keep.set_range(keep.start_pfn(), keep.npages(), false);
        if Some(keep.start_pfn()) == self.fail_at {
            return Err(SelectError::Inconsistent("test"));
        }
        if Some(keep.start_pfn()) == self.flip_at && self.calls > 200 {
            keep.set(keep.start_pfn(), true);
        }
        Ok(SelectStats::default())
    }
}

#[test]
fn failed_window_kept_whole_and_unstable_selector_refused() {
    let (mut mem, plan) = machine();
    let mut file = Vec::new();
    let mut failed = Vec::new();
    let mut sel = Flaky {
        calls: 0,
        fail_at: Some(0x100),
        flip_at: None,
    };
    let s = write_kdump(
        &plan,
        &mut mem,
        &mut sel,
        &mut file,
        &opts(Codec::Zlib),
        &mut |e| {
            if let Event::SelectorFailed { start_pfn, .. } = e {
                failed.push(start_pfn)
            }
        },
    )
    .unwrap();
    assert_eq!(failed, [0x100, 0x100], "reported in both selecting walks");
    assert_eq!(s.pages, 64, "only the failed window's pages");
    let f = KdumpFile::parse(&file).unwrap();
    assert!((0x100..0x140).all(|p| f.dumped(p)) && !f.dumped(0x140));

    let mut sel = Flaky {
        calls: 0,
        fail_at: None,
        flip_at: Some(0x2000),
    };
    let e = write_kdump(
        &plan,
        &mut mem,
        &mut sel,
        &mut Vec::new(),
        &opts(Codec::Zlib),
        &mut |_| {},
    );
    assert_eq!(e.unwrap_err(), Error::Unstable { start_pfn: 0x2000 });
}

/// Runs the workers on std threads, all at once (worker 0 on the calling thread).
struct Threads(usize);

impl Parallel for Threads {
    fn workers(&self) -> usize {
        self.0
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for w in 1..self.0 {
                s.spawn(move || job(w));
            }
            job(0);
        });
    }
}

/// Runs the workers one after another, the last first: it takes every page.
struct Reversed(usize);

impl Parallel for Reversed {
    fn workers(&self) -> usize {
        self.0
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        (0..self.0).rev().for_each(job);
    }
}

/// A broken runner that never calls the job.
struct Idle;

impl Parallel for Idle {
    fn workers(&self) -> usize {
        2
    }

    fn run(&mut self, _job: &(dyn Fn(usize) + Sync)) {}
}

fn write_on(codec: Codec, par: &mut dyn Parallel) -> (Vec<u8>, Stats) {
    let (mut mem, plan) = machine();
    let mut file = Vec::new();
    let o = Options {
        // Batches that end inside runs and windows.
        batch_pages: 5,
        ..opts(codec)
    };
    let mut sel = DropEvery(7);
    let s = write_kdump_on(&plan, &mut mem, &mut sel, &mut file, &o, par, &mut |_| {}).unwrap();
    (file, s)
}

#[test]
fn the_file_is_the_same_whatever_the_workers() {
    for codec in [Codec::Zlib, Codec::Lzo, Codec::None] {
        let (one, s1) = write_on(codec, &mut OneCpu);
        assert_eq!(s1.workers, 1);
        let f = KdumpFile::parse(&one).unwrap();
        assert_eq!(all_pages(&f).unwrap().len() as u64, s1.pages);
        let runners: [(&str, &mut dyn Parallel); 4] = [
            ("2 threads", &mut Threads(2)),
            ("4 threads", &mut Threads(4)),
            ("reversed", &mut Reversed(3)),
            ("idle", &mut Idle),
        ];
        for (name, par) in runners {
            let (file, s) = write_on(codec, par);
            assert_eq!(s.workers, par.workers() as u64, "{codec} {name}");
            assert!(file == one, "{codec} on {name}: different bytes");
            assert_eq!(
                (s.pages, s.zero_pages, s.raw_pages, s.compressed_pages),
                (s1.pages, s1.zero_pages, s1.raw_pages, s1.compressed_pages)
            );
        }
    }
}

/// Pages of the test machine, several of each kind (zero, incompressible, patterned).
fn batch_pages(mem: &mut crate::testing::FakeMemory) -> Vec<(u64, Vec<u8>)> {
    let mut v = Vec::new();
    for pfn in (ZERO_AT >> 12..(ZERO_AT >> 12) + 3)
        .chain(RANDOM_AT >> 12..(RANDOM_AT >> 12) + 2)
        .chain(0x100..0x11b)
    {
        let mut page = vec![0u8; 4096];
        mem.read(pfn << 12, &mut page).unwrap();
        v.push((pfn, page));
    }
    v
}

fn compressed(batch: &mut super::batch::Batch) -> Vec<(u64, Stored, Vec<u8>)> {
    let mut out = Vec::new();
    batch
        .drain(|pfn, s, b| {
            out.push((pfn, s, b.to_vec()));
            Ok::<(), ()>(())
        })
        .unwrap();
    out
}

#[test]
fn batch_work_goes_to_the_workers_that_run() {
    use super::batch::{Batch, MAX_WORKERS};
    let (mut mem, _) = machine();
    let pages = batch_pages(&mut mem);
    let fill = |b: &mut Batch| {
        for (pfn, p) in &pages {
            b.next_page(*pfn).unwrap().copy_from_slice(p);
        }
        assert!(b.is_full());
        assert!(b.next_page(0).is_none(), "a full batch takes no more");
    };
    for codec in [Codec::Zlib, Codec::Lzo] {
        let mut one = Batch::new(codec, pages.len(), 1).unwrap();
        fill(&mut one);
        one.compress(&mut OneCpu);
        assert_eq!(one.pages_done_by(0), pages.len());
        let reference = compressed(&mut one);
        assert!(one.is_empty());
        assert_eq!(reference.iter().filter(|p| p.1 == Stored::Zero).count(), 3);
        assert_eq!(reference.iter().filter(|p| p.1 == Stored::Raw).count(), 2);
        // Decompresses to the page.
        for ((pfn, stored, bytes), (_, page)) in reference.iter().zip(&pages) {
            if let Stored::Compressed(n) = *stored {
                let mut back = vec![0u8; 4096];
                super::codec::decompress(codec.flag(), bytes, &mut back).unwrap();
                assert!(back == *page && n == bytes.len(), "{codec} page {pfn:#x}");
            }
        }

        // The last worker does everything; the others find the counter past the end.
        let mut b = Batch::new(codec, pages.len(), 3).unwrap();
        fill(&mut b);
        b.compress(&mut Reversed(3));
        assert_eq!(
            (b.pages_done_by(2), b.pages_done_by(1), b.pages_done_by(0)),
            (pages.len(), 0, 0)
        );
        assert!(compressed(&mut b) == reference, "{codec}: worker 2's bytes");
        // Real threads, twice through the same batch (codec state reused).
        let mut b = Batch::new(codec, pages.len(), 4).unwrap();
        for round in 0..2 {
            fill(&mut b);
            b.compress(&mut Threads(4));
            let by: usize = (0..4).map(|w| b.pages_done_by(w)).sum();
            assert_eq!(by, pages.len() * (round + 1));
            assert!(
                compressed(&mut b) == reference,
                "{codec} threads round {round}"
            );
        }
        // A runner that never runs the job: the caller catches up in drain.
        let mut b = Batch::new(codec, pages.len(), 2).unwrap();
        fill(&mut b);
        b.compress(&mut Idle);
        assert_eq!(b.pages_done_by(0) + b.pages_done_by(1), 0);
        assert!(compressed(&mut b) == reference, "{codec}: caught up");
        // More CPUs than codec states: the extra ones do nothing.
        let mut b = Batch::new(codec, pages.len(), 64).unwrap();
        assert_eq!(b.workers(), MAX_WORKERS);
        fill(&mut b);
        b.compress(&mut Threads(MAX_WORKERS + 3));
        assert!(
            compressed(&mut b) == reference,
            "{codec}: {MAX_WORKERS} states"
        );
    }
}

#[test]
fn a_page_compresses_the_same_after_any_other() {
    let (mut mem, _) = machine();
    let pages = batch_pages(&mut mem);
    for codec in [Codec::Zlib, Codec::Lzo] {
        let mut out = Box::new([0u8; super::codec::MAX_COMPRESSED]);
        let fresh: Vec<Option<Vec<u8>>> = pages
            .iter()
            .map(|(_, p)| {
                let mut c = Compressor::new(codec).unwrap();
                c.compress(p, &mut out).map(|n| out[..n].to_vec())
            })
            .collect();
        let mut c = Compressor::new(codec).unwrap();
        for (i, (_, p)) in pages.iter().enumerate().rev() {
            let got = c.compress(p, &mut out).map(|n| out[..n].to_vec());
            assert_eq!(got, fresh[i], "{codec}: page {i} after the others");
        }
    }
}

/// Old memory in which frame `bad` cannot be read, nor any range that covers it.
struct FailAt<'a> {
    mem: &'a mut FakeMemory,
    bad: u64,
    reads: usize,
}

impl OldMemory for FailAt<'_> {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), crate::mem::OldMemError> {
        self.reads += 1;
        let (s, e) = (phys >> 12, (phys + buf.len() as u64).div_ceil(4096));
        if s <= self.bad && self.bad < e {
            return Err(crate::mem::OldMemError::Fault {
                phys: self.bad << 12,
            });
        }
        self.mem.read(phys, buf)
    }
}

/// Runs of kept frames are read a batch at a time, and an unreadable frame inside a run is
/// still named exactly (the run is read again page by page to find it).
#[test]
fn runs_are_read_whole_and_a_bad_frame_is_named() {
    let (mut mem, plan) = machine();
    let mut file = Vec::new();
    let mut ok = FailAt {
        mem: &mut mem,
        bad: u64::MAX,
        reads: 0,
    };
    let stats = write_kdump(
        &plan,
        &mut ok,
        &mut KeepAll,
        &mut file,
        &opts(Codec::Lzo),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        (ok.reads as u64) < stats.pages / 8,
        "{} reads for {} pages",
        ok.reads,
        stats.pages
    );
    let bad = 0x0200_0000 / 4096 + 77;
    let mut failing = FailAt {
        mem: &mut mem,
        bad,
        reads: 0,
    };
    let e = write_kdump(
        &plan,
        &mut failing,
        &mut KeepAll,
        &mut Vec::new(),
        &opts(Codec::Lzo),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::OldMem { pfn, .. } if pfn == bad),
        "{e:?}"
    );
}
