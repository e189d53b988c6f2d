//! rkdump's clock: the TSC, calibrated once against the ACPI PM timer (or the PIT when ACPI has
//! none). Every timeout and every console rate figure goes through it.

use core::sync::atomic::{AtomicU64, Ordering};

use rkdump_devices::time::Clock;

use crate::arch::cpu;
use crate::hw::acpi::PmTimer;
use crate::hw::ports;

static TSC_PER_US: AtomicU64 = AtomicU64::new(0);
static TSC_START: AtomicU64 = AtomicU64::new(0);

const PM_TIMER_HZ: u64 = 3_579_545;
const PIT_HZ: u64 = 1_193_182;

/// Calibrates over ~10 ms. Returns TSC ticks per microsecond.
pub fn calibrate(pm_timer: Option<PmTimer>) -> u64 {
    TSC_START.store(cpu::rdtsc(), Ordering::SeqCst);
    let per_us = match pm_timer {
        Some(timer) => calibrate_pm(timer),
        None => calibrate_pit(),
    }
    .max(1);
    TSC_PER_US.store(per_us, Ordering::SeqCst);
    per_us
}

fn calibrate_pm(timer: PmTimer) -> u64 {
    let mask: u64 = if timer.wide() {
        0xFFFF_FFFF
    } else {
        0x00FF_FFFF
    };
    let want = PM_TIMER_HZ / 100; // 10 ms
    let t0 = u64::from(timer.read());
    let c0 = cpu::rdtsc();
    let mut elapsed = 0;
    // Bounded: a PM timer that does not count ends the loop after ~2^28 reads.
    for _ in 0..(1u64 << 28) {
        let t = u64::from(timer.read());
        elapsed = t.wrapping_sub(t0) & mask;
        if elapsed >= want {
            break;
        }
    }
    let c1 = cpu::rdtsc();
    if elapsed == 0 {
        return calibrate_pit();
    }
    let us = elapsed * 1_000_000 / PM_TIMER_HZ;
    (c1 - c0) / us.max(1)
}

fn calibrate_pit() -> u64 {
    // PIT channel 2, gate via port 0x61, one-shot count of 11932 (~10 ms).
    let count: u16 = (PIT_HZ / 100) as u16;
    ports::pit2_start(count);
    let c0 = cpu::rdtsc();
    for _ in 0..(1u64 << 28) {
        if ports::pit2_expired() {
            break;
        }
    }
    let c1 = cpu::rdtsc();
    ((c1 - c0) / 10_000).max(1)
}

/// Microseconds since calibration.
pub fn now_us() -> u64 {
    let per = TSC_PER_US.load(Ordering::Relaxed).max(1);
    cpu::rdtsc().wrapping_sub(TSC_START.load(Ordering::Relaxed)) / per
}

/// The kernel's [`Clock`] for drivers.
#[derive(Clone, Copy, Debug)]
pub struct TscClock;

impl Clock for TscClock {
    fn now_us(&self) -> u64 {
        now_us()
    }
}
