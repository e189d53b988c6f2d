//! GPT and MBR partition tables: the input is a disk of 512-byte blocks (then the same bytes
//! as 4096-byte blocks). Never a panic; every partition returned lies inside the disk. When
//! byte 0 is odd the primary GPT's entry-array and header CRCs are recomputed first, so
//! mutations get past them to the checks behind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_devices::label::CRC32;
use rkdump_devices::target::partition::{GPT_HEADER_SIZE, read_table};

/// Seals the CRCs of the GPT header at byte `at` (block size `bs`), as a writer would.
fn seal(disk: &mut [u8], at: usize, bs: usize) {
    let Some(h) = disk.get(at..at + GPT_HEADER_SIZE) else {
        return;
    };
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let elba = u64::from_le_bytes(h[72..80].try_into().unwrap_or([0; 8]));
    let count = u32_at(80) as usize;
    let size = u32_at(84) as usize;
    let hsize = (u32_at(12) as usize).clamp(GPT_HEADER_SIZE, bs);
    let start = usize::try_from(elba).ok().and_then(|l| l.checked_mul(bs));
    let len = count.checked_mul(size).filter(|&n| n <= 1 << 20);
    if let (Some(s), Some(n)) = (start, len)
        && let Some(array) = disk.get(s..s.saturating_add(n))
    {
        let crc = CRC32.checksum(array);
        disk[at + 88..at + 92].copy_from_slice(&crc.to_le_bytes());
    }
    if let Some(hdr) = disk.get_mut(at..at + hsize) {
        hdr[16..20].fill(0);
        let crc = CRC32.checksum(hdr);
        hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

fuzz_target!(|input: &[u8]| {
    let mut disk = input.to_vec();
    for bs in [512usize, 4096] {
        if disk.first().is_some_and(|b| b & 1 == 1) {
            seal(&mut disk, bs, bs);
        }
        let blocks = (disk.len() / bs) as u64;
        let mut read = |lba: u64, buf: &mut [u8]| {
            let Some(at) = usize::try_from(lba).ok().and_then(|l| l.checked_mul(bs)) else {
                return false;
            };
            match disk.get(at..at.saturating_add(buf.len())) {
                Some(s) if s.len() == buf.len() => {
                    buf.copy_from_slice(s);
                    true
                }
                _ => false,
            }
        };
        if let Ok(t) = read_table(&mut read, bs as u32, blocks) {
            for p in &t.partitions {
                assert!(p.blocks > 0 && p.end_lba() <= blocks, "{p:?} outside {blocks}");
            }
        }
    }
});
