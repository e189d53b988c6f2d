//! The kdump writer's memory does not grow with RAM (docs/dump-format.md#memory): a sparse
//! 1 TiB PT_LOAD (2^28 frames, bitmaps of 32 MiB each) against a 1 GiB one, measured by a
//! counting allocator (its own test binary, so nothing else allocates in between).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use rkdump_vmcore::kdump::{Codec, Geometry, KdumpSink, Options, Stats, WINDOW_PAGES, write_kdump};
use rkdump_vmcore::pages::{PageSelector, PfnBitmap, SelectError, SelectStats};
use rkdump_vmcore::testing::{
    FakeMemory, VMCOREINFO_TEXT, cpu_note_buffer, header_blob, load_phdr, note_phdr,
    vmcoreinfo_buffer,
};
use rkdump_vmcore::{OldMemory, SinkError, prepare_dump};

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static PAUSED: Cell<bool> = const { Cell::new(false) };
}

fn count(delta: i64) {
    let _ = LIVE.try_with(|l| {
        if PAUSED.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        l.set(l.get() + delta);
        let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
    });
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: `ptr` came from `alloc` above, i.e. from System, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Keeps one frame per GiB.
struct OnePerGib;

impl PageSelector for OnePerGib {
    fn select(
        &mut self,
        _mem: &mut dyn OldMemory,
        keep: &mut PfnBitmap,
    ) -> Result<SelectStats, SelectError> {
        // Only ever clears: the one frame kept must have been offered.
        let one = keep.start_pfn().next_multiple_of(1 << 18);
        let offered = keep.get(one);
        keep.set_range(keep.start_pfn(), keep.npages(), false);
        keep.set(one, offered);
        Ok(SelectStats::default())
    }
}

/// Keeps what is not bitmap, counts the bitmap bits, and is not counted itself.
#[derive(Default)]
struct Sparse {
    bitmap: (u64, u64),
    bits: u64,
    kept: BTreeMap<u64, Vec<u8>>,
}

impl KdumpSink for Sparse {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        PAUSED.with(|p| p.set(true));
        let end = offset + data.len() as u64;
        let (lo, hi) = (offset.max(self.bitmap.0), end.min(self.bitmap.1));
        if lo < hi {
            let part = &data[(lo - offset) as usize..(hi - offset) as usize];
            self.bits += part.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        }
        if lo >= hi || offset < lo || end > hi {
            self.kept.insert(offset, data.to_vec());
        }
        PAUSED.with(|p| p.set(false));
        Ok(())
    }
}

const HDR_ADDR: u64 = 0x2f00_0000;

fn peak_for(ram: u64) -> (i64, Stats, Sparse) {
    let mut mem = FakeMemory::new();
    mem.insert(
        0x7e00_0000,
        cpu_note_buffer(Some((1, 0xffff_ffff_8100_0000))),
    );
    mem.insert(0x7f00_0000, vmcoreinfo_buffer(VMCOREINFO_TEXT, 4132));
    let phdrs = [
        note_phdr(0x7e00_0000, 368),
        note_phdr(0x7f00_0000, 4132),
        load_phdr(0x1_0000_0000, 0x1_0000_0000, 0xffff_8881_0000_0000, ram),
    ];
    mem.add_pattern(0x1_0000_0000, 0x1_0000_0000 + ram);
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let g = Geometry::of(&plan).unwrap();
    let mut sink = Sparse {
        bitmap: (g.bitmap1_offset, g.desc_offset),
        ..Sparse::default()
    };
    let o = Options {
        codec: Codec::Zlib,
        dump_level: 31,
        window_pages: WINDOW_PAGES,
        data_align: 1,
        ..Options::default()
    };
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    let s = write_kdump(&plan, &mut mem, &mut OnePerGib, &mut sink, &o, &mut |_| {}).unwrap();
    (PEAK.with(Cell::get), s, sink)
}

#[test]
fn memory_bound_on_sparse_1_tib() {
    let (small, s1, _) = peak_for(1 << 30);
    let (big, s2, sink) = peak_for(1 << 40);
    println!("writer peak heap: 1 GiB RAM {small} bytes, 1 TiB RAM {big} bytes; 1 TiB: {s2:?}");
    assert_eq!(s2.present, 1 << 28);
    assert_eq!(s2.pages, 1024, "one per GiB");
    assert_eq!(sink.bits, (1 << 28) + 1024, "both bitmaps written whole");
    assert!(sink.kept.len() > 3, "descriptors and data reached the sink");
    assert!(big < 1 << 20, "peak {big} bytes under 1 MiB");
    // Windows cost 16 bytes each: 1023 more windows add 16 KiB; nothing else may grow.
    assert!(
        big - small < 32 << 10,
        "1 TiB needs {} more bytes than 1 GiB",
        big - small
    );
    assert_eq!(s1.pages, 1);
}

#[test]
fn codec_state_is_what_state_bytes_says() {
    use rkdump_vmcore::kdump::Compressor;
    for codec in [Codec::Zlib, Codec::Lzo, Codec::None] {
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        let c = Compressor::new(codec).unwrap();
        let peak = PEAK.with(Cell::get) as usize;
        drop(c);
        let bound = Compressor::state_bytes(codec);
        println!("{codec}: {peak} bytes (bound {bound})");
        assert!(peak <= bound, "{codec}: {peak} > {bound}");
        assert!(peak >= bound / 2, "{codec}: bound {bound} far above {peak}");
    }
}
