//! x86_64 CPU-level access owned by the kernel: entry stubs and the image's extent, CPU
//! registers, GDT/TSS, IDT and exception dispatch, identity page tables, the faulting
//! self-tests, and starting and feeding the other CPUs (`smp`). One of the two places the kernel
//! allows `unsafe` (the other is `hw`). A leaf: nothing here uses the rest of the kernel;
//! exceptions reach it through the hook in [`idt`].

#![allow(unsafe_code)]

pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod paging;
pub mod selftest;
pub mod smp;
