//! `rkdumpctl save <disk or image> -o <vmcore>`: verifies the dump record rkdump wrote (label
//! and header CRC-32, per-block XXH64) and extracts the vmcore. Incomplete, truncated or corrupt dumps
//! are refused unless `--partial`. A complete kdump-compressed dump is written without the zeros
//! the record put before its page data (`rkdump_vmcore::kdump::compact`, after the record's
//! checksums were verified); an ELF dump, a partial one, or a kdump file the compaction refuses
//! is written as the record holds it.
//!
//! `save` cannot destroy anything: the dump device is opened read-only until the vmcore is
//! durable, the output never is (or lives on) the dump device, the vmcore is written to
//! `<output>.incomplete` and renamed only once all of it is written and synced (on any failure
//! the `.incomplete` file is removed), and the one write to the dump device afterwards sets
//! the record's `SAVED` flag ([`label::mark_saved`]).
//!
//! A dump file (`prepare --file`) is read through the file system after
//! `posix_fadvise(POSIX_FADV_DONTNEED)` drops its cached pages (rkdump wrote its blocks
//! underneath the file system, so a cached page would be stale); its `SAVED` flag is set with
//! the immutable flag lifted for that one in-place write.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rkdump_devices::label::{
    self, ChecksumKind, Label, ReadFailed, RecordHeader, RecordSummary, State,
};
use rkdump_devices::record::read::{self, ReadError};
use rkdump_vmcore::SinkError;
use rkdump_vmcore::kdump::abi::KDUMP_SIGNATURE;
use rkdump_vmcore::kdump::compact::{CompactError, Compacted, Compactor};

/// Arguments of `save`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dump device or image file.
    device: PathBuf,
    /// Where to write the vmcore (written as `<output>.incomplete`, renamed when complete).
    #[arg(short, long)]
    output: PathBuf,
    /// Extract an incomplete or truncated dump too (the vmcore is then cut short).
    #[arg(long)]
    partial: bool,
    /// The dump is in partition N (1-based) of the disk image (`rkdumpctl prepare
    /// --partition N`).
    #[arg(long, value_name = "N")]
    partition: Option<u32>,
}

/// Why an output path is refused before anything is opened for writing.
#[derive(Debug, PartialEq, Eq)]
pub enum OutputRefused {
    /// The path is the dump device or image itself (same device and inode).
    SameFile(PathBuf),
    /// The path is a device node for the dump device.
    IsTheDevice(PathBuf),
    /// The output's file system lives on the dump device (or a partition or mapping of it).
    OnTheDevice {
        /// Directory the output goes to.
        dir: PathBuf,
        /// `major:minor` of the file system's device.
        fs_dev: (u32, u32),
        /// `major:minor` of the dump device.
        dump_dev: (u32, u32),
    },
    /// The path exists and is not a regular file (a directory, device, fifo, socket).
    NotRegular(PathBuf),
}

impl fmt::Display for OutputRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputRefused::SameFile(p) => write!(
                f,
                "{} is the dump device or image itself; writing there would destroy the dump",
                p.display()
            ),
            OutputRefused::IsTheDevice(p) => write!(
                f,
                "{} is a device node of the dump device; writing there would destroy the dump",
                p.display()
            ),
            OutputRefused::OnTheDevice {
                dir,
                fs_dev,
                dump_dev,
            } => write!(
                f,
                "{} is on a file system on the dump device (file system {}:{}, dump device {}:{}); \
                 writing there could overwrite the dump",
                dir.display(),
                fs_dev.0,
                fs_dev.1,
                dump_dev.0,
                dump_dev.1
            ),
            OutputRefused::NotRegular(p) => {
                write!(f, "{} exists and is not a regular file", p.display())
            }
        }
    }
}

/// Major and minor number of a Linux `dev_t` (glibc's `gnu_dev_major`/`gnu_dev_minor`).
fn major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major as u32, minor as u32)
}

/// The block device `dev` and every device it is built on, from sysfs: the whole disk of a
/// partition (`partition` file, parent directory) and the members of a device-mapper or md
/// device (`slaves/`), recursively.
fn backing_devices(sysfs: &Path, dev: (u32, u32)) -> Vec<(u32, u32)> {
    let mut found = vec![dev];
    let mut todo = vec![(dev, 0u32)];
    while let Some((d, depth)) = todo.pop() {
        if depth > 8 {
            continue;
        }
        let link = sysfs.join(format!("dev/block/{}:{}", d.0, d.1));
        let Ok(dir) = fs::canonicalize(&link) else {
            continue;
        };
        let mut next = Vec::new();
        if dir.join("partition").exists()
            && let Some(parent) = dir.parent()
        {
            next.push(parent.to_path_buf());
        }
        if let Ok(slaves) = fs::read_dir(dir.join("slaves")) {
            next.extend(
                slaves
                    .flatten()
                    .filter_map(|e| fs::canonicalize(e.path()).ok()),
            );
        }
        for n in next {
            let Some(nd) = fs::read_to_string(n.join("dev"))
                .ok()
                .and_then(|s| parse_major_minor(s.trim()))
            else {
                continue;
            };
            if !found.contains(&nd) {
                found.push(nd);
                todo.push((nd, depth + 1));
            }
        }
    }
    found
}

fn parse_major_minor(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// `<output>.incomplete`, next to the output.
fn incomplete_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".incomplete");
    PathBuf::from(name)
}

/// Refuses an output that is, or lives on, the dump device `input` (with metadata `im`).
fn check_output(
    im: &Metadata,
    output: &Path,
    incomplete: &Path,
    sysfs: &Path,
) -> Result<(), OutputRefused> {
    let block = im.file_type().is_block_device();
    for p in [output, incomplete] {
        let Ok(m) = fs::metadata(p) else { continue };
        if m.dev() == im.dev() && m.ino() == im.ino() {
            return Err(OutputRefused::SameFile(p.to_path_buf()));
        }
        if block && m.file_type().is_block_device() && m.rdev() == im.rdev() {
            return Err(OutputRefused::IsTheDevice(p.to_path_buf()));
        }
        if !m.is_file() {
            return Err(OutputRefused::NotRegular(p.to_path_buf()));
        }
    }
    if block {
        let dir = match output.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Ok(dm) = fs::metadata(&dir) {
            let fs_dev = major_minor(dm.dev());
            let dump_dev = major_minor(im.rdev());
            if backing_devices(sysfs, fs_dev).contains(&dump_dev) {
                return Err(OutputRefused::OnTheDevice {
                    dir,
                    fs_dev,
                    dump_dev,
                });
            }
        }
    }
    Ok(())
}

/// Removes `<output>.incomplete` when dropped unless [`Incomplete::keep`] ran: a failed save
/// leaves nothing behind.
struct Incomplete<'a> {
    path: &'a Path,
    armed: bool,
}

impl Incomplete<'_> {
    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Incomplete<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(self.path);
        }
    }
}

/// Sets the record's `SAVED` flag: the only write `save` makes to the dump device, and only
/// after the vmcore is durable. Re-reads the header and checks it is still `read`, the header
/// the vmcore was extracted from.
fn mark_saved(dev: &Path, base: u64, lab: &Label, read: &RecordHeader) -> Result<(), String> {
    let f = File::open(dev).map_err(|e| e.to_string())?;
    let mut hdr = vec![0u8; label::HEADER_BYTES];
    f.read_exact_at(&mut hdr, base + lab.data_offset)
        .map_err(|e| e.to_string())?;
    let now = RecordHeader::parse(lab, &hdr).map_err(|e| e.to_string())?;
    if now != *read {
        return Err("the record changed while it was being saved".into());
    }
    let bytes = label::mark_saved(lab, &hdr).map_err(|e| e.to_string())?;
    // A dump file is immutable: its flag is lifted for this one in-place write.
    crate::filetarget::write_in_place(dev, base + lab.data_offset, &bytes)
}

/// `<output>.report.txt`: where the stored crash report goes.
fn report_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".report.txt");
    PathBuf::from(name)
}

/// Prints the crash report stored in the record and writes it beside the vmcore.
fn show_report(output: &Path, stored: Option<Result<String, rkdump_devices::report_area::Error>>) {
    match stored {
        Some(Ok(text)) => {
            let path = report_path(output);
            match fs::write(&path, &text) {
                Ok(()) => println!("crash report (stored by rkdump) -> {}", path.display()),
                Err(e) => eprintln!("rkdumpctl save: warning: {}: {e}", path.display()),
            }
            // The lines that say why: the rest is in the file.
            for l in text.lines().filter(|l| {
                l.starts_with("crashed kernel:")
                    || l.starts_with("panic:")
                    || (l.starts_with("cpu ") && l.contains("(crashing)"))
            }) {
                println!("  {l}");
            }
        }
        Some(Err(e)) => println!("crash report: {e}"),
        None => {
            eprintln!("rkdumpctl save: warning: record header page unreadable: no crash report")
        }
    }
}

/// Runs `save`: the record is read with the same code the host tests check the capture
/// kernel's writer against (`rkdump_devices::record::read`).
pub fn run(args: &Args) -> Result<(), String> {
    let dev = &args.device;
    let mut f = File::open(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let im = f
        .metadata()
        .map_err(|e| format!("{}: {e}", dev.display()))?;
    let incomplete = incomplete_path(&args.output);
    check_output(&im, &args.output, &incomplete, Path::new("/sys")).map_err(|e| e.to_string())?;
    // Works for block devices too (Linux reports their size at SEEK_END).
    let whole = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{}: size: {e}", dev.display()))?;
    let (base, device_bytes) = match args.partition {
        None => (0, whole),
        Some(n) => crate::prepare::partition_range(&f, whole, n)
            .map_err(|e| format!("{}: {e}", dev.display()))?,
    };
    // A dump file was written by rkdump underneath the file system: pages cached before the
    // crash would be stale, so they are dropped and every read goes to the disk. (After the
    // reboot that follows a crash nothing is cached; this covers a save without one.)
    crate::filetarget::drop_cache(&f);
    // The last I/O error, for the message: the record reader only learns that a read failed.
    let mut io_error: Option<io::Error> = None;
    let mut at = |off: u64, buf: &mut [u8]| -> Result<(), ReadFailed> {
        let inside = off
            .checked_add(buf.len() as u64)
            .is_some_and(|end| end <= device_bytes);
        if !inside {
            io_error = Some(io::Error::other("read past the end of the partition"));
            return Err(ReadFailed);
        }
        let r = f
            .seek(SeekFrom::Start(base + off))
            .and_then(|_| f.read_exact(buf));
        r.map_err(|e| {
            io_error = Some(e);
            ReadFailed
        })
    };
    // A label that claims more than the device has (copied from a bigger disk, or an image cut
    // short) is refused before anything is read where it points.
    let mut head = vec![0u8; label::LABEL_BYTES];
    if at(0, &mut head).is_ok()
        && let Ok(lab) = Label::parse(&head)
    {
        lab.check_device(device_bytes)
            .map_err(|e| format!("{}: {e}", dev.display()))?;
    }
    let verified = read::verify(&mut at);
    let why = |e: &mut Option<io::Error>| e.take().map_or(String::new(), |e| e.to_string());
    let (lab, summary) = match verified {
        Ok(v) => v,
        Err(ReadError::LabelUnreadable) => {
            return Err(format!(
                "{}: reading label: {}",
                dev.display(),
                why(&mut io_error)
            ));
        }
        Err(ReadError::Label(e)) => return Err(format!("{}: {e}", dev.display())),
        Err(ReadError::HeaderUnreadable) => {
            return Err(format!("reading the record header: {}", why(&mut io_error)));
        }
        Err(e) => return Err(format!("{e}")),
    };
    // The crash report rkdump stored in the header page (docs/dump-format.md#crash-report-area).
    let mut page = vec![0u8; label::HEADER_BYTES];
    let stored_report = at(lab.data_offset, &mut page)
        .ok()
        .map(|()| rkdump_devices::report_area::parse(&page));
    // The header as read, for marking the record saved at the end.
    let read_header = summary.header;
    let h = summary.header;
    match h.state {
        State::Complete => {}
        // Interrupted (power cut, crash): `written` is the last checkpoint, already verified.
        State::Incomplete if args.partial => eprintln!(
            "rkdumpctl save: warning: dump is Incomplete (interrupted); recovering {} of {} bytes up to the last checkpoint, every byte verified",
            h.written, h.vmcore_size
        ),
        State::Incomplete => {
            return Err(format!(
                "dump is Incomplete (interrupted after {} of {} bytes were checkpointed); \
                 --partial would recover {} bytes, every byte verified",
                h.written, h.vmcore_size, h.written
            ));
        }
        other if args.partial => eprintln!(
            "rkdumpctl save: warning: dump is {other:?}; extracting {} bytes",
            h.written
        ),
        other => {
            return Err(format!(
                "dump is {other:?} ({} of {} bytes); use --partial to extract it anyway",
                h.written, h.vmcore_size
            ));
        }
    }
    let out_name = incomplete.display();
    // A stale `.incomplete` from an interrupted run is removed (not followed, if a symlink);
    // `check_output` made sure it is not the dump itself.
    match fs::remove_file(&incomplete) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{out_name}: {e}")),
    }
    // Read too: a partial kdump file's header is patched after the copy.
    let mut out = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&incomplete)
        .map_err(|e| format!("{out_name}: {e}"))?;
    let guard = Incomplete {
        path: &incomplete,
        armed: true,
    };
    // A complete kdump-compressed file loses the record's alignment padding on the way out.
    let mut sig = [0u8; 8];
    let compact = h.state == State::Complete
        && h.written >= sig.len() as u64
        && at(h.data_offset(), &mut sig).is_ok()
        && sig == KDUMP_SIGNATURE;
    let compactor = compact.then(|| Compactor::new(h.block_size.into(), h.written));
    let compacted = match extract(&h, &mut at, &mut out, compactor) {
        Ok(c) => c,
        Err(Extract::Compact(e)) => {
            // Verified bytes the compaction does not understand: saved as they are.
            eprintln!(
                "rkdumpctl save: warning: kdump file saved as written, padding included: {e}"
            );
            out.set_len(0)
                .and_then(|()| out.rewind())
                .map_err(|e| format!("{out_name}: {e}"))?;
            match extract(&h, &mut at, &mut out, None) {
                Ok(c) => c,
                Err(Extract::Write(e)) => return Err(format!("{out_name}: {e}")),
                Err(_) => return Err(format!("reading dump data: {}", why(&mut io_error))),
            }
        }
        Err(Extract::Write(e)) => return Err(format!("{out_name}: {e}")),
        Err(Extract::Read) => return Err(format!("reading dump data: {}", why(&mut io_error))),
    };
    if h.state != State::Complete {
        mark_kdump_incomplete(&out).map_err(|e| format!("{out_name}: {e}"))?;
    }
    out.sync_all().map_err(|e| format!("{out_name}: {e}"))?;
    drop(out);
    fs::rename(&incomplete, &args.output)
        .map_err(|e| format!("renaming {out_name} to {}: {e}", args.output.display()))?;
    guard.keep();
    // Make the rename durable before the record is marked saved.
    let dir = match args.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    match mark_saved(dev, base, &lab, &read_header) {
        Ok(()) => println!("{}: record marked saved", dev.display()),
        Err(e) => eprintln!(
            "rkdumpctl save: warning: {}: could not mark the record saved ({e}); \
             `rkdumpctl prepare` will want --force",
            dev.display()
        ),
    }
    if h.state == State::Incomplete {
        println!(
            "recovered {} bytes up to the last checkpoint, every byte verified",
            h.written
        );
    }
    if let Some(c) = compacted {
        println!(
            "kdump file: {} bytes of alignment padding before the page data left out \
             ({} record bytes -> {} bytes)",
            c.removed(),
            h.written,
            h.written - c.removed()
        );
    }
    show_report(&args.output, stored_report);
    println!(
        "{}: {:?} dump of {} ({} bytes, {} blocks verified, coverage: {}) -> {}",
        dev.display(),
        h.state,
        h.osrelease_str().unwrap_or("?"),
        h.written,
        summary.blocks_verified,
        coverage(&summary),
        args.output.display()
    );
    Ok(())
}

/// Why [`extract`] stopped.
enum Extract {
    /// A record read failed (the reader kept the I/O error).
    Read,
    /// Writing the vmcore failed.
    Write(io::Error),
    /// The kdump file could not be compacted; nothing is wrong with the record.
    Compact(CompactError),
}

/// Copies the record's `written` vmcore bytes to `out`, through `compactor` when given
/// (docs/dump-format.md#the-saved-file): what it left out.
fn extract(
    h: &RecordHeader,
    at: &mut read::ReadAt<'_>,
    out: &mut File,
    mut compactor: Option<Compactor>,
) -> Result<Option<Compacted>, Extract> {
    let mut out_error: Option<io::Error> = None;
    let mut compact_error: Option<CompactError> = None;
    let mut progress = crate::progress::Progress::new("rkdumpctl save", h.written);
    let mut write = |b: &[u8]| {
        out.write_all(b).map_err(|e| {
            let code = e.raw_os_error().unwrap_or(0) as u32;
            out_error = Some(e);
            SinkError::Io { code }
        })
    };
    let copied = read::copy_vmcore(h, at, &mut |b| {
        progress.inc(b.len() as u64);
        match compactor.as_mut() {
            None => write(b).map_err(|_| ReadFailed),
            Some(c) => c.push(b, &mut write).map_err(|e| {
                compact_error = Some(e);
                ReadFailed
            }),
        }
    });
    progress.finish();
    match copied {
        Ok(()) => {}
        Err(ReadError::Output) => {
            return Err(match compact_error {
                None | Some(CompactError::Output(_)) => Extract::Write(
                    out_error.unwrap_or_else(|| io::Error::other("the write failed")),
                ),
                Some(e) => Extract::Compact(e),
            });
        }
        Err(_) => return Err(Extract::Read),
    }
    compactor
        .map(Compactor::finish)
        .transpose()
        .map_err(Extract::Compact)
}

/// A partial kdump-compressed file (`rkdump.format=kdump`) says so as makedumpfile's own cut-short
/// files do: `DUMP_DH_COMPRESSED_INCOMPLETE` in the header's `status`, so crash reads a missing
/// page descriptor as an incomplete page (docs/dump-format.md#kdump-in-a-record). An ELF file,
/// or one too short to hold the header, is left alone.
pub(crate) fn mark_kdump_incomplete(file: &fs::File) -> io::Result<bool> {
    use rkdump_vmcore::kdump::abi::DUMP_DH_COMPRESSED_INCOMPLETE;
    const STATUS: u64 = 0x1A8;
    let mut sig = [0u8; 8];
    let mut status = [0u8; 4];
    if file.read_exact_at(&mut sig, 0).is_err()
        || sig != KDUMP_SIGNATURE
        || file.read_exact_at(&mut status, STATUS).is_err()
    {
        return Ok(false);
    }
    let v = u32::from_le_bytes(status) | DUMP_DH_COMPRESSED_INCOMPLETE;
    file.write_all_at(&v.to_le_bytes(), STATUS)?;
    Ok(true)
}

/// How much of the dump the block checksums covered: "every byte", "128 of 4096 bytes per
/// page" or "none" (also for a record whose table was never written).
fn coverage(summary: &RecordSummary) -> String {
    match ChecksumKind::from_flags(summary.header.flags) {
        Ok(k) if summary.blocks_verified > 0 => k.coverage().to_string(),
        _ => ChecksumKind::None.coverage().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc's `gnu_dev_makedev`.
    fn makedev(major: u64, minor: u64) -> u64 {
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    }

    #[test]
    fn a_partial_kdump_file_is_marked_incomplete_and_elf_is_not() {
        let dir = std::env::temp_dir().join(format!("rkdumpctl-kdump-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k");
        let mut head = vec![0u8; 4096];
        head[..8].copy_from_slice(b"KDUMP   ");
        head[0x1A8] = 0x1; // zlib
        fs::write(&p, &head).unwrap();
        let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        assert!(mark_kdump_incomplete(&f).unwrap());
        assert_eq!(fs::read(&p).unwrap()[0x1A8], 0x9, "zlib | incomplete");
        let elf = dir.join("e");
        fs::write(&elf, b"\x7fELF").unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&elf)
            .unwrap();
        assert!(!mark_kdump_incomplete(&f).unwrap());
        assert_eq!(fs::read(&elf).unwrap(), b"\x7fELF");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dev_t_split_matches_glibc() {
        assert_eq!(major_minor(0x811), (8, 17));
        assert_eq!(makedev(8, 17), 0x811);
        assert_eq!(major_minor(makedev(259, 1_048_577)), (259, 1_048_577));
        assert_eq!(major_minor(makedev(4100, 3)), (4100, 3));
    }

    /// A fake sysfs: sdb (8:16) with partition sdb1 (8:17), dm-0 (253:0) on sdb1, sda (8:0).
    #[test]
    fn backing_devices_follow_partitions_and_mappings() {
        let root =
            std::env::temp_dir().join(format!("rkdumpctl-save-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let blk = root.join("devices/block");
        for (path, dev) in [
            ("sdb", "8:16"),
            ("sdb/sdb1", "8:17"),
            ("dm-0", "253:0"),
            ("sda", "8:0"),
        ] {
            fs::create_dir_all(blk.join(path)).unwrap();
            fs::write(blk.join(path).join("dev"), format!("{dev}\n")).unwrap();
        }
        fs::write(blk.join("sdb/sdb1/partition"), "1\n").unwrap();
        fs::create_dir_all(blk.join("dm-0/slaves")).unwrap();
        std::os::unix::fs::symlink(blk.join("sdb/sdb1"), blk.join("dm-0/slaves/sdb1")).unwrap();
        fs::create_dir_all(root.join("dev/block")).unwrap();
        for (link, target) in [
            ("8:16", "sdb"),
            ("8:17", "sdb/sdb1"),
            ("253:0", "dm-0"),
            ("8:0", "sda"),
        ] {
            std::os::unix::fs::symlink(blk.join(target), root.join("dev/block").join(link))
                .unwrap();
        }
        assert_eq!(backing_devices(&root, (8, 17)), vec![(8, 17), (8, 16)]);
        let dm = backing_devices(&root, (253, 0));
        assert!(dm.contains(&(8, 16)) && dm.contains(&(8, 17)), "{dm:?}");
        // Negative control: another disk is not on sdb.
        assert_eq!(backing_devices(&root, (8, 0)), vec![(8, 0)]);
        assert_eq!(backing_devices(&root, (9, 9)), vec![(9, 9)]);
    }
}
