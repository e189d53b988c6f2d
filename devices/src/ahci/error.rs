//! AHCI driver errors, the reset report and bring-up options.

use core::fmt;

use crate::block::BlockError;

/// AHCI driver failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AhciError {
    /// Registers read all-ones: the HBA is gone.
    Gone,
    /// A wait ran out.
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The port, if the wait was per port.
        port: Option<u8>,
        /// How long, in microseconds.
        waited_us: u64,
    },
    /// No implemented port has a SATA disk.
    NoDisk {
        /// Ports that showed a device (PxSSTS.DET=3) but did not come up as a disk.
        present: u32,
    },
    /// The port's device is not an ATA disk (ATAPI, port multiplier, nothing).
    NotDisk {
        /// Port.
        port: u8,
        /// PxSIG.
        sig: u32,
    },
    /// A command ended with an error (PxIS error bits or PxTFD.ERR).
    DeviceError {
        /// Port.
        port: u8,
        /// ATA command.
        command: u8,
        /// PxTFD (error register in 15:8, status in 7:0).
        tfd: u32,
        /// PxIS.
        is: u32,
    },
    /// IDENTIFY data the driver cannot use.
    BadIdentify {
        /// What is wrong.
        what: &'static str,
    },
    /// The HBA or disk lacks something the driver needs.
    Unsupported {
        /// What.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// The DMA allocator ran out.
    NoMemory,
    /// A request outside the disk or one the HBA cannot address.
    BadRequest {
        /// First sector asked for.
        lba: u64,
        /// Why it was refused.
        why: &'static str,
    },
}

impl fmt::Display for AhciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AhciError::Gone => write!(f, "ahci: HBA gone (registers read all-ones)"),
            AhciError::Timeout {
                what,
                port,
                waited_us,
            } => {
                write!(f, "ahci: ")?;
                if let Some(p) = port {
                    write!(f, "port {p}: ")?;
                }
                write!(
                    f,
                    "timeout after {} ms waiting for {what}",
                    waited_us / 1000
                )
            }
            AhciError::NoDisk { present } => {
                write!(f, "ahci: no SATA disk (ports with a device: {present:#x})")
            }
            AhciError::NotDisk { port, sig } => {
                write!(
                    f,
                    "ahci: port {port}: not an ATA disk (signature {sig:#010x})"
                )
            }
            AhciError::DeviceError {
                port,
                command,
                tfd,
                is,
            } => write!(
                f,
                "ahci: port {port}: command {command:#04x} failed, status {:#04x} error {:#04x} PxIS {is:#x}",
                tfd & 0xFF,
                (tfd >> 8) & 0xFF
            ),
            AhciError::BadIdentify { what } => write!(f, "ahci: bad IDENTIFY data: {what}"),
            AhciError::Unsupported { what, value } => {
                write!(f, "ahci: unsupported {what} ({value:#x})")
            }
            AhciError::NoMemory => write!(f, "ahci: out of DMA memory"),
            AhciError::BadRequest { lba, why } => {
                write!(f, "ahci: bad request at LBA {lba}: {why}")
            }
        }
    }
}

impl From<AhciError> for BlockError {
    fn from(e: AhciError) -> Self {
        match e {
            AhciError::Timeout { what, .. } => BlockError::Timeout { what },
            AhciError::DeviceError { tfd, .. } => BlockError::DeviceError { status: tfd },
            AhciError::Gone => BlockError::DeviceError { status: u32::MAX },
            AhciError::BadRequest { .. } => BlockError::BadRequest,
            AhciError::NoMemory => BlockError::NoMemory,
            AhciError::NoDisk { .. }
            | AhciError::NotDisk { .. }
            | AhciError::BadIdentify { .. }
            | AhciError::Unsupported { .. } => BlockError::DeviceError { status: 0 },
        }
    }
}

/// What [`Ahci::preinit`](super::Ahci::preinit), [`Ahci::hba_reset`](super::Ahci::hba_reset) or [`Ahci::stop_ports`](super::Ahci::stop_ports) found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetReport {
    /// GHC as found.
    pub ghc_before: u32,
    /// CAP as found.
    pub cap: u32,
    /// PI as found.
    pub pi: u32,
    /// VS.
    pub version: u32,
    /// Ports whose command list or FIS receive engine was on (ST, CR, FRE or FR).
    pub ports_running: u32,
    /// How long GHC.HR took to clear; `None` if no HBA reset was done.
    pub hba_reset_us: Option<u64>,
    /// PxIE before and after GHC.HR (the reset proof); `None` without an HBA reset or
    /// without an implemented port.
    pub hr_probe: Option<super::HrProbe>,
    /// The HBA reset cleared CAP/PI bits firmware had set, and they were written back.
    pub cap_restored: bool,
    /// Ports whose engines would not stop: unusable.
    pub ports_stuck: u32,
}

impl fmt::Display for ResetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ahci {}.{}: found GHC {:#x}, ports implemented {:#x}, running {:#x}",
            self.version >> 16,
            (self.version >> 8) & 0xFF,
            self.ghc_before,
            self.pi,
            self.ports_running
        )?;
        if let Some(us) = self.hba_reset_us {
            write!(f, ", HBA reset in {us} us")?;
        }
        if self.cap_restored {
            write!(f, ", CAP/PI restored")?;
        }
        if self.ports_stuck != 0 {
            write!(f, ", ports {:#x} would not stop", self.ports_stuck)?;
        }
        Ok(())
    }
}

/// How much reset [`Ahci::new_with`](super::Ahci::new_with) performs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AhciReset {
    /// HBA reset (GHC.HR), then stop every port, then COMRESET the chosen one.
    #[default]
    Hba,
    /// No HBA reset (when policy forbids it): stop every port, COMRESET the chosen one.
    Ports,
    /// Reprogram over whatever is running. For rkdump's negative-control tests only: a port
    /// left running keeps fetching from the crashed kernel's command list.
    Skip,
}

/// Options for [`Ahci::new_with`](super::Ahci::new_with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AhciOptions {
    /// Reset depth.
    pub reset: AhciReset,
    /// Use this port only; `None` takes the first port with a disk.
    pub port: Option<u8>,
}
