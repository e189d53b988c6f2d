//! The Intel 6300ESB watchdog timer (PCI 8086:25ab; 6300ESB datasheet §16; the register layout
//! Linux's `i6300esb` driver and QEMU's `wdt_i6300esb.c` use): a lock register in configuration
//! space (enable, lock) and, behind BAR0, a reload register guarded by a two-write unlock
//! sequence.
//!
//! Everything it reads is device state: the lock register is read back after each change, and
//! the enable bit is the proof of `off`.

use core::fmt;

use crate::block::regs::Regs;
use crate::pci::{Bdf, ConfigSpace, PciDevice};

/// PCI vendor of the 6300ESB.
pub const VENDOR_INTEL: u16 = 0x8086;
/// PCI device id of the 6300ESB watchdog function.
pub const DEVICE_6300ESB_WDT: u16 = 0x25AB;

/// Configuration register (16-bit): output enable, prescaler, interrupt type.
pub const CONFIG_REG: u16 = 0x60;
/// Lock register (8-bit).
pub const LOCK_REG: u16 = 0x68;
/// Lock register: the configuration is locked until reset (`nowayout`); enable cannot change.
pub const LOCK_LOCKED: u8 = 1 << 0;
/// Lock register: the watchdog counts.
pub const LOCK_ENABLE: u8 = 1 << 1;
/// Lock register: free-running mode (no reboot on expiry).
pub const LOCK_FREE_RUN: u8 = 1 << 2;

/// BAR0: timer 1 preload (20-bit).
pub const TIMER1_REG: usize = 0x00;
/// BAR0: timer 2 preload (20-bit).
pub const TIMER2_REG: usize = 0x04;
/// BAR0: reload register (16-bit): unlock sequence, then reload / timeout-clear bits.
pub const RELOAD_REG: usize = 0x0C;
/// First write of the unlock sequence.
pub const UNLOCK1: u16 = 0x80;
/// Second write of the unlock sequence.
pub const UNLOCK2: u16 = 0x86;
/// Reload register: restart the countdown from the preload values.
pub const RELOAD: u16 = 1 << 8;

/// PCI COMMAND register and its memory-space bit (the reload register is memory mapped).
const COMMAND: u16 = 0x04;
const COMMAND_MEMORY: u16 = 1 << 1;

/// What the lock register says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// The raw lock register.
    pub lock: u8,
}

impl State {
    /// The watchdog counts.
    pub fn enabled(self) -> bool {
        self.lock & LOCK_ENABLE != 0
    }
    /// Enable cannot be changed until the next reset.
    pub fn locked(self) -> bool {
        self.lock & LOCK_LOCKED != 0
    }
    /// Free-running: expiry does not reset the machine.
    pub fn free_running(self) -> bool {
        self.lock & LOCK_FREE_RUN != 0
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "enabled={} locked={}{}",
            u8::from(self.enabled()),
            u8::from(self.locked()),
            if self.free_running() {
                " free-running"
            } else {
                ""
            }
        )
    }
}

/// Whether `dev` is a 6300ESB watchdog.
pub fn matches(dev: &PciDevice) -> bool {
    dev.vendor == VENDOR_INTEL && dev.device == DEVICE_6300ESB_WDT
}

/// Reads the lock register.
pub fn state(cfg: &dyn ConfigSpace, bdf: Bdf) -> State {
    State {
        lock: cfg.read8(bdf, LOCK_REG),
    }
}

/// Turns memory decoding on (bus mastering stays off: the function never DMAs), so the reload
/// register answers after the quiesce pass turned it off.
pub fn enable_registers(cfg: &dyn ConfigSpace, bdf: Bdf) {
    let cmd = cfg.read16(bdf, COMMAND);
    if cmd & COMMAND_MEMORY == 0 {
        cfg.write16(bdf, COMMAND, cmd | COMMAND_MEMORY);
    }
}

/// Restarts the countdown: the unlock sequence, then the reload bit, each a 16-bit write.
pub fn reload(regs: &impl Regs) {
    regs.write16(RELOAD_REG, UNLOCK1);
    regs.write16(RELOAD_REG, UNLOCK2);
    regs.write16(RELOAD_REG, RELOAD);
}

/// Why the watchdog could not be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopError {
    /// The lock bit is set: enable is frozen until the machine resets.
    Locked(State),
    /// The enable bit read back set after clearing it.
    StillEnabled(State),
}

impl fmt::Display for StopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked(s) => write!(f, "locked by the crashed kernel ({s})"),
            Self::StillEnabled(s) => write!(f, "still enabled after the write ({s})"),
        }
    }
}

/// Stops the watchdog: reload first (so it cannot expire in between, as Linux does), then clear
/// the lock register; proven by reading it back. A locked watchdog is refused untouched.
pub fn stop(cfg: &dyn ConfigSpace, bdf: Bdf, regs: &impl Regs) -> Result<State, StopError> {
    let before = state(cfg, bdf);
    if before.locked() {
        return Err(StopError::Locked(before));
    }
    reload(regs);
    cfg.write8(bdf, LOCK_REG, 0);
    let after = state(cfg, bdf);
    if after.enabled() {
        return Err(StopError::StillEnabled(after));
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    /// The watchdog as QEMU models it: the lock register ignores writes while locked; the reload
    /// register counts a reload only after 0x80, 0x86.
    struct Esb {
        lock: RefCell<u8>,
        command: RefCell<u16>,
        unlock: RefCell<u8>,
        reloads: RefCell<u32>,
        writes: RefCell<Vec<u16>>,
    }

    fn esb(lock: u8) -> Esb {
        Esb {
            lock: RefCell::new(lock),
            command: RefCell::new(0x400),
            unlock: RefCell::new(0),
            reloads: RefCell::new(0),
            writes: RefCell::new(Vec::new()),
        }
    }

    const BDF: Bdf = Bdf {
        segment: 0,
        bus: 0,
        dev: 3,
        func: 0,
    };

    impl ConfigSpace for Esb {
        fn read8(&self, _: Bdf, off: u16) -> u8 {
            if off == LOCK_REG {
                *self.lock.borrow()
            } else {
                0
            }
        }
        fn read16(&self, _: Bdf, off: u16) -> u16 {
            if off == COMMAND {
                *self.command.borrow()
            } else {
                0
            }
        }
        fn read32(&self, _: Bdf, _: u16) -> u32 {
            0
        }
        fn write8(&self, _: Bdf, off: u16, v: u8) {
            if off == LOCK_REG && *self.lock.borrow() & LOCK_LOCKED == 0 {
                *self.lock.borrow_mut() = v;
            }
        }
        fn write16(&self, _: Bdf, off: u16, v: u16) {
            if off == COMMAND {
                *self.command.borrow_mut() = v;
            }
        }
        fn write32(&self, _: Bdf, _: u16, _: u32) {}
        fn max_offset(&self) -> u16 {
            256
        }
    }

    impl Regs for Esb {
        fn read32(&self, _: usize) -> u32 {
            0
        }
        fn write32(&self, _: usize, _: u32) {
            panic!("the reload register takes 16-bit writes only");
        }
        fn write16(&self, off: usize, v: u16) {
            assert_eq!(off, RELOAD_REG);
            self.writes.borrow_mut().push(v);
            let mut u = self.unlock.borrow_mut();
            *u = match (*u, v) {
                (_, UNLOCK1) => 1,
                (1, UNLOCK2) => 2,
                (2, v) => {
                    if v & RELOAD != 0 {
                        *self.reloads.borrow_mut() += 1;
                    }
                    0
                }
                _ => 0,
            };
        }
    }

    #[test]
    fn reload_is_unlock_then_reload() {
        let e = esb(LOCK_ENABLE);
        reload(&e);
        reload(&e);
        assert_eq!(*e.reloads.borrow(), 2);
        assert_eq!(
            *e.writes.borrow(),
            [UNLOCK1, UNLOCK2, RELOAD, UNLOCK1, UNLOCK2, RELOAD]
        );
    }

    #[test]
    fn stop_clears_enable_and_reads_it_back() {
        let e = esb(LOCK_ENABLE);
        let s = stop(&e, BDF, &e).unwrap();
        assert!(!s.enabled());
        assert_eq!(*e.lock.borrow(), 0);
        // Reloaded before the enable bit went, so it could not expire in between.
        assert_eq!(*e.reloads.borrow(), 1);
    }

    #[test]
    fn a_locked_watchdog_is_refused_untouched() {
        let e = esb(LOCK_ENABLE | LOCK_LOCKED);
        let err = stop(&e, BDF, &e).unwrap_err();
        assert!(matches!(err, StopError::Locked(s) if s.enabled() && s.locked()));
        assert!(e.writes.borrow().is_empty());
        assert_eq!(
            alloc::string::ToString::to_string(&err),
            "locked by the crashed kernel (enabled=1 locked=1)"
        );
    }

    #[test]
    fn memory_decode_goes_on_without_bus_mastering() {
        let e = esb(0);
        enable_registers(&e, BDF);
        assert_eq!(*e.command.borrow(), 0x400 | COMMAND_MEMORY);
    }
}
