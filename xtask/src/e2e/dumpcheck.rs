//! Checks of the full-dump cases: the dump rkdump wrote to the labelled disk is extracted with
//! `rkdumpctl save` and checked like a consumer would (`rkdump_tests::verify`: ELF shape, notes, every marker
//! page at its reported frame, readelf, makedumpfile --dump-dmesg); the negative controls must
//! fail the way QEMU predicts for a device nobody reset.

use std::path::Path;

use super::case::{Case, DiskKind};
use super::checks::{Check, RunEnd};
use super::console::ConsoleLog;

fn check(name: &str, result: Result<String, String>) -> Check {
    Check {
        name: name.to_string(),
        result,
    }
}

/// Adds the dump-disk checks to `checks` (and, for negative controls, replaces the generic
/// "no rkdump errors" check, since errors are the expected outcome there).
pub fn apply(
    case: &Case,
    log: &ConsoleLog,
    end: &RunEnd,
    stderr: &str,
    img: &Path,
    dir: &Path,
    checks: &mut Vec<Check>,
) {
    let rk = log.rkdump();
    let Some(kind) = case.dump_disk else { return };
    if case.scramble.is_some() {
        blob_checks(case, log, checks);
    }
    if case.extra_qemu_args.iter().any(|a| a.contains("la57")) {
        // `rkdump: boot source=zeropage cr4=0x...`: bit 12 is LA57.
        let cr4 = log.lines.iter().find_map(|l| {
            let hex = l
                .text
                .split("rkdump: boot source=")
                .nth(1)?
                .split("cr4=0x")
                .nth(1)?;
            u64::from_str_radix(hex.trim(), 16).ok()
        });
        checks.push(check(
            "entered with 5-level paging",
            match cr4 {
                Some(v) if v & (1 << 12) != 0 => Ok(format!("cr4={v:#x} (LA57)")),
                other => Err(format!(
                    "cr4 {other:x?} lacks LA57: the first kernel did not use 5-level paging"
                )),
            },
        ));
    }
    if case.expect_disk_failure {
        checks.retain(|c| c.name != "no rkdump errors");
        // Each negative control names the one failure it expects (docs/device-reinit.md,
        // #why-resets-are-needed); any other error does not count.
        let (expected, disk_error) = match kind {
            DiskKind::Virtio => (
                "virtio-blk device status with NEEDS_RESET (0x40)",
                super::checks::virtio_needs_reset_error(&rk.errors),
            ),
            DiskKind::Nvme => (
                "nvme admin-completion timeout with CSTS.RDY=1",
                super::checks::nvme_admin_timeout_error(&rk.errors),
            ),
            DiskKind::Ahci => (
                super::hardware::AHCI_NORESET_FAILURE,
                super::hardware::ahci_noreset_error(&rk.errors),
            ),
        };
        checks.push(check(
            "disk fails without reset",
            match disk_error {
                Some(e) => Ok(e.clone()),
                None => Err(format!("no {expected} error; errors: {:?}", rk.errors)),
            },
        ));
        if kind == DiskKind::Virtio {
            // QEMU flags the device broken (NEEDS_RESET) when it walks the old kernel's ring.
            checks.push(check(
                "QEMU: stale ring detected",
                match super::checks::qemu_stale_ring_error(stderr) {
                    Some(l) => Ok(format!("QEMU stderr: {l}")),
                    None => Err(format!(
                        "QEMU stderr has none of {:?}: {}",
                        super::checks::QEMU_STALE_RING_ERRORS,
                        stderr.trim()
                    )),
                },
            ));
        }
        checks.push(check(
            "falls back to serial",
            match &rk.dump_start {
                Some((_, args)) if args.contains("target=serial") => Ok(args.clone()),
                other => Err(format!("dump start: {other:?}")),
            },
        ));
        return;
    }

    checks.push(check(
        "dump complete on disk",
        match (&rk.dump_complete, end) {
            (Some((_, args)), _) if args.contains("target=disk:") => Ok(args.clone()),
            (other, _) => Err(format!(
                "no `dump complete ... target=disk:` line ({other:?}); end: {end:?}"
            )),
        },
    ));
    let vmcore = dir.join("vmcore");
    let saved = crate::build::rkdumpctl()
        .and_then(|ctl| Ok(ctl.save(img, &vmcore, false)?.trim().to_string()));
    let ok = saved.is_ok();
    let coverage = saved.clone().unwrap_or_default();
    checks.push(check("rkdumpctl save", saved));
    if !ok {
        return;
    }
    // Issue 12: the default dump is verified byte for byte, QEMU included.
    if !case.capture_extra.contains("rkdump.checksum=") {
        checks.push(check(
            "default checksum verified every byte",
            if coverage.contains("coverage: every byte") {
                Ok("coverage: every byte".to_string())
            } else {
                Err(format!("save did not verify every byte: {coverage}"))
            },
        ));
    }
    // The crash report is checked on every disk dump, ELF or kdump-compressed.
    dump_file_checks(case, log, &vmcore, dir, checks);
    super::reportcheck::apply(case, log, &vmcore, dir, checks);
}

/// The dump file's own checks, for the level and format the case runs with: the filter line
/// (when filtering), then the kdump file opened by makedumpfile and crash, or the ELF vmcore
/// verified. Whether the file is an ELF vmcore.
fn dump_file_checks(
    case: &Case,
    log: &ConsoleLog,
    vmcore: &Path,
    dir: &Path,
    checks: &mut Vec<Check>,
) -> bool {
    let opts = case.rkdump_options();
    if opts.level != 0 {
        checks.push(filter_check(case, log));
    }
    let expect = if case.markers_absent {
        rkdump_tests::verify::MarkerExpect::Absent
    } else {
        rkdump_tests::verify::MarkerExpect::Present
    };
    if opts.format == rkdump_boot::cmdline::DumpFormat::Kdump {
        checks.push(kdump_check(log, vmcore, dir, expect));
        super::refsize::apply(case, vmcore, dir, checks);
        false
    } else {
        checks.push(verify_check(log, vmcore, dir, expect));
        true
    }
}

/// `rkdump.level=` cases: the console's `filter` line names the level asked for (no fallback)
/// and, with page-flag bits, excluded pages.
fn filter_check(case: &Case, log: &ConsoleLog) -> Check {
    let want = case.rkdump_options().level.to_string();
    let want = want.as_str();
    let line = log
        .lines
        .iter()
        .find_map(|l| l.text.split("rkdump: filter level=").nth(1));
    check(
        "filter applied",
        match line {
            None if want == "0" => Ok("level 0: no filter line".to_string()),
            None => Err("no `rkdump: filter level=` line".to_string()),
            Some(rest) => {
                let level = rest.split_whitespace().next().unwrap_or("");
                let excluded = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("excluded="))
                    .and_then(|v| v.parse::<u64>().ok());
                let needs_pages = want.parse::<u8>().is_ok_and(|l| l & 30 != 0);
                if level != want {
                    Err(format!("level {level} in effect, {want} asked: {rest}"))
                } else if needs_pages && excluded.unwrap_or(0) == 0 {
                    Err(format!("no page excluded: {rest}"))
                } else {
                    Ok(format!("level={rest}"))
                }
            }
        },
    )
}

/// A kdump-compressed file read by the two tools users open it with: `makedumpfile
/// --dump-dmesg` must show the sysrq crash, and `crash` with the Debian debug vmlinux of the
/// crashed kernel's release must run `bt` (the crashing task in `sysrq_handle_crash`) and `log`
/// without printing any read error. The marker pages are checked in the file as `expect` says.
fn kdump_check(
    log: &ConsoleLog,
    vmcore: &Path,
    dir: &Path,
    expect: rkdump_tests::verify::MarkerExpect,
) -> Check {
    let run = || -> Result<String, String> {
        let bytes = std::fs::read(vmcore).map_err(|e| format!("{}: {e}", vmcore.display()))?;
        let file = rkdump_vmcore::kdump::KdumpFile::parse(&bytes)
            .map_err(|e| format!("not a kdump-compressed file: {e}"))?;
        let release = file.header.utsname.release;
        let end = release
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(release.len());
        let release = String::from_utf8_lossy(&release[..end]).into_owned();
        let pages = file
            .for_each_page(&mut |_, _, _| {})
            .map_err(|e| format!("{e}"))?;
        let marker = log.first_kernel().marker.ok_or("no marker report")?;
        let markers = rkdump_tests::verify::kdump_markers(&file, &marker, expect)?;
        drop(bytes);
        let dmesg = dir.join("dmesg.txt");
        let _ = std::fs::remove_file(&dmesg);
        rkdump_tests::tools::output(
            std::process::Command::new("makedumpfile")
                .arg("--dump-dmesg")
                .arg(vmcore)
                .arg(&dmesg),
        )?;
        let log = std::fs::read_to_string(&dmesg).map_err(|e| format!("{e}"))?;
        if !log.contains("sysrq: Trigger a crash") {
            return Err("makedumpfile --dump-dmesg: no `sysrq: Trigger a crash`".into());
        }
        let vmlinux = rkdump_tests::tools::debug_vmlinux(&release)?;
        let out = rkdump_tests::tools::crash(&vmlinux, vmcore, &["bt", "log"], dir)?;
        if !out.contains("sysrq_handle_crash") {
            return Err(format!(
                "crash bt lacks sysrq_handle_crash (see {})",
                dir.join("crash.txt").display()
            ));
        }
        if !out.contains("sysrq: Trigger a crash") {
            return Err("crash log lacks the sysrq crash".into());
        }
        Ok(format!(
            "{release}: {pages} pages read back, {markers} marker pages ({expect:?}); makedumpfile dmesg and crash bt/log clean ({} bytes)",
            std::fs::metadata(vmcore).map(|m| m.len()).unwrap_or(0)
        ))
    };
    check("kdump file opened by makedumpfile and crash", run())
}

/// The power-cut case: QEMU was killed mid-dump after checkpoints. Plain `save` must refuse and
/// say how much `--partial` recovers; `--partial` must write exactly that, at least as much as the
/// last checkpoint the console reported, with every marker page inside it byte-exact.
pub fn apply_power_cut(log: &ConsoleLog, img: &Path, dir: &Path, checks: &mut Vec<Check>) {
    let rk = log.rkdump();
    // `rkdump: checkpoint bytes=<N> ms=<T>`
    let cps: Vec<(u64, u64)> = log
        .lines
        .iter()
        .filter_map(|l| {
            let rest = l.text.split("rkdump: checkpoint bytes=").nth(1)?;
            let (n, ms) = rest.split_once(" ms=")?;
            Some((n.trim().parse().ok()?, ms.trim().parse().ok()?))
        })
        .collect();
    let last = cps.iter().map(|c| c.0).max().unwrap_or(0);
    checks.push(check(
        "checkpoints before the cut",
        if cps.len() >= 2 && rk.dump_complete.is_none() {
            Ok(format!(
                "{} checkpoints, last bytes={last}; checkpoint ms: {:?}",
                cps.len(),
                cps.iter().map(|c| c.1).collect::<Vec<_>>()
            ))
        } else {
            Err(format!(
                "{} checkpoint lines, dump complete: {:?}",
                cps.len(),
                rk.dump_complete
            ))
        },
    ));
    let ctl = match crate::build::rkdumpctl() {
        Ok(c) => c,
        Err(e) => {
            checks.push(check("rkdumpctl", Err(e)));
            return;
        }
    };
    let vmcore = dir.join("vmcore");
    // "--partial would recover <N> bytes"
    let would = match ctl.save(img, &vmcore, false) {
        Ok(out) => Err(format!(
            "plain save accepted an interrupted dump: {}",
            out.trim()
        )),
        Err(e) => {
            let text = e.to_string();
            text.split("--partial would recover ")
                .nth(1)
                .and_then(|r| r.split(' ').next()?.parse::<u64>().ok())
                .ok_or(text)
        }
    };
    checks.push(check(
        "rkdumpctl save refuses",
        would
            .clone()
            .map(|n| format!("refused; --partial would recover {n} bytes")),
    ));
    let Ok(would) = would else { return };
    let partial = ctl.save(img, &vmcore, true).map_err(|e| e.to_string());
    let size = std::fs::metadata(&vmcore).map(|m| m.len()).unwrap_or(0);
    checks.push(check(
        "rkdumpctl save --partial",
        match partial {
            Ok(out)
                if size == would
                    && size >= last
                    && out.contains(&format!("recovered {would} bytes")) =>
            {
                Ok(format!(
                    "{size} bytes, every block verified, >= last checkpoint {last}: {}",
                    out.trim().replace('\n', " | ")
                ))
            }
            Ok(out) => Err(format!(
                "wrote {size} bytes, said it would recover {would}, last checkpoint {last}: {}",
                out.trim()
            )),
            Err(e) => Err(e),
        },
    ));
    let fk = log.first_kernel();
    checks.push(check(
        "marker pages in the recovered prefix",
        match fk.marker.as_ref() {
            None => Err("the first kernel reported no marker".to_string()),
            Some(report) => rkdump_tests::verify::check_marker_prefix(&vmcore, report)
                .map_err(|e| e.to_string())
                .and_then(|(checked, beyond)| {
                    if checked > 0 {
                        Ok(format!(
                            "{checked} marker pages byte-exact, {beyond} beyond the prefix"
                        ))
                    } else {
                        Err(format!(
                            "no marker page inside the prefix ({beyond} beyond)"
                        ))
                    }
                }),
        },
    ));
}

/// A full serial dump: `rkdumpctl recv` rebuilds the vmcore from COM2, which is then checked as
/// the disk cases check theirs (an ELF vmcore, or a kdump-compressed file with
/// `rkdump.format=kdump`).
pub fn apply_serial(case: &Case, log: &ConsoleLog, dir: &Path, checks: &mut Vec<Check>) {
    let rk = log.rkdump();
    checks.push(check(
        "dump complete on serial",
        match &rk.dump_complete {
            Some((_, args)) if args.contains("target=serial") => Ok(args.clone()),
            other => Err(format!(
                "no `dump complete ... target=serial` line ({other:?})"
            )),
        },
    ));
    let vmcore = dir.join("vmcore");
    let recv = crate::build::rkdumpctl()
        .and_then(|ctl| Ok(ctl.recv(&dir.join("com2.bin"), &vmcore)?.trim().to_string()));
    let ok = recv.is_ok();
    checks.push(check("rkdumpctl recv", recv));
    if !ok {
        return;
    }
    dump_file_checks(case, log, &vmcore, dir, checks);
}

/// The extracted vmcore checked against what the first kernel reported (CPUs, marker pages).
pub(super) fn verify_check(
    log: &ConsoleLog,
    vmcore: &Path,
    dir: &Path,
    expect: rkdump_tests::verify::MarkerExpect,
) -> Check {
    let fk = log.first_kernel();
    let cpus = fk.nproc.map(|n| n as usize);
    let how = match expect {
        rkdump_tests::verify::MarkerExpect::Present => "intact",
        rkdump_tests::verify::MarkerExpect::Absent => "absent",
    };
    check(
        "vmcore verified",
        rkdump_tests::verify::vmcore_expect(vmcore, fk.marker.as_ref(), expect, cpus, dir).map_err(String::from).map(|v| {
            format!(
                "{} CPUs, OSRELEASE {}, {} PT_LOADs, {} marker pages {how}; makedumpfile dmesg ends: {}",
                v.cpus,
                v.osrelease,
                v.loads,
                v.marker_pages,
                v.dmesg_tail.last().map_or("", String::as_str)
            )
        }),
    )
}

/// Firmware-configuration cases: what rkdump did with the blob, visible on the console.
fn blob_checks(case: &Case, log: &ConsoleLog, checks: &mut Vec<Check>) {
    let text: Vec<&str> = log.lines.iter().map(|l| l.text.as_str()).collect();
    let find = |needle: &str| {
        text.iter()
            .find(|t| t.contains(needle))
            .map(|t| t.to_string())
    };
    let all = |a: &str, b: &str| {
        text.iter()
            .find(|t| t.contains(a) && t.contains(b))
            .map(|t| t.to_string())
    };
    checks.push(check(
        "state scrambled before the crash",
        find("E2E: scrambled").ok_or_else(|| "no `E2E: scrambled` line".to_string()),
    ));
    let sbr = all("rkdump: reinit 0000:01:00.0", "sbr");
    let sbr_from = |source: &str| match &sbr {
        Some(l) if l.contains(source) => Ok(l.clone()),
        other => Err(format!(
            "expected an SBR line restoring from the {source}: {other:?}"
        )),
    };
    match (case.loadctl, case.corrupt_blob) {
        (true, false) => {
            checks.push(check(
                "blob handed over",
                find("rkdump: config blob: ").ok_or_else(|| "no `config blob:` line".to_string()),
            ));
            checks.push(check(
                "device reset by SBR, BARs from the blob",
                sbr_from("blob"),
            ));
            checks.push(check(
                "bridge window restored from the blob",
                all("rkdump: reinit 0000:00:01.0 restored from blob", "0x20").ok_or_else(|| {
                    "no `reinit 0000:00:01.0 restored from blob: 0x20:...` line".to_string()
                }),
            ));
        }
        (true, true) => {
            checks.retain(|c| c.name != "no rkdump errors");
            let errors: Vec<String> = log
                .rkdump()
                .errors
                .into_iter()
                .filter(|e| !e.contains("config blob rejected"))
                .collect();
            checks.push(check(
                "corrupt blob rejected, nothing else failed",
                match (
                    find("rkdump: error: config blob rejected"),
                    errors.is_empty(),
                ) {
                    (Some(l), true) => Ok(l),
                    (l, _) => Err(format!("rejection line {l:?}; other errors {errors:?}")),
                },
            ));
            checks.push(check("falls back to the snapshot", sbr_from("snapshot")));
        }
        (false, _)
            if case
                .scramble
                .as_deref()
                .is_some_and(|s| s.ends_with(",zero")) =>
        {
            checks.push(check(
                "no address to restore: assigned from the bridge window",
                all(
                    "rkdump: reinit 0000:01:00.0 BARs assigned from bridge 0000:00:01.0 window",
                    "BAR0=",
                )
                .ok_or_else(|| "no `BARs assigned from bridge` line".to_string()),
            ));
        }
        (false, _) => {
            checks.push(check(
                "no blob: says so",
                find("rkdump: config blob: none")
                    .ok_or_else(|| "no `config blob: none` line".to_string()),
            ));
            checks.push(check("falls back to the snapshot", sbr_from("snapshot")));
        }
    }
}

/// `elfcorehdr=` pointing at something that is not a core header: a typed error line, no dump,
/// and the configured action (power-off: QEMU exits by itself).
pub fn apply_bad_header(log: &ConsoleLog, end: &RunEnd, checks: &mut Vec<Check>) {
    let rk = log.rkdump();
    // The generic checks expect one loader-made elfcorehdr= and a header summary.
    checks.retain(|c| {
        !matches!(
            c.name.as_str(),
            "no rkdump errors" | "cmdline" | "elfcorehdr" | "rkdump reached its end"
        )
    });
    checks.push(check(
        "bad header rejected",
        match rk
            .errors
            .iter()
            .find(|e| e.contains("elfcorehdr at 0x1000 unusable"))
        {
            Some(e) => Ok(e.clone()),
            None => Err(format!(
                "no `elfcorehdr at 0x1000 unusable` error; errors: {:?}",
                rk.errors
            )),
        },
    ));
    checks.push(check(
        "defined end",
        match (end, rk.dump_start.is_some()) {
            (RunEnd::Exited(_), false) => Ok(format!("{end:?}, nothing dumped")),
            (e, started) => Err(format!("end {e:?}, dump started: {started}")),
        },
    ));
}
