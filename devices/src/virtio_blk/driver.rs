//! virtio-blk as the reinit engine and the dump-disk search see it: which PCI functions it
//! serves, its preinit (the transport reset, proven by `device_status` reading 0), and opening
//! a device as a block device.

use alloc::boxed::Box;
use alloc::format;

use super::{
    DEVICE_ID_MODERN, DEVICE_ID_TRANSITIONAL, DEVICE_STATUS_ERROR, InitOptions, VirtioBlk,
    locate_virtio_regions,
};
use crate::block::{BlockDevice, BlockError};
use crate::hw::{DmaAllocator, Mmio};
use crate::pci::{ConfigSpace, PciDevice};
use crate::reinit::{DriverCtx, DriverError, FnDriver, Platform, PreinitReport};
use crate::time::Clock;
use crate::virtio::pci::{self as transport, VirtioPciRegions, VirtioRegion};
use crate::virtio::{DeviceStatus, VIRTIO_VENDOR};

/// Whether `dev` is a virtio-blk function (modern or transitional device ID).
pub fn matches(dev: &PciDevice) -> bool {
    dev.vendor == VIRTIO_VENDOR
        && (dev.device == DEVICE_ID_MODERN || dev.device == DEVICE_ID_TRANSITIONAL)
}

/// Whether a block error says the device set NEEDS_RESET (it broke; only a reset helps).
pub fn needs_reset(e: &BlockError) -> bool {
    matches!(*e, BlockError::DeviceError { status }
        if status & DEVICE_STATUS_ERROR != 0
            && status & u32::from(DeviceStatus::NEEDS_RESET.bits()) != 0)
}

fn map(platform: &mut dyn Platform, r: VirtioRegion) -> Result<Mmio, DriverError> {
    platform
        .map_mmio(r.phys, u64::from(r.len))
        .ok_or(DriverError::NoMmio { bar: r.bar })
}

/// The reinit engine's virtio-blk driver.
pub const DRIVER: FnDriver = FnDriver {
    name: "virtio-blk",
    matches,
    preinit,
};

/// The driver-specific soft reset before anything probes the device, proven by read-back.
pub fn preinit(ctx: &mut DriverCtx<'_>, dev: &PciDevice) -> Result<PreinitReport, DriverError> {
    let info =
        locate_virtio_regions(ctx.cfg, dev).map_err(|e| DriverError::Failed(format!("{e}")))?;
    let common = map(ctx.platform, info.common)?;
    let done =
        transport::reset(&common, ctx.clock).map_err(|e| DriverError::Failed(format!("{e}")))?;
    Ok(proof(&done))
}

/// Judges a transport reset (virtio 1.2 §2.1, §4.1.4.3): proven when `device_status` was not
/// 0 before the write and read 0 after it; a device found at 0 proves nothing.
pub fn proof(done: &transport::ResetDone) -> PreinitReport {
    if done.proven() {
        PreinitReport::proven(format!("{done}"))
    } else {
        PreinitReport::unproven(format!("{done}"))
    }
}

/// Locates and maps the transport structures of `dev` and brings the device up (resetting it
/// first unless `opts.skip_reset`).
pub fn open<'c>(
    platform: &mut dyn Platform,
    cfg: &dyn ConfigSpace,
    dev: &PciDevice,
    dma: &mut dyn DmaAllocator,
    clock: &'c dyn Clock,
    opts: InitOptions,
) -> Result<Box<dyn BlockDevice + 'c>, crate::disk::OpenError> {
    let info = locate_virtio_regions(cfg, dev)?;
    let regions = VirtioPciRegions {
        common: map(platform, info.common)?,
        notify: map(platform, info.notify)?,
        notify_off_multiplier: info.notify_off_multiplier,
        device: map(platform, info.device)?,
    };
    let blk = VirtioBlk::new(regions, dma, clock, opts)?;
    Ok(Box::new(blk.named(dev.bdf)))
}
