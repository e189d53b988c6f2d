//! Turns the linked kernel (a static PIE linked at 0) into the two boot artefacts:
//!
//! - `bzImage`: a 1 KiB setup area carrying the Linux boot-protocol header (docs/boot-contract.md#bzimage-header-rules,
//!   §14.1) followed by the flat payload; kexec jumps to payload + 0x200 in 64-bit mode. The
//!   same file is a PE/COFF image (`crate::pe`), so it can be signed for kexec_file_load.
//! - `rkdump.elf`: one PT_LOAD of the same payload at [`PVH_LOAD_ADDR`] plus a PT_NOTE with the
//!   Xen PVH entry note, for QEMU `-kernel`. The payload's first instruction
//!   (`mov $imm32, %ebp`) gets the load address patched in, since 32-bit code cannot find its
//!   own address without a stack.
//!
//! The payload is checked on the way: only R_X86_64_RELATIVE dynamic relocations (the entry stub
//! applies those and nothing else), entries at the offsets the stubs assume, no multiboot magic.

use goblin::elf::{Elf, program_header::PT_LOAD, reloc::R_X86_64_RELATIVE};

/// Physical load address of the PVH payload in rkdump.elf.
pub const PVH_LOAD_ADDR: u64 = 0x20_0000;

/// Bytes of `mov $0x0badb0d1, %ebp`, the unpatched first instruction of the payload.
const PVH_MARKER: [u8; 5] = [0xBD, 0xD1, 0xB0, 0xAD, 0x0B];

/// Setup sectors after the boot sector (real-mode part = (1 + SETUP_SECTS) * 512 bytes).
const SETUP_SECTS: u8 = 1;
const SETUP_LEN: usize = (1 + SETUP_SECTS as usize) * 512;
/// Header length byte at 0x201: the header runs to 0x202 + 0x6A = 0x26C, covering init_size
/// (0x260) even in kexec-tools' capped copy and kernel_info_offset (0x268).
const JUMP_LEN: u8 = 0x6A;
const VERSION_STRING: &[u8] = concat!("rkdump ", env!("CARGO_PKG_VERSION"), "\0").as_bytes();
const VERSION_AT: usize = 0x300;

/// The boot artefacts built from one kernel.
pub struct Images {
    /// Linux boot-protocol image.
    pub bzimage: Vec<u8>,
    /// PVH-bootable ELF.
    pub pvh_elf: Vec<u8>,
    /// Bytes of payload in the file.
    pub payload_len: usize,
    /// Memory the payload needs from its load address (file + bss + stacks + early tables).
    pub init_size: u64,
}

/// Builds both artefacts from the linked kernel ELF.
pub fn make_images(kernel_elf: &[u8]) -> Result<Images, String> {
    let elf = Elf::parse(kernel_elf).map_err(|e| format!("kernel ELF: {e}"))?;
    check_relocations(&elf)?;
    check_symbol(&elf, "rkdump_pvh_entry", 0)?;
    check_symbol(&elf, "rkdump_entry64", 0x200)?;

    let mut file_end = 0u64;
    let mut mem_end = 0u64;
    for ph in elf.program_headers.iter().filter(|p| p.p_type == PT_LOAD) {
        file_end = file_end.max(ph.p_vaddr + ph.p_filesz);
        mem_end = mem_end.max(ph.p_vaddr + ph.p_memsz);
    }
    let payload_len = round_up(file_end, 4096) as usize;
    let init_size = round_up(mem_end, 4096);
    let mut payload = vec![0u8; payload_len];
    for ph in elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.p_filesz > 0)
    {
        let src = kernel_elf
            .get(ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize)
            .ok_or("PT_LOAD outside the file")?;
        payload[ph.p_vaddr as usize..(ph.p_vaddr + ph.p_filesz) as usize].copy_from_slice(src);
    }
    if payload.get(..5) != Some(&PVH_MARKER[..]) {
        return Err("payload does not start with the PVH load-address marker".into());
    }

    let bzimage = make_bzimage(&payload, init_size)?;
    check_bzimage(&bzimage, &payload)?;
    let pvh_elf = make_pvh_elf(&payload, init_size);
    Ok(Images {
        bzimage,
        pvh_elf,
        payload_len,
        init_size,
    })
}

/// Reads the finished bzImage the way kexec-tools' and the kernel's bzImage64 loaders do
/// (docs/boot-contract.md#bzimage-header-rules) and checks what they would take from it.
pub fn check_bzimage(
    image: &[u8],
    payload: &[u8],
) -> Result<rkdump_boot::bootparam::HeaderSummary, String> {
    let s = rkdump_boot::bootparam::check_kexec_header(image)
        .map_err(|e| format!("bzImage refused: {e}"))?;
    if s.payload_len != payload.len() || image.get(s.payload_offset..) != Some(payload) {
        return Err("bzImage payload is not the kernel payload".into());
    }
    if image.get(s.entry64_offset()..s.entry64_offset() + 4) != payload.get(0x200..0x204) {
        return Err("64-bit entry is not at payload + 0x200".into());
    }
    if !s.supports_5level() {
        return Err(
            "XLF_5LEVEL missing: kexec_file_load refuses the image on 5-level hosts".into(),
        );
    }
    crate::pe::check(image, payload.len()).map_err(|e| format!("bzImage PE/COFF view: {e}"))?;
    Ok(s)
}

fn round_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

fn check_relocations(elf: &Elf<'_>) -> Result<(), String> {
    if !elf.pltrelocs.is_empty() || !elf.dynrels.is_empty() {
        return Err("kernel has PLT or REL relocations; only RELA RELATIVE is supported".into());
    }
    if let Some(bad) = elf.dynrelas.iter().find(|r| r.r_type != R_X86_64_RELATIVE) {
        return Err(format!(
            "kernel has a dynamic relocation of type {} at {:#x}; the entry stub applies only R_X86_64_RELATIVE",
            bad.r_type, bad.r_offset
        ));
    }
    Ok(())
}

fn check_symbol(elf: &Elf<'_>, name: &str, want: u64) -> Result<(), String> {
    let sym = elf
        .syms
        .iter()
        .find(|s| elf.strtab.get_at(s.st_name) == Some(name))
        .ok_or_else(|| format!("symbol {name} missing from the kernel"))?;
    if sym.st_value != want {
        return Err(format!(
            "symbol {name} at {:#x}, expected {want:#x}",
            sym.st_value
        ));
    }
    Ok(())
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn make_bzimage(payload: &[u8], init_size: u64) -> Result<Vec<u8>, String> {
    let mut setup = vec![0u8; SETUP_LEN];
    let init_size = u32::try_from(init_size).map_err(|_| "init_size above 4 GiB")?;
    let syssize = u32::try_from(payload.len().div_ceil(16)).map_err(|_| "payload too large")?;
    setup[0x1F1] = SETUP_SECTS;
    put(&mut setup, 0x1F4, &syssize.to_le_bytes());
    put(&mut setup, 0x1FE, &0xAA55u16.to_le_bytes());
    setup[0x200] = 0xEB;
    setup[0x201] = JUMP_LEN;
    // The real-mode jump target: nobody should run real-mode code here (QEMU boots rkdump.elf
    // through PVH); if a BIOS loader does, stop instead of running garbage: cli; hlt; jmp $-1.
    put(
        &mut setup,
        0x202 + JUMP_LEN as usize,
        &[0xFA, 0xF4, 0xEB, 0xFD],
    );
    put(&mut setup, 0x202, b"HdrS");
    put(&mut setup, 0x206, &0x020Fu16.to_le_bytes());
    put(
        &mut setup,
        0x20E,
        &((VERSION_AT - 0x200) as u16).to_le_bytes(),
    );
    setup[0x211] = 0x01; // LOADED_HIGH
    put(&mut setup, 0x214, &0x10_0000u32.to_le_bytes()); // code32_start
    put(&mut setup, 0x22C, &0x7FFF_FFFFu32.to_le_bytes()); // initrd_addr_max
    put(&mut setup, 0x230, &0x20_0000u32.to_le_bytes()); // kernel_alignment: 2 MiB
    setup[0x234] = 1; // relocatable_kernel
    setup[0x235] = 12; // min_alignment: 4 KiB (the kernel maps itself, any page works)
    // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_5LEVEL (entry copes with CR4.LA57 = 1).
    put(&mut setup, 0x236, &(0x01u16 | 0x02 | 0x20).to_le_bytes());
    put(&mut setup, 0x238, &4095u32.to_le_bytes()); // cmdline_size
    put(&mut setup, 0x258, &0x10_0000u64.to_le_bytes()); // pref_address: 1 MiB
    put(&mut setup, 0x260, &init_size.to_le_bytes());
    put(&mut setup, VERSION_AT, VERSION_STRING);
    let payload_len = u32::try_from(payload.len()).map_err(|_| "payload too large")?;
    crate::pe::write_headers(&mut setup, payload_len, init_size)?;

    let mut image = setup;
    image.extend_from_slice(payload);
    Ok(image)
}

fn make_pvh_elf(payload: &[u8], init_size: u64) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    const NOTE_AT: usize = EHDR + 2 * PHDR;
    const NOTE_LEN: usize = 12 + 4 + 4; // header + "Xen\0" + u32 entry
    const LOAD_AT: usize = 0x1000;

    let mut payload = payload.to_vec();
    let load = u32::try_from(PVH_LOAD_ADDR).expect("PVH load address below 4 GiB");
    put(&mut payload, 1, &load.to_le_bytes());

    let mut out = vec![0u8; LOAD_AT];
    put(&mut out, 0, b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little endian
    out[6] = 1; // EV_CURRENT
    put(&mut out, 16, &2u16.to_le_bytes()); // ET_EXEC
    put(&mut out, 18, &62u16.to_le_bytes()); // EM_X86_64
    put(&mut out, 20, &1u32.to_le_bytes());
    put(&mut out, 24, &(PVH_LOAD_ADDR + 0x200).to_le_bytes()); // e_entry (unused by PVH)
    put(&mut out, 32, &(EHDR as u64).to_le_bytes()); // e_phoff
    put(&mut out, 52, &(EHDR as u16).to_le_bytes());
    put(&mut out, 54, &(PHDR as u16).to_le_bytes());
    put(&mut out, 56, &2u16.to_le_bytes()); // e_phnum

    let mut ph = Vec::with_capacity(2 * PHDR);
    // PT_LOAD, RWX
    ph.extend_from_slice(&1u32.to_le_bytes());
    ph.extend_from_slice(&7u32.to_le_bytes());
    ph.extend_from_slice(&(LOAD_AT as u64).to_le_bytes());
    ph.extend_from_slice(&PVH_LOAD_ADDR.to_le_bytes());
    ph.extend_from_slice(&PVH_LOAD_ADDR.to_le_bytes());
    ph.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    ph.extend_from_slice(&init_size.to_le_bytes());
    ph.extend_from_slice(&0x1000u64.to_le_bytes());
    // PT_NOTE
    ph.extend_from_slice(&4u32.to_le_bytes());
    ph.extend_from_slice(&4u32.to_le_bytes());
    ph.extend_from_slice(&(NOTE_AT as u64).to_le_bytes());
    ph.extend_from_slice(&0u64.to_le_bytes());
    ph.extend_from_slice(&0u64.to_le_bytes());
    ph.extend_from_slice(&(NOTE_LEN as u64).to_le_bytes());
    ph.extend_from_slice(&(NOTE_LEN as u64).to_le_bytes());
    ph.extend_from_slice(&4u64.to_le_bytes());
    put(&mut out, EHDR, &ph);

    // XEN_ELFNOTE_PHYS32_ENTRY (18): 32-bit physical entry point.
    let mut note = Vec::with_capacity(NOTE_LEN);
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&18u32.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&load.to_le_bytes());
    put(&mut out, NOTE_AT, &note);

    out.extend_from_slice(&payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> Vec<u8> {
        let mut p = vec![0u8; 8192];
        p[..5].copy_from_slice(&PVH_MARKER);
        p[0x200] = 0xFA;
        p
    }

    #[test]
    fn bzimage_passes_both_loaders_rules() {
        let p = payload();
        let img = make_bzimage(&p, 64 * 1024).unwrap();
        let s = check_bzimage(&img, &p).unwrap();
        assert_eq!(s.payload_offset, 1024);
        assert_eq!(s.init_size, 64 * 1024);
        assert_eq!(s.version, 0x020F);
        assert!(s.cmdline_size >= 2047);
        assert_eq!(s.kernel_alignment, 0x20_0000);
    }

    #[test]
    fn corrupted_headers_are_refused() {
        let p = payload();
        let good = make_bzimage(&p, 64 * 1024).unwrap();
        for (at, byte) in [
            (0x202usize, b'X'),
            (0x1FE, 0),
            (0x211, 0),
            (0x236, 0),
            (0x201, 0x10),
        ] {
            let mut bad = good.clone();
            bad[at] = byte;
            assert!(
                check_bzimage(&bad, &p).is_err(),
                "byte {at:#x} = {byte:#x} accepted"
            );
        }
        // init_size smaller than the payload: kexec would drop or truncate the kernel.
        assert!(check_bzimage(&make_bzimage(&p, 4096).unwrap(), &p).is_err());
    }

    #[test]
    fn bzimage_is_also_a_pe_image() {
        use goblin::pe::PE;
        let p = payload();
        let img = make_bzimage(&p, 64 * 1024).unwrap();
        // An independent reader (goblin) accepts the PE view.
        let pe = PE::parse(&img).unwrap();
        assert!(pe.is_64);
        assert_eq!(pe.header.coff_header.machine, crate::pe::MACHINE_AMD64);
        assert_eq!(pe.entry as usize, crate::pe::ENTRY_AT);
        let names: Vec<_> = pe
            .sections
            .iter()
            .map(|s| s.name().unwrap().to_string())
            .collect();
        assert_eq!(names, [".setup", ".text"]);
        assert_eq!(pe.sections[1].pointer_to_raw_data, 1024);
        assert_eq!(pe.sections[1].size_of_raw_data as usize, p.len());
        assert_eq!(pe.sections[1].virtual_size, 64 * 1024);
        assert_eq!(&img[..2], b"MZ");
        assert_eq!(
            u32::from_le_bytes(img[0x3C..0x40].try_into().unwrap()),
            0x40
        );
        // The PE headers end before the setup header; the entry stub after the version string.
        assert!(img[0x148..0x1F1].iter().all(|&b| b == 0));
        assert!(crate::pe::ENTRY_AT >= VERSION_AT + VERSION_STRING.len());
        assert!(crate::pe::ENTRY_AT >= 0x202 + JUMP_LEN as usize + 4);
        // Negative controls: the PE check notices a broken MZ, PE signature or entry stub.
        for at in [0usize, 0x40, crate::pe::ENTRY_AT] {
            let mut bad = img.clone();
            bad[at] ^= 0xFF;
            assert!(
                check_bzimage(&bad, &p).is_err(),
                "byte {at:#x} flipped accepted"
            );
        }
    }

    /// `sbsign` signs the image with a throw-away key, `sbverify --cert` accepts it (and refuses
    /// another certificate and the unsigned image), and the signed file still passes the
    /// kexec header check. Skipped, saying so, without openssl/sbsign/sbverify.
    #[test]
    fn sbsign_signs_and_sbverify_accepts() {
        use std::process::Command;
        let have = |t: &str| Command::new(t).arg("--help").output().is_ok();
        if !(have("openssl") && have("sbsign") && have("sbverify")) {
            eprintln!(
                "openssl, sbsign or sbverify missing (scripts/setup.sh installs sbsigntool): not run"
            );
            return;
        }
        let d = std::env::temp_dir().join(format!("xtask-sbsign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = payload();
        let img = make_bzimage(&p, 64 * 1024).unwrap();
        std::fs::write(d.join("bzImage"), &img).unwrap();
        let key = |name: &str| {
            let ok = Command::new("openssl")
                .args([
                    "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args(["-subj", &format!("/CN=rkdump test {name}/")])
                .arg("-keyout")
                .arg(d.join(format!("{name}.key")))
                .arg("-out")
                .arg(d.join(format!("{name}.crt")))
                .output()
                .unwrap();
            assert!(
                ok.status.success(),
                "{}",
                String::from_utf8_lossy(&ok.stderr)
            );
        };
        key("a");
        key("b");
        let verify = |file: &str, cert: &str| {
            Command::new("sbverify")
                .arg("--cert")
                .arg(d.join(cert))
                .arg(d.join(file))
                .output()
                .unwrap()
        };
        assert!(
            !verify("bzImage", "a.crt").status.success(),
            "unsigned image verified"
        );
        let out = Command::new("sbsign")
            .arg("--key")
            .arg(d.join("a.key"))
            .arg("--cert")
            .arg(d.join("a.crt"))
            .arg("--output")
            .arg(d.join("bzImage.signed"))
            .arg(d.join("bzImage"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sbsign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = verify("bzImage.signed", "a.crt");
        assert!(
            v.status.success(),
            "sbverify: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(
            !verify("bzImage.signed", "b.crt").status.success(),
            "wrong cert accepted"
        );
        let signed = std::fs::read(d.join("bzImage.signed")).unwrap();
        // The setup header and payload are untouched; the loaders still accept the file.
        assert_eq!(&signed[0x1F1..0x26C], &img[0x1F1..0x26C]);
        assert_eq!(&signed[1024..1024 + p.len()], &p[..]);
        rkdump_boot::bootparam::check_kexec_header(&signed).unwrap();
        let s = crate::pe::check(&signed, p.len()).unwrap();
        assert!(s.cert_table.1 > 0 && s.cert_table.0 as usize >= img.len());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn pvh_elf_has_note_and_patched_entry() {
        let p = payload();
        let elf = make_pvh_elf(&p, 64 * 1024);
        let parsed = Elf::parse(&elf).unwrap();
        assert_eq!(parsed.program_headers.len(), 2);
        let load = &parsed.program_headers[0];
        assert_eq!(load.p_paddr, PVH_LOAD_ADDR);
        assert_eq!(load.p_memsz, 64 * 1024);
        let code = &elf[load.p_offset as usize..];
        assert_eq!(code[0], 0xBD);
        assert_eq!(
            u32::from_le_bytes(code[1..5].try_into().unwrap()) as u64,
            PVH_LOAD_ADDR
        );
        let note = &parsed.program_headers[1];
        let n = &elf[note.p_offset as usize..(note.p_offset + note.p_filesz) as usize];
        assert_eq!(&n[12..16], b"Xen\0");
        assert_eq!(u32::from_le_bytes(n[8..12].try_into().unwrap()), 18);
    }
}
