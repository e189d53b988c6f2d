//! `rkdumpctl prepare <disk or image>`: writes the rkdump label (devices::label) to the first
//! 4 KiB so the capture kernel may dump there. Nothing else on the device is written.
//!
//! `--partition N` labels partition `N` of a disk image instead (the GPT or MBR of the image is
//! read with the capture kernel's own parser); on a real disk, name the partition's device
//! node (`/dev/sda2`, `/dev/nvme0n1p2`) instead: the label's capacity is the partition's size
//! either way, and the capture kernel checks it against the partition table it reads.
//!
//! It asks before it destroys: a device holding a dump not yet saved, a partition table, or a
//! file system, swap, LUKS or LVM signature is refused, naming what was found, unless
//! `--force`. `--dry-run` shows the label it would write and writes nothing.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use rkdump_devices::label::{self, Label, RecordHeader, State};

/// Arguments of `prepare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Block device, partition or image file to dedicate to rkdump dumps.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    device: Option<PathBuf>,
    /// Create a preallocated dump file here instead (ext4 or xfs; docs/targets.md).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Size of the `--file`: bytes (K, M, G suffixes: powers of 1024) or `auto` (the RAM size
    /// plus a margin: every RAM byte is dumped until page filtering exists).
    #[arg(long, value_name = "BYTES|auto")]
    size: Option<String>,
    /// With `--file`: check an existing dump file as `load --file` does (file system, disk,
    /// immutable flag, label, extents) and print its map; writes nothing.
    #[arg(long, requires = "file")]
    check: bool,
    /// sysfs root, for finding the file's disk.
    #[arg(long, value_name = "DIR", default_value = "/sys", hide = true)]
    sysfs_root: PathBuf,
    /// procfs root, for `--size auto`.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    proc_root: PathBuf,
    /// Write the label even over a dump not yet saved, a partition table, a file system or
    /// other data (destroys them).
    #[arg(long)]
    force: bool,
    /// Show the label that would be written, and where, and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Label partition N (1-based, as Linux numbers them) of the disk image instead of the
    /// whole image.
    #[arg(long, value_name = "N")]
    partition: Option<u32>,
}

/// Byte offset and length of partition `number` of the disk or image `f` of `size` bytes,
/// from its GPT or MBR (512-byte sectors, as image files have; 4096 tried next).
pub fn partition_range(f: &File, size: u64, number: u32) -> Result<(u64, u64), String> {
    use rkdump_devices::target::partition;
    let mut last = String::new();
    for bs in [512u32, 4096] {
        let mut read = |lba: u64, buf: &mut [u8]| {
            lba.checked_mul(u64::from(bs))
                .is_some_and(|off| f.read_exact_at(buf, off).is_ok())
        };
        match partition::read_table(&mut read, bs, size / u64::from(bs)) {
            Ok(t) => {
                let p = t
                    .partitions
                    .iter()
                    .find(|p| p.number == number)
                    .ok_or_else(|| {
                        format!(
                            "no partition {number} in its {} table (partitions: {}; MBR extended \
                         partitions and their logical partitions are not dump targets)",
                            t.scheme,
                            t.partitions
                                .iter()
                                .map(|p| p.number.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                return Ok((p.first_lba * u64::from(bs), p.blocks * u64::from(bs)));
            }
            // A GPT on 4096-byte sectors has its header at byte 4096, not 512.
            Err(e) => {
                if last.is_empty() {
                    last = e.to_string();
                }
            }
        }
    }
    Err(last)
}

/// Something on the device that writing a label would destroy or orphan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// A valid rkdump record for this label that `rkdumpctl save` has not marked saved.
    UnsavedDump {
        /// Record state.
        state: State,
        /// vmcore bytes on disk.
        written: u64,
        /// vmcore bytes in all.
        vmcore_size: u64,
        /// The crashed kernel's release.
        osrelease: String,
    },
    /// A record header with the rkdump magic that does not check out.
    DamagedDump(label::Error),
    /// `RKDUMPLB` magic, but the label is not valid.
    DamagedLabel(label::Error),
    /// A partition table.
    PartitionTable(String),
    /// A file system, swap, LUKS or LVM signature.
    Signature(&'static str),
    /// Non-zero bytes in the first 4 KiB that match no known signature.
    Data,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::UnsavedDump {
                state,
                written,
                vmcore_size,
                osrelease,
            } => write!(
                f,
                "a dump not yet saved ({state:?}, {written} of {vmcore_size} bytes, kernel {osrelease}); \
                 run `rkdumpctl save` first"
            ),
            Found::DamagedDump(e) => write!(f, "a damaged dump record ({e})"),
            Found::DamagedLabel(e) => write!(f, "a damaged rkdump label ({e})"),
            Found::PartitionTable(what) => write!(f, "{what}"),
            Found::Signature(what) => write!(f, "{what} signature"),
            Found::Data => f.write_str("data in the first 4 KiB (no rkdump label)"),
        }
    }
}

/// Bytes read from the start of the device for the probes (btrfs's superblock is at 64 KiB).
const PROBE_BYTES: usize = 128 << 10;

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.get(off..off + magic.len()) == Some(magic)
}

/// Foreign signatures in the first [`PROBE_BYTES`] of a device. Offsets are those of
/// util-linux libblkid's probers (libblkid/src/partitions/dos.c, gpt.c;
/// libblkid/src/superblocks/ext.c, xfs.c, btrfs.c, swap.c, luks.c, lvm.c, vfat.c, ntfs.c,
/// exfat.c).
pub fn foreign_signatures(head: &[u8]) -> Vec<Found> {
    let mut found = Vec::new();
    // dos.c: 0x55 0xAA at 510 and four 16-byte entries from 446; an entry with a non-zero
    // type (byte 4) is in use. Type 0xEE is GPT's protective MBR.
    if at(head, 510, &[0x55, 0xAA]) {
        let types: Vec<u8> = (0..4)
            .filter_map(|i| head.get(446 + 16 * i + 4).copied())
            .filter(|&t| t != 0)
            .collect();
        if let Some(t) = types.first() {
            found.push(Found::PartitionTable(format!(
                "an MBR partition table ({} partition(s), first of type {t:#04x})",
                types.len()
            )));
        }
    }
    // gpt.c: the GPT header "EFI PART" at LBA 1 (512-byte or 4096-byte sectors).
    if at(head, 512, b"EFI PART") || at(head, 4096, b"EFI PART") {
        found.push(Found::PartitionTable("a GPT partition table".into()));
    }
    // ext.c: superblock at 1024, s_magic 0xEF53 (LE) at +0x38.
    if at(head, 1080, &[0x53, 0xEF]) {
        found.push(Found::Signature("an ext2/3/4 file system"));
    }
    // xfs.c: "XFSB" at 0.
    if at(head, 0, b"XFSB") {
        found.push(Found::Signature("an XFS file system"));
    }
    // btrfs.c: superblock at 64 KiB, magic at +0x40.
    if at(head, 65536 + 0x40, b"_BHRfS_M") {
        found.push(Found::Signature("a btrfs file system"));
    }
    // swap.c: the last 10 bytes of the first page, for page sizes 4 KiB to 64 KiB.
    for page in [4096usize, 8192, 16384, 32768, 65536] {
        if at(head, page - 10, b"SWAPSPACE2") || at(head, page - 10, b"SWAP-SPACE") {
            found.push(Found::Signature("a Linux swap"));
            break;
        }
    }
    // luks.c: "LUKS\xba\xbe" at 0 (LUKS1 and LUKS2).
    if at(head, 0, b"LUKS\xba\xbe") {
        found.push(Found::Signature("a LUKS encrypted volume"));
    }
    // lvm.c: "LABELONE" at the start of one of sectors 0-3.
    if (0..4).any(|s| at(head, s * 512, b"LABELONE")) {
        found.push(Found::Signature("an LVM2 physical volume"));
    }
    // vfat.c: the boot sector's file system type string.
    if at(head, 0x52, b"FAT32   ")
        || at(head, 0x52, b"MSWIN")
        || [&b"FAT12   "[..], b"FAT16   ", b"FAT     ", b"MSDOS"]
            .iter()
            .any(|m| at(head, 0x36, m))
    {
        found.push(Found::Signature("a FAT file system"));
    }
    // ntfs.c and exfat.c: the OEM id at 3.
    if at(head, 3, b"NTFS    ") {
        found.push(Found::Signature("an NTFS file system"));
    }
    if at(head, 3, b"EXFAT   ") {
        found.push(Found::Signature("an exFAT file system"));
    }
    found
}

/// What writing a label to the device whose first bytes are `head` would destroy; reads the
/// record header of an existing label through `read_at`.
fn survey(head: &[u8], read_at: &dyn Fn(u64, &mut [u8]) -> bool) -> Vec<Found> {
    match Label::parse(head) {
        // Already rkdump's: only a dump not yet saved matters (stale signatures past the
        // label are from before the first prepare).
        Ok(lab) => {
            let mut hdr = vec![0u8; label::HEADER_BYTES];
            if !read_at(lab.data_offset, &mut hdr) {
                return Vec::new();
            }
            match RecordHeader::parse(&lab, &hdr) {
                Ok(h) if h.is_saved() => Vec::new(),
                Ok(h) => vec![Found::UnsavedDump {
                    state: h.state,
                    written: h.written,
                    vmcore_size: h.vmcore_size,
                    osrelease: h.osrelease_str().unwrap_or("?").to_string(),
                }],
                // No record, or one for an earlier label (not saveable any more).
                Err(label::Error::BadMagic | label::Error::WrongLabel) => Vec::new(),
                Err(e) => vec![Found::DamagedDump(e)],
            }
        }
        Err(e) => {
            let mut found = Vec::new();
            if at(head, 0, &label::LABEL_MAGIC) {
                found.push(Found::DamagedLabel(e));
            }
            found.extend(foreign_signatures(head));
            let first = &head[..head.len().min(label::LABEL_BYTES)];
            if found.is_empty() && first.iter().any(|&b| b != 0) {
                found.push(Found::Data);
            }
            found
        }
    }
}

fn uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        for (i, pair) in hex.chunks(2).take(16).enumerate() {
            u[i] = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("0"), 16).unwrap_or(0);
        }
    }
    u
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `--size`: `auto`, or bytes with an optional K/M/G/T suffix (powers of 1024).
fn parse_size(v: &str, proc_root: &std::path::Path) -> Result<u64, String> {
    use crate::filetarget;
    if v == "auto" {
        let ram = filetarget::ram_bytes(proc_root)
            .ok_or("--size auto: cannot read the RAM size from /proc/iomem or /proc/meminfo")?;
        let size = filetarget::auto_size(ram);
        println!(
            "--size auto: {size} bytes = {ram} bytes of RAM + 1/64 + 64 MiB (no page filtering yet: the dump holds all RAM)"
        );
        return Ok(size);
    }
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&v[..i], 1 << 40),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or(format!(
            "--size {v}: expected bytes (K/M/G/T suffix) or auto"
        ))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `prepare --file`.
fn run_file(args: &Args, path: &std::path::Path) -> Result<(), String> {
    use crate::filetarget::{self, PrepareFile};
    if args.check {
        let map = filetarget::file_map(path, &args.sysfs_root)?;
        println!(
            "{}: usable dump file: {} bytes in {} run(s) on disk {} ({} blocks of {} bytes, partition at block {}), label {}",
            path.display(),
            map.file_bytes,
            map.runs.len(),
            map.bdf,
            map.disk_blocks,
            map.block_size,
            map.part_start_lba,
            hex(&map.label_uuid)
        );
        for r in &map.runs {
            println!("  run lba={} blocks={}", r.lba, r.blocks);
        }
        return Ok(());
    }
    let Some(size) = args.size.as_deref() else {
        return Err("--file needs --size <bytes|auto>".into());
    };
    let size = parse_size(size, &args.proc_root)?;
    let p = PrepareFile {
        path,
        size,
        force: args.force,
        dry_run: args.dry_run,
        sysfs: &args.sysfs_root,
    };
    let map = match filetarget::prepare(&p, uuid(), now()) {
        Ok(m) => m,
        Err(e) if e.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    println!(
        "{}: rkdump dump file ready: {} bytes, immutable, {} run(s) on disk {} (block size {}, {} blocks), label {}",
        path.display(),
        map.file_bytes,
        map.runs.len(),
        map.bdf,
        map.block_size,
        map.disk_blocks,
        hex(&map.label_uuid)
    );
    println!(
        "next: rkdumpctl load --file {} (puts the map into the config blob)",
        path.display()
    );
    Ok(())
}

/// Runs `prepare`.
pub fn run(args: &Args) -> Result<(), String> {
    if let Some(path) = &args.file {
        return run_file(args, path);
    }
    let Some(dev) = &args.device else {
        return Err("name a device, or --file".into());
    };
    let name = dev.display();
    // A dry run never opens the device for writing.
    let mut f: File = OpenOptions::new()
        .read(true)
        .write(!args.dry_run)
        .open(dev)
        .map_err(|e| format!("{name}: {e}"))?;
    // Works for block devices too (Linux reports their size at SEEK_END).
    let whole = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{name}: size: {e}"))?;
    let (base, size) = match args.partition {
        None => (0, whole),
        Some(n) => partition_range(&f, whole, n).map_err(|e| format!("{name}: {e}"))?,
    };
    let mut head = vec![0u8; PROBE_BYTES.min(usize::try_from(size).unwrap_or(PROBE_BYTES))];
    f.read_exact_at(&mut head, base)
        .map_err(|e| format!("{name}: reading: {e}"))?;
    let read_at = |off: u64, buf: &mut [u8]| {
        off.checked_add(buf.len() as u64)
            .is_some_and(|end| end <= size)
            && f.read_exact_at(buf, base + off).is_ok()
    };
    let found = survey(&head, &read_at);
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(ToString::to_string).collect();
        if !args.force {
            return Err(format!(
                "{name} holds {}; nothing written. Use --force to dedicate it to rkdump anyway \
                 (destroys what is there)",
                list.join("; ")
            ));
        }
        for what in &list {
            eprintln!("rkdumpctl prepare: warning: --force: overwriting {what}");
        }
    }
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let capacity = size / label::ALIGN * label::ALIGN;
    let label = Label::new(uuid(), capacity, created).map_err(|e| format!("{name}: {e}"))?;
    let bytes = label.to_bytes();
    if args.dry_run {
        let crc = u32::from_le_bytes([bytes[0x3C], bytes[0x3D], bytes[0x3E], bytes[0x3F]]);
        println!("{name}: dry run, nothing written ({size} bytes)");
        let place = match args.partition {
            None => String::from("offset 0 (LBA 0-7)"),
            Some(n) => format!("offset {base} (the first 8 sectors of partition {n})"),
        };
        println!(
            "would write {} bytes at {place}: a 64-byte label, then zeros",
            bytes.len()
        );
        println!("  0x00 magic          RKDUMPLB");
        println!("  0x08 version        {}", label::VERSION);
        println!("  0x0C header_size    64");
        println!("  0x10 uuid           {}", hex(&label.uuid));
        println!("  0x20 capacity_bytes {capacity}");
        println!(
            "  0x28 data_offset    {:#x} (record header there, vmcore from {:#x})",
            label.data_offset,
            label.data_offset + label::HEADER_BYTES as u64
        );
        println!("  0x30 created        {created}");
        println!("  0x38 flags          0");
        println!("  0x3C crc32          {crc:#010x}");
        return Ok(());
    }
    f.write_all_at(&bytes, base)
        .map_err(|e| format!("{name}: writing the label: {e}"))?;
    f.sync_all().map_err(|e| format!("{name}: {e}"))?;
    let part = args.partition.map_or(String::new(), |n| {
        format!(" on partition {n} at byte {base}")
    });
    println!(
        "{name}: rkdump label written{part} (capacity {capacity} bytes, data at {:#x})",
        label.data_offset
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(set: &[(usize, &[u8])]) -> Vec<Found> {
        let mut head = vec![0u8; PROBE_BYTES];
        for (off, b) in set {
            head[*off..*off + b.len()].copy_from_slice(b);
        }
        survey(&head, &|_, _| false)
    }

    fn sig(what: &'static str) -> Vec<Found> {
        vec![Found::Signature(what)]
    }

    #[test]
    fn each_signature_is_named() {
        assert_eq!(probe(&[]), vec![]);
        assert_eq!(probe(&[(0, b"XFSB")]), sig("an XFS file system"));
        assert_eq!(probe(&[(65600, b"_BHRfS_M")]), sig("a btrfs file system"));
        assert_eq!(probe(&[(16374, b"SWAPSPACE2")]), sig("a Linux swap"));
        assert_eq!(
            probe(&[(0, b"LUKS\xba\xbe")]),
            sig("a LUKS encrypted volume")
        );
        assert_eq!(
            probe(&[(1536, b"LABELONE")]),
            sig("an LVM2 physical volume")
        );
        assert_eq!(probe(&[(0x52, b"FAT32   ")]), sig("a FAT file system"));
        assert_eq!(probe(&[(3, b"NTFS    ")]), sig("an NTFS file system"));
        assert_eq!(probe(&[(3, b"EXFAT   ")]), sig("an exFAT file system"));
        assert!(matches!(
            probe(&[(4096, b"EFI PART")])[..],
            [Found::PartitionTable(_)]
        ));
        // Negative control: a boot signature with four empty entries is no partition table,
        // only unknown data.
        assert_eq!(probe(&[(510, &[0x55, 0xAA])]), vec![Found::Data]);
        // Unknown data past the first 4 KiB is not refused (it is not a known signature).
        assert_eq!(probe(&[(8000, b"hello")]), vec![]);
    }
}
