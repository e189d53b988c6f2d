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

/// Where large downloads are kept: `$RKDUMP_CACHE`, else `<repo>/target/cache`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("RKDUMP_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cache"),
    }
}

/// The Debian debug vmlinux of kernel `release` (`usr/lib/debug/boot/vmlinux-<release>` of
/// `linux-image-<release>-dbg`, about 283 MB), downloaded with `apt-get download` into
/// [`cache_dir`] once and extracted next to it.
pub fn debug_vmlinux(release: &str) -> Result<PathBuf, Error> {
    let dir = cache_dir().join("dbg");
    let vmlinux = dir.join(format!("vmlinux-{release}"));
    if vmlinux.is_file() {
        return Ok(vmlinux);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Spawn {
        command: format!("mkdir {}", dir.display()),
        source,
    })?;
    let package = format!("linux-image-{release}-dbg");
    let find_deb = || {
        std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                name.is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
        })
    };
    let deb = match find_deb() {
        Some(d) => d,
        None => {
            output(
                Command::new("apt-get")
                    .arg("download")
                    .arg(&package)
                    .current_dir(&dir),
            )?;
            find_deb().ok_or_else(|| Error::Spawn {
                command: format!("apt-get download {package}"),
                source: std::io::Error::other("no .deb after the download"),
            })?
        }
    };
    let member = format!("./usr/lib/debug/boot/vmlinux-{release}");
    let tmp = dir.join(format!("extract-{release}"));
    std::fs::create_dir_all(&tmp).map_err(|source| Error::Spawn {
        command: format!("mkdir {}", tmp.display()),
        source,
    })?;
    output(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' '{member}'",
        deb.display(),
        tmp.display()
    )))?;
    std::fs::rename(tmp.join(&member), &vmlinux).map_err(|source| Error::Spawn {
        command: format!("mv {member} {}", vmlinux.display()),
        source,
    })?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(vmlinux)
}

/// Lines of `crash`'s own output that mean it could not read the dump. Bracketed lines are
/// not crash's words: the crashed kernel's log lines (`[    4.31] ...`) and `bt`'s frame
/// annotations (`    [exception RIP: unknown or invalid address]` when an NMI caught a CPU in
/// user mode) are left out by [`crash_error_lines`].
pub const CRASH_ERRORS: [&str; 6] = [
    "read error",
    "page excluded",
    "page incomplete",
    "uncompress failed",
    "cannot",
    "invalid",
];

/// The lines of `crash` output that carry one of [`CRASH_ERRORS`], bracketed lines left out.
pub fn crash_error_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.trim_start().starts_with('['))
        .filter(|l| CRASH_ERRORS.iter().any(|e| l.to_lowercase().contains(e)))
        .collect()
}

/// Runs `crash` (batch, `-s`) on `vmcore` with `vmlinux`, feeding it `commands` then `quit`;
/// its output, or an error carrying it when crash failed or printed one of [`CRASH_ERRORS`].
pub fn crash(
    vmlinux: &Path,
    vmcore: &Path,
    commands: &[&str],
    dir: &Path,
) -> Result<String, Error> {
    let script = dir.join("crash-commands.txt");
    let mut text = commands.join("\n");
    text.push_str("\nquit\n");
    std::fs::write(&script, text).map_err(|source| Error::Spawn {
        command: format!("write {}", script.display()),
        source,
    })?;
    let mut cmd = Command::new("crash");
    cmd.arg("-s")
        .arg(vmlinux)
        .arg(vmcore)
        .arg("-i")
        .arg(&script);
    let out = output(&mut cmd)?;
    let _ = std::fs::write(dir.join("crash.txt"), &out);
    let bad = crash_error_lines(&out);
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(Error::Failed {
            command: format!("crash -s {} {}", vmlinux.display(), vmcore.display()),
            status: std::process::ExitStatus::default(),
            output: bad.join("\n"),
        })
    }
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

    /// crash's read errors count; the crashed kernel's log lines and bt's annotation of a
    /// user-mode RIP (seen in CI: an NMI caught CPU 1 in a user process) do not.
    #[test]
    fn crash_errors_skip_bracketed_lines() {
        let out = "\
[    4.31] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
PID: 120      TASK: ffff8e9dc383e000  CPU: 1    COMMAND: \"dd\"
 #3 [fffffe0000048ef0] end_repeat_nmi at ffffffffb4a01680
    [exception RIP: unknown or invalid address]
bt: read error: kernel virtual address: ffff8e9dc383e000  type: \"task_struct\"
";
        assert_eq!(
            crash_error_lines(out),
            ["bt: read error: kernel virtual address: ffff8e9dc383e000  type: \"task_struct\""]
        );
    }
}
