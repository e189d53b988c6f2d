//! `/etc/rkdump.conf`: the service configuration `install`, `boot`, `status` and `estimate`
//! read, parsed into typed values (docs/interface.md#configuration-file).
//!
//! Format: one `key = value` per line; `#` starts a comment line; blank lines are ignored; a
//! value may be wrapped in double quotes (kept verbatim inside). Unknown keys, repeated keys and
//! bad values are errors naming the file and line. `--set KEY=VALUE` on the command line
//! overrides a key with the same checks. Values the capture kernel reads (`target`, `reset`,
//! `deny`, `allow`, `action`) are checked with the capture kernel's own parser
//! (`rkdump_boot::cmdline`), so a value accepted here is one rkdump accepts.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rkdump_boot::cmdline::{DiagKind, Options};

/// Where the configuration lives.
pub const DEFAULT_PATH: &str = "/etc/rkdump.conf";
/// Where `install` puts the kernel and where `boot` loads it from by default.
pub const DEFAULT_KERNEL: &str = "/usr/lib/rkdump/bzImage";
/// Where saved dumps go.
pub const DEFAULT_SAVE_DIR: &str = "/var/crash";
/// Saved dumps kept by default.
pub const DEFAULT_KEEP: u32 = 3;

/// Command-line options every service command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfArgs {
    /// Configuration file [default: /etc/rkdump.conf; a missing default file means all defaults].
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Override one configuration key (repeatable), e.g. `--set level=31 --set keep=5`.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
}

impl ConfArgs {
    /// Reads the file (or defaults) and applies the `--set` overrides.
    pub fn load(&self) -> Result<Config, Error> {
        let mut conf = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => match fs::read_to_string(DEFAULT_PATH) {
                Ok(text) => Config::parse(&text, Path::new(DEFAULT_PATH))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Config::default(),
                Err(e) => return Err(Error::Read(PathBuf::from(DEFAULT_PATH), e)),
            },
        };
        for s in &self.set {
            conf.set_override(s)?;
        }
        Ok(conf)
    }
}

/// Which kexec syscall `boot` uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyscallPolicy {
    /// `kexec_file_load` first, `kexec_load` when the kernel refuses it (the reason is kept).
    #[default]
    Auto,
    /// `kexec_file_load` only (Secure Boot, lockdown).
    File,
    /// `kexec_load` only.
    Legacy,
}

/// Dump format (`rkdump.format=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The `/proc/vmcore` ELF layout.
    Elf,
    /// makedumpfile's kdump-compressed format.
    Kdump,
}

/// Page compression of `format = kdump` (`rkdump.compress=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compress {
    /// zlib.
    Zlib,
    /// LZO.
    Lzo,
    /// snappy.
    Snappy,
    /// zstd.
    Zstd,
    /// Uncompressed pages.
    None,
}

/// Where `boot` and `status` look for the dump disk on the Linux side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Devices {
    /// Every whole disk under `/sys/block` whose first sector holds an rkdump label.
    #[default]
    Auto,
    /// These paths (block devices or image files), in order.
    Paths(Vec<PathBuf>),
}

/// The typed configuration. `None` means "not set": the capture kernel's own default applies
/// and nothing is added to its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `target`: `rkdump.target=` (checked by rkdump's parser).
    pub target: Option<String>,
    /// `device`: the dump disk(s) as Linux names them (`auto` or a comma list of paths).
    pub device: Devices,
    /// `kernel`: the bzImage to load.
    pub kernel: PathBuf,
    /// `append`: extra command line, after rkdump's own parameters.
    pub append: Option<String>,
    /// `reset`: `rkdump.reset=`.
    pub reset: Option<String>,
    /// `deny`: `rkdump.deny=`.
    pub deny: Option<String>,
    /// `allow`: `rkdump.allow=`.
    pub allow: Option<String>,
    /// `level`: `rkdump.level=` (0..=31).
    pub level: Option<u8>,
    /// `format`: `rkdump.format=`.
    pub format: Option<Format>,
    /// `compress`: `rkdump.compress=`.
    pub compress: Option<Compress>,
    /// `action`: `rkdump.action=`.
    pub action: Option<String>,
    /// `syscall`: which kexec syscall to use.
    pub syscall: SyscallPolicy,
    /// `save_dir`: where `boot` saves dumps.
    pub save_dir: PathBuf,
    /// `keep`: saved dumps kept after a new one is saved (0 = keep all).
    pub keep: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            target: None,
            device: Devices::Auto,
            kernel: PathBuf::from(DEFAULT_KERNEL),
            append: None,
            reset: None,
            deny: None,
            allow: None,
            level: None,
            format: None,
            compress: None,
            action: None,
            syscall: SyscallPolicy::Auto,
            save_dir: PathBuf::from(DEFAULT_SAVE_DIR),
            keep: DEFAULT_KEEP,
        }
    }
}

impl Config {
    /// The dump level rkdump will use: `level`, else the capture kernel's own default.
    pub fn level_or_default(&self) -> u8 {
        self.level.unwrap_or(rkdump_boot::cmdline::DEFAULT_LEVEL)
    }

    /// The dump format rkdump will use: `format`, else the capture kernel's own default.
    pub fn format_or_default(&self) -> Format {
        self.format
            .unwrap_or(match rkdump_boot::cmdline::DumpFormat::default() {
                rkdump_boot::cmdline::DumpFormat::Elf => Format::Elf,
                rkdump_boot::cmdline::DumpFormat::Kdump => Format::Kdump,
            })
    }
}

/// Every key, in the order the documentation lists them.
pub const KEYS: [&str; 14] = [
    "target", "device", "kernel", "append", "reset", "deny", "allow", "level", "format",
    "compress", "action", "syscall", "save_dir", "keep",
];

/// Where a bad value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A line of a file.
    Line(PathBuf, usize),
    /// A `--set` argument.
    Set(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Line(p, n) => write!(f, "{}:{n}", p.display()),
            Origin::Set(s) => write!(f, "--set {s}"),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug)]
pub enum Error {
    /// The file cannot be read.
    Read(PathBuf, io::Error),
    /// A line is not `key = value`.
    Syntax(Origin),
    /// A key this version does not know.
    UnknownKey(Origin, String),
    /// A key given twice in the file.
    Repeated(Origin, String, usize),
    /// A value the key does not take.
    BadValue {
        /// Where.
        at: Origin,
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What the key takes.
        why: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read(p, e) => write!(f, "reading {}: {e}", p.display()),
            Error::Syntax(at) => write!(f, "{at}: expected `key = value`"),
            Error::UnknownKey(at, k) => {
                write!(f, "{at}: unknown key \"{k}\" (known: {})", KEYS.join(", "))
            }
            Error::Repeated(at, k, first) => {
                write!(f, "{at}: key \"{k}\" already set on line {first}")
            }
            Error::BadValue {
                at,
                key,
                value,
                why,
            } => write!(f, "{at}: {key} = \"{value}\": {why}"),
        }
    }
}

/// Checks `value` with rkdump's own command-line parser as `rkdump.<param>=<value>`.
fn check_with_rkdump(param: &str, value: &str) -> Result<(), String> {
    if value.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    let opts = Options::parse(&format!("rkdump.{param}={value}"));
    for d in opts.diagnostics() {
        if let DiagKind::Malformed(why) = d.kind {
            return Err(format!("rkdump would ignore it: {why}"));
        }
    }
    Ok(())
}

impl Config {
    /// Reads and parses a file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = fs::read_to_string(path).map_err(|e| Error::Read(path.to_path_buf(), e))?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let mut conf = Self::default();
        let mut seen: Vec<(&'static str, usize)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = Origin::Line(path.to_path_buf(), n);
            let (key, value) = split_kv(line).ok_or_else(|| Error::Syntax(at.clone()))?;
            let key =
                canonical_key(key).ok_or_else(|| Error::UnknownKey(at.clone(), key.into()))?;
            if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(Error::Repeated(at, key.into(), first));
            }
            seen.push((key, n));
            conf.set(key, value, at)?;
        }
        Ok(conf)
    }

    /// Applies one `KEY=VALUE` from the command line.
    pub fn set_override(&mut self, arg: &str) -> Result<(), Error> {
        let at = Origin::Set(arg.to_string());
        let (key, value) = split_kv(arg).ok_or_else(|| Error::Syntax(at.clone()))?;
        let key = canonical_key(key).ok_or_else(|| Error::UnknownKey(at.clone(), key.into()))?;
        self.set(key, value, at)
    }

    fn set(&mut self, key: &'static str, value: &str, at: Origin) -> Result<(), Error> {
        let bad = |why: &str| Error::BadValue {
            at: at.clone(),
            key,
            value: value.to_string(),
            why: why.to_string(),
        };
        // An empty value unsets an optional key (back to rkdump's default).
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key {
            "target" | "reset" | "deny" | "allow" | "action" => {
                if !value.is_empty() {
                    check_with_rkdump(key, value).map_err(|w| bad(&w))?;
                }
                let slot = match key {
                    "target" => &mut self.target,
                    "reset" => &mut self.reset,
                    "deny" => &mut self.deny,
                    "allow" => &mut self.allow,
                    _ => &mut self.action,
                };
                *slot = opt(value);
            }
            "device" => {
                self.device = match value {
                    "" | "auto" => Devices::Auto,
                    list => {
                        let paths: Vec<PathBuf> =
                            list.split(',').map(|p| PathBuf::from(p.trim())).collect();
                        if paths.iter().any(|p| !p.is_absolute()) {
                            return Err(bad("expected `auto` or a comma list of absolute paths"));
                        }
                        Devices::Paths(paths)
                    }
                }
            }
            "kernel" | "save_dir" => {
                let p = PathBuf::from(value);
                if !p.is_absolute() {
                    return Err(bad("expected an absolute path"));
                }
                if key == "kernel" {
                    self.kernel = p;
                } else {
                    self.save_dir = p;
                }
            }
            "append" => self.append = opt(value),
            "level" => {
                self.level = match value {
                    "" => None,
                    v => Some(
                        v.parse::<u8>()
                            .ok()
                            .filter(|&l| l <= 31)
                            .ok_or_else(|| bad("expected a dump level 0..31"))?,
                    ),
                }
            }
            "format" => {
                self.format = match value {
                    "" => None,
                    "elf" => Some(Format::Elf),
                    "kdump" => Some(Format::Kdump),
                    _ => return Err(bad("expected elf or kdump")),
                }
            }
            "compress" => {
                self.compress = match value {
                    "" => None,
                    "zlib" => Some(Compress::Zlib),
                    "lzo" => Some(Compress::Lzo),
                    "snappy" => Some(Compress::Snappy),
                    "zstd" => Some(Compress::Zstd),
                    "none" => Some(Compress::None),
                    _ => return Err(bad("expected zlib, lzo, snappy, zstd or none")),
                }
            }
            "syscall" => {
                self.syscall = match value {
                    "auto" => SyscallPolicy::Auto,
                    "file" => SyscallPolicy::File,
                    "legacy" => SyscallPolicy::Legacy,
                    _ => return Err(bad("expected auto, file or legacy")),
                }
            }
            "keep" => {
                self.keep = value
                    .parse()
                    .map_err(|_| bad("expected a count (0 keeps every dump)"))?;
            }
            _ => unreachable!("canonical_key returns only KEYS"),
        }
        Ok(())
    }

    /// The `rkdump.*` parameters the configuration adds to the capture kernel's command line,
    /// then `append`.
    pub fn kernel_params(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut push = |name: &str, v: Option<&str>| {
            if let Some(v) = v {
                parts.push(format!("rkdump.{name}={v}"));
            }
        };
        push("target", self.target.as_deref());
        push("reset", self.reset.as_deref());
        push("deny", self.deny.as_deref());
        push("allow", self.allow.as_deref());
        push("action", self.action.as_deref());
        let level = self.level.map(|l| l.to_string());
        push("level", level.as_deref());
        push("format", self.format.map(Format::name));
        push("compress", self.compress.map(Compress::name));
        if let Some(a) = &self.append {
            parts.push(a.clone());
        }
        parts.join(" ")
    }
}

impl Format {
    /// The name in the configuration and on rkdump's command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Elf => "elf",
            Format::Kdump => "kdump",
        }
    }
}

impl Compress {
    /// The name in the configuration and on rkdump's command line.
    pub fn name(self) -> &'static str {
        match self {
            Compress::Zlib => "zlib",
            Compress::Lzo => "lzo",
            Compress::Snappy => "snappy",
            Compress::Zstd => "zstd",
            Compress::None => "none",
        }
    }
}

fn canonical_key(key: &str) -> Option<&'static str> {
    let norm = key.replace('-', "_");
    KEYS.iter().copied().find(|k| *k == norm)
}

/// Splits `key = value`; the value is trimmed and one pair of surrounding double quotes removed.
fn split_kv(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return None;
    }
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    Some((k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("/etc/rkdump.conf"))
    }

    #[test]
    fn every_key_parses_to_its_type() {
        let c = parse(
            "# rkdump\n\
             target = disk:00:04.0\n\
             device = /dev/vdb,/dev/vdc\n\
             kernel = /opt/rkdump/bzImage\n\
             append = \"console=ttyS0,115200 rkdump.cpus=1\"\n\
             reset = flr,pm\n\
             \n\
             deny = 8086:100e,class:0c03\n\
             allow = class:01\n\
             level = 31\n\
             format = kdump\n\
             compress = zstd\n\
             action = poweroff\n\
             syscall = file\n\
             save-dir = /srv/crash\n\
             keep = 0\n",
        )
        .unwrap();
        assert_eq!(c.target.as_deref(), Some("disk:00:04.0"));
        assert_eq!(
            c.device,
            Devices::Paths(vec!["/dev/vdb".into(), "/dev/vdc".into()])
        );
        assert_eq!(c.kernel, Path::new("/opt/rkdump/bzImage"));
        assert_eq!(
            c.append.as_deref(),
            Some("console=ttyS0,115200 rkdump.cpus=1")
        );
        assert_eq!(c.level, Some(31));
        assert_eq!(c.format, Some(Format::Kdump));
        assert_eq!(c.compress, Some(Compress::Zstd));
        assert_eq!(c.syscall, SyscallPolicy::File);
        assert_eq!(c.save_dir, Path::new("/srv/crash"));
        assert_eq!(c.keep, 0);
        assert_eq!(
            c.kernel_params(),
            "rkdump.target=disk:00:04.0 rkdump.reset=flr,pm rkdump.deny=8086:100e,class:0c03 \
             rkdump.allow=class:01 rkdump.action=poweroff rkdump.level=31 rkdump.format=kdump \
             rkdump.compress=zstd console=ttyS0,115200 rkdump.cpus=1"
        );
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = parse("\n# nothing\n   \n").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.save_dir, Path::new("/var/crash"));
        assert_eq!(c.kernel, Path::new(DEFAULT_KERNEL));
        assert_eq!(c.kernel_params(), "");
    }

    #[test]
    fn errors_name_the_line() {
        let msg = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            msg("keep = 2\nlevle = 31\n"),
            format!(
                "/etc/rkdump.conf:2: unknown key \"levle\" (known: {})",
                KEYS.join(", ")
            )
        );
        assert_eq!(
            msg("\n\nlevel = 32"),
            "/etc/rkdump.conf:3: level = \"32\": expected a dump level 0..31"
        );
        assert_eq!(
            msg("just words"),
            "/etc/rkdump.conf:1: expected `key = value`"
        );
        assert_eq!(
            msg("keep = 1\nkeep = 2"),
            "/etc/rkdump.conf:2: key \"keep\" already set on line 1"
        );
        assert!(msg("format = lz4").starts_with("/etc/rkdump.conf:1: format = \"lz4\""));
        assert!(msg("compress = gzip").contains("expected zlib, lzo"));
        assert!(msg("keep = -1").contains("expected a count"));
        assert!(msg("save_dir = crash").contains("absolute path"));
        assert!(msg("device = vdb").contains("absolute paths"));
        assert!(msg("syscall = kexec").contains("auto, file or legacy"));
        // Values rkdump's own parser rejects are rejected here, with its reason.
        let m = msg("\naction = explode");
        assert!(
            m.starts_with("/etc/rkdump.conf:2: action = \"explode\": rkdump would ignore it"),
            "{m}"
        );
        assert!(msg("reset = flr,jump").contains("rkdump would ignore it"));
        assert!(msg("deny = 8086").contains("rkdump would ignore it"));
        assert!(msg("target = floppy").contains("rkdump would ignore it"));
        assert!(msg("target = disk serial").contains("spaces"));
        // Negative control: the same keys with good values parse.
        assert!(
            parse("action = halt\nreset = none\ndeny = class:0c\ntarget = serial:ttyS1").is_ok()
        );
    }

    #[test]
    fn set_overrides_the_file_with_the_same_checks() {
        let mut c = parse("level = 0\nkeep = 3\n").unwrap();
        c.set_override("level=31").unwrap();
        c.set_override("save-dir=/tmp/crash").unwrap();
        c.set_override("level=").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.level, None);
        c.set_override("level=16").unwrap();
        assert_eq!(c.level, Some(16));
        assert_eq!(c.save_dir, Path::new("/tmp/crash"));
        assert_eq!(
            c.set_override("level=99").unwrap_err().to_string(),
            "--set level=99: level = \"99\": expected a dump level 0..31"
        );
        assert!(matches!(
            c.set_override("colour=red"),
            Err(Error::UnknownKey(Origin::Set(_), _))
        ));
        assert!(matches!(c.set_override("keep"), Err(Error::Syntax(_))));
    }

    #[test]
    fn conf_args_read_the_given_file_and_apply_set() {
        let dir = std::env::temp_dir().join(format!("rkdumpctl-conf-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("rkdump.conf");
        fs::write(&p, "keep = 7\nformat = elf\n").unwrap();
        let args = ConfArgs {
            config: Some(p.clone()),
            set: vec!["keep=2".into()],
        };
        let c = args.load().unwrap();
        assert_eq!((c.keep, c.format), (2, Some(Format::Elf)));
        let missing = ConfArgs {
            config: Some(dir.join("absent.conf")),
            set: vec![],
        };
        assert!(matches!(missing.load(), Err(Error::Read(..))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
