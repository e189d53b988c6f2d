//! The block-device interface the dump writer uses, and the kit the drivers behind it share
//! (register access, command slots, request checks and splitting, identify strings). Drivers
//! write straight from physical addresses (old-kernel memory or rkdump's own buffers), so page
//! data is never copied; a driver keeps as many requests in flight as its queue allows.

use crate::time::Clock;
use core::fmt;

pub mod ident;
pub mod regs;
pub mod request;
pub mod slots;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use ident::{ByteOrder, ident_string};
pub use regs::Regs;
pub use request::{check_request, split};
pub use slots::Slots;

/// One write: `len` bytes from physical address `phys` to the device starting at `lba`.
/// `len` is a multiple of the sector size; `phys` is at least 4-byte aligned (drivers needing
/// more split or bounce as required).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReq {
    /// First logical block.
    pub lba: u64,
    /// Source physical address.
    pub phys: u64,
    /// Bytes to write.
    pub len: u64,
}

/// What a block device reports about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Bytes per logical block (512 or 4096).
    pub block_size: u32,
    /// Number of logical blocks.
    pub blocks: u64,
    /// Largest single transfer the driver accepts in one request, in bytes.
    pub max_transfer: u64,
    /// Requests the driver can keep in flight.
    pub queue_depth: u16,
}

/// Block-device failures. Every variant is recoverable from the caller's view: the device is
/// skipped or the dump falls back to serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The device did not complete in time.
    Timeout {
        /// What was being waited for.
        what: &'static str,
    },
    /// The device reported an error status.
    DeviceError {
        /// Driver-specific status value.
        status: u32,
    },
    /// The request lies outside the device or is misaligned.
    BadRequest,
    /// The driver has no DMA memory for the request.
    NoMemory,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Timeout { what } => write!(f, "timeout waiting for {what}"),
            BlockError::DeviceError { status } => write!(f, "device error status {status:#x}"),
            BlockError::BadRequest => write!(f, "request outside the device or misaligned"),
            BlockError::NoMemory => write!(f, "out of DMA memory"),
        }
    }
}

/// How often a driver waiting for completions looks at the device's health register (NVMe
/// CSTS, virtio device status). Completions are found in memory; a register read is an exit to
/// the hypervisor, and under QEMU's TCG it takes the global lock the device model's completion
/// path needs, so reading it on every poll slows down the very completion being waited for.
pub const HEALTH_EVERY_US: u64 = 1_000;

/// Says when a polling loop is due for its next health-register read ([`HEALTH_EVERY_US`]).
pub struct HealthTimer {
    last_us: u64,
}

impl HealthTimer {
    /// Starts the interval now.
    pub fn new(clock: &dyn Clock) -> Self {
        HealthTimer {
            last_us: clock.now_us(),
        }
    }

    /// Whether [`HEALTH_EVERY_US`] passed since the last time this said yes (or since `new`).
    pub fn due(&mut self, clock: &dyn Clock) -> bool {
        let now = clock.now_us();
        if now.wrapping_sub(self.last_us) >= HEALTH_EVERY_US {
            self.last_us = now;
            true
        } else {
            false
        }
    }
}

/// Runs the caller's [`BlockDevice::write_overlapped`] work while polling, and remembers when
/// it said it is done so it is not called again.
pub struct Idle<'a> {
    work: &'a mut dyn FnMut() -> bool,
    more: bool,
}

impl<'a> Idle<'a> {
    /// Wraps `work`.
    pub fn new(work: &'a mut dyn FnMut() -> bool) -> Self {
        Idle { work, more: true }
    }

    /// One piece of the work, if any remains; whether more remains.
    pub fn step(&mut self) -> bool {
        if self.more {
            self.more = (self.work)();
        }
        self.more
    }
}

/// A polled block device.
///
/// Writes come in two shapes. [`write`](Self::write) and
/// [`write_overlapped`](Self::write_overlapped) return when every request completed.
/// [`submit`](Self::submit) returns as soon as the device holds the requests, so the caller can
/// prepare (and submit) the next batch while the device works on this one and the queue never
/// runs dry at a batch boundary; [`complete`](Self::complete) then waits for everything
/// submitted. Every other call ([`write`](Self::write), [`read`](Self::read),
/// [`flush`](Self::flush)) first waits for the submitted writes too, so a flush always covers
/// them. A failure of a submitted write is reported by the next call that waits for it.
pub trait BlockDevice {
    /// Geometry and limits.
    fn info(&self) -> BlockInfo;
    /// Short name for logs, e.g. "virtio-blk 00:03.0".
    fn name(&self) -> &str;
    /// Writes every request, pipelining up to the queue depth; returns when all completed.
    fn write(&mut self, reqs: &[WriteReq]) -> Result<(), BlockError> {
        self.write_overlapped(reqs, &mut || false)
    }
    /// [`write`](Self::write), running the caller's `idle` work while the device transfers:
    /// a driver that polls for completions calls `idle` between polls instead of spinning.
    /// `idle` does one bounded piece of work per call (well under a millisecond) and returns
    /// whether more remains; once it returned `false` it is not called again. It may also not
    /// be called at all, or only for part of its work: the caller finishes the rest after
    /// this returns. Every wait stays bounded by the driver's own timeout, which counts the
    /// time `idle` takes. `idle` must not touch the device, and may only read the memory the
    /// requests name (the device reads it at the same time).
    fn write_overlapped(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError>;
    /// Hands `reqs` to the device and returns once it holds all of them, without waiting for
    /// their completion; `idle` runs (as in [`write_overlapped`](Self::write_overlapped))
    /// while the driver waits for queue room. The memory the requests name must stay as it is
    /// until [`complete`](Self::complete) (or any other waiting call) returned.
    ///
    /// The default is [`write_overlapped`](Self::write_overlapped): the requests have
    /// completed when it returns, which is the same contract with no overlap across calls.
    fn submit(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        self.write_overlapped(reqs, idle)
    }
    /// Waits until every write handed to [`submit`](Self::submit) completed, running `idle`
    /// meanwhile; the first failure among them is the error. The default has nothing to wait
    /// for.
    fn complete(&mut self, idle: &mut dyn FnMut() -> bool) -> Result<(), BlockError> {
        let _ = idle;
        Ok(())
    }
    /// Reads `len` bytes at `lba` into physical address `phys` (a DMA buffer).
    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError>;
    /// Makes completed writes durable (cache flush), after waiting for the submitted ones.
    fn flush(&mut self) -> Result<(), BlockError>;
}
