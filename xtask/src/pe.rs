//! The PE/COFF view of the bzImage (Microsoft "PE Format" specification: MS-DOS stub, "PE\0\0"
//! signature, COFF file header, PE32+ optional header, section table), so `sbsign` can sign it
//! and `sbverify` and Linux's `verify_pefile_signature` (kexec_file_load under lockdown) can
//! check it, as with Linux's EFI-stub kernels (arch/x86/boot/header.S keeps the same facts:
//! `MZ` at 0, PE header offset at 0x3C, every PE header below the setup header at 0x1F1).
//!
//! Layout (RVA = file offset; section and file alignment 512):
//! ```text
//! 0x000 IMAGE_DOS_HEADER      e_magic "MZ", e_lfanew = 0x40
//! 0x040 "PE\0\0"
//! 0x044 IMAGE_FILE_HEADER     AMD64, 2 sections
//! 0x058 IMAGE_OPTIONAL_HEADER64 with 6 data directories (index 4: certificate table, for sbsign)
//! 0x0F8 IMAGE_SECTION_HEADER  ".setup": 0x200..0x400 (setup header tail, EFI entry stub)
//! 0x120 IMAGE_SECTION_HEADER  ".text":  0x400.. the payload; virtual size init_size
//! 0x1F1 setup header (unchanged)
//! ```
//! rkdump is not an EFI application: its PE entry point is a stub returning `EFI_UNSUPPORTED`.
//! A signature appended by `sbsign` lies past the payload, inside `init_size`, where both kexec
//! loaders load it as part of the kernel segment and nothing reads it.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `e_lfanew`: the PE signature right after the 64-byte DOS header.
pub const PE_OFFSET: usize = 0x40;
/// `IMAGE_FILE_MACHINE_AMD64`.
pub const MACHINE_AMD64: u16 = 0x8664;
/// PE32+ optional header magic.
pub const PE32PLUS_MAGIC: u16 = 0x20B;
/// `IMAGE_SUBSYSTEM_EFI_APPLICATION`.
pub const SUBSYSTEM_EFI_APPLICATION: u16 = 10;
/// Data directories written; index 4 is the certificate table `sbsign` fills.
pub const NUM_DATA_DIRS: usize = 6;
/// Index of the certificate table (`IMAGE_DIRECTORY_ENTRY_SECURITY`).
pub const CERT_TABLE: usize = 4;
/// Section and file alignment (one sector: RVA = file offset).
pub const ALIGN: u32 = 0x200;
/// File offset and RVA of the EFI entry stub, in the `.setup` section.
pub const ENTRY_AT: usize = 0x3F0;
/// `mov rax, 0x8000000000000003 (EFI_UNSUPPORTED); ret`.
pub const ENTRY_STUB: [u8; 11] = [0x48, 0xB8, 3, 0, 0, 0, 0, 0, 0, 0x80, 0xC3];

/// `IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LINE_NUMS_STRIPPED | IMAGE_FILE_LARGE_ADDRESS_AWARE
/// | IMAGE_FILE_DEBUG_STRIPPED`.
const FILE_CHARACTERISTICS: u16 = 0x0002 | 0x0004 | 0x0020 | 0x0200;
/// `IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_READ`.
const SCN_CODE_RX: u32 = 0x20 | 0x2000_0000 | 0x4000_0000;
/// ... `| IMAGE_SCN_MEM_WRITE` (the payload holds its data and bss too).
const SCN_CODE_RWX: u32 = SCN_CODE_RX | 0x8000_0000;

/// `IMAGE_DOS_HEADER` (winnt.h).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IMAGE_DOS_HEADER {
    /// 0x00: "MZ".
    pub e_magic: U16,
    /// 0x02..0x1C: real-mode loader fields, unused.
    pub e_unused: [U16; 13],
    /// 0x1C: overlay number and reserved words, unused.
    pub e_res: [U16; 16],
    /// 0x3C: file offset of the PE signature.
    pub e_lfanew: U32,
}
const _: () = assert!(size_of::<IMAGE_DOS_HEADER>() == 0x40);

/// `IMAGE_FILE_HEADER` (the COFF header).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
#[expect(non_snake_case, reason = "C field names")]
pub struct IMAGE_FILE_HEADER {
    /// 0x00.
    pub Machine: U16,
    /// 0x02.
    pub NumberOfSections: U16,
    /// 0x04: 0 (reproducible builds).
    pub TimeDateStamp: U32,
    /// 0x08.
    pub PointerToSymbolTable: U32,
    /// 0x0C.
    pub NumberOfSymbols: U32,
    /// 0x10.
    pub SizeOfOptionalHeader: U16,
    /// 0x12.
    pub Characteristics: U16,
}
const _: () = assert!(size_of::<IMAGE_FILE_HEADER>() == 20);

/// `IMAGE_DATA_DIRECTORY`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
#[expect(non_snake_case, reason = "C field names")]
pub struct IMAGE_DATA_DIRECTORY {
    /// RVA (for the certificate table: a file offset).
    pub VirtualAddress: U32,
    /// Bytes.
    pub Size: U32,
}

/// `IMAGE_OPTIONAL_HEADER64` with [`NUM_DATA_DIRS`] data directories.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
#[expect(non_snake_case, reason = "C field names")]
pub struct IMAGE_OPTIONAL_HEADER64 {
    /// 0x00: [`PE32PLUS_MAGIC`].
    pub Magic: U16,
    /// 0x02.
    pub MajorLinkerVersion: u8,
    /// 0x03.
    pub MinorLinkerVersion: u8,
    /// 0x04.
    pub SizeOfCode: U32,
    /// 0x08.
    pub SizeOfInitializedData: U32,
    /// 0x0C.
    pub SizeOfUninitializedData: U32,
    /// 0x10.
    pub AddressOfEntryPoint: U32,
    /// 0x14.
    pub BaseOfCode: U32,
    /// 0x18.
    pub ImageBase: U64,
    /// 0x20.
    pub SectionAlignment: U32,
    /// 0x24.
    pub FileAlignment: U32,
    /// 0x28.
    pub MajorOperatingSystemVersion: U16,
    /// 0x2A.
    pub MinorOperatingSystemVersion: U16,
    /// 0x2C.
    pub MajorImageVersion: U16,
    /// 0x2E.
    pub MinorImageVersion: U16,
    /// 0x30.
    pub MajorSubsystemVersion: U16,
    /// 0x32.
    pub MinorSubsystemVersion: U16,
    /// 0x34.
    pub Win32VersionValue: U32,
    /// 0x38.
    pub SizeOfImage: U32,
    /// 0x3C.
    pub SizeOfHeaders: U32,
    /// 0x40: 0; not part of the Authenticode hash.
    pub CheckSum: U32,
    /// 0x44.
    pub Subsystem: U16,
    /// 0x46.
    pub DllCharacteristics: U16,
    /// 0x48.
    pub SizeOfStackReserve: U64,
    /// 0x50.
    pub SizeOfStackCommit: U64,
    /// 0x58.
    pub SizeOfHeapReserve: U64,
    /// 0x60.
    pub SizeOfHeapCommit: U64,
    /// 0x68.
    pub LoaderFlags: U32,
    /// 0x6C.
    pub NumberOfRvaAndSizes: U32,
    /// 0x70.
    pub DataDirectory: [IMAGE_DATA_DIRECTORY; NUM_DATA_DIRS],
}
const _: () = assert!(size_of::<IMAGE_OPTIONAL_HEADER64>() == 0x70 + 8 * NUM_DATA_DIRS);

/// `IMAGE_SECTION_HEADER`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
#[expect(non_snake_case, reason = "C field names")]
pub struct IMAGE_SECTION_HEADER {
    /// 0x00.
    pub Name: [u8; 8],
    /// 0x08.
    pub VirtualSize: U32,
    /// 0x0C.
    pub VirtualAddress: U32,
    /// 0x10.
    pub SizeOfRawData: U32,
    /// 0x14.
    pub PointerToRawData: U32,
    /// 0x18.
    pub PointerToRelocations: U32,
    /// 0x1C.
    pub PointerToLinenumbers: U32,
    /// 0x20.
    pub NumberOfRelocations: U16,
    /// 0x22.
    pub NumberOfLinenumbers: U16,
    /// 0x24.
    pub Characteristics: U32,
}
const _: () = assert!(size_of::<IMAGE_SECTION_HEADER>() == 40);

const FILE_HEADER_AT: usize = PE_OFFSET + 4;
const OPT_HEADER_AT: usize = FILE_HEADER_AT + size_of::<IMAGE_FILE_HEADER>();
const SECTIONS_AT: usize = OPT_HEADER_AT + size_of::<IMAGE_OPTIONAL_HEADER64>();
const SECTIONS_END: usize = SECTIONS_AT + 2 * size_of::<IMAGE_SECTION_HEADER>();
// Every PE header stays below the Linux setup header.
const _: () = assert!(SECTIONS_END <= rkdump_boot::bootparam::SETUP_HEADER_OFFSET);

fn section(
    name: &[u8],
    rva: u32,
    vsize: u32,
    raw: u32,
    characteristics: u32,
) -> IMAGE_SECTION_HEADER {
    let mut n = [0u8; 8];
    n[..name.len()].copy_from_slice(name);
    IMAGE_SECTION_HEADER {
        Name: n,
        VirtualSize: vsize.into(),
        VirtualAddress: rva.into(),
        SizeOfRawData: raw.into(),
        PointerToRawData: rva.into(),
        Characteristics: characteristics.into(),
        ..Default::default()
    }
}

/// Writes the PE/COFF headers and the entry stub into the setup area `setup` (`setup_len`
/// bytes: boot sector + setup sectors) for a payload of `payload_len` bytes (a multiple of
/// [`ALIGN`]) needing `init_size` bytes of memory. Touches only 0..[`SECTIONS_END`] and the stub.
pub fn write_headers(setup: &mut [u8], payload_len: u32, init_size: u32) -> Result<(), String> {
    let setup_len = u32::try_from(setup.len()).map_err(|_| "setup too large")?;
    if setup_len != 2 * ALIGN || !payload_len.is_multiple_of(ALIGN) {
        return Err(format!(
            "PE layout needs a 1 KiB setup area and a payload in {ALIGN}-byte units \
             (setup {setup_len}, payload {payload_len})"
        ));
    }
    let dos = IMAGE_DOS_HEADER {
        e_magic: u16::from_le_bytes(*b"MZ").into(),
        e_lfanew: (PE_OFFSET as u32).into(),
        ..Default::default()
    };
    let file = IMAGE_FILE_HEADER {
        Machine: MACHINE_AMD64.into(),
        NumberOfSections: 2.into(),
        SizeOfOptionalHeader: (size_of::<IMAGE_OPTIONAL_HEADER64>() as u16).into(),
        Characteristics: FILE_CHARACTERISTICS.into(),
        ..Default::default()
    };
    let image_end = setup_len
        .checked_add(init_size.max(payload_len))
        .ok_or("image above 4 GiB")?;
    let opt = IMAGE_OPTIONAL_HEADER64 {
        Magic: PE32PLUS_MAGIC.into(),
        SizeOfCode: (ALIGN + payload_len).into(),
        SizeOfUninitializedData: init_size.saturating_sub(payload_len).into(),
        AddressOfEntryPoint: (ENTRY_AT as u32).into(),
        BaseOfCode: ALIGN.into(),
        SectionAlignment: ALIGN.into(),
        FileAlignment: ALIGN.into(),
        SizeOfImage: image_end.next_multiple_of(ALIGN).into(),
        SizeOfHeaders: ALIGN.into(),
        Subsystem: SUBSYSTEM_EFI_APPLICATION.into(),
        NumberOfRvaAndSizes: (NUM_DATA_DIRS as u32).into(),
        ..Default::default()
    };
    let secs = [
        section(b".setup", ALIGN, ALIGN, ALIGN, SCN_CODE_RX),
        section(
            b".text",
            setup_len,
            init_size.max(payload_len),
            payload_len,
            SCN_CODE_RWX,
        ),
    ];
    setup[..0x40].copy_from_slice(dos.as_bytes());
    setup[PE_OFFSET..PE_OFFSET + 4].copy_from_slice(b"PE\0\0");
    setup[FILE_HEADER_AT..OPT_HEADER_AT].copy_from_slice(file.as_bytes());
    setup[OPT_HEADER_AT..SECTIONS_AT].copy_from_slice(opt.as_bytes());
    setup[SECTIONS_AT..SECTIONS_END].copy_from_slice(secs.as_bytes());
    setup[ENTRY_AT..ENTRY_AT + ENTRY_STUB.len()].copy_from_slice(&ENTRY_STUB);
    Ok(())
}

/// What [`check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeSummary {
    /// The certificate table (file offset, bytes); (0, 0) when unsigned.
    pub cert_table: (u32, u32),
}

/// Reads the PE view back and checks it the way the signing tools and Linux's
/// `pefile_parse_binary` need it: magics, PE32+, AMD64, headers below the setup header, two
/// contiguous sections covering the file up to the payload's end, the entry stub, and a
/// certificate table (if any) after the sections and within the file.
pub fn check(image: &[u8], payload_len: usize) -> Result<PeSummary, String> {
    let get = |at: usize, len: usize| {
        image
            .get(at..at + len)
            .ok_or("image too short for PE headers")
    };
    let dos = IMAGE_DOS_HEADER::read_from_bytes(get(0, 0x40)?).map_err(|_| "DOS header")?;
    if dos.e_magic.get() != u16::from_le_bytes(*b"MZ") || dos.e_lfanew.get() as usize != PE_OFFSET {
        return Err("no MZ header pointing at 0x40".into());
    }
    if get(PE_OFFSET, 4)? != b"PE\0\0" {
        return Err("no PE signature".into());
    }
    let file =
        IMAGE_FILE_HEADER::read_from_bytes(get(FILE_HEADER_AT, 20)?).map_err(|_| "COFF header")?;
    if file.Machine.get() != MACHINE_AMD64 || file.NumberOfSections.get() != 2 {
        return Err("COFF header: not AMD64 with 2 sections".into());
    }
    let opt =
        IMAGE_OPTIONAL_HEADER64::read_from_bytes(get(OPT_HEADER_AT, SECTIONS_AT - OPT_HEADER_AT)?)
            .map_err(|_| "optional header")?;
    if opt.Magic.get() != PE32PLUS_MAGIC
        || opt.NumberOfRvaAndSizes.get() as usize != NUM_DATA_DIRS
        || opt.SizeOfHeaders.get() != ALIGN
    {
        return Err(
            "optional header: not PE32+ with 6 directories and 512 bytes of headers".into(),
        );
    }
    let secs =
        <[IMAGE_SECTION_HEADER; 2]>::read_from_bytes(get(SECTIONS_AT, SECTIONS_END - SECTIONS_AT)?)
            .map_err(|_| "section table")?;
    let end_of_payload = 2 * ALIGN as usize + payload_len;
    let covered = secs.iter().try_fold(ALIGN as usize, |at, s| {
        (s.PointerToRawData.get() as usize == at && s.VirtualAddress.get() as usize == at)
            .then(|| at + s.SizeOfRawData.get() as usize)
    });
    if covered != Some(end_of_payload) {
        return Err("sections do not cover the setup sector and the payload contiguously".into());
    }
    let entry = opt.AddressOfEntryPoint.get() as usize;
    if get(entry, ENTRY_STUB.len())? != ENTRY_STUB {
        return Err("PE entry point is not the EFI_UNSUPPORTED stub".into());
    }
    let cert = opt.DataDirectory[CERT_TABLE];
    let (at, len) = (cert.VirtualAddress.get(), cert.Size.get());
    if len != 0 && ((at as usize) < end_of_payload || at as usize + len as usize > image.len()) {
        return Err(format!(
            "certificate table {at:#x}+{len:#x} not between the payload end and the file end"
        ));
    }
    Ok(PeSummary {
        cert_table: (at, len),
    })
}
