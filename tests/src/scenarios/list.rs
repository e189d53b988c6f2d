//! The scenario list, as data: every scenario `cargo xtask test` runs, in run order, and the
//! families several of them share (serial dump, disk dump, CPU-exception self-test).

use super::builder::{Ctrl, Ctx, Scenario, holds, sha256};
use crate::fabricate::{FOREIGN_PHDRS, Layout};
use crate::qemu::Exit;

/// `rkdumpctl recv` rebuilds COM2's stream byte-identical to the host's model.
fn serial_vmcore_identical(c: &Ctx) -> Result<(), String> {
    let crash = c.crash()?;
    let out = c.dir.join("vmcore");
    c.ctl()
        .recv(&c.dir.join("com2.bin"), &out)
        .map_err(|e| format!("rkdumpctl recv failed: {e}"))?;
    let got = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::write(c.dir.join("expected.vmcore"), &crash.expected);
    if got != crash.expected {
        let first = got.iter().zip(&crash.expected).position(|(a, b)| a != b);
        return Err(format!(
            "vmcore differs from the host model: got {} bytes, expected {}; first difference at {:?}",
            got.len(),
            crash.expected.len(),
            first
        ));
    }
    println!(
        "    {} bytes byte-identical; loads {:x?}",
        got.len(),
        crash.loads
    );
    Ok(())
}

/// `rkdumpctl recv` rebuilds a kdump-compressed file from COM2 (a version-2 stream) whose pages
/// all read back.
fn serial_kdump_file(c: &Ctx) -> Result<(), String> {
    let out = c.dir.join("vmcore");
    c.ctl()
        .recv(&c.dir.join("com2.bin"), &out)
        .map_err(|e| format!("rkdumpctl recv failed: {e}"))?;
    let got = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let file = rkdump_vmcore::kdump::KdumpFile::parse(&got)
        .map_err(|e| format!("not a kdump-compressed file: {e}"))?;
    let pages = file
        .for_each_page(&mut |_, _, _| {})
        .map_err(|e| format!("{e}"))?;
    println!(
        "    kdump file of {} bytes, {pages} pages read back",
        got.len()
    );
    Ok(())
}

/// `rkdumpctl save` extracts the dump disk's vmcore byte-identical to the host's model.
fn disk_vmcore_identical(c: &Ctx) -> Result<(), String> {
    let crash = c.crash()?;
    let out = c.dir.join("vmcore");
    let d = c.disks()?;
    match d.partition {
        None => c.ctl().save(&d.dump, &out, false),
        Some(n) => c.ctl().save_partition(&d.dump, n, &out),
    }
    .map_err(|e| format!("rkdumpctl save failed: {e}"))?;
    let got = std::fs::read(&out).map_err(|e| e.to_string())?;
    if got != crash.expected {
        return Err(format!(
            "saved vmcore differs: {} bytes vs expected {}",
            got.len(),
            crash.expected.len()
        ));
    }
    if let Some(l) = c.outcome.find("dump complete") {
        println!("    {}", l.text);
    }
    Ok(())
}

/// A fabricated crash dumped over COM2 and rebuilt byte for byte on the host.
fn serial_dump(name: &'static str, about: &'static str, layout: Layout) -> Scenario {
    serial_dump_with(
        name,
        about,
        layout,
        "console=ttyS0 elfcorehdr={elfcorehdr} rkdump.target=serial rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
    )
}

/// [`serial_dump`] with its own command line.
fn serial_dump_with(
    name: &'static str,
    about: &'static str,
    layout: Layout,
    append: &'static str,
) -> Scenario {
    Scenario::new(name, about, append)
        .crash(layout)
        .crash_memory()
        .com2()
        .timeouts(3)
        .line(
            "elfcorehdr summary line",
            "elfcorehdr addr=0x1000000 phnum=",
        )
        .check(|c| {
            let start = format!("dump start bytes={} target=serial:ttyS1", c.expected_len());
            holds(c.has(&start), "dump start with the expected size")
        })
        .line("at least one progress line", "progress ")
        .check(|c| {
            let complete = format!("dump complete bytes={}", c.expected_len());
            holds(c.has(&complete), "dump complete line")
        })
        .exit(Exit::Pass, "QEMU exit code 33 (pass)")
        .check(serial_vmcore_identical)
}

/// The progress lines' timing in the guest's clock (their `ms=` field; host timestamps under TCG
/// load are not the guest's time).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ProgressTiming {
    /// Progress lines seen.
    pub lines: usize,
    /// Longest time without a line: from the dump start (ms=0) through every progress line to
    /// `dump complete`.
    pub max_gap_ms: u64,
    /// `dump complete`'s ms=.
    pub total_ms: u64,
}

/// Reads [`ProgressTiming`] from the `rkdump: ` lines of a dump.
pub(super) fn progress_timing<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<ProgressTiming, String> {
    let ms_of = |l: &str| {
        l.split(' ')
            .find_map(|w| w.strip_prefix("ms="))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("no ms=<guest ms> in `{l}`"))
    };
    let (mut prev, mut max_gap_ms, mut count) = (0, 0, 0);
    for l in lines {
        let complete = l.starts_with("dump complete ");
        if !(complete || l.starts_with("progress ")) {
            continue;
        }
        let ms = ms_of(l)?;
        max_gap_ms = max_gap_ms.max(ms.saturating_sub(prev));
        prev = ms;
        if complete {
            return Ok(ProgressTiming {
                lines: count,
                max_gap_ms,
                total_ms: ms,
            });
        }
        count += 1;
    }
    Err("no `dump complete` line".into())
}

/// Through a 115200-baud line the dump takes long enough to need time-driven progress lines:
/// at most 2 s apart in the guest's clock (the console contract).
fn progress_every_2s(c: &Ctx) -> Result<(), String> {
    let t = progress_timing(c.outcome.rk_lines())?;
    println!(
        "    {} progress lines over {} ms of guest time; longest gap {} ms",
        t.lines, t.total_ms, t.max_gap_ms
    );
    holds(
        t.total_ms >= 10_000,
        format!(
            "the slow line made the dump take at least 10 s (took {} ms): otherwise this proves nothing",
            t.total_ms
        ),
    )?;
    holds(
        t.max_gap_ms <= 2000,
        format!(
            "progress at least every 2 s of guest time: {} ms without a line",
            t.max_gap_ms
        ),
    )
}

/// A fabricated crash dumped to the labelled disk on `ctrl`; the other disk is untouched, the
/// driver's preinit proved the reset, and `rkdumpctl save` is byte-identical.
fn disk_dump(name: &'static str, about: &'static str, ctrl: Ctrl) -> Scenario {
    // reset_devices: the driver's preinit is the first method and must prove itself.
    let (bdf, proof) = match ctrl {
        // SeaBIOS leaves the disks it probed at ACKNOWLEDGE|DRIVER|FEATURES_OK.
        Ctrl::Virtio => ("0000:02:00.0", "device_status 0x0b -> 0 after "),
        Ctrl::Nvme => ("0000:02:00.0", "nvme: CC.EN 1 -> 0, CSTS.RDY 1 -> 0 after "),
        Ctrl::Ahci => ("0000:00:1f.2", "PxIE 0xf -> 0x0, GHC 0x80000000"),
    };
    Scenario::new(
        name,
        about,
        "elfcorehdr={elfcorehdr} reset_devices rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
    )
    .crash(Layout::Low)
    .crash_memory()
    .disks(ctrl, 64)
    .timeouts(2)
    .expect("dump started on a disk", |c| {
        c.any(|l| l.starts_with("dump start bytes=") && l.contains("target=disk:"))
    })
    .check(|c| {
        let complete = format!("dump complete bytes={}", c.expected_len());
        holds(c.has(&complete), "dump complete with the full size")
    })
    .exit(Exit::Pass, "QEMU exit code 33 (pass)")
    .check(|c| {
        let d = c.disks()?;
        holds(
            sha256(&d.other)? == d.other_before,
            "the unlabelled disk's SHA-256 is unchanged",
        )
    })
    .check(move |c| {
        let l = c.reinit_line(bdf);
        holds(
            l.contains("-> preinit,") && l.contains("ok") && l.contains(proof),
            format!("{bdf}: driver preinit ran first and proved the reset ({l})"),
        )
    })
    .check(disk_vmcore_identical)
}

/// A deliberate CPU exception is reported, then rkdump.action is followed.
fn selftest(
    name: &'static str,
    about: &'static str,
    append: &'static str,
    vector: &'static str,
) -> Scenario {
    Scenario::new(name, about, append)
        .check(move |c| {
            let report = format!("error: exception vector={vector}");
            holds(c.has(&report), "exception report with the vector")
        })
        .line("register dump", "regs rax=")
        .line(
            "finish follows rkdump.action after the fault",
            "finish outcome=failed action=halt",
        )
        .exit(Exit::Fail, "QEMU exit code 35 (fail reported)")
}

/// The line the exception hook prints first (kernel/src/kmain.rs `report_exception`).
const EXCEPTION_REPORT: &str = "error: exception vector=";

/// No CPU exception was reported: a foreign address must end in a typed error, not a fault.
fn no_exception(c: &Ctx) -> Result<(), String> {
    match c
        .outcome
        .rk_lines()
        .find(|l| l.starts_with(EXCEPTION_REPORT))
    {
        Some(l) => Err(format!("a CPU exception was reported: {l}")),
        None => Ok(()),
    }
}

/// `rkdump.reset=` on two virtio-blk disks: every disk's reinit line must say `needle`s.
fn reinit_lines_contain(
    what: &'static str,
    needles: &'static [&'static str],
) -> impl Fn(&Ctx) -> Result<(), String> {
    move |c| {
        for bdf in ["0000:01:00.0", "0000:02:00.0"] {
            let l = c.reinit_line(bdf);
            if !needles.iter().all(|n| l.contains(n)) {
                return Err(format!("{bdf}: {what} ({l})"));
            }
        }
        Ok(())
    }
}

/// All scenarios, in run order.
pub fn all() -> Vec<Scenario> {
    vec![
        // A tiny fabricated crash at 0x1000000 so the run has something to dump and can pass.
        Scenario::new(
            "boot-echo",
            "PVH boot prints entered, parsed options and e820, exits with the pass code",
            "reset_devices elfcorehdr=0x1000000 rkdump.action=poweroff rkdump.exit=qemu",
        )
        .crash(Layout::Tiny)
        .com2()
        .line("`rkdump: entered`", "entered")
        .line("boot source reported as pvh", "boot source=pvh")
        .line(
            "the command line echoed verbatim",
            "cmdline \"reset_devices elfcorehdr=0x1000000 rkdump.action=poweroff rkdump.exit=qemu\"",
        )
        .line("reset_devices parsed", "option reset_devices=yes")
        .line("elfcorehdr parsed as 0x1000000", "option elfcorehdr=0x1000000")
        .line("action parsed as poweroff", "option action=poweroff")
        .line("reset policy auto (reset_devices present)", "option reset=auto")
        // 256 MiB guest: QEMU reports low RAM 0..0x9fbff and RAM from 1 MiB to the top.
        .line(
            "e820 RAM from 1 MiB to just below 256 MiB",
            "e820 0x0000000000100000-0x000000000ffdefff ram",
        )
        .line("no initrd reported", "initrd none")
        .line("the tiny dump completed", "dump complete bytes=")
        // No dump option on this command line: rkdump's defaults apply (the fabricated
        // VMCOREINFO lacks the filter's keys, so level 31 falls back to level 1).
        .expect("default format kdump with lzo", |c| {
            c.any(|l| l.starts_with("dump start ") && l.ends_with(" format=kdump compress=lzo"))
        })
        .line(
            "default level 31 asked",
            "error: filter: level 31 not applied: ",
        )
        .exit(Exit::Pass, "QEMU exit code 33 (pass)")
        .check(serial_kdump_file),
        Scenario::new(
            "poweroff",
            "rkdump.action=poweroff enters ACPI S5 and QEMU exits by itself",
            "rkdump.action=poweroff",
        )
        .expect("finish line names poweroff", |c| {
            c.any(|l| l.starts_with("finish ") && l.ends_with("action=poweroff"))
        })
        .expect("ACPI PM1 control block found through the RSDP", |c| {
            c.any(|l| l.starts_with("acpi rsdp=") && l.contains("pm1a_cnt=0x"))
        })
        .exit(Exit::Code(0), "QEMU exited 0 (ACPI S5 power-off)"),
        Scenario::new(
            "reboot",
            "default action resets the machine (QEMU -no-reboot exits)",
            "console=ttyS0",
        )
        .expect("finish line names reboot", |c| {
            c.any(|l| l.starts_with("finish ") && l.ends_with("action=reboot"))
        })
        .exit(Exit::Code(0), "QEMU exited 0 on reset (-no-reboot)"),
        selftest(
            "selftest-pagefault",
            "a deliberate #PF prints the exception report, then follows rkdump.action",
            "rkdump.selftest=pagefault rkdump.exit=qemu rkdump.action=halt",
            "14 (#PF)",
        ),
        selftest(
            "selftest-divide",
            "a deliberate #DE is reported, never a silent triple fault",
            "rkdump.selftest=divide rkdump.exit=qemu rkdump.action=halt",
            "0 (#DE)",
        ),
        // Four vCPUs plus a hot-pluggable slot QEMU lists as a disabled MADT entry, and the one
        // kexec would name as the old boot CPU held back: the other two APs come up through
        // INIT-SIPI-SIPI and each hashes its share of a buffer, which the BSP hashes again
        // (kernel/src/smp.rs `selftest`).
        Scenario::new(
            "smp-checksum",
            "woken APs run their share of a checksum job and match the BSP's own result",
            "console=ttyS0 rkdump.cpus=all disable_cpu_apicid=2 rkdump.selftest=smp rkdump.exit=qemu rkdump.action=poweroff",
        )
        .qemu_args(&["-smp", "4,maxcpus=5"])
        .line(
            "three CPUs online; APIC ID 2 held back by disable_cpu_apicid, the empty slot 4 absent",
            "cpus online=3 asked=all skipped=2:disable_cpu_apicid,4:absent",
        )
        .line(
            "every chunk hashed by its CPU, all three ran in both rounds, no mismatch; the second \
             round reached APs halted while idle through the wake-up NMI",
            "smp selftest cpus=3 chunks=64 ran-on=3 mismatches=0 woken=yes",
        )
        .exit(Exit::Pass, "QEMU exit code 33 (pass)"),
        // A CPU that never comes up (test fault: INIT but no STARTUP) is left out after its
        // 100 ms and the job runs on the others without waiting for it.
        Scenario::new(
            "smp-cpu-timeout",
            "an AP that does not check in within 100 ms is left out and nothing waits on it",
            "console=ttyS0 rkdump.cpus=all rkdump.fault=nosipi:1 rkdump.selftest=smp rkdump.exit=qemu rkdump.action=poweroff",
        )
        .qemu_args(&["-smp", "3"])
        .line(
            "the test fault withheld the STARTUP IPI",
            "note: smp: test fault: no STARTUP IPI to APIC ID 1",
        )
        .line(
            "APIC ID 1 left out for its timeout, APIC ID 2 up",
            "cpus online=2 asked=all skipped=1:timeout",
        )
        .line(
            "the job ran on the two CPUs that came up",
            "smp selftest cpus=2 chunks=64 ran-on=2 mismatches=0 woken=yes",
        )
        .exit(Exit::Pass, "QEMU exit code 33 (pass)"),
        // Negative control: rkdump.cpus=1 wakes nothing, so the same job runs on the BSP alone.
        Scenario::new(
            "smp-one-cpu",
            "rkdump.cpus=1 wakes no AP: the job runs on the crashing CPU alone",
            "console=ttyS0 rkdump.cpus=1 rkdump.selftest=smp rkdump.exit=qemu rkdump.action=poweroff",
        )
        .qemu_args(&["-smp", "2"])
        .line(
            "one CPU online, the AP left out by the limit",
            "cpus online=1 asked=1 skipped=1:limit",
        )
        .line(
            "no chunk ran on an AP",
            "smp selftest cpus=1 chunks=64 ran-on=1 mismatches=0 woken=n/a",
        )
        .exit(Exit::Pass, "QEMU exit code 33 (pass)"),
        // Empty command line: defaults, defined end (reboot, QEMU exits).
        Scenario::new(
            "bad-cmdline",
            "empty, unknown and malformed parameters give clear lines and a defined end",
            "",
        )
        .in_subdir("empty")
        .line("empty command line echoed", "cmdline \"\"")
        .line(
            "missing elfcorehdr reported as an error",
            "error: no elfcorehdr= on the command line",
        )
        .then_boot(
            "malformed",
            "quiet irqpoll nr_cpus=1 rkdump.bogus=1 elfcorehdr=zz rkdump.action=sideways rkdump.exit=qemu",
        )
        .line(
            "unknown parameter noted, not an error",
            "note: unknown parameter \"irqpoll\" ignored",
        )
        .line(
            "unknown rkdump.* parameter noted",
            "note: unknown parameter \"rkdump.bogus=1\" ignored",
        )
        .line(
            "malformed elfcorehdr is an error line",
            "error: malformed \"elfcorehdr=zz\" ignored",
        )
        .line(
            "malformed action is an error line",
            "error: malformed \"rkdump.action=sideways\" ignored",
        )
        .line(
            "malformed action falls back to the default",
            "option action=reboot",
        )
        .exit(Exit::Fail, "run ends with failure (nothing to dump)"),
        serial_dump(
            "serial-dump-low",
            "fabricated crash below 4 GiB dumped over COM2; rkdumpctl recv output is byte-identical to the host's vmcore",
            Layout::Low,
        ),
        serial_dump(
            "serial-dump-high",
            "fabricated crash with a RAM range above 4 GiB, same byte-for-byte check",
            Layout::High,
        ),
        // rkdump.level=31 on a crash whose VMCOREINFO lacks what the filter needs: one error line
        // naming the key, then the whole dump, byte for byte.
        serial_dump_with(
            "filter-fallback",
            "rkdump.level=31 without the VMCOREINFO keys it needs falls back to level 1 with an error; the vmcore is byte-identical",
            Layout::Low,
            "console=ttyS0 elfcorehdr={elfcorehdr} rkdump.target=serial rkdump.exit=qemu rkdump.action=poweroff rkdump.level=31 rkdump.format=elf",
        )
        .line(
            "fallback error naming the missing key",
            "error: filter: level 31 not applied: VMCOREINFO has no SYMBOL(init_top_pgt); dumping at level 1",
        )
        .line("level 1 in effect", "filter level=1 "),
        // QEMU's UART is as fast as its backend; the 115200-baud line is the harness's slow
        // reader (11520 bytes/s, 8N1), so the guest's UART stays full as on hardware.
        Scenario::new(
            "serial-progress-115200",
            "a ~25 s serial dump through a 115200-baud line prints progress at least every 2 s of guest time",
            "console=ttyS0 elfcorehdr={elfcorehdr} rkdump.target=serial rkdump.serial_baud=115200 rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Serial115200)
        .crash_memory()
        .com2_line(11_520)
        .timeouts(2)
        .exit(Exit::Pass, "QEMU exit code 33 (pass)")
        .check(progress_every_2s)
        .check(serial_vmcore_identical),
        // A header-shaped blob with a broken e_phentsize, loaded where elfcorehdr= points.
        Scenario::new(
            "corrupt-elfcorehdr",
            "a corrupted elfcorehdr gives rkdump: error: and a defined end",
            "elfcorehdr=0x1000000 rkdump.exit=qemu rkdump.action=poweroff",
        )
        .file("corrupt-hdr.bin", corrupt_header)
        .qemu_args(&[
            "-device",
            "loader,file={dir}/corrupt-hdr.bin,addr=0x1000000,force-raw=on",
        ])
        .line(
            "typed rejection of the corrupted header",
            "error: elfcorehdr at 0x1000000 unusable",
        )
        .exit(Exit::Fail, "QEMU exit code 35 (failure reported)"),
        // Addresses no CPU here can map, on the command line: each is a typed error and the end
        // rkdump.action names; the unfixed kernel took a #PF (RSVD) and a #GP here.
        Scenario::new(
            "foreign-address-cmdline",
            "elfcorehdr= beyond the CPU's physical address width, non-canonical or wrapping, and acpi_rsdp= beyond the width: rkdump: error: and a defined end, never an exception",
            "elfcorehdr=0x7ffffffff000 rkdump.exit=qemu rkdump.action=poweroff",
        )
        .in_subdir("beyond-width")
        .line(
            "elfcorehdr beyond the physical address width refused",
            "error: elfcorehdr at 0x7ffffffff000 unusable: range 0x7ffffffff000+0x40 is beyond the physical address limit",
        )
        .check(no_exception)
        .line("the end follows rkdump.action", "finish outcome=failed action=poweroff")
        .exit(Exit::Fail, "QEMU exit code 35 (failure reported)")
        .then_boot(
            "non-canonical",
            "elfcorehdr=0xffffffffffff rkdump.exit=qemu rkdump.action=poweroff",
        )
        .line(
            "non-canonical elfcorehdr refused",
            "error: elfcorehdr at 0xffffffffffff unusable: range 0xffffffffffff+0x40 is beyond the physical address limit",
        )
        .check(no_exception)
        .line("the end follows rkdump.action", "finish outcome=failed action=poweroff")
        .exit(Exit::Fail, "QEMU exit code 35 (failure reported)")
        .then_boot(
            "wraps",
            "elfcorehdr=0xffffffffffffffc0 rkdump.exit=qemu rkdump.action=halt",
        )
        .line(
            "an elfcorehdr whose header wraps past 2^64 refused",
            "error: elfcorehdr at 0xffffffffffffffc0 unusable: range 0xffffffffffffffc0+0x40 wraps",
        )
        .check(no_exception)
        .line("the end follows rkdump.action", "finish outcome=failed action=halt")
        .exit(Exit::Fail, "QEMU exit code 35 (failure reported)")
        .then_boot(
            "acpi-rsdp",
            "acpi_rsdp=0x7ffffffff000 rkdump.exit=qemu rkdump.action=poweroff",
        )
        .expect("acpi_rsdp= beyond the width ignored; the RSDP found by the BIOS scan", |c| {
            c.any(|l| l.starts_with("acpi rsdp=0xf") && l.contains("pm1a_cnt=0x"))
        })
        .check(no_exception)
        .line("the end follows rkdump.action", "finish outcome=failed action=poweroff")
        .exit(Exit::Fail, "QEMU exit code 35 (nothing to dump)"),
        // A fabricated header naming PT_LOADs and a PT_NOTE no CPU here can map, next to good ones.
        serial_dump(
            "foreign-address-phdrs",
            "PT_LOADs and a PT_NOTE beyond the CPU's width, non-canonical or wrapping are reported and left out; the good PT_LOADs are dumped byte for byte",
            Layout::Foreign,
        )
        .check(|c| {
            let dropped: Vec<&str> = c
                .outcome
                .rk_lines()
                .filter(|l| l.starts_with("error: elfcorehdr phdr ") && l.ends_with("left out of the dump"))
                .collect();
            for (note, start, len) in FOREIGN_PHDRS {
                let what = format!("({} {start:#x}+{len:#x})", if note { "PT_NOTE" } else { "PT_LOAD" });
                holds(
                    dropped.iter().any(|l| l.contains(&what)),
                    format!("an rkdump: error: line for the foreign phdr {what}"),
                )?;
            }
            holds(
                dropped.len() == FOREIGN_PHDRS.len(),
                format!("exactly {} phdrs left out: {dropped:?}", FOREIGN_PHDRS.len()),
            )
        })
        .check(no_exception),
        // acpi_rsdp= names fabricated tables whose pointers are foreign: each refused table is
        // skipped like an invalid one, and the run goes on to dump.
        Scenario::new(
            "foreign-address-acpi",
            "ACPI table pointers beyond the CPU's width or non-canonical (XSDT entries, the XSDT itself) are skipped, never mapped; the dump still completes",
            "elfcorehdr={elfcorehdr} acpi_rsdp=0x1100000 rkdump.target=serial rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .in_subdir("tables")
        .crash(Layout::Tiny)
        .com2()
        .file("acpi.bin", acpi_foreign_tables)
        .qemu_args(&["-device", "loader,file={dir}/acpi.bin,addr=0x1100000,force-raw=on"])
        .expect("the fabricated RSDP is used; no FADT behind the foreign entries", |c| {
            c.any(|l| l.starts_with("acpi rsdp=0x1100000 pm1a_cnt=none"))
        })
        .check(no_exception)
        .line("the dump completes", "dump complete bytes=")
        .exit(Exit::Pass, "QEMU exit code 33 (pass)")
        .then_boot(
            "xsdt",
            "elfcorehdr={elfcorehdr} acpi_rsdp=0x1100000 rkdump.target=serial rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .com2()
        .file("acpi.bin", acpi_foreign_xsdt)
        .qemu_args(&["-device", "loader,file={dir}/acpi.bin,addr=0x1100000,force-raw=on"])
        .line(
            "an XSDT beyond the width makes the tables unreadable, as an error line",
            "error: ACPI tables unreadable",
        )
        .check(no_exception)
        .line("the dump completes", "dump complete bytes=")
        .exit(Exit::Pass, "QEMU exit code 33 (pass)"),
        disk_dump(
            "disk-virtio",
            "fabricated crash dumped to a labelled virtio-blk disk behind a root port; an unlabelled disk is untouched; rkdumpctl save is byte-identical",
            Ctrl::Virtio,
        ),
        disk_dump("disk-nvme", "the same on NVMe", Ctrl::Nvme),
        disk_dump(
            "disk-ahci",
            "the same on the q35 AHCI controller",
            Ctrl::Ahci,
        ),
        Scenario::new(
            "disk-bad-label",
            "a label with a bad CRC is refused with rkdump: error: and the dump falls back to serial",
            "elfcorehdr={elfcorehdr} rkdump.target=disk rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 16)
        .corrupt_label()
        .com2()
        .line(
            "rkdump: error: for the refused label",
            "error: no usable labelled dump disk",
        )
        .serial_fallback("fell back to serial")
        .dump_disk_untouched("the disk with the bad label is not written")
        .exit(Exit::Pass, "dump completed over serial (exit 33)"),
        // The dump disk is the second NVMe controller: bus 2 behind the second root port.
        Scenario::new(
            "disk-never-ready",
            "an NVMe dump disk that never becomes ready (test fault switch) costs its timeout, is reported, and the dump falls back to serial",
            "elfcorehdr={elfcorehdr} rkdump.fault=dead:02:00.0 rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Nvme, 16)
        .com2()
        .expect("the never-ready NVMe reported as an error and skipped", |c| {
            c.any(|l| l.starts_with("error: nvme 0000:02:00.0:") && l.contains("skipped after"))
        })
        .serial_fallback("fell back to serial")
        .dump_disk_untouched("nothing written to the faulty disk")
        .exit(Exit::Pass, "dump completed (exit 33)"),
        Scenario::new(
            "reinit-flr",
            "rkdump.reset=flr: FLR on virtio-blk behind a root port, proven by read-back, BARs restored, then the dump works",
            "elfcorehdr={elfcorehdr} reset_devices rkdump.reset=flr rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 16)
        .check(reinit_lines_contain(
            "FLR proven by read-back and BARs restored",
            &["-> flr,", "ok", "proof:", "restored"],
        ))
        .expect("the dump completes on the FLR-reset disk", |c| {
            c.any(|l| l.starts_with("dump complete") && l.contains("target=disk:"))
        })
        .exit(Exit::Pass, "exit 33"),
        Scenario::new(
            "reinit-pm",
            "rkdump.reset=pm on e1000e behind a root port: PM D3hot->D0 proves nothing in QEMU and is reported as such",
            "elfcorehdr={elfcorehdr} reset_devices rkdump.reset=pm rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .qemu_args(&[
            "-device",
            "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1",
            "-netdev",
            "user,id=n0,restrict=on",
            "-device",
            "e1000e,netdev=n0,bus=rp0",
        ])
        .com2()
        .check(|c| {
            let l = c.reinit_line("0000:01:00.0");
            holds(
                l.contains("8086:10d3") && l.contains("pm: no effect"),
                format!("PM reset reported ineffective on e1000e ({l})"),
            )
        })
        .exit(Exit::Pass, "the run still completes (exit 33)"),
        Scenario::new(
            "reinit-deny",
            "a denied device is quiesced but never reset or probed; the dump goes elsewhere",
            "elfcorehdr={elfcorehdr} reset_devices rkdump.deny=1af4:1042 rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 16)
        .com2()
        .check(reinit_lines_contain(
            "denied, quiesced only",
            &["-> none", "denied"],
        ))
        .expect("a denied disk is never probed", |c| {
            c.outcome
                .rk_lines()
                .filter(|l| l.starts_with("disk 0000:0"))
                .all(|l| l.contains("not probed"))
        })
        .dump_disk_untouched("the denied (labelled) disk is not written")
        .serial_fallback("the dump goes to serial instead")
        .exit(Exit::Pass, "exit 33"),
        Scenario::new(
            "disk-too-small",
            "a disk smaller than the dump gets a truncated record, refused by save unless --partial",
            "elfcorehdr={elfcorehdr} rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Low)
        .crash_memory()
        .disks(Ctrl::Virtio, 4)
        .timeouts(2)
        .expect("truncation reported as an error line", |c| {
            c.any(|l| l.starts_with("error: dump of") && l.contains("does not fit"))
        })
        .check(|c| {
            let out = c.dir.join("vmcore");
            let refused = c.ctl().save(&c.disks()?.dump, &out, false).is_err();
            holds(refused, "rkdumpctl save refuses the truncated dump")
        })
        .check(|c| {
            let crash = c.crash()?;
            let out = c.dir.join("vmcore");
            let partial = c
                .ctl()
                .save(&c.disks()?.dump, &out, true)
                .map_err(|e| format!("save --partial failed: {e}"))?;
            let got = std::fs::read(&out).map_err(|e| e.to_string())?;
            holds(
                !got.is_empty() && crash.expected.starts_with(&got),
                "the partial vmcore is a prefix of the expected one",
            )?;
            println!(
                "    truncated dump: {} of {} bytes; {}",
                got.len(),
                crash.expected.len(),
                partial.trim()
            );
            Ok(())
        }),
        part_dump(
            "part-gpt-virtio",
            "a GPT disk (sfdisk) with three partitions, the middle one labelled: the dump goes inside it, both GPTs, the other partitions and the gaps are unchanged, save is byte-identical",
            Ctrl::Virtio,
        ),
        part_dump("part-gpt-nvme", "the same on NVMe", Ctrl::Nvme),
        Scenario::new(
            "target-list-fallback",
            "rkdump.target=disk,serial with no whole-disk label (only a labelled partition, which `disk` does not take): the console says why disk was skipped, the dump goes to serial, the disk is untouched",
            "elfcorehdr={elfcorehdr} rkdump.target=disk,serial rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 32)
        .partitioned()
        .com2()
        .line("the target order on the console", "targets disk,serial:ttyS1")
        .line(
            "the skipped target and the next one, as an error line",
            "error: no usable labelled dump disk for target disk; falling back to serial:ttyS1",
        )
        .serial_fallback("the dump went to serial")
        .dump_disk_untouched("the partitioned disk is not written")
        .exit(Exit::Pass, "dump completed over serial (exit 33)")
        .check(serial_vmcore_identical),
        Scenario::new(
            "target-midway-fallback",
            "the labelled partition's disk fails writes after the record header (QEMU blkdebug): the console says the target failed midway and the dump starts afresh on serial; nothing outside the partition changes",
            "elfcorehdr={elfcorehdr} rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
        )
        .crash(Layout::Tiny)
        .disks(Ctrl::Virtio, 16)
        .partitioned()
        // Partition 2 starts at sector 10240; its record header is at +1 MiB (sectors
        // 12288-12295) and the vmcore from sector 12296: every write covering that fails.
        .dump_disk_fault(
            "[inject-error]\nevent = \"write_aio\"\nerrno = \"5\"\nsector = \"12296\"\nonce = \"off\"\n",
        )
        .com2()
        .expect("the partition target started", |c| {
            c.any(|l| l.starts_with("dump start bytes=") && l.ends_with("target=part:0000:02:00.0/2"))
        })
        .expect("the failure midway, named, and the fresh dump's target", |c| {
            c.any(|l| {
                l.starts_with("error: target disk/part: dump to part:0000:02:00.0/2 failed midway: ")
                    && l.ends_with("; falling back to serial:ttyS1 for a fresh dump")
            })
        })
        .serial_fallback("the fresh dump went to serial")
        .exit(Exit::Pass, "dump completed over serial (exit 33)")
        .check(serial_vmcore_identical)
        .outside_partition_untouched(),
    ]
}

/// A fabricated crash dumped into the labelled middle partition of a GPT disk on `ctrl`.
fn part_dump(name: &'static str, about: &'static str, ctrl: Ctrl) -> Scenario {
    Scenario::new(
        name,
        about,
        "elfcorehdr={elfcorehdr} rkdump.exit=qemu rkdump.action=poweroff rkdump.level=0 rkdump.format=elf",
    )
    .crash(Layout::Low)
    .crash_memory()
    .disks(ctrl, 64)
    .partitioned()
    .timeouts(2)
    .expect(
        "the GPT was read: three partitions, both headers valid",
        |c| {
            c.any(|l| {
                l.starts_with("disk 0000:02:00.0 ")
                    && l.ends_with(": GPT partition table, 3 partition(s)")
            })
        },
    )
    .expect("partition 1 (data) refused for its missing label", |c| {
        c.any(|l| l.contains(" partition 1: no rkdump label (bad magic)"))
    })
    .expect("partition 2 found by its label", |c| {
        c.any(|l| l.starts_with("part 0000:02:00.0/2 ") && l.contains("label ok"))
    })
    .expect("the dump started on the partition", |c| {
        c.any(|l| l.starts_with("dump start bytes=") && l.ends_with("target=part:0000:02:00.0/2"))
    })
    .check(|c| {
        let complete = format!("dump complete bytes={}", c.expected_len());
        holds(c.has(&complete), "dump complete with the full size")
    })
    .exit(Exit::Pass, "QEMU exit code 33 (pass)")
    .outside_partition_untouched()
    .check(|c| {
        let d = c.disks()?;
        holds(
            sha256(&d.other)? == d.other_before,
            "the unlabelled disk's SHA-256 is unchanged",
        )
    })
    .check(disk_vmcore_identical)
}

/// Where the fabricated ACPI tables go (free RAM between the fabricated crash's pieces).
const FAKE_ACPI: u64 = 0x0110_0000;

/// A valid ACPI 2.0 RSDP at [`FAKE_ACPI`] naming an XSDT at `xsdt`, then (at +0x100) a valid
/// XSDT whose entries are `entries`.
fn fake_acpi(xsdt: u64, entries: &[u64]) -> Vec<u8> {
    fn fix_checksum(bytes: &mut [u8], at: usize) {
        let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        bytes[at] = bytes[at].wrapping_sub(sum);
    }
    let mut blob = vec![0u8; 0x200];
    let rsdp = &mut blob[..36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(b"RKDUMP");
    rsdp[15] = 2; // revision: use the XSDT
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&xsdt.to_le_bytes());
    fix_checksum(&mut rsdp[..20], 8);
    fix_checksum(rsdp, 32);
    let len = 36 + 8 * entries.len();
    let x = &mut blob[0x100..0x100 + len];
    x[..4].copy_from_slice(b"XSDT");
    x[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    x[8] = 1;
    x[10..16].copy_from_slice(b"RKDUMP");
    x[16..24].copy_from_slice(b"FOREIGN ");
    for (i, e) in entries.iter().enumerate() {
        x[36 + 8 * i..44 + 8 * i].copy_from_slice(&e.to_le_bytes());
    }
    fix_checksum(x, 9);
    blob
}

/// The XSDT names tables beyond the CPU's width and at a non-canonical address.
fn acpi_foreign_tables() -> Vec<u8> {
    fake_acpi(FAKE_ACPI + 0x100, &[0x7fff_ffff_0000, 0xffff_ffff_f000])
}

/// The RSDP names an XSDT beyond the CPU's width.
fn acpi_foreign_xsdt() -> Vec<u8> {
    fake_acpi(0x7fff_ffff_0000, &[])
}

/// A header-shaped blob with a broken e_phentsize.
fn corrupt_header() -> Vec<u8> {
    let mut blob = vec![0u8; 4096];
    blob[..4].copy_from_slice(b"\x7fELF");
    blob[4] = 2;
    blob[5] = 1;
    blob[6] = 1;
    blob[16] = 4; // ET_CORE
    blob[18] = 62; // EM_X86_64
    blob[20] = 1;
    blob[32] = 64; // e_phoff
    blob[52] = 64; // e_ehsize
    blob[54] = 55; // e_phentsize: wrong on purpose
    blob[56] = 3; // e_phnum
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gap check can fail: the old kernel's one line per 64 KiB at 115200 baud (5.7 s).
    #[test]
    fn progress_timing_measures_guest_gaps() {
        let new = [
            "dump start bytes=335872 target=serial:ttyS1",
            "progress 5% 0.0 MiB/s eta=19s ms=990",
            "note: something else ms=99999",
            "progress 8% 0.0 MiB/s eta=23s ms=1990",
            "progress 100% 0.0 MiB/s eta=0s ms=3500",
            "dump complete bytes=335872 ms=3501 target=serial:ttyS1",
        ];
        let t = progress_timing(new.into_iter()).unwrap();
        assert_eq!(
            t,
            ProgressTiming {
                lines: 3,
                max_gap_ms: 1510,
                total_ms: 3501
            }
        );
        let old = [
            "progress 19% 0.0 MiB/s eta=23s ms=5700",
            "progress 39% 0.0 MiB/s eta=17s ms=11400",
            "dump complete bytes=335872 ms=11500 target=serial:ttyS1",
        ];
        assert_eq!(progress_timing(old.into_iter()).unwrap().max_gap_ms, 5700);
        let e = progress_timing(["progress 5% 0.1 MiB/s eta=3s"].into_iter()).unwrap_err();
        assert!(e.contains("no ms="), "{e}");
        assert!(progress_timing(new[..5].iter().copied()).is_err());
    }
}
