//! Intel e1000e network controllers (QEMU's `e1000e`, the 82574L): rkdump never drives the
//! network, but a NIC the crashed kernel left receiving keeps writing packets into old memory.
//! [`driver`] gives the reinit engine its preinit: mask interrupts, stop receive and transmit,
//! CTRL.RST, wait for the NVM auto-read to finish, proven by read-back; the function then stays
//! quiesced (bus mastering off).
//!
//! Offsets and bits cite the 82574 datasheet §10.2 and Linux `e1000e` (`drivers/net/ethernet/
//! intel/e1000e/`, `e1000_reset_hw_82571`, `e1000e_get_auto_rd_done`).

pub mod driver;

/// Device Control.
pub const CTRL: usize = 0x0000;
/// Device Status.
pub const STATUS: usize = 0x0008;
/// EEPROM/Flash Control.
pub const EECD: usize = 0x0010;
/// Interrupt Mask Set/Read.
pub const IMS: usize = 0x00D0;
/// Interrupt Mask Clear.
pub const IMC: usize = 0x00D8;
/// Receive Control.
pub const RCTL: usize = 0x0100;
/// Transmit Control.
pub const TCTL: usize = 0x0400;

/// CTRL: device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// EECD: NVM auto-read done.
pub const EECD_AUTO_RD: u32 = 1 << 9;
/// RCTL: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// TCTL: transmitter enable.
pub const TCTL_EN: u32 = 1 << 1;

/// The reset takes up to a few milliseconds; Linux sleeps 20 ms after RST on the 82571 family.
pub const RST_TIMEOUT_US: u64 = 100_000;
/// NVM auto-read: Linux waits up to 10 ms (`AUTO_READ_DONE_TIMEOUT`); 100 ms here.
pub const AUTO_RD_TIMEOUT_US: u64 = 100_000;
/// Interrupt causes written to IMS before the reset: RST must clear the mask.
pub const PROBE_IMS: u32 = 1 << 7; // RXT0
