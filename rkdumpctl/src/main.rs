//! rkdumpctl: the Linux-side rkdump tool. This file owns the command line; each command lives in its own
//! module (docs/interface.md#rkdumpctl).

mod filetarget;
mod inspect;
mod load;
mod prepare;
mod recv;
mod save;
mod snapshot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Linux-side companion of the rkdump capture kernel.
#[derive(Debug, Parser)]
#[command(name = "rkdumpctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a serial dump stream into an ELF vmcore file, checking every frame.
    Recv(recv::Args),
    /// Print the notes (CPUs, VMCOREINFO keys), PT_LOAD ranges and sizes of a vmcore.
    Inspect(inspect::Args),
    /// Write an rkdump dump label so rkdump may write there (nothing else is ever written);
    /// refuses a disk holding a dump not yet saved, a partition table or a file system unless --force.
    Prepare(prepare::Args),
    /// Extract the dump rkdump wrote into an ELF vmcore file (refuses incomplete dumps), then mark
    /// it saved.
    Save(save::Args),
    /// Save the PCI configuration of the running system (from sysfs) as a config blob.
    Snapshot(snapshot::Args),
    /// Snapshot, then load rkdump with `kexec -p`: the blob as initrd, `reset_devices` on the command line.
    Load(load::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Recv(args) => ("recv", recv::run(&args).map_err(|e| e.to_string())),
        Command::Inspect(args) => ("inspect", inspect::run(&args).map_err(|e| e.to_string())),
        Command::Snapshot(args) => ("snapshot", snapshot::run(&args).map_err(|e| e.to_string())),
        Command::Load(args) => ("load", load::run(&args).map_err(|e| e.to_string())),
        Command::Prepare(args) => ("prepare", prepare::run(&args)),
        Command::Save(args) => ("save", save::run(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkdumpctl {name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}
