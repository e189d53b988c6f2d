//! Register access for the block drivers: one trait over [`Mmio`] on hardware and simulated
//! controllers in host tests.

use crate::hw::Mmio;

/// Register window access. NVMe and AHCI registers are 32-bit; virtio's common configuration
/// also has 8- and 16-bit fields. Implementations override every width the device needs ([`Mmio`]
/// does); the provided narrow accessors go through the aligned dword so a 32-bit-only
/// simulation can still serve them.
pub trait Regs {
    /// Reads the 32-bit register at byte offset `off`.
    fn read32(&self, off: usize) -> u32;
    /// Writes the 32-bit register at byte offset `off`.
    fn write32(&self, off: usize, v: u32);
    /// Window length in bytes; unbounded unless the implementation knows better.
    fn size(&self) -> usize {
        usize::MAX
    }
    /// Reads the byte at `off`.
    fn read8(&self, off: usize) -> u8 {
        (self.read32(off & !3) >> (8 * (off & 3))) as u8
    }
    /// Reads the 16-bit register at `off`.
    fn read16(&self, off: usize) -> u16 {
        (self.read32(off & !3) >> (8 * (off & 2))) as u16
    }
    /// Writes the byte at `off` (read-modify-write of the aligned dword unless overridden).
    fn write8(&self, off: usize, v: u8) {
        let shift = 8 * (off & 3);
        let old = self.read32(off & !3) & !(0xFF << shift);
        self.write32(off & !3, old | (u32::from(v) << shift));
    }
    /// Writes the 16-bit register at `off` (read-modify-write of the aligned dword unless
    /// overridden).
    fn write16(&self, off: usize, v: u16) {
        let shift = 8 * (off & 2);
        let old = self.read32(off & !3) & !(0xFFFF << shift);
        self.write32(off & !3, old | (u32::from(v) << shift));
    }
    /// Reads a 64-bit register as two 32-bit reads, low half first (NVMe 1.4 §3.1 and virtio
    /// 1.2 §4.1.3.1 allow that).
    fn read64(&self, off: usize) -> u64 {
        u64::from(self.read32(off)) | (u64::from(self.read32(off + 4)) << 32)
    }
    /// Writes a 64-bit register as two 32-bit writes, low half first.
    fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
}

impl Regs for Mmio {
    fn read32(&self, off: usize) -> u32 {
        Mmio::read32(self, off)
    }
    fn write32(&self, off: usize, v: u32) {
        Mmio::write32(self, off, v)
    }
    fn size(&self) -> usize {
        self.len()
    }
    fn read8(&self, off: usize) -> u8 {
        Mmio::read8(self, off)
    }
    fn read16(&self, off: usize) -> u16 {
        Mmio::read16(self, off)
    }
    fn write8(&self, off: usize, v: u8) {
        Mmio::write8(self, off, v)
    }
    fn write16(&self, off: usize, v: u16) {
        Mmio::write16(self, off, v)
    }
}

impl<T: Regs + ?Sized> Regs for &T {
    fn read32(&self, off: usize) -> u32 {
        (**self).read32(off)
    }
    fn write32(&self, off: usize, v: u32) {
        (**self).write32(off, v)
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    fn read8(&self, off: usize) -> u8 {
        (**self).read8(off)
    }
    fn read16(&self, off: usize) -> u16 {
        (**self).read16(off)
    }
    fn write8(&self, off: usize, v: u8) {
        (**self).write8(off, v)
    }
    fn write16(&self, off: usize, v: u16) {
        (**self).write16(off, v)
    }
    fn read64(&self, off: usize) -> u64 {
        (**self).read64(off)
    }
    fn write64(&self, off: usize, v: u64) {
        (**self).write64(off, v)
    }
}
