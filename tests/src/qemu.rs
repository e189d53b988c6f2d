//! The one QEMU runner and the one machine-argument builder of every host harness (scenarios,
//! `cargo xtask run`, e2e, bench): [`Machine`] builds a q35 command line, [`Run`] spawns it with
//! COM1 on a pipe, timestamps every console line with the host clock (time since spawn), writes
//! `qemu-cmdline.txt`, `console.log` and `qemu-stderr.log` into the run's directory, offers each
//! line to an optional stop predicate, kills QEMU at a hard timeout, and keeps QEMU's exit
//! status. [`Exit`] maps isa-debug-exit (`(value << 1) | 1`: rkdump writes 0x10 for pass -> 33,
//! 0x11 for fail -> 35).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::console::{ConsoleLog, Line};

/// QEMU exit status that means "rkdump reported success through isa-debug-exit".
pub const EXIT_PASS: i32 = 33;
/// QEMU exit status that means "rkdump reported failure through isa-debug-exit".
pub const EXIT_FAIL: i32 = 35;

/// How long QEMU may keep running after the stop predicate fired (to collect the last lines).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How QEMU ended, with isa-debug-exit's codes named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 33: rkdump wrote 0x10 to isa-debug-exit.
    Pass,
    /// Exit status 35: rkdump wrote 0x11 to isa-debug-exit.
    Fail,
    /// Any other exit status (0 after ACPI power-off or a reset under `-no-reboot`).
    Code(i32),
    /// QEMU did not exit by itself (killed at the timeout or by the stop predicate).
    Killed,
}

impl Exit {
    /// Maps QEMU's exit code (`None` when it was killed).
    pub fn from_code(code: Option<i32>) -> Exit {
        match code {
            Some(EXIT_PASS) => Exit::Pass,
            Some(EXIT_FAIL) => Exit::Fail,
            Some(c) => Exit::Code(c),
            None => Exit::Killed,
        }
    }
}

/// Why QEMU could not be run (a guest that misbehaves is an [`Outcome`], not an error).
#[derive(Debug)]
pub enum Error {
    /// The command line is empty.
    NoProgram,
    /// A run artefact could not be written or read.
    Artefact {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// QEMU could not be started.
    Spawn {
        /// The program.
        program: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Waiting for QEMU failed.
    Wait(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoProgram => write!(f, "empty QEMU command"),
            Error::Artefact { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Spawn { program, source } => {
                write!(f, "cannot start {}: {source}", program.display())
            }
            Error::Wait(e) => write!(f, "waiting for QEMU: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

/// The accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// TCG with one host thread per vCPU (the default: CI machines have no KVM).
    Tcg,
    /// KVM.
    Kvm,
}

impl Accel {
    /// KVM when `RKDUMP_KVM=1`, else TCG.
    pub fn from_env() -> Accel {
        if std::env::var("RKDUMP_KVM").as_deref() == Ok("1") {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg,thread=multi",
            Accel::Kvm => "kvm",
        }
    }
}

/// A block device controller for [`Machine::disk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Controller {
    /// virtio-blk-pci with one queue.
    VirtioBlk,
    /// An NVMe controller with this serial number.
    Nvme(String),
    /// A port of the q35 AHCI controller (`ide.<n>`).
    AhciPort(u8),
}

/// A QEMU command line under construction: program, then arguments in order.
#[derive(Clone, Debug)]
pub struct Machine {
    program: PathBuf,
    args: Vec<String>,
}

impl Machine {
    /// An empty command line: for argument fragments handed to another builder.
    pub fn fragment() -> Machine {
        Machine {
            program: PathBuf::from("qemu-system-x86_64"),
            args: Vec::new(),
        }
    }

    /// q35 with `memory` (QEMU's `-m` syntax), no display, no reboot, COM1 on the runner's pipe.
    pub fn q35(memory: &str, accel: Accel) -> Machine {
        Machine::fragment().args([
            "-machine",
            "q35",
            "-accel",
            accel.arg(),
            "-m",
            memory,
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
    }

    /// The machine rkdump boots on directly (scenarios, `cargo xtask run`): q35, `-cpu max`, one
    /// CPU, no monitor, isa-debug-exit at 0xf4 for the pass/fail codes.
    pub fn rkdump(memory: &str, accel: Accel) -> Machine {
        Machine::q35(memory, accel).args([
            "-cpu",
            "max",
            "-smp",
            "1",
            "-monitor",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
        ])
    }

    /// Runs this program instead of `qemu-system-x86_64` from PATH.
    pub fn program(mut self, program: &Path) -> Machine {
        self.program = program.to_path_buf();
        self
    }

    /// Adds raw arguments.
    pub fn args<I, S>(mut self, args: I) -> Machine
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Number of vCPUs.
    pub fn smp(self, cpus: u32) -> Machine {
        self.args(["-smp".to_string(), cpus.to_string()])
    }

    /// No default devices (NIC, parallel port, monitor...).
    pub fn nodefaults(self) -> Machine {
        self.args(["-nodefaults"])
    }

    /// Boots `kernel` with `-kernel` and the given command line.
    pub fn kernel(self, kernel: &Path, append: &str) -> Machine {
        self.args([
            "-kernel".to_string(),
            kernel.display().to_string(),
            "-append".into(),
            append.into(),
        ])
    }

    /// Loads `initrd` with `-initrd`.
    pub fn initrd(self, initrd: &Path) -> Machine {
        self.args(["-initrd".to_string(), initrd.display().to_string()])
    }

    /// Sends COM2 to a file (COM1 is the runner's pipe, so this must follow [`Machine::q35`]).
    pub fn com2_file(self, path: &Path) -> Machine {
        self.args(["-serial".to_string(), format!("file:{}", path.display())])
    }

    /// QEMU's own diagnostics (triple faults, CPU state at each reset, guest errors) to a file.
    pub fn debug_log(self, path: &Path) -> Machine {
        self.args([
            "-d".to_string(),
            "cpu_reset,guest_errors".into(),
            "-D".into(),
            path.display().to_string(),
        ])
    }

    /// A PCIe root port on pcie.0 (`chassis` and `slot` both `number`): devices behind it get
    /// PCIe capabilities (FLR) and can be reset through the port's bridge control.
    pub fn root_port(self, id: &str, number: u32) -> Machine {
        self.args([
            "-device".to_string(),
            format!("pcie-root-port,id={id},bus=pcie.0,chassis={number},slot={number}"),
        ])
    }

    /// A raw disk image `image` as drive `id` on `controller`, on PCI bus `bus` if given.
    pub fn disk(
        self,
        id: &str,
        image: &Path,
        controller: &Controller,
        bus: Option<&str>,
    ) -> Machine {
        let on_bus = bus.map_or(String::new(), |b| format!(",bus={b}"));
        let device = match controller {
            Controller::VirtioBlk => format!("virtio-blk-pci,drive={id}{on_bus},num-queues=1"),
            Controller::Nvme(serial) => format!("nvme,drive={id}{on_bus},serial={serial}"),
            Controller::AhciPort(port) => format!("ide-hd,drive={id},bus=ide.{port}"),
        };
        self.args([
            "-drive".to_string(),
            format!(
                "file={},if=none,id={id},format=raw,cache=unsafe",
                image.display()
            ),
            "-device".into(),
            device,
        ])
    }

    /// The arguments (without the program), for handing a fragment to another builder.
    pub fn into_args(self) -> Vec<String> {
        self.args
    }

    /// The command line, shell-quoted, for logs and for pasting into a terminal.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs QEMU with the console on this terminal and returns its exit status (`cargo xtask
    /// run`: interactive, no timeout).
    pub fn run_interactive(&self) -> Result<std::process::ExitStatus, Error> {
        Command::new(&self.program)
            .args(&self.args)
            .status()
            .map_err(|source| Error::Spawn {
                program: self.program.clone(),
                source,
            })
    }
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// What happened to one QEMU run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The timestamped console (COM1).
    pub log: ConsoleLog,
    /// QEMU's stderr.
    pub stderr: String,
    /// QEMU's exit code if it exited by itself.
    pub exit_code: Option<i32>,
    /// QEMU was killed at the hard timeout.
    pub timed_out: bool,
    /// QEMU was killed early because the stop predicate fired (its reason).
    pub stopped: Option<String>,
    /// Host time from spawn to QEMU's end.
    pub wall: Duration,
}

impl Outcome {
    /// QEMU's end with isa-debug-exit's codes named.
    pub fn exit(&self) -> Exit {
        Exit::from_code(self.exit_code)
    }

    /// The first console line containing `needle`.
    pub fn find(&self, needle: &str) -> Option<&Line> {
        self.log.lines.iter().find(|l| l.text.contains(needle))
    }

    /// All `rkdump: ` lines with the prefix removed.
    pub fn rk_lines(&self) -> impl Iterator<Item = &str> {
        self.log
            .lines
            .iter()
            .filter_map(|l| l.text.strip_prefix("rkdump: "))
    }
}

/// One QEMU run: the machine, where its artefacts go, and when to stop.
pub struct Run<'a> {
    machine: &'a Machine,
    dir: &'a Path,
    timeout: Duration,
    echo: &'a dyn Fn(&str) -> bool,
    stop: &'a dyn Fn(&Line) -> Option<String>,
}

impl<'a> Run<'a> {
    /// Runs `machine` with artefacts in `dir` and a hard `timeout`; echoes nothing and never
    /// stops early unless told.
    pub fn new(machine: &'a Machine, dir: &'a Path, timeout: Duration) -> Run<'a> {
        Run {
            machine,
            dir,
            timeout,
            echo: &|_| false,
            stop: &|_| None,
        }
    }

    /// Echoes the console lines `echo` selects live on stderr.
    pub fn echo(mut self, echo: &'a dyn Fn(&str) -> bool) -> Run<'a> {
        self.echo = echo;
        self
    }

    /// Stops the run (after a short grace for the last lines) when `stop` returns a reason.
    pub fn stop(mut self, stop: &'a dyn Fn(&Line) -> Option<String>) -> Run<'a> {
        self.stop = stop;
        self
    }

    /// Spawns QEMU and collects its console until it exits, the timeout hits, or `stop` fires.
    pub fn start(&self) -> Result<Outcome, Error> {
        let artefact = |name: &str| self.dir.join(name);
        let create =
            |path: PathBuf| File::create(&path).map_err(|source| Error::Artefact { path, source });
        let cmdline_path = artefact("qemu-cmdline.txt");
        std::fs::write(&cmdline_path, format!("{}\n", self.machine.command_line())).map_err(
            |source| Error::Artefact {
                path: cmdline_path,
                source,
            },
        )?;
        let stderr_path = artefact("qemu-stderr.log");
        let stderr = create(stderr_path.clone())?;
        let mut console = create(artefact("console.log"))?;
        if self.machine.program.as_os_str().is_empty() {
            return Err(Error::NoProgram);
        }
        let start = Instant::now();
        let mut child = Command::new(&self.machine.program)
            .args(&self.machine.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|source| Error::Spawn {
                program: self.machine.program.clone(),
                source,
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or(Error::Wait(std::io::Error::other(
                "QEMU's stdout is not a pipe",
            )))?;
        let (tx, rx) = mpsc::channel::<Line>();
        let reader = std::thread::spawn(move || {
            let mut rd = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match rd.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let t = start.elapsed();
                        let text = String::from_utf8_lossy(&buf);
                        let text = text.trim_end_matches(['\n', '\r']).replace('\r', "");
                        if tx.send(Line { t, text }).is_err() {
                            break;
                        }
                    }
                }
            }
        });

        let mut lines = Vec::new();
        let mut deadline = start + self.timeout;
        let mut stopped: Option<String> = None;
        let mut timed_out = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(line) => {
                    let rendered = ConsoleLog::render_line(&line);
                    let _ = writeln!(console, "{rendered}");
                    if (self.echo)(&line.text) {
                        eprintln!("    {rendered}");
                    }
                    if stopped.is_none()
                        && let Some(reason) = (self.stop)(&line)
                    {
                        stopped = Some(reason);
                        deadline = deadline.min(Instant::now() + STOP_GRACE);
                    }
                    lines.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // stdout closed: QEMU is exiting by itself.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // The exit status is kept whenever QEMU exits by itself before the deadline, even after
        // its stdout closed; past the deadline it is killed and the run reports why.
        let exit_code = loop {
            if let Some(status) = child.try_wait().map_err(Error::Wait)? {
                break status.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                timed_out = stopped.is_none();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let wall = start.elapsed();
        let _ = reader.join();
        // Lines that arrived between the deadline and the kill.
        for line in rx.try_iter() {
            let _ = writeln!(console, "{}", ConsoleLog::render_line(&line));
            lines.push(line);
        }
        if exit_code.is_some() && stopped.is_some() {
            // It exited by itself within the grace period: not a forced stop.
            stopped = None;
        }
        let stderr = std::fs::read_to_string(&stderr_path).map_err(|source| Error::Artefact {
            path: stderr_path,
            source,
        })?;
        Ok(Outcome {
            log: ConsoleLog { lines },
            stderr,
            exit_code,
            timed_out,
            stopped,
            wall,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_pass_and_fail() {
        assert_eq!(Exit::from_code(Some(33)), Exit::Pass);
        assert_eq!(Exit::from_code(Some(35)), Exit::Fail);
        assert_eq!(Exit::from_code(Some(0)), Exit::Code(0));
        assert_eq!(Exit::from_code(None), Exit::Killed);
    }

    #[test]
    fn disks_attach_behind_their_bus() {
        let img = Path::new("/tmp/d.img");
        let args = Machine::fragment()
            .root_port("rp1", 1)
            .disk("dump", img, &Controller::Nvme("s".into()), Some("rp1"))
            .into_args();
        assert_eq!(
            args,
            [
                "-device",
                "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1",
                "-drive",
                "file=/tmp/d.img,if=none,id=dump,format=raw,cache=unsafe",
                "-device",
                "nvme,drive=dump,bus=rp1,serial=s",
            ]
        );
    }

    #[test]
    fn command_line_is_shell_quoted() {
        let m = Machine::fragment().kernel(Path::new("/k"), "a b");
        assert_eq!(
            m.command_line(),
            "qemu-system-x86_64 -kernel /k -append 'a b'"
        );
    }

    /// The runner must be able to fail: a program that exits with 35 is a failure, one that
    /// outlives its timeout is killed and reported as such, and the console is timestamped.
    #[test]
    fn runner_keeps_exit_status_and_enforces_timeout() {
        let dir = std::env::temp_dir().join(format!("rkdump-runner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sh = |script: &str| {
            Machine::fragment()
                .program(Path::new("/bin/sh"))
                .args(["-c", script])
        };
        let fail = sh("echo 'rkdump: finish outcome=failed'; exit 35");
        let o = Run::new(&fail, &dir, Duration::from_secs(30))
            .start()
            .unwrap();
        assert_eq!(o.exit(), Exit::Fail);
        assert!(!o.timed_out);
        assert_eq!(o.rk_lines().collect::<Vec<_>>(), ["finish outcome=failed"]);
        let hang = sh("echo up; exec sleep 30");
        let o = Run::new(&hang, &dir, Duration::from_millis(500))
            .start()
            .unwrap();
        assert!(o.timed_out);
        assert_eq!(o.exit(), Exit::Killed);
        assert!(o.find("up").is_some());
        let stop = |l: &Line| (l.text == "up").then(|| "seen".to_string());
        let o = Run::new(&hang, &dir, Duration::from_secs(30))
            .stop(&stop)
            .start()
            .unwrap();
        assert_eq!(o.stopped.as_deref(), Some("seen"));
        assert!(!o.timed_out);
        // Closing stdout is no exit: the timeout still holds.
        let mute = sh("echo bye; exec >&-; exec sleep 30");
        let o = Run::new(&mute, &dir, Duration::from_millis(500))
            .start()
            .unwrap();
        assert!(o.timed_out && o.find("bye").is_some());
        assert_eq!(o.exit(), Exit::Killed);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
