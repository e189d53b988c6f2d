//! The Rust entry symbol: `arch::entry`'s stubs `call rkdump_main` once the stack and
//! relocations are set up. Exporting an unmangled symbol is `unsafe` (it could clash), so it
//! lives here and hands straight over to `kmain`.

/// Called by the entry stub with the entry kind (`rdi`), the boot-data pointer (`rsi`) and the
/// image base (`rdx`).
#[unsafe(no_mangle)]
extern "C" fn rkdump_main(kind: u64, info: u64, base: u64) -> ! {
    crate::arch::entry::paint_stack();
    crate::kmain::run(kind, info, base)
}
