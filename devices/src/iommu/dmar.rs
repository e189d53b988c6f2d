//! The ACPI DMAR table (Intel VT-d specification, "DMA Remapping Reporting Structures"): the
//! remapping hardware units (DRHD) with their register bases. Firmware data: lengths are checked
//! against the table and each other, the walk is bounded, nothing panics.

use core::fmt;

/// Offset of the first remapping structure: 36-byte SDT header, host address width (1), flags
/// (1), reserved (10).
pub const DMAR_STRUCTURES_OFFSET: usize = 48;
/// Remapping structure type of a DMA remapping hardware unit definition.
pub const TYPE_DRHD: u16 = 0;
/// DRHD flag: the unit covers every PCI device of its segment not claimed by another unit.
pub const DRHD_INCLUDE_PCI_ALL: u8 = 1 << 0;
/// DMAR flag: the platform supports interrupt remapping.
pub const DMAR_INTR_REMAP: u8 = 1 << 0;
/// More units than this is taken as a broken table (real machines have a handful).
pub const MAX_UNITS: usize = 64;

/// One DMA remapping hardware unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drhd {
    /// PCI segment the unit serves.
    pub segment: u16,
    /// Register base (physical, 4 KiB aligned).
    pub base: u64,
    /// Register set size in bytes (from the size field; 4 KiB when it says 0).
    pub size: u64,
    /// Covers every device of the segment not listed under another unit.
    pub include_all: bool,
}

/// The parsed DMAR table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dmar {
    /// Host address width (the table stores width − 1).
    pub host_address_width: u8,
    /// Table flags ([`DMAR_INTR_REMAP`], ...).
    pub flags: u8,
    /// Remapping units in table order.
    pub units: alloc::vec::Vec<Drhd>,
    /// Remapping structures that were not DRHDs (RMRR, ATSR, ...): counted, not used.
    pub other_structures: usize,
}

/// Why the DMAR table could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarError {
    /// Shorter than its fixed part, or its signature is not "DMAR".
    NotDmar,
    /// The header's length disagrees with the bytes available.
    BadLength {
        /// The header's length field.
        length: u32,
        /// Bytes available.
        available: usize,
    },
    /// A remapping structure is shorter than its own header or runs past the table.
    BadStructure {
        /// Its offset in the table.
        offset: usize,
        /// Its length field.
        length: u16,
    },
    /// A DRHD's register base is zero or not page aligned.
    BadRegisterBase {
        /// The base.
        base: u64,
    },
    /// More than [`MAX_UNITS`] units.
    TooManyUnits,
}

impl fmt::Display for DmarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDmar => write!(f, "not a DMAR table"),
            Self::BadLength { length, available } => {
                write!(f, "DMAR length {length} but {available} bytes available")
            }
            Self::BadStructure { offset, length } => {
                write!(
                    f,
                    "DMAR structure at offset {offset} has bad length {length}"
                )
            }
            Self::BadRegisterBase { base } => write!(f, "DRHD register base {base:#x} unusable"),
            Self::TooManyUnits => write!(f, "DMAR lists more than {MAX_UNITS} units"),
        }
    }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Parses a DMAR table from its bytes (header included). The checksum is the ACPI layer's job.
pub fn parse(table: &[u8]) -> Result<Dmar, DmarError> {
    if table.len() < DMAR_STRUCTURES_OFFSET || &table[..4] != b"DMAR" {
        return Err(DmarError::NotDmar);
    }
    let length = u32_at(table, 4).ok_or(DmarError::NotDmar)?;
    let len = length as usize;
    if len < DMAR_STRUCTURES_OFFSET || len > table.len() {
        return Err(DmarError::BadLength {
            length,
            available: table.len(),
        });
    }
    let table = &table[..len];
    let mut dmar = Dmar {
        host_address_width: table[36].saturating_add(1),
        flags: table[37],
        units: alloc::vec::Vec::new(),
        other_structures: 0,
    };
    let mut off = DMAR_STRUCTURES_OFFSET;
    // Each step advances by at least 4 bytes, so the walk ends within len / 4 steps.
    while off + 4 <= len {
        let kind = u16_at(table, off).unwrap_or(u16::MAX);
        let slen = u16_at(table, off + 2).unwrap_or(0);
        if slen < 4 || off + usize::from(slen) > len {
            return Err(DmarError::BadStructure {
                offset: off,
                length: slen,
            });
        }
        let s = &table[off..off + usize::from(slen)];
        if kind == TYPE_DRHD {
            let (Some(base), true) = (u64_at(s, 8), s.len() >= 16) else {
                return Err(DmarError::BadStructure {
                    offset: off,
                    length: slen,
                });
            };
            if base == 0 || base & 0xFFF != 0 {
                return Err(DmarError::BadRegisterBase { base });
            }
            if dmar.units.len() == MAX_UNITS {
                return Err(DmarError::TooManyUnits);
            }
            // Size field bits 3:0: the register set spans 2^N 4 KiB pages.
            let pages = 1u64 << (s[5] & 0xF);
            dmar.units.push(Drhd {
                segment: u16_at(s, 6).unwrap_or(0),
                base,
                size: pages * 4096,
                include_all: s[4] & DRHD_INCLUDE_PCI_ALL != 0,
            });
        } else {
            dmar.other_structures += 1;
        }
        off += usize::from(slen);
    }
    Ok(dmar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A DMAR table as QEMU's intel-iommu builds it: one DRHD (INCLUDE_PCI_ALL, base
    /// 0xfed90000), host address width 39, interrupt remapping flag.
    pub fn qemu_like(extra: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"DMAR");
        t.extend_from_slice(&[0; 4]); // length, patched below
        t.extend_from_slice(&[1, 0]); // revision, checksum
        t.extend_from_slice(b"BOCHS BXPC    ");
        t.resize(36, 0);
        t.push(38); // width - 1
        t.push(DMAR_INTR_REMAP);
        t.resize(48, 0);
        // DRHD: type 0, length 16, flags, size, segment, base.
        t.extend_from_slice(&0u16.to_le_bytes());
        t.extend_from_slice(&16u16.to_le_bytes());
        t.push(DRHD_INCLUDE_PCI_ALL);
        t.push(0);
        t.extend_from_slice(&0u16.to_le_bytes());
        t.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
        t.extend_from_slice(extra);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    #[test]
    fn parses_one_unit_and_skips_other_structures() {
        // An RMRR (type 1) of 24 bytes after the DRHD.
        let mut rmrr = Vec::new();
        rmrr.extend_from_slice(&1u16.to_le_bytes());
        rmrr.extend_from_slice(&24u16.to_le_bytes());
        rmrr.resize(24, 0);
        let d = parse(&qemu_like(&rmrr)).unwrap();
        assert_eq!(d.host_address_width, 39);
        assert_eq!(d.flags, DMAR_INTR_REMAP);
        assert_eq!(
            d.units,
            [Drhd {
                segment: 0,
                base: 0xfed9_0000,
                size: 4096,
                include_all: true
            }]
        );
        assert_eq!(d.other_structures, 1);
    }

    #[test]
    fn hostile_tables_are_refused() {
        assert_eq!(parse(b"DMAR"), Err(DmarError::NotDmar));
        let mut t = qemu_like(&[]);
        t[0] = b'X';
        assert_eq!(parse(&t), Err(DmarError::NotDmar));
        let mut t = qemu_like(&[]);
        t[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(parse(&t), Err(DmarError::BadLength { .. })));
        // A structure of length 0 would loop forever without the check.
        let t = qemu_like(&[9, 0, 0, 0]);
        assert_eq!(
            parse(&t),
            Err(DmarError::BadStructure {
                offset: 64,
                length: 0
            })
        );
        // Length past the end.
        let t = qemu_like(&[9, 0, 200, 0]);
        assert!(matches!(parse(&t), Err(DmarError::BadStructure { .. })));
        // Misaligned register base.
        let mut t = qemu_like(&[]);
        t[56..64].copy_from_slice(&0xfed9_0010u64.to_le_bytes());
        assert_eq!(
            parse(&t),
            Err(DmarError::BadRegisterBase { base: 0xfed9_0010 })
        );
        // A DRHD shorter than its fixed part.
        let t = qemu_like(&[0, 0, 8, 0, 0, 0, 0, 0]);
        assert!(matches!(parse(&t), Err(DmarError::BadStructure { .. })));
    }

    #[test]
    fn unit_count_is_bounded() {
        let mut many = Vec::new();
        for i in 0..MAX_UNITS as u64 {
            many.extend_from_slice(&0u16.to_le_bytes());
            many.extend_from_slice(&16u16.to_le_bytes());
            many.extend_from_slice(&[0, 0, 0, 0]);
            many.extend_from_slice(&((i + 1) << 12).to_le_bytes());
        }
        assert_eq!(parse(&qemu_like(&many)), Err(DmarError::TooManyUnits));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let base = qemu_like(&[]);
        for i in 0..base.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut t = base.clone();
                t[i] = v;
                let _ = parse(&t);
                let _ = parse(&t[..i]);
            }
        }
    }
}
