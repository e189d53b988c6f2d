//! `rkdumpctl save` of a kdump-compressed record (docs/dump-format.md#the-saved-file): the
//! file comes out without the record's 1 MiB alignment padding, byte for byte what the writer
//! makes unaligned; a file the compaction refuses comes out as the record holds it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{rkdumpctl, text};
use rkdump_devices::label::{
    self, BlockXxh64, ChecksumKind, DEFAULT_BLOCK_SIZE, LBA_BYTES, Label, RecordHeader, xxh64_table,
};
use rkdump_vmcore::kdump::{self, KdumpFile, read::all_pages};
use rkdump_vmcore::pages::KeepAll;
use rkdump_vmcore::prepare_dump;
use rkdump_vmcore::testing::{FakeMemory, crash_notes, header_blob, load_phdr};

const HDR: u64 = 0x2f00_0000;
const DM: u64 = 0xffff_8880_0000_0000;

fn old_memory() -> FakeMemory {
    let mut mem = FakeMemory::new();
    let cpus = [4000, 4001].map(|pid| Some((pid, 0xffff_ffff_8123_4560)));
    let mut phdrs = crash_notes(&mut mem, &cpus);
    phdrs.push(load_phdr(0x10_0000, 0x10_0000, DM + 0x10_0000, 0x40_0000));
    mem.add_pattern(0x10_0000, 0x50_0000);
    mem.insert(0x20_0000, vec![0; 8 * 4096]);
    mem.insert(HDR, header_blob(&phdrs));
    mem
}

/// The kdump file of the fake crash, its data start aligned to `data_align`.
fn kdump_file(data_align: u64) -> Vec<u8> {
    let mut mem = old_memory();
    let plan = prepare_dump(&mut mem, HDR, None).unwrap();
    let opts = kdump::Options {
        codec: kdump::Codec::Lzo,
        data_align,
        ..kdump::Options::default()
    };
    let mut file = Vec::new();
    kdump::write_kdump(&plan, &mut mem, &mut KeepAll, &mut file, &opts, &mut |_| {}).unwrap();
    file
}

/// A dump image holding a Complete record of `data`, laid out by `rkdump_devices::label` as the
/// capture kernel does (1 MiB checksum blocks, full XXH64).
fn image(name: &str, data: &[u8]) -> PathBuf {
    let cap = 16 << 20;
    let lab = Label::new(*b"save-kdump-test!", cap, 1_700_000_000).unwrap();
    let layout = label::record_layout(&lab, data.len() as u64).unwrap();
    assert_eq!(layout.block_size, DEFAULT_BLOCK_SIZE);
    let mut hdr = RecordHeader::new(&lab, &layout, data.len() as u64, 0, [4; 16], b"6.1.0-test");
    hdr.flags = ChecksumKind::Full as u32;
    let mut sums = BlockXxh64::new(layout.block_size, ChecksumKind::Full);
    sums.update(data);
    hdr.finish(data.len() as u64);
    let mut disk = vec![0u8; cap as usize];
    let mut put = |at: u64, b: &[u8]| disk[at as usize..at as usize + b.len()].copy_from_slice(b);
    put(0, &lab.to_bytes());
    put(layout.header_lba * LBA_BYTES, &hdr.to_bytes());
    put(layout.data_lba * LBA_BYTES, data);
    put(layout.table_lba * LBA_BYTES, &xxh64_table(&sums.finish()));
    let img = common::scratch(&format!("save-kdump-{name}")).join("dump.img");
    std::fs::write(&img, &disk).unwrap();
    img
}

fn save(img: &Path) -> (Output, Vec<u8>) {
    let out = img.with_file_name("vmcore");
    let o = rkdumpctl([
        "save".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    (o, std::fs::read(&out).unwrap())
}

#[test]
fn a_kdump_record_is_saved_without_its_padding() {
    let aligned = kdump_file(DEFAULT_BLOCK_SIZE.into());
    let plain = kdump_file(1);
    let gap = aligned.len() - plain.len();
    assert!(gap > 4096, "{gap}: the fixture must have padding");
    let (o, saved) = save(&image("compact", &aligned));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains(&format!(
            "kdump file: {gap} bytes of alignment padding before the page data left out ({} record bytes -> {} bytes)",
            aligned.len(),
            plain.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("coverage: every byte"), "{stdout}");
    assert!(saved == plain, "saved file is not the unaligned file");
    let pages = |b: &[u8]| all_pages(&KdumpFile::parse(b).unwrap()).unwrap();
    let (before, after) = (pages(&aligned), pages(&saved));
    assert!(before.len() > 1000 && before == after);
}

/// Negative control: a descriptor naming a byte of the padding (checksummed, so the record is
/// fine): the file is saved exactly as the record holds it, with a warning.
#[test]
fn a_kdump_file_the_compaction_refuses_is_saved_as_written() {
    let mut aligned = kdump_file(DEFAULT_BLOCK_SIZE.into());
    let desc = KdumpFile::parse(&aligned).unwrap().desc_offset() as usize;
    let padding = (DEFAULT_BLOCK_SIZE as i64) - 8;
    aligned[desc..desc + 8].copy_from_slice(&padding.to_le_bytes());
    let (o, saved) = save(&image("refused", &aligned));
    let err = text(&o.stderr);
    assert!(
        err.contains("kdump file saved as written, padding included: page descriptor 0"),
        "{err}"
    );
    assert!(!text(&o.stdout).contains("left out"));
    assert!(saved == aligned, "not the record's bytes");
}
