//! Test double: simulated config space for several functions with per-byte write masks and
//! write-1-to-clear bits, and a log of every write so tests can prove access widths.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::{Bdf, ConfigSpace, Status, access_ok, reg};

/// One simulated function.
pub struct FakeFunc {
    /// Current register contents.
    pub data: [u8; 4096],
    /// Bits software may change.
    pub wmask: [u8; 4096],
    /// Bits cleared by writing 1.
    pub w1c: [u8; 4096],
}

impl FakeFunc {
    fn new() -> Self {
        let mut f = FakeFunc {
            data: [0; 4096],
            wmask: [0; 4096],
            w1c: [0; 4096],
        };
        // COMMAND is writable, Status error bits are W1C.
        f.wmask[0x04..0x06].copy_from_slice(&0x07FFu16.to_le_bytes());
        f.w1c[0x06..0x08].copy_from_slice(&Status::W1C.bits().to_le_bytes());
        f
    }

    /// Sets bytes without masks.
    pub fn set(&mut self, off: u16, bytes: &[u8]) -> &mut Self {
        let o = usize::from(off);
        self.data[o..o + bytes.len()].copy_from_slice(bytes);
        self
    }

    /// Sets the write mask of bytes.
    pub fn mask(&mut self, off: u16, bytes: &[u8]) -> &mut Self {
        let o = usize::from(off);
        self.wmask[o..o + bytes.len()].copy_from_slice(bytes);
        self
    }

    /// Sets a u8.
    pub fn set8(&mut self, off: u16, v: u8) -> &mut Self {
        self.set(off, &[v])
    }

    /// Sets a u16.
    pub fn set16(&mut self, off: u16, v: u16) -> &mut Self {
        self.set(off, &v.to_le_bytes())
    }

    /// Sets a u32.
    pub fn set32(&mut self, off: u16, v: u32) -> &mut Self {
        self.set(off, &v.to_le_bytes())
    }

    /// A 32-bit memory BAR of `size` at `addr`.
    pub fn bar_mem32(&mut self, i: u16, addr: u32, size: u32) -> &mut Self {
        let off = reg::BAR0 + 4 * i;
        self.set32(off, addr & !(size - 1));
        self.mask(off, &(!(size - 1) & !0xF).to_le_bytes())
    }

    /// A 64-bit prefetchable memory BAR of `size` at `addr` (slots `i` and `i + 1`).
    pub fn bar_mem64(&mut self, i: u16, addr: u64, size: u64) -> &mut Self {
        let off = reg::BAR0 + 4 * i;
        let m = !(size - 1);
        self.set32(off, (addr as u32 & m as u32 & !0xF) | 0b1100);
        self.set32(off + 4, (addr >> 32) as u32);
        self.mask(off, &(m as u32 & !0xF).to_le_bytes());
        self.mask(off + 4, &((m >> 32) as u32).to_le_bytes())
    }

    /// An I/O BAR of `size` at `port`.
    pub fn bar_io(&mut self, i: u16, port: u32, size: u32) -> &mut Self {
        let off = reg::BAR0 + 4 * i;
        self.set32(off, (port & !(size - 1)) | 1);
        self.mask(off, &(!(size - 1) & !0x3).to_le_bytes())
    }

    /// Appends capability `id` at `off` linking to `next` and sets Status.CAP_LIST; the first
    /// call also sets the pointer at 0x34.
    pub fn cap(&mut self, off: u16, id: u8, next: u8) -> &mut Self {
        if self.data[0x34] == 0 {
            self.data[0x34] = off as u8;
        }
        self.data[0x06] |= Status::CAP_LIST.bits() as u8;
        self.set(off, &[id, next])
    }

    fn read(&self, off: u16, width: u16) -> u32 {
        let o = usize::from(off);
        let mut b = [0u8; 4];
        b[..usize::from(width)].copy_from_slice(&self.data[o..o + usize::from(width)]);
        u32::from_le_bytes(b)
    }

    fn write(&mut self, off: u16, width: u16, v: u32) {
        for (k, byte) in v.to_le_bytes()[..usize::from(width)].iter().enumerate() {
            let o = usize::from(off) + k;
            let kept = self.data[o] & !self.wmask[o];
            self.data[o] = (kept | (byte & self.wmask[o])) & !(byte & self.w1c[o]);
        }
    }
}

/// One recorded write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// Function.
    pub bdf: Bdf,
    /// Offset.
    pub off: u16,
    /// Bytes written (1, 2 or 4).
    pub width: u16,
    /// Value.
    pub value: u32,
}

/// Simulated configuration space.
pub struct FakeConfig {
    funcs: RefCell<BTreeMap<Bdf, FakeFunc>>,
    writes: RefCell<Vec<Write>>,
    max: u16,
    /// BAR writes of all-ones while COMMAND had I/O or memory decode on.
    pub probes_with_decode_on: Cell<u32>,
}

impl FakeConfig {
    /// Empty space with `max_offset` 256 or 4096.
    pub fn new(max_offset: u16) -> Self {
        FakeConfig {
            funcs: RefCell::new(BTreeMap::new()),
            writes: RefCell::new(Vec::new()),
            max: max_offset,
            probes_with_decode_on: Cell::new(0),
        }
    }

    /// Adds an endpoint and lets `f` shape it.
    pub fn add(&self, bdf: Bdf, vendor: u16, device: u16, f: impl FnOnce(&mut FakeFunc)) {
        let mut func = FakeFunc::new();
        func.set16(0, vendor).set16(2, device);
        f(&mut func);
        self.funcs.borrow_mut().insert(bdf, func);
    }

    /// Adds a type-1 bridge with firmware-assigned bus numbers.
    pub fn add_bridge(&self, bdf: Bdf, secondary: u8, subordinate: u8) {
        self.add(bdf, 0x8086, 0x0001, |f| {
            f.set8(0x0E, 1)
                .set8(0x0B, 0x06)
                .set8(0x0A, 0x04)
                .set(0x18, &[bdf.bus, secondary, subordinate]);
        });
    }

    /// Inspects or changes a function.
    pub fn with<R>(&self, bdf: Bdf, f: impl FnOnce(&mut FakeFunc) -> R) -> R {
        f(self
            .funcs
            .borrow_mut()
            .get_mut(&bdf)
            .expect("no such fake function"))
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.borrow().clone()
    }

    /// Forgets the write log.
    pub fn clear_writes(&self) {
        self.writes.borrow_mut().clear();
    }

    fn rd(&self, bdf: Bdf, off: u16, width: u16) -> u32 {
        let ones = u32::MAX >> (32 - 8 * u32::from(width));
        if !access_ok(off, width, self.max) {
            return ones;
        }
        self.funcs
            .borrow()
            .get(&bdf)
            .map_or(ones, |f| f.read(off, width))
    }

    fn wr(&self, bdf: Bdf, off: u16, width: u16, value: u32) {
        self.writes.borrow_mut().push(Write {
            bdf,
            off,
            width,
            value,
        });
        if !access_ok(off, width, self.max) {
            return;
        }
        if let Some(f) = self.funcs.borrow_mut().get_mut(&bdf) {
            let bars = reg::BAR0..reg::BAR0 + 24;
            if bars.contains(&off) && value == u32::MAX && f.read(reg::COMMAND, 2) & 0x3 != 0 {
                self.probes_with_decode_on
                    .set(self.probes_with_decode_on.get() + 1);
            }
            f.write(off, width, value);
        }
    }
}

impl ConfigSpace for FakeConfig {
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        self.rd(bdf, off, 1) as u8
    }
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        self.rd(bdf, off, 2) as u16
    }
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.rd(bdf, off, 4)
    }
    fn write8(&self, bdf: Bdf, off: u16, v: u8) {
        self.wr(bdf, off, 1, u32::from(v));
    }
    fn write16(&self, bdf: Bdf, off: u16, v: u16) {
        self.wr(bdf, off, 2, u32::from(v));
    }
    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        self.wr(bdf, off, 4, v);
    }
    fn max_offset(&self) -> u16 {
        self.max
    }
}
