//! `cargo xtask fuzz`: coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser of
//! foreign data, one target after the other for `--time` seconds each. Targets live in `fuzz/`
//! (outside the workspace: libFuzzer needs nightly and sanitizer flags), their checked-in seed
//! corpus in `fuzz/corpus/<target>/`; what a run finds goes to `target/fuzz/corpus/<target>/`
//! (`--keep` minimises it back into the checked-in corpus), crashes to `fuzz/artifacts/<target>/`.

mod seeds;

use std::path::Path;
use std::process::Command;

use crate::build::workspace_root;

/// Arguments of `cargo xtask fuzz`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Only these targets (repeatable; default: every target in fuzz/).
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Minimise what the run found into the checked-in corpus (fuzz/corpus/<target>/).
    #[arg(long)]
    keep: bool,
    /// Only (re)write the seed inputs made by this repository's builders, then stop.
    #[arg(long)]
    seeds: bool,
}

/// The nightly toolchain cargo-fuzz builds with; `rustup` installs it when missing.
const NIGHTLY: &str = "nightly";

/// `cargo +nightly …` through rustup's proxy, in `fuzz/`, without the outer build's flags.
fn nightly_cargo(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{NIGHTLY}")).current_dir(fuzz_dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key == "RUSTFLAGS" {
            cmd.env_remove(&*key);
        }
        if key == "RUSTUP_TOOLCHAIN" {
            cmd.env_remove(&*key);
        }
    }
    cmd
}

fn ensure_tools(fuzz_dir: &Path) -> Result<(), String> {
    let have_nightly = Command::new("rustup")
        .args(["run", NIGHTLY, "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_nightly {
        eprintln!("fuzz: installing the {NIGHTLY} toolchain (libFuzzer needs it)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let have_fuzz = nightly_cargo(fuzz_dir)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        eprintln!("fuzz: installing cargo-fuzz");
        run(nightly_cargo(fuzz_dir).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{cmd:?} failed: {status}"))
}

/// What one target's run ended with, from libFuzzer's last status line.
struct Outcome {
    target: String,
    passed: bool,
    summary: String,
}

/// libFuzzer's final `#N DONE cov: … corp: …` line, or its crash summary.
fn summarise(log: &str) -> String {
    let done = log
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("DONE"));
    let crash = log
        .lines()
        .find(|l| l.contains("panicked at") || l.starts_with("SUMMARY:"));
    match (crash, done) {
        (Some(c), _) => c.trim().to_string(),
        (None, Some(d)) => d.trim().to_string(),
        (None, None) => "no libFuzzer status line".into(),
    }
}

/// Runs `cargo xtask fuzz`.
pub fn main(args: Args) -> Result<(), String> {
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    if args.seeds {
        let n = seeds::write(&fuzz_dir.join("corpus"))?;
        println!("fuzz: wrote {n} seed inputs under fuzz/corpus/");
        return Ok(());
    }
    ensure_tools(&fuzz_dir)?;
    run(nightly_cargo(&fuzz_dir).args(["fuzz", "build"]))?;
    let listed = nightly_cargo(&fuzz_dir)
        .args(["fuzz", "list"])
        .output()
        .map_err(|e| format!("cargo fuzz list: {e}"))?;
    let all: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let targets = if args.targets.is_empty() {
        all.clone()
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                return Err(format!("no fuzz target {t:?} (have: {})", all.join(", ")));
            }
        }
        args.targets.clone()
    };
    let work = crate::build::target_dir().join("fuzz");
    let mut outcomes = Vec::new();
    for t in &targets {
        let found = work.join("corpus").join(t);
        let seeds = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&found).map_err(|e| format!("{}: {e}", found.display()))?;
        std::fs::create_dir_all(&seeds).map_err(|e| format!("{}: {e}", seeds.display()))?;
        eprintln!("fuzz: {t} for {} s", args.time);
        let out = nightly_cargo(&fuzz_dir)
            .args(["fuzz", "run", t])
            .arg(&found)
            .arg(&seeds)
            .args([
                "--",
                &format!("-max_total_time={}", args.time),
                "-max_len=65536",
                "-print_final_stats=1",
            ])
            .output()
            .map_err(|e| format!("cargo fuzz run {t}: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        let log_path = work.join(format!("{t}.log"));
        std::fs::write(&log_path, &log).map_err(|e| format!("{}: {e}", log_path.display()))?;
        outcomes.push(Outcome {
            target: t.clone(),
            passed: out.status.success(),
            summary: summarise(&log),
        });
        if args.keep && out.status.success() {
            // libFuzzer's merge mode copies into the first folder only the inputs of the
            // others that add coverage.
            run(nightly_cargo(&fuzz_dir)
                .args(["fuzz", "run", t])
                .arg(&seeds)
                .arg(&found)
                .args(["--", "-merge=1"]))?;
        }
    }
    println!("\n{:<16} {:<6} last status", "target", "result");
    for o in &outcomes {
        let verdict = if o.passed { "ok" } else { "CRASH" };
        println!("{:<16} {verdict:<6} {}", o.target, o.summary);
    }
    let crashed = outcomes.iter().filter(|o| !o.passed).count();
    println!(
        "fuzz: {} passed, {crashed} failed ({} s each; logs in {}, crashes in fuzz/artifacts/)",
        outcomes.len() - crashed,
        args.time,
        work.display()
    );
    if crashed > 0 {
        return Err(format!("{crashed} target(s) crashed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::summarise;

    #[test]
    fn summary_prefers_the_crash() {
        let log =
            "#100 pulse cov: 1\nthread '<unnamed>' panicked at src/x.rs:3:5:\n#200 DONE cov: 9\n";
        assert_eq!(
            summarise(log),
            "thread '<unnamed>' panicked at src/x.rs:3:5:"
        );
        assert_eq!(
            summarise("#5 NEW\n#9 DONE cov: 3 ft: 4"),
            "#9 DONE cov: 3 ft: 4"
        );
        assert_eq!(summarise(""), "no libFuzzer status line");
    }
}
