//! Host-test fixtures shared by the NVMe and AHCI tests: a clock that advances on every read and
//! an arena of leaked host memory standing in for identity-mapped DMA memory.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;

use super::alloc_dma;
use crate::dma::{DmaAllocator, DmaBuf};
use crate::hw::DmaMem;
use crate::time::Clock;

/// A clock that moves `step` microseconds every time it is read.
pub(crate) struct FakeClock {
    now: Cell<u64>,
    step: u64,
}

impl FakeClock {
    pub(crate) fn new(step: u64) -> Self {
        FakeClock {
            now: Cell::new(0),
            step,
        }
    }
    pub(crate) fn elapsed_us(&self) -> u64 {
        self.now.get()
    }
}

impl Clock for FakeClock {
    fn now_us(&self) -> u64 {
        let t = self.now.get();
        self.now.set(t + self.step);
        t
    }
}

/// Host memory posing as physical memory: addresses are host addresses, as with rkdump's
/// identity map. A device model reads and writes it through [`Arena::window`].
pub(crate) struct Arena {
    base: u64,
    len: usize,
    next: usize,
    win: DmaMem,
}

/// Hands out one buffer once: how the arena gets a `DmaMem` view of itself.
struct Whole(Option<DmaBuf>);

impl DmaAllocator for Whole {
    fn alloc(&mut self, _: usize, _: usize, _: bool) -> Option<DmaBuf> {
        self.0.take()
    }
}

impl Arena {
    pub(crate) fn new(len: usize) -> Self {
        let raw: &'static mut [u8] = vec![0u8; len + 4096].leak();
        let base = (raw.as_mut_ptr() as u64).next_multiple_of(4096);
        let win = Self::view(base, len);
        Arena {
            base,
            len,
            next: 0,
            win,
        }
    }

    fn view(base: u64, len: usize) -> DmaMem {
        let mut whole = Whole(Some(DmaBuf { phys: base, len }));
        alloc_dma(&mut whole, len, 4096, false).expect("arena window")
    }

    /// Another view of the whole arena, for a device model.
    pub(crate) fn window(&self) -> DmaMem {
        Self::view(self.base, self.len)
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// A zeroed buffer as the kernel's allocator would hand it out.
    pub(crate) fn buf(&mut self, len: usize) -> u64 {
        self.alloc(len, 4096, false).expect("arena full").phys
    }

    pub(crate) fn put(&mut self, phys: u64, data: &[u8]) {
        let at = (phys - self.base) as usize;
        self.win.bytes_mut()[at..at + data.len()].copy_from_slice(data);
    }

    pub(crate) fn get(&mut self, phys: u64, len: usize) -> Vec<u8> {
        let at = (phys - self.base) as usize;
        self.win.bytes_mut()[at..at + len].to_vec()
    }
}

impl DmaAllocator for Arena {
    fn alloc(&mut self, len: usize, align: usize, _below_4g: bool) -> Option<DmaBuf> {
        let start = self.next.next_multiple_of(align);
        if start + len > self.len {
            return None;
        }
        self.next = start + len;
        Some(DmaBuf {
            phys: self.base + start as u64,
            len,
        })
    }
}

/// A recognisable byte pattern.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Device-side accessor for a model: reads and writes arena memory by physical address,
/// refusing addresses outside it (a device would master-abort).
pub(crate) struct Phys {
    pub(crate) mem: DmaMem,
    pub(crate) base: u64,
}

impl Phys {
    fn at(&self, phys: u64, len: usize) -> Option<usize> {
        let off = phys.checked_sub(self.base)? as usize;
        (off.checked_add(len)? <= self.mem.len()).then_some(off)
    }
    pub(crate) fn read(&mut self, phys: u64, len: usize) -> Option<Vec<u8>> {
        let at = self.at(phys, len)?;
        Some(self.mem.bytes_mut()[at..at + len].to_vec())
    }
    pub(crate) fn write(&mut self, phys: u64, data: &[u8]) -> bool {
        match self.at(phys, data.len()) {
            Some(at) => {
                self.mem.bytes_mut()[at..at + data.len()].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
    pub(crate) fn read32(&mut self, phys: u64) -> u32 {
        self.read(phys, 4)
            .map_or(u32::MAX, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn read64(&mut self, phys: u64) -> u64 {
        u64::from(self.read32(phys)) | (u64::from(self.read32(phys + 4)) << 32)
    }
    pub(crate) fn write32(&mut self, phys: u64, v: u32) {
        self.write(phys, &v.to_le_bytes());
    }
}
