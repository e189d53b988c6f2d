//! x86 port I/O through the `x86_64` crate's [`Port`]: the one place rkdump's crates touch I/O
//! ports (the kernel's UART goes through `uart_16550`, which uses the same type).

#![allow(unsafe_code)]

use x86_64::instructions::port::Port;

/// # Safety
/// The port must belong to a device the caller owns; the read must have no side effect the
/// caller does not intend.
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: the caller's contract.
    unsafe { Port::<u8>::new(port).read() }
}

/// # Safety
/// As for [`inb`].
pub unsafe fn inw(port: u16) -> u16 {
    // SAFETY: the caller's contract.
    unsafe { Port::<u16>::new(port).read() }
}

/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    // SAFETY: the caller's contract.
    unsafe { Port::<u32>::new(port).read() }
}

/// # Safety
/// The port must belong to a device the caller owns and the write must be one it intends.
pub unsafe fn outb(port: u16, v: u8) {
    // SAFETY: the caller's contract.
    unsafe { Port::<u8>::new(port).write(v) }
}

/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, v: u16) {
    // SAFETY: the caller's contract.
    unsafe { Port::<u16>::new(port).write(v) }
}

/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, v: u32) {
    // SAFETY: the caller's contract.
    unsafe { Port::<u32>::new(port).write(v) }
}
