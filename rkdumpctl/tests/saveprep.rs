//! `rkdumpctl save` and `prepare` never lose a dump (issue 12): images built with the
//! rkdump-devices label API (the code the capture kernel's writer uses), damaged on purpose,
//! and every refusal checked to leave the image byte for byte as it was.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{rkdumpctl, text};
use rkdump_devices::label::{
    self, BlockXxh64, ChecksumKind, FLAG_SAVED, LABEL_BYTES, Label, RecordHeader, record_layout,
    xxh64_table,
};

const MIB: u64 = 1 << 20;
const UUID: [u8; 16] = *b"saveprep-uuid-01";

/// vmcore stand-in: save does not parse it, only moves and verifies it.
fn vmcore(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 251) as u8).collect()
}

/// A disk image of `cap` bytes with a label and a finished record (Complete if `core` fits,
/// else Truncated), written as the capture kernel writes it.
fn image(cap: u64, core: &[u8]) -> Vec<u8> {
    image_with_label(Label::new(UUID, cap, 1_700_000_000).unwrap(), cap, core)
}

/// As [`image`], for a label that may claim another size than the `file_bytes` image has.
fn image_with_label(l: Label, file_bytes: u64, core: &[u8]) -> Vec<u8> {
    let mut disk = vec![0u8; file_bytes as usize];
    disk[..LABEL_BYTES].copy_from_slice(&l.to_bytes());
    let r = record_layout(&l, core.len() as u64).unwrap();
    let mut h = RecordHeader::new(&l, &r, core.len() as u64, 7, [5; 16], b"6.12.0-saveprep");
    h.flags = ChecksumKind::Full as u32;
    let w = r.writable_bytes as usize;
    let data_at = (r.data_lba * 512) as usize;
    disk[data_at..data_at + w].copy_from_slice(&core[..w]);
    let mut sums = BlockXxh64::new(r.block_size, ChecksumKind::Full);
    sums.update(&core[..w]);
    let t = xxh64_table(&sums.finish());
    let table_at = (r.table_lba * 512) as usize;
    disk[table_at..table_at + t.len()].copy_from_slice(&t);
    h.finish(w as u64);
    let hdr_at = l.data_offset as usize;
    disk[hdr_at..hdr_at + label::HEADER_BYTES].copy_from_slice(&h.to_bytes());
    disk
}

/// Rewrites `v` at `at` in the record header at 1 MiB and fixes its CRC-32.
fn patch_header(disk: &mut [u8], at: usize, v: &[u8]) {
    let h = MIB as usize;
    disk[h + at..h + at + v.len()].copy_from_slice(v);
    let c = label::CRC32.checksum(&disk[h..h + 0xAC]);
    disk[h + 0xAC..h + 0xB0].copy_from_slice(&c.to_le_bytes());
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("saveprep-{name}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts `o` failed with `want` in its error line.
#[track_caller]
fn refused(o: &Output, want: &str) {
    let err = text(&o.stderr);
    assert!(
        !o.status.success(),
        "expected a refusal; stdout {}",
        text(&o.stdout)
    );
    assert!(err.contains(want), "error does not say {want:?}: {err}");
}

/// Nothing of an output remains: neither the file nor its `.incomplete`.
#[track_caller]
fn no_output(out: &Path) {
    assert!(!out.exists(), "{} exists", out.display());
    let inc = PathBuf::from(format!("{}.incomplete", out.display()));
    assert!(!inc.exists(), "{} exists", inc.display());
}

#[test]
fn save_refuses_the_input_as_output() {
    let dir = scratch("same-file");
    let img = dir.join("dump.img");
    let before = image(16 * MIB, &vmcore(3 * MIB as usize));
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["save", s(&img), "-o", s(&img)]);
    refused(&o, "is the dump device or image itself");
    assert!(fs::read(&img).unwrap() == before, "image changed");

    // Through a hard link and through a symlink: the same inode.
    let hard = dir.join("hard");
    fs::hard_link(&img, &hard).unwrap();
    let sym = dir.join("sym");
    std::os::unix::fs::symlink(&img, &sym).unwrap();
    for other in [&hard, &sym] {
        let o = rkdumpctl(["save", s(&img), "-o", s(other)]);
        refused(&o, "is the dump device or image itself");
    }
    // The temporary name is checked too: `-o x` writes `x.incomplete` first.
    let inc = dir.join("x.incomplete");
    fs::hard_link(&img, &inc).unwrap();
    let o = rkdumpctl(["save", s(&img), "-o", s(&dir.join("x"))]);
    refused(&o, "x.incomplete is the dump device or image itself");
    assert!(fs::read(&img).unwrap() == before, "image changed");
    // Not a regular file.
    let o = rkdumpctl(["save", s(&img), "-o", s(&dir)]);
    refused(&o, "exists and is not a regular file");
    assert!(fs::read(&img).unwrap() == before, "image changed");
}

#[test]
fn save_writes_incomplete_then_renames_and_marks_saved() {
    let dir = scratch("ok");
    let img = dir.join("dump.img");
    let core = vmcore(3 * MIB as usize + 123);
    let before = image(16 * MIB, &core);
    fs::write(&img, &before).unwrap();
    let out = dir.join("vmcore");
    // An old output is replaced only once the new one is complete.
    fs::write(&out, b"old").unwrap();
    let o = rkdumpctl(["save", s(&img), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("record marked saved"));
    assert!(fs::read(&out).unwrap() == core);
    assert!(!dir.join("vmcore.incomplete").exists());
    // The only change on the image: flags (0x2C..0x30) and CRC (0xAC..0xB0) of the header.
    let after = fs::read(&img).unwrap();
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    let h = MIB as usize;
    assert!(!changed.is_empty());
    assert!(
        changed
            .iter()
            .all(|&i| (h + 0x2C..h + 0x30).contains(&i) || (h + 0xAC..h + 0xB0).contains(&i)),
        "{changed:x?}"
    );
    let l = Label::parse(&after).unwrap();
    let hdr = RecordHeader::parse(&l, &after[h..h + 4096]).unwrap();
    assert_eq!(hdr.flags & FLAG_SAVED, FLAG_SAVED);
    // Saving again still works (the record stays readable).
    let o = rkdumpctl(["save", s(&img), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(fs::read(&out).unwrap() == core);
}

#[test]
fn save_refuses_a_label_bigger_than_the_device() {
    let dir = scratch("big-label");
    let img = dir.join("dump.img");
    // A valid label (CRC right) claiming 1 TiB, on a 16 MiB file holding a good record.
    let l = Label::new(UUID, 1 << 40, 0).unwrap();
    let before = image_with_label(l, 16 * MIB, &vmcore(2 * MIB as usize));
    fs::write(&img, &before).unwrap();
    let out = dir.join("vmcore");
    let o = rkdumpctl(["save", s(&img), "-o", s(&out), "--partial"]);
    refused(&o, "device has 16777216 bytes, label claims 1099511627776");
    no_output(&out);
    assert!(fs::read(&img).unwrap() == before, "image changed");
    // Control: the same record under a label of the real size is saved.
    let good = image(16 * MIB, &vmcore(2 * MIB as usize));
    fs::write(&img, &good).unwrap();
    let o = rkdumpctl(["save", s(&img), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn save_refuses_a_checksum_table_past_the_disk() {
    let dir = scratch("big-table");
    let img = dir.join("dump.img");
    // 3832 blocks of 4 KiB: a table of 4-byte entries would fit the 16 MiB disk, the real
    // 8-byte one ends 4 KiB past it.
    let n: u64 = 3832;
    let mut before = image(16 * MIB, &vmcore(4096));
    patch_header(&mut before, 0x18, &(n * 4096).to_le_bytes());
    patch_header(&mut before, 0x20, &(n * 4096).to_le_bytes());
    patch_header(&mut before, 0x28, &4096u32.to_le_bytes());
    patch_header(&mut before, 0x30, &n.to_le_bytes());
    patch_header(&mut before, 0x38, &(MIB + 4096 + n * 4096).to_le_bytes());
    fs::write(&img, &before).unwrap();
    let out = dir.join("vmcore");
    let o = rkdumpctl(["save", s(&img), "-o", s(&out), "--partial"]);
    refused(&o, "table outside the disk");
    no_output(&out);
    assert!(fs::read(&img).unwrap() == before, "image changed");
}

#[test]
fn save_leaves_nothing_when_a_block_is_corrupt() {
    let dir = scratch("corrupt");
    let img = dir.join("dump.img");
    let mut before = image(16 * MIB, &vmcore(3 * MIB as usize));
    before[(MIB + 4096 + 2 * MIB + 5) as usize] ^= 1;
    fs::write(&img, &before).unwrap();
    let out = dir.join("vmcore");
    for partial in [false, true] {
        let mut args = vec!["save", s(&img), "-o", s(&out)];
        if partial {
            args.push("--partial");
        }
        let o = rkdumpctl(&args);
        refused(&o, "block 2 checksum");
        no_output(&out);
    }
    assert!(fs::read(&img).unwrap() == before, "image changed");
}

/// `save --partial` of a truncated record, with the output file size limited by
/// RLIMIT_FSIZE (SIGXFSZ ignored, so the write fails with EFBIG) after 512 KiB.
fn save_partial_limited(img: &Path, out: &Path, limit_kib: Option<u32>) -> Output {
    let limit = limit_kib.map_or("unlimited".into(), |k| (k * 2).to_string());
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {limit} && exec \"$0\" save \"$1\" -o \"$2\" --partial"
        ))
        .arg(env!("CARGO_BIN_EXE_rkdumpctl"))
        .arg(img)
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn save_partial_that_fails_midway_leaves_nothing() {
    let dir = scratch("partial-fails");
    let img = dir.join("dump.img");
    // 4 MiB disk, 10 MiB vmcore: a Truncated record of about 3 MiB.
    let core = vmcore(10 * MIB as usize);
    let before = image(4 * MIB, &core);
    fs::write(&img, &before).unwrap();
    let out = dir.join("vmcore");
    let o = save_partial_limited(&img, &out, Some(512));
    refused(&o, "File too large");
    no_output(&out);
    assert!(fs::read(&img).unwrap() == before, "image changed");
    // Control: without the limit the same command succeeds, so the limit made it fail.
    let o = save_partial_limited(&img, &out, None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let got = fs::read(&out).unwrap();
    assert!(got.len() > MIB as usize && core.starts_with(&got));
}

#[test]
fn prepare_refuses_an_unsaved_dump_until_it_is_saved() {
    let dir = scratch("unsaved");
    let img = dir.join("dump.img");
    let core = vmcore(2 * MIB as usize);
    let before = image(16 * MIB, &core);
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["prepare", s(&img)]);
    refused(
        &o,
        "a dump not yet saved (Complete, 2097152 of 2097152 bytes",
    );
    refused(&o, "nothing written");
    assert!(fs::read(&img).unwrap() == before, "image changed");
    // A dry run says the same and writes nothing either.
    let o = rkdumpctl(["prepare", s(&img), "--dry-run"]);
    refused(&o, "a dump not yet saved");
    assert!(fs::read(&img).unwrap() == before, "image changed");

    let out = dir.join("vmcore");
    let o = rkdumpctl(["save", s(&img), "-o", s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Saved: preparing again needs no --force, and writes only the label.
    let saved = fs::read(&img).unwrap();
    let o = rkdumpctl(["prepare", s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let after = fs::read(&img).unwrap();
    assert!(after[LABEL_BYTES..] == saved[LABEL_BYTES..]);
    assert_ne!(
        after[..LABEL_BYTES],
        saved[..LABEL_BYTES],
        "new label, new uuid"
    );
    // The old record now belongs to the previous label: that is what prepare protected.
    let o = rkdumpctl(["save", s(&img), "-o", s(&dir.join("again"))]);
    refused(&o, "record belongs to another label");
}

#[test]
fn prepare_force_overwrites_an_unsaved_dump() {
    let dir = scratch("force");
    let img = dir.join("dump.img");
    let before = image(16 * MIB, &vmcore(MIB as usize));
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["prepare", s(&img), "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--force: overwriting a dump not yet saved"));
    let after = fs::read(&img).unwrap();
    assert!(Label::parse(&after).is_ok());
    assert!(
        after[LABEL_BYTES..] == before[LABEL_BYTES..],
        "only the label changed"
    );
}

/// A 16 MiB image with `bytes` at `offset`.
fn foreign(sets: &[(usize, &[u8])]) -> Vec<u8> {
    let mut d = vec![0u8; 16 * MIB as usize];
    for (off, b) in sets {
        d[*off..*off + b.len()].copy_from_slice(b);
    }
    d
}

#[test]
fn prepare_refuses_partition_tables_and_signatures() {
    let dir = scratch("foreign");
    let img = dir.join("disk.img");
    let mut mbr = foreign(&[(510, &[0x55, 0xAA])]);
    mbr[446 + 4] = 0x83; // one Linux partition
    mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&4096u32.to_le_bytes());
    let mut gpt = foreign(&[(510, &[0x55, 0xAA]), (512, b"EFI PART")]);
    gpt[446 + 4] = 0xEE;
    let cases: [(&str, Vec<u8>, &str); 7] = [
        (
            "mbr",
            mbr,
            "an MBR partition table (1 partition(s), first of type 0x83)",
        ),
        ("gpt", gpt, "a GPT partition table"),
        (
            "ext4",
            foreign(&[(1080, &[0x53, 0xEF])]),
            "an ext2/3/4 file system signature",
        ),
        (
            "swap",
            foreign(&[(4086, b"SWAPSPACE2")]),
            "a Linux swap signature",
        ),
        (
            "luks",
            foreign(&[(0, b"LUKS\xba\xbe\x00\x02")]),
            "a LUKS encrypted volume signature",
        ),
        (
            "btrfs",
            foreign(&[(65600, b"_BHRfS_M")]),
            "a btrfs file system signature",
        ),
        (
            "lvm",
            foreign(&[(512, b"LABELONE")]),
            "an LVM2 physical volume signature",
        ),
    ];
    for (name, before, want) in cases {
        fs::write(&img, &before).unwrap();
        let o = rkdumpctl(["prepare", s(&img)]);
        refused(&o, want);
        assert!(fs::read(&img).unwrap() == before, "{name}: image changed");
        let o = rkdumpctl(["prepare", s(&img), "--dry-run"]);
        refused(&o, want);
        assert!(
            fs::read(&img).unwrap() == before,
            "{name}: image changed by --dry-run"
        );
    }
    // Control: a zeroed image is prepared without --force.
    fs::write(&img, vec![0u8; 16 * MIB as usize]).unwrap();
    let o = rkdumpctl(["prepare", s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // And re-preparing an rkdump disk with no dump needs no --force either.
    let o = rkdumpctl(["prepare", s(&img)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn prepare_force_writes_only_the_label_over_ext4() {
    let dir = scratch("force-ext4");
    let img = dir.join("disk.img");
    let before = foreign(&[(1080, &[0x53, 0xEF])]);
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["prepare", s(&img), "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("overwriting an ext2/3/4 file system signature"));
    let after = fs::read(&img).unwrap();
    let l = Label::parse(&after).unwrap();
    assert_eq!(l.capacity_bytes, 16 * MIB);
    assert!(after[LABEL_BYTES..] == before[LABEL_BYTES..]);
}

#[test]
fn prepare_dry_run_shows_the_label_and_writes_nothing() {
    let dir = scratch("dry-run");
    let img = dir.join("disk.img");
    let before = vec![0u8; 16 * MIB as usize];
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["prepare", s(&img), "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for want in [
        "dry run, nothing written (16777216 bytes)",
        "would write 4096 bytes at offset 0 (LBA 0-7)",
        "0x00 magic          RKDUMPLB",
        "0x20 capacity_bytes 16777216",
        "0x28 data_offset    0x100000",
        "0x3C crc32          0x",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    assert!(
        fs::read(&img).unwrap() == before,
        "image changed by --dry-run"
    );
    // --force --dry-run over a file system: warns, shows, still writes nothing.
    let ext4 = foreign(&[(1080, &[0x53, 0xEF])]);
    fs::write(&img, &ext4).unwrap();
    let o = rkdumpctl(["prepare", s(&img), "--dry-run", "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("dry run, nothing written"));
    assert!(
        fs::read(&img).unwrap() == ext4,
        "image changed by --dry-run --force"
    );
    // A read-only image can be dry-run (it is never opened for writing).
    let mut perm = fs::metadata(&img).unwrap().permissions();
    perm.set_readonly(true);
    fs::set_permissions(&img, perm).unwrap();
    let o = rkdumpctl(["prepare", s(&img), "--dry-run", "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn prepare_refuses_a_damaged_label_or_record() {
    let dir = scratch("damaged");
    let img = dir.join("dump.img");
    // A record header whose CRC no longer matches: a dump rkdumpctl cannot read, but still one.
    let mut before = image(16 * MIB, &vmcore(MIB as usize));
    before[(MIB + 0x20) as usize] ^= 1;
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["prepare", s(&img)]);
    refused(&o, "a damaged dump record (CRC mismatch");
    assert!(fs::read(&img).unwrap() == before, "image changed");
    // A label with the magic and a bad CRC.
    let mut before = image(16 * MIB, &vmcore(MIB as usize));
    before[0x10] ^= 0xff;
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["prepare", s(&img)]);
    refused(&o, "a damaged rkdump label (CRC mismatch");
    assert!(fs::read(&img).unwrap() == before, "image changed");
    // Unknown data in the first 4 KiB.
    let before = foreign(&[(100, b"hello")]);
    fs::write(&img, &before).unwrap();
    let o = rkdumpctl(["prepare", s(&img)]);
    refused(&o, "data in the first 4 KiB (no rkdump label)");
    assert!(fs::read(&img).unwrap() == before, "image changed");
}
