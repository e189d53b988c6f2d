//! `rkdump.format=kdump`: makedumpfile's kdump-compressed file, produced by
//! `rkdump_vmcore::kdump` (page selection, compression) into a disk record whose size the
//! compression decides (`rkdump_devices::record::produced`). The console lines are those of the
//! ELF path (`dump start`, `progress`, `dump complete`), plus one `kdump` summary line and one
//! `kdump phases` line (walk 3's read / compress / write times and the CPUs that compressed).
//! Compression runs on every CPU `smp` brought up ([`AllCpus`]); old memory is read and the
//! disk written on this CPU only.

use alloc::format;
use alloc::string::String;

use rkdump_boot::cmdline::{Compress, Options};
use rkdump_devices::record::produced::ProducedRecord;
use rkdump_devices::record::{Checkpoints, Pacing};
use rkdump_vmcore::DumpPlan;
use rkdump_vmcore::filter::{Level, PageFilter};
use rkdump_vmcore::kdump::{self, Codec, Event, Parallel};
use rkdump_vmcore::kernel::KernelInfo;
use rkdump_vmcore::pages::{KeepAll, PageSelector};

use crate::clock::TscClock;
use crate::disk::{DumpDisk, WriteOptions};
use crate::dump::Reporter;
use crate::memory::{self, KernelDma};
use crate::physmem::OldMem;
use crate::{rkerror, rkline};

static CLOCK: TscClock = TscClock;

/// Heap the kdump writer needs besides its extra codec states (bitmaps, stream and batch
/// buffers, the first codec state: under 1 MiB, `vmcore/tests/kdump_bound.rs`), plus what the
/// disk record allocates at its first writes (two 256 KiB staging buffers) and a margin.
const HEAP_BEFORE_EXTRA_CPUS: usize = (1 << 20) + (512 << 10) + (128 << 10);

/// CPUs that get codec state: every online one the heap has room for (each extra one costs
/// [`kdump::Compressor::state_bytes`]; `rkdump.cpus=` decided how many are online).
fn compress_cpus(codec: Codec) -> usize {
    let online = crate::smp::online().min(kdump::batch::MAX_WORKERS);
    let state = kdump::Compressor::state_bytes(codec).max(1);
    let fits = || 1 + memory::heap_free().saturating_sub(HEAP_BEFORE_EXTRA_CPUS) / state;
    if fits() < online {
        // The fixed heap is sized for one CPU's work: the others' codec state gets frames of
        // its own (plus a page per CPU for the allocator's bookkeeping and alignment).
        let want = (online - fits()) * (state + 4096);
        if !memory::grow_heap(want as u64) {
            rkline!(
                "note: kdump: no frames to grow the heap by {} KiB",
                want >> 10
            );
        }
    }
    let free = memory::heap_free();
    let fits = fits();
    if fits < online {
        rkline!(
            "note: kdump: compressing on {fits} of {online} CPUs (heap free {} KiB, {} KiB per CPU for {codec})",
            free >> 10,
            state >> 10
        );
    }
    fits.min(online)
}

/// Compression jobs on the online CPUs that are ready for them (`smp::for_each_ready_cpu`: the
/// batch's workers take pages from a shared counter, and the crashing CPU compresses whatever no
/// other CPU took); the jobs only touch the writer's batch buffers, never old memory, devices or
/// the console.
struct AllCpus;

impl Parallel for AllCpus {
    fn workers(&self) -> usize {
        crate::smp::online()
    }

    fn run(&mut self, job: &(dyn Fn(usize) + Sync)) {
        crate::smp::for_each_ready_cpu(|cpu| job(cpu.index));
    }
}

/// The codec `rkdump.compress=` asks for; one rkdump cannot provide is refused with an error
/// line, and zlib (which every reader has) is used instead.
pub fn codec(c: Compress) -> Codec {
    match c {
        Compress::Zlib => Codec::Zlib,
        Compress::Lzo => Codec::Lzo,
        Compress::None => Codec::None,
        Compress::Snappy | Compress::Zstd => {
            let name = if c == Compress::Snappy {
                "snappy"
            } else {
                "zstd"
            };
            rkerror!(
                "rkdump.compress={name} is not provided (no no_std encoder; Debian's makedumpfile cannot read it); using zlib"
            );
            Codec::Zlib
        }
    }
}

/// The page filter for `rkdump.level=`, or `None` (every page) for a level without page-flag
/// bits or one that cannot be applied (an error line says why; the dump then is level 1, as
/// the ELF path's fallback).
pub(crate) fn page_filter(plan: &DumpPlan, level: u8) -> (Option<PageFilter>, u8) {
    let level = Level::from_bits_truncate(level);
    if !level.needs_page_structs() {
        return (None, level.bits());
    }
    let filter = plan
        .notes
        .vmcoreinfo()
        .ok_or_else(|| String::from("no VMCOREINFO"))
        .and_then(|vi| KernelInfo::parse(&vi).map_err(|e| format!("{e}")))
        .and_then(|info| PageFilter::new(&info, level).map_err(|e| format!("{e}")));
    match filter {
        Ok(f) => (Some(f), level.bits()),
        Err(why) => {
            rkerror!(
                "filter: level {} not applied: {why}; dumping at level 1",
                level.bits()
            );
            (None, Level::ZERO.bits())
        }
    }
}

/// Writes the kdump-compressed file of `plan` to the labelled disk.
pub fn dump_disk(
    d: &mut DumpDisk,
    plan: &DumpPlan,
    mem: &mut OldMem,
    run_id: [u8; 16],
    pace: &WriteOptions,
    opts: &Options,
) -> Result<(), String> {
    let codec = codec(opts.compress);
    let target = d.target.clone();
    let t0 = crate::clock::now_us();
    let (mut filter, level) = page_filter(plan, opts.level);
    let block = u64::from(rkdump_devices::label::DEFAULT_BLOCK_SIZE);
    let kopts = kdump::Options {
        codec,
        dump_level: i32::from(level),
        window_pages: kdump::WINDOW_PAGES,
        data_align: block,
        now_us: Some(crate::clock::now_us),
        max_workers: compress_cpus(codec),
        ..kdump::Options::default()
    };
    let max = kdump::max_file_size(plan, &kopts).map_err(|e| format!("{e}"))?;
    rkline!("dump start bytes={max} target={target} format=kdump compress={codec}");
    let info = plan.notes.vmcoreinfo();
    let osrelease = info.and_then(|i| i.osrelease()).unwrap_or("").as_bytes();
    let timestamp = info.and_then(|i| i.crash_time()).unwrap_or(0);
    let pacing = Pacing {
        clock: &CLOCK,
        checkpoints: pace.checkpoints.then_some(Checkpoints::DEFAULT),
        throttle_mib_s: 0,
    };
    let mut checkpoint_us = 0u64;
    let mut on_cp = |c: rkdump_devices::record::Checkpoint| {
        checkpoint_us += c.us;
        rkline!("checkpoint bytes={} ms={}", c.bytes, c.us / 1000);
    };
    let (dev, label) = d.parts();
    let mut dma = KernelDma;
    let mut rec = ProducedRecord::start(
        dev,
        &mut dma,
        label,
        max,
        run_id,
        pace.checksum,
        osrelease,
        timestamp,
        Some(pacing),
        &mut on_cp,
    )
    .map_err(|e| format!("{e}"))?;
    rec.set_report(&pace.report);
    if !rec.layout().fits {
        rkline!(
            "note: the raw upper bound {max} exceeds the disk; the compressed file must fit {} bytes",
            rec.layout().writable_bytes
        );
    }
    // Progress counts old memory done (the file's size is known only at the end).
    let progress = Reporter::new(plan.layout.summary.chunk_bytes);
    let mut events = progress_events(&progress);
    let selector: &mut dyn PageSelector = match filter.as_mut() {
        Some(f) => f,
        None => &mut KeepAll,
    };
    let written = kdump::write_kdump_on(
        plan,
        mem,
        selector,
        &mut rec,
        &kopts,
        &mut AllCpus,
        &mut events,
    );
    let stats = match written {
        Ok(s) => s,
        Err(e) => {
            rkerror!("kdump writer: {e}");
            let kept = rec.finish(None).map_err(|e| format!("{e}"))?;
            return Err(format!("kdump file incomplete ({kept} bytes recoverable)"));
        }
    };
    let size = rec.finish(Some(stats.size)).map_err(|e| format!("{e}"))?;
    summary(filter.as_ref(), level, &stats, t0);
    rkline!(
        "dump complete bytes={size} ms={} target={target}",
        progress.elapsed_ms()
    );
    rkline!("checkpoints total ms={}", checkpoint_us / 1000);
    memory::report_peak();
    Ok(())
}

/// The writer's events as console lines: selector failures, and progress (the share of the kept
/// pages written, shown against the old memory's size).
pub(crate) fn progress_events(progress: &Reporter) -> impl FnMut(Event) + '_ {
    move |e: Event| match e {
        Event::SelectorFailed { start_pfn, error } => {
            rkerror!("page selection at frame {start_pfn:#x}: {error}; window kept whole")
        }
        Event::Progress { done, total, .. } => progress.update_share(done, total),
    }
}

/// The `filter` and `kdump` console lines of a finished kdump file (any target); `t0` is when
/// the dump started.
pub(crate) fn summary(filter: Option<&PageFilter>, level: u8, stats: &kdump::Stats, t0: u64) {
    if let Some(f) = filter {
        // The writer asks the filter twice per window (count, then write), with the same
        // answer both times (it checks): each count is double.
        let s = f.stats();
        rkline!(
            "filter level={} examined={} excluded={} cache={} cache_private={} user={} free={} hwpoison={} offline={} kept_short_runs=0 loads=0 ms={}",
            level,
            s.examined / 2,
            s.excluded() / 2,
            s.cache / 2,
            s.cache_private / 2,
            s.user / 2,
            s.free / 2,
            s.hwpoison / 2,
            s.offline / 2,
            (crate::clock::now_us() - t0) / 1000
        );
    }
    rkline!(
        "kdump pages={} zero={} compressed={} raw={} windows={} data_offset={} size={}",
        stats.pages,
        stats.zero_pages,
        stats.compressed_pages,
        stats.raw_pages,
        stats.windows,
        stats.data_offset,
        stats.size
    );
    let workers = usize::try_from(stats.workers).unwrap_or(0);
    rkline!(
        "kdump phases cpus={} read_ms={} compress_ms={} write_ms={} pages_by_cpu={}",
        stats.workers,
        stats.read_us / 1000,
        stats.compress_us / 1000,
        stats.write_us / 1000,
        PerCpu(stats.pages_by_worker.get(..workers).unwrap_or(&[]))
    );
}

/// Counts per CPU as `a/b/...`.
struct PerCpu<'a>(&'a [u64]);

impl core::fmt::Display for PerCpu<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}
