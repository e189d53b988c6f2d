//! Serial stream version 2 (size known at the end, offsets in any order), fed by the kdump
//! writer: out-of-order reassembly, lost frames reported as holes, and the data CRC catching
//! a frame that is valid on its own but not the one sent.

extern crate std;

use alloc::vec;
use alloc::vec::Vec;

use super::stream::{decode, frames};
use super::{HDR_ADDR, kf_memory};
use crate::kdump::{self, Codec, read::KdumpFile, read::all_pages};
use crate::pages::KeepAll;
use crate::prepare_dump;
use crate::stream::{
    CRC32, FRAME_HEADER_SIZE, FrameEncoder, MAX_PAYLOAD, Problem, VERSION, VERSION_UNSIZED,
};

const RUN: [u8; 16] = *b"fedcba9876543210";

/// A kdump file written directly, and the same file sent as a version-2 stream; the stream's
/// `Data` frame offsets in the order sent.
fn sample() -> (Vec<u8>, Vec<u8>, Vec<u64>) {
    let (mut mem, _) = kf_memory(2, &[0, 1], &[(0x10_0000, 0x4_0000), (0x80_0000, 0x2_1000)]);
    // Some pages that do not compress to nothing.
    let noise: Vec<u8> = (0..0x8000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    mem.insert(0x10_8000, noise);
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let opts = kdump::Options {
        codec: Codec::Zlib,
        dump_level: 1,
        window_pages: 64,
        data_align: 1,
        ..Default::default()
    };
    let mut file = Vec::new();
    kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut file, &opts, &mut |_| {}).unwrap();
    let bound = kdump::max_file_size(&plan, &opts).unwrap();
    let mut enc = FrameEncoder::new(Vec::new());
    enc.begin_unsized(bound, RUN).unwrap();
    let stats =
        kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut enc, &opts, &mut |_| {}).unwrap();
    let info = enc.end().unwrap();
    assert_eq!(info.total_size, stats.size);
    assert_eq!(info.total_size, file.len() as u64);
    let stream = enc.into_inner();
    let offsets = frames(&stream)
        .iter()
        .filter(|&&(at, _)| stream[at + 5] == 2)
        .map(|&(at, _)| u64::from_le_bytes(stream[at + 12..at + 20].try_into().unwrap()))
        .collect();
    (file, stream, offsets)
}

/// Recomputes the frame CRC of the frame at `at..end` after an edit, so it passes as valid.
fn reseal(stream: &mut [u8], (at, end): (usize, usize)) {
    let mut d = CRC32.digest();
    d.update(&stream[at..at + 20]);
    d.update(&stream[at + FRAME_HEADER_SIZE..end]);
    let crc = d.finalize();
    stream[at + 20..at + 24].copy_from_slice(&crc.to_le_bytes());
}

fn without_frame(stream: &[u8], frame: (usize, usize)) -> Vec<u8> {
    let mut cut = stream[..frame.0].to_vec();
    cut.extend_from_slice(&stream[frame.1..]);
    cut
}

#[test]
fn out_of_order_frames_rebuild_the_kdump_file() {
    let (file, stream, offsets) = sample();
    // The data region goes out before the descriptors that precede it in the file.
    assert!(
        offsets.windows(2).any(|w| w[1] < w[0]),
        "the writer sent everything in file order: nothing out of order to reassemble"
    );
    assert!(
        frames(&stream)
            .iter()
            .all(|&(at, _)| stream[at + 4] == VERSION_UNSIZED)
    );
    for chunk in [1, 333, 1 << 20] {
        let (out, problems, _, re) = decode(&stream, chunk);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(out == file);
        assert_eq!(re.version(), Some(VERSION_UNSIZED));
        assert_eq!(re.total_size(), file.len() as u64);
        assert_eq!(re.payload_crc(), re.end().unwrap().file_crc);
    }
    // What came out is a kdump file whose pages read back.
    let parsed = KdumpFile::parse(&file).unwrap();
    assert!(!all_pages(&parsed).unwrap().is_empty());
}

#[test]
fn lost_frames_are_holes_at_their_offsets() {
    let (file, stream, _) = sample();
    let f = frames(&stream);
    // One frame from the middle, whatever region it carries, and the last data frame.
    let mid = f[f.len() / 2];
    let mid_offset = u64::from_le_bytes(stream[mid.0 + 12..mid.0 + 20].try_into().unwrap());
    let mid_len = (mid.1 - mid.0 - FRAME_HEADER_SIZE) as u64;
    let cut = without_frame(&stream, mid);
    let (_, problems, _, re) = decode(&cut, 4096);
    assert!(
        problems.contains(&Problem::Hole {
            start: mid_offset,
            end: mid_offset + mid_len
        }),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::SequenceGap { .. }))
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::FrameCountMismatch { .. }))
    );
    // A hole already says the data is incomplete: no CRC line on top of it.
    assert!(
        !problems
            .iter()
            .any(|p| matches!(p, Problem::CrcMismatch { .. }))
    );
    assert_eq!(re.total_size(), file.len() as u64);

    // Without `End` the size is where the data stopped, and the run says it is incomplete.
    let end = *f.last().unwrap();
    let (out, problems, _, re) = decode(&stream[..end.0], 4096);
    assert_eq!(problems, vec![Problem::MissingEnd]);
    assert_eq!(re.total_size(), re.received_end());
    assert!(out.len() as u64 <= file.len() as u64);
}

#[test]
fn a_valid_frame_with_other_bytes_fails_the_data_crc() {
    // Negative control for the whole-file check: a frame whose payload changed and whose own
    // CRC was recomputed passes every frame check and leaves no hole; only the End frame's
    // data CRC can tell. Expected failure: Problem::CrcMismatch.
    let (_, mut stream, _) = sample();
    let f = frames(&stream);
    stream[f[3].0 + FRAME_HEADER_SIZE] ^= 0x01;
    reseal(&mut stream, f[3]);
    let (_, problems, _, _) = decode(&stream, 4096);
    assert!(
        matches!(problems.as_slice(), [Problem::CrcMismatch { .. }]),
        "{problems:?}"
    );
}

#[test]
fn frames_of_the_other_version_are_not_written() {
    let (_, mut stream, _) = sample();
    let f = frames(&stream);
    stream[f[2].0 + 4] = VERSION;
    reseal(&mut stream, f[2]);
    let (_, problems, _, _) = decode(&stream, 4096);
    assert!(
        problems.iter().any(|p| matches!(
            p,
            Problem::VersionMismatch {
                seq: 2,
                run: 2,
                frame: 1
            }
        )),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| matches!(p, Problem::Hole { .. })));
}

#[test]
fn unsized_encoder_takes_any_offset_below_its_bound() {
    let mut enc = FrameEncoder::new(Vec::new());
    enc.begin_unsized(3 * MAX_PAYLOAD as u64, RUN).unwrap();
    enc.data(2 * MAX_PAYLOAD as u64, &[7; 100]).unwrap();
    enc.data(0, &[1; MAX_PAYLOAD]).unwrap();
    assert!(enc.data(3 * MAX_PAYLOAD as u64 - 1, &[0; 2]).is_err());
    let info = enc.end().unwrap();
    assert_eq!(info.total_size, 2 * MAX_PAYLOAD as u64 + 100);
    let (out, problems, _, _) = decode(&enc.into_inner(), 64);
    assert_eq!(
        problems,
        vec![Problem::Hole {
            start: MAX_PAYLOAD as u64,
            end: 2 * MAX_PAYLOAD as u64
        }]
    );
    assert_eq!(out[0], 1);
    assert_eq!(out[2 * MAX_PAYLOAD], 7);
    // The version-1 encoder still insists on file order.
    let mut v1 = FrameEncoder::new(Vec::new());
    v1.begin(2 * MAX_PAYLOAD as u64, RUN).unwrap();
    assert!(v1.data(MAX_PAYLOAD as u64, &[0; 10]).is_err());
}

#[test]
fn a_stream_cut_short_keeps_the_pages_whose_descriptors_went_out() {
    // What a power cut or reset mid-way leaves of a serial kdump dump: the header and both
    // bitmaps go out first, the page data as it is compressed, and the descriptors in batches
    // behind it (the writer's descriptor buffer). The receiver's partial file then reads back
    // every page up to the last batch of descriptors sent, in frame order.
    let (mut mem, _) = kf_memory(1, &[0], &[(0x200_0000, 0x180_0000)]);
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let opts = kdump::Options {
        codec: Codec::Lzo,
        dump_level: 0,
        window_pages: kdump::WINDOW_PAGES,
        data_align: 1,
        ..Default::default()
    };
    let mut file = Vec::new();
    let full =
        kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut file, &opts, &mut |_| {}).unwrap();
    let mut enc = FrameEncoder::new(Vec::new());
    enc.begin_unsized(kdump::max_file_size(&plan, &opts).unwrap(), RUN)
        .unwrap();
    kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut enc, &opts, &mut |_| {}).unwrap();
    enc.end().unwrap();
    let stream = enc.into_inner();
    let f = frames(&stream);
    let cut = f[f.len() * 9 / 10].0;
    let (out, problems, _, _) = decode(&stream[..cut], 1 << 16);
    assert!(problems.contains(&Problem::MissingEnd), "{problems:?}");
    let partial = KdumpFile::parse(&out).expect("header and bitmaps arrive first");
    let mut read = 0u64;
    let end = partial.for_each_page(&mut |_, _, page| {
        read += 1;
        assert_eq!(page.len(), 4096);
    });
    assert!(end.is_err(), "the last pages cannot be complete");
    assert!(
        read > 0 && read < full.pages,
        "{read} of {} pages read back",
        full.pages
    );
    // Those pages are the complete file's, byte for byte.
    let whole = all_pages(&KdumpFile::parse(&file).unwrap()).unwrap();
    let mut i = 0usize;
    let _ = partial.for_each_page(&mut |pfn, _, page| {
        assert_eq!((pfn, page), (whole[i].0, &whole[i].1[..]));
        i += 1;
    });
    std::println!(
        "cut at 90% of the frames: {read} of {} pages read back",
        full.pages
    );
}
