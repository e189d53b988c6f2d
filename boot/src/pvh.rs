//! PVH boot ABI: `hvm_start_info` and its module and memory-map tables.
//!
//! Mirrors xen/include/public/arch-x86/hvm/start_info.h (QEMU include/hw/xen/start_info.h;
//! docs/boot-contract.md#pvh-start-info). EBX points at [`HvmStartInfo`] on entry.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `hvm_start_info.magic`: "xEn3" with the high bit of the first byte set.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336E_C578;

/// `struct hvm_start_info` (56 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmStartInfo {
    /// 0x00: [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// 0x04: 0 or 1; the memory map fields exist from version 1 on.
    pub version: u32,
    /// 0x08: `SIF_*` flags.
    pub flags: u32,
    /// 0x0C: number of entries at `modlist_paddr`.
    pub nr_modules: u32,
    /// 0x10: physical address of the [`HvmModlistEntry`] array.
    pub modlist_paddr: u64,
    /// 0x18: physical address of the NUL-terminated command line (0 = none).
    pub cmdline_paddr: u64,
    /// 0x20: physical address of the ACPI RSDP (0 = none).
    pub rsdp_paddr: u64,
    /// 0x28: physical address of the [`HvmMemmapTableEntry`] array (version ≥ 1).
    pub memmap_paddr: u64,
    /// 0x30: number of memory map entries (version ≥ 1).
    pub memmap_entries: u32,
    /// 0x34: must be zero.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry` (32 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmModlistEntry {
    /// 0x00: physical address of the module.
    pub paddr: u64,
    /// 0x08: size of the module in bytes.
    pub size: u64,
    /// 0x10: physical address of the module's command line (0 = none).
    pub cmdline_paddr: u64,
    /// 0x18: must be zero.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry` (24 bytes), e820 types.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct HvmMemmapTableEntry {
    /// 0x00: start address.
    pub addr: u64,
    /// 0x08: length in bytes.
    pub size: u64,
    /// 0x10: E820 type.
    pub type_: u32,
    /// 0x14: must be zero.
    pub reserved: u32,
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<HvmStartInfo>() == 56);
    assert!(offset_of!(HvmStartInfo, nr_modules) == 0x0C);
    assert!(offset_of!(HvmStartInfo, modlist_paddr) == 0x10);
    assert!(offset_of!(HvmStartInfo, cmdline_paddr) == 0x18);
    assert!(offset_of!(HvmStartInfo, rsdp_paddr) == 0x20);
    assert!(offset_of!(HvmStartInfo, memmap_paddr) == 0x28);
    assert!(offset_of!(HvmStartInfo, memmap_entries) == 0x30);
    assert!(size_of::<HvmModlistEntry>() == 32);
    assert!(size_of::<HvmMemmapTableEntry>() == 24);
    assert!(offset_of!(HvmMemmapTableEntry, type_) == 0x10);
};
