//! Deliberate CPU exceptions for `rkdump.selftest=`: they prove the IDT and the exception report
//! work end to end.

/// Reads an address far beyond anything mapped (2^47 - 4 KiB, canonical, never mapped): a #PF.
/// Returns the value only if the page fault did not happen.
pub fn read_unmapped() -> u64 {
    let p = 0x0000_7fff_ffff_f000u64 as *const u64;
    // SAFETY: nothing maps this address, so the read faults before it can observe memory; the
    // exception path never returns here (a #PF ends the run).
    unsafe { core::ptr::read_volatile(p) }
}

/// Executes `div` by zero: a #DE.
pub fn divide_by_zero() {
    // SAFETY: the instructions touch only the named registers; the #DE they raise ends the run.
    unsafe {
        core::arch::asm!("xor edx, edx", "xor eax, eax", "xor ecx, ecx", "div ecx", out("eax") _, out("ecx") _, out("edx") _)
    };
}
