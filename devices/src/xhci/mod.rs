//! xHCI (USB 3) host controllers: rkdump never drives USB, but a controller the crashed kernel
//! left running keeps walking its rings and DMA-ing into old memory (USB storage, HID polling).
//! [`driver`] gives the reinit engine its preinit: halt, then HCRST, proven by read-back; the
//! function then stays quiesced (bus mastering off) for the rest of the run.
//!
//! Register offsets and bits cite the xHCI 1.2 specification, §5.3 (capability registers) and
//! §5.4 (operational registers); Linux `xhci_halt`, `xhci_reset` (`drivers/usb/host/xhci.c`).

pub mod driver;

/// CAPLENGTH (8-bit): offset of the operational registers from BAR0.
pub const CAPLENGTH: usize = 0x00;
/// USBCMD (operational + 0x00).
pub const USBCMD: usize = 0x00;
/// USBSTS (operational + 0x04).
pub const USBSTS: usize = 0x04;
/// DCBAAP, low half (operational + 0x30).
pub const DCBAAP: usize = 0x30;
/// CONFIG (operational + 0x38): MaxSlotsEn in bits 7:0.
pub const CONFIG: usize = 0x38;

/// USBCMD: Run/Stop.
pub const CMD_RS: u32 = 1 << 0;
/// USBCMD: Host Controller Reset (self-clearing).
pub const CMD_HCRST: u32 = 1 << 1;
/// USBSTS: HC Halted.
pub const STS_HCH: u32 = 1 << 0;
/// USBSTS: Controller Not Ready.
pub const STS_CNR: u32 = 1 << 11;

/// Halting must complete within 16 ms (§5.4.1); Linux waits up to 32 ms.
pub const HALT_TIMEOUT_US: u64 = 32_000;
/// HCRST and CNR: Linux allows 10 s for slow controllers; 1 s here (per-device cap applies).
pub const RESET_TIMEOUT_US: u64 = 1_000_000;
/// A MaxSlotsEn value written before the reset: HCRST must put CONFIG back to 0.
pub const PROBE_MAX_SLOTS: u32 = 1;
