//! File targets on Linux: `rkdumpctl prepare --file PATH --size N` makes a preallocated dump
//! file whose blocks rkdump may write without a file-system driver, and [`file_map`] reads its
//! block map for `rkdumpctl load --file` (docs/targets.md#file-targets).
//!
//! What makes the blocks safe to write underneath the file system: the file is written fully
//! (no unwritten extents, which the file system would read back as zeros), fsynced, and made
//! immutable (`FS_IMMUTABLE_FL`, `chattr +i`), so neither the user nor a defragmenter moves or
//! changes it; the file system is ext4 or xfs, which neither checksum nor copy-on-write file
//! data; the extents are plain (none shared, inline, encoded, encrypted, unknown or unwritten);
//! and the file system sits directly on a partition or whole disk of a PCI controller rkdump
//! drives (virtio-blk, NVMe, AHCI), not on device-mapper, md, a loop device or a network block
//! device. Each check that fails names its reason. The decisions are pure functions with host
//! tests; the system calls are rustix's (statfs, inode flags, fadvise) and the `fiemap` crate's.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use fiemap::{FiemapExtentFlags, FiemapFlags};
use rkdump_devices::blob::filemap::FileMap;
use rkdump_devices::label::{self, Label};
use rkdump_devices::pci::Bdf;
use rkdump_devices::target::mapped::{MAX_RUNS, Run};

/// statfs `f_type` values (include/uapi/linux/magic.h).
pub mod magic {
    /// ext2/3/4.
    pub const EXT4: i64 = 0xEF53;
    /// XFS.
    pub const XFS: i64 = 0x5846_5342;
    /// btrfs.
    pub const BTRFS: i64 = 0x9123_683E;
    /// OpenZFS.
    pub const ZFS: i64 = 0x2FC1_2FC1;
    /// bcachefs.
    pub const BCACHEFS: i64 = 0xCA45_1A4E;
    /// NFS.
    pub const NFS: i64 = 0x6969;
    /// SMB (old).
    pub const SMB: i64 = 0x517B;
    /// CIFS.
    pub const CIFS: i64 = 0xFF53_4D42;
    /// SMB2/3.
    pub const SMB2: i64 = 0xFE53_4D42;
    /// Ceph.
    pub const CEPH: i64 = 0x00C3_6400;
    /// 9p.
    pub const V9FS: i64 = 0x0102_1997;
    /// FUSE (sshfs, s3fs and friends).
    pub const FUSE: i64 = 0x6573_5546;
    /// AFS.
    pub const AFS: i64 = 0x5346_414F;
    /// GFS2 (cluster).
    pub const GFS2: i64 = 0x0116_1970;
    /// OCFS2 (cluster).
    pub const OCFS2: i64 = 0x7461_636F;
}

/// Why a file cannot be a dump target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The file system checksums or copies-on-write file data: a block written underneath it
    /// fails its checksum or is not where the file's data is.
    CowFs(&'static str),
    /// A network or cluster file system: the blocks are not on a local disk.
    NetworkFs(&'static str),
    /// Any file system other than ext4 and xfs (by statfs magic).
    OtherFs(i64),
    /// The file system is on device-mapper (LVM, LUKS/dm-crypt, dm-raid, multipath).
    DeviceMapper(String),
    /// The file system is on an md RAID device.
    Md(String),
    /// The file system is on a loop device (its blocks are in another file).
    Loop(String),
    /// The disk is not behind a PCI controller rkdump drives (or sysfs does not say).
    NoPciDisk(String),
    /// An NVMe namespace other than the first (rkdump writes the first active one).
    NvmeNamespace(u32),
    /// FIEMAP says extent `index` is `what` (shared/reflinked, inline, encoded, encrypted,
    /// unknown, delayed or unwritten).
    Extent {
        /// Extent index.
        index: usize,
        /// What it is.
        what: &'static str,
    },
    /// The extents leave a hole, or do not cover the file.
    Hole(u64),
    /// An extent is not aligned to the disk's logical blocks.
    Unaligned(usize),
    /// More extents than rkdump maps.
    TooFragmented(usize),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::CowFs(fs) => write!(
                f,
                "{fs} checksums or copies-on-write file data: blocks written under it would fail \
                 their checksums or not be the file's (use a partition target instead)"
            ),
            Refusal::NetworkFs(fs) => {
                write!(
                    f,
                    "{fs} is a network or cluster file system: no local blocks"
                )
            }
            Refusal::OtherFs(m) => write!(
                f,
                "file system type {m:#x} is not ext4 or xfs (the only ones rkdump writes files on)"
            ),
            Refusal::DeviceMapper(d) => write!(
                f,
                "the file system is on device-mapper {d} (LVM, LUKS/dm-crypt, dm-raid, multipath): \
                 rkdump writes physical disks only"
            ),
            Refusal::Md(d) => write!(
                f,
                "the file system is on md RAID {d}: rkdump writes physical disks only"
            ),
            Refusal::Loop(d) => write!(
                f,
                "the file system is on loop device {d}: its blocks are inside another file"
            ),
            Refusal::NoPciDisk(d) => write!(
                f,
                "{d} is not a disk of a PCI controller rkdump drives (virtio-blk, NVMe, AHCI)"
            ),
            Refusal::NvmeNamespace(n) => write!(
                f,
                "NVMe namespace {n}: rkdump writes only the first namespace"
            ),
            Refusal::Extent { index, what } => write!(f, "extent {index} is {what}"),
            Refusal::Hole(at) => write!(f, "the extents leave a hole at byte {at}"),
            Refusal::Unaligned(i) => {
                write!(f, "extent {i} is not aligned to the disk's logical blocks")
            }
            Refusal::TooFragmented(n) => write!(
                f,
                "{n} extents (rkdump maps at most {MAX_RUNS}); defragment free space or use a smaller size"
            ),
        }
    }
}

/// Accepts ext4 and xfs by statfs magic; refuses everything else, naming why.
pub fn check_fs(f_type: i64) -> Result<&'static str, Refusal> {
    match f_type {
        magic::EXT4 => Ok("ext4"),
        magic::XFS => Ok("xfs"),
        magic::BTRFS => Err(Refusal::CowFs("btrfs")),
        magic::ZFS => Err(Refusal::CowFs("zfs")),
        magic::BCACHEFS => Err(Refusal::CowFs("bcachefs")),
        magic::NFS => Err(Refusal::NetworkFs("NFS")),
        magic::SMB | magic::CIFS | magic::SMB2 => Err(Refusal::NetworkFs("SMB/CIFS")),
        magic::CEPH => Err(Refusal::NetworkFs("Ceph")),
        magic::V9FS => Err(Refusal::NetworkFs("9p")),
        magic::FUSE => Err(Refusal::NetworkFs("FUSE")),
        magic::AFS => Err(Refusal::NetworkFs("AFS")),
        magic::GFS2 => Err(Refusal::NetworkFs("GFS2")),
        magic::OCFS2 => Err(Refusal::NetworkFs("OCFS2")),
        other => Err(Refusal::OtherFs(other)),
    }
}

/// One FIEMAP extent as the checks need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset in the file.
    pub logical: u64,
    /// Byte offset on the file system's block device.
    pub physical: u64,
    /// Bytes.
    pub length: u64,
    /// `FIEMAP_EXTENT_*` flags.
    pub flags: u32,
}

/// Checks the extents of a file of `file_bytes` and turns them into runs of `block_size`-byte
/// blocks on the whole disk, the file system's partition starting at byte `part_start`.
/// Adjacent extents are merged; bytes past the end of the file are cut off.
pub fn runs_of(
    extents: &[Extent],
    file_bytes: u64,
    part_start: u64,
    block_size: u32,
) -> Result<Vec<Run>, Refusal> {
    let refused = [
        (
            FiemapExtentFlags::SHARED,
            "shared with another file (reflinked or deduplicated)",
        ),
        (
            FiemapExtentFlags::DATA_INLINE,
            "inline (data stored with metadata)",
        ),
        (FiemapExtentFlags::DATA_TAIL, "a packed tail"),
        (FiemapExtentFlags::NOT_ALIGNED, "not block-aligned"),
        (FiemapExtentFlags::ENCODED, "encoded (compressed)"),
        (FiemapExtentFlags::DATA_ENCRYPTED, "encrypted"),
        (FiemapExtentFlags::UNKNOWN, "at an unknown location"),
        (
            FiemapExtentFlags::DELALLOC,
            "not yet allocated (delayed allocation)",
        ),
        (
            FiemapExtentFlags::UNWRITTEN,
            "unwritten (it would read back as zeros)",
        ),
    ];
    let bs = u64::from(block_size);
    let mut runs: Vec<Run> = Vec::new();
    let mut at = 0u64;
    for (i, e) in extents.iter().enumerate() {
        // Past the end of the file: xfs's speculative preallocation (unwritten, and never
        // read as the file's data) is no concern.
        if e.logical >= file_bytes {
            break;
        }
        for (flag, what) in refused {
            if e.flags & flag.bits() != 0 {
                return Err(Refusal::Extent { index: i, what });
            }
        }
        if e.logical != at {
            return Err(Refusal::Hole(at));
        }
        let len = e.length.min(file_bytes - at);
        let start = part_start
            .checked_add(e.physical)
            .ok_or(Refusal::Unaligned(i))?;
        if !start.is_multiple_of(bs) || !len.is_multiple_of(bs) || len == 0 {
            return Err(Refusal::Unaligned(i));
        }
        let run = Run {
            lba: start / bs,
            blocks: len / bs,
        };
        match runs.last_mut() {
            Some(last) if last.lba + last.blocks == run.lba => last.blocks += run.blocks,
            _ => runs.push(run),
        }
        at += len;
    }
    if at != file_bytes {
        return Err(Refusal::Hole(at));
    }
    if runs.len() > MAX_RUNS {
        return Err(Refusal::TooFragmented(runs.len()));
    }
    Ok(runs)
}

/// The disk under a file system, as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`vda`, `nvme0n1`, `sda`).
    pub name: String,
    /// The PCI function of its controller.
    pub bdf: Bdf,
    /// Logical block size.
    pub block_size: u32,
    /// Size in logical blocks.
    pub blocks: u64,
    /// Byte offset of the file system's partition (0 for a whole disk).
    pub part_start: u64,
}

fn read_num(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `ssss:bb:dd.f` as sysfs names PCI functions.
fn parse_bdf(s: &str) -> Option<Bdf> {
    let (seg, rest) = s.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    if seg.len() != 4 || bus.len() != 2 || dev.len() != 2 || func.len() != 1 {
        return None;
    }
    Bdf::new(
        u16::from_str_radix(seg, 16).ok()?,
        u8::from_str_radix(bus, 16).ok()?,
        u8::from_str_radix(dev, 16).ok()?,
        u8::from_str_radix(func, 16).ok()?,
    )
}

/// The disk holding block device `major:minor` (a file system's `st_dev`), from sysfs.
pub fn disk_of(sysfs: &Path, dev: (u32, u32)) -> Result<Disk, Refusal> {
    let link = sysfs.join(format!("dev/block/{}:{}", dev.0, dev.1));
    let name_of = |p: &Path| {
        p.file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    };
    let dir = fs::canonicalize(&link)
        .map_err(|_| Refusal::NoPciDisk(format!("block device {}:{}", dev.0, dev.1)))?;
    let node = name_of(&dir);
    if dir.join("dm").exists() || node.starts_with("dm-") {
        return Err(Refusal::DeviceMapper(node));
    }
    if dir.join("md").exists() || node.starts_with("md") {
        return Err(Refusal::Md(node));
    }
    if dir.join("loop").exists() || node.starts_with("loop") {
        return Err(Refusal::Loop(node));
    }
    let (disk_dir, part_start) = if dir.join("partition").exists() {
        let start = read_num(&dir.join("start")).ok_or(Refusal::NoPciDisk(node.clone()))?;
        let parent = dir.parent().ok_or(Refusal::NoPciDisk(node.clone()))?;
        (parent.to_path_buf(), start * 512)
    } else {
        (dir.clone(), 0)
    };
    let name = name_of(&disk_dir);
    let bdf = disk_dir
        .ancestors()
        .filter_map(|a| a.file_name().and_then(|n| parse_bdf(&n.to_string_lossy())))
        .next()
        .ok_or(Refusal::NoPciDisk(name.clone()))?;
    if let Some(nsid) = read_num(&disk_dir.join("nsid"))
        && nsid != 1
    {
        return Err(Refusal::NvmeNamespace(nsid as u32));
    }
    let block_size = read_num(&disk_dir.join("queue/logical_block_size"))
        .and_then(|b| u32::try_from(b).ok())
        .filter(|b| matches!(b, 512 | 4096))
        .ok_or(Refusal::NoPciDisk(name.clone()))?;
    // sysfs `size` counts 512-byte sectors whatever the block size.
    let sectors = read_num(&disk_dir.join("size")).ok_or(Refusal::NoPciDisk(name.clone()))?;
    Ok(Disk {
        name,
        bdf,
        block_size,
        blocks: sectors * 512 / u64::from(block_size),
        part_start,
    })
}

/// Major and minor of a `dev_t` (glibc's `gnu_dev_major`/`gnu_dev_minor`).
fn major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major as u32, minor as u32)
}

fn statfs_type(f: &File) -> Result<i64, String> {
    let s = rustix::fs::fstatfs(f).map_err(|e| format!("statfs: {e}"))?;
    #[allow(clippy::unnecessary_cast)]
    Ok(s.f_type as i64)
}

/// Checks the file system and disk that `dir_or_file` lives on.
fn check_place(f: &File, sysfs: &Path) -> Result<(&'static str, Disk), String> {
    let fs_name = check_fs(statfs_type(f)?).map_err(|r| r.to_string())?;
    let m = f.metadata().map_err(|e| e.to_string())?;
    let disk = disk_of(sysfs, major_minor(m.dev())).map_err(|r| r.to_string())?;
    Ok((fs_name, disk))
}

fn extents_of(f: &File) -> Result<Vec<Extent>, String> {
    fiemap::Fiemap::with_flags(f, FiemapFlags::SYNC)
        .map(|e| {
            e.map(|e| Extent {
                logical: e.fe_logical,
                physical: e.fe_physical,
                length: e.fe_length,
                flags: e.fe_flags.bits(),
            })
            .map_err(|e| format!("FIEMAP: {e}"))
        })
        .collect()
}

/// Reads the label at the start of the file through the file system, bypassing stale page
/// cache (`posix_fadvise(DONTNEED)` first: rkdump may have written the blocks underneath).
fn read_label(f: &File) -> Result<Label, String> {
    drop_cache(f);
    let mut head = vec![0u8; label::LABEL_BYTES];
    f.read_exact_at(&mut head, 0).map_err(|e| e.to_string())?;
    Label::parse(&head).map_err(|e| format!("no rkdump label at the file's start: {e}"))
}

/// Drops the file's clean cached pages, so reads go to the disk (what rkdump wrote there).
pub fn drop_cache(f: &File) {
    let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
}

/// The block map of a prepared dump file, checked again as `prepare --file` checked it, plus
/// the immutable flag and the label at its start.
pub fn file_map(path: &Path, sysfs: &Path) -> Result<FileMap, String> {
    let name = path.display();
    let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let (_, disk) = check_place(&f, sysfs).map_err(|e| format!("{name}: {e}"))?;
    let flags = rustix::fs::ioctl_getflags(&f).map_err(|e| format!("{name}: inode flags: {e}"))?;
    if !flags.contains(rustix::fs::IFlags::IMMUTABLE) {
        return Err(format!(
            "{name}: not immutable (chattr +i): the file system could move its blocks; run `rkdumpctl prepare --file` again"
        ));
    }
    let label = read_label(&f).map_err(|e| format!("{name}: {e}"))?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if label.capacity_bytes != size {
        return Err(format!(
            "{name}: label capacity {} differs from the file size {size}",
            label.capacity_bytes
        ));
    }
    let extents = extents_of(&f).map_err(|e| format!("{name}: {e}"))?;
    let runs = runs_of(&extents, size, disk.part_start, disk.block_size)
        .map_err(|r| format!("{name}: {r}"))?;
    Ok(FileMap {
        bdf: disk.bdf,
        block_size: disk.block_size,
        disk_blocks: disk.blocks,
        part_start_lba: disk.part_start / u64::from(disk.block_size),
        file_bytes: size,
        label_uuid: label.uuid,
        runs,
    })
}

/// RAM the dump may hold: the sum of `System RAM` in /proc/iomem (root sees addresses), else
/// MemTotal (a little less than RAM: the kernel's own reservations are not in it).
pub fn ram_bytes(proc_root: &Path) -> Option<u64> {
    let iomem = fs::read_to_string(proc_root.join("iomem")).unwrap_or_default();
    let mut total = 0u64;
    for line in iomem.lines().filter(|l| !l.starts_with(' ')) {
        let Some((range, what)) = line.split_once(" : ") else {
            continue;
        };
        if what.trim() != "System RAM" {
            continue;
        }
        let Some((a, b)) = range.trim().split_once('-') else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
            && b > a
        {
            total += b - a + 1;
        }
    }
    if total > 0 {
        return Some(total);
    }
    let meminfo = fs::read_to_string(proc_root.join("meminfo")).ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `--size auto`: the full-RAM vmcore (no page filtering exists yet, so every RAM byte is
/// dumped) plus the record's overhead and a margin: RAM + RAM/64 + 64 MiB (ELF and note
/// headers, the 1 MiB label area, the record header, one 8-byte checksum per MiB), rounded up
/// to 1 MiB.
pub fn auto_size(ram: u64) -> u64 {
    (ram + ram / 64 + (64 << 20)).next_multiple_of(1 << 20)
}

/// Arguments of `prepare --file`.
pub struct PrepareFile<'a> {
    /// Where the file goes.
    pub path: &'a Path,
    /// Its size.
    pub size: u64,
    /// Replace an existing file (clearing its immutable flag).
    pub force: bool,
    /// Check only.
    pub dry_run: bool,
    /// sysfs root.
    pub sysfs: &'a Path,
}

/// Creates, fills, syncs and freezes the dump file, then checks its map.
pub fn prepare(args: &PrepareFile<'_>, uuid: [u8; 16], created: u64) -> Result<FileMap, String> {
    let name = args.path.display();
    let dir = match args.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let d = File::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (fs_name, disk) = check_place(&d, args.sysfs).map_err(|e| format!("{name}: {e}"))?;
    let size = args.size.next_multiple_of(1 << 20);
    let label = Label::new(uuid, size, created).map_err(|e| format!("{name}: {e}"))?;
    if args.path.exists() {
        if !args.force {
            return Err(format!(
                "{name} exists; nothing written. Use --force to replace it (a dump in it not yet saved is lost)"
            ));
        }
        if !args.dry_run {
            if let Ok(f) = File::open(args.path)
                && let Ok(fl) = rustix::fs::ioctl_getflags(&f)
            {
                let _ = rustix::fs::ioctl_setflags(&f, fl - rustix::fs::IFlags::IMMUTABLE);
            }
            fs::remove_file(args.path).map_err(|e| format!("{name}: removing: {e}"))?;
        }
    }
    if args.dry_run {
        println!(
            "{name}: dry run, nothing written: {size} bytes on {fs_name}, disk {} at PCI {} (block size {}, partition at byte {})",
            disk.name, disk.bdf, disk.block_size, disk.part_start
        );
        return Err(String::new());
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(args.path)
        .map_err(|e| format!("{name}: {e}"))?;
    let result = (|| -> Result<FileMap, String> {
        let io = |e: std::io::Error| format!("{name}: {e}");
        // Every byte written (label, then zeros), so no extent is left unwritten.
        f.write_all(&label.to_bytes()).map_err(io)?;
        let zeros = vec![0u8; 4 << 20];
        let mut left = size - label::LABEL_BYTES as u64;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n]).map_err(io)?;
            left -= n as u64;
        }
        f.sync_all().map_err(|e| format!("{name}: fsync: {e}"))?;
        let fl = rustix::fs::ioctl_getflags(&f).map_err(|e| format!("{name}: inode flags: {e}"))?;
        rustix::fs::ioctl_setflags(&f, fl | rustix::fs::IFlags::IMMUTABLE)
            .map_err(|e| format!("{name}: setting immutable (FS_IMMUTABLE_FL): {e}"))?;
        file_map(args.path, args.sysfs)
    })();
    if result.is_err() {
        // Leave nothing behind that `load --file` could pick up.
        if let Ok(fl) = rustix::fs::ioctl_getflags(&f) {
            let _ = rustix::fs::ioctl_setflags(&f, fl - rustix::fs::IFlags::IMMUTABLE);
        }
        let _ = fs::remove_file(args.path);
    }
    result.map_err(|e| format!("{e}; the file was removed"))
}

/// Writes `bytes` at `offset` of `path` and syncs. An immutable file (a dump file) has the flag
/// lifted for this one write and set again: ext4 and xfs overwrite allocated, written blocks
/// where they are, so the block map stays valid. Devices and files without inode flags are
/// written as they are.
pub fn write_in_place(path: &Path, offset: u64, bytes: &[u8]) -> Result<(), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let frozen = rustix::fs::ioctl_getflags(&f)
        .ok()
        .filter(|fl| fl.contains(rustix::fs::IFlags::IMMUTABLE));
    if let Some(fl) = frozen {
        rustix::fs::ioctl_setflags(&f, fl - rustix::fs::IFlags::IMMUTABLE)
            .map_err(|e| format!("lifting the immutable flag: {e}"))?;
    }
    let r = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|w| w.write_all_at(bytes, offset).and_then(|()| w.sync_all()))
        .map_err(|e| e.to_string());
    if let Some(fl) = frozen {
        rustix::fs::ioctl_setflags(&f, fl)
            .map_err(|e| format!("setting the immutable flag again: {e}"))?;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(logical: u64, physical: u64, length: u64, flags: u32) -> Extent {
        Extent {
            logical,
            physical,
            length,
            flags,
        }
    }

    #[test]
    fn file_systems_are_named_when_refused() {
        assert_eq!(check_fs(magic::EXT4), Ok("ext4"));
        assert_eq!(check_fs(magic::XFS), Ok("xfs"));
        assert_eq!(check_fs(magic::BTRFS), Err(Refusal::CowFs("btrfs")));
        assert_eq!(check_fs(magic::ZFS), Err(Refusal::CowFs("zfs")));
        assert_eq!(check_fs(magic::BCACHEFS), Err(Refusal::CowFs("bcachefs")));
        assert_eq!(check_fs(magic::NFS), Err(Refusal::NetworkFs("NFS")));
        assert_eq!(check_fs(magic::CIFS), Err(Refusal::NetworkFs("SMB/CIFS")));
        // tmpfs.
        assert_eq!(check_fs(0x0102_1994), Err(Refusal::OtherFs(0x0102_1994)));
        assert!(
            Refusal::CowFs("btrfs")
                .to_string()
                .starts_with("btrfs checksums or copies-on-write")
        );
    }

    #[test]
    fn extents_become_merged_disk_runs() {
        // Two physically adjacent extents and one elsewhere; partition at 1 MiB; 4 KiB blocks.
        let e = [
            ext(0, 8 << 20, 1 << 20, 0),
            ext(1 << 20, 9 << 20, 1 << 20, 0),
            ext(2 << 20, 40 << 20, 2 << 20, FiemapExtentFlags::LAST.bits()),
        ];
        let runs = runs_of(&e, 4 << 20, 1 << 20, 4096).unwrap();
        assert_eq!(
            runs,
            vec![
                Run {
                    lba: 9 << 8,
                    blocks: 512
                },
                Run {
                    lba: 41 << 8,
                    blocks: 512
                }
            ]
        );
        // 512-byte blocks count the same bytes; a tail past the file is cut off.
        let runs = runs_of(&e, 3 << 20, 0, 512).unwrap();
        assert_eq!(runs[1].blocks, 2048);
        // xfs's preallocation past the end of the file is unwritten, and ignored; an unwritten
        // extent inside the file is not.
        let unwritten = FiemapExtentFlags::UNWRITTEN.bits();
        let mut pre = e.to_vec();
        pre.push(ext(4 << 20, 60 << 20, 1 << 20, unwritten));
        assert_eq!(runs_of(&pre, 4 << 20, 1 << 20, 4096).unwrap().len(), 2);
        assert_eq!(
            runs_of(&pre, 5 << 20, 1 << 20, 4096),
            Err(Refusal::Extent {
                index: 3,
                what: "unwritten (it would read back as zeros)"
            })
        );
    }

    #[test]
    fn each_extent_refusal_is_named() {
        let flag = |f: FiemapExtentFlags| runs_of(&[ext(0, 0, 4096, f.bits())], 4096, 0, 512);
        let what = |f| match flag(f) {
            Err(Refusal::Extent { index: 0, what }) => what,
            other => panic!("{other:?}"),
        };
        assert!(what(FiemapExtentFlags::SHARED).starts_with("shared"));
        assert!(what(FiemapExtentFlags::DATA_INLINE).starts_with("inline"));
        assert!(what(FiemapExtentFlags::ENCODED).starts_with("encoded"));
        assert_eq!(what(FiemapExtentFlags::DATA_ENCRYPTED), "encrypted");
        assert!(what(FiemapExtentFlags::UNKNOWN).starts_with("at an unknown"));
        assert!(what(FiemapExtentFlags::UNWRITTEN).starts_with("unwritten"));
        assert!(what(FiemapExtentFlags::DELALLOC).starts_with("not yet allocated"));
        // Negative control: LAST and MERGED are fine.
        let ok = FiemapExtentFlags::LAST | FiemapExtentFlags::MERGED;
        assert!(flag(ok).is_ok());
        // A hole, a short map, a misaligned extent.
        assert_eq!(
            runs_of(&[ext(0, 0, 4096, 0), ext(8192, 0, 4096, 0)], 12288, 0, 512),
            Err(Refusal::Hole(4096))
        );
        assert_eq!(
            runs_of(&[ext(0, 0, 4096, 0)], 8192, 0, 512),
            Err(Refusal::Hole(4096))
        );
        assert_eq!(
            runs_of(&[ext(0, 1024, 4096, 0)], 4096, 0, 4096),
            Err(Refusal::Unaligned(0))
        );
    }

    /// A fake sysfs: vda (virtio, 00:04.0) with vda1 at sector 2048, nvme0n2, dm-0, loop0, md0.
    #[test]
    fn disks_are_found_or_refused_from_sysfs() {
        let root =
            std::env::temp_dir().join(format!("rkdumpctl-file-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let pci = root.join("devices/pci0000:00/0000:00:04.0");
        let vda = pci.join("virtio1/block/vda");
        let nvme = pci.join("nvme/nvme0/nvme0n2");
        let virt = root.join("devices/virtual/block");
        for d in [
            vda.join("vda1"),
            vda.join("queue"),
            nvme.join("queue"),
            virt.join("dm-0/dm"),
            virt.join("loop0/loop"),
            virt.join("md0/md"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(vda.join("vda1/partition"), "1\n").unwrap();
        fs::write(vda.join("vda1/start"), "2048\n").unwrap();
        fs::write(vda.join("queue/logical_block_size"), "512\n").unwrap();
        fs::write(vda.join("size"), "262144\n").unwrap();
        fs::write(nvme.join("nsid"), "2\n").unwrap();
        fs::create_dir_all(root.join("dev/block")).unwrap();
        for (link, target) in [
            ("254:1", vda.join("vda1")),
            ("254:0", vda.clone()),
            ("259:0", nvme.clone()),
            ("253:0", virt.join("dm-0")),
            ("7:0", virt.join("loop0")),
            ("9:0", virt.join("md0")),
        ] {
            std::os::unix::fs::symlink(target, root.join("dev/block").join(link)).unwrap();
        }
        let d = disk_of(&root, (254, 1)).unwrap();
        assert_eq!(
            d,
            Disk {
                name: "vda".into(),
                bdf: Bdf::new(0, 0, 4, 0).unwrap(),
                block_size: 512,
                blocks: 262_144,
                part_start: 1 << 20,
            }
        );
        assert_eq!(disk_of(&root, (254, 0)).unwrap().part_start, 0);
        assert_eq!(
            disk_of(&root, (253, 0)),
            Err(Refusal::DeviceMapper("dm-0".into()))
        );
        assert_eq!(disk_of(&root, (7, 0)), Err(Refusal::Loop("loop0".into())));
        assert_eq!(disk_of(&root, (9, 0)), Err(Refusal::Md("md0".into())));
        assert_eq!(disk_of(&root, (259, 0)), Err(Refusal::NvmeNamespace(2)));
        assert!(matches!(disk_of(&root, (1, 1)), Err(Refusal::NoPciDisk(_))));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn auto_size_is_ram_plus_margin() {
        assert_eq!(auto_size(1 << 30), (1 << 30) + (16 << 20) + (64 << 20));
        let dir = std::env::temp_dir().join(format!("rkdumpctl-proc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("iomem"),
            "00001000-0009fbff : System RAM\n000a0000-000fffff : Reserved\n00100000-7ffdffff : System RAM\n  01000000-01ffffff : Kernel code\n",
        )
        .unwrap();
        assert_eq!(ram_bytes(&dir), Some(0x9ec00 + 0x7fee0000));
        // Unprivileged: addresses read as zero, MemTotal is used.
        fs::write(dir.join("iomem"), "00000000-00000000 : System RAM\n").unwrap();
        fs::write(dir.join("meminfo"), "MemTotal:        2000000 kB\n").unwrap();
        assert_eq!(ram_bytes(&dir), Some(2_000_000 * 1024));
        let _ = fs::remove_dir_all(&dir);
    }
}
