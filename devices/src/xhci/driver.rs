//! The reinit engine's xHCI driver: preinit = halt (R/S ← 0, wait HCH), write a probe value to
//! CONFIG, HCRST, wait HCRST = 0 and CNR = 0. Proven when the controller reads halted and
//! ready, USBCMD reads 0, and CONFIG and DCBAAP read their reset value 0 (CONFIG was the probe,
//! DCBAAP the crashed kernel's context array).

use alloc::format;

use super::*;
use crate::block::regs::Regs;
use crate::hw::Mmio;
use crate::pci::PciDevice;
use crate::reinit::{BarResetDriver, DriverError, PreinitReport};
use crate::time::{Clock, poll_until};

/// Whether `dev` is an xHCI controller: class 0Ch (serial bus), subclass 03h (USB), programming
/// interface 30h (xHCI).
pub fn matches(dev: &PciDevice) -> bool {
    dev.class == 0x0C && dev.subclass == 0x03 && dev.prog_if == 0x30
}

/// The reinit engine's xHCI driver.
pub const DRIVER: BarResetDriver = BarResetDriver {
    name: "xhci",
    matches,
    bar: 0,
    reset: |regs: &Mmio, clock, budget_us| reset(regs, clock, budget_us),
};

/// Halts and resets the controller behind `regs` (BAR0), proving it by read-back.
pub fn reset(
    regs: &impl Regs,
    clock: &dyn Clock,
    budget_us: u64,
) -> Result<PreinitReport, DriverError> {
    let caplen = usize::from(regs.read8(CAPLENGTH));
    if regs.read32(0) == u32::MAX {
        return Err(DriverError::Gone);
    }
    if caplen < 0x20 || caplen + CONFIG + 4 > regs.size() {
        return Err(DriverError::Failed(format!(
            "CAPLENGTH {caplen:#x} implausible"
        )));
    }
    let op = |r: usize| caplen + r;
    let cmd_before = regs.read32(op(USBCMD));
    let sts_before = regs.read32(op(USBSTS));
    let dcbaap_before = regs.read64(op(DCBAAP));
    if cmd_before & CMD_RS != 0 {
        regs.write32(op(USBCMD), cmd_before & !CMD_RS);
    }
    poll_until(clock, HALT_TIMEOUT_US.min(budget_us), || {
        regs.read32(op(USBSTS)) & STS_HCH != 0
    })
    .map_err(|t| DriverError::timeout("USBSTS.HCH after R/S=0", t))?;
    // CONFIG may only be written while halted (§5.4.7).
    let config = regs.read32(op(CONFIG));
    regs.write32(op(CONFIG), (config & !0xFF) | PROBE_MAX_SLOTS);
    let probe = regs.read32(op(CONFIG)) & 0xFF;
    regs.write32(op(USBCMD), CMD_HCRST);
    poll_until(clock, RESET_TIMEOUT_US.min(budget_us), || {
        regs.read32(op(USBCMD)) & CMD_HCRST == 0 && regs.read32(op(USBSTS)) & STS_CNR == 0
    })
    .map_err(|t| DriverError::timeout("USBCMD.HCRST=0 and USBSTS.CNR=0", t))?;
    let cmd = regs.read32(op(USBCMD));
    let sts = regs.read32(op(USBSTS));
    let config_after = regs.read32(op(CONFIG)) & 0xFF;
    let dcbaap = regs.read64(op(DCBAAP));
    let detail = format!(
        "USBCMD {cmd_before:#x} -> {cmd:#x}, USBSTS {sts_before:#x} -> {sts:#x}, CONFIG probe \
         {probe} -> {config_after}, DCBAAP {dcbaap_before:#x} -> {dcbaap:#x}"
    );
    let halted = sts & STS_HCH != 0 && sts & STS_CNR == 0 && cmd & (CMD_RS | CMD_HCRST) == 0;
    if !halted {
        Ok(PreinitReport::unproven(format!(
            "{detail}; not halted and ready"
        )))
    } else if probe != PROBE_MAX_SLOTS || config_after != 0 || dcbaap != 0 {
        Ok(PreinitReport::unproven(format!(
            "{detail}; CONFIG/DCBAAP not back at 0: no reset seen"
        )))
    } else {
        Ok(PreinitReport::proven(detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::testkit::FakeClock;
    use core::cell::{Cell, RefCell};

    const CAP: usize = 0x40;

    /// A running xHCI as QEMU models it: R/S=0 halts at once, HCRST clears the operational
    /// registers (unless `ignores_reset`) and reports CNR for `cnr_reads` reads.
    struct Xhci {
        r: RefCell<[u32; 0x100]>,
        ignores_reset: bool,
        cnr_reads: Cell<u32>,
    }

    fn xhci(ignores_reset: bool) -> Xhci {
        let mut r = [0u32; 0x100];
        r[0] = CAP as u32 | (0x100 << 16);
        r[(CAP + USBCMD) / 4] = CMD_RS;
        r[(CAP + DCBAAP) / 4] = 0x3f00_0000;
        r[(CAP + CONFIG) / 4] = 64;
        Xhci {
            r: RefCell::new(r),
            ignores_reset,
            cnr_reads: Cell::new(0),
        }
    }

    impl Regs for Xhci {
        fn read32(&self, off: usize) -> u32 {
            let v = self.r.borrow()[off / 4];
            if off == CAP + USBSTS && self.cnr_reads.get() > 0 {
                self.cnr_reads.set(self.cnr_reads.get() - 1);
                return v | STS_CNR;
            }
            v
        }
        fn write32(&self, off: usize, v: u32) {
            let mut r = self.r.borrow_mut();
            match off {
                o if o == CAP + USBCMD => {
                    if v & CMD_HCRST != 0 {
                        if !self.ignores_reset {
                            r[(CAP + DCBAAP) / 4] = 0;
                            r[(CAP + CONFIG) / 4] = 0;
                        }
                        if self.cnr_reads.get() == 0 {
                            self.cnr_reads.set(3);
                        }
                        r[o / 4] = 0;
                    } else {
                        r[o / 4] = v;
                    }
                    r[(CAP + USBSTS) / 4] = if r[o / 4] & CMD_RS == 0 { STS_HCH } else { 0 };
                }
                o => r[o / 4] = v,
            }
        }
        fn size(&self) -> usize {
            0x400
        }
    }

    #[test]
    fn running_controller_is_halted_reset_and_proven() {
        let x = xhci(false);
        let r = reset(&x, &FakeClock::new(50), u64::MAX).unwrap();
        assert!(r.proven, "{}", r.detail);
        assert!(
            r.detail.contains("DCBAAP 0x3f000000 -> 0x0"),
            "{}",
            r.detail
        );
        assert!(r.detail.contains("CONFIG probe 1 -> 0"), "{}", r.detail);
        assert_eq!(x.read32(CAP + USBCMD), 0);
    }

    #[test]
    fn a_controller_that_ignores_hcrst_is_not_proven() {
        let x = xhci(true);
        let r = reset(&x, &FakeClock::new(50), u64::MAX).unwrap();
        assert!(
            !r.proven && r.detail.contains("no reset seen"),
            "{}",
            r.detail
        );
    }

    #[test]
    fn dead_and_stuck_controllers_are_bounded() {
        struct Dead;
        impl Regs for Dead {
            fn read32(&self, _: usize) -> u32 {
                u32::MAX
            }
            fn write32(&self, _: usize, _: u32) {}
        }
        assert_eq!(
            reset(&Dead, &FakeClock::new(50), u64::MAX),
            Err(DriverError::Gone)
        );
        let x = xhci(false);
        x.cnr_reads.set(u32::MAX);
        // CNR never clears after the reset: bounded by the reset timeout.
        let mut regs = x.r.borrow_mut();
        regs[(CAP + USBCMD) / 4] = 0;
        regs[(CAP + USBSTS) / 4] = STS_HCH;
        drop(regs);
        let e = reset(&x, &FakeClock::new(50), u64::MAX).unwrap_err();
        assert!(matches!(e, DriverError::Timeout { .. }), "{e:?}");
    }
}
