//! Host-test fixtures shared by the block-driver tests: a clock that advances on every read and
//! the device-side accessor the controller models use on the DMA [`Arena`] (which lives with the
//! rest of the `unsafe` in `hw::dma`).

use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;

pub(crate) use crate::hw::dma::Arena;
use crate::hw::dma::BusWindow;
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

/// A recognisable byte pattern.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Device-side accessor for a model: reads and writes arena memory by physical address,
/// refusing addresses outside it (a device would master-abort).
pub(crate) struct Phys {
    pub(crate) mem: BusWindow,
}

impl Phys {
    pub(crate) fn read(&mut self, phys: u64, len: usize) -> Option<Vec<u8>> {
        let mut out = vec![0; len];
        self.mem.read(phys, &mut out).then_some(out)
    }
    pub(crate) fn write(&mut self, phys: u64, data: &[u8]) -> bool {
        self.mem.write(phys, data)
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
