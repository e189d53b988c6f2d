//! A simulated NVMe controller for host tests, behaving like QEMU's `nvme` where it matters
//! (CC.EN edges, latched admin queue registers, stale queue replay, lazy completion).

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::*;
use crate::block::testkit::{Arena, Phys};

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Q {
    pub(crate) base: u64,
    pub(crate) size: u16,
    pub(crate) head: u16,
    pub(crate) tail: u16,
    pub(crate) phase: bool,
    pub(crate) cqid: usize,
}

pub(crate) struct Ctl {
    pub(crate) mem: Phys,
    pub(crate) cap: u64,
    pub(crate) cc: u32,
    pub(crate) csts: u32,
    pub(crate) intms: u32,
    pub(crate) aqa: u32,
    pub(crate) asq: u64,
    pub(crate) acq: u64,
    /// CSTS reads before RDY follows a CC.EN edge; `stuck` keeps RDY from ever clearing.
    pub(crate) rdy_delay: u32,
    pub(crate) rdy_pending: Option<(bool, u32)>,
    pub(crate) stuck: bool,
    pub(crate) sq: [Option<Q>; 2],
    pub(crate) cq: [Option<Q>; 2],
    pub(crate) disk: Vec<u8>,
    pub(crate) shift: u32,
    pub(crate) mdts: u8,
    pub(crate) vwc: bool,
    pub(crate) gone: bool,
    pub(crate) flushes: u32,
    pub(crate) admin_log: Vec<(u8, u64)>,
    pub(crate) io_log: Vec<(u8, u64, u32)>,
    pub(crate) max_queued: u16,
    pub(crate) fail_lba: Option<u64>,
    pub(crate) cfs_after_io: Option<usize>,
}

pub(crate) struct FakeNvme(pub(crate) RefCell<Ctl>);

impl FakeNvme {
    pub(crate) fn new(arena: &Arena) -> Self {
        FakeNvme(RefCell::new(Ctl {
            mem: Phys {
                mem: arena.window(),
            },
            // MQES 2047, CQR, TO 15 (7.5 s), NVM command set, MPSMIN 0: QEMU's values.
            cap: 0x7FF | (1 << 16) | (0x0F << 24) | (1 << 37),
            cc: 0,
            csts: 0,
            intms: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            rdy_delay: 3,
            rdy_pending: None,
            stuck: false,
            sq: [None; 2],
            cq: [None; 2],
            disk: vec![0; 4 << 20],
            shift: 9,
            mdts: 7,
            vwc: true,
            gone: false,
            flushes: 0,
            admin_log: Vec::new(),
            io_log: Vec::new(),
            max_queued: 0,
            fail_lba: None,
            cfs_after_io: None,
        }))
    }

    pub(crate) fn with(self, f: impl FnOnce(&mut Ctl)) -> Self {
        f(&mut self.0.borrow_mut());
        self
    }
}

impl Ctl {
    pub(crate) fn stride(&self) -> usize {
        Cap(self.cap).doorbell_stride()
    }

    /// CC.EN 0→1 (QEMU `nvme_start_ctrl`): the latched admin registers take effect.
    pub(crate) fn start(&mut self) {
        self.sq[0] = Some(Q {
            base: self.asq,
            size: (self.aqa & 0xFFF) as u16 + 1,
            ..Q::default()
        });
        self.cq[0] = Some(Q {
            base: self.acq,
            size: ((self.aqa >> 16) & 0xFFF) as u16 + 1,
            phase: true,
            ..Q::default()
        });
        self.rdy_pending = Some((true, self.rdy_delay));
    }

    /// CC.EN 1→0 (QEMU `nvme_ctrl_reset`): queues gone, CC/INTMS cleared, AQA/ASQ/ACQ kept.
    pub(crate) fn reset(&mut self) {
        self.sq = [None; 2];
        self.cq = [None; 2];
        self.cc = 0;
        self.intms = 0;
        if !self.stuck {
            self.rdy_pending = Some((false, self.rdy_delay));
        }
    }

    pub(crate) fn tick(&mut self) {
        match self.rdy_pending {
            Some((on, 0)) => {
                self.csts = if on { self.csts | 1 } else { self.csts & !1 };
                self.rdy_pending = None;
            }
            Some((on, n)) => self.rdy_pending = Some((on, n - 1)),
            None => {}
        }
        self.process(1, 1); // I/O completes lazily, so commands pile up in flight
    }

    pub(crate) fn process(&mut self, qid: usize, max: usize) {
        for _ in 0..max {
            if self.csts & Csts::CFS.bits() != 0 {
                return;
            }
            let Some(mut sq) = self.sq[qid] else { return };
            if sq.head == sq.tail {
                return;
            }
            let at = sq.base + u64::from(sq.head) * 64;
            let e: Vec<u32> = (0..16).map(|i| self.mem.read32(at + 4 * i)).collect();
            sq.head = (sq.head + 1) % sq.size;
            self.sq[qid] = Some(sq);
            let status = if qid == 0 {
                self.admin(&e)
            } else {
                self.io(&e)
            };
            if let Some(status) = status {
                self.post(sq.cqid, qid as u16, sq.head, (e[0] >> 16) as u16, status);
            }
        }
    }

    pub(crate) fn post(&mut self, cqid: usize, sqid: u16, sqhd: u16, cid: u16, status: u16) {
        let Some(mut cq) = self.cq[cqid] else { return };
        let at = cq.base + u64::from(cq.tail) * 16;
        self.mem.write32(at, 0);
        self.mem
            .write32(at + 8, u32::from(sqhd) | (u32::from(sqid) << 16));
        let dw3 = u32::from(cid) | (u32::from(cq.phase) << 16) | (u32::from(status) << 17);
        self.mem.write32(at + 12, dw3);
        cq.tail += 1;
        if cq.tail == cq.size {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        self.cq[cqid] = Some(cq);
    }

    pub(crate) fn admin(&mut self, e: &[u32]) -> Option<u16> {
        let op = e[0] as u8;
        let prp1 = u64::from(e[6]) | (u64::from(e[7]) << 32);
        self.admin_log.push((op, prp1));
        let size = (e[10] >> 16) as u16 + 1;
        Some(match op {
            ADMIN_IDENTIFY => {
                let page = match (e[10] & 0xFF, e[1]) {
                    (1, _) => id_ctrl(self.mdts, self.vwc),
                    (2, _) => {
                        let mut l = vec![0u8; 4096];
                        l[0] = 1;
                        l
                    }
                    (0, 1) => id_ns(
                        (self.disk.len() >> self.shift) as u64,
                        &[(0, self.shift as u8)],
                        0,
                    ),
                    _ => return Some(0x0B), // invalid namespace
                };
                if !self.mem.write(prp1, &page) {
                    return Some(0x06);
                }
                0
            }
            ADMIN_CREATE_CQ if e[10] & 0xFFFF == 1 && e[11] & 1 == 1 => {
                self.cq[1] = Some(Q {
                    base: prp1,
                    size,
                    phase: true,
                    ..Q::default()
                });
                0
            }
            ADMIN_CREATE_SQ if e[10] & 0xFFFF == 1 && self.cq[1].is_some() => {
                self.sq[1] = Some(Q {
                    base: prp1,
                    size,
                    cqid: (e[11] >> 16) as usize,
                    ..Q::default()
                });
                0
            }
            _ => 0x01, // invalid opcode or field
        })
    }

    /// Walks PRP1/PRP2/list independently of the driver's builder.
    pub(crate) fn segments(&mut self, prp1: u64, prp2: u64, len: u64) -> Option<Vec<(u64, usize)>> {
        let first = len.min(4096 - prp1 % 4096);
        let mut v = vec![(prp1, first as usize)];
        let mut rest = len - first;
        if rest == 0 {
            return Some(v);
        }
        if rest <= 4096 {
            prp2.is_multiple_of(4096)
                .then(|| v.push((prp2, rest as usize)))?;
            return Some(v);
        }
        for i in 0..512u64 {
            let ent = self.mem.read64(prp2 + 8 * i);
            if !ent.is_multiple_of(4096) {
                return None; // PRP offset invalid
            }
            let n = rest.min(4096);
            v.push((ent, n as usize));
            rest -= n;
            if rest == 0 {
                return Some(v);
            }
        }
        None // would need a chained list: the driver never builds one
    }

    pub(crate) fn io(&mut self, e: &[u32]) -> Option<u16> {
        let op = e[0] as u8;
        if op == NVM_FLUSH {
            self.flushes += 1;
            return Some(0);
        }
        let slba = u64::from(e[10]) | (u64::from(e[11]) << 32);
        let nlb = (e[12] & 0xFFFF) + 1;
        self.io_log.push((op, slba, nlb));
        if self.cfs_after_io.is_some_and(|n| self.io_log.len() > n) {
            self.csts |= Csts::CFS.bits();
            return None;
        }
        let len = u64::from(nlb) << self.shift;
        if self.mdts != 0 && len > 4096 << self.mdts {
            return Some(0x02);
        }
        let start = (slba << self.shift) as usize;
        if start + len as usize > self.disk.len() {
            return Some(0x80); // LBA out of range
        }
        if self
            .fail_lba
            .is_some_and(|l| (slba..slba + u64::from(nlb)).contains(&l))
        {
            return Some(0x280); // media: write fault
        }
        let prp1 = u64::from(e[6]) | (u64::from(e[7]) << 32);
        let prp2 = u64::from(e[8]) | (u64::from(e[9]) << 32);
        let Some(segs) = self.segments(prp1, prp2, len) else {
            return Some(0x13);
        };
        let mut pos = start;
        for (addr, n) in segs {
            if op == NVM_WRITE {
                let data = self.mem.read(addr, n)?;
                self.disk[pos..pos + n].copy_from_slice(&data);
            } else {
                let data = self.disk[pos..pos + n].to_vec();
                self.mem.write(addr, &data);
            }
            pos += n;
        }
        Some(0)
    }
}

impl Regs for FakeNvme {
    fn read32(&self, off: usize) -> u32 {
        let mut c = self.0.borrow_mut();
        if c.gone {
            return u32::MAX;
        }
        match off {
            0x00 => c.cap as u32,
            0x04 => (c.cap >> 32) as u32,
            0x08 => 0x0001_0400,
            0x0C | 0x10 => c.intms,
            0x14 => c.cc,
            0x1C => {
                c.tick();
                c.csts
            }
            0x24 => c.aqa,
            0x28 => c.asq as u32,
            0x2C => (c.asq >> 32) as u32,
            0x30 => c.acq as u32,
            0x34 => (c.acq >> 32) as u32,
            _ => 0,
        }
    }

    fn write32(&self, off: usize, v: u32) {
        let mut c = self.0.borrow_mut();
        let lo = |r: u64| (r & !0xFFFF_FFFF) | u64::from(v);
        let hi = |r: u64| (r & 0xFFFF_FFFF) | (u64::from(v) << 32);
        match off {
            0x0C => c.intms |= v,
            0x10 => c.intms &= !v,
            0x14 => {
                let was = c.cc & 1;
                c.cc = v;
                match (was, v & 1) {
                    (1, 0) => c.reset(),
                    (0, 1) => c.start(),
                    _ => {} // EN=1 again is no edge: nothing restarts (QEMU `nvme_write_bar`)
                }
            }
            0x1C => c.csts &= !(v & Csts::NSSRO.bits()),
            0x24 => c.aqa = v,
            0x28 => c.asq = lo(c.asq),
            0x2C => c.asq = hi(c.asq),
            0x30 => c.acq = lo(c.acq),
            0x34 => c.acq = hi(c.acq),
            _ if off >= 0x1000 => {
                let idx = (off - 0x1000) / c.stride();
                let qid = idx / 2;
                if idx % 2 == 1 || qid > 1 {
                    return; // CQ head doorbells only free space; the model never fills a CQ
                }
                let Some(mut sq) = c.sq[qid] else { return };
                sq.tail = v as u16;
                c.sq[qid] = Some(sq);
                let queued = (sq.tail + sq.size - sq.head) % sq.size;
                if qid == 1 {
                    c.max_queued = c.max_queued.max(queued);
                } else {
                    c.process(0, usize::from(queued)); // admin runs at once
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn id_ctrl(mdts: u8, vwc: bool) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[0..2].copy_from_slice(&0x1B36u16.to_le_bytes());
    b[4..24].copy_from_slice(b"deadbeef            ");
    b[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
    b[64..72].copy_from_slice(b"8.0.3   ");
    b[77] = mdts;
    b[516..520].copy_from_slice(&1u32.to_le_bytes());
    b[525] = u8::from(vwc);
    b
}

pub(crate) fn id_ns(blocks: u64, formats: &[(u16, u8)], flbas: u8) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[0..8].copy_from_slice(&blocks.to_le_bytes());
    b[8..16].copy_from_slice(&blocks.to_le_bytes());
    b[25] = formats.len().saturating_sub(1) as u8;
    b[26] = flbas;
    for (i, &(ms, lbads)) in formats.iter().enumerate() {
        let lbaf = u32::from(ms) | (u32::from(lbads) << 16);
        b[128 + 4 * i..132 + 4 * i].copy_from_slice(&lbaf.to_le_bytes());
    }
    b
}
