//! `cargo xtask run`: boots rkdump.elf in QEMU (q35, TCG unless `--kvm`) with the given command
//! line, console on this terminal.

use std::process::Command;

use crate::build;

/// `cargo xtask run [--append "ARGS"] [--kvm] [--debug] [--memory MiB] [-- extra qemu args]`
pub fn main(args: &[String]) -> Result<(), String> {
    let mut append = String::from("rkdump.action=poweroff");
    let mut kvm = false;
    let mut debug = false;
    let mut memory = "512".to_string();
    let mut extra = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--append" => append = it.next().ok_or("--append needs a value")?.clone(),
            "--kvm" => kvm = true,
            "--debug" => debug = true,
            "--memory" => memory = it.next().ok_or("--memory needs a value")?.clone(),
            "--" => extra.extend(it.by_ref().cloned()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let a = build::build(debug)?;
    let status = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35",
            "-accel",
            if kvm { "kvm" } else { "tcg,thread=multi" },
            "-cpu",
            "max",
        ])
        .args([
            "-m",
            &memory,
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .arg("-kernel")
        .arg(&a.elf)
        .args(["-append", &append])
        .args(&extra)
        .status()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    println!("qemu exited: {status}");
    Ok(())
}
