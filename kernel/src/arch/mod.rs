//! x86_64 CPU-level access owned by the kernel: entry stubs and the image's extent, CPU
//! registers, GDT/TSS, IDT and exception dispatch, identity page tables, and the faulting
//! self-tests. One of the two places the kernel allows `unsafe` (the other is `hw`). A leaf:
//! nothing here uses the rest of the kernel; exceptions reach it through the hook in [`idt`].

#![allow(unsafe_code)]

pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod paging;
pub mod selftest;
