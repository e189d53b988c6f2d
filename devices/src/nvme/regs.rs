//! NVMe controller registers (NVM Express Base 1.4 §3.1): offsets, bit fields, capabilities,
//! doorbells.

use bitflags::bitflags;

/// Controller Capabilities.
pub(crate) const CAP: usize = 0x00;
/// Version.
pub(crate) const VS: usize = 0x08;
/// Interrupt Mask Set.
pub(crate) const INTMS: usize = 0x0C;
/// Controller Configuration.
pub(crate) const CC: usize = 0x14;
/// Controller Status.
pub(crate) const CSTS: usize = 0x1C;
/// Admin Queue Attributes.
pub(crate) const AQA: usize = 0x24;
/// Admin Submission Queue base.
pub(crate) const ASQ: usize = 0x28;
/// Admin Completion Queue base.
pub(crate) const ACQ: usize = 0x30;
/// First doorbell (§3.1.24).
pub(crate) const DOORBELLS: usize = 0x1000;

bitflags! {
    /// CC single-bit fields (§3.1.5); the multi-bit fields are the `CC_*` constants.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Cc: u32 {
        /// Enable.
        const EN = 1 << 0;
    }

    /// CSTS (§3.1.6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Csts: u32 {
        /// Ready.
        const RDY = 1 << 0;
        /// Controller Fatal Status.
        const CFS = 1 << 1;
        /// NVM Subsystem Reset Occurred (RW1C).
        const NSSRO = 1 << 4;
    }
}

/// CC.IOSQES = 6: 64-byte submission entries.
pub(crate) const CC_IOSQES_64: u32 = 6 << 16;
/// CC.IOCQES = 4: 16-byte completion entries.
pub(crate) const CC_IOCQES_16: u32 = 4 << 20;

/// Controller Capabilities (§3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Maximum Queue Entries Supported, as a count (the field is 0-based).
    pub fn max_queue_entries(self) -> u32 {
        (self.0 & 0xFFFF) as u32 + 1
    }
    /// Worst-case time for CSTS.RDY to follow CC.EN: (CAP.TO + 1) × 500 ms, in microseconds
    /// (+1 so a controller reporting TO=0 still gets half a second).
    pub fn ready_timeout_us(self) -> u64 {
        (((self.0 >> 24) & 0xFF) + 1) * 500_000
    }
    /// Doorbell stride in bytes: 4 << CAP.DSTRD.
    pub fn doorbell_stride(self) -> usize {
        4 << ((self.0 >> 32) & 0xF)
    }
    /// Whether the NVM command set is supported (CAP.CSS bit 0).
    pub fn nvm_command_set(self) -> bool {
        self.0 & (1 << 37) != 0
    }
    /// CAP.MPSMIN: minimum memory page size is 4 KiB << this.
    pub fn mps_min(self) -> u8 {
        ((self.0 >> 48) & 0xF) as u8
    }
}

pub(crate) fn sq_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELLS + 2 * usize::from(qid) * stride
}

pub(crate) fn cq_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELLS + (2 * usize::from(qid) + 1) * stride
}
