//! Physical-memory readers for the parsers: boot data (zero page, PVH start info, command line)
//! and the crashed kernel's memory, with the errors each parser expects. Old-memory reads that
//! would touch rkdump's own memory are refused. The copies and the old-memory view themselves
//! are `hw::phys`.

use rkdump_boot::mem::{PhysMem, PhysMemError};
use rkdump_boot::physaddr::{AddrError, AddrPolicy};
use rkdump_vmcore::header::{DropReason, PhysFilter};
use rkdump_vmcore::mem::{OldMemError, OldMemory};

use crate::hw::mem::is_rkdump_memory;
use crate::hw::phys::{self, PhysError};

/// Boot-data reader for `rkdump-boot`.
#[derive(Debug, Default)]
pub struct BootMem;

impl PhysMem for BootMem {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let len = buf.len() as u64;
        phys::copy_from(phys, buf).map_err(|_| PhysMemError { addr: phys, len })
    }
}

/// The crashed kernel's memory, read at the physical addresses its ELF core header names.
#[derive(Debug)]
pub struct OldMem {
    /// Further ranges to refuse, beyond rkdump's own memory (image, heap, DMA, page tables),
    /// which is always refused: reading it would dump rkdump, not the crashed kernel.
    owned: alloc::vec::Vec<(u64, u64)>,
    /// The address policy (limit, known MMIO) every read is checked against first.
    policy: AddrPolicy,
}

impl OldMem {
    /// A reader that refuses `owned` ranges, rkdump's own memory and what `policy` refuses.
    pub fn new(owned: alloc::vec::Vec<(u64, u64)>, policy: AddrPolicy) -> Self {
        OldMem { owned, policy }
    }
}

/// The address policy as the elfcorehdr validation's filter: a PT_LOAD or PT_NOTE it refuses is
/// left out of the dump instead of being read.
#[derive(Debug)]
pub struct HeaderFilter<'a>(pub &'a AddrPolicy);

impl PhysFilter for HeaderFilter<'_> {
    fn check(&self, start: u64, len: u64) -> Result<(), DropReason> {
        match self.0.check_old_memory(start, len) {
            Ok(_) => Ok(()),
            Err(AddrError::Wraps { .. }) => Err(DropReason::Wraps),
            Err(AddrError::BeyondLimit { limit, .. }) => Err(DropReason::BeyondLimit { limit }),
            Err(AddrError::Mmio { window, .. }) => Err(DropReason::Refused {
                start: window.start,
                end: window.start.saturating_add(window.len),
            }),
            Err(AddrError::OutsideMemoryMap { map_end, .. }) => {
                Err(DropReason::BeyondLimit { limit: map_end })
            }
        }
    }
}

impl OldMemory for OldMem {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        let len = buf.len() as u64;
        self.admit(phys, len)?;
        phys::copy_from(phys, buf).map_err(|e| error(e, phys, len))
    }
}

fn error(e: PhysError, phys: u64, len: u64) -> OldMemError {
    match e {
        PhysError::OutOfRange => OldMemError::OutOfRange { phys, len },
        PhysError::Forbidden => OldMemError::Forbidden { phys, len },
        PhysError::Unmapped => OldMemError::Fault { phys },
    }
}

impl OldMem {
    /// Checks `[phys, phys + len)`: no overflow, below the physical address limit, not known
    /// MMIO, not ours.
    fn admit(&self, phys: u64, len: u64) -> Result<(), OldMemError> {
        let end = match self.policy.check_old_memory(phys, len) {
            Ok(end) => end,
            Err(AddrError::Mmio { .. }) => return Err(OldMemError::Forbidden { phys, len }),
            Err(_) => return Err(OldMemError::OutOfRange { phys, len }),
        };
        if self.owned.iter().any(|&(s, e)| phys < e && s < end) || is_rkdump_memory(phys, end) {
            return Err(OldMemError::Forbidden { phys, len });
        }
        Ok(())
    }

    /// Runs `f` over old memory `[phys, phys + len)` in pieces, without copying (checksums of
    /// data a device reads by DMA). Refused like `read` for ranges rkdump owns.
    pub fn with_slice(&self, phys: u64, len: u64, f: impl FnMut(&[u8])) -> Result<(), OldMemError> {
        self.admit(phys, len)?;
        phys::view(phys, len, f).map_err(|e| error(e, phys, len))
    }
}
