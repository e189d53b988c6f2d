//! Test double: a [`FakeConfig`] wrapped with reset behaviour (FLR, AF FLR, PM with or
//! without effect, a bridge whose Bridge Control bit 6 resets everything below it, devices
//! that are slow, never ready or answer RRS), a shared [`SimClock`] that config accesses and
//! delays advance, and a timestamped write log.
//!
//! A reset clears every software-writable bit of the function's config space (BAR address
//! bits, COMMAND, MSI/MSI-X enable, bus numbers, DevCtl...), as QEMU's `pci_do_device_reset`
//! does; read-only and write-1-to-clear bits stay.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::{Driver, DriverCtx, DriverError, PreinitReport};
use crate::pci::fake::{FakeConfig, FakeFunc};
use crate::pci::{Bdf, BridgeControl, ConfigSpace, PciDevice, caps, reg};
use crate::time::Clock;

/// A clock that moves 1 µs per reading and jumps on `delay_us`, so timeouts finish at once.
#[derive(Default)]
pub struct SimClock {
    t: Cell<u64>,
}

impl SimClock {
    pub fn advance(&self, us: u64) {
        self.t.set(self.t.get() + us);
    }
    pub fn peek(&self) -> u64 {
        self.t.get()
    }
}

impl Clock for SimClock {
    fn now_us(&self) -> u64 {
        let t = self.t.get();
        self.t.set(t + 1);
        t
    }
    fn delay_us(&self, us: u64) {
        self.advance(us);
    }
}

/// How a function reacts to resets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Initiate FLR resets the function (DevCap.FLR is set by [`pcie`] separately).
    pub flr_effect: bool,
    /// AF FLR resets the function.
    pub af_effect: bool,
    /// D3hot -> D0 resets the function (QEMU: false).
    pub pm_effect: bool,
    /// After a reset the function answers after this long.
    pub ready_after_us: u64,
    /// After a reset the function never answers again.
    pub never_ready: bool,
    /// While not ready, Vendor ID reads 0x0001 (RRS) instead of 0xFFFF.
    pub rrs: bool,
}

struct State {
    beh: Behaviour,
    /// Not ready before this time (u64::MAX = never).
    ready_at: u64,
}

/// One write as issued, with the clock at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimWrite {
    pub t_us: u64,
    pub bdf: Bdf,
    pub off: u16,
    pub width: u16,
    pub value: u32,
}

pub struct Sim {
    pub fake: FakeConfig,
    pub clock: Rc<SimClock>,
    st: RefCell<BTreeMap<Bdf, State>>,
    log: RefCell<Vec<SimWrite>>,
}

pub fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(0, bus, dev, func).unwrap()
}

impl Sim {
    pub fn new() -> Self {
        Sim {
            fake: FakeConfig::new(4096),
            clock: Rc::new(SimClock::default()),
            st: RefCell::new(BTreeMap::new()),
            log: RefCell::new(Vec::new()),
        }
    }

    /// An endpoint of `class`/`subclass` shaped by `f`.
    pub fn endpoint(
        &self,
        at: Bdf,
        ids: (u16, u16),
        class: (u8, u8),
        beh: Behaviour,
        f: impl FnOnce(&mut FakeFunc),
    ) {
        self.fake.add(at, ids.0, ids.1, |x| {
            x.set8(0x0B, class.0).set8(0x0A, class.1);
            // Interrupt line is writable.
            x.mask(0x3C, &[0xFF]);
            f(x);
        });
        self.st.borrow_mut().insert(at, State { beh, ready_at: 0 });
    }

    /// A PCIe root/downstream port (type 1, PCIe cap at 0x40) with windows and forwarding on.
    pub fn bridge(&self, at: Bdf, secondary: u8, subordinate: u8) {
        self.fake.add_bridge(at, secondary, subordinate);
        self.fake.with(at, |x| {
            x.mask(0x18, &[0xFF, 0xFF, 0xFF, 0xFF])
                .mask(0x1C, &[0xF0, 0xF0])
                .mask(0x20, &[0xF0, 0xFF, 0xF0, 0xFF])
                .mask(0x24, &[0xF0, 0xFF, 0xF0, 0xFF])
                .mask(0x28, &[0xFF; 8])
                .mask(0x3C, &[0xFF, 0x00, 0xFF, 0x0B]);
            // Secondary Status and Bridge Control's Discard Timer Status are W1C.
            x.w1c[0x1F] = 0xF9;
            x.w1c[0x3F] = 0x04;
            x.set16(0x04, 0x0007)
                .set(0x1C, &[0x10, 0x10])
                .set32(0x20, 0xFE90_FE80)
                .set32(0x24, 0xFFF1_FC01)
                .set32(0x28, 0x0000_0080)
                .set32(0x2C, 0x0000_0080)
                .set8(0x3C, 0x0B)
                .set16(0x3E, 0x0010);
            pcie(x, 0x40, 0, false, 0x4);
            // A latched Received Master Abort and Discard Timer Status: must survive.
            x.data[0x1F] |= 0x20;
            x.data[0x3F] |= 0x04;
        });
        self.st.borrow_mut().insert(
            at,
            State {
                beh: Behaviour::default(),
                ready_at: 0,
            },
        );
    }

    /// Makes `at` vanish (reads all-ones, drops writes).
    pub fn unplug(&self, at: Bdf) {
        if let Some(s) = self.st.borrow_mut().get_mut(&at) {
            s.ready_at = u64::MAX;
            s.beh.rrs = false;
        }
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<SimWrite> {
        self.log.borrow().clone()
    }

    pub fn writes_to(&self, at: Bdf) -> Vec<SimWrite> {
        self.writes().into_iter().filter(|w| w.bdf == at).collect()
    }

    pub fn clear_writes(&self) {
        self.log.borrow_mut().clear();
        self.fake.clear_writes();
    }

    /// The raw 4 KiB of a function (bypassing readiness).
    pub fn raw(&self, at: Bdf) -> [u8; 4096] {
        self.fake.with(at, |x| x.data)
    }

    fn now(&self) -> u64 {
        self.clock.peek()
    }

    /// Whether config requests reach `at` (every bridge on the way routes its bus and is not
    /// holding its secondary bus in reset).
    fn routed(&self, at: Bdf, depth: u32) -> bool {
        if at.bus == 0 {
            return true;
        }
        if depth > 16 {
            return false;
        }
        let st = self.st.borrow();
        let bridges: Vec<Bdf> = st.keys().copied().filter(|b| *b != at).collect();
        drop(st);
        bridges.into_iter().any(|b| {
            let (is_bridge, sec, sub, bc) = self.fake.with(b, |x| {
                (
                    x.data[0x0E] & 0x7F == 1,
                    x.data[0x19],
                    x.data[0x1A],
                    u16::from_le_bytes([x.data[0x3E], x.data[0x3F]]),
                )
            });
            is_bridge
                && sec != 0
                && (sec..=sub).contains(&at.bus)
                && bc & BridgeControl::SECONDARY_BUS_RESET.bits() == 0
                && self.answers(b, depth + 1)
        })
    }

    fn answers(&self, at: Bdf, depth: u32) -> bool {
        let ready = match self.st.borrow().get(&at) {
            None => return false,
            Some(s) => self.now() >= s.ready_at,
        };
        ready && self.routed(at, depth)
    }

    fn reset_fn(&self, at: Bdf) {
        self.fake.with(at, |x| {
            for o in 0x04..4096 {
                x.data[o] &= !x.wmask[o];
            }
        });
    }

    fn not_ready_from_now(&self, at: Bdf) {
        let now = self.now();
        if let Some(s) = self.st.borrow_mut().get_mut(&at) {
            s.ready_at = if s.beh.never_ready {
                u64::MAX
            } else {
                now + s.beh.ready_after_us
            };
        }
    }

    fn below(&self, sec: u8, sub: u8) -> Vec<Bdf> {
        self.st
            .borrow()
            .keys()
            .copied()
            .filter(|b| sec != 0 && (sec..=sub).contains(&b.bus))
            .collect()
    }

    fn read(&self, at: Bdf, off: u16, width: u16) -> u32 {
        self.clock.advance(1);
        let ones = u32::MAX >> (32 - 8 * u32::from(width));
        if !self.st.borrow().contains_key(&at) {
            return ones;
        }
        if !self.answers(at, 0) {
            let rrs = self.st.borrow()[&at].beh.rrs && self.routed(at, 0);
            return if rrs && off == 0 {
                ones & 0xFFFF_0001
            } else {
                ones
            };
        }
        match width {
            1 => u32::from(self.fake.read8(at, off)),
            2 => u32::from(self.fake.read16(at, off)),
            _ => self.fake.read32(at, off),
        }
    }

    fn write(&self, at: Bdf, off: u16, width: u16, value: u32) {
        self.clock.advance(1);
        self.log.borrow_mut().push(SimWrite {
            t_us: self.now(),
            bdf: at,
            off,
            width,
            value,
        });
        if !self.st.borrow().contains_key(&at) || !self.answers(at, 0) {
            return;
        }
        let beh = self.st.borrow()[&at].beh;
        let pcie = caps::find_pcie(&self.fake, at);
        let pm = caps::find_pm(&self.fake, at);
        let af = caps::find_cap(&self.fake, at, caps::id::AF);
        let old_pmcsr = pm.map(|p| self.fake.read16(at, p + 4));
        let (is_bridge, sec, sub, old_bc) = self.fake.with(at, |x| {
            (
                x.data[0x0E] & 0x7F == 1,
                x.data[0x19],
                x.data[0x1A],
                u16::from_le_bytes([x.data[0x3E], x.data[0x3F]]),
            )
        });
        match width {
            1 => self.fake.write8(at, off, value as u8),
            2 => self.fake.write16(at, off, value as u16),
            _ => self.fake.write32(at, off, value),
        }
        // FLR.
        if let Some(p) = pcie
            && off == p + 8
            && width == 2
            && value & 0x8000 != 0
            && beh.flr_effect
        {
            self.reset_fn(at);
            self.not_ready_from_now(at);
        }
        // AF FLR.
        if let Some(a) = af
            && off == a + 4
            && width == 1
            && value & 1 != 0
            && beh.af_effect
        {
            self.reset_fn(at);
            self.not_ready_from_now(at);
        }
        // PM D3hot -> D0.
        if let (Some(p), Some(old)) = (pm, old_pmcsr)
            && off == p + 4
        {
            let new = self.fake.read16(at, p + 4);
            if old & 3 == 3 && new & 3 == 0 && beh.pm_effect {
                self.reset_fn(at);
                self.not_ready_from_now(at);
            }
        }
        // Secondary bus reset.
        if is_bridge {
            let bc = self
                .fake
                .with(at, |x| u16::from_le_bytes([x.data[0x3E], x.data[0x3F]]));
            let sbr = BridgeControl::SECONDARY_BUS_RESET.bits();
            let was = old_bc & sbr != 0;
            let now = bc & sbr != 0;
            if !was && now {
                for b in self.below(sec, sub) {
                    self.reset_fn(b);
                }
            }
            if was && !now {
                for b in self.below(sec, sub) {
                    self.not_ready_from_now(b);
                }
            }
        }
    }
}

impl ConfigSpace for Sim {
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        self.read(bdf, off, 1) as u8
    }
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        self.read(bdf, off, 2) as u16
    }
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.read(bdf, off, 4)
    }
    fn write8(&self, bdf: Bdf, off: u16, v: u8) {
        self.write(bdf, off, 1, u32::from(v));
    }
    fn write16(&self, bdf: Bdf, off: u16, v: u16) {
        self.write(bdf, off, 2, u32::from(v));
    }
    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        self.write(bdf, off, 4, v);
    }
    fn max_offset(&self) -> u16 {
        4096
    }
}

/// A PCIe capability at `off` (version 2, `port_type`), FLR-capable if `flr`, with writable
/// DevCtl/LnkCtl/DevCtl2/LnkCtl2 holding typical firmware values.
pub fn pcie(x: &mut FakeFunc, off: u16, next: u8, flr: bool, port_type: u8) {
    x.cap(off, caps::id::PCIE, next);
    x.set16(off + 2, 0x0002 | (u16::from(port_type) << 4))
        .set32(off + 4, if flr { 1 << 28 } else { 0 })
        .set16(off + 8, 0x2830)
        .mask(off + 8, &0x7FFFu16.to_le_bytes())
        .set16(off + 0x10, 0x0040)
        .mask(off + 0x10, &0x0FFFu16.to_le_bytes())
        .set16(off + 0x28, 0x0010)
        .mask(off + 0x28, &0xFFFFu16.to_le_bytes())
        .set16(off + 0x30, 0x0002)
        .mask(off + 0x30, &0xFFFFu16.to_le_bytes());
    // DevSta error bits are W1C.
    x.w1c[usize::from(off) + 0xA] = 0x0F;
}

/// An MSI-X capability at `off`, enabled.
pub fn msix(x: &mut FakeFunc, off: u16, next: u8) {
    x.cap(off, caps::id::MSIX, next);
    x.set16(off + 2, 0x8003)
        .mask(off + 2, &0xC000u16.to_le_bytes());
}

/// An MSI capability at `off`, enabled.
pub fn msi(x: &mut FakeFunc, off: u16, next: u8) {
    x.cap(off, caps::id::MSI, next);
    x.set16(off + 2, 0x0001)
        .mask(off + 2, &0x0071u16.to_le_bytes());
}

/// A PM capability at `off` (D0, No_Soft_Reset as given, PME_Status set to catch W1C bugs).
pub fn pm(x: &mut FakeFunc, off: u16, next: u8, no_soft_reset: bool) {
    x.cap(off, caps::id::PM, next);
    x.set16(off + 2, 0x0003)
        .set16(off + 4, 0x8000 | if no_soft_reset { 0x8 } else { 0 })
        .mask(off + 4, &0x0103u16.to_le_bytes());
    x.w1c[usize::from(off) + 5] = 0x80;
}

/// An AF capability at `off` with TP and FLR.
pub fn af(x: &mut FakeFunc, off: u16, next: u8) {
    x.cap(off, caps::id::AF, next);
    x.set(off + 2, &[6, 0x03, 0, 0]).mask(off + 4, &[0x01]);
}

/// The usual endpoint: 64-bit BAR0+1 (16 KiB), 32-bit BAR2 (4 KiB), I/O BAR4 (32 ports),
/// COMMAND = mem+bus master, Status with a W1C error bit set, INT line 0x0B.
pub fn typical(x: &mut FakeFunc) {
    x.bar_mem64(0, 0x0000_0080_0000_0000, 0x4000)
        .bar_mem32(2, 0xFEB0_0000, 0x1000)
        .bar_io(4, 0xC000, 0x20)
        .set16(0x04, 0x0006)
        .set8(0x3C, 0x0B);
    x.data[0x07] |= 0x20; // Received Master Abort (W1C), must survive.
}

/// A driver for tests: matches by IDs, records calls and the COMMAND it saw during preinit.
pub struct FakeDriver {
    pub name: &'static str,
    pub ids: (u16, u16),
    pub preinit: Result<bool, DriverError>,
    pub calls: Rc<RefCell<Vec<String>>>,
    pub seen_command: Rc<Cell<u16>>,
    /// Preinit burns this much clock time.
    pub cost_us: u64,
}

impl FakeDriver {
    pub fn new(name: &'static str, ids: (u16, u16), preinit: Result<bool, DriverError>) -> Self {
        FakeDriver {
            name,
            ids,
            preinit,
            calls: Rc::new(RefCell::new(Vec::new())),
            seen_command: Rc::new(Cell::new(0)),
            cost_us: 0,
        }
    }
}

impl Driver for FakeDriver {
    fn name(&self) -> &'static str {
        self.name
    }
    fn matches(&self, dev: &PciDevice) -> bool {
        (dev.vendor, dev.device) == self.ids
    }
    fn preinit(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        dev: &PciDevice,
    ) -> Result<PreinitReport, DriverError> {
        self.calls
            .borrow_mut()
            .push(alloc::format!("preinit {}", dev.bdf));
        self.seen_command.set(ctx.cfg.read16(dev.bdf, reg::COMMAND));
        ctx.clock.delay_us(self.cost_us.min(ctx.time_left_us()));
        match &self.preinit {
            Ok(true) => Ok(PreinitReport::proven("status reads 0")),
            Ok(false) => Ok(PreinitReport::unproven("status stuck at 0x0f")),
            Err(e) => Err(e.clone()),
        }
    }
}
