//! GPT and MBR partition tables: the input is a disk of 512-byte blocks (then the same bytes
//! as 4096-byte blocks). Never a panic; every partition returned lies inside the disk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_devices::target::partition::read_table;

fuzz_target!(|disk: &[u8]| {
    for bs in [512usize, 4096] {
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
