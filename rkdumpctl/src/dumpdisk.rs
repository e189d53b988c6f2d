//! Finding the dump disk(s) the configuration names, as Linux sees them, and what their label
//! and record say: the shared look-up of `boot` (what to save) and `status` (is the target
//! there, labelled and big enough). Read-only.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rkdump_devices::label::{self, Label, RecordHeader};

use crate::conf::Devices;

/// What the record area of a labelled disk holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// No record (never dumped to, or one for an earlier label).
    None,
    /// A dump `save` has not marked saved.
    Unsaved(RecordHeader),
    /// A dump already saved.
    Saved(RecordHeader),
    /// A record header that does not check out.
    Damaged(String),
}

/// One disk as probed.
#[derive(Clone, Debug)]
pub struct Disk {
    /// Its path.
    pub path: PathBuf,
    /// The label, or why there is none usable.
    pub label: Result<Label, String>,
    /// The record (only looked at with a valid label).
    pub record: Record,
}

/// Opens `path` read-only and reads its label and record header.
pub fn probe(path: &Path) -> Result<Disk, String> {
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = f
        .seek(SeekFrom::End(0))
        .map_err(|e| format!("{}: size: {e}", path.display()))?;
    let mut head = vec![0u8; label::LABEL_BYTES];
    let label = f
        .read_exact_at(&mut head, 0)
        .map_err(|e| format!("reading the label: {e}"))
        .and_then(|()| Label::parse(&head).map_err(|e| e.to_string()))
        .and_then(|l| l.check_device(size).map(|()| l).map_err(|e| e.to_string()));
    let record = match &label {
        Ok(l) => {
            let mut hdr = vec![0u8; label::HEADER_BYTES];
            match f.read_exact_at(&mut hdr, l.data_offset) {
                Err(e) => Record::Damaged(format!("reading the record header: {e}")),
                Ok(()) => match RecordHeader::parse(l, &hdr) {
                    Ok(h) if h.is_saved() => Record::Saved(h),
                    Ok(h) => Record::Unsaved(h),
                    Err(label::Error::BadMagic | label::Error::WrongLabel) => Record::None,
                    Err(e) => Record::Damaged(e.to_string()),
                },
            }
        }
        Err(_) => Record::None,
    };
    Ok(Disk {
        path: path.to_path_buf(),
        label,
        record,
    })
}

/// The disks `devices` names: the listed paths (each probed, labelled or not, so a lost label is
/// reported), or for `auto` every whole disk in `<sysfs>/block` whose node `<dev_root>/<name>`
/// carries a valid label. Problems opening a listed path are returned as errors in the list.
pub fn find(devices: &Devices, sysfs_root: &Path, dev_root: &Path) -> Vec<Result<Disk, String>> {
    match devices {
        Devices::Paths(paths) => paths.iter().map(|p| probe(p)).collect(),
        Devices::Auto => {
            let mut names: Vec<String> = fs::read_dir(sysfs_root.join("block"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
                .iter()
                // RAM disks, loop devices without a backing file and optical drives never hold
                // a label and may block or fail to open.
                .filter(|n| {
                    !["ram", "loop", "sr", "zram"]
                        .iter()
                        .any(|p| n.starts_with(p))
                })
                .filter_map(|n| probe(&dev_root.join(n)).ok())
                .filter(|d| d.label.is_ok())
                .map(Ok)
                .collect()
        }
    }
}

/// A record header's release as text.
pub fn release(h: &RecordHeader) -> String {
    h.osrelease_str().unwrap_or("unknown").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_and_auto_find() {
        let d = std::env::temp_dir().join(format!("rkdumpctl-disk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("sys/block/vdb")).unwrap();
        fs::create_dir_all(d.join("sys/block/vda")).unwrap();
        fs::create_dir_all(d.join("sys/block/loop0")).unwrap();
        fs::create_dir_all(d.join("dev")).unwrap();
        let cap = 8 << 20;
        let lab = Label::new([7; 16], cap, 1).unwrap();
        let mut img = vec![0u8; cap as usize];
        img[..label::LABEL_BYTES].copy_from_slice(&lab.to_bytes());
        fs::write(d.join("dev/vdb"), &img).unwrap();
        fs::write(d.join("dev/vda"), vec![0u8; 1 << 20]).unwrap();
        let found = find(&Devices::Auto, &d.join("sys"), &d.join("dev"));
        assert_eq!(found.len(), 1);
        let disk = found[0].as_ref().unwrap();
        assert_eq!(disk.path, d.join("dev/vdb"));
        assert_eq!(disk.label.as_ref().unwrap().uuid, [7; 16]);
        assert_eq!(disk.record, Record::None);
        // Listed paths are probed even without a label, so the loss is visible.
        let listed = find(
            &Devices::Paths(vec![d.join("dev/vda"), d.join("dev/absent")]),
            &d.join("sys"),
            &d.join("dev"),
        );
        assert!(listed[0].as_ref().unwrap().label.is_err());
        assert!(listed[1].is_err());
        // A label claiming more than the device has is not valid.
        fs::write(d.join("dev/vdb"), &img[..4 << 20]).unwrap();
        assert!(probe(&d.join("dev/vdb")).unwrap().label.is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
