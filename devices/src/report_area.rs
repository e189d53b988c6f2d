//! The crash report's place in a dump record: the rest of the record-header page, from byte
//! 0x200 (docs/dump-format.md#crash-report-area). It rides in the same 4 KiB write as every
//! header update, so it is on disk from the first header write on, and `rkdumpctl save` (which
//! rewrites only the first 176 bytes) leaves it alone.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 8 | magic `RKDUMPRP` |
//! | 0x08 | 4 | version, 1 |
//! | 0x0C | 4 | text_len: bytes of text, at most [`MAX_TEXT`] |
//! | 0x10 | 4 | crc32: CRC-32/ISO-HDLC of the text |
//! | 0x14 | 4 | reserved, 0 |
//! | 0x18 | text_len | the report text (UTF-8), then zeros to the end of the page |

use alloc::string::String;
use core::fmt;

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::label::{CRC32, HEADER_BYTES};

/// Offset of the area inside the record-header page (the header's own sector comes first).
pub const OFFSET: usize = 0x200;
/// Bytes of the area.
pub const AREA_BYTES: usize = HEADER_BYTES - OFFSET;
/// Most text bytes it holds.
pub const MAX_TEXT: usize = AREA_BYTES - HEAD_SIZE;
const MAGIC: [u8; 8] = *b"RKDUMPRP";
const VERSION: u32 = 1;

/// The area's fixed head.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct ReportHead {
    magic: [u8; 8], // 0x00
    version: U32,   // 0x08
    text_len: U32,  // 0x0C
    crc32: U32,     // 0x10: over the text
    reserved: U32,  // 0x14
}
const HEAD_SIZE: usize = 24;
const _: () = assert!(size_of::<ReportHead>() == HEAD_SIZE);
const _: () = assert!(OFFSET + HEAD_SIZE + MAX_TEXT == HEADER_BYTES);

/// Why a stored report could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No report was stored (no magic: an older rkdump, or the report was not written).
    Absent,
    /// Unknown version.
    Version(u32),
    /// `text_len` larger than the area.
    Length(u32),
    /// The text does not match its CRC.
    Crc,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Absent => f.write_str("no crash report stored in the record"),
            Error::Version(v) => write!(f, "crash report area version {v} unknown"),
            Error::Length(l) => write!(f, "crash report length {l} exceeds the area"),
            Error::Crc => f.write_str("crash report text fails its CRC"),
        }
    }
}

/// The area for `text`, cut at [`MAX_TEXT`] bytes (on a character boundary): exactly
/// [`AREA_BYTES`] bytes, to be placed at [`OFFSET`] of the header page.
pub fn encode(text: &str) -> [u8; AREA_BYTES] {
    let mut cut = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let body = &text.as_bytes()[..cut];
    let head = ReportHead {
        magic: MAGIC,
        version: U32::new(VERSION),
        text_len: U32::new(cut as u32),
        crc32: U32::new(CRC32.checksum(body)),
        reserved: U32::new(0),
    };
    let mut out = [0u8; AREA_BYTES];
    out[..HEAD_SIZE].copy_from_slice(head.as_bytes());
    out[HEAD_SIZE..HEAD_SIZE + cut].copy_from_slice(body);
    out
}

/// The report text stored in the header page `page` (the [`HEADER_BYTES`] at the label's
/// `data_offset`).
pub fn parse(page: &[u8]) -> Result<String, Error> {
    let area = page.get(OFFSET..).ok_or(Error::Absent)?;
    let (head, rest) = ReportHead::read_from_prefix(area).map_err(|_| Error::Absent)?;
    if head.magic != MAGIC {
        return Err(Error::Absent);
    }
    if head.version.get() != VERSION {
        return Err(Error::Version(head.version.get()));
    }
    let len = head.text_len.get();
    let text = rest
        .get(..len as usize)
        .filter(|_| len as usize <= MAX_TEXT)
        .ok_or(Error::Length(len))?;
    if CRC32.checksum(text) != head.crc32.get() {
        return Err(Error::Crc);
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn page_with(text: &str) -> alloc::vec::Vec<u8> {
        let mut page = vec![0u8; HEADER_BYTES];
        page[OFFSET..].copy_from_slice(&encode(text));
        page
    }

    #[test]
    fn round_trip() {
        let page = page_with("panic: sysrq triggered crash\n");
        assert_eq!(parse(&page).unwrap(), "panic: sysrq triggered crash\n");
        // The record header's own bytes are untouched.
        assert!(page[..OFFSET].iter().all(|&b| b == 0));
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let text = "é".repeat(MAX_TEXT);
        let got = parse(&page_with(&text)).unwrap();
        assert_eq!(got.len(), MAX_TEXT - MAX_TEXT % 2);
        assert!(text.starts_with(&got));
    }

    #[test]
    fn absent_damaged_and_foreign_areas_are_refused() {
        assert_eq!(parse(&vec![0u8; HEADER_BYTES]), Err(Error::Absent));
        assert_eq!(parse(&[0u8; 100]), Err(Error::Absent));
        let mut page = page_with("some report");
        page[OFFSET + HEAD_SIZE + 3] ^= 1;
        assert_eq!(parse(&page), Err(Error::Crc));
        let mut page = page_with("some report");
        page[OFFSET + 0x0C..OFFSET + 0x10].copy_from_slice(&10_000u32.to_le_bytes());
        assert_eq!(parse(&page), Err(Error::Length(10_000)));
        let mut page = page_with("some report");
        page[OFFSET + 8] = 2;
        assert_eq!(parse(&page), Err(Error::Version(2)));
    }
}
