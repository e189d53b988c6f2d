//! Host tests of the firmware-address step: which registers, compare, write, read back,
//! retries, and the console line the e2e tests grep.

use alloc::format;
use alloc::vec::Vec;
use core::cell::Cell;

use super::*;
use crate::blob::{Blob, BlobWriter};
use crate::pci::fake::FakeConfig;
use crate::pci::{self, Bdf};
use crate::reinit::restore::{BAR_RESTORE_RETRIES, RETRY_DELAY_US};
use crate::reinit::sim::SimClock;

const EP: Bdf = Bdf {
    segment: 0,
    bus: 0,
    dev: 4,
    func: 0,
};
const BR: Bdf = Bdf {
    segment: 0,
    bus: 0,
    dev: 0x1c,
    func: 0,
};

/// A virtio-blk endpoint with BAR0 at 0xfebc1000 and a root port whose memory window is
/// 0xfe70_0000..=0xfe7f_ffff (0x20 reads 0xfe70fe70), as firmware left them.
fn machine() -> FakeConfig {
    let c = FakeConfig::new(256);
    c.add(EP, 0x1af4, 0x1042, |f| {
        f.set(0x09, &[0x00, 0x80, 0x01])
            .bar_mem32(0, 0xfebc_1000, 0x1000);
    });
    c.add_bridge(BR, 1, 1);
    c.with(BR, |f| {
        f.set32(0x20, 0xfe70_fe70)
            .mask(0x20, &[0xF0, 0xFF, 0xF0, 0xFF]);
    });
    c
}

/// The blob `rkdumpctl snapshot` would have written of `c`.
fn snapshot(c: &FakeConfig) -> Vec<u8> {
    let mut w = BlobWriter::new("6.8.0", [0; 16], 0);
    for bdf in [EP, BR] {
        let bytes = c.with(bdf, |f| f.data[..256].to_vec());
        w.add(bdf, &bytes).unwrap();
    }
    w.finish()
}

/// What a reset (or a crashed kernel's reprogramming) did: BAR0 cleared, the window moved.
fn disturb(c: &FakeConfig) {
    c.with(EP, |f| {
        f.set32(0x10, 0);
    });
    c.with(BR, |f| {
        f.set32(0x20, 0xfd70_fd60);
    });
}

#[test]
fn address_registers_are_bars_windows_and_bus_numbers_only() {
    for off in (0x10..0x28).step_by(4) {
        assert!(is_address_register(0x00, off), "{off:#x}");
        assert!(is_address_register(0x80, off), "multi-function bit ignored");
    }
    for off in [0x04, 0x0C, 0x28, 0x2C, 0x30, 0x3C] {
        assert!(!is_address_register(0x00, off), "{off:#x}");
    }
    for off in [0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x2C, 0x30] {
        assert!(is_address_register(0x01, off), "{off:#x}");
    }
    for off in [0x04, 0x0C, 0x1E, 0x34, 0x38, 0x3C, 0x3E] {
        assert!(!is_address_register(0x01, off), "{off:#x}");
    }
    assert!((0..0x40).all(|off| !is_address_register(0x02, off)));
}

#[test]
fn addresses_come_back_width_exact_with_the_e2e_line() {
    let c = machine();
    let blob = snapshot(&c);
    let scan = pci::scan(&c, 0, 0);
    disturb(&c);
    c.clear_writes();
    let clock = SimClock::default();
    let out = restore_addresses(&c, &clock, &scan, &Blob::parse(&blob).unwrap());
    let lines: Vec<_> = out.iter().map(|r| format!("{r}")).collect();
    assert_eq!(
        lines,
        [
            "0000:00:04.0 restored from blob: 0x10:0x0->0xfebc1000",
            // The forced prefetchable-window writes changed nothing and are not listed.
            "0000:00:1c.0 restored from blob: 0x20:0xfd70fd60->0xfe70fe70",
        ]
    );
    assert!(out.iter().all(|r| !r.is_error()));
    assert_eq!(c.read32(EP, 0x10), 0xfebc_1000);
    assert_eq!(c.read32(BR, 0x20), 0xfe70_fe70);
    // Address registers only, each written once, 32 bits wide; nothing touched COMMAND.
    let offs: Vec<_> = c.writes().iter().map(|w| (w.bdf, w.off, w.width)).collect();
    assert_eq!(
        offs,
        [
            (EP, 0x10, 4),
            (BR, 0x2C, 4),
            (BR, 0x28, 4),
            (BR, 0x24, 4),
            (BR, 0x20, 4),
        ]
    );
    // Again: everything matches, so the endpoint gets no entry (the bridge's forced
    // prefetchable window keeps it listed, with no change, as before the refactor).
    let out = restore_addresses(&c, &clock, &scan, &Blob::parse(&blob).unwrap());
    assert_eq!(
        out.iter().map(|r| format!("{r}")).collect::<Vec<_>>(),
        ["0000:00:1c.0 restored from blob:"]
    );
}

#[test]
fn a_record_of_another_device_is_skipped() {
    let c = machine();
    let blob = snapshot(&c);
    disturb(&c);
    c.with(EP, |f| {
        f.set16(0x02, 0x1001);
    });
    let scan = pci::scan(&c, 0, 0);
    c.clear_writes();
    let out = restore_addresses(
        &c,
        &SimClock::default(),
        &scan,
        &Blob::parse(&blob).unwrap(),
    );
    assert_eq!(
        format!("{}", out[0]),
        "0000:00:04.0: blob record does not match the function (IDs or class differ); skipped"
    );
    assert_eq!(out[0].outcome, AddressOutcome::Mismatch);
    assert!(!out[0].is_error());
    assert!(c.writes().iter().all(|w| w.bdf != EP));
}

/// Drops the first `drop` config writes, as a device still busy after a reset might.
struct Flaky<'a> {
    inner: &'a FakeConfig,
    drop: Cell<u32>,
    attempts: Cell<u32>,
}

impl Flaky<'_> {
    fn take(&self) -> bool {
        self.attempts.set(self.attempts.get() + 1);
        let d = self.drop.get();
        self.drop.set(d.saturating_sub(1));
        d == 0
    }
}

impl ConfigSpace for Flaky<'_> {
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        self.inner.read8(bdf, off)
    }
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        self.inner.read16(bdf, off)
    }
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.inner.read32(bdf, off)
    }
    fn write8(&self, bdf: Bdf, off: u16, v: u8) {
        if self.take() {
            self.inner.write8(bdf, off, v);
        }
    }
    fn write16(&self, bdf: Bdf, off: u16, v: u16) {
        if self.take() {
            self.inner.write16(bdf, off, v);
        }
    }
    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        if self.take() {
            self.inner.write32(bdf, off, v);
        }
    }
    fn max_offset(&self) -> u16 {
        self.inner.max_offset()
    }
}

/// Only the endpoint: its BAR carries Linux's 10 retries.
fn endpoint_only(c: &FakeConfig) -> (Scan, Vec<u8>) {
    let blob = snapshot(c);
    let mut scan = pci::scan(c, 0, 0);
    scan.devices.retain(|d| d.bdf == EP);
    disturb(c);
    (scan, blob)
}

#[test]
fn retries_are_honoured_until_the_bar_takes() {
    let c = machine();
    let (scan, blob) = endpoint_only(&c);
    let flaky = Flaky {
        inner: &c,
        drop: Cell::new(3),
        attempts: Cell::new(0),
    };
    let clock = SimClock::default();
    let out = restore_addresses(&flaky, &clock, &scan, &Blob::parse(&blob).unwrap());
    assert_eq!(
        format!("{}", out[0]),
        "0000:00:04.0 restored from blob: 0x10:0x0->0xfebc1000"
    );
    assert_eq!(
        flaky.attempts.get(),
        4,
        "three dropped writes, then one that took"
    );
    assert!(clock.peek() >= 3 * RETRY_DELAY_US, "1 ms between retries");
    assert!(clock.peek() < 4 * RETRY_DELAY_US);
    assert_eq!(c.read32(EP, 0x10), 0xfebc_1000);
}

#[test]
fn a_bar_that_never_takes_is_reported_not_restored_after_all_retries() {
    let c = machine();
    let (scan, blob) = endpoint_only(&c);
    let flaky = Flaky {
        inner: &c,
        drop: Cell::new(u32::MAX),
        attempts: Cell::new(0),
    };
    let clock = SimClock::default();
    let out = restore_addresses(&flaky, &clock, &scan, &Blob::parse(&blob).unwrap());
    assert_eq!(
        flaky.attempts.get(),
        1 + u32::from(BAR_RESTORE_RETRIES),
        "one write and ten retries"
    );
    assert!(clock.peek() >= u64::from(BAR_RESTORE_RETRIES) * RETRY_DELAY_US);
    assert!(out[0].is_error());
    assert_eq!(
        out[0].outcome,
        AddressOutcome::NotRestored {
            changes: alloc::vec![AddressChange {
                off: 0x10,
                old: 0,
                new: 0xfebc_1000
            }],
            stuck: alloc::vec![Stuck {
                off: 0x10,
                want: 0xfebc_1000,
                got: 0
            }],
        }
    );
    assert_eq!(
        format!("{}", out[0]),
        "0000:00:04.0 not restored from blob: 0x10:0x0->0xfebc1000, 0x10 reads 0x0 not 0xfebc1000"
    );
}

#[test]
fn a_window_the_bridge_ignores_is_reported_not_restored() {
    let c = machine();
    let blob = snapshot(&c);
    let scan = pci::scan(&c, 0, 0);
    disturb(&c);
    // The bridge's registers now ignore every write (no retries for type 1: one read-back).
    c.with(BR, |f| {
        f.mask(0x20, &[0; 4]);
    });
    c.clear_writes();
    let out = restore_addresses(
        &c,
        &SimClock::default(),
        &scan,
        &Blob::parse(&blob).unwrap(),
    );
    let br = out.iter().find(|r| r.bdf == BR).unwrap();
    assert!(br.is_error());
    assert_eq!(
        format!("{br}"),
        "0000:00:1c.0 not restored from blob: 0x20:0xfd70fd60->0xfe70fe70, 0x20 reads 0xfd70fd60 not 0xfe70fe70"
    );
    let to_0x20 = c
        .writes()
        .iter()
        .filter(|w| w.bdf == BR && w.off == 0x20)
        .count();
    assert_eq!(to_0x20, 1);
}

#[test]
fn the_engine_read_back_stays_linux_s() {
    // ReadBack::Retried (the engine's) only checks writes with retries; Every checks all.
    let c = machine();
    c.with(BR, |f| {
        f.mask(0x20, &[0; 4]);
    });
    let plan = [RestoreWrite {
        off: 0x20,
        width: 4,
        value: 0x1234_5670,
        retries: 0,
    }];
    let clock = SimClock::default();
    assert!(apply_restore(&c, &clock, BR, &plan, ReadBack::Retried).is_empty());
    assert_eq!(
        apply_restore(&c, &clock, BR, &plan, ReadBack::Every),
        [Stuck {
            off: 0x20,
            want: 0x1234_5670,
            got: 0xfe70_fe70
        }]
    );
}
