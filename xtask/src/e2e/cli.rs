//! `cargo xtask e2e` options (clap) and its entry point: pick the cases, set up one harness, run
//! them, print the summary table and the `e2e: N passed, M failed` line; and the
//! `check-marker` subcommand.

use std::path::PathBuf;
use std::time::Duration;

use rkdump_tests::verify;

use super::console::ConsoleLog;
use super::{
    CASE_NAMES, CaptureKind, Case, DUMP_CASE_NAMES, Harness, default_first_kernel, run_cases,
};

/// `cargo xtask e2e`: Linux first kernel in QEMU, `kexec -p`, sysrq crash, capture kernel checked.
/// Everything of a case lands in target/e2e/<case>/.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    check: Option<Check>,
    /// Run only this case (repeatable, or comma list); default: all.
    #[arg(long = "case", value_name = "NAME", value_delimiter = ',')]
    cases: Vec<String>,
    /// Capture kernel image (default: `cargo xtask build`'s target/rkdump/bzImage, built
    /// first; with --linux-capture: the first kernel's image).
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Use the existing target/rkdump/bzImage without building.
    #[arg(long)]
    no_build: bool,
    /// The capture kernel is Linux: check it boots and has /proc/vmcore.
    #[arg(long)]
    linux_capture: bool,
    /// First kernel (default: newest /boot/vmlinuz-*).
    #[arg(long, value_name = "P")]
    first_kernel: Option<PathBuf>,
    /// Override the first kernel's crashkernel= parameter(s).
    #[arg(long, value_name = "S")]
    crashkernel: Option<String>,
    /// Keep bulky artefacts (initramfs.cpio, com2.bin) of passing cases too.
    #[arg(long)]
    keep: bool,
    /// Extra rkdump parameters for every case (A/B measurements, e.g. "rkdump.checksum=none").
    #[arg(long, value_name = "S", default_value = "", allow_hyphen_values = true)]
    rkdump_append: String,
    /// Hard timeout per case (default 120).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Wait for rkdump's whole dump and power-off (default: stop at `rkdump: dump start`; the
    /// serial dump runs at ~0.5 MiB/s under TCG, so give --timeout accordingly).
    #[arg(long)]
    full: bool,
    /// With --linux-capture: the capture /init copies /proc/vmcore to an NVMe disk
    /// (target/e2e/<case>/vmcore.img); the host checks every marker page in it.
    #[arg(long)]
    save_vmcore: bool,
    /// Run kexec with -d (segment placement on the console).
    #[arg(long)]
    kexec_debug: bool,
    /// Echo the whole console live (default: key lines only).
    #[arg(short, long)]
    verbose: bool,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Check {
    /// Verify the marker pages reported in a run's console.log inside an ELF vmcore.
    CheckMarker {
        /// The vmcore (ELF).
        vmcore: PathBuf,
        /// The run's console.log.
        console_log: PathBuf,
    },
}

/// `cargo xtask e2e check-marker <vmcore> <console.log>`.
fn check_marker(vmcore: &std::path::Path, log: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let fk = ConsoleLog::parse_saved(&text).first_kernel();
    let report = fk
        .marker
        .ok_or_else(|| format!("{}: no marker report", log.display()))?;
    let stats = verify::check_marker_file(vmcore, &report)?;
    println!(
        "marker ok: {} pages (tag {:#x}) found intact in {} ({} PT_LOADs)",
        stats.pages,
        report.tag,
        vmcore.display(),
        stats.loads
    );
    Ok(())
}

/// Entry point of `cargo xtask e2e`.
pub fn main(args: Args) -> Result<(), String> {
    if let Some(Check::CheckMarker {
        vmcore,
        console_log,
    }) = &args.check
    {
        return check_marker(vmcore, console_log);
    }
    if args.list {
        for n in CASE_NAMES
            .iter()
            .chain(DUMP_CASE_NAMES.iter())
            .chain(super::TARGET_CASE_NAMES.iter())
        {
            println!("{n}");
        }
        println!("{}", super::service::NAME);
        return Ok(());
    }
    let capture = if args.linux_capture {
        CaptureKind::Linux
    } else {
        CaptureKind::Rkdump
    };
    let mut names = args.cases;
    if names.is_empty() {
        names = CASE_NAMES.iter().map(|s| s.to_string()).collect();
        if capture == CaptureKind::Rkdump {
            names.extend(DUMP_CASE_NAMES.iter().map(|s| s.to_string()));
            names.extend(super::TARGET_CASE_NAMES.iter().map(|s| s.to_string()));
        }
    }
    // `service` (e2e/service.rs) is four boots of its own, run after the others.
    let service = names.iter().any(|n| n == super::service::NAME);
    names.retain(|n| n != super::service::NAME);
    let mut cases = Vec::new();
    for n in &names {
        let mut c =
            Case::standard(n, capture).ok_or_else(|| format!("unknown case `{n}` (try --list)"))?;
        c.kexec_debug = args.kexec_debug;
        c.full_run |= args.full;
        c.save_vmcore = args.save_vmcore;
        if let Some(ck) = &args.crashkernel {
            c.crashkernel = ck.clone();
        }
        if let Some(t) = args.timeout {
            c.timeout = Duration::from_secs(t);
        }
        let extra = args.rkdump_append.trim();
        if capture == CaptureKind::Rkdump && !extra.is_empty() {
            if !c.capture_extra.is_empty() {
                c.capture_extra.push(' ');
            }
            c.capture_extra.push_str(extra);
        }
        cases.push(c);
    }
    let first_kernel = match &args.first_kernel {
        Some(p) => p.clone(),
        None => default_first_kernel()?,
    };
    let capture_kernel = match (args.kernel, capture) {
        (Some(k), _) => k,
        (None, CaptureKind::Linux) => first_kernel.clone(),
        (None, CaptureKind::Rkdump) if args.no_build => {
            let k = crate::build::Artefacts::paths().bzimage;
            if !k.is_file() {
                return Err(format!(
                    "{} not found: run `cargo xtask build` or drop --no-build",
                    k.display()
                ));
            }
            k
        }
        (None, CaptureKind::Rkdump) => crate::build::build(false)?.bzimage,
    };
    let h = Harness::setup(
        &capture_kernel,
        Some(&first_kernel),
        args.keep,
        args.verbose,
    )?;
    let results = run_cases(&h, &cases)?;
    let mut failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.case.name.as_str())
        .collect();
    let mut ran = results.len();
    if service {
        let r = super::service::run(&h)?;
        println!("{}", r.report());
        ran += 1;
        if !r.passed() {
            failed.push(super::service::NAME);
        }
    }
    println!(
        "e2e: {} passed, {} failed",
        ran - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}
