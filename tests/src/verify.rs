//! Checks a vmcore the way its consumers will read it: the ELF shape crash and makedumpfile
//! insist on (one PT_NOTE first, then PT_LOADs), NT_PRSTATUS per CPU and VMCOREINFO, every
//! marker page at the physical frame the marker process reported (from /proc/self/pagemap),
//! `readelf -lnW` and `makedumpfile --dump-dmesg` on the file.
//!
//! The headers are parsed with goblin and the pages read through `Read + Seek`, so a dump of a
//! multi-GiB guest is never held in memory.

use std::fmt;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, ET_CORE};
use goblin::elf::program_header::program_header64::SIZEOF_PHDR;
use goblin::elf::program_header::{PT_LOAD, PT_NOTE, ProgramHeader};
use goblin::elf::{Elf, Header};
use rkdump_marker::{PAGE_SIZE, Report, page_matches};

use crate::tools;

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

/// Outcome of a successful marker check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerStats {
    /// Pages verified.
    pub pages: u64,
    /// PT_LOAD headers in the vmcore.
    pub loads: usize,
}

/// Why a vmcore failed verification.
#[derive(Debug)]
pub enum Error {
    /// A part of the file could not be read.
    Read {
        /// What was being read.
        what: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not an ELF64 little-endian core with 64-bit program headers.
    NotCore(String),
    /// The program headers are not one PT_NOTE followed by PT_LOADs.
    Shape(&'static str),
    /// No VMCOREINFO note with OSRELEASE.
    NoOsrelease,
    /// The NT_PRSTATUS count differs from the first kernel's CPU count.
    Cpus {
        /// NT_PRSTATUS notes found.
        notes: usize,
        /// CPUs the first kernel had.
        cpus: usize,
    },
    /// The marker's report is unusable (errors, pages moved, incomplete).
    Report(String),
    /// Marker pages outside every PT_LOAD or with the wrong content.
    MarkerPages {
        /// Pages in no PT_LOAD.
        missing: u64,
        /// The first few pages with wrong content.
        wrong: Vec<String>,
    },
    /// readelf or makedumpfile failed.
    Tool(tools::Error),
    /// readelf did not list the notes crash needs.
    Readelf(String),
    /// makedumpfile's recovered log lacks the crash.
    NoCrashInLog,
    /// Marker pages that a filtered dump should have left out are in the file.
    MarkerPresent {
        /// Pages some PT_LOAD's file data holds.
        present: u64,
        /// Of those, pages whose bytes are the marker pattern.
        intact: u64,
    },
}

/// What a dump must hold of the marker pages (user data, anonymous memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerExpect {
    /// Every page at its frame, byte-exact (full dumps, dump levels without bit 8).
    Present,
    /// No page in any PT_LOAD's file data (dump levels with bit 8, user data).
    Absent,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { what, source } => write!(f, "{what}: {source}"),
            Error::NotCore(why) => write!(f, "not an ELF64 core: {why}"),
            Error::Shape(why) => f.write_str(why),
            Error::NoOsrelease => f.write_str("no VMCOREINFO with OSRELEASE"),
            Error::Cpus { notes, cpus } => write!(
                f,
                "{notes} NT_PRSTATUS notes, the first kernel had {cpus} CPUs"
            ),
            Error::Report(why) => f.write_str(why),
            Error::MarkerPages { missing, wrong } => write!(
                f,
                "{missing} marker pages outside every PT_LOAD; wrong content: {}",
                if wrong.is_empty() {
                    "none".into()
                } else {
                    wrong.join(", ")
                }
            ),
            Error::Tool(e) => e.fmt(f),
            Error::Readelf(text) => write!(
                f,
                "readelf -lnW did not show NT_PRSTATUS and VMCOREINFO:\n{text}"
            ),
            Error::NoCrashInLog => f.write_str(
                "the crashed kernel's log (makedumpfile --dump-dmesg) lacks the crash (sysrq or init exit)",
            ),
            Error::MarkerPresent { present, intact } => write!(
                f,
                "{present} marker pages are in the file ({intact} byte-exact), the dump level should have left them out"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

impl From<tools::Error> for Error {
    fn from(e: tools::Error) -> Error {
        Error::Tool(e)
    }
}

fn read_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Read { what, source }
}

/// Reads the ELF header and program headers of an ELF64 little-endian core file.
fn read_headers(f: &mut (impl Read + Seek)) -> Result<(Header, Vec<ProgramHeader>), Error> {
    let mut eh = [0u8; 64];
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_exact(&mut eh))
        .map_err(read_err("ELF header"))?;
    let header = Elf::parse_header(&eh).map_err(|e| Error::NotCore(e.to_string()))?;
    if header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB {
        return Err(Error::NotCore("not ELF64 little-endian".into()));
    }
    if header.e_type != ET_CORE {
        return Err(Error::NotCore(format!(
            "e_type {} is not ET_CORE",
            header.e_type
        )));
    }
    let phentsize = usize::from(header.e_phentsize);
    if phentsize != SIZEOF_PHDR {
        return Err(Error::NotCore(format!("e_phentsize {phentsize}")));
    }
    let phnum = usize::from(header.e_phnum);
    let mut ph = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(header.e_phoff))
        .and_then(|_| f.read_exact(&mut ph))
        .map_err(read_err("program headers"))?;
    let phdrs = ProgramHeader::parse(&ph, 0, phnum, Ctx::new(Container::Big, Endian::Little))
        .map_err(|e| Error::NotCore(format!("program headers: {e}")))?;
    Ok((header, phdrs))
}

/// Checks every page of `report` in the vmcore `f`: each must sit at its reported frame, found
/// through any PT_LOAD (the kernel-text PT_LOAD can alias RAM), with exactly the pattern of
/// `rkdump_marker::page_pattern`.
pub fn check_marker_pages(
    f: &mut (impl Read + Seek),
    report: &Report,
) -> Result<MarkerStats, Error> {
    let (loads, _) = walk_marker_pages(f, report, None)?;
    Ok(MarkerStats {
        pages: report.pages,
        loads,
    })
}

/// The marker pages of a vmcore prefix (`rkdumpctl save --partial` of an interrupted dump): every
/// page of `report` whose bytes lie wholly in the file must be byte-exact; pages beyond its end
/// are counted, not checked. Returns (pages checked, pages beyond the end).
pub fn check_marker_prefix(path: &Path, report: &Report) -> Result<(u64, u64), Error> {
    let file = std::fs::File::open(path).map_err(read_err(path.display().to_string()))?;
    let len = file
        .metadata()
        .map_err(read_err(path.display().to_string()))?
        .len();
    let (_, counts) = walk_marker_pages(&mut BufReader::new(file), report, Some(len))?;
    Ok(counts)
}

/// Checks every marker page of `report` that a PT_LOAD holds and that ends within `file_len`
/// (the whole file when `None`). A page no PT_LOAD holds, or one with the wrong bytes, is an
/// error. Returns the PT_LOAD count and (pages checked, pages beyond `file_len`).
fn walk_marker_pages(
    f: &mut (impl Read + Seek),
    report: &Report,
    file_len: Option<u64>,
) -> Result<(usize, (u64, u64)), Error> {
    report.validate().map_err(Error::Report)?;
    let (_, phdrs) = read_headers(f)?;
    let loads: Vec<&ProgramHeader> = phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    let mut page = [0u8; PAGE_SIZE];
    let (mut checked, mut beyond, mut missing) = (0u64, 0u64, 0u64);
    let mut bad: Vec<String> = Vec::new();
    for run in &report.runs {
        for i in 0..run.count {
            let index = run.first_index + i;
            let phys = (run.first_pfn + i) * PAGE_SIZE as u64;
            let Some(l) = loads
                .iter()
                .find(|l| phys >= l.p_paddr && phys + PAGE_SIZE as u64 <= l.p_paddr + l.p_filesz)
            else {
                missing += 1;
                continue;
            };
            let at = l.p_offset + (phys - l.p_paddr);
            if file_len.is_some_and(|len| at + PAGE_SIZE as u64 > len) {
                beyond += 1;
                continue;
            }
            f.seek(SeekFrom::Start(at))
                .and_then(|_| f.read_exact(&mut page))
                .map_err(read_err(format!("page {index} at {phys:#x}")))?;
            checked += 1;
            if !page_matches(report.tag, index, &page) && bad.len() < 10 {
                bad.push(format!("page {index} at {phys:#x}"));
            }
        }
    }
    if missing > 0 || !bad.is_empty() {
        return Err(Error::MarkerPages {
            missing,
            wrong: bad,
        });
    }
    Ok((loads.len(), (checked, beyond)))
}

/// Checks that no page of `report` is in the file data of any PT_LOAD (a PT_LOAD may still
/// cover it with `p_memsz`, which readers see as zeros). Returns the pages checked.
pub fn check_marker_absent(f: &mut (impl Read + Seek), report: &Report) -> Result<u64, Error> {
    report.validate().map_err(Error::Report)?;
    let (_, phdrs) = read_headers(f)?;
    let loads: Vec<&ProgramHeader> = phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    let mut page = [0u8; PAGE_SIZE];
    let (mut present, mut intact) = (0u64, 0u64);
    for run in &report.runs {
        for i in 0..run.count {
            let index = run.first_index + i;
            let phys = (run.first_pfn + i) * PAGE_SIZE as u64;
            for l in loads
                .iter()
                .filter(|l| phys + PAGE_SIZE as u64 > l.p_paddr && phys < l.p_paddr + l.p_filesz)
            {
                present += 1;
                if phys >= l.p_paddr && phys + PAGE_SIZE as u64 <= l.p_paddr + l.p_filesz {
                    f.seek(SeekFrom::Start(l.p_offset + (phys - l.p_paddr)))
                        .and_then(|_| f.read_exact(&mut page))
                        .map_err(read_err(format!("page {index} at {phys:#x}")))?;
                    if page_matches(report.tag, index, &page) {
                        intact += 1;
                    }
                }
            }
        }
    }
    if present > 0 {
        return Err(Error::MarkerPresent { present, intact });
    }
    Ok(report.pages)
}

/// [`check_marker_pages`] on the file at `path`.
pub fn check_marker_file(path: &Path, report: &Report) -> Result<MarkerStats, Error> {
    let f = std::fs::File::open(path).map_err(read_err(path.display().to_string()))?;
    check_marker_pages(&mut BufReader::new(f), report)
}

/// Verifies `vmcore`; `markers` and `cpus` are what the first kernel reported. `readelf.txt` and
/// `dmesg.txt` land in `dir`.
pub fn vmcore(
    path: &Path,
    markers: Option<&Report>,
    cpus: Option<usize>,
    dir: &Path,
) -> Result<Verified, Error> {
    vmcore_expect(path, markers, MarkerExpect::Present, cpus, dir)
}

/// [`vmcore`] with the marker pages expected present or absent (a filtered dump).
pub fn vmcore_expect(
    path: &Path,
    markers: Option<&Report>,
    expect: MarkerExpect,
    cpus: Option<usize>,
    dir: &Path,
) -> Result<Verified, Error> {
    let file = std::fs::File::open(path).map_err(read_err(path.display().to_string()))?;
    let mut f = BufReader::new(file);
    let (_, phdrs) = read_headers(&mut f)?;
    let mut v = Verified::default();
    if phdrs.first().map(|p| p.p_type) != Some(PT_NOTE) {
        return Err(Error::Shape(
            "phdr 0 is not PT_NOTE (crash's is_netdump needs it first)",
        ));
    }
    if phdrs.iter().skip(1).any(|p| p.p_type != PT_LOAD) {
        return Err(Error::Shape("a phdr after the first is not PT_LOAD"));
    }
    v.loads = phdrs.len() - 1;
    let note = &phdrs[0];
    let len = usize::try_from(note.p_filesz)
        .map_err(|_| Error::Shape("PT_NOTE larger than the address space"))?;
    let mut notes = vec![0u8; len];
    f.seek(SeekFrom::Start(note.p_offset))
        .and_then(|_| f.read_exact(&mut notes))
        .map_err(read_err("PT_NOTE"))?;
    let parsed = rkdump_vmcore::notes::Notes::parse_merged(&notes);
    v.cpus = parsed.prstatus_count();
    v.osrelease = parsed
        .vmcoreinfo()
        .and_then(|i| i.osrelease().map(str::to_string))
        .ok_or(Error::NoOsrelease)?;
    if let Some(want) = cpus
        && v.cpus != want
    {
        return Err(Error::Cpus {
            notes: v.cpus,
            cpus: want,
        });
    }
    if let Some(r) = markers {
        v.marker_pages = match expect {
            MarkerExpect::Present => check_marker_pages(&mut f, r)?.pages,
            MarkerExpect::Absent => check_marker_absent(&mut f, r)?,
        };
    }

    let text = tools::output(Command::new("readelf").arg("-lnW").arg(path))?;
    let _ = std::fs::write(dir.join("readelf.txt"), &text);
    if !text.contains("NT_PRSTATUS") || !text.contains("VMCOREINFO") {
        return Err(Error::Readelf(text));
    }

    let dmesg = dir.join("dmesg.txt");
    let _ = std::fs::remove_file(&dmesg);
    tools::output(
        Command::new("makedumpfile")
            .arg("--dump-dmesg")
            .arg(path)
            .arg(&dmesg),
    )?;
    let log = std::fs::read_to_string(&dmesg).map_err(read_err(dmesg.display().to_string()))?;
    if !log.contains(crate::console::SYSRQ_LINE) && !log.contains(crate::console::INIT_EXIT_LINE) {
        return Err(Error::NoCrashInLog);
    }
    let lines: Vec<&str> = log.lines().collect();
    v.dmesg_tail = lines[lines.len().saturating_sub(12)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    Ok(v)
}

/// The marker pages in a kdump-compressed file (`rkdump.format=kdump`), read with
/// `rkdump_vmcore::kdump::KdumpFile`: with [`MarkerExpect::Present`] every page is dumped at its
/// frame and byte-exact, with [`MarkerExpect::Absent`] none is dumped (bitmap 2 clear). Returns
/// the marker pages found dumped.
pub fn kdump_markers(
    file: &rkdump_vmcore::kdump::KdumpFile<'_>,
    marker: &rkdump_marker::Report,
    expect: MarkerExpect,
) -> Result<u64, String> {
    let mut index_of = std::collections::HashMap::new();
    for r in &marker.runs {
        for i in 0..r.count {
            index_of.insert(r.first_pfn + i, r.first_index + i);
        }
    }
    let (mut dumped, mut wrong) = (0u64, Vec::new());
    file.for_each_page(&mut |pfn, _, page| {
        if let Some(&index) = index_of.get(&pfn) {
            dumped += 1;
            let page: &[u8; PAGE_SIZE] = page.try_into().expect("pages are 4 KiB");
            if !rkdump_marker::page_matches(marker.tag, index, page) && wrong.len() < 5 {
                wrong.push(pfn);
            }
        }
    })
    .map_err(|e| e.to_string())?;
    let total = index_of.len() as u64;
    match expect {
        MarkerExpect::Present if dumped != total => {
            Err(format!("{dumped} of {total} marker pages dumped"))
        }
        MarkerExpect::Present if !wrong.is_empty() => {
            Err(format!("marker pages differ at frames {wrong:#x?}"))
        }
        MarkerExpect::Absent if dumped != 0 => Err(format!(
            "{dumped} of {total} marker pages (user data) dumped at a level that excludes them"
        )),
        _ => Ok(dumped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkdump_marker::{Run, page_pattern};
    use std::io::Cursor;

    /// An ELF core with one PT_NOTE and one PT_LOAD for physical 0x10000..0x14000 at offset 0x1000.
    fn core(tag: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x1000 + 4 * PAGE_SIZE];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[0x10..0x12].copy_from_slice(&4u16.to_le_bytes());
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        f[64..68].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        let l = 64 + 56;
        f[l..l + 4].copy_from_slice(&1u32.to_le_bytes());
        f[l + 8..l + 16].copy_from_slice(&0x1000u64.to_le_bytes());
        f[l + 24..l + 32].copy_from_slice(&0x10000u64.to_le_bytes());
        f[l + 32..l + 40].copy_from_slice(&(4 * PAGE_SIZE as u64).to_le_bytes());
        // Marker pages 0,1 at pfns 0x12,0x13; page 2 at pfn 0x10.
        for (index, pfn) in [(0u64, 0x12u64), (1, 0x13), (2, 0x10)] {
            let mut p = [0u8; PAGE_SIZE];
            page_pattern(tag, index, &mut p);
            let at = 0x1000 + (pfn as usize - 0x10) * PAGE_SIZE;
            f[at..at + PAGE_SIZE].copy_from_slice(&p);
        }
        f
    }

    fn report(tag: u64) -> Report {
        Report {
            tag,
            pages: 3,
            runs: vec![
                Run {
                    first_index: 0,
                    first_pfn: 0x12,
                    count: 2,
                },
                Run {
                    first_index: 2,
                    first_pfn: 0x10,
                    count: 1,
                },
            ],
            done: true,
            ..Report::default()
        }
    }

    #[test]
    fn finds_all_pages() {
        let stats = check_marker_pages(&mut Cursor::new(core(5)), &report(5)).unwrap();
        assert_eq!(stats, MarkerStats { pages: 3, loads: 1 });
    }

    #[test]
    fn detects_wrong_tag_corruption_and_missing_pages() {
        assert!(check_marker_pages(&mut Cursor::new(core(5)), &report(6)).is_err());
        let mut c = core(5);
        c[0x1000 + 2 * PAGE_SIZE + 100] ^= 0xff;
        assert!(
            check_marker_pages(&mut Cursor::new(c), &report(5))
                .unwrap_err()
                .to_string()
                .contains("page 0")
        );
        let mut r = report(5);
        r.runs[1].first_pfn = 0x40;
        assert!(matches!(
            check_marker_pages(&mut Cursor::new(core(5)), &r),
            Err(Error::MarkerPages { missing: 1, .. })
        ));
        assert!(check_marker_pages(&mut Cursor::new(vec![0u8; 64]), &report(5)).is_err());
    }

    #[test]
    fn absent_check_fails_while_the_pages_are_there() {
        // All three pages are in the PT_LOAD: the absent check must fail and count them.
        assert!(matches!(
            check_marker_absent(&mut Cursor::new(core(5)), &report(5)),
            Err(Error::MarkerPresent {
                present: 3,
                intact: 3
            })
        ));
        // A filtered dump: the PT_LOAD's file data ends before the marker frames (p_filesz one
        // page, p_memsz still four).
        let mut c = core(5);
        let l = 64 + 56;
        c[l + 32..l + 40].copy_from_slice(&(PAGE_SIZE as u64).to_le_bytes());
        c[l + 40..l + 48].copy_from_slice(&(4 * PAGE_SIZE as u64).to_le_bytes());
        let mut r = report(5);
        r.runs.truncate(1);
        r.pages = 2;
        assert_eq!(
            check_marker_absent(&mut Cursor::new(c.clone()), &r).unwrap(),
            2
        );
        // Page 2 at pfn 0x10 is still in the file data.
        assert!(matches!(
            check_marker_absent(&mut Cursor::new(c), &report(5)),
            Err(Error::MarkerPresent { present: 1, .. })
        ));
    }

    #[test]
    fn refuses_cores_that_are_not_elf64_core() {
        let mut c = core(5);
        c[0x10] = 2; // ET_EXEC
        assert!(matches!(
            check_marker_pages(&mut Cursor::new(c), &report(5)),
            Err(Error::NotCore(why)) if why.contains("ET_CORE")
        ));
    }
}
