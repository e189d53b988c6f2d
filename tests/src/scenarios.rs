//! The QEMU scenario list, declared as data: each [`Scenario`] is one or more [`Boot`]s of
//! `rkdump.elf` (command line, optional fabricated crash, dump disks and extra devices), and each
//! boot lists the checks its console, QEMU's exit status and the host-side artefacts must pass.
//! [`run`] does the shared part once: fabricate, prepare disks, boot through [`crate::qemu`],
//! require a defined end, then apply the checks in order. A scenario passes only if every check
//! holds; failures carry the reason and the console tail.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::disk::{self, Fill};
use crate::fabricate::{self, Crash, Layout};
use crate::qemu::{Accel, Controller, Exit, Machine, Outcome, Run};
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

/// Generous: TCG timing varies by 25 % and more with load.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// What one finished boot left behind, for the checks.
pub struct Ctx<'a> {
    /// The scenario inputs.
    pub env: &'a Env,
    /// The boot's artefact directory.
    pub dir: &'a Path,
    /// How QEMU ran.
    pub outcome: Outcome,
    /// The fabricated crash, if the boot has one.
    pub crash: Option<Crash>,
    /// The disks, if the boot has them.
    pub disks: Option<Disks>,
}

impl Ctx<'_> {
    /// True if some `rkdump: ` line starts with `prefix`.
    pub fn has(&self, prefix: &str) -> bool {
        self.outcome.rk_lines().any(|l| l.starts_with(prefix))
    }

    /// True if some `rkdump: ` line satisfies `f`.
    pub fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        self.outcome.rk_lines().any(f)
    }

    /// The `reinit <bdf> ...` (or `error: reinit <bdf> ...`) line.
    pub fn reinit_line(&self, bdf: &str) -> &str {
        self.outcome
            .rk_lines()
            .find(|l| {
                l.starts_with(&format!("reinit {bdf} "))
                    || l.starts_with(&format!("error: reinit {bdf} "))
            })
            .unwrap_or("")
    }

    /// The fabricated crash (a check that needs one is only declared on a boot that has one).
    fn crash(&self) -> Result<&Crash, String> {
        self.crash
            .as_ref()
            .ok_or("the boot has no fabricated crash".into())
    }

    fn disks(&self) -> Result<&Disks, String> {
        self.disks.as_ref().ok_or("the boot has no disks".into())
    }

    fn ctl(&self) -> &Rkdumpctl {
        &self.env.rkdumpctl
    }

    /// Length of the vmcore rkdump must write.
    fn expected_len(&self) -> usize {
        self.crash.as_ref().map_or(0, |c| c.expected.len())
    }
}

/// The two disks of a disk boot: the labelled dump disk and an unlabelled one holding data
/// (first in PCI order, so rkdump has to skip it), with their SHA-256 before the boot.
pub struct Disks {
    /// The dump disk image.
    pub dump: PathBuf,
    /// The unlabelled disk image.
    pub other: PathBuf,
    /// SHA-256 of the dump disk before the boot.
    pub dump_before: [u8; 32],
    /// SHA-256 of the unlabelled disk before the boot.
    pub other_before: [u8; 32],
}

/// The controller of a disk boot.
#[derive(Clone, Copy, Debug)]
pub enum Ctrl {
    /// virtio-blk, each disk behind its own root port.
    Virtio,
    /// NVMe, each disk behind its own root port.
    Nvme,
    /// The q35 AHCI controller, one port each.
    Ahci,
}

/// Makes the contents of a file a boot needs.
type Contents = fn() -> Vec<u8>;

/// One check: `Err` says what did not hold.
type Check = Box<dyn Fn(&Ctx) -> Result<(), String>>;

/// Guest memory of a boot.
#[derive(Clone, Copy, Debug)]
enum Memory {
    /// This many MiB.
    Mib(u32),
    /// As much as the fabricated crash's layout needs.
    OfCrash,
}

/// One boot of rkdump.elf and its checks.
pub struct Boot {
    subdir: Option<&'static str>,
    append: &'static str,
    crash: Option<Layout>,
    memory: Memory,
    disks: Option<(Ctrl, u64)>,
    corrupt_label: bool,
    com2: bool,
    files: Vec<(&'static str, Contents)>,
    extra: Vec<String>,
    timeout: Duration,
    checks: Vec<Check>,
}

/// One scenario: a name, what it proves, and its boots.
pub struct Scenario {
    /// Name used by `--scenario` and in reports.
    pub name: &'static str,
    /// What it proves.
    pub about: &'static str,
    boots: Vec<Boot>,
}

impl Scenario {
    /// A scenario with one boot of `append` (where `{elfcorehdr}` stands for the fabricated
    /// crash's header address); configure the boot with the builder methods.
    pub fn new(name: &'static str, about: &'static str, append: &'static str) -> Scenario {
        Scenario {
            name,
            about,
            boots: vec![Boot::new(append)],
        }
    }

    /// Another boot in subdirectory `subdir` of the scenario's directory.
    pub fn then_boot(mut self, subdir: &'static str, append: &'static str) -> Scenario {
        let mut b = Boot::new(append);
        b.subdir = Some(subdir);
        self.boots.push(b);
        self
    }

    fn boot(mut self, f: impl FnOnce(&mut Boot)) -> Scenario {
        if let Some(b) = self.boots.last_mut() {
            f(b);
        }
        self
    }

    /// Names the current (first) boot's subdirectory.
    pub fn in_subdir(self, subdir: &'static str) -> Scenario {
        self.boot(|b| b.subdir = Some(subdir))
    }

    /// A fabricated crash of `layout` in guest memory.
    pub fn crash(self, layout: Layout) -> Scenario {
        self.boot(|b| b.crash = Some(layout))
    }

    /// Guest memory as the crash layout needs (default 256 MiB).
    pub fn crash_memory(self) -> Scenario {
        self.boot(|b| b.memory = Memory::OfCrash)
    }

    /// A labelled dump disk and an unlabelled one of `mib` MiB each on `ctrl`.
    pub fn disks(self, ctrl: Ctrl, mib: u64) -> Scenario {
        self.boot(|b| b.disks = Some((ctrl, mib)))
    }

    /// Flips a byte inside the dump disk's label (its uuid), so its CRC no longer matches.
    pub fn corrupt_label(self) -> Scenario {
        self.boot(|b| b.corrupt_label = true)
    }

    /// COM2 to `com2.bin`.
    pub fn com2(self) -> Scenario {
        self.boot(|b| b.com2 = true)
    }

    /// A file written into the boot's directory before QEMU starts.
    pub fn file(self, name: &'static str, contents: Contents) -> Scenario {
        self.boot(|b| b.files.push((name, contents)))
    }

    /// Extra QEMU arguments (`{dir}` stands for the boot's directory).
    pub fn qemu_args(self, args: &[&str]) -> Scenario {
        self.boot(|b| b.extra.extend(args.iter().map(|a| a.to_string())))
    }

    /// The hard timeout as a multiple of [`BOOT_TIMEOUT`].
    pub fn timeouts(self, n: u32) -> Scenario {
        self.boot(|b| b.timeout = BOOT_TIMEOUT * n)
    }

    /// A check that returns what did not hold.
    pub fn check(self, f: impl Fn(&Ctx) -> Result<(), String> + 'static) -> Scenario {
        self.boot(|b| b.checks.push(Box::new(f)))
    }

    /// `what` must hold of the run.
    pub fn expect(self, what: &'static str, f: impl Fn(&Ctx) -> bool + 'static) -> Scenario {
        self.check(move |c| holds(f(c), what))
    }

    /// Some `rkdump: ` line starts with `prefix`.
    pub fn line(self, what: &'static str, prefix: &'static str) -> Scenario {
        self.expect(what, move |c| c.has(prefix))
    }

    /// The dump went to COM2 (`dump start bytes=... target=serial:ttyS1`).
    pub fn serial_fallback(self, what: &'static str) -> Scenario {
        self.expect(what, |c| {
            c.any(|l| l.starts_with("dump start bytes=") && l.ends_with("target=serial:ttyS1"))
        })
    }

    /// The labelled dump disk's SHA-256 is what it was before the boot.
    pub fn dump_disk_untouched(self, what: &'static str) -> Scenario {
        self.check(move |c| {
            let d = c.disks()?;
            holds(sha256(&d.dump)? == d.dump_before, what)
        })
    }

    /// QEMU's exit must be `exit`.
    pub fn exit(self, exit: Exit, what: &'static str) -> Scenario {
        self.expect(what, move |c| c.outcome.exit() == exit)
    }
}

impl Boot {
    fn new(append: &'static str) -> Boot {
        Boot {
            subdir: None,
            append,
            crash: None,
            memory: Memory::Mib(256),
            disks: None,
            corrupt_label: false,
            com2: false,
            files: Vec::new(),
            extra: Vec::new(),
            timeout: BOOT_TIMEOUT,
            checks: Vec::new(),
        }
    }

    /// Prepares the inputs, boots, and applies the checks.
    fn run(&self, env: &Env, scenario_dir: &Path) -> Result<(), String> {
        let dir = match self.subdir {
            Some(s) => scenario_dir.join(s),
            None => scenario_dir.to_path_buf(),
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let crash = self
            .crash
            .map(|layout| fabricate::build(&dir, layout))
            .transpose()?;
        let disks = self
            .disks
            .map(|(_, mib)| prepare_disks(env, &dir, mib, self.corrupt_label))
            .transpose()?;
        let append = match &crash {
            Some(c) => self
                .append
                .replace("{elfcorehdr}", &format!("{:#x}", c.elfcorehdr)),
            None => self.append.to_string(),
        };
        let memory = match (self.memory, &crash) {
            (Memory::OfCrash, Some(c)) => c.memory_mib,
            (Memory::OfCrash, None) => 256,
            (Memory::Mib(m), _) => m,
        };
        for (name, contents) in &self.files {
            let path = dir.join(name);
            std::fs::write(&path, contents()).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let dir_text = dir.display().to_string();
        let mut m = Machine::rkdump(&format!("{memory}M"), Accel::from_env())
            .kernel(&env.elf, &append)
            .args(crash.iter().flat_map(|c| c.qemu_args.clone()))
            .args(self.extra.iter().map(|a| a.replace("{dir}", &dir_text)));
        if let (Some((ctrl, _)), Some(d)) = (self.disks, &disks) {
            m = attach_disks(m, ctrl, &d.dump, &d.other);
        }
        if self.com2 {
            let com2 = dir.join("com2.bin");
            let _ = std::fs::remove_file(&com2);
            m = m.com2_file(&com2);
        }
        let outcome = Run::new(&m, &dir, self.timeout).start()?;
        let ctx = Ctx {
            env,
            dir: &dir,
            outcome,
            crash,
            disks,
        };
        self.judge(&ctx)
    }

    /// Requires a defined end (no timeout, a `rkdump: finish` line), then applies this boot's
    /// checks in order; the first that fails is reported with the console tail.
    fn judge(&self, ctx: &Ctx) -> Result<(), String> {
        let defined_end: [Check; 2] = [
            Box::new(|c| {
                holds(
                    !c.outcome.timed_out,
                    "QEMU ended by itself before the timeout",
                )
            }),
            Box::new(|c| holds(c.has("finish "), "a `rkdump: finish` line")),
        ];
        for check in defined_end.iter().chain(&self.checks) {
            check(ctx).map_err(|what| failure(&what, &ctx.outcome))?;
        }
        Ok(())
    }
}

/// `Ok` if `cond`, else what did not hold.
fn holds(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// The failure report: what did not hold, how QEMU ended, the console tail and QEMU's stderr.
fn failure(what: &str, o: &Outcome) -> String {
    format!(
        "  check failed: {what}\n  exit={:?} timed_out={} elapsed={:.1}s\n  console tail:\n{}  qemu stderr: {}",
        o.exit_code,
        o.timed_out,
        o.wall.as_secs_f64(),
        o.log.tail(25),
        o.stderr.trim()
    )
}

/// A dump disk of `mib` MiB labelled with `rkdumpctl prepare` and an unlabelled one holding
/// data, as image files in `dir`.
fn prepare_disks(env: &Env, dir: &Path, mib: u64, corrupt_label: bool) -> Result<Disks, String> {
    let dump = dir.join("dump.img");
    let other = dir.join("other.img");
    disk::create(&dump, mib << 20, Fill::Sparse)?;
    disk::create(&other, mib << 20, Fill::PatternHead)?;
    env.rkdumpctl.prepare(&dump)?;
    if corrupt_label {
        let mut img = std::fs::read(&dump).map_err(|e| e.to_string())?;
        img[0x10] ^= 0xff;
        std::fs::write(&dump, &img).map_err(|e| e.to_string())?;
    }
    Ok(Disks {
        dump_before: sha256(&dump)?,
        other_before: sha256(&other)?,
        dump,
        other,
    })
}

fn sha256(path: &Path) -> Result<[u8; 32], String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(sha2::Sha256::digest(&bytes).into())
}

/// Attaches `dump` (and, first in PCI order, `other`) on `ctrl`.
fn attach_disks(mut m: Machine, ctrl: Ctrl, dump: &Path, other: &Path) -> Machine {
    for (i, img) in [other, dump].into_iter().enumerate() {
        let id = format!("d{i}");
        let port = format!("rp{i}");
        let number = i as u32 + 1;
        m = match ctrl {
            Ctrl::Virtio => {
                m.root_port(&port, number)
                    .disk(&id, img, &Controller::VirtioBlk, Some(&port))
            }
            Ctrl::Nvme => m.root_port(&port, number).disk(
                &id,
                img,
                &Controller::Nvme(format!("rkdump{i}")),
                Some(&port),
            ),
            Ctrl::Ahci => m.disk(&id, img, &Controller::AhciPort(i as u8), None),
        };
    }
    m
}

/// `rkdumpctl recv` rebuilds COM2's stream byte-identical to the host's model.
fn serial_vmcore_identical(c: &Ctx) -> Result<(), String> {
    let crash = c.crash()?;
    let out = c.dir.join("vmcore");
    c.ctl()
        .recv(&c.dir.join("com2.bin"), &out)
        .map_err(|e| format!("rkdumpctl recv failed: {e}"))?;
    let got = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::write(c.dir.join("expected.vmcore"), &crash.expected);
    if got != crash.expected {
        let first = got.iter().zip(&crash.expected).position(|(a, b)| a != b);
        return Err(format!(
            "vmcore differs from the host model: got {} bytes, expected {}; first difference at {:?}",
            got.len(),
            crash.expected.len(),
            first
        ));
    }
    println!(
        "    {} bytes byte-identical; loads {:x?}",
        got.len(),
        crash.loads
    );
    Ok(())
}

/// `rkdumpctl save` extracts the dump disk's vmcore byte-identical to the host's model.
fn disk_vmcore_identical(c: &Ctx) -> Result<(), String> {
    let crash = c.crash()?;
    let out = c.dir.join("vmcore");
    c.ctl()
        .save(&c.disks()?.dump, &out, false)
        .map_err(|e| format!("rkdumpctl save failed: {e}"))?;
    let got = std::fs::read(&out).map_err(|e| e.to_string())?;
    if got != crash.expected {
        return Err(format!(
            "saved vmcore differs: {} bytes vs expected {}",
            got.len(),
            crash.expected.len()
        ));
    }
    if let Some(l) = c.outcome.find("dump complete") {
        println!("    {}", l.text);
    }
    Ok(())
}

/// A fabricated crash dumped over COM2 and rebuilt byte for byte on the host.
fn serial_dump(name: &'static str, about: &'static str, layout: Layout) -> Scenario {
    Scenario::new(
        name,
        about,
        "console=ttyS0 elfcorehdr={elfcorehdr} rkdump.target=serial rkdump.exit=qemu rkdump.action=poweroff",
    )
    .crash(layout)
    .crash_memory()
    .com2()
    .timeouts(3)
    .line("elfcorehdr summary line", "elfcorehdr addr=0x1000000 phnum=")
    .check(|c| {
        let start = format!("dump start bytes={} target=serial:ttyS1", c.expected_len());
        holds(c.has(&start), "dump start with the expected size")
    })
    .line("at least one progress line", "progress ")
    .check(|c| {
        let complete = format!("dump complete bytes={}", c.expected_len());
        holds(c.has(&complete), "dump complete line")
    })
    .exit(Exit::Pass, "QEMU exit code 33 (pass)")
    .check(serial_vmcore_identical)
}

/// A fabricated crash dumped to the labelled disk on `ctrl`; the other disk is untouched, the
/// driver's preinit proved the reset, and `rkdumpctl save` is byte-identical.
fn disk_dump(name: &'static str, about: &'static str, ctrl: Ctrl) -> Scenario {
    // reset_devices: the driver's preinit is the first method and must prove itself.
    let (bdf, proof) = match ctrl {
        Ctrl::Virtio => ("0000:02:00.0", "device_status reads 0"),
        Ctrl::Nvme => ("0000:02:00.0", "nvme: CC 0x0 CSTS 0x0"),
        Ctrl::Ahci => ("0000:00:1f.2", "ahci: GHC 0x80000000"),
    };
    Scenario::new(
        name,
        about,
        "elfcorehdr={elfcorehdr} reset_devices rkdump.exit=qemu rkdump.action=poweroff",
    )
    .crash(Layout::Low)
    .crash_memory()
    .disks(ctrl, 64)
    .timeouts(2)
    .expect("dump started on a disk", |c| {
        c.any(|l| l.starts_with("dump start bytes=") && l.contains("target=disk:"))
    })
    .check(|c| {
        let complete = format!("dump complete bytes={}", c.expected_len());
        holds(c.has(&complete), "dump complete with the full size")
    })
    .exit(Exit::Pass, "QEMU exit code 33 (pass)")
    .check(|c| {
        let d = c.disks()?;
        holds(
            sha256(&d.other)? == d.other_before,
            "the unlabelled disk's SHA-256 is unchanged",
        )
    })
    .check(move |c| {
        let l = c.reinit_line(bdf);
        holds(
            l.contains("-> preinit,") && l.contains("ok") && l.contains(proof),
            format!("{bdf}: driver preinit ran first and proved the reset ({l})"),
        )
    })
    .check(disk_vmcore_identical)
}

/// A deliberate CPU exception is reported, then rkdump.action is followed.
fn selftest(
    name: &'static str,
    about: &'static str,
    append: &'static str,
    vector: &'static str,
) -> Scenario {
    Scenario::new(name, about, append)
        .check(move |c| {
            let report = format!("error: exception vector={vector}");
            holds(c.has(&report), "exception report with the vector")
        })
        .line("register dump", "regs rax=")
        .line(
            "finish follows rkdump.action after the fault",
            "finish outcome=failed action=halt",
        )
        .exit(Exit::Fail, "QEMU exit code 35 (fail reported)")
}

/// `rkdump.reset=` on two virtio-blk disks: every disk's reinit line must say `needle`s.
fn reinit_lines_contain(
    what: &'static str,
    needles: &'static [&'static str],
) -> impl Fn(&Ctx) -> Result<(), String> {
    move |c| {
        for bdf in ["0000:01:00.0", "0000:02:00.0"] {
            let l = c.reinit_line(bdf);
            if !needles.iter().all(|n| l.contains(n)) {
                return Err(format!("{bdf}: {what} ({l})"));
            }
        }
        Ok(())
    }
}

/// All scenarios, in run order.
pub fn all() -> Vec<Scenario> {
    vec![
        // A tiny fabricated crash at 0x1000000 so the run has something to dump and can pass.
        Scenario::new(
            "boot-echo",
            "PVH boot prints entered, parsed options and e820, exits with the pass code",
            "reset_devices elfcorehdr=0x1000000 rkdump.action=poweroff rkdump.exit=qemu",
        )
        .crash(Layout::Tiny)
        .com2()
        .line("`rkdump: entered`", "entered")
        .line("boot source reported as pvh", "boot source=pvh")
        .line(
            "the command line echoed verbatim",
            "cmdline \"reset_devices elfcorehdr=0x1000000 rkdump.action=poweroff rkdump.exit=qemu\"",
        )
        .line("reset_devices parsed", "option reset_devices=yes")
        .line("elfcorehdr parsed as 0x1000000", "option elfcorehdr=0x1000000")
        .line("action parsed as poweroff", "option action=poweroff")
        .line("reset policy auto (reset_devices present)", "option reset=auto")
        // 256 MiB guest: QEMU reports low RAM 0..0x9fbff and RAM from 1 MiB to the top.
        .line(
            "e820 RAM from 1 MiB to just below 256 MiB",
            "e820 0x0000000000100000-0x000000000ffdefff ram",
        )
        .line("no initrd reported", "initrd none")
        .line("the tiny dump completed", "dump complete bytes=")
        .exit(Exit::Pass, "QEMU exit code 33 (pass)"),
        Scenario::new(
            "poweroff",
            "rkdump.action=poweroff enters ACPI S5 and QEMU exits by itself",
            "rkdump.action=poweroff",
        )
        .expect("finish line names poweroff", |c| {
            c.any(|l| l.starts_with("finish ") && l.ends_with("action=poweroff"))
        })
        .expect("ACPI PM1 control block found through the RSDP", |c| {
            c.any(|l| l.starts_with("acpi rsdp=") && l.contains("pm1a_cnt=0x"))
        })
        .exit(Exit::Code(0), "QEMU exited 0 (ACPI S5 power-off)"),
        Scenario::new(
            "reboot",
            "default action resets the machine (QEMU -no-reboot exits)",
            "console=ttyS0",
        )
        .expect("finish line names reboot", |c| {
            c.any(|l| l.starts_with("finish ") && l.ends_with("action=reboot"))
        })
        .exit(Exit::Code(0), "QEMU exited 0 on reset (-no-reboot)"),
        selftest(
            "selftest-pagefault",
            "a deliberate #PF prints the exception report, then follows rkdump.action",
            "rkdump.selftest=pagefault rkdump.exit=qemu rkdump.action=halt",
            "14 (#PF)",
        ),
        selftest(
            "selftest-divide",
            "a deliberate #DE is reported, never a silent triple fault",
            "rkdump.selftest=divide rkdump.exit=qemu rkdump.action=halt",
            "0 (#DE)",
        ),
        // Empty command line: defaults, defined end (reboot, QEMU exits).
        Scenario::new(
            "bad-cmdline",
            "empty, unknown and malformed parameters give clear lines and a defined end",
            "",
        )
        .in_subdir("empty")
        .line("empty command line echoed", "cmdline \"\"")
        .line(
            "missing elfcorehdr reported as an error",
            "error: no elfcorehdr= on the command line",
        )
        .then_boot(
            "malformed",
            "quiet irqpoll nr_cpus=1 rkdump.bogus=1 elfcorehdr=zz rkdump.action=sideways rkdump.exit=qemu",
        )
        .line(
            "unknown parameter noted, not an error",
            "note: unknown parameter \"irqpoll\" ignored",
        )
        .line(
            "unknown rkdump.* parameter noted",
            "note: unknown parameter \"rkdump.bogus=1\" ignored",
        )
        .line(
            "malformed elfcorehdr is an error line",
            "error: malformed \"elfcorehdr=zz\" ignored",
        )
        .line(
            "malformed action is an error line",
            "error: malformed \"rkdump.action=sideways\" ignored",
        )
        .line(
            "malformed action falls back to the default",
            "option action=reboot",
        )
        .exit(Exit::Fail, "run ends with failure (nothing to dump)"),
        serial_dump(
            "serial-dump-low",
            "fabricated crash below 4 GiB dumped over COM2; rkdumpctl recv output is byte-identical to the host's vmcore",
            Layout::Low,
        ),
        serial_dump(
            "serial-dump-high",
            "fabricated crash with a RAM range above 4 GiB, same byte-for-byte check",
            Layout::High,
        ),
        // A header-shaped blob with a broken e_phentsize, loaded where elfcorehdr= points.
        Scenario::new(
            "corrupt-elfcorehdr",
            "a corrupted elfcorehdr gives rkdump: error: and a defined end",
            "elfcorehdr=0x1000000 rkdump.exit=qemu rkdump.action=poweroff",
        )
        .file("corrupt-hdr.bin", corrupt_header)
        .qemu_args(&[
            "-device",
            "loader,file={dir}/corrupt-hdr.bin,addr=0x1000000,force-raw=on",
        ])
        .line(
            "typed rejection of the corrupted header",
            "error: elfcorehdr at 0x1000000 unusable",
        )
        .exit(Exit::Fail, "QEMU exit code 35 (failure reported)"),
        disk_dump(
            "disk-virtio",
            "fabricated crash dumped to a labelled virtio-blk disk behind a root port; an unlabelled disk is untouched; rkdumpctl save is byte-identical",
            Ctrl::Virtio,
        ),
        disk_dump("disk-nvme", "the same on NVMe", Ctrl::Nvme),
        disk_dump(
            "disk-ahci",
            "the same on the q35 AHCI controller",
            Ctrl::Ahci,
        ),
        Scenario::new(
            "disk-bad-label",
            "a label with a bad CRC is refused with rkdump: error: and the dump falls back to serial",
            "elfcorehdr={elfcorehdr} rkdump.target=disk rkdump.exit=qemu rkdump.action=poweroff",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 16)
        .corrupt_label()
        .com2()
        .line(
            "rkdump: error: for the refused label",
            "error: no usable labelled dump disk",
        )
        .serial_fallback("fell back to serial")
        .dump_disk_untouched("the disk with the bad label is not written")
        .exit(Exit::Pass, "dump completed over serial (exit 33)"),
        // The dump disk is the second NVMe controller: bus 2 behind the second root port.
        Scenario::new(
            "disk-never-ready",
            "an NVMe dump disk that never becomes ready (test fault switch) costs its timeout, is reported, and the dump falls back to serial",
            "elfcorehdr={elfcorehdr} rkdump.fault=dead:02:00.0 rkdump.exit=qemu rkdump.action=poweroff",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Nvme, 16)
        .com2()
        .expect("the never-ready NVMe reported as an error and skipped", |c| {
            c.any(|l| l.starts_with("error: nvme 0000:02:00.0:") && l.contains("skipped after"))
        })
        .serial_fallback("fell back to serial")
        .dump_disk_untouched("nothing written to the faulty disk")
        .exit(Exit::Pass, "dump completed (exit 33)"),
        Scenario::new(
            "reinit-flr",
            "rkdump.reset=flr: FLR on virtio-blk behind a root port, proven by read-back, BARs restored, then the dump works",
            "elfcorehdr={elfcorehdr} reset_devices rkdump.reset=flr rkdump.exit=qemu rkdump.action=poweroff",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 16)
        .check(reinit_lines_contain(
            "FLR proven by read-back and BARs restored",
            &["-> flr,", "ok", "proof:", "restored"],
        ))
        .expect("the dump completes on the FLR-reset disk", |c| {
            c.any(|l| l.starts_with("dump complete") && l.contains("target=disk:"))
        })
        .exit(Exit::Pass, "exit 33"),
        Scenario::new(
            "reinit-pm",
            "rkdump.reset=pm on e1000e behind a root port: PM D3hot->D0 proves nothing in QEMU and is reported as such",
            "elfcorehdr={elfcorehdr} reset_devices rkdump.reset=pm rkdump.exit=qemu rkdump.action=poweroff",
        )
        .crash(Layout::Tiny)
        .qemu_args(&[
            "-device",
            "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1",
            "-netdev",
            "user,id=n0,restrict=on",
            "-device",
            "e1000e,netdev=n0,bus=rp0",
        ])
        .com2()
        .check(|c| {
            let l = c.reinit_line("0000:01:00.0");
            holds(
                l.contains("8086:10d3") && l.contains("pm: no effect"),
                format!("PM reset reported ineffective on e1000e ({l})"),
            )
        })
        .exit(Exit::Pass, "the run still completes (exit 33)"),
        Scenario::new(
            "reinit-deny",
            "a denied device is quiesced but never reset or probed; the dump goes elsewhere",
            "elfcorehdr={elfcorehdr} reset_devices rkdump.deny=1af4:1042 rkdump.exit=qemu rkdump.action=poweroff",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 16)
        .com2()
        .check(reinit_lines_contain(
            "denied, quiesced only",
            &["-> none", "denied"],
        ))
        .expect("a denied disk is never probed", |c| {
            c.outcome
                .rk_lines()
                .filter(|l| l.starts_with("disk 0000:0"))
                .all(|l| l.contains("not probed"))
        })
        .dump_disk_untouched("the denied (labelled) disk is not written")
        .serial_fallback("the dump goes to serial instead")
        .exit(Exit::Pass, "exit 33"),
        Scenario::new(
            "disk-too-small",
            "a disk smaller than the dump gets a truncated record, refused by save unless --partial",
            "elfcorehdr={elfcorehdr} rkdump.exit=qemu rkdump.action=poweroff",
        )
        .crash(Layout::Low)
        .crash_memory()
        .disks(Ctrl::Virtio, 4)
        .timeouts(2)
        .expect("truncation reported as an error line", |c| {
            c.any(|l| l.starts_with("error: dump of") && l.contains("does not fit"))
        })
        .check(|c| {
            let out = c.dir.join("vmcore");
            let refused = c.ctl().save(&c.disks()?.dump, &out, false).is_err();
            holds(refused, "rkdumpctl save refuses the truncated dump")
        })
        .check(|c| {
            let crash = c.crash()?;
            let out = c.dir.join("vmcore");
            let partial = c
                .ctl()
                .save(&c.disks()?.dump, &out, true)
                .map_err(|e| format!("save --partial failed: {e}"))?;
            let got = std::fs::read(&out).map_err(|e| e.to_string())?;
            holds(
                !got.is_empty() && crash.expected.starts_with(&got),
                "the partial vmcore is a prefix of the expected one",
            )?;
            println!(
                "    truncated dump: {} of {} bytes; {}",
                got.len(),
                crash.expected.len(),
                partial.trim()
            );
            Ok(())
        }),
    ]
}

/// A header-shaped blob with a broken e_phentsize.
fn corrupt_header() -> Vec<u8> {
    let mut blob = vec![0u8; 4096];
    blob[..4].copy_from_slice(b"\x7fELF");
    blob[4] = 2;
    blob[5] = 1;
    blob[6] = 1;
    blob[16] = 4; // ET_CORE
    blob[18] = 62; // EM_X86_64
    blob[20] = 1;
    blob[32] = 64; // e_phoff
    blob[52] = 64; // e_ehsize
    blob[54] = 55; // e_phentsize: wrong on purpose
    blob[56] = 3; // e_phnum
    blob
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

impl Scenario {
    /// Runs every boot in `target/scenarios/<name>`, stopping at the first failure.
    fn run(&self, env: &Env) -> Result<(), String> {
        let dir = env.target.join("scenarios").join(self.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        self.boots.iter().try_for_each(|b| b.run(env, &dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{ConsoleLog, Line};

    #[test]
    fn scenario_names_are_unique_and_every_boot_checks_something() {
        let all = all();
        assert_eq!(all.len(), 18);
        for (i, s) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|o| o.name != s.name), "{}", s.name);
            assert!(s.boots.iter().all(|b| !b.checks.is_empty()), "{}", s.name);
        }
    }

    /// Judges the first boot of scenario `name` on a canned console and exit.
    fn judge(
        name: &str,
        lines: &[&str],
        exit_code: Option<i32>,
        timed_out: bool,
    ) -> Result<(), String> {
        let env = Env {
            elf: PathBuf::new(),
            bzimage: PathBuf::new(),
            target: PathBuf::new(),
            rkdumpctl: Rkdumpctl(PathBuf::new()),
        };
        let outcome = Outcome {
            log: ConsoleLog {
                lines: lines
                    .iter()
                    .map(|t| Line {
                        t: Duration::ZERO,
                        text: t.to_string(),
                    })
                    .collect(),
            },
            stderr: String::new(),
            exit_code,
            timed_out,
            stopped: None,
            wall: Duration::ZERO,
        };
        let ctx = Ctx {
            env: &env,
            dir: Path::new("/nonexistent"),
            outcome,
            crash: None,
            disks: None,
        };
        let scenario = all().into_iter().find(|s| s.name == name).unwrap();
        scenario.boots[0].judge(&ctx)
    }

    /// Scenarios must be able to fail: a wrong exit code, a timeout, a missing line.
    #[test]
    fn checks_pass_and_fail_on_canned_consoles() {
        let poweroff = [
            "rkdump: acpi rsdp=0xf52a0 pm1a_cnt=0x604",
            "rkdump: finish outcome=failed action=poweroff",
        ];
        judge("poweroff", &poweroff, Some(0), false).unwrap();
        let e = judge("poweroff", &poweroff, Some(33), false).unwrap_err();
        assert!(e.contains("QEMU exited 0 (ACPI S5 power-off)"), "{e}");
        let e = judge("poweroff", &poweroff, None, true).unwrap_err();
        assert!(e.contains("before the timeout"), "{e}");
        let e = judge("poweroff", &poweroff[1..], Some(0), false).unwrap_err();
        assert!(e.contains("ACPI PM1"), "{e}");
        let e = judge("poweroff", &poweroff[..1], Some(0), false).unwrap_err();
        assert!(e.contains("`rkdump: finish`"), "{e}");

        let divide = [
            "rkdump: error: exception vector=0 (#DE) rip=0x1",
            "rkdump: regs rax=0x0",
            "rkdump: finish outcome=failed action=halt",
        ];
        judge("selftest-divide", &divide, Some(35), false).unwrap();
        let e = judge("selftest-divide", &divide, Some(33), false).unwrap_err();
        assert!(e.contains("exit code 35"), "{e}");
        let e = judge("selftest-pagefault", &divide, Some(35), false).unwrap_err();
        assert!(e.contains("exception report with the vector"), "{e}");
    }

    #[test]
    fn crash_boots_name_the_header_address() {
        for s in all() {
            for b in &s.boots {
                if b.append.contains("{elfcorehdr}") {
                    assert!(b.crash.is_some(), "{}", s.name);
                }
            }
        }
    }
}
