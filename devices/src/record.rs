//! The dump-record protocol of [`crate::label`] on a block device: the writer the capture kernel
//! runs (header Incomplete, vmcore, XXH64 block table, flush, header Complete or Truncated,
//! flush) and the reader `rkdumpctl save` runs ([`read`]). Page data goes straight from old
//! memory to the device by DMA and is hashed in place while the device reads it
//! ([`BlockDevice::write_overlapped`]); only headers, notes and the table pass through bounce
//! buffers.

pub mod read;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use rkdump_vmcore::{DumpPlan, OldMemError, Segment};

use crate::block::{BlockDevice, BlockError, WriteReq};
use crate::hw::{DmaAllocator, alloc_dma_mem};
use crate::label::{self, BlockXxh64, ChecksumKind, Label, RecordHeader, RecordLayout};

/// Bytes handed to the driver per `write` call: large enough to keep queues full, small
/// enough for regular progress reports.
pub const BATCH_BYTES: u64 = 32 << 20;

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
        })
    }

    /// Where the record goes.
    pub fn layout(&self) -> &RecordLayout {
        &self.layout
    }

    /// Writes the record and returns the vmcore bytes on disk. `progress` gets (done, total)
    /// after every batch. On error the header on disk still says Incomplete.
    pub fn write<D, M>(
        mut self,
        dev: &mut D,
        mem: &M,
        dma: &mut dyn DmaAllocator,
        progress: &mut dyn FnMut(u64, u64),
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
        let mut out = Out { dev, dma };
        out.bytes(Area::Header, header_lba, &self.header.to_bytes())?;

        let data_start = layout.data_lba * label::LBA_BYTES;
        let limit = layout.writable_bytes;
        let mut sums = BlockXxh64::new(layout.block_size, self.checksum);
        let mut written = 0u64;
        let mut batch = Batch::default();
        for seg in self.plan.layout.segments() {
            if written >= limit {
                break;
            }
            match seg {
                Segment::Bytes(b) => {
                    let n = (b.len() as u64).min(limit - written);
                    out.flush_batch(&mut batch, mem, &mut sums)?;
                    let lba = to_lba((data_start + written) / label::LBA_BYTES);
                    out.bytes(Area::Vmcore, lba, &b[..n as usize])?;
                    sums.update(&b[..n as usize]);
                    written += n;
                }
                Segment::OldMem { phys, len, .. } => {
                    let mut off = 0;
                    let len = len.min(limit - written);
                    while off < len {
                        let n = (len - off).min(BATCH_BYTES);
                        let lba = to_lba((data_start + written) / label::LBA_BYTES);
                        batch.reqs.push(WriteReq {
                            lba,
                            phys: phys + off,
                            len: n,
                        });
                        batch.bytes += n;
                        written += n;
                        off += n;
                        if batch.bytes >= BATCH_BYTES {
                            out.flush_batch(&mut batch, mem, &mut sums)?;
                            progress(written, total);
                        }
                    }
                }
            }
        }
        out.flush_batch(&mut batch, mem, &mut sums)?;
        progress(written, total);
        let table = label::xxh64_table(&sums.finish());
        out.bytes(Area::ChecksumTable, to_lba(layout.table_lba), &table)?;
        out.dev.flush().map_err(RecordError::Flush)?;
        self.header.finish(written);
        out.bytes(Area::Header, header_lba, &self.header.to_bytes())?;
        out.dev.flush().map_err(RecordError::Flush)?;
        Ok(written)
    }
}

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
    /// Writes bytes from rkdump memory, copied into a DMA buffer first.
    fn bytes(&mut self, area: Area, lba: u64, bytes: &[u8]) -> Result<(), RecordError> {
        let len = bytes.len().div_ceil(4096) * 4096;
        // Freshly allocated DMA memory is zeroed, so the tail of the last block is too.
        let mut buf = alloc_dma_mem(self.dma, len, 4096, false).ok_or(RecordError::NoMemory)?;
        buf.copy_in(0, bytes);
        let req = WriteReq {
            lba,
            phys: buf.phys(0),
            len: len as u64,
        };
        self.dev
            .write(&[req])
            .map_err(|error| RecordError::Write { area, lba, error })
    }

    /// Writes the old-memory batch, if any, and adds its bytes to `sums`.
    fn flush_batch<M: OldMemSlices + ?Sized>(
        &mut self,
        batch: &mut Batch,
        mem: &M,
        sums: &mut BlockXxh64,
    ) -> Result<(), RecordError> {
        write_hashed(&mut *self.dev, &batch.reqs, mem, sums)?;
        batch.reqs.clear();
        batch.bytes = 0;
        Ok(())
    }
}

/// Old memory hashed per call of the `idle` work of [`BlockDevice::write_overlapped`]: about
/// 0.1 ms of XXH64 at 2 GB/s (hardware does more, QEMU TCG measured 2.3 GB/s), so a
/// completion waits at most that long to be seen.
const HASH_PIECE: u64 = 256 << 10;

/// Writes the old-memory requests `reqs` (consecutive vmcore bytes, in order) and feeds the
/// same bytes to `sums`, hashing while the device DMAs them: both only read that memory. Every
/// range is checked readable before the device sees it, so nothing unreadable is ever DMA'd.
fn write_hashed<D, M>(
    dev: &mut D,
    reqs: &[WriteReq],
    mem: &M,
    sums: &mut BlockXxh64,
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
    // Next byte to hash: request index, offset inside it.
    let (mut at, mut off) = (0usize, 0u64);
    let mut failed = None;
    let mut piece = || -> bool {
        let Some(r) = reqs.get(at) else {
            return false;
        };
        let n = (r.len - off).min(HASH_PIECE);
        if let Err(e) = mem.with_slice(r.phys + off, n, &mut |s| sums.update(s)) {
            failed = Some(e);
            return false;
        }
        off += n;
        if off >= r.len {
            (at, off) = (at + 1, 0);
        }
        at < reqs.len()
    };
    let wrote = dev.write_overlapped(reqs, &mut piece);
    // Whatever the device's waits left over (all of it on a device that never waits).
    if wrote.is_ok() {
        while piece() {}
    }
    wrote.map_err(|error| RecordError::Write {
        area: Area::Vmcore,
        lba: first.lba,
        error,
    })?;
    failed.map_or(Ok(()), |e| Err(RecordError::OldMem(e)))
}
