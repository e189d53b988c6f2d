//! Host tests of the dump-disk search pieces: which functions are candidates, how opening
//! failures read, and the label check against the simulated NVMe controller.

use alloc::format;
use alloc::vec::Vec;

use super::*;
use crate::block::testkit::{Arena, FakeClock};
use crate::nvme::Nvme;
use crate::nvme::model::FakeNvme;
use crate::pci::fake::FakeConfig;
use crate::pci::{Bar, Bdf};
use crate::reinit::{DriverId, NoPlatform};
use crate::virtio::VIRTIO_VENDOR;

fn function(vendor: u16, device: u16, class: (u8, u8, u8)) -> PciDevice {
    PciDevice {
        bdf: Bdf::new(0, 0, 3, 0).unwrap(),
        vendor,
        device,
        class: class.0,
        subclass: class.1,
        prog_if: class.2,
        revision: 0,
        header_type: 0,
        is_bridge: false,
        secondary_bus: 0,
        subordinate_bus: 0,
        bars: [Bar::None; 6],
    }
}

#[test]
fn each_driver_claims_its_functions() {
    let virtio = function(VIRTIO_VENDOR, 0x1042, (1, 0, 0));
    let legacy_virtio = function(VIRTIO_VENDOR, 0x1001, (1, 0, 0));
    let net = function(VIRTIO_VENDOR, 0x1041, (2, 0, 0));
    let nvme = function(0x1b36, 0x0010, (1, 8, 2));
    let ahci = function(0x8086, 0x2922, (1, 6, 1));
    let ide = function(0x8086, 0x7010, (1, 1, 0x80));
    assert_eq!(DiskKind::of(&virtio), Some(DiskKind::VirtioBlk));
    assert_eq!(DiskKind::of(&legacy_virtio), Some(DiskKind::VirtioBlk));
    assert_eq!(DiskKind::of(&nvme), Some(DiskKind::Nvme));
    assert_eq!(DiskKind::of(&ahci), Some(DiskKind::Ahci));
    assert_eq!((DiskKind::of(&net), DiskKind::of(&ide)), (None, None));
    assert_eq!(format!("{}", DiskKind::VirtioBlk), "virtio-blk");

    let set = reinit_drivers();
    let names: Vec<_> = (0..set.len())
        .filter_map(|i| set.name(DriverId(i)))
        .collect();
    assert_eq!(names, ["virtio-blk", "nvme", "ahci"]);
    assert_eq!(set.find(&nvme).and_then(|id| set.name(id)), Some("nvme"));
    assert_eq!(set.find(&net), None);
}

#[test]
fn candidates_are_one_per_function_or_per_populated_port() {
    let cfg = FakeConfig::new(4096);
    let nvme = function(0x1b36, 0x0010, (1, 8, 2));
    cfg.add(nvme.bdf, nvme.vendor, nvme.device, |_| {});
    let c = candidates(&mut NoPlatform, &cfg, &nvme, DiskKind::Nvme);
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].kind, c[0].port), (DiskKind::Nvme, None));
    // An HBA whose registers cannot be mapped shows no ports, so no candidates.
    let ahci = function(0x8086, 0x2922, (1, 6, 1));
    assert!(candidates(&mut NoPlatform, &cfg, &ahci, DiskKind::Ahci).is_empty());
}

#[test]
fn open_errors_say_what_failed() {
    let not_disk = OpenError::Ahci(AhciError::NotDisk {
        port: 2,
        sig: 0xEB14_0101,
    });
    assert!(not_disk.is_not_disk());
    assert!(!OpenError::Nvme(NvmeError::Gone).is_not_disk());
    assert_eq!(
        format!("{}", OpenError::from(DriverError::NoMmio { bar: 5 })),
        "BAR5 not mappable"
    );
    let io = NotDumpDisk::Io(BlockError::DeviceError {
        status: virtio_blk::DEVICE_STATUS_ERROR | 0x40,
    });
    assert!(format!("{io}").ends_with("(the device set NEEDS_RESET)"));
    let plain = NotDumpDisk::Io(BlockError::DeviceError { status: 1 });
    assert_eq!(format!("{plain}"), "reading LBA 0: device error status 0x1");
}

#[test]
fn the_label_is_read_and_checked_against_the_device() {
    let mut arena = Arena::new(8 << 20);
    let clock = FakeClock::new(100);
    let fake = FakeNvme::new(&arena);
    let mut dev = Nvme::new(&fake, &mut arena, &clock).unwrap();
    assert_eq!(
        read_label(&mut dev, &mut arena),
        Err(NotDumpDisk::NoLabel(label::Error::BadMagic))
    );
    let size = fake.0.borrow().disk.len() as u64;
    let fits = Label::new([1; 16], size, 0).unwrap();
    fake.0.borrow_mut().disk[..4096].copy_from_slice(&fits.to_bytes());
    assert_eq!(read_label(&mut dev, &mut arena), Ok(fits));
    let too_big = Label::new([1; 16], 2 * size, 0).unwrap();
    fake.0.borrow_mut().disk[..4096].copy_from_slice(&too_big.to_bytes());
    assert!(matches!(
        read_label(&mut dev, &mut arena),
        Err(NotDumpDisk::NoLabel(label::Error::DeviceTooSmall { .. }))
    ));
}
