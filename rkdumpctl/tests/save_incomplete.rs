//! `rkdumpctl save` on a record a power cut left Incomplete after a checkpoint: plain `save`
//! refuses and names what `--partial` would recover; `--partial` extracts exactly that prefix.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use rkdump_devices::label::{
    BlockXxh64, ChecksumKind, Label, RecordHeader, record_layout, xxh64_table,
};

const MIB: usize = 1 << 20;

/// A 16 MiB image: a record of a 6 MiB vmcore whose last checkpoint covered 2 MiB, with junk
/// after it (data written after the checkpoint, not covered by the table).
fn image(name: &str) -> (PathBuf, Vec<u8>) {
    let mut disk = vec![0u8; 16 * MIB];
    let label = Label::new(*b"save-incomplete!", disk.len() as u64, 0).unwrap();
    disk[..64].copy_from_slice(&label.to_bytes()[..64]);
    let layout = record_layout(&label, 6 * MIB as u64).unwrap();
    let mut h = RecordHeader::new(&label, &layout, 6 * MIB as u64, 0, [5; 16], b"6.1.0");
    h.flags = ChecksumKind::Full as u32;
    h.written = 2 * MIB as u64;
    let data: Vec<u8> = (0..3 * MIB).map(|i| (i * 7 + i / 4096) as u8).collect();
    let d = h.data_offset() as usize;
    disk[d..d + data.len()].copy_from_slice(&data);
    let sums: Vec<u64> = data[..2 * MIB]
        .chunks(MIB)
        .map(|b| BlockXxh64::of_block(ChecksumKind::Full, b))
        .collect();
    let t = h.table_offset as usize;
    let table = xxh64_table(&sums);
    disk[t..t + table.len()].copy_from_slice(&table);
    let hb = h.to_bytes();
    disk[label.data_offset as usize..][..hb.len()].copy_from_slice(&hb);
    let dir = common::scratch(&format!("save-incomplete-{name}"));
    let path = dir.join("disk.img");
    std::fs::write(&path, &disk).unwrap();
    (path, data[..2 * MIB].to_vec())
}

fn save(img: &Path, out: &Path, partial: bool) -> Output {
    let mut args = vec![
        OsStr::new("save"),
        img.as_os_str(),
        OsStr::new("-o"),
        out.as_os_str(),
    ];
    if partial {
        args.push(OsStr::new("--partial"));
    }
    common::rkdumpctl(args)
}

#[test]
fn plain_save_refuses_and_says_what_partial_would_recover() {
    let (img, _) = image("plain");
    let out = img.with_file_name("vmcore");
    let o = save(&img, &out, false);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--partial would recover 2097152 bytes"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn partial_save_recovers_the_checkpointed_prefix_verified() {
    let (img, want) = image("partial");
    let out = img.with_file_name("vmcore");
    let o = save(&img, &out, true);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("recovered 2097152 bytes up to the last checkpoint, every byte verified"),
        "{stdout}"
    );
    assert!(std::fs::read(&out).unwrap() == want);
}

#[test]
fn partial_save_refuses_a_corrupt_checkpointed_block() {
    let (img, _) = image("corrupt");
    let mut disk = std::fs::read(&img).unwrap();
    disk[(1 << 20) + 4096 + MIB + 5] ^= 0x40;
    std::fs::write(&img, &disk).unwrap();
    let o = save(&img, &img.with_file_name("vmcore"), true);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("block 1"), "{err}");
}
