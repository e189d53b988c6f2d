//! Physical-memory readers for the parsers: boot data (zero page, PVH start info, command line)
//! and the crashed kernel's memory. Reads go through the identity map, after mapping the range;
//! old-memory reads that would touch rkdump's own memory are refused.

use rkdump_boot::mem::{PhysMem, PhysMemError};
use rkdump_vmcore::mem::{OldMemError, OldMemory};

use crate::arch::paging::{self, Cache, PHYS_LIMIT};

fn copy_phys(phys: u64, buf: &mut [u8]) {
    // SAFETY: callers checked the range for overflow and mapped it (or, before the kernel's own
    // tables exist, the loader mapped it: kexec identity-maps its segments and PVH's stub maps
    // 0..4 GiB). The source is only read; it never overlaps `buf`, which lives in rkdump's
    // stack, heap or DMA memory, never in the ranges the parsers read.
    unsafe { core::ptr::copy_nonoverlapping(phys as *const u8, buf.as_mut_ptr(), buf.len()) };
}

/// Boot-data reader for `rkdump-boot`.
#[derive(Debug, Default)]
pub struct BootMem;

impl PhysMem for BootMem {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let len = buf.len() as u64;
        match phys.checked_add(len) {
            Some(end) if end <= PHYS_LIMIT => {}
            _ => return Err(PhysMemError { addr: phys, len }),
        }
        paging::map(phys, len, Cache::WriteBack).map_err(|_| PhysMemError { addr: phys, len })?;
        copy_phys(phys, buf);
        Ok(())
    }
}

/// The crashed kernel's memory, read at the physical addresses its ELF core header names.
#[derive(Debug)]
pub struct OldMem {
    /// Ranges rkdump itself owns (image, heap, DMA): reading them would dump rkdump, not the
    /// crashed kernel, so a header pointing there is refused.
    owned: alloc::vec::Vec<(u64, u64)>,
}

impl OldMem {
    /// A reader that refuses `owned` ranges.
    pub fn new(owned: alloc::vec::Vec<(u64, u64)>) -> Self {
        OldMem { owned }
    }
}

impl OldMemory for OldMem {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        self.admit(phys, buf.len() as u64)?;
        copy_phys(phys, buf);
        Ok(())
    }
}

impl OldMem {
    /// Checks `[phys, phys + len)` like `read` does, maps it, and returns its end.
    fn admit(&self, phys: u64, len: u64) -> Result<u64, OldMemError> {
        let end = match phys.checked_add(len) {
            Some(end) if end <= PHYS_LIMIT => end,
            _ => return Err(OldMemError::OutOfRange { phys, len }),
        };
        if self.owned.iter().any(|&(s, e)| phys < e && s < end) {
            return Err(OldMemError::Forbidden { phys, len });
        }
        paging::map(phys, len, Cache::WriteBack).map_err(|_| OldMemError::Fault { phys })?;
        Ok(end)
    }

    /// Runs `f` over old memory `[phys, phys + len)` in pieces, without copying (checksums of
    /// data a device reads by DMA). Refused like `read` for ranges rkdump owns.
    pub fn with_slice(
        &self,
        phys: u64,
        len: u64,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), OldMemError> {
        let end = self.admit(phys, len)?;
        let mut at = phys;
        while at < end {
            let n = (end - at).min(1 << 20) as usize;
            // SAFETY: mapped above; old memory is only read, and nothing writes it while rkdump runs
            // (the crashed kernel's CPUs are halted; devices were quiesced).
            f(unsafe { core::slice::from_raw_parts(at as *const u8, n) });
            at += n as u64;
        }
        Ok(())
    }
}
