//! Stand-in for the old kernel's virtual-memory seam (`vmcore::kernel::virt` on the `filter`
//! branch): same trait shape, so the report code switches to the real one with a `use` change.

use core::fmt;

/// Why a kernel virtual address could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtError {
    /// The address that failed.
    pub va: u64,
}

impl fmt::Display for VirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virtual address {:#x} is not readable", self.va)
    }
}

/// Read access to the crashed kernel's virtual memory.
pub trait VirtMemory {
    /// Fills `buf` with the bytes at kernel virtual address `va..va + buf.len()`.
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError>;
}
