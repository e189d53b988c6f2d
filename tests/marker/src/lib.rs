//! The marker page pattern and the marker's console report: the one definition shared by the
//! in-guest marker program (`rkdump-marker`) and the host-side dump checker (xtask).
//!
//! Every 4 KiB marker page is a pure function of `(tag, index)`:
//!
//! | bytes | content |
//! |---|---|
//! | 0..16 | [`MAGIC`] (`"RKDUMPMARK-PAGE\n"`) |
//! | 16..24 | page index, u64 little-endian |
//! | 24..32 | per-run tag, u64 little-endian |
//! | 32..4096 | 508 u64 LE words from a splitmix64 stream seeded by `(tag, index)` |
//!
//! So a checker can find marker pages in a dump by their magic, learn `(tag, index)` from the
//! header, and verify the other 4064 bytes without knowing where the page was.
//!
//! Console report (one line each, printed by the marker, parsed by [`ReportLine::parse`]):
//! ```text
//! marker tag=0x<16 hex> pages=<n> runs=<r>
//! marker run <first_index> 0x<first_pfn> <count>      (pages first_index.. sit at consecutive pfns)
//! marker done
//! marker moved <n>                                     (pfns changed after the report: map is stale)
//! marker error: <text>
//! ```
#![forbid(unsafe_code)]

/// Size of a marker page (x86_64 base page).
pub const PAGE_SIZE: usize = 4096;

/// The first 16 bytes of every marker page.
pub const MAGIC: [u8; 16] = *b"RKDUMPMARK-PAGE\n";

/// One step of splitmix64 (Steele, Lea, Flood 2014): advances `state` and returns the next word.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes marker page number `index` of the run identified by `tag` into `out`.
pub fn page_pattern(tag: u64, index: u64, out: &mut [u8; PAGE_SIZE]) {
    out[0..16].copy_from_slice(&MAGIC);
    out[16..24].copy_from_slice(&index.to_le_bytes());
    out[24..32].copy_from_slice(&tag.to_le_bytes());
    let mut state = tag ^ index.rotate_left(32) ^ 0x524B_4455_4D50_4D4B;
    for word in out[32..].chunks_exact_mut(8) {
        word.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
}

/// Reads `(tag, index)` from a page that starts with [`MAGIC`]; `None` for any other page.
/// This only looks at the header: use [`page_matches`] to verify the whole page.
pub fn page_header(page: &[u8; PAGE_SIZE]) -> Option<(u64, u64)> {
    if page[0..16] != MAGIC {
        return None;
    }
    let index = u64::from_le_bytes(page[16..24].try_into().ok()?);
    let tag = u64::from_le_bytes(page[24..32].try_into().ok()?);
    Some((tag, index))
}

/// True if `page` is exactly marker page `index` of run `tag`.
pub fn page_matches(tag: u64, index: u64, page: &[u8; PAGE_SIZE]) -> bool {
    let mut want = [0u8; PAGE_SIZE];
    page_pattern(tag, index, &mut want);
    want == *page
}

/// Pages `first_index .. first_index + count` sit at pfns `first_pfn .. first_pfn + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Index of the first marker page of the run.
    pub first_index: u64,
    /// Physical frame number of that page.
    pub first_pfn: u64,
    /// Number of pages in the run (at least 1).
    pub count: u64,
}

/// Compresses a per-page pfn list into runs of consecutive pfns.
pub fn runs_from_pfns(pfns: &[u64]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (index, &pfn) in (0u64..).zip(pfns) {
        match runs.last_mut() {
            Some(r) if r.first_index + r.count == index && r.first_pfn + r.count == pfn => {
                r.count += 1;
            }
            _ => runs.push(Run {
                first_index: index,
                first_pfn: pfn,
                count: 1,
            }),
        }
    }
    runs
}

/// Looks up the pfn of marker page `index` in a run list.
pub fn pfn_of(runs: &[Run], index: u64) -> Option<u64> {
    runs.iter()
        .find(|r| index >= r.first_index && index - r.first_index < r.count)
        .map(|r| r.first_pfn + (index - r.first_index))
}

/// One line of the marker's console report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportLine {
    /// `marker tag=0x<hex> pages=<n> runs=<r>`
    Header {
        /// The per-run tag written into every page.
        tag: u64,
        /// Number of marker pages.
        pages: u64,
        /// Number of `run` lines that follow.
        runs: u64,
    },
    /// `marker run <first_index> 0x<first_pfn> <count>`
    Run(Run),
    /// `marker done`: the report is complete and the memory is filled and locked.
    Done,
    /// `marker moved <n>`: n pages changed pfn after the report.
    Moved(u64),
    /// `marker error: <text>`
    Error(String),
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl ReportLine {
    /// Parses a console line; the report may be preceded by other text on the line
    /// (e.g. a kernel message that interleaved), so this looks for `marker ` anywhere.
    pub fn parse(line: &str) -> Option<ReportLine> {
        let at = line.find("marker ")?;
        let rest = line[at + "marker ".len()..].trim_end();
        if let Some(text) = rest.strip_prefix("error: ") {
            return Some(ReportLine::Error(text.to_string()));
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words.as_slice() {
            ["done"] => Some(ReportLine::Done),
            ["moved", n] => Some(ReportLine::Moved(parse_u64(n)?)),
            ["run", i, p, c] => Some(ReportLine::Run(Run {
                first_index: parse_u64(i)?,
                first_pfn: parse_u64(p)?,
                count: parse_u64(c)?,
            })),
            [tag, pages, runs] => Some(ReportLine::Header {
                tag: parse_u64(tag.strip_prefix("tag=")?)?,
                pages: parse_u64(pages.strip_prefix("pages=")?)?,
                runs: parse_u64(runs.strip_prefix("runs=")?)?,
            }),
            _ => None,
        }
    }
}

impl core::fmt::Display for ReportLine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReportLine::Header { tag, pages, runs } => {
                write!(f, "marker tag={tag:#018x} pages={pages} runs={runs}")
            }
            ReportLine::Run(r) => {
                write!(
                    f,
                    "marker run {} {:#x} {}",
                    r.first_index, r.first_pfn, r.count
                )
            }
            ReportLine::Done => write!(f, "marker done"),
            ReportLine::Moved(n) => write!(f, "marker moved {n}"),
            ReportLine::Error(e) => write!(f, "marker error: {e}"),
        }
    }
}

/// A complete marker report collected from a console log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Tag from the header line.
    pub tag: u64,
    /// Page count from the header line.
    pub pages: u64,
    /// The pfn runs, in order.
    pub runs: Vec<Run>,
    /// `marker done` was seen.
    pub done: bool,
    /// Largest `marker moved` count seen (0 if none).
    pub moved: u64,
    /// `marker error:` texts.
    pub errors: Vec<String>,
}

impl Report {
    /// Collects the report from console lines (only the first header counts).
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Report> {
        let mut report: Option<Report> = None;
        for line in lines {
            let Some(parsed) = ReportLine::parse(line) else {
                continue;
            };
            match (parsed, report.as_mut()) {
                (ReportLine::Header { tag, pages, .. }, None) => {
                    report = Some(Report {
                        tag,
                        pages,
                        ..Report::default()
                    });
                }
                (ReportLine::Header { .. }, Some(_)) => {}
                (ReportLine::Run(run), Some(r)) => r.runs.push(run),
                (ReportLine::Done, Some(r)) => r.done = true,
                (ReportLine::Moved(n), Some(r)) => r.moved = r.moved.max(n),
                (ReportLine::Error(e), Some(r)) => r.errors.push(e),
                (ReportLine::Error(e), None) => {
                    report = Some(Report {
                        errors: vec![e],
                        ..Report::default()
                    });
                }
                (_, None) => {}
            }
        }
        report
    }

    /// Checks that the runs cover pages `0..pages` exactly once, in order.
    pub fn validate(&self) -> Result<(), String> {
        if !self.errors.is_empty() {
            return Err(format!(
                "marker reported errors: {}",
                self.errors.join("; ")
            ));
        }
        if !self.done {
            return Err("marker report incomplete (no `marker done`)".into());
        }
        let mut next = 0u64;
        for r in &self.runs {
            if r.first_index != next || r.count == 0 {
                return Err(format!(
                    "marker run at index {} breaks coverage (expected {next})",
                    r.first_index
                ));
            }
            next += r.count;
        }
        if next != self.pages {
            return Err(format!(
                "marker runs cover {next} pages, header says {}",
                self.pages
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_distinct() {
        let mut a = [0u8; PAGE_SIZE];
        let mut b = [0u8; PAGE_SIZE];
        page_pattern(7, 3, &mut a);
        page_pattern(7, 3, &mut b);
        assert_eq!(a, b);
        assert_eq!(page_header(&a), Some((7, 3)));
        assert!(page_matches(7, 3, &a));
        page_pattern(7, 4, &mut b);
        assert_ne!(a[32..], b[32..]);
        page_pattern(8, 3, &mut b);
        assert_ne!(a[32..], b[32..]);
        a[4095] ^= 1;
        assert!(!page_matches(7, 3, &a));
        assert_eq!(page_header(&[0u8; PAGE_SIZE]), None);
    }

    #[test]
    fn runs_compress_and_look_up() {
        let runs = runs_from_pfns(&[10, 11, 12, 5, 7, 8]);
        assert_eq!(
            runs,
            vec![
                Run {
                    first_index: 0,
                    first_pfn: 10,
                    count: 3
                },
                Run {
                    first_index: 3,
                    first_pfn: 5,
                    count: 1
                },
                Run {
                    first_index: 4,
                    first_pfn: 7,
                    count: 2
                },
            ]
        );
        assert_eq!(pfn_of(&runs, 2), Some(12));
        assert_eq!(pfn_of(&runs, 5), Some(8));
        assert_eq!(pfn_of(&runs, 6), None);
    }

    #[test]
    fn report_round_trips() {
        let lines = [
            ReportLine::Header {
                tag: 0xdead_beef,
                pages: 3,
                runs: 2,
            },
            ReportLine::Run(Run {
                first_index: 0,
                first_pfn: 0x1000,
                count: 2,
            }),
            ReportLine::Run(Run {
                first_index: 2,
                first_pfn: 0x3000,
                count: 1,
            }),
            ReportLine::Done,
        ];
        let text: Vec<String> = lines.iter().map(|l| format!("[ 1.0] {l}")).collect();
        for (l, t) in lines.iter().zip(&text) {
            assert_eq!(ReportLine::parse(t).as_ref(), Some(l));
        }
        let report = Report::from_lines(text.iter().map(String::as_str)).unwrap();
        assert_eq!(report.tag, 0xdead_beef);
        assert_eq!(report.runs.len(), 2);
        report.validate().unwrap();
        let mut bad = report.clone();
        bad.pages = 4;
        assert!(bad.validate().is_err());
        bad = report;
        bad.done = false;
        assert!(bad.validate().is_err());
    }
}
