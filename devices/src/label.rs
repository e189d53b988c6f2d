//! The rkdump dump-disk format: the label that marks a disk as rkdump's to write, and the dump
//! record (header, vmcore bytes, per-block XXH64 checksum table). Shared by the capture kernel, which
//! writes only where a valid label allows, and by `rkdumpctl prepare/save` on Linux.
//!
//! The label covers the whole disk (no partition table: the disk, or image file, is dedicated).
//! All integers little-endian; offsets in bytes from the start of the disk:
//!
//! | range | contents |
//! |---|---|
//! | `0 .. 4096` (LBA 0-7) | label ([`Label`]), 64 bytes then zeros. A disk with an MBR or GPT has no `RKDUMPLB` there, so it is never written |
//! | `4096 .. data_offset` | untouched (default `data_offset` = 1 MiB) |
//! | `data_offset .. +4096` | record header ([`RecordHeader`]), 176 bytes then zeros |
//! | `data_offset + 4096 ..` | the vmcore bytes, `written` of them, padded to 4 KiB |
//! | `table_offset ..` | one XXH64 (seed 0, 8 bytes LE, [`ChecksumKind`]) per `block_size` bytes of vmcore, padded to 4 KiB |
//!
//! The table follows the data at an offset fixed before writing starts ([`record_layout`]), so a
//! streaming writer that knows only the vmcore size can place it. Write order: header with
//! state Incomplete, data, table, flush, header with Complete or Truncated, flush; a crash
//! mid-dump leaves an Incomplete record that `rkdumpctl save --partial` can still extract.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crc::{CRC_32_ISO_HDLC, Crc};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// CRC-32/ISO-HDLC (zlib's `crc32`), for the label and the record header.
pub static CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Label magic.
pub const LABEL_MAGIC: [u8; 8] = *b"RKDUMPLB";
/// Record header magic.
pub const RECORD_MAGIC: [u8; 8] = *b"RKDUMPHD";
/// Format version of both.
pub const VERSION: u32 = 1;
/// Bytes reserved for the label at the start of the disk.
pub const LABEL_BYTES: usize = 4096;
/// Bytes reserved for the record header.
pub const HEADER_BYTES: usize = 4096;
/// Alignment of every area (4 KiB: whole sectors on 512 and 4096-byte disks).
pub const ALIGN: u64 = 4096;
/// Default start of the record (1 MiB, like partitioning tools).
pub const DEFAULT_DATA_OFFSET: u64 = 1 << 20;
/// Default checksum granularity.
pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 20;
/// Largest block size a reader accepts (it buffers one block).
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;
/// Sector size LBAs count in.
pub const LBA_BYTES: u64 = 512;

/// On-disk label (64 bytes at offset 0).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct LabelRaw {
    magic: [u8; 8],      // 0x00
    version: U32,        // 0x08
    header_size: U32,    // 0x0C: bytes of this struct
    uuid: [u8; 16],      // 0x10
    capacity_bytes: U64, // 0x20
    data_offset: U64,    // 0x28
    created: U64,        // 0x30: seconds since the Unix epoch
    flags: U32,          // 0x38: 0
    crc32: U32,          // 0x3C: over bytes 0x00..0x3C
}
const LABEL_SIZE: usize = 64;
const _: () = assert!(size_of::<LabelRaw>() == LABEL_SIZE);
const _: () = assert!(core::mem::offset_of!(LabelRaw, crc32) == LABEL_SIZE - 4);

/// On-disk record header (176 bytes at `data_offset`).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct RecordRaw {
    magic: [u8; 8],       // 0x00
    version: U32,         // 0x08
    state: U32,           // 0x0C: 1 Incomplete, 2 Complete, 3 Truncated
    header_offset: U64,   // 0x10: where this header is (= label data_offset)
    vmcore_size: U64,     // 0x18: bytes of the full vmcore
    written: U64,         // 0x20: bytes of it on disk
    block_size: U32,      // 0x28: checksum granularity
    flags: U32,           // 0x2C: 0..3 checksum kind (1 full, 2 sampled); 31 SAVED
    n_blocks: U64,        // 0x30: checksum table entries
    table_offset: U64,    // 0x38: where the checksum table is
    timestamp: U64,       // 0x40: crashed kernel's crash time (s), 0 if unknown
    run_id: [u8; 16],     // 0x48
    label_uuid: [u8; 16], // 0x58: ties the record to its label
    osrelease: [u8; 64],  // 0x68: NUL-padded
    reserved: U32,        // 0xA8
    crc32: U32,           // 0xAC: over bytes 0x00..0xAC
}
const RECORD_SIZE: usize = 176;
const _: () = assert!(size_of::<RecordRaw>() == RECORD_SIZE);
const _: () = assert!(core::mem::offset_of!(RecordRaw, osrelease) == 0x68);
const _: () = assert!(core::mem::offset_of!(RecordRaw, crc32) == RECORD_SIZE - 4);

/// Label and record errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the structure.
    Short,
    /// Magic bytes differ (not an rkdump disk / no record).
    BadMagic,
    /// Stored CRC-32 (label or header) does not match.
    BadCrc {
        /// CRC stored.
        stored: u32,
        /// CRC computed.
        computed: u32,
    },
    /// Unknown format version.
    WrongVersion(u32),
    /// Fields contradict each other.
    Inconsistent(&'static str),
    /// The disk cannot hold even one block of dump.
    TooSmall {
        /// Usable bytes.
        capacity: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// The device is smaller than the label says (label copied to another disk?).
    DeviceTooSmall {
        /// Device bytes.
        device: u64,
        /// Label capacity.
        label: u64,
    },
    /// Unknown record state.
    BadState(u32),
    /// The record belongs to another label.
    WrongLabel,
    /// The reader callback failed.
    ReadFailed {
        /// Disk offset.
        offset: u64,
    },
    /// A block's XXH64 does not match its table entry.
    BlockChecksum {
        /// Block index.
        block: u64,
        /// Checksum in the table.
        stored: u64,
        /// Checksum of the data.
        computed: u64,
    },
    /// The header names a checksum kind this reader does not know.
    UnknownChecksum(u32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Short => f.write_str("buffer shorter than the structure"),
            Error::BadMagic => f.write_str("bad magic"),
            Error::BadCrc { stored, computed } => {
                write!(
                    f,
                    "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            Error::WrongVersion(v) => write!(f, "unsupported version {v}"),
            Error::Inconsistent(what) => write!(f, "inconsistent: {what}"),
            Error::TooSmall { capacity, needed } => {
                write!(f, "disk too small: {capacity} bytes, need {needed}")
            }
            Error::DeviceTooSmall { device, label } => {
                write!(f, "device has {device} bytes, label claims {label}")
            }
            Error::BadState(s) => write!(f, "unknown record state {s}"),
            Error::WrongLabel => f.write_str("record belongs to another label"),
            Error::ReadFailed { offset } => write!(f, "read failed at {offset:#x}"),
            Error::BlockChecksum {
                block,
                stored,
                computed,
            } => write!(
                f,
                "block {block} checksum {computed:#018x}, table says {stored:#018x}"
            ),
            Error::UnknownChecksum(k) => write!(f, "unknown block checksum kind {k}"),
        }
    }
}

fn round_up(v: u64) -> Option<u64> {
    v.checked_add(ALIGN - 1).map(|x| x & !(ALIGN - 1))
}

/// Bytes of one checksum table entry (an XXH64, little-endian).
pub const TABLE_ENTRY_BYTES: u64 = 8;

/// Bytes of checksum table for `bytes` of vmcore, padded (one u64 per block).
fn table_len(bytes: u64, block_size: u32) -> Option<u64> {
    bytes
        .div_ceil(u64::from(block_size))
        .checked_mul(TABLE_ENTRY_BYTES)
        .and_then(round_up)
}

/// The smallest record: header, one data page, one table page.
const MIN_RECORD: u64 = HEADER_BYTES as u64 + 2 * ALIGN;

/// A parsed or new dump-disk label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    /// Identifies this prepared disk.
    pub uuid: [u8; 16],
    /// Bytes rkdump may use, from offset 0.
    pub capacity_bytes: u64,
    /// Where the record header goes (4 KiB aligned, at least 4 KiB).
    pub data_offset: u64,
    /// When `rkdumpctl prepare` ran (seconds since the epoch).
    pub created: u64,
}

impl Label {
    /// A label with the default 1 MiB data offset.
    pub fn new(uuid: [u8; 16], capacity_bytes: u64, created: u64) -> Result<Self, Error> {
        Self::with_data_offset(uuid, capacity_bytes, DEFAULT_DATA_OFFSET, created)
    }

    /// A label with an explicit data offset.
    pub fn with_data_offset(
        uuid: [u8; 16],
        capacity_bytes: u64,
        data_offset: u64,
        created: u64,
    ) -> Result<Self, Error> {
        let l = Label {
            uuid,
            capacity_bytes,
            data_offset,
            created,
        };
        l.validate()?;
        Ok(l)
    }

    fn validate(&self) -> Result<(), Error> {
        if self.data_offset < LABEL_BYTES as u64 || !self.data_offset.is_multiple_of(ALIGN) {
            return Err(Error::Inconsistent(
                "data_offset not 4 KiB aligned after the label",
            ));
        }
        if !self.capacity_bytes.is_multiple_of(LBA_BYTES) {
            return Err(Error::Inconsistent("capacity not whole sectors"));
        }
        let needed = self
            .data_offset
            .checked_add(MIN_RECORD)
            .ok_or(Error::Inconsistent("data_offset overflows"))?;
        if self.capacity_bytes < needed {
            return Err(Error::TooSmall {
                capacity: self.capacity_bytes,
                needed,
            });
        }
        Ok(())
    }

    /// Parses the first 4 KiB of a disk (at least the 64-byte label).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (raw, _) = LabelRaw::read_from_prefix(bytes).map_err(|_| Error::Short)?;
        if raw.magic != LABEL_MAGIC {
            return Err(Error::BadMagic);
        }
        let computed = CRC32.checksum(&raw.as_bytes()[..LABEL_SIZE - 4]);
        if computed != raw.crc32.get() {
            return Err(Error::BadCrc {
                stored: raw.crc32.get(),
                computed,
            });
        }
        if raw.version.get() != VERSION {
            return Err(Error::WrongVersion(raw.version.get()));
        }
        if raw.header_size.get() as usize != LABEL_SIZE {
            return Err(Error::Inconsistent("label header_size"));
        }
        let l = Label {
            uuid: raw.uuid,
            capacity_bytes: raw.capacity_bytes.get(),
            data_offset: raw.data_offset.get(),
            created: raw.created.get(),
        };
        l.validate()?;
        Ok(l)
    }

    /// The 4 KiB written at offset 0.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = LabelRaw {
            magic: LABEL_MAGIC,
            version: U32::new(VERSION),
            header_size: U32::new(LABEL_SIZE as u32),
            uuid: self.uuid,
            capacity_bytes: U64::new(self.capacity_bytes),
            data_offset: U64::new(self.data_offset),
            created: U64::new(self.created),
            flags: U32::new(0),
            crc32: U32::new(0),
        };
        raw.crc32 = U32::new(CRC32.checksum(&raw.as_bytes()[..LABEL_SIZE - 4]));
        let mut out = vec![0u8; LABEL_BYTES];
        out[..LABEL_SIZE].copy_from_slice(raw.as_bytes());
        out
    }

    /// Refuses a device smaller than the label claims (wrong disk, or an image file cut short).
    pub fn check_device(&self, device_bytes: u64) -> Result<(), Error> {
        if device_bytes < self.capacity_bytes {
            return Err(Error::DeviceTooSmall {
                device: device_bytes,
                label: self.capacity_bytes,
            });
        }
        Ok(())
    }
}

/// Where a dump of a given size goes (all LBAs in 512-byte units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    /// Record header.
    pub header_lba: u64,
    /// First vmcore byte.
    pub data_lba: u64,
    /// XXH64 checksum table.
    pub table_lba: u64,
    /// Checksum table bytes (padded).
    pub table_bytes: u64,
    /// First LBA after the record.
    pub end_lba: u64,
    /// Checksum granularity.
    pub block_size: u32,
    /// Checksum table entries.
    pub n_blocks: u64,
    /// The whole vmcore fits.
    pub fits: bool,
    /// vmcore bytes to write: all of it, or as much as fits (whole 4 KiB) when truncated.
    pub writable_bytes: u64,
}

/// Plans a record for `vmcore_size` bytes on `label`'s disk; a dump too big is truncated.
pub fn record_layout(label: &Label, vmcore_size: u64) -> Result<RecordLayout, Error> {
    label.validate()?;
    let bs = DEFAULT_BLOCK_SIZE;
    let overflow = Error::Inconsistent("sizes overflow");
    let data_start = label.data_offset + HEADER_BYTES as u64;
    let avail = label.capacity_bytes - data_start;
    let need = |w: u64| -> Option<u64> { round_up(w)?.checked_add(table_len(w, bs)?) };
    let (fits, writable) = match need(vmcore_size) {
        Some(n) if n <= avail => (true, vmcore_size),
        _ => {
            // The table for `avail` bytes bounds any smaller table, so the rest is data.
            let room = (avail - table_len(avail, bs).ok_or(overflow)?) & !(ALIGN - 1);
            (false, room.min(vmcore_size))
        }
    };
    if writable == 0 && vmcore_size != 0 {
        return Err(Error::TooSmall {
            capacity: label.capacity_bytes,
            needed: data_start + MIN_RECORD,
        });
    }
    let table = data_start + round_up(writable).ok_or(overflow)?;
    let table_bytes = table_len(writable, bs).ok_or(overflow)?;
    Ok(RecordLayout {
        header_lba: label.data_offset / LBA_BYTES,
        data_lba: data_start / LBA_BYTES,
        table_lba: table / LBA_BYTES,
        table_bytes,
        end_lba: (table + table_bytes) / LBA_BYTES,
        block_size: bs,
        n_blocks: writable.div_ceil(u64::from(bs)),
        fits,
        writable_bytes: writable,
    })
}

/// Record header `flags` bit 31: `rkdumpctl save` wrote this record's vmcore out and made it
/// durable. Set only by [`mark_saved`]; a record the capture kernel writes never has it.
pub const FLAG_SAVED: u32 = 1 << 31;

/// Bytes of the record header that [`mark_saved`] returns (the header's padding to 4 KiB is
/// not part of it).
pub const RECORD_HEADER_SIZE: usize = RECORD_SIZE;

/// Sets [`FLAG_SAVED`] in the record header `bytes` read from `label`'s disk at `data_offset`
/// and recomputes its CRC-32. The header is checked first ([`RecordHeader::parse`]); every
/// other byte is kept as it was. Returns the [`RECORD_HEADER_SIZE`] bytes to write back at
/// `data_offset`: nothing else on the disk changes.
pub fn mark_saved(label: &Label, bytes: &[u8]) -> Result<[u8; RECORD_HEADER_SIZE], Error> {
    RecordHeader::parse(label, bytes)?;
    let (mut raw, _) = RecordRaw::read_from_prefix(bytes).map_err(|_| Error::Short)?;
    raw.flags = U32::new(raw.flags.get() | FLAG_SAVED);
    raw.crc32 = U32::new(CRC32.checksum(&raw.as_bytes()[..RECORD_SIZE - 4]));
    let mut out = [0u8; RECORD_HEADER_SIZE];
    out.copy_from_slice(raw.as_bytes());
    Ok(out)
}

/// Record states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Writing started and did not finish.
    Incomplete = 1,
    /// The whole vmcore is on disk.
    Complete = 2,
    /// The disk was too small: a prefix of the vmcore is on disk.
    Truncated = 3,
}

/// The dump record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Progress.
    pub state: State,
    /// Where this header is.
    pub header_offset: u64,
    /// Bytes of the full vmcore.
    pub vmcore_size: u64,
    /// Bytes on disk.
    pub written: u64,
    /// Checksum granularity.
    pub block_size: u32,
    /// Checksum table entries (planned, for an Incomplete record).
    pub n_blocks: u64,
    /// Where the checksum table is.
    pub table_offset: u64,
    /// Crash time (seconds), 0 if unknown.
    pub timestamp: u64,
    /// Identifies this dump run.
    pub run_id: [u8; 16],
    /// The label's UUID.
    pub label_uuid: [u8; 16],
    /// Crashed kernel's release, NUL-padded.
    pub osrelease: [u8; 64],
    /// Bits 0..3: the [`ChecksumKind`] of the block checksum table.
    pub flags: u32,
}

impl RecordHeader {
    /// An Incomplete header for a dump planned with [`record_layout`]; `osrelease` is cut to 64
    /// bytes.
    pub fn new(
        label: &Label,
        layout: &RecordLayout,
        vmcore_size: u64,
        timestamp: u64,
        run_id: [u8; 16],
        osrelease: &[u8],
    ) -> Self {
        let mut os = [0u8; 64];
        let n = osrelease.len().min(64);
        os[..n].copy_from_slice(&osrelease[..n]);
        RecordHeader {
            state: State::Incomplete,
            header_offset: label.data_offset,
            vmcore_size,
            written: 0,
            block_size: layout.block_size,
            n_blocks: layout.n_blocks,
            table_offset: layout.table_lba * LBA_BYTES,
            timestamp,
            run_id,
            label_uuid: label.uuid,
            osrelease: os,
            flags: ChecksumKind::Full as u32,
        }
    }

    /// `rkdumpctl save` extracted this record ([`FLAG_SAVED`]): preparing the disk again
    /// destroys nothing not kept elsewhere.
    pub fn is_saved(&self) -> bool {
        self.flags & FLAG_SAVED != 0
    }

    /// Marks the dump done after `written` bytes and the checksum table are on disk: Complete if
    /// that is the whole vmcore, else Truncated.
    pub fn finish(&mut self, written: u64) {
        self.written = written;
        self.state = if written >= self.vmcore_size {
            State::Complete
        } else {
            State::Truncated
        };
    }

    /// The 4 KiB written at `data_offset`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = RecordRaw {
            magic: RECORD_MAGIC,
            version: U32::new(VERSION),
            state: U32::new(self.state as u32),
            header_offset: U64::new(self.header_offset),
            vmcore_size: U64::new(self.vmcore_size),
            written: U64::new(self.written),
            block_size: U32::new(self.block_size),
            flags: U32::new(self.flags),
            n_blocks: U64::new(self.n_blocks),
            table_offset: U64::new(self.table_offset),
            timestamp: U64::new(self.timestamp),
            run_id: self.run_id,
            label_uuid: self.label_uuid,
            osrelease: self.osrelease,
            reserved: U32::new(0),
            crc32: U32::new(0),
        };
        raw.crc32 = U32::new(CRC32.checksum(&raw.as_bytes()[..RECORD_SIZE - 4]));
        let mut out = vec![0u8; HEADER_BYTES];
        out[..RECORD_SIZE].copy_from_slice(raw.as_bytes());
        out
    }

    /// Parses and checks a header against its label.
    pub fn parse(label: &Label, bytes: &[u8]) -> Result<Self, Error> {
        let (raw, _) = RecordRaw::read_from_prefix(bytes).map_err(|_| Error::Short)?;
        if raw.magic != RECORD_MAGIC {
            return Err(Error::BadMagic);
        }
        let computed = CRC32.checksum(&raw.as_bytes()[..RECORD_SIZE - 4]);
        if computed != raw.crc32.get() {
            return Err(Error::BadCrc {
                stored: raw.crc32.get(),
                computed,
            });
        }
        if raw.version.get() != VERSION {
            return Err(Error::WrongVersion(raw.version.get()));
        }
        let state = match raw.state.get() {
            1 => State::Incomplete,
            2 => State::Complete,
            3 => State::Truncated,
            s => return Err(Error::BadState(s)),
        };
        if raw.label_uuid != label.uuid || raw.header_offset.get() != label.data_offset {
            return Err(Error::WrongLabel);
        }
        let h = RecordHeader {
            state,
            header_offset: raw.header_offset.get(),
            vmcore_size: raw.vmcore_size.get(),
            written: raw.written.get(),
            block_size: raw.block_size.get(),
            n_blocks: raw.n_blocks.get(),
            table_offset: raw.table_offset.get(),
            timestamp: raw.timestamp.get(),
            run_id: raw.run_id,
            label_uuid: raw.label_uuid,
            osrelease: raw.osrelease,
            flags: raw.flags.get(),
        };
        h.validate(label)?;
        Ok(h)
    }

    fn validate(&self, label: &Label) -> Result<(), Error> {
        let bs = self.block_size;
        if !bs.is_power_of_two() || !(ALIGN as u32..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(Error::Inconsistent("block_size"));
        }
        if self.written > self.vmcore_size {
            return Err(Error::Inconsistent("written beyond vmcore_size"));
        }
        let covered = self.n_blocks.checked_mul(u64::from(bs));
        let blocks_ok = match self.state {
            State::Incomplete => covered.is_some_and(|c| c >= self.written),
            _ => self.n_blocks == self.written.div_ceil(u64::from(bs)),
        };
        if !blocks_ok {
            return Err(Error::Inconsistent("n_blocks"));
        }
        match self.state {
            State::Complete if self.written != self.vmcore_size => {
                return Err(Error::Inconsistent("complete but written < vmcore_size"));
            }
            State::Truncated if self.written == self.vmcore_size => {
                return Err(Error::Inconsistent("truncated but everything written"));
            }
            _ => {}
        }
        let data_end = self
            .data_offset()
            .checked_add(self.written)
            .and_then(round_up);
        let table_end = self
            .n_blocks
            .checked_mul(TABLE_ENTRY_BYTES)
            .and_then(round_up)
            .and_then(|t| self.table_offset.checked_add(t));
        match (data_end, table_end) {
            (Some(d), Some(t))
                if self.table_offset.is_multiple_of(ALIGN)
                    && self.table_offset >= d
                    && t <= label.capacity_bytes =>
            {
                Ok(())
            }
            _ => Err(Error::Inconsistent(
                "table outside the disk or over the data",
            )),
        }
    }

    /// Disk offset of the first vmcore byte.
    pub fn data_offset(&self) -> u64 {
        self.header_offset + HEADER_BYTES as u64
    }

    /// `osrelease` up to its first NUL, if UTF-8.
    pub fn osrelease_str(&self) -> Option<&str> {
        let n = self.osrelease.iter().position(|&b| b == 0).unwrap_or(64);
        core::str::from_utf8(&self.osrelease[..n]).ok()
    }
}

/// How much of each block its checksum covers (record header `flags` bits 0..3).
///
/// Checksums are XXH64 (seed 0), one u64 per block. `Full` (the default) hashes every byte, so
/// any changed byte is caught. `Sampled` hashes the first and last 64 bytes of every 4 KiB page:
/// it catches pages that were never written, written torn or from the wrong address, but not a
/// byte changed in the middle of a page. `None` hashes nothing (the table is written but never
/// checked): for measuring what checksums cost, never for a dump one relies on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum ChecksumKind {
    /// XXH64 over every byte of the block: the default (`rkdump.checksum=auto`).
    #[default]
    Full = 1,
    /// XXH64 over bytes 0..64 and 4032..4096 of every page of the block.
    Sampled = 2,
    /// No checksum: nothing is verified.
    None = 3,
}

impl ChecksumKind {
    /// From the header's flags. 0 is refused: a zeroed flags field never means "unchecked".
    pub fn from_flags(flags: u32) -> Result<Self, Error> {
        match flags & 0xF {
            1 => Ok(ChecksumKind::Full),
            2 => Ok(ChecksumKind::Sampled),
            3 => Ok(ChecksumKind::None),
            k => Err(Error::UnknownChecksum(k)),
        }
    }

    /// Bytes of every 4 KiB page the checksum covers: 4096, 128 or 0.
    pub fn covered_per_page(self) -> u64 {
        match self {
            ChecksumKind::Full => PAGE,
            ChecksumKind::Sampled => 2 * SAMPLE,
            ChecksumKind::None => 0,
        }
    }

    /// What a verified record of this kind proves, for `rkdumpctl save`'s summary:
    /// "every byte", "128 of 4096 bytes per page" or "none".
    pub fn coverage(self) -> Coverage {
        Coverage(self)
    }
}

/// [`ChecksumKind::coverage`]'s text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage(ChecksumKind);

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ChecksumKind::Full => f.write_str("every byte"),
            ChecksumKind::None => f.write_str("none"),
            k => write!(f, "{} of {PAGE} bytes per page", k.covered_per_page()),
        }
    }
}

/// Bytes at each end of a 4 KiB page that a [`ChecksumKind::Sampled`] checksum covers.
const SAMPLE: u64 = 64;
const PAGE: u64 = 4096;

/// Streaming per-block XXH64 checksums (the record's table): feed vmcore bytes in order, in any
/// pieces.
pub struct BlockXxh64 {
    kind: ChecksumKind,
    block_size: u64,
    /// Bytes fed so far (the vmcore offset of the next byte).
    pos: u64,
    cur: xxhash_rust::xxh64::Xxh64,
    sums: Vec<u64>,
}

impl BlockXxh64 {
    /// For blocks of `block_size` bytes (from the [`RecordLayout`]; a multiple of 4 KiB).
    pub fn new(block_size: u32, kind: ChecksumKind) -> Self {
        BlockXxh64 {
            kind,
            block_size: u64::from(block_size.max(1)),
            pos: 0,
            cur: xxhash_rust::xxh64::Xxh64::new(0),
            sums: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        match self.kind {
            ChecksumKind::Full => self.cur.update(data),
            ChecksumKind::None => {}
            ChecksumKind::Sampled => {
                // Hash only the parts of `data` in [0, 64) or [4032, 4096) of their page.
                let mut at = self.pos;
                let mut rest = data;
                while !rest.is_empty() {
                    let in_page = at % PAGE;
                    let (span, hash) = if in_page < SAMPLE {
                        (SAMPLE - in_page, true)
                    } else if in_page < PAGE - SAMPLE {
                        (PAGE - SAMPLE - in_page, false)
                    } else {
                        (PAGE - in_page, true)
                    };
                    let n = usize::try_from(span).unwrap_or(usize::MAX).min(rest.len());
                    if hash {
                        self.cur.update(&rest[..n]);
                    }
                    rest = &rest[n..];
                    at += n as u64;
                }
            }
        }
        self.pos += data.len() as u64;
    }

    /// Adds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let in_block = self.pos % self.block_size;
            let room = (self.block_size - in_block).min(data.len() as u64) as usize;
            self.feed(&data[..room]);
            data = &data[room..];
            if self.pos.is_multiple_of(self.block_size) {
                let d = core::mem::replace(&mut self.cur, xxhash_rust::xxh64::Xxh64::new(0));
                self.sums.push(d.digest());
            }
        }
    }

    /// Moves the checksums of the blocks completed so far to `into`, so a writer can put them
    /// on disk and forget them (memory bounded however large the dump).
    pub fn take_complete(&mut self, into: &mut Vec<u64>) {
        into.append(&mut self.sums);
    }

    /// The checksums not taken yet, the last one over a partial block.
    pub fn finish(mut self) -> Vec<u64> {
        if !self.pos.is_multiple_of(self.block_size) {
            self.sums.push(self.cur.digest());
        }
        self.sums
    }

    /// Checksum of one block (`data` starts at a block boundary, so at a page boundary).
    pub fn of_block(kind: ChecksumKind, data: &[u8]) -> u64 {
        let mut s = BlockXxh64::new(u32::MAX, kind);
        s.feed(data);
        s.cur.digest()
    }
}

/// The XXH64 checksum table as written at `table_lba`: 8 bytes little-endian per block,
/// padded to 4 KiB.
pub fn xxh64_table(sums: &[u64]) -> Vec<u8> {
    let mut out: Vec<u8> = sums.iter().flat_map(|c| c.to_le_bytes()).collect();
    out.resize(out.len().div_ceil(ALIGN as usize) * ALIGN as usize, 0);
    out
}

/// The reader callback failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFailed;

/// What [`verify_record`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSummary {
    /// The header.
    pub header: RecordHeader,
    /// Blocks whose XXH64 was checked: all of them, or for an Incomplete record those covered by
    /// its last checkpoint (0 if it took none, and for [`ChecksumKind::None`]);
    /// `ChecksumKind::from_flags(header.flags)` says how much of each block that covers
    /// ([`ChecksumKind::coverage`]).
    pub blocks_verified: u64,
}

/// Checks a record: header CRC-32 and consistency against `label`, then the XXH64 of every block
/// `written` covers (for an Incomplete record: up to its last checkpoint). `read(offset, buf)` fills `buf` from disk offset `offset`.
pub fn verify_record(
    label: &Label,
    header_bytes: &[u8],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), ReadFailed>,
) -> Result<RecordSummary, Error> {
    let header = RecordHeader::parse(label, header_bytes)?;
    let bs = u64::from(header.block_size);
    // The blocks `written` covers: all `n_blocks` of a Complete or Truncated record; for an
    // Incomplete one, those its last checkpoint made durable (none if it never took one).
    let blocks = header.written.div_ceil(bs);
    if blocks == 0 {
        return Ok(RecordSummary {
            header,
            blocks_verified: 0,
        });
    }
    let kind = ChecksumKind::from_flags(header.flags)?;
    if kind == ChecksumKind::None {
        return Ok(RecordSummary {
            header,
            blocks_verified: 0,
        });
    }
    let mut buf = vec![0u8; header.block_size as usize];
    // The table is read a page at a time: its size comes from the disk.
    let mut table = [0u8; ALIGN as usize];
    for i in 0..blocks {
        let entry = (i % (ALIGN / 8)) as usize * 8;
        if entry == 0 {
            let offset = header.table_offset + i * 8;
            read(offset, &mut table).map_err(|_| Error::ReadFailed { offset })?;
        }
        let mut le = [0u8; 8];
        le.copy_from_slice(&table[entry..entry + 8]);
        let stored = u64::from_le_bytes(le);
        let start = i * bs;
        let len = (header.written - start).min(bs) as usize;
        let offset = header.data_offset() + start;
        read(offset, &mut buf[..len]).map_err(|_| Error::ReadFailed { offset })?;
        let computed = BlockXxh64::of_block(kind, &buf[..len]);
        if computed != stored {
            return Err(Error::BlockChecksum {
                block: i,
                stored,
                computed,
            });
        }
    }
    Ok(RecordSummary {
        header,
        blocks_verified: blocks,
    })
}

#[cfg(test)]
mod tests;
