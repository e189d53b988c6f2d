//! What a scenario is and how one runs: [`Scenario`] (a name, what it proves, its [`Boot`]s) with
//! the builder methods [`list`](super::list) declares scenarios with, the [`Ctx`] a boot leaves
//! for its checks, and the shared part of every boot (fabricated crash, disks, QEMU, a defined
//! end, then the checks in order).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Env;
use crate::disk::{self, Fill};
use crate::fabricate::{self, Crash, Layout};
use crate::qemu::{Accel, Controller, Exit, Machine, Outcome, Run};
use crate::tools::Rkdumpctl;

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
    pub(super) fn crash(&self) -> Result<&Crash, String> {
        self.crash
            .as_ref()
            .ok_or("the boot has no fabricated crash".into())
    }

    /// The disks (a check that needs them is only declared on a boot that has them).
    pub(super) fn disks(&self) -> Result<&Disks, String> {
        self.disks.as_ref().ok_or("the boot has no disks".into())
    }

    /// The host tool.
    pub(super) fn ctl(&self) -> &Rkdumpctl {
        &self.env.rkdumpctl
    }

    /// Length of the vmcore rkdump must write.
    pub(super) fn expected_len(&self) -> usize {
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
    /// COM2 drained at this many bytes a second instead of at once.
    com2_line: Option<u64>,
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

    /// COM2 to `com2.bin` through a line that carries `bytes_per_s` (QEMU's UART sends as fast
    /// as its backend takes bytes, whatever the baud rate: the line is the slow reader of a FIFO,
    /// whose 64 KiB buffer fills, after which the guest's UART stays full as on a real port).
    pub fn com2_line(self, bytes_per_s: u64) -> Scenario {
        self.boot(|b| {
            b.com2 = true;
            b.com2_line = Some(bytes_per_s);
        })
    }

    /// A file written into the boot's directory before QEMU starts.
    pub fn file(self, name: &'static str, contents: Contents) -> Scenario {
        self.boot(|b| b.files.push((name, contents)))
    }

    /// Extra QEMU arguments (`{dir}` stands for the boot's directory).
    pub fn qemu_args(self, args: &[&str]) -> Scenario {
        self.boot(|b| b.extra.extend(args.iter().map(|a| a.to_string())))
    }

    /// The hard timeout as a multiple of the one-boot timeout (60 s).
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
            com2_line: None,
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
        let mut line = None;
        if self.com2 {
            let com2 = dir.join("com2.bin");
            let _ = std::fs::remove_file(&com2);
            m = match self.com2_line {
                None => m.com2_file(&com2),
                Some(rate) => {
                    let l = SlowLine::start(&dir.join("com2.fifo"), &com2, rate)?;
                    let m = m.com2_file(&l.fifo);
                    line = Some(l);
                    m
                }
            };
        }
        let outcome = Run::new(&m, &dir, self.timeout).start();
        if let Some(l) = line {
            l.finish()?;
        }
        let outcome = outcome?;
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

/// A serial line of limited rate: a FIFO QEMU writes COM2 into and a thread that reads it at
/// `bytes_per_s` into the capture file.
struct SlowLine {
    fifo: PathBuf,
    reader: JoinHandle<Result<u64, String>>,
}

impl SlowLine {
    fn start(fifo: &Path, out: &Path, bytes_per_s: u64) -> Result<SlowLine, String> {
        let _ = std::fs::remove_file(fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(fifo)
            .status()
            .map_err(|e| format!("mkfifo: {e}"))?;
        if !made.success() {
            return Err(format!("mkfifo {} failed: {made}", fifo.display()));
        }
        let (src, dst) = (fifo.to_path_buf(), out.to_path_buf());
        let reader = std::thread::spawn(move || -> Result<u64, String> {
            // Blocks until QEMU opens the other end.
            let mut src =
                std::fs::File::open(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            let mut dst =
                std::fs::File::create(&dst).map_err(|e| format!("{}: {e}", dst.display()))?;
            let mut buf = [0u8; 256];
            let mut total = 0u64;
            // When the line is free again: an idle line earns no credit for a later burst.
            let mut free_at = Instant::now();
            loop {
                let n = src.read(&mut buf).map_err(|e| format!("com2 line: {e}"))?;
                if n == 0 {
                    return Ok(total);
                }
                dst.write_all(&buf[..n])
                    .map_err(|e| format!("com2 capture: {e}"))?;
                total += n as u64;
                free_at = free_at.max(Instant::now())
                    + Duration::from_micros(n as u64 * 1_000_000 / bytes_per_s);
                std::thread::sleep(free_at.saturating_duration_since(Instant::now()));
            }
        });
        Ok(SlowLine {
            fifo: fifo.to_path_buf(),
            reader,
        })
    }

    /// After QEMU has ended: lets the reader drain what is left in the FIFO and waits for it.
    fn finish(self) -> Result<u64, String> {
        // A reader still blocked in open (QEMU never opened its end) is released by this
        // open-and-close (O_RDWR never blocks on a FIFO) and then reads end of file.
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.fifo);
        self.reader
            .join()
            .map_err(|_| "com2 line reader panicked".to_string())?
    }
}

/// `Ok` if `cond`, else what did not hold.
pub(super) fn holds(cond: bool, what: impl Into<String>) -> Result<(), String> {
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

/// SHA-256 of a file.
pub(super) fn sha256(path: &Path) -> Result<[u8; 32], String> {
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

impl Scenario {
    /// Runs every boot in `target/scenarios/<name>`, stopping at the first failure.
    pub(super) fn run(&self, env: &Env) -> Result<(), String> {
        let dir = env.target.join("scenarios").join(self.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        self.boots.iter().try_for_each(|b| b.run(env, &dir))
    }
}

#[cfg(test)]
mod tests {
    use super::super::list::all;
    use super::*;
    use crate::console::{ConsoleLog, Line};

    #[test]
    fn scenario_names_are_unique_and_every_boot_checks_something() {
        let all = all();
        assert_eq!(all.len(), 23);
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
