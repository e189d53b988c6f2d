//! Enumeration: a depth-first walk from the root bus(es) through PCI-to-PCI bridges using the
//! bus numbers firmware assigned (rkdump never renumbers a live hierarchy), with BAR decoding.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use rkdump_boot::cmdline::DeviceMatch;

use super::{Bdf, Command, ConfigSpace, header_type, reg};

/// A decoded Base Address Register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bar {
    /// Unimplemented, or the upper half of a 64-bit BAR.
    #[default]
    None,
    /// 32-bit memory BAR.
    Mem32 {
        /// Assigned address (0 if firmware left it unassigned or a reset cleared it).
        addr: u32,
        /// Decoded size in bytes.
        size: u32,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// 64-bit memory BAR (occupies this slot and the next).
    Mem64 {
        /// Assigned address.
        addr: u64,
        /// Decoded size in bytes.
        size: u64,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// I/O BAR.
    Io {
        /// Assigned port.
        port: u32,
        /// Decoded size in bytes.
        size: u32,
    },
}

impl Bar {
    /// `(address, size)` of a memory BAR.
    pub fn mem(&self) -> Option<(u64, u64)> {
        match *self {
            Bar::Mem32 { addr, size, .. } => Some((u64::from(addr), u64::from(size))),
            Bar::Mem64 { addr, size, .. } => Some((addr, size)),
            _ => None,
        }
    }
}

/// One function found by [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Base class.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Revision.
    pub revision: u8,
    /// Raw header type (bit 7 = multi-function).
    pub header_type: u8,
    /// A PCI-to-PCI bridge (header type 1).
    pub is_bridge: bool,
    /// Bridges: secondary bus number (0 otherwise).
    pub secondary_bus: u8,
    /// Bridges: subordinate bus number (0 otherwise).
    pub subordinate_bus: u8,
    /// BARs (type 0: six, type 1: two, others none).
    pub bars: [Bar; 6],
}

impl PciDevice {
    /// The 24-bit class code: base class << 16 | subclass << 8 | programming interface (how
    /// the config blob records it).
    pub fn class_code(&self) -> u32 {
        u32::from(self.class) << 16 | u32::from(self.subclass) << 8 | u32::from(self.prog_if)
    }

    /// Whether a `rkdump.deny=` / `rkdump.allow=` item names this function.
    pub fn matches(&self, m: &DeviceMatch) -> bool {
        m.matches(self.vendor, self.device, self.class, self.subclass)
    }
}

/// An anomaly met during the scan; the affected device or bridge is skipped, the rest scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanIssue {
    /// A bridge's secondary bus is not above its own bus (unconfigured or looping).
    BadSecondary {
        /// The bridge.
        bridge: Bdf,
        /// Its secondary bus.
        secondary: u8,
    },
    /// A bridge points to a bus already scanned (two bridges claim one bus, or a loop).
    BusRevisited {
        /// The bridge.
        bridge: Bdf,
        /// The bus.
        bus: u8,
    },
    /// A 64-bit BAR in the last slot, or a reserved BAR type.
    BadBar {
        /// The function.
        bdf: Bdf,
        /// BAR index.
        index: u8,
    },
}

impl fmt::Display for ScanIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanIssue::BadSecondary { bridge, secondary } => {
                write!(
                    f,
                    "bridge {bridge}: secondary bus {secondary:#x} not below it, not followed"
                )
            }
            ScanIssue::BusRevisited { bridge, bus } => {
                write!(
                    f,
                    "bridge {bridge}: bus {bus:#x} already scanned, not followed"
                )
            }
            ScanIssue::BadBar { bdf, index } => write!(f, "{bdf}: BAR{index} malformed, ignored"),
        }
    }
}

/// Result of [`scan`]: functions in depth-first order and what was skipped.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Every present function.
    pub devices: Vec<PciDevice>,
    /// Anomalies (each also logged).
    pub issues: Vec<ScanIssue>,
}

impl Scan {
    /// The bridge whose secondary bus `bdf` sits on (its upstream bridge), if scanned.
    pub fn parent_bridge(&self, bdf: Bdf) -> Option<&PciDevice> {
        self.devices
            .iter()
            .find(|p| p.is_bridge && p.secondary_bus == bdf.bus && p.bdf.segment == bdf.segment)
    }

    /// The function at `bdf`.
    pub fn find(&self, bdf: Bdf) -> Option<&PciDevice> {
        self.devices.iter().find(|d| d.bdf == bdf)
    }
}

/// Scans `segment` depth-first from `root_bus` (0, or the MCFG start bus).
pub fn scan(cfg: &dyn ConfigSpace, segment: u16, root_bus: u8) -> Scan {
    scan_roots(cfg, segment, &[root_bus])
}

struct Cursor {
    bus: u8,
    dev: u8,
    func: u8,
}

/// Scans several root buses (extra host bridges from ACPI) of one segment. Each bus is
/// visited at most once, so at most 256 buses are scanned whatever the bridges claim.
pub fn scan_roots(cfg: &dyn ConfigSpace, segment: u16, roots: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut visited = [false; 256];
    for &root in roots {
        if visited[usize::from(root)] {
            continue;
        }
        visited[usize::from(root)] = true;
        // Explicit stack instead of recursion: the depth is firmware-controlled.
        let mut stack = vec![Cursor {
            bus: root,
            dev: 0,
            func: 0,
        }];
        while let Some(top) = stack.last_mut() {
            if top.dev == 32 {
                stack.pop();
                continue;
            }
            let bdf = Bdf {
                segment,
                bus: top.bus,
                dev: top.dev,
                func: top.func,
            };
            let present = cfg.read16(bdf, reg::VENDOR_ID) != u16::MAX;
            let ht = if present {
                cfg.read8(bdf, reg::HEADER_TYPE)
            } else {
                0
            };
            // Functions 1-7 exist only behind a multi-function function 0; an absent function 0
            // means an empty slot.
            let multi = ht & header_type::MULTI_FUNCTION != 0;
            if (top.func == 0 && !(present && multi)) || top.func == 7 {
                top.dev += 1;
                top.func = 0;
            } else {
                top.func += 1;
            }
            if !present {
                continue;
            }
            let d = read_function(cfg, bdf, &mut out.issues);
            out.devices.push(d);
            if d.is_bridge {
                let sec = d.secondary_bus;
                if sec <= bdf.bus {
                    push_issue(
                        &mut out.issues,
                        ScanIssue::BadSecondary {
                            bridge: bdf,
                            secondary: sec,
                        },
                    );
                } else if visited[usize::from(sec)] {
                    push_issue(
                        &mut out.issues,
                        ScanIssue::BusRevisited {
                            bridge: bdf,
                            bus: sec,
                        },
                    );
                } else {
                    visited[usize::from(sec)] = true;
                    stack.push(Cursor {
                        bus: sec,
                        dev: 0,
                        func: 0,
                    });
                }
            }
        }
    }
    out
}

fn push_issue(issues: &mut Vec<ScanIssue>, i: ScanIssue) {
    log::warn!("pci: {i}");
    issues.push(i);
}

fn read_function(cfg: &dyn ConfigSpace, bdf: Bdf, issues: &mut Vec<ScanIssue>) -> PciDevice {
    let ht = cfg.read8(bdf, reg::HEADER_TYPE);
    let kind = ht & !header_type::MULTI_FUNCTION;
    let is_bridge = kind == header_type::BRIDGE;
    let (secondary_bus, subordinate_bus) = if is_bridge {
        (
            cfg.read8(bdf, reg::SECONDARY_BUS),
            cfg.read8(bdf, reg::SUBORDINATE_BUS),
        )
    } else {
        (0, 0)
    };
    let (bars, bad) = probe_bars(cfg, bdf);
    for index in bad {
        push_issue(issues, ScanIssue::BadBar { bdf, index });
    }
    PciDevice {
        bdf,
        vendor: cfg.read16(bdf, reg::VENDOR_ID),
        device: cfg.read16(bdf, reg::DEVICE_ID),
        class: cfg.read8(bdf, reg::CLASS),
        subclass: cfg.read8(bdf, reg::SUBCLASS),
        prog_if: cfg.read8(bdf, reg::PROG_IF),
        revision: cfg.read8(bdf, reg::REVISION),
        header_type: ht,
        is_bridge,
        secondary_bus,
        subordinate_bus,
        bars,
    }
}

/// Decodes and sizes the BARs of `bdf` with the write-all-ones probe. I/O and memory decode are
/// off during the probe (a half-written BAR must not claim addresses), except on host bridges,
/// and every register is restored, COMMAND with a 16-bit write. Returns the BARs and the indices of malformed ones.
pub fn probe_bars(cfg: &dyn ConfigSpace, bdf: Bdf) -> ([Bar; 6], Vec<u8>) {
    let mut bars = [Bar::None; 6];
    let mut bad = Vec::new();
    let n = match cfg.read8(bdf, reg::HEADER_TYPE) & !header_type::MULTI_FUNCTION {
        header_type::ENDPOINT => 6,
        header_type::BRIDGE => 2,
        _ => 0,
    };
    if n == 0 {
        return (bars, bad);
    }
    let cmd = cfg.read16(bdf, reg::COMMAND);
    let decode = Command::IO_SPACE | Command::MEMORY_SPACE;
    // Host bridges keep decoding (Linux's `quirk_mmio_always_on`): turning them off can take
    // RAM or the legacy ports (console, PM timer) away mid-probe.
    let host_bridge = cfg.read8(bdf, reg::CLASS) == 0x06 && cfg.read8(bdf, reg::SUBCLASS) == 0x00;
    let quiet = if host_bridge {
        cmd
    } else {
        cmd & !decode.bits()
    };
    if cmd != quiet {
        cfg.write16(bdf, reg::COMMAND, quiet);
    }
    let mut i = 0;
    while i < n {
        let off = reg::BAR0 + 4 * i as u16;
        let orig = cfg.read32(bdf, off);
        let mut step = 1;
        if orig == u32::MAX {
            // Not a possible BAR value (reserved bits read 0): the function is gone.
        } else if orig & 1 == 1 {
            let mask = size_probe(cfg, bdf, off, orig) & !0x3;
            // Devices may decode only 16 I/O address bits and hardwire the top half to 0.
            let mask = if mask & 0xFFFF_0000 == 0 && mask != 0 {
                mask | 0xFFFF_0000
            } else {
                mask
            };
            if mask != 0 {
                bars[i] = Bar::Io {
                    port: orig & !0x3,
                    size: (!mask).wrapping_add(1),
                };
            }
        } else {
            let prefetchable = orig & 0x8 != 0;
            match (orig >> 1) & 0x3 {
                // 0: anywhere in 32 bits; 1: legacy below 1 MiB, decoded the same way.
                0 | 1 => {
                    let mask = size_probe(cfg, bdf, off, orig) & !0xF;
                    if mask != 0 {
                        bars[i] = Bar::Mem32 {
                            addr: orig & !0xF,
                            size: (!mask).wrapping_add(1),
                            prefetchable,
                        };
                    }
                }
                2 if i + 1 < n => {
                    step = 2;
                    let orig_hi = cfg.read32(bdf, off + 4);
                    let lo = size_probe(cfg, bdf, off, orig) & !0xF;
                    let hi = size_probe(cfg, bdf, off + 4, orig_hi);
                    let mask = (u64::from(hi) << 32) | u64::from(lo);
                    if mask != 0 {
                        bars[i] = Bar::Mem64 {
                            addr: (u64::from(orig_hi) << 32) | u64::from(orig & !0xF),
                            size: (!mask).wrapping_add(1),
                            prefetchable,
                        };
                    }
                }
                _ => bad.push(i as u8),
            }
        }
        i += step;
    }
    if cmd != quiet {
        cfg.write16(bdf, reg::COMMAND, cmd);
    }
    (bars, bad)
}

/// Writes all-ones, reads the size mask back, restores the original value.
fn size_probe(cfg: &dyn ConfigSpace, bdf: Bdf, off: u16, orig: u32) -> u32 {
    cfg.write32(bdf, off, u32::MAX);
    let mask = cfg.read32(bdf, off);
    cfg.write32(bdf, off, orig);
    mask
}
