//! makedumpfile's kdump-compressed dump format (`rkdump.format=kdump`): the layout
//! (docs/dump-format.md#kdump-compressed-format), the per-page codecs, a bounded-memory writer
//! driven by a [`crate::pages::PageSelector`], a reader for checks, and [`compact`], which drops
//! the alignment padding from a file saved out of a disk record.
//!
//! ```text
//! block 0            disk_dump_header
//! block 1 ..         kdump_sub_header, merged ELF notes (VMCOREINFO inside)   sub_hdr_size blocks
//! bitmap 1           one bit per frame 0 .. max_mapnr: the frame exists       bitmap_blocks / 2
//! bitmap 2           the frame is dumped                                      bitmap_blocks / 2
//! descriptors        page_desc per dumped frame, in frame order (24 bytes each)
//! (zeros)            up to a multiple of Options::data_align (dropped by compact.rs)
//! data               the shared zero page, then each page compressed or raw
//! ```

pub mod abi;
pub mod batch;
pub mod codec;
pub mod compact;
pub mod lzo;
pub mod mem;
pub mod read;
mod writer;

#[cfg(test)]
mod tests;

pub use batch::{OneCpu, Parallel};
pub use codec::{Codec, Compressor};
pub use mem::KdumpMemory;
pub use read::{KdumpFile, Layout, ReadError};
pub use writer::{
    BATCH_PAGES, Error, Event, Geometry, KdumpSink, Options, Stats, WINDOW_PAGES, header_bytes,
    max_file_size, write_kdump, write_kdump_on,
};
