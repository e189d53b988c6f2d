//! Polled AHCI driver for one SATA disk: HBA and port resets for what a crashed kernel left
//! running, then IDENTIFY and DMA reads/writes whose PRDTs point straight at the dump's physical
//! memory; NCQ with up to 32 tags when HBA and disk support it, else one command at a time.
//!
//! Section numbers cite AHCI 1.3.1; ATA commands and IDENTIFY words cite ACS-3, FIS layouts
//! SATA 3.x §10.5.

use alloc::format;
use alloc::string::String;

use log::{info, warn};

use crate::block::{
    BlockDevice, BlockError, BlockInfo, Idle, Regs, Slots, WriteReq, check_request, split,
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
pub use driver::matches;
pub use error::*;
pub use identify::*;
#[cfg(test)]
pub(crate) mod model;
#[cfg(test)]
mod tests;

// ---------------------------------------------------------------------------------------------
// The driver.

/// GHC.HR must clear within 1 s (§10.4.3; Linux `ahci_reset_controller`).
const HR_TIMEOUT_US: u64 = 1_000_000;
/// PxCMD.CR must clear within 500 ms of ST=0 (§10.1.2).
const CR_TIMEOUT_US: u64 = 500_000;
/// PxCMD.FR: spec says 500 ms, Linux gives it 1 s.
const FR_TIMEOUT_US: u64 = 1_000_000;
/// Phy link after COMRESET (Linux `sata_link_resume` debounce limit).
const LINK_TIMEOUT_US: u64 = 1_000_000;
/// Device ready (BSY=0) after COMRESET; a disk already spinning answers in milliseconds.
const READY_TIMEOUT_US: u64 = 10_000_000;
const IDENTIFY_TIMEOUT_US: u64 = 5_000_000;
const IO_TIMEOUT_US: u64 = 30_000_000;
/// Port recoveries (stop, COMRESET, IDENTIFY, retry of the batch) one driver attempts in all;
/// past that a failing port is given up at once.
const MAX_RECOVERIES: u32 = 3;

/// Stops one port's engines (§10.1.2): ST=0 then wait CR=0, FRE=0 then wait FR=0. Returns
/// whether anything was running.
fn stop_port(regs: &impl Regs, clock: &dyn Clock, port: u8) -> Result<bool, AhciError> {
    let reg = |r| port_reg(port, r);
    let cmd = PortCmd::from_bits_retain(regs.read32(reg(PX_CMD)));
    if cmd.bits() == u32::MAX {
        return Err(AhciError::Gone);
    }
    let running = cmd.intersects(PortCmd::ST | PortCmd::CR | PortCmd::FRE | PortCmd::FR);
    let wait = |bit: PortCmd, timeout, what| {
        poll_until(clock, timeout, || {
            regs.read32(reg(PX_CMD)) & bit.bits() == 0
        })
        .map_err(|t| AhciError::Timeout {
            what,
            port: Some(port),
            waited_us: t.waited_us,
        })
    };
    if cmd.intersects(PortCmd::ST | PortCmd::CR) {
        regs.write32(reg(PX_CMD), (cmd - PortCmd::ST).bits());
        wait(PortCmd::CR, CR_TIMEOUT_US, "PxCMD.CR=0")?;
    }
    let cmd = PortCmd::from_bits_retain(regs.read32(reg(PX_CMD)));
    if cmd.intersects(PortCmd::FRE | PortCmd::FR) {
        regs.write32(reg(PX_CMD), (cmd - PortCmd::FRE).bits());
        wait(PortCmd::FR, FR_TIMEOUT_US, "PxCMD.FR=0")?;
    }
    Ok(running)
}

/// Ports of `pi` whose engines are on.
fn running_ports(regs: &impl Regs, pi: u32) -> u32 {
    let on = (PortCmd::ST | PortCmd::CR | PortCmd::FRE | PortCmd::FR).bits();
    ports_of(pi)
        .filter(|&p| regs.read32(port_reg(p, PX_CMD)) & on != 0)
        .fold(0, |m, p| m | (1 << p))
}

/// A polled AHCI port with one SATA disk.
pub struct Ahci<'c, R: Regs = Mmio> {
    regs: R,
    clock: &'c dyn Clock,
    port: u8,
    /// Command list (32 headers) at 0, received-FIS area at [`RFIS_OFFSET`].
    list: DmaMem,
    /// One command table per slot.
    tables: DmaMem,
    ident: DmaMem,
    ncq: bool,
    /// Commands in flight at most: the NCQ depth, or 1.
    depth: u16,
    slots: Slots,
    /// ATA command per slot, for error reports.
    commands: [u8; 32],
    s64a: bool,
    sector_shift: u32,
    sectors: u64,
    max_transfer: u64,
    flush_ext: bool,
    /// Set when a command failed or timed out and the port could not be recovered.
    dead: Option<AhciError>,
    /// The HBA's capabilities (for re-bringing the port up after a COMRESET).
    cap: HbaCap,
    /// Port recoveries done so far.
    recoveries: u32,
    model: String,
    serial: String,
    name: String,
    report: Option<ResetReport>,
}

impl<'c, R: Regs> Ahci<'c, R> {
    /// HBA reset (§10.4.3; Linux `ahci_reset_controller`): set GHC.AE, set GHC.HR and wait for
    /// it to clear (≤ 1 s), set AE again with interrupts off, and write back CAP/PI if the
    /// reset cleared bits firmware had set (QEMU never does; some Intel HBAs do).
    pub fn hba_reset(regs: &R, clock: &dyn Clock) -> Result<ResetReport, AhciError> {
        let ghc = regs.read32(GHC);
        if ghc == u32::MAX {
            return Err(AhciError::Gone);
        }
        let (cap, cap2, pi) = (regs.read32(CAP), regs.read32(CAP2), regs.read32(PI));
        let mut report = ResetReport {
            ghc_before: ghc,
            cap,
            pi,
            version: regs.read32(VS),
            ports_running: running_ports(regs, pi),
            ..ResetReport::default()
        };
        // Some HBAs ignore HR unless AHCI mode is on (Linux `ahci_enable_ahci`). IE off.
        regs.write32(GHC, Ghc::AE.bits());
        // The proof: a port register HR must reset (PxIE, reset value 0, §3.3.6; QEMU
        // `ahci_reset` clears irq_mask) set to a non-default value first, read after HR.
        let probe = ports_of(pi).next().map(|port| {
            regs.write32(port_reg(port, PX_IE), PROBE_IE);
            (port, regs.read32(port_reg(port, PX_IE)))
        });
        regs.write32(GHC, (Ghc::AE | Ghc::HR).bits());
        let r = poll_until(clock, HR_TIMEOUT_US, || {
            let g = regs.read32(GHC);
            g != u32::MAX && g & Ghc::HR.bits() == 0
        });
        if regs.read32(GHC) == u32::MAX {
            return Err(AhciError::Gone);
        }
        report.hba_reset_us = Some(r.map_err(|t| AhciError::Timeout {
            what: "GHC.HR=0",
            port: None,
            waited_us: t.waited_us,
        })?);
        report.hr_probe = probe.map(|(port, set)| HrProbe {
            port,
            set,
            after: regs.read32(port_reg(port, PX_IE)),
        });
        regs.write32(GHC, Ghc::AE.bits()); // AE again, IE=0: polled
        if regs.read32(CAP) != cap || regs.read32(PI) != pi {
            regs.write32(CAP, cap);
            regs.write32(CAP2, cap2);
            regs.write32(PI, pi);
            report.cap_restored = true;
        }
        for p in ports_of(pi) {
            regs.write32(port_reg(p, PX_IE), 0);
        }
        Ok(report)
    }

    /// Stops every implemented port (ST, then FRE; waits bounded by 500 ms and 1 s), masks and
    /// clears its interrupts, and turns off GHC.IE: the sequence when an HBA reset is not
    /// allowed, and a cheap check after one. A port that will not stop is reported, not fatal.
    pub fn stop_ports(regs: &R, clock: &dyn Clock) -> Result<ResetReport, AhciError> {
        let ghc = regs.read32(GHC);
        if ghc == u32::MAX {
            return Err(AhciError::Gone);
        }
        let pi = regs.read32(PI);
        let mut report = ResetReport {
            ghc_before: ghc,
            cap: regs.read32(CAP),
            pi,
            version: regs.read32(VS),
            ..ResetReport::default()
        };
        regs.write32(GHC, (ghc | Ghc::AE.bits()) & !(Ghc::IE | Ghc::HR).bits());
        for p in ports_of(pi) {
            regs.write32(port_reg(p, PX_IE), 0);
            match stop_port(regs, clock, p) {
                Ok(true) => report.ports_running |= 1 << p,
                Ok(false) => {}
                Err(AhciError::Gone) => return Err(AhciError::Gone),
                Err(e) => {
                    warn!("{e}");
                    report.ports_stuck |= 1 << p;
                }
            }
            regs.write32(port_reg(p, PX_SERR), u32::MAX);
            regs.write32(port_reg(p, PX_IS), u32::MAX);
        }
        Ok(report)
    }

    /// The full reset a crashed kernel's HBA needs: [`Ahci::hba_reset`] then
    /// [`Ahci::stop_ports`].
    pub fn preinit(regs: &R, clock: &dyn Clock) -> Result<ResetReport, AhciError> {
        let hr = Self::hba_reset(regs, clock)?;
        let stop = Self::stop_ports(regs, clock)?;
        Ok(ResetReport {
            ports_stuck: stop.ports_stuck,
            ..hr
        })
    }

    /// Ports that report a device with established Phy communication (PxSSTS.DET=3), for a
    /// caller that wants to try them one by one with [`AhciOptions::port`].
    pub fn present_ports(regs: &R) -> u32 {
        ports_of(regs.read32(PI))
            .filter(|&p| det_ipm(regs.read32(port_reg(p, PX_SSTS))).0 == DET_PRESENT)
            .fold(0, |m, p| m | (1 << p))
    }

    /// Resets the HBA and brings up the first port with a SATA disk.
    pub fn new(
        regs: R,
        dma: &mut dyn DmaAllocator,
        clock: &'c dyn Clock,
    ) -> Result<Self, AhciError> {
        Self::new_with(regs, dma, clock, AhciOptions::default())
    }

    /// [`Ahci::new`] with a choice of reset and port.
    pub fn new_with(
        regs: R,
        dma: &mut dyn DmaAllocator,
        clock: &'c dyn Clock,
        opts: AhciOptions,
    ) -> Result<Self, AhciError> {
        let report = match opts.reset {
            AhciReset::Hba => Some(Self::preinit(&regs, clock)?),
            AhciReset::Ports => Some(Self::stop_ports(&regs, clock)?),
            AhciReset::Skip => None,
        };
        let cap = HbaCap::from_bits_retain(regs.read32(CAP));
        let pi = regs.read32(PI);
        if cap.bits() == u32::MAX || pi == u32::MAX {
            return Err(AhciError::Gone);
        }
        let s64a = cap.contains(HbaCap::S64A);
        let (Some(list), Some(tables), Some(ident)) = (
            alloc_dma_mem(dma, 4096, 4096, !s64a),
            alloc_dma_mem(dma, 32 * TABLE_SIZE, 4096, !s64a),
            alloc_dma_mem(dma, 4096, 4096, !s64a),
        ) else {
            return Err(AhciError::NoMemory);
        };
        let mut ahci = Ahci {
            regs,
            clock,
            port: 0,
            list,
            tables,
            ident,
            ncq: false,
            depth: 1,
            slots: Slots::new(1),
            commands: [0; 32],
            s64a,
            sector_shift: 9,
            sectors: 0,
            max_transfer: 0,
            flush_ext: true,
            dead: None,
            cap,
            recoveries: 0,
            model: String::new(),
            serial: String::new(),
            name: String::new(),
            report,
        };
        let stuck = report.map_or(0, |r| r.ports_stuck);
        let mut present = 0u32;
        let mut last = None;
        for p in ports_of(pi & !stuck).filter(|&p| opts.port.is_none_or(|want| want == p)) {
            if det_ipm(ahci.regs.read32(port_reg(p, PX_SSTS))).0 != DET_PRESENT {
                continue;
            }
            present |= 1 << p;
            match ahci.bring_up(p, cap, opts.reset) {
                Ok(()) => {
                    info!(
                        "{}: sn {} {} x {} B, {}, max transfer {} KiB",
                        ahci.name,
                        ahci.serial,
                        ahci.sectors,
                        1u32 << ahci.sector_shift,
                        if ahci.ncq {
                            format!("NCQ depth {}", ahci.info().queue_depth)
                        } else {
                            String::from("no NCQ")
                        },
                        ahci.max_transfer >> 10
                    );
                    return Ok(ahci);
                }
                Err(e @ (AhciError::Gone | AhciError::NoMemory)) => return Err(e),
                Err(e) => {
                    warn!("{e}; trying the next port");
                    // The buffers are reused for the next port: this one must let go of them.
                    stop_port(&ahci.regs, clock, p)?;
                    last = Some(e);
                }
            }
        }
        Err(match (opts.port, last) {
            (Some(_), Some(e)) => e,
            _ => AhciError::NoDisk { present },
        })
    }

    /// Brings up `port`: command list and FIS area, FRE, COMRESET, wait for the disk, ST,
    /// IDENTIFY.
    fn bring_up(&mut self, port: u8, cap: HbaCap, reset: AhciReset) -> Result<(), AhciError> {
        self.port = port;
        self.dead = None;
        let regs = &self.regs;
        let reg = |r| port_reg(port, r);
        let timeout = |what, t: crate::time::TimedOut| AhciError::Timeout {
            what,
            port: Some(port),
            waited_us: t.waited_us,
        };
        if reset == AhciReset::Skip {
            let sig = regs.read32(reg(PX_SIG));
            let (det, ipm) = det_ipm(regs.read32(reg(PX_SSTS)));
            if sig != SIG_ATA || det != DET_PRESENT || ipm != IPM_ACTIVE {
                return Err(AhciError::NotDisk { port, sig });
            }
        } else {
            stop_port(regs, self.clock, port)?; // CLB/FB may only change while stopped
        }
        let (clb, fb) = (self.list.phys(0), self.list.phys(RFIS_OFFSET));
        regs.write32(reg(PX_CLB), clb as u32);
        regs.write32(reg(PX_CLBU), (clb >> 32) as u32);
        regs.write32(reg(PX_FB), fb as u32);
        regs.write32(reg(PX_FBU), (fb >> 32) as u32);
        regs.write32(reg(PX_IE), 0);
        regs.write32(reg(PX_SERR), u32::MAX);
        regs.write32(reg(PX_IS), u32::MAX);
        let cmd = regs.read32(reg(PX_CMD));
        regs.write32(
            reg(PX_CMD),
            cmd | (PortCmd::FRE | PortCmd::SUD | PortCmd::POD).bits(),
        );
        if reset != AhciReset::Skip {
            // COMRESET (SATA §11.4; Linux `sata_link_hardreset`): the crashed kernel may have
            // left NCQ commands queued in the drive itself; only a link reset drops them.
            let sctl = regs.read32(reg(PX_SCTL)) & !0xFFF;
            regs.write32(reg(PX_SCTL), sctl | SCTL_NO_LPM | 1);
            self.clock.delay_us(1_000); // hold DET=1 for at least 1 ms
            regs.write32(reg(PX_SCTL), sctl | SCTL_NO_LPM);
            poll_until(self.clock, LINK_TIMEOUT_US, || {
                det_ipm(regs.read32(reg(PX_SSTS))).0 == DET_PRESENT
            })
            .map_err(|t| timeout("Phy link after COMRESET", t))?;
            regs.write32(reg(PX_SERR), u32::MAX);
            // The first D2H FIS after reset updates PxSIG and clears BSY.
            poll_until(self.clock, READY_TIMEOUT_US, || {
                let tfd = regs.read32(reg(PX_TFD)) as u8;
                tfd & (AtaStatus::BSY | AtaStatus::DRQ).bits() == 0
                    && regs.read32(reg(PX_SIG)) != u32::MAX
            })
            .map_err(|t| timeout("disk ready after COMRESET", t))?;
        }
        let sig = regs.read32(reg(PX_SIG));
        if sig != SIG_ATA {
            return Err(AhciError::NotDisk { port, sig });
        }
        regs.write32(reg(PX_IS), u32::MAX);
        let cmd = regs.read32(reg(PX_CMD));
        regs.write32(reg(PX_CMD), cmd | PortCmd::ST.bits());

        self.ncq = false;
        self.slots = Slots::new(1);
        self.ident.bytes_mut()[..512].fill(0);
        let buf = self.ident.phys(0);
        self.sync(H2d::identify(), Some((buf, 512)), IDENTIFY_TIMEOUT_US)?;
        let id = DiskId::parse(&self.ident.bytes_mut()[..512])?;

        let depth = (((cap.bits() >> 8) & 0x1F) + 1).min(u32::from(id.ncq_depth));
        self.ncq = cap.contains(HbaCap::SNCQ) && depth > 1;
        self.depth = if self.ncq { depth as u16 } else { 1 };
        self.slots = Slots::new(u32::from(self.depth));
        self.sector_shift = id.sector_size.trailing_zeros();
        self.sectors = id.sectors;
        self.max_transfer = (MAX_SECTORS << self.sector_shift).min(PRDS_PER_CMD as u64 * PRD_MAX);
        self.flush_ext = id.flush_ext;
        self.name = format!("ahci port {port} {}", id.model);
        self.model = id.model;
        self.serial = id.serial;
        Ok(())
    }

    /// Fills slot `slot`'s header and table and issues it.
    fn issue(
        &mut self,
        fis: H2d,
        write: bool,
        data: Option<(u64, u64)>,
        slot: u16,
    ) -> Result<(), &'static str> {
        let s = usize::from(slot);
        let at = s * TABLE_SIZE;
        let table = &mut self.tables.bytes_mut()[at..at + TABLE_SIZE];
        table[..0x80].fill(0);
        table[..20].copy_from_slice(&fis.encode());
        let prdtl = match data {
            Some((phys, len)) => {
                build_prdt(phys, len, &mut table[0x80..]).map_err(|_| "no PRDT for this buffer")?
            }
            None => 0,
        };
        let fis_dwords = (core::mem::size_of::<H2d>() / 4) as u8;
        let header = CmdHeader::new(fis_dwords, write, prdtl, self.tables.phys(at));
        self.list.bytes_mut()[s * 32..s * 32 + 32].copy_from_slice(&header.encode());
        self.commands[s] = fis.command;
        fence(); // header and table visible before the HBA is told
        let bit = 1u32 << slot;
        if self.ncq {
            self.regs.write32(port_reg(self.port, PX_SACT), bit); // SACT before CI (§5.3.2)
        }
        self.regs.write32(port_reg(self.port, PX_CI), bit);
        Ok(())
    }

    /// Waits until at least one issued command finishes (its PxCI and PxSACT bits clear) and
    /// frees its slot. An error bit or a timeout marks the port dead: recovering it (stop, CLO,
    /// READ LOG EXT for NCQ) is more than a dump needs. `idle` runs between polls that find
    /// nothing done.
    fn reap(&mut self, timeout_us: u64, idle: &mut Idle<'_>) -> Result<(), AhciError> {
        let busy = self.slots.busy() as u32;
        let port = self.port;
        let reg = |r| port_reg(port, r);
        let regs = &self.regs;
        let mut done = 0;
        let mut failed = None;
        let r = poll_until(self.clock, timeout_us, || {
            let is = regs.read32(reg(PX_IS));
            let tfd = regs.read32(reg(PX_TFD));
            let status = AtaStatus::from_bits_retain(tfd as u8);
            if is == u32::MAX {
                failed = Some(AhciError::Gone);
            } else if is & IS_ERRORS.bits() != 0
                || (status.contains(AtaStatus::ERR) && !status.contains(AtaStatus::BSY))
            {
                let first = busy.trailing_zeros().min(31) as usize;
                failed = Some(AhciError::DeviceError {
                    port,
                    command: self.commands[first],
                    tfd,
                    is,
                });
            } else {
                let active = regs.read32(reg(PX_CI)) | regs.read32(reg(PX_SACT));
                done = busy & !active;
            }
            let over = failed.is_some() || done != 0;
            if !over {
                idle.step();
            }
            over
        });
        let err = match (failed, r) {
            (Some(e), _) => e,
            (None, Ok(_)) => {
                for slot in 0..32u16 {
                    if done & (1 << slot) != 0 {
                        self.slots.release(slot);
                    }
                }
                return Ok(());
            }
            (None, Err(t)) => AhciError::Timeout {
                what: "command completion (PxCI/PxSACT)",
                port: Some(port),
                waited_us: t.waited_us,
            },
        };
        self.dead = Some(err);
        Err(err)
    }

    /// Runs a batch; when the device reports an error or stops answering, recovers the port
    /// once (stop the engines, COMRESET, IDENTIFY again: Linux's hard reset in `ahci_hardreset`
    /// does the same link reset) and retries the whole batch, since writing the same data to
    /// the same blocks again is harmless. A recovery that fails, a second failure, or more than
    /// [`MAX_RECOVERIES`] in all give up on the port with a line.
    fn transfer(
        &mut self,
        write: bool,
        reqs: impl Iterator<Item = (u64, u64, u64)> + Clone,
        idle: &mut Idle<'_>,
    ) -> Result<(), AhciError> {
        if let Some(e) = self.dead {
            return Err(e);
        }
        let e = match self.transfer_once(write, reqs.clone(), idle) {
            Err(e @ (AhciError::DeviceError { .. } | AhciError::Timeout { .. })) => e,
            other => return other,
        };
        let port = self.port;
        if self.recoveries >= MAX_RECOVERIES {
            warn!(
                "ahci port {port}: {e}; {MAX_RECOVERIES} recoveries already, giving up on the port"
            );
            return Err(e);
        }
        self.recoveries += 1;
        warn!("ahci port {port}: {e}; recovering the port with COMRESET");
        if let Err(r) = self.bring_up(port, self.cap, AhciReset::Ports) {
            warn!("ahci port {port}: recovery failed: {r}; giving up on the port");
            self.dead = Some(r);
            return Err(r);
        }
        match self.transfer_once(write, reqs, idle) {
            Ok(()) => {
                info!("ahci port {port}: recovered after COMRESET, batch rewritten");
                Ok(())
            }
            Err(e2) => {
                warn!("ahci port {port}: {e2} again after COMRESET; giving up on the port");
                self.dead = Some(e2);
                Err(e2)
            }
        }
    }

    /// Port recoveries done so far.
    pub fn recoveries(&self) -> u32 {
        self.recoveries
    }

    /// One attempt at a batch: with NCQ up to the queue depth in flight, else one command at a
    /// time (ATA forbids overlapping non-queued commands). `idle` runs while it waits.
    fn transfer_once(
        &mut self,
        write: bool,
        reqs: impl Iterator<Item = (u64, u64, u64)> + Clone,
        idle: &mut Idle<'_>,
    ) -> Result<(), AhciError> {
        for (lba, phys, len) in reqs.clone() {
            check_request(lba, phys, len, self.sector_shift, self.sectors, 2)
                .map_err(|why| AhciError::BadRequest { lba, why })?;
            if !self.s64a && phys + len > 1 << 32 {
                return Err(AhciError::BadRequest {
                    lba,
                    why: "buffer above 4 GiB on an HBA without 64-bit DMA",
                });
            }
        }
        self.regs.write32(port_reg(self.port, PX_IS), u32::MAX);
        for (lba, phys, len) in reqs {
            for (lba, phys, len) in split(lba, phys, len, self.sector_shift, self.max_transfer) {
                let slot = loop {
                    if let Some(s) = self.slots.alloc() {
                        break s;
                    }
                    self.reap(IO_TIMEOUT_US, idle)?;
                };
                let sectors = (len >> self.sector_shift) as u32;
                let fis = if self.ncq {
                    H2d::fpdma(write, lba, sectors, slot as u8) // tag = slot (§8.3.1)
                } else {
                    H2d::dma_ext(write, lba, sectors)
                };
                if let Err(why) = self.issue(fis, write, Some((phys, len)), slot) {
                    self.slots.release(slot);
                    self.drain(idle)?;
                    return Err(AhciError::BadRequest { lba, why });
                }
            }
        }
        self.drain(idle)
    }

    /// Runs one non-queued command in slot 0 (every batch has drained before, so nothing else
    /// is outstanding), then restores the queued mode.
    fn sync(
        &mut self,
        fis: H2d,
        data: Option<(u64, u64)>,
        timeout_us: u64,
    ) -> Result<(), AhciError> {
        let ncq = core::mem::replace(&mut self.ncq, false);
        let slots = core::mem::replace(&mut self.slots, Slots::new(1));
        let slot = self.slots.alloc().unwrap_or(0);
        let r = self
            .issue(fis, false, data, slot)
            .map_err(|why| AhciError::BadRequest { lba: 0, why })
            .and_then(|()| self.reap(timeout_us, &mut Idle::new(&mut || false)));
        self.ncq = ncq;
        self.slots = slots;
        r
    }

    /// Waits for every command in flight.
    fn drain(&mut self, idle: &mut Idle<'_>) -> Result<(), AhciError> {
        while !self.slots.is_idle() {
            self.reap(IO_TIMEOUT_US, idle)?;
        }
        Ok(())
    }

    /// The port in use.
    pub fn port(&self) -> u8 {
        self.port
    }

    /// Model number from IDENTIFY.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Serial number from IDENTIFY.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Whether writes use NCQ.
    pub fn ncq(&self) -> bool {
        self.ncq
    }

    /// What the reset in the constructor found (`None` when it was skipped).
    pub fn reset_report(&self) -> Option<&ResetReport> {
        self.report.as_ref()
    }
}

impl<R: Regs> BlockDevice for Ahci<'_, R> {
    fn info(&self) -> BlockInfo {
        BlockInfo {
            block_size: 1 << self.sector_shift,
            blocks: self.sectors,
            max_transfer: self.max_transfer,
            queue_depth: self.depth,
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
        Ok(self.transfer(true, reqs, &mut Idle::new(idle))?)
    }

    fn read(&mut self, lba: u64, phys: u64, len: u64) -> Result<(), BlockError> {
        let once = core::iter::once((lba, phys, len));
        Ok(self.transfer(false, once, &mut Idle::new(&mut || false))?)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if let Some(e) = self.dead {
            return Err(e.into());
        }
        Ok(self.sync(H2d::flush(self.flush_ext), None, IO_TIMEOUT_US)?)
    }
}
