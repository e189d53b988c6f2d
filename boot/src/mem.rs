//! Physical memory access trait for the parsers, and the `PhysRange` address-range type.

use core::fmt;

use zerocopy::{FromBytes, IntoBytes};

/// Lets the parsers read physical memory; the kernel implements it over its identity or direct map.
///
/// Implementations must fail (not fault) on addresses they cannot read, such as unmapped memory.
pub trait PhysMem {
    /// Fills `buf` with the bytes at physical address `phys`.
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysMemError>;
}

impl<M: PhysMem + ?Sized> PhysMem for &M {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        (**self).read(phys, buf)
    }
}

/// A physical read that could not be satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysMemError {
    /// First address of the failed read.
    pub addr: u64,
    /// Length of the failed read.
    pub len: u64,
}

impl fmt::Display for PhysMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read {} bytes at physical {:#x}",
            self.len, self.addr
        )
    }
}

/// Reads a plain-old-data struct from physical memory.
pub fn read_struct<T: FromBytes + IntoBytes>(
    mem: &(impl PhysMem + ?Sized),
    phys: u64,
) -> Result<T, PhysMemError> {
    let mut value = T::new_zeroed();
    mem.read(phys, value.as_mut_bytes())?;
    Ok(value)
}

/// A physical address range `[start, start + len)`.
///
/// Fields are public because the value is often built from foreign data; `end()` is checked and
/// the predicates compute in 128 bits, so an overflowing range never wraps around.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl PhysRange {
    /// A range with the given start and length (not validated; see [`PhysRange::try_new`]).
    pub const fn new(start: u64, len: u64) -> Self {
        Self { start, len }
    }

    /// A range whose end does not overflow `u64`.
    pub fn try_new(start: u64, len: u64) -> Option<Self> {
        start.checked_add(len).map(|_| Self { start, len })
    }

    /// The range `[start, end)`, if `start <= end`.
    pub fn from_bounds(start: u64, end: u64) -> Option<Self> {
        end.checked_sub(start).map(|len| Self { start, len })
    }

    /// Exclusive end, or `None` if it overflows `u64`.
    pub fn end(&self) -> Option<u64> {
        self.start.checked_add(self.len)
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn end_wide(&self) -> u128 {
        u128::from(self.start) + u128::from(self.len)
    }

    /// Whether `addr` lies in the range.
    pub fn contains_addr(&self, addr: u64) -> bool {
        addr >= self.start && u128::from(addr) < self.end_wide()
    }

    /// Whether `other` lies entirely in this range (an empty `other` needs its start inside).
    pub fn contains(&self, other: &PhysRange) -> bool {
        other.start >= self.start && other.end_wide() <= self.end_wide()
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && u128::from(self.start) < other.end_wide()
            && u128::from(other.start) < self.end_wide()
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end() {
            Some(end) => write!(f, "[{:#x}-{:#x})", self.start, end),
            None => write!(f, "[{:#x}+{:#x} overflows)", self.start, self.len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_arithmetic_is_checked() {
        assert_eq!(PhysRange::try_new(u64::MAX, 1), None);
        assert_eq!(
            PhysRange::try_new(u64::MAX - 1, 1).unwrap().end(),
            Some(u64::MAX)
        );
        let wrap = PhysRange::new(u64::MAX - 10, 100);
        assert_eq!(wrap.end(), None);
        assert!(wrap.contains_addr(u64::MAX));
        assert!(!wrap.contains_addr(5));
        assert!(wrap.overlaps(&PhysRange::new(u64::MAX - 1, 1)));
        assert!(!wrap.overlaps(&PhysRange::new(0, 0x1000)));
        let r = PhysRange::new(0x1000, 0x1000);
        assert!(r.contains(&PhysRange::new(0x1800, 0x800)));
        assert!(!r.contains(&PhysRange::new(0x1800, 0x801)));
        assert!(!r.overlaps(&PhysRange::new(0x2000, 1)));
        assert!(!r.overlaps(&PhysRange::new(0x1000, 0)));
        assert_eq!(PhysRange::from_bounds(0x2000, 0x1000), None);
        assert_eq!(std::format!("{r}"), "[0x1000-0x2000)");
    }
}
