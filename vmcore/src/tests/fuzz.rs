//! Deterministic bounded fuzzing: mutate valid seeds with a fixed-seed PRNG and assert nothing panics and
//! invariants hold. Named `fuzz_*` so CI can select them.

use alloc::vec::Vec;

use super::{HDR_ADDR, kf_memory, stream::decode};
use crate::layout::Segment;
use crate::mem::{OldMemory, SinkError};
use crate::stream::{Action, CRC32, FrameEncoder, Reassembler, StreamDecoder, WriteAt};
use crate::testing::FakeMemory;
use crate::{ElfCoreHeader, prepare_dump};

const ITERATIONS: u32 = 20_000;

/// xorshift64*: tiny, deterministic.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Overwrites 1..=8 spots of `b` with random or boundary values of random width.
pub(crate) fn mutate(rng: &mut Rng, b: &mut [u8]) {
    if b.is_empty() {
        return;
    }
    for _ in 0..=rng.below(8) {
        let at = rng.below(b.len());
        let width = [1, 2, 4, 8][rng.below(4)].min(b.len() - at);
        let v: u64 = match rng.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << rng.below(64),
            3 => rng.next() & 0xfff,
            _ => rng.next(),
        };
        b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
    }
}

#[test]
fn fuzz_header_notes_layout() {
    let seeds = [
        kf_memory(4, &[0, 2], &[(0x10_0000, 0x8000), (0x20_0800, 0x100)]),
        kf_memory(1, &[0], &[]),
    ];
    let mut rng = Rng(0x5eed_0001);
    let mut accepted = 0u32;
    for i in 0..ITERATIONS {
        let (base, phdrs) = &seeds[i as usize % seeds.len()];
        let mut mem: FakeMemory = base.clone();
        // Mutate the header itself most of the time, otherwise one of the note buffers.
        let target = if rng.below(4) == 0 {
            phdrs.get(rng.below(5)).map_or(HDR_ADDR, |p| p.p_offset)
        } else {
            HDR_ADDR
        };
        if let Some(region) = mem.region_mut(target) {
            if rng.below(8) == 0 {
                let keep = rng.below(region.len());
                region.truncate(keep);
            }
            mutate(&mut rng, region);
        }
        let hint = (rng.below(4) == 0).then(|| rng.below(1024) as u64);
        let Ok(plan) = prepare_dump(&mut mem, HDR_ADDR, hint) else {
            continue;
        };
        accepted += 1;
        let l = &plan.layout;
        let mut at = 0u64;
        for seg in l.segments() {
            if let Segment::OldMem { file_offset, .. } = seg {
                assert_eq!(file_offset, at);
            }
            at += seg.len();
        }
        assert_eq!(at, l.total_size);
        assert_eq!(l.header_bytes.len() % 4096, 0);
        assert_eq!(l.note_bytes.len() % 4096, 0);
        // The output header is itself valid whenever its offsets fit.
        if l.total_size < crate::header::MAX_PHYS_ADDR {
            let out = ElfCoreHeader::parse(&l.header_bytes).unwrap();
            assert_eq!(usize::from(out.ehdr().e_phnum), l.summary.output_phnum);
        }
        let _ = crate::notes::Notes::parse_merged(plan.notes.bytes());
    }
    assert!(accepted > 100, "mutations too destructive: {accepted}");
}

/// Counts bytes instead of storing them (offsets in mutated frames can be anything).
struct Discard(u64);

impl WriteAt for Discard {
    fn write_at(&mut self, _offset: u64, data: &[u8]) -> Result<(), SinkError> {
        self.0 += data.len() as u64;
        Ok(())
    }
}

#[test]
fn fuzz_stream_decoder() {
    let file: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut enc = FrameEncoder::new(Vec::new());
    enc.begin(file.len() as u64, [7; 16]).unwrap();
    enc.data(0, &file).unwrap();
    enc.end().unwrap();
    let seed = enc.into_inner();

    let mut rng = Rng(0x5eed_0002);
    for _ in 0..ITERATIONS {
        let mut s = seed.clone();
        match rng.below(5) {
            0 => mutate(&mut rng, &mut s),
            1 => {
                let a = rng.below(s.len());
                let b = (a + rng.below(5000)).min(s.len());
                s.drain(a..b);
            }
            2 => {
                let a = rng.below(s.len());
                let b = (a + rng.below(5000)).min(s.len());
                let dup = s[a..b].to_vec();
                let at = rng.below(s.len());
                s.splice(at..at, dup);
            }
            3 => {
                let at = rng.below(s.len());
                let noise: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                s.splice(at..at, noise);
            }
            _ => {
                mutate(&mut rng, &mut s);
                s.truncate(rng.below(s.len()));
            }
        }
        // Fast path with bounded chunking through the real reassembler into a discarding sink.
        let mut dec = StreamDecoder::new();
        let mut re = Reassembler::new();
        let mut sink = Discard(0);
        let mut at = 0;
        while at < s.len() {
            let n = 1 + rng.below(3000);
            dec.push(&s[at..(at + n).min(s.len())]);
            at += n;
            while let Some(ev) = dec.next_event() {
                if re.handle(&ev, &mut sink).unwrap() == Action::Finished {
                    break;
                }
            }
        }
        dec.finish();
        while let Some(ev) = dec.next_event() {
            re.handle(&ev, &mut sink).unwrap();
        }
        let problems = re.problems();
        // Anything accepted as complete must be the original file.
        if problems.is_empty() {
            let (out, p2, _, _) = decode(&s, 4096);
            assert!(p2.is_empty());
            if re.end().map(|e| e.file_crc) == Some(CRC32.checksum(&out)) {
                assert!(
                    out == file,
                    "accepted a stream that decodes to different bytes"
                );
            }
        }
    }
}

#[test]
fn fuzz_fake_memory_sanity() {
    // The fuzz harness relies on the fake refusing unmapped reads rather than panicking.
    let mut m = FakeMemory::new();
    let mut b = [0u8; 16];
    assert!(m.read(u64::MAX - 4, &mut b).is_err());
}
