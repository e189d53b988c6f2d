//! A [`BlockDevice`] made of runs of another one's blocks: a partition (one run) or a file's
//! extents (many). Block `0` of the mapped device is the first block of the first run, and the
//! runs follow each other with no gap, so the record writer and the label check see a small
//! whole disk. Every request is checked against the runs before it is translated: a request
//! that would reach past them is refused ([`BlockError::BadRequest`]) and nothing of it is
//! sent, so nothing is ever written outside the runs.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::block::{BlockDevice, BlockError, BlockInfo, WriteReq};

/// Most runs a map may have (a file fragmented into more pieces is refused when prepared).
pub const MAX_RUNS: usize = 4096;

/// `blocks` device blocks from `lba`, in the underlying device's logical blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First device block.
    pub lba: u64,
    /// Blocks.
    pub blocks: u64,
}

/// Why a map is not usable on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No runs, an empty run, or more than [`MAX_RUNS`].
    Count,
    /// Run `index` ends past the device (or overflows).
    PastEnd(usize),
    /// Runs `a` and `b` overlap (the same block would be written twice).
    Overlap(usize, usize),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Count => write!(f, "no runs, an empty run, or more than {MAX_RUNS}"),
            MapError::PastEnd(i) => write!(f, "run {i} ends past the device"),
            MapError::Overlap(a, b) => write!(f, "runs {a} and {b} overlap"),
        }
    }
}

/// Checks `runs` against a device of `device_blocks` blocks; returns the mapped size in blocks.
pub fn check_runs(runs: &[Run], device_blocks: u64) -> Result<u64, MapError> {
    if runs.is_empty() || runs.len() > MAX_RUNS {
        return Err(MapError::Count);
    }
    let mut total = 0u64;
    for (i, r) in runs.iter().enumerate() {
        let end = r.lba.checked_add(r.blocks).ok_or(MapError::PastEnd(i))?;
        if r.blocks == 0 {
            return Err(MapError::Count);
        }
        if end > device_blocks {
            return Err(MapError::PastEnd(i));
        }
        total = total.checked_add(r.blocks).ok_or(MapError::PastEnd(i))?;
    }
    // Sorted copy by start: neighbours are the only candidates for overlap.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_unstable_by_key(|&i| runs[i].lba);
    for w in order.windows(2) {
        let (a, b) = (runs[w[0]], runs[w[1]]);
        if a.lba + a.blocks > b.lba {
            return Err(MapError::Overlap(w[0].min(w[1]), w[0].max(w[1])));
        }
    }
    Ok(total)
}

/// `inner` seen through `runs`.
pub struct Mapped<D> {
    inner: D,
    runs: Vec<Run>,
    blocks: u64,
    name: String,
}

impl<D: BlockDevice> Mapped<D> {
    /// Maps `inner` through `runs` (checked with [`check_runs`]); `name` is for console lines.
    pub fn new(inner: D, runs: Vec<Run>, name: String) -> Result<Self, MapError> {
        let blocks = check_runs(&runs, inner.info().blocks)?;
        Ok(Mapped {
            inner,
            runs,
            blocks,
            name,
        })
    }

    /// One partition: `blocks` blocks from `first_lba`.
    pub fn window(inner: D, first_lba: u64, blocks: u64, name: String) -> Result<Self, MapError> {
        Self::new(
            inner,
            alloc::vec![Run {
                lba: first_lba,
                blocks,
            }],
            name,
        )
    }

    /// The runs, in mapped order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The device underneath.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Calls `f(device_lba, offset_bytes, blocks)` for each piece of mapped range
    /// `[lba, lba + blocks)`, after checking all of it lies inside the map.
    fn pieces(
        &self,
        lba: u64,
        len: u64,
        f: &mut dyn FnMut(u64, u64, u64),
    ) -> Result<(), BlockError> {
        let bs = u64::from(self.inner.info().block_size);
        if bs == 0 || !len.is_multiple_of(bs) {
            return Err(BlockError::BadRequest);
        }
        let blocks = len / bs;
        let end = lba.checked_add(blocks).ok_or(BlockError::BadRequest)?;
        if end > self.blocks {
            return Err(BlockError::BadRequest);
        }
        let (mut at, mut base, mut done) = (lba, 0u64, 0u64);
        for r in &self.runs {
            if done == blocks {
                break;
            }
            if at < base + r.blocks {
                let off = at - base;
                let n = (r.blocks - off).min(blocks - done);
                f(r.lba + off, done * bs, n);
                done += n;
                at += n;
            }
            base += r.blocks;
        }
        if done == blocks {
            Ok(())
        } else {
            Err(BlockError::BadRequest)
        }
    }

    fn translate(&self, reqs: &[WriteReq]) -> Result<Vec<WriteReq>, BlockError> {
        let bs = u64::from(self.inner.info().block_size);
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            self.pieces(r.lba, r.len, &mut |lba, off, n| {
                out.push(WriteReq {
                    lba,
                    phys: r.phys + off,
                    len: n * bs,
                });
            })?;
        }
        Ok(out)
    }
}

impl<D: BlockDevice> BlockDevice for Mapped<D> {
    fn info(&self) -> BlockInfo {
        BlockInfo {
            blocks: self.blocks,
            ..self.inner.info()
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn write_overlapped(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        let t = self.translate(reqs)?;
        self.inner.write_overlapped(&t, idle)
    }

    fn submit(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        let t = self.translate(reqs)?;
        self.inner.submit(&t, idle)
    }

    fn complete(&mut self, idle: &mut dyn FnMut() -> bool) -> Result<(), BlockError> {
        self.inner.complete(idle)
    }

    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        let mut pieces = Vec::new();
        self.pieces(lba, len, &mut |l, off, n| pieces.push((l, off, n)))?;
        let bs = u64::from(self.inner.info().block_size);
        for (l, off, n) in pieces {
            self.inner.read(l, phys + off, n * bs)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.inner.flush()
    }
}

/// A boxed device is a device (the kernel keeps its opened disks boxed).
impl<D: BlockDevice + ?Sized> BlockDevice for alloc::boxed::Box<D> {
    fn info(&self) -> BlockInfo {
        (**self).info()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn write_overlapped(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        (**self).write_overlapped(reqs, idle)
    }
    fn submit(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        (**self).submit(reqs, idle)
    }
    fn complete(&mut self, idle: &mut dyn FnMut() -> bool) -> Result<(), BlockError> {
        (**self).complete(idle)
    }
    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        (**self).read(lba, phys, len)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
}
