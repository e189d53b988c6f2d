//! /proc probing: CPU time of the other processes on the host (a timed run next to a compile
//! measures the compile) and the host's available memory.

use std::time::Duration;

/// USER_HZ: the unit of /proc/stat and /proc/<pid>/stat times on Linux/x86.
pub(super) const USER_HZ: f64 = 100.0;

/// Busy time of all CPUs (jiffies) from /proc/stat's first line.
pub(super) fn total_busy(stat: &str) -> Option<u64> {
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// This process's CPU time plus that of its reaped children (utime stime cutime cstime, jiffies)
/// from /proc/self/stat.
pub(super) fn own_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(3) ppid ... utime is field 14, i.e. index 11 here.
    (11..15).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

/// (all CPUs' busy jiffies, our own + children's jiffies) now.
pub(super) fn cpu_snapshot() -> Option<(u64, u64)> {
    let all = total_busy(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let own = own_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    Some((all, own))
}

/// Average number of CPUs that processes other than us (and our children) used between two
/// snapshots taken `wall` apart.
pub(super) fn others_busy(before: (u64, u64), after: (u64, u64), wall: Duration) -> Option<f64> {
    let all = after.0.checked_sub(before.0)?;
    let own = after.1.checked_sub(before.1)?;
    let secs = wall.as_secs_f64();
    (secs > 0.0).then(|| all.saturating_sub(own) as f64 / USER_HZ / secs)
}

/// A timed run is repeated when other processes kept more than this many CPUs busy during it.
pub(super) const BUSY_LIMIT: f64 = 0.25;

/// Waits (at most `max`) until other processes leave the CPUs to us: QEMU's TCG threads
/// want both host CPUs, so a timed run next to a compile measures the compile.
pub(super) fn wait_until_quiet(max: Duration) {
    let start = std::time::Instant::now();
    let mut said = false;
    while start.elapsed() < max {
        let Some(before) = cpu_snapshot() else { return };
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let Some(busy) = cpu_snapshot().and_then(|after| others_busy(before, after, t0.elapsed()))
        else {
            return;
        };
        if busy <= BUSY_LIMIT {
            if said {
                eprintln!(
                    "bench: quiet again after {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
            return;
        }
        if !said {
            eprintln!("bench: other processes keep {busy:.2} CPUs busy; waiting for quiet");
            said = true;
        }
    }
    eprintln!(
        "bench: still busy after {} s; running anyway",
        max.as_secs()
    );
}

/// `MemAvailable` of the host, in bytes.
pub(super) fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cpu_accounting() {
        let stat = "cpu  100 5 50 1000 7 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(total_busy(stat), Some(100 + 5 + 50 + 1 + 2 + 3));
        assert_eq!(total_busy("intr 1\n"), None);
        // comm with spaces and parentheses; utime stime cutime cstime = 10 20 30 40
        let me = "123 (x (a) b) S 1 2 3 4 5 6 7 8 9 10 10 20 30 40 20 0 1 0 99";
        assert_eq!(own_cpu(me), Some(100));
        assert_eq!(own_cpu("123 (x) S 1"), None);
        let busy = others_busy((1000, 100), (1300, 200), Duration::from_secs(2)).unwrap();
        assert!((busy - 1.0).abs() < 1e-9);
        assert_eq!(others_busy((5, 5), (4, 5), Duration::from_secs(1)), None);
    }
}
