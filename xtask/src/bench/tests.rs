//! Unit tests of the bench's pure parts: measurement, statistics, reports, retries, options and
//! cases.

use std::path::Path;
use std::time::Duration;

use super::cases::*;
use super::cli::*;
use super::markdown::*;
use super::measure::*;
use super::procstat::*;
use super::run::*;
use super::stats::*;
use super::svg::*;
use crate::e2e::DiskKind;
use crate::e2e::console::{ConsoleLog, Line};

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
    let o = parse_opts(&[]).unwrap();
    assert_eq!((o.rams.clone(), o.reps, o.bisect), (vec![1], 3, true));
    assert_eq!(o.kinds, Kind::ALL.to_vec());
    let args: Vec<String> = ["--slow", "--quick", "--only", "rawdd,rkdump"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let o = parse_opts(&args).unwrap();
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
