//! Dump progress lines (docs/interface.md, console lines): decides when a
//! `progress <pct>% <rate> MiB/s eta=<s>s ms=<elapsed>` line is due and computes its figures from a
//! clock the caller reads. Never blocks and never reads a clock itself, so the rule is tested on
//! the host with a fake clock.
//!
//! The rule: a line when [`STEP_PCT`] more percent are done (a fast dump: one line per 5 %, however
//! fast), or when [`INTERVAL_US`] have passed since the last line (a slow dump: a line even while
//! the percentage stands still), and the 100 % line exactly once, when the last byte is out.
//! The contract is "at least every 2 s"; the interval is half of that so the time between two
//! calls (one frame on a serial port, one batch on a disk) and the console write fit in the other
//! half. Callers must therefore call [`Progress::update`] or [`Progress::tick`] at least every
//! second; each call costs one clock read on their side.

use core::fmt;

/// Time after which a line is due even if the percentage has not moved.
pub const INTERVAL_US: u64 = 1_000_000;

/// Percentage step that makes a line due at once.
pub const STEP_PCT: u8 = 5;

/// The longest gap between two lines the console contract allows.
pub const CONTRACT_US: u64 = 2_000_000;

/// Progress of one dump of `total` bytes.
#[derive(Debug, Clone)]
pub struct Progress {
    total: u64,
    done: u64,
    start_us: u64,
    last_us: u64,
    /// `pct / STEP_PCT` of the last line.
    last_step: u8,
    /// The 100 % line is out: nothing more to say.
    finished: bool,
}

/// One progress line's figures; `Display` gives the console text (without the `rkdump: ` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Percent of the dump written, 0-100; 100 only once every byte is out.
    pub pct: u8,
    /// Average rate since the start, in thousandths of MiB/s.
    pub rate_milli: u64,
    /// Seconds left at the average rate, rounded up; 0 while nothing is written (no rate yet).
    pub eta_s: u64,
    /// Milliseconds since the dump started (the guest's clock: lets a test measure the gaps).
    pub elapsed_ms: u64,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, milli) = (self.rate_milli / 1000, self.rate_milli % 1000);
        write!(f, "progress {}% ", self.pct)?;
        // One decimal is plenty for disks; a serial line (0.011 MiB/s at 115200 baud) needs three
        // to show anything but 0.0.
        if whole == 0 {
            write!(f, "0.{milli:03}")?;
        } else {
            write!(f, "{whole}.{}", milli / 100)?;
        }
        write!(f, " MiB/s eta={}s ms={}", self.eta_s, self.elapsed_ms)
    }
}

impl Progress {
    /// A dump of `total` bytes starting at `now_us`.
    pub fn new(total: u64, now_us: u64) -> Progress {
        Progress {
            total,
            done: 0,
            start_us: now_us,
            last_us: now_us,
            last_step: 0,
            finished: false,
        }
    }

    /// Records that `done` bytes are written at `now_us`; returns the line to print if one is due.
    /// `done` beyond the total counts as the total, and never goes back.
    pub fn update(&mut self, now_us: u64, done: u64) -> Option<Line> {
        self.done = self.done.max(done.min(self.total));
        self.due(now_us)
    }

    /// A call with no new bytes (the caller is waiting on its device): returns a line if the
    /// interval has passed, so a stalled or very slow transfer still reports.
    pub fn tick(&mut self, now_us: u64) -> Option<Line> {
        self.due(now_us)
    }

    /// Milliseconds since the start.
    pub fn elapsed_ms(&self, now_us: u64) -> u64 {
        now_us.saturating_sub(self.start_us) / 1000
    }

    /// Bytes written so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    fn due(&mut self, now_us: u64) -> Option<Line> {
        if self.finished {
            return None;
        }
        let pct = self.pct();
        let step = pct / STEP_PCT;
        let complete = self.done == self.total;
        // A clock that went backwards counts as no time passed.
        let waited = now_us.saturating_sub(self.last_us);
        if !complete && step <= self.last_step && waited < INTERVAL_US {
            return None;
        }
        self.finished = complete;
        self.last_step = step;
        self.last_us = now_us;
        Some(self.line(pct, now_us))
    }

    /// 0-100, floored, so 100 means every byte (an empty dump is complete from the start).
    fn pct(&self) -> u8 {
        if self.total == 0 {
            return 100;
        }
        // done <= total, so this is at most 100; u128 because done * 100 can overflow u64.
        (u128::from(self.done) * 100 / u128::from(self.total)) as u8
    }

    fn line(&self, pct: u8, now_us: u64) -> Line {
        let elapsed_us = now_us.saturating_sub(self.start_us).max(1);
        let done = u128::from(self.done);
        let elapsed = u128::from(elapsed_us);
        // bytes/us * 1e6 / 2^20 * 1000, in u128: done may be near 2^64.
        let rate_milli = done * 1_000_000_000 / (elapsed << 20);
        let eta_s = if self.done == 0 {
            0
        } else {
            let left = u128::from(self.total - self.done);
            // left / (done / elapsed) in seconds, rounded up so 0 only when finished.
            (left * elapsed).div_ceil(done * 1_000_000)
        };
        Line {
            pct,
            rate_milli: saturate(rate_milli),
            eta_s: saturate(eta_s),
            elapsed_ms: elapsed_us / 1000,
        }
    }
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}
