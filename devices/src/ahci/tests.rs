//! AHCI host tests: FIS/PRDT/header/IDENTIFY encoders on byte buffers, then the whole driver
//! against the simulated HBA of [`super::model`].

use alloc::vec::Vec;

use super::model::*;
use super::*;
use crate::block::testkit::{Arena, FakeClock, pattern};

// ---- pure logic -----------------------------------------------------------------------------

#[test]
fn h2d_fis_layouts() {
    let w = H2d::dma_ext(true, 0x1234_5678_9ABC, 65536).encode();
    assert_eq!(&w[..4], &[0x27, 0x80, ATA_WRITE_DMA_EXT, 0]);
    assert_eq!(&w[4..8], &[0xBC, 0x9A, 0x78, 0x40]); // LBA 23:0, device LBA bit
    assert_eq!(&w[8..12], &[0x56, 0x34, 0x12, 0]); // LBA 47:24, features 15:8
    assert_eq!(&w[12..14], &[0, 0], "65536 sectors encode as 0");
    assert_eq!(&w[14..], &[0; 6]);

    let q = H2d::fpdma(false, 8, 256, 17).encode();
    assert_eq!(
        (q[2], q[3], q[11]),
        (ATA_READ_FPDMA, 0x00, 0x01),
        "count in features"
    );
    assert_eq!((q[12], q[13], q[7]), (17 << 3, 0, 0x40), "tag in count 7:3");

    let id = H2d::identify().encode();
    assert_eq!((id[0], id[1], id[2], id[7]), (0x27, 0x80, ATA_IDENTIFY, 0));
    assert_eq!(H2d::flush(true).encode()[2], ATA_FLUSH_EXT);
    assert_eq!(H2d::flush(false).encode()[2], ATA_FLUSH);
}

fn prds(t: &[u8], n: usize) -> Vec<(u64, u32)> {
    t.chunks_exact(16)
        .take(n)
        .map(|e| {
            let addr = u64::from_le_bytes(e[0..8].try_into().unwrap());
            (addr, u32::from_le_bytes(e[12..16].try_into().unwrap()))
        })
        .collect()
}

#[test]
fn prdt_splits_at_4_mib_with_odd_dbc() {
    let mut t = [0xEEu8; 16 * PRDS_PER_CMD];
    assert_eq!(build_prdt(0x1000_0002, 9 << 20, &mut t), Ok(3));
    assert_eq!(
        prds(&t, 3),
        [
            (0x1000_0002, (4 << 20) - 1),
            (0x1040_0002, (4 << 20) - 1),
            (0x1080_0002, (1 << 20) - 1)
        ]
    );
    assert!(
        prds(&t, 3)
            .iter()
            .all(|&(_, dbc)| dbc & 1 == 1 && dbc >> 31 == 0)
    );
    assert_eq!(&t[8..12], &[0; 4], "reserved dword cleared");
    assert_eq!(build_prdt(0x2000, 512, &mut t), Ok(1));
    assert_eq!(prds(&t, 1), [(0x2000, 511)]);
}

#[test]
fn prdt_refuses_bad_buffers() {
    let mut t = [0u8; 16 * PRDS_PER_CMD];
    assert_eq!(build_prdt(0x1001, 512, &mut t), Err(PrdtError::Misaligned));
    assert_eq!(build_prdt(0x1000, 511, &mut t), Err(PrdtError::Misaligned));
    assert_eq!(build_prdt(0x1000, 0, &mut t), Err(PrdtError::Empty));
    assert_eq!(
        build_prdt(0, (32 << 20) + 2, &mut t),
        Err(PrdtError::TooLong)
    );
    assert_eq!(
        build_prdt(u64::MAX - 1, 4, &mut t),
        Err(PrdtError::Overflow)
    );
}

#[test]
fn command_header_layout() {
    let h = CmdHeader::new(5, true, 3, 0x1_2345_6780).encode();
    assert_eq!(&h[0..4], &[0x45, 0x00, 0x03, 0x00]);
    assert_eq!(&h[4..8], &[0; 4], "PRDBC starts at zero");
    assert_eq!(&h[8..16], &0x1_2345_6780u64.to_le_bytes());
    assert_eq!(&h[16..], &[0; 16]);
}

#[test]
fn identify_parse() {
    let id = DiskId::parse(&identify_data(1 << 33, true, 512)).unwrap();
    assert_eq!(
        (id.model.as_str(), id.serial.as_str(), id.firmware.as_str()),
        ("QEMU HARDDISK", "QM00001", "2.5+")
    );
    assert_eq!(
        (id.sectors, id.sector_size, id.ncq_depth, id.flush_ext),
        (1 << 33, 512, 32, true)
    );
    let k = DiskId::parse(&identify_data(1000, false, 4096)).unwrap();
    assert_eq!((k.sector_size, k.ncq_depth), (4096, 0));
}

#[test]
fn identify_refusals() {
    let mut atapi = identify_data(1000, true, 512);
    atapi[1] = 0x85;
    assert_eq!(
        DiskId::parse(&atapi),
        Err(AhciError::BadIdentify {
            what: "checksum mismatch"
        })
    );
    atapi[510] = 0; // no checksum signature: checked no further
    assert_eq!(
        DiskId::parse(&atapi),
        Err(AhciError::BadIdentify {
            what: "not an ATA device"
        })
    );
    let mut lba28 = identify_data(1000, true, 512);
    lba28[173] = 0x20; // word 86 bit 10: 48-bit not enabled
    lba28[510] = 0;
    assert!(matches!(
        DiskId::parse(&lba28),
        Err(AhciError::Unsupported { .. })
    ));
    assert!(matches!(
        DiskId::parse(&identify_data(1000, true, 520)),
        Err(AhciError::Unsupported {
            what: "logical sector size",
            ..
        })
    ));
    assert!(matches!(
        DiskId::parse(&[0u8; 512]),
        Err(AhciError::Unsupported { .. })
    ));
    assert!(DiskId::parse(&[0u8; 100]).is_err());
}

/// Found by `cargo xtask fuzz` (ahci_identify): words 117-118 claiming 0x8000_0800 words
/// overflowed the byte count, which wrapped to 4096 in release builds and was accepted.
#[test]
fn identify_refuses_a_sector_size_beyond_u32() {
    let mut b = identify_data(1000, false, 4096);
    b[2 * 117..2 * 117 + 2].copy_from_slice(&0x0800u16.to_le_bytes());
    b[2 * 118..2 * 118 + 2].copy_from_slice(&0x8000u16.to_le_bytes());
    b[510] = 0; // no checksum signature
    assert_eq!(
        DiskId::parse(&b),
        Err(AhciError::Unsupported {
            what: "logical sector size",
            value: 0x1_0000_1000,
        })
    );
}

#[test]
fn errors_map_and_print() {
    let e = AhciError::DeviceError {
        port: 2,
        command: ATA_WRITE_FPDMA,
        tfd: 0x0441,
        is: 1 << 30,
    };
    assert_eq!(
        BlockError::from(e),
        BlockError::DeviceError { status: 0x441 }
    );
    let s = alloc::format!("{e}");
    assert!(
        s.contains("port 2") && s.contains("status 0x41 error 0x04"),
        "{s}"
    );
    let t = AhciError::Timeout {
        what: "GHC.HR=0",
        port: None,
        waited_us: 1_000_000,
    };
    assert_eq!(
        BlockError::from(t),
        BlockError::Timeout { what: "GHC.HR=0" }
    );
}

// ---- driver against the model ---------------------------------------------------------------

fn setup() -> (Arena, FakeClock) {
    (Arena::new(32 << 20), FakeClock::new(100))
}

#[test]
fn hba_reset_sets_ae_stops_everything_and_restores_cap() {
    let (arena, clock) = setup();
    let cap = (1 << 31) | (1 << 30) | (31 << 8) | 1;
    let fake = FakeAhci::new(&arena, &[SIG_ATA, 0]).with(|h| {
        h.ports[0].cmd = ST | CR | FRE | FR;
        h.ghc = (1 << 31) | 2; // interrupts on
        h.hr_loses_cap = Some((cap, 0b11));
    });
    let r = Ahci::hba_reset(&fake, &clock).unwrap();
    assert_eq!((r.ports_running, r.pi, r.cap), (0b01, 0b11, cap));
    assert!(r.hba_reset_us.is_some() && r.cap_restored);
    let h = fake.0.borrow();
    assert_eq!(h.ghc, 1 << 31, "AE only");
    assert_eq!((h.cap, h.pi), (cap, 0b11));
    assert_eq!(h.ports[0].cmd & (ST | CR | FRE | FR), 0);
    assert!(alloc::format!("{r}").contains("CAP/PI restored"));
}

#[test]
fn hba_reset_wait_is_bounded() {
    let (arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| h.hr_reads = u32::MAX);
    match Ahci::hba_reset(&fake, &clock) {
        Err(AhciError::Timeout {
            what: "GHC.HR=0",
            waited_us,
            ..
        }) => {
            assert!((1_000_000..1_100_000).contains(&waited_us));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn preinit_proof_reads_back_a_port_register_the_reset_cleared() {
    let (arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[0, SIG_ATA]).with(|h| h.pi = 0b10);
    let r = Ahci::preinit(&fake, &clock).unwrap();
    let probe = HrProbe {
        port: 1,
        set: PROBE_IE,
        after: 0,
    };
    assert_eq!(r.hr_probe, Some(probe), "lowest implemented port, 0xf -> 0");
    let ghc = fake.read32(GHC);
    let p = driver::proof(&r, ghc);
    assert!(p.proven, "{}", p.detail);
    assert!(p.detail.contains("GHC.HR cleared after "), "{}", p.detail);
    assert!(p.detail.contains("port 1 PxIE 0xf -> 0x0"), "{}", p.detail);
}

#[test]
fn preinit_proof_fails_on_an_hba_that_ignores_hr() {
    let (arena, clock) = setup();
    // HR reads clear at once but nothing was reset: the old proof (GHC == AE) passed here.
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| h.hr_ignored = true);
    let r = Ahci::preinit(&fake, &clock).unwrap();
    assert_eq!(fake.read32(GHC), Ghc::AE.bits(), "GHC alone looks reset");
    let p = driver::proof(&r, fake.read32(GHC));
    assert!(!p.proven, "{}", p.detail);
    assert!(p.detail.contains("PxIE 0xf -> 0xf"), "{}", p.detail);
    assert!(p.detail.contains("did not reset its ports"), "{}", p.detail);

    // HR that never clears is an error, not a proof.
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| h.hr_reads = u32::MAX);
    assert!(matches!(
        Ahci::preinit(&fake, &clock),
        Err(AhciError::Timeout {
            what: "GHC.HR=0",
            ..
        })
    ));

    // No implemented port: nothing to read back.
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| h.pi = 0);
    let r = Ahci::preinit(&fake, &clock).unwrap();
    assert_eq!(r.hr_probe, None);
    assert!(!driver::proof(&r, fake.read32(GHC)).proven);
}

#[test]
fn stop_ports_stops_engines_and_reports_stuck_ports() {
    let (arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA, SIG_ATA, 0]).with(|h| {
        h.ports[0].cmd = ST | CR | FRE | FR;
        h.ports[1].cmd = ST | CR;
        h.ports[1].stuck = true;
    });
    let r = Ahci::stop_ports(&fake, &clock).unwrap();
    assert_eq!(
        (r.ports_running, r.ports_stuck, r.hba_reset_us),
        (0b01, 0b10, None)
    );
    assert_eq!(fake.0.borrow().ports[0].cmd & (ST | CR | FRE | FR), 0);
}

#[test]
fn finds_the_disk_and_writes_with_ncq() {
    let (mut arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[0, SIG_ATAPI, SIG_ATA]);
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    assert_eq!((a.port(), a.ncq(), a.model()), (2, true, "QEMU HARDDISK"));
    assert_eq!(a.name(), "ahci port 2 QEMU HARDDISK");
    let info = a.info();
    assert_eq!(
        (info.block_size, info.blocks, info.queue_depth),
        (512, 32768, 32)
    );
    assert_eq!(info.max_transfer, 32 << 20);

    let data = pattern(2 << 20, 9);
    let src = arena.buf(3 << 20);
    arena.put(src + 2, &data);
    let reqs: Vec<WriteReq> = (0..40)
        .map(|i| WriteReq {
            lba: 100 + i * 100,
            phys: src + 2 + i * (48 << 10),
            len: 48 << 10,
        })
        .collect();
    a.write(&reqs).unwrap();
    {
        let h = fake.0.borrow();
        for (i, r) in reqs.iter().enumerate() {
            let at = r.lba as usize * 512;
            let off = i * (48 << 10);
            assert_eq!(
                &h.disk[at..at + (48 << 10)],
                &data[off..off + (48 << 10)],
                "req {i}"
            );
        }
        assert!(h.log.iter().all(|l| l.0 == ATA_WRITE_FPDMA));
        assert!(h.max_active > 8, "NCQ kept {} in flight", h.max_active);
        assert_eq!(h.violations, Vec::<&str>::new());
    }
    let dst = arena.buf(64 << 10);
    a.read(200, dst, 48 << 10).unwrap();
    assert_eq!(arena.get(dst, 48 << 10), &data[48 << 10..96 << 10]);
    a.flush().unwrap();
    let h = fake.0.borrow();
    assert_eq!((h.flushes, h.log.last().unwrap().0), (1, ATA_READ_FPDMA));
    assert_eq!(h.violations, Vec::<&str>::new());
}

#[test]
fn without_ncq_commands_go_one_at_a_time() {
    let (mut arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| h.cap &= !(1 << 30));
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    assert!(!a.ncq());
    assert_eq!(a.info().queue_depth, 1);
    let data = pattern(9 << 20, 1);
    let src = arena.buf(10 << 20);
    arena.put(src, &data);
    let reqs = [
        WriteReq {
            lba: 0,
            phys: src,
            len: 9 << 20,
        }, // one command, three PRDs
        WriteReq {
            lba: 20000,
            phys: src,
            len: 4096,
        },
    ];
    a.write(&reqs).unwrap();
    a.flush().unwrap();
    let h = fake.0.borrow();
    assert_eq!(&h.disk[..9 << 20], &data[..]);
    assert_eq!(
        h.log,
        [(ATA_WRITE_DMA_EXT, 0, 18432), (ATA_WRITE_DMA_EXT, 20000, 8)]
    );
    assert_eq!((h.max_active, h.violations.len()), (1, 0));
}

#[test]
fn ports_mode_works_without_an_hba_reset() {
    let (mut arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| {
        h.ports[0].cmd = ST | CR | FRE | FR;
        h.ports[0].sig = SIG_ATA;
        h.hr_reads = u32::MAX; // an HR would hang: it must not be used
    });
    let opts = AhciOptions {
        reset: AhciReset::Ports,
        port: None,
    };
    let mut a = Ahci::new_with(&fake, &mut arena, &clock, opts).unwrap();
    assert_eq!(a.reset_report().unwrap().ports_running, 1);
    let src = arena.buf(4096);
    a.write(&[WriteReq {
        lba: 1,
        phys: src,
        len: 4096,
    }])
    .unwrap();
}

#[test]
fn device_errors_are_reported_and_stick() {
    let (mut arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| h.fail_lba = Some(1000));
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    let src = arena.buf(64 << 10);
    let reqs: Vec<_> = (0..8)
        .map(|i| WriteReq {
            lba: i * 128,
            phys: src,
            len: 64 << 10,
        })
        .collect();
    let start = clock.elapsed_us();
    let e = a.write(&reqs).unwrap_err();
    assert_eq!(e, BlockError::DeviceError { status: 0x441 });
    assert!(clock.elapsed_us() - start < 1_000_000, "no timeout needed");
    assert_eq!(a.flush(), Err(e));

    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| {
        h.fail_lba = Some(5);
        h.cap &= !(1 << 30);
    });
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    assert_eq!(
        a.write(&[WriteReq {
            lba: 0,
            phys: src,
            len: 4096
        }]),
        Err(BlockError::DeviceError { status: 0x441 })
    );
}

#[test]
fn a_failing_batch_is_retried_once_after_comreset() {
    let (mut arena, clock) = setup();
    // Two failures of the same block: the first batch fails, COMRESET, the retry fails again,
    // the port is given up (and stays given up).
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| {
        h.fail_lba = Some(300);
        h.fail_times = Some(2);
    });
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    let resets_at_probe = fake.0.borrow().comresets;
    let src = arena.buf(64 << 10);
    let reqs: Vec<_> = (0..4)
        .map(|i| WriteReq {
            lba: i * 128,
            phys: src,
            len: 64 << 10,
        })
        .collect();
    assert!(a.write(&reqs).is_err());
    assert_eq!(fake.0.borrow().comresets, resets_at_probe + 1);
    assert_eq!(a.recoveries(), 1);
    assert!(a.flush().is_err(), "a given-up port stays given up");

    // One failure: COMRESET, the retried batch lands, every block written.
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| {
        h.fail_lba = Some(300);
        h.fail_times = Some(1);
    });
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    let resets_at_probe = fake.0.borrow().comresets;
    arena.put(src, &[0x5A; 64 << 10]);
    a.write(&reqs).unwrap();
    a.flush().unwrap();
    let h = fake.0.borrow();
    assert_eq!(h.comresets, resets_at_probe + 1);
    assert!(h.disk[..4 * (64 << 10)].iter().all(|&b| b == 0x5A));
    assert!(h.violations.is_empty(), "{:?}", h.violations);
}

#[test]
fn recoveries_are_bounded() {
    let (mut arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(|h| {
        h.fail_lba = Some(0);
        h.fail_times = Some(1000);
    });
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    let src = arena.buf(4096);
    let one = [WriteReq {
        lba: 0,
        phys: src,
        len: 4096,
    }];
    for _ in 0..10 {
        assert!(a.write(&one).is_err());
    }
    assert!(a.recoveries() <= 3);
}

#[test]
fn missing_disks_and_wrong_ports_are_reported() {
    let (mut arena, clock) = setup();
    let none = FakeAhci::new(&arena, &[0, SIG_ATAPI]);
    assert_eq!(
        Ahci::new(&none, &mut arena, &clock).err(),
        Some(AhciError::NoDisk { present: 0b10 })
    );
    assert_eq!(Ahci::present_ports(&&none), 0b10);
    let fake = FakeAhci::new(&arena, &[SIG_ATA, SIG_ATAPI]);
    let opts = AhciOptions {
        port: Some(1),
        ..AhciOptions::default()
    };
    assert_eq!(
        Ahci::new_with(&fake, &mut arena, &clock, opts).err(),
        Some(AhciError::NotDisk {
            port: 1,
            sig: SIG_ATAPI
        })
    );
}

#[test]
fn bad_requests_are_refused_before_any_io() {
    let (mut arena, clock) = setup();
    let fake = FakeAhci::new(&arena, &[SIG_ATA]);
    let mut a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    let src = arena.buf(4096);
    assert_eq!(
        a.write(&[
            WriteReq {
                lba: 0,
                phys: src,
                len: 512
            },
            WriteReq {
                lba: 32767,
                phys: src,
                len: 1024
            }
        ]),
        Err(BlockError::BadRequest)
    );
    assert_eq!(a.read(0, src + 1, 512), Err(BlockError::BadRequest));
    assert_eq!(
        a.write(&[WriteReq {
            lba: 0,
            phys: src,
            len: 100
        }]),
        Err(BlockError::BadRequest)
    );
    assert!(fake.0.borrow().log.is_empty());
    a.write(&[WriteReq {
        lba: 32767,
        phys: src,
        len: 512,
    }])
    .unwrap();
}

#[test]
fn port_left_running_replays_the_old_command_list_without_reset() {
    // The crashed kernel's port: running, command list latched at old memory whose slot 0 holds
    // a WRITE DMA EXT of old data to LBA 100.
    let (mut arena, clock) = setup();
    let old_list = arena.buf(4096);
    let old_table = arena.buf(4096);
    let old_data = arena.buf(4096);
    let stale = pattern(4096, 0x5A);
    arena.put(old_data, &stale);
    arena.put(old_table, &H2d::dma_ext(true, 100, 8).encode());
    let mut prdt = [0u8; 16];
    build_prdt(old_data, 4096, &mut prdt).unwrap();
    arena.put(old_table + 0x80, &prdt);
    let hdr = CmdHeader::new(5, true, 1, old_table);
    arena.put(old_list, &hdr.encode());
    let dirty = |h: &mut Hba| {
        let p = &mut h.ports[0];
        (p.cmd, p.clb, p.mapped, p.sig, p.tfd) =
            (ST | CR | FRE | FR, old_list, Some(old_list), SIG_ATA, 0x50);
        p.d2h_sent = true;
    };

    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(dirty);
    let opts = AhciOptions {
        reset: AhciReset::Skip,
        port: None,
    };
    assert!(Ahci::new_with(&fake, &mut arena, &clock, opts).is_err());
    assert_eq!(
        &fake.0.borrow().disk[100 * 512..108 * 512],
        &stale[..],
        "stale write replayed"
    );

    let fake = FakeAhci::new(&arena, &[SIG_ATA]).with(dirty);
    let a = Ahci::new(&fake, &mut arena, &clock).unwrap();
    assert_eq!(a.reset_report().unwrap().ports_running, 1);
    let h = fake.0.borrow();
    assert!(
        h.log.is_empty() && h.disk.iter().all(|&b| b == 0),
        "nothing stale ran"
    );
}
