//! Seed inputs for the fuzz targets, made through the crates' own builders so their provenance
//! is this repository: `cargo xtask fuzz --seeds` writes them to `fuzz/corpus/<target>/seed-*`.
//! Each is a valid input of its parser, so mutations start past the magic and length checks.

use std::path::Path;

use rkdump_vmcore::stream::FrameEncoder;
use rkdump_vmcore::testing::{
    FakeMemory, VMCOREINFO_TEXT, cpu_note_buffer, header_blob, load_phdr, note_phdr,
    vmcoreinfo_buffer,
};

/// An elfcorehdr laid out for the `elfcorehdr` target, which places its input at physical 0:
/// header at 0, two CPU notes and VMCOREINFO behind it, two PT_LOADs inside the input.
fn elfcorehdr() -> Vec<u8> {
    let mut img = vec![0u8; 0x6000];
    let cpu0 = cpu_note_buffer(Some((1, 0xffff_ffff_8100_1000)));
    let cpu1 = cpu_note_buffer(None);
    let info = vmcoreinfo_buffer(VMCOREINFO_TEXT, 0x1000);
    let phdrs = [
        note_phdr(0x1000, cpu0.len() as u64),
        note_phdr(0x1400, cpu1.len() as u64),
        note_phdr(0x2000, info.len() as u64),
        load_phdr(0x4000, 0x4000, 0xffff_8880_0000_4000, 0x1000),
        load_phdr(0x5000, 0x5000, 0xffff_ffff_8100_0000, 0x1000),
    ];
    let hdr = header_blob(&phdrs);
    img[..hdr.len()].copy_from_slice(&hdr);
    img[0x1000..0x1000 + cpu0.len()].copy_from_slice(&cpu0);
    img[0x1400..0x1400 + cpu1.len()].copy_from_slice(&cpu1);
    img[0x2000..0x2000 + info.len()].copy_from_slice(&info);
    img
}

/// A complete serial run of the dump of [`elfcorehdr`]'s memory (Begin, Data, End).
fn serial_stream() -> Result<Vec<u8>, String> {
    let mut mem = FakeMemory::new();
    mem.insert(0, elfcorehdr());
    let plan = rkdump_vmcore::prepare_dump(&mut mem, 0, None).map_err(|e| e.to_string())?;
    let mut stream = b"rkdump: dump start\r\n".to_vec();
    let mut enc = FrameEncoder::new(&mut stream);
    enc.begin(plan.layout.total_size, *b"rkdump-fuzz-seed")
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    rkdump_vmcore::write_vmcore(&plan.layout, &mut mem, &mut enc, &mut buf, &mut |_, _| {})
        .map_err(|e| e.to_string())?;
    enc.end().map_err(|e| e.to_string())?;
    Ok(stream)
}

/// ATA IDENTIFY DEVICE data as QEMU's IDE/AHCI disk returns it (LBA48, NCQ, checksum).
fn ata_identify() -> Vec<u8> {
    let mut b = vec![0u8; 512];
    let mut w = |i: usize, v: u16| b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    w(0, 0x0040);
    w(75, 31);
    w(76, 1 << 8);
    w(83, (1 << 14) | (1 << 13) | (1 << 10));
    w(86, (1 << 13) | (1 << 10));
    w(100, 0x1000);
    b[510] = 0xA5;
    let sum = b[..511].iter().fold(0u8, |s, &x| s.wrapping_add(x));
    b[511] = sum.wrapping_neg();
    b
}

/// A command line as kexec_file_load hands it over, with every rkdump option.
const CMDLINE: &str = "elfcorehdr=0x3e000000 console=ttyS0,115200 reset_devices irqpoll \
    nr_cpus=1 acpi_rsdp=0xf5a40 rkdump.target=disk:0000:01:00.0,serial rkdump.action=poweroff \
    rkdump.reset=preinit,flr,afflr,pm,sbr rkdump.deny=8086:10d3,class:0c03 \
    rkdump.allow=class:01 rkdump.checksum=full rkdump.budget_ms=5000 rkdump.serial_baud=115200";

/// Writes every seed; returns how many.
pub fn write(corpus: &Path) -> Result<usize, String> {
    let seeds: Vec<(&str, &str, Vec<u8>)> = vec![
        ("elfcorehdr", "seed-two-cpus", elfcorehdr()),
        ("serial_stream", "seed-complete-run", serial_stream()?),
        ("ahci_identify", "seed-qemu-disk", ata_identify()),
        (
            "cmdline",
            "seed-kexec-file-load",
            CMDLINE.as_bytes().to_vec(),
        ),
    ];
    for (target, name, bytes) in &seeds {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(seeds.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_are_valid_inputs() {
        let mut mem = rkdump_vmcore::testing::FakeMemory::new();
        mem.insert(0, super::elfcorehdr());
        let plan = rkdump_vmcore::prepare_dump(&mut mem, 0, None).unwrap();
        assert_eq!(plan.notes.prstatus_count(), 1);
        assert!(super::serial_stream().unwrap().len() > plan.layout.total_size as usize);
        rkdump_devices::ahci::DiskId::parse(&super::ata_identify()).unwrap();
    }
}
