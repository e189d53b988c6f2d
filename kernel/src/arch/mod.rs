//! x86_64 hardware access owned by the kernel: entry stubs, CPU registers, GDT/TSS, IDT and
//! exception reporting, identity page tables. All of the kernel's CPU-level `unsafe` lives here.

pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod paging;
