use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::report::kallsyms::{Anchor, Error, Kallsyms};
use crate::report::testing::FakeVirt;

const BASE: u64 = 0xffff_ffff_8100_0000;
const IMAGE: u64 = 0xffff_ffff_8200_0000;

/// Token `t` expands to the character `t` when printable; 1 and 2 are multi-character tokens.
fn token(t: u8) -> Vec<u8> {
    match t {
        1 => b"func_".to_vec(),
        2 => b"init_".to_vec(),
        0x21..=0x7e => vec![t],
        _ => vec![b'~', b'0' + t % 10],
    }
}

fn encode(ty: u8, name: &str) -> Vec<u8> {
    let mut toks = vec![ty];
    let mut rest = name.as_bytes();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(b"func_") {
            toks.push(1);
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"init_") {
            toks.push(2);
            rest = r;
        } else {
            toks.push(rest[0]);
            rest = &rest[1..];
        }
    }
    let mut out = Vec::new();
    if toks.len() > 0x7f {
        out.push(0x80 | (toks.len() & 0x7f) as u8);
        out.push((toks.len() >> 7) as u8);
    } else {
        out.push(toks.len() as u8);
    }
    out.extend(toks);
    out
}

fn pad8(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(8) {
        v.push(0);
    }
}

struct Built {
    mem: FakeVirt,
    syms: Vec<(String, u64)>,
    token_index_at: u64,
}

/// The tables in 6.1's order (offsets first) or 6.2+'s (offsets after the token index), inside
/// 32 KiB of unrelated bytes on each side.
fn build(offsets_first: bool) -> Built {
    build_with(offsets_first, false)
}

/// [`build`], with `kallsyms_seqs_of_names` (3 bytes per symbol) between the markers and the
/// token table when `seqs` (6.2+, and Debian's 6.1).
fn build_with(offsets_first: bool, seqs: bool) -> Built {
    let mut syms: Vec<(String, u64)> = vec![(String::from("fixed_percpu_data"), 0)];
    syms.push((String::from("current_task"), 0x1_ad00));
    for i in 0..600u64 {
        syms.push((format!("func_{i}"), BASE + 0x1000 + i * 0x40));
    }
    // An alias of func_7, and a name longer than 127 tokens.
    syms.push((String::from("func_7_alias"), BASE + 0x1000 + 7 * 0x40));
    syms.push(("a".repeat(200), BASE + 0x1000 + 600 * 0x40));
    syms.push((String::from("init_uts_ns"), BASE + 0x80_0000));
    syms.sort_by_key(|s| s.1);
    let n = syms.len();

    let mut offsets = Vec::new();
    for (_, a) in &syms {
        let raw: i32 = if *a < BASE {
            *a as i32
        } else {
            (BASE as i64 - 1 - *a as i64) as i32
        };
        offsets.extend_from_slice(&raw.to_le_bytes());
    }
    pad8(&mut offsets);
    let mut names = Vec::new();
    let mut markers = Vec::new();
    for (i, (name, _)) in syms.iter().enumerate() {
        if i % 256 == 0 {
            markers.extend_from_slice(&(names.len() as u32).to_le_bytes());
        }
        names.extend(encode(b'T', name));
    }
    pad8(&mut names);
    pad8(&mut markers);
    let mut table = Vec::new();
    let mut index = Vec::new();
    for t in 0..=255u8 {
        index.extend_from_slice(&(table.len() as u16).to_le_bytes());
        table.extend(token(t));
        table.push(0);
    }
    pad8(&mut table);

    let mut img: Vec<u8> = (0..32 << 10).map(|i| (i * 7 % 251) as u8).collect();
    let mut ti_off = 0;
    let push_head = |img: &mut Vec<u8>, offsets: &[u8]| {
        img.extend_from_slice(offsets);
        img.extend_from_slice(&BASE.to_le_bytes());
    };
    if offsets_first {
        push_head(&mut img, &offsets);
    }
    img.extend_from_slice(&(n as u64).to_le_bytes());
    img.extend_from_slice(&names);
    img.extend_from_slice(&markers);
    if seqs {
        let mut sq: Vec<u8> = (0..n as u32)
            .rev()
            .flat_map(|i| [(i >> 16) as u8, (i >> 8) as u8, i as u8])
            .collect();
        pad8(&mut sq);
        img.extend_from_slice(&sq);
    }
    img.extend_from_slice(&table);
    ti_off += img.len();
    img.extend_from_slice(&index);
    if !offsets_first {
        push_head(&mut img, &offsets);
    }
    img.extend((0..32 << 10).map(|i| (i * 13 % 241) as u8));
    let mut mem = FakeVirt::new();
    mem.insert(IMAGE, img);
    Built {
        mem,
        syms,
        token_index_at: IMAGE + ti_off as u64,
    }
}

fn anchor() -> Anchor<'static> {
    Anchor {
        name: "init_uts_ns",
        addr: BASE + 0x80_0000,
    }
}

fn find(b: &mut Built) -> Kallsyms {
    Kallsyms::find(&mut b.mem, IMAGE, IMAGE + (1 << 20), anchor()).expect("found")
}

#[test]
fn finds_tables_in_6_1_order_and_resolves_addresses() {
    let mut b = build(true);
    let k = find(&mut b);
    assert_eq!(k.token_index_addr, b.token_index_at);
    assert_eq!(k.num_syms as usize, b.syms.len());
    assert_eq!(k.marker_width, 4);
    let s = k
        .lookup(&mut b.mem, BASE + 0x1000 + 5 * 0x40 + 3)
        .unwrap()
        .unwrap();
    assert_eq!(format!("{s}"), "func_5+0x3/0x40");
    // An aliased address resolves to the first symbol of the alias group, as Linux does.
    let s = k
        .lookup(&mut b.mem, BASE + 0x1000 + 7 * 0x40)
        .unwrap()
        .unwrap();
    assert!(s.name == "func_7" || s.name == "func_7_alias");
    let first_alias = b
        .syms
        .iter()
        .find(|(_, a)| *a == BASE + 0x1000 + 7 * 0x40)
        .unwrap();
    assert_eq!(s.name, first_alias.0);
    // The long (two-byte length) name.
    let s = k
        .lookup(&mut b.mem, BASE + 0x1000 + 600 * 0x40 + 1)
        .unwrap()
        .unwrap();
    assert_eq!(s.name, "a".repeat(200));
    // A per-CPU symbol: a non-negative offset is an absolute value.
    let s = k.lookup(&mut b.mem, 0x1_ad08).unwrap().unwrap();
    assert_eq!((s.name.as_str(), s.offset), ("current_task", 8));
    // Every symbol's name and address, by index.
    for (i, (name, addr)) in b.syms.iter().enumerate() {
        assert_eq!(&k.name(&mut b.mem, i as u32).unwrap(), name);
        assert_eq!(k.address(&mut b.mem, i as u32).unwrap(), *addr);
    }
}

#[test]
fn finds_tables_in_6_2_order() {
    let mut b = build(false);
    let k = find(&mut b);
    let s = k
        .lookup(&mut b.mem, BASE + 0x1000 + 0x40 * 599 + 0x3f)
        .unwrap()
        .unwrap();
    assert_eq!(format!("{s}"), "func_599+0x3f/0x40");
}

#[test]
fn name_to_address_in_one_pass() {
    let mut b = build(true);
    let k = find(&mut b);
    let got = k
        .addresses_of(&mut b.mem, &["current_task", "func_300", "no_such_symbol"])
        .unwrap();
    assert_eq!(
        got,
        [Some(0x1_ad00), Some(BASE + 0x1000 + 300 * 0x40), None]
    );
}

#[test]
fn wrong_anchor_is_refused() {
    let mut b = build(true);
    let wrong = Anchor {
        name: "init_uts_ns",
        addr: BASE + 0x80_0040,
    };
    let e = Kallsyms::find(&mut b.mem, IMAGE, IMAGE + (1 << 20), wrong).unwrap_err();
    assert!(
        matches!(e, Error::Inconsistent(ref w) if w.contains("init_uts_ns")),
        "{e}"
    );
}

#[test]
fn no_tables_is_not_found() {
    let mut mem = FakeVirt::new();
    mem.insert(IMAGE, (0..256 << 10).map(|i| (i * 7 % 251) as u8).collect());
    let e = Kallsyms::find(&mut mem, IMAGE, IMAGE + (256 << 10), anchor()).unwrap_err();
    assert_eq!(
        e,
        Error::NotFound {
            searched: 256 << 10
        }
    );
}

#[test]
fn damaged_names_are_refused_not_misread() {
    let mut b = build(true);
    // Overwrite the last group of names: it no longer decodes to the markers.
    let k = find(&mut b);
    let at = k.markers - 64;
    for x in b.mem.bytes_mut(at, 64).unwrap() {
        *x = 0x7f;
    }
    let e = Kallsyms::find(&mut b.mem, IMAGE, IMAGE + (1 << 20), anchor()).unwrap_err();
    assert!(matches!(e, Error::Inconsistent(_)), "{e}");
}

#[test]
fn return_addresses_resolve_like_linux_pb() {
    let mut b = build(true);
    let k = find(&mut b);
    // A return address right at the start of func_6: the call was func_5's last instruction.
    let s = k
        .lookup_return(&mut b.mem, BASE + 0x1000 + 6 * 0x40)
        .unwrap()
        .unwrap();
    assert_eq!(format!("{s}"), "func_5+0x40/0x40");
}

#[test]
fn stack_scan_keeps_return_addresses_after_calls_only() {
    use crate::notes::PrStatus;
    use crate::report::stack::scan;

    let mut b = build(true);
    let k = find(&mut b);
    // Kernel text: a call (e8 rel32) ending at func_3+0x10 and at func_9+0x20; func_4+0x8 is
    // a text address with no call before it.
    let mut text = vec![0x90u8; 0x10000];
    for ret in [0x1000 + 3 * 0x40 + 0x10, 0x1000 + 9 * 0x40 + 0x20] {
        text[ret - 5] = 0xe8;
    }
    b.mem.insert(BASE, text);
    // A stack page 16 KiB aligned, rsp 0x100 below its top.
    let stack_top = 0xffff_c900_0001_0000u64;
    let rsp = stack_top - 0x100;
    let mut words = vec![0u64; 0x20];
    words[2] = BASE + 0x1000 + 3 * 0x40 + 0x10;
    words[5] = BASE + 0x1000 + 4 * 0x40 + 0x8;
    words[7] = 0x1234;
    words[9] = BASE + 0x1000 + 9 * 0x40 + 0x20;
    b.mem
        .insert(rsp, words.iter().flat_map(|w| w.to_le_bytes()).collect());
    let mut regs = PrStatus {
        pr_pid: 1,
        pr_reg: [0; 27],
    };
    regs.pr_reg[16] = BASE + 0x1000 + 0x40 + 4; // rip in func_1
    regs.pr_reg[19] = rsp;
    let (trace, errors) = scan(&mut b.mem, Some(&k), &regs, Some((BASE, BASE + 0x10000)));
    assert!(errors.is_empty(), "{errors:?}");
    let names: Vec<&str> = trace.frames.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        names,
        ["func_1+0x4/0x40", "func_3+0x10/0x40", "func_9+0x20/0x40"]
    );
    assert_eq!(trace.scanned, 0x100);

    // An rsp that is not a kernel address gives an error line and only frame 0.
    regs.pr_reg[19] = 0x7fff_0000;
    let (trace, errors) = scan(&mut b.mem, Some(&k), &regs, Some((BASE, BASE + 0x10000)));
    assert_eq!(trace.frames.len(), 1);
    assert!(
        errors[0].contains("not a kernel stack pointer"),
        "{errors:?}"
    );
}

/// Bounded fuzzing: random damage to the tables never panics; whatever is accepted still
/// answers lookups without panicking.
#[test]
fn fuzz_kallsyms_on_damaged_tables() {
    use crate::tests::fuzz::{Rng, mutate};
    let b = build(true);
    let ti = b.token_index_at;
    let mut rng = Rng(0x5eed_0015);
    for i in 0..1500u32 {
        let mut mem = b.mem.clone();
        // Damage near the token index, the markers or anywhere in the image.
        let at = match i % 3 {
            0 => ti - 512 + rng.below(1024) as u64,
            1 => ti - 4096 + rng.below(4096) as u64,
            _ => IMAGE + (32 << 10) + rng.below(16 << 10) as u64,
        };
        mutate(&mut rng, mem.bytes_mut(at & !63, 64).unwrap());
        if let Ok(k) = Kallsyms::find(&mut mem, IMAGE, IMAGE + (1 << 20), anchor()) {
            for a in [0, BASE, BASE + 0x1234, u64::MAX, rng.next()] {
                let _ = k.lookup(&mut mem, a);
                let _ = k.lookup_return(&mut mem, a);
            }
            let _ = k.name(&mut mem, rng.below(k.num_syms as usize + 10) as u32);
        }
    }
}

#[test]
fn finds_tables_with_seqs_of_names_without_a_hint() {
    for offsets_first in [true, false] {
        let mut b = build_with(offsets_first, true);
        let k = find(&mut b);
        assert_eq!(k.num_syms as usize, b.syms.len());
        let s = k
            .lookup(&mut b.mem, BASE + 0x1000 + 0x40 * 42 + 1)
            .unwrap()
            .unwrap();
        assert_eq!(format!("{s}"), "func_42+0x1/0x40");
    }
}

#[test]
fn the_search_stops_when_asked() {
    let mut b = build(true);
    let calls = core::cell::Cell::new(0u32);
    // Out of time after the first piece: the tables 32 KiB in are inside it, so found...
    let give_up = || {
        calls.set(calls.get() + 1);
        calls.get() > 1
    };
    assert!(
        Kallsyms::find_within(&mut b.mem, IMAGE, IMAGE + (1 << 20), anchor(), &give_up).is_ok()
    );
    // ...but a search that starts out of time reads nothing.
    let e = Kallsyms::find_within(&mut b.mem, IMAGE, IMAGE + (1 << 20), anchor(), &|| true)
        .unwrap_err();
    assert_eq!(e, Error::GaveUp { searched: 0 });
}
