//! Host tests for the driver kit.

use alloc::vec::Vec;
use core::cell::Cell;

use super::*;

#[test]
fn split_respects_limit_and_blocks() {
    let v: Vec<_> = split(10, 0x1204, 5 * 512, 9, 1024 + 100).collect();
    assert_eq!(
        v,
        [(10, 0x1204, 1024), (12, 0x1604, 1024), (14, 0x1A04, 512)]
    );
    assert_eq!(split(0, 0, 0, 9, 4096).count(), 0);
    assert_eq!(
        check_request(0, 0x1000, 1000, 9, 100, 4),
        Err("length is not a whole number of blocks")
    );
    assert_eq!(
        check_request(0, 0x1002, 512, 9, 100, 4),
        Err("buffer is misaligned")
    );
    assert_eq!(
        check_request(99, 0x1000, 1024, 9, 100, 4),
        Err("beyond the end of the device")
    );
    assert_eq!(
        check_request(u64::MAX, 0x1000, 512, 9, 100, 4),
        Err("beyond the end of the device")
    );
    assert_eq!(check_request(98, 0x1000, 1024, 9, 100, 4), Ok(()));
}

#[test]
fn slots_hand_out_lowest_and_refuse_strangers() {
    let mut s = Slots::new(3);
    assert_eq!(
        (s.alloc(), s.alloc(), s.alloc(), s.alloc()),
        (Some(0), Some(1), Some(2), None)
    );
    assert!(s.is_full());
    assert!(s.release(1));
    assert!(!s.release(1), "double release");
    assert!(!s.release(7), "never existed");
    assert_eq!(s.busy(), 0b101);
    assert_eq!(s.alloc(), Some(1));
    let mut all = Slots::new(64);
    assert_eq!((0..64).filter_map(|_| all.alloc()).count(), 64);
    assert!(!all.release(64));
}

#[test]
fn ident_strings_plain_and_ata_words() {
    assert_eq!(
        ident_string(b"QEMU NVMe Ctrl      ", ByteOrder::Plain),
        "QEMU NVMe Ctrl"
    );
    assert_eq!(
        ident_string(b"EQUMH RADDSI K ", ByteOrder::AtaWords),
        "QEMU HARDDISK"
    );
    assert_eq!(ident_string(&[0xFF, b'A', 0x01], ByteOrder::Plain), "?A?");
}

/// A 32-bit-only register file, as the NVMe and AHCI simulations are.
struct Dwords(Cell<[u32; 2]>);

impl Regs for Dwords {
    fn read32(&self, off: usize) -> u32 {
        self.0.get()[off / 4]
    }
    fn write32(&self, off: usize, v: u32) {
        let mut r = self.0.get();
        r[off / 4] = v;
        self.0.set(r);
    }
}

#[test]
fn narrow_accessors_go_through_the_aligned_dword() {
    let r = Dwords(Cell::new([0x4433_2211, 0x8877_6655]));
    assert_eq!(
        (r.read8(1), r.read16(2), r.read16(6)),
        (0x22, 0x4433, 0x8877)
    );
    assert_eq!(r.read64(0), 0x8877_6655_4433_2211);
    r.write8(2, 0xAA);
    r.write16(4, 0xBBCC);
    assert_eq!(r.0.get(), [0x44AA_2211, 0x8877_BBCC]);
    r.write64(0, 0x0102_0304_0506_0708);
    assert_eq!(r.0.get(), [0x0506_0708, 0x0102_0304]);
    assert_eq!(r.size(), usize::MAX);
}
