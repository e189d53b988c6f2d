//! ATA IDENTIFY DEVICE data from an AHCI port (device-supplied).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rkdump_devices::ahci::DiskId::parse(data);
});
