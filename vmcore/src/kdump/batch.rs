//! Compressing a batch of pages on several CPUs at once, with output that does not depend on
//! how many CPUs took part.
//!
//! The writer reads a batch of kept pages into [`Batch`] on its own CPU, then hands the batch
//! to a [`Parallel`] runner: every worker takes the next uncompressed page (one shared counter),
//! zero-checks and compresses it with its own codec state into that page's slot, and the writer
//! then emits the slots in page order. Each page is compressed on its own (the codecs keep no
//! state from one page to the next, see [`Compressor`]), so the bytes are the same whether one
//! CPU or many did the work, and whichever CPU did which page.
//!
//! Jobs only touch the batch's memory: they never read old memory, write to the sink or print,
//! which is what lets a kernel run them on CPUs that own no devices and no console.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;

use super::codec::{Codec, Compressor, MAX_COMPRESSED, PAGE};
use crate::filter::is_zero_page;

/// Runs one job on several CPUs (or threads) at once.
pub trait Parallel {
    /// Workers [`Parallel::run`] calls the job on, indices `0 .. workers()`; at least 1.
    fn workers(&self) -> usize;

    /// Calls `job(w)` once for every worker `w` in `0 .. workers()`, all at once, and returns
    /// when every call has returned. Everything written before the call is visible to every
    /// job, and everything the jobs wrote is visible to the caller afterwards.
    fn run(&mut self, job: &(dyn Fn(usize) + Sync));
}

/// The caller's CPU alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneCpu;

impl Parallel for OneCpu {
    fn workers(&self) -> usize {
        1
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        job(0);
    }
}

/// Most workers a batch gives codec state to (zlib's is about 300 KiB each); the other CPUs of
/// a larger machine return at once.
pub const MAX_WORKERS: usize = 8;

/// How one page of a batch is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// All zero: the shared zero page's descriptor.
    Zero,
    /// Raw (the codec did not make it smaller).
    Raw,
    /// Compressed to this many bytes of the slot.
    Compressed(usize),
}

struct Slot {
    out: Box<[u8; MAX_COMPRESSED]>,
    /// `None` until a worker has done the page.
    stored: Option<Stored>,
}

/// Pages read for compression, their compressed forms, and one codec state per worker.
pub struct Batch {
    input: Vec<u8>,
    pfns: Vec<u64>,
    slots: Vec<Mutex<Slot>>,
    codecs: Vec<Mutex<Compressor>>,
    /// Pages each worker did, since the batch was made.
    done_by: Vec<AtomicUsize>,
}

/// The allocator refused the batch's buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMemory;

impl Batch {
    /// Room for `pages` pages (at least 1) and codec state for `workers` workers (1 ..=
    /// [`MAX_WORKERS`]).
    pub fn new(codec: Codec, pages: usize, workers: usize) -> Result<Self, NoMemory> {
        let pages = pages.max(1);
        let workers = workers.clamp(1, MAX_WORKERS);
        let mut input = Vec::new();
        input
            .try_reserve_exact(pages * PAGE)
            .map_err(|_| NoMemory)?;
        let mut pfns = Vec::new();
        pfns.try_reserve_exact(pages).map_err(|_| NoMemory)?;
        let mut slots = Vec::new();
        slots.try_reserve_exact(pages).map_err(|_| NoMemory)?;
        for _ in 0..pages {
            slots.push(Mutex::new(Slot {
                out: Box::new([0; MAX_COMPRESSED]),
                stored: None,
            }));
        }
        let mut codecs = Vec::new();
        codecs.try_reserve_exact(workers).map_err(|_| NoMemory)?;
        let mut done_by = Vec::new();
        done_by.try_reserve_exact(workers).map_err(|_| NoMemory)?;
        for _ in 0..workers {
            codecs.push(Mutex::new(Compressor::new(codec).map_err(|_| NoMemory)?));
            done_by.push(AtomicUsize::new(0));
        }
        Ok(Batch {
            input,
            pfns,
            slots,
            codecs,
            done_by,
        })
    }

    /// Bytes of buffers held (codec state excluded).
    pub fn buffer_bytes(&self) -> usize {
        self.slots.len() * (PAGE + MAX_COMPRESSED + 8)
    }

    /// Workers that have codec state.
    pub fn workers(&self) -> usize {
        self.codecs.len()
    }

    /// Pages worker `w` has zero-checked and compressed since the batch was made (the caller's
    /// own catch-up in [`Batch::drain`] not included).
    pub fn pages_done_by(&self, w: usize) -> usize {
        self.done_by.get(w).map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// Pages in the batch.
    pub fn len(&self) -> usize {
        self.pfns.len()
    }

    /// Whether the batch holds no page.
    pub fn is_empty(&self) -> bool {
        self.pfns.is_empty()
    }

    /// Whether another page fits.
    pub fn is_full(&self) -> bool {
        self.pfns.len() == self.slots.len()
    }

    /// Room for the next page, to be filled with frame `pfn`'s bytes; `None` when full.
    pub fn next_page(&mut self, pfn: u64) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        self.slots[self.pfns.len()].lock().stored = None;
        self.pfns.push(pfn);
        let at = self.input.len();
        self.input.resize(at + PAGE, 0);
        Some(&mut self.input[at..])
    }

    /// Pages that still fit.
    pub fn room(&self) -> usize {
        self.slots.len() - self.pfns.len()
    }

    /// Appends `n` consecutive frames from `pfn` (at most [`Batch::room`]) and returns their
    /// input space, `n` pages in a row, for the caller to read them in one go; `None` when they
    /// do not fit.
    pub fn next_run(&mut self, pfn: u64, n: usize) -> Option<&mut [u8]> {
        if n == 0 || n > self.room() {
            return None;
        }
        let at = self.input.len();
        for k in 0..n {
            self.slots[self.pfns.len()].lock().stored = None;
            self.pfns.push(pfn + k as u64);
        }
        self.input.resize(at + n * PAGE, 0);
        Some(&mut self.input[at..])
    }

    /// Drops the last `n` frames added (a run whose read failed).
    pub fn forget_last_n(&mut self, n: usize) {
        for _ in 0..n {
            self.forget_last();
        }
    }

    /// Drops the last page added (its frame could not be read).
    pub fn forget_last(&mut self) {
        if self.pfns.pop().is_some() {
            self.input.truncate(self.pfns.len() * PAGE);
        }
    }

    /// Zero-checks and compresses every page, on the workers `par` runs.
    pub fn compress(&mut self, par: &mut dyn Parallel) {
        let next = AtomicUsize::new(0);
        let input = &self.input;
        let slots = &self.slots;
        let codecs = &self.codecs;
        let done_by = &self.done_by;
        par.run(&|w| {
            // Workers beyond the codec states have nothing to do.
            let (Some(codec), Some(done)) = (codecs.get(w), done_by.get(w)) else {
                return;
            };
            let mut codec = codec.lock();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (Some(page), Some(slot)) = (input.get(i * PAGE..(i + 1) * PAGE), slots.get(i))
                else {
                    break;
                };
                store(&mut codec, page, &mut slot.lock());
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// Calls `f(pfn, stored, bytes)` for every page in order (`bytes`: the compressed data,
    /// the raw page, or empty for a zero page), then empties the batch.
    pub fn drain<E>(
        &mut self,
        mut f: impl FnMut(u64, Stored, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for (i, &pfn) in self.pfns.iter().enumerate() {
            let page = &self.input[i * PAGE..(i + 1) * PAGE];
            let mut slot = self.slots[i].lock();
            let stored = match slot.stored {
                Some(s) => s,
                // A runner that did not run every worker's share: the caller catches up, so
                // the file is the same.
                None => store(&mut self.codecs[0].lock(), page, &mut slot),
            };
            let bytes: &[u8] = match stored {
                Stored::Zero => &[],
                Stored::Raw => page,
                Stored::Compressed(len) => &slot.out[..len],
            };
            f(pfn, stored, bytes)?;
        }
        self.pfns.clear();
        self.input.clear();
        Ok(())
    }
}

/// Zero-checks and compresses `page` into `slot`.
fn store(codec: &mut Compressor, page: &[u8], slot: &mut Slot) -> Stored {
    let stored = if is_zero_page(page) {
        Stored::Zero
    } else {
        match codec.compress(page, &mut slot.out) {
            Some(len) => Stored::Compressed(len),
            None => Stored::Raw,
        }
    };
    slot.stored = Some(stored);
    stored
}
