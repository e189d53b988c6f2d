//! A record whose vmcore the CPU produces as it goes (`rkdump.format=kdump`: compression
//! decides the size), written as the kdump writer's two sequential streams
//! ([`rkdump_vmcore::kdump::KdumpSink`]): the metadata from offset 0 and the page data from a
//! checksum-block boundary. The record keeps its guarantees: an Incomplete header first, an
//! XXH64 table entry per block, checkpoints, Complete (or Truncated) at the end.
//!
//! The size is unknown until the end, so the record is planned for an upper bound (every page
//! raw) and the table placed after it; the final header states the real size. A block's entry
//! is known once its stream has passed it; entries wait in memory only in table pages not yet
//! complete (at most three pages: one per stream and the one they may share). A checkpoint's
//! `written` is the prefix of complete blocks from offset 0: the metadata stream trails the
//! data (descriptors follow the data they name), so until the end it covers the header, the
//! bitmaps and the descriptors written so far (docs/dump-format.md#kdump-in-a-record).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use rkdump_vmcore::SinkError;
use rkdump_vmcore::kdump::KdumpSink;

use super::{Area, Checkpoint, Pacing, RecordError};
use crate::block::{BlockDevice, WriteReq};
use crate::hw::{DmaAllocator, DmaMem, alloc_dma_mem};
use crate::label::{self, BlockXxh64, ChecksumKind, Label, RecordHeader, RecordLayout};

/// Bytes staged per stream before one device write.
const STAGE: usize = 256 << 10;
/// Table entries per 4 KiB page.
const PER_PAGE: u64 = 512;

/// One sequential stream of the vmcore.
struct Stream {
    /// vmcore offset of `stage[0]`.
    at: u64,
    /// Bytes staged (in normal memory, where they are hashed).
    buf: Vec<u8>,
    /// The staged bytes' copy the device reads.
    stage: DmaMem,
    sums: BlockXxh64,
    /// Index of the stream's first block.
    first_block: u64,
    /// Entries already handed to the table.
    taken: u64,
}

/// Where the bytes of a produced vmcore go on a labelled disk.
pub struct ProducedRecord<'a, D: BlockDevice + ?Sized> {
    dev: &'a mut D,
    layout: RecordLayout,
    header: RecordHeader,
    checksum: ChecksumKind,
    streams: Vec<Stream>,
    dma: &'a mut dyn DmaAllocator,
    header_buf: DmaMem,
    table_buf: DmaMem,
    /// Table pages with entries not yet all known: page index -> (entries, known count).
    pages: BTreeMap<u64, ([u64; PER_PAGE as usize], u64)>,
    pacing: Option<Pacing<'a>>,
    cp_at_us: u64,
    cp_at_bytes: u64,
    bytes: u64,
    on_checkpoint: &'a mut dyn FnMut(Checkpoint),
    /// The first error, kept for [`Self::finish`] (the sink interface carries only a kind).
    failed: Option<RecordError>,
}

impl<'a, D: BlockDevice + ?Sized> ProducedRecord<'a, D> {
    /// Plans a record for at most `max_size` bytes and writes its Incomplete header (flushed).
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, every argument distinct"
    )]
    pub fn start(
        dev: &'a mut D,
        dma: &'a mut dyn DmaAllocator,
        label: &Label,
        max_size: u64,
        run_id: [u8; 16],
        checksum: ChecksumKind,
        osrelease: &[u8],
        timestamp: u64,
        pacing: Option<Pacing<'a>>,
        on_checkpoint: &'a mut dyn FnMut(Checkpoint),
    ) -> Result<Self, RecordError> {
        let layout = label::record_layout(label, max_size).map_err(RecordError::Layout)?;
        let mut header = RecordHeader::new(label, &layout, max_size, timestamp, run_id, osrelease);
        header.flags = checksum as u32;
        let mut header_buf =
            alloc_dma_mem(dma, label::HEADER_BYTES, 4096, false).ok_or(RecordError::NoMemory)?;
        header_buf.copy_in(0, &[0u8; label::HEADER_BYTES]);
        let table_buf = alloc_dma_mem(dma, 4096, 4096, false).ok_or(RecordError::NoMemory)?;
        let now = pacing.map_or(0, |p| p.clock.now_us());
        let mut r = ProducedRecord {
            dev,
            layout,
            header,
            checksum,
            streams: Vec::new(),
            dma,
            header_buf,
            table_buf,
            pages: BTreeMap::new(),
            pacing,
            cp_at_us: now,
            cp_at_bytes: 0,
            bytes: 0,
            on_checkpoint,
            failed: None,
        };
        r.write_header()?;
        r.dev.flush().map_err(RecordError::Flush)?;
        Ok(r)
    }

    /// Stores `text` in the record-header page's crash report area ([`crate::report_area`]):
    /// every header write from now on (checkpoints, the final header) carries it.
    pub fn set_report(&mut self, text: &str) {
        self.header_buf.copy_in(
            crate::report_area::OFFSET,
            &crate::report_area::encode(text),
        );
    }

    /// The record's plan (for the bound it was made for).
    pub fn layout(&self) -> &RecordLayout {
        &self.layout
    }

    /// The checksum block size: the data stream must start at a multiple of it.
    pub fn block_size(&self) -> u64 {
        u64::from(self.layout.block_size)
    }

    fn lba(&self, vmcore_offset: u64) -> u64 {
        let bs = u64::from(self.dev.info().block_size);
        (self.layout.data_lba * label::LBA_BYTES + vmcore_offset) / bs
    }

    fn write_header(&mut self) -> Result<(), RecordError> {
        // The header's own bytes only: the rest of the page holds the crash report area.
        self.header_buf
            .copy_in(0, &self.header.to_bytes()[..label::RECORD_HEADER_SIZE]);
        let lba = self.layout.header_lba * label::LBA_BYTES / u64::from(self.dev.info().block_size);
        let req = WriteReq {
            lba,
            phys: self.header_buf.phys(0),
            len: label::HEADER_BYTES as u64,
        };
        self.dev.write(&[req]).map_err(|error| RecordError::Write {
            area: Area::Header,
            lba,
            error,
        })
    }

    /// Sends stream `i`'s whole staged pages (all of them with `tail`, the last zero-padded),
    /// hashing them, and hands completed block sums to the table.
    fn drain(&mut self, i: usize, tail: bool) -> Result<(), RecordError> {
        let s = &mut self.streams[i];
        let whole = s.buf.len() / 4096 * 4096;
        let send = if tail {
            s.buf.len().div_ceil(4096) * 4096
        } else {
            whole
        };
        if send == 0 {
            return Ok(());
        }
        let real = s.buf.len().min(send);
        s.stage.copy_in(0, &s.buf[..real]);
        // The padding of a last partial page is zeros on disk, but not vmcore bytes.
        s.stage.copy_in(real, &ZEROS[..send - real]);
        s.sums.update(&s.buf[..real]);
        let at = s.at;
        let phys = s.stage.phys(0);
        let lba = self.lba(at);
        let req = WriteReq {
            lba,
            phys,
            len: send as u64,
        };
        self.dev.write(&[req]).map_err(|error| RecordError::Write {
            area: Area::Vmcore,
            lba,
            error,
        })?;
        let s = &mut self.streams[i];
        // The partial page stays staged.
        s.buf.drain(..real);
        s.at += real as u64;
        let mut done = Vec::new();
        s.sums.take_complete(&mut done);
        let first = s.first_block + s.taken;
        s.taken += done.len() as u64;
        for (k, sum) in done.into_iter().enumerate() {
            self.entry(first + k as u64, sum)?;
        }
        Ok(())
    }

    /// Records one table entry; writes its table page once all 512 are known.
    fn entry(&mut self, index: u64, sum: u64) -> Result<(), RecordError> {
        let page = index / PER_PAGE;
        let slot = self
            .pages
            .entry(page)
            .or_insert(([0; PER_PAGE as usize], 0));
        slot.0[(index % PER_PAGE) as usize] = sum;
        slot.1 += 1;
        if slot.1 == PER_PAGE {
            self.write_table_page(page)?;
            self.pages.remove(&page);
        }
        Ok(())
    }

    fn write_table_page(&mut self, page: u64) -> Result<(), RecordError> {
        let Some((entries, _)) = self.pages.get(&page) else {
            return Ok(());
        };
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.table_buf.copy_in(0, &bytes);
        let bs = u64::from(self.dev.info().block_size);
        let lba = (self.layout.table_lba * label::LBA_BYTES + page * 4096) / bs;
        let req = WriteReq {
            lba,
            phys: self.table_buf.phys(0),
            len: 4096,
        };
        self.dev.write(&[req]).map_err(|error| RecordError::Write {
            area: Area::ChecksumTable,
            lba,
            error,
        })
    }

    /// vmcore bytes from 0 whose blocks are all complete (and on disk in the table).
    fn prefix(&self) -> u64 {
        let bs = self.block_size();
        let mut end = 0u64;
        let mut order: Vec<&Stream> = self.streams.iter().collect();
        order.sort_by_key(|s| s.first_block);
        for s in order {
            if s.first_block * bs != end {
                break;
            }
            end = s.at / bs * bs;
            if !s.buf.is_empty() || !s.at.is_multiple_of(bs) {
                break;
            }
        }
        end
    }

    fn checkpoint_due(&self) -> bool {
        let Some(Pacing {
            clock,
            checkpoints: Some(cp),
            ..
        }) = self.pacing
        else {
            return false;
        };
        clock.now_us().saturating_sub(self.cp_at_us) >= cp.interval_us
            || self.bytes - self.cp_at_bytes >= cp.interval_bytes
    }

    fn checkpoint(&mut self) -> Result<(), RecordError> {
        let t0 = self.pacing.map_or(0, |p| p.clock.now_us());
        let covered = self.prefix();
        self.cp_at_bytes = self.bytes;
        self.cp_at_us = t0;
        if covered <= self.header.written {
            return Ok(());
        }
        self.dev.flush().map_err(RecordError::Flush)?;
        let pages: Vec<u64> = self.pages.keys().copied().collect();
        for &p in &pages {
            self.write_table_page(p)?;
        }
        self.header.written = covered;
        self.write_header()?;
        self.dev.flush().map_err(RecordError::Flush)?;
        let now = self.pacing.map_or(0, |p| p.clock.now_us());
        (self.on_checkpoint)(Checkpoint {
            bytes: covered,
            us: now.saturating_sub(t0),
            table_pages: pages.len() as u64,
        });
        Ok(())
    }

    fn put(&mut self, offset: u64, mut data: &[u8]) -> Result<(), RecordError> {
        let end = offset.checked_add(data.len() as u64);
        if end.is_none_or(|e| e > self.layout.writable_bytes) {
            return Err(RecordError::Layout(label::Error::Inconsistent(
                "dump larger than the disk",
            )));
        }
        let i = match self
            .streams
            .iter()
            .position(|s| s.at + s.buf.len() as u64 == offset)
        {
            Some(i) => i,
            None => {
                let bs = self.block_size();
                if self.streams.len() >= 2 || !offset.is_multiple_of(bs) {
                    return Err(RecordError::Layout(label::Error::Inconsistent(
                        "write continues no stream",
                    )));
                }
                let stage =
                    alloc_dma_mem(self.dma, STAGE, 4096, false).ok_or(RecordError::NoMemory)?;
                let mut buf = Vec::new();
                buf.try_reserve_exact(STAGE)
                    .map_err(|_| RecordError::NoMemory)?;
                self.streams.push(Stream {
                    at: offset,
                    buf,
                    stage,
                    sums: BlockXxh64::new(self.layout.block_size, self.checksum),
                    first_block: offset / bs,
                    taken: 0,
                });
                self.streams.len() - 1
            }
        };
        while !data.is_empty() {
            let s = &mut self.streams[i];
            let n = (STAGE - s.buf.len()).min(data.len());
            s.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.bytes += n as u64;
            if self.streams[i].buf.len() == STAGE {
                self.drain(i, false)?;
                if self.checkpoint_due() {
                    self.checkpoint()?;
                }
            }
        }
        Ok(())
    }

    /// Ends the record once the producer is done: `Some(size)` when it wrote the whole file,
    /// `None` when it stopped. Tails out, the table, flush; then the header says Complete with
    /// the real size, or, when the disk was too small, Truncated with the complete prefix. A
    /// device error leaves the header Incomplete as of the last checkpoint. Returns the vmcore
    /// bytes the record holds.
    pub fn finish(mut self, produced: Option<u64>) -> Result<u64, RecordError> {
        let full = match self.failed {
            None => false,
            Some(RecordError::Layout(_)) => true,
            Some(e) => return Err(e),
        };
        for i in 0..self.streams.len() {
            self.drain(i, true)?;
        }
        let prefix = self.prefix();
        let mut rest = Vec::new();
        for s in core::mem::take(&mut self.streams) {
            let first = s.first_block + s.taken;
            for (k, sum) in s.sums.finish().into_iter().enumerate() {
                rest.push((first + k as u64, sum));
            }
        }
        for (index, sum) in rest {
            self.entry(index, sum)?;
        }
        let pages: Vec<u64> = self.pages.keys().copied().collect();
        for p in pages {
            self.write_table_page(p)?;
        }
        self.dev.flush().map_err(RecordError::Flush)?;
        let size = match produced {
            Some(size) if !full => size,
            _ if full => {
                // Only the blocks before the first gap are a usable prefix.
                let written = self.header.written.max(prefix);
                self.header.n_blocks = written.div_ceil(self.block_size());
                self.header.finish(written);
                self.write_header()?;
                self.dev.flush().map_err(RecordError::Flush)?;
                return Ok(written);
            }
            _ => return Ok(self.header.written),
        };
        self.header.vmcore_size = size;
        self.header.n_blocks = size.div_ceil(self.block_size());
        self.header.finish(size);
        self.write_header()?;
        self.dev.flush().map_err(RecordError::Flush)?;
        Ok(size)
    }
}

static ZEROS: [u8; 4096] = [0; 4096];

impl<D: BlockDevice + ?Sized> KdumpSink for ProducedRecord<'_, D> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        if self.failed.is_some() {
            return Err(SinkError::Rejected);
        }
        self.put(offset, data).map_err(|e| {
            let kind = match e {
                RecordError::Layout(_) => SinkError::Full,
                _ => SinkError::Io { code: 0 },
            };
            self.failed = Some(e);
            kind
        })
    }
}
