//! Which task each CPU was running when the kernel crashed, and its command name.
//!
//! The per-CPU pointer to the running task is `current_task` (a per-CPU variable up to 6.1;
//! the first field of the per-CPU `pcpu_hot` from 6.2), at `__per_cpu_offset[cpu]` plus the
//! symbol's value (x86_64 per-CPU symbols are offsets into the per-CPU area). The offset of
//! `comm` in `struct task_struct` is not published, so it is found where `init_task` (the boot
//! CPU's idle task) holds `"swapper/0"`. The offset of `pid` is found the same way: the one
//! place where `init_task` holds pid and tgid 0, the crashing task its pid twice and the other
//! CPUs' tasks their notes' pids; with it each CPU's task is checked against its note's
//! `pr_pid`.
//!
//! Every read is untrusted and bounded: one window of `init_task`, then a few words per CPU.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::kallsyms::Kallsyms;
use super::virt::VirtMemory;
use super::{read_u64, read_vec_virt};

/// Bytes of `init_task` searched for the command name (`struct task_struct` is about 9.5 KiB
/// on Debian's 6.1; the name sits in its last third).
pub const TASK_SEARCH: usize = 16 << 10;
/// `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// Highest CPU number whose task is read.
pub const MAX_CPUS: usize = 512;
/// The boot CPU's idle task name.
const INIT_COMM: &[u8] = b"swapper/0\0";

/// Where the running tasks are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLayout {
    /// `__per_cpu_offset` (an array of `unsigned long` per CPU number).
    pub per_cpu_offset: u64,
    /// Value of `current_task` or `pcpu_hot` (per-CPU offset of the task pointer).
    pub current: u64,
    /// Offset of `comm` in `struct task_struct`.
    pub comm: u64,
    /// Offset of `pid` in `struct task_struct`, when it could be told apart.
    pub pid: Option<u64>,
    /// `init_task`'s bytes searched (kept to find `pid` later).
    init: Vec<u8>,
}

/// Symbols this module needs, for one pass over the kallsyms names.
pub const SYMBOLS: [&str; 4] = ["__per_cpu_offset", "current_task", "pcpu_hot", "init_task"];

impl TaskLayout {
    /// Builds the layout from the addresses of [`SYMBOLS`] (in that order), as returned by
    /// [`Kallsyms::addresses_of`].
    pub fn locate(mem: &mut impl VirtMemory, addrs: &[Option<u64>]) -> Result<Self, String> {
        let get = |i: usize| addrs.get(i).copied().flatten();
        let per_cpu_offset = get(0).ok_or("kallsyms has no __per_cpu_offset")?;
        let current = get(1)
            .or(get(2))
            .ok_or("kallsyms has neither current_task nor pcpu_hot")?;
        let init_task = get(3).ok_or("kallsyms has no init_task")?;
        let init = read_vec_virt(mem, init_task, TASK_SEARCH)
            .map_err(|e| format!("init_task at {init_task:#x}: {e}"))?;
        let comm = find_unique(&init, INIT_COMM)
            .ok_or("init_task holds \"swapper/0\" not exactly once")? as u64;
        Ok(TaskLayout {
            per_cpu_offset,
            current,
            comm,
            pid: None,
            init,
        })
    }

    /// The task running on CPU `cpu`.
    pub fn current_task(&self, mem: &mut impl VirtMemory, cpu: usize) -> Result<u64, String> {
        if cpu >= MAX_CPUS {
            return Err(format!("cpu {cpu}: beyond the {MAX_CPUS} CPUs read"));
        }
        let slot = self.per_cpu_offset.wrapping_add(8 * cpu as u64);
        let base = read_u64(mem, slot).map_err(|e| format!("__per_cpu_offset[{cpu}]: {e}"))?;
        let at = base.wrapping_add(self.current);
        let task = read_u64(mem, at).map_err(|e| format!("cpu {cpu} current_task: {e}"))?;
        if task < (1 << 63) || task & 7 != 0 {
            return Err(format!(
                "cpu {cpu}: current task {task:#x} is not a kernel pointer"
            ));
        }
        Ok(task)
    }

    /// The command name of the task at `task`: printable, NUL-terminated within
    /// [`COMM_LEN`] bytes.
    pub fn comm(&self, mem: &mut impl VirtMemory, task: u64) -> Result<String, String> {
        let b = read_vec_virt(mem, task.wrapping_add(self.comm), COMM_LEN)
            .map_err(|e| format!("task {task:#x} comm: {e}"))?;
        let end = b
            .iter()
            .position(|&c| c == 0)
            .ok_or(format!("task {task:#x}: comm is not NUL-terminated"))?;
        let name = &b[..end];
        if name.is_empty() || !name.iter().all(|c| (0x20..0x7f).contains(c)) {
            return Err(format!("task {task:#x}: comm {name:?} is not a name"));
        }
        Ok(String::from_utf8_lossy(name).into_owned())
    }

    /// Finds the `pid` offset. `crashing` is a task known to run its pid (not 0): candidates are
    /// the 4-aligned places before `comm` where it holds `pid, pid` (pid and tgid of a process's
    /// main thread) and `init_task` holds `0, 0`. When several remain, the other CPUs' tasks
    /// (`others`: task and its note's pid) keep those where each holds its pid. `None` unless
    /// exactly one place is left.
    pub fn learn_pid(
        &mut self,
        mem: &mut impl VirtMemory,
        crashing: (u64, i32),
        others: &[(u64, i32)],
    ) -> Option<u64> {
        let (task, pid) = crashing;
        if pid <= 0 {
            return None;
        }
        let t = read_vec_virt(mem, task, self.comm as usize).ok()?;
        let mut want = [0u8; 8];
        want[..4].copy_from_slice(&pid.to_le_bytes());
        want[4..].copy_from_slice(&pid.to_le_bytes());
        let mut candidates: Vec<usize> = (0..t.len().saturating_sub(7))
            .step_by(4)
            .filter(|&off| {
                t[off..off + 8] == want && self.init.get(off..off + 8) == Some(&[0u8; 8][..])
            })
            .collect();
        for &(other, other_pid) in others.iter().take(MAX_CPUS) {
            if candidates.len() <= 1 {
                break;
            }
            let Ok(o) = read_vec_virt(mem, other, self.comm as usize) else {
                continue;
            };
            candidates.retain(|&off| o.get(off..off + 4) == Some(&other_pid.to_le_bytes()[..]));
        }
        self.pid = match candidates[..] {
            [one] => Some(one as u64),
            _ => None,
        };
        self.pid
    }

    /// The pid stored in the task at `task` (needs [`Self::learn_pid`]).
    pub fn pid(&self, mem: &mut impl VirtMemory, task: u64) -> Option<Result<i32, String>> {
        let off = self.pid?;
        let mut b = [0u8; 4];
        Some(
            mem.read_virt(task.wrapping_add(off), &mut b)
                .map(|()| i32::from_le_bytes(b))
                .map_err(|e| format!("task {task:#x} pid: {e}")),
        )
    }
}

fn find_unique(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let mut it = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i);
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

/// The symbols' addresses for [`TaskLayout::locate`]: one pass over the kallsyms names.
pub fn symbols(mem: &mut impl VirtMemory, k: &Kallsyms) -> Result<Vec<Option<u64>>, String> {
    k.addresses_of(mem, &SYMBOLS).map_err(|e| format!("{e}"))
}

/// An empty result for each symbol (no kallsyms).
pub fn no_symbols() -> Vec<Option<u64>> {
    vec![None; SYMBOLS.len()]
}
