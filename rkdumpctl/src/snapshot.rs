//! `rkdumpctl snapshot`: reads every PCI function's configuration space from sysfs and writes the
//! config blob (rkdump_devices::blob) that `load` hands to rkdump as its initrd.
//!
//! Root reads the whole space (4096 bytes on PCIe with ECAM, else 256); anyone else gets only the
//! 64-byte header from sysfs, which is still a valid, smaller, blob.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rkdump_devices::blob::{BlobError, BlobWriter, CFG_LENS};
use rkdump_devices::pci::Bdf;

/// Where the system's state is read from (fake trees in tests).
#[derive(Debug, Clone, clap::Args)]
pub struct Sources {
    /// sysfs mount point; functions are read from `<DIR>/bus/pci/devices/*/config`.
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// procfs mount point (kernel release, boot id, running command line).
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

/// Arguments of `rkdumpctl snapshot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the blob.
    #[arg(short, long, value_name = "BLOB")]
    pub output: PathBuf,
    #[command(flatten)]
    pub sources: Sources,
}

/// Why `snapshot` failed.
#[derive(Debug)]
pub enum Error {
    /// The PCI device directory cannot be listed.
    ListDevices(PathBuf, io::Error),
    /// The blob writer refused the set (more than 4096 functions).
    Blob(BlobError),
    /// Writing the blob failed.
    Output(PathBuf, io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ListDevices(p, e) => write!(f, "listing {}: {e}", p.display()),
            Error::Blob(e) => write!(f, "{e}"),
            Error::Output(p, e) => write!(f, "writing {}: {e}", p.display()),
        }
    }
}

/// A snapshot taken, not yet written.
#[derive(Debug)]
pub struct Snapshot {
    /// The blob bytes.
    pub blob: Vec<u8>,
    /// Functions captured, by configuration-space size: 4096, 256, 64 bytes.
    pub by_size: [usize; 3],
    /// Functions skipped, with the reason (printed as warnings).
    pub skipped: Vec<String>,
    /// Problems reading release or boot id (printed as warnings; the blob gets a placeholder).
    pub notes: Vec<String>,
}

impl Snapshot {
    /// Functions captured.
    pub fn functions(&self) -> usize {
        self.by_size.iter().sum()
    }

    /// The one-line summary `snapshot` and `load` print.
    pub fn summary(&self, path: &Path) -> String {
        let [full, conv, hdr] = self.by_size;
        let mut s = format!(
            "{} PCI functions ({full} x 4096 B, {conv} x 256 B, {hdr} x 64 B config), {} bytes -> {}",
            self.functions(),
            self.blob.len(),
            path.display()
        );
        if hdr > 0 && full + conv == 0 {
            s.push_str(" (headers only: run as root for the full config space)");
        }
        s
    }
}

/// Reads every function under `<sysfs_root>/bus/pci/devices` and builds the blob.
/// A function that cannot be read or is malformed is skipped with a note, never fatal.
pub fn take(src: &Sources) -> Result<Snapshot, Error> {
    let dir = src.sysfs_root.join("bus/pci/devices");
    let entries = fs::read_dir(&dir).map_err(|e| Error::ListDevices(dir.clone(), e))?;
    let mut names: Vec<(Bdf, PathBuf)> = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::ListDevices(dir.clone(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match Bdf::parse(&name) {
            Ok(bdf) => names.push((bdf, entry.path())),
            Err(e) => skipped.push(format!("{name}: not a PCI address we can record ({e})")),
        }
    }
    names.sort();

    let mut notes = Vec::new();
    let release = read_release(&src.proc_root).unwrap_or_else(|e| {
        notes.push(format!("kernel release unknown: {e}"));
        String::new()
    });
    let boot_id = read_boot_id(&src.proc_root).unwrap_or_else(|e| {
        notes.push(format!("boot id unknown: {e}"));
        [0; 16]
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut w = BlobWriter::new(&release, boot_id, now);
    let mut by_size = [0usize; 3];
    for (bdf, path) in names {
        let config = match read_config(&path.join("config")) {
            Ok(c) => c,
            Err(e) => {
                skipped.push(format!("{bdf}: {e}"));
                continue;
            }
        };
        match w.add(bdf, &config) {
            Ok(_) => match config.len() {
                4096 => by_size[0] += 1,
                256 => by_size[1] += 1,
                _ => by_size[2] += 1,
            },
            Err(e @ BlobError::TooManyRecords { .. }) => return Err(Error::Blob(e)),
            Err(e) => skipped.push(format!("{bdf}: {e}")),
        }
    }
    Ok(Snapshot {
        blob: w.finish(),
        by_size,
        skipped,
        notes,
    })
}

/// Reads a sysfs `config` file: up to 4096 bytes, cut down to the largest size the blob allows
/// (an unprivileged read stops after 64 bytes, 128 for CardBus).
pub fn read_config(path: &Path) -> io::Result<Vec<u8>> {
    let max = CFG_LENS[CFG_LENS.len() - 1];
    let mut buf = Vec::with_capacity(max);
    File::open(path)?.take(max as u64).read_to_end(&mut buf)?;
    let Some(&len) = CFG_LENS.iter().rev().find(|&&l| l <= buf.len()) else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("config space reads only {} bytes", buf.len()),
        ));
    };
    buf.truncate(len);
    Ok(buf)
}

fn read_release(proc_root: &Path) -> io::Result<String> {
    let s = fs::read(proc_root.join("sys/kernel/osrelease"))?;
    Ok(String::from_utf8_lossy(&s).trim().to_string())
}

fn read_boot_id(proc_root: &Path) -> io::Result<[u8; 16]> {
    let s = fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))?;
    parse_uuid(s.trim()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{:?} is not a UUID", s.trim()),
        )
    })
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` into its 16 bytes in text order.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees half a blob. Creates the directory if needed.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |e| Error::Output(path.to_path_buf(), e);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Prints the skipped functions and notes of a snapshot as warnings.
pub fn warn(cmd: &str, snap: &Snapshot) {
    for s in snap.notes.iter().chain(&snap.skipped) {
        eprintln!("rkdumpctl {cmd}: warning: {s}");
    }
}

/// Runs `rkdumpctl snapshot`.
pub fn run(args: &Args) -> Result<(), Error> {
    let snap = take(&args.sources)?;
    warn("snapshot", &snap);
    write_file(&args.output, &snap.blob)?;
    println!("rkdumpctl snapshot: {}", snap.summary(&args.output));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid() {
        assert_eq!(
            parse_uuid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
            Some([
                0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
                0xe1, 0xf0
            ])
        );
        for bad in [
            "",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c-4b5a-6978-8796+a5b4c3d2e1f0",
            "+f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }
}
