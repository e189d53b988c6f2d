//! Statistics over the runs: medians, per-repetition ratios, the `crashkernel=` bisection, and
//! the rows (all runs of one configuration at one RAM size) the reports are made of.

use super::cases::Kind;
use super::measure::Sample;

/// Median of the values (mean of the middle two for an even count).
pub(super) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Ratios a_i / b_i of the runs paired by repetition (pairs with a missing side are skipped).
pub(super) fn pair_ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y != 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

/// What a bisection found: the smallest passing candidate and every (candidate, passed) probe.
pub(super) type Bisected = (Option<u32>, Vec<(u32, bool)>);

/// A figure taken from a sample.
pub(super) type Figure = fn(&Sample) -> Option<f64>;

/// Smallest candidate for which `probe` passes, assuming pass is monotonic in the candidate
/// (sorted ascending); binary search, one probe per step. Returns the answer and the probes.
pub(super) fn bisect(
    candidates: &[u32],
    mut probe: impl FnMut(u32) -> Result<bool, String>,
) -> Result<Bisected, String> {
    let (mut lo, mut hi) = (0usize, candidates.len());
    let mut probes = Vec::new();
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let pass = probe(candidates[mid])?;
        probes.push((candidates[mid], pass));
        if pass {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok((candidates.get(lo).copied(), probes))
}

/// The crashkernel search of one configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Search {
    /// Smallest passing candidate (MiB), None if none passed.
    pub(super) smallest: Option<u32>,
    /// (MiB, passed, failure note) in probe order.
    pub(super) probes: Vec<(u32, bool, String)>,
}

/// All runs of one configuration at one RAM size.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Row {
    pub(super) ram_gib: u32,
    pub(super) kind: Kind,
    /// crashkernel= of the timed runs (MiB).
    pub(super) crashkernel: u32,
    pub(super) samples: Vec<Sample>,
    pub(super) search: Option<Search>,
    /// Capture kernel image + initrd (bytes), and how it splits.
    pub(super) image: Option<(u64, String)>,
}

impl Row {
    /// The configuration's name in tables and charts; rkdump rows name their checksum kind
    /// (from the runs' consoles: "checksum ?" when no run reported one, "mixed" if they differ).
    pub(super) fn label(&self) -> String {
        if !self.kind.is_rkdump() {
            return self.kind.label().to_string();
        }
        let mut kinds: Vec<&str> = self
            .samples
            .iter()
            .filter_map(|s| s.checksum.as_deref())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let ck = match kinds.as_slice() {
            [] => "?",
            [one] => one,
            _ => "mixed",
        };
        format!("{}, checksum {ck}", self.kind.label())
    }

    pub(super) fn values(&self, f: impl Fn(&Sample) -> Option<f64>) -> Vec<Option<f64>> {
        self.samples
            .iter()
            .map(|s| if s.ok { f(s) } else { None })
            .collect()
    }
    pub(super) fn med(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.values(f).into_iter().flatten().collect();
        median(&v)
    }
    pub(super) fn ok_runs(&self) -> usize {
        self.samples.iter().filter(|s| s.ok).count()
    }
}

pub(super) fn row(rows: &[Row], ram: u32, kind: Kind) -> Option<&Row> {
    rows.iter().find(|r| r.ram_gib == ram && r.kind == kind)
}

/// Median of the pair-by-pair ratios rkdump (NVMe) / `other` for one figure.
pub(super) fn ratio(rows: &[Row], ram: u32, other: Kind, f: Figure) -> Option<f64> {
    ratio_of(rows, ram, Kind::Rkdump, other, f)
}

/// Median of the pair-by-pair ratios `kind` / `other` for one figure.
pub(super) fn ratio_of(rows: &[Row], ram: u32, kind: Kind, other: Kind, f: Figure) -> Option<f64> {
    let a = row(rows, ram, kind)?;
    let b = row(rows, ram, other)?;
    median(&pair_ratios(&a.values(f), &b.values(f)))
}

pub(super) fn rams(rows: &[Row]) -> Vec<u32> {
    let mut v: Vec<u32> = rows.iter().map(|r| r.ram_gib).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Canned samples and rows for the report tests.
#[cfg(test)]
pub(super) mod testdata {
    use super::*;
    use crate::bench::cases::Kind;
    use crate::bench::measure::Sample;

    pub(in crate::bench) fn sample(durable: f64, secs: f64, bytes: u64) -> Sample {
        Sample {
            ok: true,
            first_line: Some(durable / 10.0),
            durable: Some(durable),
            write_secs: Some(secs),
            written: Some(bytes),
            vmcore: Some(bytes),
            ..Sample::default()
        }
    }

    pub(in crate::bench) fn rows() -> Vec<Row> {
        let gib = 1u64 << 30;
        vec![
            Row {
                ram_gib: 1,
                kind: Kind::Rkdump,
                crashkernel: 16,
                samples: vec![
                    Sample {
                        checksum: Some("full (default)".into()),
                        report_ms: Some(21.0),
                        ..sample(1.0, 0.9, gib)
                    },
                    Sample {
                        checksum: Some("full (default)".into()),
                        report_ms: Some(35.0),
                        ..sample(1.2, 1.1, gib)
                    },
                    Sample::failed("x"),
                ],
                search: Some(Search {
                    smallest: Some(8),
                    probes: vec![
                        (80, true, String::new()),
                        (8, true, String::new()),
                        (4, false, "oom".into()),
                    ],
                }),
                image: Some((365_568, "bzImage".into())),
            },
            Row {
                ram_gib: 1,
                kind: Kind::PeerRaw,
                crashkernel: 256,
                samples: vec![
                    sample(15.0, 10.0, gib),
                    sample(12.0, 10.0, gib),
                    sample(20.0, 12.0, gib),
                ],
                search: Some(Search {
                    smallest: Some(80),
                    probes: vec![],
                }),
                image: Some((15 << 20, "vmlinuz + cpio".into())),
            },
            Row {
                ram_gib: 1,
                kind: Kind::RawDd,
                crashkernel: 16,
                samples: vec![
                    sample(0.0, 1.0, gib),
                    sample(0.0, 1.0, gib),
                    sample(0.0, 1.0, gib),
                ],
                search: None,
                image: None,
            },
            Row {
                ram_gib: 1,
                kind: Kind::GuestElf,
                crashkernel: 16,
                samples: vec![
                    sample(2.0, 1.5, gib),
                    sample(2.4, 1.5, gib),
                    sample(2.0, 1.5, gib),
                ],
                search: None,
                image: None,
            },
            Row {
                ram_gib: 1,
                kind: Kind::HostLimit,
                crashkernel: 16,
                samples: vec![
                    sample(1.0, 1.0, gib),
                    sample(1.0, 1.0, gib),
                    sample(1.0, 1.0, gib),
                ],
                search: None,
                image: None,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::rows;
    use super::*;
    use crate::bench::cases::{PEER_CANDIDATES, RKDUMP_CANDIDATES};

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn pairs_skip_missing_sides() {
        let a = [Some(1.0), None, Some(3.0), Some(4.0)];
        let b = [Some(2.0), Some(2.0), None, Some(8.0)];
        assert_eq!(pair_ratios(&a, &b), vec![0.5, 0.5]);
        assert_eq!(pair_ratios(&[Some(1.0)], &[Some(0.0)]), Vec::<f64>::new());
    }

    #[test]
    fn bisection_finds_the_threshold() {
        for threshold in [0u32, 5, 16, 17, 80, 512, 513, 10_000] {
            let mut calls = 0;
            let (found, probes) = bisect(&RKDUMP_CANDIDATES, |m| {
                calls += 1;
                Ok(m >= threshold)
            })
            .unwrap();
            let expect = RKDUMP_CANDIDATES.iter().copied().find(|&m| m >= threshold);
            assert_eq!(found, expect, "threshold {threshold}");
            assert!(calls <= 5, "{calls} probes");
            assert_eq!(probes.len(), calls);
        }
        let (found, probes) = bisect(&[], |_| Ok(true)).unwrap();
        assert_eq!((found, probes.len()), (None, 0));
        assert!(bisect(&PEER_CANDIDATES, |_| Err("qemu".to_string())).is_err());
    }

    #[test]
    fn ratios_are_paired_by_repetition() {
        let r = rows();
        // durable: 1.0/15, 1.2/12 (the third rkdump run failed) -> median of two.
        let got = ratio(&r, 1, Kind::PeerRaw, |s| s.durable).unwrap();
        assert!((got - (1.0 / 15.0 + 0.1) / 2.0).abs() < 1e-12);
        // rate: (1024/0.9)/1024, (1024/1.1)/1024
        let got = ratio(&r, 1, Kind::RawDd, Sample::rate).unwrap();
        assert!((got - (1.0 / 0.9 + 1.0 / 1.1) / 2.0).abs() < 1e-12);
        assert_eq!(ratio(&r, 1, Kind::PeerMkdf, |s| s.durable), None);
        assert_eq!(ratio(&r, 4, Kind::PeerRaw, |s| s.durable), None);
    }
}
