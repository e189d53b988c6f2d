//! Test doubles: `FakeMem`, a sparse physical memory made of borrowed byte slices.
//!
//! Compiled for this crate's tests and, behind the `testing` feature, for host-side crates.
//! The kernel never enables it.

use crate::mem::{PhysMem, PhysMemError};

/// Maximum number of regions a [`FakeMem`] holds.
pub const FAKE_MEM_REGIONS: usize = 32;

/// Sparse fake physical memory: reads succeed only where a region was added.
///
/// Reads may span several adjacent regions; any unbacked byte fails the whole read.
#[derive(Clone, Copy, Debug)]
pub struct FakeMem<'a> {
    regions: [(u64, &'a [u8]); FAKE_MEM_REGIONS],
    len: usize,
}

impl Default for FakeMem<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> FakeMem<'a> {
    /// An empty memory: every read fails.
    pub const fn new() -> Self {
        Self {
            regions: [(0, &[]); FAKE_MEM_REGIONS],
            len: 0,
        }
    }

    /// Adds `bytes` at physical address `base` (later regions shadow earlier ones).
    ///
    /// # Panics
    /// If more than [`FAKE_MEM_REGIONS`] regions are added (a test bug).
    pub fn add(&mut self, base: u64, bytes: &'a [u8]) -> &mut Self {
        assert!(self.len < FAKE_MEM_REGIONS, "FakeMem: too many regions");
        self.regions[self.len] = (base, bytes);
        self.len += 1;
        self
    }

    /// Builder form of [`FakeMem::add`].
    pub fn with(mut self, base: u64, bytes: &'a [u8]) -> Self {
        self.add(base, bytes);
        self
    }

    fn byte(&self, addr: u64) -> Option<u8> {
        self.regions[..self.len]
            .iter()
            .rev()
            .find_map(|&(base, bytes)| {
                let off = usize::try_from(addr.checked_sub(base)?).ok()?;
                bytes.get(off).copied()
            })
    }
}

impl PhysMem for FakeMem<'_> {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let err = PhysMemError {
            addr: phys,
            len: buf.len() as u64,
        };
        for (i, out) in buf.iter_mut().enumerate() {
            let addr = phys.checked_add(i as u64).ok_or(err)?;
            *out = self.byte(addr).ok_or(err)?;
        }
        Ok(())
    }
}

/// A tiny deterministic PRNG (xorshift64*) for property-style tests; no extra crates.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed non-zero value).
    pub const fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_reads() {
        let a = [1u8, 2, 3, 4];
        let b = [5u8, 6];
        let mem = FakeMem::new()
            .with(0x1000, &a)
            .with(0x1004, &b)
            .with(0x2000, &a);
        let mut buf = [0u8; 6];
        mem.read(0x1000, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            mem.read(0x1001, &mut buf),
            Err(PhysMemError {
                addr: 0x1001,
                len: 6
            })
        );
        assert!(mem.read(u64::MAX, &mut buf).is_err());
        mem.read(0x2002, &mut buf[..2]).unwrap();
        assert_eq!(buf[..2], [3, 4]);
    }
}
