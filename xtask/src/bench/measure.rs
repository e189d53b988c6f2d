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
    /// The kdump file's size as a user gets it: rkdump's `rkdumpctl save` output (the e2e
    /// kdump check's `(<n> bytes)`), the peer's file rebuilt from its flattened stream (the end
    /// of its furthest record: what `makedumpfile -R` writes). Issue 13's "no bigger than".
    pub(super) file_bytes: Option<u64>,
    /// Size of the vmcore the collector read (rkdump: its dump size).
    pub(super) vmcore: Option<u64>,
    /// The same write measured by the guest clock (cross-check only).
    pub(super) guest_secs: Option<f64>,
    /// rkdump's frame-allocator peak (KiB).
    pub(super) peak_kib: Option<u64>,
    /// rkdump's block-checksum kind as its console reported it (`checksum mode=<asked>
    /// kind=<kind>`): "full (default)", "sampled", "none", ...
    pub(super) checksum: Option<String>,
    /// rkdump's loaded image size in memory (bytes).
    pub(super) image_len: Option<u64>,
    /// rkdump's crash report cost (`rkdump: report end ms=`, its own clock), in ms.
    pub(super) report_ms: Option<f64>,
    /// kdump format: the CPUs that compressed and the compression phase's wall time in ms
    /// (`rkdump: kdump phases cpus= ... compress_ms=`, rkdump's clock).
    pub(super) compress: Option<(u64, f64)>,
    /// Pages rkdump's filter kept (`rkdump: filter ... examined=<n> excluded=<m>`: n - m);
    /// `None` without a filter line (level 0).
    pub(super) kept_pages: Option<u64>,
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

/// Pages the filter kept, from its console line (`examined=` minus `excluded=`).
pub(super) fn kept_pages(lines: &[Line]) -> Option<u64> {
    let (_, args) = find(lines, "rkdump: filter level=")?;
    let examined: u64 = kv(args, "examined")?.parse().ok()?;
    let excluded: u64 = kv(args, "excluded")?.parse().ok()?;
    examined.checked_sub(excluded)
}

/// Guest-clock seconds from `start=<uptime> end=<uptime>`.
pub(super) fn uptime_delta(text: &str) -> Option<f64> {
    let a: f64 = kv(text, "start")?.parse().ok()?;
    let b: f64 = kv(text, "end")?.parse().ok()?;
    (b >= a).then_some(b - a)
}

/// The figures of one run from its console. `flat` is the host's walk of a makedumpfile
/// flattened stream on the disk (the makedumpfile peers only).
pub(super) fn measure(
    kind: Kind,
    log: &ConsoleLog,
    flat: Option<Result<Flattened, String>>,
) -> Sample {
    match kind {
        Kind::RawDd | Kind::RawDdVirtio => return measure_rawdd(&log.lines),
        Kind::GuestElf | Kind::GuestKdump | Kind::HostLimit => {
            return Sample::failed("measured by the bench's anchors, not from a console");
        }
        _ => {}
    }
    let Some(i) = log.sysrq_index() else {
        return Sample::failed("no `sysrq: Trigger a crash` line");
    };
    let sysrq = log.lines[i].t;
    let after = log.capture_lines();
    let mut s = Sample::default();
    match kind {
        k if k.is_rkdump() => {
            s.compress = find(after, "rkdump: kdump phases ").and_then(|(_, a)| {
                Some((
                    kv(a, "cpus")?.parse().ok()?,
                    kv(a, "compress_ms")?.parse().ok()?,
                ))
            });
            s.kept_pages = kept_pages(after);
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
                // rkdump.format=kdump: `dump start bytes=` is the raw upper bound, the file is
                // what compression left of it.
                let kdump = start.is_some_and(|(_, a)| a.contains("format=kdump"));
                s.ok = target.starts_with("disk:")
                    && s.written.is_some()
                    && (s.written == s.vmcore || (kdump && s.written <= s.vmcore));
                if !s.ok {
                    s.why = format!("dump complete {args} (dump start bytes={:?})", s.vmcore);
                }
            } else {
                s.why = "no `rkdump: dump complete` line".into();
            }
            s.checksum = find(after, "rkdump: checksum mode=").and_then(|(_, a)| {
                let asked = a.split_whitespace().next()?;
                let kind = kv(a, "kind")?;
                Some(if asked == "auto" {
                    format!("{kind} (default)")
                } else {
                    kind.to_string()
                })
            });
            s.report_ms =
                find(after, "rkdump: report end ").and_then(|(_, a)| kv(a, "ms")?.parse().ok());
            s.peak_kib = find(after, "rkdump: memory peak=")
                .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok());
            s.image_len = find(after, "rkdump: memory image=").and_then(|(_, v)| {
                let range = v.split_whitespace().next()?;
                hex_or_dec(range.split_once('+')?.1)
            });
        }
        k if k.is_peer() => {
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
                let codec = kind.makedumpfile();
                match (rc, ddrc, flat) {
                    (Some("0"), Some("0"), Some(Ok(f)))
                        if codec.is_some_and(|(_, bit, _)| f.status & bit == 0) =>
                    {
                        // An init.sh without `e2e.makedumpfile_codec` runs its default codec:
                        // the row would measure the other collector.
                        let (flag, bit, name) = codec.unwrap_or_default();
                        s.why = format!(
                            "the peer's file has status {:#x}, not {name} ({bit:#x}): the capture /init did not run makedumpfile -{flag}",
                            f.status
                        );
                    }
                    (Some("0"), Some("0"), Some(Ok(f))) => {
                        s.written = Some(f.stream_len);
                        s.file_bytes = Some(f.file_len);
                        s.ok = true;
                    }
                    (Some("0"), Some("0"), Some(Err(e))) => s.why = format!("stream on disk: {e}"),
                    (Some("0"), Some("0"), None) => s.why = "stream on disk not checked".into(),
                    _ => s.why = format!("makedumpfile done {args}"),
                }
            }
        }
        _ => {}
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

/// What the walk of a makedumpfile flattened stream found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Flattened {
    /// Bytes of the stream on the disk, end record included.
    pub(super) stream_len: u64,
    /// Size of the file it rebuilds: the end of the furthest record.
    pub(super) file_len: u64,
    /// The rebuilt file's `disk_dump_header.status` (the codec bit), 0 when no record holds it.
    pub(super) status: u32,
}

/// The makedumpfile flattened stream (`makedumpfile -F`) at the start of `r`: a 4096-byte
/// header (signature "makedumpfile", big-endian i64 type 1 and version 1), then records of
/// (offset, size) as big-endian i64 each followed by `size` bytes, ended by the record (-1, -1)
/// (makedumpfile.h: `makedumpfile_header`, `makedumpfile_data_header`).
pub(super) fn flattened_len(r: &mut (impl Read + Seek)) -> Result<Flattened, String> {
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
    // `disk_dump_header.status` (the file's offset 0x1A8, 4 bytes little-endian).
    const STATUS: u64 = 0x1A8;
    let mut pos = HEADER;
    let mut rec = [0u8; 16];
    let mut found = Flattened::default();
    loop {
        r.seek(SeekFrom::Start(pos))
            .and_then(|_| r.read_exact(&mut rec))
            .map_err(|e| format!("record at {pos}: {e}"))?;
        let (offset, size) = (be(&rec[..8]), be(&rec[8..]));
        pos += 16;
        if offset == -1 && size == -1 {
            found.stream_len = pos;
            return Ok(found);
        }
        if offset < 0 || size < 0 {
            return Err(format!(
                "bad record at {}: offset {offset} size {size}",
                pos - 16
            ));
        }
        let (offset, size) = (offset as u64, size as u64);
        let end = offset
            .checked_add(size)
            .ok_or_else(|| format!("record end {offset} + {size} overflows"))?;
        found.file_len = found.file_len.max(end);
        if offset <= STATUS && STATUS + 4 <= end {
            let mut b = [0u8; 4];
            r.seek(SeekFrom::Start(pos + STATUS - offset))
                .and_then(|_| r.read_exact(&mut b))
                .map_err(|e| format!("status in the record at {}: {e}", pos - 16))?;
            found.status = u32::from_le_bytes(b);
        }
        pos = pos
            .checked_add(size)
            .ok_or_else(|| format!("record size {size} overflows"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cases::Kind;

    fn line(t: f64, text: &str) -> Line {
        Line {
            t: Duration::from_secs_f64(t),
            text: text.into(),
        }
    }

    const RKDUMP_LOG: &str = "\
[   4.590344] [    4.139752] sysrq: Trigger a crash
[   4.641845] rkdump: entered
[   4.650469] rkdump: memory image=0x3ee00000+0x99000 heap=2048 KiB page-tables=6
[   4.650500] rkdump: report begin
[   4.671500] rkdump: report end ms=21
[   4.680001] rkdump: checksum mode=auto kind=full covers=every byte
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
        assert_eq!(s.report_ms, Some(21.0));
        assert_eq!(s.checksum.as_deref(), Some("full (default)"));
        let none = RKDUMP_LOG.replace(
            "mode=auto kind=full covers=every byte",
            "mode=none kind=none covers=none",
        );
        let s = measure(Kind::Rkdump, &ConsoleLog::parse_saved(&none), None);
        assert_eq!(s.checksum.as_deref(), Some("none"));
        assert_eq!(s.image_len, Some(0x99000));
        assert!((s.rate().unwrap() - 176.9).abs() < 0.1);
        let serial = RKDUMP_LOG.replace("target=disk:0000:01:00.0", "target=serial:ttyS1");
        assert!(!measure(Kind::Rkdump, &ConsoleLog::parse_saved(&serial), None).ok);
        let cut = RKDUMP_LOG.lines().take(6).collect::<Vec<_>>().join("\n");
        let s = measure(Kind::Rkdump, &ConsoleLog::parse_saved(&cut), None);
        assert!(!s.ok && s.why.contains("dump complete"));
    }

    #[test]
    fn kdump_compression_phase() {
        let log = RKDUMP_LOG.replace(
            "[  10.611862] rkdump: dump complete",
            "[  10.611000] rkdump: kdump phases cpus=2 read_ms=120 compress_ms=2514 write_ms=88\n[  10.611862] rkdump: dump complete",
        );
        let s = measure(Kind::KdumpCpus2, &ConsoleLog::parse_saved(&log), None);
        assert!(s.ok, "{s:?}");
        assert_eq!(s.compress, Some((2, 2514.0)));
        let s = measure(Kind::Rkdump, &ConsoleLog::parse_saved(RKDUMP_LOG), None);
        assert_eq!(s.compress, None, "ELF dumps have no compression phase");
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
        let zlib = Flattened {
            stream_len: 17 << 20,
            file_len: 16 << 20,
            status: 0x1,
        };
        let s = measure(Kind::PeerMkdf, &mk, Some(Ok(zlib)));
        assert!(s.ok, "{s:?}");
        assert!((s.durable.unwrap() - 26.7).abs() < 1e-9);
        assert!((s.write_secs.unwrap() - 22.0).abs() < 1e-9);
        assert_eq!((s.written, s.vmcore), (Some(17 << 20), Some(846_913_536)));
        assert_eq!(s.file_bytes, Some(16 << 20));
        // The lzo row refuses a zlib file (an /init that ignored the codec word), and takes an
        // lzo one.
        let s = measure(Kind::PeerMkdfLzo, &mk, Some(Ok(zlib)));
        assert!(!s.ok && s.why.contains("not lzo (0x2)"), "{s:?}");
        let lzo = Flattened {
            status: 0x2,
            ..zlib
        };
        assert!(measure(Kind::PeerMkdfLzo, &mk, Some(Ok(lzo))).ok);
        assert!(!measure(Kind::PeerMkdf, &mk, Some(Ok(lzo))).ok);
        assert!(!measure(Kind::PeerMkdf, &mk, Some(Err("x".into()))).ok);
        let failed = mk.lines.last().unwrap().text.replace("rc=0 ", "rc=1 ");
        mk.lines.last_mut().unwrap().text = failed;
        assert!(!measure(Kind::PeerMkdf, &mk, Some(Ok(zlib))).ok);

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

    /// A stream of `records` at their offsets.
    fn flat_stream(records: &[(i64, &[u8])], end: bool) -> Vec<u8> {
        let mut v = b"makedumpfile\0\0\0\0".to_vec();
        v.extend(1i64.to_be_bytes());
        v.extend(1i64.to_be_bytes());
        v.resize(4096, 0);
        for (off, r) in records {
            v.extend(off.to_be_bytes());
            v.extend((r.len() as i64).to_be_bytes());
            v.extend_from_slice(r);
        }
        if end {
            v.extend((-1i64).to_be_bytes());
            v.extend((-1i64).to_be_bytes());
        }
        v
    }

    #[test]
    fn flattened_stream_length() {
        // The header block (status 0x2 at 0x1A8) written last, as makedumpfile does, after
        // data at 8192..13192.
        let mut header = vec![0u8; 4096];
        header[0x1A8] = 0x2;
        let s = flat_stream(&[(8192, &[7u8; 5000]), (0, &header)], true);
        let len = s.len() as u64;
        let mut padded = s.clone();
        padded.extend([0xAAu8; 100]);
        assert_eq!(
            flattened_len(&mut std::io::Cursor::new(padded)),
            Ok(Flattened {
                stream_len: len,
                file_len: 13_192,
                status: 0x2
            })
        );
        let open = flat_stream(&[(0, b"abc")], false);
        assert!(flattened_len(&mut std::io::Cursor::new(open)).is_err());
        assert!(flattened_len(&mut std::io::Cursor::new(vec![0u8; 8192])).is_err());
    }
}
