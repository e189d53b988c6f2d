//! `cargo xtask run`: boots rkdump.elf in QEMU (q35, TCG unless `--kvm`) with the given command
//! line, console on this terminal.

use rkdump_tests::qemu::{Accel, Machine};

use crate::build;

/// `cargo xtask run` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// rkdump's command line.
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "rkdump.action=poweroff",
        allow_hyphen_values = true
    )]
    append: String,
    /// Use KVM instead of TCG.
    #[arg(long)]
    kvm: bool,
    /// Boot the debug build.
    #[arg(long)]
    debug: bool,
    /// Guest memory (QEMU's -m syntax; plain numbers are MiB).
    #[arg(long, value_name = "MiB", default_value = "512")]
    memory: String,
    /// Extra QEMU arguments, after `--`.
    #[arg(last = true, value_name = "QEMU ARGS")]
    extra: Vec<String>,
}

/// `cargo xtask run [--append "ARGS"] [--kvm] [--debug] [--memory MiB] [-- extra qemu args]`
pub fn main(args: Args) -> Result<(), String> {
    let a = build::build(args.debug)?;
    let accel = if args.kvm { Accel::Kvm } else { Accel::Tcg };
    let status = Machine::rkdump(&args.memory, accel)
        .kernel(&a.elf, &args.append)
        .args(args.extra)
        .run_interactive()?;
    println!("qemu exited: {status}");
    Ok(())
}
