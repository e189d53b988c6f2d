//! Physical memory owned by rkdump, as the rest of the kernel sees it: set-up of the frame
//! allocator over the E820 RAM it was given (never the image, boot data, initrd, elfcorehdr or
//! anything else the loaders put there) and the heap, later reservations, DMA frames for drivers,
//! and the peak footprint reported on the console. The mechanism (allocator, heap, zeroing, the
//! record of what rkdump owns) is `hw::mem`.

use rkdump_boot::mem::PhysRange;

use crate::hw::mem as hw_mem;

pub use crate::hw::mem::KernelDma;

/// Heap size: enough for parsed headers, note buffers and driver bookkeeping; page data is never
/// copied through the heap.
pub const HEAP_SIZE: u64 = 2 << 20;

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
    hw_mem::init_frames(map, reserved);
    if hw_mem::init_heap(HEAP_SIZE) {
        Ok(())
    } else {
        Err(MemoryError::NoHeap)
    }
}

/// Reserves a range after start-up (e.g. the elfcorehdr once parsed).
pub fn reserve(range: PhysRange) {
    hw_mem::reserve(range);
}

/// Peak bytes handed out by the frame allocator.
pub fn peak_bytes() -> u64 {
    hw_mem::peak_bytes()
}

/// Prints `memory peak=<n> KiB stack=<s> KiB of <t> KiB`: the frames handed out and the
/// deepest use of the boot stack (painted at entry). A stack used beyond three quarters is an
/// error line too: nothing guards its bottom (the image is mapped with large pages), so a
/// deeper frame would overwrite the page tables and `.bss` below it.
pub fn report_peak() {
    let (stack, size) = crate::arch::entry::stack_peak();
    crate::rkline!(
        "memory peak={} KiB stack={} KiB of {} KiB",
        peak_bytes() >> 10,
        stack >> 10,
        size >> 10
    );
    if stack > size / 4 * 3 {
        crate::rkerror!("memory: the boot stack was used to {stack} of {size} bytes");
    }
}

/// Heap bytes not allocated right now (the heap is [`HEAP_SIZE`] whatever the RAM size, plus
/// what [`grow_heap`] added).
pub fn heap_free() -> usize {
    hw_mem::heap_free()
}

/// Adds `bytes` of frames to the heap, once per run (the kdump writer's codec state for the
/// other CPUs); false when already grown or out of frames.
pub fn grow_heap(bytes: u64) -> bool {
    hw_mem::grow_heap(bytes)
}
