//! Fabricated crashes for QEMU scenarios that need no Linux: an ELF core header shaped like
//! kexec_file_load's, per-CPU and VMCOREINFO note buffers, and pattern-filled "old memory", all
//! placed into guest RAM with QEMU's `-device loader`. The expected vmcore is computed on the
//! host by the same `rkdump-vmcore` layout code over a model of that memory (zero wherever no
//! file was loaded, as fresh guest RAM is).

use std::path::Path;

use rkdump_vmcore::header::Below;
use rkdump_vmcore::mem::{OldMemError, OldMemory};
use rkdump_vmcore::testing::{
    cpu_note_buffer, header_blob, load_phdr, note_phdr, vmcoreinfo_buffer,
};
use rkdump_vmcore::{DumpSink, SinkError};

/// Direct-map base the fabricated loads use for p_vaddr (like x86_64 Linux without KASLR).
const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;

/// Where things go and how big they are.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// Everything below 4 GiB, 512 MiB guest.
    Low,
    /// Adds a RAM range above 4 GiB (5 GiB guest).
    High,
    /// One small RAM range: a dump that takes well under a second.
    Tiny,
    /// One 320 KiB RAM range: ~330 KiB of vmcore, about 25 s through a 115200-baud line.
    Serial115200,
    /// [`Layout::Tiny`] plus program headers naming addresses no CPU here can map (see
    /// [`FOREIGN_PHDRS`]): rkdump must leave them out and dump the rest.
    Foreign,
}

/// The exclusive physical address limit the host model assumes for the guest: QEMU's TCG CPUs
/// have 40 address bits. Only [`Layout::Foreign`] names addresses near it, and those lie beyond
/// 2^46, so a KVM guest with up to 46 bits drops the same headers.
pub const GUEST_PHYS_LIMIT: u64 = 1 << 40;

/// The foreign program headers of [`Layout::Foreign`], appended after the good ones:
/// (PT_NOTE?, physical start, length).
pub const FOREIGN_PHDRS: [(bool, u64, u64); 4] = [
    // Beyond the CPU's physical address width but canonical: a PTE with reserved bits (#PF).
    (false, 0x7fff_ffff_0000, 0x2000),
    // At the canonical boundary of four-level paging: an identity address that #GPs.
    (false, 0xffff_ffff_f000, 0x1000),
    // A note buffer at a non-canonical address.
    (true, 0x8000_0000_0000, 368),
    // A range whose end wraps past 2^64 (the unfiltered header check rejects it outright).
    (false, 0xffff_ffff_ffff_f000, 0x2000),
];

/// A fabricated crash ready to boot.
pub struct Crash {
    /// `-device loader,...` arguments.
    pub qemu_args: Vec<String>,
    /// Physical address of the elfcorehdr.
    pub elfcorehdr: u64,
    /// Guest memory.
    pub memory_mib: u32,
    /// The vmcore rkdump must produce, byte for byte.
    pub expected: Vec<u8>,
    /// Each old-memory PT_LOAD's physical range (for reports).
    pub loads: Vec<(u64, u64)>,
}

/// Sparse guest-memory model: explicit byte regions, zero elsewhere.
#[derive(Default)]
struct GuestMem {
    regions: Vec<(u64, Vec<u8>)>,
}

impl OldMemory for GuestMem {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        buf.fill(0);
        let end = phys + buf.len() as u64;
        for (base, bytes) in &self.regions {
            let rend = base + bytes.len() as u64;
            let s = phys.max(*base);
            let e = end.min(rend);
            if s < e {
                buf[(s - phys) as usize..(e - phys) as usize]
                    .copy_from_slice(&bytes[(s - base) as usize..(e - base) as usize]);
            }
        }
        Ok(())
    }
}

struct VecSink(Vec<u8>);

impl DumpSink for VecSink {
    fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        self.0.extend_from_slice(data);
        Ok(())
    }
}

/// Pattern for fabricated RAM: differs per page and per byte, never all zero.
fn pattern(phys: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let a = phys + i;
            ((a >> 12).wrapping_mul(0x9e37_79b9) as u8) ^ (a as u8) ^ 0x5a
        })
        .collect()
}

/// Builds the crash files under `dir` and the expected vmcore.
pub fn build(dir: &Path, layout: Layout) -> Result<Crash, String> {
    let elfcorehdr = 0x0100_0000u64;
    let cpu0 = 0x0101_0000u64;
    let cpu1 = 0x0101_1000u64;
    let vmcoreinfo = 0x0102_0000u64;
    let text = (
        0x0300_0000u64,
        if let Layout::Tiny | Layout::Serial115200 | Layout::Foreign = layout {
            0x1000
        } else {
            0x20_0000u64
        },
    );
    let mut ram = match layout {
        Layout::Tiny | Layout::Foreign => vec![(0x0300_0000u64, 0x2000u64)],
        Layout::Serial115200 => vec![(0x0300_0000u64, 0x5_0000u64)],
        _ => vec![
            (0x0300_0000u64, 0x40_0000u64),
            (0x0800_0123u64, 0x10_0321u64),
        ],
    };
    if let Layout::High = layout {
        ram.push((0x1_2000_0000, 0x20_0000));
    }

    let mut phdrs = vec![
        note_phdr(cpu0, 368),
        note_phdr(cpu1, 368),
        note_phdr(vmcoreinfo, 4132),
        load_phdr(text.0, text.0, 0xffff_ffff_8100_0000, text.1),
    ];
    for &(start, len) in &ram {
        phdrs.push(load_phdr(start, start, DIRECT_MAP + start, len));
    }
    if let Layout::Foreign = layout {
        for (note, start, len) in FOREIGN_PHDRS {
            phdrs.push(if note {
                note_phdr(start, len)
            } else {
                load_phdr(start, start, DIRECT_MAP.wrapping_add(start), len)
            });
        }
    }
    let header = header_blob(&phdrs);
    let info = "OSRELEASE=6.1.0-rkdump-fabricated\nPAGESIZE=4096\nNUMBER(phys_base)=0\nCRASHTIME=1764201600\n";

    let mut mem = GuestMem::default();
    mem.regions.push((elfcorehdr, header));
    mem.regions
        .push((cpu0, cpu_note_buffer(Some((1, 0xffff_ffff_8123_4567)))));
    mem.regions.push((cpu1, cpu_note_buffer(None)));
    mem.regions
        .push((vmcoreinfo, vmcoreinfo_buffer(info, 4132)));
    for &(start, len) in &ram {
        // Pattern over the whole page-rounded chunk, so bytes outside the PT_LOAD but inside its
        // rounded pages are non-zero too (/proc/vmcore exposes them; so must rkdump).
        let s = start & !0xfff;
        let e = (start + len + 0xfff) & !0xfff;
        mem.regions.push((s, pattern(s, (e - s) as usize)));
    }

    let mut qemu_args = Vec::new();
    for (i, (base, bytes)) in mem.regions.iter().enumerate() {
        let file = dir.join(format!("region{i}-{base:#x}.bin"));
        std::fs::write(&file, bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        qemu_args.push("-device".to_string());
        qemu_args.push(format!(
            "loader,file={},addr={base:#x},force-raw=on",
            file.display()
        ));
    }

    // The guest's limit: nothing is left out unless the layout names foreign addresses.
    let plan =
        rkdump_vmcore::prepare_dump_filtered(&mut mem, elfcorehdr, None, &Below(GUEST_PHYS_LIMIT))
            .map_err(|e| format!("host model: {e}"))?;
    let mut sink = VecSink(Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    rkdump_vmcore::writer::write_vmcore(
        &plan.layout,
        &mut mem,
        &mut sink,
        &mut buf,
        &mut |_, _| {},
    )
    .map_err(|e| format!("host model write: {e}"))?;

    Ok(Crash {
        qemu_args,
        elfcorehdr,
        memory_mib: match layout {
            Layout::Low | Layout::Tiny | Layout::Serial115200 | Layout::Foreign => 512,
            Layout::High => 5 * 1024,
        },
        expected: sink.0,
        loads: ram,
    })
}
