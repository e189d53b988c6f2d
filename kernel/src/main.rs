//! rkdump: a bare-metal x86_64 kdump capture kernel.
//!
//! `kexec -p` (or QEMU's PVH loader) jumps into `arch::entry`; `rkdump_main` then takes over the
//! CPU (GDT, IDT, page tables), reads the boot information and command line, and runs the job:
//! boot info -> devices -> dump -> final action. This crate is orchestration and hardware access
//! only, its `unsafe` confined to `arch` and `hw`; parsing and policy live in the host-tested
//! `rkdump-boot`, `rkdump-vmcore` and `rkdump-devices` crates.

#![cfg_attr(target_os = "none", no_std, no_main)]
// `unsafe` is allowed only in `arch` (CPU-level) and `hw` (everything else); nothing else may
// lift this.
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod acpi;
#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod clock;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod disk;
#[cfg(target_os = "none")]
mod drivers;
#[cfg(target_os = "none")]
mod dump;
#[cfg(target_os = "none")]
mod filter;
#[cfg(target_os = "none")]
mod format;
#[cfg(target_os = "none")]
mod hw;
#[cfg(target_os = "none")]
mod iommu;
#[cfg(target_os = "none")]
mod kmain;
#[cfg(target_os = "none")]
mod memory;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod physmem;
#[cfg(target_os = "none")]
mod power;
#[cfg(target_os = "none")]
mod reinit;
#[cfg(target_os = "none")]
mod report;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod targets;
#[cfg(target_os = "none")]
mod watchdog;

/// Host builds (`cargo clippy --workspace`) get an empty program: the kernel only exists for
/// `x86_64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {}
