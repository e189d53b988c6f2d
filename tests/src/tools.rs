//! The one way the host harness calls other programs: rkdumpctl's subcommands and Debian's tools
//! (readelf, makedumpfile, kexec, busybox, QEMU), found through PATH and the sbin directories,
//! run to completion with their output kept for the failure report.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tool that could not be run or reported failure.
#[derive(Debug)]
pub enum Error {
    /// The program could not be started.
    Spawn {
        /// The command line.
        command: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The program exited unsuccessfully.
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spawn { command, source } => write!(f, "cannot run `{command}`: {source}"),
            Error::Failed {
                command,
                status,
                output,
            } => write!(f, "`{command}` failed ({status}): {}", output.trim()),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

/// Runs `cmd` to completion; its stdout followed by its stderr on success.
pub fn output(cmd: &mut Command) -> Result<String, Error> {
    let command = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    )
    .trim_end()
    .to_string();
    let out = cmd.output().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(Error::Failed {
            command,
            status: out.status,
            output: text,
        })
    }
}

/// Finds `name` in PATH or the sbin directories (Debian keeps kexec and makedumpfile there).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The host build of rkdumpctl.
#[derive(Clone, Debug)]
pub struct Rkdumpctl(pub PathBuf);

impl Rkdumpctl {
    fn run<I, S>(&self, args: I) -> Result<String, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        output(Command::new(&self.0).args(args))
    }

    /// `rkdumpctl prepare <disk>`: writes the dump-disk label.
    pub fn prepare(&self, disk: &Path) -> Result<String, Error> {
        self.run([OsStr::new("prepare"), disk.as_os_str()])
    }

    /// `rkdumpctl prepare <image> --partition <n>`: labels partition `n` of a disk image.
    pub fn prepare_partition(&self, disk: &Path, n: u32) -> Result<String, Error> {
        let n = n.to_string();
        self.run([
            OsStr::new("prepare"),
            disk.as_os_str(),
            OsStr::new("--partition"),
            OsStr::new(&n),
        ])
    }

    /// `rkdumpctl save <image> --partition <n> -o <out>`: extracts a dump from a labelled
    /// partition of a disk image.
    pub fn save_partition(&self, disk: &Path, n: u32, out: &Path) -> Result<String, Error> {
        let n = n.to_string();
        self.run([
            OsStr::new("save"),
            disk.as_os_str(),
            OsStr::new("--partition"),
            OsStr::new(&n),
            OsStr::new("-o"),
            out.as_os_str(),
        ])
    }

    /// `rkdumpctl save <disk> -o <out> [--partial]`: extracts a dump from a labelled disk.
    pub fn save(&self, disk: &Path, out: &Path, partial: bool) -> Result<String, Error> {
        let mut args = vec![
            OsStr::new("save"),
            disk.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ];
        if partial {
            args.push(OsStr::new("--partial"));
        }
        self.run(args)
    }

    /// `rkdumpctl recv <com2 capture> -o <out>`: rebuilds a dump from the serial stream.
    pub fn recv(&self, stream: &Path, out: &Path) -> Result<String, Error> {
        self.run([
            OsStr::new("recv"),
            stream.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ])
    }

    /// `rkdumpctl inspect <vmcore>`.
    pub fn inspect(&self, vmcore: &Path) -> Result<String, Error> {
        self.run([OsStr::new("inspect"), vmcore.as_os_str()])
    }

    /// `rkdumpctl inspect --report --report-lines <n> <vmcore>`: only the crash report.
    pub fn inspect_report(&self, vmcore: &Path, lines: usize) -> Result<String, Error> {
        let n = lines.to_string();
        self.run([
            OsStr::new("inspect"),
            OsStr::new("--report"),
            OsStr::new("--report-lines"),
            OsStr::new(&n),
            vmcore.as_os_str(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_status_and_output() {
        let ok = output(Command::new("/bin/sh").args(["-c", "echo out; echo err >&2"])).unwrap();
        assert_eq!(ok, "out\nerr\n");
        let e = output(Command::new("/bin/sh").args(["-c", "echo why >&2; exit 3"])).unwrap_err();
        assert!(matches!(&e, Error::Failed { output, .. } if output == "why\n"));
        assert!(matches!(
            output(&mut Command::new("/nonexistent/tool")),
            Err(Error::Spawn { .. })
        ));
    }
}
