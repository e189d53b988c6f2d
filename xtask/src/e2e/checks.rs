//! Pure checks of a parsed console log against what the case and the boot contract predict
//! (docs/boot-contract.md: #two-loaders, #placement-in-the-crash-region, #entry-state). Each returns a note on success and a reason
//! on failure; `evaluate` runs the set that fits the case.

use std::fmt::Write as _;

use super::case::{CaptureKind, Case, Loader};
use super::console::{
    ConsoleLog, E820Entry, E820Kind, ElfcorehdrLine, FirstKernel, InitrdLine, Range, Rkdump,
};

const MIB: u64 = 1 << 20;

/// How the QEMU run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// QEMU exited by itself (power-off or reset under `-no-reboot`).
    Exited(Option<i32>),
    /// Killed at the hard timeout (seconds).
    TimedOut(u64),
    /// Killed early, with the reason.
    Stopped(String),
    /// Stopped on purpose once the handoff was complete (`rkdump: dump start`), with the reason.
    Handoff(String),
}

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Short name.
    pub name: String,
    /// `Ok(note)` or `Err(reason)`.
    pub result: Result<String, String>,
}

impl Check {
    fn new(name: &str, result: Result<String, String>) -> Check {
        Check {
            name: name.to_string(),
            result,
        }
    }
}

/// The crash region the loaders put the capture kernel in: KT takes the last (highest) "Crash
/// kernel" range, KF `crashk_res` (the high one when `,low` adds a second range).
pub fn load_region(regions: &[Range]) -> Option<Range> {
    regions.iter().copied().max_by_key(|r| r.start)
}

/// Checks the loader's `elfcorehdr=` edit of `append` and returns (note, elfcorehdr address).
/// KL appends ` elfcorehdr=<KiB>K` (after an optional ` acpi_rsdp=...`); KF prefixes `elfcorehdr=0x<hex> `.
pub fn check_cmdline(loader: Loader, cmdline: &str, append: &str) -> Result<(String, u64), String> {
    let cmdline = cmdline.trim_end();
    let count = cmdline
        .split_whitespace()
        .filter(|w| w.starts_with("elfcorehdr="))
        .count();
    if count != 1 {
        return Err(format!(
            "expected one elfcorehdr= in {cmdline:?}, found {count}"
        ));
    }
    match loader {
        Loader::Kl => {
            let Some(suffix) = cmdline.strip_prefix(append) else {
                return Err(format!(
                    "-c: command line {cmdline:?} does not start with the --append text {append:?}"
                ));
            };
            let last = cmdline.split_whitespace().last().unwrap_or("");
            let kib = last
                .strip_prefix("elfcorehdr=")
                .and_then(|v| v.strip_suffix('K'))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    format!("-c: command line must end with elfcorehdr=<N>K, ends with {last:?}")
                })?;
            Ok((format!("kexec_load appended {suffix:?}"), kib * 1024))
        }
        Loader::Kf => {
            let first = cmdline.split_whitespace().next().unwrap_or("");
            let addr = first
                .strip_prefix("elfcorehdr=0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "-s: command line must start with elfcorehdr=0x<hex>, starts with {first:?}"
                    )
                })?;
            let rest = cmdline[first.len()..].strip_prefix(' ').unwrap_or("");
            if !rest.starts_with(append) {
                return Err(format!(
                    "-s: after the elfcorehdr= prefix expected {append:?}, got {rest:?}"
                ));
            }
            Ok((
                format!("kexec_file_load prefixed {:?}", format!("{first} ")),
                addr,
            ))
        }
    }
}

/// Checks the capture kernel's E820: some RAM inside the crash region(s), and RAM only there or
/// below 1 MiB (old memory must not be handed out as RAM).
pub fn check_e820(e820: &[E820Entry], regions: &[Range]) -> Result<String, String> {
    if e820.is_empty() {
        return Err("no e820 entries reported".into());
    }
    let ram: Vec<&E820Entry> = e820.iter().filter(|e| e.kind == E820Kind::Ram).collect();
    let inside = ram
        .iter()
        .filter(|e| regions.iter().any(|r| r.contains_range(&e.range)))
        .count();
    if inside == 0 {
        let list: Vec<String> = ram.iter().map(|e| e.range.to_string()).collect();
        let crash: Vec<String> = regions.iter().map(Range::to_string).collect();
        return Err(format!(
            "no RAM entry inside the crash region(s) [{}]; RAM: [{}]",
            crash.join(", "),
            list.join(", ")
        ));
    }
    let stray: Vec<String> = ram
        .iter()
        .filter(|e| e.range.end >= MIB && !regions.iter().any(|r| r.contains_range(&e.range)))
        .map(|e| e.range.to_string())
        .collect();
    if !stray.is_empty() {
        return Err(format!(
            "RAM outside the crash region(s) and above 1 MiB: {}",
            stray.join(", ")
        ));
    }
    let ram_bytes: u64 = ram.iter().map(|e| e.range.size()).sum();
    Ok(format!(
        "{} entries, {} RAM ({} KiB), {inside} inside the crash region(s)",
        e820.len(),
        ram.len(),
        ram_bytes / 1024
    ))
}

/// Checks rkdump's initrd line against the case (`expected` = size of the file passed, if any).
pub fn check_initrd(
    expected: Option<u64>,
    got: Option<InitrdLine>,
    region: Option<Range>,
) -> Result<String, String> {
    match (expected, got) {
        (_, None) => Err("no `rkdump: initrd` line".into()),
        (None, Some(InitrdLine::None)) => Ok("none, as passed".into()),
        (None, Some(InitrdLine::At { start, size })) => Err(format!(
            "no --initrd was passed but rkdump reports one at {start:#x} size={size}"
        )),
        (Some(len), Some(InitrdLine::None)) => Err(format!(
            "--initrd of {len} bytes was passed but rkdump reports none"
        )),
        (Some(len), Some(InitrdLine::At { start, size })) => {
            if size != len {
                return Err(format!("initrd size={size}, the file has {len} bytes"));
            }
            if start % 4096 != 0 {
                return Err(format!("initrd at {start:#x} is not page aligned"));
            }
            let r = region.ok_or("no crash region to compare with")?;
            let span = Range {
                start,
                end: start + size.max(1) - 1,
            };
            if !r.contains_range(&span) {
                return Err(format!("initrd {span} is not inside the crash region {r}"));
            }
            Ok(format!("{start:#x} size={size}, inside {r}"))
        }
    }
}

/// Checks rkdump's elfcorehdr line: matches the command line, sits where the loader puts it,
/// has one PT_NOTE per CPU + VMCOREINFO, and at least two PT_LOADs (text + RAM).
pub fn check_elfcorehdr(
    loader: Loader,
    hdr: Option<ElfcorehdrLine>,
    cmdline_addr: Option<u64>,
    region: Option<Range>,
    fk: &FirstKernel,
) -> Result<String, String> {
    let h = hdr.ok_or("no `rkdump: elfcorehdr` line")?;
    let mut problems = Vec::new();
    if let Some(a) = cmdline_addr
        && a != h.addr
    {
        problems.push(format!(
            "addr {:#x} differs from the command line's {a:#x}",
            h.addr
        ));
    }
    let place = match region {
        None => {
            problems.push("no crash region to compare with".into());
            String::new()
        }
        Some(r) if !r.contains(h.addr) => {
            problems.push(format!("addr {:#x} outside the crash region {r}", h.addr));
            String::new()
        }
        Some(r) => {
            let off = h.addr - r.start;
            match loader {
                // KF: bottom-up at crashk_res.start (crash_load_segments).
                Loader::Kf if off >= MIB => problems.push(format!(
                    "-s puts elfcorehdr at the bottom, found {off:#x} above {r}"
                )),
                // KL: top-down (load_crashdump_segments).
                Loader::Kl if off < r.size() / 2 => problems.push(format!(
                    "-c puts elfcorehdr near the top, found it {off:#x} into {r}"
                )),
                _ => {}
            }
            format!("region+{off:#x}")
        }
    };
    // KF: one PT_NOTE per possible CPU; KL: per configured CPU with sysfs crash_notes (= present).
    let (cpus, which) = match loader {
        Loader::Kf => (fk.possible_cpus, "possible"),
        Loader::Kl => (fk.present_cpus, "present"),
    };
    match cpus.or(fk.nproc) {
        Some(n) if h.notes != u64::from(n) + 1 => problems.push(format!(
            "notes={} but the first kernel has {n} {which} CPUs (+1 VMCOREINFO)",
            h.notes
        )),
        None => problems.push("first kernel CPU count unknown".into()),
        _ => {}
    }
    if h.loads < 2 {
        problems.push(format!(
            "loads={} (< 2: text + at least one RAM range)",
            h.loads
        ));
    }
    if h.phnum != h.notes + h.loads {
        problems.push(format!(
            "phnum={} != notes+loads={}",
            h.phnum,
            h.notes + h.loads
        ));
    }
    if problems.is_empty() {
        Ok(format!(
            "addr={:#x} ({place}) phnum={} notes={} loads={}",
            h.addr, h.phnum, h.notes, h.loads
        ))
    } else {
        Err(problems.join("; "))
    }
}

/// kexec's message: its last lines (errors come last, after any `-d` chatter).
fn kexec_message(output: &[String], max: usize) -> String {
    let skip = output.len().saturating_sub(max);
    let mut s = output[skip..].join(" | ");
    if skip > 0 {
        s = format!("[{skip} earlier lines in console.log] {s}");
    }
    s
}

fn kexec_summary(fk: &FirstKernel) -> String {
    let mut s = String::new();
    for k in &fk.kexec {
        let _ = write!(
            s,
            "[-{} rc={:?} loaded={:?}: {}] ",
            k.mode,
            k.rc,
            k.loaded,
            kexec_message(&k.output, 12)
        );
    }
    s
}

/// When QEMU exited by itself: rkdump must have got to `dump complete` (full run) or at least
/// `dump start` (handoff run, which normally stops there); anything else is a silent reset.
pub fn check_rkdump_end(rk: &Rkdump, full_run: bool) -> Result<String, String> {
    let last = rk.last_line.as_deref().unwrap_or("(none)");
    match (&rk.dump_start, &rk.dump_complete) {
        (_, Some((_, a))) => Ok(format!("dump complete {a}")),
        (Some(_), None) if !full_run => Ok("dump started".into()),
        (Some(_), None) => Err(format!(
            "QEMU exited after `dump start` without `dump complete`; last rkdump line: {last:?}"
        )),
        (None, _) => Err(format!(
            "QEMU exited before `rkdump: dump start` without an `rkdump: error:` line: a silent reset \
             (triple fault?); last rkdump line: {last:?}"
        )),
    }
}

/// Scans QEMU's `-d cpu_reset,guest_errors` log for a triple fault.
pub fn check_qemu_debug(text: &str) -> Check {
    let result = if text.contains("Triple fault") {
        Err("QEMU logged a triple fault (qemu-debug.log)".to_string())
    } else {
        Ok("no triple fault".to_string())
    };
    Check::new("qemu debug log", result)
}

/// Checks the first kernel's part: booted, crash region reserved, marker ready, loader outcome.
pub fn check_first_kernel(case: &Case, fk: &FirstKernel) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(Check::new(
        "first kernel up",
        match (&fk.release, fk.nproc) {
            (Some(r), Some(n)) => Ok(format!(
                "{r}, nproc={n} possible={} present={}",
                fk.possible_cpus.map_or("?".into(), |c| c.to_string()),
                fk.present_cpus.map_or("?".into(), |c| c.to_string())
            )),
            _ => {
                Err("the first kernel's /init never reported (no `E2E: first-kernel` line)".into())
            }
        },
    ));
    out.push(Check::new(
        "crash region",
        if fk.crash_regions.is_empty() {
            Err(format!(
                "no \"Crash kernel\" in /proc/iomem for `{}`; kernel said: {}",
                case.crashkernel,
                fk.crashkernel_msgs.join(" | ")
            ))
        } else {
            let list: Vec<String> = fk
                .crash_regions
                .iter()
                .map(|r| format!("{r} ({} MiB)", r.size() / MIB))
                .collect();
            Ok(list.join(", "))
        },
    ));
    if case.marker_mib > 0 {
        out.push(Check::new(
            "marker",
            match &fk.marker {
                None => Err("no marker report".into()),
                Some(m) => m.validate().and_then(|()| {
                    if m.tag != case.tag {
                        Err(format!(
                            "marker tag {:#x} != case tag {:#x}",
                            m.tag, case.tag
                        ))
                    } else if m.pages != u64::from(case.marker_mib) * 256 {
                        Err(format!(
                            "marker has {} pages, asked for {} MiB",
                            m.pages, case.marker_mib
                        ))
                    } else if m.moved > 0 {
                        Err(format!("{} marker pages moved after the report", m.moved))
                    } else {
                        Ok(format!(
                            "{} pages in {} pfn runs, tag {:#x}",
                            m.pages,
                            m.runs.len(),
                            m.tag
                        ))
                    }
                }),
            },
        ));
    }
    if !fk.errors.is_empty() {
        out.push(Check::new("first kernel /init", Err(fk.errors.join("; "))));
    }
    if case.broken_image {
        for loader in &case.loaders {
            let name = format!("kexec -{} refuses broken image", loader.flag());
            let r = match fk.kexec.iter().find(|k| k.mode == loader.flag()) {
                None => Err("not attempted".to_string()),
                Some(k) if k.rc == Some(0) || k.loaded == Some(true) => Err(format!(
                    "kexec ACCEPTED the corrupted image (rc={:?} loaded={:?})",
                    k.rc, k.loaded
                )),
                Some(k) if k.rc.is_none() => Err("no exit status reported".to_string()),
                Some(k) if k.output.is_empty() => {
                    Err(format!("rc={:?} but kexec printed no message", k.rc))
                }
                Some(k) => Ok(format!(
                    "rc={}: {}",
                    k.rc.unwrap_or(-1),
                    kexec_message(&k.output, 6)
                )),
            };
            out.push(Check::new(&name, r));
        }
        out.push(Check::new(
            "no crash",
            if fk.sysrq_at.is_some() {
                Err("the guest crashed although kexec refused".into())
            } else {
                Ok("none".into())
            },
        ));
        return out;
    }
    let loader = case.loader();
    out.push(Check::new(
        &format!("kexec -p -{} loads", loader.flag()),
        match fk.kexec.iter().find(|k| k.mode == loader.flag()) {
            None => Err("kexec was never run (see console)".into()),
            Some(k) if k.rc == Some(0) && k.loaded == Some(true) => Ok(match k.output.len() {
                0 => "rc=0, crash kernel loaded".into(),
                1..=3 => format!("rc=0, loaded; kexec said: {}", k.output.join(" | ")),
                n => format!("rc=0, loaded; kexec printed {n} lines (console.log)"),
            }),
            Some(_) => Err(format!("KEXEC REFUSED: {}", kexec_summary(fk))),
        },
    ));
    out.push(Check::new(
        "crash triggered",
        if fk.sysrq_at.is_some() {
            Ok("sysrq: Trigger a crash".into())
        } else {
            Err("no `sysrq: Trigger a crash` line".into())
        },
    ));
    out
}

/// Checks everything the case predicts; `initrd_len` is the size of the file /init passes as `--initrd`.
pub fn evaluate(
    case: &Case,
    log: &ConsoleLog,
    end: &RunEnd,
    initrd_len: Option<u64>,
) -> Vec<Check> {
    let fk = log.first_kernel();
    let mut out = check_first_kernel(case, &fk);
    let crashed = fk.sysrq_at.is_some();
    let region = load_region(&fk.crash_regions);
    let append = case.capture_cmdline();
    if !case.broken_image && crashed {
        match case.capture {
            CaptureKind::Rkdump => {
                let rk = log.rkdump();
                out.push(Check::new(
                    "rkdump entered",
                    match rk.entered_at {
                        Some(t) => Ok(format!(
                            "{:.3} s after the crash",
                            (t - fk.sysrq_at.unwrap_or_default()).as_secs_f64()
                        )),
                        None => Err(format!(
                            "rkdump never printed `rkdump: entered`; last console lines:\n{}",
                            log.tail(25)
                        )),
                    },
                ));
                // The `*-initrd` cases hand over a file that is not a config blob: rkdump must
                // reject it (and only it) with an error line; that is checked separately.
                let foreign_initrd = case.initrd && !case.loadctl;
                let rejected =
                    |e: &String| e.contains("config blob rejected: not an rkdump config blob");
                let mut bad: Vec<String> = rk
                    .errors
                    .iter()
                    .filter(|e| !(foreign_initrd && rejected(e)))
                    .cloned()
                    .collect();
                bad.extend(rk.malformed.iter().map(|m| format!("malformed: {m}")));
                if foreign_initrd {
                    out.push(Check::new(
                        "non-blob initrd rejected",
                        rk.errors
                            .iter()
                            .find(|e| rejected(e))
                            .cloned()
                            .ok_or_else(|| {
                                "no `config blob rejected: not an rkdump config blob` error"
                                    .to_string()
                            }),
                    ));
                }
                out.push(Check::new(
                    "no rkdump errors",
                    if bad.is_empty() {
                        Ok(format!("{} rkdump lines", rk.lines))
                    } else {
                        Err(format!(
                            "{}\nlast console lines:\n{}",
                            bad.join("\n"),
                            log.tail(25)
                        ))
                    },
                ));
                let cmd = match &rk.cmdline {
                    None => Err("no `rkdump: cmdline` line".to_string()),
                    Some(c) => check_cmdline(case.loader(), c, &append),
                };
                let cmd_addr = cmd.as_ref().ok().map(|(_, a)| *a);
                out.push(Check::new(
                    "cmdline",
                    cmd.map(|(n, a)| format!("{n} (elfcorehdr {a:#x})")),
                ));
                out.push(Check::new("e820", check_e820(&rk.e820, &fk.crash_regions)));
                let expected = if case.initrd || case.loadctl {
                    initrd_len
                } else {
                    None
                };
                out.push(Check::new(
                    "initrd",
                    check_initrd(expected, rk.initrd, region),
                ));
                out.push(Check::new(
                    "elfcorehdr",
                    check_elfcorehdr(case.loader(), rk.elfcorehdr, cmd_addr, region, &fk),
                ));
                if let RunEnd::Exited(_) = end {
                    out.push(Check::new(
                        "rkdump reached its end",
                        check_rkdump_end(&rk, case.full_run),
                    ));
                }
            }
            CaptureKind::Linux => {
                let lc = log.linux_capture();
                out.push(Check::new(
                    "Linux capture kernel booted",
                    match (lc.version_at, lc.panics.is_empty()) {
                        (Some(t), true) => Ok(format!(
                            "Linux {} {:.3} s after the crash",
                            lc.version.as_deref().unwrap_or("?"),
                            (t - fk.sysrq_at.unwrap_or_default()).as_secs_f64()
                        )),
                        (_, false) => Err(format!(
                            "capture kernel panicked: {}\n{}",
                            lc.panics.join(" | "),
                            log.tail(25)
                        )),
                        (None, true) => Err(format!(
                            "no capture `Linux version` line; last console lines:\n{}",
                            log.tail(25)
                        )),
                    },
                ));
                out.push(Check::new(
                    "cmdline",
                    match &lc.cmdline {
                        None => Err("the capture /init never reported /proc/cmdline".into()),
                        Some(c) => check_cmdline(case.loader(), c, &append)
                            .map(|(n, a)| format!("{n} (elfcorehdr {a:#x})")),
                    },
                ));
                out.push(Check::new("e820", check_e820(&lc.e820, &fk.crash_regions)));
                out.push(Check::new(
                    "initrd",
                    match (lc.ramdisk, initrd_len, region) {
                        (Some(rd), Some(len), Some(r))
                            if rd.size() == len.next_multiple_of(4096) && r.contains_range(&rd) =>
                        {
                            Ok(format!("RAMDISK {rd} inside {r}"))
                        }
                        (rd, len, r) => Err(format!(
                            "RAMDISK {rd:?}, expected {len:?} bytes inside {r:?}"
                        )),
                    },
                ));
                out.push(Check::new(
                    "/proc/vmcore",
                    match (lc.vmcore_size, lc.vmcore_phnum, lc.vmcore_missing) {
                        (_, _, true) => Err("/proc/vmcore missing in the capture kernel".into()),
                        (Some(s), Some(p), false) if s > 0 && p >= 3 => Ok(format!(
                            "{s} bytes, phnum={p} (1 merged PT_NOTE + {} PT_LOAD)",
                            p - 1
                        )),
                        (s, p, _) => Err(format!("vmcore size={s:?} phnum={p:?}")),
                    },
                ));
            }
        }
    }
    out.push(Check::new(
        "run ended",
        match end {
            RunEnd::Exited(code) => Ok(format!("QEMU exited by itself (status {code:?})")),
            RunEnd::TimedOut(s) => Err(format!(
                "QEMU still running after {s} s: killed; last console lines:\n{}",
                log.tail(25)
            )),
            RunEnd::Stopped(why) => Err(format!(
                "stopped early: {why}; last console lines:\n{}",
                log.tail(25)
            )),
            RunEnd::Handoff(why) => Ok(why.clone()),
        },
    ));
    out
}

/// QEMU's `virtio_error` texts (`hw/virtio/virtio.c`) for a device that walks a split ring the
/// dead kernel's driver left behind, each the start of the message after QEMU's program-name
/// prefix. Which one QEMU hits depends on what the old ring holds at the crash; two runs of
/// `noreset-virtio` recorded the first two:
/// - `virtqueue_split_pop`: the requests the old driver left in flight still count as in use,
///   and the new ones push the count to the ring size;
/// - `virtqueue_map_desc`: an available entry names a descriptor of length 0;
/// - `virtqueue_num_heads`: the available index jumped by more than the ring size;
/// - `virtqueue_get_head`: an available entry names a descriptor beyond the ring;
/// - `virtqueue_split_read_next_desc`: a chain's next field points beyond the ring.
pub const QEMU_STALE_RING_ERRORS: [&str; 5] = [
    "Virtqueue size exceeded",
    "virtio: zero sized buffers are not allowed",
    "Guest moved used index from ",
    "Guest says index ",
    "Desc next is ",
];

/// The QEMU stderr line that reports a stale virtio ring: `qemu-system-<arch>: ` followed by
/// one of [`QEMU_STALE_RING_ERRORS`]. Any other line, virtio or not, does not count.
pub fn qemu_stale_ring_error(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| {
        l.split_once(": ").is_some_and(|(prog, msg)| {
            prog.starts_with("qemu-system-")
                && QEMU_STALE_RING_ERRORS.iter().any(|e| msg.starts_with(e))
        })
    })
}

/// The hex number after `key` in `line`.
fn hex_after(line: &str, key: &str) -> Option<u32> {
    let rest = line.split(key).nth(1)?;
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u32::from_str_radix(&hex, 16).ok()
}

/// rkdump's error for a virtio-blk disk QEMU has flagged broken: `virtio-blk <bdf>: device
/// status 0x4f (...)` at probe, or `device error status 0x14f (the device set NEEDS_RESET)`
/// when the flag comes with the first request (both seen by `noreset-virtio`), with
/// DEVICE_NEEDS_RESET (0x40, virtio 1.2 §2.1) set in the status.
pub fn virtio_needs_reset_error(errors: &[String]) -> Option<&String> {
    errors.iter().find(|e| {
        let status =
            hex_after(e, "device status 0x").or_else(|| hex_after(e, "device error status 0x"));
        e.contains("virtio-blk") && status.is_some_and(|s| s & 0x40 != 0)
    })
}

/// rkdump's error for an NVMe controller left enabled: its admin command is never completed
/// (`nvme: timeout after N ms waiting for admin completion (CSTS 0x1)`), with CSTS.RDY
/// already 1, the false ready of a controller nobody disabled (NVM Express 1.4 §3.1.6).
pub fn nvme_admin_timeout_error(errors: &[String]) -> Option<&String> {
    errors.iter().find(|e| {
        e.contains("nvme: timeout after ")
            && e.contains(" waiting for admin completion ")
            && hex_after(e, "(CSTS 0x").is_some_and(|s| s & 1 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::console::Line;
    use std::time::Duration;

    fn log(lines: &[(f64, &str)]) -> ConsoleLog {
        ConsoleLog {
            lines: lines
                .iter()
                .map(|(t, s)| Line {
                    t: Duration::from_secs_f64(*t),
                    text: s.to_string(),
                })
                .collect(),
        }
    }

    fn case(name: &str, kind: CaptureKind) -> Case {
        let mut c = Case::standard(name, kind).unwrap();
        c.tag = 0xabc;
        c
    }

    /// A first kernel that reserved 0x2e000000-0x31ffffff (64M) and loaded with `mode`.
    fn first(mode: &str) -> Vec<(f64, String)> {
        vec![
            (0.5, "[    0.000000] Linux version 6.1.0-56-cloud-amd64".into()),
            (0.6, "[    0.010000] Reserving 64MB of memory at 736MB for crashkernel (System RAM: 1023MB)".into()),
            (5.0, "E2E: first-kernel release=6.1.0-56-cloud-amd64 nproc=2 possible=0-1 present=0-1".into()),
            (5.0, "E2E: crash-region 2e000000-31ffffff".into()),
            (5.5, "marker tag=0x0000000000000abc pages=16384 runs=2".into()),
            (5.5, "marker run 0 0x1000 16000".into()),
            (5.5, "marker run 16000 0x9000 384".into()),
            (5.5, "marker done".into()),
            (6.0, format!("E2E: kexec-cmd mode={mode} kexec -p /e2e/capture.bzImage -{mode}")),
            (6.5, format!("E2E: kexec mode={mode} rc=0 loaded=1")),
            (6.6, "E2E: crash now".into()),
            (6.7, "[    6.100000] sysrq: Trigger a crash".into()),
            (6.7, "[    6.100000] Kernel panic - not syncing: sysrq triggered crash".into()),
        ]
    }

    fn rkdump_good_kf() -> Vec<(f64, String)> {
        let mut v = first("s");
        v.extend([
            (6.75, "rkdump: entered".to_string()),
            (
                6.76,
                format!(
                    "rkdump: cmdline \"elfcorehdr=0x2e000000 {} {}\"",
                    crate::e2e::case::RKDUMP_APPEND,
                    crate::e2e::case::ELF_LEVEL0
                ),
            ),
            (6.77, "rkdump: e820 0x0-0x9fbff ram".into()),
            (6.77, "rkdump: e820 0x9fc00-0x9ffff reserved".into()),
            (6.77, "rkdump: e820 0x2e001000-0x31ffffff ram".into()),
            (6.77, "rkdump: e820 0xfeffc000-0xfeffffff reserved".into()),
            (6.78, "rkdump: initrd none".into()),
            (
                6.79,
                "rkdump: elfcorehdr addr=0x2e000000 phnum=7 notes=3 loads=4".into(),
            ),
            (
                6.8,
                "rkdump: dump start bytes=1047601152 target=serial:ttyS1".into(),
            ),
        ]);
        v
    }

    fn to_log(v: &[(f64, String)]) -> ConsoleLog {
        let refs: Vec<(f64, &str)> = v.iter().map(|(t, s)| (*t, s.as_str())).collect();
        log(&refs)
    }

    fn failures(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter_map(|c| c.result.as_ref().err().map(|e| format!("{}: {e}", c.name)))
            .collect()
    }

    #[test]
    fn good_kf_rkdump_passes() {
        let c = case("kf-low", CaptureKind::Rkdump);
        let checks = evaluate(
            &c,
            &to_log(&rkdump_good_kf()),
            &RunEnd::Exited(Some(0)),
            None,
        );
        assert_eq!(failures(&checks), Vec::<String>::new());
        let fk = to_log(&rkdump_good_kf()).first_kernel();
        assert_eq!(
            fk.crash_regions,
            vec![Range {
                start: 0x2e00_0000,
                end: 0x31ff_ffff
            }]
        );
        assert_eq!(fk.crashkernel_msgs.len(), 1);
    }

    #[test]
    fn missing_entered_and_exception_fail() {
        let c = case("kf-low", CaptureKind::Rkdump);
        let mut v = rkdump_good_kf();
        v.retain(|(_, s)| s != "rkdump: entered");
        v.push((7.0, "rkdump: exception #GP at 0x1234".into()));
        let f = failures(&evaluate(&c, &to_log(&v), &RunEnd::Exited(Some(0)), None));
        assert!(f.iter().any(|s| s.starts_with("rkdump entered")), "{f:?}");
        assert!(
            f.iter()
                .any(|s| s.starts_with("no rkdump errors") && s.contains("#GP")),
            "{f:?}"
        );
    }

    #[test]
    fn init_lines_overtaken_by_the_panic_still_count() {
        // Seen for real: tty-queued /init lines came out after the synchronous sysrq printk.
        let c = case("kf-low", CaptureKind::Rkdump);
        let mut v = rkdump_good_kf();
        let i = v
            .iter()
            .position(|(_, s)| s.contains("E2E: kexec mode=s"))
            .unwrap();
        let line = v.remove(i);
        let j = v.iter().position(|(_, s)| s.contains("sysrq")).unwrap();
        v.insert(j + 1, line);
        let f = failures(&evaluate(&c, &to_log(&v), &RunEnd::Exited(Some(0)), None));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn silent_reset_fails() {
        // Seen for real: rkdump stopped after `initrd none` and QEMU exited (triple fault).
        let c = case("kf-high", CaptureKind::Rkdump);
        let mut v = rkdump_good_kf();
        let start = v.pop().unwrap();
        let f = failures(&evaluate(&c, &to_log(&v), &RunEnd::Exited(Some(0)), None));
        assert!(
            f.iter()
                .any(|s| s.starts_with("rkdump reached its end") && s.contains("elfcorehdr addr")),
            "{f:?}"
        );
        v.push(start);
        assert!(failures(&evaluate(&c, &to_log(&v), &RunEnd::Exited(Some(0)), None)).is_empty());
        let mut full = c.clone();
        full.full_run = true;
        assert_eq!(
            failures(&evaluate(
                &full,
                &to_log(&v),
                &RunEnd::Exited(Some(0)),
                None
            ))
            .len(),
            1
        );
        v.push((
            60.0,
            "rkdump: dump complete bytes=1047601152 ms=50000 target=serial:ttyS1".into(),
        ));
        assert!(
            failures(&evaluate(
                &full,
                &to_log(&v),
                &RunEnd::Exited(Some(0)),
                None
            ))
            .is_empty()
        );
        assert!(
            check_qemu_debug("CPU Reset (CPU 0)\nTriple fault\n")
                .result
                .is_err()
        );
        assert!(check_qemu_debug("CPU Reset (CPU 0)\n").result.is_ok());
    }

    #[test]
    fn timeout_fails() {
        let c = case("kf-low", CaptureKind::Rkdump);
        let f = failures(&evaluate(
            &c,
            &to_log(&rkdump_good_kf()),
            &RunEnd::TimedOut(120),
            None,
        ));
        assert_eq!(f.len(), 1);
        assert!(f[0].starts_with("run ended"));
        let stopped = RunEnd::Stopped("no capture kernel output".into());
        assert_eq!(
            failures(&evaluate(&c, &to_log(&rkdump_good_kf()), &stopped, None)).len(),
            1
        );
        let handoff = RunEnd::Handoff("stopped at `rkdump: dump start`".into());
        assert!(failures(&evaluate(&c, &to_log(&rkdump_good_kf()), &handoff, None)).is_empty());
    }

    #[test]
    fn kexec_refusal_in_normal_case_fails_loudly() {
        let c = case("kl-low", CaptureKind::Rkdump);
        let mut v = first("c");
        v.retain(|(_, s)| {
            !s.contains("kexec mode=c rc=0") && !s.contains("sysrq") && !s.contains("Kernel panic")
        });
        v.push((
            6.4,
            "E2E: kexec-out mode=c Cannot determine the file type of /e2e/capture.bzImage".into(),
        ));
        v.push((6.5, "E2E: kexec mode=c rc=255 loaded=0".into()));
        let f = failures(&evaluate(&c, &to_log(&v), &RunEnd::Exited(Some(0)), None));
        assert!(
            f.iter()
                .any(|s| s.contains("KEXEC REFUSED") && s.contains("Cannot determine")),
            "{f:?}"
        );
        assert!(f.iter().any(|s| s.starts_with("crash triggered")), "{f:?}");
    }

    #[test]
    fn broken_image_needs_refusal_with_message() {
        let c = case("broken-image", CaptureKind::Rkdump);
        let mut v: Vec<(f64, String)> = first("c").into_iter().take(4).collect();
        v.push((
            6.0,
            "E2E: kexec-cmd mode=c kexec -p /tmp/broken.bzImage -c".into(),
        ));
        v.push((
            6.1,
            "E2E: kexec-out mode=c Cannot determine the file type of /tmp/broken.bzImage".into(),
        ));
        v.push((6.2, "E2E: kexec mode=c rc=255 loaded=0".into()));
        v.push((
            6.3,
            "E2E: kexec-cmd mode=s kexec -p /tmp/broken.bzImage -s".into(),
        ));
        v.push((6.4, "E2E: kexec mode=s rc=0 loaded=1".into()));
        let f = failures(&evaluate(&c, &to_log(&v), &RunEnd::Exited(Some(0)), None));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("ACCEPTED"), "{f:?}");
        // Both refuse with a message: pass.
        v.truncate(v.len() - 1);
        v.push((
            6.35,
            "E2E: kexec-out mode=s Cannot determine the file type of /tmp/broken.bzImage".into(),
        ));
        v.push((6.4, "E2E: kexec mode=s rc=255 loaded=0".into()));
        let f = failures(&evaluate(&c, &to_log(&v), &RunEnd::Exited(Some(0)), None));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn cmdline_forms() {
        let a = "console=ttyS0 reset_devices";
        let (note, addr) = check_cmdline(
            Loader::Kl,
            &format!("{a} acpi_rsdp=0xf59e0 elfcorehdr=720308K"),
            a,
        )
        .unwrap();
        assert_eq!(addr, 720_308 * 1024);
        assert!(note.contains("acpi_rsdp"));
        assert_eq!(
            check_cmdline(Loader::Kf, &format!("elfcorehdr=0x2f000000 {a}"), a)
                .unwrap()
                .1,
            0x2f00_0000
        );
        // Wrong forms for the loader.
        assert!(check_cmdline(Loader::Kl, &format!("elfcorehdr=0x2f000000 {a}"), a).is_err());
        assert!(check_cmdline(Loader::Kf, &format!("{a} elfcorehdr=720308K"), a).is_err());
        assert!(check_cmdline(Loader::Kf, a, a).is_err());
        assert!(check_cmdline(Loader::Kl, &format!("{a} elfcorehdr=1K elfcorehdr=2K"), a).is_err());
        // Mangled user text.
        assert!(check_cmdline(Loader::Kf, "elfcorehdr=0x1000 console=ttyS1", a).is_err());
    }

    #[test]
    fn e820_rules() {
        let crash = [Range {
            start: 0x2e00_0000,
            end: 0x31ff_ffff,
        }];
        let e = |s, e, k| E820Entry {
            range: Range { start: s, end: e },
            kind: k,
        };
        let good = [
            e(0, 0x9_fbff, E820Kind::Ram),
            e(0x2e00_1000, 0x31ff_ffff, E820Kind::Ram),
        ];
        assert!(check_e820(&good, &crash).is_ok());
        assert!(check_e820(&good[..1], &crash).is_err());
        let stray = [good[0], good[1], e(0x10_0000, 0x2dff_ffff, E820Kind::Ram)];
        assert!(check_e820(&stray, &crash).unwrap_err().contains("outside"));
        assert!(check_e820(&[], &crash).is_err());
    }

    #[test]
    fn initrd_rules() {
        let r = Some(Range {
            start: 0x2e00_0000,
            end: 0x31ff_ffff,
        });
        assert!(check_initrd(None, Some(InitrdLine::None), r).is_ok());
        assert!(
            check_initrd(
                Some(12_345),
                Some(InitrdLine::At {
                    start: 0x31f0_0000,
                    size: 12_345
                }),
                r
            )
            .is_ok()
        );
        assert!(
            check_initrd(
                Some(12_345),
                Some(InitrdLine::At {
                    start: 0x31f0_0000,
                    size: 12_288
                }),
                r
            )
            .is_err()
        );
        assert!(
            check_initrd(
                Some(12_345),
                Some(InitrdLine::At {
                    start: 0x1000,
                    size: 12_345
                }),
                r
            )
            .is_err()
        );
        assert!(check_initrd(Some(12_345), Some(InitrdLine::None), r).is_err());
        assert!(
            check_initrd(
                None,
                Some(InitrdLine::At {
                    start: 0x31f0_0000,
                    size: 1
                }),
                r
            )
            .is_err()
        );
        assert!(check_initrd(None, None, r).is_err());
    }

    #[test]
    fn elfcorehdr_rules() {
        let fk = to_log(&first("c")).first_kernel();
        let r = load_region(&fk.crash_regions);
        let h = |addr, phnum, notes, loads| {
            Some(ElfcorehdrLine {
                addr,
                phnum,
                notes,
                loads,
            })
        };
        // KL: top of the region, 2 CPUs + VMCOREINFO.
        assert!(
            check_elfcorehdr(
                Loader::Kl,
                h(0x31ff_c000, 7, 3, 4),
                Some(0x31ff_c000),
                r,
                &fk
            )
            .is_ok()
        );
        assert!(
            check_elfcorehdr(
                Loader::Kl,
                h(0x2e00_0000, 7, 3, 4),
                Some(0x2e00_0000),
                r,
                &fk
            )
            .is_err()
        );
        assert!(
            check_elfcorehdr(
                Loader::Kl,
                h(0x31ff_c000, 7, 3, 4),
                Some(0x31ff_8000),
                r,
                &fk
            )
            .is_err()
        );
        assert!(
            check_elfcorehdr(
                Loader::Kl,
                h(0x31ff_c000, 6, 2, 4),
                Some(0x31ff_c000),
                r,
                &fk
            )
            .is_err()
        );
        assert!(
            check_elfcorehdr(
                Loader::Kl,
                h(0x31ff_c000, 4, 3, 1),
                Some(0x31ff_c000),
                r,
                &fk
            )
            .is_err()
        );
        assert!(check_elfcorehdr(Loader::Kl, h(0x1000, 7, 3, 4), None, r, &fk).is_err());
        // KF: bottom.
        assert!(
            check_elfcorehdr(
                Loader::Kf,
                h(0x2e00_0000, 7, 3, 4),
                Some(0x2e00_0000),
                r,
                &fk
            )
            .is_ok()
        );
        assert!(
            check_elfcorehdr(
                Loader::Kf,
                h(0x31ff_c000, 7, 3, 4),
                Some(0x31ff_c000),
                r,
                &fk
            )
            .is_err()
        );
        assert!(check_elfcorehdr(Loader::Kf, None, None, r, &fk).is_err());
    }

    #[test]
    fn high_region_is_the_load_region() {
        let low = Range {
            start: 0x3e00_0000,
            end: 0x3eff_ffff,
        };
        let high = Range {
            start: 0x1_bc00_0000,
            end: 0x1_bfff_ffff,
        };
        assert_eq!(load_region(&[low, high]), Some(high));
    }

    #[test]
    fn linux_capture_checks() {
        let c = case("kl-low", CaptureKind::Linux);
        let append = c.capture_cmdline();
        let mut v = first("c");
        v[3].1 = "E2E: crash-region 2e000000-3dffffff".into();
        v.extend([
            (8.9, "[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)".to_string()),
            (8.9, "[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable".into()),
            (8.9, "[    0.000000] BIOS-e820: [mem 0x000000002e000000-0x000000003dff6fff] usable".into()),
            (8.9, "[    0.000000] BIOS-e820: [mem 0x00000000b0000000-0x00000000bfffffff] reserved".into()),
            (8.9, "[    0.000000] RAMDISK: [mem 0x3dd00000-0x3dffffff]".into()),
            (11.0, "E2E: capture-init release=6.1.0-56-cloud-amd64 nproc=1 uptime=1.20".into()),
            (11.0, format!("E2E: capture-cmdline {append} acpi_rsdp=0xf59e0 elfcorehdr=1015768K")),
            (11.1, "E2E: vmcore size=846913536 phnum=6".into()),
            (11.1, "E2E: capture-done".into()),
        ]);
        let l = to_log(&v);
        let lc = l.linux_capture();
        assert_eq!(lc.e820.len(), 3);
        let f = failures(&evaluate(
            &c,
            &l,
            &RunEnd::Exited(Some(0)),
            Some(3 * 1024 * 1024),
        ));
        assert!(f.is_empty(), "{f:?}");
        // Wrong initrd size, and a capture panic.
        let f = failures(&evaluate(&c, &l, &RunEnd::Exited(Some(0)), Some(1000)));
        assert_eq!(f.len(), 1, "{f:?}");
        v.push((
            12.0,
            "[    1.5] Kernel panic - not syncing: Out of memory".into(),
        ));
        let f = failures(&evaluate(
            &c,
            &to_log(&v),
            &RunEnd::Exited(Some(0)),
            Some(3 * 1024 * 1024),
        ));
        assert!(
            f.iter()
                .any(|s| s.starts_with("Linux capture kernel booted")),
            "{f:?}"
        );
    }

    #[test]
    fn stale_ring_matcher_names_qemus_error() {
        let seen = "qemu-system-x86_64: virtio: zero sized buffers are not allowed\n";
        assert_eq!(
            qemu_stale_ring_error(seen),
            Some("qemu-system-x86_64: virtio: zero sized buffers are not allowed")
        );
        let full = "qemu-system-x86_64: Virtqueue size exceeded\n";
        assert_eq!(
            qemu_stale_ring_error(full),
            Some("qemu-system-x86_64: Virtqueue size exceeded")
        );
        let moved = "warning: x\nqemu-system-x86_64: Guest moved used index from 57 to 1\n";
        assert!(
            qemu_stale_ring_error(moved)
                .unwrap()
                .contains("Guest moved")
        );
        // The old matcher took any line with "desc", "virtio" or "virtqueue".
        for generic in [
            "qemu-system-x86_64: Cannot map descriptor ring",
            "some desc line",
            "qemu-system-x86_64: virtio-blk: desc",
            "qemu-system-x86_64: -device virtio-blk-pci: warning: something",
            "qemu-system-x86_64: virtqueue size looks odd",
            "virtio: zero sized buffers are not allowed",
        ] {
            assert_eq!(qemu_stale_ring_error(generic), None, "{generic}");
        }
    }

    #[test]
    fn disk_failure_matchers_need_the_specific_error() {
        let e = |s: &str| vec![s.to_string()];
        let virtio = "error: virtio-blk 0000:01:00.0: device status 0x4f (NEEDS_RESET/FAILED); \
                      skipped after 2 ms";
        assert!(virtio_needs_reset_error(&e(virtio)).is_some());
        let at_io = "error: disk 0000:01:00.0 virtio-blk: reading LBA 0: device error status \
                     0x14f (the device set NEEDS_RESET); skipped";
        assert!(virtio_needs_reset_error(&e(at_io)).is_some());
        for other in [
            "error: virtio-blk 0000:01:00.0: device status 0x8f (NEEDS_RESET/FAILED)",
            "error: virtio-blk 0000:01:00.0: timeout waiting for desc",
            "error: virtio-blk 0000:01:00.0: reset: status 0x4f after 5000000 us",
        ] {
            assert!(virtio_needs_reset_error(&e(other)).is_none(), "{other}");
        }
        let nvme = "error: nvme 0000:01:00.0: nvme: timeout after 5000 ms waiting for admin \
                    completion (CSTS 0x1); skipped after 5007 ms";
        assert!(nvme_admin_timeout_error(&e(nvme)).is_some());
        for other in [
            "error: nvme 0000:01:00.0: nvme: timeout after 5000 ms waiting for admin completion (CSTS 0x0)",
            "error: nvme 0000:01:00.0: nvme: timeout after 500 ms waiting for CSTS.RDY=1 after setting CC.EN (CSTS 0x0)",
            "error: nvme 0000:01:00.0: nvme: controller fatal status (CSTS 0x3)",
            "error: nvme 0000:01:00.0: desc",
        ] {
            assert!(nvme_admin_timeout_error(&e(other)).is_none(), "{other}");
        }
    }
}
