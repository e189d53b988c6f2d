//! Verifies the marker's pages inside an ELF vmcore: every page the marker reported (index ->
//! pfn, from the first kernel's console) must be found through the vmcore's PT_LOADs at that
//! physical address with exactly the pattern of `rkdump_marker::page_pattern`.
//! `cargo xtask e2e check-marker <vmcore> <console.log>`.

use std::io::{Read, Seek, SeekFrom};

use rkdump_marker::{PAGE_SIZE, Report, page_matches};

/// One PT_LOAD: physical range and where its bytes are in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Load {
    paddr: u64,
    filesz: u64,
    offset: u64,
}

/// Outcome of a successful check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerStats {
    /// Pages verified.
    pub pages: u64,
    /// PT_LOAD headers in the vmcore.
    pub loads: usize,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads the PT_LOAD headers of an ELF64 little-endian core file.
fn read_loads(f: &mut (impl Read + Seek)) -> Result<Vec<Load>, String> {
    let mut eh = [0u8; 64];
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_exact(&mut eh))
        .map_err(|e| format!("ELF header: {e}"))?;
    if eh[0..4] != *b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Err("not an ELF64 little-endian file".into());
    }
    if u16_at(&eh, 0x10) != 4 {
        return Err(format!("e_type {} is not ET_CORE", u16_at(&eh, 0x10)));
    }
    let (phoff, phentsize, phnum) = (
        u64_at(&eh, 0x20),
        u16_at(&eh, 0x36) as usize,
        u16_at(&eh, 0x38) as usize,
    );
    if phentsize < 56 {
        return Err(format!("e_phentsize {phentsize}"));
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut ph))
        .map_err(|e| format!("program headers: {e}"))?;
    Ok(ph
        .chunks_exact(phentsize)
        .filter(|p| u32_at(p, 0) == 1)
        .map(|p| Load {
            offset: u64_at(p, 8),
            paddr: u64_at(p, 24),
            filesz: u64_at(p, 32),
        })
        .collect())
}

/// Checks every page of `report` in the vmcore `f`.
pub fn check_marker_pages(
    f: &mut (impl Read + Seek),
    report: &Report,
) -> Result<MarkerStats, String> {
    report.validate()?;
    let loads = read_loads(f)?;
    let mut page = [0u8; PAGE_SIZE];
    let mut bad: Vec<String> = Vec::new();
    let mut missing = 0u64;
    for run in &report.runs {
        for i in 0..run.count {
            let index = run.first_index + i;
            let phys = (run.first_pfn + i) * PAGE_SIZE as u64;
            // The kernel-text PT_LOAD can alias RAM; any PT_LOAD holding the page will do.
            let Some(l) = loads
                .iter()
                .find(|l| phys >= l.paddr && phys + PAGE_SIZE as u64 <= l.paddr + l.filesz)
            else {
                missing += 1;
                continue;
            };
            f.seek(SeekFrom::Start(l.offset + (phys - l.paddr)))
                .and_then(|_| f.read_exact(&mut page))
                .map_err(|e| format!("reading page {index} at {phys:#x}: {e}"))?;
            if !page_matches(report.tag, index, &page) && bad.len() < 10 {
                bad.push(format!("page {index} at {phys:#x}"));
            }
        }
    }
    if missing > 0 || !bad.is_empty() {
        return Err(format!(
            "{missing} marker pages outside every PT_LOAD; wrong content: {}",
            if bad.is_empty() {
                "none".into()
            } else {
                bad.join(", ")
            }
        ));
    }
    Ok(MarkerStats {
        pages: report.pages,
        loads: loads.len(),
    })
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
                .contains("page 0")
        );
        let mut r = report(5);
        r.runs[1].first_pfn = 0x40;
        assert!(
            check_marker_pages(&mut Cursor::new(core(5)), &r)
                .unwrap_err()
                .starts_with("1 marker pages outside")
        );
        assert!(check_marker_pages(&mut Cursor::new(vec![0u8; 64]), &report(5)).is_err());
    }
}
