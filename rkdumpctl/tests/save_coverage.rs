//! `rkdumpctl save` against records damaged the way issue 12 describes: one byte flipped in
//! the middle of a page, 3 KiB zeroed inside a page. The record is laid out with the same
//! `rkdump_devices::label` code the capture kernel's writer uses, with the default checksum.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{rkdumpctl, text};

use rkdump_devices::label::{
    self, BlockXxh64, ChecksumKind, LBA_BYTES, Label, RecordHeader, xxh64_table,
};

/// vmcore bytes: 16 pages of a pattern without zero runs.
fn vmcore() -> Vec<u8> {
    (0..16 * 4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 1)
        .collect()
}

/// A dump disk image holding a Complete record of `data` with checksum `kind`; returns the
/// image and the disk offset of the first vmcore byte.
fn image(data: &[u8], kind: ChecksumKind) -> (Vec<u8>, usize) {
    let cap = 4 << 20;
    let lab = Label::new(*b"save-coverage-id", cap, 1_700_000_000).unwrap();
    let layout = label::record_layout(&lab, data.len() as u64).unwrap();
    let mut hdr = RecordHeader::new(&lab, &layout, data.len() as u64, 0, [4; 16], b"6.1.0-test");
    hdr.flags = kind as u32;
    let mut sums = BlockXxh64::new(layout.block_size, kind);
    sums.update(data);
    hdr.finish(data.len() as u64);
    let mut disk = vec![0u8; cap as usize];
    let put = |disk: &mut Vec<u8>, at: u64, b: &[u8]| {
        disk[at as usize..at as usize + b.len()].copy_from_slice(b)
    };
    put(&mut disk, 0, &lab.to_bytes());
    put(&mut disk, layout.header_lba * LBA_BYTES, &hdr.to_bytes());
    put(&mut disk, layout.data_lba * LBA_BYTES, data);
    put(
        &mut disk,
        layout.table_lba * LBA_BYTES,
        &xxh64_table(&sums.finish()),
    );
    (disk, (layout.data_lba * LBA_BYTES) as usize)
}

fn dir(name: &str) -> PathBuf {
    common::scratch(&format!("save-coverage-{name}"))
}

fn save(img: &Path, out: &Path) -> Output {
    rkdumpctl([
        OsStr::new("save"),
        img.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
}

/// Writes the image of `kind` damaged by `damage(disk, offset of page 5)` and runs `save`.
fn run(name: &str, kind: ChecksumKind, damage: fn(&mut [u8], usize)) -> (Output, PathBuf) {
    let d = dir(name);
    let (mut disk, data) = image(&vmcore(), kind);
    damage(&mut disk, data + 5 * 4096);
    let img = d.join("dump.img");
    std::fs::write(&img, &disk).unwrap();
    let out = d.join("vmcore");
    (save(&img, &out), out)
}

fn intact(_: &mut [u8], _: usize) {}

fn flip_mid_page(disk: &mut [u8], page: usize) {
    disk[page + 2048] ^= 0x01;
}

fn zero_3k_inside_page(disk: &mut [u8], page: usize) {
    disk[page + 512..page + 512 + 3072].fill(0);
}

fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

#[test]
fn the_default_record_is_verified_byte_for_byte() {
    let (o, out) = run("intact", ChecksumKind::default(), intact);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("coverage: every byte"),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read(out).unwrap(), vmcore());
    for (name, damage) in [
        ("flip", flip_mid_page as fn(&mut [u8], usize)),
        ("zero3k", zero_3k_inside_page),
    ] {
        let (o, _) = run(name, ChecksumKind::default(), damage);
        assert!(
            !o.status.success(),
            "{name}: a damaged default dump was accepted"
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("checksum"), "{name}: {err}");
    }
}

#[test]
fn sampled_accepts_damage_inside_a_page_and_says_what_it_checked() {
    for (name, damage) in [
        ("s-flip", flip_mid_page as fn(&mut [u8], usize)),
        ("s-zero3k", zero_3k_inside_page),
    ] {
        let (o, out) = run(name, ChecksumKind::Sampled, damage);
        assert!(o.status.success(), "{name}: {o:?}");
        assert!(
            stdout(&o).contains("coverage: 128 of 4096 bytes per page"),
            "{}",
            stdout(&o)
        );
        assert_ne!(std::fs::read(out).unwrap(), vmcore());
    }
    let (o, _) = run("none", ChecksumKind::None, flip_mid_page);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("coverage: none"), "{}", stdout(&o));
}
