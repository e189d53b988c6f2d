//! Partition tables as untrusted input: GPT (UEFI 2.10 §5.3: header and entry-array CRC-32s,
//! primary at LBA 1 and backup at the last LBA, protective MBR) and MBR primary partitions.
//! The result only says where partitions are; whether rkdump may write one is decided by the
//! rkdump label inside it ([`crate::disk`]), so a table that is damaged or contradicts itself
//! is refused whole rather than guessed at.
//!
//! All LBAs are in the disk's logical blocks (`block_size` bytes), as GPT and MBR count them.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::label::CRC32;

/// Most bytes of GPT entry array read (UEFI's minimum is 16 KiB; 128 entries of 128 bytes is
/// what every partitioning tool writes). Larger arrays are refused, bounding the reads.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// Most partitions reported (the first this many in use, in table order).
pub const MAX_PARTITIONS: usize = 256;

/// GPT header signature.
pub const GPT_SIGNATURE: [u8; 8] = *b"EFI PART";

/// MBR partition type of GPT's protective MBR.
pub const MBR_TYPE_PROTECTIVE: u8 = 0xEE;

/// GPT header (UEFI 2.10 table 5.5), at the start of LBA 1 (primary) or the last LBA (backup).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct GptHeaderRaw {
    /// "EFI PART".
    pub signature: [u8; 8],
    /// 0x00010000.
    pub revision: U32,
    /// Bytes covered by `header_crc32` (92 up to the block size).
    pub header_size: U32,
    /// CRC-32 of `header_size` bytes with this field zero.
    pub header_crc32: U32,
    /// Zero.
    pub reserved: U32,
    /// LBA of this header.
    pub my_lba: U64,
    /// LBA of the other header.
    pub alternate_lba: U64,
    /// First LBA a partition may use.
    pub first_usable_lba: U64,
    /// Last LBA a partition may use.
    pub last_usable_lba: U64,
    /// Disk GUID.
    pub disk_guid: [u8; 16],
    /// First LBA of the entry array.
    pub partition_entry_lba: U64,
    /// Entries in the array.
    pub number_of_partition_entries: U32,
    /// Bytes per entry (128 × 2^n).
    pub size_of_partition_entry: U32,
    /// CRC-32 of the whole entry array.
    pub partition_entry_array_crc32: U32,
}
/// Bytes of [`GptHeaderRaw`].
pub const GPT_HEADER_SIZE: usize = 92;
const _: () = assert!(size_of::<GptHeaderRaw>() == GPT_HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(GptHeaderRaw, partition_entry_lba) == 72);

/// GPT partition entry (UEFI 2.10 table 5.6), the first 128 bytes of each array element.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct GptEntryRaw {
    /// All zero: entry unused.
    pub partition_type_guid: [u8; 16],
    /// This partition's GUID.
    pub unique_partition_guid: [u8; 16],
    /// First LBA.
    pub starting_lba: U64,
    /// Last LBA (inclusive).
    pub ending_lba: U64,
    /// Attribute bits.
    pub attributes: U64,
    /// UTF-16LE name.
    pub partition_name: [u8; 72],
}
/// Bytes of [`GptEntryRaw`].
pub const GPT_ENTRY_SIZE: usize = 128;
const _: () = assert!(size_of::<GptEntryRaw>() == GPT_ENTRY_SIZE);

/// One MBR partition record (16 bytes from offset 446 of LBA 0).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct MbrEntryRaw {
    /// 0x80 bootable, else 0.
    pub boot_indicator: u8,
    /// CHS of the first sector (ignored).
    pub starting_chs: [u8; 3],
    /// Partition type; 0 unused.
    pub os_type: u8,
    /// CHS of the last sector (ignored).
    pub ending_chs: [u8; 3],
    /// First LBA.
    pub starting_lba: U32,
    /// Blocks.
    pub size_in_lba: U32,
}
const _: () = assert!(size_of::<MbrEntryRaw>() == 16);
/// Offset of the first MBR partition record.
pub const MBR_ENTRIES_OFFSET: usize = 446;

/// Which table a partition came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// GUID partition table.
    Gpt,
    /// MBR primary partition.
    Mbr,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Gpt => "GPT",
            Scheme::Mbr => "MBR",
        })
    }
}

/// A partition: `blocks` logical blocks from `first_lba`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as Linux numbers it (`sda2`, `nvme0n1p2`): GPT entry index + 1, MBR slot + 1.
    pub number: u32,
    /// First logical block.
    pub first_lba: u64,
    /// Length in logical blocks.
    pub blocks: u64,
}

impl Partition {
    /// First block after the partition.
    pub fn end_lba(&self) -> u64 {
        self.first_lba + self.blocks
    }
}

/// Which GPT header the partitions were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GptSource {
    /// Primary valid (the backup may or may not be).
    Primary {
        /// The backup header and its array were also valid.
        backup_ok: bool,
    },
    /// The primary was damaged ([`GptError`] says how); the backup was used.
    Backup(GptError),
}

/// A parsed partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// GPT or MBR.
    pub scheme: Scheme,
    /// For GPT, which header was used.
    pub gpt_source: Option<GptSource>,
    /// Partitions in use, in table order.
    pub partitions: Vec<Partition>,
}

/// What is wrong with a GPT header or entry array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GptError {
    /// The disk could not be read at this LBA.
    Read(u64),
    /// No "EFI PART" signature.
    NoSignature,
    /// `header_size` outside 92..=block size.
    HeaderSize(u32),
    /// Header CRC-32 mismatch.
    HeaderCrc {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// `my_lba` is not where the header was read.
    MyLba(u64),
    /// Usable range or entry array outside the disk, or overlapping the headers.
    Geometry(&'static str),
    /// Entry size not 128 × 2^n, or array larger than [`MAX_ENTRY_ARRAY_BYTES`].
    EntryArray(&'static str),
    /// Entry-array CRC-32 mismatch.
    ArrayCrc {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// Entry `index` (0-based) ends before it starts or lies outside the usable range.
    BadEntry(u32),
    /// Entries `a` and `b` overlap.
    Overlap(u32, u32),
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GptError::Read(lba) => write!(f, "read failed at LBA {lba}"),
            GptError::NoSignature => f.write_str("no EFI PART signature"),
            GptError::HeaderSize(s) => write!(f, "header_size {s}"),
            GptError::HeaderCrc { stored, computed } => {
                write!(f, "header CRC {stored:#010x}, computed {computed:#010x}")
            }
            GptError::MyLba(l) => write!(f, "header says it is at LBA {l}"),
            GptError::Geometry(w) => write!(f, "geometry: {w}"),
            GptError::EntryArray(w) => write!(f, "entry array: {w}"),
            GptError::ArrayCrc { stored, computed } => {
                write!(
                    f,
                    "entry array CRC {stored:#010x}, computed {computed:#010x}"
                )
            }
            GptError::BadEntry(i) => write!(f, "entry {i} outside the usable range"),
            GptError::Overlap(a, b) => write!(f, "entries {a} and {b} overlap"),
        }
    }
}

/// Why a disk has no usable partition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// LBA 0 could not be read.
    Read,
    /// No MBR boot signature (0x55AA): no table at all.
    NoTable,
    /// A protective MBR, and neither GPT header is valid.
    Gpt {
        /// What is wrong with the primary.
        primary: GptError,
        /// What is wrong with the backup.
        backup: GptError,
    },
    /// MBR entry `slot` (0-based) starts at 0, is empty-sized or runs past the disk.
    MbrEntry(u8),
    /// MBR entries overlap.
    MbrOverlap(u8, u8),
    /// The block size is not 512 or 4096, or the disk is too small for a table.
    Geometry,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableError::Read => f.write_str("LBA 0 unreadable"),
            TableError::NoTable => f.write_str("no partition table"),
            TableError::Gpt { primary, backup } => {
                write!(f, "GPT primary: {primary}; backup: {backup}")
            }
            TableError::MbrEntry(s) => write!(f, "MBR entry {s} outside the disk"),
            TableError::MbrOverlap(a, b) => write!(f, "MBR entries {a} and {b} overlap"),
            TableError::Geometry => f.write_str("unsupported block size or disk too small"),
        }
    }
}

/// Reads `buf.len()` bytes (a whole number of blocks) starting at logical block `lba`; `false`
/// on any failure.
pub type ReadBlocks<'a> = dyn FnMut(u64, &mut [u8]) -> bool + 'a;

/// Reads the partition table of a disk of `blocks` logical blocks of `block_size` bytes.
/// Never panics and reads at most two headers and two entry arrays, each bounded.
pub fn read_table(
    read: &mut ReadBlocks<'_>,
    block_size: u32,
    blocks: u64,
) -> Result<Table, TableError> {
    if !matches!(block_size, 512 | 4096) || blocks < 3 {
        return Err(TableError::Geometry);
    }
    let bs = block_size as usize;
    let mut lba0 = vec![0u8; bs];
    if !read(0, &mut lba0) {
        return Err(TableError::Read);
    }
    if lba0[510..512] != [0x55, 0xAA] {
        return Err(TableError::NoTable);
    }
    let entries = mbr_entries(&lba0);
    // UEFI §5.2.3: any record of type 0xEE makes it a protective MBR (a hybrid MBR too: its GPT
    // is authoritative).
    if entries.iter().any(|e| e.os_type == MBR_TYPE_PROTECTIVE) {
        return read_gpt(read, block_size, blocks);
    }
    parse_mbr(&entries, blocks)
}

fn mbr_entries(lba0: &[u8]) -> [MbrEntryRaw; 4] {
    let mut out = [MbrEntryRaw::new_zeroed(); 4];
    for (i, e) in out.iter_mut().enumerate() {
        let at = MBR_ENTRIES_OFFSET + 16 * i;
        if let Ok(r) = MbrEntryRaw::read_from_bytes(&lba0[at..at + 16]) {
            *e = r;
        }
    }
    out
}

fn is_extended(t: u8) -> bool {
    matches!(t, 0x05 | 0x0F | 0x85)
}

fn parse_mbr(entries: &[MbrEntryRaw; 4], blocks: u64) -> Result<Table, TableError> {
    let mut parts: Vec<(u8, Partition)> = Vec::new();
    for (slot, e) in entries.iter().enumerate() {
        let slot = slot as u8;
        if e.os_type == 0 {
            continue;
        }
        let first = u64::from(e.starting_lba.get());
        let len = u64::from(e.size_in_lba.get());
        if first == 0 || len == 0 || first + len > blocks {
            return Err(TableError::MbrEntry(slot));
        }
        for (other, p) in &parts {
            if first < p.end_lba() && p.first_lba < first + len {
                return Err(TableError::MbrOverlap(*other, slot));
            }
        }
        let p = Partition {
            number: u32::from(slot) + 1,
            first_lba: first,
            blocks: len,
        };
        parts.push((slot, p));
    }
    // An extended partition is a container of logical partitions (not followed here): it is
    // checked for overlaps above but never offered as a target.
    let partitions = parts
        .into_iter()
        .filter(|(slot, _)| !is_extended(entries[usize::from(*slot)].os_type))
        .map(|(_, p)| p)
        .collect();
    Ok(Table {
        scheme: Scheme::Mbr,
        gpt_source: None,
        partitions,
    })
}

fn read_gpt(read: &mut ReadBlocks<'_>, block_size: u32, blocks: u64) -> Result<Table, TableError> {
    let last = blocks - 1;
    let primary = read_gpt_at(read, block_size, blocks, 1);
    let backup_lba = match &primary {
        // The primary names its backup; a disk that grew since (a resized image) keeps the
        // backup where the primary says, not at the new last LBA.
        Ok((h, _)) if h.alternate_lba.get() > 1 && h.alternate_lba.get() <= last => {
            h.alternate_lba.get()
        }
        _ => last,
    };
    let backup = read_gpt_at(read, block_size, blocks, backup_lba);
    let (source, parts) = match (primary, backup) {
        (Ok((_, p)), b) => (
            GptSource::Primary {
                backup_ok: b.is_ok(),
            },
            p,
        ),
        (Err(e), Ok((_, p))) => (GptSource::Backup(e), p),
        (Err(primary), Err(backup)) => return Err(TableError::Gpt { primary, backup }),
    };
    Ok(Table {
        scheme: Scheme::Gpt,
        gpt_source: Some(source),
        partitions: parts,
    })
}

/// Reads and checks the header at `lba` and its entry array.
fn read_gpt_at(
    read: &mut ReadBlocks<'_>,
    block_size: u32,
    blocks: u64,
    lba: u64,
) -> Result<(GptHeaderRaw, Vec<Partition>), GptError> {
    let bs = block_size as usize;
    let mut block = vec![0u8; bs];
    if !read(lba, &mut block) {
        return Err(GptError::Read(lba));
    }
    let h = check_gpt_header(&block, lba, blocks)?;
    let esize = h.size_of_partition_entry.get() as usize;
    let count = h.number_of_partition_entries.get() as usize;
    let array_bytes = (esize as u64) * (count as u64);
    let array_blocks = array_bytes.div_ceil(u64::from(block_size));
    let elba = h.partition_entry_lba.get();
    let (first, last) = (h.first_usable_lba.get(), h.last_usable_lba.get());
    // The array must lie on the disk and outside the usable range (it sits between the header
    // and the first usable LBA for the primary, after the last usable LBA for the backup).
    let array_end = elba
        .checked_add(array_blocks)
        .ok_or(GptError::Geometry("entry array"))?;
    if elba < 2 || array_end > blocks || (elba <= last && array_end > first) {
        return Err(GptError::Geometry(
            "entry array overlaps the usable range or the disk end",
        ));
    }
    let mut array = vec![0u8; (array_blocks as usize) * bs];
    if !read(elba, &mut array) {
        return Err(GptError::Read(elba));
    }
    let computed = CRC32.checksum(&array[..array_bytes as usize]);
    let stored = h.partition_entry_array_crc32.get();
    if computed != stored {
        return Err(GptError::ArrayCrc { stored, computed });
    }
    let mut parts: Vec<Partition> = Vec::new();
    for i in 0..count {
        let at = i * esize;
        let Ok(e) = GptEntryRaw::read_from_bytes(&array[at..at + GPT_ENTRY_SIZE]) else {
            return Err(GptError::EntryArray("entry unreadable"));
        };
        if e.partition_type_guid == [0; 16] {
            continue;
        }
        let (s, end) = (e.starting_lba.get(), e.ending_lba.get());
        if s > end || s < first || end > last {
            return Err(GptError::BadEntry(i as u32));
        }
        let p = Partition {
            number: i as u32 + 1,
            first_lba: s,
            blocks: end - s + 1,
        };
        for q in &parts {
            if p.first_lba < q.end_lba() && q.first_lba < p.end_lba() {
                return Err(GptError::Overlap(q.number - 1, i as u32));
            }
        }
        if parts.len() < MAX_PARTITIONS {
            parts.push(p);
        }
    }
    Ok((h, parts))
}

/// Checks a GPT header block read at `lba` (everything but the entry array).
pub fn check_gpt_header(block: &[u8], lba: u64, blocks: u64) -> Result<GptHeaderRaw, GptError> {
    let (h, _) = GptHeaderRaw::read_from_prefix(block).map_err(|_| GptError::NoSignature)?;
    if h.signature != GPT_SIGNATURE {
        return Err(GptError::NoSignature);
    }
    let hsize = h.header_size.get();
    if (hsize as usize) < GPT_HEADER_SIZE || hsize as usize > block.len() {
        return Err(GptError::HeaderSize(hsize));
    }
    let mut copy = block[..hsize as usize].to_vec();
    copy[16..20].fill(0);
    let computed = CRC32.checksum(&copy);
    if computed != h.header_crc32.get() {
        return Err(GptError::HeaderCrc {
            stored: h.header_crc32.get(),
            computed,
        });
    }
    if h.my_lba.get() != lba {
        return Err(GptError::MyLba(h.my_lba.get()));
    }
    let (first, last) = (h.first_usable_lba.get(), h.last_usable_lba.get());
    if first < 2 || first > last || last >= blocks - 1 {
        return Err(GptError::Geometry("usable range outside the disk"));
    }
    if lba >= first && lba <= last {
        return Err(GptError::Geometry("header inside the usable range"));
    }
    let esize = h.size_of_partition_entry.get();
    if esize < GPT_ENTRY_SIZE as u32 || !esize.is_power_of_two() {
        return Err(GptError::EntryArray("entry size not 128 × 2^n"));
    }
    let bytes = u64::from(esize) * u64::from(h.number_of_partition_entries.get());
    if bytes > MAX_ENTRY_ARRAY_BYTES {
        return Err(GptError::EntryArray("larger than 1 MiB"));
    }
    Ok(h)
}
