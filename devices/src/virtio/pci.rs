//! The modern virtio-pci transport (virtio 1.2 §4.1): locating the common, notify, ISR and
//! device structures from the vendor capabilities, and the reset every driver starts with.

use core::fmt;

use super::{DeviceStatus, NO_VECTOR};
use crate::block::Regs;
use crate::hw::Mmio;
use crate::pci::{Bar, ConfigSpace, PciDevice, caps};
use crate::time::{Clock, poll_until};

/// `virtio_pci_common_cfg` offsets (include/uapi/linux/virtio_pci.h).
pub mod common {
    /// u32: selects which 32 feature bits `DEVICE_FEATURE` shows.
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    /// u32: device feature bits.
    pub const DEVICE_FEATURE: usize = 0x04;
    /// u32: selects which 32 feature bits `DRIVER_FEATURE` sets.
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    /// u32: driver feature bits.
    pub const DRIVER_FEATURE: usize = 0x0C;
    /// u16: config-change MSI-X vector.
    pub const MSIX_CONFIG: usize = 0x10;
    /// u16: number of queues.
    pub const NUM_QUEUES: usize = 0x12;
    /// u8: device status.
    pub const DEVICE_STATUS: usize = 0x14;
    /// u8: config generation.
    pub const CONFIG_GENERATION: usize = 0x15;
    /// u16: queue the `QUEUE_*` registers address.
    pub const QUEUE_SELECT: usize = 0x16;
    /// u16: queue size (device maximum on read).
    pub const QUEUE_SIZE: usize = 0x18;
    /// u16: queue MSI-X vector.
    pub const QUEUE_MSIX_VECTOR: usize = 0x1A;
    /// u16: queue enable.
    pub const QUEUE_ENABLE: usize = 0x1C;
    /// u16: queue notify offset (in multiplier units).
    pub const QUEUE_NOTIFY_OFF: usize = 0x1E;
    /// u64: descriptor table address.
    pub const QUEUE_DESC: usize = 0x20;
    /// u64: avail (driver) ring address.
    pub const QUEUE_DRIVER: usize = 0x28;
    /// u64: used (device) ring address.
    pub const QUEUE_DEVICE: usize = 0x30;
    /// Bytes rkdump needs in the common window.
    pub const MIN_LEN: usize = 0x38;
}

/// Vendor capability `cfg_type` values (virtio 1.2 §4.1.4).
pub mod cfg_type {
    /// Common configuration.
    pub const COMMON: u8 = 1;
    /// Notifications.
    pub const NOTIFY: u8 = 2;
    /// ISR status.
    pub const ISR: u8 = 3;
    /// Device-specific configuration.
    pub const DEVICE: u8 = 4;
}

/// How long a reset may take: virtio-blk drains in-flight requests first, and slow backends
/// (QEMU `null-co,latency-ns`, real disks with deep queues) take seconds.
pub const RESET_TIMEOUT_US: u64 = 5_000_000;

/// Transport failures: the capabilities do not describe usable windows, or reset never finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// A required vendor capability is missing.
    MissingCap {
        /// `cfg_type`.
        cfg_type: u8,
    },
    /// A capability names a BAR that is not an assigned memory BAR.
    BadBar {
        /// `cfg_type`.
        cfg_type: u8,
        /// BAR index.
        bar: u8,
    },
    /// A capability's window does not fit in its BAR, or is too short.
    BadWindow {
        /// `cfg_type`.
        cfg_type: u8,
    },
    /// `device_status` did not read 0 after reset.
    ResetTimeout {
        /// Microseconds waited.
        waited_us: u64,
        /// Last status read.
        status: u8,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TransportError::MissingCap { cfg_type } => {
                write!(f, "no usable virtio cap type {cfg_type}")
            }
            TransportError::BadBar { cfg_type, bar } => {
                write!(f, "virtio cap type {cfg_type} names unassigned BAR{bar}")
            }
            TransportError::BadWindow { cfg_type } => write!(
                f,
                "virtio cap type {cfg_type} window outside its BAR or too short"
            ),
            TransportError::ResetTimeout { waited_us, status } => {
                write!(f, "reset: status {status:#x} after {waited_us} us")
            }
        }
    }
}

/// One located structure: `len` bytes at `offset` in BAR `bar`, physical address `phys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioRegion {
    /// BAR index.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u32,
    /// Length.
    pub len: u32,
    /// Physical address (BAR address + offset) the kernel maps.
    pub phys: u64,
}

/// Where the virtio-pci structures are; the kernel maps each as uncached [`Mmio`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioRegionsInfo {
    /// Common configuration.
    pub common: VirtioRegion,
    /// Notification area.
    pub notify: VirtioRegion,
    /// Bytes per `queue_notify_off` unit.
    pub notify_off_multiplier: u32,
    /// ISR status (unused by a polled driver).
    pub isr: Option<VirtioRegion>,
    /// Device-specific configuration.
    pub device: VirtioRegion,
}

/// Finds the common, notify, ISR and device structures of virtio function `dev` from the vendor capabilities. The first
/// usable capability of each type wins (virtio 1.2 §4.1.4); BARs come from `dev` (so they must
/// be assigned, e.g. restored after an FLR).
pub fn locate_regions(
    cfg: &dyn ConfigSpace,
    dev: &PciDevice,
) -> Result<VirtioRegionsInfo, TransportError> {
    let bdf = dev.bdf;
    let mut found: [Option<Result<(VirtioRegion, u32), TransportError>>; 5] = [None; 5];
    for off in caps::vendor_caps(cfg, bdf) {
        let cap_len = cfg.read8(bdf, off + 2);
        let ty = cfg.read8(bdf, off + 3);
        if !(cfg_type::COMMON..=cfg_type::DEVICE).contains(&ty) || cap_len < 16 {
            continue;
        }
        let slot = &mut found[usize::from(ty)];
        if matches!(slot, Some(Ok(_))) {
            continue;
        }
        let mult = if ty == cfg_type::NOTIFY {
            if cap_len < 20 {
                continue;
            }
            cfg.read32(bdf, off + 16)
        } else {
            0
        };
        let r = region(
            ty,
            &dev.bars,
            cfg.read8(bdf, off + 4),
            cfg.read32(bdf, off + 8),
            cfg.read32(bdf, off + 12),
        )
        .map(|r| (r, mult));
        // Keep the first error unless a later capability of the same type works.
        if slot.is_none() || r.is_ok() {
            *slot = Some(r);
        }
    }
    let mut take = |ty: u8| -> Result<(VirtioRegion, u32), TransportError> {
        found[usize::from(ty)]
            .take()
            .unwrap_or(Err(TransportError::MissingCap { cfg_type: ty }))
    };
    let (common, _) = take(cfg_type::COMMON)?;
    let (notify, notify_off_multiplier) = take(cfg_type::NOTIFY)?;
    let isr = take(cfg_type::ISR).ok().map(|(r, _)| r);
    let (device, _) = take(cfg_type::DEVICE)?;
    if (common.len as usize) < common::MIN_LEN {
        return Err(TransportError::BadWindow {
            cfg_type: cfg_type::COMMON,
        });
    }
    if device.len < 8 {
        return Err(TransportError::BadWindow {
            cfg_type: cfg_type::DEVICE,
        });
    }
    Ok(VirtioRegionsInfo {
        common,
        notify,
        notify_off_multiplier,
        isr,
        device,
    })
}

fn region(
    ty: u8,
    bars: &[Bar; 6],
    bar: u8,
    offset: u32,
    len: u32,
) -> Result<VirtioRegion, TransportError> {
    let bad_bar = TransportError::BadBar { cfg_type: ty, bar };
    let (addr, size) = bars
        .get(usize::from(bar))
        .and_then(Bar::mem)
        .ok_or(bad_bar)?;
    if addr == 0 {
        return Err(bad_bar);
    }
    let end = u64::from(offset) + u64::from(len);
    if len == 0 || end > size {
        return Err(TransportError::BadWindow { cfg_type: ty });
    }
    let phys = addr
        .checked_add(u64::from(offset))
        .ok_or(TransportError::BadWindow { cfg_type: ty })?;
    Ok(VirtioRegion {
        bar,
        offset,
        len,
        phys,
    })
}

/// The mapped virtio-pci structures the driver runs on.
pub struct VirtioPciRegions<R = Mmio> {
    /// Common configuration.
    pub common: R,
    /// Notification area.
    pub notify: R,
    /// From the notify capability.
    pub notify_off_multiplier: u32,
    /// Device-specific configuration (`virtio_blk_config`).
    pub device: R,
}

/// How often a device-configuration read is retried while the generation keeps changing.
const CONFIG_READ_TRIES: usize = 16;

impl<R: Regs> VirtioPciRegions<R> {
    /// `device_status` as read.
    pub fn status(&self) -> u8 {
        self.common.read8(common::DEVICE_STATUS)
    }

    /// Writes `device_status`.
    pub fn set_status(&self, status: DeviceStatus) {
        self.common.write8(common::DEVICE_STATUS, status.bits());
    }

    /// The status, if it says the device needs a reset or failed.
    pub fn broken_status(&self) -> Option<u8> {
        let s = self.status();
        (s & (DeviceStatus::NEEDS_RESET | DeviceStatus::FAILED).bits() != 0).then_some(s)
    }

    /// All 64 feature bits the device offers (§4.1.4.3).
    pub fn device_features(&self) -> u64 {
        let c = &self.common;
        c.write32(common::DEVICE_FEATURE_SELECT, 0);
        let lo = c.read32(common::DEVICE_FEATURE);
        c.write32(common::DEVICE_FEATURE_SELECT, 1);
        let hi = c.read32(common::DEVICE_FEATURE);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    /// Writes the driver's `features`, then `status` | FEATURES_OK; false when the device does
    /// not keep FEATURES_OK, i.e. refuses the set (§3.1.1 steps 5 and 6).
    pub fn accept_features(&self, features: u64, status: DeviceStatus) -> bool {
        let c = &self.common;
        c.write32(common::DRIVER_FEATURE_SELECT, 0);
        c.write32(common::DRIVER_FEATURE, features as u32);
        c.write32(common::DRIVER_FEATURE_SELECT, 1);
        c.write32(common::DRIVER_FEATURE, (features >> 32) as u32);
        self.set_status(status | DeviceStatus::FEATURES_OK);
        DeviceStatus::from_bits_retain(self.status()).contains(DeviceStatus::FEATURES_OK)
    }

    /// Selects `queue` and returns the largest size the device allows; `None` when the queue
    /// does not exist.
    pub fn select_queue(&self, queue: u16) -> Option<u16> {
        let c = &self.common;
        if queue >= c.read16(common::NUM_QUEUES) {
            return None;
        }
        c.write16(common::QUEUE_SELECT, queue);
        let max = c.read16(common::QUEUE_SIZE);
        (max != 0 && max != u16::MAX).then_some(max)
    }

    /// Byte offset of the selected queue's notify register in the notify window, `None` when
    /// it lies outside (§4.1.4.4).
    pub fn notify_offset(&self) -> Option<usize> {
        let off = usize::from(self.common.read16(common::QUEUE_NOTIFY_OFF))
            * self.notify_off_multiplier as usize;
        (off + 2 <= self.notify.size()).then_some(off)
    }

    /// Sets up the selected queue without interrupts: size, no MSI-X vectors (also for config
    /// changes), the ring addresses, enable.
    pub fn enable_queue(&self, size: u16, desc: u64, driver: u64, device: u64) {
        let c = &self.common;
        c.write16(common::QUEUE_SIZE, size);
        c.write16(common::QUEUE_MSIX_VECTOR, NO_VECTOR);
        c.write16(common::MSIX_CONFIG, NO_VECTOR);
        c.write64(common::QUEUE_DESC, desc);
        c.write64(common::QUEUE_DRIVER, driver);
        c.write64(common::QUEUE_DEVICE, device);
        c.write16(common::QUEUE_ENABLE, 1);
    }

    /// Runs `read` over the device configuration until the configuration generation is the
    /// same before and after (§4.1.4.3.1); `None` when it never settles.
    pub fn read_device_config<T>(&self, mut read: impl FnMut(&R) -> T) -> Option<T> {
        for _ in 0..CONFIG_READ_TRIES {
            let gen0 = self.common.read8(common::CONFIG_GENERATION);
            let v = read(&self.device);
            if self.common.read8(common::CONFIG_GENERATION) == gen0 {
                return Some(v);
            }
        }
        None
    }
}

/// What [`reset`] saw: the status it found and how long the device took to read 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetDone {
    /// `device_status` before the reset write.
    pub status_before: u8,
    /// Microseconds until `device_status` read 0.
    pub us: u64,
}

impl ResetDone {
    /// Whether the reset is proven by read-back: the status was not 0 before the write and
    /// reads 0 after it. A device already at 0 proves nothing by reading 0 again.
    pub fn proven(&self) -> bool {
        self.status_before != 0
    }
}

impl fmt::Display for ResetDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.proven() {
            write!(
                f,
                "device_status {:#04x} -> 0 after {} us",
                self.status_before, self.us
            )
        } else {
            write!(
                f,
                "device_status 0 before the write: already reset, not proven by the write"
            )
        }
    }
}

/// Resets the device: records `device_status`, writes 0 and waits until it reads 0. Afterwards
/// the device does no DMA and has forgotten the old kernel's rings (virtio 1.2 §4.1.4.3.1).
pub fn reset<R: Regs + ?Sized>(common: &R, clock: &dyn Clock) -> Result<ResetDone, TransportError> {
    if common.size() < common::MIN_LEN {
        return Err(TransportError::BadWindow {
            cfg_type: cfg_type::COMMON,
        });
    }
    let status_before = common.read8(common::DEVICE_STATUS);
    common.write8(common::DEVICE_STATUS, 0);
    let mut last = 0;
    poll_until(clock, RESET_TIMEOUT_US, || {
        last = common.read8(common::DEVICE_STATUS);
        last == 0
    })
    .map(|us| ResetDone { status_before, us })
    .map_err(|t| TransportError::ResetTimeout {
        waited_us: t.waited_us,
        status: last,
    })
}
