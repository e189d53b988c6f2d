//! Time against RAM size (issue 13): for each configuration measured at two or more guest
//! sizes, the least-squares line through its median sysrq -> durable times, in seconds per GiB
//! of RAM, and for the filtered rows also per GiB of pages kept (the filter's `examined -
//! excluded`). Rendered as a markdown section and as chart panels.

use std::fmt::Write as _;

use super::cases::Kind;
use super::markdown::fmt_s;
use super::stats::{Row, rams, row};
use super::svg::Panel;

/// Bytes per page: the kept-page counts become GiB.
const PAGE: f64 = 4096.0;
const GIB: f64 = (1u64 << 30) as f64;

/// Least-squares slope and intercept of `points` (x, y); `None` with fewer than two distinct x.
pub(super) fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// One configuration's line.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Line {
    pub(super) kind: Kind,
    pub(super) label: String,
    /// (RAM GiB, median durable s, median kept GiB).
    pub(super) points: Vec<(u32, f64, Option<f64>)>,
    /// Seconds per GiB of RAM, and the intercept.
    pub(super) per_ram: Option<(f64, f64)>,
    /// Seconds per GiB kept (filtered rows whose kept size changed between sizes).
    pub(super) per_kept: Option<(f64, f64)>,
}

/// The line of every configuration with a durable time at two or more sizes.
pub(super) fn lines(rows: &[Row]) -> Vec<Line> {
    let sizes = rams(rows);
    let mut kinds: Vec<Kind> = rows.iter().map(|r| r.kind).collect();
    kinds.sort();
    kinds.dedup();
    kinds
        .into_iter()
        .filter_map(|kind| {
            let points: Vec<(u32, f64, Option<f64>)> = sizes
                .iter()
                .filter_map(|&ram| {
                    let r = row(rows, ram, kind)?;
                    let durable = r.med(|s| s.durable)?;
                    let kept = r.med(|s| s.kept_pages.map(|p| p as f64 * PAGE / GIB));
                    Some((ram, durable, kept))
                })
                .collect();
            let per_ram = fit(&points
                .iter()
                .map(|p| (f64::from(p.0), p.1))
                .collect::<Vec<_>>())?;
            let kept: Vec<(f64, f64)> = points.iter().filter_map(|p| Some((p.2?, p.1))).collect();
            let label = rows
                .iter()
                .find(|r| r.kind == kind)
                .map_or_else(|| kind.label().to_string(), Row::label);
            Some(Line {
                kind,
                label,
                per_kept: (kept.len() == points.len()).then(|| fit(&kept)).flatten(),
                per_ram: Some(per_ram),
                points,
            })
        })
        .collect()
}

/// The markdown section (empty when no configuration ran at two sizes).
pub(super) fn render(rows: &[Row]) -> String {
    let lines = lines(rows);
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "## Time against RAM (slope)\n\n\
         Least-squares line through the median sysrq -> durable time at each size. `kept` is what the \
         filter kept (`examined - excluded` pages of its console line, as GiB of RAM).\n\n\
         | configuration | sysrq -> durable at each size (kept) | seconds per GiB of RAM | seconds per GiB kept |\n\
         |---|---|---|---|\n",
    );
    for l in &lines {
        let points: Vec<String> = l
            .points
            .iter()
            .map(|(ram, t, kept)| match kept {
                Some(k) => format!("{ram} GiB: {} ({k:.3} GiB kept)", fmt_s(Some(*t))),
                None => format!("{ram} GiB: {}", fmt_s(Some(*t))),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            l.label,
            points.join("; "),
            l.per_ram
                .map_or("-".into(), |(m, c)| format!("{m:.3} (intercept {c:.2} s)")),
            l.per_kept
                .map_or("-".into(), |(m, c)| format!("{m:.2} (intercept {c:.2} s)")),
        );
    }
    s.push('\n');
    s
}

/// Chart panels: sysrq -> durable per size for each configuration with a line, and the slopes.
pub(super) fn panels(rows: &[Row]) -> Vec<Panel> {
    let lines = lines(rows);
    if lines.is_empty() {
        return Vec::new();
    }
    let bars = lines
        .iter()
        .flat_map(|l| {
            l.points
                .iter()
                .map(move |(ram, t, _)| (format!("{}, {ram} GiB", l.label), *t))
        })
        .collect();
    let slopes = lines
        .iter()
        .filter_map(|l| Some((l.label.clone(), l.per_ram?.0.max(0.0))))
        .collect();
    vec![
        Panel {
            title: "sysrq -> dump durable against guest RAM, median".into(),
            unit: "s, host clock; shorter is better".into(),
            bars,
        },
        Panel {
            title: "slope: seconds per GiB of guest RAM (least squares)".into(),
            unit: "s/GiB; shorter is better".into(),
            bars: slopes,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::measure::Sample;
    use crate::bench::stats::testdata::sample;

    #[test]
    fn the_fit_recovers_a_line() {
        let (m, c) = fit(&[(1.0, 3.0), (4.0, 9.0), (16.0, 33.0)]).unwrap();
        assert!((m - 2.0).abs() < 1e-12 && (c - 1.0).abs() < 1e-12);
        assert_eq!(fit(&[(1.0, 3.0)]), None);
        assert_eq!(fit(&[(4.0, 3.0), (4.0, 5.0)]), None);
    }

    fn sized(kind: Kind, ram: u32, durable: f64, kept: Option<u64>) -> Row {
        Row {
            ram_gib: ram,
            kind,
            crashkernel: 16,
            samples: vec![Sample {
                kept_pages: kept,
                ..sample(durable, durable, 1 << 20)
            }],
            search: None,
            image: None,
        }
    }

    #[test]
    fn filtered_and_full_rows_get_their_slopes() {
        let gib_pages = (1u64 << 30) / 4096;
        let rows = vec![
            sized(Kind::RkdumpL31Lzo, 1, 1.0, Some(gib_pages / 8)),
            sized(Kind::RkdumpL31Lzo, 16, 1.6, Some(gib_pages / 4)),
            sized(Kind::RkdumpL0Lzo, 1, 2.0, None),
            sized(Kind::RkdumpL0Lzo, 16, 32.0, None),
            // One size only: no line.
            sized(Kind::PeerMkdf, 1, 20.0, None),
        ];
        let l = lines(&rows);
        assert_eq!(l.len(), 2);
        let filtered = l.iter().find(|l| l.kind == Kind::RkdumpL31Lzo).unwrap();
        assert!((filtered.per_ram.unwrap().0 - 0.04).abs() < 1e-9);
        // 0.6 s more for 0.125 GiB more kept.
        assert!((filtered.per_kept.unwrap().0 - 4.8).abs() < 1e-9);
        let full = l.iter().find(|l| l.kind == Kind::RkdumpL0Lzo).unwrap();
        assert!((full.per_ram.unwrap().0 - 2.0).abs() < 1e-9);
        assert_eq!(full.per_kept, None);
        let md = render(&rows);
        assert!(
            md.contains("| 0.040 (intercept 0.96 s) | 4.80 (intercept"),
            "{md}"
        );
        let p = panels(&rows);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].bars.len(), 4);
        assert_eq!(p[1].bars.len(), 2);
        assert!(render(&rows[4..]).is_empty() && panels(&rows[4..]).is_empty());
    }
}
