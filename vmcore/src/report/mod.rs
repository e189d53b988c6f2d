//! The crash report: why the crashed kernel died, read from its notes and its memory before
//! the dump is written (docs/interface.md#crash-report).
//!
//! [`build`] gathers a [`Report`] from the merged notes (registers, VMCOREINFO) and the old
//! kernel's virtual memory (printk ring buffer, kallsyms, the crashing CPU's stack); [`render`]
//! turns it into the text the console shows, the record stores and `rkdumpctl inspect` prints.
//! Everything read is untrusted: each failure becomes an error line in the report and the rest
//! carries on; every loop is bounded.
//!
//! - [`printk`]: the lockless printk ring buffer through VMCOREINFO's offsets;
//! - [`kallsyms`]: the kernel's symbol table, found in old memory by its structure;
//! - [`stack`]: the call trace by a stack scan (Debian's kernels have no frame pointers);
//! - [`task`]: each CPU's running task and its command name.

pub mod cache;
pub mod kallsyms;
pub mod printk;
pub mod stack;
pub mod task;
pub use crate::kernel::virt;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use crate::header::ElfCoreHeader;
use crate::kernel::{KernelInfo, OldVirt, Translator};
use crate::mem::OldMemory;
use crate::notes::{Notes, PrStatus};
use kallsyms::{Anchor, Kallsyms};
use virt::{VirtError, VirtMemory};

/// Default number of printk lines (`rkdump.report_lines=`).
pub const DEFAULT_LINES: usize = 50;
/// Most printk lines a report carries, whatever is asked.
pub const MAX_LINES: usize = 1000;
/// Largest rendered report kept (the record's report area and the console).
pub const MAX_TEXT: usize = 64 << 10;
/// Frames shown in the call trace (the scan of a 16 KiB stack finds up to a few dozen, stale
/// return addresses included).
pub const MAX_FRAMES: usize = 48;
/// Frames kept in [`render_within`] when the whole report does not fit (the innermost ones).
pub const STORED_FRAMES: usize = 16;

fn read_u16(mem: &mut impl VirtMemory, va: u64) -> Result<u16, VirtError> {
    let mut b = [0u8; 2];
    mem.read_virt(va, &mut b)?;
    Ok(u16::from_le_bytes(b))
}

fn read_u64(mem: &mut impl VirtMemory, va: u64) -> Result<u64, VirtError> {
    let mut b = [0u8; 8];
    mem.read_virt(va, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_vec_virt(mem: &mut impl VirtMemory, va: u64, len: usize) -> Result<Vec<u8>, VirtError> {
    let mut v = alloc::vec![0u8; len];
    mem.read_virt(va, &mut v)?;
    Ok(v)
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// One CPU's saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// Position of its NT_PRSTATUS note among the non-empty ones (the kernel writes them in
    /// CPU order).
    pub index: usize,
    /// The note's registers and pid.
    pub regs: PrStatus,
    /// Command name and where it came from.
    pub comm: Option<(String, &'static str)>,
    /// Symbol of `rip`.
    pub rip_symbol: Option<String>,
}

/// The call trace of the crashing CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// Frames, innermost first: address and symbol.
    pub frames: Vec<(u64, String)>,
    /// Bytes of stack scanned.
    pub scanned: u64,
}

/// What the inputs to [`build`] are besides memory.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// The merged notes.
    pub notes: &'a Notes,
    /// Kernel image virtual range to search for kallsyms (the kernel-text PT_LOAD), if known.
    pub kernel_image: Option<(u64, u64)>,
    /// printk lines wanted.
    pub lines: usize,
    /// Asked during long searches (kallsyms by structure): `true` stops them. The kernel's
    /// time budget; `|| false` on the host.
    pub give_up: &'a dyn Fn() -> bool,
}

/// The crash report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// VMCOREINFO `OSRELEASE`.
    pub osrelease: Option<String>,
    /// VMCOREINFO `CRASHTIME` (seconds since the epoch).
    pub crash_time: Option<u64>,
    /// Non-empty NT_PRSTATUS notes.
    pub cpu_count: usize,
    /// Text after `Kernel panic - not syncing: `.
    pub panic: Option<String>,
    /// CPUs, the crashing one first.
    pub cpus: Vec<Cpu>,
    /// Whether the first entry of `cpus` is known to be the crashing CPU (from dump_stack's
    /// `CPU: n PID: p` line) rather than assumed.
    pub crashing_known: bool,
    /// Where kallsyms was found (its token index), or why not.
    pub symbols: Result<u64, String>,
    /// How the symbol table was located.
    pub symbols_how: &'static str,
    /// Call trace of the crashing CPU.
    pub trace: Option<Trace>,
    /// Last printk lines, oldest first.
    pub log: Vec<String>,
    /// printk lines asked for.
    pub lines_wanted: usize,
    /// Problems met; each is shown as an `rkdump: error:` line.
    pub errors: Vec<String>,
}

/// Pages the report keeps cached (256 KiB).
pub const CACHE_PAGES: usize = 64;

/// Builds the report. Never fails: what cannot be read is an entry in [`Report::errors`].
pub fn build(mem: &mut impl VirtMemory, input: Inputs<'_>) -> Report {
    let mut cached = cache::PageCache::new(mem, CACHE_PAGES);
    build_from(&mut cached, input)
}

fn build_from(mem: &mut impl VirtMemory, input: Inputs<'_>) -> Report {
    let mut r = Report {
        osrelease: None,
        crash_time: None,
        cpu_count: 0,
        panic: None,
        cpus: Vec::new(),
        crashing_known: false,
        symbols: Err(String::from("not searched")),
        symbols_how: "",
        trace: None,
        log: Vec::new(),
        lines_wanted: input.lines.min(MAX_LINES),
        errors: Vec::new(),
    };
    let info = input.notes.vmcoreinfo();
    if let Some(info) = &info {
        r.osrelease = info.osrelease().map(String::from);
        r.crash_time = info.crash_time();
    } else {
        r.errors.push(String::from(
            "no VMCOREINFO note: no release, log or symbols",
        ));
    }
    let mut cpus: Vec<Cpu> = input
        .notes
        .iter()
        .filter(|n| n.is_prstatus())
        .filter_map(|n| n.prstatus())
        .enumerate()
        .map(|(index, regs)| Cpu {
            index,
            regs,
            comm: None,
            rip_symbol: None,
        })
        .collect();
    r.cpu_count = cpus.len();

    // printk first: it names the crashing CPU.
    let mut tail = None;
    if let Some(info) = &info {
        match printk::Layout::from_vmcoreinfo(info) {
            Ok(layout) => {
                let t = printk::read_tail(mem, &layout, r.lines_wanted, 1024);
                r.errors.extend(t.errors.iter().map(|e| format!("{e}")));
                r.log = t.last_lines(r.lines_wanted);
                r.panic = t.panic.clone();
                tail = Some(t);
            }
            Err(e) => r.errors.push(format!("{e}")),
        }
    }
    // The crashing CPU: dump_stack's "CPU: n PID: p Comm: c" line, when a note has that pid.
    if let Some((cpu, pid, comm)) = tail.as_ref().and_then(|t| t.cpu_line.clone()) {
        let pos = cpus
            .iter()
            .position(|c| c.index == cpu as usize && i64::from(c.regs.pr_pid) == pid)
            .or_else(|| cpus.iter().position(|c| i64::from(c.regs.pr_pid) == pid));
        if let Some(p) = pos {
            let mut c = cpus.remove(p);
            c.comm = Some((comm, "printk CPU: line"));
            cpus.insert(0, c);
            r.crashing_known = true;
        }
    }
    for c in cpus.iter_mut().filter(|c| c.comm.is_none()) {
        if c.regs.pr_pid == 0 {
            c.comm = Some((format!("swapper/{}", c.index), "pid 0 is the idle task"));
        }
    }

    // Symbols.
    let anchor = info.as_ref().and_then(|i| {
        ["init_uts_ns", "swapper_pg_dir", "_stext"]
            .into_iter()
            .find_map(|name| {
                let key = format!("SYMBOL({name})");
                i.get(&key).and_then(parse_hex).map(|addr| (name, addr))
            })
    });
    let published = match (&info, anchor) {
        (Some(i), Some((name, addr))) => Kallsyms::from_vmcoreinfo(mem, i, Anchor { name, addr }),
        _ => Ok(None),
    };
    let syms = match (published, input.kernel_image, anchor) {
        (Ok(Some(k)), _, _) => {
            r.symbols = Ok(k.token_index_addr);
            r.symbols_how = "VMCOREINFO SYMBOL(kallsyms_*)";
            Some(k)
        }
        (Err(e), _, _) => {
            r.symbols = Err(format!("{e}"));
            r.errors.push(format!("{e}: no symbols"));
            None
        }
        (Ok(None), Some((start, end)), Some((name, addr))) => {
            r.symbols_how = "found by structure in the kernel image";
            match Kallsyms::find_within(mem, start, end, Anchor { name, addr }, input.give_up) {
                Ok(k) => {
                    r.symbols = Ok(k.token_index_addr);
                    Some(k)
                }
                Err(e) => {
                    r.symbols = Err(format!("{e}"));
                    r.errors.push(format!("{e}: no symbols"));
                    None
                }
            }
        }
        (Ok(None), None, _) => {
            r.symbols = Err(String::from("kernel image range unknown"));
            r.errors
                .push(String::from("kallsyms: no kernel-text PT_LOAD: no symbols"));
            None
        }
        (Ok(None), _, None) => {
            r.symbols = Err(String::from("no SYMBOL() anchor in VMCOREINFO"));
            r.errors.push(String::from(
                "kallsyms: VMCOREINFO names no symbol to check against: no symbols",
            ));
            None
        }
    };
    if let Some(k) = &syms {
        for c in &mut cpus {
            match k.lookup(mem, c.regs.rip()) {
                Ok(Some(s)) => c.rip_symbol = Some(format!("{s}")),
                Ok(None) => {}
                Err(e) => r.errors.push(format!("cpu {} rip: {e}", c.index)),
            }
        }
    }
    // One pass over the symbol names for the tasks and, when the caller knows no kernel-text
    // range (a kdump-compressed file has no program headers), the image's `_text`.._end`.
    let mut kernel_image = input.kernel_image;
    if let Some(k) = &syms {
        let mut names = alloc::vec::Vec::from(task::SYMBOLS);
        names.extend(["_text", "_end"]);
        match k.addresses_of(mem, &names) {
            Ok(addrs) => {
                if let (None, Some(Some(start)), Some(Some(end))) =
                    (kernel_image, addrs.get(4), addrs.get(5))
                    && start < end
                {
                    kernel_image = Some((*start, *end));
                }
                name_tasks(mem, &addrs, &mut cpus, r.crashing_known, &mut r.errors);
            }
            Err(e) => r.errors.push(format!("tasks: kallsyms names: {e}")),
        }
    }
    if let Some(first) = cpus.first() {
        let (trace, errs) = stack::scan(mem, syms.as_ref(), &first.regs, kernel_image);
        r.errors.extend(errs);
        r.trace = Some(trace);
    }
    r.cpus = cpus;
    r
}

/// Where each CPU's command name came from when it was read from its task.
pub const COMM_FROM_TASK: &str = "task_struct";
/// The same, when the task's pid was also checked against the note's.
pub const COMM_FROM_TASK_PID: &str = "task_struct, pid checked";

/// Names the task of each CPU from its `task_struct` ([`task`]). The crashing CPU's task must
/// carry the name printk gave it (when known), or no name is taken from task memory.
fn name_tasks(
    mem: &mut impl VirtMemory,
    addrs: &[Option<u64>],
    cpus: &mut [Cpu],
    crashing_known: bool,
    errors: &mut Vec<String>,
) {
    let mut layout = match task::TaskLayout::locate(mem, addrs) {
        Ok(l) => l,
        Err(e) => {
            errors.push(format!("tasks: {e}: command names not read"));
            return;
        }
    };
    if crashing_known && let Some(c) = cpus.first() {
        let printk = c.comm.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
        let got = layout
            .current_task(mem, c.index)
            .and_then(|t| Ok((t, layout.comm(mem, t)?)));
        match got {
            Ok((t, name)) if name == printk => {
                let others: Vec<(u64, i32)> = cpus[1..]
                    .iter()
                    .filter_map(|o| Some((layout.current_task(mem, o.index).ok()?, o.regs.pr_pid)))
                    .collect();
                layout.learn_pid(mem, (t, c.regs.pr_pid), &others);
            }
            Ok((_, name)) => {
                errors.push(format!(
                    "tasks: cpu {} runs {name:?} by its task_struct, printk says {printk:?}: command names not read",
                    c.index
                ));
                return;
            }
            Err(e) => {
                errors.push(format!("tasks: crashing {e}: command names not read"));
                return;
            }
        }
    }
    for (i, c) in cpus.iter_mut().enumerate() {
        let read = layout.current_task(mem, c.index).and_then(|t| {
            let name = layout.comm(mem, t)?;
            match layout.pid(mem, t) {
                None => Ok((name, COMM_FROM_TASK)),
                Some(Ok(pid)) if pid == c.regs.pr_pid => Ok((name, COMM_FROM_TASK_PID)),
                Some(Ok(pid)) => Err(format!(
                    "cpu {}: task {t:#x} has pid {pid}, the note {}",
                    c.index, c.regs.pr_pid
                )),
                Some(Err(e)) => Err(e),
            }
        });
        match read {
            Ok((name, how)) => {
                // printk's line stays the crashing CPU's source; it was checked equal above.
                if !(crashing_known && i == 0) {
                    c.comm = Some((name, how));
                }
            }
            Err(e) => errors.push(format!("tasks: {e}")),
        }
    }
}

/// Builds the report over the crashed kernel's physical memory: VMCOREINFO gives the page-table
/// root ([`crate::kernel::Translator`]), the kernel-text PT_LOAD of `header` bounds the kallsyms
/// search. The one entry point of the kernel (before the dump) and `rkdumpctl inspect` (on a
/// saved vmcore).
pub fn from_old_memory(
    mem: &mut dyn OldMemory,
    header: &ElfCoreHeader,
    notes: &Notes,
    lines: usize,
    give_up: &dyn Fn() -> bool,
) -> Report {
    let kernel_image = header
        .loads()
        .map(|(_, p)| p)
        .find(|p| crate::header::is_kernel_text(p))
        .map(|p| (p.p_vaddr, p.p_vaddr.saturating_add(p.p_memsz)));
    from_physical(mem, kernel_image, notes, lines, give_up)
}

/// [`from_old_memory`] for a dump without program headers (a kdump-compressed file): the
/// kernel-text range is `kernel_image` when known, else kallsyms' `_text`..`_end`, the range
/// Linux's kexec loaders put in the kernel-text PT_LOAD.
pub fn from_physical(
    mem: &mut dyn OldMemory,
    kernel_image: Option<(u64, u64)>,
    notes: &Notes,
    lines: usize,
    give_up: &dyn Fn() -> bool,
) -> Report {
    let input = Inputs {
        notes,
        kernel_image,
        lines,
        give_up,
    };
    let info = notes.vmcoreinfo().map(|v| KernelInfo::parse(&v));
    match info {
        Some(Ok(info)) => {
            let translator = Translator::new(&info);
            let mut virt = OldVirt::new(mem, &translator);
            build(&mut virt, input)
        }
        other => {
            // No translation: the parts from the notes alone.
            let mut r = build(&mut NoVirt, input);
            if let Some(Err(e)) = other {
                r.errors
                    .push(format!("VMCOREINFO unusable for address translation: {e}"));
            }
            r
        }
    }
}

/// Virtual memory that has nothing: for a report from the notes alone.
struct NoVirt;

impl VirtMemory for NoVirt {
    fn read_virt(&mut self, va: u64, _buf: &mut [u8]) -> Result<(), VirtError> {
        Err(VirtError::NotMapped { va })
    }
}

/// Seconds since the epoch as UTC (year, month, day, hour, minute, second): civil-from-days,
/// proleptic Gregorian, days since 1970-01-01. One place for every date rkdump's tools print.
pub fn civil_utc(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: u64) -> String {
    let (y, m, d, h, mi, s) = civil_utc(secs);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// [`render`] within `max` bytes (the record's report area): the trace is cut to
/// [`STORED_FRAMES`], then the oldest log lines are left out, then the text is cut.
pub fn render_within(r: &Report, max: usize) -> String {
    let full = render(r);
    if full.len() <= max {
        return full;
    }
    // The innermost frames say most; the outer ones are mostly stale return addresses.
    let mut fewer_frames = r.clone();
    if let Some(t) = &mut fewer_frames.trace {
        t.frames.truncate(STORED_FRAMES);
    }
    let r = &fewer_frames;
    // Fewer log lines make the text shorter: the most that fit, by bisection.
    let (mut lo, mut hi) = (0usize, r.log.len());
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let mut shorter = r.clone();
        shorter.log.drain(..r.log.len() - mid);
        let text = render(&shorter);
        if text.len() <= max {
            best = Some(text);
            lo = mid + 1;
        } else if mid == 0 {
            break;
        } else {
            hi = mid - 1;
        }
    }
    best.unwrap_or_else(|| {
        let mut cut = max;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        String::from(&full[..cut])
    })
}

/// The report body as text lines (without the `report begin` / `report end` lines), at most
/// [`MAX_TEXT`] bytes; problems appear as `rkdump: error: report: ...` lines.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "crashed kernel: {}",
        r.osrelease.as_deref().unwrap_or("unknown (no OSRELEASE)")
    );
    match r.crash_time {
        Some(t) => {
            let _ = writeln!(s, "crash time: {} ({t})", utc(t));
        }
        None => s.push_str("crash time: unknown\n"),
    }
    let _ = writeln!(s, "cpus: {} with saved registers", r.cpu_count);
    let _ = writeln!(
        s,
        "panic: {}",
        r.panic
            .as_deref()
            .unwrap_or("(no \"Kernel panic - not syncing\" line in the log read)")
    );
    match &r.symbols {
        Ok(at) => {
            let _ = writeln!(
                s,
                "symbols: kallsyms of the crashed kernel, {} (token index at {at:#x})",
                r.symbols_how
            );
        }
        Err(why) => {
            let _ = writeln!(s, "symbols: none ({why})");
        }
    }
    for (i, c) in r.cpus.iter().enumerate() {
        let role = match (i, r.crashing_known) {
            (0, true) => " (crashing)",
            (0, false) => " (first note; crashing CPU not identified)",
            _ => "",
        };
        let comm = c
            .comm
            .as_ref()
            .map_or(String::from("? (task not read)"), |(n, how)| {
                format!("{n} ({how})")
            });
        let _ = writeln!(
            s,
            "cpu {}{role}: pid {} comm {comm}",
            c.index, c.regs.pr_pid
        );
        let g = |name: &str| {
            crate::notes::PR_REG_NAMES
                .iter()
                .position(|n| *n == name)
                .map_or(0, |i| c.regs.pr_reg[i])
        };
        let _ = writeln!(
            s,
            "  rip {:016x} {}",
            g("rip"),
            c.rip_symbol.as_deref().unwrap_or("?")
        );
        let rows: [&[&str]; 5] = [
            &["rsp", "rbp", "rax", "rbx"],
            &["rcx", "rdx", "rsi", "rdi"],
            &["r8", "r9", "r10", "r11"],
            &["r12", "r13", "r14", "r15"],
            &["cs", "eflags", "ss", "orig_rax"],
        ];
        for row in rows {
            s.push(' ');
            for name in row {
                let _ = write!(s, " {name:>6} {:016x}", g(name));
            }
            s.push('\n');
        }
    }
    if let Some(t) = &r.trace {
        let _ = writeln!(
            s,
            "call trace (cpu {}, stack scan of {} bytes: return addresses preceded by a call):",
            r.cpus.first().map_or(0, |c| c.index),
            t.scanned
        );
        for (addr, sym) in &t.frames {
            let _ = writeln!(s, "  [<{addr:016x}>] {sym}");
        }
    }
    let _ = writeln!(
        s,
        "log: last {} of {} printk lines asked for:",
        r.log.len(),
        r.lines_wanted
    );
    for l in &r.log {
        s.push_str(l);
        s.push('\n');
    }
    for e in &r.errors {
        let _ = writeln!(s, "rkdump: error: report: {e}");
    }
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n(report truncated)\n");
    }
    s
}
