//! Host tests for device reinitialisation against the simulated config space in `sim`.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::sim::{self, Behaviour, FakeDriver, Sim, SimWrite, bdf};
use super::*;
use crate::pci::SavedView;
use crate::pci::{self, Bdf};

const VBLK: (u16, u16) = (0x1af4, 0x1042);
const NIC: (u16, u16) = (0x8086, 0x10d3);

fn flr_dev() -> Behaviour {
    Behaviour {
        flr_effect: true,
        ready_after_us: 5_000,
        ..Behaviour::default()
    }
}

/// virtio-blk-like: typical BARs, PCIe (FLR if `flr`) at 0x40, MSI-X at 0x80, PM (QEMU: no
/// effect unless `beh` says so) at 0x90.
fn vblk(s: &Sim, at: Bdf, flr: bool, beh: Behaviour) {
    s.endpoint(at, VBLK, (0x01, 0x00), beh, |x| {
        sim::typical(x);
        sim::pcie(x, 0x40, 0x80, flr, 0);
        sim::msix(x, 0x80, 0x90);
        sim::pm(x, 0x90, 0, false);
    });
}

/// e1000e-like: typical BARs, PCIe without FLR, PM at 0x90, MSI at 0xA0.
fn nic(s: &Sim, at: Bdf, ids: (u16, u16), beh: Behaviour) {
    s.endpoint(at, ids, (0x02, 0x00), beh, |x| {
        sim::typical(x);
        x.set8(0x0E, 0x80); // multi-function, harmless when alone
        sim::pcie(x, 0x40, 0x90, false, 0);
        sim::pm(x, 0x90, 0xA0, false);
        sim::msi(x, 0xA0, 0);
    });
}

fn host_and_lpc(s: &Sim) {
    s.endpoint(
        bdf(0, 0, 0),
        (0x8086, 0x29c0),
        (0x06, 0x00),
        Behaviour::default(),
        |x| {
            x.set16(0x04, 0x0006);
        },
    );
    s.endpoint(
        bdf(0, 0x1f, 0),
        (0x8086, 0x2918),
        (0x06, 0x01),
        Behaviour::default(),
        |x| {
            x.set16(0x04, 0x0007);
        },
    );
}

/// q35-like: host bridge, root port 00:1c.0 -> virtio-blk 01:00.0 with FLR, LPC.
fn qemu_like() -> Sim {
    let s = Sim::new();
    host_and_lpc(&s);
    s.bridge(bdf(0, 0x1c, 0), 1, 1);
    vblk(&s, bdf(1, 0, 0), true, flr_dev());
    s
}

fn run_with(s: &Sim, policy: &Policy, drivers: &mut DriverSet, saved: &dyn SavedConfig) -> Report {
    let scan = pci::scan(s, 0, 0);
    assert!(scan.issues.is_empty(), "{:?}", scan.issues);
    s.clear_writes();
    let clock = s.clock.clone();
    let mut plat = NoPlatform;
    let mut ctx = DriverCtx::new(s, &*clock, &mut plat);
    let r = run(&mut ctx, &scan, policy, drivers, saved);
    assert_width_exact(s);
    r
}

fn run_policy(s: &Sim, policy: &Policy) -> Report {
    run_with(s, policy, &mut DriverSet::new(), &NoSavedConfig)
}

fn auto() -> Policy {
    Policy::new(ResetPolicy::Auto, true)
}

/// No write ever covers COMMAND+Status or I/O base/limit+Secondary Status with 32 bits, and
/// no write-1-to-clear bit is written as 1 in PMCSR or Bridge Control.
fn assert_width_exact(s: &Sim) {
    for w in s.writes() {
        assert!(
            !(w.off == 0x04 && w.width == 4),
            "32-bit COMMAND write {w:?}"
        );
        assert!(!(w.off == 0x1C && w.width == 4), "32-bit 0x1C write {w:?}");
        if w.off == 0x04 {
            assert_eq!(w.width, 2, "{w:?}");
        }
        if w.off == 0x94 {
            assert_eq!(w.value & 0x8000, 0, "PME_Status written as 1: {w:?}");
        }
        if w.off == 0x3E {
            assert_eq!(w.value & 0x0400, 0, "Discard Timer Status written: {w:?}");
        }
        if w.off == 0x3C && w.width == 4 {
            assert_eq!(w.value & 0x0440_0000, 0, "{w:?}");
        }
    }
}

fn ow(ws: &[SimWrite]) -> Vec<(u16, u16, u32)> {
    ws.iter().map(|w| (w.off, w.width, w.value)).collect()
}

fn entry(r: &Report, at: Bdf) -> &DeviceEntry {
    r.entry(at).unwrap_or_else(|| panic!("no entry for {at}"))
}

fn line(r: &Report, at: Bdf) -> alloc::string::String {
    entry(r, at).to_string()
}

fn u16_at(raw: &[u8; 4096], off: usize) -> u16 {
    u16::from_le_bytes([raw[off], raw[off + 1]])
}

fn u32_at(raw: &[u8; 4096], off: usize) -> u32 {
    u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]])
}

fn flr_issued(s: &Sim, at: Bdf) -> bool {
    s.writes_to(at)
        .iter()
        .any(|w| w.off == 0x48 && w.value & 0x8000 != 0)
}

// ---- quiesce, FLR, proof, restore order ---------------------------------------------------

#[test]
fn flr_resets_proves_and_restores_in_linux_order() {
    let s = qemu_like();
    let d = bdf(1, 0, 0);
    s.fake.with(d, |x| {
        x.bar_mem64(0, 0x80_FEC0_0000, 0x4000);
    });
    let before = s.raw(d);
    let r = run_policy(&s, &auto());

    let e = entry(&r, d);
    assert_eq!(e.method(), Some(Method::Flr));
    match &e.outcome {
        Outcome::Reset {
            evidence, restore, ..
        } => {
            assert!(evidence.bars && evidence.command);
            assert_eq!(
                *restore,
                Restore::Restored {
                    source: Source::Snapshot,
                    writes: 10,
                    stuck: vec![]
                }
            );
        }
        o => panic!("{o:?}"),
    }
    assert!((100..200).contains(&e.ms), "{} ms", e.ms);
    let l = line(&r, d);
    assert!(l.starts_with("0000:01:00.0 1af4:1042 0100 -> flr, "), "{l}");
    assert!(
        l.ends_with(" ms, ok (bars restored from snapshot); proof: bars, command read 0"),
        "{l}"
    );

    // Every write to the function, in order, with widths.
    let ws = s.writes_to(d);
    assert_eq!(
        ow(&ws),
        [
            // Quiesce: COMMAND = INTx-disable, MSI-X enable off.
            (0x04, 2, 0x0400),
            (0x82, 2, 0x0003),
            // FLR.
            (0x48, 2, 0xA830),
            // PCIe control registers first (Linux pci_restore_pcie_state).
            (0x48, 2, 0x2830),
            (0x50, 2, 0x0040),
            (0x68, 2, 0x0010),
            (0x70, 2, 0x0002),
            // Header: dwords 15..10, then BARs 9..4, then 3..0 with COMMAND last.
            (0x3C, 4, 0x0000_000B),
            (0x20, 4, 0x0000_C001),
            (0x18, 4, 0xFEB0_0000),
            (0x14, 4, 0x0000_0080),
            (0x10, 4, 0xFEC0_000C),
            (0x04, 2, 0x0400),
        ]
    );
    // FLR timing: 100 ms between Initiate FLR and the first restore write.
    assert!(ws[3].t_us - ws[2].t_us >= 100_000);

    // Afterwards: configuration as before except COMMAND (quiesced) and MSI-X enable, and
    // the W1C bits (Status RMA, PME_Status) still latched.
    let after = s.raw(d);
    for off in 0..0x100 {
        let allowed = matches!(off, 0x04 | 0x05 | 0x83);
        if !allowed {
            assert_eq!(before[off], after[off], "byte {off:#x} changed");
        }
    }
    assert_eq!(u16_at(&after, 0x04), 0x0400);
    assert_eq!(u16_at(&after, 0x82) & 0x8000, 0);
    assert_eq!(after[0x07] & 0x20, 0x20);
    assert_eq!(u16_at(&after, 0x94) & 0x8000, 0x8000);

    // Bridges, host bridge and LPC untouched.
    for b in [bdf(0, 0, 0), bdf(0, 0x1c, 0), bdf(0, 0x1f, 0)] {
        assert!(s.writes_to(b).is_empty(), "{b} written");
    }
    assert_eq!(u16_at(&s.raw(bdf(0, 0x1c, 0)), 0x04), 0x0007);
    assert_eq!(
        r.quiesce,
        QuiesceStats {
            functions: 4,
            quiesced: 1,
            msi_disabled: 0,
            msix_disabled: 1,
            kept: 3,
            gone: 0
        }
    );
    assert_eq!(
        line(&r, bdf(0, 0x1c, 0)),
        "0000:00:1c.0 8086:0001 0604 -> none, 0 ms, bridge, forwarding kept"
    );
    assert_eq!(
        line(&r, bdf(0, 0, 0)),
        "0000:00:00.0 8086:29c0 0600 -> none, 0 ms, host bridge, untouched"
    );
    assert_eq!(
        line(&r, bdf(0, 0x1f, 0)),
        "0000:00:1f.0 8086:2918 0601 -> none, 0 ms, system function, decode kept"
    );
}

#[test]
fn quiesce_clears_msi_on_bridges_but_keeps_their_command() {
    let s = qemu_like();
    s.fake.with(bdf(0, 0x1c, 0), |x| {
        x.set8(0x41, 0xA0);
        sim::msi(x, 0xA0, 0);
    });
    let r = run_policy(&s, &Policy::default());
    assert_eq!(
        ow(&s.writes_to(bdf(0, 0x1c, 0))),
        [(0xA2, 2, 0x0000)],
        "only MSI enable cleared"
    );
    assert_eq!(r.quiesce.msi_disabled, 1);
}

#[test]
fn function_gone_is_reported_not_touched() {
    let s = qemu_like();
    let scan = pci::scan(&s, 0, 0);
    s.unplug(bdf(1, 0, 0));
    s.clear_writes();
    let clock = s.clock.clone();
    let mut plat = NoPlatform;
    let mut ctx = DriverCtx::new(&s, &*clock, &mut plat);
    let r = run(
        &mut ctx,
        &scan,
        &auto(),
        &mut DriverSet::new(),
        &NoSavedConfig,
    );
    assert!(s.writes_to(bdf(1, 0, 0)).is_empty());
    assert_eq!(r.quiesce.gone, 1);
    assert!(line(&r, bdf(1, 0, 0)).ends_with("error: reads all-ones, skipped"));
    assert!(!entry(&r, bdf(1, 0, 0)).is_ok());
}

// ---- method choice per policy ------------------------------------------------------------

#[test]
fn pm_without_effect_is_detected_and_sbr_follows() {
    let s = Sim::new();
    host_and_lpc(&s);
    s.bridge(bdf(0, 0x1c, 0), 1, 1);
    nic(&s, bdf(1, 0, 0), NIC, Behaviour::default());
    let r = run_policy(&s, &auto());
    let d = bdf(1, 0, 0);
    let e = entry(&r, d);
    assert_eq!(e.method(), Some(Method::Sbr));
    assert_eq!(e.attempts.len(), 1);
    assert_eq!(e.attempts[0].method, Method::Pm);
    assert_eq!(e.attempts[0].result, AttemptResult::NoEffect);
    assert!(e.attempts[0].ms >= 20);
    assert_eq!(
        e.skipped,
        [
            (Method::Preinit, "no driver"),
            (Method::Flr, "not FLR capable"),
            (Method::AfFlr, "no AF capability")
        ]
    );
    let l = line(&r, d);
    assert!(l.contains("-> sbr, "), "{l}");
    assert!(
        l.ends_with("ok (bars restored from snapshot); proof: bars, command read 0; pm: no effect"),
        "{l}"
    );

    // PM: D3hot then D0, 10 ms apart, PME_Status never written back.
    let pmw: Vec<_> = s
        .writes_to(d)
        .into_iter()
        .filter(|w| w.off == 0x94)
        .collect();
    assert_eq!(ow(&pmw), [(0x94, 2, 0x0003), (0x94, 2, 0x0000)]);
    assert!(pmw[1].t_us - pmw[0].t_us >= 10_000);
    // SBR: bit 6 held at least 2 ms; Discard Timer Status (bit 10) never written.
    let bc: Vec<_> = s
        .writes_to(bdf(0, 0x1c, 0))
        .into_iter()
        .filter(|w| w.off == 0x3E)
        .collect();
    assert_eq!(ow(&bc), [(0x3E, 2, 0x0050), (0x3E, 2, 0x0010)]);
    assert!(bc[1].t_us - bc[0].t_us >= 2_000);
    let rp = s.raw(bdf(0, 0x1c, 0));
    assert_eq!(u16_at(&rp, 0x3E), 0x0410, "W1C bit 10 still latched");
    assert_eq!(u16_at(&rp, 0x1E) & 0x2000, 0x2000);
    // First restore write at least 100 ms after de-assertion.
    let first_restore = s
        .writes_to(d)
        .into_iter()
        .find(|w| w.t_us > bc[1].t_us)
        .unwrap();
    assert!(first_restore.t_us - bc[1].t_us >= 100_000);
    // The function is back where it was, quiesced.
    let raw = s.raw(d);
    assert_eq!(u32_at(&raw, 0x18), 0xFEB0_0000);
    assert_eq!(u16_at(&raw, 0x04), 0x0400);
    assert_eq!(u16_at(&raw, 0xA2) & 1, 0, "MSI stays off");
}

#[test]
fn pm_with_effect_counts_as_reset() {
    let s = Sim::new();
    s.bridge(bdf(0, 0x1c, 0), 1, 1);
    nic(
        &s,
        bdf(1, 0, 0),
        NIC,
        Behaviour {
            pm_effect: true,
            ..Behaviour::default()
        },
    );
    let r = run_policy(&s, &auto());
    let e = entry(&r, bdf(1, 0, 0));
    assert_eq!(e.method(), Some(Method::Pm));
    assert!(e.attempts.is_empty());
    assert!(e.is_ok());
    assert!(s.writes_to(bdf(0, 0x1c, 0)).is_empty(), "no SBR needed");
}

#[test]
fn explicit_method_list_restricts_and_keeps_order() {
    // pm,sbr on an FLR-capable device: FLR never issued, PM proves nothing, SBR does.
    let s = qemu_like();
    let p = Policy::new(
        ResetPolicy::Methods(ResetMethods::SBR | ResetMethods::PM),
        true,
    );
    let r = run_policy(&s, &p);
    let d = bdf(1, 0, 0);
    assert!(!flr_issued(&s, d));
    let e = entry(&r, d);
    assert_eq!(e.method(), Some(Method::Sbr));
    assert_eq!(e.attempts[0].method, Method::Pm);
    assert!(
        r.mode_line()
            .starts_with("mode pm,sbr (reset_devices): methods pm,sbr")
    );

    // flr only, on a device without FLR: nothing applies, nothing written but quiesce.
    let s = Sim::new();
    s.bridge(bdf(0, 0x1c, 0), 1, 1);
    nic(&s, bdf(1, 0, 0), NIC, Behaviour::default());
    let r = run_policy(
        &s,
        &Policy::new(ResetPolicy::Methods(ResetMethods::FLR), true),
    );
    let e = entry(&r, bdf(1, 0, 0));
    assert_eq!(e.outcome, Outcome::Quiesced(Why::NoMethod));
    assert_eq!(
        line(&r, bdf(1, 0, 0)),
        "0000:01:00.0 8086:10d3 0200 -> none, 0 ms, quiesced, no reset method applies; flr: not FLR capable"
    );
    assert_eq!(
        ow(&s.writes()),
        [(0x04, 2, 0x0400), (0xA2, 2, 0x0000)],
        "quiesce only"
    );

    // afflr only: a conventional function with the AF capability.
    let s = Sim::new();
    let d = bdf(0, 5, 0);
    s.endpoint(
        d,
        (0x1234, 0x5678),
        (0x04, 0x01),
        Behaviour {
            af_effect: true,
            ..Behaviour::default()
        },
        |x| {
            sim::typical(x);
            sim::af(x, 0x98, 0);
        },
    );
    let r = run_policy(
        &s,
        &Policy::new(ResetPolicy::Methods(ResetMethods::AFFLR), true),
    );
    assert_eq!(entry(&r, d).method(), Some(Method::AfFlr));
    assert!(entry(&r, d).is_ok());
    assert!(
        ow(&s.writes_to(d)).contains(&(0x9C, 1, 0x01)),
        "8-bit AF_CTRL write"
    );
}

#[test]
fn mode_none_only_quiesces_and_runs_preinit() {
    let s = qemu_like();
    nic(&s, bdf(0, 3, 0), NIC, Behaviour::default());
    let drv = FakeDriver::new("virtio-blk", VBLK, Ok(true));
    let calls = drv.calls.clone();
    let mut set = DriverSet::new();
    set.register(Box::new(drv));
    let p = Policy::default();
    assert_eq!(p.mode, ResetPolicy::None);
    let r = run_with(&s, &p, &mut set, &NoSavedConfig);
    assert_eq!(*calls.borrow(), ["preinit 0000:01:00.0"]);
    assert_eq!(entry(&r, bdf(1, 0, 0)).method(), Some(Method::Preinit));
    assert_eq!(
        line(&r, bdf(0, 3, 0)),
        "0000:00:03.0 8086:10d3 0200 -> none, 0 ms, quiesced, no reset method applies; preinit: no driver"
    );
    // No hardware reset anywhere: no FLR, no PM, no bridge control.
    for w in s.writes() {
        assert!(!matches!(w.off, 0x48 | 0x94 | 0x3E), "{w:?}");
    }
    assert_eq!(
        r.mode_line(),
        "mode none (no reset_devices): quiesce and driver preinit only, no bus-level reset"
    );
    assert!(r.to_string().contains("quiesced 2 of 5 functions"));
}

#[test]
fn sbr_not_used_on_the_root_bus() {
    let s = Sim::new();
    nic(&s, bdf(0, 3, 0), NIC, Behaviour::default());
    let r = run_policy(&s, &auto());
    let e = entry(&r, bdf(0, 3, 0));
    assert_eq!(e.outcome, Outcome::Quiesced(Why::NoEffect));
    let l = line(&r, bdf(0, 3, 0));
    assert!(
        l.ends_with(
            "quiesced, no method proved a reset; preinit: no driver; flr: not FLR capable; afflr: no AF capability; pm: no effect; sbr: on a root bus"
        ),
        "{l}"
    );
}

// ---- preinit -------------------------------------------------------------------------------

#[test]
fn preinit_is_chosen_first_when_a_driver_matches() {
    let s = qemu_like();
    let drv = FakeDriver::new("virtio-blk", VBLK, Ok(true));
    let seen = drv.seen_command.clone();
    let mut set = DriverSet::new();
    set.register(Box::new(FakeDriver::new(
        "nvme",
        (0x1b36, 0x0010),
        Ok(true),
    )));
    set.register(Box::new(drv));
    let r = run_with(&s, &auto(), &mut set, &NoSavedConfig);
    let d = bdf(1, 0, 0);
    assert_eq!(
        line(&r, d),
        "0000:01:00.0 1af4:1042 0100 -> preinit, 0 ms, ok (virtio-blk: status reads 0)"
    );
    assert!(!flr_issued(&s, d));
    // Memory and I/O decode on, bus mastering off during preinit; quiesced again after.
    assert_eq!(seen.get(), 0x0403);
    assert_eq!(u16_at(&s.raw(d), 0x04), 0x0400);
    assert_eq!(
        ow(&s.writes_to(d)),
        [
            (0x04, 2, 0x0400),
            (0x82, 2, 0x0003),
            (0x04, 2, 0x0403),
            (0x04, 2, 0x0400)
        ]
    );
}

#[test]
fn preinit_unproven_or_failed_falls_back_to_flr() {
    for (res, want) in [
        (Ok(false), "preinit: unproven (status stuck at 0x0f)"),
        (
            Err(DriverError::Timeout {
                what: "status 0",
                waited_ms: 100,
            }),
            "preinit: failed (timeout after 100 ms waiting for status 0)",
        ),
        (
            Err(DriverError::NoMmio { bar: 4 }),
            "preinit: failed (BAR4 not mappable)",
        ),
    ] {
        let s = qemu_like();
        let mut set = DriverSet::new();
        set.register(Box::new(FakeDriver::new("virtio-blk", VBLK, res)));
        let r = run_with(&s, &auto(), &mut set, &NoSavedConfig);
        let e = entry(&r, bdf(1, 0, 0));
        assert_eq!(e.method(), Some(Method::Flr));
        assert!(e.is_ok());
        assert!(line(&r, bdf(1, 0, 0)).ends_with(want), "{}", e);
    }
}

#[test]
fn preinit_not_run_when_the_method_list_excludes_it() {
    let s = qemu_like();
    let drv = FakeDriver::new("virtio-blk", VBLK, Ok(true));
    let calls = drv.calls.clone();
    let mut set = DriverSet::new();
    set.register(Box::new(drv));
    let r = run_with(
        &s,
        &Policy::new(ResetPolicy::Methods(ResetMethods::FLR), true),
        &mut set,
        &NoSavedConfig,
    );
    assert!(calls.borrow().is_empty());
    assert_eq!(entry(&r, bdf(1, 0, 0)).method(), Some(Method::Flr));
}

#[test]
fn preinit_gets_the_cap_as_deadline() {
    let s = qemu_like();
    let mut drv = FakeDriver::new("virtio-blk", VBLK, Ok(true));
    drv.cost_us = 60_000_000; // would wait a minute
    let mut set = DriverSet::new();
    set.register(Box::new(drv));
    let mut p = auto();
    p.per_device_cap_ms = 300;
    let r = run_with(&s, &p, &mut set, &NoSavedConfig);
    assert!(entry(&r, bdf(1, 0, 0)).ms <= 301);
}

// ---- deny / allow --------------------------------------------------------------------------

#[test]
fn denied_device_changes_only_in_quiesce_bits() {
    for m in [
        DeviceMatch::Id {
            vendor: 0x1af4,
            device: 0x1042,
        },
        DeviceMatch::Class { class: 0x01 },
        DeviceMatch::ClassSub {
            class: 0x01,
            subclass: 0x00,
        },
    ] {
        let s = qemu_like();
        let d = bdf(1, 0, 0);
        let drv = FakeDriver::new("virtio-blk", VBLK, Ok(true));
        let calls = drv.calls.clone();
        let mut set = DriverSet::new();
        set.register(Box::new(drv));
        let mut p = auto();
        p.deny.push(m);
        let _ = pci::scan(&s, 0, 0);
        let before = s.raw(d);
        let r = run_with(&s, &p, &mut set, &NoSavedConfig);
        let after = s.raw(d);
        for off in 0..4096 {
            match off {
                0x04 => assert_eq!(after[off], 0x00),
                0x05 => assert_eq!(after[off], 0x04),
                0x83 => assert_eq!(after[off], before[off] & 0x7F),
                _ => assert_eq!(before[off], after[off], "{m}: byte {off:#x}"),
            }
        }
        assert!(calls.borrow().is_empty(), "denied: no preinit");
        assert_eq!(
            line(&r, d),
            "0000:01:00.0 1af4:1042 0100 -> none, 0 ms, denied: quiesced only"
        );
        let dev = pci::scan(&s, 0, 0).find(d).copied().unwrap();
        assert!(!p.may_use(&dev), "denied: never opened for use either");
    }
}

#[test]
fn allow_list_limits_resets_but_not_quiescing() {
    let s = qemu_like();
    s.bridge(bdf(0, 0x1d, 0), 2, 2);
    nic(&s, bdf(2, 0, 0), NIC, Behaviour::default());
    let mut p = auto();
    p.allow.push(DeviceMatch::ClassSub {
        class: 0x02,
        subclass: 0x00,
    });
    let r = run_policy(&s, &p);
    let v = bdf(1, 0, 0);
    assert_eq!(
        line(&r, v),
        "0000:01:00.0 1af4:1042 0100 -> none, 0 ms, not in allow list: quiesced only"
    );
    assert_eq!(ow(&s.writes_to(v)), [(0x04, 2, 0x0400), (0x82, 2, 0x0003)]);
    assert_eq!(entry(&r, bdf(2, 0, 0)).method(), Some(Method::Sbr));
}

// ---- secondary bus reset -----------------------------------------------------------------

fn two_functions_below_port(deny_second: bool) -> (Sim, Report) {
    let s = Sim::new();
    s.bridge(bdf(0, 0x1c, 0), 1, 1);
    nic(&s, bdf(1, 0, 0), NIC, Behaviour::default());
    nic(&s, bdf(1, 0, 1), (0x8086, 0x1234), Behaviour::default());
    let mut p = auto();
    if deny_second {
        p.deny.push(DeviceMatch::Id {
            vendor: 0x8086,
            device: 0x1234,
        });
    }
    let r = run_policy(&s, &p);
    (s, r)
}

#[test]
fn sbr_refused_when_a_function_below_is_denied() {
    let (s, r) = two_functions_below_port(true);
    let e = entry(&r, bdf(1, 0, 0));
    assert_eq!(e.outcome, Outcome::Quiesced(Why::NoEffect));
    assert_eq!(
        e.attempts[1].result,
        AttemptResult::Refused("0000:01:00.1 under 0000:00:1c.0 may not be reset".to_string())
    );
    assert!(line(&r, bdf(1, 0, 0)).contains(
        "; pm: no effect; sbr: refused (0000:01:00.1 under 0000:00:1c.0 may not be reset)"
    ));
    assert!(s.writes_to(bdf(0, 0x1c, 0)).is_empty(), "bridge untouched");
    assert_eq!(
        entry(&r, bdf(1, 0, 1)).outcome,
        Outcome::Quiesced(Why::Denied)
    );
}

#[test]
fn sbr_resets_and_restores_every_function_below() {
    let (s, r) = two_functions_below_port(false);
    assert_eq!(entry(&r, bdf(1, 0, 0)).method(), Some(Method::Sbr));
    let sib = bdf(1, 0, 1);
    assert_eq!(
        line(&r, sib),
        "0000:01:00.1 8086:1234 0200 -> sbr, 0 ms, ok (bus reset at 0000:00:1c.0; bars restored from snapshot); proof: bars, command read 0"
    );
    // The sibling's own methods never ran (no PM writes to it).
    assert!(s.writes_to(sib).iter().all(|w| w.off != 0x94));
    assert_eq!(u32_at(&s.raw(sib), 0x18), 0xFEB0_0000);
    assert_eq!(u16_at(&s.raw(sib), 0x04), 0x0400);
}

#[test]
fn sbr_restores_bridges_below_top_down_in_type1_order() {
    let s = Sim::new();
    s.bridge(bdf(0, 0x1c, 0), 1, 2);
    nic(&s, bdf(1, 0, 0), NIC, Behaviour::default());
    let br = bdf(1, 1, 0);
    s.bridge(br, 2, 2);
    let ahci = bdf(2, 1, 0);
    s.endpoint(
        ahci,
        (0x8086, 0x2922),
        (0x01, 0x06),
        Behaviour::default(),
        |x| {
            x.bar_io(4, 0xD000, 0x20)
                .bar_mem32(5, 0xFE80_0000, 0x1000)
                .set16(0x04, 0x0007);
        },
    );
    let r = run_policy(&s, &auto());
    assert_eq!(entry(&r, bdf(1, 0, 0)).method(), Some(Method::Sbr));
    match &entry(&r, br).outcome {
        Outcome::ResetBy {
            bridge,
            evidence: Some(e),
            restore,
        } => {
            assert_eq!(*bridge, bdf(0, 0x1c, 0));
            assert!(e.bus && e.command);
            assert!(restore.is_complete());
        }
        o => panic!("{o:?}"),
    }
    assert!(entry(&r, ahci).is_ok());

    // Type 1: 15..12, 11..9 (forced), 8..0, COMMAND last; I/O base/limit 16-bit.
    let bw = s.writes_to(br);
    let restore: Vec<_> = bw.iter().skip_while(|w| w.off != 0x3C).copied().collect();
    assert_eq!(
        ow(&restore),
        [
            (0x3C, 4, 0x0010_000B),
            (0x2C, 4, 0x0000_0080),
            (0x28, 4, 0x0000_0080),
            (0x24, 4, 0xFFF1_FC01),
            (0x20, 4, 0xFE90_FE80),
            (0x1C, 2, 0x1010),
            (0x18, 4, 0x0002_0201),
            (0x04, 2, 0x0007),
        ]
    );
    // PCIe registers of the bridge (a root-port-type cap: + slot and root control) before.
    let pcie: Vec<_> = bw
        .iter()
        .take_while(|w| w.off != 0x3C)
        .map(|w| w.off)
        .collect();
    assert_eq!(pcie, [0x48, 0x50, 0x68, 0x70]);
    // The AHCI behind it is written only after the bridge has its bus numbers back.
    let bus_back = restore[6].t_us;
    let aw = s.writes_to(ahci);
    assert!(aw[1..].iter().all(|w| w.t_us > bus_back));
    assert_eq!(
        ow(&aw),
        [
            (0x04, 2, 0x0400), // quiesce
            (0x24, 4, 0xFE80_0000),
            (0x20, 4, 0x0000_D001),
            (0x04, 2, 0x0400),
        ]
    );
    // Secondary Status W1C bit of the bridge below survived.
    assert_eq!(s.raw(br)[0x1F] & 0x20, 0x20);
}

// ---- time: cap, budget, dead and stuck devices --------------------------------------------

fn three_ports(first: Behaviour) -> Sim {
    let s = Sim::new();
    for (i, dev) in [0x1cu8, 0x1d, 0x1e].into_iter().enumerate() {
        let bus = i as u8 + 1;
        s.bridge(bdf(0, dev, 0), bus, bus);
        vblk(
            &s,
            bdf(bus, 0, 0),
            true,
            if i == 0 { first } else { flr_dev() },
        );
    }
    s
}

fn dead() -> Behaviour {
    Behaviour {
        flr_effect: true,
        never_ready: true,
        ..Behaviour::default()
    }
}

#[test]
fn dead_device_costs_at_most_its_cap() {
    let s = three_ports(dead());
    let mut p = auto();
    p.per_device_cap_ms = 500;
    let r = run_policy(&s, &p);
    let e = entry(&r, bdf(1, 0, 0));
    assert_eq!(
        e.outcome,
        Outcome::NotReady {
            method: Method::Flr,
            how: NotReady::Silent
        }
    );
    assert!((499..=501).contains(&e.ms), "{} ms", e.ms);
    assert!(line(&r, bdf(1, 0, 0)).contains("error: not ready after flr (reads ffff), left alone"));
    // Nothing else tried on it, and the others still reset.
    assert!(s.writes_to(bdf(0, 0x1c, 0)).is_empty());
    for d in [bdf(2, 0, 0), bdf(3, 0, 0)] {
        assert!(entry(&r, d).is_ok());
        assert_eq!(entry(&r, d).method(), Some(Method::Flr));
    }
}

#[test]
fn budget_exhaustion_leaves_the_rest_quiesced() {
    let s = three_ports(dead());
    let mut p = auto();
    p.per_device_cap_ms = 2_000;
    p.budget_ms = 500;
    let r = run_policy(&s, &p);
    assert!(entry(&r, bdf(1, 0, 0)).ms <= 501);
    for d in [bdf(2, 0, 0), bdf(3, 0, 0)] {
        assert_eq!(entry(&r, d).outcome, Outcome::Quiesced(Why::Budget));
        assert!(!flr_issued(&s, d));
        assert_eq!(ow(&s.writes_to(d)), [(0x04, 2, 0x0400), (0x82, 2, 0x0003)]);
        assert_eq!(
            line(&r, d),
            format!("{d} 1af4:1042 0100 -> none, 0 ms, quiesced only: reset budget exhausted")
        );
    }
    assert_eq!(r.budget_skipped, 2);
    let text = r.to_string();
    assert!(
        text.contains("budget of 500 ms exhausted: 2 functions only quiesced"),
        "{text}"
    );
    assert!(r.elapsed_ms <= 502);
}

#[test]
fn device_answering_rrs_forever_is_bounded() {
    let s = three_ports(Behaviour {
        rrs: true,
        ..dead()
    });
    let mut p = auto();
    p.per_device_cap_ms = 300;
    let r = run_policy(&s, &p);
    let e = entry(&r, bdf(1, 0, 0));
    assert_eq!(
        e.outcome,
        Outcome::NotReady {
            method: Method::Flr,
            how: NotReady::Retry
        }
    );
    assert!(e.ms <= 301);
    assert!(line(&r, bdf(1, 0, 0)).contains("(answers RRS)"));
}

#[test]
fn slow_device_is_waited_for() {
    let s = three_ports(Behaviour {
        ready_after_us: 300_000,
        ..flr_dev()
    });
    let r = run_policy(&s, &auto());
    let e = entry(&r, bdf(1, 0, 0));
    assert!(e.is_ok());
    assert!((300..400).contains(&e.ms), "{} ms", e.ms);
}

#[test]
fn stuck_transactions_pending_waits_then_resets_anyway() {
    let stuck = |s: &Sim| {
        s.fake.with(bdf(1, 0, 0), |x| {
            x.set16(0x4A, 0x0020);
        })
    };
    let s = three_ports(flr_dev());
    stuck(&s);
    let r = run_policy(&s, &auto());
    let e = entry(&r, bdf(1, 0, 0));
    assert_eq!(e.method(), Some(Method::Flr));
    assert!(e.is_ok());
    assert!(e.ms >= 800, "{} ms", e.ms);
    assert!(line(&r, bdf(1, 0, 0)).ends_with("; flr: transactions still pending, reset anyway"));

    // Under a 300 ms cap the pending wait shrinks so the FLR still fits.
    let s = three_ports(flr_dev());
    stuck(&s);
    let mut p = auto();
    p.per_device_cap_ms = 300;
    let r = run_policy(&s, &p);
    let e = entry(&r, bdf(1, 0, 0));
    assert!(e.is_ok());
    assert!(e.ms <= 301, "{} ms", e.ms);
}

#[test]
fn too_little_time_skips_long_methods() {
    let s = three_ports(flr_dev());
    let mut p = auto();
    p.per_device_cap_ms = 50;
    let r = run_policy(&s, &p);
    let e = entry(&r, bdf(1, 0, 0));
    // FLR needs 100 ms; PM (20 ms) fits but proves nothing; SBR needs 102 ms.
    assert_eq!(e.outcome, Outcome::Quiesced(Why::NoEffect));
    let tried: Vec<_> = e
        .attempts
        .iter()
        .map(|a| (a.method, a.result.clone()))
        .collect();
    assert_eq!(
        tried,
        [
            (Method::Flr, AttemptResult::NoTime),
            (Method::Pm, AttemptResult::NoEffect),
            (Method::Sbr, AttemptResult::NoTime),
        ]
    );
    assert!(!flr_issued(&s, bdf(1, 0, 0)));
}

// ---- saved configuration sources ---------------------------------------------------------

struct Blob(Bdf, [u8; 64]);

impl SavedConfig for Blob {
    fn header(&self, at: Bdf, vendor: u16, device: u16, class: u32) -> Option<([u8; 64], Source)> {
        assert_eq!((vendor, device, class), (0x1af4, 0x1042, 0x010000));
        (at == self.0).then_some((self.1, Source::Blob))
    }
}

fn blob_from(s: &Sim, at: Bdf, f: impl FnOnce(&mut [u8; 64])) -> Blob {
    let raw = s.raw(at);
    let mut h = [0u8; 64];
    h.copy_from_slice(&raw[..64]);
    f(&mut h);
    Blob(at, h)
}

#[test]
fn blob_header_is_preferred_when_usable() {
    let s = qemu_like();
    let d = bdf(1, 0, 0);
    let blob = blob_from(&s, d, |h| {
        h[0x18..0x1C].copy_from_slice(&0xFEA0_0000u32.to_le_bytes())
    });
    let r = run_with(&s, &auto(), &mut DriverSet::new(), &blob);
    assert!(line(&r, d).contains("ok (bars restored from blob)"));
    assert_eq!(u32_at(&s.raw(d), 0x18), 0xFEA0_0000);
    assert_eq!(u16_at(&s.raw(d), 0x04), 0x0400, "blob COMMAND not replayed");
}

#[test]
fn unusable_blob_falls_back_to_snapshot() {
    for f in [
        // No BARs.
        (|h: &mut [u8; 64]| h[0x10..0x28].fill(0)) as fn(&mut [u8; 64]),
        // Another device's header.
        |h: &mut [u8; 64]| h[2] = 0x99,
    ] {
        let s = qemu_like();
        let d = bdf(1, 0, 0);
        let blob = blob_from(&s, d, f);
        let r = run_with(&s, &auto(), &mut DriverSet::new(), &blob);
        assert!(line(&r, d).contains("ok (bars restored from snapshot)"));
    }
}

#[test]
fn no_usable_bars_anywhere_reports_no_config() {
    let s = qemu_like();
    let d = bdf(1, 0, 0);
    s.fake.with(d, |x| {
        for off in (0x10..0x28).step_by(4) {
            let v = u32_at(&x.data, off) & 0xF;
            x.set32(off as u16, if v & 1 == 1 { 1 } else { v });
        }
    });
    let r = run_policy(&s, &auto());
    let e = entry(&r, d);
    match &e.outcome {
        Outcome::Reset {
            restore, evidence, ..
        } => {
            assert_eq!(*restore, Restore::NoConfig);
            assert!(evidence.command && !evidence.bars);
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(r.needs_bar_assignment, [d]);
    assert!(line(&r, d).contains("-> flr, "));
    assert!(
        line(&r, d)
            .contains("reset (no config to restore: BARs need assignment from the parent window)")
    );
    assert!(r.to_string().contains(
        "0000:01:00.0: BARs unassigned after reset; to be assigned from the parent window"
    ));
    // Nothing written after the FLR.
    let ws = s.writes_to(d);
    assert_eq!(ws.last().map(|w| (w.off, w.value)), Some((0x48, 0xA830)));
}

#[test]
fn bar_that_reads_back_differently_is_retried_ten_times() {
    let s = qemu_like();
    let d = bdf(1, 0, 0);
    // 0xFEA0_0800 is not 4 KiB aligned: the BAR reads back 0xFEA0_0000.
    let blob = blob_from(&s, d, |h| {
        h[0x18..0x1C].copy_from_slice(&0xFEA0_0800u32.to_le_bytes())
    });
    let r = run_with(&s, &auto(), &mut DriverSet::new(), &blob);
    let n = s
        .writes_to(d)
        .iter()
        .filter(|w| w.off == 0x18 && w.value == 0xFEA0_0800)
        .count();
    assert_eq!(n, 11, "1 write + 10 retries");
    match &entry(&r, d).outcome {
        Outcome::Reset {
            restore: Restore::Restored { stuck, .. },
            ..
        } => assert_eq!(
            *stuck,
            [Stuck {
                off: 0x18,
                want: 0xFEA0_0800,
                got: 0xFEA0_0000
            }]
        ),
        o => panic!("{o:?}"),
    }
    assert!(
        line(&r, d)
            .contains("reset (bars restored from blob, 0x18 reads 0xfea00000 not 0xfea00800)")
    );
    assert!(!entry(&r, d).is_ok());
}

// ---- restore plan (pure) -----------------------------------------------------------------

fn hdr(kind: u8, fill: u32) -> [u8; 64] {
    let mut h = [0u8; 64];
    for i in 0..16 {
        h[4 * i..4 * i + 4].copy_from_slice(&(fill.wrapping_add(i as u32)).to_le_bytes());
    }
    h[0..4].copy_from_slice(&0x1042_1af4u32.to_le_bytes());
    h[0x0E] = kind;
    h
}

/// The one planner over two saved headers.
fn plan(
    saved: &[u8; 64],
    current: &[u8; 64],
    command: Option<u16>,
) -> Result<Vec<RestoreWrite>, PlanError> {
    plan_restore(&SavedView::new(saved), &SavedView::new(current), command)
}

fn offs(p: &[RestoreWrite]) -> Vec<(u16, u8)> {
    p.iter().map(|w| (w.off, w.width)).collect()
}

#[test]
fn plan_type0_follows_linux_order() {
    let saved = hdr(0, 0x1000);
    let mut cur = hdr(0, 0x2000);
    cur[0x0E] = 0;
    let p = plan(&saved, &cur, Some(0x0400)).unwrap();
    assert_eq!(
        offs(&p),
        [
            (0x3C, 4),
            (0x38, 4),
            (0x34, 4),
            (0x30, 4),
            (0x2C, 4),
            (0x28, 4),
            (0x24, 4),
            (0x20, 4),
            (0x1C, 4),
            (0x18, 4),
            (0x14, 4),
            (0x10, 4),
            (0x0C, 2),
            (0x04, 2),
        ]
    );
    assert!(p.iter().all(|w| w.retries
        == if (0x10..=0x24).contains(&w.off) {
            10
        } else {
            0
        }));
    assert_eq!(p.last().unwrap().value, 0x0400);
    // Nothing differs: nothing written.
    assert!(plan(&saved, &saved, None).unwrap().is_empty());
}

#[test]
fn plan_type1_forces_prefetch_window_and_masks_volatile_bits() {
    let mut saved = hdr(1, 0x1000);
    // Bridge Control with SBR and Discard Timer Status set; Secondary Status bits set.
    saved[0x3E..0x40].copy_from_slice(&0x0450u16.to_le_bytes());
    saved[0x1E..0x20].copy_from_slice(&0xF900u16.to_le_bytes());
    // BIST start.
    saved[0x0F] = 0x40;
    let p = plan(&saved, &saved, None).unwrap();
    assert_eq!(offs(&p), [(0x2C, 4), (0x28, 4), (0x24, 4)], "forced only");
    let cur = hdr(1, 0x3000);
    let p = plan(&saved, &cur, None).unwrap();
    assert_eq!(
        offs(&p),
        [
            (0x3C, 4),
            (0x38, 4),
            (0x34, 4),
            (0x30, 4),
            (0x2C, 4),
            (0x28, 4),
            (0x24, 4),
            (0x20, 4),
            (0x1C, 2),
            (0x18, 4),
            (0x14, 4),
            (0x10, 4),
            (0x0C, 2),
            (0x04, 2),
        ]
    );
    assert_eq!(
        p[0].value >> 16,
        0x0010,
        "bridge control without bits 6, 10"
    );
    assert_eq!(p[8].value, 0x1000 + 7, "I/O base/limit only");
    assert_eq!(
        (p[12].off, p[12].width, p[12].value),
        (0x0C, 2, 0x1003),
        "cache line and latency only: no BIST start, no header type"
    );
    assert!(p.iter().all(|w| w.retries == 0));
}

#[test]
fn plan_refuses_other_devices_and_header_types() {
    let saved = hdr(0, 0);
    let mut other = saved;
    other[2] = 0x43;
    assert_eq!(plan(&saved, &other, None), Err(PlanError::IdMismatch));
    let mut bridge = saved;
    bridge[0x0E] = 0x81;
    assert_eq!(plan(&saved, &bridge, None), Err(PlanError::TypeMismatch));
    let cb = {
        let mut h = saved;
        h[0x0E] = 2;
        h
    };
    assert_eq!(plan(&cb, &cb, None), Err(PlanError::Unsupported(2)));
}

// ---- registry ----------------------------------------------------------------------------

#[test]
fn driver_set_matches_in_registration_order() {
    let s = qemu_like();
    nic(&s, bdf(0, 3, 0), NIC, Behaviour::default());
    let scan = pci::scan(&s, 0, 0);
    let a = FakeDriver::new("virtio-blk", VBLK, Ok(true));
    let b = FakeDriver::new("e1000e", NIC, Ok(true));
    let also_nic = FakeDriver::new("e1000e-too", NIC, Ok(true));
    let mut set = DriverSet::new();
    let ida = set.register(Box::new(a));
    let idb = set.register(Box::new(b));
    set.register(Box::new(also_nic));
    assert_eq!(set.len(), 3);
    assert!(!set.is_empty());
    let mut plat = NoPlatform;
    let ctx = DriverCtx::new(&s, &*s.clock, &mut plat);
    assert_eq!(ctx.time_left_us(), u64::MAX);
    let v = *scan.find(bdf(1, 0, 0)).unwrap();
    let n = *scan.find(bdf(0, 3, 0)).unwrap();
    let host = *scan.find(bdf(0, 0, 0)).unwrap();
    assert_eq!(set.find(&v), Some(ida));
    assert_eq!(set.find(&n), Some(idb), "the first registration wins");
    assert_eq!(set.find(&host), None);
    assert_eq!(set.name(idb), Some("e1000e"));
    assert_eq!(set.get_mut(ida).map(|d| d.name()), Some("virtio-blk"));
    assert!(format!("{set:?}").contains("virtio-blk"));
}

#[test]
fn policy_defaults_and_display() {
    assert_eq!(Policy::from_reset_devices(true).mode, ResetPolicy::Auto);
    assert_eq!(Policy::default().mode, ResetPolicy::None);
    // The vocabulary's own Display and `methods()` are tested where it lives
    // (boot::cmdline::device); here, the report line built from them.
    let s = qemu_like();
    let r = run_policy(&s, &auto());
    let lines = r.lines();
    assert_eq!(
        lines[0],
        "mode auto (reset_devices): methods preinit,flr,afflr,pm,sbr, budget 10000 ms, cap 2500 ms per device"
    );
    assert_eq!(lines.len(), 2 + 4 + 1);
    assert!(lines.last().unwrap().starts_with("done in "));
}

#[test]
fn policy_from_the_command_line_uses_its_types_as_is() {
    use rkdump_boot::cmdline::Options;
    let o = Options::parse(
        "reset_devices rkdump.reset=flr,sbr rkdump.deny=8086:100e,class:0c03 \
         rkdump.allow=class:01 rkdump.budget_ms=1234",
    );
    let p = Policy::from_options(&o);
    assert_eq!(
        p.mode,
        ResetPolicy::Methods(ResetMethods::FLR | ResetMethods::SBR)
    );
    assert!(p.reset_devices);
    assert_eq!(p.deny.as_slice(), o.deny.as_slice());
    assert_eq!(p.allow, [DeviceMatch::Class { class: 1 }]);
    assert_eq!(p.budget_ms, 1234);
    assert_eq!(p.per_device_cap_ms, DEFAULT_PER_DEVICE_CAP_MS);
    // Defaults follow reset_devices; nopreinit withdraws preinit from whatever mode results.
    assert_eq!(
        Policy::from_options(&Options::parse("")).mode,
        ResetPolicy::None
    );
    let p = Policy::from_options(&Options::parse("reset_devices rkdump.nopreinit"));
    assert_eq!(
        p.mode,
        ResetPolicy::Methods(ResetMethods::all() - ResetMethods::PREINIT)
    );
    let p = Policy::from_options(&Options::parse("rkdump.nopreinit"));
    assert_eq!(p.mode, ResetPolicy::Methods(ResetMethods::empty()));
}

#[test]
fn the_blob_is_a_saved_config_source_for_matching_functions_only() {
    use crate::blob::{Blob, BlobWriter};
    let mut cfg = [0u8; 64];
    cfg[..4].copy_from_slice(&0x1042_1af4u32.to_le_bytes());
    cfg[0x09..0x0C].copy_from_slice(&[0x00, 0x80, 0x01]);
    cfg[0x10..0x14].copy_from_slice(&0xfebc_1000u32.to_le_bytes());
    let mut w = BlobWriter::new("6.8.0", [0; 16], 0);
    w.add(bdf(0, 4, 0), &cfg).unwrap();
    let bytes = w.finish();
    let view = Blob::parse(&bytes).unwrap();
    let src: &dyn SavedConfig = &view;
    assert_eq!(
        src.header(bdf(0, 4, 0), 0x1af4, 0x1042, 0x01_80_00),
        Some((cfg, Source::Blob))
    );
    assert_eq!(src.header(bdf(0, 4, 0), 0x1af4, 0x1042, 0x01_80_01), None);
    assert_eq!(src.header(bdf(0, 4, 0), 0x1af4, 0x1001, 0x01_80_00), None);
    assert_eq!(src.header(bdf(0, 5, 0), 0x1af4, 0x1042, 0x01_80_00), None);
}
