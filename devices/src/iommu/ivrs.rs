//! The ACPI IVRS table (AMD I/O Virtualization Reporting Structure): detection only. rkdump
//! reports the IOMMUs it lists and does not program them; no AMD-Vi system has been tested.

/// Offset of the first IVHD block: 36-byte header, IVinfo (4), reserved (8).
pub const IVRS_BLOCKS_OFFSET: usize = 48;
/// More blocks than this is taken as a broken table.
pub const MAX_BLOCKS: usize = 64;

/// One I/O virtualization hardware definition (IVHD): type and IOMMU register base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ivhd {
    /// Block type (0x10, 0x11, 0x40).
    pub kind: u8,
    /// IOMMU base address.
    pub base: u64,
}

/// The IVHD blocks of an IVRS table, bounded; `None` when the bytes are not an IVRS table.
/// A malformed block ends the walk (what was read so far is kept).
pub fn units(table: &[u8]) -> Option<alloc::vec::Vec<Ivhd>> {
    if table.len() < IVRS_BLOCKS_OFFSET || &table[..4] != b"IVRS" {
        return None;
    }
    let len = u32::from_le_bytes(table[4..8].try_into().ok()?) as usize;
    let table = table.get(..len.min(table.len()))?;
    let mut out = alloc::vec::Vec::new();
    let mut off = IVRS_BLOCKS_OFFSET;
    while off + 24 <= table.len() && out.len() < MAX_BLOCKS {
        let kind = table[off];
        let blen = usize::from(u16::from_le_bytes([table[off + 2], table[off + 3]]));
        if blen < 24 || off + blen > table.len() {
            break;
        }
        if matches!(kind, 0x10 | 0x11 | 0x40) {
            let base = u64::from_le_bytes(table[off + 8..off + 16].try_into().ok()?);
            out.push(Ivhd { kind, base });
        }
        off += blen;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ivhd_and_survives_garbage() {
        let mut t = alloc::vec::Vec::new();
        t.extend_from_slice(b"IVRS");
        t.extend_from_slice(&[0; 44]);
        let mut ivhd = [0u8; 24];
        ivhd[0] = 0x10;
        ivhd[2] = 24;
        ivhd[8..16].copy_from_slice(&0xfeb8_0000u64.to_le_bytes());
        t.extend_from_slice(&ivhd);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            units(&t).unwrap(),
            [Ivhd {
                kind: 0x10,
                base: 0xfeb8_0000
            }]
        );
        assert!(units(b"DMAR").is_none());
        for i in 0..t.len() {
            let mut b = t.clone();
            b[i] = 0xFF;
            let _ = units(&b);
            let _ = units(&t[..i]);
        }
    }
}
