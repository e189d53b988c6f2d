//! The service state file, `/var/lib/rkdump/state.json`: what `boot` and `reload` loaded (image
//! size and SHA-256, syscall and why, blob, boot id), the last reload and its reason, and the
//! last dump saved. `status` compares it with the live system. Written through a temporary
//! file and a rename; a missing file is an empty state.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Default directory of the state file and the blob.
pub const DEFAULT_DIR: &str = "/var/lib/rkdump";
/// The state file's name in that directory.
pub const FILE: &str = "state.json";
/// The blob's name in that directory.
pub const BLOB: &str = "config.blob";

/// What was loaded, when and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    /// Seconds since the epoch.
    pub time: u64,
    /// `/proc/sys/kernel/random/boot_id` at load time (a load does not survive a reboot).
    pub boot_id: String,
    /// The image path.
    pub kernel: PathBuf,
    /// Its size in bytes.
    pub kernel_size: u64,
    /// Its SHA-256, hex.
    pub kernel_sha256: String,
    /// `kexec_file_load` or `kexec_load`.
    pub syscall: String,
    /// Why that syscall (e.g. the file syscall's refusal before a fallback).
    pub syscall_why: String,
    /// The capture kernel's command line.
    pub cmdline: String,
    /// The blob path.
    pub blob: PathBuf,
    /// Its SHA-256, hex.
    pub blob_sha256: String,
    /// What asked for the load (`boot`, `reload: add:pci:0000:00:05.0`, ...).
    pub reason: String,
}

/// A dump `boot` saved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDump {
    /// When it was saved (seconds since the epoch).
    pub saved: u64,
    /// Crash time from the record (0 if unknown).
    pub crash_time: u64,
    /// Crashed kernel's release.
    pub release: String,
    /// Directory it went to.
    pub dir: PathBuf,
    /// The device it came from.
    pub device: PathBuf,
    /// vmcore bytes.
    pub bytes: u64,
    /// Record state (`Complete`, `Incomplete`, `Truncated`).
    pub record_state: String,
    /// What the block checksums covered (`every byte`, ...).
    pub verified: String,
    /// The panic reason from the crash report, when the record carries one.
    pub reason: Option<String>,
}

/// The whole state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The last successful load.
    pub loaded: Option<Loaded>,
    /// The last load attempt that failed, and why.
    pub last_failure: Option<(u64, String)>,
    /// The last dump saved by `boot`.
    pub last_dump: Option<SavedDump>,
}

impl State {
    /// Reads `dir/state.json`; a missing file is the empty state.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let p = dir.join(FILE);
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// Writes `dir/state.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let p = dir.join(FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        crate::snapshot::write_file(&p, text.as_bytes()).map_err(|e| e.to_string())
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Size and SHA-256 (hex) of a file.
pub fn file_digest(path: &Path) -> io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((n, hex(&h.finalize())))
}

/// SHA-256 (hex) of bytes.
pub fn bytes_digest(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `boot_id` of the running system, as text ("" if unreadable).
pub fn boot_id(proc_root: &Path) -> String {
    fs::read_to_string(proc_root.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601, UTC) for seconds since the epoch.
pub fn utc(secs: u64) -> String {
    let (y, m, d, h, mi, s) = rkdump_vmcore::report::civil_utc(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        // `date -u -d @1700000000`: Tue Nov 14 22:13:20 UTC 2023.
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        // A leap day.
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn state_round_trips_and_missing_is_empty() {
        let d = std::env::temp_dir().join(format!("rkdumpctl-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        assert_eq!(State::read(&d).unwrap(), State::default());
        let s = State {
            loaded: Some(Loaded {
                time: 5,
                syscall: "kexec_file_load".into(),
                ..Loaded::default()
            }),
            last_failure: Some((6, "kexec failed".into())),
            last_dump: None,
        };
        s.write(&d).unwrap();
        assert_eq!(State::read(&d).unwrap(), s);
        fs::write(d.join(FILE), "{not json").unwrap();
        assert!(State::read(&d).unwrap_err().contains("state.json"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn digest_of_a_file() {
        let d = std::env::temp_dir().join(format!("rkdumpctl-digest-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("f");
        fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 test vector.
        assert_eq!(
            file_digest(&p).unwrap(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
        fs::remove_dir_all(&d).unwrap();
    }
}
