//! Time for bounded waits: a monotonic microsecond clock supplied by the kernel (TSC calibrated
//! against the ACPI PM timer) or by tests (a fake that advances on every read).

/// A monotonic clock.
pub trait Clock {
    /// Microseconds since an arbitrary fixed point.
    fn now_us(&self) -> u64;

    /// Busy-waits at least `us` microseconds.
    fn delay_us(&self, us: u64) {
        let start = self.now_us();
        while self.now_us().wrapping_sub(start) < us {
            core::hint::spin_loop();
        }
    }
}

/// Outcome of [`poll_until`] when the condition never held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut {
    /// How long was waited, in microseconds.
    pub waited_us: u64,
}

/// Polls `cond` until it returns true or `timeout_us` elapses; every hardware wait in rkdump goes
/// through here so none can hang.
pub fn poll_until(
    clock: &dyn Clock,
    timeout_us: u64,
    mut cond: impl FnMut() -> bool,
) -> Result<u64, TimedOut> {
    let start = clock.now_us();
    loop {
        if cond() {
            return Ok(clock.now_us().wrapping_sub(start));
        }
        let waited = clock.now_us().wrapping_sub(start);
        if waited >= timeout_us {
            // One last look: the condition may have become true while the clock advanced.
            return if cond() {
                Ok(waited)
            } else {
                Err(TimedOut { waited_us: waited })
            };
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    struct FakeClock(Cell<u64>);
    impl Clock for FakeClock {
        fn now_us(&self) -> u64 {
            let t = self.0.get();
            self.0.set(t + 10);
            t
        }
    }

    #[test]
    fn poll_times_out_and_succeeds() {
        let c = FakeClock(Cell::new(0));
        assert!(poll_until(&c, 1000, || false).is_err());
        let mut n = 0;
        assert!(
            poll_until(&c, 1000, || {
                n += 1;
                n > 3
            })
            .is_ok()
        );
    }
}
