//! ELF64 ABI structures used by kdump (include/uapi/linux/elf.h): file header, program header, note header.
//!
//! C field names and layout; integers only (docs/architecture.md#coding-rules). Native byte order equals the ELF's
//! `ELFDATA2LSB` on x86_64 (the crate refuses to build big-endian).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `e_ident[EI_MAG0..=EI_MAG3]`.
pub const ELFMAG: [u8; 4] = *b"\x7fELF";
/// Index of the class byte in `e_ident`.
pub const EI_CLASS: usize = 4;
/// Index of the data-encoding byte in `e_ident`.
pub const EI_DATA: usize = 5;
/// Index of the ident version byte in `e_ident`.
pub const EI_VERSION: usize = 6;
/// 64-bit objects.
pub const ELFCLASS64: u8 = 2;
/// Little-endian objects.
pub const ELFDATA2LSB: u8 = 1;
/// Current ELF version (ident byte and `e_version`).
pub const EV_CURRENT: u8 = 1;
/// Core file.
pub const ET_CORE: u16 = 4;
/// AMD x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_phnum` value meaning "real count in section header 0" (extended numbering).
pub const PN_XNUM: u16 = 0xffff;
/// Loadable segment: a physical memory range in kdump headers.
pub const PT_LOAD: u32 = 1;
/// Note segment.
pub const PT_NOTE: u32 = 4;
/// Note type of a `struct elf_prstatus` ("CORE" notes).
pub const NT_PRSTATUS: u32 = 1;
/// Note type of the VMCOREINFO note (name "VMCOREINFO").
pub const NT_VMCOREINFO: u32 = 0;

/// `Elf64_Ehdr`: the ELF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Elf64_Ehdr {
    /// 0x00: magic, class, data, version, OS ABI, padding.
    pub e_ident: [u8; 16],
    /// 0x10: object type (`ET_CORE`).
    pub e_type: u16,
    /// 0x12: machine (`EM_X86_64`).
    pub e_machine: u16,
    /// 0x14: object version (`EV_CURRENT`).
    pub e_version: u32,
    /// 0x18: entry point (0 for cores).
    pub e_entry: u64,
    /// 0x20: program header table offset.
    pub e_phoff: u64,
    /// 0x28: section header table offset.
    pub e_shoff: u64,
    /// 0x30: processor flags.
    pub e_flags: u32,
    /// 0x34: size of this header (64).
    pub e_ehsize: u16,
    /// 0x36: size of one program header (56).
    pub e_phentsize: u16,
    /// 0x38: number of program headers.
    pub e_phnum: u16,
    /// 0x3a: size of one section header.
    pub e_shentsize: u16,
    /// 0x3c: number of section headers.
    pub e_shnum: u16,
    /// 0x3e: section name string table index.
    pub e_shstrndx: u16,
}

/// `Elf64_Phdr`: one program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Elf64_Phdr {
    /// 0x00: segment type (`PT_LOAD`, `PT_NOTE`, ...).
    pub p_type: u32,
    /// 0x04: segment flags.
    pub p_flags: u32,
    /// 0x08: in an elfcorehdr the *physical address* of the data; in a vmcore file the file offset.
    pub p_offset: u64,
    /// 0x10: virtual address.
    pub p_vaddr: u64,
    /// 0x18: physical address (may differ from `p_offset`, e.g. the kexec-tools backup region).
    pub p_paddr: u64,
    /// 0x20: bytes in the file.
    pub p_filesz: u64,
    /// 0x28: bytes in memory (for PT_NOTE in an elfcorehdr: the buffer size).
    pub p_memsz: u64,
    /// 0x30: alignment.
    pub p_align: u64,
}

/// `Elf64_Nhdr`: note header, followed by the name and the descriptor, each padded to 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Elf64_Nhdr {
    /// 0x0: name length including the NUL.
    pub n_namesz: u32,
    /// 0x4: descriptor length.
    pub n_descsz: u32,
    /// 0x8: note type.
    pub n_type: u32,
}

/// Size of [`Elf64_Ehdr`].
pub const EHDR_SIZE: usize = 64;
/// Size of [`Elf64_Phdr`].
pub const PHDR_SIZE: usize = 56;
/// Size of [`Elf64_Nhdr`].
pub const NHDR_SIZE: usize = 12;

const _: () = assert!(size_of::<Elf64_Ehdr>() == EHDR_SIZE);
const _: () = assert!(core::mem::offset_of!(Elf64_Ehdr, e_phoff) == 0x20);
const _: () = assert!(core::mem::offset_of!(Elf64_Ehdr, e_phnum) == 0x38);
const _: () = assert!(size_of::<Elf64_Phdr>() == PHDR_SIZE);
const _: () = assert!(core::mem::offset_of!(Elf64_Phdr, p_offset) == 0x08);
const _: () = assert!(core::mem::offset_of!(Elf64_Phdr, p_align) == 0x30);
const _: () = assert!(size_of::<Elf64_Nhdr>() == NHDR_SIZE);
