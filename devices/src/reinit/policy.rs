//! Reset policy: which methods may run and which devices may be touched (`rkdump.reset=`,
//! `rkdump.deny=`, `rkdump.allow=`, interfaces.md). The kernel maps the boot crate's parsed
//! command line onto these types; this crate does not depend on `rkdump-boot`.

use alloc::vec::Vec;
use core::fmt;

use bitflags::bitflags;

use crate::pci::PciDevice;

bitflags! {
    /// Reset methods, in the order [`super::run`] tries them. The bit positions equal the boot
    /// crate's `ResetMethods`, so the kernel can map with `Methods::from_bits_truncate(m.bits())`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Methods: u8 {
        /// The matching driver's own soft reset before probing ([`super::Driver::preinit`]).
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

impl fmt::Display for Methods {
    /// `preinit,flr,afflr,pm,sbr` (the command-line spelling), `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in [
            (Methods::PREINIT, "preinit"),
            (Methods::FLR, "flr"),
            (Methods::AFFLR, "afflr"),
            (Methods::PM, "pm"),
            (Methods::SBR, "sbr"),
        ] {
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

/// `rkdump.reset=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every method, in order (the default with `reset_devices`).
    Auto,
    /// No hardware reset: quiesce, and let drivers run their `preinit` (the default without
    /// `reset_devices`).
    None,
    /// Only these methods, in the fixed order.
    Methods(Methods),
}

impl Mode {
    /// The methods this mode permits. `None` still permits driver `preinit`: rkdump's own
    /// drivers always start from a known state (driver hardening), reset requested or not.
    pub fn methods(self) -> Methods {
        match self {
            Mode::Auto => Methods::all(),
            Mode::None => Methods::PREINIT,
            Mode::Methods(m) => m,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Auto => f.write_str("auto"),
            Mode::None => f.write_str("none"),
            Mode::Methods(m) => write!(f, "{m}"),
        }
    }
}

/// One `rkdump.deny=` / `rkdump.allow=` item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// `vvvv:dddd`.
    Id {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
    },
    /// `class:cc`.
    Class {
        /// Base class.
        class: u8,
    },
    /// `class:ccss`.
    ClassSub {
        /// Base class.
        class: u8,
        /// Subclass.
        subclass: u8,
    },
}

impl Match {
    /// Whether `dev` matches.
    pub fn matches(&self, dev: &PciDevice) -> bool {
        match *self {
            Match::Id { vendor, device } => dev.vendor == vendor && dev.device == device,
            Match::Class { class } => dev.class == class,
            Match::ClassSub { class, subclass } => dev.class == class && dev.subclass == subclass,
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Id { vendor, device } => write!(f, "{vendor:04x}:{device:04x}"),
            Match::Class { class } => write!(f, "class:{class:02x}"),
            Match::ClassSub { class, subclass } => write!(f, "class:{class:02x}{subclass:02x}"),
        }
    }
}

/// Default total time for the reset phase.
pub const DEFAULT_BUDGET_MS: u32 = 10_000;
/// Default time one device may take (covers FLR's 700 ms pending wait + 100 ms + readiness,
/// or PM's 20 ms plus an SBR's 2 + 100 ms and a 1 s readiness poll).
pub const DEFAULT_PER_DEVICE_CAP_MS: u32 = 2_500;

/// Everything [`super::run`] needs to decide what to do with each function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Which methods may run.
    pub mode: Mode,
    /// `reset_devices` was on the command line (reported only: the kernel already folded it
    /// into `mode`).
    pub reset_devices: bool,
    /// Functions that are quiesced but never reset or probed. Wins over `allow`.
    pub deny: Vec<Match>,
    /// When non-empty, only these functions are reset or probed (all are still quiesced).
    pub allow: Vec<Match>,
    /// Total time for resets; when it runs out, the remaining functions are only quiesced.
    pub budget_ms: u32,
    /// Time one function may take, whatever its methods.
    pub per_device_cap_ms: u32,
}

impl Policy {
    /// `mode` with the default budget and cap and no device lists.
    pub fn new(mode: Mode, reset_devices: bool) -> Self {
        Policy {
            mode,
            reset_devices,
            deny: Vec::new(),
            allow: Vec::new(),
            budget_ms: DEFAULT_BUDGET_MS,
            per_device_cap_ms: DEFAULT_PER_DEVICE_CAP_MS,
        }
    }

    /// The interfaces.md default: `auto` with `reset_devices`, `none` without.
    pub fn from_reset_devices(reset_devices: bool) -> Self {
        let mode = if reset_devices {
            Mode::Auto
        } else {
            Mode::None
        };
        Self::new(mode, reset_devices)
    }

    /// Listed in `deny`.
    pub fn is_denied(&self, dev: &PciDevice) -> bool {
        self.deny.iter().any(|m| m.matches(dev))
    }

    /// Not excluded by a non-empty `allow`.
    pub fn is_allowed(&self, dev: &PciDevice) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|m| m.matches(dev))
    }

    /// May be reset or probed: not denied and allowed.
    pub fn may_use(&self, dev: &PciDevice) -> bool {
        !self.is_denied(dev) && self.is_allowed(dev)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::from_reset_devices(false)
    }
}
