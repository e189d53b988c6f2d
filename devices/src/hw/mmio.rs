//! Memory-mapped device registers: a window a driver owns, with width-exact volatile accessors
//! that never leave it (out-of-window reads return all-ones, like a device that fell off the bus).

#![allow(unsafe_code)]

/// A window of memory-mapped device registers (identity-mapped, uncached).
#[derive(Debug)]
pub struct Mmio {
    base: usize,
    len: usize,
}

impl Mmio {
    /// # Safety
    /// `[base, base + len)` must be mapped uncached, belong to one device this `Mmio` alone
    /// drives, and stay mapped for the lifetime of the value.
    pub unsafe fn new(base: u64, len: usize) -> Self {
        Mmio {
            base: base as usize,
            len,
        }
    }

    /// Physical base address.
    pub fn base(&self) -> u64 {
        self.base as u64
    }

    /// Length of the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: usize, width: usize) -> Option<usize> {
        if off.is_multiple_of(width) && off.checked_add(width)? <= self.len {
            Some(self.base + off)
        } else {
            None
        }
    }

    /// Reads a 32-bit register; out-of-window or misaligned offsets read as all-ones, like a
    /// device that fell off the bus.
    pub fn read32(&self, off: usize) -> u32 {
        match self.check(off, 4) {
            // SAFETY: in-window, aligned, and the constructor's contract makes it device memory.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
            None => u32::MAX,
        }
    }

    /// Writes a 32-bit register; out-of-window writes are dropped.
    pub fn write32(&self, off: usize, v: u32) {
        if let Some(a) = self.check(off, 4) {
            // SAFETY: as for `read32`.
            unsafe { core::ptr::write_volatile(a as *mut u32, v) }
        }
    }

    /// Reads a 16-bit register.
    pub fn read16(&self, off: usize) -> u16 {
        match self.check(off, 2) {
            // SAFETY: as for `read32`.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u16) },
            None => u16::MAX,
        }
    }

    /// Writes a 16-bit register.
    pub fn write16(&self, off: usize, v: u16) {
        if let Some(a) = self.check(off, 2) {
            // SAFETY: as for `read32`.
            unsafe { core::ptr::write_volatile(a as *mut u16, v) }
        }
    }

    /// Reads an 8-bit register.
    pub fn read8(&self, off: usize) -> u8 {
        match self.check(off, 1) {
            // SAFETY: as for `read32`.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u8) },
            None => u8::MAX,
        }
    }

    /// Writes an 8-bit register.
    pub fn write8(&self, off: usize, v: u8) {
        if let Some(a) = self.check(off, 1) {
            // SAFETY: as for `read32`.
            unsafe { core::ptr::write_volatile(a as *mut u8, v) }
        }
    }

    /// Reads a 64-bit register as two 32-bit reads, low half first (the order NVMe and virtio
    /// allow for devices without 64-bit access).
    pub fn read64(&self, off: usize) -> u64 {
        u64::from(self.read32(off)) | (u64::from(self.read32(off + 4)) << 32)
    }

    /// Writes a 64-bit register as two 32-bit writes, low half first.
    pub fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
}
