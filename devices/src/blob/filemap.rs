//! The file-target map: where the blocks of a preallocated dump file are on its disk, appended
//! by `rkdumpctl load --file` after the config blob's `total_len`. Old readers ignore bytes
//! after `total_len` (the blob format allows a loader's padding there), and a blob without the
//! map is simply a blob without a file target, so the extension is compatible both ways. The
//! map has its own magic and CRC-32 and is parsed without trusting a byte of it.
//!
//! # Format (version 1)
//!
//! All integers little-endian; at the first 8-aligned offset at or after the blob's `total_len`.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 8 | magic [`MAP_MAGIC`] = `"RKDFMAP\x01"` |
//! | 0x08 | 4 | `map_len`: 0x60 + 16 × `run_count` |
//! | 0x0C | 4 | `crc32`: CRC-32/ISO-HDLC of bytes `0 .. map_len` with this field read as zero |
//! | 0x10 | 2 | PCI segment of the disk's controller |
//! | 0x12 | 1 | bus |
//! | 0x13 | 1 | device |
//! | 0x14 | 1 | function |
//! | 0x15 | 3 | reserved, zero |
//! | 0x18 | 4 | `block_size`: the disk's logical block size (512 or 4096) |
//! | 0x1C | 4 | `run_count`, 1 ..= [`MAX_RUNS`] |
//! | 0x20 | 8 | `disk_blocks`: the whole disk's size in logical blocks, as Linux saw it |
//! | 0x28 | 8 | `part_start_lba`: first block of the partition holding the file system (information) |
//! | 0x30 | 8 | `file_bytes`: the file's size (= the label's capacity) |
//! | 0x38 | 16 | `label_uuid`: the uuid of the rkdump label at the file's first byte |
//! | 0x48 | 24 | reserved, zero |
//! | 0x60 | 16 × n | runs: `lba` (u64), `blocks` (u64), in file order, absolute on the disk |
//!
//! **Disk identity** is the controller's PCI address plus the disk's size and block size; it is
//! verified in the capture kernel by opening that function, comparing size and block size, and
//! reading the rkdump label at the first run: it must be valid, carry `label_uuid`, and claim
//! no more than the runs hold. Only then is anything written, and only through the runs.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{Blob, BlobError, CRC32};
use crate::pci::Bdf;
use crate::target::mapped::{MAX_RUNS, Run};

/// Map magic.
pub const MAP_MAGIC: [u8; 8] = *b"RKDFMAP\x01";
/// Bytes before the runs.
pub const MAP_HEADER_LEN: usize = 0x60;
/// Bytes per run.
pub const RUN_LEN: usize = 16;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct MapRaw {
    magic: [u8; 8],       // 0x00
    map_len: U32,         // 0x08
    crc32: U32,           // 0x0C
    segment: U16,         // 0x10
    bus: u8,              // 0x12
    dev: u8,              // 0x13
    func: u8,             // 0x14
    reserved0: [u8; 3],   // 0x15
    block_size: U32,      // 0x18
    run_count: U32,       // 0x1C
    disk_blocks: U64,     // 0x20
    part_start_lba: U64,  // 0x28
    file_bytes: U64,      // 0x30
    label_uuid: [u8; 16], // 0x38
    reserved1: [u8; 24],  // 0x48
}
const _: () = assert!(size_of::<MapRaw>() == MAP_HEADER_LEN);
const _: () = assert!(core::mem::offset_of!(MapRaw, label_uuid) == 0x38);

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct RunRaw {
    lba: U64,
    blocks: U64,
}
const _: () = assert!(size_of::<RunRaw>() == RUN_LEN);

/// A file target's block map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMap {
    /// The disk's controller.
    pub bdf: Bdf,
    /// Logical block size of the disk.
    pub block_size: u32,
    /// The disk's size in logical blocks.
    pub disk_blocks: u64,
    /// Where the file system's partition starts (information for the console).
    pub part_start_lba: u64,
    /// The file's size.
    pub file_bytes: u64,
    /// The uuid of the label at the file's start.
    pub label_uuid: [u8; 16],
    /// The file's blocks, in file order.
    pub runs: Vec<Run>,
}

/// Why a map is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileMapError {
    /// The blob in front of it is invalid, so where the map starts is unknown.
    Blob(BlobError),
    /// Shorter than its header or `map_len`.
    Truncated,
    /// CRC mismatch.
    BadCrc {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// A field is out of range or contradicts another.
    Bad(&'static str),
}

impl fmt::Display for FileMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileMapError::Blob(e) => write!(f, "config blob: {e}"),
            FileMapError::Truncated => f.write_str("file map truncated"),
            FileMapError::BadCrc { stored, computed } => {
                write!(f, "file map CRC {stored:#010x}, computed {computed:#010x}")
            }
            FileMapError::Bad(w) => write!(f, "file map: {w}"),
        }
    }
}

fn map_crc(bytes: &[u8]) -> u32 {
    let mut d = CRC32.digest();
    d.update(&bytes[..0x0C]);
    d.update(&[0; 4]);
    d.update(&bytes[0x10..]);
    d.finalize()
}

/// Where the map goes after a blob of `total_len` bytes.
pub fn map_offset(total_len: usize) -> usize {
    total_len.next_multiple_of(8)
}

impl FileMap {
    /// The map's bytes (append at [`map_offset`] of the blob).
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = MAP_HEADER_LEN + RUN_LEN * self.runs.len();
        let raw = MapRaw {
            magic: MAP_MAGIC,
            map_len: U32::new(len as u32),
            crc32: U32::ZERO,
            segment: U16::new(self.bdf.segment),
            bus: self.bdf.bus,
            dev: self.bdf.dev,
            func: self.bdf.func,
            reserved0: [0; 3],
            block_size: U32::new(self.block_size),
            run_count: U32::new(self.runs.len() as u32),
            disk_blocks: U64::new(self.disk_blocks),
            part_start_lba: U64::new(self.part_start_lba),
            file_bytes: U64::new(self.file_bytes),
            label_uuid: self.label_uuid,
            reserved1: [0; 24],
        };
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(raw.as_bytes());
        for r in &self.runs {
            let rr = RunRaw {
                lba: U64::new(r.lba),
                blocks: U64::new(r.blocks),
            };
            out.extend_from_slice(rr.as_bytes());
        }
        let crc = map_crc(&out);
        out[0x0C..0x10].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a map at the start of `bytes` (trailing bytes ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self, FileMapError> {
        let (raw, _) = MapRaw::read_from_prefix(bytes).map_err(|_| FileMapError::Truncated)?;
        if raw.magic != MAP_MAGIC {
            return Err(FileMapError::Bad("magic"));
        }
        let n = raw.run_count.get() as usize;
        if n == 0 || n > MAX_RUNS {
            return Err(FileMapError::Bad("run_count"));
        }
        let len = MAP_HEADER_LEN + RUN_LEN * n;
        if raw.map_len.get() as usize != len {
            return Err(FileMapError::Bad("map_len"));
        }
        let bytes = bytes.get(..len).ok_or(FileMapError::Truncated)?;
        let computed = map_crc(bytes);
        if computed != raw.crc32.get() {
            return Err(FileMapError::BadCrc {
                stored: raw.crc32.get(),
                computed,
            });
        }
        if raw.reserved0 != [0; 3] || raw.reserved1 != [0; 24] {
            return Err(FileMapError::Bad("reserved bytes not zero"));
        }
        let bdf = Bdf::new(raw.segment.get(), raw.bus, raw.dev, raw.func)
            .ok_or(FileMapError::Bad("PCI address"))?;
        let block_size = raw.block_size.get();
        if !matches!(block_size, 512 | 4096) {
            return Err(FileMapError::Bad("block_size"));
        }
        let runs: Vec<Run> = bytes[MAP_HEADER_LEN..]
            .chunks_exact(RUN_LEN)
            .filter_map(|c| RunRaw::read_from_bytes(c).ok())
            .map(|r| Run {
                lba: r.lba.get(),
                blocks: r.blocks.get(),
            })
            .collect();
        let disk_blocks = raw.disk_blocks.get();
        let mapped = crate::target::mapped::check_runs(&runs, disk_blocks)
            .map_err(|_| FileMapError::Bad("runs outside the disk, empty or overlapping"))?;
        let file_bytes = raw.file_bytes.get();
        if mapped.checked_mul(u64::from(block_size)) != Some(file_bytes) {
            return Err(FileMapError::Bad("runs do not add up to file_bytes"));
        }
        Ok(FileMap {
            bdf,
            block_size,
            disk_blocks,
            part_start_lba: raw.part_start_lba.get(),
            file_bytes,
            label_uuid: raw.label_uuid,
            runs,
        })
    }
}

/// The file map after the blob in `initrd`, if there is one: `Ok(None)` for a blob without it
/// (zeros or nothing after `total_len`).
pub fn find(initrd: &[u8]) -> Result<Option<FileMap>, FileMapError> {
    let blob = Blob::parse(initrd).map_err(FileMapError::Blob)?;
    let rest = initrd
        .get(map_offset(blob.as_bytes().len())..)
        .unwrap_or(&[]);
    if rest.len() < MAP_MAGIC.len() || rest[..MAP_MAGIC.len()] != MAP_MAGIC {
        return Ok(None);
    }
    FileMap::parse(rest).map(Some)
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::blob::BlobWriter;

    fn map() -> FileMap {
        FileMap {
            bdf: Bdf::new(0, 2, 0, 0).unwrap(),
            block_size: 512,
            disk_blocks: 1 << 20,
            part_start_lba: 2048,
            file_bytes: 3 << 20,
            label_uuid: [9; 16],
            runs: vec![
                Run {
                    lba: 100_000,
                    blocks: 4096,
                },
                Run {
                    lba: 50_000,
                    blocks: 2048,
                },
            ],
        }
    }

    fn blob() -> Vec<u8> {
        let mut cfg = vec![0u8; 64];
        cfg[..4].copy_from_slice(&[0xf4, 0x1a, 0x42, 0x10]);
        let mut w = BlobWriter::new("6.1.0", [1; 16], 2);
        w.add(Bdf::new(0, 0, 4, 0).unwrap(), &cfg).unwrap();
        w.finish()
    }

    #[test]
    fn a_blob_with_a_map_still_parses_and_the_map_round_trips() {
        let mut b = blob();
        let plain = b.clone();
        b.resize(map_offset(b.len()), 0);
        b.extend_from_slice(&map().to_bytes());
        // An old reader sees the same blob.
        assert_eq!(Blob::parse(&b).unwrap().as_bytes(), &plain[..]);
        assert_eq!(find(&b), Ok(Some(map())));
        // A blob without the map (or with a loader's zero padding) has none.
        assert_eq!(find(&plain), Ok(None));
        let mut padded = plain.clone();
        padded.resize(plain.len() + 4096, 0);
        assert_eq!(find(&padded), Ok(None));
    }

    #[test]
    fn damaged_maps_are_refused() {
        let good = map().to_bytes();
        let mut crc = good.clone();
        crc[0x60] ^= 1;
        assert!(matches!(
            FileMap::parse(&crc),
            Err(FileMapError::BadCrc { .. })
        ));
        assert_eq!(
            FileMap::parse(&good[..good.len() - 1]),
            Err(FileMapError::Truncated)
        );
        // Consistent CRCs, wrong contents.
        let bad = |f: &dyn Fn(&mut FileMap)| {
            let mut m = map();
            f(&mut m);
            FileMap::parse(&m.to_bytes())
        };
        assert_eq!(
            bad(&|m| m.file_bytes += 512),
            Err(FileMapError::Bad("runs do not add up to file_bytes"))
        );
        assert_eq!(
            bad(&|m| m.disk_blocks = 100_000),
            Err(FileMapError::Bad(
                "runs outside the disk, empty or overlapping"
            ))
        );
        assert_eq!(
            bad(&|m| m.runs[1].lba = 101_000),
            Err(FileMapError::Bad(
                "runs outside the disk, empty or overlapping"
            ))
        );
        assert_eq!(
            bad(&|m| m.block_size = 1024),
            Err(FileMapError::Bad("block_size"))
        );
        assert_eq!(
            bad(&|m| m.runs.clear()),
            Err(FileMapError::Bad("run_count"))
        );
        // A map after an invalid blob is not looked for.
        let mut b = blob();
        b[0x20] ^= 1;
        b.extend_from_slice(&good);
        assert!(matches!(find(&b), Err(FileMapError::Blob(_))));
    }
}
