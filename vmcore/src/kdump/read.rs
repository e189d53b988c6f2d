//! Reading a kdump-compressed file back, from the format's description (docs/dump-format.md,
//! makedumpfile's `diskdump_mod.h`): what `rkdumpctl inspect` and the writer's tests use to
//! check every page. Every field is checked before use; a bad file is an error, never a panic.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use zerocopy::FromBytes;

use super::abi::{
    DISKDUMP_HEADER_BLOCKS, KDUMP_SIGNATURE, disk_dump_header, kdump_sub_header, page_desc,
};
use super::codec::{PAGE, decompress};

/// Why a file is not a readable kdump-compressed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The file ends before `what`.
    Short {
        /// The missing part.
        what: &'static str,
    },
    /// No `KDUMP   ` signature.
    Signature,
    /// A header field is out of range.
    Field {
        /// Which.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A page's descriptor or data is bad.
    Page {
        /// The frame.
        pfn: u64,
        /// What is wrong.
        what: &'static str,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReadError::Short { what } => write!(f, "file ends inside the {what}"),
            ReadError::Signature => f.write_str("no KDUMP signature"),
            ReadError::Field { what, value } => write!(f, "bad {what}: {value:#x}"),
            ReadError::Page { pfn, what } => write!(f, "page frame {pfn:#x}: {what}"),
        }
    }
}

/// Where the parts of a kdump-compressed file are, from its first [`Layout::HEAD_BYTES`] bytes
/// (block 0 and the sub-header): what [`KdumpFile::parse`] and [`super::compact`] both check.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Block 0.
    pub header: disk_dump_header,
    /// The sub-header.
    pub sub: kdump_sub_header,
    /// Frames the bitmaps cover (`max_mapnr_64`).
    pub max_mapnr: u64,
    /// File offset of bitmap 1.
    pub bitmap1_offset: u64,
    /// Bytes of each bitmap (whole blocks).
    pub bitmap_bytes: u64,
    /// File offset of the first page descriptor (the end of bitmap 2).
    pub desc_offset: u64,
}

impl Layout {
    /// Bytes [`Layout::parse`] needs: block 0 and the sub-header that starts block 1.
    pub const HEAD_BYTES: usize = PAGE + size_of::<kdump_sub_header>();

    /// Checks the headers at the start of `bytes` and finds the bitmaps and descriptors.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReadError> {
        let head = slice(
            bytes,
            0,
            size_of::<disk_dump_header>() as u64,
            "disk_dump_header",
        )?;
        let header = disk_dump_header::read_from_bytes(head).map_err(|_| ReadError::Signature)?;
        if header.signature != KDUMP_SIGNATURE {
            return Err(ReadError::Signature);
        }
        let field = |what, value: u64| ReadError::Field { what, value };
        if header.header_version < 6 {
            return Err(field("header_version", header.header_version as u64));
        }
        if header.block_size != PAGE as i32 {
            return Err(field("block_size", header.block_size as u64));
        }
        let sub_bytes = slice(
            bytes,
            PAGE as u64,
            size_of::<kdump_sub_header>() as u64,
            "sub-header",
        )?;
        let sub = kdump_sub_header::read_from_bytes(sub_bytes).map_err(|_| ReadError::Signature)?;
        // At least one block: the sub-header is read from block 1, before the bitmaps.
        let sub_blocks = u64::try_from(header.sub_hdr_size)
            .ok()
            .filter(|&b| b > 0)
            .ok_or(field("sub_hdr_size", header.sub_hdr_size as u64))?;
        let max_mapnr = sub.max_mapnr_64;
        let one = max_mapnr.div_ceil(8).div_ceil(PAGE as u64);
        if u64::from(header.bitmap_blocks) != 2 * one {
            return Err(field("bitmap_blocks", header.bitmap_blocks.into()));
        }
        // sub_hdr_size < 2^31 and bitmap_blocks < 2^32 blocks: no overflow.
        let bitmap1_offset = (DISKDUMP_HEADER_BLOCKS + sub_blocks) * PAGE as u64;
        let bitmap_bytes = one * PAGE as u64;
        Ok(Layout {
            header,
            sub,
            max_mapnr,
            bitmap1_offset,
            bitmap_bytes,
            desc_offset: bitmap1_offset + 2 * bitmap_bytes,
        })
    }

    /// File offset of bitmap 2.
    pub fn bitmap2_offset(&self) -> u64 {
        self.bitmap1_offset + self.bitmap_bytes
    }
}

/// A parsed kdump-compressed file over its bytes.
pub struct KdumpFile<'a> {
    bytes: &'a [u8],
    /// Block 0.
    pub header: disk_dump_header,
    /// The sub-header.
    pub sub: kdump_sub_header,
    max_mapnr: u64,
    bitmap1: &'a [u8],
    bitmap2: &'a [u8],
    desc_offset: u64,
}

fn slice<'a>(
    bytes: &'a [u8],
    off: u64,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], ReadError> {
    let end = off.checked_add(len).ok_or(ReadError::Short { what })?;
    let (s, e) = (usize::try_from(off), usize::try_from(end));
    match (s, e) {
        (Ok(s), Ok(e)) if e <= bytes.len() => Ok(&bytes[s..e]),
        _ => Err(ReadError::Short { what }),
    }
}

fn bit(map: &[u8], pfn: u64) -> bool {
    usize::try_from(pfn / 8)
        .ok()
        .and_then(|i| map.get(i))
        .is_some_and(|b| b & (1 << (pfn % 8)) != 0)
}

impl<'a> KdumpFile<'a> {
    /// Checks the headers and finds the bitmaps and descriptors.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ReadError> {
        let l = Layout::parse(bytes)?;
        let bitmap1 = slice(bytes, l.bitmap1_offset, l.bitmap_bytes, "bitmap 1")?;
        let bitmap2 = slice(bytes, l.bitmap2_offset(), l.bitmap_bytes, "bitmap 2")?;
        Ok(KdumpFile {
            bytes,
            header: l.header,
            sub: l.sub,
            max_mapnr: l.max_mapnr,
            bitmap1,
            bitmap2,
            desc_offset: l.desc_offset,
        })
    }

    /// Frames the bitmaps cover.
    pub fn max_mapnr(&self) -> u64 {
        self.max_mapnr
    }

    /// Where the descriptors start.
    pub fn desc_offset(&self) -> u64 {
        self.desc_offset
    }

    /// The merged ELF notes.
    pub fn notes(&self) -> Result<&'a [u8], ReadError> {
        slice(
            self.bytes,
            self.sub.offset_note as u64,
            self.sub.size_note,
            "notes",
        )
    }

    /// The VMCOREINFO text.
    pub fn vmcoreinfo(&self) -> Result<&'a [u8], ReadError> {
        slice(
            self.bytes,
            self.sub.offset_vmcoreinfo as u64,
            self.sub.size_vmcoreinfo,
            "vmcoreinfo",
        )
    }

    /// Whether the frame exists (bitmap 1).
    pub fn present(&self, pfn: u64) -> bool {
        bit(self.bitmap1, pfn)
    }

    /// Whether the frame was dumped (bitmap 2).
    pub fn dumped(&self, pfn: u64) -> bool {
        bit(self.bitmap2, pfn)
    }

    /// Calls `f(pfn, descriptor, page)` for every dumped page in frame order, decompressing each.
    pub fn for_each_page(
        &self,
        f: &mut dyn FnMut(u64, &page_desc, &[u8]),
    ) -> Result<u64, ReadError> {
        let mut page = vec![0u8; PAGE];
        let mut index = 0u64;
        for (i, &byte) in self.bitmap2.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            for b in 0..8 {
                if byte & (1 << b) == 0 {
                    continue;
                }
                let pfn = i as u64 * 8 + b;
                let desc = self.dumped_page(index, pfn, &mut page)?;
                f(pfn, &desc, &page);
                index += 1;
            }
        }
        Ok(index)
    }

    /// Bitmap 2: one bit per frame, set when the frame was dumped (random access by
    /// [`super::mem::KdumpMemory`]).
    pub fn dumped_bitmap(&self) -> &'a [u8] {
        self.bitmap2
    }

    /// Decompresses the `index`-th dumped page (the frame `pfn`, named in errors) into `out`
    /// (one page).
    pub fn read_dumped(&self, index: u64, pfn: u64, out: &mut [u8]) -> Result<(), ReadError> {
        self.dumped_page(index, pfn, out).map(|_| ())
    }

    /// [`Self::read_dumped`], returning the page's descriptor too.
    fn dumped_page(&self, index: u64, pfn: u64, out: &mut [u8]) -> Result<page_desc, ReadError> {
        let bad = |what| ReadError::Page { pfn, what };
        let at = index
            .checked_mul(size_of::<page_desc>() as u64)
            .and_then(|o| o.checked_add(self.desc_offset))
            .ok_or(bad("descriptor index out of range"))?;
        let raw = slice(self.bytes, at, size_of::<page_desc>() as u64, "descriptors")?;
        let desc = page_desc::read_from_bytes(raw).map_err(|_| bad("descriptor"))?;
        if desc.offset <= 0 || desc.size as usize > PAGE {
            return Err(bad("descriptor out of range"));
        }
        let data = slice(
            self.bytes,
            desc.offset as u64,
            desc.size.into(),
            "page data",
        )
        .map_err(|_| bad("data beyond the end of the file"))?;
        decompress(desc.flags, data, out).ok_or(bad("data does not decompress"))?;
        Ok(desc)
    }
}

/// The pages of a file, for tests: `(pfn, bytes)` in frame order.
pub fn all_pages(file: &KdumpFile<'_>) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
    let mut v = Vec::new();
    file.for_each_page(&mut |pfn, _, page| v.push((pfn, page.to_vec())))?;
    Ok(v)
}
