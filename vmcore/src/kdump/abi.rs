//! makedumpfile's kdump-compressed format on disk: `diskdump_mod.h` (makedumpfile 1.7.x, the
//! same structures crash's `diskdump.c` reads), x86_64 sizes and alignment (`long` and `off_t`
//! are 8 bytes, `struct timeval` two 8-byte fields).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `KDUMP_SIGNATURE`: `disk_dump_header.signature` of a makedumpfile kdump-compressed file.
pub const KDUMP_SIGNATURE: [u8; 8] = *b"KDUMP   ";
/// `disk_dump_header.header_version` makedumpfile writes (`write_kdump_header`): 6 carries the
/// 64-bit `max_mapnr_64`.
pub const KDUMP_HEADER_VERSION: i32 = 6;
/// `DISKDUMP_HEADER_BLOCKS`: blocks taken by `disk_dump_header`; the sub-header follows.
pub const DISKDUMP_HEADER_BLOCKS: u64 = 1;

/// `DUMP_DH_COMPRESSED_ZLIB`: page (and header `status`) compressed with zlib.
pub const DUMP_DH_COMPRESSED_ZLIB: u32 = 0x1;
/// `DUMP_DH_COMPRESSED_LZO`: LZO1X.
pub const DUMP_DH_COMPRESSED_LZO: u32 = 0x2;
/// `DUMP_DH_COMPRESSED_SNAPPY`.
pub const DUMP_DH_COMPRESSED_SNAPPY: u32 = 0x4;
/// `DUMP_DH_COMPRESSED_INCOMPLETE`: header `status` bit of a dump cut short; crash then reads a
/// descriptor with offset 0 as a page that was never written.
pub const DUMP_DH_COMPRESSED_INCOMPLETE: u32 = 0x8;
/// `DUMP_DH_COMPRESSED_ZSTD`.
pub const DUMP_DH_COMPRESSED_ZSTD: u32 = 0x20;

/// `struct new_utsname`: six 65-byte NUL-terminated strings.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct new_utsname {
    /// `sysname` ("Linux").
    pub sysname: [u8; 65],
    /// `nodename`.
    pub nodename: [u8; 65],
    /// `release` (VMCOREINFO `OSRELEASE`).
    pub release: [u8; 65],
    /// `version`.
    pub version: [u8; 65],
    /// `machine` ("x86_64": crash picks the architecture from it).
    pub machine: [u8; 65],
    /// `domainname`.
    pub domainname: [u8; 65],
}
const _: () = assert!(size_of::<new_utsname>() == 390);

/// `struct timeval` on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct timeval {
    /// Seconds.
    pub tv_sec: i64,
    /// Microseconds.
    pub tv_usec: i64,
}

/// `struct disk_dump_header`, block 0 of the file.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct disk_dump_header {
    /// 0x000 `KDUMP   `.
    pub signature: [u8; 8],
    /// 0x008 [`KDUMP_HEADER_VERSION`].
    pub header_version: i32,
    /// 0x00C copy of the crashed kernel's utsname.
    pub utsname: new_utsname,
    /// 0x192 the C compiler's padding before the 8-aligned `timestamp`.
    pub _pad: [u8; 6],
    /// 0x198 time of the dump (makedumpfile: of the crash).
    pub timestamp: timeval,
    /// 0x1A8 `DUMP_DH_*` bits: the codec, incomplete.
    pub status: u32,
    /// 0x1AC page size; every "block" of this file is this many bytes.
    pub block_size: i32,
    /// 0x1B0 blocks of the sub-header area (sub-header + notes).
    pub sub_hdr_size: i32,
    /// 0x1B4 blocks of both bitmaps together.
    pub bitmap_blocks: u32,
    /// 0x1B8 `max_mapnr` truncated to 32 bits (the full value is `max_mapnr_64`).
    pub max_mapnr: u32,
    /// 0x1BC unused by makedumpfile (0).
    pub total_ram_blocks: u32,
    /// 0x1C0 unused (0).
    pub device_blocks: u32,
    /// 0x1C4 unused (0).
    pub written_blocks: u32,
    /// 0x1C8 unused (0).
    pub current_cpu: u32,
    /// 0x1CC CPUs (`NT_PRSTATUS` notes); crash warns when not positive.
    pub nr_cpus: i32,
}
const _: () = assert!(size_of::<disk_dump_header>() == 464);
const _: () = assert!(core::mem::offset_of!(disk_dump_header, timestamp) == 0x198);
const _: () = assert!(core::mem::offset_of!(disk_dump_header, block_size) == 0x1AC);
const _: () = assert!(core::mem::offset_of!(disk_dump_header, nr_cpus) == 0x1CC);

/// `struct kdump_sub_header`, at block 1; the notes follow it directly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct kdump_sub_header {
    /// 0x00 the crashed kernel's `phys_base`.
    pub phys_base: u64,
    /// 0x08 `rkdump.level=` (makedumpfile's `-d`), version 1.
    pub dump_level: i32,
    /// 0x0C 1 in a split dump (never here), version 2.
    pub split: i32,
    /// 0x10 split range, 32-bit (0), version 2.
    pub start_pfn: u64,
    /// 0x18 split range, 32-bit (0), version 2.
    pub end_pfn: u64,
    /// 0x20 file offset of the VMCOREINFO note's descriptor, version 3.
    pub offset_vmcoreinfo: i64,
    /// 0x28 its size.
    pub size_vmcoreinfo: u64,
    /// 0x30 file offset of the merged ELF notes, version 4.
    pub offset_note: i64,
    /// 0x38 their size.
    pub size_note: u64,
    /// 0x40 erase information (none), version 5.
    pub offset_eraseinfo: i64,
    /// 0x48 its size (0).
    pub size_eraseinfo: u64,
    /// 0x50 split range (0), version 6.
    pub start_pfn_64: u64,
    /// 0x58 split range (0), version 6.
    pub end_pfn_64: u64,
    /// 0x60 frames the bitmaps describe: one past the highest PT_LOAD frame.
    pub max_mapnr_64: u64,
}
const _: () = assert!(size_of::<kdump_sub_header>() == 104);
const _: () = assert!(core::mem::offset_of!(kdump_sub_header, offset_note) == 0x30);
const _: () = assert!(core::mem::offset_of!(kdump_sub_header, max_mapnr_64) == 0x60);

/// `page_desc_t`: one per dumped page, in frame order, right after the bitmaps.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct page_desc {
    /// 0x00 file offset of the page's data.
    pub offset: i64,
    /// 0x08 bytes of data (the block size when stored raw).
    pub size: u32,
    /// 0x0C `DUMP_DH_COMPRESSED_*` of the codec, 0 when stored raw.
    pub flags: u32,
    /// 0x10 page flags (makedumpfile writes 0).
    pub page_flags: u64,
}
const _: () = assert!(size_of::<page_desc>() == 24);
