//! The generic PCI reset methods (Linux `pcie_flr`, `pci_af_flr`, `pci_pm_reset`,
//! `pci_reset_secondary_bus`, drivers/pci/pci.c), the readiness poll (`pci_dev_wait`) and the
//! read-back that proves a reset happened. Every wait goes through the [`Clock`] and is bounded
//! by a [`Deadline`], so a dead device costs at most its cap.

use core::fmt;

use super::saved::{bar_addresses, pcie_reg, read_header};
use crate::pci::{Bdf, BridgeControl, ConfigSpace, caps, reg};
use crate::time::Clock;

/// Transactions Pending wait before an FLR (Linux `pci_wait_for_pending`: 100+200+400 ms).
pub const FLR_PENDING_WAIT_MS: u64 = 700;
/// Sleep after initiating an FLR before the first config read (PCIe Base §6.6.2).
pub const FLR_SETTLE_MS: u64 = 100;
/// D3hot transition delay each way (`PCI_PM_D3HOT_WAIT`).
pub const PM_D3HOT_DELAY_MS: u64 = 10;
/// Secondary Bus Reset assertion time (Trst >= 1 ms, doubled as Linux does).
pub const SBR_ASSERT_MS: u64 = 2;
/// Wait after SBR de-assertion before the first config read (`PCIE_RESET_CONFIG_WAIT_MS`).
pub const SBR_SETTLE_MS: u64 = 100;
/// How long a silent device below a reset bridge may take (`PCI_RESET_WAIT`).
pub const SBR_READY_MS: u64 = 1_000;

/// AF capability registers (PCI Advanced Features ECN).
mod af {
    pub const CAP: u16 = 3;
    pub const CTRL: u16 = 4;
    pub const STATUS: u16 = 5;
    pub const CAP_TP: u8 = 1 << 0;
    pub const CAP_FLR: u8 = 1 << 1;
    pub const CTRL_FLR: u8 = 1 << 0;
    pub const STATUS_TP: u8 = 1 << 0;
}

/// PMCSR (PM capability + 4) bits.
mod pmcsr {
    pub const OFF: u16 = 4;
    pub const STATE: u16 = 0x3;
    pub const D3HOT: u16 = 0x3;
    pub const NO_SOFT_RESET: u16 = 1 << 3;
    /// PME_Status, write-1-to-clear: never written back as 1.
    pub const PME_STATUS: u16 = 1 << 15;
}

/// A point in clock time by which work must stop.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    /// Clock value in microseconds.
    pub at_us: u64,
}

impl Deadline {
    /// Microseconds left.
    pub fn left_us(&self, clock: &dyn Clock) -> u64 {
        self.at_us.saturating_sub(clock.now_us())
    }
}

/// Polls `cond` until true or `timeout_us` passes, sleeping `first_us` between looks and
/// doubling up to `max_us` (Linux `pci_dev_wait` backs off the same way). Never sleeps past
/// the timeout. `Ok(waited)` or `Err(waited)`, in microseconds.
pub fn wait_until(
    clock: &dyn Clock,
    timeout_us: u64,
    first_us: u64,
    max_us: u64,
    mut cond: impl FnMut() -> bool,
) -> Result<u64, u64> {
    let start = clock.now_us();
    let mut step = first_us.max(1);
    loop {
        let ok = cond();
        let waited = clock.now_us().saturating_sub(start);
        if ok {
            return Ok(waited);
        }
        if waited >= timeout_us {
            return Err(waited);
        }
        clock.delay_us(step.min(timeout_us - waited));
        step = (step * 2).min(max_us.max(1));
    }
}

/// How a readiness poll ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The function never answered (all-ones).
    Silent,
    /// It kept answering Configuration Request Retry Status (Vendor ID 0x0001).
    Retry,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotReady::Silent => "reads ffff",
            NotReady::Retry => "answers RRS",
        })
    }
}

/// Polls the Vendor ID dword until it is neither all-ones (absent) nor 0x0001 (RRS), as
/// Linux's `pci_dev_wait` does, for at most `timeout_us`.
pub fn wait_ready(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    bdf: Bdf,
    timeout_us: u64,
) -> Result<u64, NotReady> {
    let mut last = u32::MAX;
    wait_until(clock, timeout_us, 1_000, 64_000, || {
        last = cfg.read32(bdf, reg::VENDOR_ID);
        let v = last as u16;
        v != 0xFFFF && v != 0x0001
    })
    .map_err(|_| {
        if last as u16 == 0x0001 {
            NotReady::Retry
        } else {
            NotReady::Silent
        }
    })
}

/// State read back before and after a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Vendor ID.
    pub vendor: u16,
    /// COMMAND.
    pub command: u16,
    /// BAR address bits.
    pub bars: [u32; 6],
    /// Bridges: secondary bus number (0 for endpoints).
    pub secondary: u8,
}

impl Probe {
    /// Reads the probe registers.
    pub fn read(cfg: &dyn ConfigSpace, bdf: Bdf) -> Self {
        let h = read_header(cfg, bdf);
        let bridge = super::saved::kind(&h) == crate::pci::header_type::BRIDGE;
        Probe {
            vendor: u16::from_le_bytes([h[0], h[1]]),
            command: u16::from_le_bytes([h[4], h[5]]),
            bars: bar_addresses(&h).0,
            secondary: if bridge {
                h[usize::from(reg::SECONDARY_BUS)]
            } else {
                0
            },
        }
    }
}

/// What the read-back showed a reset changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Every BAR that held an address now reads 0.
    pub bars: bool,
    /// COMMAND went from non-zero (rkdump leaves INTx-Disable set) to 0.
    pub command: bool,
    /// A bridge's secondary bus number went to 0.
    pub bus: bool,
}

impl Evidence {
    /// Compares read-backs; `None` when nothing that only a reset changes did change.
    pub fn compare(before: &Probe, after: &Probe) -> Option<Self> {
        if after.vendor == 0xFFFF {
            return None;
        }
        let assigned = before.bars.iter().any(|&a| a != 0);
        let e = Evidence {
            bars: assigned
                && before
                    .bars
                    .iter()
                    .zip(after.bars.iter())
                    .all(|(&b, &a)| b == 0 || a == 0),
            command: before.command != 0 && after.command == 0,
            bus: before.secondary != 0 && after.secondary == 0,
        };
        (e != Evidence::default()).then_some(e)
    }
}

impl fmt::Display for Evidence {
    /// e.g. "bars, command read 0".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (on, name) in [
            (self.bars, "bars"),
            (self.command, "command"),
            (self.bus, "bus numbers"),
        ] {
            if on {
                write!(f, "{sep}{name}")?;
                sep = ", ";
            }
        }
        f.write_str(" read 0")
    }
}

/// Result of one hardware method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// The method does not apply to this function (reason for the report).
    NotApplicable(&'static str),
    /// Not enough time left under the cap or budget to run it.
    NoTime,
    /// The reset was issued and the function answers again. `pending` = the Transactions
    /// Pending wait timed out and the reset was issued anyway (as Linux does).
    Ready {
        /// Transactions Pending never cleared.
        pending: bool,
    },
    /// Issued, and the function never came back before the deadline.
    NotReady(NotReady),
}

/// The PCIe capability offset if the function advertises FLR (DevCap bit 28).
pub fn flr_cap(cfg: &dyn ConfigSpace, bdf: Bdf) -> Result<u16, &'static str> {
    let p = caps::find_pcie(cfg, bdf).ok_or("no PCIe capability")?;
    let devcap = cfg.read32(bdf, p + pcie_reg::DEVCAP);
    if devcap == u32::MAX || devcap & pcie_reg::DEVCAP_FLR == 0 {
        return Err("not FLR capable");
    }
    Ok(p)
}

/// PCIe FLR (Linux `pcie_flr`): wait for Transactions Pending, set Initiate FLR with a 16-bit
/// DevCtl write, sleep 100 ms, poll readiness until the deadline.
pub fn flr(cfg: &dyn ConfigSpace, clock: &dyn Clock, bdf: Bdf, deadline: Deadline) -> Run {
    let p = match flr_cap(cfg, bdf) {
        Ok(p) => p,
        Err(why) => return Run::NotApplicable(why),
    };
    let idle = || cfg.read16(bdf, p + pcie_reg::DEVSTA) & pcie_reg::DEVSTA_TRPND == 0;
    let initiate = || {
        let devctl = cfg.read16(bdf, p + pcie_reg::DEVCTL);
        cfg.write16(bdf, p + pcie_reg::DEVCTL, devctl | pcie_reg::DEVCTL_BCR_FLR);
    };
    timed_flr(cfg, clock, bdf, deadline, idle, initiate)
}

/// The AF capability offset if it advertises both TP and FLR.
pub fn af_cap(cfg: &dyn ConfigSpace, bdf: Bdf) -> Result<u16, &'static str> {
    let a = caps::find_cap(cfg, bdf, caps::id::AF).ok_or("no AF capability")?;
    let c = cfg.read8(bdf, a + af::CAP);
    if c == u8::MAX || c & (af::CAP_TP | af::CAP_FLR) != af::CAP_TP | af::CAP_FLR {
        return Err("AF without TP+FLR");
    }
    Ok(a)
}

/// Advanced-features FLR (Linux `pci_af_flr`): wait for AF Transactions Pending, write the AF
/// Control FLR bit (8-bit write), sleep 100 ms, poll readiness.
pub fn af_flr(cfg: &dyn ConfigSpace, clock: &dyn Clock, bdf: Bdf, deadline: Deadline) -> Run {
    let a = match af_cap(cfg, bdf) {
        Ok(a) => a,
        Err(why) => return Run::NotApplicable(why),
    };
    let idle = || cfg.read8(bdf, a + af::STATUS) & af::STATUS_TP == 0;
    let initiate = || cfg.write8(bdf, a + af::CTRL, af::CTRL_FLR);
    timed_flr(cfg, clock, bdf, deadline, idle, initiate)
}

/// The part both FLR flavours share: give Transactions Pending up to [`FLR_PENDING_WAIT_MS`] to
/// clear (`idle`), `initiate` the reset whether or not it did (Linux goes ahead too, and says
/// so), then wait out the settle time and poll readiness. Gives up before touching the device
/// when the deadline cannot cover the settle time.
fn timed_flr(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    bdf: Bdf,
    deadline: Deadline,
    idle: impl FnMut() -> bool,
    initiate: impl FnOnce(),
) -> Run {
    let settle = FLR_SETTLE_MS * 1_000;
    let left = deadline.left_us(clock);
    if left <= settle {
        return Run::NoTime;
    }
    let tp_budget = (FLR_PENDING_WAIT_MS * 1_000).min(left - settle - 1);
    let pending = wait_until(clock, tp_budget, 10_000, 100_000, idle).is_err();
    initiate();
    finish(cfg, clock, bdf, deadline, settle, u64::MAX, pending)
}

/// The PM capability offset if a D3hot -> D0 cycle may reset the function: No_Soft_Reset
/// clear and the function in D0 (Linux `pci_pm_reset`'s probe).
pub fn pm_cap(cfg: &dyn ConfigSpace, bdf: Bdf) -> Result<u16, &'static str> {
    let p = caps::find_pm(cfg, bdf).ok_or("no PM capability")?;
    let csr = cfg.read16(bdf, p + pmcsr::OFF);
    if csr == u16::MAX {
        return Err("PMCSR reads ffff");
    }
    if csr & pmcsr::NO_SOFT_RESET != 0 {
        return Err("No_Soft_Reset set");
    }
    if csr & pmcsr::STATE != 0 {
        return Err("not in D0");
    }
    Ok(p)
}

/// D3hot then D0, 10 ms each (16-bit PMCSR writes that never write PME_Status back), then a
/// readiness poll. Whether anything was reset is for the caller's read-back to decide: QEMU
/// and some real devices (Linux `quirk_no_pm_reset`) do nothing here.
pub fn pm(cfg: &dyn ConfigSpace, clock: &dyn Clock, bdf: Bdf, deadline: Deadline) -> Run {
    let p = match pm_cap(cfg, bdf) {
        Ok(p) => p,
        Err(why) => return Run::NotApplicable(why),
    };
    let step = PM_D3HOT_DELAY_MS * 1_000;
    if deadline.left_us(clock) <= 2 * step {
        return Run::NoTime;
    }
    let csr = cfg.read16(bdf, p + pmcsr::OFF) & !(pmcsr::PME_STATUS | pmcsr::STATE);
    cfg.write16(bdf, p + pmcsr::OFF, csr | pmcsr::D3HOT);
    clock.delay_us(step);
    cfg.write16(bdf, p + pmcsr::OFF, csr);
    finish(cfg, clock, bdf, deadline, step, u64::MAX, false)
}

/// Secondary bus reset on `bridge` (Linux `pci_reset_secondary_bus` +
/// `pci_bridge_wait_for_secondary_bus`): Bridge Control bit 6 set for 2 ms, cleared, 100 ms,
/// then `target` polled for up to 1 s. Bridge Control is written 16 bits wide without its
/// write-1-to-clear bit. The caller checks that every function below may be reset.
pub fn sbr(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    bridge: Bdf,
    target: Bdf,
    deadline: Deadline,
) -> Run {
    let assert = SBR_ASSERT_MS * 1_000;
    let settle = SBR_SETTLE_MS * 1_000;
    if deadline.left_us(clock) <= assert + settle {
        return Run::NoTime;
    }
    let bc = cfg.read16(bridge, reg::BRIDGE_CONTROL);
    if bc == u16::MAX {
        return Run::NotApplicable("parent bridge reads ffff");
    }
    let base = BridgeControl::from_bits_retain(bc) - BridgeControl::VOLATILE;
    let reset = base | BridgeControl::SECONDARY_BUS_RESET;
    cfg.write16(bridge, reg::BRIDGE_CONTROL, reset.bits());
    clock.delay_us(assert);
    cfg.write16(bridge, reg::BRIDGE_CONTROL, base.bits());
    finish(
        cfg,
        clock,
        target,
        deadline,
        settle,
        SBR_READY_MS * 1_000,
        false,
    )
}

/// Sleeps `settle_us`, then polls readiness for at most `max_poll_us` and the deadline.
fn finish(
    cfg: &dyn ConfigSpace,
    clock: &dyn Clock,
    bdf: Bdf,
    deadline: Deadline,
    settle_us: u64,
    max_poll_us: u64,
    pending: bool,
) -> Run {
    clock.delay_us(settle_us.min(deadline.left_us(clock)));
    let poll = deadline.left_us(clock).min(max_poll_us);
    match wait_ready(cfg, clock, bdf, poll) {
        Ok(_) => Run::Ready { pending },
        Err(e) => Run::NotReady(e),
    }
}
