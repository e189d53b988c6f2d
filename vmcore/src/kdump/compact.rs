//! A kdump-compressed file without the zeros between its page descriptors and its page data:
//! what `rkdumpctl save` writes out of a disk record (docs/dump-format.md#the-saved-file).
//!
//! On a record the data region starts at a multiple of the record's checksum block (1 MiB,
//! [`super::Options::data_align`]) so the writer's two streams never share a block; the zeros
//! before it mean nothing to a reader. [`Compactor`] takes the file's bytes in order, drops
//! `[desc_end, data_start)` and moves every descriptor's `offset` down by that many bytes, so the
//! saved file is the one the writer makes with `data_align: 1`. The record's checksums are
//! verified on the record's bytes before they get here; the bytes are still untrusted: every
//! descriptor must name data inside `[data_start, file end)`, and the dropped bytes must be
//! zeros, or [`Compactor::push`] returns an error (the caller then keeps the file as it is).
//!
//! Memory: the first [`Layout::HEAD_BYTES`] (held until the headers are checked) and the
//! rewritten descriptors of one [`Compactor::push`] call.

use alloc::vec::Vec;
use core::fmt;

use zerocopy::{FromBytes, IntoBytes};

use super::abi::page_desc;
use super::codec::PAGE;
use super::read::{Layout, ReadError};
use crate::mem::SinkError;

const DESC: u64 = size_of::<page_desc>() as u64;

/// Why a file cannot be compacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactError {
    /// The headers are not those of a kdump-compressed file this crate reads.
    Header(ReadError),
    /// The sub-header names erase information; it would lie after the data and need moving
    /// too (rkdump writes none).
    EraseInfo,
    /// The file ends before `what`.
    Short {
        /// The missing part.
        what: &'static str,
    },
    /// More bytes were pushed than the file's length.
    Long,
    /// The data start (the descriptors' end rounded up to the alignment) overflows.
    Layout,
    /// The `index`-th descriptor (frame order) is bad.
    Descriptor {
        /// Its index.
        index: u64,
        /// Its `offset`.
        offset: i64,
        /// What is wrong.
        what: &'static str,
    },
    /// A non-zero byte between the descriptors and the data start.
    Padding {
        /// Its file offset.
        offset: u64,
    },
    /// The output refused bytes.
    Output(SinkError),
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CompactError::Header(e) => write!(f, "kdump headers: {e}"),
            CompactError::EraseInfo => f.write_str("the file carries erase information"),
            CompactError::Short { what } => write!(f, "file ends inside the {what}"),
            CompactError::Long => f.write_str("more bytes than the file's length"),
            CompactError::Layout => f.write_str("data start out of range"),
            CompactError::Descriptor {
                index,
                offset,
                what,
            } => write!(f, "page descriptor {index} (offset {offset:#x}): {what}"),
            CompactError::Padding { offset } => {
                write!(f, "non-zero byte at {offset:#x} before the data start")
            }
            CompactError::Output(e) => write!(f, "output: {e}"),
        }
    }
}

/// Where the padding was, in the input file's offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compacted {
    /// First page descriptor.
    pub desc_offset: u64,
    /// Descriptors (set bits of bitmap 2).
    pub pages: u64,
    /// One past the last descriptor: where the output's data starts.
    pub desc_end: u64,
    /// Where the input's data started.
    pub data_start: u64,
}

impl Compacted {
    /// Bytes left out (what every descriptor's offset moved down by).
    pub fn removed(&self) -> u64 {
        self.data_start - self.desc_end
    }
}

/// Rewrites a kdump-compressed file streamed through it (see the module documentation).
pub struct Compactor {
    align: u64,
    len: u64,
    /// Input offset of the next byte pushed.
    pos: u64,
    /// The first bytes, until the headers are parsed.
    head: Vec<u8>,
    layout: Option<Layout>,
    /// Set bits of bitmap 2 seen so far.
    pages: u64,
    /// Known once `pos` reaches the descriptors.
    plan: Option<Compacted>,
    /// A descriptor split between two pushes.
    desc: [u8; DESC as usize],
    desc_fill: usize,
    index: u64,
    /// Rewritten descriptors not yet handed to the output.
    out: Vec<u8>,
}

impl Compactor {
    /// A compactor for a file of `len` bytes whose data start is the descriptors' end rounded
    /// up to a multiple of `align` (the record's block size; 0 counts as 1).
    pub fn new(align: u64, len: u64) -> Self {
        Compactor {
            align: align.max(1),
            len,
            pos: 0,
            head: Vec::new(),
            layout: None,
            pages: 0,
            plan: None,
            desc: [0; DESC as usize],
            desc_fill: 0,
            index: 0,
            out: Vec::new(),
        }
    }

    /// Takes the file's next bytes and hands the compacted file's next bytes to `out`.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        out: &mut dyn FnMut(&[u8]) -> Result<(), SinkError>,
    ) -> Result<(), CompactError> {
        let end = self.pos.checked_add(bytes.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(CompactError::Long);
        }
        let out = &mut |b: &[u8]| out(b).map_err(CompactError::Output);
        while !bytes.is_empty() {
            let Some(layout) = self.layout else {
                let n = (Layout::HEAD_BYTES - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..n]);
                (bytes, self.pos) = (&bytes[n..], self.pos + n as u64);
                if self.head.len() == Layout::HEAD_BYTES {
                    let layout = self.parse()?;
                    let head = core::mem::take(&mut self.head);
                    self.count(0, &head, &layout);
                    out(&head)?;
                    self.layout = Some(layout);
                }
                continue;
            };
            if self.pos < layout.desc_offset {
                let n = take(bytes, layout.desc_offset - self.pos);
                self.count(self.pos, &bytes[..n], &layout);
                out(&bytes[..n])?;
                (bytes, self.pos) = (&bytes[n..], self.pos + n as u64);
                continue;
            }
            let plan = match self.plan {
                Some(p) => p,
                None => self.plan_at_descriptors(&layout)?,
            };
            let n = if self.pos < plan.desc_end {
                let n = take(bytes, plan.desc_end - self.pos);
                self.descriptors(&bytes[..n], &plan)?;
                n
            } else if self.pos < plan.data_start {
                let n = take(bytes, plan.data_start - self.pos);
                if let Some(i) = bytes[..n].iter().position(|&b| b != 0) {
                    return Err(CompactError::Padding {
                        offset: self.pos + i as u64,
                    });
                }
                n
            } else {
                if !self.out.is_empty() {
                    out(&self.out)?;
                    self.out.clear();
                }
                out(bytes)?;
                bytes.len()
            };
            (bytes, self.pos) = (&bytes[n..], self.pos + n as u64);
        }
        if !self.out.is_empty() {
            out(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Checks that the whole file went through; what was left out.
    pub fn finish(self) -> Result<Compacted, CompactError> {
        if self.layout.is_none() {
            return Err(CompactError::Short { what: "headers" });
        }
        match self.plan {
            None => Err(CompactError::Short { what: "bitmaps" }),
            Some(p) if self.pos < p.data_start => Err(CompactError::Short {
                what: "page descriptors",
            }),
            Some(_) if self.pos < self.len => Err(CompactError::Short { what: "page data" }),
            Some(p) => Ok(p),
        }
    }

    fn parse(&self) -> Result<Layout, CompactError> {
        let layout = Layout::parse(&self.head).map_err(CompactError::Header)?;
        if layout.sub.offset_eraseinfo != 0 || layout.sub.size_eraseinfo != 0 {
            return Err(CompactError::EraseInfo);
        }
        Ok(layout)
    }

    /// Counts the set bits of bitmap 2 among `bytes` (at input offset `at`).
    fn count(&mut self, at: u64, bytes: &[u8], layout: &Layout) {
        let (b2, b2_end) = (
            layout.bitmap2_offset(),
            layout.bitmap2_offset() + layout.bitmap_bytes,
        );
        let end = at + bytes.len() as u64;
        let (s, e) = (at.max(b2), end.min(b2_end));
        if s < e {
            let part = &bytes[(s - at) as usize..(e - at) as usize];
            self.pages += part.iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
        }
    }

    fn plan_at_descriptors(&mut self, layout: &Layout) -> Result<Compacted, CompactError> {
        let desc_end = self
            .pages
            .checked_mul(DESC)
            .and_then(|b| b.checked_add(layout.desc_offset))
            .ok_or(CompactError::Layout)?;
        let data_start = desc_end
            .checked_next_multiple_of(self.align)
            .ok_or(CompactError::Layout)?;
        if data_start > self.len {
            return Err(CompactError::Short {
                what: "page descriptors and padding",
            });
        }
        let plan = Compacted {
            desc_offset: layout.desc_offset,
            pages: self.pages,
            desc_end,
            data_start,
        };
        self.plan = Some(plan);
        Ok(plan)
    }

    /// Descriptor bytes: each whole one checked, moved down and queued for the output.
    fn descriptors(&mut self, mut bytes: &[u8], plan: &Compacted) -> Result<(), CompactError> {
        while !bytes.is_empty() {
            let n = (self.desc.len() - self.desc_fill).min(bytes.len());
            self.desc[self.desc_fill..self.desc_fill + n].copy_from_slice(&bytes[..n]);
            self.desc_fill += n;
            bytes = &bytes[n..];
            if self.desc_fill < self.desc.len() {
                break;
            }
            self.desc_fill = 0;
            // A fixed-size array of the struct's size: cannot fail.
            let mut d = page_desc::read_from_bytes(&self.desc).unwrap_or_default();
            d.offset = moved(&d, plan, self.len).map_err(|what| CompactError::Descriptor {
                index: self.index,
                offset: d.offset,
                what,
            })?;
            self.out.extend_from_slice(d.as_bytes());
            self.index += 1;
        }
        Ok(())
    }
}

/// The descriptor's offset in the compacted file.
fn moved(d: &page_desc, plan: &Compacted, len: u64) -> Result<i64, &'static str> {
    let offset = u64::try_from(d.offset).map_err(|_| "negative offset")?;
    if offset < plan.data_start {
        return Err("data before the data start");
    }
    if d.size as usize > PAGE {
        return Err("size over a page");
    }
    if offset + u64::from(d.size) > len {
        return Err("data beyond the end of the file");
    }
    // offset >= data_start > removed, and offset <= len < 2^63 (offset came from an i64).
    Ok((offset - plan.removed()) as i64)
}

/// How many of `bytes` go before `limit` more input bytes.
fn take(bytes: &[u8], limit: u64) -> usize {
    usize::try_from(limit).map_or(bytes.len(), |l| l.min(bytes.len()))
}

/// Compacts a whole file in memory (tests and small files).
pub fn compact(bytes: &[u8], align: u64) -> Result<(Vec<u8>, Compacted), CompactError> {
    let mut c = Compactor::new(align, bytes.len() as u64);
    let mut out = Vec::new();
    c.push(bytes, &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok((out, c.finish()?))
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::kdump::read::{KdumpFile, all_pages};
    use crate::kdump::{Codec, Options, write_kdump};
    use crate::pages::KeepAll;
    use crate::prepare_dump;
    use crate::testing::FakeMemory;
    use crate::tests::{HDR_ADDR, kf_memory};

    const MIB: u64 = 1 << 20;

    /// Pattern pages, zero pages and pages that do not compress (stored raw), across windows.
    fn machine() -> FakeMemory {
        let (mut mem, _) = kf_memory(
            2,
            &[0, 1],
            &[(0x0010_0000, 0x40_0000), (0x0200_0000, 0x10_0800)],
        );
        mem.insert(0x0032_0000, vec![0; 3 * 4096]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..2 * 4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        mem.insert(0x0035_0000, noise);
        mem
    }

    /// The file the writer makes with `data_align`.
    fn written(codec: Codec, data_align: u64) -> Vec<u8> {
        let mut mem = machine();
        let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
        let opts = Options {
            codec,
            window_pages: 512,
            data_align,
            ..Options::default()
        };
        let mut file = Vec::new();
        write_kdump(&plan, &mut mem, &mut KeepAll, &mut file, &opts, &mut |_| {}).unwrap();
        file
    }

    /// Pushes `bytes` in pieces of the given sizes (cycled).
    fn streamed(bytes: &[u8], align: u64, pieces: &[usize]) -> Result<Vec<u8>, CompactError> {
        let mut c = Compactor::new(align, bytes.len() as u64);
        let mut out = Vec::new();
        let mut rest = bytes;
        for &n in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = n.min(rest.len());
            c.push(&rest[..n], &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })?;
            rest = &rest[n..];
        }
        c.finish()?;
        Ok(out)
    }

    fn desc_at(bytes: &[u8], index: u64) -> usize {
        let f = KdumpFile::parse(bytes).unwrap();
        (f.desc_offset() + index * DESC) as usize
    }

    /// The compacted record file is byte for byte the file the writer makes without alignment,
    /// and the crate's reader gets every page of it identical to the aligned file's.
    #[test]
    fn compacted_is_the_unaligned_file_and_reads_the_same_pages() {
        for codec in [Codec::Zlib, Codec::Lzo, Codec::None] {
            let plain = written(codec, 1);
            let aligned = written(codec, MIB);
            assert!(aligned.len() > plain.len(), "{codec:?}: padding to compact");
            let (out, c) = compact(&aligned, MIB).unwrap();
            assert_eq!(out.len(), plain.len(), "{codec:?}");
            assert!(
                out == plain,
                "{codec:?}: compacted differs from the unaligned file"
            );
            assert_eq!(c.removed(), (aligned.len() - plain.len()) as u64);
            assert_eq!(c.data_start % MIB, 0);
            let before = all_pages(&KdumpFile::parse(&aligned).unwrap()).unwrap();
            let after = all_pages(&KdumpFile::parse(&out).unwrap()).unwrap();
            assert_eq!(before.len() as u64, c.pages);
            assert!(before.len() > 1000, "{}", before.len());
            assert!(before == after, "{codec:?}: pages differ");
            // And the pages are the machine's (not just the same mistake twice).
            let mut mem = machine();
            for (pfn, page) in &after {
                assert!(*page == mem.expected(pfn << 12, 4096).unwrap(), "{pfn:#x}");
            }
        }
    }

    #[test]
    fn any_piece_sizes_give_the_same_bytes() {
        let aligned = written(Codec::Lzo, MIB);
        let (whole, _) = compact(&aligned, MIB).unwrap();
        // 1-byte pieces through the headers and descriptors, pieces that split descriptors
        // (not multiples of 24), and 1 MiB pieces as `save` reads.
        for pieces in [&[1usize, 4097, 13][..], &[23, 25, 65_536], &[MIB as usize]] {
            assert!(
                streamed(&aligned, MIB, pieces).unwrap() == whole,
                "{pieces:?}"
            );
        }
    }

    #[test]
    fn an_already_compact_file_is_unchanged() {
        let plain = written(Codec::Zlib, 1);
        let (out, c) = compact(&plain, 1).unwrap();
        assert_eq!(c.removed(), 0);
        assert!(out == plain);
        // The record's real alignment used on a file from a 4 KiB-aligned writer too.
        let page = written(Codec::Zlib, 4096);
        let (out, c) = compact(&page, 4096).unwrap();
        assert!(out == plain && c.removed() == page.len() as u64 - plain.len() as u64);
    }

    /// Negative controls: descriptors naming bytes the compaction would drop or move wrongly.
    #[test]
    fn bad_descriptors_are_refused() {
        let aligned = written(Codec::Zlib, MIB);
        let (_, c) = compact(&aligned, MIB).unwrap();
        let at = desc_at(&aligned, 5);
        let with = |offset: i64, size: Option<u32>| {
            let mut b = aligned.clone();
            b[at..at + 8].copy_from_slice(&offset.to_le_bytes());
            if let Some(s) = size {
                b[at + 8..at + 12].copy_from_slice(&s.to_le_bytes());
            }
            compact(&b, MIB).map(|_| ())
        };
        let is = |r: Result<(), CompactError>, what: &str| match r {
            Err(CompactError::Descriptor {
                index: 5, what: w, ..
            }) => w == what,
            _ => false,
        };
        // Into the padding, at its first and last byte.
        assert!(is(
            with(c.desc_end as i64, None),
            "data before the data start"
        ));
        assert!(is(
            with(c.data_start as i64 - 1, None),
            "data before the data start"
        ));
        // Before it: the descriptors, the header, offset 0 (a page never written).
        assert!(is(
            with(c.desc_offset as i64, None),
            "data before the data start"
        ));
        assert!(is(with(0, None), "data before the data start"));
        assert!(is(with(-4096, None), "negative offset"));
        assert!(is(with(i64::MIN, None), "negative offset"));
        // After the end, and a size over a page.
        let len = aligned.len() as i64;
        assert!(is(
            with(len - 10, Some(11)),
            "data beyond the end of the file"
        ));
        assert!(is(with(i64::MAX, None), "data beyond the end of the file"));
        assert!(is(
            with(c.data_start as i64, Some(4097)),
            "size over a page"
        ));
        // Control: the same edits within the rules pass.
        assert!(with(c.data_start as i64, Some(4096)).is_ok());
        assert!(with(len - 10, Some(10)).is_ok());
    }

    #[test]
    fn a_file_without_the_assumed_alignment_is_refused() {
        // Written unaligned, compacted as if aligned: the first zero page's descriptor names
        // the shared zero page at the descriptors' end, which is then padding.
        let plain = written(Codec::Lzo, 1);
        let f = KdumpFile::parse(&plain).unwrap();
        let pages = all_pages(&f).unwrap().len() as u64;
        assert_ne!(
            (f.desc_offset() + pages * DESC) % 4096,
            0,
            "needs a 4 KiB gap"
        );
        let r = compact(&plain, 4096);
        assert!(
            matches!(
                r,
                Err(CompactError::Descriptor {
                    what: "data before the data start",
                    ..
                })
            ),
            "{r:?}"
        );
        // This small file ends before the next 1 MiB.
        assert!(matches!(
            compact(&plain, MIB),
            Err(CompactError::Short { .. })
        ));
    }

    #[test]
    fn bytes_in_the_padding_are_refused() {
        let mut aligned = written(Codec::Zlib, MIB);
        let (_, c) = compact(&aligned, MIB).unwrap();
        let at = c.data_start as usize - 1;
        aligned[at] = 1;
        assert_eq!(
            compact(&aligned, MIB),
            Err(CompactError::Padding { offset: at as u64 })
        );
    }

    #[test]
    fn short_long_and_foreign_input_is_refused() {
        let aligned = written(Codec::Zlib, MIB);
        let (_, c) = compact(&aligned, MIB).unwrap();
        let cut = |n: u64| {
            let mut k = Compactor::new(MIB, aligned.len() as u64);
            k.push(&aligned[..n as usize], &mut |_| Ok(())).unwrap();
            k.finish()
        };
        assert_eq!(cut(100), Err(CompactError::Short { what: "headers" }));
        assert_eq!(
            cut(c.desc_offset - 1),
            Err(CompactError::Short { what: "bitmaps" })
        );
        assert!(matches!(cut(c.desc_end), Err(CompactError::Short { .. })));
        assert!(matches!(
            cut(aligned.len() as u64 - 1),
            Err(CompactError::Short { what: "page data" })
        ));
        // The length promised is the file's: a longer push is refused.
        let mut k = Compactor::new(MIB, 10);
        assert_eq!(k.push(&[0; 11], &mut |_| Ok(())), Err(CompactError::Long));
        // A file cut inside its padding (length given as the cut).
        assert_eq!(
            compact(&aligned[..c.desc_end as usize + 10], MIB).map(|_| ()),
            Err(CompactError::Short {
                what: "page descriptors and padding"
            })
        );
        // An ELF vmcore is not touched.
        let mut elf = vec![0u8; 8192];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert_eq!(
            compact(&elf, MIB).map(|_| ()),
            Err(CompactError::Header(ReadError::Signature))
        );
        // An output error stops the compaction.
        let mut k = Compactor::new(MIB, aligned.len() as u64);
        assert_eq!(
            k.push(&aligned, &mut |_| Err(SinkError::Full)),
            Err(CompactError::Output(SinkError::Full))
        );
    }

    /// Damage anywhere in the metadata gives an error or a file, never a panic.
    #[test]
    fn damaged_metadata_never_panics() {
        let aligned = written(Codec::Lzo, 64 << 10);
        let (_, c) = compact(&aligned, 64 << 10).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut errors = 0;
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = aligned.clone();
            // Header fields, bitmaps, descriptors and padding.
            let at = (x % c.data_start) as usize;
            b[at] ^= (x >> 32) as u8 | 1;
            errors += usize::from(compact(&b, 64 << 10).is_err());
        }
        assert!(errors > 100, "{errors}");
    }
}
