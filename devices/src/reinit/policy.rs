//! Reset policy: which methods may run and which devices may be touched (`rkdump.reset=`,
//! `rkdump.deny=`, `rkdump.allow=`, docs/interface.md#rkdump-options), built from the boot crate's parsed command
//! line, whose vocabulary ([`ResetPolicy`], [`ResetMethods`], [`DeviceMatch`]) it uses as is.

use alloc::vec::Vec;

use rkdump_boot::cmdline::{DeviceMatch, Options, ResetMethods, ResetPolicy};

use crate::pci::PciDevice;

/// Default total time for the reset phase.
pub const DEFAULT_BUDGET_MS: u32 = 10_000;
/// Default time one device may take (covers FLR's 700 ms pending wait + 100 ms + readiness,
/// or PM's 20 ms plus an SBR's 2 + 100 ms and a 1 s readiness poll).
pub const DEFAULT_PER_DEVICE_CAP_MS: u32 = 2_500;

/// Everything [`super::run`] needs to decide what to do with each function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Which methods may run.
    pub mode: ResetPolicy,
    /// `reset_devices` was on the command line (reported only: the kernel already folded it
    /// into `mode`).
    pub reset_devices: bool,
    /// Functions that are quiesced but never reset or probed. Wins over `allow`.
    pub deny: Vec<DeviceMatch>,
    /// When non-empty, only these functions are reset or probed (all are still quiesced).
    pub allow: Vec<DeviceMatch>,
    /// Total time for resets; when it runs out, the remaining functions are only quiesced.
    pub budget_ms: u32,
    /// Time one function may take, whatever its methods.
    pub per_device_cap_ms: u32,
}

impl Policy {
    /// `mode` with the default budget and cap and no device lists.
    pub fn new(mode: ResetPolicy, reset_devices: bool) -> Self {
        Policy {
            mode,
            reset_devices,
            deny: Vec::new(),
            allow: Vec::new(),
            budget_ms: DEFAULT_BUDGET_MS,
            per_device_cap_ms: DEFAULT_PER_DEVICE_CAP_MS,
        }
    }

    /// The documented default (docs/interface.md#rkdump-options): `auto` with `reset_devices`, `none` without.
    pub fn from_reset_devices(reset_devices: bool) -> Self {
        let mode = if reset_devices {
            ResetPolicy::Auto
        } else {
            ResetPolicy::None
        };
        Self::new(mode, reset_devices)
    }

    /// The policy the command line asks for: `rkdump.reset=` (or the `reset_devices` default),
    /// the deny and allow lists and the budget. `rkdump.nopreinit` (test-only negative control)
    /// also withdraws driver preinit, to show the failure a never-reset device causes (drivers
    /// then also skip their own reset at probe).
    pub fn from_options(opts: &Options) -> Self {
        let mut mode = opts.effective_reset();
        if opts.nopreinit {
            mode = ResetPolicy::Methods(mode.methods() - ResetMethods::PREINIT);
        }
        let mut p = Self::new(mode, opts.reset_devices);
        p.deny = opts.deny.as_slice().to_vec();
        p.allow = opts.allow.as_slice().to_vec();
        p.budget_ms = opts.budget_ms;
        p
    }

    /// Listed in `deny`.
    pub fn is_denied(&self, dev: &PciDevice) -> bool {
        self.deny.iter().any(|m| dev.matches(m))
    }

    /// Not excluded by a non-empty `allow`.
    pub fn is_allowed(&self, dev: &PciDevice) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|m| dev.matches(m))
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
