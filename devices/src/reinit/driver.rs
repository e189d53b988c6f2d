//! The device model the reinit engine sees, after Linux's `struct device_driver`: a [`Driver`]
//! trait (match and preinit) each concrete driver implements, the [`DriverCtx`] bundle it
//! receives, the [`Platform`] services it may use, and a [`DriverSet`] registry in match order.
//! Opening a device for use is not part of it: the dump-disk search opens its disk itself.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::hw::Mmio;
use crate::pci::{ConfigSpace, PciDevice};
use crate::time::Clock;

/// Kernel services a driver may need beyond config space and time.
pub trait Platform {
    /// Maps `len` bytes of device registers at physical `phys` uncached, or `None` when the
    /// range is not a device's (outside every bridge window, overlapping RAM) or cannot be
    /// mapped. Mapping the same range twice is allowed (preinit, then open).
    fn map_mmio(&mut self, phys: u64, len: u64) -> Option<Mmio>;

    /// Maps memory BAR `bar` of `dev`, which must be assigned (a zero address is a BAR the
    /// firmware or the crashed kernel never placed).
    fn map_bar(&mut self, dev: &PciDevice, bar: u8) -> Result<Mmio, DriverError> {
        let (addr, size) = dev
            .bars
            .get(usize::from(bar))
            .and_then(|b| b.mem())
            .filter(|&(a, _)| a != 0)
            .ok_or(DriverError::NoMmio { bar })?;
        self.map_mmio(addr, size).ok_or(DriverError::NoMmio { bar })
    }
}

/// A platform that maps nothing (host tests, or drivers that need no MMIO).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPlatform;

impl Platform for NoPlatform {
    fn map_mmio(&mut self, _phys: u64, _len: u64) -> Option<Mmio> {
        None
    }
}

/// What a driver is handed: config access, the clock and the platform, all supplied by the
/// kernel. [`super::run`] sets `deadline_us` before each `preinit` so a driver can bound its
/// own waits by the per-device cap.
pub struct DriverCtx<'a> {
    /// Configuration space.
    pub cfg: &'a dyn ConfigSpace,
    /// The clock every wait uses.
    pub clock: &'a dyn Clock,
    /// MMIO mapping.
    pub platform: &'a mut dyn Platform,
    /// Clock value (µs) by which the current call should return; `None` outside
    /// [`super::run`].
    pub deadline_us: Option<u64>,
}

impl<'a> DriverCtx<'a> {
    /// A context without a deadline.
    pub fn new(
        cfg: &'a dyn ConfigSpace,
        clock: &'a dyn Clock,
        platform: &'a mut dyn Platform,
    ) -> Self {
        DriverCtx {
            cfg,
            clock,
            platform,
            deadline_us: None,
        }
    }

    /// Microseconds left before the deadline (`u64::MAX` without one). Drivers wait at most
    /// `min(their own timeout, time_left_us())`.
    pub fn time_left_us(&self) -> u64 {
        match self.deadline_us {
            Some(d) => d.saturating_sub(self.clock.now_us()),
            None => u64::MAX,
        }
    }
}

/// What a successful [`Driver::preinit`] proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreinitReport {
    /// The driver read back state its reset really changed (virtio `device_status` non-zero
    /// before, 0 after; NVMe CC.EN/CSTS.RDY 1 before, 0 after; AHCI GHC.HR self-cleared and a
    /// port's PxIE back from 0xf to 0). `false` = it did its writes but could not prove
    /// anything; [`super::run`] then tries the next method.
    pub proven: bool,
    /// The proof in a few words, e.g. "status reads 0".
    pub detail: String,
}

impl PreinitReport {
    /// A proven reset.
    pub fn proven(detail: impl Into<String>) -> Self {
        PreinitReport {
            proven: true,
            detail: detail.into(),
        }
    }

    /// Writes done, nothing proven.
    pub fn unproven(detail: impl Into<String>) -> Self {
        PreinitReport {
            proven: false,
            detail: detail.into(),
        }
    }
}

/// Why a driver call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// A register window could not be mapped (BAR unassigned, or [`Platform::map_mmio`]
    /// refused).
    NoMmio {
        /// BAR index.
        bar: u8,
    },
    /// The device did not reach a state in time.
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long, in milliseconds.
        waited_ms: u32,
    },
    /// The device reads all-ones: it left the bus.
    Gone,
    /// Anything else, in the driver's words.
    Failed(String),
}

impl DriverError {
    /// A bounded wait on `what` that ran out ([`crate::time::poll_until`]'s error).
    pub fn timeout(what: &'static str, t: crate::time::TimedOut) -> Self {
        DriverError::Timeout {
            what,
            waited_ms: u32::try_from(t.waited_us / 1000).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::NoMmio { bar } => write!(f, "BAR{bar} not mappable"),
            DriverError::Timeout { what, waited_ms } => {
                write!(f, "timeout after {waited_ms} ms waiting for {what}")
            }
            DriverError::Gone => f.write_str("device reads all-ones"),
            DriverError::Failed(s) => f.write_str(s),
        }
    }
}

/// A PCI driver (Linux `struct pci_driver`). Every method gets the function it acts on; a
/// driver may serve several functions and keeps per-function state itself.
pub trait Driver {
    /// Short name for reports ("virtio-blk", "nvme").
    fn name(&self) -> &'static str;
    /// Whether this driver handles `dev` (IDs, class) and will use it.
    fn matches(&self, dev: &PciDevice) -> bool;
    /// Brings the device to a known idle state before anything probes it, without a bus-level
    /// reset: virtio `device_status = 0`, NVMe `CC.EN = 0` then wait `CSTS.RDY = 0`, AHCI
    /// `GHC.HR`. Runs with memory (and I/O) decode on and bus mastering off; must bound its
    /// waits by [`DriverCtx::time_left_us`].
    fn preinit(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        dev: &PciDevice,
    ) -> Result<PreinitReport, DriverError>;
}

/// A driver given as its parts: how a concrete driver module (`nvme`, `ahci`, `virtio_blk`)
/// presents itself to the reinit engine without a type of its own.
#[derive(Clone, Copy)]
pub struct FnDriver {
    /// Short name for reports.
    pub name: &'static str,
    /// [`Driver::matches`].
    pub matches: fn(&PciDevice) -> bool,
    /// [`Driver::preinit`].
    pub preinit: fn(&mut DriverCtx<'_>, &PciDevice) -> Result<PreinitReport, DriverError>,
}

impl Driver for FnDriver {
    fn name(&self) -> &'static str {
        self.name
    }
    fn matches(&self, dev: &PciDevice) -> bool {
        (self.matches)(dev)
    }
    fn preinit(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        dev: &PciDevice,
    ) -> Result<PreinitReport, DriverError> {
        (self.preinit)(ctx, dev)
    }
}

/// A driver whose whole preinit is "reset what sits behind one memory BAR, proving it by
/// read-back, within the time the engine left": the shape of the controllers rkdump resets but
/// never drives (xHCI, e1000e).
#[derive(Clone, Copy)]
pub struct BarResetDriver {
    /// Short name for reports.
    pub name: &'static str,
    /// [`Driver::matches`].
    pub matches: fn(&PciDevice) -> bool,
    /// The memory BAR holding the registers `reset` needs.
    pub bar: u8,
    /// Resets the device behind the mapped BAR within `budget_us` of `clock`.
    pub reset: fn(&Mmio, &dyn Clock, u64) -> Result<PreinitReport, DriverError>,
}

impl Driver for BarResetDriver {
    fn name(&self) -> &'static str {
        self.name
    }
    fn matches(&self, dev: &PciDevice) -> bool {
        (self.matches)(dev)
    }
    fn preinit(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        dev: &PciDevice,
    ) -> Result<PreinitReport, DriverError> {
        let regs = ctx.platform.map_bar(dev, self.bar)?;
        let budget = ctx.time_left_us();
        (self.reset)(&regs, ctx.clock, budget)
    }
}

/// Index of a registered driver in a [`DriverSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DriverId(pub usize);

/// The driver registry: drivers in registration order (the first match wins).
#[derive(Default)]
pub struct DriverSet {
    drivers: Vec<Box<dyn Driver>>,
}

impl DriverSet {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a driver; earlier registrations take precedence when several match.
    pub fn register(&mut self, driver: Box<dyn Driver>) -> DriverId {
        self.drivers.push(driver);
        DriverId(self.drivers.len() - 1)
    }

    /// Number of registered drivers.
    pub fn len(&self) -> usize {
        self.drivers.len()
    }

    /// No drivers registered.
    pub fn is_empty(&self) -> bool {
        self.drivers.is_empty()
    }

    /// The first driver matching `dev`.
    pub fn find(&self, dev: &PciDevice) -> Option<DriverId> {
        self.drivers
            .iter()
            .position(|d| d.matches(dev))
            .map(DriverId)
    }

    /// The driver registered as `id`.
    pub fn get_mut(&mut self, id: DriverId) -> Option<&mut (dyn Driver + 'static)> {
        self.drivers.get_mut(id.0).map(|b| &mut **b)
    }

    /// Name of driver `id`.
    pub fn name(&self, id: DriverId) -> Option<&'static str> {
        self.drivers.get(id.0).map(|d| d.name())
    }
}

impl fmt::Debug for DriverSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverSet")
            .field(
                "drivers",
                &self.drivers.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}
