//! Assigning BARs the way firmware would, for a function a reset left without addresses and for
//! which neither the firmware blob nor the pre-reset snapshot had usable ones: each unassigned
//! memory BAR gets a naturally aligned range inside its parent bridge's window (prefetchable
//! 64-bit BARs prefer the prefetchable window) that no other function below that bridge uses.
//! Planning over [`ConfigSpace`] reads ([`plan`]), then [`apply`] writes it.

use alloc::vec::Vec;
use core::fmt;

use super::bridge::{self, Window};
use super::{Bar, Bdf, ConfigSpace, LiveView, PciDevice, reg};

/// Memory (0x20) and prefetchable (0x24..0x2C) windows of the type-1 function `bridge`
/// ([`bridge::windows`]); `None` for a closed window (base > limit).
pub fn bridge_windows(
    cfg: &dyn ConfigSpace,
    bridge: Bdf,
) -> (Option<Window<u64>>, Option<Window<u64>>) {
    let w = bridge::windows(&LiveView::new(cfg, bridge));
    let mem = Window {
        base: u64::from(w.mem.base),
        limit: u64::from(w.mem.limit),
    };
    let open = |w: Window<u64>| w.is_open().then_some(w);
    (open(mem), open(w.pref))
}

/// One BAR to program: dword offset of the BAR and the address (64-bit BARs: low then high).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarAssignment {
    /// BAR index 0..=5.
    pub index: u8,
    /// Assigned address.
    pub addr: u64,
    /// Size.
    pub size: u64,
    /// 64-bit BAR (the next dword gets the high half).
    pub is64: bool,
}

impl fmt::Display for BarAssignment {
    /// `BAR<i>=<addr>+<size>`, as the kernel's console line lists them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BAR{}={:#x}+{:#x}", self.index, self.addr, self.size)
    }
}

/// Why a BAR could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignError {
    /// The function sits on a root bus: no bridge window to allocate from.
    NoParentWindow,
    /// No free, aligned range of this size in the window.
    NoSpace {
        /// BAR index.
        index: u8,
        /// Size needed.
        size: u64,
    },
}

fn first_fit(win: Window<u64>, size: u64, used: &[(u64, u64)], below_4g: bool) -> Option<u64> {
    let mut at = win.base.checked_add(size - 1)? & !(size - 1);
    loop {
        let end = at.checked_add(size - 1)?;
        if end > win.limit || (below_4g && end > u64::from(u32::MAX)) {
            return None;
        }
        match used.iter().find(|&&(s, e)| at <= e && s <= end) {
            // Skip past the conflicting range, re-aligned.
            Some(&(_, e)) => at = e.checked_add(size)? & !(size - 1),
            None => return Some(at),
        }
    }
}

/// Plans addresses for every unassigned memory BAR of `dev` (scanned with sizes) behind
/// `parent` (its upstream bridge), avoiding the memory BARs of `others` (every other function
/// of the scan; only overlaps matter, so passing all is fine).
pub fn plan(
    cfg: &dyn ConfigSpace,
    dev: &PciDevice,
    parent: Option<Bdf>,
    others: &[PciDevice],
) -> Result<Vec<BarAssignment>, AssignError> {
    let parent = parent.ok_or(AssignError::NoParentWindow)?;
    let (mem, pref) = bridge_windows(cfg, parent);
    let mut used: Vec<(u64, u64)> = others
        .iter()
        .filter(|o| o.bdf != dev.bdf)
        .flat_map(|o| o.bars.iter().filter_map(Bar::mem))
        .filter(|&(a, s)| a != 0 && s != 0)
        .map(|(a, s)| (a, a + s - 1))
        .collect();
    let mut out = Vec::new();
    for (i, bar) in dev.bars.iter().enumerate() {
        let (size, is64, prefetchable) = match *bar {
            Bar::Mem32 {
                addr: 0,
                size,
                prefetchable,
            } if size > 0 => (u64::from(size), false, prefetchable),
            Bar::Mem64 {
                addr: 0,
                size,
                prefetchable,
            } if size > 0 => (size, true, prefetchable),
            _ => continue,
        };
        if !size.is_power_of_two() {
            continue;
        }
        let index = i as u8;
        // A prefetchable 64-bit BAR may live in the prefetchable window; everything may live in
        // the memory window (below 4 GiB).
        let candidates = [(pref.filter(|_| prefetchable && is64), false), (mem, true)];
        let addr = candidates
            .iter()
            .filter_map(|&(w, below)| w.and_then(|w| first_fit(w, size, &used, below || !is64)))
            .next()
            .ok_or(AssignError::NoSpace { index, size })?;
        used.push((addr, addr + size - 1));
        out.push(BarAssignment {
            index,
            addr,
            size,
            is64,
        });
    }
    Ok(out)
}

/// Programs `plan` into `bdf`'s BARs: whole 32-bit dwords, the low half of a 64-bit BAR first.
pub fn apply(cfg: &dyn ConfigSpace, bdf: Bdf, plan: &[BarAssignment]) {
    for a in plan {
        let off = reg::BAR0 + 4 * u16::from(a.index);
        cfg.write32(bdf, off, a.addr as u32);
        if a.is64 {
            cfg.write32(bdf, off + 4, (a.addr >> 32) as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::fake::FakeConfig;

    fn bdf(bus: u8, dev: u8) -> Bdf {
        Bdf {
            segment: 0,
            bus,
            dev,
            func: 0,
        }
    }

    fn device(b: Bdf, bars: [Bar; 6]) -> PciDevice {
        PciDevice {
            bdf: b,
            vendor: 0x1b36,
            device: 0x10,
            class: 1,
            subclass: 8,
            prog_if: 2,
            revision: 0,
            header_type: 0,
            is_bridge: false,
            secondary_bus: 0,
            subordinate_bus: 0,
            bars,
        }
    }

    #[test]
    fn windows_decode_and_plan_avoids_neighbours() {
        let cfg = FakeConfig::new(256);
        cfg.add_bridge(bdf(0, 1), 1, 1);
        cfg.with(bdf(0, 1), |f| {
            f.set32(0x20, 0xFE70_FE60); // mem 0xfe600000..0xfe7fffff
            f.set32(0x24, 0x0001_FFF1); // prefetchable closed (base > limit)
        });
        let (mem, pref) = bridge_windows(&cfg, bdf(0, 1));
        assert_eq!(
            mem,
            Some(Window {
                base: 0xFE60_0000,
                limit: 0xFE7F_FFFF
            })
        );
        assert_eq!(pref, None);

        let mut bars = [Bar::None; 6];
        bars[0] = Bar::Mem64 {
            addr: 0,
            size: 0x4000,
            prefetchable: false,
        };
        bars[2] = Bar::Mem32 {
            addr: 0,
            size: 0x1000,
            prefetchable: false,
        };
        let dev = device(bdf(1, 0), bars);
        let mut nb = [Bar::None; 6];
        nb[0] = Bar::Mem32 {
            addr: 0xFE60_0000,
            size: 0x4000,
            prefetchable: false,
        };
        let neighbour = device(bdf(1, 1), nb);
        let plan = plan(&cfg, &dev, Some(bdf(0, 1)), &[neighbour, dev]).unwrap();
        assert_eq!(
            plan[0],
            BarAssignment {
                index: 0,
                addr: 0xFE60_4000,
                size: 0x4000,
                is64: true
            }
        );
        assert_eq!(
            plan[1],
            BarAssignment {
                index: 2,
                addr: 0xFE60_8000,
                size: 0x1000,
                is64: false
            }
        );
        assert_eq!(alloc::format!("{}", plan[0]), "BAR0=0xfe604000+0x4000");

        // Applied: whole dwords, low half of the 64-bit BAR first.
        cfg.add(bdf(1, 0), 0x1b36, 0x10, |_| {});
        cfg.clear_writes();
        apply(&cfg, bdf(1, 0), &plan);
        let w: Vec<_> = cfg
            .writes()
            .iter()
            .map(|w| (w.off, w.width, w.value))
            .collect();
        assert_eq!(
            w,
            [(0x10, 4, 0xFE60_4000), (0x14, 4, 0), (0x18, 4, 0xFE60_8000)]
        );
    }

    #[test]
    fn no_parent_or_no_space_is_an_error() {
        let cfg = FakeConfig::new(256);
        cfg.add_bridge(bdf(0, 1), 1, 1);
        cfg.with(bdf(0, 1), |f| {
            f.set32(0x20, 0xFE60_FE60); // 1 MiB window
        });
        let mut bars = [Bar::None; 6];
        bars[0] = Bar::Mem32 {
            addr: 0,
            size: 0x20_0000,
            prefetchable: false,
        };
        let dev = device(bdf(1, 0), bars);
        assert_eq!(
            plan(&cfg, &dev, None, &[]),
            Err(AssignError::NoParentWindow)
        );
        assert_eq!(
            plan(&cfg, &dev, Some(bdf(0, 1)), &[]),
            Err(AssignError::NoSpace {
                index: 0,
                size: 0x20_0000
            })
        );
    }
}
