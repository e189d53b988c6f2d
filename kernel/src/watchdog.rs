//! Hardware watchdogs the crashed kernel armed: found after the reinit pass, then handled as
//! `rkdump.watchdog=` says (`rkdump_devices::watchdog`: pet by default, keep, off). Petting
//! happens only from the dump's progress reporting ([`pet`]), so a rkdump that stops making
//! progress still gets reset. Console lines: `rkdump: watchdog ...`.

use rkdump_devices::hw::Mmio;
use rkdump_devices::pci::Scan;
use rkdump_devices::watchdog::{WatchdogMode, i6300esb};
use spin::Mutex;

use crate::pci::{Pci, map_mmio};
use crate::{clock, rkerror, rkline};

/// Reloads closer together than this are skipped (the shortest timeout Linux's driver sets is
/// one second; the progress reporter may call many times a millisecond).
const PET_INTERVAL_US: u64 = 200_000;

struct Petted {
    regs: Mmio,
    last_us: u64,
    count: u64,
}

static PETTED: Mutex<Option<Petted>> = Mutex::new(None);

/// Finds the watchdogs among `scan` and applies `mode` to each.
pub fn take_over(pci: &Pci, scan: &Scan, mode: WatchdogMode) {
    let cfg = &*pci.cfg;
    for dev in scan.devices.iter().filter(|d| i6300esb::matches(d)) {
        let bdf = dev.bdf;
        let state = i6300esb::state(cfg, bdf);
        if !state.enabled() {
            rkline!("watchdog i6300esb {bdf} {state}: not armed, nothing to do");
            continue;
        }
        if mode == WatchdogMode::Keep {
            rkline!("watchdog i6300esb {bdf} {state} action=keep: left running");
            continue;
        }
        let regs = dev.bars[0]
            .mem()
            .filter(|&(_, size)| size >= 16)
            .and_then(|(addr, _)| map_mmio(addr, 16));
        let Some(regs) = regs else {
            rkerror!("watchdog i6300esb {bdf} {state}: BAR0 unusable; it may reset the machine");
            continue;
        };
        i6300esb::enable_registers(cfg, bdf);
        match mode {
            WatchdogMode::Off => match i6300esb::stop(cfg, bdf, &regs) {
                Ok(after) => {
                    rkline!("watchdog i6300esb {bdf} {state} action=off: stopped ({after})")
                }
                Err(e) => {
                    rkerror!("watchdog i6300esb {bdf}: cannot stop it: {e}; petting instead");
                    arm_petting(regs, bdf);
                }
            },
            _ => {
                rkline!("watchdog i6300esb {bdf} {state} action=pet");
                arm_petting(regs, bdf);
            }
        }
    }
}

fn arm_petting(regs: Mmio, bdf: rkdump_devices::pci::Bdf) {
    i6300esb::reload(&regs);
    rkline!("watchdog i6300esb {bdf} reloaded; petting from the progress loop");
    *PETTED.lock() = Some(Petted {
        regs,
        last_us: clock::now_us(),
        count: 1,
    });
}

/// Reloads the watchdog being petted, at most every [`PET_INTERVAL_US`]; called from the
/// dump's progress reporting. Never blocks.
pub fn pet() {
    let Some(mut guard) = PETTED.try_lock() else {
        return;
    };
    let Some(p) = guard.as_mut() else {
        return;
    };
    let now = clock::now_us();
    if now.wrapping_sub(p.last_us) >= PET_INTERVAL_US {
        i6300esb::reload(&p.regs);
        p.last_us = now;
        p.count += 1;
    }
}

/// How many reloads were done (the end-of-run line), if a watchdog is being petted.
pub fn pets() -> Option<u64> {
    PETTED.lock().as_ref().map(|p| p.count)
}
