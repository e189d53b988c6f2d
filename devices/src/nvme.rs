//! Polled NVMe driver: resets what a crashed kernel left enabled, then runs one admin and one I/O
//! queue pair whose PRP entries point straight at the dump's physical memory.
//!
//! Section numbers cite the NVM Express Base Specification 1.4.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use bitflags::bitflags;
use log::{info, warn};

use crate::block::{
    BlockDevice, BlockError, BlockInfo, ByteOrder, Regs, Slots, WriteReq, check_request,
    ident_string, split,
};
use crate::hw::{DmaAllocator, DmaMem, Mmio, alloc_dma_mem, fence};
use crate::time::{Clock, poll_until};

pub mod driver;
pub use driver::{NeverReady, NvmeDriver, matches};
#[cfg(test)]
pub(crate) mod tests;

// ---------------------------------------------------------------------------------------------
// Registers (§3.1).

/// Controller Capabilities.
const CAP: usize = 0x00;
/// Version.
const VS: usize = 0x08;
/// Interrupt Mask Set.
const INTMS: usize = 0x0C;
/// Controller Configuration.
const CC: usize = 0x14;
/// Controller Status.
const CSTS: usize = 0x1C;
/// Admin Queue Attributes.
const AQA: usize = 0x24;
/// Admin Submission Queue base.
const ASQ: usize = 0x28;
/// Admin Completion Queue base.
const ACQ: usize = 0x30;
/// First doorbell (§3.1.24).
const DOORBELLS: usize = 0x1000;

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
const CC_IOSQES_64: u32 = 6 << 16;
/// CC.IOCQES = 4: 16-byte completion entries.
const CC_IOCQES_16: u32 = 4 << 20;

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

fn sq_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELLS + 2 * usize::from(qid) * stride
}

fn cq_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELLS + (2 * usize::from(qid) + 1) * stride
}

// ---------------------------------------------------------------------------------------------
// Commands and completions (§4.2, §4.6).

/// Admin: Create I/O Submission Queue.
pub const ADMIN_CREATE_SQ: u8 = 0x01;
/// Admin: Create I/O Completion Queue.
pub const ADMIN_CREATE_CQ: u8 = 0x05;
/// Admin: Identify.
pub const ADMIN_IDENTIFY: u8 = 0x06;
/// NVM: Flush.
pub const NVM_FLUSH: u8 = 0x00;
/// NVM: Write.
pub const NVM_WRITE: u8 = 0x01;
/// NVM: Read.
pub const NVM_READ: u8 = 0x02;

/// Identify CNS: namespace data structure for NSID.
const CNS_NAMESPACE: u8 = 0x00;
/// Identify CNS: controller data structure.
const CNS_CONTROLLER: u8 = 0x01;
/// Identify CNS: active namespace ID list.
const CNS_ACTIVE_NSIDS: u8 = 0x02;

/// Page size the driver programs (CC.MPS = 0) and PRPs are built for.
pub const PAGE: u64 = 4096;
/// The largest transfer one PRP list page can describe whatever the start offset: the first
/// (partial) page in PRP1, up to 512 list entries for the rest.
pub const MAX_PRP_TRANSFER: u64 = 2 << 20;

/// CDW10 of the queue-creation commands: 0-based size in 31:16, queue ID in 15:0.
fn size_qid(qid: u16, entries: u16) -> u32 {
    (u32::from(entries.saturating_sub(1)) << 16) | u32::from(qid)
}

/// A submission queue entry (§4.2) using PRPs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// Opcode.
    pub opcode: u8,
    /// Command identifier (set at submission).
    pub cid: u16,
    /// Namespace identifier.
    pub nsid: u32,
    /// PRP entry 1.
    pub prp1: u64,
    /// PRP entry 2 or PRP list pointer.
    pub prp2: u64,
    /// Command dwords 10 to 15.
    pub cdw: [u32; 6],
}

impl Command {
    /// Identify (§5.15) with `cns` into the 4 KiB page at `buf`.
    pub fn identify(cns: u8, nsid: u32, buf: u64) -> Self {
        Command {
            opcode: ADMIN_IDENTIFY,
            nsid,
            prp1: buf,
            cdw: [u32::from(cns), 0, 0, 0, 0, 0],
            ..Command::default()
        }
    }
    /// Create I/O Completion Queue (§5.3): physically contiguous, interrupts disabled (polled).
    pub fn create_cq(qid: u16, entries: u16, base: u64) -> Self {
        Command {
            opcode: ADMIN_CREATE_CQ,
            prp1: base,
            // CDW11: PC=1, IEN=0, IV=0.
            cdw: [size_qid(qid, entries), 1, 0, 0, 0, 0],
            ..Command::default()
        }
    }
    /// Create I/O Submission Queue (§5.4): physically contiguous, bound to `cqid`.
    pub fn create_sq(qid: u16, entries: u16, base: u64, cqid: u16) -> Self {
        let cdw11 = (u32::from(cqid) << 16) | 1; // PC=1; QPRIO only matters with WRR
        Command {
            opcode: ADMIN_CREATE_SQ,
            prp1: base,
            cdw: [size_qid(qid, entries), cdw11, 0, 0, 0, 0],
            ..Command::default()
        }
    }
    /// Read or Write (NVM Command Set §6.9, §6.15) of `blocks` (1..=65536) at `lba`.
    pub fn rw(opcode: u8, nsid: u32, lba: u64, blocks: u32, prp1: u64, prp2: u64) -> Self {
        let nlb = blocks.saturating_sub(1) & 0xFFFF;
        Command {
            opcode,
            nsid,
            prp1,
            prp2,
            // CDW10/11: SLBA; CDW12: NLB, 0-based.
            cdw: [lba as u32, (lba >> 32) as u32, nlb, 0, 0, 0],
            ..Command::default()
        }
    }
    /// Flush (§6.8) of `nsid`'s volatile write cache.
    pub fn flush(nsid: u32) -> Self {
        Command {
            opcode: NVM_FLUSH,
            nsid,
            ..Command::default()
        }
    }
    /// The 64 bytes the controller reads.
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        let dw0 = u32::from(self.opcode) | (u32::from(self.cid) << 16); // FUSE=0, PSDT=0 (PRP)
        b[0..4].copy_from_slice(&dw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        b[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (i, dw) in self.cdw.iter().enumerate() {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&dw.to_le_bytes());
        }
        b
    }
}

/// A completion queue entry (§4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Command-specific result (DW0).
    pub result: u32,
    /// Submission queue head pointer.
    pub sq_head: u16,
    /// Submission queue identifier.
    pub sq_id: u16,
    /// Command identifier.
    pub cid: u16,
    /// Phase tag.
    pub phase: bool,
    /// Status field (DW3 31:17): SC in bits 7:0, SCT in 10:8, then CRD, M, DNR.
    pub status: u16,
}

impl Completion {
    /// Decodes the four dwords of an entry.
    pub fn parse(dw: [u32; 4]) -> Self {
        Completion {
            result: dw[0],
            sq_head: dw[2] as u16,
            sq_id: (dw[2] >> 16) as u16,
            cid: dw[3] as u16,
            phase: dw[3] & (1 << 16) != 0,
            status: (dw[3] >> 17) as u16,
        }
    }
    /// Whether SCT and SC are both zero.
    pub fn is_success(&self) -> bool {
        self.status & 0x7FF == 0
    }
}

/// Completion queue consumer position and the phase a new entry carries (§4.6: the controller
/// inverts the phase tag each time it wraps; the queue starts zeroed, so the first pass is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CqCursor {
    /// Next entry to look at.
    pub head: u16,
    /// Phase tag of a new entry at `head`.
    pub phase: bool,
    entries: u16,
}

impl CqCursor {
    /// A fresh queue of `entries` entries.
    pub fn new(entries: u16) -> Self {
        CqCursor {
            head: 0,
            phase: true,
            entries: entries.max(1),
        }
    }
    /// Consumes the entry at `head`.
    pub fn advance(&mut self) {
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
    }
}

/// Why PRPs could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpError {
    /// Zero-length transfer.
    Empty,
    /// The buffer is not dword aligned (§4.3: PRP offsets have bits 1:0 clear).
    Misaligned,
    /// The buffer wraps the address space.
    Overflow,
    /// More pages than one list page describes.
    TooLong,
}

/// Builds PRP1/PRP2 for `len` bytes at `phys` (§4.3): PRP1 may start inside a page, every later
/// entry is a page base. When more than two pages are touched PRP2 points at the list written
/// into `list` (whose physical address is `list_phys`, page aligned, 4 KiB).
pub fn build_prps(
    phys: u64,
    len: u64,
    list: &mut [u8],
    list_phys: u64,
) -> Result<(u64, u64), PrpError> {
    if len == 0 {
        return Err(PrpError::Empty);
    }
    if !phys.is_multiple_of(4) {
        return Err(PrpError::Misaligned);
    }
    phys.checked_add(len).ok_or(PrpError::Overflow)?;
    let first = PAGE - phys % PAGE;
    if len <= first {
        return Ok((phys, 0));
    }
    let next = phys - phys % PAGE + PAGE;
    let rest_pages = (len - first).div_ceil(PAGE);
    if rest_pages == 1 {
        return Ok((phys, next));
    }
    let entries = list.len().min(PAGE as usize) / 8;
    if rest_pages > entries as u64 {
        return Err(PrpError::TooLong);
    }
    for (i, e) in list
        .chunks_exact_mut(8)
        .take(rest_pages as usize)
        .enumerate()
    {
        e.copy_from_slice(&(next + i as u64 * PAGE).to_le_bytes());
    }
    Ok((phys, list_phys))
}

/// Bytes one command may move per Identify Controller MDTS (§5.15.2.1): 2^MDTS minimum pages,
/// `None` when unlimited.
pub fn mdts_bytes(mdts: u8, mps_min: u8) -> Option<u64> {
    if mdts == 0 {
        return None;
    }
    1u64.checked_shl(12 + u32::from(mps_min) + u32::from(mdts))
        .or(Some(u64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Identify data (§5.15.2).

/// What the driver uses from Identify Controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerId {
    /// PCI vendor ID.
    pub vid: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// Maximum Data Transfer Size (0 = no limit).
    pub mdts: u8,
    /// Number of namespaces.
    pub nn: u32,
    /// A volatile write cache is present (so Flush matters).
    pub vwc: bool,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

impl ControllerId {
    /// Parses the 4 KiB Identify Controller data structure.
    pub fn parse(b: &[u8]) -> Result<Self, NvmeError> {
        if b.len() < 4096 {
            return Err(NvmeError::BadIdentify {
                what: "controller data shorter than 4 KiB",
            });
        }
        Ok(ControllerId {
            vid: le16(b, 0),
            serial: ident_string(&b[4..24], ByteOrder::Plain),
            model: ident_string(&b[24..64], ByteOrder::Plain),
            firmware: ident_string(&b[64..72], ByteOrder::Plain),
            mdts: b[77],
            nn: le32(b, 516),
            vwc: b[525] & 1 != 0,
        })
    }
}

/// What the driver uses from Identify Namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceId {
    /// Namespace size in logical blocks.
    pub nsze: u64,
    /// log2 of the logical block size of the formatted LBA format.
    pub lba_shift: u32,
}

impl NamespaceId {
    /// Parses the 4 KiB Identify Namespace data structure; refuses formats the driver cannot
    /// write without extra buffers (metadata) and block sizes outside 512..=4096.
    pub fn parse(b: &[u8]) -> Result<Self, NvmeError> {
        if b.len() < 4096 {
            return Err(NvmeError::BadIdentify {
                what: "namespace data shorter than 4 KiB",
            });
        }
        let nsze = le64(b, 0);
        if nsze == 0 {
            return Err(NvmeError::NoNamespace);
        }
        let nlbaf = b[25];
        let flbas = b[26];
        // FLBAS bits 3:0, extended by bits 6:5 in NVMe 2.0 for more than 16 formats.
        let idx = (flbas & 0xF) | (((flbas >> 5) & 0x3) << 4);
        if idx > nlbaf {
            return Err(NvmeError::BadIdentify {
                what: "FLBAS selects a format beyond NLBAF",
            });
        }
        let lbaf = le32(b, 128 + 4 * usize::from(idx));
        let ms = lbaf & 0xFFFF;
        let lbads = (lbaf >> 16) & 0xFF;
        if ms != 0 {
            return Err(NvmeError::Unsupported {
                what: "LBA format with metadata",
                value: u64::from(ms),
            });
        }
        if !(9..=12).contains(&lbads) {
            return Err(NvmeError::Unsupported {
                what: "logical block size",
                value: u64::from(lbads),
            });
        }
        Ok(NamespaceId {
            nsze,
            lba_shift: lbads,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and reports.

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

/// What [`Nvme::preinit`] found and did.
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

/// How much of the reset [`Nvme::new_with`] performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeReset {
    /// Clear CC.EN and wait for RDY=0 first (always, outside tests).
    Disable,
    /// Program the queues over whatever state is there. For rkdump's negative-control tests
    /// only: on a controller left enabled QEMU replays stale admin commands.
    Skip,
}

// ---------------------------------------------------------------------------------------------
// The driver.

/// Admin queue entries: initialisation runs one command at a time.
const ADMIN_ENTRIES: u16 = 32;
/// I/O queue entries before CAP.MQES: 64 × 64 bytes fill one SQ page.
const IO_ENTRIES: u16 = 64;
const ADMIN_TIMEOUT_US: u64 = 5_000_000;
const IO_TIMEOUT_US: u64 = 30_000_000;
/// While waiting for a completion, look at CSTS this often so a dead controller fails fast.
const HEALTH_EVERY_US: u64 = 1_000;

/// One submission/completion queue pair.
struct Queue {
    qid: u16,
    entries: u16,
    sq: DmaMem,
    cq: DmaMem,
    tail: u16,
    cursor: CqCursor,
}

impl Queue {
    fn new(qid: u16, entries: u16, sq: DmaMem, cq: DmaMem) -> Self {
        Queue {
            qid,
            entries,
            sq,
            cq,
            tail: 0,
            cursor: CqCursor::new(entries),
        }
    }

    /// Writes `cmd` at the tail and rings the doorbell. The caller keeps fewer than `entries`
    /// commands outstanding, so the queue cannot overflow.
    fn push(&mut self, regs: &impl Regs, stride: usize, cmd: &Command) {
        let off = usize::from(self.tail) * 64;
        self.sq.bytes_mut()[off..off + 64].copy_from_slice(&cmd.encode());
        self.tail = (self.tail + 1) % self.entries;
        fence(); // entry visible before the doorbell
        regs.write32(sq_doorbell(self.qid, stride), u32::from(self.tail));
    }

    /// Takes the next completion if the controller has posted one, and tells it so.
    fn pop(&mut self, regs: &impl Regs, stride: usize) -> Option<Completion> {
        let off = usize::from(self.cursor.head) * 16;
        let dw3 = self.cq.read32(off + 12);
        if (dw3 & (1 << 16) != 0) != self.cursor.phase {
            return None;
        }
        fence(); // the rest of the entry after its phase tag
        let c = Completion::parse([
            self.cq.read32(off),
            self.cq.read32(off + 4),
            self.cq.read32(off + 8),
            dw3,
        ]);
        self.cursor.advance();
        regs.write32(cq_doorbell(self.qid, stride), u32::from(self.cursor.head));
        Some(c)
    }

    /// Waits for the next completion, checking CSTS now and then so a controller that died
    /// (all-ones) or went fatal (CFS) is reported at once rather than after the timeout.
    fn wait(
        &mut self,
        regs: &impl Regs,
        clock: &dyn Clock,
        stride: usize,
        timeout_us: u64,
        what: &'static str,
    ) -> Result<Completion, NvmeError> {
        let mut got = None;
        let mut bad = None;
        let mut last = clock.now_us();
        let r = poll_until(clock, timeout_us, || {
            got = self.pop(regs, stride);
            if got.is_some() {
                return true;
            }
            let now = clock.now_us();
            if now.wrapping_sub(last) >= HEALTH_EVERY_US {
                last = now;
                let csts = regs.read32(CSTS);
                if csts == u32::MAX {
                    bad = Some(NvmeError::Gone);
                } else if csts & Csts::CFS.bits() != 0 {
                    bad = Some(NvmeError::Fatal { csts });
                }
            }
            bad.is_some()
        });
        if let Some(c) = got {
            return Ok(c);
        }
        if let Some(e) = bad {
            return Err(e);
        }
        Err(NvmeError::Timeout {
            what,
            waited_us: r.err().map_or(timeout_us, |t| t.waited_us),
            csts: regs.read32(CSTS),
        })
    }
}

/// A command in flight, for error reports.
#[derive(Clone, Copy, Debug, Default)]
struct InFlight {
    opcode: u8,
    lba: u64,
}

/// A polled NVMe controller driving namespace `nsid` through one I/O queue pair.
pub struct Nvme<'c, R: Regs = Mmio> {
    regs: R,
    clock: &'c dyn Clock,
    stride: usize,
    admin: Queue,
    admin_cid: u16,
    io: Queue,
    /// One PRP list page per command identifier.
    prp_lists: DmaMem,
    ident: DmaMem,
    slots: Slots,
    inflight: Vec<InFlight>,
    /// The first error status seen by the batch in progress.
    io_error: Option<NvmeError>,
    /// Set when the controller stopped answering: every later call fails with it.
    dead: Option<NvmeError>,
    nsid: u32,
    lba_shift: u32,
    blocks: u64,
    max_transfer: u64,
    vwc: bool,
    model: String,
    serial: String,
    name: String,
    report: Option<ResetReport>,
}

impl<'c, R: Regs> Nvme<'c, R> {
    /// The reset a crashed kernel's controller needs before reuse (§3.1.5, §7.6.1; Linux
    /// `nvme_disable_ctrl`): refuse an all-ones controller, clear CC.EN (and every other CC
    /// field) and wait for CSTS.RDY=0 within (CAP.TO+1) × 500 ms, then mask all interrupts.
    /// Without it a controller left enabled ignores the new admin queue and replays stale
    /// commands from old memory (QEMU `nvme_process_db`).
    pub fn preinit(regs: &R, clock: &dyn Clock) -> Result<ResetReport, NvmeError> {
        let csts = regs.read32(CSTS);
        if csts == u32::MAX {
            return Err(NvmeError::Gone);
        }
        let cap = Cap(regs.read64(CAP));
        let cc = regs.read32(CC);
        let timeout = cap.ready_timeout_us();
        let mut report = ResetReport {
            cap: cap.0,
            version: regs.read32(VS),
            cc_before: cc,
            csts_before: csts,
            settle_us: None,
            disable_us: None,
        };
        let ready_or_dead = |s: u32| s & (Csts::RDY | Csts::CFS).bits() != 0;
        if cc & Cc::EN.bits() != 0 && !ready_or_dead(csts) {
            // §3.1.5: clearing EN before RDY caught up is undefined; let enabling finish
            // first. A controller that never gets there is disabled anyway.
            report.settle_us = poll_until(clock, timeout, || ready_or_dead(regs.read32(CSTS))).ok();
        }
        if cc != 0 || csts & Csts::RDY.bits() != 0 {
            regs.write32(CC, 0);
            let r = poll_until(clock, timeout, || {
                let s = regs.read32(CSTS);
                s == u32::MAX || s & Csts::RDY.bits() == 0
            });
            let csts = regs.read32(CSTS);
            if csts == u32::MAX {
                return Err(NvmeError::Gone);
            }
            match r {
                Ok(us) => report.disable_us = Some(us),
                Err(t) => {
                    return Err(NvmeError::Timeout {
                        what: "CSTS.RDY=0 after clearing CC.EN",
                        waited_us: t.waited_us,
                        csts,
                    });
                }
            }
        }
        if regs.read32(CSTS) & Csts::NSSRO.bits() != 0 {
            regs.write32(CSTS, Csts::NSSRO.bits()); // RW1C: start from a clean status
        }
        // Polled driver: pin interrupts masked (MSI/MSI-X are off, the PCI layer's job).
        regs.write32(INTMS, u32::MAX);
        Ok(report)
    }

    /// Resets and brings up the controller: admin queues, CC, Identify, one I/O queue pair.
    pub fn new(
        regs: R,
        dma: &mut dyn DmaAllocator,
        clock: &'c dyn Clock,
    ) -> Result<Self, NvmeError> {
        Self::new_with(regs, dma, clock, NvmeReset::Disable)
    }

    /// [`Nvme::new`] with a choice of reset; [`NvmeReset::Skip`] exists for negative tests.
    pub fn new_with(
        regs: R,
        dma: &mut dyn DmaAllocator,
        clock: &'c dyn Clock,
        reset: NvmeReset,
    ) -> Result<Self, NvmeError> {
        let report = match reset {
            NvmeReset::Disable => Some(Self::preinit(&regs, clock)?),
            NvmeReset::Skip => None,
        };
        let cap = Cap(regs.read64(CAP));
        if cap.0 == u64::MAX {
            return Err(NvmeError::Gone);
        }
        if !cap.nvm_command_set() {
            return Err(NvmeError::Unsupported {
                what: "controller without the NVM command set",
                value: cap.0,
            });
        }
        if cap.mps_min() != 0 {
            return Err(NvmeError::Unsupported {
                what: "minimum page size above 4 KiB (CAP.MPSMIN)",
                value: u64::from(cap.mps_min()),
            });
        }
        let entries = cap.max_queue_entries().min(u32::from(IO_ENTRIES)) as u16;
        if entries < 2 {
            return Err(NvmeError::Unsupported {
                what: "queue size (CAP.MQES)",
                value: u64::from(entries),
            });
        }
        let mut page = |n: usize| alloc_dma_mem(dma, n.next_multiple_of(4096), 4096, false);
        let (Some(asq), Some(acq), Some(ident), Some(iosq), Some(iocq), Some(prp_lists)) = (
            page(usize::from(ADMIN_ENTRIES) * 64),
            page(usize::from(ADMIN_ENTRIES) * 16),
            page(4096),
            page(usize::from(entries) * 64),
            page(usize::from(entries) * 16),
            page(usize::from(entries - 1) * 4096),
        ) else {
            return Err(NvmeError::NoMemory);
        };

        let aq = u32::from(ADMIN_ENTRIES - 1);
        regs.write32(AQA, (aq << 16) | aq);
        regs.write64(ASQ, asq.phys(0));
        regs.write64(ACQ, acq.phys(0));
        // CSS=NVM (0), MPS=4 KiB (0), AMS=round robin (0), SHN=0.
        regs.write32(CC, Cc::EN.bits() | CC_IOSQES_64 | CC_IOCQES_16);
        let r = poll_until(clock, cap.ready_timeout_us(), || {
            let s = regs.read32(CSTS);
            s == u32::MAX || s & (Csts::RDY | Csts::CFS).bits() != 0
        });
        let csts = regs.read32(CSTS);
        if csts == u32::MAX {
            return Err(NvmeError::Gone);
        }
        if csts & Csts::CFS.bits() != 0 {
            return Err(NvmeError::Fatal { csts });
        }
        if let Err(t) = r {
            return Err(NvmeError::Timeout {
                what: "CSTS.RDY=1 after setting CC.EN",
                waited_us: t.waited_us,
                csts,
            });
        }
        regs.write32(INTMS, u32::MAX);

        let mut nvme = Nvme {
            stride: cap.doorbell_stride(),
            regs,
            clock,
            admin: Queue::new(0, ADMIN_ENTRIES, asq, acq),
            admin_cid: 0,
            io: Queue::new(1, entries, iosq, iocq),
            prp_lists,
            ident,
            slots: Slots::new(u32::from(entries - 1)),
            inflight: alloc::vec![InFlight::default(); usize::from(entries)],
            io_error: None,
            dead: None,
            nsid: 0,
            lba_shift: 9,
            blocks: 0,
            max_transfer: 0,
            vwc: false,
            model: String::new(),
            serial: String::new(),
            name: String::new(),
            report,
        };
        if let Err(e) = nvme.configure(cap) {
            // Quiesce a controller we give up on: nothing of ours should stay live in it.
            nvme.regs.write32(CC, 0);
            return Err(e);
        }
        let n = nvme.io.entries;
        info!(
            "{}: sn {} ns {} {} x {} B, max transfer {} KiB, {} commands in flight{}",
            nvme.name,
            nvme.serial,
            nvme.nsid,
            nvme.blocks,
            1u32 << nvme.lba_shift,
            nvme.max_transfer >> 10,
            n - 1,
            if nvme.vwc { ", write cache" } else { "" }
        );
        Ok(nvme)
    }

    /// Identify, then the I/O queue pair.
    fn configure(&mut self, cap: Cap) -> Result<(), NvmeError> {
        self.identify(cap)?;
        let (n, sq, cq) = (self.io.entries, self.io.sq.phys(0), self.io.cq.phys(0));
        self.admin(Command::create_cq(1, n, cq))?;
        self.admin(Command::create_sq(1, n, sq, 1))?;
        Ok(())
    }

    /// Identify Controller, the first active namespace, and its format.
    fn identify(&mut self, cap: Cap) -> Result<(), NvmeError> {
        let ctrl = ControllerId::parse(&self.identify_page(CNS_CONTROLLER, 0)?)?;
        // CNS 2 (NVMe 1.1+) lists active namespaces; a controller refusing it gets NSID 1.
        self.nsid = match self.identify_page(CNS_ACTIVE_NSIDS, 0) {
            Ok(list) => list
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .find(|&id| id != 0 && id != u32::MAX)
                .ok_or(NvmeError::NoNamespace)?,
            Err(NvmeError::AdminFailed { .. }) => 1,
            Err(e) => return Err(e),
        };
        let ns = NamespaceId::parse(&self.identify_page(CNS_NAMESPACE, self.nsid)?)?;
        let block = 1u64 << ns.lba_shift;
        let limit = mdts_bytes(ctrl.mdts, cap.mps_min())
            .unwrap_or(u64::MAX)
            .min(MAX_PRP_TRANSFER)
            .min(block << 16); // NLB is 16 bits
        let max_transfer = limit & !(block - 1);
        if max_transfer == 0 {
            return Err(NvmeError::Unsupported {
                what: "MDTS below one block",
                value: u64::from(ctrl.mdts),
            });
        }
        self.lba_shift = ns.lba_shift;
        self.blocks = ns.nsze;
        self.max_transfer = max_transfer;
        self.vwc = ctrl.vwc;
        self.name = format!("nvme {}", ctrl.model);
        self.model = ctrl.model;
        self.serial = ctrl.serial;
        Ok(())
    }

    /// Runs Identify with `cns` and returns a copy of the page.
    fn identify_page(&mut self, cns: u8, nsid: u32) -> Result<Vec<u8>, NvmeError> {
        self.ident.bytes_mut().fill(0);
        self.admin(Command::identify(cns, nsid, self.ident.phys(0)))?;
        Ok(self.ident.bytes_mut().to_vec())
    }

    /// Runs one admin command to completion.
    fn admin(&mut self, mut cmd: Command) -> Result<Completion, NvmeError> {
        self.admin_cid = self.admin_cid.wrapping_add(1);
        cmd.cid = self.admin_cid;
        self.admin.push(&self.regs, self.stride, &cmd);
        let c = self.admin.wait(
            &self.regs,
            self.clock,
            self.stride,
            ADMIN_TIMEOUT_US,
            "admin completion",
        )?;
        if c.cid != cmd.cid {
            return Err(NvmeError::BadCompletion { cid: c.cid });
        }
        if !c.is_success() {
            return Err(NvmeError::AdminFailed {
                opcode: cmd.opcode,
                status: c.status,
            });
        }
        Ok(c)
    }

    /// Queues one I/O command (with PRPs for `data`, if any), first reaping completions until a
    /// command identifier is free.
    fn submit(&mut self, mut cmd: Command, data: Option<(u64, u64)>) -> Result<(), NvmeError> {
        let cid = loop {
            if let Some(cid) = self.slots.alloc() {
                break cid;
            }
            self.reap()?;
        };
        if let Some((phys, len)) = data {
            let at = usize::from(cid) * PAGE as usize;
            let list_phys = self.prp_lists.phys(at);
            let list = &mut self.prp_lists.bytes_mut()[at..at + PAGE as usize];
            match build_prps(phys, len, list, list_phys) {
                Ok((prp1, prp2)) => (cmd.prp1, cmd.prp2) = (prp1, prp2),
                Err(_) => {
                    self.slots.release(cid);
                    return Err(NvmeError::BadRequest {
                        lba: u64::from(cmd.cdw[0]) | (u64::from(cmd.cdw[1]) << 32),
                        why: "no PRPs for this buffer",
                    });
                }
            }
        }
        cmd.cid = cid;
        self.inflight[usize::from(cid)] = InFlight {
            opcode: cmd.opcode,
            lba: u64::from(cmd.cdw[0]) | (u64::from(cmd.cdw[1]) << 32),
        };
        self.io.push(&self.regs, self.stride, &cmd);
        Ok(())
    }

    /// Collects one I/O completion; an error status is remembered for the batch, anything that
    /// leaves the queue in an unknown state is returned.
    fn reap(&mut self) -> Result<(), NvmeError> {
        let c = self.io.wait(
            &self.regs,
            self.clock,
            self.stride,
            IO_TIMEOUT_US,
            "I/O completion",
        )?;
        if !self.slots.release(c.cid) {
            return Err(NvmeError::BadCompletion { cid: c.cid });
        }
        if !c.is_success() && self.io_error.is_none() {
            let f = self.inflight[usize::from(c.cid)];
            self.io_error = Some(NvmeError::IoFailed {
                opcode: f.opcode,
                lba: f.lba,
                status: c.status,
            });
        }
        Ok(())
    }

    /// Runs a batch of reads or writes, keeping up to the queue depth in flight, and returns
    /// once every command completed. A controller that stops answering is marked dead.
    fn transfer(
        &mut self,
        opcode: u8,
        reqs: impl Iterator<Item = (u64, u64, u64)> + Clone,
    ) -> Result<(), NvmeError> {
        if let Some(e) = self.dead {
            return Err(e);
        }
        for (lba, phys, len) in reqs.clone() {
            check_request(lba, phys, len, self.lba_shift, self.blocks, 4)
                .map_err(|why| NvmeError::BadRequest { lba, why })?;
        }
        self.io_error = None;
        let mut result = Ok(());
        'all: for (lba, phys, len) in reqs {
            for (lba, phys, len) in split(lba, phys, len, self.lba_shift, self.max_transfer) {
                if self.io_error.is_some() {
                    break 'all; // stop at the first failure, drain what is in flight
                }
                let blocks = (len >> self.lba_shift) as u32;
                let cmd = Command::rw(opcode, self.nsid, lba, blocks, 0, 0);
                if let Err(e) = self.submit(cmd, Some((phys, len))) {
                    result = Err(e);
                    break 'all;
                }
            }
        }
        self.finish(result)
    }

    /// Drains the commands in flight and combines the outcome.
    fn finish(&mut self, mut result: Result<(), NvmeError>) -> Result<(), NvmeError> {
        while !self.slots.is_idle() {
            if let Err(e) = self.reap() {
                result = result.and(Err(e));
                break;
            }
        }
        if let Err(e) = result {
            if !matches!(e, NvmeError::BadRequest { .. }) {
                warn!("{}: {e}; giving up on the device", self.name);
                self.dead = Some(e);
            }
            return Err(e);
        }
        self.io_error.take().map_or(Ok(()), Err)
    }

    /// Model number from Identify Controller.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Serial number from Identify Controller.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The namespace written to.
    pub fn nsid(&self) -> u32 {
        self.nsid
    }

    /// What the reset in the constructor found (`None` when it was skipped).
    pub fn reset_report(&self) -> Option<&ResetReport> {
        self.report.as_ref()
    }
}

impl<R: Regs> BlockDevice for Nvme<'_, R> {
    fn info(&self) -> BlockInfo {
        BlockInfo {
            block_size: 1 << self.lba_shift,
            blocks: self.blocks,
            max_transfer: self.max_transfer,
            queue_depth: self.io.entries - 1,
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, reqs: &[WriteReq]) -> Result<(), BlockError> {
        let reqs = reqs.iter().map(|r| (r.lba, r.phys, r.len));
        Ok(self.transfer(NVM_WRITE, reqs)?)
    }

    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        Ok(self.transfer(NVM_READ, core::iter::once((lba, phys, len)))?)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if let Some(e) = self.dead {
            return Err(e.into());
        }
        if !self.vwc {
            return Ok(()); // no volatile cache: completed writes are already durable
        }
        self.io_error = None;
        let r = self.submit(Command::flush(self.nsid), None);
        Ok(self.finish(r)?)
    }
}
