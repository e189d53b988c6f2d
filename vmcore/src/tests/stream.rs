//! Serial stream: round trip, corruption, loss, noise, encoder misuse.

use alloc::vec;
use alloc::vec::Vec;

use super::{HDR_ADDR, kf_memory};
use crate::mem::SinkError;
use crate::stream::{
    Action, CRC32, CorruptReason, Error, Event, FRAME_HEADER_SIZE, FrameEncoder, MAGIC,
    MAX_PAYLOAD, Problem, Reassembler, StreamDecoder,
};
use crate::{prepare_dump, write_vmcore};

const RUN: [u8; 16] = *b"0123456789abcdef";

/// A small vmcore and its encoded stream.
fn sample() -> (Vec<u8>, Vec<u8>) {
    let (mut mem, _) = kf_memory(2, &[0, 1], &[(0x10_0000, 0x3000)]);
    let plan = prepare_dump(&mut mem, HDR_ADDR, None).unwrap();
    let mut file = Vec::new();
    let mut buf = vec![0u8; 4096];
    write_vmcore(&plan.layout, &mut mem, &mut file, &mut buf, &mut |_, _| {}).unwrap();
    let mut enc = FrameEncoder::new(Vec::new());
    enc.begin(plan.layout.total_size, RUN).unwrap();
    write_vmcore(&plan.layout, &mut mem, &mut enc, &mut buf, &mut |_, _| {}).unwrap();
    let info = enc.end().unwrap();
    assert_eq!(info.file_crc, CRC32.checksum(&file));
    assert_eq!(info.data_frames as usize, file.len().div_ceil(MAX_PAYLOAD));
    (file, enc.into_inner())
}

/// Decodes `stream` fed in `chunk`-sized pieces; returns the rebuilt file, problems and events.
pub fn decode(stream: &[u8], chunk: usize) -> (Vec<u8>, Vec<Problem>, Vec<Event>, Reassembler) {
    let mut dec = StreamDecoder::new();
    let mut re = Reassembler::new();
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut drain = |dec: &mut StreamDecoder, out: &mut Vec<u8>| {
        while let Some(ev) = dec.next_event() {
            if re.handle(&ev, out).unwrap() == Action::Restart {
                out.clear();
            }
            events.push(ev);
        }
    };
    for piece in stream.chunks(chunk.max(1)) {
        dec.push(piece);
        drain(&mut dec, &mut out);
    }
    dec.finish();
    drain(&mut dec, &mut out);
    let problems = re.problems();
    (out, problems, events, re)
}

/// Byte ranges of the frames in a clean stream.
pub fn frames(stream: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let len = u16::from_le_bytes([stream[at + 6], stream[at + 7]]) as usize;
        v.push((at, at + FRAME_HEADER_SIZE + len));
        at += FRAME_HEADER_SIZE + len;
    }
    v
}

#[test]
fn round_trip_in_odd_chunks() {
    let (file, stream) = sample();
    for chunk in [1, 7, 4096, 1 << 20] {
        let (out, problems, events, re) = decode(&stream, chunk);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(out == file);
        assert_eq!(re.end().unwrap().file_crc, CRC32.checksum(&out));
        assert_eq!(re.run_id(), Some(RUN));
        assert!(matches!(events[0], Event::Begin { pos: 0, .. }));
    }
}

#[test]
fn flipped_byte_rejects_frame_and_leaves_a_hole() {
    let (_, mut stream) = sample();
    let f = frames(&stream);
    // Flip one payload byte of the third data frame (seq 3, file offset 0x2000).
    stream[f[3].0 + FRAME_HEADER_SIZE + 10] ^= 0x40;
    let (_, problems, events, _) = decode(&stream, 513);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Corrupt {
            reason: CorruptReason::CrcMismatch,
            claimed: Some(c),
            ..
        } if c.seq == 3 && c.offset == 0x2000
    )));
    assert!(problems.contains(&Problem::SequenceGap {
        expected: 3,
        got: 4
    }));
    assert!(problems.contains(&Problem::Hole {
        start: 0x2000,
        end: 0x3000
    }));
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::FrameCountMismatch { .. }))
    );
}

#[test]
fn missing_frame_is_detected() {
    let (_, stream) = sample();
    let f = frames(&stream);
    let mut cut = stream[..f[2].0].to_vec();
    cut.extend_from_slice(&stream[f[2].1..]);
    let (_, problems, _, _) = decode(&cut, 100);
    assert!(problems.contains(&Problem::SequenceGap {
        expected: 2,
        got: 3
    }));
    assert!(problems.contains(&Problem::Hole {
        start: 0x1000,
        end: 0x2000
    }));
}

#[test]
fn noise_around_the_stream_is_skipped() {
    let (file, stream) = sample();
    let mut noisy = b"rkdump: entered\r\n\xa5\xa5RK garbage \x00\xffRKZ".to_vec();
    let prefix = noisy.len();
    noisy.extend_from_slice(&stream);
    noisy.extend_from_slice(b"\xa5RKZtrailing junk after the end\n");
    let (out, problems, _, _) = decode(&noisy, 3);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(out == file);
    let mut dec = StreamDecoder::new();
    dec.push(&noisy[..prefix + stream.len()]);
    while dec.next_event().is_some() {}
    assert_eq!(dec.stats().skipped_bytes as usize, prefix);
    assert_eq!(dec.stats().corrupt_frames, 0);
}

#[test]
fn truncated_stream_misses_end() {
    let (_, stream) = sample();
    let (_, problems, events, _) = decode(&stream[..stream.len() - 5], 4096);
    assert!(problems.contains(&Problem::MissingEnd));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Corrupt {
            reason: CorruptReason::Truncated,
            ..
        }
    )));
}

#[test]
fn lost_begin_and_restarted_runs() {
    let (file, stream) = sample();
    let f = frames(&stream);
    let (_, problems, _, _) = decode(&stream[f[0].1..], 4096);
    assert_eq!(problems, [Problem::MissingBegin]);

    // A run cut short, then a complete run: the last Begin wins.
    let mut two = stream[..f[3].0].to_vec();
    two.extend_from_slice(&stream);
    let (out, problems, _, re) = decode(&two, 4096);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(re.restarts(), 1);
    assert!(out == file);
}

#[test]
fn magic_inside_payload_is_harmless() {
    let data: Vec<u8> = MAGIC.iter().copied().cycle().take(10_000).collect();
    let mut enc = FrameEncoder::new(Vec::new());
    enc.begin(data.len() as u64, RUN).unwrap();
    enc.data(0, &data[..5000]).unwrap();
    enc.data(5000, &data[5000..]).unwrap();
    enc.end().unwrap();
    let mut stream = enc.into_inner();
    // Damage the first data frame's header so the decoder must resync through magic-filled payload.
    stream[FRAME_HEADER_SIZE + 24 + 9] ^= 1;
    let (out, problems, _, _) = decode(&stream, 777);
    assert!(problems.contains(&Problem::Hole {
        start: 0,
        end: 4096
    }));
    assert!(out[4096..] == data[4096..]);
}

#[test]
fn encoder_misuse() {
    let mut enc = FrameEncoder::new(Vec::new());
    assert_eq!(enc.data(0, b"x"), Err(Error::BadState));
    assert_eq!(enc.end(), Err(Error::BadState));
    enc.begin(10, RUN).unwrap();
    assert_eq!(enc.begin(10, RUN), Err(Error::BadState));
    assert_eq!(
        enc.data(1, b"x"),
        Err(Error::NonSequential {
            expected: 0,
            got: 1
        })
    );
    assert_eq!(
        enc.data(0, &[0; 11]),
        Err(Error::BeyondTotal { total_size: 10 })
    );
    assert_eq!(
        crate::mem::DumpSink::write(&mut enc, &[0; 11]),
        Err(SinkError::Rejected)
    );
    enc.data(0, &[0; 4]).unwrap();
    assert_eq!(
        enc.end(),
        Err(Error::Incomplete {
            total_size: 10,
            written: 4
        })
    );
    enc.data(4, &[0; 6]).unwrap();
    enc.end().unwrap();
    assert_eq!(enc.data(10, b""), Err(Error::BadState));
}
