//! DMA memory: physically contiguous, identity-mapped, zeroed buffers that rkdump owns (never
//! old-kernel memory, never the crash region's loader data). The kernel implements
//! [`DmaAllocator`] over its frame allocator; drivers only see [`DmaBuf`].

/// A DMA buffer: `len` bytes at physical address `phys`, CPU-accessible at the same address
/// (rkdump runs identity-mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBuf {
    /// Physical (= virtual) address.
    pub phys: u64,
    /// Length in bytes.
    pub len: usize,
}

/// Hands out DMA memory. Buffers are never freed: a capture kernel runs once.
pub trait DmaAllocator {
    /// A zeroed buffer of `len` bytes aligned to `align` (a power of two, at least 4096),
    /// below 4 GiB if `below_4g` (for devices without 64-bit DMA).
    fn alloc(&mut self, len: usize, align: usize, below_4g: bool) -> Option<DmaBuf>;
}
