//! The progress rule against a fake clock: slow dumps report by time, fast ones by 5 % steps,
//! 100 % once, and the figures never overflow or divide by zero.

use alloc::format;
use alloc::vec::Vec;

use crate::progress::{CONTRACT_US, INTERVAL_US, Line, Progress};

/// One simulated dump: a fake clock in microseconds and the lines with their times.
struct Sim {
    now_us: u64,
    progress: Progress,
    lines: Vec<(u64, Line)>,
}

impl Sim {
    fn new(total: u64) -> Sim {
        // Not zero: the kernel's clock has been running since calibration.
        let now_us = 1_234_567;
        Sim {
            now_us,
            progress: Progress::new(total, now_us),
            lines: Vec::new(),
        }
    }

    fn update(&mut self, done: u64) {
        if let Some(l) = self.progress.update(self.now_us, done) {
            self.lines.push((self.now_us, l));
        }
    }

    fn tick(&mut self) {
        if let Some(l) = self.progress.tick(self.now_us) {
            self.lines.push((self.now_us, l));
        }
    }

    /// The serial path: `total` bytes handed over in `chunk`-byte writes (the writer's callback
    /// after each), each drained through a 16-byte UART FIFO at `bytes_per_s`, the sink ticking
    /// every time it waits for the FIFO.
    fn serial(total: u64, chunk: u64, bytes_per_s: u64) -> Sim {
        const FIFO: u64 = 16;
        let mut s = Sim::new(total);
        let mut done = 0;
        s.update(0);
        while done < total {
            let n = chunk.min(total - done);
            let mut sent = 0;
            while sent < n {
                let k = FIFO.min(n - sent);
                s.now_us += k * 1_000_000 / bytes_per_s;
                sent += k;
                s.tick();
            }
            done += n;
            s.update(done);
        }
        s
    }

    /// The disk path: the callback once per batch of `batch` bytes at `bytes_per_s`.
    fn batches(total: u64, batch: u64, bytes_per_s: u64) -> Sim {
        let mut s = Sim::new(total);
        let mut done = 0;
        s.update(0);
        while done < total {
            let n = batch.min(total - done);
            s.now_us += u64::try_from(u128::from(n) * 1_000_000 / u128::from(bytes_per_s)).unwrap();
            done += n;
            s.update(done);
        }
        s
    }

    /// Longest time without a line, counting from the start to the first line.
    fn max_gap_us(&self) -> u64 {
        let mut prev = 1_234_567;
        let mut max = 0;
        for &(t, _) in &self.lines {
            max = max.max(t - prev);
            prev = t;
        }
        max
    }

    fn pcts(&self) -> Vec<u8> {
        self.lines.iter().map(|(_, l)| l.pct).collect()
    }

    fn assert_ends_with_one_100(&self) {
        let hundreds = self.lines.iter().filter(|(_, l)| l.pct == 100).count();
        assert_eq!(hundreds, 1, "{:?}", self.pcts());
        assert_eq!(self.lines.last().unwrap().1.pct, 100);
        assert_eq!(self.lines.last().unwrap().1.eta_s, 0);
    }
}

#[test]
fn slow_serial_dump_reports_at_least_every_2s_whatever_the_chunk_size() {
    // 300 baud up to 115200 baud (10 bits a byte), and a fast port; chunks from one byte to the
    // writer's old 64 KiB bounce buffer (5.7 s at 115200 baud: the bug this rule fixes).
    for bytes_per_s in [30, 960, 11_520, 1 << 20] {
        for chunk in [1, 4096, 4096 + 24, 64 << 10] {
            let total = (bytes_per_s * 40).min(8 << 20);
            let s = Sim::serial(total, chunk, bytes_per_s);
            let gap = s.max_gap_us();
            assert!(
                gap <= CONTRACT_US,
                "{bytes_per_s} B/s, {chunk} B chunks: {gap} us without a line"
            );
            s.assert_ends_with_one_100();
        }
    }
}

#[test]
fn disk_batches_within_the_interval_report_at_least_every_2s() {
    // Batches taking up to the interval: the caller's side of the contract.
    for (batch, bytes_per_s) in [
        (64 << 10, 64 << 10),
        (1 << 20, 1 << 20),
        (4 << 20, 100 << 20),
    ] {
        let s = Sim::batches(batch * 50, batch, bytes_per_s);
        assert!(s.max_gap_us() <= CONTRACT_US, "{batch} at {bytes_per_s}");
        s.assert_ends_with_one_100();
    }
}

#[test]
fn slow_dump_lines_come_by_time_not_only_by_percent() {
    // 40 s at 115200 baud: 5 % takes 2 s, so a step-only rule would just make it; time lines
    // come every second in between.
    let s = Sim::serial(11_520 * 40, 4096, 11_520);
    assert!(s.lines.len() >= 40, "{}", s.lines.len());
    for w in s.lines.windows(2) {
        assert!(w[1].0 - w[0].0 <= INTERVAL_US + 100_000);
        assert!(w[1].1.pct >= w[0].1.pct);
    }
}

#[test]
fn fast_dump_reports_every_5_percent_without_flooding() {
    // 1 GiB at 2 GiB/s in 64 KiB writes: half a second, 16384 callbacks, 20 lines.
    let s = Sim::batches(1 << 30, 64 << 10, 2 << 30);
    assert_eq!(
        s.pcts(),
        (1..=20).map(|i| i * 5).collect::<Vec<u8>>(),
        "one line per 5 % step"
    );
    s.assert_ends_with_one_100();
    // Odd sizes: a step is never skipped silently and never repeated.
    let s = Sim::batches(1_000_003, 4096, 1 << 30);
    let steps: Vec<u8> = s.pcts().iter().map(|p| p / 5).collect();
    assert_eq!(steps, (1..=20).collect::<Vec<u8>>());
}

#[test]
fn medium_dump_lines_are_bounded_by_steps_plus_seconds() {
    // 100 MiB at 10 MiB/s: 10 s.
    let s = Sim::batches(100 << 20, 256 << 10, 10 << 20);
    assert!(s.lines.len() <= 20 + 10 + 1, "{}", s.lines.len());
    assert!(s.max_gap_us() <= INTERVAL_US);
    s.assert_ends_with_one_100();
}

#[test]
fn hundred_percent_exactly_once() {
    let mut p = Progress::new(1000, 0);
    assert_eq!(p.update(10, 0), None, "nothing due at the start");
    // The whole dump in one call, within the first step's time: still reported.
    let l = p.update(20, 1000).expect("100 % line");
    assert_eq!(l.pct, 100);
    assert_eq!(p.update(30, 1000), None);
    assert_eq!(p.update(10_000_000, 1000), None);
    assert_eq!(p.tick(20_000_000), None);
    // Not complete: never 100.
    let mut p = Progress::new(1000, 0);
    let l = p.update(5_000_000, 999).unwrap();
    assert_eq!(l.pct, 99);
    assert_eq!(l.eta_s, 1, "rounded up: not done is not eta=0");
    assert_eq!(p.update(5_000_001, 1000).unwrap().pct, 100);
}

#[test]
fn stalled_transfer_keeps_reporting_by_time() {
    let mut p = Progress::new(1 << 20, 0);
    p.update(100, 4096);
    let mut lines = Vec::new();
    for t in (0..10_000_000).step_by(10_000) {
        if let Some(l) = p.tick(t) {
            lines.push(l);
        }
    }
    assert_eq!(lines.len(), 9, "one a second after the first: {lines:?}");
    assert!(lines.iter().all(|l| l.pct == 0));
}

#[test]
fn figures_never_overflow_or_divide_by_zero() {
    // Empty dump: complete at once.
    let mut p = Progress::new(0, 5);
    let l = p.update(5, 0).unwrap();
    assert_eq!((l.pct, l.rate_milli, l.eta_s), (100, 0, 0));
    // Huge sizes, zero elapsed time.
    let mut p = Progress::new(u64::MAX, 0);
    let l = p.update(0, u64::MAX / 2).unwrap();
    assert_eq!(l.pct, 49);
    assert_eq!(l.elapsed_ms, 0);
    assert_eq!(l.rate_milli, u64::MAX, "saturates");
    let l = p.update(u64::MAX, u64::MAX).unwrap();
    assert_eq!((l.pct, l.eta_s), (100, 0));
    // Nothing written after a while: no rate, no eta, no division by zero.
    let mut p = Progress::new(1 << 20, 0);
    let l = p.tick(3_000_000).unwrap();
    assert_eq!(
        (l.pct, l.rate_milli, l.eta_s, l.elapsed_ms),
        (0, 0, 0, 3000)
    );
    // A clock that goes backwards and `done` beyond the total or going back.
    let mut p = Progress::new(1000, 10_000_000);
    assert_eq!(p.update(0, 10), None);
    assert_eq!(p.update(1, 5), None);
    assert_eq!(p.done(), 10);
    let l = p.update(2, 5000).unwrap();
    assert_eq!((l.pct, l.elapsed_ms), (100, 0));
    assert_eq!(p.done(), 1000);
    // Slow and near-full eta: 1 byte in 1000 s, 2^40 left: no overflow in u128.
    let mut p = Progress::new(1 << 40, 0);
    let l = p.update(1_000_000_000, 1).unwrap();
    assert_eq!(l.eta_s, ((1u64 << 40) - 1) * 1000);
}

#[test]
fn line_format_is_the_console_contract() {
    let mut p = Progress::new(100 << 20, 0);
    // 10 MiB in 4 s: 2.5 MiB/s, 36 s left.
    let l = p.update(4_000_000, 10 << 20).unwrap();
    assert_eq!(format!("{l}"), "progress 10% 2.5 MiB/s eta=36s ms=4000");
    assert_eq!(p.elapsed_ms(4_500_000), 4500);
    // A 115200-baud line: 11520 bytes/s for 10 s.
    let mut p = Progress::new(1 << 20, 0);
    let l = p.update(10_000_000, 115_200).unwrap();
    assert_eq!(format!("{l}"), "progress 10% 0.010 MiB/s eta=82s ms=10000");
    // Fast: one decimal, truncated.
    let mut p = Progress::new(100 << 30, 0);
    let l = p.update(1_000_000, 2047 << 20).unwrap();
    assert_eq!(format!("{l}"), "progress 1% 2047.0 MiB/s eta=50s ms=1000");
}
