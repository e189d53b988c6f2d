//! Devices for rkdump: PCI configuration access and enumeration, device reinitialisation, the
//! dump-disk label and record ([`label`], [`record`]), and polled block drivers (virtio-blk,
//! NVMe, AHCI) on a shared kit ([`block`]) and transport ([`virtio`]); [`disk`] is how the kernel
//! finds and opens the dump disk among them.
//!
//! Trust layering: everything here except [`hw`] is safe code that treats device registers and
//! firmware data as untrusted input. [`hw`] owns the `unsafe` (port I/O, MMIO, DMA memory,
//! PCI configuration ports); the kernel supplies DMA memory through [`hw::DmaAllocator`] (an
//! `unsafe trait`: only `unsafe` code can promise exclusive memory) and a clock through
//! [`time`]; host tests supply fakes.

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod acpi_s5;
pub mod ahci;
pub mod blob;
pub mod block;
pub mod disk;
pub mod e1000e;
pub mod hw;
pub mod iommu;
pub mod label;
pub mod nvme;
pub mod pci;
pub mod record;
pub mod reinit;
pub mod report_area;
pub mod target;
pub mod time;
pub mod virtio;
pub mod virtio_blk;
pub mod watchdog;
pub mod xhci;
