//! The kernel command line (rkdump's options and the Linux ones it honours).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rkdump_boot::cmdline::Options::from_bytes(data);
});
