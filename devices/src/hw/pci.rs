//! PCI configuration mechanism #1 over ports 0xCF8/0xCFC: one owner of the address/data pair,
//! width-exact accesses behind a lock.

#![allow(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};

use super::port;
use crate::pci::{Bdf, ConfigSpace, access_ok};

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// Configuration mechanism #1 (PCI 3.0 §3.2.2.3.2): 256 bytes per function, segment 0 only.
/// The address/data pair is one resource, so accesses are serialised by a lock.
#[derive(Debug)]
pub struct PortConfig {
    busy: AtomicBool,
}

impl PortConfig {
    /// # Safety
    /// Ports 0xCF8-0xCFF must exist (x86 PC) and this must be the only user of them for the
    /// lifetime of the value: no second `PortConfig`, no other code touching those ports.
    pub unsafe fn new() -> Self {
        PortConfig {
            busy: AtomicBool::new(false),
        }
    }

    /// Runs `f` with CONFIG_ADDRESS selecting `bdf`/`off`, or returns `None` for addresses this
    /// mechanism cannot reach.
    fn with<R>(&self, bdf: Bdf, off: u16, width: u16, f: impl FnOnce(u16) -> R) -> Option<R> {
        if bdf.segment != 0 || !bdf.is_valid() || !access_ok(off, width, 256) {
            return None;
        }
        let addr = 0x8000_0000
            | (u32::from(bdf.bus) << 16)
            | (u32::from(bdf.dev) << 11)
            | (u32::from(bdf.func) << 8)
            | u32::from(off & 0xFC);
        while self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: `new`'s contract makes this value the only owner of 0xCF8; the lock keeps
        // the address and the following data access together.
        unsafe { port::outl(CONFIG_ADDRESS, addr) };
        let r = f(CONFIG_DATA + (off & 3));
        self.busy.store(false, Ordering::Release);
        Some(r)
    }
}

impl ConfigSpace for PortConfig {
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        self.with(bdf, off, 1, |p| {
            // SAFETY: the data port of the pair this value owns, selected by `with`; config
            // reads have no side effects beyond the function's own registers.
            unsafe { port::inb(p) }
        })
        .unwrap_or(u8::MAX)
    }
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        self.with(bdf, off, 2, |p| {
            // SAFETY: as in `read8`.
            unsafe { port::inw(p) }
        })
        .unwrap_or(u16::MAX)
    }
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.with(bdf, off, 4, |p| {
            // SAFETY: as in `read8`.
            unsafe { port::inl(p) }
        })
        .unwrap_or(u32::MAX)
    }
    fn write8(&self, bdf: Bdf, off: u16, v: u8) {
        self.with(bdf, off, 1, |p| {
            // SAFETY: the owned data port, selected by `with`; the caller intends this
            // config write, of exactly this width.
            unsafe { port::outb(p, v) }
        });
    }
    fn write16(&self, bdf: Bdf, off: u16, v: u16) {
        self.with(bdf, off, 2, |p| {
            // SAFETY: as in `write8`.
            unsafe { port::outw(p, v) }
        });
    }
    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        self.with(bdf, off, 4, |p| {
            // SAFETY: as in `write8`.
            unsafe { port::outl(p, v) }
        });
    }
    fn max_offset(&self) -> u16 {
        256
    }
}
