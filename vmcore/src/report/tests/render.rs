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

/// The record's copy keeps the innermost frames and the newest log lines; the console's keeps
/// everything.
#[test]
fn the_stored_report_cuts_the_trace_before_the_log() {
    use alloc::format;
    use alloc::string::String;

    use crate::report::{MAX_FRAMES, Report, STORED_FRAMES, Trace, render, render_within};
    let r = Report {
        osrelease: Some(String::from("6.1.0-57-cloud-amd64")),
        crash_time: Some(1_796_235_140),
        cpu_count: 0,
        panic: Some(String::from("sysrq triggered crash")),
        cpus: vec![],
        crashing_known: false,
        symbols: Err(String::from("test")),
        symbols_how: "",
        trace: Some(Trace {
            frames: (0..MAX_FRAMES as u64)
                .map(|i| (0xffff_ffff_8100_0000 + i, format!("frame_{i}+0x1/0x10")))
                .collect(),
            scanned: 4096,
        }),
        log: (0..50)
            .map(|i| format!("[ {i:>4}.000000] line {i}"))
            .collect(),
        lines_wanted: 50,
        errors: vec![],
    };
    let frames = |t: &str| t.lines().filter(|l| l.starts_with("  [<")).count();
    assert_eq!(frames(&render(&r)), MAX_FRAMES);
    assert!(render(&r).len() > 3000);
    let stored = render_within(&r, 3000);
    assert!(stored.len() <= 3000);
    assert_eq!(frames(&stored), STORED_FRAMES);
    assert!(stored.contains("frame_15+") && !stored.contains("frame_16+"));
    assert!(stored.ends_with("line 49\n"), "newest log line kept");
    assert!(
        stored.contains("line 20\n"),
        "room for many log lines: {stored}"
    );
    // Fits whole: untouched.
    assert_eq!(render_within(&r, 1 << 20), render(&r));
}
