//! rkdump's clock: the TSC, calibrated once against the ACPI PM timer (or the PIT when ACPI has
//! none). Every timeout and every console rate figure goes through it.

use core::sync::atomic::{AtomicU64, Ordering};

use rkdump_devices::time::Clock;
use x86_64::instructions::port::Port;

use crate::arch::cpu;

static TSC_PER_US: AtomicU64 = AtomicU64::new(0);
static TSC_START: AtomicU64 = AtomicU64::new(0);

const PM_TIMER_HZ: u64 = 3_579_545;
const PIT_HZ: u64 = 1_193_182;

/// Calibrates over ~10 ms. Returns TSC ticks per microsecond.
pub fn calibrate(pm_timer: Option<(u16, bool)>) -> u64 {
    TSC_START.store(cpu::rdtsc(), Ordering::SeqCst);
    let per_us = match pm_timer {
        Some((port, wide)) => calibrate_pm(port, wide),
        None => calibrate_pit(),
    }
    .max(1);
    TSC_PER_US.store(per_us, Ordering::SeqCst);
    per_us
}

fn calibrate_pm(port: u16, wide: bool) -> u64 {
    let mask: u64 = if wide { 0xFFFF_FFFF } else { 0x00FF_FFFF };
    let want = PM_TIMER_HZ / 100; // 10 ms
    let t0 = u64::from(crate::acpi::read_pm_timer(port, wide));
    let c0 = cpu::rdtsc();
    let mut elapsed = 0;
    // Bounded: a PM timer that does not count ends the loop after ~2^28 reads.
    for _ in 0..(1u64 << 28) {
        let t = u64::from(crate::acpi::read_pm_timer(port, wide));
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
    // SAFETY: ports 0x61 and 0x42/0x43 are the legacy PIT/speaker control every PC has; channel
    // 2 is not used by anything else in rkdump.
    unsafe {
        let mut p61 = Port::<u8>::new(0x61);
        let v = p61.read();
        p61.write((v & !0x02) | 0x01);
        Port::<u8>::new(0x43).write(0b1011_0000);
        Port::<u8>::new(0x42).write(count as u8);
        Port::<u8>::new(0x42).write((count >> 8) as u8);
    }
    let c0 = cpu::rdtsc();
    for _ in 0..(1u64 << 28) {
        // SAFETY: as above; bit 5 of 0x61 is the channel 2 output.
        if unsafe { Port::<u8>::new(0x61).read() } & 0x20 != 0 {
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
