//! x86_64 virtual-to-physical translation in the crashed kernel: a walk of its page tables from
//! `SYMBOL(init_top_pgt)` (4-level, or 5-level when `NUMBER(pgtable_l5_enabled)=1`), with 1 GiB and
//! 2 MiB pages, and the kernel image (`__START_KERNEL_map` .. + 1 GiB) translated by the formula the
//! kernel itself uses (`__phys_addr_nodebug`: `va - __START_KERNEL_map + phys_base`).
//!
//! Every entry is an allegation from old memory: a non-present entry ends the walk with
//! [`VirtError::NotMapped`]; reserved bits (the page-size bit in a PML5E/PML4E, the must-be-zero bits
//! of a 1 GiB or 2 MiB entry, address bits at or above the physical width) give
//! [`VirtError::BadEntry`]. The walk has a fixed depth, so tables that point at themselves or at
//! garbage cost at most five reads. Intel SDM vol. 3A, 4.5 (4-level and 5-level paging).
//! Not handled: AMD SME/TDX encryption bits in entries (an encrypted guest's C-bit above the
//! physical width shows as a bad entry).

use crate::mem::OldMemory;

use super::info::KernelInfo;
use super::virt::VirtError;

/// `__START_KERNEL_map`: where x86_64 Linux maps its image (arch/x86/include/asm/page_64_types.h).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// `KERNEL_IMAGE_SIZE` with KASLR (the image map's extent; modules start right after it).
pub const KERNEL_IMAGE_SIZE: u64 = 1 << 30;

const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Bits 12..51 of an entry hold the next table's or the page's frame.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A translated, physically contiguous virtual range: `va_start .. va_start + size` maps to
/// `phys_start ..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address of the range.
    pub va_start: u64,
    /// Physical address of `va_start`.
    pub phys_start: u64,
    /// Bytes in the range (4 KiB, 2 MiB, 1 GiB, or the image map's extent).
    pub size: u64,
}

impl Mapping {
    /// Whether `va` lies in the range.
    pub fn contains(&self, va: u64) -> bool {
        va.wrapping_sub(self.va_start) < self.size
    }

    /// Physical address of `va` (which must be [`Self::contains`]ed).
    pub fn phys_of(&self, va: u64) -> u64 {
        self.phys_start.wrapping_add(va.wrapping_sub(self.va_start))
    }

    /// Bytes from `va` to the end of the range.
    pub fn bytes_from(&self, va: u64) -> u64 {
        self.size - va.wrapping_sub(self.va_start)
    }
}

/// The crashed kernel's address translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translator {
    root: u64,
    five_level: bool,
    phys_base: u64,
    phys_bits: u32,
}

impl Translator {
    /// The kernel's own tables: `init_top_pgt` is an image address, so its frame is known without
    /// a walk. Entries may use the full 52-bit physical width.
    pub fn new(info: &KernelInfo) -> Self {
        let root = info
            .init_top_pgt
            .wrapping_sub(START_KERNEL_MAP)
            .wrapping_add(info.phys_base);
        Translator {
            root,
            five_level: info.pgtable_l5,
            phys_base: info.phys_base,
            phys_bits: 52,
        }
    }

    /// A translator over the top-level table at physical `root`.
    pub fn from_parts(root: u64, five_level: bool, phys_base: u64) -> Self {
        Translator {
            root,
            five_level,
            phys_base,
            phys_bits: 52,
        }
    }

    /// Narrows the physical address width (MAXPHYADDR): entry address bits at or above it are
    /// reserved. Clamped to 36..=52.
    pub fn with_phys_bits(mut self, bits: u32) -> Self {
        self.phys_bits = bits.clamp(36, 52);
        self
    }

    /// Physical address of the top-level table.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Whether the walk has five levels.
    pub fn five_level(&self) -> bool {
        self.five_level
    }

    /// Translates one address (reading at most one entry per level from `mem`).
    pub fn translate(&self, mem: &mut dyn OldMemory, va: u64) -> Result<Mapping, VirtError> {
        if let Some(off) = va.checked_sub(START_KERNEL_MAP)
            && off < KERNEL_IMAGE_SIZE
        {
            let phys = self
                .phys_base
                .checked_add(off)
                .filter(|p| p >> self.phys_bits == 0)
                .ok_or(VirtError::NotMapped { va })?;
            let phys_end_ok = self
                .phys_base
                .checked_add(KERNEL_IMAGE_SIZE)
                .is_some_and(|e| (e - 1) >> self.phys_bits == 0);
            return Ok(if phys_end_ok {
                Mapping {
                    va_start: START_KERNEL_MAP,
                    phys_start: self.phys_base,
                    size: KERNEL_IMAGE_SIZE,
                }
            } else {
                Mapping {
                    va_start: va & !0xfff,
                    phys_start: phys & !0xfff,
                    size: 0x1000,
                }
            });
        }
        let levels: u8 = if self.five_level { 5 } else { 4 };
        let va_bits = 12 + 9 * u32::from(levels);
        // Canonical: bits va_bits-1 .. 63 all equal.
        let top = (va as i64) >> (va_bits - 1);
        if top != 0 && top != -1 {
            return Err(VirtError::NotMapped { va });
        }
        let reserved_addr = ADDR_MASK & !((1u64 << self.phys_bits) - 1);
        let mut table = self.root;
        for level in (1..=levels).rev() {
            let shift = 12 + 9 * u32::from(level - 1);
            let index = (va >> shift) & 0x1ff;
            let mut raw = [0u8; 8];
            mem.read(table + index * 8, &mut raw)
                .map_err(|source| VirtError::OldMem { va, source })?;
            let entry = u64::from_le_bytes(raw);
            if entry & PRESENT == 0 {
                return Err(VirtError::NotMapped { va });
            }
            let bad = VirtError::BadEntry { va, level, entry };
            if entry & reserved_addr != 0 {
                return Err(bad);
            }
            let large = entry & PAGE_SIZE_BIT != 0;
            if level == 1 || (large && (level == 2 || level == 3)) {
                let size = 1u64 << shift;
                // Bit 12 of a large entry is PAT; bits 13..shift-1 must be zero.
                let must_be_zero = if level == 1 { 0 } else { (size - 1) & !0x1fff };
                if entry & must_be_zero != 0 {
                    return Err(bad);
                }
                return Ok(Mapping {
                    va_start: va & !(size - 1),
                    phys_start: entry & ADDR_MASK & !(size - 1),
                    size,
                });
            }
            if large {
                // PS is reserved in PML5E and PML4E.
                return Err(bad);
            }
            table = entry & ADDR_MASK;
        }
        Err(VirtError::NotMapped { va })
    }
}
