//! Test support for the report (feature `testing`): a fake kernel virtual memory and a
//! synthetic printk ring buffer written by the same rules as Linux's writer.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::virt::{VirtError, VirtMemory};

/// Sparse kernel virtual memory: byte regions at virtual addresses; a read must fall inside
/// one region.
#[derive(Debug, Clone, Default)]
pub struct FakeVirt {
    regions: BTreeMap<u64, Vec<u8>>,
    /// Reads served.
    pub reads: u64,
}

impl FakeVirt {
    /// Empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `bytes` at `va`.
    pub fn insert(&mut self, va: u64, bytes: Vec<u8>) {
        self.regions.insert(va, bytes);
    }

    /// Mutable bytes at `va..va + len` (inside one region).
    pub fn bytes_mut(&mut self, va: u64, len: usize) -> Option<&mut [u8]> {
        let (&start, r) = self.regions.range_mut(..=va).next_back()?;
        let off = usize::try_from(va - start).ok()?;
        r.get_mut(off..off.checked_add(len)?)
    }

    /// Removes the region at `va`.
    pub fn remove(&mut self, va: u64) -> Option<Vec<u8>> {
        self.regions.remove(&va)
    }
}

impl VirtMemory for FakeVirt {
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError> {
        self.reads += 1;
        let len = buf.len();
        match self.bytes_mut(va, len) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(VirtError::NotMapped { va }),
        }
    }
}

/// Offsets of the synthetic ring (those of Debian's 6.1.0-57-cloud-amd64 VMCOREINFO, see
/// `testdata/README.md`), as the VMCOREINFO lines the reader parses.
pub const LAYOUT_6_1: &str = "\
SIZE(printk_ringbuffer)=80
OFFSET(printk_ringbuffer.desc_ring)=0
OFFSET(printk_ringbuffer.text_data_ring)=48
OFFSET(printk_ringbuffer.fail)=72
SIZE(prb_desc_ring)=48
OFFSET(prb_desc_ring.count_bits)=0
OFFSET(prb_desc_ring.descs)=8
OFFSET(prb_desc_ring.infos)=16
OFFSET(prb_desc_ring.head_id)=24
OFFSET(prb_desc_ring.tail_id)=32
SIZE(prb_desc)=24
OFFSET(prb_desc.state_var)=0
OFFSET(prb_desc.text_blk_lpos)=8
SIZE(prb_data_blk_lpos)=16
OFFSET(prb_data_blk_lpos.begin)=0
OFFSET(prb_data_blk_lpos.next)=8
SIZE(printk_info)=88
OFFSET(printk_info.seq)=0
OFFSET(printk_info.ts_nsec)=8
OFFSET(printk_info.text_len)=16
OFFSET(printk_info.caller_id)=20
OFFSET(printk_info.dev_info)=24
SIZE(prb_data_ring)=32
OFFSET(prb_data_ring.size_bits)=0
OFFSET(prb_data_ring.data)=8
OFFSET(prb_data_ring.head_lpos)=16
OFFSET(prb_data_ring.tail_lpos)=24
SIZE(atomic_long_t)=8
OFFSET(atomic_long_t.counter)=0
";

const ID_MASK: u64 = !(3u64 << 62);

/// A printk ring buffer built in a [`FakeVirt`] the way Linux's writer fills one: descriptors
/// recycled in id order, text blocks `id + text` 8-byte aligned, a block that would cross the
/// end of the data ring placed at its start instead, the oldest records dropped (made
/// reusable, tail advanced) when their descriptor or text space is needed.
#[derive(Debug, Clone)]
pub struct SynthRing {
    /// Address of the `prb` pointer.
    pub prb: u64,
    /// Address of `struct printk_ringbuffer`.
    pub rb: u64,
    /// `descs`, `infos`, text `data` addresses.
    pub descs: u64,
    /// `infos`.
    pub infos: u64,
    /// Text data.
    pub data: u64,
    count_bits: u32,
    size_bits: u32,
    head_id: u64,
    tail_id: u64,
    head_lpos: u64,
    live: VecDeque<(u64, u64, u64)>,
    next_seq: u64,
}

impl SynthRing {
    /// An empty ring as `DEFINE_PRINTKRB` bootstraps it: head and tail at the last descriptor,
    /// which is reusable and data-less.
    pub fn new(mem: &mut FakeVirt, count_bits: u32, size_bits: u32) -> Self {
        let count = 1u64 << count_bits;
        let size = 1u64 << size_bits;
        let s = SynthRing {
            prb: 0xffff_ffff_8300_0000,
            rb: 0xffff_ffff_8300_1000,
            descs: 0xffff_ffff_8310_0000,
            infos: 0xffff_ffff_8320_0000,
            data: 0xffff_ffff_8330_0000,
            count_bits,
            size_bits,
            // DESC0_ID: the last index, chosen to overflow on the second wrap.
            head_id: (0u64.wrapping_sub(count + 1)) & ID_MASK,
            tail_id: (0u64.wrapping_sub(count + 1)) & ID_MASK,
            head_lpos: 0u64.wrapping_sub(size),
            live: VecDeque::new(),
            next_seq: 0,
        };
        mem.insert(s.prb, s.rb.to_le_bytes().to_vec());
        mem.insert(s.rb, vec![0; 80]);
        mem.insert(s.descs, vec![0; (24 * count) as usize]);
        mem.insert(s.infos, vec![0; (88 * count) as usize]);
        mem.insert(s.data, vec![0; size as usize]);
        let last = (count - 1) as usize;
        let sv = (3u64 << 62) | s.head_id;
        let d = mem.bytes_mut(s.descs + 24 * last as u64, 24).expect("desc");
        d[..8].copy_from_slice(&sv.to_le_bytes());
        d[8..16].copy_from_slice(&1u64.to_le_bytes());
        d[16..24].copy_from_slice(&1u64.to_le_bytes());
        s.store_header(mem);
        s
    }

    /// The VMCOREINFO text naming this ring.
    pub fn vmcoreinfo(&self) -> String {
        format!(
            "OSRELEASE=6.1.0-synthetic\nSYMBOL(prb)={:x}\n{LAYOUT_6_1}",
            self.prb
        )
    }

    fn store_header(&self, mem: &mut FakeVirt) {
        let rb = mem.bytes_mut(self.rb, 80).expect("rb");
        rb[0..4].copy_from_slice(&self.count_bits.to_le_bytes());
        rb[8..16].copy_from_slice(&self.descs.to_le_bytes());
        rb[16..24].copy_from_slice(&self.infos.to_le_bytes());
        rb[24..32].copy_from_slice(&self.head_id.to_le_bytes());
        rb[32..40].copy_from_slice(&self.tail_id.to_le_bytes());
        rb[48..52].copy_from_slice(&self.size_bits.to_le_bytes());
        rb[56..64].copy_from_slice(&self.data.to_le_bytes());
        rb[64..72].copy_from_slice(&self.head_lpos.to_le_bytes());
    }

    fn set_state(&self, mem: &mut FakeVirt, id: u64, state: u64) {
        let idx = id & ((1 << self.count_bits) - 1);
        let sv = (state << 62) | id;
        mem.bytes_mut(self.descs + 24 * idx, 8)
            .expect("desc")
            .copy_from_slice(&sv.to_le_bytes());
    }

    /// Appends a finalized record with `text` at `ts_nsec`.
    pub fn push(&mut self, mem: &mut FakeVirt, ts_nsec: u64, text: &[u8]) {
        let count = 1u64 << self.count_bits;
        let size = 1u64 << self.size_bits;
        let blk = (8 + text.len() as u64 + 7) & !7;
        assert!(blk <= size / 2, "record too large for the synthetic ring");
        let id = self.head_id.wrapping_add(1) & ID_MASK;
        let bits = self.size_bits;
        let begin = self.head_lpos;
        let mut next = begin.wrapping_add(blk);
        if begin >> bits != next >> bits {
            // Crosses the end: the block goes to index 0 of the next wrap.
            next = ((next >> bits) << bits).wrapping_add(blk);
        }
        let data_at = if begin >> bits == next >> bits {
            begin & (size - 1)
        } else {
            0
        };
        // Drop the oldest records whose descriptor slot or text space is needed.
        while let Some(&(old_id, old_begin, _)) = self.live.front() {
            let slot_needed = self.live.len() as u64 >= count - 1;
            let space_needed = next.wrapping_sub(old_begin) > size;
            if !slot_needed && !space_needed {
                break;
            }
            self.set_state(mem, old_id, 3);
            self.live.pop_front();
        }
        let idx = id & (count - 1);
        let d = mem
            .bytes_mut(self.data + data_at, blk as usize)
            .expect("data");
        d[..8].copy_from_slice(&id.to_le_bytes());
        d[8..8 + text.len()].copy_from_slice(text);
        let desc = mem.bytes_mut(self.descs + 24 * idx, 24).expect("desc");
        desc[8..16].copy_from_slice(&begin.to_le_bytes());
        desc[16..24].copy_from_slice(&next.to_le_bytes());
        let info = mem.bytes_mut(self.infos + 88 * idx, 88).expect("info");
        info[0..8].copy_from_slice(&self.next_seq.to_le_bytes());
        info[8..16].copy_from_slice(&ts_nsec.to_le_bytes());
        info[16..18].copy_from_slice(&(text.len() as u16).to_le_bytes());
        self.set_state(mem, id, 2);
        self.next_seq += 1;
        self.live.push_back((id, begin, next));
        self.head_id = id;
        self.head_lpos = next;
        self.tail_id = self.live.front().map_or(id, |&(i, _, _)| i);
        self.store_header(mem);
    }

    /// Ids of the records still readable, oldest first.
    pub fn live_ids(&self) -> Vec<u64> {
        self.live.iter().map(|&(i, _, _)| i).collect()
    }

    /// Where the text block of `id` lies (data ring address).
    pub fn block_of(&self, id: u64) -> Option<u64> {
        let size = 1u64 << self.size_bits;
        self.live
            .iter()
            .find(|&&(i, _, _)| i == id)
            .map(|&(_, b, n)| {
                let blk_start = if (b >> self.size_bits) == (n >> self.size_bits) {
                    b & (size - 1)
                } else {
                    0
                };
                self.data + blk_start
            })
    }

    /// Address of descriptor `id`.
    pub fn desc_of(&self, id: u64) -> u64 {
        self.descs + 24 * (id & ((1 << self.count_bits) - 1))
    }
}
