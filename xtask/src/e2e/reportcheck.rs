//! Checks of the crash report rkdump prints before the dump (issue 14), against outside
//! references: the reason the case provoked, `makedumpfile --dump-dmesg` of the saved vmcore,
//! the NT_PRSTATUS notes of that file decoded here from their byte offsets, the report stored
//! in the record (`rkdumpctl save`) and the one `rkdumpctl inspect --report` computes from the
//! saved file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rkdump_vmcore::header::ElfCoreHeader;
use rkdump_vmcore::notes::Notes;

use super::case::Case;
use super::checks::Check;
use super::console::ConsoleLog;

fn check(name: &str, result: Result<String, String>) -> Check {
    Check {
        name: name.to_string(),
        result,
    }
}

/// Register names and values, in the order shown.
type Regs = Vec<(String, u64)>;

/// The report as printed: the lines between `rkdump: report begin` and `rkdump: report end`,
/// and the end line's `ms=`.
#[derive(Debug, Default)]
pub struct Printed {
    /// Body lines.
    pub body: Vec<String>,
    /// `ms=` of the end line.
    pub ms: Option<u64>,
}

/// Finds the report in console lines (`None` without a begin line).
pub fn printed<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Printed> {
    let mut it = lines
        .into_iter()
        .skip_while(|l| !l.contains("rkdump: report begin"));
    it.next()?;
    let mut p = Printed::default();
    for l in it {
        if let Some(rest) = l.trim_end().strip_prefix("rkdump: report end") {
            p.ms = rest.trim().strip_prefix("ms=").and_then(|v| v.parse().ok());
            return Some(p);
        }
        p.body.push(l.trim_end().to_string());
    }
    None
}

impl Printed {
    fn line_after(&self, prefix: &str) -> Option<&str> {
        self.body.iter().find_map(|l| l.strip_prefix(prefix))
    }

    /// The log section: lines after `log: ...` up to the first error line.
    pub fn log(&self) -> Vec<&str> {
        self.body
            .iter()
            .skip_while(|l| !l.starts_with("log: "))
            .skip(1)
            .take_while(|l| !l.starts_with("rkdump: error:"))
            .map(String::as_str)
            .collect()
    }

    /// CPU blocks: (index, pid, register name -> value).
    pub fn cpus(&self) -> Vec<(usize, i64, Regs)> {
        let mut out: Vec<(usize, i64, Regs)> = Vec::new();
        for l in &self.body {
            if let Some(rest) = l.strip_prefix("cpu ")
                && let Some(idx) = rest.split([' ', ':']).next()
                && let Some(pid) = rest.split(": pid ").nth(1)
            {
                let pid = pid.split(' ').next().and_then(|p| p.parse().ok());
                if let (Ok(i), Some(pid)) = (idx.parse(), pid) {
                    out.push((i, pid, Vec::new()));
                }
                continue;
            }
            let Some(cur) = out.last_mut() else { continue };
            if !l.starts_with("  ") || l.starts_with("  [<") {
                continue;
            }
            let words: Vec<&str> = l.split_whitespace().collect();
            let pairs = if words.first() == Some(&"rip") {
                &words[..2.min(words.len())]
            } else {
                &words[..]
            };
            for pair in pairs.chunks(2) {
                if let [name, value] = pair
                    && let Ok(v) = u64::from_str_radix(value, 16)
                {
                    cur.2.push((name.to_string(), v));
                }
            }
        }
        out
    }
}

/// A report's CPU line: `cpu <n>[ (role)]: pid <p> comm <name> (<how>)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLine {
    /// CPU index.
    pub cpu: usize,
    /// pid.
    pub pid: i64,
    /// Command name, `None` when the report shows `?`.
    pub comm: Option<String>,
    /// Where the name came from (the text in parentheses).
    pub how: String,
}

impl Printed {
    /// The CPU lines.
    pub fn tasks(&self) -> Vec<TaskLine> {
        self.body
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix("cpu ")?;
                let cpu = rest.split([' ', ':']).next()?.parse().ok()?;
                let after = rest.split(": pid ").nth(1)?;
                let (pid, after) = after.split_once(" comm ")?;
                let (name, how) = after.split_once(" (")?;
                Some(TaskLine {
                    cpu,
                    pid: pid.parse().ok()?,
                    comm: (name != "?").then(|| name.to_string()),
                    how: how.trim_end_matches(')').to_string(),
                })
            })
            .collect()
    }
}

/// Every CPU of the report against crash's `bt -a` block for that CPU: same pid, and the same
/// command name wherever the report shows one. Err on the first difference, or when the
/// report names no task from task memory (the point of the check).
pub fn compare_tasks(report: &[TaskLine], crash: &[CrashBt]) -> Result<String, String> {
    if report.is_empty() {
        return Err("the report shows no CPU".into());
    }
    let mut named = 0;
    for t in report {
        let b = crash
            .iter()
            .find(|b| b.cpu == t.cpu)
            .ok_or(format!("crash bt -a shows no task on CPU {}", t.cpu))?;
        if b.pid != t.pid {
            return Err(format!(
                "cpu {}: report pid {}, crash PID {}",
                t.cpu, t.pid, b.pid
            ));
        }
        match &t.comm {
            Some(c) if *c != b.command => {
                return Err(format!(
                    "cpu {}: report comm {c:?} ({}), crash COMMAND {:?}",
                    t.cpu, t.how, b.command
                ));
            }
            Some(_) => named += 1,
            None => {}
        }
    }
    let from_task = report
        .iter()
        .filter(|t| t.how.contains("task_struct"))
        .count();
    if named < report.len() {
        return Err(format!(
            "{} of {} CPUs without a command name",
            report.len() - named,
            report.len()
        ));
    }
    Ok(format!(
        "{} CPUs: pid and command equal crash's ({from_task} read from the task): {}",
        report.len(),
        report
            .iter()
            .map(|t| format!("cpu {} pid {} {:?}", t.cpu, t.pid, t.comm))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `user_regs_struct` order (Linux arch/x86/include/asm/user_64.h), for decoding the notes here
/// independently of rkdump's own parser.
const USER_REGS: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

/// NT_PRSTATUS notes of the vmcore file (ELF or kdump-compressed): (pid, registers), in note
/// order.
fn prstatus_of(vmcore: &Path) -> Result<Vec<(i64, Regs)>, String> {
    let f = File::open(vmcore).map_err(|e| format!("{}: {e}", vmcore.display()))?;
    let mut head = vec![0u8; 64 << 10];
    let n = f.read_at(&mut head, 0).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    if head.starts_with(&rkdump_vmcore::kdump::abi::KDUMP_SIGNATURE) {
        // kdump-compressed: the sub-header's copy of the notes.
        let all = std::fs::read(vmcore).map_err(|e| e.to_string())?;
        let file = rkdump_vmcore::kdump::KdumpFile::parse(&all).map_err(|e| e.to_string())?;
        bytes.extend_from_slice(file.notes().map_err(|e| e.to_string())?);
    } else {
        let core = ElfCoreHeader::parse_file(&head[..n]).map_err(|e| e.to_string())?;
        for (_, p) in core.notes() {
            let mut b = vec![0u8; p.p_filesz.min(16 << 20) as usize];
            f.read_exact_at(&mut b, p.p_offset)
                .map_err(|e| e.to_string())?;
            bytes.extend(b);
        }
    }
    let notes = Notes::parse_merged(&bytes);
    Ok(notes
        .iter()
        .filter(|n| n.is_prstatus())
        .filter_map(|n| {
            // struct elf_prstatus: pr_pid at 32, pr_reg at 112.
            let pid = i32::from_le_bytes(n.desc.get(32..36)?.try_into().ok()?);
            let regs = USER_REGS
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let at = 112 + 8 * i;
                    let v = n
                        .desc
                        .get(at..at + 8)
                        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                    (name.to_string(), v)
                })
                .collect();
            Some((i64::from(pid), regs))
        })
        .collect())
}

/// Adds the report checks for a dump case whose vmcore was saved to `vmcore` (and verified, so
/// `dir/dmesg.txt` holds `makedumpfile --dump-dmesg`).
pub fn apply(case: &Case, log: &ConsoleLog, vmcore: &Path, dir: &Path, checks: &mut Vec<Check>) {
    let Some(p) = printed(log.lines.iter().map(|l| l.text.as_str())) else {
        checks.push(check(
            "crash report printed",
            Err("no `rkdump: report begin` ... `rkdump: report end` on the console".into()),
        ));
        return;
    };
    checks.push(check(
        "crash report printed",
        match p.ms {
            Some(ms) => Ok(format!("{} lines, report end ms={ms}", p.body.len())),
            None => Err("no `ms=` on the report end line".into()),
        },
    ));

    // 1. The reason the case provoked, in the panic line and in the log.
    let log_lines = p.log();
    let has = |needle: &str| log_lines.iter().any(|l| l.contains(needle));
    let (reason, log_needles): (&str, &[&str]) = if case.crash_exit {
        (
            "Attempted to kill init!",
            &["Kernel panic - not syncing: Attempted to kill init!"],
        )
    } else {
        (
            "sysrq triggered crash",
            &["sysrq: Trigger a crash", "Kernel panic - not syncing"],
        )
    };
    let panic = p.line_after("panic: ").unwrap_or("");
    checks.push(check(
        "report names the crash reason",
        if !panic.contains(reason) {
            Err(format!("panic line {panic:?} lacks {reason:?}"))
        } else if let Some(missing) = log_needles.iter().find(|n| !has(n)) {
            Err(format!("the report's log lacks {missing:?}"))
        } else {
            Ok(format!("panic: {panic}"))
        },
    ));

    // 2. The log lines equal the same last lines of makedumpfile --dump-dmesg.
    let dmesg = std::fs::read_to_string(dir.join("dmesg.txt")).unwrap_or_default();
    let reference: Vec<&str> = dmesg.lines().map(str::trim_end).collect();
    checks.push(check(
        "report log equals makedumpfile --dump-dmesg",
        if log_lines.is_empty() {
            Err("the report shows no log lines".into())
        } else if reference.len() < log_lines.len() {
            Err(format!(
                "makedumpfile printed {} lines, the report {}",
                reference.len(),
                log_lines.len()
            ))
        } else {
            let tail = &reference[reference.len() - log_lines.len()..];
            match log_lines.iter().zip(tail).position(|(a, b)| a != b) {
                None => Ok(format!("last {} lines identical", log_lines.len())),
                Some(i) => Err(format!(
                    "line {} of {} differs: report {:?}, makedumpfile {:?}",
                    i + 1,
                    log_lines.len(),
                    log_lines[i],
                    tail[i]
                )),
            }
        },
    ));

    // 3. The crashing CPU's trace names the function that crashed.
    let want = if case.crash_exit {
        "do_exit"
    } else {
        "sysrq_handle_crash"
    };
    let trace: Vec<&str> = p
        .body
        .iter()
        .skip_while(|l| !l.starts_with("call trace"))
        .skip(1)
        .take_while(|l| l.starts_with("  [<"))
        .map(String::as_str)
        .collect();
    let rip = p
        .body
        .iter()
        .find(|l| l.starts_with("  rip "))
        .cloned()
        .unwrap_or_default();
    checks.push(check(
        &format!("report call trace names {want}"),
        // `do_exit.cold+...`: the compiler's cold part of the function counts as the function.
        if trace
            .iter()
            .any(|l| l.contains(&format!("] {want}+")) || l.contains(&format!("] {want}.")))
        {
            Ok(format!(
                "{} frames; crashing CPU {}",
                trace.len(),
                rip.trim()
            ))
        } else {
            Err(format!("{} frames, none in {want}: {trace:?}", trace.len()))
        },
    ));

    // 4. Every register shown equals the saved NT_PRSTATUS note.
    checks.push(check(
        "report registers match NT_PRSTATUS",
        prstatus_of(vmcore).and_then(|notes| {
            let cpus = p.cpus();
            if cpus.len() != notes.len() {
                return Err(format!(
                    "report shows {} CPUs, the vmcore has {} NT_PRSTATUS notes",
                    cpus.len(),
                    notes.len()
                ));
            }
            let mut compared = 0;
            for (idx, pid, regs) in &cpus {
                let (npid, nregs) = notes.get(*idx).ok_or(format!("no note {idx}"))?;
                if pid != npid {
                    return Err(format!("cpu {idx}: pid {pid}, note says {npid}"));
                }
                if regs.len() < 21 {
                    return Err(format!("cpu {idx}: only {} registers shown", regs.len()));
                }
                for (name, v) in regs {
                    let want = nregs
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| *v)
                        .ok_or(format!("cpu {idx}: unknown register {name}"))?;
                    if *v != want {
                        return Err(format!("cpu {idx} {name}: {v:#x}, note says {want:#x}"));
                    }
                    compared += 1;
                }
            }
            Ok(format!("{} CPUs, {compared} registers equal", cpus.len()))
        }),
    ));

    // 5. The report stored in the record (written beside the vmcore by `save`) is this one.
    let stored = std::fs::read_to_string(dir.join("vmcore.report.txt"));
    checks.push(check(
        "report stored in the record",
        match stored {
            Err(e) => Err(format!("vmcore.report.txt: {e}")),
            Ok(text) => {
                let s = printed(
                    std::iter::once("rkdump: report begin")
                        .chain(text.lines())
                        .chain(std::iter::once("rkdump: report end")),
                )
                .unwrap_or_default();
                let slog = s.log();
                if s.line_after("panic: ") != Some(panic) {
                    Err(format!("stored panic line {:?}", s.line_after("panic: ")))
                } else if slog.is_empty() || !log_lines.ends_with(&slog) {
                    Err(format!(
                        "stored log ({} lines) is not the end of the console's",
                        slog.len()
                    ))
                } else {
                    Ok(format!(
                        "{} bytes, {} of the {} log lines",
                        text.len(),
                        slog.len(),
                        log_lines.len()
                    ))
                }
            }
        },
    ));

    // 7. The trace and the CPUs' tasks against `crash` (Debian -dbg vmlinux) on the same file.
    let crash_dir = dir.join("report-crash");
    let cpus: Vec<usize> = p.tasks().iter().map(|t| t.cpu).collect();
    let vmlinux = p
        .line_after("crashed kernel: ")
        .ok_or_else(|| "no `crashed kernel:` line".to_string())
        .and_then(|release| {
            std::fs::create_dir_all(&crash_dir).map_err(|e| e.to_string())?;
            rkdump_tests::tools::debug_vmlinux(release).map_err(|e| e.to_string())
        });
    let first = vmlinux.clone().and_then(|v| {
        let mut cmds = vec!["bt -a".to_string()];
        cmds.extend(cpus.iter().map(|c| format!("p current_task:{c}")));
        crash_run(&v, vmcore, &cmds, &crash_dir.join("bt"))
    });
    checks.push(check(
        "report call trace agrees with crash bt",
        first.clone().and_then(|out| {
            let bts = crash_bts(&out);
            let cpu = p
                .cpus()
                .first()
                .map(|c| c.0)
                .ok_or("no CPU in the report")?;
            let bt = bts
                .iter()
                .find(|b| b.cpu == cpu)
                .ok_or(format!("crash bt -a shows no task on CPU {cpu}"))?;
            // crash 8.0.2 does not show `do_exit.cold` (nor its callers) on this kernel, where
            // the report does (the check above): the exit case is compared from `panic`.
            let anchor = if case.crash_exit { "panic" } else { want };
            // Past `panic` in the exit case crash has no unwind data either (do_exit.cold) and
            // falls back to its own stack scan, which keeps stale return addresses the report's
            // scan drops and the other way round (seen: crash's clear_user_rep_good under an
            // asm_exc_page_fault frame): two of its frames may be missing there. The sysrq
            // trace is unwound by crash, so all of its frames must be there.
            let may_miss = if case.crash_exit { 2 } else { 0 };
            let s = compare_trace(&trace, &bt.frames, anchor, may_miss)?;
            Ok(format!(
                "crash's {} frames from {anchor} outwards, {} in the report in order \
                 ({may_miss} may be missing); \
                 crash frames {}, report frames {}, crash frames not in the report {:?}, \
                 report frames not in crash's {:?}",
                s.reference,
                s.matched,
                bt.frames.len(),
                trace.len(),
                s.missed,
                s.extra
            ))
        }),
    ));
    checks.push(check(
        "report CPUs' tasks agree with crash",
        first.and_then(|out| {
            let tasks = current_tasks(&out);
            if tasks.len() != cpus.len() {
                return Err(format!(
                    "crash printed {} current_task values for {} CPUs",
                    tasks.len(),
                    cpus.len()
                ));
            }
            let cmds: Vec<String> = tasks
                .iter()
                .map(|(_, t)| format!("struct task_struct.pid,comm {t:#x}"))
                .collect();
            let out = crash_run(&vmlinux.clone()?, vmcore, &cmds, &crash_dir.join("tasks"))?;
            let fields = task_fields(&out);
            if fields.len() != tasks.len() {
                return Err(format!("crash printed {} pid/comm pairs", fields.len()));
            }
            let from_crash: Vec<CrashBt> = tasks
                .iter()
                .zip(fields)
                .map(|((cpu, _), (pid, command))| CrashBt {
                    pid,
                    cpu: *cpu,
                    command,
                    frames: Vec::new(),
                })
                .collect();
            compare_tasks(&p.tasks(), &from_crash)
        }),
    ));

    // 6. The same code on the host, from the saved file, prints the same report.
    let lines = p
        .line_after("log: last ")
        .and_then(|r| r.split(" of ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let host = crate::build::rkdumpctl()
        .and_then(|ctl| ctl.inspect_report(vmcore, lines).map_err(|e| e.to_string()));
    checks.push(check(
        "rkdumpctl inspect prints the same report",
        host.and_then(|out| {
            let h = printed(out.lines()).ok_or("no report in `inspect --report` output")?;
            match h.body.iter().zip(&p.body).position(|(a, b)| a != b) {
                None if h.body.len() == p.body.len() => {
                    Ok(format!("{} lines identical", h.body.len()))
                }
                None => Err(format!(
                    "inspect printed {} lines, the console {}",
                    h.body.len(),
                    p.body.len()
                )),
                Some(i) => Err(format!(
                    "line {}: inspect {:?}, console {:?}",
                    i + 1,
                    h.body[i],
                    p.body[i]
                )),
            }
        }),
    ));
}

/// One task's block of `crash` `bt` output: the header's pid, CPU and command, and the frame
/// function names in order (`#0` first, innermost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashBt {
    /// `PID:`.
    pub pid: i64,
    /// `CPU:`.
    pub cpu: usize,
    /// `COMMAND:`, without the quotes.
    pub command: String,
    /// Function of each `#n [sp] func at addr` line.
    pub frames: Vec<String>,
}

/// Parses `crash` `bt` / `bt -a` output into one [`CrashBt`] per `PID: ... CPU: ...` header.
pub fn crash_bts(text: &str) -> Vec<CrashBt> {
    let mut out: Vec<CrashBt> = Vec::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("PID:") {
            let field = |key: &str| {
                rest.split(key)
                    .nth(1)
                    .map(|v| v.trim_start())
                    .and_then(|v| v.split_whitespace().next())
            };
            let pid = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            let cpu = field("CPU:").and_then(|v| v.parse().ok());
            let command = rest
                .split("COMMAND:")
                .nth(1)
                .map(|c| c.trim().trim_matches('"').to_string());
            if let (Some(pid), Some(cpu), Some(command)) = (pid, cpu, command) {
                out.push(CrashBt {
                    pid,
                    cpu,
                    command,
                    frames: Vec::new(),
                });
            }
            continue;
        }
        // ` #3 [ffffb8d3c0013d28] sysrq_handle_crash at ffffffffb08a8a06`
        let Some(cur) = out.last_mut() else { continue };
        let Some(rest) = t.strip_prefix('#') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(n), Some(sp), Some(func), Some("at")) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        if n.parse::<u32>().is_ok() && sp.starts_with('[') {
            cur.frames.push(func.to_string());
        }
    }
    out
}

/// Lines `crash` 8.0.2 prints about its own limits, not about the dump, tolerated in `bt -a`
/// output: the maple-tree `mm_struct` of Linux 6.1 (every user task), and the unwinder giving up
/// on a CPU that the crash NMI caught in the middle of a context switch (`current` already the
/// next task, the stack still the previous one; seen in CI on the second vCPU). Read errors are
/// never among them.
const CRASH_UNWIND_NOTES: [&str; 2] = [
    "mm_struct_mmap",
    "cannot transition from exception stack to current process stack",
];

/// The error lines of `crash` output that are not [`CRASH_UNWIND_NOTES`].
fn crash_problems(out: &str) -> Vec<&str> {
    rkdump_tests::tools::crash_error_lines(out)
        .into_iter()
        .filter(|l| !CRASH_UNWIND_NOTES.iter().any(|n| l.contains(n)))
        .collect()
}

/// Runs `crash` with `commands` in `dir` (created); its whole output. The
/// [`CRASH_UNWIND_NOTES`] are tolerated, any other of [`rkdump_tests::tools::CRASH_ERRORS`]
/// fails.
fn crash_run(
    vmlinux: &Path,
    vmcore: &Path,
    commands: &[String],
    dir: &Path,
) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let cmds: Vec<&str> = commands.iter().map(String::as_str).collect();
    match rkdump_tests::tools::crash(vmlinux, vmcore, &cmds, dir) {
        Ok(out) => Ok(out),
        Err(e) => {
            let out = std::fs::read_to_string(dir.join("crash.txt")).map_err(|_| e.to_string())?;
            let other = crash_problems(&out);
            if other.is_empty() {
                Ok(out)
            } else {
                Err(format!("crash: {}", other.join(" | ")))
            }
        }
    }
}

/// `p current_task:<cpu>` answers: `per_cpu(current_task, 1) = $1 = (struct task_struct *)
/// 0xffff...`, as (cpu, task address).
pub fn current_tasks(text: &str) -> Vec<(usize, u64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("per_cpu(current_task, ")?;
            let (cpu, rest) = rest.split_once(')')?;
            // `... *) 0xffffffff9281aa40 <init_task>`: the value, then maybe its symbol.
            let hex = rest.split_whitespace().find_map(|w| w.strip_prefix("0x"))?;
            Some((cpu.trim().parse().ok()?, u64::from_str_radix(hex, 16).ok()?))
        })
        .collect()
}

/// `struct task_struct.pid,comm <addr>` answers, in order: (pid, comm).
pub fn task_fields(text: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut pid = None;
    for l in text.lines().map(str::trim) {
        if let Some(v) = l.strip_prefix("pid = ") {
            pid = v.trim_end_matches(',').parse().ok();
        } else if let Some(v) = l.strip_prefix("comm = \"")
            && let Some(p) = pid.take()
        {
            let name = v.split(['"', '\\']).next().unwrap_or("");
            out.push((p, name.to_string()));
        }
    }
    out
}

/// How the report's stack-scan trace compares with the frames `crash bt` unwinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceScore {
    /// crash's frames from the anchor function to the outermost.
    pub reference: usize,
    /// Of those, found in the report's trace in crash's order.
    pub matched: usize,
    /// crash's frames (whole trace) missing from the report.
    pub missed: Vec<String>,
    /// Report frames that are not in crash's trace (stale return addresses).
    pub extra: Vec<String>,
}

/// The function of a report trace line `  [<addr>] func+0x1a/0x20` (or `func` alone).
fn trace_function(line: &str) -> &str {
    let f = line.split("] ").nth(1).unwrap_or(line).trim();
    f.split('+').next().unwrap_or(f)
}

/// Compares the report's trace lines with crash's frames: every crash frame from `anchor`
/// outwards must appear in the report, in the same order (other frames may sit between them:
/// the scan also finds stale return addresses), except at most `may_miss` of them. Err names
/// the crash frames the report lacks once more than `may_miss` are missing.
pub fn compare_trace(
    report: &[&str],
    crash: &[String],
    anchor: &str,
    may_miss: usize,
) -> Result<TraceScore, String> {
    let names: Vec<&str> = report.iter().map(|l| trace_function(l)).collect();
    let from = crash
        .iter()
        .position(|f| f == anchor)
        .ok_or(format!("crash bt has no {anchor} frame: {crash:?}"))?;
    let mut at = 0usize;
    let mut skipped = Vec::new();
    for f in &crash[from..] {
        match names[at..].iter().position(|n| n == f) {
            Some(i) => at += i + 1,
            None => skipped.push(f.clone()),
        }
    }
    if skipped.len() > may_miss {
        return Err(format!(
            "crash frames {skipped:?} (of {:?}) are not in the report's trace in crash's order \
             ({} may be missing): {names:?}",
            &crash[from..],
            may_miss
        ));
    }
    Ok(TraceScore {
        reference: crash.len() - from,
        matched: crash.len() - from - skipped.len(),
        missed: crash
            .iter()
            .filter(|f| !names.contains(&f.as_str()) || skipped.contains(f))
            .cloned()
            .collect(),
        extra: names
            .iter()
            .filter(|n| !crash.iter().any(|f| f == *n))
            .map(|n| n.to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "rkdump: crashed kernel 6.1.0-57-cloud-amd64
rkdump: report begin
crashed kernel: 6.1.0-57-cloud-amd64
panic: sysrq triggered crash
cpu 1 (crashing): pid 1 comm init (printk CPU: line)
  rip ffffffffb036475a __crash_kexec+0x11a/0x130
     rsp ffffd246c0013b68    rbp ffffd246c0013c98    rax 0000000000000000    rbx ffffd246c0013b68
cpu 0: pid 0 comm swapper/0 (pid 0 is the idle task)
  rip ffffffffb0c17a0b native_safe_halt+0xb/0x10
call trace (cpu 1, stack scan of 952 bytes: return addresses preceded by a call):
  [<ffffffffb036475a>] __crash_kexec+0x11a/0x130
  [<ffffffffb08a8a06>] sysrq_handle_crash+0x16/0x20
log: last 2 of 50 printk lines asked for:
[    7.915141] sysrq: Trigger a crash
[    7.916677] Kernel panic - not syncing: sysrq triggered crash
rkdump: error: report: something
rkdump: report end ms=12
rkdump: pci ...";

    #[test]
    fn parses_the_printed_report() {
        let p = printed(CONSOLE.lines()).unwrap();
        assert_eq!(p.ms, Some(12));
        assert_eq!(p.line_after("panic: "), Some("sysrq triggered crash"));
        assert_eq!(
            p.log(),
            [
                "[    7.915141] sysrq: Trigger a crash",
                "[    7.916677] Kernel panic - not syncing: sysrq triggered crash"
            ]
        );
        let cpus = p.cpus();
        assert_eq!(cpus.len(), 2);
        assert_eq!((cpus[0].0, cpus[0].1), (1, 1));
        assert_eq!(
            cpus[0].2[..3],
            [
                ("rip".to_string(), 0xffffffffb036475a),
                ("rsp".to_string(), 0xffffd246c0013b68),
                ("rbp".to_string(), 0xffffd246c0013c98)
            ]
        );
        assert_eq!((cpus[1].0, cpus[1].1, cpus[1].2.len()), (0, 0, 1));
    }

    /// `crash` 8.0.2 `bt -a` and `p current_task:N` on the kdump-zlib e2e vmcore of
    /// 2026-12-02 (Debian 6.1.0-57-cloud-amd64, 2 vCPUs, sysrq-c from init on CPU 0 while
    /// CPU 1 was switching between two `dd` tasks); the CPU 2 line is from the dump-nvme run
    /// (an idle CPU: crash names the symbol after the value).
    const CRASH_BT: &str = r#"
bt: invalid structure member offset: mm_struct_mmap
    FILE: memory.c  LINE: 4007  FUNCTION: vm_area_dump()

PID: 1        TASK: ffff8e9dc11fe000  CPU: 0    COMMAND: "init"
 #0 [ffffd4f240013a08] machine_kexec at ffffffffb3e6c62f
 #1 [ffffd4f240013a60] __crash_kexec at ffffffffb3f646b7
 #2 [ffffd4f240013b20] panic at ffffffffb47cd06e
 #3 [ffffd4f240013ba0] sysrq_handle_crash at ffffffffb44a8a06
 #4 [ffffd4f240013ba8] __handle_sysrq.cold at ffffffffb47f4ac9
 #5 [ffffd4f240013bd8] write_sysrq_trigger at ffffffffb44a9354
 #6 [ffffd4f240013be8] proc_reg_write at ffffffffb41eacb6
 #7 [ffffd4f240013c00] vfs_write at ffffffffb414d497
 #8 [ffffd4f240013c98] ksys_write at ffffffffb414d95b
 #9 [ffffd4f240013cd0] do_syscall_64 at ffffffffb4803f4d
#10 [ffffd4f240013d78] ptep_set_access_flags at ffffffffb3e7dd1e
#11 [ffffd4f240013d88] wp_page_reuse at ffffffffb40b9ab0
#12 [ffffd4f240013da0] do_wp_page at ffffffffb40bc863
#13 [ffffd4f240013dd8] __handle_mm_fault at ffffffffb40c210b
#14 [ffffd4f240013ea8] handle_mm_fault at ffffffffb40c280b
#15 [ffffd4f240013ee0] do_user_addr_fault at ffffffffb3e7bbf0
#16 [ffffd4f240013f28] exit_to_user_mode_prepare at ffffffffb3f37614
#17 [ffffd4f240013f50] entry_SYSCALL_64_after_hwframe at ffffffffb4a00126
    RIP: 000000000047b7a0  RSP: 00007ffc2f206f68  RFLAGS: 00000202
    ORIG_RAX: 0000000000000001  CS: 0033  SS: 002b
PID: 120      TASK: ffff8e9dc383e000  CPU: 1    COMMAND: "dd"
 #0 [fffffe0000048ea8] crash_nmi_callback at ffffffffb3e6058c
 #1 [fffffe0000048eb0] default_do_nmi at ffffffffb4805b20
 #2 [fffffe0000048ed0] exc_nmi at ffffffffb4805d6e
 #3 [fffffe0000048ef0] end_repeat_nmi at ffffffffb4a01680
    [exception RIP: psi_group_change+237]
--- <NMI exception stack> ---
 #4 [ffffd4f24039bab0] psi_group_change at ffffffffb3ef8ffd
per_cpu(current_task, 0) = $1 = (struct task_struct *) 0xffff8e9dc11fe000
per_cpu(current_task, 1) = $2 = (struct task_struct *) 0xffff8e9dc383b000
per_cpu(current_task, 2) = $3 = (struct task_struct *) 0xffffffff9281aa40 <init_task>
"#;

    /// The console report's trace of the same crash.
    const REPORT_TRACE: [&str; 19] = [
        "  [<ffffffffb3f6475a>] __crash_kexec+0x11a/0x130",
        "  [<ffffffffb47cd06e>] panic+0x13d/0x2f4",
        "  [<ffffffffb47d2d01>] _printk+0x68/0x83",
        "  [<ffffffffb44a8a06>] sysrq_handle_crash+0x16/0x20",
        "  [<ffffffffb47f4ac9>] __handle_sysrq.cold+0x44/0x11c",
        "  [<ffffffffb44a9354>] write_sysrq_trigger+0x24/0x40",
        "  [<ffffffffb41eacb6>] proc_reg_write+0x56/0xa0",
        "  [<ffffffffb414d497>] vfs_write+0xc7/0x3f0",
        "  [<ffffffffb414d95b>] ksys_write+0x6b/0xf0",
        "  [<ffffffffb4803f4d>] do_syscall_64+0x5d/0x90",
        "  [<ffffffffb3e7dd1e>] ptep_set_access_flags+0x2e/0x40",
        "  [<ffffffffb40b9ab0>] wp_page_reuse+0x60/0x70",
        "  [<ffffffffb40bc863>] do_wp_page+0x1e3/0x380",
        "  [<ffffffffb480719e>] syscall_exit_to_user_mode+0x1e/0x40",
        "  [<ffffffffb40c210b>] __handle_mm_fault+0x97b/0xfa0",
        "  [<ffffffffb40c280b>] handle_mm_fault+0xdb/0x2d0",
        "  [<ffffffffb3e7bbf0>] do_user_addr_fault+0x1b0/0x560",
        "  [<ffffffffb3f37614>] exit_to_user_mode_prepare+0x44/0x240",
        "  [<ffffffffb4a00126>] entry_SYSCALL_64_after_hwframe+0x6e/0xd8",
    ];

    #[test]
    fn the_captured_trace_agrees_with_crash_bt() {
        let bts = crash_bts(CRASH_BT);
        assert_eq!(bts.len(), 2);
        assert_eq!(
            (bts[0].pid, bts[0].cpu, bts[0].command.as_str()),
            (1, 0, "init")
        );
        assert_eq!(bts[0].frames.len(), 18);
        assert_eq!(
            (bts[1].pid, bts[1].cpu, bts[1].command.as_str()),
            (120, 1, "dd")
        );
        assert_eq!(
            bts[1].frames.last().map(String::as_str),
            Some("psi_group_change")
        );
        let s = compare_trace(&REPORT_TRACE, &bts[0].frames, "sysrq_handle_crash", 0).unwrap();
        assert_eq!((s.reference, s.matched), (15, 15));
        assert_eq!(s.missed, ["machine_kexec"]);
        assert_eq!(s.extra, ["_printk", "syscall_exit_to_user_mode"]);
    }

    #[test]
    fn a_missing_or_reordered_frame_fails_the_comparison() {
        let bts = crash_bts(CRASH_BT);
        let without: Vec<&str> = REPORT_TRACE
            .iter()
            .copied()
            .filter(|l| !l.contains("] vfs_write+"))
            .collect();
        let e = compare_trace(&without, &bts[0].frames, "sysrq_handle_crash", 0).unwrap_err();
        assert!(e.starts_with("crash frames [\"vfs_write\"] "), "{e}");
        // The exit case's allowance takes exactly that many missing frames.
        let s = compare_trace(&without, &bts[0].frames, "sysrq_handle_crash", 1).unwrap();
        assert_eq!((s.reference, s.matched), (15, 14));
        assert!(s.missed.contains(&"vfs_write".to_string()));
        let mut swapped = REPORT_TRACE.to_vec();
        swapped.swap(7, 8);
        let e = compare_trace(&swapped, &bts[0].frames, "sysrq_handle_crash", 0).unwrap_err();
        assert!(e.starts_with("crash frames [\"ksys_write\"] "), "{e}");
        assert!(compare_trace(&REPORT_TRACE, &bts[1].frames, "sysrq_handle_crash", 0).is_err());
    }

    /// The unwinder's notes about a CPU caught mid-switch are crash's limits; a read error is not.
    #[test]
    fn crash_unwind_notes_are_tolerated_read_errors_are_not() {
        let out = "\
--- <NMI exception stack> ---
 #4 [ffffd03ec043baf8] __schedule at ffffffff90810fff
bt: cannot transition from exception stack to current process stack:
bt: invalid structure member offset: mm_struct_mmap
";
        assert!(crash_problems(out).is_empty());
        let bad = format!("{out}bt: read error: kernel virtual address: ffffd03ec043baf8\n");
        assert_eq!(
            crash_problems(&bad),
            ["bt: read error: kernel virtual address: ffffd03ec043baf8"]
        );
    }

    #[test]
    fn tasks_compare_with_crash_current_task() {
        assert_eq!(
            current_tasks(CRASH_BT),
            [
                (0, 0xffff8e9dc11fe000),
                (1, 0xffff8e9dc383b000),
                (2, 0xffffffff9281aa40)
            ]
        );
        let fields = task_fields(
            "  pid = 1,\n  comm = \"init\\000\\000\",\n  pid = 144,\n  comm = \"dd\\000\",\n",
        );
        assert_eq!(fields, [(1, "init".to_string()), (144, "dd".to_string())]);
        let crash: Vec<CrashBt> = [(0, 1, "init"), (1, 144, "dd")]
            .into_iter()
            .map(|(cpu, pid, c)| CrashBt {
                pid,
                cpu,
                command: c.to_string(),
                frames: Vec::new(),
            })
            .collect();
        let console = "rkdump: report begin\n\
            cpu 0 (crashing): pid 1 comm init (printk CPU: line)\n\
            cpu 1: pid 144 comm dd (task_struct, pid checked)\n\
            rkdump: report end ms=3";
        let p = printed(console.lines()).unwrap();
        assert!(
            compare_tasks(&p.tasks(), &crash)
                .unwrap()
                .contains("1 read from the task")
        );
        // A wrong name, a wrong pid, no name.
        for bad in [
            "pid 144 comm sh (task_struct",
            "pid 120 comm dd (task_struct",
            "pid 144 comm ? (task not read",
        ] {
            let text = console.replace("pid 144 comm dd (task_struct", bad);
            let p = printed(text.lines()).unwrap();
            assert!(compare_tasks(&p.tasks(), &crash).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_end_line_is_no_report() {
        assert!(printed(["rkdump: report begin", "panic: x"]).is_none());
        assert!(printed(["rkdump: dump start"]).is_none());
    }
}
