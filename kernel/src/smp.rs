//! The other CPUs, as the rest of the kernel sees them: waking the ones the wake plan allows
//! (`rkdump_boot::cpus`: MADT, `rkdump.cpus=`, `disable_cpu_apicid=`), the console line that
//! says how many came up, and [`for_each_cpu`], which runs one job on all of them at once.
//!
//! Wake-up sequence per AP (Intel SDM Vol. 3A §9.4.4.1): INIT, 10 ms, STARTUP, 200 µs, a second
//! STARTUP if the AP has not checked in yet, then at most [`CHECK_IN_US`] for it to check in. An
//! AP that misses it is marked rejected (it halts should it arrive later), sent INIT again to park
//! it in wait-for-SIPI, and left out; the dump never waits on it beyond that. APs are started one
//! at a time because they share the trampoline page.
//!
//! Memory ordering of [`for_each_cpu`]: everything the caller wrote before the call is visible to
//! the job on every CPU, and everything any CPU's job wrote is visible to the caller after it
//! returns (release/acquire through the posting lock and the completion counter,
//! `arch::smp::run`); within the job, CPUs share data only through `Sync` types.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use alloc::vec::Vec;
use rkdump_boot::cmdline::Options;
use rkdump_boot::cpus::{self, SkipReason};

use crate::arch::smp::{self as arch_smp, Lapic, Trampoline};
use crate::power::{self, Outcome};
use crate::{acpi, clock, hw, rkerror, rkline};

/// How long an AP has to check in after its first STARTUP IPI.
pub const CHECK_IN_US: u64 = 100_000;
/// The longest one [`for_each_cpu`] job may take before the run is ended as stalled. Jobs run
/// rkdump's own code on memory (no hardware waits), so only a bug or a wedged CPU reaches it.
pub const JOB_WATCHDOG_US: u64 = 60_000_000;

/// CPUs taking part in [`for_each_cpu`], this one included.
static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// One CPU's part in a [`for_each_cpu`] job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// `0` for the CPU running rkdump, `1..count` for the APs.
    pub index: usize,
    /// CPUs running the job.
    pub count: usize,
}

impl Cpu {
    /// This CPU's share of `items` work items: `index, index + count, ...` (every item goes to
    /// exactly one CPU).
    pub fn share(self, items: usize) -> core::iter::StepBy<core::ops::Range<usize>> {
        (self.index.min(items)..items).step_by(self.count.max(1))
    }
}

/// CPUs [`for_each_cpu`] runs on, this one included.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Runs `job` on every online CPU at once (this one does index 0) and returns when all have
/// finished. The job must not wait on hardware, make page mappings or print (the console is this
/// CPU's); a job still running after [`JOB_WATCHDOG_US`] ends the run with an error.
pub fn for_each_cpu<F: Fn(Cpu) + Sync>(job: F) {
    run(arch_smp::Join::All, job);
}

/// Runs `job` on this CPU (index 0) and on every other online CPU that takes it up before this
/// CPU's own call returns; the others skip it, and the call returns when the ones that took
/// part have finished. For jobs that take their work from a shared counter (the kdump
/// compression): a CPU the hypervisor has not scheduled, or one still waking from its idle
/// halt, then costs the round nothing instead of holding it up. Same rules as [`for_each_cpu`].
pub fn for_each_ready_cpu<F: Fn(Cpu) + Sync>(job: F) {
    run(arch_smp::Join::Late, job);
}

fn run<F: Fn(Cpu) + Sync>(joins: arch_smp::Join, job: F) {
    let count = online();
    let start = clock::now_us();
    let expired = move || clock::now_us().saturating_sub(start) > JOB_WATCHDOG_US;
    arch_smp::run(
        count,
        joins,
        &|index| job(Cpu { index, count }),
        &expired,
        stalled,
    );
}

fn stalled(done: usize, expected: usize) -> ! {
    rkerror!("smp: job stalled: {done} of {expected} other CPUs finished");
    power::finish(Outcome::Failed)
}

fn delay_us(us: u64) {
    let start = clock::now_us();
    // Bounded by the clock; the iteration cap guards against a clock that does not advance.
    for _ in 0..(us.saturating_mul(1000)).max(1_000_000) {
        if clock::now_us().saturating_sub(start) >= us {
            return;
        }
        core::hint::spin_loop();
    }
}

/// `all` or the count, for the console.
struct Asked(u32);

impl core::fmt::Display for Asked {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == u32::MAX {
            f.write_str("all")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Skipped APIC IDs as `id:why,...` (`none` when empty).
struct Skipped<'a>(&'a [(u32, SkipReason)]);

impl core::fmt::Display for Skipped<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (id, why)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}:{}", why.as_str())?;
        }
        Ok(())
    }
}

/// Wakes the CPUs `rkdump.cpus=` asks for and prints
/// `cpus online=N asked=M skipped=<id:why,...>`. With `rkdump.cpus=1` no APIC is touched.
/// Needs the heap and the calibrated clock.
pub fn init(opts: &Options, rsdp: Option<u64>) {
    let asked = opts.cpus_or_default();
    let madt = match rsdp.map(acpi::madt_cpus) {
        Some(Some(Ok(m))) => Some(m),
        Some(Some(Err(e))) => {
            rkerror!("smp: {e}");
            None
        }
        _ => None,
    };
    let Some(madt) = madt else {
        rkline!(
            "cpus online=1 asked={} skipped=none (no MADT)",
            Asked(asked)
        );
        return;
    };
    if asked <= 1 {
        let plan = cpus::plan(
            &madt,
            arch_smp::initial_apic_id(),
            arch_smp::is_bsp(),
            opts.disable_cpu_apicid,
            Some(1),
        );
        rkline!("cpus online=1 asked=1 skipped={}", Skipped(plan.skipped()));
        return;
    }
    let lapic = match Lapic::current() {
        Ok(Some(l)) => l,
        Ok(None) => {
            rkline!("note: smp: local APIC globally disabled; running on one CPU");
            rkline!("cpus online=1 asked={} skipped=none", Asked(asked));
            return;
        }
        Err(e) => {
            rkerror!("smp: local APIC registers: {e}");
            rkline!("cpus online=1 asked={} skipped=none", Asked(asked));
            return;
        }
    };
    let plan = cpus::plan(
        &madt,
        lapic.id(),
        arch_smp::is_bsp(),
        opts.disable_cpu_apicid,
        Some(asked),
    );
    let mut skipped: Vec<(u32, SkipReason)> = plan.skipped().to_vec();
    if !plan.wake().is_empty() {
        match hw::cpus::install_trampoline() {
            Some(tramp) => {
                lapic.enable();
                wake(lapic, &tramp, plan.wake(), opts.fault_nosipi, &mut skipped);
            }
            None => {
                rkline!("note: smp: no RAM below 640 KiB for the AP trampoline; one CPU");
                skipped.extend(plan.wake().iter().map(|&id| (id, SkipReason::NoLowMemory)));
            }
        }
    }
    rkline!(
        "cpus online={} asked={} skipped={}",
        online(),
        Asked(asked),
        Skipped(&skipped)
    );
}

/// Starts the APs `ids` one at a time; `no_sipi` (test-only `rkdump.fault=nosipi:`) gets INIT
/// but no STARTUP.
fn wake(
    lapic: Lapic,
    tramp: &Trampoline,
    ids: &[u32],
    no_sipi: Option<u32>,
    skipped: &mut Vec<(u32, SkipReason)>,
) {
    for (slot, &id) in ids.iter().enumerate() {
        let index = online();
        let Some(block) = hw::cpus::ap_block(slot, index) else {
            skipped.push((id, SkipReason::NoMemory));
            continue;
        };
        tramp.arm(block);
        let start = clock::now_us();
        let sent = lapic.send_init(id).and_then(|()| {
            delay_us(10_000);
            if no_sipi == Some(id) {
                rkline!("note: smp: test fault: no STARTUP IPI to APIC ID {id}");
                return Ok(());
            }
            lapic.send_startup(id, tramp.vector())?;
            delay_us(200);
            if !arch_smp::checked_in(slot, false) {
                lapic.send_startup(id, tramp.vector())?;
            }
            Ok(())
        });
        if let Err(e) = sent {
            rkerror!("smp: APIC ID {id}: {e}");
        }
        let mut up = false;
        while sent.is_ok() && clock::now_us().saturating_sub(start) < 10_000 + CHECK_IN_US {
            if arch_smp::checked_in(slot, false) {
                up = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !up && arch_smp::checked_in(slot, true) {
            up = true;
        }
        if up {
            arch_smp::register_ap(lapic, index, id);
            ONLINE.store(index + 1, Ordering::Release);
        } else {
            tramp.disarm();
            // Park it in wait-for-SIPI so it cannot run into a later AP's arming.
            let _ = lapic.send_init(id);
            skipped.push((
                id,
                if sent.is_ok() {
                    SkipReason::Timeout
                } else {
                    SkipReason::Ipi
                },
            ));
        }
    }
}

/// `rkdump.selftest=smp`: every online CPU hashes its share of a buffer (XXH64 per chunk, chunk
/// `c` on CPU `c % count`) and records which CPU did it; this CPU hashes every chunk again and
/// compares. Two rounds, 50 ms apart: by the second the APs have halted (their idle polls run
/// out in well under that), so it runs only if the wake-up NMIs reach them. Prints
/// `smp selftest cpus=N chunks=C ran-on=R mismatches=M woken=yes|no|n/a` and ends the run
/// (success only with no mismatch, every online CPU having run its share in both rounds, and,
/// with APs, at least one of them woken from its halt).
pub fn selftest() -> ! {
    const CHUNKS: usize = 64;
    const CHUNK: usize = 8 << 10;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let buf: Vec<u8> = (0..CHUNKS * CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let count = online();
    let mut mismatches = 0;
    let mut ran_on = usize::MAX;
    let (sent_before, _) = arch_smp::wake_counts();
    for round in 0..2 {
        if round == 1 {
            delay_us(50_000);
        }
        let sums: [AtomicU64; CHUNKS] = [const { AtomicU64::new(0) }; CHUNKS];
        let ran_by: [AtomicUsize; CHUNKS] = [const { AtomicUsize::new(usize::MAX) }; CHUNKS];
        for_each_cpu(|cpu| {
            for c in cpu.share(CHUNKS) {
                let sum = xxhash_rust::xxh64::xxh64(&buf[c * CHUNK..(c + 1) * CHUNK], 0);
                sums[c].store(sum, Ordering::Relaxed);
                ran_by[c].store(cpu.index, Ordering::Relaxed);
            }
        });
        let mut seen = [false; cpus::MAX_CPUS];
        for c in 0..CHUNKS {
            let own = xxhash_rust::xxh64::xxh64(&buf[c * CHUNK..(c + 1) * CHUNK], 0);
            if sums[c].load(Ordering::Relaxed) != own {
                mismatches += 1;
            }
            if let Some(s) = seen.get_mut(ran_by[c].load(Ordering::Relaxed)) {
                *s = true;
            }
        }
        ran_on = ran_on.min(seen.iter().filter(|&&s| s).count());
    }
    let woken = arch_smp::wake_counts().0 > sent_before;
    let woken_text = match (count > 1, woken) {
        (false, _) => "n/a",
        (true, true) => "yes",
        (true, false) => "no",
    };
    rkline!(
        "smp selftest cpus={count} chunks={CHUNKS} ran-on={ran_on} mismatches={mismatches} woken={woken_text}"
    );
    let ok = mismatches == 0 && ran_on == count && (count == 1 || woken);
    if !ok {
        rkerror!("smp selftest failed");
    }
    stop();
    power::finish(if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

static STOPPED: AtomicBool = AtomicBool::new(false);

/// Halts the APs (they leave their work loop); later [`for_each_cpu`] calls run on this CPU only.
pub fn stop() {
    if !STOPPED.swap(true, Ordering::AcqRel) {
        if online() > 1 {
            let (sent, taken) = arch_smp::wake_counts();
            rkline!("cpus idle halts: wake nmis sent={sent} taken={taken}");
        }
        arch_smp::stop_all();
        ONLINE.store(1, Ordering::Release);
    }
}
