//! Builds the first kernel's initramfs: busybox, kexec (+ the shared libraries `ldd` names), the
//! capture kernel image, the marker, a small initrd blob, a capture-side cpio for a Linux capture
//! kernel, and the /init script (`init.sh`). One archive serves every case: case parameters reach
//! /init through the first kernel's command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use rkdump_tests::tools;

use super::cpio::Cpio;

/// The /init script shared by the first kernel and a Linux capture kernel.
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// Size of the `--initrd` blob of the `*-initrd` cases: deliberately not a multiple of 4 KiB.
pub const INITRD_BLOB_LEN: usize = 12_345;

/// Host programs and images that go into the archive.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// busybox (static in Debian's busybox-static).
    pub busybox: PathBuf,
    /// kexec from kexec-tools (dynamically linked on Debian).
    pub kexec: PathBuf,
    /// The static rkdump-marker binary.
    pub marker: PathBuf,
    /// The capture kernel image handed to `kexec -p`.
    pub capture_kernel: PathBuf,
    /// The first kernel's /lib/modules/<release> (virtio-blk is a module in Debian's kernel).
    pub modules: Option<PathBuf>,
    /// Extra host programs for the Linux capture kernel's cpio (at their host paths, with their
    /// shared libraries), e.g. makedumpfile for the benchmark; empty for the e2e cases.
    pub capture_tools: Vec<PathBuf>,
    /// A static rkdumpctl, for cases that load rkdump the way users do (`rkdumpctl load`).
    pub rkdumpctl: Option<PathBuf>,
    /// Modules /init loads in this order for platform hardware (`/e2e/hwmodules/`, e.g. a
    /// watchdog driver); absolute paths.
    pub hw_modules: Vec<PathBuf>,
}

/// Modules /init loads (in this order) to reach a virtio-blk disk; paths below the module tree.
pub const VIRTIO_BLK_MODULES: [&str; 6] = [
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
];

/// File-system modules the file-target cases mount with (in this order; ext4 is built in).
pub const FS_MODULES: [&str; 2] = ["kernel/lib/libcrc32c.ko", "kernel/fs/xfs/xfs.ko"];

/// The module tree of a `/boot/vmlinuz-<release>` kernel, if installed.
pub fn modules_for(kernel: &Path) -> Option<PathBuf> {
    let name = kernel.file_name()?.to_str()?;
    let release = name.strip_prefix("vmlinuz-")?;
    let dir = PathBuf::from("/lib/modules").join(release);
    dir.is_dir().then_some(dir)
}

/// A built initramfs.
#[derive(Clone, Debug)]
pub struct Initramfs {
    /// The archive.
    pub path: PathBuf,
    /// Size of /e2e/capture.cpio inside it (the Linux capture kernel's `--initrd`).
    pub capture_cpio_len: u64,
}

/// The `--initrd` blob: a recognisable header, then a deterministic byte pattern.
pub fn initrd_blob() -> Vec<u8> {
    let mut b = b"RKDUMP-E2E-INITRD v1\n".to_vec();
    let mut x: u32 = 0x1234_5678;
    while b.len() < INITRD_BLOB_LEN {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.push(x as u8);
    }
    b
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Shared libraries (absolute paths) that `ldd` lists for `bin`; empty for static binaries.
pub fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>, String> {
    let text = match tools::output(Command::new("ldd").arg(bin)) {
        Ok(text) => text,
        // "not a dynamic executable" (static) exits non-zero.
        Err(tools::Error::Failed { output, .. })
            if output.contains("not a dynamic executable")
                || output.contains("statically linked") =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.to_string()),
    };
    parse_ldd(&text).map_err(|e| format!("ldd {}: {e}", bin.display()))
}

/// Parses `ldd` output (`name => /path (addr)`, `/path (addr)`, `linux-vdso.so.1 (addr)`).
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("not found") {
            return Err(format!("missing library: {line}"));
        }
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Adds `src` at `dest` (0755) plus its shared libraries at their host paths.
fn add_program(c: &mut Cpio, src: &Path, dest: &str) -> Result<(), String> {
    c.file(dest, 0o755, &read(src)?)?;
    for lib in shared_libs(src)? {
        let dest = lib.to_string_lossy().into_owned();
        if !c.contains(&dest) {
            // Follow symlinks: the archive gets the real bytes under the name the loader asks for.
            c.file(&dest, 0o755, &read(&lib)?)?;
        }
    }
    Ok(())
}

/// busybox, its applet links, /init, /dev/console and the mount points.
fn add_base(c: &mut Cpio, busybox: &Path, skip: &[&str]) -> Result<(), String> {
    add_program(c, busybox, "/bin/busybox")?;
    let list = tools::output(Command::new(busybox).arg("--list-full"))?;
    for applet in list.lines().map(str::trim) {
        let path = format!("/{applet}");
        if applet.is_empty()
            || path == "/bin/busybox"
            || skip.contains(&path.as_str())
            || c.contains(&path)
        {
            continue;
        }
        c.symlink(&path, "/bin/busybox")?;
    }
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/root",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
    ] {
        c.dir(d)?;
    }
    c.char_dev("/dev/console", 0o600, 5, 1)?;
    c.file("/init", 0o755, INIT_SCRIPT.as_bytes())?;
    Ok(())
}

/// The capture-side archive for a Linux capture kernel: busybox + /init, plus `tools`.
fn capture_cpio(busybox: &Path, tools: &[PathBuf]) -> Result<Vec<u8>, String> {
    let mut c = Cpio::new();
    let mut names = Vec::new();
    for t in tools {
        let dest = t.to_string_lossy().into_owned();
        // The real program must win over a busybox applet of the same name.
        add_program(&mut c, t, &dest)?;
        names.push(dest);
    }
    let skip: Vec<&str> = names.iter().map(String::as_str).collect();
    add_base(&mut c, busybox, &skip)?;
    Ok(c.finish())
}

/// Builds the first kernel's initramfs into `out`.
pub fn build(inputs: &Inputs, out: &Path) -> Result<Initramfs, String> {
    let capture = capture_cpio(&inputs.busybox, &inputs.capture_tools)?;
    let mut c = Cpio::new();
    // The real kexec must win over a busybox applet of the same name.
    add_program(&mut c, &inputs.kexec, "/usr/sbin/kexec")?;
    add_base(
        &mut c,
        &inputs.busybox,
        &["/sbin/kexec", "/usr/sbin/kexec", "/bin/kexec"],
    )?;
    c.file("/e2e/rkdump-marker", 0o755, &read(&inputs.marker)?)?;
    c.file(
        "/e2e/capture.bzImage",
        0o644,
        &read(&inputs.capture_kernel)?,
    )?;
    c.file("/e2e/initrd.bin", 0o644, &initrd_blob())?;
    if let Some(ctl) = &inputs.rkdumpctl {
        c.file("/e2e/rkdumpctl", 0o755, &read(ctl)?)?;
    }
    if let Some(m) = &inputs.modules {
        for (i, rel) in VIRTIO_BLK_MODULES.iter().enumerate() {
            let src = m.join(rel);
            if src.is_file() {
                c.file(&format!("/e2e/modules/{i}.ko"), 0o644, &read(&src)?)?;
            }
        }
        for (i, rel) in FS_MODULES.iter().enumerate() {
            let src = m.join(rel);
            if src.is_file() {
                c.file(&format!("/e2e/fsmodules/{i}.ko"), 0o644, &read(&src)?)?;
            }
        }
    }
    for (i, m) in inputs.hw_modules.iter().enumerate() {
        c.file(&format!("/e2e/hwmodules/{i:02}.ko"), 0o644, &read(m)?)?;
    }
    c.file("/e2e/capture.cpio", 0o644, &capture)?;
    let bytes = c.finish();
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // Write-then-rename: case directories hard-link the archive, so never rewrite it in place.
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| format!("renaming to {}: {e}", out.display()))?;
    Ok(Initramfs {
        path: out.to_path_buf(),
        capture_cpio_len: capture.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_parses() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fc6)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007fc6fb522000)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn blob_has_fixed_size_and_header() {
        let b = initrd_blob();
        assert_eq!(b.len(), INITRD_BLOB_LEN);
        assert!(b.starts_with(b"RKDUMP-E2E-INITRD"));
    }
}
