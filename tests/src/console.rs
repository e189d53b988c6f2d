//! The COM1 console of one QEMU run, timestamped by the host ([`crate::qemu`] records it), and
//! what an e2e run's console says.
//!
//! Lines before the first kernel's `sysrq: Trigger a crash` belong to the first kernel (kernel
//! messages, our /init's `E2E: ...` lines, the marker report); lines after it belong to the capture
//! kernel (rkdump's `rkdump: ...` lines, or a Linux capture kernel's boot log and /init lines).
//! Parsing is pure: every check of xtask's `e2e::checks` works on these structs, so canned logs
//! test them.

use std::fmt::Write as _;
use std::time::Duration;

use rkdump_marker::Report as MarkerReport;

/// The first kernel's line that marks the crash (drivers/tty/sysrq.c `sysrq_handle_crash`).
pub const SYSRQ_LINE: &str = "sysrq: Trigger a crash";

/// The crash line of the e2e cases that crash by ending init (`e2e.crash=exit`).
pub const INIT_EXIT_LINE: &str = "Kernel panic - not syncing: Attempted to kill init!";

/// One console line and when the host read its newline (since QEMU was spawned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Host time since QEMU start.
    pub t: Duration,
    /// The text, without line ending.
    pub text: String,
}

/// A whole console log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleLog {
    /// All lines in arrival order.
    pub lines: Vec<Line>,
}

/// An inclusive physical address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl Range {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }
    /// True if `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..=self.end).contains(&addr)
    }
    /// True if all of `other` lies inside.
    pub fn contains_range(&self, other: &Range) -> bool {
        self.contains(other.start) && self.contains(other.end)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// E820 entry type as rkdump (or Linux) names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Kind {
    /// Type 1.
    Ram,
    /// Type 2.
    Reserved,
    /// Type 3 (ACPI reclaimable).
    Acpi,
    /// Type 4.
    Nvs,
    /// Type 5.
    Unusable,
    /// Type 7.
    Pmem,
    /// Type 12.
    Pram,
    /// Soft reserved (Linux only).
    SoftReserved,
    /// Any other type.
    Other(u32),
}

impl E820Kind {
    /// Parses rkdump's kind word (`ram`, `reserved`, `acpi`, `nvs`, `unusable`, `pmem`, `pram`, `type<N>`).
    pub fn from_rkdump(word: &str) -> Option<E820Kind> {
        Some(match word {
            "ram" => E820Kind::Ram,
            "reserved" => E820Kind::Reserved,
            "acpi" => E820Kind::Acpi,
            "nvs" => E820Kind::Nvs,
            "unusable" => E820Kind::Unusable,
            "pmem" => E820Kind::Pmem,
            "pram" => E820Kind::Pram,
            other => E820Kind::Other(other.strip_prefix("type")?.parse().ok()?),
        })
    }

    /// Parses Linux's `e820_print_type` text.
    fn from_linux(text: &str) -> E820Kind {
        match text.trim() {
            "usable" => E820Kind::Ram,
            "reserved" => E820Kind::Reserved,
            "ACPI data" => E820Kind::Acpi,
            "ACPI NVS" => E820Kind::Nvs,
            "unusable" => E820Kind::Unusable,
            "soft reserved" => E820Kind::SoftReserved,
            "persistent (type 7)" => E820Kind::Pmem,
            "persistent (type 12)" => E820Kind::Pram,
            t => E820Kind::Other(
                t.rsplit(' ')
                    .next()
                    .and_then(|n| n.trim_end_matches(')').parse().ok())
                    .unwrap_or(0),
            ),
        }
    }
}

/// One E820 entry reported by the capture kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Address range.
    pub range: Range,
    /// Type.
    pub kind: E820Kind,
}

/// One `kexec -p` attempt made by /init.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KexecAttempt {
    /// `c` (kexec_load) or `s` (kexec_file_load).
    pub mode: String,
    /// The command line /init ran.
    pub cmd: Option<String>,
    /// Exit status.
    pub rc: Option<i32>,
    /// /sys/kernel/kexec_crash_loaded afterwards.
    pub loaded: Option<bool>,
    /// kexec's stdout and stderr.
    pub output: Vec<String>,
}

/// What the first kernel and its /init reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirstKernel {
    /// `uname -r`.
    pub release: Option<String>,
    /// `nproc`.
    pub nproc: Option<u32>,
    /// Number of CPUs in /sys/devices/system/cpu/possible.
    pub possible_cpus: Option<u32>,
    /// Number of CPUs in /sys/devices/system/cpu/present.
    pub present_cpus: Option<u32>,
    /// "Crash kernel" ranges from /proc/iomem, in iomem order (the loaders use the last).
    pub crash_regions: Vec<Range>,
    /// Kernel log lines about the crashkernel reservation.
    pub crashkernel_msgs: Vec<String>,
    /// kexec attempts in order.
    pub kexec: Vec<KexecAttempt>,
    /// The marker's report.
    pub marker: Option<MarkerReport>,
    /// `E2E: error ...` lines and marker timeouts.
    pub errors: Vec<String>,
    /// When /init started reporting.
    pub up_at: Option<Duration>,
    /// The `sysrq: Trigger a crash` line.
    pub sysrq_at: Option<Duration>,
}

/// `rkdump: elfcorehdr addr=0x<hex> phnum=<n> notes=<n> loads=<n>`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfcorehdrLine {
    /// Physical address of the ELF core header.
    pub addr: u64,
    /// Program headers.
    pub phnum: u64,
    /// PT_NOTE headers.
    pub notes: u64,
    /// PT_LOAD headers.
    pub loads: u64,
}

/// `rkdump: initrd ...`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitrdLine {
    /// `rkdump: initrd none`
    None,
    /// `rkdump: initrd 0x<start> size=<n>`
    At {
        /// Physical start.
        start: u64,
        /// Size in bytes.
        size: u64,
    },
}

/// What rkdump printed after the crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rkdump {
    /// `rkdump: entered`.
    pub entered_at: Option<Duration>,
    /// `rkdump: cmdline "<text>"` (text without the quotes).
    pub cmdline: Option<String>,
    /// `rkdump: e820 ...` lines.
    pub e820: Vec<E820Entry>,
    /// `rkdump: initrd ...`.
    pub initrd: Option<InitrdLine>,
    /// `rkdump: elfcorehdr ...`.
    pub elfcorehdr: Option<ElfcorehdrLine>,
    /// `rkdump: error: ...` and `rkdump: exception ...` lines.
    pub errors: Vec<String>,
    /// Lines with a known `rkdump:` keyword whose arguments did not parse.
    pub malformed: Vec<String>,
    /// `rkdump: dump start ...`: when, and its arguments.
    pub dump_start: Option<(Duration, String)>,
    /// The last `rkdump: progress ...` arguments.
    pub last_progress: Option<String>,
    /// `rkdump: dump complete ...`: when, and its arguments.
    pub dump_complete: Option<(Duration, String)>,
    /// Number of `rkdump:` lines seen.
    pub lines: usize,
    /// The last `rkdump:` line (without the prefix).
    pub last_line: Option<String>,
}

/// What a Linux capture kernel and its /init printed after the crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinuxCapture {
    /// The capture kernel's `Linux version` line.
    pub version_at: Option<Duration>,
    /// Its text.
    pub version: Option<String>,
    /// `E2E: capture-init` (the capture /init started).
    pub init_at: Option<Duration>,
    /// /proc/cmdline of the capture kernel.
    pub cmdline: Option<String>,
    /// `BIOS-e820:` entries the capture kernel printed.
    pub e820: Vec<E820Entry>,
    /// `RAMDISK: [mem a-b]`.
    pub ramdisk: Option<Range>,
    /// Size of /proc/vmcore.
    pub vmcore_size: Option<u64>,
    /// e_phnum of /proc/vmcore (1 merged PT_NOTE + PT_LOADs).
    pub vmcore_phnum: Option<u64>,
    /// `E2E: vmcore missing`.
    pub vmcore_missing: bool,
    /// `E2E: vmcore saved dev=<d> rc=<n> start=<uptime> end=<uptime> ...`: rc and copy time
    /// (guest clock, from the uptime pair).
    pub vmcore_saved: Option<(i32, Option<Duration>)>,
    /// `E2E: capture-done`.
    pub done_at: Option<Duration>,
    /// `Kernel panic` lines.
    pub panics: Vec<String>,
}

/// Parses `0x`/`0X`-prefixed hex or decimal.
pub fn hex_or_dec(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Counts CPUs in a sysfs cpu list such as `0-3,5,7-8`.
pub fn count_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse::<u32>().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    Some(n)
}

/// `key=value` lookup in a whitespace-separated word list.
pub fn kv<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Text after the first occurrence of `marker` in `line`.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// Cuts `text` at a kernel printk prefix (`[    2.356287] `) that a kernel message interjected
/// into the middle of a user-space line on the shared console.
fn cut_printk(text: &str) -> &str {
    let b = text.as_bytes();
    for (i, _) in text.match_indices('[').filter(|(i, _)| *i > 0) {
        let mut j = i + 1;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let digits = |mut k: usize| {
            let s = k;
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            (k, k > s)
        };
        let (k, int_ok) = digits(j);
        if !int_ok || k >= b.len() || b[k] != b'.' {
            continue;
        }
        let (m, frac_ok) = digits(k + 1);
        if frac_ok && text[m..].starts_with("] ") {
            return &text[..i];
        }
    }
    text
}

/// Parses `[mem 0x...-0x...]`.
fn mem_range(text: &str) -> Option<(Range, &str)> {
    let rest = after(text, "[mem ")?;
    let (inner, tail) = rest.split_once(']')?;
    let (a, b) = inner.split_once('-')?;
    Some((
        Range {
            start: hex_or_dec(a)?,
            end: hex_or_dec(b)?,
        },
        tail,
    ))
}

impl ConsoleLog {
    /// Parses a saved `console.log` (`[  seconds] text` per line, as written by [`ConsoleLog::render_line`]).
    pub fn parse_saved(text: &str) -> ConsoleLog {
        let lines = text
            .lines()
            .map(|l| {
                let parsed = l
                    .strip_prefix('[')
                    .and_then(|r| r.split_once("] "))
                    .and_then(|(t, rest)| {
                        Some(Line {
                            t: Duration::from_secs_f64(t.trim().parse().ok()?),
                            text: rest.to_string(),
                        })
                    });
                parsed.unwrap_or_else(|| Line {
                    t: Duration::ZERO,
                    text: l.to_string(),
                })
            })
            .collect();
        ConsoleLog { lines }
    }

    /// Formats one line as stored in `console.log`.
    pub fn render_line(line: &Line) -> String {
        format!("[{:>11.6}] {}", line.t.as_secs_f64(), line.text)
    }

    /// Index of the first kernel's crash line.
    pub fn sysrq_index(&self) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.text.contains(SYSRQ_LINE) || l.text.contains(INIT_EXIT_LINE))
    }

    /// Lines printed before (and including) the crash line; all lines if there was no crash.
    pub fn first_kernel_lines(&self) -> &[Line] {
        match self.sysrq_index() {
            Some(i) => &self.lines[..=i],
            None => &self.lines,
        }
    }

    /// Lines printed after the crash line (empty if there was no crash).
    pub fn capture_lines(&self) -> &[Line] {
        match self.sysrq_index() {
            Some(i) => &self.lines[i + 1..],
            None => &[],
        }
    }

    /// The last `n` lines, rendered, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        let mut s = String::new();
        for l in &self.lines[start..] {
            let _ = writeln!(s, "    {}", Self::render_line(l));
        }
        s
    }

    /// What the first kernel and its /init reported. The /init and marker lines are looked for in
    /// the whole log: user-space writes queued in the tty can come out after the panic's
    /// synchronous console output. (A Linux capture kernel's /init prints other keywords.)
    pub fn first_kernel(&self) -> FirstKernel {
        let mut fk = FirstKernel {
            sysrq_at: self.sysrq_index().map(|i| self.lines[i].t),
            ..Default::default()
        };
        for l in self.first_kernel_lines() {
            let text = &l.text;
            if (text.contains("crashkernel") || text.contains("Crash kernel"))
                && !text.contains("E2E:")
                && !text.contains("Command line:")
                && !text.contains("command line:")
            {
                fk.crashkernel_msgs.push(text.trim().to_string());
            }
        }
        for l in &self.lines {
            let Some(e2e) = after(&l.text, "E2E: ").map(cut_printk) else {
                continue;
            };
            let (word, rest) = e2e.split_once(' ').unwrap_or((e2e, ""));
            match word {
                "first-kernel" => {
                    fk.up_at = Some(l.t);
                    fk.release = kv(rest, "release").map(str::to_string);
                    fk.nproc = kv(rest, "nproc").and_then(|v| v.parse().ok());
                    fk.possible_cpus = kv(rest, "possible").and_then(count_cpu_list);
                    fk.present_cpus = kv(rest, "present").and_then(count_cpu_list);
                }
                "crash-region" => {
                    if let Some((a, b)) = rest.trim().split_once('-')
                        && let (Ok(start), Ok(end)) =
                            (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
                    {
                        fk.crash_regions.push(Range { start, end });
                    }
                }
                "kexec-cmd" => {
                    let mode = kv(rest, "mode").unwrap_or("").to_string();
                    let cmd = rest.split_once(' ').map(|(_, c)| c.to_string());
                    fk.kexec.push(KexecAttempt {
                        mode,
                        cmd,
                        ..Default::default()
                    });
                }
                "kexec-out" => {
                    let mode = kv(rest, "mode").unwrap_or("");
                    let out = rest
                        .split_once(' ')
                        .map(|(_, o)| o)
                        .unwrap_or("")
                        .to_string();
                    if let Some(k) = fk.kexec.iter_mut().rev().find(|k| k.mode == mode) {
                        k.output.push(out);
                    }
                }
                "kexec" => {
                    let mode = kv(rest, "mode").unwrap_or("");
                    if let Some(k) = fk.kexec.iter_mut().rev().find(|k| k.mode == mode) {
                        k.rc = kv(rest, "rc").and_then(|v| v.parse().ok());
                        k.loaded = kv(rest, "loaded").map(|v| v == "1");
                    }
                }
                "error" => fk.errors.push(rest.to_string()),
                "marker-timeout" => fk
                    .errors
                    .push("marker did not report within 60 s + 0.1 s per MiB".into()),
                _ => {}
            }
        }
        fk.marker = MarkerReport::from_lines(
            self.lines
                .iter()
                .map(|l| l.text.as_str())
                .filter(|t| !t.contains("rkdump: ")),
        );
        fk
    }

    /// What rkdump printed after the crash.
    pub fn rkdump(&self) -> Rkdump {
        let mut r = Rkdump::default();
        for l in self.capture_lines() {
            let Some(body) = after(&l.text, "rkdump: ") else {
                continue;
            };
            r.lines += 1;
            let body = body.trim_end();
            r.last_line = Some(body.to_string());
            let (word, rest) = body.split_once(' ').unwrap_or((body, ""));
            let ok = match word {
                "entered" => {
                    r.entered_at.get_or_insert(l.t);
                    true
                }
                "cmdline" => {
                    let t = rest.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
                    if let Some(t) = t {
                        r.cmdline = Some(t.to_string());
                    }
                    t.is_some()
                }
                "e820" => {
                    let mut w = rest.split_whitespace();
                    let entry = (|| {
                        let (a, b) = w.next()?.split_once('-')?;
                        let kind = E820Kind::from_rkdump(w.next()?)?;
                        Some(E820Entry {
                            range: Range {
                                start: hex_or_dec(a)?,
                                end: hex_or_dec(b)?,
                            },
                            kind,
                        })
                    })();
                    if let Some(e) = entry {
                        r.e820.push(e);
                    }
                    entry.is_some()
                }
                "initrd" => {
                    let parsed = if rest.trim() == "none" {
                        Some(InitrdLine::None)
                    } else {
                        let mut w = rest.split_whitespace();
                        (|| {
                            let start = hex_or_dec(w.next()?)?;
                            let size = hex_or_dec(w.next()?.strip_prefix("size=")?)?;
                            Some(InitrdLine::At { start, size })
                        })()
                    };
                    if parsed.is_some() {
                        r.initrd = parsed;
                    }
                    parsed.is_some()
                }
                "elfcorehdr" => {
                    let parsed = (|| {
                        Some(ElfcorehdrLine {
                            addr: hex_or_dec(kv(rest, "addr")?)?,
                            phnum: hex_or_dec(kv(rest, "phnum")?)?,
                            notes: hex_or_dec(kv(rest, "notes")?)?,
                            loads: hex_or_dec(kv(rest, "loads")?)?,
                        })
                    })();
                    if parsed.is_some() {
                        r.elfcorehdr = parsed;
                    }
                    parsed.is_some()
                }
                "dump" => {
                    if let Some(a) = rest.strip_prefix("start ") {
                        r.dump_start.get_or_insert((l.t, a.to_string()));
                    } else if let Some(a) = rest.strip_prefix("complete ") {
                        r.dump_complete.get_or_insert((l.t, a.to_string()));
                    }
                    true
                }
                "progress" => {
                    r.last_progress = Some(rest.to_string());
                    true
                }
                "error:" | "exception" | "exception:" | "panic" | "panic:" => {
                    r.errors.push(body.to_string());
                    true
                }
                _ => true,
            };
            if !ok {
                r.malformed.push(body.to_string());
            }
        }
        r
    }

    /// What a Linux capture kernel and the capture /init printed after the crash.
    pub fn linux_capture(&self) -> LinuxCapture {
        let mut c = LinuxCapture::default();
        for l in self.capture_lines() {
            let text = &l.text;
            if let Some(v) = after(text, "Linux version ") {
                if c.version_at.is_none() {
                    c.version_at = Some(l.t);
                    c.version = Some(v.split_whitespace().next().unwrap_or("").to_string());
                }
            } else if let Some(rest) = after(text, "BIOS-e820: ") {
                if let Some((range, tail)) = mem_range(rest) {
                    c.e820.push(E820Entry {
                        range,
                        kind: E820Kind::from_linux(tail),
                    });
                }
            } else if let Some(rest) = after(text, "RAMDISK: ") {
                c.ramdisk = mem_range(rest).map(|(r, _)| r);
            } else if text.contains("Kernel panic") && !text.contains("sysrq triggered crash") {
                // (the first kernel's own panic follows its sysrq line)
                c.panics.push(text.trim().to_string());
            } else if let Some(e2e) = after(text, "E2E: ").map(cut_printk) {
                let (word, rest) = e2e.split_once(' ').unwrap_or((e2e, ""));
                match word {
                    "capture-init" => c.init_at = Some(l.t),
                    "capture-cmdline" => c.cmdline = Some(rest.trim_end().to_string()),
                    "vmcore" if rest.trim() == "missing" => c.vmcore_missing = true,
                    "vmcore" if rest.starts_with("saved ") => {
                        let f = |k| kv(rest, k).and_then(|v: &str| v.parse::<f64>().ok());
                        let rc = kv(rest, "rc").and_then(|v| v.parse().ok()).unwrap_or(-1);
                        let took = match (f("start"), f("end")) {
                            (Some(a), Some(b)) if b >= a => Some(Duration::from_secs_f64(b - a)),
                            _ => None,
                        };
                        c.vmcore_saved = Some((rc, took));
                    }
                    "vmcore" => {
                        c.vmcore_size = kv(rest, "size").and_then(hex_or_dec);
                        c.vmcore_phnum = kv(rest, "phnum").and_then(hex_or_dec);
                    }
                    "capture-done" => c.done_at = Some(l.t),
                    _ => {}
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3,5,7-8\n"), Some(7));
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn saved_log_round_trips() {
        let line = Line {
            t: Duration::from_millis(12_345),
            text: "hello [x] world".into(),
        };
        let log = ConsoleLog::parse_saved(&ConsoleLog::render_line(&line));
        assert_eq!(log.lines, vec![line]);
    }

    #[test]
    fn printk_interjections_are_cut() {
        let seen = "E2E: capture-cmdline a elfcorehdr=7322996K[    2.356287] clocksource: Switched to clocksource tsc";
        assert_eq!(
            cut_printk(seen),
            "E2E: capture-cmdline a elfcorehdr=7322996K"
        );
        assert_eq!(
            cut_printk("E2E: kexec-out mode=c [x] 0 [1.5]"),
            "E2E: kexec-out mode=c [x] 0 [1.5]"
        );
        let lines = vec![
            Line {
                t: Duration::ZERO,
                text: format!("[ 1.0] {SYSRQ_LINE}"),
            },
            Line {
                t: Duration::ZERO,
                text: seen.into(),
            },
        ];
        let lc = ConsoleLog { lines }.linux_capture();
        assert_eq!(lc.cmdline.as_deref(), Some("a elfcorehdr=7322996K"));
    }

    #[test]
    fn linux_e820_types() {
        assert_eq!(E820Kind::from_linux(" usable"), E820Kind::Ram);
        assert_eq!(E820Kind::from_linux("ACPI NVS"), E820Kind::Nvs);
        assert_eq!(E820Kind::from_linux("persistent (type 12)"), E820Kind::Pram);
        assert_eq!(E820Kind::from_linux("type 20"), E820Kind::Other(20));
        assert_eq!(E820Kind::from_rkdump("type20"), Some(E820Kind::Other(20)));
        assert_eq!(E820Kind::from_rkdump("bogus"), None);
    }
}
