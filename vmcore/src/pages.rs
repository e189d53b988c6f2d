//! Which old-memory pages a dump keeps: the seam between the page filter (page flags judged
//! through VMCOREINFO, `rkdump.level=` bits) and the writers (ELF with excluded pages left out,
//! kdump-compressed). A filter works on a window of page frames at a time ([`PfnBitmap`]), so
//! memory stays bounded however large the crashed machine's RAM is: the writers walk RAM in
//! windows ("cycles", as makedumpfile calls them) and ask the selector about each.

use alloc::vec::Vec;
use core::fmt;

use crate::mem::{OldMemError, OldMemory};

/// One bit per page frame of the window `start_pfn .. start_pfn + npages`; a set bit means the
/// page is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PfnBitmap {
    start_pfn: u64,
    npages: u64,
    words: Vec<u64>,
}

/// Why a bitmap could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitmapError {
    /// The window does not fit the address space (`start_pfn + npages` overflows).
    Range,
    /// The allocator refused the bitmap's memory.
    NoMemory,
}

impl fmt::Display for BitmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BitmapError::Range => f.write_str("page window out of range"),
            BitmapError::NoMemory => f.write_str("no memory for the page bitmap"),
        }
    }
}

impl PfnBitmap {
    /// An all-clear window of `npages` frames from `start_pfn`; never panics on a huge size.
    pub fn new(start_pfn: u64, npages: u64) -> Result<Self, BitmapError> {
        start_pfn.checked_add(npages).ok_or(BitmapError::Range)?;
        let n = usize::try_from(npages.div_ceil(64)).map_err(|_| BitmapError::NoMemory)?;
        let mut words = Vec::new();
        words
            .try_reserve_exact(n)
            .map_err(|_| BitmapError::NoMemory)?;
        words.resize(n, 0);
        Ok(PfnBitmap {
            start_pfn,
            npages,
            words,
        })
    }

    /// First frame of the window.
    pub fn start_pfn(&self) -> u64 {
        self.start_pfn
    }

    /// Frames in the window.
    pub fn npages(&self) -> u64 {
        self.npages
    }

    /// One past the last frame of the window.
    pub fn end_pfn(&self) -> u64 {
        self.start_pfn + self.npages
    }

    fn index(&self, pfn: u64) -> Option<(usize, u64)> {
        let i = pfn.checked_sub(self.start_pfn)?;
        (i < self.npages).then(|| ((i / 64) as usize, 1u64 << (i % 64)))
    }

    /// Whether `pfn` is kept; frames outside the window are not.
    pub fn get(&self, pfn: u64) -> bool {
        self.index(pfn).is_some_and(|(w, b)| self.words[w] & b != 0)
    }

    /// Marks `pfn` kept or not; frames outside the window are ignored.
    pub fn set(&mut self, pfn: u64, keep: bool) {
        if let Some((w, b)) = self.index(pfn) {
            if keep {
                self.words[w] |= b;
            } else {
                self.words[w] &= !b;
            }
        }
    }

    /// Marks `pfn .. pfn + count` (clipped to the window) kept or not.
    pub fn set_range(&mut self, pfn: u64, count: u64, keep: bool) {
        let lo = pfn.max(self.start_pfn);
        let hi = pfn.saturating_add(count).min(self.end_pfn());
        let mut p = lo;
        while p < hi {
            let i = p - self.start_pfn;
            let (w, bit) = ((i / 64) as usize, i % 64);
            let n = (64 - bit).min(hi - p);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            if keep {
                self.words[w] |= mask;
            } else {
                self.words[w] &= !mask;
            }
            p += n;
        }
    }

    /// Kept frames in the window.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The bitmap's words, bit `i` of word `w` = frame `start_pfn + 64 * w + i` (the order
    /// makedumpfile's on-disk bitmaps use, read as little-endian bytes).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Maximal runs of kept frames as `(first pfn, count)`, in frame order.
    pub fn runs(&self) -> Runs<'_> {
        Runs {
            map: self,
            next: self.start_pfn,
        }
    }
}

/// Iterator of [`PfnBitmap::runs`].
pub struct Runs<'a> {
    map: &'a PfnBitmap,
    next: u64,
}

impl Iterator for Runs<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let end = self.map.end_pfn();
        let mut p = self.next;
        while p < end && !self.map.get(p) {
            // Skip whole clear words at once.
            let i = p - self.map.start_pfn;
            if i.is_multiple_of(64) && self.map.words[(i / 64) as usize] == 0 {
                p += 64;
            } else {
                p += 1;
            }
        }
        if p >= end {
            self.next = end;
            return None;
        }
        let first = p;
        while p < end && self.map.get(p) {
            let i = p - self.map.start_pfn;
            if i.is_multiple_of(64)
                && self.map.words[(i / 64) as usize] == u64::MAX
                && p + 64 <= end
            {
                p += 64;
            } else {
                p += 1;
            }
        }
        self.next = p;
        Some((first, p - first))
    }
}

/// What a selector saw in one window, for the console and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectStats {
    /// Frames the selector looked at (set on entry).
    pub examined: u64,
    /// Frames it cleared.
    pub excluded: u64,
}

/// Why a selector gave up on a window; the writer then keeps the window's pages (a dump with too
/// much in it beats a dump with holes) and says so on the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// Old memory the selector needed could not be read.
    OldMem(OldMemError),
    /// The crashed kernel's data contradicts itself (bad page struct, section, table entry).
    Inconsistent(&'static str),
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::OldMem(e) => write!(f, "{e}"),
            SelectError::Inconsistent(what) => write!(f, "inconsistent kernel data: {what}"),
        }
    }
}

impl From<OldMemError> for SelectError {
    fn from(e: OldMemError) -> Self {
        SelectError::OldMem(e)
    }
}

/// Decides, window by window, which pages a dump keeps.
pub trait PageSelector {
    /// `keep` arrives with the bits of the frames the crashed kernel's PT_LOADs cover set; the
    /// selector only clears bits (it never adds a page the header did not offer).
    fn select(
        &mut self,
        mem: &mut dyn OldMemory,
        keep: &mut PfnBitmap,
    ) -> Result<SelectStats, SelectError>;
}

/// `rkdump.level=0`: every page the header offers.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepAll;

impl PageSelector for KeepAll {
    fn select(
        &mut self,
        _mem: &mut dyn OldMemory,
        keep: &mut PfnBitmap,
    ) -> Result<SelectStats, SelectError> {
        Ok(SelectStats {
            examined: keep.count(),
            excluded: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_range_and_runs_cross_word_edges() {
        let mut m = PfnBitmap::new(1000, 300).unwrap();
        m.set_range(1010, 100, true);
        m.set_range(1200, 200, true); // clipped at 1300
        m.set(1050, false);
        let runs: Vec<_> = m.runs().collect();
        assert_eq!(runs, [(1010, 40), (1051, 59), (1200, 100)]);
        assert_eq!(m.count(), 199);
        assert!(!m.get(999) && !m.get(1300) && m.get(1299));
    }

    #[test]
    fn full_words_and_empty() {
        let mut m = PfnBitmap::new(0, 256).unwrap();
        assert_eq!(m.runs().next(), None);
        m.set_range(0, 256, true);
        assert_eq!(m.runs().collect::<Vec<_>>(), [(0, 256)]);
    }

    #[test]
    fn huge_windows_fail_cleanly() {
        assert_eq!(PfnBitmap::new(u64::MAX, 2), Err(BitmapError::Range));
        assert_eq!(
            PfnBitmap::new(0, u64::MAX).map(|_| ()),
            Err(BitmapError::NoMemory)
        );
    }
}
