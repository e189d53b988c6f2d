//! A kdump-compressed file as the crashed kernel's physical memory ([`OldMemory`]), so the
//! host can run on a saved file the same code the capture kernel ran on RAM (the crash report
//! of `rkdumpctl inspect`).
//!
//! Frames are found by rank: the `n`-th set bit of bitmap 2 owns the `n`-th page descriptor.
//! A table of set-bit counts every [`RANK_FRAMES`] frames keeps a lookup to one short popcount.
//! A frame not in bitmap 2 (excluded by the filter, or not RAM) reads as
//! [`OldMemError::OutOfRange`], as `crash` treats an excluded page; a page whose descriptor or
//! data is bad reads as [`OldMemError::Fault`].

use alloc::vec;
use alloc::vec::Vec;

use super::codec::PAGE;
use super::read::KdumpFile;
use crate::mem::{OldMemError, OldMemory};

/// Frames per entry of the rank table (512 bitmap bytes).
pub const RANK_FRAMES: u64 = 4096;

/// Old memory read from a parsed kdump-compressed file; one decompressed page is cached.
pub struct KdumpMemory<'f, 'a> {
    file: &'f KdumpFile<'a>,
    /// Dumped frames before frame `i * RANK_FRAMES`.
    rank: Vec<u64>,
    page: Vec<u8>,
    cached: Option<u64>,
}

impl<'f, 'a> KdumpMemory<'f, 'a> {
    /// Indexes bitmap 2 of `file`.
    pub fn new(file: &'f KdumpFile<'a>) -> Self {
        let bitmap = file.dumped_bitmap();
        let chunk = (RANK_FRAMES / 8) as usize;
        let mut rank = Vec::with_capacity(bitmap.len().div_ceil(chunk) + 1);
        let mut total = 0u64;
        for c in bitmap.chunks(chunk) {
            rank.push(total);
            total += c.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        }
        KdumpMemory {
            file,
            rank,
            page: vec![0u8; PAGE],
            cached: None,
        }
    }

    /// Index of `pfn`'s descriptor, when the frame was dumped.
    fn index_of(&self, pfn: u64) -> Option<u64> {
        if pfn >= self.file.max_mapnr() || !self.file.dumped(pfn) {
            return None;
        }
        let bitmap = self.file.dumped_bitmap();
        let base = *self.rank.get(usize::try_from(pfn / RANK_FRAMES).ok()?)?;
        let from = usize::try_from(pfn / RANK_FRAMES * RANK_FRAMES / 8).ok()?;
        let byte = usize::try_from(pfn / 8).ok()?;
        let whole: u64 = bitmap
            .get(from..byte)?
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum();
        let part = bitmap.get(byte)? & ((1u8 << (pfn % 8)) - 1);
        Some(base + whole + u64::from(part.count_ones()))
    }
}

impl OldMemory for KdumpMemory<'_, '_> {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        let len = buf.len() as u64;
        let mut done = 0usize;
        while done < buf.len() {
            let pa = phys
                .checked_add(done as u64)
                .ok_or(OldMemError::OutOfRange { phys, len })?;
            let pfn = pa / PAGE as u64;
            if self.cached != Some(pfn) {
                let index = self
                    .index_of(pfn)
                    .ok_or(OldMemError::OutOfRange { phys, len })?;
                self.cached = None;
                self.file
                    .read_dumped(index, pfn, &mut self.page)
                    .map_err(|_| OldMemError::Fault { phys: pa })?;
                self.cached = Some(pfn);
            }
            let off = (pa % PAGE as u64) as usize;
            let n = (PAGE - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.page[off..off + n]);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::kdump::{Codec, Options, write_kdump};
    use crate::pages::{PageSelector, PfnBitmap, SelectError, SelectStats};
    use crate::prepare_dump;
    use crate::testing::FakeMemory;
    use crate::tests::{HDR_ADDR, kf_memory};

    /// Drops frames that are multiples of 5 (so ranks are not trivial).
    struct DropFifth;

    impl PageSelector for DropFifth {
        fn select(
            &mut self,
            _mem: &mut dyn OldMemory,
            keep: &mut PfnBitmap,
        ) -> Result<SelectStats, SelectError> {
            for pfn in keep.start_pfn()..keep.end_pfn() {
                if pfn % 5 == 0 {
                    keep.set(pfn, false);
                }
            }
            Ok(SelectStats {
                examined: keep.npages(),
                excluded: 0,
            })
        }
    }

    fn written(codec: Codec) -> (FakeMemory, Vec<u8>) {
        let (mut mem, _) = kf_memory(
            2,
            &[0, 1],
            &[(0x0010_0000, 0x40_0000), (0x0200_0000, 0x10_0800)],
        );
        let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
        let mut file = Vec::new();
        let opts = Options {
            codec,
            dump_level: 0,
            window_pages: 64,
            data_align: 1,
            ..Default::default()
        };
        write_kdump(
            &plan,
            &mut mem,
            &mut DropFifth,
            &mut file,
            &opts,
            &mut |_| {},
        )
        .unwrap();
        (mem, file)
    }

    #[test]
    fn every_dumped_frame_reads_as_old_memory() {
        for codec in [Codec::Zlib, Codec::Lzo, Codec::None] {
            let (mut mem, bytes) = written(codec);
            let file = KdumpFile::parse(&bytes).unwrap();
            let mut km = KdumpMemory::new(&file);
            let mut checked = 0;
            // Backwards, so the rank table is used, not a running count.
            for pfn in (0..file.max_mapnr()).rev() {
                let mut got = vec![0u8; PAGE];
                let r = km.read(pfn << 12, &mut got);
                if file.dumped(pfn) {
                    r.unwrap();
                    assert_eq!(got, mem.expected(pfn << 12, PAGE).unwrap(), "{pfn:#x}");
                    checked += 1;
                } else {
                    assert!(
                        matches!(r, Err(OldMemError::OutOfRange { .. })),
                        "frame {pfn:#x} not dumped: {r:?}"
                    );
                }
            }
            assert!(checked > 1000, "{checked}");
            // A read across two dumped frames (0x101 and 0x102).
            let mut two = vec![0u8; 100];
            km.read(0x10_2000 - 50, &mut two).unwrap();
            assert_eq!(two, mem.expected(0x10_2000 - 50, 100).unwrap());
            // Across a dropped frame (0x105): refused, not zeros.
            assert!(km.read(0x10_5000 - 8, &mut [0u8; 16]).is_err());
            // Beyond the bitmaps.
            assert!(matches!(
                km.read(file.max_mapnr() << 12, &mut [0u8; 8]),
                Err(OldMemError::OutOfRange { .. })
            ));
            assert!(km.read(u64::MAX - 3, &mut [0u8; 8]).is_err());
        }
    }

    /// The report from the written file equals the one from the memory it was written from
    /// (what `rkdumpctl inspect` relies on; the fake machine's VMCOREINFO translates nothing,
    /// so this compares the notes' part and the errors).
    #[test]
    fn the_report_from_the_file_is_the_report_from_memory() {
        let (mut mem, bytes) = written(Codec::Lzo);
        let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
        let from_ram =
            crate::report::from_old_memory(&mut mem, &plan.header, &plan.notes, 50, &|| false);
        let file = KdumpFile::parse(&bytes).unwrap();
        let notes = crate::notes::Notes::parse_merged(file.notes().unwrap());
        let mut km = KdumpMemory::new(&file);
        let from_file = crate::report::from_physical(&mut km, None, &notes, 50, &|| false);
        assert_eq!(from_file.cpu_count, 2);
        // Without kallsyms in VMCOREINFO only the structural search would find symbols, and
        // a file without program headers gives it no kernel-text range to search.
        assert_eq!(
            from_file.symbols,
            Err(alloc::string::String::from("kernel image range unknown"))
        );
        let without_symbols = |r: &crate::report::Report| {
            crate::report::render(r)
                .lines()
                .filter(|l| !l.contains("symbol"))
                .map(alloc::string::String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(without_symbols(&from_file), without_symbols(&from_ram));
        assert!(without_symbols(&from_ram).len() > 15);
    }

    #[test]
    fn a_bad_descriptor_is_a_fault_not_a_panic() {
        let (_, mut bytes) = written(Codec::Zlib);
        let (desc, pfn) = {
            let file = KdumpFile::parse(&bytes).unwrap();
            let pfn = (0..file.max_mapnr()).find(|&p| file.dumped(p)).unwrap();
            (file.desc_offset() as usize, pfn)
        };
        // The first descriptor's offset points past the end of the file.
        bytes[desc..desc + 8].copy_from_slice(&u64::MAX.to_le_bytes()[..]);
        bytes[desc + 7] = 0x7f;
        let file = KdumpFile::parse(&bytes).unwrap();
        let mut km = KdumpMemory::new(&file);
        assert_eq!(
            km.read(pfn << 12, &mut [0u8; 8]),
            Err(OldMemError::Fault { phys: pfn << 12 })
        );
    }
}
