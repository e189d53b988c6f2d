//! Writing a kdump-compressed file window by window: bounded memory whatever the RAM size.
//!
//! Three walks over the frames `0 .. max_mapnr`, in windows of [`Options::window_pages`]:
//! 1. bitmap 1 (frames the PT_LOADs cover), written in order;
//! 2. bitmap 2 (frames the [`PageSelector`] keeps), written in order, counting kept pages and
//!    remembering each window's count and fingerprint (16 bytes per window);
//! 3. the selector again (it must decide the same: checked against the fingerprint), and for
//!    every kept page: read into a [`Batch`]; each full batch is zero-checked and compressed on
//!    every CPU the [`Parallel`] runner offers, then its pages' data and descriptors are
//!    appended in frame order (the same bytes whatever the CPU count).
//!
//! The count from walk 2 fixes where the descriptors end, so the page data region starts at a
//! known offset and the data is streamed while the descriptors trail it in their own region.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::IntoBytes;

use super::abi::{
    DISKDUMP_HEADER_BLOCKS, KDUMP_HEADER_VERSION, KDUMP_SIGNATURE, disk_dump_header,
    kdump_sub_header, new_utsname, page_desc, timeval,
};
use super::batch::{Batch, OneCpu, Parallel, Stored};
use super::codec::{Codec, PAGE};
use crate::DumpPlan;
use crate::mem::{OldMemError, OldMemory, SinkError};
use crate::pages::{PageSelector, PfnBitmap, SelectError};

/// Bytes at file offsets. The writer's writes form two sequential streams: the metadata
/// `[0, data_offset)` (header, sub-header and notes, bitmap 1, bitmap 2, descriptors, zero
/// padding), each write starting where the previous one of that stream ended; and the page
/// data `[data_offset, end)`, likewise. Data writes start once the metadata has reached the
/// descriptor region; a descriptor is written only after the data it points to.
pub trait KdumpSink {
    /// Stores `data` at file offset `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError>;
}

impl KdumpSink for Vec<u8> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        crate::stream::WriteAt::write_at(self, offset, data)
    }
}

impl<S: KdumpSink + ?Sized> KdumpSink for &mut S {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        (**self).write_at(offset, data)
    }
}

/// Frames per window: 1 GiB of RAM, a 32 KiB bitmap.
pub const WINDOW_PAGES: u64 = 1 << 18;
/// Bytes gathered before one sink write, in each stream (the disk record buffers again).
const DATA_BUF: usize = 64 << 10;
/// Descriptors gathered before one sink write.
const DESC_BUF: usize = 2730 * size_of::<page_desc>();
/// Pages compressed per [`Parallel::run`]: 128 KiB read, up to 133 KiB compressed (a few
/// milliseconds of work per CPU, against microseconds to start a run).
pub const BATCH_PAGES: usize = 32;

/// How to write.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Page codec.
    pub codec: Codec,
    /// `kdump_sub_header.dump_level` (`rkdump.level=`).
    pub dump_level: i32,
    /// Frames per window (rounded up to a multiple of 64).
    pub window_pages: u64,
    /// The page data region starts at a multiple of this (the disk record's checksum block, so
    /// the two streams never share one); 1 for none.
    pub data_align: u64,
    /// Pages read before each compression round ([`BATCH_PAGES`]); more keeps more CPUs busy
    /// for longer per round, at `8 KiB` of buffer each.
    pub batch_pages: usize,
    /// A microsecond clock, for the phase times in [`Stats`] (none: they stay 0).
    pub now_us: Option<fn() -> u64>,
    /// Most workers given codec state ([`super::batch::MAX_WORKERS`] at most): a caller with
    /// a small heap sets it from [`super::Compressor::state_bytes`].
    pub max_workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            codec: Codec::Zlib,
            dump_level: 0,
            window_pages: WINDOW_PAGES,
            data_align: 1,
            batch_pages: BATCH_PAGES,
            now_us: None,
            max_workers: super::batch::MAX_WORKERS,
        }
    }
}

/// Where the fixed parts of the file go (all offsets in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Frames the bitmaps cover: one past the highest PT_LOAD frame.
    pub max_mapnr: u64,
    /// Blocks of sub-header and notes (`sub_hdr_size`).
    pub sub_hdr_blocks: u64,
    /// Blocks of both bitmaps (`bitmap_blocks`).
    pub bitmap_blocks: u64,
    /// Bitmap 1 (frames that exist).
    pub bitmap1_offset: u64,
    /// Bitmap 2 (frames dumped).
    pub bitmap2_offset: u64,
    /// First page descriptor.
    pub desc_offset: u64,
}

impl Geometry {
    /// The layout of `plan` as kdump-compressed.
    pub fn of(plan: &DumpPlan) -> Result<Self, Error> {
        let max_mapnr = load_ranges(plan).map(|(_, e)| e).max().unwrap_or(0);
        let note = plan.notes.bytes().len() as u64;
        let sub_hdr_blocks = (size_of::<kdump_sub_header>() as u64 + note).div_ceil(PAGE as u64);
        let one = max_mapnr.div_ceil(8).div_ceil(PAGE as u64);
        let bitmap_blocks = one * 2;
        let bitmap1_offset = (DISKDUMP_HEADER_BLOCKS + sub_hdr_blocks) * PAGE as u64;
        let bitmap2_offset = bitmap1_offset + one * PAGE as u64;
        let desc_offset = bitmap1_offset + bitmap_blocks * PAGE as u64;
        if u32::try_from(bitmap_blocks).is_err() {
            return Err(Error::TooLarge);
        }
        Ok(Geometry {
            max_mapnr,
            sub_hdr_blocks,
            bitmap_blocks,
            bitmap1_offset,
            bitmap2_offset,
            desc_offset,
        })
    }
}

/// The largest file [`write_kdump`] can write for `plan` (every frame the PT_LOADs cover
/// dumped and stored raw): a sink that must place things after the file (the disk record's
/// checksum table) plans with it.
pub fn max_file_size(plan: &DumpPlan, opts: &Options) -> Result<u64, Error> {
    let geom = Geometry::of(plan)?;
    let frames = load_ranges(plan).try_fold(0u64, |n, (s, e)| n.checked_add(e - s));
    frames
        .and_then(|n| {
            let descs = geom
                .desc_offset
                .checked_add(n.checked_mul(size_of::<page_desc>() as u64)?)?;
            let data = descs.checked_next_multiple_of(opts.data_align.max(1))?;
            data.checked_add(n.checked_add(1)?.checked_mul(PAGE as u64)?)
        })
        .ok_or(Error::TooLarge)
}

/// The page-frame ranges `[start, end)` the PT_LOADs cover (partial pages included).
fn load_ranges(plan: &DumpPlan) -> impl Iterator<Item = (u64, u64)> + '_ {
    plan.header.loads().filter_map(|(_, p)| {
        let end = p.p_offset.checked_add(p.p_memsz)?;
        (p.p_memsz > 0).then(|| (p.p_offset / PAGE as u64, end.div_ceil(PAGE as u64)))
    })
}

/// What the writer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// File size.
    pub size: u64,
    /// Where the page data region starts.
    pub data_offset: u64,
    /// Frames in bitmap 1.
    pub present: u64,
    /// Pages dumped (bitmap 2, one descriptor each).
    pub pages: u64,
    /// Dumped pages that were all zero (sharing one descriptor's data).
    pub zero_pages: u64,
    /// Pages stored raw (the codec did not shrink them).
    pub raw_pages: u64,
    /// Pages stored compressed.
    pub compressed_pages: u64,
    /// Windows walked.
    pub windows: u64,
    /// Windows whose selector failed and were kept whole.
    pub selector_errors: u64,
    /// Bytes the writer held for its own work (buffers, codec state excluded), whatever the RAM size.
    pub buffer_bytes: u64,
    /// Workers that compressed (codec states; CPUs beyond [`super::batch::MAX_WORKERS`] idle).
    pub workers: u64,
    /// Pages each worker compressed (index = worker; a CPU that joined no round shows 0).
    pub pages_by_worker: [u64; super::batch::MAX_WORKERS],
    /// Walk 3's time reading kept pages from old memory (with [`Options::now_us`]).
    pub read_us: u64,
    /// Walk 3's time zero-checking and compressing, on all workers (wall clock).
    pub compress_us: u64,
    /// Walk 3's time handing data and descriptors to the sink.
    pub write_us: u64,
}

/// Something the caller may want to show while the writer runs.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// The selector failed on the window from `start_pfn`; all its pages are kept.
    SelectorFailed {
        /// First frame of the window.
        start_pfn: u64,
        /// Why.
        error: SelectError,
    },
    /// Walk 3 progress: `done` of `total` dumped pages written, `bytes` of file so far.
    Progress {
        /// Pages written.
        done: u64,
        /// Pages to write.
        total: u64,
        /// File bytes so far (the data end).
        bytes: u64,
    },
}

/// Why the file could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The allocator refused a buffer.
    NoMemory,
    /// The layout does not fit the format's fields.
    TooLarge,
    /// A kept page could not be read.
    OldMem {
        /// Its frame.
        pfn: u64,
        /// The failure.
        source: OldMemError,
    },
    /// The sink refused bytes.
    Sink {
        /// File offset of the write.
        offset: u64,
        /// The failure.
        source: SinkError,
    },
    /// The selector kept different pages of a window the second time it was asked.
    Unstable {
        /// First frame of the window.
        start_pfn: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoMemory => f.write_str("no memory for the kdump writer's buffers"),
            Error::TooLarge => f.write_str("memory map too large for the kdump format"),
            Error::OldMem { pfn, source } => write!(f, "page frame {pfn:#x}: {source}"),
            Error::Sink { offset, source } => write!(f, "at file offset {offset:#x}: {source}"),
            Error::Unstable { start_pfn } => write!(
                f,
                "page selection of the window at frame {start_pfn:#x} changed between passes"
            ),
        }
    }
}

fn nomem<T>(_: T) -> Error {
    Error::NoMemory
}

/// Block 0 and the sub-header area: `disk_dump_header`, `kdump_sub_header`, the notes.
pub fn header_bytes(plan: &DumpPlan, geom: &Geometry, opts: &Options) -> Result<Vec<u8>, Error> {
    let notes = plan.notes.bytes();
    let info = plan.notes.vmcoreinfo();
    let mut uts = new_utsname {
        sysname: [0; 65],
        nodename: [0; 65],
        release: [0; 65],
        version: [0; 65],
        machine: [0; 65],
        domainname: [0; 65],
    };
    let put = |dst: &mut [u8; 65], s: &[u8]| {
        let n = s.len().min(64);
        dst[..n].copy_from_slice(&s[..n]);
    };
    put(&mut uts.sysname, b"Linux");
    put(&mut uts.machine, b"x86_64");
    if let Some(rel) = info.and_then(|i| i.osrelease()) {
        put(&mut uts.release, rel.as_bytes());
    }
    let dh = disk_dump_header {
        signature: KDUMP_SIGNATURE,
        header_version: KDUMP_HEADER_VERSION,
        utsname: uts,
        _pad: [0; 6],
        timestamp: timeval {
            tv_sec: info.and_then(|i| i.crash_time()).unwrap_or(0) as i64,
            tv_usec: 0,
        },
        status: opts.codec.flag(),
        block_size: PAGE as i32,
        sub_hdr_size: i32::try_from(geom.sub_hdr_blocks).map_err(|_| Error::TooLarge)?,
        // Checked by Geometry::of.
        bitmap_blocks: geom.bitmap_blocks as u32,
        max_mapnr: geom.max_mapnr.min(u64::from(u32::MAX)) as u32,
        total_ram_blocks: 0,
        device_blocks: 0,
        written_blocks: 0,
        current_cpu: 0,
        nr_cpus: plan.notes.prstatus_count() as i32,
    };
    let offset_note = PAGE + size_of::<kdump_sub_header>();
    let vmcoreinfo = plan.notes.iter().find(|n| n.is_vmcoreinfo()).map(|n| {
        // Both slices point into `notes`.
        let at = n.desc.as_ptr() as usize - notes.as_ptr() as usize;
        ((offset_note + at) as i64, n.desc.len() as u64)
    });
    let sub = kdump_sub_header {
        phys_base: info.and_then(|i| i.phys_base()).unwrap_or(0),
        dump_level: opts.dump_level,
        offset_vmcoreinfo: vmcoreinfo.map_or(0, |v| v.0),
        size_vmcoreinfo: vmcoreinfo.map_or(0, |v| v.1),
        offset_note: if notes.is_empty() {
            0
        } else {
            offset_note as i64
        },
        size_note: notes.len() as u64,
        max_mapnr_64: geom.max_mapnr,
        ..kdump_sub_header::default()
    };
    let len = ((DISKDUMP_HEADER_BLOCKS + geom.sub_hdr_blocks) * PAGE as u64) as usize;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(nomem)?;
    out.resize(len, 0);
    out[..size_of::<disk_dump_header>()].copy_from_slice(dh.as_bytes());
    out[PAGE..offset_note].copy_from_slice(sub.as_bytes());
    out[offset_note..offset_note + notes.len()].copy_from_slice(notes);
    Ok(out)
}

/// One sequential stream of the file, buffered.
struct Stream {
    /// File offset of `buf[0]`.
    at: u64,
    buf: Vec<u8>,
    cap: usize,
}

impl Stream {
    fn new(at: u64, cap: usize) -> Result<Self, Error> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(cap).map_err(nomem)?;
        Ok(Stream { at, buf, cap })
    }

    /// File offset of the next byte.
    fn end(&self) -> u64 {
        self.at + self.buf.len() as u64
    }

    fn push(&mut self, sink: &mut dyn KdumpSink, bytes: &[u8]) -> Result<(), Error> {
        if self.buf.len() + bytes.len() > self.cap {
            self.flush(sink)?;
        }
        if bytes.len() > self.cap {
            return put(sink, self.at, bytes).map(|()| self.at += bytes.len() as u64);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self, sink: &mut dyn KdumpSink) -> Result<(), Error> {
        if !self.buf.is_empty() {
            put(sink, self.at, &self.buf)?;
            self.at += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Zeros up to file offset `to`.
    fn pad_to(&mut self, sink: &mut dyn KdumpSink, to: u64) -> Result<(), Error> {
        while self.end() < to {
            let n = (to - self.end()).min(ZEROS.len() as u64) as usize;
            self.push(sink, &ZEROS[..n])?;
        }
        Ok(())
    }
}

static ZEROS: [u8; PAGE] = [0; PAGE];

fn put(sink: &mut dyn KdumpSink, offset: u64, data: &[u8]) -> Result<(), Error> {
    sink.write_at(offset, data)
        .map_err(|source| Error::Sink { offset, source })
}

/// A window's bitmap 1: the frames the PT_LOADs cover.
fn present(ranges: &[(u64, u64)], start: u64, n: u64) -> Result<PfnBitmap, Error> {
    let mut map = PfnBitmap::new(start, n).map_err(nomem)?;
    for &(s, e) in ranges {
        map.set_range(s, e - s, true);
    }
    Ok(map)
}

/// Appends the bitmap's bytes (its frames only) to `stream`.
fn push_bitmap(
    stream: &mut Stream,
    sink: &mut dyn KdumpSink,
    map: &PfnBitmap,
) -> Result<(), Error> {
    let bytes = map.npages().div_ceil(8) as usize;
    let mut left = bytes;
    for w in map.words() {
        let b = w.to_le_bytes();
        let n = left.min(8);
        stream.push(sink, &b[..n])?;
        left -= n;
    }
    Ok(())
}

fn fingerprint(map: &PfnBitmap) -> u64 {
    map.words().iter().fold(0xcbf2_9ce4_8422_2325, |h, w| {
        (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(17)
    })
}

/// Runs the selector on a window, keeping everything if it fails.
fn select(
    selector: &mut dyn PageSelector,
    mem: &mut dyn OldMemory,
    map: &mut PfnBitmap,
    events: &mut dyn FnMut(Event),
    stats: &mut Stats,
) {
    let backup = map.clone();
    if let Err(error) = selector.select(mem, map) {
        *map = backup;
        stats.selector_errors += 1;
        events(Event::SelectorFailed {
            start_pfn: map.start_pfn(),
            error,
        });
    }
}

/// Walk 3's output side: the data and descriptor streams a batch's pages go to.
struct Emit<'a> {
    sink: &'a mut dyn KdumpSink,
    data: Stream,
    descs: Stream,
    zero_desc: page_desc,
    codec: Codec,
    /// Pages written.
    done: u64,
}

impl Emit<'_> {
    /// Compresses the batch on the workers and appends its pages in order.
    fn run(
        &mut self,
        batch: &mut Batch,
        par: &mut dyn Parallel,
        clock: fn() -> u64,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let t = clock();
        batch.compress(par);
        let t2 = clock();
        stats.compress_us += t2.saturating_sub(t);
        let r = batch.drain(|_, stored, bytes| self.page(stored, bytes, stats));
        stats.write_us += clock().saturating_sub(t2);
        r
    }

    fn page(&mut self, stored: Stored, bytes: &[u8], stats: &mut Stats) -> Result<(), Error> {
        let desc = match stored {
            Stored::Zero => {
                stats.zero_pages += 1;
                self.zero_desc
            }
            Stored::Raw | Stored::Compressed(_) => {
                let flags = if let Stored::Compressed(_) = stored {
                    stats.compressed_pages += 1;
                    self.codec.flag()
                } else {
                    stats.raw_pages += 1;
                    0
                };
                let offset = self.data.end() as i64;
                self.data.push(self.sink, bytes)?;
                page_desc {
                    offset,
                    size: bytes.len() as u32,
                    flags,
                    page_flags: 0,
                }
            }
        };
        if self.descs.buf.len() + size_of::<page_desc>() > self.descs.cap {
            // The data a descriptor names goes out before the descriptor.
            self.data.flush(self.sink)?;
        }
        self.descs.push(self.sink, desc.as_bytes())?;
        self.done += 1;
        Ok(())
    }
}

/// Writes `plan` as a kdump-compressed file to `sink`, keeping what `selector` keeps, on this
/// CPU alone ([`write_kdump_on`] with [`OneCpu`]).
pub fn write_kdump(
    plan: &DumpPlan,
    mem: &mut dyn OldMemory,
    selector: &mut dyn PageSelector,
    sink: &mut dyn KdumpSink,
    opts: &Options,
    events: &mut dyn FnMut(Event),
) -> Result<Stats, Error> {
    write_kdump_on(plan, mem, selector, sink, opts, &mut OneCpu, events)
}

/// Writes `plan` as a kdump-compressed file to `sink`, keeping what `selector` keeps, with the
/// compression spread over the workers `par` runs; the file is byte-identical whatever their
/// number. Memory: two window bitmaps (`window_pages / 4` bytes), 16 bytes per window, a
/// 64 KiB buffer per stream (metadata, then data), a 64 KiB descriptor buffer, the batch (`batch_pages` × 8 KiB) and one
/// codec state per worker (at most [`super::batch::MAX_WORKERS`]); nothing grows with RAM size
/// beyond the per-window 16 bytes (16 KiB per TiB with the default window).
pub fn write_kdump_on(
    plan: &DumpPlan,
    mem: &mut dyn OldMemory,
    selector: &mut dyn PageSelector,
    sink: &mut dyn KdumpSink,
    opts: &Options,
    par: &mut dyn Parallel,
    events: &mut dyn FnMut(Event),
) -> Result<Stats, Error> {
    let geom = Geometry::of(plan)?;
    let window = opts.window_pages.max(64).next_multiple_of(64);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for r in load_ranges(plan) {
        ranges.try_reserve(1).map_err(nomem)?;
        ranges.push(r);
    }
    let mut stats = Stats::default();
    let nwin = geom.max_mapnr.div_ceil(window);
    let windows = || (0..nwin).map(move |i| (i * window, window.min(geom.max_mapnr - i * window)));

    // Metadata stream: header area, then the bitmaps.
    let mut meta = Stream::new(0, DATA_BUF)?;
    let head = header_bytes(plan, &geom, opts)?;
    meta.push(sink, &head)?;
    drop(head);
    for (start, n) in windows() {
        let map = present(&ranges, start, n)?;
        stats.present += map.count();
        push_bitmap(&mut meta, sink, &map)?;
    }
    meta.pad_to(sink, geom.bitmap2_offset)?;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    seen.try_reserve_exact(nwin as usize).map_err(nomem)?;
    for (start, n) in windows() {
        let mut map = present(&ranges, start, n)?;
        select(selector, mem, &mut map, events, &mut stats);
        let kept = map.count();
        stats.pages += kept;
        seen.push((kept, fingerprint(&map)));
        push_bitmap(&mut meta, sink, &map)?;
    }
    meta.pad_to(sink, geom.desc_offset)?;
    meta.flush(sink)?;
    drop(meta);

    let desc_end = (stats.pages)
        .checked_mul(size_of::<page_desc>() as u64)
        .and_then(|b| b.checked_add(geom.desc_offset))
        .ok_or(Error::TooLarge)?;
    let align = opts.data_align.max(1);
    let data_offset = desc_end
        .checked_next_multiple_of(align)
        .ok_or(Error::TooLarge)?;
    stats.data_offset = data_offset;
    let descs = Stream::new(geom.desc_offset, DESC_BUF)?;
    let mut data = Stream::new(data_offset, DATA_BUF)?;
    // makedumpfile's shared zero page: the first page of the data region.
    data.push(sink, &ZEROS)?;
    let zero_desc = page_desc {
        offset: data_offset as i64,
        size: PAGE as u32,
        flags: 0,
        page_flags: 0,
    };
    let workers = par.workers().min(opts.max_workers);
    let mut batch = Batch::new(opts.codec, opts.batch_pages, workers).map_err(nomem)?;
    stats.workers = batch.workers() as u64;
    stats.buffer_bytes =
        (2 * window.div_ceil(8) + 16 * nwin + (DATA_BUF + DESC_BUF + batch.buffer_bytes()) as u64)
            + (ranges.len() * 16) as u64;
    let clock = opts.now_us.unwrap_or(|| 0);
    let mut out = Emit {
        sink,
        data,
        descs,
        zero_desc,
        codec: opts.codec,
        done: 0,
    };
    for (i, (start, n)) in windows().enumerate() {
        let mut map = present(&ranges, start, n)?;
        select(selector, mem, &mut map, events, &mut stats);
        if seen[i] != (map.count(), fingerprint(&map)) {
            return Err(Error::Unstable { start_pfn: start });
        }
        stats.windows += 1;
        for (first, count) in map.runs() {
            let mut pfn = first;
            while pfn < first + count {
                // A run of kept frames is read in one call (one check and mapping of old
                // memory instead of one per page), as far as the batch has room.
                let n = usize::try_from(first + count - pfn)
                    .unwrap_or(usize::MAX)
                    .min(batch.room());
                let t = clock();
                let run = batch.next_run(pfn, n).ok_or(Error::NoMemory)?;
                let read = mem.read(pfn * PAGE as u64, run);
                stats.read_us += clock().saturating_sub(t);
                if read.is_err() {
                    // Find the frame that failed, keeping the ones before it.
                    batch.forget_last_n(n);
                    for p in pfn..pfn + n as u64 {
                        let page = batch.next_page(p).ok_or(Error::NoMemory)?;
                        if let Err(source) = mem.read(p * PAGE as u64, page) {
                            batch.forget_last();
                            out.run(&mut batch, par, clock, &mut stats)?;
                            return Err(Error::OldMem { pfn: p, source });
                        }
                    }
                }
                pfn += n as u64;
                if batch.is_full() {
                    out.run(&mut batch, par, clock, &mut stats)?;
                }
            }
        }
        out.run(&mut batch, par, clock, &mut stats)?;
        events(Event::Progress {
            done: out.done,
            total: stats.pages,
            bytes: out.data.end(),
        });
    }
    let Emit {
        sink,
        mut data,
        mut descs,
        ..
    } = out;
    data.flush(sink)?;
    descs.pad_to(sink, data_offset)?;
    descs.flush(sink)?;
    stats.size = data.end();
    for (w, n) in stats.pages_by_worker.iter_mut().enumerate() {
        *n = batch.pages_done_by(w) as u64;
    }
    Ok(stats)
}
