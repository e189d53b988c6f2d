//! The PCI config blob: `rkdumpctl snapshot`'s copy of every PCI function's configuration space,
//! handed to rkdump as the `kexec -p` initrd and parsed here without trusting a byte of it.
//! Restoring from it is `reinit`'s job (one planner for the blob and the pre-reset snapshot):
//! a [`Record`] offers its bytes as a [`SavedView`], the same read-only view a live function
//! has, so capability walks and restore planning run unchanged over either.
//!
//! The model is Linux's `pci_store_saved_state` / `pci_load_saved_state` (drivers/pci/pci.c): an
//! opaque buffer carried across kexec. Unlike Linux's, this one is taken from sysfs by a userspace
//! tool before the crash, so it holds the whole configuration space as read (64, 256 or 4096
//! bytes) and each function's identity, so the capture kernel can refuse a record that does not
//! describe the device it finds.
//!
//! # Format (version 1)
//!
//! All integers little-endian. The blob is a header followed by `record_count` records, each
//! starting 4-byte aligned (every size below is a multiple of 4, so no padding is needed).
//!
//! Header, [`HEADER_LEN`] = 128 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 8 | magic [`MAGIC`] = `"RKDCFG\0\x01"` |
//! | 0x08 | 2 | `version` = [`VERSION`] (1) |
//! | 0x0A | 2 | `header_len` = 128 |
//! | 0x0C | 4 | `total_len`: bytes of header and records, at most [`MAX_BLOB_LEN`] (32 MiB) |
//! | 0x10 | 4 | `record_count`, at most [`MAX_RECORDS`] (4096) |
//! | 0x14 | 4 | `crc32`: CRC-32/ISO-HDLC of bytes `0 .. total_len` with this field read as zero |
//! | 0x18 | 8 | `timestamp`: capture time, seconds since the Unix epoch |
//! | 0x20 | 16 | `boot_id`: the capturing kernel's `/proc/sys/kernel/random/boot_id` as 16 UUID bytes |
//! | 0x30 | 65 | `release`: the capturing kernel's `uname -r`, UTF-8, NUL-terminated and NUL-padded (like `utsname.release`) |
//! | 0x71 | 15 | reserved, zero |
//!
//! Record, [`RECORD_HEADER_LEN`] = 56 bytes then the configuration space:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 4 | `rec_len` = 56 + `cfg_len` |
//! | 0x04 | 2 | PCI segment |
//! | 0x06 | 1 | bus |
//! | 0x07 | 1 | device (< 32) |
//! | 0x08 | 1 | function (< 8) |
//! | 0x09 | 1 | header type, as config byte 0x0E (bit 7 = multi-function) |
//! | 0x0A | 2 | `cfg_len`: 64, 256 or 4096 |
//! | 0x0C | 2 | vendor ID |
//! | 0x0E | 2 | device ID |
//! | 0x10 | 3 | class code: programming interface, subclass, base class (config bytes 0x09..0x0C) |
//! | 0x13 | 1 | flags: bit 0 = PCI-to-PCI bridge (header type 1); other bits zero |
//! | 0x14 | 3 | bridges: primary, secondary, subordinate bus; zero otherwise |
//! | 0x17 | 1 | reserved, zero |
//! | 0x18 | 8 | bridges: I/O window base, limit (u32 each, decoded with the upper 16 bits when the bridge decodes 32-bit I/O) |
//! | 0x20 | 8 | bridges: memory window base, limit (u32 each) |
//! | 0x28 | 16 | bridges: prefetchable window base, limit (u64 each, decoded with the upper 32 bits when 64-bit) |
//! | 0x38 | `cfg_len` | the configuration space as read |
//!
//! Window limits are inclusive (I/O limit ends in `0xFFF`, memory limits in `0xF_FFFF`); a
//! window is closed when base > limit. Every field before 0x38 is derived from the
//! configuration bytes, and the parser recomputes and compares them, so they can be trusted as
//! much as the bytes. Records are sorted by (segment, bus, device, function), each address at
//! most once, which makes [`BlobView::find`] a binary search.
//!
//! # Validation
//!
//! [`Blob::parse`] checks, in this order: magic, version, header length, `total_len` against
//! [`MAX_BLOB_LEN`] and the input length, `record_count` against [`MAX_RECORDS`], the CRC, the
//! header's reserved and release fields, then every record (length, `cfg_len`, address, order,
//! present vendor, derived fields) and that the records end exactly at `total_len`. Bytes after
//! `total_len` (an initrd rounded up by a loader) are ignored. Each failure is a typed
//! [`BlobError`]; nothing panics on any input.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crc::{CRC_32_ISO_HDLC, Crc, Digest};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

pub mod filemap;

use crate::pci::bridge;
pub use crate::pci::bridge::Window;
use crate::pci::caps::{self, Cap, ExtCap};
use crate::pci::{Bdf, ConfigView, SavedView, header_type, reg};

/// CRC-32/ISO-HDLC (zlib's `crc32`) over the blob.
pub static CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Blob magic.
pub const MAGIC: [u8; 8] = *b"RKDCFG\0\x01";
/// The one format version this code reads and writes.
pub const VERSION: u16 = 1;
/// Bytes of the blob header.
pub const HEADER_LEN: usize = 0x80;
/// Bytes of a record before its configuration space.
pub const RECORD_HEADER_LEN: usize = 0x38;
/// Bytes of the release field (Linux's `__NEW_UTS_LEN` + 1).
pub const RELEASE_LEN: usize = 65;
/// Most records a blob may hold.
pub const MAX_RECORDS: usize = 4096;
/// Largest blob accepted (32 MiB).
pub const MAX_BLOB_LEN: usize = 32 << 20;
/// The configuration-space sizes a record may hold: the type-0/1 header (what an unprivileged
/// sysfs reader gets), conventional space, PCIe extended space.
pub const CFG_LENS: [usize; 3] = [64, 256, 4096];
/// Record flag: the function is a PCI-to-PCI bridge (header type 1).
pub const FLAG_BRIDGE: u8 = 1 << 0;

/// Blob header as stored (128 bytes at offset 0).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct HeaderRaw {
    magic: [u8; 8],             // 0x00
    version: U16,               // 0x08
    header_len: U16,            // 0x0A
    total_len: U32,             // 0x0C
    record_count: U32,          // 0x10
    crc32: U32,                 // 0x14: over 0..total_len with this field zero
    timestamp: U64,             // 0x18
    boot_id: [u8; 16],          // 0x20
    release: [u8; RELEASE_LEN], // 0x30: NUL-terminated, NUL-padded
    reserved: [u8; 15],         // 0x71
}
const _: () = assert!(size_of::<HeaderRaw>() == HEADER_LEN);
const _: () = assert!(core::mem::offset_of!(HeaderRaw, crc32) == CRC_OFFSET);
const _: () = assert!(core::mem::offset_of!(HeaderRaw, release) == 0x30);
const _: () = assert!(core::mem::offset_of!(HeaderRaw, reserved) == 0x71);

/// Offset of the CRC field.
const CRC_OFFSET: usize = 0x14;

/// Record header as stored (56 bytes, then `cfg_len` bytes of configuration space).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct RecordRaw {
    rec_len: U32,        // 0x00
    segment: U16,        // 0x04
    bus: u8,             // 0x06
    dev: u8,             // 0x07
    func: u8,            // 0x08
    header_type: u8,     // 0x09
    cfg_len: U16,        // 0x0A
    vendor: U16,         // 0x0C
    device: U16,         // 0x0E
    class: [u8; 3],      // 0x10: prog_if, subclass, base class
    flags: u8,           // 0x13
    primary_bus: u8,     // 0x14
    secondary_bus: u8,   // 0x15
    subordinate_bus: u8, // 0x16
    reserved: u8,        // 0x17
    io_base: U32,        // 0x18
    io_limit: U32,       // 0x1C
    mem_base: U32,       // 0x20
    mem_limit: U32,      // 0x24
    pref_base: U64,      // 0x28
    pref_limit: U64,     // 0x30
}
const _: () = assert!(size_of::<RecordRaw>() == RECORD_HEADER_LEN);
const _: () = assert!(core::mem::offset_of!(RecordRaw, class) == 0x10);
const _: () = assert!(core::mem::offset_of!(RecordRaw, io_base) == 0x18);
const _: () = assert!(core::mem::offset_of!(RecordRaw, pref_base) == 0x28);

// ---------------------------------------------------------------------------------------------
// Errors

/// What is wrong with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// The record header does not fit in what is left of the blob, or `rec_len` runs past it.
    PastEnd,
    /// `rec_len` is not 56 + `cfg_len`.
    BadLength {
        /// The stored `rec_len`.
        rec_len: u32,
    },
    /// `cfg_len` is not one of [`CFG_LENS`].
    BadCfgLen {
        /// The stored or offered length.
        cfg_len: usize,
    },
    /// Device ≥ 32 or function ≥ 8.
    BadAddress,
    /// Not after the previous record in (segment, bus, device, function) order: a duplicate or
    /// an unsorted blob.
    OutOfOrder,
    /// The configuration space reads vendor 0xFFFF or 0x0000: no function was there.
    Absent,
    /// A summary field disagrees with the configuration bytes (or a reserved field is set).
    Mismatch {
        /// Which field.
        field: &'static str,
    },
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PastEnd => f.write_str("runs past the end of the blob"),
            Self::BadLength { rec_len } => write!(f, "record length {rec_len} inconsistent"),
            Self::BadCfgLen { cfg_len } => {
                write!(f, "config length {cfg_len} is not 64, 256 or 4096")
            }
            Self::BadAddress => f.write_str("device or function number out of range"),
            Self::OutOfOrder => f.write_str("duplicate or out-of-order PCI address"),
            Self::Absent => f.write_str("config space has no vendor ID (absent function)"),
            Self::Mismatch { field } => write!(f, "{field} disagrees with the config bytes"),
        }
    }
}

/// Why a blob was rejected (or a record refused by [`BlobWriter::add`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobError {
    /// The first bytes are not [`MAGIC`].
    BadMagic,
    /// A version other than [`VERSION`].
    UnsupportedVersion {
        /// The stored version.
        found: u16,
    },
    /// `header_len` is not [`HEADER_LEN`].
    BadHeaderLen {
        /// The stored length.
        found: u16,
    },
    /// The input ends before the header or before `total_len`.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// `total_len` exceeds [`MAX_BLOB_LEN`].
    TooLarge {
        /// The stored or resulting length.
        len: usize,
    },
    /// `total_len` is shorter than the header, or the records do not end exactly at it.
    BadLength {
        /// The stored `total_len`.
        total_len: u32,
    },
    /// More than [`MAX_RECORDS`] records.
    TooManyRecords {
        /// The stored or attempted count.
        count: u32,
    },
    /// The CRC does not match.
    BadCrc {
        /// CRC stored in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The release field is not NUL-terminated, NUL-padded UTF-8.
    BadRelease,
    /// Reserved header bytes are not zero.
    ReservedNonZero,
    /// Record `index` (0-based) is malformed.
    BadRecord {
        /// Position of the record in the blob (or in the writer).
        index: u32,
        /// What is wrong with it.
        why: RecordProblem,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not an rkdump config blob (bad magic)"),
            Self::UnsupportedVersion { found } => {
                write!(
                    f,
                    "config blob version {found} unsupported (want {VERSION})"
                )
            }
            Self::BadHeaderLen { found } => {
                write!(f, "config blob header length {found} (want {HEADER_LEN})")
            }
            Self::Truncated { need, have } => {
                write!(f, "config blob truncated: need {need} bytes, have {have}")
            }
            Self::TooLarge { len } => {
                write!(f, "config blob of {len} bytes exceeds {MAX_BLOB_LEN}")
            }
            Self::BadLength { total_len } => {
                write!(
                    f,
                    "config blob length {total_len} does not match its records"
                )
            }
            Self::TooManyRecords { count } => {
                write!(f, "config blob has {count} records (max {MAX_RECORDS})")
            }
            Self::BadCrc { stored, computed } => write!(
                f,
                "config blob CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Self::BadRelease => f.write_str("config blob release field malformed"),
            Self::ReservedNonZero => f.write_str("config blob reserved header bytes set"),
            Self::BadRecord { index, why } => write!(f, "config blob record {index}: {why}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Entry point of the format: [`Blob::parse`].
#[derive(Clone, Copy, Debug)]
pub struct Blob;

impl Blob {
    /// Validates a whole blob (see the module docs for every check) and returns a view of it.
    /// Allocates one offset per record (at most [`MAX_RECORDS`]).
    pub fn parse(bytes: &[u8]) -> Result<BlobView<'_>, BlobError> {
        let have = bytes.len();
        let m = have.min(MAGIC.len());
        if bytes.get(..m) != MAGIC.get(..m) {
            return Err(BlobError::BadMagic);
        }
        let truncated = BlobError::Truncated {
            need: HEADER_LEN,
            have,
        };
        let Some(&[v0, v1]) = bytes.get(8..10) else {
            return Err(truncated);
        };
        let version = u16::from_le_bytes([v0, v1]);
        if version != VERSION {
            return Err(BlobError::UnsupportedVersion { found: version });
        }
        let Ok((hdr, _)) = HeaderRaw::ref_from_prefix(bytes) else {
            return Err(truncated);
        };
        if usize::from(hdr.header_len.get()) != HEADER_LEN {
            return Err(BlobError::BadHeaderLen {
                found: hdr.header_len.get(),
            });
        }
        let total_len = hdr.total_len.get();
        let total = usize::try_from(total_len).unwrap_or(usize::MAX);
        if total > MAX_BLOB_LEN {
            return Err(BlobError::TooLarge { len: total });
        }
        if total < HEADER_LEN {
            return Err(BlobError::BadLength { total_len });
        }
        let Some(bytes) = bytes.get(..total) else {
            return Err(BlobError::Truncated { need: total, have });
        };
        let count = hdr.record_count.get();
        if count as usize > MAX_RECORDS {
            return Err(BlobError::TooManyRecords { count });
        }
        let stored = hdr.crc32.get();
        let computed = blob_crc(bytes);
        if stored != computed {
            return Err(BlobError::BadCrc { stored, computed });
        }
        if hdr.reserved.iter().any(|&b| b != 0) {
            return Err(BlobError::ReservedNonZero);
        }
        release_str(&hdr.release).ok_or(BlobError::BadRelease)?;

        let mut offsets = Vec::with_capacity(count as usize);
        let mut pos = HEADER_LEN;
        let mut prev: Option<(u16, u8, u8, u8)> = None;
        for index in 0..count {
            let bad = |why| BlobError::BadRecord { index, why };
            let rest = bytes.get(pos..).unwrap_or(&[]);
            let Ok((raw, _)) = RecordRaw::ref_from_prefix(rest) else {
                return Err(bad(RecordProblem::PastEnd));
            };
            let cfg_len = usize::from(raw.cfg_len.get());
            if !CFG_LENS.contains(&cfg_len) {
                return Err(bad(RecordProblem::BadCfgLen { cfg_len }));
            }
            let rec_len = raw.rec_len.get();
            if rec_len as usize != RECORD_HEADER_LEN + cfg_len {
                return Err(bad(RecordProblem::BadLength { rec_len }));
            }
            let Some(config) = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + cfg_len) else {
                return Err(bad(RecordProblem::PastEnd));
            };
            let Some(bdf) = Bdf::new(raw.segment.get(), raw.bus, raw.dev, raw.func) else {
                return Err(bad(RecordProblem::BadAddress));
            };
            let key = bdf_key(bdf);
            if prev.is_some_and(|p| p >= key) {
                return Err(bad(RecordProblem::OutOfOrder));
            }
            prev = Some(key);
            let derived = summarize(bdf, config).map_err(bad)?;
            if let Some(field) = first_difference(raw, &derived) {
                return Err(bad(RecordProblem::Mismatch { field }));
            }
            // `pos` ≤ total ≤ 32 MiB, so it fits u32.
            offsets.push(pos as u32);
            pos += RECORD_HEADER_LEN + cfg_len;
        }
        if pos != total {
            return Err(BlobError::BadLength { total_len });
        }
        Ok(BlobView {
            bytes,
            hdr,
            offsets,
        })
    }
}

/// A validated blob. Cheap accessors; [`BlobView::find`] is a binary search.
#[derive(Clone)]
pub struct BlobView<'a> {
    bytes: &'a [u8],
    hdr: &'a HeaderRaw,
    offsets: Vec<u32>,
}

impl fmt::Debug for BlobView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobView")
            .field("release", &self.release())
            .field("timestamp", &self.timestamp())
            .field("records", &self.offsets.len())
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl<'a> BlobView<'a> {
    /// The blob's bytes (`total_len` of them, without anything the input had after).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Format version.
    pub fn version(&self) -> u16 {
        self.hdr.version.get()
    }

    /// The capturing kernel's release (`uname -r`).
    pub fn release(&self) -> &'a str {
        release_str(&self.hdr.release).unwrap_or("")
    }

    /// The capturing kernel's boot id (UUID bytes in text order).
    pub fn boot_id(&self) -> [u8; 16] {
        self.hdr.boot_id
    }

    /// Capture time, seconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        self.hdr.timestamp.get()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the blob holds no record.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Record `index`, in address order.
    pub fn get(&self, index: usize) -> Option<Record<'a>> {
        let off = *self.offsets.get(index)? as usize;
        record_at(self.bytes, off)
    }

    /// All records in (segment, bus, device, function) order.
    pub fn records(&self) -> impl Iterator<Item = Record<'a>> + '_ {
        let bytes = self.bytes;
        self.offsets
            .iter()
            .filter_map(move |&off| record_at(bytes, off as usize))
    }

    /// The record of function `bdf`, if it was captured.
    pub fn find(&self, bdf: Bdf) -> Option<Record<'a>> {
        let key = bdf_key(bdf);
        let i = self
            .offsets
            .binary_search_by(|&off| match record_at(self.bytes, off as usize) {
                Some(r) => bdf_key(r.bdf()).cmp(&key),
                None => core::cmp::Ordering::Less,
            })
            .ok()?;
        self.get(i)
    }

    /// The record of function `bdf` if it describes a function with these IDs and 24-bit class
    /// code (see [`Record::matches`]): the lookup to make before restoring onto a live function.
    pub fn find_matching(
        &self,
        bdf: Bdf,
        vendor: u16,
        device: u16,
        class: u32,
    ) -> Option<Record<'a>> {
        self.find(bdf).filter(|r| r.matches(vendor, device, class))
    }
}

fn record_at(bytes: &[u8], off: usize) -> Option<Record<'_>> {
    let rest = bytes.get(off..)?;
    let (raw, rest) = RecordRaw::ref_from_prefix(rest).ok()?;
    let config = rest.get(..usize::from(raw.cfg_len.get()))?;
    Some(Record { raw, config })
}

fn bdf_key(b: Bdf) -> (u16, u8, u8, u8) {
    (b.segment, b.bus, b.dev, b.func)
}

/// CRC over `bytes` with the CRC field taken as zero. `bytes` holds at least the header.
fn blob_crc(bytes: &[u8]) -> u32 {
    let mut d: Digest<'_, u32> = CRC32.digest();
    d.update(bytes.get(..CRC_OFFSET).unwrap_or(&[]));
    d.update(&[0; 4]);
    d.update(bytes.get(CRC_OFFSET + 4..).unwrap_or(&[]));
    d.finalize()
}

/// The text of a release field: UTF-8 up to the first NUL, zeros after it, at least one NUL.
fn release_str(field: &[u8; RELEASE_LEN]) -> Option<&str> {
    let end = field.iter().position(|&b| b == 0)?;
    let (text, pad) = field.split_at(end);
    if pad.iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(text).ok()
}

// ---------------------------------------------------------------------------------------------
// Records

/// What a PCI-to-PCI bridge forwarded when the snapshot was taken.
///
/// A bridge without an I/O or prefetchable window reads zeros there, which decodes as an open
/// window `0 ..= 0xFFF` / `0 ..= 0xF_FFFF`; Linux tells the two apart by probing the registers,
/// which a snapshot cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bridge {
    /// Primary bus number.
    pub primary: u8,
    /// Secondary bus number.
    pub secondary: u8,
    /// Subordinate bus number.
    pub subordinate: u8,
    /// I/O window.
    pub io: Window<u32>,
    /// Non-prefetchable memory window.
    pub mem: Window<u32>,
    /// Prefetchable memory window.
    pub pref: Window<u64>,
}

/// One captured function: identity, bridge summary and configuration bytes.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    raw: &'a RecordRaw,
    config: &'a [u8],
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Record({} {:04x}:{:04x} class {:06x} type {:#04x} {} B)",
            self.bdf(),
            self.vendor(),
            self.device(),
            self.class(),
            self.raw.header_type,
            self.config.len()
        )
    }
}

impl<'a> Record<'a> {
    /// The function's address.
    pub fn bdf(&self) -> Bdf {
        Bdf {
            segment: self.raw.segment.get(),
            bus: self.raw.bus,
            dev: self.raw.dev,
            func: self.raw.func,
        }
    }

    /// Vendor ID.
    pub fn vendor(&self) -> u16 {
        self.raw.vendor.get()
    }

    /// Device ID.
    pub fn device(&self) -> u16 {
        self.raw.device.get()
    }

    /// Class code as 24 bits: base class << 16 | subclass << 8 | programming interface.
    pub fn class(&self) -> u32 {
        let [pi, sub, base] = self.raw.class;
        u32::from(base) << 16 | u32::from(sub) << 8 | u32::from(pi)
    }

    /// Revision ID.
    pub fn revision(&self) -> u8 {
        self.config.get(8).copied().unwrap_or(0)
    }

    /// Header type without the multi-function bit (0 endpoint, 1 bridge, 2 CardBus).
    pub fn header_type(&self) -> u8 {
        self.raw.header_type & !header_type::MULTI_FUNCTION
    }

    /// Whether the multi-function bit was set.
    pub fn is_multifunction(&self) -> bool {
        self.raw.header_type & header_type::MULTI_FUNCTION != 0
    }

    /// Whether the function is a PCI-to-PCI bridge.
    pub fn is_bridge(&self) -> bool {
        self.raw.flags & FLAG_BRIDGE != 0
    }

    /// Whether this record describes a function with these IDs and 24-bit class code (the
    /// check to make before restoring it onto the function found at the same address).
    pub fn matches(&self, vendor: u16, device: u16, class: u32) -> bool {
        self.vendor() == vendor && self.device() == device && self.class() == class
    }

    /// The configuration space as read: 64, 256 or 4096 bytes.
    pub fn config(&self) -> &'a [u8] {
        self.config
    }

    /// The 64-byte header every record has.
    pub fn header(&self) -> &'a [u8; 64] {
        // Every record holds at least 64 bytes (parse checks `cfg_len`); the fallback is never used.
        self.config.first_chunk::<64>().unwrap_or(&[0xFF; 64])
    }

    /// Header dword `index` (0..16), as Linux's `saved_config_space[index]`.
    pub fn header_dword(&self, index: usize) -> Option<u32> {
        if index >= 16 {
            return None;
        }
        Some(le32(self.config, index * 4))
    }

    /// The byte at `off`, if captured.
    pub fn read8(&self, off: u16) -> Option<u8> {
        self.config.get(usize::from(off)).copied()
    }

    /// The 16-bit register at `off` (2-aligned), if captured.
    pub fn read16(&self, off: u16) -> Option<u16> {
        let o = usize::from(off);
        if !o.is_multiple_of(2) || o + 2 > self.config.len() {
            return None;
        }
        Some(le16(self.config, o))
    }

    /// The 32-bit register at `off` (4-aligned), if captured.
    pub fn read32(&self, off: u16) -> Option<u32> {
        let o = usize::from(off);
        if !o.is_multiple_of(4) || o + 4 > self.config.len() {
            return None;
        }
        Some(le32(self.config, o))
    }

    /// Bus numbers and windows, for a bridge.
    pub fn bridge(&self) -> Option<Bridge> {
        if !self.is_bridge() {
            return None;
        }
        let r = self.raw;
        Some(Bridge {
            primary: r.primary_bus,
            secondary: r.secondary_bus,
            subordinate: r.subordinate_bus,
            io: Window {
                base: r.io_base.get(),
                limit: r.io_limit.get(),
            },
            mem: Window {
                base: r.mem_base.get(),
                limit: r.mem_limit.get(),
            },
            pref: Window {
                base: r.pref_base.get(),
                limit: r.pref_limit.get(),
            },
        })
    }

    /// The configuration bytes as a read-only view (bytes beyond [`Record::config`] read
    /// all-ones), for [`pci::caps`](crate::pci::caps) and the restore planner.
    pub fn view(&self) -> SavedView<'a> {
        SavedView::new(self.config)
    }

    /// The standard capabilities in list order, walked by [`caps::walk`] (loop and bounds
    /// protection); a malformed list is cut at the fault.
    pub fn capabilities(&self) -> Vec<Cap> {
        caps::walk(self.view()).map_while(Result::ok).collect()
    }

    /// Offset of the first standard capability with this ID.
    pub fn find_cap(&self, id: u8) -> Option<u16> {
        self.capabilities()
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.offset)
    }

    /// The bytes of the first standard capability with this ID: from its header to the next
    /// capability above it, or to the end of conventional space (capabilities carry no length,
    /// so this is an upper bound).
    pub fn capability(&self, id: u8) -> Option<&'a [u8]> {
        let caps = self.capabilities();
        let start = caps.iter().find(|c| c.id == id)?.offset;
        let conventional = self.config.len().min(usize::from(reg::EXT_CAP_START));
        let end = caps
            .iter()
            .map(|c| c.offset)
            .filter(|&o| o > start)
            .min()
            .map_or(conventional, usize::from);
        self.config.get(usize::from(start)..end)
    }

    /// PCIe extended capabilities in list order (4096-byte records only), walked by
    /// [`caps::walk_ext`]; a malformed list is cut at the fault.
    pub fn ext_capabilities(&self) -> Vec<ExtCap> {
        caps::walk_ext(self.view()).map_while(Result::ok).collect()
    }

    /// Offset of the first extended capability with this ID.
    pub fn find_ext_cap(&self, id: u16) -> Option<u16> {
        self.ext_capabilities()
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.offset)
    }

    /// The bytes of the first extended capability with this ID, up to the next extended
    /// capability above it or the end of the space.
    pub fn ext_capability(&self, id: u16) -> Option<&'a [u8]> {
        let caps = self.ext_capabilities();
        let start = caps.iter().find(|c| c.id == id)?.offset;
        let end = caps
            .iter()
            .map(|c| c.offset)
            .filter(|&o| o > start)
            .min()
            .map_or(self.config.len(), usize::from);
        self.config.get(usize::from(start)..end)
    }
}

fn le16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Builds the record header for `config` at `bdf`: the single definition of every summary
/// field, used by the writer to fill them and by the parser to check them.
fn summarize(bdf: Bdf, config: &[u8]) -> Result<RecordRaw, RecordProblem> {
    let cfg_len = config.len();
    if !CFG_LENS.contains(&cfg_len) {
        return Err(RecordProblem::BadCfgLen { cfg_len });
    }
    let v = SavedView::new(config);
    let vendor = v.read16(reg::VENDOR_ID);
    if vendor == 0xFFFF || vendor == 0 {
        return Err(RecordProblem::Absent);
    }
    let header_type = v.read8(reg::HEADER_TYPE);
    let mut raw = RecordRaw {
        rec_len: U32::new((RECORD_HEADER_LEN + cfg_len) as u32),
        segment: U16::new(bdf.segment),
        bus: bdf.bus,
        dev: bdf.dev,
        func: bdf.func,
        header_type,
        cfg_len: U16::new(cfg_len as u16),
        vendor: U16::new(vendor),
        device: U16::new(v.read16(reg::DEVICE_ID)),
        class: [
            v.read8(reg::PROG_IF),
            v.read8(reg::SUBCLASS),
            v.read8(reg::CLASS),
        ],
        flags: 0,
        primary_bus: 0,
        secondary_bus: 0,
        subordinate_bus: 0,
        reserved: 0,
        io_base: U32::ZERO,
        io_limit: U32::ZERO,
        mem_base: U32::ZERO,
        mem_limit: U32::ZERO,
        pref_base: U64::ZERO,
        pref_limit: U64::ZERO,
    };
    if header_type & !header_type::MULTI_FUNCTION == header_type::BRIDGE {
        raw.flags = FLAG_BRIDGE;
        raw.primary_bus = v.read8(reg::PRIMARY_BUS);
        raw.secondary_bus = v.read8(reg::SECONDARY_BUS);
        raw.subordinate_bus = v.read8(reg::SUBORDINATE_BUS);
        let w = bridge::windows(&v);
        raw.io_base = U32::new(w.io.base);
        raw.io_limit = U32::new(w.io.limit);
        raw.mem_base = U32::new(w.mem.base);
        raw.mem_limit = U32::new(w.mem.limit);
        raw.pref_base = U64::new(w.pref.base);
        raw.pref_limit = U64::new(w.pref.limit);
    }
    Ok(raw)
}

/// The first summary field in which `stored` differs from `derived`, named for the error.
fn first_difference(stored: &RecordRaw, derived: &RecordRaw) -> Option<&'static str> {
    let s = stored;
    let d = derived;
    let checks: [(bool, &'static str); 9] = [
        (s.header_type == d.header_type, "header type"),
        (s.vendor == d.vendor, "vendor ID"),
        (s.device == d.device, "device ID"),
        (s.class == d.class, "class code"),
        (s.flags == d.flags, "flags"),
        (
            (s.primary_bus, s.secondary_bus, s.subordinate_bus)
                == (d.primary_bus, d.secondary_bus, d.subordinate_bus),
            "bus numbers",
        ),
        (s.reserved == d.reserved, "reserved byte"),
        (
            (s.io_base, s.io_limit, s.mem_base, s.mem_limit)
                == (d.io_base, d.io_limit, d.mem_base, d.mem_limit),
            "I/O or memory window",
        ),
        (
            (s.pref_base, s.pref_limit) == (d.pref_base, d.pref_limit),
            "prefetchable window",
        ),
    ];
    let first = checks.iter().find(|(same, _)| !same).map(|&(_, f)| f);
    // Address, lengths are checked before; anything else would be a new field missed above.
    debug_assert!(first.is_some() || stored == derived);
    first
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Builds a blob. Records may be added in any order; [`BlobWriter::finish`] sorts them.
///
/// ```
/// # use rkdump_devices::blob::{Blob, BlobWriter};
/// # use rkdump_devices::pci::Bdf;
/// let mut cfg = [0u8; 256];
/// cfg[..4].copy_from_slice(&[0xf4, 0x1a, 0x42, 0x10]); // virtio-blk 1af4:1042
/// let mut w = BlobWriter::new("6.8.0-rkdump", [7; 16], 1_700_000_000);
/// w.add(Bdf::new(0, 0, 4, 0).unwrap(), &cfg)?;
/// let bytes = w.finish();
/// let blob = Blob::parse(&bytes)?;
/// assert_eq!(blob.find(Bdf::new(0, 0, 4, 0).unwrap()).unwrap().device(), 0x1042);
/// # Ok::<(), rkdump_devices::blob::BlobError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BlobWriter {
    release: [u8; RELEASE_LEN],
    boot_id: [u8; 16],
    timestamp: u64,
    records: BTreeMap<(u16, u8, u8, u8), Vec<u8>>,
}

impl BlobWriter {
    /// A writer for a snapshot of kernel `release` (cut at a NUL and to 64 bytes on a character
    /// boundary), boot `boot_id`, taken at `timestamp` (Unix seconds).
    pub fn new(release: &str, boot_id: [u8; 16], timestamp: u64) -> Self {
        let mut text = release.split('\0').next().unwrap_or("");
        let mut cut = text.len().min(RELEASE_LEN - 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text = &text[..cut];
        let mut field = [0u8; RELEASE_LEN];
        field[..text.len()].copy_from_slice(text.as_bytes());
        Self {
            release: field,
            boot_id,
            timestamp,
            records: BTreeMap::new(),
        }
    }

    /// Adds function `bdf` with its configuration space (64, 256 or 4096 bytes as read).
    /// Refuses a bad address or length, an absent function, a second record for the same
    /// address, and more than [`MAX_RECORDS`] records.
    pub fn add(&mut self, bdf: Bdf, config: &[u8]) -> Result<&mut Self, BlobError> {
        let index = self.records.len() as u32;
        let bad = |why| BlobError::BadRecord { index, why };
        if !bdf.is_valid() {
            return Err(bad(RecordProblem::BadAddress));
        }
        let key = bdf_key(bdf);
        if self.records.contains_key(&key) {
            return Err(bad(RecordProblem::OutOfOrder));
        }
        if self.records.len() >= MAX_RECORDS {
            return Err(BlobError::TooManyRecords {
                count: index.saturating_add(1),
            });
        }
        let raw = summarize(bdf, config).map_err(bad)?;
        let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + config.len());
        rec.extend_from_slice(raw.as_bytes());
        rec.extend_from_slice(config);
        self.records.insert(key, rec);
        Ok(self)
    }

    /// Records added so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes [`BlobWriter::finish`] will return (at most 17 MiB: 4096 records of 4152 bytes).
    pub fn blob_len(&self) -> usize {
        HEADER_LEN + self.records.values().map(Vec::len).sum::<usize>()
    }

    /// The blob: header, then the records in address order.
    pub fn finish(&self) -> Vec<u8> {
        let total = self.blob_len();
        let hdr = HeaderRaw {
            magic: MAGIC,
            version: U16::new(VERSION),
            header_len: U16::new(HEADER_LEN as u16),
            total_len: U32::new(total as u32),
            record_count: U32::new(self.records.len() as u32),
            crc32: U32::ZERO,
            timestamp: U64::new(self.timestamp),
            boot_id: self.boot_id,
            release: self.release,
            reserved: [0; 15],
        };
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(hdr.as_bytes());
        for rec in self.records.values() {
            out.extend_from_slice(rec);
        }
        let crc = blob_crc(&out);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests;
