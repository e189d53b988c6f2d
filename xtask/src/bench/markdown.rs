//! The markdown of `target/bench/results.md`: figures, ratios, the issue-8 targets, notes on
//! reading them, and every run.

use std::fmt::Write as _;

use super::cases::Kind;
use super::measure::{MIB, Sample};
use super::stats::{Figure, Row, Search, median, pair_ratios, rams, ratio, ratio_of, row};

/// What results.md says about comparing the rows.
pub(super) const NOTES: &str = "\
- Each capture kernel dumps all RAM outside its own reservation: the peer's /proc/vmcore is smaller \
than rkdump's dump by the difference of the `crashkernel=` sizes (256M vs 16M), so the peer \
writes fewer bytes in the durable-time comparison.
- The first kernel's dd is the Linux first kernel's O_DIRECT write path under TCG: it measures \
what an emulated Linux can push into the emulated disk (the image is in RAM or the host page \
cache), a guest-side reference, not the disk's limit; a capture kernel with less per-page work \
can exceed it (bs=4M, 16M and 64M all gave 0.9-1.6 GB/s to NVMe here).
- The limit is the host's own write rate into the file system that holds the disk images (4 MiB \
writes into a pre-written file, then fdatasync); QEMU's `dump-guest-memory` is the \
hypervisor's own dump of the same guest (no capture kernel, no crash: its time runs from the \
QMP command to fdatasync of the file, rkdump's from the sysrq).
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

pub(super) fn fmt_s(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} s"))
}
pub(super) fn fmt_bytes(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0} ({:.1} MiB)", v, v / MIB))
}
pub(super) fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// The main markdown table.
pub(super) fn render_table(rows: &[Row]) -> String {
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
        let crash = r.kind.crashes();
        let _ = writeln!(
            s,
            "| {} GiB | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.ram_gib,
            r.label(),
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
            fmt_s(r.med(|s| s.durable)),
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

/// The ratio table: rkdump / other, median of the per-repetition pairs, one block per dump
/// disk. The anchors: the first kernel's `dd` on the same disk (a guest-side reference), QEMU's
/// own `dump-guest-memory` (ELF) on the same guest, and the host's write limit.
pub(super) fn render_ratios(rows: &[Row]) -> String {
    let mut s = String::from(
        "| RAM | rkdump dumping to | figure | / peer raw | / peer makedumpfile | / first kernel's dd, same disk | / QEMU dump-guest-memory (ELF) | / host write limit |\n|---|---|---|---|---|---|---|---|\n",
    );
    let figures: [(&str, Figure); 3] = [
        ("sysrq -> first capture line (s)", |s| s.first_line),
        ("sysrq -> dump durable (s)", |s| s.durable),
        ("write rate (MiB/s)", Sample::rate),
    ];
    for ram in rams(rows) {
        for (rk, dd, disk) in [
            (Kind::Rkdump, Kind::RawDd, "NVMe"),
            (Kind::RkdumpVirtio, Kind::RawDdVirtio, "virtio-blk"),
        ] {
            if row(rows, ram, rk).is_none() {
                continue;
            }
            for (name, f) in figures {
                let write = name.starts_with("write");
                let first = name.contains("first");
                let r = |other| fmt_ratio(ratio_of(rows, ram, rk, other, f));
                // makedumpfile writes a filtered, compressed dump: its MiB/s is not comparable;
                // the anchors have no capture kernel, so no first line; the host limit no sysrq.
                let mkdf = if write {
                    "n/a (compressed output)".into()
                } else {
                    r(Kind::PeerMkdf)
                };
                let dd = if write { r(dd) } else { "-".into() };
                let guest = if first { "-".into() } else { r(Kind::GuestElf) };
                let host = if write {
                    r(Kind::HostLimit)
                } else {
                    "-".into()
                };
                let _ = writeln!(
                    s,
                    "| {ram} GiB | {disk} | {name} | {} | {mkdf} | {dd} | {guest} | {host} |",
                    r(Kind::PeerRaw),
                );
            }
        }
    }
    s
}

/// One verdict line per target (issue 8: speed, crashkernel=, image size; issue 13: the anchors).
pub(super) fn render_targets(rows: &[Row], bzimage_len: u64) -> (String, bool) {
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
    // Issue 13, acceptance 4: level-31 kdump at 1 GiB durable at least 10x sooner than the
    // peer's makedumpfile collector with the same codec, and its file no bigger than the
    // peer's; for each codec whose rkdump and peer rows both ran.
    for (rk, peer) in [
        (Kind::RkdumpL31Lzo, Kind::PeerMkdfLzo),
        (Kind::RkdumpL31Zlib, Kind::PeerMkdf),
    ] {
        if row(rows, 1, rk).is_none() || row(rows, 1, peer).is_none() {
            continue;
        }
        let (flag, _, codec) = peer.makedumpfile().unwrap_or_default();
        let what =
            format!("1 GiB, level 31 kdump {codec} vs the peer's makedumpfile -{flag} -d 31");
        let med = |k, f: Figure| row(rows, 1, k).and_then(|r| r.med(f));
        let speedup = ratio_of(rows, 1, rk, peer, |s| s.durable).map(|r| 1.0 / r);
        line(
            speedup.map(|x| x >= 10.0),
            match speedup {
                Some(x) => format!(
                    "{what}: sysrq -> dump durable {x:.2}x faster (target >= 10x{}); medians rkdump {} vs peer {}",
                    if x >= 10.0 {
                        String::new()
                    } else {
                        format!(", missed by a factor {:.2}", 10.0 / x)
                    },
                    fmt_s(med(rk, |s| s.durable)),
                    fmt_s(med(peer, |s| s.durable))
                ),
                None => format!("{what}: sysrq -> dump durable: no successful pair"),
            },
        );
        let bytes = |s: &Sample| s.file_bytes.map(|v| v as f64);
        let size = ratio_of(rows, 1, rk, peer, bytes);
        line(
            size.map(|x| x <= 1.0),
            match size {
                Some(x) => format!(
                    "{what}: file {x:.4}x the peer's size (target <= 1: no bigger{}); medians rkdump {} (saved) vs peer {} (rebuilt) bytes",
                    if x <= 1.0 {
                        String::new()
                    } else {
                        format!(", {:+.2} % over", (x - 1.0) * 100.0)
                    },
                    med(rk, bytes).map_or("-".into(), |v| format!("{v:.0}")),
                    med(peer, bytes).map_or("-".into(), |v| format!("{v:.0}"))
                ),
                None => format!("{what}: file size: no successful pair"),
            },
        );
    }
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
    // 3. A full ELF dump writes at >= 80% of the host's write limit and is durable sooner than
    //    QEMU's own dump-guest-memory (ELF) of the same guest, on each disk.
    for ram in rams(rows) {
        for (rk, disk) in [(Kind::Rkdump, "NVMe"), (Kind::RkdumpVirtio, "virtio-blk")] {
            if row(rows, ram, rk).is_none() {
                continue;
            }
            let share = ratio_of(rows, ram, rk, Kind::HostLimit, Sample::rate);
            let (a, b) = (
                row(rows, ram, rk).and_then(|r| r.med(Sample::rate)),
                row(rows, ram, Kind::HostLimit).and_then(|r| r.med(Sample::rate)),
            );
            line(
                share.map(|x| x >= 0.8),
                match share {
                    Some(x) => format!(
                        "{ram} GiB, {disk}: rkdump writes at {:.0}% of the host's write limit (target >= 80%{}); medians {:.1} vs {:.1} MiB/s",
                        x * 100.0,
                        if x >= 0.8 {
                            String::new()
                        } else {
                            format!(", missed by {:.0} points", (0.8 - x) * 100.0)
                        },
                        a.unwrap_or(f64::NAN),
                        b.unwrap_or(f64::NAN)
                    ),
                    None => format!(
                        "{ram} GiB, {disk}: rkdump vs the host's write limit: no successful pair"
                    ),
                },
            );
            let vs = ratio_of(rows, ram, rk, Kind::GuestElf, |s| s.durable);
            let (a, b) = (
                row(rows, ram, rk).and_then(|r| r.med(|s| s.durable)),
                row(rows, ram, Kind::GuestElf).and_then(|r| r.med(|s| s.durable)),
            );
            line(
                vs.map(|x| x < 1.0),
                match vs {
                    Some(x) => format!(
                        "{ram} GiB, {disk}: rkdump's sysrq -> durable takes {:.2}x the time of QEMU's dump-guest-memory (ELF, command -> fdatasync) (target < 1); medians {} vs {}",
                        x,
                        fmt_s(a),
                        fmt_s(b)
                    ),
                    None => format!(
                        "{ram} GiB, {disk}: rkdump vs dump-guest-memory: no successful pair"
                    ),
                },
            );
        }
    }
    // 6. rkdump writes a disk at least as fast as the first kernel's own driver does
    //    (`dd oflag=direct` of the same bytes to the same disk), the issue-13 target for
    //    virtio-blk; shown for NVMe too.
    for ram in rams(rows) {
        for (rk, dd, disk) in [
            (Kind::Rkdump, Kind::RawDd, "NVMe"),
            (Kind::RkdumpVirtio, Kind::RawDdVirtio, "virtio-blk"),
        ] {
            if row(rows, ram, rk).is_none() || row(rows, ram, dd).is_none() {
                continue;
            }
            let x = ratio_of(rows, ram, rk, dd, Sample::rate);
            let (a, b) = (
                row(rows, ram, rk).and_then(|r| r.med(Sample::rate)),
                row(rows, ram, dd).and_then(|r| r.med(Sample::rate)),
            );
            line(
                x.map(|x| x >= 1.0),
                match x {
                    Some(x) => format!(
                        "{ram} GiB, {disk}: rkdump writes at {x:.2}x the first kernel's dd oflag=direct rate on the same disk (target >= 1); medians {:.1} vs {:.1} MiB/s",
                        a.unwrap_or(f64::NAN),
                        b.unwrap_or(f64::NAN)
                    ),
                    None => format!(
                        "{ram} GiB, {disk}: rkdump vs the first kernel's dd: no successful pair"
                    ),
                },
            );
        }
    }
    // 5. The crash report costs under 100 ms of the sysrq -> dump time.
    for ram in rams(rows) {
        let Some(r) = row(rows, ram, Kind::Rkdump) else {
            continue;
        };
        let ms = r.med(|s| s.report_ms);
        line(
            ms.map(|m| m < 100.0),
            match ms {
                Some(m) => format!(
                    "{ram} GiB: the crash report costs {m:.0} ms before the dump (median of rkdump's `report end ms=`; target < 100 ms)"
                ),
                None => format!("{ram} GiB: no `rkdump: report end ms=` line"),
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

/// The compression phase on one CPU and on two (issue 13: `rkdump.cpus=2` vs `1` on the
/// 2-vCPU guest): rkdump's own clock around the batches' compression, which runs on every CPU
/// that came up; reading old memory and writing the disk stay on the crashing CPU. A
/// `rkdump.cpus=2` run whose crash happened on the second vCPU has only one CPU (rkdump never
/// wakes the boot CPU): it is listed but left out of the speedup.
pub(super) fn render_cpus(rows: &[Row]) -> String {
    let mut s = String::from(
        "| RAM | configuration | ok runs | CPUs that compressed | compression phase (median) | speedup over rkdump.cpus=1 (median of pairs) | sysrq -> dump durable | bytes written | other processes (CPUs, median) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let compress: Figure = |x| x.compress.map(|(_, ms)| ms / 1000.0);
    let on_several: Figure = |x| x.compress.filter(|c| c.0 > 1).map(|(_, ms)| ms / 1000.0);
    let mut any = false;
    for ram in rams(rows) {
        for kind in [Kind::KdumpCpus1, Kind::KdumpCpus2] {
            let Some(r) = row(rows, ram, kind) else {
                continue;
            };
            any = true;
            let mut cpus: Vec<u64> = r
                .samples
                .iter()
                .filter_map(|x| x.compress.map(|c| c.0))
                .collect();
            cpus.sort_unstable();
            cpus.dedup();
            let speedup = if kind == Kind::KdumpCpus1 {
                "1 (reference)".to_string()
            } else {
                let a = row(rows, ram, Kind::KdumpCpus1).map(|r| r.values(compress));
                let b = r.values(on_several);
                a.and_then(|a| median(&pair_ratios(&a, &b)))
                    .map_or("- (no run compressed on more than one CPU)".into(), |v| {
                        format!("{v:.2}x")
                    })
            };
            let _ = writeln!(
                s,
                "| {ram} GiB | {} | {}/{} | {:?} | {} | {speedup} | {} | {} | {} |",
                kind.label(),
                r.ok_runs(),
                r.samples.len(),
                cpus,
                fmt_s(r.med(compress)),
                fmt_s(r.med(|x| x.durable)),
                fmt_bytes(r.med(|x| x.written.map(|v| v as f64))),
                r.med(|x| x.others_busy)
                    .map_or("-".into(), |v| format!("{v:.2}")),
            );
        }
    }
    if !any {
        s = "not measured (`--only kdump-cpus1,kdump-cpus2`)\n".into();
    }
    s
}

/// Every run, for the record (guest-clock cross-checks included).
pub(super) fn render_runs(rows: &[Row]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::testdata::{rows, sample};

    #[test]
    fn compression_speedup_renders() {
        let one = |ms: f64, cpus: u64| Sample {
            compress: Some((cpus, ms)),
            ..sample(3.0, 2.5, 17 << 20)
        };
        let row = |kind, samples| Row {
            ram_gib: 1,
            kind,
            crashkernel: 16,
            samples,
            search: None,
            image: None,
        };
        assert!(render_cpus(&[]).starts_with("not measured"));
        let rows = [
            row(Kind::KdumpCpus1, vec![one(2000.0, 1), one(2200.0, 1)]),
            row(Kind::KdumpCpus2, vec![one(1000.0, 2), one(1375.0, 2)]),
        ];
        let t = render_cpus(&rows);
        // Pairs: 2000/1000 = 2.0 and 2200/1375 = 1.6: median 1.8.
        assert!(t.contains("| [2] | 1.19 s | 1.80x |"), "{t}");
        assert!(t.contains("| [1] | 2.10 s | 1 (reference) |"), "{t}");
        // A cpus=2 run that had one CPU (crash on the second vCPU) is not a speedup sample.
        let rows = [
            row(Kind::KdumpCpus1, vec![one(2000.0, 1), one(2200.0, 1)]),
            row(Kind::KdumpCpus2, vec![one(1000.0, 2), one(2100.0, 1)]),
        ];
        let t = render_cpus(&rows);
        assert!(t.contains("| [1, 2] | 1.55 s | 2.00x |"), "{t}");
        let rows = [
            row(Kind::KdumpCpus1, vec![one(2000.0, 1)]),
            row(Kind::KdumpCpus2, vec![one(2100.0, 1)]),
        ];
        assert!(render_cpus(&rows).contains("no run compressed on more than one CPU"));
    }

    #[test]
    fn tables_render() {
        let r = rows();
        let t = render_table(&r);
        assert_eq!(t.lines().count(), 2 + r.len());
        assert!(
            t.contains(
                "| 1 GiB | rkdump, NVMe, checksum full (default) | 16M | 2/3 | 0.11 s | 1.10 s |"
            ),
            "{t}"
        );
        assert!(t.contains("| 8M |"), "{t}");
        assert!(t.contains("| 80M |"), "{t}");
        assert!(t.contains("- (no crash)"), "{t}");
        let q = render_ratios(&r);
        assert!(
            q.contains("| 1 GiB | NVMe | sysrq -> dump durable (s) | 0.083 | - | - | 0.500 | - |"),
            "{q}"
        );
        let (targets, all) = render_targets(&r, 365_568);
        assert!(all, "{targets}");
        assert!(
            targets.contains("**met**: 1 GiB: smallest working crashkernel= for rkdump is 8M"),
            "{targets}"
        );
        assert!(
            targets.contains("**met**: 1 GiB: the crash report costs 28 ms"),
            "{targets}"
        );
        assert!(
            targets
                .contains("**met**: 1 GiB, NVMe: rkdump writes at 101% of the host's write limit"),
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
        assert!(
            targets.contains("1 GiB, NVMe: rkdump writes at ")
                && targets.contains("x the first kernel's dd oflag=direct rate on the same disk"),
            "{targets}"
        );
        let runs = render_runs(&r);
        assert!(runs.contains("4M FAIL (oom)"), "{runs}");
    }

    fn targets_with_virtio_missing_is_silent(r: &[Row]) -> bool {
        !render_targets(r, 1).0.contains("virtio-blk")
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
        assert!(
            t.contains("**MISSED**: 1 GiB, NVMe: rkdump writes at 17% of the host's write limit"),
            "{t}"
        );
        assert!(
            t.contains("**MISSED**: 1 GiB, NVMe: rkdump's sysrq -> durable takes 3.00x"),
            "{t}"
        );
        assert!(
            t.contains("**MISSED**: 1 GiB, NVMe: rkdump writes at 0.1"),
            "slower than the first kernel's dd: {t}"
        );
        assert!(
            targets_with_virtio_missing_is_silent(&r),
            "no virtio row: no virtio target lines"
        );
        assert!(t.contains("**MISSED**: bzImage is 2097152 bytes"), "{t}");
    }

    /// Issue 13 acceptance 4: one speed and one size line per codec whose rkdump and peer rows
    /// both ran, each pass or fail on its own.
    #[test]
    fn level31_kdump_against_the_makedumpfile_peer_of_its_codec() {
        let kdump = |kind, durable, file: u64| Row {
            ram_gib: 1,
            kind,
            crashkernel: 16,
            samples: vec![Sample {
                file_bytes: Some(file),
                ..sample(durable, durable, file)
            }],
            search: None,
            image: None,
        };
        let mut r = rows();
        r.push(kdump(Kind::RkdumpL31Lzo, 2.0, 23_837_297));
        r.push(kdump(Kind::PeerMkdfLzo, 40.0, 24_060_102));
        // zlib: fast enough, but 1 byte bigger than the peer.
        r.push(kdump(Kind::RkdumpL31Zlib, 3.0, 17_282_285));
        r.push(kdump(Kind::PeerMkdf, 31.0, 17_282_284));
        let (t, all) = render_targets(&r, 365_568);
        assert!(!all, "{t}");
        assert!(
            t.contains("**met**: 1 GiB, level 31 kdump lzo vs the peer's makedumpfile -l -d 31: sysrq -> dump durable 20.00x faster (target >= 10x); medians rkdump 2.00 s vs peer 40.00 s"),
            "{t}"
        );
        assert!(
            t.contains("**met**: 1 GiB, level 31 kdump lzo vs the peer's makedumpfile -l -d 31: file 0.9907x the peer's size (target <= 1: no bigger); medians rkdump 23837297 (saved) vs peer 24060102 (rebuilt) bytes"),
            "{t}"
        );
        assert!(
            t.contains("**met**: 1 GiB, level 31 kdump zlib vs the peer's makedumpfile -c -d 31: sysrq -> dump durable 10.33x faster"),
            "{t}"
        );
        assert!(
            t.contains("**MISSED**: 1 GiB, level 31 kdump zlib vs the peer's makedumpfile -c -d 31: file 1.0000x the peer's size (target <= 1: no bigger, +0.00 % over)"),
            "{t}"
        );
        // A peer row that ran without a successful run: not measured, not met.
        r.retain(|row| row.kind != Kind::RkdumpL31Zlib);
        let peer = r
            .iter_mut()
            .find(|row| row.kind == Kind::PeerMkdfLzo)
            .unwrap();
        peer.samples = vec![Sample::failed("the peer's file has status 0x1, not lzo")];
        let (t, all) = render_targets(&r, 365_568);
        assert!(!all);
        assert!(
            t.contains("**not measured**: 1 GiB, level 31 kdump lzo vs the peer's makedumpfile -l -d 31: sysrq -> dump durable: no successful pair"),
            "{t}"
        );
        assert!(
            !t.contains("kdump zlib"),
            "no zlib rkdump row, no zlib lines: {t}"
        );
    }
}
