//! Host tests of the config blob: round trips, every kind of damage, bounds, restore plans, and
//! a bounded deterministic mutation fuzzer that CI runs with the other unit tests.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::reinit::{PlanError, RestoreWrite, plan_restore};

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(0, bus, dev, func).unwrap()
}

fn put16(c: &mut [u8], off: usize, v: u16) {
    c[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(c: &mut [u8], off: usize, v: u32) {
    c[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// `(id, offset)` of each standard capability, as `pci::caps` walks the record.
fn cap_list(r: &Record<'_>) -> Vec<(u8, u16)> {
    r.capabilities().iter().map(|c| (c.id, c.offset)).collect()
}

/// `(id, version, offset)` of each extended capability.
fn ext_list(r: &Record<'_>) -> Vec<(u16, u8, u16)> {
    r.ext_capabilities()
        .iter()
        .map(|c| (c.id, c.version, c.offset))
        .collect()
}

fn get32(c: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(c[off..off + 4].try_into().unwrap())
}

/// A virtio-blk endpoint (1af4:1042, class 01 80 00) with MSI-X at 0x40, PCIe at 0x50 and, in
/// 4 KiB, AER at 0x100 then ACS at 0x148.
fn endpoint(len: usize) -> Vec<u8> {
    let mut c = vec![0u8; len];
    put16(&mut c, 0x00, 0x1af4);
    put16(&mut c, 0x02, 0x1042);
    put16(&mut c, 0x04, 0x0406); // MEM | BME | INTx disable
    put16(&mut c, 0x06, 0x0010 | 0xF900); // CAP_LIST + every W1C error bit
    c[0x08] = 0x01; // revision
    c[0x09] = 0x00;
    c[0x0A] = 0x80;
    c[0x0B] = 0x01;
    c[0x0C] = 0x10; // cache line
    c[0x0D] = 0x40; // latency
    c[0x0E] = 0x80; // type 0, multi-function
    put32(&mut c, 0x10, 0xfebc_1000); // BAR0
    put32(&mut c, 0x14, 0xc041); // BAR1 I/O
    put32(&mut c, 0x20, 0x0000_000c); // BAR4 64-bit prefetchable low
    put32(&mut c, 0x24, 0x0000_0080); // BAR5 upper
    put16(&mut c, 0x2C, 0x1af4);
    put16(&mut c, 0x2E, 0x0002);
    c[0x34] = 0x40;
    c[0x3C] = 0x0b; // INT line
    c[0x3D] = 0x01; // INT pin A
    if len > 64 {
        c[0x40] = 0x11; // MSI-X
        c[0x41] = 0x50;
        put16(&mut c, 0x42, 0x8003);
        c[0x50] = 0x10; // PCIe
        c[0x51] = 0x00;
        put16(&mut c, 0x52, 0x0002);
    }
    if len > 256 {
        put32(&mut c, 0x100, 0x0001 | 1 << 16 | 0x148 << 20); // AER v1 → 0x148
        put32(&mut c, 0x148, 0x000D | 1 << 16); // ACS v1, end
    }
    c
}

/// A PCIe root port (8086:29c0 class 06 04 00) with 32-bit I/O and 64-bit prefetchable windows.
fn bridge(len: usize) -> Vec<u8> {
    let mut c = vec![0u8; len];
    put16(&mut c, 0x00, 0x8086);
    put16(&mut c, 0x02, 0x29c0);
    put16(&mut c, 0x04, 0x0007);
    put16(&mut c, 0x06, 0x0010);
    c[0x0A] = 0x04;
    c[0x0B] = 0x06;
    c[0x0E] = 0x01;
    c[0x18] = 0x00; // primary
    c[0x19] = 0x01; // secondary
    c[0x1A] = 0x03; // subordinate
    c[0x1C] = 0x11; // I/O base 0x1000, 32-bit
    c[0x1D] = 0x21; // I/O limit 0x2fff
    put16(&mut c, 0x1E, 0xF900); // secondary status W1C bits
    put16(&mut c, 0x20, 0xfe80); // mem base 0xfe80_0000
    put16(&mut c, 0x22, 0xfe90); // mem limit 0xfe9f_ffff
    put16(&mut c, 0x24, 0x0001); // pref base, 64-bit
    put16(&mut c, 0x26, 0x0011); // pref limit
    put32(&mut c, 0x28, 0x0000_0008); // pref base upper
    put32(&mut c, 0x2C, 0x0000_0008); // pref limit upper
    put16(&mut c, 0x30, 0x0001); // I/O base upper → 0x1_1000
    put16(&mut c, 0x32, 0x0001);
    c[0x34] = 0x40;
    put16(&mut c, 0x3E, 0x0012); // bridge control: SERR, ISA... (bit 1, 4)
    if len > 64 {
        c[0x40] = 0x10;
        c[0x41] = 0x00;
    }
    c
}

fn writer() -> BlobWriter {
    BlobWriter::new("6.8.0-51-generic", *b"0123456789abcdef", 1_700_000_000)
}

/// Endpoint 256 B at 00:04.0, bridge 4 KiB at 00:1c.0, endpoint 4 KiB at 01:00.0 and
/// 64 B at 01:00.1, added out of order.
fn sample() -> Vec<u8> {
    let mut w = writer();
    w.add(bdf(1, 0, 1), &endpoint(64)).unwrap();
    w.add(bdf(0, 0x1c, 0), &bridge(4096)).unwrap();
    w.add(bdf(1, 0, 0), &endpoint(4096)).unwrap();
    w.add(bdf(0, 4, 0), &endpoint(256)).unwrap();
    w.finish()
}

/// Rewrites the CRC after a test edited the bytes.
fn fix_crc(b: &mut [u8]) {
    if b.len() >= HEADER_LEN {
        let crc = blob_crc(b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Re-serialises a parsed blob through the writer.
fn reserialise(v: &BlobView<'_>) -> Vec<u8> {
    let mut w = BlobWriter::new(v.release(), v.boot_id(), v.timestamp());
    for r in v.records() {
        w.add(r.bdf(), r.config()).unwrap();
    }
    w.finish()
}

#[test]
fn round_trip() {
    let bytes = sample();
    let v = Blob::parse(&bytes).unwrap();
    assert_eq!(v.version(), 1);
    assert_eq!(v.release(), "6.8.0-51-generic");
    assert_eq!(&v.boot_id(), b"0123456789abcdef");
    assert_eq!(v.timestamp(), 1_700_000_000);
    assert_eq!(v.len(), 4);
    assert_eq!(v.as_bytes(), &bytes[..]);
    assert_eq!(
        bytes.len(),
        HEADER_LEN + 4 * RECORD_HEADER_LEN + 256 + 4096 + 4096 + 64
    );
    let order: Vec<Bdf> = v.records().map(|r| r.bdf()).collect();
    assert_eq!(
        order,
        [bdf(0, 4, 0), bdf(0, 0x1c, 0), bdf(1, 0, 0), bdf(1, 0, 1)]
    );
    for r in v.records() {
        assert_eq!(
            (RECORD_HEADER_LEN + r.config().len()) % 4,
            0,
            "records stay 4-byte aligned"
        );
    }
    assert_eq!(reserialise(&v), bytes);

    let e = v.find(bdf(0, 4, 0)).unwrap();
    assert_eq!(e.config(), &endpoint(256)[..]);
    assert_eq!(
        (e.vendor(), e.device(), e.class()),
        (0x1af4, 0x1042, 0x018000)
    );
    assert!(e.matches(0x1af4, 0x1042, 0x018000));
    assert!(!e.matches(0x1af4, 0x1042, 0x018001));
    assert!(!e.matches(0x1af4, 0x1001, 0x018000));
    assert_eq!(e.revision(), 1);
    assert_eq!(e.header_type(), 0);
    assert!(e.is_multifunction());
    assert!(!e.is_bridge());
    assert_eq!(e.bridge(), None);
    assert_eq!(e.header_dword(4), Some(0xfebc_1000));
    assert_eq!(e.header_dword(16), None);
    assert_eq!(e.read16(0x42), Some(0x8003));
    assert_eq!(e.read16(0x43), None);
    assert_eq!(e.read32(0xFC), Some(0));
    assert_eq!(e.read32(0x100), None);
    assert_eq!(e.read8(0xFF), Some(0));
    assert_eq!(e.read8(0x100), None);
    assert_eq!(e.header(), &endpoint(256)[..64]);
    assert_eq!(cap_list(&e), [(0x11, 0x40), (0x10, 0x50)]);
    assert_eq!(e.find_cap(0x10), Some(0x50));
    assert_eq!(e.find_cap(0x05), None);
    assert_eq!(e.capability(0x11).unwrap().len(), 0x10);
    assert_eq!(e.capability(0x10).unwrap().len(), 0xB0);
    assert!(e.ext_capabilities().is_empty());

    let b = v.find(bdf(0, 0x1c, 0)).unwrap();
    assert!(b.is_bridge());
    assert_eq!(b.class(), 0x060400);
    let br = b.bridge().unwrap();
    assert_eq!((br.primary, br.secondary, br.subordinate), (0, 1, 3));
    assert_eq!(
        br.io,
        Window {
            base: 0x1_1000,
            limit: 0x1_2fff
        }
    );
    assert_eq!(
        br.mem,
        Window {
            base: 0xfe80_0000,
            limit: 0xfe9f_ffff
        }
    );
    assert_eq!(
        br.pref,
        Window {
            base: 0x8_0000_0000,
            limit: 0x8_001f_ffff
        }
    );
    assert!(br.io.is_open() && br.mem.is_open() && br.pref.is_open());
    assert_eq!(b.config().len(), 4096);

    let e4 = v.find(bdf(1, 0, 0)).unwrap();
    assert_eq!(ext_list(&e4), [(0x0001, 1, 0x100), (0x000D, 1, 0x148)]);
    assert_eq!(e4.find_ext_cap(0x000D), Some(0x148));
    assert_eq!(e4.ext_capability(0x0001).unwrap().len(), 0x48);
    assert_eq!(e4.ext_capability(0x000D).unwrap().len(), 4096 - 0x148);
    assert_eq!(e4.find_ext_cap(0x0010), None);

    let short = v.find(bdf(1, 0, 1)).unwrap();
    assert_eq!(short.config().len(), 64);
    assert!(short.capabilities().is_empty(), "caps lie beyond 64 bytes");
    assert_eq!(short.read32(0x40), None);

    assert!(v.find(bdf(0, 4, 1)).is_none());
    assert_eq!(
        v.find_matching(bdf(0, 4, 0), 0x1af4, 0x1042, 0x018000)
            .unwrap()
            .bdf(),
        bdf(0, 4, 0)
    );
    assert!(
        v.find_matching(bdf(0, 4, 0), 0x1af4, 0x1042, 0x010802)
            .is_none()
    );
    assert!(v.find(Bdf::new(1, 0, 4, 0).unwrap()).is_none());
    assert!(v.get(4).is_none());
}

#[test]
fn empty_blob_round_trips() {
    let bytes = writer().finish();
    assert_eq!(bytes.len(), HEADER_LEN);
    let v = Blob::parse(&bytes).unwrap();
    assert!(v.is_empty());
    assert_eq!(reserialise(&v), bytes);
}

#[test]
fn windows_16bit_io_32bit_pref_and_closed() {
    let mut c = bridge(256);
    c[0x1C] = 0xF0; // 16-bit I/O: upper halves ignored
    c[0x1D] = 0x00; // limit below base: closed
    put16(&mut c, 0x24, 0xfff0); // 32-bit prefetchable: upper dwords ignored
    put16(&mut c, 0x26, 0x0000);
    let mut w = writer();
    w.add(bdf(0, 1, 0), &c).unwrap();
    let bytes = w.finish();
    let v = Blob::parse(&bytes).unwrap();
    let br = v.get(0).unwrap().bridge().unwrap();
    assert_eq!(
        br.io,
        Window {
            base: 0xF000,
            limit: 0x0FFF
        }
    );
    assert!(!br.io.is_open());
    assert_eq!(
        br.pref,
        Window {
            base: 0xfff0_0000,
            limit: 0x000f_ffff
        }
    );
    assert!(!br.pref.is_open());
}

#[test]
fn every_byte_flip_is_rejected_with_the_right_error() {
    let good = sample();
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0xFF;
        let err = Blob::parse(&b).expect_err("a flipped byte must not parse");
        match i {
            0..8 => assert_eq!(err, BlobError::BadMagic, "byte {i}"),
            8..10 => assert!(
                matches!(err, BlobError::UnsupportedVersion { .. }),
                "byte {i}: {err:?}"
            ),
            10..12 => assert!(
                matches!(err, BlobError::BadHeaderLen { .. }),
                "byte {i}: {err:?}"
            ),
            12..16 => assert!(
                matches!(
                    err,
                    BlobError::TooLarge { .. }
                        | BlobError::Truncated { .. }
                        | BlobError::BadLength { .. }
                        | BlobError::BadCrc { .. }
                ),
                "byte {i}: {err:?}"
            ),
            16..20 => assert!(
                matches!(
                    err,
                    BlobError::TooManyRecords { .. } | BlobError::BadCrc { .. }
                ),
                "byte {i}: {err:?}"
            ),
            _ => assert!(matches!(err, BlobError::BadCrc { .. }), "byte {i}: {err:?}"),
        }
    }
}

#[test]
fn single_bit_flips_never_parse() {
    let good = sample();
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[i] ^= 1 << bit;
            assert!(Blob::parse(&b).is_err(), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn truncated_at_every_length() {
    let good = sample();
    for n in 0..good.len() {
        let err = Blob::parse(&good[..n]).unwrap_err();
        let need = if n < HEADER_LEN {
            HEADER_LEN
        } else {
            good.len()
        };
        assert_eq!(err, BlobError::Truncated { need, have: n }, "length {n}");
    }
}

#[test]
fn trailing_bytes_are_ignored() {
    let good = sample();
    let mut padded = good.clone();
    padded.resize(good.len().next_multiple_of(4096) + 4096, 0xAA);
    let v = Blob::parse(&padded).unwrap();
    assert_eq!(v.as_bytes(), &good[..]);
    assert_eq!(v.len(), 4);
}

#[test]
fn wrong_version_and_header_len() {
    let mut b = sample();
    b[8] = 2;
    assert_eq!(
        Blob::parse(&b).unwrap_err(),
        BlobError::UnsupportedVersion { found: 2 }
    );
    fix_crc(&mut b);
    assert_eq!(
        Blob::parse(&b).unwrap_err(),
        BlobError::UnsupportedVersion { found: 2 }
    );
    // A version is reported even when the rest of the header is missing.
    assert_eq!(
        Blob::parse(&b[..12]).unwrap_err(),
        BlobError::UnsupportedVersion { found: 2 }
    );
    let mut b = sample();
    b[10] = 0x40;
    fix_crc(&mut b);
    assert_eq!(
        Blob::parse(&b).unwrap_err(),
        BlobError::BadHeaderLen { found: 0x40 }
    );
    assert_eq!(Blob::parse(b"RKDXXXXX").unwrap_err(), BlobError::BadMagic);
    assert_eq!(Blob::parse(b"\x7fELF").unwrap_err(), BlobError::BadMagic);
    assert_eq!(
        Blob::parse(b"RKD").unwrap_err(),
        BlobError::Truncated {
            need: HEADER_LEN,
            have: 3
        }
    );
}

#[test]
fn oversized_lengths_and_counts() {
    let good = sample();
    let set = |off: usize, v: u32| {
        let mut b = good.clone();
        put32(&mut b, off, v);
        fix_crc(&mut b);
        Blob::parse(&b).unwrap_err()
    };
    assert_eq!(
        set(0x0C, MAX_BLOB_LEN as u32 + 1),
        BlobError::TooLarge {
            len: MAX_BLOB_LEN + 1
        }
    );
    assert_eq!(
        set(0x0C, u32::MAX),
        BlobError::TooLarge {
            len: u32::MAX as usize
        }
    );
    assert_eq!(
        set(0x0C, MAX_BLOB_LEN as u32),
        BlobError::Truncated {
            need: MAX_BLOB_LEN,
            have: good.len()
        }
    );
    assert_eq!(set(0x0C, 0x7F), BlobError::BadLength { total_len: 0x7F });
    assert_eq!(
        set(0x10, MAX_RECORDS as u32 + 1),
        BlobError::TooManyRecords { count: 4097 }
    );
    assert_eq!(
        set(0x10, u32::MAX),
        BlobError::TooManyRecords { count: u32::MAX }
    );
    // Count and records disagree.
    assert_eq!(
        set(0x10, 5),
        BlobError::BadRecord {
            index: 4,
            why: RecordProblem::PastEnd
        }
    );
    assert_eq!(
        set(0x10, 3),
        BlobError::BadLength {
            total_len: good.len() as u32
        }
    );
}

#[test]
fn max_records_accepted_one_more_refused() {
    let cfg = endpoint(64);
    let mut w = writer();
    for i in 0..MAX_RECORDS {
        let b = Bdf::new((i >> 8) as u16, i as u8, 0, 0).unwrap();
        w.add(b, &cfg).unwrap();
    }
    assert_eq!(
        w.add(Bdf::new(0xFFFF, 0, 0, 0).unwrap(), &cfg).unwrap_err(),
        BlobError::TooManyRecords { count: 4097 }
    );
    let bytes = w.finish();
    assert_eq!(bytes.len(), w.blob_len());
    let v = Blob::parse(&bytes).unwrap();
    assert_eq!(v.len(), MAX_RECORDS);
    for i in [0usize, 1, 255, 256, 4095] {
        let b = Bdf::new((i >> 8) as u16, i as u8, 0, 0).unwrap();
        assert_eq!(v.find(b).unwrap().bdf(), b);
    }
    assert!(v.find(Bdf::new(16, 0, 0, 0).unwrap()).is_none());
}

/// Byte offset of record `i` of [`sample`].
fn record_offset(b: &[u8], i: usize) -> usize {
    let mut pos = HEADER_LEN;
    for _ in 0..i {
        pos += get32(b, pos) as usize;
    }
    pos
}

/// Applies `edit` to a sample blob, fixes the CRC and returns the parse error.
fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> BlobError {
    let mut b = sample();
    edit(&mut b);
    let total = b.len() as u32;
    put32(&mut b, 0x0C, total);
    fix_crc(&mut b);
    Blob::parse(&b).unwrap_err()
}

fn rec_err(index: u32, why: RecordProblem) -> BlobError {
    BlobError::BadRecord { index, why }
}

#[test]
fn record_damage_is_typed() {
    // Record 1 is the 4 KiB bridge at 00:1c.0.
    let r1 = |b: &Vec<u8>| record_offset(b, 1);
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            put16(b, o + 0x0A, 128);
        }),
        rec_err(1, RecordProblem::BadCfgLen { cfg_len: 128 })
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            put16(b, o + 0x0A, 256);
        }),
        rec_err(1, RecordProblem::BadLength { rec_len: 56 + 4096 })
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            put32(b, o, 56 + 4095);
        }),
        rec_err(1, RecordProblem::BadLength { rec_len: 56 + 4095 })
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 7] = 32;
        }),
        rec_err(1, RecordProblem::BadAddress)
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 8] = 8;
        }),
        rec_err(1, RecordProblem::BadAddress)
    );
    // 00:1c.0 → 00:04.0 duplicates record 0; → 00:03.0 is out of order.
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 7] = 4;
        }),
        rec_err(1, RecordProblem::OutOfOrder)
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 7] = 3;
        }),
        rec_err(1, RecordProblem::OutOfOrder)
    );
    // Summary fields vs config bytes, each way round.
    let mismatch = |field| rec_err(1, RecordProblem::Mismatch { field });
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 0x0C] ^= 1;
        }),
        mismatch("vendor ID")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + RECORD_HEADER_LEN + 2] ^= 1;
        }),
        mismatch("device ID")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + RECORD_HEADER_LEN + 0x09] = 1;
        }),
        mismatch("class code")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 0x09] = 0x81;
        }),
        mismatch("header type")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 0x13] = 3;
        }),
        mismatch("flags")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + RECORD_HEADER_LEN + 0x1A] = 9;
        }),
        mismatch("bus numbers")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + 0x17] = 1;
        }),
        mismatch("reserved byte")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + RECORD_HEADER_LEN + 0x30] = 9;
        }),
        mismatch("I/O or memory window")
    );
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + RECORD_HEADER_LEN + 0x2C] = 9;
        }),
        mismatch("prefetchable window")
    );
    // A bridge turned endpoint must have its bridge fields cleared.
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            b[o + RECORD_HEADER_LEN + 0x0E] = 0;
            b[o + 0x09] = 0;
        }),
        mismatch("flags")
    );
    // Vendor all-ones in both places: absent function.
    assert_eq!(
        edited(|b| {
            let o = r1(b);
            put16(b, o + 0x0C, 0xFFFF);
            put16(b, o + RECORD_HEADER_LEN, 0xFFFF);
        }),
        rec_err(1, RecordProblem::Absent)
    );
    // Extra bytes inside total_len after the last record.
    assert_eq!(
        edited(|b| b.extend_from_slice(&[0; 4])),
        BlobError::BadLength {
            total_len: sample().len() as u32 + 4
        }
    );
    // Last record cut short, total_len updated to match.
    assert_eq!(
        edited(|b| b.truncate(b.len() - 4)),
        rec_err(3, RecordProblem::PastEnd)
    );
}

#[test]
fn header_field_damage_is_typed() {
    assert_eq!(edited(|b| b[0x71] = 1), BlobError::ReservedNonZero);
    assert_eq!(edited(|b| b[0x7F] = 1), BlobError::ReservedNonZero);
    // Release: no NUL at all, junk after the NUL, invalid UTF-8.
    assert_eq!(edited(|b| b[0x30..0x71].fill(b'x')), BlobError::BadRelease);
    assert_eq!(edited(|b| b[0x50] = b'x'), BlobError::BadRelease);
    assert_eq!(edited(|b| b[0x30] = 0xFF), BlobError::BadRelease);
}

#[test]
fn writer_refuses_bad_records() {
    let mut w = writer();
    assert_eq!(
        w.add(bdf(0, 1, 0), &[0u8; 128]).unwrap_err(),
        rec_err(0, RecordProblem::BadCfgLen { cfg_len: 128 })
    );
    assert_eq!(
        w.add(bdf(0, 1, 0), &vec![0xFF; 256]).unwrap_err(),
        rec_err(0, RecordProblem::Absent)
    );
    assert_eq!(
        w.add(bdf(0, 1, 0), &[0; 64]).unwrap_err(),
        rec_err(0, RecordProblem::Absent)
    );
    let bad = Bdf {
        segment: 0,
        bus: 0,
        dev: 32,
        func: 0,
    };
    assert_eq!(
        w.add(bad, &endpoint(256)).unwrap_err(),
        rec_err(0, RecordProblem::BadAddress)
    );
    w.add(bdf(0, 1, 0), &endpoint(256)).unwrap();
    assert_eq!(
        w.add(bdf(0, 1, 0), &endpoint(4096)).unwrap_err(),
        rec_err(1, RecordProblem::OutOfOrder)
    );
    assert_eq!(w.len(), 1);
    assert!(Blob::parse(&w.finish()).is_ok());
}

#[test]
fn release_is_cut_to_the_field() {
    let long: String = core::iter::repeat_n('a', 63).chain(['é', 'z']).collect();
    let b = BlobWriter::new(&long, [0; 16], 0).finish();
    let v = Blob::parse(&b).unwrap();
    assert_eq!(v.release(), &long[..63], "cut before the 2-byte char");
    let b = BlobWriter::new("6.1.0\0junk", [0; 16], 0).finish();
    assert_eq!(Blob::parse(&b).unwrap().release(), "6.1.0");
    let exact: String = core::iter::repeat_n('r', 64).collect();
    let b = BlobWriter::new(&exact, [0; 16], 0).finish();
    assert_eq!(Blob::parse(&b).unwrap().release(), exact);
}

#[test]
fn error_messages_name_the_problem() {
    use alloc::string::ToString;
    let e = rec_err(2, RecordProblem::Mismatch { field: "vendor ID" });
    assert_eq!(
        e.to_string(),
        "config blob record 2: vendor ID disagrees with the config bytes"
    );
    assert!(
        BlobError::BadCrc {
            stored: 1,
            computed: 2
        }
        .to_string()
        .contains("0x00000001")
    );
}

#[test]
fn capability_walks_survive_loops_and_bad_pointers() {
    let mut c = endpoint(4096);
    c[0x51] = 0x40; // PCIe → MSI-X → PCIe ...
    put32(&mut c, 0x148, 0x000D | 1 << 16 | 0x100 << 20); // ACS → AER loop
    let mut w = writer();
    w.add(bdf(0, 1, 0), &c).unwrap();
    let mut c2 = endpoint(256);
    c2[0x41] = 0xFE; // pointer past the end → masked to 0xFC, cap would need 0xFC..0xFE ok
    c2[0xFC] = 0x05;
    c2[0xFD] = 0x08; // points below 0x40: stop
    w.add(bdf(0, 2, 0), &c2).unwrap();
    let mut c3 = endpoint(256);
    put16(&mut c3, 0x06, 0); // no CAP_LIST
    w.add(bdf(0, 3, 0), &c3).unwrap();
    let bytes = w.finish();
    let v = Blob::parse(&bytes).unwrap();
    let r = v.get(0).unwrap();
    assert_eq!(cap_list(&r), [(0x11, 0x40), (0x10, 0x50)]);
    assert_eq!(r.ext_capabilities().len(), 2);
    assert_eq!(r.ext_capability(0x0D).unwrap().len(), 4096 - 0x148);
    let r2 = v.get(1).unwrap();
    assert_eq!(cap_list(&r2), [(0x11, 0x40), (0x05, 0xFC)]);
    assert_eq!(r2.capability(0x05).unwrap().len(), 4);
    assert!(v.get(2).unwrap().capabilities().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The one restore planner (reinit::restore) fed by a blob record

fn plan_for(saved: &[u8], current: &[u8]) -> Result<Vec<RestoreWrite>, PlanError> {
    let mut w = writer();
    w.add(bdf(0, 1, 0), saved).unwrap();
    let bytes = w.finish();
    let v = Blob::parse(&bytes).unwrap();
    plan_restore(&v.get(0).unwrap().view(), &SavedView::new(current), None)
}

fn wr(off: u16, width: u8, value: u32, retries: u8) -> RestoreWrite {
    RestoreWrite {
        off,
        width,
        value,
        retries,
    }
}

/// What a function looks like after FLR in QEMU: IDs kept, BARs, COMMAND, INT line zero.
fn after_flr(saved: &[u8]) -> Vec<u8> {
    let mut c = saved[..64].to_vec();
    for off in (0x10..0x28).step_by(4) {
        put32(&mut c, off, 0);
    }
    put16(&mut c, 0x04, 0);
    c[0x0C] = 0;
    c[0x0D] = 0;
    c[0x3C] = 0;
    put16(&mut c, 0x06, 0x0010);
    c
}

#[test]
fn restore_plan_type0_linux_order_and_widths() {
    let saved = endpoint(256);
    let plan = plan_for(&saved, &after_flr(&saved)).unwrap();
    assert_eq!(
        plan,
        [
            // dwords 15..10: only the INT line dword differs.
            wr(0x3C, 4, 0x0000_010b, 0),
            // BARs 9..4 descending, each with Linux's 10 retries; BAR2/3 equal (zero).
            wr(0x24, 4, 0x0000_0080, 10),
            wr(0x20, 4, 0x0000_000c, 10),
            wr(0x14, 4, 0x0000_c041, 10),
            wr(0x10, 4, 0xfebc_1000, 10),
            // dwords 3..0: CLS/latency as 16 bits, COMMAND last as 16 bits.
            wr(0x0C, 2, 0x4010, 0),
            wr(0x04, 2, 0x0406, 0),
        ]
    );
    for w in &plan {
        assert!(
            !(w.off <= 0x06 && 0x06 < w.off + u16::from(w.width)),
            "{w:?} touches Status"
        );
        assert_eq!(w.off % u16::from(w.width), 0);
    }
}

#[test]
fn restore_plan_only_writes_what_differs() {
    let saved = endpoint(256);
    assert!(plan_for(&saved, &saved).unwrap().is_empty());
    // Status bits differing alone never produce a write.
    let mut cur = saved.clone();
    put16(&mut cur, 0x06, 0x0010);
    cur[0x0F] = 0x80; // BIST
    assert!(plan_for(&saved, &cur).unwrap().is_empty());
    // COMMAND only.
    let mut cur = saved.clone();
    put16(&mut cur, 0x04, 0x0400);
    assert_eq!(plan_for(&saved, &cur).unwrap(), [wr(0x04, 2, 0x0406, 0)]);
}

#[test]
fn restore_plan_refuses_another_device() {
    let saved = endpoint(256);
    let mut cur = after_flr(&saved);
    put16(&mut cur, 0x02, 0x1001);
    assert_eq!(plan_for(&saved, &cur), Err(PlanError::IdMismatch));
    assert_eq!(plan_for(&saved, &[0xFF; 64]), Err(PlanError::IdMismatch));
}

#[test]
fn restore_plan_type1_forces_prefetch_and_spares_w1c() {
    let saved = bridge(256);
    // Equal headers: exactly the three forced prefetchable-window dwords, 11 down to 9.
    let plan = plan_for(&saved, &saved).unwrap();
    assert_eq!(
        plan,
        [
            wr(0x2C, 4, 0x0000_0008, 0),
            wr(0x28, 4, 0x0000_0008, 0),
            wr(0x24, 4, 0x0011_0001, 0),
        ]
    );
    // After a secondary bus reset everything is zero (Linux restores the bridge top-down).
    let mut cur = vec![0u8; 64];
    cur[..4].copy_from_slice(&saved[..4]);
    cur[0x0E] = saved[0x0E]; // header type is read-only: a reset keeps it
    put16(&mut cur, 0x1E, 0x0000);
    let mut saved = saved;
    put16(&mut saved, 0x3E, 0x0452); // + SBR (bit 6) + discard timer status (bit 10)
    c_int_line(&mut saved);
    let plan = plan_for(&saved, &cur).unwrap();
    assert_eq!(
        plan,
        [
            wr(0x3C, 4, 0x0012_010a, 0), // SBR and W1C discard status cleared
            wr(0x34, 4, 0x0000_0040, 0),
            wr(0x30, 4, 0x0001_0001, 0),
            wr(0x2C, 4, 0x0000_0008, 0),
            wr(0x28, 4, 0x0000_0008, 0),
            wr(0x24, 4, 0x0011_0001, 0),
            wr(0x20, 4, 0xfe90_fe80, 0),
            wr(0x1C, 2, 0x2111, 0), // I/O base/limit only: secondary status is W1C
            wr(0x18, 4, 0x0003_0100, 0),
            wr(0x04, 2, 0x0007, 0),
        ]
    );
}

fn c_int_line(c: &mut [u8]) {
    c[0x3C] = 0x0a;
    c[0x3D] = 0x01;
}

/// CardBus and unknown header types are refused, not planned (the planner restores types 0
/// and 1 only; CardBus has no address register the firmware step restores).
#[test]
fn restore_plan_refuses_cardbus_and_unknown_types() {
    let mut saved = endpoint(256);
    saved[0x0E] = 0x02;
    put32(&mut saved, 0x10, 0x1234_5000); // socket base
    put32(&mut saved, 0x14, 0xF900_0080); // cap ptr + W1C secondary status
    let mut cur = saved[..64].to_vec();
    put32(&mut cur, 0x10, 0);
    put16(&mut cur, 0x04, 0);
    assert_eq!(plan_for(&saved, &cur), Err(PlanError::Unsupported(2)));
    saved[0x0E] = 0x7F;
    let mut cur = saved[..64].to_vec();
    put16(&mut cur, 0x04, 0);
    assert_eq!(plan_for(&saved, &cur), Err(PlanError::Unsupported(0x7F)));
    // A record whose type differs from the live function's.
    let mut cur = saved[..64].to_vec();
    cur[0x0E] = 0x00;
    saved[0x0E] = 0x80;
    assert_eq!(plan_for(&saved, &cur), Ok(Vec::new()));
    cur[0x0E] = 0x01;
    assert_eq!(plan_for(&saved, &cur), Err(PlanError::TypeMismatch));
}

// ---------------------------------------------------------------------------------------------
// Fuzzing

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Seeds: the sample, an empty blob, a bridge-only blob, and one of 64-byte records.
fn seeds() -> Vec<Vec<u8>> {
    let mut b = writer();
    b.add(bdf(0, 1, 0), &bridge(256)).unwrap();
    let mut s = writer();
    for d in 0..8 {
        s.add(bdf(2, d, 0), &endpoint(64)).unwrap();
    }
    vec![sample(), writer().finish(), b.finish(), s.finish()]
}

/// Mutates `b` in one of several ways that reach past the CRC.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(9) {
            0 | 1 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            2 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x = rng.next() as u8;
                }
            }
            3 => {
                // A length-ish field of the header or of some record gets a random or edge value.
                let offs = [0x08usize, 0x0A, 0x0C, 0x10];
                let mut o = offs[rng.below(offs.len())];
                if rng.below(2) == 0 && b.len() > HEADER_LEN {
                    o = HEADER_LEN + rng.below(b.len() - HEADER_LEN) / 4 * 4;
                }
                let vals = [0u32, 1, 56, 64, 120, 0xFFFF, u32::MAX, rng.next() as u32];
                let v = vals[rng.below(vals.len())];
                if o + 4 <= b.len() {
                    put32(b, o, v);
                }
            }
            4 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            5 => {
                let extra = rng.below(300);
                for _ in 0..extra {
                    b.push(rng.next() as u8);
                }
            }
            6 => {
                // Copy a chunk over another place (duplicates records, headers).
                if !b.is_empty() {
                    let from = rng.below(b.len());
                    let to = rng.below(b.len());
                    let n = rng.below(200).min(b.len() - from).min(b.len() - to);
                    let chunk = b[from..from + n].to_vec();
                    b[to..to + n].copy_from_slice(&chunk);
                }
            }
            7 => {
                // Keep total_len in step with the buffer so records get parsed.
                let n = b.len() as u32;
                if b.len() >= 0x10 {
                    put32(b, 0x0C, n);
                }
            }
            _ => {
                let i = rng.below(b.len() + 1);
                let n = rng.below(64);
                b.splice(i..i, (0..n).map(|_| rng.next() as u8));
            }
        }
    }
}

/// Bounded deterministic fuzzing of `Blob::parse`: mutated valid blobs, CRC fixed up in most
/// cases so record validation is reached. Asserts no panic, that every accessor and the restore
/// plan of an accepted blob are total, and that accepted blobs re-serialise byte for byte.
#[test]
fn fuzz_blob_parse() {
    const ITERATIONS: usize = 20_000;
    let seeds = seeds();
    let mut rng = Rng(0x5eed_b10b_c0ff_ee00);
    let mut accepted = 0usize;
    let mut record_errors = 0usize;
    for _ in 0..ITERATIONS {
        let mut b = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut b);
        if rng.below(8) != 0 {
            fix_crc(&mut b);
        }
        match Blob::parse(&b) {
            Ok(v) => {
                accepted += 1;
                assert_eq!(reserialise(&v), v.as_bytes());
                let cur: [u8; 64] = core::array::from_fn(|_| rng.next() as u8);
                for r in v.records() {
                    assert_eq!(v.find(r.bdf()).unwrap().bdf(), r.bdf());
                    let _ = (r.bridge(), r.capabilities(), r.ext_capabilities());
                    let _ = (r.capability(0x10), r.ext_capability(1), r.revision());
                    let _ = (r.header_dword(15), r.read32(0xFFC), r.read16(0xFFE));
                    let plan = |cur: &[u8]| {
                        plan_restore(&r.view(), &SavedView::new(cur), None).unwrap_or_default()
                    };
                    for w in plan(&cur).iter().chain(&plan(r.header())) {
                        assert!(matches!(w.width, 2 | 4) && w.off % u16::from(w.width) == 0);
                        assert!(w.off != 0x06 && !(w.off == 0x04 && w.width == 4));
                    }
                }
            }
            Err(BlobError::BadRecord { .. }) => record_errors += 1,
            Err(_) => {}
        }
    }
    // The mutator must reach both outcomes, or the test proves nothing.
    assert!(accepted > 100, "only {accepted} mutated blobs parsed");
    assert!(record_errors > 100, "only {record_errors} reached records");
}

// ---------------------------------------------------------------------------------------------
// Real data

/// A blob `rkdumpctl snapshot` wrote on a real guest (testdata/README.md): parses, finds the
/// virtio-blk function, and the writer reproduces it byte for byte (the format is stable).
#[test]
fn real_snapshot_parses_and_reserialises() {
    let bytes = include_bytes!("testdata/fc-6.18-root.blob");
    let v = Blob::parse(bytes).unwrap();
    assert_eq!(v.release(), "6.18.44-fc-v595");
    assert_eq!(v.len(), 6);
    let blk = v.find(bdf(0, 2, 0)).unwrap();
    assert!(blk.matches(0x1af4, 0x1042, 0x018000));
    assert_eq!(blk.config().len(), 256);
    assert!(blk.find_cap(0x11).is_some(), "virtio-pci has MSI-X");
    assert!(blk.find_cap(0x09).is_some(), "virtio-pci has vendor caps");
    let host = v.get(0).unwrap();
    assert_eq!((host.vendor(), host.config().len()), (0x8086, 4096));
    assert_eq!(reserialise(&v), &bytes[..]);
    let cur = *blk.header();
    assert_eq!(
        plan_restore(&blk.view(), &SavedView::new(&cur), None),
        Ok(Vec::new())
    );
}
