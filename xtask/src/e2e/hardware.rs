//! e2e cases for conditions of real machines (docs/testing.md#end-to-end-runs): a first kernel
//! booted through UEFI (OVMF), so rkdump must find ACPI through the EFI hand-off and power off
//! through it; an Intel IOMMU the first kernel left on. Each case is a variant of a dump case;
//! its extra checks read the capture kernel's console and QEMU's stderr.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::case::{CaptureKind, Case, Loader};
use super::checks::Check;
use super::console::ConsoleLog;
use super::initramfs::{self, Initramfs};

/// Debian's `ovmf` package: the combined code+vars image QEMU takes with `-bios`.
pub const OVMF_IMAGE: &str = "/usr/share/ovmf/OVMF.fd";

/// What a case's machine has beyond the standard dump case: firmware, an IOMMU, extra first
/// kernel parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// The firmware the first kernel boots through.
    pub firmware: Firmware,
    /// QEMU's `intel-iommu` (DMA remapping), which the first kernel turns on.
    pub intel_iommu: bool,
    /// Negative control of the IOMMU case: rkdump leaves the IOMMU on (`rkdump.iommu=skip`)
    /// and the dump disk must fail.
    pub iommu_negative: bool,
    /// Boot Debian's generic kernel ([`GenericFirst`]) instead of the cloud kernel.
    pub generic_kernel: bool,
    /// QEMU's `i6300esb`, armed by the first kernel with this timeout (seconds).
    pub watchdog: Option<u32>,
    /// A `qemu-xhci` with a USB disk under direct-I/O reads and an `e1000e` on user-mode
    /// networking receiving ping replies, both busy at the crash.
    pub busy_usb_nic: bool,
}

impl Platform {
    /// QEMU arguments that must come before every other device (`intel-iommu` must precede the
    /// PCI devices it translates for). The QMP socket of [`QmpLog`] is added separately.
    pub fn leading_qemu_args(&self) -> Vec<String> {
        let mut a = self.firmware.qemu_args();
        if self.intel_iommu {
            a.extend(["-device".to_string(), "intel-iommu".to_string()]);
            // virtio devices bypass QEMU's IOMMU unless told to use it.
            a.extend([
                "-global".to_string(),
                "virtio-blk-pci.iommu_platform=on".to_string(),
            ]);
        }
        if self.watchdog.is_some() {
            a.extend(
                ["-device", "i6300esb", "-action", "watchdog=reset"]
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        if self.busy_usb_nic {
            // restrict=on: nothing leaves QEMU; slirp answers the guest's ARP requests itself.
            a.extend(
                [
                    "-device",
                    "qemu-xhci,id=xhci",
                    "-netdev",
                    "user,id=n0,restrict=on",
                    "-device",
                    "e1000e,netdev=n0",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        a
    }

    /// QEMU arguments that need the case directory (the USB disk image).
    pub fn dir_qemu_args(&self, dir: &Path) -> Vec<String> {
        if !self.busy_usb_nic {
            return Vec::new();
        }
        vec![
            "-drive".to_string(),
            format!(
                "file={},if=none,id=usbdisk,format=raw,cache=unsafe",
                dir.join("usb.img").display()
            ),
            "-device".to_string(),
            "usb-storage,bus=xhci.0,drive=usbdisk".to_string(),
        ]
    }

    /// Extra first-kernel parameters (each with a leading space).
    pub fn first_kernel_args(&self) -> String {
        let mut s = String::new();
        if self.intel_iommu {
            s.push_str(" intel_iommu=on");
        }
        if let Some(t) = self.watchdog {
            s.push_str(&format!(" e2e.watchdog={t}"));
        }
        if self.busy_usb_nic {
            s.push_str(" e2e.busy=usb,nic");
        }
        s
    }
}

/// Where large downloads live: `$RKDUMP_CACHE`, else `<workspace>/target/cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("RKDUMP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::build::workspace_root().join("target").join("cache"))
}

/// What to say when a case needs the generic kernel and it is not there.
pub const GENERIC_MISSING: &str = "this case boots Debian's generic kernel (linux-image-<release>-amd64, \
     for its watchdog, AHCI, xHCI and e1000e modules): run scripts/setup.sh, which unpacks it under \
     $RKDUMP_CACHE/linux-generic/";

/// Modules /init loads from `/e2e/hwmodules` on the generic kernel (with their dependencies,
/// dependencies first): the watchdog driver, AHCI and SCSI disks, xHCI with USB storage, and
/// the e1000e NIC.
pub const GENERIC_MODULES: [&str; 6] = [
    "i6300esb",
    "ahci",
    "sd_mod",
    "xhci_pci",
    "usb_storage",
    "e1000e",
];

/// The module files for `wanted` and everything they depend on, dependencies first, read with
/// `modinfo -F depends` (the unpacked package has no modules.dep; depmod never ran).
pub fn module_closure(tree: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, String> {
    let norm = |n: &str| n.replace('-', "_");
    let mut files = std::collections::BTreeMap::new();
    let mut stack = vec![tree.join("kernel")];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str())
                && let Some(stem) = name.strip_suffix(".ko")
            {
                files.insert(norm(stem), p.clone());
            }
        }
    }
    let modinfo = rkdump_tests::tools::which("modinfo")
        .or_else(|| Some(PathBuf::from("/usr/sbin/modinfo")).filter(|p| p.is_file()))
        .ok_or("modinfo not found (apt-get install kmod)")?;
    let mut order: Vec<PathBuf> = Vec::new();
    // Depth-first, bounded by the number of module files (each is visited once).
    fn visit(
        name: &str,
        files: &std::collections::BTreeMap<String, PathBuf>,
        modinfo: &Path,
        order: &mut Vec<PathBuf>,
        seen: &mut Vec<String>,
    ) -> Result<(), String> {
        let name = name.replace('-', "_");
        if seen.contains(&name) {
            return Ok(());
        }
        seen.push(name.clone());
        let file = files
            .get(&name)
            .ok_or_else(|| format!("module {name} not in the generic kernel's tree"))?;
        let out = std::process::Command::new(modinfo)
            .args(["-F", "depends"])
            .arg(file)
            .output()
            .map_err(|e| format!("running modinfo: {e}"))?;
        let deps = String::from_utf8_lossy(&out.stdout).trim().to_string();
        for d in deps.split(',').filter(|d| !d.is_empty()) {
            visit(d, files, modinfo, order, seen)?;
        }
        order.push(file.clone());
        Ok(())
    }
    let mut seen = Vec::new();
    for w in wanted {
        visit(w, &files, &modinfo, &mut order, &mut seen)?;
    }
    Ok(order)
}

/// Debian's generic kernel of the cloud kernel's release, unpacked by `scripts/setup.sh` into
/// `<cache>/linux-generic/<release>/` (`boot/vmlinuz-<release>`, `lib/modules/<release>`), and
/// the initramfs built for it (the same /init and tools, its own modules).
#[derive(Clone, Debug)]
pub struct GenericFirst {
    /// `vmlinuz-<release>`.
    pub kernel: PathBuf,
    /// Its initramfs.
    pub initramfs: Initramfs,
}

impl GenericFirst {
    /// The unpacked generic kernel matching `cloud` (`vmlinuz-<v>-cloud-amd64`), if present.
    pub fn locate(cloud: &Path) -> Option<(PathBuf, PathBuf)> {
        let name = cloud.file_name()?.to_str()?;
        let release = name
            .strip_prefix("vmlinuz-")?
            .strip_suffix("-cloud-amd64")?
            .to_string()
            + "-amd64";
        let root = cache_dir().join("linux-generic").join(&release);
        let kernel = root.join("boot").join(format!("vmlinuz-{release}"));
        let modules = root.join("lib").join("modules").join(&release);
        (kernel.is_file() && modules.is_dir()).then_some((kernel, modules))
    }

    /// Builds its initramfs next to the standard one, when the generic kernel is unpacked.
    pub fn build(inputs: &initramfs::Inputs, out_root: &Path) -> Result<Option<Self>, String> {
        let Some(cloud) = inputs.modules.as_ref().and_then(|m| {
            let release = m.file_name()?.to_str()?;
            Some(PathBuf::from(format!("vmlinuz-{release}")))
        }) else {
            return Ok(None);
        };
        let Some((kernel, modules)) = Self::locate(&cloud) else {
            return Ok(None);
        };
        let mut inputs = inputs.clone();
        inputs.hw_modules = module_closure(&modules, &GENERIC_MODULES)?;
        inputs.modules = Some(modules);
        let initramfs = initramfs::build(&inputs, &out_root.join("initramfs-generic.cpio"))?;
        Ok(Some(GenericFirst { kernel, initramfs }))
    }
}

/// QEMU's QMP events of one run (the `WATCHDOG` event shows the watchdog fired and what QEMU
/// did): a thread connects to the run's QMP socket, negotiates capabilities and records every
/// line until QEMU exits.
pub struct QmpLog {
    thread: Option<std::thread::JoinHandle<String>>,
}

impl QmpLog {
    fn socket(dir: &Path) -> PathBuf {
        dir.join("qmp.sock")
    }

    /// QEMU arguments for the socket (only for cases with a watchdog).
    pub fn qemu_args(case: &Case, dir: &Path) -> Vec<String> {
        if case.platform.watchdog.is_none() {
            return Vec::new();
        }
        vec![
            "-qmp".to_string(),
            format!("unix:{},server=on,wait=off", Self::socket(dir).display()),
        ]
    }

    /// Starts the recorder for `case` (nothing for cases without a watchdog).
    pub fn spawn(case: &Case, dir: &Path) -> QmpLog {
        if case.platform.watchdog.is_none() {
            return QmpLog { thread: None };
        }
        let sock = Self::socket(dir);
        let out = dir.join("qmp-events.log");
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let stream = loop {
                match UnixStream::connect(&sock) {
                    Ok(s) => break Some(s),
                    Err(_) if start.elapsed() < Duration::from_secs(120) => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => break None,
                }
            };
            let mut text = String::new();
            if let Some(mut s) = stream {
                let _ = s.write_all(b"{\"execute\": \"qmp_capabilities\"}\n");
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            let _ = std::fs::write(&out, &text);
            text
        });
        QmpLog {
            thread: Some(thread),
        }
    }

    /// Waits for QEMU's end (the socket closes) and returns what was recorded.
    pub fn finish(self) -> String {
        self.thread.and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

/// The firmware the first kernel boots through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Firmware {
    /// QEMU's SeaBIOS (default): RSDP in the BIOS area, no `efi_info`.
    #[default]
    Bios,
    /// OVMF: the kernel enters through its EFI stub; the RSDP lives only in the EFI
    /// configuration table (and wherever the kexec loader copies its address).
    Uefi,
}

impl Firmware {
    /// QEMU arguments for this firmware.
    pub fn qemu_args(self) -> Vec<String> {
        match self {
            Firmware::Bios => Vec::new(),
            Firmware::Uefi => vec!["-bios".to_string(), OVMF_IMAGE.to_string()],
        }
    }
}

/// A case of this module by name, built on the dump case it varies.
pub fn case(name: &str, capture: CaptureKind) -> Option<Case> {
    if let Some(c) = iommu_case(name, capture) {
        return Some(c);
    }
    if let Some(c) = watchdog_case(name, capture) {
        return Some(c);
    }
    if let Some(c) = ahci_case(name, capture) {
        return Some(c);
    }
    if name == "dump-usb-nic" {
        // The virtio dump case, with a USB disk and a NIC busy at the crash.
        let mut c = Case::standard("dump-virtio", capture)?;
        c.name = name.to_string();
        c.platform.generic_kernel = true;
        c.platform.busy_usb_nic = true;
        return Some(c);
    }
    let (base, loader, extra) = match name {
        // kexec_file_load: the running kernel copies efi_info and acpi_rsdp_addr into the zero
        // page and adds a SETUP_EFI node.
        "dump-uefi" => ("dump-virtio", Loader::Kf, ""),
        // The same hand-off with every RSDP source but the EFI configuration table ignored.
        "dump-uefi-efi" => ("dump-virtio", Loader::Kf, "rkdump.acpi_source=efi"),
        // kexec_load (kexec-tools 2.0.25): no efi_info, no setup_data; `acpi_rsdp=` appended
        // to the command line.
        "dump-uefi-kl" => ("dump-nvme", Loader::Kl, ""),
        _ => return None,
    };
    let mut c = Case::standard(base, capture)?;
    c.name = name.to_string();
    c.loaders = vec![loader];
    c.platform.firmware = Firmware::Uefi;
    c.capture_extra = extra.to_string();
    // OVMF's own start-up under TCG comes on top of the first kernel's boot.
    c.timeout += Duration::from_secs(120);
    Some(c)
}

/// The IOMMU cases: the first kernel runs with `intel_iommu=on` behind QEMU's `intel-iommu`,
/// direct-I/O reads in flight on the dump disk at the crash; `noiommu-*` are the negative
/// controls (rkdump leaves the IOMMU on).
fn iommu_case(name: &str, capture: CaptureKind) -> Option<Case> {
    let (base, negative) = match name {
        "dump-iommu-nvme" => ("dump-nvme", false),
        "dump-iommu-virtio" => ("dump-virtio", false),
        "noiommu-nvme" => ("dump-nvme", true),
        "noiommu-virtio" => ("dump-virtio", true),
        _ => return None,
    };
    let mut c = Case::standard(base, capture)?;
    c.name = name.to_string();
    c.platform.intel_iommu = true;
    c.platform.iommu_negative = negative;
    if negative {
        c.capture_extra = "rkdump.iommu=skip".to_string();
        // The disk fails and rkdump falls back to serial: stop at `dump start`.
        c.full_run = false;
        c.timeout = Duration::from_secs(200);
    }
    Some(c)
}

/// The AHCI cases: Debian's generic kernel reads from a disk on q35's ICH9 AHCI controller with
/// direct I/O when it crashes; rkdump dumps to that (labelled) disk. `noreset-ahci` is the
/// negative control (`rkdump.reset=none rkdump.nopreinit`: the port is reprogrammed over what
/// the crashed kernel left running).
fn ahci_case(name: &str, capture: CaptureKind) -> Option<Case> {
    let (base, negative) = match name {
        "dump-ahci" => ("dump-virtio", false),
        "noreset-ahci" => ("noreset-virtio", true),
        _ => return None,
    };
    let mut c = Case::standard(base, capture)?;
    c.name = name.to_string();
    c.dump_disk = Some(super::case::DiskKind::Ahci);
    c.platform.generic_kernel = true;
    c.expect_disk_failure = negative;
    Some(c)
}

/// What `noreset-ahci` must show.
pub const AHCI_NORESET_FAILURE: &str =
    "ahci IDENTIFY data never arriving (\"unsupported disk without 48-bit addressing (0x0)\")";

/// The rkdump error of `noreset-ahci`. The crashed kernel left port 0 running (ST=1) on its own
/// command list; QEMU fetches commands from the list it mapped when the port started, so the
/// command-list base rkdump writes over a running port is ignored, its IDENTIFY never fills
/// rkdump's buffer and the all-zero data reads as a disk without 48-bit addressing (seen in the
/// first `noreset-ahci` run). Any other error does not count.
pub fn ahci_noreset_error(errors: &[String]) -> Option<&String> {
    errors
        .iter()
        .find(|e| e.contains("ahci") && e.contains("without 48-bit addressing (0x0)"))
}

/// Timeout the first kernel arms the watchdog with: far shorter than every dump below.
pub const WATCHDOG_TIMEOUT_S: u32 = 30;

/// The watchdog cases: Debian's generic kernel arms QEMU's `i6300esb` (busybox `watchdog`
/// petting it until the crash), then rkdump dumps for far longer than the timeout: a disk dump
/// of the 1 GiB guest throttled to 24 MiB/s (about 45 s, half as long again as the timeout), or the serial dump of the 192 MiB
/// guest (minutes). `pet` (the default) and `off` must finish; `keep` must be reset mid-dump.
fn watchdog_case(name: &str, capture: CaptureKind) -> Option<Case> {
    let (base, mode) = match name {
        "dump-watchdog-pet" => ("dump-virtio", ""),
        "dump-watchdog-off" => ("dump-virtio", "rkdump.watchdog=off"),
        "dump-watchdog-pet-serial" => ("dump-serial", ""),
        "dump-watchdog-keep" => ("dump-serial", "rkdump.watchdog=keep"),
        _ => return None,
    };
    let mut c = Case::standard(base, capture)?;
    c.name = name.to_string();
    c.platform.generic_kernel = true;
    c.platform.watchdog = Some(WATCHDOG_TIMEOUT_S);
    let mut extra = mode.to_string();
    if base == "dump-virtio" {
        extra.push_str(" rkdump.throttle_mib_s=24");
        c.io_at_crash = false;
        c.timeout = Duration::from_secs(400);
    }
    c.capture_extra = extra.trim().to_string();
    Some(c)
}

/// The RSDP source a UEFI case must end up with, and whether rkdump's own EFI configuration
/// table walk must have run (only kexec_file_load hands over `efi_info`).
fn expected_source(case: &Case) -> (&'static str, bool) {
    match (
        case.loader(),
        case.capture_extra.contains("rkdump.acpi_source=efi"),
    ) {
        (_, true) => ("efi", true),
        (Loader::Kf, false) => ("bootdata", true),
        (Loader::Kl, false) => ("cmdline", false),
    }
}

/// The checks a UEFI case adds: rkdump found the RSDP from the source the loader's hand-off
/// predicts (never the BIOS scan), its own EFI configuration table walk agrees where it ran,
/// and the run ended in ACPI power-off without an error.
pub fn apply(
    case: &Case,
    log: &ConsoleLog,
    stderr: &str,
    qmp: &str,
    dir: &Path,
    checks: &mut Vec<Check>,
) {
    if case.capture != CaptureKind::Rkdump {
        return;
    }
    let lines: Vec<&str> = log
        .capture_lines()
        .iter()
        .filter_map(|l| l.text.split_once("rkdump: ").map(|(_, b)| b.trim_end()))
        .collect();
    if case.platform.watchdog.is_some() {
        apply_watchdog(case, log, &lines, qmp, dir, checks);
    }
    if case.platform.busy_usb_nic {
        for (name, what) in [("xhci", "usb"), ("e1000e", "nic")] {
            checks.push(Check {
                name: format!("{name} busy at the crash"),
                result: log
                    .lines
                    .iter()
                    .find(|l| l.text.contains(&format!("E2E: busy {what} ")))
                    .map(|l| l.text.clone())
                    .ok_or_else(|| format!("no `E2E: busy {what}` line")),
            });
            checks.push(Check {
                name: format!("{name} reset or quiesced"),
                result: check_preinit(&lines, name),
            });
        }
    }
    if case.platform.intel_iommu {
        apply_iommu(case, &lines, stderr, checks);
    }
    if case.platform.firmware != Firmware::Uefi {
        return;
    }
    let (source, efi_walk) = expected_source(case);
    checks.push(Check {
        name: "acpi from the UEFI hand-off".into(),
        result: check_efi_acpi(&lines, source, efi_walk),
    });
    checks.push(Check {
        name: "ACPI power-off".into(),
        result: check_poweroff(&lines),
    });
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// The IOMMU checks: the unit was found with translation on and turned off (read back in
/// GSTS); for the negative control, rkdump skipped it and the dump disk failed with faults.
fn apply_iommu(case: &Case, lines: &[&str], stderr: &str, checks: &mut Vec<Check>) {
    let unit = lines
        .iter()
        .find(|l| l.starts_with("iommu unit ") && l.contains(" gsts="));
    if !case.platform.iommu_negative {
        checks.push(Check {
            name: "iommu translation off".into(),
            result: check_iommu_unit(unit.copied()),
        });
        return;
    }
    // The failure is the point: drop the checks that demand a dump on disk.
    checks.retain(|c| {
        !matches!(
            c.name.as_str(),
            "no rkdump errors" | "dump complete on disk" | "rkdumpctl save"
        )
    });
    checks.push(Check {
        name: "iommu left on".into(),
        result: match lines.iter().find(|l| l.starts_with("iommu skipped")) {
            Some(l) => Ok((*l).to_string()),
            None => Err("no `iommu skipped` line".into()),
        },
    });
    checks.push(Check {
        name: "disk fails behind the IOMMU".into(),
        result: check_iommu_failure(lines, stderr),
    });
}

/// The watchdog checks: the first kernel armed it; rkdump found it enabled and took the mode's
/// action; with `pet` the dump outlived the timeout and QEMU saw no expiry, with `keep` QEMU's
/// `WATCHDOG` event came mid-dump and `rkdumpctl recv --partial` recovers what arrived.
fn apply_watchdog(
    case: &Case,
    log: &ConsoleLog,
    lines: &[&str],
    qmp: &str,
    dir: &Path,
    checks: &mut Vec<Check>,
) {
    let keep = case.capture_extra.contains("rkdump.watchdog=keep");
    let off = case.capture_extra.contains("rkdump.watchdog=off");
    let timeout = case.platform.watchdog.unwrap_or(0);
    checks.push(Check {
        name: "watchdog armed by the first kernel".into(),
        result: log
            .lines
            .iter()
            .find(|l| l.text.contains("E2E: watchdog armed"))
            .map(|l| l.text.clone())
            .ok_or_else(|| "no `E2E: watchdog armed` line".to_string()),
    });
    let want = match (keep, off) {
        (true, _) => "action=keep",
        (_, true) => "action=off: stopped (enabled=0",
        _ => "action=pet",
    };
    checks.push(Check {
        name: "rkdump found it running".into(),
        result: lines
            .iter()
            .find(|l| l.starts_with("watchdog i6300esb") && l.contains("enabled=1"))
            .ok_or_else(|| "no `watchdog i6300esb ... enabled=1` line".to_string())
            .and_then(|l| {
                if l.contains(want) {
                    Ok((*l).to_string())
                } else {
                    Err(format!("expected {want}: {l}"))
                }
            }),
    });
    let fired = qmp_watchdog_event(qmp);
    if !keep {
        checks.push(Check {
            name: "watchdog never fired".into(),
            result: match fired {
                Some(e) => Err(format!("QEMU reported {e}")),
                None if qmp.contains("\"QMP\"") => Ok("no WATCHDOG event on QMP".into()),
                None => {
                    Err("the QMP log is empty: nothing proves the watchdog stayed quiet".into())
                }
            },
        });
        checks.push(Check {
            name: "dump outlived the timeout".into(),
            result: check_outlived(lines, timeout),
        });
        return;
    }
    // The reset is the point: no complete dump, no finish line.
    checks.retain(|c| {
        !matches!(
            c.name.as_str(),
            "dump complete on serial"
                | "rkdumpctl recv"
                | "vmcore verified"
                | "rkdump reached its end"
        )
    });
    checks.push(Check {
        name: "watchdog reset mid-dump".into(),
        result: match (fired, lines.iter().any(|l| l.starts_with("dump complete"))) {
            (Some(e), false) => Ok(format!("QEMU: {e}")),
            (Some(_), true) => Err("the dump completed although the watchdog fired".into()),
            (None, _) => Err(format!("no WATCHDOG event on QMP: {}", qmp.trim())),
        },
    });
    checks.push(Check {
        name: "recv --partial keeps what arrived".into(),
        result: check_partial_recv(dir),
    });
}

/// The reinit line of the controller: its preinit read back that it was running (xHCI
/// USBCMD.R/S, e1000e RCTL.EN) and either proved the reset (`-> preinit, ... ok (<driver>:`)
/// or, for e1000e only, named why not and left the function quiesced. QEMU 7.2's e1000e ignores
/// CTRL.RST (IMS, RCTL keep their values: `IMS not back at 0: no reset seen`), and it has
/// neither FLR nor a PM reset, so on this QEMU the NIC is stopped by bus mastering off alone.
pub fn check_preinit(lines: &[&str], driver: &str) -> Result<String, String> {
    // The read-back names the driver's key register (an unproven detail has no driver name).
    let key = if driver == "xhci" {
        "USBCMD 0x"
    } else {
        "RCTL 0x"
    };
    let l = lines
        .iter()
        .find(|l| l.starts_with("reinit ") && l.contains(key))
        .ok_or_else(|| format!("no reinit line with a {driver} preinit"))?;
    let proven = l.contains("-> preinit") && l.contains(&format!(" ok ({driver}: "));
    let quiesced_unproven = driver == "e1000e"
        && l.contains("quiesced")
        && l.contains("preinit: unproven")
        && l.contains("no reset seen");
    if !proven && !quiesced_unproven {
        return Err(format!("{driver} neither proven reset nor quiesced: {l}"));
    }
    let before = |reg: &str| {
        l.split(&format!("{reg} 0x"))
            .nth(1)
            .and_then(|v| v.split(' ').next())
            .and_then(|v| u32::from_str_radix(v, 16).ok())
    };
    let running = match driver {
        "xhci" => before("USBCMD").is_some_and(|v| v & 1 != 0),
        _ => before("RCTL").is_some_and(|v| v & 2 != 0),
    };
    if !running {
        return Err(format!(
            "{driver} was not running at the crash (nothing to prove): {l}"
        ));
    }
    Ok((*l).to_string())
}

/// The QMP `WATCHDOG` event line, if QEMU sent one.
pub fn qmp_watchdog_event(qmp: &str) -> Option<&str> {
    qmp.lines()
        .find(|l| l.contains("\"event\": \"WATCHDOG\"") || l.contains("\"event\":\"WATCHDOG\""))
}

/// `dump complete ... ms=<T>` with T beyond the watchdog timeout, and reloads counted.
pub fn check_outlived(lines: &[&str], timeout_s: u32) -> Result<String, String> {
    let done = lines
        .iter()
        .find(|l| l.starts_with("dump complete"))
        .ok_or("no `dump complete` line")?;
    let ms: u64 = field(done, "ms=")
        .and_then(|v| v.parse().ok())
        .ok_or("`dump complete` without ms=")?;
    let reloads = lines
        .iter()
        .find_map(|l| l.strip_prefix("watchdog reloads="))
        .unwrap_or("none");
    if ms <= u64::from(timeout_s) * 1000 {
        return Err(format!(
            "the dump took {ms} ms, not longer than the {timeout_s} s timeout: proves nothing"
        ));
    }
    Ok(format!(
        "dump took {ms} ms against a {timeout_s} s timeout; {reloads} reloads"
    ))
}

/// `rkdumpctl recv` refuses the cut stream; `--partial` writes a vmcore and says what is missing.
fn check_partial_recv(dir: &Path) -> Result<String, String> {
    let ctl = crate::build::rkdumpctl()?;
    let stream = dir.join("com2.bin");
    let run = |partial: bool, out: &Path| {
        let mut cmd = std::process::Command::new(&ctl.0);
        cmd.arg("recv").arg(&stream).arg("-o").arg(out);
        if partial {
            cmd.arg("--partial");
        }
        cmd.output().map_err(|e| format!("running rkdumpctl: {e}"))
    };
    let plain = run(false, &dir.join("vmcore.refused"))?;
    if plain.status.success() {
        return Err("plain `rkdumpctl recv` accepted a stream the watchdog cut".into());
    }
    let out = dir.join("vmcore.partial");
    let partial = run(true, &out)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&partial.stdout),
        String::from_utf8_lossy(&partial.stderr)
    );
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    if !partial.status.success() || size == 0 {
        return Err(format!(
            "recv --partial failed ({}): {}",
            partial.status,
            text.trim()
        ));
    }
    let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    Ok(format!(
        "plain recv refused; --partial wrote {size} bytes: {last}"
    ))
}

/// `iommu unit <base> ... gsts=<before>-><after> ... done=te off,...`: TE (bit 31) on before,
/// off after.
pub fn check_iommu_unit(unit: Option<&str>) -> Result<String, String> {
    let l = unit.ok_or("no `iommu unit ... gsts=` line")?;
    let gsts = field(l, "gsts=").ok_or("no gsts=")?;
    let (before, after) = gsts.split_once("->").ok_or("gsts= without ->")?;
    let hex = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    match (hex(before), hex(after)) {
        (Some(b), Some(a)) if b & (1 << 31) != 0 && a & (1 << 31) == 0 => Ok(l.to_string()),
        (Some(b), _) if b & (1 << 31) == 0 => Err(format!(
            "translation was not on at the crash ({l}): the first kernel did not enable the IOMMU"
        )),
        _ => Err(format!("translation still on: {l}")),
    }
}

/// The negative control's failure: the dump disk's driver gives up and rkdump falls back to
/// serial, and QEMU's IOMMU reports `vtd_iommu_translate: detected translation failure` for
/// the disk's DMA (rkdump's buffers are not in the old kernel's page tables for that device).
pub fn check_iommu_failure(lines: &[&str], stderr: &str) -> Result<String, String> {
    let fallback = lines
        .iter()
        .find(|l| l.contains("falling back to serial") || l.contains("no labelled dump disk"))
        .ok_or("rkdump did not give up on the dump disk")?;
    let fault = stderr
        .lines()
        .find(|l| l.contains("detected translation failure"))
        .ok_or_else(|| format!("QEMU reported no IOMMU fault; stderr: {}", stderr.trim()))?;
    Ok(format!("{fallback}; QEMU: {fault}"))
}

/// `acpi rsdp=X ... source=<want>`; with `efi_walk`, also `efi config=... rsdp=X` (same X).
pub fn check_efi_acpi(lines: &[&str], want: &str, efi_walk: bool) -> Result<String, String> {
    let acpi = lines
        .iter()
        .find(|l| l.starts_with("acpi rsdp="))
        .ok_or("no `acpi rsdp=` line: rkdump found no ACPI")?;
    let used = field(acpi, "rsdp=").ok_or("`acpi` line without rsdp=")?;
    let source = field(acpi, "source=").unwrap_or("?");
    if source != want {
        return Err(format!(
            "RSDP {used} came from source={source}, expected source={want}"
        ));
    }
    let efi = lines.iter().find(|l| l.starts_with("efi config="));
    match (efi, efi_walk) {
        (Some(efi), _) => {
            let efi_rsdp = field(efi, "rsdp=").ok_or("`efi` line without rsdp=")?;
            if efi_rsdp != used {
                return Err(format!(
                    "rkdump used RSDP {used} (source={source}) but the EFI table names {efi_rsdp}"
                ));
            }
            Ok(format!("{efi}; used source={source}"))
        }
        (None, true) => {
            let why = lines
                .iter()
                .find(|l| l.starts_with("note: efi"))
                .map_or("no `efi ...` line", |l| l);
            Err(format!(
                "the EFI configuration table walk found no RSDP: {why}"
            ))
        }
        (None, false) => Ok(format!(
            "rsdp={used} source={source} (no efi_info handed over)"
        )),
    }
}

/// `finish outcome=success action=poweroff` is the last word: a failed S5 write would add an
/// error line and halt (the run would then time out).
pub fn check_poweroff(lines: &[&str]) -> Result<String, String> {
    let finish = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("finish "))
        .ok_or("no `finish` line")?;
    if *finish != "finish outcome=success action=poweroff" {
        return Err(format!("ended with `{finish}`"));
    }
    if let Some(l) = lines.iter().find(|l| l.contains("did not power off")) {
        return Err((*l).to_string());
    }
    let pm1a = lines
        .iter()
        .find_map(|l| {
            l.starts_with("acpi rsdp=")
                .then(|| field(l, "pm1a_cnt="))
                .flatten()
        })
        .unwrap_or("none");
    if pm1a == "none" {
        return Err("no PM1a control block from ACPI".into());
    }
    Ok(format!("powered off through PM1a_CNT {pm1a}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efi_acpi_needs_agreement_and_no_bios_source() {
        let good = [
            "efi config=0x7f000 from=setup_data entries=10 rsdp=0x7fb7e014 acpi20",
            "acpi rsdp=0x7fb7e014 pm1a_cnt=0x604 pm_timer=0x608 s5=5/5 ecam=0xb0000000 source=bootdata",
        ];
        assert!(check_efi_acpi(&good, "bootdata", true).is_ok());
        assert!(check_efi_acpi(&good, "efi", true).is_err());
        let differ = [good[0], "acpi rsdp=0xf52a0 pm1a_cnt=0x604 source=bootdata"];
        assert!(
            check_efi_acpi(&differ, "bootdata", true)
                .unwrap_err()
                .contains("EFI table names")
        );
        let bios = [good[0], "acpi rsdp=0x7fb7e014 pm1a_cnt=0x604 source=bios"];
        assert!(check_efi_acpi(&bios, "efi", true).is_err());
        let none = ["note: efi: no EFI system table in efi_info", good[1]];
        assert!(
            check_efi_acpi(&none, "bootdata", true)
                .unwrap_err()
                .contains("no EFI system table")
        );
        let kl = ["acpi rsdp=0x7fb7e014 pm1a_cnt=0x604 source=cmdline"];
        assert!(check_efi_acpi(&kl, "cmdline", false).is_ok());
        assert!(check_efi_acpi(&kl, "cmdline", true).is_err());
    }

    #[test]
    fn poweroff_must_be_the_successful_end() {
        let acpi = "acpi rsdp=0x1 pm1a_cnt=0x604 source=efi";
        assert!(check_poweroff(&[acpi, "finish outcome=success action=poweroff"]).is_ok());
        assert!(check_poweroff(&[acpi, "finish outcome=failed action=poweroff"]).is_err());
        assert!(
            check_poweroff(&[
                "acpi rsdp=0x1 pm1a_cnt=none source=efi",
                "finish outcome=success action=poweroff"
            ])
            .is_err()
        );
        assert!(
            check_poweroff(&[
                acpi,
                "finish outcome=success action=poweroff",
                "error: ACPI S5 did not power off; halting"
            ])
            .is_err()
        );
    }

    #[test]
    fn uefi_cases_boot_ovmf() {
        for name in ["dump-uefi", "dump-uefi-efi", "dump-uefi-kl"] {
            let c = case(name, CaptureKind::Rkdump).unwrap();
            assert_eq!(c.platform.leading_qemu_args(), ["-bios", OVMF_IMAGE]);
            assert!(c.full_run && c.dump_disk.is_some() && c.io_at_crash);
        }
        assert!(case("dump-uefi", CaptureKind::Linux).is_none());
    }

    #[test]
    fn ahci_negative_names_its_failure() {
        let seen = "ahci 0000:00:1f.2: ahci: unsupported disk without 48-bit addressing (0x0); skipped after 1 ms".to_string();
        assert!(ahci_noreset_error(std::slice::from_ref(&seen)).is_some());
        let other = "ahci 0000:00:1f.2: timeout waiting for PxCI".to_string();
        assert!(ahci_noreset_error(&[other]).is_none());
        let c = case("noreset-ahci", CaptureKind::Rkdump).unwrap();
        assert!(c.expect_disk_failure && c.platform.generic_kernel);
        assert_eq!(c.dump_disk, Some(super::super::case::DiskKind::Ahci));
        assert!(c.first_kernel_cmdline().unwrap().contains(" e2e.io=sda"));
    }

    #[test]
    fn preinit_checks_need_a_running_controller() {
        let x = "reinit 0000:00:02.0 1b36:000d 0c0330 -> preinit, 1 ms, ok (xhci: USBCMD 0x5 -> 0x0, USBSTS 0x0 -> 0x1, CONFIG probe 1 -> 0, DCBAAP 0x3e000000 -> 0x0)";
        assert!(check_preinit(&[x], "xhci").is_ok());
        let idle = x.replace("USBCMD 0x5", "USBCMD 0x0");
        assert!(
            check_preinit(&[&idle], "xhci")
                .unwrap_err()
                .contains("not running")
        );
        let e = "reinit 0000:00:03.0 8086:10d3 0200 -> preinit, 3 ms, ok (e1000e: RCTL 0x8002 -> 0x0, TCTL 0x10 -> 0x0, IMS probe 0x80 -> 0x0, EECD.AUTO_RD set)";
        assert!(check_preinit(&[e], "e1000e").is_ok());
        assert!(check_preinit(&[x], "e1000e").is_err());
        // What QEMU 7.2 gives: RST ignored, the read-back says so, the NIC stays quiesced.
        let q72 = "reinit 0000:00:02.0 8086:10d3 0200 -> none, 27 ms, quiesced, no method proved a reset; preinit: unproven (RCTL 0x4008002 -> 0x4008000, TCTL 0x103f0fa -> 0x103f0f8, IMS probe 0x80 -> 0x80, EECD.AUTO_RD set; IMS not back at 0: no reset seen); flr: not FLR capable";
        assert!(check_preinit(&[q72], "e1000e").is_ok());
        // xHCI must prove its reset.
        let xq = x.replace(
            "-> preinit, 1 ms, ok (xhci:",
            "-> none, 1 ms, quiesced; preinit: unproven (xhci:",
        ) + " no reset seen";
        assert!(check_preinit(&[&xq], "xhci").is_err());
        let c = case("dump-usb-nic", CaptureKind::Rkdump).unwrap();
        assert!(
            c.first_kernel_cmdline()
                .unwrap()
                .contains(" e2e.busy=usb,nic")
        );
        assert!(c.platform.dir_qemu_args(Path::new("/x"))[1].contains("/x/usb.img"));
    }

    #[test]
    fn watchdog_checks() {
        let qmp = "{\"QMP\": {}}\n{\"return\": {}}\n{\"timestamp\": {}, \"event\": \"WATCHDOG\", \"data\": {\"action\": \"reset\"}}\n";
        assert!(qmp_watchdog_event(qmp).unwrap().contains("reset"));
        assert!(qmp_watchdog_event("{\"QMP\": {}}").is_none());
        let done = [
            "dump complete bytes=1 ms=70000 target=disk:0000:01:00.0",
            "watchdog reloads=340",
        ];
        assert!(check_outlived(&done, 30).unwrap().contains("340 reloads"));
        assert!(
            check_outlived(&["dump complete bytes=1 ms=2000 target=serial"], 30)
                .unwrap_err()
                .contains("proves nothing")
        );
        assert!(check_outlived(&[], 30).is_err());
        for name in [
            "dump-watchdog-pet",
            "dump-watchdog-off",
            "dump-watchdog-keep",
        ] {
            let c = case(name, CaptureKind::Rkdump).unwrap();
            assert!(c.platform.generic_kernel);
            assert!(
                c.first_kernel_cmdline()
                    .unwrap()
                    .contains(" e2e.watchdog=30 ")
            );
            assert!(
                c.platform
                    .leading_qemu_args()
                    .contains(&"i6300esb".to_string())
            );
        }
    }

    #[test]
    fn iommu_cases_and_checks() {
        let c = case("dump-iommu-nvme", CaptureKind::Rkdump).unwrap();
        assert_eq!(
            c.platform.leading_qemu_args()[..2],
            ["-device", "intel-iommu"]
        );
        assert!(
            c.first_kernel_cmdline()
                .unwrap()
                .contains(" intel_iommu=on")
        );
        let n = case("noiommu-nvme", CaptureKind::Rkdump).unwrap();
        assert!(n.capture_cmdline().contains("rkdump.iommu=skip") && !n.full_run);
        let on = "iommu unit 0xfed90000 ver=1.0 segment=0 gsts=0xc0000000->0x00000000 fsts=0x0 \
                  faults=0 records=16 done=te off";
        assert!(check_iommu_unit(Some(on)).is_ok());
        assert!(check_iommu_unit(Some(&on.replace("->0x00000000", "->0x80000000"))).is_err());
        assert!(
            check_iommu_unit(Some(&on.replace("0xc0000000->", "0x00000000->")))
                .unwrap_err()
                .contains("not on at the crash")
        );
        assert!(check_iommu_unit(None).is_err());
        let failed = ["error: disk dump to x failed: timeout; falling back to serial"];
        assert!(check_iommu_failure(
                &failed,
                "qemu: vtd_iommu_translate: detected translation failure (dev=01:00:00, iova=0x3ef5c000)"
            )
            .is_ok());
        assert!(check_iommu_failure(&failed, "").is_err());
        assert!(check_iommu_failure(&[], "detected translation failure").is_err());
        assert!(check_iommu_failure(&failed, "vtd_iova_to_slpte: detected slpte").is_err());
    }
}
