//! Identify-data strings: NVMe Identify and ATA IDENTIFY DEVICE both carry space-padded ASCII,
//! ATA with the two characters of each word swapped.

use alloc::string::String;

/// How an identify string stores its characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// In order (NVMe).
    Plain,
    /// Two characters per 16-bit word, first in the high byte (ATA, ACS-3 §3.4.9).
    AtaWords,
}

/// A printable, trimmed copy of an identify string; anything but printable ASCII shows as '?'.
pub fn ident_string(b: &[u8], order: ByteOrder) -> String {
    let printable = |c: u8| {
        if (0x20..0x7F).contains(&c) {
            c as char
        } else {
            '?'
        }
    };
    let s: String = match order {
        ByteOrder::Plain => b.iter().map(|&c| printable(c)).collect(),
        ByteOrder::AtaWords => b
            .chunks_exact(2)
            .flat_map(|w| [w[1], w[0]])
            .map(printable)
            .collect(),
    };
    String::from(s.trim())
}
