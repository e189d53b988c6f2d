//! xtask: the one place that knows how to build, package, boot and test rkdump.
//!
//! Subcommands: `build`, `run`, `test`, `e2e`, `demo`, `bench`. Each QEMU run has a timeout.

mod bench;
mod build;
mod demo;
mod e2e;
mod image;
mod run;
mod test;
mod verify;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: cargo xtask <build|run|test|e2e|demo|bench> [options]");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "bench" => bench::main(rest),
        "build" => build::main(rest),
        "demo" => demo::main(rest),
        "e2e" => e2e::main(rest),
        "run" => run::main(rest),
        "test" => test::main(rest),
        other => Err(format!("unknown xtask command `{other}`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {cmd}: error: {e}");
            ExitCode::FAILURE
        }
    }
}
