//! Split-virtqueue bookkeeping (virtio 1.2 §2.7): pure logic over a [`DmaWindow`], so host
//! tests drive it with a byte buffer playing the device.

use core::fmt;
use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::DmaWindow;
use crate::hw::fence;

/// Largest queue rkdump uses (rings and request slots are sized for it).
pub const MAX_QUEUE: u16 = 256;

/// Descriptor flag: chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Avail flag: the driver does not want interrupts (it polls).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used flag: the device is processing the ring and needs no notification (a hint).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// A descriptor (virtio 1.2 §2.7.5, `struct virtq_desc`), little-endian like x86_64. The
/// driver writes it field by field with volatile stores at these offsets.
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub struct VirtqDesc {
    /// 0x00: buffer physical address.
    pub addr: u64,
    /// 0x08: buffer length.
    pub len: u32,
    /// 0x0C: `VIRTQ_DESC_F_*`.
    pub flags: u16,
    /// 0x0E: next descriptor when `flags` has NEXT.
    pub next: u16,
}

/// An element of the used ring (virtio 1.2 §2.7.8, `struct virtq_used_elem`).
#[repr(C)]
#[derive(
    FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub struct VirtqUsedElem {
    /// 0x00: head of the completed chain (u32 for padding reasons, says the spec).
    pub id: u32,
    /// 0x04: bytes written into the chain's device-writable buffers.
    pub len: u32,
}

const _: () = assert!(cfg!(target_endian = "little"));
const _: () = assert!(size_of::<VirtqDesc>() == 16 && offset_of!(VirtqDesc, next) == 14);
const _: () = assert!(size_of::<VirtqUsedElem>() == 8 && offset_of!(VirtqUsedElem, len) == 4);

const DESC_SIZE: usize = size_of::<VirtqDesc>();
/// `flags` and `idx` (u16 each) head both the avail and the used ring (§2.7.6, §2.7.8).
const RING_FLAGS: usize = 0;
const RING_IDX: usize = 2;
const RING_ENTRIES: usize = 4;

/// One buffer of a descriptor chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    /// Physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// The device writes it (read requests, status byte).
    pub device_writes: bool,
}

/// A completion taken from the used ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// Head descriptor of the completed chain.
    pub head: u16,
    /// Bytes the device reports writing.
    pub len: u32,
}

/// Ring misuse or device protocol violations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Queue size not a power of two in 1..=256.
    BadSize(u16),
    /// Not enough free descriptors for the chain.
    Full,
    /// A chain needs at least one descriptor.
    EmptyChain,
    /// The device completed a descriptor that heads no chain in flight.
    BadUsedId(u32),
    /// The device's used index ran ahead of what is in flight.
    UsedOverrun {
        /// Device's used index.
        used_idx: u16,
        /// Last index consumed.
        last_used: u16,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::BadSize(n) => write!(f, "queue size {n} unusable"),
            RingError::Full => f.write_str("queue full"),
            RingError::EmptyChain => f.write_str("empty descriptor chain"),
            RingError::BadUsedId(id) => write!(f, "device completed unknown descriptor {id}"),
            RingError::UsedOverrun {
                used_idx,
                last_used,
            } => write!(f, "used index {used_idx} ran past {last_used} + in-flight"),
        }
    }
}

/// Driver-side state of one split virtqueue whose descriptor table, avail ring and used ring
/// live at offsets `desc`, `avail`, `used` of a DMA window.
pub struct SplitQueue {
    size: u16,
    desc: usize,
    avail: usize,
    used: usize,
    free_head: u16,
    num_free: u16,
    /// Shadow links: the free list and each chain, never read back from DMA memory.
    next: [u16; MAX_QUEUE as usize],
    /// Descriptors in the chain headed here; 0 = not a head in flight.
    chain_len: [u16; MAX_QUEUE as usize],
    chains: u16,
    avail_idx: u16,
    last_used: u16,
}

impl SplitQueue {
    /// Bytes the three rings need for `size` entries: `(desc, avail, used)`.
    pub const fn ring_bytes(size: u16) -> (usize, usize, usize) {
        let n = size as usize;
        (
            DESC_SIZE * n,
            RING_ENTRIES + 2 * n + 2,
            RING_ENTRIES + size_of::<VirtqUsedElem>() * n + 2,
        )
    }

    /// A queue of `size` entries; also zeroes its rings in `mem`.
    pub fn new(
        mem: &dyn DmaWindow,
        size: u16,
        desc: usize,
        avail: usize,
        used: usize,
    ) -> Result<Self, RingError> {
        if size == 0 || size > MAX_QUEUE || !size.is_power_of_two() {
            return Err(RingError::BadSize(size));
        }
        let mut next = [0u16; MAX_QUEUE as usize];
        for (i, n) in next.iter_mut().enumerate() {
            *n = (i + 1) as u16;
        }
        let (d, a, u) = Self::ring_bytes(size);
        for off in (desc..desc + d).step_by(8) {
            mem.write64(off, 0);
        }
        for off in (avail..avail + a).step_by(2) {
            mem.write16(off, 0);
        }
        for off in (used..used + u).step_by(2) {
            mem.write16(off, 0);
        }
        mem.write16(avail + RING_FLAGS, VIRTQ_AVAIL_F_NO_INTERRUPT);
        Ok(SplitQueue {
            size,
            desc,
            avail,
            used,
            free_head: 0,
            num_free: size,
            next,
            chain_len: [0; MAX_QUEUE as usize],
            chains: 0,
            avail_idx: 0,
            last_used: 0,
        })
    }

    /// Queue size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Free descriptors.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Chains submitted and not yet completed.
    pub fn in_flight(&self) -> u16 {
        self.chains
    }

    /// Head the next [`push`](Self::push) will use (per-request slots are indexed by head).
    pub fn next_head(&self) -> Option<u16> {
        (self.num_free > 0).then_some(self.free_head)
    }

    /// Writes a chain of `n` descriptors from `segs` and queues its head in the avail ring
    /// (not yet visible to the device: see [`publish`](Self::publish)).
    pub fn push(
        &mut self,
        mem: &dyn DmaWindow,
        n: u16,
        segs: impl IntoIterator<Item = Seg>,
    ) -> Result<u16, RingError> {
        if n == 0 {
            return Err(RingError::EmptyChain);
        }
        if n > self.num_free {
            return Err(RingError::Full);
        }
        let head = self.free_head;
        let mut idx = head;
        let mut written = 0u16;
        for s in segs.into_iter().take(usize::from(n)) {
            written += 1;
            let last = written == n;
            let mut flags = if s.device_writes {
                VIRTQ_DESC_F_WRITE
            } else {
                0
            };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let d = self.desc + DESC_SIZE * usize::from(idx);
            let next = self.next[usize::from(idx)];
            mem.write64(d + offset_of!(VirtqDesc, addr), s.addr);
            mem.write32(d + offset_of!(VirtqDesc, len), s.len);
            mem.write16(d + offset_of!(VirtqDesc, flags), flags);
            mem.write16(d + offset_of!(VirtqDesc, next), if last { 0 } else { next });
            if !last {
                idx = next;
            }
        }
        if written != n {
            // Caller promised more segments than it gave: nothing was published, so the
            // descriptors simply stay free.
            return Err(RingError::EmptyChain);
        }
        self.free_head = self.next[usize::from(idx)];
        self.num_free -= n;
        self.chain_len[usize::from(head)] = n;
        self.chains += 1;
        let slot = usize::from(self.avail_idx % self.size);
        mem.write16(self.avail + RING_ENTRIES + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(head)
    }

    /// Makes pushed chains visible: descriptors and ring entries before the index.
    pub fn publish(&mut self, mem: &dyn DmaWindow) {
        fence();
        mem.write16(self.avail + RING_IDX, self.avail_idx);
        // The index must be globally visible before the caller's notify write.
        fence();
    }

    /// Whether the device asks to be notified of what [`publish`](Self::publish) made visible:
    /// `false` while it says it is still walking the avail ring (virtio 1.2 §2.7.7.2, without
    /// VIRTIO_F_EVENT_IDX). Read after `publish`, whose fence orders the index write before
    /// this read, so a device that clears the flag and looks once more sees the new index.
    pub fn device_wants_notify(&self, mem: &dyn DmaWindow) -> bool {
        mem.read16(self.used + RING_FLAGS) & VIRTQ_USED_F_NO_NOTIFY == 0
    }

    /// Whether the device has completed something not yet consumed.
    pub fn has_used(&self, mem: &dyn DmaWindow) -> bool {
        mem.read16(self.used + RING_IDX) != self.last_used
    }

    /// Takes the next completion, freeing its chain. The device's values are checked: an id
    /// that heads no chain or an index running ahead of what is in flight is an error.
    pub fn pop_used(&mut self, mem: &dyn DmaWindow) -> Result<Option<Used>, RingError> {
        let used_idx = mem.read16(self.used + RING_IDX);
        // Read the ring entry only after seeing the index.
        fence();
        if used_idx == self.last_used {
            return Ok(None);
        }
        if used_idx.wrapping_sub(self.last_used) > self.chains {
            return Err(RingError::UsedOverrun {
                used_idx,
                last_used: self.last_used,
            });
        }
        let slot = usize::from(self.last_used % self.size);
        let e = self.used + RING_ENTRIES + size_of::<VirtqUsedElem>() * slot;
        let id = mem.read32(e + offset_of!(VirtqUsedElem, id));
        let len = mem.read32(e + offset_of!(VirtqUsedElem, len));
        let head = match u16::try_from(id) {
            Ok(h) if h < self.size && self.chain_len[usize::from(h)] != 0 => h,
            _ => return Err(RingError::BadUsedId(id)),
        };
        let n = self.chain_len[usize::from(head)];
        let mut tail = head;
        for _ in 1..n {
            tail = self.next[usize::from(tail)];
        }
        self.next[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.num_free += n;
        self.chain_len[usize::from(head)] = 0;
        self.chains -= 1;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some(Used { head, len }))
    }
}
