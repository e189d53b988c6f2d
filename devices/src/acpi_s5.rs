//! Finds the `\_S5_` sleep-type package in DSDT/SSDT AML so rkdump can power off (ACPI S5)
//! without an AML interpreter. Firmware bytes are untrusted: every read is bounds-checked.

/// SLP_TYPa / SLP_TYPb values for S5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S5 {
    /// Value for PM1a_CNT.SLP_TYP.
    pub slp_typ_a: u16,
    /// Value for PM1b_CNT.SLP_TYP.
    pub slp_typ_b: u16,
}

/// Reads one integer data object (ZeroOp, OneOp, BytePrefix, WordPrefix, DWordPrefix).
fn integer(aml: &[u8], at: usize) -> Option<(u64, usize)> {
    match *aml.get(at)? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0xFF => Some((u64::MAX, 1)),
        0x0A => Some((u64::from(*aml.get(at + 1)?), 2)),
        0x0B => Some((
            u64::from(u16::from_le_bytes([*aml.get(at + 1)?, *aml.get(at + 2)?])),
            3,
        )),
        0x0C => {
            let b = aml.get(at + 1..at + 5)?;
            Some((u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])), 5))
        }
        _ => None,
    }
}

/// Searches `aml` (the table body after the 36-byte header) for `Name(_S5_, Package(){a, b, ...})`.
pub fn find_s5(aml: &[u8]) -> Option<S5> {
    let mut i = 0;
    while let Some(pos) = aml.get(i..)?.windows(4).position(|w| w == b"_S5_") {
        let at = i + pos;
        i = at + 4;
        // NameOp must precede the name, directly or through a root prefix '\'.
        let name_op = match at.checked_sub(1).and_then(|p| aml.get(p)) {
            Some(0x08) => true,
            Some(0x5C) => at.checked_sub(2).and_then(|p| aml.get(p)) == Some(&0x08),
            _ => false,
        };
        if !name_op || aml.get(at + 4) != Some(&0x12) {
            continue;
        }
        let lead = *aml.get(at + 5)?;
        let pkg_len_bytes = 1 + usize::from(lead >> 6);
        let mut p = at + 5 + pkg_len_bytes + 1; // skip PkgLength and NumElements
        let Some((a, n)) = integer(aml, p) else {
            continue;
        };
        p += n;
        let b = integer(aml, p).map_or(a, |(v, _)| v);
        return Some(S5 {
            slp_typ_a: (a & 7) as u16,
            slp_typ_b: (b & 7) as u16,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_style_package() {
        // Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let aml = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            find_s5(&aml),
            Some(S5 {
                slp_typ_a: 0,
                slp_typ_b: 0
            })
        );
    }

    #[test]
    fn byte_prefixed_values_and_root_prefix() {
        let aml = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 0x07, 0x0A, 0x05, 0x00,
            0x00,
        ];
        assert_eq!(
            find_s5(&aml),
            Some(S5 {
                slp_typ_a: 7,
                slp_typ_b: 5
            })
        );
    }

    #[test]
    fn not_a_name_or_truncated() {
        assert_eq!(find_s5(b"xx_S5_yy"), None);
        assert_eq!(find_s5(&[0x08, b'_', b'S', b'5', b'_', 0x12]), None);
        assert_eq!(find_s5(&[]), None);
        // Method reference to _S5_ first, real package later.
        let aml = [
            0x70, b'_', b'S', b'5', b'_', 0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x0A,
            0x03, 0x01,
        ];
        assert_eq!(
            find_s5(&aml),
            Some(S5 {
                slp_typ_a: 3,
                slp_typ_b: 1
            })
        );
    }
}
