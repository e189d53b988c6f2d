//! End-to-end tests of `rkdumpctl snapshot` and `load` on a fake sysfs/procfs tree, with a fake
//! bzImage and a fake kexec that records its arguments.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{rkdumpctl, text};
use rkdump_devices::blob::Blob;
use rkdump_devices::pci::Bdf;

const BOOT_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("snapshot-{name}"))
}

fn put16(c: &mut [u8], off: usize, v: u16) {
    c[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

/// Config space of a type-0 function with the given IDs and class, `len` bytes long.
fn endpoint(vendor: u16, device: u16, class: [u8; 3], len: usize) -> Vec<u8> {
    let mut c = vec![0u8; len];
    put16(&mut c, 0, vendor);
    put16(&mut c, 2, device);
    put16(&mut c, 4, 0x0406);
    c[0x09..0x0C].copy_from_slice(&class);
    c[0x10..0x14].copy_from_slice(&0xfebc_1000u32.to_le_bytes());
    c
}

/// A root port (type 1) with secondary bus 1 and a memory window.
fn root_port(len: usize) -> Vec<u8> {
    let mut c = endpoint(0x1b36, 0x000c, [0x00, 0x04, 0x06], len);
    c[0x0E] = 0x01;
    c[0x18..0x1B].copy_from_slice(&[0, 1, 1]);
    put16(&mut c, 0x20, 0xfe80);
    put16(&mut c, 0x22, 0xfe80);
    c
}

/// Builds `<root>/sys` and `<root>/proc` like a small q35 guest, the sysfs devices directory
/// made of symlinks into `devices/pci0000:00` as on a real system. Returns (sys, proc).
fn fake_system(root: &Path) -> (PathBuf, PathBuf) {
    let sys = root.join("sys");
    let proc = root.join("proc");
    let devices = sys.join("bus/pci/devices");
    let real = sys.join("devices/pci0000:00");
    fs::create_dir_all(&devices).unwrap();
    let add = |name: &str, config: &[u8]| {
        let d = real.join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("config"), config).unwrap();
        fs::write(d.join("vendor"), "0xdead\n").unwrap(); // never trusted over config
        symlink(&d, devices.join(name)).unwrap();
    };
    add("0000:00:00.0", &endpoint(0x8086, 0x29c0, [0, 0, 6], 256));
    add("0000:00:1c.0", &root_port(4096));
    add(
        "0000:01:00.0",
        &endpoint(0x1af4, 0x1042, [0, 0x80, 1], 4096),
    );
    // As an unprivileged reader sees it: 64 bytes.
    add("0000:00:1f.2", &endpoint(0x8086, 0x2922, [1, 6, 1], 64));
    // A config file that ends early (dropped), a function reading all-ones (dropped), a VMD
    // domain above 0xffff (dropped), a stray entry (dropped).
    add("0000:00:02.0", &[0x34, 0x12, 0x11]);
    add("0000:00:03.0", &[0xFF; 256]);
    add("10000:00:00.0", &endpoint(0x8086, 0x1234, [0, 0, 6], 256));
    fs::create_dir_all(devices.join("not-a-device")).unwrap();

    fs::create_dir_all(proc.join("sys/kernel/random")).unwrap();
    fs::write(proc.join("sys/kernel/osrelease"), "6.8.0-rkdump-test\n").unwrap();
    fs::write(
        proc.join("sys/kernel/random/boot_id"),
        format!("{BOOT_ID}\n"),
    )
    .unwrap();
    fs::write(
        proc.join("cmdline"),
        "BOOT_IMAGE=/vmlinuz root=/dev/vda1 console=tty0 console=ttyS0,115200n8 crashkernel=256M\n",
    )
    .unwrap();
    (sys, proc)
}

/// A minimal boot-protocol header with `cmdline_size` = 4095, like rkdump's.
fn fake_bzimage(path: &Path) {
    let mut img = vec![0u8; 0x1000];
    img[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x238..0x23C].copy_from_slice(&4095u32.to_le_bytes());
    fs::write(path, img).unwrap();
}

/// A kexec stand-in: writes each argument on a line to `args_out`, prints `stderr` to stderr,
/// exits with `code`.
fn fake_kexec(path: &Path, args_out: &Path, stderr: &str, code: i32) {
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nprintf '%s\\n' '{stderr}' >&2\nexit {code}\n",
        args_out.display()
    );
    fs::write(path, script).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn snapshot_of_a_fake_sysfs_parses_back() {
    let dir = scratch("snapshot");
    let (sys, proc) = fake_system(&dir);
    let out_path = dir.join("out/config.blob");
    let out = rkdumpctl([
        "snapshot",
        "-o",
        s(&out_path),
        "--sysfs-root",
        s(&sys),
        "--proc-root",
        s(&proc),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    let bytes = fs::read(&out_path).unwrap();
    assert_eq!(
        stdout.trim(),
        format!(
            "rkdumpctl snapshot: 4 PCI functions (2 x 4096 B, 1 x 256 B, 1 x 64 B config), {} bytes -> {}",
            bytes.len(),
            out_path.display()
        )
    );
    for skipped in [
        "0000:00:02.0",
        "0000:00:03.0",
        "10000:00:00.0",
        "not-a-device",
    ] {
        assert!(stderr.contains(skipped), "{skipped} not reported: {stderr}");
    }

    let blob = Blob::parse(&bytes).unwrap();
    assert_eq!(blob.release(), "6.8.0-rkdump-test");
    assert_eq!(
        blob.boot_id(),
        [
            0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
            0xe1, 0xf0
        ]
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(blob.timestamp() <= now && blob.timestamp() + 600 > now);
    let bdfs: Vec<String> = blob.records().map(|r| r.bdf().to_string()).collect();
    assert_eq!(
        bdfs,
        [
            "0000:00:00.0",
            "0000:00:1c.0",
            "0000:00:1f.2",
            "0000:01:00.0"
        ]
    );
    let port = blob.find(Bdf::parse("00:1c.0").unwrap()).unwrap();
    assert!(port.matches(0x1b36, 0x000c, 0x060400));
    assert_eq!(port.config(), &root_port(4096)[..]);
    let br = port.bridge().unwrap();
    assert_eq!((br.primary, br.secondary, br.subordinate), (0, 1, 1));
    assert_eq!((br.mem.base, br.mem.limit), (0xfe80_0000, 0xfe8f_ffff));
    let disk = blob.find(Bdf::parse("01:00.0").unwrap()).unwrap();
    assert!(disk.matches(0x1af4, 0x1042, 0x018000));
    assert_eq!(disk.config().len(), 4096);
    let sata = blob.find(Bdf::parse("00:1f.2").unwrap()).unwrap();
    assert_eq!(sata.config(), &endpoint(0x8086, 0x2922, [1, 6, 1], 64)[..]);
    assert_eq!(
        blob.find(Bdf::parse("00:00.0").unwrap())
            .unwrap()
            .config()
            .len(),
        256
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn snapshot_without_pci_sysfs_fails() {
    let dir = scratch("nosys");
    let out = rkdumpctl([
        "snapshot",
        "-o",
        s(&dir.join("b")),
        "--sysfs-root",
        s(&dir.join("nowhere")),
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("rkdumpctl snapshot: error: listing ")
            && stderr.contains("nowhere/bus/pci/devices"),
        "{stderr}"
    );
    assert!(!dir.join("b").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_dry_run_prints_the_kexec_command() {
    let dir = scratch("dryrun");
    let (sys, proc) = fake_system(&dir);
    let kernel = dir.join("bzImage");
    fake_bzimage(&kernel);
    let blob_path = dir.join("cfg.blob");
    let out = rkdumpctl([
        "load",
        "--dry-run",
        "--kernel",
        s(&kernel),
        "--append",
        "rkdump.target=disk:00:04.0 rkdump.action=poweroff",
        "--legacy-syscall",
        "--blob-out",
        s(&blob_path),
        "--sysfs-root",
        s(&sys),
        "--proc-root",
        s(&proc),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "kexec -p {} --initrd={} '--command-line=reset_devices console=ttyS0,115200n8 \
             rkdump.target=disk:00:04.0 rkdump.action=poweroff' -c\n",
            kernel.display(),
            blob_path.display()
        )
    );
    assert!(
        stderr.contains("rkdumpctl load: snapshot: 4 PCI functions"),
        "{stderr}"
    );
    assert_eq!(
        Blob::parse(&fs::read(&blob_path).unwrap()).unwrap().len(),
        4
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_runs_kexec_with_each_syscall_choice_and_reports_failure() {
    let dir = scratch("kexec");
    let (sys, proc) = fake_system(&dir);
    let kernel = dir.join("bzImage");
    fake_bzimage(&kernel);
    let blob_path = dir.join("cfg.blob");
    let args_file = dir.join("kexec.args");
    let ok = dir.join("kexec-ok");
    fake_kexec(&ok, &args_file, "", 0);
    let fail = dir.join("kexec-fail");
    fake_kexec(
        &fail,
        &args_file,
        "Memory for crashkernel is not reserved",
        1,
    );

    let run = |kexec: &Path, extra: &[&str]| {
        let mut a = vec![
            "load",
            "--kernel",
            s(&kernel),
            "--blob-out",
            s(&blob_path),
            "--kexec",
            s(kexec),
            "--sysfs-root",
            s(&sys),
            "--proc-root",
            s(&proc),
        ];
        a.extend_from_slice(extra);
        rkdumpctl(&a)
    };
    let expect_args = |flag: Option<&str>, cmdline: &str| {
        let mut v = vec![
            "-p".to_string(),
            kernel.display().to_string(),
            format!("--initrd={}", blob_path.display()),
            format!("--command-line={cmdline}"),
        ];
        v.extend(flag.map(str::to_string));
        v.join("\n") + "\n"
    };

    for (extra, flag) in [
        (&[][..], None),
        (&["--file-syscall"][..], Some("-s")),
        (&["--legacy-syscall"][..], Some("-c")),
    ] {
        let _ = fs::remove_file(&args_file);
        let out = run(&ok, extra);
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(
            fs::read_to_string(&args_file).unwrap(),
            expect_args(flag, "reset_devices console=ttyS0,115200n8")
        );
        assert!(text(&out.stdout).contains("loaded as the crash kernel"));
    }

    // The user's own console replaces the mirrored one.
    let out = run(&ok, &["--append", "console=ttyS1,9600 nokaslr"]);
    assert!(out.status.success());
    assert_eq!(
        fs::read_to_string(&args_file).unwrap(),
        expect_args(None, "reset_devices console=ttyS1,9600 nokaslr")
    );

    let out = run(&fail, &["--file-syscall"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rkdumpctl load: error: kexec failed with exit code 1")
            && stderr.contains("Memory for crashkernel is not reserved"),
        "{stderr}"
    );

    let out = run(&dir.join("no-such-kexec"), &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("install kexec-tools or pass --kexec"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_refuses_bad_input_before_writing() {
    let dir = scratch("refuse");
    let (sys, proc) = fake_system(&dir);
    let kernel = dir.join("bzImage");
    fake_bzimage(&kernel);
    let blob_path = dir.join("cfg.blob");
    let long = "x".repeat(2000);
    let base = |kernel: &Path| {
        vec![
            "load".to_string(),
            "--dry-run".into(),
            "--kernel".into(),
            s(kernel).into(),
            "--blob-out".into(),
            s(&blob_path).into(),
            "--sysfs-root".into(),
            s(&sys).into(),
            "--proc-root".into(),
            s(&proc).into(),
        ]
    };
    let run = |args: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_rkdumpctl"))
            .args(args)
            .output()
            .unwrap()
    };

    // Too long for kexec_load (and so for auto), fine for kexec_file_load alone.
    let mut a = base(&kernel);
    a.extend(["--append".into(), long.clone()]);
    let out = run(a);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is too long"),
        "{}",
        text(&out.stderr)
    );
    assert!(!blob_path.exists());
    let mut a = base(&kernel);
    a.extend(["--append".into(), long, "--file-syscall".into()]);
    assert!(run(a).status.success());
    fs::remove_file(&blob_path).unwrap();

    // Not a bzImage.
    let elf = dir.join("rkdump.elf");
    fs::write(&elf, b"\x7fELF").unwrap();
    let out = run(base(&elf));
    assert!(text(&out.stderr).contains("not a Linux boot-protocol image"));
    assert!(!blob_path.exists());

    // Both syscall flags.
    let mut a = base(&kernel);
    a.extend(["--file-syscall".into(), "--legacy-syscall".into()]);
    let out = run(a);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"));
    fs::remove_dir_all(&dir).unwrap();
}
