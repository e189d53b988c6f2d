//! Runs QEMU with COM1 on a pipe: every console line is timestamped with the host clock (time
//! since spawn), appended to `console.log` as it arrives, and offered to a stop predicate. A hard
//! timeout kills QEMU; the outcome says whether QEMU exited by itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::console::{ConsoleLog, Line};

/// How long QEMU may keep running after the stop predicate fired (to collect the last lines).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What happened to one QEMU run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The timestamped console.
    pub log: ConsoleLog,
    /// QEMU's exit code if it exited by itself.
    pub exit_code: Option<i32>,
    /// QEMU was killed at the hard timeout.
    pub timed_out: bool,
    /// QEMU was killed early because the stop predicate fired (its reason).
    pub stopped: Option<String>,
    /// Host time from spawn to QEMU's end.
    pub wall: Duration,
}

/// How to run QEMU.
pub struct Run<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Hard timeout.
    pub timeout: Duration,
    /// Where the timestamped console goes.
    pub console_log: &'a Path,
    /// Where QEMU's stderr goes.
    pub stderr_log: &'a Path,
    /// Which lines to echo live on the terminal.
    pub echo: &'a dyn Fn(&str) -> bool,
    /// Returns a reason to stop the run early.
    pub stop: &'a dyn Fn(&Line) -> Option<String>,
}

/// Spawns QEMU and collects its console until it exits, the timeout hits, or `stop` fires.
pub fn run(r: &Run<'_>) -> Result<Outcome, String> {
    let (prog, args) = r.argv.split_first().ok_or("empty QEMU command")?;
    let stderr = File::create(r.stderr_log)
        .map_err(|e| format!("creating {}: {e}", r.stderr_log.display()))?;
    let mut console = File::create(r.console_log)
        .map_err(|e| format!("creating {}: {e}", r.console_log.display()))?;
    let start = Instant::now();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| format!("starting {prog}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no QEMU stdout")?;
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
    let mut deadline = start + r.timeout;
    let mut stopped: Option<String> = None;
    let mut timed_out = false;
    let mut eof = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = stopped.is_none();
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                let rendered = ConsoleLog::render_line(&line);
                let _ = writeln!(console, "{rendered}");
                if (r.echo)(&line.text) {
                    eprintln!("    {rendered}");
                }
                if stopped.is_none()
                    && let Some(reason) = (r.stop)(&line)
                {
                    stopped = Some(reason);
                    deadline = deadline.min(Instant::now() + STOP_GRACE);
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eof = true;
                break;
            }
        }
    }
    let exit_code = if eof {
        // stdout closed: QEMU is exiting by itself.
        child
            .wait()
            .map_err(|e| format!("waiting for QEMU: {e}"))?
            .code()
    } else if let Some(status) = child
        .try_wait()
        .map_err(|e| format!("waiting for QEMU: {e}"))?
    {
        timed_out = false;
        status.code()
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
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
    Ok(Outcome {
        log: ConsoleLog { lines },
        exit_code,
        timed_out,
        stopped,
        wall,
    })
}
