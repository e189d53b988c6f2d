//! How a virtio-blk request becomes descriptor chains: the per-chain limits from the
//! negotiated features and the data descriptors of one chain.

use crate::virtio::ring::Seg;

/// Per-chain limits from the negotiated features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Data descriptors per chain (`seg_max`, capped by the queue size minus header and status).
    pub seg_max: u16,
    /// Bytes per data descriptor (`size_max`, rounded down to whole sectors).
    pub size_max: u32,
    /// Bytes per chain rkdump chooses to send.
    pub chain_bytes: u64,
}

impl Limits {
    /// Largest payload of one chain, a whole number of sectors.
    pub fn chain_max(&self) -> u64 {
        let by_segs = u64::from(self.seg_max) * u64::from(self.size_max);
        by_segs.min(self.chain_bytes) & !(SECTOR - 1)
    }

    /// Data descriptors for `len` bytes.
    pub fn segs_for(&self, len: u64) -> u16 {
        len.div_ceil(u64::from(self.size_max)) as u16
    }
}

/// virtio-blk's unit: 512-byte sectors, whatever the device's block size.
pub const SECTOR: u64 = 512;

/// Splits one chunk's data into descriptors of at most `size_max` bytes.
pub fn data_segs(
    phys: u64,
    len: u64,
    size_max: u32,
    device_writes: bool,
) -> impl Iterator<Item = Seg> {
    let mut done = 0u64;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let n = (len - done).min(u64::from(size_max));
        let s = Seg {
            addr: phys + done,
            len: n as u32,
            device_writes,
        };
        done += n;
        Some(s)
    })
}
