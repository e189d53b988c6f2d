//! What rkdump knows about the crashed Linux kernel: its VMCOREINFO as typed values ([`info`]), the
//! translation of its virtual addresses ([`vtop`]) and the seam for reading its virtual memory
//! ([`virt`]). Everything here reads old-kernel data and treats it as hostile.

pub mod info;
pub mod virt;
pub mod vtop;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use info::{InfoError, KernelInfo, PageFlags, PageLayout, SparseMem};
pub use virt::{OldVirt, VirtError, VirtMemory};
pub use vtop::{Mapping, Translator};
