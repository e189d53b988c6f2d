//! `cargo xtask test`: host unit tests, then the kernel build, then every QEMU scenario, then
//! (unless `--quick`) the end-to-end kexec cases. Prints one `N passed, M failed` line at the end
//! and fails if anything failed.

use rkdump_tests::scenarios::{self, Env};

use crate::build;

/// `cargo xtask test` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Skip the end-to-end kexec cases.
    #[arg(long)]
    quick: bool,
    /// Also run the e2e cases that take over ~3 minutes (the full serial dump).
    #[arg(long)]
    slow: bool,
    /// Skip the lints and host unit tests.
    #[arg(long)]
    no_host: bool,
    /// Run only this scenario (repeatable); skips the e2e cases.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
}

/// `cargo xtask test [--quick] [--slow] [--no-host] [--scenario NAME]...`
pub fn main(args: Args) -> Result<(), String> {
    let Args {
        quick,
        slow,
        no_host,
        scenarios: only,
    } = args;
    let host = !no_host;
    let mut passed = 0usize;
    let mut failed = Vec::<String>::new();

    if host {
        // The style and lint gates CI holds every change to (docs/architecture.md#coding-rules, rule 10).
        let lints: [(&str, &[&str]); 3] = [
            (
                "cargo fmt --all --check",
                &["fmt", "--all", "--", "--check"],
            ),
            (
                "cargo clippy --workspace --all-targets -D warnings",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
            (
                "cargo clippy (kernel, x86_64-unknown-none) -D warnings",
                &[
                    "clippy",
                    "-p",
                    "rkdump-kernel",
                    "--target",
                    "x86_64-unknown-none",
                    "--release",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        ];
        for (name, args) in lints {
            let ok = build::cargo()
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            println!("{name} ... {}", if ok { "ok" } else { "FAILED" });
            if ok {
                passed += 1;
            } else {
                failed.push(name.to_string());
            }
        }
        let status = build::cargo()
            .args(["test", "--workspace"])
            .status()
            .map_err(|e| format!("running cargo test: {e}"))?;
        if status.success() {
            passed += 1;
        } else {
            failed.push("host unit tests (cargo test --workspace)".into());
        }
    }

    let artefacts = build::build(false)?;
    // The artefact itself, read back from disk as a loader would.
    match std::fs::read(&artefacts.bzimage)
        .map_err(|e| e.to_string())
        .and_then(|img| {
            let payload = img.get(1024..).unwrap_or_default().to_vec();
            crate::image::check_bzimage(&img, &payload)
        }) {
        Ok(s) => {
            println!(
                "bzImage header ... ok (version {:#x}, xloadflags {:#x}, init_size {}, alignment {:#x}, cmdline_size {})",
                s.version, s.xloadflags, s.init_size, s.kernel_alignment, s.cmdline_size
            );
            passed += 1;
        }
        Err(e) => {
            println!("bzImage header ... FAILED: {e}");
            failed.push("bzImage header check".into());
        }
    }
    match crate::frames::check(&build::kernel_elf(false)) {
        Ok(s) => {
            println!("kernel stack frames ... ok ({s})");
            passed += 1;
        }
        Err(e) => {
            println!("kernel stack frames ... FAILED: {e}");
            failed.push("kernel stack frames".into());
        }
    }
    let rkdumpctl = build::rkdumpctl()?;
    let env = Env {
        elf: artefacts.elf.clone(),
        bzimage: artefacts.bzimage.clone(),
        target: build::target_dir(),
        rkdumpctl,
    };
    for v in scenarios::run(&env, &only) {
        match v.result {
            Ok(()) => passed += 1,
            Err(_) => failed.push(format!("scenario {}", v.name)),
        }
    }

    if !quick && only.is_empty() {
        match crate::e2e::run_for_test(&artefacts.bzimage, slow) {
            Ok(results) => {
                for (name, ok) in results {
                    if ok {
                        passed += 1;
                    } else {
                        failed.push(format!("e2e case {name}"));
                    }
                }
            }
            Err(e) => failed.push(format!("e2e harness: {e}")),
        }
    }

    println!();
    for f in &failed {
        println!("FAILED: {f}");
    }
    println!("xtask test: {} passed, {} failed", passed, failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} failed", failed.len()))
    }
}
