//! Typed values of the parameters rkdump honours, and their parsers (docs/interface.md#kernel-command-line).

use core::fmt;

use super::device::{Bdf, DeviceMatch};
use super::num::{memparse, parse_int};

/// Writes bytes with printable ASCII as is and everything else as `\xNN`.
pub(crate) fn write_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        if b == b' ' || b.is_ascii_graphic() {
            fmt::Write::write_char(f, char::from(b))?;
        } else {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// A short byte string copied from the command line (no heap), truncated to `N` bytes (N ≤ 255).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShortBytes<const N: usize> {
    bytes: [u8; N],
    len: u8,
    truncated: bool,
}

impl<const N: usize> ShortBytes<N> {
    const LEN_FITS_U8: () = assert!(N <= u8::MAX as usize, "ShortBytes holds at most 255 bytes");

    /// Copies up to `N` bytes of `src`.
    pub fn new(src: &[u8]) -> Self {
        let () = Self::LEN_FITS_U8;
        let n = src.len().min(N);
        let mut bytes = [0; N];
        bytes[..n].copy_from_slice(&src[..n]);
        Self {
            bytes,
            len: n as u8,
            truncated: src.len() > N,
        }
    }

    /// The copied bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The copied bytes as text, if valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }

    /// Whether the source was longer than `N` bytes.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<const N: usize> fmt::Display for ShortBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.as_bytes())?;
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for ShortBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `elfcorehdr=[size[KMG]@]offset[KMG]`: where the crashed kernel left the ELF core header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElfCoreHdrArg {
    /// Physical address in old memory.
    pub addr: u64,
    /// Size, when given as `size@addr`.
    pub size: Option<u64>,
}

impl ElfCoreHdrArg {
    pub(crate) fn parse(v: &str) -> Result<Self, &'static str> {
        let (size, addr) = match v.split_once('@') {
            Some((size, addr)) => (Some(memparse(size).map_err(|e| e.reason())?), addr),
            None => (None, v),
        };
        let addr = memparse(addr).map_err(|e| e.reason())?;
        Ok(Self { addr, size })
    }
}

/// A legacy I/O-port serial port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialPort {
    /// ttyS0, 0x3F8.
    Com1,
    /// ttyS1, 0x2F8.
    Com2,
    /// ttyS2, 0x3E8.
    Com3,
    /// ttyS3, 0x2E8.
    Com4,
    /// A UART at this I/O port (`console=uart8250,io,<port>`).
    Io(u16),
}

impl SerialPort {
    /// The UART's base I/O port.
    pub const fn io_base(self) -> u16 {
        match self {
            Self::Com1 => 0x3F8,
            Self::Com2 => 0x2F8,
            Self::Com3 => 0x3E8,
            Self::Com4 => 0x2E8,
            Self::Io(port) => port,
        }
    }

    /// `ttyS<index>` for index 0..=3.
    pub const fn from_index(index: u8) -> Option<Self> {
        match index {
            0 => Some(Self::Com1),
            1 => Some(Self::Com2),
            2 => Some(Self::Com3),
            3 => Some(Self::Com4),
            _ => None,
        }
    }

    /// Parses `ttyS0` .. `ttyS3`.
    fn parse_tty(name: &str) -> Result<Self, &'static str> {
        let index = name.strip_prefix("ttyS").ok_or("expected ttyS<n>")?;
        let index: u8 = index.parse().map_err(|_| "expected ttyS<n>")?;
        Self::from_index(index).ok_or("ttyS index above 3 has no legacy I/O port")
    }
}

impl fmt::Display for SerialPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Com1 => f.write_str("ttyS0"),
            Self::Com2 => f.write_str("ttyS1"),
            Self::Com3 => f.write_str("ttyS2"),
            Self::Com4 => f.write_str("ttyS3"),
            Self::Io(port) => write!(f, "io:{port:#x}"),
        }
    }
}

/// A serial console from `console=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    /// The port.
    pub port: SerialPort,
    /// Baud rate, when given (`ttyS1,115200n8`).
    pub baud: Option<u32>,
}

/// What one `console=` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConsoleArg {
    Serial(Console),
    Other,
}

impl ConsoleArg {
    /// `ttyS<n>[,opts]`, `uart[8250],io,<port>[,opts]`; other device names are non-serial consoles.
    pub(crate) fn parse(v: &str) -> Result<Self, &'static str> {
        let (name, rest) = v.split_once(',').unwrap_or((v, ""));
        let (port, opts) = match name {
            "uart" | "uart8250" => {
                let (space, rest) = rest.split_once(',').unwrap_or((rest, ""));
                if space != "io" {
                    return Err("only uart8250,io,<port> is supported (no MMIO)");
                }
                let (addr, opts) = rest.split_once(',').unwrap_or((rest, ""));
                let addr = parse_int(addr).map_err(|e| e.reason())?;
                let port = u16::try_from(addr).map_err(|_| "I/O port above 0xffff")?;
                (SerialPort::Io(port), opts)
            }
            _ if name.starts_with("ttyS") => (SerialPort::parse_tty(name)?, rest),
            _ => return Ok(Self::Other),
        };
        Ok(Self::Serial(Console {
            port,
            baud: parse_serial_options(opts)?,
        }))
    }
}

/// `<baud><parity><bits><flow>` as in `115200n8r`; returns the baud rate.
fn parse_serial_options(opts: &str) -> Result<Option<u32>, &'static str> {
    const BAD: &str = "bad serial options (expected e.g. 115200n8)";
    let split = opts
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(opts.len());
    let (baud, mut rest) = opts.split_at(split);
    let baud = match baud {
        "" => None,
        digits => Some(digits.parse::<u32>().ok().filter(|&b| b > 0).ok_or(BAD)?),
    };
    for allowed in ["noems", "5678", "r"] {
        if let Some(c) = rest.chars().next()
            && allowed.contains(c)
        {
            rest = &rest[1..];
        }
    }
    if !rest.is_empty() || (baud.is_none() && !opts.is_empty()) {
        return Err(BAD);
    }
    Ok(baud)
}

/// One entry of `rkdump.target=`: a place the dump may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// `auto`: [`TargetList::DEFAULT_ORDER`] (the default).
    #[default]
    Auto,
    /// `disk`: the first disk carrying an rkdump dump label at LBA 0.
    Disk,
    /// `disk:<pci>`: the disk behind this PCI function.
    DiskAt(Bdf),
    /// `part`: the first labelled GPT or MBR partition.
    Part,
    /// `file`: the preallocated file whose block map the config blob carries.
    File,
    /// `serial` (COM2) or `serial:ttyS<n>`.
    Serial(SerialPort),
}

impl Target {
    pub(crate) fn parse(v: &str) -> Result<Self, &'static str> {
        match v {
            "auto" => Ok(Self::Auto),
            "disk" => Ok(Self::Disk),
            "part" => Ok(Self::Part),
            "file" => Ok(Self::File),
            "serial" => Ok(Self::Serial(SerialPort::Com2)),
            _ => {
                if let Some(pci) = v.strip_prefix("disk:") {
                    Ok(Self::DiskAt(Bdf::parse(pci).map_err(|e| e.reason())?))
                } else if let Some(tty) = v.strip_prefix("serial:") {
                    Ok(Self::Serial(SerialPort::parse_tty(tty)?))
                } else {
                    Err("expected auto, file, part, disk, disk:<pci>, serial or serial:ttyS<n>")
                }
            }
        }
    }

    /// A disk search serves it (`disk`, `disk:<pci>`, `part`).
    pub fn is_disk(&self) -> bool {
        matches!(self, Self::Disk | Self::DiskAt(_) | Self::Part)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Disk => f.write_str("disk"),
            Self::DiskAt(pci) => write!(f, "disk:{pci}"),
            Self::Part => f.write_str("part"),
            Self::File => f.write_str("file"),
            Self::Serial(port) => write!(f, "serial:{port}"),
        }
    }
}

/// Capacity of a [`TargetList`].
pub const TARGET_LIST_CAPACITY: usize = 8;

/// `rkdump.target=`: a comma list of [`Target`]s, tried in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetList {
    items: [Target; TARGET_LIST_CAPACITY],
    len: usize,
}

impl Default for TargetList {
    fn default() -> Self {
        Self::one(Target::Auto)
    }
}

impl TargetList {
    /// What `auto` stands for: the file, then a whole labelled disk or a labelled partition
    /// (one search over the disks in PCI order), then COM2.
    pub const DEFAULT_ORDER: [Target; 4] = [
        Target::File,
        Target::Disk,
        Target::Part,
        Target::Serial(SerialPort::Com2),
    ];

    /// A list of one.
    pub const fn one(t: Target) -> Self {
        let mut items = [Target::Auto; TARGET_LIST_CAPACITY];
        items[0] = t;
        Self { items, len: 1 }
    }

    /// The entries as given.
    pub fn as_slice(&self) -> &[Target] {
        &self.items[..self.len]
    }

    /// The order the kernel tries: `auto` expanded to [`Self::DEFAULT_ORDER`], repeats
    /// dropped, and COM2 appended as the last resort unless a serial port is listed (as a
    /// lone `disk` target always fell back to serial).
    pub fn resolved(&self) -> TargetList {
        let mut out = TargetList {
            items: [Target::Auto; TARGET_LIST_CAPACITY],
            len: 0,
        };
        let push = |t: Target, out: &mut TargetList| {
            if !out.as_slice().contains(&t) && out.len < TARGET_LIST_CAPACITY {
                out.items[out.len] = t;
                out.len += 1;
            }
        };
        for &t in self.as_slice() {
            if t == Target::Auto {
                for d in Self::DEFAULT_ORDER {
                    push(d, &mut out);
                }
            } else {
                push(t, &mut out);
            }
        }
        if !out
            .as_slice()
            .iter()
            .any(|t| matches!(t, Target::Serial(_)))
        {
            push(Target::Serial(SerialPort::Com2), &mut out);
        }
        out
    }

    /// The [`resolved`](Self::resolved) list as the searches the kernel runs: adjacent `disk`
    /// and `part` entries become one search over the disks (in PCI order) that accepts either.
    pub fn steps(&self) -> impl Iterator<Item = TargetStep> + '_ {
        let list = self.resolved();
        let mut steps = [TargetStep::File; TARGET_LIST_CAPACITY];
        let mut n = 0;
        for t in list.as_slice() {
            let step = match *t {
                Target::File | Target::Auto => TargetStep::File,
                Target::Serial(p) => TargetStep::Serial(p),
                Target::DiskAt(b) => TargetStep::Disks {
                    want: Some(b),
                    whole: true,
                    part: false,
                },
                Target::Disk | Target::Part => {
                    let (whole, part) = (*t == Target::Disk, *t == Target::Part);
                    if n > 0
                        && let TargetStep::Disks {
                            want: None,
                            whole: w,
                            part: p,
                        } = &mut steps[n - 1]
                    {
                        *w |= whole;
                        *p |= part;
                        continue;
                    }
                    TargetStep::Disks {
                        want: None,
                        whole,
                        part,
                    }
                }
            };
            steps[n] = step;
            n += 1;
        }
        (0..n).map(move |i| steps[i])
    }

    pub(crate) fn parse(v: &str) -> Result<Self, &'static str> {
        let mut out = TargetList {
            items: [Target::Auto; TARGET_LIST_CAPACITY],
            len: 0,
        };
        for item in v.split(',') {
            if out.len == TARGET_LIST_CAPACITY {
                return Err("more than 8 targets");
            }
            out.items[out.len] = Target::parse(item)?;
            out.len += 1;
        }
        Ok(out)
    }
}

/// One search of [`TargetList::steps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetStep {
    /// The file of the config blob's block map.
    File,
    /// The disks: the first one (or the one at `want`) with a whole-disk label if `whole`, or
    /// with a labelled partition if `part`.
    Disks {
        /// `disk:<pci>`.
        want: Option<Bdf>,
        /// Accept a label at LBA 0.
        whole: bool,
        /// Accept a labelled partition.
        part: bool,
    },
    /// A serial port.
    Serial(SerialPort),
}

impl fmt::Display for TargetStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File => f.write_str("file"),
            Self::Disks { want: Some(b), .. } => write!(f, "disk:{b}"),
            Self::Disks {
                whole: true,
                part: true,
                ..
            } => f.write_str("disk/part"),
            Self::Disks { part: true, .. } => f.write_str("part"),
            Self::Disks { .. } => f.write_str("disk"),
            Self::Serial(p) => write!(f, "serial:{p}"),
        }
    }
}

impl fmt::Display for TargetList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// `rkdump.action=`: what to do when the dump is finished (or failed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    /// Reset the machine (default).
    #[default]
    Reboot,
    /// ACPI power off.
    Poweroff,
    /// Halt all CPUs.
    Halt,
}

impl Action {
    pub(crate) fn parse(v: &str) -> Result<Self, &'static str> {
        match v {
            "reboot" => Ok(Self::Reboot),
            "poweroff" => Ok(Self::Poweroff),
            "halt" => Ok(Self::Halt),
            _ => Err("expected reboot, poweroff or halt"),
        }
    }
}

/// Capacity of a [`DeviceList`].
pub const DEVICE_LIST_CAPACITY: usize = 32;

/// A fixed-capacity list of [`DeviceMatch`] items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceList {
    items: [DeviceMatch; DEVICE_LIST_CAPACITY],
    len: usize,
}

impl Default for DeviceList {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceList {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            items: [DeviceMatch::Class { class: 0 }; DEVICE_LIST_CAPACITY],
            len: 0,
        }
    }

    /// The items.
    pub fn as_slice(&self) -> &[DeviceMatch] {
        &self.items[..self.len]
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether any item matches.
    pub fn matches(&self, vendor: u16, device: u16, class_code: u8, subclass: u8) -> bool {
        self.as_slice()
            .iter()
            .any(|m| m.matches(vendor, device, class_code, subclass))
    }

    /// Parses a comma list; a bad item rejects the whole list. Returns the list and whether items
    /// beyond the capacity were left out.
    pub(crate) fn parse(v: &str) -> Result<(Self, bool), &'static str> {
        let mut list = Self::new();
        let mut overflow = false;
        for item in v.split(',') {
            let m = DeviceMatch::parse(item)?;
            match list.items.get_mut(list.len) {
                Some(slot) => {
                    *slot = m;
                    list.len += 1;
                }
                None => overflow = true,
            }
        }
        Ok((list, overflow))
    }
}

/// `rkdump.selftest=` (test-only): fault to raise on purpose to exercise the handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// Touch an unmapped page (#PF).
    PageFault,
    /// Divide by zero (#DE).
    Divide,
    /// `int3` (#BP).
    Breakpoint,
    /// Call the panic handler.
    Panic,
    /// Run a checksum job on every CPU and compare it with this CPU's own result.
    Smp,
    /// Anything else, kept as given.
    Unknown(ShortBytes<16>),
}

impl SelfTest {
    pub(crate) fn parse(v: &str) -> Self {
        match v {
            "pagefault" => Self::PageFault,
            "divide" => Self::Divide,
            "breakpoint" => Self::Breakpoint,
            "panic" => Self::Panic,
            "smp" => Self::Smp,
            other => Self::Unknown(ShortBytes::new(other.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_matches() {
        let (list, over) = DeviceList::parse("8086:100e,class:01,class:0c03,1af4:1042").unwrap();
        assert!(!over);
        assert_eq!(list.as_slice().len(), 4);
        assert!(list.matches(0x8086, 0x100E, 2, 0));
        assert!(list.matches(0x1234, 0x5678, 1, 6));
        assert!(list.matches(0x1234, 0x5678, 0x0C, 0x03));
        assert!(!list.matches(0x1234, 0x5678, 0x0C, 0x05));
        assert!(!list.matches(0x8086, 0x100F, 2, 0));
        for bad in [
            "",
            "8086",
            "class:1",
            "class:123",
            "class:0c03x",
            "80865:1",
            "8086:zz",
            "a,",
        ] {
            assert!(DeviceList::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serial_options() {
        assert_eq!(parse_serial_options(""), Ok(None));
        assert_eq!(parse_serial_options("115200"), Ok(Some(115_200)));
        assert_eq!(parse_serial_options("115200n8"), Ok(Some(115_200)));
        assert_eq!(parse_serial_options("9600e7r"), Ok(Some(9600)));
        assert!(parse_serial_options("n8").is_err());
        assert!(parse_serial_options("0").is_err());
        assert!(parse_serial_options("115200x").is_err());
        assert!(parse_serial_options("99999999999").is_err());
    }

    #[test]
    fn short_bytes() {
        let s = ShortBytes::<4>::new(b"ab\xffcdef");
        assert_eq!(s.as_bytes(), b"ab\xffc");
        assert!(s.is_truncated());
        assert_eq!(s.as_str(), None);
        assert_eq!(std::format!("{s}"), "ab\\xffc...");
    }
}
