//! The QEMU scenario list: each boots `rkdump.elf` with a command line (and optional extra
//! devices or memory contents), then checks the console and the exit status. A scenario passes
//! only if every check holds; failures carry the reason and the console tail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fabricate;
use crate::qemu::{self, EXIT_FAIL, EXIT_PASS, Outcome, Qemu};

/// Inputs shared by all scenarios.
#[derive(Clone, Debug)]
pub struct Env {
    /// The PVH image.
    pub elf: PathBuf,
    /// The bzImage.
    pub bzimage: PathBuf,
    /// Workspace target directory (artefacts go below `scenarios/`).
    pub target: PathBuf,
    /// The host tool, for `recv`/`save`/`inspect`.
    pub rkdumpctl: PathBuf,
}

/// A scenario's verdict.
#[derive(Debug)]
pub struct Verdict {
    /// Scenario name.
    pub name: &'static str,
    /// `Ok` or the failure reason (with console tail).
    pub result: Result<(), String>,
    /// Wall time.
    pub elapsed: Duration,
}

type Check = fn(&Env, &Path) -> Result<(), String>;

/// One scenario.
pub struct Scenario {
    /// Name used by `--scenario` and in reports.
    pub name: &'static str,
    /// What it proves.
    pub about: &'static str,
    /// The test body.
    pub run: Check,
}

/// All scenarios, in run order.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "boot-echo",
            about: "PVH boot prints entered, parsed options and e820, exits with the pass code",
            run: boot_echo,
        },
        Scenario {
            name: "poweroff",
            about: "rkdump.action=poweroff enters ACPI S5 and QEMU exits by itself",
            run: poweroff,
        },
        Scenario {
            name: "reboot",
            about: "default action resets the machine (QEMU -no-reboot exits)",
            run: reboot,
        },
        Scenario {
            name: "selftest-pagefault",
            about: "a deliberate #PF prints the exception report, then follows rkdump.action",
            run: selftest_pagefault,
        },
        Scenario {
            name: "selftest-divide",
            about: "a deliberate #DE is reported, never a silent triple fault",
            run: selftest_divide,
        },
        Scenario {
            name: "bad-cmdline",
            about: "empty, unknown and malformed parameters give clear lines and a defined end",
            run: bad_cmdline,
        },
        Scenario {
            name: "serial-dump-low",
            about: "fabricated crash below 4 GiB dumped over COM2; rkdumpctl recv output is byte-identical to the host's vmcore",
            run: serial_dump_low,
        },
        Scenario {
            name: "serial-dump-high",
            about: "fabricated crash with a RAM range above 4 GiB, same byte-for-byte check",
            run: serial_dump_high,
        },
        Scenario {
            name: "corrupt-elfcorehdr",
            about: "a corrupted elfcorehdr gives rkdump: error: and a defined end",
            run: corrupt_elfcorehdr,
        },
        Scenario {
            name: "disk-virtio",
            about: "fabricated crash dumped to a labelled virtio-blk disk behind a root port; an unlabelled disk is untouched; rkdumpctl save is byte-identical",
            run: disk_virtio,
        },
        Scenario {
            name: "disk-nvme",
            about: "the same on NVMe",
            run: disk_nvme,
        },
        Scenario {
            name: "disk-ahci",
            about: "the same on the q35 AHCI controller",
            run: disk_ahci,
        },
        Scenario {
            name: "disk-bad-label",
            about: "a label with a bad CRC is refused with rkdump: error: and the dump falls back to serial",
            run: disk_bad_label,
        },
        Scenario {
            name: "disk-never-ready",
            about: "an NVMe dump disk that never becomes ready (test fault switch) costs its timeout, is reported, and the dump falls back to serial",
            run: disk_never_ready,
        },
        Scenario {
            name: "reinit-flr",
            about: "rkdump.reset=flr: FLR on virtio-blk behind a root port, proven by read-back, BARs restored, then the dump works",
            run: reinit_flr,
        },
        Scenario {
            name: "reinit-pm",
            about: "rkdump.reset=pm on e1000e behind a root port: PM D3hot->D0 proves nothing in QEMU and is reported as such",
            run: reinit_pm,
        },
        Scenario {
            name: "reinit-deny",
            about: "a denied device is quiesced but never reset or probed; the dump goes elsewhere",
            run: reinit_deny,
        },
        Scenario {
            name: "disk-too-small",
            about: "a disk smaller than the dump gets a truncated record, refused by save unless --partial",
            run: disk_too_small,
        },
    ]
}

/// Runs the named scenarios (all when `only` is empty) and returns verdicts; an unknown name is
/// a failed verdict, so a typo never passes silently.
pub fn run(env: &Env, only: &[String]) -> Vec<Verdict> {
    let mut out = Vec::new();
    let known = all();
    for name in only {
        if !known.iter().any(|s| s.name == name) {
            println!("scenario {name} ... FAILED (no such scenario)");
            out.push(Verdict {
                name: "unknown",
                result: Err(format!("no scenario named {name}")),
                elapsed: Duration::ZERO,
            });
        }
    }
    for s in all() {
        if !only.is_empty() && !only.iter().any(|o| o == s.name) {
            continue;
        }
        let start = std::time::Instant::now();
        let result = qemu::artefact_dir(&env.target, s.name).and_then(|dir| (s.run)(env, &dir));
        let v = Verdict {
            name: s.name,
            result,
            elapsed: start.elapsed(),
        };
        match &v.result {
            Ok(()) => println!(
                "scenario {} ... ok ({:.1} s)",
                v.name,
                v.elapsed.as_secs_f64()
            ),
            Err(e) => println!(
                "scenario {} ... FAILED ({:.1} s)\n{e}",
                v.name,
                v.elapsed.as_secs_f64()
            ),
        }
        out.push(v);
    }
    out
}

/// Generous: TCG timing varies by 25 % and more with load.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

fn boot(env: &Env, dir: &Path, append: &str, memory_mib: u32) -> Result<Outcome, String> {
    let q = Qemu::q35(memory_mib)
        .kernel(&env.elf, append)
        .timeout(BOOT_TIMEOUT);
    run_logged(&q, dir)
}

/// Runs and keeps the command line and console under the scenario directory.
pub fn run_logged(q: &Qemu, dir: &Path) -> Result<Outcome, String> {
    let _ = std::fs::write(dir.join("qemu-cmdline.txt"), q.command_line());
    let o = q.run()?;
    let log: String = o
        .console
        .iter()
        .map(|l| format!("[{:8.3}] {}\n", l.at.as_secs_f64(), l.text))
        .collect();
    let _ = std::fs::write(dir.join("console.log"), log);
    let _ = std::fs::write(dir.join("qemu-stderr.log"), &o.stderr);
    Ok(o)
}

/// Fails with context unless `cond`.
pub fn ensure(cond: bool, what: &str, o: &Outcome) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!(
            "  check failed: {what}\n  exit={:?} timed_out={} elapsed={:.1}s\n  console tail:\n{}  qemu stderr: {}",
            o.exit_code,
            o.timed_out,
            o.elapsed.as_secs_f64(),
            o.tail(25),
            o.stderr.trim()
        ))
    }
}

/// Every run must reach a defined end: no timeout, and `rkdump: finish` printed.
fn defined_end(o: &Outcome) -> Result<(), String> {
    ensure(!o.timed_out, "QEMU ended by itself before the timeout", o)?;
    ensure(
        o.rk_lines().any(|l| l.starts_with("finish ")),
        "a `rkdump: finish` line",
        o,
    )
}

fn has(o: &Outcome, prefix: &str) -> bool {
    o.rk_lines().any(|l| l.starts_with(prefix))
}

fn boot_echo(env: &Env, dir: &Path) -> Result<(), String> {
    // A tiny fabricated crash at 0x1000000 so the run has something to dump and can pass.
    let crash = fabricate::build(dir, fabricate::Layout::Tiny)?;
    let append = "reset_devices elfcorehdr=0x1000000 rkdump.action=poweroff rkdump.exit=qemu";
    let q = Qemu::q35(256)
        .kernel(&env.elf, append)
        .com2_file(&dir.join("com2.bin"))
        .args(crash.qemu_args.clone())
        .timeout(BOOT_TIMEOUT);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    ensure(has(&o, "entered"), "`rkdump: entered`", &o)?;
    ensure(
        has(&o, "boot source=pvh"),
        "boot source reported as pvh",
        &o,
    )?;
    ensure(
        has(
            &o,
            "cmdline \"reset_devices elfcorehdr=0x1000000 rkdump.action=poweroff rkdump.exit=qemu\"",
        ),
        "the command line echoed verbatim",
        &o,
    )?;
    ensure(
        has(&o, "option reset_devices=yes"),
        "reset_devices parsed",
        &o,
    )?;
    ensure(
        has(&o, "option elfcorehdr=0x1000000"),
        "elfcorehdr parsed as 0x1000000",
        &o,
    )?;
    ensure(
        has(&o, "option action=poweroff"),
        "action parsed as poweroff",
        &o,
    )?;
    ensure(
        has(&o, "option reset=auto"),
        "reset policy auto (reset_devices present)",
        &o,
    )?;
    // 256 MiB guest: QEMU reports low RAM 0..0x9fbff and RAM from 1 MiB to the top.
    ensure(
        has(&o, "e820 0x0000000000100000-0x000000000ffdefff ram"),
        "e820 RAM from 1 MiB to just below 256 MiB",
        &o,
    )?;
    ensure(has(&o, "initrd none"), "no initrd reported", &o)?;
    ensure(
        has(&o, "dump complete bytes="),
        "the tiny dump completed",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_PASS),
        "QEMU exit code 33 (pass)",
        &o,
    )
}

fn poweroff(env: &Env, dir: &Path) -> Result<(), String> {
    let o = boot(env, dir, "rkdump.action=poweroff", 256)?;
    defined_end(&o)?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("finish ") && l.ends_with("action=poweroff")),
        "finish line names poweroff",
        &o,
    )?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("acpi rsdp=") && l.contains("pm1a_cnt=0x")),
        "ACPI PM1 control block found through the RSDP",
        &o,
    )?;
    ensure(
        o.exit_code == Some(0),
        "QEMU exited 0 (ACPI S5 power-off)",
        &o,
    )
}

fn reboot(env: &Env, dir: &Path) -> Result<(), String> {
    let o = boot(env, dir, "console=ttyS0", 256)?;
    defined_end(&o)?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("finish ") && l.ends_with("action=reboot")),
        "finish line names reboot",
        &o,
    )?;
    ensure(
        o.exit_code == Some(0),
        "QEMU exited 0 on reset (-no-reboot)",
        &o,
    )
}

fn selftest(env: &Env, dir: &Path, which: &str, vector: &str) -> Result<(), String> {
    let o = boot(
        env,
        dir,
        &format!("rkdump.selftest={which} rkdump.exit=qemu rkdump.action=halt"),
        256,
    )?;
    defined_end(&o)?;
    ensure(
        has(&o, &format!("error: exception vector={vector}")),
        "exception report with the vector",
        &o,
    )?;
    ensure(
        o.rk_lines().any(|l| l.starts_with("regs rax=")),
        "register dump",
        &o,
    )?;
    ensure(
        has(&o, "finish outcome=failed action=halt"),
        "finish follows rkdump.action after the fault",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_FAIL),
        "QEMU exit code 35 (fail reported)",
        &o,
    )
}

fn selftest_pagefault(env: &Env, dir: &Path) -> Result<(), String> {
    selftest(env, dir, "pagefault", "14 (#PF)")
}

fn selftest_divide(env: &Env, dir: &Path) -> Result<(), String> {
    selftest(env, dir, "divide", "0 (#DE)")
}

fn bad_cmdline(env: &Env, dir: &Path) -> Result<(), String> {
    // Empty command line: defaults, defined end (reboot, QEMU exits).
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
    let o = boot(env, &empty, "", 256)?;
    defined_end(&o)?;
    ensure(has(&o, "cmdline \"\""), "empty command line echoed", &o)?;
    ensure(
        has(&o, "error: no elfcorehdr= on the command line"),
        "missing elfcorehdr reported as an error",
        &o,
    )?;

    let bad = dir.join("malformed");
    std::fs::create_dir_all(&bad).map_err(|e| e.to_string())?;
    let o = boot(
        env,
        &bad,
        "quiet irqpoll nr_cpus=1 rkdump.bogus=1 elfcorehdr=zz rkdump.action=sideways rkdump.exit=qemu",
        256,
    )?;
    defined_end(&o)?;
    ensure(
        has(&o, "note: unknown parameter \"irqpoll\" ignored"),
        "unknown parameter noted, not an error",
        &o,
    )?;
    ensure(
        has(&o, "note: unknown parameter \"rkdump.bogus=1\" ignored"),
        "unknown rkdump.* parameter noted",
        &o,
    )?;
    ensure(
        has(&o, "error: malformed \"elfcorehdr=zz\" ignored"),
        "malformed elfcorehdr is an error line",
        &o,
    )?;
    ensure(
        has(&o, "error: malformed \"rkdump.action=sideways\" ignored"),
        "malformed action is an error line",
        &o,
    )?;
    ensure(
        has(&o, "option action=reboot"),
        "malformed action falls back to the default",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_FAIL),
        "run ends with failure (nothing to dump)",
        &o,
    )
}

fn serial_dump(env: &Env, dir: &Path, layout: fabricate::Layout) -> Result<(), String> {
    let crash = fabricate::build(dir, layout)?;
    let com2 = dir.join("com2.bin");
    let _ = std::fs::remove_file(&com2);
    let append = format!(
        "console=ttyS0 elfcorehdr={:#x} rkdump.target=serial rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(crash.memory_mib)
        .kernel(&env.elf, &append)
        .com2_file(&com2)
        .args(crash.qemu_args.clone())
        .timeout(BOOT_TIMEOUT * 3);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    ensure(
        has(&o, "elfcorehdr addr=0x1000000 phnum="),
        "elfcorehdr summary line",
        &o,
    )?;
    ensure(
        has(
            &o,
            &format!(
                "dump start bytes={} target=serial:ttyS1",
                crash.expected.len()
            ),
        ),
        "dump start with the expected size",
        &o,
    )?;
    ensure(
        o.rk_lines().any(|l| l.starts_with("progress ")),
        "at least one progress line",
        &o,
    )?;
    ensure(
        has(&o, &format!("dump complete bytes={}", crash.expected.len())),
        "dump complete line",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_PASS),
        "QEMU exit code 33 (pass)",
        &o,
    )?;
    let out = dir.join("vmcore");
    let recv = std::process::Command::new(&env.rkdumpctl)
        .arg("recv")
        .arg(&com2)
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| format!("running rkdumpctl: {e}"))?;
    if !recv.status.success() {
        return Err(format!(
            "rkdumpctl recv failed: {}{}",
            String::from_utf8_lossy(&recv.stdout),
            String::from_utf8_lossy(&recv.stderr)
        ));
    }
    let got = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let _ = std::fs::write(dir.join("expected.vmcore"), &crash.expected);
    if got != crash.expected {
        let first = got.iter().zip(&crash.expected).position(|(a, b)| a != b);
        return Err(format!(
            "  vmcore differs from the host model: got {} bytes, expected {}; first difference at {:?}",
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

fn serial_dump_low(env: &Env, dir: &Path) -> Result<(), String> {
    serial_dump(env, dir, fabricate::Layout::Low)
}

fn serial_dump_high(env: &Env, dir: &Path) -> Result<(), String> {
    serial_dump(env, dir, fabricate::Layout::High)
}

fn corrupt_elfcorehdr(env: &Env, dir: &Path) -> Result<(), String> {
    // A header-shaped blob with a broken e_phentsize.
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
    let file = dir.join("corrupt-hdr.bin");
    std::fs::write(&file, &blob).map_err(|e| e.to_string())?;
    let q = Qemu::q35(256)
        .kernel(
            &env.elf,
            "elfcorehdr=0x1000000 rkdump.exit=qemu rkdump.action=poweroff",
        )
        .args([
            "-device".to_string(),
            format!("loader,file={},addr=0x1000000,force-raw=on", file.display()),
        ])
        .timeout(BOOT_TIMEOUT);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    ensure(
        has(&o, "error: elfcorehdr at 0x1000000 unusable"),
        "typed rejection of the corrupted header",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_FAIL),
        "QEMU exit code 35 (failure reported)",
        &o,
    )
}

/// Creates a sparse image file of `mib` MiB filled with a recognisable pattern in its first MiB.
fn make_image(path: &Path, mib: u64, pattern: bool) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(mib << 20).map_err(|e| e.to_string())?;
    if pattern {
        use std::io::Write;
        let mut f = f;
        let head: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        f.write_all(&head).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A dump disk of `mib` MiB labelled with `rkdumpctl prepare` and an unlabelled one holding
/// data, as image files in `dir`.
fn labelled_disks(env: &Env, dir: &Path, mib: u64) -> Result<(PathBuf, PathBuf), String> {
    let dump = dir.join("dump.img");
    let other = dir.join("other.img");
    make_image(&dump, mib, false)?;
    make_image(&other, mib, true)?;
    ctl(env, &["prepare".as_ref(), dump.as_os_str()])?;
    Ok((dump, other))
}

fn sha256(path: &Path) -> Result<[u8; 32], String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(sha2::Sha256::digest(&bytes).into())
}

fn ctl(env: &Env, args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let out = std::process::Command::new(&env.rkdumpctl)
        .args(args)
        .output()
        .map_err(|e| format!("running rkdumpctl: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[derive(Clone, Copy)]
enum Ctrl {
    Virtio,
    Nvme,
    Ahci,
}

/// QEMU arguments attaching `dump` (and `other`) with the given controller; the unlabelled disk
/// comes first in PCI order so rkdump has to skip it.
fn disk_args(ctrl: Ctrl, dump: &Path, other: &Path) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: String| a.push(s);
    for (i, img) in [other, dump].iter().enumerate() {
        push("-drive".into());
        push(format!(
            "file={},format=raw,if=none,id=d{i},cache=unsafe",
            img.display()
        ));
    }
    match ctrl {
        Ctrl::Virtio | Ctrl::Nvme => {
            for i in 0..2 {
                push("-device".into());
                push(format!(
                    "pcie-root-port,id=rp{i},bus=pcie.0,chassis={},slot={}",
                    i + 1,
                    i + 1
                ));
                push("-device".into());
                push(match ctrl {
                    Ctrl::Virtio => format!("virtio-blk-pci,drive=d{i},bus=rp{i},num-queues=1"),
                    _ => format!("nvme,drive=d{i},bus=rp{i},serial=rkdump{i}"),
                });
            }
        }
        Ctrl::Ahci => {
            for i in 0..2 {
                push("-device".into());
                push(format!("ide-hd,drive=d{i},bus=ide.{i}"));
            }
        }
    }
    a
}

fn disk_dump(env: &Env, dir: &Path, ctrl: Ctrl) -> Result<(), String> {
    let crash = fabricate::build(dir, fabricate::Layout::Low)?;
    let (dump, other) = labelled_disks(env, dir, 64)?;
    let before = sha256(&other)?;
    let append = format!(
        "elfcorehdr={:#x} reset_devices rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(crash.memory_mib)
        .kernel(&env.elf, &append)
        .args(crash.qemu_args.clone())
        .args(disk_args(ctrl, &dump, &other))
        .timeout(BOOT_TIMEOUT * 2);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("dump start bytes=") && l.contains("target=disk:")),
        "dump started on a disk",
        &o,
    )?;
    ensure(
        has(&o, &format!("dump complete bytes={}", crash.expected.len())),
        "dump complete with the full size",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_PASS),
        "QEMU exit code 33 (pass)",
        &o,
    )?;
    ensure(
        sha256(&other)? == before,
        "the unlabelled disk's SHA-256 is unchanged",
        &o,
    )?;
    // reset_devices: the driver's preinit is the first method and must prove itself.
    let (bdf, driver) = match ctrl {
        Ctrl::Virtio => ("0000:02:00.0", "device_status reads 0"),
        Ctrl::Nvme => ("0000:02:00.0", "nvme: CC 0x0 CSTS 0x0"),
        Ctrl::Ahci => ("0000:00:1f.2", "ahci: GHC 0x80000000"),
    };
    let l = reinit_line(&o, bdf).unwrap_or("");
    ensure(
        l.contains("-> preinit,") && l.contains("ok") && l.contains(driver),
        &format!("{bdf}: driver preinit ran first and proved the reset ({l})"),
        &o,
    )?;
    let out = dir.join("vmcore");
    ctl(
        env,
        &[
            "save".as_ref(),
            dump.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
    )
    .map_err(|e| format!("rkdumpctl save failed: {e}"))?;
    let got = std::fs::read(&out).map_err(|e| e.to_string())?;
    if got != crash.expected {
        return Err(format!(
            "saved vmcore differs: {} bytes vs expected {}",
            got.len(),
            crash.expected.len()
        ));
    }
    if let Some(l) = o.find("dump complete") {
        println!("    {}", l.text);
    }
    Ok(())
}

fn disk_virtio(env: &Env, dir: &Path) -> Result<(), String> {
    disk_dump(env, dir, Ctrl::Virtio)
}

fn disk_nvme(env: &Env, dir: &Path) -> Result<(), String> {
    disk_dump(env, dir, Ctrl::Nvme)
}

fn disk_ahci(env: &Env, dir: &Path) -> Result<(), String> {
    disk_dump(env, dir, Ctrl::Ahci)
}

fn disk_bad_label(env: &Env, dir: &Path) -> Result<(), String> {
    let crash = fabricate::build(dir, fabricate::Layout::Tiny)?;
    let (dump, other) = labelled_disks(env, dir, 16)?;
    // Flip a byte inside the label (the uuid): its CRC no longer matches.
    let mut img = std::fs::read(&dump).map_err(|e| e.to_string())?;
    img[0x10] ^= 0xff;
    std::fs::write(&dump, &img).map_err(|e| e.to_string())?;
    let before = sha256(&dump)?;
    let append = format!(
        "elfcorehdr={:#x} rkdump.target=disk rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(256)
        .kernel(&env.elf, &append)
        .args(crash.qemu_args.clone())
        .args(disk_args(Ctrl::Virtio, &dump, &other))
        .com2_file(&dir.join("com2.bin"))
        .timeout(BOOT_TIMEOUT);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("error: no usable labelled dump disk")),
        "rkdump: error: for the refused label",
        &o,
    )?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("dump start bytes=") && l.ends_with("target=serial:ttyS1")),
        "fell back to serial",
        &o,
    )?;
    ensure(
        sha256(&dump)? == before,
        "the disk with the bad label is not written",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_PASS),
        "dump completed over serial (exit 33)",
        &o,
    )
}

fn disk_too_small(env: &Env, dir: &Path) -> Result<(), String> {
    let crash = fabricate::build(dir, fabricate::Layout::Low)?;
    let (dump, other) = labelled_disks(env, dir, 4)?;
    let append = format!(
        "elfcorehdr={:#x} rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(crash.memory_mib)
        .kernel(&env.elf, &append)
        .args(crash.qemu_args.clone())
        .args(disk_args(Ctrl::Virtio, &dump, &other))
        .timeout(BOOT_TIMEOUT * 2);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("error: dump of") && l.contains("does not fit")),
        "truncation reported as an error line",
        &o,
    )?;
    let out = dir.join("vmcore");
    let refused = ctl(
        env,
        &[
            "save".as_ref(),
            dump.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
    );
    ensure(
        refused.is_err(),
        "rkdumpctl save refuses the truncated dump",
        &o,
    )?;
    let partial = ctl(
        env,
        &[
            "save".as_ref(),
            dump.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
            "--partial".as_ref(),
        ],
    )
    .map_err(|e| format!("save --partial failed: {e}"))?;
    let got = std::fs::read(&out).map_err(|e| e.to_string())?;
    ensure(
        !got.is_empty() && crash.expected.starts_with(&got),
        "the partial vmcore is a prefix of the expected one",
        &o,
    )?;
    println!(
        "    truncated dump: {} of {} bytes; {}",
        got.len(),
        crash.expected.len(),
        partial.trim()
    );
    Ok(())
}

fn disk_never_ready(env: &Env, dir: &Path) -> Result<(), String> {
    let crash = fabricate::build(dir, fabricate::Layout::Tiny)?;
    let (dump, other) = labelled_disks(env, dir, 16)?;
    let before = sha256(&dump)?;
    // The dump disk is the second NVMe controller: bus 2 behind the second root port.
    let append = format!(
        "elfcorehdr={:#x} rkdump.fault=dead:02:00.0 rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(256)
        .kernel(&env.elf, &append)
        .args(crash.qemu_args.clone())
        .args(disk_args(Ctrl::Nvme, &dump, &other))
        .com2_file(&dir.join("com2.bin"))
        .timeout(BOOT_TIMEOUT);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("error: nvme 0000:02:00.0:") && l.contains("skipped after")),
        "the never-ready NVMe reported as an error and skipped",
        &o,
    )?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("dump start bytes=") && l.ends_with("target=serial:ttyS1")),
        "fell back to serial",
        &o,
    )?;
    ensure(
        sha256(&dump)? == before,
        "nothing written to the faulty disk",
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_PASS),
        "dump completed (exit 33)",
        &o,
    )
}

fn reinit_line<'a>(o: &'a Outcome, bdf: &str) -> Option<&'a str> {
    o.rk_lines().find(|l| {
        l.starts_with(&format!("reinit {bdf} ")) || l.starts_with(&format!("error: reinit {bdf} "))
    })
}

fn reinit_flr(env: &Env, dir: &Path) -> Result<(), String> {
    let crash = fabricate::build(dir, fabricate::Layout::Tiny)?;
    let (dump, other) = labelled_disks(env, dir, 16)?;
    let append = format!(
        "elfcorehdr={:#x} reset_devices rkdump.reset=flr rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(256)
        .kernel(&env.elf, &append)
        .args(crash.qemu_args.clone())
        .args(disk_args(Ctrl::Virtio, &dump, &other))
        .timeout(BOOT_TIMEOUT);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    for bdf in ["0000:01:00.0", "0000:02:00.0"] {
        let l = reinit_line(&o, bdf).unwrap_or("");
        ensure(
            l.contains("-> flr,")
                && l.contains("ok")
                && l.contains("proof:")
                && l.contains("restored"),
            &format!("{bdf}: FLR proven by read-back and BARs restored ({l})"),
            &o,
        )?;
    }
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("dump complete") && l.contains("target=disk:")),
        "the dump completes on the FLR-reset disk",
        &o,
    )?;
    ensure(o.exit_code == Some(EXIT_PASS), "exit 33", &o)
}

fn reinit_pm(env: &Env, dir: &Path) -> Result<(), String> {
    let crash = fabricate::build(dir, fabricate::Layout::Tiny)?;
    let append = format!(
        "elfcorehdr={:#x} reset_devices rkdump.reset=pm rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(256)
        .kernel(&env.elf, &append)
        .args(crash.qemu_args.clone())
        .args(
            [
                "-device",
                "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1",
                "-netdev",
                "user,id=n0,restrict=on",
                "-device",
                "e1000e,netdev=n0,bus=rp0",
            ]
            .map(String::from),
        )
        .com2_file(&dir.join("com2.bin"))
        .timeout(BOOT_TIMEOUT);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    let l = reinit_line(&o, "0000:01:00.0").unwrap_or("");
    ensure(
        l.contains("8086:10d3") && l.contains("pm: no effect"),
        &format!("PM reset reported ineffective on e1000e ({l})"),
        &o,
    )?;
    ensure(
        o.exit_code == Some(EXIT_PASS),
        "the run still completes (exit 33)",
        &o,
    )
}

fn reinit_deny(env: &Env, dir: &Path) -> Result<(), String> {
    let crash = fabricate::build(dir, fabricate::Layout::Tiny)?;
    let (dump, other) = labelled_disks(env, dir, 16)?;
    let before = sha256(&dump)?;
    let append = format!(
        "elfcorehdr={:#x} reset_devices rkdump.deny=1af4:1042 rkdump.exit=qemu rkdump.action=poweroff",
        crash.elfcorehdr
    );
    let q = Qemu::q35(256)
        .kernel(&env.elf, &append)
        .args(crash.qemu_args.clone())
        .args(disk_args(Ctrl::Virtio, &dump, &other))
        .com2_file(&dir.join("com2.bin"))
        .timeout(BOOT_TIMEOUT);
    let o = run_logged(&q, dir)?;
    defined_end(&o)?;
    for bdf in ["0000:01:00.0", "0000:02:00.0"] {
        let l = reinit_line(&o, bdf).unwrap_or("");
        ensure(
            l.contains("-> none") && l.contains("denied"),
            &format!("{bdf}: denied, quiesced only ({l})"),
            &o,
        )?;
    }
    ensure(
        o.rk_lines()
            .filter(|l| l.starts_with("disk 0000:0"))
            .all(|l| l.contains("not probed")),
        "a denied disk is never probed",
        &o,
    )?;
    ensure(
        sha256(&dump)? == before,
        "the denied (labelled) disk is not written",
        &o,
    )?;
    ensure(
        o.rk_lines()
            .any(|l| l.starts_with("dump start") && l.ends_with("target=serial:ttyS1")),
        "the dump goes to serial instead",
        &o,
    )?;
    ensure(o.exit_code == Some(EXIT_PASS), "exit 33", &o)
}
