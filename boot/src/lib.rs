//! Boot-protocol parsing for rkdump: zero page, PVH start info, command line and one boot-info model.
//!
//! Everything here is pure logic over bytes read through [`mem::PhysMem`]: `no_std`, no heap, no
//! `unsafe`, host-tested. The kernel implements `PhysMem` and calls [`info::BootInfo::from_zero_page`]
//! (kexec / Linux boot protocol) or [`info::BootInfo::from_pvh`] (QEMU `-kernel` with a PVH note),
//! then [`cmdline::Options::parse`] and [`frames::FrameAllocator::new`].
//! The boot facts the code relies on, with their sources: `docs/boot-contract.md`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod bootparam;
pub mod cmdline;
pub mod cpus;
pub mod frames;
pub mod info;
pub mod mem;
pub mod memmap;
pub mod physaddr;
pub mod pvh;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

// The ABI structs are plain integers read in native byte order; the boot protocol is little-endian.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "rkdump-boot assumes a little-endian host"
);

pub use cmdline::{CmdlineBuf, Options};
pub use frames::FrameAllocator;
pub use info::{BootError, BootInfo, BootSource};
pub use mem::{PhysMem, PhysMemError, PhysRange};
pub use memmap::{MemKind, MemRegion, MemoryMap};
