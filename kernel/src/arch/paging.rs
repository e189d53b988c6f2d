//! The kernel's own identity page tables. kexec's tables live in crash-region pages rkdump will
//! hand out, so they are replaced early: 0..4 GiB identity-mapped at start, everything else
//! (old memory above 4 GiB, high MMIO BARs) mapped on demand, with 1 GiB pages only when CPUID
//! offers them and 2 MiB pages otherwise. If the crashed kernel ran with five-level paging
//! (CR4.LA57 cannot be cleared in long mode) a PML5 is put on top.
//!
//! Nothing is mapped beyond [`phys_limit`] (the CPU's MAXPHYADDR and the canonical half of the
//! paging mode, `rkdump_boot::physaddr`): such a PTE would have reserved bits set (#PF RSVD on
//! use) or an identity address that is not canonical (#GP). A request there is a typed error.

use core::cell::UnsafeCell;

use rkdump_boot::physaddr::{Paging, PhysLimit};
use spin::{Mutex, Once};

use super::cpu;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

const SIZE_2M: u64 = 2 << 20;
const SIZE_1G: u64 = 1 << 30;
static LIMIT: Once<PhysLimit> = Once::new();

/// The exclusive limit of what rkdump may map: the CPU's physical address width (CPUID) and the
/// canonical half of the active paging mode, whichever is lower. Read once; CR4.LA57 cannot
/// change while rkdump runs.
pub fn phys_limit() -> PhysLimit {
    *LIMIT.call_once(|| {
        let paging = if cpu::cr4() & cpu::CR4_LA57 != 0 {
            Paging::FiveLevel
        } else {
            Paging::FourLevel
        };
        PhysLimit::new(cpu::phys_addr_bits(), paging)
    })
}

/// Pages kept in .bss for table pages needed before the frame allocator exists.
const POOL_PAGES: usize = 24;

/// Memory type of a mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cache {
    /// Normal RAM.
    WriteBack,
    /// Device registers.
    Uncached,
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// The range wraps or lies beyond the physical address limit.
    OutOfRange {
        /// Start of the requested range.
        start: u64,
        /// Length of the requested range.
        len: u64,
        /// The exclusive limit ([`phys_limit`]).
        limit: u64,
    },
    /// No page was available for a new page-table page.
    NoTablePage,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfRange { start, len, limit } => write!(
                f,
                "range {start:#x}+{len:#x} beyond the physical address limit {limit:#x}"
            ),
            MapError::NoTablePage => write!(f, "out of page-table pages"),
        }
    }
}

#[repr(C, align(4096))]
struct Page([u64; 512]);

struct Pool(UnsafeCell<[Page; POOL_PAGES + 2]>);

// SAFETY: accessed only through `TABLES`, whose mutex serialises all use.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([const { Page([0; 512]) }; POOL_PAGES + 2]));

/// Source of extra zeroed table pages once the frame allocator runs.
pub type PageSource = fn() -> Option<u64>;

struct Tables {
    /// Physical address of the PML4.
    pml4: u64,
    /// Physical address of the PML5 when LA57 is on.
    pml5: Option<u64>,
    next_pool: usize,
    source: Option<PageSource>,
    gig_pages: bool,
    table_pages: usize,
}

static TABLES: Mutex<Option<Tables>> = Mutex::new(None);

fn pool_page(index: usize) -> u64 {
    // Identity mapping: the address of a static is its physical address.
    (POOL.0.get() as u64) + (index as u64) * 4096
}

impl Tables {
    fn new_table(&mut self) -> Result<u64, MapError> {
        let page = if self.next_pool < POOL_PAGES + 2 {
            let p = pool_page(self.next_pool);
            self.next_pool += 1;
            p
        } else if let Some(source) = self.source {
            source().ok_or(MapError::NoTablePage)?
        } else {
            return Err(MapError::NoTablePage);
        };
        // SAFETY: `page` is a 4 KiB page owned by the page-table code (pool or frame allocator)
        // that is identity-mapped (pool: part of the image; allocator: RAM below the mapped
        // limit or mapped before use) and not yet referenced by any table.
        unsafe { core::ptr::write_bytes(page as *mut u8, 0, 4096) };
        self.table_pages += 1;
        Ok(page)
    }

    /// Returns the entry slot of `table` at `index`, creating a child table if asked.
    fn child(&mut self, table: u64, index: usize) -> Result<u64, MapError> {
        let slot = (table + 8 * index as u64) as *mut u64;
        // SAFETY: `table` is a live page-table page owned by this struct; index < 512.
        let entry = unsafe { slot.read_volatile() };
        if entry & PRESENT != 0 {
            return Ok(entry & ADDR_MASK);
        }
        let page = self.new_table()?;
        // SAFETY: as above.
        unsafe { slot.write_volatile(page | PRESENT | WRITABLE) };
        Ok(page)
    }

    /// Identity-maps the range; returns whether any entry was written (`false` when it was
    /// already mapped with this memory type, so the caller need not flush translations).
    fn map(&mut self, start: u64, len: u64, cache: Cache) -> Result<bool, MapError> {
        // The limit is a power of two of at least 2^36, so the 2 MiB and 1 GiB pages rounded
        // out from a range below it stay below it too.
        let end = admit(start, len)?;
        let flags = PRESENT
            | WRITABLE
            | HUGE
            | match cache {
                Cache::WriteBack => 0,
                Cache::Uncached => PCD | PWT,
            };
        let mut addr = start & !(SIZE_2M - 1);
        let mut changed = false;
        while addr < end {
            let pml4_index = ((addr >> 39) & 511) as usize;
            let pdpt_index = ((addr >> 30) & 511) as usize;
            let pdpt = self.child(self.pml4, pml4_index)?;
            let pdpt_slot = (pdpt + 8 * pdpt_index as u64) as *mut u64;
            // SAFETY: live table page owned by this struct.
            let pdpt_entry = unsafe { pdpt_slot.read_volatile() };
            if self.gig_pages
                && addr.is_multiple_of(SIZE_1G)
                && end - addr >= SIZE_1G
                && pdpt_entry & PRESENT == 0
            {
                // SAFETY: as above.
                unsafe { pdpt_slot.write_volatile(addr | flags) };
                changed = true;
                addr += SIZE_1G;
                continue;
            }
            if pdpt_entry & PRESENT != 0 && pdpt_entry & HUGE != 0 {
                if pdpt_entry & (PCD | PWT) == flags & (PCD | PWT) {
                    addr = (addr & !(SIZE_1G - 1)) + SIZE_1G;
                    continue;
                }
                // Re-typing part of a 1 GiB page: split it into 2 MiB pages of the old type.
                let pd = self.new_table()?;
                let base = pdpt_entry & ADDR_MASK & !(SIZE_1G - 1);
                let old = pdpt_entry & !ADDR_MASK;
                for i in 0..512u64 {
                    // SAFETY: fresh table page owned by this struct.
                    unsafe {
                        ((pd + 8 * i) as *mut u64).write_volatile((base + i * SIZE_2M) | old)
                    };
                }
                // SAFETY: as above.
                unsafe { pdpt_slot.write_volatile(pd | PRESENT | WRITABLE) };
                changed = true;
            }
            let pd = self.child(pdpt, pdpt_index)?;
            let pd_index = ((addr >> 21) & 511) as usize;
            let pd_slot = (pd + 8 * pd_index as u64) as *mut u64;
            // SAFETY: live table page owned by this struct; index < 512.
            if unsafe { pd_slot.read_volatile() } != addr | flags {
                // SAFETY: as above.
                unsafe { pd_slot.write_volatile(addr | flags) };
                changed = true;
            }
            addr += SIZE_2M;
        }
        Ok(changed)
    }
}

/// Checks `[start, start + len)` against [`phys_limit`]; returns its end.
fn admit(start: u64, len: u64) -> Result<u64, MapError> {
    let limit = phys_limit();
    limit.check(start, len).map_err(|_| MapError::OutOfRange {
        start,
        len,
        limit: limit.end(),
    })
}

/// Builds the kernel's tables (0..4 GiB identity, write-back, plus `image`, which kexec may
/// have placed above 4 GiB) and switches CR3 to them.
pub fn init(image: (u64, u64)) -> Result<(), MapError> {
    let mut guard = TABLES.lock();
    let mut tables = Tables {
        pml4: 0,
        pml5: None,
        next_pool: 0,
        source: None,
        gig_pages: cpu::has_1g_pages(),
        table_pages: 0,
    };
    tables.pml4 = tables.new_table()?;
    if cpu::cr4() & cpu::CR4_LA57 != 0 {
        let pml5 = tables.new_table()?;
        // SAFETY: fresh table page owned by `tables`.
        unsafe { (pml5 as *mut u64).write_volatile(tables.pml4 | PRESENT | WRITABLE) };
        tables.pml5 = Some(pml5);
    }
    tables.map(0, 4 * SIZE_1G, Cache::WriteBack)?;
    // The running code, its stack and every static live in the image.
    tables.map(image.0, image.1, Cache::WriteBack)?;
    let root = tables.pml5.unwrap_or(tables.pml4);
    // SAFETY: the new tables identity-map 0..4 GiB and the image (code, stacks, statics) exactly
    // as the previous ones did; boot data, ACPI and old memory are read only after this call,
    // through mappings made on demand. With LA57 on, the root is a PML5 whose entry 0 covers
    // the same 0..256 TiB identity space.
    unsafe { write_cr3(root) };
    *guard = Some(tables);
    Ok(())
}

/// Lets the page-table code take further pages from the frame allocator.
pub fn set_page_source(source: PageSource) {
    if let Some(t) = TABLES.lock().as_mut() {
        t.source = Some(source);
    }
}

/// Identity-maps `[start, start + len)` (rounded out to 2 MiB) with the given memory type.
pub fn map(start: u64, len: u64, cache: Cache) -> Result<(), MapError> {
    // Before `init` too: whatever the loader mapped, an address beyond the limit is never read.
    admit(start, len)?;
    let mut guard = TABLES.lock();
    let Some(tables) = guard.as_mut() else {
        // Before `init`, the inherited identity map is in use; the kernel builds its tables
        // before it reads anything by address, so nothing is read through it.
        return Ok(());
    };
    // Old memory is viewed piece by piece while it is hashed: re-mapping what is already mapped
    // must not flush the TLB each time.
    if tables.map(start, len, cache)? {
        let root = tables.pml5.unwrap_or(tables.pml4);
        // SAFETY: reloading the same root flushes stale translations (type changes); the tables
        // only gained or re-typed identity mappings.
        unsafe { write_cr3(root) };
    }
    Ok(())
}

/// Number of page-table pages in use (reported with the memory footprint).
pub fn table_pages() -> usize {
    TABLES.lock().as_ref().map_or(0, |t| t.table_pages)
}

unsafe fn write_cr3(root: u64) {
    // SAFETY: the caller guarantees `root` is a valid top-level table identity-mapping the
    // running code, data and stack.
    unsafe { core::arch::asm!("mov {}, %cr3", in(reg) root, options(att_syntax, nostack)) };
}
