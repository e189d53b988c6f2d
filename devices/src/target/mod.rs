//! Dump targets smaller than a whole disk: a labelled partition ([`partition`] reads the table,
//! untrusted) and the blocks of a preallocated file ([`mapped`] turns either into a
//! [`BlockDevice`] restricted to its runs). The kernel orchestrates; the decisions (which
//! partition carries a label that fits it) are made here, host-tested.
//!
//! The guarantee of the whole-disk target holds for both: rkdump writes only where the rkdump
//! label read from the medium, inside the range, allows, and never outside the range, which
//! the [`mapped::Mapped`] device enforces per request.

#![forbid(unsafe_code)]

pub mod mapped;
pub mod partition;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use alloc::string::String;

use crate::blob::filemap::FileMap;
use crate::block::BlockDevice;
use crate::disk::{self, NotDumpDisk};
use crate::hw::{DmaAllocator, alloc_dma_mem};
use crate::label::{LABEL_BYTES, Label};
use mapped::{MapError, Mapped};
use partition::{Partition, Table, TableError};

/// Bytes of the bounce buffer the partition table and the partitions' labels are read through
/// (one per disk searched).
pub const TABLE_BOUNCE: usize = 16 << 10;
const _: () = assert!(TABLE_BOUNCE >= LABEL_BYTES);

/// What [`find_labelled_partition`] found on a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSearch {
    /// The table.
    pub table: Table,
    /// The first partition (in table order) carrying a valid label that fits inside it.
    pub found: Option<(Partition, Label)>,
    /// Partitions looked at and why each is not a dump target.
    pub rejected: Vec<(u32, NotDumpDisk)>,
}

/// Why a disk's partitions were not searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchError {
    /// No DMA memory for the bounce buffer.
    NoMemory,
    /// No usable partition table.
    Table(TableError),
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchError::NoMemory => f.write_str("no DMA memory"),
            SearchError::Table(e) => write!(f, "{e}"),
        }
    }
}

/// Reads `dev`'s partition table and the label at the start of each partition, checking each
/// label's capacity against its partition's size. Reads only; writes nothing.
pub fn find_labelled_partition(
    dev: &mut dyn BlockDevice,
    dma: &mut dyn DmaAllocator,
) -> Result<PartitionSearch, SearchError> {
    let info = dev.info();
    let bs = u64::from(info.block_size);
    let bounce = alloc_dma_mem(dma, TABLE_BOUNCE, 4096, false).ok_or(SearchError::NoMemory)?;
    let mut read = |lba: u64, buf: &mut [u8]| -> bool {
        let per = TABLE_BOUNCE / bs as usize;
        for (k, chunk) in buf.chunks_mut(per * bs as usize).enumerate() {
            let at = lba + (k * per) as u64;
            if dev.read(at, bounce.phys(0), chunk.len() as u64).is_err() {
                return false;
            }
            bounce.copy_out(0, chunk);
        }
        true
    };
    let table = partition::read_table(&mut read, info.block_size, info.blocks)
        .map_err(SearchError::Table)?;
    let mut rejected = Vec::new();
    let mut found = None;
    // Each label is read through the same bounce buffer (DMA memory is never freed).
    let mut raw = alloc::vec![0u8; LABEL_BYTES];
    for p in &table.partitions {
        let bytes = p.blocks.saturating_mul(bs);
        if bytes < LABEL_BYTES as u64 {
            rejected.push((p.number, NotDumpDisk::NoLabel(crate::label::Error::Short)));
            continue;
        }
        let checked = dev
            .read(p.first_lba, bounce.phys(0), LABEL_BYTES as u64)
            .map_err(NotDumpDisk::Io)
            .and_then(|()| {
                bounce.copy_out(0, &mut raw);
                disk::check_label(&raw, bytes)
            });
        match checked {
            Ok(label) => {
                found = Some((*p, label));
                break;
            }
            Err(e) => rejected.push((p.number, e)),
        }
    }
    Ok(PartitionSearch {
        table,
        found,
        rejected,
    })
}

/// Why a file map does not lead to a writable file on the device it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileTargetError {
    /// The device is not the disk the map was made on (size or block size differ).
    OtherDisk {
        /// Blocks the device has.
        blocks: u64,
        /// Its block size.
        block_size: u32,
    },
    /// The runs do not fit the device.
    Map(MapError),
    /// No valid label at the file's first block (or one claiming more than the runs hold).
    Label(NotDumpDisk),
    /// A valid label, but not the file's: another uuid than the map's.
    WrongLabel,
}

impl fmt::Display for FileTargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileTargetError::OtherDisk { blocks, block_size } => write!(
                f,
                "not the disk of the file map (it has {blocks} blocks of {block_size} bytes)"
            ),
            FileTargetError::Map(e) => write!(f, "file map: {e}"),
            FileTargetError::Label(e) => write!(f, "label at the file's first block: {e}"),
            FileTargetError::WrongLabel => {
                f.write_str("label at the file's first block belongs to another file")
            }
        }
    }
}

/// Opens the file of `map` on `dev`: checks the device is the map's disk, maps the runs, and
/// reads the label at the file's first block from the medium (valid, the map's uuid, no bigger
/// than the runs). Only reads. The returned device writes nowhere but the file's blocks.
pub fn open_file<D: BlockDevice>(
    dev: D,
    dma: &mut dyn DmaAllocator,
    map: &FileMap,
    name: String,
) -> Result<(Mapped<D>, Label), FileTargetError> {
    let info = dev.info();
    if info.blocks != map.disk_blocks || info.block_size != map.block_size {
        return Err(FileTargetError::OtherDisk {
            blocks: info.blocks,
            block_size: info.block_size,
        });
    }
    let mut file = Mapped::new(dev, map.runs.clone(), name).map_err(FileTargetError::Map)?;
    let label = disk::read_label(&mut file, dma).map_err(FileTargetError::Label)?;
    if label.uuid != map.label_uuid {
        return Err(FileTargetError::WrongLabel);
    }
    Ok((file, label))
}
