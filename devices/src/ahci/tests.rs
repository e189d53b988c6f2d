//! AHCI host tests: FIS/PRDT/header/IDENTIFY encoders on byte buffers, then the whole driver
//! against a simulated HBA modelled on QEMU's `ich9-ahci` (synchronous HR and engine stops,
//! PxSIG set by the first D2H FIS once FRE is on, command list latched when ST goes 0→1).

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::*;
use crate::block::testkit::{Arena, FakeClock, Phys, pattern};

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

fn put_str(b: &mut [u8], word: usize, s: &str, words: usize) {
    let mut bytes = vec![b' '; 2 * words];
    bytes[..s.len()].copy_from_slice(s.as_bytes());
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        b[2 * (word + i)] = pair[1];
        b[2 * (word + i) + 1] = pair[0];
    }
}

/// IDENTIFY DEVICE data as a QEMU disk returns it (with checksum).
fn identify_data(sectors: u64, ncq: bool, sector_size: u32) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    let mut w = |i: usize, v: u16| b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    w(0, 0x0040);
    w(75, 31);
    w(76, if ncq { 1 << 8 } else { 0 });
    w(83, (1 << 14) | (1 << 13) | (1 << 10));
    w(86, (1 << 13) | (1 << 10));
    for i in 0..4 {
        w(100 + i, (sectors >> (16 * i)) as u16);
    }
    if sector_size != 512 {
        w(106, 0x4000 | (1 << 12));
        w(117, (sector_size / 2) as u16);
        w(118, ((sector_size / 2) >> 16) as u16);
    }
    put_str(&mut b, 10, "QM00001", 10);
    put_str(&mut b, 23, "2.5+", 4);
    put_str(&mut b, 27, "QEMU HARDDISK", 20);
    b[510] = 0xA5;
    let sum = b[..511].iter().fold(0u8, |s, &x| s.wrapping_add(x));
    b[511] = sum.wrapping_neg();
    b
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

// ---- simulated HBA --------------------------------------------------------------------------

const SIG_ATAPI: u32 = 0xEB14_0101;

#[derive(Clone, Debug, Default)]
struct Port {
    clb: u64,
    fb: u64,
    is: u32,
    cmd: u32,
    tfd: u32,
    sig: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    /// Signature of the attached device, 0 when the port is empty.
    device: u32,
    /// Command list latched when ST went 0→1 (QEMU `ahci_map_clb_address`).
    mapped: Option<u64>,
    d2h_sent: bool,
    /// CR/FR never clear.
    stuck: bool,
    /// NCQ tags transferred whose Set Device Bits FIS is still to come.
    ncq_done: Vec<u32>,
}

const ST: u32 = 1;
const FRE: u32 = 1 << 4;
const FR: u32 = 1 << 14;
const CR: u32 = 1 << 15;

pub(crate) struct Hba {
    mem: Phys,
    cap: u32,
    ghc: u32,
    pi: u32,
    /// GHC reads that still show HR after a reset (`u32::MAX`: forever).
    hr_reads: u32,
    /// The reset clears CAP.SNCQ/S64A and PI until written back (some Intel HBAs).
    hr_loses_cap: Option<(u32, u32)>,
    ports: Vec<Port>,
    pub(crate) disk: Vec<u8>,
    ncq: bool,
    log: Vec<(u8, u64, u32)>,
    max_active: u32,
    violations: Vec<&'static str>,
    flushes: u32,
    pub(crate) fail_lba: Option<u64>,
}

pub(crate) struct FakeAhci(pub(crate) RefCell<Hba>);

impl Port {
    /// COMRESET / HBA reset of the port (QEMU `ahci_reset_port`).
    fn reset(&mut self) {
        (self.serr, self.sact, self.ci, self.tfd, self.sig) = (0, 0, 0, 0x7F, u32::MAX);
        self.d2h_sent = false;
        self.ncq_done.clear();
        self.d2h();
    }

    /// The first D2H FIS: needs FRE, sets PxSIG (QEMU `ahci_init_d2h`).
    fn d2h(&mut self) {
        if self.device != 0 && !self.d2h_sent && self.cmd & FRE != 0 {
            self.d2h_sent = true;
            self.sig = self.device;
            self.tfd = 0x0130;
        }
    }
}

impl FakeAhci {
    pub(crate) fn new(arena: &Arena, devices: &[u32]) -> Self {
        let ports: Vec<Port> = devices
            .iter()
            .map(|&device| Port {
                device,
                tfd: 0x7F,
                sig: u32::MAX,
                ..Port::default()
            })
            .collect();
        FakeAhci(RefCell::new(Hba {
            mem: Phys {
                mem: arena.window(),
            },
            // S64A, SNCQ, 32 slots, ports-1: QEMU's CAP.
            cap: (1 << 31) | (1 << 30) | (31 << 8) | (ports.len() as u32 - 1),
            ghc: 1 << 31,
            pi: (1 << ports.len()) - 1,
            hr_reads: 2,
            hr_loses_cap: None,
            ports,
            disk: vec![0; 16 << 20],
            ncq: true,
            log: Vec::new(),
            max_active: 0,
            violations: Vec::new(),
            flushes: 0,
            fail_lba: None,
        }))
    }

    pub(crate) fn with(self, f: impl FnOnce(&mut Hba)) -> Self {
        f(&mut self.0.borrow_mut());
        self
    }
}

impl Hba {
    fn hba_reset(&mut self) {
        self.ghc = 1 << 31;
        if let Some((cap, _)) = self.hr_loses_cap {
            self.cap = cap & !((1 << 31) | (1 << 30));
            self.pi = 0;
        }
        for p in &mut self.ports {
            (p.is, p.sctl, p.cmd, p.mapped) = (0, 0, 0b110, None); // SUD|POD
            p.reset();
        }
    }

    fn fis_command(&mut self, p: usize, slot: u32) -> Option<u8> {
        let hdr = self.ports[p].mapped? + 32 * u64::from(slot);
        let ctba = self.mem.read64(hdr + 8);
        Some(self.mem.read(ctba + 2, 1)?[0])
    }

    fn issue(&mut self, p: usize, bits: u32) {
        if self.ports[p].cmd & ST == 0 {
            return;
        }
        for slot in (0..32).filter(|s| bits & (1 << s) != 0) {
            let queued = matches!(self.fis_command(p, slot), Some(0x60 | 0x61));
            let port = &self.ports[p];
            let others = (port.ci | port.sact) & !(1 << slot);
            if others != 0 && (!queued || port.ci & !port.sact & others != 0) {
                self.violations
                    .push("non-queued command overlapped another");
            }
        }
        let port = &mut self.ports[p];
        port.ci |= bits;
        let active = (port.ci | port.sact).count_ones();
        self.max_active = self.max_active.max(active);
    }

    /// One unit of device progress, run on PxCI/PxSACT reads: finish one NCQ tag, or start the
    /// lowest issued command.
    fn step(&mut self, p: usize) {
        let port = &mut self.ports[p];
        if !port.ncq_done.is_empty() {
            let tag = port.ncq_done.remove(0);
            port.sact &= !(1 << tag);
            return;
        }
        if port.cmd & ST == 0 || port.tfd & 0x01 != 0 {
            return;
        }
        if port.ci != 0 {
            let slot = port.ci.trailing_zeros();
            self.exec(p, slot);
        }
    }

    fn exec(&mut self, p: usize, slot: u32) {
        let Some(list) = self.ports[p].mapped else {
            return;
        };
        let hdr = list + 32 * u64::from(slot);
        let dw0 = self.mem.read32(hdr);
        let ctba = self.mem.read64(hdr + 8);
        let fis = self.mem.read(ctba, 20).unwrap_or_default();
        let mut segs = Vec::new();
        for i in 0..u64::from(dw0 >> 16) {
            let e = ctba + 0x80 + 16 * i;
            let dbc = self.mem.read32(e + 12) & 0x3F_FFFF;
            if dbc & 1 == 0 {
                self.violations.push("odd PRD byte count");
            }
            segs.push((self.mem.read64(e), dbc as usize + 1));
        }
        let lba = [4, 5, 6, 8, 9, 10]
            .iter()
            .enumerate()
            .fold(0u64, |l, (i, &b)| l | (u64::from(fis[b]) << (8 * i)));
        let count = u32::from(u16::from_le_bytes([fis[12], fis[13]]));
        let features = u32::from(u16::from_le_bytes([fis[3], fis[11]]));
        let or_max = |n: u32| if n == 0 { 65536 } else { n };
        let (write, queued, sectors) = match fis[2] {
            ATA_WRITE_DMA_EXT => (true, false, or_max(count)),
            ATA_READ_DMA_EXT => (false, false, or_max(count)),
            ATA_WRITE_FPDMA => (true, true, or_max(features)),
            ATA_READ_FPDMA => (false, true, or_max(features)),
            ATA_IDENTIFY => {
                let data = identify_data((self.disk.len() / 512) as u64, self.ncq, 512);
                self.scatter(&segs, &data);
                (false, false, 0)
            }
            ATA_FLUSH_EXT | ATA_FLUSH => {
                self.flushes += 1;
                (false, false, 0)
            }
            _ => return self.fail(p, slot, false),
        };
        if (dw0 & (1 << 6) != 0) != write {
            self.violations
                .push("header W bit does not match the command");
        }
        if queued && u32::from(fis[12] >> 3) != slot {
            self.violations.push("NCQ tag differs from slot");
        }
        if sectors > 0 {
            self.log.push((fis[2], lba, sectors));
            let start = lba as usize * 512;
            let len = sectors as usize * 512;
            let hit = self
                .fail_lba
                .is_some_and(|f| (lba..lba + u64::from(sectors)).contains(&f));
            if start + len > self.disk.len() || hit {
                return self.fail(p, slot, queued);
            }
            if segs.iter().map(|s| s.1).sum::<usize>() < len {
                self.violations.push("PRDT shorter than the transfer");
                return self.fail(p, slot, queued);
            }
            if write {
                let mut data = Vec::new();
                for &(a, n) in &segs {
                    data.extend(self.mem.read(a, n).unwrap_or_default());
                }
                self.disk[start..start + len].copy_from_slice(&data[..len]);
            } else {
                let data = self.disk[start..start + len].to_vec();
                self.scatter(&segs, &data);
            }
        }
        self.mem.write32(hdr + 4, sectors * 512); // PRDBC
        let port = &mut self.ports[p];
        port.ci &= !(1 << slot);
        port.tfd = 0x50;
        if queued {
            port.ncq_done.push(slot);
        }
    }

    fn scatter(&mut self, segs: &[(u64, usize)], data: &[u8]) {
        let mut at = 0;
        for &(a, n) in segs {
            let n = n.min(data.len() - at);
            self.mem.write(a, &data[at..at + n]);
            at += n;
        }
    }

    /// ABORT: QEMU reports NCQ errors through the SDB FIS (TFD.ERR, SACT stays set) and
    /// non-queued ones through a D2H FIS with TFES.
    fn fail(&mut self, p: usize, slot: u32, queued: bool) {
        let port = &mut self.ports[p];
        port.tfd = 0x0441;
        if queued {
            port.ci &= !(1 << slot);
        } else {
            port.is |= 1 << 30;
        }
    }
}

impl Regs for FakeAhci {
    fn read32(&self, off: usize) -> u32 {
        let mut h = self.0.borrow_mut();
        match off {
            0x00 => h.cap,
            0x04 => {
                if h.hr_reads > 0 && h.ghc & 1 != 0 {
                    if h.hr_reads != u32::MAX {
                        h.hr_reads -= 1;
                    }
                    return h.ghc;
                }
                h.ghc &= !1;
                h.ghc
            }
            0x0C => h.pi,
            0x10 => 0x0001_0000,
            _ if off >= 0x100 && (off - 0x100) / 0x80 < h.ports.len() => {
                let p = (off - 0x100) / 0x80;
                if matches!(off & 0x7F, 0x34 | 0x38) {
                    h.step(p);
                }
                let port = &h.ports[p];
                match off & 0x7F {
                    0x00 => port.clb as u32,
                    0x04 => (port.clb >> 32) as u32,
                    0x08 => port.fb as u32,
                    0x0C => (port.fb >> 32) as u32,
                    0x10 => port.is,
                    0x18 => port.cmd,
                    0x20 => port.tfd,
                    0x24 => port.sig,
                    0x28 if port.device != 0 => 0x113, // DET=3, Gen1, IPM active
                    0x2C => port.sctl,
                    0x30 => port.serr,
                    0x34 => port.sact,
                    0x38 => port.ci,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    fn write32(&self, off: usize, v: u32) {
        let mut h = self.0.borrow_mut();
        match off {
            0x00 => {
                if let Some((cap, _)) = h.hr_loses_cap {
                    h.cap = cap & v; // RWO bits take the value written back
                }
            }
            0x0C => {
                if let Some((_, pi)) = h.hr_loses_cap {
                    h.pi = pi & v;
                }
            }
            0x04 => {
                if v & 1 != 0 {
                    h.ghc |= 1;
                    h.hba_reset();
                    h.ghc |= 1; // HR reads back set for `hr_reads` reads
                } else {
                    h.ghc = (v & 3) | (1 << 31);
                }
            }
            _ if off >= 0x100 && (off - 0x100) / 0x80 < h.ports.len() => {
                let p = (off - 0x100) / 0x80;
                let lo = |r: u64| (r & !0xFFFF_FFFF) | u64::from(v);
                let hi = |r: u64| (r & 0xFFFF_FFFF) | (u64::from(v) << 32);
                match off & 0x7F {
                    0x00 => h.ports[p].clb = lo(h.ports[p].clb),
                    0x04 => h.ports[p].clb = hi(h.ports[p].clb),
                    0x08 => h.ports[p].fb = lo(h.ports[p].fb),
                    0x0C => h.ports[p].fb = hi(h.ports[p].fb),
                    0x10 => h.ports[p].is &= !v,
                    0x18 => {
                        let port = &mut h.ports[p];
                        let old = port.cmd;
                        port.cmd = (old & (FR | CR)) | (v & !(FR | CR | 0xF000_0000));
                        if v & ST != 0 && old & ST == 0 {
                            port.mapped = Some(port.clb);
                            port.cmd |= CR;
                        }
                        if v & ST == 0 && !port.stuck {
                            (port.mapped, port.ci, port.sact) = (None, 0, 0);
                            port.cmd &= !CR;
                        }
                        if v & FRE != 0 {
                            port.cmd |= FR;
                            port.d2h();
                        } else if !port.stuck {
                            port.cmd &= !FR;
                        }
                    }
                    0x2C => {
                        let port = &mut h.ports[p];
                        if port.sctl & 0xF == 1 && v & 0xF == 0 {
                            port.reset();
                        }
                        port.sctl = v;
                    }
                    0x30 => h.ports[p].serr &= !v,
                    0x34 => h.ports[p].sact |= v,
                    0x38 => h.issue(p, v),
                    _ => {}
                }
            }
            _ => {}
        }
    }
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
