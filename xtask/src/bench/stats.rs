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

/// Median of the pair-by-pair ratios rkdump / `other` for one figure.
pub(super) fn ratio(rows: &[Row], ram: u32, other: Kind, f: Figure) -> Option<f64> {
    let a = row(rows, ram, Kind::Rkdump)?;
    let b = row(rows, ram, other)?;
    median(&pair_ratios(&a.values(f), &b.values(f)))
}

pub(super) fn rams(rows: &[Row]) -> Vec<u32> {
    let mut v: Vec<u32> = rows.iter().map(|r| r.ram_gib).collect();
    v.sort_unstable();
    v.dedup();
    v
}
