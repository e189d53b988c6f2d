//! The job: read the crashed kernel's ELF core header, lay out the `/proc/vmcore`-identical
//! file, and stream it to the chosen target with the console lines of docs/interface.md#console
//! (`dump start`, `progress`, `dump complete`). Only "nothing to dump" is fatal; a target that
//! fails falls back to the next one (the list: `crate::targets`).

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use rkdump_boot::cmdline::{ChecksumMode, DumpFormat, Options, SerialPort};
use rkdump_boot::info::BootInfo;
use rkdump_boot::mem::PhysRange;
use rkdump_boot::physaddr::AddrPolicy;
use rkdump_devices::label::{BlockXxh64, ChecksumKind};
use rkdump_vmcore::elf::{EHDR_SIZE, PT_NOTE};
use rkdump_vmcore::kdump;
use rkdump_vmcore::pages::{KeepAll, PageSelector};
use rkdump_vmcore::progress::{Line as ProgressLine, Progress};
use rkdump_vmcore::stream::{FrameEncoder, MAX_PAYLOAD};
use rkdump_vmcore::{DumpPlan, DumpSink, SinkError};
use uart_16550::backend::PioBackend;
use uart_16550::{BaudRate, Config, Uart16550};

use crate::acpi::AcpiInfo;
use crate::clock;
use crate::disk;
use crate::memory;
use crate::physmem::{HeaderFilter, OldMem};
use crate::power::Outcome;
use crate::{rkerror, rkline};

/// Bounce buffer of the serial path: one frame's payload, so the writer's progress callback runs
/// once per frame (0.36 s at 115200 baud) rather than per 64 KiB (5.7 s). A page multiple, so
/// old-memory reads stay page-aligned.
const SERIAL_BOUNCE: usize = MAX_PAYLOAD;
const _: () = assert!(SERIAL_BOUNCE.is_multiple_of(4096));

/// Runs the dump; returns the outcome for the final action. `policy` judges every old-memory
/// address the command line and the header name before anything is read there.
pub fn run(
    boot: &BootInfo,
    opts: &Options,
    image: PhysRange,
    acpi: Option<AcpiInfo>,
    policy: &AddrPolicy,
) -> Outcome {
    let Some(hdr) = opts.elfcorehdr else {
        rkerror!("no elfcorehdr= on the command line: nothing to dump");
        return Outcome::Failed;
    };
    // At least the ELF header must be readable where the command line says.
    let hdr_len = hdr.size.unwrap_or(EHDR_SIZE as u64);
    if let Err(e) = policy.check_elfcorehdr(boot.memory_map(), hdr.addr, hdr_len) {
        rkerror!(
            "elfcorehdr at {:#x} unusable: {e}: nothing to dump",
            hdr.addr
        );
        return Outcome::Failed;
    }
    let owned = vec![(image.start, image.start + image.len)];
    let mut mem = OldMem::new(owned, *policy);
    let filter = HeaderFilter(policy);
    let plan = match rkdump_vmcore::prepare_dump_filtered(&mut mem, hdr.addr, hdr.size, &filter) {
        Ok(p) => p,
        Err(e) => {
            rkerror!(
                "elfcorehdr at {:#x} unusable: {e}: nothing to dump",
                hdr.addr
            );
            return Outcome::Failed;
        }
    };
    for d in plan.header.dropped() {
        rkerror!(
            "elfcorehdr phdr {} ({} {:#x}+{:#x}) {}: left out of the dump",
            d.index,
            if d.phdr.p_type == PT_NOTE {
                "PT_NOTE"
            } else {
                "PT_LOAD"
            },
            d.phdr.p_offset,
            d.phdr.p_memsz,
            d.reason
        );
    }
    let s = plan.layout.summary;
    rkline!(
        "elfcorehdr addr={:#x} phnum={} notes={} loads={}",
        hdr.addr,
        s.input_phnum,
        s.pt_notes,
        s.loads
    );
    rkline!(
        "vmcore cpus={} vmcoreinfo={} note_bytes={} old_memory={} MiB size={}",
        s.cpus,
        if s.vmcoreinfo { "yes" } else { "no" },
        s.note_size,
        s.chunk_bytes >> 20,
        s.total_size
    );
    if let Some(info) = plan.notes.vmcoreinfo()
        && let Some(rel) = info.osrelease()
    {
        rkline!("crashed kernel {rel}");
    }
    for w in plan.notes.warnings() {
        rkline!("note: notes: {w:?}");
    }
    let report = crate::report::run(&mut mem, &plan, opts.report_lines);
    // Never hand out memory the header lives in or that the dump reads.
    for p in plan
        .header
        .notes()
        .map(|(_, p)| p)
        .chain(plan.header.loads().map(|(_, p)| p))
    {
        memory::reserve(PhysRange::new(p.p_offset, p.p_memsz));
    }

    // The kdump writer runs the page filter itself, window by window (crate::format).
    let plan = if opts.format == DumpFormat::Kdump {
        plan
    } else {
        crate::filter::apply(plan, &mut mem, opts.level)
    };

    let mut run_id = [0u8; 16];
    run_id[..8].copy_from_slice(&crate::arch::cpu::rdtsc().to_le_bytes());
    if let Some(t) = plan.notes.vmcoreinfo().and_then(|v| v.crash_time()) {
        run_id[8..].copy_from_slice(&t.to_le_bytes());
    }

    // Devices first, whatever the target: stray DMA from the crashed kernel's devices must stop
    // (quiesce always; resets per rkdump.reset=), and the dump disk must be in a known state.
    let pci = crate::pci::open(acpi.as_ref());
    let mut scan = pci.scan(true);
    let blob = crate::reinit::load_blob(boot);
    let unassigned = crate::reinit::run(&pci, &scan, opts, blob.as_deref());
    // Resets and restores may have moved BARs: drivers must see the current ones.
    scan = pci.scan(false);
    if !unassigned.is_empty() {
        crate::reinit::assign_bars(&pci, &scan, &unassigned);
        scan = pci.scan(false);
    }
    // Bus mastering is off everywhere now: the IOMMU can be taken over before a driver DMAs.
    crate::iommu::take_over(acpi.as_ref(), opts);
    crate::watchdog::take_over(&pci, &scan, opts.watchdog);

    crate::targets::run(
        opts,
        blob.as_deref(),
        &pci,
        &scan,
        &plan,
        &mut mem,
        &crate::targets::RunStamp {
            run_id,
            report: &report,
        },
    )
}

/// The dump's [`Progress`] on the kernel clock, printing the lines it says are due. Shared by
/// the writer's callback and the serial sink's wait loop (which never run at the same time), so
/// the state sits in a `RefCell`; a nested call is skipped rather than panicking.
pub(crate) struct Reporter(RefCell<Progress>, u64);

impl Reporter {
    pub(crate) fn new(total: u64) -> Self {
        Reporter(RefCell::new(Progress::new(total, clock::now_us())), total)
    }

    /// `done` bytes are out (the writer's callback).
    pub(crate) fn update(&self, done: u64) {
        self.report(|p, now| p.update(now, done));
    }

    /// `done` of `of` units of work are done, whatever the unit (the kdump writer counts the
    /// pages it keeps, which only it knows): the same share of the total.
    pub(crate) fn update_share(&self, done: u64, of: u64) {
        let bytes = match of {
            0 => self.1,
            _ => (u128::from(self.1) * u128::from(done.min(of)) / u128::from(of)) as u64,
        };
        self.update(bytes);
    }

    /// No new bytes, the caller is waiting on its device: one clock read, a line if the interval
    /// has passed.
    fn tick(&self) {
        self.report(|p, now| p.tick(now));
    }

    fn report(&self, f: impl FnOnce(&mut Progress, u64) -> Option<ProgressLine>) {
        // Only progress keeps a hardware watchdog quiet: a hung dump still gets reset.
        crate::watchdog::pet();
        let Ok(mut p) = self.0.try_borrow_mut() else {
            return;
        };
        if let Some(line) = f(&mut p, clock::now_us()) {
            drop(p);
            rkline!("{line}");
        }
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.0
            .try_borrow()
            .map_or(0, |p| p.elapsed_ms(clock::now_us()))
    }
}

/// The dump UART as a [`DumpSink`]; every wait is bounded, and ticks the progress: at a low baud
/// rate one frame takes longer than the progress interval.
struct SerialSink<'a> {
    uart: Uart16550<PioBackend>,
    progress: &'a Reporter,
}

impl DumpSink for SerialSink<'_> {
    fn write(&mut self, mut data: &[u8]) -> Result<(), SinkError> {
        let mut spins = 0u32;
        while !data.is_empty() {
            let n = self.uart.send_bytes(data);
            if n == 0 {
                spins += 1;
                if spins > 5_000_000 {
                    return Err(SinkError::Timeout);
                }
                self.progress.tick();
                core::hint::spin_loop();
            } else {
                spins = 0;
                data = &data[n..];
            }
        }
        // A writer may call back rarely (the kdump writer once per 1 GiB window): the line is
        // due by time whatever it reports.
        self.progress.tick();
        Ok(())
    }
}

/// Resolves `rkdump.checksum=`: `auto` (the default) is full, every byte on every machine;
/// the hashing runs while the disk DMAs the same memory. The console line reports XXH64's rate
/// on this CPU, for information only (a cold 256 KiB buffer: it includes first-use costs such
/// as QEMU's translation of the hash code, so it reads low under emulation).
pub(crate) fn checksum_kind(mode: ChecksumMode) -> ChecksumKind {
    let kind = match mode {
        ChecksumMode::Auto => ChecksumKind::default(),
        ChecksumMode::Full => ChecksumKind::Full,
        ChecksumMode::Sampled => ChecksumKind::Sampled,
        ChecksumMode::None => ChecksumKind::None,
    };
    if kind == ChecksumKind::Full {
        const SAMPLE: u64 = 256 << 10;
        let buf: Vec<u8> = (0..SAMPLE as u32).map(|i| i as u8).collect();
        let t0 = clock::now_us();
        let h = BlockXxh64::of_block(ChecksumKind::Full, &buf);
        let us = (clock::now_us() - t0).max(1);
        let rate = (SAMPLE * 1_000_000 / us) >> 20;
        rkline!("checksum: XXH64 at {rate} MiB/s on this CPU (cold, sample {h:#x})");
    }
    let name = |k| match k {
        ChecksumKind::Full => "full",
        ChecksumKind::Sampled => "sampled",
        ChecksumKind::None => "none",
    };
    let asked = match mode {
        ChecksumMode::Auto => "auto",
        ChecksumMode::Full => "full",
        ChecksumMode::Sampled => "sampled",
        ChecksumMode::None => "none",
    };
    rkline!(
        "checksum mode={asked} kind={} covers={}",
        name(kind),
        kind.coverage()
    );
    kind
}

pub(crate) fn dump_disk(
    d: &mut disk::DumpDisk,
    plan: &DumpPlan,
    mem: &OldMem,
    run_id: [u8; 16],
    pace: &disk::WriteOptions,
) -> Result<(), alloc::string::String> {
    let total = plan.layout.total_size;
    rkline!("dump start bytes={} target={}", total, d.target);
    if pace.throttle_mib_s > 0 {
        rkline!(
            "test: disk writer throttled to {} MiB/s",
            pace.throttle_mib_s
        );
    }
    if !pace.checkpoints {
        rkline!("test: checkpoints off");
    }
    let progress = Reporter::new(total);
    // The disk writer calls back once per batch, and sizes batches by time: its batch time
    // bounds the gap between lines.
    let mut checkpoint_us = 0u64;
    let written = disk::dump(
        d,
        plan,
        mem,
        run_id,
        pace,
        &mut |done, _| progress.update(done),
        &mut |c| {
            checkpoint_us += c.us;
            rkline!("checkpoint bytes={} ms={}", c.bytes, c.us / 1000);
        },
    )
    .map_err(|e| alloc::format!("{e}"))?;
    if written < total {
        rkerror!(
            "dump truncated: {written} of {total} bytes fit on {}",
            d.target
        );
    }
    rkline!(
        "dump complete bytes={} ms={} target={}",
        written,
        progress.elapsed_ms(),
        d.target
    );
    // What the checkpoints cost in all (their share of the dump time above).
    rkline!("checkpoints total ms={}", checkpoint_us / 1000);
    memory::report_peak();
    Ok(())
}

/// Streams the dump over the serial `port` in the format `opts` asks for: the ELF vmcore as a
/// version-1 run, or the kdump-compressed file as a version-2 run (its size is known only at the
/// end), both rebuilt by `rkdumpctl recv`.
pub(crate) fn dump_serial(
    plan: &DumpPlan,
    mem: &mut OldMem,
    port: SerialPort,
    opts: &Options,
    run_id: [u8; 16],
) -> Result<(), &'static str> {
    let baud = opts.serial_baud.unwrap_or(115_200);
    // The dump port is not the console (checked by the caller) and nothing else drives it.
    let mut uart = crate::hw::uart::open(port).ok_or("bad serial port")?;
    let config = Config {
        baud_rate: BaudRate::from_integer(baud),
        ..Config::DEFAULT
    };
    uart.init(config)
        .map_err(|_| "serial port does not answer")?;
    let target = alloc::format!("serial:{port}");
    if opts.format == DumpFormat::Kdump {
        return serial_kdump(uart, plan, mem, &target, opts, run_id);
    }
    let total = plan.layout.total_size;
    rkline!("dump start bytes={} target={}", total, target);
    let progress = Reporter::new(total);
    let mut enc = FrameEncoder::new(SerialSink {
        uart,
        progress: &progress,
    });
    enc.begin(total, run_id)
        .map_err(|_| "stream begin failed")?;
    // The sink ticks between the writer's per-frame callbacks when the UART is slower still.
    let mut buf: Vec<u8> = vec![0; SERIAL_BOUNCE];
    rkdump_vmcore::write_vmcore(&plan.layout, mem, &mut enc, &mut buf, &mut |d, _| {
        progress.update(d)
    })
    .map_err(|e| {
        rkerror!("writing vmcore: {e}");
        "vmcore write failed"
    })?;
    enc.end().map_err(|_| "stream end failed")?;
    rkline!(
        "dump complete bytes={} ms={} target={}",
        total,
        progress.elapsed_ms(),
        target
    );
    memory::report_peak();
    Ok(())
}

/// The kdump-compressed file over the UART: the writer's two streams go out as they are
/// written, each frame carrying its file offset.
fn serial_kdump(
    uart: Uart16550<PioBackend>,
    plan: &DumpPlan,
    mem: &mut OldMem,
    target: &str,
    opts: &Options,
    run_id: [u8; 16],
) -> Result<(), &'static str> {
    let t0 = clock::now_us();
    let codec = crate::format::codec(opts.compress);
    let (mut filter, level) = crate::format::page_filter(plan, opts.level);
    let kopts = kdump::Options {
        codec,
        dump_level: i32::from(level),
        window_pages: kdump::WINDOW_PAGES,
        // No checksum blocks on a serial line: nothing to align to.
        data_align: 1,
        now_us: Some(clock::now_us),
        ..kdump::Options::default()
    };
    let max = kdump::max_file_size(plan, &kopts).map_err(|e| {
        rkerror!("kdump writer: {e}");
        "kdump layout failed"
    })?;
    rkline!("dump start bytes={max} target={target} format=kdump compress={codec}");
    // Progress counts old memory done (the file's size is known only at the end).
    let progress = Reporter::new(plan.layout.summary.chunk_bytes);
    let mut enc = FrameEncoder::new(SerialSink {
        uart,
        progress: &progress,
    });
    enc.begin_unsized(max, run_id)
        .map_err(|_| "stream begin failed")?;
    let mut events = crate::format::progress_events(&progress);
    let selector: &mut dyn PageSelector = match filter.as_mut() {
        Some(f) => f,
        None => &mut KeepAll,
    };
    let stats =
        kdump::write_kdump(plan, mem, selector, &mut enc, &kopts, &mut events).map_err(|e| {
            rkerror!("kdump writer: {e}");
            "kdump write failed"
        })?;
    let end = enc.end().map_err(|_| "stream end failed")?;
    crate::format::summary(filter.as_ref(), level, &stats, t0);
    rkline!(
        "dump complete bytes={} ms={} target={target}",
        end.total_size,
        progress.elapsed_ms()
    );
    memory::report_peak();
    Ok(())
}
