//! The QEMU scenarios: [`list`] declares them as data, [`builder`] says what a scenario is (one
//! or more boots of `rkdump.elf` and their checks) and runs one: fabricate, prepare disks, boot
//! through [`crate::qemu`], require a defined end, then apply the checks in order. [`run`] runs
//! the selected ones and prints one verdict line each. A scenario passes only if every check
//! holds; failures carry the reason and the console tail.

pub mod builder;
pub mod list;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use builder::{Boot, Ctrl, Ctx, Disks, Scenario};
pub use list::all;

use crate::tools::Rkdumpctl;

/// Inputs shared by all scenarios.
#[derive(Clone, Debug)]
pub struct Env {
    /// The PVH image.
    pub elf: PathBuf,
    /// The bzImage.
    pub bzimage: PathBuf,
    /// Workspace target directory (artefacts go below `scenarios/`).
    pub target: PathBuf,
    /// The host tool, for `recv`/`save`/`prepare`.
    pub rkdumpctl: Rkdumpctl,
}

/// A scenario's verdict.
#[derive(Debug)]
pub struct Verdict {
    /// Scenario name.
    pub name: &'static str,
    /// `Ok` or the failure reason (with console tail).
    pub result: Result<(), String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs the named scenarios (all when `only` is empty) and returns verdicts; an unknown name is
/// a failed verdict, so a typo never passes silently.
pub fn run(env: &Env, only: &[String]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let known = all();
    for name in only {
        if !known.iter().any(|s| s.name == name) {
            println!("scenario {name} ... FAILED (no such scenario)");
            out.push(Verdict {
                name: "unknown",
                result: Err(format!("no scenario named {name}")),
                elapsed: Duration::ZERO,
            });
        }
    }
    for s in known {
        if !only.is_empty() && !only.iter().any(|o| o == s.name) {
            continue;
        }
        let start = Instant::now();
        let result = s.run(env);
        let v = Verdict {
            name: s.name,
            result,
            elapsed: start.elapsed(),
        };
        match &v.result {
            Ok(()) => println!(
                "scenario {} ... ok ({:.1} s)",
                v.name,
                v.elapsed.as_secs_f64()
            ),
            Err(e) => println!(
                "scenario {} ... FAILED ({:.1} s)\n{e}",
                v.name,
                v.elapsed.as_secs_f64()
            ),
        }
        out.push(v);
    }
    out
}
