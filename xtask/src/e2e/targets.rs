//! The dump-target e2e cases (docs/targets.md). `file-ext4`: the first kernel's /init mounts an
//! ext4 file system (made on the host with `mkfs.ext4 -d` from files whose SHA-256 is
//! recorded) from a virtio-blk disk, runs `rkdumpctl prepare --file` and `rkdumpctl load
//! --file`, keeps direct I/O running on that disk and crashes; rkdump dumps into the file. A
//! second boot of the same kernel and disk runs `rkdumpctl save` on the file in the guest. The
//! host then checks `e2fsck -fn`, every recorded file's SHA-256 (read with debugfs, without
//! mounting), and extracts the file with debugfs to verify the vmcore (markers byte-exact) and
//! compare it with the guest's. `file-xfs-nvme`: the same with xfs (`mkfs.xfs -p` prototype
//! file) on NVMe, checked with `xfs_repair -n`, files read through a read-only loop mount
//! (`norecovery`: nothing replayed or written).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rkdump_tests::console::ConsoleLog;
use rkdump_tests::qemu::{Accel, Machine, Run};

use super::case::{CaptureKind, Case, DiskKind, Loader};
use super::checks::{Check, RunEnd};
use super::{Harness, dump_disk_args};

/// The dump-target cases, in run order.
pub const TARGET_CASE_NAMES: [&str; 2] = ["file-ext4", "file-xfs-nvme"];

/// Path of the dump file inside the guest's file system.
const GUEST_FILE: &str = "/rkdump.img";

impl Case {
    /// A dump-target case by name.
    pub(super) fn target(name: &str, capture: CaptureKind) -> Option<Case> {
        let (disk, xfs) = match name {
            "file-ext4" => (DiskKind::Virtio, false),
            "file-xfs-nvme" => (DiskKind::Nvme, true),
            _ => return None,
        };
        if capture != CaptureKind::Rkdump {
            return None;
        }
        let mut c = Case::standard("kf-low", capture)?;
        c.name = name.to_string();
        c.loaders = vec![Loader::Kf];
        // Small enough for the file (sized `auto`: RAM + 1/64 + 64 MiB) to be written quickly.
        c.memory = "512M".to_string();
        c.crashkernel = "crashkernel=16M".to_string();
        c.file_root = Some(disk);
        c.file_xfs = xfs;
        c.io_at_crash = true;
        c.loadctl = true;
        c.full_run = true;
        c.timeout = Duration::from_secs(600);
        c.capture_silence = Duration::from_secs(60);
        Some(c)
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The files put into the file system, with their SHA-256: sizes from 1 KiB to 3 MiB, so some
/// span several extents.
fn root_files() -> Vec<(String, Vec<u8>)> {
    (0..12u32)
        .map(|i| {
            let len = 1024usize << (i % 12).min(11);
            let mut x = 0x9e37_79b9u32 ^ i;
            let data = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            (format!("data/file{i:02}.bin"), data)
        })
        .collect()
}

/// The file system image of a file-target case: `root.img`, made by `mkfs.ext4 -d` from
/// [`root_files`], room for the dump file and for the guest's `save` output. Returns the files'
/// guest paths and SHA-256.
pub fn make_root(case: &Case, dir: &Path) -> Result<Vec<(String, String)>, String> {
    let src = dir.join("rootfs");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("data")).map_err(|e| e.to_string())?;
    let mut sums = Vec::new();
    for (path, data) in root_files() {
        std::fs::write(src.join(&path), &data).map_err(|e| format!("{path}: {e}"))?;
        sums.push((format!("/{path}"), sha256(&data)));
    }
    let ram = case.memory_bytes().ok_or("bad -m")?;
    let size_mib = (2 * ram + (384 << 20)) >> 20;
    let img = dir.join("root.img");
    let _ = std::fs::remove_file(&img);
    let mut cmd = if case.file_xfs {
        // mkfs.xfs takes its contents from a prototype file (mkfs.xfs(8), -p).
        let mut proto = String::from("/dev/null\n0 0\nd--755 0 0\ndata d--755 0 0\n");
        for (path, _) in root_files() {
            let name = path.trim_start_matches("data/");
            proto.push_str(&format!(
                "{name} ---644 0 0 {}\n",
                src.join(&path).display()
            ));
        }
        proto.push_str("$\n$\n");
        let proto_path = dir.join("rootfs.proto");
        std::fs::write(&proto_path, proto).map_err(|e| e.to_string())?;
        rkdump_tests::disk::create(&img, size_mib << 20, rkdump_tests::disk::Fill::Sparse)?;
        let mut c = Command::new("mkfs.xfs");
        c.args(["-q", "-f", "-L", "rkdumproot", "-p"])
            .arg(&proto_path)
            .arg(&img);
        c
    } else {
        let mut c = Command::new("mkfs.ext4");
        c.args(["-q", "-F", "-L", "rkdumproot", "-d"])
            .arg(&src)
            .arg(&img)
            .arg(format!("{size_mib}M"));
        c
    };
    let out = cmd
        .output()
        .map_err(|e| format!("mkfs (e2fsprogs, xfsprogs): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mkfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(sums)
}

fn check(name: &str, result: Result<String, String>) -> Check {
    Check {
        name: name.to_string(),
        result,
    }
}

/// `debugfs -R "dump -p <guest> <out>" <img>`: a file read through ext4's own metadata, without
/// mounting.
fn debugfs_dump(img: &Path, guest: &str, out: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(out);
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump -p {guest} {}", out.display()))
        .arg(img)
        .output()
        .map_err(|e| format!("debugfs: {e}"))?;
    if !out.is_file() {
        return Err(format!(
            "debugfs could not dump {guest}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

/// The `E2E: <key> ...` line of a run, after the key.
fn e2e_line(log: &ConsoleLog, key: &str) -> Option<String> {
    let needle = format!("E2E: {key} ");
    log.lines
        .iter()
        .find_map(|l| l.text.split(&needle).nth(1).map(str::to_string))
}

/// Second boot: the same first kernel and disk, /init mounts the file system and runs
/// `rkdumpctl save` on the dump file (`e2e.filesave=<dev>`).
fn save_boot(case: &Case, h: &Harness, dir: &Path) -> Result<ConsoleLog, String> {
    let kind = case.file_root.ok_or("no file root")?;
    let sub = dir.join("save-boot");
    std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
    let m = Machine::q35(&case.memory, Accel::Tcg)
        .program(&h.qemu)
        .smp(case.smp)
        .nodefaults()
        .kernel(
            &h.first_kernel,
            &format!("console=ttyS0 e2e.filesave={}", kind.linux_dev()),
        )
        .initrd(&dir.join("initramfs.cpio"))
        .args(dump_disk_args(kind, &dir.join("root.img")));
    let stop = |l: &rkdump_tests::console::Line| {
        l.text
            .contains("E2E: filesave-done")
            .then(|| "save boot done".to_string())
    };
    let out = Run::new(&m, &sub, Duration::from_secs(300))
        .stop(&stop)
        .start()
        .map_err(|e| e.to_string())?;
    Ok(out.log)
}

/// Checks of a file-target case after its crash run.
pub fn apply(
    case: &Case,
    h: &Harness,
    log: &ConsoleLog,
    end: &RunEnd,
    dir: &Path,
    sums: &[(String, String)],
    checks: &mut Vec<Check>,
) {
    let rk = log.rkdump();
    let prepared = log
        .lines
        .iter()
        .any(|l| l.text.trim_end().ends_with("E2E: prepare rc=0"));
    let ready = log.lines.iter().find_map(|l| {
        l.text
            .split("E2E: prepare-out ")
            .nth(1)
            .filter(|t| t.contains("rkdump dump file ready"))
    });
    checks.push(check(
        "prepare --file in the first kernel",
        match (prepared, ready) {
            (true, Some(t)) => Ok(t.trim().to_string()),
            _ => Err(format!(
                "no `prepare rc=0` and `dump file ready`: {:?}",
                log.lines
                    .iter()
                    .filter(|l| l.text.contains("E2E: prepare"))
                    .map(|l| l.text.clone())
                    .collect::<Vec<_>>()
            )),
        },
    ));
    checks.push(check(
        "dump complete into the file",
        match &rk.dump_complete {
            Some((_, args)) if args.contains("target=file:") => Ok(args.clone()),
            other => Err(format!(
                "no `dump complete ... target=file:` line ({other:?}); end: {end:?}"
            )),
        },
    ));
    let img = dir.join("root.img");
    // The guest's own save, on a second boot.
    let guest_sha = match save_boot(case, h, dir) {
        Ok(slog) => {
            let line = e2e_line(&slog, "filesave");
            let r = match &line {
                Some(l) if l.starts_with("rc=0 ") => Ok(l.clone()),
                other => Err(format!(
                    "guest `rkdumpctl save` failed: {other:?}; output: {:?}",
                    slog.lines
                        .iter()
                        .filter(|l| l.text.contains("E2E: filesave-out"))
                        .map(|l| l.text.clone())
                        .collect::<Vec<_>>()
                )),
            };
            let sha = line.and_then(|l| l.split("sha256=").nth(1).map(|s| s.trim().to_string()));
            checks.push(check("second boot: rkdumpctl save on the file", r));
            sha
        }
        Err(e) => {
            checks.push(check("second boot: rkdumpctl save on the file", Err(e)));
            None
        }
    };
    // The file system is intact.
    let (fsck_name, fsck) = if case.file_xfs {
        (
            "xfs_repair -n clean",
            Command::new("xfs_repair")
                .args(["-n", "-f"])
                .arg(&img)
                .output(),
        )
    } else {
        (
            "e2fsck -fn clean",
            Command::new("e2fsck").arg("-fn").arg(&img).output(),
        )
    };
    checks.push(check(
        fsck_name,
        match fsck {
            Ok(o) if o.status.success() => Ok("exit 0".into()),
            Ok(o) => Err(format!(
                "exit {:?}: {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&o.stderr).lines())
                    .take(8)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )),
            Err(e) => Err(format!("{fsck_name}: {e}")),
        },
    ));
    let view = match HostView::new(case, &img, dir) {
        Ok(v) => v,
        Err(e) => {
            checks.push(check("host view of the file system", Err(e)));
            return;
        }
    };
    // Every other file as it was.
    let tmp = dir.join("file-check.bin");
    let changed: Vec<String> = sums
        .iter()
        .filter(|(path, want)| {
            view.copy(path, &tmp).is_err()
                || std::fs::read(&tmp).map(|b| sha256(&b)).ok().as_ref() != Some(want)
        })
        .map(|(p, _)| p.clone())
        .collect();
    let _ = std::fs::remove_file(&tmp);
    checks.push(check(
        "other files' SHA-256 unchanged",
        if changed.is_empty() {
            Ok(format!("{} files", sums.len()))
        } else {
            Err(format!("changed or unreadable: {changed:?}"))
        },
    ));
    // The dump file as ext4 sees it: verified and byte-exact markers.
    let file = dir.join("rkdump.img");
    let vmcore = dir.join("vmcore");
    let saved = view.copy(GUEST_FILE, &file).and_then(|()| {
        crate::build::rkdumpctl()
            .and_then(|ctl| Ok(ctl.save(&file, &vmcore, false)?.trim().to_string()))
    });
    let ok = saved.is_ok();
    checks.push(check(
        "host: rkdumpctl save on the file (read through the file system)",
        saved,
    ));
    if !ok {
        return;
    }
    checks.push(super::dumpcheck::verify_check(
        log,
        &vmcore,
        dir,
        rkdump_tests::verify::MarkerExpect::Present,
    ));
    let host_sha = std::fs::read(&vmcore).map(|b| sha256(&b)).ok();
    checks.push(check(
        "guest and host vmcores identical",
        match (&guest_sha, &host_sha) {
            (Some(g), Some(h)) if g == h => Ok(format!("sha256 {g}")),
            other => Err(format!("guest, host sha256: {other:?}")),
        },
    ));
    let _ = std::fs::remove_file(&file);
}

/// How the host reads the guest's files without changing the image: debugfs for ext4, a
/// read-only `norecovery` loop mount for xfs (unmounted when dropped).
enum HostView {
    Debugfs(PathBuf),
    Mounted(PathBuf),
}

impl HostView {
    fn new(case: &Case, img: &Path, dir: &Path) -> Result<HostView, String> {
        if !case.file_xfs {
            return Ok(HostView::Debugfs(img.to_path_buf()));
        }
        let mnt = dir.join("root-ro");
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        let o = Command::new("mount")
            .args(["-o", "ro,norecovery,loop"])
            .arg(img)
            .arg(&mnt)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "mount -o ro,norecovery,loop (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(HostView::Mounted(mnt))
    }

    fn copy(&self, guest: &str, out: &Path) -> Result<(), String> {
        match self {
            HostView::Debugfs(img) => debugfs_dump(img, guest, out),
            HostView::Mounted(mnt) => std::fs::copy(mnt.join(guest.trim_start_matches('/')), out)
                .map(|_| ())
                .map_err(|e| format!("{guest}: {e}")),
        }
    }
}

impl Drop for HostView {
    fn drop(&mut self) {
        if let HostView::Mounted(mnt) = self {
            let _ = Command::new("umount").arg(&*mnt).status();
        }
    }
}

/// The root image path of a case directory.
pub fn root_img(dir: &Path) -> PathBuf {
    dir.join("root.img")
}
