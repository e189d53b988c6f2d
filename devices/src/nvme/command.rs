//! NVMe submission and completion queue entries (NVM Express Base 1.4 §4.2, §4.6) as the
//! controller reads and writes them, the commands rkdump issues, and PRP construction (§4.3).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

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
pub const CNS_NAMESPACE: u8 = 0x00;
/// Identify CNS: controller data structure.
pub const CNS_CONTROLLER: u8 = 0x01;
/// Identify CNS: active namespace ID list.
pub const CNS_ACTIVE_NSIDS: u8 = 0x02;

/// Page size the driver programs (CC.MPS = 0) and PRPs are built for.
pub const PAGE: u64 = 4096;
/// The largest transfer one PRP list page can describe whatever the start offset: the first
/// (partial) page in PRP1, up to 512 list entries for the rest.
pub const MAX_PRP_TRANSFER: u64 = 2 << 20;

/// CDW10 of the queue-creation commands: 0-based size in 31:16, queue ID in 15:0.
fn size_qid(qid: u16, entries: u16) -> u32 {
    (u32::from(entries.saturating_sub(1)) << 16) | u32::from(qid)
}

/// A submission queue entry (§4.2, Linux `struct nvme_common_command`), PRP form (PSDT = 0).
/// The integers are little-endian on the wire, like x86_64.
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub struct Command {
    /// 0x00: opcode.
    pub opcode: u8,
    /// 0x01: FUSE (1:0), PSDT (7:6); 0 = not fused, PRPs.
    pub flags: u8,
    /// 0x02: command identifier (set at submission).
    pub command_id: u16,
    /// 0x04: namespace identifier.
    pub nsid: u32,
    /// 0x08: command dwords 2 and 3 (reserved here).
    pub cdw2: [u32; 2],
    /// 0x10: metadata pointer (unused: no metadata formats).
    pub metadata: u64,
    /// 0x18: PRP entry 1.
    pub prp1: u64,
    /// 0x20: PRP entry 2 or PRP list pointer.
    pub prp2: u64,
    /// 0x28: command dword 10.
    pub cdw10: u32,
    /// 0x2C: command dword 11.
    pub cdw11: u32,
    /// 0x30: command dword 12.
    pub cdw12: u32,
    /// 0x34: command dword 13.
    pub cdw13: u32,
    /// 0x38: command dword 14.
    pub cdw14: u32,
    /// 0x3C: command dword 15.
    pub cdw15: u32,
}

const _: () = assert!(cfg!(target_endian = "little"));
const _: () = assert!(core::mem::size_of::<Command>() == 64);
const _: () = assert!(core::mem::offset_of!(Command, prp1) == 0x18);
const _: () = assert!(core::mem::offset_of!(Command, cdw10) == 0x28);

impl Command {
    /// Identify (§5.15) with `cns` into the 4 KiB page at `buf`.
    pub fn identify(cns: u8, nsid: u32, buf: u64) -> Self {
        Command {
            opcode: ADMIN_IDENTIFY,
            nsid,
            prp1: buf,
            cdw10: u32::from(cns),
            ..Command::default()
        }
    }
    /// Create I/O Completion Queue (§5.3): physically contiguous, interrupts disabled (polled).
    pub fn create_cq(qid: u16, entries: u16, base: u64) -> Self {
        Command {
            opcode: ADMIN_CREATE_CQ,
            prp1: base,
            cdw10: size_qid(qid, entries),
            cdw11: 1, // PC=1, IEN=0, IV=0
            ..Command::default()
        }
    }
    /// Create I/O Submission Queue (§5.4): physically contiguous, bound to `cqid`.
    pub fn create_sq(qid: u16, entries: u16, base: u64, cqid: u16) -> Self {
        Command {
            opcode: ADMIN_CREATE_SQ,
            prp1: base,
            cdw10: size_qid(qid, entries),
            cdw11: (u32::from(cqid) << 16) | 1, // PC=1; QPRIO only matters with WRR
            ..Command::default()
        }
    }
    /// Read or Write (NVM Command Set §6.9, §6.15) of `blocks` (1..=65536) at `lba`.
    pub fn rw(opcode: u8, nsid: u32, lba: u64, blocks: u32, prp1: u64, prp2: u64) -> Self {
        Command {
            opcode,
            nsid,
            prp1,
            prp2,
            // CDW10/11: SLBA; CDW12: NLB, 0-based.
            cdw10: lba as u32,
            cdw11: (lba >> 32) as u32,
            cdw12: blocks.saturating_sub(1) & 0xFFFF,
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
    /// Starting LBA of a Read or Write (CDW10/11).
    pub fn slba(&self) -> u64 {
        u64::from(self.cdw10) | (u64::from(self.cdw11) << 32)
    }
    /// The 64 bytes the controller reads.
    pub fn encode(&self) -> [u8; 64] {
        zerocopy::transmute!(*self)
    }
}

/// A completion queue entry (§4.6, Linux `struct nvme_completion`).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub struct Completion {
    /// 0x00: command-specific result (DW0).
    pub result: u32,
    /// 0x04: DW1, reserved for the commands rkdump issues.
    pub rsvd: u32,
    /// 0x08: submission queue head pointer.
    pub sq_head: u16,
    /// 0x0A: submission queue identifier.
    pub sq_id: u16,
    /// 0x0C: command identifier.
    pub command_id: u16,
    /// 0x0E: phase tag (bit 0) and status field (15:1: SC 8:1, SCT 11:9, CRD, M, DNR).
    pub status: u16,
}

const _: () = assert!(core::mem::size_of::<Completion>() == CQE_BYTES);
/// Bytes of a submission queue entry (CC.IOSQES = 6).
pub const SQE_BYTES: usize = core::mem::size_of::<Command>();
/// Bytes of a completion queue entry (CC.IOCQES = 4).
pub const CQE_BYTES: usize = 16;
const _: () = assert!(core::mem::offset_of!(Completion, command_id) == 0x0C);

impl Completion {
    /// The entry from its four dwords, as read from the queue.
    pub fn parse(dw: [u32; 4]) -> Self {
        zerocopy::transmute!(dw)
    }
    /// Phase tag.
    pub fn phase(&self) -> bool {
        self.status & 1 != 0
    }
    /// Status field without the phase tag: SC in bits 7:0, SCT in 10:8, then CRD, M, DNR.
    pub fn status_field(&self) -> u16 {
        self.status >> 1
    }
    /// Whether SCT and SC are both zero.
    pub fn is_success(&self) -> bool {
        self.status_field() & 0x7FF == 0
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
