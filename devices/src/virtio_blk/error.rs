//! virtio-blk driver errors.

use core::fmt;

use crate::virtio::pci::TransportError;

/// virtio-blk driver failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not a virtio-blk function.
    NotVirtioBlk {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
    },
    /// The virtio-pci transport: capabilities or reset.
    Transport(TransportError),
    /// VIRTIO_F_VERSION_1 not offered (legacy-only device).
    NoVersion1,
    /// The device is read-only.
    ReadOnly,
    /// FEATURES_OK did not stick.
    FeaturesRejected,
    /// Queue 0 does not exist or has size 0.
    NoQueue,
    /// Queue 0 is too small for one request.
    QueueTooSmall(u16),
    /// The notify address lies outside the notify window.
    NotifyOutsideWindow,
    /// `size_max` below one sector.
    BadLimits,
    /// The device configuration kept changing while read.
    ConfigUnstable,
    /// No DMA memory.
    NoMemory,
    /// The device set NEEDS_RESET or FAILED.
    DeviceStatus(u8),
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Transport(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NotVirtioBlk { vendor, device } => {
                write!(f, "{vendor:04x}:{device:04x} is not virtio-blk")
            }
            Error::Transport(e) => write!(f, "{e}"),
            Error::NoVersion1 => f.write_str("VIRTIO_F_VERSION_1 not offered"),
            Error::ReadOnly => f.write_str("device is read-only"),
            Error::FeaturesRejected => f.write_str("device rejected features"),
            Error::NoQueue => f.write_str("queue 0 unavailable"),
            Error::QueueTooSmall(n) => write!(f, "queue size {n} too small"),
            Error::NotifyOutsideWindow => f.write_str("notify address outside window"),
            Error::BadLimits => f.write_str("size_max below one sector"),
            Error::ConfigUnstable => f.write_str("device config generation never settled"),
            Error::NoMemory => f.write_str("no DMA memory"),
            Error::DeviceStatus(s) => write!(f, "device status {s:#x} (NEEDS_RESET/FAILED)"),
        }
    }
}
