//! Orchestration: one harness per capture-kernel set-up, timed repetitions with retries when
//! the host is busy, the bisection probes, and the reports written to `target/bench`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rkdump_tests::disk;
use rkdump_tests::tools::{self, which};
use rkdump_tests::verify;

use super::anchors;
use super::cases::{Kind, append_rkdump, bench_case};
use super::markdown::{
    NOTES, fmt_s, render_cpus, render_ratios, render_runs, render_table, render_targets,
};
use super::measure::{Sample, flattened_len, measure};
use super::procstat::{BUSY_LIMIT, cpu_snapshot, mem_available, others_busy, wait_until_quiet};
use super::stats::{Row, Search, bisect};
use super::svg::{chart_panels, render_svg};
use crate::e2e::{self, CaptureKind, Case, Harness};

/// Attempts per timed run (the last one counts, busy or not).
pub(super) const ATTEMPTS: usize = 3;

/// Why a run should be repeated: the harness could not run it (a build step failed while the
/// other engineer's tree or toolchain was in flux), or, for a timed run, other processes took
/// CPU time from QEMU.
pub(super) fn retry_reason(result: &Result<Sample, String>, timed: bool) -> Option<String> {
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
pub(super) fn with_retries(
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
pub(super) fn keep_logs(from: &Path, to: &Path) -> Result<(), String> {
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

/// Where disk images and run directories go: tmpfs keeps the host's page-cache writeback
/// (which throttles QEMU once about 2 GiB are dirty on this machine type) out of the figures.
/// Needs room for a guest, its disk image and the extracted vmcore at the largest RAM size.
pub(super) fn work_dir(chosen: Option<&Path>, max_ram_gib: u32, fallback: &Path) -> PathBuf {
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

/// Largest guest (GiB) whose timed runs get a zero-filled disk image: above it an image the
/// size of RAM would take the host's memory or tens of GiB of its disk.
pub(super) const FILL_MAX_GIB: u32 = 4;

/// Whether a timed run writes its disk image full of zeros first (`--sparse` aside): not the
/// kdump rows, whose file is tens to hundreds of MB whatever the RAM, and nothing above
/// [`FILL_MAX_GIB`].
pub(super) fn fills_image(kind: Kind, ram_gib: u32) -> bool {
    kind.kdump_params().is_none() && ram_gib <= FILL_MAX_GIB
}

/// Runs one case and measures it; cleans bulky files unless `keep`.
pub(super) fn run_one(
    h: &Harness,
    kind: Kind,
    case: &Case,
    disk: &Path,
    logs: &Path,
    keep: bool,
) -> Result<Sample, String> {
    let ram_bytes = case.memory_bytes().ok_or("bad -m")?;
    if matches!(kind, Kind::GuestElf | Kind::GuestKdump) {
        // The anchor writes its dump where the others' disk images live.
        if let Some(d) = disk.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let before = cpu_snapshot();
        let t0 = std::time::Instant::now();
        let mut s = anchors::guest_dump(h, kind, case, disk)?;
        s.others_busy = match (before, cpu_snapshot()) {
            (Some(b), Some(a)) => others_busy(b, a, t0.elapsed()),
            _ => None,
        };
        keep_logs(&h.out_root.join(&case.name), &logs.join(&case.name))?;
        if !keep {
            let _ = std::fs::remove_file(disk);
            let _ = std::fs::remove_dir_all(h.out_root.join(&case.name));
        }
        report_run(case, &s);
        return Ok(s);
    }
    if !kind.is_rkdump() {
        if let Some(d) = disk.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let _ = std::fs::remove_file(disk);
        let size = ram_bytes + (256 << 20);
        disk::create(disk, size, case.dump_disk_fill())?;
    }
    let before = cpu_snapshot();
    let t0 = std::time::Instant::now();
    let r = e2e::run_case(case, h)?;
    let wall = t0.elapsed();
    let busy = match (before, cpu_snapshot()) {
        (Some(b), Some(a)) => others_busy(b, a, wall),
        _ => None,
    };
    let flat = kind.makedumpfile().is_some().then(|| {
        std::fs::File::open(disk)
            .map_err(|e| format!("{}: {e}", disk.display()))
            .and_then(|f| flattened_len(&mut BufReader::new(f)))
    });
    let mut s = measure(kind, &r.log, flat);
    s.others_busy = busy;
    if kind.kdump_params().is_some() {
        s.file_bytes = saved_kdump_bytes(&r.checks);
    }
    match kind {
        k if k.is_rkdump() && s.ok && !r.passed() => {
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
                .and_then(|report| Ok(verify::check_marker_file(disk, &report)?));
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
    report_run(case, &s);
    Ok(s)
}

/// The saved kdump file's size from the harness's kdump check (`... clean (<n> bytes)`): the
/// file is deleted with a passing run's directory, the check's text stays.
pub(super) fn saved_kdump_bytes(checks: &[e2e::checks::Check]) -> Option<u64> {
    let text = checks
        .iter()
        .find(|c| c.name.starts_with("kdump file opened"))?
        .result
        .as_ref()
        .ok()?;
    let (head, _) = text.rsplit_once(" bytes)")?;
    head.rsplit_once('(')?.1.parse().ok()
}

/// The one-line progress report of a finished run.
fn report_run(case: &Case, s: &Sample) {
    eprintln!(
        "bench: {} -> {} first {} report {} durable {} write {} {} MiB/s, other processes {} CPUs{}",
        case.name,
        if s.ok { "ok" } else { "FAIL" },
        fmt_s(s.first_line),
        s.report_ms.map_or("-".into(), |v| format!("{v:.0} ms")),
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
}

/// Entry point of `cargo xtask bench`.
pub fn main(args: super::Args) -> Result<(), String> {
    let o = args.resolve()?;
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
        crate::build::Artefacts::paths().bzimage
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
    let makedumpfile = which("makedumpfile");
    let started = std::time::Instant::now();
    let mut rows: Vec<Row> = Vec::new();

    // One harness (one initramfs, one lock hold) per capture kernel set-up, in turn.
    let phases: [(&[Kind], CaptureKind); 3] = [
        (
            &[
                Kind::Rkdump,
                Kind::RkdumpVirtio,
                Kind::RawDd,
                Kind::RawDdVirtio,
                Kind::GuestElf,
                Kind::GuestKdump,
                Kind::HostLimit,
                Kind::KdumpCpus1,
                Kind::KdumpCpus2,
                Kind::RkdumpL31Lzo,
                Kind::RkdumpL31Zlib,
                Kind::RkdumpL0Lzo,
            ],
            CaptureKind::Rkdump,
        ),
        (&[Kind::PeerRaw], CaptureKind::Linux),
        (&[Kind::PeerMkdf, Kind::PeerMkdfLzo], CaptureKind::Linux),
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
        let tools: Vec<PathBuf> = if kinds.iter().any(|k| k.makedumpfile().is_some()) {
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
                    image: kind.crashes().then(|| image.clone()),
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
                    if kind == Kind::HostLimit {
                        let s = with_retries(o.wait_quiet, || anchors::host_limit(&disks, bytes))?;
                        eprintln!(
                            "bench: {name} -> {} MiB/s",
                            s.rate().map_or("-".into(), |v| format!("{v:.1}"))
                        );
                        row.samples.push(s);
                        continue;
                    }
                    let mut case = bench_case(kind, ram, row.crashkernel, &name, &disk, raw)?;
                    append_rkdump(&mut case, kind, &o.rkdump_append);
                    case.fill_dump_disk = o.fill && fills_image(kind, ram);
                    let s = with_retries(o.wait_quiet, || {
                        run_one(&h, kind, &case, &disk, &logs, o.keep)
                    })?;
                    if kind.is_rkdump() && s.ok {
                        dump_bytes = dump_bytes.or(s.written);
                    }
                    row.samples.push(s);
                }
            }
            if o.bisect {
                for row in phase_rows
                    .iter_mut()
                    .filter(|r| !r.kind.candidates().is_empty())
                {
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
    let cpus = render_cpus(&rows);
    let qemu_version = tools::output(Command::new("qemu-system-x86_64").arg("--version"))
        .ok()
        .and_then(|o| o.lines().next().map(str::to_string))
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
         First kernel {}; loader kexec_load (`kexec -p -c`); marker fills 1/4 of guest RAM; dump disks: QEMU NVMe and virtio-blk (modern, one queue) behind a pcie-root-port, raw images, cache=unsafe, in {} ({}), {}.\n\
         Timed runs: {} per configuration, medians shown; ratios are medians of per-repetition pairs. Host-clock times between console lines.\n\
         First kernel's dd (a guest-side reference, not the disk's limit): `dd if=/dev/zero of=/dev/nvme0n1 (or vda) bs={}M oflag=direct`, as many whole blocks as rkdump's dump has bytes.\n\
         Anchors: QEMU's `dump-guest-memory` over QMP (paging off; ELF and kdump-zlib) of the same marker-filled guest held idle, into the images' file system, timed from the command to its answer and to fdatasync; the host's write limit: the dump's bytes in 4 MiB writes into a pre-written file there, then fdatasync.{}\n\
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
            "written full of zeros before each timed run (sparse: the kdump rows and guests over 4 GiB)"
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
        "# rkdump benchmark (cargo xtask bench)\n\n{header}\n## Figures\n\n{table}\n## Ratios (rkdump / other)\n\n{ratios}\n## Targets\n\n{targets}\n## Compression on every CPU\n\n{cpus}\n{}## Reading the figures\n\n{NOTES}\n## Every run\n\n{}",
        super::slope::render(&rows),
        render_runs(&rows)
    );
    std::fs::write(out.join("results.md"), &md).map_err(|e| format!("writing results.md: {e}"))?;
    let svg = render_svg("rkdump vs Linux kdump, QEMU TCG", &chart_panels(&rows));
    std::fs::write(out.join("chart.svg"), svg).map_err(|e| format!("writing chart.svg: {e}"))?;
    println!("\n{header}\n{table}\n{ratios}\n{targets}\n{cpus}");
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
    fn the_saved_kdump_size_comes_from_the_kdump_check() {
        let check = |name: &str, result: Result<String, String>| e2e::checks::Check {
            name: name.into(),
            result,
        };
        let text = "6.1.0-57-cloud-amd64: 19702 pages read back, 0 marker pages (Absent); makedumpfile dmesg and crash bt/log clean (23832225 bytes)";
        let checks = vec![
            check("rkdumpctl save", Ok("x (5 bytes)".into())),
            check(
                "kdump file opened by makedumpfile and crash",
                Ok(text.into()),
            ),
        ];
        assert_eq!(saved_kdump_bytes(&checks), Some(23_832_225));
        let failed = vec![check(
            "kdump file opened by makedumpfile and crash",
            Err("crash failed (1 bytes)".into()),
        )];
        assert_eq!(saved_kdump_bytes(&failed), None);
        assert_eq!(saved_kdump_bytes(&checks[..1]), None);
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
        // Images the size of RAM are filled only up to 4 GiB; kdump files are small anyway.
        assert!(fills_image(Kind::Rkdump, 4) && !fills_image(Kind::Rkdump, 16));
        assert!(!fills_image(Kind::RkdumpL31Lzo, 1) && fills_image(Kind::PeerMkdf, 1));
        assert!(fills_image(Kind::PeerMkdfLzo, 1));
        // No host has 3 PiB available: the fallback.
        assert_eq!(work_dir(None, 1 << 20, Path::new("/f")), Path::new("/f"));
    }
}
