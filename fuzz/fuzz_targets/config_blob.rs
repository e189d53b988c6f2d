//! The device-configuration blob the first kernel hands over in the initrd slot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_devices::blob::Blob;

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = Blob::parse(data) {
        for rec in view.records() {
            let _ = rec.find_cap(0x10);
            let _ = rec.find_ext_cap(0x1);
            let _ = view.find(rec.bdf());
        }
    }
});
