//! Entry stubs: the 32-bit PVH entry at image offset 0, the 64-bit Linux boot-protocol entry at
//! offset 0x200, and the common 64-bit path that zeroes .bss, takes its own stack and applies the
//! image's R_X86_64_RELATIVE relocations before any Rust code runs.
//!
//! Both entries run position-independent: kexec places the payload anywhere in the crash region
//! (maybe above 4 GiB) and only RIP-relative addressing is used until relocation is done. The PVH
//! stub has no RIP-relative addressing in 32-bit mode, so xtask patches its load address into the
//! `mov $imm32, %ebp` at offset 0 when it writes rkdump.elf (see xtask `image.rs`).

core::arch::global_asm!(
    r#"
    .section .head.text, "ax"
    .code32
    .globl rkdump_pvh_entry
rkdump_pvh_entry:
    /* imm32 patched by xtask with the PVH load address; 0x0badb0d1 marks an unpatched image */
    mov $0x0badb0d1, %ebp
    cli
    cld
    mov %ebx, %esi
    lea __boot_stack_top_off(%ebp), %esp

    /* Identity-map 0..4 GiB with 2 MiB pages in the six .boot pages (not touched by .bss zeroing). */
    lea __boot_pt_off(%ebp), %edi
    mov %edi, %edx
    xor %eax, %eax
    mov $(6 * 1024), %ecx
    rep stosl
    lea 0x1003(%edx), %eax
    mov %eax, (%edx)
    lea 0x2003(%edx), %eax
    mov %eax, 0x1000(%edx)
    add $0x1000, %eax
    mov %eax, 0x1008(%edx)
    add $0x1000, %eax
    mov %eax, 0x1010(%edx)
    add $0x1000, %eax
    mov %eax, 0x1018(%edx)
    lea 0x2000(%edx), %edi
    mov $0x83, %eax
    mov $2048, %ecx
1:
    mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    dec %ecx
    jnz 1b

    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov %edx, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0

    lea (rkdump_pvh_gdt - rkdump_pvh_entry)(%ebp), %eax
    push %eax
    pushw $(rkdump_pvh_gdt_end - rkdump_pvh_gdt - 1)
    lgdt (%esp)
    add $6, %esp
    lea (rkdump_pvh_long - rkdump_pvh_entry)(%ebp), %eax
    push $0x08
    push %eax
    lret

    .code64
rkdump_pvh_long:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov %esi, %esi
    mov $1, %edi
    jmp rkdump_common64

    .balign 8
rkdump_pvh_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
rkdump_pvh_gdt_end:

    /* Linux boot protocol 64-bit entry: payload + 0x200, rsi = boot_params (zero page). */
    .org 0x200
    .globl rkdump_entry64
rkdump_entry64:
    cli
    cld
    xor %edi, %edi
    jmp rkdump_common64

rkdump_common64:
    mov %rdi, %r12
    mov %rsi, %r13
    lea __image_start(%rip), %r14

    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb

    lea __boot_stack_top(%rip), %rsp

    /* R_X86_64_RELATIVE (type 8): *(base + r_offset) = base + r_addend. xtask refuses images
       with any other dynamic relocation type, so others are skipped here. */
    lea __rela_start(%rip), %rsi
    lea __rela_end(%rip), %rdi
2:
    cmp %rdi, %rsi
    jae 4f
    mov 8(%rsi), %eax
    cmp $8, %eax
    jne 3f
    mov (%rsi), %rax
    mov 16(%rsi), %rdx
    add %r14, %rdx
    mov %rdx, (%r14, %rax)
3:
    add $24, %rsi
    jmp 2b
4:
    mov %r12, %rdi
    mov %r13, %rsi
    mov %r14, %rdx
    xor %ebp, %ebp
    call rkdump_main
5:
    cli
    hlt
    jmp 5b
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
}

/// What [`paint_stack`] writes into the unused part of the boot stack.
const STACK_PAINT: u64 = 0x6b63_6174_735f_6b72;
/// Bytes below the caller's frame left unpainted: [`paint_stack`]'s own frame and red zone.
const PAINT_MARGIN: u64 = 1024;

fn boot_stack() -> (u64, u64) {
    (
        core::ptr::addr_of!(__boot_stack_bottom) as u64,
        core::ptr::addr_of!(__boot_stack_top) as u64,
    )
}

/// Fills the boot stack below the running frame with a pattern, so that [`stack_peak`] can tell
/// how deep it was ever used. Call once, early, on the boot stack.
pub fn paint_stack() {
    let (bottom, top) = boot_stack();
    let rsp: u64;
    // SAFETY: reads the stack pointer only.
    unsafe { core::arch::asm!("mov %rsp, {0}", out(reg) rsp, options(att_syntax, nomem, nostack)) };
    if rsp <= bottom || rsp > top {
        // Not on the boot stack (an AP): nothing to paint.
        return;
    }
    let end = rsp.saturating_sub(PAINT_MARGIN) & !7;
    let mut a = bottom;
    while a < end {
        // SAFETY: [bottom, end) is the boot stack (linker.ld `.boot`, identity-mapped with the
        // image) below this function's frame and margin: no live data is there, and the
        // stores are aligned u64s.
        unsafe { core::ptr::write_volatile(a as *mut u64, STACK_PAINT) };
        a += 8;
    }
}

/// (deepest use of the boot stack in bytes, its size): the first word from the bottom that no
/// longer holds [`paint_stack`]'s pattern marks the deepest point reached.
pub fn stack_peak() -> (u64, u64) {
    let (bottom, top) = boot_stack();
    let mut a = bottom;
    while a < top {
        // SAFETY: inside the boot stack, aligned; reading below the live frame is harmless.
        if unsafe { core::ptr::read_volatile(a as *const u64) } != STACK_PAINT {
            break;
        }
        a += 8;
    }
    (top - a, top - bottom)
}

/// The image's physical extent `(start, len)`: the loaded payload plus .bss, stacks and early
/// tables (linker.ld's `__image_start`/`__image_end`; identity-mapped, so addresses are physical).
pub fn image_extent() -> (u64, u64) {
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    (start, end - start)
}
