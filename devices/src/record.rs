//! The dump-record protocol of [`crate::label`] on a block device: the writer the capture kernel
//! runs (header Incomplete, vmcore with periodic checkpoints, XXH64 block table, flush, header
//! Complete or Truncated, flush) and the reader `rkdumpctl save` runs ([`read`]). Page data goes
//! straight from old memory to the device by DMA and is hashed in place while the device reads
//! it; batches are submitted without waiting for the one before ([`BlockDevice::submit`]), so
//! the device's queue stays full across batch boundaries. Only headers, notes and the table pass
//! through bounce buffers.
//!
//! **Checkpoints** (see [`Checkpoints`]): so that a power cut mid-dump loses only the tail, the
//! writer periodically flushes, writes the table pages that changed, rewrites the Incomplete
//! header with `written` = the bytes covered by complete table entries, and flushes again. The
//! reader verifies and extracts exactly that prefix.

pub mod produced;
pub mod read;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use rkdump_vmcore::{DumpPlan, OldMemError, Segment};

use crate::block::{BlockDevice, BlockError, WriteReq};
use crate::hw::{DmaAllocator, DmaMem, alloc_dma_mem};
use crate::label::{self, BlockXxh64, ChecksumKind, Label, RecordHeader, RecordLayout};
use crate::time::Clock;

/// Most bytes handed to the driver per `write` call: large enough to keep queues full.
pub const BATCH_BYTES: u64 = 32 << 20;

/// Fewest bytes per `write` call (one checksum block), however slow the disk.
pub const MIN_BATCH_BYTES: u64 = 1 << 20;

/// What one batch should take, so progress callbacks (one per batch) come at least every second
/// on a slow disk: the next batch is sized from the rate of the last one, between
/// [`MIN_BATCH_BYTES`] and [`BATCH_BYTES`].
pub const BATCH_TARGET_US: u64 = 500_000;

/// Table bytes written per device call at a checkpoint and at the end: the one table bounce
/// buffer, allocated once (DMA memory is never freed).
const TABLE_BOUNCE: usize = 16 << 10;

/// Table entries per 4 KiB page.
const ENTRIES_PER_PAGE: u64 = 4096 / 8;

/// When the writer makes what it wrote durable and recoverable.
///
/// Rule: batches end no later than `interval_bytes` after the last checkpoint; after each
/// completed batch a checkpoint is taken if `interval_bytes` were written since the last one, or
/// if the next batch, taking as long as the last, would end `interval_us` or more after it (so
/// checkpoints are at most `interval_us` apart while the disk's rate holds). It covers whole
/// checksum blocks, so it trails the data by less than one block (1 MiB). With the defaults (2 s,
/// 1 GiB) a power cut loses at most about 2 s or 1 GiB of dump, whichever is less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoints {
    /// Longest time between checkpoints, microseconds.
    pub interval_us: u64,
    /// Most vmcore bytes between checkpoints.
    pub interval_bytes: u64,
}

impl Checkpoints {
    /// Every 2 s and every 1 GiB, whichever comes first.
    pub const DEFAULT: Checkpoints = Checkpoints {
        interval_us: 2_000_000,
        interval_bytes: 1 << 30,
    };
}

/// How the writer paces itself: its clock (batch sizing, checkpoint cadence) and, optionally,
/// checkpoints and a test-only throttle.
#[derive(Clone, Copy)]
pub struct Pacing<'a> {
    /// Monotonic time.
    pub clock: &'a dyn Clock,
    /// `None`: no checkpoints (the header says `written: 0` until the end, as before).
    pub checkpoints: Option<Checkpoints>,
    /// Test only (`rkdump.throttle_mib_s=`): wait after each batch so the vmcore goes out at
    /// no more than this many MiB/s; 0 for no limit.
    pub throttle_mib_s: u32,
}

/// One checkpoint taken, for the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// vmcore bytes now recoverable: the header's `written`.
    pub bytes: u64,
    /// How long the checkpoint took (flush, table, header, flush), microseconds.
    pub us: u64,
    /// Table pages written.
    pub table_pages: u64,
}

/// Old memory as the writer needs it: the very bytes a device reads by DMA from the same
/// physical addresses, without a copy (the kernel's identity map; a bus window in tests).
pub trait OldMemSlices {
    /// Runs `f` over old memory `[phys, phys + len)` in order, in pieces.
    fn with_slice(&self, phys: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<(), OldMemError>;
}

/// Which part of the record a write was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// The record header (first or final).
    Header,
    /// vmcore bytes.
    Vmcore,
    /// The XXH64 block checksum table.
    ChecksumTable,
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Area::Header => "record header",
            Area::Vmcore => "vmcore",
            Area::ChecksumTable => "XXH64 checksum table",
        })
    }
}

/// Why a record could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The label does not allow a record of this size.
    Layout(label::Error),
    /// No DMA memory for a bounce buffer.
    NoMemory,
    /// The device failed a write.
    Write {
        /// What was being written.
        area: Area,
        /// First device block of the failing batch.
        lba: u64,
        /// The driver's error.
        error: BlockError,
    },
    /// The device failed a cache flush.
    Flush(BlockError),
    /// Old memory the plan names could not be read for its checksum.
    OldMem(OldMemError),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Layout(e) => write!(f, "{e}"),
            RecordError::NoMemory => f.write_str("no DMA memory"),
            RecordError::Write { area, lba, error } => {
                write!(f, "writing the {area} at block {lba}: {error}")
            }
            RecordError::Flush(e) => write!(f, "flush: {e}"),
            RecordError::OldMem(e) => write!(f, "{e}"),
        }
    }
}

/// A record planned for one dump on one labelled disk; [`RecordWriter::write`] puts it there.
pub struct RecordWriter<'p> {
    layout: RecordLayout,
    checksum: ChecksumKind,
    plan: &'p DumpPlan,
    header: RecordHeader,
    pacing: Option<Pacing<'p>>,
    /// Crash report text for the header page's report area ([`crate::report_area`]).
    report: Option<&'p str>,
}

impl<'p> RecordWriter<'p> {
    /// Plans the record of `plan` on `label`'s disk: where header, data and table go, and
    /// whether the whole vmcore fits ([`RecordLayout::fits`]; if not, a prefix is written).
    pub fn new(
        label: &Label,
        plan: &'p DumpPlan,
        run_id: [u8; 16],
        checksum: ChecksumKind,
    ) -> Result<Self, RecordError> {
        let total = plan.layout.total_size;
        let layout = label::record_layout(label, total).map_err(RecordError::Layout)?;
        let info = plan.notes.vmcoreinfo();
        let osrelease = info.and_then(|i| i.osrelease()).unwrap_or("").as_bytes();
        let timestamp = info.and_then(|i| i.crash_time()).unwrap_or(0);
        let mut header = RecordHeader::new(label, &layout, total, timestamp, run_id, osrelease);
        header.flags = checksum as u32;
        Ok(RecordWriter {
            layout,
            checksum,
            plan,
            header,
            pacing: None,
            report: None,
        })
    }

    /// Stores `text` (cut to [`crate::report_area::MAX_TEXT`] bytes) in the record's crash
    /// report area, written with the first header.
    pub fn with_report(mut self, text: &'p str) -> Self {
        self.report = Some(text);
        self
    }

    /// Sizes batches by time and takes checkpoints as `pacing` says. Without it the writer
    /// sends [`BATCH_BYTES`] per batch and writes the table only at the end.
    pub fn with_pacing(mut self, pacing: Pacing<'p>) -> Self {
        self.pacing = Some(pacing);
        self
    }

    /// Where the record goes.
    pub fn layout(&self) -> &RecordLayout {
        &self.layout
    }

    /// Writes the record and returns the vmcore bytes on disk. `progress` gets (done, total)
    /// after every batch handed to the device. On error the header on disk still says Incomplete, with `written` as of
    /// the last checkpoint.
    pub fn write<D, M>(
        self,
        dev: &mut D,
        mem: &M,
        dma: &mut dyn DmaAllocator,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, RecordError>
    where
        D: BlockDevice + ?Sized,
        M: OldMemSlices + ?Sized,
    {
        self.write_checkpointed(dev, mem, dma, progress, &mut |_| {})
    }

    /// [`Self::write`], telling `on_checkpoint` about every checkpoint taken.
    pub fn write_checkpointed<D, M>(
        mut self,
        dev: &mut D,
        mem: &M,
        dma: &mut dyn DmaAllocator,
        progress: &mut dyn FnMut(u64, u64),
        on_checkpoint: &mut dyn FnMut(Checkpoint),
    ) -> Result<u64, RecordError>
    where
        D: BlockDevice + ?Sized,
        M: OldMemSlices + ?Sized,
    {
        let layout = self.layout;
        let total = self.plan.layout.total_size;
        let bs = u64::from(dev.info().block_size);
        let to_lba = |lba512: u64| lba512 * label::LBA_BYTES / bs;
        let header_lba = to_lba(layout.header_lba);
        // Both bounce buffers are allocated once: DMA memory is never freed.
        let mut header_buf =
            alloc_dma_mem(dma, label::HEADER_BYTES, 4096, false).ok_or(RecordError::NoMemory)?;
        // The page is written whole on every header update: zeros, then the report area;
        // updates replace only the header's own bytes.
        header_buf.copy_in(0, &[0u8; label::HEADER_BYTES]);
        if let Some(text) = self.report {
            header_buf.copy_in(
                crate::report_area::OFFSET,
                &crate::report_area::encode(text),
            );
        }
        let table_buf =
            alloc_dma_mem(dma, TABLE_BOUNCE, 4096, false).ok_or(RecordError::NoMemory)?;
        let mut out = Out { dev, dma };
        let mut table = Table {
            buf: table_buf,
            header_buf,
            header_lba,
            table_lba: to_lba(layout.table_lba),
            lbas_per_page: 4096 / bs,
            block_size: u64::from(layout.block_size),
            on_disk: 0,
            pending: Vec::new(),
        };
        table.header(&mut out, &self.header)?;
        // Durable before any data: a power cut now leaves this dump's Incomplete header, not a
        // stale record from an earlier dump whose data the new one is overwriting.
        out.dev.flush().map_err(RecordError::Flush)?;

        let data_start = layout.data_lba * label::LBA_BYTES;
        let limit = layout.writable_bytes;
        let mut sums = BlockXxh64::new(layout.block_size, self.checksum);
        let mut written = 0u64;
        let mut batch = Batch::default();
        let mut unhashed = Unhashed::default();
        // First block of the latest batch, for the error of a batch that fails late.
        let mut batch_lba = to_lba(data_start / label::LBA_BYTES);
        let mut pace = Pace::new(self.pacing);
        for seg in self.plan.layout.segments() {
            if written >= limit {
                break;
            }
            match seg {
                Segment::Bytes(b) => {
                    let n = (b.len() as u64).min(limit - written);
                    out.flush_batch(&mut batch, mem, &mut sums, &mut unhashed)?;
                    let lba = to_lba((data_start + written) / label::LBA_BYTES);
                    out.bytes(Area::Vmcore, lba, &b[..n as usize])?;
                    unhashed.finish(mem, &mut sums)?;
                    sums.update(&b[..n as usize]);
                    written += n;
                }
                Segment::OldMem { phys, len, .. } => {
                    let mut off = 0;
                    let len = len.min(limit - written);
                    while off < len {
                        let cap = pace.cap(written - batch.bytes);
                        let n = (len - off).min(cap - batch.bytes);
                        let lba = to_lba((data_start + written) / label::LBA_BYTES);
                        if batch.reqs.is_empty() {
                            batch_lba = lba;
                        }
                        batch.reqs.push(WriteReq {
                            lba,
                            phys: phys + off,
                            len: n,
                        });
                        batch.bytes += n;
                        written += n;
                        off += n;
                        if batch.bytes >= cap {
                            let sent = batch.bytes;
                            out.flush_batch(&mut batch, mem, &mut sums, &mut unhashed)?;
                            pace.batch_done(sent);
                            progress(written, total);
                            if pace.checkpoint_due(written) {
                                let t0 = pace.now();
                                out.complete(batch_lba)?;
                                unhashed.finish(mem, &mut sums)?;
                                let cp = table.checkpoint(&mut out, &mut self.header, &mut sums)?;
                                if let Some(table_pages) = cp {
                                    pace.checkpointed(written);
                                    on_checkpoint(Checkpoint {
                                        bytes: self.header.written,
                                        us: pace.now().saturating_sub(t0),
                                        table_pages,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        out.flush_batch(&mut batch, mem, &mut sums, &mut unhashed)?;
        out.complete(batch_lba)?;
        unhashed.finish(mem, &mut sums)?;
        progress(written, total);
        table.pending.extend(sums.finish());
        table.write_pending(&mut out)?;
        out.dev.flush().map_err(RecordError::Flush)?;
        self.header.finish(written);
        table.header(&mut out, &self.header)?;
        out.dev.flush().map_err(RecordError::Flush)?;
        Ok(written)
    }
}

/// Batch sizing and checkpoint cadence on the caller's clock.
struct Pace<'a> {
    pacing: Option<Pacing<'a>>,
    /// Bytes the next batch may carry.
    batch_bytes: u64,
    /// When the current batch started, microseconds.
    batch_start: u64,
    /// How long the last batch took.
    last_batch_us: u64,
    /// Time and vmcore bytes at the last checkpoint (or the start).
    cp_at_us: u64,
    cp_at_bytes: u64,
}

impl<'a> Pace<'a> {
    fn new(pacing: Option<Pacing<'a>>) -> Self {
        let now = pacing.map_or(0, |p| p.clock.now_us());
        Pace {
            pacing,
            // Unpaced: as before. Paced: start small, the first batch measures the disk.
            batch_bytes: if pacing.is_some() {
                MIN_BATCH_BYTES
            } else {
                BATCH_BYTES
            },
            batch_start: now,
            last_batch_us: 0,
            cp_at_us: now,
            cp_at_bytes: 0,
        }
    }

    fn now(&self) -> u64 {
        self.pacing.map_or(0, |p| p.clock.now_us())
    }

    /// A batch of `sent` bytes completed: throttle (test only), then size the next one to take
    /// about [`BATCH_TARGET_US`] at the rate this one went.
    fn batch_done(&mut self, sent: u64) {
        let Some(p) = self.pacing else {
            return;
        };
        let mut now = p.clock.now_us();
        if p.throttle_mib_s > 0 {
            let due = sent * 1_000_000 / (u64::from(p.throttle_mib_s) << 20);
            let spent = now.saturating_sub(self.batch_start);
            if due > spent {
                p.clock.delay_us(due - spent);
                now = p.clock.now_us();
            }
        }
        let us = now.saturating_sub(self.batch_start).max(1);
        self.last_batch_us = us;
        let next = u128::from(sent) * u128::from(BATCH_TARGET_US) / u128::from(us);
        let next = u64::try_from(next).unwrap_or(u64::MAX);
        self.batch_bytes = next.clamp(MIN_BATCH_BYTES, BATCH_BYTES) & !(MIN_BATCH_BYTES - 1);
        self.batch_start = now;
    }

    /// Most bytes of the batch that starts at vmcore offset `start`: the size the disk's rate
    /// allows, ending no later than where the byte interval says the next checkpoint is due.
    fn cap(&self, start: u64) -> u64 {
        let due = match self.pacing {
            Some(Pacing {
                checkpoints: Some(cp),
                ..
            }) => (self.cp_at_bytes.saturating_add(cp.interval_bytes)).saturating_sub(start),
            _ => u64::MAX,
        };
        self.batch_bytes.min(due.max(MIN_BATCH_BYTES))
    }

    /// Whether a checkpoint is due: the byte interval is used up, or the next batch (if it takes
    /// as long as the last) would overrun the time interval.
    fn checkpoint_due(&self, written: u64) -> bool {
        let Some(Pacing {
            clock,
            checkpoints: Some(cp),
            ..
        }) = self.pacing
        else {
            return false;
        };
        let since_us = clock.now_us().saturating_sub(self.cp_at_us);
        let since_bytes = written - self.cp_at_bytes;
        since_us.saturating_add(self.last_batch_us) >= cp.interval_us
            || since_bytes >= cp.interval_bytes
    }

    fn checkpointed(&mut self, written: u64) {
        let now = self.now();
        self.cp_at_us = now;
        self.cp_at_bytes = written;
        // The checkpoint's time is not the disk's data rate.
        self.batch_start = now;
    }
}

/// The checksum table as it goes to disk: entries not yet on disk in a whole page stay in
/// memory (`pending`), the rest do not, so memory is bounded by the entries between two
/// checkpoints plus one partial page.
struct Table {
    /// Bounce buffer for table pages.
    buf: DmaMem,
    /// Bounce buffer for the record header.
    header_buf: DmaMem,
    header_lba: u64,
    table_lba: u64,
    /// Device blocks per 4 KiB.
    lbas_per_page: u64,
    /// Checksum block size (bytes of vmcore per entry).
    block_size: u64,
    /// Entries in whole table pages already on disk (a multiple of 512).
    on_disk: u64,
    /// Entries after those, in order; the first one is entry `on_disk`.
    pending: Vec<u64>,
}

impl Table {
    /// Writes `header` from its bounce buffer.
    fn header<D: BlockDevice + ?Sized>(
        &mut self,
        out: &mut Out<'_, D>,
        header: &RecordHeader,
    ) -> Result<(), RecordError> {
        self.header_buf
            .copy_in(0, &header.to_bytes()[..label::RECORD_HEADER_SIZE]);
        out.write_bounce(
            Area::Header,
            self.header_lba,
            &self.header_buf,
            label::HEADER_BYTES,
        )
    }

    /// Writes the pages holding `pending` (the last one zero-padded), then forgets the entries
    /// of whole pages. Returns pages written.
    fn write_pending<D: BlockDevice + ?Sized>(
        &mut self,
        out: &mut Out<'_, D>,
    ) -> Result<u64, RecordError> {
        let per_call = TABLE_BOUNCE / 8;
        let mut pages = 0;
        for (i, chunk) in self.pending.chunks(per_call).enumerate() {
            let bytes: Vec<u8> = chunk.iter().flat_map(|c| c.to_le_bytes()).collect();
            let len = bytes.len().div_ceil(4096) * 4096;
            self.buf.copy_in(0, &bytes);
            // Zero the tail of the last page: the reader hashes nothing there, but the format
            // says zero-padded.
            self.buf.copy_in(bytes.len(), &ZEROS[..len - bytes.len()]);
            let page = self.on_disk / ENTRIES_PER_PAGE + (i * per_call) as u64 / ENTRIES_PER_PAGE;
            let lba = self.table_lba + page * self.lbas_per_page;
            out.write_bounce(Area::ChecksumTable, lba, &self.buf, len)?;
            pages += (len / 4096) as u64;
        }
        let whole = self.pending.len() as u64 / ENTRIES_PER_PAGE * ENTRIES_PER_PAGE;
        self.pending.drain(..whole as usize);
        self.on_disk += whole;
        Ok(pages)
    }

    /// A checkpoint: flush the data, write the table so far and a header whose `written` covers
    /// exactly the complete entries, flush again. Returns table pages written, `None` (nothing
    /// done) if no checksum block was completed since the last one.
    fn checkpoint<D: BlockDevice + ?Sized>(
        &mut self,
        out: &mut Out<'_, D>,
        header: &mut RecordHeader,
        sums: &mut BlockXxh64,
    ) -> Result<Option<u64>, RecordError> {
        sums.take_complete(&mut self.pending);
        let covered = (self.on_disk + self.pending.len() as u64) * self.block_size;
        if covered <= header.written {
            return Ok(None);
        }
        out.dev.flush().map_err(RecordError::Flush)?;
        let pages = self.write_pending(out)?;
        header.written = covered;
        self.header(out, header)?;
        out.dev.flush().map_err(RecordError::Flush)?;
        Ok(Some(pages))
    }
}

static ZEROS: [u8; 4096] = [0; 4096];

/// Old-memory writes gathered for one `write` call.
#[derive(Default)]
struct Batch {
    reqs: Vec<WriteReq>,
    bytes: u64,
}

/// The device and the DMA memory for bounce buffers.
struct Out<'a, D: ?Sized> {
    dev: &'a mut D,
    dma: &'a mut dyn DmaAllocator,
}

impl<D: BlockDevice + ?Sized> Out<'_, D> {
    /// Writes bytes from rkdump memory, copied into a new DMA buffer first.
    fn bytes(&mut self, area: Area, lba: u64, bytes: &[u8]) -> Result<(), RecordError> {
        let len = bytes.len().div_ceil(4096) * 4096;
        // Freshly allocated DMA memory is zeroed, so the tail of the last block is too.
        let mut buf = alloc_dma_mem(self.dma, len, 4096, false).ok_or(RecordError::NoMemory)?;
        buf.copy_in(0, bytes);
        self.write_bounce(area, lba, &buf, len)
    }

    /// Writes the first `len` bytes of `buf`, a bounce buffer of the writer's own.
    fn write_bounce(
        &mut self,
        area: Area,
        lba: u64,
        buf: &DmaMem,
        len: usize,
    ) -> Result<(), RecordError> {
        let req = WriteReq {
            lba,
            phys: buf.phys(0),
            len: len as u64,
        };
        self.dev
            .write(&[req])
            .map_err(|error| RecordError::Write { area, lba, error })
    }

    /// Waits for every submitted old-memory batch; a failure is the vmcore's, at or after
    /// `lba`'s batch.
    fn complete(&mut self, lba: u64) -> Result<(), RecordError> {
        self.dev
            .complete(&mut || false)
            .map_err(|error| RecordError::Write {
                area: Area::Vmcore,
                lba,
                error,
            })
    }

    /// Submits the old-memory batch, if any. Its bytes join `unhashed`, hashed into `sums` while
    /// the device works on this batch and the next one; the device may still be writing it on
    /// return ([`Self::complete`]).
    fn flush_batch<M: OldMemSlices + ?Sized>(
        &mut self,
        batch: &mut Batch,
        mem: &M,
        sums: &mut BlockXxh64,
        unhashed: &mut Unhashed,
    ) -> Result<(), RecordError> {
        write_hashed(&mut *self.dev, &batch.reqs, mem, sums, unhashed)?;
        batch.reqs.clear();
        batch.bytes = 0;
        Ok(())
    }
}

/// Old memory hashed per call of the `idle` work of [`BlockDevice::write_overlapped`]: about
/// 0.1 ms of XXH64 at 2 GB/s (hardware does more, QEMU TCG measured 2.3 GB/s), so a
/// completion waits at most that long to be seen.
const HASH_PIECE: u64 = 256 << 10;

/// Old memory handed to the device and not yet hashed, in vmcore order: the previous batch,
/// hashed while the device writes it and the batch after it (so the queue holds two batches
/// while the CPU hashes one).
#[derive(Default)]
struct Unhashed {
    reqs: Vec<WriteReq>,
    /// Next byte to hash: request index, offset inside it.
    at: usize,
    off: u64,
}

impl Unhashed {
    /// Hashes up to [`HASH_PIECE`] bytes into `sums`; whether more remains.
    fn piece<M: OldMemSlices + ?Sized>(
        &mut self,
        mem: &M,
        sums: &mut BlockXxh64,
    ) -> Result<bool, OldMemError> {
        let Some(r) = self.reqs.get(self.at) else {
            return Ok(false);
        };
        let n = (r.len - self.off).min(HASH_PIECE);
        mem.with_slice(r.phys + self.off, n, &mut |s| sums.update(s))?;
        self.off += n;
        if self.off >= r.len {
            (self.at, self.off) = (self.at + 1, 0);
        }
        Ok(self.at < self.reqs.len())
    }

    /// Hashes everything left, so `sums` covers every byte handed to the device.
    fn finish<M: OldMemSlices + ?Sized>(
        &mut self,
        mem: &M,
        sums: &mut BlockXxh64,
    ) -> Result<(), RecordError> {
        while self.piece(mem, sums).map_err(RecordError::OldMem)? {}
        self.reqs.clear();
        (self.at, self.off) = (0, 0);
        Ok(())
    }
}

/// Submits the old-memory requests `reqs` (consecutive vmcore bytes, in order, following those
/// in `unhashed`) and hashes the previous batch meanwhile: `unhashed` is hashed while the
/// driver waits for queue room and after it took `reqs`, and then holds `reqs`. Every range is
/// checked readable before the device sees it, so nothing unreadable is ever DMA'd.
fn write_hashed<D, M>(
    dev: &mut D,
    reqs: &[WriteReq],
    mem: &M,
    sums: &mut BlockXxh64,
    unhashed: &mut Unhashed,
) -> Result<(), RecordError>
where
    D: BlockDevice + ?Sized,
    M: OldMemSlices + ?Sized,
{
    let Some(first) = reqs.first() else {
        return Ok(());
    };
    for r in reqs {
        mem.with_slice(r.phys, r.len, &mut |_| {})
            .map_err(RecordError::OldMem)?;
    }
    let mut failed = None;
    let mut piece = || match unhashed.piece(mem, sums) {
        Ok(more) => more,
        Err(e) => {
            failed = Some(e);
            false
        }
    };
    // Submitted, not waited for: the device works on this batch (and the one before) while the
    // one before is hashed here and the next is prepared, so its queue never runs dry at a
    // batch boundary.
    let wrote = dev.submit(reqs, &mut piece);
    wrote.map_err(|error| RecordError::Write {
        area: Area::Vmcore,
        lba: first.lba,
        error,
    })?;
    if let Some(e) = failed {
        return Err(RecordError::OldMem(e));
    }
    unhashed.finish(mem, sums)?;
    unhashed.reqs.extend_from_slice(reqs);
    Ok(())
}
