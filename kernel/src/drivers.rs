//! rkdump's drivers as the reinit engine sees them (devices::reinit::Driver): each one's
//! `preinit` is the driver-specific soft reset the NTT design calls for, proven by read-back;
//! `probe` is left to the disk layer, which opens the dump device itself.

use alloc::boxed::Box;
use alloc::format;

use rkdump_devices::ahci::Ahci;
use rkdump_devices::hw::Mmio;
use rkdump_devices::nvme::{self, Nvme};
use rkdump_devices::pci::PciDevice;
use rkdump_devices::reinit::{Driver, DriverCtx, DriverError, DriverSet, PreinitReport};
use rkdump_devices::virtio_blk;

fn bar(ctx: &mut DriverCtx<'_>, dev: &PciDevice, i: u8) -> Result<Mmio, DriverError> {
    let (addr, size) = dev
        .bars
        .get(usize::from(i))
        .and_then(|b| b.mem())
        .filter(|&(a, _)| a != 0)
        .ok_or(DriverError::NoMmio { bar: i })?;
    ctx.platform
        .map_mmio(addr, size)
        .ok_or(DriverError::NoMmio { bar: i })
}

struct VirtioBlkDriver;

impl Driver for VirtioBlkDriver {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }
    fn matches(&self, dev: &PciDevice) -> bool {
        virtio_blk::is_virtio_blk(dev)
    }
    fn preinit(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        dev: &PciDevice,
    ) -> Result<PreinitReport, DriverError> {
        let info = virtio_blk::locate_virtio_regions(ctx.cfg, dev)
            .map_err(|e| DriverError::Failed(format!("{e:?}")))?;
        let common = ctx
            .platform
            .map_mmio(info.common.phys, u64::from(info.common.len))
            .ok_or(DriverError::NoMmio {
                bar: info.common.bar,
            })?;
        let us = virtio_blk::reset_only(&common, ctx.clock)
            .map_err(|e| DriverError::Failed(format!("{e:?}")))?;
        Ok(PreinitReport::proven(format!(
            "device_status reads 0 after {us} us"
        )))
    }
    fn probe(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) -> Result<(), DriverError> {
        Ok(())
    }
    fn remove(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) {}
    fn shutdown(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) {}
}

struct NvmeDriver;

impl Driver for NvmeDriver {
    fn name(&self) -> &'static str {
        "nvme"
    }
    fn matches(&self, dev: &PciDevice) -> bool {
        dev.class == 0x01 && dev.subclass == 0x08 && dev.prog_if == 0x02
    }
    fn preinit(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        dev: &PciDevice,
    ) -> Result<PreinitReport, DriverError> {
        let regs = bar(ctx, dev, 0)?;
        let r = Nvme::preinit(&regs, ctx.clock).map_err(|e| match e {
            rkdump_devices::nvme::NvmeError::Gone => DriverError::Gone,
            e => DriverError::Failed(format!("{e}")),
        })?;
        // Proof: the controller now reads disabled and not ready.
        let cc = nvme::Regs::read32(&regs, 0x14);
        let csts = nvme::Regs::read32(&regs, 0x1C);
        let detail = format!(
            "CC {cc:#x} CSTS {csts:#x} (was CC {:#x} CSTS {:#x})",
            r.cc_before, r.csts_before
        );
        Ok(if cc & 1 == 0 && csts & 1 == 0 {
            PreinitReport::proven(detail)
        } else {
            PreinitReport::unproven(detail)
        })
    }
    fn probe(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) -> Result<(), DriverError> {
        Ok(())
    }
    fn remove(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) {}
    fn shutdown(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) {}
}

struct AhciDriver;

impl Driver for AhciDriver {
    fn name(&self) -> &'static str {
        "ahci"
    }
    fn matches(&self, dev: &PciDevice) -> bool {
        dev.class == 0x01 && dev.subclass == 0x06 && dev.prog_if == 0x01
    }
    fn preinit(
        &mut self,
        ctx: &mut DriverCtx<'_>,
        dev: &PciDevice,
    ) -> Result<PreinitReport, DriverError> {
        let regs = bar(ctx, dev, 5)?;
        let r = Ahci::preinit(&regs, ctx.clock).map_err(|e| DriverError::Failed(format!("{e}")))?;
        const GHC: usize = 0x04;
        let ghc = nvme::Regs::read32(&regs, GHC);
        let detail = format!(
            "GHC {ghc:#x} (was {:#x}), ports running before {:#x}",
            r.ghc_before, r.ports_running
        );
        // After HR only AE (bit 31) may be set: interrupts off, no reset pending.
        Ok(if ghc & 0x7FFF_FFFF == 0 {
            PreinitReport::proven(detail)
        } else {
            PreinitReport::unproven(detail)
        })
    }
    fn probe(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) -> Result<(), DriverError> {
        Ok(())
    }
    fn remove(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) {}
    fn shutdown(&mut self, _ctx: &mut DriverCtx<'_>, _dev: &PciDevice) {}
}

/// Every driver rkdump has, registered for the reinit engine.
pub fn all() -> DriverSet {
    let mut set = DriverSet::new();
    let drivers: [Box<dyn Driver>; 3] = [
        Box::new(VirtioBlkDriver),
        Box::new(NvmeDriver),
        Box::new(AhciDriver),
    ];
    for d in drivers {
        set.register(d);
    }
    set
}
