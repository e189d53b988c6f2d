//! Polled virtio-blk (virtio 1.2 §5.2) on the modern virtio-pci transport ([`crate::virtio`]):
//! bring-up without interrupts and pipelined zero-copy I/O.
//!
//! Bring-up order (docs/device-reinit.md#driver-bring-up-after-reinit): the kernel locates the regions
//! ([`locate_virtio_regions`]), maps them, enables memory decode and bus mastering
//! ([`crate::pci::enable_mem_bus_master`]) and disables MSI/MSI-X; then the transport reset
//! ([`crate::virtio::pci::reset`], the reinit layer's preinit step) and [`VirtioBlk::new`],
//! which resets again (cheap, and what Linux's `register_virtio_device` does) unless told not to.

pub mod chain;
pub mod driver;
mod error;
pub use error::Error;

#[cfg(test)]
pub(crate) mod model;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::String;
use core::mem::{offset_of, size_of};

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::block::{
    BlockDevice, BlockError, BlockInfo, HealthTimer, Idle, Regs, WriteReq, check_request, split,
};
use crate::hw::{DmaAllocator, DmaMem, Mmio};
use crate::pci::{Bdf, ConfigSpace, PciDevice};
use crate::time::{Clock, poll_until};
use crate::virtio::pci::{
    self as transport, TransportError, VirtioPciRegions, VirtioRegionsInfo, cfg_type, common,
};
use crate::virtio::ring::{self, MAX_QUEUE, Seg, SplitQueue};
use crate::virtio::{DeviceStatus, DmaWindow};
use chain::{Limits, SECTOR};
pub use driver::{matches, needs_reset};

/// Modern (1.x) virtio-blk device ID (0x1040 + 2).
pub const DEVICE_ID_MODERN: u16 = 0x1042;
/// Transitional virtio-blk device ID (also has the modern capabilities).
pub const DEVICE_ID_TRANSITIONAL: u16 = 0x1001;

/// `virtio_blk_config` offsets (virtio 1.2 §5.2.4).
pub mod blk_cfg {
    /// u64: capacity in 512-byte sectors.
    pub const CAPACITY: usize = 0x00;
    /// u32: max bytes per segment (F_SIZE_MAX).
    pub const SIZE_MAX: usize = 0x08;
    /// u32: max segments per request (F_SEG_MAX).
    pub const SEG_MAX: usize = 0x0C;
    /// u32: logical block size (F_BLK_SIZE).
    pub const BLK_SIZE: usize = 0x14;
}

bitflags! {
    /// Feature bits rkdump knows (virtio 1.2 §5.2.3, §6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Features: u64 {
        /// `size_max` is valid.
        const SIZE_MAX = 1 << 1;
        /// `seg_max` is valid.
        const SEG_MAX = 1 << 2;
        /// Read-only device.
        const RO = 1 << 5;
        /// `blk_size` is valid.
        const BLK_SIZE = 1 << 6;
        /// Cache flush command.
        const FLUSH = 1 << 9;
        /// Virtio 1.x (required).
        const VERSION_1 = crate::virtio::F_VERSION_1;
        /// Device DMA goes through the platform IOMMU; accepted because refusing makes such
        /// devices fail FEATURES_OK, and rkdump's DMA addresses are physical either way.
        const ACCESS_PLATFORM = crate::virtio::F_ACCESS_PLATFORM;
    }
}

/// Features rkdump accepts when offered; none needs interrupts.
pub const WANTED: Features = Features::VERSION_1
    .union(Features::FLUSH)
    .union(Features::BLK_SIZE)
    .union(Features::SEG_MAX)
    .union(Features::SIZE_MAX)
    .union(Features::ACCESS_PLATFORM);

/// The request header every virtio-blk chain starts with (virtio 1.2 §5.2.6,
/// `struct virtio_blk_outhdr`), written field by field at these offsets.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default)]
pub struct VirtioBlkOuthdr {
    /// 0x00: `VIRTIO_BLK_T_*`.
    pub r#type: u32,
    /// 0x04: priority (unused, 0).
    pub ioprio: u32,
    /// 0x08: first 512-byte sector.
    pub sector: u64,
}

const _: () = assert!(size_of::<VirtioBlkOuthdr>() == 16);
const _: () = assert!(offset_of!(VirtioBlkOuthdr, sector) == 8);
const OUTHDR: usize = size_of::<VirtioBlkOuthdr>();

const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;

/// Default time the oldest in-flight request may take.
pub const IO_TIMEOUT_US: u64 = 30_000_000;
/// Bytes per chain when the device sets no limit (what Linux's block layer sends at most).
pub const DEFAULT_CHAIN_BYTES: u64 = 1 << 20;

/// The transport structures of virtio-blk function `dev` ([`transport::locate_regions`]).
pub fn locate_virtio_regions(
    cfg: &dyn ConfigSpace,
    dev: &PciDevice,
) -> Result<VirtioRegionsInfo, Error> {
    if !matches(dev) {
        return Err(Error::NotVirtioBlk {
            vendor: dev.vendor,
            device: dev.device,
        });
    }
    Ok(transport::locate_regions(cfg, dev)?)
}

// One DMA allocation: rings for MAX_QUEUE entries, then a 16-byte request header and a 4-byte
// status slot per descriptor (indexed by chain head).
const DESC_OFF: usize = 0;
const AVAIL_OFF: usize = 4096;
const USED_OFF: usize = 8192;
const HDR_OFF: usize = 12288;
const STATUS_OFF: usize = HDR_OFF + OUTHDR * MAX_QUEUE as usize;
/// Bytes of DMA memory one driver instance uses.
pub const DMA_BYTES: usize = 5 * 4096;
const _: () = {
    let (d, a, u) = SplitQueue::ring_bytes(MAX_QUEUE);
    assert!(DESC_OFF + d <= AVAIL_OFF && AVAIL_OFF + a <= USED_OFF && USED_OFF + u <= HDR_OFF);
    assert!(STATUS_OFF + 4 * MAX_QUEUE as usize <= DMA_BYTES);
};

/// Bring-up options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// Negative control for tests only: skip the reset, reproducing the stale-ring failure
    /// QEMU predicts ("Guest moved used index", NEEDS_RESET) when a driver reuses a device the
    /// crashed kernel left running.
    pub skip_reset: bool,
    /// Time the oldest in-flight request may take.
    pub io_timeout_us: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            skip_reset: false,
            io_timeout_us: IO_TIMEOUT_US,
        }
    }
}

/// A polled virtio-blk device with one queue.
pub struct VirtioBlk<'c, R: Regs = Mmio, M: DmaWindow = DmaMem> {
    regs: VirtioPciRegions<R>,
    mem: M,
    clock: &'c dyn Clock,
    /// What bring-up negotiated and set up.
    s: Setup,
    io_timeout_us: u64,
    name: String,
    broken: Option<BlockError>,
    /// A request that failed and whose error no call has returned yet.
    failed: Option<BlockError>,
}

/// `DeviceError.status` for device-level failures (request failures carry the virtio-blk
/// status byte, 1 = IOERR, 2 = UNSUPP): `DEVICE_STATUS_ERROR | device_status`.
pub const DEVICE_STATUS_ERROR: u32 = 0x100;
/// `DeviceError.status` when the device broke the ring protocol.
pub const RING_PROTOCOL_ERROR: u32 = 0x200;

/// One chain's worth of a request: first sector, data address, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    sector: u64,
    phys: u64,
    len: u64,
}

/// `len` bytes at (`sector`, `phys`) as chains of at most `chain_max` bytes.
fn chunks(sector: u64, phys: u64, len: u64, chain_max: u64) -> impl Iterator<Item = Chunk> {
    split(sector, phys, len, SECTOR.trailing_zeros(), chain_max).map(|(sector, phys, len)| Chunk {
        sector,
        phys,
        len,
    })
}

enum Op {
    Chunk { write: bool, c: Chunk },
    Flush,
}

impl<'c, R: Regs> VirtioBlk<'c, R> {
    /// Resets and brings up the device on the mapped `regions`, with DMA memory from `alloc`.
    pub fn new(
        regions: VirtioPciRegions<R>,
        alloc: &mut dyn DmaAllocator,
        clock: &'c dyn Clock,
        opts: InitOptions,
    ) -> Result<Self, Error> {
        let mem = crate::hw::alloc_dma_mem(alloc, DMA_BYTES, 4096, false).ok_or(Error::NoMemory)?;
        Self::with_mem(regions, mem, clock, opts)
    }
}

impl<'c, R: Regs, M: DmaWindow> VirtioBlk<'c, R, M> {
    /// As [`VirtioBlk::new`] with caller-provided DMA memory of [`DMA_BYTES`] bytes.
    pub fn with_mem(
        regs: VirtioPciRegions<R>,
        mem: M,
        clock: &'c dyn Clock,
        opts: InitOptions,
    ) -> Result<Self, Error> {
        if !opts.skip_reset {
            transport::reset(&regs.common, clock)?;
        } else if regs.common.size() < common::MIN_LEN {
            return Err(TransportError::BadWindow {
                cfg_type: cfg_type::COMMON,
            }
            .into());
        }
        regs.set_status(DeviceStatus::ACKNOWLEDGE);
        let status = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        regs.set_status(status);
        let s = match bring_up(&regs, &mem, status) {
            Ok(s) => s,
            Err(e) => {
                // Tell the device we gave up (virtio 1.2 §3.1.1); the next user resets it.
                let st = DeviceStatus::from_bits_retain(regs.status());
                regs.set_status(st | DeviceStatus::FAILED);
                return Err(e);
            }
        };
        log::info!(
            "virtio-blk: {} sectors, queue {}, features {:#x}, seg_max {}, size_max {}",
            s.capacity,
            s.q.size(),
            s.features.bits(),
            s.limits.seg_max,
            s.limits.size_max
        );
        Ok(VirtioBlk {
            regs,
            mem,
            clock,
            s,
            io_timeout_us: opts.io_timeout_us,
            name: String::from("virtio-blk"),
            broken: None,
            failed: None,
        })
    }

    /// Names the device after its PCI address in logs.
    pub fn named(mut self, bdf: Bdf) -> Self {
        self.name = format!("virtio-blk {}", bdf.short());
        self
    }

    /// Negotiated features.
    pub fn features(&self) -> Features {
        self.s.features
    }

    /// The device's preferred block size (F_BLK_SIZE, else 512).
    pub fn blk_size(&self) -> u32 {
        self.s.blk_size
    }

    /// Chain limits in use.
    pub fn limits(&self) -> Limits {
        self.s.limits
    }

    fn check(&self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        if len == 0 {
            return Err(BlockError::BadRequest);
        }
        check_request(lba, phys, len, SECTOR.trailing_zeros(), self.s.capacity, 1)
            .map_err(|_| BlockError::BadRequest)
    }

    fn fail(&mut self, e: BlockError) -> BlockError {
        log::error!("{}: {e}", self.name);
        self.broken = Some(e);
        e
    }

    /// Submits `ops`, keeping the ring as full as possible, running `idle` whenever it waits.
    /// With `wait_all` it returns once everything in flight (these ops and earlier submitted
    /// ones) completed; without, once the ring holds all of `ops`. A failed request stops further
    /// submission; its error is returned by this call or, if it completes later, by the next.
    fn run(
        &mut self,
        ops: &mut dyn Iterator<Item = Op>,
        idle: &mut Idle<'_>,
        wait_all: bool,
    ) -> Result<(), BlockError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let mut pending = ops.next();
        loop {
            let mut added = false;
            while let (Some(op), None) = (&pending, self.failed) {
                if self.s.q.num_free() < self.descs_for(op) {
                    break;
                }
                if let Err(e) = self.push(op) {
                    // Room was checked above: this is a driver bug, reported, not a panic.
                    log::error!("{}: internal: {e}", self.name);
                    return Err(self.fail(BlockError::NoMemory));
                }
                added = true;
                pending = ops.next();
            }
            if added {
                self.s.q.publish(&self.mem);
                // The device says whether it is still looking at the ring (virtio 1.2 §2.7.7):
                // a notify then only costs an exit.
                if self.s.q.device_wants_notify(&self.mem) {
                    self.regs.notify.write16(self.s.notify_off, 0);
                }
            }
            let done_submitting = pending.is_none() || self.failed.is_some();
            if done_submitting && !wait_all {
                break;
            }
            if self.s.q.in_flight() == 0 {
                if !done_submitting {
                    // Cannot happen (seg_max <= queue size - 2), but never report unsent
                    // requests as written.
                    return Err(self.fail(BlockError::NoMemory));
                }
                break;
            }
            self.wait_used(idle)?;
            self.reap()?;
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Descriptors `op` takes.
    fn descs_for(&self, op: &Op) -> u16 {
        let data = match *op {
            Op::Chunk { c, .. } => self.s.limits.segs_for(c.len),
            Op::Flush => 0,
        };
        data + 2
    }

    /// Takes every completion the device posted; the first failed request is kept in
    /// `self.failed` until a call reports it.
    fn reap(&mut self) -> Result<(), BlockError> {
        loop {
            match self.s.q.pop_used(&self.mem) {
                Ok(Some(u)) => {
                    let st = self.mem.read32(STATUS_OFF + 4 * usize::from(u.head)) & 0xFF;
                    if st != 0 && self.failed.is_none() {
                        // The header is ours (the device only reads it).
                        let at = HDR_OFF + OUTHDR * usize::from(u.head);
                        let at = at + offset_of!(VirtioBlkOuthdr, sector);
                        let sector = u64::from(self.mem.read32(at))
                            | (u64::from(self.mem.read32(at + 4)) << 32);
                        log::error!(
                            "{}: request at sector {sector} failed, status {st}",
                            self.name
                        );
                        self.failed = Some(BlockError::DeviceError { status: st });
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    log::error!("{}: {e}", self.name);
                    return Err(self.fail(BlockError::DeviceError {
                        status: RING_PROTOCOL_ERROR,
                    }));
                }
            }
        }
    }

    /// Checks and writes `reqs` as chains of at most the chain limit ([`Self::run`]).
    fn write_reqs(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut Idle<'_>,
        wait_all: bool,
    ) -> Result<(), BlockError> {
        for r in reqs {
            self.check(r.lba, r.phys, r.len)?;
        }
        let max = self.s.limits.chain_max();
        let mut ops = reqs
            .iter()
            .flat_map(|r| chunks(r.lba, r.phys, r.len, max).map(|c| Op::Chunk { write: true, c }));
        self.run(&mut ops, idle, wait_all)
    }

    fn push(&mut self, op: &Op) -> Result<(), ring::RingError> {
        let head = self.s.q.next_head().ok_or(ring::RingError::Full)?;
        let h = HDR_OFF + OUTHDR * usize::from(head);
        let s = STATUS_OFF + 4 * usize::from(head);
        let (ty, sector, data) = match *op {
            Op::Chunk { write, c } => (
                if write {
                    VIRTIO_BLK_T_OUT
                } else {
                    VIRTIO_BLK_T_IN
                },
                c.sector,
                Some((c, !write)),
            ),
            Op::Flush => (VIRTIO_BLK_T_FLUSH, 0, None),
        };
        self.mem
            .write32(h + offset_of!(VirtioBlkOuthdr, r#type), ty);
        self.mem.write32(h + offset_of!(VirtioBlkOuthdr, ioprio), 0);
        self.mem
            .write64(h + offset_of!(VirtioBlkOuthdr, sector), sector);
        self.mem.write32(s, 0xFF);
        let hdr = Seg {
            addr: self.mem.phys(h),
            len: OUTHDR as u32,
            device_writes: false,
        };
        let st = Seg {
            addr: self.mem.phys(s),
            len: 1,
            device_writes: true,
        };
        let size_max = self.s.limits.size_max;
        let n_data = data.map_or(0, |(c, _)| self.s.limits.segs_for(c.len));
        let segs = data
            .into_iter()
            .flat_map(|(c, dw)| chain::data_segs(c.phys, c.len, size_max, dw));
        let chain = core::iter::once(hdr)
            .chain(segs)
            .chain(core::iter::once(st));
        self.s.q.push(&self.mem, n_data + 2, chain).map(|_| ())
    }

    fn wait_used(&mut self, idle: &mut Idle<'_>) -> Result<(), BlockError> {
        let mut bad = 0u8;
        let q = &self.s.q;
        let mem = &self.mem;
        let regs = &self.regs;
        let clock = self.clock;
        let mut health = HealthTimer::new(clock);
        let r = poll_until(clock, self.io_timeout_us, || {
            if q.has_used(mem) {
                return true;
            }
            idle.step();
            // A broken device never completes: look at its status now and then.
            if health.due(clock)
                && let Some(s) = regs.broken_status()
            {
                bad = s;
                return true;
            }
            false
        });
        if bad != 0 {
            return Err(self.fail(BlockError::DeviceError {
                status: DEVICE_STATUS_ERROR | u32::from(bad),
            }));
        }
        if r.is_err() {
            let s = self.regs.status();
            log::error!("{}: no completion, device status {s:#x}", self.name);
            if DeviceStatus::from_bits_retain(s)
                .intersects(DeviceStatus::NEEDS_RESET | DeviceStatus::FAILED)
            {
                return Err(self.fail(BlockError::DeviceError {
                    status: DEVICE_STATUS_ERROR | u32::from(s),
                }));
            }
            return Err(self.fail(BlockError::Timeout {
                what: "virtio-blk completion",
            }));
        }
        Ok(())
    }
}

/// What bring-up negotiated and set up.
struct Setup {
    q: SplitQueue,
    notify_off: usize,
    features: Features,
    capacity: u64,
    blk_size: u32,
    limits: Limits,
}

/// Everything between DRIVER and DRIVER_OK: features, config, queue 0.
fn bring_up<R: Regs, M: DmaWindow>(
    regs: &VirtioPciRegions<R>,
    mem: &M,
    status: DeviceStatus,
) -> Result<Setup, Error> {
    let offered = Features::from_bits_retain(regs.device_features());
    if !offered.contains(Features::VERSION_1) {
        return Err(Error::NoVersion1);
    }
    if offered.contains(Features::RO) {
        return Err(Error::ReadOnly);
    }
    let features = offered & WANTED;
    if !regs.accept_features(features.bits(), status) {
        return Err(Error::FeaturesRejected);
    }

    if regs.device.size() < 8 {
        return Err(TransportError::BadWindow {
            cfg_type: cfg_type::DEVICE,
        }
        .into());
    }
    let (capacity, size_max, seg_max, blk_size) = regs
        .read_device_config(|d| read_config(d, features))
        .ok_or(Error::ConfigUnstable)?;
    let max = regs.select_queue(0).ok_or(Error::NoQueue)?;
    // Split rings index modulo the size, so it must divide 2^16: largest power of two <= max.
    let cap = max.min(MAX_QUEUE);
    let qsize = 1u16 << (15 - cap.leading_zeros());
    if qsize < 4 {
        return Err(Error::QueueTooSmall(qsize));
    }
    let limits = Limits {
        seg_max: seg_max.clamp(1, u32::from(qsize - 2)) as u16,
        size_max: size_max.min(DEFAULT_CHAIN_BYTES as u32) & !(SECTOR as u32 - 1),
        chain_bytes: DEFAULT_CHAIN_BYTES,
    };
    if limits.size_max == 0 {
        return Err(Error::BadLimits);
    }
    let notify_off = regs.notify_offset().ok_or(Error::NotifyOutsideWindow)?;
    let q = SplitQueue::new(mem, qsize, DESC_OFF, AVAIL_OFF, USED_OFF)
        .map_err(|_| Error::QueueTooSmall(qsize))?;
    let phys = |off| mem.phys(off);
    regs.enable_queue(qsize, phys(DESC_OFF), phys(AVAIL_OFF), phys(USED_OFF));
    regs.set_status(status | DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK);
    if let Some(now) = regs.broken_status() {
        return Err(Error::DeviceStatus(now));
    }
    Ok(Setup {
        q,
        notify_off,
        features,
        capacity,
        blk_size,
        limits,
    })
}

/// Reads `(capacity, size_max, seg_max, blk_size)` from `virtio_blk_config`; fields the
/// negotiated features leave invalid get their defaults.
fn read_config<R: Regs>(d: &R, f: Features) -> (u64, u32, u32, u32) {
    let cap = d.read64(blk_cfg::CAPACITY);
    let size_max = if f.contains(Features::SIZE_MAX) && d.size() >= blk_cfg::SIZE_MAX + 4 {
        d.read32(blk_cfg::SIZE_MAX)
    } else {
        u32::MAX
    };
    let seg_max = if f.contains(Features::SEG_MAX) && d.size() >= blk_cfg::SEG_MAX + 4 {
        d.read32(blk_cfg::SEG_MAX)
    } else {
        // Without F_SEG_MAX assume one data segment (Linux does the same).
        1
    };
    let blk = if f.contains(Features::BLK_SIZE) && d.size() >= blk_cfg::BLK_SIZE + 4 {
        d.read32(blk_cfg::BLK_SIZE)
    } else {
        512
    };
    (cap, size_max, seg_max, blk)
}

impl<R: Regs, M: DmaWindow> BlockDevice for VirtioBlk<'_, R, M> {
    fn info(&self) -> BlockInfo {
        let per_chain = self.s.limits.segs_for(self.s.limits.chain_max()) + 2;
        BlockInfo {
            block_size: SECTOR as u32,
            blocks: self.s.capacity,
            max_transfer: self.s.limits.chain_max(),
            queue_depth: (self.s.q.size() / per_chain).max(1),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn write_overlapped(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        self.write_reqs(reqs, &mut Idle::new(idle), true)
    }

    fn submit(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        self.write_reqs(reqs, &mut Idle::new(idle), false)
    }

    fn complete(&mut self, idle: &mut dyn FnMut() -> bool) -> Result<(), BlockError> {
        self.run(&mut core::iter::empty(), &mut Idle::new(idle), true)
    }

    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        self.check(lba, phys, len)?;
        let mut ops = chunks(lba, phys, len, self.s.limits.chain_max())
            .map(|c| Op::Chunk { write: false, c });
        self.run(&mut ops, &mut Idle::new(&mut || false), true)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        let mut none = || false;
        // A flush covers completed writes only (virtio 1.2 §5.2.6.1): the submitted ones first.
        self.run(&mut core::iter::empty(), &mut Idle::new(&mut none), true)?;
        if !self.s.features.contains(Features::FLUSH) {
            return Ok(());
        }
        self.run(
            &mut core::iter::once(Op::Flush),
            &mut Idle::new(&mut none),
            true,
        )
    }
}
