//! The `\_S5` package scanner over DSDT/SSDT AML.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|aml: &[u8]| {
    let _ = rkdump_devices::acpi_s5::find_s5(aml);
});
