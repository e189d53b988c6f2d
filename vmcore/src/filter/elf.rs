//! Which parts of each PT_LOAD a filtered ELF dump keeps, split the way makedumpfile's ELF output
//! (`write_elf_pages_cyclic`) splits them: a run of at least `split_run` excluded frames ends a
//! PT_LOAD's file data (its `p_memsz` still covers the run, which readers see as zeros) and a new
//! PT_LOAD starts at the next kept frame; shorter excluded runs are written with their real bytes.
//! makedumpfile splits at [`PFN_EXCLUDED`] (256) frames, so user data in short runs stays in its
//! files; rkdump splits at every excluded run ([`SPLIT_RUN`]), so an excluded page is never in the
//! file. The number of pieces is bounded ([`MAX_PIECES`]): when a plan would exceed it, the run
//! length that splits is doubled and the pieces so far are merged again, so a pathological
//! alternation of kept and excluded frames costs file size (and the console's `kept_short_runs`
//! says how many excluded frames were written), never header memory.
//!
//! The plan is one pass of the selector over every PT_LOAD, window by window
//! ([`WINDOW_PAGES`] frames, a 32 KiB bitmap); the writer then copies only the planned pieces.

use alloc::vec::Vec;

use crate::header::ElfCoreHeader;
use crate::mem::OldMemory;
use crate::pages::{PageSelector, PfnBitmap, SelectError};
use crate::{PAGE_SIZE, page_rounddown, page_roundup};

/// makedumpfile's threshold: excluded runs shorter than this stay in the file.
pub const PFN_EXCLUDED: u64 = 256;
/// rkdump's threshold: every excluded run is left out (user data stays out of the file, as
/// `rkdump.level=` bit 8 promises) until the plan would exceed [`MAX_PIECES`].
pub const SPLIT_RUN: u64 = 1;
/// Most pieces a plan holds (a 56-byte program header each: 224 KiB of header at most).
pub const MAX_PIECES: usize = 4096;
/// Frames judged per selector call (1 GiB of RAM; the bitmap is 32 KiB).
pub const WINDOW_PAGES: u64 = 1 << 18;

/// A part of one input PT_LOAD's page-rounded range: `file_pages` frames from `start_pfn` are
/// written, and the PT_LOAD made from it spans `mem_pages` frames (`file_pages <= mem_pages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Program header index of the input PT_LOAD.
    pub phdr_index: usize,
    /// First frame.
    pub start_pfn: u64,
    /// Frames written to the file.
    pub file_pages: u64,
    /// Frames the output PT_LOAD covers.
    pub mem_pages: u64,
}

/// The pieces of every PT_LOAD, in program header order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElfPlan {
    /// Pieces in header order, then frame order.
    pub pieces: Vec<Piece>,
    /// The excluded-run length that splits a PT_LOAD in this plan ([`PFN_EXCLUDED`] or a
    /// multiple of it when the plan had to be coarsened).
    pub split_threshold: u64,
    /// Frames excluded by the selector.
    pub excluded_pages: u64,
    /// Of those, frames still written because their run was shorter than the threshold.
    pub written_excluded_pages: u64,
}

impl ElfPlan {
    /// Frames written to the file.
    pub fn file_pages(&self) -> u64 {
        self.pieces.iter().map(|p| p.file_pages).sum()
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanError {
    /// The selector failed (old memory unreadable, inconsistent kernel data).
    Select(SelectError),
    /// No memory for a window bitmap or the piece list.
    NoMemory,
}

impl core::fmt::Display for PlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlanError::Select(e) => write!(f, "{e}"),
            PlanError::NoMemory => f.write_str("no memory for the filter plan"),
        }
    }
}

struct Builder {
    plan: ElfPlan,
    cur: Option<Piece>,
    excluded_run: u64,
}

impl Builder {
    fn push(&mut self, piece: Piece) -> Result<(), PlanError> {
        if self.plan.pieces.len() >= MAX_PIECES {
            self.coarsen();
        }
        self.plan
            .pieces
            .try_reserve(1)
            .map_err(|_| PlanError::NoMemory)?;
        self.plan.pieces.push(piece);
        Ok(())
    }

    /// Doubles the threshold until the list shrinks, merging neighbours of the same PT_LOAD whose
    /// gap is now short.
    fn coarsen(&mut self) {
        while self.plan.pieces.len() >= MAX_PIECES / 2 {
            self.plan.split_threshold = self.plan.split_threshold.saturating_mul(2);
            let t = self.plan.split_threshold;
            let mut out = 0usize;
            for i in 0..self.plan.pieces.len() {
                let next = self.plan.pieces[i];
                if out > 0 {
                    let prev = &mut self.plan.pieces[out - 1];
                    let gap = next.start_pfn - prev.start_pfn - prev.file_pages;
                    if prev.phdr_index == next.phdr_index && gap < t {
                        self.plan.written_excluded_pages += gap;
                        prev.file_pages = next.start_pfn - prev.start_pfn + next.file_pages;
                        prev.mem_pages = next.start_pfn - prev.start_pfn + next.mem_pages;
                        continue;
                    }
                }
                self.plan.pieces[out] = next;
                out += 1;
            }
            self.plan.pieces.truncate(out);
            if t == u64::MAX {
                break;
            }
        }
    }

    fn kept_run(&mut self, phdr_index: usize, first: u64, count: u64) -> Result<(), PlanError> {
        let t = self.plan.split_threshold;
        let short_gap = self.excluded_run < t;
        self.excluded_run = 0;
        if let Some(c) = self.cur.as_mut()
            && short_gap
        {
            self.plan.written_excluded_pages += first - c.start_pfn - c.file_pages;
            c.file_pages = first + count - c.start_pfn;
            c.mem_pages = c.file_pages;
            return Ok(());
        }
        if let Some(mut done) = self.cur.take() {
            // The closed piece's PT_LOAD spans the long excluded run.
            done.mem_pages = first - done.start_pfn;
            self.push(done)?;
        }
        self.cur = Some(Piece {
            phdr_index,
            start_pfn: first,
            file_pages: count,
            mem_pages: count,
        });
        Ok(())
    }
}

/// Runs `selector` over every PT_LOAD of `header` and plans the filtered ELF's pieces: an
/// excluded run of at least `split_run` frames splits ([`PFN_EXCLUDED`] is makedumpfile's
/// choice, [`SPLIT_RUN`] rkdump's). `progress(pages_done, pages_total)` is called after every
/// window.
pub fn plan(
    header: &ElfCoreHeader,
    mem: &mut dyn OldMemory,
    selector: &mut dyn PageSelector,
    split_run: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ElfPlan, PlanError> {
    let ranges = || {
        header.loads().map(|(i, p)| {
            let s = page_rounddown(p.p_offset) / PAGE_SIZE;
            // The header validated p_offset + p_memsz <= 2^52.
            let e = page_roundup(p.p_offset + p.p_memsz).unwrap_or(0) / PAGE_SIZE;
            (i, s, e.max(s))
        })
    };
    let total: u64 = ranges().map(|(_, s, e)| e - s).sum();
    let mut done = 0u64;
    let mut b = Builder {
        plan: ElfPlan {
            split_threshold: split_run.max(1),
            ..ElfPlan::default()
        },
        cur: None,
        excluded_run: 0,
    };
    for (index, s, e) in ranges() {
        b.cur = Some(Piece {
            phdr_index: index,
            start_pfn: s,
            file_pages: 0,
            mem_pages: 0,
        });
        b.excluded_run = 0;
        let mut w = s - s % WINDOW_PAGES;
        while w < e {
            let w_end = (w + WINDOW_PAGES).min(e);
            let mut keep = PfnBitmap::new(w, w_end - w).map_err(|_| PlanError::NoMemory)?;
            let lo = w.max(s);
            keep.set_range(lo, w_end - lo, true);
            let stats = selector.select(mem, &mut keep).map_err(PlanError::Select)?;
            b.plan.excluded_pages += stats.excluded;
            let mut at = lo;
            for (first, count) in keep.runs() {
                b.excluded_run += first - at;
                b.kept_run(index, first, count)?;
                at = first + count;
            }
            b.excluded_run += w_end - at;
            done += w_end - lo;
            progress(done, total);
            w = w_end;
        }
        if let Some(mut last) = b.cur.take() {
            last.mem_pages = e - last.start_pfn;
            b.push(last)?;
        }
    }
    Ok(b.plan)
}
