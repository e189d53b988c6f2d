//! Polled NVMe driver: resets what a crashed kernel left enabled, then runs one admin and one I/O
//! queue pair whose PRP entries point straight at the dump's physical memory.
//!
//! Section numbers cite the NVM Express Base Specification 1.4.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use log::{info, warn};

use crate::block::{
    BlockDevice, BlockError, BlockInfo, HealthTimer, Idle, Regs, Slots, WriteReq, check_request,
    split,
};
use crate::hw::{DmaAllocator, DmaMem, Mmio, alloc_dma_mem, fence};
use crate::time::{Clock, poll_until};

mod command;
mod regs;
pub use regs::*;
pub mod driver;
mod error;
mod identify;
pub use command::*;
pub use driver::{NeverReady, matches};
pub use error::*;
pub use identify::*;
#[cfg(test)]
pub(crate) mod model;
#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------
// The driver.

/// Admin queue entries: initialisation runs one command at a time.
const ADMIN_ENTRIES: u16 = 32;
/// I/O queue entries before CAP.MQES: 64 × 64 bytes fill one SQ page.
const IO_ENTRIES: u16 = 64;
const ADMIN_TIMEOUT_US: u64 = 5_000_000;
const IO_TIMEOUT_US: u64 = 30_000_000;

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
        let off = usize::from(self.tail) * SQE_BYTES;
        self.sq.bytes_mut()[off..off + SQE_BYTES].copy_from_slice(&cmd.encode());
        self.tail = (self.tail + 1) % self.entries;
        fence(); // entry visible before the doorbell
        regs.write32(sq_doorbell(self.qid, stride), u32::from(self.tail));
    }

    /// Takes the next completion if the controller has posted one, and tells it so.
    fn pop(&mut self, regs: &impl Regs, stride: usize) -> Option<Completion> {
        let off = usize::from(self.cursor.head) * CQE_BYTES;
        // The dword holding the phase tag first: the rest is valid only once it flipped.
        let dw3 = self.cq.read32(off + 12);
        if Completion::parse([0, 0, 0, dw3]).phase() != self.cursor.phase {
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
    /// (all-ones) or went fatal (CFS) is reported at once rather than after the timeout, and
    /// running a piece of `idle` work between polls that find nothing.
    fn wait(
        &mut self,
        regs: &impl Regs,
        clock: &dyn Clock,
        stride: usize,
        timeout_us: u64,
        what: &'static str,
        idle: &mut Idle<'_>,
    ) -> Result<Completion, NvmeError> {
        let mut got = None;
        let mut bad = None;
        let mut health = HealthTimer::new(clock);
        let r = poll_until(clock, timeout_us, || {
            got = self.pop(regs, stride);
            if got.is_some() {
                return true;
            }
            idle.step();
            if health.due(clock) {
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
            page(usize::from(ADMIN_ENTRIES) * SQE_BYTES),
            page(usize::from(ADMIN_ENTRIES) * CQE_BYTES),
            page(4096),
            page(usize::from(entries) * SQE_BYTES),
            page(usize::from(entries) * CQE_BYTES),
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
        cmd.command_id = self.admin_cid;
        self.admin.push(&self.regs, self.stride, &cmd);
        let c = self.admin.wait(
            &self.regs,
            self.clock,
            self.stride,
            ADMIN_TIMEOUT_US,
            "admin completion",
            &mut Idle::new(&mut || false),
        )?;
        if c.command_id != cmd.command_id {
            return Err(NvmeError::BadCompletion { cid: c.command_id });
        }
        if !c.is_success() {
            return Err(NvmeError::AdminFailed {
                opcode: cmd.opcode,
                status: c.status_field(),
            });
        }
        Ok(c)
    }

    /// Queues one I/O command (with PRPs for `data`, if any), first reaping completions until a
    /// command identifier is free.
    fn submit(
        &mut self,
        mut cmd: Command,
        data: Option<(u64, u64)>,
        idle: &mut Idle<'_>,
    ) -> Result<(), NvmeError> {
        let cid = loop {
            if let Some(cid) = self.slots.alloc() {
                break cid;
            }
            self.reap(idle)?;
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
                        lba: cmd.slba(),
                        why: "no PRPs for this buffer",
                    });
                }
            }
        }
        cmd.command_id = cid;
        self.inflight[usize::from(cid)] = InFlight {
            opcode: cmd.opcode,
            lba: cmd.slba(),
        };
        self.io.push(&self.regs, self.stride, &cmd);
        Ok(())
    }

    /// Collects one I/O completion; an error status is remembered for the batch, anything that
    /// leaves the queue in an unknown state is returned.
    fn reap(&mut self, idle: &mut Idle<'_>) -> Result<(), NvmeError> {
        let c = self.io.wait(
            &self.regs,
            self.clock,
            self.stride,
            IO_TIMEOUT_US,
            "I/O completion",
            idle,
        )?;
        if !self.slots.release(c.command_id) {
            return Err(NvmeError::BadCompletion { cid: c.command_id });
        }
        if !c.is_success() && self.io_error.is_none() {
            let f = self.inflight[usize::from(c.command_id)];
            self.io_error = Some(NvmeError::IoFailed {
                opcode: f.opcode,
                lba: f.lba,
                status: c.status_field(),
            });
        }
        Ok(())
    }

    /// Runs a batch of reads or writes, keeping up to the queue depth in flight, and returns
    /// once every command completed; `idle` runs while it waits. A controller that stops
    /// answering is marked dead.
    fn transfer(
        &mut self,
        opcode: u8,
        reqs: impl Iterator<Item = (u64, u64, u64)> + Clone,
        idle: &mut Idle<'_>,
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
                if let Err(e) = self.submit(cmd, Some((phys, len)), idle) {
                    result = Err(e);
                    break 'all;
                }
            }
        }
        self.finish(result, idle)
    }

    /// Drains the commands in flight and combines the outcome.
    fn finish(
        &mut self,
        mut result: Result<(), NvmeError>,
        idle: &mut Idle<'_>,
    ) -> Result<(), NvmeError> {
        while !self.slots.is_idle() {
            if let Err(e) = self.reap(idle) {
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

    fn write_overlapped(
        &mut self,
        reqs: &[WriteReq],
        idle: &mut dyn FnMut() -> bool,
    ) -> Result<(), BlockError> {
        let reqs = reqs.iter().map(|r| (r.lba, r.phys, r.len));
        Ok(self.transfer(NVM_WRITE, reqs, &mut Idle::new(idle))?)
    }

    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        let once = core::iter::once((lba, phys, len));
        Ok(self.transfer(NVM_READ, once, &mut Idle::new(&mut || false))?)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if let Some(e) = self.dead {
            return Err(e.into());
        }
        if !self.vwc {
            return Ok(()); // no volatile cache: completed writes are already durable
        }
        self.io_error = None;
        let mut nothing = || false;
        let mut none = Idle::new(&mut nothing);
        let r = self.submit(Command::flush(self.nsid), None, &mut none);
        Ok(self.finish(r, &mut none)?)
    }
}
