//! A small page cache in front of the old kernel's virtual memory: the report reads the same
//! few pages again and again (the upper steps of every kallsyms binary search, a name group,
//! the text around each stack candidate), and each read of old memory costs a translation and
//! a mapping in the capture kernel.

use alloc::vec;
use alloc::vec::Vec;

use super::virt::{VirtError, VirtMemory};

const PAGE: u64 = 4096;
/// Reads longer than this bypass the cache.
const DIRECT: usize = 2 * PAGE as usize;

/// [`VirtMemory`] with the last `capacity` 4 KiB pages read kept (least recently used out).
pub struct PageCache<M> {
    inner: M,
    /// (page address, bytes, last use).
    pages: Vec<(u64, Vec<u8>, u64)>,
    capacity: usize,
    clock: u64,
    /// Reads passed to the inner memory.
    pub misses: u64,
    /// Reads served from the cache.
    pub hits: u64,
}

impl<M: VirtMemory> PageCache<M> {
    /// Caches up to `capacity` pages of `inner`.
    pub fn new(inner: M, capacity: usize) -> Self {
        PageCache {
            inner,
            pages: Vec::new(),
            capacity: capacity.max(1),
            clock: 0,
            misses: 0,
            hits: 0,
        }
    }

    fn page(&mut self, base: u64) -> Result<&[u8], VirtError> {
        self.clock += 1;
        let now = self.clock;
        if let Some(i) = self.pages.iter().position(|p| p.0 == base) {
            self.hits += 1;
            self.pages[i].2 = now;
            return Ok(&self.pages[i].1);
        }
        self.misses += 1;
        let mut bytes = vec![0u8; PAGE as usize];
        self.inner.read_virt(base, &mut bytes)?;
        let slot = if self.pages.len() < self.capacity {
            self.pages.push((base, bytes, now));
            self.pages.len() - 1
        } else {
            let (i, _) = self
                .pages
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| p.2)
                .unwrap_or((0, &self.pages[0]));
            self.pages[i] = (base, bytes, now);
            i
        };
        Ok(&self.pages[slot].1)
    }
}

impl<M: VirtMemory> VirtMemory for PageCache<M> {
    fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), VirtError> {
        if buf.len() > DIRECT {
            self.misses += 1;
            return self.inner.read_virt(va, buf);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = va
                .checked_add(done as u64)
                .ok_or(VirtError::NotMapped { va })?;
            let base = at & !(PAGE - 1);
            let off = (at - base) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            let page = self.page(base)?;
            buf[done..done + n].copy_from_slice(&page[off..off + n]);
            done += n;
        }
        Ok(())
    }
}
