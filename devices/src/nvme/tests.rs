//! NVMe host tests: pure encoders on byte buffers, then the whole driver against the simulated
//! controller of [`super::model`].

use alloc::vec::Vec;

use super::model::*;
use super::*;
use crate::block::testkit::{Arena, FakeClock, pattern};

// ---- pure logic -----------------------------------------------------------------------------

fn entries(list: &[u8], n: usize) -> Vec<u64> {
    list.chunks_exact(8)
        .take(n)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn prp_inside_one_page() {
    let mut list = [0u8; 4096];
    assert_eq!(
        build_prps(0x10_0000, 4096, &mut list, 0x9000),
        Ok((0x10_0000, 0))
    );
    assert_eq!(
        build_prps(0x10_0204, 512, &mut list, 0x9000),
        Ok((0x10_0204, 0))
    );
    assert_eq!(
        build_prps(0x10_0E00, 512, &mut list, 0x9000),
        Ok((0x10_0E00, 0))
    );
}

#[test]
fn prp_two_pages_uses_prp2_directly() {
    let mut list = [0u8; 4096];
    assert_eq!(
        build_prps(0x10_0000, 8192, &mut list, 0x9000),
        Ok((0x10_0000, 0x10_1000))
    );
    // Unaligned start: PRP1 keeps the offset, PRP2 is the next page base.
    assert_eq!(
        build_prps(0x10_0E00, 1024, &mut list, 0x9000),
        Ok((0x10_0E00, 0x10_1000))
    );
    assert_eq!(list, [0u8; 4096], "no list for two pages");
}

#[test]
fn prp_list_for_more_pages() {
    let mut list = [0u8; 4096];
    let (p1, p2) = build_prps(0x20_0A00, 3 * 4096, &mut list, 0x9000).unwrap();
    assert_eq!((p1, p2), (0x20_0A00, 0x9000));
    // 0x600 bytes in the first page, then 0x2A00 = 3 more pages (last partial).
    assert_eq!(entries(&list, 4), [0x20_1000, 0x20_2000, 0x20_3000, 0]);
}

#[test]
fn prp_list_limit_is_two_mib_at_any_offset() {
    let mut list = [0u8; 4096];
    for start in [0x40_0000u64, 0x40_0004, 0x40_0800, 0x40_0FFC] {
        list.fill(0);
        let (p1, p2) = build_prps(start, MAX_PRP_TRANSFER, &mut list, 0x9000).unwrap();
        assert_eq!((p1, p2), (start, 0x9000));
        let e = entries(&list, 512);
        assert_eq!(e[0], 0x40_1000);
        let used = e.iter().filter(|&&x| x != 0).count();
        let expect = if start % 4096 == 0 { 511 } else { 512 };
        assert_eq!(used, expect, "start {start:#x}");
        assert!(e[..used].windows(2).all(|w| w[1] == w[0] + 4096));
    }
    assert_eq!(
        build_prps(0x40_0004, MAX_PRP_TRANSFER + 4096, &mut list, 0x9000),
        Err(PrpError::TooLong)
    );
}

#[test]
fn prp_refuses_bad_buffers() {
    let mut list = [0u8; 4096];
    assert_eq!(
        build_prps(0x1002, 512, &mut list, 0),
        Err(PrpError::Misaligned)
    );
    assert_eq!(build_prps(0x1000, 0, &mut list, 0), Err(PrpError::Empty));
    assert_eq!(
        build_prps(u64::MAX - 0xFFF, 0x2000, &mut list, 0),
        Err(PrpError::Overflow)
    );
}

#[test]
fn command_encoding_matches_spec_offsets() {
    let mut c = Command::rw(NVM_WRITE, 1, 0x1_2345_6789, 8, 0xAAAA_0000, 0xBBBB_0000);
    c.command_id = 0x42;
    let b = c.encode();
    assert_eq!(&b[0..4], &[0x01, 0x00, 0x42, 0x00]); // opcode, flags, CID
    assert_eq!(&b[4..8], &1u32.to_le_bytes()); // NSID
    assert_eq!(&b[8..24], &[0u8; 16]); // reserved, MPTR
    assert_eq!(&b[24..32], &0xAAAA_0000u64.to_le_bytes());
    assert_eq!(&b[32..40], &0xBBBB_0000u64.to_le_bytes());
    assert_eq!(&b[40..44], &0x2345_6789u32.to_le_bytes()); // SLBA low
    assert_eq!(&b[44..48], &1u32.to_le_bytes()); // SLBA high
    assert_eq!(&b[48..52], &7u32.to_le_bytes()); // NLB, 0-based
    let cq = Command::create_cq(1, 64, 0x5000).encode();
    assert_eq!(cq[0], ADMIN_CREATE_CQ);
    assert_eq!(&cq[40..44], &((63u32 << 16) | 1).to_le_bytes());
    assert_eq!(&cq[44..48], &1u32.to_le_bytes(), "PC=1, IEN=0");
    let sq = Command::create_sq(1, 64, 0x6000, 1).encode();
    assert_eq!(
        &sq[44..48],
        &((1u32 << 16) | 1).to_le_bytes(),
        "CQID 1, PC=1"
    );
    let id = Command::identify(2, 0, 0x7000).encode();
    assert_eq!((id[0], id[40]), (ADMIN_IDENTIFY, 2));
}

#[test]
fn completion_fields_and_status() {
    let c = Completion::parse([7, 0, (1 << 16) | 5, (0x281 << 17) | (1 << 16) | 9]);
    assert_eq!(
        (c.result, c.sq_head, c.sq_id, c.command_id, c.phase()),
        (7, 5, 1, 9, true)
    );
    assert_eq!(c.status_field(), 0x281);
    assert!(!c.is_success());
    // DNR/More bits alone do not make a failure.
    assert!(Completion::parse([0, 0, 0, (0x6000 << 17) | 3]).is_success());
}

#[test]
fn cq_cursor_flips_phase_on_wrap() {
    let mut c = CqCursor::new(3);
    assert!(c.phase);
    for _ in 0..3 {
        c.advance();
    }
    assert_eq!((c.head, c.phase), (0, false));
    for _ in 0..4 {
        c.advance();
    }
    assert_eq!((c.head, c.phase), (1, true));
}

#[test]
fn cap_fields() {
    let cap = Cap(0x7FF | (0x0F << 24) | (1 << 32) | (1 << 37) | (1 << 48));
    assert_eq!(cap.max_queue_entries(), 0x800);
    assert_eq!(cap.ready_timeout_us(), 8_000_000);
    assert_eq!(cap.doorbell_stride(), 8);
    assert!(cap.nvm_command_set());
    assert_eq!(cap.mps_min(), 1);
    assert_eq!(mdts_bytes(0, 0), None);
    assert_eq!(mdts_bytes(7, 0), Some(512 << 10));
    assert_eq!(mdts_bytes(255, 0), Some(u64::MAX));
}

#[test]
fn identify_controller_and_namespace() {
    let c = ControllerId::parse(&id_ctrl(7, true)).unwrap();
    assert_eq!(
        (
            c.vid,
            c.serial.as_str(),
            c.model.as_str(),
            c.firmware.as_str()
        ),
        (0x1B36, "deadbeef", "QEMU NVMe Ctrl", "8.0.3")
    );
    assert_eq!((c.mdts, c.nn, c.vwc), (7, 1, true));
    let mut odd = id_ctrl(0, false);
    odd[24] = 0xFF;
    assert!(ControllerId::parse(&odd).unwrap().model.starts_with('?'));
    assert!(ControllerId::parse(&[0u8; 100]).is_err());

    let ns = NamespaceId::parse(&id_ns(1000, &[(0, 9), (0, 12)], 1)).unwrap();
    assert_eq!((ns.nsze, ns.lba_shift), (1000, 12));
    assert_eq!(
        NamespaceId::parse(&id_ns(1000, &[(0, 9)], 3)),
        Err(NvmeError::BadIdentify {
            what: "FLBAS selects a format beyond NLBAF"
        })
    );
    assert!(matches!(
        NamespaceId::parse(&id_ns(1000, &[(8, 9)], 0)),
        Err(NvmeError::Unsupported { .. })
    ));
    assert!(matches!(
        NamespaceId::parse(&id_ns(1000, &[(0, 16)], 0)),
        Err(NvmeError::Unsupported { .. })
    ));
    assert_eq!(
        NamespaceId::parse(&id_ns(0, &[(0, 9)], 0)),
        Err(NvmeError::NoNamespace)
    );
}

#[test]
fn errors_map_to_block_errors() {
    let t = NvmeError::Timeout {
        what: "x",
        waited_us: 1,
        csts: 1,
    };
    assert_eq!(BlockError::from(t), BlockError::Timeout { what: "x" });
    let io = NvmeError::IoFailed {
        opcode: 1,
        lba: 5,
        status: 0x280,
    };
    assert_eq!(
        BlockError::from(io),
        BlockError::DeviceError { status: 0x280 }
    );
    assert!(alloc::format!("{io}").contains("SCT 0x2 SC 0x80"));
}

// ---- driver against the model ---------------------------------------------------------------

fn setup() -> (Arena, FakeClock) {
    (Arena::new(8 << 20), FakeClock::new(100))
}

#[test]
fn preinit_disables_an_enabled_controller() {
    let (arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| {
        c.cc = Cc::EN.bits() | CC_IOSQES_64 | CC_IOCQES_16;
        c.csts = Csts::RDY.bits();
    });
    let r = Nvme::preinit(&fake, &clock).unwrap();
    assert!(r.was_enabled() && !r.was_fatal());
    assert!(r.disable_us.is_some() && r.settle_us.is_none());
    let c = fake.0.borrow();
    assert_eq!((c.cc, c.csts & 1, c.intms), (0, 0, u32::MAX));
    assert!(alloc::format!("{r}").contains("RDY=0 after"));
}

#[test]
fn preinit_on_a_disabled_controller_only_masks() {
    let (arena, clock) = setup();
    let fake = FakeNvme::new(&arena);
    let r = Nvme::preinit(&fake, &clock).unwrap();
    assert_eq!((r.was_enabled(), r.disable_us), (false, None));
    assert_eq!(fake.0.borrow().intms, u32::MAX);
}

#[test]
fn preinit_reports_gone_and_stuck_controllers() {
    let (arena, clock) = setup();
    let gone = FakeNvme::new(&arena).with(|c| c.gone = true);
    assert_eq!(Nvme::preinit(&gone, &clock), Err(NvmeError::Gone));

    let stuck = FakeNvme::new(&arena).with(|c| {
        c.cc = 1;
        c.csts = 1;
        c.stuck = true;
    });
    let start = clock.elapsed_us();
    match Nvme::preinit(&stuck, &clock) {
        Err(NvmeError::Timeout { waited_us, .. }) => {
            assert!((8_000_000..9_000_000).contains(&waited_us));
        }
        other => panic!("{other:?}"),
    }
    assert!(clock.elapsed_us() - start < 10_000_000, "bounded by CAP.TO");
}

#[test]
fn preinit_proof_needs_an_enabled_controller_that_the_reset_disabled() {
    let (arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| {
        c.cc = Cc::EN.bits() | CC_IOSQES_64 | CC_IOCQES_16;
        c.csts = Csts::RDY.bits();
    });
    let r = Nvme::preinit(&fake, &clock).unwrap();
    let p = driver::proof(&r, fake.read32(CC), fake.read32(CSTS));
    assert!(p.proven, "{}", p.detail);
    assert!(
        p.detail.starts_with("CC.EN 1 -> 0, CSTS.RDY 1 -> 0 after "),
        "{}",
        p.detail
    );
}

#[test]
fn preinit_proof_fails_on_a_controller_found_disabled_or_left_enabled() {
    let (arena, clock) = setup();
    // Already disabled: reading 0 again proves nothing (the old proof passed here).
    let fake = FakeNvme::new(&arena);
    let r = Nvme::preinit(&fake, &clock).unwrap();
    let p = driver::proof(&r, fake.read32(CC), fake.read32(CSTS));
    assert!(!p.proven, "{}", p.detail);
    assert!(p.detail.contains("already disabled"), "{}", p.detail);

    // Enabled before, still enabled after (a controller that ignored CC.EN ← 0).
    let r = ResetReport {
        cc_before: 1,
        csts_before: 1,
        disable_us: Some(10),
        ..r
    };
    let p = driver::proof(&r, 1, 1);
    assert!(!p.proven, "{}", p.detail);
    assert!(p.detail.contains("still enabled"), "{}", p.detail);

    // RDY never clears: an error, not a proof.
    let stuck = FakeNvme::new(&arena).with(|c| {
        c.cc = 1;
        c.csts = 1;
        c.stuck = true;
    });
    assert!(matches!(
        Nvme::preinit(&stuck, &clock),
        Err(NvmeError::Timeout { .. })
    ));
}

#[test]
fn half_enabled_controller_settles_before_disable() {
    let (arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| {
        c.cc = 1;
        c.rdy_pending = Some((true, 5));
    });
    let r = Nvme::preinit(&fake, &clock).unwrap();
    assert!(r.settle_us.is_some() && r.disable_us.is_some());
}

fn bring_up<'c>(
    arena: &mut Arena,
    clock: &'c FakeClock,
    fake: &'c FakeNvme,
) -> Nvme<'c, &'c FakeNvme> {
    Nvme::new(fake, arena, clock).unwrap()
}

#[test]
fn bring_up_identifies_and_creates_queues() {
    let (mut arena, clock) = setup();
    let fake = FakeNvme::new(&arena);
    let n = bring_up(&mut arena, &clock, &fake);
    let info = n.info();
    assert_eq!(info.block_size, 512);
    assert_eq!(info.blocks, 8192);
    assert_eq!(info.max_transfer, 512 << 10);
    assert_eq!(info.queue_depth, 63);
    assert_eq!(n.name(), "nvme QEMU NVMe Ctrl");
    assert_eq!((n.serial(), n.nsid()), ("deadbeef", 1));
    let ops: Vec<u8> = fake.0.borrow().admin_log.iter().map(|a| a.0).collect();
    assert_eq!(
        ops,
        [
            ADMIN_IDENTIFY,
            ADMIN_IDENTIFY,
            ADMIN_IDENTIFY,
            ADMIN_CREATE_CQ,
            ADMIN_CREATE_SQ
        ]
    );
    assert!(n.reset_report().is_some());
}

#[test]
fn writes_are_pipelined_split_and_land_intact() {
    let (mut arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| {
        c.mdts = 2; // 16 KiB per command: forces splitting
        c.cap |= 1 << 32; // doorbell stride 8
    });
    let mut n = bring_up(&mut arena, &clock, &fake);
    assert_eq!(n.info().max_transfer, 16 << 10);

    // Three requests: page-aligned, dword-offset (PRP1 with offset), and one block.
    let data = pattern(600 << 10, 7);
    let src = arena.buf(700 << 10);
    arena.put(src, &data);
    let reqs = [
        WriteReq {
            lba: 0,
            phys: src,
            len: 256 << 10,
        },
        WriteReq {
            lba: 1000,
            phys: src + 0x204 + (256 << 10),
            len: 300 << 10,
        },
        WriteReq {
            lba: 5000,
            phys: src + 0x1000,
            len: 512,
        },
    ];
    n.write(&reqs).unwrap();
    {
        let c = fake.0.borrow();
        assert_eq!(&c.disk[..256 << 10], &data[..256 << 10]);
        let off = (256 << 10) + 0x204;
        assert_eq!(
            &c.disk[1000 * 512..1000 * 512 + (300 << 10)],
            &data[off..off + (300 << 10)]
        );
        assert_eq!(&c.disk[5000 * 512..5001 * 512], &data[0x1000..0x1200]);
        assert!(
            c.io_log.iter().all(|&(_, _, nlb)| nlb <= 32),
            "MDTS respected"
        );
        assert_eq!(c.io_log.len(), 16 + 19 + 1);
        assert!(c.max_queued > 16, "kept many in flight: {}", c.max_queued);
    }

    // Read back across a 2 MiB-ish span into an unaligned buffer.
    let dst = arena.buf(400 << 10) + 0x10;
    n.read(1000, dst, 300 << 10).unwrap();
    let off = (256 << 10) + 0x204;
    assert_eq!(arena.get(dst, 300 << 10), &data[off..off + (300 << 10)]);

    n.flush().unwrap();
    assert_eq!(fake.0.borrow().flushes, 1);
}

#[test]
fn large_transfers_use_full_prp_lists() {
    let (mut arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| c.mdts = 0); // unlimited: 2 MiB PRP cap applies
    let mut n = bring_up(&mut arena, &clock, &fake);
    assert_eq!(n.info().max_transfer, MAX_PRP_TRANSFER);
    let data = pattern(3 << 20, 3);
    let src = arena.buf((3 << 20) + 4096);
    arena.put(src + 0xFFC, &data);
    n.write(&[WriteReq {
        lba: 8,
        phys: src + 0xFFC,
        len: 3 << 20,
    }])
    .unwrap();
    let c = fake.0.borrow();
    assert_eq!(&c.disk[8 * 512..8 * 512 + (3 << 20)], &data[..]);
    assert_eq!(
        c.io_log,
        [(NVM_WRITE, 8, 4096), (NVM_WRITE, 8 + 4096, 2048)]
    );
}

#[test]
fn flush_is_a_no_op_without_volatile_cache() {
    let (mut arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| c.vwc = false);
    let mut n = bring_up(&mut arena, &clock, &fake);
    n.flush().unwrap();
    assert_eq!(fake.0.borrow().flushes, 0);
}

#[test]
fn error_status_is_reported_and_the_device_stays_usable() {
    let (mut arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| c.fail_lba = Some(100));
    let mut n = bring_up(&mut arena, &clock, &fake);
    let src = arena.buf(64 << 10);
    let reqs = [
        WriteReq {
            lba: 0,
            phys: src,
            len: 32 << 10,
        },
        WriteReq {
            lba: 96,
            phys: src,
            len: 32 << 10,
        },
        WriteReq {
            lba: 500,
            phys: src,
            len: 32 << 10,
        },
    ];
    assert_eq!(
        n.write(&reqs),
        Err(BlockError::DeviceError { status: 0x280 })
    );
    fake.0.borrow_mut().fail_lba = None;
    n.write(&reqs).unwrap();
}

#[test]
fn bad_requests_are_refused_before_any_io() {
    let (mut arena, clock) = setup();
    let fake = FakeNvme::new(&arena);
    let mut n = bring_up(&mut arena, &clock, &fake);
    let src = arena.buf(4096);
    let bad = [
        WriteReq {
            lba: 0,
            phys: src,
            len: 512,
        },
        WriteReq {
            lba: 8191,
            phys: src,
            len: 1024,
        },
    ];
    assert_eq!(n.write(&bad), Err(BlockError::BadRequest));
    assert_eq!(n.read(0, src + 2, 512), Err(BlockError::BadRequest));
    assert_eq!(
        n.write(&[WriteReq {
            lba: 0,
            phys: src,
            len: 100
        }]),
        Err(BlockError::BadRequest)
    );
    assert!(fake.0.borrow().io_log.is_empty());
    n.write(&[WriteReq {
        lba: 8191,
        phys: src,
        len: 512,
    }])
    .unwrap();
}

#[test]
fn fatal_status_during_io_fails_fast_and_sticks() {
    let (mut arena, clock) = setup();
    let fake = FakeNvme::new(&arena).with(|c| c.cfs_after_io = Some(3));
    let mut n = bring_up(&mut arena, &clock, &fake);
    let src = arena.buf(64 << 10);
    let reqs: Vec<_> = (0..8)
        .map(|i| WriteReq {
            lba: i * 16,
            phys: src,
            len: 8 << 10,
        })
        .collect();
    let start = clock.elapsed_us();
    let e = n.write(&reqs).unwrap_err();
    assert!(
        matches!(e, BlockError::DeviceError { status } if status & 2 != 0),
        "{e:?}"
    );
    assert!(
        clock.elapsed_us() - start < 1_000_000,
        "did not sit out the 30 s timeout"
    );
    assert_eq!(n.flush(), Err(e), "a dead controller stays dead");
}

#[test]
fn controller_left_enabled_replays_stale_commands_without_reset() {
    // The crashed kernel's admin queue: enabled controller, SQ head at 5, stale entries 5..32
    // in old memory (docs/device-reinit.md#why-resets-are-needed). rkdump then programs new queues.
    let (mut arena, clock) = setup();
    let old_sq = arena.buf(4096);
    let old_cq = arena.buf(4096);
    let old_buf = arena.buf(4096);
    for i in 0..32u64 {
        let mut stale = Command::identify(1, 0, old_buf);
        stale.command_id = 0x100 + i as u16;
        arena.put(old_sq + 64 * i, &stale.encode());
    }
    let dirty = |c: &mut Ctl| {
        c.aqa = (31 << 16) | 31;
        c.asq = old_sq;
        c.acq = old_cq;
        c.cc = 1;
        c.start();
        c.rdy_pending = None;
        c.csts = 1;
        let mut q = c.sq[0].unwrap();
        (q.head, q.tail) = (5, 5);
        c.sq[0] = Some(q);
    };

    let fake = FakeNvme::new(&arena).with(dirty);
    let r = Nvme::new_with(&fake, &mut arena, &clock, NvmeReset::Skip);
    assert!(
        matches!(
            r,
            Err(NvmeError::Timeout {
                what: "admin completion",
                ..
            })
        ),
        "{:?}",
        r.err()
    );
    let log = &fake.0.borrow().admin_log;
    assert!(
        log.len() > 1 && log.iter().all(|&(_, prp)| prp == old_buf),
        "replayed stale entries"
    );

    let fake = FakeNvme::new(&arena).with(dirty);
    let n = Nvme::new_with(&fake, &mut arena, &clock, NvmeReset::Disable).unwrap();
    assert!(n.reset_report().unwrap().was_enabled());
    assert!(
        fake.0
            .borrow()
            .admin_log
            .iter()
            .all(|&(_, prp)| prp != old_buf)
    );
}
