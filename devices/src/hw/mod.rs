//! The devices crate's only `unsafe`: x86 port I/O ([`port`]), memory-mapped registers
//! ([`Mmio`]), DMA memory ([`dma`]) and PCI configuration mechanism #1 ([`pci`]). Constructors
//! are `unsafe` and state what the caller guarantees; accessors are safe once a region is owned.
//! Everything else in the crate is safe code over these handles and the traits it defines.

pub mod dma;
mod mmio;
pub mod pci;
pub mod port;

pub use dma::{DmaAllocator, DmaBuf, DmaMem, alloc_dma_mem};
pub use mmio::Mmio;

/// Full memory barrier: orders descriptor writes before doorbells and completion reads after
/// status reads (x86 keeps stores ordered, but the compiler must not reorder either).
pub fn fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
