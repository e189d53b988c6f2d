//! The reinit engine's e1000e driver: preinit = mask every interrupt, receive and transmit off,
//! a probe value into IMS, CTRL.RST, wait RST = 0, wait EECD.AUTO_RD. Proven when IMS reads 0
//! (it held the probe), RCTL.EN and TCTL.EN read 0, and the NVM auto-read finished.

use alloc::format;

use super::*;
use crate::block::regs::Regs;
use crate::hw::Mmio;
use crate::pci::PciDevice;
use crate::reinit::{BarResetDriver, DriverError, PreinitReport};
use crate::time::{Clock, poll_until};

/// PCI device ids of the e1000e parts handled (82574L, what QEMU's `e1000e` presents).
pub const DEVICE_IDS: [u16; 1] = [0x10D3];

/// Whether `dev` is an e1000e NIC rkdump knows.
pub fn matches(dev: &PciDevice) -> bool {
    dev.vendor == 0x8086 && DEVICE_IDS.contains(&dev.device)
}

/// The reinit engine's e1000e driver.
pub const DRIVER: BarResetDriver = BarResetDriver {
    name: "e1000e",
    matches,
    bar: 0,
    reset: |regs: &Mmio, clock, budget_us| reset(regs, clock, budget_us),
};

/// Resets the NIC behind `regs` (BAR0), proving it by read-back.
pub fn reset(
    regs: &impl Regs,
    clock: &dyn Clock,
    budget_us: u64,
) -> Result<PreinitReport, DriverError> {
    let status = regs.read32(STATUS);
    if status == u32::MAX {
        return Err(DriverError::Gone);
    }
    if regs.size() < TCTL + 4 {
        return Err(DriverError::Failed("register window too small".into()));
    }
    let (rctl_before, tctl_before) = (regs.read32(RCTL), regs.read32(TCTL));
    // As Linux before a reset: no interrupts, receive and transmit stopped.
    regs.write32(IMC, u32::MAX);
    regs.write32(RCTL, rctl_before & !RCTL_EN);
    regs.write32(TCTL, tctl_before & !TCTL_EN);
    regs.write32(IMS, PROBE_IMS);
    let probe = regs.read32(IMS);
    let ctrl = regs.read32(CTRL);
    regs.write32(CTRL, ctrl | CTRL_RST);
    poll_until(clock, RST_TIMEOUT_US.min(budget_us), || {
        regs.read32(CTRL) & CTRL_RST == 0
    })
    .map_err(|t| DriverError::timeout("CTRL.RST=0", t))?;
    poll_until(clock, AUTO_RD_TIMEOUT_US.min(budget_us), || {
        regs.read32(EECD) & EECD_AUTO_RD != 0
    })
    .map_err(|t| DriverError::timeout("EECD.AUTO_RD (NVM auto-read done)", t))?;
    let (ims, rctl, tctl) = (regs.read32(IMS), regs.read32(RCTL), regs.read32(TCTL));
    let detail = format!(
        "RCTL {rctl_before:#x} -> {rctl:#x}, TCTL {tctl_before:#x} -> {tctl:#x}, IMS probe \
         {probe:#x} -> {ims:#x}, EECD.AUTO_RD set"
    );
    if probe & PROBE_IMS == 0 || ims != 0 {
        Ok(PreinitReport::unproven(format!(
            "{detail}; IMS not back at 0: no reset seen"
        )))
    } else if rctl & RCTL_EN != 0 || tctl & TCTL_EN != 0 {
        Ok(PreinitReport::unproven(format!("{detail}; still enabled")))
    } else {
        Ok(PreinitReport::proven(detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::testkit::FakeClock;
    use core::cell::{Cell, RefCell};

    /// A receiving 82574 as QEMU models it: IMS is set by IMS writes and cleared by IMC; RST
    /// clears IMS, RCTL, TCTL (unless `ignores_reset`), then the NVM auto-read completes after
    /// `auto_rd_reads` EECD reads.
    struct Nic {
        r: RefCell<alloc::collections::BTreeMap<usize, u32>>,
        ignores_reset: bool,
        auto_rd_reads: Cell<u32>,
    }

    fn nic(ignores_reset: bool) -> Nic {
        let mut r = alloc::collections::BTreeMap::new();
        r.insert(STATUS, 0x8008_0783);
        r.insert(RCTL, RCTL_EN | 0x8000);
        r.insert(TCTL, TCTL_EN | 0x3000_0000);
        r.insert(IMS, 0x9d);
        r.insert(EECD, EECD_AUTO_RD);
        Nic {
            r: RefCell::new(r),
            ignores_reset,
            auto_rd_reads: Cell::new(0),
        }
    }

    impl Regs for Nic {
        fn read32(&self, off: usize) -> u32 {
            let v = self.r.borrow().get(&off).copied().unwrap_or(0);
            if off == EECD && self.auto_rd_reads.get() > 0 {
                self.auto_rd_reads.set(self.auto_rd_reads.get() - 1);
                return v & !EECD_AUTO_RD;
            }
            v
        }
        fn write32(&self, off: usize, v: u32) {
            let mut r = self.r.borrow_mut();
            match off {
                IMS => *r.entry(IMS).or_default() |= v,
                IMC => *r.entry(IMS).or_default() &= !v,
                CTRL if v & CTRL_RST != 0 => {
                    if !self.ignores_reset {
                        r.insert(IMS, 0);
                        r.insert(RCTL, 0);
                        r.insert(TCTL, 0);
                    }
                    self.auto_rd_reads.set(5);
                    r.insert(CTRL, v & !CTRL_RST);
                }
                o => {
                    r.insert(o, v);
                }
            }
        }
        fn size(&self) -> usize {
            0x20000
        }
    }

    #[test]
    fn receiving_nic_is_reset_and_proven() {
        let n = nic(false);
        let r = reset(&n, &FakeClock::new(50), u64::MAX).unwrap();
        assert!(r.proven, "{}", r.detail);
        assert!(r.detail.contains("IMS probe 0x80 -> 0x0"), "{}", r.detail);
        assert!(r.detail.contains("RCTL 0x8002 -> 0x0"), "{}", r.detail);
    }

    #[test]
    fn a_nic_that_ignores_rst_is_not_proven() {
        let n = nic(true);
        let r = reset(&n, &FakeClock::new(50), u64::MAX).unwrap();
        assert!(
            !r.proven && r.detail.contains("no reset seen"),
            "{}",
            r.detail
        );
    }

    #[test]
    fn waits_are_bounded() {
        let n = nic(false);
        n.auto_rd_reads.set(u32::MAX);
        n.r.borrow_mut().insert(EECD, 0);
        // Auto-read never completes.
        let e = reset(&n, &FakeClock::new(50), u64::MAX).unwrap_err();
        assert!(matches!(e, DriverError::Timeout { what, .. } if what.contains("AUTO_RD")));
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
    }
}
