//! Host tests of the dump pipeline with fake old memory.

extern crate std;

pub(crate) mod fuzz;
mod header;
mod layout;
mod notes;
mod progress;
mod stream;
mod stream_unsized;
mod writer;

use alloc::vec::Vec;

use crate::elf::Elf64_Phdr;
use crate::testing::{
    FakeMemory, VMCOREINFO_TEXT, cpu_note_buffer, header_blob, load_phdr, note_phdr,
    vmcoreinfo_buffer,
};

/// Where the fake elfcorehdr lives.
pub const HDR_ADDR: u64 = 0x2f00_0000;

/// A kexec_file_load-style old memory: `cpus` possible CPUs (those in `saved` have registers), a
/// VMCOREINFO note, a kernel-text load and the given RAM loads (start, size), all pattern-backed.
pub fn kf_memory(
    cpus: usize,
    saved: &[usize],
    ram: &[(u64, u64)],
) -> (FakeMemory, Vec<Elf64_Phdr>) {
    let mut mem = FakeMemory::new();
    let mut phdrs = Vec::new();
    for cpu in 0..cpus {
        let addr = 0x7e00_0000 + cpu as u64 * 0x1000;
        let regs = saved
            .contains(&cpu)
            .then_some((100 + cpu as i32, 0xffff_ffff_8100_0000 + cpu as u64));
        mem.insert(addr, cpu_note_buffer(regs));
        phdrs.push(note_phdr(addr, 368));
    }
    mem.insert(0x7f00_0000, vmcoreinfo_buffer(VMCOREINFO_TEXT, 4132));
    phdrs.push(note_phdr(0x7f00_0000, 4132));
    phdrs.push(load_phdr(
        0x0100_0000,
        0x0100_0000,
        0xffff_ffff_8100_0000,
        0x20_0000,
    ));
    mem.add_pattern(0x0100_0000, 0x0120_0000);
    for &(start, size) in ram {
        phdrs.push(load_phdr(start, start, 0xffff_8880_0000_0000 + start, size));
        mem.add_pattern(start & !0xfff, (start + size + 0xfff) & !0xfff);
    }
    mem.insert(HDR_ADDR, header_blob(&phdrs));
    (mem, phdrs)
}
