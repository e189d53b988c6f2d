//! Console measurement: the figures of one run ([`Sample`]) from the host-timestamped console
//! lines, and the length of a makedumpfile flattened stream on the dump disk.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use super::cases::Kind;
use crate::e2e::console::{ConsoleLog, Line, hex_or_dec, kv};

pub(super) const MIB: f64 = (1u64 << 20) as f64;

/// The figures of one run. Times in seconds (host clock).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Sample {
    /// The run produced a complete, checked dump (or the raw dd succeeded).
    pub(super) ok: bool,
    /// Why not, or a note.
    pub(super) why: String,
    /// `sysrq: Trigger a crash` -> the capture kernel's first console line.
    pub(super) first_line: Option<f64>,
    /// `sysrq: Trigger a crash` -> the dump is durable.
    pub(super) durable: Option<f64>,
    /// Start-of-write line -> durable line.
    pub(super) write_secs: Option<f64>,
    /// Bytes the collector wrote to the disk.
    pub(super) written: Option<u64>,
    /// Size of the vmcore the collector read (rkdump: its dump size).
    pub(super) vmcore: Option<u64>,
    /// The same write measured by the guest clock (cross-check only).
    pub(super) guest_secs: Option<f64>,
    /// rkdump's frame-allocator peak (KiB).
    pub(super) peak_kib: Option<u64>,
    /// rkdump's loaded image size in memory (bytes).
    pub(super) image_len: Option<u64>,
    /// Host CPUs other processes kept busy during the run, on average (the machine has 2 and
    /// QEMU's TCG threads want both: timings of a busy run are not comparable).
    pub(super) others_busy: Option<f64>,
}

impl Sample {
    /// Write rate in MiB/s.
    pub(super) fn rate(&self) -> Option<f64> {
        let s = self.write_secs.filter(|s| *s > 0.0)?;
        Some(self.written? as f64 / MIB / s)
    }

    pub(super) fn failed(why: impl Into<String>) -> Sample {
        Sample {
            why: why.into(),
            ..Sample::default()
        }
    }
}

/// The first line containing `needle`, and the text after it.
pub(super) fn find<'a>(lines: &'a [Line], needle: &str) -> Option<(Duration, &'a str)> {
    lines.iter().find_map(|l| {
        l.text
            .find(needle)
            .map(|i| (l.t, &l.text[i + needle.len()..]))
    })
}

pub(super) fn secs_between(from: Duration, to: Duration) -> Option<f64> {
    to.checked_sub(from).map(|d| d.as_secs_f64())
}

/// Guest-clock seconds from `start=<uptime> end=<uptime>`.
pub(super) fn uptime_delta(text: &str) -> Option<f64> {
    let a: f64 = kv(text, "start")?.parse().ok()?;
    let b: f64 = kv(text, "end")?.parse().ok()?;
    (b >= a).then_some(b - a)
}

/// The figures of one run from its console. `flat` is the host's walk of a makedumpfile
/// flattened stream on the disk (peer-mkdf only).
pub(super) fn measure(kind: Kind, log: &ConsoleLog, flat: Option<Result<u64, String>>) -> Sample {
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

pub(super) fn measure_rawdd(lines: &[Line]) -> Sample {
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
pub(super) fn flattened_len(r: &mut (impl Read + Seek)) -> Result<u64, String> {
    pub(super) const HEADER: u64 = 4096;
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
