//! Raw disk image files for QEMU drives: created at their full size, and either left sparse,
//! written full of zeros (so the host holds every page before QEMU writes the dump), or given a
//! recognisable first MiB (a disk whose later SHA-256 proves nobody wrote it).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

/// What an image holds when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Nothing written: the file is sparse.
    Sparse,
    /// Zeros written over the whole length, so every page is allocated now rather than when
    /// QEMU first writes it.
    Zeros,
    /// A pseudo-random pattern in the first MiB, sparse after it.
    PatternHead,
}

/// Creates (or truncates) `path` as an image of `len` bytes holding `fill`.
pub fn create(path: &Path, len: u64, fill: Fill) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let f = File::create(path).map_err(|e| io("creating", e))?;
    f.set_len(len).map_err(|e| io("sizing", e))?;
    match fill {
        Fill::Sparse => Ok(()),
        Fill::Zeros => fill_zeros(path, len),
        Fill::PatternHead => {
            let head: Vec<u8> = (0..(1u64 << 20).min(len) as u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            let mut f = f;
            f.write_all(&head).map_err(|e| io("writing", e))
        }
    }
}

/// Writes `len` bytes of zeros over `path` (from the start).
pub fn fill_zeros(path: &Path, len: u64) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let zeros = vec![0u8; 4 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])
            .map_err(|e| format!("filling {}: {e}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_have_their_length_and_fill() {
        let dir = std::env::temp_dir().join(format!("rkdump-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.img");
        for fill in [Fill::Sparse, Fill::Zeros, Fill::PatternHead] {
            create(&p, 3 << 20, fill).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(bytes.len(), 3 << 20);
            let head_zero = bytes[..1 << 20].iter().all(|&b| b == 0);
            assert_eq!(head_zero, fill != Fill::PatternHead, "{fill:?}");
            assert!(bytes[1 << 20..].iter().all(|&b| b == 0));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
