//! Kernel command line: fixed-size buffer, Linux tokenisation and the options rkdump honours.
//!
//! Parsing never fails and never panics: unknown parameters and malformed values become
//! [`Diag`]nostics (the kernel prints them as "ignored") and leave the option as it was (the
//! default unless an earlier valid occurrence set it). A later valid occurrence overrides an earlier
//! one, as in Linux. Grammar: docs/interface.md#grammar and docs/boot-contract.md#command-line.

use core::fmt;

mod device;
mod hardware;
mod num;
mod types;

pub use device::{Bdf, DeviceMatch, ParseBdfError, ResetMethods, ResetPolicy};
pub use hardware::{AcpiSource, IommuMode, WatchdogMode};
pub use num::{NumError, memparse, parse_hex, parse_int};
pub use types::{
    Action, Console, DEVICE_LIST_CAPACITY, DeviceList, ElfCoreHdrArg, SelfTest, SerialPort,
    ShortBytes, TARGET_LIST_CAPACITY, Target, TargetList, TargetStep,
};
use types::{ConsoleArg, write_escaped};

/// Capacity of a [`CmdlineBuf`] including the terminating NUL (at most 4095 characters are kept).
pub const CMDLINE_CAPACITY: usize = 4096;

/// The raw command line, copied out of loader memory into a fixed buffer.
#[derive(Clone)]
pub struct CmdlineBuf {
    bytes: [u8; CMDLINE_CAPACITY],
    len: usize,
    truncated: bool,
}

impl Default for CmdlineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl CmdlineBuf {
    /// An empty command line.
    pub const fn new() -> Self {
        Self {
            bytes: [0; CMDLINE_CAPACITY],
            len: 0,
            truncated: false,
        }
    }

    /// Copies `src` up to its first NUL, keeping at most 4095 bytes.
    pub fn from_bytes(src: &[u8]) -> Self {
        let mut buf = Self::new();
        buf.push(src.split(|&b| b == 0).next().unwrap_or_default());
        buf
    }

    /// Appends `text` (no NUL inside); what does not fit is dropped and marks the line truncated.
    pub(crate) fn push(&mut self, text: &[u8]) {
        let room = CMDLINE_CAPACITY - 1 - self.len;
        let n = text.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&text[..n]);
        self.len += n;
        self.truncated |= text.len() > room;
    }

    /// Empties the line.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }

    /// The bytes, without a NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The text, if valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the line is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the source line was longer than 4095 bytes (or unterminated) and was cut.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl AsRef<[u8]> for CmdlineBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Display for CmdlineBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.as_bytes())
    }
}

impl fmt::Debug for CmdlineBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CmdlineBuf(\"{self}\"{})",
            if self.truncated { ", truncated" } else { "" }
        )
    }
}

/// One `key[=value]` token as Linux's `next_arg` splits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Token<'a> {
    raw: &'a [u8],
    key: &'a [u8],
    value: Option<&'a [u8]>,
}

/// Linux `isspace` in the kernel's C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Whitespace-separated tokens; double quotes group whitespace and are stripped around a value
/// (`key="a b"`) or around a whole token (`"key=a b"`), like the kernel's `next_arg`.
struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let start = self.rest.iter().position(|&b| !is_space(b))?;
        let s = &self.rest[start..];
        let mut in_quote = false;
        let mut equals = None;
        let mut end = s.len();
        for (i, &b) in s.iter().enumerate() {
            if is_space(b) && !in_quote {
                end = i;
                break;
            }
            if b == b'=' && equals.is_none() {
                equals = Some(i);
            }
            if b == b'"' {
                in_quote = !in_quote;
            }
        }
        self.rest = &s[end..];
        let raw = &s[..end];
        let quoted = raw.first() == Some(&b'"');
        let strip_tail = |p: &'a [u8]| p.strip_suffix(b"\"").unwrap_or(p);
        let (mut key, mut value) = match equals {
            Some(eq) => (&raw[..eq], Some(&raw[eq + 1..])),
            None => (raw, None),
        };
        if quoted {
            key = &key[1..];
        }
        if let Some(v) = value.as_mut()
            && let Some(unquoted) = v.strip_prefix(b"\"")
        {
            *v = strip_tail(unquoted);
        } else if quoted {
            match value.as_mut() {
                Some(v) => *v = strip_tail(v),
                None => key = strip_tail(key),
            }
        }
        Some(Token { raw, key, value })
    }
}

/// What is wrong with one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagKind {
    /// Not a parameter rkdump knows (most Linux parameters); ignored.
    Unknown,
    /// A known parameter with a bad value; ignored.
    Malformed(&'static str),
    /// A known parameter given again; this later value wins.
    Duplicate,
}

/// Length of the token copy kept in a [`Diag`].
pub const DIAG_TOKEN_LEN: usize = 40;
/// Maximum number of diagnostics kept; the rest are only counted.
pub const DIAG_CAPACITY: usize = 48;

/// A diagnostic about one command-line token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Diag {
    /// The token as written (copied, possibly truncated).
    pub token: ShortBytes<DIAG_TOKEN_LEN>,
    /// What is wrong.
    pub kind: DiagKind,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DiagKind::Unknown => write!(f, "unknown parameter \"{}\" ignored", self.token),
            DiagKind::Malformed(why) => write!(f, "malformed \"{}\" ignored: {why}", self.token),
            DiagKind::Duplicate => write!(f, "\"{}\" overrides an earlier value", self.token),
        }
    }
}

/// `rkdump.checksum=`: coverage of the per-block checksums of a disk dump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumMode {
    /// The default: every byte, on every machine (the same as `Full`).
    #[default]
    Auto,
    /// Every byte.
    Full,
    /// Both 64-byte ends of every 4 KiB page (explicit opt-in).
    Sampled,
    /// No checksums (explicit opt-in, for measuring their cost): nothing is verified.
    None,
}

/// `rkdump.format=`: what file the dump is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DumpFormat {
    /// The `/proc/vmcore` layout as an ELF core (level 0: byte-identical to it).
    Elf,
    /// makedumpfile's kdump-compressed format (the default, on every target).
    #[default]
    Kdump,
}

/// `rkdump.compress=`: the page codec of `rkdump.format=kdump`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compress {
    /// zlib: every reader has it; smaller, slower.
    Zlib,
    /// LZO1X (the default): the fastest codec Debian's `crash` and `makedumpfile` both read.
    #[default]
    Lzo,
    /// Snappy (not provided by rkdump: zlib is used, with an error line).
    Snappy,
    /// zstd (not provided by rkdump: zlib is used, with an error line).
    Zstd,
    /// Pages stored raw.
    None,
}
/// Default of [`Options::report_lines`].
pub const DEFAULT_REPORT_LINES: u32 = 50;
/// Default of [`Options::level`]: makedumpfile's `-d 31` (zero pages, page cache, user data and
/// free pages left out), what Linux kdump's default collector keeps.
pub const DEFAULT_LEVEL: u8 = 31;

/// Default of [`Options::budget_ms`].
pub const DEFAULT_RESET_BUDGET_MS: u32 = 5000;

/// Parameters rkdump knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    ResetDevices,
    ElfCoreHdr,
    Console,
    AcpiRsdp,
    DisableCpuApicid,
    Target,
    Action,
    Reset,
    Deny,
    Allow,
    SelfTest,
    Exit,
    NoPreinit,
    BudgetMs,
    SerialBaud,
    Fault,
    Checksum,
    Checkpoint,
    ThrottleMibS,
    ReportLines,
    Level,
    Cpus,
    AcpiSource,
    Iommu,
    Watchdog,
    Format,
    Compress,
}

const KEYS: [(&str, Key); 27] = [
    ("reset_devices", Key::ResetDevices),
    ("elfcorehdr", Key::ElfCoreHdr),
    ("console", Key::Console),
    ("acpi_rsdp", Key::AcpiRsdp),
    ("disable_cpu_apicid", Key::DisableCpuApicid),
    ("rkdump.target", Key::Target),
    ("rkdump.action", Key::Action),
    ("rkdump.reset", Key::Reset),
    ("rkdump.deny", Key::Deny),
    ("rkdump.allow", Key::Allow),
    ("rkdump.selftest", Key::SelfTest),
    ("rkdump.exit", Key::Exit),
    ("rkdump.nopreinit", Key::NoPreinit),
    ("rkdump.budget_ms", Key::BudgetMs),
    ("rkdump.serial_baud", Key::SerialBaud),
    ("rkdump.fault", Key::Fault),
    ("rkdump.checksum", Key::Checksum),
    ("rkdump.checkpoint", Key::Checkpoint),
    ("rkdump.throttle_mib_s", Key::ThrottleMibS),
    ("rkdump.report_lines", Key::ReportLines),
    ("rkdump.level", Key::Level),
    ("rkdump.cpus", Key::Cpus),
    ("rkdump.acpi_source", Key::AcpiSource),
    ("rkdump.iommu", Key::Iommu),
    ("rkdump.watchdog", Key::Watchdog),
    ("rkdump.format", Key::Format),
    ("rkdump.compress", Key::Compress),
];

/// CPUs used when `rkdump.cpus=` is absent: all (`u32::MAX`) that the wake plan allows. A CPU
/// that does not check in within 100 ms is left out, so the dump never depends on one; idle APs
/// halt, so the extra CPUs cost nothing outside the phases that use them (docs/interface.md).
pub const DEFAULT_CPUS: u32 = u32::MAX;

/// Parameter names compare with `-` and `_` equivalent, as in the kernel's `parameq`.
fn key_eq(key: &[u8], name: &str) -> bool {
    let norm = |b: u8| if b == b'-' { b'_' } else { b };
    key.len() == name.len()
        && key
            .iter()
            .zip(name.bytes())
            .all(|(&a, b)| norm(a) == norm(b))
}

/// Result of applying one known parameter.
enum Applied {
    Set,
    /// Set, but something was left out.
    Partly(&'static str),
}

/// The options rkdump takes from its command line (docs/interface.md#kernel-command-line).
///
/// Built with [`Options::parse`]; owns everything (no borrow of the input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `reset_devices` is present (makes [`Options::effective_reset`] default to `Auto`).
    pub reset_devices: bool,
    /// `elfcorehdr=`: KL appends `NNNK`, KF prefixes `0xADDR` (docs/boot-contract.md#elfcorehdr).
    pub elfcorehdr: Option<ElfCoreHdrArg>,
    /// The last serial `console=` (`ttyS<n>[,baud]`, `uart8250,io,<port>[,baud]`).
    pub console: Option<Console>,
    /// The last non-serial `console=` name (e.g. `tty0`), recorded but not used.
    pub other_console: Option<ShortBytes<16>>,
    /// `acpi_rsdp=` (hex, as the kernel parses it).
    pub acpi_rsdp: Option<u64>,
    /// `disable_cpu_apicid=`: the crashed kernel's BSP, which must never be sent INIT.
    pub disable_cpu_apicid: Option<u32>,
    /// `rkdump.target=`, a comma list (default `auto`; see [`TargetList::resolved`]).
    pub target: TargetList,
    /// `rkdump.action=` (default [`Action::Reboot`]).
    pub action: Action,
    /// `rkdump.reset=` as given; use [`Options::effective_reset`].
    pub reset: Option<ResetPolicy>,
    /// `rkdump.deny=`: devices never to touch.
    pub deny: DeviceList,
    /// `rkdump.allow=`: devices allowed despite the defaults.
    pub allow: DeviceList,
    /// `rkdump.selftest=` (test-only): raise this fault on purpose.
    pub selftest: Option<SelfTest>,
    /// `rkdump.exit=qemu` (test-only): leave through QEMU's isa-debug-exit.
    pub qemu_exit: bool,
    /// `rkdump.nopreinit` (test-only): skip the pre-crash config restore.
    pub nopreinit: bool,
    /// `rkdump.budget_ms=` (test/diagnostic): total time budget for device resets.
    pub budget_ms: u32,
    /// `rkdump.serial_baud=` (test/diagnostic): baud rate for the dump serial port.
    pub serial_baud: Option<u32>,
    /// `rkdump.checkpoint=on|off` (test only): `off` writes a disk record without checkpoints,
    /// to measure what they cost.
    pub checkpoints: bool,
    /// `rkdump.throttle_mib_s=<n>` (test only): the disk writer goes no faster than `n` MiB/s, so
    /// a test can cut the power mid-dump; 0 (default) for no limit.
    pub throttle_mib_s: u32,
    /// `rkdump.fault=dead:<pci>` (test-only): the function's registers read as all-ones, as if
    /// it fell off the bus or never became ready, to prove every wait on it is bounded.
    pub fault_dead: Option<Bdf>,
    /// `rkdump.fault=nosipi:<apic id>` (test-only): that CPU gets INIT but no STARTUP IPI, so it
    /// never checks in, to prove a CPU that does not come up is left out without stalling.
    pub fault_nosipi: Option<u32>,
    /// `rkdump.checksum=auto|full|sampled|none`: how much of each dump block its checksum
    /// covers (`auto`, the default, is every byte).
    pub checksum: ChecksumMode,
    /// `rkdump.report_lines=<n>`: printk lines in the crash report before the dump (0: none;
    /// the report caps it).
    pub report_lines: u32,
    /// `rkdump.level=<0..31>`: makedumpfile's dump level bits (1 zero pages, 2 non-private page
    /// cache, 4 all page cache, 8 user data, 16 free pages); 0 dumps every page; default
    /// [`DEFAULT_LEVEL`].
    pub level: u8,
    /// `rkdump.cpus=<n>|all`: how many CPUs the run uses, the one running rkdump included
    /// (`1`: that CPU alone, no other CPU is woken). `None` is the default, see
    /// [`Options::cpus_or_default`].
    pub cpus: Option<u32>,
    /// `rkdump.acpi_source=` (test/diagnostic): take the RSDP from this source only.
    pub acpi_source: Option<AcpiSource>,
    /// `rkdump.iommu=auto|skip` (`skip` is test only).
    pub iommu: IommuMode,
    /// `rkdump.watchdog=pet|keep|off` (default `pet`).
    pub watchdog: WatchdogMode,
    /// `rkdump.format=elf|kdump`.
    pub format: DumpFormat,
    /// `rkdump.compress=zlib|lzo|snappy|zstd|none` (kdump format only).
    pub compress: Compress,
    diags: [Option<Diag>; DIAG_CAPACITY],
    diag_len: usize,
    diags_dropped: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            reset_devices: false,
            elfcorehdr: None,
            console: None,
            other_console: None,
            acpi_rsdp: None,
            disable_cpu_apicid: None,
            target: TargetList::one(Target::Auto),
            action: Action::Reboot,
            reset: None,
            deny: DeviceList::new(),
            allow: DeviceList::new(),
            selftest: None,
            qemu_exit: false,
            nopreinit: false,
            budget_ms: DEFAULT_RESET_BUDGET_MS,
            serial_baud: None,
            checkpoints: true,
            throttle_mib_s: 0,
            fault_dead: None,
            fault_nosipi: None,
            checksum: ChecksumMode::Auto,
            report_lines: DEFAULT_REPORT_LINES,
            level: DEFAULT_LEVEL,
            cpus: None,
            acpi_source: None,
            iommu: IommuMode::Auto,
            watchdog: WatchdogMode::Pet,
            format: DumpFormat::default(),
            compress: Compress::default(),
            diags: [None; DIAG_CAPACITY],
            diag_len: 0,
            diags_dropped: 0,
        }
    }
}

impl Options {
    /// Parses a command line given as `&str`, bytes or a [`CmdlineBuf`]; stops at the first NUL and
    /// at `--` (the rest belongs to init). Never fails.
    pub fn parse(cmdline: &(impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::from_bytes(cmdline.as_ref())
    }

    /// Parses raw bytes; tokens that are not UTF-8 become [`DiagKind::Malformed`] diagnostics.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
        let mut opts = Self::default();
        let mut seen = 0u32;
        for tok in (Tokens { rest: bytes }) {
            if tok.raw == b"--" {
                break;
            }
            let Some(&(_, key)) = KEYS.iter().find(|(name, _)| key_eq(tok.key, name)) else {
                let kind = if core::str::from_utf8(tok.raw).is_ok() {
                    DiagKind::Unknown
                } else {
                    DiagKind::Malformed("not valid UTF-8")
                };
                opts.diag(tok, kind);
                continue;
            };
            match opts.apply(key, tok.value) {
                Ok(applied) => {
                    let bit = 1u32 << key as u32;
                    if seen & bit != 0 && key != Key::Console {
                        opts.diag(tok, DiagKind::Duplicate);
                    }
                    seen |= bit;
                    if let Applied::Partly(why) = applied {
                        opts.diag(tok, DiagKind::Malformed(why));
                    }
                }
                Err(why) => opts.diag(tok, DiagKind::Malformed(why)),
            }
        }
        opts
    }

    fn apply(&mut self, key: Key, value: Option<&[u8]>) -> Result<Applied, &'static str> {
        if key == Key::ResetDevices {
            // Like the kernel's __setup prefix match, `reset_devices=<anything>` also counts.
            self.reset_devices = true;
            return Ok(Applied::Set);
        }
        if key == Key::NoPreinit {
            if value.is_some() {
                return Err("takes no value");
            }
            self.nopreinit = true;
            return Ok(Applied::Set);
        }
        let v = match value {
            None => return Err("missing value"),
            Some([]) => return Err("empty value"),
            Some(v) => core::str::from_utf8(v).map_err(|_| "not valid UTF-8")?,
        };
        let u32_of = |v: &str| -> Result<u32, &'static str> {
            let n = parse_int(v).map_err(|e| e.reason())?;
            u32::try_from(n).map_err(|_| "value above 32 bits")
        };
        match key {
            Key::ResetDevices | Key::NoPreinit => {}
            Key::ElfCoreHdr => self.elfcorehdr = Some(ElfCoreHdrArg::parse(v)?),
            Key::Console => match ConsoleArg::parse(v)? {
                ConsoleArg::Serial(c) => self.console = Some(c),
                ConsoleArg::Other => self.other_console = Some(ShortBytes::new(v.as_bytes())),
            },
            Key::AcpiRsdp => {
                let addr = parse_hex(v).map_err(|e| e.reason())?;
                self.acpi_rsdp = Some(addr).filter(|&a| a != 0);
            }
            Key::DisableCpuApicid => self.disable_cpu_apicid = Some(u32_of(v)?),
            Key::Target => self.target = TargetList::parse(v)?,
            Key::Action => self.action = Action::parse(v)?,
            Key::Reset => self.reset = Some(ResetPolicy::parse(v)?),
            Key::Deny | Key::Allow => {
                let (list, overflow) = DeviceList::parse(v)?;
                *if key == Key::Deny {
                    &mut self.deny
                } else {
                    &mut self.allow
                } = list;
                if overflow {
                    return Ok(Applied::Partly(
                        "more than 32 entries; the rest are ignored",
                    ));
                }
            }
            Key::SelfTest => self.selftest = Some(SelfTest::parse(v)),
            Key::Exit if v == "qemu" => self.qemu_exit = true,
            Key::Exit => return Err("expected qemu"),
            Key::BudgetMs => self.budget_ms = u32_of(v)?,
            Key::SerialBaud => match u32_of(v)? {
                0 => return Err("baud rate 0"),
                baud => self.serial_baud = Some(baud),
            },
            Key::Checksum => {
                self.checksum = match v {
                    "auto" => ChecksumMode::Auto,
                    "full" => ChecksumMode::Full,
                    "sampled" => ChecksumMode::Sampled,
                    "none" => ChecksumMode::None,
                    _ => return Err("expected auto, full, sampled or none"),
                }
            }
            Key::Checkpoint => {
                self.checkpoints = match v {
                    "on" => true,
                    "off" => false,
                    _ => return Err("expected on or off"),
                }
            }
            Key::ThrottleMibS => self.throttle_mib_s = u32_of(v)?,
            Key::ReportLines => self.report_lines = u32_of(v)?,
            Key::Level => match u32_of(v)? {
                n @ 0..=31 => self.level = n as u8,
                _ => return Err("expected a dump level 0..31"),
            },
            Key::Cpus if v == "all" => self.cpus = Some(u32::MAX),
            Key::Cpus => match u32_of(v)? {
                0 => return Err("expected all or a count of at least 1"),
                n => self.cpus = Some(n),
            },
            Key::AcpiSource => self.acpi_source = Some(AcpiSource::parse(v)?),
            Key::Iommu => self.iommu = IommuMode::parse(v)?,
            Key::Watchdog => self.watchdog = WatchdogMode::parse(v)?,
            Key::Format => {
                self.format = match v {
                    "elf" => DumpFormat::Elf,
                    "kdump" => DumpFormat::Kdump,
                    _ => return Err("expected elf or kdump"),
                }
            }
            Key::Compress => {
                self.compress = match v {
                    "zlib" => Compress::Zlib,
                    "lzo" => Compress::Lzo,
                    "snappy" => Compress::Snappy,
                    "zstd" => Compress::Zstd,
                    "none" => Compress::None,
                    _ => return Err("expected zlib, lzo, snappy, zstd or none"),
                }
            }
            Key::Fault => match (v.strip_prefix("dead:"), v.strip_prefix("nosipi:")) {
                (Some(pci), _) => self.fault_dead = Some(Bdf::parse(pci).map_err(|e| e.reason())?),
                (_, Some(id)) => self.fault_nosipi = Some(u32_of(id)?),
                _ => return Err("expected dead:<pci address> or nosipi:<apic id>"),
            },
        }
        Ok(Applied::Set)
    }

    fn diag(&mut self, tok: Token<'_>, kind: DiagKind) {
        match self.diags.get_mut(self.diag_len) {
            Some(slot) => {
                *slot = Some(Diag {
                    token: ShortBytes::new(tok.raw),
                    kind,
                });
                self.diag_len += 1;
            }
            None => self.diags_dropped = self.diags_dropped.saturating_add(1),
        }
    }

    /// CPUs to run on, the running one included: `rkdump.cpus=` if given (`all` is
    /// `u32::MAX`), else [`DEFAULT_CPUS`].
    pub fn cpus_or_default(&self) -> u32 {
        self.cpus.unwrap_or(DEFAULT_CPUS)
    }

    /// The reset policy in force: `rkdump.reset=` if given, else `Auto` with `reset_devices`,
    /// else `None`.
    pub fn effective_reset(&self) -> ResetPolicy {
        match self.reset {
            Some(policy) => policy,
            None if self.reset_devices => ResetPolicy::Auto,
            None => ResetPolicy::None,
        }
    }

    /// Diagnostics in command-line order.
    pub fn diagnostics(&self) -> impl Iterator<Item = &Diag> + '_ {
        self.diags[..self.diag_len].iter().flatten()
    }

    /// Diagnostics that did not fit (beyond [`DIAG_CAPACITY`]).
    pub fn diagnostics_dropped(&self) -> u32 {
        self.diags_dropped
    }
}

#[cfg(test)]
mod tests;
