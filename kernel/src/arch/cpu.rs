//! CPU identification and control-register reads used for reporting and paging decisions.

use core::arch::x86_64::__cpuid;

/// CR4.LA57: five-level paging is active (the crashed kernel used it; it cannot be cleared
/// without leaving long mode).
pub const CR4_LA57: u64 = 1 << 12;

/// Reads CR2 (faulting linear address of the last page fault).
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Reads CR3 (physical address of the active top-level page table plus flags).
pub fn cr3() -> u64 {
    let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
    frame.start_address().as_u64() | u64::from(flags)
}

/// Reads CR4.
pub fn cr4() -> u64 {
    x86_64::registers::control::Cr4::read_raw()
}

/// Whether the CPU supports 1 GiB pages (CPUID 0x8000_0001 EDX bit 26). Nested KVM here lacks them.
pub fn has_1g_pages() -> bool {
    // CPUID is available on every x86_64 CPU; leaf 0x8000_0000 reports the highest extended leaf.
    let max_ext = __cpuid(0x8000_0000).eax;
    max_ext >= 0x8000_0001 && __cpuid(0x8000_0001).edx & (1 << 26) != 0
}

/// MAXPHYADDR as CPUID reports it (leaf 0x8000_0008 EAX[7:0]); `None` when the leaf is missing.
pub fn phys_addr_bits() -> Option<u8> {
    // Leaf 0x8000_0000 reports the highest extended leaf; a higher one must not be queried.
    let max_ext = __cpuid(0x8000_0000).eax;
    let eax = if max_ext >= 0x8000_0008 {
        __cpuid(0x8000_0008).eax
    } else {
        0
    };
    rkdump_boot::physaddr::PhysLimit::phys_bits_from_cpuid(max_ext, eax)
}

/// Physical base of this CPU's local APIC registers: IA32_APIC_BASE (MSR 0x1B) bits 12 and up
/// (Intel SDM Vol. 3A 11.4.4). The crashed kernel may have moved it from 0xFEE0_0000.
pub fn apic_base() -> u64 {
    const IA32_APIC_BASE: u32 = 0x1b;
    // SAFETY: every x86_64 CPU has a local APIC and this MSR (CPUID.1:EDX.APIC is set on all of
    // them); reading it has no side effects.
    let v = unsafe { x86_64::registers::model_specific::Msr::new(IA32_APIC_BASE).read() };
    v & 0x000f_ffff_ffff_f000
}

/// Time-stamp counter, for elapsed-time measurement only after calibration.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; CR4.TSD is clear at kexec entry and in PVH state.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops this CPU for good: interrupts off, halt in a loop (NMIs return into the loop).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
