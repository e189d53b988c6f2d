//! PT_NOTE handling: walking the crashed kernel's note buffers, merging them like `/proc/vmcore`, and
//! reading the notes back (CPU registers from `NT_PRSTATUS`, VMCOREINFO keys).
//!
//! Each PT_NOTE in an elfcorehdr names a *buffer* (`p_memsz` bytes at physical `p_offset`, docs/dump-format.md#note-merging).
//! Like fs/proc/vmcore.c `update_note_header_size_elf64`, the buffer is walked note by note
//! (12 + align4(namesz) + align4(descsz) bytes each) until a header with `n_namesz == 0`, or until the next
//! note would not fit (a [`NoteWarning`]); only the real bytes are kept, concatenated in header order
//! (`copy_notes_elf64`). CPUs that never saved registers leave empty buffers.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use zerocopy::FromBytes;

use crate::elf::{Elf64_Nhdr, NHDR_SIZE, NT_PRSTATUS, NT_VMCOREINFO};
use crate::header::ElfCoreHeader;
use crate::mem::{OldMemError, OldMemory};

/// Largest PT_NOTE buffer read (KF uses 368 B per CPU and 4132 B for VMCOREINFO).
pub const MAX_NOTE_BUFFER: u64 = 1 << 20;
/// Largest total of merged note bytes kept (8192 CPUs × 368 B is about 3 MiB).
pub const MAX_MERGED_NOTES: u64 = 16 << 20;

/// Why the notes could not be collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Reading a note buffer from old memory failed.
    OldMem {
        /// Program header index of the PT_NOTE.
        index: usize,
        /// The underlying failure.
        source: OldMemError,
    },
    /// A PT_NOTE buffer is larger than [`MAX_NOTE_BUFFER`].
    BufferTooLarge {
        /// Program header index of the PT_NOTE.
        index: usize,
        /// Its `p_memsz`.
        p_memsz: u64,
    },
    /// The merged notes would exceed [`MAX_MERGED_NOTES`].
    MergedTooLarge {
        /// Program header index of the PT_NOTE that crossed the limit.
        index: usize,
    },
    /// Memory for the note buffers could not be allocated.
    OutOfMemory {
        /// Bytes requested.
        bytes: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::OldMem { index, source } => write!(f, "PT_NOTE phdr {index}: {source}"),
            Error::BufferTooLarge { index, p_memsz } => write!(
                f,
                "PT_NOTE phdr {index}: buffer of {p_memsz:#x} bytes exceeds the {MAX_NOTE_BUFFER:#x} limit"
            ),
            Error::MergedTooLarge { index } => write!(
                f,
                "PT_NOTE phdr {index}: merged notes exceed the {MAX_MERGED_NOTES:#x} byte limit"
            ),
            Error::OutOfMemory { bytes } => write!(f, "cannot allocate {bytes} bytes for notes"),
        }
    }
}

/// Something odd but survivable found while walking a note buffer (Linux prints a warning and goes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteWarning {
    /// The next note claims more bytes than remain in the buffer; it and everything after it are dropped.
    Overflow {
        /// Program header index of the buffer (`None` when parsing an already merged note segment).
        phdr_index: Option<usize>,
        /// Offset of the note inside its buffer.
        offset: u64,
        /// Its `n_namesz`.
        n_namesz: u32,
        /// Its `n_descsz`.
        n_descsz: u32,
    },
    /// Fewer than 12 bytes remain and no terminating header was seen; the tail is dropped.
    TrailingBytes {
        /// Program header index of the buffer (`None` for a merged segment).
        phdr_index: Option<usize>,
        /// Offset of the tail inside its buffer.
        offset: u64,
        /// Bytes dropped.
        len: u64,
    },
}

impl fmt::Display for NoteWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NoteWarning::Overflow {
                phdr_index,
                offset,
                n_namesz,
                n_descsz,
            } => {
                write_where(f, phdr_index, offset)?;
                write!(
                    f,
                    "note (n_namesz={n_namesz:#x}, n_descsz={n_descsz:#x}) exceeds the buffer, dropped"
                )
            }
            NoteWarning::TrailingBytes {
                phdr_index,
                offset,
                len,
            } => {
                write_where(f, phdr_index, offset)?;
                write!(f, "{len} trailing bytes without a note header, dropped")
            }
        }
    }
}

fn write_where(f: &mut fmt::Formatter<'_>, phdr: Option<usize>, offset: u64) -> fmt::Result {
    match phdr {
        Some(i) => write!(f, "PT_NOTE phdr {i} +{offset:#x}: "),
        None => write!(f, "notes +{offset:#x}: "),
    }
}

/// What one PT_NOTE buffer contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteBuffer {
    /// Program header index.
    pub phdr_index: usize,
    /// Physical address of the buffer.
    pub phys: u64,
    /// Buffer size (`p_memsz` in the elfcorehdr).
    pub capacity: u64,
    /// Bytes of real notes found (0 for a CPU that saved nothing).
    pub real_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Range<usize>,
    n_type: u32,
    desc: Range<usize>,
    offset: usize,
}

/// One note, borrowed from a [`Notes`] collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// Name without its NUL padding (e.g. `b"CORE"`, `b"VMCOREINFO"`).
    pub name: &'a [u8],
    /// `n_type`.
    pub n_type: u32,
    /// Descriptor bytes.
    pub desc: &'a [u8],
    /// Offset of the note header within the merged note bytes.
    pub offset: usize,
}

impl Note<'_> {
    /// A `CORE`/`NT_PRSTATUS` note: one per CPU that saved its registers.
    pub fn is_prstatus(&self) -> bool {
        self.name == b"CORE" && self.n_type == NT_PRSTATUS
    }

    /// The VMCOREINFO note.
    pub fn is_vmcoreinfo(&self) -> bool {
        self.name == b"VMCOREINFO" && self.n_type == NT_VMCOREINFO
    }

    /// Decodes the descriptor of an `NT_PRSTATUS` note.
    pub fn prstatus(&self) -> Option<PrStatus> {
        if self.is_prstatus() {
            PrStatus::parse(self.desc)
        } else {
            None
        }
    }
}

/// Merged notes: the exact bytes of the output PT_NOTE segment (unpadded) plus an index of the notes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notes {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    warnings: Vec<NoteWarning>,
    buffers: Vec<NoteBuffer>,
}

impl Notes {
    /// Reads every PT_NOTE buffer named by `header` from old memory and merges the real notes.
    pub fn collect(mem: &mut impl OldMemory, header: &ElfCoreHeader) -> Result<Self, Error> {
        let mut notes = Notes::default();
        let mut scratch: Vec<u8> = Vec::new();
        for (index, p) in header.notes() {
            if p.p_memsz > MAX_NOTE_BUFFER {
                return Err(Error::BufferTooLarge {
                    index,
                    p_memsz: p.p_memsz,
                });
            }
            // Bounded by MAX_NOTE_BUFFER above.
            let len = p.p_memsz as usize;
            scratch.clear();
            scratch
                .try_reserve(len)
                .map_err(|_| Error::OutOfMemory { bytes: p.p_memsz })?;
            scratch.resize(len, 0);
            if len > 0 {
                mem.read(p.p_offset, &mut scratch)
                    .map_err(|source| Error::OldMem { index, source })?;
            }
            let real = notes.walk(&scratch, Some(index));
            let new_len = notes.bytes.len() as u64 + real as u64;
            if new_len > MAX_MERGED_NOTES {
                return Err(Error::MergedTooLarge { index });
            }
            notes
                .bytes
                .try_reserve(real)
                .map_err(|_| Error::OutOfMemory { bytes: new_len })?;
            notes.bytes.extend_from_slice(&scratch[..real]);
            notes.buffers.push(NoteBuffer {
                phdr_index: index,
                phys: p.p_offset,
                capacity: p.p_memsz,
                real_size: real as u64,
            });
        }
        Ok(notes)
    }

    /// Indexes an already merged note segment, e.g. the PT_NOTE of a vmcore file. The walk stops at a
    /// zero `n_namesz` or at a note that does not fit, as for a buffer.
    pub fn parse_merged(bytes: &[u8]) -> Self {
        let mut notes = Notes::default();
        let real = notes.walk(bytes, None);
        notes.bytes = bytes[..real].to_vec();
        notes
    }

    /// Walks `buf`, appending entries (offset by the current merged length) and warnings; returns the real
    /// size. Running out exactly at the end of the buffer (no terminator) is accepted silently.
    fn walk(&mut self, buf: &[u8], phdr_index: Option<usize>) -> usize {
        let base = self.bytes.len();
        let mut pos = 0usize;
        loop {
            let rest = &buf[pos..];
            if rest.is_empty() {
                break;
            }
            let Ok((nhdr, _)) = Elf64_Nhdr::read_from_prefix(rest) else {
                self.warnings.push(NoteWarning::TrailingBytes {
                    phdr_index,
                    offset: pos as u64,
                    len: rest.len() as u64,
                });
                break;
            };
            if nhdr.n_namesz == 0 {
                break;
            }
            let name_pad = align4(nhdr.n_namesz);
            let desc_pad = align4(nhdr.n_descsz);
            let size = NHDR_SIZE as u64 + name_pad + desc_pad;
            if size > rest.len() as u64 {
                self.warnings.push(NoteWarning::Overflow {
                    phdr_index,
                    offset: pos as u64,
                    n_namesz: nhdr.n_namesz,
                    n_descsz: nhdr.n_descsz,
                });
                break;
            }
            // All below are <= size <= rest.len(), so they fit in usize.
            let name_start = pos + NHDR_SIZE;
            let name_len = nhdr.n_namesz as usize;
            let desc_start = name_start + name_pad as usize;
            let desc_len = nhdr.n_descsz as usize;
            let name_bytes = &buf[name_start..name_start + name_len];
            let trimmed = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_len);
            self.entries.push(Entry {
                name: base + name_start..base + name_start + trimmed,
                n_type: nhdr.n_type,
                desc: base + desc_start..base + desc_start + desc_len,
                offset: base + pos,
            });
            pos += size as usize;
        }
        pos
    }

    /// The merged note bytes (terminators dropped, not padded): the output PT_NOTE's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// All notes in order.
    pub fn iter(&self) -> impl Iterator<Item = Note<'_>> {
        self.entries.iter().map(|e| Note {
            name: &self.bytes[e.name.clone()],
            n_type: e.n_type,
            desc: &self.bytes[e.desc.clone()],
            offset: e.offset,
        })
    }

    /// Number of notes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no note was found.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of `CORE`/`NT_PRSTATUS` notes (CPUs that saved registers; makedumpfile's `nr_cpus`).
    pub fn prstatus_count(&self) -> usize {
        self.iter().filter(Note::is_prstatus).count()
    }

    /// The VMCOREINFO text, if present.
    pub fn vmcoreinfo(&self) -> Option<VmcoreInfo<'_>> {
        self.iter()
            .find(Note::is_vmcoreinfo)
            .map(|n| VmcoreInfo::new(n.desc))
    }

    /// Warnings found while walking (dropped notes or bytes).
    pub fn warnings(&self) -> &[NoteWarning] {
        &self.warnings
    }

    /// Per-PT_NOTE buffer accounting (empty for [`Notes::parse_merged`]).
    pub fn buffers(&self) -> &[NoteBuffer] {
        &self.buffers
    }
}

fn align4(v: u32) -> u64 {
    (u64::from(v) + 3) & !3
}

/// The VMCOREINFO note text: `KEY=value` lines (kernel/vmcore_info.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmcoreInfo<'a> {
    text: &'a [u8],
}

impl<'a> VmcoreInfo<'a> {
    /// Wraps raw descriptor bytes (trailing NULs are ignored).
    pub fn new(desc: &'a [u8]) -> Self {
        let end = desc.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Self { text: &desc[..end] }
    }

    /// The raw text.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// All `(key, value)` pairs in order; lines without `=` or with non-UTF-8 bytes are skipped.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.text.split(|&b| b == b'\n').filter_map(|line| {
            let line = core::str::from_utf8(line).ok()?;
            line.split_once('=')
        })
    }

    /// The value of `key` (exact match, e.g. `"OSRELEASE"`, `"NUMBER(phys_base)"`); the last one wins,
    /// as in makedumpfile.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.entries()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// `OSRELEASE`.
    pub fn osrelease(&self) -> Option<&'a str> {
        self.get("OSRELEASE")
    }

    /// `PAGESIZE` (decimal).
    pub fn page_size(&self) -> Option<u64> {
        self.get("PAGESIZE")?.trim().parse().ok()
    }

    /// `CRASHTIME` (decimal seconds since the epoch).
    pub fn crash_time(&self) -> Option<u64> {
        self.get("CRASHTIME")?.trim().parse().ok()
    }

    /// `KERNELOFFSET` (hex without prefix): the KASLR offset.
    pub fn kernel_offset(&self) -> Option<u64> {
        parse_hex(self.get("KERNELOFFSET")?)
    }

    /// `NUMBER(phys_base)` (decimal, signed in the kernel; shown as its two's complement).
    pub fn phys_base(&self) -> Option<u64> {
        let v: i64 = self.get("NUMBER(phys_base)")?.trim().parse().ok()?;
        Some(v as u64)
    }
}

/// A hex number as VMCOREINFO prints it (`%lx`, no prefix; a `0x` prefix is accepted).
pub(crate) fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(s, 16).ok()
}

/// The parts of x86_64 `struct elf_prstatus` (336 bytes; docs/boot-contract.md#notes-left-by-the-crashed-kernel) worth reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrStatus {
    /// `pr_pid`: the task running on that CPU.
    pub pr_pid: i32,
    /// `pr_reg`: `user_regs_struct` in [`PR_REG_NAMES`] order.
    pub pr_reg: [u64; 27],
}

/// Register names of `pr_reg`, in order.
pub const PR_REG_NAMES: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

/// Offset of `pr_pid` in `struct elf_prstatus`.
const PR_PID_OFFSET: usize = 32;
/// Offset of `pr_reg` in `struct elf_prstatus`.
const PR_REG_OFFSET: usize = 112;
/// Size of `struct elf_prstatus` on x86_64.
pub const PRSTATUS_SIZE: usize = 336;

impl PrStatus {
    /// Decodes an `NT_PRSTATUS` descriptor; `None` if it is shorter than the x86_64 layout needs.
    pub fn parse(desc: &[u8]) -> Option<Self> {
        let pid = desc.get(PR_PID_OFFSET..PR_PID_OFFSET + 4)?;
        let regs = desc.get(PR_REG_OFFSET..PR_REG_OFFSET + 27 * 8)?;
        let mut pr_reg = [0u64; 27];
        for (dst, src) in pr_reg.iter_mut().zip(regs.chunks_exact(8)) {
            *dst = u64::from_le_bytes(src.try_into().ok()?);
        }
        Some(Self {
            pr_pid: i32::from_le_bytes(pid.try_into().ok()?),
            pr_reg,
        })
    }

    /// Instruction pointer at the time the CPU stopped.
    pub fn rip(&self) -> u64 {
        self.pr_reg[16]
    }

    /// Stack pointer at the time the CPU stopped.
    pub fn rsp(&self) -> u64 {
        self.pr_reg[19]
    }
}
