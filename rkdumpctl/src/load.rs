//! `rkdumpctl load`: snapshots the PCI configuration, then loads rkdump as the crash kernel with
//! `kexec -p`, the config blob as its initrd and a command line carrying `reset_devices`
//! (docs/interface.md#rkdumpctl; loader rules: docs/boot-contract.md#two-loaders,
//! #bzimage-header-rules).

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rkdump_devices::blob::filemap;

use crate::snapshot::{self, Sources};

/// Installed location of the rkdump kernel.
pub const DEFAULT_KERNEL: &str = "/boot/rkdump/bzImage";
/// Where root keeps the blob.
pub const DEFAULT_BLOB: &str = "/var/lib/rkdump/config.blob";
/// kexec-tools' limit on the final command line (`COMMAND_LINE_SIZE` - 1).
pub const KL_MAX_CMDLINE: usize = 2047;
/// Room left for what kexec-tools appends under `kexec_load`: ` acpi_rsdp=0x<16 hex>` (29) and
/// ` elfcorehdr=<≤20 digits>K` (33), rounded up.
pub const KL_APPEND_RESERVE: usize = 64;
/// Room `kexec_file_load` needs on top of the command line and its NUL: the `elfcorehdr=0x… `
/// prefix (30) and, with CONFIG_CRASH_DM_CRYPT, `dmcryptkeys=0x… ` (31).
pub const KF_PREFIX_RESERVE: usize = 30 + 31;

/// Arguments of `rkdumpctl load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rkdump bzImage [default: /boot/rkdump/bzImage, else bzImage next to rkdumpctl].
    #[arg(long, value_name = "BZIMAGE")]
    pub kernel: Option<PathBuf>,
    /// Extra kernel parameters, after rkdump's own (e.g. "rkdump.target=disk:00:04.0").
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// Use kexec_file_load only (kexec -s); needed under Secure Boot / lockdown.
    #[arg(long, conflicts_with = "legacy_syscall")]
    pub file_syscall: bool,
    /// Use kexec_load only (kexec -c). Without either flag kexec tries the file syscall first.
    #[arg(long)]
    pub legacy_syscall: bool,
    /// Where to write the config blob [default: /var/lib/rkdump/config.blob as root, else
    /// rkdump-config.blob in the temporary directory].
    #[arg(long, value_name = "PATH")]
    pub blob_out: Option<PathBuf>,
    /// A dump file made by `rkdumpctl prepare --file`: its block map is checked again and
    /// appended to the config blob, so rkdump can dump into it (`rkdump.target=file`, first in
    /// the default order).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Snapshot and print the kexec command (shell-quoted) instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// The kexec binary to run.
    #[arg(long, value_name = "PATH", default_value = "kexec")]
    pub kexec: PathBuf,
    #[command(flatten)]
    pub sources: Sources,
}

/// Which syscall kexec is told to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// kexec's default: `kexec_file_load`, falling back to `kexec_load` on ENOEXEC and friends.
    Auto,
    /// `kexec -s`: `kexec_file_load` only.
    File,
    /// `kexec -c`: `kexec_load` only.
    Legacy,
}

impl Syscall {
    fn flag(self) -> Option<&'static str> {
        match self {
            Syscall::Auto => None,
            Syscall::File => Some("-s"),
            Syscall::Legacy => Some("-c"),
        }
    }
}

/// Why `load` failed.
#[derive(Debug)]
pub enum Error {
    /// Taking or writing the snapshot failed.
    Snapshot(snapshot::Error),
    /// No kernel given and none at the default places.
    NoKernel(Vec<PathBuf>),
    /// The kernel cannot be read.
    Kernel(PathBuf, io::Error),
    /// The kernel is not a Linux boot-protocol image (no `HdrS`).
    NotBzImage(PathBuf),
    /// The command line does not fit what the loader accepts.
    CmdlineTooLong {
        /// Bytes of command line.
        len: usize,
        /// Most bytes allowed.
        max: usize,
        /// The syscall whose rule applies.
        syscall: Syscall,
        /// The kernel's `cmdline_size`.
        cmdline_size: u32,
    },
    /// The `--file` is not a usable dump file.
    FileTarget(String),
    /// kexec could not be started.
    Spawn(PathBuf, io::Error),
    /// kexec ran and failed.
    Kexec {
        /// Exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// What kexec printed on stderr.
        stderr: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Snapshot(e) => write!(f, "snapshot: {e}"),
            Error::FileTarget(e) => write!(f, "--file: {e}"),
            Error::NoKernel(tried) => {
                write!(f, "no rkdump kernel found (tried")?;
                for p in tried {
                    write!(f, " {}", p.display())?;
                }
                write!(f, "); pass --kernel")
            }
            Error::Kernel(p, e) => write!(f, "reading kernel {}: {e}", p.display()),
            Error::NotBzImage(p) => {
                write!(
                    f,
                    "{} is not a Linux boot-protocol image (bzImage)",
                    p.display()
                )
            }
            Error::CmdlineTooLong {
                len,
                max,
                syscall,
                cmdline_size,
            } => {
                let rule = match syscall {
                    Syscall::File => "kexec_file_load",
                    Syscall::Legacy => "kexec_load",
                    Syscall::Auto => "kexec_file_load and its kexec_load fallback",
                };
                write!(
                    f,
                    "command line of {len} bytes is too long: {rule} allows {max} \
                     (kernel cmdline_size {cmdline_size}, minus room for what the loader adds)"
                )
            }
            Error::Spawn(p, e) if e.kind() == io::ErrorKind::NotFound => write!(
                f,
                "{} not found: install kexec-tools or pass --kexec",
                p.display()
            ),
            Error::Spawn(p, e) => write!(f, "running {}: {e}", p.display()),
            Error::Kexec { code, stderr } => {
                match code {
                    Some(c) => write!(f, "kexec failed with exit code {c}")?,
                    None => write!(f, "kexec was killed by a signal")?,
                }
                let stderr = stderr.trim();
                if !stderr.is_empty() {
                    write!(f, ":\n{stderr}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<snapshot::Error> for Error {
    fn from(e: snapshot::Error) -> Self {
        Error::Snapshot(e)
    }
}

/// The command line rkdump gets: `reset_devices` (unless the user's text has it), the running
/// kernel's serial console mirrored (unless the user's text names a console), then the user's
/// text.
pub fn build_cmdline(running_cmdline: &str, append: Option<&str>) -> String {
    let append = append.unwrap_or("").trim();
    let user: Vec<&str> = append.split_whitespace().collect();
    let mut parts: Vec<&str> = Vec::new();
    if !user.contains(&"reset_devices") {
        parts.push("reset_devices");
    }
    if !user.iter().any(|t| t.starts_with("console="))
        && let Some(console) = serial_console(running_cmdline)
    {
        parts.push(console);
    }
    if !append.is_empty() {
        parts.push(append);
    }
    parts.join(" ")
}

/// The last serial `console=` of a command line (`ttyS<n>[,opts]` or `uart8250,…`/`uart,…`),
/// the forms rkdump understands; `console=tty0` and the like are not serial.
pub fn serial_console(cmdline: &str) -> Option<&str> {
    cmdline.split_whitespace().rev().find(|t| {
        t.strip_prefix("console=").is_some_and(|v| {
            v.starts_with("ttyS") || v.starts_with("uart8250,") || v.starts_with("uart,")
        })
    })
}

/// The longest command line (bytes, without NUL) the loader(s) `syscall` may use accept for a
/// kernel whose setup header says `cmdline_size` (docs/boot-contract.md#bzimage-header-rules, #command-line):
///
/// - `kexec_load`: kexec-tools wants the user command line and its NUL within `cmdline_size`,
///   and the final line (after its ` acpi_rsdp=` and ` elfcorehdr=` additions,
///   [`KL_APPEND_RESERVE`]) within [`KL_MAX_CMDLINE`];
/// - `kexec_file_load`: the kernel wants the command line, its NUL and its own prefixes
///   ([`KF_PREFIX_RESERVE`]) within `cmdline_size`;
/// - auto: both, since kexec may fall back from one to the other.
pub fn max_cmdline_len(syscall: Syscall, cmdline_size: u32) -> usize {
    let size = cmdline_size as usize;
    let kl = size
        .saturating_sub(1)
        .min(KL_MAX_CMDLINE - KL_APPEND_RESERVE);
    let kf = size.saturating_sub(1 + KF_PREFIX_RESERVE);
    match syscall {
        Syscall::Legacy => kl,
        Syscall::File => kf,
        Syscall::Auto => kl.min(kf),
    }
}

/// Checks `cmdline` against [`max_cmdline_len`].
pub fn check_cmdline(cmdline: &str, syscall: Syscall, cmdline_size: u32) -> Result<(), Error> {
    let max = max_cmdline_len(syscall, cmdline_size);
    if cmdline.len() > max {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max,
            syscall,
            cmdline_size,
        });
    }
    Ok(())
}

/// The setup header's `cmdline_size` (0x238): protocol 2.06+; 255 before (boot.rst).
pub fn read_cmdline_size(kernel: &Path) -> Result<u32, Error> {
    let mut hdr = Vec::with_capacity(0x23C);
    File::open(kernel)
        .and_then(|f| f.take(0x23C).read_to_end(&mut hdr))
        .map_err(|e| Error::Kernel(kernel.to_path_buf(), e))?;
    if hdr.len() < 0x23C || &hdr[0x202..0x206] != b"HdrS" {
        return Err(Error::NotBzImage(kernel.to_path_buf()));
    }
    let version = u16::from_le_bytes([hdr[0x206], hdr[0x207]]);
    if version < 0x0206 {
        return Ok(255);
    }
    Ok(u32::from_le_bytes([
        hdr[0x238], hdr[0x239], hdr[0x23A], hdr[0x23B],
    ]))
}

/// kexec's arguments: `-p <kernel> --initrd=<blob> --command-line=<cmdline> [-s|-c]`.
pub fn kexec_args(kernel: &Path, blob: &Path, cmdline: &str, syscall: Syscall) -> Vec<OsString> {
    let mut initrd = OsString::from("--initrd=");
    initrd.push(blob);
    let mut args = vec![
        OsString::from("-p"),
        kernel.as_os_str().to_owned(),
        initrd,
        OsString::from(format!("--command-line={cmdline}")),
    ];
    if let Some(flag) = syscall.flag() {
        args.push(flag.into());
    }
    args
}

/// Quotes `s` for a POSIX shell: unchanged when it has only safe characters, else in single
/// quotes with embedded `'` as `'\''`.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let safe = |c: u8| c.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&c);
    if !s.is_empty() && s.bytes().all(safe) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// The whole command as a shell would need it typed.
pub fn shell_command(program: &OsStr, args: &[OsString]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| shell_quote(&a.to_string_lossy()).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kernel to load: `--kernel`, else the first of /boot/rkdump/bzImage, /usr/lib/rkdump/bzImage
/// (`rkdumpctl install`) and a bzImage next to the rkdumpctl binary that exists.
fn resolve_kernel(given: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(k) = given {
        return Ok(k.to_path_buf());
    }
    let mut tried = vec![
        PathBuf::from(DEFAULT_KERNEL),
        PathBuf::from(crate::conf::DEFAULT_KERNEL),
    ];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        tried.push(dir.join("bzImage"));
    }
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(Error::NoKernel(tried))
}

/// The blob path: `--blob-out`, else [`DEFAULT_BLOB`] for root, else the temporary directory.
fn resolve_blob(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        PathBuf::from(DEFAULT_BLOB)
    } else {
        std::env::temp_dir().join("rkdump-config.blob")
    }
}

/// Runs kexec with `args`; returns what it printed on stderr, or why it failed.
pub fn exec_kexec(kexec: &Path, args: &[OsString]) -> Result<String, Error> {
    let out = Command::new(kexec)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Spawn(kexec.to_path_buf(), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(Error::Kexec {
            code: out.status.code(),
            stderr,
        });
    }
    Ok(stderr)
}

/// Runs `rkdumpctl load`.
pub fn run(args: &Args) -> Result<(), Error> {
    let syscall = match (args.file_syscall, args.legacy_syscall) {
        (true, _) => Syscall::File,
        (_, true) => Syscall::Legacy,
        _ => Syscall::Auto,
    };
    let kernel = resolve_kernel(args.kernel.as_deref())?;
    let cmdline_size = read_cmdline_size(&kernel)?;
    let running = fs::read_to_string(args.sources.proc_root.join("cmdline")).unwrap_or_else(|e| {
        eprintln!(
            "rkdumpctl load: warning: reading the running command line: {e}; no console mirrored"
        );
        String::new()
    });
    let cmdline = build_cmdline(&running, args.append.as_deref());
    check_cmdline(&cmdline, syscall, cmdline_size)?;

    let blob = resolve_blob(args.blob_out.as_deref());
    let mut snap = snapshot::take(&args.sources)?;
    snapshot::warn("load", &snap);
    let mut summary = String::new();
    if let Some(file) = &args.file {
        let map = crate::filetarget::file_map(file, &args.sources.sysfs_root)
            .map_err(Error::FileTarget)?;
        summary = format!(
            "\nrkdumpctl load: file target {}: {} bytes in {} run(s) on disk {} ({} blocks of {} bytes), map appended to the blob",
            file.display(),
            map.file_bytes,
            map.runs.len(),
            map.bdf,
            map.disk_blocks,
            map.block_size
        );
        let at = filemap::map_offset(snap.blob.len());
        snap.blob.resize(at, 0);
        snap.blob.extend_from_slice(&map.to_bytes());
    }
    snapshot::write_file(&blob, &snap.blob)?;
    let summary = format!("rkdumpctl load: snapshot: {}{summary}", snap.summary(&blob));

    let kexec_args = kexec_args(&kernel, &blob, &cmdline, syscall);
    if args.dry_run {
        eprintln!("{summary}");
        println!("{}", shell_command(args.kexec.as_os_str(), &kexec_args));
        return Ok(());
    }
    println!("{summary}");
    let stderr = exec_kexec(&args.kexec, &kexec_args)?;
    if !stderr.trim().is_empty() {
        eprintln!("{}", stderr.trim_end());
    }
    let loaded = fs::read_to_string(args.sources.sysfs_root.join("kernel/kexec_crash_loaded"));
    if loaded.is_ok_and(|s| s.trim() == "0") {
        eprintln!(
            "rkdumpctl load: warning: kexec succeeded but /sys/kernel/kexec_crash_loaded reads 0"
        );
    }
    println!(
        "rkdumpctl load: {} loaded as the crash kernel: {}",
        kernel.display(),
        shell_quote(&cmdline)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_has_reset_devices_console_and_user_text() {
        let running =
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 console=tty0 console=ttyS0,115200n8 quiet";
        assert_eq!(
            build_cmdline(
                running,
                Some("rkdump.target=disk:00:04.0 rkdump.action=poweroff")
            ),
            "reset_devices console=ttyS0,115200n8 rkdump.target=disk:00:04.0 rkdump.action=poweroff"
        );
        assert_eq!(
            build_cmdline(running, None),
            "reset_devices console=ttyS0,115200n8"
        );
        // No serial console running: none invented.
        assert_eq!(
            build_cmdline("root=/dev/sda1 console=tty0", Some("  ")),
            "reset_devices"
        );
        assert_eq!(build_cmdline("", None), "reset_devices");
        // The last serial console wins; uart8250 forms are mirrored too.
        assert_eq!(
            build_cmdline("console=ttyS0 console=ttyS1,9600", None),
            "reset_devices console=ttyS1,9600"
        );
        assert_eq!(
            build_cmdline("console=uart8250,io,0x3f8,115200", None),
            "reset_devices console=uart8250,io,0x3f8,115200"
        );
        // The user's own console and reset_devices are not doubled.
        assert_eq!(
            build_cmdline(running, Some("console=ttyS1 reset_devices")),
            "console=ttyS1 reset_devices"
        );
        // A parameter merely containing the words does not count.
        assert_eq!(
            build_cmdline("", Some("foo.reset_devices=1 xconsole=ttyS1")),
            "reset_devices foo.reset_devices=1 xconsole=ttyS1"
        );
    }

    #[test]
    fn cmdline_limits_per_syscall() {
        // rkdump's own bzImage says 4095.
        assert_eq!(max_cmdline_len(Syscall::Legacy, 4095), 2047 - 64);
        assert_eq!(max_cmdline_len(Syscall::File, 4095), 4095 - 1 - 61);
        assert_eq!(max_cmdline_len(Syscall::Auto, 4095), 2047 - 64);
        // A kernel declaring 2048 (Linux's x86 default).
        assert_eq!(max_cmdline_len(Syscall::File, 2048), 2048 - 62);
        assert_eq!(max_cmdline_len(Syscall::Legacy, 2048), 1983);
        // Pre-2.06 kernels: 255.
        assert_eq!(max_cmdline_len(Syscall::Legacy, 255), 254);
        assert_eq!(max_cmdline_len(Syscall::Auto, 255), 255 - 62);
        assert_eq!(max_cmdline_len(Syscall::File, 0), 0);

        let at = |n| "x".repeat(n);
        assert!(check_cmdline(&at(1983), Syscall::Legacy, 4095).is_ok());
        assert!(matches!(
            check_cmdline(&at(1984), Syscall::Legacy, 4095),
            Err(Error::CmdlineTooLong {
                len: 1984,
                max: 1983,
                ..
            })
        ));
        assert!(check_cmdline(&at(3000), Syscall::File, 4095).is_ok());
        assert!(check_cmdline(&at(3000), Syscall::Auto, 4095).is_err());
        assert!(check_cmdline(&at(4034), Syscall::File, 4095).is_err());
        let msg = check_cmdline(&at(3000), Syscall::Auto, 4095)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("3000 bytes") && msg.contains("1983"), "{msg}");
    }

    #[test]
    fn kexec_arguments() {
        let k = Path::new("/boot/rkdump/bzImage");
        let b = Path::new("/var/lib/rkdump/config.blob");
        let cl = "reset_devices console=ttyS0,115200";
        let base = [
            "-p",
            "/boot/rkdump/bzImage",
            "--initrd=/var/lib/rkdump/config.blob",
            "--command-line=reset_devices console=ttyS0,115200",
        ];
        assert_eq!(kexec_args(k, b, cl, Syscall::Auto), base);
        let mut s = base.to_vec();
        s.push("-s");
        assert_eq!(kexec_args(k, b, cl, Syscall::File), s);
        s.pop();
        s.push("-c");
        assert_eq!(kexec_args(k, b, cl, Syscall::Legacy), s);
        assert_eq!(
            shell_command(OsStr::new("kexec"), &kexec_args(k, b, cl, Syscall::File)),
            "kexec -p /boot/rkdump/bzImage --initrd=/var/lib/rkdump/config.blob \
             '--command-line=reset_devices console=ttyS0,115200' -s"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("plain/path-1.0=x,y:z"), "plain/path-1.0=x,y:z");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME;rm"), "'$HOME;rm'");
        assert_eq!(shell_quote("a\"b"), "'a\"b'");
    }

    #[test]
    fn cmdline_size_from_header() {
        let dir = std::env::temp_dir().join(format!("rkdumpctl-load-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x238..0x23C].copy_from_slice(&4095u32.to_le_bytes());
        let p = dir.join("bzImage");
        fs::write(&p, &img).unwrap();
        assert_eq!(read_cmdline_size(&p).unwrap(), 4095);
        img[0x206..0x208].copy_from_slice(&0x0205u16.to_le_bytes());
        fs::write(&p, &img).unwrap();
        assert_eq!(read_cmdline_size(&p).unwrap(), 255);
        img[0x202] = b'X';
        fs::write(&p, &img).unwrap();
        assert!(matches!(read_cmdline_size(&p), Err(Error::NotBzImage(_))));
        fs::write(&p, b"short").unwrap();
        assert!(matches!(read_cmdline_size(&p), Err(Error::NotBzImage(_))));
        assert!(matches!(
            read_cmdline_size(&dir.join("missing")),
            Err(Error::Kernel(..))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
