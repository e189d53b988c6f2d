//! The output file layout, byte-for-byte what Linux's `/proc/vmcore` presents (docs/dump-format.md#output-layout).
//!
//! ```text
//! [0, H)          ELF header (e_phnum = old - nr_notes + 1) + phdrs, zero-padded to 4096   header_bytes
//! [H, H + N)      merged notes, zero-padded to 4096 (N = 0 when there are no notes)        note_bytes
//! [H + N, total)  one chunk per PT_LOAD in phdr order: old memory
//!                 [rounddown(p_offset, 4096), roundup(p_offset + p_memsz, 4096))            chunks
//! ```
//! Phdr 0 is the merged PT_NOTE (flags 0, offset H, vaddr = paddr = 0, filesz = memsz = unpadded note
//! bytes, align 4); the other phdrs follow in input order with every PT_NOTE removed wherever it was. A
//! PT_LOAD's new `p_offset` is its chunk's file offset plus `p_offset % 4096`; all its other fields stay.
//! Other phdr types are copied unchanged.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::IntoBytes;

use crate::PAGE_SIZE;
use crate::elf::{EHDR_SIZE, Elf64_Phdr, PHDR_SIZE, PN_XNUM, PT_LOAD, PT_NOTE};
use crate::filter::elf::{ElfPlan, Piece};
use crate::header::ElfCoreHeader;
use crate::notes::Notes;
use crate::{page_rounddown, page_roundup};

/// Why a layout cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The output would need `e_phnum >= PN_XNUM` (possible only with no PT_NOTE and 65534 phdrs).
    TooManyProgramHeaders {
        /// Program headers the output would have.
        phnum: usize,
    },
    /// The output file size overflows 64 bits.
    SizeOverflow {
        /// Index of the PT_LOAD being placed.
        index: usize,
    },
    /// Memory for the header or note area could not be allocated.
    OutOfMemory {
        /// Bytes requested.
        bytes: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::TooManyProgramHeaders { phnum } => {
                write!(f, "output needs {phnum} program headers (PN_XNUM or more)")
            }
            Error::SizeOverflow { index } => {
                write!(f, "file size overflows when placing phdr {index}")
            }
            Error::OutOfMemory { bytes } => write!(f, "cannot allocate {bytes} bytes"),
        }
    }
}

/// One PT_LOAD's page-rounded old-memory range and where it lands in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Page-aligned physical start (`rounddown(p_offset, 4096)` of the input phdr).
    pub phys: u64,
    /// Length in bytes, a multiple of 4096 (0 for an empty aligned PT_LOAD).
    pub len: u64,
    /// File offset of the first byte.
    pub file_offset: u64,
}

/// Counts and sizes for logs and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Program headers in the elfcorehdr.
    pub input_phnum: usize,
    /// Program headers in the output.
    pub output_phnum: usize,
    /// PT_NOTE phdrs merged.
    pub pt_notes: usize,
    /// PT_NOTE buffers that held no note (CPUs that saved nothing).
    pub empty_note_buffers: usize,
    /// `CORE`/`NT_PRSTATUS` notes (CPUs).
    pub cpus: usize,
    /// Whether a VMCOREINFO note is present.
    pub vmcoreinfo: bool,
    /// Note walk warnings (dropped notes or bytes).
    pub note_warnings: usize,
    /// Unpadded merged note bytes.
    pub note_size: u64,
    /// PT_LOAD phdrs.
    pub loads: usize,
    /// Sum of PT_LOAD `p_memsz`.
    pub load_bytes: u64,
    /// Sum of chunk lengths (old memory copied).
    pub chunk_bytes: u64,
    /// Output file size.
    pub total_size: u64,
}

/// The complete output plan: in-memory header and note areas plus old-memory chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmcoreLayout {
    /// ELF header and program headers, zero-padded to a page multiple; file offset 0.
    pub header_bytes: Vec<u8>,
    /// Merged notes zero-padded to a page multiple; file offset `header_bytes.len()`.
    pub note_bytes: Vec<u8>,
    /// One chunk per PT_LOAD in phdr order, contiguous in the file after the note area.
    pub chunks: Vec<Chunk>,
    /// Output file size.
    pub total_size: u64,
    /// Counts for reporting.
    pub summary: Summary,
}

/// A piece of the output file in order: in-memory bytes, or old memory to copy (or DMA) verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Bytes held in the layout (header area, note area).
    Bytes(&'a [u8]),
    /// Old physical memory `phys..phys + len`, placed at `file_offset`.
    OldMem {
        /// Page-aligned physical start.
        phys: u64,
        /// Length, a multiple of 4096, never 0.
        len: u64,
        /// File offset.
        file_offset: u64,
    },
}

impl Segment<'_> {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match *self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::OldMem { len, .. } => len,
        }
    }

    /// Whether the segment is empty (never yielded by [`VmcoreLayout::segments`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl VmcoreLayout {
    /// Computes the `/proc/vmcore` layout for a validated header and its merged notes.
    pub fn build(header: &ElfCoreHeader, notes: &Notes) -> Result<Self, Error> {
        Self::build_inner(header, notes, None)
    }

    /// The layout of a filtered dump: each PT_LOAD becomes the PT_LOADs of its [`Piece`]s (one
    /// per piece, in order; a piece's `p_filesz` covers its written frames and its `p_memsz` the
    /// excluded run after them, which readers see as zeros). Header and notes are as in
    /// [`Self::build`]; `plan` comes from [`crate::filter::elf::plan`] over the same header.
    pub fn build_selected(
        header: &ElfCoreHeader,
        notes: &Notes,
        plan: &ElfPlan,
    ) -> Result<Self, Error> {
        Self::build_inner(header, notes, Some(&plan.pieces))
    }

    fn build_inner(
        header: &ElfCoreHeader,
        notes: &Notes,
        pieces: Option<&[Piece]>,
    ) -> Result<Self, Error> {
        let phdrs = header.phdrs();
        let pt_notes = header.notes().count();
        let output_phnum = match pieces {
            None => phdrs.len() - pt_notes + 1,
            Some(pieces) => phdrs.len() - pt_notes + 1 - header.loads().count() + pieces.len(),
        };
        if output_phnum >= usize::from(PN_XNUM) {
            return Err(Error::TooManyProgramHeaders {
                phnum: output_phnum,
            });
        }
        // < 0xffff phdrs: both sizes stay far below 2^32.
        let header_len = (EHDR_SIZE + PHDR_SIZE * output_phnum) as u64;
        let header_area = page_roundup(header_len).ok_or(Error::SizeOverflow { index: 0 })?;
        let note_size = notes.bytes().len() as u64;
        let notes_area = page_roundup(note_size).ok_or(Error::SizeOverflow { index: 0 })?;

        let mut out_phdrs: Vec<Elf64_Phdr> = Vec::new();
        out_phdrs
            .try_reserve_exact(output_phnum)
            .map_err(|_| Error::OutOfMemory { bytes: header_area })?;
        out_phdrs.push(Elf64_Phdr {
            p_type: PT_NOTE,
            p_flags: 0,
            p_offset: header_area,
            p_vaddr: 0,
            p_paddr: 0,
            p_filesz: note_size,
            p_memsz: note_size,
            p_align: 4,
        });

        let mut chunks = Vec::new();
        let mut summary = Summary::default();
        let mut offset = header_area
            .checked_add(notes_area)
            .ok_or(Error::SizeOverflow { index: 0 })?;
        for (index, p) in phdrs.iter().enumerate() {
            match p.p_type {
                PT_NOTE => continue,
                PT_LOAD if pieces.is_some() => {
                    let overflow = Error::SizeOverflow { index };
                    let orig_end = p.p_offset.checked_add(p.p_memsz).ok_or(overflow)?;
                    for piece in pieces
                        .unwrap_or_default()
                        .iter()
                        .filter(|x| x.phdr_index == index)
                    {
                        let chunk_start = piece.start_pfn.checked_mul(PAGE_SIZE).ok_or(overflow)?;
                        let file_len = piece.file_pages.checked_mul(PAGE_SIZE).ok_or(overflow)?;
                        let mem_end = piece
                            .start_pfn
                            .checked_add(piece.mem_pages)
                            .and_then(|e| e.checked_mul(PAGE_SIZE))
                            .ok_or(overflow)?;
                        let lo = p.p_offset.max(chunk_start);
                        let delta = lo - p.p_offset;
                        let mut q = *p;
                        q.p_paddr = p.p_paddr.wrapping_add(delta);
                        q.p_vaddr = p.p_vaddr.wrapping_add(delta);
                        q.p_offset = offset.checked_add(lo - chunk_start).ok_or(overflow)?;
                        q.p_memsz = orig_end.min(mem_end).saturating_sub(lo);
                        q.p_filesz = orig_end.min(chunk_start + file_len).saturating_sub(lo);
                        out_phdrs.push(q);
                        if file_len > 0 {
                            chunks.push(Chunk {
                                phys: chunk_start,
                                len: file_len,
                                file_offset: offset,
                            });
                        }
                        offset = offset.checked_add(file_len).ok_or(overflow)?;
                        summary.chunk_bytes = summary.chunk_bytes.saturating_add(file_len);
                    }
                    summary.loads += 1;
                    summary.load_bytes = summary.load_bytes.saturating_add(p.p_memsz);
                }
                PT_LOAD => {
                    let overflow = Error::SizeOverflow { index };
                    // The header validated p_offset + p_memsz <= 2^52, so the rounding cannot overflow.
                    let start = page_rounddown(p.p_offset);
                    let end = p
                        .p_offset
                        .checked_add(p.p_memsz)
                        .and_then(page_roundup)
                        .ok_or(overflow)?;
                    let len = end - start;
                    let mut q = *p;
                    q.p_offset = offset.checked_add(p.p_offset - start).ok_or(overflow)?;
                    out_phdrs.push(q);
                    chunks.push(Chunk {
                        phys: start,
                        len,
                        file_offset: offset,
                    });
                    offset = offset.checked_add(len).ok_or(overflow)?;
                    summary.loads += 1;
                    summary.load_bytes = summary.load_bytes.saturating_add(p.p_memsz);
                    summary.chunk_bytes = summary.chunk_bytes.saturating_add(len);
                }
                _ => out_phdrs.push(*p),
            }
        }

        let mut ehdr = *header.ehdr();
        // Checked against PN_XNUM above.
        ehdr.e_phnum = output_phnum as u16;
        let mut header_bytes = Vec::new();
        header_bytes
            .try_reserve_exact(header_area as usize)
            .map_err(|_| Error::OutOfMemory { bytes: header_area })?;
        header_bytes.extend_from_slice(ehdr.as_bytes());
        for p in &out_phdrs {
            header_bytes.extend_from_slice(p.as_bytes());
        }
        header_bytes.resize(header_area as usize, 0);

        let mut note_bytes = Vec::new();
        note_bytes
            .try_reserve_exact(notes_area as usize)
            .map_err(|_| Error::OutOfMemory { bytes: notes_area })?;
        note_bytes.extend_from_slice(notes.bytes());
        note_bytes.resize(notes_area as usize, 0);

        summary.input_phnum = phdrs.len();
        summary.output_phnum = output_phnum;
        summary.pt_notes = pt_notes;
        summary.empty_note_buffers = notes.buffers().iter().filter(|b| b.real_size == 0).count();
        summary.cpus = notes.prstatus_count();
        summary.vmcoreinfo = notes.vmcoreinfo().is_some();
        summary.note_warnings = notes.warnings().len();
        summary.note_size = note_size;
        summary.total_size = offset;

        Ok(Self {
            header_bytes,
            note_bytes,
            chunks,
            total_size: offset,
            summary,
        })
    }

    /// The output file in order, skipping empty pieces. Consecutive segments are contiguous in the file:
    /// header bytes at 0, note bytes right after, then each old-memory chunk at its `file_offset`.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        let bytes = [
            Segment::Bytes(&self.header_bytes),
            Segment::Bytes(&self.note_bytes),
        ];
        bytes
            .into_iter()
            .chain(self.chunks.iter().map(|c| Segment::OldMem {
                phys: c.phys,
                len: c.len,
                file_offset: c.file_offset,
            }))
            .filter(|s| !s.is_empty())
    }

    /// File offset where old-memory data starts (header area + note area).
    pub fn data_offset(&self) -> u64 {
        self.header_bytes.len() as u64 + self.note_bytes.len() as u64
    }
}
