//! Test support (feature `testing`): a sparse fake old memory and builders for elfcorehdr blobs and note
//! buffers shaped like the ones kexec-tools (KL) and `kexec_file_load` (KF) produce.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use zerocopy::IntoBytes;

use crate::elf::{
    EHDR_SIZE, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_X86_64, ET_CORE, EV_CURRENT, Elf64_Ehdr,
    Elf64_Phdr, PHDR_SIZE, PT_LOAD, PT_NOTE,
};
use crate::mem::{OldMemError, OldMemory};

/// Deterministic content of pattern-backed fake memory at `phys`.
pub fn pattern_byte(phys: u64) -> u8 {
    let page = phys >> 12;
    (phys as u8) ^ (page.wrapping_mul(0x9e37_79b9) >> 7) as u8
}

/// Fake old memory: explicit byte regions (headers, notes) over pattern-generated ranges (RAM).
#[derive(Debug, Clone, Default)]
pub struct FakeMemory {
    regions: BTreeMap<u64, Vec<u8>>,
    pattern: Vec<(u64, u64)>,
    /// Number of `read` calls served.
    pub reads: u64,
}

impl FakeMemory {
    /// Empty memory: every read fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `bytes` at `phys` (regions must not overlap each other).
    pub fn insert(&mut self, phys: u64, bytes: Vec<u8>) {
        self.regions.insert(phys, bytes);
    }

    /// Makes `start..end` readable with [`pattern_byte`] content (where no explicit region covers it).
    pub fn add_pattern(&mut self, start: u64, end: u64) {
        self.pattern.push((start, end));
    }

    /// Mutable access to the region inserted at `phys`.
    pub fn region_mut(&mut self, phys: u64) -> Option<&mut Vec<u8>> {
        self.regions.get_mut(&phys)
    }

    /// The bytes [`OldMemory::read`] returns for `phys..phys + len`.
    pub fn expected(&mut self, phys: u64, len: usize) -> Result<Vec<u8>, OldMemError> {
        let mut v = alloc::vec![0u8; len];
        self.read(phys, &mut v)?;
        Ok(v)
    }
}

impl OldMemory for FakeMemory {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        self.reads += 1;
        let fail = OldMemError::OutOfRange {
            phys,
            len: buf.len() as u64,
        };
        let mut done = 0usize;
        while done < buf.len() {
            let at = phys.checked_add(done as u64).ok_or(fail)?;
            let rest = &mut buf[done..];
            if let Some((&start, bytes)) = self.regions.range(..=at).next_back() {
                let off = (at - start) as usize;
                if off < bytes.len() {
                    let n = rest.len().min(bytes.len() - off);
                    rest[..n].copy_from_slice(&bytes[off..off + n]);
                    done += n;
                    continue;
                }
            }
            let next_region = self
                .regions
                .range(at..)
                .next()
                .map_or(u64::MAX, |(&s, _)| s);
            let Some(&(_, end)) = self.pattern.iter().find(|&&(s, e)| s <= at && at < e) else {
                return Err(fail);
            };
            let n = (rest.len() as u64).min(end - at).min(next_region - at) as usize;
            for (i, b) in rest[..n].iter_mut().enumerate() {
                *b = pattern_byte(at + i as u64);
            }
            done += n;
        }
        Ok(())
    }
}

/// A valid x86_64 ELF core header with `e_phnum` program headers at offset 64.
pub fn core_ehdr(e_phnum: u16) -> Elf64_Ehdr {
    let mut e_ident = [0u8; 16];
    e_ident[..4].copy_from_slice(&ELFMAG);
    e_ident[4] = ELFCLASS64;
    e_ident[5] = ELFDATA2LSB;
    e_ident[6] = EV_CURRENT;
    Elf64_Ehdr {
        e_ident,
        e_type: ET_CORE,
        e_machine: EM_X86_64,
        e_version: u32::from(EV_CURRENT),
        e_entry: 0,
        e_phoff: EHDR_SIZE as u64,
        e_shoff: 0,
        e_flags: 0,
        e_ehsize: EHDR_SIZE as u16,
        e_phentsize: PHDR_SIZE as u16,
        e_phnum,
        e_shentsize: 0,
        e_shnum: 0,
        e_shstrndx: 0,
    }
}

/// A PT_NOTE phdr for a buffer of `size` bytes at `phys` (as kexec writes it: offset = paddr).
pub fn note_phdr(phys: u64, size: u64) -> Elf64_Phdr {
    Elf64_Phdr {
        p_type: PT_NOTE,
        p_flags: 0,
        p_offset: phys,
        p_vaddr: 0,
        p_paddr: phys,
        p_filesz: size,
        p_memsz: size,
        p_align: 0,
    }
}

/// A PT_LOAD phdr: `size` bytes read at `offset`, described as `paddr`/`vaddr`; RWX, align 0.
pub fn load_phdr(paddr: u64, offset: u64, vaddr: u64, size: u64) -> Elf64_Phdr {
    Elf64_Phdr {
        p_type: PT_LOAD,
        p_flags: 7,
        p_offset: offset,
        p_vaddr: vaddr,
        p_paddr: paddr,
        p_filesz: size,
        p_memsz: size,
        p_align: 0,
    }
}

/// Serialises an ELF core header with these program headers.
pub fn header_blob(phdrs: &[Elf64_Phdr]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(core_ehdr(phdrs.len() as u16).as_bytes());
    for p in phdrs {
        v.extend_from_slice(p.as_bytes());
    }
    v
}

/// One note: header, NUL-terminated name and descriptor, each padded to 4 bytes.
pub fn note(name: &str, n_type: u32, desc: &[u8]) -> Vec<u8> {
    let namesz = name.len() as u32 + 1;
    let mut v = Vec::new();
    v.extend_from_slice(&namesz.to_le_bytes());
    v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    v.extend_from_slice(&n_type.to_le_bytes());
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v.extend_from_slice(desc);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// A 336-byte x86_64 `elf_prstatus` with `pr_pid` and `rip` set (rsp = rip + 1 for tests).
pub fn prstatus_desc(pid: i32, rip: u64) -> Vec<u8> {
    let mut d = alloc::vec![0u8; 336];
    d[32..36].copy_from_slice(&pid.to_le_bytes());
    d[112 + 16 * 8..112 + 17 * 8].copy_from_slice(&rip.to_le_bytes());
    d[112 + 19 * 8..112 + 20 * 8].copy_from_slice(&(rip + 1).to_le_bytes());
    d
}

/// A KF-style per-CPU crash_notes buffer (368 bytes): a 356-byte CORE/NT_PRSTATUS note and the 12-byte
/// terminator, or all zeros when `cpu` is `None` (a CPU that saved nothing).
pub fn cpu_note_buffer(cpu: Option<(i32, u64)>) -> Vec<u8> {
    let mut v = match cpu {
        Some((pid, rip)) => note("CORE", 1, &prstatus_desc(pid, rip)),
        None => Vec::new(),
    };
    v.resize(368, 0);
    v
}

/// Puts the crash notes of a KF-style crash into `mem`: one [`cpu_note_buffer`] per entry of
/// `cpus` at `0x7e00_0000 + cpu * 0x1000`, and [`VMCOREINFO_TEXT`] in a 4132-byte buffer at
/// `0x7f00_0000`; returns their PT_NOTE headers, in that order.
pub fn crash_notes(mem: &mut FakeMemory, cpus: &[Option<(i32, u64)>]) -> Vec<Elf64_Phdr> {
    let mut phdrs = Vec::new();
    for (cpu, regs) in cpus.iter().enumerate() {
        let addr = 0x7e00_0000 + cpu as u64 * 0x1000;
        mem.insert(addr, cpu_note_buffer(*regs));
        phdrs.push(note_phdr(addr, 368));
    }
    mem.insert(0x7f00_0000, vmcoreinfo_buffer(VMCOREINFO_TEXT, 4132));
    phdrs.push(note_phdr(0x7f00_0000, 4132));
    phdrs
}

/// A KF-style VMCOREINFO buffer of `capacity` bytes holding `text` and a terminator.
pub fn vmcoreinfo_buffer(text: &str, capacity: usize) -> Vec<u8> {
    let mut v = note("VMCOREINFO", 0, text.as_bytes());
    v.resize(capacity.max(v.len() + 12), 0);
    v
}

/// Typical VMCOREINFO text.
pub const VMCOREINFO_TEXT: &str = "OSRELEASE=6.1.0-56-cloud-amd64\nBUILD-ID=0123456789abcdef\n\
PAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a14760\nNUMBER(phys_base)=-1056964608\n\
KERNELOFFSET=1c000000\nNUMBER(pgtable_l5_enabled)=0\nCRASHTIME=1735689600\n";

/// Puts the elfcorehdr of `phdrs` into `mem` at `hdr` and returns its plan and the vmcore any
/// writer must reproduce: the reference, streamed to memory by [`crate::write_vmcore`].
pub fn plan_and_vmcore(
    mem: &mut FakeMemory,
    hdr: u64,
    phdrs: &[Elf64_Phdr],
) -> (crate::DumpPlan, Vec<u8>) {
    mem.insert(hdr, header_blob(phdrs));
    let plan = crate::prepare_dump(mem, hdr, None).expect("test crash must plan");
    let mut vmcore = Vec::new();
    let mut buf = alloc::vec![0u8; 1 << 20];
    crate::write_vmcore(&plan.layout, mem, &mut vmcore, &mut buf, &mut |_, _| {})
        .expect("test crash must write");
    (plan, vmcore)
}
