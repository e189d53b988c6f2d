//! What the driver uses from Identify Controller and Identify Namespace (§5.15.2).

use alloc::string::String;

use super::NvmeError;
use crate::block::{ByteOrder, ident_string};

/// What the driver uses from Identify Controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerId {
    /// PCI vendor ID.
    pub vid: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// Maximum Data Transfer Size (0 = no limit).
    pub mdts: u8,
    /// Number of namespaces.
    pub nn: u32,
    /// A volatile write cache is present (so Flush matters).
    pub vwc: bool,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

impl ControllerId {
    /// Parses the 4 KiB Identify Controller data structure.
    pub fn parse(b: &[u8]) -> Result<Self, NvmeError> {
        if b.len() < 4096 {
            return Err(NvmeError::BadIdentify {
                what: "controller data shorter than 4 KiB",
            });
        }
        Ok(ControllerId {
            vid: le16(b, 0),
            serial: ident_string(&b[4..24], ByteOrder::Plain),
            model: ident_string(&b[24..64], ByteOrder::Plain),
            firmware: ident_string(&b[64..72], ByteOrder::Plain),
            mdts: b[77],
            nn: le32(b, 516),
            vwc: b[525] & 1 != 0,
        })
    }
}

/// What the driver uses from Identify Namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceId {
    /// Namespace size in logical blocks.
    pub nsze: u64,
    /// log2 of the logical block size of the formatted LBA format.
    pub lba_shift: u32,
}

impl NamespaceId {
    /// Parses the 4 KiB Identify Namespace data structure; refuses formats the driver cannot
    /// write without extra buffers (metadata) and block sizes outside 512..=4096.
    pub fn parse(b: &[u8]) -> Result<Self, NvmeError> {
        if b.len() < 4096 {
            return Err(NvmeError::BadIdentify {
                what: "namespace data shorter than 4 KiB",
            });
        }
        let nsze = le64(b, 0);
        if nsze == 0 {
            return Err(NvmeError::NoNamespace);
        }
        let nlbaf = b[25];
        let flbas = b[26];
        // FLBAS bits 3:0, extended by bits 6:5 in NVMe 2.0 for more than 16 formats.
        let idx = (flbas & 0xF) | (((flbas >> 5) & 0x3) << 4);
        if idx > nlbaf {
            return Err(NvmeError::BadIdentify {
                what: "FLBAS selects a format beyond NLBAF",
            });
        }
        let lbaf = le32(b, 128 + 4 * usize::from(idx));
        let ms = lbaf & 0xFFFF;
        let lbads = (lbaf >> 16) & 0xFF;
        if ms != 0 {
            return Err(NvmeError::Unsupported {
                what: "LBA format with metadata",
                value: u64::from(ms),
            });
        }
        if !(9..=12).contains(&lbads) {
            return Err(NvmeError::Unsupported {
                what: "logical block size",
                value: u64::from(lbads),
            });
        }
        Ok(NamespaceId {
            nsze,
            lba_shift: lbads,
        })
    }
}
