//! The devices crate's only `unsafe`: x86 port I/O, memory-mapped registers and byte access to
//! physical memory. Constructors are `unsafe` and state what the caller guarantees; the accessors
//! are safe once a region is owned.

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

/// DMA-visible memory rkdump owns, accessed by the CPU at its identity address.
#[derive(Debug)]
pub struct DmaMem {
    base: usize,
    len: usize,
}

impl DmaMem {
    /// # Safety
    /// `[phys, phys + len)` must be identity-mapped RAM owned exclusively by the caller (a
    /// [`crate::dma::DmaBuf`] from the kernel's allocator) for the lifetime of the value.
    pub unsafe fn new(phys: u64, len: usize) -> Self {
        DmaMem {
            base: phys as usize,
            len,
        }
    }

    /// Physical address of byte `off`.
    pub fn phys(&self, off: usize) -> u64 {
        (self.base + off) as u64
    }

    /// Length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory as bytes. Devices may write it concurrently (DMA); readers use the volatile
    /// accessors below for fields the device updates.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the constructor's contract: exclusive, mapped RAM of `len` bytes.
        unsafe { core::slice::from_raw_parts_mut(self.base as *mut u8, self.len) }
    }

    /// Volatile read of a u16 the device may update.
    pub fn read16(&self, off: usize) -> u16 {
        assert!(
            off.is_multiple_of(2) && off + 2 <= self.len,
            "DmaMem read16 out of range"
        );
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u16) }
    }

    /// Volatile read of a u32 the device may update.
    pub fn read32(&self, off: usize) -> u32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "DmaMem read32 out of range"
        );
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }

    /// Volatile write of a u16 the device reads.
    pub fn write16(&self, off: usize, v: u16) {
        assert!(
            off.is_multiple_of(2) && off + 2 <= self.len,
            "DmaMem write16 out of range"
        );
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u16, v) }
    }

    /// Volatile write of a u32 the device reads.
    pub fn write32(&self, off: usize, v: u32) {
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "DmaMem write32 out of range"
        );
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }

    /// Volatile write of a u64 the device reads.
    pub fn write64(&self, off: usize, v: u64) {
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "DmaMem write64 out of range"
        );
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u64, v) }
    }

    /// Volatile read of a u64 the device may update.
    pub fn read64(&self, off: usize) -> u64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.len,
            "DmaMem read64 out of range"
        );
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u64) }
    }
}

/// Full memory barrier: orders descriptor writes before doorbells and completion reads after
/// status reads (x86 keeps stores ordered, but the compiler must not reorder either).
pub fn fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// x86 port I/O.
pub mod port {
    #![allow(unsafe_code)]

    /// # Safety
    /// The port must belong to a device the caller owns; reads must have no side effects the
    /// caller does not intend.
    pub unsafe fn inb(port: u16) -> u8 {
        let v: u8;
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
        };
        v
    }
    /// # Safety
    /// As for [`inb`].
    pub unsafe fn inw(port: u16) -> u16 {
        let v: u16;
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags))
        };
        v
    }
    /// # Safety
    /// As for [`inb`].
    pub unsafe fn inl(port: u16) -> u32 {
        let v: u32;
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
        };
        v
    }
    /// # Safety
    /// The port must belong to a device the caller owns and the write must be one it intends.
    pub unsafe fn outb(port: u16, v: u8) {
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
        };
    }
    /// # Safety
    /// As for [`outb`].
    pub unsafe fn outw(port: u16, v: u16) {
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
        };
    }
    /// # Safety
    /// As for [`outb`].
    pub unsafe fn outl(port: u16, v: u32) {
        // SAFETY: the caller's contract.
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
        };
    }
}
