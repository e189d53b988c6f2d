//! The crashed kernel's ELF core header and notes, read from fake old memory holding the input at
//! physical address 0 (so program headers can point back into it), then the output layout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_vmcore::testing::FakeMemory;

fuzz_target!(|data: &[u8]| {
    let mut mem = FakeMemory::new();
    mem.insert(0, data.to_vec());
    if let Ok(plan) = rkdump_vmcore::prepare_dump(&mut mem, 0, None) {
        let _ = plan.layout.segments().count();
    }
    let _ = rkdump_vmcore::ElfCoreHeader::parse(data);
});
