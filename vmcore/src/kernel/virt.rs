//! The seam for reading the crashed kernel's *virtual* memory: [`VirtMemory`], implemented over old
//! physical memory and a page-table walk by [`OldVirt`], and by fakes in tests.

use core::fmt;

use crate::mem::{OldMemError, OldMemory};

use super::vtop::{Mapping, Translator};

/// Longest single virtual read (guards against a length taken from old-kernel data).
pub const MAX_VIRT_READ: usize = 16 << 20;

/// Why a virtual read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtError {
    /// No translation: a non-present entry on the way, or a non-canonical address.
    NotMapped {
        /// The address that has no translation.
        va: u64,
    },
    /// A page-table entry with reserved bits set or pointing beyond the physical address width.
    BadEntry {
        /// The address being translated.
        va: u64,
        /// Table level of the entry: 5 (PML5) .. 1 (PTE).
        level: u8,
        /// The raw entry.
        entry: u64,
    },
    /// Old memory (a table or the data) could not be read.
    OldMem {
        /// The address being read.
        va: u64,
        /// The underlying failure.
        source: OldMemError,
    },
    /// The read is longer than [`MAX_VIRT_READ`].
    TooLong {
        /// Bytes requested.
        len: usize,
    },
}

impl fmt::Display for VirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VirtError::NotMapped { va } => write!(f, "virtual address {va:#x} is not mapped"),
            VirtError::BadEntry { va, level, entry } => write!(
                f,
                "virtual address {va:#x}: bad level-{level} page-table entry {entry:#x}"
            ),
            VirtError::OldMem { va, source } => {
                write!(f, "virtual address {va:#x}: {source}")
            }
            VirtError::TooLong { len } => write!(
                f,
                "virtual read of {len} bytes exceeds the {MAX_VIRT_READ} byte limit"
            ),
        }
    }
}

/// Reads the crashed kernel's virtual memory.
pub trait VirtMemory {
    /// Fills `buf` with the bytes at kernel virtual address `va..va + buf.len()`; on error, `buf`
    /// holds unspecified bytes.
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError>;
}

impl<V: VirtMemory + ?Sized> VirtMemory for &mut V {
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError> {
        (**self).read_virt(va, buf)
    }
}

/// [`VirtMemory`] over old physical memory through the crashed kernel's page tables. Remembers the
/// last page it translated (vmemmap and the direct map use 2 MiB and 1 GiB pages, so a scan of page
/// structs costs one walk per large page).
pub struct OldVirt<'a> {
    mem: &'a mut dyn OldMemory,
    translator: &'a Translator,
    last: Option<Mapping>,
}

impl<'a> OldVirt<'a> {
    /// Reads through `translator`'s tables in `mem`.
    pub fn new(mem: &'a mut dyn OldMemory, translator: &'a Translator) -> Self {
        OldVirt {
            mem,
            translator,
            last: None,
        }
    }

    /// The physical memory underneath.
    pub fn old_memory(&mut self) -> &mut dyn OldMemory {
        self.mem
    }

    fn lookup(&mut self, va: u64) -> Result<Mapping, VirtError> {
        if let Some(m) = self.last
            && m.contains(va)
        {
            return Ok(m);
        }
        let m = self.translator.translate(self.mem, va)?;
        self.last = Some(m);
        Ok(m)
    }
}

impl VirtMemory for OldVirt<'_> {
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError> {
        if buf.len() > MAX_VIRT_READ {
            return Err(VirtError::TooLong { len: buf.len() });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let cur = va
                .checked_add(done as u64)
                .ok_or(VirtError::NotMapped { va: u64::MAX })?;
            let m = self.lookup(cur)?;
            let in_page = m.bytes_from(cur);
            let n = usize::try_from(in_page)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            let phys = m.phys_of(cur);
            self.mem
                .read(phys, &mut buf[done..done + n])
                .map_err(|source| VirtError::OldMem { va: cur, source })?;
            done += n;
        }
        Ok(())
    }
}
