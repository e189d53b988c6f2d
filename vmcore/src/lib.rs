//! rkdump-vmcore: turns the crashed kernel's ELF core header into a `/proc/vmcore`-identical dump.
//!
//! The pipeline (docs/dump-format.md#vmcore-layout): [`header::ElfCoreHeader::read`] validates the elfcorehdr that
//! `kexec -p` left in old memory, [`notes::Notes::collect`] walks and merges the PT_NOTE buffers,
//! [`layout::VmcoreLayout::build`] computes the exact output file (one merged PT_NOTE first, page-rounded
//! PT_LOAD chunks) and [`writer::write_vmcore`] streams it to a [`DumpSink`] through a bounce buffer.
//! [`progress`] decides when a console progress line is due (fake-clock tested).
//! [`stream`] is the framed wire format used when the sink is a serial port; `rkdumpctl recv` decodes it.
//! [`prepare_dump`] runs the first three steps in one call.
//! [`kernel`] reads the crashed kernel itself (typed VMCOREINFO, page-table walk, virtual reads);
//! [`filter`] applies `rkdump.level=` through [`pages`] and plans the filtered ELF layout.
//!
//! Old memory comes in through [`OldMemory`] and bytes leave through [`DumpSink`]; the kernel implements
//! both, tests use fakes. Everything read from old memory is treated as hostile: no panics, checked
//! arithmetic, typed errors.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(not(target_endian = "little"))]
compile_error!("rkdump-vmcore reads x86_64 (little-endian) ELF structures in native byte order");

pub mod elf;
pub mod filter;
pub mod header;
pub mod kdump;
pub mod kernel;
pub mod layout;
pub mod mem;
pub mod notes;
pub mod pages;
pub mod progress;
pub mod report;
pub mod stream;
pub mod writer;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

use core::fmt;

pub use header::{DropReason, DroppedPhdr, ElfCoreHeader, PhysFilter};
pub use layout::{Chunk, Segment, VmcoreLayout};
pub use mem::{DumpSink, OldMemError, OldMemory, SinkError};
pub use notes::Notes;
pub use writer::write_vmcore;

/// Page size used for the `/proc/vmcore` layout (x86_64 `PAGE_SIZE`).
pub const PAGE_SIZE: u64 = 4096;

/// Any failure of [`prepare_dump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The ELF core header is unreadable or malformed.
    Header(header::Error),
    /// A PT_NOTE buffer is unreadable or too large.
    Notes(notes::Error),
    /// The output layout cannot be represented.
    Layout(layout::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Header(e) => write!(f, "elfcorehdr: {e}"),
            Error::Notes(e) => write!(f, "notes: {e}"),
            Error::Layout(e) => write!(f, "layout: {e}"),
        }
    }
}

impl From<header::Error> for Error {
    fn from(e: header::Error) -> Self {
        Error::Header(e)
    }
}

impl From<notes::Error> for Error {
    fn from(e: notes::Error) -> Self {
        Error::Notes(e)
    }
}

impl From<layout::Error> for Error {
    fn from(e: layout::Error) -> Self {
        Error::Layout(e)
    }
}

/// Everything needed to write a dump: the validated input header, the merged notes and the output layout.
#[derive(Debug, Clone)]
pub struct DumpPlan {
    /// The validated elfcorehdr as the crashed kernel's loader wrote it.
    pub header: ElfCoreHeader,
    /// The merged PT_NOTE contents (CPU registers, VMCOREINFO).
    pub notes: Notes,
    /// The output file layout.
    pub layout: VmcoreLayout,
}

/// Reads and validates the elfcorehdr at physical `elfcorehdr` (optional size from `elfcorehdr=size@addr`),
/// collects the notes and computes the `/proc/vmcore` layout.
pub fn prepare_dump(
    mem: &mut impl OldMemory,
    elfcorehdr: u64,
    size_hint: Option<u64>,
) -> Result<DumpPlan, Error> {
    let header = ElfCoreHeader::read(mem, elfcorehdr, size_hint)?;
    plan(mem, header)
}

/// Like [`prepare_dump`], but `filter` judges every PT_LOAD and PT_NOTE range first: a refused one
/// is left out of the dump (listed in [`ElfCoreHeader::dropped`]) and the rest is dumped. The
/// output then differs from `/proc/vmcore` only by the missing program headers and their data.
pub fn prepare_dump_filtered(
    mem: &mut impl OldMemory,
    elfcorehdr: u64,
    size_hint: Option<u64>,
    filter: &dyn PhysFilter,
) -> Result<DumpPlan, Error> {
    let header = ElfCoreHeader::read_filtered(mem, elfcorehdr, size_hint, filter)?;
    plan(mem, header)
}

fn plan(mem: &mut impl OldMemory, header: ElfCoreHeader) -> Result<DumpPlan, Error> {
    let notes = Notes::collect(mem, &header)?;
    let layout = VmcoreLayout::build(&header, &notes)?;
    Ok(DumpPlan {
        header,
        notes,
        layout,
    })
}

/// Rounds `v` up to a multiple of [`PAGE_SIZE`], `None` on overflow.
pub(crate) const fn page_roundup(v: u64) -> Option<u64> {
    match v.checked_add(PAGE_SIZE - 1) {
        Some(x) => Some(x & !(PAGE_SIZE - 1)),
        None => None,
    }
}

/// Rounds `v` down to a multiple of [`PAGE_SIZE`].
pub(crate) const fn page_rounddown(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}
