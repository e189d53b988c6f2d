//! A simulated AHCI HBA for host tests, modelled on QEMU's `ich9-ahci` (synchronous HR and
//! engine stops, PxSIG set by the first D2H FIS once FRE is on, command list latched when ST
//! goes 0→1).

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::*;
use crate::block::testkit::{Arena, Phys};

pub(crate) const SIG_ATAPI: u32 = 0xEB14_0101;

#[derive(Clone, Debug, Default)]
pub(crate) struct Port {
    pub(crate) clb: u64,
    pub(crate) fb: u64,
    pub(crate) is: u32,
    /// PxIE, with QEMU's writable mask.
    pub(crate) ie: u32,
    pub(crate) cmd: u32,
    pub(crate) tfd: u32,
    pub(crate) sig: u32,
    pub(crate) sctl: u32,
    pub(crate) serr: u32,
    pub(crate) sact: u32,
    pub(crate) ci: u32,
    /// Signature of the attached device, 0 when the port is empty.
    pub(crate) device: u32,
    /// Command list latched when ST went 0→1 (QEMU `ahci_map_clb_address`).
    pub(crate) mapped: Option<u64>,
    pub(crate) d2h_sent: bool,
    /// CR/FR never clear.
    pub(crate) stuck: bool,
    /// NCQ tags transferred whose Set Device Bits FIS is still to come.
    pub(crate) ncq_done: Vec<u32>,
}

pub(crate) const ST: u32 = 1;
pub(crate) const FRE: u32 = 1 << 4;
pub(crate) const FR: u32 = 1 << 14;
pub(crate) const CR: u32 = 1 << 15;

pub(crate) struct Hba {
    pub(crate) mem: Phys,
    pub(crate) cap: u32,
    pub(crate) ghc: u32,
    pub(crate) pi: u32,
    /// GHC reads that still show HR after a reset (`u32::MAX`: forever).
    pub(crate) hr_reads: u32,
    /// GHC.HR is ignored: it reads clear at once and nothing is reset (a broken HBA, or one
    /// behind a translation that drops the write's effect).
    pub(crate) hr_ignored: bool,
    /// The reset clears CAP.SNCQ/S64A and PI until written back (some Intel HBAs).
    pub(crate) hr_loses_cap: Option<(u32, u32)>,
    pub(crate) ports: Vec<Port>,
    pub(crate) disk: Vec<u8>,
    pub(crate) ncq: bool,
    pub(crate) log: Vec<(u8, u64, u32)>,
    pub(crate) max_active: u32,
    pub(crate) violations: Vec<&'static str>,
    pub(crate) flushes: u32,
    pub(crate) fail_lba: Option<u64>,
    /// How many commands touching `fail_lba` fail before it works again (`None`: all).
    pub(crate) fail_times: Option<u32>,
    /// COMRESETs seen (PxSCTL.DET written 1).
    pub(crate) comresets: u32,
}

pub(crate) struct FakeAhci(pub(crate) RefCell<Hba>);

impl Port {
    /// COMRESET / HBA reset of the port (QEMU `ahci_reset_port`).
    pub(crate) fn reset(&mut self) {
        (self.serr, self.sact, self.ci, self.tfd, self.sig) = (0, 0, 0, 0x7F, u32::MAX);
        self.d2h_sent = false;
        self.ncq_done.clear();
        self.d2h();
    }

    /// The first D2H FIS: needs FRE, sets PxSIG (QEMU `ahci_init_d2h`).
    pub(crate) fn d2h(&mut self) {
        if self.device != 0 && !self.d2h_sent && self.cmd & FRE != 0 {
            self.d2h_sent = true;
            self.sig = self.device;
            self.tfd = 0x0130;
        }
    }
}

impl FakeAhci {
    pub(crate) fn new(arena: &Arena, devices: &[u32]) -> Self {
        let ports: Vec<Port> = devices
            .iter()
            .map(|&device| Port {
                device,
                tfd: 0x7F,
                sig: u32::MAX,
                ..Port::default()
            })
            .collect();
        FakeAhci(RefCell::new(Hba {
            mem: Phys {
                mem: arena.window(),
            },
            // S64A, SNCQ, 32 slots, ports-1: QEMU's CAP.
            cap: (1 << 31) | (1 << 30) | (31 << 8) | (ports.len() as u32 - 1),
            ghc: 1 << 31,
            pi: (1 << ports.len()) - 1,
            hr_reads: 2,
            hr_ignored: false,
            hr_loses_cap: None,
            ports,
            disk: vec![0; 16 << 20],
            ncq: true,
            log: Vec::new(),
            max_active: 0,
            violations: Vec::new(),
            flushes: 0,
            fail_lba: None,
            fail_times: None,
            comresets: 0,
        }))
    }

    pub(crate) fn with(self, f: impl FnOnce(&mut Hba)) -> Self {
        f(&mut self.0.borrow_mut());
        self
    }
}

impl Hba {
    pub(crate) fn hba_reset(&mut self) {
        self.ghc = 1 << 31;
        if let Some((cap, _)) = self.hr_loses_cap {
            self.cap = cap & !((1 << 31) | (1 << 30));
            self.pi = 0;
        }
        for p in &mut self.ports {
            (p.is, p.ie, p.sctl, p.cmd, p.mapped) = (0, 0, 0, 0b110, None); // SUD|POD
            p.reset();
        }
    }

    pub(crate) fn fis_command(&mut self, p: usize, slot: u32) -> Option<u8> {
        let hdr = self.ports[p].mapped? + 32 * u64::from(slot);
        let ctba = self.mem.read64(hdr + 8);
        Some(self.mem.read(ctba + 2, 1)?[0])
    }

    pub(crate) fn issue(&mut self, p: usize, bits: u32) {
        if self.ports[p].cmd & ST == 0 {
            return;
        }
        for slot in (0..32).filter(|s| bits & (1 << s) != 0) {
            let queued = matches!(self.fis_command(p, slot), Some(0x60 | 0x61));
            let port = &self.ports[p];
            let others = (port.ci | port.sact) & !(1 << slot);
            if others != 0 && (!queued || port.ci & !port.sact & others != 0) {
                self.violations
                    .push("non-queued command overlapped another");
            }
        }
        let port = &mut self.ports[p];
        port.ci |= bits;
        let active = (port.ci | port.sact).count_ones();
        self.max_active = self.max_active.max(active);
    }

    /// One unit of device progress, run on PxCI/PxSACT reads: finish one NCQ tag, or start the
    /// lowest issued command.
    pub(crate) fn step(&mut self, p: usize) {
        let port = &mut self.ports[p];
        if !port.ncq_done.is_empty() {
            let tag = port.ncq_done.remove(0);
            port.sact &= !(1 << tag);
            return;
        }
        if port.cmd & ST == 0 || port.tfd & 0x01 != 0 {
            return;
        }
        if port.ci != 0 {
            let slot = port.ci.trailing_zeros();
            self.exec(p, slot);
        }
    }

    pub(crate) fn exec(&mut self, p: usize, slot: u32) {
        let Some(list) = self.ports[p].mapped else {
            return;
        };
        let hdr = list + 32 * u64::from(slot);
        let dw0 = self.mem.read32(hdr);
        let ctba = self.mem.read64(hdr + 8);
        let fis = self.mem.read(ctba, 20).unwrap_or_default();
        let mut segs = Vec::new();
        for i in 0..u64::from(dw0 >> 16) {
            let e = ctba + 0x80 + 16 * i;
            let dbc = self.mem.read32(e + 12) & 0x3F_FFFF;
            if dbc & 1 == 0 {
                self.violations.push("odd PRD byte count");
            }
            segs.push((self.mem.read64(e), dbc as usize + 1));
        }
        let lba = [4, 5, 6, 8, 9, 10]
            .iter()
            .enumerate()
            .fold(0u64, |l, (i, &b)| l | (u64::from(fis[b]) << (8 * i)));
        let count = u32::from(u16::from_le_bytes([fis[12], fis[13]]));
        let features = u32::from(u16::from_le_bytes([fis[3], fis[11]]));
        let or_max = |n: u32| if n == 0 { 65536 } else { n };
        let (write, queued, sectors) = match fis[2] {
            ATA_WRITE_DMA_EXT => (true, false, or_max(count)),
            ATA_READ_DMA_EXT => (false, false, or_max(count)),
            ATA_WRITE_FPDMA => (true, true, or_max(features)),
            ATA_READ_FPDMA => (false, true, or_max(features)),
            ATA_IDENTIFY => {
                let data = identify_data((self.disk.len() / 512) as u64, self.ncq, 512);
                self.scatter(&segs, &data);
                (false, false, 0)
            }
            ATA_FLUSH_EXT | ATA_FLUSH => {
                self.flushes += 1;
                (false, false, 0)
            }
            _ => return self.fail(p, slot, false),
        };
        if (dw0 & (1 << 6) != 0) != write {
            self.violations
                .push("header W bit does not match the command");
        }
        if queued && u32::from(fis[12] >> 3) != slot {
            self.violations.push("NCQ tag differs from slot");
        }
        if sectors > 0 {
            self.log.push((fis[2], lba, sectors));
            let start = lba as usize * 512;
            let len = sectors as usize * 512;
            let mut hit = self
                .fail_lba
                .is_some_and(|f| (lba..lba + u64::from(sectors)).contains(&f));
            if hit && let Some(n) = self.fail_times.as_mut() {
                hit = *n > 0;
                *n = n.saturating_sub(1);
            }
            if start + len > self.disk.len() || hit {
                return self.fail(p, slot, queued);
            }
            if segs.iter().map(|s| s.1).sum::<usize>() < len {
                self.violations.push("PRDT shorter than the transfer");
                return self.fail(p, slot, queued);
            }
            if write {
                let mut data = Vec::new();
                for &(a, n) in &segs {
                    data.extend(self.mem.read(a, n).unwrap_or_default());
                }
                self.disk[start..start + len].copy_from_slice(&data[..len]);
            } else {
                let data = self.disk[start..start + len].to_vec();
                self.scatter(&segs, &data);
            }
        }
        self.mem.write32(hdr + 4, sectors * 512); // PRDBC
        let port = &mut self.ports[p];
        port.ci &= !(1 << slot);
        port.tfd = 0x50;
        if queued {
            port.ncq_done.push(slot);
        }
    }

    pub(crate) fn scatter(&mut self, segs: &[(u64, usize)], data: &[u8]) {
        let mut at = 0;
        for &(a, n) in segs {
            let n = n.min(data.len() - at);
            self.mem.write(a, &data[at..at + n]);
            at += n;
        }
    }

    /// ABORT: QEMU reports NCQ errors through the SDB FIS (TFD.ERR, SACT stays set) and
    /// non-queued ones through a D2H FIS with TFES.
    pub(crate) fn fail(&mut self, p: usize, slot: u32, queued: bool) {
        let port = &mut self.ports[p];
        port.tfd = 0x0441;
        if queued {
            port.ci &= !(1 << slot);
        } else {
            port.is |= 1 << 30;
        }
    }
}

impl Regs for FakeAhci {
    fn read32(&self, off: usize) -> u32 {
        let mut h = self.0.borrow_mut();
        match off {
            0x00 => h.cap,
            0x04 => {
                if h.hr_reads > 0 && h.ghc & 1 != 0 {
                    if h.hr_reads != u32::MAX {
                        h.hr_reads -= 1;
                    }
                    return h.ghc;
                }
                h.ghc &= !1;
                h.ghc
            }
            0x0C => h.pi,
            0x10 => 0x0001_0000,
            _ if off >= 0x100 && (off - 0x100) / 0x80 < h.ports.len() => {
                let p = (off - 0x100) / 0x80;
                if matches!(off & 0x7F, 0x34 | 0x38) {
                    h.step(p);
                }
                let port = &h.ports[p];
                match off & 0x7F {
                    0x00 => port.clb as u32,
                    0x04 => (port.clb >> 32) as u32,
                    0x08 => port.fb as u32,
                    0x0C => (port.fb >> 32) as u32,
                    0x10 => port.is,
                    0x14 => port.ie,
                    0x18 => port.cmd,
                    0x20 => port.tfd,
                    0x24 => port.sig,
                    0x28 if port.device != 0 => 0x113, // DET=3, Gen1, IPM active
                    0x2C => port.sctl,
                    0x30 => port.serr,
                    0x34 => port.sact,
                    0x38 => port.ci,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    fn write32(&self, off: usize, v: u32) {
        let mut h = self.0.borrow_mut();
        match off {
            0x00 => {
                if let Some((cap, _)) = h.hr_loses_cap {
                    h.cap = cap & v; // RWO bits take the value written back
                }
            }
            0x0C => {
                if let Some((_, pi)) = h.hr_loses_cap {
                    h.pi = pi & v;
                }
            }
            0x04 => {
                if v & 1 != 0 && h.hr_ignored {
                    h.ghc = (v & 2) | (1 << 31);
                } else if v & 1 != 0 {
                    h.ghc |= 1;
                    h.hba_reset();
                    h.ghc |= 1; // HR reads back set for `hr_reads` reads
                } else {
                    h.ghc = (v & 3) | (1 << 31);
                }
            }
            _ if off >= 0x100 && (off - 0x100) / 0x80 < h.ports.len() => {
                let p = (off - 0x100) / 0x80;
                let lo = |r: u64| (r & !0xFFFF_FFFF) | u64::from(v);
                let hi = |r: u64| (r & 0xFFFF_FFFF) | (u64::from(v) << 32);
                match off & 0x7F {
                    0x00 => h.ports[p].clb = lo(h.ports[p].clb),
                    0x04 => h.ports[p].clb = hi(h.ports[p].clb),
                    0x08 => h.ports[p].fb = lo(h.ports[p].fb),
                    0x0C => h.ports[p].fb = hi(h.ports[p].fb),
                    0x10 => h.ports[p].is &= !v,
                    0x14 => h.ports[p].ie = v & 0xFDC0_00FF, // QEMU `ahci_port_write`
                    0x18 => {
                        let port = &mut h.ports[p];
                        let old = port.cmd;
                        port.cmd = (old & (FR | CR)) | (v & !(FR | CR | 0xF000_0000));
                        if v & ST != 0 && old & ST == 0 {
                            port.mapped = Some(port.clb);
                            port.cmd |= CR;
                        }
                        if v & ST == 0 && !port.stuck {
                            (port.mapped, port.ci, port.sact) = (None, 0, 0);
                            port.cmd &= !CR;
                        }
                        if v & FRE != 0 {
                            port.cmd |= FR;
                            port.d2h();
                        } else if !port.stuck {
                            port.cmd &= !FR;
                        }
                    }
                    0x2C => {
                        if v & 0xF == 1 {
                            h.comresets += 1;
                        }
                        let port = &mut h.ports[p];
                        if port.sctl & 0xF == 1 && v & 0xF == 0 {
                            port.reset();
                        }
                        port.sctl = v;
                    }
                    0x30 => h.ports[p].serr &= !v,
                    0x34 => h.ports[p].sact |= v,
                    0x38 => h.issue(p, v),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// IDENTIFY DEVICE data as a QEMU disk returns it (with checksum).
pub(crate) fn identify_data(sectors: u64, ncq: bool, sector_size: u32) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    let mut w = |i: usize, v: u16| b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    w(0, 0x0040);
    w(75, 31);
    w(76, if ncq { 1 << 8 } else { 0 });
    w(83, (1 << 14) | (1 << 13) | (1 << 10));
    w(86, (1 << 13) | (1 << 10));
    for i in 0..4 {
        w(100 + i, (sectors >> (16 * i)) as u16);
    }
    if sector_size != 512 {
        w(106, 0x4000 | (1 << 12));
        w(117, (sector_size / 2) as u16);
        w(118, ((sector_size / 2) >> 16) as u16);
    }
    put_str(&mut b, 10, "QM00001", 10);
    put_str(&mut b, 23, "2.5+", 4);
    put_str(&mut b, 27, "QEMU HARDDISK", 20);
    b[510] = 0xA5;
    let sum = b[..511].iter().fold(0u8, |s, &x| s.wrapping_add(x));
    b[511] = sum.wrapping_neg();
    b
}

pub(crate) fn put_str(b: &mut [u8], word: usize, s: &str, words: usize) {
    let mut bytes = vec![b' '; 2 * words];
    bytes[..s.len()].copy_from_slice(s.as_bytes());
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        b[2 * (word + i)] = pair[1];
        b[2 * (word + i) + 1] = pair[0];
    }
}
