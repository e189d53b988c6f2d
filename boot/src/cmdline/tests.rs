//! Command-line parsing tests, including real kexec_load / kexec_file_load lines (docs/boot-contract.md#command-line).

use std::string::ToString;
use std::vec::Vec;

use super::*;

fn diags(o: &Options) -> Vec<(std::string::String, DiagKind)> {
    o.diagnostics()
        .map(|d| (d.token.to_string(), d.kind))
        .collect()
}

fn toks(s: &str) -> Vec<(&[u8], Option<&[u8]>)> {
    Tokens { rest: s.as_bytes() }
        .map(|t| (t.key, t.value))
        .collect()
}

#[test]
fn tokenizer_follows_next_arg() {
    assert_eq!(
        toks("  a b=c\td=\"x y\" \"e=f g\" \"h i\" j=\"k\nl=m"),
        [
            (&b"a"[..], None),
            (b"b", Some(&b"c"[..])),
            (b"d", Some(b"x y")),
            (b"e", Some(b"f g")),
            (b"h i", None),
            (b"j", Some(b"k\nl=m")),
        ]
    );
    assert_eq!(toks("k=a=b"), [(&b"k"[..], Some(&b"a=b"[..]))]);
    assert_eq!(toks("k= x"), [(&b"k"[..], Some(&b""[..])), (b"x", None)]);
    assert_eq!(toks("\""), [(&b""[..], None)]);
    assert_eq!(toks("k=\""), [(&b"k"[..], Some(&b""[..]))]);
    assert!(toks(" \t\r\n").is_empty());
}

#[test]
fn empty_and_defaults() {
    for line in ["", "   ", "\0rkdump.action=halt"] {
        let o = Options::parse(line);
        assert_eq!(o, Options::default());
        assert_eq!(o.target.as_slice(), [Target::Auto]);
        assert_eq!(o.action, Action::Reboot);
        assert_eq!(o.budget_ms, 5000);
        assert_eq!(o.effective_reset(), ResetPolicy::None);
        assert_eq!(o.diagnostics().count(), 0);
    }
}

#[test]
fn elfcorehdr_forms() {
    let e = |s: &str| Options::parse(s).elfcorehdr;
    assert_eq!(
        e("elfcorehdr=123456K"),
        Some(ElfCoreHdrArg {
            addr: 123_456 * 1024,
            size: None
        })
    );
    assert_eq!(
        e("elfcorehdr=0x7f000000"),
        Some(ElfCoreHdrArg {
            addr: 0x7F00_0000,
            size: None
        })
    );
    assert_eq!(
        e("elfcorehdr=16K@0x1000000"),
        Some(ElfCoreHdrArg {
            addr: 0x100_0000,
            size: Some(16 * 1024)
        })
    );
    assert_eq!(
        e("elfcorehdr=0x5b000000 elfcorehdr=786428K").unwrap().addr,
        786_428 * 1024
    );
    for (bad, why) in [
        ("elfcorehdr=", "empty value"),
        ("elfcorehdr", "missing value"),
        ("elfcorehdr=zz", "invalid number"),
        (
            "elfcorehdr=99999999999999999999999",
            "number overflows 64 bits",
        ),
        ("elfcorehdr=16K@", "empty number"),
        ("elfcorehdr=@0x1000", "empty number"),
        ("elfcorehdr=1@2@3", "invalid number"),
        ("elfcorehdr=0x10000KB", "invalid number"),
    ] {
        let o = Options::parse(bad);
        assert_eq!(o.elfcorehdr, None, "{bad}");
        assert_eq!(
            diags(&o),
            [(bad.to_string(), DiagKind::Malformed(why))],
            "{bad}"
        );
    }
    // A malformed later value keeps the earlier valid one.
    let o = Options::parse("elfcorehdr=0x1000 elfcorehdr=zz");
    assert_eq!(o.elfcorehdr.unwrap().addr, 0x1000);
}

/// kexec_file_load prefixes `elfcorehdr=0x...` (Linux `setup_cmdline`, arch/x86/kernel/kexec-bzimage64.c; docs/boot-contract.md#command-line).
#[test]
fn real_kexec_file_load_line() {
    let line = "elfcorehdr=0x5b000000 BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-362.el9.x86_64 ro \
                irqpoll reset_devices cgroup_disable=memory mce=off numa=off udev.children-max=2 \
                panic=10 acpi_no_memhotplug transparent_hugepage=never nokaslr novmcoredd \
                hest_disable disable_cpu_apicid=0 iTCO_wdt.pretimeout=0 nr_cpus=1 \
                console=tty0 console=ttyS0,115200n8 rd.systemd.gpt_auto=no";
    let o = Options::parse(line);
    assert_eq!(
        o.elfcorehdr,
        Some(ElfCoreHdrArg {
            addr: 0x5B00_0000,
            size: None
        })
    );
    assert!(o.reset_devices);
    assert_eq!(o.effective_reset(), ResetPolicy::Auto);
    assert_eq!(o.disable_cpu_apicid, Some(0));
    assert_eq!(
        o.console,
        Some(Console {
            port: SerialPort::Com1,
            baud: Some(115_200)
        })
    );
    assert_eq!(o.other_console.unwrap().as_str(), Some("tty0"));
    assert_eq!(o.acpi_rsdp, None);
    let unknown: Vec<_> = o
        .diagnostics()
        .filter(|d| d.kind == DiagKind::Unknown)
        .collect();
    assert_eq!(unknown.len(), 16);
    assert_eq!(o.diagnostics().count(), 16);
    assert_eq!(
        unknown[0].token.to_string(),
        "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-362..."
    );
    assert_eq!(unknown[2].token.to_string(), "irqpoll");
    assert_eq!(
        std::format!("{}", unknown[2]),
        "unknown parameter \"irqpoll\" ignored"
    );
}

/// kexec_load appends ` acpi_rsdp=0x...` then ` elfcorehdr=<n>K` (kexec-tools crashdump-x86.c; docs/boot-contract.md#command-line).
#[test]
fn real_kexec_load_line() {
    let line = "BOOT_IMAGE=/vmlinuz-6.1.0-18-amd64 root=UUID=1234-abcd ro quiet reset_devices \
                systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll nousb \
                acpi_rsdp=0xf59e0 elfcorehdr=786428K";
    let o = Options::parse(line);
    assert_eq!(
        o.elfcorehdr,
        Some(ElfCoreHdrArg {
            addr: 786_428 * 1024,
            size: None
        })
    );
    assert_eq!(o.acpi_rsdp, Some(0xF59E0));
    assert!(o.reset_devices);
    assert_eq!(o.console, None);
    assert_eq!(o.diagnostics().count(), 8);
    assert!(o.diagnostics().all(|d| d.kind == DiagKind::Unknown));
    // kexec-tools also writes acpi_rsdp without 0x in some paths; the kernel reads it as hex anyway.
    assert_eq!(Options::parse("acpi_rsdp=f59e0").acpi_rsdp, Some(0xF59E0));
}

#[test]
fn consoles() {
    let c = |s: &str| Options::parse(s).console;
    let com = |port, baud| Some(Console { port, baud });
    assert_eq!(c("console=ttyS0"), com(SerialPort::Com1, None));
    assert_eq!(
        c("console=ttyS1,115200n8"),
        com(SerialPort::Com2, Some(115_200))
    );
    assert_eq!(c("console=ttyS3,9600"), com(SerialPort::Com4, Some(9600)));
    assert_eq!(
        c("console=uart8250,io,0x3f8,115200"),
        com(SerialPort::Io(0x3F8), Some(115_200))
    );
    assert_eq!(c("console=uart,io,0x2f8"), com(SerialPort::Io(0x2F8), None));
    assert_eq!(c("console=ttyS0 console=tty0"), com(SerialPort::Com1, None));
    assert_eq!(
        c("console=ttyS0 console=ttyS1"),
        com(SerialPort::Com2, None)
    );
    assert_eq!(SerialPort::Io(0x3F8).io_base(), SerialPort::Com1.io_base());
    let o = Options::parse("console=tty0 console=hvc0");
    assert_eq!(o.console, None);
    assert_eq!(o.other_console.unwrap().as_str(), Some("hvc0"));
    assert_eq!(
        o.diagnostics().count(),
        0,
        "several consoles are normal, not duplicates"
    );
    for bad in [
        "console=ttyS4",
        "console=ttyS",
        "console=ttySx",
        "console=ttyS0,fast",
        "console=uart8250,mmio,0xfe000000",
        "console=uart8250,0x3f8",
        "console=uart8250,io,0x10000",
        "console=uart8250,io,zz",
        "console=",
    ] {
        let o = Options::parse(bad);
        assert_eq!((o.console, o.other_console), (None, None), "{bad}");
        assert!(
            matches!(diags(&o)[..], [(_, DiagKind::Malformed(_))]),
            "{bad}"
        );
    }
}

#[test]
fn rkdump_options() {
    let o = Options::parse(
        "rkdump.target=disk:0000:01:00.0 rkdump.action=poweroff rkdump.reset=flr,pm,sbr \
         rkdump.deny=8086:100e,class:0c03 rkdump.allow=class:01 rkdump.selftest=pagefault \
         rkdump.exit=qemu rkdump.nopreinit rkdump.budget_ms=250 rkdump.serial_baud=921600",
    );
    assert_eq!(o.diagnostics().count(), 0, "{:?}", diags(&o));
    assert_eq!(
        o.target.as_slice(),
        [Target::DiskAt(Bdf {
            segment: 0,
            bus: 1,
            dev: 0,
            func: 0
        })]
    );
    assert_eq!(o.action, Action::Poweroff);
    let m = ResetMethods::FLR | ResetMethods::PM | ResetMethods::SBR;
    assert_eq!(o.effective_reset(), ResetPolicy::Methods(m));
    assert!(o.deny.matches(0x8086, 0x100E, 2, 0));
    assert!(o.deny.matches(0x1B36, 0x000D, 0x0C, 0x03));
    assert!(!o.deny.matches(0x1B36, 0x000D, 0x01, 0x08));
    assert!(o.allow.matches(0x1B36, 0x0010, 0x01, 0x08));
    assert_eq!(o.selftest, Some(SelfTest::PageFault));
    assert!(o.qemu_exit && o.nopreinit);
    assert_eq!(o.budget_ms, 250);
    assert_eq!(o.serial_baud, Some(921_600));

    assert_eq!(Options::parse("").checksum, ChecksumMode::Auto);
    assert_eq!(
        Options::parse("rkdump.checksum=sampled").checksum,
        ChecksumMode::Sampled
    );
    assert_eq!(
        Options::parse("rkdump.checksum=sampled rkdump.checksum=full").checksum,
        ChecksumMode::Full
    );
    assert_eq!(
        Options::parse("rkdump.checksum=none").checksum,
        ChecksumMode::None
    );
    assert_eq!(
        Options::parse("rkdump.checksum=crc").checksum,
        ChecksumMode::Auto
    );
    let f = Options::parse("rkdump.fault=dead:00:04.0");
    assert_eq!(
        f.fault_dead,
        Some(Bdf {
            segment: 0,
            bus: 0,
            dev: 4,
            func: 0
        })
    );
    for bad in [
        "rkdump.fault=dead:zz",
        "rkdump.fault=alive:00:04.0",
        "rkdump.fault=dead:00:40.0",
    ] {
        let o = Options::parse(bad);
        assert_eq!(o.fault_dead, None, "{bad}");
        assert!(
            matches!(
                o.diagnostics().next().map(|d| d.kind),
                Some(DiagKind::Malformed(_))
            ),
            "{bad}"
        );
    }

    let t = |s: &str| Options::parse(s).target.as_slice()[0];
    assert_eq!(t("rkdump.target=disk"), Target::Disk);
    assert_eq!(t("rkdump.target=auto"), Target::Auto);
    assert_eq!(t("rkdump.target=serial"), Target::Serial(SerialPort::Com2));
    assert_eq!(
        t("rkdump.target=serial:ttyS0"),
        Target::Serial(SerialPort::Com1)
    );
    assert_eq!(
        t("rkdump.target=serial:ttyS1"),
        Target::Serial(SerialPort::Com2)
    );
    assert_eq!(
        t("rkdump.target=disk:00:04.0"),
        Target::DiskAt(Bdf {
            segment: 0,
            bus: 0,
            dev: 4,
            func: 0
        })
    );
    assert_eq!(
        std::format!("{}", t("rkdump.target=disk:00:04.0")),
        "disk:0000:00:04.0"
    );
    assert_eq!(Options::parse("rkdump.action=halt").action, Action::Halt);
    assert_eq!(
        Options::parse("rkdump.action=reboot").action,
        Action::Reboot
    );
    let r = |s: &str| Options::parse(s).effective_reset();
    assert_eq!(r("rkdump.reset=none reset_devices"), ResetPolicy::None);
    assert_eq!(r("rkdump.reset=auto"), ResetPolicy::Auto);
    assert_eq!(
        r("rkdump.reset=preinit,afflr"),
        ResetPolicy::Methods(ResetMethods::PREINIT | ResetMethods::AFFLR)
    );
    assert_eq!(r("reset_devices"), ResetPolicy::Auto);
    let s = |s: &str| Options::parse(s).selftest;
    assert_eq!(s("rkdump.selftest=divide"), Some(SelfTest::Divide));
    assert_eq!(s("rkdump.selftest=breakpoint"), Some(SelfTest::Breakpoint));
    assert_eq!(s("rkdump.selftest=panic"), Some(SelfTest::Panic));
    match s("rkdump.selftest=triplefault") {
        Some(SelfTest::Unknown(raw)) => assert_eq!(raw.as_str(), Some("triplefault")),
        other => panic!("{other:?}"),
    }
    // Dashes and underscores are interchangeable in names, like the kernel's parameq.
    let o = Options::parse("rkdump.budget-ms=7 reset-devices disable-cpu-apicid=0x2");
    assert_eq!(
        (o.budget_ms, o.reset_devices, o.disable_cpu_apicid),
        (7, true, Some(2))
    );
    // Values are case-sensitive; names too.
    assert_eq!(Options::parse("RKDUMP.ACTION=halt").action, Action::Reboot);
}

#[test]
fn target_lists_are_tried_in_order_with_serial_last() {
    let list = |s: &str| Options::parse(s).target;
    let l = list("rkdump.target=file,disk,serial");
    assert_eq!(
        l.as_slice(),
        [Target::File, Target::Disk, Target::Serial(SerialPort::Com2)]
    );
    assert_eq!(std::format!("{l}"), "file,disk,serial:ttyS1");
    assert_eq!(l.resolved(), l);
    // `auto` (the default) expands to the documented order.
    assert_eq!(
        list("").resolved().as_slice(),
        TargetList::DEFAULT_ORDER.as_slice()
    );
    // COM2 is the last resort of a list without a serial port, as for a lone `disk` before.
    assert_eq!(
        list("rkdump.target=part").resolved().as_slice(),
        [Target::Part, Target::Serial(SerialPort::Com2)]
    );
    // A listed port replaces it; repeats are dropped, `auto` expands in place.
    assert_eq!(
        list("rkdump.target=disk,serial:ttyS0,auto")
            .resolved()
            .as_slice(),
        [
            Target::Disk,
            Target::Serial(SerialPort::Com1),
            Target::File,
            Target::Part,
            Target::Serial(SerialPort::Com2)
        ]
    );
    // Adjacent disk and part entries are one search; disk:<pci> is its own.
    let steps = |s: &str| list(s).steps().collect::<Vec<_>>();
    let disks = |whole, part| TargetStep::Disks {
        want: None,
        whole,
        part,
    };
    assert_eq!(
        steps(""),
        [
            TargetStep::File,
            disks(true, true),
            TargetStep::Serial(SerialPort::Com2)
        ]
    );
    let at = Bdf {
        segment: 0,
        bus: 2,
        dev: 0,
        func: 0,
    };
    assert_eq!(
        steps("rkdump.target=part,file,disk:02:00.0,disk"),
        [
            disks(false, true),
            TargetStep::File,
            TargetStep::Disks {
                want: Some(at),
                whole: true,
                part: false
            },
            disks(true, false),
            TargetStep::Serial(SerialPort::Com2)
        ]
    );
    // Negative controls: a bad entry or more than 8 reject the whole list (the default stays).
    assert_eq!(list("rkdump.target=file,nvme").as_slice(), [Target::Auto]);
    let nine = Options::parse("rkdump.target=file,part,file,part,file,part,file,part,file");
    assert_eq!(nine.target.as_slice(), [Target::Auto]);
    assert!(matches!(
        diags(&nine)[..],
        [(_, DiagKind::Malformed("more than 8 targets"))]
    ));
}

#[test]
fn malformed_rkdump_values_keep_defaults() {
    for bad in [
        "rkdump.target=nvme",
        "rkdump.target=disk:00:20.0",
        "rkdump.target=disk:00:04.8",
        "rkdump.target=disk:",
        "rkdump.target=serial:ttyS9",
        "rkdump.target=file,,serial",
        "rkdump.action=explode",
        "rkdump.reset=flr,bogus",
        "rkdump.reset=flr,",
        "rkdump.deny=8086",
        "rkdump.allow=class:0",
        "rkdump.exit=bochs",
        "rkdump.nopreinit=1",
        "rkdump.budget_ms=-1",
        "rkdump.budget_ms=4294967296",
        "rkdump.serial_baud=0",
        "rkdump.serial_baud",
        "acpi_rsdp=0xZZ",
        "disable_cpu_apicid=0x100000000",
    ] {
        let o = Options::parse(bad);
        let want = Options {
            diags: o.diags,
            diag_len: o.diag_len,
            ..Options::default()
        };
        assert_eq!(o, want, "{bad}");
        assert!(
            matches!(diags(&o)[..], [(ref t, DiagKind::Malformed(_))] if t == bad),
            "{bad}"
        );
    }
    let o = Options::parse("rkdump.exit=bochs");
    let d = o.diagnostics().next().unwrap();
    assert_eq!(
        std::format!("{d}"),
        "malformed \"rkdump.exit=bochs\" ignored: expected qemu"
    );
}

#[test]
fn duplicates_and_overrides() {
    let o = Options::parse("rkdump.action=halt rkdump.action=poweroff rkdump.action=bad");
    assert_eq!(o.action, Action::Poweroff);
    assert_eq!(
        diags(&o),
        [
            ("rkdump.action=poweroff".to_string(), DiagKind::Duplicate),
            (
                "rkdump.action=bad".to_string(),
                DiagKind::Malformed("expected reboot, poweroff or halt")
            ),
        ]
    );
    let o = Options::parse("rkdump.deny=1:2 rkdump.deny=class:03");
    assert_eq!(o.deny.as_slice(), &[DeviceMatch::Class { class: 3 }]);
    assert_eq!(o.diagnostics().next().unwrap().kind, DiagKind::Duplicate);
}

#[test]
fn device_list_overflow_keeps_first_32() {
    let mut line = std::string::String::from("rkdump.deny=");
    for i in 0..40 {
        line.push_str(&std::format!("{:04x}:0001,", i));
    }
    line.pop();
    let o = Options::parse(&line);
    assert_eq!(o.deny.as_slice().len(), DEVICE_LIST_CAPACITY);
    assert!(o.deny.matches(31, 1, 0, 0) && !o.deny.matches(32, 1, 0, 0));
    assert!(matches!(diags(&o)[..], [(_, DiagKind::Malformed(_))]));
}

#[test]
fn garbage_and_non_utf8() {
    let o =
        Options::from_bytes(b"rkdump.action=halt \xff\xfe=1 console=ttyS\xc3\x28 quiet \x01\x02");
    assert_eq!(o.action, Action::Halt);
    assert_eq!(o.console, None);
    assert_eq!(
        diags(&o),
        [
            (
                "\\xff\\xfe=1".to_string(),
                DiagKind::Malformed("not valid UTF-8")
            ),
            (
                "console=ttyS\\xc3(".to_string(),
                DiagKind::Malformed("not valid UTF-8")
            ),
            ("quiet".to_string(), DiagKind::Unknown),
            ("\\x01\\x02".to_string(), DiagKind::Unknown),
        ]
    );
    // Stops at NUL and at "--" (init's arguments).
    let o = Options::from_bytes(b"rkdump.action=halt\0rkdump.action=poweroff");
    assert_eq!((o.action, o.diagnostics().count()), (Action::Halt, 0));
    let o = Options::parse("quiet -- rkdump.action=halt single");
    assert_eq!((o.action, o.diagnostics().count()), (Action::Reboot, 1));
    // Pseudo-random bytes never panic and stay within capacity.
    let mut rng = crate::testing::Rng::new(7);
    let mut buf = [0u8; 600];
    for _ in 0..500 {
        for b in buf.iter_mut() {
            *b = *b"= \",.:@0x1Kkrdump.targetelfcorehdr\xff\t"
                .get(rng.below(40) as usize)
                .unwrap_or(&b'a');
        }
        let o = Options::from_bytes(&buf);
        assert!(o.diagnostics().count() <= DIAG_CAPACITY);
    }
}

#[test]
fn diagnostics_overflow_is_counted() {
    let mut line = std::string::String::new();
    for i in 0..60 {
        line.push_str(&std::format!("p{i} "));
    }
    let o = Options::parse(&line);
    assert_eq!(o.diagnostics().count(), DIAG_CAPACITY);
    assert_eq!(o.diagnostics_dropped(), 60 - DIAG_CAPACITY as u32);
}

#[test]
fn cmdline_buf() {
    let b = CmdlineBuf::from_bytes(b"quiet console=ttyS0\0junk");
    assert_eq!(b.as_bytes(), b"quiet console=ttyS0");
    assert!(!b.is_truncated());
    assert_eq!(Options::parse(&b).console.unwrap().port, SerialPort::Com1);
    let long = [b'a'; 5000];
    let b = CmdlineBuf::from_bytes(&long);
    assert_eq!(b.len(), CMDLINE_CAPACITY - 1);
    assert!(b.is_truncated());
    let exact = [b'a'; CMDLINE_CAPACITY - 1];
    assert!(!CmdlineBuf::from_bytes(&exact).is_truncated());
    assert_eq!(
        std::format!("{}", CmdlineBuf::from_bytes(b"a\tb\xff")),
        "a\\x09b\\xff"
    );
}

#[test]
fn checkpoint_and_throttle_test_switches() {
    let d = Options::parse("");
    assert!(d.checkpoints);
    assert_eq!(d.throttle_mib_s, 0);
    let o = Options::parse("rkdump.checkpoint=off rkdump.throttle_mib_s=40");
    assert!(!o.checkpoints);
    assert_eq!(o.throttle_mib_s, 40);
    assert!(Options::parse("rkdump.checkpoint=on").checkpoints);
    let bad = Options::parse("rkdump.checkpoint=maybe rkdump.throttle_mib_s=fast");
    assert!(bad.checkpoints);
    assert_eq!(bad.throttle_mib_s, 0);
    assert_eq!(bad.diagnostics().count(), 2);
}

#[test]
fn report_lines_default_and_set() {
    assert_eq!(Options::parse("").report_lines, 50);
    assert_eq!(Options::parse("rkdump.report_lines=7").report_lines, 7);
    assert_eq!(Options::parse("rkdump.report_lines=0").report_lines, 0);
    // A bad value keeps the default and is reported.
    let o = Options::parse("rkdump.report_lines=many");
    assert_eq!(o.report_lines, 50);
    assert!(matches!(diags(&o)[..], [(_, DiagKind::Malformed(_))]));
}

#[test]
fn dump_level() {
    assert_eq!(Options::parse("").level, 31);
    assert_eq!(Options::parse("rkdump.level=0").level, 0);
    assert_eq!(Options::parse("rkdump.level=0x11").level, 17);
    let bad = Options::parse("rkdump.level=32 rkdump.level=x");
    assert_eq!(bad.level, 31, "refused values leave the default");
    let d: Vec<_> = bad.diagnostics().map(|d| d.to_string()).collect();
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].contains("expected a dump level 0..31"), "{d:?}");
}

#[test]
fn cpus_count_all_and_errors() {
    let d = Options::parse("");
    assert_eq!(d.cpus, None);
    assert_eq!(d.cpus_or_default(), DEFAULT_CPUS);
    assert_eq!(Options::parse("rkdump.cpus=1").cpus_or_default(), 1);
    assert_eq!(Options::parse("rkdump.cpus=4").cpus, Some(4));
    assert_eq!(Options::parse("rkdump.cpus=all").cpus, Some(u32::MAX));
    for bad in ["rkdump.cpus=0", "rkdump.cpus=many", "rkdump.cpus="] {
        let o = Options::parse(bad);
        assert_eq!(o.cpus, None, "{bad}");
        assert_eq!(o.diagnostics().count(), 1, "{bad}");
    }
    assert_eq!(
        Options::parse("rkdump.selftest=smp").selftest,
        Some(SelfTest::Smp)
    );
}

#[test]
fn hardware_options() {
    let d = Options::parse("");
    assert_eq!((d.acpi_source, d.iommu), (None, IommuMode::Auto));
    let o = Options::parse("rkdump.acpi_source=efi rkdump.iommu=skip");
    assert_eq!(o.acpi_source, Some(AcpiSource::Efi));
    assert_eq!(o.iommu, IommuMode::Skip);
    for s in AcpiSource::ORDER {
        let o = Options::parse(&std::format!("rkdump.acpi_source={s}"));
        assert_eq!(o.acpi_source, Some(s));
    }
    assert_eq!(d.watchdog, WatchdogMode::Pet);
    for (v, m) in [
        ("pet", WatchdogMode::Pet),
        ("keep", WatchdogMode::Keep),
        ("off", WatchdogMode::Off),
    ] {
        let o = Options::parse(&std::format!("rkdump.watchdog={v}"));
        assert_eq!((o.watchdog, o.watchdog.name()), (m, v));
    }
    let bad = Options::parse("rkdump.acpi_source=rom rkdump.iommu=off rkdump.watchdog=feed");
    assert_eq!((bad.acpi_source, bad.iommu), (None, IommuMode::Auto));
    assert_eq!(bad.watchdog, WatchdogMode::Pet);
    assert_eq!(bad.diagnostics().count(), 3);
}

#[test]
fn format_and_compress() {
    // The default: makedumpfile's format with the fast codec.
    let o = Options::parse("");
    assert_eq!((o.format, o.compress), (DumpFormat::Kdump, Compress::Lzo));
    let o = Options::parse("rkdump.format=elf rkdump.compress=zlib");
    assert_eq!((o.format, o.compress), (DumpFormat::Elf, Compress::Zlib));
    assert_eq!(
        Options::parse("rkdump.compress=zstd").compress,
        Compress::Zstd
    );
    let bad = Options::parse("rkdump.format=cpio rkdump.compress=lz4");
    assert_eq!(
        (bad.format, bad.compress),
        (DumpFormat::Kdump, Compress::Lzo)
    );
    assert_eq!(diags(&bad).len(), 2, "both refused with a diagnostic");
}
