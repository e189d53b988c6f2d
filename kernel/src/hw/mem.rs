//! The RAM rkdump owns: the frame allocator over the E820 RAM it was given, the kernel heap
//! carved from it (plus one later extension, [`grow_heap`]), DMA buffers for drivers, and the
//! record of every frame handed out. That
//! record plus the image is all memory Rust code in rkdump can reference, so [`is_rkdump_memory`]
//! is what [`super::phys`] and [`super::pci`] check raw addresses against.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use linked_list_allocator::LockedHeap;
use rkdump_boot::frames::{AllocRequest, FrameAllocator};
use rkdump_boot::mem::PhysRange;
use rkdump_boot::memmap::MemoryMap;
use rkdump_devices::hw::{DmaAllocator, DmaBuf};
use spin::Mutex;

use crate::arch::entry::image_extent;
use crate::arch::paging::{self, Cache};

const FOUR_GIB: u64 = 1 << 32;

/// The heap: its first region ([`init_heap`]) and at most one more taken later ([`grow_heap`]),
/// each a run of frames of its own, so two regions instead of one contiguous heap.
struct Heaps {
    main: LockedHeap,
    extra: LockedHeap,
    /// `[start, end)` of the extra region; empty until [`grow_heap`].
    extra_start: AtomicU64,
    extra_end: AtomicU64,
}

// SAFETY: every block comes from one of the two `LockedHeap`s (each a valid GlobalAlloc over
// its own frames) and goes back to the one whose region holds it: the regions are disjoint
// frame runs, and the extra region's bounds are published (Release) after its heap is
// initialised and before any block of it can exist.
unsafe impl GlobalAlloc for Heaps {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is GlobalAlloc::alloc's, forwarded unchanged.
        let p = unsafe { self.main.alloc(layout) };
        if !p.is_null() {
            return p;
        }
        // SAFETY: as above; an extra heap not yet initialised is empty and returns null.
        unsafe { self.extra.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let a = ptr as u64;
        let in_extra = a >= self.extra_start.load(Ordering::Acquire)
            && a < self.extra_end.load(Ordering::Acquire);
        // SAFETY: `ptr` was allocated by the heap whose region holds it, with this layout.
        unsafe {
            if in_extra {
                self.extra.dealloc(ptr, layout)
            } else {
                self.main.dealloc(ptr, layout)
            }
        }
    }
}

#[global_allocator]
static HEAP: Heaps = Heaps {
    main: LockedHeap::empty(),
    extra: LockedHeap::empty(),
    extra_start: AtomicU64::new(0),
    extra_end: AtomicU64::new(0),
};
static HEAP_DONE: AtomicBool = AtomicBool::new(false);
static HEAP_GROWN: AtomicBool = AtomicBool::new(false);

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// Spans handed out so far (merged; an over-approximation once the list is full).
static HANDED_OUT: Mutex<Spans<64>> = Mutex::new(Spans::new());

/// `[start, end)` spans, merged when they touch. Frame allocation is top-down, so consecutive
/// allocations touch and merge.
pub(super) struct Spans<const N: usize> {
    spans: [(u64, u64); N],
    len: usize,
}

impl<const N: usize> Spans<N> {
    pub(super) const fn new() -> Self {
        Spans {
            spans: [(0, 0); N],
            len: 0,
        }
    }

    /// Adds `[s, e)` if it touches a span or a slot is free; false (unchanged) otherwise.
    pub(super) fn try_insert(&mut self, s: u64, e: u64) -> bool {
        if let Some(x) = self.spans[..self.len]
            .iter_mut()
            .find(|x| s <= x.1 && x.0 <= e)
        {
            *x = (x.0.min(s), x.1.max(e));
        } else if self.len < N {
            self.spans[self.len] = (s, e);
            self.len += 1;
        } else {
            return false;
        }
        true
    }

    /// Adds `[s, e)`; when the list is full, widens the nearest span to cover it (claims more,
    /// never less).
    fn insert(&mut self, s: u64, e: u64) {
        if self.try_insert(s, e) {
            return;
        }
        if let Some(x) = self.spans[..self.len]
            .iter_mut()
            .min_by_key(|x| if x.1 < s { s - x.1 } else { x.0 - e })
        {
            *x = (x.0.min(s), x.1.max(e));
        }
    }

    pub(super) fn overlaps(&self, s: u64, e: u64) -> bool {
        self.spans[..self.len].iter().any(|x| s < x.1 && x.0 < e)
    }
}

/// Whether `[start, end)` touches memory rkdump's own code may reference: the image (code,
/// statics, stacks, early page tables) or any frame handed out (heap, DMA, page tables).
pub fn is_rkdump_memory(start: u64, end: u64) -> bool {
    let (img, len) = image_extent();
    (start < img + len && img < end) || HANDED_OUT.lock().overlaps(start, end)
}

/// Creates the frame allocator over the RAM of `map` minus `reserved` and the image (added here:
/// handing out the image would let the allocator zero running code). Only the first call does
/// anything: a second allocator would hand out frames the first one already gave away.
pub fn init_frames(map: &MemoryMap, reserved: &[PhysRange]) {
    let mut frames = FRAMES.lock();
    if frames.is_some() {
        return;
    }
    let (img, len) = image_extent();
    let image = PhysRange::new(img, len);
    *frames = Some(FrameAllocator::new(
        map,
        reserved.iter().copied().chain([image]),
    ));
    drop(frames);
    paging::set_page_source(table_page);
}

/// Takes `size` bytes of frames for the heap and hands them to the global allocator. Only the
/// first successful call does anything; returns whether the heap exists.
pub fn init_heap(size: u64) -> bool {
    if HEAP_DONE.load(Ordering::SeqCst) {
        return true;
    }
    let Some(heap) = alloc(AllocRequest::bytes(size)) else {
        return false;
    };
    HEAP_DONE.store(true, Ordering::SeqCst);
    // SAFETY: `heap` is RAM just taken from the frame allocator, so nothing else uses it; it was
    // mapped write-back and zeroed by `alloc`, stays mapped and is never freed. HEAP_DONE makes
    // this the only `init` of the heap.
    unsafe {
        HEAP.main
            .lock()
            .init(heap.start as *mut u8, heap.len as usize)
    };
    true
}

/// Adds `size` bytes of frames to the heap, once per run (for the extra CPUs' work state);
/// returns whether the heap grew.
pub fn grow_heap(size: u64) -> bool {
    if !HEAP_DONE.load(Ordering::SeqCst) || HEAP_GROWN.swap(true, Ordering::SeqCst) {
        return false;
    }
    let Some(range) = alloc(AllocRequest::bytes(size)) else {
        return false;
    };
    // SAFETY: as in `init_heap`: fresh frames, mapped write-back, zeroed, never freed; the
    // HEAP_GROWN swap makes this the only `init` of the extra heap.
    unsafe {
        HEAP.extra
            .lock()
            .init(range.start as *mut u8, range.len as usize)
    };
    // Start first: while the end is still 0 the range is empty, never a wrong one.
    HEAP.extra_start.store(range.start, Ordering::Release);
    HEAP.extra_end
        .store(range.start + range.len, Ordering::Release);
    true
}

/// Takes `range` out of circulation for good (e.g. the elfcorehdr once parsed).
pub fn reserve(range: PhysRange) {
    if let Some(f) = FRAMES.lock().as_mut() {
        f.reserve(range);
    }
}

/// Allocates, records, maps (write-back) and zeroes frames.
pub fn alloc(req: AllocRequest) -> Option<PhysRange> {
    let range = FRAMES.lock().as_mut()?.alloc(req).ok()?;
    let end = range.start + range.len;
    HANDED_OUT.lock().insert(range.start, end);
    paging::map(range.start, range.len, Cache::WriteBack).ok()?;
    // SAFETY: the frame allocator hands out each frame once, only from RAM of the memory map and
    // never the image (reserved in `init_frames`), so no reference to these bytes exists; the
    // range was mapped just above. From here on it belongs to the caller.
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
    HANDED_OUT
        .lock()
        .insert(range.start, range.start + range.len);
    Some(range.start)
}

/// Peak bytes handed out by the frame allocator.
pub fn peak_bytes() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.peak_bytes())
}

/// Heap bytes not allocated right now.
pub fn heap_free() -> usize {
    HEAP.main.lock().free() + HEAP.extra.lock().free()
}

/// DMA memory for drivers, from the frame allocator.
#[derive(Debug, Default)]
pub struct KernelDma;

// SAFETY: buffers come from `alloc`: the frame allocator hands each frame out once, never frees,
// `alloc` zeroes what it hands out, and it never covers the image, boot data or the crashed
// kernel's memory.
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
