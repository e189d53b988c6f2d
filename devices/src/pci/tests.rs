use alloc::format;
use alloc::vec::Vec;

use super::caps::{self, CapError};
use super::fake::{FakeConfig, Write};
use super::*;

fn b(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(0, bus, dev, func).unwrap()
}

#[test]
fn bdf_parse_and_display() {
    let x = Bdf::parse("00:04.0").unwrap();
    assert_eq!(x, b(0, 4, 0));
    assert_eq!(format!("{x}"), "0000:00:04.0");
    assert_eq!(format!("{}", x.short()), "00:04.0");
    let x: Bdf = "0001:1f:1f.7".parse().unwrap();
    assert_eq!((x.segment, x.bus, x.dev, x.func), (1, 0x1f, 0x1f, 7));
    assert_eq!(format!("{}", x.short()), "0001:1f:1f.7");
    assert_eq!(Bdf::parse("00:20.0"), Err(ParseBdfError::Device));
    assert_eq!(Bdf::parse("00:04.8"), Err(ParseBdfError::Function));
    for bad in [
        "",
        "04.0",
        "0:0:0:0.0",
        "00:04",
        "zz:04.0",
        "00:04.10",
        "00000:00:04.0",
    ] {
        assert_eq!(Bdf::parse(bad), Err(ParseBdfError::Syntax), "{bad}");
    }
}

fn addrs(s: &Scan) -> Vec<Bdf> {
    s.devices.iter().map(|d| d.bdf).collect()
}

#[test]
fn scan_crosses_bridges_depth_first() {
    let c = FakeConfig::new(4096);
    c.add(b(0, 0, 0), 0x8086, 0x29c0, |f| {
        f.set8(0x0B, 0x06);
    });
    c.add_bridge(b(0, 1, 0), 1, 2);
    c.add_bridge(b(1, 0, 0), 2, 2);
    c.add(b(2, 0, 0), 0x1af4, 0x1042, |f| {
        f.set8(0x0B, 0x01).set8(0x0A, 0x00);
    });
    c.add(b(0, 2, 0), 0x1234, 0x1111, |_| {});
    // A function on a bus no bridge leads to is not found.
    c.add(b(7, 0, 0), 0x1234, 0x2222, |_| {});
    let s = scan(&c, 0, 0);
    assert_eq!(
        addrs(&s),
        [b(0, 0, 0), b(0, 1, 0), b(1, 0, 0), b(2, 0, 0), b(0, 2, 0)]
    );
    assert!(s.issues.is_empty());
    let br = s.find(b(0, 1, 0)).unwrap();
    assert!(br.is_bridge);
    assert_eq!((br.secondary_bus, br.subordinate_bus), (1, 2));
    let v = s.find(b(2, 0, 0)).unwrap();
    assert_eq!((v.vendor, v.device, v.class), (0x1af4, 0x1042, 1));
    // Extra root bus (a second host bridge).
    let s = scan_roots(&c, 0, &[0, 7]);
    assert_eq!(s.devices.len(), 6);
    // The only config writes are BAR probes (decode already off, so COMMAND untouched).
    assert!(
        c.writes()
            .iter()
            .all(|w| (0x10..0x28).contains(&w.off) && w.width == 4)
    );
}

#[test]
fn scan_multifunction_and_absent() {
    let c = FakeConfig::new(256);
    c.add(b(0, 3, 0), 1, 1, |f| {
        f.set8(0x0E, 0x80);
    });
    c.add(b(0, 3, 1), 1, 2, |_| {});
    c.add(b(0, 3, 7), 1, 3, |_| {});
    // Not multi-function: the ghost at .1 (devices that ignore the function number) is skipped.
    c.add(b(0, 4, 0), 2, 1, |_| {});
    c.add(b(0, 4, 1), 2, 2, |_| {});
    // No function 0: the slot is empty even if function 1 answers.
    c.add(b(0, 5, 1), 3, 1, |_| {});
    let s = scan(&c, 0, 0);
    assert_eq!(addrs(&s), [b(0, 3, 0), b(0, 3, 1), b(0, 3, 7), b(0, 4, 0)]);
}

#[test]
fn scan_survives_bridge_loops() {
    let c = FakeConfig::new(4096);
    c.add_bridge(b(0, 1, 0), 1, 1);
    // Points back up to bus 0: a loop.
    c.add_bridge(b(1, 0, 0), 0, 0);
    // Claims bus 1 again.
    c.add_bridge(b(0, 2, 0), 1, 1);
    // Unconfigured (secondary 0).
    c.add_bridge(b(0, 3, 0), 0, 0);
    let s = scan(&c, 0, 0);
    assert_eq!(addrs(&s), [b(0, 1, 0), b(1, 0, 0), b(0, 2, 0), b(0, 3, 0)]);
    assert_eq!(
        s.issues,
        [
            ScanIssue::BadSecondary {
                bridge: b(1, 0, 0),
                secondary: 0
            },
            ScanIssue::BusRevisited {
                bridge: b(0, 2, 0),
                bus: 1
            },
            ScanIssue::BadSecondary {
                bridge: b(0, 3, 0),
                secondary: 0
            },
        ]
    );
}

#[test]
fn scan_visits_each_bus_once_under_a_chain_of_256() {
    let c = FakeConfig::new(4096);
    for bus in 0..=254u8 {
        c.add_bridge(b(bus, 0, 0), bus + 1, 255);
    }
    let s = scan(&c, 0, 0);
    assert_eq!(s.devices.len(), 255);
    assert!(s.issues.is_empty());
}

#[test]
fn bar_sizing_32_64_io_restores_state() {
    let c = FakeConfig::new(256);
    let d = b(0, 4, 0);
    c.add(d, 0x1af4, 0x1042, |f| {
        f.set16(0x04, 0x0007)
            .bar_mem32(0, 0xfebf_1000, 0x1000)
            .bar_io(1, 0xc040, 0x40)
            .bar_mem64(2, 0x8_0000_0000, 0x4000)
            .bar_mem32(5, 0xfe00_0000, 0x0100_0000);
    });
    let before: Vec<u32> = (0..6).map(|i| c.read32(d, 0x10 + 4 * i)).collect();
    let (bars, bad) = probe_bars(&c, d);
    assert!(bad.is_empty());
    assert_eq!(
        bars,
        [
            Bar::Mem32 {
                addr: 0xfebf_1000,
                size: 0x1000,
                prefetchable: false
            },
            Bar::Io {
                port: 0xc040,
                size: 0x40
            },
            Bar::Mem64 {
                addr: 0x8_0000_0000,
                size: 0x4000,
                prefetchable: true
            },
            Bar::None,
            Bar::None,
            Bar::Mem32 {
                addr: 0xfe00_0000,
                size: 0x0100_0000,
                prefetchable: false
            },
        ]
    );
    let after: Vec<u32> = (0..6).map(|i| c.read32(d, 0x10 + 4 * i)).collect();
    assert_eq!(before, after);
    assert_eq!(c.read16(d, 0x04), 0x0007);
    assert_eq!(c.probes_with_decode_on.get(), 0);
    // COMMAND only ever written 16 bits wide: decode off, then restored.
    let cmd: Vec<Write> = c.writes().into_iter().filter(|w| w.off < 8).collect();
    assert_eq!(cmd.len(), 2);
    assert!(cmd.iter().all(|w| w.off == 4 && w.width == 2));
    assert_eq!(cmd[0].value, 0x0004);
    // BAR 3 (upper half of the 64-bit BAR) was probed only as part of BAR 2.
    assert_eq!(c.writes().iter().filter(|w| w.off == 0x1C).count(), 2);
}

#[test]
fn bar_edge_cases() {
    let c = FakeConfig::new(256);
    let d = b(0, 6, 0);
    c.add(d, 1, 1, |f| {
        // I/O BAR decoding only 16 address bits.
        f.set32(0x10, 0x0000_e001)
            .mask(0x10, &0x0000_ffe0u32.to_le_bytes());
        // 64-bit BAR in the last slot is malformed.
        f.set32(0x24, 0x4);
    });
    let (bars, bad) = probe_bars(&c, d);
    assert_eq!(
        bars[0],
        Bar::Io {
            port: 0xe000,
            size: 0x20
        }
    );
    assert_eq!(bad, [5]);
    // Absent function: no writes at all.
    c.clear_writes();
    let (bars, _) = probe_bars(&c, b(0, 9, 0));
    assert_eq!(bars, [Bar::None; 6]);
    assert!(c.writes().is_empty());
    // Host bridges keep decoding during the probe.
    c.add(b(0, 0, 0), 0x8086, 0x29c0, |f| {
        f.set16(0x04, 0x0006)
            .set8(0x0B, 0x06)
            .bar_mem32(0, 0xe000_0000, 0x1000);
    });
    c.clear_writes();
    assert!(matches!(
        probe_bars(&c, b(0, 0, 0)).0[0],
        Bar::Mem32 { size: 0x1000, .. }
    ));
    assert!(c.writes().iter().all(|w| w.off != reg::COMMAND));
    // Bridges have two BARs.
    c.add_bridge(b(0, 7, 0), 1, 1);
    c.with(b(0, 7, 0), |f| {
        f.bar_mem32(1, 0xfd00_0000, 0x100);
        f.bar_mem32(2, 0xfc00_0000, 0x100);
    });
    let (bars, _) = probe_bars(&c, b(0, 7, 0));
    assert!(matches!(bars[1], Bar::Mem32 { size: 0x100, .. }));
    assert_eq!(bars[2], Bar::None);
}

#[test]
fn capability_walk_stops_at_loops() {
    let c = FakeConfig::new(256);
    let d = b(0, 4, 0);
    c.add(d, 0x1af4, 0x1042, |f| {
        f.cap(0x40, caps::id::PM, 0x50)
            .cap(0x50, caps::id::MSI, 0x61) // low bits are reserved, masked off
            .cap(0x60, caps::id::VENDOR, 0x70)
            .cap(0x70, caps::id::VENDOR, 0x50);
    });
    let walk: Vec<_> = caps::capabilities(&c, d).collect();
    assert_eq!(walk.len(), 5);
    assert_eq!(walk[4], Err(CapError::Loop { offset: 0x50 }));
    assert_eq!(caps::vendor_caps(&c, d), [0x60, 0x70]);
    assert_eq!(caps::find_pm(&c, d), Some(0x40));
    assert_eq!(caps::find_msi(&c, d), Some(0x50));
    assert_eq!(caps::find_msix(&c, d), None);
    assert_eq!(caps::find_pcie(&c, d), None);

    c.with(d, |f| {
        f.set8(0x71, 0x20);
    });
    let last = caps::capabilities(&c, d).last().unwrap();
    assert_eq!(last, Err(CapError::BadPointer { offset: 0x20 }));

    // Self-loop and no CAP_LIST bit.
    c.with(d, |f| {
        f.set8(0x41, 0x40);
    });
    assert_eq!(caps::capabilities(&c, d).count(), 2);
    c.with(d, |f| {
        f.set16(0x06, 0);
    });
    assert_eq!(caps::capabilities(&c, d).count(), 0);
    // Absent function.
    assert_eq!(caps::capabilities(&c, b(0, 9, 0)).count(), 0);
}

#[test]
fn extended_capabilities() {
    let c = FakeConfig::new(4096);
    let d = b(1, 0, 0);
    c.add(d, 1, 1, |f| {
        f.set32(0x100, 0x1 | (1 << 16) | (0x140 << 20))
            .set32(0x140, 0xB | (1 << 16) | (0x100 << 20));
    });
    let walk: Vec<_> = caps::ext_capabilities(&c, d).collect();
    assert_eq!(walk.len(), 3);
    assert_eq!(
        walk[1],
        Ok(ExtCap {
            id: 0xB,
            version: 1,
            offset: 0x140
        })
    );
    assert_eq!(walk[2], Err(CapError::Loop { offset: 0x100 }));
    assert_eq!(caps::find_ext_cap(&c, d, 0xB), Some(0x140));
    assert_eq!(caps::find_ext_cap(&c, d, 0x10), None);
    // Through the 256-byte port mechanism there is no extended space.
    let p = FakeConfig::new(256);
    p.add(d, 1, 1, |f| {
        f.set32(0x100, 1);
    });
    assert_eq!(caps::ext_capabilities(&p, d).count(), 0);
}

/// The one walk runs over saved bytes as over a live function: same results, the CardBus
/// pointer at 0x14, and a list cut where the saved bytes end.
#[test]
fn capability_walk_over_saved_bytes() {
    let c = FakeConfig::new(4096);
    let d = b(1, 0, 0);
    c.add(d, 1, 1, |f| {
        f.cap(0x40, caps::id::MSIX, 0x50)
            .cap(0x50, caps::id::PCIE, 0)
            .set32(0x100, 0x1 | (1 << 16) | (0x148 << 20))
            .set32(0x148, 0xD | (1 << 16));
    });
    let bytes = c.with(d, |f| f.data);
    let live: Vec<_> = caps::capabilities(&c, d).collect();
    let saved: Vec<_> = caps::walk(SavedView::new(&bytes)).collect();
    assert_eq!(live, saved);
    assert_eq!(saved.len(), 2);
    let live: Vec<_> = caps::ext_capabilities(&c, d).collect();
    let saved: Vec<_> = caps::walk_ext(SavedView::new(&bytes)).collect();
    assert_eq!(live, saved);
    assert_eq!(saved.len(), 2);
    // 256 saved bytes: no extended list; 64: the standard list points past the end.
    assert_eq!(caps::walk_ext(SavedView::new(&bytes[..256])).count(), 0);
    assert_eq!(
        caps::walk(SavedView::new(&bytes[..64])).collect::<Vec<_>>(),
        [Err(CapError::BadPointer { offset: 0x40 })]
    );
    // CardBus: the list starts at 0x14, not 0x34.
    let mut cb = [0u8; 256];
    cb[0x06] = Status::CAP_LIST.bits() as u8;
    cb[0x0E] = header_type::CARDBUS;
    cb[0x14] = 0x80;
    cb[0x34] = 0x40;
    cb[0x80] = caps::id::PM;
    let walk: Vec<_> = caps::walk(SavedView::new(&cb)).collect();
    assert_eq!(
        walk,
        [Ok(Cap {
            id: caps::id::PM,
            offset: 0x80
        })]
    );
}

fn w1c_device(c: &FakeConfig, d: Bdf) {
    c.add(d, 0x1af4, 0x1042, |f| {
        f.set16(0x04, 0x0006)
            .set16(
                0x06,
                (Status::RECEIVED_MASTER_ABORT | Status::DETECTED_PARITY).bits(),
            )
            .cap(0x50, caps::id::MSI, 0x70)
            .set16(0x52, 0x0081)
            .mask(0x52, &[0x71, 0x00])
            .cap(0x70, caps::id::MSIX, 0)
            .set16(0x72, 0xC003)
            .mask(0x72, &[0x00, 0xC0]);
    });
}

#[test]
fn command_helpers_are_width_exact_and_keep_w1c_status() {
    let c = FakeConfig::new(256);
    let d = b(0, 4, 0);
    w1c_device(&c, d);
    let status = c.read16(d, reg::STATUS);

    disable(&c, d);
    assert_eq!(c.read16(d, reg::COMMAND), Command::INTX_DISABLE.bits());
    enable_mem_bus_master(&c, d);
    assert_eq!(
        command(&c, d),
        Command::MEMORY_SPACE | Command::BUS_MASTER | Command::INTX_DISABLE
    );
    let done = disable_msi_msix(&c, d);
    assert_eq!(
        done,
        MsiDisabled {
            msi: true,
            msix: true
        }
    );
    assert_eq!(c.read16(d, 0x52), 0x0080);
    // MSI-X function mask (bit 14) and table size are kept.
    assert_eq!(c.read16(d, 0x72), 0x4003);
    // Nothing left to disable: no writes.
    c.clear_writes();
    assert_eq!(disable_msi_msix(&c, d), MsiDisabled::default());
    assert!(c.writes().is_empty());

    assert_eq!(
        c.read16(d, reg::STATUS),
        status,
        "W1C status bits must survive"
    );
    // Every write the helpers made was 16 bits.
    c.clear_writes();
    disable(&c, d);
    enable_mem_bus_master(&c, d);
    assert!(c.writes().iter().all(|w| w.width == 2));
}

#[test]
fn fake_detects_a_32_bit_read_modify_write() {
    // The bug the helpers avoid: rewriting COMMAND through its dword also writes Status back,
    // clearing the error bits the device reported.
    let c = FakeConfig::new(256);
    let d = b(0, 4, 0);
    w1c_device(&c, d);
    let dw = c.read32(d, 0x04);
    c.write32(d, 0x04, dw | 0x4);
    assert_eq!(c.read16(d, reg::STATUS) & Status::W1C.bits(), 0);
}

#[test]
fn parent_bridge_is_the_bridge_whose_secondary_bus_holds_the_function() {
    let c = FakeConfig::new(256);
    c.add_bridge(b(0, 1, 0), 1, 2);
    c.add(b(1, 0, 0), 0x1af4, 0x1042, |_| {});
    c.add(b(0, 4, 0), 0x1af4, 0x1042, |_| {});
    let s = scan(&c, 0, 0);
    assert_eq!(s.parent_bridge(b(1, 0, 0)).map(|p| p.bdf), Some(b(0, 1, 0)));
    assert_eq!(s.parent_bridge(b(0, 4, 0)).map(|p| p.bdf), None);
}
