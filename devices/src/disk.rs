//! The dump-disk candidates: which PCI functions rkdump's block drivers serve (one candidate per
//! function, one per populated port of an AHCI HBA), opening one as a [`BlockDevice`], and
//! reading its label. The kernel only orchestrates: it filters by policy, logs and decides.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::ahci::{self, AhciError, AhciOptions, AhciReset};
use crate::block::{BlockDevice, BlockError};
use crate::hw::{DmaAllocator, alloc_dma_mem};
use crate::label::{self, Label};
use crate::nvme::{self, NvmeError, NvmeReset};
use crate::pci::{self, ConfigSpace, PciDevice};
use crate::reinit::{DriverError, DriverSet, Platform};
use crate::time::Clock;
use crate::virtio_blk::{self, InitOptions};

#[cfg(test)]
mod tests;

/// The block drivers rkdump has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKind {
    /// virtio-blk over virtio-pci.
    VirtioBlk,
    /// NVM Express.
    Nvme,
    /// AHCI SATA.
    Ahci,
}

impl DiskKind {
    /// The driver for `dev`, if rkdump has one.
    pub fn of(dev: &PciDevice) -> Option<Self> {
        if virtio_blk::matches(dev) {
            Some(DiskKind::VirtioBlk)
        } else if nvme::matches(dev) {
            Some(DiskKind::Nvme)
        } else if ahci::matches(dev) {
            Some(DiskKind::Ahci)
        } else {
            None
        }
    }
}

impl fmt::Display for DiskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskKind::VirtioBlk => "virtio-blk",
            DiskKind::Nvme => "nvme",
            DiskKind::Ahci => "ahci",
        })
    }
}

/// Every driver, registered for the reinit engine (match order = registration order).
pub fn reinit_drivers() -> DriverSet {
    let mut set = DriverSet::new();
    for driver in [
        virtio_blk::driver::DRIVER,
        nvme::driver::DRIVER,
        ahci::driver::DRIVER,
    ] {
        set.register(Box::new(driver));
    }
    set
}

/// One device the dump-disk search may open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The PCI function.
    pub dev: PciDevice,
    /// Its driver.
    pub kind: DiskKind,
    /// The AHCI port.
    pub port: Option<u8>,
    /// The first port of its HBA: the one whose open resets the whole HBA.
    first_port: bool,
}

/// The candidates of function `dev` served by `kind`: one, or one per populated port of an
/// AHCI HBA (memory decode and bus mastering are turned on to look at the ports).
pub fn candidates(
    platform: &mut dyn Platform,
    cfg: &dyn ConfigSpace,
    dev: &PciDevice,
    kind: DiskKind,
) -> Vec<Candidate> {
    let one = |port, first_port| Candidate {
        dev: *dev,
        kind,
        port,
        first_port,
    };
    if kind != DiskKind::Ahci {
        return vec![one(None, true)];
    }
    pci::enable_mem_bus_master(cfg, dev.bdf);
    let ports = ahci::driver::present_ports(platform, dev);
    (0..32u8)
        .filter(|p| ports & (1 << p) != 0)
        .map(|p| one(Some(p), p == ports.trailing_zeros() as u8))
        .collect()
}

/// How [`open`] treats the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Negative control for tests only: skip the driver's reset (`rkdump.nopreinit`).
    pub skip_reset: bool,
    /// Test fault (`rkdump.fault=dead:<bdf>`): an NVMe controller that never becomes ready.
    pub never_ready: bool,
}

/// Why a candidate could not be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// A register BAR could not be mapped.
    NoMmio(DriverError),
    /// virtio-blk bring-up failed.
    VirtioBlk(virtio_blk::Error),
    /// NVMe bring-up failed.
    Nvme(NvmeError),
    /// AHCI bring-up failed.
    Ahci(AhciError),
}

impl OpenError {
    /// Not a failure, just not a dump disk (an ATAPI drive, an empty port).
    pub fn is_not_disk(&self) -> bool {
        matches!(self, OpenError::Ahci(AhciError::NotDisk { .. }))
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NoMmio(e) => write!(f, "{e}"),
            OpenError::VirtioBlk(e) => write!(f, "{e}"),
            OpenError::Nvme(e) => write!(f, "{e}"),
            OpenError::Ahci(e) => write!(f, "{e}"),
        }
    }
}

impl From<DriverError> for OpenError {
    fn from(e: DriverError) -> Self {
        OpenError::NoMmio(e)
    }
}

impl From<virtio_blk::Error> for OpenError {
    fn from(e: virtio_blk::Error) -> Self {
        OpenError::VirtioBlk(e)
    }
}

impl From<NvmeError> for OpenError {
    fn from(e: NvmeError) -> Self {
        OpenError::Nvme(e)
    }
}

impl From<AhciError> for OpenError {
    fn from(e: AhciError) -> Self {
        OpenError::Ahci(e)
    }
}

/// Opens candidate `c` for use: MSI/MSI-X off (rkdump polls), memory decode and bus mastering
/// on, then the driver's reset and bring-up. `note` gets what is worth a console line.
pub fn open<'c>(
    c: &Candidate,
    platform: &mut dyn Platform,
    cfg: &dyn ConfigSpace,
    dma: &mut dyn DmaAllocator,
    clock: &'c dyn Clock,
    opts: OpenOptions,
    note: &mut dyn FnMut(fmt::Arguments<'_>),
) -> Result<Box<dyn BlockDevice + 'c>, OpenError> {
    let dev = &c.dev;
    pci::disable_msi_msix(cfg, dev.bdf);
    pci::enable_mem_bus_master(cfg, dev.bdf);
    match c.kind {
        DiskKind::VirtioBlk => {
            let init = InitOptions {
                skip_reset: opts.skip_reset,
                ..InitOptions::default()
            };
            virtio_blk::driver::open(platform, cfg, dev, dma, clock, init)
        }
        DiskKind::Nvme => {
            let reset = if opts.skip_reset {
                NvmeReset::Skip
            } else {
                NvmeReset::Disable
            };
            nvme::driver::open(platform, dev, dma, clock, reset, opts.never_ready, note)
        }
        DiskKind::Ahci => {
            // The HBA reset runs once, for the first port tried; later ports only need their
            // own engines stopped (the driver does that per port).
            let reset = match (opts.skip_reset, c.first_port) {
                (true, _) => AhciReset::Skip,
                (false, false) => AhciReset::Ports,
                (false, true) => AhciReset::Hba,
            };
            let ahci = AhciOptions {
                reset,
                port: c.port,
            };
            ahci::driver::open(platform, dev, dma, clock, ahci, note)
        }
    }
}

/// Why an opened device is not the dump disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDumpDisk {
    /// No DMA memory to read the label into.
    NoMemory,
    /// The device failed the read: a driver or device problem.
    Io(BlockError),
    /// It works but carries no valid rkdump label (or one for a bigger device).
    NoLabel(label::Error),
}

impl fmt::Display for NotDumpDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotDumpDisk::NoMemory => f.write_str("no DMA memory"),
            NotDumpDisk::Io(e) => {
                let why = if virtio_blk::needs_reset(e) {
                    " (the device set NEEDS_RESET)"
                } else {
                    ""
                };
                write!(f, "reading LBA 0: {e}{why}")
            }
            NotDumpDisk::NoLabel(e) => write!(f, "{e}"),
        }
    }
}

/// Reads and checks the label at LBA 0 against the device's size.
pub fn read_label(
    dev: &mut dyn BlockDevice,
    dma: &mut dyn DmaAllocator,
) -> Result<Label, NotDumpDisk> {
    let info = dev.info();
    let bytes = info.blocks.saturating_mul(u64::from(info.block_size));
    read_label_at(dev, dma, 0, bytes)
}

/// Reads and checks the label at block `lba` of `dev` against `bytes`, the size of the range
/// it starts (a whole disk, or a partition: a label claiming more than its range is refused).
pub fn read_label_at(
    dev: &mut dyn BlockDevice,
    dma: &mut dyn DmaAllocator,
    lba: u64,
    bytes: u64,
) -> Result<Label, NotDumpDisk> {
    let buf = alloc_dma_mem(dma, label::LABEL_BYTES, 4096, false).ok_or(NotDumpDisk::NoMemory)?;
    dev.read(lba, buf.phys(0), label::LABEL_BYTES as u64)
        .map_err(NotDumpDisk::Io)?;
    let mut raw = vec![0; label::LABEL_BYTES];
    buf.copy_out(0, &mut raw);
    check_label(&raw, bytes)
}

/// Parses label bytes read from the start of a range of `bytes` bytes and checks the label
/// claims no more than the range.
pub fn check_label(raw: &[u8], bytes: u64) -> Result<Label, NotDumpDisk> {
    let label = Label::parse(raw).map_err(NotDumpDisk::NoLabel)?;
    label.check_device(bytes).map_err(NotDumpDisk::NoLabel)?;
    Ok(label)
}
