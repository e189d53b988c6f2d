//! The file-target map after a config blob (`rkdumpctl load --file`). Never a panic; a map
//! accepted has runs inside its disk adding up to the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_devices::blob::filemap::FileMap;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(m) = FileMap::parse(bytes) {
        let blocks: u64 = m.runs.iter().map(|r| r.blocks).sum();
        assert_eq!(blocks * u64::from(m.block_size), m.file_bytes);
        assert!(m.runs.iter().all(|r| r.lba + r.blocks <= m.disk_blocks));
    }
    let _ = rkdump_devices::blob::filemap::find(bytes);
});
