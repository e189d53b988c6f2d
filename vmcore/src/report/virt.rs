//! Stand-in for the old kernel's virtual-memory seam (`vmcore::kernel::virt` on the `filter`
//! branch): the same trait and the error variant the report's fakes use, so the report code
//! switches to the real one with a `use` change.

use core::fmt;

/// Why a kernel virtual address could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtError {
    /// No translation.
    NotMapped {
        /// The address that has no translation.
        va: u64,
    },
}

impl fmt::Display for VirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VirtError::NotMapped { va } => write!(f, "virtual address {va:#x} is not mapped"),
        }
    }
}

/// Reads the crashed kernel's virtual memory.
pub trait VirtMemory {
    /// Fills `buf` with the bytes at kernel virtual address `va..va + buf.len()`.
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError>;
}

impl<V: VirtMemory + ?Sized> VirtMemory for &mut V {
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError> {
        (**self).read_virt(va, buf)
    }
}
