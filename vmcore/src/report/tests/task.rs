//! Each CPU's task from synthetic kernel memory laid out like Debian's 6.1: `__per_cpu_offset`,
//! per-CPU `current_task`, `init_task` with "swapper/0", and tasks with pid and comm.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::notes::PrStatus;
use crate::report::task::TaskLayout;
use crate::report::testing::FakeVirt;
use crate::report::{COMM_FROM_TASK_PID, Cpu, name_tasks};

const PER_CPU_OFFSET: u64 = 0xffff_ffff_a740_0000;
const CURRENT_TASK: u64 = 0x1fbc0;
const INIT_TASK: u64 = 0xffff_ffff_a741_0000;
const AREA: [u64; 2] = [0xffff_8c3f_bfa0_0000, 0xffff_8c3f_bfb0_0000];
const TASK_A: u64 = 0xffff_8c3f_8123_4000;
const IDLE1: u64 = 0xffff_8c3f_8055_8000;
const PID_OFF: usize = 0x5d0;
const COMM_OFF: usize = 0x9a8;
const TASK_SIZE: usize = 0x2600;

fn task(pid: i32, comm: &str) -> Vec<u8> {
    let mut t = vec![0x5au8; TASK_SIZE];
    t[PID_OFF..PID_OFF + 4].copy_from_slice(&pid.to_le_bytes());
    t[PID_OFF + 4..PID_OFF + 8].copy_from_slice(&pid.to_le_bytes());
    t[COMM_OFF..COMM_OFF + 16].fill(0);
    t[COMM_OFF..COMM_OFF + comm.len()].copy_from_slice(comm.as_bytes());
    t
}

/// Two CPUs: 0 runs pid 1234 "sh", 1 its idle task.
fn machine() -> FakeVirt {
    let mut m = FakeVirt::new();
    let mut offs = Vec::new();
    for a in AREA {
        offs.extend(a.to_le_bytes());
    }
    m.insert(PER_CPU_OFFSET, offs);
    m.insert(AREA[0] + CURRENT_TASK, TASK_A.to_le_bytes().to_vec());
    m.insert(AREA[1] + CURRENT_TASK, IDLE1.to_le_bytes().to_vec());
    let mut init = task(0, "swapper/0");
    init.resize(16 << 10, 0);
    m.insert(INIT_TASK, init);
    m.insert(TASK_A, task(1234, "sh"));
    m.insert(IDLE1, task(0, "swapper/1"));
    m
}

fn addrs() -> Vec<Option<u64>> {
    vec![
        Some(PER_CPU_OFFSET),
        Some(CURRENT_TASK),
        None,
        Some(INIT_TASK),
    ]
}

fn cpu(index: usize, pid: i32, comm: Option<&str>) -> Cpu {
    Cpu {
        index,
        regs: PrStatus {
            pr_pid: pid,
            pr_reg: [0; 27],
        },
        comm: comm.map(|c| (String::from(c), "printk CPU: line")),
        rip_symbol: None,
    }
}

#[test]
fn finds_comm_pid_and_each_cpus_task() {
    let mut m = machine();
    let mut l = TaskLayout::locate(&mut m, &addrs()).unwrap();
    assert_eq!(l.comm, COMM_OFF as u64);
    assert_eq!(l.current_task(&mut m, 0).unwrap(), TASK_A);
    assert_eq!(l.current_task(&mut m, 1).unwrap(), IDLE1);
    assert_eq!(l.comm(&mut m, IDLE1).unwrap(), "swapper/1");
    assert_eq!(
        l.learn_pid(&mut m, (TASK_A, 1234), &[]),
        Some(PID_OFF as u64)
    );
    assert_eq!(l.pid(&mut m, TASK_A), Some(Ok(1234)));
    // pcpu_hot (6.2+) when current_task is absent.
    let hot = vec![
        Some(PER_CPU_OFFSET),
        None,
        Some(CURRENT_TASK),
        Some(INIT_TASK),
    ];
    let l2 = TaskLayout::locate(&mut m, &hot).unwrap();
    assert_eq!(l2.current_task(&mut m, 1).unwrap(), IDLE1);
}

#[test]
fn every_cpu_named_from_its_task_with_pid_checked() {
    let mut m = machine();
    let mut cpus = vec![cpu(0, 1234, Some("sh")), cpu(1, 0, None)];
    let mut errors = Vec::new();
    name_tasks(&mut m, &addrs(), &mut cpus, true, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cpus[0].comm.as_ref().unwrap().1, "printk CPU: line");
    assert_eq!(
        cpus[1].comm,
        Some((String::from("swapper/1"), COMM_FROM_TASK_PID))
    );
}

#[test]
fn a_task_whose_pid_is_not_the_notes_is_not_named() {
    let mut m = machine();
    let mut cpus = vec![cpu(0, 1234, Some("sh")), cpu(1, 77, None)];
    let mut errors = Vec::new();
    name_tasks(&mut m, &addrs(), &mut cpus, true, &mut errors);
    assert_eq!(cpus[1].comm, None);
    assert!(
        errors.iter().any(|e| e.contains("has pid 0, the note 77")),
        "{errors:?}"
    );
}

#[test]
fn a_crashing_task_printk_disagrees_with_stops_the_naming() {
    let mut m = machine();
    let mut cpus = vec![cpu(0, 1234, Some("bash")), cpu(1, 0, None)];
    let mut errors = Vec::new();
    name_tasks(&mut m, &addrs(), &mut cpus, true, &mut errors);
    assert_eq!(cpus[1].comm, None);
    assert!(errors[0].contains("printk says \"bash\""), "{errors:?}");
}

#[test]
fn damaged_memory_gives_errors_not_names() {
    // No "swapper/0" in init_task.
    let mut m = machine();
    m.bytes_mut(INIT_TASK + COMM_OFF as u64, 1).unwrap()[0] = b'X';
    assert!(TaskLayout::locate(&mut m, &addrs()).is_err());
    // Twice.
    let mut m = machine();
    m.bytes_mut(INIT_TASK + 0x3000, 10)
        .unwrap()
        .copy_from_slice(b"swapper/0\0");
    assert!(TaskLayout::locate(&mut m, &addrs()).is_err());
    // Missing symbols.
    let mut m = machine();
    assert!(
        TaskLayout::locate(&mut m, &[None, Some(CURRENT_TASK), None, Some(INIT_TASK)]).is_err()
    );
    let l = TaskLayout::locate(&mut m, &addrs()).unwrap();
    // A task pointer that is not a kernel address; an unmapped per-CPU slot; a CPU beyond.
    m.bytes_mut(AREA[1] + CURRENT_TASK, 8)
        .unwrap()
        .copy_from_slice(&0x1234u64.to_le_bytes());
    assert!(l.current_task(&mut m, 1).is_err());
    assert!(l.current_task(&mut m, 2).is_err());
    assert!(l.current_task(&mut m, 100_000).is_err());
    // A name without its NUL, and one that is not text.
    m.bytes_mut(TASK_A + COMM_OFF as u64, 16)
        .unwrap()
        .fill(b'a');
    assert!(l.comm(&mut m, TASK_A).is_err());
    m.bytes_mut(TASK_A + COMM_OFF as u64, 2)
        .unwrap()
        .copy_from_slice(&[0x01, 0]);
    assert!(l.comm(&mut m, TASK_A).is_err());
}

#[test]
fn an_ambiguous_pid_offset_is_not_used() {
    let mut m = machine();
    // A second (1234, 1234) where init_task has zeros.
    m.bytes_mut(TASK_A + 0x100, 8)
        .unwrap()
        .copy_from_slice(&[0xd2, 4, 0, 0, 0xd2, 4, 0, 0]);
    m.bytes_mut(INIT_TASK + 0x100, 8).unwrap().fill(0);
    let mut l = TaskLayout::locate(&mut m, &addrs()).unwrap();
    assert_eq!(l.learn_pid(&mut m, (TASK_A, 1234), &[]), None);
    assert_eq!(l.pid(&mut m, TASK_A), None);
    // The other CPU's task tells them apart: its pid (0) is at the real offset only.
    m.bytes_mut(IDLE1 + 0x100, 4).unwrap().fill(0x5a);
    assert_eq!(
        l.learn_pid(&mut m, (TASK_A, 1234), &[(IDLE1, 0)]),
        Some(PID_OFF as u64)
    );
    // A task that holds its pid nowhere a candidate is leaves none.
    assert_eq!(l.learn_pid(&mut m, (TASK_A, 1234), &[(IDLE1, 77)]), None);
}

#[test]
fn pid_1_is_told_apart_by_the_other_cpus_task() {
    // The crashing task is init (pid 1): (1, 1) also sits in a refcount pair.
    let mut m = machine();
    m.bytes_mut(TASK_A, TASK_SIZE)
        .unwrap()
        .copy_from_slice(&task(1, "init"));
    m.bytes_mut(TASK_A + 0x40, 8)
        .unwrap()
        .copy_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0]);
    m.bytes_mut(INIT_TASK + 0x40, 8).unwrap().fill(0);
    m.bytes_mut(IDLE1, TASK_SIZE)
        .unwrap()
        .copy_from_slice(&task(148, "dd"));
    let mut cpus = vec![cpu(0, 1, Some("init")), cpu(1, 148, None)];
    let mut errors = Vec::new();
    name_tasks(&mut m, &addrs(), &mut cpus, true, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cpus[1].comm, Some((String::from("dd"), COMM_FROM_TASK_PID)));
}
