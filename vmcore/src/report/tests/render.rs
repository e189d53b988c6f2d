use alloc::vec;

use crate::report::cache::PageCache;
use crate::report::testing::FakeVirt;
use crate::report::virt::VirtMemory;

#[test]
fn page_cache_serves_repeated_and_cross_page_reads() {
    let mut mem = FakeVirt::new();
    let base = 0xffff_ffff_8100_0000u64;
    mem.insert(base, (0..3 * 4096u32).map(|i| (i % 251) as u8).collect());
    let mut c = PageCache::new(&mut mem, 2);
    let mut b = [0u8; 8];
    c.read_virt(base + 4092, &mut b).unwrap();
    assert_eq!(
        b,
        [
            4092 % 251,
            4093 % 251,
            4094 % 251,
            4095 % 251,
            4096 % 251,
            4097 % 251,
            4098 % 251,
            4099 % 251
        ]
        .map(|v: u32| v as u8)
    );
    assert_eq!((c.misses, c.hits), (2, 0));
    c.read_virt(base + 10, &mut b).unwrap();
    assert_eq!((c.misses, c.hits), (2, 1));
    // A third page evicts the least recently used (the second).
    c.read_virt(base + 8192, &mut b).unwrap();
    c.read_virt(base + 4096, &mut b).unwrap();
    assert_eq!(c.misses, 4);
    // Unmapped pages are errors, not cached zeros.
    assert!(c.read_virt(base + 5 * 4096, &mut b).is_err());
    assert!(c.read_virt(base + 5 * 4096, &mut b).is_err());
    // Long reads go straight through.
    let mut long = vec![0u8; 3 * 4096];
    c.read_virt(base, &mut long).unwrap();
    assert_eq!(long[4096], (4096 % 251) as u8);
}
