//! The kernel's hardware access beyond the CPU: every `unsafe` outside `arch/` lives in this
//! folder, behind safe functions whose checks make the safety argument locally.
//!
//! - [`mem`]: the RAM rkdump owns (frame allocator, heap, DMA buffers) and the record of it that
//!   the other modules check raw addresses against.
//! - [`phys`]: byte copies out of physical memory and the read-only old-memory view.
//! - [`acpi`]: the `acpi` crate's identity-map handler, the DSDT and MADT bytes, the FADT's PM
//!   ports.
//! - [`cpus`]: the memory the other CPUs start in (trampoline below 1 MiB, stacks).
//! - [`pci`]: MMIO windows for device registers and ECAM, the one 0xCF8/0xCFC owner.
//! - [`ports`]: fixed legacy platform ports (reset, PIT, isa-debug-exit).
//! - [`uart`]: 16550 handles on the serial ports the command line names.
//! - `entry`: the `rkdump_main` symbol the entry stub calls.
//!
//! Port I/O goes through `rkdump_devices::hw::port` (the `x86_64` crate's `Port`) only.

#![allow(unsafe_code)]

pub mod acpi;
pub mod cpus;
mod entry;
pub mod mem;
pub mod pci;
pub mod phys;
pub mod ports;
pub mod uart;
