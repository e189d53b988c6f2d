//! Runs one QEMU instance: COM1 captured line by line (host-clock timestamps), optional COM2 to
//! a file, a hard timeout after which QEMU is killed, and the exit status mapped for
//! isa-debug-exit (`(value << 1) | 1`; rkdump writes 0x10 for pass -> 33, 0x11 for fail -> 35).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// QEMU exit status that means "rkdump reported success through isa-debug-exit".
pub const EXIT_PASS: i32 = 33;
/// QEMU exit status that means "rkdump reported failure through isa-debug-exit".
pub const EXIT_FAIL: i32 = 35;

/// One console line with the host time since QEMU started.
#[derive(Clone, Debug)]
pub struct Line {
    /// Time since spawn.
    pub at: Duration,
    /// The text, without line terminator.
    pub text: String,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit code (None if killed).
    pub exit_code: Option<i32>,
    /// Whether the timeout fired.
    pub timed_out: bool,
    /// COM1 lines.
    pub console: Vec<Line>,
    /// QEMU's stderr.
    pub stderr: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// The first console line containing `needle`.
    pub fn find(&self, needle: &str) -> Option<&Line> {
        self.console.iter().find(|l| l.text.contains(needle))
    }

    /// All `rkdump: ` lines with the prefix removed.
    pub fn rk_lines(&self) -> impl Iterator<Item = &str> {
        self.console
            .iter()
            .filter_map(|l| l.text.trim_end_matches('\r').strip_prefix("rkdump: "))
    }

    /// The last `n` console lines, for failure reports.
    pub fn tail(&self, n: usize) -> String {
        let start = self.console.len().saturating_sub(n);
        self.console[start..]
            .iter()
            .map(|l| format!("  [{:7.3}] {}\n", l.at.as_secs_f64(), l.text))
            .collect()
    }
}

/// A QEMU invocation under construction.
#[derive(Clone, Debug)]
pub struct Qemu {
    args: Vec<String>,
    timeout: Duration,
    /// Stop as soon as a console line contains this text (then kill QEMU).
    pub stop_on: Option<String>,
}

impl Qemu {
    /// q35 machine under TCG (KVM with `RKDUMP_KVM=1`), no display, COM1 to the runner.
    pub fn q35(memory_mib: u32) -> Self {
        let accel = if std::env::var("RKDUMP_KVM").as_deref() == Ok("1") {
            "kvm"
        } else {
            "tcg,thread=multi"
        };
        let args = [
            "-machine",
            "q35",
            "-accel",
            accel,
            "-cpu",
            "max",
            "-m",
            &format!("{memory_mib}M"),
            "-smp",
            "1",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Qemu {
            args,
            timeout: Duration::from_secs(60),
            stop_on: None,
        }
    }

    /// Adds raw arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Boots `kernel` with `-kernel` and the given command line.
    pub fn kernel(self, kernel: &std::path::Path, append: &str) -> Self {
        self.args([
            "-kernel".to_string(),
            kernel.display().to_string(),
            "-append".into(),
            append.into(),
        ])
    }

    /// Sends COM2 to a file.
    pub fn com2_file(self, path: &std::path::Path) -> Self {
        self.args(["-serial".to_string(), format!("file:{}", path.display())])
    }

    /// Sets the hard timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The full argument list (for logs).
    pub fn command_line(&self) -> String {
        format!("qemu-system-x86_64 {}", self.args.join(" "))
    }

    /// Runs QEMU to completion or timeout.
    pub fn run(&self) -> Result<Outcome, String> {
        let start = Instant::now();
        let mut child: Child = Command::new("qemu-system-x86_64")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let (tx, rx) = mpsc::channel::<Line>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while let Ok(n) = r.read_until(b'\n', &mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if tx
                    .send(Line {
                        at: start.elapsed(),
                        text,
                    })
                    .is_err()
                {
                    break;
                }
                buf.clear();
            }
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
            s
        });
        let mut console = Vec::new();
        let mut timed_out = false;
        let exit_code;
        loop {
            while let Ok(line) = rx.try_recv() {
                let stop = self
                    .stop_on
                    .as_deref()
                    .is_some_and(|s| line.text.contains(s));
                console.push(line);
                if stop {
                    let _ = child.kill();
                }
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                exit_code = status.code();
                break;
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                exit_code = None;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = reader.join();
        console.extend(rx.try_iter());
        let stderr = err_reader.join().unwrap_or_default();
        Ok(Outcome {
            exit_code,
            timed_out,
            console,
            stderr,
            elapsed: start.elapsed(),
        })
    }
}

/// Directory for a scenario's artefacts (`target/scenarios/<name>`), created on demand.
pub fn artefact_dir(target: &std::path::Path, name: &str) -> Result<PathBuf, String> {
    let dir = target.join("scenarios").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
