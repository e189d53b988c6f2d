//! Reading and validating the ELF core header (elfcorehdr) that `kexec -p` left in old memory.
//!
//! Checks follow fs/proc/vmcore.c `parse_crash_elf64_headers` (docs/dump-format.md#input-checks) plus range sanity that
//! Linux does not do because it trusts its own loader:
//! * ident: magic, `ELFCLASS64`, `ELFDATA2LSB`, `EV_CURRENT`; `e_version == EV_CURRENT`, `ET_CORE`,
//!   `EM_X86_64`, `e_ehsize == 64`, `e_phentsize == 56`, `1 <= e_phnum < PN_XNUM` (extended numbering is
//!   rejected like Linux, which never reads section header 0).
//! * `e_phoff` must be 64. Linux ignores the field and reads the program headers right after the ELF
//!   header; both producers (kexec-tools, `kexec_file_load`) write 64. Rather than silently reading
//!   something else than the header claims, any other value is an error.
//! * PT_LOAD and PT_NOTE: `p_offset + p_memsz` must not overflow and must not exceed [`MAX_PHYS_ADDR`]
//!   (2^52, the x86_64 MAXPHYADDR limit); PT_LOAD `p_filesz <= p_memsz`. With
//!   [`ElfCoreHeader::read_filtered`] the caller's [`PhysFilter`] (the running CPU's real limit and
//!   the MMIO it knows) judges these ranges instead, and a refused PT_LOAD or PT_NOTE is not an
//!   error: it is set aside as a [`DroppedPhdr`] and the dump goes on without it (the best dump
//!   still possible beats none).
//! * PT_LOAD physical ranges (`[p_offset, p_offset + p_memsz)`, `p_offset` is where the data lives,
//!   docs/boot-contract.md#what-the-header-contains) must not overlap, except that the kernel-text load (`p_vaddr >= KERNEL_TEXT_VADDR`) may
//!   overlap RAM loads: kernel text legitimately appears twice.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::FromBytes;

use crate::elf::{
    EHDR_SIZE, EI_CLASS, EI_DATA, EI_VERSION, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_X86_64, ET_CORE,
    EV_CURRENT, Elf64_Ehdr, Elf64_Phdr, PHDR_SIZE, PN_XNUM, PT_LOAD, PT_NOTE,
};
use crate::mem::{OldMemError, OldMemory};

/// Exclusive upper bound for any physical address named by the header (x86_64 MAXPHYADDR = 52 bits).
pub const MAX_PHYS_ADDR: u64 = 1 << 52;

/// Start of the x86_64 kernel-text mapping (`__START_KERNEL_map`); a PT_LOAD whose `p_vaddr` is at or above
/// this is the kernel-text load.
pub const KERNEL_TEXT_VADDR: u64 = 0xffff_ffff_8000_0000;

/// Why an elfcorehdr was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Old memory holding the header could not be read.
    OldMem {
        /// Which part was being read.
        what: &'static str,
        /// The underlying failure.
        source: OldMemError,
    },
    /// The header (per its own sizes) is longer than the bytes available.
    Truncated {
        /// Bytes the header needs.
        needed: u64,
        /// Bytes available (size hint or slice length).
        available: u64,
    },
    /// `elfcorehdr` address plus the header size overflows.
    AddressOverflow {
        /// Header address.
        addr: u64,
    },
    /// `e_ident` does not start with `\x7fELF`.
    BadMagic {
        /// First four bytes found.
        found: [u8; 4],
    },
    /// `e_ident[EI_CLASS]` is not `ELFCLASS64`.
    BadClass(u8),
    /// `e_ident[EI_DATA]` is not `ELFDATA2LSB`.
    BadDataEncoding(u8),
    /// `e_ident[EI_VERSION]` is not `EV_CURRENT`.
    BadIdentVersion(u8),
    /// `e_version` is not `EV_CURRENT`.
    BadVersion(u32),
    /// `e_type` is not `ET_CORE`.
    BadType(u16),
    /// `e_machine` is not `EM_X86_64`.
    BadMachine(u16),
    /// `e_ehsize` is not 64.
    BadEhsize(u16),
    /// `e_phentsize` is not 56.
    BadPhentsize(u16),
    /// `e_phoff` is not 64 (see the module docs).
    BadPhoff(u64),
    /// `e_phnum` is 0.
    NoProgramHeaders,
    /// `e_phnum` is `PN_XNUM` (extended numbering, unsupported like Linux).
    ExtendedNumbering,
    /// A PT_LOAD has `p_filesz > p_memsz`.
    FileszExceedsMemsz {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        p_filesz: u64,
        /// `p_memsz`.
        p_memsz: u64,
    },
    /// `p_offset + p_memsz` overflows or exceeds [`MAX_PHYS_ADDR`].
    RangeBeyondMaxPhys {
        /// Program header index.
        index: usize,
        /// `p_offset` (physical start).
        p_offset: u64,
        /// `p_memsz`.
        p_memsz: u64,
    },
    /// Two RAM PT_LOADs overlap in physical memory.
    OverlappingLoads {
        /// Index of the load starting first.
        first: usize,
        /// Index of the load overlapping it.
        second: usize,
    },
    /// Memory for the program header table could not be allocated.
    OutOfMemory {
        /// Bytes requested.
        bytes: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::OldMem { what, source } => write!(f, "reading {what}: {source}"),
            Error::Truncated { needed, available } => {
                write!(
                    f,
                    "header needs {needed} bytes but only {available} are available"
                )
            }
            Error::AddressOverflow { addr } => write!(f, "header address {addr:#x} overflows"),
            Error::BadMagic { found } => write!(f, "bad ELF magic {found:02x?}"),
            Error::BadClass(v) => write!(f, "EI_CLASS {v} is not ELFCLASS64"),
            Error::BadDataEncoding(v) => write!(f, "EI_DATA {v} is not ELFDATA2LSB"),
            Error::BadIdentVersion(v) => write!(f, "EI_VERSION {v} is not EV_CURRENT"),
            Error::BadVersion(v) => write!(f, "e_version {v} is not EV_CURRENT"),
            Error::BadType(v) => write!(f, "e_type {v} is not ET_CORE"),
            Error::BadMachine(v) => write!(f, "e_machine {v} is not EM_X86_64"),
            Error::BadEhsize(v) => write!(f, "e_ehsize {v} is not 64"),
            Error::BadPhentsize(v) => write!(f, "e_phentsize {v} is not 56"),
            Error::BadPhoff(v) => write!(f, "e_phoff {v:#x} is not 64"),
            Error::NoProgramHeaders => f.write_str("e_phnum is 0"),
            Error::ExtendedNumbering => f.write_str("e_phnum is PN_XNUM (extended numbering)"),
            Error::FileszExceedsMemsz {
                index,
                p_filesz,
                p_memsz,
            } => write!(
                f,
                "phdr {index}: p_filesz {p_filesz:#x} exceeds p_memsz {p_memsz:#x}"
            ),
            Error::RangeBeyondMaxPhys {
                index,
                p_offset,
                p_memsz,
            } => write!(
                f,
                "phdr {index}: range {p_offset:#x}+{p_memsz:#x} exceeds the 52-bit physical address space"
            ),
            Error::OverlappingLoads { first, second } => {
                write!(f, "PT_LOAD phdrs {first} and {second} overlap")
            }
            Error::OutOfMemory { bytes } => {
                write!(f, "cannot allocate {bytes} bytes for program headers")
            }
        }
    }
}

/// Why a PT_LOAD or PT_NOTE range was refused by a [`PhysFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `p_offset + p_memsz` overflows 64 bits.
    Wraps,
    /// The range ends above the physical address limit (exclusive).
    BeyondLimit {
        /// The limit.
        limit: u64,
    },
    /// The range overlaps memory that is not the crashed kernel's RAM (e.g. known MMIO).
    Refused {
        /// Start of the region it touches.
        start: u64,
        /// Exclusive end of that region.
        end: u64,
    },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DropReason::Wraps => f.write_str("range wraps around 64 bits"),
            DropReason::BeyondLimit { limit } => {
                write!(f, "beyond the physical address limit {limit:#x}")
            }
            DropReason::Refused { start, end } => {
                write!(f, "overlaps MMIO [{start:#x}-{end:#x})")
            }
        }
    }
}

/// Judges the physical ranges a header names before anything reads them: the running machine's
/// address policy (CPU width, paging mode, known MMIO).
pub trait PhysFilter {
    /// `Err` refuses `[start, start + len)`.
    fn check(&self, start: u64, len: u64) -> Result<(), DropReason>;
}

/// The plain limit filter: ranges must end at or below `.0` (exclusive) without wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Below(pub u64);

impl PhysFilter for Below {
    fn check(&self, start: u64, len: u64) -> Result<(), DropReason> {
        match start.checked_add(len) {
            None => Err(DropReason::Wraps),
            Some(end) if end > self.0 || start >= self.0 => {
                Err(DropReason::BeyondLimit { limit: self.0 })
            }
            Some(_) => Ok(()),
        }
    }
}

/// A program header [`ElfCoreHeader::read_filtered`] set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedPhdr {
    /// Its index in the elfcorehdr.
    pub index: usize,
    /// The program header as found.
    pub phdr: Elf64_Phdr,
    /// Why.
    pub reason: DropReason,
}

/// A validated ELF core header: the ELF header and its program headers, as the loader wrote them,
/// minus those a [`PhysFilter`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfCoreHeader {
    ehdr: Elf64_Ehdr,
    phdrs: Vec<Elf64_Phdr>,
    dropped: Vec<DroppedPhdr>,
}

impl ElfCoreHeader {
    /// Reads and validates the header at old physical address `addr`. `size_hint` is the size from
    /// `elfcorehdr=size@addr` when given; the header must then fit inside it.
    pub fn read(
        mem: &mut impl OldMemory,
        addr: u64,
        size_hint: Option<u64>,
    ) -> Result<Self, Error> {
        Self::read_inner(mem, addr, size_hint, None)
    }

    /// Like [`ElfCoreHeader::read`], but `filter` judges every PT_LOAD and PT_NOTE range, and a
    /// refused one is set aside ([`ElfCoreHeader::dropped`]) instead of failing the header. The
    /// kept program headers keep their order; the other checks apply to them unchanged.
    pub fn read_filtered(
        mem: &mut impl OldMemory,
        addr: u64,
        size_hint: Option<u64>,
        filter: &dyn PhysFilter,
    ) -> Result<Self, Error> {
        Self::read_inner(mem, addr, size_hint, Some(filter))
    }

    fn read_inner(
        mem: &mut impl OldMemory,
        addr: u64,
        size_hint: Option<u64>,
        filter: Option<&dyn PhysFilter>,
    ) -> Result<Self, Error> {
        let ehdr_len = EHDR_SIZE as u64;
        check_available(ehdr_len, size_hint)?;
        if addr.checked_add(ehdr_len).is_none() {
            return Err(Error::AddressOverflow { addr });
        }
        let mut raw = [0u8; EHDR_SIZE];
        mem.read(addr, &mut raw).map_err(|source| Error::OldMem {
            what: "ELF header",
            source,
        })?;
        let ehdr = validate_ehdr(&raw)?;
        let ph_len = phdr_table_len(ehdr.e_phnum);
        check_available(ehdr_len + ph_len, size_hint)?;
        let ph_addr = addr
            .checked_add(ehdr_len)
            .filter(|a| a.checked_add(ph_len).is_some())
            .ok_or(Error::AddressOverflow { addr })?;
        let mut table = Vec::new();
        table
            .try_reserve_exact(ph_len as usize)
            .map_err(|_| Error::OutOfMemory { bytes: ph_len })?;
        table.resize(ph_len as usize, 0);
        mem.read(ph_addr, &mut table)
            .map_err(|source| Error::OldMem {
                what: "program headers",
                source,
            })?;
        let phdrs = parse_phdrs(&table, ehdr.e_phnum)?;
        let (phdrs, dropped) = match filter {
            None => {
                validate_phdrs(&phdrs)?;
                (phdrs, Vec::new())
            }
            Some(f) => {
                let (kept, dropped) = set_aside(phdrs, f)?;
                validate_phdrs(&kept)?;
                (kept, dropped)
            }
        };
        Ok(Self {
            ehdr,
            phdrs,
            dropped,
        })
    }

    /// Parses and validates a header held in memory (`bytes` starts with the ELF header). Applies exactly
    /// the checks of [`ElfCoreHeader::read`]; also usable on a vmcore file's first bytes, whose program
    /// headers satisfy the same rules with `p_offset` being a file offset.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let h = Self::parse_file(bytes)?;
        validate_phdrs(&h.phdrs)?;
        Ok(h)
    }

    /// Parses the headers of a vmcore *file* (what `rkdumpctl inspect` reads): the ELF header
    /// is validated as by [`Self::parse`], the program headers are read but not checked as
    /// physical ranges, since in a file `p_offset` is a file offset and a filtered dump's
    /// PT_LOADs are shorter in the file than in memory (`p_filesz < p_memsz`), so the
    /// elfcorehdr's no-overlap rule does not apply.
    pub fn parse_file(bytes: &[u8]) -> Result<Self, Error> {
        let available = bytes.len() as u64;
        let ehdr_bytes = bytes.get(..EHDR_SIZE).ok_or(Error::Truncated {
            needed: EHDR_SIZE as u64,
            available,
        })?;
        let ehdr = validate_ehdr(ehdr_bytes)?;
        let ph_len = phdr_table_len(ehdr.e_phnum);
        let needed = EHDR_SIZE as u64 + ph_len;
        let table = bytes
            .get(EHDR_SIZE..EHDR_SIZE + ph_len as usize)
            .ok_or(Error::Truncated { needed, available })?;
        let phdrs = parse_phdrs(table, ehdr.e_phnum)?;
        Ok(Self {
            ehdr,
            phdrs,
            dropped: Vec::new(),
        })
    }

    /// The ELF header as found.
    pub fn ehdr(&self) -> &Elf64_Ehdr {
        &self.ehdr
    }

    /// All kept program headers in header order (indices below count kept headers only).
    pub fn phdrs(&self) -> &[Elf64_Phdr] {
        &self.phdrs
    }

    /// The PT_LOADs and PT_NOTEs a [`PhysFilter`] refused, with their original indices.
    pub fn dropped(&self) -> &[DroppedPhdr] {
        &self.dropped
    }

    /// The PT_NOTE program headers with their indices.
    pub fn notes(&self) -> impl Iterator<Item = (usize, &Elf64_Phdr)> {
        self.phdrs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.p_type == PT_NOTE)
    }

    /// Where the file this header describes ends, when `p_offset` values are file offsets (a
    /// vmcore's own header): past the program header table and every segment's file bytes.
    /// `None` when a segment's end overflows.
    pub fn file_extent(&self) -> Option<u64> {
        let table_end = EHDR_SIZE as u64 + phdr_table_len(self.ehdr.e_phnum);
        self.phdrs.iter().try_fold(table_end, |end, p| {
            Some(end.max(p.p_offset.checked_add(p.p_filesz)?))
        })
    }

    /// The PT_LOAD program headers with their indices.
    pub fn loads(&self) -> impl Iterator<Item = (usize, &Elf64_Phdr)> {
        self.phdrs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.p_type == PT_LOAD)
    }
}

/// Whether `phdr` is the kernel-text PT_LOAD (mapped in the `__START_KERNEL_map` region).
pub fn is_kernel_text(phdr: &Elf64_Phdr) -> bool {
    phdr.p_type == PT_LOAD && phdr.p_vaddr >= KERNEL_TEXT_VADDR
}

fn check_available(needed: u64, size_hint: Option<u64>) -> Result<(), Error> {
    match size_hint {
        Some(available) if available < needed => Err(Error::Truncated { needed, available }),
        _ => Ok(()),
    }
}

/// Bytes of the program header table; `e_phnum < 0xffff` keeps this below 4 MiB.
fn phdr_table_len(e_phnum: u16) -> u64 {
    u64::from(e_phnum) * PHDR_SIZE as u64
}

fn validate_ehdr(raw: &[u8]) -> Result<Elf64_Ehdr, Error> {
    let ehdr = Elf64_Ehdr::read_from_bytes(raw).map_err(|_| Error::Truncated {
        needed: EHDR_SIZE as u64,
        available: raw.len() as u64,
    })?;
    let id = &ehdr.e_ident;
    if id[..4] != ELFMAG {
        return Err(Error::BadMagic {
            found: [id[0], id[1], id[2], id[3]],
        });
    }
    if id[EI_CLASS] != ELFCLASS64 {
        return Err(Error::BadClass(id[EI_CLASS]));
    }
    if id[EI_DATA] != ELFDATA2LSB {
        return Err(Error::BadDataEncoding(id[EI_DATA]));
    }
    if id[EI_VERSION] != EV_CURRENT {
        return Err(Error::BadIdentVersion(id[EI_VERSION]));
    }
    if ehdr.e_version != u32::from(EV_CURRENT) {
        return Err(Error::BadVersion(ehdr.e_version));
    }
    if ehdr.e_type != ET_CORE {
        return Err(Error::BadType(ehdr.e_type));
    }
    if ehdr.e_machine != EM_X86_64 {
        return Err(Error::BadMachine(ehdr.e_machine));
    }
    if usize::from(ehdr.e_ehsize) != EHDR_SIZE {
        return Err(Error::BadEhsize(ehdr.e_ehsize));
    }
    if usize::from(ehdr.e_phentsize) != PHDR_SIZE {
        return Err(Error::BadPhentsize(ehdr.e_phentsize));
    }
    if ehdr.e_phnum == 0 {
        return Err(Error::NoProgramHeaders);
    }
    if ehdr.e_phnum == PN_XNUM {
        return Err(Error::ExtendedNumbering);
    }
    if ehdr.e_phoff != EHDR_SIZE as u64 {
        return Err(Error::BadPhoff(ehdr.e_phoff));
    }
    Ok(ehdr)
}

fn parse_phdrs(table: &[u8], e_phnum: u16) -> Result<Vec<Elf64_Phdr>, Error> {
    let mut phdrs = Vec::new();
    phdrs
        .try_reserve_exact(usize::from(e_phnum))
        .map_err(|_| Error::OutOfMemory {
            bytes: phdr_table_len(e_phnum),
        })?;
    for raw in table.chunks_exact(PHDR_SIZE) {
        let phdr = Elf64_Phdr::read_from_bytes(raw).map_err(|_| Error::Truncated {
            needed: phdr_table_len(e_phnum),
            available: table.len() as u64,
        })?;
        phdrs.push(phdr);
    }
    Ok(phdrs)
}

/// Splits `phdrs` into those `filter` admits (every type but PT_LOAD and PT_NOTE is kept as is)
/// and those it refuses.
fn set_aside(
    phdrs: Vec<Elf64_Phdr>,
    filter: &dyn PhysFilter,
) -> Result<(Vec<Elf64_Phdr>, Vec<DroppedPhdr>), Error> {
    let oom = |n: usize| Error::OutOfMemory {
        bytes: (n * PHDR_SIZE) as u64,
    };
    let mut kept = Vec::new();
    kept.try_reserve_exact(phdrs.len())
        .map_err(|_| oom(phdrs.len()))?;
    let mut dropped = Vec::new();
    for (index, phdr) in phdrs.into_iter().enumerate() {
        if (phdr.p_type == PT_LOAD || phdr.p_type == PT_NOTE)
            && let Err(reason) = filter.check(phdr.p_offset, phdr.p_memsz)
        {
            dropped.try_reserve(1).map_err(|_| oom(1))?;
            dropped.push(DroppedPhdr {
                index,
                phdr,
                reason,
            });
            continue;
        }
        kept.push(phdr);
    }
    Ok((kept, dropped))
}

fn validate_phdrs(phdrs: &[Elf64_Phdr]) -> Result<(), Error> {
    let mut ram: Vec<(u64, u64, usize)> = Vec::new();
    ram.try_reserve_exact(phdrs.len())
        .map_err(|_| Error::OutOfMemory {
            bytes: (phdrs.len() * size_of::<(u64, u64, usize)>()) as u64,
        })?;
    for (index, p) in phdrs.iter().enumerate() {
        if p.p_type != PT_LOAD && p.p_type != PT_NOTE {
            continue;
        }
        let end = p
            .p_offset
            .checked_add(p.p_memsz)
            .filter(|&end| end <= MAX_PHYS_ADDR)
            .ok_or(Error::RangeBeyondMaxPhys {
                index,
                p_offset: p.p_offset,
                p_memsz: p.p_memsz,
            })?;
        if p.p_type == PT_LOAD {
            if p.p_filesz > p.p_memsz {
                return Err(Error::FileszExceedsMemsz {
                    index,
                    p_filesz: p.p_filesz,
                    p_memsz: p.p_memsz,
                });
            }
            if !is_kernel_text(p) && p.p_memsz != 0 {
                ram.push((p.p_offset, end, index));
            }
        }
    }
    ram.sort_unstable();
    for pair in ram.windows(2) {
        let (_, end_a, a) = pair[0];
        let (start_b, _, b) = pair[1];
        if start_b < end_a {
            return Err(Error::OverlappingLoads {
                first: a.min(b),
                second: a.max(b),
            });
        }
    }
    Ok(())
}
