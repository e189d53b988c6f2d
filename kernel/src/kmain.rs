//! The run itself: from the entry stub's hand-off to the final action.

use crate::arch::{self, cpu};
use crate::power::{self, Outcome};
use crate::{rkerror, rkline};

/// How the kernel was entered (set by the entry stub in `rdi`).
const ENTRY_ZERO_PAGE: u64 = 0;
const ENTRY_PVH: u64 = 1;

#[unsafe(no_mangle)]
extern "C" fn rkdump_main(kind: u64, info: u64, base: u64) -> ! {
    crate::console::init(0x3F8, 115_200);
    arch::gdt::init();
    arch::idt::init();
    rkline!("entered");
    rkline!(
        "image base={:#x} entry={} info={:#x} cr4={:#x}",
        base,
        match kind {
            ENTRY_ZERO_PAGE => "zeropage",
            ENTRY_PVH => "pvh",
            _ => "unknown",
        },
        info,
        cpu::cr4()
    );
    if let Err(e) = arch::paging::init() {
        rkerror!("page tables: {e}");
        power::finish(Outcome::Failed);
    }
    rkline!("paging ok");
    power::finish(Outcome::Success)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::emergency_unlock();
    rkerror!("panic: {info}");
    power::finish(Outcome::Failed)
}
