//! DMA memory: the allocator contract ([`DmaAllocator`], an `unsafe trait`), the one CPU-side
//! handle on a buffer ([`DmaMem`]), and, for host tests, the bus master's side ([`BusWindow`]).
//!
//! Soundness rests on one promise: every buffer an allocator hands out is exclusively rkdump's.
//! That promise can only be made by `unsafe` code (`unsafe impl DmaAllocator`), so a safe
//! function can never mint a second [`DmaMem`] over memory another one already covers.

#![allow(unsafe_code)]

/// A DMA buffer as an allocator hands it out: `len` bytes at physical address `phys`,
/// CPU-accessible at the same address (rkdump runs identity-mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBuf {
    /// Physical (= virtual) address.
    pub phys: u64,
    /// Length in bytes.
    pub len: usize,
}

/// Hands out DMA memory. Buffers are never freed: a capture kernel runs once.
///
/// # Safety
/// Every buffer returned must be identity-mapped RAM of at least the requested length, zeroed,
/// owned by nothing else for the rest of the program (never handed out twice, never freed, not
/// rkdump's image, heap or boot data, not the crashed kernel's memory), and stay mapped.
/// [`alloc_dma_mem`] checks length, alignment and the 4 GiB limit itself; exclusivity it cannot
/// check, which is why implementing this trait is `unsafe`.
pub unsafe trait DmaAllocator {
    /// A zeroed buffer of `len` bytes aligned to `align` (a power of two, at least 4096),
    /// below 4 GiB if `below_4g` (for devices without 64-bit DMA).
    fn alloc(&mut self, len: usize, align: usize, below_4g: bool) -> Option<DmaBuf>;
}

/// Allocates DMA memory and wraps it for CPU access, checking what drivers rely on (length,
/// alignment at least 4 KiB, below 4 GiB when asked) rather than trusting the allocator for it.
pub fn alloc_dma_mem(
    alloc: &mut dyn DmaAllocator,
    len: usize,
    align: usize,
    below_4g: bool,
) -> Option<DmaMem> {
    let align = align.max(4096);
    let buf = alloc.alloc(len, align, below_4g)?;
    let end = buf.phys.checked_add(len as u64)?;
    let fits = buf.len >= len && buf.phys.is_multiple_of(align as u64);
    if !fits || (below_4g && end > 1 << 32) {
        return None;
    }
    // SAFETY: `DmaAllocator`'s contract makes the buffer exclusive, mapped and never freed, and
    // it is wrapped exactly once, here.
    Some(unsafe { DmaMem::new(buf.phys, len) })
}

/// DMA-visible memory rkdump owns, accessed by the CPU at its identity address. The only way to
/// touch DMA memory from the CPU: copies in and out, volatile scalar accessors for fields a
/// device updates, and a borrow tied to the owner for building data before a device sees it.
#[derive(Debug)]
pub struct DmaMem {
    base: usize,
    len: usize,
}

impl DmaMem {
    /// # Safety
    /// `[phys, phys + len)` must be identity-mapped RAM owned exclusively by the returned value
    /// (no other `DmaMem`, reference or allocator covers it) for the rest of the program.
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

    /// The memory as bytes, for filling in what a device reads later. No device may be using
    /// the buffer while the borrow lives; fields a device updates are read with the volatile
    /// accessors instead.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the constructor's contract: exclusive, mapped RAM of `len` bytes; `&mut self`
        // makes this the only borrow.
        unsafe { core::slice::from_raw_parts_mut(self.base as *mut u8, self.len) }
    }

    fn span(&self, off: usize, len: usize) -> *mut u8 {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "DmaMem access out of range"
        );
        (self.base + off) as *mut u8
    }

    /// Copies `out.len()` bytes from offset `off` (what a device wrote).
    pub fn copy_out(&self, off: usize, out: &mut [u8]) {
        let src = self.span(off, out.len());
        // SAFETY: in range of the owned buffer; `out` is not DMA memory (it is a Rust borrow,
        // and this value's memory is never handed out as one while `&self` is shared).
        unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) }
    }

    /// Copies `data` to offset `off` (for a device to read).
    pub fn copy_in(&mut self, off: usize, data: &[u8]) {
        let dst = self.span(off, data.len());
        // SAFETY: in range of the owned buffer, exclusively borrowed through `&mut self`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
    }

    fn aligned(&self, off: usize, width: usize) -> usize {
        assert!(off.is_multiple_of(width), "DmaMem access misaligned");
        self.span(off, width) as usize
    }

    /// Volatile read of a u16 the device may update.
    pub fn read16(&self, off: usize) -> u16 {
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::read_volatile(self.aligned(off, 2) as *const u16) }
    }

    /// Volatile read of a u32 the device may update.
    pub fn read32(&self, off: usize) -> u32 {
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::read_volatile(self.aligned(off, 4) as *const u32) }
    }

    /// Volatile read of a u64 the device may update.
    pub fn read64(&self, off: usize) -> u64 {
        // SAFETY: in range and aligned within owned memory.
        unsafe { core::ptr::read_volatile(self.aligned(off, 8) as *const u64) }
    }

    /// Volatile write of a u16 the device reads.
    pub fn write16(&self, off: usize, v: u16) {
        // SAFETY: in range and aligned within owned memory; a volatile store through a raw
        // pointer, as a device would see it, never a Rust reference.
        unsafe { core::ptr::write_volatile(self.aligned(off, 2) as *mut u16, v) }
    }

    /// Volatile write of a u32 the device reads.
    pub fn write32(&self, off: usize, v: u32) {
        // SAFETY: as for `write16`.
        unsafe { core::ptr::write_volatile(self.aligned(off, 4) as *mut u32, v) }
    }

    /// Volatile write of a u64 the device reads.
    pub fn write64(&self, off: usize, v: u64) {
        // SAFETY: as for `write16`.
        unsafe { core::ptr::write_volatile(self.aligned(off, 8) as *mut u64, v) }
    }
}

/// The bus master's side of DMA memory, for device models in host tests: copies to and from
/// physical addresses through raw pointers, never references, so it may overlap the drivers'
/// [`DmaMem`]s the way a real device's DMA does without aliasing a Rust borrow.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct BusWindow {
    base: u64,
    len: usize,
}

#[cfg(test)]
impl BusWindow {
    /// # Safety
    /// `[base, base + len)` must stay valid for reads and writes for the lifetime of the value,
    /// and no Rust borrow of that memory (such as [`DmaMem::bytes_mut`]) may be alive while the
    /// window is used (single-threaded tests: device models run inside register accesses).
    pub(crate) unsafe fn new(base: u64, len: usize) -> Self {
        BusWindow { base, len }
    }

    fn at(&self, phys: u64, len: usize) -> Option<usize> {
        let off = usize::try_from(phys.checked_sub(self.base)?).ok()?;
        (off.checked_add(len)? <= self.len).then_some(self.base as usize + off)
    }

    /// Copies from `phys` into `out`; `false` (nothing read) outside the window, where a
    /// device would master-abort.
    pub(crate) fn read(&self, phys: u64, out: &mut [u8]) -> bool {
        let Some(a) = self.at(phys, out.len()) else {
            return false;
        };
        // SAFETY: in the window the constructor vouched for; `out` is a test buffer outside it.
        unsafe { core::ptr::copy(a as *const u8, out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copies `data` to `phys`; `false` (nothing written) outside the window.
    pub(crate) fn write(&self, phys: u64, data: &[u8]) -> bool {
        let Some(a) = self.at(phys, data.len()) else {
            return false;
        };
        // SAFETY: as for `read`.
        unsafe { core::ptr::copy(data.as_ptr(), a as *mut u8, data.len()) };
        true
    }
}

#[cfg(test)]
pub(crate) use arena::Arena;

#[cfg(test)]
mod arena {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::{BusWindow, DmaAllocator, DmaBuf};

    /// Host memory posing as physical memory for driver tests: addresses are host addresses, as
    /// with rkdump's identity map. Drivers get [`super::DmaMem`]s from its allocator; the test
    /// and device models reach the same memory only through a [`BusWindow`]
    /// ([`Arena::window`]), as a bus master would.
    pub(crate) struct Arena {
        base: u64,
        len: usize,
        next: usize,
        win: BusWindow,
    }

    impl Arena {
        pub(crate) fn new(len: usize) -> Self {
            let raw: &'static mut [u8] = vec![0u8; len + 4096].leak();
            let base = (raw.as_mut_ptr() as u64).next_multiple_of(4096);
            let win = Self::view(base, len);
            Arena {
                base,
                len,
                next: 0,
                win,
            }
        }

        fn view(base: u64, len: usize) -> BusWindow {
            // SAFETY: the arena's memory is leaked, so valid for the rest of the test; drivers hold
            // only `DmaMem`s into it, whose borrows end before a device model runs.
            unsafe { BusWindow::new(base, len) }
        }

        /// The bus master's view of the whole arena, for a device model.
        pub(crate) fn window(&self) -> BusWindow {
            Self::view(self.base, self.len)
        }

        /// A zeroed buffer as the kernel's allocator would hand it out.
        pub(crate) fn buf(&mut self, len: usize) -> u64 {
            self.alloc(len, 4096, false).expect("arena full").phys
        }

        pub(crate) fn put(&mut self, phys: u64, data: &[u8]) {
            assert!(self.win.write(phys, data), "put outside the arena");
        }

        pub(crate) fn get(&mut self, phys: u64, len: usize) -> Vec<u8> {
            let mut out = vec![0; len];
            assert!(self.win.read(phys, &mut out), "get outside the arena");
            out
        }
    }

    // SAFETY: a bump allocator over memory the arena leaked for itself: each byte is handed out at
    // most once, the memory is zeroed (`vec!`) and never freed.
    unsafe impl DmaAllocator for Arena {
        fn alloc(&mut self, len: usize, align: usize, _below_4g: bool) -> Option<DmaBuf> {
            let start = self.next.next_multiple_of(align);
            if start + len > self.len {
                return None;
            }
            self.next = start + len;
            Some(DmaBuf {
                phys: self.base + start as u64,
                len,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DmaAllocator, DmaBuf, alloc_dma_mem};

    /// Returns one fixed answer, however wrong, to show what `alloc_dma_mem` refuses.
    struct Fixed(Option<DmaBuf>);

    // SAFETY: the buffers are never dereferenced: every one of them is refused before a
    // `DmaMem` exists, which is what the tests check.
    unsafe impl DmaAllocator for Fixed {
        fn alloc(&mut self, _: usize, _: usize, _: bool) -> Option<DmaBuf> {
            self.0.take()
        }
    }

    fn try_alloc(phys: u64, len: usize, want: usize, below_4g: bool) -> bool {
        let mut a = Fixed(Some(DmaBuf { phys, len }));
        alloc_dma_mem(&mut a, want, 4096, below_4g).is_some()
    }

    #[test]
    fn refuses_what_drivers_cannot_use() {
        assert!(
            !try_alloc(0x10_0000, 4096, 8192, false),
            "shorter than asked"
        );
        assert!(!try_alloc(0x10_0800, 8192, 4096, false), "misaligned");
        assert!(
            !try_alloc(0xFFFF_F000, 8192, 8192, true),
            "crosses 4 GiB for a 32-bit device"
        );
        assert!(
            !try_alloc(u64::MAX - 4095, 4096, 8192, false),
            "address overflow"
        );
        assert!(
            try_alloc(0xFFFF_E000, 8192, 8192, true),
            "ends exactly at 4 GiB"
        );
    }
}
