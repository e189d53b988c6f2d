//! Device reinitialisation after a crash: quiesce every function the crashed kernel left
//! running, reset the ones rkdump may use by the first method that provably works, and put
//! their configuration back, all before any driver probes. Pure logic over [`ConfigSpace`]
//! and [`Clock`]; the kernel supplies both and prints the [`Report`].
//!
//! Order of work in [`run`] (docs/device-reinit.md#order-of-work):
//! 1. **Quiesce** every function: snapshot its header and PCIe control registers, then
//!    COMMAND = INTx-Disable only (Linux `pci_dev_save_and_disable`) and MSI/MSI-X enable
//!    cleared (Linux `pci_msi_init`), all 16-bit writes. Bridges, host bridges, other class-06
//!    functions (ISA/LPC carries the console, ACPI and timers) and the IOMMU keep COMMAND:
//!    a bridge's Memory/IO/Bus-Master bits gate forwarding for the devices behind it,
//!    including the dump disk, and a bridge's own DMA is only forwarded traffic. Their MSI and
//!    MSI-X are still disabled (rkdump polls).
//! 2. **Reset** each permitted endpoint with the first method that applies, in the order
//!    preinit (the matching driver's soft reset) -> FLR -> AF FLR -> PM D3hot/D0 -> secondary
//!    bus reset, restricted by [`ResetPolicy`]; every wait is bounded by the per-device cap and the
//!    total budget. Bridges are never reset themselves.
//! 3. **Prove** each reset by read-back (BARs, COMMAND, bus numbers read 0; a driver proves
//!    its own). A method that proves nothing is reported ("pm: no effect") and the next one
//!    tried; one that leaves the function silent ends its turn.
//! 4. **Restore** configuration after a hardware reset in Linux's order from the
//!    [`SavedConfig`] source, else the step-1 snapshot. COMMAND stays INTx-Disable only on
//!    endpoints (step 5: only the dump device's driver turns memory and bus mastering back on
//!    when the kernel probes it); bridges below a bus reset get their saved COMMAND back.

#![forbid(unsafe_code)]

mod driver;
pub mod firmware;
mod policy;
mod report;
pub mod reset;
pub mod restore;
pub mod saved;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

pub use driver::{
    BarResetDriver, Driver, DriverCtx, DriverError, DriverId, DriverSet, FnDriver, NoPlatform,
    Platform, PreinitReport,
};
pub use firmware::{AddressChange, AddressOutcome, AddressRestore, restore_addresses};
pub use policy::{DEFAULT_BUDGET_MS, DEFAULT_PER_DEVICE_CAP_MS, Policy};
pub use report::{
    Attempt, AttemptResult, DeviceEntry, Kept, Method, Outcome, QuiesceStats, Report, Restore, Why,
};
pub use reset::{Evidence, NotReady};
pub use restore::{PlanError, ReadBack, RestoreWrite, Stuck, apply_restore, plan_restore};
/// The command line's reset vocabulary, used as is.
pub use rkdump_boot::cmdline::{DeviceMatch, ResetMethods, ResetPolicy};
pub use saved::{NoSavedConfig, SavedConfig, Snapshot, Source};

use crate::pci::{self, Bar, Bdf, Command, ConfigSpace, LiveView, PciDevice, SavedView, Scan, reg};
use crate::time::Clock;
use reset::{Deadline, Probe, Run};

/// What [`run`] does with a function's COMMAND register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Endpoint,
    Kept(Kept),
}

fn role(dev: &PciDevice) -> Role {
    match (dev.class, dev.subclass) {
        (0x06, 0x00) => Role::Kept(Kept::HostBridge),
        _ if dev.is_bridge => Role::Kept(Kept::Bridge),
        (0x06, _) | (0x08, 0x06) => Role::Kept(Kept::System),
        _ => Role::Endpoint,
    }
}

struct Func {
    dev: PciDevice,
    role: Role,
    snap: Snapshot,
    gone: bool,
}

/// A function reset by another function's secondary bus reset.
struct BusReset {
    bridge: Bdf,
    evidence: Option<Evidence>,
    restore: Restore,
}

/// Runs quiesce, reset, proof and restore over every function of `scan`, before any driver
/// probes. `ctx` supplies config access, the clock and the platform (for drivers' preinit);
/// `saved` is consulted for headers before the pre-reset snapshot ([`NoSavedConfig`] for
/// none). Never panics on device data; a misbehaving function gets a report line.
pub fn run(
    ctx: &mut DriverCtx<'_>,
    scan: &Scan,
    policy: &Policy,
    drivers: &mut DriverSet,
    saved: &dyn SavedConfig,
) -> Report {
    let (cfg, clock) = (ctx.cfg, ctx.clock);
    let t0 = clock.now_us();
    let mut e = Engine {
        cfg,
        clock,
        policy,
        saved,
        funcs: Vec::with_capacity(scan.devices.len()),
        entries: Vec::with_capacity(scan.devices.len()),
        bus_reset: BTreeMap::new(),
        needs_bar: Vec::new(),
        budget_end: t0.saturating_add(u64::from(policy.budget_ms) * 1_000),
        budget_skipped: 0,
    };
    let quiesce = e.quiesce(scan);
    for i in 0..e.funcs.len() {
        let entry = e.process(ctx, drivers, i);
        e.entries.push(entry);
    }
    Report {
        mode: policy.mode,
        reset_devices: policy.reset_devices,
        quiesce,
        entries: e.entries,
        elapsed_ms: ms(clock.now_us().saturating_sub(t0)),
        budget_ms: policy.budget_ms,
        cap_ms: policy.per_device_cap_ms,
        budget_skipped: e.budget_skipped,
        needs_bar_assignment: e.needs_bar,
    }
}

/// Microseconds to milliseconds, rounded to nearest.
fn ms(us: u64) -> u32 {
    u32::try_from(us.saturating_add(500) / 1_000).unwrap_or(u32::MAX)
}

struct Engine<'a> {
    cfg: &'a dyn ConfigSpace,
    clock: &'a dyn Clock,
    policy: &'a Policy,
    saved: &'a dyn SavedConfig,
    funcs: Vec<Func>,
    entries: Vec<DeviceEntry>,
    bus_reset: BTreeMap<Bdf, BusReset>,
    needs_bar: Vec<Bdf>,
    budget_end: u64,
    budget_skipped: usize,
}

impl Engine<'_> {
    /// Step 1 for every function: snapshot first, then stop decode/DMA/MSI.
    fn quiesce(&mut self, scan: &Scan) -> QuiesceStats {
        let cfg = self.cfg;
        let mut q = QuiesceStats::default();
        for dev in &scan.devices {
            q.functions += 1;
            let snap = Snapshot::take(cfg, dev.bdf);
            let gone = saved::ids(&snap.header).0 == 0xFFFF;
            let role = role(dev);
            if gone {
                q.gone += 1;
            } else {
                match role {
                    Role::Endpoint => {
                        if cfg.read16(dev.bdf, reg::COMMAND) != Command::INTX_DISABLE.bits() {
                            pci::disable(cfg, dev.bdf);
                        }
                        q.quiesced += 1;
                    }
                    Role::Kept(_) => q.kept += 1,
                }
                let m = pci::disable_msi_msix(cfg, dev.bdf);
                q.msi_disabled += usize::from(m.msi);
                q.msix_disabled += usize::from(m.msix);
            }
            self.funcs.push(Func {
                dev: *dev,
                role,
                snap,
                gone,
            });
        }
        q
    }

    /// Steps 2-4 for function `i`.
    fn process(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        drivers: &mut DriverSet,
        i: usize,
    ) -> DeviceEntry {
        let dev = self.funcs[i].dev;
        if let Some(b) = self.bus_reset.remove(&dev.bdf) {
            return DeviceEntry::new(
                &dev,
                Outcome::ResetBy {
                    bridge: b.bridge,
                    evidence: b.evidence,
                    restore: b.restore,
                },
            );
        }
        if self.funcs[i].gone {
            return DeviceEntry::new(&dev, Outcome::Quiesced(Why::Gone));
        }
        if let Role::Kept(k) = self.funcs[i].role {
            return DeviceEntry::new(&dev, Outcome::Kept(k));
        }
        if self.policy.is_denied(&dev) {
            return DeviceEntry::new(&dev, Outcome::Quiesced(Why::Denied));
        }
        if !self.policy.is_allowed(&dev) {
            return DeviceEntry::new(&dev, Outcome::Quiesced(Why::NotAllowed));
        }
        let start = self.clock.now_us();
        if start >= self.budget_end {
            self.budget_skipped += 1;
            return DeviceEntry::new(&dev, Outcome::Quiesced(Why::Budget));
        }
        let cap_end = start.saturating_add(u64::from(self.policy.per_device_cap_ms) * 1_000);
        let deadline = Deadline {
            at_us: cap_end.min(self.budget_end),
        };
        let mut entry = DeviceEntry::new(&dev, Outcome::Quiesced(Why::NoMethod));
        self.reset(ctx, drivers, i, deadline, &mut entry);
        entry.ms = ms(self.clock.now_us().saturating_sub(start));
        if self.clock.now_us() >= self.budget_end && deadline.at_us == self.budget_end {
            entry
                .notes
                .push("budget ran out during this function".to_string());
        }
        entry
    }

    /// Tries the permitted methods in order until one proves a reset.
    fn reset(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        drivers: &mut DriverSet,
        i: usize,
        deadline: Deadline,
        entry: &mut DeviceEntry,
    ) {
        let (cfg, clock) = (self.cfg, self.clock);
        let dev = self.funcs[i].dev;
        let bdf = dev.bdf;
        let permitted = self.policy.mode.methods();
        let before = Probe::read(cfg, bdf);
        for m in Method::ORDER {
            if !permitted.contains(m.bit()) {
                continue;
            }
            let t = clock.now_us();
            let run = match m {
                Method::Preinit => {
                    let Some(id) = drivers.find(&dev) else {
                        entry.skipped.push((m, "no driver"));
                        continue;
                    };
                    match preinit(ctx, drivers, id, &dev, deadline) {
                        Ok(outcome) => {
                            entry.outcome = outcome;
                            return;
                        }
                        Err(result) => {
                            entry.attempts.push(Attempt {
                                method: m,
                                result,
                                ms: ms(clock.now_us().saturating_sub(t)),
                            });
                            continue;
                        }
                    }
                }
                Method::Flr => reset::flr(cfg, clock, bdf, deadline),
                Method::AfFlr => reset::af_flr(cfg, clock, bdf, deadline),
                Method::Pm => reset::pm(cfg, clock, bdf, deadline),
                Method::Sbr => {
                    if self.bus_reset_for(i, deadline, before, entry) {
                        return;
                    }
                    continue;
                }
            };
            let attempt = |result| Attempt {
                method: m,
                result,
                ms: ms(clock.now_us().saturating_sub(t)),
            };
            match run {
                Run::NotApplicable(why) => entry.skipped.push((m, why)),
                Run::NoTime => entry.attempts.push(attempt(AttemptResult::NoTime)),
                Run::NotReady(how) => {
                    entry.outcome = Outcome::NotReady { method: m, how };
                    return;
                }
                Run::Ready { pending } => {
                    if pending {
                        entry
                            .notes
                            .push(format!("{m}: transactions still pending, reset anyway"));
                    }
                    match Evidence::compare(&before, &Probe::read(cfg, bdf)) {
                        Some(evidence) => {
                            let restore = self.restore(i);
                            entry.outcome = Outcome::Reset {
                                method: m,
                                evidence,
                                restore,
                            };
                            return;
                        }
                        None => entry.attempts.push(attempt(AttemptResult::NoEffect)),
                    }
                }
            }
        }
        if !entry.attempts.is_empty() {
            entry.outcome = Outcome::Quiesced(Why::NoEffect);
        }
    }

    /// The SBR step for function `i`, recording what happened in `entry`. `true` = the
    /// entry's outcome is final (reset proven, or the function stayed silent).
    fn bus_reset_for(
        &mut self,
        i: usize,
        deadline: Deadline,
        before: Probe,
        entry: &mut DeviceEntry,
    ) -> bool {
        let (cfg, clock) = (self.cfg, self.clock);
        let t = clock.now_us();
        let bdf = self.funcs[i].dev.bdf;
        let attempt = |result, clock: &dyn Clock| Attempt {
            method: Method::Sbr,
            result,
            ms: ms(clock.now_us().saturating_sub(t)),
        };
        let Some(p) = self.parent(bdf) else {
            entry.skipped.push((Method::Sbr, "on a root bus"));
            return false;
        };
        let parent = self.funcs[p].dev;
        let below = self.below(&parent);
        if let Some(who) = self.reset_blocker(&parent, &below) {
            let why = format!("{who} under {} may not be reset", parent.bdf);
            entry
                .attempts
                .push(attempt(AttemptResult::Refused(why), clock));
            return false;
        }
        let befores: Vec<Probe> = below
            .iter()
            .map(|&j| {
                if j == i {
                    before
                } else {
                    Probe::read(cfg, self.funcs[j].dev.bdf)
                }
            })
            .collect();
        let target_ready = match reset::sbr(cfg, clock, parent.bdf, bdf, deadline) {
            Run::NotApplicable(why) => {
                entry.skipped.push((Method::Sbr, why));
                return false;
            }
            Run::NoTime => {
                entry.attempts.push(attempt(AttemptResult::NoTime, clock));
                return false;
            }
            Run::Ready { .. } => Ok(0),
            Run::NotReady(how) => Err(how),
        };
        // Top-down (scan order): a bridge below gets its bus numbers back before anything
        // behind it is polled.
        let mut done = false;
        for (k, &j) in below.iter().enumerate() {
            let f_bdf = self.funcs[j].dev.bdf;
            let ready = if j == i {
                target_ready
            } else {
                let limit = deadline.left_us(clock).min(reset::SBR_READY_MS * 1_000);
                reset::wait_ready(cfg, clock, f_bdf, limit)
            };
            let (evidence, restore) = match ready {
                Ok(_) => (
                    Evidence::compare(&befores[k], &Probe::read(cfg, f_bdf)),
                    self.restore(j),
                ),
                Err(how) => (None, Restore::NotReady(how)),
            };
            if j == i {
                match (ready, evidence) {
                    (Err(how), _) => {
                        entry.outcome = Outcome::NotReady {
                            method: Method::Sbr,
                            how,
                        };
                        done = true;
                    }
                    (Ok(_), Some(evidence)) => {
                        entry.outcome = Outcome::Reset {
                            method: Method::Sbr,
                            evidence,
                            restore,
                        };
                        done = true;
                    }
                    (Ok(_), None) => entry.attempts.push(attempt(AttemptResult::NoEffect, clock)),
                }
            } else if let Some(prev) = self.entries.iter_mut().find(|e| e.bdf == f_bdf) {
                prev.notes.push(format!(
                    "then reset by sbr at {} for {bdf} ({restore})",
                    parent.bdf
                ));
            } else {
                self.bus_reset.insert(
                    f_bdf,
                    BusReset {
                        bridge: parent.bdf,
                        evidence,
                        restore,
                    },
                );
            }
        }
        done
    }

    /// The bridge whose secondary bus holds `bdf`.
    fn parent(&self, bdf: Bdf) -> Option<usize> {
        self.funcs.iter().position(|f| {
            f.dev.is_bridge && f.dev.bdf.segment == bdf.segment && f.dev.secondary_bus == bdf.bus
        })
    }

    /// Every present function on the buses behind `bridge`, in scan order (functions that
    /// already read all-ones are not waited for).
    fn below(&self, bridge: &PciDevice) -> Vec<usize> {
        let buses = bridge.secondary_bus..=bridge.subordinate_bus.max(bridge.secondary_bus);
        (0..self.funcs.len())
            .filter(|&j| {
                let f = &self.funcs[j];
                let b = f.dev.bdf;
                !f.gone && b.segment == bridge.bdf.segment && buses.contains(&b.bus)
            })
            .collect()
    }

    /// The first function that forbids a bus reset on `bridge`: the bridge or any function
    /// below it denied, or an endpoint below it outside the allow list (bridges below are
    /// infrastructure: restored, not judged by the allow list).
    fn reset_blocker(&self, bridge: &PciDevice, below: &[usize]) -> Option<Bdf> {
        if self.policy.is_denied(bridge) {
            return Some(bridge.bdf);
        }
        below.iter().map(|&j| &self.funcs[j]).find_map(|f| {
            let blocked = match f.role {
                Role::Endpoint => !self.policy.may_use(&f.dev),
                Role::Kept(_) => self.policy.is_denied(&f.dev),
            };
            blocked.then_some(f.dev.bdf)
        })
    }

    /// Step 4 for function `j` after a hardware reset.
    fn restore(&mut self, j: usize) -> Restore {
        let (cfg, clock) = (self.cfg, self.clock);
        let f = &self.funcs[j];
        let dev = f.dev;
        let class = dev.class_code();
        let snap_kind = saved::kind(&f.snap.header);
        let from_saved = self
            .saved
            .header(dev.bdf, dev.vendor, dev.device, class)
            .filter(|(h, _)| {
                saved::ids(h) == (dev.vendor, dev.device)
                    && saved::kind(h) == snap_kind
                    && saved::usable(h)
            });
        let no_bars = f.role == Role::Endpoint && dev.bars.iter().all(|b| *b == Bar::None);
        let (header, source) = match from_saved {
            Some(s) => s,
            None if saved::usable(&f.snap.header) || no_bars => (f.snap.header, Source::Snapshot),
            None => {
                self.needs_bar.push(dev.bdf);
                return Restore::NoConfig;
            }
        };
        let pcie_writes = f.snap.pcie.as_ref().map_or(0, |p| p.restore(cfg, dev.bdf));
        let command = match f.role {
            Role::Endpoint => Some(Command::INTX_DISABLE.bits()),
            Role::Kept(_) => None,
        };
        let live = LiveView::new(cfg, dev.bdf);
        match restore::plan_restore(&SavedView::new(&header), &live, command) {
            Ok(plan) => Restore::Restored {
                source,
                writes: pcie_writes + plan.len(),
                stuck: restore::apply_restore(cfg, clock, dev.bdf, &plan, ReadBack::Retried),
            },
            Err(e) => Restore::Failed(e),
        }
    }
}

/// Runs driver `id`'s preinit with memory (and I/O) decode on and bus mastering off, then
/// quiesces the function again. `Ok` = proven reset.
fn preinit(
    ctx: &mut DriverCtx<'_>,
    drivers: &mut DriverSet,
    id: DriverId,
    dev: &PciDevice,
    deadline: Deadline,
) -> Result<Outcome, AttemptResult> {
    let name = drivers.name(id).unwrap_or("?");
    if deadline.left_us(ctx.clock) == 0 {
        return Err(AttemptResult::NoTime);
    }
    let io = dev.bars.iter().any(|b| matches!(b, Bar::Io { .. }));
    let mut decode = Command::INTX_DISABLE | Command::MEMORY_SPACE;
    if io {
        decode |= Command::IO_SPACE;
    }
    ctx.cfg.write16(dev.bdf, reg::COMMAND, decode.bits());
    ctx.deadline_us = Some(deadline.at_us);
    let r = match drivers.get_mut(id) {
        Some(d) => d.preinit(ctx, dev),
        None => Err(DriverError::Failed("driver vanished".to_string())),
    };
    ctx.deadline_us = None;
    pci::disable(ctx.cfg, dev.bdf);
    match r {
        Ok(rep) if rep.proven => Ok(Outcome::Preinit {
            driver: name,
            detail: rep.detail,
        }),
        Ok(rep) => Err(AttemptResult::Unproven(rep.detail)),
        Err(e) => Err(AttemptResult::Failed(e.to_string())),
    }
}
