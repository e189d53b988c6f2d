//! Read-only views of one function's configuration space, so the code that only reads it (the
//! capability walk in [`super::caps`], the restore planner in `reinit`) runs the same over a
//! live function ([`LiveView`]) and over bytes saved earlier ([`SavedView`]: the config blob's
//! records, the reinit engine's pre-reset snapshot).

use super::{Bdf, ConfigSpace, access_ok, reg};

/// Reads of one function's configuration space, with [`ConfigSpace`]'s rules: each access has
/// exactly the width named, and misaligned or out-of-range offsets read all-ones (as an absent
/// function does).
pub trait ConfigView {
    /// Reads a byte.
    fn read8(&self, off: u16) -> u8;
    /// Reads a 16-bit register (`off` 2-aligned).
    fn read16(&self, off: u16) -> u16;
    /// Reads a 32-bit register (`off` 4-aligned).
    fn read32(&self, off: u16) -> u32;
    /// Bytes this view reaches: 64 (a saved header), 256 or 4096.
    fn max_offset(&self) -> u16;

    /// The 64-byte type-0/1 header, read as 16 dwords.
    fn header(&self) -> [u8; reg::HEADER_LEN] {
        let mut h = [0u8; reg::HEADER_LEN];
        for (i, chunk) in h.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&self.read32(4 * i as u16).to_le_bytes());
        }
        h
    }
}

/// A live function, read through a [`ConfigSpace`].
#[derive(Clone, Copy)]
pub struct LiveView<'a> {
    cfg: &'a dyn ConfigSpace,
    bdf: Bdf,
}

impl<'a> LiveView<'a> {
    /// The function at `bdf`.
    pub fn new(cfg: &'a dyn ConfigSpace, bdf: Bdf) -> Self {
        Self { cfg, bdf }
    }

    /// The function's address.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }
}

impl ConfigView for LiveView<'_> {
    fn read8(&self, off: u16) -> u8 {
        self.cfg.read8(self.bdf, off)
    }
    fn read16(&self, off: u16) -> u16 {
        self.cfg.read16(self.bdf, off)
    }
    fn read32(&self, off: u16) -> u32 {
        self.cfg.read32(self.bdf, off)
    }
    fn max_offset(&self) -> u16 {
        self.cfg.max_offset()
    }
}

/// Configuration bytes saved earlier (the first `len` bytes of the space, as read then).
/// Bytes beyond what was saved read all-ones, like a function that does not answer.
#[derive(Clone, Copy, Debug)]
pub struct SavedView<'a> {
    bytes: &'a [u8],
}

impl<'a> SavedView<'a> {
    /// A view of `bytes`; at most 4096 of them count.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes: bytes.get(..4096).unwrap_or(bytes),
        }
    }

    /// The saved bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn read(&self, off: u16, width: u16) -> Option<u32> {
        if !access_ok(off, width, self.max_offset()) {
            return None;
        }
        let o = usize::from(off);
        let mut b = [0u8; 4];
        b[..usize::from(width)].copy_from_slice(self.bytes.get(o..o + usize::from(width))?);
        Some(u32::from_le_bytes(b))
    }
}

impl ConfigView for SavedView<'_> {
    fn read8(&self, off: u16) -> u8 {
        self.read(off, 1).map_or(u8::MAX, |v| v as u8)
    }
    fn read16(&self, off: u16) -> u16 {
        self.read(off, 2).map_or(u16::MAX, |v| v as u16)
    }
    fn read32(&self, off: u16) -> u32 {
        self.read(off, 4).unwrap_or(u32::MAX)
    }
    fn max_offset(&self) -> u16 {
        // At most 4096 bytes (see `new`), so this fits.
        self.bytes.len() as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_view_reads_width_exact_and_all_ones_outside() {
        let mut b = [0u8; 64];
        b[..4].copy_from_slice(&0x1042_1af4u32.to_le_bytes());
        let v = SavedView::new(&b);
        assert_eq!(v.max_offset(), 64);
        assert_eq!(v.read16(0), 0x1af4);
        assert_eq!(v.read16(2), 0x1042);
        assert_eq!(v.read8(1), 0x1a);
        assert_eq!(v.read32(0), 0x1042_1af4);
        assert_eq!(v.read32(2), u32::MAX, "misaligned");
        assert_eq!(v.read16(1), u16::MAX, "misaligned");
        assert_eq!(v.read8(64), u8::MAX, "beyond what was saved");
        assert_eq!(v.read32(0xFFC), u32::MAX);
        assert_eq!(v.header(), b);
        let big = [0u8; 5000];
        assert_eq!(SavedView::new(&big).max_offset(), 4096);
    }
}
