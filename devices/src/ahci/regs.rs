//! AHCI HBA and port registers (AHCI 1.3.1 §3): offsets, bit fields, port helpers.

use bitflags::bitflags;

/// HBA Capabilities.
pub(crate) const CAP: usize = 0x00;
/// Global HBA Control.
pub(crate) const GHC: usize = 0x04;
/// Ports Implemented.
pub(crate) const PI: usize = 0x0C;
/// Version.
pub(crate) const VS: usize = 0x10;
/// HBA Capabilities Extended.
pub(crate) const CAP2: usize = 0x24;

/// Port registers start here, 0x80 bytes per port (§3.3).
pub(crate) const PORT_BASE: usize = 0x100;
pub(crate) const PORT_STRIDE: usize = 0x80;
/// Command List Base Address (1 KiB aligned), and upper half.
pub(crate) const PX_CLB: usize = 0x00;
pub(crate) const PX_CLBU: usize = 0x04;
/// FIS Base Address (256 B aligned), and upper half.
pub(crate) const PX_FB: usize = 0x08;
pub(crate) const PX_FBU: usize = 0x0C;
/// Interrupt Status (RW1C).
pub(crate) const PX_IS: usize = 0x10;
/// Interrupt Enable.
pub(crate) const PX_IE: usize = 0x14;
/// Command and Status.
pub(crate) const PX_CMD: usize = 0x18;
/// Task File Data: ATA status in 7:0, error in 15:8.
pub(crate) const PX_TFD: usize = 0x20;
/// Signature of the attached device.
pub(crate) const PX_SIG: usize = 0x24;
/// SATA Status (SStatus).
pub(crate) const PX_SSTS: usize = 0x28;
/// SATA Control (SControl).
pub(crate) const PX_SCTL: usize = 0x2C;
/// SATA Error (RW1C).
pub(crate) const PX_SERR: usize = 0x30;
/// SATA Active: NCQ tags outstanding.
pub(crate) const PX_SACT: usize = 0x34;
/// Command Issue.
pub(crate) const PX_CI: usize = 0x38;

bitflags! {
    /// CAP single-bit fields (§3.1.1); the NCS field (bits 12:8) is read directly.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct HbaCap: u32 {
        /// Supports 64-bit addressing.
        const S64A = 1 << 31;
        /// Supports native command queuing.
        const SNCQ = 1 << 30;
        /// Supports staggered spin-up.
        const SSS = 1 << 27;
        const _ = !0;
    }

    /// GHC (§3.1.2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Ghc: u32 {
        /// HBA Reset.
        const HR = 1 << 0;
        /// Interrupt Enable.
        const IE = 1 << 1;
        /// AHCI Enable.
        const AE = 1 << 31;
    }

    /// PxCMD (§3.3.7).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PortCmd: u32 {
        /// Start: process the command list.
        const ST = 1 << 0;
        /// Spin-Up Device.
        const SUD = 1 << 1;
        /// Power On Device.
        const POD = 1 << 2;
        /// FIS Receive Enable.
        const FRE = 1 << 4;
        /// FIS Receive Running.
        const FR = 1 << 14;
        /// Command List Running.
        const CR = 1 << 15;
        const _ = !0;
    }

    /// PxIS (§3.3.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PortIs: u32 {
        /// Task File Error Status.
        const TFES = 1 << 30;
        /// Host Bus Fatal Error.
        const HBFS = 1 << 29;
        /// Host Bus Data Error.
        const HBDS = 1 << 28;
        /// Interface Fatal Error.
        const IFS = 1 << 27;
        /// Overflow.
        const OFS = 1 << 24;
        const _ = !0;
    }

    /// ATA status register, as in PxTFD 7:0.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct AtaStatus: u8 {
        /// Error.
        const ERR = 1 << 0;
        /// Data request.
        const DRQ = 1 << 3;
        /// Busy.
        const BSY = 1 << 7;
        const _ = !0;
    }
}

/// PxIS bits that end a command with an error.
pub(crate) const IS_ERRORS: PortIs = PortIs::TFES
    .union(PortIs::HBFS)
    .union(PortIs::HBDS)
    .union(PortIs::IFS)
    .union(PortIs::OFS);

/// PxIE value written before GHC.HR for the reset proof: D2H Register, PIO Setup, DMA Setup and
/// Set Device Bits FIS interrupts (§3.3.6; bits every HBA implements, and inside QEMU's
/// writable mask 0xfdc000ff). PxIE resets to 0 on HBA reset (§3.3.6, §10.4.3); with GHC.IE
/// off (and MSI/INTx off from the quiesce step) it raises nothing meanwhile.
pub(crate) const PROBE_IE: u32 = 0x0000_000F;

/// What GHC.HR did to a port register it must return to its reset value: the AHCI reset proof.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HrProbe {
    /// The port whose PxIE was used (the lowest implemented one).
    pub port: u8,
    /// PxIE read back after writing [`PROBE_IE`], before HR.
    pub set: u32,
    /// PxIE read after HR cleared; the reset value is 0.
    pub after: u32,
}

impl HrProbe {
    /// Whether the probe proves the reset: PxIE took a non-default value and HR put it back
    /// to 0.
    pub fn proves_reset(&self) -> bool {
        self.set != 0 && self.after == 0
    }
}

/// PxSIG of an ATA (non-packet) device (§3.3.9).
pub const SIG_ATA: u32 = 0x0000_0101;
/// PxSSTS.DET: device present and Phy communication established.
pub(crate) const DET_PRESENT: u32 = 3;
/// PxSSTS.IPM: interface in active state.
pub(crate) const IPM_ACTIVE: u32 = 1;
/// PxSCTL.IPM = 3: no transitions to Partial or Slumber (Linux sets the same).
pub(crate) const SCTL_NO_LPM: u32 = 3 << 8;

pub(crate) fn port_reg(port: u8, reg: usize) -> usize {
    PORT_BASE + usize::from(port) * PORT_STRIDE + reg
}

/// Implemented ports (PI) as indices.
pub(crate) fn ports_of(pi: u32) -> impl Iterator<Item = u8> {
    (0..32u8).filter(move |p| pi & (1 << p) != 0)
}

/// SStatus DET and IPM fields.
pub(crate) fn det_ipm(ssts: u32) -> (u32, u32) {
    (ssts & 0xF, (ssts >> 8) & 0xF)
}
