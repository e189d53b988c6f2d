//! Checks a vmcore the way its consumers will read it: the ELF shape crash and makedumpfile
//! insist on (one PT_NOTE first, then PT_LOADs), NT_PRSTATUS per CPU and VMCOREINFO, every
//! marker page at the physical frame the marker process reported (from /proc/self/pagemap),
//! `readelf -lnW` and `makedumpfile --dump-dmesg` on the file.

use std::path::Path;
use std::process::Command;

use goblin::elf::Elf;
use goblin::elf::program_header::{PT_LOAD, PT_NOTE};
use rkdump_marker::{PAGE_SIZE, Report, page_matches, pfn_of};

/// What a verified vmcore looked like.
#[derive(Debug, Default)]
pub struct Verified {
    /// NT_PRSTATUS notes.
    pub cpus: usize,
    /// VMCOREINFO OSRELEASE.
    pub osrelease: String,
    /// PT_LOAD count.
    pub loads: usize,
    /// Marker pages found intact at their reported frames.
    pub marker_pages: u64,
    /// Lines of the crashed kernel's log recovered by makedumpfile.
    pub dmesg_tail: Vec<String>,
}

fn phys_to_offset(elf: &Elf<'_>, phys: u64, len: u64) -> Option<u64> {
    elf.program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .find(|p| p.p_paddr <= phys && phys + len <= p.p_paddr + p.p_filesz)
        .map(|p| p.p_offset + (phys - p.p_paddr))
}

/// Verifies `vmcore`; `markers` and `cpus` are what the first kernel reported.
pub fn vmcore(
    path: &Path,
    markers: Option<&Report>,
    cpus: Option<usize>,
    dir: &Path,
) -> Result<Verified, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let elf = Elf::parse(&bytes).map_err(|e| format!("vmcore is not ELF: {e}"))?;
    let mut v = Verified::default();
    let phdrs = &elf.program_headers;
    if phdrs.first().map(|p| p.p_type) != Some(PT_NOTE) {
        return Err("phdr 0 is not PT_NOTE (crash's is_netdump needs it first)".into());
    }
    if phdrs.iter().skip(1).any(|p| p.p_type != PT_LOAD) {
        return Err("a phdr after the first is not PT_LOAD".into());
    }
    v.loads = phdrs.len() - 1;
    let note = &phdrs[0];
    let notes = bytes
        .get(note.p_offset as usize..(note.p_offset + note.p_filesz) as usize)
        .ok_or("PT_NOTE outside the file")?;
    let parsed = rkdump_vmcore::notes::Notes::parse_merged(notes);
    v.cpus = parsed.prstatus_count();
    v.osrelease = parsed
        .vmcoreinfo()
        .and_then(|i| i.osrelease().map(str::to_string))
        .ok_or("no VMCOREINFO with OSRELEASE")?;
    if let Some(want) = cpus
        && v.cpus != want
    {
        return Err(format!(
            "{} NT_PRSTATUS notes, the first kernel had {want} CPUs",
            v.cpus
        ));
    }

    if let Some(r) = markers {
        let mut page = [0u8; PAGE_SIZE];
        for index in 0..r.pages {
            let pfn =
                pfn_of(&r.runs, index).ok_or(format!("marker page {index} has no reported pfn"))?;
            let off = phys_to_offset(&elf, pfn * PAGE_SIZE as u64, PAGE_SIZE as u64).ok_or(
                format!("marker page {index} at pfn {pfn:#x} is in no PT_LOAD"),
            )?;
            let src = bytes
                .get(off as usize..off as usize + PAGE_SIZE)
                .ok_or(format!("marker page {index} beyond the end of the file"))?;
            page.copy_from_slice(src);
            if !page_matches(r.tag, index, &page) {
                return Err(format!(
                    "marker page {index} at pfn {pfn:#x} (file offset {off:#x}) differs"
                ));
            }
            v.marker_pages += 1;
        }
    }

    let readelf = Command::new("readelf")
        .arg("-lnW")
        .arg(path)
        .output()
        .map_err(|e| format!("readelf: {e}"))?;
    let text = String::from_utf8_lossy(&readelf.stdout).to_string();
    let _ = std::fs::write(dir.join("readelf.txt"), &text);
    if !readelf.status.success() || !text.contains("NT_PRSTATUS") || !text.contains("VMCOREINFO") {
        return Err(format!(
            "readelf -lnW did not show NT_PRSTATUS and VMCOREINFO:\n{text}"
        ));
    }

    let dmesg = dir.join("dmesg.txt");
    let _ = std::fs::remove_file(&dmesg);
    let out = Command::new("makedumpfile")
        .arg("--dump-dmesg")
        .arg(path)
        .arg(&dmesg)
        .output()
        .map_err(|e| format!("makedumpfile: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "makedumpfile --dump-dmesg failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let log = std::fs::read_to_string(&dmesg).map_err(|e| format!("{}: {e}", dmesg.display()))?;
    if !log.contains("sysrq: Trigger a crash") {
        return Err(
            "the crashed kernel's log (makedumpfile --dump-dmesg) lacks the sysrq crash".into(),
        );
    }
    v.dmesg_tail = log
        .lines()
        .rev()
        .take(12)
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Ok(v)
}
