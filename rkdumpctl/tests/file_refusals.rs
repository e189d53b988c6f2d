//! `prepare --file` on real file systems, each refusal with its message: btrfs, a loop-backed
//! ext4 and xfs, ext4 on a device-mapper linear device over a loop device, and a reflinked
//! (shared) dump file on xfs. Needs root, loop devices, device-mapper and mkfs.btrfs/mkfs.xfs,
//! so it is `#[ignore]`d in plain `cargo test`; run it with
//! `cargo test -p rkdumpctl --test file_refusals -- --ignored` (as root).
//!
//! The reflink case needs a file that passes every other check first: a fake sysfs makes the
//! loop device look like a virtio disk at PCI 0000:00:04.0 (the disk check reads sysfs only),
//! so `prepare --file` succeeds, and `prepare --file --check` then sees the shared extents
//! `cp --reflink=always` made.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{rkdumpctl, scratch, text};

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout).trim().to_string()
}

/// A file system of `mkfs` on a loop device over a `mib` MiB image, mounted; unmounted and
/// detached when dropped.
struct Mounted {
    mnt: PathBuf,
    loopdev: String,
    dm: Option<String>,
}

impl Mounted {
    fn new(dir: &Path, name: &str, mib: u64, mkfs: &str, dm: bool) -> Mounted {
        let img = dir.join(format!("{name}.img"));
        let mnt = dir.join(name);
        std::fs::create_dir_all(&mnt).unwrap();
        sh(&format!("truncate -s {mib}M {}", img.display()));
        let loopdev = sh(&format!("losetup -f --show {}", img.display()));
        let (dev, dm) = if dm {
            let n = format!("rkdumptest{}", std::process::id());
            let table = format!(
                "echo '0 {} linear {loopdev} 0' | dmsetup create {n}",
                mib * 2048
            );
            if let Err(e) = std::panic::catch_unwind(|| sh(&table)) {
                let _ = Command::new("losetup").args(["-d", &loopdev]).status();
                std::panic::resume_unwind(e);
            }
            (format!("/dev/mapper/{n}"), Some(n))
        } else {
            (loopdev.clone(), None)
        };
        sh(&format!("{mkfs} {dev} >/dev/null 2>&1"));
        sh(&format!("mount {dev} {}", mnt.display()));
        Mounted { mnt, loopdev, dm }
    }

    /// `major:minor` of the mounted file system.
    fn dev(&self) -> String {
        sh(&format!("mountpoint -d {}", self.mnt.display()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "chattr -i {m}/* 2>/dev/null; umount {m}",
                m = self.mnt.display()
            ))
            .status();
        if let Some(n) = &self.dm {
            let _ = Command::new("dmsetup").args(["remove", n]).status();
        }
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).status();
    }
}

fn refused(file: &Path, extra: &[&str]) -> String {
    let mut args = vec!["prepare", "--file", file.to_str().unwrap(), "--size", "8M"];
    args.extend_from_slice(extra);
    let o = rkdumpctl(&args);
    assert!(!o.status.success(), "accepted: {}", text(&o.stdout));
    assert!(!file.exists(), "a refused prepare left {}", file.display());
    text(&o.stderr)
}

#[test]
#[ignore = "needs root, loop devices, device-mapper, mkfs.btrfs and mkfs.xfs"]
fn each_refusal_names_its_reason() {
    let dir = scratch("file-refusals");
    {
        let bt = Mounted::new(&dir, "btrfs", 128, "mkfs.btrfs -q", false);
        let e = refused(&bt.mnt.join("dump.img"), &[]);
        assert!(
            e.contains("btrfs checksums or copies-on-write file data"),
            "{e}"
        );
    }
    {
        let e4 = Mounted::new(&dir, "ext4", 64, "mkfs.ext4 -q", false);
        let e = refused(&e4.mnt.join("dump.img"), &[]);
        assert!(e.contains("is on loop device loop"), "{e}");
    }
    {
        let xfs = Mounted::new(&dir, "xfs", 320, "mkfs.xfs -q -m reflink=1", false);
        let e = refused(&xfs.mnt.join("dump.img"), &[]);
        assert!(e.contains("is on loop device loop"), "{e}");
        // The same loop device presented as a virtio disk: the file is made and checks out...
        let sysfs = fake_sysfs(&dir, &xfs.dev(), 320 << 11);
        let file = xfs.mnt.join("dump.img");
        let s = sysfs.to_str().unwrap();
        let f = file.to_str().unwrap();
        let o = rkdumpctl(["prepare", "--file", f, "--size", "8M", "--sysfs-root", s]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("rkdump dump file ready"));
        let o = rkdumpctl(["prepare", "--file", f, "--check", "--sysfs-root", s]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        // ...until another file shares its blocks.
        sh(&format!("cp --reflink=always {f} {f}.clone"));
        let o = rkdumpctl(["prepare", "--file", f, "--check", "--sysfs-root", s]);
        let e = text(&o.stderr);
        assert!(!o.status.success(), "shared extents accepted");
        assert!(
            e.contains("is shared with another file (reflinked or deduplicated)"),
            "{e}"
        );
        let _ = std::fs::remove_file(format!("{f}.clone"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Separate from the others: it needs the kernel's device-mapper driver (`/dev/mapper/control`),
/// which not every test machine has.
#[test]
#[ignore = "needs root, loop devices and the kernel's device-mapper driver"]
fn device_mapper_is_refused() {
    let dir = scratch("file-refusals-dm");
    {
        let dm = Mounted::new(&dir, "dm", 64, "mkfs.ext4 -q", true);
        let e = refused(&dm.mnt.join("dump.img"), &[]);
        assert!(e.contains("is on device-mapper dm-"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sysfs tree in which block device `majmin` is a whole virtio disk of `sectors` 512-byte
/// sectors behind PCI function 0000:00:04.0.
fn fake_sysfs(dir: &Path, majmin: &str, sectors: u64) -> PathBuf {
    let root = dir.join("sysfs");
    let disk = root.join("devices/pci0000:00/0000:00:04.0/virtio1/block/vdz");
    std::fs::create_dir_all(disk.join("queue")).unwrap();
    std::fs::write(disk.join("queue/logical_block_size"), "512\n").unwrap();
    std::fs::write(disk.join("size"), format!("{sectors}\n")).unwrap();
    std::fs::create_dir_all(root.join("dev/block")).unwrap();
    std::os::unix::fs::symlink(&disk, root.join("dev/block").join(majmin)).unwrap();
    root
}
