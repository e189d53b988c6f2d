//! The IDT and exception dispatch. kexec enters with IDT limit 0, where the first exception or
//! NMI triple-faults the machine silently; this module installs a gate for every one of the 32
//! exception vectors. Each gate hands an [`ExceptionReport`] (vector, error code, CR2, all
//! registers) to the hook the kernel installed with [`set_exception_hook`]; the kernel prints it
//! and ends the run the way `rkdump.action` says. NMIs are reported and resumed, except on the
//! APs, where an NMI is the wake-up from their idle halt (`smp::absorbs_nmi`).
//!
//! `arch` is a leaf: it knows nothing of the console or the final action, only the hook. An
//! exception taken before a hook is installed halts the CPU (there is nothing to report with).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Once;

use super::{cpu, gdt};

/// What the CPU told us about an exception, for the kernel's report.
#[derive(Debug)]
pub struct ExceptionReport<'a> {
    /// Exception vector number.
    pub vector: u64,
    /// CPU error code, or 0 for vectors without one.
    pub error_code: u64,
    /// The registers saved on entry.
    pub frame: &'a TrapFrame,
    /// CR2 at entry (the faulting address of a page fault).
    pub cr2: u64,
    /// CR3 at entry.
    pub cr3: u64,
    /// CR4 at entry.
    pub cr4: u64,
}

impl ExceptionReport<'_> {
    /// Mnemonic of the vector (`#PF`, `NMI`, ...).
    pub fn name(&self) -> &'static str {
        vector_name(self.vector)
    }

    /// Whether the interrupted code may continue once the hook returns: only for NMIs (another
    /// CPU's watchdog or a platform event must not end the dump). For every other vector the hook
    /// must end the run; if it returns anyway the CPU halts.
    pub fn resumable(&self) -> bool {
        self.vector == 2
    }
}

/// Reports an exception; returns only for [`ExceptionReport::resumable`] ones.
pub type ExceptionHook = fn(&ExceptionReport<'_>);

static HOOK: Once<ExceptionHook> = Once::new();

/// Installs the kernel's exception hook (the first call wins; later calls are ignored).
pub fn set_exception_hook(hook: ExceptionHook) {
    HOOK.call_once(|| hook);
}

/// Saved state pushed by the common stub; layout fixed by the assembly below.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// General-purpose registers, in push order reversed.
    pub r15: u64,
    #[allow(missing_docs)]
    pub r14: u64,
    #[allow(missing_docs)]
    pub r13: u64,
    #[allow(missing_docs)]
    pub r12: u64,
    #[allow(missing_docs)]
    pub r11: u64,
    #[allow(missing_docs)]
    pub r10: u64,
    #[allow(missing_docs)]
    pub r9: u64,
    #[allow(missing_docs)]
    pub r8: u64,
    #[allow(missing_docs)]
    pub rbp: u64,
    #[allow(missing_docs)]
    pub rdi: u64,
    #[allow(missing_docs)]
    pub rsi: u64,
    #[allow(missing_docs)]
    pub rdx: u64,
    #[allow(missing_docs)]
    pub rcx: u64,
    #[allow(missing_docs)]
    pub rbx: u64,
    #[allow(missing_docs)]
    pub rax: u64,
    /// Exception vector number.
    pub vector: u64,
    /// CPU error code, or 0 for vectors without one.
    pub error_code: u64,
    /// Interrupted instruction pointer.
    pub rip: u64,
    /// Interrupted code segment.
    pub cs: u64,
    /// Interrupted flags.
    pub rflags: u64,
    /// Interrupted stack pointer.
    pub rsp: u64,
    /// Interrupted stack segment.
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

/// Vectors for which the CPU pushes an error code.
const HAS_ERROR_CODE: u32 = (1 << 8)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14)
    | (1 << 17)
    | (1 << 21)
    | (1 << 29)
    | (1 << 30);

// 32 stubs, each 16-byte aligned so stub n sits at rkdump_isr_base + 16 * n (no address table,
// hence no relocations).
core::arch::global_asm!(
    r#"
    .section .text.rkdump_isr, "ax"
    .balign 16
    .globl rkdump_isr_base
rkdump_isr_base:
    .altmacro
    .macro RKDUMP_ISR n, err
    .balign 16
    .if \err == 0
    push $0
    .endif
    push $\n
    jmp rkdump_isr_common
    .endm
    RKDUMP_ISR 0, 0
    RKDUMP_ISR 1, 0
    RKDUMP_ISR 2, 0
    RKDUMP_ISR 3, 0
    RKDUMP_ISR 4, 0
    RKDUMP_ISR 5, 0
    RKDUMP_ISR 6, 0
    RKDUMP_ISR 7, 0
    RKDUMP_ISR 8, 1
    RKDUMP_ISR 9, 0
    RKDUMP_ISR 10, 1
    RKDUMP_ISR 11, 1
    RKDUMP_ISR 12, 1
    RKDUMP_ISR 13, 1
    RKDUMP_ISR 14, 1
    RKDUMP_ISR 15, 0
    RKDUMP_ISR 16, 0
    RKDUMP_ISR 17, 1
    RKDUMP_ISR 18, 0
    RKDUMP_ISR 19, 0
    RKDUMP_ISR 20, 0
    RKDUMP_ISR 21, 1
    RKDUMP_ISR 22, 0
    RKDUMP_ISR 23, 0
    RKDUMP_ISR 24, 0
    RKDUMP_ISR 25, 0
    RKDUMP_ISR 26, 0
    RKDUMP_ISR 27, 0
    RKDUMP_ISR 28, 0
    RKDUMP_ISR 29, 1
    RKDUMP_ISR 30, 1
    RKDUMP_ISR 31, 0
    .noaltmacro

    .balign 16
rkdump_isr_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    mov %rsp, %rbx
    and $-16, %rsp
    call rkdump_exception
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static rkdump_isr_base: u8;
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(core::mem::size_of::<Gate>() == 16);

#[repr(C, align(16))]
struct Idt(UnsafeCell<[Gate; 32]>);

// SAFETY: written once by `init` on the only running CPU before `lidt` (before any AP is
// started); read only by the CPUs after that.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new(
    [Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    }; 32],
));

/// Installs a gate for each of the 32 exception vectors and loads the IDT.
pub fn init() {
    let base = core::ptr::addr_of!(rkdump_isr_base) as u64;
    let selector = gdt::code_selector();
    // SAFETY: single CPU, interrupts disabled, and the IDT is not loaded yet, so nothing else
    // reads the table while it is written.
    let gates = unsafe { &mut *IDT.0.get() };
    for (vector, gate) in gates.iter_mut().enumerate() {
        let handler = base + 16 * vector as u64;
        let ist = match vector {
            8 => gdt::IST_DOUBLE_FAULT + 1,
            2 => gdt::IST_NMI + 1,
            18 => gdt::IST_MACHINE_CHECK + 1,
            _ => 0,
        };
        *gate = Gate {
            offset_low: handler as u16,
            selector,
            ist: ist as u8,
            // present, DPL 0, 64-bit interrupt gate (IF cleared on entry)
            type_attr: 0x8E,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        };
    }
    load();
}

/// Loads the IDT [`init`] filled (on an AP: the same gates, read-only from here on).
pub fn load() {
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<[Gate; 32]>() - 1) as u16,
        base: x86_64::VirtAddr::from_ptr(IDT.0.get()),
    };
    // SAFETY: the table is a static that lives forever and every gate points at a stub above.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}

/// Mnemonic of an exception vector.
pub fn vector_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved",
        "reserved", "reserved", "reserved", "reserved", "#HV", "#VC", "#SX", "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("unknown")
}

#[unsafe(no_mangle)]
extern "C" fn rkdump_exception(frame: &mut TrapFrame) {
    if frame.vector == 2 && super::smp::absorbs_nmi() {
        // An AP's NMI is its wake-up from the idle `hlt`; it resumes where it halted.
        return;
    }
    static DEPTH: AtomicU32 = AtomicU32::new(0);
    if DEPTH.fetch_add(1, Ordering::SeqCst) > 2 {
        // Faulting while reporting a fault: nothing left that can be trusted to print.
        cpu::halt_forever();
    }
    let Some(hook) = HOOK.get() else {
        // Before the kernel installed its hook there is no console to report on.
        cpu::halt_forever();
    };
    let vector = frame.vector;
    let has_code = vector < 32 && HAS_ERROR_CODE & (1 << vector) != 0;
    let report = ExceptionReport {
        vector,
        error_code: if has_code { frame.error_code } else { 0 },
        frame,
        cr2: cpu::cr2(),
        cr3: cpu::cr3(),
        cr4: cpu::cr4(),
    };
    hook(&report);
    if report.resumable() {
        DEPTH.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    // The hook must end the run after a fatal exception; if it did not, stop here.
    cpu::halt_forever();
}
