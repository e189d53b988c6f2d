//! What the driver uses from IDENTIFY DEVICE (ACS-3 §7.12.7).

use alloc::string::String;

use super::AhciError;
use crate::block::{ByteOrder, ident_string};

/// What the driver uses from IDENTIFY DEVICE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskId {
    /// Model number (words 27-46).
    pub model: String,
    /// Serial number (words 10-19).
    pub serial: String,
    /// Firmware revision (words 23-26).
    pub firmware: String,
    /// User-addressable sectors for 48-bit commands (words 100-103).
    pub sectors: u64,
    /// Logical sector size in bytes (words 106, 117-118).
    pub sector_size: u32,
    /// NCQ queue depth (word 75 + 1), 0 without NCQ (word 76 bit 8).
    pub ncq_depth: u8,
    /// FLUSH CACHE EXT supported (word 83 bit 13).
    pub flush_ext: bool,
}

impl DiskId {
    /// Parses the 512-byte IDENTIFY DEVICE data; refuses packet devices, bad checksums,
    /// disks without 48-bit addressing and sector sizes other than 512 or 4096.
    pub fn parse(b: &[u8]) -> Result<Self, AhciError> {
        if b.len() < 512 {
            return Err(AhciError::BadIdentify {
                what: "data shorter than 512 bytes",
            });
        }
        // Word 255: signature A5h in 7:0 means 15:8 makes the byte sum zero.
        if b[510] == 0xA5 && b[..512].iter().fold(0u8, |s, &x| s.wrapping_add(x)) != 0 {
            return Err(AhciError::BadIdentify {
                what: "checksum mismatch",
            });
        }
        let w = |i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
        if w(0) & 0x8000 != 0 {
            return Err(AhciError::BadIdentify {
                what: "not an ATA device",
            });
        }
        let valid = |v: u16| v != 0 && v != 0xFFFF;
        if !(valid(w(83)) && w(83) & (1 << 10) != 0 && w(86) & (1 << 10) != 0) {
            return Err(AhciError::Unsupported {
                what: "disk without 48-bit addressing",
                value: u64::from(w(83)),
            });
        }
        let sectors = (0..4).fold(0u64, |s, i| s | (u64::from(w(100 + i)) << (16 * i)));
        if sectors == 0 {
            return Err(AhciError::BadIdentify {
                what: "zero capacity",
            });
        }
        let w106 = w(106);
        let sector_size = if w106 & 0xC000 == 0x4000 && w106 & (1 << 12) != 0 {
            // Words 117-118 count 16-bit words; a device may claim more than a u32 of bytes.
            2 * (u64::from(w(117)) | (u64::from(w(118)) << 16))
        } else {
            512
        };
        let sector_size = match sector_size {
            512 | 4096 => sector_size as u32,
            _ => {
                return Err(AhciError::Unsupported {
                    what: "logical sector size",
                    value: sector_size,
                });
            }
        };
        let ncq_depth = if valid(w(76)) && w(76) & (1 << 8) != 0 {
            (w(75) & 0x1F) as u8 + 1
        } else {
            0
        };
        Ok(DiskId {
            model: ident_string(&b[54..94], ByteOrder::AtaWords),
            serial: ident_string(&b[20..40], ByteOrder::AtaWords),
            firmware: ident_string(&b[46..54], ByteOrder::AtaWords),
            sectors,
            sector_size,
            ncq_depth,
            flush_ext: w(83) & (1 << 13) != 0,
        })
    }
}
