//! The PCI device vocabulary shared by the command line and the device layer: function
//! addresses ([`Bdf`]), `rkdump.deny=`/`rkdump.allow=` items ([`DeviceMatch`]) and reset
//! methods and policy ([`ResetMethods`], [`ResetPolicy`]). Defined once here, where the command
//! line parses them; `rkdump-devices` re-exports them (it depends on this crate, never the
//! other way), so the kernel hands parsed options to the device layer without converting.

use core::fmt;
use core::str::FromStr;

use bitflags::bitflags;

/// A PCI function address. `dev < 32` and `func < 8`; config accessors treat other values as an
/// absent function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (domain, ECAM group); 0 on every machine with a single host bridge.
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub dev: u8,
    /// Function number (0..8).
    pub func: u8,
}

impl Bdf {
    /// A checked address.
    pub const fn new(segment: u16, bus: u8, dev: u8, func: u8) -> Option<Self> {
        if dev < 32 && func < 8 {
            Some(Bdf {
                segment,
                bus,
                dev,
                func,
            })
        } else {
            None
        }
    }

    /// Whether `dev` and `func` are in range.
    pub const fn is_valid(&self) -> bool {
        self.dev < 32 && self.func < 8
    }

    /// Parses `bb:dd.f` or `ssss:bb:dd.f` (hex), the forms `rkdump.target=disk:` and sysfs take.
    pub fn parse(s: &str) -> Result<Self, ParseBdfError> {
        fn hex(s: &str, max_digits: usize) -> Result<u16, ParseBdfError> {
            if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseBdfError::Syntax);
            }
            u16::from_str_radix(s, 16).map_err(|_| ParseBdfError::Syntax)
        }
        let (head, dev_func) = s.rsplit_once(':').ok_or(ParseBdfError::Syntax)?;
        let (segment, bus) = match head.split_once(':') {
            Some((seg, bus)) => (hex(seg, 4)?, bus),
            None => (0, head),
        };
        let (dev, func) = dev_func.split_once('.').ok_or(ParseBdfError::Syntax)?;
        let (bus, dev, func) = (hex(bus, 2)?, hex(dev, 2)?, hex(func, 1)?);
        if dev >= 32 {
            return Err(ParseBdfError::Device);
        }
        if func >= 8 {
            return Err(ParseBdfError::Function);
        }
        // The digit limits above keep bus, dev and func below 256.
        Ok(Self {
            segment,
            bus: bus as u8,
            dev: dev as u8,
            func: func as u8,
        })
    }

    /// Displays `bb:dd.f` when the segment is 0, else the full form.
    pub fn short(&self) -> impl fmt::Display + '_ {
        struct Short<'a>(&'a Bdf);
        impl fmt::Display for Short<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let b = self.0;
                if b.segment == 0 {
                    write!(f, "{:02x}:{:02x}.{:x}", b.bus, b.dev, b.func)
                } else {
                    write!(f, "{b}")
                }
            }
        }
        Short(self)
    }
}

impl fmt::Display for Bdf {
    /// `ssss:bb:dd.f`, as `lspci -D` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.dev, self.func
        )
    }
}

impl FromStr for Bdf {
    type Err = ParseBdfError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bdf::parse(s)
    }
}

/// Why a PCI address did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseBdfError {
    /// Not `[ssss:]bb:dd.f` in hex.
    Syntax,
    /// Device number above 0x1f.
    Device,
    /// Function number above 7.
    Function,
}

impl ParseBdfError {
    /// The reason, as the command-line diagnostics print it.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Syntax => "bad PCI address (expected [ssss:]bb:dd.f)",
            Self::Device => "PCI device number above 0x1f",
            Self::Function => "PCI function number above 7",
        }
    }
}

impl fmt::Display for ParseBdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

bitflags! {
    /// Device reset methods rkdump may use (`rkdump.reset=preinit,flr,...`), in the order the
    /// reinit engine tries them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ResetMethods: u8 {
        /// The matching driver's own soft reset before probing (driver preinit).
        const PREINIT = 1 << 0;
        /// PCIe function-level reset (DevCap bit 28, DevCtl bit 15).
        const FLR = 1 << 1;
        /// Advanced-features FLR (capability 0x13 with TP and FLR).
        const AFFLR = 1 << 2;
        /// Power-management D3hot -> D0 with No_Soft_Reset = 0.
        const PM = 1 << 3;
        /// Secondary bus reset through the parent bridge (Bridge Control bit 6).
        const SBR = 1 << 4;
    }
}

impl ResetMethods {
    /// Each method with its command-line spelling, in order.
    const NAMES: [(ResetMethods, &'static str); 5] = [
        (ResetMethods::PREINIT, "preinit"),
        (ResetMethods::FLR, "flr"),
        (ResetMethods::AFFLR, "afflr"),
        (ResetMethods::PM, "pm"),
        (ResetMethods::SBR, "sbr"),
    ];
}

impl fmt::Display for ResetMethods {
    /// `preinit,flr,afflr,pm,sbr` (the command-line spelling), `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// `rkdump.reset=`: which device resets are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetPolicy {
    /// Every method, in order (the default with `reset_devices`).
    Auto,
    /// No hardware reset: quiesce, and let drivers run their preinit (the default without
    /// `reset_devices`).
    None,
    /// Only these methods, in the fixed order.
    Methods(ResetMethods),
}

impl ResetPolicy {
    pub(crate) fn parse(v: &str) -> Result<Self, &'static str> {
        match v {
            "auto" => return Ok(Self::Auto),
            "none" => return Ok(Self::None),
            _ => {}
        }
        let mut methods = ResetMethods::empty();
        for item in v.split(',') {
            methods |= ResetMethods::NAMES
                .iter()
                .find(|&&(_, name)| name == item)
                .map(|&(flag, _)| flag)
                .ok_or("expected auto, none or a list of preinit,flr,afflr,pm,sbr")?;
        }
        Ok(Self::Methods(methods))
    }

    /// The methods this policy permits. `None` still permits driver preinit: rkdump's own
    /// drivers always start from a known state (driver hardening), reset requested or not.
    pub fn methods(self) -> ResetMethods {
        match self {
            Self::Auto => ResetMethods::all(),
            Self::None => ResetMethods::PREINIT,
            Self::Methods(m) => m,
        }
    }
}

impl fmt::Display for ResetPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::None => f.write_str("none"),
            Self::Methods(m) => write!(f, "{m}"),
        }
    }
}

/// One `rkdump.deny=` / `rkdump.allow=` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMatch {
    /// `vvvv:dddd`: vendor and device ID.
    Id {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
    },
    /// `class:cc`: base class.
    Class {
        /// Base class code.
        class: u8,
    },
    /// `class:ccss`: base class and subclass.
    ClassSub {
        /// Base class code.
        class: u8,
        /// Subclass code.
        subclass: u8,
    },
}

impl DeviceMatch {
    /// Whether a function with these IDs and class matches.
    pub fn matches(&self, vendor: u16, device: u16, class_code: u8, subclass: u8) -> bool {
        match *self {
            Self::Id {
                vendor: v,
                device: d,
            } => v == vendor && d == device,
            Self::Class { class } => class == class_code,
            Self::ClassSub { class, subclass: s } => class == class_code && s == subclass,
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, &'static str> {
        const BAD: &str = "expected vvvv:dddd, class:cc or class:ccss (hex)";
        fn hex(s: &str, digits: core::ops::RangeInclusive<usize>) -> Result<u16, &'static str> {
            if !digits.contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BAD);
            }
            u16::from_str_radix(s, 16).map_err(|_| BAD)
        }
        if let Some(class) = s.strip_prefix("class:") {
            let v = hex(class, 2..=4)?;
            return match class.len() {
                2 => Ok(Self::Class { class: v as u8 }),
                4 => Ok(Self::ClassSub {
                    class: (v >> 8) as u8,
                    subclass: v as u8,
                }),
                _ => Err(BAD),
            };
        }
        let (vendor, device) = s.split_once(':').ok_or(BAD)?;
        Ok(Self::Id {
            vendor: hex(vendor, 1..=4)?,
            device: hex(device, 1..=4)?,
        })
    }
}

impl fmt::Display for DeviceMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id { vendor, device } => write!(f, "{vendor:04x}:{device:04x}"),
            Self::Class { class } => write!(f, "class:{class:02x}"),
            Self::ClassSub { class, subclass } => write!(f, "class:{class:02x}{subclass:02x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        let p = |s| Bdf::parse(s);
        assert_eq!(p("00:04.0"), Ok(Bdf::new(0, 0, 4, 0).unwrap()));
        assert_eq!(p("0000:01:00.0"), Ok(Bdf::new(0, 1, 0, 0).unwrap()));
        assert_eq!(
            p("abcd:ff:1f.7"),
            Ok(Bdf::new(0xABCD, 0xFF, 31, 7).unwrap())
        );
        assert_eq!(p("00:20.0"), Err(ParseBdfError::Device));
        assert_eq!(p("00:04.8"), Err(ParseBdfError::Function));
        assert_eq!(
            ParseBdfError::Device.reason(),
            "PCI device number above 0x1f"
        );
        assert_eq!(
            std::format!("{}", ParseBdfError::Function),
            "PCI function number above 7"
        );
        for bad in [
            "",
            "04.0",
            "00:04",
            "100:04.0",
            "0:0:0:0.0",
            "00:04.0x",
            "g0:04.0",
            "00:+4.0",
            "00:04.0.1",
            "00:04:0",
            "00:004.0",
            "00000:00:04.0",
            "00:04.00",
        ] {
            assert_eq!(p(bad), Err(ParseBdfError::Syntax), "{bad}");
        }
        assert_eq!(std::format!("{}", p("1:2.3").unwrap()), "0000:01:02.3");
        assert_eq!("0001:02:03.4".parse::<Bdf>(), p("1:2:3.4"));
    }

    #[test]
    fn bdf_checks_and_short_form() {
        let x = Bdf::parse("00:04.0").unwrap();
        assert_eq!(std::format!("{x}"), "0000:00:04.0");
        assert_eq!(std::format!("{}", x.short()), "00:04.0");
        let y = Bdf::new(1, 0x1f, 0x1f, 7).unwrap();
        assert_eq!(std::format!("{}", y.short()), "0001:1f:1f.7");
        assert!(Bdf::new(0, 0, 32, 0).is_none());
        assert!(Bdf::new(0, 0, 0, 8).is_none());
        let bad = Bdf {
            segment: 0,
            bus: 0,
            dev: 40,
            func: 0,
        };
        assert!(!bad.is_valid() && x.is_valid());
    }

    #[test]
    fn reset_methods_and_policy() {
        assert_eq!(
            std::format!("{}", ResetMethods::all()),
            "preinit,flr,afflr,pm,sbr"
        );
        assert_eq!(std::format!("{}", ResetMethods::empty()), "-");
        assert_eq!(ResetPolicy::None.methods(), ResetMethods::PREINIT);
        assert_eq!(ResetPolicy::Auto.methods(), ResetMethods::all());
        let m = ResetPolicy::parse("sbr,flr").unwrap();
        assert_eq!(
            m,
            ResetPolicy::Methods(ResetMethods::FLR | ResetMethods::SBR)
        );
        assert_eq!(std::format!("{m}"), "flr,sbr");
        assert_eq!(std::format!("{}", ResetPolicy::Auto), "auto");
        assert!(ResetPolicy::parse("flr,bogus").is_err());
    }

    #[test]
    fn device_match_display() {
        assert_eq!(
            std::format!(
                "{} {} {}",
                DeviceMatch::Id {
                    vendor: 0x1af4,
                    device: 0x1042
                },
                DeviceMatch::Class { class: 1 },
                DeviceMatch::ClassSub {
                    class: 1,
                    subclass: 8
                }
            ),
            "1af4:1042 class:01 class:0108"
        );
    }
}
