//! The job: read the crashed kernel's ELF core header, lay out the `/proc/vmcore`-identical
//! file, and stream it to the chosen target with the console lines of interfaces.md
//! (`dump start`, `progress`, `dump complete`). Only "nothing to dump" is fatal; a target that
//! fails falls back to the next one.

use alloc::vec;
use alloc::vec::Vec;

use rkdump_boot::cmdline::{ChecksumMode, Options, SerialPort, Target};
use rkdump_boot::info::BootInfo;
use rkdump_boot::mem::PhysRange;
use rkdump_boot::physaddr::AddrPolicy;
use rkdump_devices::label::{BlockSums, ChecksumKind};
use rkdump_devices::pci::Bdf;
use rkdump_vmcore::elf::{EHDR_SIZE, PT_NOTE};
use rkdump_vmcore::stream::FrameEncoder;
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

/// Bounce-buffer size for copying old memory to byte-oriented sinks (page multiple, so reads
/// stay page-aligned).
const BOUNCE: usize = 64 * 1024;

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
    // Never hand out memory the header lives in or that the dump reads.
    for p in plan
        .header
        .notes()
        .map(|(_, p)| p)
        .chain(plan.header.loads().map(|(_, p)| p))
    {
        memory::reserve(PhysRange::new(p.p_offset, p.p_memsz));
    }

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

    let target = match opts.target {
        Target::Serial(port) => port,
        Target::Auto | Target::Disk | Target::DiskAt(_) => {
            let want = match opts.target {
                Target::DiskAt(a) => Some(Bdf {
                    segment: a.segment,
                    bus: a.bus,
                    dev: a.dev,
                    func: a.func,
                }),
                _ => None,
            };

            let fault = opts.fault_dead.map(|a| Bdf {
                segment: a.segment,
                bus: a.bus,
                dev: a.dev,
                func: a.func,
            });
            match disk::find(
                &pci,
                &scan,
                want,
                opts.nopreinit,
                fault,
                &crate::reinit::policy(opts),
            ) {
                Some(mut d) => {
                    match dump_disk(&mut d, &plan, &mem, run_id, checksum_kind(opts.checksum)) {
                        Ok(()) => return Outcome::Success,
                        Err(e) => rkerror!(
                            "disk dump to {} failed: {e}; falling back to serial",
                            d.target
                        ),
                    }
                }
                None if opts.target == Target::Auto => {
                    rkline!("no labelled dump disk; dumping to serial");
                }
                None => rkerror!(
                    "no usable labelled dump disk for target {}; falling back to serial",
                    opts.target
                ),
            }
            SerialPort::Com2
        }
    };
    if opts.console.map(|c| c.port) == Some(target)
        || (opts.console.is_none() && target == SerialPort::Com1)
    {
        rkerror!("dump serial port {target} is also the console; refusing to mix them");
        return Outcome::Failed;
    }
    match dump_serial(
        &plan,
        &mut mem,
        target,
        opts.serial_baud.unwrap_or(115_200),
        run_id,
    ) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            rkerror!("serial dump failed: {e}");
            Outcome::Failed
        }
    }
}

/// Progress reporting: a line at least every 2 s, or every 5 % on fast dumps.
struct Progress {
    start_us: u64,
    last_us: u64,
    last_pct: u64,
}

impl Progress {
    fn new() -> Self {
        let now = clock::now_us();
        Progress {
            start_us: now,
            last_us: now,
            last_pct: 0,
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        let now = clock::now_us();
        let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        if now - self.last_us < 2_000_000 && pct < self.last_pct + 5 {
            return;
        }
        self.last_us = now;
        self.last_pct = pct;
        let secs = (now - self.start_us).max(1) as f64 / 1e6;
        let rate = done as f64 / secs / (1 << 20) as f64;
        let eta = if done == 0 {
            0
        } else {
            ((total - done) as f64 / (done as f64 / secs)) as u64
        };
        rkline!("progress {}% {:.1} MiB/s eta={}s", pct, rate, eta);
    }

    fn elapsed_ms(&self) -> u64 {
        (clock::now_us() - self.start_us) / 1000
    }
}

/// The dump UART as a [`DumpSink`]; every wait is bounded.
struct SerialSink {
    uart: Uart16550<PioBackend>,
}

impl DumpSink for SerialSink {
    fn write(&mut self, mut data: &[u8]) -> Result<(), SinkError> {
        let mut spins = 0u32;
        while !data.is_empty() {
            let n = self.uart.send_bytes(data);
            if n == 0 {
                spins += 1;
                if spins > 5_000_000 {
                    return Err(SinkError::Timeout);
                }
                core::hint::spin_loop();
            } else {
                spins = 0;
                data = &data[n..];
            }
        }
        Ok(())
    }
}

/// Hashing rate below which `rkdump.checksum=auto` samples: a fast NVMe writes a few GiB/s, and
/// the block checksums must not be what limits the dump.
const FULL_HASH_MIN_MIB_S: u64 = 2048;

/// Resolves `rkdump.checksum=`; `auto` measures XXH64 on this CPU first (256 KiB: well under
/// a millisecond on hardware).
fn checksum_kind(mode: ChecksumMode) -> ChecksumKind {
    match mode {
        ChecksumMode::Full => ChecksumKind::Full,
        ChecksumMode::Sampled => ChecksumKind::Sampled,
        ChecksumMode::Auto => {
            const SAMPLE: u64 = 256 << 10;
            let buf: Vec<u8> = (0..SAMPLE as u32).map(|i| i as u8).collect();
            let t0 = clock::now_us();
            let h = BlockSums::of_block(ChecksumKind::Full, &buf);
            let us = (clock::now_us() - t0).max(1);
            let rate = (SAMPLE * 1_000_000 / us) >> 20;
            let kind = if rate >= FULL_HASH_MIN_MIB_S {
                ChecksumKind::Full
            } else {
                ChecksumKind::Sampled
            };
            rkline!("checksum auto: XXH64 at {rate} MiB/s on this CPU (sample {h:#x}) -> {kind:?}");
            kind
        }
    }
}

fn dump_disk(
    d: &mut disk::DumpDisk,
    plan: &DumpPlan,
    mem: &OldMem,
    run_id: [u8; 16],
    checksum: ChecksumKind,
) -> Result<(), alloc::string::String> {
    let total = plan.layout.total_size;
    rkline!("dump start bytes={} target={}", total, d.target);
    let mut progress = Progress::new();
    let written = disk::dump(d, plan, mem, run_id, checksum, &mut |done, t| {
        progress.update(done, t)
    })?;
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
    rkline!("memory peak={} KiB", memory::peak_bytes() >> 10);
    Ok(())
}

fn dump_serial(
    plan: &DumpPlan,
    mem: &mut OldMem,
    port: SerialPort,
    baud: u32,
    run_id: [u8; 16],
) -> Result<(), &'static str> {
    // The dump port is not the console (checked by the caller) and nothing else drives it.
    let mut uart = crate::hw::uart::open(port).ok_or("bad serial port")?;
    let config = Config {
        baud_rate: BaudRate::from_integer(baud),
        ..Config::DEFAULT
    };
    uart.init(config)
        .map_err(|_| "serial port does not answer")?;
    let total = plan.layout.total_size;
    let target = alloc::format!("serial:{port}");
    rkline!("dump start bytes={} target={}", total, target);
    let mut enc = FrameEncoder::new(SerialSink { uart });
    enc.begin(total, run_id)
        .map_err(|_| "stream begin failed")?;
    let mut buf: Vec<u8> = vec![0; BOUNCE];
    let mut progress = Progress::new();
    rkdump_vmcore::write_vmcore(&plan.layout, mem, &mut enc, &mut buf, &mut |d, t| {
        progress.update(d, t)
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
    rkline!("memory peak={} KiB", memory::peak_bytes() >> 10);
    Ok(())
}
