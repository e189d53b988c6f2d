//! `rkdumpctl inspect`: summarises a vmcore file: ELF header (or kdump-compressed header), notes
//! (CPUs with pid and RIP, VMCOREINFO keys), PT_LOAD ranges and sizes; then the crash report rkdump prints on the console before a
//! dump, computed again from the file by the same code (`rkdump_vmcore::report`). Parsing is
//! rkdump-vmcore's; this module only reads files and prints.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use rkdump_vmcore::elf::Elf64_Phdr;
use rkdump_vmcore::elf::{EHDR_SIZE, NT_PRSTATUS, NT_VMCOREINFO, PHDR_SIZE, PT_NOTE};
use rkdump_vmcore::header::{self, ElfCoreHeader, is_kernel_text};
use rkdump_vmcore::kdump::abi::KDUMP_SIGNATURE;
use rkdump_vmcore::kdump::{KdumpFile, KdumpMemory, ReadError};
use rkdump_vmcore::mem::{OldMemError, OldMemory};
use rkdump_vmcore::notes::Notes;
use rkdump_vmcore::report;

/// VMCOREINFO keys always shown (when present); `--vmcoreinfo` prints the whole text.
const KEYS: [&str; 9] = [
    "OSRELEASE",
    "BUILD-ID",
    "PAGESIZE",
    "CRASHTIME",
    "KERNELOFFSET",
    "NUMBER(phys_base)",
    "NUMBER(pgtable_l5_enabled)",
    "NUMBER(MAX_PHYSMEM_BITS)",
    "SYMBOL(init_uts_ns)",
];

/// Largest note segment read.
const MAX_NOTES: u64 = 64 << 20;

/// Arguments of `rkdumpctl inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vmcore file (ELF core, as written by rkdump or copied from /proc/vmcore, or
    /// kdump-compressed, as rkdump.format=kdump or makedumpfile writes it).
    vmcore: PathBuf,
    /// Print the complete VMCOREINFO text.
    #[arg(long)]
    vmcoreinfo: bool,
    /// Print only the crash report (between `rkdump: report begin` and `rkdump: report end`).
    #[arg(long)]
    report: bool,
    /// printk lines in the crash report (as `rkdump.report_lines=`).
    #[arg(long, default_value_t = report::DEFAULT_LINES)]
    report_lines: usize,
}

/// The vmcore file as the crashed kernel's physical memory: each PT_LOAD's bytes at its
/// `p_paddr`.
struct FileMemory<'a> {
    file: &'a File,
    loads: Vec<Elf64_Phdr>,
}

impl OldMemory for FileMemory<'_> {
    fn read(&mut self, phys: u64, buf: &mut [u8]) -> Result<(), OldMemError> {
        let len = buf.len() as u64;
        let mut done = 0usize;
        while done < buf.len() {
            let pa = phys + done as u64;
            let p = self
                .loads
                .iter()
                .find(|p| pa >= p.p_paddr && pa - p.p_paddr < p.p_filesz)
                .ok_or(OldMemError::OutOfRange { phys, len })?;
            let n = ((p.p_paddr + p.p_filesz - pa) as usize).min(buf.len() - done);
            self.file
                .read_exact_at(&mut buf[done..done + n], p.p_offset + (pa - p.p_paddr))
                .map_err(|_| OldMemError::Fault { phys: pa })?;
            done += n;
        }
        Ok(())
    }
}

/// Why `inspect` failed.
#[derive(Debug)]
pub enum Error {
    /// The file could not be read.
    Io(PathBuf, io::Error),
    /// The ELF headers are not a valid x86_64 core.
    Header(header::Error),
    /// The file starts with the kdump signature but is not a readable kdump-compressed file.
    Kdump(ReadError),
    /// A PT_NOTE lies outside the file or is implausibly large.
    NoteOutOfFile {
        /// Program header index.
        index: usize,
        /// File offset.
        offset: u64,
        /// Size.
        size: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(p, e) => write!(f, "reading {}: {e}", p.display()),
            Error::Header(e) => write!(f, "not a valid x86_64 ELF core: {e}"),
            Error::Kdump(e) => write!(f, "not a readable kdump-compressed file: {e}"),
            Error::NoteOutOfFile {
                index,
                offset,
                size,
            } => write!(
                f,
                "PT_NOTE phdr {index} ({size:#x} bytes at {offset:#x}) lies outside the file"
            ),
        }
    }
}

/// Runs `rkdumpctl inspect`.
pub fn run(args: &Args) -> Result<(), Error> {
    let io_err = |e| Error::Io(args.vmcore.clone(), e);
    let file = File::open(&args.vmcore).map_err(io_err)?;
    let file_size = file.metadata().map_err(io_err)?.len();
    let mut sig = [0u8; 8];
    if file.read_exact_at(&mut sig, 0).is_ok() && sig == KDUMP_SIGNATURE {
        return run_kdump(args, file_size);
    }
    let mut ehdr = vec![0u8; EHDR_SIZE.min(file_size as usize)];
    file.read_exact_at(&mut ehdr, 0).map_err(io_err)?;
    let phnum = ehdr
        .get(0x38..0x3a)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    let want = (EHDR_SIZE + PHDR_SIZE * usize::from(phnum)).min(file_size as usize);
    let mut head = vec![0u8; want];
    file.read_exact_at(&mut head, 0).map_err(io_err)?;
    let core = ElfCoreHeader::parse_file(&head).map_err(Error::Header)?;
    let phdrs = core.phdrs();

    let loads = core.loads().count();
    let pt_notes = core.notes().count();
    let mut note_bytes = Vec::new();
    for (index, p) in core.notes() {
        let bad = Error::NoteOutOfFile {
            index,
            offset: p.p_offset,
            size: p.p_filesz,
        };
        if p.p_filesz > MAX_NOTES || p.p_offset.saturating_add(p.p_filesz) > file_size {
            return Err(bad);
        }
        let mut b = vec![0u8; p.p_filesz as usize];
        file.read_exact_at(&mut b, p.p_offset).map_err(io_err)?;
        note_bytes.extend_from_slice(&b);
    }
    let notes = Notes::parse_merged(&note_bytes);
    let print_report = || {
        let mut mem = FileMemory {
            file: &file,
            loads: core.loads().map(|(_, p)| *p).collect(),
        };
        let r = report::from_old_memory(&mut mem, &core, &notes, args.report_lines, &|| false);
        println!("rkdump: report begin");
        print!("{}", report::render(&r));
        println!("rkdump: report end");
    };
    if args.report {
        print_report();
        return Ok(());
    }
    println!("vmcore: {} ({file_size} bytes)", args.vmcore.display());
    println!(
        "ELF: ELFCLASS64 LSB ET_CORE EM_X86_64, {} program headers ({pt_notes} PT_NOTE, {loads} PT_LOAD, {} other)",
        phdrs.len(),
        phdrs.len() - pt_notes - loads
    );
    if phdrs.first().is_none_or(|p| p.p_type != PT_NOTE) {
        println!("warning: program header 0 is not PT_NOTE (crash expects it there)");
    }

    print_notes(&notes, note_bytes.len(), args.vmcoreinfo);

    println!("PT_LOAD ({loads}):");
    println!(
        "  {:>5}  {:>18}  {:>18}  {:>14}  {:>14}",
        "phdr", "paddr", "vaddr", "size", "file offset"
    );
    let mut mem_total = 0u64;
    let mut file_end = 0u64;
    let mut truncated = Vec::new();
    for (i, p) in core.loads() {
        mem_total = mem_total.saturating_add(p.p_memsz);
        let end = p.p_offset.saturating_add(p.p_filesz);
        file_end = file_end.max(end);
        if end > file_size {
            truncated.push(i);
        }
        println!(
            "  {i:>5}  {:#018x}  {:#018x}  {:>#14x}  {:>#14x}{}",
            p.p_paddr,
            p.p_vaddr,
            p.p_memsz,
            p.p_offset,
            if is_kernel_text(p) {
                "  kernel text"
            } else {
                ""
            }
        );
    }
    println!(
        "sizes: memory in PT_LOADs {mem_total} bytes ({:.1} MiB), file {file_size} bytes, last PT_LOAD ends at {file_end}",
        mem_total as f64 / f64::from(1u32 << 20)
    );
    for i in truncated {
        println!("warning: PT_LOAD phdr {i} extends beyond the end of the file (truncated dump)");
    }
    print_report();
    Ok(())
}

/// `inspect` of a kdump-compressed file: its header, notes and the crash report, read through
/// [`KdumpMemory`] (the whole file is read into memory).
fn run_kdump(args: &Args, file_size: u64) -> Result<(), Error> {
    let bytes = std::fs::read(&args.vmcore).map_err(|e| Error::Io(args.vmcore.clone(), e))?;
    let file = KdumpFile::parse(&bytes).map_err(Error::Kdump)?;
    let note_bytes = file.notes().map_err(Error::Kdump)?;
    let notes = Notes::parse_merged(note_bytes);
    let print_report = || {
        let mut mem = KdumpMemory::new(&file);
        let r = report::from_physical(&mut mem, None, &notes, args.report_lines, &|| false);
        println!("rkdump: report begin");
        print!("{}", report::render(&r));
        println!("rkdump: report end");
    };
    if args.report {
        print_report();
        return Ok(());
    }
    let h = &file.header;
    let cstr = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    println!("vmcore: {} ({file_size} bytes)", args.vmcore.display());
    println!(
        "kdump-compressed: header version {}, release {}, {} CPUs, status {:#x}, dump level {}, {} frames",
        h.header_version,
        cstr(&h.utsname.release),
        h.nr_cpus,
        h.status,
        file.sub.dump_level,
        file.max_mapnr()
    );
    print_notes(&notes, note_bytes.len(), args.vmcoreinfo);
    print_report();
    Ok(())
}

fn print_notes(notes: &Notes, size: usize, full_vmcoreinfo: bool) {
    println!("notes: {} in {size} bytes", notes.len());
    for (i, n) in notes.iter().enumerate() {
        let name = String::from_utf8_lossy(n.name);
        let kind = match (n.name, n.n_type) {
            (b"CORE", NT_PRSTATUS) => "NT_PRSTATUS",
            (b"VMCOREINFO", NT_VMCOREINFO) => "VMCOREINFO",
            _ => "",
        };
        let regs = n
            .prstatus()
            .map(|p| {
                format!(
                    "  pid {} rip {:#018x} rsp {:#018x}",
                    p.pr_pid,
                    p.rip(),
                    p.rsp()
                )
            })
            .unwrap_or_default();
        println!(
            "  [{i}] {name:<10} type {:<3} {kind:<11} desc {:>5} bytes{regs}",
            n.n_type,
            n.desc.len()
        );
    }
    for w in notes.warnings() {
        println!("warning: {w}");
    }
    println!("CPUs (CORE/NT_PRSTATUS notes): {}", notes.prstatus_count());
    let Some(info) = notes.vmcoreinfo() else {
        println!("VMCOREINFO: absent (makedumpfile needs it for dump levels above 1)");
        return;
    };
    println!("VMCOREINFO: {} keys", info.entries().count());
    if full_vmcoreinfo {
        for (k, v) in info.entries() {
            println!("  {k}={v}");
        }
        return;
    }
    for key in KEYS {
        if let Some(v) = info.get(key) {
            let extra = match key {
                "CRASHTIME" => info.crash_time().map(|t| format!("  ({})", report::utc(t))),
                "NUMBER(phys_base)" => info.phys_base().map(|b| format!("  ({b:#x})")),
                _ => None,
            };
            println!("  {key}={v}{}", extra.unwrap_or_default());
        }
    }
    for key in ["OSRELEASE", "PAGESIZE"] {
        if info.get(key).is_none() {
            println!("warning: VMCOREINFO lacks {key}, which makedumpfile requires");
        }
    }
}

#[cfg(test)]
mod tests {
    use rkdump_vmcore::report::utc;

    /// Writes the printk test data of `vmcore/testdata/printk-6.1.0-57/` from a saved vmcore
    /// (`RKDUMP_CAPTURE_VMCORE=<vmcore> RKDUMP_CAPTURE_OUT=<dir> cargo test -p rkdumpctl --
    /// --ignored capture_printk`): the ring's memory regions (trailing zeros left out) and the
    /// VMCOREINFO text. See vmcore/testdata/README.md.
    #[test]
    #[ignore = "capture tool, run by hand on a real vmcore"]
    fn capture_printk() {
        use rkdump_vmcore::kernel::{KernelInfo, OldVirt, Translator, VirtMemory};
        use rkdump_vmcore::report::printk::{Layout, ring_regions};
        use std::os::unix::fs::FileExt;

        let path = std::env::var("RKDUMP_CAPTURE_VMCORE").expect("RKDUMP_CAPTURE_VMCORE");
        let out = std::path::PathBuf::from(std::env::var("RKDUMP_CAPTURE_OUT").expect("OUT"));
        let file = std::fs::File::open(&path).unwrap();
        let mut head = vec![0u8; 64 << 10];
        let n = file.read_at(&mut head, 0).unwrap();
        let core = rkdump_vmcore::header::ElfCoreHeader::parse_file(&head[..n]).unwrap();
        let mut note_bytes = Vec::new();
        for (_, p) in core.notes() {
            let mut b = vec![0u8; p.p_filesz as usize];
            file.read_exact_at(&mut b, p.p_offset).unwrap();
            note_bytes.extend(b);
        }
        let notes = rkdump_vmcore::notes::Notes::parse_merged(&note_bytes);
        let vi = notes.vmcoreinfo().unwrap();
        let info = KernelInfo::parse(&vi).unwrap();
        let t = Translator::new(&info);
        let mut mem = super::FileMemory {
            file: &file,
            loads: core.loads().map(|(_, p)| *p).collect(),
        };
        let mut virt = OldVirt::new(&mut mem, &t);
        let layout = Layout::from_vmcoreinfo(&vi).unwrap();
        let mut blob = Vec::new();
        for (va, len) in ring_regions(&mut virt, &layout).unwrap() {
            let mut b = vec![0u8; len as usize];
            virt.read_virt(va, &mut b).unwrap();
            let keep = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
            blob.extend(va.to_le_bytes());
            blob.extend(len.to_le_bytes());
            blob.extend((keep as u64).to_le_bytes());
            blob.extend(&b[..keep]);
        }
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("regions.bin"), blob).unwrap();
        std::fs::write(out.join("vmcoreinfo.txt"), vi.text()).unwrap();
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_735_689_600), "2025-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400 + 3661), "2000-02-29 01:01:01 UTC");
    }
}
