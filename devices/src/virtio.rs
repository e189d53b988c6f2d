//! Virtio plumbing any virtio driver needs (virtio 1.2): device status, the PCI transport
//! ([`pci`]) and split virtqueues ([`ring`]) over DMA memory the driver owns ([`DmaWindow`]).
//! virtio-blk is the first user; a network driver would be the next.

pub mod pci;
pub mod ring;

/// Feature bit 32, VIRTIO_F_VERSION_1: a modern (1.x) device; every driver requires it (§6).
pub const F_VERSION_1: u64 = 1 << 32;
/// Feature bit 33, VIRTIO_F_ACCESS_PLATFORM: device DMA goes through the platform IOMMU (§6).
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;

use bitflags::bitflags;

use crate::hw::DmaMem;

/// Red Hat / virtio vendor ID.
pub const VIRTIO_VENDOR: u16 = 0x1AF4;

/// "No MSI-X vector": rkdump polls.
pub const NO_VECTOR: u16 = 0xFFFF;

bitflags! {
    /// `device_status` bits (virtio 1.2 §2.1).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DeviceStatus: u8 {
        /// Guest noticed the device.
        const ACKNOWLEDGE = 1;
        /// Guest has a driver.
        const DRIVER = 2;
        /// Driver ready.
        const DRIVER_OK = 4;
        /// Feature negotiation done.
        const FEATURES_OK = 8;
        /// Device hit an error and must be reset.
        const NEEDS_RESET = 0x40;
        /// Driver gave up on the device.
        const FAILED = 0x80;
    }
}

/// DMA memory the driver owns; [`DmaMem`] in the kernel, a byte buffer in tests.
pub trait DmaWindow {
    /// Physical address of byte `off`.
    fn phys(&self, off: usize) -> u64;
    /// Volatile u16 read.
    fn read16(&self, off: usize) -> u16;
    /// Volatile u32 read.
    fn read32(&self, off: usize) -> u32;
    /// Volatile u16 write.
    fn write16(&self, off: usize, v: u16);
    /// Volatile u32 write.
    fn write32(&self, off: usize, v: u32);
    /// Volatile u64 write.
    fn write64(&self, off: usize, v: u64);
}

impl DmaWindow for DmaMem {
    fn phys(&self, off: usize) -> u64 {
        DmaMem::phys(self, off)
    }
    fn read16(&self, off: usize) -> u16 {
        DmaMem::read16(self, off)
    }
    fn read32(&self, off: usize) -> u32 {
        DmaMem::read32(self, off)
    }
    fn write16(&self, off: usize, v: u16) {
        DmaMem::write16(self, off, v)
    }
    fn write32(&self, off: usize, v: u32) {
        DmaMem::write32(self, off, v)
    }
    fn write64(&self, off: usize, v: u64) {
        DmaMem::write64(self, off, v)
    }
}
