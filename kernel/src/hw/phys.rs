//! Byte access to physical memory rkdump does not own: copies out of boot data and old memory,
//! and the read-only view of old memory that checksums run over without copying. Addresses are
//! checked and mapped here; no function hands out a reference that outlives the call.

use rkdump_boot::mem::PhysRange;
use spin::Mutex;

use super::mem;
use crate::arch::paging::{self, Cache};

/// Pieces the old-memory view hands out at a time.
const VIEW_PIECE: u64 = 1 << 20;

/// The range the live [`view`]s are handing out right now (a nested view widens it to cover
/// both and restores the outer range when it ends).
static VIEWING: Mutex<Option<(u64, u64)>> = Mutex::new(None);

/// Whether `[start, end)` overlaps the old memory a [`view`] currently lends out as `&[u8]`:
/// nothing may write it (e.g. through an MMIO window) until the view ends.
pub fn is_viewed(start: u64, end: u64) -> bool {
    VIEWING.lock().is_some_and(|(s, e)| start < e && s < end)
}

/// Why physical memory could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysError {
    /// The range wraps or lies beyond the physical address limit (CPU width, canonical half).
    OutOfRange,
    /// The range is rkdump's own memory (or, for copies, the destination buffer itself).
    Forbidden,
    /// No mapping could be made.
    Unmapped,
}

/// Checked before anything is mapped or touched: an address beyond the limit would fault.
fn end_of(phys: u64, len: u64) -> Result<u64, PhysError> {
    paging::phys_limit()
        .check(phys, len)
        .map_err(|_| PhysError::OutOfRange)
}

/// Copies `buf.len()` bytes at physical `phys` into `buf` (mapping them write-back first).
/// Refuses rkdump's own memory: nothing rkdump reads by address (boot data, old memory) lives
/// there, and a copy from it could read bytes a live `&mut` is changing.
pub fn copy_from(phys: u64, buf: &mut [u8]) -> Result<(), PhysError> {
    let len = buf.len() as u64;
    let end = end_of(phys, len)?;
    if len == 0 {
        return Ok(());
    }
    if mem::is_rkdump_memory(phys, end) {
        return Err(PhysError::Forbidden);
    }
    paging::map(phys, len, Cache::WriteBack).map_err(|_| PhysError::Unmapped)?;
    // SAFETY: the source range was checked against the physical address limit and mapped just
    // above (or, only when the kernel's own tables could not be built, the loader mapped it:
    // kexec identity-maps its segments and PVH's stub maps 0..4 GiB). It is not rkdump's memory
    // (checked above), so no Rust reference aliases it and it cannot overlap `buf`, which lives
    // in rkdump's stack, heap or DMA memory. It is only read, as bytes.
    unsafe { core::ptr::copy_nonoverlapping(phys as *const u8, buf.as_mut_ptr(), buf.len()) };
    Ok(())
}

/// Runs `f` over the old memory `[phys, phys + len)` in pieces of up to 1 MiB, without copying.
/// Refuses rkdump's own memory and MMIO windows; the range is reserved first, so no frame handed
/// out later (while `f` runs, say) can land in it.
pub fn view(phys: u64, len: u64, mut f: impl FnMut(&[u8])) -> Result<(), PhysError> {
    let end = end_of(phys, len)?;
    if len == 0 {
        return Ok(());
    }
    if mem::is_rkdump_memory(phys, end) || super::pci::is_mmio_window(phys, end) {
        return Err(PhysError::Forbidden);
    }
    mem::reserve(PhysRange::new(phys, len));
    paging::map(phys, len, Cache::WriteBack).map_err(|_| PhysError::Unmapped)?;
    let outer = {
        let mut viewing = VIEWING.lock();
        let outer = *viewing;
        // A nested view keeps covering the outer one (the smallest span over both).
        *viewing = Some(outer.map_or((phys, end), |(s, e)| (s.min(phys), e.max(end))));
        outer
    };
    let mut at = phys;
    while at < end {
        let n = (end - at).min(VIEW_PIECE) as usize;
        // SAFETY: mapped above; not the image nor any frame handed out (so no Rust reference or
        // write in rkdump aliases it) and reserved, so no later allocation can overlap it; no
        // MMIO window covers it (checked above) and none is created while VIEWING covers it
        // (`hw::pci::map_mmio`). Old memory is only read and nothing writes it while rkdump runs
        // (the crashed kernel's CPUs are halted; devices were quiesced). The slice lives only for
        // the call of `f`: the higher-ranked `&[u8]` cannot escape it.
        f(unsafe { core::slice::from_raw_parts(at as *const u8, n) });
        at += n as u64;
    }
    *VIEWING.lock() = outer;
    Ok(())
}
