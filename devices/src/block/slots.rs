//! Command-identifier and slot sets: NVMe command IDs, AHCI command slots.

/// A set of up to 64 command identifiers or slots, handed out lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slots {
    all: u64,
    free: u64,
}

impl Slots {
    /// `n` free slots (at most 64).
    pub fn new(n: u32) -> Self {
        let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        Slots { all, free: all }
    }
    /// Takes the lowest free slot.
    pub fn alloc(&mut self) -> Option<u16> {
        if self.free == 0 {
            return None;
        }
        let i = self.free.trailing_zeros();
        self.free &= !(1 << i);
        Some(i as u16)
    }
    /// Returns a slot; false if it was not in use (a device naming a command never issued).
    pub fn release(&mut self, i: u16) -> bool {
        let bit = 1u64.checked_shl(u32::from(i)).unwrap_or(0) & self.all;
        if bit == 0 || self.free & bit != 0 {
            return false;
        }
        self.free |= bit;
        true
    }
    /// Bit mask of slots in use.
    pub fn busy(&self) -> u64 {
        self.all & !self.free
    }
    /// Whether every slot is in use.
    pub fn is_full(&self) -> bool {
        self.free == 0
    }
    /// Whether no slot is in use.
    pub fn is_idle(&self) -> bool {
        self.free == self.all
    }
}
