//! Memory for starting the other CPUs: the two trampoline pages below 1 MiB and each AP's
//! stacks, taken from the frame allocator (so owned by rkdump for the rest of the run) and
//! handed to `arch::smp`, whose constructors need that ownership.

use rkdump_boot::frames::AllocRequest;

use super::mem;
use crate::arch::smp::{ApBlock, Trampoline};

/// An AP's main stack: jobs run on it (hashing, compression), so it is generous.
pub const AP_STACK: u64 = 64 << 10;
/// Each of an AP's three IST stacks (double fault, NMI, machine check): enough to print the
/// exception report.
pub const AP_IST_STACK: u64 = 8 << 10;

/// Installs the trampoline in two pages of the RAM below 1 MiB the memory map gives rkdump.
/// `None` when there is no such RAM left (the STARTUP IPI cannot reach anything higher).
pub fn install_trampoline() -> Option<Trampoline> {
    // Below 0xA0000: the legacy VGA window and BIOS area above are never RAM for a STARTUP
    // vector, whatever a map claims.
    let pages = mem::alloc(AllocRequest::pages(2).below(0xA_0000))?;
    // SAFETY: `mem::alloc` hands each frame out once and never frees it, so the two pages belong
    // to the trampoline for the rest of the run; they are mapped write-back (identity) and zeroed.
    unsafe { Trampoline::install(pages.start) }
}

/// Builds the block for the AP started in check-in `slot` as CPU `index`, with fresh stacks.
/// `None` when the frame allocator has no room for the stacks.
pub fn ap_block(slot: usize, index: usize) -> Option<&'static ApBlock> {
    let stacks = mem::alloc(AllocRequest::bytes(AP_STACK + 3 * AP_IST_STACK))?;
    let top = |offset: u64| stacks.start + offset;
    let ist = [
        top(AP_STACK + AP_IST_STACK),
        top(AP_STACK + 2 * AP_IST_STACK),
        top(AP_STACK + 3 * AP_IST_STACK),
    ];
    // SAFETY: `mem::alloc` hands the range out once and never frees it; the stack tops are
    // page-aligned ends of disjoint parts of it, identity-mapped write-back.
    Some(unsafe { ApBlock::new(slot, index, top(AP_STACK), ist) })
}
