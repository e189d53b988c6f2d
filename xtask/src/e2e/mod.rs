//! End-to-end harness: Linux first kernel in QEMU (TCG), `kexec -p` loads the capture kernel,
//! sysrq crash, and the capture kernel's console is checked against the boot contract (docs/boot-contract.md).
//!
//! `cargo xtask e2e [--case NAME]... [--kernel PATH] [--linux-capture] [--keep] ...` (see `cli`).
//! Everything of a run lands in `target/e2e/<case>/`: `console.log` (host-timestamped COM1),
//! `qemu-cmdline.txt`, `qemu-stderr.log`, `com2.bin` (COM2, the future dump stream),
//! `initramfs.cpio` (the archive used) and `result.txt`.
//!
//! Library use (demo, dump verification, benchmark): build a [`Harness`] with [`Harness::setup`],
//! pick or build a [`Case`], and call [`run_case`]; the [`CaseResult`] has the parsed console and
//! timings. QEMU runs through the shared `rkdump_tests::qemu` runner and machine builder; the
//! console parsing ([`console`]) and dump verification are `rkdump_tests`' too.

pub mod case;
pub mod checks;
pub mod cli;
mod cpio;
mod dumpcheck;
pub mod hardware;
pub mod initramfs;
mod refsize;
pub mod reportcheck;
pub mod service;
mod targets;

pub use rkdump_tests::console;

use std::cell::Cell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use case::{CASE_NAMES, CaptureKind, Case, DUMP_CASE_NAMES, DiskKind, SLOW_CASE_NAMES};
use checks::{Check, RunEnd};
use console::{ConsoleLog, FirstKernel, Line, SYSRQ_LINE};
use initramfs::{INITRD_BLOB_LEN, Initramfs};
use rkdump_tests::disk::{self, Fill};
use rkdump_tests::qemu::{Accel, Controller, Machine, Run};
use rkdump_tests::tools::which;
use rkdump_tests::verify;
pub use targets::TARGET_CASE_NAMES;

/// Locations and tools shared by all cases of one harness run.
#[derive(Clone, Debug)]
pub struct Harness {
    /// `target/e2e` in the workspace.
    pub out_root: PathBuf,
    /// qemu-system-x86_64.
    pub qemu: PathBuf,
    /// The first (crashing) kernel.
    pub first_kernel: PathBuf,
    /// The capture kernel image inside the initramfs.
    pub capture_kernel: PathBuf,
    /// The first kernel's initramfs.
    pub initramfs: Initramfs,
    /// Keep bulky artefacts of passing cases.
    pub keep: bool,
    /// Echo the whole console.
    pub verbose: bool,
    /// Debian's generic kernel as first kernel, for the cases that need its drivers
    /// (`hardware::GenericFirst`); `None` when `scripts/setup.sh` has not fetched it.
    pub generic: Option<hardware::GenericFirst>,
    /// Exclusive lock on `target/e2e/.lock`, held while this harness lives: concurrent runs in
    /// one checkout would share the case directories (and the machine has 2 cores).
    _lock: std::sync::Arc<std::fs::File>,
}

/// Host-clock milestones of one run (since QEMU start).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// The first kernel's /init reported.
    pub first_up: Option<Duration>,
    /// `sysrq: Trigger a crash`.
    pub sysrq: Option<Duration>,
    /// `rkdump: entered`, or a Linux capture kernel's `Linux version` line.
    pub capture_entered: Option<Duration>,
    /// The capture kernel is ready to dump: rkdump's `dump start`, or a Linux capture
    /// kernel's /init started (it could read /proc/vmcore from here).
    pub capture_ready: Option<Duration>,
    /// QEMU ended.
    pub end: Duration,
}

impl Timings {
    /// Crash line to the capture kernel's first own line.
    pub fn crash_to_capture(&self) -> Option<Duration> {
        self.capture_entered?.checked_sub(self.sysrq?)
    }
    /// Crash line to the capture kernel being ready to dump.
    pub fn crash_to_ready(&self) -> Option<Duration> {
        self.capture_ready?.checked_sub(self.sysrq?)
    }
    /// Crash line to QEMU's end.
    pub fn crash_to_end(&self) -> Option<Duration> {
        self.end.checked_sub(self.sysrq?)
    }
}

/// The outcome of one case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case as run.
    pub case: Case,
    /// Its artefact directory.
    pub dir: PathBuf,
    /// The timestamped console.
    pub log: ConsoleLog,
    /// What the first kernel reported.
    pub first: FirstKernel,
    /// How QEMU ended.
    pub end: RunEnd,
    /// All checks.
    pub checks: Vec<Check>,
    /// Milestones.
    pub timings: Timings,
    /// What the loader did to the command line, when known.
    pub loader_edit: Option<String>,
}

impl CaseResult {
    /// All checks passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.result.is_ok())
    }

    /// Multi-line human report.
    pub fn report(&self) -> String {
        let c = &self.case;
        let mut s = format!(
            "== {} ({:?} capture, {}, -m {}, {}) ==\n",
            c.name,
            c.capture,
            c.loaders
                .iter()
                .map(|l| l.syscall())
                .collect::<Vec<_>>()
                .join("+"),
            c.memory,
            c.crashkernel
        );
        for ch in &self.checks {
            match &ch.result {
                Ok(note) => {
                    let _ = writeln!(s, "  ok   {:<28} {note}", ch.name);
                }
                Err(why) => {
                    let _ = writeln!(s, "  FAIL {:<28} {why}", ch.name);
                }
            }
        }
        if c.capture == CaptureKind::Rkdump {
            let rk = self.log.rkdump();
            if let Some((at, args)) = &rk.dump_start {
                let since = self.timings.sysrq.map_or(String::new(), |sy| {
                    format!(
                        " ({:.3} s after the crash)",
                        at.saturating_sub(sy).as_secs_f64()
                    )
                });
                let _ = writeln!(
                    s,
                    "  dump: start {args}{since}; last progress: {}; complete: {}",
                    rk.last_progress.as_deref().unwrap_or("-"),
                    rk.dump_complete.as_ref().map_or("-", |(_, a)| a.as_str())
                );
            }
        }
        let t = &self.timings;
        let _ = writeln!(
            s,
            "  time: first /init {}, crash {}, crash->capture {}, crash->ready {}, crash->end {}, total {:.2} s",
            secs(t.first_up),
            secs(t.sysrq),
            secs(t.crash_to_capture()),
            secs(t.crash_to_ready()),
            secs(t.crash_to_end()),
            t.end.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "  end: {:?}; {} console lines in {}",
            self.end,
            self.log.lines.len(),
            self.dir.display()
        );
        s
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

/// The newest /boot/vmlinuz-*.
pub fn default_first_kernel() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map_err(|e| format!("reading /boot: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        "no /boot/vmlinuz-* (install linux-image-cloud-amd64, see README) or pass --first-kernel".to_string()
    })
}

/// Builds the static marker for the host and returns its path.
pub fn build_marker() -> Result<PathBuf, String> {
    build_static("rkdump-marker", "rkdump-marker")
}

/// Builds a host program static (crt-static), so it runs in the bare initramfs.
pub fn build_static(package: &str, binary: &str) -> Result<PathBuf, String> {
    let target_dir = crate::build::target_dir();
    let triple = "x86_64-unknown-linux-gnu";
    eprintln!(
        "e2e: building {package} (static, {triple}) in {}",
        target_dir.display()
    );
    let status = crate::build::cargo()
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--release",
            "--target",
            triple,
        ])
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=debuginfo",
        )
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {package} failed ({status})"));
    }
    let bin = target_dir.join(triple).join("release").join(binary);
    let bytes = std::fs::read(&bin).map_err(|e| format!("reading {}: {e}", bin.display()))?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| format!("{}: {e}", bin.display()))?;
    if elf.interpreter.is_some() {
        return Err(format!(
            "{} is dynamically linked; it must run in a bare initramfs",
            bin.display()
        ));
    }
    Ok(bin)
}

impl Harness {
    /// Finds the tools, builds the marker and the initramfs for `capture_kernel`.
    pub fn setup(
        capture_kernel: &Path,
        first_kernel: Option<&Path>,
        keep: bool,
        verbose: bool,
    ) -> Result<Harness, String> {
        Harness::setup_with_tools(capture_kernel, first_kernel, keep, verbose, &[])
    }

    /// [`Harness::setup`], with extra host programs (and their libraries) in the Linux capture
    /// kernel's cpio (the benchmark's makedumpfile).
    pub fn setup_with_tools(
        capture_kernel: &Path,
        first_kernel: Option<&Path>,
        keep: bool,
        verbose: bool,
        capture_tools: &[PathBuf],
    ) -> Result<Harness, String> {
        let out_root = crate::build::workspace_root().join("target").join("e2e");
        std::fs::create_dir_all(&out_root)
            .map_err(|e| format!("creating {}: {e}", out_root.display()))?;
        let lock_path = out_root.join(".lock");
        let lock = std::fs::File::create(&lock_path)
            .map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            eprintln!(
                "e2e: another e2e run holds {}; waiting",
                lock_path.display()
            );
            lock.lock()
                .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
        }
        let qemu = which("qemu-system-x86_64")
            .ok_or("qemu-system-x86_64 not found (apt-get install qemu-system-x86)")?;
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| which("busybox"))
            .ok_or("busybox not found (apt-get install busybox-static)")?;
        let kexec = which("kexec").ok_or("kexec not found (apt-get install kexec-tools)")?;
        let first_kernel = match first_kernel {
            Some(p) => p.to_path_buf(),
            None => default_first_kernel()?,
        };
        for (what, p) in [
            ("first kernel", &first_kernel),
            ("capture kernel", &capture_kernel.to_path_buf()),
        ] {
            if !p.is_file() {
                return Err(format!("{what} {} not found", p.display()));
            }
            std::fs::File::open(p).map_err(|e| format!("{what} {}: {e}", p.display()))?;
        }
        let marker = build_marker()?;
        let rkdumpctl = build_static("rkdumpctl", "rkdumpctl")?;
        let inputs = initramfs::Inputs {
            busybox,
            kexec,
            marker,
            capture_kernel: capture_kernel.to_path_buf(),
            modules: initramfs::modules_for(&first_kernel),
            rkdumpctl: Some(rkdumpctl),
            capture_tools: capture_tools.to_vec(),
            hw_modules: Vec::new(),
        };
        let initramfs = initramfs::build(&inputs, &out_root.join("initramfs.cpio"))?;
        let generic = hardware::GenericFirst::build(&inputs, &out_root)?;
        eprintln!(
            "e2e: initramfs {} ({} KiB), first kernel {}, capture kernel {}",
            initramfs.path.display(),
            std::fs::metadata(&initramfs.path)
                .map(|m| m.len() / 1024)
                .unwrap_or(0),
            first_kernel.display(),
            capture_kernel.display()
        );
        Ok(Harness {
            out_root,
            qemu,
            first_kernel,
            capture_kernel: capture_kernel.to_path_buf(),
            initramfs,
            keep,
            verbose,
            generic,
            _lock: std::sync::Arc::new(lock),
        })
    }

    /// An empty run directory for `case` under [`Harness::out_root`], holding the initramfs
    /// (hard-linked when possible) the case boots ([`Harness::first_kernel_of`]).
    pub fn fresh_run_dir(&self, case: &Case) -> Result<PathBuf, String> {
        let dir = self.out_root.join(&case.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cleaning {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cpio = dir.join("initramfs.cpio");
        let initramfs = self.first_kernel_of(case)?.1;
        if std::fs::hard_link(&initramfs.path, &cpio).is_err() {
            std::fs::copy(&initramfs.path, &cpio)
                .map_err(|e| format!("copying the initramfs: {e}"))?;
        }
        Ok(dir)
    }

    /// The first kernel and initramfs `case` boots: Debian's generic kernel when its platform
    /// asks for it, else the harness's first kernel.
    pub fn first_kernel_of(&self, case: &Case) -> Result<(&Path, &Initramfs), String> {
        if !case.platform.generic_kernel {
            return Ok((&self.first_kernel, &self.initramfs));
        }
        self.generic
            .as_ref()
            .map(|g| (g.kernel.as_path(), &g.initramfs))
            .ok_or_else(|| hardware::GENERIC_MISSING.to_string())
    }

    /// The QEMU machine of `case`, with its artefacts in `dir`.
    pub fn machine(&self, case: &Case, dir: &Path) -> Result<Machine, String> {
        let mut m = Machine::q35(&case.memory, Accel::Tcg)
            .program(&self.qemu)
            .smp(case.smp)
            .nodefaults()
            .com2_file(&dir.join("com2.bin"))
            // Cheap diagnostics: "Triple fault" and the CPU state at each reset.
            .debug_log(&dir.join("qemu-debug.log"))
            .args(case.platform.leading_qemu_args())
            .args(hardware::QmpLog::qemu_args(case, dir))
            .args(case.platform.dir_qemu_args(dir))
            .kernel(self.first_kernel_of(case)?.0, &case.first_kernel_cmdline()?)
            .initrd(&dir.join("initramfs.cpio"));
        if case.save_vmcore && case.capture == CaptureKind::Linux {
            m = m.disk(
                "vmcore",
                &dir.join("vmcore.img"),
                &Controller::Nvme("e2evmcore".into()),
                None,
            );
        }
        if let Some(kind) = case.dump_disk {
            m = m.args(dump_disk_args(kind, &dir.join("dump.img")));
        }
        if let Some(kind) = case.file_root {
            m = m.args(dump_disk_args(kind, &targets::root_img(dir)));
        }
        Ok(m.args(case.extra_qemu_args.iter().cloned()))
    }
}

/// The dump disk behind a root port (so the device has PCIe capabilities (FLR) and can be
/// bus-reset): rkdump's `dump_disk`, and the bench's peer and raw-dd runs, see the same device.
pub fn dump_disk_args(kind: DiskKind, image: &Path) -> Vec<String> {
    let controller = match kind {
        DiskKind::Virtio => Controller::VirtioBlk,
        DiskKind::Nvme => Controller::Nvme("rkdumpe2e".into()),
        // The built-in controller sits on the root bus: no root port.
        DiskKind::Ahci => {
            return Machine::fragment()
                .disk("dump", image, &Controller::AhciPort(0), None)
                .into_args();
        }
    };
    Machine::fragment()
        .root_port("rp1", 1)
        .disk("dump", image, &controller, Some("rp1"))
        .into_args()
}

/// Lines worth echoing live when not verbose.
fn interesting(text: &str) -> bool {
    [
        "E2E: ",
        "rkdump: ",
        SYSRQ_LINE,
        "Kernel panic",
        "Linux version",
        "crashkernel",
        "marker tag=",
        "marker done",
        "marker error",
        "marker moved",
    ]
    .iter()
    .any(|k| text.contains(k))
}

/// Runs one case end to end and checks it. `Err` only for harness failures (QEMU not startable,
/// files not writable); a failing guest is a `CaseResult` whose checks failed.
pub fn run_case(case: &Case, h: &Harness) -> Result<CaseResult, String> {
    let dir = h.fresh_run_dir(case)?;
    let cpio = dir.join("initramfs.cpio");
    let machine = h.machine(case, &dir)?;
    let image = dir.join("vmcore.img");
    if case.save_vmcore && case.capture == CaptureKind::Linux {
        let size = case.memory_bytes().ok_or("bad -m for --save-vmcore")? + (256 << 20);
        disk::create(&image, size, Fill::Sparse)?;
    }
    if case.platform.busy_usb_nic {
        disk::create(&dir.join("usb.img"), 64 << 20, Fill::Sparse)?;
    }
    let dump_img = dir.join("dump.img");
    if case.dump_disk.is_some() {
        // Room for the whole vmcore (guest RAM) plus label, header and CRC table.
        let size = case.memory_bytes().ok_or("bad -m for a dump disk")? + (64 << 20);
        disk::create(&dump_img, size, case.dump_disk_fill())?;
        crate::build::rkdumpctl()?.prepare(&dump_img)?;
    }
    let root_sums = match case.file_root {
        Some(_) => targets::make_root(case, &dir)?,
        None => Vec::new(),
    };
    eprintln!(
        "e2e: case {} ({} s timeout)",
        case.name,
        case.timeout.as_secs()
    );

    // Stop early when the outcome is already clear: a first-kernel panic before the crash,
    // an rkdump exception, or a capture kernel that stays silent after the crash.
    let crashed_at: Cell<Option<Duration>> = Cell::new(None);
    let captured = Cell::new(false);
    let handoff = Cell::new(false);
    let silence = case.capture_silence;
    let checkpoints = Cell::new(0usize);
    let power_cut = Cell::new(false);
    let stop = |l: &Line| -> Option<String> {
        let t = &l.text;
        if let Some(n) = case.power_cut_after
            && t.contains("rkdump: checkpoint bytes=")
        {
            checkpoints.set(checkpoints.get() + 1);
            if checkpoints.get() >= n {
                power_cut.set(true);
                return Some(format!("power cut after {n} checkpoint lines"));
            }
        }
        if t.contains(SYSRQ_LINE) || t.contains(rkdump_tests::console::INIT_EXIT_LINE) {
            crashed_at.set(Some(l.t));
            return None;
        }
        match crashed_at.get() {
            None if t.contains("Kernel panic") => {
                Some(format!("first kernel panicked before the crash: {t}"))
            }
            None => None,
            Some(at) => {
                if t.contains("rkdump: ") || t.contains("Linux version") {
                    captured.set(true);
                }
                if t.contains("rkdump: exception") || t.contains("rkdump: panic") {
                    Some(format!("rkdump failed: {t}"))
                } else if !case.full_run && t.contains("rkdump: dump start") {
                    handoff.set(true);
                    Some(format!(
                        "stopped at `rkdump: dump start` {:.3} s after the crash (handoff run; --full waits for the dump)",
                        l.t.saturating_sub(at).as_secs_f64()
                    ))
                } else if !captured.get() && l.t.saturating_sub(at) > silence {
                    Some(format!(
                        "no capture kernel output {} s after the crash",
                        silence.as_secs()
                    ))
                } else {
                    None
                }
            }
        }
    };
    let verbose = h.verbose;
    let echo = move |t: &str| verbose || interesting(t);
    let qmp = hardware::QmpLog::spawn(case, &dir);
    let outcome = Run::new(&machine, &dir, case.timeout)
        .echo(&echo)
        .stop(&stop)
        .start()?;
    let qmp = qmp.finish();
    let end = match (&outcome.stopped, outcome.timed_out) {
        (Some(why), _) if handoff.get() => RunEnd::Handoff(why.clone()),
        // The cut is the point of the case: the run ended as planned.
        (Some(why), _) if power_cut.get() => RunEnd::Handoff(why.clone()),
        (Some(why), _) => RunEnd::Stopped(why.clone()),
        (None, true) => RunEnd::TimedOut(case.timeout.as_secs()),
        (None, false) => RunEnd::Exited(outcome.exit_code),
    };
    let log = outcome.log;
    let initrd_len = match case.initrd_kind() {
        _ if case.loadctl => ctl_blob_len(&log),
        "blob" => Some(INITRD_BLOB_LEN as u64),
        "cpio" => Some(h.initramfs.capture_cpio_len),
        _ => None,
    };
    let mut checks = checks::evaluate(case, &log, &end, initrd_len);
    let debug = std::fs::read_to_string(dir.join("qemu-debug.log")).unwrap_or_default();
    checks.push(checks::check_qemu_debug(&debug));
    if case.save_vmcore && case.capture == CaptureKind::Linux {
        checks.push(check_saved_vmcore(&log, &image));
    }
    let stderr = outcome.stderr;
    if case.bad_elfcorehdr {
        dumpcheck::apply_bad_header(&log, &end, &mut checks);
    } else if case.file_root.is_some() {
        targets::apply(case, h, &log, &end, &dir, &root_sums, &mut checks);
    } else if case.power_cut_after.is_some() {
        dumpcheck::apply_power_cut(&log, &dump_img, &dir, &mut checks);
    } else if case.dump_disk.is_some() {
        dumpcheck::apply(case, &log, &end, &stderr, &dump_img, &dir, &mut checks);
    } else if case.full_run && case.capture == CaptureKind::Rkdump {
        dumpcheck::apply_serial(case, &log, &dir, &mut checks);
    }
    hardware::apply(case, &log, &stderr, &qmp, &dir, &mut checks);
    if !stderr.trim().is_empty() {
        let lines: Vec<&str> = stderr.lines().take(5).collect();
        checks.push(Check {
            name: "qemu stderr (info)".into(),
            result: Ok(lines.join(" | ")),
        });
    }
    let first = log.first_kernel();
    let (capture_entered, capture_ready, cmdline) = match case.capture {
        CaptureKind::Rkdump => {
            let rk = log.rkdump();
            (rk.entered_at, rk.dump_start.map(|(t, _)| t), rk.cmdline)
        }
        CaptureKind::Linux => {
            let lc = log.linux_capture();
            (lc.version_at, lc.init_at, lc.cmdline)
        }
    };
    let loader_edit = cmdline
        .and_then(|c| checks::check_cmdline(case.loader(), &c, &case.capture_cmdline()).ok())
        .map(|(note, _)| note);
    let timings = Timings {
        first_up: first.up_at,
        sysrq: first.sysrq_at,
        capture_entered,
        capture_ready,
        end: outcome.wall,
    };
    let result = CaseResult {
        case: case.clone(),
        dir: dir.clone(),
        log,
        first,
        end,
        checks,
        timings,
        loader_edit,
    };
    let report = result.report();
    std::fs::write(
        dir.join("result.txt"),
        format!(
            "{}\n{report}",
            if result.passed() { "PASS" } else { "FAIL" }
        ),
    )
    .map_err(|e| format!("writing result.txt: {e}"))?;
    if result.passed() && !h.keep {
        let _ = std::fs::remove_file(&cpio);
        let _ = std::fs::remove_file(dir.join("com2.bin"));
        let _ = std::fs::remove_file(&image);
        let _ = std::fs::remove_file(&dump_img);
        let _ = std::fs::remove_file(targets::root_img(&dir));
        let _ = std::fs::remove_file(dir.join("vmcore"));
    }
    Ok(result)
}

/// Size of the blob `rkdumpctl load` passed as initrd, from its own report
/// (`snapshot: ... , <n> bytes -> /tmp/config.blob`).
fn ctl_blob_len(log: &ConsoleLog) -> Option<u64> {
    log.lines.iter().find_map(|l| {
        let t = l.text.split("snapshot:").nth(1)?;
        let before = t.split(" bytes -> ").next()?;
        before.rsplit(", ").next()?.trim().parse().ok()
    })
}

/// The Linux capture kernel copied /proc/vmcore to `image`: every marker page must be in it.
fn check_saved_vmcore(log: &ConsoleLog, image: &Path) -> Check {
    let lc = log.linux_capture();
    let result = match (lc.vmcore_saved, log.first_kernel().marker) {
        (None, _) => Err("the capture /init never reported `vmcore saved`".to_string()),
        (Some((rc, _)), _) if rc != 0 => Err(format!("dd /proc/vmcore to the NVMe disk failed (rc={rc})")),
        (_, None) => Err("no marker report to check against".to_string()),
        (Some((_, took)), Some(report)) => verify::check_marker_file(image, &report)
            .map_err(String::from)
            .map(|s| {
                let bytes = lc.vmcore_size.unwrap_or(0);
                let secs = took.map_or(f64::NAN, |d| d.as_secs_f64());
                format!(
                    "{} marker pages intact in the saved vmcore ({} PT_LOADs); copy {bytes} B in {secs:.2} s ({:.0} MiB/s)",
                    s.pages,
                    s.loads,
                    bytes as f64 / (1u64 << 20) as f64 / secs
                )
            }),
    };
    Check {
        name: "marker pages in vmcore".into(),
        result,
    }
}

/// Every rkdump case (handoff checks on both loaders, below and above 4 GiB, with and without an
/// initrd, a refused image; full dumps with verification and their negative controls), for
/// `cargo xtask test`; the [`SLOW_CASE_NAMES`] only when `slow`; then the `service` case. Prints
/// each report and the summary table; returns each case's name and whether it passed.
pub fn run_for_test(kernel: &Path, slow: bool) -> Result<Vec<(String, bool)>, String> {
    let h = Harness::setup(kernel, None, false, false)?;
    let mut cases = Vec::new();
    for name in CASE_NAMES
        .iter()
        .chain(DUMP_CASE_NAMES.iter())
        .chain(TARGET_CASE_NAMES.iter())
    {
        if !slow && SLOW_CASE_NAMES.contains(name) {
            println!(
                "e2e: case {name} skipped (over 3 minutes; `cargo xtask test --slow` runs it)"
            );
            continue;
        }
        cases.push(
            Case::standard(name, CaptureKind::Rkdump).ok_or_else(|| format!("no case {name}"))?,
        );
    }
    let mut outcomes: Vec<(String, bool)> = run_cases(&h, &cases)?
        .iter()
        .map(|r| (r.case.name.clone(), r.passed()))
        .collect();
    // The service case: four boots of the same disks, run as users run `rkdumpctl boot`.
    let r = service::run(&h)?;
    println!("{}", r.report());
    outcomes.push((service::NAME.to_string(), r.passed()));
    Ok(outcomes)
}

/// Runs `cases` in turn, printing each report, then prints the summary table and writes it to
/// `summary.txt` in the harness's output directory.
pub fn run_cases(h: &Harness, cases: &[Case]) -> Result<Vec<CaseResult>, String> {
    let mut results = Vec::new();
    for c in cases {
        let r = run_case(c, h)?;
        println!("{}", r.report());
        results.push(r);
    }
    let table = format!(
        "capture kernel: {}\n{}",
        h.capture_kernel.display(),
        summary(&results)
    );
    println!("\n{table}");
    let _ = std::fs::write(h.out_root.join("summary.txt"), &table);
    Ok(results)
}

/// The summary table of a set of results ("ready": rkdump `dump start`, Linux capture /init).
pub fn summary(results: &[CaseResult]) -> String {
    let mut s = format!(
        "{:<15} {:<7} {:<16} {:<5} {:<46} {:>14} {:>12} {:>8}  {}\n",
        "case",
        "capture",
        "loader",
        "res",
        "crash region(s)",
        "crash->capture",
        "crash->ready",
        "total",
        "loader edit / first failure"
    );
    for r in results {
        let regions: Vec<String> = r
            .first
            .crash_regions
            .iter()
            .map(|x| x.to_string())
            .collect();
        let note = match r.checks.iter().find(|c| c.result.is_err()) {
            Some(c) => format!(
                "{}: {}",
                c.name,
                c.result
                    .as_ref()
                    .err()
                    .map_or("", |e| e.lines().next().unwrap_or(""))
            ),
            None => r.loader_edit.clone().unwrap_or_default(),
        };
        let _ = writeln!(
            s,
            "{:<15} {:<7} {:<16} {:<5} {:<46} {:>14} {:>12} {:>8}  {}",
            r.case.name,
            match r.case.capture {
                CaptureKind::Rkdump => "rkdump",
                CaptureKind::Linux => "linux",
            },
            match r.case.loaders.as_slice() {
                [one] => one.syscall().to_string(),
                many => many
                    .iter()
                    .map(|l| format!("-{}", l.flag()))
                    .collect::<Vec<_>>()
                    .join(","),
            },
            if r.passed() { "PASS" } else { "FAIL" },
            if regions.is_empty() {
                "-".into()
            } else {
                regions.join(",")
            },
            secs(r.timings.crash_to_capture()),
            secs(r.timings.crash_to_ready()),
            format!("{:.1} s", r.timings.end.as_secs_f64()),
            note
        );
    }
    s
}
