//! rkdumpctl: the Linux-side rkdump tool. This file owns the command line; each command lives in its own
//! module (docs/interface.md#rkdumpctl).

mod conf;
mod dumpdisk;
mod estimate;
mod filetarget;
mod inspect;
mod install;
mod load;
mod lockdown;
mod prepare;
mod progress;
mod recv;
mod save;
mod service;
mod snapshot;
mod state;
mod status;

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
    /// Install the capture kernel under /usr/lib/rkdump/, the systemd unit rkdump.service, the
    /// hotplug udev rule and a commented /etc/rkdump.conf.
    Install(install::InstallArgs),
    /// Remove what `install` put there (keeps /etc/rkdump.conf and saved dumps).
    Uninstall(install::UninstallArgs),
    /// What rkdump.service runs: save a pending dump to /var/crash/<UTC time>-<release>/, prune,
    /// then snapshot and load; ends by saying armed or not (exit 0 only when armed).
    Boot(service::BootArgs),
    /// New snapshot and load (what the hotplug udev rule runs); records the reason.
    Reload(service::ReloadArgs),
    /// Whether the machine is armed, and why not; exit 0 only when armed.
    Status(status::Args),
    /// The expected dump size at the configured level and format.
    Estimate(estimate::Args),
}

/// A failed `load`, with the lockdown / signature explanation when that is the cause.
fn explain_load(args: &load::Args, e: load::Error) -> String {
    let mut msg = e.to_string();
    if let load::Error::Kexec { .. } = e {
        let kernel = args
            .kernel
            .as_deref()
            .unwrap_or(std::path::Path::new(load::DEFAULT_KERNEL));
        if let Some(h) = lockdown::hint(&args.sources.sysfs_root, &msg, kernel) {
            msg.push('\n');
            msg.push_str(&h);
        }
    }
    msg
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        Command::Recv(args) => ("recv", recv::run(&args).map_err(|e| e.to_string())),
        Command::Inspect(args) => ("inspect", inspect::run(&args).map_err(|e| e.to_string())),
        Command::Snapshot(args) => ("snapshot", snapshot::run(&args).map_err(|e| e.to_string())),
        Command::Load(args) => ("load", load::run(&args).map_err(|e| explain_load(&args, e))),
        Command::Prepare(args) => ("prepare", prepare::run(&args)),
        Command::Save(args) => ("save", save::run(&args)),
        Command::Boot(args) => ("boot", service::run_boot(&args)),
        Command::Reload(args) => ("reload", service::run_reload(&args)),
        Command::Status(args) => ("status", status::run(&args)),
        Command::Estimate(args) => ("estimate", estimate::run(&args)),
        Command::Install(args) => (
            "install",
            install::run_install(&args).map_err(|e| e.to_string()),
        ),
        Command::Uninstall(args) => (
            "uninstall",
            install::run_uninstall(&args).map_err(|e| e.to_string()),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkdumpctl {name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}
