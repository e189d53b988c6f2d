//! The e2e case `service`: rkdump operated the way `rkdump.service` does, across four boots of
//! the same three disks (a labelled dump disk, an ext4 disk holding `/var/crash` and the state,
//! a small labelled disk), driven by `/init`'s `e2e.service=1` block (init.sh):
//!
//! 1. `rkdumpctl boot` arms, `status` exits 0 and shows target and blob; sysrq crash; rkdump
//!    dumps to the dump disk and powers off;
//! 2. `rkdumpctl boot` saves the dump into `/crashfs/crash/<UTC>-<release>/` (verified), marks it
//!    saved, re-arms;
//! 3. `rkdumpctl boot` saves nothing new; then `status` exits non-zero naming why after: `kexec -p
//!    -u`, the label zeroed, a target smaller than the estimate, and a PCI function hot-added
//!    by the host over QMP (`blockdev-add` + `device_add` of a virtio-blk disk) after the snapshot; `reload` (what the udev rule runs)
//!    makes it armed again and `status` shows the reload's reason;
//! 4. with `lockdown=integrity`: loading the unsigned image fails and says a signed image is
//!    needed.
//!
//! After boot 2 the host reads the saved vmcore out of the ext4 image (`debugfs`) and checks
//! the first kernel's marker pages in it.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rkdump_tests::console::ConsoleLog;
use rkdump_tests::disk::{self, Fill};
use rkdump_tests::qemu::{Accel, Controller, Machine, Run};
use rkdump_tests::qmp::Qmp;
use rkdump_tests::verify;

use super::checks::Check;
use super::{CaptureKind, Case, Harness};

/// The case name.
pub const NAME: &str = "service";

/// Guest memory and its crash kernel reservation.
const MEMORY: &str = "512M";
const MEMORY_BYTES: u64 = 512 << 20;

fn check(name: &str, result: Result<String, String>) -> Check {
    Check {
        name: name.into(),
        result,
    }
}

/// The `E2E: service <rest>` lines of a boot, in order.
fn service_lines(log: &ConsoleLog) -> Vec<String> {
    log.lines
        .iter()
        .filter_map(|l| {
            l.text
                .split_once("E2E: service ")
                .map(|(_, r)| r.to_string())
        })
        .collect()
}

/// The lines after the `marker` line (exclusive) up to the next `<cmd> rc=` line (inclusive).
fn section<'a>(lines: &'a [String], marker: &str) -> &'a [String] {
    let Some(start) = lines
        .iter()
        .position(|l| l == marker || l.starts_with(marker))
    else {
        return &[];
    };
    let rest = &lines[start + 1..];
    let end = rest
        .iter()
        .position(|l| l.starts_with("status rc="))
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

/// `status rc=<n>` of a section: Ok when it is `want` and a line contains `why`.
fn status_is(lines: &[String], want_ok: bool, why: &str) -> Result<String, String> {
    let rc = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("status rc="))
        .ok_or_else(|| format!("no `status rc=` line in {lines:?}"))?;
    match (rc == "0", want_ok) {
        (true, true) => Ok("status exit 0".into()),
        (false, false) if has(lines, why) => Ok(format!("status exit {rc}, says \"{why}\"")),
        (false, false) => Err(format!("status exit {rc} without \"{why}\": {lines:?}")),
        (true, false) => Err(format!("status exit 0, expected \"{why}\": {lines:?}")),
        (false, true) => Err(format!("status exit {rc}: {lines:?}")),
    }
}

/// Hot-adds a disk (virtio-blk on a null block node) on the empty root port over QMP.
fn qmp_device_add(sock: &Path) -> Result<String, String> {
    let t = Duration::from_secs(10);
    let mut q = Qmp::connect(sock, t).map_err(|e| e.to_string())?;
    q.execute(
        r#"{"execute":"blockdev-add","arguments":{"driver":"null-co","node-name":"hot0","size":67108864}}"#,
        t,
    )
    .map_err(|e| e.to_string())?;
    q.execute(
        r#"{"execute":"device_add","arguments":{"driver":"virtio-blk-pci","drive":"hot0","id":"hot1","bus":"rphp"}}"#,
        t,
    )
    .map_err(|e| e.to_string())
}

struct Images {
    dump: PathBuf,
    crashfs: PathBuf,
    small: PathBuf,
}

fn make_images(dir: &Path) -> Result<Images, String> {
    let ctl = crate::build::rkdumpctl()?;
    let im = Images {
        dump: dir.join("dump.img"),
        crashfs: dir.join("crashfs.img"),
        small: dir.join("small.img"),
    };
    disk::create(&im.dump, MEMORY_BYTES + (64 << 20), Fill::Sparse)?;
    ctl.prepare(&im.dump).map_err(|e| e.to_string())?;
    disk::create(&im.small, 32 << 20, Fill::Sparse)?;
    ctl.prepare(&im.small).map_err(|e| e.to_string())?;
    disk::create(&im.crashfs, 1 << 30, Fill::Sparse)?;
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&im.crashfs)
        .output()
        .map_err(|e| format!("mkfs.ext4: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(im)
}

fn machine(
    h: &Harness,
    dir: &Path,
    bdir: &Path,
    im: &Images,
    lockdown: bool,
) -> Result<Machine, String> {
    let mut case = Case::standard("kf-low", CaptureKind::Rkdump).ok_or("no kf-low case")?;
    case.name = NAME.into();
    case.memory = MEMORY.into();
    case.marker_mib = 16;
    let mut cmdline = case.first_kernel_cmdline()?;
    cmdline.push_str(" e2e.service=1");
    if lockdown {
        cmdline.push_str(" lockdown=integrity");
    }
    Ok(Machine::q35(MEMORY, Accel::Tcg)
        .program(&h.qemu)
        .smp(2)
        .nodefaults()
        .com2_file(&bdir.join("com2.bin"))
        .debug_log(&bdir.join("qemu-debug.log"))
        .kernel(&h.first_kernel, &cmdline)
        .initrd(&dir.join("initramfs.cpio"))
        .root_port("rp1", 1)
        .disk("dump", &im.dump, &Controller::VirtioBlk, Some("rp1"))
        .root_port("rp2", 2)
        .disk("crashfs", &im.crashfs, &Controller::VirtioBlk, Some("rp2"))
        .root_port("rp3", 3)
        .disk("small", &im.small, &Controller::VirtioBlk, Some("rp3"))
        .root_port("rphp", 4)
        .args(Qmp::args(&Qmp::socket_in(bdir))))
}

/// Result of the whole case.
pub struct ServiceResult {
    /// Every check, boot by boot.
    pub checks: Vec<Check>,
}

impl ServiceResult {
    /// All checks passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.result.is_ok())
    }

    /// The report, one line per check.
    pub fn report(&self) -> String {
        let mut s =
            format!("== {NAME} (rkdumpctl boot/status/reload over 4 boots, -m {MEMORY}) ==\n");
        for c in &self.checks {
            match &c.result {
                Ok(n) => s.push_str(&format!("  ok   {:<28} {n}\n", c.name)),
                Err(e) => s.push_str(&format!("  FAIL {:<28} {e}\n", c.name)),
            }
        }
        s
    }
}

/// Runs the four boots and checks them. `Err` only for harness failures.
pub fn run(h: &Harness) -> Result<ServiceResult, String> {
    let dir = h.out_root.join(NAME);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("cleaning {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::copy(&h.initramfs.path, dir.join("initramfs.cpio"))
        .map_err(|e| format!("copying the initramfs: {e}"))?;
    let im = make_images(&dir)?;
    let mut checks = Vec::new();
    let mut marker = None;
    let mut estimate31: Option<u64> = None;
    let verbose = h.verbose;
    let echo = move |t: &str| verbose || t.contains("E2E: ") || t.contains("rkdump: dump");

    for boot in 1..=4u32 {
        let bdir = dir.join(format!("boot{boot}"));
        std::fs::create_dir_all(&bdir).map_err(|e| e.to_string())?;
        let m = machine(h, &dir, &bdir, &im, boot == 4)?;
        let sock = Qmp::socket_in(&bdir);
        let hotplug: Cell<Option<Result<String, String>>> = Cell::new(None);
        let stop = |l: &rkdump_tests::console::Line| -> Option<String> {
            if l.text.contains("E2E: service hotplug-now") {
                hotplug.set(Some(qmp_device_add(&sock)));
            }
            if l.text.contains("Kernel panic") && !l.text.contains("sysrq") {
                return Some(format!("panic: {}", l.text));
            }
            None
        };
        eprintln!("e2e: {NAME} boot {boot}");
        let out = Run::new(&m, &bdir, Duration::from_secs(900))
            .echo(&echo)
            .stop(&stop)
            .start()
            .map_err(|e| e.to_string())?;
        let lines = service_lines(&out.log);
        let name = |what: &str| format!("boot{boot} {what}");
        let ended = if out.timed_out {
            Err("timed out".to_string())
        } else if let Some(s) = &out.stopped {
            Err(s.clone())
        } else {
            Ok(format!("QEMU exited after {:.1} s", out.wall.as_secs_f64()))
        };
        checks.push(check(&name("run ended"), ended));
        let boot_rc = |want: &str| {
            let rc = lines.iter().find_map(|l| l.strip_prefix("boot rc="));
            match rc {
                Some(r) if r == want => Ok(format!("rkdumpctl boot exit {r}")),
                other => Err(format!(
                    "rkdumpctl boot exit {other:?}, expected {want}: {lines:?}"
                )),
            }
        };
        let saved_count = lines
            .iter()
            .find_map(|l| l.strip_prefix("saved count="))
            .unwrap_or("?")
            .to_string();
        match boot {
            1 => {
                marker = out.log.first_kernel().marker;
                estimate31 = lines.iter().find_map(|l| {
                    let j = l.split_once("\"dump_bytes\":")?.1;
                    j.split([',', '}']).next()?.parse::<u64>().ok()
                });
                checks.push(check(&name("boot arms"), boot_rc("0")));
                let st = section(&lines, "saved count=");
                checks.push(check(&name("status armed"), status_is(st, true, "")));
                checks.push(check(
                    &name("status shows target, blob"),
                    if has(st, "label valid") && has(st, "PCI since snapshot:   no change") {
                        Ok("dump disk label valid, blob unchanged".into())
                    } else {
                        Err(format!("{st:?}"))
                    },
                ));
                checks.push(check(
                    &name("rkdump dump complete"),
                    out.find("rkdump: dump complete")
                        .map(|l| l.text.clone())
                        .ok_or_else(|| "no `rkdump: dump complete`".to_string()),
                ));
                checks.push(check(
                    &name("estimate vs dump"),
                    estimate_error(st, &out.log),
                ));
            }
            2 => {
                checks.push(check(&name("boot saves, re-arms"), boot_rc("0")));
                let dirline = lines.iter().find(|l| l.starts_with("saved-dir "));
                checks.push(check(
                    &name("saved into crash dir"),
                    match dirline {
                        Some(d) if saved_count == "1" && d.contains("every byte") => Ok(d.clone()),
                        _ => Err(format!("saved count {saved_count}: {lines:?}")),
                    },
                ));
                checks.push(check(
                    &name("marked saved"),
                    if has(&lines, "boot-out") && has(&lines, "record marked saved") {
                        Ok("record marked saved".into())
                    } else {
                        Err(format!("{lines:?}"))
                    },
                ));
                let st = section(&lines, "saved count=");
                checks.push(check(&name("status armed"), status_is(st, true, "")));
                let saved = extract(&dir, &im, dirline);
                checks.push(check(
                    &name("saved vmcore has marker"),
                    saved.clone().and_then(|(p, d)| match &marker {
                        Some(r) => verify::check_marker_file(&p, r)
                            .map(|s| format!("{} marker pages intact in {d}/vmcore", s.pages))
                            .map_err(|e| e.to_string()),
                        None => Err("boot 1 reported no marker".into()),
                    }),
                ));
                checks.push(check(
                    &name("crash report saved beside the vmcore"),
                    saved
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|(_, d)| saved_report(&dir, &im, d)),
                ));
                checks.push(check(
                    &name("estimate31 vs makedumpfile"),
                    saved.and_then(|(p, _)| estimate31_error(&p, estimate31)),
                ));
                let _ = std::fs::remove_file(dir.join("saved-vmcore"));
            }
            3 => {
                checks.push(check(&name("boot re-arms"), boot_rc("0")));
                checks.push(check(
                    &name("nothing new saved"),
                    if saved_count == "1" && !has(&lines, "saved the") {
                        Ok("still 1 saved dump".into())
                    } else {
                        Err(format!("saved count {saved_count}: {lines:?}"))
                    },
                ));
                for (case, why) in [
                    ("case unloaded", "no crash kernel is loaded"),
                    ("case label-gone", "no valid rkdump label"),
                    ("case too-small", "is too small"),
                    ("case hot-added", "added 0000:04:00.0"),
                ] {
                    checks.push(check(
                        &name(&format!("not armed: {}", &case[5..])),
                        status_is(section(&lines, case), false, why),
                    ));
                }
                checks.push(check(
                    &name("QMP device_add"),
                    hotplug
                        .take()
                        .unwrap_or_else(|| Err("never asked for".into())),
                ));
                let after = section(&lines, "reload rc=");
                let last: Vec<String> = lines
                    .iter()
                    .skip_while(|l| !l.starts_with("reload-out rkdumpctl reload: reload: add:pci"))
                    .cloned()
                    .collect();
                checks.push(check(
                    &name("reload re-arms, status shows"),
                    match status_is(section(&last, "reload rc="), true, "") {
                        Ok(_) if has(&last, "(reload: add:pci:hotplug)") => {
                            Ok("armed again; status shows `reload: add:pci:hotplug`".into())
                        }
                        Ok(_) => Err(format!("reason not shown: {last:?}")),
                        Err(e) => Err(format!("{e} ({after:?})")),
                    },
                ));
            }
            _ => {
                checks.push(check(
                    &name("lockdown on"),
                    if has(&lines, "lockdown none [integrity]") {
                        Ok("integrity".into())
                    } else {
                        Err(format!("{lines:?}"))
                    },
                ));
                checks.push(check(
                    &name("unsigned load explained"),
                    if has(&lines, "load rc=1")
                        && has(&lines, "locked down (integrity)")
                        && has(&lines, "A signed image is needed")
                    {
                        Ok("load refused: signed image needed, sbsign steps printed".into())
                    } else {
                        Err(format!("{lines:?}"))
                    },
                ));
                checks.push(check(
                    &name("boot not armed"),
                    if has(&lines, "boot rc=1") && has(&lines, "not armed") {
                        Ok("rkdumpctl boot exit 1, not armed".into())
                    } else {
                        Err(format!("{lines:?}"))
                    },
                ));
            }
        }
    }
    Ok(ServiceResult { checks })
}

/// `status`'s estimate against the bytes rkdump wrote (`dump complete bytes=`): within 25 %.
fn estimate_error(status: &[String], log: &ConsoleLog) -> Result<String, String> {
    let est_mib: f64 = status
        .iter()
        .find_map(|l| {
            l.split_once("estimate:")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or("no estimate in status")?;
    let bytes: f64 = log
        .lines
        .iter()
        .find_map(|l| {
            let rest = l.text.split_once("rkdump: dump complete bytes=")?.1;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .ok_or("no `dump complete bytes=`")? as f64;
    let est = est_mib * 1048576.0;
    let err = (est - bytes) / bytes * 100.0;
    let note = format!(
        "estimate {est_mib:.1} MiB, dump {:.1} MiB: {err:+.1} %",
        bytes / 1048576.0
    );
    if err.abs() <= 25.0 {
        Ok(note)
    } else {
        Err(note)
    }
}

/// Copies the saved vmcore out of the ext4 image with `debugfs`: (host path, directory).
fn extract(dir: &Path, im: &Images, dirline: Option<&String>) -> Result<(PathBuf, String), String> {
    let d = dirline
        .and_then(|l| l.strip_prefix("saved-dir /crashfs"))
        .and_then(|l| l.split_whitespace().next())
        .ok_or("no saved directory")?;
    let out = dir.join("saved-vmcore");
    let cmd = format!("dump {d}/vmcore {}", out.display());
    let o = Command::new("debugfs")
        .args(["-R", &cmd])
        .arg(&im.crashfs)
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    if !out.is_file() {
        return Err(format!("debugfs: {}", String::from_utf8_lossy(&o.stderr)));
    }
    Ok((out, d.to_string()))
}

/// The crash report `save` wrote beside the saved vmcore (`vmcore.report.txt`, from the record's
/// report area), read out of the ext4 image: it must name the sysrq crash.
fn saved_report(dir: &Path, im: &Images, d: &str) -> Result<String, String> {
    let out = dir.join("saved-report.txt");
    let cmd = format!("dump {d}/vmcore.report.txt {}", out.display());
    let o = Command::new("debugfs")
        .args(["-R", &cmd])
        .arg(&im.crashfs)
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    let text = std::fs::read_to_string(&out).map_err(|e| {
        format!(
            "no {d}/vmcore.report.txt ({e}): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )
    })?;
    let _ = std::fs::remove_file(&out);
    match text.lines().find(|l| l.contains("sysrq triggered crash")) {
        Some(l) => Ok(format!("{d}/vmcore.report.txt: {}", l.trim())),
        None => Err(format!(
            "{d}/vmcore.report.txt lacks the panic reason: {:?}",
            text.lines().take(5).collect::<Vec<_>>()
        )),
    }
}

/// The level-31 estimate taken just before the crash against `makedumpfile -E -d 31` of the
/// saved vmcore (the same crash, filtered by the reference tool): within 25 %.
fn estimate31_error(vmcore: &Path, estimate: Option<u64>) -> Result<String, String> {
    let est = estimate.ok_or("boot 1 printed no level-31 estimate")?;
    let out = vmcore.with_extension("d31");
    let _ = std::fs::remove_file(&out);
    let o = Command::new("makedumpfile")
        .args(["-E", "-d", "31"])
        .arg(vmcore)
        .arg(&out)
        .output()
        .map_err(|e| format!("makedumpfile: {e}"))?;
    let size = std::fs::metadata(&out).map(|m| m.len());
    let _ = std::fs::remove_file(&out);
    let size = size.map_err(|_| {
        let err = String::from_utf8_lossy(&o.stderr);
        format!(
            "makedumpfile wrote nothing: {}",
            err.lines().last().unwrap_or("")
        )
    })?;
    let err = (est as f64 - size as f64) / size as f64 * 100.0;
    let note = format!(
        "estimate {:.1} MiB, makedumpfile -d 31 {:.1} MiB: {err:+.1} %",
        est as f64 / 1048576.0,
        size as f64 / 1048576.0
    );
    if err.abs() <= 25.0 {
        Ok(note)
    } else {
        Err(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sections_and_status_verdicts() {
        let lines = l(&[
            "boot rc=0",
            "case label-gone",
            "status-out   not armed: dump target /dev/vda: no valid rkdump label (bad magic)",
            "status rc=1",
            "status-out rkdump: armed",
            "status rc=0",
        ]);
        let s = section(&lines, "case label-gone");
        assert_eq!(s.len(), 2);
        assert!(status_is(s, false, "no valid rkdump label").is_ok());
        // Negative controls: the wrong reason, or armed when not-armed was expected.
        assert!(status_is(s, false, "is too small").is_err());
        assert!(status_is(s, true, "").is_err());
        assert!(status_is(&lines[4..], false, "x").is_err());
        assert!(section(&lines, "case absent").is_empty());
        assert!(status_is(&[], true, "").is_err());
    }
}
