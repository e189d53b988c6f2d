//! The run itself: from the entry stub's hand-off to the final action.
//!
//! Order matters: the exception hook and the CPU tables first (so faults are reported), then
//! rkdump's own page tables, so every later read of a foreign address (boot data, ACPI, old
//! memory) is checked against the physical address limit and mapped on demand instead of
//! trusting what the loader happened to map; then the boot data, memory, ACPI (clock, power-off),
//! and only then the job. The exception hook ([`report_exception`]) and the panic handler print
//! the report and end the run.

use rkdump_boot::cmdline::{Action, DiagKind, Options, ResetPolicy, SelfTest, SerialPort};
use rkdump_boot::info::{BootInfo, BootSource};
use rkdump_boot::mem::PhysRange;
use rkdump_boot::memmap::MemKind;
use rkdump_boot::physaddr::{AddrPolicy, PhysLimit};
use spin::Mutex;

use crate::arch::idt::ExceptionReport;
use crate::arch::{self, cpu};
use crate::physmem::BootMem;
use crate::power::{self, Outcome};
use crate::{acpi, clock, dump, memory, rkerror, rkline, smp};

/// How the kernel was entered (set by the entry stub in `rdi`).
const ENTRY_ZERO_PAGE: u64 = 0;
const ENTRY_PVH: u64 = 1;

/// The boot information, filled in place (it is ~25 KiB, too large to move around the stack).
static BOOT: Mutex<BootInfo> = Mutex::new(BootInfo::new());

/// The image's physical extent: the loaded payload plus .bss, stacks and early tables.
fn image_range() -> PhysRange {
    let (start, len) = arch::entry::image_extent();
    PhysRange::new(start, len)
}

fn kind_name(kind: MemKind) -> &'static str {
    match kind {
        MemKind::Ram => "ram",
        MemKind::Reserved => "reserved",
        MemKind::AcpiReclaimable => "acpi",
        MemKind::AcpiNvs => "nvs",
        MemKind::Unusable => "unusable",
        MemKind::Pmem => "pmem",
        MemKind::Pram => "pram",
        MemKind::Unknown(_) => "type",
    }
}

/// The run, from `rkdump_main` (the symbol the entry stub calls, in `hw`): `kind` is how the
/// kernel was entered, `info` the boot-data pointer.
pub fn run(kind: u64, info: u64, _base: u64) -> ! {
    // Before anything can fault: until the hook is installed an exception just halts.
    arch::idt::set_exception_hook(report_exception);
    crate::console::init(SerialPort::Com1, 115_200);
    arch::gdt::init();
    arch::idt::init();
    let image = image_range();
    // Before the boot data: its pointers (command line, setup_data, initrd) are foreign.
    let tables = arch::paging::init((image.start, image.len));

    let mut boot = BOOT.lock();
    let loaded = match kind {
        ENTRY_ZERO_PAGE => boot.load_zero_page(info, &BootMem),
        ENTRY_PVH => boot.load_pvh(info, &BootMem),
        _ => {
            rkline!("entered");
            rkerror!("unknown entry kind {kind}");
            power::finish(Outcome::Failed);
        }
    };
    let opts = Options::parse(boot.cmdline());
    if let Some(c) = opts.console {
        crate::console::init(c.port, c.baud.unwrap_or(115_200));
    }
    power::configure(
        match opts.action {
            Action::Reboot => power::Action::Reboot,
            Action::Poweroff => power::Action::Poweroff,
            Action::Halt => power::Action::Halt,
        },
        opts.qemu_exit,
    );
    crate::console::init_logger(log::LevelFilter::Info);
    rkline!("entered");
    if let Err(e) = loaded {
        rkerror!("boot information unreadable: {e}");
        power::finish(Outcome::Failed);
    }
    if let Err(e) = tables {
        rkerror!("page tables: {e}");
        power::finish(Outcome::Failed);
    }
    report_boot(&boot, &opts);
    let limit = arch::paging::phys_limit();
    // No heap yet: no `format!` here.
    let levels = if cpu::cr4() & cpu::CR4_LA57 != 0 {
        5
    } else {
        4
    };
    match cpu::phys_addr_bits() {
        Some(bits) => rkline!(
            "physical address limit {:#x} (cpu {bits} bits, {levels}-level paging)",
            limit.end()
        ),
        None => rkline!(
            "physical address limit {:#x} (cpu width unknown, {levels}-level paging)",
            limit.end()
        ),
    }
    // No heap yet: a fixed array. Until the header is parsed its size is unknown; 64 KiB covers
    // KL's and KF's headers for hundreds of CPUs and memory ranges.
    let mut reserved = [PhysRange::new(0, 0); 160];
    let mut n = 0;
    let elfcorehdr = opts
        .elfcorehdr
        .map(|h| PhysRange::new(h.addr, h.size.unwrap_or(64 << 10)));
    // RAM the map claims beyond the limit could never be mapped: never hand it out.
    let unmappable = PhysRange::from_bounds(limit.end(), u64::MAX);
    for r in boot
        .reserved_ranges()
        .chain([image])
        .chain(elfcorehdr)
        .chain(unmappable)
    {
        if n < reserved.len() {
            reserved[n] = r;
            n += 1;
        }
    }
    if let Err(e) = memory::init(boot.memory_map(), &reserved[..n]) {
        rkerror!("memory: {e:?}");
        power::finish(Outcome::Failed);
    }
    rkline!(
        "memory image={:#x}+{:#x} heap={} KiB page-tables={}",
        image.start,
        image.len,
        memory::HEAP_SIZE >> 10,
        arch::paging::table_pages()
    );

    let discovery = acpi::find_rsdp(&opts, &boot);
    report_efi(&discovery);
    let acpi_info = match discovery.found.map(|(rsdp, _)| acpi::parse(rsdp)) {
        Some(Ok(a)) => Some(a),
        Some(Err(e)) => {
            rkerror!("ACPI tables unreadable: {e:?}");
            None
        }
        None => {
            rkline!("note: no ACPI RSDP found");
            None
        }
    };
    if let Some(a) = &acpi_info {
        rkline!(
            "acpi rsdp={:#x} pm1a_cnt={} pm_timer={} s5={} ecam={} source={}",
            a.rsdp,
            Hex(a.pm1a_cnt.map(|p| u64::from(p.port()))),
            Hex(a.pm_timer.map(|t| u64::from(t.port()))),
            a.s5.map_or(alloc::string::String::from("none"), |s| alloc::format!(
                "{}/{}",
                s.slp_typ_a,
                s.slp_typ_b
            )),
            Hex(a.ecam.map(|e| e.0)),
            discovery.found.map_or("none", |(_, s)| s.name())
        );
        if let (Some(pm1a), Some(s5)) = (a.pm1a_cnt, a.s5) {
            power::set_acpi_poweroff(power::AcpiPowerOff {
                pm1a_cnt: pm1a,
                pm1b_cnt: a.pm1b_cnt,
                slp_typ_a: s5.slp_typ_a,
                slp_typ_b: s5.slp_typ_b,
            });
        }
    }
    let policy = address_policy(limit, acpi_info.as_ref());
    let tsc_mhz = clock::calibrate(acpi_info.and_then(|a| a.pm_timer));
    rkline!("clock tsc={} MHz", tsc_mhz);
    smp::init(&opts, discovery.found.map(|(addr, _)| addr));

    if let Some(t) = opts.selftest {
        selftest(t);
    }

    let outcome = dump::run(&boot, &opts, image, acpi_info, &policy);
    if let Some(n) = crate::watchdog::pets() {
        rkline!("watchdog reloads={n}");
    }
    drop(boot);
    smp::stop();
    power::finish(outcome)
}

/// The address policy for old memory: the limit, the architectural APIC pages (and the local
/// APIC where this CPU has it), and the ECAM window the MCFG names (buses `start..=end` at
/// `base + (bus << 20)`).
fn address_policy(limit: PhysLimit, acpi: Option<&acpi::AcpiInfo>) -> AddrPolicy {
    let mut policy = AddrPolicy::new(limit);
    let lapic = PhysRange::new(cpu::apic_base(), 0x1000);
    if !policy.mmio().contains(&lapic) {
        policy.add_mmio(lapic);
    }
    if let Some((base, _, start, end)) = acpi.and_then(|a| a.ecam) {
        let first = base.checked_add(u64::from(start) << 20);
        let len = (u64::from(end) + 1).saturating_sub(u64::from(start)) << 20;
        if let Some(window) = first.and_then(|f| PhysRange::try_new(f, len)) {
            policy.add_mmio(window);
        }
    }
    policy
}

/// `0x…` or `none` for optional addresses in console lines.
struct Hex(Option<u64>);

impl core::fmt::Display for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v:#x}"),
            None => f.write_str("none"),
        }
    }
}

/// The EFI configuration table walk: what it found, or why not (only on a UEFI hand-off).
fn report_efi(d: &acpi::RsdpDiscovery) {
    match d.efi {
        Some(Ok(e)) => rkline!(
            "efi config={:#x} from={} entries={} rsdp={:#x} acpi{}",
            e.config,
            e.config_from.name(),
            e.entries,
            e.rsdp,
            if e.acpi20 { "20" } else { "10" }
        ),
        Some(Err(e)) => rkline!("note: efi: {e}"),
        None => {}
    }
}

fn report_boot(boot: &BootInfo, opts: &Options) {
    rkline!(
        "boot source={} cr4={:#x}",
        match boot.source() {
            BootSource::LinuxZeroPage => "zeropage",
            BootSource::Pvh => "pvh",
        },
        cpu::cr4()
    );
    rkline!("cmdline \"{}\"", boot.cmdline());
    if boot.cmdline().is_truncated() {
        rkerror!("command line truncated");
    }
    for d in opts.diagnostics() {
        match d.kind {
            DiagKind::Malformed(_) => rkerror!("{d}"),
            DiagKind::Unknown | DiagKind::Duplicate => rkline!("note: {d}"),
        }
    }
    rkline!(
        "option reset_devices={}",
        if opts.reset_devices { "yes" } else { "no" }
    );
    match opts.elfcorehdr {
        Some(h) => match h.size {
            Some(s) => rkline!("option elfcorehdr={:#x} size={:#x}", h.addr, s),
            None => rkline!("option elfcorehdr={:#x}", h.addr),
        },
        None => rkline!("option elfcorehdr=none"),
    }
    rkline!("option target={}", opts.target);
    rkline!(
        "option action={}",
        match opts.action {
            Action::Reboot => "reboot",
            Action::Poweroff => "poweroff",
            Action::Halt => "halt",
        }
    );
    rkline!(
        "option reset={}",
        match opts.effective_reset() {
            ResetPolicy::Auto => "auto",
            ResetPolicy::None => "none",
            ResetPolicy::Methods(_) => "methods",
        }
    );
    for r in boot.memory_map().regions() {
        let end = r.start.saturating_add(r.len).saturating_sub(1);
        match r.kind {
            MemKind::Unknown(raw) => rkline!("e820 {:#018x}-{:#018x} type{}", r.start, end, raw),
            k => rkline!("e820 {:#018x}-{:#018x} {}", r.start, end, kind_name(k)),
        }
    }
    match boot.initrd() {
        Some(i) => rkline!("initrd {:#x} size={}", i.start, i.len),
        None => rkline!("initrd none"),
    }
    if let Some(systab) = boot.efi_systab() {
        rkline!(
            "efi systab={:#x} {}",
            systab,
            if boot.efi_64() { "EL64" } else { "EL32" }
        );
    }
    for r in boot.setup_data() {
        rkline!(
            "setup_data type={} data={:#x}+{:#x}{}",
            r.type_,
            r.data.start,
            r.data.len,
            if r.indirect { " indirect" } else { "" }
        );
    }
    for n in boot.notes() {
        rkline!("note: boot data: {n}");
    }
}

fn selftest(t: SelfTest) {
    rkline!("selftest {t:?}");
    match t {
        SelfTest::PageFault => {
            let v = arch::selftest::read_unmapped();
            rkerror!("selftest: read of unmapped memory returned {v:#x}");
        }
        SelfTest::Divide => arch::selftest::divide_by_zero(),
        SelfTest::Breakpoint => x86_64::instructions::interrupts::int3(),
        SelfTest::Panic => panic!("selftest"),
        SelfTest::Smp => smp::selftest(),
        _ => rkline!("note: unknown selftest"),
    }
}

/// The exception hook: vector, error code, RIP, CR2 and all registers on the console, then the
/// run ends the way `rkdump.action` says (NMIs are reported and resumed).
fn report_exception(r: &ExceptionReport<'_>) {
    crate::console::take_over();
    let f = r.frame;
    rkline!(
        "error: exception vector={} ({}) error_code={} rip={:#x} cr2={:#x}",
        r.vector,
        r.name(),
        r.error_code,
        f.rip,
        r.cr2
    );
    rkline!(
        "regs rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x} rsp={:#x}",
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx,
        f.rsi,
        f.rdi,
        f.rbp,
        f.rsp
    );
    rkline!(
        "regs r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x}",
        f.r8,
        f.r9,
        f.r10,
        f.r11,
        f.r12,
        f.r13,
        f.r14,
        f.r15
    );
    rkline!(
        "regs cs={:#x} ss={:#x} rflags={:#x} cr3={:#x} cr4={:#x}",
        f.cs,
        f.ss,
        f.rflags,
        r.cr3,
        r.cr4
    );
    if !r.resumable() {
        power::finish(Outcome::Failed);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::take_over();
    rkerror!("panic: {info}");
    power::finish(Outcome::Failed)
}
