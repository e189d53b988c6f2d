//! A simulated virtio-blk device for host tests, following QEMU's behaviour (hw/virtio/virtio.c,
//! virtio-pci.c) including the stale-index failure when the driver skips the reset. Its memory
//! is either a plain buffer at a made-up bus address ([`BASE`]) or, for tests that need real
//! DMA memory (the record writer), the bus window of a [`BusArena`].

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::*;
use crate::block::testkit::Phys;
use crate::hw::dma::Arena as BusArena;
use crate::virtio::ring::*;

pub(crate) const BASE: u64 = 0x4000_0000;
pub(crate) const DATA: u64 = BASE + 0x10_0000;

pub(crate) type Arena = Rc<RefCell<Vec<u8>>>;

pub(crate) fn arena(len: usize) -> Arena {
    Rc::new(RefCell::new(vec![0u8; len]))
}

/// A window of the arena standing in for DMA memory at physical `BASE + off`.
pub(crate) struct ArenaMem {
    pub(crate) a: Arena,
    pub(crate) off: usize,
}

impl ArenaMem {
    pub(crate) fn at(&self, off: usize, n: usize) -> usize {
        let o = self.off + off;
        assert!(o + n <= self.a.borrow().len());
        o
    }
}

impl DmaWindow for ArenaMem {
    fn phys(&self, off: usize) -> u64 {
        BASE + (self.off + off) as u64
    }
    fn read16(&self, off: usize) -> u16 {
        let o = self.at(off, 2);
        u16::from_le_bytes(self.a.borrow()[o..o + 2].try_into().unwrap())
    }
    fn read32(&self, off: usize) -> u32 {
        let o = self.at(off, 4);
        u32::from_le_bytes(self.a.borrow()[o..o + 4].try_into().unwrap())
    }
    fn write16(&self, off: usize, v: u16) {
        let o = self.at(off, 2);
        self.a.borrow_mut()[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn write32(&self, off: usize, v: u32) {
        let o = self.at(off, 4);
        self.a.borrow_mut()[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn write64(&self, off: usize, v: u64) {
        let o = self.at(off, 8);
        self.a.borrow_mut()[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) struct Clk(pub(crate) Cell<u64>);
impl Clock for Clk {
    fn now_us(&self) -> u64 {
        let t = self.0.get();
        self.0.set(t + 100);
        t
    }
}

#[derive(Default)]
pub(crate) struct Dev {
    pub(crate) a: Option<Arena>,
    /// Real DMA memory instead of `a`.
    pub(crate) bus: Option<RefCell<Phys>>,
    pub(crate) status: u8,
    pub(crate) dev_feat: u64,
    pub(crate) drv_feat: u64,
    pub(crate) dfsel: u32,
    pub(crate) drvsel: u32,
    pub(crate) qmax: u16,
    pub(crate) qsize: u16,
    pub(crate) qdesc: u64,
    pub(crate) qdriver: u64,
    pub(crate) qdevice: u64,
    pub(crate) qenable: u16,
    pub(crate) qvec: u16,
    pub(crate) cfgvec: u16,
    pub(crate) capacity: u64,
    pub(crate) seg_max: u32,
    pub(crate) size_max: u32,
    pub(crate) disk: Vec<u8>,
    pub(crate) last_avail: u16,
    pub(crate) used_idx: u16,
    // Knobs.
    pub(crate) stuck_reset: bool,
    pub(crate) reject_features: bool,
    pub(crate) lazy: bool,
    pub(crate) never_complete: bool,
    pub(crate) bogus_used_id: bool,
    pub(crate) req_status: u8,
    /// Polls the avail ring on every status read and says so in the used flags (NO_NOTIFY),
    /// as QEMU does while its handler walks the ring.
    pub(crate) polls: bool,
    // Observations.
    /// Notify writes seen.
    pub(crate) notifies: u32,
    /// Chains executed and not yet completed when each chain arrived.
    pub(crate) busy_on_arrival: Vec<usize>,
    pub(crate) resets: u32,
    pub(crate) max_batch: u16,
    pub(crate) chains: Vec<(u32, u64, Vec<u32>)>,
    pub(crate) guest_error: bool,
    pub(crate) pending: VecDeque<u16>,
}

impl Dev {
    pub(crate) fn new(a: &Arena, sectors: u64) -> Self {
        Dev {
            a: Some(a.clone()),
            dev_feat: (Features::VERSION_1 | Features::FLUSH | Features::BLK_SIZE).bits()
                | (1 << 28), // INDIRECT_DESC, which rkdump must not accept
            qmax: 16,
            qsize: 16,
            capacity: sectors,
            disk: vec![0; (sectors * 512) as usize],
            ..Dev::default()
        }
    }

    /// What the crashed kernel left: DRIVER_OK, queue enabled, indices at `idx`.
    pub(crate) fn stale(mut self, idx: u16) -> Self {
        self.status = 0x0F;
        self.qenable = 1;
        self.last_avail = idx;
        self.used_idx = idx;
        self
    }

    pub(crate) fn mem(&self, phys: u64, n: usize) -> core::ops::Range<usize> {
        let o = (phys - BASE) as usize;
        o..o + n
    }
    /// `n` bytes at bus address `p`.
    pub(crate) fn rd(&self, p: u64, n: usize) -> Vec<u8> {
        match &self.bus {
            Some(bus) => bus.borrow_mut().read(p, n).expect("DMA outside the arena"),
            None => self.a.as_ref().unwrap().borrow()[self.mem(p, n)].to_vec(),
        }
    }
    pub(crate) fn rd16(&self, p: u64) -> u16 {
        u16::from_le_bytes(self.rd(p, 2).try_into().unwrap())
    }
    pub(crate) fn rd32(&self, p: u64) -> u32 {
        u32::from_le_bytes(self.rd(p, 4).try_into().unwrap())
    }
    pub(crate) fn rd64(&self, p: u64) -> u64 {
        u64::from_le_bytes(self.rd(p, 8).try_into().unwrap())
    }
    pub(crate) fn wr(&self, p: u64, b: &[u8]) {
        match &self.bus {
            Some(bus) => assert!(bus.borrow_mut().write(p, b), "DMA outside the arena"),
            None => {
                let r = self.mem(p, b.len());
                self.a.as_ref().unwrap().borrow_mut()[r].copy_from_slice(b);
            }
        }
    }

    pub(crate) fn reset(&mut self) {
        if self.stuck_reset {
            return;
        }
        self.resets += 1;
        self.status = 0;
        self.drv_feat = 0;
        self.qsize = self.qmax;
        (self.qdesc, self.qdriver, self.qdevice, self.qenable) = (0, 0, 0, 0);
        self.last_avail = 0;
        self.used_idx = 0;
        self.pending.clear();
    }

    pub(crate) fn set_status(&mut self, v: u8) {
        if v == 0 {
            return self.reset();
        }
        let mut v = v;
        if v & 8 != 0 && self.status & 8 == 0 {
            let ok = !self.reject_features && self.drv_feat & !self.dev_feat == 0;
            if !ok {
                v &= !8;
            }
        }
        // QEMU keeps NEEDS_RESET until a reset.
        self.status = v | (self.status & 0x40);
    }

    pub(crate) fn notify(&mut self) {
        self.take_avail();
    }

    /// Executes what the driver made available since the last look.
    pub(crate) fn take_avail(&mut self) {
        if self.qenable == 0 || self.status & 4 == 0 || self.status & 0x40 != 0 {
            return;
        }
        let avail_idx = self.rd16(self.qdriver + 2);
        let n = avail_idx.wrapping_sub(self.last_avail);
        if n > self.qsize {
            // virtqueue_num_heads: "Guest moved used index from %u to %u".
            self.guest_error = true;
            self.status |= 0x40;
            return;
        }
        self.max_batch = self.max_batch.max(n);
        for _ in 0..n {
            self.busy_on_arrival.push(self.pending.len());
            let slot = u64::from(self.last_avail % self.qsize);
            let head = self.rd16(self.qdriver + 4 + 2 * slot);
            self.last_avail = self.last_avail.wrapping_add(1);
            self.execute(head);
            if self.never_complete {
                continue;
            }
            if self.lazy {
                self.pending.push_back(head);
            } else {
                self.complete(head);
            }
        }
    }

    pub(crate) fn execute(&mut self, head: u16) {
        let mut descs = Vec::new();
        let mut i = head;
        loop {
            let d = self.qdesc + 16 * u64::from(i);
            let (addr, len, flags, next) = (
                self.rd64(d),
                self.rd32(d + 8),
                self.rd16(d + 12),
                self.rd16(d + 14),
            );
            descs.push((addr, len, flags));
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            i = next;
            assert!(descs.len() <= usize::from(self.qsize), "descriptor loop");
        }
        let (h, hl, _) = descs[0];
        assert_eq!(hl, 16);
        let ty = self.rd32(h);
        let sector = self.rd64(h + 8);
        let (st, sl, sf) = *descs.last().unwrap();
        assert_eq!((sl, sf), (1, VIRTQ_DESC_F_WRITE));
        let data = &descs[1..descs.len() - 1];
        let mut pos = (sector * 512) as usize;
        for &(addr, len, flags) in data {
            let len = len as usize;
            assert!(pos + len <= self.disk.len());
            match ty {
                1 => {
                    assert_eq!(flags & VIRTQ_DESC_F_WRITE, 0);
                    let b = self.rd(addr, len);
                    self.disk[pos..pos + len].copy_from_slice(&b);
                }
                0 => {
                    assert_ne!(flags & VIRTQ_DESC_F_WRITE, 0);
                    let b = self.disk[pos..pos + len].to_vec();
                    self.wr(addr, &b);
                }
                _ => panic!("data on a flush"),
            }
            pos += len;
        }
        self.chains
            .push((ty, sector, data.iter().map(|d| d.1).collect()));
        self.wr(st, &[self.req_status]);
    }

    pub(crate) fn complete(&mut self, head: u16) {
        let e = self.qdevice + 4 + 8 * u64::from(self.used_idx % self.qsize);
        let id = if self.bogus_used_id {
            999
        } else {
            u32::from(head)
        };
        self.wr(e, &id.to_le_bytes());
        self.wr(e + 4, &0u32.to_le_bytes());
        self.used_idx = self.used_idx.wrapping_add(1);
        let u = self.used_idx;
        self.wr(self.qdevice + 2, &u.to_le_bytes());
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Common,
    Notify,
    Device,
}

pub(crate) struct Win {
    pub(crate) d: Rc<RefCell<Dev>>,
    pub(crate) kind: Kind,
}

pub(crate) fn lo_hi(v: &mut u64, off: usize, x: u32) {
    if off.is_multiple_of(8) {
        *v = (*v & !0xFFFF_FFFF) | u64::from(x);
    } else {
        *v = (*v & 0xFFFF_FFFF) | (u64::from(x) << 32);
    }
}

impl Win {
    pub(crate) fn rd(&self, off: usize) -> u64 {
        let mut d = self.d.borrow_mut();
        match self.kind {
            Kind::Common => match off {
                common::DEVICE_FEATURE => (d.dev_feat >> (32 * d.dfsel.min(1))) & 0xFFFF_FFFF,
                common::NUM_QUEUES => 1,
                common::DEVICE_STATUS => {
                    if let Some(h) = d.pending.pop_front() {
                        d.complete(h);
                    }
                    if d.polls && d.qenable != 0 {
                        d.wr(d.qdevice, &1u16.to_le_bytes());
                        d.take_avail();
                    }
                    u64::from(d.status)
                }
                common::CONFIG_GENERATION => 0,
                common::QUEUE_SIZE => u64::from(d.qsize),
                common::QUEUE_ENABLE => u64::from(d.qenable),
                common::QUEUE_NOTIFY_OFF => 3,
                common::QUEUE_MSIX_VECTOR => u64::from(d.qvec),
                common::MSIX_CONFIG => u64::from(d.cfgvec),
                _ => 0,
            },
            Kind::Notify => 0,
            Kind::Device => match off {
                0 => d.capacity & 0xFFFF_FFFF,
                4 => d.capacity >> 32,
                blk_cfg::SIZE_MAX => u64::from(d.size_max),
                blk_cfg::SEG_MAX => u64::from(d.seg_max),
                blk_cfg::BLK_SIZE => 4096,
                _ => 0,
            },
        }
    }

    pub(crate) fn wr(&self, off: usize, v: u32) {
        let mut d = self.d.borrow_mut();
        match self.kind {
            Kind::Common => match off {
                common::DEVICE_FEATURE_SELECT => d.dfsel = v,
                common::DRIVER_FEATURE_SELECT => d.drvsel = v,
                common::DRIVER_FEATURE => {
                    let sh = 32 * d.drvsel.min(1);
                    d.drv_feat = (d.drv_feat & !(0xFFFF_FFFF << sh)) | (u64::from(v) << sh);
                }
                common::DEVICE_STATUS => d.set_status(v as u8),
                common::QUEUE_SELECT => assert_eq!(v, 0),
                common::QUEUE_SIZE => d.qsize = v as u16,
                common::QUEUE_MSIX_VECTOR => d.qvec = v as u16,
                common::MSIX_CONFIG => d.cfgvec = v as u16,
                common::QUEUE_ENABLE => d.qenable = v as u16,
                0x20 | 0x24 => lo_hi(&mut d.qdesc, off - 0x20, v),
                0x28 | 0x2C => lo_hi(&mut d.qdriver, off - 0x28, v),
                0x30 | 0x34 => lo_hi(&mut d.qdevice, off - 0x30, v),
                _ => panic!("write to common {off:#x}"),
            },
            Kind::Notify => {
                assert_eq!(
                    (off, v),
                    (12, 0),
                    "notify address = 3 * multiplier 4, queue 0"
                );
                d.notifies += 1;
                d.notify();
            }
            Kind::Device => panic!("write to device config"),
        }
    }
}

impl Regs for Win {
    fn size(&self) -> usize {
        match self.kind {
            Kind::Common => 0x38,
            Kind::Notify => 0x1000,
            Kind::Device => 0x18,
        }
    }
    fn read8(&self, off: usize) -> u8 {
        self.rd(off) as u8
    }
    fn read16(&self, off: usize) -> u16 {
        self.rd(off) as u16
    }
    fn read32(&self, off: usize) -> u32 {
        self.rd(off) as u32
    }
    fn write8(&self, off: usize, v: u8) {
        self.wr(off, u32::from(v));
    }
    fn write16(&self, off: usize, v: u16) {
        self.wr(off, u32::from(v));
    }
    fn write32(&self, off: usize, v: u32) {
        self.wr(off, v);
    }
}

pub(crate) struct Rig {
    pub(crate) a: Arena,
    pub(crate) d: Rc<RefCell<Dev>>,
    pub(crate) clk: Clk,
}

impl Rig {
    pub(crate) fn new(f: impl FnOnce(Dev) -> Dev) -> Self {
        let a = arena(0x10_0000 + 0x40_0000);
        let d = Rc::new(RefCell::new(f(Dev::new(&a, 0x8000))));
        Rig {
            a,
            d,
            clk: Clk(Cell::new(0)),
        }
    }

    /// A device of `sectors` sectors doing DMA into `arena`, for [`Rig::open_on`].
    pub(crate) fn on_bus(bus: &BusArena, sectors: u64) -> Self {
        let a = arena(0);
        let mut dev = Dev::new(&a, sectors);
        dev.a = None;
        dev.bus = Some(RefCell::new(Phys { mem: bus.window() }));
        Rig {
            a,
            d: Rc::new(RefCell::new(dev)),
            clk: Clk(Cell::new(0)),
        }
    }

    /// Opens the device with its rings in DMA memory from `dma` (a rig made by [`Rig::on_bus`]).
    pub(crate) fn open_on(&self, dma: &mut BusArena) -> Result<VirtioBlk<'_, Win>, Error> {
        VirtioBlk::new(self.regions(), dma, &self.clk, InitOptions::default())
    }

    pub(crate) fn regions(&self) -> VirtioPciRegions<Win> {
        let w = |kind| Win {
            d: self.d.clone(),
            kind,
        };
        VirtioPciRegions {
            common: w(Kind::Common),
            notify: w(Kind::Notify),
            notify_off_multiplier: 4,
            device: w(Kind::Device),
        }
    }

    pub(crate) fn open(&self, opts: InitOptions) -> Result<VirtioBlk<'_, Win, ArenaMem>, Error> {
        let mem = ArenaMem {
            a: self.a.clone(),
            off: 0,
        };
        VirtioBlk::with_mem(self.regions(), mem, &self.clk, opts)
    }

    pub(crate) fn fill(&self, phys: u64, len: usize, seed: u8) {
        let o = (phys - BASE) as usize;
        for (i, b) in self.a.borrow_mut()[o..o + len].iter_mut().enumerate() {
            *b = seed.wrapping_add((i / 512) as u8) ^ (i as u8);
        }
    }

    pub(crate) fn bytes(&self, phys: u64, len: usize) -> Vec<u8> {
        let o = (phys - BASE) as usize;
        self.a.borrow()[o..o + len].to_vec()
    }
}
