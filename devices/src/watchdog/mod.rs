//! Hardware watchdogs a crashed kernel may have armed (cluster fencing, systemd's
//! RuntimeWatchdogSec): found among the PCI functions, then kept from firing during the dump
//! (`rkdump.watchdog=pet`, the default: reloaded from the dump's progress loop only, so a hung
//! rkdump still gets reset), stopped (`off`) or left alone (`keep`).
//! Console lines: `rkdump: watchdog ...` (docs/device-reinit.md#watchdog).
//!
//! Supported: the Intel 6300ESB watchdog ([`i6300esb`], QEMU's `i6300esb`). The ICH9 TCO
//! watchdog is not handled yet.

pub mod i6300esb;

pub use rkdump_boot::cmdline::WatchdogMode;
