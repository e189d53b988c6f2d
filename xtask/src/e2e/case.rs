//! The e2e cases: loader, memory size, crashkernel reservation, initrd, image and expectation.

use std::time::Duration;

/// Which `kexec -p` loader a case uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    /// `kexec -p -c`: kexec-tools builds everything, `kexec_load` syscall.
    Kl,
    /// `kexec -p -s`: the running kernel builds everything, `kexec_file_load` syscall.
    Kf,
}

impl Loader {
    /// The kexec flag letter.
    pub fn flag(self) -> &'static str {
        match self {
            Loader::Kl => "c",
            Loader::Kf => "s",
        }
    }
    /// The syscall name.
    pub fn syscall(self) -> &'static str {
        match self {
            Loader::Kl => "kexec_load",
            Loader::Kf => "kexec_file_load",
        }
    }
}

/// What kernel `kexec -p` loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureKind {
    /// rkdump: checks its `rkdump: ...` lines.
    Rkdump,
    /// A Linux kernel (the peer): checks that it boots and exposes /proc/vmcore.
    Linux,
}

/// One e2e scenario.
#[derive(Clone, Debug)]
pub struct Case {
    /// Name, also the directory under target/e2e/.
    pub name: String,
    /// Capture kernel kind.
    pub capture: CaptureKind,
    /// Loaders /init tries, in order (normal cases: exactly one).
    pub loaders: Vec<Loader>,
    /// Guest memory (`-m`).
    pub memory: String,
    /// vCPUs (`-smp`).
    pub smp: u32,
    /// The first kernel's crashkernel parameter(s).
    pub crashkernel: String,
    /// Pass a file as `--initrd` (the blob for rkdump; a Linux capture kernel always gets its cpio).
    pub initrd: bool,
    /// Corrupt the image header and expect every loader to refuse it.
    pub broken_image: bool,
    /// What file rkdump is asked for, before [`Case::capture_extra`] (a later parameter wins):
    /// [`ELF_LEVEL0`] for every case whose checks read the `/proc/vmcore`-identical ELF with
    /// every marker page, empty for the cases that check rkdump's own defaults (level 31, kdump,
    /// lzo) or name their format in `capture_extra`.
    pub dump_options: String,
    /// Extra capture kernel parameters.
    pub capture_extra: String,
    /// Marker size in MiB (0: no marker).
    pub marker_mib: u32,
    /// Pass `-d` to kexec.
    pub kexec_debug: bool,
    /// Hard timeout for the whole QEMU run.
    pub timeout: Duration,
    /// Give up this long after the crash if the capture kernel printed nothing of its own.
    pub capture_silence: Duration,
    /// Extra QEMU arguments (devices for later cases).
    pub extra_qemu_args: Vec<String>,
    /// Wait for rkdump's whole dump and final action; otherwise the run stops (and passes the
    /// "run ended" check) at `rkdump: dump start`, once everything the handoff checks need is out.
    pub full_run: bool,
    /// Linux capture only: copy /proc/vmcore to an NVMe disk (`vmcore.img`) and check the
    /// marker pages in it on the host.
    pub save_vmcore: bool,
    /// The marker tag.
    pub tag: u64,
    /// rkdump dump disk behind a pcie-root-port, labelled with `rkdumpctl prepare` (`dump.img`).
    pub dump_disk: Option<DiskKind>,
    /// The first kernel keeps direct-I/O reads running on the dump disk when it crashes.
    pub io_at_crash: bool,
    /// Negative control: rkdump must fail on the dump disk the way QEMU predicts.
    pub expect_disk_failure: bool,
    /// Benchmark raw limit: before any `kexec`, the first kernel's /init writes (disk, block
    /// size in MiB, block count) zeros to the disk with `dd oflag=direct`, reports, and powers
    /// off (`e2e.rawdd=<dev>:<blocks>:<MiB>`; no crash).
    pub raw_dd: Option<(DiskKind, u32, u64)>,
    /// Load rkdump the way users do: `rkdumpctl load` (PCI snapshot blob as initrd).
    pub loadctl: bool,
    /// Corrupt the blob between snapshot and load (`rkdumpctl load --dry-run`, flip, kexec).
    pub corrupt_blob: bool,
    /// After loading, move a bridge's memory window and its device's BAR0 by this many MiB
    /// (`<bridge bdf>,<device bdf>,<MiB>`): the old kernel's live state then differs from the
    /// firmware state the blob holds.
    pub scramble: Option<String>,
    /// The capture command line points `elfcorehdr=` at memory that holds no ELF core header
    /// (a later `elfcorehdr=` wins, as in Linux): rkdump must say so and end the run itself.
    pub bad_elfcorehdr: bool,
    /// Write the dump disk image full of zeros before the run instead of leaving it sparse
    /// (benchmark): the host then holds its pages before QEMU writes the dump into them. On
    /// this machine type memory the host has not touched yet (free-page reporting hands freed
    /// RAM back to the outer hypervisor) comes in at about 450 MB/s, slower than the dump.
    pub fill_dump_disk: bool,
    /// Power cut: kill QEMU (after the runner's 2 s grace) once the console showed this many
    /// `rkdump: checkpoint` lines, then check that `rkdumpctl save` refuses the Incomplete
    /// record and `save --partial` recovers a verified prefix covering every checkpoint.
    pub power_cut_after: Option<usize>,
    /// Benchmark anchor: once the marker is ready, the first kernel's /init says `hold ready`
    /// and idles (no kexec, no crash) while the host dumps the guest through QMP
    /// (`e2e.hold=1`).
    pub hold: bool,
    /// Crash by ending init (`e2e.crash=exit`: panic "Attempted to kill init!") instead of
    /// sysrq `c`: the crash report must name that reason.
    pub crash_exit: bool,
    /// A filtered dump (`rkdump.level=` with bit 8): the marker pages (user data) must be absent.
    pub markers_absent: bool,
    /// File target (xtask/src/e2e/targets.rs): the first kernel's file system (ext4 or xfs) is
    /// on this disk (`root.img`); /init prepares a dump file there and loads with `--file`.
    pub file_root: Option<DiskKind>,
    /// The file target's file system is xfs (else ext4).
    pub file_xfs: bool,
    /// Firmware, IOMMU and other platform hardware (`hardware` module).
    pub platform: super::hardware::Platform,
}

/// Controller of an e2e dump disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKind {
    /// virtio-blk-pci (modern), one queue.
    Virtio,
    /// QEMU nvme.
    Nvme,
    /// A disk on port 0 of q35's built-in ICH9 AHCI controller (00:1f.2); needs the generic
    /// kernel (the cloud kernel has no AHCI driver).
    Ahci,
}

impl DiskKind {
    /// Block device name in the first kernel.
    pub fn linux_dev(self) -> &'static str {
        match self {
            DiskKind::Virtio => "vda",
            DiskKind::Nvme => "nvme0n1",
            DiskKind::Ahci => "sda",
        }
    }
}

/// Names of the standard cases, in run order.
pub const CASE_NAMES: [&str; 9] = [
    "kl-low",
    "kf-low",
    "kl-low-initrd",
    "kf-low-initrd",
    "kl-high",
    "kf-high",
    "kl-high-only",
    "kf-high-only",
    "broken-image",
];

/// rkdump-only cases that write and verify a whole dump (and their negative controls).
pub const DUMP_CASE_NAMES: [&str; 40] = [
    "dump-virtio",
    "dump-nvme",
    "noreset-virtio",
    "noreset-nvme",
    "blob-sbr-kf",
    "blob-sbr-kl",
    "noblob-sbr",
    "badblob-sbr",
    "selfassign-sbr",
    "dump-la57",
    "bad-elfcorehdr",
    "dump-serial",
    "power-cut",
    "report-exit",
    "dump-level31",
    "dump-level1",
    "dump-la57-level31",
    "dump-uefi",
    "dump-uefi-efi",
    "dump-uefi-kl",
    "dump-iommu-nvme",
    "dump-iommu-virtio",
    "noiommu-nvme",
    "noiommu-virtio",
    "dump-watchdog-pet",
    "dump-watchdog-off",
    "dump-watchdog-keep",
    "dump-watchdog-pet-serial",
    "dump-ahci",
    "noreset-ahci",
    "dump-usb-nic",
    "kdump-zlib",
    "kdump-lzo",
    "kdump-level31",
    "kdump-serial",
    "dump-default",
    "kdump-zlib-4g",
    "kdump-level31-4g",
    "kdump-zlib-16g",
    "kdump-level31-16g",
];

/// Cases that take over ~3 minutes here (a full serial dump at QEMU's UART speed, ~0.5 MiB/s):
/// `cargo xtask test` runs them only with `--slow`; `cargo xtask e2e` runs them like the others.
/// The 16 GiB cases are slow too (the level-0 dump reads and compresses every page; see
/// docs/testing.md for measured times); the 4 GiB ones take about a minute each.
pub const SLOW_CASE_NAMES: [&str; 4] = [
    "dump-serial",
    "dump-watchdog-pet-serial",
    "kdump-zlib-16g",
    "kdump-level31-16g",
];

/// Guest sizes (GiB) the large-guest cases run at, beside the base cases' 1 GiB.
pub const LARGE_GUEST_GIB: [u32; 2] = [4, 16];

/// Extra hard timeout per GiB of a large guest: the first kernel's boot (struct page init),
/// the marker and the dump's page scan grow with RAM under TCG on a busy host.
const LARGE_GUEST_SECS_PER_GIB: u64 = 90;

/// `<base>-<N>g` with N one of [`LARGE_GUEST_GIB`]: the base case on an N GiB guest.
pub fn large_guest(name: &str) -> Option<(&str, u32)> {
    let (base, size) = name.rsplit_once('-')?;
    let gib: u32 = size.strip_suffix('g')?.parse().ok()?;
    LARGE_GUEST_GIB.contains(&gib).then_some((base, gib))
}

/// The capture kernel command line a Linux peer gets (Debian kdump-tools' defaults + serial
/// console + immediate reboot on panic so a failing capture ends the run).
pub const LINUX_CAPTURE_APPEND: &str =
    "console=ttyS0 reset_devices nr_cpus=1 irqpoll nousb panic=-1";

/// The capture kernel command line rkdump gets (kexec adds `elfcorehdr=`).
pub const RKDUMP_APPEND: &str = "console=ttyS0 reset_devices rkdump.action=poweroff";

/// Every page, as the `/proc/vmcore`-identical ELF core (rkdump's default is level 31 kdump).
pub const ELF_LEVEL0: &str = "rkdump.level=0 rkdump.format=elf";

fn fresh_tag(name: &str) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    name.bytes().fold(t, |h, b| h.rotate_left(5) ^ u64::from(b))
}

impl Case {
    /// A standard case by name.
    pub fn standard(name: &str, capture: CaptureKind) -> Option<Case> {
        let linux = capture == CaptureKind::Linux;
        // Linux needs >= 80M with a busybox initrd (docs/testing.md#reference-measurements); 256M matches the peer baseline.
        let low = if linux {
            "crashkernel=256M"
        } else {
            "crashkernel=64M"
        };
        #[derive(Clone, Copy, PartialEq)]
        enum Region {
            Low,
            HighPlusLow,
            HighOnly,
        }
        let (loaders, region, initrd, broken) = match name {
            "kl-low" => (vec![Loader::Kl], Region::Low, false, false),
            "kf-low" => (vec![Loader::Kf], Region::Low, false, false),
            "kl-low-initrd" => (vec![Loader::Kl], Region::Low, true, false),
            "kf-low-initrd" => (vec![Loader::Kf], Region::Low, true, false),
            "kl-high" => (vec![Loader::Kl], Region::HighPlusLow, false, false),
            "kf-high" => (vec![Loader::Kf], Region::HighPlusLow, false, false),
            "kl-high-only" => (vec![Loader::Kl], Region::HighOnly, false, false),
            "kf-high-only" => (vec![Loader::Kf], Region::HighOnly, false, false),
            "broken-image" => (vec![Loader::Kl, Loader::Kf], Region::Low, false, true),
            _ => return Case::dump(name, capture),
        };
        // Above 4 GiB (guest -m 5G: RAM 0x100000000-0x1bfffffff), Debian 6.1 reserves `,high`
        // top-down (e.g. 0x1bb000000 for 64M) plus a low region: `,low` sized, 256M by default,
        // none with `crashkernel=0,low`. (`crashkernel=64M@4608M` also gets the automatic 256M low.)
        // kexec-tools 2.0.25 (-c) loads into the highest region, kexec_file_load into crashk_res.
        let crashkernel = match (region, linux) {
            (Region::Low, _) => low,
            (Region::HighPlusLow, false) => "crashkernel=64M,high crashkernel=16M,low",
            (Region::HighPlusLow, true) => "crashkernel=256M,high crashkernel=64M,low",
            (Region::HighOnly, false) => "crashkernel=64M,high crashkernel=0,low",
            (Region::HighOnly, true) => "crashkernel=256M,high crashkernel=0,low",
        };
        let high = region != Region::Low;
        Some(Case {
            name: name.to_string(),
            capture,
            loaders,
            memory: if high { "5G" } else { "1G" }.to_string(),
            smp: 2,
            crashkernel: crashkernel.to_string(),
            initrd,
            broken_image: broken,
            dump_options: if linux { "" } else { ELF_LEVEL0 }.to_string(),
            capture_extra: String::new(),
            marker_mib: if broken { 0 } else { 64 },
            kexec_debug: false,
            timeout: Duration::from_secs(120),
            capture_silence: Duration::from_secs(40),
            extra_qemu_args: Vec::new(),
            full_run: false,
            save_vmcore: false,
            tag: fresh_tag(name),
            dump_disk: None,
            io_at_crash: false,
            expect_disk_failure: false,
            loadctl: false,
            corrupt_blob: false,
            scramble: None,
            bad_elfcorehdr: false,
            raw_dd: None,
            fill_dump_disk: false,
            power_cut_after: None,
            hold: false,
            crash_exit: false,
            markers_absent: false,
            file_root: None,
            file_xfs: false,
            platform: super::hardware::Platform::default(),
        })
    }

    /// Firmware-configuration cases (issue 7): the dump NVMe's BAR and its root port's window are
    /// moved before the crash; rkdump resets the device with a secondary bus reset and must
    /// restore addresses from the blob `rkdumpctl load` handed over (or, without a usable
    /// blob, from its pre-reset snapshot) before the dump can complete.
    fn blob(name: &str, capture: CaptureKind) -> Option<Case> {
        let (loader, loadctl, corrupt) = match name {
            "blob-sbr-kf" => (Loader::Kf, true, false),
            "blob-sbr-kl" => (Loader::Kl, true, false),
            "noblob-sbr" => (Loader::Kf, false, false),
            "badblob-sbr" => (Loader::Kf, true, true),
            "selfassign-sbr" => (Loader::Kl, false, false),
            _ => return None,
        };
        let mut c = Case::dump("dump-nvme", capture)?;
        c.name = name.to_string();
        c.loaders = vec![loader];
        c.io_at_crash = false;
        c.loadctl = loadctl;
        c.corrupt_blob = corrupt;
        c.scramble = Some(if name == "selfassign-sbr" {
            "0000:00:01.0,0000:01:00.0,zero".to_string()
        } else {
            "0000:00:01.0,0000:01:00.0,-16".to_string()
        });
        c.capture_extra = "rkdump.reset=sbr".to_string();
        c.tag = fresh_tag(name);
        Some(c)
    }

    /// Full-dump cases: rkdump writes the whole vmcore to a labelled disk the first kernel was
    /// reading from when it crashed; the host extracts it with `rkdumpctl save` and checks it.
    /// `noreset-*` are the negative controls (no reset, no preinit): the failure QEMU predicts.
    fn dump(name: &str, capture: CaptureKind) -> Option<Case> {
        if capture != CaptureKind::Rkdump {
            return None;
        }
        if let Some((base, gib)) = large_guest(name) {
            // The same case on a bigger guest (issue 13's 4 and 16 GiB rows): only memory and
            // time change; rkdump keeps the base case's crashkernel (16M for the disk cases).
            let mut c = Case::dump(base, capture)?;
            c.name = name.to_string();
            c.memory = format!("{gib}G");
            c.timeout += Duration::from_secs(LARGE_GUEST_SECS_PER_GIB * u64::from(gib));
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if let Some(c) = Case::blob(name, capture) {
            return Some(c);
        }
        if let Some(c) = Case::target(name, capture) {
            return Some(c);
        }
        if let Some(c) = super::hardware::case(name, capture) {
            return Some(c);
        }
        if name == "bad-elfcorehdr" {
            let mut c = Case::standard("kf-low", capture)?;
            c.name = name.to_string();
            c.crashkernel = "crashkernel=16M".to_string();
            // Real-mode IVT: RAM, readable, never an ELF header.
            c.capture_extra = "elfcorehdr=0x1000".to_string();
            c.bad_elfcorehdr = true;
            c.full_run = true;
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if name == "dump-la57" {
            // A CPU with 5-level paging: the Debian kernel runs with CR4.LA57=1, kexec_file_load
            // insists on XLF_5LEVEL, and rkdump must enter and dump with LA57 still on.
            let mut c = Case::dump("dump-nvme", capture)?;
            c.name = name.to_string();
            c.loaders = vec![Loader::Kf];
            c.extra_qemu_args = vec!["-cpu".to_string(), "qemu64,+la57".to_string()];
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if name == "dump-serial" {
            // The whole vmcore over COM2. QEMU's UART moves ~0.5 MiB/s here (one host write per
            // byte), so the guest is kept small for the run to stay within CI time; 192M because
            // the e2e initramfs (17-21 MB, unpacked in RAM) leaves a 128M guest out of memory.
            let mut c = Case::standard("kf-low", capture)?;
            c.name = name.to_string();
            c.memory = "192M".to_string();
            c.crashkernel = "crashkernel=16M".to_string();
            c.marker_mib = 16;
            c.full_run = true;
            c.timeout = Duration::from_secs(1200);
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if name == "kdump-serial" {
            // The kdump-compressed file over COM2 (a version-2 stream: offsets out of order, size
            // at the end), rebuilt by `rkdumpctl recv` and opened by makedumpfile and crash. A
            // 1 GiB guest as the disk kdump cases: level 31 lzo is ~24 MB, about a minute at
            // QEMU's UART speed; the marker's user data must be absent.
            let mut c = Case::dump("dump-serial", capture)?;
            c.name = name.to_string();
            c.dump_options.clear();
            c.memory = "1G".to_string();
            c.marker_mib = 64;
            c.capture_extra = "rkdump.format=kdump rkdump.compress=lzo rkdump.level=31".to_string();
            c.markers_absent = true;
            c.timeout = Duration::from_secs(900);
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if name == "report-exit" {
            // A second crash reason for the crash report: init exits.
            let mut c = Case::dump("dump-nvme", capture)?;
            c.name = name.to_string();
            c.io_at_crash = false;
            c.crash_exit = true;
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if let Some(what) = name.strip_prefix("kdump-") {
            // rkdump.format=kdump: the kdump-compressed file on the NVMe record, opened by
            // makedumpfile and by crash with the Debian debug vmlinux (dumpcheck::kdump_check);
            // `kdump-level31` filters too (zlib), so the marker's user data must be absent.
            let mut c = Case::dump("dump-nvme", capture)?;
            c.name = name.to_string();
            c.dump_options.clear();
            c.capture_extra = match what.strip_prefix("level") {
                Some(level) => {
                    c.markers_absent = level.parse::<u8>().is_ok_and(|l| l & 8 != 0);
                    format!("rkdump.format=kdump rkdump.compress=zlib rkdump.level={level}")
                }
                None => format!("rkdump.format=kdump rkdump.compress={what} rkdump.level=0"),
            };
            c.timeout = Duration::from_secs(600);
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if name == "power-cut" {
            // The writer throttled (test-only switch) so the ~1.1 GB dump takes ~35 s and the
            // host can cut the power after two checkpoints, well before the end.
            let mut c = Case::dump("dump-virtio", capture)?;
            c.name = name.to_string();
            c.io_at_crash = false;
            c.capture_extra = "rkdump.checksum=full rkdump.throttle_mib_s=32".to_string();
            c.power_cut_after = Some(2);
            c.timeout = Duration::from_secs(180);
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if name == "dump-default" {
            // No level, format or codec asked: rkdump's defaults (level 31, kdump, lzo), checked
            // as the kdump cases are, the marker's user data absent.
            let mut c = Case::dump("dump-nvme", capture)?;
            c.name = name.to_string();
            c.dump_options.clear();
            c.markers_absent = true;
            c.timeout = Duration::from_secs(600);
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if name == "dump-la57-level31" {
            // The filter through a 5-level kernel's page tables and 52-bit mem_section.
            let mut c = Case::dump("dump-la57", capture)?;
            c.name = name.to_string();
            c.capture_extra = "rkdump.format=elf rkdump.level=31".to_string();
            c.markers_absent = true;
            c.tag = fresh_tag(name);
            return Some(c);
        }
        if let Some(level) = name.strip_prefix("dump-level") {
            // The page filter on a real crash (issue 13): level 31 leaves the marker's user data
            // out of the ELF dump; level 1 (zero pages, kept in ELF output) keeps everything.
            let level: u8 = level.parse().ok().filter(|l| *l <= 31)?;
            let mut c = Case::dump("dump-virtio", capture)?;
            c.name = name.to_string();
            c.capture_extra = format!("rkdump.format=elf rkdump.level={level}");
            c.markers_absent = level & 8 != 0;
            c.tag = fresh_tag(name);
            return Some(c);
        }
        let (loader, disk, fail) = match name {
            "dump-virtio" => (Loader::Kf, DiskKind::Virtio, false),
            "dump-nvme" => (Loader::Kl, DiskKind::Nvme, false),
            "noreset-virtio" => (Loader::Kf, DiskKind::Virtio, true),
            "noreset-nvme" => (Loader::Kl, DiskKind::Nvme, true),
            _ => return None,
        };
        let mut c = Case::standard("kf-low", capture)?;
        c.name = name.to_string();
        c.loaders = vec![loader];
        // rkdump needs far less than Linux: the whole crash region is 16 MiB.
        c.crashkernel = "crashkernel=16M".to_string();
        c.dump_disk = Some(disk);
        c.io_at_crash = true;
        c.expect_disk_failure = fail;
        c.full_run = !fail;
        c.timeout = Duration::from_secs(if fail { 150 } else { 300 });
        if fail {
            c.capture_extra = "rkdump.reset=none rkdump.nopreinit".to_string();
        }
        // Every dump case runs the default checksum (auto = every byte verified by `save`).
        c.tag = fresh_tag(name);
        Some(c)
    }

    /// How the dump disk image is created: zero-filled when [`Case::fill_dump_disk`], else sparse.
    pub fn dump_disk_fill(&self) -> rkdump_tests::disk::Fill {
        if self.fill_dump_disk {
            rkdump_tests::disk::Fill::Zeros
        } else {
            rkdump_tests::disk::Fill::Sparse
        }
    }

    /// Guest memory in bytes (`-m` with an M or G suffix).
    pub fn memory_bytes(&self) -> Option<u64> {
        let m = self.memory.trim();
        let (num, shift) = match m.chars().last()? {
            'G' | 'g' => (&m[..m.len() - 1], 30),
            'M' | 'm' => (&m[..m.len() - 1], 20),
            _ => (m, 20),
        };
        Some(num.parse::<u64>().ok()? << shift)
    }

    /// The loader of a normal case (the first one tried).
    pub fn loader(&self) -> Loader {
        self.loaders.first().copied().unwrap_or(Loader::Kl)
    }

    /// What /init passes as `--initrd`: `none`, `blob` (/e2e/initrd.bin) or `cpio` (/e2e/capture.cpio).
    pub fn initrd_kind(&self) -> &'static str {
        match (self.capture, self.initrd) {
            (CaptureKind::Linux, _) => "cpio",
            (CaptureKind::Rkdump, true) => "blob",
            (CaptureKind::Rkdump, false) => "none",
        }
    }

    /// The `--append` text given to kexec (the loader then adds `elfcorehdr=`).
    pub fn capture_cmdline(&self) -> String {
        let base = match self.capture {
            CaptureKind::Rkdump => RKDUMP_APPEND,
            CaptureKind::Linux => LINUX_CAPTURE_APPEND,
        };
        let mut s = base.to_string();
        if self.save_vmcore && self.capture == CaptureKind::Linux {
            s.push_str(" e2e.save=nvme0n1");
        }
        for extra in [self.dump_options.trim(), self.capture_extra.trim()] {
            if !extra.is_empty() {
                s.push(' ');
                s.push_str(extra);
            }
        }
        s
    }

    /// The options rkdump will run with, read by rkdump's own parser from
    /// [`Case::capture_cmdline`] (defaults included).
    pub fn rkdump_options(&self) -> rkdump_boot::cmdline::Options {
        rkdump_boot::cmdline::Options::parse(&self.capture_cmdline())
    }

    /// The first kernel's command line, carrying the case parameters for /init.
    pub fn first_kernel_cmdline(&self) -> Result<String, String> {
        let append = self.capture_cmdline();
        if append.contains('"') {
            return Err(format!(
                "case {}: capture command line must not contain '\"'",
                self.name
            ));
        }
        let modes: Vec<&str> = self.loaders.iter().map(|l| l.flag()).collect();
        let mut io = match (self.io_at_crash, self.dump_disk.or(self.file_root)) {
            (true, Some(d)) => format!(" e2e.io={}", d.linux_dev()),
            _ => String::new(),
        };
        if let Some(d) = self.file_root {
            io.push_str(&format!(" e2e.fileroot={}", d.linux_dev()));
        }
        if let Some((disk, mib, blocks)) = self.raw_dd {
            io.push_str(&format!(" e2e.rawdd={}:{blocks}:{mib}", disk.linux_dev()));
        }
        if self.loadctl {
            io.push_str(&format!(
                " e2e.loadctl={}",
                if self.corrupt_blob { "corrupt" } else { "1" }
            ));
        }
        if let Some(sc) = &self.scramble {
            io.push_str(&format!(" e2e.scramble={sc}"));
        }
        if self.hold {
            io.push_str(" e2e.hold=1");
        }
        if self.crash_exit {
            io.push_str(" e2e.crash=exit");
        }
        Ok(format!(
            "console=ttyS0{io}{} {} e2e.mode={} e2e.initrd={} e2e.broken={} e2e.marker={} e2e.tag={:x}{} e2e.append=\"{}\"",
            self.platform.first_kernel_args(),
            self.crashkernel,
            modes.join(","),
            self.initrd_kind(),
            u8::from(self.broken_image),
            self.marker_mib,
            self.tag,
            if self.kexec_debug {
                " e2e.kexecdebug=1"
            } else {
                ""
            },
            append
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_standard_cases_exist() {
        for name in CASE_NAMES {
            for kind in [CaptureKind::Rkdump, CaptureKind::Linux] {
                let c = Case::standard(name, kind).unwrap();
                let cmd = c.first_kernel_cmdline().unwrap();
                assert!(cmd.contains("crashkernel="), "{cmd}");
                assert!(cmd.ends_with('"'), "{cmd}");
            }
        }
        assert!(Case::standard("nope", CaptureKind::Rkdump).is_none());
        for name in DUMP_CASE_NAMES {
            let c = Case::standard(name, CaptureKind::Rkdump).unwrap();
            let cmd = c.first_kernel_cmdline().unwrap();
            let io = !matches!(
                name,
                "dump-serial"
                    | "kdump-serial"
                    | "power-cut"
                    | "report-exit"
                    | "blob-sbr-kf"
                    | "blob-sbr-kl"
                    | "noblob-sbr"
                    | "badblob-sbr"
                    | "selfassign-sbr"
                    | "bad-elfcorehdr"
                    | "dump-watchdog-pet"
                    | "dump-watchdog-off"
                    | "dump-watchdog-keep"
                    | "dump-watchdog-pet-serial"
            );
            assert_eq!(cmd.contains(" e2e.io="), io, "{cmd}");
            assert_eq!(
                cmd.contains(" e2e.crash=exit"),
                name == "report-exit",
                "{cmd}"
            );
            assert_eq!(c.expect_disk_failure, name.starts_with("noreset"));
            assert!(Case::standard(name, CaptureKind::Linux).is_none());
            // rkdump's defaults are level 31 kdump: a case gets them only by asking.
            let o = c.rkdump_options();
            let kdump = o.format == rkdump_boot::cmdline::DumpFormat::Kdump;
            assert_eq!(
                kdump,
                name.starts_with("kdump-") || name == "dump-default",
                "{name}: {}",
                c.capture_cmdline()
            );
            assert_eq!(c.markers_absent, o.level & 8 != 0, "{name}");
        }
    }

    #[test]
    fn case_parameters_reach_init() {
        let c = Case::standard("kf-low-initrd", CaptureKind::Rkdump).unwrap();
        let cmd = c.first_kernel_cmdline().unwrap();
        assert!(cmd.contains(" e2e.mode=s "));
        assert!(cmd.contains(" e2e.initrd=blob "));
        assert!(cmd.contains(&format!("e2e.append=\"{RKDUMP_APPEND} {ELF_LEVEL0}\"")));
        let b = Case::standard("broken-image", CaptureKind::Rkdump).unwrap();
        assert!(b.first_kernel_cmdline().unwrap().contains(" e2e.mode=c,s "));
    }
}
