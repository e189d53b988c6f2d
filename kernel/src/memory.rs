//! Physical memory owned by rkdump: the frame allocator over the E820 RAM it was given (never the
//! image, boot data, initrd, elfcorehdr or anything else the loaders put there), the kernel heap,
//! and DMA buffers for drivers. Tracks the peak footprint reported on the console.

use linked_list_allocator::LockedHeap;
use rkdump_boot::frames::{AllocRequest, FrameAllocator};
use rkdump_boot::mem::PhysRange;
use rkdump_devices::hw::{DmaAllocator, DmaBuf};
use spin::Mutex;

use crate::arch::paging::{self, Cache};

/// Heap size: enough for parsed headers, note buffers and driver bookkeeping; page data is never
/// copied through the heap.
pub const HEAP_SIZE: u64 = 2 << 20;

const FOUR_GIB: u64 = 1 << 32;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// Why memory set-up failed.
#[derive(Clone, Copy, Debug)]
pub enum MemoryError {
    /// No RAM for the heap.
    NoHeap,
}

/// Creates the frame allocator and the heap.
pub fn init(
    map: &rkdump_boot::memmap::MemoryMap,
    reserved: &[PhysRange],
) -> Result<(), MemoryError> {
    let frames = FrameAllocator::new(map, reserved.iter().copied());
    *FRAMES.lock() = Some(frames);
    paging::set_page_source(table_page);
    let heap = alloc(AllocRequest::bytes(HEAP_SIZE)).ok_or(MemoryError::NoHeap)?;
    // SAFETY: `heap` is RAM just taken from the frame allocator, so nothing else uses it; it
    // was mapped write-back and zeroed by `alloc` and stays mapped for the kernel's life.
    unsafe { HEAP.lock().init(heap.start as *mut u8, heap.len as usize) };
    Ok(())
}

/// Reserves a range after start-up (e.g. the elfcorehdr once parsed).
pub fn reserve(range: PhysRange) {
    if let Some(f) = FRAMES.lock().as_mut() {
        f.reserve(range);
    }
}

/// Allocates, maps (write-back) and zeroes frames.
pub fn alloc(req: AllocRequest) -> Option<PhysRange> {
    let range = FRAMES.lock().as_mut()?.alloc(req).ok()?;
    paging::map(range.start, range.len, Cache::WriteBack).ok()?;
    // SAFETY: freshly allocated RAM owned by the caller from now on, mapped just above.
    unsafe { core::ptr::write_bytes(range.start as *mut u8, 0, range.len as usize) };
    Some(range)
}

/// Page-table pages come from below 4 GiB, where the identity map always exists, so the paging
/// code can zero them without mapping anything first.
fn table_page() -> Option<u64> {
    let range = FRAMES
        .lock()
        .as_mut()?
        .alloc(AllocRequest::pages(1).below(FOUR_GIB))
        .ok()?;
    Some(range.start)
}

/// Peak bytes handed out by the frame allocator.
pub fn peak_bytes() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.peak_bytes())
}

/// DMA memory for drivers, from the frame allocator.
#[derive(Debug, Default)]
pub struct KernelDma;

// SAFETY: buffers come from the frame allocator, which hands each frame out once, never frees,
// zeroes what it hands out and never covers the image, boot data or the crashed kernel's memory.
unsafe impl DmaAllocator for KernelDma {
    fn alloc(&mut self, len: usize, align: usize, below_4g: bool) -> Option<DmaBuf> {
        let mut req = AllocRequest::bytes(len as u64).align(align.max(4096) as u64);
        if below_4g {
            req = req.below(FOUR_GIB);
        }
        let r = alloc(req)?;
        Some(DmaBuf {
            phys: r.start,
            len: r.len as usize,
        })
    }
}
