//! Fixed legacy platform ports rkdump drives directly: the reset control register (0xCF9), the
//! keyboard controller's reset line (0x64), PIT channel 2 and its gate (0x42/0x43/0x61), and
//! QEMU's isa-debug-exit (0xF4). Each function writes only its own port with the values its
//! job needs; nothing else in rkdump uses these ports.

use rkdump_devices::hw::port::{inb, outb, outl};

/// isa-debug-exit I/O port used by the QEMU scenarios.
const QEMU_EXIT_PORT: u16 = 0xF4;

/// Writes `value` to QEMU's isa-debug-exit device (QEMU exits with `(value << 1) | 1`).
pub fn qemu_exit(value: u32) {
    // SAFETY: rkdump.exit=qemu is a test-only switch; the runner attaches isa-debug-exit at this
    // port. On a machine without it the write goes nowhere (0xF4 is unused on PCs).
    unsafe { outl(QEMU_EXIT_PORT, value) };
}

/// Requests a hard reset through the chipset's reset control register.
pub fn reset_cf9() {
    // SAFETY: 0xCF9 is the reset control register of PC chipsets (PIIX/ICH, q35); 0x02 then
    // 0x06 requests a hard CPU reset (Linux's reboot=pci). Resetting is the caller's intent.
    unsafe {
        outb(0xCF9, 0x02);
        outb(0xCF9, 0x06);
    }
}

/// Pulses the reset line through the keyboard controller.
pub fn reset_kbd() {
    // SAFETY: 0x64 is the 8042 command port; 0xFE pulses the CPU reset line (Linux's
    // reboot=kbd), the standard last-resort reset.
    unsafe { outb(0x64, 0xFE) };
}

/// Starts PIT channel 2 as a one-shot of `count` ticks, gated on and speaker off.
pub fn pit2_start(count: u16) {
    // SAFETY: ports 0x61 and 0x42/0x43 are the legacy PIT/speaker control every PC has;
    // channel 2 is not used by anything else in rkdump. Only the gate bit (0) is set and the
    // speaker bit (1) cleared in 0x61; the mode byte selects channel 2 only.
    unsafe {
        let v = inb(0x61);
        outb(0x61, (v & !0x02) | 0x01);
        outb(0x43, 0b1011_0000);
        outb(0x42, count as u8);
        outb(0x42, (count >> 8) as u8);
    }
}

/// Whether PIT channel 2's output went high (the one-shot started by [`pit2_start`] expired).
pub fn pit2_expired() -> bool {
    // SAFETY: as above; reading 0x61 has no side effect. Bit 5 is channel 2's output.
    unsafe { inb(0x61) & 0x20 != 0 }
}
