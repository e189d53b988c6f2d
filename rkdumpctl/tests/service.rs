//! `rkdumpctl boot`, `reload`, `status` and `estimate` on a fake system: sysfs (PCI functions,
//! kexec state files, lockdown), procfs (iomem, meminfo, kpageflags, boot id), a dump disk image
//! carrying a record written with the capture kernel's label API, and a fake kexec that sets
//! `kexec_crash_loaded` the way the kernel does. Every "not armed" reason is produced for real
//! and checked by name, each against an armed baseline.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{rkdumpctl, text};
use rkdump_devices::label::{
    self, BlockXxh64, ChecksumKind, LABEL_BYTES, Label, RecordHeader, record_layout, xxh64_table,
};

const BOOT_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const MIB: u64 = 1 << 20;

struct Sys {
    root: PathBuf,
}

fn endpoint(vendor: u16, device: u16, class: [u8; 3], bar0: u32) -> Vec<u8> {
    let mut c = vec![0u8; 256];
    c[0..2].copy_from_slice(&vendor.to_le_bytes());
    c[2..4].copy_from_slice(&device.to_le_bytes());
    c[0x09..0x0C].copy_from_slice(&class);
    c[0x10..0x14].copy_from_slice(&bar0.to_le_bytes());
    c
}

/// A 16 MiB dump disk with a Complete record of `core` (crash time 1_700_000_000).
fn disk_with_dump(core: &[u8]) -> Vec<u8> {
    let cap = 16 * MIB;
    let l = Label::new([9; 16], cap, 1).unwrap();
    let mut disk = vec![0u8; cap as usize];
    disk[..LABEL_BYTES].copy_from_slice(&l.to_bytes());
    let r = record_layout(&l, core.len() as u64).unwrap();
    let mut h = RecordHeader::new(
        &l,
        &r,
        core.len() as u64,
        1_700_000_000,
        [5; 16],
        b"6.1.0-test",
    );
    h.flags = ChecksumKind::Full as u32;
    let at = (r.data_lba * 512) as usize;
    disk[at..at + core.len()].copy_from_slice(core);
    let mut sums = BlockXxh64::new(r.block_size, ChecksumKind::Full);
    sums.update(core);
    let t = xxh64_table(&sums.finish());
    let ta = (r.table_lba * 512) as usize;
    disk[ta..ta + t.len()].copy_from_slice(&t);
    h.finish(core.len() as u64);
    let ha = l.data_offset as usize;
    disk[ha..ha + label::HEADER_BYTES].copy_from_slice(&h.to_bytes());
    disk
}

impl Sys {
    fn new(name: &str) -> Self {
        let root = common::scratch(&format!("service-{name}"));
        let s = Sys { root };
        let sys = s.p("sys");
        fs::create_dir_all(sys.join("kernel")).unwrap();
        fs::create_dir_all(sys.join("block")).unwrap();
        fs::write(sys.join("kernel/kexec_crash_loaded"), "0\n").unwrap();
        fs::write(
            sys.join("kernel/kexec_crash_size"),
            format!("{}\n", 256 * MIB),
        )
        .unwrap();
        s.add_pci("0000:00:00.0", &endpoint(0x8086, 0x29c0, [0, 0, 6], 0));
        s.add_pci(
            "0000:00:04.0",
            &endpoint(0x1af4, 0x1001, [0, 0, 1], 0xfebc_1000),
        );
        let proc = s.p("proc");
        fs::create_dir_all(proc.join("sys/kernel/random")).unwrap();
        fs::write(
            proc.join("sys/kernel/random/boot_id"),
            format!("{BOOT_ID}\n"),
        )
        .unwrap();
        fs::write(proc.join("sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        fs::write(proc.join("cmdline"), "root=/dev/vda console=ttyS0,115200\n").unwrap();
        // 64 MiB of RAM, 16 MiB of it the crash kernel's.
        fs::write(
            proc.join("iomem"),
            "00000000-00000fff : Reserved\n00001000-04000fff : System RAM\n  03000000-03ffffff : Crash kernel\n",
        )
        .unwrap();
        // 40 MiB free: at level 31 the dump (8 MiB) fits the 16 MiB disk.
        fs::write(
            proc.join("meminfo"),
            "MemTotal: 65536 kB\nMemFree: 40960 kB\n",
        )
        .unwrap();
        fs::write(proc.join("kpageflags"), vec![0u8; 8 * 16384]).unwrap();
        // The dump disk, empty (labelled, no record).
        fs::create_dir_all(s.p("dev")).unwrap();
        let mut d = vec![0u8; 16 * MIB as usize];
        d[..LABEL_BYTES].copy_from_slice(&Label::new([9; 16], 16 * MIB, 1).unwrap().to_bytes());
        fs::write(s.p("dev/vdb"), d).unwrap();
        // The kernel: a bzImage header with init_size 4 MiB.
        let mut k = vec![0u8; 0x1000];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        k[0x238..0x23C].copy_from_slice(&4095u32.to_le_bytes());
        k[0x260..0x264].copy_from_slice(&(4 * MIB as u32).to_le_bytes());
        fs::write(s.p("bzImage"), k).unwrap();
        // A kexec that logs its arguments and, for `-p`, marks the crash kernel loaded; refuses
        // `-s` when `refuse-file` exists (as a kernel refusing kexec_file_load).
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> {log}\nfor a in \"$@\"; do [ \"$a\" = -s ] && [ -e {refuse} ] && \
             {{ echo 'kexec_file_load failed: Key was rejected by service' >&2; exit 1; }}; done\n\
             echo 1 > {loaded}\n",
            log = s.p("kexec.log").display(),
            refuse = s.p("refuse-file").display(),
            loaded = sys.join("kernel/kexec_crash_loaded").display()
        );
        fs::write(s.p("kexec"), script).unwrap();
        fs::set_permissions(s.p("kexec"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            s.p("rkdump.conf"),
            format!(
                "device = {}\nkernel = {}\nsave_dir = {}\nlevel = 31\nkeep = 2\n",
                s.p("dev/vdb").display(),
                s.p("bzImage").display(),
                s.p("crash").display()
            ),
        )
        .unwrap();
        s
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn add_pci(&self, bdf: &str, config: &[u8]) {
        let d = self.p("sys/bus/pci/devices").join(bdf);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("config"), config).unwrap();
    }

    fn run(&self, cmd: &str, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![
            cmd.into(),
            "--config".into(),
            self.p("rkdump.conf").display().to_string(),
        ];
        if cmd != "estimate" {
            for (flag, rel) in [
                ("--state-dir", "state"),
                ("--dev-root", "dev"),
                ("--kexec", "kexec"),
            ] {
                args.push(flag.into());
                args.push(self.p(rel).display().to_string());
            }
            args.push("--sysfs-root".into());
            args.push(self.p("sys").display().to_string());
        }
        args.push("--proc-root".into());
        args.push(self.p("proc").display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        rkdumpctl(&args)
    }

    fn status(&self) -> (bool, String) {
        let o = self.run("status", &[]);
        (
            o.status.success(),
            format!("{}{}", text(&o.stdout), text(&o.stderr)),
        )
    }

    fn saved_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.p("crash"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn out(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

#[test]
fn boot_saves_once_marks_saved_and_arms() {
    let s = Sys::new("boot");
    let core: Vec<u8> = (0..3 * MIB as usize).map(|i| (i * 7 % 253) as u8).collect();
    fs::write(s.p("dev/vdb"), disk_with_dump(&core)).unwrap();

    // Before anything: not armed, because nothing is loaded (and status says so, exit 1).
    let (armed, msg) = s.status();
    assert!(!armed);
    assert!(msg.contains("no crash kernel is loaded"), "{msg}");

    // Boot: saves the pending dump, marks it saved, loads, armed.
    let o = s.run("boot", &[]);
    let msg = out(&o);
    assert!(o.status.success(), "{msg}");
    assert!(msg.contains("rkdumpctl boot: armed"), "{msg}");
    let dirs = s.saved_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].ends_with("20231114T221320Z-6.1.0-test"), "{dirs:?}");
    assert_eq!(fs::read(dirs[0].join("vmcore")).unwrap(), core);
    let meta = fs::read_to_string(dirs[0].join("rkdump.json")).unwrap();
    assert!(meta.contains("\"verified\": \"every byte\""), "{meta}");
    // The record on the disk is now marked saved.
    let img = fs::read(s.p("dev/vdb")).unwrap();
    let lab = Label::parse(&img[..LABEL_BYTES]).unwrap();
    let h = RecordHeader::parse(&lab, &img[MIB as usize..MIB as usize + 4096]).unwrap();
    assert!(h.is_saved());
    // What was loaded: kexec_file_load first, with the blob and the configured level.
    let log = fs::read_to_string(s.p("kexec.log")).unwrap();
    assert!(log.contains("rkdump.level=31"), "{log}");
    assert!(log.trim_end().ends_with("-s"), "{log}");
    let st = fs::read_to_string(s.p("state/state.json")).unwrap();
    assert!(st.contains("\"syscall\": \"kexec_file_load\""), "{st}");

    // Status: armed, exit 0, shows target and blob.
    let (armed, msg) = s.status();
    assert!(armed, "{msg}");
    assert!(msg.contains("rkdump: armed"), "{msg}");
    assert!(msg.contains("label valid"), "{msg}");
    assert!(msg.contains("PCI since snapshot:   no change"), "{msg}");
    assert!(
        msg.contains("last dump:") && msg.contains("6.1.0-test"),
        "{msg}"
    );

    // A third boot (second without a crash) saves nothing new.
    let o = s.run("boot", &[]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(!out(&o).contains("saved the"), "{}", out(&o));
    assert_eq!(s.saved_dirs().len(), 1);

    // JSON says the same.
    let o = s.run("status", &["--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["armed"], true);
    assert_eq!(j["targets"][0]["label"], "valid");
}

#[test]
fn each_not_armed_reason_is_named() {
    let s = Sys::new("reasons");
    let o = s.run("boot", &[]);
    assert!(o.status.success(), "{}", out(&o));
    let baseline = || {
        let (armed, msg) = s.status();
        assert!(armed, "baseline not armed: {msg}");
    };
    let expect = |what: &str| {
        let (armed, msg) = s.status();
        assert!(!armed, "still armed, expected {what}: {msg}");
        assert!(msg.contains(what), "expected {what:?} in: {msg}");
    };
    baseline();

    // Nothing loaded (e.g. `kexec -p -u`).
    fs::write(s.p("sys/kernel/kexec_crash_loaded"), "0\n").unwrap();
    expect("no crash kernel is loaded");
    fs::write(s.p("sys/kernel/kexec_crash_loaded"), "1\n").unwrap();
    baseline();

    // The label is gone.
    let good = fs::read(s.p("dev/vdb")).unwrap();
    let mut bad = good.clone();
    bad[..8].copy_from_slice(b"XXXXXXXX");
    fs::write(s.p("dev/vdb"), &bad).unwrap();
    expect("no valid rkdump label");
    fs::write(s.p("dev/vdb"), &good).unwrap();
    baseline();

    // The target is smaller than the estimate: RAM grows to 1 GiB, most of it user pages.
    let iomem = fs::read_to_string(s.p("proc/iomem")).unwrap();
    fs::write(s.p("proc/iomem"), "00001000-40000fff : System RAM\n").unwrap();
    expect("is too small");
    fs::write(s.p("proc/iomem"), &iomem).unwrap();
    baseline();

    // A PCI function hot-added after the snapshot.
    s.add_pci(
        "0000:00:05.0",
        &endpoint(0x1af4, 0x1042, [0, 0, 1], 0xfebd_0000),
    );
    expect("added 0000:00:05.0 (1af4:1042");
    // `reload` (what the udev rule runs) takes a new snapshot: armed again, reason recorded.
    let o = s.run("reload", &["--reason=add:pci:0000:00:05.0"]);
    assert!(o.status.success(), "{}", out(&o));
    baseline();
    let (_, msg) = s.status();
    assert!(msg.contains("reload: add:pci:0000:00:05.0"), "{msg}");

    // A function moved to another address, and one whose BARs were re-assigned.
    fs::rename(
        s.p("sys/bus/pci/devices/0000:00:05.0"),
        s.p("sys/bus/pci/devices/0000:00:06.0"),
    )
    .unwrap();
    expect("re-addressed 0000:00:05.0 -> 0000:00:06.0");
    fs::rename(
        s.p("sys/bus/pci/devices/0000:00:06.0"),
        s.p("sys/bus/pci/devices/0000:00:05.0"),
    )
    .unwrap();
    baseline();
    s.add_pci(
        "0000:00:04.0",
        &endpoint(0x1af4, 0x1001, [0, 0, 1], 0xfe00_0000),
    );
    expect("BARs re-assigned 0000:00:04.0");
    s.add_pci(
        "0000:00:04.0",
        &endpoint(0x1af4, 0x1001, [0, 0, 1], 0xfebc_1000),
    );
    baseline();

    // The configured image changed after the load.
    let k = fs::read(s.p("bzImage")).unwrap();
    let mut k2 = k.clone();
    k2.push(0);
    fs::write(s.p("bzImage"), &k2).unwrap();
    expect("changed since it was loaded");
    fs::write(s.p("bzImage"), &k).unwrap();
    baseline();

    // No crashkernel= reservation, then one too small.
    fs::write(s.p("sys/kernel/kexec_crash_size"), "0\n").unwrap();
    expect("no memory is reserved for a crash kernel");
    fs::write(s.p("sys/kernel/kexec_crash_size"), format!("{}\n", 4 * MIB)).unwrap();
    expect("smaller than rkdump needs");
    fs::write(
        s.p("sys/kernel/kexec_crash_size"),
        format!("{}\n", 256 * MIB),
    )
    .unwrap();
    baseline();

    // A reboot: the state file's load is from an earlier boot.
    fs::write(
        s.p("proc/sys/kernel/random/boot_id"),
        "11111111-2222-3333-4444-555555555555\n",
    )
    .unwrap();
    expect("from an earlier boot");
    fs::write(
        s.p("proc/sys/kernel/random/boot_id"),
        format!("{BOOT_ID}\n"),
    )
    .unwrap();
    baseline();

    // Something else loaded a crash kernel (no state).
    fs::remove_file(s.p("state/state.json")).unwrap();
    expect("not by `rkdumpctl boot`/`reload`");
}

#[test]
fn boot_falls_back_to_kexec_load_and_says_why() {
    let s = Sys::new("fallback");
    fs::write(s.p("refuse-file"), "").unwrap();
    let o = s.run("boot", &[]);
    assert!(o.status.success(), "{}", out(&o));
    let (armed, msg) = s.status();
    assert!(armed, "{msg}");
    assert!(
        msg.contains("loaded with:          kexec_load (fallback after kexec_file_load refused"),
        "{msg}"
    );
    // With `syscall = file` nothing else is tried: not armed, and the lockdown/signature
    // explanation is given.
    fs::write(s.p("sys/kernel/kexec_crash_loaded"), "0\n").unwrap();
    let o = s.run("boot", &["--set", "syscall=file"]);
    let msg = out(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(msg.contains("requires a signed crash kernel"), "{msg}");
    assert!(msg.contains("sbsign --key"), "{msg}");
    assert!(msg.contains("not armed"), "{msg}");
}

#[test]
fn load_under_lockdown_explains_the_signed_image() {
    let s = Sys::new("lockdown");
    fs::create_dir_all(s.p("sys/kernel/security")).unwrap();
    fs::write(
        s.p("sys/kernel/security/lockdown"),
        "none [integrity] confidentiality\n",
    )
    .unwrap();
    fs::write(s.p("refuse-file"), "").unwrap();
    let o = rkdumpctl([
        "load",
        "--file-syscall",
        "--kernel",
        s.p("bzImage").to_str().unwrap(),
        "--kexec",
        s.p("kexec").to_str().unwrap(),
        "--blob-out",
        s.p("blob").to_str().unwrap(),
        "--sysfs-root",
        s.p("sys").to_str().unwrap(),
        "--proc-root",
        s.p("proc").to_str().unwrap(),
    ]);
    let msg = out(&o);
    assert!(!o.status.success());
    assert!(msg.contains("locked down (integrity)"), "{msg}");
    assert!(msg.contains("A signed image is needed"), "{msg}");
}

#[test]
fn estimate_from_a_fake_proc() {
    let s = Sys::new("estimate");
    // 16384 frames: 4096 user pages (ANON, bit 12), 2048 cache (LRU, bit 5), rest unflagged.
    let mut kpf = Vec::new();
    for i in 0..16384u64 {
        let f: u64 = if i < 4096 {
            1 << 12
        } else if i < 6144 {
            1 << 5
        } else {
            0
        };
        kpf.extend_from_slice(&f.to_le_bytes());
    }
    fs::write(s.p("proc/kpageflags"), kpf).unwrap();
    fs::write(s.p("proc/meminfo"), "MemFree: 8192 kB\n").unwrap();
    let o = s.run("estimate", &["--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // 64 MiB RAM - 16 MiB crash kernel - 8 MiB free - 16 MiB user - 8 MiB cache = 16 MiB.
    assert_eq!(j["kept_bytes"], 16 * MIB);
    assert_eq!(j["pages"]["user"], 4096);
    let o = s.run("estimate", &["--set", "level=0"]);
    assert!(out(&o).contains("48.0 MiB"), "{}", out(&o));
}

#[test]
fn keep_prunes_the_oldest_saved_dump() {
    let s = Sys::new("prune");
    for ts_dir in ["20200101T000000Z-old", "20210101T000000Z-older"] {
        fs::create_dir_all(s.p("crash").join(ts_dir)).unwrap();
        fs::write(s.p("crash").join(ts_dir).join("rkdump.json"), "{}").unwrap();
    }
    let core = vec![0x5au8; MIB as usize];
    fs::write(s.p("dev/vdb"), disk_with_dump(&core)).unwrap();
    let o = s.run("boot", &[]);
    assert!(o.status.success(), "{}", out(&o));
    let names: Vec<String> = s
        .saved_dirs()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["20210101T000000Z-older", "20231114T221320Z-6.1.0-test"],
        "keep = 2"
    );
    assert!(Path::new(&s.p("crash/20231114T221320Z-6.1.0-test/vmcore")).exists());
}
