use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::notes::VmcoreInfo;
use crate::report::printk::{Error, Layout, read_tail};
use crate::report::testing::{FakeVirt, SynthRing};

fn layout(ring: &SynthRing) -> Layout {
    let text = ring.vmcoreinfo();
    Layout::from_vmcoreinfo(&VmcoreInfo::new(text.as_bytes())).expect("layout")
}

fn filled(n: u64, count_bits: u32, size_bits: u32) -> (FakeVirt, SynthRing) {
    let mut mem = FakeVirt::new();
    let mut ring = SynthRing::new(&mut mem, count_bits, size_bits);
    for i in 0..n {
        ring.push(&mut mem, i * 1_000_123, format!("message {i}").as_bytes());
    }
    (mem, ring)
}

#[test]
fn empty_ring_has_no_records_and_no_errors() {
    let mut mem = FakeVirt::new();
    let ring = SynthRing::new(&mut mem, 4, 10);
    let t = read_tail(&mut mem, &layout(&ring), 50, 1024);
    assert!(t.records.is_empty());
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert_eq!(t.panic, None);
}

#[test]
fn lines_are_formatted_as_makedumpfile_prints_them() {
    let mut mem = FakeVirt::new();
    let mut ring = SynthRing::new(&mut mem, 4, 12);
    ring.push(&mut mem, 1_500_000_000, b"first");
    ring.push(&mut mem, 12_345_678_901, b"two\nlines\x01\xc3");
    let t = read_tail(&mut mem, &layout(&ring), 50, 1024);
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert_eq!(
        t.last_lines(50),
        [
            "[    1.500000] first",
            "[   12.345678] two",
            "               lines\\x01\\xc3",
        ]
    );
}

#[test]
fn last_n_lines_are_the_newest_in_order() {
    let (mut mem, ring) = filled(40, 6, 14);
    let t = read_tail(&mut mem, &layout(&ring), 5, 1024);
    let lines = t.last_lines(5);
    let want: Vec<String> = (35..40)
        .map(|i| {
            let ns = i * 1_000_123u64;
            format!(
                "[{:5}.{:06}] message {i}",
                ns / 1_000_000_000,
                ns % 1_000_000_000 / 1000
            )
        })
        .collect();
    assert_eq!(lines, want);
    // Without a panic line the walk reads on to the tail: 40 records and the bootstrap one.
    assert!(t.examined >= 40);
}

#[test]
fn wrapped_ring_reads_only_live_records() {
    // 16 descriptors, 512 bytes of text: 300 records wrap both rings many times.
    let (mut mem, ring) = filled(300, 4, 9);
    let live = ring.live_ids();
    assert!(live.len() < 16 && live.len() > 4, "{}", live.len());
    let t = read_tail(&mut mem, &layout(&ring), 1000, 1024);
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    let ids: Vec<u64> = t.records.iter().map(|r| r.id).collect();
    assert_eq!(ids, live);
    let first = 300 - live.len() as u64;
    let texts: Vec<String> = t
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.text).into_owned())
        .collect();
    let want: Vec<String> = (first..300).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, want);
}

#[test]
fn panic_line_and_cpu_line_are_found() {
    let mut mem = FakeVirt::new();
    let mut ring = SynthRing::new(&mut mem, 6, 14);
    ring.push(&mut mem, 1, b"sysrq: Trigger a crash");
    ring.push(
        &mut mem,
        2,
        b"Kernel panic - not syncing: sysrq triggered crash",
    );
    ring.push(
        &mut mem,
        3,
        b"CPU: 1 PID: 1 Comm: sh Not tainted 6.1.0-57-cloud-amd64 #1  Debian 6.1.158-1",
    );
    for i in 0..20 {
        ring.push(&mut mem, 10 + i, b" some_function+0x10/0x20");
    }
    // Only 3 lines wanted: the walk goes on until it has the panic line, without keeping more.
    let t = read_tail(&mut mem, &layout(&ring), 3, 1024);
    assert_eq!(t.panic.as_deref(), Some("sysrq triggered crash"));
    assert_eq!(t.cpu_line, Some((1, 1, String::from("sh"))));
    assert_eq!(t.last_lines(3).len(), 3);
}

#[test]
fn corrupted_block_id_is_reported_and_skipped() {
    let (mut mem, ring) = filled(10, 5, 12);
    let live = ring.live_ids();
    let victim = live[5];
    let at = ring.block_of(victim).expect("block");
    mem.bytes_mut(at, 8)
        .expect("block bytes")
        .copy_from_slice(&0x1234u64.to_le_bytes());
    let t = read_tail(&mut mem, &layout(&ring), 100, 1024);
    assert_eq!(t.records.len(), 9);
    assert!(t.records.iter().all(|r| r.id != victim));
    assert!(
        matches!(&t.errors[..], [Error::BadRecord { id, why }] if *id == victim && why.contains("belongs to id")),
        "{:?}",
        t.errors
    );
}

#[test]
fn corrupted_lpos_is_reported_and_skipped() {
    let (mut mem, ring) = filled(10, 5, 12);
    let victim = ring.live_ids()[2];
    let desc = ring.desc_of(victim);
    // `next` three wraps past `begin`.
    let begin = u64::from_le_bytes(mem.bytes_mut(desc + 8, 8).unwrap().try_into().unwrap());
    mem.bytes_mut(desc + 16, 8)
        .unwrap()
        .copy_from_slice(&begin.wrapping_add(3 * 4096).to_le_bytes());
    let t = read_tail(&mut mem, &layout(&ring), 100, 1024);
    assert_eq!(t.records.len(), 9);
    assert!(
        matches!(&t.errors[..], [Error::BadRecord { id, why }] if *id == victim && why.contains("more than one wrap")),
        "{:?}",
        t.errors
    );
}

#[test]
fn garbage_ring_stops_after_a_bounded_number_of_errors() {
    let (mut mem, ring) = filled(30, 5, 12);
    // Every text block overwritten with garbage.
    for b in mem.bytes_mut(ring.data, 4096).unwrap().iter_mut() {
        *b = 0xa5;
    }
    let t = read_tail(&mut mem, &layout(&ring), 100, 1024);
    assert!(t.records.is_empty());
    assert_eq!(t.errors.len(), 9, "{:?}", t.errors);
    assert!(matches!(t.errors.last(), Some(Error::BadRing(_))));
    assert_eq!(t.examined, 8);
}

#[test]
fn truncated_memory_gives_errors_not_panics() {
    // The text data ring is missing (e.g. a dump cut short before it).
    let (mut mem, ring) = filled(10, 5, 12);
    mem.remove(ring.data);
    let t = read_tail(&mut mem, &layout(&ring), 100, 1024);
    assert!(t.records.is_empty());
    assert!(matches!(&t.errors[0], Error::BadRecord { why, .. } if why.contains("text block")));

    // The ring header itself is unreadable.
    let (mut mem, ring) = filled(10, 5, 12);
    mem.remove(ring.rb);
    let t = read_tail(&mut mem, &layout(&ring), 100, 1024);
    assert!(t.records.is_empty());
    assert!(matches!(
        &t.errors[..],
        [Error::Read {
            what: "struct printk_ringbuffer",
            ..
        }]
    ));
}

#[test]
fn implausible_header_is_refused() {
    let (mut mem, ring) = filled(3, 5, 12);
    // count_bits 60.
    mem.bytes_mut(ring.rb, 4)
        .unwrap()
        .copy_from_slice(&60u32.to_le_bytes());
    let t = read_tail(&mut mem, &layout(&ring), 100, 1024);
    assert!(matches!(&t.errors[..], [Error::BadRing(w)] if w.contains("count_bits 60")));
}

#[test]
fn missing_vmcoreinfo_key_is_named() {
    let text = "SYMBOL(prb)=ffffffff83000000\nSIZE(printk_ringbuffer)=80\n";
    let e = Layout::from_vmcoreinfo(&VmcoreInfo::new(text.as_bytes())).unwrap_err();
    assert_eq!(e, Error::MissingKey("OFFSET(printk_ringbuffer.desc_ring)"));
}

/// The ring of a real crash of Debian's 6.1.0-57-cloud-amd64 (vmcore/testdata/README.md).
fn debian_ring() -> (FakeVirt, Layout) {
    let regions: &[u8] = include_bytes!("../../../testdata/printk-6.1.0-57/regions.bin");
    let info: &[u8] = include_bytes!("../../../testdata/printk-6.1.0-57/vmcoreinfo.txt");
    let mut mem = FakeVirt::new();
    let mut rest = regions;
    let word = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap());
    while !rest.is_empty() {
        let (va, len, kept) = (word(rest), word(&rest[8..]), word(&rest[16..]) as usize);
        let mut bytes = rest[24..24 + kept].to_vec();
        bytes.resize(len as usize, 0);
        mem.insert(va, bytes);
        rest = &rest[24 + kept..];
    }
    let layout = Layout::from_vmcoreinfo(&VmcoreInfo::new(info)).expect("layout");
    (mem, layout)
}

fn makedumpfile_lines() -> Vec<&'static str> {
    include_str!("../../../testdata/printk-6.1.0-57/makedumpfile-dump-dmesg.txt")
        .lines()
        .collect()
}

#[test]
fn debian_ring_reads_exactly_as_makedumpfile_dumps_it() {
    let (mut mem, layout) = debian_ring();
    let reference = makedumpfile_lines();
    // Every record: the whole log equals makedumpfile's.
    let t = read_tail(&mut mem, &layout, 100_000, 4096);
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    assert_eq!(t.last_lines(100_000), reference);
    assert_eq!(t.panic.as_deref(), Some("sysrq triggered crash"));
    assert_eq!(t.cpu_line, Some((1, 1, String::from("init"))));
    // The default 50: the same last 50 lines, and the walk stops early.
    let t = read_tail(&mut mem, &layout, 50, 4096);
    assert_eq!(t.last_lines(50), reference[reference.len() - 50..]);
    assert!(t.examined < 60, "{}", t.examined);
}

#[test]
fn debian_ring_with_a_damaged_record_reports_it_and_keeps_the_rest() {
    let (mut mem, layout) = debian_ring();
    let all = read_tail(&mut mem, &layout, 100_000, 4096);
    let victim = &all.records[all.records.len() - 3];
    // Find the victim's text in the data ring and overwrite its block id.
    let text = victim.text.clone();
    let rb = u64::from_le_bytes(mem.bytes_mut(layout.prb, 8).unwrap().try_into().unwrap());
    let data = u64::from_le_bytes(
        mem.bytes_mut(rb + layout.rb_text_ring + layout.ring_data, 8)
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let ring = mem.bytes_mut(data, 1 << 17).unwrap();
    let at = ring
        .windows(text.len())
        .rposition(|w| w == &text[..])
        .expect("text in ring");
    ring[at - 8..at].copy_from_slice(&u64::MAX.to_le_bytes());
    let t = read_tail(&mut mem, &layout, 100_000, 4096);
    assert_eq!(t.records.len(), all.records.len() - 1);
    assert!(
        matches!(&t.errors[..], [Error::BadRecord { id, .. }] if *id == victim.id),
        "{:?}",
        t.errors
    );
}

/// Bounded fuzzing of the reader on the real ring: random damage anywhere in the header,
/// descriptors, infos or text never panics and every walk stays bounded.
#[test]
fn fuzz_printk_reader_on_the_debian_ring() {
    use crate::tests::fuzz::{Rng, mutate};
    let (base, layout) = debian_ring();
    let rb = {
        let mut m = base.clone();
        u64::from_le_bytes(m.bytes_mut(layout.prb, 8).unwrap().try_into().unwrap())
    };
    let regions = {
        let mut m = base.clone();
        crate::report::printk::ring_regions(&mut m, &layout).unwrap()
    };
    let mut rng = Rng(0x5eed_0014);
    for i in 0..2000u32 {
        let mut mem = base.clone();
        let (va, len) = if i % 4 == 0 {
            (rb, layout.rb_size)
        } else {
            regions[2 + rng.below(3)]
        };
        // Damage a 4 KiB window of the region (the newest records live near the head).
        let start =
            va + (rng.below(len as usize / 4096 + 1) as u64 * 4096).min(len - len.min(4096));
        let win = mem.bytes_mut(start, (len as usize).min(4096)).unwrap();
        mutate(&mut rng, win);
        let t = read_tail(&mut mem, &layout, 50, 4096);
        assert!(t.examined <= 4096);
        assert!(t.records.len() <= 4096);
    }
}
