//! NVMe driver errors and the reset report.

use core::fmt;

use super::{Cc, Csts};
use crate::block::BlockError;

/// NVMe driver failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// Registers read all-ones: the controller is gone (unmapped BAR, dead link).
    Gone,
    /// A wait ran out.
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long, in microseconds.
        waited_us: u64,
        /// CSTS when giving up.
        csts: u32,
    },
    /// CSTS.CFS: the controller reported a fatal error.
    Fatal {
        /// CSTS.
        csts: u32,
    },
    /// The controller or namespace lacks something the driver needs.
    Unsupported {
        /// What.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// An admin command completed with an error status.
    AdminFailed {
        /// Opcode.
        opcode: u8,
        /// Status field (SC | SCT << 8 | ...).
        status: u16,
    },
    /// An I/O command completed with an error status.
    IoFailed {
        /// Opcode.
        opcode: u8,
        /// First block of the command.
        lba: u64,
        /// Status field.
        status: u16,
    },
    /// A completion named a command that is not in flight.
    BadCompletion {
        /// The identifier it carried.
        cid: u16,
    },
    /// Identify data the driver cannot use.
    BadIdentify {
        /// What is wrong.
        what: &'static str,
    },
    /// No active namespace.
    NoNamespace,
    /// The DMA allocator ran out.
    NoMemory,
    /// A request outside the namespace or misaligned.
    BadRequest {
        /// First block asked for.
        lba: u64,
        /// Why it was refused.
        why: &'static str,
    },
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeError::Gone => write!(f, "nvme: controller gone (registers read all-ones)"),
            NvmeError::Timeout {
                what,
                waited_us,
                csts,
            } => write!(
                f,
                "nvme: timeout after {} ms waiting for {what} (CSTS {csts:#x})",
                waited_us / 1000
            ),
            NvmeError::Fatal { csts } => {
                write!(f, "nvme: controller fatal status (CSTS {csts:#x})")
            }
            NvmeError::Unsupported { what, value } => {
                write!(f, "nvme: unsupported {what} ({value:#x})")
            }
            NvmeError::AdminFailed { opcode, status } => write!(
                f,
                "nvme: admin opcode {opcode:#04x} failed, SCT {:#x} SC {:#04x}",
                (status >> 8) & 7,
                status & 0xFF
            ),
            NvmeError::IoFailed {
                opcode,
                lba,
                status,
            } => write!(
                f,
                "nvme: I/O opcode {opcode:#04x} at LBA {lba} failed, SCT {:#x} SC {:#04x}",
                (status >> 8) & 7,
                status & 0xFF
            ),
            NvmeError::BadCompletion { cid } => {
                write!(
                    f,
                    "nvme: completion for command {cid} that is not in flight"
                )
            }
            NvmeError::BadIdentify { what } => write!(f, "nvme: bad identify data: {what}"),
            NvmeError::NoNamespace => write!(f, "nvme: no active namespace"),
            NvmeError::NoMemory => write!(f, "nvme: out of DMA memory"),
            NvmeError::BadRequest { lba, why } => {
                write!(f, "nvme: bad request at LBA {lba}: {why}")
            }
        }
    }
}

impl From<NvmeError> for BlockError {
    fn from(e: NvmeError) -> Self {
        match e {
            NvmeError::Timeout { what, .. } => BlockError::Timeout { what },
            NvmeError::IoFailed { status, .. } | NvmeError::AdminFailed { status, .. } => {
                BlockError::DeviceError {
                    status: u32::from(status),
                }
            }
            NvmeError::Fatal { csts } => BlockError::DeviceError { status: csts },
            NvmeError::Gone => BlockError::DeviceError { status: u32::MAX },
            NvmeError::BadRequest { .. } => BlockError::BadRequest,
            NvmeError::NoMemory => BlockError::NoMemory,
            NvmeError::Unsupported { .. }
            | NvmeError::BadCompletion { .. }
            | NvmeError::BadIdentify { .. }
            | NvmeError::NoNamespace => BlockError::DeviceError { status: 0 },
        }
    }
}

/// What [`Nvme::preinit`](super::Nvme::preinit) found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetReport {
    /// CAP.
    pub cap: u64,
    /// VS.
    pub version: u32,
    /// CC as found.
    pub cc_before: u32,
    /// CSTS as found.
    pub csts_before: u32,
    /// How long a half-enabled controller (CC.EN=1, RDY=0) took to become ready before being
    /// disabled; `None` if it was not half-enabled or never got there.
    pub settle_us: Option<u64>,
    /// How long CSTS.RDY took to clear after CC.EN=0; `None` if no disable was needed.
    pub disable_us: Option<u64>,
}

impl ResetReport {
    /// The crashed kernel left the controller enabled (CC.EN=1).
    pub fn was_enabled(&self) -> bool {
        self.cc_before & Cc::EN.bits() != 0
    }
    /// CSTS.CFS was set.
    pub fn was_fatal(&self) -> bool {
        self.csts_before & Csts::CFS.bits() != 0
    }
}

impl fmt::Display for ResetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nvme {}.{}: found CC {:#x} CSTS {:#x}",
            self.version >> 16,
            (self.version >> 8) & 0xFF,
            self.cc_before,
            self.csts_before
        )?;
        if let Some(us) = self.settle_us {
            write!(f, ", let half-enabled controller settle {us} us")?;
        }
        match self.disable_us {
            Some(us) => write!(f, ", disabled, RDY=0 after {us} us"),
            None => write!(f, ", already disabled"),
        }
    }
}

/// How much of the reset [`Nvme::new_with`](super::Nvme::new_with) performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeReset {
    /// Clear CC.EN and wait for RDY=0 first (always, outside tests).
    Disable,
    /// Program the queues over whatever state is there. For rkdump's negative-control tests
    /// only: on a controller left enabled QEMU replays stale admin commands.
    Skip,
}
