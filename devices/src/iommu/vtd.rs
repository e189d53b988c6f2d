//! One Intel VT-d remapping unit, through its registers (VT-d specification, "Register
//! Descriptions"): read the capabilities, log and clear the fault records, then turn
//! translation, interrupt remapping and queued invalidation off, each confirmed in GSTS.
//!
//! Registers are device data: a unit that reads all-ones is reported absent, every wait is
//! bounded, and the fault record count comes from CAP but is capped.

use alloc::vec::Vec;
use core::fmt;

use crate::block::regs::Regs;
use crate::time::{Clock, poll_until};

/// Version register (32).
pub const VER: usize = 0x00;
/// Capability register (64).
pub const CAP: usize = 0x08;
/// Extended capability register (64).
pub const ECAP: usize = 0x10;
/// Global command register (32).
pub const GCMD: usize = 0x18;
/// Global status register (32).
pub const GSTS: usize = 0x1C;
/// Fault status register (32).
pub const FSTS: usize = 0x34;
/// Fault event control register (32).
pub const FECTL: usize = 0x38;
/// Invalidation queue head (64).
pub const IQH: usize = 0x80;
/// Invalidation queue tail (64).
pub const IQT: usize = 0x88;

/// GCMD/GSTS: translation enable / status.
pub const TE: u32 = 1 << 31;
/// GCMD: set root table pointer (one-shot).
pub const SRTP: u32 = 1 << 30;
/// GCMD/GSTS: advanced fault logging.
pub const EAFL: u32 = 1 << 28;
/// GCMD/GSTS: queued invalidation enable.
pub const QIE: u32 = 1 << 26;
/// GCMD/GSTS: interrupt remapping enable.
pub const IRE: u32 = 1 << 25;
/// GCMD/GSTS: compatibility format interrupts.
pub const CFI: u32 = 1 << 23;
/// The GCMD bits that stay set until cleared (their status bits mirror them); a GCMD write
/// must repeat them or it turns them off, and must never repeat a one-shot bit.
pub const PERSISTENT: u32 = TE | EAFL | QIE | IRE | CFI;

/// FSTS bits software clears by writing 1: PFO, AFO, APF, IQE, ICE, ITE.
pub const FSTS_W1C: u32 = 0x7D;
/// FSTS: primary pending fault (a fault record holds a fault).
pub const FSTS_PPF: u32 = 1 << 1;
/// FECTL: interrupt mask.
pub const FECTL_IM: u32 = 1 << 31;
/// Fault record high dword: fault (F, write 1 to clear).
pub const FRCD_F: u32 = 1 << 31;
/// More fault records than this are not read (CAP allows 256).
pub const MAX_FAULT_RECORDS: usize = 256;
/// How long one enable bit may take to clear in GSTS.
pub const GSTS_TIMEOUT_US: u64 = 1_000_000;
/// How long pending invalidation descriptors may take to drain before QI is turned off.
pub const QI_DRAIN_TIMEOUT_US: u64 = 100_000;

/// One logged fault record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Record index.
    pub index: usize,
    /// Source id (requester bus/device/function).
    pub source_id: u16,
    /// Fault reason code.
    pub reason: u8,
    /// Faulting page address (fault info, bits 63:12).
    pub addr: u64,
    /// The request was a read (T bit set) rather than a write.
    pub read: bool,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sid = self.source_id;
        write!(
            f,
            "fault record={} source={:02x}:{:02x}.{} reason={:#x} addr={:#x} {}",
            self.index,
            sid >> 8,
            (sid >> 3) & 0x1F,
            sid & 7,
            self.reason,
            self.addr,
            if self.read { "read" } else { "write" }
        )
    }
}

/// What was found on and done to one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitReport {
    /// Version register.
    pub version: u32,
    /// Capability register.
    pub cap: u64,
    /// Extended capability register.
    pub ecap: u64,
    /// GSTS before anything was changed.
    pub gsts_before: u32,
    /// GSTS at the end.
    pub gsts_after: u32,
    /// FSTS before clearing.
    pub fsts: u32,
    /// Fault records that held a fault (all cleared).
    pub faults: Vec<Fault>,
    /// Fault records in the unit (from CAP.NFR, capped).
    pub fault_records: usize,
    /// Steps done, in order, for the console (`te off`, `ire off`, ...).
    pub steps: Vec<&'static str>,
}

/// Why a unit could not be brought to a state rkdump's DMA works with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VtdError {
    /// The registers read all-ones: no unit there.
    Absent,
    /// An enable bit did not clear in GSTS.
    Stuck {
        /// Which bit (`te`, `ire`, `qie`).
        what: &'static str,
        /// GSTS at the timeout.
        gsts: u32,
        /// The report so far.
        report: UnitReport,
    },
}

impl fmt::Display for VtdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent => write!(f, "registers read all-ones (no unit)"),
            Self::Stuck { what, gsts, .. } => write!(
                f,
                "{what} still on after {} ms (GSTS={gsts:#010x})",
                GSTS_TIMEOUT_US / 1000
            ),
        }
    }
}

/// CAP.NFR + 1: fault recording registers.
pub fn fault_record_count(cap: u64) -> usize {
    (((cap >> 40) & 0xFF) as usize + 1).min(MAX_FAULT_RECORDS)
}

/// CAP.FRO × 16: byte offset of the first fault recording register.
pub fn fault_record_offset(cap: u64) -> usize {
    (((cap >> 24) & 0x3FF) as usize) * 16
}

/// Reads, logs and clears every fault record that holds a fault, then the FSTS overflow and
/// error bits. Records beyond the register window are skipped.
pub fn drain_faults(regs: &impl Regs, cap: u64) -> (u32, Vec<Fault>) {
    let fsts = regs.read32(FSTS);
    let base = fault_record_offset(cap);
    let mut faults = Vec::new();
    for index in 0..fault_record_count(cap) {
        let off = base + index * 16;
        if off + 16 > regs.size() {
            break;
        }
        let hi = regs.read32(off + 12);
        if hi & FRCD_F == 0 {
            continue;
        }
        faults.push(Fault {
            index,
            source_id: regs.read32(off + 8) as u16,
            reason: hi as u8,
            addr: regs.read64(off) & !0xFFF,
            read: hi & (1 << 30) != 0,
        });
        regs.write32(off + 12, FRCD_F);
    }
    if fsts & FSTS_W1C != 0 {
        regs.write32(FSTS, fsts & FSTS_W1C);
    }
    (fsts, faults)
}

/// Turns one persistent GCMD bit off (repeating the other persistent bits GSTS shows on) and
/// waits for its status bit to clear.
fn turn_off(regs: &impl Regs, clock: &dyn Clock, bit: u32) -> Result<(), u32> {
    let gsts = regs.read32(GSTS);
    if gsts & bit == 0 {
        return Ok(());
    }
    regs.write32(GCMD, gsts & PERSISTENT & !bit);
    poll_until(clock, GSTS_TIMEOUT_US, || regs.read32(GSTS) & bit == 0)
        .map(|_| ())
        .map_err(|_| regs.read32(GSTS))
}

/// Brings one unit to "no translation": faults logged and cleared, the fault interrupt masked
/// (rkdump polls), then TE, IRE and QIE off in that order (translation first, so no request
/// is translated through the old tables once the dump device's bus mastering comes back on;
/// QI last, after its pending descriptors drained, since the hardware may still be working
/// through what the old kernel queued).
pub fn disable(regs: &impl Regs, clock: &dyn Clock) -> Result<UnitReport, VtdError> {
    let version = regs.read32(VER);
    if version == u32::MAX {
        return Err(VtdError::Absent);
    }
    let cap = regs.read64(CAP);
    let mut r = UnitReport {
        version,
        cap,
        ecap: regs.read64(ECAP),
        gsts_before: regs.read32(GSTS),
        fault_records: fault_record_count(cap),
        ..UnitReport::default()
    };
    let (fsts, faults) = drain_faults(regs, cap);
    r.fsts = fsts;
    r.faults = faults;
    regs.write32(FECTL, FECTL_IM);
    for (bit, what) in [(TE, "te"), (IRE, "ire"), (QIE, "qie")] {
        if r.gsts_before & bit == 0 {
            continue;
        }
        if bit == QIE {
            let drained = poll_until(clock, QI_DRAIN_TIMEOUT_US, || {
                regs.read64(IQH) == regs.read64(IQT)
            });
            if drained.is_err() {
                r.steps.push("qi not drained");
            }
        }
        match turn_off(regs, clock, bit) {
            Ok(()) => r.steps.push(match bit {
                TE => "te off",
                IRE => "ire off",
                _ => "qie off",
            }),
            Err(gsts) => {
                r.gsts_after = gsts;
                return Err(VtdError::Stuck {
                    what,
                    gsts,
                    report: r,
                });
            }
        }
    }
    r.gsts_after = regs.read32(GSTS);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::testkit::FakeClock;
    use alloc::string::ToString;
    use core::cell::RefCell;

    /// A VT-d unit as the spec describes it: GCMD writes set GSTS's persistent bits (unless
    /// `stuck` holds them), fault records clear on a write of F, FSTS bits are write-1-clear.
    struct Unit {
        regs: RefCell<[u32; 0x400]>,
        stuck: u32,
        gcmd_writes: RefCell<Vec<u32>>,
    }

    const FRO: usize = 0x20; // × 16 = 0x200
    const NFR: u64 = 4;

    impl Unit {
        fn new(gsts: u32) -> Unit {
            let mut regs = [0u32; 0x400];
            regs[VER / 4] = 0x10;
            let cap = ((NFR - 1) << 40) | ((FRO as u64) << 24);
            regs[CAP / 4] = cap as u32;
            regs[CAP / 4 + 1] = (cap >> 32) as u32;
            regs[GSTS / 4] = gsts;
            Unit {
                regs: RefCell::new(regs),
                stuck: 0,
                gcmd_writes: RefCell::new(Vec::new()),
            }
        }
        fn fault(&self, index: usize, sid: u16, reason: u8, addr: u64) {
            let off = (FRO * 16 + index * 16) / 4;
            let mut r = self.regs.borrow_mut();
            r[off] = addr as u32;
            r[off + 1] = (addr >> 32) as u32;
            r[off + 2] = u32::from(sid);
            r[off + 3] = FRCD_F | (1 << 30) | u32::from(reason);
            r[FSTS / 4] |= FSTS_PPF | 1;
        }
        fn get(&self, off: usize) -> u32 {
            self.regs.borrow()[off / 4]
        }
    }

    impl Regs for Unit {
        fn read32(&self, off: usize) -> u32 {
            self.get(off)
        }
        fn write32(&self, off: usize, v: u32) {
            let mut r = self.regs.borrow_mut();
            match off {
                GCMD => {
                    self.gcmd_writes.borrow_mut().push(v);
                    let keep = r[GSTS / 4] & self.stuck;
                    r[GSTS / 4] = (v & PERSISTENT) | keep;
                }
                FSTS => r[FSTS / 4] &= !(v & FSTS_W1C),
                o if o >= FRO * 16 && o % 16 == 12 => {
                    if v & FRCD_F != 0 {
                        r[o / 4] &= !FRCD_F;
                    }
                }
                o => r[o / 4] = v,
            }
        }
        fn size(&self) -> usize {
            0x1000
        }
    }

    #[test]
    fn everything_on_is_turned_off_in_order_with_faults_logged() {
        let u = Unit::new(TE | QIE | IRE | CFI);
        u.fault(1, 0x0108, 0x6, 0x1234_5000);
        let clock = FakeClock::new(100);
        let r = disable(&u, &clock).unwrap();
        assert_eq!(r.gsts_before, TE | QIE | IRE | CFI);
        // Read back: only CFI (left alone) remains.
        assert_eq!(u.get(GSTS), CFI);
        assert_eq!(r.gsts_after, CFI);
        assert_eq!(r.steps, ["te off", "ire off", "qie off"]);
        // Each write repeats the persistent bits still on and never a one-shot bit.
        assert_eq!(*u.gcmd_writes.borrow(), [QIE | IRE | CFI, QIE | CFI, CFI]);
        assert_eq!(r.fault_records, NFR as usize);
        assert_eq!(
            r.faults,
            [Fault {
                index: 1,
                source_id: 0x0108,
                reason: 6,
                addr: 0x1234_5000,
                read: true
            }]
        );
        assert_eq!(
            r.faults[0].to_string(),
            "fault record=1 source=01:01.0 reason=0x6 addr=0x12345000 read"
        );
        // Records and FSTS cleared, fault interrupt masked.
        assert_eq!(u.get(FRO * 16 + 16 + 12) & FRCD_F, 0);
        assert_eq!(u.get(FSTS) & FSTS_W1C, 0);
        assert_eq!(u.get(FECTL), FECTL_IM);
    }

    #[test]
    fn a_unit_already_off_is_left_alone() {
        let u = Unit::new(0);
        let r = disable(&u, &FakeClock::new(100)).unwrap();
        assert!(r.steps.is_empty() && r.faults.is_empty());
        assert!(u.gcmd_writes.borrow().is_empty());
    }

    #[test]
    fn a_stuck_enable_bit_times_out_with_its_name() {
        let mut u = Unit::new(TE);
        u.stuck = TE;
        let e = disable(&u, &FakeClock::new(100)).unwrap_err();
        assert!(matches!(e, VtdError::Stuck { what: "te", gsts, .. } if gsts == TE));
        assert!(e.to_string().starts_with("te still on"));
    }

    #[test]
    fn absent_unit_and_hostile_cap() {
        let u = Unit::new(0);
        u.regs.borrow_mut()[0] = u32::MAX;
        assert_eq!(disable(&u, &FakeClock::new(100)), Err(VtdError::Absent));
        // CAP claims 256 records at an offset beyond the window: nothing read out of range.
        let u = Unit::new(0);
        let cap = (0xFFu64 << 40) | (0x3FFu64 << 24);
        u.regs.borrow_mut()[CAP / 4] = cap as u32;
        u.regs.borrow_mut()[CAP / 4 + 1] = (cap >> 32) as u32;
        let (_, faults) = drain_faults(&u, cap);
        assert!(faults.is_empty());
        assert_eq!(fault_record_count(cap), MAX_FAULT_RECORDS);
    }
}
