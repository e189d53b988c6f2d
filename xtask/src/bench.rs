//! `cargo xtask bench` (issue 8): rkdump against Linux kdump (the peer) and against the dump
//! disk's raw limit, in one QEMU configuration with one first-kernel crash.
//!
//! Every configuration runs the e2e harness (`crate::e2e`): Debian's kernel as the first kernel
//! in QEMU (TCG, q35, 2 vCPUs), the marker filling a quarter of guest RAM, `kexec -p` (kexec_load,
//! Debian's default), `echo c > /proc/sysrq-trigger`. The dump disk is the same in every
//! configuration: an NVMe controller behind a pcie-root-port, raw image, `cache=unsafe`.
//!
//! * `rkdump`: rkdump's bzImage with `crashkernel=16M`; durable = `rkdump: dump complete`
//!   (written after the flush); the dump is then extracted and verified on the host.
//! * `peer-raw`: Debian's own kernel as capture kernel with kdump-tools' command line
//!   (`reset_devices nr_cpus=1 irqpoll nousb`) and a busybox initramfs whose /init copies
//!   /proc/vmcore raw to the disk (`dd bs=1M conv=fsync`); durable = `E2E: vmcore saved`; the
//!   marker pages are checked in the copy on the host.
//! * `peer-mkdf`: the same, with kdump-tools' collector `makedumpfile -c -d 31` (as a flattened
//!   stream, `-F`, into `dd conv=fsync`); durable = `E2E: makedumpfile done`; the stream is
//!   walked on the host (its length is the bytes written).
//! * `rawdd`: no crash; the first kernel writes the same number of bytes (whole blocks) to the
//!   same disk with `dd oflag=direct bs=4M` (`--rawdd-bs` for other sizes).
//!
//! Times are host-clock differences between console lines (`e2e::qemu` stamps each line when
//! the host reads it); guest clocks appear only as cross-checks in the per-run list. Writes
//! `target/bench/results.md` and `target/bench/chart.svg` and prints the table.

use std::fmt::Write as _;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::e2e::console::{ConsoleLog, Line};
use crate::e2e::{self, CaptureKind, Case, DiskKind, Harness, marker_check};

const USAGE: &str = "\
usage: cargo xtask bench [options]
  --slow             also 4 GiB guests (default: 1 GiB only)
  --quick            1 repetition, no crashkernel= bisection (for iteration)
  --reps N           repetitions per configuration (default 3; --quick 1)
  --no-bisect        skip the smallest-crashkernel= search
  --ram LIST         guest RAM sizes in GiB, comma list (overrides --slow)
  --only LIST        configurations, comma list of rkdump,peer-raw,peer-mkdf,rawdd
  --rawdd-bs MIB     block size of the raw dd (default 4)
  --rkdump-append S  extra rkdump parameters (A/B runs, e.g. \"rkdump.checksum=full\")
  --disk-dir DIR      where disk images and run directories live during the runs (default:
                     /dev/shm/rkdump-bench when the host has the memory, else target/bench/work)
  --sparse           leave disk images sparse (default: timed runs write them full of zeros
                     first, so the host holds the pages before QEMU writes the dump)
  --no-build         use the existing target/rkdump/bzImage
  --first-kernel P   first kernel (default: newest /boot/vmlinuz-*)
  --keep             keep disk images and per-run artefacts
  --strict           exit non-zero when a target is missed
  --verbose          echo whole consoles
Writes target/bench/results.md, target/bench/chart.svg; console logs in target/bench/runs/.";

const MIB: f64 = (1u64 << 20) as f64;

/// What results.md says about comparing the rows.
const NOTES: &str = "\
- Each capture kernel dumps all RAM outside its own reservation: the peer's /proc/vmcore is smaller \
than rkdump's dump by the difference of the `crashkernel=` sizes (256M vs 16M), so the peer \
writes fewer bytes in the durable-time comparison.
- The raw dd is the Linux first kernel's O_DIRECT write path under TCG: it measures what an \
emulated Linux can push into the emulated NVMe (the image is in RAM or the host page cache), not \
a real disk; a capture kernel with less per-page work can exceed it (bs=4M, 16M and 64M all \
gave 0.9-1.6 GB/s here).
- makedumpfile -d 31 drops free, cache, user and zero pages and compresses the rest: it writes \
far fewer bytes, so its MiB/s is not comparable; its durable time is.
- Fresh host memory is slow on this machine type: free-page reporting hands freed RAM back to \
the outer hypervisor, and touching it again runs at about 450 MB/s (a 12 GB tmpfs write: \
453 MB/s the first time, 1.3 GB/s right after). A sparse image is allocated while QEMU writes \
the dump, so timed runs write their images full of zeros first (`--sparse` to compare).
- Disk images live on tmpfs by default: with file-backed images (`--disk-dir` on a disk file \
system) the host's dirty-page limit (about 2.2 GB here) throttles QEMU's writes to the host \
disk's writeback rate during large dumps, whichever kernel writes them.
- first capture line: rkdump's `rkdump: entered`, Linux's `Linux version` (after purgatory's \
SHA-256 check of the loaded segments and the decompression).
";

/// `crashkernel=` used by the timed runs of each capture kernel (MiB).
const RKDUMP_CRASHKERNEL: u32 = 16;
/// The peer's timed runs: the 256M of measured-facts.md (Fedora's default for 2G-64G machines).
const PEER_CRASHKERNEL: u32 = 256;

/// Bisection candidates (MiB) for the peer: 16M..512M.
const PEER_CANDIDATES: [u32; 16] = [
    16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 448, 512,
];
/// rkdump's candidates also go below 16M, to report how low it goes.
const RKDUMP_CANDIDATES: [u32; 20] = [
    2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 448, 512,
];

/// One measured configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// rkdump as capture kernel.
    Rkdump,
    /// Linux capture kernel, raw copy of /proc/vmcore.
    PeerRaw,
    /// Linux capture kernel, makedumpfile -c -d 31.
    PeerMkdf,
    /// The first kernel's `dd oflag=direct` of the same bytes: the disk's limit.
    RawDd,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Rkdump, Kind::PeerRaw, Kind::PeerMkdf, Kind::RawDd];

    fn slug(self) -> &'static str {
        match self {
            Kind::Rkdump => "rkdump",
            Kind::PeerRaw => "peer-raw",
            Kind::PeerMkdf => "peer-mkdf",
            Kind::RawDd => "rawdd",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Rkdump => "rkdump",
            Kind::PeerRaw => "Linux peer, raw copy",
            Kind::PeerMkdf => "Linux peer, makedumpfile -c -d 31",
            Kind::RawDd => "raw dd oflag=direct (first kernel)",
        }
    }

    fn from_slug(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.slug() == s)
    }

    /// `crashkernel=` of the timed runs (the raw dd run never kexecs; it keeps rkdump's).
    fn crashkernel(self) -> u32 {
        match self {
            Kind::Rkdump | Kind::RawDd => RKDUMP_CRASHKERNEL,
            Kind::PeerRaw | Kind::PeerMkdf => PEER_CRASHKERNEL,
        }
    }

    fn candidates(self) -> &'static [u32] {
        match self {
            Kind::Rkdump => &RKDUMP_CANDIDATES,
            Kind::PeerRaw | Kind::PeerMkdf => &PEER_CANDIDATES,
            Kind::RawDd => &[],
        }
    }

    fn capture(self) -> CaptureKind {
        match self {
            Kind::PeerRaw | Kind::PeerMkdf => CaptureKind::Linux,
            Kind::Rkdump | Kind::RawDd => CaptureKind::Rkdump,
        }
    }
}

/// The figures of one run. Times in seconds (host clock).
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    /// The run produced a complete, checked dump (or the raw dd succeeded).
    ok: bool,
    /// Why not, or a note.
    why: String,
    /// `sysrq: Trigger a crash` -> the capture kernel's first console line.
    first_line: Option<f64>,
    /// `sysrq: Trigger a crash` -> the dump is durable.
    durable: Option<f64>,
    /// Start-of-write line -> durable line.
    write_secs: Option<f64>,
    /// Bytes the collector wrote to the disk.
    written: Option<u64>,
    /// Size of the vmcore the collector read (rkdump: its dump size).
    vmcore: Option<u64>,
    /// The same write measured by the guest clock (cross-check only).
    guest_secs: Option<f64>,
    /// rkdump's frame-allocator peak (KiB).
    peak_kib: Option<u64>,
    /// rkdump's loaded image size in memory (bytes).
    image_len: Option<u64>,
    /// Host CPUs other processes kept busy during the run, on average (the machine has 2 and
    /// QEMU's TCG threads want both: timings of a busy run are not comparable).
    others_busy: Option<f64>,
}

impl Sample {
    /// Write rate in MiB/s.
    fn rate(&self) -> Option<f64> {
        let s = self.write_secs.filter(|s| *s > 0.0)?;
        Some(self.written? as f64 / MIB / s)
    }

    fn failed(why: impl Into<String>) -> Sample {
        Sample {
            why: why.into(),
            ..Sample::default()
        }
    }
}

/// `key=value` in a whitespace-separated text.
fn kv<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The first line containing `needle`, and the text after it.
fn find<'a>(lines: &'a [Line], needle: &str) -> Option<(Duration, &'a str)> {
    lines.iter().find_map(|l| {
        l.text
            .find(needle)
            .map(|i| (l.t, &l.text[i + needle.len()..]))
    })
}

fn secs_between(from: Duration, to: Duration) -> Option<f64> {
    to.checked_sub(from).map(|d| d.as_secs_f64())
}

/// Guest-clock seconds from `start=<uptime> end=<uptime>`.
fn uptime_delta(text: &str) -> Option<f64> {
    let a: f64 = kv(text, "start")?.parse().ok()?;
    let b: f64 = kv(text, "end")?.parse().ok()?;
    (b >= a).then_some(b - a)
}

fn hex_or_dec(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The figures of one run from its console. `flat` is the host's walk of a makedumpfile
/// flattened stream on the disk (peer-mkdf only).
fn measure(kind: Kind, log: &ConsoleLog, flat: Option<Result<u64, String>>) -> Sample {
    if kind == Kind::RawDd {
        return measure_rawdd(&log.lines);
    }
    let Some(i) = log.sysrq_index() else {
        return Sample::failed("no `sysrq: Trigger a crash` line");
    };
    let sysrq = log.lines[i].t;
    let after = log.capture_lines();
    let mut s = Sample::default();
    match kind {
        Kind::Rkdump => {
            s.first_line = find(after, "rkdump: entered").and_then(|(t, _)| secs_between(sysrq, t));
            let start = find(after, "rkdump: dump start ");
            let done = find(after, "rkdump: dump complete ");
            s.vmcore = start.and_then(|(_, a)| kv(a, "bytes")?.parse().ok());
            if let Some((t, args)) = done {
                s.durable = secs_between(sysrq, t);
                s.written = kv(args, "bytes").and_then(|v| v.parse().ok());
                s.guest_secs = kv(args, "ms")
                    .and_then(|v| v.parse::<f64>().ok())
                    .map(|ms| ms / 1000.0);
                s.write_secs = start.and_then(|(t0, _)| secs_between(t0, t));
                let target = kv(args, "target").unwrap_or("");
                s.ok = target.starts_with("disk:") && s.written.is_some() && s.written == s.vmcore;
                if !s.ok {
                    s.why = format!("dump complete {args} (dump start bytes={:?})", s.vmcore);
                }
            } else {
                s.why = "no `rkdump: dump complete` line".into();
            }
            s.peak_kib = find(after, "rkdump: memory peak=")
                .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok());
            s.image_len = find(after, "rkdump: memory image=").and_then(|(_, v)| {
                let range = v.split_whitespace().next()?;
                hex_or_dec(range.split_once('+')?.1)
            });
        }
        Kind::PeerRaw | Kind::PeerMkdf => {
            s.first_line = find(after, "Linux version ").and_then(|(t, _)| secs_between(sysrq, t));
            s.vmcore = find(after, "E2E: vmcore size=")
                .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok());
            let (start, done) = if kind == Kind::PeerRaw {
                // The copy starts right after the `vmcore size` line (init.sh).
                (
                    find(after, "E2E: vmcore size="),
                    find(after, "E2E: vmcore saved "),
                )
            } else {
                (
                    find(after, "E2E: makedumpfile start"),
                    find(after, "E2E: makedumpfile done "),
                )
            };
            let Some((t, args)) = done else {
                // (the first kernel's own `sysrq triggered crash` panic is not the capture's)
                let panic = after.iter().find_map(|l| {
                    let i = l.text.find("Kernel panic")?;
                    (!l.text.contains("sysrq triggered crash")).then(|| &l.text[i..])
                });
                s.why = match panic {
                    Some(p) => format!("capture kernel: {p}"),
                    None if s.first_line.is_none() => "the capture kernel never printed".into(),
                    None => "the capture /init never reported the dump".into(),
                };
                return s;
            };
            s.durable = secs_between(sysrq, t);
            s.write_secs = start.and_then(|(t0, _)| secs_between(t0, t));
            s.guest_secs = uptime_delta(args);
            let rc = kv(args, "rc");
            if kind == Kind::PeerRaw {
                s.written = s.vmcore;
                s.ok = rc == Some("0") && s.vmcore.is_some();
                if !s.ok {
                    s.why = format!("vmcore saved {args}");
                }
            } else {
                let ddrc = kv(args, "ddrc");
                match (rc, ddrc, flat) {
                    (Some("0"), Some("0"), Some(Ok(n))) => {
                        s.written = Some(n);
                        s.ok = true;
                    }
                    (Some("0"), Some("0"), Some(Err(e))) => s.why = format!("stream on disk: {e}"),
                    (Some("0"), Some("0"), None) => s.why = "stream on disk not checked".into(),
                    _ => s.why = format!("makedumpfile done {args}"),
                }
            }
        }
        Kind::RawDd => return measure_rawdd(&log.lines),
    }
    s
}

fn measure_rawdd(lines: &[Line]) -> Sample {
    let mut s = Sample::default();
    let start = find(lines, "E2E: rawdd start");
    let Some((t, args)) = find(lines, "E2E: rawdd done ") else {
        s.why = "no `E2E: rawdd done` line".into();
        return s;
    };
    s.written = kv(args, "bytes")
        .and_then(|v| v.parse().ok())
        .filter(|&b| b > 0);
    s.write_secs = start.and_then(|(t0, _)| secs_between(t0, t));
    s.guest_secs = uptime_delta(args);
    s.ok = kv(args, "rc") == Some("0") && s.written.is_some() && s.write_secs.is_some();
    if !s.ok {
        s.why = format!("rawdd done {args}");
    }
    s
}

/// Length of the makedumpfile flattened stream (`makedumpfile -F`) at the start of `r`: a
/// 4096-byte header (signature "makedumpfile", big-endian i64 type 1 and version 1), then
/// records of (offset, size) as big-endian i64 each followed by `size` bytes, ended by the
/// record (-1, -1) (makedumpfile.h: `makedumpfile_header`, `makedumpfile_data_header`).
fn flattened_len(r: &mut (impl Read + Seek)) -> Result<u64, String> {
    const HEADER: u64 = 4096;
    let mut h = [0u8; 32];
    r.seek(SeekFrom::Start(0))
        .and_then(|_| r.read_exact(&mut h))
        .map_err(|e| format!("header: {e}"))?;
    if !h.starts_with(b"makedumpfile\0") {
        return Err("no makedumpfile flattened header".into());
    }
    let be = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    if be(&h[16..24]) != 1 {
        return Err(format!("flattened header type {}", be(&h[16..24])));
    }
    let mut pos = HEADER;
    let mut rec = [0u8; 16];
    loop {
        r.seek(SeekFrom::Start(pos))
            .and_then(|_| r.read_exact(&mut rec))
            .map_err(|e| format!("record at {pos}: {e}"))?;
        let (offset, size) = (be(&rec[..8]), be(&rec[8..]));
        pos += 16;
        if offset == -1 && size == -1 {
            return Ok(pos);
        }
        if offset < 0 || size < 0 {
            return Err(format!(
                "bad record at {}: offset {offset} size {size}",
                pos - 16
            ));
        }
        pos = pos
            .checked_add(size as u64)
            .ok_or_else(|| format!("record size {size} overflows"))?;
    }
}

/// USER_HZ: the unit of /proc/stat and /proc/<pid>/stat times on Linux/x86.
const USER_HZ: f64 = 100.0;

/// Busy time of all CPUs (jiffies) from /proc/stat's first line.
fn total_busy(stat: &str) -> Option<u64> {
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// This process's CPU time plus that of its reaped children (utime stime cutime cstime, jiffies)
/// from /proc/self/stat.
fn own_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(3) ppid ... utime is field 14, i.e. index 11 here.
    (11..15).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

/// (all CPUs' busy jiffies, our own + children's jiffies) now.
fn cpu_snapshot() -> Option<(u64, u64)> {
    let all = total_busy(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let own = own_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some((all, own))
}

/// Average number of CPUs that processes other than us (and our children) used between two
/// snapshots taken `wall` apart.
fn others_busy(before: (u64, u64), after: (u64, u64), wall: Duration) -> Option<f64> {
    let all = after.0.checked_sub(before.0)?;
    let own = after.1.checked_sub(before.1)?;
    let secs = wall.as_secs_f64();
    (secs > 0.0).then(|| all.saturating_sub(own) as f64 / USER_HZ / secs)
}

/// A timed run is repeated when other processes kept more than this many CPUs busy during it.
const BUSY_LIMIT: f64 = 0.25;
/// Attempts per timed run (the last one counts, busy or not).
const ATTEMPTS: usize = 3;

/// Median of the values (mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
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
fn pair_ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y != 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

/// What a bisection found: the smallest passing candidate and every (candidate, passed) probe.
type Bisected = (Option<u32>, Vec<(u32, bool)>);

/// A figure taken from a sample.
type Figure = fn(&Sample) -> Option<f64>;

/// Smallest candidate for which `probe` passes, assuming pass is monotonic in the candidate
/// (sorted ascending); binary search, one probe per step. Returns the answer and the probes.
fn bisect(
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
struct Search {
    /// Smallest passing candidate (MiB), None if none passed.
    smallest: Option<u32>,
    /// (MiB, passed, failure note) in probe order.
    probes: Vec<(u32, bool, String)>,
}

/// All runs of one configuration at one RAM size.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    ram_gib: u32,
    kind: Kind,
    /// crashkernel= of the timed runs (MiB).
    crashkernel: u32,
    samples: Vec<Sample>,
    search: Option<Search>,
    /// Capture kernel image + initrd (bytes), and how it splits.
    image: Option<(u64, String)>,
}

impl Row {
    fn values(&self, f: impl Fn(&Sample) -> Option<f64>) -> Vec<Option<f64>> {
        self.samples
            .iter()
            .map(|s| if s.ok { f(s) } else { None })
            .collect()
    }
    fn med(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.values(f).into_iter().flatten().collect();
        median(&v)
    }
    fn ok_runs(&self) -> usize {
        self.samples.iter().filter(|s| s.ok).count()
    }
}

fn fmt_s(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} s"))
}
fn fmt_bytes(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0} ({:.1} MiB)", v, v / MIB))
}
fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// The main markdown table.
fn render_table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| RAM | configuration | crashkernel= | ok runs | sysrq -> first capture line | sysrq -> dump durable | bytes written | write time | MiB/s | smallest crashkernel= | image + initrd | peak memory |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let search = match &r.search {
            None => "not searched".to_string(),
            Some(Search {
                smallest: Some(m), ..
            }) => format!("{m}M"),
            Some(Search { smallest: None, .. }) => "none passed".to_string(),
        };
        let peak = match (
            r.med(|s| s.peak_kib.map(|v| v as f64)),
            r.med(|s| s.image_len.map(|v| v as f64)),
        ) {
            (Some(p), Some(i)) => format!("{p:.0} KiB (+ {:.0} KiB image)", i / 1024.0),
            (Some(p), None) => format!("{p:.0} KiB"),
            _ => "-".into(),
        };
        let crash = r.kind != Kind::RawDd;
        let _ = writeln!(
            s,
            "| {} GiB | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.ram_gib,
            r.kind.label(),
            if crash {
                format!("{}M", r.crashkernel)
            } else {
                "- (no crash)".into()
            },
            r.ok_runs(),
            r.samples.len(),
            if crash {
                fmt_s(r.med(|s| s.first_line))
            } else {
                "-".into()
            },
            if crash {
                fmt_s(r.med(|s| s.durable))
            } else {
                "-".into()
            },
            fmt_bytes(r.med(|s| s.written.map(|v| v as f64))),
            fmt_s(r.med(|s| s.write_secs)),
            r.med(Sample::rate)
                .map_or("-".into(), |v| format!("{v:.1}")),
            if crash { search } else { "-".into() },
            r.image.as_ref().map_or("-".into(), |(b, how)| format!(
                "{:.2} MiB ({how})",
                *b as f64 / MIB
            )),
            peak
        );
    }
    s
}

fn row(rows: &[Row], ram: u32, kind: Kind) -> Option<&Row> {
    rows.iter().find(|r| r.ram_gib == ram && r.kind == kind)
}

/// Median of the pair-by-pair ratios rkdump / `other` for one figure.
fn ratio(rows: &[Row], ram: u32, other: Kind, f: Figure) -> Option<f64> {
    let a = row(rows, ram, Kind::Rkdump)?;
    let b = row(rows, ram, other)?;
    median(&pair_ratios(&a.values(f), &b.values(f)))
}

fn rams(rows: &[Row]) -> Vec<u32> {
    let mut v: Vec<u32> = rows.iter().map(|r| r.ram_gib).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The ratio table: rkdump / other, median of the per-repetition pairs.
fn render_ratios(rows: &[Row]) -> String {
    let mut s = String::from(
        "| RAM | figure | rkdump / peer raw | rkdump / peer makedumpfile | rkdump / raw dd |\n|---|---|---|---|---|\n",
    );
    let figures: [(&str, Figure); 3] = [
        ("sysrq -> first capture line (s)", |s| s.first_line),
        ("sysrq -> dump durable (s)", |s| s.durable),
        ("write rate (MiB/s)", Sample::rate),
    ];
    for ram in rams(rows) {
        for (name, f) in figures {
            let write = name.starts_with("write");
            let raw = if write {
                fmt_ratio(ratio(rows, ram, Kind::RawDd, f))
            } else {
                "-".into()
            };
            // makedumpfile writes a filtered, compressed dump: its MiB/s is not comparable.
            let mkdf = if write {
                "n/a (compressed output)".into()
            } else {
                fmt_ratio(ratio(rows, ram, Kind::PeerMkdf, f))
            };
            let _ = writeln!(
                s,
                "| {ram} GiB | {name} | {} | {mkdf} | {raw} |",
                fmt_ratio(ratio(rows, ram, Kind::PeerRaw, f)),
            );
        }
    }
    s
}

/// One verdict line per target of issue 8.
fn render_targets(rows: &[Row], bzimage_len: u64) -> (String, bool) {
    let mut s = String::new();
    let mut all = true;
    let mut line = |met: Option<bool>, text: String| {
        let tag = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        all &= met == Some(true);
        let _ = writeln!(s, "- **{tag}**: {text}");
    };
    // 1. sysrq -> durable at least 10x faster than the peer's raw copy at 1 GiB.
    let speedup = ratio(rows, 1, Kind::PeerRaw, |s| s.durable).map(|r| 1.0 / r);
    let (rk, peer) = (
        row(rows, 1, Kind::Rkdump).and_then(|r| r.med(|s| s.durable)),
        row(rows, 1, Kind::PeerRaw).and_then(|r| r.med(|s| s.durable)),
    );
    line(
        speedup.map(|x| x >= 10.0),
        match speedup {
            Some(x) => format!(
                "sysrq -> dump durable at 1 GiB is {x:.2}x faster than the peer's raw copy (target >= 10x{}); medians rkdump {} vs peer {}",
                if x >= 10.0 {
                    String::new()
                } else {
                    format!(", missed by a factor {:.2}", 10.0 / x)
                },
                fmt_s(rk),
                fmt_s(peer)
            ),
            None => {
                "sysrq -> dump durable vs the peer's raw copy at 1 GiB: no successful pair".into()
            }
        },
    );
    // 2. crashkernel=16M or less at any guest RAM size.
    for ram in rams(rows) {
        let Some(r) = row(rows, ram, Kind::Rkdump) else {
            continue;
        };
        let (met, text) = match &r.search {
            Some(Search {
                smallest: Some(m), ..
            }) => (
                Some(*m <= 16),
                format!(
                    "{ram} GiB: smallest working crashkernel= for rkdump is {m}M (target <= 16M)"
                ),
            ),
            Some(Search { smallest: None, .. }) => (
                Some(false),
                format!("{ram} GiB: no crashkernel= up to 512M worked for rkdump"),
            ),
            None if r.crashkernel <= 16 && r.ok_runs() > 0 => (
                Some(true),
                format!(
                    "{ram} GiB: rkdump completed {}/{} timed runs with crashkernel={}M (smallest not searched)",
                    r.ok_runs(),
                    r.samples.len(),
                    r.crashkernel
                ),
            ),
            None => (
                None,
                format!("{ram} GiB: no successful rkdump run at <= 16M"),
            ),
        };
        line(met, text);
    }
    // 3. dump rate at least 90% of the raw dd rate on the same disk.
    for ram in rams(rows) {
        let share = ratio(rows, ram, Kind::RawDd, Sample::rate);
        let (a, b) = (
            row(rows, ram, Kind::Rkdump).and_then(|r| r.med(Sample::rate)),
            row(rows, ram, Kind::RawDd).and_then(|r| r.med(Sample::rate)),
        );
        line(
            share.map(|x| x >= 0.9),
            match share {
                Some(x) => format!(
                    "{ram} GiB: rkdump writes at {:.0}% of the raw dd rate (target >= 90%{}); medians {:.1} vs {:.1} MiB/s",
                    x * 100.0,
                    if x >= 0.9 {
                        String::new()
                    } else {
                        format!(", missed by {:.0} points", (0.9 - x) * 100.0)
                    },
                    a.unwrap_or(f64::NAN),
                    b.unwrap_or(f64::NAN)
                ),
                None => format!("{ram} GiB: rkdump vs raw dd rate: no successful pair"),
            },
        );
    }
    // 4. bzImage at most 1 MiB.
    line(
        Some(bzimage_len <= 1 << 20),
        format!(
            "bzImage is {bzimage_len} bytes ({:.1}% of the 1 MiB limit)",
            bzimage_len as f64 / MIB * 100.0
        ),
    );
    (s, all)
}

/// Every run, for the record (guest-clock cross-checks included).
fn render_runs(rows: &[Row]) -> String {
    let mut s = String::from(
        "| RAM | configuration | run | ok | first line | durable | write (host) | write (guest clock) | bytes written | vmcore bytes | MiB/s | other processes (CPUs) | note |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        for (i, x) in r.samples.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} GiB | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.ram_gib,
                r.kind.slug(),
                i + 1,
                if x.ok { "yes" } else { "no" },
                fmt_s(x.first_line),
                fmt_s(x.durable),
                fmt_s(x.write_secs),
                fmt_s(x.guest_secs),
                x.written.map_or("-".into(), |v| v.to_string()),
                x.vmcore.map_or("-".into(), |v| v.to_string()),
                x.rate().map_or("-".into(), |v| format!("{v:.1}")),
                x.others_busy.map_or("-".into(), |v| format!("{v:.2}")),
                x.why.replace('|', "/")
            );
        }
    }
    let mut searched = false;
    for r in rows {
        if let Some(search) = &r.search {
            if !searched {
                s.push_str("\ncrashkernel= searches (binary search, one run per probe):\n\n");
                searched = true;
            }
            let probes: Vec<String> = search
                .probes
                .iter()
                .map(|(m, ok, why)| {
                    if *ok {
                        format!("{m}M pass")
                    } else {
                        format!("{m}M FAIL ({why})")
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "- {} GiB {}: smallest {}; probes: {}",
                r.ram_gib,
                r.kind.slug(),
                search.smallest.map_or("none".into(), |m| format!("{m}M")),
                probes.join(", ")
            );
        }
    }
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel of the chart: horizontal bars scaled to the panel's largest value.
#[derive(Clone, Debug, PartialEq)]
struct Panel {
    title: String,
    unit: String,
    bars: Vec<(String, f64)>,
}

fn bar_colour(label: &str) -> &'static str {
    if label.starts_with("rkdump") {
        "#1f77b4"
    } else if label.starts_with("raw dd") {
        "#7f7f7f"
    } else {
        "#d95f02"
    }
}

/// A hand-written SVG bar chart (no dependencies).
fn render_svg(title: &str, panels: &[Panel]) -> String {
    const W: f64 = 760.0;
    const LABEL: f64 = 250.0;
    const BAR_AREA: f64 = 400.0;
    const BAR_H: f64 = 20.0;
    const GAP: f64 = 6.0;
    const PANEL_HEAD: f64 = 30.0;
    let height: f64 = 40.0
        + panels
            .iter()
            .map(|p| PANEL_HEAD + p.bars.len() as f64 * (BAR_H + GAP) + 14.0)
            .sum::<f64>();
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height:.0}\" viewBox=\"0 0 {W} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
        xml_escape(title)
    );
    let mut y = 40.0;
    for p in panels {
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.0}\" font-weight=\"bold\">{} ({})</text>",
            y + 18.0,
            xml_escape(&p.title),
            xml_escape(&p.unit)
        );
        y += PANEL_HEAD;
        let max = p.bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
        for (label, v) in &p.bars {
            let w = if max > 0.0 {
                (v / max * BAR_AREA).max(1.0)
            } else {
                1.0
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n\
                 <rect x=\"{:.0}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.0}\">{}</text>",
                LABEL,
                y + 14.0,
                xml_escape(label),
                LABEL + 8.0,
                bar_colour(label),
                LABEL + 12.0 + w,
                y + 14.0,
                if *v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            );
            y += BAR_H + GAP;
        }
        y += 14.0;
    }
    s.push_str("</svg>\n");
    s
}

/// The chart's panels from the rows.
fn chart_panels(rows: &[Row]) -> Vec<Panel> {
    let mut panels = Vec::new();
    for ram in rams(rows) {
        let bars = |kinds: &[Kind], f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(String, f64)> {
            kinds
                .iter()
                .filter_map(|k| {
                    let r = row(rows, ram, *k)?;
                    Some((r.kind.label().to_string(), f(r)?))
                })
                .collect()
        };
        let peers = [Kind::Rkdump, Kind::PeerRaw, Kind::PeerMkdf];
        let durable = bars(&peers, &|r| r.med(|s| s.durable));
        if !durable.is_empty() {
            panels.push(Panel {
                title: format!("{ram} GiB: sysrq -> dump durable, median"),
                unit: "s, host clock; shorter is better".into(),
                bars: durable,
            });
        }
        let rate = bars(&[Kind::Rkdump, Kind::PeerRaw, Kind::RawDd], &|r| {
            r.med(Sample::rate)
        });
        if !rate.is_empty() {
            panels.push(Panel {
                title: format!("{ram} GiB: write rate to the NVMe disk, median"),
                unit: "MiB/s; longer is better".into(),
                bars: rate,
            });
        }
        let ck = bars(&peers, &|r| r.search.as_ref()?.smallest.map(f64::from));
        if !ck.is_empty() {
            panels.push(Panel {
                title: format!("{ram} GiB: smallest working crashkernel="),
                unit: "MiB; shorter is better".into(),
                bars: ck,
            });
        }
    }
    panels
}

/// Command-line options.
#[derive(Clone, Debug)]
struct Opts {
    rams: Vec<u32>,
    reps: usize,
    bisect: bool,
    kinds: Vec<Kind>,
    no_build: bool,
    first_kernel: Option<PathBuf>,
    keep: bool,
    strict: bool,
    verbose: bool,
    /// Block size of the raw dd (MiB).
    rawdd_mib: u32,
    /// Extra rkdump command-line parameters.
    rkdump_append: String,
    /// Where disk images and run directories live (`--disk-dir`).
    disk_dir: Option<PathBuf>,
    /// Timed runs fill their disk images with zeros first (not `--sparse`).
    fill: bool,
}

fn parse_opts(args: &[String]) -> Result<Option<Opts>, String> {
    let mut slow = false;
    let mut quick = false;
    let mut reps: Option<usize> = None;
    let mut bisect = true;
    let mut ram: Option<Vec<u32>> = None;
    let mut kinds: Vec<Kind> = Kind::ALL.to_vec();
    let mut o = Opts {
        rams: Vec::new(),
        reps: 3,
        bisect: true,
        kinds: Vec::new(),
        no_build: false,
        first_kernel: None,
        keep: false,
        strict: false,
        verbose: false,
        rawdd_mib: 4,
        rkdump_append: String::new(),
        disk_dir: None,
        fill: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "--slow" => slow = true,
            "--quick" => quick = true,
            "--reps" => {
                reps = Some(
                    value("a count")?
                        .parse()
                        .map_err(|e| format!("--reps: {e}"))?,
                )
            }
            "--no-bisect" => bisect = false,
            "--ram" => {
                ram = Some(
                    value("GiB list")?
                        .split(',')
                        .map(|v| v.trim().trim_end_matches(['G', 'g']).parse::<u32>())
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("--ram: {e}"))?,
                )
            }
            "--only" => {
                kinds = value("a list")?
                    .split(',')
                    .map(|k| Kind::from_slug(k.trim()).ok_or(format!("--only: unknown `{k}`")))
                    .collect::<Result<_, _>>()?
            }
            "--rawdd-bs" => {
                o.rawdd_mib = value("MiB")?
                    .trim_end_matches(['M', 'm'])
                    .parse()
                    .map_err(|e| format!("--rawdd-bs: {e}"))?;
                if o.rawdd_mib == 0 {
                    return Err("--rawdd-bs must be >= 1".into());
                }
            }
            "--rkdump-append" => o.rkdump_append = value("parameters")?,
            "--disk-dir" => o.disk_dir = Some(PathBuf::from(value("a directory")?)),
            "--sparse" => o.fill = false,
            "--no-build" => o.no_build = true,
            "--first-kernel" => o.first_kernel = Some(PathBuf::from(value("a path")?)),
            "--keep" => o.keep = true,
            "--strict" => o.strict = true,
            "--verbose" | "-v" => o.verbose = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    o.rams = ram.unwrap_or(if slow { vec![1, 4] } else { vec![1] });
    if o.rams.is_empty() || o.rams.contains(&0) {
        return Err("--ram needs sizes >= 1 GiB".into());
    }
    o.reps = reps.unwrap_or(if quick { 1 } else { 3 }).max(1);
    o.bisect = bisect && !quick;
    kinds.sort();
    kinds.dedup();
    o.kinds = kinds;
    Ok(Some(o))
}

/// The NVMe disk behind a root port, exactly as `Harness::qemu_argv` attaches rkdump's
/// `dump_disk` (so the peer and the raw dd see the same device as rkdump).
fn nvme_disk_args(img: &Path) -> Vec<String> {
    vec![
        "-device".into(),
        "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1".into(),
        "-drive".into(),
        format!(
            "file={},if=none,id=dump,format=raw,cache=unsafe",
            img.display()
        ),
        "-device".into(),
        "nvme,drive=dump,bus=rp1,serial=rkdumpe2e".into(),
    ]
}

/// Builds the case of one run.
fn bench_case(
    kind: Kind,
    ram: u32,
    crashkernel: u32,
    name: &str,
    disk: &Path,
    (raw_mib, raw_blocks): (u32, u64),
) -> Result<Case, String> {
    let base = match kind {
        Kind::Rkdump => "dump-nvme",
        _ => "kl-low",
    };
    let mut c = Case::standard(base, kind.capture()).ok_or(format!("no e2e case {base}"))?;
    c.name = name.to_string();
    c.memory = format!("{ram}G");
    c.crashkernel = format!("crashkernel={crashkernel}M");
    c.marker_mib = ram * 1024 / 4;
    c.loaders = vec![e2e::case::Loader::Kl];
    let ram = u64::from(ram);
    match kind {
        Kind::Rkdump => {
            // dump-nvme without the I/O-in-flight part: the crash is the same for everyone.
            c.io_at_crash = false;
            c.full_run = true;
            c.dump_disk = Some(DiskKind::Nvme);
            c.timeout = Duration::from_secs(180 + 90 * ram);
        }
        Kind::PeerRaw | Kind::PeerMkdf => {
            c.save_vmcore = false;
            c.capture_extra = if kind == Kind::PeerRaw {
                "e2e.save=nvme0n1".into()
            } else {
                "e2e.makedumpfile=nvme0n1".into()
            };
            c.extra_qemu_args = nvme_disk_args(disk);
            c.timeout = Duration::from_secs(240 + 180 * ram);
        }
        Kind::RawDd => {
            c.marker_mib = 0;
            c.raw_dd = Some((DiskKind::Nvme, raw_mib, raw_blocks));
            c.extra_qemu_args = nvme_disk_args(disk);
            c.timeout = Duration::from_secs(120 + 60 * ram);
        }
    }
    Ok(c)
}

/// Adds `--rkdump-append` parameters to an rkdump case.
fn append_rkdump(case: &mut Case, kind: Kind, extra: &str) {
    let extra = extra.trim();
    if kind == Kind::Rkdump && !extra.is_empty() {
        if !case.capture_extra.is_empty() {
            case.capture_extra.push(' ');
        }
        case.capture_extra.push_str(extra);
    }
}

/// Waits (at most `max`) until other processes leave the CPUs to us: QEMU's TCG threads
/// want both host CPUs, so a timed run next to a compile measures the compile.
fn wait_until_quiet(max: Duration) {
    let start = std::time::Instant::now();
    let mut said = false;
    while start.elapsed() < max {
        let Some(before) = cpu_snapshot() else { return };
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let Some(busy) = cpu_snapshot().and_then(|after| others_busy(before, after, t0.elapsed()))
        else {
            return;
        };
        if busy <= BUSY_LIMIT {
            if said {
                eprintln!(
                    "bench: quiet again after {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
            return;
        }
        if !said {
            eprintln!("bench: other processes keep {busy:.2} CPUs busy; waiting for quiet");
            said = true;
        }
    }
    eprintln!(
        "bench: still busy after {} s; running anyway",
        max.as_secs()
    );
}

/// Why a run should be repeated: the harness could not run it (a build step failed while the
/// other engineer's tree or toolchain was in flux), or, for a timed run, other processes took
/// CPU time from QEMU.
fn retry_reason(result: &Result<Sample, String>, timed: bool) -> Option<String> {
    match result {
        Err(e) => Some(format!("harness: {e}")),
        Ok(s) if !s.ok && s.why.contains("build failed") => Some(s.why.clone()),
        Ok(s) if timed && s.others_busy.is_some_and(|b| b > BUSY_LIMIT) => Some(format!(
            "other processes kept {:.2} CPUs busy",
            s.others_busy.unwrap_or(0.0)
        )),
        Ok(_) => None,
    }
}

/// Runs `run` up to [`ATTEMPTS`] times while [`retry_reason`] finds a reason; the last
/// attempt's result counts, with the earlier reasons noted.
fn with_retries(
    timed: bool,
    mut run: impl FnMut() -> Result<Sample, String>,
) -> Result<Sample, String> {
    let mut reasons: Vec<String> = Vec::new();
    loop {
        if timed {
            wait_until_quiet(Duration::from_secs(900));
        }
        let result = run();
        let reason = retry_reason(&result, timed);
        match reason {
            Some(why) if reasons.len() + 1 < ATTEMPTS => {
                eprintln!("bench: repeating the run in 30 s ({why})");
                reasons.push(why);
                std::thread::sleep(Duration::from_secs(30));
            }
            _ => {
                return result.map(|mut s| {
                    if !reasons.is_empty() {
                        let note = format!(
                            "attempt {}; before: {}",
                            reasons.len() + 1,
                            reasons.join("; ")
                        );
                        s.why = if s.why.is_empty() {
                            note
                        } else {
                            format!("{}; {note}", s.why)
                        };
                    }
                    s
                });
            }
        }
    }
}

/// Copies a run directory's small files (console, QEMU command line and logs, results; not
/// disk images, vmcores or archives) to `to`.
fn keep_logs(from: &Path, to: &Path) -> Result<(), String> {
    if from == to {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for e in entries.flatten() {
        let small = e
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() <= 16 << 20);
        let name = e.file_name();
        let bulky = [".img", ".cpio", ".bin"]
            .iter()
            .any(|x| name.to_string_lossy().ends_with(x))
            || name == "vmcore";
        if small && !bulky {
            std::fs::copy(e.path(), to.join(&name))
                .map_err(|err| format!("copying {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

/// `MemAvailable` of the host, in bytes.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// Where disk images and run directories go: tmpfs keeps the host's page-cache writeback
/// (which throttles QEMU once about 2 GiB are dirty on this machine type) out of the figures.
/// Needs room for a guest, its disk image and the extracted vmcore at the largest RAM size.
fn work_dir(chosen: Option<&Path>, max_ram_gib: u32, fallback: &Path) -> PathBuf {
    if let Some(d) = chosen {
        return d.to_path_buf();
    }
    let need = (3 * u64::from(max_ram_gib) + 6) << 30;
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && mem_available().is_some_and(|m| m >= need) {
        shm.join("rkdump-bench")
    } else {
        fallback.to_path_buf()
    }
}

/// Runs one case and measures it; cleans bulky files unless `keep`.
fn run_one(
    h: &Harness,
    kind: Kind,
    case: &Case,
    disk: &Path,
    logs: &Path,
    keep: bool,
) -> Result<Sample, String> {
    let ram_bytes = case.memory_bytes().ok_or("bad -m")?;
    if kind != Kind::Rkdump {
        if let Some(d) = disk.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let _ = std::fs::remove_file(disk);
        let size = ram_bytes + (256 << 20);
        std::fs::File::create(disk)
            .and_then(|f| f.set_len(size))
            .map_err(|e| format!("creating {}: {e}", disk.display()))?;
        if case.fill_dump_disk {
            e2e::fill_zeros(disk, size)?;
        }
    }
    let before = cpu_snapshot();
    let t0 = std::time::Instant::now();
    let r = e2e::run_case(case, h)?;
    let wall = t0.elapsed();
    let busy = match (before, cpu_snapshot()) {
        (Some(b), Some(a)) => others_busy(b, a, wall),
        _ => None,
    };
    let flat = (kind == Kind::PeerMkdf).then(|| {
        std::fs::File::open(disk)
            .map_err(|e| format!("{}: {e}", disk.display()))
            .and_then(|f| flattened_len(&mut BufReader::new(f)))
    });
    let mut s = measure(kind, &r.log, flat);
    s.others_busy = busy;
    match kind {
        Kind::Rkdump if s.ok && !r.passed() => {
            // The harness extracted and verified the dump: that must hold too.
            s.ok = false;
            s.why = r
                .checks
                .iter()
                .find_map(|c| {
                    c.result
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {}", c.name, e.lines().next().unwrap_or("")))
                })
                .unwrap_or_default();
        }
        Kind::PeerRaw if s.ok => {
            let checked = r
                .log
                .first_kernel()
                .marker
                .ok_or("no marker report".to_string())
                .and_then(|report| {
                    let f = std::fs::File::open(disk)
                        .map_err(|e| format!("{}: {e}", disk.display()))?;
                    marker_check::check_marker_pages(&mut BufReader::new(f), &report)
                });
            match checked {
                Ok(st) => s.why = format!("{} marker pages intact in the copy", st.pages),
                Err(e) => {
                    s.ok = false;
                    s.why = format!("marker check of the copy: {e}");
                }
            }
        }
        _ => {}
    }
    keep_logs(&r.dir, &logs.join(&case.name))?;
    if !keep {
        let _ = std::fs::remove_file(disk);
        let _ = std::fs::remove_dir_all(&r.dir);
    }
    eprintln!(
        "bench: {} -> {} first {} durable {} write {} {} MiB/s, other processes {} CPUs{}",
        case.name,
        if s.ok { "ok" } else { "FAIL" },
        fmt_s(s.first_line),
        fmt_s(s.durable),
        fmt_s(s.write_secs),
        s.rate().map_or("-".into(), |v| format!("{v:.1}")),
        s.others_busy.map_or("?".into(), |v| format!("{v:.2}")),
        if s.why.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.why)
        }
    );
    Ok(s)
}

/// Entry point of `cargo xtask bench`.
pub fn main(args: &[String]) -> Result<(), String> {
    let Some(o) = parse_opts(args)? else {
        return Ok(());
    };
    let out = crate::build::target_dir().join("bench");
    let logs = out.join("runs");
    let work = work_dir(
        o.disk_dir.as_deref(),
        o.rams.iter().copied().max().unwrap_or(1),
        &out.join("work"),
    );
    let runs = work.join("runs");
    let disks = work.join("disks");
    for d in [&logs, &runs, &disks] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    eprintln!(
        "bench: disk images and run directories in {}, console logs kept in {}",
        work.display(),
        logs.display()
    );
    let bzimage = if o.no_build {
        crate::build::target_dir().join("rkdump").join("bzImage")
    } else {
        crate::build::build(false)?.bzimage
    };
    let bz_len = std::fs::metadata(&bzimage)
        .map_err(|e| format!("{}: {e}", bzimage.display()))?
        .len();
    let first_kernel = match &o.first_kernel {
        Some(p) => p.clone(),
        None => e2e::default_first_kernel()?,
    };
    let linux_len = std::fs::metadata(&first_kernel)
        .map_err(|e| format!("{}: {e}", first_kernel.display()))?
        .len();
    let makedumpfile = [
        "/usr/sbin/makedumpfile",
        "/usr/bin/makedumpfile",
        "/sbin/makedumpfile",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    let started = std::time::Instant::now();
    let mut rows: Vec<Row> = Vec::new();

    // One harness (one initramfs, one lock hold) per capture kernel set-up, in turn.
    let phases: [(&[Kind], CaptureKind); 3] = [
        (&[Kind::Rkdump, Kind::RawDd], CaptureKind::Rkdump),
        (&[Kind::PeerRaw], CaptureKind::Linux),
        (&[Kind::PeerMkdf], CaptureKind::Linux),
    ];
    for (kinds, capture) in phases {
        let kinds: Vec<Kind> = kinds
            .iter()
            .copied()
            .filter(|k| o.kinds.contains(k))
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let tools: Vec<PathBuf> = if kinds.contains(&Kind::PeerMkdf) {
            vec![
                makedumpfile
                    .clone()
                    .ok_or("makedumpfile not found (apt-get install makedumpfile)")?,
            ]
        } else {
            Vec::new()
        };
        let kernel = match capture {
            CaptureKind::Rkdump => bzimage.clone(),
            CaptureKind::Linux => first_kernel.clone(),
        };
        // The set-up builds the marker: retry while the shared toolchain or tree is in flux.
        let mut tries = 0;
        let mut h = loop {
            match Harness::setup_with_tools(&kernel, Some(&first_kernel), o.keep, o.verbose, &tools)
            {
                Ok(h) => break h,
                Err(e) if tries + 1 < ATTEMPTS => {
                    tries += 1;
                    eprintln!("bench: harness set-up failed ({e}); retrying in 30 s");
                    std::thread::sleep(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        };
        h.out_root = runs.clone();
        let image = match capture {
            CaptureKind::Rkdump => (bz_len, format!("bzImage {bz_len} B, no initrd")),
            CaptureKind::Linux => {
                let cpio = h.initramfs.capture_cpio_len;
                (
                    linux_len + cpio,
                    format!("vmlinuz {linux_len} B + uncompressed cpio {cpio} B"),
                )
            }
        };
        for &ram in &o.rams {
            let mut phase_rows: Vec<Row> = kinds
                .iter()
                .map(|&kind| Row {
                    ram_gib: ram,
                    kind,
                    crashkernel: kind.crashkernel(),
                    samples: Vec::new(),
                    search: None,
                    image: (kind != Kind::RawDd).then(|| image.clone()),
                })
                .collect();
            let mut dump_bytes: Option<u64> = None;
            for rep in 1..=o.reps {
                for row in phase_rows.iter_mut() {
                    let kind = row.kind;
                    let name = format!("{ram}G-{}-r{rep}", kind.slug());
                    let disk = disks.join(format!("{name}.img"));
                    // The raw dd writes the bytes rkdump wrote, in whole blocks.
                    let bytes = dump_bytes.unwrap_or(u64::from(ram) << 30);
                    let blocks = bytes.div_ceil(u64::from(o.rawdd_mib) << 20);
                    let raw = (o.rawdd_mib, blocks);
                    let mut case = bench_case(kind, ram, row.crashkernel, &name, &disk, raw)?;
                    append_rkdump(&mut case, kind, &o.rkdump_append);
                    case.fill_dump_disk = o.fill;
                    let s = with_retries(true, || run_one(&h, kind, &case, &disk, &logs, o.keep))?;
                    if kind == Kind::Rkdump && s.ok {
                        dump_bytes = dump_bytes.or(s.written);
                    }
                    row.samples.push(s);
                }
            }
            if o.bisect {
                for row in phase_rows.iter_mut().filter(|r| r.kind != Kind::RawDd) {
                    let kind = row.kind;
                    let mut notes: Vec<(u32, String)> = Vec::new();
                    let (smallest, probes) = bisect(kind.candidates(), |mib| {
                        let name = format!("{ram}G-{}-ck{mib}M", kind.slug());
                        let disk = disks.join(format!("{name}.img"));
                        let mut case = bench_case(kind, ram, mib, &name, &disk, (0, 0))?;
                        append_rkdump(&mut case, kind, &o.rkdump_append);
                        let s =
                            with_retries(false, || run_one(&h, kind, &case, &disk, &logs, o.keep))?;
                        notes.push((mib, s.why.clone()));
                        Ok(s.ok)
                    })?;
                    row.search = Some(Search {
                        smallest,
                        probes: probes
                            .into_iter()
                            .map(|(m, ok)| {
                                let why = notes
                                    .iter()
                                    .find(|(n, _)| *n == m)
                                    .map_or(String::new(), |(_, w)| w.clone());
                                (m, ok, why)
                            })
                            .collect(),
                    });
                }
            }
            rows.extend(phase_rows);
        }
        drop(h);
    }
    rows.sort_by_key(|r| (r.ram_gib, r.kind));

    let table = render_table(&rows);
    let ratios = render_ratios(&rows);
    let (targets, all_met) = render_targets(&rows, bz_len);
    let qemu_version = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "qemu-system-x86_64 (version unknown)".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let header = format!(
        "Machine: {cpu}, {} host CPUs; {qemu_version}; accelerator TCG (`-accel tcg,thread=multi`), q35, 2 vCPUs.\n\
         First kernel {}; loader kexec_load (`kexec -p -c`); marker fills 1/4 of guest RAM; dump disk: QEMU NVMe behind a pcie-root-port, raw image, cache=unsafe, in {} ({}), {}.\n\
         Timed runs: {} per configuration, medians shown; ratios are medians of per-repetition pairs. Host-clock times between console lines.\n\
         Raw dd: `dd if=/dev/zero of=/dev/nvme0n1 bs={}M oflag=direct`, as many whole blocks as rkdump's dump has bytes.{}\n\
         Wall time of the benchmark: {:.0} s.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_kernel.display(),
        work.display(),
        if work.starts_with("/dev/shm") {
            "tmpfs: the host's page cache and storage stay out of the figures"
        } else {
            "a host file system: once about 2 GiB are dirty, host writeback throttles QEMU"
        },
        if o.fill {
            "written full of zeros before each timed run"
        } else {
            "sparse"
        },
        o.reps,
        o.rawdd_mib,
        if o.rkdump_append.trim().is_empty() {
            String::new()
        } else {
            format!(" rkdump parameters added: `{}`.", o.rkdump_append.trim())
        },
        started.elapsed().as_secs_f64()
    );
    let md = format!(
        "# rkdump benchmark (cargo xtask bench)\n\n{header}\n## Figures\n\n{table}\n## Ratios (rkdump / other)\n\n{ratios}\n## Targets (issue 8)\n\n{targets}\n## Reading the figures\n\n{NOTES}\n## Every run\n\n{}",
        render_runs(&rows)
    );
    std::fs::write(out.join("results.md"), &md).map_err(|e| format!("writing results.md: {e}"))?;
    let svg = render_svg("rkdump vs Linux kdump, QEMU TCG", &chart_panels(&rows));
    std::fs::write(out.join("chart.svg"), svg).map_err(|e| format!("writing chart.svg: {e}"))?;
    println!("\n{header}\n{table}\n{ratios}\n{targets}");
    println!(
        "written: {} and {}",
        out.join("results.md").display(),
        out.join("chart.svg").display()
    );
    if o.strict && !all_met {
        return Err("a target was missed (see results.md)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: f64, text: &str) -> Line {
        Line {
            t: Duration::from_secs_f64(t),
            text: text.into(),
        }
    }

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

    const RKDUMP_LOG: &str = "\
[   4.590344] [    4.139752] sysrq: Trigger a crash
[   4.641845] rkdump: entered
[   4.650469] rkdump: memory image=0x3ee00000+0x99000 heap=2048 KiB page-tables=6
[   4.689710] rkdump: dump start bytes=1098547200 target=disk:0000:01:00.0
[  10.611862] rkdump: dump complete bytes=1098547200 ms=5906 target=disk:0000:01:00.0
[  10.611963] rkdump: memory peak=2348 KiB";

    #[test]
    fn rkdump_figures() {
        let log = ConsoleLog::parse_saved(RKDUMP_LOG);
        let s = measure(Kind::Rkdump, &log, None);
        assert!(s.ok, "{s:?}");
        assert!((s.first_line.unwrap() - 0.0515).abs() < 1e-3);
        assert!((s.durable.unwrap() - 6.0215).abs() < 1e-3);
        assert!((s.write_secs.unwrap() - 5.92215).abs() < 1e-3);
        assert_eq!(s.written, Some(1_098_547_200));
        assert_eq!(s.guest_secs, Some(5.906));
        assert_eq!(s.peak_kib, Some(2348));
        assert_eq!(s.image_len, Some(0x99000));
        assert!((s.rate().unwrap() - 176.9).abs() < 0.1);
        let serial = RKDUMP_LOG.replace("target=disk:0000:01:00.0", "target=serial:ttyS1");
        assert!(!measure(Kind::Rkdump, &ConsoleLog::parse_saved(&serial), None).ok);
        let cut = RKDUMP_LOG.lines().take(4).collect::<Vec<_>>().join("\n");
        let s = measure(Kind::Rkdump, &ConsoleLog::parse_saved(&cut), None);
        assert!(!s.ok && s.why.contains("dump complete"));
    }

    #[test]
    fn peer_figures() {
        let log = ConsoleLog {
            lines: vec![
                line(4.0, "[    4.1] sysrq: Trigger a crash"),
                line(6.2, "[    0.000000] Linux version 6.1.0-56-cloud-amd64 (x)"),
                line(8.5, "E2E: capture-init release=6.1.0 nproc=1 uptime=2.1"),
                line(8.6, "E2E: vmcore size=846913536 phnum=6"),
                line(
                    18.6,
                    "E2E: vmcore saved dev=nvme0n1 rc=0 start=2.30 end=12.25 1+0 records out",
                ),
            ],
        };
        let s = measure(Kind::PeerRaw, &log, None);
        assert!(s.ok, "{s:?}");
        assert!((s.first_line.unwrap() - 2.2).abs() < 1e-9);
        assert!((s.durable.unwrap() - 14.6).abs() < 1e-9);
        assert!((s.write_secs.unwrap() - 10.0).abs() < 1e-9);
        assert!((s.guest_secs.unwrap() - 9.95).abs() < 1e-9);
        assert_eq!(s.written, Some(846_913_536));

        let mut mk = log.clone();
        mk.lines.pop();
        mk.lines
            .push(line(8.7, "E2E: makedumpfile start dev=nvme0n1"));
        mk.lines.push(line(
            30.7,
            "E2E: makedumpfile done dev=nvme0n1 rc=0 ddrc=0 start=2.4 end=24.3 dd: 0+900 records out; The dumpfile is saved to STDOUT.",
        ));
        let s = measure(Kind::PeerMkdf, &mk, Some(Ok(17 << 20)));
        assert!(s.ok, "{s:?}");
        assert!((s.durable.unwrap() - 26.7).abs() < 1e-9);
        assert!((s.write_secs.unwrap() - 22.0).abs() < 1e-9);
        assert_eq!((s.written, s.vmcore), (Some(17 << 20), Some(846_913_536)));
        assert!(!measure(Kind::PeerMkdf, &mk, Some(Err("x".into()))).ok);
        let failed = mk.lines.last().unwrap().text.replace("rc=0 ", "rc=1 ");
        mk.lines.last_mut().unwrap().text = failed;
        assert!(!measure(Kind::PeerMkdf, &mk, Some(Ok(1))).ok);

        let panic = ConsoleLog {
            lines: vec![
                line(4.0, "sysrq: Trigger a crash"),
                line(6.0, "Linux version 6.1"),
                line(
                    4.1,
                    "[ 4.2] Kernel panic - not syncing: sysrq triggered crash",
                ),
                line(
                    7.0,
                    "[ 0.5] Kernel panic - not syncing: System is deadlocked on memory",
                ),
            ],
        };
        let s = measure(Kind::PeerRaw, &panic, None);
        assert!(!s.ok && s.why.contains("deadlocked on memory"), "{s:?}");
    }

    #[test]
    fn rawdd_figures() {
        let log = ConsoleLog {
            lines: vec![
                line(3.0, "E2E: rawdd start dev=nvme0n1 blocks=262"),
                line(
                    4.0,
                    "E2E: rawdd done dev=nvme0n1 rc=0 bytes=1098907648 start=2.9 end=3.88 262+0 records out",
                ),
            ],
        };
        let s = measure(Kind::RawDd, &log, None);
        assert!(s.ok, "{s:?}");
        assert_eq!(s.first_line, None);
        assert!((s.rate().unwrap() - 1048.0).abs() < 0.5);
        let bad = ConsoleLog {
            lines: vec![line(
                4.0,
                "E2E: rawdd done dev=nvme0n1 rc=1 bytes=0 start=1 end=2",
            )],
        };
        assert!(!measure(Kind::RawDd, &bad, None).ok);
    }

    fn flat_stream(records: &[&[u8]], end: bool) -> Vec<u8> {
        let mut v = b"makedumpfile\0\0\0\0".to_vec();
        v.extend(1i64.to_be_bytes());
        v.extend(1i64.to_be_bytes());
        v.resize(4096, 0);
        let mut off = 0i64;
        for r in records {
            v.extend(off.to_be_bytes());
            v.extend((r.len() as i64).to_be_bytes());
            v.extend_from_slice(r);
            off += r.len() as i64;
        }
        if end {
            v.extend((-1i64).to_be_bytes());
            v.extend((-1i64).to_be_bytes());
        }
        v
    }

    #[test]
    fn flattened_stream_length() {
        let s = flat_stream(&[b"abc", &[7u8; 5000]], true);
        let len = s.len() as u64;
        let mut padded = s.clone();
        padded.extend([0xAAu8; 100]);
        assert_eq!(flattened_len(&mut std::io::Cursor::new(padded)), Ok(len));
        let open = flat_stream(&[b"abc"], false);
        assert!(flattened_len(&mut std::io::Cursor::new(open)).is_err());
        assert!(flattened_len(&mut std::io::Cursor::new(vec![0u8; 8192])).is_err());
    }

    fn sample(durable: f64, secs: f64, bytes: u64) -> Sample {
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

    fn rows() -> Vec<Row> {
        let gib = 1u64 << 30;
        vec![
            Row {
                ram_gib: 1,
                kind: Kind::Rkdump,
                crashkernel: 16,
                samples: vec![
                    sample(1.0, 0.9, gib),
                    sample(1.2, 1.1, gib),
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
        ]
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

    #[test]
    fn tables_render() {
        let r = rows();
        let t = render_table(&r);
        assert_eq!(t.lines().count(), 2 + r.len());
        assert!(
            t.contains("| 1 GiB | rkdump | 16M | 2/3 | 0.11 s | 1.10 s |"),
            "{t}"
        );
        assert!(t.contains("| 8M |"), "{t}");
        assert!(t.contains("| 80M |"), "{t}");
        assert!(t.contains("- (no crash)"), "{t}");
        let q = render_ratios(&r);
        assert!(
            q.contains("| 1 GiB | sysrq -> dump durable (s) | 0.083 | - | - |"),
            "{q}"
        );
        let (targets, all) = render_targets(&r, 365_568);
        assert!(all, "{targets}");
        assert!(
            targets.contains("**met**: 1 GiB: smallest working crashkernel= for rkdump is 8M"),
            "{targets}"
        );
        assert!(
            targets.contains("**met**: 1 GiB: rkdump writes at 101%"),
            "{targets}"
        );
        assert!(
            targets.contains("**met**: sysrq -> dump durable at 1 GiB is 12.00x"),
            "{targets}"
        );
        assert!(
            targets.contains("**met**: bzImage is 365568 bytes"),
            "{targets}"
        );
        let runs = render_runs(&r);
        assert!(runs.contains("4M FAIL (oom)"), "{runs}");
    }

    #[test]
    fn targets_report_misses_with_margins() {
        let mut r = rows();
        r[0].samples = vec![sample(6.0, 5.9, 1 << 30); 3];
        r[0].search = Some(Search {
            smallest: Some(24),
            probes: vec![],
        });
        let (t, all) = render_targets(&r, 2 << 20);
        assert!(!all);
        assert!(
            t.contains("**MISSED**: sysrq -> dump durable at 1 GiB is 2.50x"),
            "{t}"
        );
        assert!(t.contains("missed by a factor 4.00"), "{t}");
        assert!(
            t.contains("**MISSED**: 1 GiB: smallest working crashkernel= for rkdump is 24M"),
            "{t}"
        );
        assert!(t.contains("**MISSED**: 1 GiB: rkdump writes at 17%"), "{t}");
        assert!(t.contains("**MISSED**: bzImage is 2097152 bytes"), "{t}");
    }

    #[test]
    fn svg_renders() {
        let panels = chart_panels(&rows());
        assert_eq!(panels.len(), 3);
        let svg = render_svg("a < b & c", &panels);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b &amp; c"));
        // one background rect + one per bar
        let bars: usize = panels.iter().map(|p| p.bars.len()).sum();
        assert_eq!(svg.matches("<rect").count(), 1 + bars);
        assert_eq!(svg.matches("<text").count(), 1 + panels.len() + 2 * bars);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn cpu_accounting() {
        let stat = "cpu  100 5 50 1000 7 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(total_busy(stat), Some(100 + 5 + 50 + 1 + 2 + 3));
        assert_eq!(total_busy("intr 1\n"), None);
        // comm with spaces and parentheses; utime stime cutime cstime = 10 20 30 40
        let me = "123 (x (a) b) S 1 2 3 4 5 6 7 8 9 10 10 20 30 40 20 0 1 0 99";
        assert_eq!(own_cpu(me), Some(100));
        assert_eq!(own_cpu("123 (x) S 1"), None);
        let busy = others_busy((1000, 100), (1300, 200), Duration::from_secs(2)).unwrap();
        assert!((busy - 1.0).abs() < 1e-9);
        assert_eq!(others_busy((5, 5), (4, 5), Duration::from_secs(1)), None);
    }

    #[test]
    fn retries() {
        let quiet = Sample {
            ok: true,
            others_busy: Some(0.05),
            ..Sample::default()
        };
        let busy = Sample {
            others_busy: Some(0.9),
            ..quiet.clone()
        };
        assert_eq!(retry_reason(&Ok(quiet.clone()), true), None);
        assert!(retry_reason(&Ok(busy.clone()), true).is_some());
        assert_eq!(retry_reason(&Ok(busy.clone()), false), None);
        assert!(retry_reason(&Err("x".into()), false).is_some());
        let infra = Sample::failed("rkdumpctl save: rkdumpctl build failed (exit status: 101)");
        assert!(retry_reason(&Ok(infra), false).is_some());
        assert_eq!(retry_reason(&Ok(Sample::failed("oom")), false), None);
    }

    #[test]
    fn run_logs_are_kept_without_bulk() {
        let base = std::env::temp_dir().join(format!("rkdump-bench-test-{}", std::process::id()));
        let (from, to) = (base.join("work"), base.join("logs"));
        std::fs::create_dir_all(&from).unwrap();
        for f in [
            "console.log",
            "result.txt",
            "dump.img",
            "vmcore",
            "initramfs.cpio",
            "com2.bin",
        ] {
            std::fs::write(from.join(f), f).unwrap();
        }
        keep_logs(&from, &to).unwrap();
        let mut kept: Vec<String> = std::fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(kept, ["console.log", "result.txt"]);
        std::fs::remove_dir_all(&base).unwrap();
        let chosen = Path::new("/x/y");
        assert_eq!(work_dir(Some(chosen), 4, Path::new("/f")), chosen);
        // No host has 3 PiB available: the fallback.
        assert_eq!(work_dir(None, 1 << 20, Path::new("/f")), Path::new("/f"));
    }

    #[test]
    fn options() {
        let o = parse_opts(&[]).unwrap().unwrap();
        assert_eq!((o.rams.clone(), o.reps, o.bisect), (vec![1], 3, true));
        assert_eq!(o.kinds, Kind::ALL.to_vec());
        let args: Vec<String> = ["--slow", "--quick", "--only", "rawdd,rkdump"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse_opts(&args).unwrap().unwrap();
        assert_eq!((o.rams.clone(), o.reps, o.bisect), (vec![1, 4], 1, false));
        assert_eq!(o.kinds, vec![Kind::Rkdump, Kind::RawDd]);
        assert!(parse_opts(&["--only".into(), "nope".into()]).is_err());
        assert!(parse_opts(&["--ram".into(), "0".into()]).is_err());
    }

    #[test]
    fn cases_carry_the_bench_parameters() {
        let disk = Path::new("/tmp/d.img");
        let c = bench_case(Kind::RawDd, 1, 16, "x", disk, (4, 262)).unwrap();
        let cmd = c.first_kernel_cmdline().unwrap();
        assert!(cmd.contains(" e2e.rawdd=nvme0n1:262:4 "), "{cmd}");
        assert!(
            c.extra_qemu_args
                .iter()
                .any(|a| a.starts_with("nvme,drive=dump,bus=rp1"))
        );
        let c = bench_case(Kind::PeerMkdf, 4, 256, "y", disk, (0, 0)).unwrap();
        assert_eq!(c.memory, "4G");
        assert_eq!(c.marker_mib, 1024);
        assert!(c.capture_cmdline().contains("nr_cpus=1"));
        assert!(c.capture_cmdline().ends_with(" e2e.makedumpfile=nvme0n1"));
        assert!(!c.first_kernel_cmdline().unwrap().contains("e2e.rawdd"));
        let mut c = bench_case(Kind::Rkdump, 1, 8, "z", disk, (0, 0)).unwrap();
        append_rkdump(&mut c, Kind::Rkdump, " rkdump.checksum=full ");
        assert!(
            c.capture_cmdline().ends_with(" rkdump.checksum=full"),
            "{}",
            c.capture_cmdline()
        );
        assert_eq!(c.crashkernel, "crashkernel=8M");
        assert_eq!(c.dump_disk, Some(DiskKind::Nvme));
        assert!(c.full_run && !c.io_at_crash);
    }
}
