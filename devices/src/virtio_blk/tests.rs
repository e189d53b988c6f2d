//! Host tests: ring bookkeeping on a byte buffer, and the driver against a simulated
//! virtio-blk that follows QEMU's behaviour (hw/virtio/virtio.c, virtio-pci.c) including the
//! stale-index failure when the driver skips the reset.

use alloc::vec;
use alloc::vec::Vec;

use super::chain::*;
use super::model::*;
use super::*;
use crate::pci::fake::FakeConfig;
use crate::pci::{Bdf, scan};
use crate::virtio::pci::{TransportError, VirtioRegion, reset as reset_only};
use crate::virtio::ring::*;
use crate::virtio::{NO_VECTOR, VIRTIO_VENDOR};

// ---------------------------------------------------------------------------------------------
// Ring bookkeeping on a plain buffer: the test plays the device.

fn ring_mem() -> ArenaMem {
    ArenaMem {
        a: arena(DMA_BYTES),
        off: 0,
    }
}

fn seg(addr: u64, len: u32, w: bool) -> Seg {
    Seg {
        addr,
        len,
        device_writes: w,
    }
}

/// The device side: takes the next avail entry and completes it.
fn device_complete(m: &ArenaMem, size: u16, avail_seen: &mut u16, used_idx: &mut u16) -> u16 {
    let slot = usize::from(*avail_seen % size);
    let head = m.read16(AVAIL_OFF + 4 + 2 * slot);
    *avail_seen = avail_seen.wrapping_add(1);
    let e = USED_OFF + 4 + 8 * usize::from(*used_idx % size);
    m.write32(e, u32::from(head));
    m.write32(e + 4, 1);
    *used_idx = used_idx.wrapping_add(1);
    m.write16(USED_OFF + 2, *used_idx);
    head
}

#[test]
fn ring_builds_chains_with_flags_and_links() {
    let m = ring_mem();
    let mut q = SplitQueue::new(&m, 8, DESC_OFF, AVAIL_OFF, USED_OFF).unwrap();
    assert_eq!(m.read16(AVAIL_OFF), VIRTQ_AVAIL_F_NO_INTERRUPT);
    let segs = [
        seg(0x1000, 16, false),
        seg(0x2000, 4096, false),
        seg(0x3000, 1, true),
    ];
    let head = q.push(&m, 3, segs).unwrap();
    assert_eq!(head, 0);
    assert_eq!(q.num_free(), 5);
    // Not visible before publish.
    assert_eq!(m.read16(AVAIL_OFF + 2), 0);
    q.publish(&m);
    assert_eq!(m.read16(AVAIL_OFF + 2), 1);
    assert_eq!(m.read16(AVAIL_OFF + 4), 0);
    let d = |i: usize| DESC_OFF + 16 * i;
    assert_eq!(m.read32(d(0)), 0x1000);
    assert_eq!(m.read16(d(0) + 12), VIRTQ_DESC_F_NEXT);
    assert_eq!(m.read16(d(0) + 14), 1);
    assert_eq!(m.read32(d(1) + 8), 4096);
    assert_eq!(m.read16(d(1) + 12), VIRTQ_DESC_F_NEXT);
    assert_eq!(m.read16(d(1) + 14), 2);
    assert_eq!(m.read16(d(2) + 12), VIRTQ_DESC_F_WRITE);
    // Full and empty chains are refused without side effects.
    assert_eq!(q.push(&m, 6, [seg(0, 1, false); 6]), Err(RingError::Full));
    assert_eq!(q.push(&m, 0, []), Err(RingError::EmptyChain));
    assert_eq!(
        q.push(&m, 2, [seg(0, 1, false)]),
        Err(RingError::EmptyChain)
    );
    assert_eq!(q.num_free(), 5);
    assert!(SplitQueue::new(&m, 12, DESC_OFF, AVAIL_OFF, USED_OFF).is_err());
    assert!(SplitQueue::new(&m, 512, DESC_OFF, AVAIL_OFF, USED_OFF).is_err());
}

#[test]
fn ring_indices_wrap_and_free_list_recycles() {
    let m = ring_mem();
    let size = 4;
    let mut q = SplitQueue::new(&m, size, DESC_OFF, AVAIL_OFF, USED_OFF).unwrap();
    let (mut seen, mut used) = (0u16, 0u16);
    // Well past 2^16 submissions, with chains of varying length so heads move around.
    for i in 0..70_000u32 {
        let n = (i % 3 + 1) as u16;
        let h = q.push(&m, n, [seg(u64::from(i), 512, false); 3]).unwrap();
        q.publish(&m);
        assert!(!q.has_used(&m));
        assert_eq!(device_complete(&m, size, &mut seen, &mut used), h);
        let u = q.pop_used(&m).unwrap().unwrap();
        assert_eq!(u.head, h);
        assert_eq!(q.num_free(), size);
        assert_eq!(q.in_flight(), 0);
    }
    // Several in flight, completed out of order of submission is still in used-ring order.
    let a = q.push(&m, 2, [seg(1, 1, false); 2]).unwrap();
    let b = q.push(&m, 2, [seg(2, 1, false); 2]).unwrap();
    assert_ne!(a, b);
    assert_eq!(q.next_head(), None);
    q.publish(&m);
    device_complete(&m, size, &mut seen, &mut used);
    device_complete(&m, size, &mut seen, &mut used);
    assert_eq!(q.pop_used(&m).unwrap().unwrap().head, a);
    assert_eq!(q.pop_used(&m).unwrap().unwrap().head, b);
    assert_eq!(q.pop_used(&m).unwrap(), None);
}

#[test]
fn ring_rejects_device_lies() {
    let m = ring_mem();
    let mut q = SplitQueue::new(&m, 8, DESC_OFF, AVAIL_OFF, USED_OFF).unwrap();
    q.push(&m, 1, [seg(1, 1, false)]).unwrap();
    q.publish(&m);
    // Completes a descriptor that is not a head in flight.
    m.write32(USED_OFF + 4, 5);
    m.write16(USED_OFF + 2, 1);
    assert_eq!(q.pop_used(&m), Err(RingError::BadUsedId(5)));
    m.write32(USED_OFF + 4, 0x1_0000);
    assert_eq!(q.pop_used(&m), Err(RingError::BadUsedId(0x1_0000)));
    // Claims more completions than requests.
    m.write32(USED_OFF + 4, 0);
    m.write16(USED_OFF + 2, 3);
    assert!(matches!(q.pop_used(&m), Err(RingError::UsedOverrun { .. })));
}

#[test]
fn chunking_respects_limits() {
    let lim = Limits {
        seg_max: 2,
        size_max: 4096,
        chain_bytes: 1 << 20,
    };
    assert_eq!(lim.chain_max(), 8192);
    let c: Vec<Chunk> = chunks(10, 0x10_0000, 20 * 1024, lim.chain_max()).collect();
    assert_eq!(c.len(), 3);
    assert_eq!(
        c[1],
        Chunk {
            sector: 26,
            phys: 0x10_2000,
            len: 8192
        }
    );
    assert_eq!(c[2].len, 4096);
    let s: Vec<Seg> = data_segs(0x1000, 6144, 4096, true).collect();
    assert_eq!(s, [seg(0x1000, 4096, true), seg(0x2000, 2048, true)]);
    // size_max not a sector multiple is rounded by the driver; chain_max always whole sectors.
    let odd = Limits {
        seg_max: 3,
        size_max: 1000,
        chain_bytes: 1 << 20,
    };
    assert_eq!(odd.chain_max() % 512, 0);
}

fn opts() -> InitOptions {
    InitOptions::default()
}

#[test]
fn bring_up_negotiates_and_programs_queue() {
    let r = Rig::new(|d| Dev {
        qmax: 1024,
        qsize: 1024,
        ..d
    });
    let dev = r.open(opts()).unwrap();
    let d = r.d.borrow();
    assert_eq!(d.resets, 1);
    assert_eq!(d.status, 0x0F);
    assert_eq!(
        d.drv_feat,
        (Features::VERSION_1 | Features::FLUSH | Features::BLK_SIZE).bits()
    );
    assert_eq!(
        (d.qsize, d.qenable, d.qvec, d.cfgvec),
        (256, 1, NO_VECTOR, NO_VECTOR)
    );
    assert_eq!(
        (d.qdesc, d.qdriver, d.qdevice),
        (BASE, BASE + 4096, BASE + 8192)
    );
    let info = dev.info();
    assert_eq!((info.block_size, info.blocks), (512, 0x8000));
    assert_eq!(
        info.max_transfer,
        1 << 20,
        "no SEG_MAX/SIZE_MAX: one 1 MiB segment"
    );
    assert_eq!(dev.blk_size(), 4096);
}

#[test]
fn reset_only_is_a_separate_step() {
    let r = Rig::new(|d| d.stale(7));
    let regs = r.regions();
    reset_only(&regs.common, &r.clk).unwrap();
    let d = r.d.borrow();
    assert_eq!((d.status, d.qenable, d.last_avail, d.resets), (0, 0, 0, 1));
}

#[test]
fn preinit_proof_records_the_status_before_the_reset() {
    // What the crashed kernel left: DRIVER_OK. The write changes it: proven.
    let r = Rig::new(|d| d.stale(7));
    let done = reset_only(&r.regions().common, &r.clk).unwrap();
    assert_eq!(done.status_before, 0x0F);
    let p = driver::proof(&done);
    assert!(p.proven, "{}", p.detail);
    assert!(
        p.detail.starts_with("device_status 0x0f -> 0 after "),
        "{}",
        p.detail
    );
}

#[test]
fn preinit_proof_fails_when_the_write_changed_nothing() {
    // Already reset: reading 0 again proves nothing about the write.
    let r = Rig::new(|d| d);
    let done = reset_only(&r.regions().common, &r.clk).unwrap();
    let p = driver::proof(&done);
    assert!(!p.proven, "{}", p.detail);
    assert!(p.detail.contains("already reset"), "{}", p.detail);

    // A device that ignores the write: the status never reads 0, an error, not a proof.
    let r = Rig::new(|d| Dev {
        stuck_reset: true,
        ..d.stale(7)
    });
    assert!(matches!(
        reset_only(&r.regions().common, &r.clk),
        Err(TransportError::ResetTimeout { status: 0x0F, .. })
    ));
}

#[test]
fn write_read_round_trip_pipelined() {
    let r = Rig::new(|d| d);
    let mut dev = r.open(opts()).unwrap();
    // 40 scattered 4 KiB writes and one 3 MiB write.
    let mut reqs = Vec::new();
    for i in 0..40u64 {
        let phys = DATA + i * 4096;
        r.fill(phys, 4096, i as u8);
        reqs.push(WriteReq {
            lba: 0x1000 + i * 16,
            phys,
            len: 4096,
        });
    }
    let big = DATA + 0x10_0000;
    r.fill(big, 3 << 20, 0x5A);
    reqs.push(WriteReq {
        lba: 0x2000,
        phys: big,
        len: 3 << 20,
    });
    dev.write(&reqs).unwrap();
    dev.flush().unwrap();
    {
        let d = r.d.borrow();
        assert!(
            d.max_batch >= 4,
            "several chains in flight, saw {}",
            d.max_batch
        );
        assert_eq!(d.chains.len(), 40 + 3 + 1);
        assert_eq!(d.chains.last().unwrap().0, VIRTIO_BLK_T_FLUSH);
        assert_eq!(
            d.chains[41].2,
            [1 << 20],
            "1 MiB chains, one data descriptor"
        );
        for (i, q) in reqs.iter().enumerate().take(40) {
            let at = (q.lba * 512) as usize;
            assert_eq!(d.disk[at..at + 4096], r.bytes(q.phys, 4096)[..], "req {i}");
        }
        assert_eq!(
            d.disk[0x2000 * 512..0x2000 * 512 + (3 << 20)],
            r.bytes(big, 3 << 20)[..]
        );
    }
    // Read back into a fresh buffer.
    let dst = DATA + 0x30_0000;
    dev.read(0x1000 + 5 * 16, dst, 4096).unwrap();
    assert_eq!(r.bytes(dst, 4096), r.bytes(DATA + 5 * 4096, 4096));
}

#[test]
fn requests_split_by_seg_max_and_size_max() {
    let r = Rig::new(|d| Dev {
        dev_feat: d.dev_feat | (Features::SEG_MAX | Features::SIZE_MAX).bits(),
        seg_max: 2,
        size_max: 4096 + 100, // not a sector multiple: rounded down
        ..d
    });
    let mut dev = r.open(opts()).unwrap();
    assert_eq!(dev.info().max_transfer, 8192);
    r.fill(DATA, 20 * 1024, 3);
    dev.write(&[WriteReq {
        lba: 8,
        phys: DATA,
        len: 20 * 1024,
    }])
    .unwrap();
    let d = r.d.borrow();
    let shape: Vec<(u64, Vec<u32>)> = d.chains.iter().map(|c| (c.1, c.2.clone())).collect();
    assert_eq!(
        shape,
        [
            (8, vec![4096, 4096]),
            (24, vec![4096, 4096]),
            (40, vec![4096])
        ]
    );
    assert_eq!(
        d.disk[8 * 512..8 * 512 + 20 * 1024],
        r.bytes(DATA, 20 * 1024)[..]
    );
}

#[test]
fn lazy_device_completions_are_polled() {
    let r = Rig::new(|d| Dev { lazy: true, ..d });
    let mut dev = r.open(opts()).unwrap();
    let reqs: Vec<WriteReq> = (0..10)
        .map(|i| WriteReq {
            lba: i * 8,
            phys: DATA,
            len: 4096,
        })
        .collect();
    dev.write(&reqs).unwrap();
    assert_eq!(r.d.borrow().chains.len(), 10);
}

/// Four 4 KiB writes to consecutive 4 KiB blocks from `first`, data at `DATA`.
fn four_writes(first: u64) -> Vec<WriteReq> {
    (first..first + 4)
        .map(|i| WriteReq {
            lba: i * 8,
            phys: DATA + i * 4096,
            len: 4096,
        })
        .collect()
}

#[test]
fn submit_keeps_the_ring_busy_across_batches() {
    // A device that completes one chain per status read: completions lag behind submissions.
    let r = Rig::new(|d| Dev { lazy: true, ..d });
    r.fill(DATA, 8 * 4096, 9);
    let mut dev = r.open(opts()).unwrap();
    // Queue of 16: 4 chains of 3 descriptors fit, the next batch waits for room.
    dev.submit(&four_writes(0), &mut || false).unwrap();
    assert_eq!(
        r.d.borrow().pending.len(),
        4,
        "submit returned with all in flight"
    );
    let mut hashed = 0;
    dev.submit(&four_writes(4), &mut || {
        hashed += 1;
        true
    })
    .unwrap();
    assert!(
        hashed > 0,
        "the caller's work ran while the driver waited for room"
    );
    assert!(
        !r.d.borrow().pending.is_empty(),
        "the second batch is in flight on return"
    );
    dev.complete(&mut || false).unwrap();
    let d = r.d.borrow();
    assert!(d.pending.is_empty());
    assert_eq!(d.chains.len(), 8);
    // The ring never ran dry at the batch boundary: every chain of the second batch arrived
    // while earlier ones were still in flight.
    assert!(
        d.busy_on_arrival[4..].iter().all(|&b| b > 0),
        "{:?}",
        d.busy_on_arrival
    );
    assert_eq!(d.disk[0..8 * 4096], r.bytes(DATA, 8 * 4096)[..]);
}

#[test]
fn blocking_writes_drain_the_ring_between_batches() {
    // Negative control of the test above: `write` per batch leaves the device idle at each
    // boundary, which is what the ring trace showed before `submit`.
    let r = Rig::new(|d| Dev { lazy: true, ..d });
    let mut dev = r.open(opts()).unwrap();
    dev.write(&four_writes(0)).unwrap();
    dev.write(&four_writes(4)).unwrap();
    assert_eq!(r.d.borrow().busy_on_arrival[4], 0);
}

#[test]
fn a_submitted_write_that_fails_is_reported_by_the_next_wait() {
    let r = Rig::new(|d| Dev {
        lazy: true,
        req_status: 1,
        ..d
    });
    let mut dev = r.open(opts()).unwrap();
    dev.submit(&four_writes(0), &mut || false).unwrap();
    assert_eq!(
        dev.complete(&mut || false),
        Err(BlockError::DeviceError { status: 1 })
    );
    // Reported once; the device is not broken.
    r.d.borrow_mut().req_status = 0;
    dev.complete(&mut || false).unwrap();
    dev.write(&four_writes(0)).unwrap();
    // A failure of an earlier batch stops the next submit once it is seen.
    r.d.borrow_mut().req_status = 1;
    dev.submit(&four_writes(0), &mut || false).unwrap();
    r.d.borrow_mut().req_status = 0;
    let sent = r.d.borrow().chains.len();
    assert_eq!(
        dev.submit(&four_writes(4), &mut || false),
        Err(BlockError::DeviceError { status: 1 })
    );
    // Only the one chain that fitted before the failure was seen went out.
    assert_eq!(
        r.d.borrow().chains.len(),
        sent + 1,
        "nothing sent after a failure"
    );
}

#[test]
fn flush_waits_for_submitted_writes() {
    let r = Rig::new(|d| Dev { lazy: true, ..d });
    let mut dev = r.open(opts()).unwrap();
    dev.submit(&four_writes(0), &mut || false).unwrap();
    dev.flush().unwrap();
    let d = r.d.borrow();
    assert_eq!(d.chains.last().unwrap().0, VIRTIO_BLK_T_FLUSH);
    assert_eq!(
        d.busy_on_arrival.last(),
        Some(&0),
        "the flush reached the device after every write completed"
    );
}

#[test]
fn no_notify_while_the_device_says_it_is_polling() {
    for polls in [false, true] {
        let r = Rig::new(|d| Dev { polls, ..d });
        r.fill(DATA, 8 * 4096, 4);
        let mut dev = r.open(opts()).unwrap();
        dev.write(&four_writes(0)).unwrap();
        dev.write(&four_writes(4)).unwrap();
        let d = r.d.borrow();
        // A polling device set NO_NOTIFY when it first looked (bring-up reads the status).
        let want = if polls { 0 } else { 2 };
        assert_eq!(d.notifies, want, "polls {polls}");
        assert_eq!(d.disk[0..8 * 4096], r.bytes(DATA, 8 * 4096)[..]);
    }
}

#[test]
fn without_reset_stale_rings_break_the_device_as_qemu_predicts() {
    // Negative control: the crashed kernel's driver had used index 5.
    let r = Rig::new(|d| d.stale(5));
    let skip = InitOptions {
        skip_reset: true,
        ..opts()
    };
    let mut dev = r.open(skip).unwrap();
    let e = dev
        .write(&[WriteReq {
            lba: 0,
            phys: DATA,
            len: 512,
        }])
        .unwrap_err();
    assert!(r.d.borrow().guest_error);
    assert_eq!(
        e,
        BlockError::DeviceError {
            status: DEVICE_STATUS_ERROR | 0x4F
        }
    );
    // The device is now known broken: later calls fail at once.
    assert_eq!(dev.flush(), Err(e));

    // Positive: the same stale device, reset first, works.
    let r = Rig::new(|d| d.stale(5));
    let mut dev = r.open(opts()).unwrap();
    dev.write(&[WriteReq {
        lba: 0,
        phys: DATA,
        len: 512,
    }])
    .unwrap();
    assert!(!r.d.borrow().guest_error);
}

#[test]
fn bring_up_failures_are_typed() {
    let r = Rig::new(|d| Dev {
        stuck_reset: true,
        ..d.stale(1)
    });
    assert!(matches!(
        r.open(opts()),
        Err(Error::Transport(TransportError::ResetTimeout {
            status: 0x0F,
            ..
        }))
    ));

    let r = Rig::new(|d| Dev {
        dev_feat: Features::FLUSH.bits(),
        ..d
    });
    assert_eq!(r.open(opts()).err(), Some(Error::NoVersion1));
    assert_ne!(r.d.borrow().status & DeviceStatus::FAILED.bits(), 0);

    let r = Rig::new(|d| Dev {
        reject_features: true,
        ..d
    });
    assert_eq!(r.open(opts()).err(), Some(Error::FeaturesRejected));

    let r = Rig::new(|d| Dev {
        dev_feat: d.dev_feat | Features::RO.bits(),
        ..d
    });
    assert_eq!(r.open(opts()).err(), Some(Error::ReadOnly));

    let r = Rig::new(|d| Dev {
        qmax: 0,
        qsize: 0,
        ..d
    });
    assert_eq!(r.open(opts()).err(), Some(Error::NoQueue));

    let r = Rig::new(|d| Dev {
        qmax: 100,
        qsize: 100,
        ..d
    });
    r.open(opts()).unwrap();
    assert_eq!(r.d.borrow().qsize, 64, "largest power of two below 100");
}

#[test]
fn io_failures_are_typed_not_panics() {
    let one = [WriteReq {
        lba: 0,
        phys: DATA,
        len: 512,
    }];
    let r = Rig::new(|d| Dev {
        never_complete: true,
        ..d
    });
    let mut dev = r.open(opts()).unwrap();
    assert_eq!(
        dev.write(&one),
        Err(BlockError::Timeout {
            what: "virtio-blk completion"
        })
    );

    let r = Rig::new(|d| Dev {
        bogus_used_id: true,
        ..d
    });
    let mut dev = r.open(opts()).unwrap();
    assert_eq!(
        dev.write(&one),
        Err(BlockError::DeviceError {
            status: RING_PROTOCOL_ERROR
        })
    );

    let r = Rig::new(|d| Dev { req_status: 1, ..d });
    let mut dev = r.open(opts()).unwrap();
    assert_eq!(
        dev.write(&[one[0], one[0]]),
        Err(BlockError::DeviceError { status: 1 })
    );
    // A failed request does not break the device; in-flight ones were drained.
    r.d.borrow_mut().req_status = 0;
    dev.write(&one).unwrap();

    let bad = |lba, len| WriteReq {
        lba,
        phys: DATA,
        len,
    };
    for q in [bad(0x8000, 512), bad(0x7FFF, 1024), bad(0, 100), bad(0, 0)] {
        assert_eq!(dev.write(&[q]), Err(BlockError::BadRequest));
    }
}

#[test]
fn flush_is_a_no_op_without_the_feature() {
    let r = Rig::new(|d| Dev {
        dev_feat: Features::VERSION_1.bits(),
        ..d
    });
    let mut dev = r.open(opts()).unwrap();
    dev.flush().unwrap();
    assert!(r.d.borrow().chains.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Locating the structures from config space.

fn virtio_fn(c: &FakeConfig, bdf: Bdf, caps: &[(u8, u8, u32, u32)]) {
    c.add(bdf, VIRTIO_VENDOR, DEVICE_ID_MODERN, |f| {
        f.bar_mem64(4, 0xfe00_0000, 0x4000);
        let mut off = 0x40u16;
        for (i, &(ty, bar, o, len)) in caps.iter().enumerate() {
            let next = if i + 1 == caps.len() { 0 } else { off + 0x14 };
            f.cap(off, 0x09, next as u8)
                .set8(off + 2, 0x14)
                .set8(off + 3, ty)
                .set8(off + 4, bar)
                .set32(off + 8, o)
                .set32(off + 12, len)
                .set32(off + 16, 4);
            off += 0x14;
        }
    });
}

#[test]
fn locate_regions_from_vendor_caps() {
    let c = FakeConfig::new(4096);
    let bdf = Bdf::new(0, 1, 0, 0).unwrap();
    virtio_fn(
        &c,
        bdf,
        &[
            (1, 4, 0, 0x1000),
            (3, 4, 0x1000, 0x1000),
            (4, 4, 0x2000, 0x1000),
            (2, 0, 0x3000, 0x1000), // BAR0 unimplemented: skipped for the next one
            (2, 4, 0x3000, 0x1000),
            (5, 0, 0, 0), // PCI cfg access cap: ignored
        ],
    );
    let s = scan(&c, 0, 1);
    let dev = s.find(bdf).unwrap();
    let info = locate_virtio_regions(&c, dev).unwrap();
    assert_eq!(
        info.common,
        VirtioRegion {
            bar: 4,
            offset: 0,
            len: 0x1000,
            phys: 0xfe00_0000
        }
    );
    assert_eq!(info.notify.phys, 0xfe00_3000);
    assert_eq!(info.notify_off_multiplier, 4);
    assert_eq!(info.isr.unwrap().phys, 0xfe00_1000);
    assert_eq!(info.device.phys, 0xfe00_2000);
}

#[test]
fn locate_reports_bad_caps() {
    let bdf = Bdf::new(0, 1, 0, 0).unwrap();
    let try_caps = |caps: &[(u8, u8, u32, u32)], bar_addr: u64| {
        let c = FakeConfig::new(4096);
        virtio_fn(&c, bdf, caps);
        c.with(bdf, |f| {
            f.bar_mem64(4, bar_addr, 0x4000);
        });
        let dev = *scan(&c, 0, 1).find(bdf).unwrap();
        locate_virtio_regions(&c, &dev)
    };
    let good = [
        (1, 4, 0, 0x1000),
        (2, 4, 0x3000, 0x1000),
        (4, 4, 0x2000, 0x1000),
    ];
    assert!(try_caps(&good, 0xfe00_0000).is_ok());
    assert_eq!(
        try_caps(&good[..2], 0xfe00_0000),
        Err(Error::Transport(TransportError::MissingCap { cfg_type: 4 }))
    );
    assert_eq!(
        try_caps(&good, 0),
        Err(Error::Transport(TransportError::BadBar {
            cfg_type: 1,
            bar: 4
        })),
        "BAR cleared by a reset and not restored"
    );
    assert_eq!(
        try_caps(&[(1, 4, 0x3800, 0x1000), good[1], good[2]], 0xfe00_0000),
        Err(Error::Transport(TransportError::BadWindow { cfg_type: 1 }))
    );
    assert_eq!(
        try_caps(&[(1, 4, 0, 0x10), good[1], good[2]], 0xfe00_0000),
        Err(Error::Transport(TransportError::BadWindow { cfg_type: 1 })),
        "common window shorter than the registers"
    );
    assert_eq!(
        try_caps(&[(1, 9, 0, 0x1000), good[1], good[2]], 0xfe00_0000),
        Err(Error::Transport(TransportError::BadBar {
            cfg_type: 1,
            bar: 9
        }))
    );
    let c = FakeConfig::new(256);
    c.add(bdf, 0x8086, 0x1234, |_| {});
    let dev = *scan(&c, 0, 1).find(bdf).unwrap();
    assert!(matches!(
        locate_virtio_regions(&c, &dev),
        Err(Error::NotVirtioBlk { .. })
    ));
}
