//! The boot data a loader hands over (zero page with e820 and setup_data; PVH start info), read
//! from fake physical memory holding the input at address 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rkdump_boot::info::BootInfo;
use rkdump_boot::mem::{PhysMem, PhysMemError};

struct Input<'a>(&'a [u8]);

impl PhysMem for Input<'_> {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let err = PhysMemError {
            addr: phys,
            len: buf.len() as u64,
        };
        let at = usize::try_from(phys).map_err(|_| err)?;
        let src = self
            .0
            .get(at..)
            .and_then(|r| r.get(..buf.len()))
            .ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = Input(data);
    let _ = BootInfo::from_zero_page(0, &mem);
    let _ = BootInfo::from_pvh(0, &mem);
});
