//! `cargo xtask demo`: the main job, end to end. A Debian Linux first kernel boots in QEMU,
//! fills memory with marker pages, keeps a virtio-blk disk busy, loads rkdump with
//! `kexec -p` and crashes (sysrq). rkdump resets the disk, writes the vmcore to it, and powers
//! off; the host extracts the dump with `rkdumpctl save`, verifies it, and shows what a kdump
//! user looks at first: `rkdumpctl inspect` and the crashed kernel's last log lines.

use crate::e2e::{self, CaptureKind, Case};

/// `cargo xtask demo` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The e2e case to run (a dump case).
    #[arg(long = "case", value_name = "NAME", default_value = "dump-virtio")]
    name: String,
}

/// `cargo xtask demo [--case dump-nvme]`
pub fn main(args: Args) -> Result<(), String> {
    let name = args.name;
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
    print!("{}", crate::build::rkdumpctl()?.inspect(&vmcore)?);
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
