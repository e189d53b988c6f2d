//! `cargo xtask demo`: the main job, end to end. A Debian Linux first kernel boots in QEMU,
//! fills memory with marker pages, keeps a virtio-blk disk busy, loads rkdump with
//! `kexec -p` and crashes (sysrq). rkdump resets the disk, writes the vmcore to it, and powers
//! off; the host extracts the dump with `rkdumpctl save`, verifies it, and shows what a kdump
//! user looks at first: `rkdumpctl inspect` and the crashed kernel's last log lines.

use std::process::Command;

use crate::e2e::{self, CaptureKind, Case};

/// `cargo xtask demo [--case dump-nvme]`
pub fn main(args: &[String]) -> Result<(), String> {
    let mut name = "dump-virtio".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--case" => name = it.next().ok_or("--case needs a name")?.clone(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let artefacts = crate::build::build(false)?;
    let h = e2e::Harness::setup(&artefacts.bzimage, None, true, false)?;
    let case =
        Case::standard(&name, CaptureKind::Rkdump).ok_or_else(|| format!("no case {name}"))?;
    let r = e2e::run_case(&case, &h)?;
    println!("{}", r.report());
    if !r.passed() {
        return Err(format!(
            "the demo run failed; everything is in {}",
            r.dir.display()
        ));
    }
    let vmcore = r.dir.join("vmcore");
    println!("\n===== rkdumpctl inspect {} =====", vmcore.display());
    let ctl = crate::build::rkdumpctl()?;
    let out = Command::new(&ctl)
        .arg("inspect")
        .arg(&vmcore)
        .output()
        .map_err(|e| format!("rkdumpctl inspect: {e}"))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        return Err(format!(
            "rkdumpctl inspect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let dmesg =
        std::fs::read_to_string(r.dir.join("dmesg.txt")).map_err(|e| format!("dmesg.txt: {e}"))?;
    println!("\n===== the crashed kernel's last log lines (makedumpfile --dump-dmesg) =====");
    let lines: Vec<&str> = dmesg.lines().collect();
    for l in &lines[lines.len().saturating_sub(20)..] {
        println!("{l}");
    }
    let rk = r.log.rkdump();
    println!("\n===== timing (host clock) =====");
    if let (Some(sysrq), Some(entered)) = (r.timings.sysrq, r.timings.capture_entered) {
        println!(
            "sysrq -> rkdump entered: {:.3} s",
            (entered - sysrq).as_secs_f64()
        );
    }
    if let (Some(sysrq), Some((done, args))) = (r.timings.sysrq, rk.dump_complete.as_ref()) {
        println!(
            "sysrq -> dump complete:  {:.3} s ({args})",
            (*done - sysrq).as_secs_f64()
        );
    }
    println!("everything from this run: {}", r.dir.display());
    Ok(())
}
