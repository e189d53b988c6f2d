//! xtask: the one place that knows how to build, package, boot and test rkdump.
//!
//! Subcommands (each with `--help`): `build`, `run`, `test`, `e2e`, `demo`, `bench`,
//! `fuzz`. The QEMU
//! runner, machine builder, dump verifier and host tools they share live in `rkdump-tests`
//! (`tests/src`); each QEMU run there has a timeout.

mod bench;
mod build;
mod demo;
mod e2e;
mod frames;
mod fuzz;
mod image;
mod pe;
mod run;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build, run, test and benchmark rkdump.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Cross-build the kernel and write target/rkdump/bzImage and target/rkdump/rkdump.elf.
    Build(build::Args),
    /// Boot rkdump.elf in QEMU with a command line, console on this terminal.
    Run(run::Args),
    /// Lints, host unit tests, the kernel build, every QEMU scenario, then the e2e cases.
    Test(test::Args),
    /// End-to-end: Linux first kernel, `kexec -p`, sysrq crash, capture kernel checked.
    E2e(e2e::cli::Args),
    /// The main job end to end, with `rkdumpctl inspect` and the crashed kernel's log.
    Demo(demo::Args),
    /// rkdump vs Linux kdump vs the dump disk's raw limit.
    Bench(bench::Args),
    /// Coverage-guided fuzzing of every parser of foreign data (cargo-fuzz, nightly).
    Fuzz(fuzz::Args),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Build(_) => "build",
            Command::Run(_) => "run",
            Command::Test(_) => "test",
            Command::E2e(_) => "e2e",
            Command::Demo(_) => "demo",
            Command::Bench(_) => "bench",
            Command::Fuzz(_) => "fuzz",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli.command.name();
    let result = match cli.command {
        Command::Build(a) => build::main(a),
        Command::Run(a) => run::main(a),
        Command::Test(a) => test::main(a),
        Command::E2e(a) => e2e::cli::main(a),
        Command::Demo(a) => demo::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Fuzz(a) => fuzz::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn documented_flags_parse() {
        for argv in [
            &["x", "build", "--debug"][..],
            &["x", "run", "--append", "a b", "--kvm", "--", "-s"],
            &[
                "x",
                "test",
                "--quick",
                "--slow",
                "--scenario",
                "poweroff",
                "--scenario",
                "reboot",
            ],
            &["x", "e2e", "--case", "kf-low,kl-low", "--case", "dump-nvme"],
            &["x", "e2e", "check-marker", "vmcore", "console.log"],
            &[
                "x",
                "bench",
                "--slow",
                "--quick",
                "--sparse",
                "--disk-dir",
                "/d",
            ],
            &["x", "demo", "--case", "dump-nvme"],
            &["x", "fuzz", "--time", "5", "--target", "cmdline", "--keep"],
        ] {
            Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["x", "test", "--nope"]).is_err());
    }
}
